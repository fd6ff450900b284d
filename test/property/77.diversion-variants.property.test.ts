// Notes on the design
// -------------------
// Property tests of diversion variants (a) and (c) of seed 004 against models; 25 does variant (b).
//   (c) a work disk laid under every member of a raid1 or raid5 group (random level, 2-5 small
//       members, stripe unit, slot size 512..8192, a work disk small enough to fill): random group
//       writes and writeZeroes, reads (whole sectors or any bytes), start, copy-back in random
//       steps, a fault on the work disk's writes (by rate, from the disk's seeded generator) set
//       and cleared, and a reopen of the shared tables (a restart after a SIGKILL). After every
//       command: the group's bytes equal the model Buffer; while diverting (not full, no slot
//       error in the command) the members' write counters stand still; entries() has distinct
//       (main, block) rows in increasing slot order, each slot in 1..terminal, each what lookup()
//       gives and marked in the slot bitmap; a refused transition is ERR_DIVERSION_STATE. After a
//       full copy-back: state 'unused', terminal null, no entries, and the group without its work
//       disk equals the model.
//   (a) a volume on a raid5 weak group whose share is diverted to an extent of a raid1 secondary
//       group: random volume writes, writeZeroes and reads, start, copy-back in random steps, host
//       writes during it and a reopen of the shared bitmap. The model keeps the bytes, the state,
//       the copy-back cursor and the set of blocks written since start and not yet copied back.
//       After every command: reads
//       equal the model; bitmap bit b is '1' iff b is in the set, divertedBlocks is its size;
//       copyBackStep walks min(k, blocks left) blocks; copiedBackBlocks grows by the set blocks
//       copied (by a step or a host write during the copy-back); the weak group's disks take no
//       write while diverting, the secondary's none outside it. After a copy-back the weak group
//       alone (group.read of the volume's extent) equals the model.
// A default run also checks that the generators reached the interesting cases (full, failed slot
// writes, host writes during a copy-back, a copy-back finished mid-sequence), so neither property
// passes vacuously. The seed and path are printed on failure; rerun with STORAGE_PROPERTY_SEED=<seed> (and _RUNS=<n>).
import * as assert from 'node:assert/strict';

import fc from 'fast-check';

import { BackupVolume, type BackupState } from '../../src/storage/backup-volume';
import { Disk } from '../../src/storage/disk';
import { WorkVolume, type WorkState } from '../../src/storage/diversion';
import { RaidGroup } from '../../src/storage/raid-group';
import { Volume } from '../../src/storage/volume';
import { throwsCode, uniqueName } from '../helpers/storage';

const SEED = process.env.STORAGE_PROPERTY_SEED !== undefined ? Number(process.env.STORAGE_PROPERTY_SEED) : Date.now() % 2 ** 31;
const RUNS = process.env.STORAGE_PROPERTY_RUNS !== undefined ? Number(process.env.STORAGE_PROPERTY_RUNS) : 150;
const KiB = 1024;
const SECTOR = 512;

/** Bytes that tell offsets apart: a misplaced or shifted piece shows. */
function pattern(length: number, fill: number): Buffer {
  const data = Buffer.alloc(length);
  for (let i = 0; i < length; i++) data[i] = (fill + i * 7 + (i >> 9)) & 0xff;
  return data;
}

const writesOf = (disks: readonly Disk[]): number => disks.reduce((sum, d) => sum + d.stats().writeCount, 0);

// ---- variant (c): a work disk under a group's members ----

interface WorkDiskSetup {
  level: 'raid1' | 'raid5';
  memberCount: number;
  memberBytes: number;
  stripeUnitBytes: number;
  slotBytes: number;
  slotCount: number;
  diskSeed: number;
}

const workDiskSetupArb: fc.Arbitrary<WorkDiskSetup> = fc.constantFrom<'raid1' | 'raid5'>('raid1', 'raid5').chain((level) =>
  fc.record({
    level: fc.constant(level),
    memberCount: fc.integer({ min: level === 'raid1' ? 2 : 3, max: 5 }),
    memberBytes: fc.integer({ min: 1, max: 4 }).map((n) => n * 16 * KiB),
    stripeUnitBytes: fc.constantFrom(4 * KiB, 8 * KiB, 16 * KiB),
    slotBytes: fc.constantFrom(512, 1024, 2048, 4096, 8192),
    slotCount: fc.integer({ min: 2, max: 64 }),
    diskSeed: fc.integer({ min: 1, max: 2 ** 31 - 1 }),
  }),
);

