// Notes on the design
// -------------------
// The byte layer under the NBD codecs: ByteQueue (the received bytes not yet decoded) and the
// small number and string helpers that both the handshake and the transmission codecs use.
//
// ByteQueue
//   Both decoders read from a ByteQueue, a list of received chunks. They accept any split of the
//   byte stream: a message may arrive one byte at a time or many messages in one chunk. Chunks
//   are kept by reference: a reader that reuses its receive memory must not overwrite bytes
//   still queued (ByteQueue.moveTo copies them elsewhere so it can). A chunk that continues the
//   previous one in memory is merged with it, so consecutive reads into consecutive memory stay
//   one piece (the request decoder relies on this to hand out payloads without a copy).
//   Invariant: length is the sum of the unconsumed parts of the queued chunks; a fully consumed
//   head chunk is dropped at once.
//
// Numbers: offsets on the wire are u64. They are decoded to a double (high * 2^32 + low): exact
// below 2^53, and anything at or above 2^53 is beyond every export, so range checks stay right.
// TWO_POW_32 and EMPTY are shared by the protocol modules only (protocol.ts does not re-export
// them). Strings are cut to the spec's 4096-byte limit on a character boundary (truncatedUtf8).

import { NBD_MAX_STRING_BYTES } from './protocol-constants';

export const TWO_POW_32 = 4294967296;

/**
 * The received bytes not yet decoded, as the list of chunks they arrived in. Chunks are kept by
 * reference (no copy); consumed chunks are dropped.
 */
export class ByteQueue {
  /** Bytes buffered and not consumed. */
  length = 0;
  private chunks: Buffer[] = [];
  private headIndex = 0;
  private headOffset = 0;

  /**
   * Queues `chunk` by reference. A chunk that continues the last one in memory (same
   * ArrayBuffer, starting where it ends) is merged with it, so bytes a reader receives into
   * consecutive memory stay contiguous (a payload split over reads can still go out uncopied).
   */
  push(chunk: Buffer): void {
    const byteLength = chunk.length;
    if (byteLength === 0) return;
    const chunks = this.chunks;
    const lastIndex = chunks.length - 1;
    if (this.length > 0 && lastIndex >= 0) {
      const last = chunks[lastIndex] as Buffer;
      if (last.buffer === chunk.buffer && last.byteOffset + last.length === chunk.byteOffset) {
        chunks[lastIndex] = Buffer.from(last.buffer, last.byteOffset, last.length + byteLength);
        this.length += byteLength;
        return;
      }
    }
    chunks.push(chunk);
    this.length += byteLength;
  }

  /** Bytes available contiguously at the front (in the first chunk). */
  contiguousLength(): number {
    const head = this.chunks[this.headIndex];
    return head === undefined ? 0 : head.length - this.headOffset;
  }

  /** The first chunk and where its unconsumed part starts (call only when length > 0). */
  head(): Buffer {
    return this.chunks[this.headIndex] as Buffer;
  }

  headPosition(): number {
    return this.headOffset;
  }

  /** Copies `byteLength` bytes from the front into target at targetOffset, without consuming. */
  peekInto(target: Uint8Array, targetOffset: number, byteLength: number): void {
    let index = this.headIndex;
    let offset = this.headOffset;
    let copied = 0;
    while (copied < byteLength) {
      const chunk = this.chunks[index] as Buffer;
      const take = Math.min(chunk.length - offset, byteLength - copied);
      chunk.copy(target, targetOffset + copied, offset, offset + take);
      copied += take;
      index += 1;
      offset = 0;
    }
  }

  /** Copies `byteLength` bytes from the front into target and consumes them. */
  readInto(target: Uint8Array, targetOffset: number, byteLength: number): void {
    this.peekInto(target, targetOffset, byteLength);
    this.skip(byteLength);
  }

  /**
   * Copies the queued bytes to the start of `target` and queues that copy in place of the
   * chunks they were in, which are then no longer referenced (a reader that reuses its receive
   * buffers compacts with this). `target` must be at least `length` bytes and must not overlap
   * a queued chunk.
   */
  moveTo(target: Buffer): void {
    const length = this.length;
    if (target.length < length) throw new RangeError(`moveTo: target of ${target.length} bytes for ${length} queued`);
    this.peekInto(target, 0, length);
    this.chunks = length > 0 ? [target.subarray(0, length)] : [];
    this.headIndex = 0;
    this.headOffset = 0;
  }

  /** Consumes `byteLength` bytes (at most length). */
  skip(byteLength: number): void {
    let remaining = byteLength;
    this.length -= byteLength;
    while (remaining > 0) {
      const chunk = this.chunks[this.headIndex] as Buffer;
      const available = chunk.length - this.headOffset;
      if (remaining < available) {
        this.headOffset += remaining;
        return;
      }
      remaining -= available;
      this.dropHead();
    }
    // A fully consumed head chunk is dropped at once, so a later push starts a fresh head.
    const head = this.chunks[this.headIndex];
    if (head !== undefined && this.headOffset === head.length) this.dropHead();
  }

  private dropHead(): void {
    this.chunks[this.headIndex] = EMPTY;
    this.headIndex += 1;
    this.headOffset = 0;
    if (this.headIndex === this.chunks.length) {
      this.chunks.length = 0;
      this.headIndex = 0;
    } else if (this.headIndex >= 64) {
      this.chunks = this.chunks.slice(this.headIndex);
      this.headIndex = 0;
    }
  }
}

export const EMPTY = Buffer.alloc(0);

/** Writes a u64 given as a non-negative integer double (exact below 2^53). */
export function writeUInt64BE(target: Buffer, value: number, at: number): void {
  const high = Math.floor(value / TWO_POW_32);
  target.writeUInt32BE(high >>> 0, at);
  target.writeUInt32BE((value - high * TWO_POW_32) >>> 0, at + 4);
}

/** UTF-8 bytes of `text`, cut to the spec's 4096-byte string limit on a character boundary. */
export function truncatedUtf8(text: string, maxBytes: number = NBD_MAX_STRING_BYTES): Buffer {
  let bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= maxBytes) return bytes;
  let end = maxBytes;
  // Back up over continuation bytes so a character is not split.
  while (end > 0 && ((bytes[end] as number) & 0xc0) === 0x80) end -= 1;
  bytes = bytes.subarray(0, end);
  return bytes;
}
