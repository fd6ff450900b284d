// Notes on the design
// -------------------
// The lockstep barrier (seed 000, after NonStop RDF's lockstep call): an application that ships
// asynchronously asks "tell me when everything I wrote so far is safe on the remote side".
//
//   lockstep({ pairs | volumes | journals, timeoutMs? }) -> 'done' | 'not-done' | 'disabled'
//
// - Nothing replicated for the target (no primary pair of it here): 'not-done' at once.
// - Disabled by the operator: 'disabled' at once, and no marker is written.
// - Otherwise one marker record goes into every protected journal, after every write
//   acknowledged before the call (the journal is in write order), and the call is 'done' once
//   every receiver has safe-stored (applied and flushed) through its marker, inclusive. No lock
//   is taken: other writers go on; what they write after the call carries no guarantee.
// - One marker in flight: callers that arrive while a wave of markers is in flight wait for the
//   next wave, started when the current one has released every caller; so markers issued are at
//   most the number of arrival waves, and every caller is released exactly once.
// - A link that is down makes the call wait (a resync brings the receiver past the marker);
//   with timeoutMs the call fails with ERR_LOCKSTEP_TIMEOUT instead.
// - A marker append the journal refuses for a retryable reason (full) is retried with a new
//   marker, transparently; a fatal failure (the journal closed) is 'not-done'.
//
// - The hot path is one call after another (bench/lockstep.bench.ts): per wave one Wave record
//   with its pairs in small parallel arrays (a scan, no Map or Set: a wave protects a few pairs),
//   one safe-store wait per distinct pair, and the callers settled straight from its outcome (no
//   Promise.all or async closure per caller); the queue's array is reused from wave to wave.
//   Garbage per call is what young-generation scavenges are made of, and they are most of the
//   call's p99.9 (docs/lockstep.md).
//
// RDF's result numbers are kept beside the names (LOCKSTEP_RESULT_NUMBERS).

import { BlockmirrorError } from '../errors';
import type { Clock, TimerHandle } from '../runtime/clock';
import type { Journal } from '../storage/journal';
import type { LinkLogger } from '../transport/link';
import { LatencyHistogram } from './pair-volume';
import type { PrimaryPair } from './primary-pair';

export type LockstepResult = 'done' | 'not-done' | 'disabled';

/** NonStop RDF's numbers for the results. */
export const LOCKSTEP_RESULT_NUMBERS: Readonly<Record<LockstepResult, number>> = Object.freeze({
  done: 31428,
  'not-done': 31426,
  disabled: 31429,
});

/** What a lockstep call protects: pair names, volume names, or journals (by volume name). */
export interface LockstepTarget {
  pairs?: readonly string[];
  volumes?: readonly string[];
  journals?: readonly string[];
  /** Give up after this long with ERR_LOCKSTEP_TIMEOUT. @default no limit */
  timeoutMs?: number;
}

/** A primary pair as the barrier sees it. */
export interface LockstepMember {
  pair: PrimaryPair;
  /** The primary volume's name (the journal is named after it). */
  volume: string;
  journal: Journal;
  /** Tells the volume's pairs that the journal grew (ship the marker now). */
  notify(sequence: number): void;
}

interface Caller {
  members: LockstepMember[];
  arrivedAtMs: number;
  settled: boolean;
  /** The wave the caller is counted in (undefined while it is queued). */
  wave: Wave | undefined;
  timer: TimerHandle | undefined;
  resolve(result: LockstepResult): void;
  reject(error: Error): void;
}

/** What a pair's safe-store wait came to in a wave. */
const enum Stored {
  Pending = 0,
  Done = 1,
  Failed = 2,
}

/**
 * One wave of markers: its callers and, per distinct pair they protect, the pair's journal, one
 * member to notify and what its safe-store wait came to (parallel arrays, a few entries).
 */
interface Wave {
  callers: Caller[];
  /** Callers of the wave not settled yet; the wave ends at 0. */
  unsettled: number;
  pairs: PrimaryPair[];
  members: LockstepMember[];
  stored: Stored[];
  ended: boolean;
}

/** How long a refused marker append waits before it is tried again. */
const MARKER_RETRY_MS = 10;

const TARGET_LISTS = Object.freeze(['pairs', 'volumes', 'journals'] as const);

function isNameList(list: unknown): boolean {
  if (!Array.isArray(list)) return false;
  for (let index = 0; index < list.length; index++) if (typeof list[index] !== 'string') return false;
  return true;
}