type WorkOp =
  | { op: 'write'; at: number; sectors: number; fill: number; unaligned: boolean }
  | { op: 'zeroes'; at: number; sectors: number; unaligned: boolean }
  | { op: 'read'; at: number; sectors: number; unaligned: boolean }
  | { op: 'start' }
  | { op: 'beginCopyBack' }
  | { op: 'copyBackStep'; slots: number }
  | { op: 'fault'; rate: number }
  | { op: 'clearFaults' }
  | { op: 'reopen' };

// Offsets are fractions of the group's capacity (which depends on the setup), in sectors.
const fractionArb = fc.integer({ min: 0, max: 9999 });
const unalignedArb = fc.boolean();
const workOpArb: fc.Arbitrary<WorkOp> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ op: fc.constant('write' as const), at: fractionArb, sectors: fc.integer({ min: 1, max: 40 }), fill: fc.integer({ min: 0, max: 255 }), unaligned: unalignedArb }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('zeroes' as const), at: fractionArb, sectors: fc.integer({ min: 1, max: 40 }), unaligned: unalignedArb }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('read' as const), at: fractionArb, sectors: fc.integer({ min: 1, max: 64 }), unaligned: unalignedArb }) },
  { weight: 2, arbitrary: fc.constant({ op: 'start' as const }) },
  { weight: 1, arbitrary: fc.constant({ op: 'beginCopyBack' as const }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('copyBackStep' as const), slots: fc.oneof(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 16, max: 128 })) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('fault' as const), rate: fc.constantFrom(0.1, 0.3, 0.6, 1) }) },
  { weight: 1, arbitrary: fc.constant({ op: 'clearFaults' as const }) },
  { weight: 1, arbitrary: fc.constant({ op: 'reopen' as const }) },
);

// The state changes each command may make (a work disk's write goes full at its last slot).
const WORK_TRANSITIONS: Record<WorkOp['op'], readonly string[]> = {
  write: ['diverting->full'],
  zeroes: ['diverting->full'],
  read: [],
  start: ['unused->diverting'],
  beginCopyBack: ['diverting->copying-back', 'full->copying-back'],
  copyBackStep: ['copying-back->unused'],
  fault: [],
  clearFaults: [],
  reopen: [],
};

// A request at fraction at/10000 of the capacity: whole sectors, or (unaligned) any bytes.
function span(capacityBytes: number, at: number, sectors: number, unaligned = false): [number, number] {
  if (unaligned) {
    const first = Math.floor((at * capacityBytes) / 10000);
    return [first, Math.min(sectors * SECTOR - ((at * 37) % SECTOR), capacityBytes - first)];
  }
  const totalSectors = capacityBytes / SECTOR;
  const first = Math.floor((at * totalSectors) / 10000);
  return [first * SECTOR, Math.min(sectors, totalSectors - first) * SECTOR];
}

function checkWorkTables(work: WorkVolume, memberCount: number, memberBytes: number, what: string): void {
  const state = work.state;
  const terminal = work.terminal;
  const last = terminal ?? 0;
  assert.ok(last <= work.slotCount, `${what}: terminal ${last} past ${work.slotCount} slots`);
  if (state === 'full') assert.equal(last, work.slotCount, `${what}: full before the last slot`);
  if (state === 'diverting') assert.ok(last < work.slotCount, `${what}: diverting at the last slot`);
  if (state === 'unused') assert.equal(terminal, null, `${what}: unused with a terminal`);
  const rows = work.entries(work.slotCount + 1);
  const bits = work.bitmap(work.slotCount);
  const keys = new Set<string>();
  let previous = 0;
  for (const row of rows) {
    const key = `${row.main}:${row.block}`;
    assert.ok(!keys.has(key), `${what}: (main, block) ${key} listed twice`);
    keys.add(key);
    assert.ok(row.slot > previous, `${what}: slot ${row.slot} after ${previous}`);
    previous = row.slot;
    assert.ok(row.slot >= 1 && row.slot <= last, `${what}: slot ${row.slot} outside 1..${last}`);
    assert.ok(row.main >= 0 && row.main < memberCount, `${what}: main ${row.main}`);
    assert.ok(row.block >= 0 && row.block < memberBytes / work.slotBytes, `${what}: block ${row.block} past the member`);
    assert.equal(work.lookup(row.main, row.block), row.slot, `${what}: lookup ${key}`);
    assert.equal(bits[row.slot - 1], '1', `${what}: live slot ${row.slot} not in the bitmap`);
  }
}

