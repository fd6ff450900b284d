// Unit tests of the reused send buffers (src/transport/send-pool.ts) and of the journal read that
// fills one (Journal.readPacked's target): what is lent comes back only once and only from a
// lend, the lend limit holds, and readPacked fills a large enough target and makes its own
// buffer otherwise.

import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { crc32c } from '../../src/storage/crc32c';
import { Journal } from '../../src/storage/journal';
import { SendPool } from '../../src/transport/send-pool';

describe('75 send pool', () => {
  it('lends new buffers up to maxLent, then refuses; a given-back buffer is lent again', () => {
    const pool = new SendPool(1024, 2);
    const a = pool.take();
    const b = pool.take();
    assert.ok(a !== undefined && b !== undefined && a !== b);
    assert.equal(a.length, 1024);
    assert.equal(pool.take(), undefined, 'past maxLent');
    pool.give(a);
    assert.equal(pool.take(), a);
    assert.deepEqual(pool.stats(), { bufferBytes: 1024, lent: 2, free: 0, reused: 1, allocated: 2, refused: 1 });
  });

  it('ignores a buffer it did not lend and a second give of the same one', () => {
    const pool = new SendPool(64, 2);
    const a = pool.take() as Buffer;
    pool.give(Buffer.alloc(64));
    pool.give(a);
    pool.give(a);
    assert.deepEqual({ lent: pool.stats().lent, free: pool.stats().free }, { lent: 0, free: 1 });
    const first = pool.take();
    const second = pool.take();
    assert.equal(first, a);
    assert.notEqual(second, a, 'a was in the free list once only');
  });

  it('after close keeps nothing: buffers come back to no free list, and take() allocates', () => {
    const pool = new SendPool(64, 4);
    const a = pool.take() as Buffer;
    pool.give(pool.take() as Buffer);
    pool.close();
    assert.equal(pool.stats().free, 0);
    pool.give(a);
    assert.equal(pool.stats().free, 0);
    assert.notEqual(pool.take(), a);
  });

  it('shares one pool per buffer size in the process', () => {
    assert.equal(SendPool.shared(4096 + 1), SendPool.shared(4096 + 1));
    assert.notEqual(SendPool.shared(4096 + 1), SendPool.shared(4096 + 2));
  });

  it('refuses a size or a limit that is not a positive integer with RangeError', () => {
    assert.throws(() => new SendPool(0), RangeError);
    assert.throws(() => new SendPool(1.5), RangeError);
    assert.throws(() => new SendPool(64, 0), RangeError);
  });
});

describe('75 Journal.readPacked target', () => {
  let journal: Journal;
  beforeEach(() => {
    journal = Journal.create({ capacityBytes: 1024 * 1024 });
    for (let index = 0; index < 4; index++) journal.append({ byteOffset: index * 4096, data: Buffer.alloc(4096, index + 1) });
  });
  afterEach(() => journal.close());

  it('fills a target large enough for the read, and returns the same records as without one', () => {
    const plain = journal.readPacked(1, { maxRecords: 4, maxDataBytes: 64 * 1024, prefixBytes: 10, gapBytes: 25 });
    const target = Buffer.alloc(10 + 64 * 1024 + 25 * 4, 0xee);
    const filled = journal.readPacked(1, { maxRecords: 4, maxDataBytes: 64 * 1024, prefixBytes: 10, gapBytes: 25, target });
    assert.equal(filled.buffer, target);
    assert.deepEqual(filled.fields, plain.fields);
    assert.equal(filled.usedBytes, plain.usedBytes);
    for (let index = 0; index < 4; index++) {
      const at = filled.fields[index * 8 + 6] as number;
      assert.deepEqual(target.subarray(at, at + 4096), Buffer.alloc(4096, index + 1));
    }
  });

  it('makes its own buffer when the target is too small, and leaves the target alone', () => {
    const target = Buffer.alloc(100, 0xee);
    const packed = journal.readPacked(1, { maxRecords: 4, maxDataBytes: 64 * 1024, prefixBytes: 10, gapBytes: 25, target });
    assert.notEqual(packed.buffer, target);
    assert.equal(packed.count, 4);
    assert.deepEqual(target, Buffer.alloc(100, 0xee));
  });

  it('checks each copy against its CRC unless told not to (verify: false): then the stored CRC comes out with the copy', () => {
    const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'bm-unit75-'));
    const file = path.join(directory, 'j');
    const damaged = Journal.create({ kind: 'file', path: file, capacityBytes: 1024 * 1024 });
    try {
      const data = Buffer.alloc(4096, 0x33);
      damaged.append({ byteOffset: 0, data });
      const bytes = fs.readFileSync(file);
      const at = bytes.indexOf(data);
      const descriptor = fs.openSync(file, 'r+');
      fs.writeSync(descriptor, Buffer.from([0x34]), 0, 1, at + 100);
      fs.closeSync(descriptor);
      assert.throws(() => damaged.readPacked(1), (error: unknown) => (error as { code?: string }).code === 'ERR_JOURNAL_CHECKSUM');
      assert.throws(() => damaged.readPacked(1, { verify: true }), (error: unknown) => (error as { code?: string }).code === 'ERR_JOURNAL_CHECKSUM');
      const packed = damaged.readPacked(1, { verify: false });
      assert.equal(packed.count, 1);
      const offset = packed.fields[6] as number;
      const copy = packed.buffer.subarray(offset, offset + 4096);
      assert.equal(copy[100], 0x34, 'the damaged copy');
      assert.equal(packed.fields[5], crc32c(data), 'with the CRC it was appended with');
      assert.notEqual(crc32c(copy), packed.fields[5]);
      assert.throws(() => damaged.readPacked(1, { verify: 1 as unknown as boolean }), TypeError);
    } finally {
      damaged.close();
      fs.rmSync(directory, { recursive: true, force: true });
    }
  });

  it('refuses a target that is not a Buffer with TypeError', () => {
    assert.throws(() => journal.readPacked(1, { target: new Uint8Array(1 << 20) as Buffer }), TypeError);
    assert.throws(() => journal.readPacked(1, { target: 'x' as unknown as Buffer }), TypeError);
  });
});
