// The shrinker's search (src/sim/shrink.ts shrinkList) on plain lists with a known answer, and
// the schedule spec's checks of its input (src/sim/schedule-spec.ts parseScheduleSpec).
import * as assert from 'node:assert/strict';

import { SCHEDULE_SPEC_FORMAT, formatScheduleSpec, parseScheduleSpec } from '../../src/sim/schedule-spec';
import { shrinkList } from '../../src/sim/shrink';

const range = (count: number): number[] => Array.from({ length: count }, (_, index) => index);

describe('86 shrinker search and schedule specs', () => {
  it('finds the two items a failure needs among twenty, and proves the result 1-minimal', async () => {
    const result = await shrinkList(range(20), async (items) => items.includes(3) && items.includes(17));
    assert.deepEqual(result.items, [3, 17]);
    assert.equal(result.oneMinimal, true);
    assert.ok(result.tests < 60, `${result.tests} tests`);
  });

  it('a result is 1-minimal: removing any one item makes the failure go away', async () => {
    const fails = async (items: number[]): Promise<boolean> => items.reduce((sum, item) => sum + item, 0) >= 40;
    const result = await shrinkList(range(20), fails);
    assert.equal(result.oneMinimal, true);
    assert.ok(await fails(result.items));
    for (let index = 0; index < result.items.length; index++) {
      assert.equal(await fails(result.items.filter((_, other) => other !== index)), false, `without item ${index} of ${JSON.stringify(result.items)}`);
    }
  });

  it('an order-dependent failure keeps its order', async () => {
    const fails = async (items: number[]): Promise<boolean> => items.indexOf(15) >= 0 && items.indexOf(4) >= 0 && items.indexOf(4) < items.indexOf(15);
    assert.deepEqual((await shrinkList(range(20), fails)).items, [4, 15]);
  });

  it('a spent budget says the list is not proven minimal, and still returns a failing list', async () => {
    const fails = async (items: number[]): Promise<boolean> => items.includes(3) && items.includes(17);
    const result = await shrinkList(range(64), fails, 5);
    assert.equal(result.tests, 5);
    assert.equal(result.oneMinimal, false);
    assert.ok(await fails(result.items));
    assert.ok(result.items.length <= 64);
  });

  it('rejects what is not a list or a predicate', async () => {
    await assert.rejects(shrinkList('abc' as unknown as number[], async () => true), TypeError);
    await assert.rejects(shrinkList([1], 'yes' as unknown as () => Promise<boolean>), TypeError);
  });

  const valid = {
    format: SCHEDULE_SPEC_FORMAT, seed: 5, mode: 'async', fence: 'never', blockCount: 8, journalCapacityBytes: 65536,
    events: [{ operation: 'writes', draws: [1, 2, 4294967295], afterMs: 3, trace: ['1 write #1 on a'] }], tail: [],
  };

  it('a spec survives its own format, and the checks name the bad field', () => {
    const spec = parseScheduleSpec(valid);
    assert.deepEqual(parseScheduleSpec(JSON.parse(formatScheduleSpec(spec))), spec);
    assert.throws(() => parseScheduleSpec({ ...valid, format: 'other/1' }), TypeError);
    assert.throws(() => parseScheduleSpec({ ...valid, mode: 'semi' }), /mode/);
    assert.throws(() => parseScheduleSpec({ ...valid, events: [{ operation: 'explode', draws: [], afterMs: 0 }] }), /events\[0\]\.operation/);
    assert.throws(() => parseScheduleSpec({ ...valid, events: [{ operation: 'heal', draws: [2 ** 32], afterMs: 0 }] }), RangeError);
    assert.throws(() => parseScheduleSpec({ ...valid, blockCount: 4 }), RangeError);
    assert.throws(() => parseScheduleSpec({ ...valid, mutation: 'everything' }), /mutation/);
    assert.throws(() => parseScheduleSpec([]), TypeError);
  });
});
