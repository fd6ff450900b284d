// Notes on the design
// -------------------
// One NBD connection: its state, its socket, the receive path, ending, and flow control. The
// connection is one object built in four layers, one class each, as a chain:
//   Connection (this file)                       all the state, the socket events, dispatch;
//   ReceivingConnection (connection-receive.ts)  the receive path: where reads land, onRead;
//   HandshakeConnection (handshake.ts)           option haggling up to enterTransmission;
//   NbdConnection (transmission.ts)              request handling; the class the server creates.
// The layers above this one add methods only (no fields, no constructor), so an instance is laid
// out and constructed exactly as the single class they were split from, every instance has the
// same shape, and a call across layers is an ordinary method call on `this`. Dispatch: a read
// goes to runHandshake() (handshake) or into the RequestDecoder and pump() (transmission), and
// the socket's reads to readTarget() and onRead() (connection-receive.ts), declared abstract here.
//
// Connection lifecycle (Connection.state, one setter, logged old -> new):
//   handshake -> transmission -> closing -> closed, or handshake -> closed.
//   The handshake has a deadline (handshakeTimeoutMs) and a bound on the number of options.
//
// Receive path: sockets are read into buffers the connection owns, never into a buffer per
// read (connection-receive.ts says how, and where each read lands). Their fields are declared
// here with the rest of the state; BLOCKMIRROR_NBD_RECEIVE=stream (read when a server is
// constructed) selects the plain 'data'-event path instead.
//
// Flow control: a connection stops decoding (and pauses its socket, so TCP pushes back on the
// client) while maxInFlightRequests asynchronous requests are pending or while more than
// OUTPUT_HIGH_WATER_BYTES of replies wait in the socket (transmission.ts pump); it resumes on
// completion / 'drain'. With user buffers socket.pause() stops reading at the handle
// (readStop), as with 'data'.
//
// Hand-off to a worker (docs/nbd-workers.md): at the end of the handshake the server may move
// the connection to a worker thread (detach). Reading stops at once (readStop, so every byte read
// past the handshake is in the queue), the handshake's replies are written out, and the server
// dups the fd and posts it with the negotiated state and those bytes; this side then destroys its
// handle without a disconnect notice (the worker reports the end). A worker builds the same
// connection with that state (the `resumed` constructor argument): no greeting, no handshake,
// straight into transmission with the bytes the main thread had read.
//
// Errors: nothing is thrown out of a socket callback. A protocol violation (an ERR_NBD_* error)
// is recorded with the server ('protocol-error') and ends this connection; any other exception
// is a bug that also ends this connection only.

import * as net from 'node:net';

import type { BlockmirrorError } from '../errors';
import { isNbdError, nbdError } from './errors';
import * as P from './protocol';
import { type DirectWrite, abandonStoreReceive } from './receive';
import { EMPTY_ARENA, ReplyWriter } from './replies';
import type { ConnectionHost, ExportEntry, HandOffCandidate, NbdLogger, NegotiatedState, ResolvedConfig, SelectedContext } from './types';

export type ConnectionState = 'handshake' | 'transmission' | 'closing' | 'closed';

const CONNECTION_TRANSITIONS: Record<ConnectionState, readonly ConnectionState[]> = {
  handshake: ['transmission', 'closing', 'closed'],
  transmission: ['closing', 'closed'],
  closing: ['closed'],
  closed: [],
};

/** A connection resumed in a worker: its export there and what the main thread's handshake negotiated. */
export interface ResumedTransmission {
  entry: ExportEntry;
  state: NegotiatedState;
}

