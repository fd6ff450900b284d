// Notes on the design
// -------------------
// The one typed declaration of the native addon's surface (build/Release/blockmirror.node), as
// node-usb keeps its bindings.ts. Nothing else imports the .node file. The classes in
// src/storage wrap these handles; they check every argument before calling in (the addon checks
// again) and they own the public names and defaults.
//
// Loading hands the JS error class to the addon (setErrorConstructor) so that native operating
// errors are BlockmirrorError instances. Every environment (main thread, each worker) loads the
// module once and so registers the class once.
//
// Conventions of the surface: offsets and lengths are JS numbers (non-negative safe integers);
// data crosses as Uint8Array; results with many numbers come back packed in Float64Arrays that the
// TypeScript side unpacks; region kinds are numbers (NativeRegionKind).

import path from 'node:path';
import { BlockmirrorError } from './errors';

/** Region kinds as the addon numbers them (bm::RegionKind). */
export const NativeRegionKind = Object.freeze({ anonymous: 0, shared: 1, file: 2 } as const);
export type NativeRegionKindValue = (typeof NativeRegionKind)[keyof typeof NativeRegionKind];

/** Journal record kinds as the addon numbers them (bm::RecordKind). */
export const NativeRecordKind = Object.freeze({ write: 1, zero: 2, trim: 3, marker: 4 } as const);

export interface NativeRegion {
  /** [kind, name, byteLength, created] */
  info(): [NativeRegionKindValue, string, number, boolean];
  read(byteOffset: number, target: Uint8Array): void;
  write(byteOffset: number, source: Uint8Array): void;
  trim(byteOffset: number, byteLength: number): void;
  /** [byteOffset, byteLength, allocated 0|1] triples */
  allocationMap(byteOffset: number, byteLength: number): Float64Array;
  allocatedBytes(): number;
  flush(): Promise<void>;
  /** Returns whether the mapping was released now (false: when pending work completes). */
  close(): boolean;
}

export interface NativeRegionConstructor {
  new (kind: NativeRegionKindValue, name: string, byteLength: number, create: boolean, open: boolean): NativeRegion;
}

export interface NativeBitmap {
  /** [bitCount, granularityBytes] */
  info(): [number, number];
  set(index: number): boolean;
  clear(index: number): boolean;
  test(index: number): boolean;
  setRange(first: number, count: number): void;
  clearRange(first: number, count: number): void;
  markBytes(byteOffset: number, byteLength: number): void;
  setAll(): void;
  clearAll(): void;
  count(): number;
  /** -1 when none */
  findNextSet(from: number): number;
  findNextClear(from: number): number;
  orMerge(other: NativeBitmap): void;
  swap(other: NativeBitmap): void;
  copyFrom(other: NativeBitmap): void;
  serialize(): Buffer;
  deserializeInto(bytes: Uint8Array): void;
  close(): void;
}

export interface NativeBitmapConstructor {
  new (bitCount: number, granularityBytes: number): NativeBitmap;
}

export interface NativeBitmapSlot {
  name: string;
  granularityBytes: number;
  bitCount: number;
  recording: boolean;
}

export interface NativeVolume {
  /** [volumeId, capacityBytes, blockSize, strict, kind, region name] */
  info(): [bigint, number, number, boolean, NativeRegionKindValue, string];
  read(byteOffset: number, target: Uint8Array): void;
  /** Journal sequence: > 0, 0 without a journal, -1 when the journal was full. */
  write(byteOffset: number, source: Uint8Array): number;
  /**
   * Writes count buffers (passed as the trailing arguments) at byteOffsets[0..count). Returns how
   * many writes met a full journal.
   */
  writev(byteOffsets: Float64Array, count: number, sequencesOut: Float64Array | undefined, ...buffers: Uint8Array[]): number;
  writeZeroes(byteOffset: number, byteLength: number, mayPunchHole: boolean): number;
  /** True when the bytes may land at directArea()[byteOffset...] (seams and bitmap marks done; volume.hpp). */
  beginDirectWrite(byteOffset: number, byteLength: number): boolean;
  commitDirectWrite(byteOffset: number, byteLength: number): number;
  /** [byteOffset, +byteLength) of the data area (at most 1 GiB) as an external ArrayBuffer (null when it cannot be made). */
  directArea(byteOffset: number, byteLength: number): ArrayBuffer | null;
  trim(byteOffset: number, byteLength: number): number;
  flush(): Promise<void>;
  allocationMap(byteOffset: number, byteLength: number): Float64Array;
  createBitmap(name: string, granularityBytes: number, recording: boolean): NativeBitmap;
  openBitmap(name: string): NativeBitmap;
  deleteBitmap(name: string): void;
  setBitmapRecording(name: string, recording: boolean): void;
  listBitmaps(): NativeBitmapSlot[];
  attachJournal(journal: NativeJournal | null): void;
  /** A lane gate (native/core/lane_gate.hpp): open or closed; null closes and drops it. */
  setLaneGate(open: boolean | null): void;
  underLaneGate<T>(fn: () => T): T;
  /** The counters of bm::VolumeStats in declaration order. */
  stats(): Float64Array;
  close(): void;
}

