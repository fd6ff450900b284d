// The simulator at scale (issue 8), two measurements:
//
// 1. The ring (default): K controllers with P pairs in one process on the simulated network and
//    clock, a ring where controller i mirrors P/K volumes to controller i+1. Reports the set-up
//    time, the memory (RSS, heap), and the wall time per simulated second while every pair
//    mirrors a trickle of writes.
//    node dist/bench/sim-scale.js [--controllers 200] [--pairs 1000] [--seconds 5]
//
// 2. Short pair schedules per second (--schedules N), what test/scenario/83 runs 100,000 of: the
//    same seeds in every round, in this thread (CPU ms per schedule: the figure that holds while
//    other people use the cores) and, with --workers W, through sim-batch on W worker threads
//    (wall). With --baseline DIR (the dist/src of another build, e.g. a git worktree of an older
//    commit built in /tmp) each round runs both builds on the same seeds, in an order that
//    rotates from round to round, and reports the ratio this/baseline per round (median, min,
//    max): the machine's load colours both alike. In this thread the round's seeds run in chunks
//    (--chunk, default 100) that alternate between the builds; a round's figure is the median
//    chunk.
//    node dist/bench/sim-scale.js --schedules 2000 [--rounds 5] [--workers 2] [--baseline /tmp/sim-base/dist/src]
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';

import { Controller } from '../src/controller/controller';
import type { PairVolume } from '../src/replication/pair-volume';
import type { PairSpec } from '../src/replication/pairs';
import { SeededRandom } from '../src/runtime/random';
import { SimNetwork } from '../src/sim/network';
import { SimClock } from '../src/sim/sim-clock';
import type { runPairSchedule as RunPairSchedule } from '../src/sim/pair-schedule';
import type { runScheduleBatch as RunScheduleBatch } from '../src/sim/sim-batch';
import type { scheduleOptionsFor as ScheduleOptionsFor } from '../src/sim/schedule-kinds';

function argument(name: string, fallback: number): number {
  const index = process.argv.indexOf(name);
  return index < 0 ? fallback : Number(process.argv[index + 1]);
}

const CONTROLLERS = argument('--controllers', 200);
const PAIRS = argument('--pairs', 1000);
const SECONDS = argument('--seconds', 5);
const CAPACITY = 1024 * 1024;
const TUNING = { heartbeatIntervalMs: 200, deadPeerTimeoutMs: 1000, handshakeTimeoutMs: 1000, connectTimeoutMs: 1000,
  reconnectInitialDelayMs: 50, reconnectMaxDelayMs: 500 };

interface Build {
  label: string;
  runPairSchedule: typeof RunPairSchedule;
  runScheduleBatch: typeof RunScheduleBatch;
  scheduleOptionsFor: typeof ScheduleOptionsFor;
}

function loadBuild(label: string, sourceDirectory: string): Build {
  /* eslint-disable @typescript-eslint/no-var-requires */
  const schedule = require(path.join(sourceDirectory, 'sim', 'pair-schedule.js')) as { runPairSchedule: typeof RunPairSchedule };
  const batch = require(path.join(sourceDirectory, 'sim', 'sim-batch.js')) as { runScheduleBatch: typeof RunScheduleBatch };
  const kinds = require(path.join(sourceDirectory, 'sim', 'schedule-kinds.js')) as { scheduleOptionsFor: typeof ScheduleOptionsFor };
  return { label, runPairSchedule: schedule.runPairSchedule, runScheduleBatch: batch.runScheduleBatch, scheduleOptionsFor: kinds.scheduleOptionsFor };
}

function stats(values: number[]): { median: number; min: number; max: number } {
  const sorted = [...values].sort((a, b) => a - b);
  return { median: sorted[Math.floor(sorted.length / 2)] as number, min: sorted[0] as number, max: sorted[sorted.length - 1] as number };
}

/** One build's round in this thread: CPU and wall ms per schedule over the same seeds. */
async function threadRound(build: Build, firstSeed: number, count: number): Promise<{ cpuMs: number; wallMs: number; failures: number }> {
  let failures = 0;
  const cpu = process.cpuUsage();
  const wall = performance.now();
  for (let seed = firstSeed; seed < firstSeed + count; seed++) {
    const options = build.scheduleOptionsFor('short', seed);
    options.namePrefix = `bm-bench-${build.label}`;
    if ((await build.runPairSchedule(options)).violations.length > 0) failures++;
  }
  const used = process.cpuUsage(cpu);
  return { cpuMs: (used.user + used.system) / 1000 / count, wallMs: (performance.now() - wall) / count, failures };
}

