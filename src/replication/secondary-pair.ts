// Notes on the design
// -------------------
// The secondary side of one pair: it applies what the primary ships, in order, through its own
// volume's write path, and reports received, applied and flushed positions.
//
// What it refuses (the primary suspends with secondary-error; nothing of the message is
// applied, and the volume is unchanged): records for another volume or pair, a record out of
// sequence (a gap or a repeat), a record or track outside the volume, a pair opened with other
// volumes, mode or geometry than this controller declared. A message is validated as a whole
// before any byte of it is applied.
//
// The volume is read-only to hosts (its export is forced read-only) until taken over.

import { EventEmitter } from 'node:events';

import type { Clock } from '../runtime/clock';
import type { Volume } from '../storage/volume';
import type { Link, LinkLogger, LinkStateEvent } from '../transport/link';
import { MessageType } from '../transport/message-types';
import { type OpenReply, type PairMode, type PairOpen, type ShippedRecord, encodePairError, encodePosition } from './messages';
import { type Consistency, PairError, type PairState } from './pair-state';

/** Options of a secondary pair. */
export interface SecondaryPairOptions {
  name: string;
  volumeName: string;
  /** The primary's volume name on the peer. */
  remoteVolume: string;
  mode: PairMode;
}

/** The secondary side of a pair. */
export class SecondaryPair extends EventEmitter {
  readonly name: string;
  readonly mode: PairMode;
  private state: PairState = 'simplex';
  private reason = 'declared';
  private sinceMs: number;
  private consistencyValue: Consistency = 'inconsistent';
  private nextSequence = 1;
  private received = 0;
  private applied = 0;
  private flushed = 0;
  private closed = false;
  /**
   * True once a copy completed into this object's volume. Kept in memory only: a restarted
   * secondary gets a first copy again (safe, not minimal; generation ids will make it minimal).
   */
  private synced = false;
  appliedBytes = 0;
  refusedCount = 0;

  constructor(
    private readonly options: SecondaryPairOptions,
    private readonly volume: Volume,
    private readonly link: Link,
    private readonly clock: Clock,
    private readonly log: LinkLogger,
  ) {
    super();
    this.name = options.name;
    this.mode = options.mode;
    this.sinceMs = clock.nowMs();
    link.on('state', this.onLinkState);
  }

  get currentState(): PairState {
    return this.state;
  }

  get consistency(): Consistency {
    return this.consistencyValue;
  }

  private move(next: PairState, reason: string): void {
    if (this.state === next && this.reason === reason) return;
    const old = this.state;
    this.state = next;
    this.reason = reason;
    this.sinceMs = this.clock.nowMs();
    this.log.info({ pair: this.name, old, new: next, reason }, `pair ${this.name} (secondary): ${old} -> ${next} (${reason})`);
    this.emit('state', { name: this.name, old, new: next, reason, timeMs: this.clock.nowMs() });
  }

  private readonly onLinkState = (event: LinkStateEvent): void => {
    if (this.closed || event.new === 'up' || event.old !== 'up') return;
    if (this.state === 'mirroring') this.consistencyValue = 'outdated';
    if (this.state !== 'simplex') this.move('suspended', 'link-down');
  };

  /** PAIR_OPEN from the primary: checked against this controller's declaration. */
  open(request: PairOpen): OpenReply {
    const { options, volume } = this;
    if (request.secondaryVolume !== options.volumeName || request.primaryVolume !== options.remoteVolume) {
      throw new PairError('ERR_PAIR_MISMATCH', `pair ${this.name}: declared here as ${options.remoteVolume} -> ${options.volumeName}, ` +
        `the primary says ${request.primaryVolume} -> ${request.secondaryVolume}`);
    }
    if (request.mode !== options.mode) {
      throw new PairError('ERR_PAIR_MISMATCH', `pair ${this.name}: declared here in mode ${options.mode}, the primary says ${request.mode}`);
    }
    if (request.capacityBytes !== volume.capacityBytes || request.blockSize !== volume.blockSize) {
      throw new PairError('ERR_PAIR_MISMATCH', `pair ${this.name}: the secondary volume has capacity ${volume.capacityBytes} and block size ` +
        `${volume.blockSize}, the primary ${request.capacityBytes} and ${request.blockSize}`);
    }
    this.consistencyValue = 'inconsistent';
    if (request.firstCopy || !this.synced) {
      // A first copy sends the primary's allocated tracks only: start from an empty image, so
      // what is a hole there is a hole here.
      this.volume.trim(0, this.volume.capacityBytes);
      this.synced = false;
      this.nextSequence = 1;
      this.received = this.applied = this.flushed = 0;
    }
    this.move(this.synced ? 'resyncing' : 'copying', 'opened by the primary');
    return { nextSequence: this.nextSequence, applied: this.applied, synced: this.synced };
  }

