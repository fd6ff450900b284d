// Notes on the design
// -------------------
// What a link (link.ts) does while it is up: heartbeats (PING every heartbeatIntervalMs, the
// peer dead after deadPeerTimeoutMs of silence, the RTT from PONG), the control frames, and
// delivery as link.ts's notes describe it: every message rides the connection's frame
// sequence, the receiver acknowledges what it delivered (ACK, cumulative, coalesced), the sender
// forgets acknowledged messages and bounds the rest by maxQueuedBytes ('full', 'drain'), and
// when the connection ends whatever it did not acknowledge is reported unconfirmed and its
// pending requests are rejected. Requests and responses ride the same path, flagged. The third
// layer of the stack LinkCore (link-core.ts) <- LinkHandshakes (link-handshakes.ts) <-
// LinkDelivery (this file) <- Link (link.ts): methods only, over the state LinkCore declares.
//
// Hot path: send() / sendFrame() and onFrame() / onMessage() run once per message.
//
// Errors: send() and request() throw ERR_LINK_DOWN, ERR_LINK_FULL, ERR_LINK_FRAME_TOO_LARGE or
// ERR_LINK_CLOSED (LinkError), TypeError / RangeError for caller mistakes; a protocol violation
// on the connection (a LinkError while handling a frame) closes it as 'protocol-error'.

import { isBlockmirrorError } from '../errors';
import { BinaryReader, BinaryWriter } from './codec';
import type { Connection, ConnectionClose } from './connection';
import { LinkError } from './errors';
import { FRAME_HEADER_BYTES, type Frame, FrameFlag, FrameType } from './frame';
import { parseRefusal } from './handshake';
import { isKnownMessageType } from './message-types';
import type { LinkReason } from './link-state';
import type { LinkMessage, UnconfirmedMessage, UnconfirmedReport, SendOptions, RequestHandler } from './link-options';
import type { SentMessage } from './link-core';
import { LinkHandshakes } from './link-handshakes';

/** Acknowledge at once after this many unacknowledged bytes... */
const ACK_EVERY_BYTES = 1024 * 1024;
/**
 * ...else within this long (at most half the heartbeat interval): acknowledgements of small
 * messages are coalesced, so a request/response exchange costs two frames, not four. Long
 * enough not to keep a short timer armed under request traffic (a timer due within a few ms
 * costs every wake-up ~5 us on this VM); streams are acknowledged by byte count anyway.
 */
const ACK_DELAY_MS = 20;

/** Heartbeats, frames, acknowledgements, messages and requests of the up connection (see the notes above). */
export abstract class LinkDelivery extends LinkHandshakes {
  // ---- up ------------------------------------------------------------------------------------

  protected override armHeartbeat(): void {
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

  protected override onFrame(connection: Connection, frame: Frame): void {
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

  protected override onConnectionClose(connection: Connection, info: ConnectionClose): void {
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
}
