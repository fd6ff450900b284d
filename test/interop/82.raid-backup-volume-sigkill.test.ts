// Notes on the design
// -------------------
// Diversion variant (a), a backup volume in an unused group, through NBD with a real client and a
// real SIGKILL (issue 10): the story of scenario 38 in a serve, told the way interop 81 tells
// variant (c). fio writes a raid5 volume vol0 of group g0 with crc32c verify headers; a qemu-io
// read while d1's reads fail turns d1 suspect (rebuilt from parity: the client sees no error); the
// serve spares d1 onto s0 and creates, on the fly, the secondary `bk.vol0` as an extent of the
// unused raid1 group g1, behind a shared differential bitmap. The status shows the seed's tables
// (T1: g1's volumes list bk.vol0; T2: raid.backupPairs, vol0 -> bk.vol0 in g1, 'update data being
// backed up'). While fio writes more, the member disks of g0, whose write counters this process
// reads from their shared headers, stand still, g1's disks take the writes and the bitmap's
// divertedBlocks grows by at least one block per host write. The serve is SIGKILLed mid-diversion
// and started again with the same config: the bitmap in its shared region and the extent in g1's
// metadata lay vol0 behind its backup again before any write, and every block of both fio jobs
// verifies, the diverted ones read from g1 (divertedReads grows). Then the sparing ends, the
// copy-back runs, the pair is deleted (no pair, no diversion, g1 without volumes, the bitmap's
// region gone from /dev/shm) and everything verifies once more.
//
// The sparing is slowed as in 81 (a latency fault on the spare's writes, a 16 KiB stripe unit and
// step: many steps against fio's event-loop turns); the test checks that it still ran when the
// writes ended rather than trusting that, and every wait is for a status, never a sleep.
//
// A second case leaves g1 no room for g0's volumes: the serve warns that no unused group has room
// and does not divert (g0's diversion stays null through the whole sparing), the writes go to g0's
// members, and everything verifies before and after the sparing. The room is short by the sum of
// the extents (vol0 24 MiB and a vol1 of 4 MiB against g1's 26 MiB), not by vol0 alone: an
// extent larger than the whole unused group makes allocateExtent throw a RangeError (its argument
// check, not ERR_RAID_NO_SPACE), which the controller's check timer does not catch, and the serve
// dies (reported to the lead; not asserted here until it is fixed).
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { AdminClient } from '../../src/admin/client';
import { Disk } from '../../src/storage/disk';
import { runFio } from '../helpers/fio';
import { shmPrefix } from '../helpers/pair-sites';
import { fioVerifyJob, makeSuspect, removeRegions } from '../helpers/raid-sparing';
import { ServeProcess } from '../helpers/serve-process';
import { makeTempDir, removeTempDir, requireTool, waitFor } from '../helpers/tools';

const MEMBERS = ['d0', 'd1', 'd2'];
const SECONDARY_DISKS = ['e0', 'e1'];
const BACKED_UP = 'update data being backed up';

interface GroupRow {
  group: string; condition: string; disks: string[]; volumes: string[]; lastError: string | null;
  sparing: { disk: string; spare: string; doneBytes: number; totalBytes: number } | null;
  diversion: { variant: string; secondaryGroup?: string; copyingBack: boolean; lastError: string | null } | null;
}
interface BackupStats { divertedWrites: number; divertedReads: number; fallbackWrites: number; copiedBackBlocks: number }
interface PairRow {
  primary: string; group: string; secondary: string; secondaryGroup: string; status: string;
  bitmap: string; divertedBlocks: number; stats: BackupStats | null;
}
interface RaidTables { weak: GroupRow | undefined; spareGroup: GroupRow | undefined; pairs: PairRow[] }

function raidOf(status: unknown): RaidTables {
  const raid = (status as { controllers?: { raid?: { groups?: GroupRow[]; backupPairs?: PairRow[] } }[] }).controllers?.[0]?.raid;
  return { weak: raid?.groups?.[0], spareGroup: raid?.groups?.[1], pairs: raid?.backupPairs ?? [] };
}

