// Notes on the design
// -------------------
// The disks and RAID groups of one controller (seed 004's tables): opened at start before the
// volumes, a volume with a `group` laid on an extent of it (named after the volume; found again
// after a restart when the group's metadata is shared), closed after the volumes.
//
// Backings: a disk is 'memory' or 'shared' (POSIX shm blockmirror.disk.<sharedName>, default
// `<controller>.<disk>`). A group's member states and extent table live in a shared region
// (blockmirror.raid.<controller>.<group>) when all its disks are shared, so a restarted serve finds
// failed members, a rebuild's cursor and its volumes' extents where they were; otherwise in memory.
// Because a shared disk's fault rules and status live in its region, any process may fail or
// heal it (Disk.open({ name }).fail()): the serve sees it on the next I/O.
//
// Sparing (a failed member replaced): every `checkIntervalMs` (and after each operator verb) a
// group with a failed member and no rebuild running takes the first disk of status 'spare' that
// is large enough, starts the rebuild onto it (the spare turns 'normal', the failed disk is
// dropped from the group and keeps status 'failed') and runs it in bounded steps
// (`rebuildStepBytes` per event-loop turn), emitting `rebuild` events with progress. A rebuild
// that fails (a second member unreadable: data lost) is reported once, by a `rebuild` event of
// kind 'failed' and in status (`lastError`); it is retried after an operator verb (fail, heal)
// or a restart, not on every check. A member once failed stays failed (its bytes may be stale)
// until it is rebuilt: healing its disk does not bring it back into the group.
//
// Sparing a suspect member (seed 004, sparing.ts): a group with no failed member whose member disk
// turned 'suspect' copies it onto a spare while it stays in service; at the end the spare is the
// member and the old disk 'failed'. Status groups[].sparing, events sparing-*.
//
// Diversions (diversions.ts): while a sparing runs, the group's new writes may go to a work
// volume, a work disk or backup volumes in an unused group (`diversion`). ControllerDiversions
// owns those and each group's diversion state; this class decides when: a sparing that starts
// starts one, a check that finds no sparing to run (and no group lastError) copies back, and no
// sparing starts while a copy-back runs. It hands ControllerDiversions its groups and disks
// read-only, opens it after the groups, closes it after them, and emits its events as
// `diversion`.
//
// Status: `groups` (group, level, volumes, disks, condition, members, rebuild, sparing, diversion),
// `disks` (disk, capacity, status, errors, faults, group, backupStatus, workDisk), the diversion
// tables (workVolumes, workDisks, workDiskMap, backupPairs: diversions.ts) and `addressMap` (per
// volume: group extent and the member/disk address of its first block, as the seed's address
// map table).

import { EventEmitter } from 'node:events';

import { BlockmirrorError } from '../errors';
import type { Clock, TimerHandle } from '../runtime/clock';
import { Disk, type DiskFaultOptions } from '../storage/disk';
import { RaidGroup, type RaidLevel } from '../storage/raid-group';
import { Region } from '../storage/region';
import type { Volume } from '../storage/volume';
import { ControllerDiversions, type ControllerWorkDiskSpec, type ControllerWorkVolumeSpec, type DiversionVariant } from './diversions';
import { findSpareById, GroupSparing, suspectMember, type SparingEvent } from './sparing';

// The diversion variants moved to diversions.ts; their config types and constants are still
// importable from here.
export {
  COPY_BACK_RETRY_MS,
  RENEWED_DATA_BEING_BACKED_UP,
  UPDATE_DATA_BEING_BACKED_UP,
  type ControllerWorkDiskSpec,
  type ControllerWorkVolumeSpec,
  type DiversionEvent,
  type DiversionVariant,
} from './diversions';

/** A disk as a controller is configured with it. */
export interface ControllerDiskSpec {
  name: string;
  capacityBytes: number;
  /** @default 512 */
  sectorSize?: number;
  /** Failed I/Os after which a normal disk turns 'suspect'; 0 never. @default 0 */
  errorThreshold?: number;
  /** Seed of the disk's fault rate generator. @default 1 */
  seed?: number;
  /** A hot spare: not a member of any group, taken when a member fails. @default false */
  spare?: boolean;
  /** @default 'memory' */
  backing?: 'memory' | 'shared';
  /** The shared-memory name of a 'shared' disk. @default `<controller>.<name>` */
  sharedName?: string;
}

