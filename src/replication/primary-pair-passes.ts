// Notes on the design
// -------------------
// The open of the primary side of a pair and what follows it (primary-pair.ts's notes say why it
// is correct): PAIR_OPEN with the generation ids and the resume asked, the answer (a refusal,
// a demotion, a split brain, a resume of the ordered stream from the journal, or a decision for
// a pass), and the copy or resync pass over the sealed tracking bitmap, clear-then-read, ending
// with PAIR_RESYNC_DONE and ordered streaming from J. The third layer of the stack
// PrimaryPairCore (primary-pair-core.ts) <- PrimaryPairShipping (primary-pair-shipping.ts) <-
// PrimaryPairPasses (this file) <- PrimaryPair (primary-pair.ts).
//
// A pass is abandoned as soon as `passGeneration` moves (a suspension, a split brain, a new open,
// close or crash); a PAIR_RESYNC_DONE of an abandoned pass still in flight is waited for by the
// next open.
//
// Errors: an open never rejects for a refusal (the pair suspends, demotes or enters split brain,
// and says why); a failure of open() itself is a bug, logged loudly by runOpen().

import { isLinkError } from '../transport/errors';
import { MessageType } from '../transport/message-types';
import { completeAsSource, newGenerationId } from './generations';
import { type OpenReply, decodeOpenReply, encodePairOpen, encodeResyncDone, encodeTrack } from './messages';
import { UNDECLARED_RETRY_MS } from './primary-pair-options';
import { PrimaryPairShipping } from './primary-pair-shipping';

/** The open, the resume of the stream and the copy or resync pass (see the notes above). */
export abstract class PrimaryPairPasses extends PrimaryPairShipping {
  /** Starts: opens the pair when the link is up (or once it comes up). */
  start(): void {
    if (this.link.isUp) this.runOpen();
  }

  /** open(), whose failure is a bug: logged loudly, never an unhandled rejection. */
  protected override runOpen(): void {
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
}
