// Property test of Bitmap against a naive model (a Set of bit indices): any sequence of single-bit,
// range, byte-marking, whole-bitmap and serialization operations leaves the native bitmap equal to
// the model, bit for bit, and every search answers as the model does.
// The seed is printed on failure; rerun with STORAGE_PROPERTY_SEED=<seed> (and _RUNS=<n>).

import * as assert from 'node:assert/strict';

import fc from 'fast-check';

import { Bitmap } from '../../src/storage/bitmap';

const SEED = process.env.STORAGE_PROPERTY_SEED !== undefined ? Number(process.env.STORAGE_PROPERTY_SEED) : Date.now() % 2 ** 31;
const RUNS = process.env.STORAGE_PROPERTY_RUNS !== undefined ? Number(process.env.STORAGE_PROPERTY_RUNS) : 200;

type Op =
  | { op: 'set' | 'clear' | 'test'; index: number }
  | { op: 'setRange' | 'clearRange'; first: number; count: number }
  | { op: 'markBytes'; byteOffset: number; byteLength: number }
  | { op: 'setAll' | 'clearAll' | 'roundTrip' | 'deserializeInto' }
  | { op: 'orMerge' | 'swap' | 'copyFrom'; bits: number[] };

/** Operations on a bitmap of bitCount bits of granularityBytes each, as printable data. */
function opArbitrary(bitCount: number, granularityBytes: number): fc.Arbitrary<Op> {
  const index = fc.integer({ min: 0, max: bitCount - 1 });
  const covered = bitCount * granularityBytes;
  const range = fc
    .integer({ min: 0, max: bitCount })
    .chain((first) => fc.record({ first: fc.constant(first), count: fc.integer({ min: 0, max: bitCount - first }) }));
  const bytes = fc.integer({ min: 0, max: covered }).chain((byteOffset) =>
    fc.record({
      byteOffset: fc.constant(byteOffset),
      // Mostly short spans (a few tracks), sometimes up to the end.
      byteLength: fc.oneof(
        fc.integer({ min: 0, max: Math.min(covered - byteOffset, 4 * granularityBytes) }),
        fc.integer({ min: 0, max: covered - byteOffset }),
      ),
    }),
  );
  return fc.oneof(
    { weight: 6, arbitrary: fc.record({ op: fc.constantFrom('set' as const, 'clear' as const, 'test' as const), index }) },
    { weight: 4, arbitrary: fc.tuple(fc.constantFrom('setRange' as const, 'clearRange' as const), range).map(([op, r]) => ({ op, ...r })) },
    { weight: 3, arbitrary: bytes.map((b) => ({ op: 'markBytes' as const, ...b })) },
    { weight: 1, arbitrary: fc.record({ op: fc.constantFrom('setAll' as const, 'clearAll' as const, 'roundTrip' as const, 'deserializeInto' as const) }) },
    {
      weight: 2,
      arbitrary: fc.record({ op: fc.constantFrom('orMerge' as const, 'swap' as const, 'copyFrom' as const), bits: fc.array(index, { maxLength: 12, size: 'max' }) }),
    },
  );
}

/** A bitmap geometry and a sequence of operations on it. */
const scenarioArbitrary = fc
  .record({ bitCount: fc.integer({ min: 1, max: 700 }), granularityBytes: fc.integer({ min: 9, max: 16 }).map((shift) => 2 ** shift) })
  .chain(({ bitCount, granularityBytes }) =>
    fc.record({
      bitCount: fc.constant(bitCount),
      granularityBytes: fc.constant(granularityBytes),
      ops: fc.array(opArbitrary(bitCount, granularityBytes), { minLength: 1, maxLength: 60, size: 'max' }),
      probe: fc.array(fc.integer({ min: 0, max: bitCount }), { maxLength: 4 }),
    }),
  );

function makeOther(bitCount: number, granularityBytes: number, bits: number[]): Bitmap {
  const other = Bitmap.create({ bitCount, granularityBytes });
  for (const bit of bits) other.set(bit);
  return other;
}

