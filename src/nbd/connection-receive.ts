// Notes on the design
// -------------------
// The receive path of an NBD connection (connection.ts): where each socket read lands and what
// a completed read does. ReceivingConnection is the second layer of a connection, between
// Connection (connection.ts: the state, the socket events, ending, flow control) and
// HandshakeConnection (handshake.ts): methods only, over the state Connection declares (the
// receive buffers and the direct window are its fields). Connection's constructor hands
// readTarget() and onRead() to the socket it adopts; they are declared abstract there.
//
// Receive path: sockets are read into buffers the connection owns, never into a buffer per
// read. net.Socket takes that (its `onread` option: a function that names the memory for the
// next read, and a callback per read) only in its constructor, so listeners accept with
// pauseOnConnect and the connection moves the accepted stream handle into a socket of its own
// (adoptWithUserBuffers; the accepted socket is destroyed without it, never having read).
// ReceivingConnection.nextReadBuffer names the memory for each read:
//   - normally the free end of a 256 KiB receive buffer (16 KiB in the handshake). Each read is
//     pushed into the decoder as a view of it; consecutive reads are consecutive memory, which
//     ByteQueue merges, so a request split over reads is still one piece and its payload goes
//     to volume.write as a view of the receive buffer (the decoder waits without copying; see
//     protocol.ts). When everything queued is consumed the buffer is reused from its start;
//     when less than a quarter (or less than the missing part of a waiting payload) is free, the
//     queued bytes (normally part of one request) move to the start of a spare buffer that holds
//     none of them (ByteQueue.moveTo) and the two swap; when flow control holds more than that,
//     reads go on into a fresh buffer and the old one is dropped once consumed;
//   - a payload of 32 KiB or more still missing that cannot continue in the receive buffer
//     (larger than it, or already being assembled) is read straight into the decoder's assembly
//     buffer (payloadWindow): the kernel copies it into place, volume.write copies it once more,
//     as nbdkit does. After a WRITE of 128 KiB or more the next read takes the next header
//     alone, so a large payload behind it does not start in the receive buffer.
//   Invariant: memory named for a read holds no queued byte and nothing else writes it before
//   that read completes (net.Socket asks for the next target only after each read callback).
//   Closing connections read into a shared discard buffer. BLOCKMIRROR_NBD_RECEIVE=stream (read
//   when a server is constructed) selects the plain 'data'-event path instead (a fresh buffer
//   per read); it is also the fallback when a socket's handle cannot take user buffers.
//
// Errors: nothing is thrown out of readTarget() or onRead() into net.Socket: a failure ends this
// connection (protocolFailure), and readTarget() then names the discard buffer.

import type * as net from 'node:net';

import { Connection } from './connection';
import * as P from './protocol';
import { beginStoreReceive } from './receive';

/** Receive buffer of a connection in transmission (socket reads land here; see the design note). */
const RECEIVE_BYTES = 256 * 1024;
/** Receive buffer during the handshake (options are small; longer ones span buffers). */
const HANDSHAKE_RECEIVE_BYTES = 16 * 1024;
/** A read is never offered less room than this (receive size / 4); below it the buffer is compacted. */
const RECEIVE_MIN_READ_DIVISOR = 4;
/** The rest of a WRITE payload is read straight into its assembly buffer from this size up. */
const DIRECT_PAYLOAD_MIN_BYTES = 32 * 1024;
/** Where reads land once a connection no longer decodes (closing): bytes are dropped. */
let discardBuffer: Buffer | null = null;
function discardReadBuffer(): Buffer {
  discardBuffer ??= Buffer.allocUnsafe(64 * 1024);
  return discardBuffer;
}

/** The receive path of a connection (see the notes above). */
export abstract class ReceivingConnection extends Connection {
  /**
   * Where the next socket read lands (net.Socket calls readTarget() once at adoption and after
   * every read callback; the buffer it returns stays the read target until the next read completes).
   * Invariant: the returned memory holds no queued byte and nothing else writes it until then.
   */
  protected override readTarget(): Buffer {
    try {
      return this.nextReadBuffer();
    } catch (error) {
      // A bug here must not escape into net.Socket: end this connection only.
      this.directWindow = null;
      queueMicrotask(() => this.protocolFailure(error));
      return discardReadBuffer();
    }
  }

