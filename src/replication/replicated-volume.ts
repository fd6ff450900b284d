// Notes on the design
// -------------------
// A primary volume with its pairs: the write path behind the PairVolume that the NBD server
// exports (pair-volume.ts; reads, geometry and bitmaps go to the volume directly). It owns the
// volume's journal (attached to the volume, so every write of every path is journaled
// natively), tells its pairs when something was written, gives the NBD
// server each write's ack point, makes a FLUSH also flush every sync secondary, and releases
// journal space through the lowest sequence any pair still needs.
//
// Writes that reach the volume by another path (the API, another process that opened it by
// name) are journaled by the same native write path; a poll on the journal's next sequence
// ships them, and a rise of the journal's full counter suspends the pairs with journal-full.

import { type Clock, type TimerHandle, settled } from '../runtime/clock';
import { Journal } from '../storage/journal';
import { Volume } from '../storage/volume';
import type { PrimaryPair } from './primary-pair';

/** Options of a replicated volume. */
export interface ReplicatedVolumeOptions {
  /** Journal ring bytes. @default 67108864 (64 MiB) */
  journalCapacityBytes?: number;
  /** Largest record (a larger write suspends the pairs as journal-full). @default 33554432 (32 MiB) */
  maxRecordBytes?: number;
  /** How often writes from other paths are looked for. @default 20 */
  pollIntervalMs?: number;
}

/** A primary volume and its pairs. */
export class ReplicatedVolume {
  readonly journal: Journal;
  readonly pairs: PrimaryPair[] = [];
  private lastFullCount = 0;
  private lastSeenSequence = 0;
  private pollTimer: TimerHandle | undefined;
  private stopped = false;

  constructor(readonly volume: Volume, private readonly clock: Clock, private readonly options: ReplicatedVolumeOptions = {}) {
    const capacityBytes = options.journalCapacityBytes ?? 64 * 1024 * 1024;
    this.journal = Journal.create({ capacityBytes, maxRecordBytes: Math.min(options.maxRecordBytes ?? 32 * 1024 * 1024, Math.floor(capacityBytes / 4)) });
    volume.attachJournal(this.journal);
    this.lastSeenSequence = this.journal.nextSequence;
    this.poll();
  }

  add(pair: PrimaryPair): void {
    this.pairs.push(pair);
    pair.on('progress', this.onRelease);
    pair.on('released', this.onRelease);
  }

  private readonly onRelease = (): void => this.release();

  /** Takes a pair out (it was demoted); true when none is left. */
  remove(pair: PrimaryPair): boolean {
    const index = this.pairs.indexOf(pair);
    if (index >= 0) this.pairs.splice(index, 1);
    pair.off('progress', this.onRelease);
    pair.off('released', this.onRelease);
    this.release();
    return this.pairs.length === 0;
  }

  private poll(): void {
    this.pollTimer = this.clock.setTimer(() => {
      if (this.stopped) return;
      this.check();
      this.poll();
    }, this.options.pollIntervalMs ?? 20, { unref: true });
  }

  /** After any write: ship, or suspend on a full journal. */
  private check(): void {
    const stats = this.journal.stats();
    if (stats.fullCount !== this.lastFullCount) {
      this.lastFullCount = stats.fullCount;
      for (const pair of this.pairs) pair.journalFull();
      this.release();
    }
    if (stats.nextSequence !== this.lastSeenSequence) {
      this.lastSeenSequence = stats.nextSequence;
      for (const pair of this.pairs) pair.notifyWrite(stats.nextSequence - 1);
    }
  }

  /** Releases journal records no pair needs any more. */
  release(): void {
    if (this.stopped) return;
    let needed = Infinity;
    for (const pair of this.pairs) needed = Math.min(needed, pair.neededSequence);
    const through = needed === Infinity ? this.journal.nextSequence - 1 : needed - 1;
    if (through >= this.journal.headSequence) this.journal.release(through);
  }

  // ---- the replicated write path (PairVolume, the export, reads the volume itself) ---------

  /**
   * After a host write: its sequence tells what to do without asking the journal (the hot
   * path); a full journal, or a gap (a write by another path came first), takes the slow check.
   */
  private afterWrite(sequence: number): void {
    if (sequence <= 0 || sequence !== this.lastSeenSequence) {
      this.check();
      return;
    }
    this.lastSeenSequence = sequence + 1;
    const { pairs } = this;
    for (let index = 0; index < pairs.length; index++) (pairs[index] as PrimaryPair).notifyWrite(sequence);
  }

  /** Tracks the range in every pair before it reaches the store (tracking.ts). */
  private beforeWrite(byteOffset: number, byteLength: number): void {
    const { pairs } = this;
    for (let index = 0; index < pairs.length; index++) (pairs[index] as PrimaryPair).beforeWrite(byteOffset, byteLength);
  }

  write(byteOffset: number, source: Uint8Array): number {
    this.beforeWrite(byteOffset, source.length);
    const sequence = this.volume.write(byteOffset, source);
    this.afterWrite(sequence);
    return sequence;
  }

  writeZeroes(byteOffset: number, byteLength: number, options?: { mayPunchHole?: boolean }): number {
    this.beforeWrite(byteOffset, byteLength);
    const sequence = this.volume.writeZeroes(byteOffset, byteLength, options);
    this.afterWrite(sequence);
    return sequence;
  }

  trim(byteOffset: number, byteLength: number): number {
    this.beforeWrite(byteOffset, byteLength);
    const sequence = this.volume.trim(byteOffset, byteLength);
    this.afterWrite(sequence);
    return sequence;
  }

  /**
   * The ack point of a write that returned `sequence`: null when the host write may complete
   * now (async pairs, or no sync pair mirroring), else a promise for every sync secondary.
   */
  writeCompletion(sequence: number): Promise<void> | null {
    let waits: Promise<void>[] | undefined;
    for (const pair of this.pairs) {
      const wait = pair.ackPoint(sequence === Volume.JOURNAL_FULL ? 0 : sequence);
      if (wait !== null) (waits ??= []).push(wait);
    }
    if (waits === undefined) return null;
    return waits.length === 1 ? (waits[0] as Promise<void>) : Promise.all(waits).then(() => undefined);
  }

  /** Flushes locally, then every sync secondary. */
  async flush(): Promise<void> {
    await settled(this.clock, this.volume.flush());
    await Promise.all(this.pairs.map((pair) => pair.flushRemote()));
  }

  /** A crash: stops polling; the pairs stop without acknowledging anything. */
  crash(): void {
    this.stopped = true;
    this.pollTimer?.cancel();
    for (const pair of this.pairs) pair.crash();
  }

  /** Stops polling and closes the pairs and the journal (the volume is its controller's). */
  async close(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.pollTimer?.cancel();
    for (const pair of this.pairs) pair.close();
    if (!this.volume.closed) this.volume.attachJournal(null);
    await this.journal.close();
  }
}
