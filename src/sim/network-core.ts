// Notes on the design
// -------------------
// NetworkCore is the state behind a SimNetwork, shared by its node views (SimNetworkNode), its
// wires (network-wire.ts) and pipes (network-pipe.ts): the clock and Random, the hosts with
// their bound ports, the listeners, the pending dials, the per-pair link settings and
// partitions, the open wires and active pipes, the counters and the bounded trace.
//
// Model of dial and crash:
//   - dial: a connect request travels one way (latency + jitter). If a listener is there, both
//     ends exist at that instant: the listener gets its wire, then the dialer's callback. If
//     nothing listens, the refusal travels back and the dial fails with ECONNREFUSED after the
//     round trip. A request or refusal that meets a partition, or a host that is down, is lost
//     and the dial fails with ETIMEDOUT when timeoutMs passes. cancel() means the callback never
//     runs and no connection is made.
//   - crash(host): the host's listeners close, its pending dials fail with "host crashed", and
//     its wires close locally with "host crashed", with no notice to their peers (bytes an
//     ended wire of the host was still flushing are lost too). A peer's wire
//     stays open; bytes it sends stall (its bufferedBytes grows, as unacknowledged TCP data does).
//     Once the host restarts, the next such bytes to arrive are answered with a reset and the
//     peer gets close("ECONNRESET") a latency later.
//
// Determinism: every time comes from the SimClock and every choice from the injected Random,
// drawn in an order fixed by the calls made; ports are counted, not drawn (listen on port 0
// counts up from 40000 per host, dial ports from 49152). The network owns every pipe and timer.

import type { Random } from '../runtime/random';
import type { TimerHandle } from '../runtime/clock';
import type { DialHandle, NetworkAddress, NetworkListener, Wire } from '../transport/wire';
import { formatAddress } from '../transport/wire';
import type { SimClock } from './sim-clock';
import {
  DEFAULT_END_GRACE_MS,
  DEFAULT_HIGH_WATER_MARK_BYTES,
  DEFAULT_LINK,
  DEFAULT_TRACE_CAPACITY,
  EPHEMERAL_PORT_FIRST,
  HOST_CRASHED,
  LISTEN_PORT_FIRST,
  LOOPBACK_HOSTS,
  PORT_LAST,
  WILDCARD_HOSTS,
  checkAddress,
  checkFiniteNonNegative,
  checkFunction,
  checkNodeHost,
  checkPositiveInteger,
  invariant,
  listenError,
  mergeLink,
  pairKey,
  type LinkSettings,
  type SimNetworkCounters,
  type SimNetworkOptions,
} from './network-settings';
import type { Pipe } from './network-pipe';
import { SimWire } from './network-wire';

export interface HostState {
  readonly boundPorts: Set<number>;
  nextListenPort: number;
  nextEphemeralPort: number;
}

export interface ListenerState {
  readonly address: NetworkAddress;
  readonly onWire: (wire: Wire) => void;
  closed: boolean;
}

export interface PendingDial {
  readonly id: number;
  readonly fromHost: string;
  readonly toHost: string;
  readonly port: number;
  readonly callback: (error: string | undefined, wire?: Wire) => void;
  readonly timers: TimerHandle[];
  settled: boolean;
}

/** The state behind a SimNetwork, shared by its node views, wires and pipes. */
export class NetworkCore {
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
