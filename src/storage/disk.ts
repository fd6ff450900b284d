// Notes on the design
// -------------------
// Disk is the TypeScript face of bm::Disk (native/core/disk.hpp): an emulated physical disk on a
// region of its own, with a capacity, a sector size, a status, an error counter and fault
// injection. It checks every argument before it calls in; the addon checks again.
//
// Backings as for volumes: 'memory' (private to this process), 'shared' (POSIX shared memory
// blockmirror.disk.<name>: outlives the process, so a restarted controller finds the data, the
// status and the fault rules as they were) and 'file'. Because fault rules and status live in the
// region, a fault set through one process is seen by every process that maps the disk.
//
// Faults are rules (at most Disk.MAX_FAULTS): operations ('read', 'write' or both), a byte range,
// an errno (EIO by default; 0 for a latency-only rule), a rate (probability 0..1 drawn from the
// disk's seeded generator), "after N" (the first N matching I/Os pass) and a latency (ms). The
// error counter counts every failed I/O; at errorThreshold (0: never) a normal disk turns
// 'suspect'. fail() fails every I/O with EIO until heal(); heal() removes every rule, clears the
// counter and returns a failed or suspect disk to 'normal' (its bytes are kept).
//
// Errors: a failed I/O of the emulated medium is BlockmirrorError ERR_DISK_IO with .errno; use
// after close is ERR_DISK_CLOSED; caller mistakes are TypeError/RangeError.

import { BlockmirrorError } from '../errors';
import { addon, NativeRegionKind, NativeRegionKindValue } from '../native';
import {
  checkBytes,
  checkIndex,
  checkIntegerIn,
  checkObject,
  checkOneOf,
  checkOptions,
  checkPowerOfTwo,
  checkSpan,
  describe,
  namedTarget,
  orDefault,
  sharedRegionName,
  checkPath,
} from './validate';

/** The five statuses of a disk. */
export type DiskStatus = 'normal' | 'suspect' | 'failed' | 'spare' | 'sparing';
export const DISK_STATUSES: readonly DiskStatus[] = Object.freeze(['normal', 'suspect', 'failed', 'spare', 'sparing']);

export type DiskBacking = 'memory' | 'shared' | 'file';

/** Options of Disk.create. */
export interface DiskCreateOptions {
  /** Size of the disk, a positive multiple of sectorSize, at most 2^50. */
  capacityBytes: number;
  /** Sector size, a power of two from 512 to 65536. @default 512 */
  sectorSize?: number;
  /** Failed I/Os after which a normal disk turns 'suspect'; 0 never. @default 0 */
  errorThreshold?: number;
  /** Seed of the fault rate generator (a run replays from it). @default 1 */
  seed?: number;
  /** Initial status. @default 'normal' */
  status?: DiskStatus;
  /** @default 'memory' */
  backing?: DiskBacking;
  /** Shared: the disk name ([A-Za-z0-9._-]; required). Memory: a label. @default undefined */
  name?: string;
  /** File: the path of the file to create. @default undefined */
  path?: string;
}

/** A fault rule as given to addFault. */
export interface DiskFaultOptions {
  /** Which I/Os it applies to. @default 'both' */
  operations?: 'read' | 'write' | 'both';
  /** errno of the failure; 0 for a latency-only rule. @default 5 (EIO) */
  errno?: number;
  /** Start of the byte range. @default 0 */
  byteOffset?: number;
  /** Length of the byte range; 0 to the end of the disk. @default 0 */
  byteLength?: number;
  /** Probability that a matching I/O fails, 0..1. @default 1 */
  rate?: number;
  /** The first afterCount matching I/Os pass. @default 0 */
  afterCount?: number;
  /** Added to every matching I/O, at most Disk.MAX_LATENCY_MS. @default 0 */
  latencyMs?: number;
}

/** A fault rule as the disk reports it. */
export interface DiskFault {
  index: number;
  operations: 'read' | 'write' | 'both';
  errno: number;
  byteOffset: number;
  byteLength: number;
  rate: number;
  afterCount: number;
  latencyMs: number;
  /** Matching I/Os so far. */
  matchedCount: number;
  /** Of them, failed by this rule. */
  firedCount: number;
}

