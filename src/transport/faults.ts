// Notes on the design
// -------------------
// Fault injection on a link, a feature for test harnesses (as nbdkit's delay and error filters
// are for NBD). Faults are set per link and per direction ("out": frames this controller sends,
// "in": frames it receives) and apply to whatever connection the link has now or later:
//
//   delayMs, jitterMs         each frame is held delayMs + uniform(-jitterMs, +jitterMs), never
//                             less than 0, and never released before the frame ahead of it
//                             (order is kept: a link delivers in order or not at all);
//   bandwidthBytesPerSecond   frames leave no faster than this (a serial pipe: a frame occupies
//                             it for byteLength / rate);
//   partitioned               frames are discarded, as a cut cable would; the connection is
//                             marked black-holed, so heartbeats stop and the other side declares
//                             the peer dead after its timeout. A black-holed connection is never
//                             reused: healing drops it and the link reconnects. A partition in
//                             both directions also stops dialing and refuses inbound connections
//                             from that peer, until it is lifted: by heal(), or by setFaults
//                             clearing it in either direction (the link then dials again).
//
// "drop" is not a standing fault but an action: the link closes its connection now and
// reconnects as after any failure. A FaultStage is one direction of one connection: a queue of
// frames with release times on the injected clock.

import type { Clock, TimerHandle } from '../runtime/clock';
import type { Random } from '../runtime/random';
import { LinkError } from './errors';

/** Faults in force in one direction. */
export interface DirectionFaults {
  /** @default 0 */
  delayMs: number;
  /** @default 0 */
  jitterMs: number;
  /** 0 means no cap. @default 0 */
  bandwidthBytesPerSecond: number;
  /** @default false */
  partitioned: boolean;
}

/** The faults of a link. */
export interface LinkFaults {
  in: DirectionFaults;
  out: DirectionFaults;
}

/** A change of faults, as the API, the admin endpoint and the command give it. */
export interface FaultSettings {
  delayMs?: number;
  jitterMs?: number;
  bandwidthBytesPerSecond?: number;
  partition?: boolean;
  /** Drop the current connection now. @default false */
  drop?: boolean;
  /** @default 'both' */
  direction?: 'in' | 'out' | 'both';
}

/** The largest delay or jitter accepted: one hour. */
export const MAX_FAULT_DELAY_MS = 3_600_000;

export function noFaults(): DirectionFaults {
  return { delayMs: 0, jitterMs: 0, bandwidthBytesPerSecond: 0, partitioned: false };
}

/** True when a direction has any fault in force. */
export function hasFaults(faults: DirectionFaults): boolean {
  return faults.delayMs > 0 || faults.jitterMs > 0 || faults.bandwidthBytesPerSecond > 0 || faults.partitioned;
}

/** Checks fault settings from a caller or the network (admin API); throws ERR_LINK_BAD_FAULT. */
export function checkFaultSettings(settings: FaultSettings): void {
  const bad = (message: string): never => {
    throw new LinkError('ERR_LINK_BAD_FAULT', message);
  };
  if (settings === null || typeof settings !== 'object') bad('fault settings must be an object');
  for (const key of Object.keys(settings)) {
    if (!['delayMs', 'jitterMs', 'bandwidthBytesPerSecond', 'partition', 'drop', 'direction'].includes(key)) {
      bad(`unknown fault setting "${key}"`);
    }
  }
  for (const key of ['delayMs', 'jitterMs'] as const) {
    const value = settings[key];
    if (value !== undefined && (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > MAX_FAULT_DELAY_MS)) {
      bad(`${key} must be a number from 0 to ${MAX_FAULT_DELAY_MS}, got ${String(value)}`);
    }
  }
  const rate = settings.bandwidthBytesPerSecond;
  if (rate !== undefined && (typeof rate !== 'number' || !Number.isSafeInteger(rate) || rate < 0)) {
    bad(`bandwidthBytesPerSecond must be a non-negative integer (0: no cap), got ${String(rate)}`);
  }
  for (const key of ['partition', 'drop'] as const) {
    if (settings[key] !== undefined && typeof settings[key] !== 'boolean') bad(`${key} must be true or false`);
  }
  if (settings.direction !== undefined && !['in', 'out', 'both'].includes(settings.direction)) {
    bad(`direction must be "in", "out" or "both", got ${JSON.stringify(settings.direction)}`);
  }
}

