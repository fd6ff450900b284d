// Notes on the design
// -------------------
// WorkVolume is the TypeScript face of bm::WorkVolume (native/core/diversion.hpp), diversion
// variant (b) of seed 004: a pre-provisioned work volume filled append-only that takes the new
// writes of a weak group's volumes while a failing disk is spared. RaidGroup.divertVolume(volume,
// work) lays it behind a volume's group extent (step 4 of the write path: the volume's own region
// still takes every write, only the group's share is diverted) and registers the volume as one of
// its mains (up to WorkVolume.MAX_MAINS: one work volume serves several main volumes).
//
// Tables (the seed's "work volumes" table): capacity, mains (volume ids), terminal address (the
// last slot written, 1-based; null before the first), slot bitmap, and the address map (main,
// block) -> newest slot (lookup). All live in the region: a shared work volume
// (blockmirror.work.<name>) survives a SIGKILL and open() finds the maps.
//
// States: 'unused', 'diverting', 'full' (terminal = slot count: diverted blocks are updated in
// their slot, other writes go to the weak group again), 'copying-back' (copyBack() walks the slots
// in bounded steps, one per event-loop turn, writing each newest slot to its main's group; a host
// write to a diverted block first copies it back). When copy-back ends the tables are reset and
// the state is 'unused' again.
//
// Variant (c), a work disk, is the same class with its slots on an emulated Disk (`dataDisk`):
// the region holds the header and the tables, the disk the data, so the disk's own faults and
// counters apply to diverted I/O. RaidGroup.divertDisks(work, mainKeys) lays it under every member
// disk's I/O (the mains are member disks, a block is a disk address / slotBytes); entries() gives
// the seed's address map (main, main address) -> work address in arrival order.

import { addon, NativeRegionKind, NativeRegionKindValue } from '../native';
import { checkIntegerIn, checkObject, checkOneOf, namedTarget, orDefault, sharedRegionName } from './validate';
import { Region } from './region';
import { Disk, kDiskHandle, type NativeDisk } from './disk';

export type WorkState = 'unused' | 'diverting' | 'full' | 'copying-back';
const WORK_STATES: readonly WorkState[] = ['unused', 'diverting', 'full', 'copying-back'];

export interface NativeWorkVolume {
  info(): [number, number, number, number, number, bigint[]];
  bitmap(maxSlots: number): Uint8Array;
  lookup(main: number, block: number): number;
  start(): void;
  beginCopyBack(): void;
  copyBackStep(maxSlots: number): number;
  stats(): Float64Array;
  entries(maxEntries: number): Float64Array;
  close(): void;
}

interface DiversionAddon {
  WorkVolume: new (kind: NativeRegionKindValue, name: string, create: boolean, slotCount: number, slotBytes: number, dataDisk?: NativeDisk) => NativeWorkVolume;
}

const native = addon as unknown as DiversionAddon;
const SHARED_PREFIX = 'blockmirror.work.';
export const kWorkHandle = Symbol('blockmirror.workVolume');

export interface WorkVolumeCreateOptions {
  /** Bytes of diverted data it holds (a multiple of slotBytes). With a dataDisk: default the disk's capacity rounded down to slotBytes. */
  capacityBytes?: number;
  /** Variant (c), a work disk: the slots live on this disk (its sector size must divide slotBytes). */
  dataDisk?: Disk;
  /** The diversion unit: a power of two 512..65536. @default 4096 */
  slotBytes?: number;
  /** @default 'memory' */
  backing?: 'memory' | 'shared';
  /** Shared: the work volume's name (required). */
  name?: string;
}

export interface WorkVolumeStats {
  divertedWrites: number;
  fallbackWrites: number;
  inPlaceWrites: number;
  copiedBackSlots: number;
  divertedReads: number;
  /** Slot reads or writes its data disk failed (a work disk). */
  slotErrors: number;
}

/** One live row of the address map, in arrival order. */
export interface WorkMapEntry {
  /** The main's index (WorkVolume.mains). */
  main: number;
  /** The main's block: its byte offset / slotBytes (a work disk: the member disk address). */
  block: number;
  /** The slot holding its newest bytes (1-based; a work disk: the work disk address). */
  slot: number;
}

export class WorkVolume {
  static readonly MAX_MAINS = 8;
  static readonly DEFAULT_SLOT_BYTES = 4096;
  readonly slotCount: number;
  readonly slotBytes: number;
  readonly name: string | undefined;
  /** A work disk's data disk; undefined for a work volume. */
  readonly dataDisk: Disk | undefined;
  #handle: NativeWorkVolume | null;

  private constructor(handle: NativeWorkVolume, name: string | undefined, dataDisk: Disk | undefined) {
    this.#handle = handle;
    this.dataDisk = dataDisk;
    const [slotCount, slotBytes] = handle.info();
    this.slotCount = slotCount;
    this.slotBytes = slotBytes;
    this.name = name;
  }

