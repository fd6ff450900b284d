// Notes on the design
// -------------------
// What a SimNetwork is configured with and what it counts: the public option types (LinkOptions
// per direction, PartitionOptions, SimNetworkOptions, SimNetworkCounters), their defaults and
// limits (port ranges, the high-water mark, the trace capacity, the end grace), the close reasons
// shared with tcp.ts, and the argument checks every entry point runs before it touches state.
// No state lives here.
//
// Error contract: bad arguments are TypeError / RangeError at the call (the check* functions);
// listenError builds the Error with a `code` ("EADDRINUSE", "EADDRNOTAVAIL", "EHOSTDOWN") that
// listen rejects with; invariant() throws on a broken invariant. Only the option types and
// HOST_CRASHED are public (network.ts re-exports them); the rest is for the network modules.

import type { Random } from '../runtime/random';
import type { NetworkAddress } from '../transport/wire';
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

export const DEFAULT_LINK: LinkSettings = Object.freeze({
  latencyMs: 1,
  jitterMs: 0,
  bandwidthBytesPerSecond: Infinity,
  dropProbability: 0,
});
export const DEFAULT_HIGH_WATER_MARK_BYTES = 1 << 20;
export const DEFAULT_TRACE_CAPACITY = 100_000;
export const DEFAULT_END_GRACE_MS = 2000;
export const CLOSED_BY_PEER = 'closed by peer';
export const LISTEN_PORT_FIRST = 40000;
export const EPHEMERAL_PORT_FIRST = 49152;
export const PORT_LAST = 65535;
export const MAX_CUTS_PER_SEGMENT = 3;
export const LOOPBACK_HOSTS: ReadonlySet<string> = new Set(['127.0.0.1', 'localhost', '::1']);
export const WILDCARD_HOSTS: ReadonlySet<string> = new Set(['0.0.0.0', '::']);

/** The close reason of the wires of a crashed host, and the error of its pending dials. */
export const HOST_CRASHED = 'host crashed';

export function invariant(condition: boolean, message: string): asserts condition {
  if (!condition) throw new Error(`SimNetwork invariant broken: ${message}`);
}

export function checkHost(value: unknown, name: string): asserts value is string {
  if (typeof value !== 'string') throw new TypeError(`${name} must be a string`);
  if (value.length === 0 || /\s/.test(value)) throw new RangeError(`${name} must be a non-empty name without spaces, got ${JSON.stringify(value)}`);
}

export function checkNodeHost(value: unknown, name: string): asserts value is string {
  checkHost(value, name);
  if (LOOPBACK_HOSTS.has(value) || WILDCARD_HOSTS.has(value)) {
    throw new RangeError(`${name} must name a simulated host, not the loopback or wildcard address ${value}`);
  }
}

export function checkAddress(value: unknown, name: string, allowPortZero: boolean): asserts value is NetworkAddress {
  if (typeof value !== 'object' || value === null) throw new TypeError(`${name} must be an object { host, port }`);
  const address = value as { host?: unknown; port?: unknown };
  checkHost(address.host, `${name}.host`);
  const port = address.port;
  const low = allowPortZero ? 0 : 1;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < low || port > PORT_LAST) {
    throw new RangeError(`${name}.port must be an integer from ${low} to ${PORT_LAST}, got ${String(port)}`);
  }
}

export function checkFunction(value: unknown, name: string): asserts value is (...args: never[]) => unknown {
  if (typeof value !== 'function') throw new TypeError(`${name} must be a function`);
}

export function checkFiniteNonNegative(value: unknown, name: string): asserts value is number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new RangeError(`${name} must be a finite number >= 0, got ${String(value)}`);
  }
}

export function checkPositiveInteger(value: unknown, name: string): asserts value is number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw new RangeError(`${name} must be a positive integer, got ${String(value)}`);
  }
}

export function mergeLink(base: LinkSettings, options: LinkOptions, name: string): LinkSettings {
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

export function listenError(code: string, address: NetworkAddress): Error {
  return Object.assign(new Error(`listen ${code} ${formatAddress(address)}`), { code });
}

export function pairKey(fromHost: string, toHost: string): string {
  return `${fromHost}\u0000${toHost}`;
}
