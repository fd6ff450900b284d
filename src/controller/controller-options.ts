// Notes on the design
// -------------------
// What a Controller (controller.ts) is made with and hands out: its lifecycle states and the
// transitions allowed between them (CONTROLLER_TRANSITIONS, which its one state setter checks),
// the specs of its exports, peers and replication listener, its options (each with its default),
// the ControllerEvent that /events streams and the ControllerStatus that /status shows (JSON,
// never a secret). ID_PATTERN and SILENT are for controller.ts only (it does not re-export
// them). No state lives here.

import type { Clock } from '../runtime/clock';
import type { Random } from '../runtime/random';
import type { VersionRange } from '../transport/handshake';
import type { LinkLogger, LinkStatus, LinkTuning } from '../transport/link';
import type { LinkListenerStats } from '../transport/link-listener';
import type { Network, NetworkAddress } from '../transport/wire';
import type { PairMutation, PairSpec } from '../replication/pairs';
import type { ReplicatedVolumeOptions } from '../replication/replicated-volume';
import type { ControllerGroups } from '../cgroup/groups';
import type { CgroupSpec } from '../cgroup/types';
import type { ControllerVolumeSpec } from './volumes';
import type { ControllerDisks, ControllerDiskSpec, ControllerGroupSpec, ControllerWorkDiskSpec, ControllerWorkVolumeSpec, DiversionVariant } from './disks';

export type ControllerState = 'created' | 'starting' | 'running' | 'stopping' | 'stopped';

export const CONTROLLER_TRANSITIONS: Readonly<Record<ControllerState, readonly ControllerState[]>> = Object.freeze({
  created: ['starting', 'stopped'],
  starting: ['running', 'stopped'],
  running: ['stopping'],
  stopping: ['stopped'],
  stopped: [],
});

/** An export a controller declares (served by the host's NBD server). */
export interface ControllerExportSpec {
  name: string;
  volume: string;
  /** @default false */
  readOnly?: boolean;
  /** @default '' */
  description?: string;
}

/** A configured peer. */
export interface ControllerPeerSpec {
  id: string;
  /** Where the peer listens for links. @default undefined (this side only accepts) */
  address?: NetworkAddress;
  /** The shared secret (bytes; see secrets.ts to read one). @default undefined */
  secret?: Buffer;
}

/** Replication listener and link tuning. */
export interface ControllerReplicationOptions extends LinkTuning {
  /** Where peers dial this controller. @default undefined (no listener) */
  listen?: NetworkAddress;
  /** Inbound handshakes in progress at once. @default 16 */
  maxPendingConnections?: number;
}

/** Options of a Controller. */
export interface ControllerOptions {
  /** Stable id, [A-Za-z0-9._-]{1,64}. */
  id: string;
  /** @default [] */
  volumes?: ControllerVolumeSpec[];
  /** @default [] */
  exports?: ControllerExportSpec[];
  /** @default {} */
  replication?: ControllerReplicationOptions;
  /** @default [] */
  peers?: ControllerPeerSpec[];
  /** @default tcpNetwork */
  network?: Network;
  /** @default realClock */
  clock?: Clock;
  /** @default realRandom */
  random?: Random;
  /** @default silent */
  logger?: LinkLogger & { child?(bindings: object): LinkLogger };
  /** Link protocol versions offered (a test hook). @default 1..1 */
  linkVersions?: VersionRange;
  /** Pairs this controller takes part in (src/replication/). @default [] */
  pairs?: PairSpec[];
  /** Journal of each primary volume. @default 64 MiB ring, 32 MiB records */
  journal?: ReplicatedVolumeOptions;
  /**
   * A deliberate bug in the pair logic, to prove the simulator's checkers can fail (the
   * mutation check, test/scenario/86). Never set outside such a test. @default none
   */
  pairMutation?: PairMutation;
  /**
   * A resyncing secondary keeps its last consistent image as a snapshot `resync.<pair>` until it
   * is consistent again (docs/snapshots.md). @default true
   */
  keepResyncImages?: boolean;
  /** Consistency groups this controller takes part in (src/cgroup/, docs/cgroups.md). @default [] */
  consistencyGroups?: CgroupSpec[];
  /**
   * A deliberate bug in the consistency groups' slaves, to prove the dependent-write check can
   * fail (test/scenario/94): 'no-hold' takes the cut without holding write completions. Never
   * set outside such a test. @default none
   */
  cgroupMutation?: 'no-hold';
  /** Emulated disks (src/controller/disks.ts, docs/raid.md). @default [] */
  disks?: ControllerDiskSpec[];
  /** RAID groups over the disks; a volume with `group` is laid on one. @default [] */
  groups?: ControllerGroupSpec[];
  /** Sparing tuning (src/controller/disks.ts). @default { checkIntervalMs: 200, rebuildStepBytes: 4 MiB } */
  raid?: { checkIntervalMs?: number; rebuildStepBytes?: number };
  /** Work volumes for diversion variant (b) (docs/raid.md). @default [] */
  workVolumes?: ControllerWorkVolumeSpec[];
  /** Work disks for diversion variant (c) (docs/raid.md). @default [] */
  workDisks?: ControllerWorkDiskSpec[];
  /** How new writes of a group being spared are diverted. @default 'none' */
  diversion?: DiversionVariant;
}

/** One state change of a controller, as /events streams it (the host adds `seq`). */
export interface ControllerEvent {
  /** ISO 8601 wall time. */
  time: string;
  /** The controller the subject belongs to. */
  controller: string;
  /** What changed: "controller", "link:<peer>", "pair:<name>". */
  subject: string;
  /** 'exists' (the current state, sent first to a new /events reader) or 'change'. */
  kind: 'exists' | 'change';
  old: string | null;
  new: string;
  reason: string | null;
  /** More fields of the subject's event (code, detail, faults, role, ...). */
  [key: string]: unknown;
}

/** A controller's status (JSON; never a secret). */
export interface ControllerStatus {
  id: string;
  state: ControllerState;
  replication: { listen: string | null; listener: LinkListenerStats | null };
  links: LinkStatus[];
  pairs: Record<string, unknown>[];
  /** The journal groups this controller is the primary of (members of) (docs/pairs.md). */
  journalGroups: Record<string, unknown>[];
  /** The consistency groups declared here and the copies held here (src/cgroup/); null before start. */
  consistencyGroups: ReturnType<ControllerGroups['status']> | null;
  /** The lockstep barrier (src/replication/lockstep.ts); null before start. */
  lockstep: Record<string, unknown> | null;
  /** The snapshots of the volumes that have any (src/controller/snapshots.ts). */
  snapshots: { volume: string; snapshots: Record<string, unknown>[] }[];
  volumes: { name: string; sharedName: string; backing: string; capacityBytes: number; blockSize: number; opened: string }[];
  /** Disks, RAID groups and the address map (seed 004's tables; src/controller/disks.ts). */
  raid: ReturnType<ControllerDisks['status']>;
  exports: { name: string; volume: string; readOnly: boolean; description: string }[];
}

export const ID_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;
export const SILENT: LinkLogger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };
