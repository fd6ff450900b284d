// Notes on the design
// -------------------
// SimNetwork is the simulator's Network: the same Wire and Network interfaces as real TCP
// (src/transport/tcp.ts), over virtual time (SimClock) and a seeded Random, with faults injected
// per ordered pair of hosts. A host is a name ("c3"); it exists as soon as it is used.
// `network.node(host)` is the Network a controller on that host gets: its dials carry the host
// as their source and its listens bind on it. The loopback names (127.0.0.1, localhost, ::1,
// and 0.0.0.0 / :: for listen) mean the node's own host; unlike real TCP, a listener on
// 127.0.0.1 is then reachable from other hosts, since a simulated host has one address.
//
// Model (one connection = two SimWire ends, and one Pipe per direction):
//   - dial: a connect request travels one way (latency + jitter). If a listener is there, both
//     ends exist at that instant: the listener gets its wire, then the dialer's callback. If
//     nothing listens, the refusal travels back and the dial fails with ECONNREFUSED after the
//     round trip. A request or refusal that meets a partition, or a host that is down, is lost
//     and the dial fails with ETIMEDOUT when timeoutMs passes. cancel() means the callback never
//     runs and no connection is made.
//   - write() copies its chunks into one segment. A segment leaves when the pipe is free (it
//     occupies it for byteLength / bandwidth) and arrives latency + jitter later, never before
//     the previous segment of the same pipe: order within a wire is always preserved. With
//     re-splitting (the default) a segment is cut at random points, and a segment that lands at
//     the same instant as the still-queued one before it may be joined to it, so decoders see
//     arbitrary splits and joins.
//   - bufferedBytes is what the sender wrote that the receiver's data handler has not yet been
//     given (in flight, held by a partition, or held by a paused or unattached receiver).
//     write() returns false at or above the high-water mark; drain() follows, in a step of its
//     own, once the count falls below it.
//   - Delivery goes one chunk per clock step, so promise continuations run between chunks. The
//     head of a pipe stalls (and everything behind it waits) while the direction is
//     partitioned, while the receiver is paused or not attached, or while the receiving host is
//     down; heal(), healAll() and restart() re-send stalled bytes, arriving one latency later, as
//     TCP retransmission would; resume() and attach() deliver at once.
//   - destroy(reason): the local handlers get close(reason) at once and every byte not yet
//     delivered in either direction is discarded; the peer gets close("closed by peer") one
//     latency later (held by a partition like any byte). end(reason) also closes locally at once,
//     but the bytes already written are still delivered and the peer's close follows them; if
//     they are not all delivered within endGraceMs (a peer that never reads), the rest is
//     discarded and the peer gets close("ECONNRESET") instead, as tcp.ts destroys the socket
//     after its grace period. dropProbability is drawn per delivered chunk; a hit resets the
//     connection: both ends get close("ECONNRESET") at that instant.
//   - crash(host): the host's listeners close, its pending dials fail with "host crashed", and
//     its wires close locally with "host crashed", with no notice to their peers (bytes an
//     ended wire of the host was still flushing are lost too). A peer's wire
//     stays open; bytes it sends stall (its bufferedBytes grows, as unacknowledged TCP data does).
//     Once the host restarts, the next such bytes to arrive are answered with a reset and the
//     peer gets close("ECONNRESET") a latency later.
//
// Determinism: every time comes from the SimClock and every choice (jitter, cut points, joins,
// drops) from the injected Random, drawn in an order fixed by the calls made; ports are
// counted, not drawn (listen on port 0 counts up from 40000 per host, dial ports from 49152).
// Every event is appended to a bounded trace, so two runs from the same seed and the same calls
// give the same trace.
//
// Ownership and errors: the network owns every pipe and timer; a SimWire is owned by whoever got
// it from dial or listen. Bad arguments are TypeError / RangeError at the call. Operating
// failures follow TCP: dial errors and close reasons are the strings tcp.ts reports
// ("ECONNREFUSED", "ETIMEDOUT", "ECONNRESET", "closed by peer"); listen rejects with an Error
// whose `code` is "EADDRINUSE", "EADDRNOTAVAIL" or "EHOSTDOWN". Handlers that throw are not
// caught: the error surfaces from the SimClock step that ran them. A broken invariant throws.

import type { Random } from '../runtime/random';
import type { TimerHandle } from '../runtime/clock';
import type { DialHandle, Network, NetworkAddress, NetworkListener, Wire, WireHandlers } from '../transport/wire';
import { formatAddress } from '../transport/wire';
import type { SimClock } from './sim-clock';

/** Behaviour of one direction between two hosts. */
export interface LinkOptions {
  /** One-way delay of every segment and connect request. @default 1 */
  latencyMs?: number;
  /** Extra delay drawn uniformly from [0, jitterMs) per segment; never reorders a wire. @default 0 */
  jitterMs?: number;
  /** Bytes per second a pipe carries; Infinity is unlimited. @default Infinity */
  bandwidthBytesPerSecond?: number;
  /** Chance, per delivered chunk, that the connection is reset (both ends get ECONNRESET). @default 0 */
  dropProbability?: number;
}

/** The settings in force for one direction. */
export type LinkSettings = Readonly<Required<LinkOptions>>;

/** Which direction partition() and heal() act on. */
export type PartitionDirection = 'both' | 'a-to-b' | 'b-to-a';

/** Options of partition() and heal(). */
export interface PartitionOptions {
  /** The direction cut (or restored). @default 'both' */
  direction?: PartitionDirection;
}

/** Options of a SimNetwork. */
export interface SimNetworkOptions {
  /** The virtual clock every delay runs on. */
  clock: SimClock;
  /** The source of every random choice (use a SeededRandom, or a fork of one). */
  random: Random;
  /** Link settings of every pair of hosts that setLink() has not changed. @default { latencyMs: 1, jitterMs: 0, bandwidthBytesPerSecond: Infinity, dropProbability: 0 } */
  link?: LinkOptions;
  /** Cut segments at random points and join some, so decoders see arbitrary splits. @default true */
  resplit?: boolean;
  /** bufferedBytes at or above which write() returns false. @default 1_048_576 */
  highWaterMarkBytes?: number;
  /** The source host of dials made on the SimNetwork itself rather than on a node(). @default 'client' */
  defaultHost?: string;
  /** How long an ended wire may take to deliver its last bytes before the peer is reset. @default 2000 */
  endGraceMs?: number;
  /** Trace lines kept (the oldest are dropped beyond it). @default 100_000 */
  traceLineLimit?: number;
  /**
   * Records the trace. A caller that never reads it (the pair schedules, which keep their own)
   * turns it off: the per-delivery lines are then not even formatted. @default true
   */
  trace?: boolean;
  /** Called with every trace line as it is recorded. @default undefined */
  onTrace?: (line: string) => void;
}