  static create(options: WorkVolumeCreateOptions): WorkVolume {
    checkObject(options, 'options');
    const slotBytes = orDefault(options.slotBytes, WorkVolume.DEFAULT_SLOT_BYTES);
    checkIntegerIn(slotBytes, 'options.slotBytes', 512, 65536);
    if ((slotBytes & (slotBytes - 1)) !== 0) throw new RangeError('options.slotBytes must be a power of two');
    const dataDisk = options.dataDisk;
    if (dataDisk !== undefined && !(dataDisk instanceof Disk)) throw new TypeError('options.dataDisk must be a Disk');
    const capacityBytes = options.capacityBytes ?? (dataDisk === undefined ? undefined : Math.floor(dataDisk.capacityBytes / slotBytes) * slotBytes);
    checkIntegerIn(capacityBytes, 'options.capacityBytes', slotBytes, 2 ** 48);
    if (capacityBytes % slotBytes !== 0) throw new RangeError('options.capacityBytes must be a multiple of slotBytes');
    if (dataDisk !== undefined && capacityBytes > dataDisk.capacityBytes) throw new RangeError('options.capacityBytes exceeds the data disk');
    if (dataDisk !== undefined && slotBytes % dataDisk.sectorSize !== 0) throw new RangeError("options.slotBytes must be a multiple of the data disk's sector size");
    const backing = orDefault(options.backing, 'memory' as const);
    checkOneOf(backing, 'options.backing', ['memory', 'shared']);
    const regionName = backing === 'shared' ? sharedRegionName(options.name, 'options.name', SHARED_PREFIX) : '';
    const kind = backing === 'shared' ? NativeRegionKind.shared : NativeRegionKind.anonymous;
    const handle = dataDisk === undefined
      ? new native.WorkVolume(kind, regionName, true, capacityBytes / slotBytes, slotBytes)
      : new native.WorkVolume(kind, regionName, true, capacityBytes / slotBytes, slotBytes, dataDisk[kDiskHandle]);
    return new WorkVolume(handle, options.name, dataDisk);
  }

  /** Opens a shared work volume (its maps as a SIGKILL left them); a work disk with its data disk. */
  static open(options: { name: string; dataDisk?: Disk }): WorkVolume {
    const target = namedTarget({ name: options?.name }, 'options', SHARED_PREFIX);
    const dataDisk = options.dataDisk;
    if (dataDisk !== undefined && !(dataDisk instanceof Disk)) throw new TypeError('options.dataDisk must be a Disk');
    const handle = dataDisk === undefined
      ? new native.WorkVolume(NativeRegionKind.shared, target.regionName, false, 0, 0)
      : new native.WorkVolume(NativeRegionKind.shared, target.regionName, false, 0, 0, dataDisk[kDiskHandle]);
    return new WorkVolume(handle, options.name, dataDisk);
  }

  static exists(name: string): boolean {
    return Region.exists('shared', `${SHARED_PREFIX}${name}`);
  }

  static unlink(name: string): boolean {
    return Region.unlink('shared', `${SHARED_PREFIX}${name}`);
  }

  get [kWorkHandle](): NativeWorkVolume {
    return this.#native();
  }

  #native(): NativeWorkVolume {
    if (this.#handle === null) throw new TypeError('work volume is closed');
    return this.#handle;
  }

  get closed(): boolean {
    return this.#handle === null;
  }

  get capacityBytes(): number {
    return this.slotCount * this.slotBytes;
  }

  get state(): WorkState {
    return WORK_STATES[this.#native().info()[2]] as WorkState;
  }

  /** The last slot written (1-based); null before the first (the seed's NULL). */
  get terminal(): number | null {
    const terminal = this.#native().info()[3];
    return terminal === 0 ? null : terminal;
  }

  /** Main volume ids, in main index order. */
  get mains(): bigint[] {
    return this.#native().info()[5];
  }

  /** The slot bitmap as a '0'/'1' string of the first maxSlots slots. */
  bitmap(maxSlots = 64): string {
    checkIntegerIn(maxSlots, 'maxSlots', 0, 1 << 20);
    return Array.from(this.#native().bitmap(maxSlots), (bit) => (bit === 1 ? '1' : '0')).join('');
  }

  /** The newest slot holding block `block` of main `main`; 0 when not diverted. */
  lookup(main: number, block: number): number {
    checkIntegerIn(main, 'main', 0, WorkVolume.MAX_MAINS - 1);
    checkIntegerIn(block, 'block', 0, Number.MAX_SAFE_INTEGER);
    return this.#native().lookup(main, block);
  }

  /** 'unused' -> 'diverting' (ERR_DIVERSION_STATE otherwise). */
  start(): void {
    this.#native().start();
  }

  beginCopyBack(): void {
    this.#native().beginCopyBack();
  }

  copyBackStep(maxSlots = 256): number {
    checkIntegerIn(maxSlots, 'maxSlots', 1, 1 << 20);
    return this.#native().copyBackStep(maxSlots);
  }

  /** Copies every diverted block back (one step per event-loop turn) and resets the tables. */
  async copyBack(options: { stepSlots?: number; onProgress?: (cursor: number, terminal: number) => void } = {}): Promise<void> {
    if (this.state === 'diverting' || this.state === 'full') this.beginCopyBack();
    while (this.state === 'copying-back') {
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (this.#handle === null) throw new TypeError('work volume closed during its copy-back');
      this.copyBackStep(options.stepSlots ?? 256);
      const info = this.#native().info();
      options.onProgress?.(info[4], info[3]);
    }
  }

  stats(): WorkVolumeStats {
    const s = this.#native().stats();
    return { divertedWrites: s[0] as number, fallbackWrites: s[1] as number, inPlaceWrites: s[2] as number, copiedBackSlots: s[3] as number, divertedReads: s[4] as number, slotErrors: s[5] as number };
  }

  /** The live address map in arrival order (slot order), at most maxEntries rows. */
  entries(maxEntries = 64): WorkMapEntry[] {
    checkIntegerIn(maxEntries, 'maxEntries', 0, 1 << 20);
    const flat = this.#native().entries(maxEntries);
    const rows: WorkMapEntry[] = [];
    for (let i = 0; i + 2 < flat.length; i += 3) rows.push({ main: flat[i] as number, block: flat[i + 1] as number, slot: flat[i + 2] as number });
    return rows;
  }

  /** Idempotent. A volume diverting through it keeps it alive natively until lifted. */
  close(): void {
    this.#handle?.close();
    this.#handle = null;
  }
}
