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
});

const KNOWN = new Set<number>(Object.values(MessageType));

/** True for a registered message type. */
export function isKnownMessageType(type: number): boolean {
  return KNOWN.has(type);
}
