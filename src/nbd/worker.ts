// Notes on the design
// -------------------
// The worker thread of the NBD server (docs/nbd-workers.md): it serves the transmission phase of
// connections the main thread handed over (worker-pool.ts). The handshake ran on the main thread;
// a connection arrives as a dup'd socket fd, the negotiated state and the bytes read past the
// handshake ('adopt'), and becomes the same NbdConnection class the main thread runs, resumed in
// transmission (connection.ts). Nothing of the request path differs: validation, receive into
// the store, replies, flow control are the main loop's code.
//
// The seam is WorkerHost, the ConnectionHost of this thread: the counters live in shared memory
// the main thread sums (worker-protocol.ts), protocol errors and closes are posted as messages,
// and log records at info and above are forwarded (debug stays here: unlogged).
//
// Volumes: the worker opens its own Volume object of each exported volume from
// /proc/self/fd/<fd>, a duplicate of the region's fd the pool holds (native nbd_socket_wrap.cpp),
// and checks that its id is the main thread's volume's: the same pages whatever the backing
// ('memory' memfd, 'shared', 'file'), bitmaps included (they live in the region). One object and
// one FlushCoordinator per volume per worker, opened on the first connection and closed when the
// worker stops. A flush here covers writes completed on every connection of the volume, on any
// thread: a write is replied only after its bytes are in the shared mapping, and a flush is
// msync+fsync of the file (or a fence for memory), which covers every dirty page of it.
//
// Locks: the volume directory lock is a word holding the pid; threads of one process exclude
// each other through its compare-exchange. A worker stops (terminate, an uncaught exception)
// only between JavaScript calls, never inside a native critical section, so it never dies
// holding the lock.
//
// Stop: 'close' shuts every connection down as the main loop's close() does (graceful: answer
// what is in flight, ESHUTDOWN for what waits, half-close), then flushes and closes the volumes,
// posts 'drained' and lets the thread end. 'evict' destroys the connections of one export at
// once and acknowledges through the control word (synchronous on the main thread).

import * as fs from 'node:fs';
import * as net from 'node:net';
import { parentPort, workerData } from 'node:worker_threads';

import type { BlockmirrorError } from '../errors';
import { VOLUME_STATS_KEYS, Volume } from '../storage/volume';
import { FlushCoordinator } from './flush';
import * as P from './protocol';
import { NbdConnection } from './transmission';
import type { ConnectionHost, ExportEntry, NbdLogger, ResolvedConfig } from './types';
import {
  CONTROL_EVICTED,
  EXPORT_COUNTERS,
  SERVER_COUNTERS,
  VOLUME_COUNTERS_REFRESH_MS,
  type FromWorker,
  type LogLevel,
  type ToWorker,
  type VolumeSource,
  type WorkerData,
} from './worker-protocol';

function closeFd(fd: number): void {
  try {
    fs.closeSync(fd);
  } catch {
    // Not open any more.
  }
}

function post(message: FromWorker): void {
  parentPort?.postMessage(message);
}

function forwardingLogger(): NbdLogger {
  const forward = (level: LogLevel) => (object: Record<string, unknown>, message?: string) =>
    post({ type: 'log', level, object: JSON.parse(JSON.stringify(object)) as Record<string, unknown>, message: message ?? '' });
  return { debug: () => undefined, info: forward('info'), warn: forward('warn'), error: forward('error') };
}

interface OpenVolume {
  volume: Volume;
  flushes: FlushCoordinator;
  /** Shared with the main thread's volume (VOLUME_STATS_KEYS order). */
  counters: Float64Array;
}

/** The ConnectionHost of a worker thread (see the design note). */
class WorkerHost implements ConnectionHost {
  readonly isClosing = false;
  private readonly counters: Float64Array;
  private readonly volumes = new Map<string, OpenVolume>();
  private readonly entries = new Map<string, ExportEntry>();
  readonly connections = new Set<NbdConnection>();
  readonly config: ResolvedConfig;
  private stopping: Promise<void> | null = null;

  constructor(readonly data: WorkerData) {
    this.counters = new Float64Array(data.counters);
    this.config = { ...data.config, workers: 0, logger: forwardingLogger() };
  }

