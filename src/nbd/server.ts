// Notes on the design
// -------------------
// NbdServer exports volumes over NBD (fixed newstyle, doc/proto.md of NetworkBlockDevice) on
// any number of TCP and Unix-socket listeners. protocol.ts holds the wire format; this file holds
// sockets, flow control and the mapping of commands onto the Volume API.
//
// Connection lifecycle (Connection.state, one setter, logged old -> new):
//   handshake -> transmission -> closing -> closed, or handshake -> closed.
//   The handshake has a deadline (handshakeTimeoutMs) and a bound on the number of options.
//
// Receive path: sockets are read into buffers the connection owns, never into a buffer per
// read. net.Socket takes that (its `onread` option: a function that names the memory for the
// next read, and a callback per read) only in its constructor, so listeners accept with
// pauseOnConnect and the connection moves the accepted stream handle into a socket of its own
// (adoptWithUserBuffers; the accepted socket is destroyed without it, never having read).
// Connection.nextReadBuffer names the memory for each read:
//   - normally the free end of a 256 KiB receive buffer (16 KiB in the handshake). Each read is
//     pushed into the decoder as a view of it; consecutive reads are consecutive memory, which
//     ByteQueue merges, so a request split over reads is still one piece and its payload goes
//     to volume.write as a view of the receive buffer (the decoder waits without copying; see
//     protocol.ts). When everything queued is consumed the buffer is reused from its start;
//     when less than a quarter (or less than the missing part of a waiting payload) is free, the
//     queued bytes (normally part of one request) move to the start of a spare buffer that holds
//     none of them (ByteQueue.moveTo) and the two swap; when flow control holds more than that,
//     reads go on into a fresh buffer and the old one is dropped once consumed;
//   - a payload of 32 KiB or more still missing that cannot continue in the receive buffer
//     (larger than it, or already being assembled) is read straight into the decoder's assembly
//     buffer (payloadWindow): the kernel copies it into place, volume.write copies it once more,
//     as nbdkit does. After a WRITE of 128 KiB or more the next read takes the next header
//     alone, so a large payload behind it does not start in the receive buffer.
//   Invariant: memory named for a read holds no queued byte and nothing else writes it before
//   that read completes (net.Socket asks for the next target only after each read callback).
//   Closing connections read into a shared discard buffer. BLOCKMIRROR_NBD_RECEIVE=stream (read
//   when a server is constructed) selects the plain 'data'-event path instead (a fresh buffer
//   per read); it is also the fallback when a socket's handle cannot take user buffers.
//
// Hot path (transmission): each received chunk goes into the RequestDecoder and every complete
// request is handled at once. READ, WRITE, TRIM, WRITE_ZEROES, CACHE and BLOCK_STATUS are
// synchronous volume calls: no closure or promise per request. Replies are written into a
// per-connection arena (ReplyWriter), READ data straight from the volume into the arena behind
// its header, and everything produced by one read event goes to the socket as one write (cork
// and writev when a reply was too large for the arena). WRITE payloads reach volume.write as a
// view of the receive buffer when they arrived in one piece, else of the assembly buffer.
// volume.write takes a Uint8Array, so each payload costs one view object (subarray); a
// (buffer, offset, length) form of Volume.write would save it.
//
// Asynchronous work: FLUSH, and FUA on WRITE / TRIM / WRITE_ZEROES (the data is stored
// synchronously, the reply waits for a flush). Flushes are group-committed per volume by a
// FlushCoordinator shared by every connection and export of that volume: a flush that is running
// may have started before a waiter's write, so waiters that arrive meanwhile share the next one.
// Because the volume is shared and volume.flush() covers the whole volume, a FLUSH on any
// connection covers the writes completed on all of them (NBD_FLAG_CAN_MULTI_CONN). Replies may
// leave out of order (NBD replies carry the client's cookie).
//
// Flow control: a connection stops decoding (and pauses its socket, so TCP pushes back on the
// client) while maxInFlightRequests asynchronous requests are pending or while more than
// OUTPUT_HIGH_WATER_BYTES of replies wait in the socket; it resumes on completion / 'drain'.
// With user buffers socket.pause() stops reading at the handle (readStop), as with 'data'.
//
// Validation happens at the edge (protocol.validateRequest) before the volume sees a request, so
// a rejected request changes nothing. Malformed framing, a bad handshake or a vanished client
// ends only that connection; the server and the other connections go on.
//
// Errors: options and bad requests get the spec's replies. Framing errors are BlockmirrorError
// ERR_NBD_* values emitted as 'protocol-error' (never thrown out of a socket callback). Volume
// errors become NBD error values (errnoForVolumeError). Caller mistakes in the constructor are
// TypeError / RangeError.
//
// Ownership: the server never closes volumes; close() stops listeners, answers what is in
// flight, flushes the exported volumes and closes every socket.
//
// Spec decisions (where doc/proto.md leaves a choice):
//   - Handshake: fixed newstyle with NO_ZEROES. A client without C_FIXED_NEWSTYLE may only send
//     EXPORT_NAME. No TLS: STARTTLS gets NBD_REP_ERR_UNSUP, as do EXTENDED_HEADERS and unknown
//     options. EXPORT_NAME for an unknown export ends the session (the spec allows no error
//     reply). The empty name is the first export; INFO/GO then also send NBD_INFO_NAME.
//   - NBD_INFO_BLOCK_SIZE is sent in every INFO/GO reply, asked or not: minimum 1 (any byte
//     offset works) or the block size of a strict volume, preferred max(blockSize, 4096),
//     maximum maxPayloadBytes rounded down to the minimum. Clients that did not ask are still
//     served; a strict export answers misaligned requests EINVAL without touching data.
//   - Transmission flags: HAS_FLAGS, SEND_FLUSH, CAN_MULTI_CONN, SEND_CACHE, and unless
//     read-only SEND_FUA, SEND_TRIM, SEND_WRITE_ZEROES, SEND_FAST_ZERO; SEND_DF once structured
//     replies are negotiated; READ_ONLY per export.
//   - Errors: ENOSPC for WRITE/WRITE_ZEROES past the end, EINVAL for other commands past it,
//     for unknown commands, unknown or misplaced flags, zero lengths, non-zero FLUSH arguments,
//     BLOCK_STATUS without a selected context, misalignment on strict exports and READ/WRITE
//     longer than maxPayloadBytes; EPERM for WRITE/TRIM/WRITE_ZEROES on a read-only export.
//     WRITE_ZEROES, TRIM, CACHE and BLOCK_STATUS may be of any length within the export.
//   - A WRITE longer than maxPayloadBytes is read and discarded (never buffered) up to
//     maxDiscardBytes and answered EINVAL, so the stream stays in step; a longer one is answered
//     EINVAL and the connection is closed (its payload cannot be skipped safely).
//   - WRITE_ZEROES is always fast for a memory store (never slower than the write it replaces):
//     FAST_ZERO never fails with ENOTSUP. NO_HOLE asks the volume not to punch holes. CACHE is a
//     validated no-op (everything is in memory).
//   - Replies: with structured replies, READ answers with OFFSET_DATA (DONE) or, from
//     holeDetectionMinBytes (64 KiB) up and without DF, OFFSET_DATA/OFFSET_HOLE chunks from the
//     volume's allocation map (holes under 4 KiB travel as data), so 4 KiB reads stay one lookup
//     cheaper; errors are ERROR chunks with a message; other successes are simple replies (the
//     spec allows them when there is no payload).
//   - Meta contexts: base:allocation (hole = HOLE|ZERO, data = 0) and
//     blockmirror:dirty:<bitmap> (BLOCKMIRROR_STATE_DIRTY = 1 where the track's bit is set, 0
//     where clear; bytes past the bitmap report dirty). Query syntax: see matchMetaContexts. At
//     most 1024 descriptors per context per reply; on strict exports descriptor boundaries are
//     block-aligned, a mixed block reporting the safe state (allocated, dirty).
//   - Shutdown (graceful close): connections still in the handshake are closed at once (an
//     option that races with it gets NBD_REP_ERR_SHUTDOWN); requests in flight are answered,
//     requests already received but not started get ESHUTDOWN, then the socket is half-closed.

import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import * as net from 'node:net';

import type { BlockmirrorError } from '../errors';
import { isNbdError, nbdError } from './errors';
import {
  allocationExtents,
  DEFAULT_MAX_EXTENTS,
  dirtyExtents,
  toDescriptors,
  type PlacedExtent,
} from './extents';
import * as P from './protocol';

// ---------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------

/**
 * What the server needs of a volume: exactly the members of src/storage/volume.ts Volume that it
 * calls, so a Volume is accepted as is (structural typing) and this module does not load the
 * native addon by itself.
 */
export interface NbdVolume {
  readonly capacityBytes: number;
  readonly blockSize: number;
  readonly strict: boolean;
  readonly closed: boolean;
  read(byteOffset: number, target: Uint8Array): void;
  write(byteOffset: number, source: Uint8Array): number;
  writeZeroes(byteOffset: number, byteLength: number, options?: { mayPunchHole?: boolean }): number;
  trim(byteOffset: number, byteLength: number): number;
  flush(): Promise<void>;
  allocationMap(byteOffset: number, byteLength: number): { byteOffset: number; byteLength: number; allocated: boolean }[];
  listBitmaps(): { name: string; granularityBytes: number; bitCount: number; recording: boolean }[];
  openBitmap(name: string): NbdBitmap;
  /**
   * The ack point of a write, zero or trim that returned `sequence` (a replicated volume: a
   * sync pair completes a host write only once its secondary applied it). null, or no such
   * method: the request completes now. A rejection is answered with an error (EIO).
   */
  writeCompletion?(sequence: number): Promise<void> | null;
}

