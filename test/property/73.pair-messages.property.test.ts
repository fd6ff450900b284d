// Property tests of the pair protocol's codecs (src/replication/messages.ts): every encoder's
// output decodes to the same message; a message cut at any point, or with garbage appended, is
// refused; random bytes never make a decoder throw anything but a coded ERR_LINK_BAD_MESSAGE.
// The seed is printed; rerun a failure with PAIR_PROPERTY_SEED=<seed>.

import { strict as assert } from 'node:assert';

import fc from 'fast-check';

import type { Generations } from '../../src/replication/generations';
import * as M from '../../src/replication/messages';
import { crc32c } from '../../src/storage/crc32c';
import { Journal } from '../../src/storage/journal';
import { LinkError } from '../../src/transport/errors';

const SEED = process.env.PAIR_PROPERTY_SEED !== undefined ? Number(process.env.PAIR_PROPERTY_SEED) : Date.now() % 2 ** 31;
const RUNS = process.env.PAIR_PROPERTY_RUNS !== undefined ? Number(process.env.PAIR_PROPERTY_RUNS) : 300;
const MAX_DATA = 64 * 1024;

const u64 = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });
const name = fc.stringMatching(/^[A-Za-z0-9._-]{1,64}$/);
const generations: fc.Arbitrary<Generations> = fc.record({ current: u64, bitmap: u64, history: fc.tuple(u64, u64) });
const data = fc.uint8Array({ maxLength: 512 }).map((bytes) => Buffer.from(bytes));
const record: fc.Arbitrary<M.ShippedRecord> = fc.oneof(
  fc.record({ sequence: u64, byteOffset: u64, data }).map((r) => ({ ...r, kind: 'write' as const, byteLength: r.data.length })),
  fc.record({ sequence: u64, byteOffset: u64, byteLength: fc.integer({ min: 0, max: 2 ** 32 - 1 }) })
    .chain((r) => fc.constantFrom('zero' as const, 'trim' as const).map((kind) => ({ ...r, kind, data: Buffer.alloc(0) }))),
);

