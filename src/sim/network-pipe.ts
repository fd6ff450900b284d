// Notes on the design
// -------------------
// The link fault model: Pipe, one direction of a simulated connection, owned by the NetworkCore
// (which tracks the active ones) and made in pairs by SimWire.pair. It holds the bytes a sender
// wrote that its receiver has not yet been given, and decides when each arrives from the
// direction's LinkSettings (latency, jitter, bandwidth, drops) and the seeded Random:
//   - write() copies its chunks into one segment. A segment leaves when the pipe is free (it
//     occupies it for byteLength / bandwidth) and arrives latency + jitter later, never before
//     the previous segment of the same pipe: order within a wire is always preserved. With
//     re-splitting (the default) a segment is cut at random points, and a segment that lands at
//     the same instant as the still-queued one before it may be joined to it, so decoders see
//     arbitrary splits and joins.
//   - bufferedBytes is what the sender wrote that the receiver's data handler has not yet been
//     given (in flight, held by a partition, or held by a paused or unattached receiver).
//     write() returns false at or above the high-water mark; drain() follows, in a step of its
//     own, once the count falls below it.
//   - Delivery goes one chunk per clock step, so promise continuations run between chunks. The
//     head of a pipe stalls (and everything behind it waits) while the direction is
//     partitioned, while the receiver is paused or not attached, or while the receiving host is
//     down; heal(), healAll() and restart() re-send stalled bytes, arriving one latency later, as
//     TCP retransmission would; resume() and attach() deliver at once.
//   - dropProbability is drawn per delivered chunk; a hit resets the connection: both ends get
//     close("ECONNRESET") at that instant.
//
// Invariants: queuedBytes is the data bytes queued (the sender's bufferedBytes); arrivals never
// go backwards within a pipe; a close piece is the last piece a pipe delivers.

import type { TimerHandle } from '../runtime/clock';
import { formatAddress } from '../transport/wire';
import { CLOSED_BY_PEER, MAX_CUTS_PER_SEGMENT, invariant } from './network-settings';
import type { SimWire } from './network-wire';
import type { NetworkCore } from './network-core';

export interface DataPiece {
  kind: 'data';
  bytes: Buffer;
  arrivalMs: number;
}

/** The sender's close notice: a FIN ("closed by peer") or a reset ("ECONNRESET"). */
export interface ClosePiece {
  kind: 'close';
  reason: typeof CLOSED_BY_PEER | 'ECONNRESET';
  arrivalMs: number;
}

export type Piece = DataPiece | ClosePiece;

/** One direction of a connection: the bytes a sender wrote that its receiver has not yet been given. */
export class Pipe {
  private readonly queue: Array<Piece | undefined> = [];
  private headIndex = 0;
  /** Data bytes queued (the sender's bufferedBytes). */
  queuedBytes = 0;
  private lastArrivalMs = 0;
  private transmitFreeAtMs = 0;
  private timer: TimerHandle | undefined;
  private stallReason: string | undefined;

  constructor(
    private readonly core: NetworkCore,
    readonly sender: SimWire,
    readonly receiver: SimWire,
  ) {}

  private get label(): string {
    return `#${this.sender.connectionId} ${formatAddress(this.sender.local)}->${formatAddress(this.receiver.local)}`;
  }

  private get length(): number {
    return this.queue.length - this.headIndex;
  }

  private head(): Piece | undefined {
    return this.queue[this.headIndex];
  }

  private shift(): Piece {
    const piece = this.queue[this.headIndex];
    invariant(piece !== undefined, 'shift from an empty pipe');
    this.queue[this.headIndex] = undefined;
    this.headIndex += 1;
    if (this.headIndex === this.queue.length) {
      this.queue.length = 0;
      this.headIndex = 0;
      this.core.activePipes.delete(this);
    } else if (this.headIndex >= 1024 && this.headIndex * 2 >= this.queue.length) {
      this.queue.splice(0, this.headIndex);
      this.headIndex = 0;
    }
    return piece;
  }

