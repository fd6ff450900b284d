// Property tests of RAID groups against models: the raid5 address map equals a plain formula
// (left-symmetric rotation) and is a bijection from group units onto the members' non-parity
// units; any sequence of writes, zeroes, reads, member failures, transient read faults and
// rebuilds onto spares leaves every read equal to a model Buffer (while at most one member is
// out) and, once every member is active, every stripe's members XOR to zero (parity holds).
// raid1 under the same sequences keeps every active mirror equal to the model.
// The seed is printed on failure; rerun with STORAGE_PROPERTY_SEED=<seed> (and _RUNS=<n>).

import * as assert from 'node:assert/strict';

import fc from 'fast-check';

import { Disk } from '../../src/storage/disk';
import { RaidGroup } from '../../src/storage/raid-group';

const SEED = process.env.STORAGE_PROPERTY_SEED !== undefined ? Number(process.env.STORAGE_PROPERTY_SEED) : Date.now() % 2 ** 31;
const RUNS = process.env.STORAGE_PROPERTY_RUNS !== undefined ? Number(process.env.STORAGE_PROPERTY_RUNS) : 300;
const KiB = 1024;

type Op =
  | { op: 'write' | 'zero' | 'read'; at: number; length: number; salt: number }
  | { op: 'fail'; member: number }
  | { op: 'flaky'; member: number }
  | { op: 'rebuild'; stepKiB: number };

function opArbitrary(memberCount: number): fc.Arbitrary<Op> {
  const span = { at: fc.double({ min: 0, max: 1, noNaN: true }), length: fc.integer({ min: 1, max: 40 * KiB }), salt: fc.integer({ min: 0, max: 255 }) };
  return fc.oneof(
    { weight: 5, arbitrary: fc.record({ op: fc.constant('write' as const), ...span }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('zero' as const), ...span }) },
    { weight: 3, arbitrary: fc.record({ op: fc.constant('read' as const), ...span }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('fail' as const), member: fc.integer({ min: 0, max: memberCount - 1 }) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('flaky' as const), member: fc.integer({ min: 0, max: memberCount - 1 }) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('rebuild' as const), stepKiB: fc.integer({ min: 1, max: 64 }) }) },
  );
}

function fill(length: number, salt: number): Buffer {
  const bytes = Buffer.alloc(length);
  for (let i = 0; i < length; i++) bytes[i] = (i * 131 + salt * 7 + (i >> 9)) & 0xff;
  return bytes;
}

/** The raid5 map as a formula, independent of the native code. */
function modelMap(offset: number, memberCount: number, unit: number): { member: number; diskByteOffset: number; parityMember: number } {
  const dataPerStripe = unit * (memberCount - 1);
  const stripe = Math.floor(offset / dataPerStripe);
  const within = offset % dataPerStripe;
  const parityMember = memberCount - 1 - (stripe % memberCount);
  const member = (parityMember + 1 + Math.floor(within / unit)) % memberCount;
  return { member, diskByteOffset: stripe * unit + (within % unit), parityMember };
}

function parityHolds(disks: Disk[], memberBytes: number): boolean {
  const accumulator = Buffer.alloc(memberBytes);
  const bytes = Buffer.alloc(memberBytes);
  for (const disk of disks) {
    disk.read(0, bytes);
    for (let i = 0; i < memberBytes; i++) accumulator[i] = (accumulator[i] as number) ^ (bytes[i] as number);
  }
  return accumulator.every((b) => b === 0);
}

