// Notes on the design
// -------------------
// Sparing in a controller (seed 004): a member whose disk turned 'suspect' (its error counter
// reached the disk's `errorThreshold`) is copied onto a hot spare while it stays in service
// (RaidGroup.startSparing / spare(), native/core/raid_sparing.cpp), and at the end the spare
// takes its place: the spare's status goes 'spare' -> 'normal', the suspect's 'suspect' ->
// 'sparing' during the copy and 'failed' after the swap (it is out of the group; `disk heal`
// makes it a usable disk again).
//
// One GroupSparing per running copy, owned by ControllerDisks (disks.ts), which decides when one
// starts (its periodic check) and what the group's status shows. Progress is doneBytes /
// totalBytes (the member's bytes) with a rate measured over the run (bytes copied by this run
// over the injected clock's elapsed time) and an eta from it; null until the first step.
//
// A sparing that fails (the member failed meanwhile: a rebuild takes over, with the same spare
// since it is handed back as 'spare'; the spare failed a write; single with an unreadable chunk:
// ERR_RAID_READ_FAILED, cursor kept) is reported once (event kind 'failed', status lastError)
// and retried only after an operator verb or a restart, as rebuilds are.
//
// After a SIGKILL the metadata holds the sparing (member, spare disk id, cursor): open() finds
// the spare among the configured spare disks by id, attaches it and the check resumes the copy
// at its cursor.

import type { Clock } from '../runtime/clock';
import type { Disk } from '../storage/disk';
import type { RaidGroup } from '../storage/raid-group';

export interface SparingEvent {
  group: string;
  member: number;
  disk: string;
  spare: string;
  kind: 'started' | 'progress' | 'done' | 'failed';
  doneBytes: number;
  totalBytes: number;
  code?: string;
  detail?: string;
}

export interface SparingStatus {
  member: number;
  disk: string;
  spare: string;
  doneBytes: number;
  totalBytes: number;
  /** Bytes per second over this run; null before the first step. */
  rate: number | null;
  /** Seconds left at that rate; null before the first step. */
  eta: number | null;
}

export class GroupSparing {
  readonly member: number;
  readonly disk: string;
  readonly spare: string;
  readonly #group: RaidGroup;
  readonly #clock: Clock;
  readonly #startedMs: number;
  readonly #startBytes: number;
  #doneBytes: number;

  constructor(group: RaidGroup, clock: Clock, member: number, disk: string, spare: string) {
    this.#group = group;
    this.#clock = clock;
    this.member = member;
    this.disk = disk;
    this.spare = spare;
    this.#startedMs = clock.nowMs();
    this.#startBytes = group.sparingProgress?.cursorBytes ?? 0;
    this.#doneBytes = this.#startBytes;
  }

  /** Runs the copy to its swap. onProgress after each step. */
  run(stepBytes: number, onProgress: (doneBytes: number) => void): Promise<void> {
    return this.#group.spare({
      stepBytes,
      onProgress: ({ cursorBytes }) => {
        this.#doneBytes = cursorBytes;
        onProgress(cursorBytes);
      },
    });
  }

  status(): SparingStatus {
    const totalBytes = this.#group.memberBytes;
    const elapsedS = (this.#clock.nowMs() - this.#startedMs) / 1000;
    const copied = this.#doneBytes - this.#startBytes;
    const rate = copied > 0 && elapsedS > 0 ? Math.round(copied / elapsedS) : null;
    const eta = rate === null ? null : Math.round(((totalBytes - this.#doneBytes) / rate) * 10) / 10;
    return { member: this.member, disk: this.disk, spare: this.spare, doneBytes: this.#doneBytes, totalBytes, rate, eta };
  }
}

/** The first active member of `group` whose disk is suspect, or undefined. */
export function suspectMember(group: RaidGroup): number | undefined {
  const members = group.members();
  const found = members.find((m) => m.state === 'active' && group.disks[m.member]?.status === 'suspect');
  return found?.member;
}

/** The spare disk of a sparing found in the metadata, by disk id. */
export function findSpareById(spares: Iterable<[string, Disk]>, diskId: bigint): [string, Disk] | undefined {
  for (const entry of spares) if (entry[1].id === diskId) return entry;
  return undefined;
}