/** What the server needs of a bitmap view (src/storage/bitmap.ts Bitmap). */
export interface NbdBitmap {
  readonly granularityBytes: number;
  readonly bitCount: number;
  readonly closed: boolean;
  test(bitIndex: number): boolean;
  findNextSet(fromBitIndex: number): number;
  findNextClear(fromBitIndex: number): number;
  close(): void;
}

/** Short name inside this module. */
type Volume = NbdVolume;

/** The subset of a pino logger the server uses. */
export interface NbdLogger {
  debug(object: Record<string, unknown>, message?: string): void;
  info(object: Record<string, unknown>, message?: string): void;
  warn(object: Record<string, unknown>, message?: string): void;
  error(object: Record<string, unknown>, message?: string): void;
}

export interface NbdExportOptions {
  /** Export name (1..4096 bytes of UTF-8 without NUL; '' is not allowed, it means the default export). */
  name: string;
  volume: Volume;
  /** @default false */
  readOnly?: boolean;
  /** Shown by NBD_OPT_LIST and NBD_INFO_DESCRIPTION. @default '' */
  description?: string;
}

export type NbdListenOptions = { host?: string; port?: number } | { path: string };

export interface NbdServerOptions {
  /** The exports; the first is also the default export (the empty name). */
  exports: NbdExportOptions[];
  /** @default [{ host: '127.0.0.1', port: 10809 }] */
  listen?: NbdListenOptions[];
  /** Largest READ/WRITE length (the advertised maximum block size). @default 33554432 (32 MiB) */
  maxPayloadBytes?: number;
  /** WRITE payloads above maxPayloadBytes are read and discarded up to this many bytes (and
   * answered EINVAL); longer ones close the connection. @default 2 x maxPayloadBytes */
  maxDiscardBytes?: number;
  /** Asynchronous requests (FLUSH, FUA) pending per connection before it stops reading. @default 128 */
  maxInFlightRequests?: number;
  /** Connections at once (including those in the handshake). @default 256 */
  maxConnections?: number;
  /** Time allowed from connect to the end of the handshake. @default 10000 */
  handshakeTimeoutMs?: number;
  /** Largest option data accepted during the handshake. @default 65536 */
  maxOptionBytes?: number;
  /** Options accepted in one handshake. @default 1024 */
  maxOptionsPerConnection?: number;
  /** Structured READ replies look for holes (OFFSET_HOLE chunks) from this length up. @default 65536 */
  holeDetectionMinBytes?: number;
  /** How long close() waits for clients to hang up before destroying their sockets. @default 2000 */
  closeTimeoutMs?: number;
  /** pino-like logger. @default no logging */
  logger?: NbdLogger;
}

export interface NbdAddress {
  /** nbd://host:port/export or nbd+unix:///export?socket=path */
  uri: string;
  exportName: string;
  transport: 'tcp' | 'unix';
  host?: string;
  port?: number;
  path?: string;
}

export interface NbdRequestCounts {
  read: number;
  write: number;
  disc: number;
  flush: number;
  trim: number;
  cache: number;
  writeZeroes: number;
  blockStatus: number;
  unknown: number;
}

/** Counters of one export (exportStats()). */
export interface NbdExportStats {
  name: string;
  readOnly: boolean;
  requests: NbdRequestCounts;
  bytesRead: number;
  bytesWritten: number;
}

function requestCountsOf(counts: Float64Array): NbdRequestCounts {
  return {
    read: counts[P.NBD_CMD_READ] as number,
    write: counts[P.NBD_CMD_WRITE] as number,
    disc: counts[P.NBD_CMD_DISC] as number,
    flush: counts[P.NBD_CMD_FLUSH] as number,
    trim: counts[P.NBD_CMD_TRIM] as number,
    cache: counts[P.NBD_CMD_CACHE] as number,
    writeZeroes: counts[P.NBD_CMD_WRITE_ZEROES] as number,
    blockStatus: counts[P.NBD_CMD_BLOCK_STATUS] as number,
    unknown: counts[P.NBD_CMD_COUNT] as number,
  };
}

export interface NbdServerStats {
  /** Connections open now (handshake or transmission). */
  connections: number;
  totalConnections: number;
  /** Requests received, by type (rejected ones included). */
  requests: NbdRequestCounts;
  /** Bytes returned by successful READs. */
  bytesRead: number;
  /** Bytes stored by successful WRITEs. */
  bytesWritten: number;
  /** Requests answered with an error. */
  errors: number;
  /** Connections ended for a protocol violation (bad magic, bad handshake, truncation...). */
  protocolErrors: number;
}

export interface NbdConnectionEvent {
  connectionId: number;
  transport: 'tcp' | 'unix';
  remoteAddress?: string;
  remotePort?: number;
}

export interface NbdDisconnectEvent {
  connectionId: number;
  /** 'client' (hung up between messages or after DISC/ABORT), 'server', 'protocol-error', 'truncated', 'timeout', 'error'. */
  reason: string;
  exportName?: string;
  error?: Error;
}

export interface NbdProtocolErrorEvent {
  connectionId: number;
  error: BlockmirrorError;
}

// ---------------------------------------------------------------------------------------------
// Limits and constants
// ---------------------------------------------------------------------------------------------

const DEFAULT_LISTEN: NbdListenOptions[] = [{ host: '127.0.0.1', port: 10809 }];
const DEFAULT_MAX_IN_FLIGHT = 128;
const DEFAULT_MAX_CONNECTIONS = 256;
const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;
const DEFAULT_MAX_OPTIONS = 1024;
const DEFAULT_HOLE_DETECTION_MIN_BYTES = 64 * 1024;
const DEFAULT_CLOSE_TIMEOUT_MS = 2_000;
const MIN_MAX_PAYLOAD_BYTES = 4096;
const MAX_MAX_PAYLOAD_BYTES = 1024 * 1024 * 1024;
/** Preferred block size floor: the memory store's page size. */
const PREFERRED_BLOCK_BYTES = 4096;
/** Holes smaller than this are sent as data (a hole chunk would cost more than it saves). */
const MIN_HOLE_CHUNK_BYTES = 4096;
/** Stop decoding while this many reply bytes wait in the socket. */
const OUTPUT_HIGH_WATER_BYTES = 8 * 1024 * 1024;
/** Stop reading options while this many option-reply bytes wait in the socket. */
const HANDSHAKE_OUTPUT_HIGH_WATER_BYTES = 1024 * 1024;
/** Write out the arena mid-batch once this much has accumulated. */
const OUTPUT_FLUSH_BYTES = 1024 * 1024;
const ARENA_BYTES = 256 * 1024;
/** Replies larger than this get their own buffer instead of arena space. */
const DEDICATED_REPLY_BYTES = ARENA_BYTES / 2;
const SPARE_ARENAS = 4;
const EMPTY_ARENA = Buffer.alloc(0);
/** Receive buffer of a connection in transmission (socket reads land here; see the design note). */
const RECEIVE_BYTES = 256 * 1024;
/** Receive buffer during the handshake (options are small; longer ones span buffers). */
const HANDSHAKE_RECEIVE_BYTES = 16 * 1024;
/** A read is never offered less room than this (receive size / 4); below it the buffer is compacted. */
const RECEIVE_MIN_READ_DIVISOR = 4;
/** The rest of a WRITE payload is read straight into its assembly buffer from this size up. */
const DIRECT_PAYLOAD_MIN_BYTES = 32 * 1024;
/** After a WRITE of this size or more, the next read takes the next request header alone. */
const HEADER_FIRST_MIN_BYTES = 128 * 1024;
/** Where reads land once a connection no longer decodes (closing): bytes are dropped. */
let discardBuffer: Buffer | null = null;
function discardReadBuffer(): Buffer {
  discardBuffer ??= Buffer.allocUnsafe(64 * 1024);
  return discardBuffer;
}

const noop = (): void => undefined;
const SILENT: NbdLogger = { debug: noop, info: noop, warn: noop, error: noop };

// ---------------------------------------------------------------------------------------------
// Exports
// ---------------------------------------------------------------------------------------------

interface ExportEntry {
  name: string;
  description: string;
  readOnly: boolean;
  volume: Volume;
  flushes: FlushCoordinator;
  minimumBlockBytes: number;
  preferredBlockBytes: number;
  maximumBlockBytes: number;
  /** Requests received on connections to this export, by command type (unknown last). */
  requestCounts: Float64Array;
  bytesRead: number;
  bytesWritten: number;
}

/** A context selected by SET_META_CONTEXT; a dirty context keeps its bitmap view open (closed with the connection). */
type SelectedContext =
  | { id: number; name: string; kind: 'allocation' }
  | { id: number; name: string; kind: 'dirty'; bitmapName: string; bitmap: NbdBitmap | null };

/** Context names of the volume's exportable metadata: base:allocation, then one per bitmap. */
function availableContexts(volume: Volume): string[] {
  const names = [P.BASE_ALLOCATION_CONTEXT];
  for (const bitmap of volume.listBitmaps()) names.push(P.DIRTY_CONTEXT_PREFIX + bitmap.name);
  return names;
}

/**
 * Query matching (the blockmirror: namespace is documented here):
 *   base:                 LIST: base:allocation; SET: nothing (the spec's wildcard rule)
 *   base:allocation       base:allocation
 *   blockmirror:          LIST: every blockmirror:dirty:<bitmap>; SET: nothing
 *   blockmirror:dirty:    LIST: every blockmirror:dirty:<bitmap>; SET: nothing
 *   blockmirror:dirty:B   the context of bitmap B, if the volume has it
 *   anything else         nothing (unknown namespaces and leaves are ignored)
 */
export function matchMetaContexts(available: readonly string[], queries: readonly string[], listing: boolean): string[] {
  if (queries.length === 0) return listing ? [...available] : [];
  const selected = new Set<string>();
  const dirty = available.filter((name) => name.startsWith(P.DIRTY_CONTEXT_PREFIX));
  for (const query of queries) {
    if (query === 'base:') {
      if (listing && available.includes(P.BASE_ALLOCATION_CONTEXT)) selected.add(P.BASE_ALLOCATION_CONTEXT);
    } else if (query === 'blockmirror:' || query === P.DIRTY_CONTEXT_PREFIX) {
      if (listing) for (const name of dirty) selected.add(name);
    } else if (available.includes(query)) {
      selected.add(query);
    }
  }
  return [...selected];
}

