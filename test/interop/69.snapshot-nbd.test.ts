// Snapshots of a running `blockmirror serve`, driven with the command and read by real NBD
// clients: `snapshot create` exports vol0@NAME read-only at once; nbdcopy reads it while fio
// writes the volume, and gets exactly the copy taken at snapshot time; nbdinfo --map shows the
// snapshot's holes; qemu-io cannot write it; `restore` brings the volume back; `clone --as`
// exports a writable copy; `delete` takes the export away; coded errors for a duplicate name,
// an unknown snapshot and a bad name. The snapshots of a shared volume survive a SIGKILL of the
// serve and are exported again by the restarted one.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { Volume } from '../../src/storage/volume';
import { SnapshotStore } from '../../src/storage/snapshot';
import { CLI_PATH, ServeProcess } from '../helpers/serve-process';
import { shmPrefix } from '../helpers/pair-sites';
import { makeTempDir, removeTempDir, requireTool, run, sha256OfFile } from '../helpers/tools';

const MIB = 1024 * 1024;
const CAPACITY = 64 * MIB;

describe('69 interop: snapshots of a serve over NBD (nbdcopy, fio, nbdinfo, qemu-io)', function () {
  this.timeout(240_000);
  before(requireTool('nbdcopy'));
  before(requireTool('fio'));
  before(requireTool('nbdinfo'));
  before(requireTool('qemu-io'));

  let directory: string;
  let serve: ServeProcess | undefined;
  let adminSocket: string;
  let prefix: string;

  beforeEach(() => {
    directory = makeTempDir('snapshot-nbd');
    adminSocket = path.join(directory, 'admin.sock');
    prefix = shmPrefix('69');
  });

  afterEach(async () => {
    await serve?.kill();
    serve = undefined;
    for (const name of [`${prefix}.vol0`, `${prefix}.vol0.clone.c1`]) {
      SnapshotStore.unlink({ name });
      Volume.unlink({ name });
    }
    removeTempDir(directory);
  });

  function config(backing: 'memory' | 'shared'): Record<string, unknown> {
    return {
      controllers: [{
        id: 'a',
        volumes: [{ name: 'vol0', capacity: `${CAPACITY}`, backing, ...(backing === 'shared' ? { sharedName: `${prefix}.vol0` } : {}) }],
      }],
      listen: [{ host: '127.0.0.1', port: 0 }],
    };
  }

  async function start(backing: 'memory' | 'shared'): Promise<ServeProcess> {
    serve = await ServeProcess.start({
      config: config(backing), directory, args: ['--port', '0', '--admin', adminSocket, '--status-interval', '60', '--log-level', 'info'],
      readyTimeoutMs: 30_000,
    });
    return serve;
  }

  function snapshot(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return run(process.execPath, [CLI_PATH, 'snapshot', ...args, '--admin', adminSocket], { timeoutMs: 60_000, check: false });
  }

  async function ok(...args: string[]): Promise<string> {
    const answer = await snapshot(...args);
    assert.equal(answer.code, 0, `snapshot ${args.join(' ')}: exit ${answer.code}\n${answer.stdout}${answer.stderr}`);
    return answer.stdout;
  }

  /** The NBD URI of an export (also one added after the serve started). */
  function uriOf(server: ServeProcess, exportName: string): string {
    const { host, port } = server.tcpAddress;
    return `nbd://${host}:${port}/${encodeURIComponent(exportName).replace(/%40/g, '@')}`;
  }

  async function copyOut(server: ServeProcess, exportName: string, file: string): Promise<string> {
    await run('nbdcopy', [uriOf(server, exportName), file], { timeoutMs: 120_000 });
    return sha256OfFile(file);
  }

  /** Writes 1 MiB of a pattern at every 4th MiB (the rest stays a hole). */
  async function writePattern(server: ServeProcess, exportName: string, pattern: number): Promise<void> {
    const commands = [];
    for (let mib = 0; mib < CAPACITY / MIB; mib += 4) commands.push('-c', `write -P ${pattern} ${mib * MIB} ${MIB}`);
    await run('qemu-io', ['-f', 'raw', ...commands, uriOf(server, exportName)], { timeoutMs: 60_000 });
  }

  it('exports a snapshot read-only at once; it reads the volume as it was while fio writes; restore, clone, delete; coded errors', async () => {
    const server = await start('memory');
    await writePattern(server, 'vol0', 0x5a);
    const atSnapshot = await copyOut(server, 'vol0', path.join(directory, 'at-snapshot.img'));

    assert.match(await ok('create', 'vol0', 's1'), /snapshot vol0@s1 created/);
    // fio overwrites the volume at random while nbdcopy reads the snapshot's export.
    const fio = run('fio', ['--name=w', '--ioengine=nbd', `--uri=${uriOf(server, 'vol0')}`, '--rw=randwrite', '--bs=64k', '--iodepth=8',
      `--size=${CAPACITY}`, '--time_based', '--runtime=4', '--randrepeat=0'], { timeoutMs: 60_000 });
    await new Promise((resolve) => setTimeout(resolve, 500));
    const duringWrites = await copyOut(server, 'vol0@s1', path.join(directory, 'snapshot.img'));
    await fio;
    assert.equal(duringWrites, atSnapshot, 'the snapshot read during the writes is the volume at snapshot time');
    const now = await copyOut(server, 'vol0', path.join(directory, 'after-fio.img'));
    assert.notEqual(now, atSnapshot, 'fio changed the volume');

    // base:allocation of the snapshot: the holes of the volume at snapshot time.
    const map = await run('nbdinfo', ['--map', uriOf(server, 'vol0@s1')], { timeoutMs: 60_000 });
    assert.match(map.stdout, /hole/, map.stdout);
    assert.match(map.stdout, /data/, map.stdout);
    // A snapshot's export is read-only.
    const write = await run('qemu-io', ['-f', 'raw', '-c', `write -P 1 0 4096`, uriOf(server, 'vol0@s1')], { timeoutMs: 60_000, check: false });
    assert.ok(write.code !== 0 || /(read-only|Operation not permitted|Permission denied|failed)/i.test(`${write.stdout}${write.stderr}`), `${write.stdout}${write.stderr}`);

    assert.match(await ok('list'), /vol0\s+s1\s+valid/);
    const duplicate = await snapshot('create', 'vol0', 's1');
    assert.equal(duplicate.code, 1);
    assert.match(duplicate.stderr, /ERR_SNAPSHOT_EXISTS/);
    const unknown = await snapshot('restore', 'vol0', 'nope');
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /ERR_SNAPSHOT_NOT_FOUND/);
    const badName = await snapshot('create', 'vol0', 'no spaces');
    assert.equal(badName.code, 1);
    assert.match(badName.stderr, /ERR_ADMIN_BAD_REQUEST/);

    // A clone: a writable volume with the snapshot's content, exported under its name.
    assert.match(await ok('clone', 'vol0', 's1', '--as', 'c1'), /cloned as volume c1/);
    assert.equal(await copyOut(server, 'c1', path.join(directory, 'clone.img')), atSnapshot);
    await writePattern(server, 'c1', 0x11);
    assert.equal(await copyOut(server, 'vol0@s1', path.join(directory, 'snapshot-again.img')), atSnapshot, 'writing the clone leaves the snapshot alone');

    // Restore: the volume is the snapshot again.
    assert.match(await ok('restore', 'vol0', 's1'), /restored from s1/);
    assert.equal(await copyOut(server, 'vol0', path.join(directory, 'restored.img')), atSnapshot);

    // Delete: the export goes away.
    assert.match(await ok('delete', 'vol0', 's1'), /deleted/);
    const gone = await run('nbdinfo', [uriOf(server, 'vol0@s1')], { timeoutMs: 60_000, check: false });
    assert.notEqual(gone.code, 0, 'the deleted snapshot is no longer exported');
    assert.match(await ok('list', 'vol0'), /no snapshots/);
  });

  it('keeps the snapshots of a shared volume across a SIGKILL of the serve, exported again after the restart', async () => {
    let server = await start('shared');
    await writePattern(server, 'vol0', 0x21);
    const atSnapshot = await copyOut(server, 'vol0', path.join(directory, 'at-snapshot.img'));
    await ok('create', 'vol0', 'keep');
    await writePattern(server, 'vol0', 0x42);
    await server.signal('SIGKILL');
    serve = undefined;
    server = await start('shared');
    assert.match(await ok('list', 'vol0'), /vol0\s+keep\s+valid/);
    assert.equal(await copyOut(server, 'vol0@keep', path.join(directory, 'after-kill.img')), atSnapshot);
    // The volume itself kept its later writes, and takes new ones (its snapshot store is open).
    await writePattern(server, 'vol0', 0x43);
    assert.equal(await copyOut(server, 'vol0@keep', path.join(directory, 'after-writes.img')), atSnapshot);
    assert.ok(fs.existsSync(path.join(directory, 'after-writes.img')));
  });
});
