// Notes on the design
// -------------------
// A Volume is a logical block device on one region: the TypeScript face of bm::Volume
// (native/core/volume.hpp). The region holds a superblock, 16 bitmap slots and the data, so a
// volume backed by a shared-memory name ('shared': the region blockmirror.vol.<name>) or a file is
// seen byte for byte, bitmaps included, by every process and worker that opens it, and survives
// the death of any of them. 'memory' volumes use an anonymous region private to this object.
//
// The write path (design section 4) is one native call per write or per batch: validate, copy
// into the store, mark every recording bitmap, append to the attached journal. This class checks
// every argument first (TypeError / RangeError, with the same rules the core applies again), and
// keeps the call lean: write() passes a number and a Uint8Array; writev() packs the offsets into a
// Float64Array allocated once per volume and passes the buffers as the trailing arguments of one
// native call (an argument array reused from call to call), so the native side does no allocation,
// no property lookups by name and no per-element napi_get_element. A batch is validated as a whole
// before any byte changes; at most MAX_WRITEV_COUNT (1024) writes per call.
//
// Return values of the write path are journal sequences: > 0 the record's sequence, 0 when no
// journal is attached, Volume.JOURNAL_FULL (-1) when the journal had no room (the data is stored
// and the bitmaps are marked; the caller falls back to its bitmap).
//
// Ownership: close() waits for flushes in flight, closes the bitmap views this object handed out,
// detaches the journal and unmaps; later calls throw ERR_VOLUME_CLOSED; a second close() is a
// no-op. The journal is attached to this object only (not to other processes that opened the same
// volume) and is kept alive by it while attached.

import { addon, NativeRegionKind, NativeVolume } from '../native';
import { Bitmap, kFromNative } from './bitmap';
import { Journal, JournalAttachment, kAttached, kDetachJournal, kNativeHandle as kJournalHandle } from './journal';
import { RegionExtent, unpackExtents } from './region';
import {
  checkBoolean,
  checkIndex,
  checkIntegerIn,
  checkObject,
  checkOneOf,
  checkOptions,
  checkPath,
  checkPowerOfTwo,
  checkSharedName,
  checkString,
  closedError,
  describe,
  MAX_REGION_NAME_LENGTH,
  namedTarget,
  orDefault,
  sharedRegionName,
} from './validate';

export type VolumeBacking = 'memory' | 'shared' | 'file';

/** Options of Volume.create. */
export interface VolumeCreateOptions {
  /** Size of the volume, a multiple of blockSize, at most Volume.MAX_CAPACITY_BYTES. */
  capacityBytes: number;
  /** Block size, a power of two from 512 to 65536. @default 4096 */
  blockSize?: number;
  /** Reject I/O not aligned to blockSize (RangeError), as a device that refuses it. @default false */
  strict?: boolean;
  /** Where the bytes live. @default 'memory' */
  backing?: VolumeBacking;
  /** Shared: the volume name ([A-Za-z0-9._-], 1..184 characters; required). Memory: a label. @default undefined */
  name?: string;
  /** File: the path of the file to create (required for 'file'). @default undefined */
  path?: string;
}

/** One write of a batch. */
export interface WriteOp {
  byteOffset: number;
  data: Uint8Array;
}

/** Options of Volume.writeZeroes. */
export interface WriteZeroesOptions {
  /** Allow the store to release whole pages instead of writing zeros. @default false */
  mayPunchHole?: boolean;
}

/** Options of Volume.createBitmap. */
export interface VolumeBitmapOptions {
  /** Bytes per bit, a power of two from 4096 to 2^30. @default 65536 */
  granularityBytes?: number;
  /** Mark the bitmap on every write from now on. @default true */
  recording?: boolean;
}

export interface VolumeBitmapInfo {
  name: string;
  granularityBytes: number;
  bitCount: number;
  recording: boolean;
}

