// Notes on the design
// -------------------
// A ScheduleSpec is a pair schedule written down: everything that decided one run of
// pair-schedule.ts (the seed, which still drives the network and every controller incarnation;
// the mode, fence, volume and journal geometry; the event list, each step's operation with its
// raw draws and the virtual ms after it; the draws of the final quiescence). It is what the
// shrinker (shrink.ts) prints and writes, what `blockmirror sim --replay` reads, and what the
// permanent regression cases in test/scenario/regressions/ are. The list replays alone: a
// spec made from a seeded run replays that run line for line, and a spec with events removed is
// another schedule that replays identically on every run.
//
// Error contract: parseScheduleSpec() throws TypeError / RangeError with the path of the bad
// field (a spec is a caller's input); nothing here runs a schedule.

import type { PairMutation } from '../replication/pairs';
import {
  CONTROLLER_IDS,
  OPERATIONS,
  type PairScheduleOptions,
  type PairScheduleResult,
  type ScheduleEvent,
  type ScheduleOperation,
} from './pair-schedule';

/** The format tag of a spec file. */
export const SCHEDULE_SPEC_FORMAT = 'blockmirror-pair-schedule/1';

/** A replayable pair schedule (see the notes above). */
export interface ScheduleSpec {
  format: typeof SCHEDULE_SPEC_FORMAT;
  seed: number;
  mode: 'sync' | 'async';
  fence: 'never' | 'data';
  /** @default 2 */
  controllers?: number;
  blockCount: number;
  /** @default 4096 */
  blockBytes?: number;
  journalCapacityBytes: number;
  /** @default 30 */
  stepMaxMs?: number;
  /** @default 3000 */
  transientBoundMs?: number;
  /** @default 30000 */
  quiesceMaxMs?: number;
  /** A deliberate bug the case was found with (the mutation check). @default none */
  mutation?: PairMutation;
  /** What the case is about (a sentence; a regression's story). @default none */
  found?: string;
  /** The invariant a shrink kept failing. @default none */
  invariant?: string;
  events: ScheduleEvent[];
  tail: number[];
}

/** The mutations a spec may name. */
export const MUTATIONS: readonly PairMutation[] = ['apply-out-of-order', 'drop-write', 'skip-track'];
const OPERATION_NAMES = new Set<string>(OPERATIONS.map((entry) => entry.operation));

/** The spec of a run (its result) and the mutation it ran with. */
export function specOf(result: PairScheduleResult, extra: { mutation?: PairMutation; found?: string; invariant?: string } = {}): ScheduleSpec {
  const spec: ScheduleSpec = {
    format: SCHEDULE_SPEC_FORMAT, seed: result.seed, mode: result.mode, fence: result.fence,
    ...(result.controllers === 2 ? {} : { controllers: result.controllers }),
    blockCount: result.setup.blockCount, blockBytes: result.setup.blockBytes, journalCapacityBytes: result.setup.journalCapacityBytes,
    stepMaxMs: result.setup.stepMaxMs, transientBoundMs: result.setup.transientBoundMs, quiesceMaxMs: result.setup.quiesceMaxMs,
    ...(extra.mutation === undefined ? {} : { mutation: extra.mutation }),
    ...(extra.found === undefined ? {} : { found: extra.found }),
    ...(extra.invariant === undefined ? {} : { invariant: extra.invariant }),
    events: result.events.map((event) => ({ ...event, draws: [...event.draws] })),
    tail: [...result.tail],
  };
  return spec;
}

/** The options that replay a spec (mutation included when `withMutation`). */
export function optionsOfSpec(spec: ScheduleSpec, withMutation = true): PairScheduleOptions {
  return {
    seed: spec.seed, mode: spec.mode, fence: spec.fence, controllers: spec.controllers ?? 2,
    blockCount: spec.blockCount, blockBytes: spec.blockBytes ?? 4096, journalCapacityBytes: spec.journalCapacityBytes,
    ...(spec.stepMaxMs === undefined ? {} : { stepMaxMs: spec.stepMaxMs }),
    ...(spec.transientBoundMs === undefined ? {} : { transientBoundMs: spec.transientBoundMs }),
    ...(spec.quiesceMaxMs === undefined ? {} : { quiesceMaxMs: spec.quiesceMaxMs }),
    ...(withMutation && spec.mutation !== undefined ? { mutation: spec.mutation } : {}),
    events: spec.events, tail: spec.tail,
  };
}

/** A spec with another event list (the shrinker's candidates). */
export function withEvents(spec: ScheduleSpec, events: readonly ScheduleEvent[]): ScheduleSpec {
  return { ...spec, events: [...events] };
}

/** The spec as one JSON document, one event per line (diffs of regression files stay small). */
export function formatScheduleSpec(spec: ScheduleSpec): string {
  const { events, tail, ...head } = spec;
  const lines = events.map((event) => `    ${JSON.stringify(event)}`);
  const headText = JSON.stringify(head, null, 2).replace(/\n}$/, '');
  return `${headText},\n  "events": [\n${lines.join(',\n')}\n  ],\n  "tail": ${JSON.stringify(tail)}\n}\n`;
}

