// Notes on the design
// -------------------
// The simulated socket: SimWire, one end of a simulated connection, implementing the Wire
// interface of real TCP (src/transport/wire.ts). Made by NetworkCore only, two at a time, each
// with its outgoing Pipe (network-pipe.ts); a SimWire is then owned by whoever got it from dial
// or listen. It owns its handlers, its drain, reset and end-grace timers, and its local port
// (released on close when it took one).
//   - bufferedBytes is what the sender wrote that the receiver's data handler has not yet been
//     given (in flight, held by a partition, or held by a paused or unattached receiver).
//     write() returns false at or above the high-water mark; drain() follows, in a step of its
//     own, once the count falls below it.
//   - destroy(reason): the local handlers get close(reason) at once and every byte not yet
//     delivered in either direction is discarded; the peer gets close("closed by peer") one
//     latency later (held by a partition like any byte). end(reason) also closes locally at once,
//     but the bytes already written are still delivered and the peer's close follows them; if
//     they are not all delivered within endGraceMs (a peer that never reads), the rest is
//     discarded and the peer gets close("ECONNRESET") instead, as tcp.ts destroys the socket
//     after its grace period.
//
// Invariants: handlers get close() once; after close nothing is delivered and write() is a
// no-op that returns false; a wire is paired (has its pipe) before any write.

import type { TimerHandle } from '../runtime/clock';
import type { NetworkAddress, Wire, WireHandlers } from '../transport/wire';
import { formatAddress } from '../transport/wire';
import { CLOSED_BY_PEER, checkFunction, invariant } from './network-settings';
import { Pipe } from './network-pipe';
import type { NetworkCore } from './network-core';

export type CloseCause = 'local' | 'end' | 'peer' | 'reset' | 'crash';

/** One end of a simulated connection. Made by SimNetwork only. */
export class SimWire implements Wire {
  readonly description: string;
  readonly local: NetworkAddress;
  readonly remote: NetworkAddress;
  /** Both ends of a connection share it; it appears in the trace. */
  readonly connectionId: number;
  private peer: SimWire | undefined;
  private outgoingPipe: Pipe | undefined;
  private handlers: WireHandlers | undefined;
  private attached = false;
  private paused = false;
  private needDrain = false;
  private drainTimer: TimerHandle | undefined;
  private resetTimer: TimerHandle | undefined;
  private endGraceTimer: TimerHandle | undefined;
  private closedReason: string | undefined;
  private crashedByHost = false;

  constructor(
    private readonly core: NetworkCore,
    connectionId: number,
    local: NetworkAddress,
    remote: NetworkAddress,
    private readonly ownsLocalPort: boolean,
  ) {
    this.connectionId = connectionId;
    this.local = Object.freeze({ host: local.host, port: local.port });
    this.remote = Object.freeze({ host: remote.host, port: remote.port });
    this.description = `sim:${formatAddress(this.local)}->${formatAddress(this.remote)}`;
    core.openWires.add(this);
    core.counters.openWireCount += 1;
  }

  /** @internal Links the two ends of a new connection. */
  static pair(a: SimWire, b: SimWire): void {
    invariant(a.peer === undefined && b.peer === undefined, 'wire paired twice');
    a.peer = b;
    b.peer = a;
    a.outgoingPipe = new Pipe(a.core, a, b);
    b.outgoingPipe = new Pipe(b.core, b, a);
  }

  private get outgoing(): Pipe {
    invariant(this.outgoingPipe !== undefined, 'wire not paired');
    return this.outgoingPipe;
  }

  private get other(): SimWire {
    invariant(this.peer !== undefined, 'wire not paired');
    return this.peer;
  }

  get bufferedBytes(): number {
    return this.outgoing.queuedBytes;
  }

  /** True once the wire has closed (for any reason). */
  get closed(): boolean {
    return this.closedReason !== undefined;
  }

  /** Closed by a crash of its host (its peer was not told). */
  get crashed(): boolean {
    return this.crashedByHost;
  }

  /** Why it closed, or undefined while open. */
  get closeReason(): string | undefined {
    return this.closedReason;
  }

  /** Attached, open and not paused: deliveries can be made. */
  get readable(): boolean {
    return this.handlers !== undefined && !this.paused;
  }

  attach(handlers: WireHandlers): void {
    if (this.attached) throw new Error('wire: handlers attached twice');
    if (typeof handlers !== 'object' || handlers === null) throw new TypeError('handlers must be an object');
    checkFunction(handlers.data, 'handlers.data');
    checkFunction(handlers.drain, 'handlers.drain');
    checkFunction(handlers.close, 'handlers.close');
    this.attached = true;
    if (this.closedReason !== undefined) {
      handlers.close(this.closedReason);
      return;
    }
    this.handlers = handlers;
    this.other.outgoing.kick(false);
    this.maybeDrain();
  }

