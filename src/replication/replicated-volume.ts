// Notes on the design
// -------------------
// A primary volume with its pairs: the write path behind the PairVolume that the NBD server
// exports (pair-volume.ts; reads, geometry and bitmaps go to the volume directly). It writes
// into a journal (attached to the volume, so every write of every path is journaled natively):
// its own, or its journal group's (journal-feed.ts watches the journal, ships what any path
// wrote, suspends on a full journal and releases space). It gives the NBD server each write's
// ack point, and makes a FLUSH also flush every sync secondary.
//
// A kept journal (journal-feed.ts) found from an earlier run may list writes that reached the
// store but not the journal before a SIGKILL (the journal's intents): they are journaled again
// from the store before the volume's pairs start (JournalFeed.recoverIntents), as new records
// after every other, so the journal holds every byte the store holds that a secondary may lack.
// Any of them not journaled (the journal full) leaves the feed not resumable: the pairs resync
// from their tracking, which covers it. A journal group's shared journal is recovered volume by
// volume, as each member joins.
//
// Native lanes (docs/nbd-native.md, "Pair exports"): the volume has a lane gate
// (native/core/lane_gate.hpp). It is open while a lane's write needs nothing from this side:
// the volume is its PairVolume's write target, it has its own journal (not a group's: the
// journal's intent area has one writer at a time, and only this volume's writers share this
// gate), every pair is async and mirroring, and no consistency group's hold is in force. Then a
// lane stores and journals a host write itself, under the gate's lock, and acknowledges it (the
// async ack point); the feed's poll ships it (journal-feed.ts). Every transition that changes
// that answer recomputes the gate at once, on this thread: closing takes the gate's lock, so
// every lane write is ordered before the transition, and after it a lane hands its connection
// back to the event loop at its next write, where this write path applies.

import { type Clock, settled } from '../runtime/clock';
import type { Journal } from '../storage/journal';
import { Volume } from '../storage/volume';
import { JournalFeed, type JournalFeedOptions, type KeptJournal } from './journal-feed';
import type { PrimaryPair } from './primary-pair';

/**
 * A consistency group's hold (src/cgroup/slave.ts): while set, a host write journaled after
 * `cut` (or not journaled: the journal was full) completes only once `released` resolves. The
 * write reaches the store and the journal at once; only its acknowledgement waits, so no host
 * sees it complete before every controller of the group has taken its cut.
 */
export interface WriteHold {
  readonly cut: number;
  readonly released: Promise<void>;
  /** Counts the writes it held. */
  held: number;
}

function sameWaits(a: readonly Promise<void>[], b: readonly Promise<void>[]): boolean {
  if (a.length !== b.length) return false;
  for (let index = 0; index < a.length; index++) if (a[index] !== b[index]) return false;
  return true;
}

/** Options of a replicated volume (of its journal, when it has its own). */
export type ReplicatedVolumeOptions = JournalFeedOptions;

/** A primary volume and its pairs. */
export class ReplicatedVolume {
  readonly journal: Journal;
  readonly pairs: PrimaryPair[] = [];
  /** The journal's watch; shared with the other volumes of a journal group. */
  readonly feed: JournalFeed;
  private readonly ownFeed: boolean;
  private stopped = false;
  #hold: WriteHold | undefined;
  /** Set by the PairVolume while this volume is its write target (see the note). */
  #writeTarget = false;
  #laneGateOpen = false;

  /** A consistency group's hold, while one is in force. */
  get hold(): WriteHold | undefined {
    return this.#hold;
  }

  set hold(hold: WriteHold | undefined) {
    this.#hold = hold;
    this.updateLaneGate();
  }

  /** `feed`: a journal group's (shared); without one the volume gets a journal of its own. */
  /** `kept`: where its own journal is kept (journal-feed.ts); without it the journal is in memory. */
  /** `log`: where a reopened journal's recovery says what it did. */
  constructor(readonly volume: Volume, private readonly clock: Clock, options: ReplicatedVolumeOptions = {}, feed?: JournalFeed, kept?: KeptJournal,
    log?: KeptJournal['log']) {
    this.ownFeed = feed === undefined;
    this.feed = feed ?? new JournalFeed(clock, options, kept);
    this.journal = this.feed.journal;
    volume.attachJournal(this.journal);
    if (this.feed.reopened) {
      // A journal group's members recover their own intents as each joins; the group is
      // resumable only while every member's were journaled (journal-feed.ts).
      const complete = this.feed.recoverIntents(volume, log ?? kept?.log);
      this.feed.resumable = this.ownFeed ? complete : this.feed.resumable && complete;
      if (this.ownFeed) this.feed.settle();
    }
    this.feed.join(this);
    volume.setLaneGate(false);
  }

  /** The PairVolume's word: host writes go to this volume now (see the note). */
  setWriteTarget(target: boolean): void {
    this.#writeTarget = target;
    this.updateLaneGate();
  }

  /** True while native lanes may write this volume (see the note). */
  get laneGateOpen(): boolean {
    return this.#laneGateOpen;
  }

  /** Opens or closes the lane gate by the rule of the note; call after anything it reads changed. */
  updateLaneGate(): void {
    const open = !this.stopped && this.#writeTarget && this.ownFeed && this.#hold === undefined && this.pairs.length > 0 &&
      this.pairs.every((pair) => pair.lanesMayWrite);
    this.setLaneGateOpen(open);
  }

