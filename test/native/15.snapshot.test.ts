// The SnapshotStore contract: instant snapshots that read the volume as it was, copy-on-write on
// the first change of a chunk (shared by every snapshot that needs it), deletes that give chunks
// back, overflow that invalidates rather than failing the host write, restore, clone, the
// allocation map, shared stores reopened by a new object, detached writes refused, bad arguments
// at both layers, wrong receivers, use after close and close waiting for a clone in flight.
import * as assert from 'node:assert/strict';

import { BlockmirrorError } from '../../src/errors';
import { addon, NativeRegionKind, NativeSnapshotStore } from '../../src/native';
import { Snapshot, SnapshotStore } from '../../src/storage/snapshot';
import { Volume, kNativeHandle, sharedVolumeRegionName } from '../../src/storage/volume';
import { Region } from '../../src/storage/region';
import { Cleanup, methodNames, pattern, rejectsBadBytes, rejectsBadIndexes, throwsCode, throwsWith, wrongReceivers } from '../helpers/storage';

const KiB = 1024;
const MiB = 1 << 20;

function readSnapshot(snapshot: Snapshot, byteOffset = 0, byteLength = snapshot.capacityBytes): Buffer {
  const bytes = Buffer.alloc(byteLength);
  snapshot.read(byteOffset, bytes);
  return bytes;
}

function readVolume(volume: Volume): Buffer {
  const bytes = Buffer.alloc(volume.capacityBytes);
  volume.read(0, bytes);
  return bytes;
}

