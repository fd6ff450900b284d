// The kinds of pair schedule CI runs, each a function of its seed alone (so a seed replays with
// nothing more to say than its kind):
//   - short: 3 steps on 8-block volumes with a 64 KiB journal: cheap (a few ms, most of it
//     starting and closing the controllers), so a CI run affords a hundred thousand of them;
//     each still draws writes, faults, crashes and role operations and ends with healing,
//     quiescence and the final checks;
//   - standard: 20 steps on 64 blocks (what test/scenario/83 ran 1,000 of);
//   - long: 400 steps on 64 blocks: storms that build up lag, journal-full suspensions,
//     repeated takeovers and resyncs, which few steps never reach.

import type { PairScheduleOptions } from './pair-schedule';

/** A kind of schedule. */
export type ScheduleKind = 'short' | 'standard' | 'long';

/** The kinds, for option checks. */
export const SCHEDULE_KINDS: readonly ScheduleKind[] = Object.freeze(['short', 'standard', 'long']);

/** Steps of each kind. */
export const KIND_STEPS: Readonly<Record<ScheduleKind, number>> = Object.freeze({ short: 3, standard: 20, long: 400 });

/** Everything a schedule of `kind` is, from its seed. */
export function scheduleOptionsFor(kind: ScheduleKind, seed: number): PairScheduleOptions {
  const mode = seed % 2 === 1 ? 'sync' : 'async';
  switch (kind) {
    case 'short':
      return { seed, mode, fanOut: seed % 7 === 0, steps: KIND_STEPS.short, blockCount: 8, journalCapacityBytes: 64 * 1024 };
    case 'standard':
      return { seed, mode, fanOut: seed % 5 === 0, steps: KIND_STEPS.standard, blockCount: 64 };
    case 'long':
      return { seed, mode, fanOut: seed % 5 === 0, steps: KIND_STEPS.long, blockCount: 64 };
    default:
      throw new RangeError(`kind must be one of ${SCHEDULE_KINDS.join(', ')}, got ${JSON.stringify(kind)}`);
  }
}
