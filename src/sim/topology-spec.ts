// Notes on the design
// -------------------
// A TopologySpec is a topology run (topology-run.ts) written down, as a ScheduleSpec is a pair
// schedule: the seed (which still drives the network and every controller incarnation), the
// layout (topology, controllers, degree, mode), the volume and journal geometry, and the event
// list: each step's operation, the values of its choices and the virtual ms after it. It is what
// `blockmirror sim --topology ... --shrink` prints and writes and what `--replay` reads. A spec
// made from a seeded run replays that run; a spec with events removed is another run that
// replays identically every time (a choice whose range changed takes its value modulo the new
// range; a choice the list does not have is drawn and written down again).
//
// The shrinker is shrink.ts's removal search (shrinkList) over the event list, keeping every
// removal after which the run still fails the same invariant (verdicts.ts).
//
// Error contract: parseTopologySpec() throws TypeError / RangeError with the path of the bad
// field; shrinkTopology() throws RangeError for a spec that does not fail; what runs find is data.

import type { PairMutation } from '../replication/pairs';
import { MUTATIONS, integerField, parseSpecEvent } from './schedule-spec';
import { type ListShrinkResult, shrinkList } from './shrink';
import {
  MAX_TOPOLOGY_CONTROLLERS,
  MAX_TOPOLOGY_DEGREE,
  TOPOLOGIES,
  TOPOLOGY_OPERATIONS,
  type Topology,
  type TopologyEvent,
  type TopologyOperation,
  type TopologyRunOptions,
  type TopologyRunResult,
  runTopology,
} from './topology-run';
import { failedInvariants, firstFailedInvariant } from './verdicts';

const OPERATION_NAMES: ReadonlySet<string> = new Set(TOPOLOGY_OPERATIONS);

/** The format tag of a topology spec file. */
export const TOPOLOGY_SPEC_FORMAT = 'blockmirror-topology-run/1';

/** A replayable topology run (see the notes above). */
export interface TopologySpec {
  format: typeof TOPOLOGY_SPEC_FORMAT;
  seed: number;
  topology: Topology;
  controllers: number;
  mode: 'sync' | 'async';
  /** @default the topology's (topology-run.ts) */
  degree?: number;
  blockCount: number;
  /** @default 64 KiB */
  journalCapacityBytes?: number;
  /** @default 30000 */
  quiesceMaxMs?: number;
  /** @default none */
  mutation?: PairMutation;
  /** What the case is about. @default none */
  found?: string;
  /** The invariant a shrink kept failing. @default none */
  invariant?: string;
  events: TopologyEvent[];
}

/** The layout and geometry of a run, without its events (what a spec and its replays share). */
export type TopologySetup = Omit<TopologySpec, 'format' | 'events' | 'found' | 'invariant'>;

/** The spec of a run: its setup and its recorded events. */
export function topologySpecOf(setup: TopologySetup, result: TopologyRunResult, extra: { found?: string; invariant?: string } = {}): TopologySpec {
  return {
    format: TOPOLOGY_SPEC_FORMAT, ...setup,
    ...(extra.found === undefined ? {} : { found: extra.found }),
    ...(extra.invariant === undefined ? {} : { invariant: extra.invariant }),
    events: result.events.map((event) => ({ ...event, draws: [...event.draws], ...(event.trace === undefined ? {} : { trace: [...event.trace] }) })),
  };
}

/** The options that replay a spec (with `namePrefix` for the shared-memory names). */
export function optionsOfTopologySpec(spec: TopologySpec, namePrefix?: string): TopologyRunOptions {
  return {
    seed: spec.seed, topology: spec.topology, controllers: spec.controllers, mode: spec.mode, blockCount: spec.blockCount,
    ...(spec.degree === undefined ? {} : { degree: spec.degree }),
    ...(spec.journalCapacityBytes === undefined ? {} : { journalCapacityBytes: spec.journalCapacityBytes }),
    ...(spec.quiesceMaxMs === undefined ? {} : { quiesceMaxMs: spec.quiesceMaxMs }),
    ...(spec.mutation === undefined ? {} : { mutation: spec.mutation }),
    ...(namePrefix === undefined ? {} : { namePrefix }),
    events: spec.events,
  };
}

/** The spec as one JSON document, one event per line. */
export function formatTopologySpec(spec: TopologySpec): string {
  const { events, ...head } = spec;
  const lines = events.map((event) => `    ${JSON.stringify(event)}`);
  const headText = JSON.stringify(head, null, 2).replace(/\n}$/, '');
  return `${headText},\n  "events": [\n${lines.join(',\n')}\n  ]\n}\n`;
}

/** Whether a parsed JSON value is tagged as a topology spec (else: a pair schedule's). */
export function isTopologySpec(value: unknown): boolean {
  return typeof value === 'object' && value !== null && (value as Record<string, unknown>).format === TOPOLOGY_SPEC_FORMAT;
}

