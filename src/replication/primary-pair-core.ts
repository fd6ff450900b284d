// Notes on the design
// -------------------
// The state of the primary side of a pair (primary-pair.ts; what it is and why it is correct is
// in primary-pair.ts's notes) and what every layer above changes it with: the positions the
// secondary reported, the waiters of sync writes, the stream hold of a resume, the one setter
// of the pair's state (checked against PAIR_TRANSITIONS, logged `old -> new`, an event) and its
// stuck detector, the link's events, and the ways out of shipping (suspend, split brain). The
// primary side is a stack of classes, each in its own file and each adding one concern to the
// one below: PrimaryPairCore (this file: the state and its transitions) <- PrimaryPairShipping
// (primary-pair-shipping.ts: host writes, the pump, positions, ack points) <- PrimaryPairPasses
// (primary-pair-passes.ts: the open and the copy or resync pass) <- PrimaryPair (primary-pair.ts:
// the consistency group's cut, the operator's and handover's verbs, status, close). They share
// this state as protected members (private where one layer alone uses it); the fields are set
// here, at construction, and changed by the layers above.
//
// Invariants: every state change goes through setState(), which also drops the stream hold in
// any state but mirroring or a suspension that keeps it; a waiter is settled once (by the
// secondary's position, a suspension or split brain, or close), never after a crash.
//
// Errors: the constructor throws RangeError on a bad journalHold; an invalid transition is a
// broken invariant and throws Error; a suspension never throws (sync writes of a 'data' fence
// are rejected with ERR_PAIR_FENCED).

import { EventEmitter } from 'node:events';

import type { Clock, TimerHandle } from '../runtime/clock';
import type { Random } from '../runtime/random';
import type { Journal } from '../storage/journal';
import type { Volume } from '../storage/volume';
import type { Link, LinkLogger, LinkStateEvent } from '../transport/link';
import { SendPool } from '../transport/send-pool';
import type { DecisionResult, Generations } from './generations';
import { type PairMode, MAX_RECORDS_PREFIX_BYTES, RECORD_HEADER_BYTES } from './messages';
import type { PairMeta } from './pair-meta';
import { PairError, type PairState, type SuspendReason, isPairTransition } from './pair-state';
import type { Tracking } from './tracking';
import { CutFence } from './cut-fence';
import { type PrimaryPairOptions, type GroupStream, type PairStateEvent, type Waiter, MAX_PUMP_RECORDS } from './primary-pair-options';

/** The state of the primary side of a pair (see the notes above); PrimaryPair (primary-pair.ts) is the class others use. */
export abstract class PrimaryPairCore extends EventEmitter {
  readonly name: string;
  readonly mode: PairMode;
  readonly fence: 'never' | 'data';
  protected readonly autoResume: boolean;
  protected readonly maxBatchBytes: number;
  protected readonly sendPool: SendPool;
  private readonly stuckAfterMs: number;
  protected state: PairState = 'simplex';
  protected reason: string;
  protected detail: string | undefined;
  protected sinceMs: number;
  protected everMirrored = false;
  protected readonly rotateIntervalMs: number;
  protected lastRotateMs = -Infinity;
  protected peerGenerations: Generations | undefined;
  protected lastDecision: DecisionResult | undefined;
  protected readonly mutation: 'skip-track' | undefined;
  protected mutationCounter = 0;
  /** Set while the pair hands its role over: host writes are refused. */
  handingOver = false;
  /** The next journal sequence to ship while mirroring. */
  protected nextToShip = 1;
  /**
   * The pump checks the journal's copies against their CRCs through this sequence: the records
   * the journal held when the stream last (re)started (a resume after a link loss or a restart).
   * Later ones are sent unchecked: the frame's CRC is combined from the CRCs they were appended
   * with, so the secondary checks them end to end; and if it refuses a damaged one, the link
   * drops, the stream resumes, and this check finds it here (the pair suspends, then resyncs).
   */
  protected verifyThrough = 0;
  protected received = 0;
  protected applied = 0;
  protected flushed = 0;
  protected waiters: Waiter[] = [];
  protected passGeneration = 0;
  /** A PAIR_RESYNC_DONE not yet answered: the next open waits for it (the peer may adopt its ids). */
  protected resyncDoneInFlight: Promise<unknown> | undefined;
  protected progress = { doneBytes: 0, totalBytes: 0, startedAtMs: 0, lastProgressAtMs: 0 };
  protected stuckTimer: TimerHandle | undefined;
  protected stuckReported = false;
  protected closed = false;
  shippedBytes = 0;
  resyncedBytes = 0;
  /**
   * The first journal sequence at which the secondary's image is the primary's at that sequence
   * (set when a pass completes: tracks read during a pass may hold writes up to the journal's end
   * then). A consistency group's cut before it gives no consistent copy.
   */
  protected consistentFrom = Infinity;
  /** A consistency group's fence: nothing after `through` ships until the cut is sent or lifted. */
  /** A consistency group's fence on the stream (cut-fence.ts). */
  protected readonly cutFence: CutFence;
  /**
   * The journal keeps its records from this sequence on, so that the ordered stream may resume
   * there (undefined: no resume is possible): a restarted primary's kept journal from its head
   * (options.journalResumable), or every record after the secondary's position at a link loss
   * while mirroring. Dropped when the stream breaks (a pass, a full journal, any other
   * suspension) or when the journal is fuller than `journalHold` allows.
   */
  protected streamHold: number | undefined;
  /** The journal's full count when the hold began: a write since then that found it full is in no record. */
  protected holdFullCount = 0;
  /**
   * Set while an open that asks for a resume is in flight: the hold stays until the answer (the
   * secondary may already continue from its position), and why it should go is kept here.
   */
  protected askingResume = false;
  protected holdDropPending: string | undefined;
  /** Most of the journal's ring a hold may keep (a fraction of its capacity). */
  protected readonly journalHold: number;
  /** Streams resumed from the journal (no pass). */
  resumedCount = 0;