// ---------------------------------------------------------------------------------------------
// Flush group commit
// ---------------------------------------------------------------------------------------------

interface FlushWaiter {
  connection: Connection;
  cookieHigh: number;
  cookieLow: number;
  type: number;
}

class FlushCoordinator {
  private running = false;
  private next: FlushWaiter[] = [];
  constructor(private readonly volume: Volume) {}

  /** Completes `waiter` after a flush that starts now or later. */
  request(waiter: FlushWaiter): void {
    this.next.push(waiter);
    if (!this.running) this.start();
  }

  /** A flush not tied to a request (server close). */
  async flushNow(): Promise<void> {
    await this.volume.flush();
  }

  private start(): void {
    const batch = this.next;
    this.next = [];
    this.running = true;
    let flushing: Promise<void>;
    try {
      flushing = this.volume.flush();
    } catch (error) {
      flushing = Promise.reject(error);
    }
    flushing.then(
      () => this.finish(batch, null),
      (error: unknown) => this.finish(batch, error),
    );
  }

  private finish(batch: FlushWaiter[], error: unknown): void {
    this.running = false;
    for (const waiter of batch) waiter.connection.completeFlush(waiter, error);
    if (this.next.length > 0) this.start();
  }
}

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
    if (code === 'ERR_PAIR_READ_ONLY') return P.NBD_EPERM;
  }
  return P.NBD_EIO;
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
class ReplyWriter {
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

// ---------------------------------------------------------------------------------------------
// Connection
// ---------------------------------------------------------------------------------------------

type ConnectionState = 'handshake' | 'transmission' | 'closing' | 'closed';

const CONNECTION_TRANSITIONS: Record<ConnectionState, readonly ConnectionState[]> = {
  handshake: ['transmission', 'closing', 'closed'],
  transmission: ['closing', 'closed'],
  closing: ['closed'],
  closed: [],
};

const messageBytesCache = new Map<string, Buffer>();
function messageBytes(message: string): Buffer {
  let bytes = messageBytesCache.get(message);
  if (bytes === undefined) {
    bytes = P.truncatedUtf8(message, 1024);
    if (messageBytesCache.size < 256) messageBytesCache.set(message, bytes);
  }
  return bytes;
}

class Connection {
  state: ConnectionState = 'handshake';
  private readonly handshake: P.HandshakeDecoder;
  private decoder: P.RequestDecoder | null = null;
  private readonly out: ReplyWriter;
  private entry: ExportEntry | null = null;
  private limits: P.ExportLimits | null = null;
  private structured = false;
  private fixedNewstyle = false;
  private clientNoZeroes = false;
  private optionCount = 0;
  private contexts: SelectedContext[] = [];
  private contextsExport: string | null = null;
  private inFlight = 0;
  private socketPaused = false;
  private writeScheduled = false;
  private shuttingDown = false;
  private discReceived = false;
  private handshakeTimer: NodeJS.Timeout | null = null;
  private closeTimer: NodeJS.Timeout | null = null;
  private endReason: { reason: string; error?: Error } | null = null;
  private readonly log: NbdLogger;
  readonly socket: net.Socket;
  // Receive path (see the design note): reads land in `receive` from `receiveEnd` on, or in the
  // payload window `directWindow` of the decoder's assembly buffer.
  private receive: Buffer = EMPTY_ARENA;
  private receiveEnd = 0;
  /** A receive buffer of the current size that holds no queued bytes (compaction target). */
  private receiveSpare: Buffer | null = null;
  private directWindow: Buffer | null = null;
  /** The last request was a large WRITE: read the next header alone, then its payload in place. */
  private headerFirst = false;

  /** `accepted` comes from a listener with pauseOnConnect (see adoptWithUserBuffers). */
  constructor(
    readonly id: number,
    accepted: net.Socket,
    readonly transport: 'tcp' | 'unix',
    private readonly server: NbdServer,
    private readonly config: ResolvedConfig,
  ) {
    this.log = config.logger;
    this.handshake = new P.HandshakeDecoder({ maxOptionBytes: config.maxOptionBytes });
    const adopted = config.userBufferReads
      ? adoptWithUserBuffers(accepted, {
          buffer: () => this.readTarget(),
          // Flow control pauses the socket itself: always true (false would stop reading).
          callback: (byteLength: number, buffer: Uint8Array) => {
            this.onRead(byteLength, buffer as Buffer);
            return true;
          },
        })
      : null;
    const socket = adopted ?? accepted;
    this.socket = socket;
    this.out = new ReplyWriter(socket);
    socket.setNoDelay(true);
    if (adopted === null) {
      // Fallback: 'data' events (a fresh buffer per read).
      socket.on('data', (chunk: Buffer) => this.onData(chunk));
      socket.resume();
    }
    socket.on('drain', () => this.onDrain());
    socket.on('end', () => this.onEnd());
    socket.on('error', (error: Error) => this.onSocketError(error));
    socket.on('close', () => this.onClose());
    this.handshakeTimer = setTimeout(() => this.onHandshakeTimeout(), config.handshakeTimeoutMs);
    this.handshakeTimer.unref();
    socket.write(P.encodeGreeting(P.NBD_FLAG_FIXED_NEWSTYLE | P.NBD_FLAG_NO_ZEROES));
  }

  get exportName(): string | undefined {
    return this.entry?.name;
  }

  // --- state ---------------------------------------------------------------------------------

  private setState(next: ConnectionState): void {
    const previous = this.state;
    if (previous === next) return;
    if (!CONNECTION_TRANSITIONS[previous].includes(next)) {
      throw new Error(`NBD connection ${this.id}: illegal transition ${previous} -> ${next}`);
    }
    this.state = next;
    this.log.debug({ connectionId: this.id, from: previous, to: next }, `nbd connection ${previous} -> ${next}`);
  }

  // --- socket events -------------------------------------------------------------------------

  /**
   * Where the next socket read lands (net.Socket calls readTarget() once at adoption and after
   * every read callback; the buffer it returns stays the read target until the next read completes).
   * Invariant: the returned memory holds no queued byte and nothing else writes it until then.
   */
  private readTarget(): Buffer {
    try {
      return this.nextReadBuffer();
    } catch (error) {
      // A bug here must not escape into net.Socket: end this connection only.
      this.directWindow = null;
      queueMicrotask(() => this.protocolFailure(error));
      return discardReadBuffer();
    }
  }

  private nextReadBuffer(): Buffer {
    this.directWindow = null;
    const decoder = this.decoder;
    const state = this.state;
    if (state !== 'handshake' && (state !== 'transmission' || decoder === null)) return discardReadBuffer();
    const queue = this.handshake.queue;
    const size = state === 'handshake' ? HANDSHAKE_RECEIVE_BYTES : RECEIVE_BYTES;
    // A WRITE payload short of `missing` bytes: is it better received in place (see the note)?
    const missing = decoder === null ? 0 : decoder.missingPayloadBytes;
    if (missing >= DIRECT_PAYLOAD_MIN_BYTES && ((decoder as P.RequestDecoder).payloadAssembling || missing > size - queue.length)) {
      const window = this.directWindowOf(decoder as P.RequestDecoder);
      if (window !== null) return window;
    }
    if (queue.length === 0) {
      // Nothing refers to the receive buffers: start over at the front.
      if (this.receive.length !== size) {
        this.receive = Buffer.allocUnsafe(size);
        this.receiveSpare = null;
      }
      this.receiveEnd = 0;
    } else if (this.receive.length - this.receiveEnd < Math.max(size / RECEIVE_MIN_READ_DIVISOR, missing)) {
      if (queue.length + missing <= size) {
        // Compact: move the queued bytes (normally part of one request) to the front of the
        // spare, which holds none of them, and swap.
        let target = this.receiveSpare;
        if (target === null || target.length !== size) target = Buffer.allocUnsafe(size);
        queue.moveTo(target);
        this.receiveSpare = this.receive.length === size ? this.receive : null;
        this.receive = target;
        this.receiveEnd = queue.length;
      } else {
        // Many bytes wait (flow control holds them): leave them where they are, read on in a
        // fresh buffer; the old one goes once they are consumed.
        this.receive = Buffer.allocUnsafe(size);
        this.receiveEnd = 0;
      }
    }
    const start = this.receiveEnd;
    if (missing > 0 && !(decoder as P.RequestDecoder).payloadAssembling && !this.queueEndsAt(start)) {
      // The payload cannot continue in one piece here (it waits in another buffer).
      const window = missing >= DIRECT_PAYLOAD_MIN_BYTES ? this.directWindowOf(decoder as P.RequestDecoder) : null;
      if (window !== null) return window;
    }
    if (this.headerFirst && decoder !== null && !decoder.payloadPending && queue.length < P.NBD_REQUEST_HEADER_BYTES) {
      // After a large WRITE: take the next header alone, so that a large payload behind it is
      // received in place rather than copied out of this buffer.
      return this.receive.subarray(start, start + P.NBD_REQUEST_HEADER_BYTES - queue.length);
    }
    return start === 0 ? this.receive : this.receive.subarray(start);
  }

  /** The rest of the pending payload in the decoder's assembly buffer, as the next read target. */
  private directWindowOf(decoder: P.RequestDecoder): Buffer | null {
    const window = decoder.payloadWindow();
    this.directWindow = window;
    return window;
  }