/** Totals since the network was made. */
export interface SimNetworkCounters {
  /** Bytes accepted by write() on open wires. */
  writtenBytes: number;
  /** Bytes handed to data handlers. */
  deliveredBytes: number;
  /** data() calls made. */
  deliveredChunkCount: number;
  /** Bytes written but never delivered (closed, reset or crashed wires). */
  discardedBytes: number;
  /** Wire ends not yet closed (a connection has two). */
  openWireCount: number;
  /** Connections established. */
  connectionCount: number;
  dialCount: number;
  refusedDialCount: number;
  timedOutDialCount: number;
  /** Connections reset by dropProbability, reset(), or bytes reaching a restarted host. */
  resetCount: number;
}

const DEFAULT_LINK: LinkSettings = Object.freeze({
  latencyMs: 1,
  jitterMs: 0,
  bandwidthBytesPerSecond: Infinity,
  dropProbability: 0,
});
const DEFAULT_HIGH_WATER_MARK_BYTES = 1 << 20;
const DEFAULT_TRACE_CAPACITY = 100_000;
const DEFAULT_END_GRACE_MS = 2000;
const CLOSED_BY_PEER = 'closed by peer';
const LISTEN_PORT_FIRST = 40000;
const EPHEMERAL_PORT_FIRST = 49152;
const PORT_LAST = 65535;
const MAX_CUTS_PER_SEGMENT = 3;
const LOOPBACK_HOSTS: ReadonlySet<string> = new Set(['127.0.0.1', 'localhost', '::1']);
const WILDCARD_HOSTS: ReadonlySet<string> = new Set(['0.0.0.0', '::']);

/** The close reason of the wires of a crashed host, and the error of its pending dials. */
export const HOST_CRASHED = 'host crashed';

function invariant(condition: boolean, message: string): asserts condition {
  if (!condition) throw new Error(`SimNetwork invariant broken: ${message}`);
}

function checkHost(value: unknown, name: string): asserts value is string {
  if (typeof value !== 'string') throw new TypeError(`${name} must be a string`);
  if (value.length === 0 || /\s/.test(value)) throw new RangeError(`${name} must be a non-empty name without spaces, got ${JSON.stringify(value)}`);
}

function checkNodeHost(value: unknown, name: string): asserts value is string {
  checkHost(value, name);
  if (LOOPBACK_HOSTS.has(value) || WILDCARD_HOSTS.has(value)) {
    throw new RangeError(`${name} must name a simulated host, not the loopback or wildcard address ${value}`);
  }
}

function checkAddress(value: unknown, name: string, allowPortZero: boolean): asserts value is NetworkAddress {
  if (typeof value !== 'object' || value === null) throw new TypeError(`${name} must be an object { host, port }`);
  const address = value as { host?: unknown; port?: unknown };
  checkHost(address.host, `${name}.host`);
  const port = address.port;
  const low = allowPortZero ? 0 : 1;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < low || port > PORT_LAST) {
    throw new RangeError(`${name}.port must be an integer from ${low} to ${PORT_LAST}, got ${String(port)}`);
  }
}

function checkFunction(value: unknown, name: string): asserts value is (...args: never[]) => unknown {
  if (typeof value !== 'function') throw new TypeError(`${name} must be a function`);
}

function checkFiniteNonNegative(value: unknown, name: string): asserts value is number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new RangeError(`${name} must be a finite number >= 0, got ${String(value)}`);
  }
}

function checkPositiveInteger(value: unknown, name: string): asserts value is number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw new RangeError(`${name} must be a positive integer, got ${String(value)}`);
  }
}

function mergeLink(base: LinkSettings, options: LinkOptions, name: string): LinkSettings {
  if (typeof options !== 'object' || options === null) throw new TypeError(`${name} must be an object`);
  const merged = {
    latencyMs: options.latencyMs ?? base.latencyMs,
    jitterMs: options.jitterMs ?? base.jitterMs,
    bandwidthBytesPerSecond: options.bandwidthBytesPerSecond ?? base.bandwidthBytesPerSecond,
    dropProbability: options.dropProbability ?? base.dropProbability,
  };
  checkFiniteNonNegative(merged.latencyMs, `${name}.latencyMs`);
  checkFiniteNonNegative(merged.jitterMs, `${name}.jitterMs`);
  const bandwidth = merged.bandwidthBytesPerSecond;
  if (typeof bandwidth !== 'number' || Number.isNaN(bandwidth) || bandwidth <= 0) {
    throw new RangeError(`${name}.bandwidthBytesPerSecond must be a number > 0 (Infinity for unlimited), got ${String(bandwidth)}`);
  }
  const drop = merged.dropProbability;
  if (typeof drop !== 'number' || !(drop >= 0 && drop <= 1)) {
    throw new RangeError(`${name}.dropProbability must be a number from 0 to 1, got ${String(drop)}`);
  }
  return Object.freeze(merged);
}

function listenError(code: string, address: NetworkAddress): Error {
  return Object.assign(new Error(`listen ${code} ${formatAddress(address)}`), { code });
}

function pairKey(fromHost: string, toHost: string): string {
  return `${fromHost}\u0000${toHost}`;
}

interface DataPiece {
  kind: 'data';
  bytes: Buffer;
  arrivalMs: number;
}

/** The sender's close notice: a FIN ("closed by peer") or a reset ("ECONNRESET"). */
interface ClosePiece {
  kind: 'close';
  reason: typeof CLOSED_BY_PEER | 'ECONNRESET';
  arrivalMs: number;
}

type Piece = DataPiece | ClosePiece;

interface HostState {
  readonly boundPorts: Set<number>;
  nextListenPort: number;
  nextEphemeralPort: number;
}

interface ListenerState {
  readonly address: NetworkAddress;
  readonly onWire: (wire: Wire) => void;
  closed: boolean;
}

