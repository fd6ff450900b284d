// Notes on the design
// -------------------
// One connection between two controllers: a Wire with a frame encoder and decoder for its two
// directions, and a fault stage in each direction. It knows nothing about handshakes or
// messages; its owner (the listener during an inbound handshake, then the link) gets every
// decoded frame, in order, and one close.
//
// Invariants:
//   - Frames are written in the order send() was called, and received frames are handed out in
//     the order they arrived (fault stages keep order).
//   - A decoding error closes this connection only, with the LinkError as the reason; the
//     process and every other connection go on. Nothing is handed out after close.
//   - A frame's payload may be a view of a buffer the decoder reuses: it is valid until the
//     handler returns (the link copies what outlives that: requests, held frames).
//   - The frame limit can be lowered while the peer is not yet authenticated, so an
//     unauthenticated connection cannot make this controller buffer a large frame.
//   - The wire may read into the decoder's payload (readTarget): only into the missing part of
//     a payload whose header passed every check, never after close.

import type { Clock } from '../runtime/clock';
import type { Random } from '../runtime/random';
import { LinkError } from './errors';
import { FaultStage, type DirectionFaults, noFaults } from './faults';
import { FRAME_HEADER_BYTES, type Frame, FrameDecoder, FrameEncoder } from './frame';
import { isKnownMessageType } from './message-types';
import type { Wire } from './wire';

/** Frames larger than this are refused before the handshake finishes. */
export const HANDSHAKE_MAX_FRAME_BYTES = 64 * 1024;

/**
 * Frames with payloads of at least this many bytes are read straight into place (header alone,
 * then payload: two reads, no copy); smaller ones are read in bulk and copied or viewed, where
 * one more read syscall per frame would cost more than the copy saves.
 */
export const DIRECT_READ_MIN_BYTES = 32 * 1024;

/** Why a connection closed. */
export interface ConnectionClose {
  /** A short reason: 'closed-by-peer', 'protocol-error', or the reason given to close(). */
  reason: string;
  /** The LinkError that closed it, when it was a protocol error. */
  error?: LinkError;
  /** The wire's own reason (an errno code, 'closed by peer'). */
  detail?: string;
}

/** What a connection tells its owner. */
export interface ConnectionHandlers {
  frame(frame: Frame): void;
  close(info: ConnectionClose): void;
}

interface OutgoingItem {
  chunks: Buffer[];
  byteLength: number;
  /** The sender's: runs once the wire no longer reads the chunks (wire.ts), or on a discard. */
  onWritten: (() => void) | undefined;
}

/** What Connection.send() may be told about a payload. */
export interface SendFrameOptions {
  onWritten?: (() => void) | undefined;
  payloadCrc?: number | undefined;
}

interface IncomingItem {
  frame: Frame;
  byteLength: number;
}

let nextConnectionNumber = 1;

/** A framed connection. */
export class Connection {
  readonly number = nextConnectionNumber++;
  private readonly encoder: FrameEncoder;
  private readonly decoder: FrameDecoder;
  private readonly outStage: FaultStage<OutgoingItem>;
  private readonly inStage: FaultStage<IncomingItem>;
  private handlers: ConnectionHandlers | undefined;
  private closedInfo: ConnectionClose | undefined;
  bytesIn = 0;
  bytesOut = 0;
  framesIn = 0;
  framesOut = 0;

  constructor(
    readonly wire: Wire,
    readonly role: 'dialer' | 'acceptor',
    options: {
      maxFrameBytes: number;
      clock: Clock;
      random: Random;
      faults?: () => { in: DirectionFaults; out: DirectionFaults };
    },
  ) {
    this.encoder = new FrameEncoder({ maxFrameBytes: options.maxFrameBytes });
    this.decoder = new FrameDecoder({ maxFrameBytes: options.maxFrameBytes, isKnownMessageType, reuseAssembly: true });
    this.decoder.setFrameLimit(Math.min(HANDSHAKE_MAX_FRAME_BYTES, options.maxFrameBytes));
    let faults = options.faults ?? (() => ({ in: noFaults(), out: noFaults() }));
    this.outStage = new FaultStage<OutgoingItem>(() => faults().out, options.clock, options.random, (item) => {
      this.bytesOut += item.byteLength;
      this.wire.write(item.chunks, item.onWritten);
    }, (item) => item.onWritten?.());
    this.inStage = new FaultStage<IncomingItem>(() => faults().in, options.clock, options.random, (item) => {
      if (this.closedInfo === undefined) this.handlers?.frame(item.frame);
    });
    this.setFaults = (source) => {
      faults = source;
    };
  }

