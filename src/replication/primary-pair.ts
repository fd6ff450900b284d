// Notes on the design
// -------------------
// The primary side of one pair: it ships the journal records of its primary volume to the
// secondary in sequence order, tracks what the secondary received, applied and flushed, and
// when shipping is impossible it suspends and falls back to its out-of-sync (OOS) bitmap, from
// which a resync later sends only the dirty tracks.
//
// Invariant that makes suspend and resync correct: OOS ⊇ every byte written since the last
// instant the secondary had applied everything. The OOS bitmap ("pair:<name>", one bit per
// track) records every write of the volume, always; it is cleared only while mirroring, at an
// instant when the secondary has applied every record the journal holds. Every later write is
// both in the journal (or made the journal full) and marked in OOS. So whenever the ordered
// stream breaks, OOS covers all that the secondary may lack, and the journal records the pair
// still held can be released: the resync will send current data instead.
//
// A copy or resync pass: note J = the journal's next sequence; walk the OOS bits once in address
// order, each bit cleared before its track is read (clear-then-read: a write racing the read
// marks the bit again); send each track; then tell the secondary that ordered records resume at
// J and stream from J. A write during the pass is in the journal from J on (and marked in OOS if
// behind the cursor), so nothing is missed; replaying records from J over tracks copied later
// ends with the latest bytes. The secondary is 'inconsistent' during the pass.
//
// Tracking is two rotating bitmaps (tracking.ts), so that while mirroring it holds about the
// in-flight window, and it survives a SIGKILL with the volume. Generation ids (generations.ts)
// are compared on every open: the secondary answers with the decision (a resync of the tracked
// tracks plus its own dirty ranges, a full copy, or a refusal: split brain, unrelated data, or
// "you must demote": the peer took over and holds the newer generation).
//
// A restart resumes the ordered stream when it can (journal-feed.ts keeps a shared or file
// volume's journal): the pair was mirroring when this side last ran (meta `streaming`: every
// record after the secondary's position is in the journal, and the recovery journaled again
// what reached the store without a record), and the secondary accepts (secondary-pair.ts: same
// generation, a consistent image whose position is exact and in this journal). Then shipping
// continues from the secondary's applied + 1, with no pass: the secondary stays consistent and
// nothing is resynced. The journal holds the records from its head on while the open is asked.
// Otherwise the tracked tracks are resynced as before.
//
// A link loss resumes the same way (DRBD resyncs the whole activity since the disconnect;
// Universal Replicator keeps its journal through an outage, and so do we): a pair that suspends
// with link-down from mirroring keeps a stream hold at applied + 1
// (the journal keeps every record from there on) instead of releasing its records, and the
// meta keeps `streaming`. On the next open it asks for a resume; the secondary accepts the same
// generation (rule 4) or, when this side started a generation while the link was down (the
// first write after the suspension does, DRBD's new current UUID), the bitmap-target rule 5, and
// adopts it; a takeover on the other side meanwhile is still a split brain. The
// hold is given up (logged, event 'released'; the next open resyncs the tracked tracks) when the
// held records pass `journalHold` of the journal's capacity, or a write found the journal full
// since the hold was taken (that write is in no record), or the pair suspends for any other
// reason. A journal group's members hold the group's shared journal each from their own
// position (the group suspends as one, so they all hold) and resume one by one, and the group's
// stream waits until none still awaits its answer (awaitingResume). After a restart they do the
// same when the group's journal is kept (every volume shared or file, journal-feed.ts).
//
// Ack points: an async write completes when stored locally. A sync write completes when the
// secondary reports it applied (waitApplied); while the pair cannot mirror, with fence level
// 'never' it completes at once (the pair is suspended and OOS records it), with 'data' it fails
// with ERR_PAIR_FENCED (EIO to NBD clients): no acknowledged write is ever missing from the
// secondary.
//
// Layout: this module is the PrimaryPair class; its options, the GroupStream and PairStateEvent
// types, KIND_OF, and its private bookkeeping shapes and limits are in primary-pair-options.ts
// (the public names are re-exported here, so importers keep one path); a consistency group's
// fence on the stream is cut-fence.ts.

import { Coalesced, deferOn } from '../runtime/coalesce';
import { EventEmitter } from 'node:events';

import type { Clock, TimerHandle } from '../runtime/clock';
import type { Random } from '../runtime/random';
import type { Journal, JournalRecord } from '../storage/journal';
import type { Volume } from '../storage/volume';
import { isLinkError } from '../transport/errors';
import type { Link, LinkLogger, LinkStateEvent } from '../transport/link';
import { MessageType } from '../transport/message-types';
import { SendPool } from '../transport/send-pool';
import { type DecisionResult, type Generations, completeAsSource, formatGeneration, formatGenerations, newGenerationId, startGeneration } from './generations';
import {
  type PairMode,
  type PairPosition,
  type ShippedRecord,
  type OpenReply,
  decodeOpenReply,
  decodeSequence,
  encodeMarker,
  encodeName,
  encodePairOpen,
  encodeRecords,
  MAX_RECORDS_PREFIX_BYTES,
  packRecords,
  RECORD_HEADER_BYTES,
  recordsPrefixBytes,
  encodeResyncDone,
  encodeTrack,
} from './messages';
import type { PairMeta } from './pair-meta';
import { type Consistency, PairError, type PairState, type SuspendReason, isPairTransition } from './pair-state';
import type { Tracking } from './tracking';
import type { CutReply } from '../cgroup/messages';
import { CutFence } from './cut-fence';
import {
  type PrimaryPairOptions,
  type GroupStream,
  type PairStateEvent,
  type Waiter,
  MAX_WAITER_SPAN,
  UNDECLARED_RETRY_MS,
  MARKER_REPORT_WAIT_MS,
  TIMES_RING,
  KIND_OF,
} from './primary-pair-options';

export type { PrimaryPairOptions, GroupStream, PairStateEvent } from './primary-pair-options';
export { KIND_OF } from './primary-pair-options';

/** The most records one PAIR_RECORDS message of the pump carries. */
const MAX_PUMP_RECORDS = 1024;

