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
// Layout: this module is the Link class; the state vocabulary (LinkState, LINK_TRANSITIONS,
// LinkReason, LinkStateEvent, LinkStatus) is in link-state.ts and the options, tuning, logger,
// message types and reconnect backoff are in link-options.ts. Both are re-exported here, so
// importers keep one path.

import * as crypto from 'node:crypto';
import { EventEmitter } from 'node:events';

import type { LinkErrorCode } from '../errors';
import { isBlockmirrorError } from '../errors';
import { type Clock, realClock, type TimerHandle } from '../runtime/clock';
import { type Random, realRandom } from '../runtime/random';
import { BinaryReader, BinaryWriter } from './codec';
import { Connection, type ConnectionClose } from './connection';
import { LinkError } from './errors';
import {
  type FaultSettings,
  type LinkFaults,
  applyFaultSettings,
  checkFaultSettings,
  hasFaults,
  noFaults,
} from './faults';
import { FRAME_HEADER_BYTES, type Frame, FrameFlag, FrameType } from './frame';
import {
  AcceptorHandshake,
  DialerHandshake,
  type HandshakeResult,
  type HandshakeStep,
  LINK_PROTOCOL_VERSION_MAX,
  LINK_PROTOCOL_VERSION_MIN,
  NONCE_BYTES,
  type VersionRange,
  parseRefusal,
} from './handshake';
import { LINK_DEFAULTS, MAX_MAX_FRAME_BYTES, MIN_MAX_FRAME_BYTES } from './limits';
import { isKnownMessageType } from './message-types';
import { type Network, type NetworkAddress, formatAddress } from './wire';
import {
  type LinkState,
  isLinkTransition,
  type LinkReason,
  type LinkStateEvent,
  type LinkStatus,
} from './link-state';
import {
  type LinkMessage,
  type UnconfirmedMessage,
  type UnconfirmedReport,
  type SendOptions,
  type RequestHandler,
  type LinkLogger,
  SILENT,
  type LinkTuning,
  type LinkOptions,
  backoffDelayMs,
  positiveInteger,
} from './link-options';

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

interface SentMessage {
  messageId: number;
  sequence: number;
  type: number;
  byteLength: number;
  onUnconfirmed: ((message: UnconfirmedMessage) => void) | undefined;
}

interface PendingRequest {
  resolve(payload: Buffer): void;
  reject(error: Error): void;
  timer: TimerHandle;
  connection: Connection;
}

interface ActiveHandshake {
  connection: Connection;
  dialer: DialerHandshake | undefined;
  acceptor: AcceptorHandshake | undefined;
  timer: TimerHandle;
}

/** Acknowledge at once after this many unacknowledged bytes... */
const ACK_EVERY_BYTES = 1024 * 1024;
/**
 * ...else within this long (at most half the heartbeat interval): acknowledgements of small
 * messages are coalesced, so a request/response exchange costs two frames, not four. Long
 * enough not to keep a short timer armed under request traffic (a timer due within a few ms
 * costs every wake-up ~5 us on this VM); streams are acknowledged by byte count anyway.
 */
const ACK_DELAY_MS = 20;

/** A link to one peer controller. */
export class Link extends EventEmitter {
  readonly selfId: string;
  readonly peerId: string;
  readonly dials: boolean;
  private readonly address: NetworkAddress | undefined;
  private readonly secret: Buffer | undefined;
  private readonly network: Network;
  private readonly clock: Clock;
  private readonly random: Random;
  private readonly log: LinkLogger;
  private readonly versions: VersionRange;
  private readonly features: number;
  private readonly makeNonce: () => Buffer;
  readonly tuning: Required<LinkTuning>;

  private state: LinkState = 'down';
  private reason: LinkReason = 'not-started';
  private reasonCode: LinkErrorCode | undefined;
  private reasonDetail: string | undefined;
  private sinceWallTimeMs: number;
  private started = false;
  private closed = false;

  private connection: Connection | undefined;
  private handshake: ActiveHandshake | undefined;
  private readonly inbound = new Set<ActiveHandshake>();
  private agreed: HandshakeResult | undefined;
  private dialHandle: { cancel(): void } | undefined;
  private reconnectTimer: TimerHandle | undefined;
  private nextAttemptAtMs: number | undefined;
  private heartbeatTimer: TimerHandle | undefined;
  private ackTimer: TimerHandle | undefined;
  private lastFrameAtMs = 0;
  private everUp = false;