interface PendingDial {
  readonly id: number;
  readonly fromHost: string;
  readonly toHost: string;
  readonly port: number;
  readonly callback: (error: string | undefined, wire?: Wire) => void;
  readonly timers: TimerHandle[];
  settled: boolean;
}

type CloseCause = 'local' | 'end' | 'peer' | 'reset' | 'crash';

/** The state behind a SimNetwork, shared by its node views, wires and pipes. */
class NetworkCore {
  readonly clock: SimClock;
  readonly random: Random;
  readonly resplit: boolean;
  readonly highWaterMarkBytes: number;
  readonly defaultHost: string;
  readonly endGraceMs: number;
  readonly defaultLink: LinkSettings;
  readonly links = new Map<string, LinkSettings>();
  readonly partitions = new Set<string>();
  readonly downHosts = new Set<string>();
  readonly hosts = new Map<string, HostState>();
  readonly listeners = new Map<string, ListenerState>();
  readonly openWires = new Set<SimWire>();
  readonly activePipes = new Set<Pipe>();
  readonly pendingDials = new Set<PendingDial>();
  readonly counters: SimNetworkCounters = {
    writtenBytes: 0,
    deliveredBytes: 0,
    deliveredChunkCount: 0,
    discardedBytes: 0,
    openWireCount: 0,
    connectionCount: 0,
    dialCount: 0,
    refusedDialCount: 0,
    timedOutDialCount: 0,
    resetCount: 0,
  };
  private nextDialId = 1;
  private nextConnectionId = 1;
  private readonly traceLineLimit: number;
  private readonly traceLines: string[] = [];
  private traceStart = 0;
  traceDroppedCount = 0;
  private readonly onTrace: ((line: string) => void) | undefined;
  /** False when nobody reads the trace (options.trace false and no onTrace): hot paths skip formatting. */
  readonly tracing: boolean;

  constructor(options: SimNetworkOptions) {
    if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object');
    if (typeof options.clock !== 'object' || options.clock === null || typeof options.clock.setTimer !== 'function') {
      throw new TypeError('options.clock must be a SimClock');
    }
    if (typeof options.random !== 'object' || options.random === null || typeof options.random.next !== 'function') {
      throw new TypeError('options.random must be a Random');
    }
    this.clock = options.clock;
    this.random = options.random;
    this.defaultLink = mergeLink(DEFAULT_LINK, options.link ?? {}, 'options.link');
    this.resplit = options.resplit ?? true;
    if (typeof this.resplit !== 'boolean') throw new TypeError('options.resplit must be a boolean');
    this.highWaterMarkBytes = options.highWaterMarkBytes ?? DEFAULT_HIGH_WATER_MARK_BYTES;
    checkPositiveInteger(this.highWaterMarkBytes, 'options.highWaterMarkBytes');
    this.defaultHost = options.defaultHost ?? 'client';
    checkNodeHost(this.defaultHost, 'options.defaultHost');
    this.endGraceMs = options.endGraceMs ?? DEFAULT_END_GRACE_MS;
    checkFiniteNonNegative(this.endGraceMs, 'options.endGraceMs');
    this.traceLineLimit = options.traceLineLimit ?? DEFAULT_TRACE_CAPACITY;
    checkPositiveInteger(this.traceLineLimit, 'options.traceLineLimit');
    if (options.onTrace !== undefined) checkFunction(options.onTrace, 'options.onTrace');
    this.onTrace = options.onTrace;
    if (options.trace !== undefined && typeof options.trace !== 'boolean') throw new TypeError('options.trace must be a boolean');
    this.tracing = options.trace !== false || options.onTrace !== undefined;
  }

  // --- trace ---

  trace(text: string): void {
    if (!this.tracing) return;
    const line = `${this.clock.nowMs().toFixed(3)} ${text}`;
    if (this.traceLines.length < this.traceLineLimit) {
      this.traceLines.push(line);
    } else {
      this.traceLines[this.traceStart] = line;
      this.traceStart = (this.traceStart + 1) % this.traceLineLimit;
      this.traceDroppedCount += 1;
    }
    this.onTrace?.(line);
  }

  traceSnapshot(): string[] {
    return [...this.traceLines.slice(this.traceStart), ...this.traceLines.slice(0, this.traceStart)];
  }

  // --- hosts, links, partitions ---

  resolveHost(ownHost: string, host: string, forListen: boolean): string {
    if (LOOPBACK_HOSTS.has(host) || (forListen && WILDCARD_HOSTS.has(host))) return ownHost;
    return host;
  }

  isDown(host: string): boolean {
    return this.downHosts.has(host);
  }

  link(fromHost: string, toHost: string): LinkSettings {
    return this.links.get(pairKey(fromHost, toHost)) ?? this.defaultLink;
  }

  isPartitioned(fromHost: string, toHost: string): boolean {
    return this.partitions.size > 0 && this.partitions.has(pairKey(fromHost, toHost));
  }

  /** Latency plus a jitter draw (a draw only when the link has jitter). */
  oneWayDelayMs(fromHost: string, toHost: string): number {
    const link = this.link(fromHost, toHost);
    return link.latencyMs + (link.jitterMs > 0 ? this.random.next() * link.jitterMs : 0);
  }

  private hostState(host: string): HostState {
    let state = this.hosts.get(host);
    if (state === undefined) {
      state = { boundPorts: new Set(), nextListenPort: LISTEN_PORT_FIRST, nextEphemeralPort: EPHEMERAL_PORT_FIRST };
      this.hosts.set(host, state);
    }
    return state;
  }

  /** A free port counted up from the first port of its kind, wrapping; undefined when all are taken. */
  allocatePort(host: string, kind: 'listen' | 'ephemeral'): number | undefined {
    const state = this.hostState(host);
    const first = kind === 'listen' ? LISTEN_PORT_FIRST : EPHEMERAL_PORT_FIRST;
    let cursor = kind === 'listen' ? state.nextListenPort : state.nextEphemeralPort;
    for (let tried = 0; tried <= PORT_LAST - first; tried += 1) {
      const port = cursor;
      cursor = cursor === PORT_LAST ? first : cursor + 1;
      if (!state.boundPorts.has(port)) {
        state.boundPorts.add(port);
        if (kind === 'listen') state.nextListenPort = cursor;
        else state.nextEphemeralPort = cursor;
        return port;
      }
    }
    return undefined;
  }

  bindPort(host: string, port: number): boolean {
    const state = this.hostState(host);
    if (state.boundPorts.has(port)) return false;
    state.boundPorts.add(port);
    return true;
  }

