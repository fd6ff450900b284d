// The Bitmap contract: single bits, ranges, byte marking, search, whole-bitmap operations with
// geometry checks, the serialized form and its damage detection, bad arguments at both layers,
// wrong receivers and use after close.
import * as assert from 'node:assert/strict';

import { BlockmirrorError } from '../../src/errors';
import { addon, NativeRegionKind } from '../../src/native';
import { Bitmap } from '../../src/storage/bitmap';
import { crc32c } from '../../src/storage/crc32c';
import { methodNames, rejectsBadIndexes, throwsCode, throwsWith, wrongReceivers } from '../helpers/storage';

function setBits(bitmap: Bitmap): number[] {
  const bits: number[] = [];
  for (let i = bitmap.findNextSet(); i !== -1; i = bitmap.findNextSet(i + 1)) bits.push(i);
  return bits;
}

describe('12 bitmap', () => {
  const open: Bitmap[] = [];
  const make = (options: Parameters<typeof Bitmap.create>[0]): Bitmap => {
    const bitmap = Bitmap.create(options);
    open.push(bitmap);
    return bitmap;
  };
  afterEach(() => {
    for (const bitmap of open.splice(0)) bitmap.close();
  });

  it('is created from bitCount or from coveredBytes, clear', () => {
    const a = make({ bitCount: 130 });
    assert.deepEqual([a.bitCount, a.granularityBytes, a.count()], [130, 65536, 0]);
    const b = make({ coveredBytes: 65536 * 3 + 1, granularityBytes: 65536 });
    assert.equal(b.bitCount, 4);
    const c = make({ coveredBytes: 512, granularityBytes: 512 });
    assert.equal(c.bitCount, 1);
  });

  it('set, clear and test return and report the previous value', () => {
    const bitmap = make({ bitCount: 70 });
    assert.equal(bitmap.set(69), false);
    assert.equal(bitmap.set(69), true);
    assert.equal(bitmap.test(69), true);
    assert.equal(bitmap.test(68), false);
    assert.equal(bitmap.clear(69), true);
    assert.equal(bitmap.clear(69), false);
    assert.equal(bitmap.count(), 0);
  });

  it('ranges cross word boundaries exactly', () => {
    const bitmap = make({ bitCount: 200 });
    bitmap.setRange(60, 75);
    assert.equal(bitmap.count(), 75);
    assert.equal(bitmap.test(59), false);
    assert.equal(bitmap.test(60), true);
    assert.equal(bitmap.test(134), true);
    assert.equal(bitmap.test(135), false);
    bitmap.clearRange(64, 64);
    assert.deepEqual(setBits(bitmap), [60, 61, 62, 63, ...Array.from({ length: 7 }, (_, i) => 128 + i)]);
    bitmap.setRange(200, 0);
    bitmap.clearRange(0, 0);
    assert.equal(bitmap.count(), 11);
  });

  it('markBytes sets every track a byte range touches', () => {
    const bitmap = make({ bitCount: 16, granularityBytes: 4096 });
    bitmap.markBytes(4095, 2);
    bitmap.markBytes(3 * 4096, 4096);
    bitmap.markBytes(10 * 4096, 0);
    bitmap.markBytes(15 * 4096 + 4095, 1);
    assert.deepEqual(setBits(bitmap), [0, 1, 3, 15]);
  });

  it('setAll sets exactly bitCount bits; clearAll clears them', () => {
    const bitmap = make({ bitCount: 67 });
    bitmap.setAll();
    assert.equal(bitmap.count(), 67);
    assert.equal(bitmap.findNextClear(), -1);
    bitmap.clearAll();
    assert.equal(bitmap.count(), 0);
    assert.equal(bitmap.findNextSet(), -1);
  });

  it('findNextSet and findNextClear search from an index; -1 when none', () => {
    const bitmap = make({ bitCount: 300 });
    bitmap.set(5);
    bitmap.set(64);
    bitmap.set(299);
    assert.equal(bitmap.findNextSet(), 5);
    assert.equal(bitmap.findNextSet(6), 64);
    assert.equal(bitmap.findNextSet(65), 299);
    assert.equal(bitmap.findNextSet(300), -1);
    assert.equal(bitmap.findNextSet(2 ** 40), -1, 'past the end is not an error');
    bitmap.setRange(0, 5);
    assert.equal(bitmap.findNextClear(), 6);
    assert.equal(bitmap.findNextClear(299), -1);
  });

  it('orMerge, swap and copyFrom need the same geometry', () => {
    const a = make({ bitCount: 100 });
    const b = make({ bitCount: 100 });
    a.set(1);
    b.set(2);
    a.orMerge(b);
    assert.deepEqual(setBits(a), [1, 2]);
    b.set(99);
    a.swap(b);
    assert.deepEqual(setBits(a), [2, 99]);
    assert.deepEqual(setBits(b), [1, 2]);
    a.copyFrom(b);
    assert.deepEqual(setBits(a), [1, 2]);
    a.orMerge(a);
    a.swap(a);
    assert.deepEqual(setBits(a), [1, 2]);
    const other = make({ bitCount: 101 });
    const coarse = make({ bitCount: 100, granularityBytes: 4096 });
    for (const wrong of [other, coarse]) {
      throwsWith(() => a.orMerge(wrong), BlockmirrorError, 'geometry', 'ERR_BITMAP_GEOMETRY');
      throwsCode(() => a.swap(wrong), 'ERR_BITMAP_GEOMETRY');
      throwsCode(() => a.copyFrom(wrong), 'ERR_BITMAP_GEOMETRY');
    }
    // And natively, past the TypeScript check.
    const x = new addon.Bitmap(100, 65536);
    const y = new addon.Bitmap(101, 65536);
    throwsCode(() => x.orMerge(y), 'ERR_BITMAP_GEOMETRY');
    x.close();
    y.close();
  });

  it('serialize and deserialize round-trip bits and geometry', () => {
    const bitmap = make({ bitCount: 1000, granularityBytes: 1 << 20 });
    for (const i of [0, 63, 64, 500, 999]) bitmap.set(i);
    const bytes = bitmap.serialize();
    assert.ok(Buffer.isBuffer(bytes));
    assert.equal(bytes.subarray(0, 8).toString('latin1'), 'BMBITMAP');
    // words (16 of them) + header (40) + crc (4)
    assert.equal(bytes.length, 40 + 16 * 8 + 4);
    assert.equal(bytes.readUInt32LE(bytes.length - 4), crc32c(bytes.subarray(0, bytes.length - 4)));
    const copy = Bitmap.deserialize(bytes);
    open.push(copy);
    assert.deepEqual([copy.bitCount, copy.granularityBytes], [1000, 1 << 20]);
    assert.deepEqual(setBits(copy), [0, 63, 64, 500, 999]);
    const target = make({ bitCount: 1000, granularityBytes: 1 << 20 });
    target.set(7);
    target.deserializeInto(bytes);
    assert.deepEqual(setBits(target), [0, 63, 64, 500, 999]);
  });

  it('damaged or foreign input is refused, never read past its end', () => {
    const bitmap = make({ bitCount: 128 });
    bitmap.set(3);
    const bytes = bitmap.serialize();
    const flipped = Buffer.from(bytes);
    flipped[50] = (flipped[50] as number) ^ 1;
    throwsWith(() => Bitmap.deserialize(flipped), BlockmirrorError, 'checksum', 'ERR_BITMAP_CHECKSUM');
    for (let length = 0; length < bytes.length; length += 7) {
      throwsCode(() => Bitmap.deserialize(bytes.subarray(0, length)), 'ERR_BITMAP_FORMAT');
    }
    const magic = Buffer.from(bytes);
    magic[0] = 0;
    throwsCode(() => Bitmap.deserialize(magic), 'ERR_BITMAP_FORMAT');
    const other = make({ bitCount: 129 });
    throwsCode(() => other.deserializeInto(bytes), 'ERR_BITMAP_GEOMETRY');
    assert.equal(other.count(), 0, 'a refused load leaves the bitmap as it was');
  });

  describe('bad arguments', () => {
    it('every method rejects bad indices (TypeScript layer)', () => {
      const bitmap = make({ bitCount: 64 });
      const orBad = (v: unknown): number => (v === undefined ? 'x' : v) as number;
      rejectsBadIndexes((v) => bitmap.set(v as number), 'set');
      rejectsBadIndexes((v) => bitmap.clear(v as number), 'clear');
      rejectsBadIndexes((v) => bitmap.test(v as number), 'test');
      rejectsBadIndexes((v) => bitmap.setRange(v as number, 1), 'setRange first');
      rejectsBadIndexes((v) => bitmap.clearRange(0, v as number), 'clearRange count');
      rejectsBadIndexes((v) => bitmap.markBytes(v as number, 1), 'markBytes offset');
      rejectsBadIndexes((v) => bitmap.markBytes(0, v as number), 'markBytes length');
      rejectsBadIndexes((v) => bitmap.findNextSet(orBad(v)), 'findNextSet');
      rejectsBadIndexes((v) => bitmap.findNextClear(orBad(v)), 'findNextClear');
      throwsWith(() => bitmap.test(64), RangeError, 'index (64) must be less than bitCount (64)');
      throwsWith(() => bitmap.deserializeInto('x' as never), TypeError, 'bytes must be a Uint8Array');
      throwsWith(() => Bitmap.deserialize(null as never), TypeError, 'bytes must be a Uint8Array (got null)');
      assert.equal(bitmap.count(), 0);
    });

    it('the native layer checks every argument again', () => {
      const handle = new addon.Bitmap(64, 4096);
      try {
        rejectsBadIndexes((v) => handle.set(v as number), 'native set');
        rejectsBadIndexes((v) => handle.setRange(0, v as number), 'native setRange');
        rejectsBadIndexes((v) => handle.markBytes(v as number, 0), 'native markBytes');
        throwsWith(() => handle.set(64), RangeError, 'index (64) must be less than bitCount (64)');
        throwsWith(() => handle.clearRange(60, 5), RangeError, 'first + count (60 + 5) exceeds bitCount (64)');
        throwsWith(() => handle.markBytes(64 * 4096, 1), RangeError, 'exceeds the covered bytes (262144)');
        throwsWith(() => handle.orMerge({} as never), TypeError, 'other must be a native Bitmap');
        throwsWith(() => handle.swap(new addon.Region(NativeRegionKind.anonymous, 'r', 4096, true, false) as never), TypeError, 'other must be a native Bitmap');
        throwsWith(() => handle.deserializeInto([1] as never), TypeError, 'bytes must be a Uint8Array');
        throwsWith(() => new addon.Bitmap(0, 4096), RangeError, 'bitCount must be at least 1');
        throwsWith(() => new addon.Bitmap(2 ** 32 + 1, 4096), RangeError, 'bitCount must be at most 4294967296');
        throwsWith(() => new addon.Bitmap(8, 1000), RangeError, 'must be a power of two from 512');
        throwsWith(() => new (addon.Bitmap as unknown as new () => unknown)(), TypeError, 'bitCount must be a number (got undefined)');
        assert.equal(handle.count(), 0);
      } finally {
        handle.close();
      }
    });
  });

  describe('receivers', () => {
    it('native methods called on anything but a native Bitmap throw TypeError', () => {
      const other = new addon.Journal(NativeRegionKind.anonymous, 'j', true, 65536, 1024);
      for (const name of methodNames(addon.Bitmap.prototype)) {
        const method = (addon.Bitmap.prototype as unknown as Record<string, (...args: unknown[]) => unknown>)[name] as (...args: unknown[]) => unknown;
        for (const receiver of wrongReceivers(other)) {
          throwsWith(() => method.call(receiver, 0, 1), TypeError, 'receiver is not a native Bitmap');
        }
      }
      other.close();
    });

    it('TypeScript methods called on a non-Bitmap throw TypeError', () => {
      for (const name of methodNames(Bitmap.prototype)) {
        const method = (Bitmap.prototype as unknown as Record<string, (...args: unknown[]) => unknown>)[name] as (...args: unknown[]) => unknown;
        assert.throws(() => method.call({}, 0, 1), TypeError, name);
      }
    });
  });

  describe('close', () => {
    it('every method throws ERR_BITMAP_CLOSED after close; close is idempotent', () => {
      const bitmap = Bitmap.create({ bitCount: 8 });
      const other = make({ bitCount: 8 });
      bitmap.close();
      bitmap.close();
      assert.equal(bitmap.closed, true);
      for (const name of methodNames(Bitmap.prototype)) {
        if (name === 'close') continue;
        const method = (bitmap as unknown as Record<string, (...args: unknown[]) => unknown>)[name] as (...args: unknown[]) => unknown;
        throwsCode(() => method.call(bitmap, 0, 1), 'ERR_BITMAP_CLOSED');
      }
      throwsCode(() => other.orMerge(bitmap), 'ERR_BITMAP_CLOSED');
    });

    it('the native handle refuses use after close, also as an argument', () => {
      const a = new addon.Bitmap(8, 4096);
      const b = new addon.Bitmap(8, 4096);
      b.close();
      b.close();
      throwsCode(() => b.set(0), 'ERR_BITMAP_CLOSED');
      throwsCode(() => a.orMerge(b), 'ERR_BITMAP_CLOSED');
      a.close();
    });
  });
});