  private readonly faults: LinkFaults = { in: noFaults(), out: noFaults() };

  // Delivery bookkeeping (per connection, reset when it ends).
  private sent: SentMessage[] = [];
  private sentHead = 0;
  private queued = 0;
  private full = false;
  private lastDeliveredSequence = 0;
  private unackedBytes = 0;

  private nextMessageId = 1;
  private nextCorrelation = 1;
  private readonly pending = new Map<number, PendingRequest>();
  private readonly handlers = new Map<number, RequestHandler>();

  // Totals over all connections.
  private closedBytesIn = 0;
  private closedBytesOut = 0;
  private closedFramesIn = 0;
  private closedFramesOut = 0;
  private messagesSent = 0;
  private messagesReceived = 0;
  private reconnects = 0;
  private attempt = 0;
  /** Downs since the link was last up: the backoff exponent (a lost link counts as one). */
  private failures = 0;
  private rttMs: number | undefined;
  private unconfirmedReported = 0;

  constructor(options: LinkOptions) {
    super();
    this.selfId = options.selfId;
    this.peerId = options.peerId;
    this.address = options.address;
    this.dials = options.dial ?? options.address !== undefined;
    if (this.dials && this.address === undefined) throw new TypeError('a link that dials needs an address');
    this.secret = options.secret;
    this.network = options.network;
    this.clock = options.clock ?? realClock;
    this.random = options.random ?? realRandom;
    this.log = options.logger ?? SILENT;
    this.versions = options.versions ?? { min: LINK_PROTOCOL_VERSION_MIN, max: LINK_PROTOCOL_VERSION_MAX };
    this.features = options.features ?? 0;
    this.makeNonce = options.nonce ?? (() => crypto.randomBytes(NONCE_BYTES));
    const heartbeatIntervalMs = positiveInteger('heartbeatIntervalMs', options.heartbeatIntervalMs, LINK_DEFAULTS.heartbeatIntervalMs, 1, 600_000);
    const reconnectInitialDelayMs = positiveInteger('reconnectInitialDelayMs', options.reconnectInitialDelayMs, LINK_DEFAULTS.reconnectInitialDelayMs, 1, 600_000);
    const maxFrameBytes = positiveInteger('maxFrameBytes', options.maxFrameBytes, LINK_DEFAULTS.maxFrameBytes, MIN_MAX_FRAME_BYTES, MAX_MAX_FRAME_BYTES);
    this.tuning = {
      heartbeatIntervalMs,
      deadPeerTimeoutMs: positiveInteger('deadPeerTimeoutMs', options.deadPeerTimeoutMs, LINK_DEFAULTS.deadPeerTimeoutMs, heartbeatIntervalMs + 1, 3_600_000),
      handshakeTimeoutMs: positiveInteger('handshakeTimeoutMs', options.handshakeTimeoutMs, LINK_DEFAULTS.handshakeTimeoutMs, 1, 3_600_000),
      connectTimeoutMs: positiveInteger('connectTimeoutMs', options.connectTimeoutMs, LINK_DEFAULTS.connectTimeoutMs, 1, 3_600_000),
      reconnectInitialDelayMs,
      reconnectMaxDelayMs: positiveInteger('reconnectMaxDelayMs', options.reconnectMaxDelayMs, LINK_DEFAULTS.reconnectMaxDelayMs, reconnectInitialDelayMs, 3_600_000),
      reconnectJitter: options.reconnectJitter ?? LINK_DEFAULTS.reconnectJitter,
      maxFrameBytes,
      maxQueuedBytes: positiveInteger('maxQueuedBytes', options.maxQueuedBytes, LINK_DEFAULTS.maxQueuedBytes, maxFrameBytes, 2 ** 40),
      requestTimeoutMs: positiveInteger('requestTimeoutMs', options.requestTimeoutMs, LINK_DEFAULTS.requestTimeoutMs, 1, 3_600_000),
    };
    if (!(this.tuning.reconnectJitter >= 0 && this.tuning.reconnectJitter <= 1)) {
      throw new RangeError(`reconnectJitter must be from 0 to 1, got ${options.reconnectJitter}`);
    }
    this.sinceWallTimeMs = this.clock.wallTimeMs();
  }

