// NBD connections served on worker threads (NbdServerOptions.workers, src/nbd/worker*.ts,
// docs/nbd-workers.md), over real loopback TCP:
//   - memory (memfd), shared and file volumes: a connection's writes land in the main thread's
//     volume and its reads see the main thread's writes; stats() and exportStats() sum the
//     workers' counters; connections spread over the workers;
//   - a Unix-socket connection (the worker wraps a pipe fd);
//   - a request pipelined behind NBD_OPT_GO in the same segment is served (the bytes the main
//     thread read past the handshake travel with the fd);
//   - BLOCK_STATUS (base:allocation and a dirty bitmap) and a read-only export in a worker;
//   - volumes with a journal or a snapshot store, and exports with a non-Volume object, stay on
//     the main loop;
//   - setExportVolume to an object workers may not serve ends that export's worker connections
//     before it returns: a write sent afterwards on such a connection never lands; new
//     connections are served on the main loop through the new object. moveExportToMainLoop too;
//   - graceful close answers a FLUSH in flight on a worker, then closes; 'disconnect' for each;
//   - a worker killed with terminate() and one dying of an uncaught exception: their clients see
//     a disconnect, a write the worker had not answered stays unanswered, 'worker-error' is
//     emitted, later connections go to the worker left, then (none left) to the main loop;
//   - a client killed mid-request on a worker: the server and the other connections go on;
//   - flush across workers: a write on one worker's connection, FLUSH on the other's, SIGKILL of
//     the serving process; the reopened file volume holds the write.
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';

import { NbdServer } from '../../src/nbd';
import * as P from '../../src/nbd/protocol';
import { addon } from '../../src/native';
import { Journal } from '../../src/storage/journal';
import { SnapshotStore } from '../../src/storage/snapshot';
import { kNativeHandle, Volume } from '../../src/storage/volume';
import { NbdTestClient } from '../helpers/nbd-client';
import { bytesAt, started, wrapperOf } from '../helpers/nbd-exports';
import { makeTempDir, removeTempDir, waitFor } from '../helpers/tools';

const MiB = 1024 * 1024;
const SIZE = 16 * MiB;

/** A connection served by a worker (the hand-off is asynchronous: wait for it). */
async function workerClient(server: NbdServer, port: number, exportName: string, options: { structured?: boolean; metaContexts?: string[] } = {}): Promise<NbdTestClient> {
  const before = server.stats().workerConnections;
  const client = await NbdTestClient.open({ port }, { exportName, ...options });
  await waitFor(() => server.stats().workerConnections > before, 'the hand-off to a worker');
  return client;
}