  private nextReadBuffer(): Buffer {
    this.directWindow = null;
    const decoder = this.decoder;
    const state = this.state;
    if (state !== 'handshake' && (state !== 'transmission' || decoder === null)) return discardReadBuffer();
    const queue = this.handshake.queue;
    const size = state === 'handshake' ? HANDSHAKE_RECEIVE_BYTES : RECEIVE_BYTES;
    // A WRITE payload short of `missing` bytes: is it better received in place (see the note)?
    const missing = decoder === null ? 0 : decoder.missingPayloadBytes;
    if (missing >= DIRECT_PAYLOAD_MIN_BYTES && this.config.storeReceive && this.directWrite === null && !this.shuttingDown &&
      this.entry !== null && beginStoreReceive(this, decoder as P.RequestDecoder, this.entry, this.limits as P.ExportLimits)) {
      const window = this.directWindowOf(decoder as P.RequestDecoder);
      if (window !== null) return window;
    }
    if (missing >= DIRECT_PAYLOAD_MIN_BYTES && ((decoder as P.RequestDecoder).payloadAssembling || missing > size - queue.length)) {
      const window = this.directWindowOf(decoder as P.RequestDecoder);
      if (window !== null) return window;
    }
    if (queue.length === 0) {
      // Nothing refers to the receive buffers: start over at the front.
      if (this.receive.length !== size) {
        this.receive = Buffer.allocUnsafe(size);
        this.receiveSpare = null;
      }
      this.receiveEnd = 0;
    } else if (this.receive.length - this.receiveEnd < Math.max(size / RECEIVE_MIN_READ_DIVISOR, missing)) {
      // Compacting must leave room for a read: a queue of nearly `size` bytes (a lane hands back
      // its whole full buffer) would leave none, and a zero-length read target is ENOBUFS.
      if (queue.length + Math.max(missing, size / RECEIVE_MIN_READ_DIVISOR) <= size) {
        // Compact: move the queued bytes (normally part of one request) to the front of the
        // spare, which holds none of them, and swap.
        let target = this.receiveSpare;
        if (target === null || target.length !== size) target = Buffer.allocUnsafe(size);
        queue.moveTo(target);
        this.receiveSpare = this.receive.length === size ? this.receive : null;
        this.receive = target;
        this.receiveEnd = queue.length;
      } else {
        // Many bytes wait (flow control holds them): leave them where they are, read on in a
        // fresh buffer; the old one goes once they are consumed.
        this.receive = Buffer.allocUnsafe(size);
        this.receiveEnd = 0;
      }
    }
    const start = this.receiveEnd;
    if (missing > 0 && !(decoder as P.RequestDecoder).payloadAssembling && !this.queueEndsAt(start)) {
      // The payload cannot continue in one piece here (it waits in another buffer).
      const window = missing >= DIRECT_PAYLOAD_MIN_BYTES ? this.directWindowOf(decoder as P.RequestDecoder) : null;
      if (window !== null) return window;
    }
    if (this.headerFirst && decoder !== null && !decoder.payloadPending && queue.length < P.NBD_REQUEST_HEADER_BYTES) {
      // After a large WRITE: take the next header alone, so that a large payload behind it is
      // received in place rather than copied out of this buffer.
      return this.receive.subarray(start, start + P.NBD_REQUEST_HEADER_BYTES - queue.length);
    }
    return start === 0 ? this.receive : this.receive.subarray(start);
  }

  /**
   * The volume revoked the payload landing in the store (receive.ts; a pair's primary changed
   * role): net.Socket already holds the store window as the next read's target (it asks right
   * after each read), so that target is swapped for the decoder's own buffer at the same place
   * of the payload. Where the socket cannot swap it, the connection is dropped instead (no read
   * lands after a destroy), and the write is never acknowledged.
   */
  retargetRevokedRead(): void {
    const pending = this.directWindow;
    const decoder = this.decoder;
    if (pending === null || decoder === null) return;
    const replacement = decoder.payloadWindow();
    if (replacement !== null && swapUserBuffer(this.socket, replacement)) {
      this.directWindow = replacement;
      return;
    }
    this.directWindow = null;
    this.end({ reason: 'error', error: new Error('a revoked payload could not be moved off the store') }, true);
  }

  /** The rest of the pending payload in the decoder's assembly buffer, as the next read target. */
  private directWindowOf(decoder: P.RequestDecoder): Buffer | null {
    const window = decoder.payloadWindow();
    this.directWindow = window;
    return window;
  }

  /** True when the queued bytes are one piece of memory ending at receive[end] (or none are queued). */
  private queueEndsAt(end: number): boolean {
    const queue = this.handshake.queue;
    if (queue.length === 0) return true;
    if (queue.contiguousLength() !== queue.length) return false;
    const head = queue.head();
    const receive = this.receive;
    return head.buffer === receive.buffer && head.byteOffset + queue.headPosition() + queue.length === receive.byteOffset + end;
  }

  /** A read completed into the buffer nextReadBuffer() returned last. */
  protected override onRead(byteLength: number, buffer: Buffer): void {
    try {
      if (buffer === this.directWindow) {
        this.directWindow = null;
        if (this.state === 'transmission' && this.decoder !== null) {
          this.decoder.payloadReceived(byteLength);
          this.pump();
        }
        return;
      }
      if (buffer === discardBuffer) return;
      this.receiveEnd += byteLength;
      this.onData(byteLength === buffer.length ? buffer : buffer.subarray(0, byteLength));
    } catch (error) {
      this.protocolFailure(error);
    }
  }
}

/**
 * Makes `buffer` the target of the socket's next read, as if readTarget() had returned it: the
 * handle's user buffer and net.Socket's own reference to it (the one its read callback is given).
 * False when this Node keeps them elsewhere.
 */
function swapUserBuffer(socket: net.Socket, buffer: Buffer): boolean {
  const handle = (socket as unknown as { _handle?: { useUserBuffer?: (target: Buffer) => void } | null })._handle;
  const key = Object.getOwnPropertySymbols(socket).find((symbol) => symbol.description === 'kBuffer');
  const fields = socket as unknown as Record<symbol, unknown>;
  if (handle === null || handle === undefined || typeof handle.useUserBuffer !== 'function' || key === undefined || !Buffer.isBuffer(fields[key])) return false;
  handle.useUserBuffer(buffer);
  fields[key] = buffer;
  return true;
}

