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

import { addon, NativeRegionKind, NativeRegionKindValue } from '../native';
import { checkIntegerIn, checkObject, checkOneOf, namedTarget, orDefault, sharedRegionName } from './validate';
import { Region } from './region';

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
  close(): void;
}

interface DiversionAddon {
  WorkVolume: new (kind: NativeRegionKindValue, name: string, create: boolean, slotCount: number, slotBytes: number) => NativeWorkVolume;
}

const native = addon as unknown as DiversionAddon;
const SHARED_PREFIX = 'blockmirror.work.';
export const kWorkHandle = Symbol('blockmirror.workVolume');

export interface WorkVolumeCreateOptions {
  /** Bytes of diverted data it holds (a multiple of slotBytes). */
  capacityBytes: number;
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
}

export class WorkVolume {
  static readonly MAX_MAINS = 8;
  static readonly DEFAULT_SLOT_BYTES = 4096;
  readonly slotCount: number;
  readonly slotBytes: number;
  readonly name: string | undefined;
  #handle: NativeWorkVolume | null;

  private constructor(handle: NativeWorkVolume, name: string | undefined) {
    this.#handle = handle;
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
    checkIntegerIn(options.capacityBytes, 'options.capacityBytes', slotBytes, 2 ** 48);
    if (options.capacityBytes % slotBytes !== 0) throw new RangeError('options.capacityBytes must be a multiple of slotBytes');
    const backing = orDefault(options.backing, 'memory' as const);
    checkOneOf(backing, 'options.backing', ['memory', 'shared']);
    const regionName = backing === 'shared' ? sharedRegionName(options.name, 'options.name', SHARED_PREFIX) : '';
    const kind = backing === 'shared' ? NativeRegionKind.shared : NativeRegionKind.anonymous;
    return new WorkVolume(new native.WorkVolume(kind, regionName, true, options.capacityBytes / slotBytes, slotBytes), options.name);
  }

  /** Opens a shared work volume (its maps as a SIGKILL left them). */
  static open(options: { name: string }): WorkVolume {
    const target = namedTarget({ name: options?.name }, 'options', SHARED_PREFIX);
    return new WorkVolume(new native.WorkVolume(NativeRegionKind.shared, target.regionName, false, 0, 0), options.name);
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
    return { divertedWrites: s[0] as number, fallbackWrites: s[1] as number, inPlaceWrites: s[2] as number, copiedBackSlots: s[3] as number, divertedReads: s[4] as number };
  }

  /** Idempotent. A volume diverting through it keeps it alive natively until lifted. */
  close(): void {
    this.#handle?.close();
    this.#handle = null;
  }
}
