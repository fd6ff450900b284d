// Notes on the design
// -------------------
// A consistency group (design section 9, seed 003): async (or sync) pairs on several primary
// controllers whose secondaries advance together, so that a write B issued after A was
// acknowledged (on another controller) never appears in a consistent copy without A.
//
// The relationship table is the seed's {relationship id, master | slave, controller, volume}:
// one row per primary volume of the group, `role` master on the rows of the master controller
// (which is also a slave for its own volumes), slave on the others. Every controller of the group
// declares the same table (as both hosts of a DRBD resource declare it); a controller acts on the
// rows that name it and accepts cycle messages only from the table's master. `pair` names the
// volume's pair whose secondary holds the consistent copy when the volume has several.
//
// Limits are named options with IBM Global Mirror's defaults where it has them:
//   maxCoordinationMs  50     how long host writes may be held while the cut is taken
//   maxDrainMs         30000  how long the secondaries may take to reach the cut
//   cycleIntervalMs    0      pause between two cycles (0: back to back, as IBM's default)
//   drainOverrideAfter 5      consecutive drain timeouts after which one cycle gets ...
//   overrideDrainMs    300000 ... this drain limit instead (IBM's "extend the drain once")

import { BlockmirrorError, type CgroupErrorCode } from '../errors';

export type RelationshipRole = 'master' | 'slave';

/** One row of the relationship table. */
export interface Relationship {
  /** The relationship id, unique in the group. */
  id: string;
  role: RelationshipRole;
  /** The primary controller of the volume. */
  controller: string;
  /** The primary volume on that controller. */
  volume: string;
  /** The volume's pair whose secondary holds the copy. @default the volume's only pair */
  pair?: string;
}

/** The limits of a group's cycle (see the note above). */
export interface CgroupLimits {
  maxCoordinationMs: number;
  maxDrainMs: number;
  cycleIntervalMs: number;
  drainOverrideAfter: number;
  overrideDrainMs: number;
}

export const CGROUP_DEFAULTS: Readonly<CgroupLimits> = Object.freeze({
  maxCoordinationMs: 50,
  maxDrainMs: 30_000,
  cycleIntervalMs: 0,
  drainOverrideAfter: 5,
  overrideDrainMs: 300_000,
});

/** The bounds of each limit (inclusive). */
export const CGROUP_LIMIT_RANGES: Readonly<Record<keyof CgroupLimits, readonly [number, number]>> = Object.freeze({
  maxCoordinationMs: [1, 10_000],
  maxDrainMs: [1, 3_600_000],
  cycleIntervalMs: [0, 86_400_000],
  drainOverrideAfter: [0, 1000],
  overrideDrainMs: [1, 86_400_000],
});

/** A consistency group as a controller declares it. */
export interface CgroupSpec extends Partial<CgroupLimits> {
  name: string;
  relationships: Relationship[];
  /** Run cycles (master only); false: the group is declared, no cycle starts until `start`. @default true */
  autoStart?: boolean;
}

/** Most rows in one group (the 64-controller simulation runs one volume per controller). */
export const MAX_RELATIONSHIPS = 256;
const NAME_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;
/** A group's name: short enough that `cg.<group>.<cycle>` is a snapshot name (47 bytes). */
export const GROUP_NAME_PATTERN = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,23}$/;


export class CgroupError extends BlockmirrorError {
  declare readonly code: CgroupErrorCode;
  constructor(code: CgroupErrorCode, message: string) {
    super(code, message);
    this.name = 'CgroupError';
  }
}

/** Why a cycle did not form (status `lastFailure.reason`). */
export type CycleFailure =
  | 'coordination-timeout'
  | 'drain-timeout'
  | 'not-ready'
  | 'copy-failed'
  | 'link-down'
  | 'slave-error'
  | 'stopped';

/** The group's limits with the defaults filled in. */
export function limitsOf(spec: Partial<CgroupLimits>): CgroupLimits {
  return {
    maxCoordinationMs: spec.maxCoordinationMs ?? CGROUP_DEFAULTS.maxCoordinationMs,
    maxDrainMs: spec.maxDrainMs ?? CGROUP_DEFAULTS.maxDrainMs,
    cycleIntervalMs: spec.cycleIntervalMs ?? CGROUP_DEFAULTS.cycleIntervalMs,
    drainOverrideAfter: spec.drainOverrideAfter ?? CGROUP_DEFAULTS.drainOverrideAfter,
    overrideDrainMs: spec.overrideDrainMs ?? CGROUP_DEFAULTS.overrideDrainMs,
  };
}

