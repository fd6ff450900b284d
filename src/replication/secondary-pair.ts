// Notes on the design
// -------------------
// The secondary side of one pair: it applies what the primary ships, in order, through its own
// volume's write path, and reports received, applied and flushed positions.
//
// What it refuses (the primary suspends with secondary-error; nothing of the message is
// applied, and the volume is unchanged): records for another volume or pair, a record out of
// sequence (a gap or a repeat), a record or track outside the volume, a pair opened with other
// volumes, mode or geometry than this controller declared. A message is validated as a whole
// before any byte of it is applied.
//
// The volume is read-only to hosts (its export is forced read-only) until taken over.
//
// What it must find again after a SIGKILL is in its PairMeta (pair-meta.ts): generations,
// whether its image ever completed a copy, its consistency and its applied position, saved
// after each applied batch (the data is in the volume's region before the position says so).
// On PAIR_OPEN it compares generations (generations.ts decide()) and answers with the decision
// and its own dirty ranges (the tracking of a demoted primary or a split brain's discarded
// side); at PAIR_RESYNC_DONE it adopts the source's generation and clears that tracking.
//
// A resume (a primary whose journal holds every record after this side's position: a restarted
// one's kept journal, or a link loss's hold, primary-pair.ts): accepted only when nothing else
// can differ: same generation (rule 4) or one the primary started from this side's while the
// link was down (rule 5: this side then takes it, as at the end of a pass), an image that is a write-order prefix (consistent, or outdated by a link loss), a position
// in the sequence space of that very journal (its id, kept with the position at
// PAIR_RESYNC_DONE) and still in it, a position exact because this process applied it (after
// a restart of this side the saved position may trail what the volume holds: records applied
// again over later ones would mix two states), and no tracked change of its own. Then the
// stream continues at applied + 1 with no pass and the image stays consistent.

import { EventEmitter } from 'node:events';

import { type Clock, settled } from '../runtime/clock';
import { Volume, type WriteOp } from '../storage/volume';
import type { Link, LinkLogger, LinkStateEvent } from '../transport/link';
import { MessageType } from '../transport/message-types';
import { type Decision, type DecisionResult, type Generations, completeAsTarget, decide, formatGenerations } from './generations';
import { MAX_DIRTY_RANGES, type OpenReply, type PairMode, type PairOpen, type ShippedRecord, encodePairError, encodePosition } from './messages';
import type { PairMeta } from './pair-meta';
import { type Consistency, PairError, type PairState } from './pair-state';
import type { Tracking } from './tracking';

const OPENER_VIEW: Record<Decision, Decision> = {
  none: 'none',
  'bitmap-source': 'bitmap-target',
  'bitmap-target': 'bitmap-source',
  'full-source': 'full-target',
  'full-target': 'full-source',
  'split-brain': 'split-brain',
  unrelated: 'unrelated',
};

/** Options of a secondary pair. */
export interface SecondaryPairOptions {
  name: string;
  volumeName: string;
  /** The primary's volume name on the peer. */
  remoteVolume: string;
  mode: PairMode;
  /** The reason the side starts with (e.g. 'demoted'). @default 'declared' */
  initialReason?: string;
  /** A deliberate bug for the mutation check (pairs.ts PairMutation). @default none */
  mutation?: 'apply-out-of-order' | 'drop-write';
  /** The journal group this side is declared in (journal-group.ts). @default none */
  journalGroup?: string;
  /** Keeps the last consistent image while a resync runs (a snapshot of the volume). @default none */
  images?: ImageKeeper;
}

/**
 * The last consistent image of a secondary while its resync overwrites it (DRBD leaves the
 * secondary inconsistent): keep() takes a snapshot of the volume as it is (unless one is kept
 * already: after an interrupted resync the image is no longer consistent, the kept one is),
 * release() deletes it once the secondary is consistent again. `current` names what is kept
 * (status shows it); a keeper that cannot keep (no room for another snapshot) says so in the log
 * and the resync goes on.
 */
export interface ImageKeeper {
  keep(reason: string): void;
  release(): void;
  readonly current: string | null;
}