/** A RAID group as a controller is configured with it. */
export interface ControllerGroupSpec {
  name: string;
  level: RaidLevel;
  /** Member disks in order (names of `disks`). */
  disks: string[];
  /** raid5 only. @default 65536 */
  stripeUnitBytes?: number;
}

export interface ControllerDisksOptions {
  controllerId: string;
  disks: ControllerDiskSpec[];
  groups: ControllerGroupSpec[];
  /** Work volumes new writes of a group being spared are diverted to. @default [] */
  workVolumes?: ControllerWorkVolumeSpec[];
  /** Work disks new member writes of a group being spared are diverted to. @default [] */
  workDisks?: ControllerWorkDiskSpec[];
  /** How writes are diverted during a sparing. @default 'none' */
  diversion?: DiversionVariant;
  clock: Clock;
  /** How often groups are checked for a failed member to spare. @default 200 */
  checkIntervalMs?: number;
  /** Bytes rebuilt per event-loop turn. @default 4194304 */
  rebuildStepBytes?: number;
  logger: { info(fields: object, message: string): void; warn(fields: object, message: string): void };
}

export interface RebuildEvent {
  group: string;
  member: number;
  disk: string;
  kind: 'started' | 'progress' | 'done' | 'failed';
  cursorBytes: number;
  memberBytes: number;
  code?: string;
  detail?: string;
}

interface OpenGroup {
  spec: ControllerGroupSpec;
  group: RaidGroup;
  /** Disk names in member order (a member replaced: its spare). */
  members: string[];
  volumes: string[];
  rebuilding: { member: number; disk: string } | undefined;
  lastError: string | undefined;
  /** A suspect member being copied onto a spare (sparing.ts). */
  sparing: GroupSparing | undefined;
  /** Volume objects laid on the group, by name. */
  volumeObjects: Map<string, Volume>;
}

export const DISK_DEFAULTS = Object.freeze({ checkIntervalMs: 200, rebuildStepBytes: 4 * 1024 * 1024 });

export class ControllerDisks extends EventEmitter {
  readonly #options: ControllerDisksOptions;
  readonly #disks = new Map<string, { spec: ControllerDiskSpec; disk: Disk }>();
  readonly #groups = new Map<string, OpenGroup>();
  /** The work volumes, work disks and backup volumes, and each group's diversion (diversions.ts). */
  readonly #diversions: ControllerDiversions;
  #timer: TimerHandle | undefined;
  #closed = false;