/**
 * The problems of a group spec (empty when it is sound): names, one master controller, unique
 * ids and (controller, volume) rows, limits in range. What only the controller can check (the
 * volume exists and is a pair's primary, the master is a peer) is checked when it starts.
 */
export function cgroupSpecProblems(spec: CgroupSpec): string[] {
  const problems: string[] = [];
  if (typeof spec?.name !== 'string' || !GROUP_NAME_PATTERN.test(spec.name)) problems.push(`name must match ${GROUP_NAME_PATTERN}`);
  const rows = Array.isArray(spec?.relationships) ? spec.relationships : [];
  if (!Array.isArray(spec?.relationships) || rows.length === 0) problems.push('relationships must list at least one row');
  if (rows.length > MAX_RELATIONSHIPS) problems.push(`relationships: at most ${MAX_RELATIONSHIPS} rows, got ${rows.length}`);
  const ids = new Set<string>();
  const volumes = new Set<string>();
  const masters = new Set<string>();
  const controllers = new Set<string>();
  rows.forEach((row, index) => {
    const at = `relationships[${index}]`;
    if (typeof row?.id !== 'string' || !NAME_PATTERN.test(row.id)) problems.push(`${at}.id must match ${NAME_PATTERN}`);
    else if (ids.has(row.id)) problems.push(`${at}.id: duplicate relationship id ${row.id}`);
    else ids.add(row.id);
    if (row?.role !== 'master' && row?.role !== 'slave') problems.push(`${at}.role must be "master" or "slave"`);
    if (typeof row?.controller !== 'string' || !NAME_PATTERN.test(row.controller)) problems.push(`${at}.controller must match ${NAME_PATTERN}`);
    if (typeof row?.volume !== 'string' || row.volume.length === 0) problems.push(`${at}.volume must be a volume name`);
    if (row?.pair !== undefined && (typeof row.pair !== 'string' || row.pair.length === 0)) problems.push(`${at}.pair must be a pair name`);
    const key = `${String(row?.controller)}/${String(row?.volume)}`;
    if (volumes.has(key)) problems.push(`${at}: volume ${String(row?.volume)} of ${String(row?.controller)} is in the table twice`);
    volumes.add(key);
    if (row?.role === 'master') masters.add(String(row.controller));
    controllers.add(String(row?.controller));
  });
  if (rows.length > 0 && masters.size !== 1) {
    problems.push(masters.size === 0 ? 'relationships: no row is the master' : `relationships: one master controller, got ${[...masters].join(', ')}`);
  }
  const [master] = [...masters];
  if (master !== undefined) {
    rows.forEach((row, index) => {
      if (row?.controller === master && row.role !== 'master') problems.push(`relationships[${index}]: every row of the master controller ${master} has role master`);
    });
  }
  for (const key of Object.keys(CGROUP_LIMIT_RANGES) as (keyof CgroupLimits)[]) {
    const value = spec?.[key];
    if (value === undefined) continue;
    const [min, max] = CGROUP_LIMIT_RANGES[key];
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) problems.push(`${key} must be an integer from ${min} to ${max}`);
  }
  return problems;
}

/** The master controller of a sound spec. */
export function masterOf(spec: CgroupSpec): string {
  const row = spec.relationships.find((entry) => entry.role === 'master');
  if (row === undefined) throw new CgroupError('ERR_CGROUP_BAD_SPEC', `consistency group ${spec.name}: no master row`);
  return row.controller;
}

/** The controllers of the group, master first. */
export function controllersOf(spec: CgroupSpec): string[] {
  const master = masterOf(spec);
  const rest = [...new Set(spec.relationships.map((row) => row.controller))].filter((id) => id !== master).sort();
  return [master, ...rest];
}

/** The name of a cycle's consistent copy on a secondary volume. */
export function copyName(group: string, cycle: number): string {
  return `cg.${group}.${cycle}`;
}

/** The cycle of a consistent copy's name, or null when the name is not one of `group`. */
export function cycleOfCopy(group: string, name: string): number | null {
  const prefix = `cg.${group}.`;
  if (!name.startsWith(prefix)) return null;
  const rest = name.slice(prefix.length);
  if (!/^[1-9][0-9]{0,15}$/.test(rest)) return null;
  const cycle = Number(rest);
  return Number.isSafeInteger(cycle) ? cycle : null;
}
