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
//
// A volume of its own journal that is 'shared' or 'file' keeps the journal beside it
// (blockmirror.journal.<sharedName>, or <path>.journal), so a SIGKILLed primary finds its records
// and its sequence numbers again and a pair resumes shipping from the secondary's position
// (primary-pair.ts, open). A journal found with other limits than configured is replaced (the
// pairs then resync from their tracking). A journal group's journal is kept the same way, beside
// its first declared volume, when every volume of the group is shared or file (groupJournalTargetOf);
// its intents (writes a SIGKILL caught between store and record) belong to several volumes, so
// each member volume journals its own again as it joins (recoverIntents), and they are cleared
// once every volume they name has done so. Every journal
// gets an id that names its sequence space (a secondary resumes only from positions of that very
// journal): a kept one keeps its id across restarts, an in-memory one gets a random one (from the
// system's source, not the seeded one: ids are only compared, and the simulator's random stream
// stays what its seeds were recorded with).

import { randomBytes } from 'node:crypto';

import { type Clock, type TimerHandle } from '../runtime/clock';
import { Journal } from '../storage/journal';
import { Volume } from '../storage/volume';
import type { LinkLogger } from '../transport/link';
import type { PrimaryPair } from './primary-pair';

/** A fresh id for an in-memory journal: 48 random bits, never 0. */
function memoryJournalId(): number {
  for (;;) {
    const id = randomBytes(6).readUIntLE(0, 6);
    if (id !== 0) return id;
  }
}

/** Where a volume's own journal is kept: beside a shared or file volume, none for memory. */
export type JournalTarget = { name: string } | { path: string };

/**
 * Where a journal group's journal is kept: beside the group's first declared volume, as that
 * volume's own would be (blockmirror.journal.<its shared name>.group.<group>, or
 * <its path>.group.<group>.journal), when every volume of the group outlives the process
 * (shared or file); null otherwise (in memory: a memory volume does not outlive it either).
 */
export function groupJournalTargetOf(group: string, volumes: readonly Volume[]): JournalTarget | null {
  const persistent = (volume: Volume): boolean => (volume.backing === 'shared' && volume.name !== undefined) || (volume.backing === 'file' && volume.path !== undefined);
  const first = volumes[0];
  if (first === undefined || !volumes.every(persistent)) return null;
  return first.backing === 'shared' ? { name: `${first.name as string}.group.${group}`.slice(0, 200) } : { path: `${first.path as string}.group.${group}.journal` };
}

/** The journal beside a shared or file volume (null: a memory volume's journal is in memory). */
export function journalTargetOf(volume: Volume): JournalTarget | null {
  if (volume.backing === 'shared' && volume.name !== undefined) return { name: volume.name };
  if (volume.backing === 'file' && volume.path !== undefined) return { path: `${volume.path}.journal` };
  return null;
}

/** A kept journal: where, a new journal's id, and where to say what was found. */
export interface KeptJournal {
  target: JournalTarget;
  /** The id of a new journal (an integer in [1, 2^53)). */
  newId: () => number;
  log: LinkLogger;
}

/** Options of a journal. */
export interface JournalFeedOptions {
  /** Journal ring bytes. @default 67108864 (64 MiB) */
  journalCapacityBytes?: number;
  /** Largest record (a larger write suspends the pairs as journal-full). @default 33554432 (32 MiB) */
  maxRecordBytes?: number;
  /** How often writes from other paths are looked for. @default 20 */
  pollIntervalMs?: number;
  /**
   * How often while native lanes write the journal (a member's lane gate is open) and the last
   * look found new records: their writes reach the pairs this way (replicated-volume.ts). An
   * idle journal goes back to pollIntervalMs. @default 1
   */
  lanePollIntervalMs?: number;
}

/** Something that writes into a feed's journal: its pairs hear of every write. */
export interface FeedMember {
  readonly pairs: readonly PrimaryPair[];
  /** True while native lanes may write the member's volume (replicated-volume.ts). */
  readonly laneGateOpen?: boolean;
}

/** A journal, the volumes that write into it, and the watch over it. */
export class JournalFeed {
  readonly journal: Journal;
  private readonly members = new Set<FeedMember>();
  private lastFullCount = 0;
  private lastSeenSequence: number;
  private pollTimer: TimerHandle | undefined;
  private stopped = false;

  /**
   * True when the journal was kept from an earlier run and every write found between its store
   * and its record was journaled again (ReplicatedVolume): its records after a secondary's
   * position are all there, and a pair may resume from it.
   */
  resumable = false;
  /** The journal was found from an earlier run (a kept journal). */
  readonly reopened: boolean;
  /** Where the journal is kept (null: in memory). */
  readonly target: JournalTarget | null;

