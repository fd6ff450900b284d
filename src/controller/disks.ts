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
// Status: `groups` (group, level, volumes, disks, condition, members, rebuild), `disks` (disk,
// capacity, status, errors, faults, group) and `addressMap` (per volume: group extent and the
// member/disk address of its first block, as the seed's address map table).

import { EventEmitter } from 'node:events';

import { BlockmirrorError } from '../errors';
import type { Clock, TimerHandle } from '../runtime/clock';
import { Disk, type DiskFaultOptions } from '../storage/disk';
import { RaidGroup, type RaidLevel } from '../storage/raid-group';
import { Region } from '../storage/region';
import type { Volume } from '../storage/volume';
import { findSpareById, GroupSparing, suspectMember, type SparingEvent } from './sparing';
import { BackupVolume } from '../storage/backup-volume';
import { WorkVolume } from '../storage/diversion';

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

/** A work volume (diversion variant (b), docs/raid.md) as a controller is configured with it. */
export interface ControllerWorkVolumeSpec {
  name: string;
  capacityBytes: number;
  /** @default 4096 */
  slotBytes?: number;
  /** @default 'memory' */
  backing?: 'memory' | 'shared';
  /** @default `<controller>.<name>` */
  sharedName?: string;
}

/** A work disk (diversion variant (c), docs/raid.md): one of `disks` whose space takes the diverted member blocks. */
export interface ControllerWorkDiskSpec {
  name: string;
  /** The disk (a name of `disks`: in no group, not a spare). */
  disk: string;
  /** @default 4096 */
  slotBytes?: number;
  /** The map's shared-memory name when the disk is shared. @default `<controller>.workdisk.<name>` */
  sharedName?: string;
}

export type DiversionVariant = 'none' | 'work-volume' | 'work-disk' | 'backup-volume';

/** The seed's T2 status of a volume whose writes go to a backup volume (variant (a)). */
export const UPDATE_DATA_BEING_BACKED_UP = 'update data being backed up';

/** The seed's T5 status of a member disk of a group diverting to a work disk. */
export const RENEWED_DATA_BEING_BACKED_UP = 'renewed data being backed up';
/** After a copy-back failed, the next try waits this long. */
export const COPY_BACK_RETRY_MS = 5000;

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
  /** The work volume its volumes divert to (or the work disk its members do), and its copy-back. */
  diverting: Diverting | undefined;
}

interface Diverting {
  variant: 'work-volume' | 'work-disk' | 'backup-volume';
  /** The work volume, work disk or (backup-volume) the secondary group. */
  work: string;
  /** backup-volume: per main volume, its backup and the secondary's extent. */
  backups?: Map<string, { backup: BackupVolume; extent: string; sharedName: string | undefined }>;
  copyingBack: boolean;
  /** The last copy-back failure (retried after COPY_BACK_RETRY_MS). */
  lastError: string | undefined;
  retryAtMs: number;
}

export const DISK_DEFAULTS = Object.freeze({ checkIntervalMs: 200, rebuildStepBytes: 4 * 1024 * 1024 });

