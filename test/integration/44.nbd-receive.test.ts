// Receive into the store (src/nbd/receive.ts, docs/nbd-receive.md), case by case, with a real
// server over real TCP and a real client process killed with SIGKILL: on a volume with a
// recording bitmap, an attached journal and a snapshot,
//   - a client killed mid-payload: the request is never handled (never acknowledged), the
//     snapshot still reads the old bytes (copy-on-write ran before any byte landed), the bitmap
//     covers exactly the request's range, the journal's record holds what the store holds, and
//     nothing outside the range changed;
//   - a complete payload sent in pieces: acknowledged, stored, recorded, the snapshot unchanged;
//   - a snapshot created while a payload lands holds the range as the write left it, for good;
//   - rejected large writes (read-only export, beyond the end) change nothing at all;
//   - a thin 8 GiB volume: beyond 4 GiB in place, across a 1 GiB area window by copy;
//   - with BLOCKMIRROR_NBD_RECEIVE=copy the same torn payload is not stored (the control case).
//   Every server here pins the event loop (nativeLanes: false): this is its receive path (pair
//   exports use it); the lanes' is native/test/nbd_lane_test.cpp (and its extents and gate siblings) and integration 47.
import * as assert from 'node:assert/strict';

import { NbdServer } from '../../src/nbd';
import * as P from '../../src/nbd/protocol';
import { Journal } from '../../src/storage/journal';
import { SnapshotStore } from '../../src/storage/snapshot';
import { Volume } from '../../src/storage/volume';
import type { Bitmap } from '../../src/storage/bitmap';
import { NbdTestClient } from '../helpers/nbd-client';
import { tornWriter } from '../helpers/torn-writer';

const MiB = 1024 * 1024;
const SIZE = 16 * MiB;
const TRACK = 64 * 1024;
const OLD = 0x11;

async function until(probe: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function byteAt(volume: Volume, offset: number): number {
  const one = Buffer.alloc(1);
  volume.read(offset, one);
  return one[0] as number;
}

function setTracks(bitmap: Bitmap): number[] {
  const tracks: number[] = [];
  for (let bit = bitmap.findNextSet(0); bit >= 0 && bit < bitmap.bitCount; bit = bitmap.findNextSet(bit + 1)) tracks.push(bit);
  return tracks;
}

function range(from: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => from + i);
}