/** The native counters of a volume (this process's object only). */
export interface VolumeStats {
  readCount: number;
  readBytes: number;
  writeCount: number;
  writeBytes: number;
  zeroCount: number;
  zeroBytes: number;
  trimCount: number;
  trimBytes: number;
  flushCount: number;
  batchCount: number;
  journalAppendCount: number;
  journalFullCount: number;
  bitmapMarkCount: number;
}

/** The fields of VolumeStats in the native core's order (stats() and the counters another thread adds). */
export const VOLUME_STATS_KEYS: readonly (keyof VolumeStats)[] = Object.freeze([
  'readCount', 'readBytes', 'writeCount', 'writeBytes', 'zeroCount', 'zeroBytes', 'trimCount', 'trimBytes',
  'flushCount', 'batchCount', 'journalAppendCount', 'journalFullCount', 'bitmapMarkCount',
] as const);

const BACKINGS: readonly VolumeBacking[] = ['memory', 'shared', 'file'];
const NATIVE_KIND = { memory: NativeRegionKind.anonymous, shared: NativeRegionKind.shared, file: NativeRegionKind.file } as const;
const SHARED_PREFIX = 'blockmirror.vol.';
/** Where a shared volume's snapshot store lives (`<prefix><volume name>`), and a file volume's (`<path><suffix>`): src/storage/snapshot.ts. */
export const SNAPSHOT_STORE_SHARED_PREFIX = 'blockmirror.snap.';
export const SNAPSHOT_STORE_FILE_SUFFIX = '.snapshots';
const BITMAP_NAME = /^[A-Za-z0-9._:-]{1,47}$/;
const EMPTY = new Uint8Array(0);

/** Internal: the native handle of an open volume (tests reach past the TypeScript checks with it). */
export const kNativeHandle = Symbol('blockmirror.Volume.native');
/** Window of the data area one beginDirectWrite ArrayBuffer covers (the binding's kMaxDirectAreaBytes). */
const DIRECT_AREA_BYTES = 2 ** 30;

/** Region name of a shared volume. */
export function sharedVolumeRegionName(name: string): string {
  return SHARED_PREFIX + name;
}

function offsetName(batchIndex: number): string {
  return batchIndex < 0 ? 'byteOffset' : `writes[${batchIndex}].byteOffset`;
}

function requestName(batchIndex: number): string {
  return batchIndex < 0 ? '' : `writes[${batchIndex}]: `;
}

function checkBitmapName(name: unknown): asserts name is string {
  checkString(name, 'name');
  if (!BITMAP_NAME.test(name)) {
    throw new RangeError(`name must be 1..47 characters of [A-Za-z0-9._:-] (got ${describe(name)})`);
  }
}

export class Volume implements JournalAttachment {
  /** The sequence a write returns when the attached journal was full. */
  static readonly JOURNAL_FULL = -1;
  static readonly DEFAULT_BLOCK_SIZE = 4096;
  static readonly MIN_BLOCK_SIZE = 512;
  static readonly MAX_BLOCK_SIZE = 65536;
  /** Largest volume: 32 TiB (the core maps at most 64 TiB per region). */
  static readonly MAX_CAPACITY_BYTES = 2 ** 45;
  /** Most writes in one writev call. */
  static readonly MAX_WRITEV_COUNT: number = addon.MAX_WRITEV_COUNT;
  static readonly DEFAULT_BITMAP_GRANULARITY_BYTES = 65536;
  static readonly MIN_BITMAP_GRANULARITY_BYTES = 4096;
  static readonly MAX_BITMAP_GRANULARITY_BYTES = 2 ** 30;

  /** Random 64-bit id chosen when the volume was formatted. */
  readonly id: bigint;
  readonly backing: VolumeBacking;
  /** Shared: the volume name; memory: its label; file: undefined. */
  readonly name: string | undefined;
  /** File: the path; otherwise undefined. */
  readonly path: string | undefined;
  readonly capacityBytes: number;
  readonly blockSize: number;
  readonly strict: boolean;