export interface DiskStats {
  readCount: number;
  readBytes: number;
  writeCount: number;
  writeBytes: number;
  readErrorCount: number;
  writeErrorCount: number;
  errorCount: number;
  delayedCount: number;
}

/** The native surface of a disk (native/binding/disk_wrap.cpp). */
export interface NativeDisk {
  /** [diskId, capacityBytes, sectorSize, kind, region name] */
  info(): [bigint, number, number, NativeRegionKindValue, string];
  read(byteOffset: number, target: Uint8Array): void;
  write(byteOffset: number, source: Uint8Array): void;
  writeZeroes(byteOffset: number, byteLength: number): void;
  addFault(operations: number, errno: number, byteOffset: number, byteLength: number, rateMillionths: number, afterCount: number, latencyUs: number): number;
  removeFault(index: number): boolean;
  clearFaults(): void;
  /** [index, operations, errno, byteOffset, byteLength, rateMillionths, afterCount, latencyUs, matchedCount, firedCount] */
  faults(): [number, number, number, number, number, number, number, number, number, number][];
  fail(): void;
  heal(): void;
  status(): number;
  setStatus(status: number): void;
  errorThreshold(): number;
  setErrorThreshold(errorThreshold: number): void;
  stats(): Float64Array;
  resetStats(): void;
  destroy(): void;
  close(): void;
}

interface DiskAddon {
  Disk: new (kind: NativeRegionKindValue, name: string, create: boolean, capacityBytes: number, sectorSize: number, errorThreshold: number, seed: number, status: number) => NativeDisk;
  MAX_DISK_FAULTS: number;
  MAX_DISK_LATENCY_US: number;
}

const native = addon as unknown as DiskAddon;
const BACKINGS: readonly DiskBacking[] = ['memory', 'shared', 'file'];
const NATIVE_KIND = { memory: NativeRegionKind.anonymous, shared: NativeRegionKind.shared, file: NativeRegionKind.file } as const;
const SHARED_PREFIX = 'blockmirror.disk.';
const OPERATIONS = { read: 1, write: 2, both: 3 } as const;
const OPERATION_NAMES = { 1: 'read', 2: 'write', 3: 'both' } as const;

/** Internal: the native handle of an open disk (RaidGroup passes it to the addon). */
export const kDiskHandle = Symbol('blockmirror.Disk.native');

export class Disk {
  static readonly MAX_FAULTS: number = native.MAX_DISK_FAULTS;
  static readonly MAX_LATENCY_MS: number = native.MAX_DISK_LATENCY_US / 1000;
  static readonly MAX_CAPACITY_BYTES = 2 ** 50;
  static readonly DEFAULT_SECTOR_SIZE = 512;

  readonly id: bigint;
  readonly capacityBytes: number;
  readonly sectorSize: number;
  readonly backing: DiskBacking;
  /** Shared: the disk name; memory: its label; file: undefined. */
  readonly name: string | undefined;
  readonly path: string | undefined;
  #handle: NativeDisk | null;

  private constructor(handle: NativeDisk, backing: DiskBacking, name: string | undefined, path: string | undefined) {
    this.#handle = handle;
    const [id, capacityBytes, sectorSize] = handle.info();
    this.id = id;
    this.capacityBytes = capacityBytes;
    this.sectorSize = sectorSize;
    this.backing = backing;
    this.name = name;
    this.path = path;
  }

