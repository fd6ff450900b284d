// Notes on the design
// -------------------
// Point-in-time copies of a volume by copy-on-write: the TypeScript face of bm::SnapshotStore
// (native/core/snapshot.hpp). A SnapshotStore belongs to one Volume object and installs itself in
// that object's native write path (design section 4, step 2): creating a snapshot is instant; the
// first change of a chunk (chunkBytes, default 64 KiB) after a snapshot was taken copies the
// chunk's old bytes into a preallocated chunk store, once for every snapshot that needs them;
// later changes of the chunk cost one compare. A Snapshot reads the volume as it was when it was
// taken, whatever the volume does afterwards.
//
// Where the store lives follows the volume: a 'memory' volume's store is an anonymous region that
// dies with this object (close() ends its snapshots); a 'shared' volume's store is the shared
// region blockmirror.snap.<name> beside the volume, and a 'file' volume's is <path>.snapshots.
// Those survive the process (SIGKILL included): a restarted process opens the volume, then
// SnapshotStore.open(volume), and finds every snapshot as it was. While a store exists, a Volume
// object of that volume without its store open refuses writes (ERR_SNAPSHOT_DETACHED), so no
// writer can change bytes a snapshot still reads from the volume.
//
// Limits (named, with defaults): MAX_SNAPSHOTS (32) per volume; chunkBytes a power of two from the
// volume's block size to MAX_CHUNK_BYTES (16 MiB); storeBytes (default: the volume's capacity,
// sparse, so it costs nothing until chunks are preserved) up to 64 times the capacity. A full
// chunk store never fails a host write: the snapshots that needed the chunk become 'invalid'
// (reason 'overflow'), their reads throw ERR_SNAPSHOT_INVALID, and they keep their chunks until
// deleted.
//
// Errors: TypeError / RangeError for caller mistakes (checked here, and again natively);
// BlockmirrorError with ERR_SNAPSHOT_* codes for operating errors (closed, exists, not found,
// limit, invalid, bad header, attached, detached).
//
// Ownership: close() waits for clones in flight, then uninstalls the store from the volume and
// unmaps; later calls throw ERR_SNAPSHOT_CLOSED; a second close() is a no-op. destroy() deletes
// every snapshot and removes the store (the volume then writes freely again). Closing the Volume
// first makes every snapshot call throw ERR_VOLUME_CLOSED.

import { addon, NativeRegionKind, NativeSnapshotRecord, NativeSnapshotStore } from '../native';
import { Region, RegionExtent, unpackExtents } from './region';
import { checkIndex, checkObject, checkOptions, checkPowerOfTwo, checkString, closedError, describe, checkIntegerIn, orDefault, MAX_REGION_NAME_LENGTH } from './validate';
import { SNAPSHOT_STORE_FILE_SUFFIX, SNAPSHOT_STORE_SHARED_PREFIX, Volume, VolumeBacking, kNativeHandle as kVolumeHandle } from './volume';

/** Options of SnapshotStore.create. */
export interface SnapshotStoreCreateOptions {
  /** Copy-on-write unit: a power of two from the volume's block size to SnapshotStore.MAX_CHUNK_BYTES. @default 65536 */
  chunkBytes?: number;
  /**
   * Size of the preallocated chunk store, rounded up to whole chunks, at most 64 times the
   * volume's capacity. Sparse: it costs memory only as chunks are preserved.
   * @default the volume's capacityBytes
   */
  storeBytes?: number;
}

/** Options of Snapshot.clone: where the new volume lives (geometry is the snapshot's). */
export interface SnapshotCloneOptions {
  /** Where the clone's bytes live. @default 'memory' */
  backing?: VolumeBacking;
  /** Shared: the clone's volume name (required). Memory: a label. @default undefined */
  name?: string;
  /** File: the path of the clone's file (required for 'file'). @default undefined */
  path?: string;
  /** Bytes copied between two turns of the event loop. @default 8388608 */
  batchBytes?: number;
}

export type SnapshotState = 'valid' | 'invalid';

