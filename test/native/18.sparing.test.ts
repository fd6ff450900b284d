// Notes on the design
// -------------------
// RaidGroup sparing through the TypeScript layer and the addon (native/core/raid_sparing.cpp): a
// raid5 member turned suspect by its error threshold is copied onto a spare with progress while
// writes go on, the unreadable chunk of the suspect rebuilt from parity, the spare swapped in at
// the end (disks, member disk id), the old disk out of the group; a sparing found by open() in
// shared metadata waits for resumeSparing (the wrong disk refused) and finishes at its cursor;
// refusals (a failed member, a spare too small, a member as spare).
import * as assert from 'node:assert/strict';
import * as crypto from 'node:crypto';

import { Disk } from '../../src/storage/disk';
import { RaidGroup } from '../../src/storage/raid-group';
import { Cleanup, throwsCode, throwsWith, uniqueName } from '../helpers/storage';

const KiB = 1024;

describe('18 raid group sparing', () => {
  const cleanup = new Cleanup();
  afterEach(() => cleanup.run());
  const disk = (capacityBytes = 256 * KiB, options: Partial<Parameters<typeof Disk.create>[0]> = {}): Disk =>
    cleanup.close(Disk.create({ capacityBytes, ...options }));

  it('copies a suspect member onto a spare under writes, rebuilds its unreadable chunk, swaps it in', async () => {
    const disks = [disk(), disk(256 * KiB, { errorThreshold: 2 }), disk(), disk()];
    const group = cleanup.close(RaidGroup.create({ level: 'raid5', disks, stripeUnitBytes: 16 * KiB }));
    const model = crypto.randomBytes(group.capacityBytes);
    group.write(0, model);
    // Stripe 0: parity on member 3, data units on 0, 1, 2: group [16 KiB, 32 KiB) is member 1's [0, 16 KiB).
    disks[1]?.addFault({ operations: 'read', byteOffset: 0, byteLength: 16 * KiB });
    const piece = Buffer.alloc(16 * KiB);
    for (let i = 0; i < 2; i++) {
      group.read(16 * KiB, piece);
      assert.ok(piece.equals(model.subarray(16 * KiB, 32 * KiB)));
    }
    assert.equal(disks[1]?.status, 'suspect');
    const spare = disk();
    group.startSparing(1, spare);
    assert.deepEqual({ ...group.sparingProgress, diskId: undefined }, { member: 1, diskId: undefined, cursorBytes: 0, memberBytes: group.memberBytes, attached: true });
    const seen: number[] = [];
    const running = group.spare({ stepBytes: 32 * KiB, onProgress: ({ cursorBytes }) => {
      seen.push(cursorBytes);
      const data = crypto.randomBytes(8 * KiB);
      const at = crypto.randomInt(0, (group.capacityBytes - data.length) / 512) * 512;
      group.write(at, data);
      data.copy(model, at);
    } });
    await running;
    assert.equal(seen.at(-1), group.memberBytes);
    assert.ok(seen.length >= 2);
    assert.equal(group.sparingProgress, undefined);
    assert.equal(group.disks[1], spare);
    assert.equal(group.members()[1]?.diskId, spare.id);
    assert.ok(group.stats().degradedReadCount > 0);
    // The old disk is out: failing it changes nothing.
    disks[1]?.fail();
    const all = Buffer.alloc(group.capacityBytes);
    group.read(0, all);
    assert.ok(all.equals(model));
    assert.equal(group.condition, 'optimal');
  });

  it('a sparing in shared metadata survives a reopen and finishes after resumeSparing', async () => {
    const names = [0, 1, 2, 3].map(() => uniqueName('spd'));
    const disks = names.map((name) => Disk.create({ capacityBytes: 128 * KiB, backing: 'shared', name }));
    const groupName = uniqueName('spg');
    try {
      const group = RaidGroup.create({ level: 'raid1', disks: disks.slice(0, 2), backing: 'shared', name: groupName });
      const model = crypto.randomBytes(group.capacityBytes);
      group.write(0, model);
      group.startSparing(0, disks[3] as Disk);
      assert.equal(group.sparingStep(64 * KiB), 64 * KiB);
      group.close();
      const again = RaidGroup.open({ name: groupName, disks: disks.slice(0, 2) });
      assert.equal(again.sparingProgress?.cursorBytes, 64 * KiB);
      assert.equal(again.sparingProgress?.attached, false);
      throwsCode(() => again.sparingStep(), 'ERR_RAID_MEMBER_STATE');
      throwsCode(() => again.resumeSparing(disks[2] as Disk), 'ERR_RAID_BAD_HEADER');
      again.resumeSparing(disks[3] as Disk);
      const late = crypto.randomBytes(4 * KiB);
      again.write(0, late);
      late.copy(model, 0);
      await again.spare();
      assert.equal(again.disks[0], disks[3]);
      again.close();
      const third = RaidGroup.open({ name: groupName, disks: [disks[3] as Disk, disks[1] as Disk] });
      disks[1]?.fail();
      const all = Buffer.alloc(third.capacityBytes);
      third.read(0, all);
      assert.ok(all.equals(model), 'the spare holds every byte, the late write included');
      third.destroy();
    } finally {
      for (const d of disks) d.close();
      for (const name of names) Disk.unlink(name);
    }
  });

  it('refuses a failed member, a spare too small and a member as spare', () => {
    const disks = [disk(), disk(), disk()];
    const group = cleanup.close(RaidGroup.create({ level: 'raid5', disks }));
    throwsWith(() => group.startSparing(0, disk(64 * KiB)), RangeError, /smaller/);
    throwsWith(() => group.startSparing(0, disks[1] as Disk), RangeError, /member/);
    throwsWith(() => group.startSparing(9, disk()), RangeError, /member/);
    group.failMember(2);
    throwsCode(() => group.startSparing(2, disk()), 'ERR_RAID_MEMBER_STATE');
    assert.equal(group.sparingStep(), 0);
  });
});
