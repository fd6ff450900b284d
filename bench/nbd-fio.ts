// End-to-end NBD bench: fio's nbd engine (one connection per job) against `blockmirror serve`
// (a plain export and a replicated one: an async pair to a second serve process) and, in the
// same rounds, against nbdkit's memory plugin with one thread (the baseline); then the
// ext4-over-nbdfuse workload (bench/nbd-ext4.ts) against the plain export and against default
// `nbdkit memory` (its default threads).
//
// Usage: node dist/bench/nbd-fio.js [--runtime 5] [--ramp 1] [--rounds 3] [--size 256MiB]
//        [--only JOB,...] [--targets plain,replicated[,plain-copy][,plain-workers][,plain-loop]] [--workers 2]
//        [--ext4-rounds 3]   (0: skip)
// plain-copy is the plain export of a second serve whose payloads are copied as before
// (BLOCKMIRROR_NBD_RECEIVE=copy): the same-run A/B of receiving into the store. plain-workers is
// the plain export of a serve with `limits.workers: 2` (connections on worker threads,
// docs/nbd-workers.md): the same-run A/B of workers 0 vs 2, which matters for the jobs with
// several connections (`-4jobs`: fio numjobs=4, one connection each, summed by group_reporting).
// plain-loop is the plain export of a serve with `limits.nativeLanes: false` (every connection on
// the event loop): since lanes are the default (docs/nbd-native.md), plain / plain-loop is the
// same-run A/B of lanes vs the loop. The workers serve turns lanes off too (lanes are offered
// before workers), so plain-workers measures the workers.
// Output: markdown tables on stdout, the full results in bench/results/nbd-fio-<date>.json,
// and as the last stdout line a JSON object {ratios, targets} for bench/run.js.
//
// How the figures are made (so that they tell the truth on a noisy 2-core VM):
// - Interleaved rounds: round r runs every job on every server, the servers in an order rotated
//   by r, so drift hits all alike. Each ratio is taken within one round (blockmirror's round r /
//   nbdkit's round r) and reported as the median with min..max over the rounds: a figure whose
//   spread straddles 1.0 is not a win.
// - CPU per I/O comes from the same fio runs as the IOPS: utime+stime of the server process
//   (every thread; /proc/<pid>/stat) at the end of fio's ramp and at its end, divided by fio's
//   I/O count for that window. For the replicated export the primary's CPU is the figure
//   compared (the secondary's is reported beside it: nbdkit has no replica to pay for).
// - Every volume is filled once with 1 MiB writes before the rounds, so no timed run meets a
//   fresh page and the read jobs read data on both servers.
// - ext4: rounds alternate blockmirror and nbdkit; the wall time of mkfs..e2fsck per round, ratio
//   within each round as above.
//
// Expectation, written before measuring (2-core VM, loopback TCP, Node 20): QD1 is a loopback
// round trip (~25-40 us) plus the server's turn; nbdkit's turn is a few us of C, ours an event
// loop turn and a JS header parse, so ~0.9-1.0x. QD32 4 KiB is CPU-bound on two cores shared
// with fio: ~1.0x at best. 1 MiB writes are copy-bound: with the payload received straight into
// the store one copy fewer than nbdkit, so up to ~1.2-1.4x; replicated exports pay the journal
// append (one more copy) and the pair's shipping on the same two cores.
// Several connections (4 jobs x QD8, 4 KiB): on one loop the server's turn is the bottleneck, so
// workers 2 should give up to ~1.5-1.8x on two cores shared with fio (fio's own threads take the
// rest); a single connection gains nothing from workers (~1.0x, one hand-off per connection).
// Targets (reported, not enforced): >= 1.0x nbdkit -t 1 IOPS on every job at <= 1.0x its CPU
// per I/O; 1 MiB writes >= 1.2x; ext4 workload <= 0.9x default nbdkit's time.

import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { AdminClient } from '../src/admin/client';
import { type Spread, pairBenchConfigs, spreadOf } from '../src/bench/pair-bench';
import { ServeChild, processCpuSeconds } from '../src/bench/serve-child';
import { writeResults } from './results';
import { fixed, freePort, parseSizeText, runFio, warnIfBusy } from './common';
import { EXT4_EXPORT_BYTES, ext4WorkloadAvailable, runExt4Workload } from './nbd-ext4';