  /** True when the queued bytes are one piece of memory ending at receive[end] (or none are queued). */
  private queueEndsAt(end: number): boolean {
    const queue = this.handshake.queue;
    if (queue.length === 0) return true;
    if (queue.contiguousLength() !== queue.length) return false;
    const head = queue.head();
    const receive = this.receive;
    return head.buffer === receive.buffer && head.byteOffset + queue.headPosition() + queue.length === receive.byteOffset + end;
  }

  /** A read completed into the buffer nextReadBuffer() returned last. */
  private onRead(byteLength: number, buffer: Buffer): void {
    try {
      if (buffer === this.directWindow) {
        this.directWindow = null;
        if (this.state === 'transmission' && this.decoder !== null) {
          this.decoder.payloadReceived(byteLength);
          this.pump();
        }
        return;
      }
      if (buffer === discardBuffer) return;
      this.receiveEnd += byteLength;
      this.onData(byteLength === buffer.length ? buffer : buffer.subarray(0, byteLength));
    } catch (error) {
      this.protocolFailure(error);
    }
  }

  private onData(chunk: Buffer): void {
    if (this.state === 'handshake') {
      this.handshake.push(chunk);
      this.runHandshake();
      return;
    }
    if (this.state === 'transmission' && this.decoder !== null) {
      this.decoder.push(chunk);
      this.pump();
    }
    // closing/closed: late bytes are ignored.
  }

  private onDrain(): void {
    if (this.state === 'handshake') {
      this.resumeSocket();
      this.runHandshake();
    } else if (this.state === 'transmission') this.pump();
    else if (this.state === 'closing') this.maybeFinishClosing();
  }

  private onEnd(): void {
    // The client hung up. Between messages that is a normal end; inside one it is truncation.
    const midMessage =
      this.state === 'handshake' ? !this.handshake.idle : this.state === 'transmission' && this.decoder !== null && !this.decoder.idle && !this.discReceived;
    if (midMessage) {
      const error = nbdError('ERR_NBD_TRUNCATED', 'client closed the connection in the middle of a message');
      this.server.recordProtocolError(this.id, error);
      this.log.warn({ connectionId: this.id, code: error.code }, 'nbd client vanished mid-message');
      this.end({ reason: 'truncated', error }, true);
    } else {
      this.end({ reason: 'client' }, this.state === 'handshake');
    }
  }

  private onSocketError(error: Error): void {
    this.log.debug({ connectionId: this.id, err: error.message }, 'nbd socket error');
    this.end({ reason: 'error', error }, true);
  }

  private onClose(): void {
    if (this.handshakeTimer !== null) clearTimeout(this.handshakeTimer);
    if (this.closeTimer !== null) clearTimeout(this.closeTimer);
    this.handshakeTimer = null;
    this.closeTimer = null;
    if (this.state !== 'closed') this.setState('closed');
    this.closeBitmaps(this.contexts);
    const ended = this.endReason ?? { reason: 'client' };
    this.server.connectionClosed(this, ended);
  }

  private onHandshakeTimeout(): void {
    this.handshakeTimer = null;
    if (this.state !== 'handshake') return;
    const error = nbdError('ERR_NBD_HANDSHAKE_TIMEOUT', `handshake not finished within ${this.config.handshakeTimeoutMs} ms`);
    this.server.recordProtocolError(this.id, error);
    this.end({ reason: 'timeout', error }, true);
  }

  private closeBitmaps(contexts: readonly SelectedContext[]): void {
    for (const context of contexts) {
      if (context.kind === 'dirty' && context.bitmap !== null) {
        try {
          context.bitmap.close();
        } catch {
          // Already closed with its volume.
        }
        context.bitmap = null;
      }
    }
  }

  // --- ending --------------------------------------------------------------------------------

  /**
   * Ends the connection. destroy: drop the socket now (hard disconnect); otherwise answer what is
   * in flight, write out the replies and half-close, destroying after closeTimeoutMs.
   */
  end(why: { reason: string; error?: Error }, destroy: boolean): void {
    if (this.endReason === null) this.endReason = why;
    if (this.state === 'closed') return;
    if (this.handshakeTimer !== null) {
      clearTimeout(this.handshakeTimer);
      this.handshakeTimer = null;
    }
    if (destroy) {
      this.out.flush();
      if (this.state !== 'closing') this.setState('closing');
      this.socket.destroy();
      return;
    }
    if (this.state !== 'closing') this.setState('closing');
    this.pauseSocket();
    this.maybeFinishClosing();
  }

  private maybeFinishClosing(): void {
    if (this.state !== 'closing' || this.inFlight > 0) return;
    this.out.flush();
    if (this.socket.destroyed) return;
    if (this.closeTimer === null) {
      // Half-close once the replies are out; destroy if the client never hangs up. Reading
      // resumes (late bytes are ignored in 'closing') so the client's EOF is seen at once.
      this.socket.end();
      this.resumeSocket();
      this.closeTimer = setTimeout(() => this.socket.destroy(), this.config.closeTimeoutMs);
      this.closeTimer.unref();
    }
  }

  /** Server shutdown: answer buffered requests with ESHUTDOWN, finish in-flight ones, close. */
  shutdown(graceful: boolean): void {
    this.shuttingDown = true;
    if (!graceful || this.state === 'handshake') {
      this.end({ reason: 'server' }, true);
      return;
    }
    if (this.state === 'transmission') this.pump();
    this.end({ reason: 'server' }, false);
  }

  private protocolFailure(error: unknown): void {
    if (!isNbdCoded(error)) {
      // Not a protocol violation but a bug or an unexpected failure: end this connection only.
      this.log.error({ connectionId: this.id, err: String((error as Error)?.stack ?? error) }, 'nbd connection failed');
      this.end({ reason: 'error', error: error instanceof Error ? error : new Error(String(error)) }, true);
      return;
    }
    const coded = error;
    this.server.recordProtocolError(this.id, coded);
    this.log.warn({ connectionId: this.id, code: coded.code, err: coded.message }, 'nbd protocol error');
    this.end({ reason: 'protocol-error', error: coded }, true);
  }

  // --- flow control --------------------------------------------------------------------------

  private pauseSocket(): void {
    if (!this.socketPaused) {
      this.socketPaused = true;
      this.socket.pause();
    }
  }

  private resumeSocket(): void {
    if (this.socketPaused) {
      this.socketPaused = false;
      this.socket.resume();
    }
  }

  // --- handshake -----------------------------------------------------------------------------

  private runHandshake(): void {
    try {
      for (;;) {
        // A client must read each option's reply before its next option; one that does not
        // is not served further until the replies drain (its input waits in TCP).
        if (this.socket.writableLength >= HANDSHAKE_OUTPUT_HIGH_WATER_BYTES) {
          this.pauseSocket();
          return;
        }
        const message = this.handshake.next();
        if (message === null) break;
        if (message.kind === 'client-flags') {
          this.fixedNewstyle = (message.flags & P.NBD_FLAG_C_FIXED_NEWSTYLE) !== 0;
          this.clientNoZeroes = (message.flags & P.NBD_FLAG_C_NO_ZEROES) !== 0;
          continue;
        }
        this.handleOption(message.option, message.data);
        if (this.state !== 'handshake') break;
      }
    } catch (error) {
      this.protocolFailure(error);
      return;
    }
    if (this.state === 'transmission' && this.decoder !== null && this.decoder.queue.length > 0) this.pump();
  }

  private reply(buffer: Buffer): void {
    if (this.socket.writable) this.socket.write(buffer);
  }

  private replyOptionError(option: number, replyType: number, message: string): void {
    this.log.debug({ connectionId: this.id, option, replyType, message }, 'nbd option refused');
    this.reply(P.encodeOptionError(option, replyType, message));
  }

  private handleOption(option: number, data: Buffer): void {
    this.optionCount += 1;
    if (this.optionCount > this.config.maxOptionsPerConnection) {
      throw nbdError('ERR_NBD_TOO_MANY_OPTIONS', `more than ${this.config.maxOptionsPerConnection} options`);
    }
    if (!this.fixedNewstyle && option !== P.NBD_OPT_EXPORT_NAME) {
      throw nbdError('ERR_NBD_NOT_FIXED_NEWSTYLE', `option ${option} from a client without FIXED_NEWSTYLE`);
    }
    if (this.shuttingDown || this.server.isClosing) {
      if (option === P.NBD_OPT_ABORT) {
        this.reply(P.encodeOptionReply(option, P.NBD_REP_ACK));
        this.end({ reason: 'client' }, false);
      } else if (option === P.NBD_OPT_EXPORT_NAME) {
        this.end({ reason: 'server' }, true);
      } else {
        this.replyOptionError(option, P.NBD_REP_ERR_SHUTDOWN, 'server is shutting down');
      }
      return;
    }
    switch (option) {
      case P.NBD_OPT_EXPORT_NAME:
        return this.optionExportName(data);
      case P.NBD_OPT_ABORT:
        this.reply(P.encodeOptionReply(option, P.NBD_REP_ACK));
        this.end({ reason: 'client' }, false);
        return;
      case P.NBD_OPT_LIST:
        return this.optionList(data);
      case P.NBD_OPT_INFO:
      case P.NBD_OPT_GO:
        return this.optionInfo(option, data);
      case P.NBD_OPT_STRUCTURED_REPLY:
        if (data.length !== 0) return this.replyOptionError(option, P.NBD_REP_ERR_INVALID, 'structured reply takes no data');
        this.structured = true;
        this.reply(P.encodeOptionReply(option, P.NBD_REP_ACK));
        return;
      case P.NBD_OPT_LIST_META_CONTEXT:
      case P.NBD_OPT_SET_META_CONTEXT:
        return this.optionMetaContext(option, data);
      default:
        // STARTTLS (no TLS in this server), EXTENDED_HEADERS and everything unknown.
        return this.replyOptionError(option, P.NBD_REP_ERR_UNSUP, `option ${option} not supported`);
    }
  }