  #handle: NativeVolume | null;
  #writevArguments: unknown[] | null = null;
  /** 1 GiB windows of the data area for beginDirectWrite (made when first asked; null: unavailable). */
  #directAreas: (ArrayBuffer | null)[] | null = null;
  #bitmaps = new Map<Bitmap, string>();
  #journal: Journal | null = null;
  /**
   * Counters of other Volume objects over this region in other threads (NBD workers' arrays, NBD
   * lanes' functions that read them when asked), in VOLUME_STATS_KEYS order.
   */
  #threadCounters: (Float64Array | (() => ArrayLike<number>))[] = [];
  #pending = new Set<Promise<void>>();
  #closing: Promise<void> | null = null;

  private constructor(handle: NativeVolume, backing: VolumeBacking, name: string | undefined, path: string | undefined) {
    this.#handle = handle;
    const [id, capacityBytes, blockSize, strict] = handle.info();
    this.id = id;
    this.capacityBytes = capacityBytes;
    this.blockSize = blockSize;
    this.strict = strict;
    this.backing = backing;
    this.name = name;
    this.path = path;
  }

  /** Formats a new volume (ERR_REGION_EXISTS when the shared name or the file exists). */
  static create(options: VolumeCreateOptions): Volume {
    checkObject(options, 'options');
    const blockSize = orDefault(options.blockSize, Volume.DEFAULT_BLOCK_SIZE);
    checkPowerOfTwo(blockSize, 'options.blockSize', Volume.MIN_BLOCK_SIZE, Volume.MAX_BLOCK_SIZE);
    checkIntegerIn(options.capacityBytes, 'options.capacityBytes', 1, Volume.MAX_CAPACITY_BYTES);
    if (options.capacityBytes % blockSize !== 0) {
      throw new RangeError(`options.capacityBytes (${options.capacityBytes}) must be a multiple of blockSize (${blockSize})`);
    }
    const strict = orDefault(options.strict, false);
    checkBoolean(strict, 'options.strict');
    const backing = orDefault(options.backing, 'memory' as VolumeBacking);
    checkOneOf(backing, 'options.backing', BACKINGS);
    let regionName: string;
    let name: string | undefined;
    let path: string | undefined;
    if (backing === 'shared') {
      if (options.name === undefined) throw new TypeError("options.name is required for backing 'shared'");
      regionName = sharedRegionName(options.name, 'options.name', SHARED_PREFIX);
      name = options.name;
    } else if (backing === 'file') {
      if (options.path === undefined) throw new TypeError("options.path is required for backing 'file'");
      checkPath(options.path, 'options.path');
      path = options.path;
      regionName = path;
    } else {
      if (options.name !== undefined) checkSharedName(options.name, 'options.name', MAX_REGION_NAME_LENGTH);
      name = options.name;
      regionName = name ?? 'blockmirror.vol';
    }
    const handle = new addon.Volume(NATIVE_KIND[backing], regionName, true, options.capacityBytes, blockSize, strict);
    return new Volume(handle, backing, name, path);
  }

  /** Opens an existing shared ({ name }) or file ({ path }) volume (ERR_REGION_NOT_FOUND when absent). */
  static open(options: { name: string } | { path: string }): Volume {
    const { kind, regionName, name, path } = namedTarget(options, 'options', SHARED_PREFIX);
    const handle = new addon.Volume(NATIVE_KIND[kind], regionName, false, 0, 0, false);
    return new Volume(handle, kind, name, path);
  }

  /** Removes a shared ({ name }) or file ({ path }) volume and its snapshot store; false when the volume did not exist. */
  static unlink(options: { name: string } | { path: string }): boolean {
    const { kind, regionName, name, path } = namedTarget(options, 'options', SHARED_PREFIX);
    const unlinked = addon.unlinkRegion(NATIVE_KIND[kind], regionName);
    // Its snapshot store goes with it: it belongs to this volume's id, and a new volume of the
    // same name would find a store that is not its own. (A shared name too long for a store's
    // region name has none: snapshot.ts refuses to create it.)
    if (kind === 'file') {
      addon.unlinkRegion(NATIVE_KIND.file, `${path as string}${SNAPSHOT_STORE_FILE_SUFFIX}`);
    } else if (Buffer.byteLength(`${SNAPSHOT_STORE_SHARED_PREFIX}${name as string}`) <= MAX_REGION_NAME_LENGTH) {
      addon.unlinkRegion(NATIVE_KIND.shared, `${SNAPSHOT_STORE_SHARED_PREFIX}${name as string}`);
    }
    return unlinked;
  }

