// Notes on the design
// -------------------
// The main thread's side of the NBD workers (docs/nbd-workers.md): WorkerPool starts `workers`
// threads (worker.ts) when the server listens, decides which connections go to them, hands them
// over, and turns what the workers report back into the server's events and counters.
//
// Which connections: at the end of each handshake (NbdServer.handOff), a connection whose
// export's volume is a plain storage Volume, open, with no journal attached, no interceptor
// installed or required (no snapshot store, no RAID diversion) and no backing store
// (nbdVolumeWorkerInfo) goes to the live worker with the fewest connections. Everything else
// (pair exports, RAID, snapshot views, clones with a store, volumes with a journal) stays on the
// main loop, as does every connection when the server reads with 'data' events
// (BLOCKMIRROR_NBD_RECEIVE=stream: bytes past the handshake could sit in the stream's buffer).
// A volume's region is reached in the workers through a duplicate of its fd that this pool holds
// (one per volume object, closed when the volume is closed or the pool stops; a worker checks
// the volume id it finds there, so a reused fd number is refused, never served).
//
// Hand-off: the connection stops reading and writes out its handshake replies (connection.ts
// detach), then this pool dups the socket's fd, posts it to the worker and the connection
// destroys its own handle without reading. Until the worker answers 'adopted' the fd is the
// pool's: a worker that dies first never owned it, and the pool closes it. After 'adopted' the
// fd is the worker's (its handle closes it, also when the thread dies).
//
// Changes of an export (setExportVolume to a volume workers may not serve, a snapshot store
// created on its volume): evict() destroys that export's worker connections synchronously
// (worker-protocol.ts); clients see a disconnect, as from a server restart, and reconnect to the
// main loop. Writes acknowledged before were acknowledged on the plain volume; none lands after
// evict() returns. A worker that does not answer within EVICT_TIMEOUT_MS is terminated.
//
// A worker that dies (an uncaught exception, terminate(), a failed start): its connections are
// closed by the thread's teardown (clients see a disconnect; a request it had not answered stays
// unanswered, so an unacknowledged write stays unacknowledged), each is reported as a
// 'disconnect' with reason 'error', the server emits 'worker-error', and no connection is handed
// to that worker again (it is not restarted; with none left, the main loop serves everything).
//
// Stop: close() posts 'close' to every live worker, which shuts its connections down as the main
// loop does and exits after 'drained'; a worker still running closeTimeoutMs + STOP_GRACE_MS
// later is terminated.

import * as path from 'node:path';
import { Worker } from 'node:worker_threads';

import { BlockmirrorError } from '../errors';
import { addon } from '../native';
import { kNativeHandle, Volume } from '../storage/volume';
import { nbdError } from './errors';
import type { ExportEntry, HandOffCandidate, NbdLogger, NbdVolume, ResolvedConfig } from './types';
import {
  CONTROL_EVICTED,
  CONTROL_LENGTH,
  SERVER_COUNTERS,
  type ExportDescription,
  type FromWorker,
  type ToWorker,
  type VolumeSource,
  type WorkerData,
} from './worker-protocol';

/** The native functions of native/binding/nbd_socket_wrap.cpp. */
interface NbdSocketAddon {
  nbdDupSocket(fd: number): number;
  nbdCloseFd(fd: number): void;
  nbdDupRegionFd(volume: unknown): number;
  nbdVolumeWorkerInfo(volume: unknown): [boolean, boolean, boolean, boolean];
}
const native = addon as unknown as NbdSocketAddon;

/** Longest wait for a worker to acknowledge an eviction before it is terminated. */
const EVICT_TIMEOUT_MS = 5_000;
/** A stopping worker gets closeTimeoutMs plus this before it is terminated. */
const STOP_GRACE_MS = 5_000;
export const MAX_WORKERS = 64;

