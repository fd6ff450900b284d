// A real filesystem on a blockmirror export, all in user space: nbdfuse presents the export as a
// file (MOUNTDIR/nbd), mkfs.ext4 formats it, fuse2fs mounts it, we write 200 small files and one
// large one, unmount, e2fsck -fn must find it clean, we mount again and every file's sha256 must
// match. The server is the real `blockmirror serve` process.
//
// Every mount is undone in the after hook whatever happened (fusermount3 -u, lazily if needed,
// then the helper processes are killed), so a failure leaves no stale mount behind.
import * as assert from 'node:assert/strict';
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';

import { ServeProcess } from '../helpers/serve-process';
import {
  exited, findTool, isMounted, makeTempDir, prng, removeTempDir, requireFuse, requireTool, run, seededBytes,
  sha256OfBuffer, sha256OfFile, stopChild, waitFor,
} from '../helpers/tools';

const KIB = 1024;
const MIB = 1024 * 1024;
const SMALL_FILE_COUNT = 200;
const SMALL_FILE_BYTES = 4 * KIB;
const LARGE_FILE_BYTES = 32 * MIB;

describe('64 interop: ext4 over nbdfuse + fuse2fs', function () {
  this.timeout(600_000);
  before(requireTool('nbdfuse', 'fuse2fs', 'fusermount3', 'mkfs.ext4', 'e2fsck'));
  before(requireFuse());

  let directory: string;
  let fuseDir: string;
  let mountDir: string;
  let serve: ServeProcess | undefined;
  let nbdfuse: ChildProcess | undefined;
  let fuse2fs: ChildProcess | undefined;
  const expected = new Map<string, string>();
  let nbdfuseStderr = '';

  before(async () => {
    directory = makeTempDir('ext4');
    fuseDir = path.join(directory, 'nbd');
    mountDir = path.join(directory, 'mnt');
    fs.mkdirSync(fuseDir);
    fs.mkdirSync(mountDir);
    serve = await ServeProcess.start({
      directory,
      config: { volumes: [{ name: 'fs', capacity: '256MiB' }] },
      args: ['--port', '0', '--quiet'],
    });
  });

  after(async () => {
    // Innermost first: the filesystem, then the file that holds it, then the server.
    for (const mountPoint of [mountDir, fuseDir]) {
      if (mountPoint !== undefined && isMounted(mountPoint)) {
        const result = await run('fusermount3', ['-u', mountPoint], { check: false });
        if (result.code !== 0) await run('fusermount3', ['-u', '-z', mountPoint], { check: false });
      }
    }
    await stopChild(fuse2fs);
    await stopChild(nbdfuse);
    await serve?.kill();
    removeTempDir(directory);
  });

  /** Starts fuse2fs in the foreground and waits until the mount is in the mount table. */
  async function mount(): Promise<void> {
    const child = spawn(findTool('fuse2fs') ?? 'fuse2fs', [path.join(fuseDir, 'nbd'), mountDir, '-o', 'fakeroot', '-f'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    fuse2fs = child;
    await waitFor(() => {
      if (child.exitCode !== null) throw new Error(`fuse2fs exited ${child.exitCode}: ${stderr}`);
      return isMounted(mountDir);
    }, 'the fuse2fs mount', 20_000);
  }

  /** Unmounts fuse2fs and waits for it to exit, which is when it has written everything back. */
  async function unmount(): Promise<void> {
    const child = fuse2fs as ChildProcess;
    const gone = exited(child);
    await run('fusermount3', ['-u', mountDir]);
    const result = await gone;
    assert.equal(result.code, 0, `fuse2fs exited ${result.code ?? result.signal}`);
    fuse2fs = undefined;
  }

  it('nbdfuse presents the export as a file of the export size', async () => {
    const pidFile = path.join(directory, 'nbdfuse.pid');
    nbdfuse = spawn(findTool('nbdfuse') ?? 'nbdfuse', ['-P', pidFile, fuseDir, (serve as ServeProcess).uri('fs')], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    nbdfuse.stderr?.on('data', (chunk: Buffer) => {
      nbdfuseStderr += chunk.toString();
    });
    // nbdfuse writes its pid file once it serves.
    await waitFor(() => {
      if (nbdfuse?.exitCode !== null) throw new Error(`nbdfuse exited ${nbdfuse?.exitCode}: ${nbdfuseStderr}`);
      return fs.existsSync(pidFile) && fs.readFileSync(pidFile, 'utf8').trim().length > 0;
    }, 'the nbdfuse pid file', 20_000);
    assert.equal(fs.statSync(path.join(fuseDir, 'nbd')).size, 256 * MIB);
  });

  it('mkfs.ext4 formats it', async () => {
    await run('mkfs.ext4', ['-F', '-q', '-L', 'blockmirror', path.join(fuseDir, 'nbd')], { timeoutMs: 120_000 });
  });

  it(`fuse2fs mounts it; ${SMALL_FILE_COUNT} x 4 KiB files and one 32 MiB file are written`, async () => {
    await mount();
    const random = prng(64);
    const smallDir = path.join(mountDir, 'small');
    await fsp.mkdir(smallDir);
    for (let i = 0; i < SMALL_FILE_COUNT; i++) {
      const data = seededBytes(SMALL_FILE_BYTES, 6400 + i);
      // Some files end mid-block so ext4's partial-block handling is exercised too.
      const length = random() < 0.25 ? 1 + Math.floor(random() * (SMALL_FILE_BYTES - 1)) : SMALL_FILE_BYTES;
      const name = path.join('small', `file-${String(i).padStart(3, '0')}.bin`);
      await fsp.writeFile(path.join(mountDir, name), data.subarray(0, length));
      expected.set(name, sha256OfBuffer(data.subarray(0, length)));
    }
    const large = seededBytes(LARGE_FILE_BYTES, 6499);
    await fsp.writeFile(path.join(mountDir, 'large.bin'), large);
    expected.set('large.bin', sha256OfBuffer(large));
    const handle = await fsp.open(path.join(mountDir, 'large.bin'), 'r');
    await handle.sync();
    await handle.close();
    await unmount();
  });

  it('e2fsck -fn finds the filesystem clean', async () => {
    const result = await run('e2fsck', ['-fn', path.join(fuseDir, 'nbd')], { check: false, timeoutMs: 120_000 });
    assert.equal(result.code, 0, `e2fsck exit ${result.code}:\n${result.stdout}\n${result.stderr}`);
    // 200 small files + large.bin + the small directory + ext4's own 11 inodes.
    const files = /(\d+)\/\d+ files/.exec(result.stdout);
    assert.ok(files !== null && Number(files[1]) >= SMALL_FILE_COUNT + 2, result.stdout);
  });

  it('after a remount every file has its sha256', async () => {
    await mount();
    const names = (await fsp.readdir(path.join(mountDir, 'small'))).sort();
    assert.equal(names.length, SMALL_FILE_COUNT);
    for (const [name, sha256] of expected) {
      assert.equal(await sha256OfFile(path.join(mountDir, name)), sha256, `${name} differs after remount`);
    }
    await unmount();
  });

  it('nbdfuse unmounts cleanly and the server saw no errors', async () => {
    const child = nbdfuse as ChildProcess;
    const gone = exited(child);
    await run('fusermount3', ['-u', fuseDir]);
    const result = await gone;
    assert.equal(result.code, 0, `nbdfuse exited ${result.code ?? result.signal}: ${nbdfuseStderr}`);
    nbdfuse = undefined;
    const stopped = await (serve as ServeProcess).signal('SIGTERM');
    assert.equal(stopped.code, 0);
    assert.match((serve as ServeProcess).stdoutLines.join('\n'), /summary: .*errors 0/);
  });
});
