// Notes on the design
// -------------------
// The main thread's side of the native NBD lanes (docs/nbd-native.md): with `nativeLanes` on, a
// connection to a plain volume is served, after its handshake, by a thread of the addon in
// blocking I/O (native/core/nbd_lane.cpp), as nbdkit serves a connection: no event-loop turn per
// request, and each connection on a core of its own.
//
// Which connections: those of an export whose volume is a storage Volume, open, with no journal
// attached, no interceptor installed or required and no backing store (the worker pool's rule,
// worker-pool.ts); and those of a pair's export while its volume's lane gate is open (an async
// primary, mirroring: PairVolume.laneVolume, replicated-volume.ts): the lane journals under the
// gate, and hands the connection back at the first write after the gate closed. RAID, snapshot
// views, sync primaries and journal groups stay on the main loop, with all of their semantics.
//
// Hand-off: at the end of the handshake the connection stops reading and writes out its replies
// (connection.ts detach); then this class dups the socket's fd and starts a lane on the dup with
// the negotiated state and the bytes read past the handshake, and the connection destroys its
// own handle. From then on the fd is the lane's. If the lane cannot start, the dup is closed and
// the connection goes on here.
//
// Hand-back: a lane serves only what it answers exactly as the main loop would (see the core's
// note); at anything else (an invalid request, an unknown command, a write on a read-only export,
// BLOCK_STATUS with a dirty bitmap's context or none selected; on a gated volume also TRIM,
// WRITE_ZEROES, large writes and any write at a closed gate) it stops at that request's header,
// and the connection resumes here as an NbdConnection
// in transmission with those bytes first (resume()), for the rest of its life.
//
// Counters: a lane's counters are atomics read when asked; stats(), exportStats() and the
// volume's stats() add live lanes' counts and the final counts of ended ones.
//
// Eviction (setExportVolume to a volume lanes may not serve, a snapshot store created on the
// volume): evict() stops that export's lanes at once (the socket shut both ways: clients see a
// disconnect and reconnect to the main loop) and blocks until each lane thread has left, so no
// lane write lands after it returns. Stop: close(graceful) stops every lane; a graceful lane
// answers what it has already received (ESHUTDOWN for what had not started) and ends; lanes
// still running closeTimeoutMs later are stopped at once.

import * as net from 'node:net';

import type { BlockmirrorError } from '../errors';
import { addon } from '../native';
import { kNativeHandle, VOLUME_STATS_KEYS, Volume } from '../storage/volume';
import { nbdError } from './errors';
import type { ExportEntry, HandOffCandidate, NbdLogger, NbdVolume, NegotiatedState, ResolvedConfig } from './types';
import { SERVER_COUNTERS } from './worker-protocol';

type LaneEnd = 'client' | 'truncated' | 'server' | 'hand-back' | 'error';

/** A running lane (native/binding/nbd_lane_wrap.cpp). */
interface NativeLane {
  stop(graceful: boolean): void;
  wait(ms: number): boolean;
  counters(): Float64Array;
  volumeStats(): Float64Array;
}

interface NbdLaneAddon {
  NbdLane: new (
    volume: unknown,
    fd: number,
    structured: boolean,
    transmissionFlags: number,
    sizeBytes: number,
    minimumBlockBytes: number,
    maximumBlockBytes: number,
    holeDetectionMinBytes: number,
    directWrites: boolean,
    leftover: Uint8Array,
    onEnd: (end: LaneEnd, handBack: Buffer | null, error: string) => void,
    allocationContextId?: number,
  ) => NativeLane;
  nbdDupSocket(fd: number): number;
  nbdCloseFd(fd: number): void;
  nbdVolumeWorkerInfo(volume: unknown): [boolean, boolean, boolean, boolean];
}
const native = addon as unknown as NbdLaneAddon;

/**
 * The storage volume a lane serves for an export's volume, or null (see the note): a plain
 * Volume itself; a pair's export's volume while its lane gate is open (it has a journal then).
 */
function laneVolumeOf(volume: NbdVolume): Volume | null {
  const gated = volume instanceof Volume ? null : (volume as { laneVolume?: () => Volume | null }).laneVolume?.() ?? null;
  const served = volume instanceof Volume ? volume : gated;
  if (!(served instanceof Volume) || served.closed) return null;
  try {
    const [journal, interceptor, interceptorRequired, backingStore] = native.nbdVolumeWorkerInfo(served[kNativeHandle]);
    if (interceptor || interceptorRequired || backingStore) return null;
    return journal === (gated !== null) ? served : null;
  } catch {
    return null;
  }
}

/** Longest wait for a stopped lane thread to leave during evict(). */
const EVICT_TIMEOUT_MS = 5_000;

