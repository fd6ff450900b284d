// The pair's pure parts: the transition table, every row of the generation-id decision table
// (src/replication/generations.ts) from both sides, the life of generations through a copy, a
// takeover and a resync, and the persisted metadata (two slots, a torn slot, a damaged region).
import * as assert from 'node:assert/strict';

import {
  type Decision,
  type Generations,
  completeAsSource,
  completeAsTarget,
  decide,
  formatGeneration,
  newGenerationId,
  startGeneration,
} from '../../src/replication/generations';
import { PairMeta, type PairMetaState } from '../../src/replication/pair-meta';
import { PAIR_TRANSITIONS, isPairTransition } from '../../src/replication/pair-state';
import { LatencyHistogram } from '../../src/replication/pair-volume';
import { trackingBitmapNames } from '../../src/replication/tracking';
import { SeededRandom } from '../../src/runtime/random';
import { Region } from '../../src/storage/region';
import { Volume } from '../../src/storage/volume';

const g = (current: number, bitmap = 0, history: [number, number] = [0, 0]): Generations => ({ current, bitmap, history });

const MIRROR: Record<Decision, Decision> = {
  none: 'none',
  'bitmap-source': 'bitmap-target',
  'bitmap-target': 'bitmap-source',
  'full-source': 'full-target',
  'full-target': 'full-source',
  'split-brain': 'split-brain',
  unrelated: 'unrelated',
};