  private optionExportName(data: Buffer): void {
    const name = P.decodeNbdString(data);
    const entry = name === null ? null : this.server.findExport(name);
    if (entry === null || entry.volume.closed) {
      // The spec allows no error reply here: the session must end.
      throw nbdError('ERR_NBD_UNKNOWN_EXPORT', `NBD_OPT_EXPORT_NAME for unknown export ${JSON.stringify(name ?? '')}`);
    }
    const flags = this.transmissionFlags(entry);
    this.reply(P.encodeExportNameReply(entry.volume.capacityBytes, flags, this.clientNoZeroes));
    this.enterTransmission(entry, flags);
  }

  private optionList(data: Buffer): void {
    if (data.length !== 0) return this.replyOptionError(P.NBD_OPT_LIST, P.NBD_REP_ERR_INVALID, 'NBD_OPT_LIST takes no data');
    this.socket.cork();
    for (const entry of this.server.exportEntries()) this.reply(P.encodeServerReply(entry.name, entry.description));
    this.reply(P.encodeOptionReply(P.NBD_OPT_LIST, P.NBD_REP_ACK));
    this.socket.uncork();
  }

  private optionInfo(option: number, data: Buffer): void {
    const parsed = P.parseInfoRequest(data);
    if (!parsed.ok) return this.replyOptionError(option, parsed.reply, parsed.message);
    const { exportName, infoTypes } = parsed.value;
    const entry = this.server.findExport(exportName);
    if (entry === null) return this.replyOptionError(option, P.NBD_REP_ERR_UNKNOWN, `no export named ${JSON.stringify(exportName)}`);
    if (entry.volume.closed) return this.replyOptionError(option, P.NBD_REP_ERR_UNKNOWN, `export ${JSON.stringify(entry.name)} is not available (volume closed)`);
    const flags = this.transmissionFlags(entry);
    this.socket.cork();
    this.reply(P.encodeInfoExport(option, entry.volume.capacityBytes, flags));
    if (infoTypes.includes(P.NBD_INFO_NAME) || exportName !== entry.name) {
      this.reply(P.encodeInfoString(option, P.NBD_INFO_NAME, entry.name));
    }
    if (infoTypes.includes(P.NBD_INFO_DESCRIPTION) && entry.description !== '') {
      this.reply(P.encodeInfoString(option, P.NBD_INFO_DESCRIPTION, entry.description));
    }
    // Sent whether asked or not (the spec allows unrequested info): strict volumes need it.
    this.reply(P.encodeInfoBlockSize(option, entry.minimumBlockBytes, entry.preferredBlockBytes, entry.maximumBlockBytes));
    this.reply(P.encodeOptionReply(option, P.NBD_REP_ACK));
    this.socket.uncork();
    if (option === P.NBD_OPT_GO) this.enterTransmission(entry, flags);
  }

  private optionMetaContext(option: number, data: Buffer): void {
    const setting = option === P.NBD_OPT_SET_META_CONTEXT;
    // SET replaces the selection even when it fails.
    if (setting) {
      this.contexts = [];
      this.contextsExport = null;
    }
    if (!this.structured) {
      return this.replyOptionError(option, P.NBD_REP_ERR_INVALID, 'negotiate NBD_OPT_STRUCTURED_REPLY first');
    }
    const parsed = P.parseMetaContextRequest(data);
    if (!parsed.ok) return this.replyOptionError(option, parsed.reply, parsed.message);
    const entry = this.server.findExport(parsed.value.exportName);
    if (entry === null) {
      return this.replyOptionError(option, P.NBD_REP_ERR_UNKNOWN, `no export named ${JSON.stringify(parsed.value.exportName)}`);
    }
    let available: string[];
    try {
      available = availableContexts(entry.volume);
    } catch (error) {
      return this.replyOptionError(option, P.NBD_REP_ERR_UNKNOWN, `export ${JSON.stringify(entry.name)} is not available: ${String(error)}`);
    }
    const names = matchMetaContexts(available, parsed.value.queries, !setting);
    this.socket.cork();
    if (setting) {
      const selected: SelectedContext[] = names.map((name, index) =>
        name === P.BASE_ALLOCATION_CONTEXT
          ? { id: index + 1, name, kind: 'allocation' as const }
          : { id: index + 1, name, kind: 'dirty' as const, bitmapName: name.slice(P.DIRTY_CONTEXT_PREFIX.length), bitmap: null },
      );
      for (const context of selected) this.reply(P.encodeMetaContextReply(option, context.id, context.name));
      this.contexts = selected;
      this.contextsExport = entry.name;
    } else {
      for (const name of names) this.reply(P.encodeMetaContextReply(option, 0, name));
    }
    this.reply(P.encodeOptionReply(option, P.NBD_REP_ACK));
    this.socket.uncork();
  }

  private transmissionFlags(entry: ExportEntry): number {
    let flags = P.NBD_FLAG_HAS_FLAGS | P.NBD_FLAG_SEND_FLUSH | P.NBD_FLAG_CAN_MULTI_CONN | P.NBD_FLAG_SEND_CACHE;
    if (entry.readOnly) {
      flags |= P.NBD_FLAG_READ_ONLY;
    } else {
      flags |= P.NBD_FLAG_SEND_FUA | P.NBD_FLAG_SEND_TRIM | P.NBD_FLAG_SEND_WRITE_ZEROES | P.NBD_FLAG_SEND_FAST_ZERO;
    }
    if (this.structured) flags |= P.NBD_FLAG_SEND_DF;
    return flags;
  }

  private enterTransmission(entry: ExportEntry, flags: number): void {
    if (this.contextsExport !== entry.name) this.contexts = [];
    this.entry = entry;
    this.limits = {
      sizeBytes: entry.volume.capacityBytes,
      transmissionFlags: flags,
      minimumBlockBytes: entry.minimumBlockBytes,
      maximumBlockBytes: entry.maximumBlockBytes,
      metaContextCount: this.contexts.length,
    };
    this.decoder = new P.RequestDecoder(
      { maxPayloadBytes: this.config.maxPayloadBytes, maxDiscardBytes: this.config.maxDiscardBytes },
      this.handshake.queue,
    );
    if (this.handshakeTimer !== null) {
      clearTimeout(this.handshakeTimer);
      this.handshakeTimer = null;
    }
    this.setState('transmission');
    this.log.debug(
      { connectionId: this.id, export: entry.name, structured: this.structured, contexts: this.contexts.map((c) => c.name) },
      'nbd transmission started',
    );
  }

  // --- transmission --------------------------------------------------------------------------

  /** Handles every complete request buffered, within the flow-control limits. */
  private pump(): void {
    const decoder = this.decoder;
    if (decoder === null || this.state !== 'transmission') return;
    const out = this.out;
    const maxInFlight = this.config.maxInFlightRequests;
    out.begin();
    let blocked = false;
    try {
      for (;;) {
        if (this.inFlight >= maxInFlight || this.socket.writableLength >= OUTPUT_HIGH_WATER_BYTES) {
          blocked = true;
          break;
        }
        const request = decoder.next();
        if (request === null) break;
        this.handleRequest(request);
        if (this.state !== 'transmission') break;
        if (out.unflushedBytes >= OUTPUT_FLUSH_BYTES) out.flush();
      }
    } catch (error) {
      if (isNbdError(error) && error.code === 'ERR_NBD_PAYLOAD_TOO_LARGE') {
        // The header was sound: answer it, then close (its payload cannot be skipped safely).
        this.replyError(decoder.request, P.NBD_EINVAL, P.REJECT.payloadDropped.message);
        out.flush();
        this.server.recordProtocolError(this.id, error);
        this.log.warn({ connectionId: this.id, code: error.code, err: error.message }, 'nbd protocol error');
        this.end({ reason: 'protocol-error', error }, false);
        return;
      }
      out.flush();
      this.protocolFailure(error);
      return;
    }
    out.flush();
    if (this.state !== 'transmission') return;
    if (blocked) this.pauseSocket();
    else this.resumeSocket();
  }

  private handleRequest(request: P.NbdRequest): void {
    const server = this.server;
    server.countRequest(request.type);
    if (this.entry !== null) {
      const index = request.type < P.NBD_CMD_COUNT ? request.type : P.NBD_CMD_COUNT;
      this.entry.requestCounts[index] = (this.entry.requestCounts[index] as number) + 1;
    }
    this.headerFirst = request.type === P.NBD_CMD_WRITE && request.length >= HEADER_FIRST_MIN_BYTES;
    if (request.type === P.NBD_CMD_DISC) {
      this.discReceived = true;
      this.log.debug({ connectionId: this.id }, 'nbd client sent NBD_CMD_DISC');
      this.end({ reason: 'client' }, false);
      return;
    }
    if (this.shuttingDown) {
      this.replyError(request, P.NBD_ESHUTDOWN, 'server is shutting down');
      return;
    }
    const rejection = P.validateRequest(request, this.limits as P.ExportLimits);
    if (rejection !== null) {
      this.replyError(request, rejection.errno, rejection.message);
      return;
    }
    const entry = this.entry as ExportEntry;
    switch (request.type) {
      case P.NBD_CMD_READ:
        return this.handleRead(request, entry);
      case P.NBD_CMD_WRITE: {
        let sequence: number;
        try {
          sequence = entry.volume.write(request.offset, request.payload as Buffer);
        } catch (error) {
          return this.replyVolumeError(request, error);
        }
        server.bytesWritten += request.length;
        entry.bytesWritten += request.length;
        return this.completeWrite(request, entry, sequence);
      }
      case P.NBD_CMD_TRIM: {
        let sequence: number;
        try {
          sequence = entry.volume.trim(request.offset, request.length);
        } catch (error) {
          return this.replyVolumeError(request, error);
        }
        return this.completeWrite(request, entry, sequence);
      }
      case P.NBD_CMD_WRITE_ZEROES:
        // Every zero request is fast for a memory store (it never costs more than the write
        // it replaces), so FAST_ZERO never fails with ENOTSUP.
        let sequence: number;
        try {
          sequence = entry.volume.writeZeroes(request.offset, request.length, { mayPunchHole: (request.flags & P.NBD_CMD_FLAG_NO_HOLE) === 0 });
        } catch (error) {
          return this.replyVolumeError(request, error);
        }
        return this.completeWrite(request, entry, sequence);
      case P.NBD_CMD_FLUSH:
        if (entry.readOnly) return this.replyOk(request);
        return this.startFlush(request, entry);
      case P.NBD_CMD_CACHE:
        // Everything is in memory already: validated, then nothing to do.
        return this.replyOk(request);
      case P.NBD_CMD_BLOCK_STATUS:
        return this.handleBlockStatus(request, entry);
      default:
        return this.replyError(request, P.NBD_EINVAL, 'unknown command');
    }
  }