describe('46 NBD workers', function () {
  this.timeout(60_000);
  let directory: string;
  const servers: NbdServer[] = [];
  const volumes: Volume[] = [];
  const clients: NbdTestClient[] = [];

  before(() => {
    directory = makeTempDir('bm-nbd-workers-');
  });
  after(() => removeTempDir(directory));
  afterEach(async () => {
    for (const client of clients.splice(0)) client.destroy();
    for (const server of servers.splice(0)) await server.close({ graceful: false });
    for (const volume of volumes.splice(0)) await volume.close();
  });

  function serve(options: Partial<ConstructorParameters<typeof NbdServer>[0]> & { exports: ConstructorParameters<typeof NbdServer>[0]['exports'] }): NbdServer {
    // Lanes are offered before workers: off here, so the workers get the connections.
    const server = new NbdServer({ listen: [{ host: '127.0.0.1', port: 0 }], workers: 2, nativeLanes: false, ...options });
    servers.push(server);
    return server;
  }

  function track<T extends Volume>(volume: T): T {
    volumes.push(volume);
    return volume;
  }

  it('checks the workers option (an integer from 0 to 64)', () => {
    const volume = track(Volume.create({ capacityBytes: SIZE }));
    assert.throws(() => new NbdServer({ exports: [{ name: 'v', volume }], workers: 65 }), RangeError);
    assert.throws(() => new NbdServer({ exports: [{ name: 'v', volume }], workers: -1 }), RangeError);
    assert.throws(() => new NbdServer({ exports: [{ name: 'v', volume }], workers: 1.5 }), TypeError);
    assert.equal(new NbdServer({ exports: [{ name: 'v', volume }] }).workerThreads.length, 0);
  });

  for (const backing of ['memory', 'shared', 'file'] as const) {
    it(`serves a ${backing} volume from the workers: writes land in the main thread's volume, counters are summed`, async () => {
      const name = `bm-test-workers-${process.pid}-${backing}`;
      const volume = track(backing === 'memory' ? Volume.create({ capacityBytes: SIZE })
        : backing === 'shared' ? Volume.create({ capacityBytes: SIZE, backing, name })
          : Volume.create({ capacityBytes: SIZE, backing, path: path.join(directory, `${backing}.vol`) }));
      try {
        const server = serve({ exports: [{ name: 'vol0', volume }] });
        const port = await started(server);
        const a = await workerClient(server, port, 'vol0');
        const b = await workerClient(server, port, 'vol0');
        clients.push(a, b);
        assert.equal(server.stats().workerConnections, 2);
        assert.equal(server.stats().connections, 2);
        // Two connections, two workers (the one with the fewest connections takes the next).
        assert.equal(server.workerThreads.length, 2);
        const payload = Buffer.alloc(256 * 1024, 0x5a);
        assert.equal(await a.writeData(MiB, payload), 0);
        assert.deepEqual(bytesAt(volume, MiB, payload.length), payload);
        volume.write(4 * MiB, Buffer.alloc(4096, 0x33));
        assert.deepEqual(await b.readData(4 * MiB, 4096), Buffer.alloc(4096, 0x33));
        assert.deepEqual(await b.readData(MiB, payload.length), payload);
        assert.equal(await b.flush(), 0);
        const stats = server.stats();
        assert.equal(stats.requests.write, 1);
        assert.equal(stats.requests.read, 2);
        assert.equal(stats.requests.flush, 1);
        assert.equal(stats.bytesWritten, payload.length);
        assert.equal(stats.bytesRead, payload.length + 4096);
        assert.equal(stats.storeReceivedWrites, 1);
        const [exportStats] = server.exportStats();
        assert.equal(exportStats?.requests.write, 1);
        assert.equal(exportStats?.bytesWritten, payload.length);
        // The volume's own counters count the workers' I/O too (their Volume objects report
        // every 100 ms): the worker's write, reads and flush beside the main thread's write and
        // read (bytesAt).
        await waitFor(() => {
          const counted = volume.stats();
          return counted.writeCount === 2 && counted.writeBytes === payload.length + 4096 &&
            counted.readCount === 3 && counted.readBytes === 2 * payload.length + 4096 && counted.flushCount === 1;
        }, 'the volume\'s stats counting the workers\' I/O');
        await a.disconnect();
        await waitFor(() => server.stats().workerConnections === 1, 'the first disconnect');
      } finally {
        if (backing === 'shared') Volume.unlink({ name });
      }
    });
  }

  it('serves a connection over a Unix socket from a worker', async () => {
    const volume = track(Volume.create({ capacityBytes: SIZE }));
    const socketPath = path.join(directory, 'nbd.sock');
    const server = serve({ exports: [{ name: 'vol0', volume }], listen: [{ path: socketPath }] });
    await server.listen();
    const client = await NbdTestClient.open({ path: socketPath }, { exportName: 'vol0' });
    clients.push(client);
    await waitFor(() => server.stats().workerConnections === 1, 'the hand-off to a worker');
    assert.equal(await client.writeData(12288, Buffer.alloc(4096, 0x42)), 0);
    assert.deepEqual(bytesAt(volume, 12288, 4096), Buffer.alloc(4096, 0x42));
    assert.deepEqual(await client.readData(12288, 4096), Buffer.alloc(4096, 0x42));
  });

  it('serves a request pipelined behind NBD_OPT_GO in the same segment', async () => {
    const volume = track(Volume.create({ capacityBytes: SIZE }));
    const server = serve({ exports: [{ name: 'vol0', volume }] });
    const port = await started(server);
    const client = await NbdTestClient.connect({ port });
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
    assert.equal(server.stats().workerConnections, 1);
  });

  it('answers BLOCK_STATUS (allocation and a dirty bitmap) and keeps a read-only export read-only in a worker', async () => {
    const volume = track(Volume.create({ capacityBytes: SIZE }));
    volume.createBitmap('backup', { granularityBytes: 65536 });
    const server = serve({ exports: [{ name: 'vol0', volume }, { name: 'ro', volume, readOnly: true }] });
    const port = await started(server);
    const client = await workerClient(server, port, 'vol0', { structured: true, metaContexts: ['base:allocation', 'blockmirror:dirty:backup'] });
    clients.push(client);
    assert.equal(await client.writeData(2 * MiB, Buffer.alloc(4096, 1)), 0);
    const reply = await client.request(P.NBD_CMD_BLOCK_STATUS, 0, 0, 4 * MiB);
    assert.equal(reply.error, 0);
    assert.equal(reply.chunks.filter((chunk) => chunk.type === P.NBD_REPLY_TYPE_BLOCK_STATUS).length, 2);
    // The worker's write marked the bitmap the main thread created (it lives in the region).
    const bitmap = volume.openBitmap('backup');
    assert.equal(bitmap.findNextSet(0), (2 * MiB) / 65536);
    bitmap.close();
    const readOnly = await workerClient(server, port, 'ro');
    clients.push(readOnly);
    assert.equal(await readOnly.writeData(0, Buffer.alloc(4096, 2)), P.NBD_EPERM);
    assert.deepEqual(bytesAt(volume, 0, 4096), Buffer.alloc(4096));
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
        assert.equal(server.stats().workerConnections, 0, name);
      }
      assert.equal(wrapped.writes, 1);
    } finally {
      for (const client of clients.splice(0)) client.destroy();
      for (const server of servers.splice(0)) await server.close({ graceful: false });
      await store.close();
      journaled.attachJournal(null);
      await journal.close();
    }
  });

  it('setExportVolume to an object workers may not serve ends the worker connections before it returns', async () => {
    const volume = track(Volume.create({ capacityBytes: SIZE }));
    const server = serve({ exports: [{ name: 'vol0', volume }] });
    const port = await started(server);
    const old = await workerClient(server, port, 'vol0');
    clients.push(old);
    assert.equal(await old.writeData(0, Buffer.alloc(4096, 0x10)), 0);
    const wrapped = wrapperOf(volume);
    server.setExportVolume('vol0', wrapped);
    // Returned: the worker has destroyed the socket. A write sent now never lands.
    old.send(P.encodeRequest(P.NBD_CMD_WRITE, 0, 99n, 8192, 4096, Buffer.alloc(4096, 0xee)));
    await old.closed();
    await waitFor(() => server.stats().workerConnections === 0, 'the evicted connection to be reported');
    assert.deepEqual(bytesAt(volume, 8192, 4096), Buffer.alloc(4096));
    // New connections are served here, through the new object.
    const fresh = await NbdTestClient.open({ port }, { exportName: 'vol0' });
    clients.push(fresh);
    assert.equal(await fresh.writeData(8192, Buffer.alloc(4096, 0x20)), 0);
    assert.equal(server.stats().workerConnections, 0);
    assert.equal(wrapped.writes, 1);
    // Back to the plain volume: workers serve again, and moveExportToMainLoop evicts as well.
    server.setExportVolume('vol0', volume);
    const again = await workerClient(server, port, 'vol0');
    clients.push(again);
    assert.equal(server.moveExportToMainLoop('vol0'), true);
    again.send(P.encodeRequest(P.NBD_CMD_WRITE, 0, 100n, 16384, 4096, Buffer.alloc(4096, 0xee)));
    await again.closed();
    assert.deepEqual(bytesAt(volume, 16384, 4096), Buffer.alloc(4096));
  });

  it('a graceful close answers a FLUSH in flight on a worker, reports the disconnects, and ends the workers', async () => {
    const volume = track(Volume.create({ capacityBytes: SIZE, backing: 'file', path: path.join(directory, 'close.vol') }));
    const server = serve({ exports: [{ name: 'vol0', volume }] });
    const port = await started(server);
    const a = await workerClient(server, port, 'vol0');
    const b = await workerClient(server, port, 'vol0');
    clients.push(a, b);
    const disconnects: string[] = [];
    server.on('disconnect', (event: { reason: string }) => disconnects.push(event.reason));
    assert.equal(await a.writeData(0, Buffer.alloc(65536, 3)), 0);
    const flushed = a.flush();
    const closed = server.close({ graceful: true });
    assert.equal(await flushed, 0);
    await closed;
    assert.deepEqual(disconnects.sort(), ['server', 'server']);
    assert.equal(server.stats().connections, 0);
    await Promise.all([a.closed(), b.closed()]);
    await waitFor(() => server.workerThreads.every((thread) => thread.threadId === -1), 'the workers to exit');
  });

  it('a worker that dies (terminate, uncaught exception) closes its connections; the server goes on without it', async () => {
    const volume = track(Volume.create({ capacityBytes: SIZE }));
    const server = serve({ exports: [{ name: 'vol0', volume }] });
    const errors: { workerIndex: number; error: Error }[] = [];
    const disconnects: { reason: string; error?: Error }[] = [];
    server.on('worker-error', (event: { workerIndex: number; error: Error }) => errors.push(event));
    server.on('disconnect', (event: { reason: string; error?: Error }) => disconnects.push(event));
    const port = await started(server);
    const victim = await workerClient(server, port, 'vol0');
    clients.push(victim);
    const [first, second] = server.workerThreads as [import('node:worker_threads').Worker, import('node:worker_threads').Worker];
    // Which worker serves it: the one with the fewest connections at the time, the first here.
    await first.terminate();
    await victim.closed();
    await waitFor(() => errors.length === 1, "the first worker's death");
    assert.equal(errors[0]?.workerIndex, 0);
    assert.equal(disconnects[0]?.reason, 'error');
    assert.equal(server.stats().workerConnections, 0);
    // The next connection goes to the worker left.
    const next = await workerClient(server, port, 'vol0');
    clients.push(next);
    assert.equal(await next.writeData(0, Buffer.alloc(4096, 4)), 0);
    // An uncaught exception in the second worker (a malformed message, as a bug would throw).
    const socket = net.connect({ port });
    await new Promise((resolve) => socket.once('connect', resolve));
    const fd = (addon as unknown as { nbdDupSocket(fd: number): number }).nbdDupSocket((socket as unknown as { _handle: { fd: number } })._handle.fd);
    const regionFd = (addon as unknown as { nbdDupRegionFd(handle: unknown): number }).nbdDupRegionFd(volume[kNativeHandle]);
    second.postMessage({
      type: 'adopt', connectionId: 10_000, fd, transport: 'tcp',
      export: { name: 'vol0', description: '', readOnly: false, minimumBlockBytes: 1, preferredBlockBytes: 4096, maximumBlockBytes: 32 * MiB },
      volume: { key: 'malformed', fd: regionFd, id: volume.id.toString(), capacityBytes: SIZE },
      state: { exportName: 'vol0', structured: false, leftover: new Uint8Array(0) },
    });
    // A write the dying worker never answers stays unanswered.
    const unanswered = next.writeData(65536, Buffer.alloc(4096, 5)).then(() => 'answered', () => 'failed');
    await waitFor(() => errors.length === 2, "the second worker's death");
    assert.equal(errors[1]?.workerIndex, 1);
    assert.match(String(errors[1]?.error), /TypeError|contexts/);
    await next.closed();
    socket.destroy();
    (addon as unknown as { nbdCloseFd(fd: number): void }).nbdCloseFd(regionFd);
    // Under load the worker may read and answer the write before it takes the malformed
    // message: then the write must be stored. Otherwise it is never answered.
    const outcome = await Promise.race([unanswered, new Promise((resolve) => setTimeout(() => resolve('pending'), 200))]);
    if (outcome === 'answered') assert.deepEqual(bytesAt(volume, 65536, 4096), Buffer.alloc(4096, 5), 'an answered write is stored');
    // No worker left: the main loop serves.
    const last = await NbdTestClient.open({ port }, { exportName: 'vol0' });
    clients.push(last);
    assert.equal(await last.writeData(0, Buffer.alloc(4096, 6)), 0);
    assert.equal(server.stats().workerConnections, 0);
    assert.deepEqual(bytesAt(volume, 0, 4096), Buffer.alloc(4096, 6));
  });

  it('a client killed mid-request on a worker ends only its connection', async () => {
    const volume = track(Volume.create({ capacityBytes: SIZE }));
    const server = serve({ exports: [{ name: 'vol0', volume }] });
    const port = await started(server);
    const survivor = await workerClient(server, port, 'vol0');
    const victim = await workerClient(server, port, 'vol0');
    clients.push(survivor, victim);
    const protocolErrors: string[] = [];
    server.on('protocol-error', (event: { error: { code: string } }) => protocolErrors.push(event.error.code));
    const length = 1 * MiB;
    victim.send(P.encodeRequest(P.NBD_CMD_WRITE, 0, 5n, 0, length, Buffer.alloc(length, 0xab)).subarray(0, 28 + 100_000));
    victim.destroy();
    await waitFor(() => protocolErrors.length === 1, 'the truncation');
    assert.deepEqual(protocolErrors, ['ERR_NBD_TRUNCATED']);
    assert.equal(server.stats().protocolErrors, 1);
    await waitFor(() => server.stats().workerConnections === 1, 'the victim to be reported');
    assert.equal(await survivor.writeData(2 * MiB, Buffer.alloc(4096, 7)), 0);
    assert.deepEqual(await survivor.readData(2 * MiB, 4096), Buffer.alloc(4096, 7));
  });

  it('a FLUSH on one worker covers a write completed on another (SIGKILL, reopen the file)', async () => {
    const file = path.join(directory, 'flush.vol');
    const created = Volume.create({ capacityBytes: SIZE, backing: 'file', path: file });
    await created.close();
    const serverModule = path.join(__dirname, '..', '..', 'src', 'nbd', 'server.js');
    const volumeModule = path.join(__dirname, '..', '..', 'src', 'storage', 'volume.js');
    const source = `
      const { NbdServer } = require(${JSON.stringify(serverModule)});
      const { Volume } = require(${JSON.stringify(volumeModule)});
      const volume = Volume.open({ path: ${JSON.stringify(file)} });
      const server = new NbdServer({ exports: [{ name: 'vol0', volume }], listen: [{ host: '127.0.0.1', port: 0 }], workers: 2, nativeLanes: false });
      server.listen().then(() => process.stdout.write(server.addresses()[0].port + '\\n'));
      setInterval(() => process.stdout.write('s' + server.stats().workerConnections + '\\n'), 20);`;
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
