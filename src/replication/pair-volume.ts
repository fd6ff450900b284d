// Notes on the design
// -------------------
// What the NBD server exports for a volume that is in a pair: one object for the life of the
// export, whose writes go to the volume's ReplicatedVolume while this controller is the primary
// (journaled, completed at their ack point) and are refused with ERR_PAIR_READ_ONLY (EPERM)
// while it is a secondary (before a takeover, after a demotion, or while a failback drains the
// primary). Reads always come from the volume. The export's read-only flag follows the role (the
// controller host sets it on every role change), so new connections see the right flags.
//
// Receive into the store (docs/nbd-receive.md) works on a primary too: beginDirectWrite tracks
// the range in every pair (ReplicatedVolume) before the first byte lands, and commitDirectWrite
// journals it from the store, so a payload is copied once less than through write(). A payload
// can take as long to arrive as its client likes, and the role may change meanwhile: when this
// volume stops being the write target (a demotion, a handover's hold, another journal), every
// payload still landing is committed as it stands (journaled and tracked as any write that
// reached the store) and revoked: its connection lands the rest in a buffer of its own, and the
// request fails (ERR_PAIR_READ_ONLY, EPERM) instead of being acknowledged. So no byte lands in
// the store of a side that is no longer the primary, and a handover never waits for a slow client.

import { performance } from 'node:perf_hooks';

import type { Bitmap } from '../storage/bitmap';
import type { Volume } from '../storage/volume';
import { PairError } from './pair-state';
import type { ReplicatedVolume } from './replicated-volume';

/**
 * Write latency by ack point: log2 buckets of microseconds (bucket i holds [2^(i-1), 2^i) us),
 * so recording costs a clz and an increment.
 */
export class LatencyHistogram {
  readonly buckets = new Float64Array(40);
  count = 0;
  sumSeconds = 0;

  record(seconds: number): void {
    const micros = Math.max(0, Math.round(seconds * 1e6));
    const index = Math.min(this.buckets.length - 1, micros === 0 ? 0 : 32 - Math.clz32(micros));
    this.buckets[index] = (this.buckets[index] as number) + 1;
    this.count++;
    this.sumSeconds += seconds;
  }

  /** The upper bound (seconds) of the bucket holding quantile q, or null when empty. */
  quantile(q: number): number | null {
    if (this.count === 0) return null;
    const rank = q * this.count;
    let seen = 0;
    for (let index = 0; index < this.buckets.length; index++) {
      seen += this.buckets[index] as number;
      if (seen >= rank) return 2 ** index / 1e6;
    }
    return 2 ** (this.buckets.length - 1) / 1e6;
  }

  toJSON(): Record<string, unknown> {
    return { count: this.count, sumSeconds: this.sumSeconds, p50Seconds: this.quantile(0.5), p99Seconds: this.quantile(0.99) };
  }
}

/** A payload landing in the store of a primary (PairVolume.beginDirectWrite). */
interface LandingWrite {
  byteOffset: number;
  byteLength: number;
  replicated: ReplicatedVolume;
  revoke: (reason: Error) => void;
}

/** A pair's volume as hosts see it. */
export class PairVolume {
  /**
   * Host write latency (write to ack point) of writes completed when stored here ('local':
   * async pairs, or no sync pair mirroring) and of writes that waited for a sync secondary
   * ('remote'). Recorded for writes whose caller asks for the ack point (the NBD server does).
   */
  readonly latency = { local: new LatencyHistogram(), remote: new LatencyHistogram() };
  private lastWriteStart = 0;
  #replicated: ReplicatedVolume | undefined;
  #holdWrites = false;
  /** Payloads landing in the store (beginDirectWrite to commitDirectWrite), with their revokers. */
  readonly #landing = new Set<LandingWrite>();

  /** Set while this controller is the primary of the volume's pairs. */
  get replicated(): ReplicatedVolume | undefined {
    return this.#replicated;
  }