const MIB = 1024 * 1024;
const IOPS_TARGET = 1.0;
const CPU_PER_IO_TARGET = 1.0;
const LARGE_WRITE_TARGET = 1.2;
const LARGE_WRITE_JOB = '1m-write-qd8';
const EXT4_TIME_TARGET = 0.9;

interface JobSpec {
  name: string;
  rw: 'randwrite' | 'randread' | 'write' | 'read';
  blockBytes: number;
  iodepth: number;
  /** fio jobs, one connection each (group_reporting sums them). @default 1 */
  numjobs?: number;
}

const JOBS: JobSpec[] = [
  { name: '4k-randwrite-qd1', rw: 'randwrite', blockBytes: 4096, iodepth: 1 },
  { name: '4k-randwrite-qd32', rw: 'randwrite', blockBytes: 4096, iodepth: 32 },
  { name: '4k-randread-qd1', rw: 'randread', blockBytes: 4096, iodepth: 1 },
  { name: '4k-randread-qd32', rw: 'randread', blockBytes: 4096, iodepth: 32 },
  { name: '64k-randwrite-qd16', rw: 'randwrite', blockBytes: 64 * 1024, iodepth: 16 },
  { name: LARGE_WRITE_JOB, rw: 'write', blockBytes: MIB, iodepth: 8 },
  { name: '4k-randwrite-qd8-4jobs', rw: 'randwrite', blockBytes: 4096, iodepth: 8, numjobs: 4 },
  { name: '4k-randread-qd8-4jobs', rw: 'randread', blockBytes: 4096, iodepth: 8, numjobs: 4 },
];

type TargetName = 'plain' | 'plain-copy' | 'plain-workers' | 'plain-loop' | 'replicated' | 'nbdkit';
type Ext4Server = 'blockmirror' | 'blockmirror-workers' | 'blockmirror-loop' | 'nbdkit';
/**
 * plain-copy: the plain export of a second serve with BLOCKMIRROR_NBD_RECEIVE=copy (A/B of the
 * receive path); plain-workers: of a serve with limits.workers 2 (A/B of the worker threads).
 */
const OURS: readonly TargetName[] = ['plain', 'plain-copy', 'plain-workers', 'plain-loop', 'replicated'];
/** The worker threads of the plain-workers serve (--workers). */
const DEFAULT_BENCH_WORKERS = 2;

interface Options {
  runtimeSeconds: number;
  rampSeconds: number;
  rounds: number;
  sizeBytes: number;
  only: string[] | undefined;
  targets: TargetName[];
  ext4Rounds: number;
  /** limits.workers of the plain-workers serve. */
  workers: number;
}

interface Measurement {
  round: number;
  target: TargetName;
  job: string;
  iops: number;
  mibPerSecond: number;
  p50LatencyUs: number;
  p99LatencyUs: number;
  ioCount: number;
  serverCpuSeconds: number;
  serverCpuUsPerIo: number;
  /** The replicated export's secondary serve (0 otherwise). */
  secondaryCpuUsPerIo: number;
  fioError: number;
}

interface Target {
  name: TargetName;
  uri: string;
  cpu: () => number;
  secondaryCpu: () => number;
}

function usage(message: string): never {
  process.stderr.write(`nbd-fio: ${message}\nusage: node dist/bench/nbd-fio.js [--runtime S] [--ramp S] [--rounds N] [--size 256MiB] ` +
    `[--only JOB,...] [--targets plain,replicated,plain-copy,plain-workers,plain-loop] [--workers N] [--ext4-rounds N]\njobs: ${JOBS.map((j) => j.name).join(', ')}\n`);
  process.exit(2);
}