  private push(piece: Piece): void {
    const tail = this.queue[this.queue.length - 1];
    invariant(this.length === 0 || tail === undefined || piece.arrivalMs >= tail.arrivalMs, 'a piece would arrive before the one ahead of it');
    this.queue.push(piece);
    this.core.activePipes.add(this);
  }

  /** Queues one written segment (already a private copy). */
  enqueueData(bytes: Buffer): void {
    const core = this.core;
    const fromHost = this.sender.local.host;
    const toHost = this.receiver.local.host;
    const link = core.link(fromHost, toHost);
    const nowMs = core.clock.nowMs();
    let sentMs = nowMs;
    if (Number.isFinite(link.bandwidthBytesPerSecond)) {
      const startMs = Math.max(nowMs, this.transmitFreeAtMs);
      this.transmitFreeAtMs = startMs + (bytes.length * 1000) / link.bandwidthBytesPerSecond;
      sentMs = this.transmitFreeAtMs;
    }
    const jitterMs = link.jitterMs > 0 ? core.random.next() * link.jitterMs : 0;
    const arrivalMs = Math.max(sentMs + link.latencyMs + jitterMs, this.lastArrivalMs);
    this.lastArrivalMs = arrivalMs;
    this.queuedBytes += bytes.length;
    const pieces = core.resplit ? this.cut(bytes) : [bytes];
    let first = 0;
    const tail = this.length > 0 ? this.queue[this.queue.length - 1] : undefined;
    if (core.resplit && tail !== undefined && tail.kind === 'data' && tail.arrivalMs === arrivalMs && core.random.int(2) === 0) {
      // The segment lands with the one before it: join them, as TCP coalesces, so a decoder also
      // sees several frames in one chunk. The joined piece is still queued, so this is safe even
      // for the head: its timer reads the bytes only when it fires.
      tail.bytes = Buffer.concat([tail.bytes, pieces[0] as Buffer]);
      first = 1;
    }
    for (let index = first; index < pieces.length; index += 1) {
      this.push({ kind: 'data', bytes: pieces[index] as Buffer, arrivalMs });
    }
    this.schedule();
  }

  /** Queues the sender's close notice, behind whatever data is still queued. */
  enqueueClose(reason: ClosePiece['reason']): void {
    let arrivalMs = this.core.clock.nowMs() + this.core.oneWayDelayMs(this.sender.local.host, this.receiver.local.host);
    const tail = this.length > 0 ? this.queue[this.queue.length - 1] : undefined;
    if (tail !== undefined) arrivalMs = Math.max(arrivalMs, tail.arrivalMs);
    this.lastArrivalMs = Math.max(this.lastArrivalMs, arrivalMs);
    this.push({ kind: 'close', reason, arrivalMs });
    this.schedule();
  }

  /** True while data bytes are queued. */
  get hasData(): boolean {
    return this.queuedBytes > 0;
  }

  private cut(bytes: Buffer): Buffer[] {
    if (bytes.length < 2) return [bytes];
    const cutCount = Math.min(this.core.random.int(MAX_CUTS_PER_SEGMENT + 1), bytes.length - 1);
    if (cutCount === 0) return [bytes];
    // At most MAX_CUTS_PER_SEGMENT distinct offsets, ascending (a plain array: this runs per segment).
    const offsets: number[] = [];
    for (let index = 0; index < cutCount; index += 1) {
      const offset = 1 + this.core.random.int(bytes.length - 1);
      if (!offsets.includes(offset)) offsets.push(offset);
    }
    offsets.sort((a, b) => a - b);
    const pieces: Buffer[] = [];
    let start = 0;
    for (const offset of offsets) {
      pieces.push(bytes.subarray(start, offset));
      start = offset;
    }
    pieces.push(bytes.subarray(start));
    return pieces;
  }

  /** Drops everything queued; returns the data bytes dropped. */
  clear(): number {
    const dropped = this.queuedBytes;
    this.queue.length = 0;
    this.headIndex = 0;
    this.queuedBytes = 0;
    this.timer?.cancel();
    this.timer = undefined;
    this.stallReason = undefined;
    this.core.activePipes.delete(this);
    this.core.counters.discardedBytes += dropped;
    return dropped;
  }

