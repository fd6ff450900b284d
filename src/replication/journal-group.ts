// Notes on the design
// -------------------
// A journal group (Hitachi UR's journal group, a DRBD resource with several volumes): pairs
// whose primary volumes share one journal, so their writes have one order, and the secondary
// applies them in that order across all of its volumes; its image is a write-order prefix of
// the whole group, not of each volume alone (a database's log and data volumes stay
// consistent with each other).
//
// The primary side (JournalGroup): the members' volumes write into one journal (their
// ReplicatedVolumes share one JournalFeed). Each member keeps its own state, tracking, copy and
// resync pass, generations and positions, as any pair; only the ordered stream is the group's:
// one pump reads the shared journal from the lowest next-to-ship of the members that are
// mirroring and ships every batch as one PAIR_GROUP_RECORDS message, in journal order:
//   - a record of a member that is not mirroring (suspended, resyncing) is left out: its
//     tracking holds it, and its pass sends it;
//   - a record before a member's own next-to-ship (the member joined the stream later, at its
//     resync's J) is left out: its pass covered it;
//   - lockstep markers are covered, not carried (every member listed passes them).
// Each batch lists the members it covers with `previous` (the member's last covered sequence),
// and `through`, its last sequence: the secondary checks the chain (previous = what it covered
// last), so a lost or repeated batch is refused, never applied out of order.
//
// The group suspends as one: when a member suspends, every other member that is mirroring,
// copying or resyncing suspends with the same reason (so the secondary image stops at one
// point of the group's order instead of running ahead on some volumes). A suspension the link
// or the journal caused resumes by itself, member by member; `resume` on one member resumes
// them all (pairs.ts). After a link loss (or a restart, with the group's journal kept) every
// member holds the shared journal from its own position (primary-pair.ts, the stream hold)
// and asks to resume on its open; the stream ships
// nothing while a member still awaits its resume, so the members continue together from where
// the outage left them.
//
// The secondary side (applyGroupBatch): validates a batch as a whole against the members it
// names (declared here in the same group, each mirroring, each window continuing the last one,
// sequences increasing, records inside their volume), then applies it in order, and each listed
// member stands at `through`.

import { Coalesced, deferOn } from '../runtime/coalesce';
import type { JournalRecord } from '../storage/journal';
import type { Link } from '../transport/link';
import { isLinkError } from '../transport/errors';
import { MessageType } from '../transport/message-types';
import type { JournalFeed } from './journal-feed';
import { type GroupRecord, type GroupRecords, MAX_GROUP_MEMBERS, encodeGroupRecords } from './messages';
import { PairError } from './pair-state';
import { type GroupStream, KIND_OF, type PairStateEvent, type PrimaryPair } from './primary-pair';
import type { SecondaryPair } from './secondary-pair';

/** Options of a journal group's stream. */
export interface JournalGroupOptions {
  /** Most payload bytes per PAIR_GROUP_RECORDS message. @default 1048576 */
  maxBatchBytes?: number;
}

/** The primary side of a journal group on one controller: the shared journal and its one stream. */
export class JournalGroup implements GroupStream {
  private readonly members: PrimaryPair[] = [];
  private readonly byVolume = new Map<bigint, PrimaryPair>();
  private readonly listeners = new Map<PrimaryPair, (event: PairStateEvent) => void>();
  private readonly maxBatchBytes: number;
  private propagating = false;
  batchesShipped = 0;

  constructor(
    readonly name: string,
    readonly feed: JournalFeed,
    readonly link: Link,
    options: JournalGroupOptions = {},
  ) {
    this.maxBatchBytes = options.maxBatchBytes ?? 1024 * 1024;
  }

  get memberNames(): string[] {
    return this.members.map((member) => member.name);
  }

  get size(): number {
    return this.members.length;
  }

  add(pair: PrimaryPair, volumeId: bigint): void {
    if (this.members.length >= MAX_GROUP_MEMBERS) throw new PairError('ERR_PAIR_BAD_SPEC', `journal group ${this.name} holds at most ${MAX_GROUP_MEMBERS} pairs`);
    this.members.push(pair);
    this.byVolume.set(volumeId, pair);
    const listener = (event: PairStateEvent): void => this.onMemberState(pair, event);
    this.listeners.set(pair, listener);
    pair.on('state', listener);
  }

  /** Takes a member out (demoted, deleted); true when none is left. */
  remove(pair: PrimaryPair): boolean {
    const index = this.members.indexOf(pair);
    if (index >= 0) this.members.splice(index, 1);
    for (const [volumeId, member] of this.byVolume) if (member === pair) this.byVolume.delete(volumeId);
    const listener = this.listeners.get(pair);
    if (listener !== undefined) pair.off('state', listener);
    this.listeners.delete(pair);
    this.schedulePump();
    return this.members.length === 0;
  }

  /** One member suspended: so does the rest of the group, with the same reason. */
  private onMemberState(pair: PrimaryPair, event: PairStateEvent): void {
    // A member that was waited for (awaitingResume) resumed, resyncs or left: the stream goes on.
    if (event.new !== 'suspended') this.schedulePump();
    if (event.new !== 'suspended' || this.propagating) return;
    this.propagating = true;
    try {
      for (const member of this.members) {
        if (member === pair) continue;
        const state = member.currentState;
        if (state === 'mirroring' || state === 'copying' || state === 'resyncing') {
          member.suspend(event.reason as Parameters<PrimaryPair['suspend']>[0], `journal group ${this.name}: pair ${pair.name} suspended (${event.detail ?? event.reason})`);
        }
      }
    } finally {
      this.propagating = false;
    }
  }

  schedulePump(): void {
    this.pumpTask.schedule();
  }

