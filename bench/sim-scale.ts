// The simulator at scale (issue 8): K controllers with P pairs in one process on the simulated
// network and clock, a ring where controller i mirrors P/K volumes to controller i+1. Reports
// the set-up time, the memory (RSS, heap), and the wall time per simulated second while every
// pair mirrors a trickle of writes.
// Usage: node dist/bench/sim-scale.js [--controllers 200] [--pairs 1000] [--seconds 5]
import { performance } from 'node:perf_hooks';

import { Controller } from '../src/controller/controller';
import type { PairVolume } from '../src/replication/pair-volume';
import type { PairSpec } from '../src/replication/pairs';
import { SeededRandom } from '../src/runtime/random';
import { SimNetwork } from '../src/sim/network';
import { SimClock } from '../src/sim/sim-clock';

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

async function main(): Promise<void> {
  const started = performance.now();
  const clock = new SimClock();
  const random = new SeededRandom(1);
  const network = new SimNetwork({ clock, random: random.fork('network') });
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