/** Each message kind: an arbitrary message, its encoder and its decoder. */
const CODECS: { what: string; message: fc.Arbitrary<unknown>; encode: (m: never) => Buffer; decode: (b: Buffer) => unknown }[] = [
  {
    what: 'PAIR_OPEN',
    message: fc.record({
      name, primaryVolume: name, secondaryVolume: name, mode: fc.constantFrom('sync' as const, 'async' as const),
      capacityBytes: u64, blockSize: fc.integer({ min: 0, max: 2 ** 32 - 1 }), generations, discard: fc.boolean(),
      journalId: u64, journalHead: u64, ahead: fc.integer({ min: 0, max: 1000 }), resume: fc.boolean(),
    }).map(({ ahead, ...m }) => ({ ...m, journalNext: Math.min(Number.MAX_SAFE_INTEGER, m.journalHead + ahead) })),
    encode: M.encodePairOpen as (m: never) => Buffer,
    decode: M.decodePairOpen,
  },
  {
    what: 'PAIR_OPEN reply',
    message: fc.record({
      decision: fc.constantFrom('none' as const, 'bitmap-source' as const, 'full-source' as const, 'split-brain' as const),
      rule: fc.integer({ min: 0, max: 255 }), nextSequence: u64, applied: u64, generations, all: fc.boolean(),
      dirty: fc.array(fc.record({ byteOffset: u64, byteLength: u64 }), { maxLength: 20 }), resumed: fc.boolean(),
    }).map((m) => (m.resumed ? { ...m, decision: m.decision === 'bitmap-source' ? 'bitmap-source' as const : 'none' as const, all: false, dirty: [] } : m)),
    encode: M.encodeOpenReply as (m: never) => Buffer,
    decode: M.decodeOpenReply,
  },
  {
    what: 'PAIR_RECORDS',
    message: fc.record({ name, records: fc.array(record, { maxLength: 8 }) }),
    encode: ((m: { name: string; records: M.ShippedRecord[] }) => M.encodeRecords(m.name, m.records)) as (m: never) => Buffer,
    decode: (bytes) => M.decodeRecords(bytes, MAX_DATA),
  },
  {
    what: 'PAIR_GROUP_RECORDS',
    message: fc.array(fc.record({ name, previous: u64 }), { minLength: 1, maxLength: 4 }).chain((members) => fc.record({
      group: name, through: u64, members: fc.constant(members),
      records: fc.array(fc.tuple(fc.integer({ min: 0, max: members.length - 1 }), record).map(([member, r]) => ({ ...r, member })), { maxLength: 8 }),
    })),
    encode: M.encodeGroupRecords as (m: never) => Buffer,
    decode: (bytes) => M.decodeGroupRecords(bytes, MAX_DATA),
  },
  {
    what: 'PAIR_POSITION',
    message: fc.record({ name, received: u64, applied: u64, flushed: u64 }),
    encode: M.encodePosition as (m: never) => Buffer,
    decode: M.decodePosition,
  },
  {
    what: 'PAIR_TRACK',
    message: fc.record({ name, byteOffset: u64, data }),
    encode: ((m: { name: string; byteOffset: number; data: Buffer }) => M.encodeTrack(m.name, m.byteOffset, m.data)) as (m: never) => Buffer,
    decode: (bytes) => M.decodeTrack(bytes, MAX_DATA),
  },
  {
    what: 'PAIR_RESYNC_DONE',
    message: fc.record({ name, nextSequence: u64, generations, ahead: fc.integer({ min: 0, max: 1000 }) })
      .map(({ ahead, ...m }) => ({ ...m, consistentAt: Math.min(Number.MAX_SAFE_INTEGER, Math.max(0, m.nextSequence - 1) + ahead) })),
    encode: ((m: { name: string; nextSequence: number; generations: Generations; consistentAt: number }) => M.encodeResyncDone(m.name, m.nextSequence, m.generations, m.consistentAt)) as (m: never) => Buffer,
    decode: M.decodeResyncDone,
  },
  {
    what: 'PAIR_MARKER',
    message: fc.record({ name, sequence: u64 }),
    encode: ((m: { name: string; sequence: number }) => M.encodeMarker(m.name, m.sequence)) as (m: never) => Buffer,
    decode: M.decodeMarker,
  },
  {
    what: 'PAIR_PROMOTE',
    message: fc.record({ name, generations }),
    encode: ((m: { name: string; generations: Generations }) => M.encodePromote(m.name, m.generations)) as (m: never) => Buffer,
    decode: M.decodePromote,
  },
  {
    what: 'PAIR_PROMOTE_GROUP',
    message: fc.record({ group: name, members: fc.uniqueArray(fc.record({ name, generations }), { minLength: 1, maxLength: 8, selector: (member) => member.name }) }),
    encode: M.encodeGroupPromote as (m: never) => Buffer,
    decode: M.decodeGroupPromote,
  },
  {
    what: 'PAIR_RESOLVE',
    // A query keeps no side: its keepSender decodes as false.
    message: fc.oneof(fc.record({ name, keepSender: fc.boolean(), query: fc.constant(false) }), fc.record({ name, keepSender: fc.constant(false), query: fc.constant(true) })),
    encode: ((m: { name: string; keepSender: boolean; query: boolean }) => M.encodeResolve(m.name, m.keepSender, m.query)) as (m: never) => Buffer,
    decode: M.decodeResolve,
  },
  {
    what: 'PAIR_ERROR',
    message: fc.record({ name, code: fc.stringMatching(/^ERR_[A-Z_]{1,40}$/), message: fc.string({ maxLength: 200 }) }),
    encode: ((m: { name: string; code: string; message: string }) => M.encodePairError(m.name, m.code, m.message)) as (m: never) => Buffer,
    decode: M.decodePairError,
  },
  {
    what: 'a name (PAIR_FLUSH, PAIR_SWITCH, PAIR_SWITCH_GROUP)',
    message: fc.record({ name }),
    encode: ((m: { name: string }) => M.encodeName(m.name)) as (m: never) => Buffer,
    decode: (bytes) => ({ name: M.decodeName(bytes, 'PAIR_FLUSH') }),
  },
];

function refusedWithCode(run: () => unknown): void {
  try {
    run();
  } catch (error) {
    assert.ok(error instanceof LinkError, `not a LinkError: ${String((error as Error)?.stack ?? error)}`);
    assert.equal(error.code, 'ERR_LINK_BAD_MESSAGE');
    return;
  }
}

