// Notes on the design
// -------------------
// What the NBD server exports for a volume that is in a pair: one object for the life of the
// export, whose writes go to the volume's ReplicatedVolume while this controller is the primary
// (journaled, completed at their ack point) and are refused with ERR_PAIR_READ_ONLY (EPERM)
// while it is a secondary (before a takeover, after a demotion, or while a failback drains the
// primary). Reads always come from the volume. The export's read-only flag follows the role (the
// controller host sets it on every role change), so new connections see the right flags.

import type { Bitmap } from '../storage/bitmap';
import type { Volume } from '../storage/volume';
import { PairError } from './pair-state';
import type { ReplicatedVolume } from './replicated-volume';

/** A pair's volume as hosts see it. */
export class PairVolume {
  /** Set while this controller is the primary of the volume's pairs. */
  replicated: ReplicatedVolume | undefined;
  /** Host writes are refused while set (a failback or planned takeover drains the primary). */
  holdWrites = false;

  constructor(readonly volume: Volume, readonly volumeName: string) {}

  /** True when host writes are accepted. */
  get writable(): boolean {
    return this.replicated !== undefined && !this.holdWrites;
  }

  private target(): ReplicatedVolume {
    const replicated = this.replicated;
    if (replicated === undefined || this.holdWrites) {
      throw new PairError('ERR_PAIR_READ_ONLY', `volume ${this.volumeName} is ${replicated === undefined ? 'the secondary of a pair' : 'handing its primary role over'}: writes are refused`);
    }
    return replicated;
  }

  get capacityBytes(): number {
    return this.volume.capacityBytes;
  }

  get blockSize(): number {
    return this.volume.blockSize;
  }

  get strict(): boolean {
    return this.volume.strict;
  }

  get closed(): boolean {
    return this.volume.closed;
  }

  read(byteOffset: number, target: Uint8Array): void {
    this.volume.read(byteOffset, target);
  }

  write(byteOffset: number, source: Uint8Array): number {
    return this.target().write(byteOffset, source);
  }

  writeZeroes(byteOffset: number, byteLength: number, options?: { mayPunchHole?: boolean }): number {
    return this.target().writeZeroes(byteOffset, byteLength, options);
  }

  trim(byteOffset: number, byteLength: number): number {
    return this.target().trim(byteOffset, byteLength);
  }

  writeCompletion(sequence: number): Promise<void> | null {
    return this.replicated === undefined ? null : this.replicated.writeCompletion(sequence);
  }

  flush(): Promise<void> {
    return this.replicated === undefined ? this.volume.flush() : this.replicated.flush();
  }

  allocationMap(byteOffset: number, byteLength: number): { byteOffset: number; byteLength: number; allocated: boolean }[] {
    return this.volume.allocationMap(byteOffset, byteLength);
  }

  listBitmaps(): { name: string; granularityBytes: number; bitCount: number; recording: boolean }[] {
    return this.volume.listBitmaps();
  }

  openBitmap(name: string): Bitmap {
    return this.volume.openBitmap(name);
  }
}
