// Notes on the design
// -------------------
// A controller's replication listener: it accepts connections, runs each inbound handshake up to
// the HELLO (which names the dialer), checks it, and hands the connection to the Link of that
// peer, which finishes the handshake and owns the connection from then on.
//
// Bad input never reaches a link: garbage, an HTTP request, a huge length, a bad CRC or a frame
// other than HELLO closes that connection at once (before the handshake, frames are limited to
// HANDSHAKE_MAX_FRAME_BYTES). A handshake that does not finish in handshakeTimeoutMs is
// dropped, and at most maxPendingConnections handshakes run at once: more are closed on
// accept. Established links are not touched by any of this.

import * as crypto from 'node:crypto';

import type { Clock, TimerHandle } from '../runtime/clock';
import type { Random } from '../runtime/random';
import { Connection, type ConnectionClose } from './connection';
import { LinkError } from './errors';
import { FrameType } from './frame';
import { AcceptorHandshake, NONCE_BYTES, type VersionRange } from './handshake';
import type { Link, LinkLogger } from './link';
import { LINK_DEFAULTS } from './limits';
import type { Network, NetworkAddress, NetworkListener, Wire } from './wire';
import { formatAddress } from './wire';

/** Options of a LinkListener. */
export interface LinkListenerOptions {
  selfId: string;
  address: NetworkAddress;
  network: Network;
  clock: Clock;
  random: Random;
  logger: LinkLogger;
  /** The link of a configured peer, or undefined. */
  lookupLink: (peerId: string) => Link | undefined;
  versions: VersionRange;
  features: number;
  maxFrameBytes: number;
  handshakeTimeoutMs: number;
  /** Inbound handshakes in progress at once. @default 16 */
  maxPendingConnections?: number;
  nonce?: () => Buffer;
}

/** Counters of a listener. */
export interface LinkListenerStats {
  accepted: number;
  handedOver: number;
  refused: number;
  protocolErrors: number;
  timedOut: number;
  overLimit: number;
  pending: number;
}

interface Pending {
  connection: Connection;
  timer: TimerHandle;
  startedAtMs: number;
}

/** Accepts links from peers. */
export class LinkListener {
  private listener: NetworkListener | undefined;
  private readonly pending = new Set<Pending>();
  private readonly maxPending: number;
  private closed = false;
  private readonly counters = { accepted: 0, handedOver: 0, refused: 0, protocolErrors: 0, timedOut: 0, overLimit: 0 };

  constructor(private readonly options: LinkListenerOptions) {
    this.maxPending = options.maxPendingConnections ?? LINK_DEFAULTS.maxPendingConnections;
  }

  /** Starts listening; resolves with the bound address. */
  async listen(): Promise<NetworkAddress> {
    this.listener = await this.options.network.listen(this.options.address, (wire) => this.accept(wire));
    return this.listener.address;
  }

  /** The bound address (after listen). */
  get address(): NetworkAddress | undefined {
    return this.listener?.address;
  }

  stats(): LinkListenerStats {
    return { ...this.counters, pending: this.pending.size };
  }

  private accept(wire: Wire): void {
    const { logger } = this.options;
    if (this.closed) {
      wire.destroy('listener closed');
      return;
    }
    this.counters.accepted++;
    if (this.pending.size >= this.maxPending) {
      this.counters.overLimit++;
      const error = new LinkError('ERR_LINK_TOO_MANY_CONNECTIONS',
        `${this.pending.size} handshakes in progress (maxPendingConnections ${this.maxPending}); closing ${wire.description}`);
      logger.warn({ code: error.code, remote: formatAddress(wire.remote) }, error.message);
      wire.destroy('too many connections');
      return;
    }
    const connection = new Connection(wire, 'acceptor', {
      maxFrameBytes: this.options.maxFrameBytes, clock: this.options.clock, random: this.options.random,
    });
    const entry: Pending = {
      connection,
      startedAtMs: this.options.clock.nowMs(),
      timer: this.options.clock.setTimer(() => {
        this.counters.timedOut++;
        connection.close('handshake-timeout', new LinkError('ERR_LINK_HANDSHAKE_TIMEOUT',
          `no HELLO within ${this.options.handshakeTimeoutMs} ms`));
      }, this.options.handshakeTimeoutMs, { unref: true }),
    };
    this.pending.add(entry);
    const acceptor = new AcceptorHandshake({
      selfId: this.options.selfId,
      versions: this.options.versions,
      features: this.options.features,
      lookupPeer: (peerId) => {
        const link = this.options.lookupLink(peerId);
        return link === undefined ? undefined : { secret: link.secretForHandshake };
      },
      nonce: (this.options.nonce ?? (() => crypto.randomBytes(NONCE_BYTES)))(),
    });
    connection.start({
      frame: (frame) => {
        if (!this.pending.has(entry)) return;
        let step;
        try {
          if (frame.type !== FrameType.HELLO) {
            throw new LinkError('ERR_LINK_PROTOCOL', `expected HELLO, got frame type 0x${frame.type.toString(16)}`);
          }
          step = acceptor.receive(frame.type, frame.payload);
        } catch (error) {
          if (!(error instanceof LinkError)) throw error;
          // Counted and logged once, by the close handler below.
          connection.close('protocol-error', error);
          return;
        }
        if (step.kind === 'refuse' || step.kind === 'refused') {
          this.counters.refused++;
          const peerId = acceptor.claimedPeerId;
          logger.warn({ code: step.code, peer: peerId, remote: formatAddress(wire.remote) },
            `link listener: refusing ${peerId ?? 'a connection'}: ${step.message}`);
          if (step.kind === 'refuse') for (const out of step.send) connection.send(out.type, out.payload);
          connection.close('refused', new LinkError(step.code, step.message), true);
          // The peer's link (when it is one) records the refusal, so status shows why.
          const link = peerId === undefined ? undefined : this.options.lookupLink(peerId);
          link?.noteRefusedInbound(step.code, step.message);
          return;
        }
        // HELLO checked: the link of that peer takes over.
        this.pending.delete(entry);
        entry.timer.cancel();
        this.counters.handedOver++;
        const link = this.options.lookupLink(acceptor.claimedPeerId as string) as Link;
        const remainingMs = this.options.handshakeTimeoutMs - (this.options.clock.nowMs() - entry.startedAtMs);
        link.adoptInbound(connection, acceptor, step, remainingMs);
      },
      close: (info: ConnectionClose) => {
        if (!this.pending.delete(entry)) return;
        entry.timer.cancel();
        if (info.reason === 'protocol-error') {
          this.counters.protocolErrors++;
          logger.warn({ code: info.error?.code, remote: formatAddress(wire.remote) },
            `link listener: ${info.error?.message ?? 'protocol error'}`);
        }
      },
    });
  }

  /** Stops accepting and drops handshakes in progress; links keep their connections. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const entry of [...this.pending]) {
      entry.timer.cancel();
      entry.connection.close('closed');
    }
    this.pending.clear();
    await this.listener?.close();
  }
}
