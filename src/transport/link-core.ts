// Notes on the design
// -------------------
// The state of a link (link.ts, whose notes say what a link is and does) and what every layer
// above reads of it: the identity, the injected network, clock, random, logger and handshake
// parameters, the checked tuning, the state with its one setter (setState, over
// LINK_TRANSITIONS, logging "old -> new"), the current connection and handshakes, the timers,
// the delivery bookkeeping of the current connection, the pending requests and handlers, the
// faults and the totals; status() and faultsInForce() read them. A link is a stack of classes,
// each in its own file and each adding one concern to the one below: LinkCore (this file: the
// state and the looking) <- LinkHandshakes (link-handshakes.ts: dialing, inbound connections,
// the handshake, going down and up) <- LinkDelivery (link-delivery.ts: the up connection's
// frames, heartbeats, acknowledgements, messages and requests) <- Link (link.ts: start, faults,
// close). Every field is declared here, in the order of the single class they were split from,
// so an instance is laid out and constructed exactly as before; the layers above add methods
// only. Fields are protected where a layer above uses them, private where this one alone does.
//
// Errors: the constructor throws TypeError / RangeError on bad options; setState() throws on a
// transition outside LINK_TRANSITIONS (a bug, never a network event).

import * as crypto from 'node:crypto';
import { EventEmitter } from 'node:events';

import type { LinkErrorCode } from '../errors';
import { type Clock, realClock, type TimerHandle } from '../runtime/clock';
import { type Random, realRandom } from '../runtime/random';
import type { Connection } from './connection';
import { type LinkFaults, hasFaults, noFaults } from './faults';
import {
  type AcceptorHandshake,
  type DialerHandshake,
  type HandshakeResult,
  LINK_PROTOCOL_VERSION_MAX,
  LINK_PROTOCOL_VERSION_MIN,
  NONCE_BYTES,
  type VersionRange,
} from './handshake';
import { LINK_DEFAULTS, MAX_MAX_FRAME_BYTES, MIN_MAX_FRAME_BYTES } from './limits';
import { type Network, type NetworkAddress, formatAddress } from './wire';
import {
  type LinkState,
  isLinkTransition,
  type LinkReason,
  type LinkStateEvent,
  type LinkStatus,
} from './link-state';
import {
  type UnconfirmedMessage,
  type RequestHandler,
  type LinkLogger,
  SILENT,
  type LinkTuning,
  type LinkOptions,
  positiveInteger,
} from './link-options';

export interface SentMessage {
  messageId: number;
  sequence: number;
  type: number;
  byteLength: number;
  onUnconfirmed: ((message: UnconfirmedMessage) => void) | undefined;
}

export interface PendingRequest {
  resolve(payload: Buffer): void;
  reject(error: Error): void;
  timer: TimerHandle;
  connection: Connection;
}

export interface ActiveHandshake {
  connection: Connection;
  dialer: DialerHandshake | undefined;
  acceptor: AcceptorHandshake | undefined;
  timer: TimerHandle;
}

/** The state of a link (see the notes above); Link (link.ts) is the class controllers use. */
export abstract class LinkCore extends EventEmitter {
  readonly selfId: string;
  readonly peerId: string;
  readonly dials: boolean;
  protected readonly address: NetworkAddress | undefined;
  protected readonly secret: Buffer | undefined;
  protected readonly network: Network;
  protected readonly clock: Clock;
  protected readonly random: Random;
  protected readonly log: LinkLogger;
  protected readonly versions: VersionRange;
  protected readonly features: number;
  protected readonly makeNonce: () => Buffer;
  readonly tuning: Required<LinkTuning>;

  protected state: LinkState = 'down';
  protected reason: LinkReason = 'not-started';
  private reasonCode: LinkErrorCode | undefined;
  private reasonDetail: string | undefined;
  private sinceWallTimeMs: number;
  protected started = false;
  protected closed = false;

  protected connection: Connection | undefined;
  protected handshake: ActiveHandshake | undefined;
  protected readonly inbound = new Set<ActiveHandshake>();
  protected agreed: HandshakeResult | undefined;
  protected dialHandle: { cancel(): void } | undefined;
  protected reconnectTimer: TimerHandle | undefined;
  protected nextAttemptAtMs: number | undefined;
  protected heartbeatTimer: TimerHandle | undefined;
  protected ackTimer: TimerHandle | undefined;
  protected lastFrameAtMs = 0;
  protected everUp = false;

  protected readonly faults: LinkFaults = { in: noFaults(), out: noFaults() };

  // Delivery bookkeeping (per connection, reset when it ends).
  protected sent: SentMessage[] = [];
  protected sentHead = 0;
  protected queued = 0;
  protected full = false;
  protected lastDeliveredSequence = 0;
  protected unackedBytes = 0;

  protected nextMessageId = 1;
  protected nextCorrelation = 1;
  protected readonly pending = new Map<number, PendingRequest>();
  protected readonly handlers = new Map<number, RequestHandler>();

  // Totals over all connections.
  private closedBytesIn = 0;
  private closedBytesOut = 0;
  private closedFramesIn = 0;
  private closedFramesOut = 0;
  protected messagesSent = 0;
  protected messagesReceived = 0;
  protected reconnects = 0;
  protected attempt = 0;
  /** Downs since the link was last up: the backoff exponent (a lost link counts as one). */
  protected failures = 0;
  protected rttMs: number | undefined;
  protected unconfirmedReported = 0;

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

  protected setState(next: LinkState, reason: LinkReason, code?: LinkErrorCode, detail?: string): void {
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

  // ---- used by the layers above --------------------------------------------------------------

  protected partitionedBothWays(): boolean {
    return this.faults.in.partitioned && this.faults.out.partitioned;
  }

  protected resetDelivery(): void {
    this.sent = [];
    this.sentHead = 0;
    this.queued = 0;
    this.lastDeliveredSequence = 0;
    this.unackedBytes = 0;
  }

  protected addClosedCounters(connection: Connection): void {
    this.closedBytesIn += connection.bytesIn;
    this.closedBytesOut += connection.bytesOut;
    this.closedFramesIn += connection.framesIn;
    this.closedFramesOut += connection.framesOut;
    connection.bytesIn = connection.bytesOut = connection.framesIn = connection.framesOut = 0;
  }

  /** The faults in force, or null when none. */
  faultsInForce(): LinkFaults | null {
    return hasFaults(this.faults.in) || hasFaults(this.faults.out)
      ? { in: { ...this.faults.in }, out: { ...this.faults.out } }
      : null;
  }

  // ---- status --------------------------------------------------------------------------------

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
}
