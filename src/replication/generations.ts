// Notes on the design
// -------------------
// Generation ids, after DRBD's data-generation UUIDs. Each side of a pair keeps, with its volume:
//
//   current   the id of the data generation its image belongs to (0: the image holds no
//             generation yet: a new volume that never completed a copy);
//   bitmap    the generation its out-of-sync tracking started from (0: it tracks nothing); a
//             primary that stops mirroring starts a new generation at its next write and keeps
//             the old one here, so "my bitmap generation" = "the last generation the peer and I
//             shared; my bitmap has every change since";
//   history   the two generations before that.
//
// On every connect both sides compare their ids with decide(), a pure function, and get one
// decision, from their own point of view. The rules, in the order they are tried (the row numbers
// are the ones status and the tests use):
//
//   1  both currents 0                      nothing to do: no data on either side
//   2  my current 0, the peer's not         full-target: I am new, copy everything to me
//   3  the peer's current 0, mine not       full-source
//   4  currents equal                       none: the same generation (a primary's tracked
//                                           tracks are still resynced: its in-flight window)
//   5  the peer's bitmap = my current       bitmap-target: the peer moved on from my generation
//                                           and its bitmap holds every change since
//   6  my bitmap = the peer's current       bitmap-source
//  12  my bitmap is 0 and the peer's bitmap = my history[0]
//                                          bitmap-target: a resync to me finished but the peer
//                                          never heard (its answer was lost), and it moved on
//  13  the mirror image of 12               bitmap-source
//      (12 and 13 are tried right after 6; they were added after the others were numbered)
//   7  both bitmaps equal and not 0         split-brain: both moved on from the same generation
//   8  the peer's history has my current    full-target: I am older than the peer's bitmap covers
//   9  my history has the peer's current    full-source
//  10  any older generation in common       split-brain: diverged before either bitmap began
//  11  nothing in common                    unrelated: refused, nothing is touched
//
// A side told to discard its data (`resolve --keep` chose the other side) turns a split brain
// into its own bitmap-target (row 7) or full-target (row 10); the kept side sees the mirror
// image (bitmap-source, full-source). Rows 5 and 6 with row 7's discard are DRBD's
// "discard-my-data" handshake.
//
// When a resync ends, the target adopts the source's current generation and clears its bitmap
// generation; the source moves its bitmap generation into its history (completeAsSource /
// completeAsTarget). A takeover starts a new generation on the new primary (startGeneration).

import type { Random } from '../runtime/random';

/** A side's generation ids. */
export interface Generations {
  current: number;
  bitmap: number;
  history: readonly [number, number];
}

export type Decision =
  | 'none'
  | 'bitmap-source'
  | 'bitmap-target'
  | 'full-source'
  | 'full-target'
  | 'split-brain'
  | 'unrelated';

/** The outcome of a comparison, from the local side's point of view. */
export interface DecisionResult {
  decision: Decision;
  /** The row of the table above. */
  rule: number;
  /** One line for logs and status. */
  text: string;
}

export const EMPTY_GENERATIONS: Generations = Object.freeze({ current: 0, bitmap: 0, history: Object.freeze([0, 0]) as readonly [number, number] });

/** A fresh generation id: 52 random bits, never 0. */
export function newGenerationId(random: Random): number {
  for (;;) {
    const id = random.int(2 ** 26) * 2 ** 26 + random.int(2 ** 26);
    if (id !== 0) return id;
  }
}

/** The id shown in status and logs (16 hex digits). */
export function formatGeneration(id: number): string {
  return id.toString(16).padStart(16, '0');
}

function result(decision: Decision, rule: number, text: string): DecisionResult {
  return { decision, rule, text };
}

/**
 * Compares the local side's generations with the peer's. `discardLocal` / `discardPeer`: an
 * operator chose the other side in a split brain (`resolve --keep`).
 */