function assertGroupHolds(group: RaidGroup, model: Buffer, what: string): void {
  const all = Buffer.alloc(group.capacityBytes);
  group.read(0, all);
  assert.ok(all.equals(model), `${what}: the group's bytes differ from the model`);
}

function runWorkDisk(setup: WorkDiskSetup, ops: WorkOp[]): void {
  const members = Array.from({ length: setup.memberCount }, () => Disk.create({ capacityBytes: setup.memberBytes }));
  const dataDisk = Disk.create({ capacityBytes: setup.slotCount * setup.slotBytes, seed: setup.diskSeed });
  const group = RaidGroup.create({ level: setup.level, disks: members, stripeUnitBytes: setup.stripeUnitBytes });
  const name = uniqueName('wd77');
  let work = WorkVolume.create({ dataDisk, slotBytes: setup.slotBytes, backing: 'shared', name });
  try {
    const model = pattern(group.capacityBytes, 0x5a);
    group.write(0, model);
    const mainIndexes = Array.from({ length: setup.memberCount }, (_, i) => i);
    assert.deepEqual(group.divertDisks(work), mainIndexes);
    let copyBacks = 0;
    const finishCopyBack = (what: string): void => {
      assert.equal(work.state, 'unused', `${what}: state`);
      assert.equal(work.terminal, null, `${what}: terminal`);
      assert.deepEqual(work.entries(work.slotCount + 1), [], `${what}: entries`);
      assert.equal(work.bitmap(work.slotCount), '0'.repeat(work.slotCount), `${what}: slot bitmap`);
      group.divertDisks(null);
      assertGroupHolds(group, model, `${what}, without the work disk`);
      assert.deepEqual(group.divertDisks(work), mainIndexes, `${what}: laid again`);
      copyBacks++;
    };
    ops.forEach((op, index) => {
      const what = `op ${index} ${JSON.stringify(op)}`;
      const before: WorkState = work.state;
      const memberWritesBefore = writesOf(members);
      const slotErrorsBefore = work.stats().slotErrors;
      switch (op.op) {
        case 'write': {
          const [at, length] = span(group.capacityBytes, op.at, op.sectors, op.unaligned);
          const data = pattern(length, op.fill);
          group.write(at, data);
          data.copy(model, at);
          break;
        }
        case 'zeroes': {
          const [at, length] = span(group.capacityBytes, op.at, op.sectors, op.unaligned);
          group.writeZeroes(at, length);
          model.fill(0, at, at + length);
          break;
        }
        case 'read': {
          const [at, length] = span(group.capacityBytes, op.at, op.sectors, op.unaligned);
          const got = Buffer.alloc(length);
          group.read(at, got);
          assert.ok(got.equals(model.subarray(at, at + length)), `${what}: read ${at}+${length}`);
          break;
        }
        case 'start':
          if (before === 'unused') work.start();
          else throwsCode(() => work.start(), 'ERR_DIVERSION_STATE');
          break;
        case 'beginCopyBack':
          if (before === 'diverting' || before === 'full') work.beginCopyBack();
          else throwsCode(() => work.beginCopyBack(), 'ERR_DIVERSION_STATE');
          break;
        case 'copyBackStep':
          if (before !== 'copying-back') {
            throwsCode(() => work.copyBackStep(op.slots), 'ERR_DIVERSION_STATE');
            break;
          }
          work.copyBackStep(op.slots);
          if (work.state === 'unused') finishCopyBack(`${what}: copy-back done`);
          break;
        case 'fault':
          // One rule at a time (a disk holds a few): a new rate replaces the last.
          dataDisk.clearFaults();
          dataDisk.addFault({ operations: 'write', rate: op.rate, errno: 5 });
          break;
        case 'clearFaults':
          dataDisk.clearFaults();
          break;
        case 'reopen': {
          // What a restart after a SIGKILL finds: the same tables in the region, laid again.
          const rows = work.entries(work.slotCount + 1);
          const terminal = work.terminal;
          const bits = work.bitmap(work.slotCount);
          group.divertDisks(null);
          work.close();
          work = WorkVolume.open({ name, dataDisk });
          assert.equal(work.state, before, `${what}: state reopened`);
          assert.equal(work.terminal, terminal, `${what}: terminal reopened`);
          assert.equal(work.bitmap(work.slotCount), bits, `${what}: bitmap reopened`);
          assert.deepEqual(work.entries(work.slotCount + 1), rows, `${what}: entries reopened`);
          assert.deepEqual(group.divertDisks(work), mainIndexes, `${what}: laid again`);
          break;
        }
      }
      const after = work.state;
      if (after === 'full') reached.add('c: full');
      if (work.stats().slotErrors > slotErrorsBefore) reached.add('c: a failed slot write');
      if (before === 'copying-back' && (op.op === 'write' || op.op === 'zeroes')) reached.add('c: a host write during the copy-back');
      if (before === 'copying-back' && after === 'unused') reached.add('c: a copy-back done mid-sequence');
      if (before === 'diverting' && after === 'diverting' && work.stats().slotErrors === slotErrorsBefore) {
        assert.equal(writesOf(members), memberWritesBefore, `${what}: a member took a write while diverting`);
      }
      if (after !== before) assert.ok(WORK_TRANSITIONS[op.op].includes(`${before}->${after}`), `${what}: ${before} -> ${after}`);
      checkWorkTables(work, setup.memberCount, setup.memberBytes, what);
      assertGroupHolds(group, model, what);
    });
    // The end: whatever state the sequence left, a full copy-back leaves the members holding it all.
    dataDisk.clearFaults();
    if (work.state === 'diverting' || work.state === 'full') work.beginCopyBack();
    let steps = 0;
    while (work.state === 'copying-back') {
      work.copyBackStep(7);
      checkWorkTables(work, setup.memberCount, setup.memberBytes, `final copy-back step ${steps}`);
      assert.ok(++steps <= setup.slotCount + 1, 'the copy-back does not end');
    }
    finishCopyBack('final copy-back');
    assert.ok(copyBacks >= 1);
  } finally {
    group.divertDisks(null);
    work.close();
    WorkVolume.unlink(name);
    group.close();
    dataDisk.close();
    for (const d of members) d.close();
  }
}