describe('80 pair generations and state', () => {
  describe('the transition table', () => {
    it('lets split-brain be left only towards a copy or a resync', () => {
      assert.deepEqual([...PAIR_TRANSITIONS['split-brain']].sort(), ['copying', 'resyncing']);
      assert.equal(isPairTransition('mirroring', 'split-brain'), true);
      assert.equal(isPairTransition('split-brain', 'mirroring'), false);
      // A primary in a pass finds a split brain when its secondary was taken over with --force.
      assert.equal(isPairTransition('copying', 'split-brain'), true);
      assert.equal(isPairTransition('resyncing', 'split-brain'), true);
      assert.equal(isPairTransition('split-brain', 'suspended'), false);
      // A stream resumed from the primary's kept journal goes straight back to mirroring.
      assert.equal(isPairTransition('simplex', 'mirroring'), true);
      assert.equal(isPairTransition('suspended', 'mirroring'), true);
      assert.equal(isPairTransition('copying', 'resyncing'), false);
    });
    it('has no state that cannot be left', () => {
      for (const [state, next] of Object.entries(PAIR_TRANSITIONS)) assert.ok(next.length > 0, state);
    });
  });

  describe('the decision table, row by row (and the mirror image from the other side)', () => {
    const rows: { rule: number; local: Generations; peer: Generations; decision: Decision; flags?: { discardLocal?: boolean; discardPeer?: boolean } }[] = [
      { rule: 1, local: g(0), peer: g(0), decision: 'none' },
      { rule: 2, local: g(0), peer: g(7), decision: 'full-target' },
      { rule: 3, local: g(7), peer: g(0), decision: 'full-source' },
      { rule: 4, local: g(7, 3), peer: g(7), decision: 'none' },
      { rule: 5, local: g(7), peer: g(9, 7), decision: 'bitmap-target' },
      { rule: 6, local: g(9, 7), peer: g(7), decision: 'bitmap-source' },
      { rule: 12, local: g(9, 0, [7, 0]), peer: g(11, 7), decision: 'bitmap-target' },
      { rule: 13, local: g(11, 7), peer: g(9, 0, [7, 0]), decision: 'bitmap-source' },
      { rule: 7, local: g(9, 7), peer: g(11, 7), decision: 'split-brain' },
      { rule: 7, local: g(9, 7), peer: g(11, 7), decision: 'bitmap-target', flags: { discardLocal: true } },
      { rule: 7, local: g(9, 7), peer: g(11, 7), decision: 'bitmap-source', flags: { discardPeer: true } },
      { rule: 8, local: g(5), peer: g(9, 7, [5, 0]), decision: 'full-target' },
      { rule: 9, local: g(9, 7, [5, 0]), peer: g(5), decision: 'full-source' },
      { rule: 10, local: g(9, 8, [5, 0]), peer: g(11, 6, [5, 0]), decision: 'split-brain' },
      { rule: 10, local: g(9, 8, [5, 0]), peer: g(11, 6, [5, 0]), decision: 'full-target', flags: { discardLocal: true } },
      { rule: 11, local: g(9, 8, [5, 4]), peer: g(11, 6, [3, 2]), decision: 'unrelated' },
      { rule: 14, local: g(9, 8, [5, 4]), peer: g(11, 6, [3, 2]), decision: 'full-target', flags: { discardLocal: true } },
      { rule: 14, local: g(9, 8, [5, 4]), peer: g(11, 6, [3, 2]), decision: 'full-source', flags: { discardPeer: true } },
    ];
    for (const row of rows) {
      const flags = row.flags === undefined ? '' : ` with ${Object.keys(row.flags).join(', ')}`;
      it(`rule ${row.rule}: ${row.decision}${flags}`, () => {
        const result = decide(row.local, row.peer, row.flags);
        assert.equal(result.rule, row.rule);
        assert.equal(result.decision, row.decision);
        assert.ok(result.text.length > 0);
        const mirrored = row.flags === undefined ? undefined : { discardLocal: row.flags.discardPeer, discardPeer: row.flags.discardLocal };
        const other = decide(row.peer, row.local, mirrored as { discardLocal?: boolean; discardPeer?: boolean } | undefined);
        assert.equal(other.decision, MIRROR[row.decision], 'the other side decides the mirror image');
      });
    }
  });

  describe('generations through a pair\'s life', () => {
    const random = new SeededRandom(7);
    it('copy, link loss with writes, resync: the target adopts, the source moves its bitmap to history', () => {
      let primary = g(newGenerationId(random));
      let secondary = g(0);
      assert.equal(decide(secondary, primary).decision, 'full-target');
      secondary = completeAsTarget(secondary, primary);
      primary = completeAsSource(primary);
      assert.equal(decide(secondary, primary).decision, 'none');
      primary = startGeneration(primary, random); // writes while the link is down
      assert.equal(decide(secondary, primary).decision, 'bitmap-target');
      const old = primary.bitmap;
      secondary = completeAsTarget(secondary, primary);
      primary = completeAsSource(primary);
      assert.equal(primary.history[0], old);
      assert.equal(primary.bitmap, 0);
      assert.equal(decide(secondary, primary).decision, 'none');
    });
    it('a takeover with the old primary unchanged: the old primary is the bitmap target', () => {
      const shared = newGenerationId(random);
      const oldPrimary = g(shared);
      const taken = startGeneration(g(shared), random);
      assert.equal(taken.bitmap, shared);
      assert.notEqual(taken.current, shared);
      assert.equal(decide(oldPrimary, taken).decision, 'bitmap-target');
      assert.equal(decide(taken, oldPrimary).decision, 'bitmap-source');
    });
    it('a takeover while the old primary wrote behind a partition: split brain on both sides', () => {
      const shared = newGenerationId(random);
      const oldPrimary = startGeneration(g(shared), random);
      const taken = startGeneration(g(shared), random);
      assert.equal(decide(oldPrimary, taken).decision, 'split-brain');
      assert.equal(decide(taken, oldPrimary).decision, 'split-brain');
    });
    it('a resync whose end the source never heard, then a new generation on the source: a bitmap resync, not a split brain', () => {
      const base = newGenerationId(random);
      let primary = startGeneration(g(base), random); // the link dropped, writes followed
      let secondary = g(base);
      assert.equal(decide(secondary, primary).decision, 'bitmap-target');
      secondary = completeAsTarget(secondary, primary); // PAIR_RESYNC_DONE applied; its answer is lost
      primary = startGeneration(primary, random); // the primary moved on, still tracking from base
      const result = decide(secondary, primary);
      assert.deepEqual([result.decision, result.rule], ['bitmap-target', 12]);
      assert.equal(decide(primary, secondary).decision, 'bitmap-source');
      // The same ids after a takeover on the secondary are a split brain, not rule 12.
      const taken = startGeneration(secondary, random);
      assert.equal(decide(taken, primary).decision, 'split-brain');
    });
    it('a second generation while still not caught up keeps the bitmap generation', () => {
      const first = startGeneration(g(5), random);
      const second = startGeneration(first, random);
      assert.equal(second.bitmap, 5);
      assert.notEqual(second.current, first.current);
    });
    it('ids are never 0 and print as 16 hex digits', () => {
      for (let index = 0; index < 1000; index++) assert.notEqual(newGenerationId(random), 0);
      assert.equal(formatGeneration(255), '00000000000000ff');
    });
  });

  it('the write latency histogram puts each value in its log2 bucket and reads quantiles as bucket bounds', () => {
    const histogram = new LatencyHistogram();
    assert.equal(histogram.quantile(0.5), null);
    for (let index = 0; index < 98; index++) histogram.record(3e-6); // bucket [2, 4) us
    histogram.record(1e-3);
    histogram.record(0.5);
    assert.equal(histogram.count, 100);
    assert.equal(histogram.quantile(0.5), 4e-6);
    assert.equal(histogram.quantile(0.99), 1024e-6);
    assert.ok(Math.abs(histogram.sumSeconds - (98 * 3e-6 + 1e-3 + 0.5)) < 1e-12);
  });

  describe('the persisted metadata', () => {
    const name = `bm-test-meta-${process.pid}-${Date.now()}`;
    let volume: Volume;
    const initial: PairMetaState = {
      role: 'secondary', generations: g(0), synced: false, consistency: 'inconsistent', applied: 0, nextSequence: 1,
      discard: false, active: 0, sealedThrough: 0, newGeneration: false, streaming: false, journalId: 0,
    };
    before(() => {
      volume = Volume.create({ backing: 'shared', name, capacityBytes: 1 << 20 });
    });
    after(async () => {
      PairMeta.unlink(volume, 'p0');
      await volume.close();
      Volume.unlink({ name });
    });

    it('is new the first time, and restored with its last save after that', async () => {
      PairMeta.unlink(volume, 'p0');
      const first = PairMeta.open(volume, 'p0', initial);
      assert.equal(first.restored, false);
      first.update({ role: 'primary', generations: g(123456789, 42, [7, 6]), applied: 99, synced: true, consistency: 'consistent', active: 1, sealedThrough: 77 });
      first.update({ applied: 100 });
      await first.close();
      const again = PairMeta.open(volume, 'p0', initial);
      assert.equal(again.restored, true);
      assert.deepEqual(again.state, { ...initial, role: 'primary', generations: g(123456789, 42, [7, 6]), applied: 100, synced: true,
        consistency: 'consistent', active: 1, sealedThrough: 77 });
      await again.close();
    });

    it('falls back to the other slot when the newest is torn, and refuses a region with none valid', async () => {
      PairMeta.unlink(volume, 'p0');
      const meta = PairMeta.open(volume, 'p0', initial);
      meta.update({ applied: 5 });
      meta.update({ applied: 6 });
      await meta.close();
      const region = Region.open({ kind: 'shared', name: `blockmirror.pair.${name}.p0` });
      // The save of applied 6 is torn: one byte of its slot is wrong.
      const slots = [Buffer.alloc(128), Buffer.alloc(128)];
      region.read(0, slots[0] as Buffer);
      region.read(128, slots[1] as Buffer);
      const newest = (slots[0] as Buffer).readDoubleLE(48) === 6 ? 0 : 1;
      region.write(newest * 128 + 50, Buffer.from([0x5a]));
      const restored = PairMeta.open(volume, 'p0', initial);
      assert.equal(restored.state.applied, 5);
      await restored.close();
      region.write((1 - newest) * 128 + 50, Buffer.from([0x5a]));
      await region.close();
      assert.throws(() => PairMeta.open(volume, 'p0', initial), (error: { code?: string }) => error.code === 'ERR_PAIR_META');
    });

    it('names the tracking bitmaps within the volume\'s limit, also for long pair names', () => {
      assert.deepEqual(trackingBitmapNames('p0'), ['pair:p0', 'pair:p0:b']);
      const long = trackingBitmapNames('x'.repeat(64));
      for (const bitmapName of long) assert.ok(bitmapName.length <= 47, bitmapName);
      assert.notEqual(trackingBitmapNames(`${'x'.repeat(63)}y`)[0], long[0]);
    });
  });
});
