// The shape of one declared pair on a controller (pairs.ts), shared with the modules that act
// on sides for the manager (group-roles.ts).

import type { Volume } from '../storage/volume';
import type { Link } from '../transport/link';
import type { PairMeta } from './pair-meta';
import type { PairSpec } from './pair-spec';
import type { PrimaryPair } from './primary-pair';
import type { ImageKeeper, SecondaryPair } from './secondary-pair';
import type { Tracking } from './tracking';

/** One declared pair on a controller: its persisted metadata and tracking, and its role's object. */
export interface Side {
  spec: PairSpec;
  /** The last consistent image while the side resyncs as a secondary (or was just demoted). */
  images?: ImageKeeper;
  volume: Volume;
  link: Link;
  meta: PairMeta;
  tracking: Tracking;
  primary?: PrimaryPair;
  secondary?: SecondaryPair;
  /** An operator's resolve on this side is under way (its peer must not promote this side meanwhile). */
  resolving?: boolean;
}
