// Notes on the design
// -------------------
// The handshake phase of the NBD wire format: the decoder for what a client sends (its flags,
// then options), pure parsers for option data, and encoders for everything the server answers
// (greeting, option replies, NBD_REP_INFO, NBD_REP_META_CONTEXT, the EXPORT_NAME reply). No
// sockets, no export state: handshake.ts drives these.
//
// HandshakeDecoder
//   Reads from a ByteQueue (protocol-bytes.ts), so any split of the stream decodes the same: the
//   client flags (4 bytes), then options (IHAVEOPT magic, option, length, data). Option data
//   longer than maxOptionBytes is refused before any of it is buffered (no real option needs more
//   than a few KiB: strings are at most 4096 bytes).
//
// Error contract
//   A malformed stream (bad magic, unknown client flags, an oversized option) makes next() throw
//   a BlockmirrorError with an ERR_NBD_* code. The decoder is then failed for good: every later
//   call throws the same error (a stream that lost framing cannot resynchronise). Nothing else is
//   ever thrown: every length is checked before it is used. The option parsers never throw: bad
//   option data is a ParseResult with the NBD_REP_ERR_* value to answer.

import { nbdError, NbdErrorCode } from './errors';
import {
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_INFO_BLOCK_SIZE,
  NBD_INFO_EXPORT,
  NBD_MAGIC_HIGH,
  NBD_MAGIC_LOW,
  NBD_MAX_STRING_BYTES,
  NBD_OPTION_HEADER_BYTES,
  NBD_OPTION_REPLY_HEADER_BYTES,
  NBD_OPTS_MAGIC_HIGH,
  NBD_OPTS_MAGIC_LOW,
  NBD_OPT_LIST,
  NBD_REP_ERR_INVALID,
  NBD_REP_ERR_TOO_BIG,
  NBD_REP_INFO,
  NBD_REP_MAGIC_HIGH,
  NBD_REP_MAGIC_LOW,
  NBD_REP_META_CONTEXT,
  NBD_REP_SERVER,
} from './protocol-constants';
import { ByteQueue, EMPTY, truncatedUtf8, writeUInt64BE } from './protocol-bytes';

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
