// Notes on the design
// -------------------
// RaidGroup is the TypeScript face of bm::RaidGroup (native/core/raid.hpp): one linear address
// space over member Disks at level 'single', 'raid1' (n-way mirror) or 'raid5' (rotating parity,
// left-symmetric, stripe unit configurable). The address map, raid5 parity (read-modify-write,
// reconstruct-write, full-stripe writes), degraded reads and the rebuild are native; this class
// checks arguments, names things, and runs a rebuild as bounded native steps off the I/O path
// (setImmediate between steps, so host I/O interleaves and the event loop is never held longer
// than one step).
//
// The member states (active, failed, rebuilding + cursor) live in the group's metadata region
// (shared: blockmirror.raid.<name>), so a restarted controller that opens the group with the same
// disks (a member being rebuilt: its new disk) finds them as they were and resumes a rebuild at
// its cursor.
//
// Errors: ERR_RAID_READ_FAILED / ERR_RAID_WRITE_FAILED when the bytes cannot be produced or
// stored with the redundancy left (data loss is reported, never returned as zeros);
// ERR_RAID_MEMBER_STATE for a rebuild the member's state does not allow; ERR_RAID_BAD_HEADER
// when the disks given to open() are not the group's; ERR_RAID_CLOSED after close.

import { BlockmirrorError } from '../errors';
import { addon, NativeRegionKind, NativeRegionKindValue } from '../native';
import { Disk, kDiskHandle, NativeDisk } from './disk';
import { Volume, kNativeHandle as kVolumeHandle } from './volume';
import type { NativeVolume } from '../native';
import { BackupVolume, kBackupHandle, type NativeBackupVolume } from './backup-volume';
import { kWorkHandle, WorkVolume, type NativeWorkVolume } from './diversion';
import { checkBytes, checkIndex, checkIntegerIn, checkObject, checkOneOf, checkPowerOfTwo, checkSpan, namedTarget, orDefault, sharedRegionName } from './validate';

export type RaidLevel = 'single' | 'raid1' | 'raid5';
export const RAID_LEVELS: readonly RaidLevel[] = Object.freeze(['single', 'raid1', 'raid5']);
export type MemberState = 'active' | 'failed' | 'rebuilding';
const MEMBER_STATES: readonly MemberState[] = ['active', 'failed', 'rebuilding'];

export interface RaidGroupCreateOptions {
  level: RaidLevel;
  /** Member disks in order: single 1, raid1 2..16, raid5 3..16. */
  disks: Disk[];
  /** raid5: a power of two from the largest sector size to 1 MiB. @default 65536 */
  stripeUnitBytes?: number;
  /** Where the member states live. @default 'memory' */
  backing?: 'memory' | 'shared';
  /** Shared: the group name (required). Memory: a label. @default undefined */
  name?: string;
}

/** Where one group byte offset lives. */
export interface RaidLocation {
  member: number;
  diskByteOffset: number;
  /** Bytes from here that stay on the same member unit. */
  runBytes: number;
  stripeIndex: number;
  /** raid5: the stripe's parity member; undefined below raid5. */
  parityMember: number | undefined;
}

export interface RaidMember {
  member: number;
  state: MemberState;
  diskId: bigint;
  /** Rebuilding: bytes of the member already current. */
  rebuildCursorBytes: number;
}

export interface RaidStats {
  readCount: number;
  writeCount: number;
  fullStripeWriteCount: number;
  readModifyWriteCount: number;
  reconstructWriteCount: number;
  degradedReadCount: number;
  memberFailureCount: number;
  dataLostCount: number;
  rebuildBytes: number;
}

export interface RebuildOptions {
  /** Bytes rebuilt per native step (one event-loop turn). @default 4194304 */
  stepBytes?: number;
  /** Called after each step. @default undefined */
  onProgress?: (progress: { member: number; cursorBytes: number; memberBytes: number }) => void;
}

