// Notes on the design
// -------------------
// The state of an NbdServer (server.ts, whose notes say what the server is and does) and what
// reads and changes it apart from the listeners: the resolved options (checked here, in the
// constructor), the exports (added, removed, made read-only or moved onto another volume object
// at run time, each with its block sizes and its shared FlushCoordinator), the counters and
// their sums with the workers' and lanes' (stats(), exportStats()), and what the connections
// call (ConnectionHost: findExport, countRequest, recordProtocolError, handOff,
// connectionClosed). The server is a stack of two classes: NbdServerExports (this file) <-
// NbdServer (server.ts: the listeners, accepting, close). Every field is declared here, so an
// instance is laid out and constructed exactly as the single class they were split from;
// fields are protected where server.ts uses them, private where this file alone does.
//
// Errors: bad options are TypeError / RangeError (constructor, addExport, setExportVolume,
// setExportReadOnly, removeExport of the default export); addExport on a closing server throws
// ERR_NBD_SERVER_CLOSED. countRequest is on every request's path: one array store.

import { EventEmitter } from 'node:events';
import type * as net from 'node:net';

import type { BlockmirrorError } from '../errors';
import type { Connection } from './connection';
import { nbdError } from './errors';
import { FlushCoordinator } from './flush';
import * as P from './protocol';
import type {
  ConnectionHost,
  ExportEntry,
  HandOffCandidate,
  NbdDisconnectEvent,
  NbdExportOptions,
  NbdExportStats,
  NbdListenOptions,
  NbdLogger,
  NbdProtocolErrorEvent,
  NbdRequestCounts,
  NbdServerOptions,
  NbdServerStats,
  NbdVolume,
  ResolvedConfig,
} from './types';
import type { NativeLanes } from './native-lanes';
import type { WorkerPool } from './worker-pool';
import { EXPORT_COUNTERS, SERVER_COUNTERS } from './worker-protocol';

/** Short name inside this module. */
type Volume = NbdVolume;

// ---------------------------------------------------------------------------------------------
// Limits and defaults
// ---------------------------------------------------------------------------------------------

const DEFAULT_LISTEN: NbdListenOptions[] = [{ host: '127.0.0.1', port: 10809 }];
const DEFAULT_MAX_IN_FLIGHT = 128;
const DEFAULT_MAX_CONNECTIONS = 256;
const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;
const DEFAULT_MAX_OPTIONS = 1024;
const DEFAULT_HOLE_DETECTION_MIN_BYTES = 64 * 1024;
const DEFAULT_CLOSE_TIMEOUT_MS = 2_000;
const MIN_MAX_PAYLOAD_BYTES = 4096;
/** Most worker threads (worker-pool.ts). */
const MAX_WORKERS = 64;
const MAX_MAX_PAYLOAD_BYTES = 1024 * 1024 * 1024;
/** Preferred block size floor: the memory store's page size. */
const PREFERRED_BLOCK_BYTES = 4096;

const noop = (): void => undefined;
const SILENT: NbdLogger = { debug: noop, info: noop, warn: noop, error: noop };

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

/** An open listener (server.ts). */
export interface Listener {
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

function checkBoolean(name: string, value: boolean | undefined, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw new TypeError(`${name} must be a boolean, got ${String(value)}`);
  return value;
}

/** The state, the exports and the counters of an NbdServer (see the notes above); NbdServer (server.ts) is the class callers use. */
export abstract class NbdServerExports extends EventEmitter implements ConnectionHost {
  protected readonly config: ResolvedConfig;
  protected readonly exports: ExportEntry[] = [];
  private readonly exportsByName = new Map<string, ExportEntry>();
  protected readonly listenSpecs: NbdListenOptions[];
  protected readonly netServers: Listener[] = [];
  protected readonly connections = new Set<Connection>();
  protected nextConnectionId = 1;
  protected status: 'new' | 'listening' | 'closing' | 'closed' = 'new';
  protected closing: Promise<void> | null = null;
  protected readonly log: NbdLogger;
  /** The worker threads (workers > 0), started by listen(). */
  protected pool: WorkerPool | null = null;
  /** The native lanes (nativeLanes), made by listen(). */
  protected lanes: NativeLanes | null = null;
  // Stats (public to the connections, connection.ts and transmission.ts; read them with stats()).
  totalConnections = 0;
  bytesRead = 0;
  bytesWritten = 0;
  errors = 0;
  protocolErrors = 0;
  storeReceivedWrites = 0;
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
      // BLOCKMIRROR_NBD_RECEIVE=copy keeps user buffers but copies every payload (A/B benches).
      storeReceive: process.env.BLOCKMIRROR_NBD_RECEIVE !== 'stream' && process.env.BLOCKMIRROR_NBD_RECEIVE !== 'copy',
      workers: checkInteger('workers', options.workers, 0, 0, MAX_WORKERS),
      nativeLanes: checkBoolean('nativeLanes', options.nativeLanes, true),
    };
    this.log = this.config.logger;
    for (const [index, spec] of options.exports.entries()) this.addEntry(spec, `exports[${index}]`);
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