/** The secondary side of a pair. */
export class SecondaryPair extends EventEmitter {
  readonly name: string;
  readonly mode: PairMode;
  private state: PairState = 'simplex';
  private reason: string;
  private sinceMs: number;
  private consistencyValue: Consistency;
  private nextSequence: number;
  private received: number;
  private applied: number;
  private flushed: number;
  private closed = false;
  /** True once a copy completed into this volume (persisted: a restarted secondary resyncs). */
  private synced: boolean;
  private peerGenerations: Generations | undefined;
  private lastDecision: { decision: Decision; rule: number } | undefined;
  /** The position was set by this process (a resume may continue from it exactly). */
  private positionExact = false;
  /** The id of the journal of the last PAIR_OPEN (kept with the position at PAIR_RESYNC_DONE). */
  private openedJournalId = 0;
  /** Streams resumed from the primary's journal (no pass). */
  resumedCount = 0;
  appliedBytes = 0;
  refusedCount = 0;
  private mutationCounter = 0;

  constructor(
    private readonly options: SecondaryPairOptions,
    private readonly volume: Volume,
    private readonly link: Link,
    private readonly clock: Clock,
    private readonly log: LinkLogger,
    readonly meta: PairMeta,
    readonly tracking: Tracking,
  ) {
    super();
    this.name = options.name;
    this.mode = options.mode;
    this.reason = options.initialReason ?? 'declared';
    this.sinceMs = clock.nowMs();
    const state = meta.state;
    this.synced = state.synced;
    this.consistencyValue = state.consistency;
    this.nextSequence = state.nextSequence;
    this.received = this.applied = this.flushed = state.applied;
    // Applied records must not mark the tracking: it holds only this side's own changes.
    tracking.setRecording(false);
    link.on('state', this.onLinkState);
  }

  get currentState(): PairState {
    return this.state;
  }

  /** What status() reports as state, link, peer and sinceMs, without formatting the rest (the simulator's per-step check). */
  get brief(): { state: PairState; link: string; peer: string; sinceMs: number } {
    return { state: this.state, link: this.link.currentState, peer: this.link.peerId, sinceMs: Math.round(this.clock.nowMs() - this.sinceMs) };
  }

  get consistency(): Consistency {
    return this.consistencyValue;
  }

  private move(next: PairState, reason: string): void {
    if (this.state === next && this.reason === reason) return;
    const old = this.state;
    this.state = next;
    this.reason = reason;
    this.sinceMs = this.clock.nowMs();
    this.log.info({ pair: this.name, old, new: next, reason }, `pair ${this.name} (secondary): ${old} -> ${next} (${reason})`);
    this.emit('state', { name: this.name, old, new: next, reason, timeMs: this.clock.nowMs() });
  }

  private readonly onLinkState = (event: LinkStateEvent): void => {
    if (this.closed || event.new === 'up' || event.old !== 'up') return;
    if (this.state === 'mirroring') this.setConsistency('outdated');
    if (this.state !== 'simplex' && this.state !== 'split-brain') this.move('suspended', 'link-down');
  };

  private setConsistency(consistency: Consistency): void {
    this.consistencyValue = consistency;
    if (this.meta.state.consistency !== consistency) this.meta.update({ consistency });
  }

  /** The last sequence applied here (the position reported to the primary). */
  get appliedSequence(): number {
    return this.applied;
  }

  /** Whether this side's image may be taken over without --force. */
  get takeoverSafe(): boolean {
    return this.synced && this.consistencyValue !== 'inconsistent';
  }

