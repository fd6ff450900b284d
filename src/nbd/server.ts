// Notes on the design
// -------------------
// NbdServer exports volumes over NBD (fixed newstyle, doc/proto.md of NetworkBlockDevice) on
// any number of TCP and Unix-socket listeners. protocol.ts holds the wire format; this file holds
// the server: option validation, the exports, the listeners, close() and the counters. The rest
// is split by concern, as nbdkit's server/ directory is:
//   types.ts         the public types (re-exported here) and the records shared by these files;
//   connection.ts    a connection's state, its socket, the receive path, ending, flow control;
//   handshake.ts     newstyle fixed option haggling, up to entering transmission;
//   transmission.ts  requests: validation, the volume calls, ack points, the replies they send;
//   replies.ts       ReplyWriter (the reply arena) and the error helpers replies use;
//   flush.ts         FlushCoordinator, the per-volume flush group commit;
//   worker-pool.ts   the worker threads (option `workers`) that serve the transmission phase of
//                    connections to plain volumes, and worker.ts, their side (docs/nbd-workers.md).
// Everything importable from './server' before the split still is (re-exported below).
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
// flight, flushes the exported volumes and closes every socket. Each export gets the block
// sizes it advertises (NBD_INFO_BLOCK_SIZE, see handshake.ts) once, here, and one
// FlushCoordinator per volume shared by every export of that volume.
//
// Shutdown (graceful close): connections still in the handshake are closed at once (an option
// that races with it gets NBD_REP_ERR_SHUTDOWN); requests in flight are answered, requests
// already received but not started get ESHUTDOWN, then the socket is half-closed
// (Connection.shutdown). A Unix socket file left by a server that died is replaced once; a live
// one is never touched.
//
// Workers (`workers` > 0): the handshake always runs here; at its end handOff() may move the
// connection to a worker (worker-pool.ts says which). The server still counts it in
// `connections` and maxConnections, and reports its end ('disconnect'), its protocol errors and
// its counters (stats(), exportStats()) as for its own. setExportVolume to a volume the workers
// may not serve, and moveExportToMainLoop(), evict that export's worker connections before
// returning. A worker that dies is reported as 'worker-error' (never 'error', which would
// throw without a listener); the server goes on without it.
//
// Native lanes (`nativeLanes`): the same, with a native thread per connection in place of a
// worker (native-lanes.ts); offered before the workers. A connection a lane hands back resumes
// here (resumeFromLane) and is one of this loop's connections from then on.

import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import * as net from 'node:net';

import type { BlockmirrorError } from '../errors';
import type { Connection } from './connection';
import { nbdError } from './errors';
import { FlushCoordinator } from './flush';
import * as P from './protocol';
import { NbdConnection } from './transmission';
import type {
  ConnectionHost,
  ExportEntry,
  HandOffCandidate,
  NbdAddress,
  NbdConnectionEvent,
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

// Re-exported: src/nbd/index.ts, the CLI, the controller and the tests import these from here
// (they lived in this file before it was split).
export { matchMetaContexts } from './handshake';
export { errnoForVolumeError } from './replies';
export type {
  NbdAddress,
  NbdBitmap,
  NbdConnectionEvent,
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
} from './types';

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

// ---------------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------------

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

function checkBoolean(name: string, value: boolean | undefined, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw new TypeError(`${name} must be a boolean, got ${String(value)}`);
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
export class NbdServer extends EventEmitter implements ConnectionHost {
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
  /** The worker threads (workers > 0), started by listen(). */
  private pool: WorkerPool | null = null;
  /** The native lanes (nativeLanes), made by listen(). */
  private lanes: NativeLanes | null = null;
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

  /** Opens every listener; rejects (ERR_NBD_LISTEN) and closes the opened ones if any fails. */
  async listen(): Promise<void> {
    if (this.status !== 'new') {
      throw nbdError(this.isClosing ? 'ERR_NBD_SERVER_CLOSED' : 'ERR_NBD_LISTEN', `listen() called on a ${this.status} server`);
    }
    this.status = 'listening';
    try {
      if (this.config.workers > 0) {
        // Loaded only here: the pool needs the native addon, which this area otherwise leaves alone.
        const { WorkerPool: Pool } = require('./worker-pool') as typeof import('./worker-pool');
        this.pool = new Pool(this.config.workers, this.config, {
          log: this.log,
          findExport: (name) => this.findExport(name),
          disconnected: (event) => {
            this.log.debug({ connectionId: event.connectionId, reason: event.reason }, 'nbd connection closed (worker)');
            this.emit('disconnect', event satisfies NbdDisconnectEvent);
          },
          protocolError: (connectionId, error) => this.emit('protocol-error', { connectionId, error } satisfies NbdProtocolErrorEvent),
          workerError: (workerIndex, error) => this.emit('worker-error', { workerIndex, error }),
        });
      }
      if (this.config.nativeLanes) {
        const { NativeLanes: Lanes } = require('./native-lanes') as typeof import('./native-lanes');
        this.lanes = new Lanes(this.config, {
          log: this.log,
          disconnected: (event) => {
            this.log.debug({ connectionId: event.connectionId, reason: event.reason }, 'nbd connection closed (lane)');
            this.emit('disconnect', event satisfies NbdDisconnectEvent);
          },
          protocolError: (connectionId, error) => this.emit('protocol-error', { connectionId, error } satisfies NbdProtocolErrorEvent),
          resume: (connectionId, transport, socket, entry, state) => {
            this.connections.add(new NbdConnection(connectionId, socket, transport, this, this.config, { entry, state }));
          },
        });
      }
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
      await this.pool?.close(false);
      this.pool = null;
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

  /**
   * Stops accepting, then (graceful, the default) answers requests in flight, answers requests
   * already received with ESHUTDOWN, flushes every exported volume and closes the sockets;
   * non-graceful drops every socket at once. A later call returns the same promise; a
   * non-graceful call during a graceful close escalates it (every socket is dropped now).
   */
  close(options: { graceful?: boolean } = {}): Promise<void> {
    const graceful = options.graceful !== false;
    if (this.closing !== null) {
      if (!graceful) {
        for (const connection of this.connections) connection.shutdown(false);
        void this.pool?.close(false);
        void this.lanes?.close(false);
      }
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
      const workersClosed = this.pool?.close(graceful) ?? Promise.resolve();
      const lanesClosed = this.lanes?.close(graceful) ?? Promise.resolve();
      await Promise.all([listenersClosed, connectionsClosed, workersClosed, lanesClosed]);
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

  // --- internals -----------------------------------------------------------------------------

  private onConnection(accepted: net.Socket, transport: 'tcp' | 'unix'): void {
    if (this.isClosing) {
      accepted.destroy();
      return;
    }
    if (this.connections.size + (this.pool?.connectionCount ?? 0) + (this.lanes?.connectionCount ?? 0) >= this.config.maxConnections) {
      const error = nbdError('ERR_NBD_TOO_MANY_CONNECTIONS', `connection limit ${this.config.maxConnections} reached`);
      this.log.warn({ code: error.code, remoteAddress: accepted.remoteAddress }, 'nbd connection refused');
      accepted.on('error', () => undefined);
      accepted.destroy();
      return;
    }
    const id = this.nextConnectionId++;
    this.totalConnections += 1;
    const connection = new NbdConnection(id, accepted, transport, this, this.config);
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
