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
// Layout: the primary side is a stack of classes, one concern each: PrimaryPairCore
// (primary-pair-core.ts: the state, its one setter, the stream hold, suspension) <-
// PrimaryPairShipping (primary-pair-shipping.ts: host writes, the pump, positions, ack points) <-
// PrimaryPairPasses (primary-pair-passes.ts: the open, the resume, the copy or resync pass) <-
// PrimaryPair (this file: the consistency group's cut, flush, catching up, safe-store, the
// operator's verbs, status, crash and close). Its options, the GroupStream and PairStateEvent
// types, KIND_OF, and its private bookkeeping shapes and limits are in primary-pair-options.ts
// (the public names are re-exported here, so importers keep one path); a consistency group's
// fence on the stream is cut-fence.ts.

import type { CutReply } from '../cgroup/messages';
import { MessageType } from '../transport/message-types';
import { formatGenerations } from './generations';
import { decodeSequence, encodeMarker, encodeName } from './messages';
import { type Consistency, PairError } from './pair-state';
import { MARKER_REPORT_WAIT_MS } from './primary-pair-options';
import { PrimaryPairPasses } from './primary-pair-passes';

export type { PrimaryPairOptions, GroupStream, PairStateEvent } from './primary-pair-options';
export { KIND_OF } from './primary-pair-options';

/** The primary side of a pair. */
export class PrimaryPair extends PrimaryPairPasses {
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
    this.caughtUpClearTimer?.cancel();
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
    this.caughtUpClearTimer?.cancel();
    this.link.off('state', this.onLinkState);
    this.link.off('drain', this.onDrain);
    for (const waiter of this.waiters) waiter.resolve();
    this.waiters = [];
    this.drainWaiter?.();
    if (options.keepTracking !== true) this.tracking.close();
  }
}
