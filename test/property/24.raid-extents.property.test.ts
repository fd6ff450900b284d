// Property test of a RAID group's extent table (volumes laid on groups) against a model: any
// sequence of allocations and frees leaves the native table equal to a first-fit model over the
// group's address space (same offsets, lengths rounded to the alignment, sorted, never
// overlapping, never past the capacity), refuses what the model refuses (no space, a name in
// use, a full table) and gives freed space back to later allocations.
// The seed is printed on failure; rerun with STORAGE_PROPERTY_SEED=<seed> (and _RUNS=<n>).

import * as assert from 'node:assert/strict';

import fc from 'fast-check';

import { Disk } from '../../src/storage/disk';
import { RaidGroup } from '../../src/storage/raid-group';

const SEED = process.env.STORAGE_PROPERTY_SEED !== undefined ? Number(process.env.STORAGE_PROPERTY_SEED) : Date.now() % 2 ** 31;
const RUNS = process.env.STORAGE_PROPERTY_RUNS !== undefined ? Number(process.env.STORAGE_PROPERTY_RUNS) : 200;
const MAX_EXTENTS = 48;

type Op = { op: 'allocate'; name: number; units: number; extra: number } | { op: 'free'; name: number };

interface Extent { name: string; groupByteOffset: number; byteLength: number }

function modelAllocate(extents: Extent[], name: string, byteLength: number, alignment: number, capacity: number): Extent | 'exists' | 'no-space' {
  if (extents.some((e) => e.name === name)) return 'exists';
  const length = Math.ceil(byteLength / alignment) * alignment;
  if (extents.length >= MAX_EXTENTS) return 'no-space';
  const sorted = [...extents].sort((a, b) => a.groupByteOffset - b.groupByteOffset);
  let at = 0;
  const end = Math.floor(capacity / alignment) * alignment;
  for (let i = 0; i <= sorted.length; i++) {
    const gapEnd = i < sorted.length ? (sorted[i] as Extent).groupByteOffset : end;
    if (gapEnd - at >= length) return { name, groupByteOffset: at, byteLength: length };
    if (i < sorted.length) at = (sorted[i] as Extent).groupByteOffset + (sorted[i] as Extent).byteLength;
  }
  return 'no-space';
}

describe('24 raid extents property', () => {
  for (const level of ['raid5', 'raid1'] as const) {
    it(`${level}: allocations and frees match a first-fit model`, () => {
      fc.assert(
        fc.property(
          fc.array(fc.oneof(
            { weight: 3, arbitrary: fc.record({ op: fc.constant('allocate' as const), name: fc.integer({ min: 0, max: 60 }), units: fc.integer({ min: 0, max: 12 }), extra: fc.integer({ min: 0, max: 4095 }) }) },
            { weight: 2, arbitrary: fc.record({ op: fc.constant('free' as const), name: fc.integer({ min: 0, max: 60 }) }) },
          ), { maxLength: 120 }),
          (ops: Op[]) => {
            const disks = Array.from({ length: level === 'raid5' ? 4 : 2 }, () => Disk.create({ capacityBytes: 4 * 1024 * 1024 }));
            const group = RaidGroup.create({ level, disks, stripeUnitBytes: 16 * 1024 });
            const alignment = group.extentAlignmentBytes;
            let model: Extent[] = [];
            try {
              for (const op of ops) {
                const name = `v${op.name}`;
                if (op.op === 'free') {
                  const had = model.some((e) => e.name === name);
                  assert.equal(group.freeExtent(name), had);
                  model = model.filter((e) => e.name !== name);
                } else {
                  const byteLength = Math.max(1, op.units * alignment + op.extra);
                  const expected = modelAllocate(model, name, byteLength, alignment, group.capacityBytes);
                  if (typeof expected === 'string') {
                    assert.throws(() => group.allocateExtent(name, byteLength), (error: Error & { code?: string }) =>
                      error.code === (expected === 'exists' ? 'ERR_RAID_EXTENT_EXISTS' : 'ERR_RAID_NO_SPACE'));
                  } else {
                    assert.deepEqual(group.allocateExtent(name, byteLength), expected);
                    model.push(expected);
                  }
                }
                const table = group.extents();
                assert.deepEqual(table, [...model].sort((a, b) => a.groupByteOffset - b.groupByteOffset));
                for (let i = 1; i < table.length; i++) {
                  const previous = table[i - 1] as Extent;
                  assert.ok(previous.groupByteOffset + previous.byteLength <= (table[i] as Extent).groupByteOffset, 'no overlap');
                }
                const last = table[table.length - 1];
                if (last !== undefined) assert.ok(last.groupByteOffset + last.byteLength <= group.capacityBytes);
              }
            } finally {
              group.close();
              for (const disk of disks) disk.close();
            }
          },
        ),
        { seed: SEED, numRuns: RUNS, verbose: true },
      );
    });
  }
});
