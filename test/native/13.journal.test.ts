// The Journal contract: sequences from 1 that are never reused, records read back as copies with
// their checksums, full rings that refuse instead of overwrite, release, reopening a shared journal
// at its cursors, bad arguments at both layers, wrong receivers and use after close.
import * as assert from 'node:assert/strict';

import { BlockmirrorError } from '../../src/errors';
import { addon, NativeRegionKind } from '../../src/native';
import { crc32c } from '../../src/storage/crc32c';
import { Journal } from '../../src/storage/journal';
import { Cleanup, methodNames, pattern, rejectsBadIndexes, throwsCode, throwsWith, wrongReceivers } from '../helpers/storage';

describe('13 journal', () => {
  const cleanup = new Cleanup();
  afterEach(() => cleanup.run());

  it('defaults: 64 MiB ring, 4 MiB records, anonymous', () => {
    const journal = cleanup.close(Journal.create());
    assert.deepEqual(
      [journal.kind, journal.name, journal.capacityBytes, journal.maxRecordBytes, journal.headSequence, journal.nextSequence],
      ['anonymous', undefined, 64 << 20, 4 << 20, 1, 1],
    );
  });

  it('appends records with sequences from 1 and reads them back as copies', () => {
    const journal = cleanup.close(Journal.create({ capacityBytes: 1 << 20 }));
    const data = pattern(1, 0, 1000);
    assert.equal(journal.append({ volumeId: 2n ** 64n - 1n, byteOffset: 2 ** 53 - 1, data, flags: 0xffff }), 1);
    assert.equal(journal.append({ kind: 'zero', byteOffset: 4096, byteLength: 2 ** 32 - 1 }), 2);
    assert.equal(journal.append({ kind: 'marker', byteOffset: 0 }), 3);
    assert.equal(journal.append({ kind: 'trim', byteOffset: 8, byteLength: 8, volumeId: 5n }), 4);
    const records = journal.read(1);
    assert.equal(records.length, 4);
    assert.deepEqual(
      { ...records[0], data: undefined },
      { sequence: 1, volumeId: 2n ** 64n - 1n, byteOffset: 2 ** 53 - 1, byteLength: 1000, kind: 'write', flags: 0xffff, dataCrc: crc32c(data), data: undefined },
    );
    assert.ok(records[0]?.data.equals(data));
    assert.deepEqual(
      records.slice(1).map((r) => [r.sequence, r.kind, r.byteOffset, r.byteLength, r.volumeId, r.dataCrc, r.data.length]),
      [
        [2, 'zero', 4096, 2 ** 32 - 1, 0n, 0, 0],
        [3, 'marker', 0, 0, 0n, 0, 0],
        [4, 'trim', 8, 8, 5n, 0, 0],
      ],
    );
    // The data is a copy: changing it changes neither the journal nor a later read.
    records[0]?.data.fill(0);
    assert.ok(journal.read(1, { maxRecords: 1 })[0]?.data.equals(data));
    assert.deepEqual(journal.read(3).map((r) => r.sequence), [3, 4]);
    assert.deepEqual(journal.read(5), [], 'reading exactly nextSequence is an empty batch');
    throwsWith(() => journal.read(6), BlockmirrorError, 'not written yet', 'ERR_JOURNAL_NOT_YET');
  });

  it('read honours maxRecords and maxBytes, but always returns one record when there is one', () => {
    const journal = cleanup.close(Journal.create({ capacityBytes: 1 << 20, maxRecordBytes: 65536 }));
    for (let i = 0; i < 10; i++) journal.append({ byteOffset: i, data: Buffer.alloc(1000, i) });
    assert.equal(journal.read(1, { maxRecords: 3 }).length, 3);
    assert.equal(journal.read(1, { maxBytes: 2500 }).length, 2);
    journal.append({ byteOffset: 0, data: Buffer.alloc(60000, 1) });
    const big = journal.read(11, { maxBytes: 10 });
    assert.deepEqual(big.map((r) => [r.sequence, r.data.length]), [[11, 60000]]);
  });

  it('release frees records; released sequences are reported, never reused', () => {
    const journal = cleanup.close(Journal.create({ capacityBytes: 65536 }));
    for (let i = 0; i < 5; i++) journal.append({ byteOffset: i });
    assert.equal(journal.release(0), 0);
    assert.equal(journal.release(2), 2);
    assert.equal(journal.headSequence, 3);
    throwsWith(() => journal.read(2), BlockmirrorError, 'was released', 'ERR_JOURNAL_RELEASED');
    assert.equal(journal.release(100), 3, 'clamped to what exists');
    assert.deepEqual([journal.headSequence, journal.nextSequence], [6, 6]);
    assert.equal(journal.append({ byteOffset: 0 }), 6);
    assert.deepEqual(journal.stats(), {
      headSequence: 6,
      nextSequence: 7,
      recordCount: 1,
      usedBytes: 48,
      capacityBytes: 65536,
      maxRecordBytes: 16384,
      appendCount: 6,
      fullCount: 0,
    });
  });

  it('a full ring refuses with 0 and never overwrites; release makes room', () => {
    const journal = cleanup.close(Journal.create({ capacityBytes: 65536, maxRecordBytes: 16384 }));
    const sequences: number[] = [];
    let sequence: number;
    while ((sequence = journal.append({ byteOffset: sequences.length, data: pattern(sequences.length, 0, 16000) })) !== 0) sequences.push(sequence);
    assert.deepEqual(sequences, [1, 2, 3, 4]);
    assert.equal(journal.append({ byteOffset: 0, data: Buffer.alloc(16000) }), 0);
    assert.equal(journal.stats().fullCount, 2, 'the refused append of the loop and this one');
    const records = journal.read(1);
    records.forEach((record, i) => assert.ok(record.data.equals(pattern(i, 0, 16000)), `record ${i + 1} intact`));
    journal.release(1);
    assert.equal(journal.append({ byteOffset: 9, data: pattern(9, 0, 16000) }), 5, 'wraps into the freed space');
    assert.deepEqual(journal.read(2).map((r) => r.byteOffset), [1, 2, 3, 9]);
    assert.ok(journal.read(5)[0]?.data.equals(pattern(9, 0, 16000)));
  });

  it('a record larger than maxRecordBytes is ERR_JOURNAL_RECORD_TOO_LARGE at both layers', () => {
    const journal = cleanup.close(Journal.create({ capacityBytes: 65536, maxRecordBytes: 1024 }));
    throwsWith(() => journal.append({ byteOffset: 0, data: Buffer.alloc(1025) }), BlockmirrorError, 'exceeds maxRecordBytes (1024)', 'ERR_JOURNAL_RECORD_TOO_LARGE');
    const handle = new addon.Journal(NativeRegionKind.anonymous, 'j', true, 65536, 1024);
    throwsCode(() => handle.append(1, 0n, 0, 0, Buffer.alloc(1025), 0), 'ERR_JOURNAL_RECORD_TOO_LARGE');
    handle.close();
    assert.equal(journal.nextSequence, 1);
  });

  it('a shared journal is reopened by name at its cursors', async () => {
    const name = cleanup.journalName('journal');
    const first = Journal.create({ kind: 'shared', name, capacityBytes: 65536, maxRecordBytes: 4096 });
    assert.deepEqual([first.kind, first.name], ['shared', name]);
    throwsCode(() => Journal.create({ kind: 'shared', name }), 'ERR_REGION_EXISTS');
    for (let i = 0; i < 4; i++) first.append({ byteOffset: i, data: pattern(i, 0, 100) });
    first.release(1);
    await first.close();
    const again = cleanup.close(Journal.open({ name }));
    assert.deepEqual([again.capacityBytes, again.maxRecordBytes, again.headSequence, again.nextSequence], [65536, 4096, 2, 5]);
    assert.deepEqual(again.read(2).map((r) => [r.sequence, r.data.equals(pattern(r.byteOffset, 0, 100))]), [
      [2, true],
      [3, true],
      [4, true],
    ]);
    assert.equal(again.append({ byteOffset: 0 }), 5, 'sequences continue, never reused');
    await again.close();
    assert.equal(Journal.unlink({ name }), true);
    assert.equal(Journal.unlink({ name }), false);
    throwsCode(() => Journal.open({ name }), 'ERR_REGION_NOT_FOUND');
  });

  it('a file journal is reopened by path; a region that is no journal is refused', async () => {
    const file = cleanup.filePath('journal');
    const journal = Journal.create({ kind: 'file', path: file, capacityBytes: 65536 });
    journal.append({ byteOffset: 77 });
    await journal.close();
    const again = cleanup.close(Journal.open({ path: file }));
    assert.deepEqual(again.read(1).map((r) => r.byteOffset), [77]);
    const name = cleanup.journalName('garbage');
    const { Region } = await import('../../src/storage/region');
    const region = Region.create({ kind: 'shared', name: `blockmirror.journal.${name}`, byteLength: 1 << 17 });
    region.write(0, Buffer.from('garbage'));
    await region.close();
    throwsWith(() => Journal.open({ name }), BlockmirrorError, /header/, 'ERR_JOURNAL_BAD_HEADER');
  });

  describe('bad arguments', () => {
    it('every method rejects bad indices (TypeScript layer)', () => {
      const journal = cleanup.close(Journal.create({ capacityBytes: 65536 }));
      const orBad = (v: unknown): number => (v === undefined ? 'x' : v) as number;
      rejectsBadIndexes((v) => journal.append({ byteOffset: v as number }), 'append byteOffset');
      rejectsBadIndexes((v) => journal.append({ byteOffset: 0, byteLength: orBad(v) }), 'append byteLength');
      rejectsBadIndexes((v) => journal.append({ byteOffset: 0, flags: orBad(v) }), 'append flags');
      rejectsBadIndexes((v) => journal.read(v as number), 'read');
      rejectsBadIndexes((v) => journal.read(1, { maxBytes: orBad(v) }), 'read maxBytes');
      rejectsBadIndexes((v) => journal.release(v as number), 'release');
      throwsWith(() => journal.append({ byteOffset: 0, data: 'x' as never }), TypeError, 'record.data must be a Uint8Array (got "x")');
      throwsWith(() => journal.append(null as never), TypeError, 'record must be an object (got null)');
      throwsWith(() => journal.read(1, 5 as never), TypeError, 'options must be an object (got 5)');
      throwsWith(() => Journal.open({}), TypeError, 'give exactly one of name and path');
      assert.equal(journal.nextSequence, 1);
    });

    it('the native layer checks every argument again', () => {
      const handle = new addon.Journal(NativeRegionKind.anonymous, 'j', true, 65536, 1024);
      try {
        rejectsBadIndexes((v) => handle.append(1, 0n, v as number, 0, undefined, 0), 'native append byteOffset');
        rejectsBadIndexes((v) => handle.read(v as number, 1, 1), 'native read');
        rejectsBadIndexes((v) => handle.release(v as number), 'native release');
        throwsWith(() => handle.append(0, 0n, 0, 0, undefined, 0), RangeError, 'kind must be 1 (write), 2 (zero), 3 (trim) or 4 (marker)');
        throwsWith(() => handle.append(5, 0n, 0, 0, undefined, 0), RangeError, 'kind must be at most 4');
        throwsWith(() => handle.append(1, 1 as never, 0, 0, undefined, 0), TypeError, 'volumeId must be a bigint (got number)');
        throwsWith(() => handle.append(1, -1n, 0, 0, undefined, 0), RangeError, 'volumeId must be a bigint in [0, 2^64)');
        throwsWith(() => handle.append(1, 2n ** 64n, 0, 0, undefined, 0), RangeError, 'volumeId must be a bigint in [0, 2^64)');
        throwsWith(() => handle.append(1, 0n, 0, 2 ** 32, undefined, 0), RangeError, 'byteLength must be at most 4294967295');
        throwsWith(() => handle.append(1, 0n, 0, 0, [1] as never, 0), TypeError, 'data must be a Uint8Array');
        throwsWith(() => handle.append(1, 0n, 0, 0, undefined, 65536), RangeError, 'flags must be at most 65535');
        throwsWith(() => handle.read(1, 0, 1), RangeError, 'maxRecords must be at least 1');
        throwsWith(() => handle.read(1, 65537, 1), RangeError, 'maxRecords must be at most 65536');
        throwsWith(() => new addon.Journal(NativeRegionKind.anonymous, 'j', true, 1024, 16), RangeError, 'capacityBytes must be at least 65536');
        throwsWith(() => new addon.Journal(NativeRegionKind.anonymous, 'j', true, 65536, 16385), RangeError, 'maxRecordBytes must be in [1, capacityBytes / 4]');
        throwsWith(() => new addon.Journal(NativeRegionKind.anonymous, 'j', false, 0, 0), TypeError, 'an anonymous journal cannot be opened');
        assert.equal(handle.nextSequence(), 1);
      } finally {
        handle.close();
      }
    });
  });

  describe('receivers', () => {
    it('native methods called on anything but a native Journal throw TypeError', () => {
      const other = new addon.Bitmap(8, 4096);
      for (const name of methodNames(addon.Journal.prototype)) {
        const method = (addon.Journal.prototype as unknown as Record<string, (...args: unknown[]) => unknown>)[name] as (...args: unknown[]) => unknown;
        for (const receiver of wrongReceivers(other)) {
          throwsWith(() => method.call(receiver, 1, 0n, 0, 0, undefined, 0), TypeError, 'receiver is not a native Journal');
        }
      }
      other.close();
    });

    it('TypeScript methods called on a non-Journal throw TypeError', () => {
      for (const name of methodNames(Journal.prototype)) {
        const method = (Journal.prototype as unknown as Record<string, (...args: unknown[]) => unknown>)[name] as (...args: unknown[]) => unknown;
        assert.throws(() => method.call({}, 1), TypeError, name);
      }
      assert.throws(() => Object.getOwnPropertyDescriptor(Journal.prototype, 'headSequence')?.get?.call({}), TypeError);
    });
  });

  describe('close', () => {
    it('every method throws ERR_JOURNAL_CLOSED after close; close is idempotent', async () => {
      const journal = Journal.create({ capacityBytes: 65536 });
      const closing = journal.close();
      assert.equal(journal.close(), closing);
      await closing;
      assert.equal(journal.closed, true);
      for (const name of methodNames(Journal.prototype)) {
        if (name === 'close') continue;
        const method = (journal as unknown as Record<string, (...args: unknown[]) => unknown>)[name] as (...args: unknown[]) => unknown;
        throwsCode(() => method.call(journal, { byteOffset: 0 }), 'ERR_JOURNAL_CLOSED');
      }
      throwsCode(() => journal.headSequence, 'ERR_JOURNAL_CLOSED');
      throwsCode(() => journal.nextSequence, 'ERR_JOURNAL_CLOSED');
    });

    it('the native handle refuses use after close and tolerates a second close', () => {
      const handle = new addon.Journal(NativeRegionKind.anonymous, 'j', true, 65536, 1024);
      handle.close();
      handle.close();
      throwsCode(() => handle.append(1, 0n, 0, 0, undefined, 0), 'ERR_JOURNAL_CLOSED');
      throwsCode(() => handle.read(1, 1, 1), 'ERR_JOURNAL_CLOSED');
    });
  });
});
