// Notes on the design
// -------------------
// What a consistency group's cycle costs the hosts (seed 003, issue 9): the write-hold time per
// cycle (prepare to release on each slave: host write completions wait that long), p50 and p99
// from the slaves' exact times (CgroupSlave.recentHoldTimesMs(), the figure behind status
// `slave.holdMs`), with 1, 4 and 8 primary controllers (target: p99 <= 5 ms with 8), the cycles
// formed per second, and the RPO (the master's rpoSeconds sampled every 10 ms) under a write load:
// 8 writers, each a loop of one 4 KiB write to a random member and a wait for its completion.
//
// Setup: 8 primary and 8 secondary controllers in this one process, over real TCP links on
// 127.0.0.1 (port 0 listeners: the slaves first, p0 dials them (the lower id dials); each secondary listens and its
// primary dials it), memory volumes, one async pair per primary. So every controller shares one
// event loop and the 2 cores with the writers: a slave's hold includes the master's turn of the
// loop for every other member's prepare answer, which separate processes would run in parallel.
// A round creates group `g` over p0..p(k-1) at run time on each member, waits for a formed cycle,
// measures SECONDS under the load, and deletes it; the sizes rotate from round to round.
// Baseline, measured before each size in each round: a loopback TCP round trip (64 bytes, 2000
// samples, Nagle off) on the same machine; the hold is reported against its p50 and p99. Also
// the event loop's delay during the measured window (monitorEventLoopDelay): with every
// controller, the secondaries' copies (a snapshot per cut) and the writers on one loop, a hold
// that meets a stall of the loop lasts at least that stall.
//
// Usage: node dist/bench/cgroup.bench.js [--rounds N (5)] [--seconds S (3)] [--interval MS (0)] [--writers N (8)]

import * as net from 'node:net';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';

import { spreadOf } from '../src/bench/pair-bench';
import type { CgroupSlave } from '../src/cgroup/slave';
import type { CgroupSpec } from '../src/cgroup/types';
import { Controller } from '../src/controller/controller';
import type { PairVolume } from '../src/replication/pair-volume';
import { fixed, warnIfBusy } from './common';

function argument(name: string, fallback: number): number {
  const index = process.argv.indexOf(name);
  return index < 0 ? fallback : Number(process.argv[index + 1]);
}

const ROUNDS = argument('--rounds', 5);
const SECONDS = argument('--seconds', 3);
const INTERVAL_MS = argument('--interval', 0);
const WRITERS = argument('--writers', 8);
const N = 8;
const SIZES = [1, 4, 8];
const CAPACITY = 16 * 1024 * 1024;
const BLOCK = 4096;
const RTT_SAMPLES = 2000;
const HOLD_TARGET_MS = 5;