export class ControllerDisks extends EventEmitter {
  readonly #options: ControllerDisksOptions;
  readonly #disks = new Map<string, { spec: ControllerDiskSpec; disk: Disk }>();
  readonly #groups = new Map<string, OpenGroup>();
  readonly #works = new Map<string, { spec: ControllerWorkVolumeSpec; work: WorkVolume }>();
  readonly #workDisks = new Map<string, { spec: ControllerWorkDiskSpec; work: WorkVolume }>();
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
      this.#groups.set(spec.name, { spec, group, members, volumes: [], rebuilding: undefined, lastError: undefined, sparing: undefined, volumeObjects: new Map(), diverting: undefined });
      // A sparing found in the metadata (a restart): attach its spare, the check resumes the copy.
      const found = group.sparingProgress;
      if (found !== undefined) {
        const spare = findSpareById([...this.#disks.entries()].map(([name, d]) => [name, d.disk] as [string, Disk]), found.diskId);
        if (spare === undefined) group.cancelSparing();
        else group.resumeSparing(spare[1]);
      }
    }
    for (const spec of this.#options.workVolumes ?? []) {
      const sharedName = spec.sharedName ?? `${controllerId}.${spec.name}`;
      const work = spec.backing === 'shared' && WorkVolume.exists(sharedName)
        ? WorkVolume.open({ name: sharedName })
        : WorkVolume.create({ capacityBytes: spec.capacityBytes, ...(spec.slotBytes === undefined ? {} : { slotBytes: spec.slotBytes }),
          backing: spec.backing ?? 'memory', ...(spec.backing === 'shared' ? { name: sharedName } : {}) });
      this.#works.set(spec.name, { spec, work });
    }
    for (const spec of this.#options.workDisks ?? []) {
      const entry = this.#disks.get(spec.disk);
      if (entry === undefined) continue;
      const sharedName = spec.sharedName ?? `${controllerId}.workdisk.${spec.name}`;
      const shared = entry.spec.backing === 'shared';
      const work = shared && WorkVolume.exists(sharedName)
        ? WorkVolume.open({ name: sharedName, dataDisk: entry.disk })
        : WorkVolume.create({ dataDisk: entry.disk, ...(spec.slotBytes === undefined ? {} : { slotBytes: spec.slotBytes }),
          backing: shared ? 'shared' : 'memory', ...(shared ? { name: sharedName } : {}) });
      this.#workDisks.set(spec.name, { spec, work });
      // A restart during a diversion: lay the work disk under its group's members again before any write.
      if (work.state === 'unused') continue;
      for (const [groupName, group] of this.#groups) {
        const keys = this.#memberKeys(groupName, group);
        if (!keys.every((key) => work.mains.includes(key))) continue;
        group.group.divertDisks(work, keys);
        group.diverting = { variant: 'work-disk', work: spec.name, copyingBack: false, lastError: undefined, retryAtMs: 0 };
      }
    }
    this.#schedule();
  }

  // A member's key in a work disk: stable across restarts and member replacements (the slot, not the disk).
  #memberKeys(groupName: string, entry: OpenGroup): bigint[] {
    return entry.members.map((_, member) => this.#hashKey(`${this.#options.controllerId}/${groupName}/member-${member}`));
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
    // A restart during a diversion: the work volume's maps name this volume; lay it behind again
    // before any write, so reads of diverted blocks come from it.
    for (const [workName, { work }] of this.#works) {
      if (work.state !== 'unused' && work.mains.includes(this.#mainKey(groupName, volumeName))) {
        entry.group.divertVolume(volume, work, this.#mainKey(groupName, volumeName));
        entry.diverting = { variant: 'work-volume', work: workName, copyingBack: false, lastError: undefined, retryAtMs: 0 };
      }
    }
    this.#relayBackup(groupName, entry, volumeName, volume);
  }

  // Variant (a) after a restart: a shared backup volume in use names the secondary extent; the
  // volume goes behind it again before any write. One left unused is removed with its extent.
  #relayBackup(groupName: string, entry: OpenGroup, volumeName: string, volume: Volume): void {
    const sharedName = this.#backupSharedName(groupName, volumeName);
    if (!BackupVolume.exists(sharedName)) return;
    const extent = this.#backupExtentName(volumeName);
    const secondary = [...this.#groups.entries()].find(([n, g]) => n !== groupName && !g.group.closed && g.group.extents().some((e) => e.name === extent));
    const backup = BackupVolume.open({ name: sharedName });
    if (backup.state === 'unused' || secondary === undefined) {
      backup.close();
      BackupVolume.unlink(sharedName);
      if (secondary !== undefined) secondary[1].group.freeExtent(extent);
      return;
    }
    entry.group.divertToBackup(volume, backup, secondary[1].group, extent);
    if (entry.diverting === undefined) {
      entry.diverting = { variant: 'backup-volume', work: secondary[0], backups: new Map(), copyingBack: false, lastError: undefined, retryAtMs: 0 };
    }
    entry.diverting.backups?.set(volumeName, { backup, extent, sharedName });
  }

  #backupExtentName(volumeName: string): string {
    const name = `bk.${volumeName}`;
    return name.length <= 39 ? name : `bk.${this.#hashKey(volumeName).toString(16)}`;
  }

  #backupSharedName(groupName: string, volumeName: string): string {
    const name = `${this.#options.controllerId}.${groupName}.${volumeName}`;
    return name.length <= 120 ? name : `${this.#options.controllerId.slice(0, 40)}.${this.#hashKey(name).toString(16)}`;
  }