  releasePort(host: string, port: number): void {
    const released = this.hostState(host).boundPorts.delete(port);
    invariant(released, `port ${host}:${port} released twice`);
  }

  /** Re-sends what is held in the given directions (heal, restart). */
  retransmit(matches: (pipe: Pipe) => boolean): void {
    for (const pipe of [...this.activePipes]) {
      if (matches(pipe)) pipe.kick(true);
    }
  }

  // --- listen and dial ---

  listen(ownHost: string, address: NetworkAddress, onWire: (wire: Wire) => void, anyHost: boolean): Promise<NetworkListener> {
    checkAddress(address, 'address', true);
    checkFunction(onWire, 'onWire');
    const host = this.resolveHost(ownHost, address.host, true);
    if (!anyHost && host !== ownHost) {
      return Promise.reject(listenError('EADDRNOTAVAIL', address));
    }
    checkNodeHost(host, 'address.host');
    if (this.isDown(host)) return Promise.reject(listenError('EHOSTDOWN', { host, port: address.port }));
    let port = address.port;
    if (port === 0) {
      const allocated = this.allocatePort(host, 'listen');
      if (allocated === undefined) return Promise.reject(listenError('EADDRNOTAVAIL', { host, port }));
      port = allocated;
    } else if (!this.bindPort(host, port)) {
      return Promise.reject(listenError('EADDRINUSE', { host, port }));
    }
    const state: ListenerState = { address: Object.freeze({ host, port }), onWire, closed: false };
    this.listeners.set(formatAddress(state.address), state);
    this.trace(`listen ${formatAddress(state.address)}`);
    const listener: NetworkListener = {
      address: state.address,
      close: () => {
        this.closeListener(state);
        return Promise.resolve();
      },
    };
    return Promise.resolve(listener);
  }

  closeListener(state: ListenerState): void {
    if (state.closed) return;
    state.closed = true;
    const key = formatAddress(state.address);
    invariant(this.listeners.get(key) === state, `listener ${key} is not registered`);
    this.listeners.delete(key);
    this.releasePort(state.address.host, state.address.port);
    this.trace(`unlisten ${key}`);
  }

  dial(fromHost: string, address: NetworkAddress, timeoutMs: number, callback: (error: string | undefined, wire?: Wire) => void): DialHandle {
    checkAddress(address, 'address', false);
    checkFiniteNonNegative(timeoutMs, 'timeoutMs');
    checkFunction(callback, 'callback');
    const toHost = this.resolveHost(fromHost, address.host, false);
    checkNodeHost(toHost, 'address.host');
    const dial: PendingDial = { id: this.nextDialId++, fromHost, toHost, port: address.port, callback, timers: [], settled: false };
    this.counters.dialCount += 1;
    this.trace(`dial#${dial.id} ${fromHost}->${toHost}:${dial.port}`);
    const handle: DialHandle = {
      cancel: () => {
        if (dial.settled) return;
        this.trace(`dial#${dial.id} cancelled`);
        this.settleDial(dial, undefined, undefined, false);
      },
    };
    this.pendingDials.add(dial);
    if (this.isDown(fromHost)) {
      dial.timers.push(this.clock.setTimer(() => this.failDial(dial, HOST_CRASHED), 0));
      return handle;
    }
    dial.timers.push(
      this.clock.setTimer(() => {
        this.counters.timedOutDialCount += 1;
        this.failDial(dial, 'ETIMEDOUT');
      }, timeoutMs),
    );
    if (this.isPartitioned(fromHost, toHost)) {
      this.trace(`dial#${dial.id} request lost (partition)`);
      return handle;
    }
    dial.timers.push(this.clock.setTimer(() => this.dialRequestArrived(dial), this.oneWayDelayMs(fromHost, toHost)));
    return handle;
  }

  failDial(dial: PendingDial, error: string): void {
    if (dial.settled) return;
    this.trace(`dial#${dial.id} failed ${error}`);
    this.settleDial(dial, error, undefined, true);
  }

  private settleDial(dial: PendingDial, error: string | undefined, wire: Wire | undefined, notify: boolean): void {
    invariant(!dial.settled, `dial#${dial.id} settled twice`);
    dial.settled = true;
    for (const timer of dial.timers) timer.cancel();
    dial.timers.length = 0;
    this.pendingDials.delete(dial);
    if (notify) dial.callback(error, wire);
  }

  private dialRequestArrived(dial: PendingDial): void {
    if (dial.settled) return;
    const { fromHost, toHost } = dial;
    if (this.isPartitioned(fromHost, toHost) || this.isPartitioned(toHost, fromHost) || this.isDown(toHost)) {
      this.trace(`dial#${dial.id} request lost (${this.isDown(toHost) ? 'host down' : 'partition'})`);
      return;
    }
    const listener = this.listeners.get(formatAddress({ host: toHost, port: dial.port }));
    if (listener === undefined) {
      this.trace(`dial#${dial.id} refused by ${toHost}`);
      dial.timers.push(
        this.clock.setTimer(() => {
          if (dial.settled) return;
          if (this.isPartitioned(toHost, fromHost)) {
            this.trace(`dial#${dial.id} refusal lost (partition)`);
            return;
          }
          this.counters.refusedDialCount += 1;
          this.failDial(dial, 'ECONNREFUSED');
        }, this.oneWayDelayMs(toHost, fromHost)),
      );
      return;
    }
    const localPort = this.allocatePort(fromHost, 'ephemeral');
    if (localPort === undefined) {
      this.failDial(dial, 'EADDRNOTAVAIL');
      return;
    }
    const connectionId = this.nextConnectionId++;
    const dialerEnd = new SimWire(this, connectionId, { host: fromHost, port: localPort }, listener.address, true);
    const acceptorEnd = new SimWire(this, connectionId, listener.address, { host: fromHost, port: localPort }, false);
    SimWire.pair(dialerEnd, acceptorEnd);
    this.counters.connectionCount += 1;
    this.trace(`dial#${dial.id} connected #${connectionId} ${formatAddress(dialerEnd.local)}->${formatAddress(acceptorEnd.local)}`);
    this.settleDial(dial, undefined, undefined, false);
    try {
      listener.onWire(acceptorEnd);
    } finally {
      dial.callback(undefined, dialerEnd);
    }
  }

