// Notes on the design
// -------------------
// The replication microbenchmark behind `blockmirror bench`: writes through a pair's primary
// at one block size and queue depth, for the modes `none` (a volume with no pair), `async` and
// `sync`, in interleaved rounds, and reports per mode IOPS, MiB/s, write latency percentiles,
// the pair's lag at the end of each round, and the ratio to `none` within each round.
//
// The array is built the way `serve` builds one: a config document checked by validateConfig,
// turned into Controller options by controllerOptionsOf, run by a ControllerHost. Controller
// "bench-b" holds the secondaries and only listens (127.0.0.1, any free port); controller
// "bench-a" holds one volume per mode, its pairs, and dials bench-b's bound address over real
// loopback TCP. With `processes: 2`, bench-b is a `blockmirror serve` child of the same config
// instead of an in-process host, so the secondary has its own event loop (and, on 2 cores, its
// own core).
//
// What one write's latency is: from the call of `write` to its ack point. For `none` and
// `async` that is the return of the synchronous native write (async acknowledges once stored
// locally); for `sync` it is when ReplicatedVolume.writeCompletion(sequence) resolves (the
// secondary applied the record), exactly as the NBD server's completeWrite replies.
//
// The driver, per event-loop turn: issue writes until `queueDepth` are in flight (a sync write
// stays in flight until its ack point; the others complete as they return), then yield with
// setImmediate so the links, the secondary and the timers run. That is how the NBD server sees
// a socket read's batch of requests. Offsets are random, block-aligned, from a seeded
// xorshift, the same sequence for every mode and round.
//
// Fairness: every volume is filled once (sequential 1 MiB writes through its pair, drained)
// before anything is timed, so no mode pays the kernel's first-touch page faults; each mode
// then gets a short unreported warm-up. Round r runs the modes in the order rotated by r, and
// after each measurement the pair is drained (lag 0, mirroring) before the next one starts, so
// one mode's backlog never runs in another's window. Ratios are taken within a round.
//
// Failure contract: a pair that does not reach mirroring, or does not drain within
// `drainTimeoutMs`, or a write that fails, rejects runPairBench with an Error saying which;
// everything opened is closed in every case.

import { randomFillSync } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHistogram, performance } from 'node:perf_hooks';
import { setImmediate as nextTurn } from 'node:timers/promises';

import pino from 'pino';

import { validateConfig } from '../cli/config';
import { controllerOptionsOf } from '../cli/serve';
import { ControllerHost } from '../controller/host';
import type { PrimaryPair } from '../replication/primary-pair';
import { ServeChild } from './serve-child';

/** What a mode writes through. */
export type PairBenchMode = 'none' | 'async' | 'sync';

/** Every mode, in the order they are reported. */
export const PAIR_BENCH_MODES: readonly PairBenchMode[] = Object.freeze(['none', 'async', 'sync']);

/** The limits the command checks its options against. */
export const PAIR_BENCH_LIMITS = Object.freeze({
  minBlockSizeBytes: 512,
  /** A record must fit the journal's largest record (a quarter of its 64 MiB ring). */
  maxBlockSizeBytes: 16 * 1024 * 1024,
  maxQueueDepth: 4096,
  maxDurationSeconds: 3600,
  maxRounds: 100,
  /** The volume's block size: the capacity must be a multiple of it. */
  volumeBlockSizeBytes: 4096,
  maxSizeBytes: 64 * 1024 * 1024 * 1024,
});

/** Options of runPairBench. */
export interface PairBenchOptions {
  /** Bytes per write. @default 4096 */
  blockSizeBytes?: number;
  /** Writes in flight at most. @default 32 */
  queueDepth?: number;
  /** Seconds of writes per mode and round. @default 5 */
  durationSeconds?: number;
  /** Interleaved rounds. @default 3 */
  rounds?: number;
  /** @default ['none', 'async', 'sync'] */
  modes?: PairBenchMode[];
  /** Capacity of every volume (thin, in memory). @default 268435456 (256 MiB) */
  sizeBytes?: number;
  /** 1: both controllers in this process; 2: the secondary in a `serve` child. @default 1 */
  processes?: 1 | 2;
  /** How long a pair may take to reach mirroring or to drain. @default 60000 */
  drainTimeoutMs?: number;
  /** The controllers' log. @default silent */
  logger?: pino.Logger;
  /** Progress reports (setup steps, ticks during a measurement, each result). @default none */
  onProgress?: (event: PairBenchProgress) => void;
}