interface NativeRaidGroup {
  /** [level, memberCount, stripeUnitBytes, memberBytes, capacityBytes, kind, region name] */
  info(): [number, number, number, number, number, NativeRegionKindValue, string];
  map(byteOffset: number): [number, number, number, number, number];
  read(byteOffset: number, target: Uint8Array): void;
  write(byteOffset: number, source: Uint8Array): void;
  writeZeroes(byteOffset: number, byteLength: number): void;
  members(): [number, number, bigint, number][];
  failMember(member: number): void;
  startRebuild(member: number, disk: NativeDisk): void;
  rebuildStep(maxBytes: number): number;
  startSparing(member: number, disk: NativeDisk): void;
  resumeSparing(disk: NativeDisk): void;
  sparingStep(maxBytes: number): number;
  sparing(): [number, bigint, number, boolean];
  cancelSparing(): void;
  stats(): Float64Array;
  allocateExtent(name: string, byteLength: number): [string, number, number];
  freeExtent(name: string): boolean;
  extents(): [string, number, number][];
  attachVolume(volume: NativeVolume, extentName: string): void;
  detachVolume(volume: NativeVolume): void;
  divertVolume(volume: NativeVolume, work: NativeWorkVolume | null, mainKey?: bigint): number;
  divertDisks(work: NativeWorkVolume | null, mainKeys: bigint[]): number[];
  divertToBackup(volume: NativeVolume, backup: NativeBackupVolume | null, secondary?: NativeRaidGroup, extentName?: string): void;
  destroy(): void;
  close(): void;
}

/** A span of the group given to one volume. */
export interface RaidExtent {
  name: string;
  groupByteOffset: number;
  byteLength: number;
}

interface RaidAddon {
  RaidGroup: new (kind: NativeRegionKindValue, name: string, create: boolean, level: number, stripeUnitBytes: number, disks: NativeDisk[]) => NativeRaidGroup;
  MAX_RAID_MEMBERS: number;
  MAX_RAID_STRIPE_UNIT_BYTES: number;
}

const native = addon as unknown as RaidAddon;
const SHARED_PREFIX = 'blockmirror.raid.';

export class RaidGroup {
  static readonly MAX_MEMBERS: number = native.MAX_RAID_MEMBERS;
  static readonly MAX_STRIPE_UNIT_BYTES: number = native.MAX_RAID_STRIPE_UNIT_BYTES;
  static readonly DEFAULT_STRIPE_UNIT_BYTES = 65536;
  static readonly DEFAULT_REBUILD_STEP_BYTES = 4 * 1024 * 1024;
  /** Largest step the addon takes in one call. */
  static readonly MAX_REBUILD_STEP_BYTES = 64 * 1024 * 1024;

  readonly level: RaidLevel;
  readonly stripeUnitBytes: number;
  /** Bytes of each member disk the group uses. */
  readonly memberBytes: number;
  readonly capacityBytes: number;
  readonly name: string | undefined;
  #handle: NativeRaidGroup | null;
  #disks: Disk[];
  #rebuild: Promise<void> | null = null;
  #sparingDisk: Disk | undefined = undefined;

  private constructor(handle: NativeRaidGroup, disks: Disk[], name: string | undefined) {
    this.#handle = handle;
    this.#disks = [...disks];
    const [level, , stripeUnitBytes, memberBytes, capacityBytes] = handle.info();
    this.level = RAID_LEVELS[level] as RaidLevel;
    this.stripeUnitBytes = stripeUnitBytes;
    this.memberBytes = memberBytes;
    this.capacityBytes = capacityBytes;
    this.name = name;
  }

  static create(options: RaidGroupCreateOptions): RaidGroup {
    checkObject(options, 'options');
    checkOneOf(options.level, 'options.level', RAID_LEVELS);
    const disks = checkDisks(options.disks);
    const stripeUnitBytes = orDefault(options.stripeUnitBytes, RaidGroup.DEFAULT_STRIPE_UNIT_BYTES);
    checkPowerOfTwo(stripeUnitBytes, 'options.stripeUnitBytes', 512, RaidGroup.MAX_STRIPE_UNIT_BYTES);
    const backing = orDefault(options.backing, 'memory' as const);
    checkOneOf(backing, 'options.backing', ['memory', 'shared']);
    const regionName = backing === 'shared' ? sharedRegionName(options.name, 'options.name', SHARED_PREFIX) : '';
    const kind = backing === 'shared' ? NativeRegionKind.shared : NativeRegionKind.anonymous;
    const handle = new native.RaidGroup(kind, regionName, true, RAID_LEVELS.indexOf(options.level), stripeUnitBytes, disks.map((d) => d[kDiskHandle]));
    return new RaidGroup(handle, disks, options.name);
  }