function pairOf(tables: RaidTables): (string | undefined)[] {
  const pair = tables.pairs[0];
  return [pair?.primary, pair?.group, pair?.secondary, pair?.secondaryGroup, pair?.status];
}

describe('82 interop: fio through sparing with diversion to a backup volume in an unused group, SIGKILL mid-diversion, copy-back', function () {
  this.timeout(600_000);
  before(requireTool('fio'));
  before(requireTool('qemu-io'));

  let directory: string;
  let serve: ServeProcess | undefined;
  const prefix = shmPrefix('bkvol');
  const sharedName = (name: string): string => `${prefix}.${name}`;
  // The backup's bitmap region: `blockmirror.backup.<controller>.<group>.<volume>`.
  const bitmapRegion = `/dev/shm/blockmirror.backup.${prefix}.g0.vol0`;
  let config: unknown;
  let adminSocket: string;
  const opened: Disk[] = [];

  const configWith = (secondaryDiskCapacity: string, extraVolumes: Record<string, unknown>[] = []): unknown => {
    const disk = (name: string, extra: Record<string, unknown> = {}) => ({ name, capacity: '16MiB', backing: 'shared', sharedName: sharedName(name), ...extra });
    return {
      controllers: [{
        id: prefix,
        rebuildStepBytes: '16KiB',
        disks: [disk('d0'), disk('d1', { errorThreshold: 8 }), disk('d2'), disk('s0', { spare: true }),
          ...SECONDARY_DISKS.map((name) => disk(name, { capacity: secondaryDiskCapacity }))],
        groups: [
          { name: 'g0', level: 'raid5', disks: MEMBERS, stripeUnit: '16KiB' },
          { name: 'g1', level: 'raid1', disks: SECONDARY_DISKS },
        ],
        volumes: [{ name: 'vol0', capacity: '24MiB', group: 'g0' }, ...extraVolumes],
        diversion: 'backup-volume',
      }],
    };
  };

  before(() => {
    directory = makeTempDir('raid-backup-volume');
    adminSocket = path.join(directory, 'admin.sock');
    // g1 (raid1) holds 32 MiB: room for vol0's 24 MiB extent.
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
  const writeCounts = (disks: Disk[]): number[] => disks.map((d) => d.stats().writeCount);

  const firstJob = fioVerifyJob('before', '0', '12M', 8201);
  const duringJob = fioVerifyJob('during', '12M', '8M', 8202);
  const verifyAll = async (live: ServeProcess): Promise<void> => {
    await runFio([...firstJob(live.uri('vol0')), '--verify_only=1'], directory, 300_000);
    await runFio([...duringJob(live.uri('vol0')), '--verify_only=1'], directory, 300_000);
  };

  /** Writes `before` with g1 unused, turns d1 suspect with the spare slowed; resolves once d1's sparing runs. */
  async function startSparing(admin: AdminClient, live: ServeProcess, until: (t: RaidTables) => boolean): Promise<{ spare: Disk; sparing: RaidTables }> {
    const idle = await tables(admin);
    assert.deepEqual(idle.pairs, []);
    assert.deepEqual([idle.weak?.diversion, idle.spareGroup?.group, idle.spareGroup?.volumes], [null, 'g1', []], JSON.stringify(idle));
    await runFio([...firstJob(live.uri('vol0')), '--do_verify=0'], directory, 300_000);
    const spare = await makeSuspect({ uri: live.uri('vol0'), spareSharedName: sharedName('s0'), suspectSharedName: sharedName('d1') });
    opened.push(spare);
    const sparing = await waitFor(async () => {
      const t = await tables(admin);
      return t.weak?.sparing != null && until(t) ? t : undefined;
    }, 'the sparing of d1 to start', 60_000, 20);
    assert.equal(sparing.weak?.sparing?.disk, 'd1');
    assert.equal(sparing.weak?.sparing?.spare, 's0');
    return { spare, sparing };
  }

  /** Waits for the sparing to end and (if any) the copy-back to finish: no pair, no diversion, g1 without volumes. */
  async function waitCopiedBack(admin: AdminClient): Promise<RaidTables> {
    return waitFor(async () => {
      const t = await tables(admin);
      return t.weak?.sparing === null && t.weak.diversion === null && t.pairs.length === 0 && t.spareGroup?.volumes.length === 0 ? t : undefined;
    }, 'the sparing to end and the copy-back to finish', 240_000, 100);
  }

  it('host writes go to a secondary created in g1 (g0\'s member counters stand still), the pair survives the SIGKILL, copy-back deletes it', async () => {
    let { admin, live } = await start();
    const { spare, sparing: started } = await startSparing(admin, live, (t) => t.weak?.diversion != null);

    // T1/T2 at the start of the diversion.
    assert.deepEqual(started.weak?.diversion, { variant: 'backup-volume', secondaryGroup: 'g1', copyingBack: false, lastError: null });
    assert.deepEqual(pairOf(started), ['vol0', 'g0', 'bk.vol0', 'g1', BACKED_UP], JSON.stringify(started.pairs));
    assert.equal(started.pairs.length, 1);
    assert.ok(started.spareGroup?.volumes.includes('bk.vol0'), JSON.stringify(started.spareGroup));
    assert.ok(fs.existsSync(bitmapRegion), `no shared bitmap ${bitmapRegion}`);

    // The disks' own counters, from their shared headers.
    const members = MEMBERS.map((name) => Disk.open({ name: sharedName(name) }));
    const secondaries = SECONDARY_DISKS.map((name) => Disk.open({ name: sharedName(name) }));
    opened.push(...members, ...secondaries);
    const memberWritesBefore = writeCounts(members);
    const secondaryWritesBefore = writeCounts(secondaries);
    const divertedBefore = started.pairs[0]?.divertedBlocks ?? 0;

    // Writes while the diversion runs go to g1, none to a member of g0.
    const [during] = await runFio([...duringJob(live.uri('vol0')), '--do_verify=0'], directory, 300_000);
    const hostWrites = during?.write.total_ios ?? 0;
    assert.equal(hostWrites, 2048, 'fio wrote 8 MiB in 4 KiB blocks');
    const diverted = await tables(admin);
    assert.ok(diverted.weak?.sparing != null, 'the sparing was still running when the writes ended (slow it further)');
    assert.deepEqual(writeCounts(members), memberWritesBefore, 'a host write reached a member disk of g0 during the diversion');
    // raid1: every host write lands on both of g1's disks.
    for (const [index, count] of writeCounts(secondaries).entries()) {
      const grown = count - (secondaryWritesBefore[index] ?? 0);
      assert.ok(grown >= hostWrites, `${SECONDARY_DISKS[index]} took ${grown} writes for ${hostWrites} host writes`);
    }
    assert.deepEqual(pairOf(diverted), ['vol0', 'g0', 'bk.vol0', 'g1', BACKED_UP], JSON.stringify(diverted.pairs));
    const pair = diverted.pairs[0];
    // fio's random map writes each 4 KiB block of the 8 MiB once, and none of them was diverted before.
    const divertedBlocks = pair?.divertedBlocks ?? 0;
    assert.ok(divertedBlocks - divertedBefore >= hostWrites, `divertedBlocks ${divertedBefore} -> ${divertedBlocks} for ${hostWrites} host writes`);
    assert.equal(pair?.stats?.fallbackWrites, 0, JSON.stringify(pair?.stats));
    assert.ok((pair?.stats?.divertedWrites ?? 0) >= hostWrites, JSON.stringify(pair?.stats));
    await live.signal('SIGKILL');
    serve = undefined;

    // Started again: vol0 is behind its backup before any write, the diverted blocks read from g1.
    ({ admin, live } = await start());
    const back = await tables(admin);
    assert.deepEqual(back.weak?.diversion, { variant: 'backup-volume', secondaryGroup: 'g1', copyingBack: false, lastError: null }, JSON.stringify(back.weak));
    assert.deepEqual(pairOf(back), ['vol0', 'g0', 'bk.vol0', 'g1', BACKED_UP], JSON.stringify(back.pairs));
    assert.ok(back.spareGroup?.volumes.includes('bk.vol0'), JSON.stringify(back.spareGroup));
    assert.ok((back.pairs[0]?.divertedBlocks ?? 0) >= divertedBlocks, `the bitmap lost blocks: ${divertedBlocks} -> ${back.pairs[0]?.divertedBlocks}`);
    const readsBefore = back.pairs[0]?.stats?.divertedReads ?? 0;
    await verifyAll(live);
    const verified = await tables(admin);
    assert.ok((verified.pairs[0]?.stats?.divertedReads ?? 0) > readsBefore, `no read came from the secondary: ${JSON.stringify(verified.pairs[0]?.stats)}`);

    // The sparing ends (the spare fast again), the blocks are copied back, the pair deleted.
    spare.clearFaults();
    const done = await waitCopiedBack(admin);
    assert.equal(done.weak?.condition, 'optimal');
    assert.equal(done.weak?.lastError, null);
    assert.deepEqual(done.weak?.disks, ['d0', 's0', 'd2'], 'the spare took d1\'s place');
    assert.deepEqual(done.spareGroup?.volumes, []);
    assert.equal(fs.existsSync(bitmapRegion), false, `the shared bitmap ${bitmapRegion} is still there`);
    await verifyAll(live);
  });

  it('no room in the unused group: a warning, no diversion during the sparing, writes to g0, nothing lost', async () => {
    await serve?.kill();
    serve = undefined;
    for (const disk of opened.splice(0)) disk.close();
    removeRegions(prefix);
    // g1 holds 26 MiB: room for vol0's 24 MiB, not for vol1's 4 MiB besides.
    config = configWith('26MiB', [{ name: 'vol1', capacity: '4MiB', group: 'g0' }]);
    const { admin, live } = await start();
    const { spare } = await startSparing(admin, live, () => true);
    await waitFor(() => /no unused group with room/.test(live.stderrText), 'the warning that no unused group has room', 30_000, 20);
    const members = MEMBERS.map((name) => Disk.open({ name: sharedName(name) }));
    opened.push(...members);
    const memberWritesBefore = writeCounts(members);

    const [during] = await runFio([...duringJob(live.uri('vol0')), '--do_verify=0'], directory, 300_000);
    assert.equal(during?.write.total_ios, 2048, 'fio wrote 8 MiB in 4 KiB blocks');
    const undiverted = await tables(admin);
    assert.ok(undiverted.weak?.sparing != null, 'the sparing was still running when the writes ended (slow it further)');
    assert.equal(undiverted.weak?.diversion, null, JSON.stringify(undiverted.weak));
    assert.deepEqual([undiverted.pairs, undiverted.spareGroup?.volumes], [[], []]);
    const grown = writeCounts(members).reduce((sum, count, index) => sum + count - (memberWritesBefore[index] ?? 0), 0);
    assert.ok(grown >= 2048, `g0's members took ${grown} writes for 2048 host writes`);
    assert.equal(fs.existsSync(bitmapRegion), false, 'a bitmap was made without a secondary');
    await verifyAll(live);

    // The diversion stays null until the sparing has ended.
    spare.clearFaults();
    const done = await waitFor(async () => {
      const t = await tables(admin);
      assert.equal(t.weak?.diversion, null, `a diversion started during the sparing: ${JSON.stringify(t.weak)}`);
      return t.weak?.sparing === null ? t : undefined;
    }, 'the sparing to end', 240_000, 100);
    assert.deepEqual(done.weak?.disks, ['d0', 's0', 'd2']);
    assert.deepEqual([done.pairs, done.spareGroup?.volumes], [[], []]);
    await verifyAll(live);
  });
});
