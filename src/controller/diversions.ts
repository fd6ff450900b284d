// Notes on the design
// -------------------
// The diversions of one controller's RAID groups (docs/raid.md): while a suspect member of a group
// is spared, the group's new writes go elsewhere, so its disks carry less load, and come back
// (copy-back) once no sparing runs on it any more. One variant per controller (`diversion`):
//   (b) 'work-volume': every volume of the group laid behind the first unused work volume (a
//       WorkVolume; a main volume's key is a hash of controller, group and volume names, since a
//       memory volume gets a new id on restart);
//   (c) 'work-disk': every member disk's I/O of the group through the first unused work disk (a
//       WorkVolume whose slots live on one of the controller's disks; a member's key is its slot
//       in the group, so a spare that takes a member's place keeps it);
//   (a) 'backup-volume': per volume of the group, a secondary extent `bk.<volume>` made in the
//       first other group that has no volumes, is optimal, is no other diversion's secondary and
//       has room for all of them, behind a differential bitmap (BackupVolume). All or nothing:
//       when one backup cannot be made, those made are lifted and removed with their extents.
//
// Ownership: ControllerDiversions owns the work volumes and work disk maps (opened by open(),
// after the groups; closed by close(), after the groups), the backup volumes, and at most one
// Diverting per group (its variant, its work, its copy-back state). ControllerDisks (disks.ts)
// owns the disks, groups and volumes, hands them in read-only (DivertedGroup) and decides when:
// start() when a sparing starts, copyBack() on a check that finds no sparing to run (and no
// group lastError), copyingBack() to hold a new sparing back while one runs.
//
// Restarts: a shared work disk map found in use is laid under its group's members again by
// open(); a shared work volume or backup bitmap in use is laid behind its volume again by
// relayVolume() (from ControllerDisks.layVolume), before any write, so reads of diverted blocks
// come from it. A backup found unused (or without its secondary extent) is removed with its extent.
//
// Errors: start() never throws: a diversion that cannot be set up is logged and reported as a
// `diversion` event of kind 'failed', and the sparing goes on without it (the weak group carries
// the writes); no unused work volume, work disk or group is a warning. A copy-back that fails is
// reported (kind 'copy-back-failed' with its code, status lastError) and retried by itself from
// its cursor after COPY_BACK_RETRY_MS: it is not the group's lastError, which waits for an
// operator verb.
//
// Status (read by ControllerDisks.status()): each group's `diversion`, the secondary extents a
// group holds for another (the seed's T1), the member disks' backupStatus (T5) and workDisk, and
// the tables workVolumes (T4), workDisks (T6), workDiskMap (T7) and backupPairs (T2).

import { BlockmirrorError } from '../errors';
import type { Clock } from '../runtime/clock';
import { BackupVolume } from '../storage/backup-volume';
import type { Disk } from '../storage/disk';
import { WorkVolume } from '../storage/diversion';
import type { RaidGroup } from '../storage/raid-group';
import type { Volume } from '../storage/volume';

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

/** The `diversion` events of a controller's disks. */
export interface DiversionEvent {
  group: string;
  /** The work volume, work disk or (backup-volume) secondary group; '' when a set-up failed. */
  work: string;
  kind: 'started' | 'failed' | 'copy-back-started' | 'copy-back-done' | 'copy-back-failed';
  code?: string;
  detail?: string;
}

/** What the diversions see of one of the controller's RAID groups (owned by ControllerDisks). */
export interface DivertedGroup {
  readonly group: RaidGroup;
  /** Disk names in member order (a member replaced: its spare). */
  readonly members: readonly string[];
  /** Names of the volumes laid on the group. */
  readonly volumes: readonly string[];
  /** Volume objects laid on the group, by name. */
  readonly volumeObjects: ReadonlyMap<string, Volume>;
}

