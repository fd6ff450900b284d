// What the admin endpoint needs from the array it serves (implemented by ControllerHost in
// src/controller/host.ts). The admin server knows nothing else about controllers, so it can be
// tested against a small fake and served over any socket.

import type { DiskRequest } from './disk-routes';
import type { ControllerEvent } from '../controller/controller';
import type { FaultSettings } from '../transport/faults';

/** One state change, as /events streams it (newline-delimited JSON, one object a line). */
export interface ArrayEvent extends ControllerEvent {
  /** Increasing number of the event in this serve process, from 1 (0 for 'exists' events). */
  seq: number;
}

/** Receives events as they happen. */
export type ArrayEventListener = (event: ArrayEvent) => void;

/** The array behind an admin endpoint. */
export interface AdminTarget {
  /** The whole status (JSON-serializable; never contains a secret). */
  status(): Record<string, unknown>;
  /** One 'exists' event per subject, for a new /events reader. */
  currentEvents(): ArrayEvent[];
  /** Subscribes to every later event; returns the unsubscribe function. */
  subscribe(listener: ArrayEventListener): () => void;
  /** Controller ids, in configuration order. */
  controllerIds(): string[];
  /**
   * Sets faults on a link. `controllerId` may be omitted when the array has one controller.
   * Throws BlockmirrorError: ERR_ADMIN_CONTROLLER_REQUIRED, ERR_ADMIN_UNKNOWN_CONTROLLER,
   * ERR_LINK_UNKNOWN_PEER, ERR_LINK_BAD_FAULT, ERR_LINK_CLOSED.
   */
  setLinkFaults(controllerId: string | undefined, peerId: string, settings: FaultSettings): void;
  /** Removes a link's faults (same errors). */
  healLink(controllerId: string | undefined, peerId: string): void;
  /**
   * Suspends a pair (its primary side) by the operator; resolves with the pair's status.
   * Throws ERR_ADMIN_CONTROLLER_REQUIRED, ERR_ADMIN_UNKNOWN_CONTROLLER, ERR_PAIR_UNKNOWN.
   */
  suspendPair(controllerId: string | undefined, pairName: string): Record<string, unknown>;
  /** Resumes a suspended pair (resync, then mirroring); same errors, and ERR_PAIR_STATE. */
  resumePair(controllerId: string | undefined, pairName: string): Record<string, unknown>;
  /**
   * Takes a pair over on its secondary (docs/pairs.md); resolves with its status. Same errors,
   * and ERR_PAIR_STATE (already primary; an inconsistent image without force).
   */
  takeoverPair(controllerId: string | undefined, pairName: string, options: { force?: boolean }): Promise<Record<string, unknown>>;
  /**
   * Takes over every member of a journal group held here as secondary, all or none
   * (PairManager.takeoverGroup); resolves with the members' statuses. ERR_PAIR_UNKNOWN for an
   * undeclared group, ERR_PAIR_STATE when a check fails (nothing is taken over).
   */
  takeoverGroup(controllerId: string | undefined, group: string, options: { force?: boolean }): Promise<Record<string, unknown>[]>;
  /**
   * Swaps the roles of every member of a journal group back to the declared ones, in one drained
   * switch, all or none (PairManager.failbackGroup); resolves with the members' statuses.
   */
  failbackGroup(controllerId: string | undefined, group: string): Promise<Record<string, unknown>[]>;
  /** Swaps a pair's roles back to the declared ones after a takeover; same errors. */
  failbackPair(controllerId: string | undefined, pairName: string): Promise<Record<string, unknown>>;
  /**
   * Declares a pair at run time on a controller; resolves with its status. Throws
   * ERR_PAIR_EXISTS, ERR_PAIR_BAD_SPEC, and the controller errors above.
   */
  createPair(controllerId: string | undefined, spec: {
    name: string; volume: string; peer: string; remoteVolume: string; mode: 'sync' | 'async'; role: 'primary' | 'secondary';
    fence?: 'never' | 'data'; autoResume?: boolean; journalHold?: number; journalGroup?: string;
  }): Record<string, unknown>;
  /** Removes a pair (its bitmaps and metadata; the volume keeps its data). */
  deletePair(controllerId: string | undefined, pairName: string): Promise<Record<string, unknown>>;
  /**
   * A lockstep call on a controller (src/replication/lockstep.ts): resolves with 'done',
   * 'not-done' or 'disabled'; rejects ERR_LOCKSTEP_TIMEOUT.
   */
  lockstep(controllerId: string | undefined, target: { pairs?: string[]; volumes?: string[]; journals?: string[]; timeoutMs?: number }): Promise<string>;
  /** The lockstep operator switch of a controller. */
  setLockstepEnabled(controllerId: string | undefined, enabled: boolean): void;
  /** Resolves a split brain keeping the data of the side declared `keep`; same errors. */
  resolvePair(controllerId: string | undefined, pairName: string, keep: 'primary' | 'secondary'): Promise<Record<string, unknown>>;
  /**
   * A snapshot verb on a controller's volume (src/controller/snapshots.ts): create, list (every
   * volume's when `volume` is absent), delete, restore, clone (into the volume `clone`). Throws
   * ERR_SNAPSHOT_* codes and the controller errors above.
   */
  snapshot(controllerId: string | undefined, request: SnapshotRequest): Promise<unknown>;
  /**
   * A consistency-group verb on a controller (src/cgroup/groups.ts, group-routes.ts). Throws
   * ERR_CGROUP_* codes and the controller errors above.
   */
  group(controllerId: string | undefined, request: GroupRequest): Promise<unknown>;
  /**
   * A disk verb on a controller (src/controller/disks.ts, disk-routes.ts): list, fault, fail,
   * heal. Throws ERR_CONTROLLER_NO_DISK, ERR_DISK_* codes and the controller errors above.
   * Optional: a target without disks answers 404.
   */
  disk?(controllerId: string | undefined, request: DiskRequest): Promise<unknown>;
  /** Prometheus text exposition of every metric. */
  metrics(): Promise<{ contentType: string; text: string }>;
}

/** What POST /groups/<verb> asks for. */
export interface GroupRequest {
  verb: 'create' | 'status' | 'start' | 'stop' | 'delete' | 'recover' | 'held';
  name?: string;
  /** create: the group as the config declares it. */
  group?: Record<string, unknown>;
  cycle?: number;
  mode?: 'export' | 'restore';
}

/** What POST /snapshots/<verb> asks for. */
export interface SnapshotRequest {
  verb: 'create' | 'list' | 'delete' | 'restore' | 'clone';
  volume?: string;
  name?: string;
  /** clone: the new volume's name. */
  clone?: string;
}