/** A spec's integer field, checked (TypeError / RangeError naming its path); topology-spec.ts shares it. */
export function integerField(value: unknown, path: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) throw new TypeError(`${path} must be an integer, got ${JSON.stringify(value)}`);
  if (value < min || value > max) throw new RangeError(`${path} must be from ${min} to ${max}, got ${value}`);
  return value;
}

/** A spec's list of draws, checked. */
export function draws(value: unknown, path: string): number[] {
  if (!Array.isArray(value)) throw new TypeError(`${path} must be an array of 32-bit draws`);
  return value.map((draw, index) => integerField(draw, `${path}[${index}]`, 0, 2 ** 32 - 1));
}

/** One event of a spec (a schedule's or a topology run's): operation, draws, afterMs, trace; checked. */
export function parseSpecEvent<Operation extends string>(entry: unknown, path: string, operations: ReadonlySet<string>):
  { operation: Operation; draws: number[]; afterMs: number; trace?: string[] } {
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) throw new TypeError(`${path} must be an object`);
  const event = entry as Record<string, unknown>;
  if (typeof event.operation !== 'string' || !operations.has(event.operation)) {
    throw new TypeError(`${path}.operation must be one of ${[...operations].join(', ')}, got ${JSON.stringify(event.operation)}`);
  }
  const result: { operation: Operation; draws: number[]; afterMs: number; trace?: string[] } = {
    operation: event.operation as Operation, draws: draws(event.draws, `${path}.draws`), afterMs: integerField(event.afterMs, `${path}.afterMs`, 0, 3_600_000),
  };
  if (event.trace !== undefined) {
    if (!Array.isArray(event.trace) || !event.trace.every((line) => typeof line === 'string')) throw new TypeError(`${path}.trace must be an array of strings`);
    result.trace = [...event.trace as string[]];
  }
  return result;
}

/** Checks a parsed JSON value as a spec; throws TypeError / RangeError naming the bad field. */
export function parseScheduleSpec(value: unknown): ScheduleSpec {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new TypeError('a schedule spec must be a JSON object');
  const input = value as Record<string, unknown>;
  if (input.format !== SCHEDULE_SPEC_FORMAT) throw new TypeError(`format must be ${JSON.stringify(SCHEDULE_SPEC_FORMAT)}, got ${JSON.stringify(input.format)}`);
  if (input.mode !== 'sync' && input.mode !== 'async') throw new TypeError(`mode must be "sync" or "async", got ${JSON.stringify(input.mode)}`);
  if (input.fence !== 'never' && input.fence !== 'data') throw new TypeError(`fence must be "never" or "data", got ${JSON.stringify(input.fence)}`);
  if (input.mutation !== undefined && !MUTATIONS.includes(input.mutation as PairMutation)) {
    throw new TypeError(`mutation must be one of ${MUTATIONS.join(', ')}, got ${JSON.stringify(input.mutation)}`);
  }
  for (const key of ['found', 'invariant'] as const) {
    if (input[key] !== undefined && typeof input[key] !== 'string') throw new TypeError(`${key} must be a string`);
  }
  if (!Array.isArray(input.events)) throw new TypeError('events must be an array');
  const events = input.events.map((entry: unknown, index) => parseSpecEvent<ScheduleOperation>(entry, `events[${index}]`, OPERATION_NAMES));
  const spec: ScheduleSpec = {
    format: SCHEDULE_SPEC_FORMAT,
    seed: integerField(input.seed, 'seed', 0, Number.MAX_SAFE_INTEGER),
    mode: input.mode, fence: input.fence,
    blockCount: integerField(input.blockCount, 'blockCount', 8, 65_536),
    journalCapacityBytes: integerField(input.journalCapacityBytes, 'journalCapacityBytes', 4096, 1 << 30),
    events, tail: draws(input.tail ?? [], 'tail'),
  };
  if (input.controllers !== undefined) spec.controllers = integerField(input.controllers, 'controllers', 2, CONTROLLER_IDS.length);
  if (input.blockBytes !== undefined) spec.blockBytes = integerField(input.blockBytes, 'blockBytes', 512, 1 << 20);
  if (input.stepMaxMs !== undefined) spec.stepMaxMs = integerField(input.stepMaxMs, 'stepMaxMs', 0, 3_600_000);
  if (input.transientBoundMs !== undefined) spec.transientBoundMs = integerField(input.transientBoundMs, 'transientBoundMs', 1, 3_600_000);
  if (input.quiesceMaxMs !== undefined) spec.quiesceMaxMs = integerField(input.quiesceMaxMs, 'quiesceMaxMs', 1, 3_600_000);
  if (input.mutation !== undefined) spec.mutation = input.mutation as PairMutation;
  if (typeof input.found === 'string') spec.found = input.found;
  if (typeof input.invariant === 'string') spec.invariant = input.invariant;
  return spec;
}
