// NBD connections served by native lanes (NbdServerOptions.nativeLanes, src/nbd/native-lanes.ts,
// native/core/nbd_lane.cpp, docs/nbd-native.md), over real loopback TCP and Unix sockets:
//   - memory (memfd), shared and file volumes: a lane's writes land in the main thread's volume
//     and its reads see the main thread's writes; stats(), exportStats() and the volume's stats()
//     count the lanes' requests exactly;
//   - a Unix-socket connection; a request pipelined behind NBD_OPT_GO in the same segment;
//   - hand-back: BLOCK_STATUS, an invalid request and a write on a read-only export are answered
//     by the main loop, which serves the connection from then on, in order; a handed-back queue
//     of exactly the main loop's receive size is served (it once left a zero-length read target);
//   - volumes with a journal or a snapshot store, and exports with a non-Volume object, stay on
//     the main loop; a snapshot store created under a running lane makes its writes fail (EIO)
//     rather than bypass copy-on-write;
//   - setExportVolume / moveExportToMainLoop end the export's lanes before they return: a write
//     sent afterwards never lands;
//   - graceful close answers a FLUSH sent just before it (done or ESHUTDOWN), then closes;
//     'disconnect' for each;
//   - a client that vanishes mid-payload: ERR_NBD_TRUNCATED, never acknowledged, the range marked
//     in a recording bitmap; the other connections go on;
//   - maxConnections counts lane connections;
//   - flush across lanes: a write on one lane, FLUSH on another, SIGKILL of the serving process;
//     the reopened file volume holds the write.
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';

import { NbdServer } from '../../src/nbd';
import type { NativeLanesHooks } from '../../src/nbd/native-lanes';
import * as P from '../../src/nbd/protocol';
import type { ExportEntry, NegotiatedState } from '../../src/nbd/types';
import { Journal } from '../../src/storage/journal';
import { SnapshotStore } from '../../src/storage/snapshot';
import { Volume } from '../../src/storage/volume';
import { NbdTestClient } from '../helpers/nbd-client';
import { bytesAt, started, wrapperOf } from '../helpers/nbd-exports';
import { makeTempDir, removeTempDir, waitFor } from '../helpers/tools';

const MiB = 1024 * 1024;
const SIZE = 16 * MiB;

/** A connection served by a lane (the hand-off is asynchronous: wait for it). */
async function laneClient(server: NbdServer, port: number, exportName: string, options: { structured?: boolean; metaContexts?: string[] } = {}): Promise<NbdTestClient> {
  const before = server.stats().laneConnections;
  const client = await NbdTestClient.open({ port }, { exportName, ...options });
  await waitFor(() => server.stats().laneConnections > before, 'the hand-off to a lane');
  return client;
}

