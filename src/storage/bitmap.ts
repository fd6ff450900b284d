// Notes on the design
// -------------------
// A Bitmap has one bit per track: bit i covers bytes [i * granularityBytes, (i + 1) *
// granularityBytes) of whatever it describes. It is the TypeScript face of bm::Bitmap
// (native/core/bitmap.hpp) and comes in two forms:
//   - standalone: Bitmap.create() / Bitmap.deserialize() own their storage (an anonymous region,
//     allocated here, never on a write path);
//   - a volume's slot: Volume.createBitmap() / openBitmap() return a view of a bitmap that lives
//     in the volume's region, so every process that opened the volume sees the same bits and the
//     write path marks them.
//
// Single-bit and range operations are atomic per 64-bit word (no lost bits between threads or
// processes); whole-bitmap operations (orMerge, swap, clearAll, serialize) are not atomic as a
// whole: callers that need a consistent cut hold their own gate.
//
// Ownership: close() drops this object's storage (standalone) or its view (slot: the bits stay in
// the volume). Later calls throw ERR_BITMAP_CLOSED; a second close() is a no-op. A volume closes
// the slot views it handed out when it closes. "Nothing found" is -1, a value, not an error.

import { BlockmirrorError } from '../errors';
import { addon, NativeBitmap } from '../native';
import { checkBytes, checkIndex, checkIntegerIn, checkOptions, checkPowerOfTwo, checkSpan, closedError, describe, orDefault } from './validate';

/** Options of Bitmap.create: give exactly one of bitCount and coveredBytes. */
export interface BitmapCreateOptions {
  /** Number of bits. @default derived from coveredBytes */
  bitCount?: number;
  /** Bytes to cover; bitCount = ceil(coveredBytes / granularityBytes). @default undefined */
  coveredBytes?: number;
  /** Bytes per bit, a power of two from 512 to 2^30. @default 65536 */
  granularityBytes?: number;
}

/** Internal: lets Volume wrap a native slot bitmap. Not exported from the package. */
export const kFromNative = Symbol('blockmirror.Bitmap.fromNative');
/** Internal: the native handle of an open bitmap. */
export const kNativeHandle = Symbol('blockmirror.Bitmap.native');

export class Bitmap {
  static readonly DEFAULT_GRANULARITY_BYTES = 65536;
  static readonly MIN_GRANULARITY_BYTES = 512;
  static readonly MAX_GRANULARITY_BYTES = 2 ** 30;
  /** Largest standalone bitmap: 2^32 bits (512 MiB of storage). */
  static readonly MAX_BIT_COUNT = 2 ** 32;

  /** Number of bits. */
  readonly bitCount: number;
  /** Bytes each bit covers. */
  readonly granularityBytes: number;

  #handle: NativeBitmap | null;

  private constructor(handle: NativeBitmap) {
    this.#handle = handle;
    const [bitCount, granularityBytes] = handle.info();
    this.bitCount = bitCount;
    this.granularityBytes = granularityBytes;
  }

  /** @internal */
  static [kFromNative](handle: NativeBitmap): Bitmap {
    return new Bitmap(handle);
  }

  /** A new standalone bitmap, all bits clear. */
  static create(options: BitmapCreateOptions): Bitmap {
    checkOptions(options, 'options');
    if (options === undefined) throw new TypeError('options must be an object (got undefined)');
    const granularityBytes = orDefault(options.granularityBytes, Bitmap.DEFAULT_GRANULARITY_BYTES);
    checkPowerOfTwo(granularityBytes, 'options.granularityBytes', Bitmap.MIN_GRANULARITY_BYTES, Bitmap.MAX_GRANULARITY_BYTES);
    let bitCount: number;
    if (options.bitCount !== undefined) {
      if (options.coveredBytes !== undefined) throw new TypeError('options: give bitCount or coveredBytes, not both');
      checkIntegerIn(options.bitCount, 'options.bitCount', 1, Bitmap.MAX_BIT_COUNT);
      bitCount = options.bitCount;
    } else {
      if (options.coveredBytes === undefined) throw new TypeError('options: one of bitCount and coveredBytes is required');
      checkIndex(options.coveredBytes, 'options.coveredBytes');
      bitCount = Math.ceil(options.coveredBytes / granularityBytes);
      if (bitCount < 1 || bitCount > Bitmap.MAX_BIT_COUNT) {
        throw new RangeError(`options.coveredBytes (${options.coveredBytes}) needs ${bitCount} bits; must be 1..${Bitmap.MAX_BIT_COUNT}`);
      }
    }
    return new Bitmap(new addon.Bitmap(bitCount, granularityBytes));
  }