/** What a snapshot is and how much it holds. */
export interface SnapshotStatus {
  name: string;
  /** Random 64-bit id, never reused for another snapshot of the store. */
  id: bigint;
  /** Wall-clock time of creation, ms since the epoch. */
  createdMs: number;
  /** 'invalid': the chunk store was full when a chunk needed preserving; reads throw ERR_SNAPSHOT_INVALID. */
  state: SnapshotState;
  /** Why the snapshot is invalid; undefined while it is valid. */
  reason: 'overflow' | undefined;
  /** Chunks whose old bytes the snapshot holds (a chunk shared with others counts for each). */
  preservedChunkCount: number;
}

/** Counters of a store (shared by every process that opens it). */
export interface SnapshotStoreStats {
  chunkBytes: number;
  storeChunkCount: number;
  storeChunksUsed: number;
  /** Chunks copied by copy-on-write. */
  preserveCount: number;
  preserveBytes: number;
  /** Snapshot map entries that reused a copy made for another snapshot (copies saved). */
  sharedCount: number;
  /** Chunks preserved as holes, without a store chunk. */
  zeroChunkCount: number;
  /** Snapshots invalidated because the chunk store was full. */
  overflowCount: number;
  /** Snapshots present (valid and invalid). */
  snapshotCount: number;
}

const SHARED_PREFIX = SNAPSHOT_STORE_SHARED_PREFIX;
const FILE_SUFFIX = SNAPSHOT_STORE_FILE_SUFFIX;
const SNAPSHOT_NAME = /^[A-Za-z0-9._:-]{1,47}$/;
const NATIVE_KIND = { memory: NativeRegionKind.anonymous, shared: NativeRegionKind.shared, file: NativeRegionKind.file } as const;
const kCreate = Symbol('blockmirror.SnapshotStore.native');
const kTrack = Symbol('blockmirror.SnapshotStore.track');

function checkSnapshotName(name: unknown): asserts name is string {
  checkString(name, 'name');
  if (!SNAPSHOT_NAME.test(name)) {
    throw new RangeError(`name must be 1..47 characters of [A-Za-z0-9._:-] (got ${describe(name)})`);
  }
}

function checkVolume(volume: unknown): asserts volume is Volume {
  if (!(volume instanceof Volume)) throw new TypeError(`volume must be a Volume (got ${describe(volume)})`);
}

/** The region of a volume's snapshot store. */
function storeRegionOf(volume: Volume): { kind: VolumeBacking; regionName: string } {
  if (volume.backing === 'shared') {
    const regionName = SHARED_PREFIX + (volume.name as string);
    if (regionName.length > MAX_REGION_NAME_LENGTH) {
      throw new RangeError(
        `volume name ${describe(volume.name)} is too long for a snapshot store (at most ${MAX_REGION_NAME_LENGTH - SHARED_PREFIX.length} characters)`,
      );
    }
    return { kind: 'shared', regionName };
  }
  if (volume.backing === 'file') return { kind: 'file', regionName: (volume.path as string) + FILE_SUFFIX };
  return { kind: 'memory', regionName: 'blockmirror.snap' };
}

function toStatus(record: NativeSnapshotRecord): SnapshotStatus {
  const [, id, createdMs, state, preservedChunkCount, name] = record;
  return {
    name,
    id,
    createdMs,
    state: state === 1 ? 'valid' : 'invalid',
    reason: state === 1 ? undefined : 'overflow',
    preservedChunkCount,
  };
}

/** The snapshots of one volume, and the chunk store their old bytes live in. */
export class SnapshotStore {
  /** Most snapshots per volume. */
  static readonly MAX_SNAPSHOTS: number = addon.MAX_SNAPSHOTS;
  static readonly DEFAULT_CHUNK_BYTES = 65536;
  static readonly MAX_CHUNK_BYTES: number = addon.MAX_SNAPSHOT_CHUNK_BYTES;
  /** storeBytes may be at most this many times the volume's capacity. */
  static readonly MAX_STORE_CAPACITY_RATIO = 64;

  readonly volume: Volume;
  readonly chunkBytes: number;
  readonly storeChunkCount: number;
  /** storeChunkCount * chunkBytes. */
  readonly storeBytes: number;

  #handle: NativeSnapshotStore | null;
  #pending = new Set<Promise<unknown>>();
  #closing: Promise<void> | null = null;

