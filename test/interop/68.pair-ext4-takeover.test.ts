// A real filesystem on a sync pair's primary, then a SIGKILL of the primary and a takeover on
// the secondary's serve: nbdfuse presents the primary's export as a file, mkfs.ext4 formats it,
// fuse2fs mounts it, files are written with their sha256, the filesystem is unmounted cleanly,
// the primary serve is SIGKILLed (nbdfuse still attached), `pair takeover` on the secondary;
// then e2fsck -fn on the secondary's export is clean, and mounted read-only (nbdfuse -r +
// fuse2fs -o ro) every file has its sha256.
//
// Every mount is undone in the after hook whatever happened (fusermount3 -u, lazily if needed,
// then the helper processes are killed), and every /dev/shm object of the test is unlinked.
import * as assert from 'node:assert/strict';
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';

import { PairSite, ports, removeShm, shmPrefix } from '../helpers/pair-sites';
import {
  exited, findTool, isMounted, makeTempDir, prng, removeTempDir, requireFuse, requireTool, run, seededBytes,
  sha256OfBuffer, sha256OfFile, stopChild, waitFor,
} from '../helpers/tools';

const KIB = 1024;
const MIB = 1024 * KIB;
const SMALL_FILE_COUNT = 120;
const LARGE_FILE_BYTES = 16 * MIB;