  // --- faults ---

  crash(host: string): void {
    if (this.isDown(host)) return;
    this.downHosts.add(host);
    this.trace(`crash ${host}`);
    for (const listener of [...this.listeners.values()]) {
      if (listener.address.host === host) this.closeListener(listener);
    }
    for (const dial of [...this.pendingDials]) {
      if (dial.fromHost === host) this.failDial(dial, HOST_CRASHED);
    }
    for (const wire of [...this.openWires]) {
      if (wire.local.host === host) wire.finish(HOST_CRASHED, 'crash');
    }
    for (const pipe of [...this.activePipes]) {
      if (pipe.sender.local.host === host && pipe.sender.closed) {
        pipe.clear();
        pipe.sender.endFlushed();
      }
    }
  }

  restart(host: string): void {
    if (!this.isDown(host)) return;
    this.downHosts.delete(host);
    this.trace(`restart ${host}`);
    this.retransmit((pipe) => pipe.receiver.crashed && pipe.receiver.local.host === host);
  }

  /** Resets every connection between a and b; returns how many connections had an open end. */
  resetBetween(a: string, b: string): number {
    const connectionIds = new Set<number>();
    for (const wire of [...this.openWires]) {
      const { host: localHost } = wire.local;
      const { host: remoteHost } = wire.remote;
      if ((localHost === a && remoteHost === b) || (localHost === b && remoteHost === a)) {
        if (wire.finish('ECONNRESET', 'reset')) connectionIds.add(wire.connectionId);
      }
    }
    this.counters.resetCount += connectionIds.size;
    return connectionIds.size;
  }
}

/** One direction of a connection: the bytes a sender wrote that its receiver has not yet been given. */
class Pipe {
  private readonly queue: Array<Piece | undefined> = [];
  private headIndex = 0;
  /** Data bytes queued (the sender's bufferedBytes). */
  queuedBytes = 0;
  private lastArrivalMs = 0;
  private transmitFreeAtMs = 0;
  private timer: TimerHandle | undefined;
  private stallReason: string | undefined;

  constructor(
    private readonly core: NetworkCore,
    readonly sender: SimWire,
    readonly receiver: SimWire,
  ) {}

  private get label(): string {
    return `#${this.sender.connectionId} ${formatAddress(this.sender.local)}->${formatAddress(this.receiver.local)}`;
  }

  private get length(): number {
    return this.queue.length - this.headIndex;
  }

  private head(): Piece | undefined {
    return this.queue[this.headIndex];
  }

  private shift(): Piece {
    const piece = this.queue[this.headIndex];
    invariant(piece !== undefined, 'shift from an empty pipe');
    this.queue[this.headIndex] = undefined;
    this.headIndex += 1;
    if (this.headIndex === this.queue.length) {
      this.queue.length = 0;
      this.headIndex = 0;
      this.core.activePipes.delete(this);
    } else if (this.headIndex >= 1024 && this.headIndex * 2 >= this.queue.length) {
      this.queue.splice(0, this.headIndex);
      this.headIndex = 0;
    }
    return piece;
  }

  private push(piece: Piece): void {
    const tail = this.queue[this.queue.length - 1];
    invariant(this.length === 0 || tail === undefined || piece.arrivalMs >= tail.arrivalMs, 'a piece would arrive before the one ahead of it');
    this.queue.push(piece);
    this.core.activePipes.add(this);
  }

  /** Queues one written segment (already a private copy). */
  enqueueData(bytes: Buffer): void {
    const core = this.core;
    const fromHost = this.sender.local.host;
    const toHost = this.receiver.local.host;
    const link = core.link(fromHost, toHost);
    const nowMs = core.clock.nowMs();
    let sentMs = nowMs;
    if (Number.isFinite(link.bandwidthBytesPerSecond)) {
      const startMs = Math.max(nowMs, this.transmitFreeAtMs);
      this.transmitFreeAtMs = startMs + (bytes.length * 1000) / link.bandwidthBytesPerSecond;
      sentMs = this.transmitFreeAtMs;
    }
    const jitterMs = link.jitterMs > 0 ? core.random.next() * link.jitterMs : 0;
    const arrivalMs = Math.max(sentMs + link.latencyMs + jitterMs, this.lastArrivalMs);
    this.lastArrivalMs = arrivalMs;
    this.queuedBytes += bytes.length;
    const pieces = core.resplit ? this.cut(bytes) : [bytes];
    let first = 0;
    const tail = this.length > 0 ? this.queue[this.queue.length - 1] : undefined;
    if (core.resplit && tail !== undefined && tail.kind === 'data' && tail.arrivalMs === arrivalMs && core.random.int(2) === 0) {
      // The segment lands with the one before it: join them, as TCP coalesces, so a decoder also
      // sees several frames in one chunk. The joined piece is still queued, so this is safe even
      // for the head: its timer reads the bytes only when it fires.
      tail.bytes = Buffer.concat([tail.bytes, pieces[0] as Buffer]);
      first = 1;
    }
    for (let index = first; index < pieces.length; index += 1) {
      this.push({ kind: 'data', bytes: pieces[index] as Buffer, arrivalMs });
    }
    this.schedule();
  }

  /** Queues the sender's close notice, behind whatever data is still queued. */
  enqueueClose(reason: ClosePiece['reason']): void {
    let arrivalMs = this.core.clock.nowMs() + this.core.oneWayDelayMs(this.sender.local.host, this.receiver.local.host);
    const tail = this.length > 0 ? this.queue[this.queue.length - 1] : undefined;
    if (tail !== undefined) arrivalMs = Math.max(arrivalMs, tail.arrivalMs);
    this.lastArrivalMs = Math.max(this.lastArrivalMs, arrivalMs);
    this.push({ kind: 'close', reason, arrivalMs });
    this.schedule();
  }

  /** True while data bytes are queued. */
  get hasData(): boolean {
    return this.queuedBytes > 0;
  }

  private cut(bytes: Buffer): Buffer[] {
    if (bytes.length < 2) return [bytes];
    const cutCount = Math.min(this.core.random.int(MAX_CUTS_PER_SEGMENT + 1), bytes.length - 1);
    if (cutCount === 0) return [bytes];
    // At most MAX_CUTS_PER_SEGMENT distinct offsets, ascending (a plain array: this runs per segment).
    const offsets: number[] = [];
    for (let index = 0; index < cutCount; index += 1) {
      const offset = 1 + this.core.random.int(bytes.length - 1);
      if (!offsets.includes(offset)) offsets.push(offset);
    }
    offsets.sort((a, b) => a - b);
    const pieces: Buffer[] = [];
    let start = 0;
    for (const offset of offsets) {
      pieces.push(bytes.subarray(start, offset));
      start = offset;
    }
    pieces.push(bytes.subarray(start));
    return pieces;
  }

