// Notes on the design
// -------------------
// The NBD wire format (NetworkBlockDevice doc/proto.md): constants, incremental decoders for the
// two phases and encoders for everything the server sends. No sockets, no timers, no volumes:
// the server (server.ts) owns those. Everything here is pure, so unit and property tests can
// drive it byte by byte.
//
// Decoders
//   Both decoders read from a ByteQueue, a list of received chunks. They accept any split of the
//   byte stream: a message may arrive one byte at a time or many messages in one chunk. Chunks
//   are kept by reference: a reader that reuses its receive memory must not overwrite bytes
//   still queued (ByteQueue.moveTo copies them elsewhere so it can).
//   - HandshakeDecoder: the client flags (4 bytes), then options (IHAVEOPT magic, option,
//     length, data). Option data longer than maxOptionBytes is refused before any of it is
//     buffered (no real option needs more than a few KiB: strings are at most 4096 bytes).
//   - RequestDecoder: the 28-byte request header, then the payload of NBD_CMD_WRITE. The
//     payload is handed out without a copy (a subarray of the received chunk) when it arrives in
//     one chunk. ByteQueue merges a chunk that continues the previous one in memory, so a reader
//     that receives consecutive reads into consecutive memory (server.ts) keeps a payload split
//     over reads in one piece: while everything queued of a payload is in one chunk the decoder
//     waits without copying. Once a payload arrived in pieces, it is assembled into one
//     per-decoder buffer that grows to the largest payload seen (at most maxPayloadBytes) and is
//     then reused. A reader that can choose where its bytes land may also receive the rest of an
//     incomplete payload straight into the assembly buffer: payloadWindow() moves what is queued
//     there and names the place for the rest, payloadReceived() reports what arrived (server.ts
//     reads the socket into it, for payloads too large for its receive buffer). push() stays
//     valid at any point.
//     A WRITE whose length exceeds maxPayloadBytes is read and discarded (never buffered) up to
//     maxDiscardBytes, and then handed out with payload = null and payloadDropped = true so the
//     server answers EINVAL and the stream stays in step; beyond maxDiscardBytes the decoder
//     fails.
//   The request object that RequestDecoder.next() returns is reused, and its payload may point
//   into the reused assembly buffer or into the caller's receive memory: both are valid only
//   until the next call to next() (and the caller must not reuse that memory before).
//
// Error contract
//   A malformed stream (bad magic, unknown client flags, an oversized option or write) makes
//   next() throw a BlockmirrorError with an ERR_NBD_* code. The decoder is then failed for good:
//   every later call throws the same error (a stream that lost framing cannot resynchronise).
//   Nothing else is ever thrown: every length is checked before it is used.
//   Requests that are well framed but invalid (unknown type, bad flags, out of range) are not
//   decoder errors: validateRequest() returns the NBD error value the spec asks for.
//
// Numbers: offsets on the wire are u64. They are decoded to a double (high * 2^32 + low): exact
// below 2^53, and anything at or above 2^53 is beyond every export, so range checks stay right.
// Cookies (the spec's "handle") are kept as two u32 halves and echoed back verbatim.

import { nbdError, NbdErrorCode } from './errors';

// ---------------------------------------------------------------------------------------------
// Constants
// ---------------------------------------------------------------------------------------------

/** 'NBDMAGIC' */
export const NBD_MAGIC_HIGH = 0x4e42444d;
export const NBD_MAGIC_LOW = 0x41474943;
/** 'IHAVEOPT' */
export const NBD_OPTS_MAGIC_HIGH = 0x49484156;
export const NBD_OPTS_MAGIC_LOW = 0x454f5054;
/** Option reply magic 0x0003e889045565a9. */
export const NBD_REP_MAGIC_HIGH = 0x0003e889;
export const NBD_REP_MAGIC_LOW = 0x045565a9;
export const NBD_REQUEST_MAGIC = 0x25609513;
export const NBD_SIMPLE_REPLY_MAGIC = 0x67446698;
export const NBD_STRUCTURED_REPLY_MAGIC = 0x668e33ef;

export const NBD_REQUEST_HEADER_BYTES = 28;
export const NBD_SIMPLE_REPLY_HEADER_BYTES = 16;
export const NBD_STRUCTURED_REPLY_HEADER_BYTES = 20;
export const NBD_OPTION_HEADER_BYTES = 16;
export const NBD_OPTION_REPLY_HEADER_BYTES = 20;
/** The spec's bound on every string (export names, descriptions, queries, messages). */
export const NBD_MAX_STRING_BYTES = 4096;

// Handshake flags (server -> client, 16 bits).
export const NBD_FLAG_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_NO_ZEROES = 1 << 1;
// Client flags (client -> server, 32 bits).
export const NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_C_NO_ZEROES = 1 << 1;

// Transmission flags (16 bits).
export const NBD_FLAG_HAS_FLAGS = 1 << 0;
export const NBD_FLAG_READ_ONLY = 1 << 1;
export const NBD_FLAG_SEND_FLUSH = 1 << 2;
export const NBD_FLAG_SEND_FUA = 1 << 3;
export const NBD_FLAG_ROTATIONAL = 1 << 4;
export const NBD_FLAG_SEND_TRIM = 1 << 5;
export const NBD_FLAG_SEND_WRITE_ZEROES = 1 << 6;
export const NBD_FLAG_SEND_DF = 1 << 7;
export const NBD_FLAG_CAN_MULTI_CONN = 1 << 8;
export const NBD_FLAG_SEND_RESIZE = 1 << 9;
export const NBD_FLAG_SEND_CACHE = 1 << 10;
export const NBD_FLAG_SEND_FAST_ZERO = 1 << 11;

// Options.
export const NBD_OPT_EXPORT_NAME = 1;
export const NBD_OPT_ABORT = 2;
export const NBD_OPT_LIST = 3;
export const NBD_OPT_PEEK_EXPORT = 4;
export const NBD_OPT_STARTTLS = 5;
export const NBD_OPT_INFO = 6;
export const NBD_OPT_GO = 7;
export const NBD_OPT_STRUCTURED_REPLY = 8;
export const NBD_OPT_LIST_META_CONTEXT = 9;
export const NBD_OPT_SET_META_CONTEXT = 10;
export const NBD_OPT_EXTENDED_HEADERS = 11;

