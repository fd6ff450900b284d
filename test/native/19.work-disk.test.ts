// Notes on the design
// -------------------
// Diversion variant (c), a work disk (native/core/diversion.cpp with a data disk, RaidGroup's
// setWorkDisk in native/core/raid.cpp), through the TypeScript layer: every case keeps a model
// Buffer of what the group must hold and compares whole-group reads with it.
//   - a raid5 sparing under writes with the work disk laid under the members: the members' disks
//     take no host write during the diversion (their write counters stand still), the work disk
//     takes them, reads are right all along, the copy-back lands on the spare that took the
//     member's place, and the tables end unused;
//   - the address map (main, main address) -> work address in arrival order, one work disk
//     serving two groups (the seed's T6 and T7);
//   - full: blocks already diverted are updated in place, others fall back to the members;
//   - a work disk that fails slot writes (fallback, counted) and slot reads (raid5 rebuilds the
//     bytes from parity), also under a partial write's merge and a copy-back (no member fails);
//   - a rebuild during the diversion takes no slot and loses nothing;
//   - shared maps reopened as a SIGKILL leaves them, with the right disk only; refusals.
import * as assert from 'node:assert/strict';
import * as crypto from 'node:crypto';

import { Disk } from '../../src/storage/disk';
import { WorkVolume } from '../../src/storage/diversion';
import { RaidGroup } from '../../src/storage/raid-group';
import { Cleanup, throwsCode, throwsWith, uniqueName } from '../helpers/storage';

const KiB = 1024;

