// Notes on the design
// -------------------
// The link's frame codec: pure, no sockets, no timers. Every byte between two controllers is a
// frame:
//
//   offset size field
//        0    4 magic          0x424d4c4b ("BMLK")
//        4    1 version        FRAME_VERSION (the framing; the link protocol version is agreed
//                              in the handshake, so framing stays stable across protocol versions)
//        5    1 type           a FrameType (link-level) or a registered message type
//        6    2 flags          FrameFlag bits; undefined bits must be zero
//        8    8 sequence       per connection and direction, 1, 2, 3, ... with no gap
//       16    4 correlation    request id of a request/response pair, 0 otherwise
//       20    4 payloadLength  bytes after the header
//       24    4 crc32c         CRC32C of bytes 0..23 followed by the payload
//       28      payload
//
// All fields are big-endian (network order, as NBD). The decoder accepts any split of the byte
// stream: it keeps at most one header and one payload being assembled, whose size it checked
// against maxFrameBytes before allocating, so memory stays within the limit whatever arrives.
// A bad frame throws a LinkError (ERR_LINK_*) and poisons the decoder: every later push throws
// the same error, because after one bad frame nothing that follows can be trusted. The caller
// closes that connection only.
//
// A payload that arrives inside one chunk is handed out as a view of that chunk (no copy); one
// that spans chunks is assembled (one copy) into a buffer of its exact size, or, with
// `reuseAssembly`, into one buffer the decoder keeps and reuses: then a payload is valid only
// until the next push (the caller copies what it keeps). Reuse spares a fresh large allocation
// per frame (page faults and GC pressure from external memory dominate the cost of 1 MiB frames).
//
// Large payloads need not be copied at all: readTarget() names the rest of the payload being
// assembled, and a wire that can read into a buffer of the caller's choosing (tcp.ts) reads the
// socket straight into it. A chunk pushed that lies exactly where the payload's next byte goes
// (same memory, same offset) is taken in place; any other chunk is copied as before, so the
// target is only an offer: whatever the wire does, the decoded frames are the same. Of a large
// payload the rest is offered however short it is, and after one the decoder offers its 28-byte
// header buffer for the next header alone: frames of one stream tend to be alike, and a header
// read on its own lets the next payload be read straight into place from its first byte (a
// 64 KiB frame read in 64 KiB chunks would otherwise almost always start inside a chunk of the
// wire's own, and be copied whole). Small frames are read in bulk as before.
//
// The CRC of a spanning payload is computed piece by piece as the pieces arrive (while they are
// still in the cache the kernel or the copy just wrote them through), not in a second pass over
// the whole payload at its end; crc32c(b, crc32c(a)) === crc32c(a + b) makes the result equal.
// Payloads go to the addon's crc32c (SSE4.2). The 24 header bytes, and payloads of at most
// SMALL_CRC_BYTES (acknowledgements, heartbeats), are summed here in JS with a table: a call
// into the addon plus the view it needs cost more than those few table steps (~0.3 us against
// ~50 ns a header, twice per frame, which is most of a 4 KiB frame's decoding).

import { addon } from '../native';
import { LinkError } from './errors';
import { DEFAULT_MAX_FRAME_BYTES, MAX_MAX_FRAME_BYTES, MIN_MAX_FRAME_BYTES } from './limits';

/** Payloads of at most this many bytes are summed in JS (see the design note). */
export const SMALL_CRC_BYTES = 64;

/** The CRC32C (Castagnoli, reflected 0x82f63b78) table of one byte. */
const CRC32C_TABLE = (() => {
  const table = new Int32Array(256);
  for (let index = 0; index < 256; index++) {
    let crc = index;
    for (let bit = 0; bit < 8; bit++) crc = (crc & 1) !== 0 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
    table[index] = crc;
  }
  return table;
})();

/**
 * CRC32C of bytes[start, end), continuing from `previous` exactly as the addon's
 * crc32c(bytes.subarray(start, end), previous) does; for a few dozen bytes only.
 */
export function crc32cSmall(bytes: Uint8Array, start: number, end: number, previous: number): number {
  let crc = ~previous;
  for (let index = start; index < end; index++) crc = (CRC32C_TABLE[(crc ^ (bytes[index] as number)) & 0xff] as number) ^ (crc >>> 8);
  return ~crc >>> 0;
}

