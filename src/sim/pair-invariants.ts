// Notes on the design
// -------------------
// The invariant checker of the pair simulation (pair-schedule.ts): a model of what hosts wrote,
// and small pure checks of volume images against it. Nothing here touches a controller; the
// schedule reads the volumes and hands the images in, so each check can be unit-tested with
// hand-made histories (test/unit/83.pair-invariants.test.ts), one case that passes and one
// that must fail.
//
// The model. Every block of a simulated volume holds either zeros (value 0) or the pattern of
// exactly one host write (value = the write's id, >= 1; see blockPattern). A write, zero or trim
// gives each block of its range one value. A *lineage* is the history of one primary: the image
// it started from (`base`, one value per block: the volume as it was when that controller
// became the primary) and every write issued on it since, in issue order (a primary's volume
// takes writes synchronously, so issue order is the order they reached its store). Position p of
// a lineage is the image after its first p writes: position 0 is `base`, position N (all the
// writes) is what the primary must hold now.
//
// The checks (each returns violation sentences; none = it holds):
//   - checkPrimaryModel: the primary holds position N (a self-check of the model: if it fails,
//     either the model or the primary's own store is wrong).
//   - checkAcknowledgedPresent (sync, after a takeover): for every block, the new primary holds
//     the value of the latest acknowledged write to it, or of a later issued write, never an
//     older one (nor a value the lineage never wrote there).
//   - checkWriteOrderPrefix (an async secondary that says it is consistent and mirroring): there
//     is one position p, common to all blocks, whose image the secondary holds. Per block, the
//     positions whose value matches form a set of intervals; the check intersects them.
//   - checkIdentical: two images byte for byte (after healing and quiescence).
//   - checkTransientBound: a pair side in copying or resyncing longer than a bound, counted from
//     when its link was last up and unfaulted.
//
// Costs: per-block change lists are kept as writes are appended, so a prefix check costs the
// number of (write, block) changes, not writes x blocks.

/** One write, zero or trim as the model sees it. */
export interface HistoryWrite {
  /** The write's id (>= 1); its blocks hold `value`. */
  id: number;
  firstBlock: number;
  blockCount: number;
  /** The id for a write, 0 for a zero or trim. */
  value: number;
  /** Acknowledged to the host as stored on the secondary (see pair-schedule.ts). */
  acknowledged: boolean;
  /** The virtual time it was issued. */
  issuedAtMs: number;
}

/** The history of one primary: the image it started from and the writes issued on it. */
export class Lineage {
  readonly writes: HistoryWrite[] = [];
  /** For each block, the indexes (into `writes`) of the writes that touched it, in order. */
  private readonly changes: number[][];

  constructor(readonly owner: string, readonly base: Int32Array) {
    this.changes = Array.from({ length: base.length }, () => []);
  }

  get blockCount(): number {
    return this.base.length;
  }

  /** Appends a write; returns it (the caller flips `acknowledged` when its ack point resolves). */
  append(write: HistoryWrite): HistoryWrite {
    if (write.firstBlock < 0 || write.blockCount < 1 || write.firstBlock + write.blockCount > this.base.length) {
      throw new RangeError(`write ${write.id}: blocks ${write.firstBlock}+${write.blockCount} outside 0..${this.base.length}`);
    }
    const index = this.writes.length;
    this.writes.push(write);
    for (let block = write.firstBlock; block < write.firstBlock + write.blockCount; block++) (this.changes[block] as number[]).push(index);
    return write;
  }

  /** The indexes of the writes that touched `block`, in issue order. */
  changesOf(block: number): readonly number[] {
    return this.changes[block] as number[];
  }

  /** The value of `block` at position `position` (after the first `position` writes). */
  valueAt(block: number, position: number): number {
    let value = this.base[block] as number;
    for (const index of this.changesOf(block)) {
      if (index >= position) break;
      value = (this.writes[index] as HistoryWrite).value;
    }
    return value;
  }

  /** The whole image at `position`. */
  imageAt(position: number): Int32Array {
    const image = new Int32Array(this.base.length);
    for (let block = 0; block < image.length; block++) image[block] = this.valueAt(block, position);
    return image;
  }
}

/** The 8 bytes repeated over a block written by write `id` (0: zeros). */
export function blockPattern(id: number, block: number): Buffer {
  const data = Buffer.alloc(8);
  if (id !== 0) {
    data.writeUInt32LE(id >>> 0, 0);
    data.writeUInt32LE((block ^ 0x5a5a0000) >>> 0, 4);
  }
  return data;
}

/** Fills `target` (a whole number of blocks starting at `firstBlock`) with write `id`'s pattern. */
export function fillBlocks(target: Buffer, id: number, firstBlock: number, blockBytes: number): void {
  for (let at = 0; at < target.length; at += blockBytes) target.fill(blockPattern(id, firstBlock + at / blockBytes), at, at + blockBytes);
}

/** Value that marks a block holding neither zeros nor one write's pattern. */
export const GARBAGE = -1;