describe('19 work disk (diversion variant (c))', () => {
  const cleanup = new Cleanup();
  afterEach(() => cleanup.run());
  const disk = (capacityBytes = 256 * KiB, options: Partial<Parameters<typeof Disk.create>[0]> = {}): Disk =>
    cleanup.close(Disk.create({ capacityBytes, ...options }));
  const workDisk = (capacityBytes = 1024 * KiB, slotBytes = 4096): WorkVolume =>
    cleanup.close(WorkVolume.create({ dataDisk: disk(capacityBytes), slotBytes }));

  function writeRandom(group: RaidGroup, model: Buffer, maxBytes = 12 * KiB, fromByte = 0): void {
    const length = crypto.randomInt(1, maxBytes / 512 + 1) * 512;
    const at = fromByte + crypto.randomInt(0, (group.capacityBytes - fromByte - length) / 512 + 1) * 512;
    if (crypto.randomInt(0, 8) === 0) {
      group.writeZeroes(at, length);
      model.fill(0, at, at + length);
    } else {
      const data = crypto.randomBytes(length);
      group.write(at, data);
      data.copy(model, at);
    }
  }

  function assertHolds(group: RaidGroup, model: Buffer, what: string): void {
    const all = Buffer.alloc(group.capacityBytes);
    group.read(0, all);
    assert.ok(all.equals(model), `${what}: the group's bytes differ from the model`);
  }

  const memberWrites = (disks: readonly Disk[]): number => disks.reduce((sum, d) => sum + d.stats().writeBytes, 0);

  it('diverts every member write of a raid5 sparing to the work disk and copies it back onto the swapped-in spare', async () => {
    const disks = [disk(), disk(256 * KiB, { errorThreshold: 2 }), disk(), disk()];
    const group = cleanup.close(RaidGroup.create({ level: 'raid5', disks, stripeUnitBytes: 16 * KiB }));
    const model = crypto.randomBytes(group.capacityBytes);
    group.write(0, model);
    const work = workDisk();
    assert.deepEqual(group.divertDisks(work), [0, 1, 2, 3]);
    assert.deepEqual(work.mains, disks.map((d) => d.id));
    work.start();
    const before = memberWrites(disks);
    const spare = disk();
    group.startSparing(1, spare);
    let writes = 0;
    await group.spare({ stepBytes: 32 * KiB, onProgress: () => {
      for (let i = 0; i < 4; i++, writes++) writeRandom(group, model);
      assertHolds(group, model, 'during the sparing');
    } });
    assert.ok(writes >= 8);
    // Host writes went to the work disk only: the members' disks saw none of them.
    assert.equal(memberWrites(disks), before);
    assert.ok(work.stats().divertedWrites > 0);
    assert.ok((work.terminal ?? 0) > 0);
    assert.equal(group.disks[1], spare);
    assertHolds(group, model, 'after the swap');
    const spareBefore = spare.stats().writeBytes;
    await work.copyBack({ stepSlots: 7 });
    group.divertDisks(null);
    assert.equal(work.state, 'unused');
    assert.equal(work.terminal, null);
    assert.deepEqual(work.entries(), []);
    assert.deepEqual(work.mains, [], 'a finished copy-back clears the mains: the work disk serves any group next');
    assert.ok(spare.stats().writeBytes > spareBefore, 'the copy-back wrote the member that the spare became');
    assertHolds(group, model, 'after the copy-back, without the work disk');
    // The old suspect disk is out: failing it changes nothing.
    disks[1]?.fail();
    assertHolds(group, model, 'with the old disk failed');
  });

  it('lists the address map in arrival order, one work disk serving two groups', () => {
    const a = [disk(), disk()];
    const b = [disk(), disk()];
    const groupA = cleanup.close(RaidGroup.create({ level: 'raid1', disks: a }));
    const groupB = cleanup.close(RaidGroup.create({ level: 'raid1', disks: b }));
    const work = workDisk(64 * KiB);
    assert.deepEqual(groupA.divertDisks(work, [11n, 12n]), [0, 1]);
    assert.deepEqual(groupB.divertDisks(work, [21n, 22n]), [2, 3]);
    assert.deepEqual(work.mains, [11n, 12n, 21n, 22n]);
    work.start();
    groupA.write(4096, Buffer.alloc(4096, 1));
    groupB.write(0, Buffer.alloc(4096, 2));
    groupA.write(4096, Buffer.alloc(4096, 3));  // again: new slots, the old ones are no longer live
    assert.deepEqual(work.entries(), [
      { main: 2, block: 0, slot: 3 }, { main: 3, block: 0, slot: 4 },
      { main: 0, block: 1, slot: 5 }, { main: 1, block: 1, slot: 6 },
    ]);
    assert.equal(work.terminal, 6);
    assert.equal(work.bitmap(8), '11111100');
    const piece = Buffer.alloc(4096);
    groupA.read(4096, piece);
    assert.ok(piece.equals(Buffer.alloc(4096, 3)));
    assert.ok(work.stats().divertedReads > 0);
  });

  it('goes full: diverted blocks are updated in place, the rest falls back to the members', async () => {
    const disks = [disk(), disk(), disk()];
    const group = cleanup.close(RaidGroup.create({ level: 'raid5', disks, stripeUnitBytes: 4 * KiB }));
    const model = crypto.randomBytes(group.capacityBytes);
    group.write(0, model);
    const work = workDisk(16 * 4096);
    group.divertDisks(work);
    work.start();
    for (let i = 0; i < 60; i++) writeRandom(group, model, 8 * KiB);
    assert.equal(work.state, 'full');
    assert.ok(work.stats().fallbackWrites > 0);
    assertHolds(group, model, 'full');
    await work.copyBack();
    group.divertDisks(null);
    assertHolds(group, model, 'after the copy-back');
  });

  it('survives a work disk failing slot writes (fallback) and slot reads (rebuilt from parity)', async () => {
    const disks = [disk(), disk(), disk(), disk()];
    const group = cleanup.close(RaidGroup.create({ level: 'raid5', disks, stripeUnitBytes: 8 * KiB }));
    const model = crypto.randomBytes(group.capacityBytes);
    group.write(0, model);
    const work = workDisk();
    group.divertDisks(work);
    work.start();
    for (let i = 0; i < 20; i++) writeRandom(group, model);
    assertHolds(group, model, 'diverting');
    const dataDisk = work.dataDisk as Disk;
    dataDisk.addFault({ operations: 'write', rate: 0.3, errno: 5 });
    for (let i = 0; i < 40; i++) writeRandom(group, model);
    assert.ok(work.stats().slotErrors > 0);
    assert.ok(work.stats().fallbackWrites > 0);
    dataDisk.clearFaults();
    assertHolds(group, model, 'after failed slot writes');
    // Unreadable slots: raid5 rebuilds those bytes from the other members (their newest copies).
    const degradedBefore = group.stats().degradedReadCount;
    // One live slot unreadable (two in one stripe would be data loss, reported: ERR_RAID_READ_FAILED).
    // A data unit, not a parity one (reads do not read parity): the parity member of stripe s is 3 - s mod 4.
    const live = work.entries(1000).filter((e) => e.main !== 3 - (Math.floor((e.block * 4096) / (8 * KiB)) % 4));
    const victim = live[Math.floor(live.length / 2)];
    assert.ok(victim !== undefined);
    dataDisk.addFault({ operations: 'read', byteOffset: (victim.slot - 1) * 4096, byteLength: 4096 });
    assertHolds(group, model, 'with unreadable slots');
    assert.ok(group.stats().degradedReadCount > degradedBefore);
    dataDisk.clearFaults();
    await work.copyBack();
    group.divertDisks(null);
    assertHolds(group, model, 'after the copy-back');
  });

  it('a slot unreadable under a partial write or a copy-back is rebuilt from the other members, no member fails', async () => {
    for (const level of ['raid1', 'raid5'] as const) {
      const disks = level === 'raid1' ? [disk(), disk()] : [disk(), disk(), disk()];
      const group = cleanup.close(RaidGroup.create({ level, disks, ...(level === 'raid5' ? { stripeUnitBytes: 16 * KiB } : {}) }));
      const model = crypto.randomBytes(group.capacityBytes);
      group.write(0, model);
      const work = workDisk();
      group.divertDisks(work);
      work.start();
      const first = crypto.randomBytes(4096);
      group.write(0, first);  // raid1: both mirrors' block 0; raid5: member 0's block 0 and the parity's
      first.copy(model, 0);
      const victim = work.entries().find((e) => e.main === 0 && e.block === 0);
      assert.ok(victim !== undefined);
      const dataDisk = work.dataDisk as Disk;
      const fault = dataDisk.addFault({ operations: 'read', byteOffset: (victim.slot - 1) * 4096, byteLength: 4096 });
      const piece = crypto.randomBytes(512);
      group.write(1024, piece);  // merged with member 0's block 0, whose slot cannot be read
      piece.copy(model, 1024);
      assert.deepEqual(group.members().map((m) => m.state), disks.map(() => 'active'), `${level}: no member failed`);
      assertHolds(group, model, `${level}: after the merge`);
      // The copy-back meets another unreadable slot (the newest of block 0 now) and rebuilds it too.
      const newest = work.entries().find((e) => e.main === 0 && e.block === 0);
      dataDisk.removeFault(fault);
      dataDisk.addFault({ operations: 'read', byteOffset: ((newest?.slot ?? 1) - 1) * 4096, byteLength: 4096 });
      await work.copyBack();
      group.divertDisks(null);
      dataDisk.clearFaults();
      assert.deepEqual(group.members().map((m) => m.state), disks.map(() => 'active'), `${level}: no member failed in the copy-back`);
      assertHolds(group, model, `${level}: after the copy-back`);
    }
  });

  it('a copy-back that cannot read a slot stops with ERR_DIVERSION_IO_FAILED and resumes at its cursor', async () => {
    const disks = [disk(), disk()];
    const group = cleanup.close(RaidGroup.create({ level: 'raid1', disks }));
    const model = crypto.randomBytes(group.capacityBytes);
    group.write(0, model);
    const work = workDisk();
    group.divertDisks(work);
    work.start();
    for (let i = 0; i < 10; i++) writeRandom(group, model);
    const dataDisk = work.dataDisk as Disk;
    dataDisk.addFault({ operations: 'read' });
    work.beginCopyBack();
    throwsCode(() => work.copyBackStep(1000), 'ERR_DIVERSION_IO_FAILED');
    assert.equal(work.state, 'copying-back');
    dataDisk.clearFaults();
    await work.copyBack();
    group.divertDisks(null);
    assertHolds(group, model, 'after the resumed copy-back');
  });

  it('a rebuild during the diversion takes no slot and loses nothing', async () => {
    const disks = [disk(), disk(), disk(), disk()];
    const group = cleanup.close(RaidGroup.create({ level: 'raid5', disks, stripeUnitBytes: 16 * KiB }));
    const model = crypto.randomBytes(group.capacityBytes);
    group.write(0, model);
    const work = workDisk();
    group.divertDisks(work);
    work.start();
    for (let i = 0; i < 20; i++) writeRandom(group, model);
    group.failMember(2);
    for (let i = 0; i < 10; i++) writeRandom(group, model);
    assertHolds(group, model, 'degraded');
    group.startRebuild(2, disk());
    let terminal = work.terminal;
    await group.rebuild({ stepBytes: 32 * KiB });
    assert.equal(work.terminal, terminal, 'the rebuild took slots');
    for (let i = 0; i < 10; i++) writeRandom(group, model);
    terminal = work.terminal;
    assertHolds(group, model, 'rebuilt');
    await work.copyBack();
    group.divertDisks(null);
    assertHolds(group, model, 'after the copy-back');
    assert.ok((terminal ?? 0) > 0);
  });

  it('a second disk failing during a diverted raid5 sparing: the lost bytes are an error, never stale', () => {
    const disks = [disk(), disk(256 * KiB, { errorThreshold: 1 }), disk(), disk()];
    const group = cleanup.close(RaidGroup.create({ level: 'raid5', disks, stripeUnitBytes: 16 * KiB }));
    const model = crypto.randomBytes(group.capacityBytes);
    group.write(0, model);
    const work = workDisk();
    group.divertDisks(work);
    work.start();
    group.startSparing(1, disk());
    group.sparingStep(16 * KiB);
    // Past stripe 0 (48 KiB of data): a diverted copy of its blocks would be readable from the work disk.
    for (let i = 0; i < 10; i++) writeRandom(group, model, 12 * KiB, 48 * KiB);
    // Member 1 cannot read its first unit, and member 2 fails outright: stripe 0 has two holes.
    disks[1]?.addFault({ operations: 'read', byteOffset: 0, byteLength: 16 * KiB });
    disks[2]?.fail();
    const piece = Buffer.alloc(16 * KiB);
    const lostBefore = group.stats().dataLostCount;
    throwsCode(() => group.read(16 * KiB, piece), 'ERR_RAID_READ_FAILED');  // member 1's unit of stripe 0
    assert.ok(group.stats().dataLostCount > lostBefore);
    // A stripe where member 1 reads and only member 2 is gone is rebuilt from the rest.
    const at = 4 * 48 * KiB;  // stripe 4: parity on member 3, data on 0, 1, 2
    group.read(at + 32 * KiB, piece);  // member 2's unit, from members 0, 1 and parity (some diverted)
    assert.ok(piece.equals(model.subarray(at + 32 * KiB, at + 48 * KiB)));
  });

  it('a data disk closed under the diversion fails slot I/O: writes fall back, lost slots are an error, the process lives', () => {
    const disks = [disk(), disk(), disk()];
    const group = cleanup.close(RaidGroup.create({ level: 'raid5', disks, stripeUnitBytes: 16 * KiB }));
    const data = Disk.create({ capacityBytes: 1024 * KiB });
    const work = cleanup.close(WorkVolume.create({ dataDisk: data }));
    group.divertDisks(work);
    work.start();
    group.write(0, Buffer.alloc(4096, 7));
    data.close();
    group.write(8192, Buffer.alloc(4096, 9));
    const piece = Buffer.alloc(4096);
    group.read(8192, piece);
    assert.ok(piece.equals(Buffer.alloc(4096, 9)), 'the write fell back to the members');
    assert.ok(work.stats().slotErrors > 0);
    // Block 0's data and parity lived on the closed disk only: an error, not stale bytes.
    throwsCode(() => group.read(0, piece), 'ERR_RAID_READ_FAILED');
  });

  it('reopens shared maps as a SIGKILL leaves them, with its own data disk only', () => {
    const diskName = uniqueName('wdd');
    const mapName = uniqueName('wdm');
    const data = Disk.create({ capacityBytes: 256 * KiB, backing: 'shared', name: diskName });
    try {
      const members = [disk(), disk()];
      const group = cleanup.close(RaidGroup.create({ level: 'raid1', disks: members }));
      const work = WorkVolume.create({ dataDisk: data, backing: 'shared', name: mapName });
      group.divertDisks(work, [5n, 6n]);
      work.start();
      group.write(8192, Buffer.alloc(4096, 7));
      group.divertDisks(null);
      work.close();  // the process is gone; the region and the disk stay
      throwsCode(() => WorkVolume.open({ name: mapName }), 'ERR_DIVERSION_BAD_HEADER');
      throwsCode(() => WorkVolume.open({ name: mapName, dataDisk: disk() }), 'ERR_DIVERSION_BAD_HEADER');
      const again = WorkVolume.open({ name: mapName, dataDisk: data });
      try {
        assert.equal(again.state, 'diverting');
        assert.deepEqual(again.entries(), [{ main: 0, block: 2, slot: 1 }, { main: 1, block: 2, slot: 2 }]);
        assert.deepEqual(group.divertDisks(again, [5n, 6n]), [0, 1]);
        const piece = Buffer.alloc(4096);
        group.read(8192, piece);
        assert.ok(piece.equals(Buffer.alloc(4096, 7)));
        group.divertDisks(null);
      } finally {
        again.close();
        WorkVolume.unlink(mapName);
      }
    } finally {
      data.close();
      Disk.unlink(diskName);
    }
  });

  it('refuses a member as work disk, a work volume without a disk, bad keys and sizes', () => {
    const members = [disk(), disk()];
    const group = cleanup.close(RaidGroup.create({ level: 'raid1', disks: members }));
    const own = cleanup.close(WorkVolume.create({ dataDisk: members[0] as Disk }));
    throwsWith(() => group.divertDisks(own), RangeError, /member of the group/);
    const plain = cleanup.close(WorkVolume.create({ capacityBytes: 64 * KiB }));
    throwsWith(() => group.divertDisks(plain), RangeError, /dataDisk/);
    const work = workDisk();
    throwsWith(() => group.divertDisks(work, [1n]), RangeError, /one key per member/);
    throwsWith(() => group.divertDisks(work, [1n, 2 as unknown as bigint]), TypeError, /bigints/);
    throwsWith(() => WorkVolume.create({ dataDisk: disk(64 * KiB), capacityBytes: 128 * KiB }), RangeError, /exceeds/);
    // A refused call changes nothing: the work disk in use stays, reads stay right.
    group.divertDisks(work, [1n, 2n]);
    work.start();
    group.write(0, Buffer.alloc(4096, 0xaa));
    throwsWith(() => group.divertDisks(own), RangeError, /member of the group/);
    const another = workDisk();
    throwsCode(() => group.divertDisks(another), 'ERR_DIVERSION_STATE');
    const piece = Buffer.alloc(4096);
    group.read(0, piece);
    assert.ok(piece.equals(Buffer.alloc(4096, 0xaa)));
    throwsWith(() => WorkVolume.create({ dataDisk: disk(64 * KiB, { sectorSize: 4096 }), slotBytes: 512 }), RangeError, /sector/);
  });
});