  /**
   * Closes the gate now (a consistency group's cut is about to be read: no lane write may land
   * between the cut and the hold). The next updateLaneGate decides again.
   */
  closeLaneGate(): void {
    this.setLaneGateOpen(false);
  }

  private setLaneGateOpen(open: boolean): void {
    if (open === this.#laneGateOpen || this.volume.closed) return;
    this.#laneGateOpen = open;
    this.volume.setLaneGate(open);
  }

  add(pair: PrimaryPair): void {
    this.pairs.push(pair);
    pair.on('progress', this.onRelease);
    pair.on('released', this.onRelease);
    pair.on('state', this.onPairState);
    this.updateLaneGate();
  }

  private readonly onRelease = (): void => this.release();
  private readonly onPairState = (): void => this.updateLaneGate();

  /** Takes a pair out (it was demoted); true when none is left. */
  remove(pair: PrimaryPair): boolean {
    const index = this.pairs.indexOf(pair);
    if (index >= 0) this.pairs.splice(index, 1);
    pair.off('progress', this.onRelease);
    pair.off('released', this.onRelease);
    pair.off('state', this.onPairState);
    this.updateLaneGate();
    this.release();
    return this.pairs.length === 0;
  }

  /** Releases journal records no pair (of any volume of the journal) needs any more. */
  release(): void {
    if (!this.stopped) this.feed.release();
  }

  // ---- the replicated write path (PairVolume, the export, reads the volume itself) ---------

  /** Tracks the range in every pair before it reaches the store (tracking.ts). */
  private beforeWrite(byteOffset: number, byteLength: number): void {
    const { pairs } = this;
    for (let index = 0; index < pairs.length; index++) (pairs[index] as PrimaryPair).beforeWrite(byteOffset, byteLength);
  }

  write(byteOffset: number, source: Uint8Array): number {
    this.beforeWrite(byteOffset, source.length);
    const sequence = this.volume.write(byteOffset, source);
    this.feed.afterWrite(sequence);
    return sequence;
  }

  /** Receive into the store (pair-volume.ts): tracked in every pair before a byte lands. */
  beginDirectWrite(byteOffset: number, byteLength: number): Buffer | null {
    this.beforeWrite(byteOffset, byteLength);
    return this.volume.beginDirectWrite(byteOffset, byteLength);
  }

  /** Journals a direct write from the store (the volume's commit) and ships it. */
  commitDirectWrite(byteOffset: number, byteLength: number): number {
    const sequence = this.volume.commitDirectWrite(byteOffset, byteLength);
    if (!this.stopped) this.feed.afterWrite(sequence);
    return sequence;
  }

  writeZeroes(byteOffset: number, byteLength: number, options?: { mayPunchHole?: boolean }): number {
    this.beforeWrite(byteOffset, byteLength);
    const sequence = this.volume.writeZeroes(byteOffset, byteLength, options);
    this.feed.afterWrite(sequence);
    return sequence;
  }

  trim(byteOffset: number, byteLength: number): number {
    this.beforeWrite(byteOffset, byteLength);
    const sequence = this.volume.trim(byteOffset, byteLength);
    this.feed.afterWrite(sequence);
    return sequence;
  }

  /**
   * The ack point of a write that returned `sequence`: null when the host write may complete
   * now (async pairs, or no sync pair mirroring), else a promise for every sync secondary.
   */
  writeCompletion(sequence: number): Promise<void> | null {
    let waits: Promise<void>[] | undefined;
    const hold = this.hold;
    if (hold !== undefined && (sequence === Volume.JOURNAL_FULL || sequence > hold.cut)) {
      hold.held++;
      waits = [hold.released];
    }
    for (const pair of this.pairs) {
      const wait = pair.ackPoint(sequence === Volume.JOURNAL_FULL ? 0 : sequence);
      if (wait !== null) (waits ??= []).push(wait);
    }
    if (waits === undefined) return null;
    if (waits.length === 1) return waits[0] as Promise<void>;
    // Writes of a burst wait on the same promises (one per pair's group, the hold's release):
    // they share one combined promise too, which settles exactly as a new one would.
    const combined = this.combined;
    if (combined !== undefined && sameWaits(combined.waits, waits)) return combined.promise;
    const promise = Promise.all(waits).then(() => undefined);
    this.combined = { waits, promise };
    return promise;
  }

  /** The last combined ack point, and what it waits for. */
  private combined: { waits: Promise<void>[]; promise: Promise<void> } | undefined;

  /** Flushes locally, then every sync secondary. */
  async flush(): Promise<void> {
    await settled(this.clock, this.volume.flush());
    await Promise.all(this.pairs.map((pair) => pair.flushRemote()));
  }

  /** A crash: the pairs stop without acknowledging anything. */
  crash(): void {
    this.stopped = true;
    this.setLaneGateOpen(false);
    this.feed.crash();
    for (const pair of this.pairs) pair.crash();
  }

  /**
   * Closes the pairs and leaves the journal; its own journal (or a group's, once its last volume
   * left) is closed. The volume is its controller's.
   */
  async close(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const pair of this.pairs) pair.close();
    // Closed and dropped before the journal goes: a lane still holding it writes no more.
    if (!this.volume.closed) this.volume.setLaneGate(null);
    this.#laneGateOpen = false;
    if (!this.volume.closed) this.volume.attachJournal(null);
    if (this.feed.leave(this) || this.ownFeed) await this.feed.close();
  }
}
