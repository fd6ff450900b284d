// Replication end to end over NBD: fio's nbd engine (one connection per job) against the
// primary's exports of a `blockmirror serve` process, for `none` (a plain export), `async` and
// `sync` (pairs to a second `serve` process over loopback TCP), in one run with interleaved
// rounds. Reports per job and mode IOPS, MiB/s, p50/p99 total latency (fio's lat_ns, submission
// to completion), the CPU seconds of both serve processes per write, the pair's lag when fio
// ends, and the ratios to `none` (median and min..max over rounds, paired within each round).
//
// Usage: node dist/bench/pair-fio.js [--runtime 5] [--ramp 1] [--rounds 3] [--size 256MiB]
//        [--only JOB,...] [--modes none,async,sync]
// Output: a markdown table on stdout, the full results in bench/results/pair-fio-<date>.json,
// and as the last stdout line a JSON object {ratios, targets} for bench/run.js.
//
// Both configs come from the same builder as `blockmirror bench` (src/bench/pair-bench.ts,
// pairBenchConfigs): controller bench-b (the secondaries) listens on any free port; controller
// bench-a (volumes none, async, sync, and the two pairs) dials the address bench-b printed.
// Every volume is filled once by a sequential 1 MiB fio pass (through its pair, drained), so no
// timed write meets a fresh page. Round r rotates the order of the modes within each job; after
// each fio run on a pair the bench waits until the pair is mirroring with lag 0, so a backlog
// never runs in the next mode's window.
//
// Expectation, written before measuring (2-core VM, Node 20, loopback TCP):
// - `none` is nbd-fio's blockmirror figure: ~15 k IOPS at QD1 (~50 us), 60-140 k at QD32.
// - `async` acknowledges once stored locally, so its latency is none's plus the journal append
//   (~1 us); but the primary also encodes and ships every record and the secondary process
//   applies it: on 2 cores fio, two servers and the kernel share the CPUs, so at QD32 expect
//   0.7-1.0 of none's IOPS.
// - `sync` acknowledges when the secondary applied the write: at QD1 one more loopback round
//   trip between processes (~20-100 us on this VM, measured below) plus the secondary's apply
//   and the position message (~10-30 us). At QD32 the records of many writes share a message
//   and a position, so the round trip is amortized: expect 0.5-0.8 of none.
// Targets (printed beside the figures, never asserted): async >= 0.9 of none's IOPS at QD32;
// sync >= 0.6 at QD32; sync QD1 p50 latency <= none's + one loopback round trip + 30 us.

import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';

import { AdminClient } from '../src/admin/client';
import { type PairBenchMode, type Spread, pairBenchConfigs, spreadOf } from '../src/bench/pair-bench';
import { ServeChild } from '../src/bench/serve-child';
import { writeResults } from './results';
import { fixed, parseSizeText, runFio, warnIfBusy } from './common';

const MIB = 1024 * 1024;

/** fio's JSON output, the part read here. */
type FioJobs = { jobs: { error: number; write: FioDirection }[] };
const MODES: readonly PairBenchMode[] = ['none', 'async', 'sync'];
const ASYNC_QD32_TARGET = 0.9;
const SYNC_QD32_TARGET = 0.6;
const SYNC_QD1_EXTRA_US = 30;
const QD32_JOB = '4k-randwrite-qd32';
const QD1_JOB = '4k-randwrite-qd1';
const ROUND_TRIPS = 2000;
const DRAIN_TIMEOUT_MS = 120_000;

interface JobSpec {
  name: string;
  rw: 'randwrite' | 'write';
  blockBytes: number;
  iodepth: number;
}

const JOBS: JobSpec[] = [
  { name: QD1_JOB, rw: 'randwrite', blockBytes: 4096, iodepth: 1 },
  { name: QD32_JOB, rw: 'randwrite', blockBytes: 4096, iodepth: 32 },
  { name: '64k-write-qd16', rw: 'write', blockBytes: 64 * 1024, iodepth: 16 },
  { name: '1m-write-qd8', rw: 'write', blockBytes: MIB, iodepth: 8 },
];

interface Options {
  runtimeSeconds: number;
  rampSeconds: number;
  rounds: number;
  sizeBytes: number;
  only: string[] | undefined;
  modes: PairBenchMode[];
}