/** A progress report. */
export type PairBenchProgress =
  | { kind: 'phase'; phase: 'setup' | 'prefill' | 'warmup' | 'close'; mode?: PairBenchMode }
  | { kind: 'tick'; round: number; mode: PairBenchMode; elapsedSeconds: number; writes: number }
  | { kind: 'result'; result: PairBenchRoundResult };

/** Latency percentiles in microseconds. */
export interface LatencySummaryUs {
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  mean: number;
  max: number;
}

/** One mode's measurement in one round. */
export interface PairBenchRoundResult {
  round: number;
  mode: PairBenchMode;
  /** Writes that reached their ack point. */
  writes: number;
  /** Seconds from the first write to the last ack point. */
  seconds: number;
  iops: number;
  mibPerSecond: number;
  latencyUs: LatencySummaryUs;
  /** The primary pair's lag the moment the last write was acknowledged (null for `none`). */
  lagAtEnd: { records: number; bytes: number; seconds: number } | null;
  /** The pair's state then. */
  pairStateAtEnd: string | null;
  /** Times the pair suspended during the measurement (e.g. journal-full). */
  suspensions: number;
  /** Milliseconds until the pair was mirroring with lag 0 again. */
  drainMs: number | null;
  /** The lag once drained: records 0 means the secondary caught up. */
  lagAfterDrain: { records: number; bytes: number } | null;
  /** CPU seconds of this process (and of the secondary's serve, with processes 2). */
  cpu: { benchSeconds: number; secondarySeconds: number | null; usPerWrite: number };
}

/** Median and spread of one figure over the rounds. */
export interface Spread {
  median: number;
  min: number;
  max: number;
}

/** One mode over every round. */
export interface PairBenchModeSummary {
  mode: PairBenchMode;
  writes: number;
  iops: Spread;
  mibPerSecond: Spread;
  p50LatencyUs: Spread;
  p99LatencyUs: Spread;
  /** This mode's IOPS over `none`'s in the same round (null without `none`). */
  iopsRatioToNone: Spread | null;
  /** This mode's p50 latency over `none`'s in the same round (null without `none`). */
  p50LatencyRatioToNone: Spread | null;
  lagAtEndRecords: Spread | null;
  lagAtEndBytes: Spread | null;
  suspensions: number;
  /** Every round drained to lag 0. */
  caughtUp: boolean | null;
  /** In-process only: the primary and secondary volumes compared byte for byte at the end. */
  identical: boolean | null;
}

/** The document `blockmirror bench --json` prints. */
export interface PairBenchReport {
  suite: 'pair-bench';
  date: string;
  machine: { cpus: number; model: string | undefined; node: string; kernel: string; loadAverageAtStart: number[]; loadAverageAtEnd: number[] };
  options: {
    blockSizeBytes: number; queueDepth: number; durationSeconds: number; rounds: number; modes: PairBenchMode[];
    sizeBytes: number; processes: 1 | 2; warmupSeconds: number;
  };
  setup: { prefillSeconds: number; secondary: 'in-process' | 'child-process'; link: string | null };
  rounds: { round: number; order: PairBenchMode[]; results: PairBenchRoundResult[] }[];
  modes: PairBenchModeSummary[];
}

const MIB = 1024 * 1024;
const PRIMARY_ID = 'bench-a';
const SECONDARY_ID = 'bench-b';
const PREFILL_CHUNK_BYTES = MIB;
/** Prefill waits for the secondary after this many bytes, well inside the 64 MiB journal. */
const PREFILL_DRAIN_EVERY_BYTES = 16 * MIB;
const TICK_MS = 200;