  /** Points the fault stages at another fault table (a link adopting the connection). */
  readonly setFaults: (source: () => { in: DirectionFaults; out: DirectionFaults }) => void;

  /** True once either direction discarded a frame because of a partition. */
  get blackHoled(): boolean {
    return this.outStage.blackHoled || this.inStage.blackHoled;
  }

  get closed(): boolean {
    return this.closedInfo !== undefined;
  }

  /** Bytes written to the wire and not yet sent by it. */
  get wireBufferedBytes(): number {
    return this.wire.bufferedBytes;
  }

  /** Starts reading; `handlers` get every frame and the close. */
  start(handlers: ConnectionHandlers): void {
    this.handlers = handlers;
    this.wire.attach({
      data: (chunk) => this.onData(chunk),
      readTarget: () => (this.closedInfo === undefined ? this.decoder.readTarget(DIRECT_READ_MIN_BYTES) : undefined),
      drain: () => undefined,
      close: (reason) => this.finish({ reason: 'closed-by-peer', detail: reason }),
    });
  }

  /** Hands the connection to a new owner (listener -> link). */
  setHandlers(handlers: ConnectionHandlers): void {
    this.handlers = handlers;
  }

  /** Lifts the pre-handshake frame limit to the configured one. */
  authenticated(): void {
    this.decoder.setFrameLimit(this.decoder.maxFrameBytes);
  }

  private onData(chunk: Buffer): void {
    if (this.closedInfo !== undefined) return;
    this.bytesIn += chunk.length;
    try {
      this.decoder.push(chunk, (frame) => {
        this.framesIn++;
        // The decoder reuses its assembly buffer: a frame the fault stage holds keeps a copy.
        if (this.inStage.wouldHold()) frame.payload = Buffer.from(frame.payload);
        this.inStage.push({ frame, byteLength: FRAME_HEADER_BYTES + frame.payload.length });
      });
    } catch (error) {
      if (error instanceof LinkError) {
        this.finish({ reason: 'protocol-error', error });
        return;
      }
      throw error;
    }
  }

  /**
   * Sends one frame (through the outgoing fault stage); returns its sequence. `options.onWritten`
   * runs once, when nothing reads the payload any more (written, or discarded by a partition or
   * a close); `options.payloadCrc` is the payload's CRC32C when the caller knows it (frame.ts).
   */
  send(type: number, payload: Buffer, flags = 0, correlation = 0, options?: SendFrameOptions): number {
    const { chunks, sequence } = this.encoder.encode(type, payload, flags, correlation, options?.payloadCrc);
    const onWritten = options?.onWritten;
    if (this.closedInfo !== undefined) {
      onWritten?.();
      return sequence;
    }
    this.framesOut++;
    this.outStage.push({ chunks, byteLength: FRAME_HEADER_BYTES + payload.length, onWritten });
    return sequence;
  }

  /** The sequence the next frame sent will carry. */
  get nextSequence(): number {
    return this.encoder.sequence;
  }

  /**
   * Closes (idempotent); the owner's close handler runs once, with this reason. `graceful`
   * lets the frames already handed to the wire reach the peer (a REFUSE, a GOODBYE).
   */
  close(reason: string, error?: LinkError, graceful = false): void {
    const info: ConnectionClose = { reason };
    if (error !== undefined) info.error = error;
    this.finish(info, graceful);
  }

  private finish(info: ConnectionClose, graceful = false): void {
    if (this.closedInfo !== undefined) return;
    this.closedInfo = info;
    // A graceful close sends what a delay or bandwidth fault still holds (the last REFUSE or
    // GOODBYE must reach the peer); a partition still discards it.
    if (graceful) this.outStage.releaseAll();
    this.outStage.stop();
    this.inStage.stop();
    if (graceful) this.wire.end(info.reason);
    else this.wire.destroy(info.reason);
    const handlers = this.handlers;
    this.handlers = undefined;
    handlers?.close(info);
  }
}