// crc32cCombine: the CRC of A followed by B from crc(A), crc(B) and |B| alone, as zlib's
// crc32_combine does for CRC-32: crc(A B) = crc(A) * x^(8|B|) mod P, xor crc(B), in the reflected
// representation. x^(2^k) mod P is tabulated; x^(8n) mod P is cached for the few lengths a
// stream of like records repeats (4 KiB, 64 KiB), so a combine costs one multiply: 32 steps.
const CRC32C_POLY = 0x82f63b78;

/** a(x) * b(x) modulo the CRC32C polynomial, both reflected. */
function multiplyModP(a: number, b: number): number {
  let m = 0x80000000;
  let product = 0;
  for (;;) {
    if ((a & m) !== 0) {
      product ^= b;
      if ((a & (m - 1)) === 0) break;
    }
    m >>>= 1;
    b = (b & 1) !== 0 ? (b >>> 1) ^ CRC32C_POLY : b >>> 1;
  }
  return product >>> 0;
}

/** X_POW_2K[k] = x^(2^k) mod P. */
const X_POW_2K = (() => {
  const table = new Uint32Array(32);
  let power = 0x40000000; // x^1
  for (let k = 0; k < 32; k++) {
    table[k] = power;
    power = multiplyModP(power, power);
  }
  return table;
})();

const shiftCache = new Map<number, number>();
const SHIFT_CACHE_LIMIT = 64;

/** x^(8 n) mod P. */
function byteShift(n: number): number {
  const cached = shiftCache.get(n);
  if (cached !== undefined) return cached;
  let power = 0x80000000; // x^0
  let k = 3;
  for (let rest = n; rest > 0; rest = Math.floor(rest / 2), k++) {
    if (rest % 2 === 1) power = multiplyModP(X_POW_2K[k & 31] as number, power);
  }
  if (shiftCache.size < SHIFT_CACHE_LIMIT) shiftCache.set(n, power);
  return power;
}

/**
 * CRC32C of A followed by B, from crcA = crc32c(A), crcB = crc32c(B) and B's length: equal to
 * crc32c(B, crc32c(A)) without reading B (see the note above).
 */
export function crc32cCombine(crcA: number, crcB: number, lengthB: number): number {
  if (lengthB === 0) return crcA >>> 0;
  return (multiplyModP(byteShift(lengthB), crcA >>> 0) ^ crcB) >>> 0;
}

/** CRC32C of a payload continuing from `previous`: in JS when small, else by the addon. */
function crcOfPayload(payload: Uint8Array, previous: number): number {
  return payload.length <= SMALL_CRC_BYTES ? crc32cSmall(payload, 0, payload.length, previous) : addon.crc32c(payload, previous);
}

export const FRAME_MAGIC = 0x424d4c4b;
export const FRAME_VERSION = 1;
export const FRAME_HEADER_BYTES = 28;
export { DEFAULT_MAX_FRAME_BYTES, MAX_MAX_FRAME_BYTES, MIN_MAX_FRAME_BYTES } from './limits';

/** Link-level frame types (0x01-0x1f). Message types of the protocols above start at 0x20. */
export const FrameType = Object.freeze({
  HELLO: 0x01,
  HELLO_REPLY: 0x02,
  AUTH: 0x03,
  WELCOME: 0x04,
  REFUSE: 0x05,
  PING: 0x06,
  PONG: 0x07,
  ACK: 0x08,
  GOODBYE: 0x09,
});

export const FIRST_MESSAGE_TYPE = 0x20;

/** Flag bits. */
export const FrameFlag = Object.freeze({
  /** The frame is a request; `correlation` names it and a response is expected. */
  REQUEST: 0x0001,
  /** The frame answers the request named by `correlation`. */
  RESPONSE: 0x0002,
  /** With RESPONSE: the request failed; the payload is an encoded remote error. */
  ERROR: 0x0004,
});
const KNOWN_FLAGS = FrameFlag.REQUEST | FrameFlag.RESPONSE | FrameFlag.ERROR;

const LINK_TYPES = new Set<number>(Object.values(FrameType));

/** One decoded frame. */
export interface Frame {
  type: number;
  flags: number;
  sequence: number;
  correlation: number;
  payload: Buffer;
}

/** Options of the decoder. */
export interface FrameDecoderOptions {
  /** Largest frame accepted, header included. @default DEFAULT_MAX_FRAME_BYTES */
  maxFrameBytes?: number;
  /** Which message types (>= 0x20) are known; link-level types always are. @default none */
  isKnownMessageType?: (type: number) => boolean;
  /** Assemble spanning payloads in one reused buffer (valid until the next push). @default false */
  reuseAssembly?: boolean;
}