  get bytesRead(): number {
    return this.counters[SERVER_COUNTERS.bytesRead] as number;
  }
  set bytesRead(value: number) {
    this.counters[SERVER_COUNTERS.bytesRead] = value;
  }
  get bytesWritten(): number {
    return this.counters[SERVER_COUNTERS.bytesWritten] as number;
  }
  set bytesWritten(value: number) {
    this.counters[SERVER_COUNTERS.bytesWritten] = value;
  }
  get errors(): number {
    return this.counters[SERVER_COUNTERS.errors] as number;
  }
  set errors(value: number) {
    this.counters[SERVER_COUNTERS.errors] = value;
  }
  get storeReceivedWrites(): number {
    return this.counters[SERVER_COUNTERS.storeReceivedWrites] as number;
  }
  set storeReceivedWrites(value: number) {
    this.counters[SERVER_COUNTERS.storeReceivedWrites] = value;
  }

  countRequest(type: number): void {
    const index = SERVER_COUNTERS.requests + (type < P.NBD_CMD_COUNT ? type : P.NBD_CMD_COUNT);
    this.counters[index] = (this.counters[index] as number) + 1;
  }

  recordProtocolError(connectionId: number, error: BlockmirrorError): void {
    this.counters[SERVER_COUNTERS.protocolErrors] = (this.counters[SERVER_COUNTERS.protocolErrors] as number) + 1;
    post({ type: 'protocol-error', connectionId, code: error.code, message: error.message });
  }

  connectionClosed(connection: { readonly id: number }, why: { reason: string; error?: Error }): void {
    this.connections.delete(connection as NbdConnection);
    const message: FromWorker = { type: 'closed', connectionId: connection.id, reason: why.reason };
    if (why.error !== undefined) {
      const code = (why.error as { code?: unknown }).code;
      message.error = typeof code === 'string' ? { code, message: why.error.message } : { message: why.error.message };
    }
    post(message);
    if (this.stopping !== null && this.connections.size === 0) this.onIdle?.();
  }

  findExport(): ExportEntry | null {
    return null;
  }

  exportEntries(): readonly ExportEntry[] {
    return [];
  }

  private onIdle: (() => void) | null = null;
  private volumeCountersTimer: NodeJS.Timeout | undefined;

  /** Copies each open volume's stats() into the counters the main thread adds to its volume's. */
  private refreshVolumeCounters(): void {
    for (const { volume, counters } of this.volumes.values()) {
      if (volume.closed) continue;
      const stats = volume.stats();
      VOLUME_STATS_KEYS.forEach((key, index) => { counters[index] = stats[key]; });
    }
  }

  /** The worker's volume object for `source` (opened on first use, checked against the main's id). */
  private volumeOf(source: VolumeSource): OpenVolume {
    let open = this.volumes.get(source.key);
    if (open === undefined) {
      const volume = Volume.open({ path: `/proc/self/fd/${source.fd}` });
      if (volume.id.toString() !== source.id || volume.capacityBytes !== source.capacityBytes) {
        void volume.close();
        throw new Error(`/proc/self/fd/${source.fd} is not volume ${source.id}`);
      }
      const shared = new SharedArrayBuffer(VOLUME_STATS_KEYS.length * Float64Array.BYTES_PER_ELEMENT);
      open = { volume, flushes: new FlushCoordinator(volume), counters: new Float64Array(shared) };
      this.volumes.set(source.key, open);
      post({ type: 'volume-counters', volumeKey: source.key, counters: shared });
      this.volumeCountersTimer ??= setInterval(() => this.refreshVolumeCounters(), VOLUME_COUNTERS_REFRESH_MS).unref();
    }
    return open;
  }

