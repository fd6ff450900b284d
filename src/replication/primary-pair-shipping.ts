// Notes on the design
// -------------------
// The ordered stream of the primary side of a pair (primary-pair.ts's notes say why it is
// correct): host writes (their tracking before the store, their generation, the times behind
// the lag in seconds), the pump that ships journal records in sequence order (or a journal
// group's stream that ships them for its members), the secondary's positions (waiters settled,
// OOS cleared when caught up, the tracking rotated) and the ack point of a sync write. The second
// layer of the stack PrimaryPairCore (primary-pair-core.ts) <- PrimaryPairShipping (this file)
// <- PrimaryPairPasses (primary-pair-passes.ts) <- PrimaryPair (primary-pair.ts).
//
// This is the write path: nothing here allocates per write beyond a sync write's waiter (one per
// burst), and the pump runs once per burst (runtime/coalesce.ts) with pooled send buffers.
//
// Errors: a journal that cannot be read or a link that refuses a send suspends the pair (never a
// throw); ackPoint() rejects with ERR_PAIR_FENCED when a 'data' fence cannot reach the
// secondary.

import type { TimerHandle } from '../runtime/clock';
import { Coalesced, deferOn } from '../runtime/coalesce';
import type { JournalRecord } from '../storage/journal';
import { isLinkError } from '../transport/errors';
import { MessageType } from '../transport/message-types';
import { formatGeneration, startGeneration } from './generations';
import { type PairPosition, type ShippedRecord, encodeRecords, packRecords, RECORD_HEADER_BYTES, recordsPrefixBytes } from './messages';
import { PairError } from './pair-state';
import { PrimaryPairCore } from './primary-pair-core';
import { type Waiter, MAX_PUMP_RECORDS, MAX_WAITER_SPAN, TIMES_RING, KIND_OF } from './primary-pair-options';

/** Host writes, the pump and the secondary's positions (see the notes above). */
export abstract class PrimaryPairShipping extends PrimaryPairCore {
  /**
   * Something was written (or may have been): ship it. `throughSequence` is the journal's last
   * sequence now; its time is kept (a bounded ring) so status can say how far behind the
   * secondary is in seconds.
   */
  notifyWrite(throughSequence?: number): void {
    if (this.state !== 'mirroring' && this.meta.state.newGeneration) this.beginGeneration();
    if (this.streamHold !== undefined) this.checkHoldFill();
    if (throughSequence !== undefined && throughSequence > this.lastTimedSequence) {
      // A ring of (sequence, time): when full, the oldest entry is overwritten (the lag in
      // seconds then reads a little low, never high), O(1) per write.
      const ring = this.writeTimes;
      if (this.timesCount === TIMES_RING) {
        this.timesHead = (this.timesHead + 1) % TIMES_RING;
        this.timesCount--;
      }
      const at = (this.timesHead + this.timesCount) % TIMES_RING;
      ring.sequences[at] = throughSequence;
      ring.times[at] = this.clock.nowMs();
      this.timesCount++;
      this.lastTimedSequence = throughSequence;
    }
    if (this.state === 'mirroring') this.schedulePump();
  }

  /**
   * Before a host write reaches the store: mark it in the tracking (so a SIGKILL in the middle
   * of the copy leaves it tracked), and start a new generation at the first write after the
   * pair stopped mirroring (DRBD's new current UUID), so a takeover on the other side meanwhile
   * is caught as a split brain.
   */
  beforeWrite(byteOffset: number, byteLength: number): void {
    this.tracking.premark(byteOffset, byteLength);
    if (this.state !== 'mirroring' && this.meta.state.newGeneration) this.beginGeneration();
  }

  private beginGeneration(): void {
    const generations = startGeneration(this.meta.state.generations, this.random);
    this.meta.update({ generations, newGeneration: false });
    this.log.info({ pair: this.name, current: formatGeneration(generations.current) }, `pair ${this.name}: new generation ${formatGeneration(generations.current)} (writes while not mirroring)`);
  }

  /** (last journal sequence, time it was seen), oldest first; trimmed as the secondary applies. */
  private readonly writeTimes = { sequences: new Float64Array(TIMES_RING), times: new Float64Array(TIMES_RING) };
  private timesHead = 0;
  private timesCount = 0;
  private lastTimedSequence = 0;