function checkMaxFrameBytes(value: number | undefined): number {
  const result = value ?? DEFAULT_MAX_FRAME_BYTES;
  if (!Number.isSafeInteger(result) || result < MIN_MAX_FRAME_BYTES || result > MAX_MAX_FRAME_BYTES) {
    throw new RangeError(`maxFrameBytes must be an integer from ${MIN_MAX_FRAME_BYTES} to ${MAX_MAX_FRAME_BYTES}, got ${value}`);
  }
  return result;
}

/** True for a link-level frame type. */
export function isLinkFrameType(type: number): boolean {
  return LINK_TYPES.has(type);
}

/** Encodes frames for one direction of one connection (it owns the sequence). */
export class FrameEncoder {
  private nextSequence = 1;
  readonly maxFrameBytes: number;

  constructor(options: { maxFrameBytes?: number } = {}) {
    this.maxFrameBytes = checkMaxFrameBytes(options.maxFrameBytes);
  }

  /** The sequence the next frame will carry. */
  get sequence(): number {
    return this.nextSequence;
  }

  /**
   * Encodes one frame: returns [header, payload] (the payload is not copied; keep it unchanged
   * until written) and the sequence it was given. `payloadCrc`, when the caller knows it (the
   * payload's crc32c from 0, made from CRCs it already holds), spares a pass over the payload:
   * the frame's CRC is combined from it. A wrong one makes the peer refuse the frame.
   */
  encode(type: number, payload: Buffer, flags = 0, correlation = 0, payloadCrc?: number): { chunks: Buffer[]; sequence: number } {
    if (!(payload instanceof Uint8Array)) throw new TypeError('payload must be a Buffer');
    if (!Number.isInteger(type) || type < 1 || type > 0xff) throw new RangeError(`type must be 1..255, got ${type}`);
    if ((flags & ~KNOWN_FLAGS) !== 0) throw new RangeError(`unknown flags 0x${flags.toString(16)}`);
    if (!Number.isInteger(correlation) || correlation < 0 || correlation > 0xffffffff) {
      throw new RangeError(`correlation must be a 32-bit unsigned integer, got ${correlation}`);
    }
    if (FRAME_HEADER_BYTES + payload.length > this.maxFrameBytes) {
      throw new LinkError('ERR_LINK_FRAME_TOO_LARGE',
        `a ${payload.length}-byte payload exceeds maxFrameBytes ${this.maxFrameBytes}`);
    }
    const sequence = this.nextSequence++;
    const header = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
    header.writeUInt32BE(FRAME_MAGIC, 0);
    header.writeUInt8(FRAME_VERSION, 4);
    header.writeUInt8(type, 5);
    header.writeUInt16BE(flags, 6);
    header.writeUInt32BE(Math.floor(sequence / 2 ** 32), 8);
    header.writeUInt32BE(sequence >>> 0, 12);
    header.writeUInt32BE(correlation, 16);
    header.writeUInt32BE(payload.length, 20);
    // The addon's crc32c directly (for a payload past SMALL_CRC_BYTES): both arguments are ours
    // and known good (a Uint8Array, a CRC).
    const headerCrc = crc32cSmall(header, 0, 24, 0);
    if (payloadCrc !== undefined) {
      if (!Number.isInteger(payloadCrc) || payloadCrc < 0 || payloadCrc > 0xffffffff) {
        throw new RangeError(`payloadCrc must be a 32-bit unsigned integer, got ${payloadCrc}`);
      }
      header.writeUInt32BE(crc32cCombine(headerCrc, payloadCrc, payload.length), 24);
    } else {
      header.writeUInt32BE(crcOfPayload(payload, headerCrc), 24);
    }
    return { chunks: payload.length === 0 ? [header] : [header, payload], sequence };
  }
}

/** Decodes the frames of one direction of one connection from chunks split anywhere. */
export class FrameDecoder {
  readonly maxFrameBytes: number;
  private readonly isKnownMessageType: (type: number) => boolean;
  private readonly header = Buffer.alloc(FRAME_HEADER_BYTES);
  private headerFill = 0;
  private payload: Buffer | undefined;
  private payloadFill = 0;
  private expectedSequence = 1;
  private failure: LinkError | undefined;
  // The header fields of the frame being assembled.
  private type = 0;
  private flags = 0;
  private sequence = 0;
  private correlation = 0;
  private crc = 0;
  /** Bytes buffered for the frame being assembled (header and payload). */
  get bufferedBytes(): number {
    return this.headerFill + this.payloadFill;
  }