  /** Parses serialize() output into a new standalone bitmap (ERR_BITMAP_FORMAT, ERR_BITMAP_CHECKSUM). */
  static deserialize(bytes: Uint8Array): Bitmap {
    checkBytes(bytes, 'bytes');
    return new Bitmap(addon.deserializeBitmap(bytes));
  }

  /** True once close() was called. */
  get closed(): boolean {
    return this.#handle === null;
  }

  #open(): NativeBitmap {
    const handle = this.#handle;
    if (handle === null) throw closedError('bitmap');
    return handle;
  }

  /** @internal */
  get [kNativeHandle](): NativeBitmap {
    return this.#open();
  }

  #checkBit(index: unknown, name: string): asserts index is number {
    checkIndex(index, name);
    if (index >= this.bitCount) throw new RangeError(`${name} (${index}) must be less than bitCount (${this.bitCount})`);
  }

  #checkRange(first: unknown, count: unknown): void {
    checkIndex(first, 'first');
    checkIndex(count, 'count');
    if (first > this.bitCount || count > this.bitCount - first) {
      throw new RangeError(`first + count (${first} + ${count}) exceeds bitCount (${this.bitCount})`);
    }
  }

  #other(other: unknown): NativeBitmap {
    if (!(other instanceof Bitmap)) throw new TypeError(`other must be a Bitmap (got ${describe(other)})`);
    const handle = other.#open();
    if (other.bitCount !== this.bitCount || other.granularityBytes !== this.granularityBytes) {
      throw new BlockmirrorError(
        'ERR_BITMAP_GEOMETRY',
        `bitmap geometry differs: ${this.bitCount} bits of ${this.granularityBytes} bytes vs ${other.bitCount} bits of ${other.granularityBytes} bytes`,
      );
    }
    return handle;
  }

  /** Sets bit `index`; returns its previous value. */
  set(index: number): boolean {
    const handle = this.#open();
    this.#checkBit(index, 'index');
    return handle.set(index);
  }

  /** Clears bit `index`; returns its previous value. */
  clear(index: number): boolean {
    const handle = this.#open();
    this.#checkBit(index, 'index');
    return handle.clear(index);
  }

  test(index: number): boolean {
    const handle = this.#open();
    this.#checkBit(index, 'index');
    return handle.test(index);
  }

  /** Sets bits [first, first + count). */
  setRange(first: number, count: number): void {
    const handle = this.#open();
    this.#checkRange(first, count);
    handle.setRange(first, count);
  }

  /** Clears bits [first, first + count). */
  clearRange(first: number, count: number): void {
    const handle = this.#open();
    this.#checkRange(first, count);
    handle.clearRange(first, count);
  }

  /** Sets every bit whose track [byteOffset, byteOffset + byteLength) touches. */
  markBytes(byteOffset: number, byteLength: number): void {
    const handle = this.#open();
    checkIndex(byteOffset, 'byteOffset');
    checkIndex(byteLength, 'byteLength');
    checkSpan(byteOffset, byteLength, this.bitCount * this.granularityBytes, 'bytes the bitmap covers');
    handle.markBytes(byteOffset, byteLength);
  }

  setAll(): void {
    this.#open().setAll();
  }

  clearAll(): void {
    this.#open().clearAll();
  }

  /** Number of set bits. */
  count(): number {
    return this.#open().count();
  }

  /** First set bit with index >= from, or -1. */
  findNextSet(from = 0): number {
    const handle = this.#open();
    checkIndex(from, 'from');
    return handle.findNextSet(from);
  }

  /** First clear bit with index >= from, or -1. */
  findNextClear(from = 0): number {
    const handle = this.#open();
    checkIndex(from, 'from');
    return handle.findNextClear(from);
  }

  /** this |= other (same geometry, else ERR_BITMAP_GEOMETRY). */
  orMerge(other: Bitmap): void {
    const handle = this.#open();
    handle.orMerge(this.#other(other));
  }

  /** Exchanges the contents with other (same geometry). */
  swap(other: Bitmap): void {
    const handle = this.#open();
    handle.swap(this.#other(other));
  }

  /** Copies the contents of other (same geometry). */
  copyFrom(other: Bitmap): void {
    const handle = this.#open();
    handle.copyFrom(this.#other(other));
  }

  /** The portable serialized form (magic, geometry, words, crc32c). */
  serialize(): Buffer {
    return this.#open().serialize();
  }

  /** Loads serialized bits of the same geometry into this bitmap. */
  deserializeInto(bytes: Uint8Array): void {
    const handle = this.#open();
    checkBytes(bytes, 'bytes');
    handle.deserializeInto(bytes);
  }

  /** Releases the storage (standalone) or the view (volume slot). Idempotent. */
  close(): void {
    const handle = this.#handle;
    if (handle === null) return;
    this.#handle = null;
    handle.close();
  }
}