  /** Drops everything queued; returns the data bytes dropped. */
  clear(): number {
    const dropped = this.queuedBytes;
    this.queue.length = 0;
    this.headIndex = 0;
    this.queuedBytes = 0;
    this.timer?.cancel();
    this.timer = undefined;
    this.stallReason = undefined;
    this.core.activePipes.delete(this);
    this.core.counters.discardedBytes += dropped;
    return dropped;
  }

  /** Wakes a stalled pipe; with `retransmit`, held bytes arrive no sooner than one latency from now. */
  kick(retransmit: boolean): void {
    if (this.length === 0) return;
    if (retransmit) {
      const link = this.core.link(this.sender.local.host, this.receiver.local.host);
      const earliestMs = this.core.clock.nowMs() + link.latencyMs;
      for (let index = this.headIndex; index < this.queue.length; index += 1) {
        const piece = this.queue[index];
        if (piece !== undefined && piece.arrivalMs < earliestMs) piece.arrivalMs = earliestMs;
      }
      this.lastArrivalMs = Math.max(this.lastArrivalMs, earliestMs);
    }
    this.stallReason = undefined;
    this.timer?.cancel();
    this.timer = undefined;
    this.schedule();
  }

  private schedule(): void {
    if (this.timer !== undefined || this.stallReason !== undefined) return;
    const head = this.head();
    if (head === undefined) return;
    // The clock computes the due time as now + delay; with a fractional arrival (bandwidth
    // caps) that sum can round one ulp below the arrival, and the piece would be delivered
    // early (found by the pair simulation, test/scenario/regressions/bandwidth-arrival-rounding.json).
    const nowMs = this.core.clock.nowMs();
    let delayMs = Math.max(0, head.arrivalMs - nowMs);
    while (nowMs + delayMs < head.arrivalMs) delayMs += Number.EPSILON * Math.max(1, head.arrivalMs);
    this.timer = this.core.clock.setTimer(() => {
      this.timer = undefined;
      this.deliverHead();
    }, delayMs);
  }

  private stall(reason: string): void {
    if (this.stallReason === reason) return;
    this.stallReason = reason;
    if (this.core.tracing) this.core.trace(`stall ${this.label} (${reason})`);
  }

  private deliverHead(): void {
    const core = this.core;
    const head = this.head();
    if (head === undefined) return;
    invariant(head.arrivalMs <= core.clock.nowMs(), 'a piece delivered before its arrival');
    const { sender, receiver } = this;
    const fromHost = sender.local.host;
    const toHost = receiver.local.host;
    if (core.isPartitioned(fromHost, toHost)) {
      this.stall('partition');
      return;
    }
    if (receiver.closed) {
      if (!receiver.crashed) {
        this.clear();
        return;
      }
      if (core.isDown(toHost)) {
        this.stall('host down');
        return;
      }
      // The host came back without this connection: its stack answers the bytes with a reset.
      if (core.isPartitioned(toHost, fromHost)) {
        this.stall('partition');
        return;
      }
      this.clear();
      if (!sender.closed) sender.scheduleReset(core.oneWayDelayMs(toHost, fromHost));
      return;
    }
    if (head.kind === 'close') {
      this.shift();
      sender.endFlushed();
      if (head.reason === 'ECONNRESET') core.counters.resetCount += 1;
      receiver.finish(head.reason, head.reason === 'ECONNRESET' ? 'reset' : 'peer');
      return;
    }
    if (!receiver.readable) {
      this.stall('receiver paused');
      return;
    }
    const link = core.link(fromHost, toHost);
    if (link.dropProbability > 0 && core.random.next() < link.dropProbability) {
      if (core.tracing) core.trace(`drop ${this.label} ${head.bytes.length}`);
      core.counters.resetCount += 1;
      sender.finish('ECONNRESET', 'reset');
      receiver.finish('ECONNRESET', 'reset');
      return;
    }
    this.shift();
    const byteLength = head.bytes.length;
    this.queuedBytes -= byteLength;
    invariant(this.queuedBytes >= 0, 'negative queued bytes');
    core.counters.deliveredBytes += byteLength;
    core.counters.deliveredChunkCount += 1;
    if (core.tracing) core.trace(`deliver ${this.label} ${byteLength}`);
    this.schedule();
    sender.maybeDrain();
    receiver.receive(head.bytes);
  }
}

/** One end of a simulated connection. Made by SimNetwork only. */
export class SimWire implements Wire {
  readonly description: string;
  readonly local: NetworkAddress;
  readonly remote: NetworkAddress;
  /** Both ends of a connection share it; it appears in the trace. */
  readonly connectionId: number;
  private peer: SimWire | undefined;
  private outgoingPipe: Pipe | undefined;
  private handlers: WireHandlers | undefined;
  private attached = false;
  private paused = false;
  private needDrain = false;
  private drainTimer: TimerHandle | undefined;
  private resetTimer: TimerHandle | undefined;
  private endGraceTimer: TimerHandle | undefined;
  private closedReason: string | undefined;
  private crashedByHost = false;

  constructor(
    private readonly core: NetworkCore,
    connectionId: number,
    local: NetworkAddress,
    remote: NetworkAddress,
    private readonly ownsLocalPort: boolean,
  ) {
    this.connectionId = connectionId;
    this.local = Object.freeze({ host: local.host, port: local.port });
    this.remote = Object.freeze({ host: remote.host, port: remote.port });
    this.description = `sim:${formatAddress(this.local)}->${formatAddress(this.remote)}`;
    core.openWires.add(this);
    core.counters.openWireCount += 1;
  }

  /** @internal Links the two ends of a new connection. */
  static pair(a: SimWire, b: SimWire): void {
    invariant(a.peer === undefined && b.peer === undefined, 'wire paired twice');
    a.peer = b;
    b.peer = a;
    a.outgoingPipe = new Pipe(a.core, a, b);
    b.outgoingPipe = new Pipe(b.core, b, a);
  }