  /** PAIR_OPEN from the primary: checked against this controller's declaration. */
  open(request: PairOpen): OpenReply {
    const { options, volume } = this;
    if (request.secondaryVolume !== options.volumeName || request.primaryVolume !== options.remoteVolume) {
      throw new PairError('ERR_PAIR_MISMATCH', `pair ${this.name}: declared here as ${options.remoteVolume} -> ${options.volumeName}, ` +
        `the primary says ${request.primaryVolume} -> ${request.secondaryVolume}`);
    }
    if (request.mode !== options.mode) {
      throw new PairError('ERR_PAIR_MISMATCH', `pair ${this.name}: declared here in mode ${options.mode}, the primary says ${request.mode}`);
    }
    if (request.capacityBytes !== volume.capacityBytes || request.blockSize !== volume.blockSize) {
      throw new PairError('ERR_PAIR_MISMATCH', `pair ${this.name}: the secondary volume has capacity ${volume.capacityBytes} and block size ` +
        `${volume.blockSize}, the primary ${request.capacityBytes} and ${request.blockSize}`);
    }
    const local = this.meta.state;
    const result = decide(local.generations, request.generations, { discardLocal: local.discard, discardPeer: request.discard });
    this.peerGenerations = request.generations;
    this.lastDecision = { decision: result.decision, rule: result.rule };
    this.log.info({ pair: this.name, decision: result.decision, rule: result.rule }, `pair ${this.name}: generations: ${result.decision} (rule ${result.rule}: ${result.text})`);
    switch (result.decision) {
      case 'split-brain':
        this.move('split-brain', 'generations');
        throw new PairError('ERR_PAIR_SPLIT_BRAIN', `pair ${this.name}: split brain (rule ${result.rule}: ${result.text}); nothing is overwritten until \`resolve\``);
      case 'unrelated':
        throw new PairError('ERR_PAIR_UNRELATED', `pair ${this.name}: ${result.text}; refused, nothing is touched`);
      case 'bitmap-source':
      case 'full-source':
        throw new PairError('ERR_PAIR_ROLE', `pair ${this.name}: the secondary holds the newer generation (rule ${result.rule}); take it over or resolve`);
      default:
    }
    if (this.mayResume(request, result)) {
      this.resumedCount++;
      // Rule 5: the primary started a generation at its first write while the link was down;
      // the records from applied + 1 are every change since, so this side takes that generation
      // now (as at the end of a pass; its tracking still covers them until they are applied).
      if (result.rule === 5) this.meta.update({ generations: completeAsTarget(local.generations, request.generations) });
      this.setConsistency('consistent');
      this.move('mirroring', 'resumed from the journal');
      return {
        decision: OPENER_VIEW[result.decision], rule: result.rule, nextSequence: this.nextSequence, applied: this.applied,
        generations: this.meta.state.generations, all: false, dirty: [], resumed: true,
      };
    }
    this.openedJournalId = request.journalId;
    // The image is about to be overwritten out of order: keep it (a snapshot) while it is still
    // a consistent one (a completed copy, not an interrupted resync).
    if (this.synced && this.consistencyValue !== 'inconsistent') this.options.images?.keep(`resync of pair ${this.name}`);
    this.setConsistency('inconsistent');
    this.consistentAt = undefined;
    let dirty = this.tracking.ranges(MAX_DIRTY_RANGES);
    if (result.decision === 'full-target' || !this.synced) {
      // A full copy sends the primary's allocated tracks only: start from an empty image, so
      // what is a hole there is a hole here.
      this.volume.trim(0, this.volume.capacityBytes);
      this.synced = false;
      this.nextSequence = 1;
      this.received = this.applied = this.flushed = 0;
      this.meta.update({ synced: false, applied: 0, nextSequence: 1 });
      dirty = [];
    }
    const full = result.decision === 'full-target' || !this.synced;
    this.move(full ? 'copying' : 'resyncing', 'opened by the primary');
    return {
      decision: full ? 'full-source' : OPENER_VIEW[result.decision], rule: result.rule,
      nextSequence: this.nextSequence, applied: this.applied, generations: local.generations, all: dirty === null, dirty: dirty ?? [],
      resumed: false,
    };
  }

  /** Whether the primary may continue the ordered stream at applied + 1 (the design note). */
  private mayResume(request: PairOpen, result: DecisionResult): boolean {
    const local = this.meta.state;
    // The same generation (rule 4), or one the primary started from this side's (rule 5: it
    // wrote while the link was down; its hold keeps every record of those writes).
    const generation = (result.decision === 'none' && result.rule === 4) || (result.decision === 'bitmap-target' && result.rule === 5);
    return request.resume && generation && this.synced && this.positionExact && this.consistentAt === undefined &&
      (this.consistencyValue === 'consistent' || this.consistencyValue === 'outdated') &&
      !local.discard && request.journalId !== 0 && local.journalId === request.journalId &&
      this.applied + 1 >= request.journalHead && this.applied <= request.journalNext - 1 &&
      this.tracking.ranges(1)?.length === 0;
  }

