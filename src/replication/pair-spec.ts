// Notes on the design
// -------------------
// A declared pair, as the config's `pairs` entry and `pair create` give it (PairSpec), and the
// checks and first values that go with a declaration: groupProblem (what journal groups allow:
// one peer, one mode and one declared role per group, a grouped volume in no other pair, at most
// MAX_GROUP_MEMBERS pairs per group) and initialMeta (the metadata a side starts with when its
// volume holds none).
//
// Invariants: groupProblem only reads its arguments and names the first problem it finds (the
// PairManager turns it into a TypeError for the config, ERR_PAIR_BAD_SPEC for `pair create`);
// journal group names match GROUP_NAME, as pair names are written. initialMeta is for pairs.ts
// only (it does not re-export it). No state lives here.

import { EMPTY_GENERATIONS } from './generations';
import { type PairMode, MAX_GROUP_MEMBERS } from './messages';
import type { PairMetaState } from './pair-meta';
import type { PairRole } from './pair-state';

/** A declared pair (the config's `pairs` entry). */
export interface PairSpec {
  name: string;
  /** This controller's volume. */
  volume: string;
  peer: string;
  /** The volume on the peer. */
  remoteVolume: string;
  mode: PairMode;
  /** The declared role (the first one; takeover, failback and resolve change it). */
  role: PairRole;
  /** Sync only. @default 'never' */
  fence?: 'never' | 'data';
  /** @default true */
  autoResume?: boolean;
  /** Most of the journal a link loss's hold may keep, 0 to 1 (primary-pair.ts streamHold). @default 0.75 */
  journalHold?: number;
  /** The journal group: pairs with the same one share a journal and one write order. @default none */
  journalGroup?: string;
}

/** Journal group names: as pair names are written in configs and commands. */
export const GROUP_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/**
 * Why `spec` cannot sit beside `others` (the controller's other pairs) as far as journal groups
 * go, or undefined: one peer, one mode and one declared role per group; a grouped volume is in
 * no other pair; at most MAX_GROUP_MEMBERS pairs per group.
 */
export function groupProblem(spec: PairSpec, others: readonly PairSpec[]): string | undefined {
  const sameVolume = others.filter((other) => other.volume === spec.volume);
  if (spec.journalGroup === undefined) {
    const grouped = sameVolume.find((other) => other.journalGroup !== undefined);
    return grouped === undefined ? undefined : `volume ${spec.volume} is in journal group ${grouped.journalGroup} (pair ${grouped.name}); a grouped volume is in no other pair`;
  }
  const group = spec.journalGroup;
  if (typeof group !== 'string' || !GROUP_NAME.test(group)) return `${JSON.stringify(group)} is not a journal group name (letters, digits, . _ -, at most 64)`;
  if (sameVolume.length > 0) return `volume ${spec.volume} is also in pair ${sameVolume[0]?.name}; a grouped volume is in no other pair`;
  const members = others.filter((other) => other.journalGroup === group);
  if (members.length + 1 > MAX_GROUP_MEMBERS) return `journal group ${group} holds at most ${MAX_GROUP_MEMBERS} pairs`;
  for (const other of members) {
    if (other.peer !== spec.peer) return `journal group ${group} has pair ${other.name} with peer ${other.peer}; pair ${spec.name} names ${spec.peer} (one peer per group)`;
    if (other.mode !== spec.mode) return `journal group ${group} has pair ${other.name} in mode ${other.mode}; pair ${spec.name} is ${spec.mode} (one mode per group)`;
    if (other.role !== spec.role) return `journal group ${group} has pair ${other.name} declared ${other.role}; pair ${spec.name} is ${spec.role} (one role per group)`;
  }
  return undefined;
}

export function initialMeta(role: PairRole): PairMetaState {
  return {
    role, generations: EMPTY_GENERATIONS, synced: false, consistency: 'inconsistent', applied: 0, nextSequence: 1,
    discard: false, active: 0, sealedThrough: 0, newGeneration: false, streaming: false, journalId: 0,
  };
}