export function decide(local: Generations, peer: Generations, flags: { discardLocal?: boolean; discardPeer?: boolean } = {}): DecisionResult {
  const mine = local.current;
  const theirs = peer.current;
  if (mine === 0 && theirs === 0) return result('none', 1, 'both sides are new: no data to copy');
  if (mine === 0) return result('full-target', 2, 'this side holds no generation: full copy from the peer');
  if (theirs === 0) return result('full-source', 3, 'the peer holds no generation: full copy to it');
  if (mine === theirs) return result('none', 4, 'same generation on both sides');
  if (peer.bitmap === mine) return result('bitmap-target', 5, "the peer moved on from this side's generation: resync its changes here");
  if (local.bitmap === theirs) return result('bitmap-source', 6, "this side moved on from the peer's generation: resync its changes there");
  // A resync finished on its target, but the source never heard (the answer was lost with the
  // link) and has moved on since: the target adopted a generation whose own bitmap generation,
  // still the source's, is the target's history[0]. The source's bitmap covers all it needs.
  // Only while the target has not changed since (its bitmap is 0): else it is a split brain.
  if (local.bitmap === 0 && peer.bitmap !== 0 && peer.bitmap === local.history[0]) {
    return result('bitmap-target', 12, "a resync to this side finished but the peer never heard: resync its changes here");
  }
  if (peer.bitmap === 0 && local.bitmap !== 0 && local.bitmap === peer.history[0]) {
    return result('bitmap-source', 13, "a resync to the peer finished but this side never heard: resync its changes there");
  }
  if (local.bitmap !== 0 && local.bitmap === peer.bitmap) {
    if (flags.discardLocal === true) return result('bitmap-target', 7, "split brain resolved: this side's changes are discarded");
    if (flags.discardPeer === true) return result('bitmap-source', 7, "split brain resolved: the peer's changes are discarded");
    return result('split-brain', 7, 'both sides changed since their common generation');
  }
  if (peer.history.includes(mine)) return result('full-target', 8, "this side's generation is older than the peer's bitmap covers: full copy");
  if (local.history.includes(theirs)) return result('full-source', 9, "the peer's generation is older than this side's bitmap covers: full copy");
  const older = new Set([local.bitmap, ...local.history].filter((id) => id !== 0));
  if ([peer.bitmap, ...peer.history].some((id) => id !== 0 && older.has(id))) {
    if (flags.discardLocal === true) return result('full-target', 10, "split brain resolved: this side's data is replaced");
    if (flags.discardPeer === true) return result('full-source', 10, "split brain resolved: the peer's data is replaced");
    return result('split-brain', 10, 'both sides changed since a generation older than either bitmap');
  }
  // No common generation (unrelated volumes, or sides whose split brains went on so long that
  // their histories no longer meet): refused, unless an operator chose a side with `resolve`.
  if (flags.discardLocal === true) return result('full-target', 14, "no common generation, and this side's data is discarded: full copy from the peer");
  if (flags.discardPeer === true) return result('full-source', 14, "no common generation, and the peer's data is discarded: full copy to it");
  return result('unrelated', 11, 'the two volumes share no generation: unrelated data');
}

/** A new data generation on this side (a takeover, or a primary's first write while not mirroring). */
export function startGeneration(generations: Generations, random: Random): Generations {
  // The generation the peer still has stays the bitmap generation: the bitmap already holds
  // every change since it. A side that tracked nothing starts tracking from its current one.
  const bitmap = generations.bitmap !== 0 ? generations.bitmap : generations.current;
  return { current: newGenerationId(random), bitmap, history: [generations.history[0], generations.history[1]] };
}

/** The source's ids when a resync or copy completed: its bitmap generation goes to history. */
export function completeAsSource(generations: Generations): Generations {
  if (generations.bitmap === 0) return generations;
  return { current: generations.current, bitmap: 0, history: [generations.bitmap, generations.history[0]] };
}

/** The target's ids when a resync or copy from a source with `source` ids completed. */
export function completeAsTarget(generations: Generations, source: Generations): Generations {
  const history: [number, number] = generations.current !== 0 && generations.current !== source.current
    ? [generations.current, generations.history[0]]
    : [generations.history[0], generations.history[1]];
  return { current: source.current, bitmap: 0, history };
}

/** Generation ids as status shows them (hex). */
export function formatGenerations(generations: Generations): Record<string, unknown> {
  return {
    current: formatGeneration(generations.current),
    bitmap: formatGeneration(generations.bitmap),
    history: generations.history.map(formatGeneration),
  };
}