  /** Formats a new disk (ERR_REGION_EXISTS when the shared name or the file exists). */
  static create(options: DiskCreateOptions): Disk {
    checkObject(options, 'options');
    const sectorSize = orDefault(options.sectorSize, Disk.DEFAULT_SECTOR_SIZE);
    checkPowerOfTwo(sectorSize, 'options.sectorSize', 512, 65536);
    checkIntegerIn(options.capacityBytes, 'options.capacityBytes', 1, Disk.MAX_CAPACITY_BYTES);
    if (options.capacityBytes % sectorSize !== 0) {
      throw new RangeError(`options.capacityBytes (${options.capacityBytes}) must be a multiple of sectorSize (${sectorSize})`);
    }
    const errorThreshold = orDefault(options.errorThreshold, 0);
    checkIndex(errorThreshold, 'options.errorThreshold');
    const seed = orDefault(options.seed, 1);
    checkIndex(seed, 'options.seed');
    const status = orDefault(options.status, 'normal' as DiskStatus);
    checkOneOf(status, 'options.status', DISK_STATUSES);
    const backing = orDefault(options.backing, 'memory' as DiskBacking);
    checkOneOf(backing, 'options.backing', BACKINGS);
    let regionName = '';
    let name: string | undefined = options.name;
    let path: string | undefined;
    if (backing === 'shared') {
      regionName = sharedRegionName(options.name, 'options.name', SHARED_PREFIX);
    } else if (backing === 'file') {
      checkPath(options.path, 'options.path');
      regionName = options.path;
      path = options.path;
      name = undefined;
    } else if (name !== undefined && typeof name !== 'string') {
      throw new TypeError(`options.name must be a string (got ${describe(name)})`);
    }
    const handle = new native.Disk(NATIVE_KIND[backing], regionName, true, options.capacityBytes, sectorSize, errorThreshold, seed, DISK_STATUSES.indexOf(status));
    return new Disk(handle, backing, name, path);
  }

  /** Opens an existing shared ({ name }) or file ({ path }) disk. */
  static open(options: { name?: string; path?: string }): Disk {
    const target = namedTarget(options, 'options', SHARED_PREFIX);
    const handle = new native.Disk(NATIVE_KIND[target.kind], target.regionName, false, 0, 0, 0, 0, 0);
    return new Disk(handle, target.kind, target.name, target.path);
  }

  /** Removes a shared disk's region; false when it did not exist. */
  static unlink(name: string): boolean {
    return addon.unlinkRegion(NativeRegionKind.shared, sharedRegionName(name, 'name', SHARED_PREFIX));
  }

  get closed(): boolean {
    return this.#handle === null;
  }

  /** @internal */
  get [kDiskHandle](): NativeDisk {
    return this.#native();
  }

  #native(): NativeDisk {
    if (this.#handle === null) throw new BlockmirrorError('ERR_DISK_CLOSED', 'disk is closed');
    return this.#handle;
  }

