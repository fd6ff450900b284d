// Notes on the design
// -------------------
// Diversion variant (c), a work disk, through NBD with a real client and a real SIGKILL (issue 10):
// the story of interop 80's first case with `diversion: 'work-disk'` and a shared disk `wd`
// configured as the work disk w0. fio writes a raid5 volume with crc32c verify headers; a qemu-io
// read while d1's reads fail turns d1 suspect (the reads are rebuilt from parity: the client sees
// no error); the serve spares d1 onto s0 and lays w0 under every member disk of the group. While
// fio writes more, the status shows the seed's tables (T5: each member 'renewed data being backed
// up'; T6: w0 'in use' with the members as its main disks, its terminal address grown by at least
// one slot per host write; T7: the address map in arrival order), and the members' own write
// counters, read from their shared headers by this process, stand still: every member write went
// to wd. The serve is SIGKILLed mid-diversion and started again with the same config: the work
// disk's map in its shared region lays w0 under the members again before any write, and every
// block of both fio jobs verifies, the diverted ones read from wd (its divertedReads counter
// grows). Then the sparing ends, the copy-back runs, the tables are reset (w0 'unused', no
// diversion, s0 in d1's place) and everything verifies once more.
//
// The sparing is slowed so the diverted writes and the kill land while it runs: a latency fault
// on the spare's writes, and many steps. A step copies at least one stripe unit and runs once per
// event-loop turn, and fio's writes are served between turns too (at most iodepth per turn), so
// what keeps the sparing running is the ratio of steps to fio's turns, not the latency: a 16 KiB
// stripe unit gives 1,024 steps per 16 MiB member against some 150 turns for the 2,048 writes
// (measured: the sparing was about 15 % done when they ended). The test checks that the sparing
// still ran rather than trusting that, and every wait is for a status, never a sleep.
//
// A second case gives wd 1 MiB: w0 goes `full` (terminal = slot count), later writes fall back to
// the members (stats.fallbackWrites > 0), and nothing is lost before or after the copy-back.
import * as assert from 'node:assert/strict';
import * as path from 'node:path';

import { AdminClient } from '../../src/admin/client';
import { Disk } from '../../src/storage/disk';
import { runFio } from '../helpers/fio';
import { shmPrefix } from '../helpers/pair-sites';
import { fioVerifyJob, makeSuspect, removeRegions } from '../helpers/raid-sparing';
import { ServeProcess } from '../helpers/serve-process';
import { makeTempDir, removeTempDir, requireTool, waitFor } from '../helpers/tools';

const MiB = 1 << 20;
const SLOT_BYTES = 4096;
const MEMBERS = ['d0', 'd1', 'd2'];
const RENEWED = 'renewed data being backed up';

interface GroupRow {
  condition: string; disks: string[]; lastError: string | null;
  sparing: { disk: string; spare: string; doneBytes: number; totalBytes: number } | null;
  diversion: { variant: string; workDisk?: string; copyingBack: boolean; lastError: string | null } | null;
}
interface WorkDiskStats { divertedWrites: number; fallbackWrites: number; divertedReads: number; slotErrors: number }
interface WorkDiskRow {
  workDisk: string; disk: string; capacityBytes: number; status: string; state: string;
  mainDisks: string[] | null; terminalAddress: number | null; stats: WorkDiskStats | null;
}
interface MapRow { mainDisk: string | null; mainAddress: number; workDisk: string; workAddress: number }
interface DiskRow { disk: string; status: string; backupStatus: string | null; workDisk: string | null }
interface RaidTables { group: GroupRow | undefined; work: WorkDiskRow | undefined; map: MapRow[]; disks: DiskRow[] }

function raidOf(status: unknown): RaidTables {
  const raid = (status as { controllers?: { raid?: { groups?: GroupRow[]; workDisks?: WorkDiskRow[]; workDiskMap?: MapRow[]; disks?: DiskRow[] } }[] })
    .controllers?.[0]?.raid;
  return { group: raid?.groups?.[0], work: raid?.workDisks?.[0], map: raid?.workDiskMap ?? [], disks: raid?.disks ?? [] };
}