/** The base layer of a connection: all its state, its socket and the receive path (see the design note). */
export abstract class Connection implements HandOffCandidate {
  state: ConnectionState = 'handshake';
  protected readonly handshake: P.HandshakeDecoder;
  protected decoder: P.RequestDecoder | null = null;
  protected readonly out: ReplyWriter;
  protected entry: ExportEntry | null = null;
  protected limits: P.ExportLimits | null = null;
  protected structured = false;
  protected fixedNewstyle = false;
  protected clientNoZeroes = false;
  protected optionCount = 0;
  protected contexts: SelectedContext[] = [];
  protected contextsExport: string | null = null;
  protected inFlight = 0;
  private socketPaused = false;
  protected writeScheduled = false;
  /** The last ack point promise a write waits on (a pair's burst shares one), and the requests whose replies wait for it (transmission.ts completeWrite). */
  protected ackWait: Promise<void> | null = null;
  protected ackHeld: P.NbdRequest[] = [];
  protected shuttingDown = false;
  protected discReceived = false;
  protected handshakeTimer: NodeJS.Timeout | null = null;
  private closeTimer: NodeJS.Timeout | null = null;
  private endReason: { reason: string; error?: Error } | null = null;
  protected readonly log: NbdLogger;
  readonly socket: net.Socket;
  // Receive path (see the design note): reads land in `receive` from `receiveEnd` on, or in the
  // payload window `directWindow` of the decoder's assembly buffer.
  protected receive: Buffer = EMPTY_ARENA;
  protected receiveEnd = 0;
  /** A receive buffer of the current size that holds no queued bytes (compaction target). */
  protected receiveSpare: Buffer | null = null;
  protected directWindow: Buffer | null = null;
  /** The last request was a large WRITE: read the next header alone, then its payload in place. */
  protected headerFirst = false;
  /**
   * The WRITE whose payload is being received into the store (receive.ts): begun on the volume,
   * committed when the request is handled, or when the socket closes first.
   */
  directWrite: DirectWrite | null = null;
  /** detach() stopped reading and waits for the handshake replies to leave (see the design note). */
  private handingOff = false;
  /** The socket went to a worker: this side only closes its handle. */
  private handedOff = false;

  /**
   * `accepted` comes from a listener with pauseOnConnect (see adoptWithUserBuffers), or in a
   * worker from the fd the main thread dup'd, created paused; `resumed` (a worker) starts in
   * transmission with the main thread's negotiated state.
   */
  constructor(
    readonly id: number,
    accepted: net.Socket,
    readonly transport: 'tcp' | 'unix',
    protected readonly server: ConnectionHost,
    protected readonly config: ResolvedConfig,
    resumed?: ResumedTransmission,
  ) {
    this.log = config.logger;
    this.handshake = new P.HandshakeDecoder({ maxOptionBytes: config.maxOptionBytes });
    if (resumed !== undefined) this.resume(resumed);
    const adopted = config.userBufferReads
      ? adoptWithUserBuffers(accepted, {
          buffer: () => this.readTarget(),
          // Flow control pauses the socket itself: always true (false would stop reading).
          callback: (byteLength: number, buffer: Uint8Array) => {
            this.onRead(byteLength, buffer as Buffer);
            return true;
          },
        })
      : null;
    const socket = adopted ?? accepted;
    this.socket = socket;
    this.out = new ReplyWriter(socket);
    socket.setNoDelay(true);
    if (adopted === null) {
      // Fallback: 'data' events (a fresh buffer per read).
      socket.on('data', (chunk: Buffer) => this.onData(chunk));
      socket.resume();
    }
    socket.on('drain', () => this.onDrain());
    socket.on('end', () => this.onEnd());
    socket.on('error', (error: Error) => this.onSocketError(error));
    socket.on('close', () => this.onClose());
    if (resumed !== undefined) {
      // A request the client pipelined behind the handshake is already queued.
      if (this.handshake.queue.length > 0) queueMicrotask(() => this.pump());
      return;
    }
    this.handshakeTimer = setTimeout(() => this.onHandshakeTimeout(), config.handshakeTimeoutMs);
    this.handshakeTimer.unref();
    socket.write(P.encodeGreeting(P.NBD_FLAG_FIXED_NEWSTYLE | P.NBD_FLAG_NO_ZEROES));
  }

  get exportName(): string | undefined {
    return this.entry?.name;
  }

  get exportEntry(): ExportEntry | null {
    return this.entry;
  }

  /** A worker's connection: the state the main thread's handshake negotiated, then transmission. */
  private resume(resumed: ResumedTransmission): void {
    const { entry, state } = resumed;
    this.entry = entry;
    this.limits = { ...state.limits };
    this.structured = state.structured;
    this.fixedNewstyle = true;
    this.contexts = state.contexts.map((context) => (context.kind === 'dirty' ? { ...context, bitmap: null } : { ...context }));
    this.contextsExport = entry.name;
    const leftover = state.leftover;
    if (leftover.byteLength > 0) this.handshake.queue.push(Buffer.from(leftover.buffer, leftover.byteOffset, leftover.byteLength));
    this.decoder = new P.RequestDecoder({ maxPayloadBytes: this.config.maxPayloadBytes, maxDiscardBytes: this.config.maxDiscardBytes }, this.handshake.queue);
    this.setState('transmission');
  }