  /**
   * Replies to a write, zero or trim at its ack point: at once for a plain volume (one branch
   * on the hot path), or when the volume's writeCompletion promise settles (a sync pair).
   */
  private completeWrite(request: P.NbdRequest, entry: ExportEntry, sequence: number): void {
    const wait = entry.volume.writeCompletion === undefined ? null : entry.volume.writeCompletion(sequence);
    if (wait === null) return this.finishWrite(request, entry);
    this.inFlight += 1;
    // The decoder reuses its request object for the next request: keep what the reply needs.
    const held: P.NbdRequest = { ...request, payload: null };
    wait.then(
      () => this.afterAckPoint(held, entry, undefined),
      (error: unknown) => this.afterAckPoint(held, entry, error),
    );
  }

  private afterAckPoint(request: P.NbdRequest, entry: ExportEntry, error: unknown): void {
    this.inFlight -= 1;
    if (this.state === 'closed' || this.socket.destroyed) return;
    this.out.begin();
    if (error === undefined) this.finishWrite(request, entry);
    else this.replyVolumeError(request, error);
    this.scheduleWrite();
  }

  private finishWrite(request: P.NbdRequest, entry: ExportEntry): void {
    if ((request.flags & P.NBD_CMD_FLAG_FUA) !== 0) this.startFlush(request, entry);
    else this.replyOk(request);
  }

  private startFlush(request: P.NbdRequest, entry: ExportEntry): void {
    this.inFlight += 1;
    entry.flushes.request({ connection: this, cookieHigh: request.cookieHigh, cookieLow: request.cookieLow, type: request.type });
  }

  /** Called by the FlushCoordinator. */
  completeFlush(waiter: FlushWaiter, error: unknown): void {
    this.inFlight -= 1;
    if (this.state === 'closed' || this.socket.destroyed) return;
    this.out.begin();
    if (error === null) {
      this.replySimple(waiter.cookieHigh, waiter.cookieLow, 0);
    } else {
      this.log.warn({ connectionId: this.id, err: String(error) }, 'nbd flush failed');
      this.writeError(waiter.cookieHigh, waiter.cookieLow, errnoForVolumeError(error), `flush failed: ${String(error)}`);
    }
    this.scheduleWrite();
  }

  private scheduleWrite(): void {
    if (this.writeScheduled) return;
    this.writeScheduled = true;
    queueMicrotask(() => {
      this.writeScheduled = false;
      this.out.flush();
      if (this.state === 'transmission') this.pump();
      else if (this.state === 'closing') this.maybeFinishClosing();
    });
  }

  // --- replies -------------------------------------------------------------------------------

  private replySimple(cookieHigh: number, cookieLow: number, errno: number): void {
    const out = this.out;
    const at = out.reserve(P.NBD_SIMPLE_REPLY_HEADER_BYTES);
    out.commit(P.writeSimpleReply(out.arena, at, errno, cookieHigh, cookieLow));
  }

  private replyOk(request: P.NbdRequest): void {
    this.replySimple(request.cookieHigh, request.cookieLow, 0);
  }

  private replyError(request: P.NbdRequest, errno: number, message: string): void {
    this.writeError(request.cookieHigh, request.cookieLow, errno, message);
  }

  private replyVolumeError(request: P.NbdRequest, error: unknown): void {
    const errno = errnoForVolumeError(error);
    this.log.warn(
      { connectionId: this.id, command: P.commandName(request.type), offset: request.offset, length: request.length, errno, err: String(error) },
      'nbd volume error',
    );
    this.writeError(request.cookieHigh, request.cookieLow, errno, String((error as Error)?.message ?? error));
  }

  /** An error reply: a structured ERROR chunk when negotiated (with a message), else simple. */
  private writeError(cookieHigh: number, cookieLow: number, errno: number, message: string): void {
    this.server.errors += 1;
    const out = this.out;
    if (!this.structured) {
      this.replySimple(cookieHigh, cookieLow, errno);
      return;
    }
    const bytes = messageBytes(message);
    const at = out.reserve(P.errorChunkBytes(bytes.length));
    out.commit(P.writeErrorChunk(out.arena, at, P.NBD_REPLY_FLAG_DONE, cookieHigh, cookieLow, errno, bytes));
  }

  private handleRead(request: P.NbdRequest, entry: ExportEntry): void {
    const length = request.length;
    if (
      this.structured &&
      length >= this.config.holeDetectionMinBytes &&
      (request.flags & P.NBD_CMD_FLAG_DF) === 0
    ) {
      this.readWithHoles(request, entry);
      return;
    }
    const headerBytes = this.structured ? P.OFFSET_DATA_PREFIX_BYTES : P.NBD_SIMPLE_REPLY_HEADER_BYTES;
    const total = headerBytes + length;
    const out = this.out;
    let target: Buffer;
    let at: number;
    let dedicated: Buffer | null = null;
    if (total > DEDICATED_REPLY_BYTES) {
      dedicated = out.dedicated(total);
      target = dedicated;
      at = 0;
    } else {
      at = out.reserve(total);
      target = out.arena;
    }
    const dataAt = this.structured
      ? P.writeOffsetDataPrefix(target, at, P.NBD_REPLY_FLAG_DONE, request.cookieHigh, request.cookieLow, request.offset, length)
      : P.writeSimpleReply(target, at, 0, request.cookieHigh, request.cookieLow);
    try {
      entry.volume.read(request.offset, target.subarray(dataAt, dataAt + length));
    } catch (error) {
      if (dedicated !== null) out.dropDedicated(dedicated);
      this.replyVolumeError(request, error);
      return;
    }
    if (dedicated === null) out.commit(at + total);
    this.server.bytesRead += length;
    entry.bytesRead += length;
  }

  /** Structured READ with OFFSET_HOLE chunks for unallocated extents. */
  private readWithHoles(request: P.NbdRequest, entry: ExportEntry): void {
    const offset = request.offset;
    const length = request.length;
    let extents: PlacedExtent[];
    try {
      extents = allocationExtents(entry.volume.allocationMap(offset, length), offset, length, entry.minimumBlockBytes);
    } catch {
      extents = [{ byteOffset: offset, byteLength: length, flags: 0 }];
    }
    // Small holes travel as data: fold them into their neighbours.
    const runs: PlacedExtent[] = [];
    for (const extent of extents) {
      const hole = (extent.flags & P.NBD_STATE_HOLE) !== 0 && extent.byteLength >= MIN_HOLE_CHUNK_BYTES;
      const flags = hole ? P.NBD_STATE_HOLE : 0;
      const last = runs[runs.length - 1];
      if (last !== undefined && last.flags === flags) last.byteLength += extent.byteLength;
      else runs.push({ byteOffset: extent.byteOffset, byteLength: extent.byteLength, flags });
    }
    let total = 0;
    for (const run of runs) total += run.flags === 0 ? P.OFFSET_DATA_PREFIX_BYTES + run.byteLength : P.OFFSET_HOLE_CHUNK_BYTES;
    const out = this.out;
    // One buffer for the whole reply (arena or dedicated), so a failure can be undone at once.
    const dedicated = total > DEDICATED_REPLY_BYTES ? out.dedicated(total) : null;
    // reserve() may switch arenas: take the target after it.
    const start = dedicated !== null ? 0 : out.reserve(total);
    const target = dedicated ?? out.arena;
    let position = start;
    const { cookieHigh, cookieLow } = request;
    try {
      for (let i = 0; i < runs.length; i++) {
        const run = runs[i] as PlacedExtent;
        const flags = i === runs.length - 1 ? P.NBD_REPLY_FLAG_DONE : 0;
        if (run.flags !== 0) {
          position = P.writeOffsetHole(target, position, flags, cookieHigh, cookieLow, run.byteOffset, run.byteLength);
        } else {
          const dataAt = P.writeOffsetDataPrefix(target, position, flags, cookieHigh, cookieLow, run.byteOffset, run.byteLength);
          entry.volume.read(run.byteOffset, target.subarray(dataAt, dataAt + run.byteLength));
          position = dataAt + run.byteLength;
        }
      }
    } catch (error) {
      if (dedicated !== null) out.dropDedicated(dedicated);
      this.replyVolumeError(request, error);
      return;
    }
    if (dedicated !== null) out.shrinkDedicated(dedicated, position);
    else out.commit(position);
    this.server.bytesRead += length;
    entry.bytesRead += length;
  }

