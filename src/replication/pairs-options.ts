// Notes on the design
// -------------------
// What a PairManager (pairs.ts) is made with and what it hands out, apart from the class: its
// options (PairManagerOptions, with every default), the two hooks the controller lends it
// (PairSnapshots for a resyncing secondary's last consistent image, PairCopies for a
// consistency group's cut), the deliberate bugs of the mutation check (PairMutation), the
// PairRoleEvent a role change emits, and the manager's retry interval.
//
// Invariants: a PairMutation is set only by the invariant checkers' mutation check (the
// simulator and its tests), never by a serve's config; a PairRoleEvent's `writable` says
// whether hosts may write the volume's export from the instant of the change on.
// ASK_WHO_KEEPS_RETRY_MS is for pairs.ts only (it does not re-export it). No state lives here.

import type { Clock } from '../runtime/clock';
import type { Random } from '../runtime/random';
import type { Volume } from '../storage/volume';
import type { Link, LinkLogger } from '../transport/link';
import type { PairRole } from './pair-state';
import type { PairSpec } from './pair-spec';
import type { ReplicatedVolumeOptions } from './replicated-volume';

/** Options of a PairManager. */
export interface PairManagerOptions {
  controllerId: string;
  pairs: PairSpec[];
  volume: (name: string) => Volume | undefined;
  link: (peerId: string) => Link;
  /** Every link of the controller: each answers pair messages, even for pairs it has none of. */
  links: () => Iterable<Link>;
  clock: Clock;
  logger: LinkLogger;
  /** New generation ids. @default realRandom */
  random?: Random;
  journal?: ReplicatedVolumeOptions;
  /** How long a failback waits for the secondary to catch up. @default 30000 */
  handoverTimeoutMs?: number;
  /** See PairMutation. @default none */
  mutation?: PairMutation;
  /**
   * Snapshots of a volume, for the last consistent image of a resyncing secondary
   * (secondary-pair.ts ImageKeeper). @default none: a resyncing secondary keeps no image
   */
  snapshots?: PairSnapshots;
  /**
   * The consistency groups' copies on this controller as a secondary (src/cgroup/copies.ts):
   * PAIR_CG_CUT takes one. @default none: cuts are refused
   */
  copies?: PairCopies;
}

/** What PAIR_CG_CUT needs of the controller (src/cgroup/copies.ts SecondaryCopies). */
export interface PairCopies {
  take(volume: string, group: string, cycle: number, formed: number): { snapshot: string; holdings: number[] };
}

/** What a controller's snapshots give the pairs. */
export interface PairSnapshots {
  create(volume: string, name: string): void;
  delete(volume: string, name: string): void;
  has(volume: string, name: string): boolean;
}

/**
 * A deliberate bug, for the mutation check of the simulator's invariant checkers only:
 *   apply-out-of-order  the secondary applies each batch of records backwards
 *   drop-write          the secondary skips every 5th write record but reports it applied
 *   skip-track          a resync pass leaves out every 3rd track
 */
export type PairMutation = 'apply-out-of-order' | 'drop-write' | 'skip-track';

/** A role change of a volume (the host sets its exports' read-only flag from it). */
export interface PairRoleEvent {
  name: string;
  volume: string;
  role: PairRole;
  writable: boolean;
  reason: string;
}

/** How often a side that discarded its data asks again while the peer does not declare the pair. */
export const ASK_WHO_KEEPS_RETRY_MS = 1000;
