// The NBD server's transmission phase fed seeded streams (fast-check): sequences of requests of
// every command with offsets and lengths in and out of range, random flags, payloads of any size
// (large writes take the receive-into-the-store path), bad magic and plain garbage, each stream
// cut into random chunks and sometimes dropped midway. Whatever arrives: the server stays up and
// serves a new client; the guarded first MiB, which no generated request targets, never changes;
// every track whose bytes changed is marked in the volume's recording bitmap (tracking stays
// conservative, a torn payload included); and the journal holds a record for each change.
import { strict as assert } from 'node:assert';

import * as fc from 'fast-check';

import * as P from '../../src/nbd/protocol';
import { NbdServer } from '../../src/nbd/server';
import type { Bitmap } from '../../src/storage/bitmap';
import { Journal } from '../../src/storage/journal';
import { Volume } from '../../src/storage/volume';
import { NbdTestClient, type Endpoint } from '../helpers/nbd-client';

const KiB = 1024;
const MiB = 1024 * KiB;
const SIZE = 2 * MiB;
const TRACK = 64 * KiB;
const MAX_PAYLOAD = 256 * KiB;

function pattern(byteLength: number, seed: number): Buffer {
  const bytes = Buffer.allocUnsafe(byteLength);
  for (let i = 0; i < byteLength; i++) bytes[i] = (i * 31 + seed * 7 + (i >> 11)) & 0xff;
  return bytes;
}

const COMMANDS = [P.NBD_CMD_READ, P.NBD_CMD_WRITE, P.NBD_CMD_FLUSH, P.NBD_CMD_TRIM, P.NBD_CMD_CACHE, P.NBD_CMD_WRITE_ZEROES, P.NBD_CMD_BLOCK_STATUS];

/** One piece of a stream: a request (maybe malformed) or bytes of garbage. */
const piece = fc.oneof(
  { weight: 12, arbitrary: fc.record({
    kind: fc.constant('request' as const),
    type: fc.oneof({ weight: 9, arbitrary: fc.constantFrom(...COMMANDS) }, { weight: 1, arbitrary: fc.integer({ min: 8, max: 0xffff }) }),
    flags: fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, { weight: 2, arbitrary: fc.constantFrom(P.NBD_CMD_FLAG_FUA, P.NBD_CMD_FLAG_NO_HOLE, P.NBD_CMD_FLAG_DF, P.NBD_CMD_FLAG_REQ_ONE, P.NBD_CMD_FLAG_FAST_ZERO) },
      { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffff }) }),
    // Never below 1 MiB: the guarded first MiB stays untouched; past the end to be refused.
    offset: fc.oneof({ weight: 9, arbitrary: fc.integer({ min: MiB, max: SIZE + TRACK }) }, { weight: 1, arbitrary: fc.constantFrom(2 ** 53, Number.MAX_SAFE_INTEGER) }),
    length: fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 0, max: 96 * KiB }) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 2 * MAX_PAYLOAD }) },
      { weight: 1, arbitrary: fc.constant(0xffffffff) }),
    // A write's payload: as long as its length says (a lie sometimes: shorter or longer).
    payloadDelta: fc.oneof({ weight: 9, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: -512, max: 512 }) }),
    seed: fc.nat({ max: 1000 }),
  }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('garbage' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('bad-magic' as const), magic: fc.nat() }) },
);

type Piece = typeof piece extends fc.Arbitrary<infer T> ? T : never;

function encode(entry: Piece, cookie: bigint): Buffer {
  if (entry.kind === 'garbage') return Buffer.from(entry.bytes);
  if (entry.kind === 'bad-magic') {
    const header = P.encodeRequest(P.NBD_CMD_READ, 0, cookie, MiB, 4096);
    header.writeUInt32BE(entry.magic >>> 0 === P.NBD_REQUEST_MAGIC ? 0 : entry.magic >>> 0, 0);
    return header;
  }
  const payloadBytes = entry.type === P.NBD_CMD_WRITE ? Math.max(0, Math.min(entry.length, 2 * MAX_PAYLOAD) + entry.payloadDelta) : 0;
  return P.encodeRequest(entry.type, entry.flags, cookie, entry.offset, entry.length, pattern(payloadBytes, entry.seed));
}