  /** Opens a shared group with its disks in member order (a member being rebuilt: its new disk). */
  static open(options: { name: string; disks: Disk[] }): RaidGroup {
    const target = namedTarget({ name: options?.name }, 'options', SHARED_PREFIX);
    const disks = checkDisks(options.disks);
    const handle = new native.RaidGroup(NativeRegionKind.shared, target.regionName, false, 0, 0, disks.map((d) => d[kDiskHandle]));
    return new RaidGroup(handle, disks, options.name);
  }

  get closed(): boolean {
    return this.#handle === null;
  }

  /** The member disks in order (a member being rebuilt: its new disk). */
  get disks(): readonly Disk[] {
    return this.#disks;
  }

  #native(): NativeRaidGroup {
    if (this.#handle === null) throw new BlockmirrorError('ERR_RAID_CLOSED', 'RAID group is closed');
    return this.#handle;
  }

  map(byteOffset: number): RaidLocation {
    checkIndex(byteOffset, 'byteOffset');
    if (byteOffset >= this.capacityBytes) throw new RangeError(`byteOffset ${byteOffset} is outside the group (${this.capacityBytes} bytes)`);
    const [member, diskByteOffset, runBytes, stripeIndex, parity] = this.#native().map(byteOffset);
    return { member, diskByteOffset, runBytes, stripeIndex, parityMember: parity < 0 ? undefined : parity };
  }

  read(byteOffset: number, target: Uint8Array): void {
    checkBytes(target, 'target');
    checkIndex(byteOffset, 'byteOffset');
    checkSpan(byteOffset, target.byteLength, this.capacityBytes, 'group');
    this.#native().read(byteOffset, target);
  }

  write(byteOffset: number, source: Uint8Array): void {
    checkBytes(source, 'source');
    checkIndex(byteOffset, 'byteOffset');
    checkSpan(byteOffset, source.byteLength, this.capacityBytes, 'group');
    this.#native().write(byteOffset, source);
  }

  writeZeroes(byteOffset: number, byteLength: number): void {
    checkIndex(byteOffset, 'byteOffset');
    checkIndex(byteLength, 'byteLength');
    checkSpan(byteOffset, byteLength, this.capacityBytes, 'group');
    this.#native().writeZeroes(byteOffset, byteLength);
  }

  members(): RaidMember[] {
    return this.#native()
      .members()
      .map(([member, state, diskId, rebuildCursorBytes]) => ({ member, state: MEMBER_STATES[state] as MemberState, diskId, rebuildCursorBytes }));
  }