  /** `kept`: where the journal is kept (none: in memory). */
  constructor(readonly clock: Clock, private readonly options: JournalFeedOptions = {}, kept?: KeptJournal) {
    const capacityBytes = options.journalCapacityBytes ?? 64 * 1024 * 1024;
    const maxRecordBytes = Math.min(options.maxRecordBytes ?? 32 * 1024 * 1024, Math.floor(capacityBytes / 4));
    let journal: Journal | undefined;
    let found = false;
    this.target = kept?.target ?? null;
    if (kept !== undefined) {
      const where = 'name' in kept.target ? `blockmirror.journal.${kept.target.name}` : kept.target.path;
      try {
        const earlier = Journal.open(kept.target);
        if (earlier.capacityBytes === capacityBytes && earlier.maxRecordBytes === maxRecordBytes && earlier.id !== 0) {
          journal = earlier;
          found = true;
          kept.log.info({ journal: where, nextSequence: earlier.nextSequence, headSequence: earlier.headSequence },
            `journal ${where}: found from an earlier run (records ${earlier.headSequence}..${earlier.nextSequence - 1})`);
        } else {
          kept.log.warn({ journal: where }, `journal ${where}: found with ring ${earlier.capacityBytes} and records up to ${earlier.maxRecordBytes} bytes, ` +
            `configured ${capacityBytes} and ${maxRecordBytes}: replaced (the pairs resync from their tracking)`);
          void earlier.close();
          Journal.unlink(kept.target);
        }
      } catch (error) {
        if ((error as { code?: string }).code !== 'ERR_REGION_NOT_FOUND') {
          kept.log.warn({ journal: where, err: String(error) }, `journal ${where}: unusable (${(error as Error).message}): replaced`);
          Journal.unlink(kept.target);
        }
      }
      journal ??= Journal.create({ ...kept.target, kind: 'name' in kept.target ? 'shared' : 'file', capacityBytes, maxRecordBytes, id: kept.newId() });
    }
    this.reopened = found;
    this.journal = journal ?? Journal.create({ capacityBytes, maxRecordBytes, id: memoryJournalId() });
    this.lastSeenSequence = this.journal.nextSequence;
    this.poll();
  }

  /** The volumes whose intents were journaled again (recoverIntents). */
  private readonly recoveredVolumes = new Set<bigint>();

  /**
   * Journals again, from the store, the writes of `volume` that a crashed writer left between
   * store and record (the journal's intents), as new records after every other, so the journal
   * holds every byte the store holds that a secondary may lack. Returns false when one of them
   * found the journal full (then the pairs resync from their tracking, which covers it). The
   * intents are forgotten once every volume they name has been recovered.
   */
  recoverIntents(volume: Volume, log: LinkLogger | undefined): boolean {
    const { journal } = this;
    const pending = journal.pendingIntents();
    const intents = pending.filter((intent) => intent.volumeId === volume.id);
    let complete = true;
    const chunkBytes = Math.min(journal.maxRecordBytes, 4 * 1024 * 1024);
    let buffer: Buffer | undefined;
    for (const intent of intents) {
      const end = Math.min(intent.byteOffset + intent.byteLength, volume.capacityBytes);
      for (let offset = intent.byteOffset; offset < end;) {
        let sequence: number;
        if (intent.kind === 'write') {
          const length = Math.min(chunkBytes, end - offset);
          buffer ??= Buffer.allocUnsafe(chunkBytes);
          const bytes = buffer.subarray(0, length);
          volume.read(offset, bytes);
          sequence = volume.write(offset, bytes);
          offset += length;
        } else {
          // A zero or trim is done again whole: what the crash left half done is finished.
          const length = Math.min(2 ** 31, end - offset);
          sequence = intent.kind === 'zero' ? volume.writeZeroes(offset, length) : volume.trim(offset, length);
          offset += length;
        }
        if (sequence === Volume.JOURNAL_FULL) complete = false;
      }
    }
    this.recoveredVolumes.add(volume.id);
    if (pending.every((intent) => this.recoveredVolumes.has(intent.volumeId))) journal.clearPendingIntents();
    if (intents.length > 0) {
      log?.info({ volume: volume.name, intents: intents.length, complete },
        `volume ${volume.name ?? volume.path ?? ''}: ${intents.length} write(s) stored but not journaled before the last stop journaled again${complete ? '' : ' (the journal was full: the pairs resync from their tracking)'}`);
    }
    return complete;
  }

  /** What was journaled before any pair joined (a kept journal's recovery) is nobody's news. */
  settle(): void {
    const stats = this.journal.stats();
    this.lastFullCount = stats.fullCount;
    this.lastSeenSequence = stats.nextSequence;
  }

  /** Removes a kept journal (its last pair was deleted). */
  static unlink(target: JournalTarget | null): void {
    if (target !== null) Journal.unlink(target);
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

  private poll(busy = false): void {
    let lanes = false;
    if (busy) for (const member of this.members) if (member.laneGateOpen === true) lanes = true;
    const interval = lanes ? this.options.lanePollIntervalMs ?? 1 : this.options.pollIntervalMs ?? 20;
    this.pollTimer = this.clock.setTimer(() => {
      if (this.stopped) return;
      const seen = this.lastSeenSequence;
      this.check();
      this.poll(this.lastSeenSequence !== seen);
    }, interval, { unref: true });
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
