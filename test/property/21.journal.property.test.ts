// Property test of Journal against an array model: any sequence of appends (of every size up to
// the record limit), releases and reads on a small ring keeps the journal equal to the model:
// the same sequences, never reused; the same records and payloads; "full" exactly when the ring
// has no contiguous room (the placement rule of journal.hpp: a record never straddles the ring's
// end, a filler takes the rest and the record starts at 0; an empty ring restarts at 0); and used
// bytes as the model counts them. A shared journal reopened mid-sequence continues the same way.
// The seed is printed on failure; rerun with STORAGE_PROPERTY_SEED=<seed> (and _RUNS=<n>).

import * as assert from 'node:assert/strict';

import fc from 'fast-check';

import { crc32c } from '../../src/storage/crc32c';
import { Journal, JournalRecordKind } from '../../src/storage/journal';
import { uniqueName } from '../helpers/storage';

const SEED = process.env.STORAGE_PROPERTY_SEED !== undefined ? Number(process.env.STORAGE_PROPERTY_SEED) : Date.now() % 2 ** 31;
const RUNS = process.env.STORAGE_PROPERTY_RUNS !== undefined ? Number(process.env.STORAGE_PROPERTY_RUNS) : 150;

const CAPACITY_BYTES = 65536;
const MAX_RECORD_BYTES = 16384;
const HEADER_BYTES = 48;

interface ModelRecord {
  sequence: number;
  kind: JournalRecordKind;
  volumeId: bigint;
  byteOffset: number;
  byteLength: number;
  flags: number;
  data: Buffer;
  consumedBytes: number; // the record plus the filler before it
}

/** How often the runs met the edge cases, so the test can insist they were exercised. */
const seen = { full: 0, wrap: 0, restart: 0, reopen: 0 };

/** The journal as an array of records plus the two numbers the placement rule needs. */
class Model {
  records: ModelRecord[] = [];
  headSequence = 1;
  nextSequence = 1;
  usedBytes = 0;
  tailOffset = 0;

  static recordBytes(payloadBytes: number): number {
    return Math.ceil((HEADER_BYTES + payloadBytes) / 8) * 8;
  }

  /** Sequence, or 0 when the ring has no room. */
  append(record: Omit<ModelRecord, 'sequence' | 'consumedBytes'>): number {
    const bytes = Model.recordBytes(record.data.length);
    let fillerBytes = 0;
    let recordOffset = 0;
    if (this.usedBytes === 0) {
      if (this.tailOffset !== 0) seen.restart++;
      this.tailOffset = 0;
    } else {
      const endRoom = CAPACITY_BYTES - this.tailOffset;
      if (bytes <= endRoom && this.usedBytes + bytes <= CAPACITY_BYTES) {
        recordOffset = this.tailOffset;
      } else if (this.usedBytes + endRoom + bytes <= CAPACITY_BYTES) {
        fillerBytes = endRoom;
        seen.wrap++;
      } else {
        return 0;
      }
    }
    const sequence = this.nextSequence++;
    this.usedBytes += fillerBytes + bytes;
    const end = recordOffset + bytes;
    this.tailOffset = end === CAPACITY_BYTES ? 0 : end;
    this.records.push({ ...record, sequence, consumedBytes: fillerBytes + bytes });
    return sequence;
  }

  release(throughSequence: number): number {
    let released = 0;
    while (this.records.length > 0 && (this.records[0] as ModelRecord).sequence <= throughSequence) {
      this.usedBytes -= (this.records.shift() as ModelRecord).consumedBytes;
      released++;
    }
    if (released > 0) this.headSequence = this.records[0]?.sequence ?? this.nextSequence;
    if (this.records.length === 0) this.usedBytes = 0;
    return released;
  }
}

type Op =
  | { op: 'append'; kind: JournalRecordKind; payloadBytes: number; byteOffset: number; flags: number; volumeId: bigint; fill: number }
  | { op: 'release'; fraction: number }
  | { op: 'read'; fraction: number; maxRecords: number; maxBytes: number }
  | { op: 'reopen' };

/** A uniform fraction in [0, 1] (fc.double is uniform over representations, so mostly tiny). */
const fraction = fc.integer({ min: 0, max: 1000 }).map((n) => n / 1000);

const opArbitrary: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.record({
      op: fc.constant('append' as const),
      kind: fc.constantFrom<JournalRecordKind>('write', 'write', 'write', 'zero', 'trim', 'marker'),
      payloadBytes: fc.oneof(fc.integer({ min: 0, max: 64 }), fc.integer({ min: 4096, max: MAX_RECORD_BYTES }), fc.constant(MAX_RECORD_BYTES)),
      byteOffset: fc.integer({ min: 0, max: 2 ** 53 - 1 }),
      flags: fc.integer({ min: 0, max: 0xffff }),
      volumeId: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
      fill: fc.integer({ min: 0, max: 255 }),
    }),
  },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('release' as const), fraction: fraction }) },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant('read' as const),
      fraction: fraction,
      maxRecords: fc.integer({ min: 1, max: 8 }),
      maxBytes: fc.integer({ min: 0, max: 40000 }),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ op: 'reopen' as const }) },
);

