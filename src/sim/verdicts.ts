// The invariants a pair schedule checks (pair-schedule.ts, pair-invariants.ts), and how each
// violation sentence is claimed by one of them: what `blockmirror sim` prints per invariant,
// and what the shrinker (shrink.ts) keeps failing while it removes events.

/** The invariants a schedule checks, and how a violation names each. */
export const SIM_INVARIANTS: readonly { name: string; description: string; matches: (violation: string) => boolean }[] = Object.freeze([
  { name: 'sync-no-acknowledged-loss', description: 'no write a sync pair acknowledged is missing after a takeover',
    matches: (text: string) => text.includes('takeover') },
  { name: 'consistent-is-prefix', description: 'an async secondary that says it is consistent is a write-order prefix of the primary\'s history',
    matches: (text: string) => text.includes('write-order prefix') },
  { name: 'identical-after-quiescence', description: 'after healing and quiescence every pair mirrors and both sides are identical',
    matches: (text: string) => text.includes('quiescence') || text.includes('quiesced') || text.includes('differ') },
  { name: 'transient-bound', description: 'no pair stays copying or resyncing past its bound with its link up',
    matches: (text: string) => text.includes('with its link up and unfaulted') },
  { name: 'lockstep-done-covers', description: 'a lockstep call that answers done has every write issued before it on every receiver',
    matches: (text: string) => text.includes('lockstep was done') },
  { name: 'primary-model', description: 'the primary holds what its host wrote (the model agrees)',
    matches: (text: string) => text.includes('its history ends with') || text.includes('lineage') },
]);

/** One invariant's verdict over a run. */
export interface SimVerdict {
  name: string;
  pass: boolean;
  violations: string[];
}

/** The verdict per invariant of one run (a violation no invariant claims counts as 'other'). */
export function verdicts(result: { readonly violations: readonly string[] }): SimVerdict[] {
  const claimed = new Set<string>();
  const list = SIM_INVARIANTS.map((invariant) => {
    const violations = result.violations.filter((text) => invariant.matches(text));
    for (const text of violations) claimed.add(text);
    return { name: invariant.name, pass: violations.length === 0, violations };
  });
  const other = result.violations.filter((text) => !claimed.has(text));
  if (other.length > 0) list.push({ name: 'other', pass: false, violations: other });
  return list;
}

/** The names of the invariants a run failed, in SIM_INVARIANTS order ('other' last). */
export function failedInvariants(result: { readonly violations: readonly string[] }): string[] {
  return verdicts(result).filter((verdict) => !verdict.pass).map((verdict) => verdict.name);
}

/** The invariant of a run's first violation (what a shrink keeps failing), or undefined. */
export function firstFailedInvariant(result: { readonly violations: readonly string[] }): string | undefined {
  const first = result.violations[0];
  if (first === undefined) return undefined;
  return SIM_INVARIANTS.find((invariant) => invariant.matches(first))?.name ?? 'other';
}
