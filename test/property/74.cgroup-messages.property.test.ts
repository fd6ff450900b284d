// Notes on the design
// -------------------
// Property tests of the consistency-group codecs (src/cgroup/messages.ts: CGROUP_PREPARE and its
// reply, CGROUP_RUN and its reply, CGROUP_RESULT, PAIR_CG_CUT and its reply), the way 73 tests
// the pair protocol's. For every codec:
//
//   - an arbitrary valid message (names of any Unicode text up to their byte limit, every cycle
//     from 1 to 2^53 - 1, formed < cycle, holdMs/drainMs >= 1, counts up to a few entries)
//     decodes to itself, also from a view at any offset of a larger buffer, and re-encodes to the
//     same bytes;
//   - every proper prefix of its encoding (each cut point, exhaustively) is refused with
//     ERR_LINK_BAD_MESSAGE, and so is the encoding with 1..16 bytes appended;
//   - random bytes, and a valid encoding with 1..4 bytes flipped, either throw a LinkError with
//     ERR_LINK_BAD_MESSAGE (never another error) or decode to a message that keeps every field
//     rule (the `valid` check below) and re-encodes to exactly the input. The one difference
//     tolerated is a string whose bytes were not UTF-8: BinaryReader decodes it lossily (U+FFFD),
//     so its re-encoding differs; then the decoded message must hold U+FFFD and be a fixed point
//     (decode(encode(m)) = m). Reported to the lead; remove `lossyUtf8` once the reader refuses
//     such strings.
//
// Then each field rule, one by one, on hand-built payloads at and just past its bound: cycle >= 1,
// formed < cycle, holdMs and drainMs >= 1, flags 0/1, a finite consistency time, 64-bit fields
// below 2^53, names <= 256 bytes, reasons <= 1024 bytes, MAX_MEMBERS_PER_MESSAGE entries,
// MAX_HOLDINGS cycles. The seed is printed; rerun a failure with CGROUP_PROPERTY_SEED=<seed>
// (and CGROUP_PROPERTY_RUNS=<n>).

import { strict as assert } from 'node:assert';

import fc from 'fast-check';

import * as M from '../../src/cgroup/messages';
import { GROUP_NAME_PATTERN } from '../../src/cgroup/types';
import { BinaryWriter } from '../../src/transport/codec';
import { LinkError } from '../../src/transport/errors';

const SEED = process.env.CGROUP_PROPERTY_SEED !== undefined ? Number(process.env.CGROUP_PROPERTY_SEED) : Date.now() % 2 ** 31;
const RUNS = process.env.CGROUP_PROPERTY_RUNS !== undefined ? Number(process.env.CGROUP_PROPERTY_RUNS) : 200;

const MAX_NAME_BYTES = 256;
const MAX_REASON_BYTES = 1024;

const u64 = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });
const cycle = fc.oneof(fc.integer({ min: 1, max: 1000 }), fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }));
/** A cycle and a formed cycle before it (0: none known). */
const cycleAndFormed = cycle.chain((c) => fc.record({ cycle: fc.constant(c), formed: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: c - 1 })) }));
const positiveMs = fc.integer({ min: 1, max: 2 ** 32 - 1 });
const bytesOf = (text: string): number => Buffer.byteLength(text, 'utf8');
/** Any Unicode text (well-formed: no lone surrogates) within a byte limit. */
const text = (maxLength: number, maxBytes: number): fc.Arbitrary<string> => fc.string({ unit: 'binary', maxLength }).filter((value) => bytesOf(value) <= maxBytes);
const groupName = fc.oneof(fc.stringMatching(GROUP_NAME_PATTERN), text(24, MAX_NAME_BYTES));
const name = fc.oneof(fc.stringMatching(/^[A-Za-z0-9._-]{1,64}$/), text(40, MAX_NAME_BYTES));
const reason = fc.oneof(fc.constant(''), fc.string({ maxLength: 60 }).filter((value) => bytesOf(value) <= MAX_REASON_BYTES), text(60, MAX_REASON_BYTES));
const holdings = fc.array(cycle, { maxLength: 6 });

function isBadMessage(error: unknown): boolean {
  return error instanceof LinkError && error.code === 'ERR_LINK_BAD_MESSAGE';
}