  private refuse(error: PairError): void {
    this.refusedCount++;
    this.log.warn({ pair: this.name, code: error.code }, `pair ${this.name}: refused: ${error.message}`);
    try {
      this.link.send(MessageType.PAIR_ERROR, encodePairError(this.name, error.code, error.message));
    } catch {
      // The link is gone: the primary suspends anyway.
    }
  }

  private checkRange(byteOffset: number, byteLength: number, what: string): void {
    if (byteOffset + byteLength > this.volume.capacityBytes) {
      throw new PairError('ERR_PAIR_RANGE', `pair ${this.name}: ${what} at ${byteOffset}+${byteLength} is past the end (${this.volume.capacityBytes})`);
    }
  }

  /** PAIR_RECORDS: validated as a whole, then applied in order. */
  applyRecords(records: readonly ShippedRecord[]): void {
    try {
      if (this.options.journalGroup !== undefined) {
        throw new PairError('ERR_PAIR_MISMATCH', `pair ${this.name}: declared here in journal group ${this.options.journalGroup}; the primary ships it alone`);
      }
      if (this.state !== 'mirroring' && this.state !== 'copying' && this.state !== 'resyncing') {
        throw new PairError('ERR_PAIR_STATE', `pair ${this.name}: records while ${this.state}`);
      }
      let expected = this.nextSequence;
      for (const record of records) {
        if (record.sequence !== expected) {
          throw new PairError('ERR_PAIR_SEQUENCE', `pair ${this.name}: record ${record.sequence}, expected ${expected}`);
        }
        this.checkRecordRange(record);
        expected++;
      }
    } catch (error) {
      if (error instanceof PairError) {
        this.refuse(error);
        return;
      }
      throw error;
    }
    const ordered = this.options.mutation === 'apply-out-of-order' ? [...records].reverse() : records;
    let marker = 0;
    for (const record of ordered) {
      this.applyOne(record);
      if (record.kind === 'marker' && record.sequence > marker) marker = record.sequence;
    }
    this.flushApplied();
    // A lockstep marker is safe-stored at once: flush, then the position report (flushed at or
    // past the marker) is the primary's answer, one message instead of a PAIR_MARKER round trip.
    // On a memory volume, whose flush is done in the call, that report also carries the applied
    // position at once, so the batch sends no report of its own before it (one message less on
    // the barrier's path); a flush that takes real time (shared, file) does not hold back the
    // applied report (a sync writer waits for it). A failed flush still reports.
    if (records.length > 0) this.standAt((records[records.length - 1] as ShippedRecord).sequence, marker === 0 || this.volume.backing !== 'memory');
    if (marker > 0) void this.safeStoreMarker(marker).catch(() => this.reportPosition());
  }

  /** A record's bytes must lie inside the volume (throws ERR_PAIR_RANGE). */
  checkRecordRange(record: ShippedRecord): void {
    this.checkRange(record.byteOffset, record.byteLength, `a ${record.kind} record`);
  }

  /**
   * A journal group's batch covers this side's records after `previous` (journal-group.ts):
   * it must be declared in that group, mirroring, and the window must continue the last one.
   */
  checkGroupWindow(group: string, previous: number): void {
    if (this.options.journalGroup !== group) {
      throw new PairError('ERR_PAIR_MISMATCH', `pair ${this.name}: ${this.options.journalGroup === undefined ? 'declared here in no journal group' : `declared here in journal group ${this.options.journalGroup}`}, the primary ships it in ${group}`);
    }
    if (this.state !== 'mirroring') throw new PairError('ERR_PAIR_STATE', `pair ${this.name}: group records while ${this.state}`);
    if (previous !== this.nextSequence - 1) {
      throw new PairError('ERR_PAIR_SEQUENCE', `pair ${this.name}: a group batch continues after ${previous}, this side stands at ${this.nextSequence - 1}`);
    }
  }

  /** Sends the refusal of a message to the primary (it suspends with secondary-error). */
  refuseWith(error: PairError): void {
    this.refuse(error);
  }