function parseOptions(argv: string[]): Options {
  const options: Options = {
    runtimeSeconds: 5, rampSeconds: 1, rounds: 3, sizeBytes: 256 * MIB, only: undefined, targets: ['plain', 'replicated'], ext4Rounds: 3,
    workers: DEFAULT_BENCH_WORKERS,
  };
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
      case '--rounds': case '--repeat': options.rounds = Number(take()); break;
      case '--size': options.sizeBytes = (parseSizeText(take()) ?? usage('bad --size')); break;
      case '--only': options.only = take().split(','); break;
      case '--targets': options.targets = take().split(',') as TargetName[]; break;
      case '--ext4-rounds': options.ext4Rounds = Number(take()); break;
      case '--workers': options.workers = Number(take()); break;
      case '--help': case '-h': usage('help');
      // falls through (usage exits)
      default: usage(`unknown argument ${argument}`);
    }
  }
  if (!(options.runtimeSeconds > 0) || !(options.rampSeconds >= 0)) usage('runtime must be > 0 and ramp >= 0');
  if (!Number.isInteger(options.rounds) || options.rounds < 1 || options.rounds > 20) usage('rounds must be 1..20');
  if (!Number.isInteger(options.workers) || options.workers < 1 || options.workers > 64) usage('workers must be 1..64');
  if (!Number.isInteger(options.ext4Rounds) || options.ext4Rounds < 0 || options.ext4Rounds > 20) usage('ext4-rounds must be 0..20');
  if (options.sizeBytes < 16 * MIB || options.sizeBytes % MIB !== 0) usage('--size must be a multiple of 1MiB, at least 16MiB');
  for (const name of options.only ?? []) if (!JOBS.some((job) => job.name === name)) usage(`unknown job ${name}`);
  if (options.targets.some((target) => !OURS.includes(target)) || new Set(options.targets).size !== options.targets.length) {
    usage(`--targets must be distinct entries of ${OURS.join(',')}`);
  }
  return options;
}

