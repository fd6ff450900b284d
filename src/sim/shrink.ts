// Notes on the design
// -------------------
// The shrinker: given a failing pair schedule (a ScheduleSpec, usually made from a failing
// seed), it removes events while the run still fails the same invariant, and returns the
// shortest list it found, as a spec that replays alone (`blockmirror sim --replay FILE`) and can
// become a permanent regression case (test/scenario/regressions/, docs/sim.md).
//
// The search is delta debugging reduced to removals (ddmin's complement steps): try removing
// halves, then quarters, ... then single events, keeping every removal after which the run
// still fails; then single-event passes until one removes nothing. A list that passed the last
// full pass is 1-minimal: removing any one event makes the failure go away (or turns it into a
// failure of another invariant). `maxRuns` bounds the replays; a search cut short says so
// (`oneMinimal: false`) and returns the shortest failing list so far, never a passing one.
//
// A kept candidate is re-recorded from its own replay (specOf of the result): a step whose state
// asked for fewer draws than it had keeps only those, one that asked for more gets the fallback
// draws written down, so the returned spec replays the very run that was checked.
//
// Error contract: a spec that does not fail (the invariant) to begin with is a caller mistake:
// RangeError. What the runs find is data, never thrown.

import { type PairScheduleResult, runPairSchedule } from './pair-schedule';
import { type ScheduleSpec, optionsOfSpec, specOf, withEvents } from './schedule-spec';
import { failedInvariants, firstFailedInvariant } from './verdicts';

/** What a removal search found. */
export interface ListShrinkResult<T> {
  items: T[];
  /** Candidates tried. */
  tests: number;
  /** The last single-removal pass removed nothing (within the budget). */
  oneMinimal: boolean;
}

/**
 * Removes items while `fails(candidate)` holds: chunks of half the list, then smaller, then
 * single items until a full pass removes nothing. `fails(items)` itself is assumed (not tested).
 */
export async function shrinkList<T>(items: readonly T[], fails: (candidate: T[]) => Promise<boolean>, maxTests = Infinity): Promise<ListShrinkResult<T>> {
  if (!Array.isArray(items)) throw new TypeError('items must be an array');
  if (typeof fails !== 'function') throw new TypeError('fails must be a function');
  let current = [...items];
  let tests = 0;
  const attempt = async (candidate: T[]): Promise<boolean | undefined> => {
    if (tests >= maxTests) return undefined;
    tests++;
    return fails(candidate);
  };
  let chunk = Math.max(1, Math.ceil(current.length / 2));
  for (;;) {
    let removed = false;
    for (let start = 0; start < current.length;) {
      const candidate = [...current.slice(0, start), ...current.slice(start + chunk)];
      const outcome = await attempt(candidate);
      if (outcome === undefined) return { items: current, tests, oneMinimal: false };
      if (outcome) {
        current = candidate;
        removed = true;
      } else start += chunk;
    }
    if (chunk > 1) chunk = Math.ceil(chunk / 2);
    else if (!removed) return { items: current, tests, oneMinimal: true };
  }
}

/** Options of a schedule shrink. */
export interface ShrinkOptions {
  /** The invariant that must keep failing. @default the invariant of the spec's first violation */
  invariant?: string;
  /** Replays at most. @default 1000 */
  maxRuns?: number;
  /** Each kept removal, as a line. @default none */
  onProgress?: (line: string) => void;
}

/** What a shrink found. */
export interface ShrinkResult {
  invariant: string;
  original: ScheduleSpec;
  /** The shortest failing list found, re-recorded from its replay. */
  minimal: ScheduleSpec;
  /** The minimal list's run (its violations and trace). */
  result: PairScheduleResult;
  runs: number;
  oneMinimal: boolean;
}

function keepsFailing(result: PairScheduleResult, invariant: string): boolean {
  return failedInvariants(result).includes(invariant);
}

/** Shrinks a failing schedule to a minimal event list that fails the same invariant. */
export async function shrinkSchedule(spec: ScheduleSpec, options: ShrinkOptions = {}): Promise<ShrinkResult> {
  const maxRuns = options.maxRuns ?? 1000;
  if (!Number.isSafeInteger(maxRuns) || maxRuns < 1) throw new RangeError(`maxRuns must be a positive integer, got ${String(maxRuns)}`);
  const first = await runPairSchedule(optionsOfSpec(spec));
  const invariant = options.invariant ?? firstFailedInvariant(first);
  if (invariant === undefined || !keepsFailing(first, invariant)) {
    throw new RangeError(`the schedule (seed ${spec.seed}, ${spec.events.length} events) does not fail${options.invariant === undefined ? '' : ` ${options.invariant}`}: nothing to shrink`);
  }
  let best = { spec: specOf(first, { ...pick(spec), invariant }), result: first };
  const search = await shrinkList(spec.events, async (events) => {
    const candidate = withEvents(spec, events);
    const result = await runPairSchedule(optionsOfSpec(candidate));
    if (!keepsFailing(result, invariant)) return false;
    if (events.length < best.spec.events.length) {
      best = { spec: specOf(result, { ...pick(spec), invariant }), result };
      options.onProgress?.(`${events.length} events still fail ${invariant}`);
    }
    return true;
  }, maxRuns - 1);
  return { invariant, original: spec, minimal: best.spec, result: best.result, runs: search.tests + 1, oneMinimal: search.oneMinimal };
}

function pick(spec: ScheduleSpec): { mutation?: ScheduleSpec['mutation']; found?: string } {
  return { ...(spec.mutation === undefined ? {} : { mutation: spec.mutation }), ...(spec.found === undefined ? {} : { found: spec.found }) };
}

/** The minimal list for people: one line per event (its operation and what it did). */
export function describeEvents(spec: ScheduleSpec): string[] {
  return spec.events.map((event, index) => {
    const what = (event.trace ?? []).map((line) => line.replace(/^\d+ /, '')).filter((line) => !line.startsWith('VIOLATION')).join('; ');
    return `${String(index + 1).padStart(3)}. ${event.operation}${what === '' ? '' : `: ${what}`} (then ${event.afterMs} ms)`;
  });
}
