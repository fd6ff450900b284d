// Notes on the design
// -------------------
// A Region is a span of memory mapped from a memfd ('anonymous'), a POSIX shared-memory name
// ('shared', visible to every process by name and surviving the death of its writer until
// unlinked) or a regular file ('file'). It is sparse: untouched pages cost nothing, trim() punches
// holes. This class is the TypeScript face of bm::Region (native/core/region.hpp).
//
// Ownership: a Region object owns one mapping. close() is the real release: it waits for flushes
// in flight, then unmaps; later calls throw ERR_REGION_CLOSED; a second close() is a no-op. A
// Region dropped without close() is unmapped by the native finalizer, and every region still open
// when a worker thread or the process environment ends is closed by the addon's cleanup hook.
//
// Errors: caller mistakes are TypeError / RangeError (checked here, then natively); operating
// errors (exists, not found, map failure, closed) are BlockmirrorError with ERR_REGION_* codes.

import { existsSync } from 'node:fs';

import { addon, NativeRegion, NativeRegionKind } from '../native';
import {
  checkBytes,
  checkIndex,
  checkOneOf,
  checkOptions,
  checkPath,
  checkSharedName,
  checkSpan,
  checkString,
  closedError,
  orDefault,
} from './validate';

export type RegionKind = 'anonymous' | 'shared' | 'file';

/** A run of bytes that is either backed by pages (allocated) or a hole that reads as zeros. */
export interface RegionExtent {
  byteOffset: number;
  byteLength: number;
  allocated: boolean;
}

/** Options of Region.create. */
export interface RegionCreateOptions {
  /** Backing of the region. @default 'anonymous' */
  kind?: RegionKind;
  /** Shared: the object name ([A-Za-z0-9._-], 1..200 characters). Anonymous: a label. @default undefined */
  name?: string;
  /** File: the path of the file to create. @default undefined */
  path?: string;
  /** Size; rounded up to the page size. */
  byteLength: number;
}

/** Options of Region.open. */
export interface RegionOpenOptions {
  /** Backing of an existing region. */
  kind: 'shared' | 'file';
  /** Shared: the object name. @default undefined */
  name?: string;
  /** File: the path. @default undefined */
  path?: string;
}

const REGION_KINDS: readonly RegionKind[] = ['anonymous', 'shared', 'file'];
const KIND_NAMES: readonly RegionKind[] = ['anonymous', 'shared', 'file'];

/** Where shm_open(3) keeps shared objects on Linux (what Region.exists looks at). */
const SHM_DIRECTORY = '/dev/shm';

/** Largest region the core maps (64 TiB). */
const MAX_REGION_BYTES = 2 ** 46;

/** Resolves kind + name/path to the native name argument. */
function nativeName(kind: RegionKind, name: unknown, path: unknown, where: string): string {
  if (kind === 'shared') {
    checkSharedName(name, `${where}.name`);
    return name;
  }
  if (kind === 'file') {
    checkPath(path, `${where}.path`);
    return path;
  }
  if (name === undefined) return 'blockmirror';
  checkString(name, `${where}.name`);
  return name;
}

export class Region {
  /** Backing kind. */
  readonly kind: RegionKind;
  /** Shared: the object name; file: the path; anonymous: the label. */
  readonly name: string;
  /** Size of the region (a whole number of pages). */
  readonly byteLength: number;
  /** True when this call created the backing. */
  readonly created: boolean;

  #handle: NativeRegion | null;
  #pending = new Set<Promise<void>>();
  #closing: Promise<void> | null = null;

  private constructor(handle: NativeRegion) {
    this.#handle = handle;
    const [kind, name, byteLength, created] = handle.info();
    this.kind = KIND_NAMES[kind] as RegionKind;
    this.name = name;
    this.byteLength = byteLength;
    this.created = created;
  }

  /** Creates a new region (ERR_REGION_EXISTS when a shared name or file already exists). */
  static create(options: RegionCreateOptions): Region {
    checkOptions(options, 'options');
    if (options === undefined) throw new TypeError('options must be an object (got undefined)');
    const kind = orDefault(options.kind, 'anonymous' as RegionKind);
    checkOneOf(kind, 'options.kind', REGION_KINDS);
    checkIndex(options.byteLength, 'options.byteLength');
    if (options.byteLength === 0 || options.byteLength > MAX_REGION_BYTES) {
      throw new RangeError(`options.byteLength must be in [1, ${MAX_REGION_BYTES}] (got ${options.byteLength})`);
    }
    const name = nativeName(kind, options.name, options.path, 'options');
    return new Region(new addon.Region(NativeRegionKind[kind], name, options.byteLength, true, false));
  }

  /** Maps an existing shared or file region (ERR_REGION_NOT_FOUND when absent). */
  static open(options: RegionOpenOptions): Region {
    checkOptions(options, 'options');
    if (options === undefined) throw new TypeError('options must be an object (got undefined)');
    checkOneOf(options.kind, 'options.kind', ['shared', 'file'] as const);
    const name = nativeName(options.kind, options.name, options.path, 'options');
    return new Region(new addon.Region(NativeRegionKind[options.kind], name, 0, false, true));
  }