  /** The current state. */
  get currentState(): LinkState {
    return this.state;
  }

  /** True while messages can be sent. */
  get isUp(): boolean {
    return this.state === 'up';
  }

  /** True while the queue is at its limit (until 'drain'). */
  get isFull(): boolean {
    return this.full;
  }

  /** The shared secret, for the listener's acceptor handshake only. */
  get secretForHandshake(): Buffer | undefined {
    return this.secret;
  }

  private setState(next: LinkState, reason: LinkReason, code?: LinkErrorCode, detail?: string): void {
    const old = this.state;
    if (!isLinkTransition(old, next)) {
      throw new Error(`link ${this.selfId}->${this.peerId}: invalid transition ${old} -> ${next}`);
    }
    this.state = next;
    this.reason = reason;
    this.reasonCode = code;
    this.reasonDetail = detail;
    this.sinceWallTimeMs = this.clock.wallTimeMs();
    const event: LinkStateEvent = { peerId: this.peerId, old, new: next, reason, timeMs: this.clock.nowMs(), wallTimeMs: this.sinceWallTimeMs };
    if (code !== undefined) event.code = code;
    if (detail !== undefined) event.detail = detail;
    const level = next === 'down' && old === 'up' && reason !== 'closed' ? 'warn' : 'info';
    this.log[level]({ peer: this.peerId, old, new: next, reason, code, detail },
      `link ${this.peerId}: ${old} -> ${next} (${reason}${code === undefined ? '' : ` ${code}`}${detail === undefined ? '' : `: ${detail}`})`);
    this.emit('state', event);
  }

  /** Starts dialing (a dialing link) or waiting (an accepting one). */
  start(): void {
    if (this.closed) throw new LinkError('ERR_LINK_CLOSED', `link to ${this.peerId} is closed`);
    if (this.started) return;
    this.started = true;
    if (this.dials) this.dialNow();
    else this.setState('down', 'waiting-for-peer');
  }

  // ---- dialing -------------------------------------------------------------------------------

  private partitionedBothWays(): boolean {
    return this.faults.in.partitioned && this.faults.out.partitioned;
  }

  private dialNow(): void {
    this.reconnectTimer = undefined;
    this.nextAttemptAtMs = undefined;
    if (this.closed || !this.dials || this.state !== 'down') return;
    if (this.partitionedBothWays()) {
      if (this.reason !== 'partitioned') this.setState('down', 'partitioned');
      return;
    }
    this.attempt++;
    this.setState('connecting', 'dialing', undefined, formatAddress(this.address as NetworkAddress));
    this.dialHandle = this.network.dial(this.address as NetworkAddress, this.tuning.connectTimeoutMs, (error, wire) => {
      this.dialHandle = undefined;
      if (this.closed || this.state !== 'connecting') {
        wire?.destroy('not needed');
        return;
      }
      if (error !== undefined || wire === undefined) {
        this.goDown('connect-failed', undefined, error ?? 'no wire');
        return;
      }
      const connection = new Connection(wire, 'dialer', {
        maxFrameBytes: this.tuning.maxFrameBytes, clock: this.clock, random: this.random, faults: () => this.faults,
      });
      const dialer = new DialerHandshake({
        selfId: this.selfId, expectedPeerId: this.peerId, versions: this.versions, features: this.features,
        secret: this.secret, nonce: this.makeNonce(),
      });
      const handshake: ActiveHandshake = { connection, dialer, acceptor: undefined, timer: this.handshakeTimer(connection) };
      this.handshake = handshake;
      this.setState('handshaking', 'connected', undefined, wire.description);
      connection.start({
        frame: (frame) => this.onHandshakeFrame(handshake, frame),
        close: (info) => this.onHandshakeClose(handshake, info),
      });
      this.applyStep(handshake, dialer.start());
    });
  }

  private handshakeTimer(connection: Connection, remainingMs = this.tuning.handshakeTimeoutMs): TimerHandle {
    return this.clock.setTimer(() => {
      connection.close('handshake-timeout', new LinkError('ERR_LINK_HANDSHAKE_TIMEOUT',
        `the handshake did not finish within ${this.tuning.handshakeTimeoutMs} ms`));
    }, remainingMs, { unref: true });
  }

