// Volumes laid on RAID groups: several volumes per group in extents taken first fit from unused
// space and given back on delete; a volume's writes reach the member disks (the group reads what
// the volume wrote) and its reads come from the group, degraded through a failed disk; a second
// failure reaches the volume's reader as ERR_RAID_READ_FAILED and its writer as
// ERR_RAID_WRITE_FAILED after the bitmap and the journal saw the write; snapshots of a volume on
// a group keep its old image; direct writes fall back to the batched path; the extent table's
// errors (no space, a name in use, freeing an extent a volume is laid on).
import * as assert from 'node:assert/strict';
import * as crypto from 'node:crypto';

import { Disk } from '../../src/storage/disk';
import { Journal } from '../../src/storage/journal';
import { RaidGroup } from '../../src/storage/raid-group';
import { SnapshotStore } from '../../src/storage/snapshot';
import { Volume } from '../../src/storage/volume';
import { Cleanup, throwsCode } from '../helpers/storage';

const KiB = 1024;
const MiB = 1 << 20;

describe('17 volumes on groups', () => {
  const cleanup = new Cleanup();
  afterEach(() => cleanup.run());

  function raid5(diskBytes = MiB, count = 4): { group: RaidGroup; disks: Disk[] } {
    const disks = Array.from({ length: count }, () => cleanup.close(Disk.create({ capacityBytes: diskBytes })));
    // Closed before the disks (cleanup closes in reverse order).
    const group = cleanup.close(RaidGroup.create({ level: 'raid5', disks, stripeUnitBytes: 16 * KiB }));
    return { group, disks };
  }

  function volumeOn(group: RaidGroup, name: string, capacityBytes: number): Volume {
    const extent = group.allocateExtent(name, capacityBytes);
    const volume = cleanup.close(Volume.create({ capacityBytes, name }));
    group.attachVolume(volume, extent.name);
    return volume;
  }

  it('several volumes per group, in unused space, created and deleted at run time', () => {
    const { group } = raid5();
    assert.equal(group.extentAlignmentBytes, 48 * KiB);
    const a = volumeOn(group, 'a', 100 * KiB);
    const b = volumeOn(group, 'b', 512 * KiB);
    assert.deepEqual(group.extents(), [
      { name: 'a', groupByteOffset: 0, byteLength: 144 * KiB },
      { name: 'b', groupByteOffset: 144 * KiB, byteLength: 528 * KiB },
    ]);
    const dataA = crypto.randomBytes(a.capacityBytes);
    const dataB = crypto.randomBytes(b.capacityBytes);
    a.write(0, dataA);
    b.write(0, dataB);
    const inGroup = Buffer.alloc(b.capacityBytes);
    group.read(144 * KiB, inGroup);
    assert.ok(inGroup.equals(dataB), 'the group holds what the volume wrote, at its extent');
    group.detachVolume(a);
    assert.equal(group.freeExtent('a'), true);
    throwsCode(() => group.allocateExtent('c', 2.5 * MiB), 'ERR_RAID_NO_SPACE');
    const c = group.allocateExtent('c', 96 * KiB);
    assert.equal(c.groupByteOffset, 0, 'first fit takes the gap a left');
    throwsCode(() => group.allocateExtent('b', 1), 'ERR_RAID_EXTENT_EXISTS');
    throwsCode(() => group.freeExtent('b'), 'ERR_RAID_MEMBER_STATE');
    throwsCode(() => group.attachVolume(a, 'nope'), 'ERR_RAID_EXTENT_NOT_FOUND');
    const back = Buffer.alloc(b.capacityBytes);
    b.read(0, back);
    assert.ok(back.equals(dataB));
  });

  it('reads come from the group: degraded through a failed disk, an error after a second', () => {
    const { group, disks } = raid5();
    const volume = volumeOn(group, 'v', 768 * KiB);
    const journal = cleanup.close(Journal.create({ capacityBytes: 4 * MiB }));
    volume.attachJournal(journal);
    const bitmap = volume.createBitmap('oos', { granularityBytes: 64 * KiB, recording: true });
    const data = crypto.randomBytes(volume.capacityBytes);
    volume.write(0, data);
    disks[2]?.fail();
    const patch = crypto.randomBytes(12 * KiB);
    volume.write(100 * KiB, patch);
    patch.copy(data, 100 * KiB);
    const back = Buffer.alloc(volume.capacityBytes);
    volume.read(0, back);
    assert.ok(back.equals(data));
    assert.ok(group.stats().degradedReadCount > 0);

    disks[0]?.fail();
    assert.throws(() => volume.read(0, back), (error: Error & { code?: string }) => error.code === 'ERR_RAID_READ_FAILED');
    bitmap.clearAll();
    const before = journal.nextSequence;
    assert.throws(() => volume.write(200 * KiB, Buffer.alloc(4096, 1)), (error: Error & { code?: string }) => error.code === 'ERR_RAID_WRITE_FAILED');
    assert.equal(journal.nextSequence, before + 1, 'the journal saw the failed write');
    assert.equal(bitmap.test(Math.floor((200 * KiB) / (64 * KiB))), true, 'the bitmap saw it');
  });

  it('a snapshot of a volume on a group keeps its old image; direct writes fall back', () => {
    const { group } = raid5();
    const volume = volumeOn(group, 's', 256 * KiB);
    const before = crypto.randomBytes(volume.capacityBytes);
    volume.write(0, before);
    const store = cleanup.close(SnapshotStore.create(volume, { chunkBytes: 64 * KiB }));
    const snapshot = store.createSnapshot('t0');
    volume.write(0, Buffer.alloc(volume.capacityBytes, 9));
    const image = Buffer.alloc(volume.capacityBytes);
    snapshot.read(0, image);
    assert.ok(image.equals(before));
    assert.equal(volume.beginDirectWrite(0, 4096), null);
    const now = Buffer.alloc(volume.capacityBytes);
    group.read(0, now);
    assert.ok(now.every((b) => b === 9));
  });

  it('closing the group lifts its volumes back onto their own region', () => {
    const { group } = raid5();
    const volume = volumeOn(group, 'x', 48 * KiB);
    volume.write(0, Buffer.alloc(4096, 3));
    group.close();
    const back = Buffer.alloc(4096);
    volume.read(0, back);
    assert.equal(back[0], 3);
    volume.write(0, Buffer.alloc(4096, 4));
  });
});
