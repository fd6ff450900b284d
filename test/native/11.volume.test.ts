// The Volume contract: the write path (store, bitmaps, journal), batches validated as a whole,
// strict alignment, the three backings, bad arguments at both layers, wrong receivers, use after
// close, and close() waiting for a flush in flight.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';

import { BlockmirrorError } from '../../src/errors';
import { addon, NativeRegionKind, NativeVolume } from '../../src/native';
import { Journal } from '../../src/storage/journal';
import { Region } from '../../src/storage/region';
import { Volume, kNativeHandle, sharedVolumeRegionName } from '../../src/storage/volume';
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

const MiB = 1 << 20;

function readBack(volume: Volume, byteOffset: number, byteLength: number): Buffer {
  const bytes = Buffer.alloc(byteLength);
  volume.read(byteOffset, bytes);
  return bytes;
}

function isZero(bytes: Uint8Array): boolean {
  return bytes.every((b) => b === 0);
}

describe('11 volume', () => {
  const cleanup = new Cleanup();
  afterEach(() => cleanup.run());

  describe('memory volume', () => {
    it('has a random 64-bit id and the geometry it was made with', () => {
      const a = cleanup.close(Volume.create({ capacityBytes: MiB, name: 'label' }));
      const b = cleanup.close(Volume.create({ capacityBytes: 2 * MiB, blockSize: 512, strict: true }));
      assert.equal(typeof a.id, 'bigint');
      assert.notEqual(a.id, b.id);
      assert.deepEqual(
        [a.capacityBytes, a.blockSize, a.strict, a.backing, a.name, a.path],
        [MiB, 4096, false, 'memory', 'label', undefined],
      );
      assert.deepEqual([b.capacityBytes, b.blockSize, b.strict, b.name], [2 * MiB, 512, true, undefined]);
      assert.ok(isZero(readBack(a, 0, MiB)));
    });

    it('reads back what was written, at any offset and length', () => {
      const volume = cleanup.close(Volume.create({ capacityBytes: MiB }));
      assert.equal(volume.write(4095, pattern(1, 4095, 3)), 0, 'no journal: sequence 0');
      assert.equal(volume.write(MiB - 1, Buffer.from([9])), 0);
      assert.ok(readBack(volume, 4094, 5).equals(Buffer.concat([Buffer.from([0]), pattern(1, 4095, 3), Buffer.from([0])])));
      assert.equal(readBack(volume, MiB - 1, 1)[0], 9);
      volume.write(MiB, Buffer.alloc(0));
    });

    it('writev applies the batch in order and fills sequencesOut', () => {
      const volume = cleanup.close(Volume.create({ capacityBytes: MiB }));
      const sequences = new Float64Array(4).fill(7);
      const full = volume.writev(
        [
          { byteOffset: 0, data: Buffer.alloc(8192, 1) },
          { byteOffset: 4096, data: Buffer.alloc(4096, 2) },
          { byteOffset: 100, data: Buffer.from('abc') },
        ],
        sequences,
      );
      assert.equal(full, 0);
      assert.deepEqual([...sequences], [0, 0, 0, 7], 'one sequence per write, the rest untouched');
      const bytes = readBack(volume, 0, 8192);
      assert.equal(bytes[0], 1);
      assert.equal(bytes.subarray(100, 103).toString(), 'abc');
      assert.equal(bytes[4095], 1);
      assert.equal(bytes[4096], 2, 'the later write wins');
      assert.equal(volume.writev([]), 0);
    });

    it('writev of MAX_WRITEV_COUNT writes works', () => {
      const volume = cleanup.close(Volume.create({ capacityBytes: 4 * MiB }));
      const writes = Array.from({ length: Volume.MAX_WRITEV_COUNT }, (_, i) => ({ byteOffset: i * 4096, data: Buffer.alloc(16, i & 0xff) }));
      assert.equal(volume.writev(writes), 0);
      for (const i of [0, 1, 511, Volume.MAX_WRITEV_COUNT - 1]) assert.equal(readBack(volume, i * 4096, 1)[0], i & 0xff);
    });

    it('a batch with one bad write changes nothing (TypeScript and native layers)', () => {
      const volume = cleanup.close(Volume.create({ capacityBytes: MiB }));
      const bitmap = volume.createBitmap('dirty');
      throwsWith(
        () => volume.writev([{ byteOffset: 0, data: Buffer.alloc(16, 1) }, { byteOffset: MiB - 1, data: Buffer.alloc(2, 1) }]),
        RangeError,
        'writes[1]: [1048575, +2) is outside the volume',
      );
      // Bypass the TypeScript checks: the native batch must refuse as a whole too.
      const handle = nativeOf(volume);
      throwsWith(
        () => handle.writev(new Float64Array([0, MiB]), 2, undefined, Buffer.alloc(16, 1), Buffer.alloc(1, 1)),
        RangeError,
        'outside the volume',
      );
      throwsWith(() => handle.writev(new Float64Array([0, 0.5]), 2, undefined, Buffer.alloc(16, 1), Buffer.alloc(1, 1)), RangeError, 'byteOffsets[1] must be a non-negative safe integer');
      throwsWith(() => handle.writev(new Float64Array([0, 0]), 2, undefined, Buffer.alloc(16, 1), 'x' as never), TypeError, 'buffer must be a Uint8Array');
      assert.ok(isZero(readBack(volume, 0, 16)), 'no byte of the batch was stored');
      assert.equal(bitmap.count(), 0, 'no bit was marked');
      assert.equal(volume.stats().writeCount, 0);
    });

    it('writeZeroes and trim zero the range; punching and trimming release pages', () => {
      const volume = cleanup.close(Volume.create({ capacityBytes: MiB }));
      volume.write(0, Buffer.alloc(MiB, 0xee));
      assert.deepEqual(volume.allocationMap(), [{ byteOffset: 0, byteLength: MiB, allocated: true }]);
      volume.writeZeroes(10, 20);
      volume.writeZeroes(65536, 65536, { mayPunchHole: true });
      volume.trim(4 * 65536, 65536);
      const bytes = readBack(volume, 0, MiB);
      for (let i = 0; i < MiB; i++) {
        const zero = (i >= 10 && i < 30) || (i >= 65536 && i < 131072) || (i >= 262144 && i < 327680);
        if (bytes[i] !== (zero ? 0 : 0xee)) assert.fail(`byte ${i} is ${bytes[i]}`);
      }
      const holes = volume.allocationMap().filter((extent) => !extent.allocated);
      assert.deepEqual(holes, [
        { byteOffset: 65536, byteLength: 65536, allocated: false },
        { byteOffset: 262144, byteLength: 65536, allocated: false },
      ]);
      assert.deepEqual(volume.allocationMap(65536, 4096), [{ byteOffset: 65536, byteLength: 4096, allocated: false }]);
    });

    it('stats count every kind of request', () => {
      const volume = cleanup.close(Volume.create({ capacityBytes: MiB }));
      volume.createBitmap('a');
      volume.write(0, Buffer.alloc(100));
      volume.writev([{ byteOffset: 0, data: Buffer.alloc(10) }, { byteOffset: 20, data: Buffer.alloc(30) }]);
      volume.writeZeroes(0, 4096);
      volume.trim(0, 8192);
      volume.read(0, Buffer.alloc(7));
      const stats = volume.stats();
      assert.deepEqual(stats, {
        readCount: 1,
        readBytes: 7,
        writeCount: 3,
        writeBytes: 140,
        zeroCount: 1,
        zeroBytes: 4096,
        trimCount: 1,
        trimBytes: 8192,
        flushCount: 0,
        batchCount: 4,
        journalAppendCount: 0,
        journalFullCount: 0,
        bitmapMarkCount: 5,
      });
    });
  });

  describe('strict volume', () => {
    it('refuses misaligned requests at both layers and stores nothing', () => {
      const volume = cleanup.close(Volume.create({ capacityBytes: MiB, blockSize: 4096, strict: true }));
      volume.write(4096, Buffer.alloc(4096, 1));
      for (const [byteOffset, byteLength] of [
        [1, 4096],
        [4096, 4095],
        [2048, 2048],
      ] as const) {
        throwsWith(() => volume.write(byteOffset, Buffer.alloc(byteLength, 2)), RangeError, 'is not aligned to blockSize 4096');
        throwsWith(() => volume.read(byteOffset, Buffer.alloc(byteLength)), RangeError, 'is not aligned');
        throwsWith(() => volume.writeZeroes(byteOffset, byteLength), RangeError, 'is not aligned');
        throwsWith(() => volume.trim(byteOffset, byteLength), RangeError, 'is not aligned');
        throwsWith(() => volume.writev([{ byteOffset, data: Buffer.alloc(byteLength, 2) }]), RangeError, 'is not aligned');
      }
      const handle = nativeOf(volume);
      throwsWith(() => handle.write(512, Buffer.alloc(4096, 2)), RangeError, 'is not aligned to the block size 4096');
      throwsWith(() => handle.read(0, Buffer.alloc(100)), RangeError, 'is not aligned');
      throwsWith(() => handle.writev(new Float64Array([0, 100]), 2, undefined, Buffer.alloc(4096, 2), Buffer.alloc(4096, 2)), RangeError, 'is not aligned');
      const bytes = readBack(volume, 0, 3 * 4096);
      assert.ok(isZero(bytes.subarray(0, 4096)));
      assert.ok(bytes.subarray(4096, 8192).every((b) => b === 1));
      assert.ok(isZero(bytes.subarray(8192)));
    });
  });

  describe('bitmaps', () => {
    it('a recording bitmap marks the tracks every write, zero and trim touches', () => {
      const volume = cleanup.close(Volume.create({ capacityBytes: MiB }));
      const bitmap = volume.createBitmap('oos');
      assert.deepEqual([bitmap.bitCount, bitmap.granularityBytes], [16, 65536]);
      volume.write(65535, Buffer.alloc(2));
      volume.writev([{ byteOffset: 5 * 65536, data: Buffer.alloc(1) }]);
      volume.writeZeroes(8 * 65536, 1);
      volume.trim(15 * 65536, 65536);
      const set: number[] = [];
      for (let i = bitmap.findNextSet(); i !== -1; i = bitmap.findNextSet(i + 1)) set.push(i);
      assert.deepEqual(set, [0, 1, 5, 8, 15]);
    });

    it('recording can be switched off and on; a non-recording bitmap stays clear', () => {
      const volume = cleanup.close(Volume.create({ capacityBytes: MiB }));
      const cr = volume.createBitmap('cr', { granularityBytes: 4096, recording: false });
      assert.equal(cr.bitCount, 256);
      volume.write(0, Buffer.alloc(1));
      assert.equal(cr.count(), 0);
      volume.setBitmapRecording('cr', true);
      volume.write(8192, Buffer.alloc(1));
      assert.equal(cr.test(2), true);
      assert.equal(cr.count(), 1);
      volume.setBitmapRecording('cr', false);
      volume.write(3 * 4096, Buffer.alloc(1));
      assert.equal(cr.count(), 1);
      assert.deepEqual(volume.listBitmaps(), [{ name: 'cr', granularityBytes: 4096, bitCount: 256, recording: false }]);
    });

    it('openBitmap is another view of the same bits', () => {
      const volume = cleanup.close(Volume.create({ capacityBytes: MiB }));
      const a = volume.createBitmap('x');
      const b = volume.openBitmap('x');
      a.set(3);
      assert.equal(b.test(3), true);
      b.clear(3);
      assert.equal(a.test(3), false);
      a.close();
      assert.equal(b.closed, false, 'closing one view leaves the other');
      volume.write(0, Buffer.alloc(1));
      assert.equal(b.test(0), true);
    });

    it('names are unique, slots are limited to 16, missing names are reported', () => {
      const volume = cleanup.close(Volume.create({ capacityBytes: MiB }));
      volume.createBitmap('a');
      throwsWith(() => volume.createBitmap('a'), BlockmirrorError, 'already exists', 'ERR_BITMAP_EXISTS');
      for (let i = 1; i < 16; i++) volume.createBitmap(`b${i}`);
      throwsWith(() => volume.createBitmap('one-too-many'), BlockmirrorError, 'all 16 bitmap slots', 'ERR_BITMAP_LIMIT');
      throwsCode(() => volume.openBitmap('nope'), 'ERR_BITMAP_NOT_FOUND');
      throwsCode(() => volume.deleteBitmap('nope'), 'ERR_BITMAP_NOT_FOUND');
      throwsCode(() => volume.setBitmapRecording('nope', true), 'ERR_BITMAP_NOT_FOUND');
      assert.equal(volume.listBitmaps().length, 16);
    });

    it('deleteBitmap frees the slot, closes this volume\'s views and a new bitmap starts clear', () => {
      const volume = cleanup.close(Volume.create({ capacityBytes: MiB }));
      const old = volume.createBitmap('gone');
      const view = volume.openBitmap('gone');
      old.setAll();
      volume.deleteBitmap('gone');
      assert.equal(old.closed, true);
      assert.equal(view.closed, true);
      throwsCode(() => view.count(), 'ERR_BITMAP_CLOSED');
      assert.deepEqual(volume.listBitmaps(), []);
      const fresh = volume.createBitmap('fresh');
      assert.equal(fresh.count(), 0, 'the reused slot was cleared');
    });
  });

  describe('journal', () => {
    it('each write appends a record and returns its sequence', () => {
      const volume = cleanup.close(Volume.create({ capacityBytes: MiB }));
      const journal = cleanup.close(Journal.create({ capacityBytes: 1 << 20 }));
      volume.attachJournal(journal);
      assert.equal(volume.write(4096, Buffer.from('one')), 1);
      const sequences = new Float64Array(2);
      assert.equal(volume.writev([{ byteOffset: 0, data: Buffer.from('two') }, { byteOffset: 9, data: Buffer.from('three') }], sequences), 0);
      assert.deepEqual([...sequences], [2, 3]);
      assert.equal(volume.writeZeroes(0, 4096), 4);
      assert.equal(volume.trim(8192, 4096), 5);
      const records = journal.read(1);
      assert.deepEqual(
        records.map((r) => [r.sequence, r.volumeId === volume.id, r.kind, r.byteOffset, r.byteLength, r.data.toString()]),
        [
          [1, true, 'write', 4096, 3, 'one'],
          [2, true, 'write', 0, 3, 'two'],
          [3, true, 'write', 9, 5, 'three'],
          [4, true, 'zero', 0, 4096, ''],
          [5, true, 'trim', 8192, 4096, ''],
        ],
      );
      volume.attachJournal(null);
      assert.equal(volume.write(0, Buffer.from('x')), 0, 'detached: no sequence');
      assert.equal(journal.nextSequence, 6);
    });

    it('a full journal returns JOURNAL_FULL, yet the data is stored and the bitmap marked', () => {
      const volume = cleanup.close(Volume.create({ capacityBytes: MiB }));
      const bitmap = volume.createBitmap('oos');
      const journal = cleanup.close(Journal.create({ capacityBytes: 65536, maxRecordBytes: 16384 }));
      volume.attachJournal(journal);
      let sequence = 0;
      let writes = 0;
      while ((sequence = volume.write(writes * 16384, Buffer.alloc(16384, 1))) > 0) writes += 1;
      assert.equal(sequence, Volume.JOURNAL_FULL);
      assert.ok(writes >= 3 && writes < 4, `the ring held ${writes} records of 16 KiB`);
      assert.ok(readBack(volume, writes * 16384, 16384).every((b) => b === 1), 'the write that met a full journal is stored');
      assert.equal(bitmap.test(Math.floor((writes * 16384) / 65536)), true);
      const sequences = new Float64Array(2);
      assert.equal(volume.writev([{ byteOffset: 0, data: Buffer.alloc(16384) }, { byteOffset: 0, data: Buffer.alloc(8) }], sequences), 1);
      assert.equal(sequences[0], -1);
      assert.ok((sequences[1] as number) > 0, 'a small record still fits');
      // A write larger than a journal record is reported like a full journal.
      assert.equal(volume.write(0, Buffer.alloc(16385)), Volume.JOURNAL_FULL);
      const stats = volume.stats();
      assert.equal(stats.journalFullCount, 3);
      assert.equal(stats.journalAppendCount, writes + 1);
      journal.release(journal.nextSequence - 1);
      assert.ok(volume.write(0, Buffer.alloc(16384)) > 0, 'room again after release');
    });

    it('closing the journal detaches it from the volume', async () => {
      const volume = cleanup.close(Volume.create({ capacityBytes: MiB }));
      const journal = Journal.create({ capacityBytes: 65536 });
      volume.attachJournal(journal);
      assert.equal(volume.write(0, Buffer.alloc(1)), 1);
      await journal.close();
      assert.equal(volume.write(0, Buffer.alloc(1)), 0, 'writes go on without a journal');
      throwsCode(() => volume.attachJournal(journal), 'ERR_JOURNAL_CLOSED');
    });

    it('a volume closing forgets its journal, which stays usable', async () => {
      const volume = Volume.create({ capacityBytes: MiB });
      const journal = cleanup.close(Journal.create({ capacityBytes: 65536 }));
      volume.attachJournal(journal);
      volume.write(0, Buffer.alloc(1));
      await volume.close();
      assert.equal(journal.append({ byteOffset: 0 }), 2);
      await journal.close();
    });
  });

  describe('shared volume', () => {
    it('is opened by name with the same id, bytes and bitmaps, and unlinked', async () => {
      const name = cleanup.volumeName('vol');
      const first = Volume.create({ capacityBytes: MiB, backing: 'shared', name, blockSize: 512, strict: true });
      assert.equal(mappingsOf(`/dev/shm/${sharedVolumeRegionName(name)}`).length, 1);
      throwsCode(() => Volume.create({ capacityBytes: MiB, backing: 'shared', name }), 'ERR_REGION_EXISTS');
      const dirty = first.createBitmap('dirty', { granularityBytes: 4096 });
      first.write(512 * 3, pattern(5, 0, 512));
      const second = Volume.open({ name });
      assert.deepEqual(
        [second.id, second.capacityBytes, second.blockSize, second.strict, second.backing, second.name],
        [first.id, MiB, 512, true, 'shared', name],
      );
      assert.ok(readBack(second, 512 * 3, 512).equals(pattern(5, 0, 512)));
      assert.deepEqual(second.listBitmaps(), [{ name: 'dirty', granularityBytes: 4096, bitCount: 256, recording: true }]);
      // The second object marks the bitmap the first created (it reloads the directory).
      second.write(4096 * 100, Buffer.alloc(512));
      assert.equal(dirty.test(100), true);
      await first.close();
      await second.close();
      assert.equal(Volume.unlink({ name }), true);
      assert.equal(Volume.unlink({ name }), false);
      throwsCode(() => Volume.open({ name }), 'ERR_REGION_NOT_FOUND');
    });

    it('a region that is not a volume is refused with ERR_VOLUME_BAD_SUPERBLOCK', async () => {
      const name = cleanup.volumeName('bad');
      const region = Region.create({ kind: 'shared', name: sharedVolumeRegionName(name), byteLength: 65536 });
      region.write(0, Buffer.from('not a superblock'));
      await region.close();
      throwsWith(() => Volume.open({ name }), BlockmirrorError, /superblock/i, 'ERR_VOLUME_BAD_SUPERBLOCK');
    });
  });

  describe('file volume', () => {
    it('survives close and reopen, with its bitmaps', async () => {
      const file = cleanup.filePath('vol');
      const volume = Volume.create({ capacityBytes: MiB, backing: 'file', path: file });
      assert.deepEqual([volume.backing, volume.path, volume.name], ['file', file, undefined]);
      volume.createBitmap('b').set(2);
      volume.write(MiB - 4096, pattern(9, 0, 4096));
      await volume.flush();
      assert.equal(volume.stats().flushCount, 1);
      await volume.close();
      const again = cleanup.close(Volume.open({ path: file }));
      assert.equal(again.id, volume.id);
      assert.ok(readBack(again, MiB - 4096, 4096).equals(pattern(9, 0, 4096)));
      assert.equal(again.openBitmap('b').test(2), true);
      assert.equal(again.openBitmap('b').test(15), true, 'the last write marked track 15');
      throwsCode(() => Volume.create({ capacityBytes: MiB, backing: 'file', path: file }), 'ERR_REGION_EXISTS');
    });
  });

  describe('bad arguments', () => {
    it('every method rejects bad indices and byte arrays (TypeScript layer)', () => {
      const volume = cleanup.close(Volume.create({ capacityBytes: MiB }));
      const bytes = Buffer.alloc(8);
      const orBad = (v: unknown): number => (v === undefined ? 'x' : v) as number;
      rejectsBadIndexes((v) => volume.read(v as number, bytes), 'read');
      rejectsBadIndexes((v) => volume.write(v as number, bytes), 'write');
      rejectsBadIndexes((v) => volume.writev([{ byteOffset: v as number, data: bytes }]), 'writev');
      rejectsBadIndexes((v) => volume.writeZeroes(v as number, 1), 'writeZeroes offset');
      rejectsBadIndexes((v) => volume.writeZeroes(0, v as number), 'writeZeroes length');
      rejectsBadIndexes((v) => volume.trim(v as number, 1), 'trim offset');
      rejectsBadIndexes((v) => volume.trim(0, v as number), 'trim length');
      rejectsBadIndexes((v) => volume.allocationMap(orBad(v), 1), 'allocationMap offset');
      rejectsBadIndexes((v) => volume.allocationMap(0, orBad(v)), 'allocationMap length');
      rejectsBadIndexes((v) => volume.createBitmap('g', { granularityBytes: orBad(v) }), 'createBitmap granularity');
      rejectsBadBytes((v) => volume.read(0, v as Uint8Array), 'read');
      rejectsBadBytes((v) => volume.write(0, v as Uint8Array), 'write');
      rejectsBadBytes((v) => volume.writev([{ byteOffset: 0, data: v as Uint8Array }]), 'writev');
      throwsWith(() => volume.write(MiB - 7, bytes), RangeError, 'is outside the volume');
      throwsWith(() => volume.writeZeroes(1, MiB), RangeError, 'is outside the volume');
      throwsWith(() => volume.createBitmap('g', { granularityBytes: 3 * 4096 }), RangeError, 'must be a power of two');
      throwsWith(() => volume.setBitmapRecording('g', 'yes' as never), TypeError, 'recording must be a boolean');
      throwsWith(() => volume.openBitmap(5 as never), TypeError, 'name must be a string (got 5)');
      assert.equal(volume.stats().writeCount, 0, 'nothing got through');
    });

    it('the native layer checks every argument again', () => {
      const volume = cleanup.close(Volume.create({ capacityBytes: MiB }));
      const handle = nativeOf(volume);
      const bytes = Buffer.alloc(8);
      rejectsBadIndexes((v) => handle.read(v as number, bytes), 'native read');
      rejectsBadIndexes((v) => handle.write(v as number, bytes), 'native write');
      rejectsBadIndexes((v) => handle.writeZeroes(v as number, 1, false), 'native writeZeroes');
      rejectsBadIndexes((v) => handle.trim(0, v as number), 'native trim');
      rejectsBadIndexes((v) => handle.allocationMap(v as number, 1), 'native allocationMap');
      rejectsBadIndexes((v) => handle.createBitmap('g', v as number, true), 'native createBitmap');
      rejectsBadIndexes((v) => handle.writev(new Float64Array(1), v as number, undefined, bytes), 'native writev count');
      rejectsBadBytes((v) => handle.read(0, v as Uint8Array), 'native read');
      rejectsBadBytes((v) => handle.write(0, v as Uint8Array), 'native write');
      throwsWith(() => handle.write(2 ** 53, bytes), RangeError, 'byteOffset must be a non-negative safe integer (got 9007199254740992)');
      throwsWith(() => handle.write(NaN, bytes), RangeError, '(got nan)');
      throwsWith(() => handle.write(MiB - 1, bytes), RangeError, 'is outside the volume');
      throwsWith(() => handle.writeZeroes(0, 1, 'no' as never), TypeError, 'mayPunchHole must be a boolean (got string)');
      throwsWith(() => handle.writev([0] as never, 1, undefined, bytes), TypeError, 'byteOffsets must be a Float64Array (got object)');
      throwsWith(() => handle.writev(new Float64Array(1), 2, undefined, bytes, bytes), RangeError, 'byteOffsets must have at least 2 elements');
      throwsWith(() => handle.writev(new Float64Array(2), 2, undefined, bytes), RangeError, 'writev got 1 buffers for count 2');
      throwsWith(() => handle.writev(new Float64Array(1), 1, new Float64Array(0), bytes), RangeError, 'sequencesOut must have at least 1 elements');
      throwsWith(() => handle.writev(new Float64Array(1), 1, [] as never, bytes), TypeError, 'sequencesOut must be a Float64Array');
      throwsWith(() => handle.writev(new Float64Array(1), Volume.MAX_WRITEV_COUNT + 1, undefined, bytes), RangeError, `count must be at most ${Volume.MAX_WRITEV_COUNT}`);
      throwsWith(() => (handle.writev as (...a: unknown[]) => number)(new Float64Array(1)), TypeError, 'writev needs byteOffsets, count and sequencesOut');
      throwsWith(() => handle.createBitmap('bad name', 65536, true), TypeError, /bitmap name/);
      throwsWith(() => handle.createBitmap('g', 2048, true), RangeError, 'must be a power of two from 4096');
      throwsWith(() => handle.openBitmap(undefined as never), TypeError, 'name must be a string (got undefined)');
      throwsWith(() => handle.setBitmapRecording('g', 1 as never), TypeError, 'recording must be a boolean');
      throwsWith(() => handle.attachJournal({} as never), TypeError, 'journal must be a native Journal');
      throwsWith(() => handle.attachJournal(new addon.Bitmap(8, 4096) as never), TypeError, 'journal must be a native Journal');
      throwsWith(() => new addon.Volume(NativeRegionKind.anonymous, 'v', true, 4097, 4096, false), RangeError, /capacity/);
      throwsWith(() => new addon.Volume(NativeRegionKind.anonymous, 'v', true, 4096, 3000, false), RangeError, /blockSize 3000 must be a power of two/);
      throwsWith(() => new addon.Volume(NativeRegionKind.anonymous, 'v', false, 0, 0, false), TypeError, 'an anonymous volume cannot be opened');
      // A named region made for a volume that then fails to format is removed again.
      const name = cleanup.volumeName('unformatted');
      throwsWith(() => new addon.Volume(NativeRegionKind.shared, sharedVolumeRegionName(name), true, 4097, 4096, false), RangeError, /capacity/);
      assert.equal(fs.existsSync(`/dev/shm/${sharedVolumeRegionName(name)}`), false);
      assert.equal(volume.stats().writeCount, 0, 'nothing got through');
    });
  });

  describe('receivers', () => {
    it('native methods called on anything but a native Volume throw TypeError', () => {
      const other = new addon.Region(NativeRegionKind.anonymous, 'r', 4096, true, false);
      for (const name of methodNames(addon.Volume.prototype)) {
        const method = (addon.Volume.prototype as unknown as Record<string, (...args: unknown[]) => unknown>)[name] as (...args: unknown[]) => unknown;
        for (const receiver of wrongReceivers(other)) {
          throwsWith(() => method.call(receiver, 0, Buffer.alloc(1)), TypeError, 'receiver is not a native Volume');
        }
      }
      other.close();
    });

    it('TypeScript methods called on a non-Volume throw TypeError', () => {
      for (const name of methodNames(Volume.prototype)) {
        const method = (Volume.prototype as unknown as Record<string, (...args: unknown[]) => unknown>)[name] as (...args: unknown[]) => unknown;
        assert.throws(() => method.call({}, 0, Buffer.alloc(1)), TypeError, name);
      }
    });
  });

  describe('close', () => {
    it('every method throws ERR_VOLUME_CLOSED after close; bitmaps handed out are closed', async () => {
      const volume = Volume.create({ capacityBytes: MiB });
      const bitmap = volume.createBitmap('b');
      const closing = volume.close();
      assert.equal(volume.closed, true);
      assert.equal(volume.close(), closing);
      await closing;
      assert.equal(bitmap.closed, true);
      for (const name of methodNames(Volume.prototype)) {
        if (name === 'close') continue;
        const method = (volume as unknown as Record<string, (...args: unknown[]) => unknown>)[name] as (...args: unknown[]) => unknown;
        throwsCode(() => method.call(volume, 0, Buffer.alloc(1)), 'ERR_VOLUME_CLOSED');
      }
      await volume.close();
    });

    it('the native handle refuses use after close and tolerates a second close', () => {
      const handle = new addon.Volume(NativeRegionKind.anonymous, 'v', true, MiB, 4096, false);
      handle.close();
      handle.close();
      throwsCode(() => handle.write(0, Buffer.alloc(1)), 'ERR_VOLUME_CLOSED');
      throwsCode(() => handle.writev(new Float64Array(1), 1, undefined, Buffer.alloc(1)), 'ERR_VOLUME_CLOSED');
      throwsCode(() => handle.stats(), 'ERR_VOLUME_CLOSED');
    });

    it('close() waits for a flush in flight', async () => {
      const file = cleanup.filePath('flush');
      const volume = Volume.create({ capacityBytes: 32 * MiB, backing: 'file', path: file });
      volume.write(0, Buffer.alloc(32 * MiB, 0x3c));
      const events: string[] = [];
      const flushing = volume.flush().then(() => events.push('flush'));
      const closing = volume.close().then(() => events.push('close'));
      throwsCode(() => volume.write(0, Buffer.alloc(1)), 'ERR_VOLUME_CLOSED');
      await Promise.all([flushing, closing]);
      assert.deepEqual(events, ['flush', 'close']);
    });

    it('natively, close during a flush defers the unmap until the flush completes', async () => {
      const name = cleanup.volumeName('defer');
      const handle = new addon.Volume(NativeRegionKind.shared, sharedVolumeRegionName(name), true, MiB, 4096, false);
      const mapped = (): number => mappingsOf(`/dev/shm/${sharedVolumeRegionName(name)}`).length;
      const flushing = handle.flush();
      handle.close();
      throwsCode(() => handle.write(0, Buffer.alloc(1)), 'ERR_VOLUME_CLOSED');
      assert.equal(mapped(), 1, 'still mapped during the flush');
      await flushing;
      assert.equal(mapped(), 0, 'unmapped once the flush completed');
    });

    it('a flush of a file volume reaches the file', async () => {
      const file = cleanup.filePath('sync');
      const volume = Volume.create({ capacityBytes: MiB, backing: 'file', path: file });
      volume.write(0, Buffer.from('durable'));
      await volume.flush();
      await volume.close();
      assert.ok(fs.readFileSync(file).includes(Buffer.from('durable')));
    });
  });
});

/** The native handle behind a Volume, to reach past the TypeScript checks. */
function nativeOf(volume: Volume): NativeVolume {
  return volume[kNativeHandle];
}