// Option reply types.
export const NBD_REP_ACK = 1;
export const NBD_REP_SERVER = 2;
export const NBD_REP_INFO = 3;
export const NBD_REP_META_CONTEXT = 4;
export const NBD_REP_FLAG_ERROR = 0x80000000;
export const NBD_REP_ERR_UNSUP = 0x80000001;
export const NBD_REP_ERR_POLICY = 0x80000002;
export const NBD_REP_ERR_INVALID = 0x80000003;
export const NBD_REP_ERR_PLATFORM = 0x80000004;
export const NBD_REP_ERR_TLS_REQD = 0x80000005;
export const NBD_REP_ERR_UNKNOWN = 0x80000006;
export const NBD_REP_ERR_SHUTDOWN = 0x80000007;
export const NBD_REP_ERR_BLOCK_SIZE_REQD = 0x80000008;
export const NBD_REP_ERR_TOO_BIG = 0x80000009;

// NBD_REP_INFO types.
export const NBD_INFO_EXPORT = 0;
export const NBD_INFO_NAME = 1;
export const NBD_INFO_DESCRIPTION = 2;
export const NBD_INFO_BLOCK_SIZE = 3;

// Commands.
export const NBD_CMD_READ = 0;
export const NBD_CMD_WRITE = 1;
export const NBD_CMD_DISC = 2;
export const NBD_CMD_FLUSH = 3;
export const NBD_CMD_TRIM = 4;
export const NBD_CMD_CACHE = 5;
export const NBD_CMD_WRITE_ZEROES = 6;
export const NBD_CMD_BLOCK_STATUS = 7;
/** One past the largest command this server knows (for per-type tables). */
export const NBD_CMD_COUNT = 8;

// Command flags.
export const NBD_CMD_FLAG_FUA = 1 << 0;
export const NBD_CMD_FLAG_NO_HOLE = 1 << 1;
export const NBD_CMD_FLAG_DF = 1 << 2;
export const NBD_CMD_FLAG_REQ_ONE = 1 << 3;
export const NBD_CMD_FLAG_FAST_ZERO = 1 << 4;

// Structured reply flags and types.
export const NBD_REPLY_FLAG_DONE = 1 << 0;
export const NBD_REPLY_TYPE_NONE = 0;
export const NBD_REPLY_TYPE_OFFSET_DATA = 1;
export const NBD_REPLY_TYPE_OFFSET_HOLE = 2;
export const NBD_REPLY_TYPE_BLOCK_STATUS = 5;
export const NBD_REPLY_TYPE_ERROR = 0x8001;
export const NBD_REPLY_TYPE_ERROR_OFFSET = 0x8002;

// Error values (the only ones the spec allows on the wire).
export const NBD_EPERM = 1;
export const NBD_EIO = 5;
export const NBD_ENOMEM = 12;
export const NBD_EINVAL = 22;
export const NBD_ENOSPC = 28;
export const NBD_EOVERFLOW = 75;
export const NBD_ENOTSUP = 95;
export const NBD_ESHUTDOWN = 108;

// base:allocation flags.
export const NBD_STATE_HOLE = 1 << 0;
export const NBD_STATE_ZERO = 1 << 1;
/**
 * blockmirror:dirty:<bitmap> flag: the extent overlaps a track whose bit is set in the bitmap
 * (it changed since the bitmap was cleared). Clean extents report 0. Same value qemu uses for
 * its qemu:dirty-bitmap contexts.
 */
export const BLOCKMIRROR_STATE_DIRTY = 1 << 0;

export const BASE_ALLOCATION_CONTEXT = 'base:allocation';
export const DIRTY_CONTEXT_PREFIX = 'blockmirror:dirty:';

const COMMAND_NAMES = ['read', 'write', 'disc', 'flush', 'trim', 'cache', 'write-zeroes', 'block-status'] as const;
export type NbdCommandName = (typeof COMMAND_NAMES)[number];

/** A readable name for a command type ('unknown' for types this server does not know). */
export function commandName(type: number): NbdCommandName | 'unknown' {
  return type >= 0 && type < NBD_CMD_COUNT ? (COMMAND_NAMES[type] as NbdCommandName) : 'unknown';
}

const TWO_POW_32 = 4294967296;

// ---------------------------------------------------------------------------------------------
// ByteQueue
// ---------------------------------------------------------------------------------------------

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

const EMPTY = Buffer.alloc(0);

// ---------------------------------------------------------------------------------------------
// Handshake phase: decoder
// ---------------------------------------------------------------------------------------------

export type HandshakeMessage =
  | { kind: 'client-flags'; flags: number }
  | { kind: 'option'; option: number; data: Buffer };

export interface HandshakeDecoderOptions {
  /** Largest option data accepted. @default 65536 */
  maxOptionBytes?: number;
  /** Client flags the server understands (others are refused). @default FIXED_NEWSTYLE | NO_ZEROES */
  allowedClientFlags?: number;
}

export const DEFAULT_MAX_OPTION_BYTES = 64 * 1024;

const enum HandshakeState {
  ClientFlags,
  OptionHeader,
  OptionData,
}

/**
 * Decodes what a client sends during the handshake: its flags, then options. Throws a
 * BlockmirrorError (ERR_NBD_BAD_CLIENT_FLAGS, ERR_NBD_BAD_MAGIC, ERR_NBD_OPTION_TOO_LARGE) on a
 * malformed stream and stays failed.
 */
export class HandshakeDecoder {
  readonly queue: ByteQueue;
  private readonly maxOptionBytes: number;
  private readonly allowedClientFlags: number;
  private state = HandshakeState.ClientFlags;
  private option = 0;
  private optionByteLength = 0;
  private failure: Error | null = null;
  private readonly scratch = Buffer.alloc(NBD_OPTION_HEADER_BYTES);

  constructor(options: HandshakeDecoderOptions = {}, queue: ByteQueue = new ByteQueue()) {
    this.queue = queue;
    this.maxOptionBytes = options.maxOptionBytes ?? DEFAULT_MAX_OPTION_BYTES;
    this.allowedClientFlags = options.allowedClientFlags ?? NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES;
  }