  /**
   * Whether a shared object or a file exists, without opening it: "not found" is a value here,
   * not an error (callers that probe, like a controller reopening what a crash left, ask this
   * instead of catching ERR_REGION_NOT_FOUND, whose stack is the costly part of a miss). A
   * shared name is looked up where shm_open keeps it (/dev/shm, as on every Linux).
   */
  static exists(kind: 'shared' | 'file', nameOrPath: string): boolean {
    checkOneOf(kind, 'kind', ['shared', 'file'] as const);
    if (kind === 'shared') {
      checkSharedName(nameOrPath, 'name');
      return existsSync(`${SHM_DIRECTORY}/${nameOrPath}`);
    }
    checkPath(nameOrPath, 'path');
    return existsSync(nameOrPath);
  }

  /** Region.open, or null when the region does not exist (other failures still throw). */
  static tryOpen(options: RegionOpenOptions): Region | null {
    checkOptions(options, 'options');
    if (options === undefined) throw new TypeError('options must be an object (got undefined)');
    checkOneOf(options.kind, 'options.kind', ['shared', 'file'] as const);
    const name = nativeName(options.kind, options.name, options.path, 'options');
    if (!Region.exists(options.kind, name)) return null;
    try {
      return new Region(new addon.Region(NativeRegionKind[options.kind], name, 0, false, true));
    } catch (error) {
      // Removed between the look and the open.
      if ((error as { code?: unknown }).code === 'ERR_REGION_NOT_FOUND') return null;
      throw error;
    }
  }

  /** Removes a shared object or a file; false when it did not exist. */
  static unlink(kind: 'shared' | 'file', nameOrPath: string): boolean {
    checkOneOf(kind, 'kind', ['shared', 'file'] as const);
    if (kind === 'shared') checkSharedName(nameOrPath, 'name');
    else checkPath(nameOrPath, 'path');
    return addon.unlinkRegion(NativeRegionKind[kind], nameOrPath);
  }

  /** True once close() was called. */
  get closed(): boolean {
    return this.#handle === null;
  }

  #open(): NativeRegion {
    const handle = this.#handle;
    if (handle === null) throw closedError('region');
    return handle;
  }

  /** Copies target.byteLength bytes at byteOffset into target. */
  read(byteOffset: number, target: Uint8Array): void {
    const handle = this.#open();
    checkIndex(byteOffset, 'byteOffset');
    checkBytes(target, 'target');
    checkSpan(byteOffset, target.byteLength, this.byteLength, 'region');
    handle.read(byteOffset, target);
  }

  /** Copies source into the region at byteOffset. */
  write(byteOffset: number, source: Uint8Array): void {
    const handle = this.#open();
    checkIndex(byteOffset, 'byteOffset');
    checkBytes(source, 'source');
    checkSpan(byteOffset, source.byteLength, this.byteLength, 'region');
    handle.write(byteOffset, source);
  }

  /** Zeroes the range and gives whole pages inside it back to the system. */
  trim(byteOffset: number, byteLength: number): void {
    const handle = this.#open();
    checkIndex(byteOffset, 'byteOffset');
    checkIndex(byteLength, 'byteLength');
    checkSpan(byteOffset, byteLength, this.byteLength, 'region');
    handle.trim(byteOffset, byteLength);
  }

  /**
   * Data and hole extents covering exactly [byteOffset, byteOffset + byteLength), merged, in order.
   * @param byteOffset @default 0
   * @param byteLength @default the rest of the region
   */
  allocationMap(byteOffset = 0, byteLength?: number): RegionExtent[] {
    const handle = this.#open();
    checkIndex(byteOffset, 'byteOffset');
    if (byteOffset > this.byteLength) {
      throw new RangeError(`byteOffset (${byteOffset}) is outside the region (${this.byteLength} bytes)`);
    }
    const length = byteLength === undefined ? this.byteLength - byteOffset : byteLength;
    checkIndex(length, 'byteLength');
    checkSpan(byteOffset, length, this.byteLength, 'region');
    return unpackExtents(handle.allocationMap(byteOffset, length));
  }

  /** Bytes of backing actually allocated. */
  allocatedBytes(): number {
    return this.#open().allocatedBytes();
  }

  /** File regions: msync + fsync, off the event loop. Memory regions: a fence. */
  flush(): Promise<void> {
    const promise = this.#open().flush();
    this.#pending.add(promise);
    const forget = (): void => {
      this.#pending.delete(promise);
    };
    promise.then(forget, forget);
    return promise;
  }

  /** Waits for flushes in flight, then unmaps. Idempotent. */
  close(): Promise<void> {
    if (this.#closing !== null) return this.#closing;
    const handle = this.#handle;
    this.#handle = null;
    this.#closing = (async () => {
      await Promise.allSettled([...this.#pending]);
      handle?.close();
    })();
    return this.#closing;
  }
}

/** Unpacks the addon's [byteOffset, byteLength, allocated] triples. */
export function unpackExtents(packed: Float64Array): RegionExtent[] {
  const extents: RegionExtent[] = [];
  for (let i = 0; i + 2 < packed.length; i += 3) {
    extents.push({ byteOffset: packed[i] as number, byteLength: packed[i + 1] as number, allocated: packed[i + 2] === 1 });
  }
  return extents;
}