describe('44 nbd receive into the store (integration)', function () {
  this.timeout(60_000);

  let volume: Volume;
  let journal: Journal;
  let store: SnapshotStore;
  let bitmap: Bitmap;
  let server: NbdServer;
  let port: number;

  before(async () => {
    delete process.env.BLOCKMIRROR_NBD_RECEIVE;
    volume = Volume.create({ capacityBytes: SIZE });
    volume.write(0, Buffer.alloc(SIZE, OLD));
    journal = Journal.create({ capacityBytes: 16 * MiB, maxRecordBytes: 4 * MiB });
    volume.attachJournal(journal);
    bitmap = volume.createBitmap('oos', { granularityBytes: TRACK });
    store = SnapshotStore.create(volume);
    store.createSnapshot('s1');
    server = new NbdServer({
      exports: [{ name: 'v', volume }, { name: 'ro', volume, readOnly: true }],
      listen: [{ host: '127.0.0.1', port: 0 }], nativeLanes: false,
    });
    await server.listen();
    port = server.addresses().find((address) => address.transport === 'tcp')?.port as number;
  });

  after(async () => {
    await server?.close();
    await store?.close();
    volume?.attachJournal(null);
    await journal?.close();
    await volume?.close();
  });

  /** Clears the bitmap and releases the journal, so each case sees only its own effects. */
  function resetTracking(): void {
    bitmap.clearAll();
    const next = journal.nextSequence;
    if (next > 1) journal.release(next - 1);
  }

  it('a client SIGKILLed mid-payload: never acknowledged; snapshot old, bitmap covers the range, journal holds what the store holds', async () => {
    resetTracking();
    const offset = 4 * MiB;
    const writesBefore = server.stats().requests.write;
    const receivedBefore = server.stats().storeReceivedWrites;
    const firstSequence = journal.nextSequence;
    const writer = tornWriter(port, 'v', offset, MiB, 600_000);
    await writer.sent;
    // The landed bytes are visible in the store before the payload is complete: received in place.
    await until(() => byteAt(volume, offset + 599_999) === 0xab, 'the sent bytes to land in the store');
    await writer.kill();
    await until(() => server.stats().connections === 0, 'the server to see the connection close');

    const stats = server.stats();
    assert.equal(stats.requests.write, writesBefore, 'the torn request was handled (and so answered)');
    assert.equal(stats.storeReceivedWrites, receivedBefore);
    const old = Buffer.alloc(MiB);
    store.snapshot('s1').read(offset, old);
    assert.ok(old.every((byte) => byte === OLD), 'the snapshot lost the old bytes');
    assert.deepEqual(setTracks(bitmap), range(offset / TRACK, MiB / TRACK));
    const now = Buffer.alloc(MiB + 2 * TRACK);
    volume.read(offset - TRACK, now);
    assert.ok(now.subarray(0, TRACK).every((byte) => byte === OLD) && now.subarray(TRACK + MiB).every((byte) => byte === OLD), 'bytes outside the range changed');
    const inside = now.subarray(TRACK, TRACK + MiB);
    assert.ok(inside.subarray(0, 600_000).every((byte) => byte === 0xab));
    assert.ok(inside.subarray(600_000).every((byte) => byte === OLD), 'bytes that were never sent changed');
    const records = journal.read(firstSequence, { maxBytes: 4 * MiB });
    assert.equal(records.length, 1);
    const record = records[0] as (typeof records)[number];
    assert.equal(record.kind, 'write');
    assert.equal(record.byteOffset, offset);
    assert.equal(record.byteLength, MiB);
    assert.ok(record.data.equals(inside), 'the journal record differs from the store');
  });

  it('a complete payload sent in pieces is acknowledged, stored and recorded; the snapshot keeps the old bytes', async () => {
    resetTracking();
    const offset = 6 * MiB + 4096;
    const payload = Buffer.alloc(2 * MiB);
    for (let i = 0; i < payload.length; i += 4) payload.writeUInt32LE(i * 2654435761 >>> 0, i);
    const receivedBefore = server.stats().storeReceivedWrites;
    const firstSequence = journal.nextSequence;
    const client = await NbdTestClient.open({ host: '127.0.0.1', port }, { exportName: 'v' });
    const bytes = P.encodeRequest(P.NBD_CMD_WRITE, 0, 9n, offset, payload.length, payload);
    const reply = client.expectReply(9n, P.NBD_CMD_WRITE, payload.length);
    await client.sendInPieces(bytes, [28, 28 + 100_000, 28 + 1_500_000, bytes.length]);
    assert.equal((await reply).error, 0);
    await client.disconnect();
    assert.equal(server.stats().storeReceivedWrites, receivedBefore + 1);
    const back = Buffer.alloc(payload.length);
    volume.read(offset, back);
    assert.ok(back.equals(payload));
    const records = journal.read(firstSequence, { maxBytes: 4 * MiB });
    assert.equal(records.length, 1);
    assert.ok((records[0] as (typeof records)[number]).data.equals(payload));
    assert.deepEqual(setTracks(bitmap), range(Math.floor(offset / TRACK), Math.ceil((offset + payload.length) / TRACK) - Math.floor(offset / TRACK)));
    const old = Buffer.alloc(payload.length);
    store.snapshot('s1').read(offset, old);
    assert.ok(old.every((byte) => byte === OLD));
  });

  it('a snapshot created while a payload lands holds the range as that write left it, for good', async () => {
    const offset = 10 * MiB;
    const client = await NbdTestClient.open({ host: '127.0.0.1', port }, { exportName: 'v' });
    const bytes = P.encodeRequest(P.NBD_CMD_WRITE, 0, 11n, offset, MiB, Buffer.alloc(MiB, 0xcd));
    const reply = client.expectReply(11n, P.NBD_CMD_WRITE, MiB);
    client.send(bytes.subarray(0, 28 + 300_000));
    await until(() => byteAt(volume, offset + 299_999) === 0xcd, 'the first bytes to land');
    const mid = store.createSnapshot('mid');
    client.send(bytes.subarray(28 + 300_000));
    assert.equal((await reply).error, 0);
    // Overwrite the range: the snapshot must not follow.
    assert.equal(await client.writeData(offset, Buffer.alloc(MiB, 0xee)), 0);
    await client.disconnect();
    const held = Buffer.alloc(MiB);
    mid.read(offset, held);
    assert.ok(held.every((byte) => byte === 0xcd), 'the snapshot taken mid-payload does not hold the write');
    const old = Buffer.alloc(MiB);
    store.snapshot('s1').read(offset, old);
    assert.ok(old.every((byte) => byte === OLD));
    store.deleteSnapshot('mid');
  });

  it('rejected large writes (read-only export, beyond the end) change nothing', async () => {
    resetTracking();
    const firstSequence = journal.nextSequence;
    const before = Buffer.alloc(SIZE);
    volume.read(0, before);
    const cases = [
      { exportName: 'ro', offset: 12 * MiB, errno: P.NBD_EPERM },
      { exportName: 'v', offset: SIZE - 512 * 1024, errno: P.NBD_ENOSPC },
    ];
    for (const { exportName, offset, errno } of cases) {
      const client = await NbdTestClient.open({ host: '127.0.0.1', port }, { exportName });
      const bytes = P.encodeRequest(P.NBD_CMD_WRITE, 0, 13n, offset, MiB, Buffer.alloc(MiB, 0x99));
      const reply = client.expectReply(13n, P.NBD_CMD_WRITE, MiB);
      client.send(bytes.subarray(0, 28 + 1000));
      await new Promise((resolve) => setTimeout(resolve, 20));
      client.send(bytes.subarray(28 + 1000));
      assert.equal((await reply).error, errno);
      await client.disconnect();
    }
    const after = Buffer.alloc(SIZE);
    volume.read(0, after);
    assert.ok(after.equals(before), 'a rejected write changed the volume');
    assert.deepEqual(setTracks(bitmap), []);
    assert.equal(journal.nextSequence, firstSequence);
  });

  it('a thin 8 GiB volume: payloads land beyond 4 GiB, and one across a 1 GiB window is copied, both exactly', async () => {
    const big = Volume.create({ capacityBytes: 8 * 1024 * MiB });
    const local = new NbdServer({ exports: [{ name: 'big', volume: big }], listen: [{ host: '127.0.0.1', port: 0 }], nativeLanes: false });
    await local.listen();
    try {
      const localPort = local.addresses().find((address) => address.transport === 'tcp')?.port as number;
      const client = await NbdTestClient.open({ host: '127.0.0.1', port: localPort }, { exportName: 'big' });
      const cases = [
        { offset: 5 * 1024 * MiB + 4096, direct: 1 },
        { offset: 2 * 1024 * MiB - 512 * 1024, direct: 0 },
      ];
      for (const [index, { offset, direct }] of cases.entries()) {
        const before = local.stats().storeReceivedWrites;
        const payload = Buffer.alloc(MiB, 0x30 + index);
        const bytes = P.encodeRequest(P.NBD_CMD_WRITE, 0, BigInt(20 + index), offset, MiB, payload);
        const reply = client.expectReply(BigInt(20 + index), P.NBD_CMD_WRITE, MiB);
        client.send(bytes.subarray(0, 28));
        await new Promise((resolve) => setTimeout(resolve, 10));
        client.send(bytes.subarray(28));
        assert.equal((await reply).error, 0);
        assert.equal(local.stats().storeReceivedWrites - before, direct);
        const back = Buffer.alloc(MiB + 2);
        big.read(offset - 1, back);
        assert.equal(back[0], 0);
        assert.ok(back.subarray(1, 1 + MiB).equals(payload));
        assert.equal(back[MiB + 1], 0);
      }
      await client.disconnect();
    } finally {
      await local.close();
      await big.close();
    }
  });

  it('with BLOCKMIRROR_NBD_RECEIVE=copy a torn payload is not stored (control)', async () => {
    process.env.BLOCKMIRROR_NBD_RECEIVE = 'copy';
    let copying: NbdServer;
    try {
      copying = new NbdServer({ exports: [{ name: 'v', volume }], listen: [{ host: '127.0.0.1', port: 0 }], nativeLanes: false });
    } finally {
      delete process.env.BLOCKMIRROR_NBD_RECEIVE;
    }
    await copying.listen();
    try {
      resetTracking();
      const copyPort = copying.addresses().find((address) => address.transport === 'tcp')?.port as number;
      const offset = 13 * MiB;
      const writer = tornWriter(copyPort, 'v', offset, MiB, 600_000);
      await writer.sent;
      await new Promise((resolve) => setTimeout(resolve, 100));
      await writer.kill();
      await until(() => copying.stats().connections === 0, 'the copying server to see the close');
      const now = Buffer.alloc(MiB);
      volume.read(offset, now);
      assert.ok(now.every((byte) => byte === OLD));
      assert.deepEqual(setTracks(bitmap), []);
    } finally {
      await copying.close();
    }
  });
});