describe('47 NBD native lanes', function () {
  this.timeout(60_000);
  let directory: string;
  const servers: NbdServer[] = [];
  const volumes: Volume[] = [];
  const clients: NbdTestClient[] = [];

  before(() => {
    directory = makeTempDir('bm-nbd-lanes-');
  });
  after(() => removeTempDir(directory));
  afterEach(async () => {
    for (const client of clients.splice(0)) client.destroy();
    for (const server of servers.splice(0)) await server.close({ graceful: false });
    for (const volume of volumes.splice(0)) await volume.close();
  });

  function serve(options: Partial<ConstructorParameters<typeof NbdServer>[0]> & { exports: ConstructorParameters<typeof NbdServer>[0]['exports'] }): NbdServer {
    const server = new NbdServer({ listen: [{ host: '127.0.0.1', port: 0 }], nativeLanes: true, ...options });
    servers.push(server);
    return server;
  }

  function track<T extends Volume>(volume: T): T {
    volumes.push(volume);
    return volume;
  }

  it('checks the nativeLanes option (a boolean)', () => {
    const volume = track(Volume.create({ capacityBytes: SIZE }));
    assert.throws(() => new NbdServer({ exports: [{ name: 'v', volume }], nativeLanes: 1 as unknown as boolean }), TypeError);
    assert.throws(() => new NbdServer({ exports: [{ name: 'v', volume }], nativeLanes: 'yes' as unknown as boolean }), TypeError);
  });

  for (const backing of ['memory', 'shared', 'file'] as const) {
    it(`serves a ${backing} volume from lanes: writes land in the main thread's volume, counters are exact`, async () => {
      const name = `bm-test-lanes-${process.pid}-${backing}`;
      const volume = track(backing === 'memory' ? Volume.create({ capacityBytes: SIZE })
        : backing === 'shared' ? Volume.create({ capacityBytes: SIZE, backing, name })
          : Volume.create({ capacityBytes: SIZE, backing, path: path.join(directory, `${backing}.vol`) }));
      try {
        const server = serve({ exports: [{ name: 'vol0', volume }] });
        const port = await started(server);
        const a = await laneClient(server, port, 'vol0');
        const b = await laneClient(server, port, 'vol0');
        clients.push(a, b);
        assert.equal(server.stats().laneConnections, 2);
        assert.equal(server.stats().connections, 2);
        const payload = Buffer.alloc(256 * 1024, 0x5a);
        assert.equal(await a.writeData(MiB, payload), 0);
        assert.deepEqual(bytesAt(volume, MiB, payload.length), payload);
        volume.write(4 * MiB, Buffer.alloc(4096, 0x33));
        assert.deepEqual(await b.readData(4 * MiB, 4096), Buffer.alloc(4096, 0x33));
        assert.deepEqual(await b.readData(MiB, payload.length), payload);
        assert.equal(await b.writeData(0, Buffer.alloc(4096, 0x44)), 0);
        assert.equal(await b.flush(), 0);
        const stats = server.stats();
        assert.equal(stats.requests.write, 2);
        assert.equal(stats.requests.read, 2);
        assert.equal(stats.requests.flush, 1);
        assert.equal(stats.bytesWritten, payload.length + 4096);
        assert.equal(stats.bytesRead, payload.length + 4096);
        // The 256 KiB write went straight into the store; the 4 KiB one through the buffer.
        assert.equal(stats.storeReceivedWrites, 1);
        const [exportStats] = server.exportStats();
        assert.equal(exportStats?.requests.write, 2);
        assert.equal(exportStats?.bytesWritten, payload.length + 4096);
        // The volume's own counters count the lanes' I/O, read when asked: the lanes' 2 writes,
        // 2 reads and flush beside the main thread's write and read (bytesAt).
        const counted = volume.stats();
        assert.equal(counted.writeCount, 3);
        assert.equal(counted.writeBytes, payload.length + 2 * 4096);
        assert.equal(counted.readCount, 3);
        assert.equal(counted.flushCount, 1);
        await a.disconnect();
        await waitFor(() => server.stats().laneConnections === 1, 'the first disconnect');
        // An ended lane's counts stay.
        assert.equal(server.stats().requests.write, 2);
        assert.equal(volume.stats().writeCount, 3);
      } finally {
        if (backing === 'shared') Volume.unlink({ name });
      }
    });
  }

  it('serves a connection over a Unix socket, and a request pipelined behind NBD_OPT_GO', async () => {
    const volume = track(Volume.create({ capacityBytes: SIZE }));
    const socketPath = path.join(directory, 'lanes.sock');
    const server = serve({ exports: [{ name: 'vol0', volume }], listen: [{ path: socketPath }] });
    await server.listen();
    const client = await NbdTestClient.connect({ path: socketPath });
    clients.push(client);
    await client.readGreeting();
    const flags = Buffer.alloc(4);
    flags.writeUInt32BE(P.NBD_FLAG_C_FIXED_NEWSTYLE | P.NBD_FLAG_C_NO_ZEROES);
    const payload = Buffer.alloc(8192, 0x77);
    client.send(Buffer.concat([
      flags,
      P.encodeOption(P.NBD_OPT_GO, P.encodeInfoRequestData('vol0', [])),
      P.encodeRequest(P.NBD_CMD_WRITE, 0, 41n, 65536, payload.length, payload),
      P.encodeRequest(P.NBD_CMD_READ, 0, 42n, 65536, payload.length),
    ]));
    const replies = await client.readOptionReplies();
    assert.equal(replies[replies.length - 1]?.type, P.NBD_REP_ACK);
    const writeReply = await client.read(P.NBD_SIMPLE_REPLY_HEADER_BYTES);
    assert.equal(writeReply.readUInt32BE(4), 0);
    assert.equal(writeReply.readBigUInt64BE(8), 41n);
    const readReply = await client.read(P.NBD_SIMPLE_REPLY_HEADER_BYTES + payload.length);
    assert.equal(readReply.readBigUInt64BE(8), 42n);
    assert.deepEqual(readReply.subarray(P.NBD_SIMPLE_REPLY_HEADER_BYTES), payload);
    assert.deepEqual(bytesAt(volume, 65536, payload.length), payload);
    await waitFor(() => server.stats().laneConnections === 1, 'the hand-off to a lane');
  });

  it('serves structured reads of 64 KiB and more with OFFSET_HOLE chunks, and BLOCK_STATUS of base:allocation, as the main loop does (no hand-back)', async () => {
    for (const backing of ['memory', 'shared'] as const) {
      const volume = track(backing === 'memory' ? Volume.create({ capacityBytes: SIZE }) : Volume.create({ capacityBytes: SIZE, backing: 'shared', name: `bm-test-47-holes-${process.pid}` }));
      try {
        volume.write(0, Buffer.alloc(4096, 1));
        volume.write(96 * 1024, Buffer.alloc(8192, 2));
        volume.write(1 * MiB + 512, Buffer.alloc(512, 3));
        const lanes = serve({ exports: [{ name: 'vol0', volume }] });
        const loop = serve({ exports: [{ name: 'vol0', volume }], nativeLanes: false });
        const lanePort = await started(lanes);
        const loopPort = await started(loop);
        const onLane = await laneClient(lanes, lanePort, 'vol0', { structured: true });
        const onLoop = await NbdTestClient.open({ port: loopPort }, { exportName: 'vol0', structured: true });
        clients.push(onLane, onLoop);
        for (const [offset, length] of [[0, 256 * 1024], [64 * 1024, 64 * 1024], [1 * MiB, 2 * MiB], [8 * MiB, 1 * MiB]] as const) {
          const fromLane = await onLane.request(P.NBD_CMD_READ, 0, offset, length);
          const fromLoop = await onLoop.request(P.NBD_CMD_READ, 0, offset, length);
          assert.equal(fromLane.error, 0);
          assert.deepEqual(fromLane.data, bytesAt(volume, offset, length), `${backing} ${offset}+${length}`);
          assert.deepEqual(fromLane.chunks.map((chunk) => [chunk.type, chunk.flags, chunk.payload.length]),
            fromLoop.chunks.map((chunk) => [chunk.type, chunk.flags, chunk.payload.length]), `${backing} ${offset}+${length}: the same chunks`);
          assert.ok(fromLane.chunks.some((chunk) => chunk.type === P.NBD_REPLY_TYPE_OFFSET_HOLE), `${backing} ${offset}+${length}: holes travel as holes`);
        }
        // BLOCK_STATUS with base:allocation alone: answered by the lane, as the main loop does.
        const statusLane = await laneClient(lanes, lanePort, 'vol0', { structured: true, metaContexts: ['base:allocation'] });
        const statusLoop = await NbdTestClient.open({ port: loopPort }, { exportName: 'vol0', structured: true, metaContexts: ['base:allocation'] });
        clients.push(statusLane, statusLoop);
        for (const flags of [0, P.NBD_CMD_FLAG_REQ_ONE]) {
          const fromLane = await statusLane.request(P.NBD_CMD_BLOCK_STATUS, flags, 0, 4 * MiB);
          const fromLoop = await statusLoop.request(P.NBD_CMD_BLOCK_STATUS, flags, 0, 4 * MiB);
          assert.equal(fromLane.error, 0);
          assert.deepEqual(fromLane.chunks.map((chunk) => [chunk.type, chunk.flags, [...chunk.payload]]),
            fromLoop.chunks.map((chunk) => [chunk.type, chunk.flags, [...chunk.payload]]), `${backing} BLOCK_STATUS flags ${flags}`);
        }
        // Still on their lanes: nothing was handed back.
        assert.equal(lanes.stats().laneConnections, 2);
        assert.equal(lanes.stats().requests.blockStatus, 2);
      } finally {
        if (backing === 'shared') Volume.unlink({ name: `bm-test-47-holes-${process.pid}` });
      }
    }
  });

  it('hands BLOCK_STATUS, invalid requests and read-only writes back to the main loop, in order', async () => {
    const volume = track(Volume.create({ capacityBytes: SIZE }));
    volume.createBitmap('backup', { granularityBytes: 65536 });
    const server = serve({ exports: [{ name: 'vol0', volume }, { name: 'ro', volume, readOnly: true }] });
    const port = await started(server);
    const client = await laneClient(server, port, 'vol0', { structured: true, metaContexts: ['base:allocation', 'blockmirror:dirty:backup'] });
    clients.push(client);
    assert.equal(await client.writeData(2 * MiB, Buffer.alloc(4096, 1)), 0);
    // The lane's write marked the bitmap the main thread created (it lives in the region).
    const bitmap = volume.openBitmap('backup');
    assert.equal(bitmap.findNextSet(0), (2 * MiB) / 65536);
    bitmap.close();
    // A write pipelined behind BLOCK_STATUS: the main loop answers both, in order.
    const status = client.request(P.NBD_CMD_BLOCK_STATUS, 0, 0, 4 * MiB);
    const after = client.writeData(3 * MiB, Buffer.alloc(4096, 2));
    const reply = await status;
    assert.equal(reply.error, 0);
    assert.equal(reply.chunks.filter((chunk) => chunk.type === P.NBD_REPLY_TYPE_BLOCK_STATUS).length, 2);
    assert.equal(await after, 0);
    await waitFor(() => server.stats().laneConnections === 0, 'the hand-back');
    assert.equal(server.stats().connections, 1);
    assert.deepEqual(await client.readData(3 * MiB, 4096), Buffer.alloc(4096, 2));
    // A read past the end: the main loop's EINVAL, and the connection goes on.
    const invalid = await laneClient(server, port, 'vol0');
    clients.push(invalid);
    const past = await invalid.request(P.NBD_CMD_READ, 0, SIZE - 512, 4096);
    assert.equal(past.error, P.NBD_EINVAL);
    assert.equal(await invalid.writeData(0, Buffer.alloc(512, 3)), 0);
    // A read-only export: the write is handed back and refused there (EPERM), nothing changes.
    const readOnly = await laneClient(server, port, 'ro');
    clients.push(readOnly);
    assert.deepEqual(await readOnly.readData(2 * MiB, 4096), Buffer.alloc(4096, 1));
    assert.equal(await readOnly.writeData(8192, Buffer.alloc(4096, 4)), P.NBD_EPERM);
    assert.deepEqual(bytesAt(volume, 8192, 4096), Buffer.alloc(4096));
    assert.equal(server.stats().laneConnections, 0);
    assert.equal(server.stats().requests.blockStatus, 1);
  });

  it('a handed-back connection whose bytes fill the receive buffer exactly is served (no zero-length read, ENOBUFS)', async () => {
    // A lane that hands back a full buffer gives the event loop a queue of exactly its receive
    // size (256 KiB); compacting it once left no room for the next read. Here the resume hook
    // gets such a queue directly: 63 writes, 83 flushes and 8 bytes of one more flush header.
    const volume = track(Volume.create({ capacityBytes: SIZE }));
    const server = serve({ exports: [{ name: 'vol0', volume }] });
    const port = await started(server);
    const donor = await laneClient(server, port, 'vol0');
    clients.push(donor);
    type Record = { entry: unknown; state: NegotiatedState };
    const lanes = (server as unknown as { lanes: { lanes: Map<number, Record>; hooks: NativeLanesHooks } }).lanes;
    const record = [...lanes.lanes.values()][0] as Record;
    const pieces: Buffer[] = [];
    for (let index = 0; index < 63; index++) pieces.push(P.encodeRequest(P.NBD_CMD_WRITE, 0, BigInt(index), index * 4096, 4096, Buffer.alloc(4096, 1 + index)));
    for (let index = 0; index < 84; index++) pieces.push(P.encodeRequest(P.NBD_CMD_FLUSH, 0, BigInt(100 + index), 0, 0));
    const all = Buffer.concat(pieces);
    const RECEIVE_BYTES = 256 * 1024;
    assert.equal(all.length, RECEIVE_BYTES + 20);
    const listener = net.createServer({ pauseOnConnect: true });
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
    try {
      const accepted = new Promise<net.Socket>((resolve) => listener.once('connection', resolve));
      const peer = net.connect((listener.address() as net.AddressInfo).port, '127.0.0.1');
      const socket = await accepted;
      const replies: Buffer[] = [];
      let received = 0;
      const expected = (63 + 84) * 16;
      const done = new Promise<void>((resolve, reject) => {
        peer.on('data', (chunk: Buffer) => { replies.push(chunk); received += chunk.length; if (received >= expected) resolve(); });
        peer.on('error', reject);
        peer.on('close', () => reject(new Error(`the resumed connection closed after ${received} of ${expected} reply bytes`)));
      });
      lanes.hooks.resume(9_999, 'tcp', socket, record.entry as ExportEntry, { ...record.state, leftover: all.subarray(0, RECEIVE_BYTES) });
      peer.write(all.subarray(RECEIVE_BYTES));
      await done;
      const bytes = Buffer.concat(replies);
      for (let at = 0; at < expected; at += 16) {
        assert.equal(bytes.readUInt32BE(at), 0x67446698);
        assert.equal(bytes.readUInt32BE(at + 4), 0, 'every request succeeded');
      }
      for (let index = 0; index < 63; index++) assert.deepEqual(bytesAt(volume, index * 4096, 4096), Buffer.alloc(4096, 1 + index));
      peer.destroy();
    } finally {
      listener.close();
    }
  });

  it('keeps volumes with a journal or a snapshot store, and non-Volume objects, on the main loop', async () => {
    const journaled = track(Volume.create({ capacityBytes: SIZE }));
    const journal = Journal.create({ capacityBytes: 4 * MiB, maxRecordBytes: MiB });
    journaled.attachJournal(journal);
    const snapshotted = track(Volume.create({ capacityBytes: SIZE, backing: 'file', path: path.join(directory, 'snap.vol') }));
    const store = SnapshotStore.create(snapshotted);
    const plain = track(Volume.create({ capacityBytes: SIZE }));
    const wrapped = wrapperOf(plain);
    try {
      const server = serve({ exports: [{ name: 'j', volume: journaled }, { name: 's', volume: snapshotted }, { name: 'w', volume: wrapped }] });
      const port = await started(server);
      for (const name of ['j', 's', 'w']) {
        const client = await NbdTestClient.open({ port }, { exportName: name });
        clients.push(client);
        assert.equal(await client.writeData(0, Buffer.alloc(4096, 9)), 0, name);
        assert.equal(server.stats().laneConnections, 0, name);
      }
      assert.equal(wrapped.writes, 1);
      assert.ok(journal.stats().appendCount >= 1);
    } finally {
      for (const client of clients.splice(0)) client.destroy();
      for (const server of servers.splice(0)) await server.close({ graceful: false });
      await store.close();
      journaled.attachJournal(null);
      await journal.close();
    }
  });

  it('a snapshot store created under a running lane makes its writes fail rather than bypass copy-on-write', async () => {
    const volume = track(Volume.create({ capacityBytes: SIZE, backing: 'file', path: path.join(directory, 'cow.vol') }));
    const server = serve({ exports: [{ name: 'vol0', volume }] });
    const port = await started(server);
    const client = await laneClient(server, port, 'vol0');
    clients.push(client);
    assert.equal(await client.writeData(0, Buffer.alloc(4096, 0x61)), 0);
    const store = SnapshotStore.create(volume);
    try {
      const snapshot = store.createSnapshot('before');
      assert.equal(await client.writeData(0, Buffer.alloc(4096, 0x62)), P.NBD_EIO);
      assert.equal(await client.writeData(MiB, Buffer.alloc(MiB, 0x63)), P.NBD_EIO);
      assert.deepEqual(bytesAt(volume, 0, 4096), Buffer.alloc(4096, 0x61));
      assert.deepEqual(bytesAt(volume, MiB, 4096), Buffer.alloc(4096));
      const view = Buffer.alloc(4096);
      snapshot.read(0, view);
      assert.deepEqual(view, Buffer.alloc(4096, 0x61));
      assert.equal(server.stats().errors, 2);
      // Reads go on.
      assert.deepEqual(await client.readData(0, 4096), Buffer.alloc(4096, 0x61));
    } finally {
      client.destroy();
      await server.close({ graceful: false });
      await store.close();
    }
  });

  it('setExportVolume and moveExportToMainLoop end the lanes before they return', async () => {
    const volume = track(Volume.create({ capacityBytes: SIZE }));
    const server = serve({ exports: [{ name: 'vol0', volume }] });
    const port = await started(server);
    const old = await laneClient(server, port, 'vol0');
    clients.push(old);
    const disconnects: string[] = [];
    server.on('disconnect', (event: { reason: string }) => disconnects.push(event.reason));
    assert.equal(await old.writeData(0, Buffer.alloc(4096, 0x10)), 0);
    const wrapped = wrapperOf(volume);
    server.setExportVolume('vol0', wrapped);
    // Returned: the lane has left. A write sent now never lands.
    old.send(P.encodeRequest(P.NBD_CMD_WRITE, 0, 99n, 8192, 4096, Buffer.alloc(4096, 0xee)));
    await old.closed();
    await waitFor(() => server.stats().laneConnections === 0 && disconnects.length === 1, 'the evicted connection to be reported');
    assert.deepEqual(disconnects, ['server']);
    assert.deepEqual(bytesAt(volume, 8192, 4096), Buffer.alloc(4096));
    // New connections are served on the main loop, through the new object.
    const fresh = await NbdTestClient.open({ port }, { exportName: 'vol0' });
    clients.push(fresh);
    assert.equal(await fresh.writeData(8192, Buffer.alloc(4096, 0x20)), 0);
    assert.equal(server.stats().laneConnections, 0);
    assert.equal(wrapped.writes, 1);
    // Back to the plain volume: lanes serve again, and moveExportToMainLoop evicts as well.
    server.setExportVolume('vol0', volume);
    const again = await laneClient(server, port, 'vol0');
    clients.push(again);
    assert.equal(server.moveExportToMainLoop('vol0'), true);
    again.send(P.encodeRequest(P.NBD_CMD_WRITE, 0, 100n, 16384, 4096, Buffer.alloc(4096, 0xee)));
    await again.closed();
    assert.deepEqual(bytesAt(volume, 16384, 4096), Buffer.alloc(4096));
  });

  it('a graceful close answers a FLUSH sent just before it on a lane and reports the disconnects', async () => {
    const volume = track(Volume.create({ capacityBytes: SIZE, backing: 'file', path: path.join(directory, 'close.vol') }));
    const server = serve({ exports: [{ name: 'vol0', volume }] });
    const port = await started(server);
    const a = await laneClient(server, port, 'vol0');
    const b = await laneClient(server, port, 'vol0');
    clients.push(a, b);
    const disconnects: string[] = [];
    server.on('disconnect', (event: { reason: string }) => disconnects.push(event.reason));
    assert.equal(await a.writeData(0, Buffer.alloc(65536, 3)), 0);
    const flushed = a.flush();
    const closed = server.close({ graceful: true });
    // Answered either way: done (the lane had started it) or ESHUTDOWN (the stop came first),
    // as the event loop's graceful close answers; never dropped.
    assert.ok([0, P.NBD_ESHUTDOWN].includes(await flushed), 'the FLUSH was answered');
    await closed;
    assert.deepEqual(disconnects.sort(), ['server', 'server']);
    assert.equal(server.stats().connections, 0);
    await Promise.all([a.closed(), b.closed()]);
  });

  it('a client that vanishes mid-payload: ERR_NBD_TRUNCATED, never acknowledged, the range marked; others go on', async () => {
    const volume = track(Volume.create({ capacityBytes: SIZE }));
    const bitmap = volume.createBitmap('track', { granularityBytes: 65536 });
    const server = serve({ exports: [{ name: 'vol0', volume }] });
    const port = await started(server);
    const survivor = await laneClient(server, port, 'vol0');
    const victim = await laneClient(server, port, 'vol0');
    clients.push(survivor, victim);
    const protocolErrors: string[] = [];
    const disconnects: string[] = [];
    server.on('protocol-error', (event: { error: { code: string } }) => protocolErrors.push(event.error.code));
    server.on('disconnect', (event: { reason: string }) => disconnects.push(event.reason));
    const length = 1 * MiB;
    // The header and 100,000 bytes of a 1 MiB payload, then the client is gone: no reply comes.
    victim.send(P.encodeRequest(P.NBD_CMD_WRITE, 0, 5n, 6 * MiB, length, Buffer.alloc(length, 0xab)).subarray(0, 28 + 100_000));
    const reply = await Promise.race([victim.read(16).then(() => 'answered', () => 'closed'), new Promise((resolve) => setTimeout(() => resolve('none'), 100))]);
    assert.equal(reply, 'none');
    victim.destroy();
    await waitFor(() => protocolErrors.length === 1, 'the truncation');
    assert.deepEqual(protocolErrors, ['ERR_NBD_TRUNCATED']);
    assert.ok(disconnects.includes('truncated'));
    assert.equal(server.stats().protocolErrors, 1);
    // Conservative tracking: the whole range is marked, whatever landed.
    assert.equal(bitmap.findNextSet(0), (6 * MiB) / 65536);
    assert.equal(bitmap.findNextSet((6 * MiB) / 65536 + 15), (6 * MiB) / 65536 + 15);
    bitmap.close();
    await waitFor(() => server.stats().laneConnections === 1, 'the victims to be reported');
    assert.equal(await survivor.writeData(2 * MiB, Buffer.alloc(4096, 7)), 0);
    assert.deepEqual(await survivor.readData(2 * MiB, 4096), Buffer.alloc(4096, 7));
  });

  it('counts lane connections against maxConnections', async () => {
    const volume = track(Volume.create({ capacityBytes: SIZE }));
    const server = serve({ exports: [{ name: 'vol0', volume }], maxConnections: 1 });
    const port = await started(server);
    const first = await laneClient(server, port, 'vol0');
    clients.push(first);
    const second = await NbdTestClient.connect({ port });
    clients.push(second);
    await second.closed();
    assert.equal(await first.writeData(0, Buffer.alloc(512, 1)), 0);
  });

  it('a FLUSH on one lane covers a write completed on another (SIGKILL, reopen the file)', async () => {
    const file = path.join(directory, 'flush.vol');
    const created = Volume.create({ capacityBytes: SIZE, backing: 'file', path: file });
    await created.close();
    const serverModule = path.join(__dirname, '..', '..', 'src', 'nbd', 'server.js');
    const volumeModule = path.join(__dirname, '..', '..', 'src', 'storage', 'volume.js');
    const source = `
      const { NbdServer } = require(${JSON.stringify(serverModule)});
      const { Volume } = require(${JSON.stringify(volumeModule)});
      const volume = Volume.open({ path: ${JSON.stringify(file)} });
      const server = new NbdServer({ exports: [{ name: 'vol0', volume }], listen: [{ host: '127.0.0.1', port: 0 }], nativeLanes: true });
      server.listen().then(() => process.stdout.write(server.addresses()[0].port + '\\n'));
      setInterval(() => process.stdout.write('s' + server.stats().laneConnections + '\\n'), 20);`;
    const child = spawn(process.execPath, ['-e', source], { stdio: ['ignore', 'pipe', 'inherit'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString(); });
    const gone = new Promise((resolve) => child.once('exit', resolve));
    try {
      await waitFor(() => /^\d+\n/.test(output), 'the serving process');
      const port = Number(output.split('\n')[0]);
      const a = await NbdTestClient.open({ port }, { exportName: 'vol0' });
      await waitFor(() => output.includes('s1\n'), 'the first hand-off');
      const b = await NbdTestClient.open({ port }, { exportName: 'vol0' });
      await waitFor(() => output.includes('s2\n'), 'the second hand-off');
      clients.push(a, b);
      const payload = Buffer.alloc(128 * 1024, 0xc4);
      assert.equal(await a.writeData(3 * MiB, payload), 0);
      assert.equal(await b.flush(), 0);
      child.kill('SIGKILL');
      await gone;
      const reopened = track(Volume.open({ path: file }));
      assert.deepEqual(bytesAt(reopened, 3 * MiB, payload.length), payload);
    } finally {
      child.kill('SIGKILL');
      fs.rmSync(file, { force: true });
    }
  });
});