/** What a mode writes to: a plain Volume or a pair's PairVolume. */
interface WriteTarget {
  write(byteOffset: number, source: Uint8Array): number;
  writeCompletion?(sequence: number): Promise<void> | null;
  read(byteOffset: number, target: Uint8Array): void;
}

interface ModeSetup {
  mode: PairBenchMode;
  target: WriteTarget;
  pair: PrimaryPair | undefined;
  suspensions: number;
}

function isReplicated(mode: PairBenchMode): mode is 'async' | 'sync' {
  return mode !== 'none';
}

/** The config documents of the two controllers (the secondary's is absent without pairs). */
export function pairBenchConfigs(modes: readonly PairBenchMode[], sizeBytes: number, secondaryPort?: number): {
  primary: Record<string, unknown>; secondary: Record<string, unknown> | undefined;
} {
  const replicated = modes.filter(isReplicated);
  const pair = (mode: PairBenchMode, role: 'primary' | 'secondary', peer: string): Record<string, unknown> =>
    ({ name: mode, volume: mode, peer, remoteVolume: mode, mode, role });
  const secondary = replicated.length === 0 ? undefined : {
    controllers: [{
      id: SECONDARY_ID,
      volumes: replicated.map((mode) => ({ name: mode, capacity: sizeBytes })),
      exports: replicated.map((mode) => ({ name: `${SECONDARY_ID}-${mode}`, volume: mode, readOnly: true })),
      replication: { listen: '127.0.0.1:0' },
      peers: [{ id: PRIMARY_ID }],
      pairs: replicated.map((mode) => pair(mode, 'secondary', PRIMARY_ID)),
    }],
    listen: [{ host: '127.0.0.1', port: 0 }],
  };
  const primary = {
    controllers: [{
      id: PRIMARY_ID,
      volumes: modes.map((mode) => ({ name: mode, capacity: sizeBytes })),
      exports: modes.map((mode) => ({ name: `${PRIMARY_ID}-${mode}`, volume: mode })),
      replication: {},
      peers: replicated.length === 0 || secondaryPort === undefined ? [] : [{ id: SECONDARY_ID, address: `127.0.0.1:${secondaryPort}` }],
      pairs: replicated.map((mode) => pair(mode, 'primary', SECONDARY_ID)),
    }],
    listen: [{ host: '127.0.0.1', port: 0 }],
  };
  return { primary, secondary };
}

/** A host of the document's controllers, without NBD (the benches write through the API). */
export function hostOf(document: Record<string, unknown>, source: string, logger: pino.Logger): ControllerHost {
  const config = validateConfig(document, source);
  return new ControllerHost({ controllers: config.controllers.map((controller, index) => controllerOptionsOf(controller, index, logger)) });
}

/** Median (mean of the middle two for an even count), min and max. */
export function spreadOf(values: readonly number[]): Spread {
  if (values.length === 0) return { median: Number.NaN, min: Number.NaN, max: Number.NaN };
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 === 1 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
  return { median, min: sorted[0] as number, max: sorted[sorted.length - 1] as number };
}

function lagOf(pair: PrimaryPair): { records: number; bytes: number; seconds: number } {
  const lag = pair.status().lag as { records: number; bytes: number; seconds: number };
  return { records: lag.records, bytes: lag.bytes, seconds: lag.seconds };
}

/** Resolves once `ready()` holds, checked on the pair's events and every few milliseconds. */
function until(pair: PrimaryPair, ready: () => boolean, what: string, timeoutMs: number): Promise<void> {
  if (ready()) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const check = (): void => {
      if (!ready()) return;
      cleanup();
      resolve();
    };
    const poll = setInterval(check, 2);
    const deadline = setTimeout(() => {
      cleanup();
      const status = pair.status();
      reject(new Error(`bench: ${what}: not done within ${timeoutMs} ms (pair ${pair.name} ${String(status.state)} ` +
        `(${String(status.reason)}), lag ${JSON.stringify(status.lag)})`));
    }, timeoutMs);
    const cleanup = (): void => {
      clearInterval(poll);
      clearTimeout(deadline);
      pair.off('progress', check);
      pair.off('state', check);
    };
    pair.on('progress', check);
    pair.on('state', check);
  });
}

