// Real clients against `blockmirror serve` with `limits.workers: 2` (docs/nbd-workers.md): the
// config key reaches the NBD server, and connections to the default backing ('memory', a memfd)
// and to a 'file' volume are served by the worker threads, as the admin endpoint's status shows
// (nbd.workerConnections) while clients are connected:
//   - nbdinfo: size, CAN_MULTI_CONN, base:allocation map after writes made by qemu-io;
//   - qemu-io: write with a pattern, FUA write, zero, discard, flush, read back with the pattern;
//   - fio with 4 jobs (one connection each) at iodepth 16, verify=crc32c: every block verified,
//     and the server's counters summed over the workers match what fio moved.
import * as assert from 'node:assert/strict';
import * as path from 'node:path';

import { AdminClient } from '../../src/admin/client';
import { runFio } from '../helpers/fio';
import { ServeProcess } from '../helpers/serve-process';
import { makeTempDir, removeTempDir, requireTool, run, waitFor } from '../helpers/tools';

const MIB = 1024 * 1024;

interface NbdStatus {
  connections: number;
  workerConnections: number;
  bytesWritten: number;
  bytesRead: number;
  requests: { write: number; read: number };
}

describe('83 interop: NBD connections on worker threads (limits.workers)', function () {
  this.timeout(300_000);
  before(requireTool('qemu-io', 'nbdinfo', 'fio'));

  let directory: string;
  let serve: ServeProcess | undefined;
  let admin: AdminClient;

  before(async () => {
    directory = makeTempDir('nbd-workers');
    const adminSocket = path.join(directory, 'admin.sock');
    serve = await ServeProcess.start({
      directory,
      config: {
        volumes: [
          { name: 'mem0', capacity: '256MiB' },
          { name: 'file0', capacity: '64MiB', backing: 'file', path: path.join(directory, 'file0.img') },
        ],
        // Lanes are offered before workers: off here, so the workers get the connections.
        limits: { workers: 2, nativeLanes: false },
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

  it('qemu-io writes, zeroes, discards and reads back through a worker; nbdinfo sees the map', async () => {
    const uri = (serve as ServeProcess).uri('file0');
    // qemu-io sleeps between its writes and its reads, long enough to see where it is served.
    const running = run('qemu-io', ['-f', 'raw',
      '-c', 'write -P 0xab 0 1M', '-c', 'write -f -P 0x5a 4M 64k', '-c', 'write -z 8M 1M', '-c', 'discard 16M 1M', '-c', 'flush',
      '-c', 'sleep 3000',
      '-c', 'read -P 0xab 0 1M', '-c', 'read -P 0x5a 4M 64k', '-c', 'read -P 0 8M 1M', uri]);
    await waitFor(async () => (await nbdStatus()).workerConnections === 1, 'qemu-io on a worker');
    const written = await running;
    assert.doesNotMatch(written.stdout + written.stderr, /Pattern verification failed|error/i);
    const info = await run('nbdinfo', ['--json', uri]);
    const document = JSON.parse(info.stdout) as { exports: { 'export-size': number; can_multi_conn: boolean }[] };
    assert.equal(document.exports[0]?.['export-size'], 64 * MIB);
    assert.equal(document.exports[0]?.can_multi_conn, true);
    const map = await run('nbdinfo', ['--map', uri]);
    assert.match(map.stdout, /^\s+0\s+1048576\s+0\s+data/m);
    const status = await nbdStatus();
    // qemu-io and nbdinfo were each served by a worker: they wrote and read there.
    assert.ok(status.requests.write >= 2, JSON.stringify(status));
    assert.ok(status.bytesRead >= 2 * MIB, JSON.stringify(status));
  });

  it('fio with 4 jobs (4 connections) on the default memory backing, every block verified, all on workers', async () => {
    const uri = (serve as ServeProcess).uri('mem0');
    const before = await nbdStatus();
    let seenOnWorkers = 0;
    const watching = (async () => {
      await waitFor(async () => {
        const status = await nbdStatus();
        seenOnWorkers = Math.max(seenOnWorkers, status.workerConnections);
        return seenOnWorkers >= 4;
      }, 'four fio connections on the workers', 60_000);
    })();
    const jobs = await runFio([
      '--name=workers-verify', '--ioengine=nbd', `--uri=${uri}`,
      '--rw=randwrite', '--bs=4k', '--iodepth=16', '--size=16M',
      '--numjobs=4', '--offset_increment=32M',
      '--verify=crc32c', '--do_verify=1', '--verify_fatal=1', '--verify_dump=0',
      '--randseed=8301',
    ], directory);
    await watching;
    assert.equal(jobs.length, 4);
    for (const job of jobs) {
      assert.equal(job.write.io_bytes, 16 * MIB, `${job.jobname} wrote ${job.write.io_bytes}`);
      assert.equal(job.read.io_bytes, 16 * MIB, `${job.jobname} verified ${job.read.io_bytes}`);
    }
    await waitFor(async () => (await nbdStatus()).workerConnections === 0, 'the fio connections to close');
    const after = await nbdStatus();
    assert.equal(after.bytesWritten - before.bytesWritten, 64 * MIB);
    assert.ok(after.bytesRead - before.bytesRead >= 64 * MIB);
  });
});