  /** Seconds since the oldest write the secondary has not applied was seen (0 when none). */
  protected lagSeconds(): number {
    const ring = this.writeTimes;
    while (this.timesCount > 0 && (ring.sequences[this.timesHead] as number) <= this.applied) {
      this.timesHead = (this.timesHead + 1) % TIMES_RING;
      this.timesCount--;
    }
    return this.timesCount === 0 ? 0 : Math.max(0, (this.clock.nowMs() - (ring.times[this.timesHead] as number)) / 1000);
  }

  /**
   * True while a native lane may store and acknowledge a host write of this pair's volume by
   * itself (replicated-volume.ts): an async pair, mirroring (a write needs no generation, no
   * ack point and no premark beyond the native one).
   */
  get lanesMayWrite(): boolean {
    return !this.closed && this.mode === 'async' && this.state === 'mirroring';
  }

  /** The journal refused a record: the ordered stream is broken for every pair of the volume. */
  journalFull(): void {
    // A write is in no record (in the tracking only): the stream is broken from here, also for
    // a later restart (meta streaming) of a pair that has not opened yet.
    this.dropHold('a write found it full');
    if (this.meta.state.streaming) this.meta.update({ streaming: false });
    if (this.state === 'mirroring' || this.state === 'copying' || this.state === 'resyncing') {
      this.suspend('journal-full', 'the journal has no room; writes are recorded in the OOS bitmap');
    }
  }

  protected override schedulePump(): void {
    if (this.group !== undefined) {
      // A journal group member: the group's one stream ships its records (journal-group.ts).
      if (this.state === 'mirroring') this.group.schedulePump();
      return;
    }
    this.pumpTask.schedule();
  }

  /** One pump per burst of writes (runtime/coalesce.ts). */
  private readonly pumpTask = new Coalesced(() => this.pump(), (run) => deferOn(this.clock, run));

  private pump(): void {
    for (;;) {
      if (this.closed || this.state !== 'mirroring') return;
      const fenced = this.cutFence.through;
      if (fenced !== undefined && this.nextToShip > fenced) {
        // Shipped through a consistency group's cut: wait for the run (or the release), then the
        // cut goes out before any later record, and the fence lifts.
        if (!this.cutFence.release()) return;
        continue;
      }
      if (this.link.isFull) return;
      const limit = fenced === undefined ? this.journal.nextSequence : fenced + 1;
      if (this.nextToShip >= limit) return;
      const maxRecords = Math.min(MAX_PUMP_RECORDS, limit - this.nextToShip);
      // The hot path: the journal copies the records' data straight into the message, with room
      // left for the per-record headers (packRecords writes them in place).
      // The message goes into a reused send buffer when one is free (transport/send-pool.ts),
      // given back once the link says nothing reads it any more.
      let message: Buffer | null;
      let messageCrc: number | undefined;
      let last: number;
      let dataBytes = 0;
      const target = this.sendPool.take();
      let pooled: Buffer | undefined;
      try {
        const packed = this.journal.readPacked(this.nextToShip, {
          maxRecords, maxDataBytes: this.maxBatchBytes, prefixBytes: recordsPrefixBytes(this.nameBytes), gapBytes: RECORD_HEADER_BYTES, target,
          verify: this.nextToShip <= this.verifyThrough,
        });
        if (target !== undefined && packed.buffer === target) pooled = target;
        else if (target !== undefined) this.sendPool.give(target);
        if (packed.count === 0) {
          if (pooled !== undefined) this.sendPool.give(pooled);
          return;
        }
        const packedMessage = packRecords(this.nameBytes, packed.fields, packed.buffer, packed.usedBytes);
        message = packedMessage?.message ?? null;
        messageCrc = packedMessage?.crc;
        last = packed.fields[(packed.count - 1) * 8] as number;
        for (let index = 0; index < packed.count; index++) dataBytes += packed.fields[index * 8 + 7] as number;
      } catch (error) {
        if (pooled !== undefined) this.sendPool.give(pooled);
        else if (target !== undefined) this.sendPool.give(target);
        this.suspend('journal-full', `journal read: ${(error as Error).message}`);
        return;
      }
      if (message === null && pooled !== undefined) {
        this.sendPool.give(pooled);
        pooled = undefined;
      }
      if (message === null) {
        // A record kind PAIR_RECORDS does not carry as such: the copying path filters it out.
        let records: JournalRecord[];
        try {
          records = this.journal.read(this.nextToShip, { maxRecords, maxBytes: this.maxBatchBytes });
        } catch (error) {
          this.suspend('journal-full', `journal read: ${(error as Error).message}`);
          return;
        }
        if (records.length === 0) return;
        const shipped: ShippedRecord[] = [];
        for (const record of records) {
          const kind = KIND_OF[record.kind];
          if (kind === undefined) continue;
          shipped.push({ sequence: record.sequence, kind, byteOffset: record.byteOffset, byteLength: record.byteLength, data: record.data });
        }
        last = (records[records.length - 1] as JournalRecord).sequence;
        dataBytes = 0;
        for (const record of shipped) dataBytes += record.data.length;
        message = shipped.length > 0 ? encodeRecords(this.name, shipped) : null;
      }
      if (message !== null) {
        const lent = pooled;
        try {
          this.link.send(MessageType.PAIR_RECORDS, message, {
            onUnconfirmed: this.onRecordsUnconfirmed,
            onWritten: lent === undefined ? undefined : () => this.sendPool.give(lent),
            payloadCrc: messageCrc,
          });
        } catch (error) {
          if (lent !== undefined) this.sendPool.give(lent);
          if (isLinkError(error, 'ERR_LINK_FULL')) return; // 'drain' pumps again
          this.suspend('link-down', (error as Error).message);
          return;
        }
        this.shippedBytes += dataBytes;
      } else {
        // Only markers: nothing to apply, but the secondary's position moves past them.
        this.applied = Math.max(this.applied, last);
      }
      this.nextToShip = last + 1;
    }
  }