// ---- variant (a): a backup volume on a raid1 secondary group ----

interface BackupSetup {
  blockBytes: number;
  capacityBytes: number;
  weakCount: number;
  stripeUnitBytes: number;
}

const backupSetupArb: fc.Arbitrary<BackupSetup> = fc.record({
  blockBytes: fc.constantFrom(512, 1024, 4096, 8192, 16384),
  capacityBytes: fc.integer({ min: 2, max: 8 }).map((n) => n * 16 * KiB),
  weakCount: fc.integer({ min: 3, max: 4 }),
  stripeUnitBytes: fc.constantFrom(4 * KiB, 16 * KiB),
});

type BackupOp =
  | { op: 'write'; at: number; sectors: number; fill: number; unaligned: boolean }
  | { op: 'zeroes'; at: number; sectors: number; unaligned: boolean }
  | { op: 'read'; at: number; sectors: number; unaligned: boolean }
  | { op: 'start' }
  | { op: 'beginCopyBack' }
  | { op: 'copyBackStep'; blocks: number }
  | { op: 'reopen' };

const backupOpArb: fc.Arbitrary<BackupOp> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ op: fc.constant('write' as const), at: fractionArb, sectors: fc.integer({ min: 1, max: 40 }), fill: fc.integer({ min: 0, max: 255 }), unaligned: unalignedArb }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('zeroes' as const), at: fractionArb, sectors: fc.integer({ min: 1, max: 40 }), unaligned: unalignedArb }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('read' as const), at: fractionArb, sectors: fc.integer({ min: 1, max: 64 }), unaligned: unalignedArb }) },
  { weight: 2, arbitrary: fc.constant({ op: 'start' as const }) },
  { weight: 1, arbitrary: fc.constant({ op: 'beginCopyBack' as const }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('copyBackStep' as const), blocks: fc.oneof(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 16, max: 256 })) }) },
  { weight: 1, arbitrary: fc.constant({ op: 'reopen' as const }) },
);