  push(chunk: Buffer): void {
    this.queue.push(chunk);
  }

  /** True when no message is partly received. */
  get idle(): boolean {
    return this.queue.length === 0 && this.state !== HandshakeState.OptionData;
  }

  get failed(): boolean {
    return this.failure !== null;
  }

  /** The next complete message, or null when more bytes are needed. */
  next(): HandshakeMessage | null {
    if (this.failure !== null) throw this.failure;
    const queue = this.queue;
    switch (this.state) {
      case HandshakeState.ClientFlags: {
        if (queue.length < 4) return null;
        queue.readInto(this.scratch, 0, 4);
        const flags = this.scratch.readUInt32BE(0);
        if ((flags & ~this.allowedClientFlags) !== 0) {
          return this.fail('ERR_NBD_BAD_CLIENT_FLAGS', `unknown client flags 0x${flags.toString(16)}`);
        }
        this.state = HandshakeState.OptionHeader;
        return { kind: 'client-flags', flags };
      }
      case HandshakeState.OptionHeader: {
        if (queue.length < NBD_OPTION_HEADER_BYTES) return null;
        queue.readInto(this.scratch, 0, NBD_OPTION_HEADER_BYTES);
        if (this.scratch.readUInt32BE(0) !== NBD_OPTS_MAGIC_HIGH || this.scratch.readUInt32BE(4) !== NBD_OPTS_MAGIC_LOW) {
          return this.fail('ERR_NBD_BAD_MAGIC', 'option does not start with IHAVEOPT');
        }
        this.option = this.scratch.readUInt32BE(8);
        this.optionByteLength = this.scratch.readUInt32BE(12);
        if (this.optionByteLength > this.maxOptionBytes) {
          return this.fail(
            'ERR_NBD_OPTION_TOO_LARGE',
            `option ${this.option} carries ${this.optionByteLength} bytes (limit ${this.maxOptionBytes})`,
          );
        }
        this.state = HandshakeState.OptionData;
        return this.next();
      }
      case HandshakeState.OptionData: {
        if (queue.length < this.optionByteLength) return null;
        const data = Buffer.allocUnsafe(this.optionByteLength);
        queue.readInto(data, 0, this.optionByteLength);
        this.state = HandshakeState.OptionHeader;
        return { kind: 'option', option: this.option, data };
      }
    }
  }

  private fail(code: NbdErrorCode, message: string): never {
    this.failure = nbdError(code, message);
    throw this.failure;
  }
}

// ---------------------------------------------------------------------------------------------
// Handshake phase: option data parsers (pure; return an NBD_REP_ERR_* value on bad input)
// ---------------------------------------------------------------------------------------------

export interface InfoRequest {
  exportName: string;
  infoTypes: number[];
}

export type ParseResult<T> = { ok: true; value: T } | { ok: false; reply: number; message: string };

function invalid(message: string): { ok: false; reply: number; message: string } {
  return { ok: false, reply: NBD_REP_ERR_INVALID, message };
}

/** Strict UTF-8 decode without NUL; null when the bytes are not a valid NBD string. */
export function decodeNbdString(bytes: Buffer): string | null {
  if (bytes.length > NBD_MAX_STRING_BYTES) return null;
  if (bytes.includes(0)) return null;
  const text = bytes.toString('utf8');
  // Round-trip check: invalid sequences decode to U+FFFD and would not re-encode identically.
  if (Buffer.byteLength(text) !== bytes.length || !Buffer.from(text, 'utf8').equals(bytes)) return null;
  return text;
}

/** NBD_OPT_INFO / NBD_OPT_GO data: u32 name length, name, u16 count, count x u16. */
export function parseInfoRequest(data: Buffer): ParseResult<InfoRequest> {
  if (data.length < 6) return invalid('option data shorter than 6 bytes');
  const nameByteLength = data.readUInt32BE(0);
  if (nameByteLength > data.length - 6) return invalid('export name length exceeds the option data');
  const exportName = decodeNbdString(data.subarray(4, 4 + nameByteLength));
  if (exportName === null) return invalid('export name is not a valid NBD string');
  const count = data.readUInt16BE(4 + nameByteLength);
  if (data.length !== 4 + nameByteLength + 2 + 2 * count) {
    return invalid('information request count does not match the option length');
  }
  const infoTypes: number[] = [];
  for (let i = 0; i < count; i++) infoTypes.push(data.readUInt16BE(4 + nameByteLength + 2 + 2 * i));
  return { ok: true, value: { exportName, infoTypes } };
}

export interface MetaContextRequest {
  exportName: string;
  queries: string[];
}

/** Most queries accepted in one LIST/SET_META_CONTEXT (more gets NBD_REP_ERR_TOO_BIG). */
export const MAX_META_CONTEXT_QUERIES = 128;

/**
 * NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT data: u32 name length, name, u32 query
 * count, then count x (u32 length, query). Every query must hold a namespace and a colon.
 */
export function parseMetaContextRequest(data: Buffer): ParseResult<MetaContextRequest> {
  if (data.length < 8) return invalid('option data shorter than 8 bytes');
  const nameByteLength = data.readUInt32BE(0);
  if (nameByteLength > data.length - 8) return invalid('export name length exceeds the option data');
  const exportName = decodeNbdString(data.subarray(4, 4 + nameByteLength));
  if (exportName === null) return invalid('export name is not a valid NBD string');
  let position = 4 + nameByteLength;
  const count = data.readUInt32BE(position);
  position += 4;
  if (count > MAX_META_CONTEXT_QUERIES) {
    return { ok: false, reply: NBD_REP_ERR_TOO_BIG, message: `more than ${MAX_META_CONTEXT_QUERIES} queries` };
  }
  const queries: string[] = [];
  for (let i = 0; i < count; i++) {
    if (data.length - position < 4) return invalid('query length runs past the option data');
    const queryByteLength = data.readUInt32BE(position);
    position += 4;
    if (queryByteLength > data.length - position) return invalid('query runs past the option data');
    const query = decodeNbdString(data.subarray(position, position + queryByteLength));
    position += queryByteLength;
    if (query === null) return invalid('query is not a valid NBD string');
    const colon = query.indexOf(':');
    if (colon <= 0) return invalid(`query '${query}' lacks a namespace and colon`);
    queries.push(query);
  }
  if (position !== data.length) return invalid('trailing bytes after the last query');
  return { ok: true, value: { exportName, queries } };
}

