// Lifetimes across the JS/native boundary: thousands of open/close cycles with some objects
// dropped unclosed stay within bounded memory and mappings (the finalizer is the safety net);
// a worker thread that ends or is terminated with objects open leaves no mapping behind (the
// environment cleanup hook); native objects outlive nothing they depend on.
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';

import { addon, NativeRegionKind } from '../../src/native';
import { Volume, sharedVolumeRegionName } from '../../src/storage/volume';
import { Cleanup, childScript, exited, forkChild, mappingsOf, nextMessage, uniqueName } from '../helpers/storage';

interface ChurnReport {
  before: { rssBytes: number; mappings: number; open: number };
  after: { rssBytes: number; mappings: number; open: number };
  peakOpen: number;
  cycles: number;
  error?: string;
}

const MiB = 1 << 20;

describe('14 lifetimes', function () {
  this.timeout(180_000);
  const cleanup = new Cleanup();
  afterEach(() => cleanup.run());

  it('thousands of open/close cycles, a quarter dropped unclosed, keep RSS and mappings bounded', async () => {
    const child = forkChild(childScript(__dirname, 'churn'), ['3000'], ['--expose-gc']);
    const report = await nextMessage<ChurnReport>(child);
    await exited(child);
    assert.equal(report.error, undefined, report.error);
    // Each cycle maps about 1.2 MiB and touches ~200 KiB; 3000 cycles leaking would cost GiBs.
    const growth = report.after.rssBytes - report.before.rssBytes;
    assert.ok(growth < 96 * MiB, `RSS grew by ${(growth / MiB).toFixed(1)} MiB over ${report.cycles} cycles`);
    assert.ok(report.peakOpen > 0, 'some objects were dropped without close, so some were open before collection');
    assert.equal(report.after.open, 0, 'every dropped native object was released by its finalizer');
    assert.ok(report.after.mappings <= report.before.mappings + 2, `mappings ${report.before.mappings} -> ${report.after.mappings}`);
  });

  for (const mode of ['end', 'wait'] as const) {
    it(`a worker that ${mode === 'end' ? 'ends' : 'is terminated'} with objects open leaves no mapping behind`, async () => {
      const name = cleanup.volumeName('worker');
      const label = uniqueName('wlabel');
      const volume = cleanup.close(Volume.create({ capacityBytes: MiB, backing: 'shared', name }));
      volume.createBitmap('dirty');
      const regionName = `/dev/shm/${sharedVolumeRegionName(name)}`;
      const openHere = addon.openResourceCount();
      const worker = new Worker(path.join(__dirname, 'children', 'worker-leak.js'), { workerData: { name, label, mode } });
      const stopped = new Promise<number>((resolve, reject) => {
        worker.once('exit', resolve);
        worker.once('error', reject);
      });
      const ready = await new Promise<{ mappings: number }>((resolve, reject) => {
        worker.once('message', resolve);
        worker.once('error', reject);
      });
      // The worker mapped the shared volume once more (plus its bitmap view shares that mapping)
      // and its own memory volume and region.
      assert.ok(ready.mappings >= 3, `the worker had ${ready.mappings} mappings open`);
      if (mode === 'wait') {
        assert.equal(mappingsOf(regionName).length, 2, 'ours and the worker\'s');
        await worker.terminate();
      }
      await stopped;
      assert.equal(mappingsOf(regionName).length, 1, 'only ours is left');
      assert.equal(mappingsOf(label).length, 0, 'the worker\'s private regions are unmapped');
      assert.equal(addon.openResourceCount(), openHere, 'the worker\'s objects were never counted here');
      const bytes = Buffer.alloc(15);
      volume.read(0, bytes);
      assert.equal(bytes.toString(), 'from the worker');
      assert.equal(volume.openBitmap('dirty').test(0), true);
    });
  }

  it('a native bitmap view keeps its volume\'s mapping alive after the native volume closed', async () => {
    const name = cleanup.volumeName('view');
    const regionName = sharedVolumeRegionName(name);
    const handle = new addon.Volume(NativeRegionKind.shared, regionName, true, MiB, 4096, false);
    const view = handle.createBitmap('b', 65536, true);
    handle.close();
    // The volume is closed, but the view still holds the region: using it must not touch freed
    // memory, and its bits land in the shared slot that a later opener sees.
    assert.equal(mappingsOf(`/dev/shm/${regionName}`).length, 1, 'the view keeps the mapping');
    view.set(3);
    const reopened = cleanup.close(Volume.open({ name }));
    assert.equal(reopened.openBitmap('b').test(3), true);
    view.close();
    await reopened.close();
    assert.equal(mappingsOf(`/dev/shm/${regionName}`).length, 0, 'the last user unmapped it');
  });
});
