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
// The model in brief: one connection is two SimWire ends (network-wire.ts: write, end, destroy,
// pause/resume, bufferedBytes and drain) and one Pipe per direction (network-pipe.ts: when each
// segment leaves and lands, re-splitting and joins, stalls under partitions, drops); dial,
// listen, partitions and crash/restart of hosts live in NetworkCore (network-core.ts); options,
// defaults and argument checks in network-settings.ts. Each of those files states its part of
// the model. This module holds the two public faces of the core, SimNetwork (the whole network,
// its topology and faults) and SimNetworkNode (one host's Network), and re-exports the public
// types so importers keep one path.
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

import type { DialHandle, Network, NetworkAddress, NetworkListener, Wire } from '../transport/wire';
import type { SimClock } from './sim-clock';
import {
  checkNodeHost,
  mergeLink,
  pairKey,
  type LinkOptions,
  type LinkSettings,
  type PartitionOptions,
  type SimNetworkCounters,
  type SimNetworkOptions,
} from './network-settings';
import { NetworkCore } from './network-core';

export type {
  LinkOptions,
  LinkSettings,
  PartitionDirection,
  PartitionOptions,
  SimNetworkCounters,
  SimNetworkOptions,
} from './network-settings';
export { HOST_CRASHED } from './network-settings';
export { SimWire } from './network-wire';

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