  /** Checks an export's options and adds it (the name must be new). */
  private addEntry(spec: NbdExportOptions, at: string): ExportEntry {
    const { maxPayloadBytes } = this.config;
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
    // Exports of one volume object share its flush coordinator (multi-conn flush semantics).
    const flushes = this.exports.find((other) => other.volume === volume)?.flushes ?? new FlushCoordinator(volume);
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
    return entry;
  }

  /**
   * Adds an export at run time (a snapshot or a clone): new connections can negotiate it at
   * once. Throws RangeError for a name in use.
   */
  addExport(spec: NbdExportOptions): void {
    if (this.isClosing) throw nbdError('ERR_NBD_SERVER_CLOSED', 'the NBD server is closing');
    this.addEntry(spec, 'export');
  }

  /**
   * Removes an export (a deleted snapshot): new connections no longer see it; a connection
   * negotiated earlier keeps its entry, and its requests fail in the volume. False when there
   * was none.
   */
  removeExport(name: string): boolean {
    const entry = this.exportsByName.get(name);
    if (entry === undefined) return false;
    if (this.exports[0] === entry) throw new RangeError(`export ${JSON.stringify(name)} is the default export; it cannot be removed`);
    this.exportsByName.delete(name);
    this.exports.splice(this.exports.indexOf(entry), 1);
    return true;
  }

