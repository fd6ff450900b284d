// Notes on the design
// -------------------
// What a PrimaryPair (primary-pair.ts) is made with and what it hands out, apart from the class:
// its options (PrimaryPairOptions, with every default), the GroupStream a journal group gives
// its members, the PairStateEvent a state change emits, the record kinds PAIR_RECORDS carries
// (KIND_OF, also used by journal-group.ts), and the class's private bookkeeping shapes (a
// consistency group's PendingCut, the sync-write Waiter) and limits.
//
// Invariants: a Waiter spans at most MAX_WAITER_SPAN sequences and settles once the secondary
// applied its last one; the times ring behind the lag in seconds holds at most TIMES_RING
// entries; one PAIR_RECORDS message of the pump carries at most MAX_PUMP_RECORDS records.
// PendingCut (cut-fence.ts), Waiter and the five limits are for the classes of primary-pair*.ts
// only (primary-pair.ts does not re-export them). No state lives here.

import type { CutReply } from '../cgroup/messages';
import type { PairMode, RecordKind } from './messages';
import type { PairState } from './pair-state';

/** Options of a primary pair. */
export interface PrimaryPairOptions {
  name: string;
  volumeName: string;
  remoteVolume: string;
  mode: PairMode;
  /** @default 'never' */
  fence?: 'never' | 'data';
  /** Resume and resync by itself when the cause of a suspension clears. @default true */
  autoResume?: boolean;
  /** Most payload bytes per PAIR_RECORDS message. @default 1048576 */
  maxBatchBytes?: number;
  /** No progress for this long in copying/resyncing: the stuck detector reports it. @default 30000 */
  stuckAfterMs?: number;
  /**
   * Least time between two rotations of the tracking bitmaps while mirroring, and between two
   * clears of both when a position report finds the secondary caught up. @default 50
   */
  rotateIntervalMs?: number;
  /** The reason the pair starts with (e.g. 'takeover'). @default 'declared' */
  initialReason?: string;
  /** A deliberate bug for the mutation check (pairs.ts PairMutation). @default none */
  mutation?: 'skip-track';
  /** The journal group whose one stream ships this pair's records (journal-group.ts). @default none */
  group?: GroupStream;
  /**
   * The journal was kept from an earlier run with every record after the secondary's position
   * (journal-feed.ts resumable): the first open may ask to resume from there. @default false
   */
  journalResumable?: boolean;
  /**
   * Most of the journal's ring (a fraction, 0 to 1) that the records kept for a resume may take
   * while the pair is suspended by a link loss; past it the pair gives the resume up and resyncs
   * from its OOS bitmap. 0: no resume after a link loss. @default 0.75
   */
  journalHold?: number;
}

/** What ships a journal group member's records (journal-group.ts). */
export interface GroupStream {
  schedulePump(): void;
}

/** A pair's event (state changes). */
export interface PairStateEvent {
  name: string;
  old: PairState;
  new: PairState;
  reason: string;
  detail?: string;
  timeMs: number;
}

/** A consistency group's cut waiting to be shipped (see fenceAt / cutAt). */
export interface PendingCut {
  group: string;
  cycle: number;
  formed: number;
  timeoutMs: number;
  resolve(reply: CutReply): void;
  reject(error: Error): void;
}

/**
 * Sync writes waiting for the secondary: one waiter per group of consecutive writes not shipped
 * yet (at most MAX_WAITER_SPAN sequences), all sharing one promise that settles once the
 * secondary applied the group's last sequence (see ackPoint).
 */
export interface Waiter {
  /** The group's last sequence: settled once the secondary applied it. */
  sequence: number;
  /** The group's first sequence. */
  first: number;
  promise: Promise<void>;
  resolve(): void;
  reject(error: Error): void;
}

/** Most sequences one waiter group spans (about one PAIR_RECORDS batch). */
export const MAX_WAITER_SPAN = 1024;

/** The most records one PAIR_RECORDS message of the pump carries. */
export const MAX_PUMP_RECORDS = 1024;

/** How often a primary asks again a peer that does not declare the pair. */
export const UNDECLARED_RETRY_MS = 1000;

/** How long a shipped lockstep marker waits for the secondary's flushed position before PAIR_MARKER asks. */
export const MARKER_REPORT_WAIT_MS = 50;

/** Entries of the (sequence, time) ring behind the lag in seconds. */
export const TIMES_RING = 1024;

export const KIND_OF: Record<string, RecordKind | undefined> = { write: 'write', zero: 'zero', trim: 'trim', marker: 'marker' };