  constructor(
    options: PrimaryPairOptions,
    protected readonly volume: Volume,
    protected readonly journal: Journal,
    protected readonly link: Link,
    protected readonly clock: Clock,
    protected readonly log: LinkLogger,
    readonly meta: PairMeta,
    readonly tracking: Tracking,
    protected readonly random: Random,
  ) {
    super();
    this.name = options.name;
    this.nameBytes = Buffer.from(options.name, 'utf8');
    this.mode = options.mode;
    this.fence = options.fence ?? 'never';
    this.autoResume = options.autoResume ?? true;
    this.maxBatchBytes = options.maxBatchBytes ?? 1024 * 1024;
    // Large enough for any readPacked of the pump: every pair of this batch size shares it.
    this.sendPool = SendPool.shared(MAX_RECORDS_PREFIX_BYTES + this.maxBatchBytes + RECORD_HEADER_BYTES * MAX_PUMP_RECORDS);
    this.stuckAfterMs = options.stuckAfterMs ?? 30_000;
    this.rotateIntervalMs = options.rotateIntervalMs ?? 50;
    // The journal (in memory) numbers from 1 again in every process: nothing older is known.
    this.trackedSince = 0;
    this.reason = options.initialReason ?? 'declared';
    this.mutation = options.mutation;
    this.group = options.group;
    this.sinceMs = clock.nowMs();
    this.volumeName = options.volumeName;
    this.remoteVolume = options.remoteVolume;
    this.journalHold = options.journalHold ?? 0.75;
    this.cutFence = new CutFence({ name: options.name, link, schedulePump: () => this.schedulePump() });
    if (!(this.journalHold >= 0 && this.journalHold <= 1)) throw new RangeError(`pair ${options.name}: journalHold must be a fraction from 0 to 1, not ${String(options.journalHold)}`);
    if (options.journalResumable === true && meta.state.streaming && this.journalHold > 0) {
      this.holdStream(journal.headSequence);
    }
    tracking.setRecording(true);
    link.on('state', this.onLinkState);
    link.on('drain', this.onDrain);
  }

  readonly volumeName: string;
  readonly remoteVolume: string;
  protected readonly group: GroupStream | undefined;

  /** The pair's name as PAIR_RECORDS carries it (encoded once). */
  protected readonly nameBytes: Buffer;

  /**
   * The first journal sequence whose write the tracking may hold (0: not known). Every track it
   * holds was written at or after it, so while mirroring or suspended by a link the OOS is at
   * most the tracks of the records from there to the journal's end: about the in-flight window.
   */
  protected trackedSince: number;

  /** Whether the current suspension began while mirroring (not during a copy or resync pass). */
  protected suspendedFromMirroring = false;

  get currentState(): PairState {
    return this.state;
  }

  /** What status() reports as state, link, peer and sinceMs, without formatting the rest (the simulator's per-step check). */
  get brief(): { state: PairState; link: string; peer: string; sinceMs: number } {
    return { state: this.state, link: this.link.currentState, peer: this.link.peerId, sinceMs: Math.round(this.clock.nowMs() - this.sinceMs) };
  }