  private constructor(volume: Volume, handle: NativeSnapshotStore) {
    this.volume = volume;
    this.#handle = handle;
    const [chunkBytes, , storeChunkCount] = handle.info();
    this.chunkBytes = chunkBytes;
    this.storeChunkCount = storeChunkCount;
    this.storeBytes = storeChunkCount * chunkBytes;
  }

  /**
   * Creates the volume's snapshot store and installs it on this Volume object
   * (ERR_REGION_EXISTS when a shared or file store exists already; ERR_SNAPSHOT_ATTACHED when the
   * object has one).
   */
  static create(volume: Volume, options?: SnapshotStoreCreateOptions): SnapshotStore {
    checkVolume(volume);
    checkOptions(options, 'options');
    const chunkBytes = orDefault(options?.chunkBytes, SnapshotStore.DEFAULT_CHUNK_BYTES);
    checkPowerOfTwo(chunkBytes, 'options.chunkBytes', volume.blockSize, SnapshotStore.MAX_CHUNK_BYTES);
    const storeBytes = orDefault(options?.storeBytes, volume.capacityBytes);
    checkIntegerIn(storeBytes, 'options.storeBytes', 1, volume.capacityBytes * SnapshotStore.MAX_STORE_CAPACITY_RATIO);
    const native = volume[kVolumeHandle];
    const { kind, regionName } = storeRegionOf(volume);
    return new SnapshotStore(volume, new addon.SnapshotStore(native, NATIVE_KIND[kind], regionName, true, chunkBytes, storeBytes));
  }

  /** Opens the store of a shared or file volume and installs it on this Volume object (ERR_REGION_NOT_FOUND when it has none). */
  static open(volume: Volume): SnapshotStore {
    checkVolume(volume);
    if (volume.backing === 'memory') throw new TypeError("a 'memory' volume's snapshot store cannot be opened (it lives only as long as its object)");
    const native = volume[kVolumeHandle];
    const { kind, regionName } = storeRegionOf(volume);
    return new SnapshotStore(volume, new addon.SnapshotStore(native, NATIVE_KIND[kind], regionName, false, 0, 0));
  }

  /**
   * Whether a shared or file volume has a store, without opening it ("none" is a value, not an
   * error: a controller that reopens its volumes asks this; a 'memory' volume's store lives
   * only in its object, so this is false for one).
   */
  static exists(volume: Volume): boolean {
    checkVolume(volume);
    if (volume.backing === 'memory') return false;
    const { kind, regionName } = storeRegionOf(volume);
    return Region.exists(kind as 'shared' | 'file', regionName);
  }

  /** SnapshotStore.open, or null when the volume has no store (other failures still throw). */
  static tryOpen(volume: Volume): SnapshotStore | null {
    if (!SnapshotStore.exists(volume)) return null;
    try {
      return SnapshotStore.open(volume);
    } catch (error) {
      // Removed between the look and the open.
      if ((error as { code?: unknown }).code === 'ERR_REGION_NOT_FOUND') return null;
      throw error;
    }
  }

  /**
   * Removes the store region of a shared ({ name }) or file ({ path }) volume without opening it;
   * false when there was none. The volume keeps refusing writes through objects without a store
   * until one is created again: prefer destroy().
   */
  static unlink(options: { name: string } | { path: string }): boolean {
    checkObject(options, 'options');
    const { name, path } = options as { name?: unknown; path?: unknown };
    if ((name === undefined) === (path === undefined)) throw new TypeError('options: give exactly one of name and path');
    if (name !== undefined) {
      checkString(name, 'options.name');
      return addon.unlinkRegion(NativeRegionKind.shared, SHARED_PREFIX + name);
    }
    checkString(path, 'options.path');
    return addon.unlinkRegion(NativeRegionKind.file, path + FILE_SUFFIX);
  }

  /** True once close() or destroy() was called. */
  get closed(): boolean {
    return this.#handle === null;
  }