describe('68 interop: ext4 on a sync primary, SIGKILL, takeover, the filesystem on the secondary', function () {
  this.timeout(300_000);
  before(requireTool('nbdfuse', 'fuse2fs', 'fusermount3', 'mkfs.ext4', 'e2fsck'));
  before(requireFuse());

  let directory: string;
  let prefix: string;
  const sites: PairSite[] = [];
  const mountPoints: string[] = [];
  const children: ChildProcess[] = [];
  const expected = new Map<string, string>();

  before(() => {
    directory = makeTempDir('pair-ext4');
    prefix = shmPrefix('68');
  });

  after(async () => {
    // Innermost first: filesystems, then the files that hold them, then the servers.
    for (const mountPoint of [...mountPoints].reverse()) {
      if (isMounted(mountPoint)) {
        const result = await run('fusermount3', ['-u', mountPoint], { check: false });
        if (result.code !== 0) await run('fusermount3', ['-u', '-z', mountPoint], { check: false });
      }
    }
    for (const child of [...children].reverse()) await stopChild(child);
    for (const site of sites) await site.stop();
    removeShm(prefix);
    removeTempDir(directory);
  });

  function directoryFor(name: string): string {
    const made = path.join(directory, name);
    fs.mkdirSync(made, { recursive: true });
    mountPoints.push(made);
    return made;
  }

  /** nbdfuse of `uri` at a new directory; resolves with the file that presents the export. */
  async function nbdfuse(name: string, uri: string, readOnly: boolean): Promise<{ file: string; child: ChildProcess; stderr: () => string }> {
    const mountPoint = directoryFor(name);
    const pidFile = path.join(directory, `${name}.pid`);
    const child = spawn(findTool('nbdfuse') ?? 'nbdfuse', [...(readOnly ? ['-r'] : []), '-P', pidFile, mountPoint, uri], { stdio: ['ignore', 'ignore', 'pipe'] });
    children.push(child);
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
    await waitFor(() => {
      if (child.exitCode !== null) throw new Error(`nbdfuse exited ${child.exitCode}: ${stderr}`);
      return fs.existsSync(pidFile) && fs.readFileSync(pidFile, 'utf8').trim().length > 0;
    }, `the nbdfuse pid file of ${name}`, 20_000);
    return { file: path.join(mountPoint, 'nbd'), child, stderr: () => stderr };
  }

  /** fuse2fs of `file` at a new directory, in the foreground; resolves once it is mounted. */
  async function fuse2fs(name: string, file: string, readOnly: boolean): Promise<{ mountPoint: string; child: ChildProcess }> {
    const mountPoint = directoryFor(name);
    const child = spawn(findTool('fuse2fs') ?? 'fuse2fs', [file, mountPoint, '-o', readOnly ? 'ro,fakeroot' : 'fakeroot', '-f'], { stdio: ['ignore', 'ignore', 'pipe'] });
    children.push(child);
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
    await waitFor(() => {
      if (child.exitCode !== null) throw new Error(`fuse2fs exited ${child.exitCode}: ${stderr}`);
      return isMounted(mountPoint);
    }, `the fuse2fs mount ${name}`, 20_000);
    return { mountPoint, child };
  }

  /** Unmounts a fuse2fs mount and waits for it to exit, which is when it has written everything back. */
  async function unmount(mount: { mountPoint: string; child: ChildProcess }): Promise<void> {
    const gone = exited(mount.child);
    await run('fusermount3', ['-u', mount.mountPoint]);
    const result = await gone;
    assert.equal(result.code, 0, `fuse2fs exited ${result.code ?? result.signal}`);
  }

  it('files written on the primary are all on the secondary after a SIGKILL and a takeover; e2fsck finds the filesystem clean', async () => {
    const [portA, portB] = await ports(2) as [number, number];
    const pair = { name: 'fs', mode: 'sync' as const };
    const b = await PairSite.start({ id: 'site-b', prefix, directory, replicationPort: portB, capacity: '128MiB',
      peers: [{ id: 'site-a', port: portA }], pairs: [{ ...pair, peer: 'site-a', role: 'secondary' }] });
    sites.push(b);
    const a = await PairSite.start({ id: 'site-a', prefix, directory, replicationPort: portA, capacity: '128MiB',
      peers: [{ id: 'site-b', port: portB }], pairs: [{ ...pair, peer: 'site-b', role: 'primary' }] });
    sites.push(a);
    await a.until('fs', (status) => status.state === 'mirroring', 'the pair mirroring');

    // The filesystem, on the primary.
    const primaryFile = await nbdfuse('nbd-a', a.uri, false);
    await run('mkfs.ext4', ['-F', '-q', '-L', 'blockmirror', primaryFile.file], { timeoutMs: 120_000 });
    const mounted = await fuse2fs('mnt-a', primaryFile.file, false);
    const random = prng(68);
    await fsp.mkdir(path.join(mounted.mountPoint, 'small'));
    for (let i = 0; i < SMALL_FILE_COUNT; i++) {
      const data = seededBytes(4 * KIB + Math.floor(random() * 12 * KIB), 6800 + i);
      const name = path.join('small', `file-${String(i).padStart(3, '0')}.bin`);
      await fsp.writeFile(path.join(mounted.mountPoint, name), data);
      expected.set(name, sha256OfBuffer(data));
    }
    const large = seededBytes(LARGE_FILE_BYTES, 6899);
    await fsp.writeFile(path.join(mounted.mountPoint, 'large.bin'), large);
    expected.set('large.bin', sha256OfBuffer(large));
    await unmount(mounted);
    // What the kernel still holds for nbdfuse's file goes to the export (an NBD FLUSH, which a
    // sync pair also runs on the secondary).
    const handle = await fsp.open(primaryFile.file, 'r+');
    await handle.sync();
    await handle.close();

    // The primary dies with the export still attached; the secondary takes over.
    await a.sigkill();
    await b.until('fs', (status) => status.state === 'suspended', 'the secondary sees the primary gone');
    const line = await b.pairVerb('takeover', 'fs');
    assert.match(line, /role primary/, line);

    const secondaryFile = await nbdfuse('nbd-b', b.uri, true);
    const fsck = await run('e2fsck', ['-fn', secondaryFile.file], { check: false, timeoutMs: 120_000 });
    assert.equal(fsck.code, 0, `e2fsck exit ${fsck.code}:\n${fsck.stdout}\n${fsck.stderr}`);
    const files = /(\d+)\/\d+ files/.exec(fsck.stdout);
    assert.ok(files !== null && Number(files[1]) >= SMALL_FILE_COUNT + 2, fsck.stdout);

    const readOnly = await fuse2fs('mnt-b', secondaryFile.file, true);
    const names = (await fsp.readdir(path.join(readOnly.mountPoint, 'small'))).sort();
    assert.equal(names.length, SMALL_FILE_COUNT);
    for (const [name, sha256] of expected) {
      assert.equal(await sha256OfFile(path.join(readOnly.mountPoint, name)), sha256, `${name} differs on the secondary after the takeover`);
    }
    await unmount(readOnly);
    const gone = exited(secondaryFile.child);
    await run('fusermount3', ['-u', path.dirname(secondaryFile.file)]);
    assert.equal((await gone).code, 0, `nbdfuse of the secondary exited badly: ${secondaryFile.stderr()}`);
    // The new primary took no error from any of it.
    assert.equal((await b.pair('fs')).role, 'primary');
  });
});
