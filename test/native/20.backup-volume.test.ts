// Notes on the design
// -------------------
// Diversion variant (a), a backup volume (native/core/backup_diversion.cpp behind GroupExtent),
// through the TypeScript layer, against a model Buffer of the volume:
//   - a raid5 sparing under writes with the volume's group share diverted to an extent of an
//     unused raid1 group: the weak group's disks take no host write, the secondary group does,
//     the differential bitmap marks exactly the blocks written, reads are right all along, the
//     copy-back lands on the weak group and clears the bitmap;
//   - a secondary that fails writes: the writes fall back to the weak group, nothing is lost;
//   - a shared bitmap reopened as a SIGKILL leaves it; refusals.
import * as assert from 'node:assert/strict';
import * as crypto from 'node:crypto';

import { BackupVolume } from '../../src/storage/backup-volume';
import { Disk } from '../../src/storage/disk';
import { RaidGroup } from '../../src/storage/raid-group';
import { Volume } from '../../src/storage/volume';
import { Cleanup, throwsCode, throwsWith, uniqueName } from '../helpers/storage';

const KiB = 1024;

describe('20 backup volume (diversion variant (a))', () => {
  const cleanup = new Cleanup();
  afterEach(() => cleanup.run());
  const disk = (capacityBytes = 512 * KiB, options: Partial<Parameters<typeof Disk.create>[0]> = {}): Disk =>
    cleanup.close(Disk.create({ capacityBytes, ...options }));

  function setup(weakDisks = [disk(), disk(), disk()]): { weak: RaidGroup; spareGroup: RaidGroup; volume: Volume; model: Buffer; weakDisks: Disk[]; secondaryDisks: Disk[] } {
    const weak = cleanup.close(RaidGroup.create({ level: 'raid5', disks: weakDisks, stripeUnitBytes: 16 * KiB }));
    const secondaryDisks = [disk(), disk()];
    const spareGroup = cleanup.close(RaidGroup.create({ level: 'raid1', disks: secondaryDisks }));
    const capacityBytes = 512 * KiB;
    weak.allocateExtent('vol', capacityBytes);
    const volume = cleanup.close(Volume.create({ capacityBytes }));
    weak.attachVolume(volume, 'vol');
    const model = crypto.randomBytes(capacityBytes);
    volume.write(0, model);
    spareGroup.allocateExtent('bk.vol', capacityBytes);
    return { weak, spareGroup, volume, model, weakDisks, secondaryDisks };
  }

  function writeRandom(volume: Volume, model: Buffer, written?: Set<number>): void {
    const length = crypto.randomInt(1, 25) * 512;
    const at = crypto.randomInt(0, (model.length - length) / 512 + 1) * 512;
    const data = crypto.randomBytes(length);
    volume.write(at, data);
    data.copy(model, at);
    for (let b = Math.floor(at / 4096); b <= Math.floor((at + length - 1) / 4096); b++) written?.add(b);
  }

  function assertHolds(volume: Volume, model: Buffer, what: string): void {
    const all = Buffer.alloc(model.length);
    volume.read(0, all);
    assert.ok(all.equals(model), `${what}: the volume's bytes differ from the model`);
  }

  const writesOf = (disks: readonly Disk[]): number => disks.reduce((sum, d) => sum + d.stats().writeCount, 0);

  it('diverts the volume to a secondary in an unused group during a sparing and copies it back', async () => {
    const weakDisks = [disk(), disk(512 * KiB, { errorThreshold: 1 }), disk()];
    const { weak, spareGroup, volume, model, secondaryDisks } = setup(weakDisks);
    const backup = cleanup.close(BackupVolume.create({ byteLength: 512 * KiB }));
    weak.divertToBackup(volume, backup, spareGroup, 'bk.vol');
    backup.start();
    assert.equal(backup.state, 'diverting');
    const weakBefore = writesOf(weakDisks);
    const secondaryBefore = writesOf(secondaryDisks);
    const written = new Set<number>();
    weak.startSparing(1, disk());
    await weak.spare({ stepBytes: 64 * KiB, onProgress: () => {
      for (let i = 0; i < 5; i++) writeRandom(volume, model, written);
      assertHolds(volume, model, 'during the sparing');
    } });
    assert.equal(writesOf(weakDisks), weakBefore, 'no host write reached the weak group');
    assert.ok(writesOf(secondaryDisks) > secondaryBefore);
    assert.equal(backup.divertedBlocks, written.size);
    const bits = backup.bitmap(128);
    for (let b = 0; b < 128; b++) assert.equal(bits[b] === '1', written.has(b), `bit ${b}`);
    assertHolds(volume, model, 'after the swap');
    await backup.copyBack({ stepBlocks: 9 });
    weak.divertToBackup(volume, null);
    assert.equal(backup.state, 'unused');
    assert.equal(backup.divertedBlocks, 0);
    assert.equal(backup.stats().copiedBackBlocks, written.size);
    assertHolds(volume, model, 'after the copy-back');
    // The group alone holds every byte: read it directly.
    const direct = Buffer.alloc(model.length);
    weak.read(weak.extents().find((e) => e.name === 'vol')?.groupByteOffset ?? 0, direct);
    assert.ok(direct.equals(model));
  });

  it('a host write during the copy-back lands on the newest bytes', async () => {
    const { weak, spareGroup, volume, model } = setup();
    const backup = cleanup.close(BackupVolume.create({ byteLength: 512 * KiB }));
    weak.divertToBackup(volume, backup, spareGroup, 'bk.vol');
    backup.start();
    for (let i = 0; i < 40; i++) writeRandom(volume, model);
    backup.beginCopyBack();
    backup.copyBackStep(16);
    for (let i = 0; i < 20; i++) writeRandom(volume, model);
    assertHolds(volume, model, 'mid copy-back');
    await backup.copyBack();
    weak.divertToBackup(volume, null);
    assertHolds(volume, model, 'after the copy-back');
  });

  it('falls back to the weak group when the secondary refuses writes; a lost secondary is reported, never silent', () => {
    const { weak, spareGroup, volume, model, secondaryDisks } = setup();
    const backup = cleanup.close(BackupVolume.create({ byteLength: 512 * KiB }));
    weak.divertToBackup(volume, backup, spareGroup, 'bk.vol');
    backup.start();
    // Diverted blocks in the first half only.
    const firstHalf = crypto.randomBytes(64 * KiB);
    volume.write(0, firstHalf);
    firstHalf.copy(model, 0);
    // Both mirrors of the secondary fail their writes: the group fails, later writes to blocks not
    // diverted go to the weak group.
    for (const d of secondaryDisks) d.addFault({ operations: 'write' });
    const secondHalf = crypto.randomBytes(64 * KiB);
    volume.write(256 * KiB, secondHalf);
    secondHalf.copy(model, 256 * KiB);
    assert.ok(backup.stats().fallbackWrites >= 16);
    const piece = Buffer.alloc(64 * KiB);
    volume.read(256 * KiB, piece);
    assert.ok(piece.equals(secondHalf), 'the fallen-back writes read back from the weak group');
    // The diverted blocks lived on the secondary only: their loss is an error, not stale bytes.
    throwsCode(() => volume.read(0, piece), 'ERR_RAID_READ_FAILED');
  });

  it('reopens a shared bitmap as a SIGKILL leaves it', () => {
    const name = uniqueName('bkv');
    const { weak, spareGroup, volume, model } = setup();
    const backup = BackupVolume.create({ byteLength: 512 * KiB, backing: 'shared', name });
    try {
      weak.divertToBackup(volume, backup, spareGroup, 'bk.vol');
      backup.start();
      for (let i = 0; i < 10; i++) writeRandom(volume, model);
      const bits = backup.bitmap(128);
      weak.divertToBackup(volume, null);
      backup.close();
      const again = BackupVolume.open({ name });
      try {
        assert.equal(again.state, 'diverting');
        assert.equal(again.bitmap(128), bits);
        weak.divertToBackup(volume, again, spareGroup, 'bk.vol');
        assertHolds(volume, model, 'through the reopened bitmap');
        weak.divertToBackup(volume, null);
      } finally {
        again.close();
      }
    } finally {
      BackupVolume.unlink(name);
    }
  });

  it('refuses the volume\'s own group, a missing extent, a short backup and a start without a secondary', () => {
    const { weak, spareGroup, volume } = setup();
    const backup = cleanup.close(BackupVolume.create({ byteLength: 512 * KiB }));
    throwsCode(() => backup.start(), 'ERR_DIVERSION_STATE');
    throwsWith(() => weak.divertToBackup(volume, backup, weak, 'vol'), RangeError, /another group/);
    throwsCode(() => weak.divertToBackup(volume, backup, spareGroup, 'nope'), 'ERR_RAID_EXTENT_NOT_FOUND');
    const small = cleanup.close(BackupVolume.create({ byteLength: 64 * KiB }));
    throwsWith(() => weak.divertToBackup(volume, small, spareGroup, 'bk.vol'), RangeError, /as long as the volume/);
    throwsCode(() => backup.beginCopyBack(), 'ERR_DIVERSION_STATE');
    // A backup in use is not replaced by another (its bitmap would be forgotten): copy back first.
    weak.divertToBackup(volume, backup, spareGroup, 'bk.vol');
    backup.start();
    volume.write(0, Buffer.alloc(4096, 0xaa));
    const other = cleanup.close(BackupVolume.create({ byteLength: 512 * KiB }));
    throwsCode(() => weak.divertToBackup(volume, other, spareGroup, 'bk.vol'), 'ERR_DIVERSION_STATE');
    const piece = Buffer.alloc(4096);
    volume.read(0, piece);
    assert.ok(piece.equals(Buffer.alloc(4096, 0xaa)));
    throwsWith(() => BackupVolume.create({ byteLength: 5000 }), RangeError, /multiple/);
  });
});
