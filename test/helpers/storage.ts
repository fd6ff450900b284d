// Helpers for the storage-layer tests: unique shared-memory names per run (cleaned up after each
// test), a temporary directory for file backings, error assertions that check class, code and
// message, child processes that report by message, and a view of this process's mappings.

import * as assert from 'node:assert/strict';
import { ChildProcess, fork } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { BlockmirrorError } from '../../src/errors';
import { Journal } from '../../src/storage/journal';
import { Region } from '../../src/storage/region';
import { Volume } from '../../src/storage/volume';

let nameCounter = 0;
const runTag = `${process.pid}-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e6).toString(36)}`;

/** A shared-memory name no other test or run uses. */
export function uniqueName(tag: string): string {
  nameCounter += 1;
  return `bmtest-${tag}-${runTag}-${nameCounter}`;
}

/** Names and paths to remove after a test, whatever happened in it. */
export class Cleanup {
  #volumes = new Set<string>();
  #journals = new Set<string>();
  #regions = new Set<string>();
  #paths = new Set<string>();
  #closers: (() => Promise<void> | void)[] = [];

  volumeName(tag: string): string {
    const name = uniqueName(tag);
    this.#volumes.add(name);
    return name;
  }

  journalName(tag: string): string {
    const name = uniqueName(tag);
    this.#journals.add(name);
    return name;
  }

  regionName(tag: string): string {
    const name = uniqueName(tag);
    this.#regions.add(name);
    return name;
  }

  filePath(tag: string): string {
    const file = path.join(temporaryDirectory(), `${uniqueName(tag)}.img`);
    this.#paths.add(file);
    return file;
  }

  /** Closes `closable` at cleanup (a no-op when the test closed it already). */
  close<T extends { close(): Promise<void> | void }>(closable: T): T {
    this.#closers.push(() => closable.close());
    return closable;
  }

  async run(): Promise<void> {
    for (const close of this.#closers.reverse()) await close();
    this.#closers = [];
    for (const name of this.#volumes) Volume.unlink({ name });
    for (const name of this.#journals) Journal.unlink({ name });
    for (const name of this.#regions) Region.unlink('shared', name);
    for (const file of this.#paths) fs.rmSync(file, { force: true });
    this.#volumes.clear();
    this.#journals.clear();
    this.#regions.clear();
    this.#paths.clear();
  }
}

let directory: string | undefined;

export function temporaryDirectory(): string {
  if (directory === undefined) {
    directory = fs.mkdtempSync(path.join(os.tmpdir(), 'blockmirror-test-'));
    process.once('exit', () => fs.rmSync(directory as string, { recursive: true, force: true }));
  }
  return directory;
}

type ErrorClass = typeof TypeError | typeof RangeError | typeof BlockmirrorError;

/** Asserts that fn throws an instance of `kind` whose message matches, and (BlockmirrorError) whose code is `code`. */
export function throwsWith(fn: () => unknown, kind: ErrorClass, pattern: RegExp | string, code?: string): void {
  let thrown: unknown;
  try {
    fn();
  } catch (error) {
    thrown = error;
  }
  assertError(thrown, kind, pattern, code);
}

export async function rejectsWith(promise: Promise<unknown>, kind: ErrorClass, pattern: RegExp | string, code?: string): Promise<void> {
  let thrown: unknown;
  try {
    await promise;
  } catch (error) {
    thrown = error;
  }
  assertError(thrown, kind, pattern, code);
}

function assertError(thrown: unknown, kind: ErrorClass, pattern: RegExp | string, code?: string): void {
  assert.ok(thrown !== undefined, `expected a ${kind.name}, nothing was thrown`);
  assert.ok(thrown instanceof kind, `expected a ${kind.name}, got ${String(thrown)}`);
  // A subclass must not pass for its base: TypeError and RangeError are both Errors.
  assert.equal((thrown as Error).constructor, kind, `expected exactly ${kind.name}, got ${(thrown as Error).constructor.name}: ${String(thrown)}`);
  const message = (thrown as Error).message;
  if (typeof pattern === 'string') assert.ok(message.includes(pattern), `message ${JSON.stringify(message)} lacks ${JSON.stringify(pattern)}`);
  else assert.match(message, pattern);
  if (code !== undefined) assert.equal((thrown as BlockmirrorError).code, code);
}

/** Asserts a BlockmirrorError with `code`. */
export function throwsCode(fn: () => unknown, code: string): void {
  throwsWith(fn, BlockmirrorError, /./, code);
}

/** The lines of /proc/self/maps that mention `text` (mappings of this process, workers included). */
export function mappingsOf(text: string): string[] {
  return fs
    .readFileSync('/proc/self/maps', 'utf8')
    .split('\n')
    .filter((line) => line.includes(text));
}

/** A compiled child script under dist/test/.../children. */
export function childScript(fromDirectory: string, name: string): string {
  return path.join(fromDirectory, 'children', `${name}.js`);
}

/** Forks a child with an IPC channel. */
export function forkChild(script: string, args: string[] = [], execArgv: string[] = []): ChildProcess {
  return fork(script, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv });
}

/** The next message from a child that satisfies `accept` (rejects if the child exits first). */
export function nextMessage<T>(child: ChildProcess, accept: (message: T) => boolean = () => true): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onMessage = (message: T): void => {
      if (!accept(message)) return;
      cleanup();
      resolve(message);
    };
    const onExit = (code: number | null, signal: string | null): void => {
      cleanup();
      reject(new Error(`child exited (code ${code}, signal ${signal}) before the expected message`));
    };
    const cleanup = (): void => {
      child.off('message', onMessage);
      child.off('exit', onExit);
    };
    child.on('message', onMessage);
    child.on('exit', onExit);
  });
}

/** Resolves with the exit code and signal of a child. */
export function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  }
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

