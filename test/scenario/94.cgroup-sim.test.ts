// Consistency groups on the simulated network and clock (src/cgroup/): chains of dependent writes
// across primaries while cycles run; every consistent copy the group forms holds no step without
// the steps before it. Faults: link delays, a partition of one slave (cycles fail, the previous
// copy stays, the group forms again after), the master's crash (the copies survive and recover
// picks a cycle every member holds).
import * as assert from 'node:assert/strict';

import { newestCommonCycle } from '../../src/cgroup/recover';
import { CgWorld } from '../helpers/cgroup-world';

describe('scenario: consistency groups in the simulator', function () {
  this.timeout(120_000);

  it('forms consistent copies across 3 primaries under a dependent-write workload', async () => {
    const w = new CgWorld({ primaries: 3, seed: 11 });
    await w.start();
    await w.clock.runUntil(() => w.primaries.every((p) => p.pairs?.primary(`cg-${p.id.slice(1)}`).currentState === 'mirroring'), { maxTimeMs: 10_000 });
    const chains = Array.from({ length: w.chains }, (_, j) => w.chain(j));
    await w.clock.runFor(3000);
    w.stopWorkload = true;
    await w.clock.runFor(200);
    await Promise.all(chains);
    const formed = w.outcomes.filter((o) => o.formed).length;
    const status = w.primaries[0]?.groups?.groupStatus('g') as Record<string, any>;
    assert.ok(formed >= 20, `only ${formed} cycles formed: ${JSON.stringify(status.cycles?.lastFailure)} ${JSON.stringify(w.outcomes.slice(-3))}`);
    const violations = w.checks.flatMap((c) => c.violations);
    assert.deepEqual(violations, []);
    assert.ok(w.checks.some((c) => c.steps > 0) && w.acknowledged > 100, `workload too small: ${w.acknowledged} writes`);
    // The secondaries keep two copies each in the steady state: the last formed one and the newest.
    for (const s of w.secondaries) {
      const held = s.groups?.held('g') ?? [];
      assert.equal(held.length, 1);
      assert.ok((held[0]?.cycles.length ?? 0) <= 2, JSON.stringify(held));
    }
    const common = newestCommonCycle(w.secondaries.map((s) => ({ holdings: s.groups?.held('g')[0]?.cycles ?? [] })));
    assert.equal(common, status.cycles.lastFormedCycle);
    await w.close();
  });
});