function percentile(sorted: readonly number[], q: number): number {
  return sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

async function tcpRoundTripsUs(count: number): Promise<number[]> {
  const server = net.createServer((socket) => socket.on('data', (chunk) => socket.write(chunk)));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const socket = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  socket.setNoDelay(true);
  await new Promise<void>((resolve) => socket.once('connect', resolve));
  const payload = Buffer.alloc(64, 1);
  const samples: number[] = [];
  for (let index = 0; index < count; index++) {
    const start = performance.now();
    await new Promise<void>((resolve) => {
      let got = 0;
      const onData = (chunk: Buffer): void => {
        got += chunk.length;
        if (got < payload.length) return;
        socket.off('data', onData);
        resolve();
      };
      socket.on('data', onData);
      socket.write(payload);
    });
    samples.push((performance.now() - start) * 1000);
  }
  socket.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return samples;
}

/** The slave object of group g on a controller (the exact hold times live there). */
function slaveOf(controller: Controller): CgroupSlave | undefined {
  const groups = controller.groups as unknown as { groups: Map<string, { slave?: CgroupSlave }> } | undefined;
  return groups?.groups.get('g')?.slave;
}

type Cycles = { counts: { cycles: number; formed: number }; rpoSeconds: number | null };

function cyclesOf(master: Controller): Cycles {
  return (master.groups?.groupStatus('g') as { cycles: Cycles }).cycles;
}

function spec(k: number): CgroupSpec {
  return {
    name: 'g',
    relationships: Array.from({ length: k }, (_, i) => ({ id: `r${i}`, role: i === 0 ? 'master' as const : 'slave' as const, controller: `p${i}`, volume: 'v' })),
    cycleIntervalMs: INTERVAL_MS,
    maxCoordinationMs: 50,
    maxDrainMs: 5000,
  };
}

async function startControllers(): Promise<{ primaries: Controller[]; secondaries: Controller[] }> {
  const listen = { host: '127.0.0.1', port: 0 };
  const secondaries: Controller[] = [];
  for (let i = 0; i < N; i++) {
    const secondary = new Controller({
      id: `s${i}`, volumes: [{ name: 'v', capacityBytes: CAPACITY }], replication: { listen }, peers: [{ id: `p${i}` }],
      pairs: [{ name: `cg-${i}`, volume: 'v', peer: `p${i}`, remoteVolume: 'v', mode: 'async', role: 'secondary' }],
    });
    await secondary.start();
    secondaries.push(secondary);
  }
  // The link's lower id dials (docs/links.md): p0 dials every slave, so the slaves start first.
  const primaries: Controller[] = [];
  for (let i = N - 1; i >= 0; i--) {
    const peers: { id: string; address?: { host: string; port: number } }[] = [{ id: `s${i}`, address: secondaries[i]?.replicationAddress as { host: string; port: number } }];
    if (i === 0) for (let k = 1; k < N; k++) peers.push({ id: `p${k}`, address: primaries[k]?.replicationAddress as { host: string; port: number } });
    else peers.push({ id: 'p0' });
    const primary = new Controller({
      id: `p${i}`, volumes: [{ name: 'v', capacityBytes: CAPACITY }], replication: { listen }, peers,
      pairs: [{ name: `cg-${i}`, volume: 'v', peer: `s${i}`, remoteVolume: 'v', mode: 'async', role: 'primary' }],
    });
    await primary.start();
    primaries[i] = primary;
  }
  for (const [i, primary] of primaries.entries()) {
    for (let waited = 0; primary.pairs?.primary(`cg-${i}`)?.currentState !== 'mirroring'; waited++) {
      if (waited > 400) throw new Error(`cgroup bench: pair cg-${i} does not mirror`);
      await sleep(25);
    }
  }
  return { primaries, secondaries };
}

interface SizeResult extends Record<string, number> {
  rttP50Us: number;
  rttP99Us: number;
  loopDelayP99Ms: number;
  holdP50Ms: number;
  holdP99Ms: number;
  holdMaxMs: number;
  holds: number;
  cyclesPerSecond: number;
  formedPerSecond: number;
  rpoP50Ms: number;
  rpoMaxMs: number;
  writesPerSecond: number;
  holdP50OverRttP50: number;
  holdP99OverRttP99: number;
}

async function measure(primaries: Controller[], k: number): Promise<SizeResult> {
  const rtt = (await tcpRoundTripsUs(RTT_SAMPLES)).sort((a, b) => a - b);
  const members = primaries.slice(0, k);
  const master = members[0] as Controller;
  for (const member of [...members.slice(1), master]) member.groups?.create(spec(k));
  for (let waited = 0; cyclesOf(master).counts.formed < 3; waited++) {
    if (waited > 400) throw new Error(`cgroup bench: group of ${k} does not form: ${JSON.stringify(master.groups?.groupStatus('g'))}`);
    await sleep(25);
  }
  // The load: WRITERS loops of write + completion on random members.
  let stopping = false;
  let writes = 0;
  let state = 0x9e3779b9 + k;
  const random = (bound: number): number => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state % bound;
  };
  const block = Buffer.alloc(BLOCK, k);
  const writers = Array.from({ length: WRITERS }, async () => {
    while (!stopping) {
      const volume = members[random(k)]?.exportVolume('v') as PairVolume;
      const completion = volume.writeCompletion(volume.write(random(CAPACITY / BLOCK) * BLOCK, block));
      if (completion !== null) await completion;
      else await new Promise<void>((resolve) => setImmediate(resolve));
      writes++;
    }
  });
  await sleep(200);
  const slaves = members.map((member) => slaveOf(member) as CgroupSlave);
  const before = slaves.map((slave) => slave.recentHoldTimesMs().length);
  const start = cyclesOf(master).counts;
  const writesBefore = writes;
  const loop = monitorEventLoopDelay({ resolution: 1 });
  loop.enable();
  const started = performance.now();
  const rpo: number[] = [];
  while (performance.now() - started < SECONDS * 1000) {
    await sleep(10);
    const seconds = cyclesOf(master).rpoSeconds;
    if (seconds !== null) rpo.push(seconds * 1000);
  }
  const elapsed = (performance.now() - started) / 1000;
  loop.disable();
  const end = cyclesOf(master).counts;
  const writesDone = writes - writesBefore;
  const holds = slaves.flatMap((slave, index) => slave.recentHoldTimesMs().slice(before[index])).sort((a, b) => a - b);
  stopping = true;
  await Promise.all(writers);
  master.groups?.delete('g');
  for (const member of members.slice(1)) member.groups?.delete('g');
  rpo.sort((a, b) => a - b);
  const result: SizeResult = {
    rttP50Us: percentile(rtt, 0.5),
    rttP99Us: percentile(rtt, 0.99),
    // The event loop's own delay in the same window (1 ms sampling timer): the floor of any tail here.
    loopDelayP99Ms: loop.percentile(99) / 1e6,
    holdP50Ms: percentile(holds, 0.5),
    holdP99Ms: percentile(holds, 0.99),
    holdMaxMs: holds[holds.length - 1] ?? Number.NaN,
    holds: holds.length,
    cyclesPerSecond: (end.cycles - start.cycles) / elapsed,
    formedPerSecond: (end.formed - start.formed) / elapsed,
    rpoP50Ms: percentile(rpo, 0.5),
    rpoMaxMs: rpo[rpo.length - 1] ?? Number.NaN,
    writesPerSecond: writesDone / elapsed,
    holdP50OverRttP50: 0,
    holdP99OverRttP99: 0,
  };
  result.holdP50OverRttP50 = (result.holdP50Ms * 1000) / result.rttP50Us;
  result.holdP99OverRttP99 = (result.holdP99Ms * 1000) / result.rttP99Us;
  return result;
}