  #open(): NativeSnapshotStore {
    const handle = this.#handle;
    if (handle === null) throw closedError('snapshot');
    return handle;
  }

  /** @internal */
  [kCreate](): NativeSnapshotStore {
    return this.#open();
  }

  /** @internal Counts a clone in flight, so close() waits for it. */
  [kTrack]<T>(promise: Promise<T>): Promise<T> {
    this.#pending.add(promise);
    const forget = (): void => {
      this.#pending.delete(promise);
    };
    promise.then(forget, forget);
    return promise;
  }

  /** Takes a snapshot now, without copying (ERR_SNAPSHOT_EXISTS, ERR_SNAPSHOT_LIMIT). */
  createSnapshot(name: string): Snapshot {
    const handle = this.#open();
    checkSnapshotName(name);
    return new Snapshot(this, handle.createSnapshot(name));
  }

  /** The snapshot of that name (ERR_SNAPSHOT_NOT_FOUND). */
  snapshot(name: string): Snapshot {
    const handle = this.#open();
    checkSnapshotName(name);
    return new Snapshot(this, handle.find(name));
  }

  /** Every snapshot of the volume, in slot order. */
  list(): SnapshotStatus[] {
    return this.#open().list().map(toStatus);
  }

  /** Deletes a snapshot; the chunks only it held go back to the store and their memory to the system. */
  deleteSnapshot(name: string): void {
    const handle = this.#open();
    checkSnapshotName(name);
    handle.deleteSnapshot(name);
  }

  stats(): SnapshotStoreStats {
    const s = this.#open().stats();
    return {
      chunkBytes: s[0] as number,
      storeChunkCount: s[1] as number,
      storeChunksUsed: s[2] as number,
      preserveCount: s[3] as number,
      preserveBytes: s[4] as number,
      sharedCount: s[5] as number,
      zeroChunkCount: s[6] as number,
      overflowCount: s[7] as number,
      snapshotCount: s[8] as number,
    };
  }

  /** Waits for clones in flight, deletes every snapshot and removes the store; the volume writes freely again. */
  async destroy(): Promise<void> {
    const handle = this.#open();
    this.#handle = null;
    this.#closing = (async () => {
      await Promise.allSettled([...this.#pending]);
      handle.destroy();
    })();
    return this.#closing;
  }

  /** Waits for clones in flight, uninstalls the store from the volume and unmaps. Idempotent. */
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

/** One point-in-time copy of a volume. */
export class Snapshot {
  readonly store: SnapshotStore;
  readonly name: string;
  readonly id: bigint;
  /** Wall-clock time of creation, ms since the epoch. */
  readonly createdMs: number;
  readonly capacityBytes: number;
  readonly blockSize: number;
  readonly #slot: number;

  /** @internal Made by SnapshotStore.createSnapshot and SnapshotStore.snapshot. */
  constructor(store: SnapshotStore, record: NativeSnapshotRecord) {
    if (!(store instanceof SnapshotStore)) throw new TypeError('Snapshot objects come from SnapshotStore.createSnapshot or SnapshotStore.snapshot');
    this.store = store;
    const [slot, id, createdMs, , , name] = record;
    this.#slot = slot;
    this.id = id;
    this.createdMs = createdMs;
    this.name = name;
    this.capacityBytes = store.volume.capacityBytes;
    this.blockSize = store.volume.blockSize;
  }