async function schedulesMain(): Promise<void> {
  const count = argument('--schedules', 2000);
  const rounds = argument('--rounds', 5);
  const workers = argument('--workers', 0);
  const firstSeed = argument('--first-seed', 1_000_000);
  const CHUNK = argument('--chunk', 100);
  const baselineIndex = process.argv.indexOf('--baseline');
  const builds = [loadBuild('this', path.join(__dirname, '..', 'src'))];
  if (baselineIndex >= 0) builds.push(loadBuild('baseline', path.resolve(process.argv[baselineIndex + 1] as string)));
  // Warm-up: the JIT of each build, outside the rounds.
  for (const build of builds) await threadRound(build, 1, 200);
  const perRound: Record<string, { cpuMs: number[]; wallMs: number[]; batchWallMs: number[] }> = {};
  for (const build of builds) perRound[build.label] = { cpuMs: [], wallMs: [], batchWallMs: [] };
  let failures = 0;
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? builds : [...builds].reverse();
    const seed = firstSeed + round * count;
    // In this thread: chunks of the round's seeds, each run by every build in turn (the order
    // alternating), so a burst of load on the machine falls on both; a round's figure is the
    // median over its chunks.
    const chunks = new Map<string, { cpuMs: number[]; wallMs: number[] }>(builds.map((build) => [build.label, { cpuMs: [], wallMs: [] }]));
    for (let chunk = 0; chunk * CHUNK < count; chunk++) {
      for (const build of chunk % 2 === 0 ? order : [...order].reverse()) {
        const result = await threadRound(build, seed + chunk * CHUNK, Math.min(CHUNK, count - chunk * CHUNK));
        failures += result.failures;
        const entry = chunks.get(build.label) as { cpuMs: number[]; wallMs: number[] };
        entry.cpuMs.push(result.cpuMs);
        entry.wallMs.push(result.wallMs);
      }
    }
    for (const build of order) {
      const result = { cpuMs: stats((chunks.get(build.label) as { cpuMs: number[] }).cpuMs).median, wallMs: stats((chunks.get(build.label) as { wallMs: number[] }).wallMs).median };
      const entry = perRound[build.label] as { cpuMs: number[]; wallMs: number[]; batchWallMs: number[] };
      entry.cpuMs.push(result.cpuMs);
      entry.wallMs.push(result.wallMs);
      if (workers > 0) {
        const batch = await build.runScheduleBatch({ kind: 'short', firstSeed: seed, count, workers });
        failures += batch.failureCount;
        entry.batchWallMs.push(batch.elapsedMs / count);
      }
      process.stderr.write(`round ${round + 1} ${build.label}: ${result.cpuMs.toFixed(3)} ms CPU, ${result.wallMs.toFixed(3)} ms wall per schedule in one thread` +
        `${workers > 0 ? `; ${(entry.batchWallMs[entry.batchWallMs.length - 1] as number).toFixed(3)} ms wall per schedule on ${workers} workers` : ''}\n`);
    }
  }
  const summary: Record<string, unknown> = {};
  for (const build of builds) {
    const entry = perRound[build.label] as { cpuMs: number[]; wallMs: number[]; batchWallMs: number[] };
    const cpu = stats(entry.cpuMs);
    summary[build.label] = {
      cpuMsPerSchedule: cpu, wallMsPerSchedule: stats(entry.wallMs), schedulesPerCpuSecond: 1000 / cpu.median,
      ...(workers > 0 ? { batchWallMsPerSchedule: stats(entry.batchWallMs), batchSchedulesPerSecond: 1000 / stats(entry.batchWallMs).median,
        projected100kSeconds: (stats(entry.batchWallMs).median * 100_000) / 1000 } : {}),
    };
  }
  const ratios: Record<string, number> = {};
  if (builds.length === 2) {
    const own = perRound.this as { cpuMs: number[]; batchWallMs: number[] };
    const base = perRound.baseline as { cpuMs: number[]; batchWallMs: number[] };
    const cpuRatio = stats(own.cpuMs.map((value, index) => (base.cpuMs[index] as number) / value));
    summary.speedupCpu = cpuRatio;
    ratios.shortSchedulesSpeedupCpu = cpuRatio.median;
    if (workers > 0) {
      const wallRatio = stats(own.batchWallMs.map((value, index) => (base.batchWallMs[index] as number) / value));
      summary.speedupBatchWall = wallRatio;
      ratios.shortSchedulesSpeedupBatchWall = wallRatio.median;
    }
    process.stderr.write(`speed-up (baseline / this, per round): CPU median ${cpuRatio.median.toFixed(3)} (${cpuRatio.min.toFixed(3)}..${cpuRatio.max.toFixed(3)})` +
      `${workers > 0 ? `, ${workers}-worker wall median ${(summary.speedupBatchWall as { median: number }).median.toFixed(3)}` : ''}\n`);
  }
  const own = summary.this as { schedulesPerCpuSecond: number };
  ratios.shortSchedulesPerCpuSecond = own.schedulesPerCpuSecond;
  process.stdout.write(`${JSON.stringify({ suite: 'sim-scale-schedules', date: new Date().toISOString(), count, rounds, workers, firstSeed, failures, loadAverage: (await import('node:os')).loadavg(), ...summary, ratios })}\n`);
  process.exit(failures === 0 ? 0 : 1);
}