function drained(pair: PrimaryPair): boolean {
  return pair.currentState === 'mirroring' && lagOf(pair).records === 0;
}

/** A xorshift32 stream of block indexes in [0, blockCount). */
function offsetStream(blockCount: number, blockSizeBytes: number): () => number {
  let state = 0x9e3779b9;
  return () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return (state % blockCount) * blockSizeBytes;
  };
}

/** Runs the benchmark; resolves with the report. */
export async function runPairBench(options: PairBenchOptions = {}): Promise<PairBenchReport> {
  const blockSizeBytes = options.blockSizeBytes ?? 4096;
  const queueDepth = options.queueDepth ?? 32;
  const durationSeconds = options.durationSeconds ?? 5;
  const rounds = options.rounds ?? 3;
  const modes = [...(options.modes ?? PAIR_BENCH_MODES)];
  const sizeBytes = options.sizeBytes ?? 256 * MIB;
  const processes = options.processes ?? 1;
  const drainTimeoutMs = options.drainTimeoutMs ?? 60_000;
  const logger = options.logger ?? pino({ level: 'silent' });
  const progress = options.onProgress ?? ((): void => undefined);
  const limits = PAIR_BENCH_LIMITS;
  if (!Number.isInteger(blockSizeBytes) || blockSizeBytes < limits.minBlockSizeBytes || blockSizeBytes > limits.maxBlockSizeBytes) {
    throw new RangeError(`blockSizeBytes must be an integer from ${limits.minBlockSizeBytes} to ${limits.maxBlockSizeBytes}, got ${blockSizeBytes}`);
  }
  if (!Number.isInteger(queueDepth) || queueDepth < 1 || queueDepth > limits.maxQueueDepth) {
    throw new RangeError(`queueDepth must be an integer from 1 to ${limits.maxQueueDepth}, got ${queueDepth}`);
  }
  if (!(durationSeconds > 0) || durationSeconds > limits.maxDurationSeconds) {
    throw new RangeError(`durationSeconds must be greater than 0 and at most ${limits.maxDurationSeconds}, got ${durationSeconds}`);
  }
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > limits.maxRounds) {
    throw new RangeError(`rounds must be an integer from 1 to ${limits.maxRounds}, got ${rounds}`);
  }
  if (modes.length === 0 || modes.some((mode) => !PAIR_BENCH_MODES.includes(mode)) || new Set(modes).size !== modes.length) {
    throw new RangeError(`modes must be distinct entries of ${PAIR_BENCH_MODES.join(', ')}, got ${modes.join(',')}`);
  }
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes % limits.volumeBlockSizeBytes !== 0 || sizeBytes < blockSizeBytes || sizeBytes > limits.maxSizeBytes) {
    throw new RangeError(`sizeBytes must be a multiple of ${limits.volumeBlockSizeBytes} from blockSizeBytes to ${limits.maxSizeBytes}, got ${sizeBytes}`);
  }
  if (processes !== 1 && processes !== 2) throw new RangeError(`processes must be 1 or 2, got ${String(processes)}`);

  const loadAverageAtStart = os.loadavg();
  const warmupSeconds = Math.min(0.5, durationSeconds / 2);
  const replicated = modes.filter(isReplicated);
  let secondaryHost: ControllerHost | undefined;
  let secondaryChild: ServeChild | undefined;
  let primaryHost: ControllerHost | undefined;
  let directory: string | undefined;
  let succeeded = false;
  const report: PairBenchReport = {
    suite: 'pair-bench',
    date: new Date().toISOString(),
    machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, node: process.version, kernel: os.release(), loadAverageAtStart, loadAverageAtEnd: [] },
    options: { blockSizeBytes, queueDepth, durationSeconds, rounds, modes, sizeBytes, processes, warmupSeconds },
    setup: { prefillSeconds: 0, secondary: processes === 2 ? 'child-process' : 'in-process', link: null },
    rounds: [],
    modes: [],
  };
  try {
    progress({ kind: 'phase', phase: 'setup' });
    // The secondary first: it listens on any free port, and the primary dials what it bound.
    let secondaryPort: number | undefined;
    if (replicated.length > 0) {
      const { secondary } = pairBenchConfigs(modes, sizeBytes);
      if (processes === 2) {
        directory = fs.mkdtempSync(path.join(os.tmpdir(), 'bm-bench-'));
        secondaryChild = await ServeChild.start({ config: secondary, directory, name: SECONDARY_ID });
        secondaryPort = secondaryChild.replicationAddress(SECONDARY_ID).port;
      } else {
        secondaryHost = hostOf(secondary as Record<string, unknown>, 'bench secondary', logger);
        await secondaryHost.start();
        secondaryPort = secondaryHost.controller(SECONDARY_ID)?.replicationAddress?.port;
      }
      report.setup.link = `127.0.0.1:${secondaryPort}`;
    }
    primaryHost = hostOf(pairBenchConfigs(modes, sizeBytes, secondaryPort).primary, 'bench primary', logger);
    await primaryHost.start();
    const controller = primaryHost.controller(PRIMARY_ID);
    if (controller === undefined) throw new Error('bench: the primary controller is missing');

    const setups: ModeSetup[] = modes.map((mode) => {
      if (!isReplicated(mode)) {
        const volume = controller.volume(mode);
        if (volume === undefined) throw new Error(`bench: no volume ${mode}`);
        return { mode, target: volume, pair: undefined, suspensions: 0 };
      }
      const pair = controller.pairs?.primary(mode);
      const target = controller.pairs?.exportVolume(mode);
      if (pair === undefined || target === undefined) throw new Error(`bench: no pair ${mode}`);
      const setup: ModeSetup = { mode, target, pair, suspensions: 0 };
      pair.on('state', (event: { new: string }) => {
        if (event.new === 'suspended') setup.suspensions++;
      });
      return setup;
    });
    for (const setup of setups) {
      if (setup.pair !== undefined) await until(setup.pair, () => setup.pair?.currentState === 'mirroring', `pair ${setup.mode} mirroring`, drainTimeoutMs);
    }

    // Fill every volume once, through its pair, so no timed write meets a fresh page.
    const prefillStartMs = performance.now();
    const chunk = randomFillSync(Buffer.allocUnsafe(PREFILL_CHUNK_BYTES));
    for (const setup of setups) {
      progress({ kind: 'phase', phase: 'prefill', mode: setup.mode });
      for (let byteOffset = 0; byteOffset < sizeBytes; byteOffset += PREFILL_CHUNK_BYTES) {
        const data = chunk.subarray(0, Math.min(PREFILL_CHUNK_BYTES, sizeBytes - byteOffset));
        const wait = setup.target.writeCompletion?.(setup.target.write(byteOffset, data)) ?? null;
        if (wait !== null) await wait;
        const written = byteOffset + data.length;
        if (setup.pair !== undefined && written % PREFILL_DRAIN_EVERY_BYTES === 0) {
          const pair = setup.pair;
          await until(pair, () => drained(pair), `prefill of ${setup.mode}`, drainTimeoutMs);
        } else if (written % (8 * PREFILL_CHUNK_BYTES) === 0) {
          await nextTurn();
        }
      }
      if (setup.pair !== undefined) {
        const pair = setup.pair;
        await until(pair, () => drained(pair), `prefill of ${setup.mode}`, drainTimeoutMs);
      }
    }
    report.setup.prefillSeconds = (performance.now() - prefillStartMs) / 1000;

    const blockCount = Math.floor(sizeBytes / blockSizeBytes);
    const source = randomFillSync(Buffer.allocUnsafe(blockSizeBytes));
    const measure = async (setup: ModeSetup, round: number, seconds: number): Promise<PairBenchRoundResult> => {
      const { target, pair } = setup;
      const histogram = createHistogram();
      const nextOffset = offsetStream(blockCount, blockSizeBytes);
      const suspensionsBefore = setup.suspensions;
      let inFlight = 0;
      let completed = 0;
      let failure: unknown;
      let allDone: (() => void) | undefined;
      const acknowledged = (issuedAtMs: number): void => {
        histogram.record(Math.max(1, Math.round((performance.now() - issuedAtMs) * 1e6)));
        completed++;
        inFlight--;
        if (inFlight === 0) allDone?.();
      };
      const failed = (error: unknown): void => {
        failure ??= error;
        inFlight--;
        if (inFlight === 0) allDone?.();
      };
      const cpuBefore = process.cpuUsage();
      const secondaryCpuBefore = secondaryChild?.cpuSeconds();
      const startMs = performance.now();
      const endMs = startMs + seconds * 1000;
      let nowMs = startMs;
      let tickMs = startMs;
      while (nowMs < endMs && failure === undefined) {
        for (let slots = queueDepth - inFlight; slots > 0; slots--) {
          const issuedAtMs = performance.now();
          const sequence = target.write(nextOffset(), source);
          const wait = target.writeCompletion?.(sequence) ?? null;
          if (wait === null) {
            histogram.record(Math.max(1, Math.round((performance.now() - issuedAtMs) * 1e6)));
            completed++;
          } else {
            inFlight++;
            wait.then(() => acknowledged(issuedAtMs), failed);
          }
        }
        await nextTurn();
        nowMs = performance.now();
        if (nowMs - tickMs >= TICK_MS) {
          tickMs = nowMs;
          progress({ kind: 'tick', round, mode: setup.mode, elapsedSeconds: (nowMs - startMs) / 1000, writes: completed });
        }
      }
      if (inFlight > 0) await new Promise<void>((resolve) => { allDone = resolve; });
      const elapsedSeconds = (performance.now() - startMs) / 1000;
      const cpu = process.cpuUsage(cpuBefore);
      const secondarySeconds = secondaryChild === undefined || secondaryCpuBefore === undefined ? null : secondaryChild.cpuSeconds() - secondaryCpuBefore;
      if (failure !== undefined) {
        throw new Error(`bench: a ${setup.mode} write failed: ${(failure as Error).message ?? String(failure)}`, { cause: failure });
      }
      const lagAtEnd = pair === undefined ? null : lagOf(pair);
      const pairStateAtEnd = pair?.currentState ?? null;
      let drainMs: number | null = null;
      let lagAfterDrain: { records: number; bytes: number } | null = null;
      if (pair !== undefined) {
        const drainStartMs = performance.now();
        await until(pair, () => drained(pair), `draining ${setup.mode} after round ${round}`, drainTimeoutMs);
        drainMs = performance.now() - drainStartMs;
        const lag = lagOf(pair);
        lagAfterDrain = { records: lag.records, bytes: lag.bytes };
      }
      const benchSeconds = (cpu.user + cpu.system) / 1e6;
      const us = (nanoseconds: number): number => nanoseconds / 1000;
      return {
        round,
        mode: setup.mode,
        writes: completed,
        seconds: elapsedSeconds,
        iops: completed / elapsedSeconds,
        mibPerSecond: (completed * blockSizeBytes) / MIB / elapsedSeconds,
        latencyUs: {
          p50: us(histogram.percentile(50)),
          p90: us(histogram.percentile(90)),
          p99: us(histogram.percentile(99)),
          p999: us(histogram.percentile(99.9)),
          mean: us(histogram.mean),
          max: us(histogram.max),
        },
        lagAtEnd,
        pairStateAtEnd,
        suspensions: setup.suspensions - suspensionsBefore,
        drainMs,
        lagAfterDrain,
        cpu: {
          benchSeconds,
          secondarySeconds,
          usPerWrite: completed === 0 ? 0 : ((benchSeconds + (secondarySeconds ?? 0)) * 1e6) / completed,
        },
      };
    };

    for (const setup of setups) {
      progress({ kind: 'phase', phase: 'warmup', mode: setup.mode });
      await measure(setup, 0, warmupSeconds);
    }
    for (let round = 1; round <= rounds; round++) {
      const order = modes.map((_, index) => setups[(index + round - 1) % setups.length] as ModeSetup);
      const results: PairBenchRoundResult[] = [];
      for (const setup of order) {
        const result = await measure(setup, round, durationSeconds);
        results.push(result);
        progress({ kind: 'result', result });
      }
      report.rounds.push({ round, order: order.map((setup) => setup.mode), results });
    }

    // In one process both sides can be read: the secondary must hold what the primary holds.
    const identical = new Map<PairBenchMode, boolean>();
    if (secondaryHost !== undefined) {
      const secondaryController = secondaryHost.controller(SECONDARY_ID);
      const left = Buffer.allocUnsafe(MIB);
      const right = Buffer.allocUnsafe(MIB);
      for (const setup of setups) {
        const copy = secondaryController?.volume(setup.mode);
        if (setup.pair === undefined || copy === undefined) continue;
        let same = true;
        for (let byteOffset = 0; byteOffset < sizeBytes && same; byteOffset += MIB) {
          const length = Math.min(MIB, sizeBytes - byteOffset);
          setup.target.read(byteOffset, left.subarray(0, length));
          copy.read(byteOffset, right.subarray(0, length));
          same = left.subarray(0, length).equals(right.subarray(0, length));
        }
        identical.set(setup.mode, same);
      }
    }
    report.modes = summarize(report, identical);
    progress({ kind: 'phase', phase: 'close' });
    succeeded = true;
  } finally {
    // Primary first: its pairs stop and its link says goodbye before the secondary goes.
    const problems: string[] = [];
    if (primaryHost !== undefined && (await primaryHost.close()) > 0) problems.push('closing the primary controller failed');
    if (secondaryHost !== undefined && (await secondaryHost.close()) > 0) problems.push('closing the secondary controller failed');
    if (secondaryChild !== undefined) {
      const code = await secondaryChild.stop();
      if (code !== 0) problems.push(`the secondary's serve exited ${code}: ${secondaryChild.stderrText.slice(-2000)}`);
    }
    if (directory !== undefined) fs.rmSync(directory, { recursive: true, force: true });
    // Only report close problems of a run that otherwise succeeded; a failure already propagates.
    if (succeeded && problems.length > 0) throw new Error(`bench: ${problems.join('; ')}`);
  }
  report.machine.loadAverageAtEnd = os.loadavg();
  return report;
}