  private handleBlockStatus(request: P.NbdRequest, entry: ExportEntry): void {
    const offset = request.offset;
    const length = request.length;
    const requestOne = (request.flags & P.NBD_CMD_FLAG_REQ_ONE) !== 0;
    const chunks: { id: number; descriptors: P.BlockStatusExtent[] }[] = [];
    try {
      for (const context of this.contexts) {
        let extents: PlacedExtent[];
        if (context.kind === 'allocation') {
          extents = allocationExtents(entry.volume.allocationMap(offset, length), offset, length, entry.minimumBlockBytes);
        } else {
          // The view stays open for the connection; a closed one (bitmap deleted, volume
          // closed) is reopened once, and that failing is an EIO reply.
          if (context.bitmap === null || context.bitmap.closed) context.bitmap = entry.volume.openBitmap(context.bitmapName);
          const bitmap = context.bitmap;
          extents = dirtyExtents(bitmap, offset, length, entry.minimumBlockBytes, DEFAULT_MAX_EXTENTS);
        }
        chunks.push({ id: context.id, descriptors: toDescriptors(extents, length, requestOne, DEFAULT_MAX_EXTENTS) });
      }
    } catch (error) {
      this.replyVolumeError(request, error);
      return;
    }
    let total = 0;
    for (const chunk of chunks) total += P.blockStatusChunkBytes(chunk.descriptors.length);
    const out = this.out;
    const dedicated = total > DEDICATED_REPLY_BYTES ? out.dedicated(total) : null;
    let position = dedicated !== null ? 0 : out.reserve(total);
    const target = dedicated ?? out.arena;
    chunks.forEach((chunk, index) => {
      const flags = index === chunks.length - 1 ? P.NBD_REPLY_FLAG_DONE : 0;
      position = P.writeBlockStatusChunk(target, position, flags, request.cookieHigh, request.cookieLow, chunk.id, chunk.descriptors);
    });
    if (dedicated === null) out.commit(position);
  }
}

/**
 * Wraps the stream handle of `accepted` (a socket from a listener with pauseOnConnect, not
 * reading yet) in a new net.Socket whose reads land in buffers the caller supplies: the `onread`
 * option, which Node only takes in the net.Socket constructor, never for sockets a net.Server
 * creates. `accepted` is destroyed without its handle (it never read a byte), which also gives
 * back its slot in net.Server's connection count. Null, with `accepted` untouched, when the
 * handle does not support user buffers (a Node without them): the caller then reads 'data'.
 */
function adoptWithUserBuffers(accepted: net.Socket, onread: net.OnReadOpts): net.Socket | null {
  const internals = accepted as unknown as { _handle?: { useUserBuffer?: unknown; readStart?: unknown; readStop?: unknown } | null };
  const handle = internals._handle;
  if (
    handle === null ||
    handle === undefined ||
    typeof handle.useUserBuffer !== 'function' ||
    typeof handle.readStart !== 'function' ||
    typeof handle.readStop !== 'function'
  ) {
    return null;
  }
  internals._handle = null;
  accepted.destroy();
  return new net.Socket({ handle, onread, allowHalfOpen: false, readable: true, writable: true } as net.SocketConstructorOpts);
}

function isNbdCoded(error: unknown): error is BlockmirrorError {
  return isNbdError(error);
}

// ---------------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------------

interface ResolvedConfig {
  maxPayloadBytes: number;
  maxDiscardBytes: number;
  maxInFlightRequests: number;
  maxConnections: number;
  handshakeTimeoutMs: number;
  maxOptionBytes: number;
  maxOptionsPerConnection: number;
  holeDetectionMinBytes: number;
  closeTimeoutMs: number;
  logger: NbdLogger;
  /** Read sockets into connection-owned buffers (onread); false: 'data' events. */
  userBufferReads: boolean;
}

interface Listener {
  server: net.Server;
  spec: NbdListenOptions;
  transport: 'tcp' | 'unix';
}

function checkInteger(name: string, value: number | undefined, fallback: number, minimum: number, maximum: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value)) throw new TypeError(`${name} must be an integer, got ${String(value)}`);
  if (value < minimum || value > maximum) throw new RangeError(`${name} must be in [${minimum}, ${maximum}], got ${value}`);
  return value;
}

function listenOnce(server: net.Server, spec: NbdListenOptions): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onError = (error: Error) => reject(error);
    server.once('error', onError);
    const done = () => {
      server.off('error', onError);
      resolve();
    };
    if ('path' in spec) server.listen({ path: spec.path }, done);
    else server.listen({ host: spec.host ?? '127.0.0.1', port: spec.port ?? 10809 }, done);
  });
}

/** True when `socketPath` is a Unix socket file that nobody accepts connections on. */
function isStaleSocket(socketPath: string): Promise<boolean> {
  try {
    if (!fs.lstatSync(socketPath).isSocket()) return Promise.resolve(false);
  } catch {
    return Promise.resolve(false);
  }
  return new Promise((resolve) => {
    const probe = net.connect({ path: socketPath });
    probe.once('connect', () => {
      probe.destroy();
      resolve(false);
    });
    probe.once('error', (error: NodeJS.ErrnoException) => resolve(error.code === 'ECONNREFUSED'));
  });
}

function formatHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

function encodeExportPath(name: string): string {
  return encodeURIComponent(name).replace(/%2F/gi, '/');
}

/**
 * An NBD server exporting volumes. Events: 'connection' (NbdConnectionEvent), 'disconnect'
 * (NbdDisconnectEvent), 'protocol-error' (NbdProtocolErrorEvent), 'listening'.
 */
export class NbdServer extends EventEmitter {
  private readonly config: ResolvedConfig;
  private readonly exports: ExportEntry[] = [];
  private readonly exportsByName = new Map<string, ExportEntry>();
  private readonly listenSpecs: NbdListenOptions[];
  private readonly netServers: Listener[] = [];
  private readonly connections = new Set<Connection>();
  private nextConnectionId = 1;
  private status: 'new' | 'listening' | 'closing' | 'closed' = 'new';
  private closing: Promise<void> | null = null;
  private readonly log: NbdLogger;
  // Stats (public to the connections of this module; read them with stats()).
  totalConnections = 0;
  bytesRead = 0;
  bytesWritten = 0;
  errors = 0;
  protocolErrors = 0;
  private readonly requestCounts = new Float64Array(P.NBD_CMD_COUNT + 1);

  constructor(options: NbdServerOptions) {
    super();
    if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object');
    if (!Array.isArray(options.exports) || options.exports.length === 0) throw new TypeError('options.exports must be a non-empty array');
    const maxPayloadBytes = checkInteger('maxPayloadBytes', options.maxPayloadBytes, P.DEFAULT_MAX_PAYLOAD_BYTES, MIN_MAX_PAYLOAD_BYTES, MAX_MAX_PAYLOAD_BYTES);
    this.config = {
      maxPayloadBytes,
      maxDiscardBytes: checkInteger('maxDiscardBytes', options.maxDiscardBytes, 2 * maxPayloadBytes, maxPayloadBytes, 2 ** 32 - 1),
      maxInFlightRequests: checkInteger('maxInFlightRequests', options.maxInFlightRequests, DEFAULT_MAX_IN_FLIGHT, 1, 65536),
      maxConnections: checkInteger('maxConnections', options.maxConnections, DEFAULT_MAX_CONNECTIONS, 1, 65536),
      handshakeTimeoutMs: checkInteger('handshakeTimeoutMs', options.handshakeTimeoutMs, DEFAULT_HANDSHAKE_TIMEOUT_MS, 1, 3_600_000),
      maxOptionBytes: checkInteger('maxOptionBytes', options.maxOptionBytes, P.DEFAULT_MAX_OPTION_BYTES, 1024, 16 * 1024 * 1024),
      maxOptionsPerConnection: checkInteger('maxOptionsPerConnection', options.maxOptionsPerConnection, DEFAULT_MAX_OPTIONS, 1, 1_000_000),
      holeDetectionMinBytes: checkInteger('holeDetectionMinBytes', options.holeDetectionMinBytes, DEFAULT_HOLE_DETECTION_MIN_BYTES, 1, 2 ** 32 - 1),
      closeTimeoutMs: checkInteger('closeTimeoutMs', options.closeTimeoutMs, DEFAULT_CLOSE_TIMEOUT_MS, 0, 3_600_000),
      logger: options.logger ?? SILENT,
      // BLOCKMIRROR_NBD_RECEIVE=stream selects the 'data'-event read path (diagnosis, tests).
      userBufferReads: process.env.BLOCKMIRROR_NBD_RECEIVE !== 'stream',
    };
    this.log = this.config.logger;
    const coordinators = new Map<Volume, FlushCoordinator>();
    for (const [index, spec] of options.exports.entries()) {
      const at = `exports[${index}]`;
      if (typeof spec !== 'object' || spec === null) throw new TypeError(`${at} must be an object`);
      if (typeof spec.name !== 'string' || spec.name.length === 0) throw new TypeError(`${at}.name must be a non-empty string`);
      if (P.decodeNbdString(Buffer.from(spec.name, 'utf8')) === null) throw new RangeError(`${at}.name must be at most 4096 bytes of UTF-8 without NUL`);
      if (this.exportsByName.has(spec.name)) throw new RangeError(`${at}.name ${JSON.stringify(spec.name)} is used twice`);
      const volume = spec.volume;
      if (typeof volume !== 'object' || volume === null || typeof volume.read !== 'function') throw new TypeError(`${at}.volume must be a Volume`);
      const description = spec.description ?? '';
      if (typeof description !== 'string') throw new TypeError(`${at}.description must be a string`);
      if (Buffer.byteLength(description) > P.NBD_MAX_STRING_BYTES) throw new RangeError(`${at}.description must be at most 4096 bytes`);
      const minimumBlockBytes = volume.strict ? volume.blockSize : 1;
      const preferredBlockBytes = Math.max(volume.blockSize, PREFERRED_BLOCK_BYTES);
      const maximumBlockBytes = maxPayloadBytes - (maxPayloadBytes % minimumBlockBytes);
      if (maximumBlockBytes < preferredBlockBytes) {
        throw new RangeError(`maxPayloadBytes ${maxPayloadBytes} is below the preferred block size ${preferredBlockBytes} of ${at}`);
      }
      let flushes = coordinators.get(volume);
      if (flushes === undefined) {
        flushes = new FlushCoordinator(volume);
        coordinators.set(volume, flushes);
      }
      const entry: ExportEntry = {
        name: spec.name,
        description,
        readOnly: spec.readOnly === true,
        volume,
        flushes,
        minimumBlockBytes,
        preferredBlockBytes,
        maximumBlockBytes,
        requestCounts: new Float64Array(P.NBD_CMD_COUNT + 1),
        bytesRead: 0,
        bytesWritten: 0,
      };
      this.exports.push(entry);
      this.exportsByName.set(entry.name, entry);
    }
    const listen = options.listen ?? DEFAULT_LISTEN;
    if (!Array.isArray(listen) || listen.length === 0) throw new TypeError('options.listen must be a non-empty array');
    for (const [index, spec] of listen.entries()) {
      if (typeof spec !== 'object' || spec === null) throw new TypeError(`listen[${index}] must be an object`);
      if ('path' in spec) {
        if (typeof spec.path !== 'string' || spec.path.length === 0) throw new TypeError(`listen[${index}].path must be a non-empty string`);
      } else {
        if (spec.host !== undefined && typeof spec.host !== 'string') throw new TypeError(`listen[${index}].host must be a string`);
        checkInteger(`listen[${index}].port`, spec.port, 10809, 0, 65535);
      }
    }
    this.listenSpecs = listen.map((spec) => ({ ...spec }));
  }