  private scheduleReconnect(): void {
    if (this.closed || !this.dials || this.reconnectTimer !== undefined || this.state !== 'down') return;
    if (this.partitionedBothWays()) return;
    const delayMs = backoffDelayMs(Math.max(1, this.failures), this.tuning, this.random);
    this.nextAttemptAtMs = this.clock.nowMs() + delayMs;
    this.reconnectTimer = this.clock.setTimer(() => this.dialNow(), delayMs, { unref: true });
  }

  // ---- inbound -------------------------------------------------------------------------------

  /**
   * Takes an inbound connection whose HELLO named this peer and passed the acceptor's checks;
   * `step` is the acceptor's answer to it (HELLO_REPLY to send). Called by the listener.
   */
  adoptInbound(connection: Connection, acceptor: AcceptorHandshake, step: HandshakeStep, remainingMs: number): void {
    if (this.closed || this.partitionedBothWays()) {
      connection.close(this.closed ? 'closed' : 'partitioned');
      return;
    }
    connection.setFaults(() => this.faults);
    const handshake: ActiveHandshake = { connection, dialer: undefined, acceptor, timer: this.handshakeTimer(connection, Math.max(1, remainingMs)) };
    connection.setHandlers({
      frame: (frame) => this.onHandshakeFrame(handshake, frame),
      close: (info) => this.onHandshakeClose(handshake, info),
    });
    if (this.state === 'connecting') {
      // Both sides dialed (two configs that disagree on who dials): take the inbound one.
      this.dialHandle?.cancel();
      this.dialHandle = undefined;
      this.setState('down', 'inbound');
    }
    if (this.state === 'down') {
      this.reconnectTimer?.cancel();
      this.reconnectTimer = undefined;
      this.nextAttemptAtMs = undefined;
      this.handshake = handshake;
      this.setState('handshaking', 'inbound', undefined, connection.wire.description);
    } else {
      // Up, or handshaking on another connection: finish this one on the side; it replaces the
      // current one only if it completes.
      this.inbound.add(handshake);
    }
    this.applyStep(handshake, step);
  }

  /**
   * The listener refused an inbound connection that claimed to be this peer (wrong version,
   * wrong secret mode): status shows why, so both operators see the refusal.
   */
  noteRefusedInbound(code: LinkErrorCode, message: string): void {
    if (this.closed || this.state !== 'down') return;
    this.setState('down', 'refused', code, message);
  }

  private onHandshakeFrame(handshake: ActiveHandshake, frame: Frame): void {
    this.lastFrameAtMs = this.clock.nowMs();
    const machine = handshake.dialer ?? handshake.acceptor;
    if (machine === undefined) return;
    let step: HandshakeStep;
    try {
      step = machine.receive(frame.type, frame.payload);
    } catch (error) {
      if (error instanceof LinkError) {
        handshake.connection.close('protocol-error', error);
        return;
      }
      throw error;
    }
    this.applyStep(handshake, step);
  }

  private applyStep(handshake: ActiveHandshake, step: HandshakeStep): void {
    const { connection } = handshake;
    if (step.kind !== 'refused') {
      for (const frame of step.send) connection.send(frame.type, frame.payload);
    }
    if (step.kind === 'refuse' || step.kind === 'refused') {
      this.log.warn({ peer: this.peerId, code: step.code }, `link ${this.peerId}: ${step.kind === 'refuse' ? 'refusing' : 'refused'}: ${step.message}`);
      connection.close('refused', new LinkError(step.code, step.message), step.kind === 'refuse');
      return;
    }
    if (step.kind === 'done') this.established(handshake, step.result);
  }

  private onHandshakeClose(handshake: ActiveHandshake, info: ConnectionClose): void {
    handshake.timer.cancel();
    this.addClosedCounters(handshake.connection);
    if (this.inbound.delete(handshake)) {
      this.log.info({ peer: this.peerId, reason: info.reason }, `link ${this.peerId}: a second inbound handshake ended (${info.reason})`);
      return;
    }
    if (this.handshake !== handshake) return;
    this.handshake = undefined;
    if (this.state === 'handshaking') this.failed(info);
  }

