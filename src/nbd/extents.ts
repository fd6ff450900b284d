// Block status and hole extents for the NBD server, as pure functions over what a volume
// reports (its allocation map, its bitmaps), so they can be tested without a volume.
//
// Invariants of every list these functions return: extents are consecutive from the requested
// offset, each has a nonzero length, neighbours have different flags, the sum never exceeds the
// requested length, and at most `maxExtents` are returned (the spec lets a server describe less
// than asked; the client asks again from where the reply stopped). When `granularityBytes` > 1
// (a strict volume's minimum block size) every boundary except the request's end is a multiple
// of it: a block that mixes states takes the state that is safe to report (allocated rather than
// hole, dirty rather than clean).

import { BLOCKMIRROR_STATE_DIRTY, NBD_STATE_HOLE, NBD_STATE_ZERO, type BlockStatusExtent } from './protocol';

/** An extent with its absolute offset (what alignment works on). */
export interface PlacedExtent {
  byteOffset: number;
  byteLength: number;
  flags: number;
}

/** How flags of a block that mixes states are combined. */
export type CombineFlags = (a: number, b: number) => number;

/** base:allocation: a block is a hole (and zero) only if all of it is. */
export const combineAllocation: CombineFlags = (a, b) => a & b;
/** blockmirror:dirty: a block is dirty if any of it is. */
export const combineDirty: CombineFlags = (a, b) => a | b;

/** Default cap on descriptors in one BLOCK_STATUS chunk. */
export const DEFAULT_MAX_EXTENTS = 1024;

/** Merges neighbours with equal flags and drops empty extents. */
export function mergeExtents(extents: readonly PlacedExtent[]): PlacedExtent[] {
  const merged: PlacedExtent[] = [];
  for (const extent of extents) {
    if (extent.byteLength <= 0) continue;
    const last = merged[merged.length - 1];
    if (last !== undefined && last.flags === extent.flags && last.byteOffset + last.byteLength === extent.byteOffset) {
      last.byteLength += extent.byteLength;
    } else {
      merged.push({ byteOffset: extent.byteOffset, byteLength: extent.byteLength, flags: extent.flags });
    }
  }
  return merged;
}

/**
 * Makes every inner boundary a multiple of `granularityBytes`. `extents` must be consecutive and
 * cover [byteOffset, byteOffset + byteLength); byteOffset must be a multiple of granularity.
 */
export function alignExtents(
  extents: readonly PlacedExtent[],
  byteOffset: number,
  byteLength: number,
  granularityBytes: number,
  combine: CombineFlags,
  fillFlags = 0,
): PlacedExtent[] {
  const end = byteOffset + byteLength;
  if (granularityBytes <= 1) return mergeExtents(extents);
  const out: PlacedExtent[] = [];
  let cursor = byteOffset;
  let index = 0;
  while (cursor < end) {
    while (index < extents.length && extentEnd(extents[index] as PlacedExtent) <= cursor) index += 1;
    const extent = extents[index];
    if (extent === undefined) {
      // Not covered (the caller's list was short): report the context's safe default.
      out.push({ byteOffset: cursor, byteLength: end - cursor, flags: fillFlags });
      break;
    }
    const stop = Math.min(extentEnd(extent), end);
    if (stop === end || stop % granularityBytes === 0) {
      out.push({ byteOffset: cursor, byteLength: stop - cursor, flags: extent.flags });
      cursor = stop;
      continue;
    }
    const blockStart = stop - (stop % granularityBytes);
    if (blockStart > cursor) out.push({ byteOffset: cursor, byteLength: blockStart - cursor, flags: extent.flags });
    const blockEnd = Math.min(blockStart + granularityBytes, end);
    let flags = extent.flags;
    for (let j = index + 1; j < extents.length; j++) {
      const other = extents[j] as PlacedExtent;
      if (other.byteOffset >= blockEnd) break;
      flags = combine(flags, other.flags);
    }
    out.push({ byteOffset: blockStart, byteLength: blockEnd - blockStart, flags });
    cursor = blockEnd;
  }
  return mergeExtents(out);
}

function extentEnd(extent: PlacedExtent): number {
  return extent.byteOffset + extent.byteLength;
}

/** What the allocation map of a volume looks like (volume.allocationMap). */
export interface AllocationExtent {
  byteOffset: number;
  byteLength: number;
  allocated: boolean;
}

/**
 * base:allocation extents for [byteOffset, byteOffset + byteLength) from a volume's allocation
 * map: holes read as zero in a memory store, so they report HOLE | ZERO; allocated data reports
 * 0. Parts the map does not cover report 0 (the spec's always-safe status).
 */