// ---------------------------------------------------------------------------------------------
// Handshake phase: encoders
// ---------------------------------------------------------------------------------------------

/** NBDMAGIC, IHAVEOPT, 16-bit handshake flags (18 bytes). */
export function encodeGreeting(handshakeFlags: number): Buffer {
  const buffer = Buffer.allocUnsafe(18);
  buffer.writeUInt32BE(NBD_MAGIC_HIGH, 0);
  buffer.writeUInt32BE(NBD_MAGIC_LOW, 4);
  buffer.writeUInt32BE(NBD_OPTS_MAGIC_HIGH, 8);
  buffer.writeUInt32BE(NBD_OPTS_MAGIC_LOW, 12);
  buffer.writeUInt16BE(handshakeFlags, 16);
  return buffer;
}

/** One fixed-newstyle option reply: magic, option, reply type, length, data. */
export function encodeOptionReply(option: number, replyType: number, data: Buffer = EMPTY): Buffer {
  const buffer = Buffer.allocUnsafe(NBD_OPTION_REPLY_HEADER_BYTES + data.length);
  buffer.writeUInt32BE(NBD_REP_MAGIC_HIGH, 0);
  buffer.writeUInt32BE(NBD_REP_MAGIC_LOW, 4);
  buffer.writeUInt32BE(option >>> 0, 8);
  buffer.writeUInt32BE(replyType >>> 0, 12);
  buffer.writeUInt32BE(data.length, 16);
  data.copy(buffer, NBD_OPTION_REPLY_HEADER_BYTES);
  return buffer;
}

/** An error reply with a human-readable message (truncated to the string limit). */
export function encodeOptionError(option: number, replyType: number, message: string): Buffer {
  return encodeOptionReply(option, replyType, truncatedUtf8(message));
}

/** NBD_REP_SERVER: u32 name length, name, then an optional human-readable description. */
export function encodeServerReply(name: string, description = ''): Buffer {
  const nameBytes = Buffer.from(name, 'utf8');
  const descriptionBytes = truncatedUtf8(description);
  const data = Buffer.allocUnsafe(4 + nameBytes.length + descriptionBytes.length);
  data.writeUInt32BE(nameBytes.length, 0);
  nameBytes.copy(data, 4);
  descriptionBytes.copy(data, 4 + nameBytes.length);
  return encodeOptionReply(NBD_OPT_LIST, NBD_REP_SERVER, data);
}

/** NBD_REP_INFO / NBD_INFO_EXPORT: u16 type, u64 size, u16 transmission flags. */
export function encodeInfoExport(option: number, sizeBytes: number, transmissionFlags: number): Buffer {
  const data = Buffer.allocUnsafe(12);
  data.writeUInt16BE(NBD_INFO_EXPORT, 0);
  writeUInt64BE(data, sizeBytes, 2);
  data.writeUInt16BE(transmissionFlags, 10);
  return encodeOptionReply(option, NBD_REP_INFO, data);
}

/** NBD_REP_INFO / NBD_INFO_NAME or NBD_INFO_DESCRIPTION: u16 type, string. */
export function encodeInfoString(option: number, infoType: number, text: string): Buffer {
  const bytes = truncatedUtf8(text);
  const data = Buffer.allocUnsafe(2 + bytes.length);
  data.writeUInt16BE(infoType, 0);
  bytes.copy(data, 2);
  return encodeOptionReply(option, NBD_REP_INFO, data);
}

/** NBD_REP_INFO / NBD_INFO_BLOCK_SIZE: u16 type, u32 minimum, u32 preferred, u32 maximum. */
export function encodeInfoBlockSize(
  option: number,
  minimumBytes: number,
  preferredBytes: number,
  maximumBytes: number,
): Buffer {
  const data = Buffer.allocUnsafe(14);
  data.writeUInt16BE(NBD_INFO_BLOCK_SIZE, 0);
  data.writeUInt32BE(minimumBytes, 2);
  data.writeUInt32BE(preferredBytes, 6);
  data.writeUInt32BE(maximumBytes, 10);
  return encodeOptionReply(option, NBD_REP_INFO, data);
}

/** NBD_REP_META_CONTEXT: u32 context id, name. */
export function encodeMetaContextReply(option: number, contextId: number, name: string): Buffer {
  const nameBytes = Buffer.from(name, 'utf8');
  const data = Buffer.allocUnsafe(4 + nameBytes.length);
  data.writeUInt32BE(contextId >>> 0, 0);
  nameBytes.copy(data, 4);
  return encodeOptionReply(option, NBD_REP_META_CONTEXT, data);
}

/** The reply to NBD_OPT_EXPORT_NAME: u64 size, u16 flags, 124 zeroes unless NO_ZEROES. */
export function encodeExportNameReply(sizeBytes: number, transmissionFlags: number, noZeroes: boolean): Buffer {
  const buffer = Buffer.alloc(noZeroes ? 10 : 134);
  writeUInt64BE(buffer, sizeBytes, 0);
  buffer.writeUInt16BE(transmissionFlags, 8);
  return buffer;
}

// ---------------------------------------------------------------------------------------------
// Transmission phase: decoder
// ---------------------------------------------------------------------------------------------

/** One decoded request. The decoder reuses this object: copy what you keep. */
export interface NbdRequest {
  flags: number;
  type: number;
  cookieHigh: number;
  cookieLow: number;
  /** u64 offset as a double (exact below 2^53). */
  offset: number;
  length: number;
  /** WRITE payload (length bytes), or null for other commands and dropped payloads. */
  payload: Buffer | null;
  /** True when a WRITE longer than maxPayloadBytes was read and discarded. */
  payloadDropped: boolean;
  /** True when the payload was received into memory given by RequestDecoder.redirectPayload (the store). */
  payloadDirect: boolean;
}