  /** HandOffCandidate.detach (see the design note): only right after enterTransmission. */
  detach(move: (state: NegotiatedState, socket: net.Socket) => boolean): void {
    if (this.state !== 'transmission' || this.entry === null || this.limits === null || this.handingOff) return;
    this.pauseSocket();
    this.handingOff = true;
    const proceed = (): void => {
      // Closed meanwhile: the ordinary close path ran (or runs) and reported it.
      if (this.state !== 'transmission' || this.socket.destroyed) return;
      const queue = this.handshake.queue;
      const leftover = Buffer.alloc(queue.length);
      if (queue.length > 0) queue.peekInto(leftover, 0, queue.length);
      const state: NegotiatedState = {
        exportName: (this.entry as ExportEntry).name,
        limits: { ...(this.limits as P.ExportLimits) },
        structured: this.structured,
        contexts: this.contexts.map((context) => (context.kind === 'dirty' ? { ...context, bitmap: null } : { ...context })),
        leftover,
      };
      let moved = false;
      try {
        moved = move(state, this.socket);
      } catch (error) {
        this.log.warn({ connectionId: this.id, err: String(error) }, 'nbd hand-off to a worker failed; served here');
      }
      if (!moved) {
        this.handingOff = false;
        this.resumeSocket();
        if (queue.length > 0) this.pump();
        return;
      }
      this.handedOff = true;
      this.setState('closed');
      // Closes this thread's fd only: the worker's duplicate keeps the connection open.
      this.socket.destroy();
    };
    if (this.socket.writableLength === 0) proceed();
    else this.socket.once('drain', proceed);
  }

  // --- state ---------------------------------------------------------------------------------

  protected setState(next: ConnectionState): void {
    const previous = this.state;
    if (previous === next) return;
    if (!CONNECTION_TRANSITIONS[previous].includes(next)) {
      throw new Error(`NBD connection ${this.id}: illegal transition ${previous} -> ${next}`);
    }
    this.state = next;
    this.log.debug({ connectionId: this.id, from: previous, to: next }, `nbd connection ${previous} -> ${next}`);
  }

  // --- socket events -------------------------------------------------------------------------

  protected onData(chunk: Buffer): void {
    if (this.state === 'handshake') {
      this.handshake.push(chunk);
      this.runHandshake();
      return;
    }
    if (this.state === 'transmission' && this.decoder !== null) {
      this.decoder.push(chunk);
      this.pump();
    }
    // closing/closed: late bytes are ignored.
  }

  private onDrain(): void {
    if (this.handingOff) return;
    if (this.state === 'handshake') {
      this.resumeSocket();
      this.runHandshake();
    } else if (this.state === 'transmission') this.pump();
    else if (this.state === 'closing') this.maybeFinishClosing();
  }

  private onEnd(): void {
    // The client hung up. Between messages that is a normal end; inside one it is truncation.
    const midMessage =
      this.state === 'handshake' ? !this.handshake.idle : this.state === 'transmission' && this.decoder !== null && !this.decoder.idle && !this.discReceived;
    if (midMessage) {
      const error = nbdError('ERR_NBD_TRUNCATED', 'client closed the connection in the middle of a message');
      this.server.recordProtocolError(this.id, error);
      this.log.warn({ connectionId: this.id, code: error.code }, 'nbd client vanished mid-message');
      this.end({ reason: 'truncated', error }, true);
    } else {
      this.end({ reason: 'client' }, this.state === 'handshake');
    }
  }

  private onSocketError(error: Error): void {
    this.log.debug({ connectionId: this.id, err: error.message }, 'nbd socket error');
    this.end({ reason: 'error', error }, true);
  }

  private onClose(): void {
    if (this.handshakeTimer !== null) clearTimeout(this.handshakeTimer);
    if (this.closeTimer !== null) clearTimeout(this.closeTimer);
    this.handshakeTimer = null;
    this.closeTimer = null;
    if (this.handedOff) return;
    if (this.state !== 'closed') this.setState('closed');
    // No read lands any more: a payload received only in part is committed unacknowledged.
    if (this.directWrite !== null && this.entry !== null) abandonStoreReceive(this, this.entry, this.log);
    this.closeBitmaps(this.contexts);
    const ended = this.endReason ?? { reason: 'client' };
    this.server.connectionClosed(this, ended);
  }

  private onHandshakeTimeout(): void {
    this.handshakeTimer = null;
    if (this.state !== 'handshake') return;
    const error = nbdError('ERR_NBD_HANDSHAKE_TIMEOUT', `handshake not finished within ${this.config.handshakeTimeoutMs} ms`);
    this.server.recordProtocolError(this.id, error);
    this.end({ reason: 'timeout', error }, true);
  }

  private closeBitmaps(contexts: readonly SelectedContext[]): void {
    for (const context of contexts) {
      if (context.kind === 'dirty' && context.bitmap !== null) {
        try {
          context.bitmap.close();
        } catch {
          // Already closed with its volume.
        }
        context.bitmap = null;
      }
    }
  }