export function allocationExtents(
  map: readonly AllocationExtent[],
  byteOffset: number,
  byteLength: number,
  granularityBytes: number,
): PlacedExtent[] {
  const end = byteOffset + byteLength;
  const placed: PlacedExtent[] = [];
  let cursor = byteOffset;
  const sorted = [...map].sort((a, b) => a.byteOffset - b.byteOffset);
  for (const entry of sorted) {
    const start = Math.max(entry.byteOffset, cursor);
    const stop = Math.min(entry.byteOffset + entry.byteLength, end);
    if (stop <= start) continue;
    if (start > cursor) placed.push({ byteOffset: cursor, byteLength: start - cursor, flags: 0 });
    placed.push({ byteOffset: start, byteLength: stop - start, flags: entry.allocated ? 0 : NBD_STATE_HOLE | NBD_STATE_ZERO });
    cursor = stop;
    if (cursor >= end) break;
  }
  if (cursor < end) placed.push({ byteOffset: cursor, byteLength: end - cursor, flags: 0 });
  return alignExtents(placed, byteOffset, byteLength, granularityBytes, combineAllocation);
}

/** What a bitmap looks like (src/storage Bitmap). */
export interface BitmapView {
  granularityBytes: number;
  bitCount: number;
  test(bitIndex: number): boolean;
  findNextSet(fromBitIndex: number): number;
  findNextClear(fromBitIndex: number): number;
}

/**
 * blockmirror:dirty extents: a track whose bit is set is dirty (BLOCKMIRROR_STATE_DIRTY). Bytes
 * beyond the bitmap's last track are reported dirty: a bitmap that does not cover a range cannot
 * vouch that it is unchanged, and dirty is the state a backup tool can act on safely. Stops after
 * `maxExtents` runs (so a fragmented bitmap costs a bounded amount per request).
 */
export function dirtyExtents(
  bitmap: BitmapView,
  byteOffset: number,
  byteLength: number,
  granularityBytes: number,
  maxExtents: number = DEFAULT_MAX_EXTENTS,
): PlacedExtent[] {
  const end = byteOffset + byteLength;
  const track = bitmap.granularityBytes;
  const bitCount = bitmap.bitCount;
  const placed: PlacedExtent[] = [];
  let cursor = byteOffset;
  // One spare run so that alignment/merging still leaves maxExtents of real information.
  while (cursor < end && placed.length <= maxExtents) {
    const bit = Math.floor(cursor / track);
    if (bit >= bitCount) {
      placed.push({ byteOffset: cursor, byteLength: end - cursor, flags: BLOCKMIRROR_STATE_DIRTY });
      break;
    }
    const dirty = bitmap.test(bit);
    let nextBit = dirty ? bitmap.findNextClear(bit + 1) : bitmap.findNextSet(bit + 1);
    if (nextBit < 0 || nextBit > bitCount) nextBit = dirty ? bitCount : -1;
    const stop = nextBit < 0 ? end : Math.min(end, nextBit * track);
    placed.push({ byteOffset: cursor, byteLength: stop - cursor, flags: dirty ? BLOCKMIRROR_STATE_DIRTY : 0 });
    cursor = stop;
  }
  let covered = cursor - byteOffset;
  if (covered < byteLength && granularityBytes > 1 && covered % granularityBytes !== 0) {
    // Stopped early inside a block: finish that block (as dirty, the safe state).
    covered = Math.min(byteLength, covered - (covered % granularityBytes) + granularityBytes);
  }
  return alignExtents(placed, byteOffset, covered, granularityBytes, combineDirty, BLOCKMIRROR_STATE_DIRTY);
}

/**
 * The descriptors to send: at most maxExtents, or exactly one when the client asked REQ_ONE.
 * The list is never empty (an empty input yields one extent of status 0 for the whole range).
 */
export function toDescriptors(
  extents: readonly PlacedExtent[],
  byteLength: number,
  requestOne: boolean,
  maxExtents: number = DEFAULT_MAX_EXTENTS,
): BlockStatusExtent[] {
  const limit = requestOne ? 1 : Math.max(1, maxExtents);
  const out: BlockStatusExtent[] = [];
  for (const extent of extents) {
    if (out.length >= limit) break;
    if (extent.byteLength > 0) out.push({ byteLength: extent.byteLength, flags: extent.flags });
  }
  if (out.length === 0) out.push({ byteLength, flags: 0 });
  return out;
}
