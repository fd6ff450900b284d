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
  timer: TimerHandle | undefined;
  resolve(result: LockstepResult): void;
  reject(error: Error): void;
}

/** How long a refused marker append waits before it is tried again. */
const MARKER_RETRY_MS = 10;

/** The lockstep barrier of one controller. */
export class Lockstep {
  private enabledValue = true;
  private wave: Caller[] | null = null;
  private queue: Caller[] = [];
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
    const named = target.pairs === undefined && target.volumes === undefined && target.journals === undefined;
    if (named) return all;
    const pairs = new Set(target.pairs ?? []);
    const volumes = new Set([...(target.volumes ?? []), ...(target.journals ?? [])]);
    return all.filter((member) => pairs.has(member.pair.name) || volumes.has(member.volume));
  }

  /** One lockstep call; see the note at the top. */
  lockstep(target: LockstepTarget = {}): Promise<LockstepResult> {
    if (typeof target !== 'object' || target === null) throw new TypeError('target must be an object');
    for (const key of ['pairs', 'volumes', 'journals'] as const) {
      const list = target[key];
      if (list !== undefined && (!Array.isArray(list) || list.some((entry) => typeof entry !== 'string'))) throw new TypeError(`target.${key} must be an array of names`);
    }
    if (target.timeoutMs !== undefined && (!Number.isFinite(target.timeoutMs) || target.timeoutMs < 0)) {
      throw new RangeError(`target.timeoutMs must be a finite number >= 0, got ${String(target.timeoutMs)}`);
    }
    if (!this.enabledValue) return Promise.resolve('disabled');
    const members = this.resolveTarget(target);
    if (members.length === 0 || this.closed) return Promise.resolve('not-done');
    this.callers++;
    return new Promise<LockstepResult>((resolve, reject) => {
      const caller: Caller = { members, arrivedAtMs: this.clock.nowMs(), settled: false, timer: undefined, resolve, reject };
      if (target.timeoutMs !== undefined) {
        caller.timer = this.clock.setTimer(() => {
          this.settle(caller, new BlockmirrorError('ERR_LOCKSTEP_TIMEOUT',
            `lockstep: the marker was not safe-stored on every receiver within ${target.timeoutMs} ms`));
        }, target.timeoutMs, { unref: true });
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
    if (this.wave !== null && this.wave.every((entry) => entry.settled)) {
      this.lastWaveCallers = this.wave.length;
      this.wave = null;
      if (this.queue.length > 0) this.startWave();
    }
  }

  /** Starts a wave with every queued caller: one marker per journal they protect. */
  private startWave(): void {
    const wave = this.queue.filter((caller) => !caller.settled);
    this.queue = [];
    if (wave.length === 0) return;
    this.wave = wave;
    this.waves++;
    const journals = new Map<Journal, LockstepMember[]>();
    for (const caller of wave) {
      for (const member of caller.members) {
        const list = journals.get(member.journal) ?? [];
        if (!list.includes(member)) list.push(member);
        journals.set(member.journal, list);
      }
    }
    const markers = new Map<Journal, Promise<number | null>>();
    for (const [journal, members] of journals) markers.set(journal, this.appendMarker(journal, members));
    // One safe-store wait per pair and wave, shared by the wave's callers (a pair has one marker
    // per wave): 64 callers are one wait, not 64 sets of listeners on the pair.
    const stores = new Map<LockstepMember['pair'], Promise<void>>();
    for (const caller of wave) void this.runCaller(caller, markers, stores);
  }

  /** Appends a marker, retrying while the journal is full; null when the journal is gone. */
  private async appendMarker(journal: Journal, members: LockstepMember[]): Promise<number | null> {
    for (;;) {
      if (this.closed || journal.closed) return null;
      let sequence: number;
      try {
        sequence = journal.append({ kind: 'marker', byteOffset: 0 });
      } catch (error) {
        this.log.warn({ err: String(error) }, 'lockstep: a marker append failed');
        return null;
      }
      if (sequence > 0) {
        this.markersIssued++;
        for (const member of members) member.notify(sequence);
        return sequence;
      }
      // Full: the pairs suspend with journal-full and resync; a new marker goes in once there is room.
      await new Promise<void>((resolve) => this.clock.setTimer(resolve, MARKER_RETRY_MS, { unref: true }));
    }
  }

  private async runCaller(caller: Caller, markers: Map<Journal, Promise<number | null>>, stores: Map<LockstepMember['pair'], Promise<void>>): Promise<void> {
    try {
      const waits = caller.members.map(async (member) => {
        const marker = await markers.get(member.journal);
        if (marker === null || marker === undefined) return false;
        let store = stores.get(member.pair);
        if (store === undefined) {
          store = member.pair.safeStore(marker);
          stores.set(member.pair, store);
        }
        await store;
        return true;
      });
      const results = await Promise.all(waits);
      this.settle(caller, results.every(Boolean) ? 'done' : 'not-done');
    } catch (error) {
      // A pair closed under the call (deleted, demoted, the controller stopping).
      this.log.warn({ err: String(error) }, 'lockstep: a receiver went away');
      this.settle(caller, 'not-done');
    }
  }

  status(): Record<string, unknown> {
    return {
      enabled: this.enabledValue,
      markersIssued: this.markersIssued,
      callers: this.callers,
      waves: this.waves,
      inFlight: this.wave?.length ?? 0,
      queued: this.queue.length,
      lastWaveCallers: this.lastWaveCallers,
      latency: this.latency.toJSON(),
    };
  }

  /** Stops: callers still waiting get 'not-done'. */
  close(): void {
    this.closed = true;
    const pending = [...(this.wave ?? []), ...this.queue];
    this.queue = [];
    for (const caller of pending) this.settle(caller, 'not-done');
  }
}