/** The lockstep barrier of one controller. */
export class Lockstep {
  private enabledValue = true;
  private wave: Wave | null = null;
  private queue: Caller[] = [];
  /** The array of the last wave's callers, kept as the next queue (no allocation per wave). */
  private spareQueue: Caller[] = [];
  private closed = false;
  markersIssued = 0;
  callers = 0;
  waves = 0;
  readonly latency = new LatencyHistogram();
  /** Callers released by the last wave. */
  lastWaveCallers = 0;

  constructor(
    private readonly members: () => LockstepMember[],
    private readonly clock: Clock,
    private readonly log: LinkLogger,
  ) {}

  get enabled(): boolean {
    return this.enabledValue;
  }

  /** The operator switch (`blockmirror lockstep enable|disable`). */
  setEnabled(enabled: boolean): void {
    if (typeof enabled !== 'boolean') throw new TypeError('enabled must be a boolean');
    if (enabled !== this.enabledValue) this.log.info({ enabled }, `lockstep ${enabled ? 'enabled' : 'disabled'} by the operator`);
    this.enabledValue = enabled;
  }

  /** The primary pairs `target` names (an unknown name protects nothing). */
  private resolveTarget(target: LockstepTarget): LockstepMember[] {
    const all = this.members();
    const { pairs, volumes, journals } = target;
    if (pairs === undefined && volumes === undefined && journals === undefined) return all;
    // The lists are a name or a few: a scan, no sets per call.
    const named: LockstepMember[] = [];
    for (const member of all) {
      if (pairs?.includes(member.pair.name) === true || volumes?.includes(member.volume) === true || journals?.includes(member.volume) === true) named.push(member);
    }
    return named;
  }

  /** One lockstep call; see the note at the top. */
  lockstep(target: LockstepTarget = {}): Promise<LockstepResult> {
    if (typeof target !== 'object' || target === null) throw new TypeError('target must be an object');
    for (const key of TARGET_LISTS) {
      const list = target[key];
      if (list !== undefined && !isNameList(list)) throw new TypeError(`target.${key} must be an array of names`);
    }
    const timeoutMs = target.timeoutMs;
    if (timeoutMs !== undefined && (!Number.isFinite(timeoutMs) || timeoutMs < 0)) {
      throw new RangeError(`target.timeoutMs must be a finite number >= 0, got ${String(timeoutMs)}`);
    }
    if (!this.enabledValue) return Promise.resolve('disabled');
    const members = this.resolveTarget(target);
    if (members.length === 0 || this.closed) return Promise.resolve('not-done');
    this.callers++;
    return new Promise<LockstepResult>((resolve, reject) => {
      const caller: Caller = { members, arrivedAtMs: this.clock.nowMs(), settled: false, wave: undefined, timer: undefined, resolve, reject };
      if (timeoutMs !== undefined) {
        caller.timer = this.clock.setTimer(() => {
          this.settle(caller, new BlockmirrorError('ERR_LOCKSTEP_TIMEOUT',
            `lockstep: the marker was not safe-stored on every receiver within ${timeoutMs} ms`));
        }, timeoutMs, { unref: true });
      }
      this.queue.push(caller);
      if (this.wave === null) this.startWave();
    });
  }

  private settle(caller: Caller, outcome: LockstepResult | Error): void {
    if (caller.settled) return;
    caller.settled = true;
    caller.timer?.cancel();
    if (outcome instanceof Error) {
      caller.reject(outcome);
    } else {
      if (outcome === 'done') this.latency.record((this.clock.nowMs() - caller.arrivedAtMs) / 1000);
      caller.resolve(outcome);
    }
    const wave = caller.wave;
    if (wave === undefined) return; // still queued: startWave leaves it out
    wave.unsettled--;
    if (wave.unsettled > 0 || wave.ended) return;
    wave.ended = true;
    this.lastWaveCallers = wave.callers.length;
    if (this.wave === wave) this.wave = null;
    // The wave's array becomes the next queue's (no caller of it is looked at again).
    wave.callers.length = 0;
    this.spareQueue = wave.callers;
    if (this.wave === null && this.queue.length > 0) this.startWave();
  }