/** The primary side of a pair. */
export class PrimaryPair extends EventEmitter {
  readonly name: string;
  readonly mode: PairMode;
  readonly fence: 'never' | 'data';
  private readonly autoResume: boolean;
  private readonly maxBatchBytes: number;
  private readonly sendPool: SendPool;
  private readonly stuckAfterMs: number;
  private state: PairState = 'simplex';
  private reason: string;
  private detail: string | undefined;
  private sinceMs: number;
  private everMirrored = false;
  private readonly rotateIntervalMs: number;
  private lastRotateMs = -Infinity;
  private peerGenerations: Generations | undefined;
  private lastDecision: DecisionResult | undefined;
  private readonly mutation: 'skip-track' | undefined;
  private mutationCounter = 0;
  /** Set while the pair hands its role over: host writes are refused. */
  handingOver = false;
  /** The next journal sequence to ship while mirroring. */
  private nextToShip = 1;
  /**
   * The pump checks the journal's copies against their CRCs through this sequence: the records
   * the journal held when the stream last (re)started (a resume after a link loss or a restart).
   * Later ones are sent unchecked: the frame's CRC is combined from the CRCs they were appended
   * with, so the secondary checks them end to end; and if it refuses a damaged one, the link
   * drops, the stream resumes, and this check finds it here (the pair suspends, then resyncs).
   */
  private verifyThrough = 0;
  private received = 0;
  private applied = 0;
  private flushed = 0;
  private waiters: Waiter[] = [];
  private passGeneration = 0;
  /** A PAIR_RESYNC_DONE not yet answered: the next open waits for it (the peer may adopt its ids). */
  private resyncDoneInFlight: Promise<unknown> | undefined;
  private progress = { doneBytes: 0, totalBytes: 0, startedAtMs: 0, lastProgressAtMs: 0 };
  private stuckTimer: TimerHandle | undefined;
  private stuckReported = false;
  private closed = false;
  shippedBytes = 0;
  resyncedBytes = 0;
  /**
   * The first journal sequence at which the secondary's image is the primary's at that sequence
   * (set when a pass completes: tracks read during a pass may hold writes up to the journal's end
   * then). A consistency group's cut before it gives no consistent copy.
   */
  private consistentFrom = Infinity;
  /** A consistency group's fence: nothing after `through` ships until the cut is sent or lifted. */
  /** A consistency group's fence on the stream (cut-fence.ts). */
  private readonly cutFence: CutFence;
  /**
   * The journal keeps its records from this sequence on, so that the ordered stream may resume
   * there (undefined: no resume is possible): a restarted primary's kept journal from its head
   * (options.journalResumable), or every record after the secondary's position at a link loss
   * while mirroring. Dropped when the stream breaks (a pass, a full journal, any other
   * suspension) or when the journal is fuller than `journalHold` allows.
   */
  private streamHold: number | undefined;
  /** The journal's full count when the hold began: a write since then that found it full is in no record. */
  private holdFullCount = 0;
  /**
   * Set while an open that asks for a resume is in flight: the hold stays until the answer (the
   * secondary may already continue from its position), and why it should go is kept here.
   */
  private askingResume = false;
  private holdDropPending: string | undefined;
  /** Most of the journal's ring a hold may keep (a fraction of its capacity). */
  private readonly journalHold: number;
  /** Streams resumed from the journal (no pass). */
  resumedCount = 0;