describe('73 pair messages (property)', () => {
  before(() => {
    process.stdout.write(`      seed ${SEED} (PAIR_PROPERTY_SEED), ${RUNS} runs per property\n`);
  });

  for (const codec of CODECS) {
    describe(codec.what, () => {
      it('decodes what it encodes', () => {
        fc.assert(fc.property(codec.message, (message) => {
          const decoded = codec.decode(codec.encode(message as never));
          // Plain data on both sides (fast-check builds null-prototype records; Buffers as JSON).
          assert.deepEqual(JSON.parse(JSON.stringify(decoded)), JSON.parse(JSON.stringify(message)));
        }), { seed: SEED, numRuns: RUNS });
      });
      it('refuses the message cut at any point, or with bytes appended', () => {
        fc.assert(fc.property(codec.message, fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 16 }), (message, cutAt, extra) => {
          const bytes = codec.encode(message as never);
          const cut = cutAt % bytes.length;
          assert.throws(() => codec.decode(bytes.subarray(0, cut)), (error: unknown) => error instanceof LinkError && error.code === 'ERR_LINK_BAD_MESSAGE');
          assert.throws(() => codec.decode(Buffer.concat([bytes, Buffer.from(extra)])), (error: unknown) => error instanceof LinkError && error.code === 'ERR_LINK_BAD_MESSAGE');
        }), { seed: SEED, numRuns: RUNS });
      });
      it('answers garbage with ERR_LINK_BAD_MESSAGE or a message, never another error', () => {
        fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), (garbage) => {
          refusedWithCode(() => codec.decode(Buffer.from(garbage)));
        }), { seed: SEED, numRuns: RUNS });
      });
      it('answers a valid message with flipped bytes with ERR_LINK_BAD_MESSAGE or a message', () => {
        fc.assert(fc.property(codec.message, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 4 }), (message, flips) => {
          const bytes = Buffer.from(codec.encode(message as never));
          for (const [at, mask] of flips) bytes[at % bytes.length] = (bytes[at % bytes.length] as number) ^ mask;
          refusedWithCode(() => codec.decode(bytes));
        }), { seed: SEED, numRuns: RUNS });
      });
    });
  }

  it('packRecords of what readPacked read is byte for byte encodeRecords, and its crc is the CRC32C of the message', () => {
    const journal = Journal.create({ capacityBytes: 4 * 1024 * 1024 });
    const kinds = ['write', 'zero', 'trim'] as const;
    try {
      fc.assert(fc.property(
        name,
        fc.array(fc.record({ kind: fc.constantFrom(...kinds), byteOffset: u64, byteLength: fc.integer({ min: 0, max: 1 << 20 }), data: fc.uint8Array({ maxLength: 3000 }) }), { minLength: 1, maxLength: 12 }),
        fc.boolean(),
        (pairName, appends, reuse) => {
          const nameBytes = Buffer.from(pairName, 'utf8');
          const from = journal.nextSequence;
          const shipped: M.ShippedRecord[] = [];
          for (const a of appends) {
            const data = a.kind === 'write' ? Buffer.from(a.data) : Buffer.alloc(0);
            const byteLength = a.kind === 'write' ? data.length : a.byteLength;
            const sequence = journal.append({ kind: a.kind, byteOffset: a.byteOffset, byteLength, data: a.kind === 'write' ? data : undefined });
            assert.ok(sequence > 0, 'the journal has room');
            shipped.push({ sequence, kind: a.kind, byteOffset: a.byteOffset, byteLength, data });
          }
          // A reused target holds garbage from before: packRecords must overwrite every byte it returns.
          const target = reuse ? Buffer.alloc(M.MAX_RECORDS_PREFIX_BYTES + 64 * 1024 + M.RECORD_HEADER_BYTES * 64, 0xa5) : undefined;
          const packed = journal.readPacked(from, { maxRecords: 64, maxDataBytes: 64 * 1024, prefixBytes: M.recordsPrefixBytes(nameBytes), gapBytes: M.RECORD_HEADER_BYTES, target });
          assert.equal(packed.count, appends.length);
          if (target !== undefined) assert.equal(packed.buffer, target, 'a large enough target is filled');
          const result = M.packRecords(nameBytes, packed.fields, packed.buffer, packed.usedBytes);
          assert.ok(result !== null);
          const expected = M.encodeRecords(pairName, shipped);
          assert.deepEqual(result.message, expected);
          assert.equal(result.crc, crc32c(expected));
          journal.release(journal.nextSequence - 1);
        },
      ), { seed: SEED, numRuns: RUNS });
    } finally {
      journal.close();
    }
  });

  it('refuses a group promotion with no member, too many, or one listed twice', () => {
    const generationsOf = { current: 1, bitmap: 0, history: [0, 0] as const };
    assert.throws(() => M.encodeGroupPromote({ group: 'g', members: [] }), RangeError);
    const many = Array.from({ length: M.MAX_GROUP_MEMBERS + 1 }, (_, index) => ({ name: `p${index}`, generations: generationsOf }));
    assert.throws(() => M.encodeGroupPromote({ group: 'g', members: many }), RangeError);
    const twice = M.encodeGroupPromote({ group: 'g', members: [{ name: 'p', generations: generationsOf }, { name: 'q', generations: generationsOf }] });
    // The second name's bytes rewritten to the first's: a valid frame listing p twice.
    const at = twice.lastIndexOf(Buffer.from('q'));
    twice[at] = 'p'.charCodeAt(0);
    assert.throws(() => M.decodeGroupPromote(twice), (error: unknown) => error instanceof LinkError && error.code === 'ERR_LINK_BAD_MESSAGE' && /listed twice/.test(error.message));
  });

  it('refuses records whose data exceeds the limit, and more records than a message may carry', () => {
    const big = M.encodeRecords('p', [{ sequence: 1, kind: 'write', byteOffset: 0, byteLength: MAX_DATA + 1, data: Buffer.alloc(MAX_DATA + 1) }]);
    assert.throws(() => M.decodeRecords(big, MAX_DATA), (error: unknown) => error instanceof LinkError && error.code === 'ERR_LINK_BAD_MESSAGE');
    const header = Buffer.alloc(2 + 1 + 4);
    header.writeUInt16BE(1, 0);
    header.write('p', 2);
    header.writeUInt32BE(M.MAX_RECORDS_PER_MESSAGE + 1, 3);
    assert.throws(() => M.decodeRecords(header, MAX_DATA), /more than/);
  });
});
