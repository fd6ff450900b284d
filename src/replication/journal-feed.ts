// Notes on the design
// -------------------
// A journal and the primary volumes that write into it. Every replicated volume has one: its
// own (a journal of one volume), or its journal group's (several volumes, one write order; see
// journal-group.ts). The feed watches the journal for the write path and for other paths:
//   - after a host write the write path hands it the write's sequence; the next sequence
//     expected is the fast path (nothing to ask the journal), anything else (a write by another
//     path came first, or the journal was full) takes the slow check;
//   - a poll looks at the journal's next sequence and full counter now and then, so writes by
//     any path are shipped, and a rise of the full counter suspends every pair of every volume
//     of the journal with journal-full (the ordered stream broke for all of them at once);
//   - space is released through the lowest sequence any pair of any of its volumes still needs.
// Every pair of every volume of the feed hears of every write (notifyWrite): a journal group's
// stream covers all of its members at once.

import { type Clock, type TimerHandle } from '../runtime/clock';
import { Journal } from '../storage/journal';
import type { PrimaryPair } from './primary-pair';

/** Options of a journal. */
export interface JournalFeedOptions {
  /** Journal ring bytes. @default 67108864 (64 MiB) */
  journalCapacityBytes?: number;
  /** Largest record (a larger write suspends the pairs as journal-full). @default 33554432 (32 MiB) */
  maxRecordBytes?: number;
  /** How often writes from other paths are looked for. @default 20 */
  pollIntervalMs?: number;
}

/** Something that writes into a feed's journal: its pairs hear of every write. */
export interface FeedMember {
  readonly pairs: readonly PrimaryPair[];
}

/** A journal, the volumes that write into it, and the watch over it. */
export class JournalFeed {
  readonly journal: Journal;
  private readonly members = new Set<FeedMember>();
  private lastFullCount = 0;
  private lastSeenSequence: number;
  private pollTimer: TimerHandle | undefined;
  private stopped = false;

  constructor(private readonly clock: Clock, private readonly options: JournalFeedOptions = {}) {
    const capacityBytes = options.journalCapacityBytes ?? 64 * 1024 * 1024;
    this.journal = Journal.create({ capacityBytes, maxRecordBytes: Math.min(options.maxRecordBytes ?? 32 * 1024 * 1024, Math.floor(capacityBytes / 4)) });
    this.lastSeenSequence = this.journal.nextSequence;
    this.poll();
  }

  get closed(): boolean {
    return this.stopped;
  }

  join(member: FeedMember): void {
    this.members.add(member);
  }

  /** Takes a member out; true when none is left (the caller closes the feed). */
  leave(member: FeedMember): boolean {
    this.members.delete(member);
    this.release();
    return this.members.size === 0;
  }

  private poll(): void {
    this.pollTimer = this.clock.setTimer(() => {
      if (this.stopped) return;
      this.check();
      this.poll();
    }, this.options.pollIntervalMs ?? 20, { unref: true });
  }

  /** Ship what was written, or suspend every pair on a full journal. */
  check(): void {
    if (this.stopped) return;
    const stats = this.journal.stats();
    if (stats.fullCount !== this.lastFullCount) {
      this.lastFullCount = stats.fullCount;
      for (const member of this.members) for (const pair of member.pairs) pair.journalFull();
      this.release();
    }
    if (stats.nextSequence !== this.lastSeenSequence) {
      this.lastSeenSequence = stats.nextSequence;
      this.notify(stats.nextSequence - 1);
    }
  }

  /**
   * After a host write: its sequence tells what to do without asking the journal (the hot
   * path); a full journal, or a gap (a write by another path came first), takes the slow check.
   */
  afterWrite(sequence: number): void {
    if (sequence <= 0 || sequence !== this.lastSeenSequence) {
      this.check();
      return;
    }
    this.lastSeenSequence = sequence + 1;
    this.notify(sequence);
  }

  /** Tells every pair of every member that the journal holds records through `sequence`. */
  notify(sequence: number): void {
    for (const member of this.members) {
      const { pairs } = member;
      for (let index = 0; index < pairs.length; index++) (pairs[index] as PrimaryPair).notifyWrite(sequence);
    }
  }

  /** Releases journal records no pair needs any more. */
  release(): void {
    if (this.stopped) return;
    let needed = Infinity;
    for (const member of this.members) for (const pair of member.pairs) needed = Math.min(needed, pair.neededSequence);
    const through = needed === Infinity ? this.journal.nextSequence - 1 : needed - 1;
    if (through >= this.journal.headSequence) this.journal.release(through);
  }

  /** A crash: stops polling (the members crash their pairs). */
  crash(): void {
    this.stopped = true;
    this.pollTimer?.cancel();
  }

  /** Stops polling and closes the journal (detaching it from every volume). */
  async close(): Promise<void> {
    if (this.stopped && this.journal.closed) return;
    this.stopped = true;
    this.pollTimer?.cancel();
    await this.journal.close();
  }
}