  private failed(info: ConnectionClose): void {
    const reason: LinkReason = info.reason === 'handshake-timeout' ? 'handshake-timeout'
      : info.reason === 'refused' ? 'refused'
        : info.reason === 'protocol-error' ? 'protocol-error'
          : (['dead-peer', 'dropped', 'healed', 'replaced', 'closed', 'partitioned'] as string[]).includes(info.reason)
            ? info.reason as LinkReason
            : 'closed-by-peer';
    this.goDown(reason, info.error?.code as LinkErrorCode | undefined, info.error?.message ?? info.detail);
  }

  private goDown(reason: LinkReason, code?: LinkErrorCode, detail?: string): void {
    if (this.state === 'down') return;
    this.failures++;
    this.setState('down', reason, code, detail);
    this.scheduleReconnect();
  }

  private established(handshake: ActiveHandshake, result: HandshakeResult): void {
    handshake.timer.cancel();
    const { connection } = handshake;
    connection.authenticated();
    if (this.inbound.delete(handshake)) {
      // A completed inbound handshake replaces whatever this link has now.
      const previous = this.connection ?? this.handshake?.connection;
      this.handshake = undefined;
      if (previous !== undefined) previous.close('replaced');
      if (this.state !== 'down') this.setState('down', 'replaced');
      this.reconnectTimer?.cancel();
      this.reconnectTimer = undefined;
      this.setState('handshaking', 'inbound', undefined, connection.wire.description);
    } else {
      this.handshake = undefined;
    }
    this.agreed = result;
    this.connection = connection;
    this.resetDelivery();
    connection.setHandlers({
      frame: (frame) => this.onFrame(connection, frame),
      close: (info) => this.onConnectionClose(connection, info),
    });
    if (this.everUp) this.reconnects++;
    this.everUp = true;
    this.attempt = 0;
    this.failures = 0;
    // The RTT of the previous connection says nothing about this one.
    this.rttMs = undefined;
    this.lastFrameAtMs = this.clock.nowMs();
    this.setState('up', 'handshake-done', undefined,
      `protocol ${result.version}, ${result.authenticated ? 'authenticated (hmac-sha256)' : 'unauthenticated'}`);
    this.armHeartbeat();
  }

  // ---- up ------------------------------------------------------------------------------------

  private armHeartbeat(): void {
    this.heartbeatTimer = this.clock.setTimer(() => this.heartbeat(), this.tuning.heartbeatIntervalMs, { unref: true });
  }

  private heartbeat(): void {
    this.heartbeatTimer = undefined;
    const connection = this.connection;
    if (connection === undefined || this.state !== 'up') return;
    const silentMs = this.clock.nowMs() - this.lastFrameAtMs;
    if (silentMs >= this.tuning.deadPeerTimeoutMs) {
      connection.close('dead-peer', undefined);
      return;
    }
    connection.send(FrameType.PING, new BinaryWriter().f64(this.clock.nowMs()).encode());
    this.armHeartbeat();
  }

  private onFrame(connection: Connection, frame: Frame): void {
    if (connection !== this.connection) return;
    this.lastFrameAtMs = this.clock.nowMs();
    try {
      switch (frame.type) {
        case FrameType.PING: {
          const reader = new BinaryReader(frame.payload, 'PING');
          reader.f64();
          reader.end();
          // A copy: the payload's buffer is reused by the decoder, and a delay fault holds frames.
          connection.send(FrameType.PONG, Buffer.from(frame.payload));
          return;
        }
        case FrameType.PONG: {
          const reader = new BinaryReader(frame.payload, 'PONG');
          const sentAtMs = reader.f64();
          reader.end();
          const rtt = this.clock.nowMs() - sentAtMs;
          if (Number.isFinite(rtt) && rtt >= 0) this.rttMs = rtt;
          return;
        }
        case FrameType.ACK: {
          const reader = new BinaryReader(frame.payload, 'ACK');
          const sequence = reader.u64();
          reader.end();
          this.confirm(sequence);
          return;
        }
        case FrameType.GOODBYE: {
          connection.close('closed-by-peer');
          return;
        }
        case FrameType.REFUSE: {
          const refusal = parseRefusal(frame.payload);
          connection.close('refused', new LinkError(refusal.code, refusal.message));
          return;
        }
        case FrameType.HELLO:
        case FrameType.HELLO_REPLY:
        case FrameType.AUTH:
        case FrameType.WELCOME:
          throw new LinkError('ERR_LINK_PROTOCOL', `handshake frame 0x${frame.type.toString(16)} on an established link`);
        default:
          this.onMessage(connection, frame);
      }
    } catch (error) {
      if (error instanceof LinkError) {
        this.log.warn({ peer: this.peerId, code: error.code }, `link ${this.peerId}: ${error.message}`);
        connection.close('protocol-error', error);
        return;
      }
      throw error;
    }
  }

