// Scenario: a writer with snapshots of its shared volume dies by SIGKILL in the middle of its
// work (possibly inside a copy-on-write, a snapshot create or a delete). The parent opens the
// volume and its snapshot store as a restarted process would, and every snapshot the writer
// reported reads exactly what the volume held when it was taken: the parent knows that from
// replaying every acknowledged write into a model. Nothing leaks: once every snapshot is deleted
// the chunk store is empty again.
import * as assert from 'node:assert/strict';

import { SnapshotStore } from '../../src/storage/snapshot';
import { Volume } from '../../src/storage/volume';
import { Cleanup, childScript, forkChild } from '../helpers/storage';
import { SNAPSHOT_CRASH_VOLUME_BYTES, SnapshotCrashMessage, writeData } from './children/snapshot-pattern';

describe('32 snapshot crash survival', function () {
  this.timeout(180_000);
  const cleanup = new Cleanup();
  const storeNames: string[] = [];
  afterEach(async () => {
    await cleanup.run();
    for (const name of storeNames.splice(0)) SnapshotStore.unlink({ name });
  });

  for (const [round, killAfterWrites] of [
    [0, 200],
    [1, 333],
    [2, 517],
  ] as const) {
    it(`after a SIGKILL at write ${killAfterWrites}, every snapshot reads what the volume held when it was taken (round ${round})`, async () => {
      // Given a shared volume with a pattern and an empty snapshot store,
      const name = cleanup.volumeName('snapcrash');
      storeNames.push(name);
      const initial = writeData(1000 + round, SNAPSHOT_CRASH_VOLUME_BYTES);
      const setup = Volume.create({ capacityBytes: SNAPSHOT_CRASH_VOLUME_BYTES, backing: 'shared', name });
      setup.write(0, initial);
      // Six snapshots of 24 scattered writes each need more than one volume's worth of chunks.
      await SnapshotStore.create(setup, { chunkBytes: 64 * 1024, storeBytes: 4 * SNAPSHOT_CRASH_VOLUME_BYTES }).close();
      await setup.close();

      // and a child that writes, snapshots and deletes, reporting each step after it returned,
      const child = forkChild(childScript(__dirname, 'snapshotter'), [name, String(7 + round * 101)]);
      const live = Buffer.from(initial);
      const images = new Map<string, Buffer>();
      const deleted = new Set<string>();
      let writes = 0;
      const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
      child.on('message', (message: SnapshotCrashMessage) => {
        if (message.kind === 'write') {
          writeData(message.seed, message.byteLength).copy(live, message.byteOffset);
          // when it is killed in the middle of its work,
          if (++writes === killAfterWrites) process.kill(child.pid as number, 'SIGKILL');
        } else if (message.kind === 'snapshot') {
          images.set(message.name, Buffer.from(live));
          // The writer goes on once this side has seen the snapshot (children/snapshotter.ts).
          if (child.connected) child.send({ kind: 'ack' }, () => undefined);
        } else {
          images.delete(message.name);
          deleted.add(message.name);
        }
      });
      await closed;
      assert.equal(child.signalCode, 'SIGKILL');
      assert.ok(images.size >= 3, `only ${images.size} snapshots were reported`);

      // then a new process's objects find every reported snapshot with the bytes of its time,
      const volume = cleanup.close(Volume.open({ name }));
      const store = cleanup.close(SnapshotStore.open(volume));
      const present = new Set(store.list().map((status) => status.name));
      const expected = [...images.keys()];
      const bytes = Buffer.alloc(SNAPSHOT_CRASH_VOLUME_BYTES);
      // The parent's view is a prefix of what the child did (messages still queued in the child
      // when it died are lost), so the child may have deleted a few of the oldest expected
      // snapshots after its last message arrived; any other missing snapshot is a failure.
      const firstPresent = expected.findIndex((snapshotName) => present.has(snapshotName));
      assert.ok(firstPresent >= 0, `no reported snapshot is present (expected ${expected.join(' ')})`);
      let checked = 0;
      for (const snapshotName of expected.slice(firstPresent)) {
        assert.ok(present.has(snapshotName), `snapshot ${snapshotName} is missing (expected ${expected.join(' ')}, present ${[...present].join(' ')})`);
        const snapshot = store.snapshot(snapshotName);
        assert.equal(snapshot.status().state, 'valid');
        snapshot.read(0, bytes);
        assert.ok(bytes.equals(images.get(snapshotName) as Buffer), `snapshot ${snapshotName} differs from the volume at its creation`);
        checked++;
      }
      assert.ok(checked >= 3, `only ${checked} snapshots were checked`);
      for (const gone of deleted) assert.ok(!present.has(gone), `deleted snapshot ${gone} is back`);

      // the restarted writer's writes are preserved for them as before,
      for (let i = 0; i < 64; i++) volume.write(i * 128 * 1024, Buffer.alloc(4096, i));
      for (const snapshotName of expected) {
        if (!present.has(snapshotName)) continue;
        store.snapshot(snapshotName).read(0, bytes);
        assert.ok(bytes.equals(images.get(snapshotName) as Buffer), `snapshot ${snapshotName} after new writes`);
      }

      // and deleting every snapshot leaves the chunk store empty (nothing leaked by the kill).
      for (const status of store.list()) store.deleteSnapshot(status.name);
      assert.equal(store.stats().storeChunksUsed, 0);
      await store.destroy();
    });
  }
});
