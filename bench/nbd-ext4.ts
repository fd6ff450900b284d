// Notes on the design
// -------------------
// The ext4-over-nbdfuse workload of bench/nbd-fio.ts: what a user of a real filesystem on an
// export does, all in user space. nbdfuse presents the export as a file (DIR/nbd/nbd); then,
// timed as one: mkfs.ext4 on it, fuse2fs mounts it, FILE_COUNT small files and one large file
// are written, the large file fsync'ed, fuse2fs unmounted (it exits once everything is written
// back), e2fsck -fn (it must find the filesystem clean, else the round fails). nbdfuse opens
// several connections to a multi-conn export, so this is also the workload that shows whether a
// server uses more than one core. test/interop/64.ext4-fuse.test.ts drives the same tools.
//
// Every mount is undone whatever happened (fusermount3 -u, lazily if needed), then nbdfuse is
// stopped and waited for, so a failing round leaves no stale mount behind.

import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';

const MIB = 1024 * 1024;
export const EXT4_FILE_COUNT = 2000;
export const EXT4_SMALL_FILE_BYTES = 4096;
export const EXT4_LARGE_FILE_BYTES = 200 * MIB;
/** Export size the workload needs (the large file, the small ones, ext4's metadata). */
export const EXT4_EXPORT_BYTES = 512 * MIB;

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  stdout: string;
}

function run(command: string, args: string[], timeoutMs = 300_000): Promise<Exit> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString(); });
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

async function check(command: string, args: string[]): Promise<Exit> {
  const result = await run(command, args);
  if (result.code !== 0) throw new Error(`${command} ${args.join(' ')}: exit ${result.code ?? result.signal}\n${result.stdout}${result.stderr}`);
  return result;
}

function isMounted(mountPoint: string): boolean {
  const resolved = path.resolve(mountPoint);
  return fs.readFileSync('/proc/self/mounts', 'utf8').split('\n').some((line) => line.split(' ')[1] === resolved);
}

async function waitFor(probe: () => boolean, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

async function unmountQuietly(mountPoint: string): Promise<void> {
  if (!isMounted(mountPoint)) return;
  const result = await run('fusermount3', ['-u', mountPoint]);
  if (result.code !== 0) await run('fusermount3', ['-u', '-z', mountPoint]);
}

/** True when nbdfuse, fuse2fs and /dev/fuse are usable here. */
export function ext4WorkloadAvailable(): boolean {
  try {
    fs.accessSync('/dev/fuse', fs.constants.R_OK | fs.constants.W_OK);
  } catch {
    return false;
  }
  return ['nbdfuse', 'fuse2fs', 'fusermount3', 'mkfs.ext4', 'e2fsck'].every((tool) =>
    (process.env.PATH ?? '').split(':').some((directory) => fs.existsSync(path.join(directory, tool))));
}

/** Runs the workload once against `uri`; resolves with its wall time in seconds. */
export async function runExt4Workload(uri: string, directory: string): Promise<number> {
  const fuseDir = path.join(directory, 'nbd');
  const mountDir = path.join(directory, 'mnt');
  fs.mkdirSync(fuseDir, { recursive: true });
  fs.mkdirSync(mountDir, { recursive: true });
  const image = path.join(fuseDir, 'nbd');
  const pidFile = path.join(directory, 'nbdfuse.pid');
  fs.rmSync(pidFile, { force: true });
  const nbdfuse = spawn('nbdfuse', ['-P', pidFile, fuseDir, uri], { stdio: ['ignore', 'ignore', 'pipe'] });
  let nbdfuseStderr = '';
  nbdfuse.stderr?.on('data', (chunk: Buffer) => { nbdfuseStderr += chunk.toString(); });
  let fuse2fs: ChildProcess | undefined;
  try {
    await waitFor(() => {
      if (nbdfuse.exitCode !== null) throw new Error(`nbdfuse exited ${nbdfuse.exitCode}: ${nbdfuseStderr}`);
      return fs.existsSync(pidFile) && fs.readFileSync(pidFile, 'utf8').trim() !== '';
    }, 'nbdfuse', 20_000);
    const small = Buffer.alloc(EXT4_SMALL_FILE_BYTES, 0x5a);
    const large = Buffer.alloc(EXT4_LARGE_FILE_BYTES);
    for (let i = 0; i < large.length; i += 4096) large.writeUInt32LE(i / 4096, i);
    const startMs = performance.now();
    await check('mkfs.ext4', ['-F', '-q', image]);
    const child = spawn('fuse2fs', [image, mountDir, '-o', 'fakeroot', '-f'], { stdio: ['ignore', 'ignore', 'pipe'] });
    fuse2fs = child;
    let fuseStderr = '';
    child.stderr?.on('data', (chunk: Buffer) => { fuseStderr += chunk.toString(); });
    await waitFor(() => {
      if (child.exitCode !== null) throw new Error(`fuse2fs exited ${child.exitCode}: ${fuseStderr}`);
      return isMounted(mountDir);
    }, 'the fuse2fs mount', 20_000);
    await fsp.mkdir(path.join(mountDir, 'small'));
    for (let i = 0; i < EXT4_FILE_COUNT; i++) {
      small.writeUInt32LE(i, 0);
      await fsp.writeFile(path.join(mountDir, 'small', `f${i}`), small);
    }
    const handle = await fsp.open(path.join(mountDir, 'large.bin'), 'w');
    for (let at = 0; at < large.length; at += 4 * MIB) await handle.write(large, at, 4 * MIB, at);
    await handle.sync();
    await handle.close();
    const gone = exited(child);
    await check('fusermount3', ['-u', mountDir]);
    await gone;
    fuse2fs = undefined;
    const fsck = await run('e2fsck', ['-fn', image]);
    if (fsck.code !== 0) throw new Error(`e2fsck found the filesystem unclean (exit ${fsck.code}):\n${fsck.stdout}${fsck.stderr}`);
    return (performance.now() - startMs) / 1000;
  } finally {
    await unmountQuietly(mountDir);
    if (fuse2fs !== undefined) {
      fuse2fs.kill('SIGKILL');
      await exited(fuse2fs);
    }
    await unmountQuietly(fuseDir);
    if (nbdfuse.exitCode === null) nbdfuse.kill('SIGTERM');
    await exited(nbdfuse);
  }
}
