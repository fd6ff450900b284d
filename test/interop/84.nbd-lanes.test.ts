// Real clients against `blockmirror serve` with `limits.nativeLanes: true` (docs/nbd-native.md):
// the config key reaches the NBD server, and connections to the default backing ('memory', a
// memfd) and to a 'file' volume are served by native lanes, as the admin endpoint's status shows
// (nbd.laneConnections) while clients are connected:
//   - qemu-io: write with a pattern, FUA write, zero, discard, flush, read back with the pattern;
//   - nbdinfo --map: BLOCK_STATUS hands the connection back to the event loop, which answers it;
//   - fio with 4 jobs (one connection each) at iodepth 16, verify=crc32c: every block verified,
//     all four on lanes, and the server's counters match what fio moved;
//   - the ext4-over-nbdfuse workload of the bench (mkfs.ext4, fuse2fs, 2,000 small files and a
//     200 MiB file, fsync, unmount): e2fsck -fn finds the filesystem clean.
import * as assert from 'node:assert/strict';
import * as path from 'node:path';

import { AdminClient } from '../../src/admin/client';
import { EXT4_EXPORT_BYTES, runExt4Workload } from '../../bench/nbd-ext4';
import { runFio } from '../helpers/fio';
import { ServeProcess } from '../helpers/serve-process';
import { makeTempDir, removeTempDir, requireFuse, requireTool, run, waitFor } from '../helpers/tools';

const MIB = 1024 * 1024;

interface NbdStatus {
  connections: number;
  laneConnections: number;
  bytesWritten: number;
  bytesRead: number;
  requests: { write: number; read: number; blockStatus: number };
}

describe('84 interop: NBD connections on native lanes (limits.nativeLanes)', function () {
  this.timeout(600_000);
  before(requireTool('qemu-io', 'nbdinfo', 'fio', 'nbdfuse', 'fuse2fs', 'fusermount3', 'mkfs.ext4', 'e2fsck'));
  before(requireFuse());

  let directory: string;
  let serve: ServeProcess | undefined;
  let admin: AdminClient;

  before(async () => {
    directory = makeTempDir('nbd-lanes');
    const adminSocket = path.join(directory, 'admin.sock');
    serve = await ServeProcess.start({
      directory,
      config: {
        volumes: [
          { name: 'mem0', capacity: '256MiB' },
          { name: 'file0', capacity: '64MiB', backing: 'file', path: path.join(directory, 'file0.img') },
          { name: 'fs', capacity: EXT4_EXPORT_BYTES },
        ],
        limits: { nativeLanes: true },
      },
      args: ['--port', '0', '--admin', adminSocket, '--quiet'],
    });
    admin = new AdminClient(adminSocket);
  });

  after(async () => {
    await serve?.kill();
    removeTempDir(directory);
  });

  const nbdStatus = async (): Promise<NbdStatus> => ((await admin.get('/status')) as { nbd: NbdStatus }).nbd;

  it('qemu-io writes, zeroes, discards and reads back through a lane; nbdinfo --map is answered after a hand-back', async () => {
    const uri = (serve as ServeProcess).uri('file0');
    // qemu-io sleeps between its writes and its reads, long enough to see where it is served.
    const running = run('qemu-io', ['-f', 'raw',
      '-c', 'write -P 0xab 0 1M', '-c', 'write -f -P 0x5a 4M 64k', '-c', 'write -z 8M 1M', '-c', 'discard 16M 1M', '-c', 'flush',
      '-c', 'sleep 3000',
      '-c', 'read -P 0xab 0 1M', '-c', 'read -P 0x5a 4M 64k', '-c', 'read -P 0 8M 1M', uri]);
    await waitFor(async () => (await nbdStatus()).laneConnections === 1, 'qemu-io on a lane');
    const written = await running;
    assert.doesNotMatch(written.stdout + written.stderr, /Pattern verification failed|error/i);
    const before = await nbdStatus();
    const map = await run('nbdinfo', ['--map', uri]);
    assert.match(map.stdout, /^\s+0\s+1048576\s+0\s+data/m);
    const after = await nbdStatus();
    assert.ok(after.requests.blockStatus > before.requests.blockStatus, JSON.stringify(after));
    const info = await run('nbdinfo', ['--json', uri]);
    const document = JSON.parse(info.stdout) as { exports: { 'export-size': number; can_multi_conn: boolean }[] };
    assert.equal(document.exports[0]?.['export-size'], 64 * MIB);
    assert.equal(document.exports[0]?.can_multi_conn, true);
    assert.ok(after.requests.write >= 2 && (after.requests as { writeZeroes?: number }).writeZeroes === 1, JSON.stringify(after));
  });

  it('fio with 4 jobs (4 connections) on the default memory backing, every block verified, all on lanes', async () => {
    const uri = (serve as ServeProcess).uri('mem0');
    const before = await nbdStatus();
    let seenOnLanes = 0;
    const watching = waitFor(async () => {
      const status = await nbdStatus();
      seenOnLanes = Math.max(seenOnLanes, status.laneConnections);
      return seenOnLanes >= 4;
    }, 'four fio connections on lanes', 60_000);
    const jobs = await runFio([
      '--name=lanes-verify', '--ioengine=nbd', `--uri=${uri}`,
      '--rw=randwrite', '--bs=4k', '--iodepth=16', '--size=16M',
      '--numjobs=4', '--offset_increment=32M',
      '--verify=crc32c', '--do_verify=1', '--verify_fatal=1', '--verify_dump=0',
      '--randseed=8401',
    ], directory);
    await watching;
    assert.equal(jobs.length, 4);
    for (const job of jobs) {
      assert.equal(job.write.io_bytes, 16 * MIB, `${job.jobname} wrote ${job.write.io_bytes}`);
      assert.equal(job.read.io_bytes, 16 * MIB, `${job.jobname} verified ${job.read.io_bytes}`);
    }
    await waitFor(async () => (await nbdStatus()).laneConnections === 0, 'the fio connections to close');
    const after = await nbdStatus();
    assert.equal(after.bytesWritten - before.bytesWritten, 64 * MIB);
    assert.ok(after.bytesRead - before.bytesRead >= 64 * MIB);
  });

  it('ext4 over nbdfuse on lanes: the bench workload, and e2fsck finds the filesystem clean', async () => {
    const uri = (serve as ServeProcess).uri('fs');
    const before = await nbdStatus();
    let seenOnLanes = 0;
    let done = false;
    const watching = (async () => {
      while (!done) {
        seenOnLanes = Math.max(seenOnLanes, (await nbdStatus()).laneConnections);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    })();
    try {
      // Throws when a step fails or e2fsck -fn does not exit 0.
      const seconds = await runExt4Workload(uri, path.join(directory, 'ext4'));
      assert.ok(seconds > 0);
    } finally {
      done = true;
      await watching;
    }
    assert.ok(seenOnLanes >= 1, 'nbdfuse was served by lanes');
    const after = await nbdStatus();
    // 2,000 small files and a 200 MiB file, at least.
    assert.ok(after.bytesWritten - before.bytesWritten >= 200 * MIB, JSON.stringify(after));
  });
});