export interface RequestDecoderOptions {
  /** Largest WRITE payload handed out. @default 33554432 (32 MiB) */
  maxPayloadBytes?: number;
  /** Largest WRITE payload read and discarded; longer ones fail the decoder. @default 2 x maxPayloadBytes */
  maxDiscardBytes?: number;
}

export const DEFAULT_MAX_PAYLOAD_BYTES = 32 * 1024 * 1024;
const MIN_ASSEMBLY_BYTES = 64 * 1024;

const enum RequestState {
  Header,
  /** A WRITE payload arriving in one piece: it stays queued until complete (then no copy). */
  Payload,
  /** A WRITE payload being copied into the assembly buffer (it arrived in pieces). */
  Assembling,
  Discard,
}

/**
 * Decodes transmission-phase requests. See the design note for payload ownership. Throws a
 * BlockmirrorError (ERR_NBD_BAD_MAGIC, ERR_NBD_PAYLOAD_TOO_LARGE) on a malformed stream and
 * stays failed; `request` then holds the header of the offending request.
 */
export class RequestDecoder {
  readonly queue: ByteQueue;
  readonly maxPayloadBytes: number;
  readonly maxDiscardBytes: number;
  readonly request: NbdRequest = {
    flags: 0,
    type: 0,
    cookieHigh: 0,
    cookieLow: 0,
    offset: 0,
    length: 0,
    payload: null,
    payloadDropped: false,
    payloadDirect: false,
  };
  private state = RequestState.Header;
  private failure: Error | null = null;
  private readonly headerScratch = Buffer.alloc(NBD_REQUEST_HEADER_BYTES);
  private assembly: Buffer = EMPTY;
  private assembled = 0;
  private remainingDiscardBytes = 0;
  /** The decoder's own assembly buffer while `assembly` is a redirected target (redirectPayload). */
  private ownAssembly: Buffer | null = null;

  constructor(options: RequestDecoderOptions = {}, queue: ByteQueue = new ByteQueue()) {
    this.queue = queue;
    this.maxPayloadBytes = options.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES;
    this.maxDiscardBytes = options.maxDiscardBytes ?? 2 * this.maxPayloadBytes;
  }

  push(chunk: Buffer): void {
    this.queue.push(chunk);
  }

  /** True when no request is partly received. */
  get idle(): boolean {
    return this.state === RequestState.Header && this.queue.length === 0;
  }

  get failed(): boolean {
    return this.failure !== null;
  }

  /** True between a request header and the end of its payload (an incomplete WRITE, kept or discarded). */
  get payloadPending(): boolean {
    return this.state !== RequestState.Header;
  }

  /** True while a pending payload is being copied into the assembly buffer. */
  get payloadAssembling(): boolean {
    return this.state === RequestState.Assembling;
  }

  /** Bytes of the pending WRITE payload neither queued nor assembled (0 when none is pending or it is dropped). */
  get missingPayloadBytes(): number {
    const state = this.state;
    if (state !== RequestState.Payload && state !== RequestState.Assembling) return 0;
    const missing = this.request.length - this.queue.length - (state === RequestState.Assembling ? this.assembled : 0);
    return missing > 0 ? missing : 0;
  }

  /**
   * In-place receive of a payload: while a kept WRITE payload is incomplete, moves what is
   * queued of it into the assembly buffer and returns the part of that buffer where its missing
   * bytes belong (from the first missing byte to the end of the payload); null when no payload
   * is missing (none pending, a dropped one, a complete one, a failed decoder). A reader may fill
   * a prefix of the window and report it with payloadReceived() instead of push(): the bytes are
   * then where next() would have copied them. The window is valid until next() or push().
   */
  payloadWindow(): Buffer | null {
    if (this.failure !== null || this.missingPayloadBytes === 0) return null;
    const length = this.request.length;
    if (this.state === RequestState.Payload) {
      if (this.assembly.length < length) this.growAssembly(length);
      this.assembled = 0;
      this.state = RequestState.Assembling;
    }
    const queued = this.queue.length;
    if (queued > 0) {
      // Every queued byte belongs to this payload (it is not complete).
      this.queue.readInto(this.assembly, this.assembled, queued);
      this.assembled += queued;
    }
    return this.assembly.subarray(this.assembled, length);
  }

  /** True while the pending payload goes to memory given by redirectPayload. */
  get payloadRedirected(): boolean {
    return this.ownAssembly !== null;
  }

  /**
   * Receive into the store: from now on the pending WRITE payload (its header is `request`; it
   * must be kept and incomplete) is assembled in `target` (request.length bytes) instead of the
   * decoder's own buffer; what was assembled of it already is copied there, queued bytes follow
   * as they are consumed (payloadWindow, next). next() hands the request out with payloadDirect
   * set and payload a view of `target`; the decoder's own buffer is used again after it.
   */
  redirectPayload(target: Buffer): void {
    const state = this.state;
    if (this.failure !== null || (state !== RequestState.Payload && state !== RequestState.Assembling) || this.ownAssembly !== null) {
      throw new RangeError('redirectPayload without a pending payload to redirect');
    }
    if (target.length !== this.request.length) {
      throw new RangeError(`redirectPayload target of ${target.length} bytes for a payload of ${this.request.length}`);
    }
    if (state === RequestState.Payload) {
      this.assembled = 0;
      this.state = RequestState.Assembling;
    } else if (this.assembled > 0) {
      this.assembly.copy(target, 0, 0, this.assembled);
    }
    this.ownAssembly = this.assembly;
    this.assembly = target;
    this.request.payloadDirect = true;
  }

  /** Reports that the first `byteLength` bytes of payloadWindow() were filled. */
  payloadReceived(byteLength: number): void {
    if (
      this.state !== RequestState.Assembling ||
      this.queue.length !== 0 ||
      !Number.isInteger(byteLength) ||
      byteLength < 0 ||
      byteLength > this.request.length - this.assembled
    ) {
      throw new RangeError(`payloadReceived(${byteLength}) without a payload window that large`);
    }
    this.assembled += byteLength;
  }