  /** The worker's entry for an export over a volume, with its counters shared with the main thread. */
  private entryOf(message: Extract<ToWorker, { type: 'adopt' }>): ExportEntry {
    const key = `${message.export.name}\u0000${message.volume.key}`;
    let entry = this.entries.get(key);
    if (entry === undefined) {
      const { volume, flushes } = this.volumeOf(message.volume);
      const shared = new SharedArrayBuffer(EXPORT_COUNTERS.length * Float64Array.BYTES_PER_ELEMENT);
      const counters = new Float64Array(shared);
      const base = {
        ...message.export,
        volume,
        flushes,
        requestCounts: counters.subarray(EXPORT_COUNTERS.requests, EXPORT_COUNTERS.requests + P.NBD_CMD_COUNT + 1),
      };
      entry = Object.defineProperties(base, {
        bytesRead: {
          get: () => counters[EXPORT_COUNTERS.bytesRead] as number,
          set: (value: number) => { counters[EXPORT_COUNTERS.bytesRead] = value; },
          enumerable: true,
        },
        bytesWritten: {
          get: () => counters[EXPORT_COUNTERS.bytesWritten] as number,
          set: (value: number) => { counters[EXPORT_COUNTERS.bytesWritten] = value; },
          enumerable: true,
        },
      }) as unknown as ExportEntry;
      this.entries.set(key, entry);
      post({ type: 'export-counters', exportName: message.export.name, counters: shared });
    }
    // As on the main thread, where setExportReadOnly changes the one entry every connection of
    // the export shares (it decides whether FLUSH flushes; the flags a connection negotiated stay).
    entry.readOnly = message.export.readOnly;
    return entry;
  }

  adopt(message: Extract<ToWorker, { type: 'adopt' }>): void {
    let entry: ExportEntry;
    try {
      if (this.stopping !== null) throw new Error('the worker is stopping');
      entry = this.entryOf(message);
    } catch (error) {
      closeFd(message.fd);
      post({ type: 'refused', connectionId: message.connectionId, error: String((error as Error)?.message ?? error) });
      return;
    }
    // From here on the fd is this thread's (worker-pool.ts): say so before a handle owns it, so
    // that a thread dying in between leaks it rather than having it closed twice.
    post({ type: 'adopted', connectionId: message.connectionId });
    let socket: net.Socket;
    try {
      // Paused: the connection moves the handle into a socket reading into its own buffers.
      socket = new net.Socket({ fd: message.fd, readable: true, writable: true, allowHalfOpen: false, pauseOnCreate: true } as net.SocketConstructorOpts);
    } catch (error) {
      closeFd(message.fd);
      post({ type: 'closed', connectionId: message.connectionId, reason: 'error', error: { message: String((error as Error)?.message ?? error) } });
      return;
    }
    const connection = new NbdConnection(message.connectionId, socket, message.transport, this, this.config, { entry, state: message.state });
    this.connections.add(connection);
  }

  evict(exportName: string, sequence: number): void {
    for (const connection of [...this.connections]) {
      if (connection.exportName === exportName) connection.end({ reason: 'server' }, true);
    }
    const control = new Int32Array(this.data.control);
    Atomics.store(control, CONTROL_EVICTED, sequence);
    Atomics.notify(control, CONTROL_EVICTED);
  }

  stop(graceful: boolean): Promise<void> {
    for (const connection of [...this.connections]) connection.shutdown(graceful);
    if (this.stopping !== null) return this.stopping;
    this.stopping = (async () => {
      if (this.connections.size > 0) await new Promise<void>((resolve) => { this.onIdle = resolve; });
      for (const { volume, flushes } of this.volumes.values()) {
        try {
          if (graceful && !volume.closed) await flushes.flushNow();
        } catch (error) {
          this.config.logger.warn({ err: String(error) }, 'nbd worker final flush failed');
        }
      }
      // The final counts stay with the main thread's volume after this worker's objects close.
      clearInterval(this.volumeCountersTimer);
      this.refreshVolumeCounters();
      for (const { volume } of this.volumes.values()) await volume.close();
      this.volumes.clear();
      post({ type: 'drained' });
      parentPort?.close();
    })();
    return this.stopping;
  }
}

function main(): void {
  const data = workerData as WorkerData;
  const host = new WorkerHost(data);
  parentPort?.on('message', (message: ToWorker) => {
    switch (message.type) {
      case 'adopt':
        host.adopt(message);
        return;
      case 'evict':
        host.evict(message.exportName, message.sequence);
        return;
      case 'close':
        void host.stop(message.graceful);
        return;
    }
  });
}

if (parentPort !== null && (workerData as Partial<WorkerData> | null)?.kind === 'blockmirror-nbd-worker') main();