  /** Applies one validated record (runs of writes are batched until flushApplied()). */
  applyOne(record: ShippedRecord): void {
    if (this.options.mutation === 'drop-write' && record.kind === 'write' && ++this.mutationCounter % 5 === 0) return;
    const batch = this.batch;
    if (record.kind === 'write') {
      batch.push({ byteOffset: record.byteOffset, data: record.data });
      if (batch.length === Volume.MAX_WRITEV_COUNT) this.flushBatch();
    } else if (record.kind === 'marker') {
      // A lockstep marker: nothing to apply; PAIR_MARKER later asks for it to be safe-stored.
    } else {
      this.flushBatch();
      if (record.kind === 'zero') this.volume.writeZeroes(record.byteOffset, record.byteLength);
      else this.volume.trim(record.byteOffset, record.byteLength);
    }
    this.appliedBytes += record.byteLength;
  }

  /** Writes the batched run of writes down (in order). */
  flushApplied(): void {
    this.flushBatch();
  }

  /** Everything through `sequence` is applied: persist the position and report it. */
  standAt(sequence: number, report = true): void {
    if (sequence < this.nextSequence - 1) return;
    this.nextSequence = sequence + 1;
    this.received = this.applied = sequence;
    this.positionExact = true;
    this.meta.update({ applied: sequence, nextSequence: sequence + 1 });
    if (this.consistentAt !== undefined && sequence >= this.consistentAt) this.caughtUpAfterPass();
    if (report) this.reportPosition();
  }

  private readonly batch: WriteOp[] = [];

  private flushBatch(): void {
    const batch = this.batch;
    if (batch.length === 0) return;
    if (batch.length === 1) this.volume.write((batch[0] as WriteOp).byteOffset, (batch[0] as WriteOp).data);
    else this.volume.writev(batch);
    batch.length = 0;
  }

  /** PAIR_TRACK: current primary bytes during a copy or resync pass. */
  applyTrack(byteOffset: number, data: Buffer): void {
    try {
      if (this.state !== 'copying' && this.state !== 'resyncing') throw new PairError('ERR_PAIR_STATE', `pair ${this.name}: a track while ${this.state}`);
      this.checkRange(byteOffset, data.length, 'a track');
    } catch (error) {
      if (error instanceof PairError) {
        this.refuse(error);
        return;
      }
      throw error;
    }
    this.volume.write(byteOffset, data);
    this.appliedBytes += data.length;
  }

  /** Set after a pass until this side has applied through it: then its image is consistent. */
  private consistentAt: number | undefined;

  /**
   * PAIR_RESYNC_DONE: the pass is complete; ordered records resume at `nextSequence`. The image
   * is consistent once the records through `consistentAt` are applied (the tracks were read up
   * to then); until then it stays inconsistent and keeps its last consistent image.
   */
  resyncDone(nextSequence: number, source: Generations, consistentAt = nextSequence - 1): void {
    if (this.state !== 'copying' && this.state !== 'resyncing') {
      throw new PairError('ERR_PAIR_STATE', `pair ${this.name}: resync done while ${this.state}`);
    }
    this.nextSequence = nextSequence;
    this.received = this.applied = nextSequence - 1;
    // A new stream: nothing of it is known to be flushed until the next PAIR_FLUSH.
    this.flushed = 0;
    const consistentNow = consistentAt <= nextSequence - 1;
    this.consistentAt = consistentNow ? undefined : consistentAt;
    this.consistencyValue = consistentNow ? 'consistent' : 'inconsistent';
    this.synced = true;
    // This side's own changes were sent to the source in the open reply and overwritten by it.
    this.tracking.clearAll();
    this.positionExact = true;
    this.meta.update({
      generations: completeAsTarget(this.meta.state.generations, source), synced: true, consistency: this.consistencyValue,
      applied: nextSequence - 1, nextSequence, discard: false, journalId: this.openedJournalId,
    });
    this.peerGenerations = source;
    this.move('mirroring', 'resync done');
    // Consistent again: the image kept during the resync goes.
    if (consistentNow) this.options.images?.release();
  }