  private onMessage(connection: Connection, frame: Frame): void {
    this.messagesReceived++;
    this.lastDeliveredSequence = frame.sequence;
    this.unackedBytes += FRAME_HEADER_BYTES + frame.payload.length;
    if ((frame.flags & FrameFlag.RESPONSE) !== 0) {
      this.onResponse({ ...frame, payload: Buffer.from(frame.payload) });
    } else if ((frame.flags & FrameFlag.REQUEST) !== 0) {
      this.onRequest(connection, frame);
    } else {
      const message: LinkMessage = { type: frame.type, payload: frame.payload };
      this.emit('message', message);
    }
    if (this.unackedBytes >= Math.min(ACK_EVERY_BYTES, this.tuning.maxQueuedBytes / 4)) this.sendAck();
    else if (this.ackTimer === undefined) {
      this.ackTimer = this.clock.setTimer(() => this.sendAck(), Math.min(ACK_DELAY_MS, this.tuning.heartbeatIntervalMs / 2), { unref: true });
    }
  }

  private sendAck(): void {
    this.ackTimer?.cancel();
    this.ackTimer = undefined;
    if (this.connection === undefined || this.state !== 'up' || this.unackedBytes === 0) return;
    this.unackedBytes = 0;
    this.connection.send(FrameType.ACK, new BinaryWriter().u64(this.lastDeliveredSequence).encode());
  }

  private confirm(sequence: number): void {
    while (this.sentHead < this.sent.length) {
      const head = this.sent[this.sentHead] as SentMessage;
      if (head.sequence > sequence) break;
      this.queued -= head.byteLength;
      this.sentHead++;
    }
    if (this.sentHead > 1024 && this.sentHead * 2 > this.sent.length) {
      this.sent = this.sent.slice(this.sentHead);
      this.sentHead = 0;
    }
    if (this.full && this.queued <= this.tuning.maxQueuedBytes / 2) {
      this.full = false;
      this.emit('drain');
    }
  }

  private resetDelivery(): void {
    this.sent = [];
    this.sentHead = 0;
    this.queued = 0;
    this.lastDeliveredSequence = 0;
    this.unackedBytes = 0;
  }

  /**
   * Sends one message; returns its link-wide id. Throws ERR_LINK_DOWN when the link is not up,
   * ERR_LINK_FULL when the unacknowledged bytes would pass maxQueuedBytes (wait for 'drain'),
   * ERR_LINK_FRAME_TOO_LARGE for a payload above the frame limit.
   */
  send(type: number, payload: Buffer, options?: SendOptions): number {
    return this.sendFrame(type, payload, 0, 0, options?.onUnconfirmed, options);
  }

  private sendFrame(type: number, payload: Buffer, flags: number, correlation: number,
    onUnconfirmed: ((message: UnconfirmedMessage) => void) | undefined, frameOptions?: SendOptions): number {
    if (!Buffer.isBuffer(payload)) throw new TypeError('payload must be a Buffer');
    if (!isKnownMessageType(type)) {
      throw new RangeError(`message type 0x${Number(type).toString(16)} is not registered (src/transport/message-types.ts): the peer would refuse it`);
    }
    if (this.closed) throw new LinkError('ERR_LINK_CLOSED', `link to ${this.peerId} is closed`);
    const connection = this.connection;
    if (connection === undefined || this.state !== 'up') {
      throw new LinkError('ERR_LINK_DOWN', `link to ${this.peerId} is ${this.state} (${this.reason})`);
    }
    const byteLength = FRAME_HEADER_BYTES + payload.length;
    if (byteLength > this.tuning.maxFrameBytes) {
      throw new LinkError('ERR_LINK_FRAME_TOO_LARGE', `a ${payload.length}-byte message exceeds maxFrameBytes ${this.tuning.maxFrameBytes}`);
    }
    if (this.queued + byteLength > this.tuning.maxQueuedBytes) {
      if (!this.full) {
        this.full = true;
        this.emit('full');
      }
      throw new LinkError('ERR_LINK_FULL',
        `link to ${this.peerId}: ${this.queued} bytes unacknowledged; another ${byteLength} would pass maxQueuedBytes ${this.tuning.maxQueuedBytes}`);
    }
    const messageId = this.nextMessageId++;
    const sequence = connection.send(type, payload, flags, correlation, frameOptions);
    this.sent.push({ messageId, sequence, type, byteLength, onUnconfirmed });
    this.queued += byteLength;
    this.messagesSent++;
    return messageId;
  }