  /** The next complete request (the reused `request` object), or null when more bytes are needed. */
  next(): NbdRequest | null {
    if (this.failure !== null) throw this.failure;
    const queue = this.queue;
    const request = this.request;
    if (this.state === RequestState.Header) {
      if (queue.length < NBD_REQUEST_HEADER_BYTES) return null;
      let source: Buffer;
      let at: number;
      if (queue.contiguousLength() >= NBD_REQUEST_HEADER_BYTES) {
        source = queue.head();
        at = queue.headPosition();
      } else {
        queue.peekInto(this.headerScratch, 0, NBD_REQUEST_HEADER_BYTES);
        source = this.headerScratch;
        at = 0;
      }
      const magic = source.readUInt32BE(at);
      request.flags = source.readUInt16BE(at + 4);
      request.type = source.readUInt16BE(at + 6);
      request.cookieHigh = source.readUInt32BE(at + 8);
      request.cookieLow = source.readUInt32BE(at + 12);
      request.offset = source.readUInt32BE(at + 16) * TWO_POW_32 + source.readUInt32BE(at + 20);
      request.length = source.readUInt32BE(at + 24);
      request.payload = null;
      request.payloadDropped = false;
      request.payloadDirect = false;
      queue.skip(NBD_REQUEST_HEADER_BYTES);
      if (magic !== NBD_REQUEST_MAGIC) {
        return this.fail('ERR_NBD_BAD_MAGIC', `request magic 0x${magic.toString(16).padStart(8, '0')}`);
      }
      if (request.type !== NBD_CMD_WRITE || request.length === 0) return request;
      if (request.length > this.maxPayloadBytes) {
        if (request.length > this.maxDiscardBytes) {
          return this.fail(
            'ERR_NBD_PAYLOAD_TOO_LARGE',
            `write payload of ${request.length} bytes (limit ${this.maxPayloadBytes}, discard limit ${this.maxDiscardBytes})`,
          );
        }
        this.remainingDiscardBytes = request.length;
        this.state = RequestState.Discard;
      } else {
        this.state = RequestState.Payload;
      }
    }
    if (this.state === RequestState.Payload) {
      const length = request.length;
      const contiguous = queue.contiguousLength();
      if (contiguous >= length) {
        // The whole payload in one chunk: handed out without a copy.
        const head = queue.head();
        const start = queue.headPosition();
        request.payload = head.subarray(start, start + length);
        queue.skip(length);
        this.state = RequestState.Header;
        return request;
      }
      // Still one piece (everything queued is in the first chunk): wait, the rest may continue
      // it in memory. Otherwise it arrived in pieces: assemble it.
      if (contiguous === queue.length) return null;
      if (this.assembly.length < length) this.growAssembly(length);
      this.assembled = 0;
      this.state = RequestState.Assembling;
    }
    if (this.state === RequestState.Assembling) {
      const length = request.length;
      const take = Math.min(queue.length, length - this.assembled);
      if (take > 0) {
        queue.readInto(this.assembly, this.assembled, take);
        this.assembled += take;
      }
      if (this.assembled < length) return null;
      this.assembled = 0;
      this.state = RequestState.Header;
      request.payload = this.assembly.subarray(0, length);
      const own = this.ownAssembly;
      if (own !== null) {
        this.assembly = own;
        this.ownAssembly = null;
      }
      return request;
    }
    // Discard: skip what has arrived; hand the request out once the whole payload is gone.
    const take = Math.min(queue.length, this.remainingDiscardBytes);
    queue.skip(take);
    this.remainingDiscardBytes -= take;
    if (this.remainingDiscardBytes > 0) return null;
    this.state = RequestState.Header;
    request.payload = null;
    request.payloadDropped = true;
    return request;
  }

  private growAssembly(byteLength: number): void {
    let size = Math.max(MIN_ASSEMBLY_BYTES, this.assembly.length);
    while (size < byteLength) size *= 2;
    this.assembly = Buffer.allocUnsafe(Math.min(size, Math.max(byteLength, this.maxPayloadBytes)));
  }

  private fail(code: NbdErrorCode, message: string): never {
    this.failure = nbdError(code, message);
    throw this.failure;
  }
}

// ---------------------------------------------------------------------------------------------
// Transmission phase: request validation
// ---------------------------------------------------------------------------------------------

/** What validation needs to know about the export and the negotiated session. */
export interface ExportLimits {
  sizeBytes: number;
  transmissionFlags: number;
  /** Advertised minimum block size (1 when any byte offset works). */
  minimumBlockBytes: number;
  /** Advertised maximum block size (READ/WRITE length limit). */
  maximumBlockBytes: number;
  /** Number of metadata contexts selected for this export. */
  metaContextCount: number;
}

/** A rejected request: the NBD error value and a message for structured error chunks. */
export interface RequestRejection {
  readonly errno: number;
  readonly message: string;
}

function rejection(errno: number, message: string): RequestRejection {
  return Object.freeze({ errno, message });
}

export const REJECT = {
  unknownCommand: rejection(NBD_EINVAL, 'unknown command'),
  badFlags: rejection(NBD_EINVAL, 'command flags not valid for this command'),
  readOnly: rejection(NBD_EPERM, 'export is read-only'),
  flushArguments: rejection(NBD_EINVAL, 'flush offset and length must be zero'),
  noMetaContext: rejection(NBD_EINVAL, 'no metadata context was selected'),
  zeroLength: rejection(NBD_EINVAL, 'length must not be zero'),
  beyondEndWrite: rejection(NBD_ENOSPC, 'write beyond the end of the export'),
  beyondEnd: rejection(NBD_EINVAL, 'request beyond the end of the export'),
  misaligned: rejection(NBD_EINVAL, 'offset or length not aligned to the minimum block size'),
  tooLarge: rejection(NBD_EINVAL, 'length exceeds the maximum block size'),
  payloadDropped: rejection(NBD_EINVAL, 'write payload exceeds the server limit'),
} as const;

const WRITE_CLASS = (1 << NBD_CMD_WRITE) | (1 << NBD_CMD_TRIM) | (1 << NBD_CMD_WRITE_ZEROES);
const NEEDS_LENGTH =
  (1 << NBD_CMD_READ) |
  (1 << NBD_CMD_WRITE) |
  (1 << NBD_CMD_TRIM) |
  (1 << NBD_CMD_CACHE) |
  (1 << NBD_CMD_WRITE_ZEROES) |
  (1 << NBD_CMD_BLOCK_STATUS);