  private get outgoing(): Pipe {
    invariant(this.outgoingPipe !== undefined, 'wire not paired');
    return this.outgoingPipe;
  }

  private get other(): SimWire {
    invariant(this.peer !== undefined, 'wire not paired');
    return this.peer;
  }

  get bufferedBytes(): number {
    return this.outgoing.queuedBytes;
  }

  /** True once the wire has closed (for any reason). */
  get closed(): boolean {
    return this.closedReason !== undefined;
  }

  /** Closed by a crash of its host (its peer was not told). */
  get crashed(): boolean {
    return this.crashedByHost;
  }

  /** Why it closed, or undefined while open. */
  get closeReason(): string | undefined {
    return this.closedReason;
  }

  /** Attached, open and not paused: deliveries can be made. */
  get readable(): boolean {
    return this.handlers !== undefined && !this.paused;
  }

  attach(handlers: WireHandlers): void {
    if (this.attached) throw new Error('wire: handlers attached twice');
    if (typeof handlers !== 'object' || handlers === null) throw new TypeError('handlers must be an object');
    checkFunction(handlers.data, 'handlers.data');
    checkFunction(handlers.drain, 'handlers.drain');
    checkFunction(handlers.close, 'handlers.close');
    this.attached = true;
    if (this.closedReason !== undefined) {
      handlers.close(this.closedReason);
      return;
    }
    this.handlers = handlers;
    this.other.outgoing.kick(false);
    this.maybeDrain();
  }

  write(chunks: readonly Buffer[]): boolean {
    if (this.closedReason !== undefined) return true;
    let byteLength = 0;
    for (const chunk of chunks) byteLength += chunk.length;
    if (byteLength > 0) {
      // A private copy: the caller may reuse its buffers as soon as write() returns.
      const segment = Buffer.concat(chunks as readonly Uint8Array[], byteLength);
      this.core.counters.writtenBytes += byteLength;
      this.outgoing.enqueueData(segment);
    }
    const belowMark = this.outgoing.queuedBytes < this.core.highWaterMarkBytes;
    if (!belowMark) this.needDrain = true;
    return belowMark;
  }

  pause(): void {
    if (this.closedReason !== undefined) return;
    this.paused = true;
  }

  resume(): void {
    if (this.closedReason !== undefined || !this.paused) return;
    this.paused = false;
    this.other.outgoing.kick(false);
  }

  destroy(reason = 'closed'): void {
    this.finish(reason, 'local');
  }

  end(reason = 'closed'): void {
    this.finish(reason, 'end');
  }

  /** @internal The close notice of an ended wire was delivered: its grace period is over. */
  endFlushed(): void {
    this.endGraceTimer?.cancel();
    this.endGraceTimer = undefined;
  }

  /** @internal Hands received bytes to the data handler. */
  receive(bytes: Buffer): void {
    const handlers = this.handlers;
    invariant(handlers !== undefined, 'bytes delivered to a wire without handlers');
    handlers.data(bytes);
  }

  /** @internal Schedules drain() when write() returned false and the buffer has fallen below the mark. */
  maybeDrain(): void {
    if (!this.needDrain || this.drainTimer !== undefined || this.handlers === undefined) return;
    if (this.outgoing.queuedBytes >= this.core.highWaterMarkBytes) return;
    this.drainTimer = this.core.clock.setTimer(() => {
      this.drainTimer = undefined;
      if (!this.needDrain || this.handlers === undefined || this.outgoing.queuedBytes >= this.core.highWaterMarkBytes) return;
      this.needDrain = false;
      this.handlers.drain();
    }, 0);
  }

  /** @internal A reset from the peer's host reaches this end after `delayMs`. */
  scheduleReset(delayMs: number): void {
    if (this.closedReason !== undefined || this.resetTimer !== undefined) return;
    this.resetTimer = this.core.clock.setTimer(() => {
      this.resetTimer = undefined;
      if (this.closedReason !== undefined) return;
      this.core.counters.resetCount += 1;
      this.finish('ECONNRESET', 'reset');
    }, delayMs);
  }

  /** @internal Closes this end; returns false when it was already closed. */
  finish(reason: string, cause: CloseCause): boolean {
    if (this.closedReason !== undefined) return false;
    this.closedReason = reason;
    this.crashedByHost = cause === 'crash';
    const peer = this.other;
    // end() keeps what was written for delivery; every other close discards it. A crash tells the
    // peer nothing and leaves its bytes stalled; any other close discards the bytes still coming
    // this way, and a local close (destroy or end) sends the peer its notice.
    const flush = cause === 'end' && !peer.closed;
    if (!flush) this.outgoing.clear();
    if (cause !== 'crash') peer.outgoing.clear();
    if ((cause === 'local' || cause === 'end') && !peer.closed) this.outgoing.enqueueClose(CLOSED_BY_PEER);
    if (flush && this.outgoing.hasData) {
      this.endGraceTimer = this.core.clock.setTimer(() => {
        this.endGraceTimer = undefined;
        if (!this.outgoing.hasData || peer.closed) return;
        this.core.trace(`end grace expired #${this.connectionId} ${formatAddress(this.local)}`);
        this.outgoing.clear();
        this.outgoing.enqueueClose('ECONNRESET');
      }, this.core.endGraceMs);
    }
    this.drainTimer?.cancel();
    this.drainTimer = undefined;
    this.resetTimer?.cancel();
    this.resetTimer = undefined;
    if (this.ownsLocalPort) this.core.releasePort(this.local.host, this.local.port);
    this.core.openWires.delete(this);
    this.core.counters.openWireCount -= 1;
    invariant(this.core.counters.openWireCount === this.core.openWires.size, 'open wire count out of step');
    this.core.trace(`close #${this.connectionId} ${formatAddress(this.local)} (${reason})`);
    const handlers = this.handlers;
    this.handlers = undefined;
    handlers?.close(reason);
    return true;
  }
}

/** The Network of one simulated host: dials come from it, listens bind on it. */
export class SimNetworkNode implements Network {
  constructor(
    private readonly core: NetworkCore,
    readonly host: string,
  ) {}

  dial(address: NetworkAddress, timeoutMs: number, callback: (error: string | undefined, wire?: Wire) => void): DialHandle {
    return this.core.dial(this.host, address, timeoutMs, callback);
  }