interface Measurement {
  round: number;
  job: string;
  mode: PairBenchMode;
  iops: number;
  mibPerSecond: number;
  p50LatencyUs: number;
  p99LatencyUs: number;
  ioCount: number;
  /** utime+stime of the primary and the secondary serve over the measured window. */
  primaryCpuSeconds: number;
  secondaryCpuSeconds: number;
  cpuUsPerWrite: number;
  lagAtEnd: { records: number; bytes: number } | null;
  drainMs: number | null;
  fioError: number;
}

function usage(message: string): never {
  process.stderr.write(`pair-fio: ${message}\nusage: node dist/bench/pair-fio.js [--runtime S] [--ramp S] [--rounds N] [--size 256MiB] ` +
    `[--only JOB,...] [--modes none,async,sync]\njobs: ${JOBS.map((job) => job.name).join(', ')}\n`);
  process.exit(2);
}


function parseOptions(argv: string[]): Options {
  const options: Options = { runtimeSeconds: 5, rampSeconds: 1, rounds: 3, sizeBytes: 256 * MIB, only: undefined, modes: [...MODES] };
  for (let i = 0; i < argv.length; i++) {
    const argument = argv[i] as string;
    const take = (): string => {
      const value = argv[i + 1];
      if (value === undefined) usage(`${argument} needs a value`);
      i++;
      return value;
    };
    switch (argument) {
      case '--runtime': options.runtimeSeconds = Number(take()); break;
      case '--ramp': options.rampSeconds = Number(take()); break;
      case '--rounds': options.rounds = Number(take()); break;
      case '--size': options.sizeBytes = (parseSizeText(take()) ?? usage('bad --size')); break;
      case '--only': options.only = take().split(','); break;
      case '--modes': options.modes = take().split(',') as PairBenchMode[]; break;
      case '--help': case '-h': usage('help');
      // falls through (usage exits)
      default: usage(`unknown argument ${argument}`);
    }
  }
  if (!(options.runtimeSeconds > 0) || !(options.rampSeconds >= 0)) usage('--runtime must be > 0 and --ramp >= 0');
  if (!Number.isInteger(options.rounds) || options.rounds < 1 || options.rounds > 20) usage('--rounds must be 1..20');
  if (options.sizeBytes < 16 * MIB || options.sizeBytes % (4 * 1024) !== 0) usage('--size must be a multiple of 4KiB, at least 16MiB');
  for (const name of options.only ?? []) if (!JOBS.some((job) => job.name === name)) usage(`unknown job ${name}`);
  if (options.modes.length === 0 || options.modes.some((mode) => !MODES.includes(mode)) || new Set(options.modes).size !== options.modes.length) {
    usage(`--modes must be distinct entries of ${MODES.join(',')}`);
  }
  return options;
}

interface FioDirection {
  iops: number;
  bw_bytes: number;
  total_ios: number;
  /** Total latency (submission + completion); percentiles with --lat_percentiles=1. */
  lat_ns: { percentile?: Record<string, number> };
}


/** The primary pair `name`'s status from the primary serve's admin endpoint. */
async function pairStatus(admin: AdminClient, name: string): Promise<{ state: string; lag: { records: number; bytes: number } }> {
  const status = await admin.get('/status') as { controllers: { pairs: { name: string; role: string; state: string; lag: { records: number; bytes: number } }[] }[] };
  const pair = status.controllers.flatMap((controller) => controller.pairs).find((entry) => entry.name === name && entry.role === 'primary');
  if (pair === undefined) throw new Error(`the primary serve has no pair ${name}`);
  return pair;
}

