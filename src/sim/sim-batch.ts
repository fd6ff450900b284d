// Notes on the design
// -------------------
// Runs many seeded pair schedules of one kind (schedule-kinds.ts), spread over worker threads
// (node:worker_threads, one per core by default): the main thread hands out slices of seeds
// (`sliceSize` at a time, so a worker that drew slow seeds does not hold the others up) and
// sums what comes back. Each worker runs its schedules one after another, each from nothing
// (its own clock, network, controllers and shared-memory volumes, unlinked at its end), exactly
// as a lone run of that seed would: nothing carries over from one schedule to the next but
// warmed-up code, so a seed's verdict does not depend on the slice it ran in, and the replay
// line of a failure needs only the kind and the seed.
//
// Shared-memory names carry the thread id (workers share the pid), so two workers never open
// each other's volumes. `workers: 0` runs in the calling thread (tests of the runner itself).
//
// Error contract: what schedules find comes back as failures, never thrown; a worker that dies
// (an exception outside a schedule: a broken harness, not an operating error) rejects the batch
// with an Error carrying its stack; bad options are TypeError / RangeError.

import { availableParallelism } from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';

import type { PairMutation } from '../replication/pairs';
import { runPairSchedule } from './pair-schedule';
import { type ScheduleKind, SCHEDULE_KINDS, scheduleOptionsFor } from './schedule-kinds';
import { firstFailedInvariant } from './verdicts';

/** Options of a batch. */
export interface ScheduleBatchOptions {
  kind: ScheduleKind;
  firstSeed: number;
  count: number;
  /** Worker threads; 0 runs in this thread. @default os.availableParallelism(), at most 8 */
  workers?: number;
  /** Seeds handed to a worker at a time. @default 200 */
  sliceSize?: number;
  /** The mutation check's deliberate bug. @default none */
  mutation?: PairMutation;
  /** Failures kept in full (the rest are counted). @default 20 */
  keepFailures?: number;
}

/** One failing seed. */
export interface ScheduleBatchFailure {
  kind: ScheduleKind;
  seed: number;
  invariant: string;
  violations: string[];
  traceTail: string[];
}

/** What a batch found. */
export interface ScheduleBatchResult {
  kind: ScheduleKind;
  firstSeed: number;
  count: number;
  failureCount: number;
  failures: ScheduleBatchFailure[];
  totals: Record<string, number>;
  workers: number;
  elapsedMs: number;
}

/** A slice's outcome (what a worker posts back). */
export interface SliceOutcome {
  count: number;
  failureCount: number;
  failures: ScheduleBatchFailure[];
  totals: Record<string, number>;
}

/** Runs seeds first..first+count-1 of `kind` in this thread. */
export async function runSlice(kind: ScheduleKind, first: number, count: number, namePrefix: string, mutation: PairMutation | undefined, keepFailures: number): Promise<SliceOutcome> {
  const outcome: SliceOutcome = { count: 0, failureCount: 0, failures: [], totals: {} };
  for (let seed = first; seed < first + count; seed++) {
    const options = scheduleOptionsFor(kind, seed);
    options.namePrefix = namePrefix;
    if (mutation !== undefined) options.mutation = mutation;
    const result = await runPairSchedule(options);
    outcome.count++;
    for (const [key, value] of Object.entries(result.counters)) outcome.totals[key] = (outcome.totals[key] ?? 0) + value;
    if (result.violations.length > 0) {
      outcome.failureCount++;
      if (outcome.failures.length < keepFailures) {
        outcome.failures.push({ kind, seed, invariant: firstFailedInvariant(result) ?? 'other', violations: result.violations.slice(0, 5), traceTail: result.trace.slice(-30) });
      }
    }
  }
  return outcome;
}

function merge(into: SliceOutcome, from: SliceOutcome, keepFailures: number): void {
  into.count += from.count;
  into.failureCount += from.failureCount;
  for (const failure of from.failures) if (into.failures.length < keepFailures) into.failures.push(failure);
  for (const [key, value] of Object.entries(from.totals)) into.totals[key] = (into.totals[key] ?? 0) + value;
}

/** Runs a batch; never throws for what the schedules find. */
export async function runScheduleBatch(options: ScheduleBatchOptions): Promise<ScheduleBatchResult> {
  if (!SCHEDULE_KINDS.includes(options.kind)) throw new RangeError(`kind must be one of ${SCHEDULE_KINDS.join(', ')}, got ${JSON.stringify(options.kind)}`);
  for (const [name, value] of [['firstSeed', options.firstSeed], ['count', options.count]] as const) {
    if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`${name} must be a non-negative integer, got ${String(value)}`);
  }
  const workerCount = options.workers ?? Math.min(8, availableParallelism());
  const sliceSize = options.sliceSize ?? 200;
  const keepFailures = options.keepFailures ?? 20;
  if (!Number.isSafeInteger(workerCount) || workerCount < 0 || workerCount > 64) throw new RangeError(`workers must be an integer from 0 to 64, got ${String(workerCount)}`);
  if (!Number.isSafeInteger(sliceSize) || sliceSize < 1) throw new RangeError(`sliceSize must be a positive integer, got ${String(sliceSize)}`);
  const startedAtMs = Date.now();
  const total: SliceOutcome = { count: 0, failureCount: 0, failures: [], totals: {} };
  if (workerCount === 0 || options.count === 0) {
    merge(total, await runSlice(options.kind, options.firstSeed, options.count, `bm-sb-${process.pid}-t0`, options.mutation, keepFailures), keepFailures);
  } else {
    let next = options.firstSeed;
    const end = options.firstSeed + options.count;
    const script = path.join(__dirname, 'sim-worker.js');
    const workers = Array.from({ length: Math.min(workerCount, Math.ceil(options.count / sliceSize)) }, () => new Worker(script));
    await Promise.all(workers.map((worker) => new Promise<void>((resolve, reject) => {
      const hand = (): void => {
        if (next >= end) {
          void worker.terminate().then(() => resolve());
          return;
        }
        const count = Math.min(sliceSize, end - next);
        worker.postMessage({ kind: options.kind, first: next, count, mutation: options.mutation, keepFailures });
        next += count;
      };
      worker.on('message', (outcome: SliceOutcome) => {
        merge(total, outcome, keepFailures);
        hand();
      });
      worker.on('error', (error) => {
        for (const other of workers) void other.terminate();
        reject(new Error(`a simulation worker failed: ${String(error?.stack ?? error)}`));
      });
      hand();
    })));
  }
  total.failures.sort((x, y) => x.seed - y.seed);
  return {
    kind: options.kind, firstSeed: options.firstSeed, count: total.count, failureCount: total.failureCount, failures: total.failures,
    totals: total.totals, workers: workerCount, elapsedMs: Date.now() - startedAtMs,
  };
}
