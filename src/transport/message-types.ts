// The registry of message types carried over links (frame types 0x20 and up). Each protocol
// above the link (pairs, lockstep, consistency groups, movers) adds its types here, so that a
// decoder can refuse an unknown type at the frame header, before reading its payload.

import { FIRST_MESSAGE_TYPE } from './frame';

export const MessageType = Object.freeze({
  /** A test and benchmark message: delivered to 'message' listeners as it is. */
  LINK_TEST: FIRST_MESSAGE_TYPE,
  /** A test and benchmark request: answered by the registered handler (echo in tests). */
  LINK_TEST_REQUEST: FIRST_MESSAGE_TYPE + 1,
});

const KNOWN = new Set<number>(Object.values(MessageType));

/** True for a registered message type. */
export function isKnownMessageType(type: number): boolean {
  return KNOWN.has(type);
}