async function waitDrained(admin: AdminClient, name: string, what: string): Promise<void> {
  const deadline = Date.now() + DRAIN_TIMEOUT_MS;
  for (;;) {
    const pair = await pairStatus(admin, name);
    if (pair.state === 'mirroring' && pair.lag.records === 0) return;
    if (Date.now() > deadline) throw new Error(`${what}: pair ${name} is ${pair.state} with lag ${JSON.stringify(pair.lag)} after ${DRAIN_TIMEOUT_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * The loopback round trip between two processes, as a pair's sync write pays it: 64-byte
 * ping-pong with a Node echo child over TCP (Nagle off on both ends). Returns p50 and p99 in us.
 */
async function loopbackRoundTrip(): Promise<{ p50Us: number; p99Us: number; count: number }> {
  const source = "const net=require('net');const s=net.createServer((c)=>{c.setNoDelay(true);c.on('data',(d)=>c.write(d));});" +
    "s.listen(0,'127.0.0.1',()=>process.stdout.write(s.address().port+'\\n'));process.stdin.on('end',()=>process.exit(0));process.stdin.resume();";
  const child = spawn(process.execPath, ['-e', source], { stdio: ['pipe', 'pipe', 'inherit'] });
  try {
    const port = await new Promise<number>((resolve, reject) => {
      child.stdout.setEncoding('utf8');
      child.stdout.once('data', (text: string) => resolve(Number(text.trim())));
      child.once('exit', (code) => reject(new Error(`echo child exited ${code}`)));
    });
    const socket = net.connect(port, '127.0.0.1');
    socket.setNoDelay(true);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const message = Buffer.alloc(64, 0x5a);
    const samples: number[] = [];
    let received = 0;
    let onReply: (() => void) | undefined;
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (received >= message.length) {
        received -= message.length;
        onReply?.();
      }
    });
    for (let i = 0; i < ROUND_TRIPS + 200; i++) {
      const startMs = performance.now();
      await new Promise<void>((resolve) => {
        onReply = resolve;
        socket.write(message);
      });
      if (i >= 200) samples.push((performance.now() - startMs) * 1000);
    }
    socket.destroy();
    samples.sort((a, b) => a - b);
    return { p50Us: samples[Math.floor(samples.length / 2)] as number, p99Us: samples[Math.floor(samples.length * 0.99)] as number, count: samples.length };
  } finally {
    child.stdin.end();
    child.kill();
  }
}


function spreadText(spread: Spread, digits = 0): string {
  return spread.min === spread.max ? fixed(spread.median, digits) : `${fixed(spread.median, digits)} (${fixed(spread.min, digits)}..${fixed(spread.max, digits)})`;
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const jobs = JOBS.filter((job) => options.only === undefined || options.only.includes(job.name));
  const loadAtStart = warnIfBusy('pair-fio', 'fio and both servers');
  const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'bm-pair-fio-'));
  const replicated = options.modes.filter((mode) => mode !== 'none');
  let secondary: ServeChild | undefined;
  let primary: ServeChild | undefined;
  const measurements: Measurement[] = [];
  const roundTrips: { round: number; p50Us: number; p99Us: number; count: number }[] = [];
  try {
    const serveArgs = (name: string): string[] => ['--port', '0', '--admin', path.join(directory, `${name}.sock`), '--quiet', '--log-level', 'error'];
    let secondaryPort: number | undefined;
    const configs = pairBenchConfigs(options.modes, options.sizeBytes);
    if (configs.secondary !== undefined) {
      secondary = await ServeChild.start({ config: configs.secondary, directory, name: 'bench-b', args: serveArgs('bench-b') });
      secondaryPort = secondary.replicationAddress('bench-b').port;
    }
    primary = await ServeChild.start({
      config: pairBenchConfigs(options.modes, options.sizeBytes, secondaryPort).primary, directory, name: 'bench-a', args: serveArgs('bench-a'),
    });
    const admin = new AdminClient(path.join(directory, 'bench-a.sock'), { timeoutMs: 10_000 });
    const started = primary;
    const uri = (mode: PairBenchMode): string => started.uri(`bench-a-${mode}`);
    for (const mode of replicated) await waitDrained(admin, mode, 'start');
    for (const mode of options.modes) {
      process.stderr.write(`pair-fio: prefill ${mode} (${options.sizeBytes / MIB} MiB)\n`);
      await runFio([`--name=prefill-${mode}`, '--ioengine=nbd', `--uri=${uri(mode)}`, '--rw=write', '--bs=1M', '--iodepth=8',
        `--size=${options.sizeBytes}`, '--numjobs=1']);
      if (mode !== 'none') await waitDrained(admin, mode, `prefill of ${mode}`);
    }

    const cpuOf = (): { primary: number; secondary: number } => ({ primary: started.cpuSeconds(), secondary: secondary?.cpuSeconds() ?? 0 });
    for (let round = 1; round <= options.rounds; round++) {
      const trip = await loopbackRoundTrip();
      roundTrips.push({ round, ...trip });
      process.stderr.write(`pair-fio: round ${round}/${options.rounds}: loopback round trip p50 ${fixed(trip.p50Us)} us, p99 ${fixed(trip.p99Us)} us\n`);
      const order = options.modes.map((_, index) => options.modes[(index + round - 1) % options.modes.length] as PairBenchMode);
      for (const job of jobs) {
        for (const mode of order) {
          process.stderr.write(`pair-fio: round ${round}/${options.rounds} ${job.name} ${mode} (${options.runtimeSeconds} s + ${options.rampSeconds} s ramp)\n`);
          // CPU is counted from the end of the ramp to the end of the run, the window fio reports on.
          let atRampEnd: { primary: number; secondary: number } | undefined;
          const atStart = cpuOf();
          const rampTimer = setTimeout(() => { atRampEnd = cpuOf(); }, options.rampSeconds * 1000);
          let result: FioJobs;
          try {
            result = await runFio<FioJobs>([
              `--name=${job.name}-${mode}`, '--ioengine=nbd', `--uri=${uri(mode)}`, `--rw=${job.rw}`, `--bs=${job.blockBytes}`,
              `--iodepth=${job.iodepth}`, `--size=${options.sizeBytes}`, '--numjobs=1', '--time_based',
              `--runtime=${options.runtimeSeconds}`, `--ramp_time=${options.rampSeconds}`, '--norandommap', '--randrepeat=1', '--lat_percentiles=1',
            ]);
          } finally {
            clearTimeout(rampTimer);
          }
          const atEnd = cpuOf();
          const lagAtEnd = mode === 'none' ? null : (await pairStatus(admin, mode)).lag;
          let drainMs: number | null = null;
          if (mode !== 'none') {
            const drainStartMs = performance.now();
            await waitDrained(admin, mode, `${job.name} round ${round}`);
            drainMs = performance.now() - drainStartMs;
          }
          const fioJob = result.jobs[0];
          if (fioJob === undefined) throw new Error('fio reported no job');
          const percentile = fioJob.write.lat_ns.percentile ?? {};
          const from = atRampEnd ?? atStart;
          const primaryCpuSeconds = atEnd.primary - from.primary;
          const secondaryCpuSeconds = atEnd.secondary - from.secondary;
          const ioCount = fioJob.write.total_ios;
          measurements.push({
            round, job: job.name, mode,
            iops: fioJob.write.iops,
            mibPerSecond: fioJob.write.bw_bytes / MIB,
            p50LatencyUs: (percentile['50.000000'] ?? 0) / 1000,
            p99LatencyUs: (percentile['99.000000'] ?? 0) / 1000,
            ioCount,
            primaryCpuSeconds,
            secondaryCpuSeconds,
            cpuUsPerWrite: ioCount > 0 ? ((primaryCpuSeconds + secondaryCpuSeconds) * 1e6) / ioCount : 0,
            lagAtEnd: lagAtEnd === null ? null : { records: lagAtEnd.records, bytes: lagAtEnd.bytes },
            drainMs,
            fioError: fioJob.error,
          });
        }
      }
    }
  } finally {
    if (primary !== undefined) await primary.stop();
    if (secondary !== undefined) await secondary.stop();
    fs.rmSync(directory, { recursive: true, force: true });
  }

  const tripP50 = spreadOf(roundTrips.map((trip) => trip.p50Us));
  const rows: string[] = [];
  rows.push('| job | mode | IOPS | MiB/s | p50 us | p99 us | CPU us/write (both) | lag at end (records) | IOPS / none |');
  rows.push('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  const perJob: Record<string, unknown>[] = [];
  const summaryOf = (job: string, mode: PairBenchMode): Record<string, unknown> & { iops: Spread; p50LatencyUs: Spread; iopsRatioToNone: Spread | null } => {
    const own = measurements.filter((m) => m.job === job && m.mode === mode);
    const ratio = options.modes.includes('none') ? spreadOf(own.map((m) => {
      const base = measurements.find((b) => b.job === job && b.mode === 'none' && b.round === m.round);
      return base === undefined ? Number.NaN : m.iops / base.iops;
    })) : null;
    return {
      job, mode,
      iops: spreadOf(own.map((m) => m.iops)),
      mibPerSecond: spreadOf(own.map((m) => m.mibPerSecond)),
      p50LatencyUs: spreadOf(own.map((m) => m.p50LatencyUs)),
      p99LatencyUs: spreadOf(own.map((m) => m.p99LatencyUs)),
      cpuUsPerWrite: spreadOf(own.map((m) => m.cpuUsPerWrite)),
      lagAtEndRecords: mode === 'none' ? null : spreadOf(own.map((m) => m.lagAtEnd?.records ?? 0)),
      iopsRatioToNone: ratio,
    };
  };
  const summaries = new Map<string, ReturnType<typeof summaryOf>>();
  for (const job of jobs) {
    for (const mode of options.modes) {
      const summary = summaryOf(job.name, mode);
      summaries.set(`${job.name}/${mode}`, summary);
      perJob.push(summary);
      const lag = summary.lagAtEndRecords as Spread | null;
      rows.push(`| ${job.name} | ${mode} | ${spreadText(summary.iops)} | ${spreadText(summary.mibPerSecond as Spread, 1)} | ` +
        `${spreadText(summary.p50LatencyUs, 1)} | ${spreadText(summary.p99LatencyUs as Spread, 1)} | ${spreadText(summary.cpuUsPerWrite as Spread, 1)} | ` +
        `${lag === null ? '-' : spreadText(lag)} | ${summary.iopsRatioToNone === null ? '-' : spreadText(summary.iopsRatioToNone, 2)} |`);
    }
  }

  // Targets: printed and returned for run.js ("ratio >= target"), never asserted.
  const ratios: Record<string, number> = {};
  const targets: Record<string, number> = {};
  const lines: string[] = [];
  const asyncQd32 = summaries.get(`${QD32_JOB}/async`)?.iopsRatioToNone;
  if (asyncQd32 !== undefined && asyncQd32 !== null) {
    ratios['iops.async.qd32'] = asyncQd32.median;
    targets['iops.async.qd32'] = ASYNC_QD32_TARGET;
    lines.push(`async ${QD32_JOB}: ${spreadText(asyncQd32, 2)} of none's IOPS (target >= ${ASYNC_QD32_TARGET}: ${asyncQd32.median >= ASYNC_QD32_TARGET ? 'met' : 'NOT met'})`);
  }
  const syncQd32 = summaries.get(`${QD32_JOB}/sync`)?.iopsRatioToNone;
  if (syncQd32 !== undefined && syncQd32 !== null) {
    ratios['iops.sync.qd32'] = syncQd32.median;
    targets['iops.sync.qd32'] = SYNC_QD32_TARGET;
    lines.push(`sync ${QD32_JOB}: ${spreadText(syncQd32, 2)} of none's IOPS (target >= ${SYNC_QD32_TARGET}: ${syncQd32.median >= SYNC_QD32_TARGET ? 'met' : 'NOT met'})`);
  }
  const syncQd1 = summaries.get(`${QD1_JOB}/sync`);
  const noneQd1 = summaries.get(`${QD1_JOB}/none`);
  let syncQd1Budget: Record<string, number> | null = null;
  if (syncQd1 !== undefined && noneQd1 !== undefined && roundTrips.length > 0) {
    const budgetUs = noneQd1.p50LatencyUs.median + tripP50.median + SYNC_QD1_EXTRA_US;
    syncQd1Budget = { syncP50Us: syncQd1.p50LatencyUs.median, noneP50Us: noneQd1.p50LatencyUs.median, loopbackRoundTripP50Us: tripP50.median, budgetUs };
    // As a ratio for run.js: budget / measured >= 1 means within the budget.
    ratios['latency.sync.qd1.budget'] = budgetUs / syncQd1.p50LatencyUs.median;
    targets['latency.sync.qd1.budget'] = 1;
    lines.push(`sync ${QD1_JOB}: p50 ${fixed(syncQd1.p50LatencyUs.median)} us vs budget ${fixed(budgetUs)} us = none ${fixed(noneQd1.p50LatencyUs.median)} ` +
      `+ loopback round trip ${fixed(tripP50.median)} + ${SYNC_QD1_EXTRA_US} (target: within: ${syncQd1.p50LatencyUs.median <= budgetUs ? 'met' : 'NOT met'})`);
  }

  const result = {
    suite: 'pair-fio',
    date: new Date().toISOString(),
    machine: {
      cpus: os.cpus().length, model: os.cpus()[0]?.model, node: process.version, kernel: os.release(),
      loadAverageAtStart: loadAtStart, loadAverageAtEnd: os.loadavg(),
    },
    options,
    targets: { asyncQd32IopsRatioAtLeast: ASYNC_QD32_TARGET, syncQd32IopsRatioAtLeast: SYNC_QD32_TARGET, syncQd1LatencyExtraUs: SYNC_QD1_EXTRA_US },
    loopbackRoundTrips: roundTrips,
    syncQd1Budget,
    measurements,
    perJob,
  };
  const file = writeResults('pair-fio', result);
  process.stdout.write(`Loopback round trip between processes (64-byte ping-pong): p50 ${spreadText(tripP50, 1)} us\n\n`);
  process.stdout.write(`${rows.join('\n')}\n\n`);
  process.stdout.write(`Medians over ${options.rounds} round(s), (min..max) the spread; ratios paired within each round.\n`);
  process.stdout.write(`${lines.join('\n')}\nResults: ${file}\n`);
  process.stdout.write(`${JSON.stringify({ ratios, targets })}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`pair-fio: ${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
