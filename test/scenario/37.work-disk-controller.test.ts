// Notes on the design
// -------------------
// Diversion variant (c) in a controller as a story: with `diversion: 'work-disk'` and a shared
// disk configured as a work disk, a raid5 disk turning suspect starts a sparing and lays the work
// disk under every member of the group (event diversion-started with the work disk's name);
// host writes during the sparing reach no member disk (their write counters stand still), the
// status shows the seed's tables: T5 (each member `renewed data being backed up`), T6 (the work
// disk `in use`, its main disks, terminal address) and T7 (main disk, main address -> work disk,
// work address in arrival order); the controller is dropped mid-sparing (objects closed, shared
// regions kept, as a SIGKILL leaves them) and a new one lays the work disk under the members
// again before any write and reads every diverted block from it; a copy-back that fails (the
// work disk's reads faulted) is reported, retried by itself after COPY_BACK_RETRY_MS once the
// fault is gone, and ends with the tables reset and every byte read back from the members.
import * as assert from 'node:assert/strict';
import * as crypto from 'node:crypto';

import { validateConfig } from '../../src/cli/config';
import { Controller, type ControllerEvent } from '../../src/controller/controller';
import { Disk } from '../../src/storage/disk';
import { makeSuspectInProcess, removeRegions } from '../helpers/raid-sparing';
import { uniqueName } from '../helpers/storage';
import { waitFor } from '../helpers/tools';

const MiB = 1 << 20;
const KiB = 1024;

interface Tables {
  disks: { disk: string; backupStatus: string | null; workDisk: string | null }[];
  workDisks: { workDisk: string; disk: string; status: string; state: string; mainDisks: string[] | null; terminalAddress: number | null }[];
  workDiskMap: { mainDisk: string | null; mainAddress: number; workDisk: string; workAddress: number }[];
  groups: { diversion: { variant: string; workDisk?: string; copyingBack: boolean; lastError: string | null } | null; disks: string[] }[];
}