  private refuse(error: PairError): void {
    this.refusedCount++;
    this.log.warn({ pair: this.name, code: error.code }, `pair ${this.name}: refused: ${error.message}`);
    try {
      this.link.send(MessageType.PAIR_ERROR, encodePairError(this.name, error.code, error.message));
    } catch {
      // The link is gone: the primary suspends anyway.
    }
  }

  private checkRange(byteOffset: number, byteLength: number, what: string): void {
    if (byteOffset + byteLength > this.volume.capacityBytes) {
      throw new PairError('ERR_PAIR_RANGE', `pair ${this.name}: ${what} at ${byteOffset}+${byteLength} is past the end (${this.volume.capacityBytes})`);
    }
  }

  /** PAIR_RECORDS: validated as a whole, then applied in order. */
  applyRecords(records: readonly ShippedRecord[]): void {
    try {
      if (this.state !== 'mirroring' && this.state !== 'copying' && this.state !== 'resyncing') {
        throw new PairError('ERR_PAIR_STATE', `pair ${this.name}: records while ${this.state}`);
      }
      let expected = this.nextSequence;
      for (const record of records) {
        if (record.sequence !== expected) {
          throw new PairError('ERR_PAIR_SEQUENCE', `pair ${this.name}: record ${record.sequence}, expected ${expected}`);
        }
        this.checkRange(record.byteOffset, record.byteLength, `a ${record.kind} record`);
        expected++;
      }
    } catch (error) {
      if (error instanceof PairError) {
        this.refuse(error);
        return;
      }
      throw error;
    }
    for (const record of records) {
      if (record.kind === 'write') this.volume.write(record.byteOffset, record.data);
      else if (record.kind === 'zero') this.volume.writeZeroes(record.byteOffset, record.byteLength);
      else this.volume.trim(record.byteOffset, record.byteLength);
      this.appliedBytes += record.byteLength;
    }
    if (records.length > 0) {
      const last = (records[records.length - 1] as ShippedRecord).sequence;
      this.nextSequence = last + 1;
      this.received = this.applied = last;
      this.reportPosition();
    }
  }

  /** PAIR_TRACK: current primary bytes during a copy or resync pass. */
  applyTrack(byteOffset: number, data: Buffer): void {
    try {
      if (this.state !== 'copying' && this.state !== 'resyncing') throw new PairError('ERR_PAIR_STATE', `pair ${this.name}: a track while ${this.state}`);
      this.checkRange(byteOffset, data.length, 'a track');
    } catch (error) {
      if (error instanceof PairError) {
        this.refuse(error);
        return;
      }
      throw error;
    }
    this.volume.write(byteOffset, data);
    this.appliedBytes += data.length;
  }

  /** PAIR_RESYNC_DONE: the pass is complete; ordered records resume at `nextSequence`. */
  resyncDone(nextSequence: number): void {
    if (this.state !== 'copying' && this.state !== 'resyncing') {
      throw new PairError('ERR_PAIR_STATE', `pair ${this.name}: resync done while ${this.state}`);
    }
    this.nextSequence = nextSequence;
    this.received = this.applied = nextSequence - 1;
    this.consistencyValue = 'consistent';
    this.synced = true;
    this.move('mirroring', 'resync done');
  }

  /** PAIR_FLUSH: flushes the volume; resolves with the flushed position. */
  async flush(): Promise<number> {
    const through = this.applied;
    await this.volume.flush();
    this.flushed = Math.max(this.flushed, through);
    this.reportPosition();
    return this.flushed;
  }

  private reportPosition(): void {
    try {
      this.link.send(MessageType.PAIR_POSITION, encodePosition({ name: this.name, received: this.received, applied: this.applied, flushed: this.flushed }));
    } catch {
      // Link down or full: the next report carries the position.
    }
  }

  status(): Record<string, unknown> {
    return {
      name: this.name,
      role: 'secondary',
      mode: this.mode,
      peer: this.link.peerId,
      volume: this.options.volumeName,
      remoteVolume: this.options.remoteVolume,
      state: this.state,
      reason: this.reason,
      sinceMs: Math.round(this.clock.nowMs() - this.sinceMs),
      consistency: this.consistencyValue,
      link: this.link.currentState,
      positions: { received: this.received, applied: this.applied, flushed: this.flushed, next: this.nextSequence },
      appliedBytes: this.appliedBytes,
      refused: this.refusedCount,
    };
  }

  close(): void {
    this.closed = true;
    this.link.off('state', this.onLinkState);
  }
}