  // --- ending --------------------------------------------------------------------------------

  /**
   * Ends the connection. destroy: drop the socket now (hard disconnect); otherwise answer what is
   * in flight, write out the replies and half-close, destroying after closeTimeoutMs.
   */
  end(why: { reason: string; error?: Error }, destroy: boolean): void {
    if (this.endReason === null) this.endReason = why;
    if (this.state === 'closed') return;
    if (this.handshakeTimer !== null) {
      clearTimeout(this.handshakeTimer);
      this.handshakeTimer = null;
    }
    if (destroy) {
      this.out.flush();
      if (this.state !== 'closing') this.setState('closing');
      this.socket.destroy();
      return;
    }
    if (this.state !== 'closing') this.setState('closing');
    this.pauseSocket();
    this.maybeFinishClosing();
  }

  protected maybeFinishClosing(): void {
    if (this.state !== 'closing' || this.inFlight > 0) return;
    this.out.flush();
    if (this.socket.destroyed) return;
    if (this.closeTimer === null) {
      // Half-close once the replies are out; destroy if the client never hangs up. Reading
      // resumes (late bytes are ignored in 'closing') so the client's EOF is seen at once.
      this.socket.end();
      this.resumeSocket();
      this.closeTimer = setTimeout(() => this.socket.destroy(), this.config.closeTimeoutMs);
      this.closeTimer.unref();
    }
  }

  /** Server shutdown: answer buffered requests with ESHUTDOWN, finish in-flight ones, close. */
  shutdown(graceful: boolean): void {
    this.shuttingDown = true;
    if (!graceful || this.state === 'handshake') {
      this.end({ reason: 'server' }, true);
      return;
    }
    if (this.state === 'transmission') this.pump();
    this.end({ reason: 'server' }, false);
  }

  protected protocolFailure(error: unknown): void {
    if (!isNbdCoded(error)) {
      // Not a protocol violation but a bug or an unexpected failure: end this connection only.
      this.log.error({ connectionId: this.id, err: String((error as Error)?.stack ?? error) }, 'nbd connection failed');
      this.end({ reason: 'error', error: error instanceof Error ? error : new Error(String(error)) }, true);
      return;
    }
    const coded = error;
    this.server.recordProtocolError(this.id, coded);
    this.log.warn({ connectionId: this.id, code: coded.code, err: coded.message }, 'nbd protocol error');
    this.end({ reason: 'protocol-error', error: coded }, true);
  }

  // --- flow control --------------------------------------------------------------------------

  protected pauseSocket(): void {
    if (!this.socketPaused) {
      this.socketPaused = true;
      this.socket.pause();
    }
  }

  protected resumeSocket(): void {
    if (this.socketPaused) {
      this.socketPaused = false;
      this.socket.resume();
    }
  }

  // --- layers ------------------------------------------------------------------------------

  /** Runs the options received so far (handshake.ts). */
  protected abstract runHandshake(): void;

  /** Handles every complete request buffered, within the flow-control limits (transmission.ts). */
  protected abstract pump(): void;

  /** Where the next socket read lands (connection-receive.ts). */
  protected abstract readTarget(): Buffer;

  /** A read completed into the buffer readTarget() returned last (connection-receive.ts). */
  protected abstract onRead(byteLength: number, buffer: Buffer): void;
}

/**
 * Wraps the stream handle of `accepted` (a socket from a listener with pauseOnConnect, not
 * reading yet) in a new net.Socket whose reads land in buffers the caller supplies: the `onread`
 * option, which Node only takes in the net.Socket constructor, never for sockets a net.Server
 * creates. `accepted` is destroyed without its handle (it never read a byte), which also gives
 * back its slot in net.Server's connection count. Null, with `accepted` untouched, when the
 * handle does not support user buffers (a Node without them): the caller then reads 'data'.
 */
function adoptWithUserBuffers(accepted: net.Socket, onread: net.OnReadOpts): net.Socket | null {
  const internals = accepted as unknown as { _handle?: { useUserBuffer?: unknown; readStart?: unknown; readStop?: unknown } | null };
  const handle = internals._handle;
  if (
    handle === null ||
    handle === undefined ||
    typeof handle.useUserBuffer !== 'function' ||
    typeof handle.readStart !== 'function' ||
    typeof handle.readStop !== 'function'
  ) {
    return null;
  }
  internals._handle = null;
  accepted.destroy();
  return new net.Socket({ handle, onread, allowHalfOpen: false, readable: true, writable: true } as net.SocketConstructorOpts);
}

function isNbdCoded(error: unknown): error is BlockmirrorError {
  return isNbdError(error);
}
