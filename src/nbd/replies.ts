// Notes on the design
// -------------------
// Reply output of a connection in transmission, and the helpers error replies share.
//
// ReplyWriter is a bump allocator over a per-connection arena: replies are written in place
// (READ data straight from the volume behind its header), and everything produced by one read
// event goes to the socket as one write, or one corked writev when a reply had a buffer of its
// own (too large for the arena). Invariant: an arena span handed to the socket is not written
// again until the socket has written everything (writableLength === 0); only then is the arena
// reused from its start. A full arena is replaced; up to SPARE_ARENAS retired ones are kept for
// reuse. The arena is allocated on the first reply, so connections still in the handshake hold
// none. The writer belongs to its connection and is never shared.
//
// errnoForVolumeError maps what the Volume API throws onto NBD error values; messageBytes caches
// the encoded message of an ERROR chunk (a bounded number of distinct messages).

import type * as net from 'node:net';

import * as P from './protocol';

/** One reply arena (transmission.ts gives replies over half of it a buffer of their own). */
export const ARENA_BYTES = 256 * 1024;
/** Retired arenas kept for reuse per connection. */
const SPARE_ARENAS = 4;
/** The arena of a writer before its first reply (also an empty receive buffer, connection.ts). */
export const EMPTY_ARENA = Buffer.alloc(0);

// ---------------------------------------------------------------------------------------------
// Volume error mapping
// ---------------------------------------------------------------------------------------------

/** The NBD error value for an error thrown by the Volume API. */
export function errnoForVolumeError(error: unknown): number {
  if (error instanceof RangeError || error instanceof TypeError) return P.NBD_EINVAL;
  const code = typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
  if (typeof code === 'string') {
    if (code.endsWith('_CLOSED')) return P.NBD_ESHUTDOWN;
    // A pair's volume that stopped being writable under an open connection (its primary was
    // demoted): the write is refused as on a read-only export.
    if (code === 'ERR_PAIR_READ_ONLY' || code === 'ERR_SNAPSHOT_READ_ONLY') return P.NBD_EPERM;
  }
  return P.NBD_EIO;
}

// ---------------------------------------------------------------------------------------------
// Error messages
// ---------------------------------------------------------------------------------------------

const messageBytesCache = new Map<string, Buffer>();
/** The encoded message of an ERROR chunk (at most 1024 bytes), cached for the first 256 messages. */
export function messageBytes(message: string): Buffer {
  let bytes = messageBytesCache.get(message);
  if (bytes === undefined) {
    bytes = P.truncatedUtf8(message, 1024);
    if (messageBytesCache.size < 256) messageBytesCache.set(message, bytes);
  }
  return bytes;
}

// ---------------------------------------------------------------------------------------------
// Reply output
// ---------------------------------------------------------------------------------------------

/**
 * Bump allocator for replies. Reply bytes are written at `arena[position..]`; flush() hands the
 * unwritten span to the socket. An arena span handed to the socket is not touched again until
 * the socket has written everything (writableLength === 0), then the arena is reused from the
 * start; a full arena is replaced (spares are recycled the same way).
 */
export class ReplyWriter {
  /** Allocated on the first reply (connections still in the handshake hold none). */
  arena: Buffer = EMPTY_ARENA;
  private cursor = 0;
  private segmentStart = 0;
  private pending: Buffer[] = [];
  private retired: Buffer[] = [];
  private spares: Buffer[] = [];
  private dedicatedPending = 0;

  constructor(private readonly socket: net.Socket) {}

  /** Bytes produced and not yet handed to the socket. */
  get unflushedBytes(): number {
    return this.cursor - this.segmentStart + this.dedicatedPending;
  }

  /** Call before producing replies: recycles arenas the socket has finished with. */
  begin(): void {
    if (this.cursor === this.segmentStart && this.pending.length === 0 && this.socket.writableLength === 0) {
      this.cursor = 0;
      this.segmentStart = 0;
      while (this.retired.length > 0) {
        const arena = this.retired.pop() as Buffer;
        if (this.spares.length < SPARE_ARENAS) this.spares.push(arena);
      }
    }
  }

  /** Position in `this.arena` where `byteLength` (<= DEDICATED_REPLY_BYTES) bytes may be written. */
  reserve(byteLength: number): number {
    if (this.cursor + byteLength > this.arena.length) {
      this.cutSegment();
      if (this.arena !== EMPTY_ARENA) this.retired.push(this.arena);
      this.arena = this.spares.pop() ?? Buffer.allocUnsafe(ARENA_BYTES);
      this.cursor = 0;
      this.segmentStart = 0;
    }
    return this.cursor;
  }

  /** Marks the arena as written up to `end` (a position returned by reserve plus what was written). */
  commit(end: number): void {
    this.cursor = end;
  }

  /** A buffer of its own for a large reply; it is sent in order with the arena spans. */
  dedicated(byteLength: number): Buffer {
    this.cutSegment();
    const buffer = Buffer.allocUnsafe(byteLength);
    this.pending.push(buffer);
    this.dedicatedPending += byteLength;
    return buffer;
  }

  /** Drops the last dedicated buffer (its reply failed and is replaced by an error reply). */
  dropDedicated(buffer: Buffer): void {
    const index = this.pending.lastIndexOf(buffer);
    if (index >= 0) {
      this.pending.splice(index, 1);
      this.dedicatedPending -= buffer.length;
    }
  }

  /** Shrinks the last dedicated buffer to `byteLength` (a reply shorter than reserved). */
  shrinkDedicated(buffer: Buffer, byteLength: number): void {
    const index = this.pending.lastIndexOf(buffer);
    if (index >= 0) {
      this.pending[index] = buffer.subarray(0, byteLength);
      this.dedicatedPending -= buffer.length - byteLength;
    }
  }

  /** Hands everything produced so far to the socket (one write, or one corked writev). */
  flush(): void {
    this.cutSegment();
    const pending = this.pending;
    if (pending.length === 0) return;
    this.pending = [];
    this.dedicatedPending = 0;
    if (!this.socket.writable) return;
    if (pending.length === 1) {
      this.socket.write(pending[0] as Buffer);
      return;
    }
    this.socket.cork();
    for (const buffer of pending) this.socket.write(buffer);
    this.socket.uncork();
  }

  private cutSegment(): void {
    if (this.cursor > this.segmentStart) {
      this.pending.push(this.arena.subarray(this.segmentStart, this.cursor));
      this.segmentStart = this.cursor;
    }
  }
}
