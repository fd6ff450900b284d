// Notes on the design
// -------------------
// The vocabulary of a link's state, shared by the Link (link.ts), the controller's status and
// /events, and the tests: LinkState, the transition table LINK_TRANSITIONS, the stable
// LinkReason strings, the LinkStateEvent a change emits and the LinkStatus snapshot.
//
// State, changed only by Link.setState() over LINK_TRANSITIONS (it logs "old -> new" and emits a
// 'state' event with the reason):
//
//   down --dial--> connecting --wire--> handshaking --welcome--> up --failure--> down
//   down --inbound HELLO from this peer--> handshaking
//   down --> down  (the reason changed: partitioned, closed)
//
// Invariants: the table is frozen and is the only source of allowed moves; reasons are stable
// strings (status and events carry them, operators grep for them); a status never holds a
// secret. No state lives here.

import type { LinkErrorCode } from '../errors';
import type { LinkFaults } from './faults';

export type LinkState = 'connecting' | 'handshaking' | 'up' | 'down';

/** Allowed transitions; down -> down records a new reason. */
export const LINK_TRANSITIONS: Readonly<Record<LinkState, readonly LinkState[]>> = Object.freeze({
  down: ['connecting', 'handshaking', 'down'],
  connecting: ['handshaking', 'down'],
  handshaking: ['up', 'down'],
  up: ['down'],
});

/** True when `from -> to` is in the table. */
export function isLinkTransition(from: LinkState, to: LinkState): boolean {
  return LINK_TRANSITIONS[from].includes(to);
}

/** Why a link is in its state (stable strings: status and events carry them). */
export type LinkReason =
  | 'not-started'
  | 'waiting-for-peer'
  | 'dialing'
  | 'connected'
  | 'inbound'
  | 'handshake-done'
  | 'connect-failed'
  | 'refused'
  | 'handshake-timeout'
  | 'dead-peer'
  | 'closed-by-peer'
  | 'protocol-error'
  | 'dropped'
  | 'partitioned'
  | 'healed'
  | 'replaced'
  | 'closed';

/** A state change, as emitted and as /events shows it. */
export interface LinkStateEvent {
  peerId: string;
  old: LinkState;
  new: LinkState;
  reason: LinkReason;
  /** The ERR_LINK_* code behind a refusal or protocol error. */
  code?: LinkErrorCode;
  /** Free text: an errno, a refusal message. Never a secret. */
  detail?: string;
  timeMs: number;
  wallTimeMs: number;
}

/** A status snapshot of a link (secrets never appear). */
export interface LinkStatus {
  peerId: string;
  state: LinkState;
  reason: LinkReason;
  code?: LinkErrorCode;
  detail?: string;
  /** Wall time of the last state change (ms since the epoch). */
  sinceWallTimeMs: number;
  address: string | null;
  dialing: boolean;
  /** 'hmac-sha256' when a secret is configured, else 'none' (the link is unauthenticated). */
  auth: 'hmac-sha256' | 'none';
  authenticated: boolean;
  protocolVersion: number | null;
  connection: string | null;
  rttMs: number | null;
  bytesIn: number;
  bytesOut: number;
  framesIn: number;
  framesOut: number;
  messagesSent: number;
  messagesReceived: number;
  /** Times the link came up again after having been up. */
  reconnects: number;
  /** Connection attempts since the link was last up. */
  attempt: number;
  /** When the next dial is due (wall time), or null. */
  nextAttemptWallTimeMs: number | null;
  queuedBytes: number;
  unconfirmedMessages: number;
  unconfirmedReported: number;
  pendingRequests: number;
  faults: LinkFaults | null;
}