  /** Frames decoded so far. */
  framesDecoded = 0;

  /** The limit in force now (at most maxFrameBytes; lower before a handshake finishes). */
  private frameLimit: number;

  /**
   * Sets the largest frame accepted from now on (at most maxFrameBytes): a connection not yet
   * authenticated is held to a small limit, checked at the header before any payload is kept.
   */
  setFrameLimit(byteLength: number): void {
    if (!Number.isSafeInteger(byteLength) || byteLength < FRAME_HEADER_BYTES || byteLength > this.maxFrameBytes) {
      throw new RangeError(`frame limit must be an integer from ${FRAME_HEADER_BYTES} to ${this.maxFrameBytes}, got ${byteLength}`);
    }
    this.frameLimit = byteLength;
  }

  constructor(options: FrameDecoderOptions = {}) {
    this.maxFrameBytes = checkMaxFrameBytes(options.maxFrameBytes);
    this.frameLimit = this.maxFrameBytes;
    this.isKnownMessageType = options.isKnownMessageType ?? (() => false);
    this.reuseAssembly = options.reuseAssembly === true;
  }

  /** The error that poisoned this decoder, if any. */
  get error(): LinkError | undefined {
    return this.failure;
  }

  /**
   * Where the next bytes of the stream should go, for frames whose payload has at least
   * `minByteLength` bytes: inside such a payload, a view of exactly its missing part (however
   * short: reading the rest alone keeps the next header out of the same read); between payloads,
   * when the last payload was such a one, a view of the missing part of the next header. A wire
   * may read into it and push the part it filled, as a view of the same memory: it is taken
   * without a copy. Undefined otherwise (small frames, no frame yet) and once poisoned. Valid
   * until the next push.
   */
  readTarget(minByteLength: number): Buffer | undefined {
    if (this.failure !== undefined) return undefined;
    const payload = this.payload;
    const minimum = Math.max(1, minByteLength);
    if (payload === undefined) {
      // Between payloads: the rest of the header, when the last payload was a large one.
      return this.lastPayloadBytes >= minimum ? this.header.subarray(this.headerFill) : undefined;
    }
    if (payload.length < minimum) return undefined;
    return payload.subarray(this.payloadFill);
  }

  /**
   * Feeds bytes; calls `onFrame` for each complete frame in order. Throws LinkError on the
   * first bad frame (frames before it in the same chunk have been delivered).
   */
  push(chunk: Buffer, onFrame: (frame: Frame) => void): void {
    if (this.failure !== undefined) throw this.failure;
    let offset = 0;
    try {
      while (offset < chunk.length) {
        if (this.payload === undefined) {
          // Header: take it straight from the chunk when whole, else assemble it.
          if (this.headerFill === 0 && chunk.length - offset >= FRAME_HEADER_BYTES) {
            this.parseHeader(chunk, offset);
            offset += FRAME_HEADER_BYTES;
          } else {
            const take = Math.min(FRAME_HEADER_BYTES - this.headerFill, chunk.length - offset);
            chunk.copy(this.header, this.headerFill, offset, offset + take);
            this.headerFill += take;
            offset += take;
            if (this.headerFill < FRAME_HEADER_BYTES) return;
            this.parseHeader(this.header, 0);
            this.headerFill = 0;
          }
          const length = this.pendingLength;
          if (length === 0) {
            this.finish(Buffer.alloc(0), this.headerCrc, onFrame);
            continue;
          }
          if (this.payloadFill === 0 && chunk.length - offset >= length) {
            const view = chunk.subarray(offset, offset + length);
            offset += length;
            this.finish(view, crcOfPayload(view, this.headerCrc), onFrame);
            continue;
          }
          if (this.reuseAssembly) {
            if (this.assembly === undefined || this.assembly.length < length) this.assembly = Buffer.allocUnsafe(length);
            this.payload = this.assembly.subarray(0, length);
          } else {
            this.payload = Buffer.allocUnsafe(length);
          }
          this.payloadFill = 0;
          this.payloadCrc = this.headerCrc;
        }
        const payload = this.payload;
        const fill = this.payloadFill;
        const take = Math.min(payload.length - fill, chunk.length - offset);
        // A chunk the wire read straight into readTarget() is in place already.
        const inPlace = offset === 0 && chunk.buffer === payload.buffer && chunk.byteOffset === payload.byteOffset + fill;
        if (!inPlace) chunk.copy(payload, fill, offset, offset + take);
        this.payloadCrc = take <= SMALL_CRC_BYTES
          ? crc32cSmall(payload, fill, fill + take, this.payloadCrc)
          : addon.crc32c(payload.subarray(fill, fill + take), this.payloadCrc);
        this.payloadFill = fill + take;
        offset += take;
        if (this.payloadFill === payload.length) {
          this.payload = undefined;
          this.payloadFill = 0;
          this.finish(payload, this.payloadCrc, onFrame);
        }
      }
    } catch (error) {
      if (error instanceof LinkError) {
        this.failure = error;
        this.payload = undefined;
      }
      throw error;
    }
  }