function backupStatusOf(tables: RaidTables, names: string[]): (string | null | undefined)[] {
  return names.map((name) => tables.disks.find((d) => d.disk === name)?.backupStatus);
}

describe('81 interop: fio through sparing with diversion to a work disk, SIGKILL mid-diversion, copy-back', function () {
  this.timeout(600_000);
  before(requireTool('fio'));
  before(requireTool('qemu-io'));

  let directory: string;
  let serve: ServeProcess | undefined;
  const prefix = shmPrefix('wdisk');
  const sharedName = (name: string): string => `${prefix}.${name}`;
  let config: unknown;
  let adminSocket: string;
  const opened: Disk[] = [];

  const configWith = (workDiskCapacity: string): unknown => {
    const disk = (name: string, extra: Record<string, unknown> = {}) => ({ name, capacity: '16MiB', backing: 'shared', sharedName: sharedName(name), ...extra });
    return {
      controllers: [{
        id: prefix,
        rebuildStepBytes: '16KiB',
        disks: [disk('d0'), disk('d1', { errorThreshold: 8 }), disk('d2'), disk('s0', { spare: true }), disk('wd', { capacity: workDiskCapacity })],
        groups: [{ name: 'g0', level: 'raid5', disks: MEMBERS, stripeUnit: '16KiB' }],
        volumes: [{ name: 'vol0', capacity: '24MiB', group: 'g0' }],
        workDisks: [{ name: 'w0', disk: 'wd', sharedName: sharedName('w0') }],
        diversion: 'work-disk',
      }],
    };
  };

  before(() => {
    directory = makeTempDir('raid-work-disk');
    adminSocket = path.join(directory, 'admin.sock');
    // 8 MiB of 4 KiB writes during the diversion take two slots each (data and parity): 32 MiB holds them.
    config = configWith('32MiB');
  });

  after(async () => {
    await serve?.kill();
    for (const disk of opened.splice(0)) disk.close();
    removeTempDir(directory);
    removeRegions(prefix);
  });

  const start = async (): Promise<{ admin: AdminClient; live: ServeProcess }> => {
    const live = await ServeProcess.start({ directory, config, args: ['--port', '0', '--admin', adminSocket, '--quiet'] });
    serve = live;
    return { admin: new AdminClient(adminSocket), live };
  };
  const tables = async (admin: AdminClient): Promise<RaidTables> => raidOf(await admin.get('/status'));

  const firstJob = fioVerifyJob('before', '0', '12M', 8101);
  const duringJob = fioVerifyJob('during', '12M', '8M', 8102);

  /** Writes `before`, turns d1 suspect with the spare slowed; resolves once the sparing diverts to w0. */
  async function startSparing(admin: AdminClient, live: ServeProcess): Promise<Disk> {
    const idle = await tables(admin);
    assert.deepEqual([idle.work?.status, idle.work?.mainDisks, idle.work?.terminalAddress], ['unused', null, null], JSON.stringify(idle.work));
    await runFio([...firstJob(live.uri('vol0')), '--do_verify=0'], directory, 300_000);
    const spare = await makeSuspect({ uri: live.uri('vol0'), spareSharedName: sharedName('s0'), suspectSharedName: sharedName('d1') });
    opened.push(spare);
    const sparing = await waitFor(async () => {
      const { group } = await tables(admin);
      return group?.sparing != null && group.diversion != null ? group : undefined;
    }, 'the sparing of d1 and the diversion to start', 60_000, 20);
    assert.equal(sparing.sparing?.disk, 'd1');
    assert.deepEqual(sparing.diversion, { variant: 'work-disk', workDisk: 'w0', copyingBack: false, lastError: null });
    return spare;
  }

  /** Waits for the sparing to end and the copy-back to finish: w0 unused, no diversion. */
  async function waitCopiedBack(admin: AdminClient): Promise<RaidTables> {
    return waitFor(async () => {
      const t = await tables(admin);
      return t.group?.sparing === null && t.group.diversion === null && t.work?.status === 'unused' ? t : undefined;
    }, 'the sparing to end and the copy-back to finish', 240_000, 100);
  }

  it('member writes go to the work disk (member counters stand still), the map survives the SIGKILL, copy-back resets the tables', async () => {
    let { admin, live } = await start();
    const spare = await startSparing(admin, live);

    // T5/T6 at the start of the diversion.
    const started = await tables(admin);
    assert.deepEqual(backupStatusOf(started, MEMBERS), [RENEWED, RENEWED, RENEWED]);
    assert.deepEqual(backupStatusOf(started, ['s0', 'wd']), [null, null]);
    assert.equal(started.disks.find((d) => d.disk === 'wd')?.workDisk, 'w0');
    assert.equal(started.work?.status, 'in use');
    assert.deepEqual(started.work?.mainDisks, MEMBERS);
    assert.equal(started.work?.capacityBytes, 32 * MiB);

    // The members' and the work disk's own counters, from their shared headers.
    const members = MEMBERS.map((name) => Disk.open({ name: sharedName(name) }));
    const wd = Disk.open({ name: sharedName('wd') });
    opened.push(...members, wd);
    const memberWritesBefore = members.map((d) => d.stats().writeCount);
    const wdWritesBefore = wd.stats().writeCount;
    const terminalBefore = started.work?.terminalAddress ?? 0;

    // Writes while the diversion runs go to the work disk, none to a member.
    const [during] = await runFio([...duringJob(live.uri('vol0')), '--do_verify=0'], directory, 300_000);
    const hostWrites = during?.write.total_ios ?? 0;
    assert.equal(hostWrites, 2048, 'fio wrote 8 MiB in 4 KiB blocks');
    const diverted = await tables(admin);
    assert.ok(diverted.group?.sparing != null, 'the sparing was still running when the writes ended (slow it further)');
    assert.deepEqual(members.map((d) => d.stats().writeCount), memberWritesBefore, 'a host write reached a member disk during the diversion');
    assert.ok(wd.stats().writeCount - wdWritesBefore >= hostWrites, `wd took ${wd.stats().writeCount - wdWritesBefore} writes for ${hostWrites} host writes`);
    const work = diverted.work;
    assert.equal(work?.state, 'diverting', JSON.stringify(work));
    assert.deepEqual(work?.mainDisks, MEMBERS);
    // At least the data block of each host write took a slot (raid5 also diverts its parity block).
    const terminal = work?.terminalAddress ?? 0;
    assert.ok(terminal - terminalBefore >= hostWrites, `terminal address ${terminalBefore} -> ${terminal} for ${hostWrites} host writes`);
    assert.ok(terminal <= 32 * MiB / SLOT_BYTES);
    assert.equal(work?.stats?.fallbackWrites, 0, JSON.stringify(work?.stats));
    assert.equal(work?.stats?.slotErrors, 0, JSON.stringify(work?.stats));
    assert.ok((work?.stats?.divertedWrites ?? 0) >= hostWrites, JSON.stringify(work?.stats));
    // T7: rows of w0, each naming a member, in arrival order, within the terminal.
    assert.ok(diverted.map.length > 0, 'the work disk map is empty');
    for (const [index, row] of diverted.map.entries()) {
      assert.equal(row.workDisk, 'w0');
      assert.ok(MEMBERS.includes(row.mainDisk ?? ''), JSON.stringify(row));
      assert.ok(row.workAddress >= 1 && row.workAddress <= terminal, JSON.stringify(row));
      if (index > 0) assert.ok(row.workAddress > (diverted.map[index - 1]?.workAddress ?? 0), 'the map is not in arrival order');
    }
    assert.deepEqual(backupStatusOf(diverted, MEMBERS), [RENEWED, RENEWED, RENEWED]);
    await live.signal('SIGKILL');
    serve = undefined;

    // Started again: w0 is under the members before any write, the diverted blocks read from it.
    ({ admin, live } = await start());
    const back = await tables(admin);
    assert.deepEqual(back.group?.diversion, { variant: 'work-disk', workDisk: 'w0', copyingBack: false, lastError: null }, JSON.stringify(back.group));
    assert.equal(back.work?.status, 'in use');
    assert.deepEqual(back.work?.mainDisks, MEMBERS);
    assert.ok((back.work?.terminalAddress ?? 0) >= terminal, `the work disk lost slots: ${terminal} -> ${back.work?.terminalAddress}`);
    assert.deepEqual(backupStatusOf(back, MEMBERS), [RENEWED, RENEWED, RENEWED]);
    const readsBefore = back.work?.stats?.divertedReads ?? 0;
    await runFio([...firstJob(live.uri('vol0')), '--verify_only=1'], directory, 300_000);
    await runFio([...duringJob(live.uri('vol0')), '--verify_only=1'], directory, 300_000);
    const verified = await tables(admin);
    assert.ok((verified.work?.stats?.divertedReads ?? 0) > readsBefore, `no read came from the work disk: ${JSON.stringify(verified.work?.stats)}`);

    // The sparing ends (the spare fast again), the blocks are copied back, the tables reset.
    spare.clearFaults();
    const done = await waitCopiedBack(admin);
    assert.equal(done.group?.condition, 'optimal');
    assert.equal(done.group?.lastError, null);
    assert.deepEqual([done.work?.state, done.work?.mainDisks, done.work?.terminalAddress], ['unused', null, null], 'the work disk is reset');
    assert.deepEqual(done.map, []);
    assert.ok(done.disks.every((d) => d.backupStatus === null), JSON.stringify(done.disks));
    assert.deepEqual(done.group?.disks, ['d0', 's0', 'd2'], 'the spare took d1\'s place');
    await runFio([...firstJob(live.uri('vol0')), '--verify_only=1'], directory, 300_000);
    await runFio([...duringJob(live.uri('vol0')), '--verify_only=1'], directory, 300_000);
  });

  it('a work disk too small for the writes: state full, the rest written to the members (fallback), nothing lost', async () => {
    await serve?.kill();
    serve = undefined;
    for (const disk of opened.splice(0)) disk.close();
    removeRegions(prefix);
    config = configWith('1MiB');
    const { admin, live } = await start();
    const spare = await startSparing(admin, live);
    await runFio([...duringJob(live.uri('vol0')), '--do_verify=0'], directory, 300_000);
    const full = await tables(admin);
    assert.ok(full.group?.sparing != null, 'the sparing was still running when the writes ended (slow it further)');
    assert.deepEqual([full.work?.status, full.work?.state], ['in use', 'full'], JSON.stringify(full.work));
    assert.equal(full.work?.terminalAddress, MiB / SLOT_BYTES, 'a full work disk has every slot taken');
    assert.ok((full.work?.stats?.fallbackWrites ?? 0) > 0, `no write fell back to the members: ${JSON.stringify(full.work?.stats)}`);
    await runFio([...firstJob(live.uri('vol0')), '--verify_only=1'], directory, 300_000);
    await runFio([...duringJob(live.uri('vol0')), '--verify_only=1'], directory, 300_000);
    spare.clearFaults();
    const done = await waitCopiedBack(admin);
    assert.deepEqual([done.work?.state, done.work?.terminalAddress], ['unused', null]);
    assert.deepEqual(done.group?.disks, ['d0', 's0', 'd2']);
    await runFio([...firstJob(live.uri('vol0')), '--verify_only=1'], directory, 300_000);
    await runFio([...duringJob(live.uri('vol0')), '--verify_only=1'], directory, 300_000);
  });
});
