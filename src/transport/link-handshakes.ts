// Notes on the design
// -------------------
// How a link (link.ts) gets a connection and loses it: dialing with a connect timeout and
// reconnecting with backoff (a dialer), taking inbound connections the listener hands over
// (link-listener.ts), running the dialer's or the acceptor's handshake (handshake.ts) under a
// deadline, and on its end either going up (established: the connection becomes the link's,
// its delivery bookkeeping starts afresh, heartbeats start) or going down with the reason the
// connection gave. An inbound handshake that completes while another connection is current
// replaces it. The second layer of the stack LinkCore (link-core.ts) <- LinkHandshakes (this
// file) <- LinkDelivery (link-delivery.ts) <- Link (link.ts): methods only, over the state
// LinkCore declares. What an up connection's frames do is the layer above's (onFrame,
// onConnectionClose and armHeartbeat, declared abstract here).
//
// Errors: a handshake violation (a LinkError) closes that connection as 'protocol-error'; any
// other exception is a bug and is thrown. Refusals are logged and close the connection
// 'refused'; the link reports why in its state.

import type { LinkErrorCode } from '../errors';
import type { TimerHandle } from '../runtime/clock';
import { type ConnectionClose, Connection } from './connection';
import { LinkError } from './errors';
import type { Frame } from './frame';
import { type AcceptorHandshake, DialerHandshake, type HandshakeResult, type HandshakeStep } from './handshake';
import { type NetworkAddress, formatAddress } from './wire';
import type { LinkReason } from './link-state';
import { backoffDelayMs } from './link-options';
import { type ActiveHandshake, LinkCore } from './link-core';

/** Dialing, inbound connections and the handshake (see the notes above). */
export abstract class LinkHandshakes extends LinkCore {
  // ---- dialing -------------------------------------------------------------------------------

  protected dialNow(): void {
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

  protected failed(info: ConnectionClose): void {
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

  // ---- layers --------------------------------------------------------------------------------

  /** Handles a frame of the up connection (link-delivery.ts). */
  protected abstract onFrame(connection: Connection, frame: Frame): void;

  /** The up connection ended (link-delivery.ts). */
  protected abstract onConnectionClose(connection: Connection, info: ConnectionClose): void;

  /** Arms the next heartbeat of the up connection (link-delivery.ts). */
  protected abstract armHeartbeat(): void;
}
