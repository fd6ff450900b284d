// Notes on the design
// -------------------
// Recovering a consistency group (a takeover after the primaries are lost): the consistent
// image is the newest cycle whose copy every member's secondary holds (copies.ts says why such
// a cycle is consistent and why the pruning always leaves one once a cycle formed). Each
// secondary controller then either exports that copy (it is a snapshot: readable over NBD as
// <export>@cg.<group>.<cycle>) or makes it the volume's content: the pair is taken over (the
// volume becomes writable) and the snapshot restored onto it through the write path.

/** The newest cycle in every member's holdings, or null when there is none. */
export function newestCommonCycle(members: readonly { holdings: readonly number[] }[]): number | null {
  if (members.length === 0) return null;
  let common: Set<number> | undefined;
  for (const member of members) {
    const held = new Set(member.holdings);
    common = common === undefined ? held : new Set([...common].filter((cycle) => held.has(cycle)));
    if (common.size === 0) return null;
  }
  let newest: number | null = null;
  for (const cycle of common ?? []) if (newest === null || cycle > newest) newest = cycle;
  return newest;
}