  private readonly onRecordsUnconfirmed = (): void => this.suspend('link-down', 'records unconfirmed');

  // ---- a journal group's stream (journal-group.ts) ships for its members -------------------

  /** Whether the group's stream ships this member's records now. */
  get streaming(): boolean {
    return !this.closed && this.state === 'mirroring';
  }

  /** The member's next journal sequence to ship. */
  get shipFrom(): number {
    return this.nextToShip;
  }

  /** The group's stream shipped a batch covering this member's records through `through`. */
  shipped(through: number, dataBytes: number): void {
    if (through + 1 > this.nextToShip) this.nextToShip = through + 1;
    this.shippedBytes += dataBytes;
  }

  // ---- the secondary's positions and the ack point of a sync write -------------------------

  /** The secondary's positions arrived. */
  onPosition(position: PairPosition): void {
    this.received = Math.max(this.received, position.received);
    this.applied = Math.max(this.applied, position.applied);
    this.flushed = Math.max(this.flushed, position.flushed);
    this.resolveWaiters();
    this.clearIfCaughtUpSoon();
    this.maybeRotate();
    this.emit('progress');
  }

  /** Caught up at this instant (everything written so far is on the secondary): clear OOS. */
  protected clearIfCaughtUp(): void {
    const next = this.journal.nextSequence;
    if (this.state === 'mirroring' && this.applied >= next - 1 && this.nextToShip === next) {
      this.tracking.clearAll();
      this.lastCaughtUpClearMs = this.clock.nowMs();
      // In memory only: the saved value stays a lower bound.
      this.trackedSince = next;
    }
  }

  /**
   * The position reports' clear: at most once per rotateIntervalMs. A sync pair catches up at
   * every write, and clearing both bitmaps costs a pass over their words (2 MiB each for 1 TiB at
   * 64 KiB tracks), so a clear per write cost more than the write. Bits left set a little longer
   * only widen a resync after a crash by at most that interval's writes (the rotation's window
   * already spans two); a report inside the interval leaves one check for its end, so an idle
   * pair still ends with nothing tracked.
   */
  private clearIfCaughtUpSoon(): void {
    const waitMs = this.lastCaughtUpClearMs + this.rotateIntervalMs - this.clock.nowMs();
    if (waitMs <= 0) {
      this.clearIfCaughtUp();
      return;
    }
    if (this.caughtUpClearTimer !== undefined) return;
    this.caughtUpClearTimer = this.clock.setTimer(() => {
      this.caughtUpClearTimer = undefined;
      if (!this.closed) this.clearIfCaughtUp();
    }, waitMs, { unref: true });
  }

