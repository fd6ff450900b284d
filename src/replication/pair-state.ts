// Notes on the design
// -------------------
// The state of a pair, as both sides show it, and the one table its setter checks:
//
//   simplex --open--> copying --pass done--> mirroring <--> suspended(reason) --> resyncing --> mirroring
//   simplex --open--> resyncing        (a restarted or promoted side whose peer holds its generation)
//   simplex, suspended --open--> mirroring
//                                      (resumed from the primary's kept journal: no pass)
//   (any of copying, mirroring, resyncing) --> suspended      (link down, journal full, operator,
//                                                              secondary error)
//   (any state) --> split-brain   (the generation ids say both sides changed: found on connect,
//                                 also by a primary in a pass whose secondary was taken over
//                                 with --force meanwhile; left only by `resolve`: copying/resyncing)
//
// The secondary's image is stated, not implied: 'consistent' while it is a write-order prefix of
// the primary (mirroring), 'inconsistent' while a copy or resync pass runs (tracks arrive in
// address order, not write order), 'outdated' when a consistent image stopped advancing
// (suspended after mirroring).

import { BlockmirrorError, type PairErrorCode } from '../errors';

export type PairState = 'simplex' | 'copying' | 'mirroring' | 'suspended' | 'resyncing' | 'split-brain';
export type PairRole = 'primary' | 'secondary';
export type SuspendReason = 'link-down' | 'journal-full' | 'operator' | 'secondary-error';
export type Consistency = 'consistent' | 'inconsistent' | 'outdated';

export const PAIR_TRANSITIONS: Readonly<Record<PairState, readonly PairState[]>> = Object.freeze({
  simplex: ['copying', 'resyncing', 'mirroring', 'suspended', 'split-brain'],
  copying: ['mirroring', 'suspended', 'split-brain'],
  mirroring: ['suspended', 'split-brain'],
  suspended: ['copying', 'resyncing', 'mirroring', 'split-brain'],
  resyncing: ['mirroring', 'suspended', 'split-brain'],
  'split-brain': ['copying', 'resyncing'],
});

/** True when `from -> to` is in the table. */
export function isPairTransition(from: PairState, to: PairState): boolean {
  return PAIR_TRANSITIONS[from].includes(to);
}

/** How long a transient state may go without progress before the stuck detector reports it. */
export const TRANSIENT_STATES: readonly PairState[] = ['copying', 'resyncing'];

/** A pair's operating error. */
export class PairError extends BlockmirrorError {
  declare readonly code: PairErrorCode;
  constructor(code: PairErrorCode, message: string) {
    super(code, message);
    this.name = 'PairError';
  }
}
