// Helpers of the NBD integration tests that serve from workers and lanes (46, 47).
import type { NbdServer } from '../../src/nbd';
import type { Volume } from '../../src/storage/volume';

export function bytesAt(volume: Volume, offset: number, length: number): Buffer {
  const target = Buffer.alloc(length);
  volume.read(offset, target);
  return target;
}

export async function started(server: NbdServer): Promise<number> {
  await server.listen();
  return server.addresses()[0]?.port as number;
}

/** An NbdVolume that is not a storage Volume (as a PairVolume is): calls go to `inner`, counted. */
export function wrapperOf(inner: Volume): Volume & { writes: number } {
  const wrapper = {
    writes: 0,
    get capacityBytes() { return inner.capacityBytes; },
    get blockSize() { return inner.blockSize; },
    get strict() { return inner.strict; },
    get closed() { return inner.closed; },
    read: (offset: number, target: Uint8Array) => inner.read(offset, target),
    write: (offset: number, source: Uint8Array) => { wrapper.writes += 1; return inner.write(offset, source); },
    writeZeroes: (offset: number, length: number, options?: { mayPunchHole?: boolean }) => inner.writeZeroes(offset, length, options),
    trim: (offset: number, length: number) => inner.trim(offset, length),
    flush: () => inner.flush(),
    allocationMap: (offset: number, length: number) => inner.allocationMap(offset, length),
    listBitmaps: () => inner.listBitmaps(),
    openBitmap: (name: string) => inner.openBitmap(name),
  };
  return wrapper as unknown as Volume & { writes: number };
}
