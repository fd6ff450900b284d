// Consistency groups on the simulated network and clock (src/cgroup/): chains of dependent writes
// across primaries while cycles run (test/helpers/cgroup-world.ts); every consistent copy the
// group forms is checked at once: no step without the steps before it. The check can fail (a
// slave that does not hold write completions is caught). Faults: a slave cut off from the master
// (coordination timeouts: nothing blocks longer than the limit, the previous copy stays), a
// secondary cut off (drain timeouts, IBM's drain override), a slave's crash and restart, the
// master's crash (recover restores the newest cycle every member holds, and it is consistent),
// and 64 primaries with link delays and a partition.
import * as assert from 'node:assert/strict';

import type { Controller } from '../../src/controller/controller';
import { newestCommonCycle } from '../../src/cgroup/recover';
import { CgWorld } from '../helpers/cgroup-world';

async function started(options: ConstructorParameters<typeof CgWorld>[0]): Promise<{ w: CgWorld; chains: Promise<void>[] }> {
  const w = new CgWorld(options);
  await w.start();
  const mirroring = await w.clock.runUntil(() => w.primaries.every((p) => (p.pairs?.status() ?? []).every((pair) => pair.state === 'mirroring')), { maxTimeMs: 20_000 });
  assert.ok(mirroring, 'the pairs did not reach mirroring');
  return { w, chains: Array.from({ length: w.chains }, (_, j) => w.chain(j)) };
}

async function stop(w: CgWorld, chains: Promise<void>[]): Promise<void> {
  w.stopWorkload = true;
  await w.clock.runFor(300);
  await Promise.all(chains);
}

function masterStatus(w: CgWorld): Record<string, any> {
  return (w.primaries[0] as Controller).groups?.groupStatus('g') as Record<string, any>;
}

function violations(w: CgWorld): string[] {
  return w.checks.flatMap((check) => check.violations);
}

function common(w: CgWorld): number | null {
  return newestCommonCycle(w.secondaries.flatMap((s) => (s.groups?.held('g') ?? []).map((held) => ({ holdings: held.cycles }))));
}

