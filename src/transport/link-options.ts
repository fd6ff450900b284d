// Notes on the design
// -------------------
// What a Link is made with and hands out: LinkOptions and LinkTuning (every timing and limit,
// with its default), the logger shape (pino's calling convention; SILENT when none is given),
// the message, unconfirmed-report and request-handler types of the link's API, the reconnect
// backoff (backoffDelayMs) and the integer check the constructor applies to each tuning value.
//
// Invariants: backoffDelayMs never exceeds reconnectMaxDelayMs (the cap is the real maximum)
// and draws its jitter only from the Random it is given, so a seeded run replays. Bad options
// are RangeError at construction (positiveInteger). SILENT and positiveInteger are for link.ts
// only (it does not re-export them). No state lives here.

import type { Clock } from '../runtime/clock';
import type { Random } from '../runtime/random';
import type { VersionRange } from './handshake';
import type { Network, NetworkAddress } from './wire';
import type { LinkReason } from './link-state';

/** A message delivered to 'message' listeners. */
export interface LinkMessage {
  type: number;
  /** Valid while the listener runs (the link reuses the buffer): copy what you keep. */
  payload: Buffer;
}

/** A message the link could not confirm. */
export interface UnconfirmedMessage {
  messageId: number;
  type: number;
  byteLength: number;
}

/** The 'unconfirmed' event: messages of a connection that ended without acknowledging them. */
export interface UnconfirmedReport {
  peerId: string;
  reason: LinkReason;
  messages: UnconfirmedMessage[];
}

/** Options of send(). */
export interface SendOptions {
  /** Called once if the message is not confirmed when its connection ends. */
  onUnconfirmed?: (message: UnconfirmedMessage) => void;
  /**
   * Called once, if send() returned (not when it threw), when nothing reads the payload's memory
   * any more: handed to the kernel, copied, or discarded (a partition, a close). Until then the
   * payload must stay unchanged; after it the sender may reuse the buffer (send-pool.ts).
   */
  onWritten?: () => void;
  /** The payload's CRC32C (from 0), when the sender made it from CRCs it holds (frame.ts). */
  payloadCrc?: number;
}

/** Handles a request of one type; the returned payload is the response. */
export type RequestHandler = (payload: Buffer) => Buffer | Promise<Buffer>;

/** A logger with pino's calling convention. */
export interface LinkLogger {
  debug(object: object, message?: string): void;
  info(object: object, message?: string): void;
  warn(object: object, message?: string): void;
  error(object: object, message?: string): void;
}

export const SILENT: LinkLogger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

/** Link timing and limits (all have defaults). */
export interface LinkTuning {
  /** @default 1000 */
  heartbeatIntervalMs?: number;
  /** No frame for this long: the peer is dead. @default 5000 */
  deadPeerTimeoutMs?: number;
  /** @default 5000 */
  handshakeTimeoutMs?: number;
  /** @default 5000 */
  connectTimeoutMs?: number;
  /** @default 100 */
  reconnectInitialDelayMs?: number;
  /** @default 5000 */
  reconnectMaxDelayMs?: number;
  /** Fraction of a backoff delay drawn at random either way. @default 0.2 */
  reconnectJitter?: number;
  /** @default DEFAULT_MAX_FRAME_BYTES (32 MiB + 64 KiB) */
  maxFrameBytes?: number;
  /** Unacknowledged message bytes allowed in flight. @default 67108864 (64 MiB) */
  maxQueuedBytes?: number;
  /** Default timeout of request(). @default 10000 */
  requestTimeoutMs?: number;
}

/** Options of a Link. */
export interface LinkOptions extends LinkTuning {
  selfId: string;
  peerId: string;
  /** Where the peer listens; without it this side only accepts. @default undefined */
  address?: NetworkAddress;
  /** Whether this side dials (see the design note); the controller decides. @default address !== undefined */
  dial?: boolean;
  /** The shared secret with this peer. @default undefined (unauthenticated) */
  secret?: Buffer;
  /** @default tcpNetwork (the controller passes it) */
  network: Network;
  /** @default realClock */
  clock?: Clock;
  /** @default realRandom */
  random?: Random;
  /** @default silent */
  logger?: LinkLogger;
  /** Link protocol versions offered (a test hook). @default 1..1 */
  versions?: VersionRange;
  /** Feature bits offered. @default 0 */
  features?: number;
  /** Source of handshake nonces. @default crypto.randomBytes */
  nonce?: () => Buffer;
}

/**
 * Backoff of reconnect attempt `attempt` (1, 2, ...): initial * 2^(attempt-1), jittered by
 * +-jitter, and never above reconnectMaxDelayMs (the cap is the real maximum).
 */
export function backoffDelayMs(
  attempt: number,
  tuning: { reconnectInitialDelayMs: number; reconnectMaxDelayMs: number; reconnectJitter: number },
  random: Random,
): number {
  if (!Number.isInteger(attempt) || attempt < 1) throw new RangeError(`attempt must be an integer >= 1, got ${attempt}`);
  const base = Math.min(tuning.reconnectMaxDelayMs, tuning.reconnectInitialDelayMs * 2 ** Math.min(attempt - 1, 40));
  const jittered = base * (1 + tuning.reconnectJitter * (random.next() * 2 - 1));
  return Math.max(0, Math.min(tuning.reconnectMaxDelayMs, jittered));
}

export function positiveInteger(name: string, value: number | undefined, fallback: number, min: number, max: number): number {
  const result = value ?? fallback;
  if (!Number.isSafeInteger(result) || result < min || result > max) {
    throw new RangeError(`${name} must be an integer from ${min} to ${max}, got ${value}`);
  }
  return result;
}