describe('37 diversion to a work disk during a sparing', function () {
  this.timeout(90_000);
  const id = uniqueName('c');
  const names = ['d0', 'd1', 'd2', 's0', 'wd'];
  after(() => removeRegions(id));

  const controller = (): Controller => new Controller({
    id,
    disks: names.map((name) => ({ name, capacityBytes: 4 * MiB, backing: 'shared' as const, spare: name === 's0', errorThreshold: name === 'd1' ? 2 : 0 })),
    // A 16 KiB unit: the sparing copies one unit per step, so 256 slowed steps keep it running
    // while the test acts (a 64 KiB unit gave only 64 and could end under load before the fault).
    groups: [{ name: 'g0', level: 'raid5', disks: ['d0', 'd1', 'd2'], stripeUnitBytes: 16 * KiB }],
    volumes: [{ name: 'vol0', capacityBytes: 8 * MiB, group: 'g0' }],
    workDisks: [{ name: 'w0', disk: 'wd' }],
    diversion: 'work-disk',
    raid: { rebuildStepBytes: 128 * KiB, checkIntervalMs: 50 },
  });
  const tables = (c: Controller): Tables => c.status().raid as unknown as Tables;

  it('reads the config keys workDisks and diversion: work-disk, and refuses a disk in a group', () => {
    const base = { id: 'c1', volumes: [{ name: 'v', capacity: '1MiB' }], disks: [{ name: 'a', capacity: '1MiB' }, { name: 'b', capacity: '1MiB' }] };
    const config = validateConfig({ controllers: [{ ...base, workDisks: [{ name: 'w0', disk: 'b' }], diversion: 'work-disk' }] });
    const first = config.controllers[0] as unknown as { workDisks?: unknown; diversion?: unknown };
    assert.deepEqual(first.workDisks, [{ name: 'w0', disk: 'b', slotBytes: 4096 }]);
    assert.equal(first.diversion, 'work-disk');
    assert.throws(() => validateConfig({ controllers: [{ ...base, workDisks: [{ name: 'w0', disk: 'b', slotSize: 3000 }] }] }), /power of two/);
    assert.throws(() => new Controller({ id: 'c1', disks: [{ name: 'a', capacityBytes: MiB }], groups: [{ name: 'g', level: 'single', disks: ['a'] }],
      workDisks: [{ name: 'w0', disk: 'a' }] }), /disk a is in a group/);
    assert.throws(() => new Controller({ id: 'c1', disks: [{ name: 'a', capacityBytes: MiB }], workDisks: [{ name: 'w0', disk: 'z' }] }), /no disk named z/);
  });

  it('diverts member writes during the sparing, survives a restart, retries a failed copy-back and resets', async () => {
    const first = controller();
    const events: ControllerEvent[] = [];
    first.on('event', (event: ControllerEvent) => {
      if (event.subject === 'group:g0') events.push(event);
    });
    await first.start();
    assert.deepEqual(tables(first).workDisks.map((w) => [w.workDisk, w.disk, w.status, w.mainDisks, w.terminalAddress]), [['w0', 'wd', 'unused', null, null]]);
    const volume = first.volume('vol0') as NonNullable<ReturnType<Controller['volume']>>;
    const model = crypto.randomBytes(8 * MiB);
    volume.write(0, model);
    const { spare, spareLatency: slow, suspect: d1 } = makeSuspectInProcess(id, volume);
    await waitFor(() => events.some((e) => e.new === 'diversion-started'), 'the diversion to start');
    const members = ['d0', 'd1', 'd2'].map((name) => Disk.open({ name: `${id}.${name}` }));
    const memberWrites = (): number => members.reduce((sum, d) => sum + d.stats().writeCount, 0);
    const before = memberWrites();
    // One 4 KiB write in stripe 0 (data on d0, parity on d2) and a 128 KiB full-stripe write.
    const a = crypto.randomBytes(4 * KiB);
    volume.write(0, a);
    a.copy(model, 0);
    const b = crypto.randomBytes(128 * KiB);
    volume.write(2 * MiB, b);
    b.copy(model, 2 * MiB);
    assert.equal(memberWrites(), before, 'no host write reached a member disk');
    const t = tables(first);
    assert.deepEqual(t.disks.filter((d) => ['d0', 'd1', 'd2'].includes(d.disk)).map((d) => d.backupStatus), Array(3).fill('renewed data being backed up'));
    assert.equal(t.disks.find((d) => d.disk === 'wd')?.workDisk, 'w0');
    assert.equal(t.disks.find((d) => d.disk === 's0')?.backupStatus, null);
    const row = t.workDisks[0];
    assert.equal(row?.status, 'in use');
    assert.deepEqual(row?.mainDisks, ['d0', 'd1', 'd2']);
    // 4 KiB: d0's block and d2's parity block; 128 KiB full stripe: 16 blocks on each of two data members and 16 of parity.
    assert.equal(row?.terminalAddress, 2 + 48);
    assert.deepEqual(t.workDiskMap.slice(0, 2), [
      { mainDisk: 'd0', mainAddress: 0, workDisk: 'w0', workAddress: 1 },
      { mainDisk: 'd2', mainAddress: 0, workDisk: 'w0', workAddress: 2 },
    ]);
    assert.deepEqual(t.groups[0]?.diversion, { variant: 'work-disk', workDisk: 'w0', copyingBack: false, lastError: null });
    const all = Buffer.alloc(8 * MiB);
    volume.read(0, all);
    assert.ok(all.equals(model));
    await first.close();

    // A new controller on the same shared regions: the map brings the diverted blocks back.
    // Slower still while the second controller comes up: its copy-back must not start before the
    // work disk's read fault below is in place.
    spare.removeFault(slow);
    const slower = spare.addFault({ operations: 'write', errno: 0, latencyMs: 60 });
    const second = controller();
    const later: ControllerEvent[] = [];
    second.on('event', (event: ControllerEvent) => {
      if (event.subject === 'group:g0') later.push(event);
    });
    await second.start();
    const volume2 = second.volume('vol0') as NonNullable<ReturnType<Controller['volume']>>;
    assert.equal(tables(second).workDisks[0]?.terminalAddress, 50);
    volume2.read(0, all);
    assert.ok(all.equals(model), 'diverted blocks read from the work disk after the restart');
    // The copy-back cannot read the work disk at first: it fails, is reported, and is retried.
    const wd = Disk.open({ name: `${id}.wd` });
    const unreadable = wd.addFault({ operations: 'read' });
    assert.ok(!later.some((e) => e.new === 'diversion-copy-back-started'), 'the copy-back started before the fault was set');
    spare.removeFault(slower);
    // On a timeout the message says where the controller stood (a rare CI failure here was not
    // reproduced: the whole case takes 5 s, also with three busy loops beside it).
    await waitFor(() => later.some((e) => e.new === 'diversion-copy-back-failed'), 'the copy-back to fail', 30_000).catch((error: Error) => {
      throw new Error(`${error.message}; events ${JSON.stringify(later.map((e) => e.new))}; raid ${JSON.stringify(second.status().raid).slice(0, 4000)}`);
    });
    assert.match(tables(second).groups[0]?.diversion?.lastError ?? '', /ERR_DIVERSION_IO_FAILED/);
    wd.removeFault(unreadable);
    await waitFor(() => later.some((e) => e.new === 'diversion-copy-back-done'), 'the retried copy-back to finish', 30_000);
    assert.ok(later.some((e) => e.new === 'sparing-done'));
    const reset = tables(second);
    assert.deepEqual(reset.workDisks.map((w) => [w.status, w.mainDisks, w.terminalAddress]), [['unused', null, null]]);
    assert.deepEqual(reset.workDiskMap, []);
    assert.equal(reset.groups[0]?.diversion, null);
    assert.ok(reset.disks.every((d) => d.backupStatus === null));
    assert.deepEqual(reset.groups[0]?.disks, ['d0', 's0', 'd2']);
    volume2.read(0, all);
    assert.ok(all.equals(model), 'every byte reads back from the members after the copy-back');
    await second.close();
    for (const d of [spare, d1, wd, ...members]) d.close();
  });
});