describe('45 nbd transmission under seeded streams (integration, property)', function () {
  this.timeout(300_000);
  let volume: Volume;
  let journal: Journal;
  let bitmap: Bitmap;
  let server: NbdServer;
  let endpoint: Endpoint;
  const initial = pattern(SIZE, 1);

  before(async () => {
    volume = Volume.create({ capacityBytes: SIZE });
    volume.write(0, initial);
    bitmap = volume.createBitmap('fuzz', { granularityBytes: TRACK });
    journal = Journal.create({ capacityBytes: 64 * MiB, maxRecordBytes: MAX_PAYLOAD * 2 });
    volume.attachJournal(journal);
    server = new NbdServer({
      exports: [{ name: 'vol', volume }],
      listen: [{ port: 0 }],
      maxPayloadBytes: MAX_PAYLOAD,
      maxDiscardBytes: MAX_PAYLOAD,
      maxInFlightRequests: 8,
      handshakeTimeoutMs: 2000,
    });
    await server.listen();
    endpoint = { port: server.addresses()[0]?.port as number };
  });

  after(async () => {
    await server?.close();
    volume?.attachJournal(null);
    await volume?.close();
  });

  it('survives every stream; the guarded MiB never changes; every changed track is marked', async () => {
    let closedByServer = 0;
    await fc.assert(fc.asyncProperty(fc.array(piece, { minLength: 1, maxLength: 24 }), fc.array(fc.integer({ min: 1, max: 4096 }), { minLength: 1, maxLength: 8 }),
      fc.boolean(), fc.boolean(), async (pieces, cuts, structured, dropMidway) => {
        const client = await NbdTestClient.open(endpoint, { exportName: 'vol', structured });
        const stream = Buffer.concat(pieces.map((entry, index) => encode(entry, BigInt(index + 1))));
        const end = dropMidway ? Math.floor(stream.length / 2) : stream.length;
        // Cut into chunks of the drawn sizes, cycling.
        for (let at = 0, index = 0; at < end; index++) {
          const size = Math.min(cuts[index % cuts.length] as number, end - at);
          client.send(stream.subarray(at, at + size));
          at += size;
          if (index % 8 === 7) await new Promise((resolve) => setImmediate(resolve));
        }
        // Let the server take what it got, then go (a vanished client when dropped midway).
        await Promise.race([client.closed(), new Promise((resolve) => setTimeout(resolve, 30))]);
        if (client.isClosed) closedByServer++;
        client.destroy();
        // Still serving, and the guarded MiB is untouched.
        const probe = await NbdTestClient.open(endpoint, { exportName: 'vol' });
        assert.ok((await probe.readData(0, 64 * KiB)).equals(initial.subarray(0, 64 * KiB)), 'the guarded MiB changed');
        await probe.disconnect();
      }), { numRuns: 300, seed: Number(process.env.BLOCKMIRROR_FUZZ_SEED ?? 4501), endOnFailure: true });
    // Wait for writes still landing from dropped clients, then check the whole volume.
    await new Promise((resolve) => setTimeout(resolve, 200));
    const now = Buffer.alloc(SIZE);
    volume.read(0, now);
    assert.ok(now.subarray(0, MiB).equals(initial.subarray(0, MiB)), 'the guarded MiB changed');
    let changedTracks = 0;
    for (let track = 0; track < SIZE / TRACK; track++) {
      const range = [track * TRACK, (track + 1) * TRACK] as const;
      if (now.subarray(...range).equals(initial.subarray(...range))) continue;
      changedTracks++;
      assert.ok(bitmap.test(track), `track ${track} changed but is not marked in the recording bitmap`);
    }
    assert.ok(changedTracks > 0, 'no stream changed anything: the generator reaches nothing');
    assert.ok(journal.stats().appendCount > 0, 'the journal recorded no change');
    process.stdout.write(`      ${changedTracks} tracks changed, ${closedByServer} streams closed by the server, ${journal.stats().appendCount} journal records, ` +
      `${server.stats().protocolErrors ?? '?'} protocol errors\n`);
  });
});