  /** True once close() was called. */
  get isClosing(): boolean {
    return this.status === 'closing' || this.status === 'closed';
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

  /**
   * Serves an export from another volume object over the same data from now on (a pair created
   * or deleted at run time puts its PairVolume in front of the volume, or takes it away). The
   * geometry must be the same; requests already running finish on the old object.
   */
  setExportVolume(name: string, volume: Volume): void {
    const entry = this.exportsByName.get(name);
    if (entry === undefined) throw new RangeError(`no export named ${JSON.stringify(name)}`);
    if (volume.capacityBytes !== entry.volume.capacityBytes || volume.blockSize !== entry.volume.blockSize || volume.strict !== entry.volume.strict) {
      throw new RangeError(`export ${JSON.stringify(name)}: the new volume's geometry differs`);
    }
    // Connections in workers must not go on writing past what the new object adds (a pair's
    // journal): they are ended before the export changes (worker-pool.ts evict).
    if (this.pool !== null && this.pool.serves(name) && !this.pool.accepts(volume)) this.pool.evict(name);
    if (this.lanes !== null && this.lanes.serves(name) && !this.lanes.accepts(volume)) this.lanes.evict(name);
    const shared = this.exports.find((other) => other !== entry && other.volume === volume);
    entry.flushes = shared?.flushes ?? new FlushCoordinator(volume);
    entry.volume = volume;
  }

  /**
   * Ends the export's connections served by workers now (a snapshot store was created on its
   * volume: workers cannot preserve for it); returns once none writes any more. Their clients
   * reconnect to the main loop. False when the export is unknown.
   */
  moveExportToMainLoop(name: string): boolean {
    if (!this.exportsByName.has(name)) return false;
    if (this.pool !== null && this.pool.serves(name)) this.pool.evict(name);
    if (this.lanes !== null && this.lanes.serves(name)) this.lanes.evict(name);
    return true;
  }

  /** The worker threads (empty without workers); for tests and diagnosis. */
  get workerThreads(): readonly import('node:worker_threads').Worker[] {
    return this.pool?.threads ?? [];
  }

  /** Per-export counters: requests by type and payload bytes, since the server was created. */
  exportStats(): NbdExportStats[] {
    return this.exports.map((entry) => {
      const counts = Float64Array.from(entry.requestCounts);
      let { bytesRead, bytesWritten } = entry;
      for (const shared of entry.workerCounters ?? []) {
        for (let i = 0; i < counts.length; i++) counts[i] = (counts[i] as number) + (shared[EXPORT_COUNTERS.requests + i] as number);
        bytesRead += shared[EXPORT_COUNTERS.bytesRead] as number;
        bytesWritten += shared[EXPORT_COUNTERS.bytesWritten] as number;
      }
      if (this.lanes !== null) {
        const lanes = new Float64Array(SERVER_COUNTERS.length);
        this.lanes.addExportCounters(entry.name, lanes);
        for (let i = 0; i < counts.length; i++) counts[i] = (counts[i] as number) + (lanes[SERVER_COUNTERS.requests + i] as number);
        bytesRead += lanes[SERVER_COUNTERS.bytesRead] as number;
        bytesWritten += lanes[SERVER_COUNTERS.bytesWritten] as number;
      }
      return { name: entry.name, readOnly: entry.readOnly, requests: requestCountsOf(counts), bytesRead, bytesWritten };
    });
  }

  /** Server-wide counters, workers' included (summed from their shared counters). */
  stats(): NbdServerStats {
    const counts = Float64Array.from(this.requestCounts);
    const workers = new Float64Array(SERVER_COUNTERS.length);
    this.pool?.addCounters(workers);
    this.lanes?.addCounters(workers);
    for (let i = 0; i < counts.length; i++) counts[i] = (counts[i] as number) + (workers[SERVER_COUNTERS.requests + i] as number);
    return {
      connections: this.connections.size + (this.pool?.connectionCount ?? 0) + (this.lanes?.connectionCount ?? 0),
      workerConnections: this.pool?.connectionCount ?? 0,
      laneConnections: this.lanes?.connectionCount ?? 0,
      totalConnections: this.totalConnections,
      requests: requestCountsOf(counts),
      bytesRead: this.bytesRead + (workers[SERVER_COUNTERS.bytesRead] as number),
      bytesWritten: this.bytesWritten + (workers[SERVER_COUNTERS.bytesWritten] as number),
      errors: this.errors + (workers[SERVER_COUNTERS.errors] as number),
      protocolErrors: this.protocolErrors + (workers[SERVER_COUNTERS.protocolErrors] as number),
      storeReceivedWrites: this.storeReceivedWrites + (workers[SERVER_COUNTERS.storeReceivedWrites] as number),
    };
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

  /** ConnectionHost.handOff: a connection that finished its handshake may go to a worker. */
  handOff(candidate: HandOffCandidate): boolean {
    if (this.isClosing || !this.config.userBufferReads) return false;
    const connection = candidate as unknown as Connection;
    // Its socket becomes the lane's or the worker's: they report its end from now on.
    const release = (): void => { this.connections.delete(connection); };
    if (this.lanes !== null && this.lanes.offer(candidate, release)) return true;
    return this.pool !== null && this.pool.offer(candidate, release);
  }

  connectionClosed(connection: { readonly id: number; readonly exportName: string | undefined }, why: { reason: string; error?: Error }): void {
    if (!this.connections.delete(connection as Connection)) return;
    const event: NbdDisconnectEvent = { connectionId: connection.id, reason: why.reason };
    if (connection.exportName !== undefined) event.exportName = connection.exportName;
    if (why.error !== undefined) event.error = why.error;
    this.log.debug({ connectionId: connection.id, reason: why.reason }, 'nbd connection closed');
    this.emit('disconnect', event);
  }
}