  /** Members failed or rebuilding: 'optimal', 'degraded' (redundancy reduced), 'failed' (data lost). */
  get condition(): 'optimal' | 'degraded' | 'failed' {
    const members = this.members();
    // A member whose disk reports itself failed counts as failed before the group's next I/O notices.
    const failed = members.filter((m) => m.state === 'failed' || (m.state === 'active' && this.#disks[m.member]?.status === 'failed')).length;
    const rebuilding = members.filter((m) => m.state === 'rebuilding').length;
    const redundancy = this.level === 'single' ? 0 : this.level === 'raid1' ? members.length - 1 : 1;
    if (failed + rebuilding === 0) return 'optimal';
    return failed + rebuilding > redundancy ? 'failed' : 'degraded';
  }

  /** Marks a member failed (an operator pulled it). */
  failMember(member: number): void {
    checkIntegerIn(member, 'member', 0, this.#disks.length - 1);
    this.#native().failMember(member);
  }

  /** Puts `disk` in place of a failed member and starts its rebuild at cursor 0 (steps run by rebuildStep or rebuild()). */
  startRebuild(member: number, disk: Disk): void {
    checkIntegerIn(member, 'member', 0, this.#disks.length - 1);
    if (!(disk instanceof Disk)) throw new TypeError('disk must be a Disk');
    this.#native().startRebuild(member, disk[kDiskHandle]);
    this.#disks[member] = disk;
  }

  /** One bounded rebuild step; returns the bytes rebuilt (0: no rebuild running). */
  rebuildStep(maxBytes: number = RaidGroup.DEFAULT_REBUILD_STEP_BYTES): number {
    checkIntegerIn(maxBytes, 'maxBytes', 1, RaidGroup.MAX_REBUILD_STEP_BYTES);
    return this.#native().rebuildStep(maxBytes);
  }

  /** The member being rebuilt and its cursor, or undefined. */
  get rebuildProgress(): { member: number; cursorBytes: number; memberBytes: number } | undefined {
    const rebuilding = this.members().find((m) => m.state === 'rebuilding');
    return rebuilding === undefined ? undefined : { member: rebuilding.member, cursorBytes: rebuilding.rebuildCursorBytes, memberBytes: this.memberBytes };
  }

  /**
   * Runs the rebuild that startRebuild began (or resumes one found in the metadata) to the end,
   * one step per event-loop turn. Rejects with the step's error (ERR_RAID_READ_FAILED when a second
   * member is unreadable); the member stays rebuilding at its cursor.
   */
  rebuild(options: RebuildOptions = {}): Promise<void> {
    checkObject(options, 'options');
    const stepBytes = orDefault(options.stepBytes, RaidGroup.DEFAULT_REBUILD_STEP_BYTES);
    checkIntegerIn(stepBytes, 'options.stepBytes', 1, RaidGroup.MAX_REBUILD_STEP_BYTES);
    if (this.#rebuild !== null) return this.#rebuild;
    const run = async (): Promise<void> => {
      for (;;) {
        await new Promise<void>((resolve) => setImmediate(resolve));
        if (this.#handle === null) throw new BlockmirrorError('ERR_RAID_CLOSED', 'RAID group closed during its rebuild');
        const progress = this.rebuildProgress;
        if (progress === undefined) return;
        this.#native().rebuildStep(stepBytes);
        const after = this.members()[progress.member] as RaidMember;
        options.onProgress?.({ member: progress.member, cursorBytes: after.state === 'active' ? this.memberBytes : after.rebuildCursorBytes, memberBytes: this.memberBytes });
      }
    };
    this.#rebuild = run().finally(() => {
      this.#rebuild = null;
    });
    return this.#rebuild;
  }

  // Sparing (seed 004; native/core/raid_sparing.cpp): an active (suspect) member copied onto a
  // spare while it stays in service; at the end the spare takes its place. The member, the
  // spare's disk id and the cursor live in the metadata, so open() finds a sparing where it
  // stood: resumeSparing(spare) gives the disk back before the steps go on.

  /** Starts copying member `member`'s disk onto `disk` (ERR_RAID_MEMBER_STATE unless the member is active and nothing else rebuilds or spares). */
  startSparing(member: number, disk: Disk): void {
    checkIntegerIn(member, 'member', 0, this.#disks.length - 1);
    if (!(disk instanceof Disk)) throw new TypeError('disk must be a Disk');
    this.#native().startSparing(member, disk[kDiskHandle]);
    this.#sparingDisk = disk;
  }

  /** After open(): attaches the spare of a sparing found in the metadata (ERR_RAID_BAD_HEADER for another disk). */
  resumeSparing(disk: Disk): void {
    if (!(disk instanceof Disk)) throw new TypeError('disk must be a Disk');
    this.#native().resumeSparing(disk[kDiskHandle]);
    this.#sparingDisk = disk;
  }

  /** The sparing in progress (attached: its spare disk is known to this object). */
  get sparingProgress(): { member: number; diskId: bigint; cursorBytes: number; memberBytes: number; attached: boolean } | undefined {
    const [member, diskId, cursorBytes, attached] = this.#native().sparing();
    return member < 0 ? undefined : { member, diskId, cursorBytes, memberBytes: this.memberBytes, attached };
  }

  /** One bounded copy step; returns the bytes copied (0: no sparing). The last one swaps the spare in. */
  sparingStep(maxBytes: number = RaidGroup.DEFAULT_REBUILD_STEP_BYTES): number {
    checkIntegerIn(maxBytes, 'maxBytes', 1, RaidGroup.MAX_REBUILD_STEP_BYTES);
    const before = this.sparingProgress;
    let done: number;
    try {
      done = this.#native().sparingStep(maxBytes);
    } finally {
      if (before !== undefined && this.sparingProgress === undefined) {
        // Swapped (or cancelled: the member failed, the spare failed a write).
        if (this.members()[before.member]?.diskId === before.diskId && this.#sparingDisk !== undefined) this.#disks[before.member] = this.#sparingDisk;
        this.#sparingDisk = undefined;
      }
    }
    return done;
  }

  /** Stops a sparing; the spare is no longer written. */
  cancelSparing(): void {
    this.#native().cancelSparing();
    this.#sparingDisk = undefined;
  }

  /** Runs the sparing to its swap, one step per event-loop turn (as rebuild()). */
  async spare(options: RebuildOptions = {}): Promise<void> {
    checkObject(options, 'options');
    const stepBytes = orDefault(options.stepBytes, RaidGroup.DEFAULT_REBUILD_STEP_BYTES);
    checkIntegerIn(stepBytes, 'options.stepBytes', 1, RaidGroup.MAX_REBUILD_STEP_BYTES);
    for (;;) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (this.#handle === null) throw new BlockmirrorError('ERR_RAID_CLOSED', 'RAID group closed during its sparing');
      const progress = this.sparingProgress;
      if (progress === undefined) return;
      this.sparingStep(stepBytes);
      const after = this.sparingProgress;
      options.onProgress?.({ member: progress.member, cursorBytes: after === undefined ? this.memberBytes : after.cursorBytes, memberBytes: this.memberBytes });
    }
  }

  /** Volume extents, in group order. */
  extents(): RaidExtent[] {
    return this.#native().extents().map(([name, groupByteOffset, byteLength]) => ({ name, groupByteOffset, byteLength }));
  }

  /**
   * Takes byteLength bytes (rounded up to extentAlignmentBytes) of unused space, first fit, for a
   * volume. ERR_RAID_NO_SPACE when no gap is large enough, ERR_RAID_EXTENT_EXISTS for a name in use.
   */
  allocateExtent(name: string, byteLength: number): RaidExtent {
    checkExtentName(name);
    checkIntegerIn(byteLength, 'byteLength', 1, this.capacityBytes);
    const [, groupByteOffset, length] = this.#native().allocateExtent(name, byteLength);
    return { name, groupByteOffset, byteLength: length };
  }

  /** Returns an extent's space to unused; false when there is none of that name. */
  freeExtent(name: string): boolean {
    checkExtentName(name);
    return this.#native().freeExtent(name);
  }

  /** raid5: one stripe of data; otherwise 4096. */
  get extentAlignmentBytes(): number {
    return this.level === 'raid5' ? this.stripeUnitBytes * (this.#disks.length - 1) : 4096;
  }

  /**
   * Lays `volume` on the extent: from now on its writes are also stored in the group (after its
   * own region, which snapshots preserve from) and its reads come from the group.
   */
  /**
   * Diversion variant (b) (src/storage/diversion.ts): lays `work` behind a volume laid on this
   * group (its group share is diverted, reads of diverted blocks come from it) and returns the
   * volume's main index in it; null lifts it (after a copy-back). ERR_DIVERSION_MAINS_FULL.
   * `mainKey` (default: the volume id) names the main in the work volume's table: pass a key that
   * stays the same across restarts when the volume object may be re-created with a new id.
   */
  divertVolume(volume: Volume, work: WorkVolume | null, mainKey?: bigint): number {
    if (!(volume instanceof Volume)) throw new TypeError('volume must be a Volume');
    if (work !== null && !(work instanceof WorkVolume)) throw new TypeError('work must be a WorkVolume or null');
    if (mainKey !== undefined && typeof mainKey !== 'bigint') throw new TypeError('mainKey must be a bigint');
    return mainKey === undefined
      ? this.#native().divertVolume(volume[kVolumeHandle], work === null ? null : work[kWorkHandle])
      : this.#native().divertVolume(volume[kVolumeHandle], work === null ? null : work[kWorkHandle], mainKey);
  }

  /**
   * Diversion variant (c) (docs/raid.md): lays a work disk (a WorkVolume with a `dataDisk`) under
   * every member's I/O; member m is registered in its mains with `mainKeys[m]` (default: the
   * member disks' ids; pass keys that stay the same across restarts for memory disks). Returns
   * the members' main indexes. null lifts it (copy back first). RangeError when the work disk is
   * a member or keeps its slots in its region; ERR_DIVERSION_MAINS_FULL past 8 mains;
   * ERR_DIVERSION_STATE while another work disk in use (not `unused`) is laid under the group. A
   * refused call changes nothing.
   */
  divertDisks(work: WorkVolume | null, mainKeys?: bigint[]): number[] {
    if (work === null) return this.#native().divertDisks(null, []);
    if (!(work instanceof WorkVolume)) throw new TypeError('work must be a WorkVolume or null');
    if (work.dataDisk === undefined) throw new RangeError('work must be a work disk (a WorkVolume with a dataDisk)');
    const keys = mainKeys ?? this.disks.map((disk) => disk.id);
    if (!Array.isArray(keys) || keys.some((key) => typeof key !== 'bigint')) throw new TypeError('mainKeys must be an array of bigints');
    if (keys.length !== this.disks.length) throw new RangeError(`mainKeys needs one key per member (${this.disks.length})`);
    return this.#native().divertDisks(work[kWorkHandle], keys);
  }

  /**
   * Diversion variant (a) (docs/raid.md): the volume's group share goes through `backup`, whose
   * secondary is the extent `extentName` of `secondary` (another group: allocate it first, at
   * least backup.byteLength long). The backup is exactly as long as the volume (RangeError
   * otherwise); ERR_DIVERSION_STATE while another backup in use is behind the volume. null lifts
   * it (copy back first).
   */
  divertToBackup(volume: Volume, backup: BackupVolume | null, secondary?: RaidGroup, extentName?: string): void {
    if (!(volume instanceof Volume)) throw new TypeError('volume must be a Volume');
    if (backup === null) {
      this.#native().divertToBackup(volume[kVolumeHandle], null);
      return;
    }
    if (!(backup instanceof BackupVolume)) throw new TypeError('backup must be a BackupVolume or null');
    if (!(secondary instanceof RaidGroup)) throw new TypeError('secondary must be a RaidGroup');
    checkExtentName(extentName);
    if (backup.byteLength !== volume.capacityBytes) throw new RangeError('the backup volume must be as long as the volume');
    this.#native().divertToBackup(volume[kVolumeHandle], backup[kBackupHandle], secondary.#native(), extentName as string);
  }

  attachVolume(volume: Volume, extentName: string): void {
    if (!(volume instanceof Volume)) throw new TypeError('volume must be a Volume');
    checkExtentName(extentName);
    this.#native().attachVolume(volume[kVolumeHandle], extentName);
  }

  detachVolume(volume: Volume): void {
    if (!(volume instanceof Volume)) throw new TypeError('volume must be a Volume');
    this.#native().detachVolume(volume[kVolumeHandle]);
  }

  stats(): RaidStats {
    const s = this.#native().stats();
    return {
      readCount: s[0] as number,
      writeCount: s[1] as number,
      fullStripeWriteCount: s[2] as number,
      readModifyWriteCount: s[3] as number,
      reconstructWriteCount: s[4] as number,
      degradedReadCount: s[5] as number,
      memberFailureCount: s[6] as number,
      dataLostCount: s[7] as number,
      rebuildBytes: s[8] as number,
    };
  }

  /** Closes and removes a shared group's metadata (the disks stay). */
  destroy(): void {
    this.#native().destroy();
    this.#handle = null;
  }

  /** Idempotent; the disks stay open (their owner closes them). */
  close(): void {
    if (this.#handle === null) return;
    this.#handle.close();
    this.#handle = null;
  }
}

function checkExtentName(name: unknown): asserts name is string {
  if (typeof name !== 'string') throw new TypeError('an extent name must be a string');
  if (name.length < 1 || name.length > 39 || Buffer.byteLength(name) !== name.length) throw new RangeError(`extent names are 1..39 ASCII characters (got ${JSON.stringify(name)})`);
}

function checkDisks(disks: unknown): Disk[] {
  if (!Array.isArray(disks)) throw new TypeError('options.disks must be an array of Disk');
  if (disks.length < 1 || disks.length > RaidGroup.MAX_MEMBERS) throw new RangeError(`options.disks must hold 1..${RaidGroup.MAX_MEMBERS} disks (got ${disks.length})`);
  disks.forEach((disk, i) => {
    if (!(disk instanceof Disk)) throw new TypeError(`options.disks[${i}] must be a Disk`);
  });
  return disks as Disk[];
}