  constructor(options: ControllerDisksOptions) {
    super();
    this.#options = options;
    const names = new Set<string>();
    for (const disk of options.disks) {
      if (names.has(disk.name)) throw new TypeError(`disks: duplicate disk ${disk.name}`);
      names.add(disk.name);
    }
    const used = new Set<string>();
    for (const group of options.groups) {
      for (const name of group.disks) {
        if (!names.has(name)) throw new TypeError(`groups.${group.name}: no disk named ${name}`);
        if (used.has(name)) throw new TypeError(`groups.${group.name}: disk ${name} is in two groups`);
        if (options.disks.find((d) => d.name === name)?.spare === true) throw new TypeError(`groups.${group.name}: disk ${name} is a spare`);
        used.add(name);
      }
    }
    for (const work of options.workDisks ?? []) {
      const spec = options.disks.find((d) => d.name === work.disk);
      if (spec === undefined) throw new TypeError(`workDisks.${work.name}: no disk named ${work.disk}`);
      if (used.has(work.disk)) throw new TypeError(`workDisks.${work.name}: disk ${work.disk} is in a group or another work disk`);
      if (spec.spare === true) throw new TypeError(`workDisks.${work.name}: disk ${work.disk} is a spare`);
      used.add(work.disk);
    }
    this.#diversions = new ControllerDiversions({
      controllerId: options.controllerId,
      variant: options.diversion ?? 'none',
      workVolumes: options.workVolumes ?? [],
      workDisks: options.workDisks ?? [],
      groups: this.#groups,
      disks: this.#disks,
      clock: options.clock,
      stepBytes: options.rebuildStepBytes ?? DISK_DEFAULTS.rebuildStepBytes,
      logger: options.logger,
      onEvent: (event) => this.emit('diversion', event),
    });
  }

  /** Opens (or creates) the disks, then the groups. */
  open(): void {
    const { controllerId } = this.#options;
    for (const spec of this.#options.disks) {
      const sharedName = spec.sharedName ?? `${controllerId}.${spec.name}`;
      let disk: Disk;
      if (spec.backing === 'shared' && Region.exists('shared', `blockmirror.disk.${sharedName}`)) {
        disk = Disk.open({ name: sharedName });
      } else {
        disk = Disk.create({
          capacityBytes: spec.capacityBytes,
          sectorSize: spec.sectorSize ?? 512,
          errorThreshold: spec.errorThreshold ?? 0,
          seed: spec.seed ?? 1,
          status: spec.spare === true ? 'spare' : 'normal',
          backing: spec.backing ?? 'memory',
          name: spec.backing === 'shared' ? sharedName : spec.name,
        });
      }
      this.#disks.set(spec.name, { spec, disk });
    }
    for (const spec of this.#options.groups) {
      const shared = spec.disks.every((name) => this.#disks.get(name)?.spec.backing === 'shared');
      const metadataName = `${controllerId}.${spec.name}`;
      const members = [...spec.disks];
      let group: RaidGroup;
      if (shared && Region.exists('shared', `blockmirror.raid.${metadataName}`)) {
        // A restart: members may have been replaced by spares; the metadata names their disk ids.
        group = this.#reopen(metadataName, members);
      } else {
        const options = { level: spec.level, disks: members.map((name) => this.#disk(name)), ...(spec.stripeUnitBytes === undefined ? {} : { stripeUnitBytes: spec.stripeUnitBytes }) };
        group = RaidGroup.create(shared ? { ...options, backing: 'shared', name: metadataName } : options);
      }
      this.#groups.set(spec.name, { spec, group, members, volumes: [], rebuilding: undefined, lastError: undefined, sparing: undefined, volumeObjects: new Map() });
      // A sparing found in the metadata (a restart): attach its spare, the check resumes the copy.
      const found = group.sparingProgress;
      if (found !== undefined) {
        const spare = findSpareById([...this.#disks.entries()].map(([name, d]) => [name, d.disk] as [string, Disk]), found.diskId);
        if (spare === undefined) group.cancelSparing();
        else group.resumeSparing(spare[1]);
      }
    }
    this.#diversions.open();
    this.#schedule();
  }

  #reopen(metadataName: string, members: string[]): RaidGroup {
    // Match each member slot with the disk whose id the metadata holds (a spare that replaced a member).
    const probe = (disks: Disk[]): RaidGroup | undefined => {
      try {
        return RaidGroup.open({ name: metadataName, disks });
      } catch (error) {
        if ((error as { code?: string }).code === 'ERR_RAID_BAD_HEADER') return undefined;
        throw error;
      }
    };
    const direct = probe(members.map((name) => this.#disk(name)));
    if (direct !== undefined) return direct;
    const spares = [...this.#disks.entries()].filter(([, entry]) => entry.spec.spare === true).map(([name]) => name);
    for (let slot = 0; slot < members.length; slot++) {
      for (const spare of spares) {
        const trial = [...members];
        trial[slot] = spare;
        const group = probe(trial.map((name) => this.#disk(name)));
        if (group !== undefined) {
          members.splice(0, members.length, ...trial);
          return group;
        }
      }
    }
    throw new BlockmirrorError('ERR_RAID_BAD_HEADER', `group ${metadataName}: the configured disks are not its members`);
  }

  #disk(name: string): Disk {
    const entry = this.#disks.get(name);
    if (entry === undefined) throw new BlockmirrorError('ERR_CONTROLLER_NO_DISK', `no disk named ${name}`);
    return entry.disk;
  }

  #group(name: string): OpenGroup {
    const entry = this.#groups.get(name);
    if (entry === undefined) throw new BlockmirrorError('ERR_CONTROLLER_NO_DISK', `no group named ${name}`);
    return entry;
  }

  /** Lays a volume on its group: its extent (named after it) is found again or taken from unused space. */
  layVolume(volumeName: string, volume: Volume, groupName: string): void {
    const entry = this.#group(groupName);
    const existing = entry.group.extents().find((extent) => extent.name === volumeName);
    if (existing === undefined) entry.group.allocateExtent(volumeName, volume.capacityBytes);
    entry.group.attachVolume(volume, volumeName);
    entry.volumes.push(volumeName);
    entry.volumeObjects.set(volumeName, volume);
    // A restart during a diversion: the work volume's maps (or a backup bitmap) name this volume;
    // it goes behind again before any write, so reads of diverted blocks come from it.
    this.#diversions.relayVolume(groupName, volumeName, volume);
  }

  /** The disk's fault rules: adds one and returns its index. */
  fault(diskName: string, options: DiskFaultOptions): number {
    const index = this.#disk(diskName).addFault(options);
    this.#options.logger.info({ disk: diskName, fault: options }, `disk ${diskName}: fault rule ${index} added`);
    this.emit('disk', { disk: diskName, kind: 'fault', index });
    return index;
  }

  fail(diskName: string): void {
    this.#disk(diskName).fail();
    for (const entry of this.#groups.values()) entry.lastError = undefined;
    this.#options.logger.warn({ disk: diskName }, `disk ${diskName}: failed by the operator`);
    this.emit('disk', { disk: diskName, kind: 'failed' });
    this.check();
  }

  heal(diskName: string): void {
    this.#disk(diskName).heal();
    for (const entry of this.#groups.values()) entry.lastError = undefined;
    this.#options.logger.info({ disk: diskName }, `disk ${diskName}: healed`);
    this.emit('disk', { disk: diskName, kind: 'healed' });
  }

  /** Marks members whose disk failed, and starts a rebuild onto a spare where one is needed. */
  check(): void {
    if (this.#closed) return;
    for (const [name, entry] of this.#groups) {
      if (entry.group.closed || entry.rebuilding !== undefined || entry.sparing !== undefined) continue;
      const members = entry.group.members();
      members.forEach((member) => {
        if (member.state === 'active' && entry.group.disks[member.member]?.status === 'failed') entry.group.failMember(member.member);
      });
      const resumed = entry.group.rebuildProgress;
      if (resumed !== undefined) {
        // A rebuild that failed is retried after an operator verb (fail, heal) or a restart, not
        // on every check: the same second failure would only repeat its event.
        if (entry.lastError !== undefined) continue;
        this.#runRebuild(name, entry, resumed.member, entry.members[resumed.member] as string);
        continue;
      }
      const failed = entry.group.members().find((member) => member.state === 'failed');
      if (failed === undefined) {
        if (entry.lastError === undefined) this.#maybeSpare(name, entry);
        continue;
      }
      if (entry.group.condition === 'failed') continue;
      const spare = [...this.#disks.entries()].find(([, d]) => d.disk.status === 'spare' && d.disk.capacityBytes >= entry.group.memberBytes);
      if (spare === undefined) continue;
      const [spareName, { disk }] = spare;
      disk.setStatus('normal');
      entry.group.startRebuild(failed.member, disk);
      entry.members[failed.member] = spareName;
      this.#runRebuild(name, entry, failed.member, spareName);
    }
  }

  #runRebuild(name: string, entry: OpenGroup, member: number, diskName: string): void {
    entry.rebuilding = { member, disk: diskName };
    const base = { group: name, member, disk: diskName, memberBytes: entry.group.memberBytes };
    this.emit('rebuild', { ...base, kind: 'started', cursorBytes: entry.group.rebuildProgress?.cursorBytes ?? 0 } satisfies RebuildEvent);
    this.#options.logger.info(base, `group ${name}: rebuilding member ${member} onto ${diskName}`);
    entry.group
      .rebuild({
        stepBytes: this.#options.rebuildStepBytes ?? DISK_DEFAULTS.rebuildStepBytes,
        onProgress: ({ cursorBytes }) => this.emit('rebuild', { ...base, kind: 'progress', cursorBytes } satisfies RebuildEvent),
      })
      .then(
        () => {
          entry.rebuilding = undefined;
          entry.lastError = undefined;
          this.emit('rebuild', { ...base, kind: 'done', cursorBytes: entry.group.memberBytes } satisfies RebuildEvent);
          this.#options.logger.info(base, `group ${name}: member ${member} rebuilt onto ${diskName}`);
        },
        (error: Error & { code?: string }) => {
          entry.rebuilding = undefined;
          if (entry.group.closed) return;
          entry.lastError = `${error.code ?? 'Error'}: ${error.message}`;
          if (error.code === 'ERR_RAID_CLOSED') return;
          this.emit('rebuild', { ...base, kind: 'failed', cursorBytes: entry.group.closed ? 0 : entry.group.rebuildProgress?.cursorBytes ?? 0,
            code: error.code ?? 'Error', detail: error.message } satisfies RebuildEvent);
          this.#options.logger.warn({ ...base, code: error.code }, `group ${name}: rebuild of member ${member} failed: ${error.message}`);
        },
      );
  }

  // Sparing: a suspect active member copied onto the first large enough spare (sparing.ts), or
  // the sparing the metadata holds resumed at its cursor.
  #maybeSpare(name: string, entry: OpenGroup): void {
    const found = entry.group.sparingProgress;
    if (found === undefined && suspectMember(entry.group) === undefined) {
      this.#diversions.copyBack(name);
      return;
    }
    if (this.#diversions.copyingBack(name)) return;
    let member: number;
    let spareName: string;
    if (found !== undefined && found.attached) {
      member = found.member;
      const spare = findSpareById([...this.#disks.entries()].map(([n, d]) => [n, d.disk] as [string, Disk]), found.diskId);
      if (spare === undefined) return;
      spareName = spare[0];
    } else {
      const suspect = suspectMember(entry.group);
      if (suspect === undefined) return;
      const spare = [...this.#disks.entries()].find(([, d]) => d.disk.status === 'spare' && d.disk.capacityBytes >= entry.group.memberBytes);
      if (spare === undefined) return;
      member = suspect;
      spareName = spare[0];
      entry.group.startSparing(member, spare[1].disk);
      spare[1].disk.setStatus('normal');
    }
    const diskName = entry.members[member] as string;
    const suspectDisk = this.#disk(diskName);
    if (suspectDisk.status === 'suspect' || suspectDisk.status === 'normal') suspectDisk.setStatus('sparing');
    const sparing = new GroupSparing(entry.group, this.#options.clock, member, diskName, spareName);
    entry.sparing = sparing;
    // Never throws: a diversion that cannot be set up is reported and the sparing goes on without it.
    this.#diversions.start(name);
    const base = { group: name, member, disk: diskName, spare: spareName, totalBytes: entry.group.memberBytes };
    this.emit('sparing', { ...base, kind: 'started', doneBytes: sparing.status().doneBytes } satisfies SparingEvent);
    this.#options.logger.info(base, `group ${name}: sparing member ${member} (${diskName}) onto ${spareName}`);
    sparing
      .run(this.#options.rebuildStepBytes ?? DISK_DEFAULTS.rebuildStepBytes, (doneBytes) =>
        this.emit('sparing', { ...base, kind: 'progress', doneBytes } satisfies SparingEvent))
      .then(
        () => {
          entry.sparing = undefined;
          entry.lastError = undefined;
          entry.members[member] = spareName;
          if (!suspectDisk.closed) suspectDisk.setStatus('failed');
          this.emit('sparing', { ...base, kind: 'done', doneBytes: entry.group.memberBytes } satisfies SparingEvent);
          this.#options.logger.info(base, `group ${name}: ${spareName} replaced ${diskName} as member ${member}`);
        },
        (error: Error & { code?: string }) => {
          entry.sparing = undefined;
          if (entry.group.closed) return;
          entry.lastError = `${error.code ?? 'Error'}: ${error.message}`;
          // A cancelled copy gives the spare back (a rebuild may take it) and the suspect its status.
          if (entry.group.sparingProgress === undefined) {
            const spareDisk = this.#disk(spareName);
            if (!spareDisk.closed && spareDisk.status === 'normal') spareDisk.setStatus('spare');
            if (!suspectDisk.closed && suspectDisk.status === 'sparing') suspectDisk.setStatus('suspect');
            if (error.code === 'ERR_RAID_MEMBER_STATE') entry.lastError = undefined;  // the rebuild takes over
          }
          if (error.code === 'ERR_RAID_CLOSED') return;
          this.emit('sparing', { ...base, kind: 'failed', doneBytes: sparing.status().doneBytes, code: error.code ?? 'Error', detail: error.message } satisfies SparingEvent);
          this.#options.logger.warn({ ...base, code: error.code }, `group ${name}: sparing of member ${member} failed: ${error.message}`);
        },
      );
  }

  #schedule(): void {
    if (this.#closed) return;
    this.#timer = this.#options.clock.setTimer(() => {
      try {
        this.check();
      } finally {
        this.#schedule();
      }
    }, this.#options.checkIntervalMs ?? DISK_DEFAULTS.checkIntervalMs, { unref: true });
  }

  list(): ReturnType<ControllerDisks['status']>['disks'] {
    return this.status().disks;
  }

  /** The seed's tables. */
  status(volumes: readonly { name: string; group?: string | undefined }[] = []) {
    const groupOf = new Map<string, string>();
    for (const [name, entry] of this.#groups) for (const disk of entry.members) groupOf.set(disk, name);
    return {
      groups: [...this.#groups.entries()].map(([name, entry]) => ({
        group: name,
        level: entry.spec.level,
        // With the secondary volumes (variant (a)) it holds for another group, as the seed's T1 shows them.
        volumes: [...entry.volumes, ...this.#diversions.secondaryExtents(name)],
        disks: [...entry.members],
        capacityBytes: entry.group.capacityBytes,
        condition: entry.group.closed ? 'closed' : entry.group.condition,
        members: entry.group.closed ? [] : entry.group.members().map((member) => ({ ...member, diskId: member.diskId.toString(16).padStart(16, '0'), disk: entry.members[member.member] })),
        rebuild: entry.group.closed ? null : entry.group.rebuildProgress ?? null,
        sparing: entry.sparing?.status() ?? null,
        diversion: this.#diversions.groupStatus(name),
        lastError: entry.lastError ?? null,
        stats: entry.group.closed ? null : entry.group.stats(),
      })),
      disks: [...this.#disks.entries()].map(([name, { spec, disk }]) => ({
        disk: name,
        capacityBytes: spec.capacityBytes,
        status: disk.closed ? 'closed' : disk.status,
        errorCount: disk.closed ? 0 : disk.errorCount,
        errorThreshold: disk.closed ? 0 : disk.errorThreshold,
        group: groupOf.get(name) ?? null,
        // The seed's T5: a member of a group whose member I/O goes to a work disk.
        backupStatus: this.#diversions.backupStatus(groupOf.get(name)),
        workDisk: this.#diversions.workDiskOn(name),
        faults: disk.closed ? [] : disk.faults(),
      })),
      // The seed's work volumes (T4), work disks (T6), work disk map (T7) and pairs (T2) tables.
      ...this.#diversions.tables(),
      addressMap: volumes.flatMap((volume) => {
        const entry = volume.group === undefined ? undefined : this.#groups.get(volume.group);
        const extent = entry?.group.closed === false ? entry.group.extents().find((e) => e.name === volume.name) : undefined;
        if (entry === undefined || extent === undefined) return [];
        const first = entry.group.map(extent.groupByteOffset);
        return [{ volume: volume.name, group: volume.group, groupByteOffset: extent.groupByteOffset, byteLength: extent.byteLength,
          firstMember: first.member, firstDisk: entry.members[first.member], firstDiskByteOffset: first.diskByteOffset }];
      }),
    };
  }

  /** Closes the groups (lifting their volumes) and the disks. Idempotent. */
  close(): void {
    this.#closed = true;
    this.#timer?.cancel();
    for (const entry of this.#groups.values()) entry.group.close();
    this.#diversions.close();
    for (const { disk } of this.#disks.values()) disk.close();
  }
}
