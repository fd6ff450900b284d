// Notes on the design
// -------------------
// The transmission phase of the NBD wire format, client to server: RequestDecoder (the 28-byte
// request header, then the payload of NBD_CMD_WRITE) and validateRequest (the spec's checks of a
// well-framed request against the export). Pure: no sockets, no timers, no volumes.
//
// RequestDecoder
//   Reads from a ByteQueue (protocol-bytes.ts) and accepts any split of the stream. The
//   payload is handed out without a copy (a subarray of the received chunk) when it arrives in
//   one chunk. ByteQueue merges a chunk that continues the previous one in memory, so a reader
//   that receives consecutive reads into consecutive memory (server.ts) keeps a payload split
//   over reads in one piece: while everything queued of a payload is in one chunk the decoder
//   waits without copying. Once a payload arrived in pieces, it is assembled into one
//   per-decoder buffer that grows to the largest payload seen (at most maxPayloadBytes) and is
//   then reused. A reader that can choose where its bytes land may also receive the rest of an
//   incomplete payload straight into the assembly buffer: payloadWindow() moves what is queued
//   there and names the place for the rest, payloadReceived() reports what arrived (server.ts
//   reads the socket into it, for payloads too large for its receive buffer). push() stays
//   valid at any point.
//   A WRITE whose length exceeds maxPayloadBytes is read and discarded (never buffered) up to
//   maxDiscardBytes, and then handed out with payload = null and payloadDropped = true so the
//   server answers EINVAL and the stream stays in step; beyond maxDiscardBytes the decoder
//   fails.
//   The request object that RequestDecoder.next() returns is reused, and its payload may point
//   into the reused assembly buffer or into the caller's receive memory: both are valid only
//   until the next call to next() (and the caller must not reuse that memory before).
//
// Error contract
//   A malformed stream (bad magic, an oversized write) makes next() throw a BlockmirrorError
//   with an ERR_NBD_* code. The decoder is then failed for good: every later call throws the
//   same error (a stream that lost framing cannot resynchronise). Nothing else is ever thrown:
//   every length is checked before it is used.
//   Requests that are well framed but invalid (unknown type, bad flags, out of range) are not
//   decoder errors: validateRequest() returns the NBD error value the spec asks for.
//
// Numbers: offsets are decoded to a double (exact below 2^53, see protocol-bytes.ts). Cookies
// (the spec's "handle") are kept as two u32 halves and echoed back verbatim.

import { nbdError, NbdErrorCode } from './errors';
import {
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_CACHE,
  NBD_CMD_COUNT,
  NBD_CMD_DISC,
  NBD_CMD_FLAG_DF,
  NBD_CMD_FLAG_FAST_ZERO,
  NBD_CMD_FLAG_FUA,
  NBD_CMD_FLAG_NO_HOLE,
  NBD_CMD_FLAG_REQ_ONE,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_EINVAL,
  NBD_ENOSPC,
  NBD_EPERM,
  NBD_FLAG_READ_ONLY,
  NBD_FLAG_SEND_DF,
  NBD_FLAG_SEND_FAST_ZERO,
  NBD_FLAG_SEND_FUA,
  NBD_REQUEST_HEADER_BYTES,
  NBD_REQUEST_MAGIC,
} from './protocol-constants';
import { ByteQueue, EMPTY, TWO_POW_32 } from './protocol-bytes';

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

  /**
   * Ends a redirect before the payload is complete (the volume revoked the direct write): the
   * rest of the payload is assembled in the decoder's own buffer again. What it then holds is
   * not the payload (its start landed elsewhere); the caller refuses the request. No-op when no
   * payload is redirected.
   */
  revokeRedirect(): void {
    const own = this.ownAssembly;
    if (own === null) return;
    this.ownAssembly = null;
    this.assembly = own;
    if (this.assembly.length < this.request.length) this.growAssembly(this.request.length);
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