  /** Registers the handler of a request type (one per type). */
  handle(type: number, handler: RequestHandler): void {
    if (typeof handler !== 'function') throw new TypeError('handler must be a function');
    if (this.handlers.has(type)) throw new Error(`a handler for type 0x${type.toString(16)} is registered already`);
    this.handlers.set(type, handler);
  }

  /** Sends a request and resolves with the response payload. */
  request(type: number, payload: Buffer, options?: { timeoutMs?: number }): Promise<Buffer> {
    const timeoutMs = options?.timeoutMs ?? this.tuning.requestTimeoutMs;
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new RangeError(`timeoutMs must be > 0, got ${timeoutMs}`);
    let correlation = this.nextCorrelation;
    this.nextCorrelation = this.nextCorrelation >= 0xffffffff ? 1 : this.nextCorrelation + 1;
    while (this.pending.has(correlation)) correlation = correlation >= 0xffffffff ? 1 : correlation + 1;
    return new Promise<Buffer>((resolve, reject) => {
      this.sendFrame(type, payload, FrameFlag.REQUEST, correlation, undefined);
      const connection = this.connection as Connection;
      const timer = this.clock.setTimer(() => {
        if (this.pending.delete(correlation)) {
          reject(new LinkError('ERR_LINK_TIMEOUT', `request 0x${type.toString(16)} to ${this.peerId}: no response within ${timeoutMs} ms`));
        }
      }, timeoutMs, { unref: true });
      this.pending.set(correlation, { resolve, reject, timer, connection });
    });
  }

  private onRequest(connection: Connection, frame: Frame): void {
    const handler = this.handlers.get(frame.type);
    const respond = (flags: number, payload: Buffer): void => {
      if (this.connection !== connection || this.state !== 'up') return;
      try {
        this.sendFrame(frame.type, payload, FrameFlag.RESPONSE | flags, frame.correlation, undefined);
      } catch (error) {
        this.log.warn({ peer: this.peerId, err: error }, `link ${this.peerId}: response not sent`);
      }
    };
    const fail = (code: string, message: string): void =>
      respond(FrameFlag.ERROR, new BinaryWriter().string(code.slice(0, 64)).string(message.slice(0, 1000)).encode());
    if (handler === undefined) {
      fail('ERR_LINK_NO_HANDLER', `controller ${this.selfId} has no handler for request type 0x${frame.type.toString(16)}`);
      return;
    }
    let result: Buffer | Promise<Buffer>;
    try {
      // A copy: the handler may answer later, or answer with the payload itself, and the
      // decoder reuses the buffer the frame arrived in.
      result = handler(Buffer.from(frame.payload));
    } catch (error) {
      fail(isBlockmirrorError(error) ? error.code : 'ERR_LINK_REMOTE', (error as Error)?.message ?? String(error));
      return;
    }
    Promise.resolve(result).then(
      (payload) => respond(0, payload),
      (error: unknown) => fail(isBlockmirrorError(error) ? error.code : 'ERR_LINK_REMOTE', (error as Error)?.message ?? String(error)),
    );
  }

  private onResponse(frame: Frame): void {
    const pending = this.pending.get(frame.correlation);
    if (pending === undefined) return; // timed out already
    this.pending.delete(frame.correlation);
    pending.timer.cancel();
    if ((frame.flags & FrameFlag.ERROR) === 0) {
      pending.resolve(frame.payload);
      return;
    }
    const reader = new BinaryReader(frame.payload, 'error response');
    const code = reader.string(64);
    const message = reader.string();
    reader.end();
    const error = new LinkError(code === 'ERR_LINK_NO_HANDLER' ? 'ERR_LINK_NO_HANDLER' : 'ERR_LINK_REMOTE',
      `${this.peerId}: ${code}: ${message}`);
    error.remoteCode = code;
    pending.reject(error);
  }