  set replicated(replicated: ReplicatedVolume | undefined) {
    if (replicated !== this.#replicated) {
      this.revokeLanding(replicated === undefined ? 'the secondary of a pair now' : 'the primary of pairs on another journal now');
      this.#replicated?.setWriteTarget(false);
    }
    this.#replicated = replicated;
    replicated?.setWriteTarget(!this.#holdWrites);
  }

  /** Host writes are refused while set (a failback or planned takeover drains the primary). */
  get holdWrites(): boolean {
    return this.#holdWrites;
  }

  set holdWrites(hold: boolean) {
    if (hold && !this.#holdWrites) this.revokeLanding('handing its primary role over');
    this.#holdWrites = hold;
    this.#replicated?.setWriteTarget(!hold);
  }

  constructor(readonly volume: Volume, readonly volumeName: string) {}

  /**
   * The storage volume a native NBD lane may serve for this export now (native-lanes.ts): the
   * volume while its lane gate is open (replicated-volume.ts), else null (the event loop).
   */
  laneVolume(): Volume | null {
    return this.writable && this.#replicated?.laneGateOpen === true ? this.volume : null;
  }

  /** True when host writes are accepted. */
  get writable(): boolean {
    return this.replicated !== undefined && !this.holdWrites;
  }

  private target(): ReplicatedVolume {
    const replicated = this.replicated;
    if (replicated === undefined || this.holdWrites) {
      throw new PairError('ERR_PAIR_READ_ONLY', `volume ${this.volumeName} is ${replicated === undefined ? 'the secondary of a pair' : 'handing its primary role over'}: writes are refused`);
    }
    return replicated;
  }

  get capacityBytes(): number {
    return this.volume.capacityBytes;
  }

  get blockSize(): number {
    return this.volume.blockSize;
  }

  get strict(): boolean {
    return this.volume.strict;
  }

  get closed(): boolean {
    return this.volume.closed;
  }

  read(byteOffset: number, target: Uint8Array): void {
    this.volume.read(byteOffset, target);
  }

  write(byteOffset: number, source: Uint8Array): number {
    this.lastWriteStart = performance.now();
    return this.target().write(byteOffset, source);
  }

  writeZeroes(byteOffset: number, byteLength: number, options?: { mayPunchHole?: boolean }): number {
    this.lastWriteStart = performance.now();
    return this.target().writeZeroes(byteOffset, byteLength, options);
  }

  trim(byteOffset: number, byteLength: number): number {
    this.lastWriteStart = performance.now();
    return this.target().trim(byteOffset, byteLength);
  }

  /**
   * Receive into the store on a primary (see the note): the store's memory for the range, or null
   * (then write()). `revoke` is how the caller is told to stop landing bytes there; a caller
   * that cannot be told gets null. Throws what write() would (ERR_PAIR_READ_ONLY).
   */
  beginDirectWrite(byteOffset: number, byteLength: number, revoke?: (reason: Error) => void): Uint8Array | null {
    const replicated = this.target();
    if (revoke === undefined) return null;
    const view = replicated.beginDirectWrite(byteOffset, byteLength);
    if (view !== null) this.#landing.add({ byteOffset, byteLength, replicated, revoke });
    return view;
  }

  /** Completes a beginDirectWrite that was not revoked: journaled from the store; the sequence as write() returns it. */
  commitDirectWrite(byteOffset: number, byteLength: number): number {
    this.lastWriteStart = performance.now();
    for (const landing of this.#landing) {
      if (landing.byteOffset !== byteOffset || landing.byteLength !== byteLength) continue;
      this.#landing.delete(landing);
      return landing.replicated.commitDirectWrite(byteOffset, byteLength);
    }
    throw new RangeError(`commitDirectWrite(${byteOffset}, ${byteLength}) without a beginDirectWrite of that range landing`);
  }

  /** The number of payloads landing in the store now. */
  get landingWrites(): number {
    return this.#landing.size;
  }

  /** Commits every payload still landing as it stands, and revokes the rest of it (see the note). */
  private revokeLanding(why: string): void {
    for (const landing of [...this.#landing]) {
      this.#landing.delete(landing);
      try {
        landing.replicated.commitDirectWrite(landing.byteOffset, landing.byteLength);
      } catch {
        // The volume closed meanwhile: its bitmaps were marked at begin.
      }
      landing.revoke(new PairError('ERR_PAIR_READ_ONLY', `volume ${this.volumeName} is ${why}: the write arriving meanwhile is refused`));
    }
  }

  /** The ack point of the write that just returned `sequence` (called right after it). */
  writeCompletion(sequence: number): Promise<void> | null {
    const started = this.lastWriteStart;
    const wait = this.replicated === undefined ? null : this.replicated.writeCompletion(sequence);
    if (wait === null) {
      this.latency.local.record((performance.now() - started) / 1000);
      return null;
    }
    // Writes of a burst share their ack point's promise (PrimaryPair.ackPoint): it is returned
    // as it is, and their latencies are recorded together by one callback per promise,
    // registered before the caller's, so recorded before any of them is acknowledged.
    if (wait === this.remoteWait) {
      this.remoteStarts.push(started);
      return wait;
    }
    const starts = [started];
    this.remoteWait = wait;
    this.remoteStarts = starts;
    wait.then(() => {
      if (this.remoteWait === wait) this.remoteWait = undefined;
      const now = performance.now();
      for (let index = 0; index < starts.length; index++) this.latency.remote.record((now - (starts[index] as number)) / 1000);
    }, () => {
      // A failed write records no latency (its caller gets the error from `wait` itself).
      if (this.remoteWait === wait) this.remoteWait = undefined;
    });
    return wait;
  }

  /** The last ack point promise handed out, and the start times of the writes waiting on it. */
  private remoteWait: Promise<void> | undefined;
  private remoteStarts: number[] = [];

  flush(): Promise<void> {
    return this.replicated === undefined ? this.volume.flush() : this.replicated.flush();
  }

  allocationMap(byteOffset: number, byteLength: number): { byteOffset: number; byteLength: number; allocated: boolean }[] {
    return this.volume.allocationMap(byteOffset, byteLength);
  }

  listBitmaps(): { name: string; granularityBytes: number; bitCount: number; recording: boolean }[] {
    return this.volume.listBitmaps();
  }

  openBitmap(name: string): Bitmap {
    return this.volume.openBitmap(name);
  }
}