describe('scenario: consistency groups in the simulator', function () {
  this.timeout(180_000);

  it('forms consistent copies across 3 primaries under a dependent-write workload', async () => {
    const { w, chains } = await started({ primaries: 3, seed: 11 });
    await w.clock.runFor(3000);
    await stop(w, chains);
    const formed = w.outcomes.filter((o) => o.formed).length;
    const status = masterStatus(w);
    assert.ok(formed >= 20, `only ${formed} cycles formed: ${JSON.stringify(status.cycles?.lastFailure)}`);
    assert.deepEqual(violations(w), []);
    assert.ok(w.checks.some((c) => c.steps > 0) && w.acknowledged > 100, `workload too small: ${w.acknowledged} writes`);
    // Status: the consistency time is the last formed cycle's, its age small, every slave held.
    assert.equal(status.cycles.lastFormedCycle, w.outcomes.filter((o) => o.formed).at(-1)?.cycle);
    assert.ok(status.cycles.rpoSeconds !== null && status.cycles.rpoSeconds < 1, JSON.stringify(status.cycles));
    for (const p of w.primaries) {
      const slave = (p.groups?.groupStatus('g') as Record<string, any>).slave;
      assert.ok(slave.holdMs.count >= 20 && slave.holdMs.p99 <= 50, JSON.stringify(slave.holdMs));
    }
    // The secondaries keep two copies each in the steady state: the last formed one and the newest.
    for (const s of w.secondaries) {
      const held = s.groups?.held('g') ?? [];
      assert.equal(held.length, 1);
      assert.ok((held[0]?.cycles.length ?? 0) <= 2, JSON.stringify(held));
    }
    assert.equal(common(w), status.cycles.lastFormedCycle);
    // An idle group still advances: no writes, new consistency times.
    const before = status.cycles.counts.formed;
    await w.clock.runFor(500);
    assert.ok(masterStatus(w).cycles.counts.formed > before + 5);
    await w.close();
  });

  it('members in a journal group: the group\'s one stream stops at the cut for both, every copy consistent', async () => {
    const { w, chains } = await started({ primaries: 3, seed: 17, journalGroup: true, chains: 6 });
    await w.clock.runFor(3000);
    await stop(w, chains);
    const status = masterStatus(w).cycles;
    assert.ok(status.counts.formed >= 20, JSON.stringify(status));
    assert.deepEqual(violations(w), []);
    assert.ok(w.log.some((steps) => steps.includes(1)), 'no step went to the second member of the journal group');
    for (const s of w.secondaries) {
      for (const held of s.groups?.held('g') ?? []) assert.ok(held.cycles.includes(status.lastFormedCycle), JSON.stringify(held));
    }
    await w.close();
  });

  it('the check fails when a slave takes its cut without holding write completions (mutation no-hold)', async () => {
    const { w, chains } = await started({ primaries: 3, seed: 11, mutation: 'no-hold' });
    await w.clock.runFor(2000);
    await stop(w, chains);
    assert.ok(violations(w).length > 0, `no violation in ${w.checks.length} copies`);
    await w.close();
  });

  it('a slave cut off from the master: cycles fail within the coordination limit, writes go on, the group forms again after heal', async () => {
    const { w, chains } = await started({ primaries: 3, seed: 12, group: { maxCoordinationMs: 50, cycleIntervalMs: 20 } });
    await w.clock.runFor(500);
    const formedBefore = masterStatus(w).cycles.counts.formed;
    const lastFormed = masterStatus(w).cycles.lastFormedCycle;
    w.network.partition('p0', 'p2');
    const ackBefore = w.acknowledged;
    await w.clock.runFor(1500);
    const during = masterStatus(w).cycles;
    assert.ok(during.counts.failed > 0, JSON.stringify(during.counts));
    assert.ok(['coordination-timeout', 'link-down'].includes(during.lastFailure.reason), JSON.stringify(during.lastFailure));
    assert.ok(w.acknowledged > ackBefore + 100, `writes stalled: ${w.acknowledged - ackBefore} acknowledged during the partition`);
    // No hold outlived the coordination limit (p1 was prepared, then never run: it released by itself).
    for (const p of w.primaries) assert.ok(((p.groups?.groupStatus('g') as any).slave.holdMs?.p99 ?? 0) <= 50 + 1);
    // The previous copy is still recoverable.
    assert.ok((common(w) ?? 0) >= lastFormed, `common ${common(w)} < last formed ${lastFormed}`);
    w.network.heal('p0', 'p2');
    await w.clock.runFor(3000);
    await stop(w, chains);
    const after = masterStatus(w).cycles;
    assert.ok(after.counts.formed > formedBefore + 5, JSON.stringify(after.counts));
    assert.deepEqual(violations(w), []);
    await w.close();
  });

  it('a slave never holds longer than its own maxCoordinationMs, whatever the master asks', async () => {
    const { w, chains } = await started({ primaries: 3, seed: 18, group: { maxCoordinationMs: 1000 }, slaveGroup: { maxCoordinationMs: 20 } });
    await w.clock.runFor(300);
    // p2 cut off: p1 is prepared and then waits for a run that cannot come before p2 answers.
    w.network.partition('p0', 'p2');
    await w.clock.runFor(1500);
    const hold = ((w.primaries[1] as Controller).groups?.groupStatus('g') as Record<string, any>).slave;
    assert.ok(hold.holdsTimedOut > 0, JSON.stringify(hold));
    assert.ok(hold.holdMs.p99 <= 21, JSON.stringify(hold.holdMs));
    w.network.heal('p0', 'p2');
    await stop(w, chains);
    assert.deepEqual(violations(w), []);
    await w.close();
  });

  it('a slow secondary: drain timeouts, then one cycle with the override drain limit forms; nothing lost', async () => {
    const { w, chains } = await started({ primaries: 3, seed: 13, group: { maxDrainMs: 100, drainOverrideAfter: 2, overrideDrainMs: 5000, cycleIntervalMs: 20 } });
    await w.clock.runFor(300);
    // 150 ms each way between p1 and its secondary: the link stays up, the cut's answer takes 300 ms.
    w.network.setLink('p1', 's1', { latencyMs: 150 });
    w.network.setLink('s1', 'p1', { latencyMs: 150 });
    await w.clock.runFor(3000);
    const during = masterStatus(w).cycles;
    assert.ok((during.counts.byReason['drain-timeout'] ?? 0) >= 2, JSON.stringify(during.counts));
    // Once per streak: two drain timeouts, then one cycle with the override's limit (which forms
    // here, and a new streak begins).
    assert.ok(during.drainOverride.used >= 1, JSON.stringify(during));
    assert.ok(during.drainOverride.used * 2 <= during.counts.byReason['drain-timeout'], JSON.stringify(during));
    // The override's cycle formed although its drain took longer than maxDrainMs.
    const overridden = w.outcomes.find((o) => o.formed && o.drainMs > 100);
    assert.ok(overridden !== undefined, JSON.stringify(w.outcomes.slice(-6)));
    w.network.clearLink('p1', 's1');
    w.network.clearLink('s1', 'p1');
    await w.clock.runFor(2000);
    await stop(w, chains);
    const after = masterStatus(w).cycles;
    assert.ok(after.counts.formed > during.counts.formed, JSON.stringify(after.counts));
    assert.deepEqual(violations(w), []);
    await w.close();
  });

  it('a slave crashes and restarts: cycles fail meanwhile, every copy stays consistent, the group forms again', async () => {
    const { w, chains } = await started({ primaries: 3, seed: 14, shared: true, chains: 6 });
    await w.clock.runFor(500);
    const formed = masterStatus(w).cycles.counts.formed;
    const lastFormed = masterStatus(w).cycles.lastFormedCycle;
    w.crashPrimary(1);
    await w.clock.runFor(1000);
    assert.ok(masterStatus(w).cycles.counts.failed > 0);
    assert.ok((common(w) ?? 0) >= lastFormed);
    await w.restartPrimary(1);
    await w.clock.runFor(5000);
    await stop(w, chains);
    assert.ok(masterStatus(w).cycles.counts.formed > formed + 5, JSON.stringify(masterStatus(w).cycles.counts));
    assert.deepEqual(violations(w), []);
    await w.close();
  });

  it('the master crashes: the copies survive; recover restores the newest cycle every member holds, and it is consistent', async () => {
    const { w, chains } = await started({ primaries: 3, seed: 15, shared: true, chains: 6 });
    await w.clock.runFor(1500);
    const lastFormed = masterStatus(w).cycles.lastFormedCycle;
    w.crashPrimary(0);
    await w.clock.runFor(500);
    const cycle = common(w);
    assert.ok(cycle !== null && cycle >= lastFormed, `common ${cycle}, last formed ${lastFormed}`);
    w.stopWorkload = true;
    for (const s of w.secondaries) {
      const result: { cycle: number } = await w.clock.settle(s.groups!.recover('g', { cycle: cycle as number, mode: 'restore' }));
      assert.equal(result.cycle, cycle);
      assert.equal(s.pairs?.status()[0]?.role, 'primary');
    }
    await w.clock.runFor(300);
    await Promise.all(chains);
    const check = w.checkSecondaryVolumes();
    assert.deepEqual(check.violations, []);
    assert.ok(check.steps > 0);
    await w.close();
  });

  it('64 primaries under seeded link faults (delays, partitions, bandwidth caps): every formed copy is consistent', async function () {
    this.timeout(240_000);
    const { w, chains } = await started({ primaries: 64, seed: 16, chains: 8, group: { cycleIntervalMs: 50, maxCoordinationMs: 50, maxDrainMs: 500 } });
    for (let i = 1; i < 64; i += 7) w.network.setLink('p0', `p${i}`, { latencyMs: 1 + (i % 5), jitterMs: 2 });
    await w.clock.runFor(1000);
    w.network.partition('p0', 'p33');
    await w.clock.runFor(300);
    w.network.heal('p0', 'p33');
    // Seeded faults: every 100 ms one of a partition (master-slave or primary-secondary, healed
    // 50..250 ms later), a delay with jitter, or a bandwidth cap, on a link the seed picks.
    const faults = w.random.fork('faults');
    for (let step = 0; step < 15; step++) {
      const i = 1 + faults.int(63);
      const [a, b] = faults.int(2) === 0 ? ['p0', `p${i}`] : [`p${i}`, `s${i}`];
      switch (faults.int(3)) {
        case 0:
          w.network.partition(a as string, b as string);
          w.clock.setTimer(() => w.network.heal(a as string, b as string), 50 + faults.int(200));
          break;
        case 1:
          w.network.setLink(a as string, b as string, { latencyMs: 1 + faults.int(20), jitterMs: faults.int(5) });
          break;
        default:
          w.network.setLink(a as string, b as string, { bandwidthBytesPerSecond: (1 + faults.int(8)) * 1024 * 1024 });
      }
      await w.clock.runFor(100);
    }
    w.network.healAll();
    await w.clock.runFor(1500);
    await stop(w, chains);
    const status = masterStatus(w).cycles;
    assert.ok(status.counts.formed >= 5 && status.counts.failed >= 1, JSON.stringify(status.counts));
    assert.deepEqual(violations(w), []);
    assert.ok(w.acknowledged > 200);
    await w.close();
  });
});
