// Notes on the design
// -------------------
// BackupVolume is the TypeScript face of bm::BackupVolume (native/core/backup_diversion.hpp),
// diversion variant (a) of seed 004: while a weak group's failing disk is spared, the new writes
// of a main volume's group share go to a secondary volume created on the fly in an unused group
// (an extent of that group, at the same offsets: a local pair in status "update data being
// backed up"), and a differential bitmap marks the blocks whose newest bytes live there.
// RaidGroup.divertToBackup(volume, backup, secondaryGroup, extentName) lays it behind the volume's
// extent (step 4 of the write path, as the work volume of variant (b)).
//
// The bitmap and the state live in the backup's region: shared (blockmirror.backup.<name>), they
// survive a SIGKILL with the group's disks, which hold the secondary's data; open() finds them.
// States: 'unused', 'diverting', 'copying-back' (copyBack() copies each set block back to the
// main in bounded steps, one per event-loop turn; a host write to a diverted block first copies
// it back). When copy-back ends the bitmap is clear and the state 'unused'.

import { addon, NativeRegionKind, NativeRegionKindValue } from '../native';
import { Region } from './region';
import { checkIntegerIn, checkObject, checkOneOf, namedTarget, orDefault, sharedRegionName } from './validate';

export type BackupState = 'unused' | 'diverting' | 'copying-back';
const STATES: Record<number, BackupState> = { 0: 'unused', 1: 'diverting', 3: 'copying-back' };

export interface NativeBackupVolume {
  info(): [number, number, number, number, number];
  bitmap(maxBlocks: number): Uint8Array;
  start(): void;
  beginCopyBack(): void;
  copyBackStep(maxBlocks: number): number;
  stats(): Float64Array;
  close(): void;
}

interface BackupAddon {
  BackupVolume: new (kind: NativeRegionKindValue, name: string, create: boolean, byteLength: number, blockBytes: number) => NativeBackupVolume;
}

const native = addon as unknown as BackupAddon;
const SHARED_PREFIX = 'blockmirror.backup.';
export const kBackupHandle = Symbol('blockmirror.backupVolume');

export interface BackupVolumeCreateOptions {
  /** The main volume's bytes (a multiple of blockBytes). */
  byteLength: number;
  /** The differential bitmap's unit: a power of two 512..1 MiB. @default 4096 */
  blockBytes?: number;
  /** @default 'memory' */
  backing?: 'memory' | 'shared';
  /** Shared: its name (required). */
  name?: string;
}

export interface BackupVolumeStats {
  divertedWrites: number;
  divertedReads: number;
  /** Writes the secondary refused, stored on the main instead. */
  fallbackWrites: number;
  copiedBackBlocks: number;
}

export class BackupVolume {
  static readonly DEFAULT_BLOCK_BYTES = 4096;
  readonly byteLength: number;
  readonly blockBytes: number;
  readonly name: string | undefined;
  #handle: NativeBackupVolume | null;

  private constructor(handle: NativeBackupVolume, name: string | undefined) {
    this.#handle = handle;
    const [byteLength, blockBytes] = handle.info();
    this.byteLength = byteLength;
    this.blockBytes = blockBytes;
    this.name = name;
  }

  static create(options: BackupVolumeCreateOptions): BackupVolume {
    checkObject(options, 'options');
    const blockBytes = orDefault(options.blockBytes, BackupVolume.DEFAULT_BLOCK_BYTES);
    checkIntegerIn(blockBytes, 'options.blockBytes', 512, 1 << 20);
    if ((blockBytes & (blockBytes - 1)) !== 0) throw new RangeError('options.blockBytes must be a power of two');
    checkIntegerIn(options.byteLength, 'options.byteLength', blockBytes, 2 ** 50);
    if (options.byteLength % blockBytes !== 0) throw new RangeError('options.byteLength must be a multiple of blockBytes');
    const backing = orDefault(options.backing, 'memory' as const);
    checkOneOf(backing, 'options.backing', ['memory', 'shared']);
    const regionName = backing === 'shared' ? sharedRegionName(options.name, 'options.name', SHARED_PREFIX) : '';
    const kind = backing === 'shared' ? NativeRegionKind.shared : NativeRegionKind.anonymous;
    return new BackupVolume(new native.BackupVolume(kind, regionName, true, options.byteLength, blockBytes), options.name);
  }

  /** Opens a shared backup volume (its bitmap as a SIGKILL left it). */
  static open(options: { name: string }): BackupVolume {
    const target = namedTarget({ name: options?.name }, 'options', SHARED_PREFIX);
    return new BackupVolume(new native.BackupVolume(NativeRegionKind.shared, target.regionName, false, 0, 0), options.name);
  }

  static exists(name: string): boolean {
    return Region.exists('shared', `${SHARED_PREFIX}${name}`);
  }

  static unlink(name: string): boolean {
    return Region.unlink('shared', `${SHARED_PREFIX}${name}`);
  }

  get [kBackupHandle](): NativeBackupVolume {
    return this.#native();
  }

  #native(): NativeBackupVolume {
    if (this.#handle === null) throw new TypeError('backup volume is closed');
    return this.#handle;
  }

  get closed(): boolean {
    return this.#handle === null;
  }

  get state(): BackupState {
    return STATES[this.#native().info()[2]] ?? 'unused';
  }

  /** Blocks whose newest bytes live on the secondary now. */
  get divertedBlocks(): number {
    return this.#native().info()[3];
  }

  /** The differential bitmap as a '0'/'1' string of the first maxBlocks blocks. */
  bitmap(maxBlocks = 64): string {
    checkIntegerIn(maxBlocks, 'maxBlocks', 0, 1 << 20);
    return Array.from(this.#native().bitmap(maxBlocks), (bit) => (bit === 1 ? '1' : '0')).join('');
  }

  /** 'unused' -> 'diverting' (ERR_DIVERSION_STATE otherwise, or before divertToBackup gave it a secondary). */
  start(): void {
    this.#native().start();
  }

  beginCopyBack(): void {
    this.#native().beginCopyBack();
  }

  copyBackStep(maxBlocks = 1024): number {
    checkIntegerIn(maxBlocks, 'maxBlocks', 1, 1 << 24);
    return this.#native().copyBackStep(maxBlocks);
  }

  /** Copies every diverted block back to the main (one step per event-loop turn); the bitmap ends clear. */
  async copyBack(options: { stepBlocks?: number; onProgress?: (cursorBlock: number, divertedBlocks: number) => void } = {}): Promise<void> {
    if (this.state === 'diverting') this.beginCopyBack();
    while (this.state === 'copying-back') {
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (this.#handle === null) throw new TypeError('backup volume closed during its copy-back');
      this.copyBackStep(options.stepBlocks ?? 1024);
      const info = this.#native().info();
      options.onProgress?.(info[4], info[3]);
    }
  }

  stats(): BackupVolumeStats {
    const s = this.#native().stats();
    return { divertedWrites: s[0] as number, divertedReads: s[1] as number, fallbackWrites: s[2] as number, copiedBackBlocks: s[3] as number };
  }

  /** Idempotent. A volume diverting through it keeps it alive natively until lifted. */
  close(): void {
    this.#handle?.close();
    this.#handle = null;
  }
}