  /** True once close() was called. */
  get isClosing(): boolean {
    return this.status === 'closing' || this.status === 'closed';
  }

  /** Opens every listener; rejects (ERR_NBD_LISTEN) and closes the opened ones if any fails. */
  async listen(): Promise<void> {
    if (this.status !== 'new') {
      throw nbdError(this.isClosing ? 'ERR_NBD_SERVER_CLOSED' : 'ERR_NBD_LISTEN', `listen() called on a ${this.status} server`);
    }
    this.status = 'listening';
    try {
      for (const spec of this.listenSpecs) {
        const transport = 'path' in spec ? 'unix' : 'tcp';
        // pauseOnConnect: nothing is read before the connection takes the socket over.
        const server = net.createServer({ noDelay: true, pauseOnConnect: true });
        server.on('connection', (socket) => this.onConnection(socket, transport));
        try {
          await listenOnce(server, spec);
        } catch (error) {
          // A socket file left by a server that died (nobody accepts on it) is replaced once;
          // a live one is never touched.
          if ('path' in spec && (error as NodeJS.ErrnoException).code === 'EADDRINUSE' && (await isStaleSocket(spec.path))) {
            this.log.warn({ path: spec.path }, 'nbd replacing a stale socket file');
            fs.unlinkSync(spec.path);
            await listenOnce(server, spec).catch((retryError: unknown) => {
              throw nbdError('ERR_NBD_LISTEN', `cannot listen on ${JSON.stringify(spec)}: ${String((retryError as Error)?.message ?? retryError)}`, retryError);
            });
          } else {
            throw nbdError('ERR_NBD_LISTEN', `cannot listen on ${JSON.stringify(spec)}: ${String((error as Error)?.message ?? error)}`, error);
          }
        }
        server.on('error', (error) => this.log.error({ err: error.message }, 'nbd listener error'));
        this.netServers.push({ server, spec, transport });
      }
    } catch (error) {
      await this.closeListeners();
      this.status = 'new';
      throw error;
    }
    for (const address of this.addresses()) this.log.info({ uri: address.uri }, 'nbd export listening');
    this.emit('listening');
  }

  /** One address per listener and export. */
  addresses(): NbdAddress[] {
    const result: NbdAddress[] = [];
    for (const listener of this.netServers) {
      const address = listener.server.address();
      for (const entry of this.exports) {
        const path = encodeExportPath(entry.name);
        if (listener.transport === 'unix') {
          const socketPath = (listener.spec as { path: string }).path;
          result.push({
            uri: `nbd+unix:///${path}?socket=${encodeURIComponent(socketPath).replace(/%2F/gi, '/')}`,
            exportName: entry.name,
            transport: 'unix',
            path: socketPath,
          });
        } else if (address !== null && typeof address === 'object') {
          result.push({
            uri: `nbd://${formatHost(address.address)}:${address.port}/${path}`,
            exportName: entry.name,
            transport: 'tcp',
            host: address.address,
            port: address.port,
          });
        }
      }
    }
    return result;
  }

  /**
   * Makes an export read-only or read-write from now on (a pair's takeover or demotion). New
   * connections see the new flags; a connection negotiated earlier keeps its flags, and its
   * writes to a volume that stopped being writable fail (EPERM) in the volume.
   */
  setExportReadOnly(name: string, readOnly: boolean): void {
    const entry = this.exportsByName.get(name);
    if (entry === undefined) throw new RangeError(`no export named ${JSON.stringify(name)}`);
    entry.readOnly = readOnly;
  }

  /** Per-export counters: requests by type and payload bytes, since the server was created. */
  exportStats(): NbdExportStats[] {
    return this.exports.map((entry) => ({
      name: entry.name,
      readOnly: entry.readOnly,
      requests: requestCountsOf(entry.requestCounts),
      bytesRead: entry.bytesRead,
      bytesWritten: entry.bytesWritten,
    }));
  }

  stats(): NbdServerStats {
    const counts = this.requestCounts;
    return {
      connections: this.connections.size,
      totalConnections: this.totalConnections,
      requests: requestCountsOf(counts),
      bytesRead: this.bytesRead,
      bytesWritten: this.bytesWritten,
      errors: this.errors,
      protocolErrors: this.protocolErrors,
    };
  }

  /**
   * Stops accepting, then (graceful, the default) answers requests in flight, answers requests
   * already received with ESHUTDOWN, flushes every exported volume and closes the sockets;
   * non-graceful drops every socket at once. A later call returns the same promise; a
   * non-graceful call during a graceful close escalates it (every socket is dropped now).
   */
  close(options: { graceful?: boolean } = {}): Promise<void> {
    const graceful = options.graceful !== false;
    if (this.closing !== null) {
      if (!graceful) for (const connection of this.connections) connection.shutdown(false);
      return this.closing;
    }
    this.status = 'closing';
    this.closing = (async () => {
      const listenersClosed = this.closeListeners();
      const connectionsClosed = Promise.all(
        [...this.connections].map(
          (connection) =>
            new Promise<void>((resolve) => {
              connection.socket.once('close', () => resolve());
              connection.shutdown(graceful);
              if (connection.socket.destroyed && connection.state === 'closed') resolve();
            }),
        ),
      );
      await Promise.all([listenersClosed, connectionsClosed]);
      if (graceful) {
        const flushed = new Set<FlushCoordinator>();
        for (const entry of this.exports) {
          if (flushed.has(entry.flushes) || entry.readOnly || entry.volume.closed) continue;
          flushed.add(entry.flushes);
          try {
            await entry.flushes.flushNow();
          } catch (error) {
            this.log.warn({ export: entry.name, err: String(error) }, 'nbd final flush failed');
          }
        }
      }
      this.status = 'closed';
      this.log.info({}, 'nbd server closed');
    })();
    return this.closing;
  }

  // --- used by connections -------------------------------------------------------------------

  /** The export for a client-supplied name ('' is the first export). */
  findExport(name: string): ExportEntry | null {
    if (name === '') return this.exports[0] ?? null;
    return this.exportsByName.get(name) ?? null;
  }

  exportEntries(): readonly ExportEntry[] {
    return this.exports;
  }

  countRequest(type: number): void {
    const index = type < P.NBD_CMD_COUNT ? type : P.NBD_CMD_COUNT;
    (this.requestCounts as Float64Array)[index] = (this.requestCounts[index] as number) + 1;
  }

  recordProtocolError(connectionId: number, error: BlockmirrorError): void {
    this.protocolErrors += 1;
    const event: NbdProtocolErrorEvent = { connectionId, error };
    this.emit('protocol-error', event);
  }

  connectionClosed(connection: Connection, why: { reason: string; error?: Error }): void {
    if (!this.connections.delete(connection)) return;
    const event: NbdDisconnectEvent = { connectionId: connection.id, reason: why.reason };
    if (connection.exportName !== undefined) event.exportName = connection.exportName;
    if (why.error !== undefined) event.error = why.error;
    this.log.debug({ connectionId: connection.id, reason: why.reason }, 'nbd connection closed');
    this.emit('disconnect', event);
  }

  // --- internals -----------------------------------------------------------------------------

  private onConnection(accepted: net.Socket, transport: 'tcp' | 'unix'): void {
    if (this.isClosing) {
      accepted.destroy();
      return;
    }
    if (this.connections.size >= this.config.maxConnections) {
      const error = nbdError('ERR_NBD_TOO_MANY_CONNECTIONS', `connection limit ${this.config.maxConnections} reached`);
      this.log.warn({ code: error.code, remoteAddress: accepted.remoteAddress }, 'nbd connection refused');
      accepted.on('error', () => undefined);
      accepted.destroy();
      return;
    }
    const id = this.nextConnectionId++;
    this.totalConnections += 1;
    const connection = new Connection(id, accepted, transport, this, this.config);
    this.connections.add(connection);
    // The connection may have moved the stream to a socket of its own.
    const socket = connection.socket;
    const event: NbdConnectionEvent = { connectionId: id, transport };
    if (socket.remoteAddress !== undefined) event.remoteAddress = socket.remoteAddress;
    if (socket.remotePort !== undefined) event.remotePort = socket.remotePort;
    this.log.debug({ ...event }, 'nbd connection opened');
    this.emit('connection', event);
  }

  private async closeListeners(): Promise<void> {
    const listeners = this.netServers.splice(0);
    await Promise.all(
      listeners.map(
        (listener) =>
          new Promise<void>((resolve) => {
            listener.server.close(() => resolve());
          }).then(() => {
            // Node removes its Unix socket file on close; make sure a stale one is not left.
            if (listener.transport === 'unix') {
              try {
                fs.unlinkSync((listener.spec as { path: string }).path);
              } catch {
                // Already gone.
              }
            }
          }),
      ),
    );
  }
}

