// fio verify=crc32c through NBD on a volume laid on a raid5 group of the real `blockmirror serve`
// process, while a member disk fails (from this process: the disks are shared, their status
// lives in their regions) and the serve rebuilds the group onto its hot spare. fio's own verify
// pass runs against the degraded and rebuilding group; then a second original disk fails and a
// verify-only pass reads everything again, so every block that lived on the first failed disk is
// served by the rebuilt spare (or rebuilt from it): no verify error, no stale read.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { AdminClient } from '../../src/admin/client';
import { Disk } from '../../src/storage/disk';
import { runFio } from '../helpers/fio';
import { ServeProcess } from '../helpers/serve-process';
import { shmPrefix } from '../helpers/pair-sites';
import { makeTempDir, removeTempDir, requireTool, waitFor } from '../helpers/tools';


interface RaidStatus {
  groups: { group: string; condition: string; disks: string[]; rebuild: unknown; lastError: string | null }[];
  disks: { disk: string; status: string }[];
}

/** The raid tables of the one controller in a GET /status document. */
function raidOf(status: unknown): RaidStatus | undefined {
  const seen = new Set<unknown>();
  const walk = (value: unknown): RaidStatus | undefined => {
    if (value === null || typeof value !== 'object' || seen.has(value)) return undefined;
    seen.add(value);
    const record = value as Record<string, unknown>;
    if (record.raid !== undefined && typeof record.raid === 'object') return record.raid as RaidStatus;
    for (const child of Object.values(record)) {
      const found = walk(child);
      if (found !== undefined) return found;
    }
    return undefined;
  };
  return walk(status);
}

async function fio(args: string[], cwd: string): Promise<void> {
  for (const job of await runFio(args, cwd)) assert.ok(job.read.io_bytes > 0, `${job.jobname} verified nothing`);
}

describe('76 interop: fio verify through NBD on raid5 while a disk fails and the spare is rebuilt', function () {
  this.timeout(400_000);
  before(requireTool('fio'));

  let directory: string;
  let serve: ServeProcess | undefined;
  let admin: AdminClient;
  const prefix = shmPrefix('raid');
  const diskName = (name: string): string => `${prefix}.${name}`;

  before(async () => {
    directory = makeTempDir('raid-fio');
    const adminSocket = path.join(directory, 'admin.sock');
    const disk = (name: string, spare = false) => ({ name, capacity: '24MiB', backing: 'shared', sharedName: diskName(name), spare });
    serve = await ServeProcess.start({
      directory,
      config: {
        controllers: [{
          id: prefix,
          disks: [disk('d0'), disk('d1'), disk('d2'), disk('d3'), disk('s0', true)],
          groups: [{ name: 'g0', level: 'raid5', disks: ['d0', 'd1', 'd2', 'd3'], stripeUnit: '64KiB' }],
          volumes: [{ name: 'vol0', capacity: '48MiB', group: 'g0' }],
        }],
      },
      args: ['--port', '0', '--admin', adminSocket, '--quiet'],
    });
    admin = new AdminClient(adminSocket);
  });

  after(async () => {
    await serve?.kill();
    removeTempDir(directory);
    for (const name of fs.readdirSync('/dev/shm')) {
      if (name.startsWith(`blockmirror.disk.${prefix}.`) || name === `blockmirror.raid.${prefix}.g0`) fs.rmSync(path.join('/dev/shm', name), { force: true });
    }
  });

  it('no verify error through the failure, the rebuild onto the spare and a second failure after it', async () => {
    const uri = (serve as ServeProcess).uri('vol0');
    const common = ['--name=raid-verify', '--ioengine=nbd', `--uri=${uri}`, '--rw=randwrite', '--bs=4k', '--iodepth=16', '--size=40M',
      '--verify=crc32c', '--verify_fatal=1', '--verify_dump=0', '--randseed=7601'];
    const status = async (): Promise<RaidStatus> => raidOf(await admin.get('/status')) as RaidStatus;
    assert.equal((await status()).groups[0]?.condition, 'optimal');

    // The write-and-verify pass; d1 fails while fio writes.
    const writing = fio([...common, '--do_verify=1'], directory);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const d1 = Disk.open({ name: diskName('d1') });
    d1.fail();
    d1.close();
    await writing;

    const rebuilt = await waitFor(async () => {
      const raid = await status();
      const group = raid.groups[0];
      return group?.condition === 'optimal' && group.disks.includes('s0') ? raid : undefined;
    }, 'the group rebuilt onto s0', 120_000, 100);
    assert.deepEqual(rebuilt.groups[0]?.disks, ['d0', 's0', 'd2', 'd3']);
    assert.equal(rebuilt.groups[0]?.lastError, null);
    assert.equal(rebuilt.disks.find((d) => d.disk === 'd1')?.status, 'failed');
    assert.equal(rebuilt.disks.find((d) => d.disk === 's0')?.status, 'normal');

    // A second original member fails: what d1 held now comes from the rebuilt spare.
    const d3 = Disk.open({ name: diskName('d3') });
    d3.fail();
    d3.close();
    await fio([...common, '--verify_only=1'], directory);
    const degraded = await status();
    assert.equal(degraded.groups[0]?.condition, 'degraded');
  });
});
