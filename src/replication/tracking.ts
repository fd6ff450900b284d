// Notes on the design
// -------------------
// The out-of-sync (OOS) tracking of one pair side: two bitmaps in the volume's region
// (`pair:<name>` and `pair:<name>:b`), so they survive a SIGKILL with the volume. OOS is their
// union. Exactly one of them records (the native write path marks it on every write); the other
// is sealed with the last journal sequence that could have marked it.
//
// Invariant: every byte that may differ between this volume and the secondary's image is marked
// in the union, at every instant, including one where the process is killed:
//   - the replicated volume marks the active bitmap *before* each host write reaches the store
//     (premark), so a write torn by a SIGKILL is tracked; the native path marks it again after;
//   - a bitmap is cleared only when the secondary has applied every record that could have
//     marked it: the sealed one once applied >= sealedThrough (then it becomes the active one
//     and the other is sealed at the journal's last sequence: rotate), both once the secondary
//     has applied everything the journal holds (caught up), or the sealed one when the secondary
//     confirmed a whole resync pass: a pass first merges the active bitmap into the sealed one
//     (sealForPass), sends the sealed tracks without clearing any, and clears the sealed bitmap
//     only once PAIR_RESYNC_DONE is answered (clearSealed); writes during the pass mark the
//     active one and are journaled after the pass's start. A pass cut by a crash or a link loss
//     leaves every track it had to send still tracked.
// So the tracking covers about two rotation intervals of writes while mirroring (the in-flight
// window), and a resync after a crash moves about that window, not the volume.

import { Bitmap } from '../storage/bitmap';
import type { Volume } from '../storage/volume';
import type { ByteRange } from './messages';

const BITMAP_NAME_LIMIT = 47;

/** The bitmap names of a pair (shortened with a hash when the pair name is long). */
export function trackingBitmapNames(pairName: string): [string, string] {
  let base = `pair:${pairName}`;
  if (base.length + 2 > BITMAP_NAME_LIMIT) {
    let hash = 0x811c9dc5;
    for (let i = 0; i < pairName.length; i++) hash = Math.imul(hash ^ pairName.charCodeAt(i), 0x01000193) >>> 0;
    base = `pair:${pairName.slice(0, BITMAP_NAME_LIMIT - 16)}.${hash.toString(16).padStart(8, '0')}`;
  }
  return [base, `${base}:b`];
}

/** Two rotating bitmaps; see the note above. */
export class Tracking {
  readonly bitmaps: [Bitmap, Bitmap];
  private scratch: Bitmap | undefined;
  private activeIndex: 0 | 1;

  constructor(private readonly volume: Volume, pairName: string, active: 0 | 1, recording: boolean) {
    const names = trackingBitmapNames(pairName);
    const existing = new Set(volume.listBitmaps().map((bitmap) => bitmap.name));
    this.bitmaps = names.map((name) => (existing.has(name) ? volume.openBitmap(name) : volume.createBitmap(name, { recording: false }))) as [Bitmap, Bitmap];
    this.names = names;
    this.activeIndex = active;
    this.setRecording(recording);
  }

  private readonly names: [string, string];

  get granularityBytes(): number {
    return this.bitmaps[0].granularityBytes;
  }

  get active(): 0 | 1 {
    return this.activeIndex;
  }

  /** Records host writes into the active bitmap (true), or nothing (a secondary). */
  setRecording(recording: boolean): void {
    const other = this.activeIndex === 0 ? 1 : 0;
    // The active one first, so no write falls between the two calls unmarked.
    this.volume.setBitmapRecording(this.names[this.activeIndex], recording);
    this.volume.setBitmapRecording(this.names[other], false);
  }

  /** Marks a range in the active bitmap (before the write reaches the store). */
  premark(byteOffset: number, byteLength: number): void {
    if (byteLength > 0) this.bitmaps[this.activeIndex].markBytes(byteOffset, byteLength);
  }

  /** Marks a range (a track sent but never confirmed, or the peer's dirty ranges). */
  mark(byteOffset: number, byteLength: number): void {
    if (byteLength > 0) this.bitmaps[this.activeIndex].markBytes(byteOffset, byteLength);
  }

  /** Makes the sealed bitmap the active one (after clearing it); returns the new active index. */
  rotate(): 0 | 1 {
    const next: 0 | 1 = this.activeIndex === 0 ? 1 : 0;
    this.bitmaps[next].clearAll();
    this.volume.setBitmapRecording(this.names[next], true);
    this.volume.setBitmapRecording(this.names[this.activeIndex], false);
    this.activeIndex = next;
    return next;
  }

  clearAll(): void {
    this.bitmaps[0].clearAll();
    this.bitmaps[1].clearAll();
  }

  /**
   * A resync pass starts: merges the active bitmap into the sealed one and clears the active
   * one (which keeps recording). Returns the sealed bitmap: the tracks the pass sends.
   */
  sealForPass(): Bitmap {
    const active = this.bitmaps[this.activeIndex];
    const sealed = this.bitmaps[this.activeIndex === 0 ? 1 : 0];
    sealed.orMerge(active);
    active.clearAll();
    return sealed;
  }

  /** The secondary confirmed a whole pass: the sealed tracks are there. */
  clearSealed(): void {
    this.bitmaps[this.activeIndex === 0 ? 1 : 0].clearAll();
  }

  /** The union, in a scratch bitmap (valid until the next call). */
  union(): Bitmap {
    const [a, b] = this.bitmaps;
    this.scratch ??= Bitmap.create({ granularityBytes: a.granularityBytes, bitCount: a.bitCount });
    this.scratch.copyFrom(a);
    this.scratch.orMerge(b);
    return this.scratch;
  }

  /** Tracks set in the union. */
  count(): number {
    return this.union().count();
  }

  /** The union as byte ranges (at most `limit`; null when there are more). */
  ranges(limit: number): ByteRange[] | null {
    const union = this.union();
    const granularity = union.granularityBytes;
    const capacity = this.volume.capacityBytes;
    const ranges: ByteRange[] = [];
    let bit = union.findNextSet(0);
    while (bit >= 0) {
      const end = union.findNextClear(bit);
      const last = end < 0 ? union.bitCount : end;
      if (ranges.length === limit) return null;
      const byteOffset = bit * granularity;
      ranges.push({ byteOffset, byteLength: Math.min(last * granularity, capacity) - byteOffset });
      if (end < 0) break;
      bit = union.findNextSet(end);
    }
    return ranges;
  }

  /** Deletes both bitmaps (pair delete). */
  delete(): void {
    this.close();
    for (const name of this.names) {
      if (this.volume.listBitmaps().some((bitmap) => bitmap.name === name)) this.volume.deleteBitmap(name);
    }
  }

  close(): void {
    for (const bitmap of this.bitmaps) if (!bitmap.closed) bitmap.close();
    if (this.scratch !== undefined && !this.scratch.closed) this.scratch.close();
  }
}