  write(chunks: readonly Buffer[], onWritten?: () => void): boolean {
    if (this.closedReason !== undefined) {
      onWritten?.();
      return true;
    }
    let byteLength = 0;
    for (const chunk of chunks) byteLength += chunk.length;
    if (byteLength > 0) {
      // A private copy: the caller may reuse its buffers as soon as write() returns.
      const segment = Buffer.concat(chunks as readonly Uint8Array[], byteLength);
      this.core.counters.writtenBytes += byteLength;
      this.outgoing.enqueueData(segment);
    }
    // The chunks were copied (or there were none): the caller may reuse them now.
    onWritten?.();
    const belowMark = this.outgoing.queuedBytes < this.core.highWaterMarkBytes;
    if (!belowMark) this.needDrain = true;
    return belowMark;
  }

  pause(): void {
    if (this.closedReason !== undefined) return;
    this.paused = true;
  }

  resume(): void {
    if (this.closedReason !== undefined || !this.paused) return;
    this.paused = false;
    this.other.outgoing.kick(false);
  }

  destroy(reason = 'closed'): void {
    this.finish(reason, 'local');
  }

  end(reason = 'closed'): void {
    this.finish(reason, 'end');
  }

  /** @internal The close notice of an ended wire was delivered: its grace period is over. */
  endFlushed(): void {
    this.endGraceTimer?.cancel();
    this.endGraceTimer = undefined;
  }

  /** @internal Hands received bytes to the data handler. */
  receive(bytes: Buffer): void {
    const handlers = this.handlers;
    invariant(handlers !== undefined, 'bytes delivered to a wire without handlers');
    handlers.data(bytes);
  }

  /** @internal Schedules drain() when write() returned false and the buffer has fallen below the mark. */
  maybeDrain(): void {
    if (!this.needDrain || this.drainTimer !== undefined || this.handlers === undefined) return;
    if (this.outgoing.queuedBytes >= this.core.highWaterMarkBytes) return;
    this.drainTimer = this.core.clock.setTimer(() => {
      this.drainTimer = undefined;
      if (!this.needDrain || this.handlers === undefined || this.outgoing.queuedBytes >= this.core.highWaterMarkBytes) return;
      this.needDrain = false;
      this.handlers.drain();
    }, 0);
  }

  /** @internal A reset from the peer's host reaches this end after `delayMs`. */
  scheduleReset(delayMs: number): void {
    if (this.closedReason !== undefined || this.resetTimer !== undefined) return;
    this.resetTimer = this.core.clock.setTimer(() => {
      this.resetTimer = undefined;
      if (this.closedReason !== undefined) return;
      this.core.counters.resetCount += 1;
      this.finish('ECONNRESET', 'reset');
    }, delayMs);
  }

  /** @internal Closes this end; returns false when it was already closed. */
  finish(reason: string, cause: CloseCause): boolean {
    if (this.closedReason !== undefined) return false;
    this.closedReason = reason;
    this.crashedByHost = cause === 'crash';
    const peer = this.other;
    // end() keeps what was written for delivery; every other close discards it. A crash tells the
    // peer nothing and leaves its bytes stalled; any other close discards the bytes still coming
    // this way, and a local close (destroy or end) sends the peer its notice.
    const flush = cause === 'end' && !peer.closed;
    if (!flush) this.outgoing.clear();
    if (cause !== 'crash') peer.outgoing.clear();
    if ((cause === 'local' || cause === 'end') && !peer.closed) this.outgoing.enqueueClose(CLOSED_BY_PEER);
    if (flush && this.outgoing.hasData) {
      this.endGraceTimer = this.core.clock.setTimer(() => {
        this.endGraceTimer = undefined;
        if (!this.outgoing.hasData || peer.closed) return;
        this.core.trace(`end grace expired #${this.connectionId} ${formatAddress(this.local)}`);
        this.outgoing.clear();
        this.outgoing.enqueueClose('ECONNRESET');
      }, this.core.endGraceMs);
    }
    this.drainTimer?.cancel();
    this.drainTimer = undefined;
    this.resetTimer?.cancel();
    this.resetTimer = undefined;
    if (this.ownsLocalPort) this.core.releasePort(this.local.host, this.local.port);
    this.core.openWires.delete(this);
    this.core.counters.openWireCount -= 1;
    invariant(this.core.counters.openWireCount === this.core.openWires.size, 'open wire count out of step');
    this.core.trace(`close #${this.connectionId} ${formatAddress(this.local)} (${reason})`);
    const handlers = this.handlers;
    this.handlers = undefined;
    handlers?.close(reason);
    return true;
  }
}
