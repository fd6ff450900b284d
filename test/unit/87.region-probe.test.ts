// Probing for regions without exceptions: Region.exists / Region.tryOpen and
// SnapshotStore.exists / SnapshotStore.tryOpen ("not found" is a value; every other failure
// still throws), as a controller uses them when it reopens what a crash left.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { Region } from '../../src/storage/region';
import { SnapshotStore } from '../../src/storage/snapshot';
import { Volume } from '../../src/storage/volume';

const unique = (what: string): string => `bm-u87-${process.pid}-${what}-${Math.floor(Math.random() * 1e9)}`;

describe('87 region probes', () => {
  it('a shared region: exists and tryOpen say absent, then present after create, then absent after unlink', async () => {
    const name = unique('shared');
    assert.equal(Region.exists('shared', name), false);
    assert.equal(Region.tryOpen({ kind: 'shared', name }), null);
    const created = Region.create({ kind: 'shared', name, byteLength: 4096 });
    try {
      created.write(0, Buffer.from('probe'));
      assert.equal(Region.exists('shared', name), true);
      const opened = Region.tryOpen({ kind: 'shared', name });
      assert.ok(opened !== null);
      const bytes = Buffer.alloc(5);
      opened.read(0, bytes);
      assert.equal(bytes.toString(), 'probe');
      assert.equal(opened.created, false);
      await opened.close();
    } finally {
      await created.close();
      Region.unlink('shared', name);
    }
    assert.equal(Region.exists('shared', name), false);
    assert.equal(Region.tryOpen({ kind: 'shared', name }), null);
  });

  it('a file region: the same, by path', async () => {
    const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'bm-u87-'));
    const file = path.join(directory, 'region');
    try {
      assert.equal(Region.exists('file', file), false);
      assert.equal(Region.tryOpen({ kind: 'file', path: file }), null);
      const created = Region.create({ kind: 'file', path: file, byteLength: 4096 });
      await created.close();
      assert.equal(Region.exists('file', file), true);
      const opened = Region.tryOpen({ kind: 'file', path: file });
      assert.ok(opened !== null);
      assert.equal(opened.byteLength, 4096);
      await opened.close();
    } finally {
      fs.rmSync(directory, { recursive: true, force: true });
    }
  });

  it('caller mistakes are still TypeError / RangeError, and an open that fails for another reason still throws', () => {
    assert.throws(() => Region.exists('anonymous' as 'shared', 'x'), RangeError);
    assert.throws(() => Region.exists('shared', 'has/slash'), (error: Error) => error instanceof TypeError || error instanceof RangeError);
    assert.throws(() => Region.exists('shared', ''), RangeError);
    assert.throws(() => Region.tryOpen({ kind: 'shared' } as never), TypeError);
    // A directory exists, but is no region: the open's own error comes through.
    const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'bm-u87-'));
    try {
      assert.equal(Region.exists('file', directory), true);
      assert.throws(() => Region.tryOpen({ kind: 'file', path: directory }), (error: { code?: string }) => typeof error.code === 'string' && error.code.startsWith('ERR_REGION_'));
    } finally {
      fs.rmSync(directory, { recursive: true, force: true });
    }
  });

  it('a snapshot store: absent on a new shared volume, present once created, reopened by tryOpen with its snapshots', async () => {
    const name = unique('snap');
    const volume = Volume.create({ backing: 'shared', name, capacityBytes: 64 * 1024 });
    try {
      assert.equal(SnapshotStore.exists(volume), false);
      assert.equal(SnapshotStore.tryOpen(volume), null);
      const store = SnapshotStore.create(volume);
      store.createSnapshot('first');
      assert.equal(SnapshotStore.exists(volume), true);
      await store.close();
      const again = Volume.open({ name });
      try {
        const reopened = SnapshotStore.tryOpen(again);
        assert.ok(reopened !== null);
        assert.deepEqual(reopened.list().map((status) => status.name), ['first']);
        await reopened.close();
      } finally {
        await again.close();
      }
    } finally {
      await volume.close();
      SnapshotStore.unlink({ name });
      Volume.unlink({ name });
    }
    const memory = Volume.create({ capacityBytes: 64 * 1024 });
    assert.equal(SnapshotStore.exists(memory), false);
    await memory.close();
  });
});