function refused(run: () => unknown): void {
  assert.throws(run, (error: unknown) => {
    assert.ok(isBadMessage(error), `not ERR_LINK_BAD_MESSAGE: ${String((error as Error)?.stack ?? error)}`);
    return true;
  });
}

/** Every string in a decoded message. */
function stringsOf(value: unknown): string[] {
  if (typeof value === 'string') return [value];
  if (Array.isArray(value)) return value.flatMap(stringsOf);
  if (value !== null && typeof value === 'object') return Object.values(value).flatMap(stringsOf);
  return [];
}

/** A plain-data copy (fast-check may build null-prototype records). */
const plain = (value: unknown): unknown => JSON.parse(JSON.stringify(value));

interface Codec {
  what: string;
  message: fc.Arbitrary<unknown>;
  encode: (message: never) => Buffer;
  decode: (payload: Buffer) => unknown;
  /** The field rules a decoded message must keep (a message the decoder let through). */
  valid: (message: never) => boolean;
}

const nameOk = (value: string): boolean => bytesOf(value) <= MAX_NAME_BYTES;
const reasonOk = (value: string): boolean => bytesOf(value) <= MAX_REASON_BYTES;
const safe = (value: number): boolean => Number.isSafeInteger(value) && value >= 0;
const holdingsOk = (cycles: number[]): boolean => cycles.length <= M.MAX_HOLDINGS && cycles.every((c) => safe(c) && c >= 1);

const CODECS: Codec[] = [
  {
    what: 'CGROUP_PREPARE',
    message: fc.tuple(groupName, cycleAndFormed, positiveMs).map(([group, c, holdMs]) => ({ group, cycle: c.cycle, formed: c.formed, holdMs })),
    encode: M.encodePrepare as (message: never) => Buffer,
    decode: M.decodePrepare,
    valid: ((m: M.Prepare) => nameOk(m.group) && safe(m.cycle) && m.cycle >= 1 && safe(m.formed) && m.formed < m.cycle && m.holdMs >= 1) as (message: never) => boolean,
  },
  {
    what: 'CGROUP_PREPARE reply',
    message: fc.record({ cuts: fc.array(fc.record({ volume: name, sequence: u64 }), { maxLength: 6 }) }),
    encode: ((m: { cuts: M.Cut[] }) => M.encodeCuts(m.cuts)) as (message: never) => Buffer,
    decode: (payload) => ({ cuts: M.decodeCuts(payload) }),
    valid: ((m: { cuts: M.Cut[] }) => m.cuts.length <= M.MAX_MEMBERS_PER_MESSAGE && m.cuts.every((cut) => nameOk(cut.volume) && safe(cut.sequence))) as (message: never) => boolean,
  },
  {
    what: 'CGROUP_RUN',
    message: fc.record({ group: groupName, cycle, drainMs: positiveMs }),
    encode: M.encodeRun as (message: never) => Buffer,
    decode: M.decodeRun,
    valid: ((m: M.Run) => nameOk(m.group) && safe(m.cycle) && m.cycle >= 1 && m.drainMs >= 1) as (message: never) => boolean,
  },
  {
    what: 'CGROUP_RUN reply',
    message: fc.record({
      ok: fc.boolean(), reason,
      members: fc.array(fc.record({ volume: name, snapshot: fc.oneof(fc.constant(''), name), holdings }), { maxLength: 4 }),
    }),
    encode: M.encodeDrained as (message: never) => Buffer,
    decode: M.decodeDrained,
    valid: ((m: M.Drained) => typeof m.ok === 'boolean' && reasonOk(m.reason) && m.members.length <= M.MAX_MEMBERS_PER_MESSAGE
      && m.members.every((member) => nameOk(member.volume) && nameOk(member.snapshot) && holdingsOk(member.holdings))) as (message: never) => boolean,
  },
  {
    what: 'CGROUP_RESULT',
    message: fc.record({
      group: groupName, cycle, formed: fc.boolean(), reason,
      consistencyTimeMs: fc.oneof(fc.integer({ min: 0, max: 4102444800000 }), fc.double({ noNaN: true, noDefaultInfinity: true })),
    }),
    encode: M.encodeResult as (message: never) => Buffer,
    decode: M.decodeResult,
    valid: ((m: M.CycleResult) => nameOk(m.group) && safe(m.cycle) && m.cycle >= 1 && typeof m.formed === 'boolean' && reasonOk(m.reason)
      && Number.isFinite(m.consistencyTimeMs)) as (message: never) => boolean,
  },
  {
    what: 'PAIR_CG_CUT',
    message: fc.tuple(name, groupName, cycleAndFormed, u64).map(([pair, group, c, through]) => ({ name: pair, group, cycle: c.cycle, formed: c.formed, through })),
    encode: M.encodeCutRequest as (message: never) => Buffer,
    decode: M.decodeCutRequest,
    valid: ((m: M.CutRequest) => nameOk(m.name) && nameOk(m.group) && safe(m.cycle) && m.cycle >= 1 && safe(m.formed) && m.formed < m.cycle
      && safe(m.through)) as (message: never) => boolean,
  },
  {
    what: 'PAIR_CG_CUT reply',
    message: fc.record({ snapshot: name, holdings }),
    encode: M.encodeCutReply as (message: never) => Buffer,
    decode: M.decodeCutReply,
    valid: ((m: M.CutReply) => nameOk(m.snapshot) && holdingsOk(m.holdings)) as (message: never) => boolean,
  },
];