describe('15 snapshot', () => {
  const cleanup = new Cleanup();
  const storeNames: string[] = [];
  afterEach(async () => {
    await cleanup.run();
    for (const name of storeNames.splice(0)) SnapshotStore.unlink({ name });
  });

  /** A memory volume filled with a pattern, and its store. */
  function filled(capacityBytes = MiB, options?: { chunkBytes?: number; storeBytes?: number }): { volume: Volume; store: SnapshotStore; original: Buffer } {
    const volume = cleanup.close(Volume.create({ capacityBytes }));
    const original = pattern(1, 0, capacityBytes);
    volume.write(0, original);
    const store = cleanup.close(SnapshotStore.create(volume, options));
    return { volume, store, original };
  }

  describe('copy-on-write', () => {
    it('a snapshot is taken without copying and reads the volume as it was', () => {
      const { volume, store, original } = filled();
      const snapshot = store.createSnapshot('nightly');
      assert.equal(store.stats().preserveCount, 0);
      assert.equal(typeof snapshot.id, 'bigint');
      assert.ok(Math.abs(snapshot.createdMs - Date.now()) < 60_000);
      volume.write(100 * KiB, pattern(2, 0, 8 * KiB));
      volume.writeZeroes(300 * KiB, 4 * KiB);
      volume.trim(700 * KiB, 64 * KiB);
      assert.ok(readSnapshot(snapshot).equals(original));
      assert.ok(!readVolume(volume).equals(original));
      assert.deepEqual(snapshot.status(), {
        name: 'nightly',
        id: snapshot.id,
        createdMs: snapshot.createdMs,
        state: 'valid',
        reason: undefined,
        // Chunks of 64 KiB: 1 (the write), 4 (the zeroes), 10 and 11 (the trim).
        preservedChunkCount: 4,
      });
    });

    it('the first change of a chunk copies it once for all snapshots; later changes copy nothing', () => {
      const { volume, store, original } = filled();
      const snapshots = Array.from({ length: 8 }, (_, i) => store.createSnapshot(`s${i}`));
      volume.write(0, Buffer.alloc(4096, 7));
      assert.deepEqual([store.stats().preserveCount, store.stats().sharedCount, store.stats().storeChunksUsed], [1, 7, 1]);
      volume.write(4096, Buffer.alloc(4096, 8));
      volume.write(0, Buffer.alloc(64 * KiB, 9));
      assert.equal(store.stats().preserveCount, 1);
      for (const snapshot of snapshots) assert.ok(readSnapshot(snapshot).equals(original), snapshot.name);
    });

    it('deleting gives the chunks only it held back to the store', () => {
      const { volume, store } = filled();
      const a = store.createSnapshot('a');
      volume.write(0, Buffer.alloc(128 * KiB, 1));
      const b = store.createSnapshot('b');
      volume.write(0, Buffer.alloc(64 * KiB, 2));
      assert.equal(store.stats().storeChunksUsed, 3);
      a.delete();
      assert.equal(store.stats().storeChunksUsed, 1);
      throwsCode(() => a.read(0, Buffer.alloc(1)), 'ERR_SNAPSHOT_NOT_FOUND');
      throwsCode(() => store.snapshot('a'), 'ERR_SNAPSHOT_NOT_FOUND');
      store.deleteSnapshot('b');
      assert.equal(store.stats().storeChunksUsed, 0);
      throwsCode(() => b.status(), 'ERR_SNAPSHOT_NOT_FOUND');
      // A new snapshot in the same slot is not reached through the old object.
      store.createSnapshot('b');
      throwsCode(() => b.read(0, Buffer.alloc(1)), 'ERR_SNAPSHOT_NOT_FOUND');
      throwsCode(() => b.delete(), 'ERR_SNAPSHOT_NOT_FOUND');
      assert.equal(store.list().length, 1);
    });

    it('a full store invalidates the snapshot, never the host write', () => {
      const { volume, store } = filled(MiB, { storeBytes: 128 * KiB });
      const snapshot = store.createSnapshot('small');
      for (let i = 0; i < 4; i++) volume.write(i * 64 * KiB, Buffer.alloc(4096, 0xee));
      const back = Buffer.alloc(4096);
      volume.read(3 * 64 * KiB, back);
      assert.ok(back.every((b) => b === 0xee), 'the write is stored');
      assert.deepEqual([snapshot.status().state, snapshot.status().reason], ['invalid', 'overflow']);
      throwsCode(() => snapshot.read(0, Buffer.alloc(16)), 'ERR_SNAPSHOT_INVALID');
      throwsCode(() => snapshot.restore(), 'ERR_SNAPSHOT_INVALID');
      throwsCode(() => snapshot.allocationMap(), 'ERR_SNAPSHOT_INVALID');
      assert.equal(store.stats().overflowCount, 1);
      assert.equal(store.list()[0]?.state, 'invalid');
    });

    it('32 snapshots at most; names are unique', () => {
      const { store } = filled();
      for (let i = 0; i < SnapshotStore.MAX_SNAPSHOTS; i++) store.createSnapshot(`n${i}`);
      throwsCode(() => store.createSnapshot('more'), 'ERR_SNAPSHOT_LIMIT');
      store.deleteSnapshot('n3');
      throwsCode(() => store.createSnapshot('n4'), 'ERR_SNAPSHOT_EXISTS');
      store.createSnapshot('more');
      assert.equal(store.list().length, 32);
    });
  });

  describe('restore, clone and allocation map', () => {
    it('restore makes the volume the snapshot again, through the write path; other snapshots stay', () => {
      const { volume, store, original } = filled(MiB, { chunkBytes: 16 * KiB });
      const dirty = volume.createBitmap('dirty');
      const a = store.createSnapshot('a');
      volume.write(200 * KiB, pattern(3, 0, 50 * KiB));
      const middle = readVolume(volume);
      const b = store.createSnapshot('b');
      volume.write(600 * KiB, pattern(4, 0, 10 * KiB));
      dirty.clearAll();
      const restored = a.restore();
      assert.ok(restored >= 50 * KiB && restored <= 96 * KiB, `restored ${restored}`);
      assert.ok(readVolume(volume).equals(original));
      assert.ok(dirty.count() > 0, 'the restore marked the bitmap');
      assert.ok(readSnapshot(b).equals(middle));
      assert.ok(readSnapshot(a).equals(original));
      b.restore();
      assert.ok(readVolume(volume).equals(middle));
    });

    it('clone is a writable copy of the snapshot while the volume changes', async () => {
      const { volume, store } = filled(2 * MiB);
      volume.trim(MiB, 512 * KiB);
      const expected = readVolume(volume);
      const snapshot = store.createSnapshot('c');
      const pending = snapshot.clone({ batchBytes: 64 * KiB });
      volume.write(0, Buffer.alloc(MiB, 3)); // while the clone copies
      const clone = cleanup.close(await pending);
      assert.ok(readVolume(clone).equals(expected));
      assert.deepEqual([clone.capacityBytes, clone.blockSize], [2 * MiB, 4096]);
      clone.write(0, Buffer.alloc(10, 1));
      assert.ok(readSnapshot(snapshot).equals(expected), 'the clone is its own volume');
      const holes = clone.allocationMap().filter((extent) => !extent.allocated);
      assert.ok(holes.some((extent) => extent.byteOffset <= MiB && extent.byteOffset + extent.byteLength >= MiB + 512 * KiB), 'holes stay holes');
    });

    it('the allocation map shows the image: preserved data, preserved holes and live extents', () => {
      const volume = cleanup.close(Volume.create({ capacityBytes: MiB }));
      volume.write(128 * KiB, Buffer.alloc(64 * KiB, 1));
      const store = cleanup.close(SnapshotStore.create(volume));
      const snapshot = store.createSnapshot('map');
      volume.write(0, Buffer.alloc(64 * KiB, 2)); // chunk 0 was a hole
      volume.trim(128 * KiB, 64 * KiB); // chunk 2 had data
      assert.deepEqual(snapshot.allocationMap(), [
        { byteOffset: 0, byteLength: 128 * KiB, allocated: false },
        { byteOffset: 128 * KiB, byteLength: 64 * KiB, allocated: true },
        { byteOffset: 192 * KiB, byteLength: MiB - 192 * KiB, allocated: false },
      ]);
      assert.deepEqual(snapshot.allocationMap(130 * KiB, 10), [{ byteOffset: 130 * KiB, byteLength: 10, allocated: true }]);
      assert.equal(store.stats().zeroChunkCount, 1);
    });
  });

  describe('shared store', () => {
    it('a new object finds every snapshot; a Volume object without its store refuses writes', async () => {
      const name = cleanup.volumeName('snap');
      storeNames.push(name);
      const volume = Volume.create({ capacityBytes: MiB, backing: 'shared', name });
      const original = pattern(5, 0, MiB);
      volume.write(0, original);
      const store = SnapshotStore.create(volume, { chunkBytes: 32 * KiB });
      store.createSnapshot('kept');
      volume.write(0, Buffer.alloc(MiB, 1));
      throwsCode(() => SnapshotStore.create(volume), 'ERR_SNAPSHOT_ATTACHED');
      await store.close();
      throwsCode(() => volume.write(0, Buffer.alloc(1)), 'ERR_SNAPSHOT_DETACHED');
      await volume.close();

      const again = cleanup.close(Volume.open({ name }));
      throwsCode(() => again.write(0, Buffer.alloc(1)), 'ERR_SNAPSHOT_DETACHED');
      throwsCode(() => SnapshotStore.create(again), 'ERR_REGION_EXISTS');
      const reopened = SnapshotStore.open(again);
      assert.equal(reopened.chunkBytes, 32 * KiB);
      const kept = reopened.snapshot('kept');
      assert.ok(readSnapshot(kept).equals(original));
      again.write(0, Buffer.alloc(4096, 2));
      assert.ok(readSnapshot(kept).equals(original));
      await reopened.destroy();
      again.write(0, Buffer.alloc(4096, 3));
      throwsCode(() => SnapshotStore.open(again), 'ERR_REGION_NOT_FOUND');
    });

    it('a memory store cannot be opened; closing it frees the volume', async () => {
      const { volume, store } = filled();
      throwsWith(() => SnapshotStore.open(volume), TypeError, 'memory');
      store.createSnapshot('x');
      await store.close();
      volume.write(0, Buffer.alloc(10));
      const next = cleanup.close(SnapshotStore.create(volume));
      assert.equal(next.list().length, 0);
    });

    it('a store of another volume is refused', async () => {
      const name = cleanup.volumeName('snapother');
      storeNames.push(name);
      const volume = Volume.create({ capacityBytes: MiB, backing: 'shared', name });
      await SnapshotStore.create(volume).close();
      await volume.close();
      // Only the volume's region goes (Volume.unlink would take the store with it): the store
      // is left for a new volume of the same name.
      Region.unlink('shared', sharedVolumeRegionName(name));
      const other = cleanup.close(Volume.create({ capacityBytes: MiB, backing: 'shared', name }));
      throwsCode(() => SnapshotStore.open(other), 'ERR_SNAPSHOT_BAD_HEADER');
    });

    it('Volume.unlink takes the volume\'s snapshot store with it', async () => {
      const name = cleanup.volumeName('snapunlink');
      storeNames.push(name);
      const volume = Volume.create({ capacityBytes: MiB, backing: 'shared', name });
      const store = SnapshotStore.create(volume);
      store.createSnapshot('s');
      await store.close();
      await volume.close();
      assert.equal(Volume.unlink({ name }), true);
      const again = cleanup.close(Volume.create({ capacityBytes: MiB, backing: 'shared', name }));
      assert.equal(SnapshotStore.exists(again), false);
      assert.equal(SnapshotStore.unlink({ name }), false, 'nothing left to unlink');
    });
  });

  describe('bad arguments', () => {
    it('the TypeScript layer checks every argument', () => {
      const { volume, store } = filled();
      const snapshot = store.createSnapshot('args');
      throwsWith(() => SnapshotStore.create({} as Volume), TypeError, 'volume must be a Volume');
      throwsWith(() => SnapshotStore.create(volume, { chunkBytes: 3000 }), RangeError, 'options.chunkBytes');
      throwsWith(() => SnapshotStore.create(volume, { chunkBytes: 2048 }), RangeError, 'options.chunkBytes');
      throwsWith(() => SnapshotStore.create(volume, { chunkBytes: 32 * MiB }), RangeError, 'options.chunkBytes');
      throwsWith(() => SnapshotStore.create(volume, { storeBytes: 65 * MiB }), RangeError, 'options.storeBytes');
      throwsWith(() => SnapshotStore.create(volume, 'x' as never), TypeError, 'options');
      for (const name of ['', 'a b', 'x'.repeat(48), 'é']) throwsWith(() => store.createSnapshot(name), RangeError, 'name');
      throwsWith(() => store.createSnapshot(1 as never), TypeError, 'name');
      rejectsBadIndexes((value) => snapshot.read(value as number, Buffer.alloc(1)), 'read');
      rejectsBadBytes((value) => snapshot.read(0, value as Uint8Array), 'read');
      throwsWith(() => snapshot.read(MiB - 1, Buffer.alloc(2)), RangeError, 'outside the volume');
      // undefined is the default offset, so it is left out of the bad values.
      rejectsBadIndexes((value) => snapshot.allocationMap((value === undefined ? null : value) as number), 'allocationMap');
      throwsWith(() => snapshot.allocationMap(0, MiB + 1), RangeError, 'outside the volume');
      throwsWith(() => snapshot.clone({ batchBytes: 0 }), RangeError, 'batchBytes');
    });

    it('the native layer checks every argument again', () => {
      const { volume, store } = filled();
      const snapshot = store.createSnapshot('native');
      const native = (store as unknown as Record<symbol, () => NativeSnapshotStore>)[
        Object.getOwnPropertySymbols(SnapshotStore.prototype).find((s) => s.description === 'blockmirror.SnapshotStore.native') as symbol
      ]!.call(store);
      const slot = native.find('native')[0];
      throwsWith(() => native.read(slot, snapshot.id, MiB, Buffer.alloc(1)), RangeError, 'outside the volume');
      throwsWith(() => native.read(slot, 1 as never, 0, Buffer.alloc(1)), TypeError, 'id must be a bigint');
      throwsWith(() => native.read(32, snapshot.id, 0, Buffer.alloc(1)), RangeError, 'slot');
      throwsWith(() => native.read(slot, snapshot.id, -1, Buffer.alloc(1)), RangeError, 'byteOffset');
      throwsWith(() => native.read(slot, snapshot.id, 0, 'x' as never), TypeError, 'target');
      throwsWith(() => native.createSnapshot('bad name'), TypeError, 'may only contain');
      throwsWith(() => native.allocationMap(slot, snapshot.id, 0, MiB + 1), RangeError, 'outside the volume');
      throwsCode(() => native.read(slot, snapshot.id + 1n, 0, Buffer.alloc(1)), 'ERR_SNAPSHOT_NOT_FOUND');
      throwsCode(() => new addon.SnapshotStore(volume[kNativeHandle], NativeRegionKind.anonymous, 'x', true, 65536, MiB), 'ERR_SNAPSHOT_ATTACHED');
      const handle = cleanup.close(Volume.create({ capacityBytes: MiB }))[kNativeHandle];
      throwsWith(() => new addon.SnapshotStore({} as never, NativeRegionKind.anonymous, 'x', true, 65536, MiB), TypeError, 'volume must be a native Volume');
      throwsWith(() => new addon.SnapshotStore(handle, NativeRegionKind.anonymous, 'x', true, 3000, MiB), RangeError, 'chunkBytes');
      throwsWith(() => new addon.SnapshotStore(handle, NativeRegionKind.anonymous, 'x', true, 65536, 65 * MiB), RangeError, 'storeBytes');
      throwsWith(() => new addon.SnapshotStore(handle, NativeRegionKind.anonymous, 'x', false, 0, 0), TypeError, 'anonymous');
    });

    it('native methods called on anything but a native SnapshotStore throw TypeError', () => {
      const other = new addon.Bitmap(8, 4096);
      for (const name of methodNames(addon.SnapshotStore.prototype)) {
        const method = (addon.SnapshotStore.prototype as unknown as Record<string, (...args: unknown[]) => unknown>)[name] as (...args: unknown[]) => unknown;
        for (const receiver of wrongReceivers(other)) {
          throwsWith(() => method.call(receiver, 0, 1n, 0, Buffer.alloc(1)), TypeError, 'receiver is not a native SnapshotStore');
        }
      }
      other.close();
    });
  });

  describe('close', () => {
    it('every call throws ERR_SNAPSHOT_CLOSED after close; a second close is a no-op', async () => {
      const { store } = filled();
      const snapshot = store.createSnapshot('c');
      await store.close();
      await store.close();
      assert.equal(store.closed, true);
      throwsCode(() => store.createSnapshot('d'), 'ERR_SNAPSHOT_CLOSED');
      throwsCode(() => store.list(), 'ERR_SNAPSHOT_CLOSED');
      throwsCode(() => store.stats(), 'ERR_SNAPSHOT_CLOSED');
      throwsCode(() => snapshot.read(0, Buffer.alloc(1)), 'ERR_SNAPSHOT_CLOSED');
      throwsCode(() => snapshot.restore(), 'ERR_SNAPSHOT_CLOSED');
      await assert.rejects(store.destroy(), (error: unknown) => error instanceof BlockmirrorError && error.code === 'ERR_SNAPSHOT_CLOSED');
    });

    it('closing the volume first makes snapshot calls throw ERR_VOLUME_CLOSED', async () => {
      const { volume, store } = filled();
      const snapshot = store.createSnapshot('v');
      await volume.close();
      throwsCode(() => snapshot.read(0, Buffer.alloc(1)), 'ERR_VOLUME_CLOSED');
      throwsCode(() => store.createSnapshot('w'), 'ERR_VOLUME_CLOSED');
      await store.close();
    });

    it('close() waits for a clone in flight', async () => {
      const { volume, store, original } = filled(4 * MiB);
      const snapshot = store.createSnapshot('slow');
      volume.write(0, Buffer.alloc(4 * MiB, 1));
      const pending = snapshot.clone({ batchBytes: 64 * KiB });
      const closing = store.close();
      const clone = cleanup.close(await pending);
      await closing;
      assert.ok(readVolume(clone).equals(original));
    });

    it('GC of dropped stores and snapshots releases their native objects', async () => {
      const gc = (globalThis as { gc?: () => void }).gc;
      const before = addon.openResourceCount();
      const volume = cleanup.close(Volume.create({ capacityBytes: MiB }));
      for (let i = 0; i < 50; i++) {
        const store = SnapshotStore.create(volume);
        store.createSnapshot('g').read(0, Buffer.alloc(16));
        await store.close();
      }
      if (gc !== undefined) gc();
      assert.equal(addon.openResourceCount(), before + 1, 'only the volume is open');
    });
  });
});
