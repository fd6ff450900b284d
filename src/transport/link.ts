// Notes on the design
// -------------------
// One logical link from this controller to one peer controller. It outlives connections: it
// dials (or is dialed), runs the handshake, carries messages, watches heartbeats, and when the
// connection fails it says so and reconnects with backoff. Every protocol between two
// controllers (pairs, lockstep, groups, movers) is only its own message types on top of it.
//
// State, changed only by setState() over LINK_TRANSITIONS (it logs "old -> new" and emits a
// 'state' event with the reason):
//
//   down --dial--> connecting --wire--> handshaking --welcome--> up --failure--> down
//   down --inbound HELLO from this peer--> handshaking
//   down --> down  (the reason changed: partitioned, closed)
//
// Who dials: a link dials when it has the peer's address and either this controller's id sorts
// before the peer's or this controller does not listen (so the peer could not dial it). One
// side dials, the other accepts: there is never a race between two connections. An inbound
// connection that completes its handshake while another is up replaces it (the peer restarted
// and knows best); the old one's messages are reported unconfirmed.
//
// Delivery: in order or not at all. Every message gets a link-wide id and rides one
// connection's frame sequence; the receiver acknowledges (ACK, cumulative, coalesced) what it
// delivered (at once past 1 MiB or a quarter of maxQueuedBytes, else within 20 ms), and the
// sender forgets acknowledged messages. When the connection ends, every
// message sent on it and not acknowledged is reported, to its sender's onUnconfirmed callback
// and in one 'unconfirmed' event. Messages are never resent by the link: the protocol above
// decides (a pair falls back to its bitmap). Unacknowledged bytes are bounded by
// maxQueuedBytes: send() past it throws ERR_LINK_FULL and 'full' is emitted; 'drain' follows
// when acknowledgements bring the queue under half of the limit.
//
// Requests: request() sends a frame flagged REQUEST with a correlation id and resolves with the
// RESPONSE payload, or rejects with ERR_LINK_TIMEOUT, ERR_LINK_DOWN, ERR_LINK_REMOTE (the
// remote handler failed) or ERR_LINK_NO_HANDLER.
//
// Time and chance: every timer goes through the injected Clock, every jitter through the
// injected Random; only nonces come from node:crypto.
//
// Layout: this module is the Link class, the top of a stack of classes, each in its own file
// and each adding one concern to the one below: LinkCore (link-core.ts: the state, its setter,
// status) <- LinkHandshakes (link-handshakes.ts: dialing, inbound, the handshake, down and up)
// <- LinkDelivery (link-delivery.ts: heartbeats, frames, acknowledgements, messages, requests)
// <- Link (this file: start, faults, close). The state vocabulary (LinkState, LINK_TRANSITIONS,
// LinkReason, LinkStateEvent, LinkStatus) is in link-state.ts and the options, tuning, logger,
// message types and reconnect backoff are in link-options.ts. Both are re-exported here, so
// importers keep one path.

import { LinkError } from './errors';
import { type FaultSettings, applyFaultSettings, checkFaultSettings, noFaults } from './faults';
import { FrameType } from './frame';
import { LinkDelivery } from './link-delivery';

export type {
  LinkState,
  LinkReason,
  LinkStateEvent,
  LinkStatus,
} from './link-state';
export { LINK_TRANSITIONS, isLinkTransition } from './link-state';
export type {
  LinkMessage,
  UnconfirmedMessage,
  UnconfirmedReport,
  SendOptions,
  RequestHandler,
  LinkLogger,
  LinkTuning,
  LinkOptions,
} from './link-options';
export { backoffDelayMs } from './link-options';

/** A link to one peer controller. */
export class Link extends LinkDelivery {
  /** Starts dialing (a dialing link) or waiting (an accepting one). */
  start(): void {
    if (this.closed) throw new LinkError('ERR_LINK_CLOSED', `link to ${this.peerId} is closed`);
    if (this.started) return;
    this.started = true;
    if (this.dials) this.dialNow();
    else this.setState('down', 'waiting-for-peer');
  }

  // ---- faults --------------------------------------------------------------------------------