/** How many garbage or flipped inputs decoded (so the re-encoding check is known to have run). */
const decodedCounts = new Map<string, number>();

/** Decodes bytes from the network: ERR_LINK_BAD_MESSAGE, or a valid message that re-encodes to them. */
function refusedOrExact(codec: Codec, bytes: Buffer): void {
  let decoded: unknown;
  try {
    decoded = codec.decode(bytes);
  } catch (error) {
    assert.ok(isBadMessage(error), `${codec.what}: not ERR_LINK_BAD_MESSAGE for ${bytes.toString('hex')}: ${String((error as Error)?.stack ?? error)}`);
    return;
  }
  decodedCounts.set(codec.what, (decodedCounts.get(codec.what) ?? 0) + 1);
  assert.ok(codec.valid(decoded as never), `${codec.what}: decoded a message that breaks a field rule: ${bytes.toString('hex')} -> ${JSON.stringify(decoded)}`);
  const again = codec.encode(decoded as never);
  if (again.equals(bytes)) return;
  // The tolerated difference (see the note): a string that was not UTF-8, decoded lossily.
  const lossyUtf8 = stringsOf(decoded).some((value) => value.includes('\uFFFD'));
  assert.ok(lossyUtf8, `${codec.what}: ${bytes.toString('hex')} decoded to ${JSON.stringify(decoded)}, which re-encodes to ${again.toString('hex')}`);
  assert.deepEqual(plain(codec.decode(again)), plain(decoded));
}

describe('74 consistency-group messages (property)', () => {
  before(() => {
    process.stdout.write(`      seed ${SEED} (CGROUP_PROPERTY_SEED), ${RUNS} runs per property\n`);
  });

  for (const codec of CODECS) {
    describe(codec.what, () => {
      it('decodes what it encodes, from any view, and re-encodes the same bytes', () => {
        fc.assert(fc.property(codec.message, fc.nat(64), fc.nat(64), (message, before, after) => {
          const bytes = codec.encode(message as never);
          const decoded = codec.decode(bytes);
          assert.deepEqual(plain(decoded), plain(message));
          assert.ok(codec.valid(decoded as never));
          assert.ok(codec.encode(decoded as never).equals(bytes));
          // The same bytes inside a larger buffer: the reader stays within its view.
          const host = Buffer.alloc(before + bytes.length + after, 0xa5);
          bytes.copy(host, before);
          assert.deepEqual(plain(codec.decode(host.subarray(before, before + bytes.length))), plain(message));
        }), { seed: SEED, numRuns: RUNS });
      });

      it('refuses every truncation and a random split, and appended bytes', () => {
        fc.assert(fc.property(codec.message, fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 16 }), (message, splitAt, extra) => {
          const bytes = codec.encode(message as never);
          for (let length = 0; length < bytes.length; length++) refused(() => codec.decode(bytes.subarray(0, length)));
          // A random split: the head alone is refused; the tail alone is just bytes from the network.
          const split = splitAt % bytes.length;
          refused(() => codec.decode(Buffer.from(bytes.subarray(0, split))));
          refusedOrExact(codec, Buffer.from(bytes.subarray(split)));
          refused(() => codec.decode(Buffer.concat([bytes, Buffer.from(extra)])));
        }), { seed: SEED, numRuns: Math.ceil(RUNS / 2) }); // each run tries every cut point
      });

      it('answers garbage with ERR_LINK_BAD_MESSAGE or a valid message that re-encodes to it', () => {
        fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), (garbage) => {
          refusedOrExact(codec, Buffer.from(garbage));
        }), { seed: SEED, numRuns: RUNS });
      });

      it('answers a valid message with flipped bytes with ERR_LINK_BAD_MESSAGE or a valid message that re-encodes to it', () => {
        const before = decodedCounts.get(codec.what) ?? 0;
        fc.assert(fc.property(codec.message, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 4 }), (message, flips) => {
          const bytes = Buffer.from(codec.encode(message as never));
          for (const [at, mask] of flips) bytes[at % bytes.length] = (bytes[at % bytes.length] as number) ^ mask;
          refusedOrExact(codec, bytes);
        }), { seed: SEED, numRuns: RUNS });
        // Flips in a field's value bytes leave a message: the re-encoding check ran.
        assert.ok((decodedCounts.get(codec.what) ?? 0) > before, `${codec.what}: no flipped message decoded in ${RUNS} runs`);
      });
    });
  }
});