  private pendingLength = 0;
  private headerCrc = 0;
  /** The CRC of the header and of the payload bytes assembled so far. */
  private payloadCrc = 0;
  /** The payload length of the last frame decoded (readTarget offers a header after a large one). */
  private lastPayloadBytes = 0;
  private readonly reuseAssembly: boolean;
  /** The reused assembly buffer (grown to the largest spanning payload seen). */
  private assembly: Buffer | undefined;

  private parseHeader(source: Buffer, at: number): void {
    const magic = source.readUInt32BE(at);
    if (magic !== FRAME_MAGIC) {
      throw new LinkError('ERR_LINK_BAD_MAGIC', `bad frame magic 0x${magic.toString(16).padStart(8, '0')} (expected 0x${FRAME_MAGIC.toString(16)})`);
    }
    const version = source.readUInt8(at + 4);
    if (version !== FRAME_VERSION) {
      throw new LinkError('ERR_LINK_BAD_VERSION', `frame version ${version} is not supported (this controller decodes ${FRAME_VERSION})`);
    }
    const type = source.readUInt8(at + 5);
    if (!(isLinkFrameType(type) || (type >= FIRST_MESSAGE_TYPE && this.isKnownMessageType(type)))) {
      throw new LinkError('ERR_LINK_BAD_TYPE', `unknown frame type 0x${type.toString(16)}`);
    }
    const flags = source.readUInt16BE(at + 6);
    if ((flags & ~KNOWN_FLAGS) !== 0 || ((flags & FrameFlag.ERROR) !== 0 && (flags & FrameFlag.RESPONSE) === 0) ||
        ((flags & FrameFlag.REQUEST) !== 0 && (flags & FrameFlag.RESPONSE) !== 0)) {
      throw new LinkError('ERR_LINK_BAD_FLAGS', `bad frame flags 0x${flags.toString(16)}`);
    }
    const length = source.readUInt32BE(at + 20);
    if (length > this.frameLimit - FRAME_HEADER_BYTES) {
      throw new LinkError('ERR_LINK_FRAME_TOO_LARGE', this.frameLimit === this.maxFrameBytes
        ? `frame of ${length + FRAME_HEADER_BYTES} bytes exceeds maxFrameBytes ${this.maxFrameBytes}`
        : `frame of ${length + FRAME_HEADER_BYTES} bytes before the handshake finished (limit ${this.frameLimit})`);
    }
    const sequenceHigh = source.readUInt32BE(at + 8);
    const sequence = sequenceHigh * 2 ** 32 + source.readUInt32BE(at + 12);
    // The CRC is checked before the sequence, so a corrupted sequence reads as corruption.
    this.headerCrc = crc32cSmall(source, at, at + 24, 0);
    this.crc = source.readUInt32BE(at + 24);
    this.type = type;
    this.flags = flags;
    this.sequence = sequence;
    this.correlation = source.readUInt32BE(at + 16);
    this.pendingLength = length;
  }

  private finish(payload: Buffer, crc: number, onFrame: (frame: Frame) => void): void {
    if (crc !== this.crc) {
      throw new LinkError('ERR_LINK_CHECKSUM',
        `frame CRC32C mismatch: computed 0x${crc.toString(16)}, frame says 0x${this.crc.toString(16)}`);
    }
    if (this.sequence !== this.expectedSequence) {
      throw new LinkError('ERR_LINK_SEQUENCE_GAP', `frame sequence ${this.sequence}, expected ${this.expectedSequence}`);
    }
    this.expectedSequence++;
    this.framesDecoded++;
    this.lastPayloadBytes = payload.length;
    onFrame({ type: this.type, flags: this.flags, sequence: this.sequence, correlation: this.correlation, payload });
  }
}