  #checkSpan(byteOffset: unknown, byteLength: number, what: string): asserts byteOffset is number {
    checkIndex(byteOffset, 'byteOffset');
    checkSpan(byteOffset, byteLength, this.capacityBytes, `disk (${what})`);
  }

  /** Reads target.byteLength bytes at byteOffset; ERR_DISK_IO when the disk fails the read. */
  read(byteOffset: number, target: Uint8Array): void {
    checkBytes(target, 'target');
    this.#checkSpan(byteOffset, target.byteLength, 'read');
    this.#native().read(byteOffset, target);
  }

  write(byteOffset: number, source: Uint8Array): void {
    checkBytes(source, 'source');
    this.#checkSpan(byteOffset, source.byteLength, 'write');
    this.#native().write(byteOffset, source);
  }

  writeZeroes(byteOffset: number, byteLength: number): void {
    checkIndex(byteLength, 'byteLength');
    this.#checkSpan(byteOffset, byteLength, 'writeZeroes');
    this.#native().writeZeroes(byteOffset, byteLength);
  }

  /** Adds a fault rule and returns its index (ERR_DISK_FAULT_LIMIT when MAX_FAULTS are in use). */
  addFault(options: DiskFaultOptions = {}): number {
    checkOptions(options, 'options');
    const operations = orDefault(options.operations, 'both');
    checkOneOf(operations, 'options.operations', ['read', 'write', 'both']);
    const errno = orDefault(options.errno, 5);
    checkIntegerIn(errno, 'options.errno', 0, 4095);
    const byteOffset = orDefault(options.byteOffset, 0);
    const byteLength = orDefault(options.byteLength, 0);
    checkIndex(byteOffset, 'options.byteOffset');
    checkIndex(byteLength, 'options.byteLength');
    if (byteOffset >= this.capacityBytes || byteLength > this.capacityBytes - byteOffset) {
      throw new RangeError(`options.byteOffset/byteLength [${byteOffset}, +${byteLength}) is outside the disk (${this.capacityBytes} bytes)`);
    }
    const rate = orDefault(options.rate, 1);
    if (typeof rate !== 'number') throw new TypeError(`options.rate must be a number (got ${describe(rate)})`);
    if (!(rate >= 0 && rate <= 1)) throw new RangeError(`options.rate must be in [0, 1] (got ${rate})`);
    const afterCount = orDefault(options.afterCount, 0);
    checkIndex(afterCount, 'options.afterCount');
    const latencyMs = orDefault(options.latencyMs, 0);
    if (typeof latencyMs !== 'number') throw new TypeError(`options.latencyMs must be a number (got ${describe(latencyMs)})`);
    if (!(latencyMs >= 0 && latencyMs <= Disk.MAX_LATENCY_MS)) {
      throw new RangeError(`options.latencyMs must be in [0, ${Disk.MAX_LATENCY_MS}] (got ${latencyMs})`);
    }
    if (errno === 0 && latencyMs === 0) throw new RangeError('a fault needs an errno or a latency');
    return this.#native().addFault(OPERATIONS[operations], errno, byteOffset, byteLength, Math.round(rate * 1e6), afterCount, Math.round(latencyMs * 1000));
  }

  /** Removes one rule; false when the index holds none. */
  removeFault(index: number): boolean {
    checkIntegerIn(index, 'index', 0, Disk.MAX_FAULTS - 1);
    return this.#native().removeFault(index);
  }

  clearFaults(): void {
    this.#native().clearFaults();
  }

  faults(): DiskFault[] {
    return this.#native().faults().map(([index, operations, errno, byteOffset, byteLength, rate, afterCount, latencyUs, matchedCount, firedCount]) => ({
      index,
      operations: OPERATION_NAMES[operations as 1 | 2 | 3],
      errno,
      byteOffset,
      byteLength,
      rate: rate / 1e6,
      afterCount,
      latencyMs: latencyUs / 1000,
      matchedCount,
      firedCount,
    }));
  }

  /** Every I/O fails with EIO until heal(). */
  fail(): void {
    this.#native().fail();
  }

  /** Removes every fault rule, clears the error counter, returns a failed or suspect disk to 'normal'. */
  heal(): void {
    this.#native().heal();
  }

  get status(): DiskStatus {
    return DISK_STATUSES[this.#native().status()] as DiskStatus;
  }

  setStatus(status: DiskStatus): void {
    checkOneOf(status, 'status', DISK_STATUSES);
    this.#native().setStatus(DISK_STATUSES.indexOf(status));
  }

  get errorCount(): number {
    return this.#native().stats()[6] as number;
  }

  get errorThreshold(): number {
    return this.#native().errorThreshold();
  }

  setErrorThreshold(errorThreshold: number): void {
    checkIndex(errorThreshold, 'errorThreshold');
    this.#native().setErrorThreshold(errorThreshold);
  }

  stats(): DiskStats {
    const s = this.#native().stats();
    return {
      readCount: s[0] as number,
      readBytes: s[1] as number,
      writeCount: s[2] as number,
      writeBytes: s[3] as number,
      readErrorCount: s[4] as number,
      writeErrorCount: s[5] as number,
      errorCount: s[6] as number,
      delayedCount: s[7] as number,
    };
  }

  /** Zeroes the I/O counters (not the error counter). */
  resetStats(): void {
    this.#native().resetStats();
  }

  /** Closes and removes a shared or file disk's backing. */
  destroy(): void {
    this.#native().destroy();
    this.#handle = null;
  }

  /** Idempotent. Close the groups that use the disk first. */
  close(): void {
    if (this.#handle === null) return;
    this.#handle.close();
    this.#handle = null;
  }
}