/** Command flags valid for `type` given the transmission flags the server advertised. */
export function allowedCommandFlags(type: number, transmissionFlags: number): number {
  let allowed = transmissionFlags & NBD_FLAG_SEND_FUA ? NBD_CMD_FLAG_FUA : 0;
  switch (type) {
    case NBD_CMD_READ:
      if (transmissionFlags & NBD_FLAG_SEND_DF) allowed |= NBD_CMD_FLAG_DF;
      break;
    case NBD_CMD_WRITE_ZEROES:
      allowed |= NBD_CMD_FLAG_NO_HOLE;
      if (transmissionFlags & NBD_FLAG_SEND_FAST_ZERO) allowed |= NBD_CMD_FLAG_FAST_ZERO;
      break;
    case NBD_CMD_BLOCK_STATUS:
      allowed |= NBD_CMD_FLAG_REQ_ONE;
      break;
    default:
      break;
  }
  return allowed;
}

/**
 * Checks a decoded request against the export, in the order: known command, read-only (EPERM
 * for WRITE/TRIM/WRITE_ZEROES), command flags, command-specific rules, zero length, range
 * (ENOSPC for writes, EINVAL otherwise, as the spec's error section says), alignment, size.
 * Returns null when the request may run. NBD_CMD_DISC is always accepted (it has no reply).
 */