  /**
   * Sets faults (see faults.ts); `drop: true` closes the current connection now. A dialer that a
   * partition in both directions stopped dials again once the partition is lifted.
   */
  setFaults(settings: FaultSettings): void {
    checkFaultSettings(settings);
    if (this.closed) throw new LinkError('ERR_LINK_CLOSED', `link to ${this.peerId} is closed`);
    applyFaultSettings(this.faults, settings);
    this.log.warn({ peer: this.peerId, faults: this.faults, drop: settings.drop === true }, `link ${this.peerId}: faults set`);
    this.emit('faults', this.faultsInForce());
    if (settings.drop === true) this.dropConnections('dropped');
    if (this.partitionedBothWays()) {
      this.reconnectTimer?.cancel();
      this.reconnectTimer = undefined;
      this.nextAttemptAtMs = undefined;
      if (this.state === 'connecting') {
        this.dialHandle?.cancel();
        this.dialHandle = undefined;
        this.setState('down', 'partitioned');
      } else if (this.state === 'down' && this.reason !== 'partitioned') {
        this.setState('down', 'partitioned');
      }
    } else if (this.started && !this.closed && this.state === 'down' && this.reconnectTimer === undefined) {
      // Not partitioned both ways (any more): a partition lifted by setFaults rather than heal()
      // must not leave a dialer that stopped dialing for it down for good. As heal() does.
      if (this.dials) {
        this.attempt = 0;
        this.failures = 0;
        this.dialNow();
      } else if (this.reason === 'partitioned') {
        this.setState('down', 'healed');
      }
    }
  }

  /** Removes every fault; a connection a partition black-holed is dropped and redialed. */
  heal(): void {
    if (this.closed) throw new LinkError('ERR_LINK_CLOSED', `link to ${this.peerId} is closed`);
    this.faults.in = noFaults();
    this.faults.out = noFaults();
    this.log.warn({ peer: this.peerId }, `link ${this.peerId}: healed`);
    this.emit('faults', null);
    const current = this.connection ?? this.handshake?.connection;
    if (current?.blackHoled === true) current.close('healed');
    if (this.state === 'down') {
      // Healing is a reason to try again now.
      this.attempt = 0;
      this.failures = 0;
      this.reconnectTimer?.cancel();
      this.reconnectTimer = undefined;
      if (this.dials) this.dialNow();
      else if (this.reason === 'partitioned') this.setState('down', 'healed');
    }
  }

  private dropConnections(reason: 'dropped'): void {
    (this.connection ?? this.handshake?.connection)?.close(reason);
    for (const handshake of this.inbound) handshake.connection.close(reason);
  }

  // ---- close ---------------------------------------------------------------------------------

  /**
   * Stops this object as a crash would: no GOODBYE, no events, no reports; timers cancelled and
   * connections destroyed. For the simulator's in-process crashes only.
   */
  abandon(): void {
    this.closed = true;
    this.removeAllListeners();
    this.reconnectTimer?.cancel();
    this.heartbeatTimer?.cancel();
    this.ackTimer?.cancel();
    this.dialHandle?.cancel();
    for (const pending of this.pending.values()) pending.timer.cancel();
    this.pending.clear();
    const connections = [this.connection, this.handshake?.connection, ...[...this.inbound].map((entry) => entry.connection)];
    this.connection = undefined;
    this.handshake = undefined;
    this.inbound.clear();
    for (const connection of connections) connection?.close('crashed');
  }

  /**
   * Closes the link: says GOODBYE on an up connection, reports what is unconfirmed, rejects
   * pending requests with ERR_LINK_CLOSED, stops every timer. Idempotent.
   */
  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    this.reconnectTimer?.cancel();
    this.reconnectTimer = undefined;
    this.nextAttemptAtMs = undefined;
    this.dialHandle?.cancel();
    this.dialHandle = undefined;
    const connection = this.connection;
    if (connection !== undefined) {
      connection.send(FrameType.GOODBYE, Buffer.alloc(0));
      connection.close('closed', undefined, true);
    }
    this.handshake?.connection.close('closed');
    for (const handshake of this.inbound) handshake.connection.close('closed');
    if (this.state !== 'down') this.setState('down', 'closed');
    else if (this.reason !== 'closed') this.setState('down', 'closed');
    return Promise.resolve();
  }
}