/** A deterministic byte pattern: the byte at absolute offset o of pattern `seed`. */
export function patternByte(seed: number, byteOffset: number): number {
  let x = Math.imul((byteOffset + 1) | 0, 0x9e3779b1) ^ Math.imul(seed | 0, 0x85ebca6b) ^ Math.floor(byteOffset / 2 ** 32);
  x ^= x >>> 15;
  x = Math.imul(x, 0x2c1b3c6d);
  x ^= x >>> 12;
  return x & 0xff;
}

export function pattern(seed: number, byteOffset: number, byteLength: number): Buffer {
  const bytes = Buffer.alloc(byteLength);
  for (let i = 0; i < byteLength; i++) bytes[i] = patternByte(seed, byteOffset + i);
  return bytes;
}

/** Values that are not a non-negative safe integer, with the error each must raise. */
export const BAD_INDEXES: readonly (readonly [unknown, ErrorClass])[] = [
  ['1', TypeError],
  [undefined, TypeError],
  [null, TypeError],
  [1n, TypeError],
  [{}, TypeError],
  [true, TypeError],
  [NaN, RangeError],
  [-1, RangeError],
  [0.5, RangeError],
  [Infinity, RangeError],
  [2 ** 53, RangeError],
  [2 ** 64, RangeError],
];

/** Values that are not a Uint8Array. */
export const BAD_BYTES: readonly unknown[] = [
  'bytes',
  [1, 2, 3],
  new Uint16Array(4),
  new Int8Array(4),
  new ArrayBuffer(4),
  new DataView(new ArrayBuffer(4)),
  undefined,
  null,
  {},
  4,
];

/** Calls `call` with every bad index and checks the error class each time. */
export function rejectsBadIndexes(call: (value: unknown) => unknown, what: string): void {
  for (const [value, kind] of BAD_INDEXES) {
    let thrown: unknown;
    try {
      call(value);
    } catch (error) {
      thrown = error;
    }
    assert.ok(thrown instanceof kind && (thrown as Error).constructor === kind, `${what} with ${String(value)}: expected ${kind.name}, got ${String(thrown)}`);
  }
}

/** Calls `call` with every bad byte array and checks it is a TypeError. */
export function rejectsBadBytes(call: (value: unknown) => unknown, what: string): void {
  for (const value of BAD_BYTES) {
    let thrown: unknown;
    try {
      call(value);
    } catch (error) {
      thrown = error;
    }
    assert.ok(thrown instanceof TypeError, `${what} with ${Object.prototype.toString.call(value)}: expected TypeError, got ${String(thrown)}`);
  }
}

/** Receivers that are not the native class under test. */
export function wrongReceivers(other: object): unknown[] {
  return [undefined, null, 0, 'x', {}, [], Object.create(null), () => 1, new Uint8Array(8), other];
}

/** Every own function property of a prototype except the constructor. */
export function methodNames(prototype: object): string[] {
  return Object.getOwnPropertyNames(prototype).filter(
    (name) => name !== 'constructor' && typeof Object.getOwnPropertyDescriptor(prototype, name)?.value === 'function',
  );
}
