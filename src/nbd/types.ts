// Notes on the design
// -------------------
// The types of the NBD server: first the public ones (re-exported by server.ts and index.ts),
// then the records the files of the server share among themselves (never re-exported).
//
// NbdVolume and NbdBitmap are structural: they list exactly the members of the storage classes
// the server calls, so a Volume is accepted as is and this area does not load the native addon
// by itself. An ExportEntry is built once per export by the NbdServer constructor and then only
// its counters and readOnly change; a ResolvedConfig is the server's validated options, read by
// every connection and never changed.

import type { BlockmirrorError } from '../errors';
import type { FlushCoordinator } from './flush';

// ---------------------------------------------------------------------------------------------
// Public types (re-exported by server.ts and index.ts)
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
  /**
   * Receive into the store (docs/nbd-receive.md): the memory where a WRITE's payload may be
   * received directly, after the seams and the bitmap marks, or null (then write()). Volumes
   * without these methods always take write(). `revoke`: a volume whose role may change while
   * the payload lands (a pair's primary) calls it to stop the landing; it has then committed
   * what landed itself, and the request is refused with `reason`.
   */
  beginDirectWrite?(byteOffset: number, byteLength: number, revoke?: (reason: Error) => void): Uint8Array | null;
  /** Completes beginDirectWrite (also for a payload that never fully arrived); returns the sequence. */
  commitDirectWrite?(byteOffset: number, byteLength: number): number;
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
  /**
   * Worker threads that serve the transmission phase of connections to plain volumes (a
   * storage Volume with no journal, no snapshot store, no interceptor: docs/nbd-workers.md),
   * 0 to 64. The handshake always runs on the server's own loop; 0 serves everything there.
   * @default 0
   */
  workers?: number;
  /**
   * Serve the transmission phase of connections to plain volumes (the same ones workers may
   * serve) on native threads of the addon in blocking I/O, one per connection, as nbdkit does
   * (docs/nbd-native.md). Requests a lane does not serve itself (BLOCK_STATUS with a dirty bitmap's context or
   * none, invalid ones)
   * hand the connection back to the event loop. Before workers when both are set.
   * @default true
   */
  nativeLanes?: boolean;
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

export interface NbdServerStats {
  /** Connections open now (handshake or transmission). */
  connections: number;
  /** Of those, the connections served by worker threads (NbdServerOptions.workers). */
  workerConnections: number;
  /** Of those, the connections served by native lanes (NbdServerOptions.nativeLanes). */
  laneConnections: number;
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
  /** WRITEs whose payload was received straight into the store (docs/nbd-receive.md). */
  storeReceivedWrites: number;
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
// Shared by the files of the server (not re-exported)
// ---------------------------------------------------------------------------------------------

/** One export as the server resolved it (built by the NbdServer constructor). */
export interface ExportEntry {
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
  /** The same counters kept by worker threads (worker-protocol.ts EXPORT_COUNTERS layout), summed by exportStats(). */
  workerCounters?: Float64Array[];
}

/**
 * What a connection needs of the server that runs it (the NbdServer on the main loop, a
 * WorkerHost in a worker thread: worker.ts): counters, protocol errors, the close notice, and
 * for the handshake the exports. handOff, when present, may take a connection that just entered
 * transmission to a worker (true: the connection is no longer served on this thread).
 */
export interface ConnectionHost {
  readonly isClosing: boolean;
  bytesRead: number;
  bytesWritten: number;
  errors: number;
  storeReceivedWrites: number;
  countRequest(type: number): void;
  recordProtocolError(connectionId: number, error: BlockmirrorError): void;
  connectionClosed(connection: { readonly id: number; readonly exportName: string | undefined }, why: { reason: string; error?: Error }): void;
  findExport(name: string): ExportEntry | null;
  exportEntries(): readonly ExportEntry[];
  handOff?(connection: HandOffCandidate): boolean;
}

/** A connection at the end of its handshake, as handOff sees it (connection.ts implements it). */
export interface HandOffCandidate {
  readonly id: number;
  readonly transport: 'tcp' | 'unix';
  readonly exportEntry: ExportEntry | null;
  /**
   * Stops reading, waits until the handshake's replies are written, then calls `move` with the
   * negotiated state and the bytes read past the handshake. `move` returns true when it took the
   * socket (the connection then closes its handle without a disconnect notice), false to go on
   * serving here. Nothing is called when the socket closes first.
   */
  detach(move: (state: NegotiatedState, socket: import('node:net').Socket) => boolean): void;
}

/** What the handshake negotiated, as it travels to a worker (structured-clone safe). */
export interface NegotiatedState {
  exportName: string;
  limits: { sizeBytes: number; transmissionFlags: number; minimumBlockBytes: number; maximumBlockBytes: number; metaContextCount: number };
  structured: boolean;
  contexts: SelectedContext[];
  /** Bytes the main thread read past the end of the handshake (a pipelined first request). */
  leftover: Uint8Array;
}

/** A context selected by SET_META_CONTEXT; a dirty context keeps its bitmap view open (closed with the connection). */
export type SelectedContext =
  | { id: number; name: string; kind: 'allocation' }
  | { id: number; name: string; kind: 'dirty'; bitmapName: string; bitmap: NbdBitmap | null };

/** The server's options, validated and with their defaults (NbdServer constructor). */
export interface ResolvedConfig {
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
  /** Receive large WRITE payloads straight into the store (receive.ts); needs userBufferReads. */
  storeReceive: boolean;
  /** Worker threads for the transmission phase (0: none). */
  workers: number;
  /** Native lanes for the transmission phase of connections to plain volumes. */
  nativeLanes: boolean;
}