  private onConnectionClose(connection: Connection, info: ConnectionClose): void {
    if (connection !== this.connection) return;
    this.connection = undefined;
    this.addClosedCounters(connection);
    this.heartbeatTimer?.cancel();
    this.heartbeatTimer = undefined;
    this.ackTimer?.cancel();
    this.ackTimer = undefined;
    this.reportUnconfirmed(connection, info);
    if (info.reason === 'replaced') return; // established() moves the state on
    this.failed(info);
  }

  private reportUnconfirmed(connection: Connection, info: ConnectionClose): void {
    const messages: UnconfirmedMessage[] = [];
    const callbacks: [(message: UnconfirmedMessage) => void, UnconfirmedMessage][] = [];
    for (let index = this.sentHead; index < this.sent.length; index++) {
      const entry = this.sent[index] as SentMessage;
      const message = { messageId: entry.messageId, type: entry.type, byteLength: entry.byteLength };
      messages.push(message);
      if (entry.onUnconfirmed !== undefined) callbacks.push([entry.onUnconfirmed, message]);
    }
    const wasFull = this.full;
    this.resetDelivery();
    this.full = false;
    for (const [correlation, pending] of this.pending) {
      if (pending.connection !== connection) continue;
      this.pending.delete(correlation);
      pending.timer.cancel();
      pending.reject(new LinkError(this.closed ? 'ERR_LINK_CLOSED' : 'ERR_LINK_DOWN',
        `link to ${this.peerId} went down (${info.reason}) before the response`));
    }
    if (messages.length > 0) {
      this.unconfirmedReported += messages.length;
      for (const [callback, message] of callbacks) callback(message);
      const report: UnconfirmedReport = { peerId: this.peerId, reason: info.reason as LinkReason, messages };
      this.emit('unconfirmed', report);
    }
    if (wasFull) this.emit('drain');
  }

  private addClosedCounters(connection: Connection): void {
    this.closedBytesIn += connection.bytesIn;
    this.closedBytesOut += connection.bytesOut;
    this.closedFramesIn += connection.framesIn;
    this.closedFramesOut += connection.framesOut;
    connection.bytesIn = connection.bytesOut = connection.framesIn = connection.framesOut = 0;
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

  /** The faults in force, or null when none. */
  faultsInForce(): LinkFaults | null {
    return hasFaults(this.faults.in) || hasFaults(this.faults.out)
      ? { in: { ...this.faults.in }, out: { ...this.faults.out } }
      : null;
  }

  // ---- status and close ----------------------------------------------------------------------

  status(): LinkStatus {
    const connection = this.connection ?? this.handshake?.connection;
    const status: LinkStatus = {
      peerId: this.peerId,
      state: this.state,
      reason: this.reason,
      sinceWallTimeMs: this.sinceWallTimeMs,
      address: this.address === undefined ? null : formatAddress(this.address),
      dialing: this.dials,
      auth: this.secret === undefined ? 'none' : 'hmac-sha256',
      authenticated: this.state === 'up' && this.agreed?.authenticated === true,
      protocolVersion: this.state === 'up' ? (this.agreed?.version ?? null) : null,
      connection: connection?.wire.description ?? null,
      rttMs: this.state === 'up' ? (this.rttMs ?? null) : null,
      bytesIn: this.closedBytesIn + (connection?.bytesIn ?? 0),
      bytesOut: this.closedBytesOut + (connection?.bytesOut ?? 0),
      framesIn: this.closedFramesIn + (connection?.framesIn ?? 0),
      framesOut: this.closedFramesOut + (connection?.framesOut ?? 0),
      messagesSent: this.messagesSent,
      messagesReceived: this.messagesReceived,
      reconnects: this.reconnects,
      attempt: this.attempt,
      nextAttemptWallTimeMs: this.nextAttemptAtMs === undefined
        ? null
        : this.clock.wallTimeMs() + (this.nextAttemptAtMs - this.clock.nowMs()),
      queuedBytes: this.queued,
      unconfirmedMessages: this.sent.length - this.sentHead,
      unconfirmedReported: this.unconfirmedReported,
      pendingRequests: this.pending.size,
      faults: this.faultsInForce(),
    };
    if (this.reasonCode !== undefined) status.code = this.reasonCode;
    if (this.reasonDetail !== undefined) status.detail = this.reasonDetail;
    return status;
  }

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