/** Checks a parsed JSON value as a topology spec; throws TypeError / RangeError naming the bad field. */
export function parseTopologySpec(value: unknown): TopologySpec {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new TypeError('a topology spec must be a JSON object');
  const input = value as Record<string, unknown>;
  if (input.format !== TOPOLOGY_SPEC_FORMAT) throw new TypeError(`format must be ${JSON.stringify(TOPOLOGY_SPEC_FORMAT)}, got ${JSON.stringify(input.format)}`);
  if (!TOPOLOGIES.includes(input.topology as Topology)) throw new TypeError(`topology must be one of ${TOPOLOGIES.join(', ')}, got ${JSON.stringify(input.topology)}`);
  if (input.mode !== 'sync' && input.mode !== 'async') throw new TypeError(`mode must be "sync" or "async", got ${JSON.stringify(input.mode)}`);
  if (input.mutation !== undefined && !MUTATIONS.includes(input.mutation as PairMutation)) {
    throw new TypeError(`mutation must be one of ${MUTATIONS.join(', ')}, got ${JSON.stringify(input.mutation)}`);
  }
  for (const key of ['found', 'invariant'] as const) {
    if (input[key] !== undefined && typeof input[key] !== 'string') throw new TypeError(`${key} must be a string`);
  }
  if (!Array.isArray(input.events)) throw new TypeError('events must be an array');
  if (input.events.length > 100_000) throw new RangeError(`events must hold at most 100000 steps, got ${input.events.length}`);
  const events = input.events.map((entry: unknown, index): TopologyEvent => parseSpecEvent<TopologyOperation>(entry, `events[${index}]`, OPERATION_NAMES));
  const spec: TopologySpec = {
    format: TOPOLOGY_SPEC_FORMAT,
    seed: integerField(input.seed, 'seed', 0, Number.MAX_SAFE_INTEGER),
    topology: input.topology as Topology,
    controllers: integerField(input.controllers, 'controllers', 2, MAX_TOPOLOGY_CONTROLLERS),
    mode: input.mode,
    blockCount: integerField(input.blockCount, 'blockCount', 1, 65_536),
    events,
  };
  if (input.degree !== undefined) spec.degree = integerField(input.degree, 'degree', 1, MAX_TOPOLOGY_DEGREE);
  if (input.journalCapacityBytes !== undefined) spec.journalCapacityBytes = integerField(input.journalCapacityBytes, 'journalCapacityBytes', 4096, 1 << 30);
  if (input.quiesceMaxMs !== undefined) spec.quiesceMaxMs = integerField(input.quiesceMaxMs, 'quiesceMaxMs', 1, 3_600_000);
  if (input.mutation !== undefined) spec.mutation = input.mutation as PairMutation;
  if (typeof input.found === 'string') spec.found = input.found;
  if (typeof input.invariant === 'string') spec.invariant = input.invariant;
  return spec;
}

/** Options of a topology shrink. */
export interface TopologyShrinkOptions {
  /** The invariant that must keep failing. @default the invariant of the spec's first violation */
  invariant?: string;
  /** Replays at most. @default 200 (a wide run costs far more than a pair schedule) */
  maxRuns?: number;
  /** Shared-memory name prefix of the replays. @default topology-run.ts's */
  namePrefix?: string;
  /** Each kept removal, as a line. @default none */
  onProgress?: (line: string) => void;
}

/** What a topology shrink found. */
export interface TopologyShrinkResult {
  invariant: string;
  original: TopologySpec;
  /** The shortest failing list found, re-recorded from its replay. */
  minimal: TopologySpec;
  /** The minimal list's run. */
  result: TopologyRunResult;
  runs: number;
  oneMinimal: boolean;
}

/** Shrinks a failing topology run to a minimal event list that fails the same invariant. */
export async function shrinkTopology(spec: TopologySpec, options: TopologyShrinkOptions = {}): Promise<TopologyShrinkResult> {
  const maxRuns = options.maxRuns ?? 200;
  if (!Number.isSafeInteger(maxRuns) || maxRuns < 1) throw new RangeError(`maxRuns must be a positive integer, got ${String(maxRuns)}`);
  const { format: _format, events: _events, found, invariant: _invariant, ...setup } = spec;
  const replay = (candidate: TopologySpec): Promise<TopologyRunResult> => runTopology(optionsOfTopologySpec(candidate, options.namePrefix));
  const first = await replay(spec);
  const invariant = options.invariant ?? firstFailedInvariant(first);
  if (invariant === undefined || !failedInvariants(first).includes(invariant)) {
    throw new RangeError(`the topology run (seed ${spec.seed}, ${spec.events.length} events) does not fail${options.invariant === undefined ? '' : ` ${options.invariant}`}: nothing to shrink`);
  }
  const extra = { invariant, ...(found === undefined ? {} : { found }) };
  let best = { spec: topologySpecOf(setup, first, extra), result: first };
  const search: ListShrinkResult<TopologyEvent> = await shrinkList(spec.events, async (events) => {
    const result = await replay({ ...spec, events });
    if (!failedInvariants(result).includes(invariant)) return false;
    if (events.length < best.spec.events.length) {
      best = { spec: topologySpecOf(setup, result, extra), result };
      options.onProgress?.(`${events.length} events still fail ${invariant}`);
    }
    return true;
  }, maxRuns - 1);
  return { invariant, original: spec, minimal: best.spec, result: best.result, runs: search.tests + 1, oneMinimal: search.oneMinimal };
}