/** Applies settings to the faults of the chosen directions (drop is the caller's). */
export function applyFaultSettings(faults: LinkFaults, settings: FaultSettings): void {
  const directions = settings.direction === 'in' ? [faults.in] : settings.direction === 'out' ? [faults.out] : [faults.in, faults.out];
  for (const direction of directions) {
    if (settings.delayMs !== undefined) direction.delayMs = settings.delayMs;
    if (settings.jitterMs !== undefined) direction.jitterMs = settings.jitterMs;
    if (settings.bandwidthBytesPerSecond !== undefined) direction.bandwidthBytesPerSecond = settings.bandwidthBytesPerSecond;
    if (settings.partition !== undefined) direction.partitioned = settings.partition;
  }
}

/**
 * One direction of one connection: passes items straight through when no fault is in force,
 * else holds them until their release time, in order. Partitioned: discards, and reports it.
 */
export class FaultStage<T extends { byteLength: number }> {
  private readonly queue: { item: T; releaseAtMs: number }[] = [];
  private timer: TimerHandle | undefined;
  private lastReleaseMs = 0;
  private pipeFreeAtMs = 0;
  private stopped = false;
  /** Set once an item was discarded by a partition: the stream is broken for good. */
  blackHoled = false;
  discardedCount = 0;

  constructor(
    private readonly faults: () => DirectionFaults,
    private readonly clock: Clock,
    private readonly random: Random,
    private readonly release: (item: T) => void,
    /** Called for every item discarded (a partition, stop()) instead of released. */
    private readonly discard: (item: T) => void = () => undefined,
  ) {}

  /** Items held, not yet released. */
  get heldCount(): number {
    return this.queue.length;
  }

  /** True when push() would hold an item rather than release it at once. */
  wouldHold(): boolean {
    return !this.stopped && (this.queue.length > 0 || hasFaults(this.faults()));
  }

  push(item: T): void {
    if (this.stopped) {
      this.discard(item);
      return;
    }
    const faults = this.faults();
    if (faults.partitioned || this.blackHoled) {
      this.blackHoled = true;
      this.discardedCount++;
      this.discard(item);
      return;
    }
    if (!hasFaults(faults) && this.queue.length === 0) {
      this.release(item);
      return;
    }
    const now = this.clock.nowMs();
    let releaseAtMs = now + faults.delayMs;
    if (faults.jitterMs > 0) releaseAtMs += (this.random.next() * 2 - 1) * faults.jitterMs;
    if (faults.bandwidthBytesPerSecond > 0) {
      const start = Math.max(now, this.pipeFreeAtMs);
      this.pipeFreeAtMs = start + (item.byteLength * 1000) / faults.bandwidthBytesPerSecond;
      releaseAtMs = Math.max(releaseAtMs, this.pipeFreeAtMs);
    }
    releaseAtMs = Math.max(releaseAtMs, now, this.lastReleaseMs);
    this.lastReleaseMs = releaseAtMs;
    this.queue.push({ item, releaseAtMs });
    this.arm();
  }

  private arm(): void {
    if (this.timer !== undefined || this.queue.length === 0 || this.stopped) return;
    const head = this.queue[0] as { releaseAtMs: number };
    this.timer = this.clock.setTimer(() => {
      this.timer = undefined;
      this.flushDue();
    }, Math.max(0, head.releaseAtMs - this.clock.nowMs()), { unref: true });
  }

  private flushDue(): void {
    const now = this.clock.nowMs();
    while (this.queue.length > 0 && !this.stopped) {
      const head = this.queue[0] as { item: T; releaseAtMs: number };
      if (head.releaseAtMs > now) break;
      this.queue.shift();
      // Once one item was discarded, every later one is too, even if the partition has been
      // lifted since: releasing them would leave a gap that nothing downstream notices (the
      // incoming stage runs after the decoder's sequence check) and the peer's acknowledgement of
      // a later frame would confirm the lost ones.
      if (this.blackHoled || this.faults().partitioned) {
        this.blackHoled = true;
        this.discardedCount++;
        this.discard(head.item);
        continue;
      }
      this.release(head.item);
    }
    this.arm();
  }

  /** Releases everything held now, in order, ignoring delays (a partition still discards). */
  releaseAll(): void {
    this.timer?.cancel();
    this.timer = undefined;
    while (this.queue.length > 0 && !this.stopped) {
      const head = this.queue.shift() as { item: T };
      if (this.blackHoled || this.faults().partitioned) {
        this.blackHoled = true;
        this.discardedCount++;
        this.discard(head.item);
        continue;
      }
      this.release(head.item);
    }
  }

  /** Discards what is held and stops. */
  stop(): void {
    this.stopped = true;
    const held = this.queue.splice(0);
    for (const entry of held) this.discard(entry.item);
    this.timer?.cancel();
    this.timer = undefined;
  }
}