/** What the lanes report to their server. */
export interface NativeLanesHooks {
  log: NbdLogger;
  disconnected(event: { connectionId: number; reason: string; exportName: string; error?: Error }): void;
  /** A lane's protocol error (its count is in the lane's counters already). */
  protocolError(connectionId: number, error: BlockmirrorError): void;
  /** Serves a handed-back connection on the main loop from now on (a socket over `fd`, state with the bytes to serve first). */
  resume(connectionId: number, transport: 'tcp' | 'unix', socket: net.Socket, entry: ExportEntry, state: NegotiatedState): void;
}

interface LaneRecord {
  connectionId: number;
  transport: 'tcp' | 'unix';
  entry: ExportEntry;
  exportName: string;
  state: NegotiatedState;
  fd: number;
  lane: NativeLane;
  volume: VolumeCounters;
}

/** Per main-thread Volume object: its ended lanes' final stats and its live lanes. */
interface VolumeCounters {
  retired: Float64Array;
  live: Set<LaneRecord>;
}

export class NativeLanes {
  private readonly lanes = new Map<number, LaneRecord>();
  private readonly retired = new Float64Array(SERVER_COUNTERS.length);
  private readonly retiredByExport = new Map<string, Float64Array>();
  private readonly volumes = new WeakMap<Volume, VolumeCounters>();
  private closing: Promise<void> | null = null;
  private onIdle: (() => void) | null = null;

  constructor(private readonly config: ResolvedConfig, private readonly hooks: NativeLanesHooks) {}

  /** Connections served by lanes now. */
  get connectionCount(): number {
    return this.lanes.size;
  }

  /** True when a lane may serve `volume` (see the note). */
  accepts(volume: NbdVolume): boolean {
    return laneVolumeOf(volume) !== null;
  }

  /** True when a lane serves a connection of this export now. */
  serves(exportName: string): boolean {
    for (const record of this.lanes.values()) if (record.exportName === exportName) return true;
    return false;
  }

  /**
   * Offers a connection that just entered transmission to a lane. True when the connection now
   * detaches (`release` runs once the socket is the lane's); false: serve it here.
   */
  offer(candidate: HandOffCandidate, release: () => void): boolean {
    if (this.closing !== null) return false;
    const entry = candidate.exportEntry;
    if (entry === null || !this.accepts(entry.volume)) return false;
    candidate.detach((state, socket) => {
      // Things may have changed while the handshake replies were written out.
      const served = this.closing === null ? laneVolumeOf(entry.volume) : null;
      if (served === null) return false;
      const handleFd = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle?.fd;
      if (typeof handleFd !== 'number' || handleFd < 0) return false;
      let fd: number;
      try {
        fd = native.nbdDupSocket(handleFd);
      } catch (error) {
        this.hooks.log.warn({ connectionId: candidate.id, err: String(error) }, 'nbd lane: cannot dup the socket; served on the main loop');
        return false;
      }
      const counters = this.countersOf(served);
      const record = { connectionId: candidate.id, transport: candidate.transport, entry, exportName: entry.name, state, fd, volume: counters } as LaneRecord;
      try {
        record.lane = new native.NbdLane(
          served[kNativeHandle],
          fd,
          state.structured,
          state.limits.transmissionFlags,
          state.limits.sizeBytes,
          state.limits.minimumBlockBytes,
          state.limits.maximumBlockBytes,
          this.config.holeDetectionMinBytes,
          // BLOCKMIRROR_NBD_RECEIVE=copy copies every payload here too.
          this.config.storeReceive,
          state.leftover,
          (end, handBack, error) => this.ended(record, end, handBack, error),
          allocationContextIdOf(state),
        );
      } catch (error) {
        // No lane started: the dup is still ours, the connection goes on here.
        native.nbdCloseFd(fd);
        this.hooks.log.warn({ connectionId: candidate.id, err: String(error) }, 'nbd lane could not start; served on the main loop');
        return false;
      }
      this.lanes.set(candidate.id, record);
      counters.live.add(record);
      release();
      return true;
    });
    return true;
  }

  /** Adds every lane's server counters (SERVER_COUNTERS layout), ended ones included, into `sum`. */
  addCounters(sum: Float64Array): void {
    add(sum, this.retired);
    for (const record of this.lanes.values()) add(sum, record.lane.counters());
  }

  /** Adds the counters (SERVER_COUNTERS layout) of this export's lanes, ended ones included, into `sum`. */
  addExportCounters(exportName: string, sum: Float64Array): void {
    const retired = this.retiredByExport.get(exportName);
    if (retired !== undefined) add(sum, retired);
    for (const record of this.lanes.values()) if (record.exportName === exportName) add(sum, record.lane.counters());
  }

  /**
   * Stops every lane of `exportName` at once and returns once each lane thread has left (see the
   * note). Their end events follow on this thread.
   */
  evict(exportName: string): void {
    const records = [...this.lanes.values()].filter((record) => record.exportName === exportName);
    for (const record of records) record.lane.stop(false);
    for (const record of records) {
      if (!record.lane.wait(EVICT_TIMEOUT_MS)) {
        this.hooks.log.error({ connectionId: record.connectionId, export: exportName }, 'nbd lane did not stop in time');
      }
    }
  }