  constructor(
    options: PrimaryPairOptions,
    private readonly volume: Volume,
    private readonly journal: Journal,
    private readonly link: Link,
    private readonly clock: Clock,
    private readonly log: LinkLogger,
    readonly meta: PairMeta,
    readonly tracking: Tracking,
    private readonly random: Random,
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
  private readonly group: GroupStream | undefined;

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
  private get holdIntact(): boolean {
    return this.streamHold !== undefined && this.journal.stats().fullCount === this.holdFullCount;
  }

  /** The stream cannot resume any more: the journal may release the held records. */
  private dropHold(why: string): void {
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
  private endResumeAsk(resumed: boolean): void {
    if (!this.askingResume) return;
    this.askingResume = false;
    const why = this.holdDropPending;
    this.holdDropPending = undefined;
    if (why !== undefined && !resumed) this.dropHold(why);
  }

  /** A hold may keep at most `journalHold` of the journal's ring (other pairs of the volume need room too). */
  private checkHoldFill(): void {
    const stats = this.journal.stats();
    if (stats.usedBytes > this.journalHold * stats.capacityBytes) {
      this.dropHold(`the journal is ${Math.round((100 * stats.usedBytes) / stats.capacityBytes)} % full, over the hold's ${Math.round(100 * this.journalHold)} %`);
    }
  }

  private setState(next: PairState, reason: string, detail?: string): void {
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

  /** Starts: opens the pair when the link is up (or once it comes up). */
  start(): void {
    if (this.link.isUp) this.runOpen();
  }

  private readonly onLinkState = (event: LinkStateEvent): void => {
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

  private readonly onDrain = (): void => {
    if (this.state === 'mirroring') this.schedulePump();
    this.drainWaiter?.();
  };

  private drainWaiter: (() => void) | undefined;

  private waitDrain(): Promise<void> {
    return new Promise((resolve) => {
      this.drainWaiter = () => {
        this.drainWaiter = undefined;
        resolve();
      };
    });
  }

  /** open(), whose failure is a bug: logged loudly, never an unhandled rejection. */
  private runOpen(): void {
    this.open().catch((error: unknown) => {
      this.log.error({ pair: this.name, err: String((error as Error)?.stack ?? error) }, `pair ${this.name}: open failed: ${String((error as Error)?.message ?? error)}`);
    });
  }

  /** Opens the pair on the secondary, then runs the copy (first time) or resync pass. */
  private async open(): Promise<void> {
    const generation = ++this.passGeneration;
    // An abandoned pass's PAIR_RESYNC_DONE still in flight may change this side's ids (pass()).
    if (this.resyncDoneInFlight !== undefined) await this.resyncDoneInFlight;
    if (generation !== this.passGeneration || this.closed) return;
    let generations = this.meta.state.generations;
    if (generations.current === 0) {
      // The first open of a new primary: its data becomes a generation.
      generations = { ...generations, current: newGenerationId(this.random) };
      this.meta.update({ generations });
    }
    // Connected again: the next suspension decides about a new generation afresh.
    if (this.meta.state.newGeneration) this.meta.update({ newGeneration: false });
    let reply: OpenReply;
    // The hold keeps the records from its sequence on while the resume is asked.
    const resume = this.holdIntact;
    const journalHead = this.journal.headSequence;
    this.askingResume = resume;
    this.holdDropPending = undefined;
    try {
      reply = decodeOpenReply(await this.link.request(MessageType.PAIR_OPEN, encodePairOpen({
        name: this.name, primaryVolume: this.volumeName, secondaryVolume: this.remoteVolume, mode: this.mode,
        capacityBytes: this.volume.capacityBytes, blockSize: this.volume.blockSize, generations, discard: false,
        journalId: this.journal.id, journalHead, journalNext: this.journal.nextSequence, resume,
      })));
    } catch (error) {
      this.endResumeAsk(false);
      if (generation !== this.passGeneration || this.closed) return;
      const code = (error as { remoteCode?: string }).remoteCode ?? (error as { code?: string }).code ?? 'error';
      this.log.warn({ pair: this.name, code }, `pair ${this.name}: the secondary refused to open: ${(error as Error).message}`);
      if (code === 'ERR_PAIR_DEMOTE') {
        // The peer took over and holds the newer generation: this side becomes its secondary.
        this.emit('demote', (error as Error).message);
        return;
      }
      if (code === 'ERR_PAIR_SPLIT_BRAIN' || code === 'ERR_PAIR_UNRELATED') {
        // Unrelated data is refused like a split brain: nothing is touched until an operator
        // chooses the side to keep (`resolve`; generations.ts rule 14: a full copy).
        this.enterSplitBrain((error as Error).message);
        return;
      }
      const refused = isLinkError(error, 'ERR_LINK_REMOTE') || isLinkError(error, 'ERR_LINK_NO_HANDLER');
      if (this.state !== 'suspended' && this.state !== 'split-brain') this.suspend(refused ? 'secondary-error' : 'link-down', (error as Error).message);
      if (code === 'ERR_PAIR_UNKNOWN' && this.autoResume) {
        // The peer does not declare the pair (yet: `pair create` on the other side comes
        // second): ask again now and then while the link is up.
        const retryGeneration = this.passGeneration;
        this.clock.setTimer(() => {
          if (!this.closed && this.state === 'suspended' && this.reason === 'secondary-error' && this.link.isUp && retryGeneration === this.passGeneration) this.runOpen();
        }, UNDECLARED_RETRY_MS, { unref: true });
      }
      return;
    }
    this.endResumeAsk(reply.resumed && generation === this.passGeneration && !this.closed);
    if (generation !== this.passGeneration || this.closed) return;
    this.peerGenerations = reply.generations;
    this.lastDecision = { decision: reply.decision, rule: reply.rule, text: '' };
    if (reply.resumed) {
      this.resumeStream(resume, reply.applied);
      return;
    }
    // The secondary's position is in the sequence space of the journal that last fed it, which
    // may be another one (this side restarted, or was promoted): this journal's records before
    // its next sequence are covered by the pass, never by that position.
    this.received = this.applied = Math.min(reply.applied, this.journal.nextSequence - 1);
    // Flushed is only what the secondary reports flushed from now on (a lockstep marker waits for it).
    this.flushed = 0;
    if (reply.decision === 'full-source' || reply.all) {
      // A first copy (the secondary holds no generation, or an older one than the bitmap
      // covers): every allocated track; holes travel as holes.
      for (const extent of this.volume.allocationMap()) {
        if (extent.allocated) this.tracking.mark(extent.byteOffset, extent.byteLength);
      }
      this.setState('copying', reply.decision === 'full-source' ? 'initial copy' : 'full resync');
    } else {
      // The tracked tracks, and what the other side changed since the common generation.
      for (const range of reply.dirty) this.tracking.mark(range.byteOffset, range.byteLength);
      this.setState('resyncing', reply.dirty.length > 0 ? 'resync dirty tracks of both sides' : 'resync dirty tracks');
    }
    await this.pass(generation);
  }

  /**
   * The secondary continues the ordered stream at `applied` + 1 (it accepted the resume): ship
   * from there, no pass. The tracking keeps what it holds (the records still to ship, and what
   * the recovery journaled again) until the secondary has caught up.
   */
  private resumeStream(asked: boolean, applied: number): void {
    if (!asked || applied + 1 < this.journal.headSequence || applied > this.journal.nextSequence - 1) {
      // Not what this side asked for, or a position outside the journal: the peer is broken.
      const why = `the secondary resumed at ${applied + 1}, outside the journal's records ${this.journal.headSequence}..${this.journal.nextSequence - 1}${asked ? '' : ' (no resume was asked)'}`;
      if (this.state !== 'suspended') {
        this.suspend('secondary-error', why);
        return;
      }
      // Already suspended (suspend() would do nothing): the reason changes, the stream is broken.
      this.passGeneration++;
      this.streamHold = undefined;
      this.setState('suspended', 'secondary-error', why);
      this.emit('released');
      return;
    }
    const fullSinceHold = this.journal.stats().fullCount !== this.holdFullCount;
    this.resumedCount++;
    this.received = this.applied = applied;
    this.flushed = 0;
    this.nextToShip = applied + 1;
    this.verifyThrough = this.journal.nextSequence - 1;
    this.everMirrored = true;
    this.consistentFrom = applied;
    // A generation started while the link was down (the secondary took it as its own with the
    // resume): both sides share it now, as after a pass.
    const generations = this.meta.state.generations;
    if (generations.bitmap !== 0 && this.peerGenerations?.current === generations.current) this.meta.update({ generations: completeAsSource(generations) });
    this.setState('mirroring', 'resumed from the journal', `records ${applied + 1}..${this.journal.nextSequence - 1} to ship`);
    // Mirroring covers what the hold kept (neededSequence).
    this.streamHold = undefined;
    if (fullSinceHold) {
      // A write found the journal full while the resume was asked: it is in no record, only in
      // the tracking, so the stream is broken already (a resync follows, as for any full journal).
      this.suspend('journal-full', 'the journal had no room while the stream resumed; writes are recorded in the OOS bitmap');
      return;
    }
    this.resolveWaiters();
    this.clearIfCaughtUp();
    this.emit('progress');
    this.schedulePump();
  }

  /** One copy or resync pass over the OOS bits, then ordered streaming from J. */
  private async pass(generation: number): Promise<void> {
    const resumeAt = this.journal.nextSequence;
    this.nextToShip = resumeAt;
    const granularity = this.tracking.granularityBytes;
    const capacity = this.volume.capacityBytes;
    // The pass sends the tracks of the sealed bitmap, into which the active one was merged
    // (tracking.ts sealForPass); writes from now on mark the active one and are journaled from
    // J. No bit is cleared before the secondary confirms the whole pass (PAIR_RESYNC_DONE): a
    // track in flight when either side dies is still tracked, and sent again.
    // The pass's tracks are the decision's as well as written ones: no sequence bounds them
    // until the pass is done.
    this.trackedSince = 0;
    const sealed = this.tracking.sealForPass();
    this.progress = { doneBytes: 0, totalBytes: sealed.count() * granularity, startedAtMs: this.clock.nowMs(), lastProgressAtMs: this.clock.nowMs() };
    const buffer = Buffer.allocUnsafe(granularity);
    let bit = sealed.findNextSet(0);
    while (bit >= 0) {
      if (generation !== this.passGeneration || this.closed) return;
      const byteOffset = bit * granularity;
      const byteLength = Math.min(granularity, capacity - byteOffset);
      const data = buffer.subarray(0, byteLength);
      this.volume.read(byteOffset, data);
      if (this.mutation === 'skip-track' && ++this.mutationCounter % 3 === 0) {
        bit = sealed.findNextSet(bit + 1);
        continue;
      }
      try {
        this.link.send(MessageType.PAIR_TRACK, encodeTrack(this.name, byteOffset, data));
      } catch (error) {
        if (isLinkError(error, 'ERR_LINK_FULL')) {
          await this.waitDrain();
          continue;
        }
        if (generation === this.passGeneration) this.suspend('link-down', (error as Error).message);
        return;
      }
      this.resyncedBytes += byteLength;
      this.progress.doneBytes += byteLength;
      this.progress.lastProgressAtMs = this.clock.nowMs();
      bit = sealed.findNextSet(bit + 1);
      // Yield now and then so host I/O and the link run during a long pass.
      if ((this.progress.doneBytes / granularity) % 64 === 0) await new Promise<void>((resolve) => setImmediate(resolve));
    }
    const generations = this.meta.state.generations;
    // Every track was read by now: from this sequence on, the secondary's image at a sequence is
    // the primary's at that sequence.
    const consistentFrom = this.journal.nextSequence - 1;
    try {
      const done = this.link.request(MessageType.PAIR_RESYNC_DONE, encodeResyncDone(this.name, resumeAt, generations, Math.max(consistentFrom, resumeAt - 1)));
      this.resyncDoneInFlight = done.catch(() => undefined);
      await done;
    } catch (error) {
      if (generation === this.passGeneration && !this.closed && this.state !== 'suspended') this.suspend('link-down', (error as Error).message);
      return;
    }
    if (generation !== this.passGeneration || this.closed) {
      // The secondary completed a pass this side had already abandoned (suspended meanwhile): it
      // now holds `generations.current`, and the tracking covers every change since that image.
      // Say so in this side's ids, or the next open sees a split brain (rule 10) that is none.
      const now = this.meta.state.generations;
      if (!this.closed && now.current === generations.current) this.meta.update({ generations: completeAsSource(now) });
      else if (!this.closed && now.bitmap === generations.bitmap) this.meta.update({ generations: { ...now, bitmap: generations.current } });
      return;
    }
    // The pass gave the secondary everything written before J: it stands at J - 1.
    this.received = Math.max(this.received, resumeAt - 1);
    this.applied = Math.max(this.applied, resumeAt - 1);
    this.flushed = Math.max(this.flushed, 0);
    this.everMirrored = true;
    this.consistentFrom = consistentFrom;
    // The target adopted this side's generation: the bitmap generation is history now. What the
    // tracking holds was written since J and is in the journal: seal it at the journal's end.
    this.peerGenerations = { current: generations.current, bitmap: 0, history: this.peerGenerations?.history ?? [0, 0] };
    // The secondary holds every sealed track: only writes since J remain, in the active bitmap.
    this.tracking.clearSealed();
    this.trackedSince = resumeAt;
    this.meta.update({ generations: completeAsSource(generations), sealedThrough: resumeAt - 1, active: this.tracking.active });
    this.setState('mirroring', this.reason === 'initial copy' ? 'copy done' : 'resync done');
    this.resolveWaiters();
    this.clearIfCaughtUp();
    this.emit('progress');
    this.schedulePump();
  }

  /**
   * Something was written (or may have been): ship it. `throughSequence` is the journal's last
   * sequence now; its time is kept (a bounded ring) so status can say how far behind the
   * secondary is in seconds.
   */
  notifyWrite(throughSequence?: number): void {
    if (this.state !== 'mirroring' && this.meta.state.newGeneration) this.beginGeneration();
    if (this.streamHold !== undefined) this.checkHoldFill();
    if (throughSequence !== undefined && throughSequence > this.lastTimedSequence) {
      // A ring of (sequence, time): when full, the oldest entry is overwritten (the lag in
      // seconds then reads a little low, never high), O(1) per write.
      const ring = this.writeTimes;
      if (this.timesCount === TIMES_RING) {
        this.timesHead = (this.timesHead + 1) % TIMES_RING;
        this.timesCount--;
      }
      const at = (this.timesHead + this.timesCount) % TIMES_RING;
      ring.sequences[at] = throughSequence;
      ring.times[at] = this.clock.nowMs();
      this.timesCount++;
      this.lastTimedSequence = throughSequence;
    }
    if (this.state === 'mirroring') this.schedulePump();
  }

  /**
   * Before a host write reaches the store: mark it in the tracking (so a SIGKILL in the middle
   * of the copy leaves it tracked), and start a new generation at the first write after the
   * pair stopped mirroring (DRBD's new current UUID), so a takeover on the other side meanwhile
   * is caught as a split brain.
   */
  beforeWrite(byteOffset: number, byteLength: number): void {
    this.tracking.premark(byteOffset, byteLength);
    if (this.state !== 'mirroring' && this.meta.state.newGeneration) this.beginGeneration();
  }

  private beginGeneration(): void {
    const generations = startGeneration(this.meta.state.generations, this.random);
    this.meta.update({ generations, newGeneration: false });
    this.log.info({ pair: this.name, current: formatGeneration(generations.current) }, `pair ${this.name}: new generation ${formatGeneration(generations.current)} (writes while not mirroring)`);
  }

  /** (last journal sequence, time it was seen), oldest first; trimmed as the secondary applies. */
  private readonly writeTimes = { sequences: new Float64Array(TIMES_RING), times: new Float64Array(TIMES_RING) };
  private timesHead = 0;
  private timesCount = 0;
  private lastTimedSequence = 0;

  /** Seconds since the oldest write the secondary has not applied was seen (0 when none). */
  private lagSeconds(): number {
    const ring = this.writeTimes;
    while (this.timesCount > 0 && (ring.sequences[this.timesHead] as number) <= this.applied) {
      this.timesHead = (this.timesHead + 1) % TIMES_RING;
      this.timesCount--;
    }
    return this.timesCount === 0 ? 0 : Math.max(0, (this.clock.nowMs() - (ring.times[this.timesHead] as number)) / 1000);
  }

  /**
   * True while a native lane may store and acknowledge a host write of this pair's volume by
   * itself (replicated-volume.ts): an async pair, mirroring (a write needs no generation, no
   * ack point and no premark beyond the native one).
   */
  get lanesMayWrite(): boolean {
    return !this.closed && this.mode === 'async' && this.state === 'mirroring';
  }

  /** The journal refused a record: the ordered stream is broken for every pair of the volume. */
  journalFull(): void {
    // A write is in no record (in the tracking only): the stream is broken from here, also for
    // a later restart (meta streaming) of a pair that has not opened yet.
    this.dropHold('a write found it full');
    if (this.meta.state.streaming) this.meta.update({ streaming: false });
    if (this.state === 'mirroring' || this.state === 'copying' || this.state === 'resyncing') {
      this.suspend('journal-full', 'the journal has no room; writes are recorded in the OOS bitmap');
    }
  }

  private schedulePump(): void {
    if (this.group !== undefined) {
      // A journal group member: the group's one stream ships its records (journal-group.ts).
      if (this.state === 'mirroring') this.group.schedulePump();
      return;
    }
    this.pumpTask.schedule();
  }

  /** One pump per burst of writes (runtime/coalesce.ts). */
  private readonly pumpTask = new Coalesced(() => this.pump(), (run) => deferOn(this.clock, run));

  private pump(): void {
    for (;;) {
      if (this.closed || this.state !== 'mirroring') return;
      const fenced = this.cutFence.through;
      if (fenced !== undefined && this.nextToShip > fenced) {
        // Shipped through a consistency group's cut: wait for the run (or the release), then the
        // cut goes out before any later record, and the fence lifts.
        if (!this.cutFence.release()) return;
        continue;
      }
      if (this.link.isFull) return;
      const limit = fenced === undefined ? this.journal.nextSequence : fenced + 1;
      if (this.nextToShip >= limit) return;
      const maxRecords = Math.min(MAX_PUMP_RECORDS, limit - this.nextToShip);
      // The hot path: the journal copies the records' data straight into the message, with room
      // left for the per-record headers (packRecords writes them in place).
      // The message goes into a reused send buffer when one is free (transport/send-pool.ts),
      // given back once the link says nothing reads it any more.
      let message: Buffer | null;
      let messageCrc: number | undefined;
      let last: number;
      let dataBytes = 0;
      const target = this.sendPool.take();
      let pooled: Buffer | undefined;
      try {
        const packed = this.journal.readPacked(this.nextToShip, {
          maxRecords, maxDataBytes: this.maxBatchBytes, prefixBytes: recordsPrefixBytes(this.nameBytes), gapBytes: RECORD_HEADER_BYTES, target,
          verify: this.nextToShip <= this.verifyThrough,
        });
        if (target !== undefined && packed.buffer === target) pooled = target;
        else if (target !== undefined) this.sendPool.give(target);
        if (packed.count === 0) {
          if (pooled !== undefined) this.sendPool.give(pooled);
          return;
        }
        const packedMessage = packRecords(this.nameBytes, packed.fields, packed.buffer, packed.usedBytes);
        message = packedMessage?.message ?? null;
        messageCrc = packedMessage?.crc;
        last = packed.fields[(packed.count - 1) * 8] as number;
        for (let index = 0; index < packed.count; index++) dataBytes += packed.fields[index * 8 + 7] as number;
      } catch (error) {
        if (pooled !== undefined) this.sendPool.give(pooled);
        else if (target !== undefined) this.sendPool.give(target);
        this.suspend('journal-full', `journal read: ${(error as Error).message}`);
        return;
      }
      if (message === null && pooled !== undefined) {
        this.sendPool.give(pooled);
        pooled = undefined;
      }
      if (message === null) {
        // A record kind PAIR_RECORDS does not carry as such: the copying path filters it out.
        let records: JournalRecord[];
        try {
          records = this.journal.read(this.nextToShip, { maxRecords, maxBytes: this.maxBatchBytes });
        } catch (error) {
          this.suspend('journal-full', `journal read: ${(error as Error).message}`);
          return;
        }
        if (records.length === 0) return;
        const shipped: ShippedRecord[] = [];
        for (const record of records) {
          const kind = KIND_OF[record.kind];
          if (kind === undefined) continue;
          shipped.push({ sequence: record.sequence, kind, byteOffset: record.byteOffset, byteLength: record.byteLength, data: record.data });
        }
        last = (records[records.length - 1] as JournalRecord).sequence;
        dataBytes = 0;
        for (const record of shipped) dataBytes += record.data.length;
        message = shipped.length > 0 ? encodeRecords(this.name, shipped) : null;
      }
      if (message !== null) {
        const lent = pooled;
        try {
          this.link.send(MessageType.PAIR_RECORDS, message, {
            onUnconfirmed: this.onRecordsUnconfirmed,
            onWritten: lent === undefined ? undefined : () => this.sendPool.give(lent),
            payloadCrc: messageCrc,
          });
        } catch (error) {
          if (lent !== undefined) this.sendPool.give(lent);
          if (isLinkError(error, 'ERR_LINK_FULL')) return; // 'drain' pumps again
          this.suspend('link-down', (error as Error).message);
          return;
        }
        this.shippedBytes += dataBytes;
      } else {
        // Only markers: nothing to apply, but the secondary's position moves past them.
        this.applied = Math.max(this.applied, last);
      }
      this.nextToShip = last + 1;
    }
  }

  private readonly onRecordsUnconfirmed = (): void => this.suspend('link-down', 'records unconfirmed');

  // ---- consistency groups (src/cgroup/): the cut ------------------------------------------

  /**
   * Why a consistency group's cut at `through` cannot give a consistent copy now, or undefined:
   * the pair must mirror alone (not in a journal group's stream), with its secondary consistent
   * at that sequence.
   */
  cutProblem(through: number): string | undefined {
    // A journal group's member is fenced in the group's one stream (journal-group.ts): the
    // stream stops at the cut for every member, and each member's cut goes out there.
    if (this.closed) return `pair ${this.name} is closed`;
    if (this.state !== 'mirroring') return `pair ${this.name} is ${this.state} (${this.reason})`;
    if (through < this.consistentFrom) return `pair ${this.name}: the secondary is still catching up after its resync (consistent from ${this.consistentFrom})`;
    if (this.cutFence.through !== undefined) return `pair ${this.name} is fenced at ${this.cutFence.through} already`;
    return undefined;
  }

  /**
   * Holds shipping after `through` (the cut of a consistency group's cycle, taken while host
   * write completions are held): records after it stay in the journal until cutAt() or
   * unfence(). Throws ERR_PAIR_STATE when cutProblem() names one.
   */
  fenceAt(through: number): void {
    if (!Number.isSafeInteger(through) || through < 0 || through >= this.journal.nextSequence) {
      throw new RangeError(`through must be a journal sequence before ${this.journal.nextSequence}, got ${through}`);
    }
    const problem = this.cutProblem(through);
    if (problem !== undefined) throw new PairError('ERR_PAIR_STATE', problem);
    this.cutFence.set(through);
  }

  /**
   * The run: once everything through the fence is shipped, PAIR_CG_CUT goes out (in order, before
   * any later record) and the fence lifts; resolves with the secondary's answer (its copy).
   * Rejects when the pair stops mirroring first, or the secondary refuses.
   */
  cutAt(options: { group: string; cycle: number; formed: number; timeoutMs: number }): Promise<CutReply> {
    return this.cutFence.cutAt(options);
  }

  /** The journal group's stream: the sequence this member is fenced at (undefined: none). */
  get fencedThrough(): number | undefined {
    return this.cutFence.through;
  }

  /**
   * The journal group's stream shipped this member through its fence: sends the cut and lifts
   * the fence (true), or, with no run yet, keeps it (false: nothing of this member ships).
   */
  passFence(): boolean {
    const fenced = this.cutFence.through;
    return fenced === undefined || this.nextToShip <= fenced || this.cutFence.release();
  }

  /** Lifts the fence without a cut (the cycle did not run). */
  unfence(): void {
    if (this.cutFence.drop(`pair ${this.name}: the fence was lifted`) && this.state === 'mirroring') this.schedulePump();
  }

  // ---- a journal group's stream (journal-group.ts) ships for its members -------------------

  /** Whether the group's stream ships this member's records now. */
  get streaming(): boolean {
    return !this.closed && this.state === 'mirroring';
  }

  /** The member's next journal sequence to ship. */
  get shipFrom(): number {
    return this.nextToShip;
  }

  /** The group's stream shipped a batch covering this member's records through `through`. */
  shipped(through: number, dataBytes: number): void {
    if (through + 1 > this.nextToShip) this.nextToShip = through + 1;
    this.shippedBytes += dataBytes;
  }

  /** The pair's name as PAIR_RECORDS carries it (encoded once). */
  private readonly nameBytes: Buffer;

  /** The secondary's positions arrived. */
  onPosition(position: PairPosition): void {
    this.received = Math.max(this.received, position.received);
    this.applied = Math.max(this.applied, position.applied);
    this.flushed = Math.max(this.flushed, position.flushed);
    this.resolveWaiters();
    this.clearIfCaughtUp();
    this.maybeRotate();
    this.emit('progress');
  }

  /** Caught up at this instant (everything written so far is on the secondary): clear OOS. */
  private clearIfCaughtUp(): void {
    if (this.state === 'mirroring' && this.applied >= this.journal.nextSequence - 1 && this.nextToShip === this.journal.nextSequence) {
      this.tracking.clearAll();
      // In memory only: the saved value stays a lower bound.
      this.trackedSince = this.journal.nextSequence;
    }
  }

  /** The sealed bitmap's writes are all applied: it becomes the active one (tracking.ts). */
  private maybeRotate(): void {
    if (this.state !== 'mirroring' || this.applied < this.meta.state.sealedThrough) return;
    const now = this.clock.nowMs();
    if (now - this.lastRotateMs < this.rotateIntervalMs) return;
    this.lastRotateMs = now;
    const active = this.tracking.rotate();
    // The sealed bitmap now is the one that recorded the writes after the old seal.
    if (this.trackedSince !== 0) this.trackedSince = Math.max(this.trackedSince, this.meta.state.sealedThrough + 1);
    this.meta.update({ active, sealedThrough: this.journal.nextSequence - 1 });
  }

  /**
   * The first journal sequence whose write the tracking may hold (0: not known). Every track it
   * holds was written at or after it, so while mirroring or suspended by a link the OOS is at
   * most the tracks of the records from there to the journal's end: about the in-flight window.
   */
  private trackedSince: number;

  /** The secondary refused something: stop, and wait for an operator. */
  onSecondaryError(code: string, message: string): void {
    this.suspend('secondary-error', `${code}: ${message}`);
  }

  private resolveWaiters(): void {
    const waiters = this.waiters;
    if (waiters.length === 0) return;
    // Usually the first group is still waiting: nothing to settle, nothing allocated.
    if ((waiters[0] as Waiter).sequence > this.applied && waiters.every((waiter) => waiter.sequence > this.applied)) return;
    const remaining: Waiter[] = [];
    for (const waiter of waiters) {
      if (waiter.sequence <= this.applied) waiter.resolve();
      else remaining.push(waiter);
    }
    this.waiters = remaining;
  }

  /**
   * The ack point of a host write journaled at `sequence`: null when it completes now, else a
   * promise that resolves when the secondary applied it (sync, mirroring), or rejects with
   * ERR_PAIR_FENCED (fence 'data' while the secondary cannot be reached).
   */
  ackPoint(sequence: number): Promise<void> | null {
    if (this.mode !== 'sync') return null;
    // Fence 'data': a write during a copy or resync pass waits like one while mirroring (it is
    // in the journal from J on); before the first open (simplex) it fails like a suspended one.
    const passing = this.fence === 'data' && (this.state === 'copying' || this.state === 'resyncing');
    if (this.state !== 'mirroring' && !passing) {
      if (this.fence === 'data' && (this.state === 'suspended' || this.state === 'split-brain' || this.state === 'simplex')) {
        return Promise.reject(new PairError('ERR_PAIR_FENCED', `pair ${this.name} is ${this.state} (${this.reason}) and fenced: the write is not on the secondary`));
      }
      return null;
    }
    if (sequence <= 0) {
      // Not journaled (journal full): the pair suspends; the write is in OOS only.
      return this.fence === 'data'
        ? Promise.reject(new PairError('ERR_PAIR_FENCED', `pair ${this.name}: the journal is full and the pair is fenced`))
        : null;
    }
    if (sequence <= this.applied) return null;
    // A write not shipped yet joins the last group while that group is not shipped either: it
    // ships in the same batch, and the group settles once the secondary applied its last
    // sequence, so no write completes before the secondary applied it (one promise per burst).
    const waiters = this.waiters;
    const last = waiters[waiters.length - 1];
    if (last !== undefined && last.sequence >= this.nextToShip && sequence >= last.sequence && sequence - last.first < MAX_WAITER_SPAN) {
      last.sequence = sequence;
      return last.promise;
    }
    let resolve!: () => void;
    let reject!: (error: Error) => void;
    const promise = new Promise<void>((onResolve, onReject) => {
      resolve = onResolve;
      reject = onReject;
    });
    waiters.push({ sequence, first: sequence, promise, resolve, reject });
    return promise;
  }

  /** Flushes the secondary (a FLUSH or FUA on a sync primary). */
  async flushRemote(): Promise<void> {
    if (this.mode !== 'sync' || this.state !== 'mirroring') {
      if (this.mode === 'sync' && this.fence === 'data' && (this.state === 'suspended' || this.state === 'split-brain')) {
        throw new PairError('ERR_PAIR_FENCED', `pair ${this.name} is suspended and fenced: the secondary was not flushed`);
      }
      return;
    }
    try {
      await this.link.request(MessageType.PAIR_FLUSH, encodeName(this.name));
    } catch (error) {
      if (this.fence === 'data') throw new PairError('ERR_PAIR_FENCED', `pair ${this.name}: flush on the secondary failed: ${(error as Error).message}`);
    }
  }

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

  /** Resolves at the next position report or state change, or after `maxWaitMs`. */
  private nextChange(maxWaitMs: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = (): void => {
        timer.cancel();
        this.off('progress', done);
        this.off('state', done);
        resolve();
      };
      const timer = this.clock.setTimer(done, maxWaitMs, { unref: true });
      this.once('progress', done);
      this.once('state', done);
    });
  }

  /**
   * Resolves once the secondary has applied everything the journal holds and flushed it (a
   * handover drains the pair this way, with host writes held); rejects after `timeoutMs` or
   * when the pair stops mirroring.
   */
  async waitCaughtUp(timeoutMs: number): Promise<void> {
    const deadline = this.clock.nowMs() + timeoutMs;
    const caughtUp = (): boolean => this.applied >= this.journal.nextSequence - 1 && this.nextToShip === this.journal.nextSequence;
    while (!caughtUp()) {
      if (this.state !== 'mirroring') throw new PairError('ERR_PAIR_STATE', `pair ${this.name} is ${this.state}; the handover stopped`);
      if (this.clock.nowMs() >= deadline) throw new PairError('ERR_PAIR_STATE', `pair ${this.name}: the secondary did not catch up within ${timeoutMs} ms`);
      await this.nextChange(10);
    }
    if (this.state !== 'mirroring') throw new PairError('ERR_PAIR_STATE', `pair ${this.name} is ${this.state}; the handover stopped`);
    await this.link.request(MessageType.PAIR_FLUSH, encodeName(this.name));
  }

  /**
   * Resolves once the secondary has safe-stored (applied and flushed) through journal sequence
   * `marker`: once the pair mirrors and the marker is shipped, PAIR_MARKER asks the secondary to
   * flush through it and say so. While the pair cannot ship it waits (a resync brings applied past the
   * marker); it never gives up by itself. Rejects ERR_PAIR_STATE once the pair is closed.
   */
  async safeStore(marker: number): Promise<void> {
    let shippedAtMs: number | undefined;
    for (;;) {
      if (this.closed) throw new PairError('ERR_PAIR_STATE', `pair ${this.name} is closed`);
      if (this.state === 'mirroring' && this.flushed >= marker) return;
      // A shipped marker record makes the secondary flush and report its position (the answer
      // in one message). A group's stream covers markers without carrying them, and a report
      // may be lost with a link: then (or after MARKER_REPORT_WAIT_MS) PAIR_MARKER asks. The
      // link delivers in order, so the secondary has applied the record when it handles the
      // request (if not, it refuses and this side waits for the next change).
      const shipped = this.state === 'mirroring' && (this.applied >= marker || this.nextToShip > marker);
      if (shipped && shippedAtMs === undefined) shippedAtMs = this.clock.nowMs();
      const reportDue = this.group !== undefined || (shippedAtMs !== undefined && this.clock.nowMs() - shippedAtMs >= MARKER_REPORT_WAIT_MS);
      if (!shipped) shippedAtMs = undefined;
      if (shipped && !reportDue) {
        await this.nextChange(MARKER_REPORT_WAIT_MS);
        continue;
      }
      if (shipped && this.link.isUp) {
        try {
          const flushed = decodeSequence(await this.link.request(MessageType.PAIR_MARKER, encodeMarker(this.name, marker)), 'PAIR_MARKER reply');
          this.flushed = Math.max(this.flushed, flushed);
          if (flushed >= marker) return;
        } catch {
          // The link dropped or the secondary was not there yet: wait for the next change.
        }
      }
      await this.nextChange(100);
    }
  }

  /** Opens again after a split brain was resolved in this side's favour. */
  reopen(): void {
    if (this.closed) return;
    if (!this.link.isUp) throw new PairError('ERR_PAIR_STATE', `pair ${this.name}: the link to its peer is ${this.link.currentState}`);
    // A copy or resync pass already runs (an open decided since the peer changed), or the pair
    // mirrors: a second open would abandon that pass for nothing (and a pass state cannot be
    // entered from itself). It only looks again from split-brain, simplex or suspended.
    if (this.state === 'copying' || this.state === 'resyncing' || this.state === 'mirroring') return;
    this.runOpen();
  }

  /** Resumes a suspended pair (an operator's command). */
  resume(): void {
    if (this.state !== 'suspended') throw new PairError('ERR_PAIR_STATE', `pair ${this.name} is ${this.state}, not suspended`);
    if (!this.link.isUp) throw new PairError('ERR_PAIR_STATE', `pair ${this.name}: the link to its secondary is ${this.link.currentState}`);
    this.runOpen();
  }

  /**
   * The secondary image as this side knows it: consistent while mirroring; outdated when the
   * pair was suspended while mirroring (a write-order prefix that stopped advancing);
   * inconsistent during a copy or resync pass, and after one was interrupted.
   */
  get consistency(): Consistency {
    if (this.state === 'mirroring') return 'consistent';
    return this.state === 'suspended' && this.everMirrored && this.suspendedFromMirroring ? 'outdated' : 'inconsistent';
  }

  /** Whether the current suspension began while mirroring (not during a copy or resync pass). */
  private suspendedFromMirroring = false;

  status(): Record<string, unknown> {
    const next = this.journal.nextSequence;
    const granularity = this.tracking.granularityBytes;
    const oosTracks = this.tracking.count();
    const generations = this.meta.state.generations;
    const elapsedMs = this.clock.nowMs() - this.progress.startedAtMs;
    const rate = elapsedMs > 0 ? (this.progress.doneBytes * 1000) / elapsedMs : 0;
    const transient = this.state === 'copying' || this.state === 'resyncing';
    return {
      name: this.name,
      role: 'primary',
      mode: this.mode,
      fence: this.fence,
      peer: this.link.peerId,
      volume: this.volumeName,
      remoteVolume: this.remoteVolume,
      state: this.state,
      reason: this.reason,
      ...(this.detail === undefined ? {} : { detail: this.detail }),
      sinceMs: Math.round(this.clock.nowMs() - this.sinceMs),
      consistency: this.consistency,
      link: this.link.currentState,
      positions: { journalNext: next, shipped: this.nextToShip - 1, received: this.received, applied: this.applied, flushed: this.flushed },
      lag: {
        records: this.lagRecords,
        bytes: this.state === 'mirroring' ? this.journal.stats().usedBytes : (oosTracks * granularity),
        seconds: Math.round(this.lagSeconds() * 1000) / 1000,
      },
      journal: this.journal.stats(),
      oos: { tracks: oosTracks, bytes: oosTracks * granularity, since: this.trackedSince === 0 ? null : this.trackedSince },
      progress: transient
        ? { doneBytes: this.progress.doneBytes, totalBytes: this.progress.totalBytes, bytesPerSecond: Math.round(rate),
          etaSeconds: rate > 0 ? Math.max(0, (this.progress.totalBytes - this.progress.doneBytes) / rate) : null,
          stuck: this.stuckReported }
        : null,
      shippedBytes: this.shippedBytes,
      resyncedBytes: this.resyncedBytes,
      resumedStreams: this.resumedCount,
      streamHold: this.streamHold === undefined ? null : { from: this.streamHold, records: Math.max(0, next - this.streamHold), limit: this.journalHold },
      generations: formatGenerations(generations),
      peerGenerations: this.peerGenerations === undefined ? null : formatGenerations(this.peerGenerations),
      decision: this.lastDecision === undefined ? null : { decision: this.lastDecision.decision, rule: this.lastDecision.rule },
    };
  }

  /**
   * A crash (the simulator's, standing for SIGKILL): stops at once; waiters are never settled
   * (no host sees an acknowledgement), nothing is written to the metadata or the bitmaps.
   */
  crash(): void {
    this.closed = true;
    this.cutFence.forget();
    this.passGeneration++;
    this.stuckTimer?.cancel();
    this.link.off('state', this.onLinkState);
    this.link.off('drain', this.onDrain);
    this.waiters = [];
    this.removeAllListeners();
  }

  /**
   * Stops this side. `keepTracking`: the bitmaps stay open for the side that replaces this one
   * (a demotion); otherwise they are closed (they stay in the volume's region).
   */
  close(options: { keepTracking?: boolean } = {}): void {
    if (this.closed) return;
    this.closed = true;
    this.passGeneration++;
    this.cutFence.drop(`pair ${this.name} is closed`);
    this.stuckTimer?.cancel();
    this.link.off('state', this.onLinkState);
    this.link.off('drain', this.onDrain);
    for (const waiter of this.waiters) waiter.resolve();
    this.waiters = [];
    this.drainWaiter?.();
    if (options.keepTracking !== true) this.tracking.close();
  }
}