  /** True once close() was called. */
  get closed(): boolean {
    return this.#handle === null;
  }

  #open(): NativeVolume {
    const handle = this.#handle;
    if (handle === null) throw closedError('volume');
    return handle;
  }

  /** @internal */
  get [kNativeHandle](): NativeVolume {
    return this.#open();
  }

  /**
   * Checks [byteOffset, +byteLength) against capacity and, on a strict volume, alignment.
   * `batchIndex` names the write of a batch in messages (-1: a single request); messages are only
   * built when a check fails, so the hot path does no string work.
   */
  #checkSpan(byteOffset: unknown, byteLength: number, batchIndex: number): asserts byteOffset is number {
    if (typeof byteOffset !== 'number') {
      throw new TypeError(`${offsetName(batchIndex)} must be a number (got ${describe(byteOffset)})`);
    }
    if (!Number.isSafeInteger(byteOffset) || byteOffset < 0) {
      throw new RangeError(`${offsetName(batchIndex)} must be a non-negative safe integer (got ${describe(byteOffset)})`);
    }
    const capacityBytes = this.capacityBytes;
    if (byteOffset > capacityBytes || byteLength > capacityBytes - byteOffset) {
      throw new RangeError(`${requestName(batchIndex)}[${byteOffset}, +${byteLength}) is outside the volume (capacityBytes ${capacityBytes})`);
    }
    if (this.strict) {
      const blockSize = this.blockSize;
      if (byteOffset % blockSize !== 0 || byteLength % blockSize !== 0) {
        throw new RangeError(
          `${requestName(batchIndex)}[${byteOffset}, +${byteLength}) is not aligned to blockSize ${blockSize} (strict volume)`,
        );
      }
    }
  }

  /** Fills target with target.byteLength bytes from byteOffset. */
  read(byteOffset: number, target: Uint8Array): void {
    const handle = this.#open();
    if (!(target instanceof Uint8Array)) throw new TypeError(`target must be a Uint8Array (got ${describe(target)})`);
    this.#checkSpan(byteOffset, target.byteLength, -1);
    handle.read(byteOffset, target);
  }

  /** Writes source at byteOffset; returns the journal sequence (> 0), 0 without a journal, or JOURNAL_FULL. */
  write(byteOffset: number, source: Uint8Array): number {
    const handle = this.#open();
    if (!(source instanceof Uint8Array)) throw new TypeError(`source must be a Uint8Array (got ${describe(source)})`);
    this.#checkSpan(byteOffset, source.byteLength, -1);
    return handle.write(byteOffset, source);
  }

  /**
   * Writes a batch in one native call, in order. Every write is validated before any byte
   * changes. sequencesOut (length >= writes.length) receives each write's sequence. Returns how
   * many writes met a full journal.
   */
  writev(writes: readonly WriteOp[], sequencesOut?: Float64Array): number {
    const handle = this.#open();
    if (!Array.isArray(writes)) throw new TypeError(`writes must be an array (got ${describe(writes)})`);
    const count = writes.length;
    if (count > Volume.MAX_WRITEV_COUNT) {
      throw new RangeError(`writes must hold at most ${Volume.MAX_WRITEV_COUNT} writes (got ${count})`);
    }
    if (sequencesOut !== undefined) {
      if (!(sequencesOut instanceof Float64Array)) {
        throw new TypeError(`sequencesOut must be a Float64Array (got ${describe(sequencesOut)})`);
      }
      if (sequencesOut.length < count) {
        throw new RangeError(`sequencesOut must have at least ${count} elements (got ${sequencesOut.length})`);
      }
    }
    if (count === 0) return 0;
    // Arguments of the native call, reused: [byteOffsets, count, sequencesOut, ...buffers].
    let args = this.#writevArguments;
    if (args === null) {
      args = [new Float64Array(Volume.MAX_WRITEV_COUNT), 0, undefined];
      this.#writevArguments = args;
    }
    const offsets = args[0] as Float64Array;
    try {
      for (let i = 0; i < count; i++) {
        const write = writes[i];
        if (typeof write !== 'object' || write === null) throw new TypeError(`writes[${i}] must be an object (got ${describe(write)})`);
        const data = write.data;
        if (!(data instanceof Uint8Array)) throw new TypeError(`writes[${i}].data must be a Uint8Array (got ${describe(data)})`);
        this.#checkSpan(write.byteOffset, data.byteLength, i);
        offsets[i] = write.byteOffset;
        args[3 + i] = data;
      }
      args[1] = count;
      args[2] = sequencesOut;
      if (args.length !== 3 + count) args.length = 3 + count;
      return Reflect.apply(handle.writev, handle, args) as number;
    } finally {
      // Do not keep the caller's buffers alive until the next batch.
      args[2] = undefined;
      args.fill(EMPTY, 3, 3 + count);
    }
  }

  /**
   * A write whose bytes the caller lands in the store itself (the NBD server receives a payload
   * straight into it: docs/nbd-receive.md). Validates the range as write() does, runs the
   * copy-on-write seam and marks every recording bitmap, then returns the store's memory at the
   * range, or null when the write must take write() instead (an interceptor that may divert it).
   * Every beginDirectWrite must be followed by commitDirectWrite of the same range, also when the
   * caller could not land every byte: the store holds what landed.
   */
  beginDirectWrite(byteOffset: number, byteLength: number): Buffer | null {
    const handle = this.#open();
    checkIndex(byteLength, 'byteLength');
    this.#checkSpan(byteOffset, byteLength, -1);
    // One ArrayBuffer per 1 GiB window of the data area for the volume's life (each keeps the
    // mapping alive); a write across two windows takes write().
    const index = Math.floor(byteOffset / DIRECT_AREA_BYTES);
    const start = index * DIRECT_AREA_BYTES;
    if (byteLength === 0 || byteOffset + byteLength > start + DIRECT_AREA_BYTES) return null;
    const areas = (this.#directAreas ??= []);
    let area = areas[index];
    if (area === undefined) area = areas[index] = handle.directArea(start, Math.min(DIRECT_AREA_BYTES, this.capacityBytes - start));
    if (area === null) return null;
    if (!handle.beginDirectWrite(byteOffset, byteLength)) return null;
    return Buffer.from(area, byteOffset - start, byteLength);
  }

  /** Completes a beginDirectWrite: bitmaps, journal record; returns the sequence as write() does. */
  commitDirectWrite(byteOffset: number, byteLength: number): number {
    const handle = this.#open();
    checkIndex(byteLength, 'byteLength');
    this.#checkSpan(byteOffset, byteLength, -1);
    return handle.commitDirectWrite(byteOffset, byteLength);
  }

  /** Zeroes [byteOffset, +byteLength); returns the journal sequence as write() does. */
  writeZeroes(byteOffset: number, byteLength: number, options?: WriteZeroesOptions): number {
    const handle = this.#open();
    checkIndex(byteLength, 'byteLength');
    this.#checkSpan(byteOffset, byteLength, -1);
    checkOptions(options, 'options');
    const mayPunchHole = orDefault(options?.mayPunchHole, false);
    checkBoolean(mayPunchHole, 'options.mayPunchHole');
    return handle.writeZeroes(byteOffset, byteLength, mayPunchHole);
  }

  /** Discards [byteOffset, +byteLength) (reads back as zeros); returns the journal sequence. */
  trim(byteOffset: number, byteLength: number): number {
    const handle = this.#open();
    checkIndex(byteLength, 'byteLength');
    this.#checkSpan(byteOffset, byteLength, -1);
    return handle.trim(byteOffset, byteLength);
  }

  /** File volumes: msync + fsync off the event loop. Memory volumes: a fence. */
  flush(): Promise<void> {
    const promise = this.#open().flush();
    this.#pending.add(promise);
    const forget = (): void => {
      this.#pending.delete(promise);
    };
    promise.then(forget, forget);
    return promise;
  }

  /**
   * Data and hole extents of the data area, volume-relative.
   * @param byteOffset @default 0
   * @param byteLength @default the rest of the volume
   */
  allocationMap(byteOffset = 0, byteLength?: number): RegionExtent[] {
    const handle = this.#open();
    checkIndex(byteOffset, 'byteOffset');
    if (byteOffset > this.capacityBytes) {
      throw new RangeError(`byteOffset (${byteOffset}) is outside the volume (capacityBytes ${this.capacityBytes})`);
    }
    const length = byteLength === undefined ? this.capacityBytes - byteOffset : byteLength;
    checkIndex(length, 'byteLength');
    if (length > this.capacityBytes - byteOffset) {
      throw new RangeError(`[${byteOffset}, +${length}) is outside the volume (capacityBytes ${this.capacityBytes})`);
    }
    return unpackExtents(handle.allocationMap(byteOffset, length));
  }

  #adopt(bitmap: Bitmap, name: string): Bitmap {
    if (this.#bitmaps.size >= 64) {
      for (const [open] of this.#bitmaps) if (open.closed) this.#bitmaps.delete(open);
    }
    this.#bitmaps.set(bitmap, name);
    return bitmap;
  }

  /** Creates a bitmap in a free slot of the volume (ERR_BITMAP_EXISTS, ERR_BITMAP_LIMIT). */
  createBitmap(name: string, options?: VolumeBitmapOptions): Bitmap {
    const handle = this.#open();
    checkBitmapName(name);
    checkOptions(options, 'options');
    const granularityBytes = orDefault(options?.granularityBytes, Volume.DEFAULT_BITMAP_GRANULARITY_BYTES);
    checkPowerOfTwo(granularityBytes, 'options.granularityBytes', Volume.MIN_BITMAP_GRANULARITY_BYTES, Volume.MAX_BITMAP_GRANULARITY_BYTES);
    const recording = orDefault(options?.recording, true);
    checkBoolean(recording, 'options.recording');
    return this.#adopt(Bitmap[kFromNative](handle.createBitmap(name, granularityBytes, recording)), name);
  }

  /** A view of an existing bitmap of the volume (ERR_BITMAP_NOT_FOUND). */
  openBitmap(name: string): Bitmap {
    const handle = this.#open();
    checkBitmapName(name);
    return this.#adopt(Bitmap[kFromNative](handle.openBitmap(name)), name);
  }

  /** Frees a bitmap's slot; views of it handed out by this object are closed first. */
  deleteBitmap(name: string): void {
    const handle = this.#open();
    checkBitmapName(name);
    handle.deleteBitmap(name);
    for (const [bitmap, bitmapName] of this.#bitmaps) {
      if (bitmapName === name) {
        bitmap.close();
        this.#bitmaps.delete(bitmap);
      }
    }
  }

  /** Starts or stops marking a bitmap on writes (ERR_BITMAP_NOT_FOUND). */
  setBitmapRecording(name: string, recording: boolean): void {
    const handle = this.#open();
    checkBitmapName(name);
    checkBoolean(recording, 'recording');
    handle.setBitmapRecording(name, recording);
  }

  listBitmaps(): VolumeBitmapInfo[] {
    return this.#open().listBitmaps();
  }

  /** Attaches a journal to this object's write path (null detaches). */
  attachJournal(journal: Journal | null): void {
    const handle = this.#open();
    if (journal !== null && !(journal instanceof Journal)) {
      throw new TypeError(`journal must be a Journal or null (got ${describe(journal)})`);
    }
    if (journal === null) {
      handle.attachJournal(null);
    } else {
      handle.attachJournal(journal[kJournalHandle]);
    }
    this.#journal?.[kAttached](this, false);
    this.#journal = journal;
    journal?.[kAttached](this, true);
  }

  /**
   * The gate between this object's writes and native NBD lanes that write the same volume
   * (native/core/lane_gate.hpp, docs/nbd-native.md): with a boolean the volume has one, open
   * (lanes may write) or closed; every write of this object takes its lock from then on. When
   * setLaneGate(false) returns, no lane write is in progress and none starts until it opens.
   * null closes and drops it. A lane serves a gated volume only with its journal attached.
   */
  setLaneGate(open: boolean | null): void {
    if (open === null && this.#handle === null) return;
    const handle = this.#open();
    if (open !== null && typeof open !== 'boolean') throw new TypeError(`open must be a boolean or null (got ${describe(open)})`);
    handle.setLaneGate(open);
  }

  /**
   * Runs `fn` with the lane gate's lock held (just runs it without a gate): no lane write is
   * between its store and its journal record meanwhile, so what `fn` reads of the journal and the
   * bitmaps is consistent with every store (a pair's bitmap rotation, src/replication/
   * primary-pair-shipping.ts). This object's writes and setLaneGate inside `fn` run under the
   * same hold. Returns what `fn` returns; keep it short, lanes wait.
   */
  underLaneGate<T>(fn: () => T): T {
    const handle = this.#open();
    if (typeof fn !== 'function') throw new TypeError(`fn must be a function (got ${describe(fn)})`);
    return handle.underLaneGate(fn);
  }

  /** @internal Called by a closing journal. */
  [kDetachJournal](journal: Journal): void {
    if (this.#journal !== journal) return;
    this.#journal = null;
    this.#handle?.attachJournal(null);
  }

  /**
   * The volume's counters: this object's I/O, plus what other threads' objects over the same
   * region report through addThreadCounters (an NBD worker's, refreshed every 100 ms; an NBD
   * lane's, read now).
   */
  stats(): VolumeStats {
    const s = this.#open().stats();
    const others = this.#threadCounters.map((counters) => (typeof counters === 'function' ? counters() : counters));
    const stats = {} as VolumeStats;
    VOLUME_STATS_KEYS.forEach((key, index) => {
      let value = s[index] as number;
      for (const counters of others) value += counters[index] as number;
      stats[key] = value;
    });
    return stats;
  }

  /**
   * @internal Adds another thread's counters (a Float64Array in VOLUME_STATS_KEYS order that
   * only that thread writes, or a function returning them) to stats(): the NBD worker pool's, for
   * the worker's own Volume object; the NBD lanes', for theirs.
   */
  addThreadCounters(counters: Float64Array | (() => ArrayLike<number>)): void {
    this.#open();
    if (typeof counters === 'function') {
      this.#threadCounters.push(counters);
      return;
    }
    if (counters.length < VOLUME_STATS_KEYS.length) throw new RangeError(`thread counters need ${VOLUME_STATS_KEYS.length} slots, not ${counters.length}`);
    this.#threadCounters.push(counters);
  }

  /** Waits for flushes in flight, closes handed-out bitmaps, detaches the journal, unmaps. Idempotent. */
  close(): Promise<void> {
    if (this.#closing !== null) return this.#closing;
    const handle = this.#handle;
    this.#handle = null;
    this.#closing = (async () => {
      await Promise.allSettled([...this.#pending]);
      for (const bitmap of this.#bitmaps.keys()) bitmap.close();
      this.#bitmaps.clear();
      this.#journal?.[kAttached](this, false);
      this.#journal = null;
      this.#writevArguments = null;
      this.#directAreas = null;
      handle?.close();
    })();
    return this.#closing;
  }
}