  /** Journal records not yet applied on the secondary: status().lag.records without the rest of status(). */
  get lagRecords(): number {
    return Math.max(0, this.journal.nextSequence - 1 - this.applied);
  }

  /** The lowest journal sequence this pair still needs (Infinity when it needs none). */
  get neededSequence(): number {
    const shipping = this.state === 'mirroring' || this.state === 'copying' || this.state === 'resyncing'
      ? Math.min(this.nextToShip, this.applied + 1)
      : Infinity;
    return this.streamHold === undefined ? shipping : Math.min(this.streamHold, shipping);
  }

  /** The journal keeps its records from `from` on for a resume (see streamHold). */
  private holdStream(from: number): void {
    this.streamHold = from;
    this.holdFullCount = this.journal.stats().fullCount;
  }

  /** Whether a resume may be asked: a hold, and no write found the journal full since it began (that write is in no record). */
  protected get holdIntact(): boolean {
    return this.streamHold !== undefined && this.journal.stats().fullCount === this.holdFullCount;
  }

  /** The stream cannot resume any more: the journal may release the held records. */
  protected dropHold(why: string): void {
    if (this.streamHold === undefined) return;
    if (this.askingResume) {
      // The secondary may be continuing from its position already: the records stay until it
      // answers (resumeStream finds a full journal by the full count; a fill is mirroring's).
      this.holdDropPending ??= why;
      return;
    }
    this.streamHold = undefined;
    if (this.meta.state.streaming && this.state !== 'mirroring') this.meta.update({ streaming: false });
    this.log.warn({ pair: this.name, state: this.state }, `pair ${this.name}: the journal no longer holds the records for a resume (${why}); the pair will resync from its OOS bitmap`);
    this.emit('released');
    // A journal group's stream may have waited for this member's resume (awaitingResume).
    this.group?.schedulePump();
  }

  /**
   * A journal group member that will ask to resume from its hold (suspended by a link loss, or
   * restarted, with its records kept): the group's stream waits for it, so that the members that
   * resume first do not run ahead of it on the secondary (journal-group.ts).
   */
  get awaitingResume(): boolean {
    return !this.closed && (this.state === 'suspended' || this.state === 'simplex') && this.holdIntact;
  }

  /** The answer to an open came: a drop asked meanwhile happens now, unless the stream resumes. */
  protected endResumeAsk(resumed: boolean): void {
    if (!this.askingResume) return;
    this.askingResume = false;
    const why = this.holdDropPending;
    this.holdDropPending = undefined;
    if (why !== undefined && !resumed) this.dropHold(why);
  }

  /** A hold may keep at most `journalHold` of the journal's ring (other pairs of the volume need room too). */
  protected checkHoldFill(): void {
    const stats = this.journal.stats();
    if (stats.usedBytes > this.journalHold * stats.capacityBytes) {
      this.dropHold(`the journal is ${Math.round((100 * stats.usedBytes) / stats.capacityBytes)} % full, over the hold's ${Math.round(100 * this.journalHold)} %`);
    }
  }

  protected setState(next: PairState, reason: string, detail?: string): void {
    const old = this.state;
    // suspended -> suspended: the reason changes (a resume answered wrongly), not in the table.
    if (!isPairTransition(old, next) && !(old === 'suspended' && next === 'suspended')) throw new Error(`pair ${this.name}: invalid transition ${old} -> ${next}`);
    this.state = next;
    this.reason = reason;
    this.detail = detail;
    if (old === 'mirroring' && next !== 'mirroring') this.cutFence.drop(`pair ${this.name} is ${next} (${reason})`);
    // Mirroring, or suspended while the journal holds every record after the secondary's
    // position: the ordered stream is unbroken from there (a restart may resume it); anything
    // else breaks it.
    const streaming = next === 'mirroring' || (next === 'suspended' && this.streamHold !== undefined);
    if (!streaming) this.streamHold = undefined;
    if (this.meta.state.streaming !== streaming) this.meta.update({ streaming });
    this.sinceMs = this.clock.nowMs();
    this.log[next === 'suspended' ? 'warn' : 'info']({ pair: this.name, old, new: next, reason, detail },
      `pair ${this.name}: ${old} -> ${next} (${reason}${detail === undefined ? '' : `: ${detail}`})`);
    const event: PairStateEvent = { name: this.name, old, new: next, reason, timeMs: this.clock.nowMs() };
    if (detail !== undefined) event.detail = detail;
    this.emit('state', event);
    this.armStuckDetector();
  }

