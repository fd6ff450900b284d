// The registry of message types carried over links (frame types 0x20 and up). Each protocol
// above the link (pairs, lockstep, consistency groups, movers) adds its types here, so that a
// decoder can refuse an unknown type at the frame header, before reading its payload.

import { FIRST_MESSAGE_TYPE } from './frame';

export const MessageType = Object.freeze({
  /** A test and benchmark message: delivered to 'message' listeners as it is. */
  LINK_TEST: FIRST_MESSAGE_TYPE,
  /** A test and benchmark request: answered by the registered handler (echo in tests). */
  LINK_TEST_REQUEST: FIRST_MESSAGE_TYPE + 1,
  /** Pairs (src/replication/messages.ts): open a pair on the secondary (request). */
  PAIR_OPEN: 0x30,
  /** Pairs: a batch of journal records, in sequence order (message). */
  PAIR_RECORDS: 0x31,
  /** Pairs: the secondary's received, applied and flushed positions (message). */
  PAIR_POSITION: 0x32,
  /** Pairs: flush the secondary volume (request). */
  PAIR_FLUSH: 0x33,
  /** Pairs: one track of current primary data, during a copy or resync (message). */
  PAIR_TRACK: 0x34,
  /** Pairs: the copy or resync pass is complete; ordered records resume at a sequence (request). */
  PAIR_RESYNC_DONE: 0x35,
  /** Pairs: the secondary refused a message; the pair suspends with secondary-error (message). */
  PAIR_ERROR: 0x36,
  /** Pairs: become the primary of a pair whose primary handed it over, drained (request). */
  PAIR_PROMOTE: 0x37,
  /** Pairs: hand the primary role over to the sender (a planned takeover or a failback) (request). */
  PAIR_SWITCH: 0x38,
  /** Pairs: a split brain is resolved; keep the sender's or the receiver's data (request). */
  PAIR_RESOLVE: 0x39,
  /** Pairs: safe-store (flush) through a lockstep marker the secondary has applied (request). */
  PAIR_MARKER: 0x3a,
  /** Pairs: a batch of a journal group's shared journal, in its one write order (message). */
  PAIR_GROUP_RECORDS: 0x3b,
  /** Pairs: take the consistency group's copy at a cut the secondary has applied exactly through (request). */
  PAIR_CG_CUT: 0x3c,
  /** Pairs: become the primary of every member of a journal group, handed over drained (request). */
  PAIR_PROMOTE_GROUP: 0x3d,
  /** Pairs: hand the primary role of every member of a journal group over to the sender (request). */
  PAIR_SWITCH_GROUP: 0x3e,
  /** Consistency groups (src/cgroup/messages.ts): hold host writes and take the cut (request). */
  CGROUP_PREPARE: 0x50,
  /** Consistency groups: release the hold, drain to the cut, answer with the copies (request). */
  CGROUP_RUN: 0x51,
  /** Consistency groups: a cycle's outcome (message). */
  CGROUP_RESULT: 0x52,
});

const KNOWN = new Set<number>(Object.values(MessageType));

/** True for a registered message type. */
export function isKnownMessageType(type: number): boolean {
  return KNOWN.has(type);
}