async function main(): Promise<void> {
  const load = warnIfBusy('cgroup', 'the cycles');
  process.stderr.write(`cgroup bench: ${N} primary + ${N} secondary controllers in this process over TCP on 127.0.0.1 (port 0 listeners), ` +
    `memory volumes, async pairs; ${WRITERS} writers of 4 KiB; cycleIntervalMs ${INTERVAL_MS}; ${ROUNDS} rounds of ${SECONDS} s per size\n`);
  const { primaries, secondaries } = await startControllers();
  const rounds: Record<string, SizeResult>[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const order = SIZES.map((_, index) => SIZES[(index + round) % SIZES.length] as number);
    const entry: Record<string, SizeResult> = {};
    for (const k of order) {
      entry[`k${k}`] = await measure(primaries, k);
      const r = entry[`k${k}`] as SizeResult;
      process.stderr.write(`round ${round + 1} k=${k}: hold p50 ${fixed(r.holdP50Ms, 3)} ms p99 ${fixed(r.holdP99Ms, 3)} ms (${r.holds} holds), ` +
        `${fixed(r.formedPerSecond)} formed/s of ${fixed(r.cyclesPerSecond)}, RPO p50 ${fixed(r.rpoP50Ms)} ms max ${fixed(r.rpoMaxMs)} ms, ` +
        `${fixed(r.writesPerSecond, 0)} writes/s; RTT p50 ${fixed(r.rttP50Us)} us p99 ${fixed(r.rttP99Us)} us; loop delay p99 ${fixed(r.loopDelayP99Ms, 2)} ms\n`);
    }
    rounds.push(entry);
  }
  for (const controller of [...primaries, ...secondaries]) await controller.close();
  const summary: Record<string, Record<string, ReturnType<typeof spreadOf>>> = {};
  process.stderr.write('\nmedian (min..max) over rounds:\n');
  for (const k of SIZES) {
    const key = `k${k}`;
    const fields = Object.keys(rounds[0]?.[key] ?? {});
    summary[key] = Object.fromEntries(fields.map((field) => [field, spreadOf(rounds.map((entry) => (entry[key] as SizeResult)[field] as number))]));
    process.stderr.write(`  ${k} primary controller${k === 1 ? '' : 's'}:\n`);
    for (const [field, spread] of Object.entries(summary[key] as Record<string, ReturnType<typeof spreadOf>>)) {
      process.stderr.write(`    ${field.padEnd(18)} ${fixed(spread.median, 3)} (${fixed(spread.min, 3)}..${fixed(spread.max, 3)})\n`);
    }
  }
  const p99With8 = summary.k8?.holdP99Ms?.median ?? Number.NaN;
  process.stdout.write(`${JSON.stringify({
    suite: 'cgroup', date: new Date().toISOString(), setup: 'in-process controllers over TCP on 127.0.0.1', loadAverage: load, rounds, summary,
    ratios: { holdP99TargetOverP99With8: HOLD_TARGET_MS / p99With8 }, targets: { holdP99TargetOverP99With8: 1 },
  })}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`${String((error as Error)?.stack ?? error)}\n`);
  process.exit(1);
});