describe('23 raid property', () => {
  it('the raid5 map is the left-symmetric formula and a bijection onto data units', () => {
    fc.assert(
      fc.property(fc.integer({ min: 3, max: 8 }), fc.constantFrom(512, 1024, 4096, 8192), fc.integer({ min: 1, max: 12 }), (memberCount, unit, unitsPerDisk) => {
        const disks = Array.from({ length: memberCount }, () => Disk.create({ capacityBytes: unit * unitsPerDisk + (unit > 512 ? 512 : 0) }));
        const group = RaidGroup.create({ level: 'raid5', disks, stripeUnitBytes: unit });
        try {
          assert.equal(group.capacityBytes, unit * unitsPerDisk * (memberCount - 1));
          const seen = new Set<string>();
          for (let offset = 0; offset < group.capacityBytes; offset += unit / 2) {
            const location = group.map(offset);
            const model = modelMap(offset, memberCount, unit);
            assert.deepEqual({ member: location.member, diskByteOffset: location.diskByteOffset, parityMember: location.parityMember }, model);
            assert.equal(location.runBytes, unit - (offset % unit));
            if (offset % unit === 0) seen.add(`${location.member}:${location.diskByteOffset}`);
            assert.ok(!seen.has(`${location.parityMember}:${location.diskByteOffset - (offset % unit)}`));
          }
          assert.equal(seen.size, unitsPerDisk * (memberCount - 1));
        } finally {
          group.close();
          for (const disk of disks) disk.close();
        }
      }),
      { seed: SEED, numRuns: RUNS, verbose: true },
    );
  });

  for (const level of ['raid5', 'raid1'] as const) {
    it(`${level}: reads equal a model through failures, flaky reads and rebuilds; redundancy holds after`, () => {
      fc.assert(
        fc.property(
          fc.integer({ min: level === 'raid5' ? 3 : 2, max: 6 }).chain((memberCount) =>
            fc.record({ memberCount: fc.constant(memberCount), unit: fc.constantFrom(512, 4096, 16384), ops: fc.array(opArbitrary(memberCount), { minLength: 1, maxLength: 40 }) }),
          ),
          ({ memberCount, unit, ops }) => {
            const capacityBytes = 64 * KiB;
            const disks = Array.from({ length: memberCount }, () => Disk.create({ capacityBytes }));
            const spares: Disk[] = [];
            const group = RaidGroup.create({ level, disks, stripeUnitBytes: unit });
            const model = Buffer.alloc(group.capacityBytes);
            const redundancy = level === 'raid5' ? 1 : memberCount - 1;
            const out = (): number => group.members().filter((m) => m.state !== 'active').length;
            try {
              for (const op of ops) {
                if (op.op === 'fail') {
                  // Only as many failures as the level survives: data loss has its own tests.
                  if (out() < redundancy) {
                    // A flaky disk beside a failed member would be a second failure.
                    for (const disk of group.disks) disk.clearFaults();
                    group.failMember(op.member);
                  }
                } else if (op.op === 'flaky') {
                  // One flaky disk at a time, and none beside a member that is out: two would be a
                  // second failure, whose reporting has its own tests.
                  for (const disk of group.disks) disk.clearFaults();
                  if (out() === 0) (group.disks[op.member] as Disk).addFault({ operations: 'read', rate: 0.5 });
                } else if (op.op === 'rebuild') {
                  for (const disk of group.disks) disk.clearFaults();
                  const failed = group.members().find((m) => m.state === 'failed');
                  if (failed !== undefined && group.rebuildProgress === undefined) {
                    const spare = Disk.create({ capacityBytes });
                    spares.push(spare);
                    group.startRebuild(failed.member, spare);
                  }
                  group.rebuildStep(op.stepKiB * KiB);
                } else {
                  const at = Math.min(Math.floor(op.at * group.capacityBytes), group.capacityBytes - 1);
                  const length = Math.min(op.length, group.capacityBytes - at);
                  if (op.op === 'write') {
                    const bytes = fill(length, op.salt);
                    group.write(at, bytes);
                    bytes.copy(model, at);
                  } else if (op.op === 'zero') {
                    group.writeZeroes(at, length);
                    model.fill(0, at, at + length);
                  } else {
                    const bytes = Buffer.alloc(length);
                    group.read(at, bytes);
                    assert.ok(bytes.equals(model.subarray(at, at + length)), `read [${at}, +${length})`);
                  }
                }
              }
              for (const disk of group.disks) disk.clearFaults();
              // Finish: rebuild every failed member, then check the whole image and the redundancy.
              for (;;) {
                if (group.rebuildProgress === undefined) {
                  const failed = group.members().find((m) => m.state === 'failed');
                  if (failed === undefined) break;
                  const spare = Disk.create({ capacityBytes });
                  spares.push(spare);
                  group.startRebuild(failed.member, spare);
                }
                group.rebuildStep(RaidGroup.MAX_REBUILD_STEP_BYTES);
              }
              const image = Buffer.alloc(group.capacityBytes);
              group.read(0, image);
              assert.ok(image.equals(model), 'whole image');
              if (level === 'raid5') {
                assert.ok(parityHolds([...group.disks], group.memberBytes), 'parity');
              } else {
                for (const disk of group.disks) {
                  const bytes = Buffer.alloc(group.memberBytes);
                  disk.read(0, bytes);
                  assert.ok(bytes.equals(model), 'mirror equals the model');
                }
              }
            } finally {
              group.close();
              for (const disk of [...disks, ...spares]) disk.close();
            }
          },
        ),
        { seed: SEED, numRuns: RUNS, verbose: true },
      );
    });
  }
});