  #sharedGroup(entry: OpenGroup): boolean {
    return entry.members.every((name) => this.#disks.get(name)?.spec.backing === 'shared');
  }

  // Diversion variant (b): at the start of a sparing every volume of the group is laid behind an
  // unused work volume; once no sparing runs any more, the diverted blocks are copied back and
  // the volumes lifted (also after a restart that found the work volume in use).
  #startDiversion(name: string, entry: OpenGroup): void {
    if (entry.diverting !== undefined) return;
    if ((this.#options.diversion ?? 'none') === 'work-disk') {
      this.#startDiskDiversion(name, entry);
      return;
    }
    if ((this.#options.diversion ?? 'none') === 'backup-volume') {
      this.#startBackupDiversion(name, entry);
      return;
    }
    if ((this.#options.diversion ?? 'none') !== 'work-volume' || entry.volumeObjects.size === 0) return;
    const free = [...this.#works.entries()].find(([, w]) => w.work.state === 'unused');
    if (free === undefined) {
      this.#options.logger.warn({ group: name }, `group ${name}: no unused work volume, writes are not diverted`);
      return;
    }
    const [workName, { work }] = free;
    for (const [volumeName, volume] of entry.volumeObjects) entry.group.divertVolume(volume, work, this.#mainKey(name, volumeName));
    work.start();
    entry.diverting = { variant: 'work-volume', work: workName, copyingBack: false, lastError: undefined, retryAtMs: 0 };
    this.emit('diversion', { group: name, work: workName, kind: 'started' });
  }

  // Diversion variant (c): every member disk's I/O of the group goes through an unused work disk.
  #startDiskDiversion(name: string, entry: OpenGroup): void {
    const free = [...this.#workDisks.entries()].find(([, w]) => !w.work.closed && w.work.state === 'unused' && w.work.dataDisk?.status !== 'failed');
    if (free === undefined) {
      this.#options.logger.warn({ group: name }, `group ${name}: no unused work disk, writes are not diverted`);
      return;
    }
    const [workName, { work }] = free;
    entry.group.divertDisks(work, this.#memberKeys(name, entry));
    work.start();
    entry.diverting = { variant: 'work-disk', work: workName, copyingBack: false, lastError: undefined, retryAtMs: 0 };
    this.emit('diversion', { group: name, work: workName, kind: 'started' });
  }

  // Diversion variant (a): a secondary volume per volume of the group, created on the fly as an
  // extent of an unused group (one with no volumes, optimal, not the secondary of another
  // diversion), each behind a differential bitmap.
  #startBackupDiversion(name: string, entry: OpenGroup): void {
    if (entry.volumeObjects.size === 0) return;
    const taken = new Set([...this.#groups.values()].flatMap((g) => (g.diverting?.variant === 'backup-volume' ? [g.diverting.work] : [])));
    for (const [candidateName, candidate] of this.#groups) {
      if (candidateName === name || candidate.volumes.length > 0 || taken.has(candidateName) || candidate.group.closed || candidate.group.condition !== 'optimal') continue;
      const needed = [...entry.volumeObjects.values()].reduce((sum, v) => sum + v.capacityBytes, 0);
      if (needed > candidate.group.capacityBytes) continue;
      const made: { volumeName: string; extent: string }[] = [];
      try {
        for (const [volumeName, volume] of entry.volumeObjects) {
          const extent = this.#backupExtentName(volumeName);
          candidate.group.allocateExtent(extent, volume.capacityBytes);
          made.push({ volumeName, extent });
        }
      } catch (error) {
        for (const { extent } of made) candidate.group.freeExtent(extent);
        if ((error as { code?: string }).code === 'ERR_RAID_NO_SPACE' || (error as { code?: string }).code === 'ERR_RAID_EXTENT_EXISTS') continue;
        throw error;
      }
      const shared = this.#sharedGroup(entry) && this.#sharedGroup(candidate);
      const backups = new Map<string, { backup: BackupVolume; extent: string; sharedName: string | undefined }>();
      try {
        for (const { volumeName, extent } of made) {
          const volume = entry.volumeObjects.get(volumeName) as Volume;
          const sharedName = shared ? this.#backupSharedName(name, volumeName) : undefined;
          if (sharedName !== undefined && BackupVolume.exists(sharedName)) BackupVolume.unlink(sharedName);
          // The bitmap's unit divides the volume (the backup is exactly as long as the volume).
          const blockBytes = [4096, 2048, 1024, 512].find((b) => volume.capacityBytes % b === 0);
          if (blockBytes === undefined) throw new RangeError(`volume ${volumeName}: its size is not a multiple of 512 bytes`);
          const backup = BackupVolume.create({ byteLength: volume.capacityBytes, blockBytes, ...(sharedName === undefined ? {} : { backing: 'shared' as const, name: sharedName }) });
          backups.set(volumeName, { backup, extent, sharedName });
          entry.group.divertToBackup(volume, backup, candidate.group, extent);
          backup.start();
        }
      } catch (error) {
        // All or nothing: what was made is lifted and removed, so no volume is left half diverted.
        for (const [volumeName, { backup, sharedName }] of backups) {
          const volume = entry.volumeObjects.get(volumeName);
          if (volume !== undefined && !volume.closed) entry.group.divertToBackup(volume, null);
          backup.close();
          if (sharedName !== undefined) BackupVolume.unlink(sharedName);
        }
        for (const { extent } of made) candidate.group.freeExtent(extent);
        throw error;
      }
      entry.diverting = { variant: 'backup-volume', work: candidateName, backups, copyingBack: false, lastError: undefined, retryAtMs: 0 };
      this.emit('diversion', { group: name, work: candidateName, kind: 'started' });
      this.#options.logger.info({ group: name, secondaryGroup: candidateName }, `group ${name}: new writes backed up to group ${candidateName}`);
      return;
    }
    this.#options.logger.warn({ group: name }, `group ${name}: no unused group with room for its volumes, writes are not diverted`);
  }

  // A main volume's key in a work volume: stable across restarts (a memory volume gets a new id).
  #mainKey(groupName: string, volumeName: string): bigint {
    return this.#hashKey(`${this.#options.controllerId}/${groupName}/${volumeName}`);
  }

  #hashKey(text: string): bigint {
    let hash = 0xcbf29ce484222325n;
    for (const byte of Buffer.from(text)) hash = ((hash ^ BigInt(byte)) * 0x100000001b3n) & 0xffffffffffffffffn;
    return hash === 0n ? 1n : hash;
  }

  #workOf(diverting: Diverting): WorkVolume | undefined {
    return (diverting.variant === 'work-disk' ? this.#workDisks : this.#works).get(diverting.work)?.work;
  }

  #copyBack(name: string, entry: OpenGroup): void {
    const diverting = entry.diverting;
    if (diverting === undefined || diverting.copyingBack || this.#options.clock.nowMs() < diverting.retryAtMs) return;
    const stepBytes = this.#options.rebuildStepBytes ?? DISK_DEFAULTS.rebuildStepBytes;
    let run: Promise<void>;
    let closed: () => boolean;
    if (diverting.variant === 'backup-volume') {
      const backups = [...(diverting.backups ?? new Map()).values()];
      closed = () => backups.some(({ backup }) => backup.closed);
      if (closed()) return;
      run = (async () => {
        for (const { backup } of backups) await backup.copyBack({ stepBlocks: Math.max(1, Math.floor(stepBytes / backup.blockBytes)) });
      })();
    } else {
      const work = this.#workOf(diverting);
      if (work === undefined || work.closed) return;
      closed = () => work.closed;
      run = work.copyBack({ stepSlots: Math.max(1, Math.floor(stepBytes / work.slotBytes)) });
    }
    diverting.copyingBack = true;
    this.emit('diversion', { group: name, work: diverting.work, kind: 'copy-back-started' });
    run.then(
      () => {
        if (diverting.variant === 'work-disk') {
          if (!entry.group.closed) entry.group.divertDisks(null);
        } else if (diverting.variant === 'backup-volume') {
          const secondary = this.#groups.get(diverting.work);
          for (const [volumeName, { backup, extent, sharedName }] of diverting.backups ?? []) {
            const volume = entry.volumeObjects.get(volumeName);
            if (volume !== undefined && !entry.group.closed && !volume.closed) entry.group.divertToBackup(volume, null);
            backup.close();
            if (sharedName !== undefined) BackupVolume.unlink(sharedName);
            if (secondary !== undefined && !secondary.group.closed) secondary.group.freeExtent(extent);
          }
        } else {
          for (const volume of entry.volumeObjects.values()) if (!entry.group.closed && !volume.closed) entry.group.divertVolume(volume, null);
        }
        entry.diverting = undefined;
        this.emit('diversion', { group: name, work: diverting.work, kind: 'copy-back-done' });
        this.#options.logger.info({ group: name, work: diverting.work }, `group ${name}: diverted blocks copied back from ${diverting.work}`);
      },
      (error: Error & { code?: string }) => {
        diverting.copyingBack = false;
        if (entry.group.closed || closed()) return;
        // Not the group's lastError (that one holds copy-backs back until an operator verb): a
        // copy-back is retried by itself, from its cursor, after COPY_BACK_RETRY_MS.
        diverting.lastError = `${error.code ?? 'Error'}: ${error.message}`;
        diverting.retryAtMs = this.#options.clock.nowMs() + COPY_BACK_RETRY_MS;
        this.#options.logger.warn({ group: name, work: diverting.work, code: error.code }, `group ${name}: copy-back from ${diverting.work} failed, retried in ${COPY_BACK_RETRY_MS / 1000} s: ${error.message}`);
        this.emit('diversion', { group: name, work: diverting.work, kind: 'copy-back-failed', code: error.code ?? 'Error', detail: error.message });
      },
    );
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
      this.#copyBack(name, entry);
      return;
    }
    if (entry.diverting?.copyingBack === true) return;
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
    try {
      this.#startDiversion(name, entry);
    } catch (error) {
      // The sparing goes on without a diversion: the weak group carries the writes.
      const failure = error as Error & { code?: string };
      this.#options.logger.warn({ group: name, code: failure.code }, `group ${name}: writes are not diverted: ${failure.message}`);
      this.emit('diversion', { group: name, work: '', kind: 'failed', code: failure.code ?? failure.name, detail: failure.message });
    }
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
        volumes: [...entry.volumes, ...[...this.#groups.values()].flatMap((other) => (other.diverting?.variant === 'backup-volume' && other.diverting.work === name
          ? [...(other.diverting.backups?.values() ?? [])].map((b) => b.extent) : []))],
        disks: [...entry.members],
        capacityBytes: entry.group.capacityBytes,
        condition: entry.group.closed ? 'closed' : entry.group.condition,
        members: entry.group.closed ? [] : entry.group.members().map((member) => ({ ...member, diskId: member.diskId.toString(16).padStart(16, '0'), disk: entry.members[member.member] })),
        rebuild: entry.group.closed ? null : entry.group.rebuildProgress ?? null,
        sparing: entry.sparing?.status() ?? null,
        diversion: entry.diverting === undefined ? null : {
          variant: entry.diverting.variant,
          ...(entry.diverting.variant === 'work-disk' ? { workDisk: entry.diverting.work }
            : entry.diverting.variant === 'backup-volume' ? { secondaryGroup: entry.diverting.work } : { workVolume: entry.diverting.work }),
          copyingBack: entry.diverting.copyingBack,
          lastError: entry.diverting.lastError ?? null,
        },
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
        backupStatus: this.#groups.get(groupOf.get(name) ?? '')?.diverting?.variant === 'work-disk' ? RENEWED_DATA_BEING_BACKED_UP : null,
        workDisk: [...this.#workDisks.entries()].find(([, w]) => w.spec.disk === name)?.[0] ?? null,
        faults: disk.closed ? [] : disk.faults(),
      })),
      // The seed's work volumes table (T4): primary = the main volumes while in use.
      workVolumes: [...this.#works.entries()].map(([name, { work }]) => {
        if (work.closed) return { workVolume: name, capacityBytes: 0, state: 'closed', primary: null, terminalAddress: null, bitmap: '', stats: null };
        const ids = work.mains;
        const names = [...this.#groups.entries()].flatMap(([g, entry]) => [...entry.volumeObjects.keys()].filter((v) => ids.includes(this.#mainKey(g, v))));
        return { workVolume: name, capacityBytes: work.capacityBytes, state: work.state, primary: work.state === 'unused' ? null : names,
          terminalAddress: work.terminal, bitmap: work.bitmap(Math.min(64, work.slotCount)), stats: work.stats() };
      }),
      // The seed's work disks table (T6) and its address map (T7), the first 64 live rows of each.
      workDisks: [...this.#workDisks.entries()].map(([name, { spec, work }]) => {
        if (work.closed) return { workDisk: name, disk: spec.disk, capacityBytes: 0, status: 'closed', state: 'closed', mainDisks: null, terminalAddress: null, stats: null };
        const mains = this.#mainDiskNames(work);
        return { workDisk: name, disk: spec.disk, capacityBytes: work.capacityBytes, status: work.state === 'unused' ? 'unused' : 'in use', state: work.state,
          mainDisks: work.state === 'unused' ? null : mains.filter((m) => m !== null), terminalAddress: work.terminal, stats: work.stats() };
      }),
      workDiskMap: [...this.#workDisks.entries()].flatMap(([name, { work }]) => {
        if (work.closed || work.state === 'unused') return [];
        const mains = this.#mainDiskNames(work);
        return work.entries(64).map((row) => ({ mainDisk: mains[row.main] ?? null, mainAddress: row.block, workDisk: name, workAddress: row.slot }));
      }),
      // The seed's pairs table (T2) of variant (a): each volume backed up to a secondary volume.
      backupPairs: [...this.#groups.entries()].flatMap(([name, entry]) => {
        const diverting = entry.diverting;
        if (diverting?.variant !== 'backup-volume') return [];
        return [...(diverting.backups ?? [])].map(([volumeName, { backup, extent }]) => ({
          primary: volumeName,
          group: name,
          secondary: extent,
          secondaryGroup: diverting.work,
          status: backup.closed ? 'closed' : diverting.copyingBack ? 'copying back' : UPDATE_DATA_BEING_BACKED_UP,
          bitmap: backup.closed ? '' : backup.bitmap(64),
          divertedBlocks: backup.closed ? 0 : backup.divertedBlocks,
          stats: backup.closed ? null : backup.stats(),
        }));
      }),
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

  // The member disk names of a work disk's mains, by main index (null: a main of no open group).
  #mainDiskNames(work: WorkVolume): (string | null)[] {
    const names = new Map<bigint, string>();
    for (const [groupName, entry] of this.#groups) {
      this.#memberKeys(groupName, entry).forEach((key, member) => names.set(key, entry.members[member] as string));
    }
    return work.mains.map((key) => names.get(key) ?? null);
  }

  /** Closes the groups (lifting their volumes) and the disks. Idempotent. */
  close(): void {
    this.#closed = true;
    this.#timer?.cancel();
    for (const entry of this.#groups.values()) entry.group.close();
    for (const entry of this.#groups.values()) for (const { backup } of entry.diverting?.backups?.values() ?? []) backup.close();
    for (const { work } of this.#works.values()) work.close();
    for (const { work } of this.#workDisks.values()) work.close();
    for (const { disk } of this.#disks.values()) disk.close();
  }
}
