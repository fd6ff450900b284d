// Helpers for tests that drive system tools (qemu-img, nbdinfo, fio, nbdfuse, ...).
//
// requireTool: a test that needs a tool it cannot find skips with a message on a developer's
// machine, and FAILS when CI is set (in CI every tool is installed by scripts/install-tools.sh,
// so a missing one is a broken setup, never a reason to pass quietly).
//
// run: every tool runs asynchronously (child_process.spawn). Never spawnSync/execFileSync in a
// test that serves NBD from the mocha process itself: the server shares the event loop with the
// test, so a synchronous child would wait forever on a server that cannot answer.

import { ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

const SEARCH_PATH_EXTRA = ['/usr/local/sbin', '/usr/sbin', '/sbin'];

/** The absolute path of `name` on PATH (plus the sbin directories), or undefined. */
export function findTool(name: string): string | undefined {
  const directories = [...(process.env.PATH ?? '').split(path.delimiter), ...SEARCH_PATH_EXTRA];
  for (const directory of directories) {
    if (directory === '') continue;
    const candidate = path.join(directory, name);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      if (fs.statSync(candidate).isFile()) return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

export function inCi(): boolean {
  const value = process.env.CI;
  return value !== undefined && value !== '' && value !== '0' && value.toLowerCase() !== 'false';
}

/**
 * A mocha hook (or a function to `.call(this)`) that checks every tool in `names`: when one is
 * missing it fails in CI and skips otherwise.
 *
 *   before(requireTool('nbdinfo', 'qemu-io'));
 */
export function requireTool(...names: string[]): (this: Mocha.Context) => void {
  return function (this: Mocha.Context): void {
    const missing = names.filter((name) => findTool(name) === undefined);
    if (missing.length === 0) return;
    const message = `required tool(s) not found: ${missing.join(', ')} (install with: bash scripts/install-tools.sh)`;
    if (inCi()) throw new Error(`${message}; CI is set, so this is a failure`);
    process.stderr.write(`      skipped: ${message}\n`);
    this.skip();
  };
}

/** A FUSE-based test also needs /dev/fuse; same CI rule as requireTool. */
export function requireFuse(): (this: Mocha.Context) => void {
  return function (this: Mocha.Context): void {
    if (fs.existsSync('/dev/fuse')) return;
    const message = '/dev/fuse is not available (FUSE tests need it)';
    if (inCi()) throw new Error(`${message}; CI is set, so this is a failure`);
    process.stderr.write(`      skipped: ${message}\n`);
    this.skip();
  };
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** Kill the tool (SIGKILL) after this long. @default 60000 */
  timeoutMs?: number;
  /** Throw unless the exit code is 0. @default true */
  check?: boolean;
  input?: string | Buffer;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/** Runs a tool asynchronously and collects its output. */
export function run(command: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  const check = options.check ?? true;
  const executable = findTool(command) ?? command;
  return new Promise((resolve, reject) => {
    const child = spawn(executable, args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: options.env ?? process.env,
      cwd: options.cwd,
    });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const result: RunResult = {
        code,
        signal,
        stdout: Buffer.concat(stdout).toString('utf8'),
        stderr: Buffer.concat(stderr).toString('utf8'),
      };
      const commandLine = `${command} ${args.join(' ')}`;
      if (timedOut) {
        reject(new Error(`${commandLine}: timed out after ${timeoutMs} ms\nstdout: ${tail(result.stdout)}\nstderr: ${tail(result.stderr)}`));
      } else if (check && code !== 0) {
        reject(new Error(`${commandLine}: exit ${code ?? signal}\nstdout: ${tail(result.stdout)}\nstderr: ${tail(result.stderr)}`));
      } else {
        resolve(result);
      }
    });
    if (options.input !== undefined) child.stdin.end(options.input);
    else child.stdin.end();
  });
}

function tail(text: string, maxChars = 4000): string {
  return text.length <= maxChars ? text : `...${text.slice(-maxChars)}`;
}

/** A TCP port that was free a moment ago (bind to 0, read, close). Prefer --port 0 where possible. */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, host, () => {
      const address = server.address() as net.AddressInfo;
      server.close(() => resolve(address.port));
    });
  });
}

/** Polls `probe` until it returns a value other than undefined/false, at most `timeoutMs`. */
export async function waitFor<T>(probe: () => T | undefined | false | Promise<T | undefined | false>,
  what: string, timeoutMs = 10_000, intervalMs = 20): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** A fresh temporary directory under the OS temp dir; remove with removeTempDir. */
export function makeTempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `bm-${prefix}-`));
}

export function removeTempDir(directory: string | undefined): void {
  if (directory === undefined) return;
  try {
    fs.rmSync(directory, { recursive: true, force: true });
  } catch {
    // A stuck mount point cannot be removed; the after hook has reported it already.
  }
}

export function sha256OfBuffer(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** sha256 of a file, streamed. */
export function sha256OfFile(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    fs.createReadStream(file, { highWaterMark: 1 << 20 })
      .on('data', (chunk) => hash.update(chunk))
      .on('error', reject)
      .on('end', () => resolve(hash.digest('hex')));
  });
}

/** Deterministic pseudo-random bytes (xorshift128+), so a failing test replays. */
export function seededBytes(byteLength: number, seed: number): Buffer {
  const out = Buffer.alloc(byteLength);
  let s0 = (seed >>> 0) || 1;
  let s1 = 0x9e3779b9;
  let s2 = 0x7f4a7c15;
  let s3 = 0x2545f491;
  let i = 0;
  // xorshift128 over 32-bit words.
  while (i < byteLength) {
    const t = s3;
    let s = s0;
    s3 = s2;
    s2 = s1;
    s1 = s;
    const u = (t ^ (t << 11)) >>> 0;
    s = (s ^ (s >>> 19) ^ u ^ (u >>> 8)) >>> 0;
    s0 = s;
    for (let k = 0; k < 4 && i < byteLength; k++, i++) out[i] = (s >>> (k * 8)) & 0xff;
  }
  return out;
}

/** A deterministic PRNG for test layouts (mulberry32). */
export function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Whether `mountPoint` is in the mount table. */
export function isMounted(mountPoint: string): boolean {
  const resolved = path.resolve(mountPoint);
  try {
    return fs.readFileSync('/proc/self/mounts', 'utf8').split('\n')
      .some((line) => line.split(' ')[1]?.replace(/\\040/g, ' ') === resolved);
  } catch {
    return false;
  }
}

/** Resolves when the child exits (immediately if it has exited already). */
export function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  }
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

/** Sends SIGTERM, then SIGKILL after graceMs; resolves when the child is gone. */
export async function stopChild(child: ChildProcess | undefined, graceMs = 5000): Promise<void> {
  if (child === undefined || child.pid === undefined) return;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = exited(child);
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await gone;
  clearTimeout(timer);
}
