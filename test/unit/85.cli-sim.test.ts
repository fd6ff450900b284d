// `blockmirror sim`: the verdict of each invariant is read off the violations the checks of
// src/sim/pair-invariants.ts produce (real check output, not made-up text), a run passes, and a
// seed replays to the same timeline.
import * as assert from 'node:assert/strict';

import { verdicts } from '../../src/cli/sim-command';
import { Lineage, checkCoveredThrough, checkIdentical, checkTransientBound, checkWriteOrderPrefix } from '../../src/sim/pair-invariants';
import { runPairSchedule } from '../../src/sim/pair-schedule';

describe('85 blockmirror sim verdicts', () => {
  it('names the invariant each real violation belongs to', () => {
    const lineage = new Lineage('a', new Int32Array(4));
    lineage.append({ id: 1, firstBlock: 0, blockCount: 1, value: 1, acknowledged: true, issuedAtMs: 0 });
    lineage.append({ id: 2, firstBlock: 1, blockCount: 1, value: 2, acknowledged: true, issuedAtMs: 1 });
    // Block 1 has write 2 but block 0 lacks write 1: no prefix.
    const prefix = checkWriteOrderPrefix(lineage, Int32Array.from([0, 2, 0, 0]), 'pair p0: secondary b');
    assert.equal(prefix.length, 1);
    const differ = checkIdentical(Buffer.alloc(8192), Buffer.alloc(8192, 1), 4096, 'after quiescence, primary a and b');
    const transient = checkTransientBound({ what: 'pair p0 on a', state: 'resyncing', enteredAtMs: 0, linkCleanSinceMs: 0 }, 10_000, 3000);
    assert.equal(transient.length, 1);
    // Lockstep done for the first write, but block 0 still holds the base value.
    const covered = checkCoveredThrough(lineage, Int32Array.from([0, 0, 0, 0]), 1, 'lockstep on a: receiver b');
    assert.equal(covered.length, 1);
    assert.deepEqual(checkCoveredThrough(lineage, Int32Array.from([1, 0, 0, 0]), 1), [], 'write 1 there, write 2 not needed');
    assert.deepEqual(checkCoveredThrough(lineage, Int32Array.from([1, 2, 0, 0]), 1), [], 'a later write may be there too');
    const result = { seed: 1, mode: 'async' as const, fanOut: false, fence: 'never' as const, trace: [], counters: {} as never,
      violations: [...prefix, ...differ, ...transient, ...covered, 'something nobody claims'] };
    const byName = Object.fromEntries(verdicts(result).map((verdict) => [verdict.name, verdict]));
    assert.equal(byName['consistent-is-prefix']?.pass, false);
    assert.equal(byName['identical-after-quiescence']?.pass, false);
    assert.equal(byName['transient-bound']?.pass, false);
    assert.equal(byName['sync-no-acknowledged-loss']?.pass, true);
    assert.equal(byName['lockstep-done-covers']?.pass, false);
    assert.deepEqual(byName.other?.violations, ['something nobody claims']);
  });

  it('a schedule passes and replays to the same timeline', async function () {
    this.timeout(30_000);
    const first = await runPairSchedule({ seed: 42, mode: 'sync', steps: 20, blockCount: 64, namePrefix: `bm-t85-${process.pid}` });
    const again = await runPairSchedule({ seed: 42, mode: 'sync', steps: 20, blockCount: 64, namePrefix: `bm-t85-${process.pid}` });
    assert.deepEqual(first.violations, []);
    assert.ok(verdicts(first).every((verdict) => verdict.pass));
    assert.deepEqual(again.trace, first.trace);
  });
});