export interface ControllerDiversionsOptions {
  controllerId: string;
  variant: DiversionVariant;
  workVolumes: readonly ControllerWorkVolumeSpec[];
  /** Checked by ControllerDisks: each names a disk in no group, not a spare. */
  workDisks: readonly ControllerWorkDiskSpec[];
  /** The controller's groups by name, in configuration order (read, never changed here). */
  groups: ReadonlyMap<string, DivertedGroup>;
  /** The controller's disks by name (a work disk's data disk is one of them). */
  disks: ReadonlyMap<string, { readonly spec: { readonly backing?: 'memory' | 'shared' }; readonly disk: Disk }>;
  clock: Clock;
  /** Bytes copied back per event-loop turn. */
  stepBytes: number;
  logger: { info(fields: object, message: string): void; warn(fields: object, message: string): void };
  /** Receives every diversion event (ControllerDisks emits it as 'diversion'). */
  onEvent: (event: DiversionEvent) => void;
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

export class ControllerDiversions {
  readonly #options: ControllerDiversionsOptions;
  readonly #works = new Map<string, { spec: ControllerWorkVolumeSpec; work: WorkVolume }>();
  readonly #workDisks = new Map<string, { spec: ControllerWorkDiskSpec; work: WorkVolume }>();
  /** Per group name: the work volume its volumes divert to (or the work disk its members do), and its copy-back. */
  readonly #diverting = new Map<string, Diverting>();

  constructor(options: ControllerDiversionsOptions) {
    this.#options = options;
  }

  /** Opens (or creates) the work volumes and work disks; call after the groups are open. */
  open(): void {
    const { controllerId } = this.#options;
    for (const spec of this.#options.workVolumes) {
      const sharedName = spec.sharedName ?? `${controllerId}.${spec.name}`;
      const work = spec.backing === 'shared' && WorkVolume.exists(sharedName)
        ? WorkVolume.open({ name: sharedName })
        : WorkVolume.create({ capacityBytes: spec.capacityBytes, ...(spec.slotBytes === undefined ? {} : { slotBytes: spec.slotBytes }),
          backing: spec.backing ?? 'memory', ...(spec.backing === 'shared' ? { name: sharedName } : {}) });
      this.#works.set(spec.name, { spec, work });
    }
    for (const spec of this.#options.workDisks) {
      const entry = this.#options.disks.get(spec.disk);
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
      for (const [groupName, group] of this.#options.groups) {
        const keys = this.#memberKeys(groupName, group);
        if (!keys.every((key) => work.mains.includes(key))) continue;
        group.group.divertDisks(work, keys);
        this.#diverting.set(groupName, { variant: 'work-disk', work: spec.name, copyingBack: false, lastError: undefined, retryAtMs: 0 });
      }
    }
  }

  #entry(groupName: string): DivertedGroup {
    const entry = this.#options.groups.get(groupName);
    if (entry === undefined) throw new BlockmirrorError('ERR_CONTROLLER_NO_DISK', `no group named ${groupName}`);
    return entry;
  }

  // A member's key in a work disk: stable across restarts and member replacements (the slot, not the disk).
  #memberKeys(groupName: string, entry: DivertedGroup): bigint[] {
    return entry.members.map((_, member) => this.#hashKey(`${this.#options.controllerId}/${groupName}/member-${member}`));
  }

  /**
   * A volume just laid on its group: after a restart during a diversion, the work volume's maps
   * (or a backup bitmap) name it; it goes behind it again before any write, so reads of
   * diverted blocks come from it.
   */
  relayVolume(groupName: string, volumeName: string, volume: Volume): void {
    const entry = this.#entry(groupName);
    for (const [workName, { work }] of this.#works) {
      if (work.state !== 'unused' && work.mains.includes(this.#mainKey(groupName, volumeName))) {
        entry.group.divertVolume(volume, work, this.#mainKey(groupName, volumeName));
        this.#diverting.set(groupName, { variant: 'work-volume', work: workName, copyingBack: false, lastError: undefined, retryAtMs: 0 });
      }
    }
    this.#relayBackup(groupName, entry, volumeName, volume);
  }

  // Variant (a) after a restart: a shared backup volume in use names the secondary extent; the
  // volume goes behind it again before any write. One left unused is removed with its extent.
  #relayBackup(groupName: string, entry: DivertedGroup, volumeName: string, volume: Volume): void {
    const sharedName = this.#backupSharedName(groupName, volumeName);
    if (!BackupVolume.exists(sharedName)) return;
    const extent = this.#backupExtentName(volumeName);
    const secondary = [...this.#options.groups.entries()].find(([n, g]) => n !== groupName && !g.group.closed && g.group.extents().some((e) => e.name === extent));
    const backup = BackupVolume.open({ name: sharedName });
    if (backup.state === 'unused' || secondary === undefined) {
      backup.close();
      BackupVolume.unlink(sharedName);
      if (secondary !== undefined) secondary[1].group.freeExtent(extent);
      return;
    }
    entry.group.divertToBackup(volume, backup, secondary[1].group, extent);
    let diverting = this.#diverting.get(groupName);
    if (diverting === undefined) {
      diverting = { variant: 'backup-volume', work: secondary[0], backups: new Map(), copyingBack: false, lastError: undefined, retryAtMs: 0 };
      this.#diverting.set(groupName, diverting);
    }
    diverting.backups?.set(volumeName, { backup, extent, sharedName });
  }

  #backupExtentName(volumeName: string): string {
    const name = `bk.${volumeName}`;
    return name.length <= 39 ? name : `bk.${this.#hashKey(volumeName).toString(16)}`;
  }

  #backupSharedName(groupName: string, volumeName: string): string {
    const name = `${this.#options.controllerId}.${groupName}.${volumeName}`;
    return name.length <= 120 ? name : `${this.#options.controllerId.slice(0, 40)}.${this.#hashKey(name).toString(16)}`;
  }