  /** Binds on this host; an address naming another host rejects with EADDRNOTAVAIL. */
  listen(address: NetworkAddress, onWire: (wire: Wire) => void): Promise<NetworkListener> {
    return this.core.listen(this.host, address, onWire, false);
  }
}

/** A deterministic simulated network of named hosts, with fault injection. */
export class SimNetwork implements Network {
  private readonly core: NetworkCore;
  private readonly nodes = new Map<string, SimNetworkNode>();

  constructor(options: SimNetworkOptions) {
    this.core = new NetworkCore(options);
  }

  /** The clock the network runs on. */
  get clock(): SimClock {
    return this.core.clock;
  }

  /** The Network seen from `host` (the same object for the same host). */
  node(host: string): SimNetworkNode {
    checkNodeHost(host, 'host');
    let node = this.nodes.get(host);
    if (node === undefined) {
      node = new SimNetworkNode(this.core, host);
      this.nodes.set(host, node);
    }
    return node;
  }

  /** Dials from `defaultHost`. */
  dial(address: NetworkAddress, timeoutMs: number, callback: (error: string | undefined, wire?: Wire) => void): DialHandle {
    return this.core.dial(this.core.defaultHost, address, timeoutMs, callback);
  }

  /** Listens on the host the address names (loopback and wildcard names mean `defaultHost`). */
  listen(address: NetworkAddress, onWire: (wire: Wire) => void): Promise<NetworkListener> {
    return this.core.listen(this.core.defaultHost, address, onWire, true);
  }

  /** Changes the given settings of the direction fromHost -> toHost; the rest stay as they were. */
  setLink(fromHost: string, toHost: string, options: LinkOptions): void {
    checkNodeHost(fromHost, 'fromHost');
    checkNodeHost(toHost, 'toHost');
    const settings = mergeLink(this.core.link(fromHost, toHost), options, 'options');
    this.core.links.set(pairKey(fromHost, toHost), settings);
    this.core.trace(
      `link ${fromHost}->${toHost} latency=${settings.latencyMs} jitter=${settings.jitterMs} bandwidth=${settings.bandwidthBytesPerSecond} drop=${settings.dropProbability}`,
    );
  }

  /** Returns the direction fromHost -> toHost to the network's default settings. */
  clearLink(fromHost: string, toHost: string): void {
    checkNodeHost(fromHost, 'fromHost');
    checkNodeHost(toHost, 'toHost');
    if (this.core.links.delete(pairKey(fromHost, toHost))) this.core.trace(`link ${fromHost}->${toHost} default`);
  }

  /** The settings in force for fromHost -> toHost. */
  linkSettings(fromHost: string, toHost: string): LinkSettings {
    checkNodeHost(fromHost, 'fromHost');
    checkNodeHost(toHost, 'toHost');
    return this.core.link(fromHost, toHost);
  }

  /** Stalls bytes (and loses connect requests) in the given direction until heal(). */
  partition(a: string, b: string, options: PartitionOptions = {}): void {
    for (const [fromHost, toHost] of this.directions(a, b, options)) this.core.partitions.add(pairKey(fromHost, toHost));
    this.core.trace(`partition ${a} ${b} ${options.direction ?? 'both'}`);
  }

  /** Ends a partition; held bytes are re-sent and arrive one latency later. */
  heal(a: string, b: string, options: PartitionOptions = {}): void {
    const healed = new Set<string>();
    for (const [fromHost, toHost] of this.directions(a, b, options)) {
      const key = pairKey(fromHost, toHost);
      if (this.core.partitions.delete(key)) healed.add(key);
    }
    this.core.trace(`heal ${a} ${b} ${options.direction ?? 'both'}`);
    if (healed.size > 0) this.core.retransmit((pipe) => healed.has(pairKey(pipe.sender.local.host, pipe.receiver.local.host)));
  }

  /** Ends every partition. */
  healAll(): void {
    const healed = new Set(this.core.partitions);
    this.core.partitions.clear();
    this.core.trace('heal all');
    if (healed.size > 0) this.core.retransmit((pipe) => healed.has(pairKey(pipe.sender.local.host, pipe.receiver.local.host)));
  }

  /** True while bytes from fromHost to toHost stall. */
  isPartitioned(fromHost: string, toHost: string): boolean {
    checkNodeHost(fromHost, 'fromHost');
    checkNodeHost(toHost, 'toHost');
    return this.core.isPartitioned(fromHost, toHost);
  }

  /** Drops every connection between a and b now: every open end gets ECONNRESET. Returns the connections reset. */
  reset(a: string, b: string): number {
    checkNodeHost(a, 'a');
    checkNodeHost(b, 'b');
    this.core.trace(`reset ${a} ${b}`);
    return this.core.resetBetween(a, b);
  }

  /** Crashes a host: its listeners, dials and wires end at once, and its peers are not told. Idempotent. */
  crash(host: string): void {
    checkNodeHost(host, 'host');
    this.core.crash(host);
  }

  /** Lets a crashed host listen and dial again. Idempotent. */
  restart(host: string): void {
    checkNodeHost(host, 'host');
    this.core.restart(host);
  }

  /** False between crash(host) and restart(host). */
  isUp(host: string): boolean {
    checkNodeHost(host, 'host');
    return !this.core.isDown(host);
  }

  /** A snapshot of the totals. */
  get counters(): SimNetworkCounters {
    return { ...this.core.counters };
  }

  /** Listeners open now. */
  get listenerCount(): number {
    return this.core.listeners.size;
  }

  /** The recorded events, oldest first ("<virtual ms> <event>"), at most traceLineLimit of them. */
  trace(): string[] {
    return this.core.traceSnapshot();
  }

  /** Trace lines dropped because the trace was full. */
  get traceDroppedCount(): number {
    return this.core.traceDroppedCount;
  }

  private directions(a: string, b: string, options: PartitionOptions): Array<[string, string]> {
    checkNodeHost(a, 'a');
    checkNodeHost(b, 'b');
    if (a === b) throw new RangeError(`a and b must be different hosts, got ${a} twice`);
    if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object');
    const direction = options.direction ?? 'both';
    switch (direction) {
      case 'both':
        return [
          [a, b],
          [b, a],
        ];
      case 'a-to-b':
        return [[a, b]];
      case 'b-to-a':
        return [[b, a]];
      default:
        throw new RangeError(`options.direction must be 'both', 'a-to-b' or 'b-to-a', got ${String(direction)}`);
    }
  }
}
