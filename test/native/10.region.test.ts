// The Region contract: the three backings, sparse trim and allocation maps, bad arguments at both
// layers, wrong receivers, use after close, and close() waiting for a flush in flight.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';

import { BlockmirrorError } from '../../src/errors';
import { addon, NativeRegionKind } from '../../src/native';
import { Region } from '../../src/storage/region';
import {
  Cleanup,
  mappingsOf,
  methodNames,
  pattern,
  rejectsBadBytes,
  rejectsBadIndexes,
  throwsCode,
  throwsWith,
  wrongReceivers,
} from '../helpers/storage';

const PAGE = addon.pageSize();

describe('10 region', () => {
  const cleanup = new Cleanup();
  afterEach(() => cleanup.run());

  describe('anonymous', () => {
    it('rounds the length up to whole pages and reads zeros', () => {
      const region = cleanup.close(Region.create({ byteLength: PAGE + 1 }));
      assert.equal(region.kind, 'anonymous');
      assert.equal(region.byteLength, 2 * PAGE);
      assert.equal(region.created, true);
      const bytes = Buffer.alloc(2 * PAGE, 0xff);
      region.read(0, bytes);
      assert.ok(bytes.every((b) => b === 0));
    });

    it('write then read returns the bytes, at any offset and length', () => {
      const region = cleanup.close(Region.create({ byteLength: 64 * 1024 }));
      const data = pattern(1, 1000, 5000);
      region.write(1000, data);
      const back = Buffer.alloc(5002);
      region.read(999, back);
      assert.equal(back[0], 0);
      assert.equal(back[5001], 0);
      assert.ok(back.subarray(1, 5001).equals(data));
      region.write(64 * 1024, Buffer.alloc(0));
      region.read(64 * 1024, Buffer.alloc(0));
    });

    it('trim zeroes the range, gives whole pages back and shows them as holes', () => {
      const region = cleanup.close(Region.create({ byteLength: 16 * PAGE }));
      region.write(0, Buffer.alloc(16 * PAGE, 7));
      assert.equal(region.allocatedBytes(), 16 * PAGE);
      assert.deepEqual(region.allocationMap(), [{ byteOffset: 0, byteLength: 16 * PAGE, allocated: true }]);
      // An unaligned range: whole pages 2..5 are released, the edges are zeroed in place.
      region.trim(PAGE + 100, 5 * PAGE);
      assert.equal(region.allocatedBytes(), 12 * PAGE);
      assert.deepEqual(region.allocationMap(), [
        { byteOffset: 0, byteLength: 2 * PAGE, allocated: true },
        { byteOffset: 2 * PAGE, byteLength: 4 * PAGE, allocated: false },
        { byteOffset: 6 * PAGE, byteLength: 10 * PAGE, allocated: true },
      ]);
      const back = Buffer.alloc(16 * PAGE);
      region.read(0, back);
      for (let i = 0; i < back.length; i++) {
        const inside = i >= PAGE + 100 && i < 6 * PAGE + 100;
        if (back[i] !== (inside ? 0 : 7)) assert.fail(`byte ${i} is ${back[i]}`);
      }
      assert.deepEqual(region.allocationMap(3 * PAGE, PAGE), [{ byteOffset: 3 * PAGE, byteLength: PAGE, allocated: false }]);
    });

    it('flush resolves', async () => {
      const region = cleanup.close(Region.create({ byteLength: PAGE }));
      region.write(0, Buffer.from('abc'));
      await region.flush();
    });
  });

  describe('shared', () => {
    it('is created once, opened by name with the same bytes, and unlinked', async () => {
      const name = cleanup.regionName('region');
      const first = Region.create({ kind: 'shared', name, byteLength: 3 * PAGE });
      assert.equal(first.name, name);
      assert.equal(mappingsOf(`/dev/shm/${name}`).length, 1);
      throwsWith(() => Region.create({ kind: 'shared', name, byteLength: PAGE }), BlockmirrorError, 'already exists', 'ERR_REGION_EXISTS');
      first.write(PAGE, Buffer.from('shared bytes'));
      const second = Region.open({ kind: 'shared', name });
      assert.equal(second.created, false);
      assert.equal(second.byteLength, 3 * PAGE);
      const back = Buffer.alloc(12);
      second.read(PAGE, back);
      assert.equal(back.toString(), 'shared bytes');
      // A write through one mapping is visible through the other at once.
      second.write(0, Buffer.from('Z'));
      const one = Buffer.alloc(1);
      first.read(0, one);
      assert.equal(one.toString(), 'Z');
      await first.close();
      await second.close();
      assert.equal(mappingsOf(`/dev/shm/${name}`).length, 0, 'close unmaps');
      assert.equal(Region.unlink('shared', name), true);
      assert.equal(Region.unlink('shared', name), false);
      throwsWith(() => Region.open({ kind: 'shared', name }), BlockmirrorError, 'does not exist', 'ERR_REGION_NOT_FOUND');
    });
  });

  describe('file', () => {
    it('creates a sparse file, flushes it and reopens it', async () => {
      const file = cleanup.filePath('region');
      const region = Region.create({ kind: 'file', path: file, byteLength: 1 << 20 });
      assert.equal(region.name, file);
      assert.equal(fs.statSync(file).size, 1 << 20);
      region.write(4096 * 10, pattern(3, 0, 4096));
      await region.flush();
      await region.close();
      const onDisk = fs.readFileSync(file);
      assert.ok(onDisk.subarray(4096 * 10, 4096 * 11).equals(pattern(3, 0, 4096)));
      const again = cleanup.close(Region.open({ kind: 'file', path: file }));
      assert.equal(again.byteLength, 1 << 20);
      const back = Buffer.alloc(4096);
      again.read(4096 * 10, back);
      assert.ok(back.equals(pattern(3, 0, 4096)));
      throwsCode(() => Region.create({ kind: 'file', path: file, byteLength: 4096 }), 'ERR_REGION_EXISTS');
      assert.equal(Region.unlink('file', file), true);
      assert.equal(fs.existsSync(file), false);
    });

    it('a failed open leaves nothing behind', () => {
      const file = cleanup.filePath('missing');
      throwsCode(() => Region.open({ kind: 'file', path: file }), 'ERR_REGION_NOT_FOUND');
      assert.equal(fs.existsSync(file), false);
    });
  });

  describe('bad arguments', () => {
    it('every method rejects bad indices and byte arrays (TypeScript layer)', () => {
      const region = cleanup.close(Region.create({ byteLength: PAGE }));
      const bytes = Buffer.alloc(8);
      rejectsBadIndexes((v) => region.read(v as number, bytes), 'read');
      rejectsBadIndexes((v) => region.write(v as number, bytes), 'write');
      rejectsBadIndexes((v) => region.trim(v as number, 1), 'trim offset');
      rejectsBadIndexes((v) => region.trim(0, v as number), 'trim length');
      // undefined selects the defaults of allocationMap, so map it to another bad value.
      rejectsBadIndexes((v) => region.allocationMap((v === undefined ? 'x' : v) as number, 1), 'allocationMap offset');
      rejectsBadIndexes((v) => region.allocationMap(0, (v === undefined ? 'x' : v) as number), 'allocationMap length');
      rejectsBadBytes((v) => region.read(0, v as Uint8Array), 'read');
      rejectsBadBytes((v) => region.write(0, v as Uint8Array), 'write');
      throwsWith(() => region.read(PAGE - 7, bytes), RangeError, `[${PAGE - 7}, +8) is outside the region (${PAGE} bytes)`);
      throwsWith(() => region.trim(1, PAGE), RangeError, 'is outside the region');
      throwsWith(() => region.allocationMap(PAGE + 1), RangeError, 'is outside the region');
    });

    it('the native layer checks every argument again', () => {
      const handle = new addon.Region(NativeRegionKind.anonymous, 'native', PAGE, true, false);
      try {
        const bytes = Buffer.alloc(8);
        rejectsBadIndexes((v) => handle.read(v as number, bytes), 'native read');
        rejectsBadIndexes((v) => handle.write(v as number, bytes), 'native write');
        rejectsBadIndexes((v) => handle.trim(0, v as number), 'native trim');
        rejectsBadIndexes((v) => handle.allocationMap(v as number, 1), 'native allocationMap');
        rejectsBadBytes((v) => handle.read(0, v as Uint8Array), 'native read');
        rejectsBadBytes((v) => handle.write(0, v as Uint8Array), 'native write');
        throwsWith(() => handle.read(0, 'x' as never), TypeError, 'target must be a Uint8Array (got string)');
        throwsWith(() => handle.write(1.5, bytes), RangeError, 'byteOffset must be a non-negative safe integer (got 1.5)');
        throwsWith(() => handle.write(PAGE - 1, bytes), RangeError, 'is outside the region');
        throwsWith(() => handle.read(2 ** 53 - 1, bytes), RangeError, 'is outside the region');
        throwsWith(() => new addon.Region(7 as never, 'x', PAGE, true, false), RangeError, 'kind must be at most 2 (got 7)');
        throwsWith(() => new addon.Region(NativeRegionKind.anonymous, 'x', 0, true, false), RangeError, 'byteLength must be > 0');
        throwsWith(() => new addon.Region(NativeRegionKind.anonymous, 'x', PAGE, false, false), TypeError, 'one of create and open must be true');
        throwsWith(() => new addon.Region(NativeRegionKind.shared, 'a/b', PAGE, true, false), TypeError, 'may only contain');
        throwsWith(() => new addon.Region(NativeRegionKind.anonymous, 7 as never, PAGE, true, false), TypeError, 'name must be a string (got number)');
        throwsWith(() => (addon.Region as unknown as () => void)(), TypeError, "Class constructors cannot be invoked without 'new'");
        throwsWith(() => addon.unlinkRegion(NativeRegionKind.anonymous, 'x'), TypeError, 'an anonymous region has no name');
      } finally {
        handle.close();
      }
    });
  });

  describe('receivers', () => {
    it('native methods called on anything but a native Region throw TypeError', () => {
      const other = new addon.Bitmap(64, 4096);
      for (const name of methodNames(addon.Region.prototype)) {
        const method = (addon.Region.prototype as unknown as Record<string, (...args: unknown[]) => unknown>)[name] as (...args: unknown[]) => unknown;
        for (const receiver of wrongReceivers(other)) {
          throwsWith(() => method.call(receiver, 0, Buffer.alloc(1)), TypeError, 'receiver is not a native Region');
        }
      }
      other.close();
    });

    it('TypeScript methods called on a non-Region throw TypeError', () => {
      for (const name of methodNames(Region.prototype)) {
        const method = (Region.prototype as unknown as Record<string, (...args: unknown[]) => unknown>)[name] as (...args: unknown[]) => unknown;
        assert.throws(() => method.call({}, 0, Buffer.alloc(1)), TypeError, name);
      }
    });
  });

  describe('close', () => {
    it('every method throws ERR_REGION_CLOSED after close, and close is idempotent', async () => {
      const region = Region.create({ byteLength: PAGE });
      assert.equal(region.closed, false);
      const closing = region.close();
      assert.equal(region.closed, true);
      assert.equal(region.close(), closing, 'a second close returns the same promise');
      await closing;
      await region.close();
      for (const name of methodNames(Region.prototype)) {
        if (name === 'close') continue;
        const method = (region as unknown as Record<string, (...args: unknown[]) => unknown>)[name] as (...args: unknown[]) => unknown;
        throwsCode(() => method.call(region, 0, Buffer.alloc(1)), 'ERR_REGION_CLOSED');
      }
    });

    it('the native handle refuses use after close and tolerates a second close', () => {
      const handle = new addon.Region(NativeRegionKind.anonymous, 'n', PAGE, true, false);
      assert.equal(handle.close(), true, 'released at once without pending work');
      assert.equal(handle.close(), true);
      throwsCode(() => handle.read(0, Buffer.alloc(1)), 'ERR_REGION_CLOSED');
      throwsCode(() => handle.flush(), 'ERR_REGION_CLOSED');
    });

    it('close() waits for a flush in flight', async () => {
      const file = cleanup.filePath('flush');
      const region = Region.create({ kind: 'file', path: file, byteLength: 32 << 20 });
      region.write(0, Buffer.alloc(32 << 20, 0x5a));
      const events: string[] = [];
      const flushing = region.flush().then(() => events.push('flush'));
      const closing = region.close().then(() => events.push('close'));
      await Promise.all([flushing, closing]);
      assert.deepEqual(events, ['flush', 'close']);
      assert.equal(fs.readFileSync(file).subarray((32 << 20) - 4).toString('hex'), '5a5a5a5a');
    });

    it('natively, close during a flush defers the unmap until the flush completes', async () => {
      const name = cleanup.regionName('defer');
      const handle = new addon.Region(NativeRegionKind.shared, name, PAGE, true, false);
      const openBefore = addon.openResourceCount();
      const flushing = handle.flush();
      assert.equal(handle.close(), false, 'not released while the flush is pending');
      throwsCode(() => handle.write(0, Buffer.alloc(1)), 'ERR_REGION_CLOSED');
      assert.equal(mappingsOf(`/dev/shm/${name}`).length, 1, 'still mapped during the flush');
      await flushing;
      assert.equal(mappingsOf(`/dev/shm/${name}`).length, 0, 'unmapped once the flush completed');
      assert.equal(addon.openResourceCount(), openBefore - 1);
    });
  });
});