export interface NativeVolumeConstructor {
  new (kind: NativeRegionKindValue, name: string, create: boolean, capacityBytes: number, blockSize: number, strict: boolean): NativeVolume;
}

export interface NativeJournal {
  /** [capacityBytes, maxRecordBytes, kind, region name, id] */
  info(): [number, number, NativeRegionKindValue, string, number];
  /** Sequence, or 0 when the ring is full. */
  append(kind: number, volumeId: bigint, byteOffset: number, byteLength: number, data: Uint8Array | undefined, flags: number): number;
  /**
   * [fields, volumeIds, payload]; 8 fields per record: sequence, byteOffset, byteLength, kind,
   * flags, dataCrc, payloadOffset, payloadBytes.
   */
  read(fromSequence: number, maxRecords: number, maxBytes: number): [Float64Array, BigUint64Array, Buffer];
  readPacked(fromSequence: number, maxRecords: number, maxDataBytes: number, prefixBytes: number, gapBytes: number, target?: Buffer, verify?: boolean): [Float64Array, Buffer, number];
  release(throughSequence: number): number;
  /** headSequence, nextSequence, recordCount, usedBytes, capacityBytes, maxRecordBytes, appendCount, fullCount */
  stats(): Float64Array;
  headSequence(): number;
  nextSequence(): number;
  /** [volumeId, byteOffset, byteLength, kind (1 write, 2 zero, 3 trim)] per intent open() found. */
  pendingIntents(): [bigint, number, number, number][];
  clearPendingIntents(): void;
  close(): void;
}

export interface NativeJournalConstructor {
  new (kind: NativeRegionKindValue, name: string, create: boolean, capacityBytes: number, maxRecordBytes: number, id?: number): NativeJournal;
}

/** [slot, id, createdMs, state (1 valid, 2 invalid), preservedChunkCount, name] */
export type NativeSnapshotRecord = [number, bigint, number, 1 | 2, number, string];

export interface NativeSnapshotStore {
  /** [chunkBytes, chunkCount, storeChunkCount, capacityBytes, kind, region name] */
  info(): [number, number, number, number, NativeRegionKindValue, string];
  createSnapshot(name: string): NativeSnapshotRecord;
  deleteSnapshot(name: string): void;
  find(name: string): NativeSnapshotRecord;
  snapshotInfo(slot: number, id: bigint): NativeSnapshotRecord;
  list(): NativeSnapshotRecord[];
  read(slot: number, id: bigint, byteOffset: number, target: Uint8Array): void;
  /** [byteOffset, byteLength, allocated 0|1] triples */
  allocationMap(slot: number, id: bigint, byteOffset: number, byteLength: number): Float64Array;
  /** Bytes written back. */
  restore(slot: number, id: bigint): number;
  /** chunkBytes, storeChunkCount, storeChunksUsed, preserveCount, preserveBytes, sharedCount, zeroChunkCount, overflowCount, snapshotCount */
  stats(): Float64Array;
  destroy(): void;
  close(): void;
}

export interface NativeSnapshotStoreConstructor {
  new (volume: NativeVolume, kind: NativeRegionKindValue, name: string, create: boolean, chunkBytes: number, storeBytes: number): NativeSnapshotStore;
}

export interface NativeAddon {
  setErrorConstructor(constructor: new (code: string, message: string, options?: { errno?: number }) => Error): void;
  /** bm::codeNames() */
  codeNames(): string[];
  /** Native objects of this environment not yet released (for leak tests). */
  openResourceCount(): number;
  pageSize(): number;
  unlinkRegion(kind: NativeRegionKindValue, name: string): boolean;
  deserializeBitmap(bytes: Uint8Array): NativeBitmap;
  crc32c(data: Uint8Array, previous?: number): number;
  crc32cPortable(data: Uint8Array, previous?: number): number;
  /** -1 when the CPU has no CRC32C instruction. */
  crc32cHardware(data: Uint8Array, previous?: number): number;
  readonly MAX_WRITEV_COUNT: number;
  readonly Region: NativeRegionConstructor;
  readonly Volume: NativeVolumeConstructor;
  readonly Bitmap: NativeBitmapConstructor;
  readonly Journal: NativeJournalConstructor;
  readonly SnapshotStore: NativeSnapshotStoreConstructor;
  readonly MAX_SNAPSHOTS: number;
  readonly MAX_SNAPSHOT_CHUNK_BYTES: number;
}

function load(): NativeAddon {
  // dist/src/native.js and src/native.ts (ts-node) both find the build two or one levels up.
  const roots = [path.resolve(__dirname, '..', '..'), path.resolve(__dirname, '..')];
  const errors: string[] = [];
  for (const root of roots) {
    for (const configuration of ['Release', 'Debug']) {
      const file = path.join(root, 'build', configuration, 'blockmirror.node');
      try {
        return require(file) as NativeAddon;
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code !== 'MODULE_NOT_FOUND') throw error;
        errors.push(file);
      }
    }
  }
  throw new Error(`blockmirror: native addon not found (run npm install or npm run build:native); looked for ${errors.join(', ')}`);
}

/** The addon of this environment, with BlockmirrorError registered. */
export const addon: NativeAddon = load();
addon.setErrorConstructor(BlockmirrorError);