/** What the pool reports to its server. */
export interface WorkerPoolHooks {
  log: NbdLogger;
  findExport(name: string): ExportEntry | null;
  disconnected(event: { connectionId: number; reason: string; exportName: string; error?: Error }): void;
  protocolError(connectionId: number, error: BlockmirrorError): void;
  workerError(workerIndex: number, error: Error): void;
}

interface WorkerSlot {
  index: number;
  worker: Worker;
  counters: Float64Array;
  control: Int32Array;
  alive: boolean;
  connectionCount: number;
  error: Error | null;
  exited: Promise<void>;
}

interface WorkerConnection {
  slot: WorkerSlot;
  exportName: string;
  fd: number;
  adopted: boolean;
}

export interface WorkerPoolStats {
  connections: number;
  liveWorkers: number;
  counters: Float64Array;
}

function workerScript(): string {
  // dist/src/nbd/worker.js next to this file (worker.ts under ts-node).
  return path.join(__dirname, `worker${path.extname(__filename)}`);
}

function describeExport(entry: ExportEntry): ExportDescription {
  return {
    name: entry.name,
    description: entry.description,
    readOnly: entry.readOnly,
    minimumBlockBytes: entry.minimumBlockBytes,
    preferredBlockBytes: entry.preferredBlockBytes,
    maximumBlockBytes: entry.maximumBlockBytes,
  };
}

export class WorkerPool {
  private readonly slots: WorkerSlot[] = [];
  private readonly connections = new Map<number, WorkerConnection>();
  private readonly sources = new Map<NbdVolume, VolumeSource>();
  private nextSourceKey = 1;
  private nextEviction = 1;
  private rotation = 0;
  private closing: Promise<void> | null = null;

  constructor(count: number, private readonly config: ResolvedConfig, private readonly hooks: WorkerPoolHooks) {
    for (let index = 0; index < count; index++) this.slots.push(this.start(index));
  }

  private start(index: number): WorkerSlot {
    const counters = new SharedArrayBuffer(SERVER_COUNTERS.length * Float64Array.BYTES_PER_ELEMENT);
    const control = new SharedArrayBuffer(CONTROL_LENGTH * Int32Array.BYTES_PER_ELEMENT);
    const { logger: _logger, workers: _workers, ...config } = this.config;
    const data: WorkerData = { kind: 'blockmirror-nbd-worker', index, config, counters, control };
    const worker = new Worker(workerScript(), { workerData: data, name: `nbd-worker-${index}` });
    let exited!: () => void;
    const slot: WorkerSlot = {
      index,
      worker,
      counters: new Float64Array(counters),
      control: new Int32Array(control),
      alive: true,
      connectionCount: 0,
      error: null,
      exited: new Promise<void>((resolve) => { exited = resolve; }),
    };
    worker.on('message', (message: FromWorker) => this.onMessage(slot, message));
    worker.on('error', (error: Error) => {
      slot.error ??= error;
    });
    worker.on('exit', (code: number) => {
      this.onExit(slot, code);
      exited();
    });
    return slot;
  }

  /** Live workers. */
  get liveWorkers(): number {
    return this.slots.filter((slot) => slot.alive).length;
  }

  /** Connections served by workers now. */
  get connectionCount(): number {
    return this.connections.size;
  }

  /** The worker threads (tests kill them to prove the crash path). */
  get threads(): readonly Worker[] {
    return this.slots.map((slot) => slot.worker);
  }

  /** Adds every worker's server counters (SERVER_COUNTERS layout) into `sum`. */
  addCounters(sum: Float64Array): void {
    for (const slot of this.slots) for (let i = 0; i < SERVER_COUNTERS.length; i++) sum[i] = (sum[i] as number) + (slot.counters[i] as number);
  }

  /** Where a worker finds `volume`, or null when workers may not serve it (see the note). */
  private sourceOf(volume: NbdVolume): VolumeSource | null {
    if (!(volume instanceof Volume) || volume.closed) return null;
    const handle = volume[kNativeHandle];
    const [journal, interceptor, interceptorRequired, backingStore] = native.nbdVolumeWorkerInfo(handle);
    if (journal || interceptor || interceptorRequired || backingStore) return null;
    let source = this.sources.get(volume);
    if (source === undefined) {
      this.sweepSources();
      source = { key: `v${this.nextSourceKey++}`, fd: native.nbdDupRegionFd(handle), id: volume.id.toString(), capacityBytes: volume.capacityBytes };
      this.sources.set(volume, source);
    }
    return source;
  }