  #handle(): NativeSnapshotStore {
    return this.store[kCreate]();
  }

  /** State and size (ERR_SNAPSHOT_NOT_FOUND once deleted). */
  status(): SnapshotStatus {
    return toStatus(this.#handle().snapshotInfo(this.#slot, this.id));
  }

  #checkSpan(byteOffset: unknown, byteLength: number): asserts byteOffset is number {
    checkIndex(byteOffset, 'byteOffset');
    if (byteOffset > this.capacityBytes || byteLength > this.capacityBytes - byteOffset) {
      throw new RangeError(`[${byteOffset}, +${byteLength}) is outside the volume (capacityBytes ${this.capacityBytes})`);
    }
  }

  /** Fills target with the snapshot's bytes from byteOffset (ERR_SNAPSHOT_INVALID when it overflowed). */
  read(byteOffset: number, target: Uint8Array): void {
    const handle = this.#handle();
    if (!(target instanceof Uint8Array)) throw new TypeError(`target must be a Uint8Array (got ${describe(target)})`);
    this.#checkSpan(byteOffset, target.byteLength);
    handle.read(this.#slot, this.id, byteOffset, target);
  }

  /**
   * Data and hole extents of the snapshot's image (holes read as zeros), for NBD base:allocation.
   * @param byteOffset @default 0
   * @param byteLength @default the rest of the volume
   */
  allocationMap(byteOffset = 0, byteLength?: number): RegionExtent[] {
    const handle = this.#handle();
    checkIndex(byteOffset, 'byteOffset');
    if (byteOffset > this.capacityBytes) {
      throw new RangeError(`byteOffset (${byteOffset}) is outside the volume (capacityBytes ${this.capacityBytes})`);
    }
    const length = byteLength === undefined ? this.capacityBytes - byteOffset : byteLength;
    checkIndex(length, 'byteLength');
    this.#checkSpan(byteOffset, length);
    return unpackExtents(handle.allocationMap(this.#slot, this.id, byteOffset, length));
  }

  /**
   * Makes the volume's content this snapshot's: every chunk it preserved is written back through
   * the volume's write path (other snapshots preserve first; bitmaps and an attached journal see
   * the writes). Synchronous, bounded by the bytes the snapshot holds. Returns the bytes written.
   */
  restore(): number {
    return this.#handle().restore(this.#slot, this.id);
  }

  /**
   * A new writable volume with the snapshot's content and geometry: a full copy of its data
   * extents (holes stay holes), in batches of batchBytes between turns of the event loop. The
   * snapshot's image does not change while the volume is written, so host writes may go on.
   */
  clone(options?: SnapshotCloneOptions): Promise<Volume> {
    const handle = this.#handle();
    checkOptions(options, 'options');
    const batchBytes = orDefault(options?.batchBytes, 8 * 1024 * 1024);
    checkIntegerIn(batchBytes, 'options.batchBytes', 1, 2 ** 30);
    const extents = this.allocationMap();
    const target = Volume.create({
      capacityBytes: this.capacityBytes,
      blockSize: this.blockSize,
      strict: this.store.volume.strict,
      backing: options?.backing,
      name: options?.name,
      path: options?.path,
    } as Parameters<typeof Volume.create>[0]);
    return this.store[kTrack](this.#copyInto(handle, target, extents, batchBytes));
  }

  // The handle is taken when the clone starts: close() waits for the clone before it closes it.
  async #copyInto(handle: NativeSnapshotStore, target: Volume, extents: RegionExtent[], batchBytes: number): Promise<Volume> {
    const pieceBytes = Math.min(1024 * 1024, Math.max(this.blockSize, batchBytes));
    const buffer = Buffer.allocUnsafe(pieceBytes - (pieceBytes % this.blockSize) || this.blockSize);
    let sinceYield = 0;
    try {
      for (const extent of extents) {
        if (!extent.allocated) continue;
        // Whole blocks, so a strict clone takes them.
        let at = Math.floor(extent.byteOffset / this.blockSize) * this.blockSize;
        const end = Math.min(this.capacityBytes, Math.ceil((extent.byteOffset + extent.byteLength) / this.blockSize) * this.blockSize);
        while (at < end) {
          const piece = buffer.subarray(0, Math.min(buffer.byteLength, end - at));
          handle.read(this.#slot, this.id, at, piece);
          target.write(at, piece);
          at += piece.byteLength;
          sinceYield += piece.byteLength;
          if (sinceYield >= batchBytes) {
            sinceYield = 0;
            await new Promise<void>((resolve) => setImmediate(resolve));
          }
        }
      }
      return target;
    } catch (error) {
      await target.close();
      if (target.backing === 'shared') Volume.unlink({ name: target.name as string });
      if (target.backing === 'file') Volume.unlink({ path: target.path as string });
      throw error;
    }
  }

  /** Deletes this snapshot (see SnapshotStore.deleteSnapshot). */
  delete(): void {
    const handle = this.#handle();
    // By slot and id, so a snapshot of the same name made after this one was deleted is not hit.
    const [, , , , , name] = handle.snapshotInfo(this.#slot, this.id);
    handle.deleteSnapshot(name);
  }
}