  /** Stops every lane (graceful: as the main loop's close). A second call escalates. */
  close(graceful: boolean): Promise<void> {
    for (const record of this.lanes.values()) record.lane.stop(graceful);
    if (this.closing !== null) return this.closing;
    this.closing = (async () => {
      if (this.lanes.size === 0) return;
      const timer = setTimeout(() => {
        for (const record of this.lanes.values()) record.lane.stop(false);
      }, this.config.closeTimeoutMs);
      await new Promise<void>((resolve) => { this.onIdle = resolve; });
      clearTimeout(timer);
    })();
    return this.closing;
  }

  // --- from the lanes ------------------------------------------------------------------------

  private countersOf(volume: Volume): VolumeCounters {
    let counters = this.volumes.get(volume);
    if (counters === undefined) {
      const made: VolumeCounters = { retired: new Float64Array(VOLUME_STATS_KEYS.length), live: new Set() };
      volume.addThreadCounters(() => {
        const sum = Float64Array.from(made.retired);
        for (const record of made.live) add(sum, record.lane.volumeStats());
        return sum;
      });
      this.volumes.set(volume, made);
      counters = made;
    }
    return counters;
  }

  private ended(record: LaneRecord, end: LaneEnd, handBack: Buffer | null, errorText: string): void {
    this.lanes.delete(record.connectionId);
    record.volume.live.delete(record);
    // Final: the lane thread has left run().
    const counters = record.lane.counters();
    add(this.retired, counters);
    let byExport = this.retiredByExport.get(record.exportName);
    if (byExport === undefined) this.retiredByExport.set(record.exportName, (byExport = new Float64Array(SERVER_COUNTERS.length)));
    add(byExport, counters);
    add(record.volume.retired, record.lane.volumeStats());
    if (end === 'hand-back') this.handBack(record, handBack ?? Buffer.alloc(0));
    else {
      const event: { connectionId: number; reason: string; exportName: string; error?: Error } = {
        connectionId: record.connectionId,
        reason: end,
        exportName: record.exportName,
      };
      if (end === 'error') event.error = new Error(errorText === '' ? 'nbd lane socket error' : errorText);
      if (end === 'truncated') {
        // As the main loop reports a client that vanished inside a request.
        const error = nbdError('ERR_NBD_TRUNCATED', 'client closed the connection in the middle of a message');
        this.hooks.log.warn({ connectionId: record.connectionId, code: error.code }, 'nbd client vanished mid-message');
        this.hooks.protocolError(record.connectionId, error);
        event.error = error;
      }
      this.hooks.disconnected(event);
    }
    if (this.lanes.size === 0 && this.onIdle !== null) {
      const resolve = this.onIdle;
      this.onIdle = null;
      resolve();
    }
  }

  /** A lane stopped at a request it does not serve: the main loop serves the connection from that request on. */
  private handBack(record: LaneRecord, bytes: Buffer): void {
    const event = { connectionId: record.connectionId, reason: 'server', exportName: record.exportName };
    if (this.closing !== null) {
      native.nbdCloseFd(record.fd);
      this.hooks.disconnected(event);
      return;
    }
    let socket: net.Socket;
    try {
      // Paused: the connection moves the handle into a socket reading into its own buffers.
      socket = new net.Socket({ fd: record.fd, readable: true, writable: true, allowHalfOpen: false, pauseOnCreate: true } as net.SocketConstructorOpts);
    } catch (error) {
      native.nbdCloseFd(record.fd);
      this.hooks.disconnected({ ...event, reason: 'error', error: error instanceof Error ? error : new Error(String(error)) });
      return;
    }
    // The request the lane stopped at (its header's type, flags and length), for the log.
    const at = bytes.length >= 28 ? { command: bytes.readUInt16BE(6), flags: bytes.readUInt16BE(4), length: bytes.readUInt32BE(24) } : {};
    this.hooks.log.debug({ connectionId: record.connectionId, bytes: bytes.length, ...at }, 'nbd lane handed its connection back to the main loop');
    this.hooks.resume(record.connectionId, record.transport, socket, record.entry, { ...record.state, leftover: new Uint8Array(bytes) });
  }
}

/**
 * The id of base:allocation when the client selected it alone: the lane answers BLOCK_STATUS
 * then; 0 (no context, or a dirty bitmap's too) hands BLOCK_STATUS back to the main loop.
 */
function allocationContextIdOf(state: NegotiatedState): number {
  const only = state.contexts.length === 1 ? state.contexts[0] : undefined;
  return state.structured && only !== undefined && only.kind === 'allocation' ? only.id : 0;
}

function add(sum: Float64Array, values: ArrayLike<number>): void {
  for (let i = 0; i < sum.length; i++) sum[i] = (sum[i] as number) + (values[i] as number);
}