  /** Closes the region fds of volumes closed since (their workers keep their own mappings). */
  private sweepSources(): void {
    for (const [volume, source] of this.sources) {
      if (!volume.closed) continue;
      native.nbdCloseFd(source.fd);
      this.sources.delete(volume);
    }
  }

  private pick(): WorkerSlot | null {
    let best: WorkerSlot | null = null;
    const count = this.slots.length;
    for (let i = 0; i < count; i++) {
      const slot = this.slots[(this.rotation + i) % count] as WorkerSlot;
      if (slot.alive && (best === null || slot.connectionCount < best.connectionCount)) best = slot;
    }
    this.rotation = (this.rotation + 1) % Math.max(count, 1);
    return best;
  }

  /**
   * Offers a connection that just entered transmission to a worker. True when the connection
   * now detaches (`release` runs once the socket is the worker's); false: serve it here.
   */
  offer(candidate: HandOffCandidate, release: () => void): boolean {
    if (this.closing !== null) return false;
    const entry = candidate.exportEntry;
    if (entry === null) return false;
    let source: VolumeSource | null;
    try {
      source = this.sourceOf(entry.volume);
    } catch (error) {
      this.hooks.log.warn({ export: entry.name, err: String(error) }, 'nbd workers cannot reach this volume; served on the main loop');
      return false;
    }
    if (source === null || !this.slots.some((slot) => slot.alive)) return false;
    candidate.detach((state, socket) => {
      // Things may have changed while the handshake replies were written out.
      const slot = this.pick();
      if (slot === null || this.closing !== null || this.sourceOf(entry.volume) !== source) return false;
      const handleFd = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle?.fd;
      if (typeof handleFd !== 'number' || handleFd < 0) return false;
      const fd = native.nbdDupSocket(handleFd);
      const message: ToWorker = {
        type: 'adopt',
        connectionId: candidate.id,
        fd,
        transport: candidate.transport,
        export: describeExport(entry),
        volume: source,
        state,
      };
      this.connections.set(candidate.id, { slot, exportName: entry.name, fd, adopted: false });
      slot.connectionCount += 1;
      slot.worker.postMessage(message);
      release();
      return true;
    });
    return true;
  }

  /** True when workers may serve `volume` (see the note). */
  accepts(volume: NbdVolume): boolean {
    try {
      return this.sourceOf(volume) !== null;
    } catch {
      return false;
    }
  }

  /** True when a worker serves a connection of this export now. */
  serves(exportName: string): boolean {
    for (const connection of this.connections.values()) if (connection.exportName === exportName) return true;
    return false;
  }

  /**
   * Destroys every worker connection of `exportName` and returns once each worker has done so
   * (synchronous: blocks this thread up to EVICT_TIMEOUT_MS per worker; see the note).
   */
  evict(exportName: string): void {
    const slots = new Set<WorkerSlot>();
    for (const connection of this.connections.values()) if (connection.exportName === exportName && connection.slot.alive) slots.add(connection.slot);
    for (const slot of slots) {
      const sequence = this.nextEviction++;
      slot.worker.postMessage({ type: 'evict', exportName, sequence } satisfies ToWorker);
      const deadline = Date.now() + EVICT_TIMEOUT_MS;
      for (;;) {
        const seen = Atomics.load(slot.control, CONTROL_EVICTED);
        if (seen >= sequence) break;
        const left = deadline - Date.now();
        if (left <= 0 || Atomics.wait(slot.control, CONTROL_EVICTED, seen, left) === 'timed-out') {
          this.hooks.log.error({ worker: slot.index, export: exportName }, 'nbd worker did not evict in time; terminating it');
          slot.error ??= new Error(`nbd worker ${slot.index} did not evict export ${JSON.stringify(exportName)} within ${EVICT_TIMEOUT_MS} ms`);
          void slot.worker.terminate();
          break;
        }
      }
    }
  }