function summarize(report: PairBenchReport, identical: Map<PairBenchMode, boolean>): PairBenchModeSummary[] {
  const all = report.rounds.flatMap((round) => round.results);
  const noneOf = (round: number): PairBenchRoundResult | undefined => all.find((result) => result.round === round && result.mode === 'none');
  return report.options.modes.map((mode) => {
    const results = all.filter((result) => result.mode === mode);
    const ratios = (figure: (result: PairBenchRoundResult) => number): Spread | null => {
      if (!report.options.modes.includes('none')) return null;
      return spreadOf(results.map((result) => {
        const base = noneOf(result.round);
        return base === undefined ? Number.NaN : figure(result) / figure(base);
      }));
    };
    const replicated = isReplicated(mode);
    return {
      mode,
      writes: results.reduce((sum, result) => sum + result.writes, 0),
      iops: spreadOf(results.map((result) => result.iops)),
      mibPerSecond: spreadOf(results.map((result) => result.mibPerSecond)),
      p50LatencyUs: spreadOf(results.map((result) => result.latencyUs.p50)),
      p99LatencyUs: spreadOf(results.map((result) => result.latencyUs.p99)),
      iopsRatioToNone: ratios((result) => result.iops),
      p50LatencyRatioToNone: ratios((result) => result.latencyUs.p50),
      lagAtEndRecords: replicated ? spreadOf(results.map((result) => result.lagAtEnd?.records ?? 0)) : null,
      lagAtEndBytes: replicated ? spreadOf(results.map((result) => result.lagAtEnd?.bytes ?? 0)) : null,
      suspensions: results.reduce((sum, result) => sum + result.suspensions, 0),
      caughtUp: replicated ? results.every((result) => result.lagAfterDrain?.records === 0) : null,
      identical: identical.get(mode) ?? null,
    };
  });
}