  /**
   * Starts a wave with every queued caller: one marker per journal they protect, and one
   * safe-store wait per pair, shared by the wave's callers (64 callers are one wait, not 64 sets
   * of listeners on the pair).
   */
  private startWave(): void {
    const queued = this.queue;
    this.queue = this.spareQueue;
    this.spareQueue = [];
    const wave: Wave = { callers: queued, unsettled: 0, pairs: [], members: [], stored: [], ended: false };
    // Callers that timed out while queued are settled already: leave them out, in place.
    let kept = 0;
    for (let index = 0; index < queued.length; index++) {
      const caller = queued[index] as Caller;
      if (caller.settled) continue;
      queued[kept++] = caller;
      caller.wave = wave;
      for (const member of caller.members) {
        if (!wave.pairs.includes(member.pair)) {
          wave.pairs.push(member.pair);
          wave.members.push(member);
          wave.stored.push(Stored.Pending);
        }
      }
    }
    queued.length = kept;
    if (kept === 0) {
      this.spareQueue = queued;
      return;
    }
    wave.unsettled = kept;
    this.wave = wave;
    this.waves++;
    // One marker per distinct journal: pairs of one volume share its journal and its marker.
    for (let index = 0; index < wave.members.length; index++) {
      const journal = (wave.members[index] as LockstepMember).journal;
      let first = true;
      for (let before = 0; before < index; before++) {
        if ((wave.members[before] as LockstepMember).journal === journal) first = false;
      }
      if (first) this.appendMarker(wave, journal);
    }
  }

  /**
   * Appends the marker of `journal` for `wave` and starts the safe-store waits of its pairs; a
   * journal that refuses it (full) is tried again, with a new marker, every MARKER_RETRY_MS; a
   * journal that is gone fails its pairs.
   */
  private appendMarker(wave: Wave, journal: Journal): void {
    if (wave.ended) return;
    let sequence = 0;
    if (this.closed || journal.closed) {
      sequence = -1;
    } else {
      try {
        sequence = journal.append({ kind: 'marker', byteOffset: 0 });
      } catch (error) {
        this.log.warn({ err: String(error) }, 'lockstep: a marker append failed');
        sequence = -1;
      }
    }
    if (sequence === 0) {
      // Full: the pairs suspend with journal-full and resync; a new marker goes in once there is room.
      this.clock.setTimer(() => this.appendMarker(wave, journal), MARKER_RETRY_MS, { unref: true });
      return;
    }
    if (sequence > 0) this.markersIssued++;
    for (let index = 0; index < wave.members.length; index++) {
      const member = wave.members[index] as LockstepMember;
      if (member.journal !== journal) continue;
      if (sequence < 0) {
        this.stored(wave, index, Stored.Failed);
        continue;
      }
      member.notify(sequence);
      member.pair.safeStore(sequence).then(() => this.stored(wave, index, Stored.Done), (error: unknown) => {
        // A pair closed under the call (deleted, demoted, the controller stopping).
        this.log.warn({ err: String(error) }, 'lockstep: a receiver went away');
        this.stored(wave, index, Stored.Failed);
      });
    }
  }

  /** Pair `index` of `wave` came to `outcome`: settles every caller of the wave it decides. */
  private stored(wave: Wave, index: number, outcome: Stored): void {
    if (wave.ended) return;
    wave.stored[index] = outcome;
    const pair = wave.pairs[index] as PrimaryPair;
    // settle() may end the wave and hand its array on: stop looking once it has.
    for (let at = 0; at < wave.callers.length && !wave.ended; at++) {
      const caller = wave.callers[at] as Caller;
      if (caller.settled) continue;
      let protects = false;
      let pending = false;
      let failed = false;
      for (const member of caller.members) {
        if (member.pair === pair) protects = true;
        const state = wave.stored[wave.pairs.indexOf(member.pair)];
        if (state === Stored.Failed) failed = true;
        else if (state === Stored.Pending) pending = true;
      }
      if (!protects) continue;
      if (failed) this.settle(caller, 'not-done');
      else if (!pending) this.settle(caller, 'done');
    }
  }

  status(): Record<string, unknown> {
    return {
      enabled: this.enabledValue,
      markersIssued: this.markersIssued,
      callers: this.callers,
      waves: this.waves,
      inFlight: this.wave?.unsettled ?? 0,
      queued: this.queue.length,
      lastWaveCallers: this.lastWaveCallers,
      latency: this.latency.toJSON(),
    };
  }

  /** Stops: callers still waiting get 'not-done'. */
  close(): void {
    this.closed = true;
    const pending = [...(this.wave?.callers ?? []), ...this.queue];
    this.queue = [];
    for (const caller of pending) this.settle(caller, 'not-done');
  }
}
