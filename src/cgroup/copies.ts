// Notes on the design
// -------------------
// The consistent copies on a secondary controller: one snapshot `cg.<group>.<cycle>` of a
// secondary volume per cycle, taken when PAIR_CG_CUT arrives (this side then stands exactly at
// the cut: the records through it are applied, none after it).
//
// Which copies are kept. A cycle is consistent across the group when every member's copy of it
// exists: each was taken at a cut made while every slave held its write completions, so a write
// acknowledged after some cut completed only after every cut was taken (the dependent-write
// rule). `group recover` therefore picks the newest cycle every member holds (recover.ts). The
// pruning keeps that choice alive: a secondary deletes a copy only when it is older than the
// newest copy it holds of a cycle the master formed (a formed cycle had a copy on every member
// when it formed, and each member keeps it until it learns of a newer formed one), and deletes
// the unformed copies between that one and the newest. The master says which cycle it formed
// last in every cut (`formed`); when it does not know (0, a master that lost its state) nothing
// is deleted but the oldest copies past MAX_UNPRUNED (never the newest one this side knows
// formed), so a new group whose first cycles keep failing cannot fill the snapshot slots. So in
// the steady state a member holds two copies: the last formed one and the newest.

import type { Relationship } from './types';
import { CgroupError, copyName, cycleOfCopy } from './types';

/** Most copies of one group kept on a volume while the master does not know its last formed cycle. */
export const MAX_UNPRUNED = 8;

/** The snapshot operations the copies need (a controller's snapshots). */
export interface CopySnapshots {
  create(volume: string, name: string): void;
  delete(volume: string, name: string): void;
  names(volume: string): string[];
}

/** A copy held here, as status and recover see it. */
export interface HeldCopies {
  group: string;
  volume: string;
  /** Cycles held, oldest first. */
  cycles: number[];
  /** The newest cycle this side knows the master formed (0: none known). */
  formedKnown: number;
  /** The cycle `group recover` chose here: never pruned (null: none). */
  pinned: number | null;
}

/** The secondary side of every consistency group whose pairs end on this controller. */
export class SecondaryCopies {
  /** The newest formed cycle each group's master told this side of. */
  private readonly formedKnown = new Map<string, number>();
  /** Per group, the cycle `recover` chose: kept whatever later cuts say. */
  private readonly pinned = new Map<string, number>();

  /** Keeps cycle `cycle` of `group` from pruning (recover chose it); replaces an older pin. */
  pin(group: string, cycle: number): void {
    this.pinned.set(group, cycle);
  }
  copiesTaken = 0;
  copiesDeleted = 0;
  copiesFailed = 0;

  constructor(private readonly snapshots: CopySnapshots, private readonly volumes: () => Iterable<string>) {}

  /** The cycles of `group` held for `volume`, oldest first. */
  holdings(volume: string, group: string): number[] {
    const cycles: number[] = [];
    for (const name of this.snapshots.names(volume)) {
      const cycle = cycleOfCopy(group, name);
      if (cycle !== null) cycles.push(cycle);
    }
    return cycles.sort((a, b) => a - b);
  }

  /**
   * Takes cycle `cycle`'s copy of `volume` now, then prunes (see the note). Returns the copy's
   * name and what is held afterwards. Throws ERR_CGROUP_COPY when the snapshot cannot be taken.
   */
  take(volume: string, group: string, cycle: number, formed: number): { snapshot: string; holdings: number[] } {
    const name = copyName(group, cycle);
    const formedKnown = Math.max(this.formedKnown.get(group) ?? 0, formed);
    this.formedKnown.set(group, formedKnown);
    if (!this.snapshots.names(volume).includes(name)) {
      try {
        this.snapshots.create(volume, name);
      } catch (error) {
        this.copiesFailed++;
        // Room may be made by pruning first (copies of cycles that can no longer be chosen).
        this.prune(volume, group, formedKnown, cycle, formed);
        throw new CgroupError('ERR_CGROUP_COPY', `consistent copy ${name} of ${volume}: ${(error as Error).message}`);
      }
      this.copiesTaken++;
    }
    this.prune(volume, group, formedKnown, cycle, formed);
    return { snapshot: name, holdings: this.holdings(volume, group) };
  }

  /** Deletes copies no recover can choose any more (see the note). */
  private prune(volume: string, group: string, formedKnown: number, newest: number, cutFormed: number): void {
    const held = this.holdings(volume, group);
    if (cutFormed === 0) {
      // The master does not know its last formed cycle (it lost its state): a copy newer than
      // what this side knows formed may be the one every member holds, so none is deleted, up to
      // MAX_UNPRUNED copies; past that the oldest go, never the newest this side knows formed.
      const known = held.filter((cycle) => cycle <= formedKnown).at(-1);
      const spare = held.filter((cycle) => cycle !== known && cycle < newest);
      for (const cycle of spare.slice(0, Math.max(0, held.length - MAX_UNPRUNED))) this.remove(volume, group, cycle);
      return;
    }
    if (formedKnown === 0) return;
    let anchor = 0;
    for (const cycle of held) if (cycle <= formedKnown && cycle > anchor) anchor = cycle;
    if (anchor === 0) return;
    for (const cycle of held) {
      if (cycle === anchor || cycle >= newest) continue;
      this.remove(volume, group, cycle);
    }
  }

  private remove(volume: string, group: string, cycle: number): void {
    if (this.pinned.get(group) === cycle) return;
    try {
      this.snapshots.delete(volume, copyName(group, cycle));
      this.copiesDeleted++;
    } catch {
      // Gone already (an operator deleted it): nothing to prune.
    }
  }

  /** Every group's copies held on this controller. */
  held(): HeldCopies[] {
    const out: HeldCopies[] = [];
    for (const volume of this.volumes()) {
      const byGroup = new Map<string, number[]>();
      for (const name of this.snapshots.names(volume)) {
        const match = /^cg\.(.+)\.([1-9][0-9]{0,15})$/.exec(name);
        if (match === null) continue;
        const group = match[1] as string;
        const cycle = cycleOfCopy(group, name);
        if (cycle === null) continue;
        const list = byGroup.get(group) ?? [];
        list.push(cycle);
        byGroup.set(group, list);
      }
      for (const [group, cycles] of byGroup) {
        out.push({ group, volume, cycles: cycles.sort((a, b) => a - b), formedKnown: this.formedKnown.get(group) ?? 0, pinned: this.pinned.get(group) ?? null });
      }
    }
    return out;
  }
}

/** The relationship rows that name `controller`. */
export function rowsOf(rows: readonly Relationship[], controller: string): Relationship[] {
  return rows.filter((row) => row.controller === controller);
}
