// The pair simulation's invariant checks (src/sim/pair-invariants.ts), each shown to hold on a
// good image and to catch a bad one, on hand-made histories.
import * as assert from 'node:assert/strict';

import {
  GARBAGE,
  type HistoryWrite,
  Lineage,
  checkAcknowledgedPresent,
  checkIdentical,
  checkPrimaryModel,
  checkTransientBound,
  checkWriteOrderPrefix,
  decodeImage,
  fillBlocks,
  prefixPositions,
} from '../../src/sim/pair-invariants';

const BLOCK = 4096;

function write(id: number, firstBlock: number, blockCount = 1, acknowledged = false, value = id): HistoryWrite {
  return { id, firstBlock, blockCount, value, acknowledged, issuedAtMs: id };
}

/** Four blocks of zeros, then: w1 -> block 0, w2 -> blocks 1-2, w3 -> block 0, zero(w4) -> block 2. */
function history(acknowledged: number[] = []): Lineage {
  const lineage = new Lineage('a', new Int32Array(4));
  lineage.append(write(1, 0, 1, acknowledged.includes(1)));
  lineage.append(write(2, 1, 2, acknowledged.includes(2)));
  lineage.append(write(3, 0, 1, acknowledged.includes(3)));
  lineage.append(write(4, 2, 1, acknowledged.includes(4), 0));
  return lineage;
}

describe('83 pair invariants', () => {
  it('decodes blocks written with the pattern, zeros, and anything else as garbage', () => {
    const image = Buffer.alloc(3 * BLOCK);
    fillBlocks(image.subarray(0, 2 * BLOCK), 7, 0, BLOCK);
    assert.deepEqual([...decodeImage(image, BLOCK)], [7, 7, 0]);
    image.writeUInt8(image.readUInt8(BLOCK + 100) ^ 1, BLOCK + 100);
    image[2 * BLOCK + 5] = 1;
    assert.deepEqual([...decodeImage(image, BLOCK)], [7, GARBAGE, GARBAGE]);
    // A block holding another block's pattern is not that write's block.
    fillBlocks(image.subarray(0, BLOCK), 9, 1, BLOCK);
    assert.equal(decodeImage(image, BLOCK)[0], GARBAGE);
  });

  it('the primary model: holds after all writes, fails on a lost or a stale block', () => {
    const lineage = history();
    assert.deepEqual([...lineage.imageAt(4)], [3, 2, 0, 0]);
    assert.deepEqual(checkPrimaryModel(lineage, Int32Array.from([3, 2, 0, 0])), []);
    const found = checkPrimaryModel(lineage, Int32Array.from([1, 2, 0, 0]));
    assert.equal(found.length, 1);
    assert.match(found[0] as string, /block 0 holds write 1, its history ends with write 3/);
  });

  it('acknowledged writes after a sync takeover: the acknowledged value or a later one passes; an older one fails', () => {
    const lineage = history([1, 2]);
    // Block 0: w1 acknowledged, w3 later (unacknowledged): either passes. Block 2: w2
    // acknowledged, then zeroed by w4: w2 or zeros.
    assert.deepEqual(checkAcknowledgedPresent(lineage, Int32Array.from([1, 2, 2, 0])), []);
    assert.deepEqual(checkAcknowledgedPresent(lineage, Int32Array.from([3, 2, 0, 0])), []);
    // Block 0 back at zeros (before w1), block 1 lost w2: both caught.
    const found = checkAcknowledgedPresent(lineage, Int32Array.from([0, 0, 2, 0]));
    assert.equal(found.length, 2);
    assert.match(found[0] as string, /block 0 holds zeros; write 1 .* was acknowledged/);
    assert.match(found[1] as string, /block 1 holds zeros; write 2/);
    // A block no acknowledged write touched may hold its base or any written value, not garbage.
    assert.deepEqual(checkAcknowledgedPresent(history(), Int32Array.from([0, 2, 0, 0])), []);
    assert.equal(checkAcknowledgedPresent(history(), Int32Array.from([0, 2, 0, GARBAGE])).length, 1);
  });

  it('write-order prefix: every position passes; a mix of two positions fails', () => {
    const lineage = history();
    for (let position = 0; position <= 4; position++) {
      assert.deepEqual(checkWriteOrderPrefix(lineage, lineage.imageAt(position)), [], `position ${position}`);
      assert.ok(prefixPositions(lineage, lineage.imageAt(position)).some(([low, high]) => low <= position && position <= high));
    }
    // w3 on block 0 (position >= 3) but not w2 on block 1 (position < 2): no single position.
    const mixed = Int32Array.from([3, 0, 0, 0]);
    assert.deepEqual(prefixPositions(lineage, mixed), []);
    const found = checkWriteOrderPrefix(lineage, mixed, 'secondary b');
    assert.equal(found.length, 1);
    assert.match(found[0] as string, /secondary b says it is consistent, but its image is no write-order prefix/);
    // A value the history never wrote there fails too.
    assert.equal(checkWriteOrderPrefix(lineage, Int32Array.from([2, 0, 0, 0])).length, 1);
  });

  it('identical images pass; one differing block is named', () => {
    const left = Buffer.alloc(4 * BLOCK);
    fillBlocks(left, 5, 0, BLOCK);
    assert.deepEqual(checkIdentical(left, Buffer.from(left), BLOCK), []);
    const right = Buffer.from(left);
    right.fill(0, 2 * BLOCK, 3 * BLOCK);
    const found = checkIdentical(left, right, BLOCK, 'a and b');
    assert.equal(found.length, 1);
    assert.match(found[0] as string, /a and b differ in 1 blocks: 2 \(write 5 \/ zeros\)/);
  });

  it('transient bound: within the bound, or with a faulted link, passes; past it with a clean link fails', () => {
    const sample = { what: 'pair p0 on a', state: 'resyncing', enteredAtMs: 1000, linkCleanSinceMs: 1500 as number | undefined };
    assert.deepEqual(checkTransientBound(sample, 4000, 3000), []);
    assert.deepEqual(checkTransientBound({ ...sample, linkCleanSinceMs: undefined }, 99_000, 3000), []);
    assert.deepEqual(checkTransientBound({ ...sample, state: 'mirroring' }, 99_000, 3000), []);
    const found = checkTransientBound(sample, 4600, 3000);
    assert.equal(found.length, 1);
    assert.match(found[0] as string, /pair p0 on a has been resyncing for 3100 ms/);
  });
});