/**
 * The value of every block of an image: 0 for zeros, a write id for its pattern, GARBAGE for
 * anything else. Every 8-byte word of the block is checked.
 */
export function decodeImage(image: Buffer, blockBytes: number): Int32Array {
  const blockCount = Math.floor(image.length / blockBytes);
  const values = new Int32Array(blockCount);
  // A block is blockPattern(id, block) repeated when its first 8 bytes are that pattern and it
  // equals itself shifted by 8 bytes (period 8): one native compare per block, no allocation.
  for (let block = 0; block < blockCount; block++) {
    const start = block * blockBytes;
    const id = image.readUInt32LE(start);
    const second = image.readUInt32LE(start + 4);
    const headMatches = second === (id === 0 ? 0 : (block ^ 0x5a5a0000) >>> 0);
    values[block] = headMatches && image.compare(image, start, start + blockBytes - 8, start + 8, start + blockBytes) === 0 ? id : GARBAGE;
  }
  return values;
}

function show(value: number): string {
  return value === 0 ? 'zeros' : value === GARBAGE ? 'garbage' : `write ${value}`;
}

/** At most `limit` sentences, with a count of the rest. */
function capped(violations: string[], limit = 8): string[] {
  return violations.length <= limit ? violations : [...violations.slice(0, limit), `... and ${violations.length - limit} more`];
}

/** The primary holds what its lineage says it wrote (position N). */
export function checkPrimaryModel(lineage: Lineage, image: Int32Array, what = `primary ${lineage.owner}`): string[] {
  const position = lineage.writes.length;
  const violations: string[] = [];
  for (let block = 0; block < lineage.blockCount; block++) {
    const expected = lineage.valueAt(block, position);
    if (image[block] !== expected) violations.push(`${what}: block ${block} holds ${show(image[block] as number)}, its history ends with ${show(expected)}`);
  }
  return capped(violations);
}

/**
 * Sync, after a takeover: every block of the new primary's image holds the value of the latest
 * acknowledged write of the old primary's lineage to that block, or of a write issued after it;
 * a block no acknowledged write touched holds its base value or any value written to it.
 */
export function checkAcknowledgedPresent(lineage: Lineage, image: Int32Array, what = 'new primary'): string[] {
  const violations: string[] = [];
  for (let block = 0; block < lineage.blockCount; block++) {
    const changes = lineage.changesOf(block);
    let lastAcknowledged = -1;
    for (let at = changes.length - 1; at >= 0; at--) {
      if ((lineage.writes[changes[at] as number] as HistoryWrite).acknowledged) {
        lastAcknowledged = at;
        break;
      }
    }
    const found = image[block] as number;
    const allowed = new Set<number>();
    if (lastAcknowledged < 0) allowed.add(lineage.base[block] as number);
    for (let at = Math.max(0, lastAcknowledged); at < changes.length; at++) allowed.add((lineage.writes[changes[at] as number] as HistoryWrite).value);
    if (!allowed.has(found)) {
      const acknowledged = lastAcknowledged < 0 ? undefined : lineage.writes[changes[lastAcknowledged] as number] as HistoryWrite;
      violations.push(`${what}: block ${block} holds ${show(found)}; ${acknowledged === undefined ? 'no acknowledged write touched it, and that value is not in its history'
        : `write ${acknowledged.id} (issued at ${acknowledged.issuedAtMs} ms) was acknowledged, so it must hold it or a later write`}`);
    }
  }
  return capped(violations);
}

/**
 * Lockstep: `done` for a call made when the history held `cutoff` writes means every one of them
 * is on the receiver: each block holds the value of the last write before the cutoff that
 * touched it (the base value if none did), or of any later write, never an older one.
 */
export function checkCoveredThrough(lineage: Lineage, image: Int32Array, cutoff: number, what = 'receiver'): string[] {
  const violations: string[] = [];
  for (let block = 0; block < lineage.blockCount; block++) {
    const changes = lineage.changesOf(block);
    let last = -1;
    for (let at = changes.length - 1; at >= 0; at--) {
      if ((changes[at] as number) < cutoff) {
        last = at;
        break;
      }
    }
    const allowed = new Set<number>();
    if (last < 0) allowed.add(lineage.base[block] as number);
    for (let at = Math.max(0, last); at < changes.length; at++) allowed.add((lineage.writes[changes[at] as number] as HistoryWrite).value);
    const found = image[block] as number;
    if (!allowed.has(found)) {
      const needed = last < 0 ? 'the image before any write' : `write ${(lineage.writes[changes[last] as number] as HistoryWrite).id} or a later one`;
      violations.push(`${what}: lockstep was done for the first ${cutoff} writes, but block ${block} holds ${show(found)}, not ${needed}`);
    }
  }
  return capped(violations);
}

type Interval = [number, number];

function intersect(left: readonly Interval[], right: readonly Interval[]): Interval[] {
  const result: Interval[] = [];
  let i = 0;
  let j = 0;
  while (i < left.length && j < right.length) {
    const [a0, a1] = left[i] as Interval;
    const [b0, b1] = right[j] as Interval;
    const low = Math.max(a0, b0);
    const high = Math.min(a1, b1);
    if (low <= high) result.push([low, high]);
    if (a1 < b1) i++;
    else j++;
  }
  return result;
}

