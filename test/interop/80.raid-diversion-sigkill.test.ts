// Sparing protection through NBD with a real client and a real SIGKILL (issue 10, seed 004,
// variant (b)): fio writes a raid5 volume with crc32c verify headers; one disk's reads fail until
// its error counter crosses its threshold (the reads are rebuilt from parity meanwhile: qemu-io
// sees no error); the serve spares the suspect disk onto the spare and diverts new
// writes to a work volume; fio writes more while the diversion runs; the serve is SIGKILLed with
// blocks diverted, started again with the same config: the maps in their shared regions bring the
// diversion back, and every block of both fio jobs verifies through NBD, diverted ones read from
// the work volume; then the sparing ends, the blocks are copied back, the work volume is unused
// again, and everything verifies once more. The sparing is slowed (a latency fault on the spare's
// writes, a small `rebuildStepBytes` and a 16 KiB stripe unit: a step copies at least one unit
// per event-loop turn, so the unit sets the number of steps) so the kill lands mid-diversion. A
// second case gives the work volume 1 MiB: it goes `full`, later writes fall back to the group,
// nothing is lost.
import * as assert from 'node:assert/strict';
import * as path from 'node:path';

import { AdminClient } from '../../src/admin/client';
import { Disk } from '../../src/storage/disk';
import { runFio } from '../helpers/fio';
import { fioVerifyJob, makeSuspect, removeRegions as removeRegionsOf } from '../helpers/raid-sparing';
import { ServeProcess } from '../helpers/serve-process';
import { shmPrefix } from '../helpers/pair-sites';
import { makeTempDir, removeTempDir, requireTool, waitFor } from '../helpers/tools';

interface GroupRow {
  condition: string; disks: string[]; lastError: string | null;
  sparing: { disk: string; spare: string; doneBytes: number; totalBytes: number } | null;
  diversion: { workVolume: string; copyingBack: boolean } | null;
}
interface WorkRow { workVolume: string; state: string; primary: string[] | null; terminalAddress: number | null; stats: { fallbackWrites: number; divertedWrites: number } | null }

function raidOf(status: unknown): { group: GroupRow | undefined; work: WorkRow | undefined; disks: { disk: string; status: string }[] } {
  const raid = (status as { controllers?: { raid?: { groups?: GroupRow[]; workVolumes?: WorkRow[]; disks?: { disk: string; status: string }[] } }[] }).controllers?.[0]?.raid;
  return { group: raid?.groups?.[0], work: raid?.workVolumes?.[0], disks: raid?.disks ?? [] };
}