  /** Wakes a stalled pipe; with `retransmit`, held bytes arrive no sooner than one latency from now. */
  kick(retransmit: boolean): void {
    if (this.length === 0) return;
    if (retransmit) {
      const link = this.core.link(this.sender.local.host, this.receiver.local.host);
      const earliestMs = this.core.clock.nowMs() + link.latencyMs;
      for (let index = this.headIndex; index < this.queue.length; index += 1) {
        const piece = this.queue[index];
        if (piece !== undefined && piece.arrivalMs < earliestMs) piece.arrivalMs = earliestMs;
      }
      this.lastArrivalMs = Math.max(this.lastArrivalMs, earliestMs);
    }
    this.stallReason = undefined;
    this.timer?.cancel();
    this.timer = undefined;
    this.schedule();
  }

  private schedule(): void {
    if (this.timer !== undefined || this.stallReason !== undefined) return;
    const head = this.head();
    if (head === undefined) return;
    // The clock computes the due time as now + delay; with a fractional arrival (bandwidth
    // caps) that sum can round one ulp below the arrival, and the piece would be delivered
    // early (found by the pair simulation, test/scenario/regressions/bandwidth-arrival-rounding.json).
    const nowMs = this.core.clock.nowMs();
    let delayMs = Math.max(0, head.arrivalMs - nowMs);
    while (nowMs + delayMs < head.arrivalMs) delayMs += Number.EPSILON * Math.max(1, head.arrivalMs);
    this.timer = this.core.clock.setTimer(() => {
      this.timer = undefined;
      this.deliverHead();
    }, delayMs);
  }

  private stall(reason: string): void {
    if (this.stallReason === reason) return;
    this.stallReason = reason;
    if (this.core.tracing) this.core.trace(`stall ${this.label} (${reason})`);
  }

  private deliverHead(): void {
    const core = this.core;
    const head = this.head();
    if (head === undefined) return;
    invariant(head.arrivalMs <= core.clock.nowMs(), 'a piece delivered before its arrival');
    const { sender, receiver } = this;
    const fromHost = sender.local.host;
    const toHost = receiver.local.host;
    if (core.isPartitioned(fromHost, toHost)) {
      this.stall('partition');
      return;
    }
    if (receiver.closed) {
      if (!receiver.crashed) {
        this.clear();
        return;
      }
      if (core.isDown(toHost)) {
        this.stall('host down');
        return;
      }
      // The host came back without this connection: its stack answers the bytes with a reset.
      if (core.isPartitioned(toHost, fromHost)) {
        this.stall('partition');
        return;
      }
      this.clear();
      if (!sender.closed) sender.scheduleReset(core.oneWayDelayMs(toHost, fromHost));
      return;
    }
    if (head.kind === 'close') {
      this.shift();
      sender.endFlushed();
      if (head.reason === 'ECONNRESET') core.counters.resetCount += 1;
      receiver.finish(head.reason, head.reason === 'ECONNRESET' ? 'reset' : 'peer');
      return;
    }
    if (!receiver.readable) {
      this.stall('receiver paused');
      return;
    }
    const link = core.link(fromHost, toHost);
    if (link.dropProbability > 0 && core.random.next() < link.dropProbability) {
      if (core.tracing) core.trace(`drop ${this.label} ${head.bytes.length}`);
      core.counters.resetCount += 1;
      sender.finish('ECONNRESET', 'reset');
      receiver.finish('ECONNRESET', 'reset');
      return;
    }
    this.shift();
    const byteLength = head.bytes.length;
    this.queuedBytes -= byteLength;
    invariant(this.queuedBytes >= 0, 'negative queued bytes');
    core.counters.deliveredBytes += byteLength;
    core.counters.deliveredChunkCount += 1;
    if (core.tracing) core.trace(`deliver ${this.label} ${byteLength}`);
    this.schedule();
    sender.maybeDrain();
    receiver.receive(head.bytes);
  }
}
