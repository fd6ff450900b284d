// A serve SIGKILLed in the middle of a raid5 rebuild onto its spare, and started again with the
// same config: the group's metadata (member states, the spare as member, the rebuild cursor) and
// the volume's extent are found in their shared regions, the rebuild resumes at its cursor (not
// from 0) and completes, and fio's verify-only pass reads back through NBD every block written
// before the failure, with one more original disk failed so the rebuilt spare must be right.
// The rebuild is slowed with a latency fault on the spare's writes (set from this process in the
// spare's region), so the kill lands mid-way.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { AdminClient } from '../../src/admin/client';
import { Disk } from '../../src/storage/disk';
import { runFio } from '../helpers/fio';
import { ServeProcess } from '../helpers/serve-process';
import { shmPrefix } from '../helpers/pair-sites';
import { makeTempDir, removeTempDir, requireTool, waitFor } from '../helpers/tools';

interface GroupRow { condition: string; disks: string[]; rebuild: { member: number; cursorBytes: number; memberBytes: number } | null; lastError: string | null }

function groupOf(status: unknown): GroupRow | undefined {
  const controllers = (status as { controllers?: { raid?: { groups?: GroupRow[] } }[] }).controllers;
  return controllers?.[0]?.raid?.groups?.[0];
}

describe('77 interop: SIGKILL during a raid5 rebuild, restart resumes it', function () {
  this.timeout(400_000);
  before(requireTool('fio'));

  let directory: string;
  let serve: ServeProcess | undefined;
  const prefix = shmPrefix('rbk');
  const sharedName = (name: string): string => `${prefix}.${name}`;
  let config: unknown;
  let adminSocket: string;

  before(() => {
    directory = makeTempDir('raid-sigkill');
    adminSocket = path.join(directory, 'admin.sock');
    const disk = (name: string, spare = false) => ({ name, capacity: '16MiB', backing: 'shared', sharedName: sharedName(name), spare });
    config = {
      controllers: [{
        id: prefix,
        disks: [disk('d0'), disk('d1'), disk('d2'), disk('s0', true)],
        groups: [{ name: 'g0', level: 'raid5', disks: ['d0', 'd1', 'd2'], stripeUnit: '64KiB' }],
        volumes: [{ name: 'vol0', capacity: '24MiB', group: 'g0' }],
      }],
    };
  });

  after(async () => {
    await serve?.kill();
    removeTempDir(directory);
    for (const name of fs.readdirSync('/dev/shm')) {
      if (name.startsWith(`blockmirror.disk.${prefix}.`) || name === `blockmirror.raid.${prefix}.g0`) fs.rmSync(path.join('/dev/shm', name), { force: true });
    }
  });

  const start = async (): Promise<{ admin: AdminClient; live: ServeProcess }> => {
    const live = await ServeProcess.start({ directory, config, args: ['--port', '0', '--admin', adminSocket, '--quiet'] });
    serve = live;
    return { admin: new AdminClient(adminSocket), live };
  };

  it('the rebuild resumes at its cursor after the restart, and every block verifies', async () => {
    let { admin, live } = await start();
    const common = (uri: string) => ['--name=rebuild-verify', '--ioengine=nbd', `--uri=${uri}`, '--rw=randwrite', '--bs=4k', '--iodepth=16',
      '--size=20M', '--verify=crc32c', '--verify_fatal=1', '--verify_dump=0', '--randseed=7701'];
    await runFio([...common(live.uri('vol0')), '--do_verify=0'], directory);

    // Slow the spare's writes, then fail d1: the serve starts rebuilding onto s0.
    const spare = Disk.open({ name: sharedName('s0') });
    spare.addFault({ operations: 'write', errno: 0, latencyMs: 15 });
    const d1 = Disk.open({ name: sharedName('d1') });
    d1.fail();
    d1.close();
    const midway = await waitFor(async () => {
      const group = groupOf(await admin.get('/status'));
      return group?.rebuild !== null && group?.rebuild !== undefined && group.rebuild.cursorBytes > 0 ? group : undefined;
    }, 'the rebuild to make progress', 60_000, 20);
    assert.deepEqual(midway.disks, ['d0', 's0', 'd2']);
    await live.signal('SIGKILL');
    serve = undefined;

    // The cursor the dead serve left in the group's metadata (the spare still slow, so the
    // resumed rebuild cannot have finished yet).
    ({ admin, live } = await start());
    const resumed = groupOf(await admin.get('/status'));
    assert.deepEqual(resumed?.disks, ['d0', 's0', 'd2'], 'the spare is found as member 1 again');
    assert.ok(resumed?.rebuild !== null && resumed?.rebuild !== undefined, 'still rebuilding after the restart');
    assert.ok((resumed.rebuild.cursorBytes) >= (midway.rebuild?.cursorBytes ?? 0), `resumed at ${resumed.rebuild.cursorBytes}, not from 0`);
    spare.clearFaults();
    spare.close();
    const done = await waitFor(async () => {
      const group = groupOf(await admin.get('/status'));
      return group?.condition === 'optimal' ? group : undefined;
    }, 'the resumed rebuild to finish', 120_000, 50);
    assert.equal(done.lastError, null);

    // d2 fails too: d1's blocks now come from the rebuilt spare, d2's are rebuilt with it.
    const d2 = Disk.open({ name: sharedName('d2') });
    d2.fail();
    d2.close();
    await runFio([...common(live.uri('vol0')), '--verify_only=1'], directory);
  });
});