  /** Stops every worker (graceful: drain as the main loop's close does). A second call escalates. */
  close(graceful: boolean): Promise<void> {
    for (const slot of this.slots) if (slot.alive) slot.worker.postMessage({ type: 'close', graceful } satisfies ToWorker);
    if (this.closing !== null) return this.closing;
    this.closing = (async () => {
      const timer = setTimeout(() => {
        for (const slot of this.slots) if (slot.alive) void slot.worker.terminate();
      }, this.config.closeTimeoutMs + STOP_GRACE_MS);
      await Promise.all(this.slots.map((slot) => slot.exited));
      clearTimeout(timer);
      for (const source of this.sources.values()) native.nbdCloseFd(source.fd);
      this.sources.clear();
    })();
    return this.closing;
  }

  // --- from the workers ----------------------------------------------------------------------

  private onMessage(slot: WorkerSlot, message: FromWorker): void {
    switch (message.type) {
      case 'adopted': {
        const connection = this.connections.get(message.connectionId);
        if (connection !== undefined) connection.adopted = true;
        return;
      }
      case 'refused':
        this.hooks.log.warn({ connectionId: message.connectionId, worker: slot.index, err: message.error }, 'nbd worker refused a connection');
        this.ended(message.connectionId, 'error', new Error(message.error));
        return;
      case 'closed': {
        const error = message.error === undefined ? undefined
          : message.error.code !== undefined ? new BlockmirrorError(message.error.code, message.error.message) : new Error(message.error.message);
        this.ended(message.connectionId, message.reason, error);
        return;
      }
      case 'protocol-error':
        this.hooks.protocolError(message.connectionId, nbdError(message.code as Parameters<typeof nbdError>[0], message.message));
        return;
      case 'export-counters': {
        const entry = this.hooks.findExport(message.exportName);
        if (entry !== null && entry.name === message.exportName) (entry.workerCounters ??= []).push(new Float64Array(message.counters));
        return;
      }
      case 'volume-counters': {
        // The worker's own Volume object over this volume's region: its counts join the volume's stats().
        for (const [volume, source] of this.sources) {
          if (source.key === message.volumeKey && volume instanceof Volume && !volume.closed) volume.addThreadCounters(new Float64Array(message.counters));
        }
        return;
      }
      case 'log':
        this.hooks.log[message.level]({ ...message.object, worker: slot.index }, message.message);
        return;
      case 'drained':
        return;
    }
  }

  private ended(connectionId: number, reason: string, error: Error | undefined): void {
    const connection = this.connections.get(connectionId);
    if (connection === undefined) return;
    this.connections.delete(connectionId);
    connection.slot.connectionCount -= 1;
    const event: { connectionId: number; reason: string; exportName: string; error?: Error } = { connectionId, reason, exportName: connection.exportName };
    if (error !== undefined) event.error = error;
    this.hooks.disconnected(event);
  }

  private onExit(slot: WorkerSlot, code: number): void {
    slot.alive = false;
    const expected = this.closing !== null && slot.error === null;
    const error = slot.error ?? new Error(`nbd worker ${slot.index} exited with code ${code}`);
    for (const [connectionId, connection] of [...this.connections]) {
      if (connection.slot !== slot) continue;
      // Not adopted: the worker never owned the fd (see the note).
      if (!connection.adopted) native.nbdCloseFd(connection.fd);
      this.ended(connectionId, expected ? 'server' : 'error', expected ? undefined : error);
    }
    if (!expected) {
      this.hooks.log.error({ worker: slot.index, code, err: String(error.stack ?? error) }, 'nbd worker died; its connections are closed');
      this.hooks.workerError(slot.index, error);
    }
  }
}