function runBackup(setup: BackupSetup, ops: BackupOp[]): void {
  const { blockBytes, capacityBytes } = setup;
  const blockCount = capacityBytes / blockBytes;
  const weakDisks = Array.from({ length: setup.weakCount }, () => Disk.create({ capacityBytes: capacityBytes + 64 * KiB }));
  const secondaryDisks = [0, 1].map(() => Disk.create({ capacityBytes: capacityBytes + 64 * KiB }));
  const weak = RaidGroup.create({ level: 'raid5', disks: weakDisks, stripeUnitBytes: setup.stripeUnitBytes });
  const secondaryGroup = RaidGroup.create({ level: 'raid1', disks: secondaryDisks });
  const volume = Volume.create({ capacityBytes });
  const name = uniqueName('bk77');
  let backup = BackupVolume.create({ byteLength: capacityBytes, blockBytes, backing: 'shared', name });
  try {
    const extent = weak.allocateExtent('vol', capacityBytes);
    weak.attachVolume(volume, 'vol');
    secondaryGroup.allocateExtent('bk.vol', capacityBytes);
    const model = pattern(capacityBytes, 0x3c);
    volume.write(0, model);
    weak.divertToBackup(volume, backup, secondaryGroup, 'bk.vol');
    let state = 'unused' as BackupState;
    let cursorBlock = 0;
    const diverted = new Set<number>();
    const weakAlone = (what: string): void => {
      const direct = Buffer.alloc(capacityBytes);
      weak.read(extent.groupByteOffset, direct);
      assert.ok(direct.equals(model), `${what}: the weak group alone differs from the model`);
    };
    const touched = (at: number, length: number): number[] => {
      const blocks: number[] = [];
      for (let b = Math.floor(at / blockBytes); b <= Math.floor((at + length - 1) / blockBytes); b++) blocks.push(b);
      return blocks;
    };
    let copyBacks = 0;
    const hostWrite = (at: number, length: number, write: () => void): number => {
      write();
      let copied = 0;
      for (const b of touched(at, length)) {
        if (state === 'diverting') diverted.add(b);
        else if (state === 'copying-back' && diverted.delete(b)) copied++;
      }
      return copied;
    };
    const step = (blocks: number): number => {
      const walked = backup.copyBackStep(blocks);
      assert.equal(walked, Math.min(blocks, blockCount - cursorBlock), `copyBackStep(${blocks}) at block ${cursorBlock}`);
      cursorBlock += walked;
      let copied = 0;
      for (const b of [...diverted]) {
        if (b < cursorBlock && diverted.delete(b)) copied++;
      }
      if (cursorBlock >= blockCount) {
        state = 'unused';
        cursorBlock = 0;
      }
      return copied;
    };
    ops.forEach((op, index) => {
      const what = `op ${index} ${JSON.stringify(op)}`;
      const before = state;
      const weakWritesBefore = writesOf(weakDisks);
      const secondaryWritesBefore = writesOf(secondaryDisks);
      const copiedBefore = backup.stats().copiedBackBlocks;
      let copied = 0;
      switch (op.op) {
        case 'write': {
          const [at, length] = span(capacityBytes, op.at, op.sectors, op.unaligned);
          const data = pattern(length, op.fill);
          copied = hostWrite(at, length, () => volume.write(at, data));
          data.copy(model, at);
          break;
        }
        case 'zeroes': {
          const [at, length] = span(capacityBytes, op.at, op.sectors, op.unaligned);
          copied = hostWrite(at, length, () => volume.writeZeroes(at, length));
          model.fill(0, at, at + length);
          break;
        }
        case 'read': {
          const [at, length] = span(capacityBytes, op.at, op.sectors, op.unaligned);
          const got = Buffer.alloc(length);
          volume.read(at, got);
          assert.ok(got.equals(model.subarray(at, at + length)), `${what}: read ${at}+${length}`);
          break;
        }
        case 'start':
          if (state === 'unused') {
            backup.start();
            state = 'diverting';
          } else {
            throwsCode(() => backup.start(), 'ERR_DIVERSION_STATE');
          }
          break;
        case 'beginCopyBack':
          if (state === 'diverting') {
            backup.beginCopyBack();
            state = 'copying-back';
            cursorBlock = 0;
          } else {
            throwsCode(() => backup.beginCopyBack(), 'ERR_DIVERSION_STATE');
          }
          break;
        case 'copyBackStep':
          if (state === 'copying-back') copied = step(op.blocks);
          else throwsCode(() => backup.copyBackStep(op.blocks), 'ERR_DIVERSION_STATE');
          break;
        case 'reopen':
          // A restart after a SIGKILL: the bitmap, state and copy-back cursor come from the region.
          weak.divertToBackup(volume, null);
          backup.close();
          backup = BackupVolume.open({ name });
          weak.divertToBackup(volume, backup, secondaryGroup, 'bk.vol');
          break;
      }
      assert.equal(backup.state, state, `${what}: state`);
      if (before === 'copying-back' && op.op !== 'copyBackStep' && copied > 0) reached.add('a: a host write copying a block back');
      if (before === 'copying-back' && state === 'unused') reached.add('a: a copy-back done mid-sequence');
      const bits = backup.bitmap(blockCount);
      for (let b = 0; b < blockCount; b++) assert.equal(bits[b] === '1', diverted.has(b), `${what}: bit ${b}`);
      assert.equal(backup.divertedBlocks, diverted.size, `${what}: divertedBlocks`);
      assert.equal(backup.stats().copiedBackBlocks - copiedBefore, copied, `${what}: blocks copied back`);
      if (before === 'diverting' && state === 'diverting') assert.equal(writesOf(weakDisks), weakWritesBefore, `${what}: the weak group took a write while diverting`);
      if (before !== 'diverting' && state !== 'diverting') assert.equal(writesOf(secondaryDisks), secondaryWritesBefore, `${what}: the secondary took a write outside the diversion`);
      const all = Buffer.alloc(capacityBytes);
      volume.read(0, all);
      assert.ok(all.equals(model), `${what}: the volume's bytes differ from the model`);
      if (before === 'copying-back' && state === 'unused') {
        weakAlone(`${what}: copy-back done`);
        copyBacks++;
      }
      if (state === 'unused') assert.equal(diverted.size, 0, `${what}: unused with diverted blocks`);
    });
    if (state === 'diverting') {
      backup.beginCopyBack();
      state = 'copying-back';
      cursorBlock = 0;
    }
    while (state === 'copying-back') step(13);
    assert.equal(backup.state, 'unused');
    assert.equal(backup.divertedBlocks, 0);
    assert.equal(backup.bitmap(blockCount), '0'.repeat(blockCount));
    weakAlone('final copy-back');
    weak.divertToBackup(volume, null);
    const all = Buffer.alloc(capacityBytes);
    volume.read(0, all);
    assert.ok(all.equals(model), 'the volume after the backup is lifted');
  } finally {
    weak.divertToBackup(volume, null);
    backup.close();
    BackupVolume.unlink(name);
    weak.close();
    secondaryGroup.close();
    volume.close();
    for (const d of [...weakDisks, ...secondaryDisks]) d.close();
  }
}