  /** One pump per burst of writes, once per loop turn on a real clock (runtime/coalesce.ts). */
  private readonly pumpTask = new Coalesced(() => this.pump(), (run) => deferOn(this.feed.clock, run));

  private pump(): void {
    const { journal } = this.feed;
    // A member that will resume from its hold (a link loss) is waited for: shipping on to the
    // members that resumed first would let them run ahead of it on the secondary.
    if (this.members.some((member) => member.awaitingResume)) return;
    while (!this.feed.closed && !this.link.isFull) {
      // A consistency group's fence (primary-pair.ts fenceAt): a member shipped through its cut
      // sends the cut, or (no run yet) is left out of the stream for now; a member not there yet
      // makes the batch end at its cut.
      const streaming = this.members.filter((member) => member.streaming && member.passFence());
      if (streaming.length === 0) return;
      let from = Infinity;
      let limit = journal.nextSequence;
      for (const member of streaming) {
        from = Math.min(from, member.shipFrom);
        const fenced = member.fencedThrough;
        if (fenced !== undefined) limit = Math.min(limit, fenced + 1);
      }
      if (from >= limit) return;
      let records: JournalRecord[];
      try {
        records = journal.read(from, { maxRecords: Math.min(1024, limit - from), maxBytes: this.maxBatchBytes });
      } catch (error) {
        for (const member of streaming) member.suspend('journal-full', `journal read: ${(error as Error).message}`);
        return;
      }
      if (records.length === 0) return;
      const through = (records[records.length - 1] as JournalRecord).sequence;
      // The members this batch covers: every streaming one whose window starts by `through`.
      const covered = streaming.filter((member) => member.shipFrom <= through + 1);
      const indexOf = new Map<PrimaryPair, number>();
      covered.forEach((member, index) => indexOf.set(member, index));
      const shipped: GroupRecord[] = [];
      const dataBytes = covered.map(() => 0);
      for (const record of records) {
        const member = this.byVolume.get(record.volumeId);
        if (member === undefined) continue;
        const index = indexOf.get(member);
        if (index === undefined || record.sequence < member.shipFrom) continue;
        const kind = KIND_OF[record.kind];
        if (kind === undefined || kind === 'marker') continue;
        shipped.push({ member: index, sequence: record.sequence, kind, byteOffset: record.byteOffset, byteLength: record.byteLength, data: record.data });
        dataBytes[index] = (dataBytes[index] as number) + record.data.length;
      }
      const message = encodeGroupRecords({
        group: this.name, through, members: covered.map((member) => ({ name: member.name, previous: member.shipFrom - 1 })), records: shipped,
      });
      try {
        this.link.send(MessageType.PAIR_GROUP_RECORDS, message, { onUnconfirmed: this.onUnconfirmed });
      } catch (error) {
        if (isLinkError(error, 'ERR_LINK_FULL')) return; // 'drain' pumps again
        for (const member of covered) member.suspend('link-down', (error as Error).message);
        return;
      }
      this.batchesShipped++;
      covered.forEach((member, index) => member.shipped(through, dataBytes[index] as number));
    }
  }

  private readonly onUnconfirmed = (): void => {
    for (const member of this.members) if (member.streaming) member.suspend('link-down', `journal group ${this.name}: records unconfirmed`);
  };

  status(): Record<string, unknown> {
    const states = this.members.map((member) => member.currentState);
    return {
      name: this.name,
      role: 'primary',
      peer: this.link.peerId,
      pairs: this.memberNames,
      // The group's secondary image is a write-order prefix of the group only while every member mirrors.
      consistency: states.every((state) => state === 'mirroring') ? 'consistent' : 'inconsistent',
      batchesShipped: this.batchesShipped,
      journal: this.feed.journal.stats(),
    };
  }
}

/** A secondary member of a batch: the side declared here and its window. */
export interface GroupBatchMember {
  pair: SecondaryPair;
  previous: number;
}

/**
 * Applies a journal group's batch on the secondary: validated as a whole first (throws
 * PairError, nothing applied), then applied in the group's order; every listed member then
 * stands at `through`.
 */
export function applyGroupBatch(batch: GroupRecords, members: readonly GroupBatchMember[]): void {
  const seen = new Set<SecondaryPair>();
  for (const member of members) {
    if (seen.has(member.pair)) throw new PairError('ERR_PAIR_SEQUENCE', `journal group ${batch.group}: pair ${member.pair.name} is listed twice in one batch`);
    seen.add(member.pair);
    if (member.previous > batch.through) {
      throw new PairError('ERR_PAIR_SEQUENCE', `journal group ${batch.group}: pair ${member.pair.name}'s window starts after ${member.previous}, past the batch's end ${batch.through}`);
    }
    member.pair.checkGroupWindow(batch.group, member.previous);
  }
  let last = 0;
  for (const record of batch.records) {
    const member = members[record.member] as GroupBatchMember;
    if (record.sequence <= last) throw new PairError('ERR_PAIR_SEQUENCE', `journal group ${batch.group}: record ${record.sequence} after ${last}: out of order`);
    if (record.sequence <= member.previous || record.sequence > batch.through) {
      throw new PairError('ERR_PAIR_SEQUENCE', `journal group ${batch.group}: record ${record.sequence} of pair ${member.pair.name} is outside its window (${member.previous}, ${batch.through}]`);
    }
    member.pair.checkRecordRange(record);
    last = record.sequence;
  }
  let current: SecondaryPair | undefined;
  for (const record of batch.records) {
    const pair = (members[record.member] as GroupBatchMember).pair;
    if (current !== undefined && current !== pair) current.flushApplied();
    current = pair;
    pair.applyOne(record);
  }
  current?.flushApplied();
  for (const member of members) member.pair.standAt(batch.through);
}
