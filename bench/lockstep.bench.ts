// The lockstep barrier's cost (issue 8): latency of one call after one 4 KiB write, against a
// baseline measured in the same rounds (a loopback TCP round trip plus one flush of the
// secondary's volume: the target is p99 <= 2 round trips + flush), and calls per second with 1
// to 64 concurrent callers. Two controllers in this process over a real loopback TCP link (the
// same builders as `blockmirror bench`), an async pair, interleaved rounds. Also printed: the
// percentiles of the call (p50..p99.9) and the baseline's own p99 (p99OverTailBudget: the call's
// p99 against 2 round-trip p99s + a flush p99), since on a shared machine the tail is preemption.
// Usage: node dist/bench/lockstep.bench.js [--rounds N] [--calls N (3000: fewer measure code the JIT has not compiled yet)] [--seconds S]
import * as net from 'node:net';
import { performance } from 'node:perf_hooks';

import pino from 'pino';

import { hostOf, pairBenchConfigs, spreadOf } from '../src/bench/pair-bench';
import type { PairVolume } from '../src/replication/pair-volume';

function argument(name: string, fallback: number): number {
  const index = process.argv.indexOf(name);
  return index < 0 ? fallback : Number(process.argv[index + 1]);
}

const ROUNDS = argument('--rounds', 3);
const CALLS = argument('--calls', 3000);
const SECONDS = argument('--seconds', 2);
const CONCURRENCY = [1, 4, 16, 64];

function percentile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;
}

async function tcpRoundTripsUs(count: number): Promise<number[]> {
  const server = net.createServer((socket) => socket.on('data', (chunk) => socket.write(chunk)));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  const socket = net.connect(port, '127.0.0.1');
  socket.setNoDelay(true);
  await new Promise<void>((resolve) => socket.once('connect', resolve));
  const samples: number[] = [];
  const payload = Buffer.alloc(64, 1);
  for (let index = 0; index < count; index++) {
    const start = performance.now();
    await new Promise<void>((resolve) => {
      let got = 0;
      const onData = (chunk: Buffer): void => {
        got += chunk.length;
        if (got >= payload.length) {
          socket.off('data', onData);
          resolve();
        }
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

async function main(): Promise<void> {
  const logger = pino({ level: 'silent' });
  const configs = pairBenchConfigs(['async'], 64 * 1024 * 1024);
  const secondaryHost = hostOf(configs.secondary as Record<string, unknown>, 'lockstep bench secondary', logger);
  await secondaryHost.start();
  const secondary = secondaryHost.controllers[0];
  const port = secondary?.replicationAddress?.port;
  const primaryHost = hostOf(pairBenchConfigs(['async'], 64 * 1024 * 1024, port).primary, 'lockstep bench primary', logger);
  await primaryHost.start();
  const primary = primaryHost.controllers[0];
  if (primary === undefined || secondary === undefined) throw new Error('lockstep bench: controllers missing');
  const pair = primary.pairs?.primary('async');
  for (let waited = 0; pair?.currentState !== 'mirroring'; waited++) {
    if (waited > 200) throw new Error('lockstep bench: the pair does not mirror');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const target = primary.exportVolume('async') as PairVolume;
  const block = Buffer.alloc(4096, 7);
  const rounds: Record<string, number>[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    // Baseline: a loopback round trip and a flush of the secondary volume, same round.
    const rtt = (await tcpRoundTripsUs(CALLS)).sort((a, b) => a - b);
    const flushes: number[] = [];
    const secondaryVolume = secondary.volume('async');
    for (let index = 0; index < 200; index++) {
      const start = performance.now();
      await secondaryVolume?.flush();
      flushes.push((performance.now() - start) * 1000);
    }
    flushes.sort((a, b) => a - b);
    // One caller, one write before each call.
    const latencies: number[] = [];
    for (let index = 0; index < CALLS; index++) {
      target.write((index % 1024) * 4096, block);
      const start = performance.now();
      const result = await primary.lockstep({ pairs: ['async'] });
      if (result !== 'done') throw new Error(`lockstep bench: ${result}`);
      latencies.push((performance.now() - start) * 1000);
    }
    latencies.sort((a, b) => a - b);
    const rttP50Us = percentile(rtt, 0.5);
    const flushP50Us = percentile(flushes, 0.5);
    const lockstepP99Us = percentile(latencies, 0.99);
    const budgetUs = 2 * rttP50Us + flushP50Us;
    // The baseline's own tail, for a loaded machine: a round trip's p99 there is also far
    // above its p50 (preemption by other processes), which no change to the barrier removes.
    const rttP99Us = percentile(rtt, 0.99);
    const flushP99Us = percentile(flushes, 0.99);
    const entry: Record<string, number> = {
      rttP99Us, flushP99Us, p99OverTailBudget: lockstepP99Us / (2 * rttP99Us + flushP99Us),
      rttP50Us, flushP50Us, lockstepP50Us: percentile(latencies, 0.5), lockstepP90Us: percentile(latencies, 0.9), lockstepP95Us: percentile(latencies, 0.95),
      lockstepP99Us, lockstepP999Us: percentile(latencies, 0.999), budgetUs, p99OverBudget: lockstepP99Us / budgetUs,
    };
    // Concurrent callers: calls per second.
    for (const callers of CONCURRENCY) {
      let calls = 0;
      const deadline = performance.now() + SECONDS * 1000;
      await Promise.all(Array.from({ length: callers }, async () => {
        while (performance.now() < deadline) {
          if ((await primary.lockstep({ pairs: ['async'] })) === 'done') calls++;
        }
      }));
      entry[`callsPerSecond${callers}`] = calls / SECONDS;
    }
    rounds.push(entry);
    process.stderr.write(`round ${round + 1}: ${JSON.stringify(entry)}\n`);
  }
  const status = primary.status().lockstep as Record<string, unknown>;
  await primaryHost.close();
  await secondaryHost.close();
  const keys = Object.keys(rounds[0] ?? {});
  const summary = Object.fromEntries(keys.map((key) => [key, spreadOf(rounds.map((entry) => entry[key] as number))]));
  process.stderr.write('\nmedian (min..max) over rounds:\n');
  for (const [key, spread] of Object.entries(summary)) {
    process.stderr.write(`  ${key.padEnd(20)} ${spread.median.toFixed(2)} (${spread.min.toFixed(2)}..${spread.max.toFixed(2)})\n`);
  }
  process.stderr.write(`markers ${String(status.markersIssued)} for ${String(status.callers)} callers\n`);
  process.stdout.write(`${JSON.stringify({ suite: 'lockstep', date: new Date().toISOString(), rounds, summary,
    ratios: { lockstepP99OverBudget: summary.p99OverBudget?.median }, targets: { lockstepP99OverBudget: 1 } })}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`${String((error as Error)?.stack ?? error)}\n`);
  process.exit(1);
});