function checkEqual(bitmap: Bitmap, model: Set<number>, bitCount: number, probe: number[]): void {
  assert.equal(bitmap.count(), model.size, 'count');
  for (let i = 0; i < bitCount; i++) {
    if (bitmap.test(i) !== model.has(i)) assert.fail(`bit ${i}: bitmap ${bitmap.test(i)}, model ${model.has(i)}`);
  }
  for (const from of [0, ...probe, bitCount - 1, bitCount]) {
    let nextSet = -1;
    let nextClear = -1;
    for (let i = from; i < bitCount; i++) {
      if (nextSet === -1 && model.has(i)) nextSet = i;
      if (nextClear === -1 && !model.has(i)) nextClear = i;
      if (nextSet !== -1 && nextClear !== -1) break;
    }
    assert.equal(bitmap.findNextSet(from), nextSet, `findNextSet(${from})`);
    assert.equal(bitmap.findNextClear(from), nextClear, `findNextClear(${from})`);
  }
}

function runWithSeed(name: string, property: fc.IProperty<unknown>): void {
  try {
    fc.assert(property, { seed: SEED, numRuns: RUNS });
  } catch (error) {
    (error as Error).message = `${name} failed with STORAGE_PROPERTY_SEED=${SEED}\n${(error as Error).message}`;
    console.error(`property seed: STORAGE_PROPERTY_SEED=${SEED}`);
    throw error;
  }
}

describe('20 bitmap (property)', function () {
  this.timeout(120_000);

  it('matches a Set model under any sequence of operations', () => {
    runWithSeed(
      'bitmap model',
      fc.property(scenarioArbitrary, ({ bitCount, granularityBytes, ops, probe }) => {
        const bitmap = Bitmap.create({ bitCount, granularityBytes });
        let model = new Set<number>();
        try {
          for (const step of ops) {
            switch (step.op) {
              case 'set':
                assert.equal(bitmap.set(step.index), model.has(step.index), `set(${step.index}) returns the old bit`);
                model.add(step.index);
                break;
              case 'clear':
                assert.equal(bitmap.clear(step.index), model.has(step.index), `clear(${step.index}) returns the old bit`);
                model.delete(step.index);
                break;
              case 'test':
                assert.equal(bitmap.test(step.index), model.has(step.index));
                break;
              case 'setRange':
                bitmap.setRange(step.first, step.count);
                for (let i = step.first; i < step.first + step.count; i++) model.add(i);
                break;
              case 'clearRange':
                bitmap.clearRange(step.first, step.count);
                for (let i = step.first; i < step.first + step.count; i++) model.delete(i);
                break;
              case 'markBytes':
                bitmap.markBytes(step.byteOffset, step.byteLength);
                if (step.byteLength > 0) {
                  const last = Math.floor((step.byteOffset + step.byteLength - 1) / granularityBytes);
                  for (let i = Math.floor(step.byteOffset / granularityBytes); i <= last; i++) model.add(i);
                }
                break;
              case 'setAll':
                bitmap.setAll();
                model = new Set(Array.from({ length: bitCount }, (_, i) => i));
                break;
              case 'clearAll':
                bitmap.clearAll();
                model.clear();
                break;
              case 'roundTrip': {
                const copy = Bitmap.deserialize(bitmap.serialize());
                try {
                  checkEqual(copy, model, bitCount, probe);
                } finally {
                  copy.close();
                }
                break;
              }
              case 'deserializeInto': {
                const bytes = bitmap.serialize();
                bitmap.clearAll();
                bitmap.deserializeInto(bytes);
                break;
              }
              case 'orMerge':
              case 'swap':
              case 'copyFrom': {
                const other = makeOther(bitCount, granularityBytes, step.bits);
                const otherModel = new Set(step.bits);
                try {
                  if (step.op === 'orMerge') {
                    bitmap.orMerge(other);
                    for (const bit of otherModel) model.add(bit);
                  } else if (step.op === 'copyFrom') {
                    bitmap.copyFrom(other);
                    model = new Set(otherModel);
                  } else {
                    bitmap.swap(other);
                    checkEqual(other, model, bitCount, probe);
                    model = otherModel;
                  }
                } finally {
                  other.close();
                }
                break;
              }
            }
          }
          checkEqual(bitmap, model, bitCount, probe);
        } finally {
          bitmap.close();
        }
      }),
    );
  });
});
