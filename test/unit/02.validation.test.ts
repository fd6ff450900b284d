// Argument validation in the TypeScript layer: the exact error class and a message that names the
// argument and the bad value, before any native call.
import * as assert from 'node:assert/strict';

import { Bitmap } from '../../src/storage/bitmap';
import { crc32c } from '../../src/storage/crc32c';
import { Journal } from '../../src/storage/journal';
import { Region } from '../../src/storage/region';
import {
  checkIndex,
  checkIntegerIn,
  checkPowerOfTwo,
  checkSharedName,
  checkSpan,
  describe as describeValue,
} from '../../src/storage/validate';
import { Volume } from '../../src/storage/volume';
import { throwsWith } from '../helpers/storage';

describe('02 argument validation', () => {
  describe('primitives', () => {
    it('describe() names values without calling into them', () => {
      assert.equal(describeValue(undefined), 'undefined');
      assert.equal(describeValue(null), 'null');
      assert.equal(describeValue(1.5), '1.5');
      assert.equal(describeValue(NaN), 'NaN');
      assert.equal(describeValue(3n), '3n');
      assert.equal(describeValue('ab'), '"ab"');
      assert.equal(describeValue('x'.repeat(50)), 'a string of length 50');
      assert.equal(describeValue([1]), 'an array');
      assert.equal(describeValue(new Uint16Array(1)), 'a Uint16Array');
      assert.equal(describeValue({}), 'an object (Object)');
      assert.equal(describeValue(Object.create(null)), 'an object (null prototype)');
      assert.equal(describeValue(() => 1), 'function');
      assert.equal(describeValue(Symbol('s')), 'symbol');
    });

    it('checkIndex: TypeError for non-numbers, RangeError for NaN, negatives, fractions, > 2^53', () => {
      throwsWith(() => checkIndex('1', 'byteOffset'), TypeError, 'byteOffset must be a number (got "1")');
      throwsWith(() => checkIndex(1n, 'byteOffset'), TypeError, 'byteOffset must be a number (got 1n)');
      throwsWith(() => checkIndex(undefined, 'byteOffset'), TypeError, 'byteOffset must be a number (got undefined)');
      throwsWith(() => checkIndex(NaN, 'byteOffset'), RangeError, 'byteOffset must be a non-negative safe integer (got NaN)');
      throwsWith(() => checkIndex(-1, 'byteOffset'), RangeError, '(got -1)');
      throwsWith(() => checkIndex(0.5, 'byteOffset'), RangeError, '(got 0.5)');
      throwsWith(() => checkIndex(Infinity, 'byteOffset'), RangeError, '(got Infinity)');
      throwsWith(() => checkIndex(2 ** 53, 'byteOffset'), RangeError, '(got 9007199254740992)');
      checkIndex(0, 'x');
      checkIndex(2 ** 53 - 1, 'x');
    });

    it('checkIntegerIn and checkPowerOfTwo name the allowed range', () => {
      throwsWith(() => checkIntegerIn(9, 'flags', 0, 8), RangeError, 'flags must be in [0, 8] (got 9)');
      throwsWith(() => checkPowerOfTwo(3000, 'blockSize', 512, 65536), RangeError, 'blockSize must be a power of two in [512, 65536] (got 3000)');
      throwsWith(() => checkPowerOfTwo(256, 'blockSize', 512, 65536), RangeError, 'blockSize must be in [512, 65536] (got 256)');
      checkPowerOfTwo(2 ** 30, 'g', 512, 2 ** 30);
    });

    it('checkSpan reports the span and the limit', () => {
      throwsWith(() => checkSpan(10, 7, 16, 'region'), RangeError, '[10, +7) is outside the region (16 bytes)');
      throwsWith(() => checkSpan(17, 0, 16, 'region'), RangeError, '[17, +0) is outside the region');
      checkSpan(16, 0, 16, 'region');
      checkSpan(0, 16, 16, 'region');
    });

    it('checkSharedName: length is a RangeError, characters a TypeError', () => {
      throwsWith(() => checkSharedName('', 'name'), RangeError, 'name must be 1..200 characters long (got 0)');
      throwsWith(() => checkSharedName('a'.repeat(201), 'name'), RangeError, '(got 201)');
      throwsWith(() => checkSharedName('a/b', 'name'), TypeError, 'may only contain [A-Za-z0-9._-]');
      throwsWith(() => checkSharedName('..', 'name'), TypeError, 'must not be only dots');
      throwsWith(() => checkSharedName(7, 'name'), TypeError, 'name must be a string (got 7)');
    });
  });

  describe('public API messages', () => {
    let volume: Volume;
    before(() => {
      volume = Volume.create({ capacityBytes: 1 << 20, strict: true });
    });
    after(() => volume.close());

    it('Volume.create options', () => {
      throwsWith(() => Volume.create(undefined as never), TypeError, 'options must be an object (got undefined)');
      throwsWith(() => Volume.create({ capacityBytes: 4095 }), RangeError, 'options.capacityBytes (4095) must be a multiple of blockSize (4096)');
      throwsWith(() => Volume.create({ capacityBytes: 0 }), RangeError, 'options.capacityBytes must be in [1, 35184372088832] (got 0)');
      throwsWith(() => Volume.create({ capacityBytes: 2 ** 46 }), RangeError, 'options.capacityBytes must be in');
      throwsWith(() => Volume.create({ capacityBytes: 4096, blockSize: 1000 }), RangeError, 'options.blockSize must be a power of two');
      throwsWith(() => Volume.create({ capacityBytes: 4096, strict: 1 as never }), TypeError, 'options.strict must be a boolean (got 1)');
      throwsWith(() => Volume.create({ capacityBytes: 4096, backing: 'disk' as never }), RangeError, "options.backing must be one of 'memory', 'shared', 'file' (got \"disk\")");
      throwsWith(() => Volume.create({ capacityBytes: 4096, backing: 'shared' }), TypeError, "options.name is required for backing 'shared'");
      throwsWith(() => Volume.create({ capacityBytes: 4096, backing: 'file' }), TypeError, "options.path is required for backing 'file'");
      throwsWith(() => Volume.create({ capacityBytes: 4096, backing: 'shared', name: 'a'.repeat(185) }), RangeError, 'options.name must be 1..184 characters long');
    });

    it('Volume.open and Volume.unlink need exactly one of name and path', () => {
      throwsWith(() => Volume.open({} as never), TypeError, 'options: give exactly one of name and path');
      throwsWith(() => Volume.open({ name: 'a', path: '/tmp/a' } as never), TypeError, 'give exactly one of name and path');
      throwsWith(() => Volume.unlink(null as never), TypeError, 'options must be an object (got null)');
    });

    it('Volume I/O: types, ranges and strict alignment', () => {
      const block = Buffer.alloc(4096);
      throwsWith(() => volume.write('0' as never, block), TypeError, 'byteOffset must be a number (got "0")');
      throwsWith(() => volume.write(0, 'data' as never), TypeError, 'source must be a Uint8Array (got "data")');
      throwsWith(() => volume.write(0, new Uint16Array(2048) as never), TypeError, 'source must be a Uint8Array (got a Uint16Array)');
      throwsWith(() => volume.read(-4096, block), RangeError, 'byteOffset must be a non-negative safe integer (got -4096)');
      throwsWith(() => volume.read(1 << 20, block), RangeError, '[1048576, +4096) is outside the volume (capacityBytes 1048576)');
      throwsWith(() => volume.write(512, block), RangeError, '[512, +4096) is not aligned to blockSize 4096 (strict volume)');
      throwsWith(() => volume.write(0, Buffer.alloc(100)), RangeError, '[0, +100) is not aligned');
      throwsWith(() => volume.trim(0, 1.5), RangeError, 'byteLength must be a non-negative safe integer (got 1.5)');
      throwsWith(() => volume.writeZeroes(0, 4096, { mayPunchHole: 'yes' as never }), TypeError, 'options.mayPunchHole must be a boolean (got "yes")');
    });

    it('Volume.writev names the offending write', () => {
      const block = Buffer.alloc(4096);
      throwsWith(() => volume.writev('x' as never), TypeError, 'writes must be an array (got "x")');
      throwsWith(() => volume.writev([{ byteOffset: 0, data: block }, null as never]), TypeError, 'writes[1] must be an object (got null)');
      throwsWith(() => volume.writev([{ byteOffset: 0, data: [1, 2] as never }]), TypeError, 'writes[0].data must be a Uint8Array (got an array)');
      throwsWith(() => volume.writev([{ byteOffset: 0, data: block }, { byteOffset: 'a' as never, data: block }]), TypeError, 'writes[1].byteOffset must be a number (got "a")');
      throwsWith(() => volume.writev([{ byteOffset: 2 ** 60, data: block }]), RangeError, 'writes[0].byteOffset must be a non-negative safe integer');
      throwsWith(() => volume.writev([{ byteOffset: 4096 * 256, data: block }]), RangeError, 'writes[0]: [1048576, +4096) is outside the volume');
      throwsWith(() => volume.writev([{ byteOffset: 0, data: block }], new Float32Array(1) as never), TypeError, 'sequencesOut must be a Float64Array (got a Float32Array)');
      throwsWith(() => volume.writev([{ byteOffset: 0, data: block }, { byteOffset: 4096, data: block }], new Float64Array(1)), RangeError, 'sequencesOut must have at least 2 elements (got 1)');
      const many = Array.from({ length: Volume.MAX_WRITEV_COUNT + 1 }, () => ({ byteOffset: 0, data: block }));
      throwsWith(() => volume.writev(many), RangeError, `writes must hold at most ${Volume.MAX_WRITEV_COUNT} writes (got ${Volume.MAX_WRITEV_COUNT + 1})`);
    });

    it('Volume bitmaps: name and granularity', () => {
      throwsWith(() => volume.createBitmap(''), RangeError, 'name must be 1..47 characters of [A-Za-z0-9._:-] (got "")');
      throwsWith(() => volume.createBitmap('a b'), RangeError, 'name must be 1..47 characters');
      throwsWith(() => volume.createBitmap('x'.repeat(48)), RangeError, 'name must be 1..47 characters');
      throwsWith(() => volume.createBitmap('a', { granularityBytes: 2048 }), RangeError, 'options.granularityBytes must be in [4096, 1073741824] (got 2048)');
      throwsWith(() => volume.createBitmap('a', { recording: 0 as never }), TypeError, 'options.recording must be a boolean (got 0)');
      throwsWith(() => volume.attachJournal({} as never), TypeError, 'journal must be a Journal or null (got an object (Object))');
    });

    it('Region options', () => {
      throwsWith(() => Region.create({ byteLength: 0 }), RangeError, 'options.byteLength must be in [1, 70368744177664] (got 0)');
      throwsWith(() => Region.create({ kind: 'shared', byteLength: 4096 }), TypeError, 'options.name must be a string (got undefined)');
      throwsWith(() => Region.create({ kind: 'file', byteLength: 4096 }), TypeError, 'options.path must be a string (got undefined)');
      throwsWith(() => Region.open({ kind: 'anonymous' as never }), RangeError, "options.kind must be one of 'shared', 'file'");
      throwsWith(() => Region.unlink('shared', 'a/b'), TypeError, 'name may only contain');
    });

    it('Bitmap options and indices', () => {
      throwsWith(() => Bitmap.create({}), TypeError, 'options: one of bitCount and coveredBytes is required');
      throwsWith(() => Bitmap.create({ bitCount: 8, coveredBytes: 8 }), TypeError, 'give bitCount or coveredBytes, not both');
      throwsWith(() => Bitmap.create({ bitCount: 0 }), RangeError, 'options.bitCount must be in [1, 4294967296] (got 0)');
      throwsWith(() => Bitmap.create({ coveredBytes: 0 }), RangeError, 'options.coveredBytes (0) needs 0 bits');
      throwsWith(() => Bitmap.create({ bitCount: 8, granularityBytes: 100 }), RangeError, 'options.granularityBytes must be in [512, 1073741824] (got 100)');
      const bitmap = Bitmap.create({ bitCount: 8 });
      throwsWith(() => bitmap.set(8), RangeError, 'index (8) must be less than bitCount (8)');
      throwsWith(() => bitmap.setRange(4, 5), RangeError, 'first + count (4 + 5) exceeds bitCount (8)');
      throwsWith(() => bitmap.markBytes(8 * 65536, 1), RangeError, 'is outside the bytes the bitmap covers');
      throwsWith(() => bitmap.orMerge({} as never), TypeError, 'other must be a Bitmap (got an object (Object))');
      bitmap.close();
    });

    it('Journal options and records', () => {
      throwsWith(() => Journal.create({ capacityBytes: 1000 }), RangeError, 'options.capacityBytes must be in [65536, 17179869184] (got 1000)');
      throwsWith(() => Journal.create({ capacityBytes: 65536, maxRecordBytes: 16385 }), RangeError, 'options.maxRecordBytes must be in [1, 16384] (got 16385)');
      throwsWith(() => Journal.create({ kind: 'shared' }), TypeError, 'options.name must be a string (got undefined)');
      const journal = Journal.create({ capacityBytes: 65536 });
      throwsWith(() => journal.append({ kind: 'erase' as never, byteOffset: 0 }), RangeError, "record.kind must be one of 'write', 'zero', 'trim', 'marker' (got \"erase\")");
      throwsWith(() => journal.append({ byteOffset: 0, volumeId: 1 as never }), TypeError, 'record.volumeId must be a bigint (got 1)');
      throwsWith(() => journal.append({ byteOffset: 0, volumeId: -1n }), RangeError, 'record.volumeId must be in [0, 2^64) (got -1)');
      throwsWith(() => journal.append({ byteOffset: 0, flags: 65536 }), RangeError, 'record.flags must be in [0, 65535] (got 65536)');
      throwsWith(() => journal.append({ byteOffset: 0, byteLength: 2 ** 32 }), RangeError, 'record.byteLength must be in [0, 4294967295]');
      throwsWith(() => journal.read(0), RangeError, 'fromSequence must be at least 1 (sequences start at 1)');
      throwsWith(() => journal.read(1, { maxRecords: 0 }), RangeError, 'options.maxRecords must be in [1, 65536] (got 0)');
      void journal.close();
    });

    it('crc32c arguments', () => {
      throwsWith(() => crc32c('abc' as never), TypeError, 'data must be a Uint8Array (got "abc")');
      throwsWith(() => crc32c(Buffer.alloc(1), 2 ** 32), RangeError, 'previous must be in [0, 4294967295] (got 4294967296)');
    });
  });

  describe('names of shared volumes and journals', () => {
    it('may be as long as their region prefix leaves room for (region names stop at 200)', () => {
      // 'blockmirror.vol.' is 16 characters, 'blockmirror.journal.' 20: unlink checks the name
      // and answers false for a name that does not exist, so nothing is created here.
      assert.equal(Volume.unlink({ name: 'v'.repeat(184) }), false);
      throwsWith(() => Volume.unlink({ name: 'v'.repeat(185) }), RangeError, 'options.name must be 1..184 characters long (got 185)');
      assert.equal(Journal.unlink({ name: 'j'.repeat(180) }), false);
      throwsWith(() => Journal.unlink({ name: 'j'.repeat(181) }), RangeError, 'options.name must be 1..180 characters long (got 181)');
      throwsWith(() => Journal.create({ kind: 'shared', name: 'j'.repeat(181) }), RangeError, 'options.name must be 1..180 characters long');
    });

    it('open and unlink take exactly one of name and path', () => {
      for (const open of [(o: object) => Volume.open(o as { name: string }), (o: object) => Journal.open(o)]) {
        throwsWith(() => open({}), TypeError, 'options: give exactly one of name and path');
        throwsWith(() => open({ name: 'a', path: '/tmp/a' }), TypeError, 'options: give exactly one of name and path');
      }
    });
  });
});