  private armStuckDetector(): void {
    this.stuckTimer?.cancel();
    this.stuckTimer = undefined;
    this.stuckReported = false;
    if (this.state !== 'copying' && this.state !== 'resyncing') return;
    const check = (): void => {
      this.stuckTimer = undefined;
      if (this.state !== 'copying' && this.state !== 'resyncing') return;
      const idleMs = this.clock.nowMs() - this.progress.lastProgressAtMs;
      if (idleMs >= this.stuckAfterMs && !this.stuckReported) {
        this.stuckReported = true;
        this.log.warn({ pair: this.name, state: this.state, idleMs }, `pair ${this.name}: stuck in ${this.state} (no progress for ${Math.round(idleMs)} ms)`);
        this.emit('stuck', { name: this.name, state: this.state, idleMs });
      }
      this.stuckTimer = this.clock.setTimer(check, this.stuckAfterMs, { unref: true });
    };
    this.stuckTimer = this.clock.setTimer(check, this.stuckAfterMs, { unref: true });
  }

  protected readonly onLinkState = (event: LinkStateEvent): void => {
    if (this.closed) return;
    if (event.new === 'up') {
      // A suspension the link or the journal caused resumes by itself; an operator's or a
      // secondary's refusal waits for `resume`.
      // A split brain is looked at again (an operator may have resolved it on the other side).
      const resumable = this.reason === 'link-down' || this.reason === 'journal-full';
      if (this.state === 'simplex' || this.state === 'split-brain' || (this.state === 'suspended' && this.autoResume && resumable)) this.runOpen();
    } else if (event.old === 'up') {
      this.suspend('link-down', `link ${event.reason}`);
    }
  };

  protected readonly onDrain = (): void => {
    if (this.state === 'mirroring') this.schedulePump();
    this.drainWaiter?.();
  };

  protected drainWaiter: (() => void) | undefined;

  protected waitDrain(): Promise<void> {
    return new Promise((resolve) => {
      this.drainWaiter = () => {
        this.drainWaiter = undefined;
        resolve();
      };
    });
  }

  /** Ships what the journal holds now (primary-pair-shipping.ts). */
  protected abstract schedulePump(): void;

  /** Opens the pair, a failure logged (primary-pair-passes.ts). */
  protected abstract runOpen(): void;

  /** Suspends (idempotent); an operator's suspension waits for resume(). */
  suspend(reason: SuspendReason, detail?: string): void {
    if (this.closed || this.state === 'suspended' || this.state === 'split-brain') return;
    this.passGeneration++;
    this.suspendedFromMirroring = this.state === 'mirroring';
    // The peer may keep this generation (or take over from it): the next write here starts a
    // new one.
    if (this.meta.state.generations.current !== 0 && !this.meta.state.newGeneration) this.meta.update({ newGeneration: true });
    // The full journal let writes through unjournaled (tracked only): before the state event.
    if (reason === 'journal-full') this.trackedSince = 0;
    // A link loss keeps the journal's records after the secondary's position (a hold), so that
    // the stream resumes from there when the link is back, with no pass; a restart's hold stays
    // across a link loss during its open. Any other suspension breaks the stream.
    if (reason === 'link-down' && this.journalHold > 0) {
      if (this.state === 'mirroring') this.holdStream(this.applied + 1);
    } else {
      this.streamHold = undefined;
    }
    this.setState('suspended', reason, detail);
    this.releaseWaiters(reason);
    this.emit('released');
    if (reason === 'journal-full' && this.autoResume) {
      // The journal is released (OOS covers everything); resume as soon as it has room.
      this.clock.setTimer(() => {
        if (this.state === 'suspended' && this.reason === 'journal-full' && this.link.isUp) this.runOpen();
      }, 10, { unref: true });
    }
  }

  private releaseWaiters(reason: string): void {
    this.drainWaiter?.();
    const waiters = this.waiters;
    this.waiters = [];
    for (const waiter of waiters) {
      if (this.fence === 'data') waiter.reject(new PairError('ERR_PAIR_FENCED', `pair ${this.name} ${reason} before the secondary applied the write`));
      else waiter.resolve();
    }
  }

  /** The generations say both sides changed: nothing is shipped until `resolve`. */
  enterSplitBrain(detail: string): void {
    if (this.closed || this.state === 'split-brain') return;
    this.passGeneration++;
    if (this.meta.state.generations.current !== 0 && !this.meta.state.newGeneration) this.meta.update({ newGeneration: true });
    this.releaseWaiters('split brain');
    this.setState('split-brain', 'generations', detail);
  }

  /** The secondary refused something: stop, and wait for an operator. */
  onSecondaryError(code: string, message: string): void {
    this.suspend('secondary-error', `${code}: ${message}`);
  }
}