// The cases the generators must reach in a default run, so that the properties are not passing
// vacuously (checked when RUNS is large enough for each to be all but certain).
const reached = new Set<string>();
function assertReached(labels: readonly string[]): void {
  if (RUNS < 100) return;
  for (const label of labels) assert.ok(reached.has(label), `${RUNS} runs never reached ${label}: widen the generators`);
}

describe('77 diversion variants (a) and (c) property', () => {
  it('(c) a work disk under a raid1 or raid5 group matches a model of bytes, member writes, address map and copy-back', () => {
    fc.assert(fc.property(workDiskSetupArb, fc.array(workOpArb, { minLength: 10, maxLength: 80, size: 'max' }), runWorkDisk), { seed: SEED, numRuns: RUNS, verbose: 1 });
    assertReached(['c: full', 'c: a failed slot write', 'c: a host write during the copy-back', 'c: a copy-back done mid-sequence']);
  });

  it('(a) a backup volume on a raid1 secondary matches a model of bytes, differential bitmap, cursor and copy-back', () => {
    fc.assert(fc.property(backupSetupArb, fc.array(backupOpArb, { minLength: 10, maxLength: 80, size: 'max' }), runBackup), { seed: SEED, numRuns: RUNS, verbose: 1 });
    assertReached(['a: a host write copying a block back', 'a: a copy-back done mid-sequence']);
  });
});