function payloadOf(op: Extract<Op, { op: 'append' }>): Buffer {
  if (op.kind !== 'write') return Buffer.alloc(0);
  const data = Buffer.alloc(op.payloadBytes);
  for (let i = 0; i < data.length; i++) data[i] = (op.fill + i * 31) & 0xff;
  return data;
}

function runWithSeed(name: string, property: fc.IAsyncProperty<unknown>): Promise<void> {
  return fc.assert(property, { seed: SEED, numRuns: RUNS }).catch((error: Error) => {
    error.message = `${name} failed with STORAGE_PROPERTY_SEED=${SEED}\n${error.message}`;
    console.error(`property seed: STORAGE_PROPERTY_SEED=${SEED}`);
    throw error;
  });
}

describe('21 journal (property)', function () {
  this.timeout(300_000);

  it('matches an array model through appends, wrap-around, full rings, releases, reads and reopen', async () => {
    await runWithSeed(
      'journal model',
      fc.asyncProperty(fc.array(fc.noBias(opArbitrary), { minLength: 1, maxLength: 80, size: 'max' }), async (ops) => {
        const name = uniqueName('jprop');
        let journal = Journal.create({ kind: 'shared', name, capacityBytes: CAPACITY_BYTES, maxRecordBytes: MAX_RECORD_BYTES });
        const model = new Model();
        let fullCount = 0;
        try {
          for (const op of ops) {
            switch (op.op) {
              case 'append': {
                const data = payloadOf(op);
                const byteLength = op.kind === 'write' ? data.length : op.payloadBytes;
                const record = { kind: op.kind, volumeId: op.volumeId, byteOffset: op.byteOffset, byteLength, flags: op.flags, data };
                const expected = model.append(record);
                const sequence = journal.append(op.kind === 'write' ? record : { ...record, data: undefined });
                assert.equal(sequence, expected, `append of ${data.length} bytes at used ${model.usedBytes}`);
                if (sequence === 0) {
                  fullCount++;
                  seen.full++;
                  // Full means no contiguous room: the free space cannot hold two such records.
                  assert.ok(CAPACITY_BYTES - model.usedBytes < 2 * Model.recordBytes(data.length));
                }
                break;
              }
              case 'release': {
                const through = model.headSequence - 1 + Math.round(op.fraction * (model.nextSequence - model.headSequence));
                assert.equal(journal.release(through), model.release(through), `release(${through})`);
                break;
              }
              case 'read': {
                if (model.headSequence === model.nextSequence) {
                  assert.deepEqual(journal.read(model.nextSequence), []);
                  break;
                }
                const held = model.nextSequence - model.headSequence;
                const from = model.headSequence + Math.min(held - 1, Math.floor(op.fraction * held));
                const got = journal.read(from, { maxRecords: op.maxRecords, maxBytes: op.maxBytes });
                const available = model.records.filter((r) => r.sequence >= from);
                assert.ok(got.length >= 1 && got.length <= op.maxRecords, `read(${from}) returned ${got.length}`);
                const payloadBytes = got.reduce((sum, r) => sum + r.data.length, 0);
                assert.ok(got.length === 1 || payloadBytes <= op.maxBytes, 'maxBytes is honoured beyond the first record');
                if (got.length < Math.min(op.maxRecords, available.length)) {
                  const next = available[got.length] as ModelRecord;
                  assert.ok(payloadBytes + next.data.length > op.maxBytes, 'the batch stopped only for maxBytes');
                }
                got.forEach((record, i) => {
                  const want = available[i] as ModelRecord;
                  assert.equal(record.sequence, want.sequence);
                  assert.equal(record.kind, want.kind);
                  assert.equal(record.volumeId, want.volumeId);
                  assert.equal(record.byteOffset, want.byteOffset);
                  assert.equal(record.flags, want.flags);
                  assert.equal(record.byteLength, want.byteLength);
                  assert.ok(record.data.equals(want.data), `payload of ${want.sequence}`);
                  assert.equal(record.dataCrc, want.data.length > 0 ? crc32c(want.data) : 0);
                });
                break;
              }
              case 'reopen':
                await journal.close();
                journal = Journal.open({ name });
                fullCount = 0; // the append and full counters belong to the open object
                seen.reopen++;
                break;
            }
            const stats = journal.stats();
            assert.equal(stats.headSequence, model.headSequence, 'headSequence');
            assert.equal(stats.nextSequence, model.nextSequence, 'nextSequence');
            assert.equal(stats.recordCount, model.records.length, 'recordCount');
            assert.equal(stats.usedBytes, model.usedBytes, 'usedBytes');
            assert.equal(stats.fullCount, fullCount, 'fullCount');
          }
          if (model.headSequence > 1) {
            assert.throws(() => journal.read(model.headSequence - 1), { code: 'ERR_JOURNAL_RELEASED' });
          }
          assert.throws(() => journal.read(model.nextSequence + 1), { code: 'ERR_JOURNAL_NOT_YET' });
        } finally {
          await journal.close();
          Journal.unlink({ name });
        }
      }),
    );
    assert.ok(seen.full > 0 && seen.wrap > 0 && seen.restart > 0 && seen.reopen > 0, `edge cases met: ${JSON.stringify(seen)}`);
  });
});