describe('80 interop: fio through sparing with diversion, SIGKILL mid-diversion, copy-back', function () {
  this.timeout(600_000);
  before(requireTool('fio'));
  before(requireTool('qemu-io'));

  let directory: string;
  let serve: ServeProcess | undefined;
  const prefix = shmPrefix('div');
  const sharedName = (name: string): string => `${prefix}.${name}`;
  let config: unknown;
  let adminSocket: string;

  const configWith = (workCapacity: string): unknown => {
    const disk = (name: string, extra: Record<string, unknown> = {}) => ({ name, capacity: '16MiB', backing: 'shared', sharedName: sharedName(name), ...extra });
    return {
      controllers: [{
        id: prefix,
        rebuildStepBytes: '16KiB',
        disks: [disk('d0'), disk('d1', { errorThreshold: 8 }), disk('d2'), disk('s0', { spare: true })],
        groups: [{ name: 'g0', level: 'raid5', disks: ['d0', 'd1', 'd2'], stripeUnit: '16KiB' }],
        volumes: [{ name: 'vol0', capacity: '24MiB', group: 'g0' }],
        workVolumes: [{ name: 'w0', capacity: workCapacity, backing: 'shared', sharedName: sharedName('w0') }],
        diversion: 'work-volume',
      }],
    };
  };
  const removeRegions = (): void => removeRegionsOf(prefix);

  before(() => {
    directory = makeTempDir('raid-diversion');
    adminSocket = path.join(directory, 'admin.sock');
    config = configWith('16MiB');
  });

  after(async () => {
    await serve?.kill();
    removeTempDir(directory);
    removeRegions();
  });

  const start = async (): Promise<{ admin: AdminClient; live: ServeProcess }> => {
    const live = await ServeProcess.start({ directory, config, args: ['--port', '0', '--admin', adminSocket, '--quiet'] });
    serve = live;
    return { admin: new AdminClient(adminSocket), live };
  };

  const firstJob = fioVerifyJob('before', '0', '12M', 8001);
  const duringJob = fioVerifyJob('during', '12M', '8M', 8002);

  /** Writes `before`, slows the spare, turns d1 suspect through failing reads; resolves once the sparing diverts. */
  async function startSparing(admin: AdminClient, live: ServeProcess): Promise<Disk> {
    await runFio([...firstJob(live.uri('vol0')), '--do_verify=0'], directory, 300_000);
    // Slow the spare's writes; fail d1's reads until its counter crosses the threshold: a read of
    // the first 8 MiB goes through (raid5 rebuilds those reads from parity: no error reaches the
    // client) and turns d1 suspect.
    const spare = await makeSuspect({ uri: live.uri('vol0'), spareSharedName: sharedName('s0'), suspectSharedName: sharedName('d1') });
    const sparing = await waitFor(async () => {
      const { group } = raidOf(await admin.get('/status'));
      return group?.sparing != null && group.diversion != null ? group : undefined;
    }, 'the sparing of d1 and the diversion to start', 60_000, 20);
    assert.equal(sparing.sparing?.disk, 'd1');
    assert.equal(sparing.diversion?.workVolume, 'w0');
    return spare;
  }

  it('no verify error before, during and after the sparing; the maps survive the SIGKILL; copy-back resets the tables', async () => {
    let { admin, live } = await start();
    const spare = await startSparing(admin, live);

    // Writes while the diversion runs go to the work volume.
    await runFio([...duringJob(live.uri('vol0')), '--do_verify=0'], directory, 300_000);
    const diverted = raidOf(await admin.get('/status'));
    assert.ok(diverted.group?.sparing != null, 'the sparing was still running when the writes ended (slow it further)');
    assert.ok((diverted.work?.terminalAddress ?? 0) > 0, `nothing was diverted: ${JSON.stringify(diverted.work)}`);
    await live.signal('SIGKILL');
    serve = undefined;

    // Started again: the diversion is back before any write, the diverted blocks read from it.
    ({ admin, live } = await start());
    const back = raidOf(await admin.get('/status'));
    assert.equal(back.group?.diversion?.workVolume, 'w0', `the diversion is not back: ${JSON.stringify(back.group)}`);
    assert.ok((back.work?.terminalAddress ?? 0) >= (diverted.work?.terminalAddress ?? 0), 'the work volume lost slots');
    await runFio([...firstJob(live.uri('vol0')), '--verify_only=1'], directory, 300_000);
    await runFio([...duringJob(live.uri('vol0')), '--verify_only=1'], directory, 300_000);

    // The sparing ends (the spare fast again), the blocks are copied back, the tables reset.
    spare.clearFaults();
    spare.close();
    const done = await waitFor(async () => {
      const { group, work } = raidOf(await admin.get('/status'));
      return group?.sparing === null && group.diversion === null && group.condition === 'optimal' && work?.state === 'unused' ? { group, work } : undefined;
    }, 'the sparing to end and the copy-back to finish', 240_000, 100);
    assert.equal(done.group.lastError, null);
    assert.equal(done.work.terminalAddress, null, 'the work volume is reset');
    assert.deepEqual(done.group.disks, ['d0', 's0', 'd2'], 'the spare took d1\'s place');
    await runFio([...firstJob(live.uri('vol0')), '--verify_only=1'], directory, 300_000);
    await runFio([...duringJob(live.uri('vol0')), '--verify_only=1'], directory, 300_000);
  });

  it('a work volume too small for the writes: state full, the rest written to the group (fallback), nothing lost', async () => {
    await serve?.kill();
    serve = undefined;
    removeRegions();
    config = configWith('1MiB');
    const { admin, live } = await start();
    const spare = await startSparing(admin, live);
    await runFio([...duringJob(live.uri('vol0')), '--do_verify=0'], directory, 300_000);
    const full = raidOf(await admin.get('/status'));
    assert.equal(full.work?.state, 'full', JSON.stringify(full.work));
    assert.ok((full.work?.stats?.fallbackWrites ?? 0) > 0, `no write fell back to the group: ${JSON.stringify(full.work?.stats)}`);
    await runFio([...firstJob(live.uri('vol0')), '--verify_only=1'], directory, 300_000);
    await runFio([...duringJob(live.uri('vol0')), '--verify_only=1'], directory, 300_000);
    spare.clearFaults();
    spare.close();
    await waitFor(async () => {
      const { group, work } = raidOf(await admin.get('/status'));
      return group?.sparing === null && group.diversion === null && work?.state === 'unused' ? true : undefined;
    }, 'the sparing to end and the copy-back to finish', 240_000, 100);
    await runFio([...duringJob(live.uri('vol0')), '--verify_only=1'], directory, 300_000);
  });
});