describe('74 consistency-group messages: field rules', () => {
  const text257 = 'n'.repeat(MAX_NAME_BYTES + 1);
  const text256 = 'n'.repeat(MAX_NAME_BYTES);

  it('CGROUP_PREPARE: cycle >= 1, formed < cycle, holdMs >= 1, a group name of at most 256 bytes', () => {
    const prepare = (group: string, c: number, formed: number, holdMs: number): Buffer => new BinaryWriter().string(group).u64(c).u64(formed).u32(holdMs).encode();
    assert.deepEqual(M.decodePrepare(prepare('g', 1, 0, 1)), { group: 'g', cycle: 1, formed: 0, holdMs: 1 });
    assert.deepEqual(M.decodePrepare(prepare('g', Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER - 1, 2 ** 32 - 1)).formed, Number.MAX_SAFE_INTEGER - 1);
    refused(() => M.decodePrepare(prepare('g', 0, 0, 1)));
    refused(() => M.decodePrepare(prepare('g', 5, 5, 1)));
    refused(() => M.decodePrepare(prepare('g', 5, 6, 1)));
    refused(() => M.decodePrepare(prepare('g', 5, 4, 0)));
    assert.equal(M.decodePrepare(prepare(text256, 5, 4, 1)).group, text256);
    refused(() => M.decodePrepare(prepare(text257, 5, 4, 1)));
    // A 64-bit field above 2^53 (high word 2^21).
    const big = prepare('g', 5, 4, 1);
    big.writeUInt32BE(2 ** 21, 3);
    refused(() => M.decodePrepare(big));
  });

  it('CGROUP_RUN: cycle >= 1, drainMs >= 1', () => {
    const run = (c: number, drainMs: number): Buffer => new BinaryWriter().string('g').u64(c).u32(drainMs).encode();
    assert.deepEqual(M.decodeRun(run(1, 1)), { group: 'g', cycle: 1, drainMs: 1 });
    refused(() => M.decodeRun(run(0, 1)));
    refused(() => M.decodeRun(run(1, 0)));
  });

  it(`CGROUP_PREPARE reply: at most ${M.MAX_MEMBERS_PER_MESSAGE} cuts`, () => {
    const cuts = Array.from({ length: M.MAX_MEMBERS_PER_MESSAGE }, (_, index) => ({ volume: `v${index}`, sequence: index }));
    assert.deepEqual(M.decodeCuts(M.encodeCuts(cuts)), cuts);
    const over = M.encodeCuts([...cuts, { volume: 'one-more', sequence: 1 }]);
    assert.throws(() => M.decodeCuts(over), (error: unknown) => isBadMessage(error) && /at most 256/.test((error as Error).message));
    // A huge count is refused from the count alone (nothing is read or allocated for it).
    assert.throws(() => M.decodeCuts(new BinaryWriter().u32(2 ** 32 - 1).encode()), (error: unknown) => isBadMessage(error) && /at most/.test((error as Error).message));
  });

  it(`CGROUP_RUN reply: ok 0/1, a reason of at most 1024 bytes, ${M.MAX_MEMBERS_PER_MESSAGE} members, ${M.MAX_HOLDINGS} holdings of cycles >= 1`, () => {
    const drained = (flag: number, why: string, members: { volume: string; snapshot: string; holdings: number[] }[]): Buffer => {
      const writer = new BinaryWriter().u8(flag).string(why).u32(members.length);
      for (const member of members) {
        writer.string(member.volume).string(member.snapshot).u32(member.holdings.length);
        for (const held of member.holdings) writer.u64(held);
      }
      return writer.encode();
    };
    const full = Array.from({ length: M.MAX_HOLDINGS }, (_, index) => index + 1);
    assert.deepEqual(M.decodeDrained(drained(1, '', [{ volume: 'v', snapshot: 'cg.g.1', holdings: full }])).members[0]?.holdings, full);
    refused(() => M.decodeDrained(drained(2, '', [])));
    refused(() => M.decodeDrained(drained(0, '', [{ volume: 'v', snapshot: '', holdings: [...full, M.MAX_HOLDINGS + 1] }])));
    refused(() => M.decodeDrained(drained(0, '', [{ volume: 'v', snapshot: '', holdings: [3, 0] }])));
    assert.equal(M.decodeDrained(drained(0, 'r'.repeat(MAX_REASON_BYTES), [])).reason.length, MAX_REASON_BYTES);
    refused(() => M.decodeDrained(drained(0, 'r'.repeat(MAX_REASON_BYTES + 1), [])));
    const members = Array.from({ length: M.MAX_MEMBERS_PER_MESSAGE }, (_, index) => ({ volume: `v${index}`, snapshot: `cg.g.${index + 1}`, holdings: [index + 1] }));
    assert.equal(M.decodeDrained(drained(1, '', members)).members.length, M.MAX_MEMBERS_PER_MESSAGE);
    refused(() => M.decodeDrained(drained(1, '', [...members, { volume: 'x', snapshot: '', holdings: [] }])));
    refused(() => M.decodeDrained(drained(1, '', [{ volume: text257, snapshot: '', holdings: [] }])));
  });

  it('CGROUP_RESULT: cycle >= 1, formed 0/1, a finite consistency time', () => {
    const result = (c: number, flag: number, timeMs: number): Buffer => new BinaryWriter().string('g').u64(c).u8(flag).string('why').f64(timeMs).encode();
    assert.deepEqual(M.decodeResult(result(7, 1, 1.5)), { group: 'g', cycle: 7, formed: true, reason: 'why', consistencyTimeMs: 1.5 });
    refused(() => M.decodeResult(result(0, 1, 0)));
    refused(() => M.decodeResult(result(7, 2, 0)));
    for (const timeMs of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) refused(() => M.decodeResult(result(7, 0, timeMs)));
  });

  it('PAIR_CG_CUT: cycle >= 1, formed < cycle; its reply: holdings of cycles >= 1, at most MAX_HOLDINGS', () => {
    const cut = (c: number, formed: number): Buffer => new BinaryWriter().string('p').string('g').u64(c).u64(formed).u64(9).encode();
    assert.deepEqual(M.decodeCutRequest(cut(2, 1)), { name: 'p', group: 'g', cycle: 2, formed: 1, through: 9 });
    refused(() => M.decodeCutRequest(cut(0, 0)));
    refused(() => M.decodeCutRequest(cut(2, 2)));
    const reply = (cycles: number[]): Buffer => {
      const writer = new BinaryWriter().string('cg.g.2').u32(cycles.length);
      for (const held of cycles) writer.u64(held);
      return writer.encode();
    };
    const full = Array.from({ length: M.MAX_HOLDINGS }, (_, index) => index + 1);
    assert.deepEqual(M.decodeCutReply(reply(full)).holdings, full);
    refused(() => M.decodeCutReply(reply([...full, 65])));
    refused(() => M.decodeCutReply(reply([0])));
  });

  it('an over-long ASCII reason is cut by the encoder to what the decoder accepts', () => {
    const long = 'x'.repeat(5000);
    assert.equal(M.decodeDrained(M.encodeDrained({ ok: false, reason: long, members: [] })).reason, long.slice(0, MAX_REASON_BYTES));
    assert.equal(M.decodeResult(M.encodeResult({ group: 'g', cycle: 1, formed: false, reason: long, consistencyTimeMs: 0 })).reason, long.slice(0, MAX_REASON_BYTES));
  });
});