  #sharedGroup(entry: DivertedGroup): boolean {
    return entry.members.every((name) => this.#options.disks.get(name)?.spec.backing === 'shared');
  }

  /**
   * A sparing starts on the group: its new writes are diverted (the configured variant), unless
   * they are already. Never throws: a diversion that cannot be set up is logged and reported.
   */
  start(groupName: string): void {
    try {
      this.#start(groupName, this.#entry(groupName));
    } catch (error) {
      // The sparing goes on without a diversion: the weak group carries the writes.
      const failure = error as Error & { code?: string };
      this.#options.logger.warn({ group: groupName, code: failure.code }, `group ${groupName}: writes are not diverted: ${failure.message}`);
      this.#options.onEvent({ group: groupName, work: '', kind: 'failed', code: failure.code ?? failure.name, detail: failure.message });
    }
  }

  // Diversion variant (b): at the start of a sparing every volume of the group is laid behind an
  // unused work volume; once no sparing runs any more, the diverted blocks are copied back and
  // the volumes lifted (also after a restart that found the work volume in use).
  #start(name: string, entry: DivertedGroup): void {
    if (this.#diverting.has(name)) return;
    if (this.#options.variant === 'work-disk') {
      this.#startDiskDiversion(name, entry);
      return;
    }
    if (this.#options.variant === 'backup-volume') {
      this.#startBackupDiversion(name, entry);
      return;
    }
    if (this.#options.variant !== 'work-volume' || entry.volumeObjects.size === 0) return;
    const free = [...this.#works.entries()].find(([, w]) => w.work.state === 'unused');
    if (free === undefined) {
      this.#options.logger.warn({ group: name }, `group ${name}: no unused work volume, writes are not diverted`);
      return;
    }
    const [workName, { work }] = free;
    for (const [volumeName, volume] of entry.volumeObjects) entry.group.divertVolume(volume, work, this.#mainKey(name, volumeName));
    work.start();
    this.#diverting.set(name, { variant: 'work-volume', work: workName, copyingBack: false, lastError: undefined, retryAtMs: 0 });
    this.#options.onEvent({ group: name, work: workName, kind: 'started' });
  }

  // Diversion variant (c): every member disk's I/O of the group goes through an unused work disk.
  #startDiskDiversion(name: string, entry: DivertedGroup): void {
    const free = [...this.#workDisks.entries()].find(([, w]) => !w.work.closed && w.work.state === 'unused' && w.work.dataDisk?.status !== 'failed');
    if (free === undefined) {
      this.#options.logger.warn({ group: name }, `group ${name}: no unused work disk, writes are not diverted`);
      return;
    }
    const [workName, { work }] = free;
    entry.group.divertDisks(work, this.#memberKeys(name, entry));
    work.start();
    this.#diverting.set(name, { variant: 'work-disk', work: workName, copyingBack: false, lastError: undefined, retryAtMs: 0 });
    this.#options.onEvent({ group: name, work: workName, kind: 'started' });
  }

  // Diversion variant (a): a secondary volume per volume of the group, created on the fly as an
  // extent of an unused group (one with no volumes, optimal, not the secondary of another
  // diversion), each behind a differential bitmap.
  #startBackupDiversion(name: string, entry: DivertedGroup): void {
    if (entry.volumeObjects.size === 0) return;
    const taken = new Set([...this.#diverting.values()].flatMap((d) => (d.variant === 'backup-volume' ? [d.work] : [])));
    for (const [candidateName, candidate] of this.#options.groups) {
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
      this.#diverting.set(name, { variant: 'backup-volume', work: candidateName, backups, copyingBack: false, lastError: undefined, retryAtMs: 0 });
      this.#options.onEvent({ group: name, work: candidateName, kind: 'started' });
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

  /** True while the group's diverted blocks are being copied back (no new sparing starts then). */
  copyingBack(groupName: string): boolean {
    return this.#diverting.get(groupName)?.copyingBack === true;
  }

  /**
   * No sparing runs on the group any more: its diverted blocks are copied back and the diversion
   * lifted. Nothing happens while none is diverted, one copy-back runs, or a failed one waits
   * for its retry time.
   */
  copyBack(name: string): void {
    const entry = this.#entry(name);
    const diverting = this.#diverting.get(name);
    if (diverting === undefined || diverting.copyingBack || this.#options.clock.nowMs() < diverting.retryAtMs) return;
    const { stepBytes } = this.#options;
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
    this.#options.onEvent({ group: name, work: diverting.work, kind: 'copy-back-started' });
    run.then(
      () => {
        if (diverting.variant === 'work-disk') {
          if (!entry.group.closed) entry.group.divertDisks(null);
        } else if (diverting.variant === 'backup-volume') {
          const secondary = this.#options.groups.get(diverting.work);
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
        this.#diverting.delete(name);
        this.#options.onEvent({ group: name, work: diverting.work, kind: 'copy-back-done' });
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
        this.#options.onEvent({ group: name, work: diverting.work, kind: 'copy-back-failed', code: error.code ?? 'Error', detail: error.message });
      },
    );
  }

  /** A group's `diversion` in status: null while none. */
  groupStatus(groupName: string) {
    const diverting = this.#diverting.get(groupName);
    return diverting === undefined ? null : {
      variant: diverting.variant,
      ...(diverting.variant === 'work-disk' ? { workDisk: diverting.work }
        : diverting.variant === 'backup-volume' ? { secondaryGroup: diverting.work } : { workVolume: diverting.work }),
      copyingBack: diverting.copyingBack,
      lastError: diverting.lastError ?? null,
    };
  }

  /** The secondary volumes (variant (a)) the group holds for others, as the seed's T1 shows them, in group order. */
  secondaryExtents(groupName: string): string[] {
    return [...this.#options.groups.keys()].flatMap((other) => {
      const diverting = this.#diverting.get(other);
      return diverting?.variant === 'backup-volume' && diverting.work === groupName ? [...(diverting.backups?.values() ?? [])].map((b) => b.extent) : [];
    });
  }

  /** The seed's T5 for a member disk of the group (undefined: a disk in no group). */
  backupStatus(groupName: string | undefined): string | null {
    return this.#diverting.get(groupName ?? '')?.variant === 'work-disk' ? RENEWED_DATA_BEING_BACKED_UP : null;
  }

  /** The work disk laid on the disk, or null. */
  workDiskOn(diskName: string): string | null {
    return [...this.#workDisks.entries()].find(([, w]) => w.spec.disk === diskName)?.[0] ?? null;
  }

  /** The status tables: work volumes (T4), work disks (T6), work disk map (T7), backup pairs (T2). */
  tables() {
    return {
      // The seed's work volumes table (T4): primary = the main volumes while in use.
      workVolumes: [...this.#works.entries()].map(([name, { work }]) => {
        if (work.closed) return { workVolume: name, capacityBytes: 0, state: 'closed', primary: null, terminalAddress: null, bitmap: '', stats: null };
        const ids = work.mains;
        const names = [...this.#options.groups.entries()].flatMap(([g, entry]) => [...entry.volumeObjects.keys()].filter((v) => ids.includes(this.#mainKey(g, v))));
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
      backupPairs: [...this.#options.groups.keys()].flatMap((name) => {
        const diverting = this.#diverting.get(name);
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
    };
  }

  // The member disk names of a work disk's mains, by main index (null: a main of no open group).
  #mainDiskNames(work: WorkVolume): (string | null)[] {
    const names = new Map<bigint, string>();
    for (const [groupName, entry] of this.#options.groups) {
      this.#memberKeys(groupName, entry).forEach((key, member) => names.set(key, entry.members[member] as string));
    }
    return work.mains.map((key) => names.get(key) ?? null);
  }

  /** Closes the backup volumes, work volumes and work disk maps; call after the groups are closed. Idempotent. */
  close(): void {
    for (const name of this.#options.groups.keys()) for (const { backup } of this.#diverting.get(name)?.backups?.values() ?? []) backup.close();
    for (const { work } of this.#works.values()) work.close();
    for (const { work } of this.#workDisks.values()) work.close();
  }
}