  private lastCaughtUpClearMs = -Infinity;
  protected caughtUpClearTimer: TimerHandle | undefined;

  /** The sealed bitmap's writes are all applied: it becomes the active one (tracking.ts). */
  private maybeRotate(): void {
    if (this.state !== 'mirroring' || this.applied < this.meta.state.sealedThrough) return;
    const now = this.clock.nowMs();
    if (now - this.lastRotateMs < this.rotateIntervalMs) return;
    this.lastRotateMs = now;
    // Under the lane gate: a lane write between its marks and its record could otherwise mark
    // the bitmap being sealed and take a sequence past the seal read here, and that bitmap is
    // cleared once the seal is applied, before the write is.
    this.volume.underLaneGate(this.rotateNow);
  }

  private readonly rotateNow = (): void => {
    const active = this.tracking.rotate();
    // The sealed bitmap now is the one that recorded the writes after the old seal.
    if (this.trackedSince !== 0) this.trackedSince = Math.max(this.trackedSince, this.meta.state.sealedThrough + 1);
    this.meta.update({ active, sealedThrough: this.journal.nextSequence - 1 });
  }

  protected resolveWaiters(): void {
    const waiters = this.waiters;
    if (waiters.length === 0) return;
    // Usually the first group is still waiting: nothing to settle, nothing allocated.
    if ((waiters[0] as Waiter).sequence > this.applied && waiters.every((waiter) => waiter.sequence > this.applied)) return;
    const remaining: Waiter[] = [];
    for (const waiter of waiters) {
      if (waiter.sequence <= this.applied) waiter.resolve();
      else remaining.push(waiter);
    }
    this.waiters = remaining;
  }

  /**
   * The ack point of a host write journaled at `sequence`: null when it completes now, else a
   * promise that resolves when the secondary applied it (sync, mirroring), or rejects with
   * ERR_PAIR_FENCED (fence 'data' while the secondary cannot be reached).
   */
  ackPoint(sequence: number): Promise<void> | null {
    if (this.mode !== 'sync') return null;
    // Fence 'data': a write during a copy or resync pass waits like one while mirroring (it is
    // in the journal from J on); before the first open (simplex) it fails like a suspended one.
    const passing = this.fence === 'data' && (this.state === 'copying' || this.state === 'resyncing');
    if (this.state !== 'mirroring' && !passing) {
      if (this.fence === 'data' && (this.state === 'suspended' || this.state === 'split-brain' || this.state === 'simplex')) {
        return Promise.reject(new PairError('ERR_PAIR_FENCED', `pair ${this.name} is ${this.state} (${this.reason}) and fenced: the write is not on the secondary`));
      }
      return null;
    }
    if (sequence <= 0) {
      // Not journaled (journal full): the pair suspends; the write is in OOS only.
      return this.fence === 'data'
        ? Promise.reject(new PairError('ERR_PAIR_FENCED', `pair ${this.name}: the journal is full and the pair is fenced`))
        : null;
    }
    if (sequence <= this.applied) return null;
    // A write not shipped yet joins the last group while that group is not shipped either: it
    // ships in the same batch, and the group settles once the secondary applied its last
    // sequence, so no write completes before the secondary applied it (one promise per burst).
    const waiters = this.waiters;
    const last = waiters[waiters.length - 1];
    if (last !== undefined && last.sequence >= this.nextToShip && sequence >= last.sequence && sequence - last.first < MAX_WAITER_SPAN) {
      last.sequence = sequence;
      return last.promise;
    }
    let resolve!: () => void;
    let reject!: (error: Error) => void;
    const promise = new Promise<void>((onResolve, onReject) => {
      resolve = onResolve;
      reject = onReject;
    });
    waiters.push({ sequence, first: sequence, promise, resolve, reject });
    return promise;
  }
}