async function main(): Promise<void> {
  if (process.argv.includes('--schedules')) return schedulesMain();
  const started = performance.now();
  const clock = new SimClock();
  const random = new SeededRandom(1);
  const network = new SimNetwork({ clock, random: random.fork('network'), trace: false });
  const perController = Math.ceil(PAIRS / CONTROLLERS);
  const id = (index: number): string => `c${(index + CONTROLLERS) % CONTROLLERS}`;
  const controllers: Controller[] = [];
  for (let index = 0; index < CONTROLLERS; index++) {
    const pairs: PairSpec[] = [];
    const volumes: { name: string; capacityBytes: number }[] = [];
    for (let slot = 0; slot < perController && index * perController + slot < PAIRS; slot++) {
      const name = `p${index}-${slot}`;
      volumes.push({ name: `out${slot}`, capacityBytes: CAPACITY });
      pairs.push({ name, volume: `out${slot}`, peer: id(index + 1), remoteVolume: `in${slot}`, mode: 'async', role: 'primary' });
    }
    const previous = (index + CONTROLLERS - 1) % CONTROLLERS;
    for (let slot = 0; slot < perController && previous * perController + slot < PAIRS; slot++) {
      volumes.push({ name: `in${slot}`, capacityBytes: CAPACITY });
      pairs.push({ name: `p${previous}-${slot}`, volume: `in${slot}`, peer: id(index - 1), remoteVolume: `out${slot}`, mode: 'async', role: 'secondary' });
    }
    controllers.push(new Controller({
      id: id(index), network: network.node(id(index)), clock, random: random.fork(id(index)),
      volumes,
      replication: { ...TUNING, listen: { host: id(index), port: 7000 } },
      peers: [{ id: id(index + 1), address: { host: id(index + 1), port: 7000 } }, { id: id(index - 1), address: { host: id(index - 1), port: 7000 } }],
      pairs,
      journal: { journalCapacityBytes: 256 * 1024 },
    }));
  }
  for (const controller of controllers) await controller.start();
  const primaries = controllers.flatMap((controller) => (controller.pairs?.specs ?? [])
    .filter((spec) => spec.role === 'primary')
    .map((spec) => ({ pair: controller.pairs?.primary(spec.name), target: controller.exportVolume(spec.volume) as PairVolume })));
  const mirroring = (): number => primaries.filter((entry) => entry.pair?.currentState === 'mirroring').length;
  await clock.runUntil(() => mirroring() === PAIRS, { maxTimeMs: 60_000 });
  const setupSeconds = (performance.now() - started) / 1000;
  const memory = process.memoryUsage();
  // A trickle: every pair gets one 4 KiB write every 100 ms of simulated time.
  const data = Buffer.alloc(4096, 1);
  const runStarted = performance.now();
  for (let step = 0; step < SECONDS * 10; step++) {
    for (const entry of primaries) entry.target.write(random.int(CAPACITY / 4096) * 4096, data);
    await clock.runFor(100);
  }
  const wallPerSimulatedSecond = (performance.now() - runStarted) / 1000 / SECONDS;
  await clock.runFor(1000);
  const lagging = primaries.filter((entry) => ((entry.pair?.status().lag as { records: number }).records > 0)).length;
  const result = {
    suite: 'sim-scale', date: new Date().toISOString(), controllers: CONTROLLERS, pairs: PAIRS, mirroring: mirroring(),
    setupSeconds, rssMiB: memory.rss / 2 ** 20, heapUsedMiB: memory.heapUsed / 2 ** 20,
    wallSecondsPerSimulatedSecond: wallPerSimulatedSecond, writesPerSimulatedSecond: PAIRS * 10, pairsLaggingAtEnd: lagging,
  };
  process.stderr.write(`${CONTROLLERS} controllers, ${PAIRS} pairs (${result.mirroring} mirroring): set-up ${setupSeconds.toFixed(1)} s, ` +
    `RSS ${result.rssMiB.toFixed(0)} MiB (heap ${result.heapUsedMiB.toFixed(0)} MiB), ${wallPerSimulatedSecond.toFixed(2)} s of wall time per simulated second ` +
    `with ${PAIRS * 10} writes per simulated second\n`);
  for (const controller of controllers) controller.crash();
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
}

main().catch((error: unknown) => {
  process.stderr.write(`${String((error as Error)?.stack ?? error)}\n`);
  process.exit(1);
});
