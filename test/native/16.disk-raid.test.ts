// The Disk and RaidGroup contract through the TypeScript layer and the addon: faults arrive as
// ERR_DISK_IO with the errno asked for, fault rules and status survive in a shared disk opened
// by a new object, a raid5 group keeps serving reads through a failed disk and rebuilds onto a
// spare with progress while writes go on, a second failure is reported as ERR_RAID_READ_FAILED,
// member states survive a reopen, and bad arguments, wrong receivers and use after close are
// refused at both layers.
import * as assert from 'node:assert/strict';
import * as crypto from 'node:crypto';

import { Disk, kDiskHandle } from '../../src/storage/disk';
import { RaidGroup } from '../../src/storage/raid-group';
import { Cleanup, methodNames, rejectsBadBytes, rejectsBadIndexes, throwsCode, throwsWith, uniqueName, wrongReceivers } from '../helpers/storage';

const KiB = 1024;

describe('16 disk and raid group', () => {
  const cleanup = new Cleanup();
  afterEach(() => cleanup.run());
  const sharedDisks: string[] = [];
  after(() => {
    for (const name of sharedDisks) Disk.unlink(name);
  });

  function disk(capacityBytes = 256 * KiB, options: Partial<Parameters<typeof Disk.create>[0]> = {}): Disk {
    return cleanup.close(Disk.create({ capacityBytes, ...options }));
  }

  it('a disk reads back writes and fails I/O by rule with the errno asked for', () => {
    const d = disk();
    const data = crypto.randomBytes(8 * KiB);
    d.write(4 * KiB, data);
    const back = Buffer.alloc(8 * KiB);
    d.read(4 * KiB, back);
    assert.deepEqual(back, data);
    const index = d.addFault({ operations: 'read', errno: 61, byteOffset: 8 * KiB, byteLength: 512 });
    assert.equal(index, 0);
    throwsCode(() => d.read(4 * KiB, back), 'ERR_DISK_IO');
    try {
      d.read(8 * KiB, Buffer.alloc(1));
      assert.fail('read should fail');
    } catch (error) {
      assert.equal((error as { errno?: number }).errno, 61);
    }
    d.write(8 * KiB, data.subarray(0, 512));
    d.read(0, Buffer.alloc(4 * KiB));
    assert.equal(d.errorCount, 2);
    const [fault] = d.faults();
    assert.deepEqual(
      { operations: fault?.operations, errno: fault?.errno, matchedCount: fault?.matchedCount, firedCount: fault?.firedCount },
      { operations: 'read', errno: 61, matchedCount: 2, firedCount: 2 },
    );
    assert.equal(d.removeFault(0), true);
    d.read(8 * KiB, back);
  });

  it('after N, rate, latency, fail and heal; the threshold makes a disk suspect', () => {
    const d = disk(256 * KiB, { errorThreshold: 4, seed: 42 });
    d.addFault({ operations: 'write', afterCount: 2 });
    const block = Buffer.alloc(512, 7);
    d.write(0, block);
    d.write(0, block);
    throwsCode(() => d.write(0, block), 'ERR_DISK_IO');
    d.clearFaults();
    d.addFault({ rate: 0.5 });
    let failures = 0;
    for (let i = 0; i < 200; i++) {
      try {
        d.read(0, block);
      } catch {
        failures++;
      }
    }
    assert.ok(failures > 50 && failures < 150, `${failures} of 200 at rate 0.5`);
    assert.equal(d.status, 'suspect');
    d.heal();
    assert.equal(d.status, 'normal');
    assert.equal(d.errorCount, 0);
    assert.deepEqual(d.faults(), []);
    d.addFault({ errno: 0, latencyMs: 1 });
    d.read(0, block);
    assert.equal(d.stats().delayedCount, 1);
    d.fail();
    assert.equal(d.status, 'failed');
    throwsCode(() => d.read(0, block), 'ERR_DISK_IO');
    d.heal();
    d.read(0, block);
    assert.equal(block[0], 7);
  });

  it('a shared disk keeps data, status and fault rules for a new object', () => {
    const name = `bmtest-disk-${process.pid}-${Date.now()}`;
    sharedDisks.push(name);
    const first = Disk.create({ capacityBytes: 64 * KiB, backing: 'shared', name, sectorSize: 4096 });
    first.write(0, Buffer.alloc(4096, 0x33));
    first.addFault({ operations: 'write', errno: 30 });
    first.setStatus('spare');
    first.close();
    const second = cleanup.close(Disk.open({ name }));
    assert.equal(second.id, first.id);
    assert.equal(second.sectorSize, 4096);
    assert.equal(second.status, 'spare');
    const back = Buffer.alloc(4096);
    second.read(0, back);
    assert.equal(back[4095], 0x33);
    throwsCode(() => second.write(0, back), 'ERR_DISK_IO');
    throwsCode(() => Disk.create({ capacityBytes: 64 * KiB, backing: 'shared', name }), 'ERR_REGION_EXISTS');
  });

  it('raid5 serves reads through a failed disk and rebuilds onto a spare while writes go on', async () => {
    const disks = [disk(), disk(), disk(), disk()];
    const group = cleanup.close(RaidGroup.create({ level: 'raid5', disks, stripeUnitBytes: 16 * KiB }));
    assert.equal(group.capacityBytes, 3 * 256 * KiB);
    const model = crypto.randomBytes(group.capacityBytes);
    group.write(0, model);
    disks[1]?.fail();
    const patch = crypto.randomBytes(5000);
    group.write(12345, patch);
    patch.copy(model, 12345);
    assert.deepEqual(group.members()[1]?.state, 'failed');
    assert.equal(group.condition, 'degraded');
    const back = Buffer.alloc(group.capacityBytes);
    group.read(0, back);
    assert.ok(back.equals(model));
    assert.ok(group.stats().degradedReadCount > 0);

    const spare = disk(256 * KiB, { status: 'spare' });
    group.startRebuild(1, spare);
    const progress: number[] = [];
    const rebuilt = group.rebuild({
      stepBytes: 32 * KiB,
      onProgress: ({ cursorBytes }) => {
        progress.push(cursorBytes);
        // A host write between steps.
        const offset = (progress.length * 7919) % (group.capacityBytes - 100);
        const bytes = crypto.randomBytes(100);
        group.write(offset, bytes);
        bytes.copy(model, offset);
      },
    });
    await rebuilt;
    assert.deepEqual(progress, [32, 64, 96, 128, 160, 192, 224, 256].map((k) => k * KiB));
    assert.equal(group.condition, 'optimal');
    assert.equal(group.disks[1], spare);
    disks[0]?.fail();
    group.read(0, back);
    assert.ok(back.equals(model), 'the rebuilt member serves the stripes of the next failure');
  });

  it('a second failure during a raid5 rebuild is reported, and reads of lost stripes fail', async () => {
    const disks = [disk(64 * KiB), disk(64 * KiB), disk(64 * KiB)];
    const group = cleanup.close(RaidGroup.create({ level: 'raid5', disks, stripeUnitBytes: 4 * KiB }));
    group.write(0, Buffer.alloc(group.capacityBytes, 0x77));
    group.failMember(2);
    group.startRebuild(2, disk(64 * KiB));
    group.rebuildStep(8 * KiB);
    disks[0]?.fail();
    await assert.rejects(group.rebuild(), (error: Error & { code?: string }) => error.code === 'ERR_RAID_READ_FAILED');
    assert.equal(group.rebuildProgress?.cursorBytes, 8 * KiB);
    throwsCode(() => group.read(0, Buffer.alloc(group.capacityBytes)), 'ERR_RAID_READ_FAILED');
    assert.equal(group.condition, 'failed');
  });

  it('member states survive a reopen of a shared group; wrong disks are refused', () => {
    const name = uniqueName('raid');
    const disks = [disk(), disk()];
    const group = RaidGroup.create({ level: 'raid1', disks, backing: 'shared', name });
    group.failMember(0);
    group.close();
    const again = RaidGroup.open({ name, disks });
    assert.equal(again.level, 'raid1');
    assert.equal(again.members()[0]?.state, 'failed');
    again.close();
    throwsCode(() => RaidGroup.open({ name, disks: [disks[1] as Disk, disks[0] as Disk] }), 'ERR_RAID_BAD_HEADER');
    throwsCode(() => RaidGroup.open({ name, disks: [disk(), disk()] }), 'ERR_RAID_BAD_HEADER');
    RaidGroup.open({ name, disks }).destroy();
    throwsCode(() => RaidGroup.open({ name, disks }), 'ERR_REGION_NOT_FOUND');
  });

  it('bad arguments are TypeError/RangeError at both layers; wrong receivers; use after close', () => {
    const d = disk();
    rejectsBadIndexes((value) => d.read(value as number, Buffer.alloc(1)), 'Disk.read');
    rejectsBadBytes((value) => d.write(0, value as Uint8Array), 'Disk.write');
    throwsWith(() => d.read(256 * KiB - 1, Buffer.alloc(2)), RangeError, /outside the disk/);
    throwsWith(() => d.addFault({ rate: 2 }), RangeError, /rate/);
    throwsWith(() => d.addFault({ errno: 0 }), RangeError, /errno or a latency/);
    throwsWith(() => d.addFault({ byteOffset: 256 * KiB }), RangeError, /outside the disk/);
    throwsWith(() => Disk.create({ capacityBytes: 1000 }), RangeError, /multiple of sectorSize/);
    for (let i = 0; i < Disk.MAX_FAULTS; i++) d.addFault();
    throwsCode(() => d.addFault(), 'ERR_DISK_FAULT_LIMIT');
    const handle = d[kDiskHandle];
    throwsWith(() => handle.read(-1, Buffer.alloc(1)), RangeError, /byteOffset/);
    throwsWith(() => handle.addFault(4, 5, 0, 0, 1, 0, 0), RangeError, /operations/);
    const group = cleanup.close(RaidGroup.create({ level: 'single', disks: [d] }));
    throwsWith(() => RaidGroup.create({ level: 'raid5', disks: [disk(), disk()] }), RangeError, /3 to 16/);
    throwsWith(() => RaidGroup.create({ level: 'raid1', disks: [d, d] }), RangeError, /two members/);
    throwsWith(() => RaidGroup.create({ level: 'raid5', disks: [disk(), disk(), disk()], stripeUnitBytes: 3000 }), RangeError, /power of two/);
    throwsWith(() => RaidGroup.create({ level: 'raid9' as 'raid1', disks: [d] }), RangeError, /level/);
    throwsWith(() => RaidGroup.create({ level: 'raid1', disks: [d, {} as Disk] }), TypeError, /Disk/);
    throwsWith(() => group.map(group.capacityBytes), RangeError, /outside/);
    for (const name of methodNames(Object.getPrototypeOf(handle))) {
      for (const receiver of wrongReceivers({})) {
        throwsWith(() => (handle as unknown as Record<string, (...args: unknown[]) => unknown>)[name]?.call(receiver), TypeError, /receiver/);
      }
    }
    group.close();
    group.close();
    throwsCode(() => group.read(0, Buffer.alloc(1)), 'ERR_RAID_CLOSED');
    d.close();
    d.close();
    throwsCode(() => d.read(0, Buffer.alloc(1)), 'ERR_DISK_CLOSED');
    throwsCode(() => handle.status(), 'ERR_DISK_CLOSED');
  });
});