/** The positions (intervals, inclusive) at which `block` holds `value`. */
function positionsHolding(lineage: Lineage, block: number, value: number): Interval[] {
  const changes = lineage.changesOf(block);
  const end = lineage.writes.length;
  const intervals: Interval[] = [];
  let from = 0;
  let current = lineage.base[block] as number;
  for (const index of changes) {
    // Positions from..index hold `current` (position index+1 is the first after the write).
    if (current === value) intervals.push([from, index]);
    from = index + 1;
    current = (lineage.writes[index] as HistoryWrite).value;
  }
  if (current === value) intervals.push([from, end]);
  return intervals;
}

/**
 * The positions of `lineage` whose image equals `image` (inclusive intervals); empty when the
 * image is no write-order prefix of the lineage.
 */
export function prefixPositions(lineage: Lineage, image: Int32Array): Interval[] {
  let candidates: Interval[] = [[0, lineage.writes.length]];
  for (let block = 0; block < lineage.blockCount && candidates.length > 0; block++) {
    candidates = intersect(candidates, positionsHolding(lineage, block, image[block] as number));
  }
  return candidates;
}

/**
 * A consistent secondary holds a write-order prefix of its primary's lineage: one position p
 * for all blocks. On failure the sentence names the blocks that rule the last candidates out.
 */
export function checkWriteOrderPrefix(lineage: Lineage, image: Int32Array, what = 'secondary'): string[] {
  let candidates: Interval[] = [[0, lineage.writes.length]];
  // The blocks that narrowed the candidates, worded only when the check fails (it runs after
  // every schedule step, and almost always holds).
  const seen: { block: number; holding: Interval[] }[] = [];
  for (let block = 0; block < lineage.blockCount; block++) {
    const holding = positionsHolding(lineage, block, image[block] as number);
    const next = intersect(candidates, holding);
    if (holding.length > 0 && next.length === candidates.length && next.every((interval, index) => interval[0] === candidates[index]?.[0] && interval[1] === candidates[index]?.[1])) {
      candidates = next;
      continue;
    }
    seen.push({ block, holding });
    if (next.length === 0) {
      const words = seen.slice(-4).map((entry) => `block ${entry.block} (${show(image[entry.block] as number)}: positions ${entry.holding.map(([low, high]) => `${low}..${high}`).join(',') || 'none'})`);
      return [`${what} says it is consistent, but its image is no write-order prefix of ${lineage.owner}'s history of ${lineage.writes.length} writes: ` +
        `${words.join('; ')}`];
    }
    candidates = next;
  }
  return [];
}

/** Two images are byte-identical; names the first differing blocks. */
export function checkIdentical(left: Buffer, right: Buffer, blockBytes: number, what = 'the two sides'): string[] {
  if (left.length !== right.length) return [`${what}: images of ${left.length} and ${right.length} bytes`];
  if (left.equals(right)) return [];
  const leftValues = decodeImage(left, blockBytes);
  const rightValues = decodeImage(right, blockBytes);
  const differing: string[] = [];
  for (let block = 0; block < leftValues.length; block++) {
    const start = block * blockBytes;
    if (left.compare(right, start, start + blockBytes, start, start + blockBytes) !== 0) {
      differing.push(`${block} (${show(leftValues[block] as number)} / ${show(rightValues[block] as number)})`);
    }
  }
  return [`${what} differ in ${differing.length} blocks: ${differing.slice(0, 8).join(', ')}${differing.length > 8 ? ', ...' : ''}`];
}

/** What checkTransientBound looks at, for one pair side at one instant. */
export interface TransientSample {
  /** e.g. 'pair p0 on b'. */
  what: string;
  state: string;
  /** When the side entered its state (virtual ms). */
  enteredAtMs: number;
  /** Since when the side's link has been up and free of faults (virtual ms); undefined while it is not. */
  linkCleanSinceMs: number | undefined;
}

/** The transient states (pair-state.ts TRANSIENT_STATES). */
const TRANSIENT = new Set(['copying', 'resyncing']);

/**
 * A side in copying or resyncing for longer than `boundMs`, counted from the later of its entry
 * into the state and the moment its link became up and unfaulted, is stuck.
 */
export function checkTransientBound(sample: TransientSample, nowMs: number, boundMs: number): string[] {
  if (!TRANSIENT.has(sample.state) || sample.linkCleanSinceMs === undefined) return [];
  const sinceMs = Math.max(sample.enteredAtMs, sample.linkCleanSinceMs);
  const forMs = nowMs - sinceMs;
  if (forMs <= boundMs) return [];
  return [`${sample.what} has been ${sample.state} for ${Math.round(forMs)} ms with its link up and unfaulted (entered at ${Math.round(sample.enteredAtMs)} ms; bound ${boundMs} ms)`];
}