async function waitFor(probe: () => boolean, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** `nbdkit -f memory SIZE`, with `-t threads` when given (default: nbdkit's default threads). */
async function startNbdkit(sizeBytes: number, directory: string, threads: number | undefined): Promise<{ child: ChildProcess; uri: string }> {
  const port = await freePort();
  const pidFile = path.join(directory, `nbdkit-${port}.pid`);
  const child = spawn('nbdkit', ['-f', ...(threads === undefined ? [] : ['-t', String(threads)]), '-i', '127.0.0.1', '-p', String(port),
    '-P', pidFile, '--exit-with-parent', 'memory', String(sizeBytes)], { stdio: ['ignore', 'inherit', 'inherit'] });
  await waitFor(() => {
    if (child.exitCode !== null) throw new Error(`nbdkit exited ${child.exitCode}`);
    return fs.existsSync(pidFile) && fs.readFileSync(pidFile, 'utf8').trim() !== '';
  }, 'nbdkit', 30_000);
  return { child, uri: `nbd://127.0.0.1:${port}/` };
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  await gone;
  clearTimeout(timer);
}

/** Resolves once the async pair is mirroring with lag 0 (no backlog runs into the next window). */
async function waitDrained(admin: AdminClient, what: string): Promise<void> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    const status = await admin.get('/status') as { controllers: { pairs: { name: string; role: string; state: string; lag: { records: number } }[] }[] };
    const pair = status.controllers.flatMap((c) => c.pairs).find((p) => p.name === 'async' && p.role === 'primary');
    if (pair === undefined) throw new Error('the primary serve has no pair async');
    if (pair.state === 'mirroring' && pair.lag.records === 0) return;
    if (Date.now() > deadline) throw new Error(`${what}: pair async is ${pair.state} with lag ${pair.lag.records} records after 120 s`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

interface FioResult {
  jobs: Array<{ error: number; read: FioDirection; write: FioDirection }>;
}

interface FioDirection {
  iops: number;
  bw_bytes: number;
  total_ios: number;
  clat_ns: { percentile?: Record<string, number> };
}

async function measure(target: Target, job: JobSpec, options: Options, round: number): Promise<Measurement> {
  // CPU is counted from the end of the ramp to the end of the run, the window fio reports on.
  let atRampEnd: { cpu: number; secondary: number } | undefined;
  const sample = (): { cpu: number; secondary: number } => ({ cpu: target.cpu(), secondary: target.secondaryCpu() });
  const atStart = sample();
  const rampTimer = setTimeout(() => { atRampEnd = sample(); }, options.rampSeconds * 1000);
  let result: FioResult;
  try {
    result = await runFio<FioResult>([
      `--name=${job.name}`, '--ioengine=nbd', `--uri=${target.uri}`, `--rw=${job.rw}`, `--bs=${job.blockBytes}`,
      `--iodepth=${job.iodepth}`, `--size=${options.sizeBytes}`, `--numjobs=${job.numjobs ?? 1}`, '--group_reporting', '--time_based',
      `--runtime=${options.runtimeSeconds}`, `--ramp_time=${options.rampSeconds}`, '--norandommap', '--randrepeat=1',
    ]);
  } finally {
    clearTimeout(rampTimer);
  }
  const atEnd = sample();
  const fioJob = result.jobs[0];
  if (fioJob === undefined) throw new Error('fio reported no job');
  const direction = job.rw.includes('read') ? fioJob.read : fioJob.write;
  const percentile = direction.clat_ns.percentile ?? {};
  const ioCount = direction.total_ios;
  const from = atRampEnd ?? atStart;
  const serverCpuSeconds = atEnd.cpu - from.cpu;
  return {
    round, target: target.name, job: job.name,
    iops: direction.iops,
    mibPerSecond: direction.bw_bytes / MIB,
    p50LatencyUs: (percentile['50.000000'] ?? 0) / 1000,
    p99LatencyUs: (percentile['99.000000'] ?? 0) / 1000,
    ioCount,
    serverCpuSeconds,
    serverCpuUsPerIo: ioCount > 0 ? (serverCpuSeconds * 1e6) / ioCount : 0,
    secondaryCpuUsPerIo: ioCount > 0 ? ((atEnd.secondary - from.secondary) * 1e6) / ioCount : 0,
    fioError: fioJob.error,
  };
}

async function prefill(uri: string, name: string, sizeBytes: number): Promise<void> {
  process.stderr.write(`nbd-fio: prefill ${name} (${sizeBytes / MIB} MiB)\n`);
  await runFio<FioResult>([`--name=prefill-${name}`, '--ioengine=nbd', `--uri=${uri}`, '--rw=write', '--bs=1M',
    '--iodepth=8', `--size=${sizeBytes}`, '--numjobs=1']);
}

function spreadText(spread: Spread, digits = 0): string {
  return spread.min === spread.max ? fixed(spread.median, digits) : `${fixed(spread.median, digits)} (${fixed(spread.min, digits)}..${fixed(spread.max, digits)})`;
}

/** Ratios ours/base paired within each round. */
function pairedRatio(ours: Measurement[], base: Measurement[], value: (m: Measurement) => number): Spread {
  return spreadOf(ours.map((m) => {
    const b = base.find((candidate) => candidate.round === m.round);
    return b === undefined ? Number.NaN : value(m) / value(b);
  }));
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const jobs = JOBS.filter((job) => options.only === undefined || options.only.includes(job.name));
  const loadAtStart = warnIfBusy('nbd-fio', 'fio and both servers');
  const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'bm-nbd-fio-'));
  const measurements: Measurement[] = [];
  const ext4Rounds: { round: number; server: Ext4Server; seconds: number; serverCpuSeconds: number }[] = [];
  const replicated = options.targets.includes('replicated');
  const modes = replicated ? (['none', 'async'] as const) : (['none'] as const);
  const ext4 = options.ext4Rounds > 0 && ext4WorkloadAvailable();
  if (options.ext4Rounds > 0 && !ext4) process.stderr.write('nbd-fio: no /dev/fuse or no nbdfuse/fuse2fs: the ext4 workload is skipped\n');
  let secondary: ServeChild | undefined;
  let primary: ServeChild | undefined;
  let copying: ServeChild | undefined;
  let threaded: ServeChild | undefined;
  let looped: ServeChild | undefined;
  const children: ChildProcess[] = [];
  try {
    const serveArgs = (name: string): string[] => ['--port', '0', '--admin', path.join(directory, `${name}.sock`), '--quiet', '--log-level', 'error'];
    let secondaryPort: number | undefined;
    if (replicated) {
      secondary = await ServeChild.start({ config: pairBenchConfigs(modes, options.sizeBytes).secondary, directory, name: 'bench-b', args: serveArgs('bench-b') });
      secondaryPort = secondary.replicationAddress('bench-b').port;
    }
    const config = pairBenchConfigs(modes, options.sizeBytes, secondaryPort).primary as { controllers: { volumes: unknown[]; exports: unknown[] }[] };
    const controller = config.controllers[0] as { volumes: unknown[]; exports: unknown[] };
    if (ext4) {
      controller.volumes.push({ name: 'fs', capacity: EXT4_EXPORT_BYTES });
      controller.exports.push({ name: 'fs', volume: 'fs' });
    }
    primary = await ServeChild.start({ config, directory, name: 'bench-a', args: serveArgs('bench-a') });
    if (options.targets.includes('plain-copy')) {
      const copyConfig = pairBenchConfigs(['none'], options.sizeBytes).primary;
      const saved = process.env.BLOCKMIRROR_NBD_RECEIVE;
      process.env.BLOCKMIRROR_NBD_RECEIVE = 'copy';
      try {
        copying = await ServeChild.start({ config: copyConfig, directory, name: 'bench-copy', args: serveArgs('bench-copy') });
      } finally {
        if (saved === undefined) delete process.env.BLOCKMIRROR_NBD_RECEIVE;
        else process.env.BLOCKMIRROR_NBD_RECEIVE = saved;
      }
    }
    // A plain serve with other limits (workers, the loop); the ext4 workload runs on it too.
    const variant = (limits: Record<string, unknown>, name: string): Promise<ServeChild> => {
      const variantConfig = { ...pairBenchConfigs(['none'], options.sizeBytes).primary, limits };
      if (ext4) {
        const variantController = (variantConfig as unknown as { controllers: { volumes: unknown[]; exports: unknown[] }[] }).controllers[0] as { volumes: unknown[]; exports: unknown[] };
        variantController.volumes.push({ name: 'fs', capacity: EXT4_EXPORT_BYTES });
        variantController.exports.push({ name: 'fs', volume: 'fs' });
      }
      return ServeChild.start({ config: variantConfig, directory, name, args: serveArgs(name) });
    };
    if (options.targets.includes('plain-workers')) threaded = await variant({ workers: options.workers, nativeLanes: false }, 'bench-workers');
    if (options.targets.includes('plain-loop')) looped = await variant({ nativeLanes: false }, 'bench-loop');
    const admin = new AdminClient(path.join(directory, 'bench-a.sock'), { timeoutMs: 10_000 });
    const nbdkit = await startNbdkit(options.sizeBytes, directory, 1);
    children.push(nbdkit.child);
    const started = primary;
    const second = secondary;
    const targets: Target[] = [];
    targets.push({ name: 'nbdkit', uri: nbdkit.uri, cpu: () => processCpuSeconds(nbdkit.child.pid as number), secondaryCpu: () => 0 });
    if (options.targets.includes('plain')) {
      targets.push({ name: 'plain', uri: started.uri('bench-a-none'), cpu: () => started.cpuSeconds(), secondaryCpu: () => 0 });
    }
    const copy = copying;
    if (copy !== undefined) {
      targets.push({ name: 'plain-copy', uri: copy.uri('bench-a-none'), cpu: () => copy.cpuSeconds(), secondaryCpu: () => 0 });
    }
    const workers = threaded;
    if (workers !== undefined) {
      targets.push({ name: 'plain-workers', uri: workers.uri('bench-a-none'), cpu: () => workers.cpuSeconds(), secondaryCpu: () => 0 });
    }
    const loop = looped;
    if (loop !== undefined) {
      targets.push({ name: 'plain-loop', uri: loop.uri('bench-a-none'), cpu: () => loop.cpuSeconds(), secondaryCpu: () => 0 });
    }
    if (replicated && second !== undefined) {
      targets.push({ name: 'replicated', uri: started.uri('bench-a-async'), cpu: () => started.cpuSeconds(), secondaryCpu: () => second.cpuSeconds() });
    }
    if (replicated) await waitDrained(admin, 'start');
    for (const target of targets) {
      await prefill(target.uri, target.name, options.sizeBytes);
      if (target.name === 'replicated') await waitDrained(admin, 'prefill');
    }
    for (let round = 1; round <= options.rounds; round++) {
      const order = targets.map((_, index) => targets[(index + round - 1) % targets.length] as Target);
      for (const job of jobs) {
        for (const target of order) {
          process.stderr.write(`nbd-fio: round ${round}/${options.rounds} ${job.name} on ${target.name} ` +
            `(${options.runtimeSeconds} s + ${options.rampSeconds} s ramp)\n`);
          measurements.push(await measure(target, job, options, round));
          if (target.name === 'replicated') await waitDrained(admin, `${job.name} round ${round}`);
        }
      }
    }
    if (ext4) {
      const kit = await startNbdkit(EXT4_EXPORT_BYTES, directory, undefined);
      children.push(kit.child);
      const servers: { server: Ext4Server; uri: string; cpu: () => number }[] = [
        { server: 'blockmirror', uri: started.uri('fs'), cpu: () => started.cpuSeconds() },
        { server: 'nbdkit', uri: kit.uri, cpu: () => processCpuSeconds(kit.child.pid as number) },
      ];
      const workersServe = threaded;
      if (workersServe !== undefined) servers.push({ server: 'blockmirror-workers', uri: workersServe.uri('fs'), cpu: () => workersServe.cpuSeconds() });
      const loopServe = looped;
      if (loopServe !== undefined) servers.push({ server: 'blockmirror-loop', uri: loopServe.uri('fs'), cpu: () => loopServe.cpuSeconds() });
      for (let round = 1; round <= options.ext4Rounds; round++) {
        // Each round starts with another server (rotated), so no arm always runs first.
        const shift = (round - 1) % servers.length;
        const order = [...servers.slice(shift), ...servers.slice(0, shift)];
        for (const entry of order) {
          process.stderr.write(`nbd-fio: ext4 round ${round}/${options.ext4Rounds} on ${entry.server}\n`);
          const workDir = path.join(directory, `ext4-${entry.server}-${round}`);
          const cpuBefore = entry.cpu();
          const seconds = await runExt4Workload(entry.uri, workDir);
          ext4Rounds.push({ round, server: entry.server, seconds, serverCpuSeconds: entry.cpu() - cpuBefore });
          fs.rmSync(workDir, { recursive: true, force: true });
        }
      }
    }
  } finally {
    for (const child of children) await stopChild(child);
    if (primary !== undefined) await primary.stop();
    if (copying !== undefined) await copying.stop();
    if (threaded !== undefined) await threaded.stop();
    if (looped !== undefined) await looped.stop();
    if (secondary !== undefined) await secondary.stop();
    fs.rmSync(directory, { recursive: true, force: true });
  }

  const rows: string[] = [];
  rows.push('| job | export | IOPS | MiB/s | p50 us | CPU us/IO | nbdkit IOPS | nbdkit CPU us/IO | IOPS ratio | CPU/IO ratio | target |');
  rows.push('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |');
  const ratios: Record<string, number> = {};
  const targetsOut: Record<string, number> = {};
  const perJob: Record<string, unknown>[] = [];
  for (const job of jobs) {
    const base = measurements.filter((m) => m.job === job.name && m.target === 'nbdkit');
    for (const name of options.targets) {
      const ours = measurements.filter((m) => m.job === job.name && m.target === name);
      const iopsRatio = pairedRatio(ours, base, (m) => m.iops);
      const cpuRatio = pairedRatio(ours, base, (m) => m.serverCpuUsPerIo);
      const iopsTarget = job.name === LARGE_WRITE_JOB ? LARGE_WRITE_TARGET : IOPS_TARGET;
      const met = iopsRatio.median >= iopsTarget && cpuRatio.median <= CPU_PER_IO_TARGET;
      const secondaryCpu = spreadOf(ours.map((m) => m.secondaryCpuUsPerIo));
      rows.push(`| ${job.name} | ${name} | ${spreadText(spreadOf(ours.map((m) => m.iops)))} | ${spreadText(spreadOf(ours.map((m) => m.mibPerSecond)), 1)} | ` +
        `${spreadText(spreadOf(ours.map((m) => m.p50LatencyUs)), 1)} | ${spreadText(spreadOf(ours.map((m) => m.serverCpuUsPerIo)), 2)}` +
        `${name === 'replicated' ? ` (+${fixed(secondaryCpu.median, 2)} secondary)` : ''} | ` +
        `${spreadText(spreadOf(base.map((m) => m.iops)))} | ${spreadText(spreadOf(base.map((m) => m.serverCpuUsPerIo)), 2)} | ` +
        `${spreadText(iopsRatio, 2)} | ${spreadText(cpuRatio, 2)} | ${met ? 'met' : 'NOT met'} |`);
      ratios[`iops.${name}.${job.name}`] = iopsRatio.median;
      targetsOut[`iops.${name}.${job.name}`] = iopsTarget;
      // bench/run.js compares ratio >= target; CPU efficiency is the inverse of the CPU/IO ratio.
      ratios[`cpuEfficiency.${name}.${job.name}`] = 1 / cpuRatio.median;
      targetsOut[`cpuEfficiency.${name}.${job.name}`] = 1 / CPU_PER_IO_TARGET;
      perJob.push({ job: job.name, export: name, iopsRatio, cpuPerIoRatio: cpuRatio, iopsTarget, targetMet: met });
    }
  }
  let ext4Summary: Record<string, unknown> | null = null;
  const lines: string[] = [];
  if (options.targets.includes('plain') && options.targets.includes('plain-copy')) {
    lines.push('Receive into the store vs copy (plain / plain-copy, same rounds): IOPS ratio, CPU/IO ratio');
    for (const job of jobs) {
      const ours = measurements.filter((m) => m.job === job.name && m.target === 'plain');
      const copied = measurements.filter((m) => m.job === job.name && m.target === 'plain-copy');
      const iops = pairedRatio(ours, copied, (m) => m.iops);
      const cpu = pairedRatio(ours, copied, (m) => m.serverCpuUsPerIo);
      lines.push(`  ${job.name}: ${spreadText(iops, 2)}, ${spreadText(cpu, 2)}`);
      perJob.push({ job: job.name, export: 'plain/plain-copy', iopsRatio: iops, cpuPerIoRatio: cpu });
    }
  }
  // Each A/B line is numerator / denominator within a round. Lanes are the default, so the
  // lanes line is plain (lanes) over plain-loop (lanes off).
  const variants: { numerator: TargetName; denominator: TargetName; key: string; title: string }[] = [
    { numerator: 'plain-workers', denominator: 'plain', key: 'workers', title: `Workers ${options.workers} (lanes off) vs the default (plain-workers / plain, same rounds)` },
    { numerator: 'plain', denominator: 'plain-loop', key: 'lanes', title: 'Native lanes vs the event loop (plain / plain-loop, same rounds)' },
  ];
  for (const { numerator, denominator, key, title } of variants) {
    if (!options.targets.includes(numerator) || !options.targets.includes(denominator)) continue;
    lines.push(`${title}: IOPS ratio, CPU/IO ratio`);
    for (const job of jobs) {
      const above = measurements.filter((m) => m.job === job.name && m.target === numerator);
      const below = measurements.filter((m) => m.job === job.name && m.target === denominator);
      const iops = pairedRatio(above, below, (m) => m.iops);
      const cpu = pairedRatio(above, below, (m) => m.serverCpuUsPerIo);
      lines.push(`  ${job.name}: ${spreadText(iops, 2)}, ${spreadText(cpu, 2)}`);
      perJob.push({ job: job.name, export: `${numerator}/${denominator}`, iopsRatio: iops, cpuPerIoRatio: cpu });
      ratios[`${key}.${job.name}`] = iops.median;
    }
  }
  if (ext4Rounds.length > 0) {
    const ours = ext4Rounds.filter((r) => r.server === 'blockmirror');
    const kit = ext4Rounds.filter((r) => r.server === 'nbdkit');
    const timeRatio = spreadOf(ours.map((r) => r.seconds / ((kit.find((k) => k.round === r.round)?.seconds) ?? Number.NaN)));
    ext4Summary = { blockmirrorSeconds: spreadOf(ours.map((r) => r.seconds)), nbdkitSeconds: spreadOf(kit.map((r) => r.seconds)), timeRatio };
    ratios['time.ext4'] = 1 / timeRatio.median;
    targetsOut['time.ext4'] = 1 / EXT4_TIME_TARGET;
    lines.push(`ext4 over nbdfuse (mkfs, 2000 x 4 KiB + 200 MiB, e2fsck): blockmirror ${spreadText(spreadOf(ours.map((r) => r.seconds)), 2)} s ` +
      `(server CPU ${spreadText(spreadOf(ours.map((r) => r.serverCpuSeconds)), 2)} s), default nbdkit ${spreadText(spreadOf(kit.map((r) => r.seconds)), 2)} s ` +
      `(CPU ${spreadText(spreadOf(kit.map((r) => r.serverCpuSeconds)), 2)} s): time ratio ${spreadText(timeRatio, 2)} ` +
      `(target <= ${EXT4_TIME_TARGET}: ${timeRatio.median <= EXT4_TIME_TARGET ? 'met' : 'NOT met'})`);
    const ext4Variants: { server: Ext4Server; key: 'workers' | 'loop'; title: string }[] = [
      { server: 'blockmirror-workers', key: 'workers', title: `ext4 with workers ${options.workers} (lanes off)` },
      { server: 'blockmirror-loop', key: 'loop', title: 'ext4 on the event loop (lanes off)' },
    ];
    for (const { server, key, title } of ext4Variants) {
      const variantExt4 = ext4Rounds.filter((r) => r.server === server);
      if (variantExt4.length === 0) continue;
      const toNbdkit = spreadOf(variantExt4.map((r) => r.seconds / ((kit.find((k) => k.round === r.round)?.seconds) ?? Number.NaN)));
      const againstPlain = spreadOf(variantExt4.map((r) => r.seconds / ((ours.find((o) => o.round === r.round)?.seconds) ?? Number.NaN)));
      ext4Summary[key] = { seconds: spreadOf(variantExt4.map((r) => r.seconds)), timeRatio: toNbdkit, againstPlain };
      if (key === 'loop') ratios['time.ext4.lanes-over-loop'] = againstPlain.median;
      lines.push(`${title}: ${spreadText(spreadOf(variantExt4.map((r) => r.seconds)), 2)} s ` +
        `(server CPU ${spreadText(spreadOf(variantExt4.map((r) => r.serverCpuSeconds)), 2)} s): time ratio to nbdkit ${spreadText(toNbdkit, 2)} ` +
        `(target <= ${EXT4_TIME_TARGET}: ${toNbdkit.median <= EXT4_TIME_TARGET ? 'met' : 'NOT met'}), to the default serve (lanes) ${spreadText(againstPlain, 2)}`);
    }
  }
  const result = {
    suite: 'nbd-fio',
    date: new Date().toISOString(),
    machine: {
      cpus: os.cpus().length, model: os.cpus()[0]?.model, node: process.version, kernel: os.release(),
      loadAverageAtStart: loadAtStart, loadAverageAtEnd: os.loadavg(),
    },
    options,
    targets: { iopsRatioAtLeast: IOPS_TARGET, largeWriteRatioAtLeast: LARGE_WRITE_TARGET, cpuPerIoRatioAtMost: CPU_PER_IO_TARGET, ext4TimeRatioAtMost: EXT4_TIME_TARGET },
    measurements,
    perJob,
    ext4: ext4Summary === null ? null : { ...ext4Summary, rounds: ext4Rounds },
  };
  const file = writeResults('nbd-fio', result);
  process.stdout.write(`${rows.join('\n')}\n\n`);
  process.stdout.write(`Medians over ${options.rounds} interleaved round(s), (min..max) the spread; ratios paired within each round.\n`);
  process.stdout.write(`${lines.join('\n')}${lines.length > 0 ? '\n' : ''}Targets: >= ${IOPS_TARGET}x nbdkit -t 1 IOPS (${LARGE_WRITE_JOB}: >= ${LARGE_WRITE_TARGET}x) ` +
    `at <= ${CPU_PER_IO_TARGET}x its CPU per I/O. Results: ${file}\n`);
  process.stdout.write(`${JSON.stringify({ ratios, targets: targetsOut })}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`nbd-fio: ${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