  /** Applied through the pass's end: the image is the primary's at that sequence. */
  private caughtUpAfterPass(): void {
    this.consistentAt = undefined;
    this.setConsistency('consistent');
    this.options.images?.release();
  }

  /**
   * Why a consistency group's copy at the cut `through` cannot be taken here now, or undefined:
   * this side must be mirroring and stand exactly at the cut (PAIR_CG_CUT follows the records
   * through it and precedes every later one on the link).
   */
  cutProblem(through: number): string | undefined {
    if (this.closed) return `pair ${this.name} is closed`;
    if (this.state !== 'mirroring') return `pair ${this.name} is ${this.state} on the secondary`;
    if (this.nextSequence - 1 !== through) return `pair ${this.name}: the secondary stands at ${this.nextSequence - 1}, the cut is at ${through}`;
    return undefined;
  }

  /** The last lockstep marker this side safe-stored (flushed through), 0 for none. */
  lastMarker = 0;

  /**
   * PAIR_MARKER: the primary's lockstep marker `sequence` is applied here; flush, then record
   * it as safe-stored. Resolves with the flushed position (ERR_PAIR_STATE before it is applied).
   */
  async safeStoreMarker(sequence: number): Promise<number> {
    if (this.state !== 'mirroring' || this.applied < sequence) {
      throw new PairError('ERR_PAIR_STATE', `pair ${this.name}: marker ${sequence} is not applied here (applied ${this.applied}, ${this.state})`);
    }
    const flushed = await this.flush();
    if (flushed >= sequence) this.lastMarker = Math.max(this.lastMarker, sequence);
    return flushed;
  }

  /** PAIR_FLUSH: flushes the volume; resolves with the flushed position. */
  async flush(): Promise<number> {
    const through = this.applied;
    await settled(this.clock, this.volume.flush());
    this.flushed = Math.max(this.flushed, through);
    this.reportPosition();
    return this.flushed;
  }

  private reportPosition(): void {
    try {
      this.link.send(MessageType.PAIR_POSITION, encodePosition({ name: this.name, received: this.received, applied: this.applied, flushed: this.flushed }));
    } catch {
      // Link down or full: the next report carries the position.
    }
  }

  status(): Record<string, unknown> {
    const oosTracks = this.tracking.count();
    return {
      name: this.name,
      role: 'secondary',
      mode: this.mode,
      peer: this.link.peerId,
      volume: this.options.volumeName,
      remoteVolume: this.options.remoteVolume,
      state: this.state,
      reason: this.reason,
      sinceMs: Math.round(this.clock.nowMs() - this.sinceMs),
      consistency: this.consistencyValue,
      link: this.link.currentState,
      positions: { received: this.received, applied: this.applied, flushed: this.flushed, next: this.nextSequence },
      appliedBytes: this.appliedBytes,
      resumedStreams: this.resumedCount,
      refused: this.refusedCount,
      oos: { tracks: oosTracks, bytes: oosTracks * this.tracking.granularityBytes },
      generations: formatGenerations(this.meta.state.generations),
      peerGenerations: this.peerGenerations === undefined ? null : formatGenerations(this.peerGenerations),
      decision: this.lastDecision ?? null,
      discard: this.meta.state.discard,
      lastMarker: this.lastMarker,
      // While inconsistent: the snapshot that holds the last consistent image (readable as <export>@<name>).
      lastConsistentImage: this.options.images?.current ?? null,
    };
  }

  /**
   * Neither side keeps its data (contradictory resolves, found on connect: pairs.ts): split
   * brain again, until a resolve with the link up names the side to keep.
   */
  markSplitBrain(reason: string): void {
    if (!this.closed) this.move('split-brain', reason);
  }

  /** A crash: stops at once, writes nothing. */
  crash(): void {
    this.closed = true;
    this.link.off('state', this.onLinkState);
    this.removeAllListeners();
  }

  /** Stops this side (`keepTracking`: the bitmaps stay open for the side that replaces it). */
  close(options: { keepTracking?: boolean } = {}): void {
    if (this.closed) return;
    this.closed = true;
    this.link.off('state', this.onLinkState);
    if (options.keepTracking !== true) this.tracking.close();
  }
}