export function validateRequest(request: NbdRequest, limits: ExportLimits): RequestRejection | null {
  const type = request.type;
  if (type >= NBD_CMD_COUNT || type === NBD_CMD_DISC) {
    return type === NBD_CMD_DISC ? null : REJECT.unknownCommand;
  }
  const flags = limits.transmissionFlags;
  const typeBit = 1 << type;
  if (typeBit & WRITE_CLASS && flags & NBD_FLAG_READ_ONLY) return REJECT.readOnly;
  if ((request.flags & ~allowedCommandFlags(type, flags)) !== 0) return REJECT.badFlags;
  if (type === NBD_CMD_FLUSH) {
    return request.offset !== 0 || request.length !== 0 ? REJECT.flushArguments : null;
  }
  if (type === NBD_CMD_BLOCK_STATUS && limits.metaContextCount === 0) return REJECT.noMetaContext;
  if (typeBit & NEEDS_LENGTH && request.length === 0) return REJECT.zeroLength;
  if (request.offset + request.length > limits.sizeBytes) {
    return type === NBD_CMD_WRITE || type === NBD_CMD_WRITE_ZEROES ? REJECT.beyondEndWrite : REJECT.beyondEnd;
  }
  const minimum = limits.minimumBlockBytes;
  if (minimum > 1 && (request.offset % minimum !== 0 || request.length % minimum !== 0)) {
    return REJECT.misaligned;
  }
  if (request.payloadDropped) return REJECT.payloadDropped;
  // Only lengths that travel as payload are bounded. The spec also asks clients to keep
  // WRITE_ZEROES and CACHE within the maximum, but real clients do not (nbdcopy 1.14 zeroes in
  // requests far larger than 32 MiB), and neither costs a buffer here: they are served at any
  // length within the export, as nbdkit does.
  if (request.length > limits.maximumBlockBytes && (type === NBD_CMD_READ || type === NBD_CMD_WRITE)) {
    return REJECT.tooLarge;
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// Transmission phase: encoders (write into a caller's buffer at a position, return the end)
// ---------------------------------------------------------------------------------------------

/** Writes a u64 given as a non-negative integer double (exact below 2^53). */
export function writeUInt64BE(target: Buffer, value: number, at: number): void {
  const high = Math.floor(value / TWO_POW_32);
  target.writeUInt32BE(high >>> 0, at);
  target.writeUInt32BE((value - high * TWO_POW_32) >>> 0, at + 4);
}

/** Simple reply header (16 bytes); READ data, if any, follows. */
export function writeSimpleReply(target: Buffer, at: number, errno: number, cookieHigh: number, cookieLow: number): number {
  target.writeUInt32BE(NBD_SIMPLE_REPLY_MAGIC, at);
  target.writeUInt32BE(errno, at + 4);
  target.writeUInt32BE(cookieHigh, at + 8);
  target.writeUInt32BE(cookieLow, at + 12);
  return at + NBD_SIMPLE_REPLY_HEADER_BYTES;
}

/** Structured reply chunk header (20 bytes); `payloadBytes` of payload follow. */
export function writeChunkHeader(
  target: Buffer,
  at: number,
  flags: number,
  type: number,
  cookieHigh: number,
  cookieLow: number,
  payloadBytes: number,
): number {
  target.writeUInt32BE(NBD_STRUCTURED_REPLY_MAGIC, at);
  target.writeUInt16BE(flags, at + 4);
  target.writeUInt16BE(type, at + 6);
  target.writeUInt32BE(cookieHigh, at + 8);
  target.writeUInt32BE(cookieLow, at + 12);
  target.writeUInt32BE(payloadBytes, at + 16);
  return at + NBD_STRUCTURED_REPLY_HEADER_BYTES;
}

/** Bytes of an OFFSET_DATA chunk before its data (header + u64 offset). */
export const OFFSET_DATA_PREFIX_BYTES = NBD_STRUCTURED_REPLY_HEADER_BYTES + 8;
export const OFFSET_HOLE_CHUNK_BYTES = NBD_STRUCTURED_REPLY_HEADER_BYTES + 12;

/** OFFSET_DATA header and offset; the caller puts `dataBytes` of data at the returned position. */
export function writeOffsetDataPrefix(
  target: Buffer,
  at: number,
  flags: number,
  cookieHigh: number,
  cookieLow: number,
  offset: number,
  dataBytes: number,
): number {
  const position = writeChunkHeader(target, at, flags, NBD_REPLY_TYPE_OFFSET_DATA, cookieHigh, cookieLow, 8 + dataBytes);
  writeUInt64BE(target, offset, position);
  return position + 8;
}

/** OFFSET_HOLE chunk (32 bytes). */
export function writeOffsetHole(
  target: Buffer,
  at: number,
  flags: number,
  cookieHigh: number,
  cookieLow: number,
  offset: number,
  holeBytes: number,
): number {
  const position = writeChunkHeader(target, at, flags, NBD_REPLY_TYPE_OFFSET_HOLE, cookieHigh, cookieLow, 12);
  writeUInt64BE(target, offset, position);
  target.writeUInt32BE(holeBytes, position + 8);
  return position + 12;
}

/** NONE chunk with DONE (20 bytes). */
export function writeNoneChunk(target: Buffer, at: number, cookieHigh: number, cookieLow: number): number {
  return writeChunkHeader(target, at, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, cookieHigh, cookieLow, 0);
}

/** Bytes of an ERROR chunk carrying `messageBytes` of message. */
export function errorChunkBytes(messageBytes: number): number {
  return NBD_STRUCTURED_REPLY_HEADER_BYTES + 6 + messageBytes;
}

/** ERROR chunk: u32 error, u16 message length, message (ASCII/UTF-8, at most 4096 bytes). */
export function writeErrorChunk(
  target: Buffer,
  at: number,
  flags: number,
  cookieHigh: number,
  cookieLow: number,
  errno: number,
  message: Buffer,
): number {
  const position = writeChunkHeader(target, at, flags, NBD_REPLY_TYPE_ERROR, cookieHigh, cookieLow, 6 + message.length);
  target.writeUInt32BE(errno, position);
  target.writeUInt16BE(message.length, position + 4);
  message.copy(target, position + 6);
  return position + 6 + message.length;
}

/** One block status descriptor. */
export interface BlockStatusExtent {
  byteLength: number;
  flags: number;
}

/** Bytes of a BLOCK_STATUS chunk with `extentCount` descriptors. */
export function blockStatusChunkBytes(extentCount: number): number {
  return NBD_STRUCTURED_REPLY_HEADER_BYTES + 4 + 8 * extentCount;
}

/** BLOCK_STATUS chunk: u32 context id, then (u32 length, u32 flags) per extent. */
export function writeBlockStatusChunk(
  target: Buffer,
  at: number,
  flags: number,
  cookieHigh: number,
  cookieLow: number,
  contextId: number,
  extents: readonly BlockStatusExtent[],
): number {
  let position = writeChunkHeader(
    target,
    at,
    flags,
    NBD_REPLY_TYPE_BLOCK_STATUS,
    cookieHigh,
    cookieLow,
    4 + 8 * extents.length,
  );
  target.writeUInt32BE(contextId >>> 0, position);
  position += 4;
  for (const extent of extents) {
    target.writeUInt32BE(extent.byteLength, position);
    target.writeUInt32BE(extent.flags >>> 0, position + 4);
    position += 8;
  }
  return position;
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

// ---------------------------------------------------------------------------------------------
// Convenience encoders that allocate (tests, cold paths)
// ---------------------------------------------------------------------------------------------

/** A request as a client sends it (tests and the test client). */
export function encodeRequest(
  type: number,
  flags: number,
  cookie: bigint,
  offset: bigint | number,
  length: number,
  payload?: Uint8Array,
): Buffer {
  const body = payload ?? new Uint8Array(0);
  const buffer = Buffer.allocUnsafe(NBD_REQUEST_HEADER_BYTES + body.length);
  buffer.writeUInt32BE(NBD_REQUEST_MAGIC, 0);
  buffer.writeUInt16BE(flags, 4);
  buffer.writeUInt16BE(type, 6);
  buffer.writeBigUInt64BE(BigInt.asUintN(64, cookie), 8);
  buffer.writeBigUInt64BE(BigInt.asUintN(64, BigInt(offset)), 16);
  buffer.writeUInt32BE(length >>> 0, 24);
  buffer.set(body, NBD_REQUEST_HEADER_BYTES);
  return buffer;
}

/** An option as a client sends it. */
export function encodeOption(option: number, data: Uint8Array = new Uint8Array(0)): Buffer {
  const buffer = Buffer.allocUnsafe(NBD_OPTION_HEADER_BYTES + data.length);
  buffer.writeUInt32BE(NBD_OPTS_MAGIC_HIGH, 0);
  buffer.writeUInt32BE(NBD_OPTS_MAGIC_LOW, 4);
  buffer.writeUInt32BE(option >>> 0, 8);
  buffer.writeUInt32BE(data.length, 12);
  buffer.set(data, NBD_OPTION_HEADER_BYTES);
  return buffer;
}

/** NBD_OPT_INFO / NBD_OPT_GO data. */
export function encodeInfoRequestData(exportName: string, infoTypes: readonly number[] = []): Buffer {
  const name = Buffer.from(exportName, 'utf8');
  const data = Buffer.allocUnsafe(4 + name.length + 2 + 2 * infoTypes.length);
  data.writeUInt32BE(name.length, 0);
  name.copy(data, 4);
  data.writeUInt16BE(infoTypes.length, 4 + name.length);
  infoTypes.forEach((infoType, i) => data.writeUInt16BE(infoType, 4 + name.length + 2 + 2 * i));
  return data;
}

/** NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT data. */
export function encodeMetaContextRequestData(exportName: string, queries: readonly string[]): Buffer {
  const parts: Buffer[] = [];
  const name = Buffer.from(exportName, 'utf8');
  const head = Buffer.allocUnsafe(4);
  head.writeUInt32BE(name.length, 0);
  parts.push(head, name);
  const count = Buffer.allocUnsafe(4);
  count.writeUInt32BE(queries.length, 0);
  parts.push(count);
  for (const query of queries) {
    const bytes = Buffer.from(query, 'utf8');
    const length = Buffer.allocUnsafe(4);
    length.writeUInt32BE(bytes.length, 0);
    parts.push(length, bytes);
  }
  return Buffer.concat(parts);
}

/** The 64-bit cookie of a request as a bigint. */
export function cookieOf(request: Pick<NbdRequest, 'cookieHigh' | 'cookieLow'>): bigint {
  return (BigInt(request.cookieHigh) << 32n) | BigInt(request.cookieLow);
}
