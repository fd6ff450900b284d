// The NBD server over real loopback TCP and a Unix socket, with real volumes: a raw test client
// (test/helpers/nbd-client.ts) checks the replies byte by byte, and real clients (nbdinfo,
// qemu-io) check interoperability. A test that needs a tool it cannot find says so and skips.

import { strict as assert } from 'node:assert';
import { execFile, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';

import { NbdServer } from '../../src/nbd/server';
import * as P from '../../src/nbd/protocol';
import { Volume } from '../../src/storage/volume';
import { blockStatusOf, NbdTestClient, type Endpoint } from '../helpers/nbd-client';

const run = promisify(execFile);
const MiB = 1024 * 1024;

function hasTool(name: string): boolean {
  return (process.env.PATH ?? '').split(':').some((dir) => {
    try {
      fs.accessSync(path.join(dir, name), fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

function pattern(byteLength: number, seed: number): Buffer {
  const bytes = Buffer.allocUnsafe(byteLength);
  for (let i = 0; i < byteLength; i++) bytes[i] = (i * 31 + seed * 7 + (i >> 8)) & 0xff;
  return bytes;
}

describe('42 nbd server (integration)', function () {
  this.timeout(60_000);

  let directory: string;
  let socketPath: string;
  let volume: Volume;
  let readOnlyVolume: Volume;
  let strictVolume: Volume;
  let server: NbdServer;
  let tcp: Endpoint;
  let unix: Endpoint;

  before(async () => {
    directory = fs.mkdtempSync(path.join(os.tmpdir(), 'bm-nbd-42-'));
    socketPath = path.join(directory, 'nbd.sock');
    volume = Volume.create({ capacityBytes: 16 * MiB });
    volume.createBitmap('b1', { granularityBytes: 65536, recording: true });
    readOnlyVolume = Volume.create({ capacityBytes: 1 * MiB });
    readOnlyVolume.write(0, Buffer.from('read-only data'));
    strictVolume = Volume.create({ capacityBytes: 4 * MiB, blockSize: 4096, strict: true });
    server = new NbdServer({
      exports: [
        { name: 'vol0', volume, description: 'the main test volume' },
        { name: 'ro', volume: readOnlyVolume, readOnly: true },
        { name: 'strict', volume: strictVolume },
      ],
      listen: [{ host: '127.0.0.1', port: 0 }, { path: socketPath }],
    });
    await server.listen();
    const tcpAddress = server.addresses().find((address) => address.transport === 'tcp');
    assert.ok(tcpAddress?.port !== undefined);
    tcp = { host: '127.0.0.1', port: tcpAddress.port };
    unix = { path: socketPath };
  });

  after(async () => {
    await server?.close();
    await Promise.all([volume?.close(), readOnlyVolume?.close(), strictVolume?.close()]);
    fs.rmSync(directory, { recursive: true, force: true });
  });

  it('lists one URI per listener and export', () => {
    const uris = server.addresses().map((address) => address.uri);
    assert.ok(uris.includes(`nbd://127.0.0.1:${(tcp as { port: number }).port}/vol0`));
    assert.ok(uris.includes(`nbd+unix:///vol0?socket=${socketPath}`));
    assert.equal(uris.length, 6);
  });

  it('negotiates NBD_OPT_GO with export info and block sizes', async () => {
    const client = await NbdTestClient.open(tcp, { exportName: 'vol0', structured: true });
    const result = client.handshakeResult;
    assert.equal(result.sizeBytes, 16 * MiB);
    const flags = result.transmissionFlags;
    for (const flag of [P.NBD_FLAG_HAS_FLAGS, P.NBD_FLAG_SEND_FLUSH, P.NBD_FLAG_SEND_FUA, P.NBD_FLAG_SEND_TRIM, P.NBD_FLAG_SEND_WRITE_ZEROES, P.NBD_FLAG_SEND_FAST_ZERO, P.NBD_FLAG_CAN_MULTI_CONN, P.NBD_FLAG_SEND_DF]) {
      assert.ok((flags & flag) !== 0, `flag 0x${flag.toString(16)} missing`);
    }
    assert.equal(flags & P.NBD_FLAG_READ_ONLY, 0);
    assert.deepEqual(result.blockSize, { minimum: 1, preferred: 4096, maximum: 32 * MiB });
    await client.disconnect();
  });

  it('serves 2-4 byte writes at odd offsets and reads them back (simple replies)', async () => {
    const client = await NbdTestClient.open(tcp, { exportName: 'vol0' });
    assert.equal(await client.writeData(1001, Buffer.from('ab')), 0);
    assert.equal(await client.writeData(4095, Buffer.from('wxyz')), 0);
    assert.deepEqual(await client.readData(1000, 4), Buffer.from([0, 0x61, 0x62, 0]));
    assert.deepEqual(await client.readData(4095, 4), Buffer.from('wxyz'));
    const check = Buffer.alloc(4);
    volume.read(4095, check);
    assert.deepEqual(check, Buffer.from('wxyz'));
    await client.disconnect();
  });

  it('answers structured reads with data and hole chunks', async () => {
    const client = await NbdTestClient.open(tcp, { exportName: 'vol0', structured: true });
    const base = 8 * MiB;
    const head = pattern(8192, 1);
    const tail = pattern(4096, 2);
    assert.equal(await client.writeData(base, head), 0);
    assert.equal(await client.writeData(base + MiB, tail), 0);
    const reply = await client.request(P.NBD_CMD_READ, 0, base, 2 * MiB);
    assert.equal(reply.error, 0);
    const expected = Buffer.alloc(2 * MiB);
    head.copy(expected, 0);
    tail.copy(expected, MiB);
    assert.ok((reply.data as Buffer).equals(expected));
    assert.ok(reply.chunks.some((chunk) => chunk.type === P.NBD_REPLY_TYPE_OFFSET_HOLE), 'expected a hole chunk');
    // DF: one content chunk with the zeroes present.
    const single = await client.request(P.NBD_CMD_READ, P.NBD_CMD_FLAG_DF, base, 2 * MiB);
    assert.equal(single.chunks.length, 1);
    assert.equal(single.chunks[0]?.type, P.NBD_REPLY_TYPE_OFFSET_DATA);
    assert.ok((single.data as Buffer).equals(expected));
    // Small reads: one data chunk.
    const small = await client.request(P.NBD_CMD_READ, 0, base + 10, 100);
    assert.equal(small.chunks.length, 1);
    assert.ok((small.data as Buffer).equals(head.subarray(10, 110)));
    await client.disconnect();
  });

  it('handles FUA writes, flush, trim and write zeroes', async () => {
    const client = await NbdTestClient.open(tcp, { exportName: 'vol0', structured: true });
    const at = 3 * MiB;
    assert.equal(await client.writeData(at, pattern(65536, 3), P.NBD_CMD_FLAG_FUA), 0);
    assert.equal(await client.flush(), 0);
    assert.equal((await client.request(P.NBD_CMD_WRITE_ZEROES, P.NBD_CMD_FLAG_NO_HOLE, at, 4096)).error, 0);
    assert.equal((await client.request(P.NBD_CMD_WRITE_ZEROES, P.NBD_CMD_FLAG_FAST_ZERO | P.NBD_CMD_FLAG_FUA, at + 4096, 4096)).error, 0);
    assert.equal((await client.request(P.NBD_CMD_TRIM, P.NBD_CMD_FLAG_FUA, at + 8192, 8192)).error, 0);
    assert.equal((await client.request(P.NBD_CMD_CACHE, 0, at, 4096)).error, 0);
    const data = await client.readData(at, 65536);
    assert.ok(data.subarray(0, 8192).every((byte) => byte === 0));
    assert.ok(data.subarray(16384).equals(pattern(65536, 3).subarray(16384)));
    await client.disconnect();
  });

  it('reports base:allocation and blockmirror:dirty:<bitmap> block status', async () => {
    const client = await NbdTestClient.open(tcp, {
      exportName: 'vol0',
      structured: true,
      metaContexts: ['base:allocation', 'blockmirror:dirty:b1', 'blockmirror:dirty:nope'],
    });
    const contexts = client.handshakeResult.contexts;
    assert.deepEqual([...contexts.keys()].sort(), ['base:allocation', 'blockmirror:dirty:b1']);
    const at = 12 * MiB;
    assert.equal(await client.writeData(at + 65536, Buffer.alloc(10, 1)), 0);
    const reply = await client.request(P.NBD_CMD_BLOCK_STATUS, 0, at, MiB);
    assert.equal(reply.error, 0);
    const allocation = blockStatusOf(reply, contexts.get('base:allocation') as number);
    assert.deepEqual(allocation[0], { byteLength: 65536, flags: P.NBD_STATE_HOLE | P.NBD_STATE_ZERO });
    assert.equal(allocation[1]?.flags, 0);
    const dirty = blockStatusOf(reply, contexts.get('blockmirror:dirty:b1') as number);
    assert.deepEqual(dirty.slice(0, 3), [
      { byteLength: 65536, flags: 0 },
      { byteLength: 65536, flags: P.BLOCKMIRROR_STATE_DIRTY },
      { byteLength: MiB - 2 * 65536, flags: 0 },
    ]);
    const one = await client.request(P.NBD_CMD_BLOCK_STATUS, P.NBD_CMD_FLAG_REQ_ONE, at + 65536, 4096);
    assert.deepEqual(blockStatusOf(one, contexts.get('blockmirror:dirty:b1') as number), [{ byteLength: 4096, flags: 1 }]);
    assert.equal(blockStatusOf(one, contexts.get('base:allocation') as number).length, 1);
    await client.disconnect();
  });

  it('lists meta contexts for base: and blockmirror:dirty: queries', async () => {
    const lister = await NbdTestClient.connect(tcp);
    await lister.readGreeting();
    lister.sendClientFlags(3);
    await lister.option(P.NBD_OPT_STRUCTURED_REPLY);
    const names = async (queries: string[]) =>
      (await lister.option(P.NBD_OPT_LIST_META_CONTEXT, P.encodeMetaContextRequestData('vol0', queries)))
        .filter((reply) => reply.type === P.NBD_REP_META_CONTEXT)
        .map((reply) => reply.data.subarray(4).toString());
    assert.deepEqual(await names([]), ['base:allocation', 'blockmirror:dirty:b1']);
    assert.deepEqual(await names(['base:']), ['base:allocation']);
    assert.deepEqual(await names(['blockmirror:dirty:']), ['blockmirror:dirty:b1']);
    assert.deepEqual(await names(['x-other:thing']), []);
    lister.destroy();
  });

  it('answers pipelined requests (replies matched by cookie)', async () => {
    const client = await NbdTestClient.open(tcp, { exportName: 'vol0', structured: true });
    const at = 5 * MiB;
    const writes = Array.from({ length: 64 }, (_, i) => client.writeData(at + i * 4096, pattern(4096, i), i % 8 === 0 ? P.NBD_CMD_FLAG_FUA : 0));
    writes.push(client.flush());
    assert.deepEqual(await Promise.all(writes), new Array(65).fill(0));
    const reads = await Promise.all(Array.from({ length: 64 }, (_, i) => client.readData(at + i * 4096, 4096)));
    reads.forEach((data, i) => assert.ok(data.equals(pattern(4096, i)), `block ${i}`));
    await client.disconnect();
  });

  it('answers many pipelined hole reads and fragmented block status replies in order of cookies', async () => {
    // Alternating 4 KiB data / hole over 4 MiB, recorded by a 4 KiB bitmap: every reply is
    // fragmented, and a batch of them overflows the server's reply arena several times.
    const base = 4 * MiB;
    volume.trim(base, 4 * MiB);
    // Created after the trim (a trim marks recording bitmaps like a write).
    volume.createBitmap('frag', { granularityBytes: 4096 });
    for (let block = 0; block < 1024; block += 2) volume.write(base + block * 4096, pattern(4096, block));
    const client = await NbdTestClient.open(tcp, { exportName: 'vol0', structured: true, metaContexts: ['base:allocation', 'blockmirror:dirty:frag'] });
    const contexts = client.handshakeResult.contexts;
    const reads = Array.from({ length: 40 }, (_, i) => client.request(P.NBD_CMD_READ, 0, base + i * 98304, 98304));
    const statuses = Array.from({ length: 40 }, () => client.request(P.NBD_CMD_BLOCK_STATUS, 0, base, 4 * MiB));
    const [readReplies, statusReplies] = await Promise.all([Promise.all(reads), Promise.all(statuses)]);
    readReplies.forEach((reply, i) => {
      const expected = Buffer.alloc(98304);
      for (let j = 0; j < 24; j++) {
        const block = i * 24 + j;
        if (block % 2 === 0) pattern(4096, block).copy(expected, j * 4096);
      }
      assert.ok((reply.data as Buffer).equals(expected), `read ${i}`);
      assert.ok(reply.chunks.some((chunk) => chunk.type === P.NBD_REPLY_TYPE_OFFSET_HOLE));
    });
    for (const reply of statusReplies) {
      const allocation = blockStatusOf(reply, contexts.get('base:allocation') as number);
      const dirty = blockStatusOf(reply, contexts.get('blockmirror:dirty:frag') as number);
      assert.equal(allocation.length, 1024);
      assert.equal(dirty.length, 1024);
      allocation.forEach((extent, i) => assert.deepEqual(extent, { byteLength: 4096, flags: i % 2 === 0 ? 0 : 3 }));
      dirty.forEach((extent, i) => assert.deepEqual(extent, { byteLength: 4096, flags: i % 2 === 0 ? 1 : 0 }));
    }
    await client.disconnect();
    volume.deleteBitmap('frag');
  });

  it('moves 1 MiB payloads split across TCP segments', async () => {
    const client = await NbdTestClient.open(tcp, { exportName: 'vol0' });
    const data = pattern(MiB, 9);
    assert.equal(await client.writeData(MiB, data), 0);
    assert.ok((await client.readData(MiB, MiB)).equals(data));
    await client.disconnect();
  });

  it('shares writes and flushes across connections (multi-conn)', async () => {
    const a = await NbdTestClient.open(tcp, { exportName: 'vol0' });
    const b = await NbdTestClient.open(unix, { exportName: 'vol0', structured: true });
    assert.ok((b.handshakeResult.transmissionFlags & P.NBD_FLAG_CAN_MULTI_CONN) !== 0);
    assert.equal(await a.writeData(7 * MiB, Buffer.from('multi')), 0);
    assert.equal(await b.flush(), 0);
    assert.deepEqual(await b.readData(7 * MiB, 5), Buffer.from('multi'));
    await Promise.all([a.disconnect(), b.disconnect()]);
  });

  it('supports NBD_OPT_EXPORT_NAME with and without NO_ZEROES, and the default export', async () => {
    const short = await NbdTestClient.open(tcp, { exportName: 'ro', exportNameOption: true });
    assert.equal(short.handshakeResult.sizeBytes, MiB);
    assert.deepEqual(await short.readData(0, 14), Buffer.from('read-only data'));
    await short.disconnect();
    const long = await NbdTestClient.connect(tcp);
    await long.readGreeting();
    long.sendClientFlags(P.NBD_FLAG_C_FIXED_NEWSTYLE);
    long.sendOption(P.NBD_OPT_EXPORT_NAME, Buffer.from('ro'));
    const reply = await long.read(134);
    assert.equal(Number(reply.readBigUInt64BE(0)), MiB);
    assert.ok(reply.subarray(10).every((byte) => byte === 0));
    await long.disconnect();
    const fallback = await NbdTestClient.open(tcp, { exportName: '' });
    assert.equal(fallback.handshakeResult.sizeBytes, 16 * MiB);
    const name = fallback.handshakeResult.infos.find((info) => info.readUInt16BE(0) === P.NBD_INFO_NAME);
    assert.equal(name?.subarray(2).toString(), 'vol0');
    await fallback.disconnect();
  });

  it('advertises and enforces a strict volume block size', async () => {
    const client = await NbdTestClient.open(tcp, { exportName: 'strict', structured: true });
    assert.deepEqual(client.handshakeResult.blockSize, { minimum: 4096, preferred: 4096, maximum: 32 * MiB });
    assert.equal(await client.writeData(4096, pattern(4096, 4)), 0);
    assert.equal((await client.request(P.NBD_CMD_READ, 0, 4097, 4096)).error, P.NBD_EINVAL);
    assert.equal(await client.writeData(100, Buffer.alloc(4096)), P.NBD_EINVAL);
    assert.ok((await client.readData(4096, 4096)).equals(pattern(4096, 4)));
    await client.disconnect();
  });

  it('counts connections, requests and bytes', async () => {
    const before = server.stats();
    const client = await NbdTestClient.open(tcp, { exportName: 'vol0' });
    await client.writeData(0, Buffer.alloc(100));
    await client.readData(0, 50);
    await client.request(P.NBD_CMD_READ, 0, 16 * MiB, 1);
    await client.disconnect();
    const after = server.stats();
    assert.equal(after.totalConnections, before.totalConnections + 1);
    assert.equal(after.requests.write, before.requests.write + 1);
    assert.equal(after.requests.read, before.requests.read + 2);
    assert.equal(after.bytesWritten, before.bytesWritten + 100);
    assert.equal(after.bytesRead, before.bytesRead + 50);
    assert.equal(after.errors, before.errors + 1);
  });

  describe('with nbdinfo', function () {
    before(function () {
      if (!hasTool('nbdinfo')) {
        console.log('      nbdinfo not found: skipping (install libnbd-bin)');
        this.skip();
      }
    });

    it('nbdinfo --json describes the export over TCP', async () => {
      const { stdout } = await run('nbdinfo', ['--json', `nbd://127.0.0.1:${(tcp as { port: number }).port}/vol0`]);
      const info = JSON.parse(stdout);
      const exp = info.exports[0];
      assert.equal(exp['export-name'], 'vol0');
      assert.equal(exp['export-size'], 16 * MiB);
      assert.equal(exp['block_size_minimum'], 1);
      assert.equal(exp['block_size_preferred'], 4096);
      assert.equal(exp['block_size_maximum'], 32 * MiB);
      assert.equal(exp['can_multi_conn'], true);
      assert.equal(exp['can_flush'], true);
      assert.equal(exp['can_fua'], true);
      assert.equal(exp['can_zero'], true);
      assert.equal(exp['can_fast_zero'], true);
      assert.equal(exp['can_df'], true);
      assert.equal(exp['is_read_only'], false);
      assert.equal(exp['description'], 'the main test volume');
      assert.ok(exp['contexts'].includes('base:allocation'));
      assert.ok(exp['contexts'].includes('blockmirror:dirty:b1'));
    });

    it('nbdinfo --list --json lists every export over the Unix socket', async () => {
      const { stdout } = await run('nbdinfo', ['--list', '--json', `nbd+unix:///?socket=${socketPath}`]);
      const info = JSON.parse(stdout);
      const names = info.exports.map((exp: Record<string, unknown>) => exp['export-name']).sort();
      assert.deepEqual(names, ['ro', 'strict', 'vol0']);
      const ro = info.exports.find((exp: Record<string, unknown>) => exp['export-name'] === 'ro');
      assert.equal(ro['is_read_only'], true);
    });

    it('nbdinfo --map shows base:allocation', async () => {
      const probe = Volume.create({ capacityBytes: 4 * MiB });
      probe.write(MiB, pattern(65536, 5));
      const local = new NbdServer({ exports: [{ name: 'probe', volume: probe }], listen: [{ port: 0 }] });
      await local.listen();
      try {
        const uri = local.addresses()[0]?.uri as string;
        const { stdout } = await run('nbdinfo', ['--map', '--json', uri]);
        const map = JSON.parse(stdout) as { offset: number; length: number; type: number }[];
        assert.deepEqual(
          map.map((e) => [e.offset, e.length, e.type]),
          [
            [0, MiB, 3],
            [MiB, 65536, 0],
            [MiB + 65536, 3 * MiB - 65536, 3],
          ],
        );
      } finally {
        await local.close();
        await probe.close();
      }
    });

    it('nbdinfo --map=blockmirror:dirty:<bitmap> shows the dirty tracks', async () => {
      const probe = Volume.create({ capacityBytes: 4 * MiB });
      probe.createBitmap('backup', { granularityBytes: 65536 });
      probe.write(2 * MiB + 5, Buffer.from('x'));
      const local = new NbdServer({ exports: [{ name: 'probe', volume: probe }], listen: [{ port: 0 }] });
      await local.listen();
      try {
        const uri = local.addresses()[0]?.uri as string;
        const { stdout } = await run('nbdinfo', ['--map=blockmirror:dirty:backup', '--json', uri]);
        const map = JSON.parse(stdout) as { offset: number; length: number; type: number }[];
        assert.deepEqual(
          map.map((e) => [e.offset, e.length, e.type]),
          [
            [0, 2 * MiB, 0],
            [2 * MiB, 65536, 1],
            [2 * MiB + 65536, 2 * MiB - 65536, 0],
          ],
        );
      } finally {
        await local.close();
        await probe.close();
      }
    });
  });

  describe('with qemu-io', function () {
    before(function () {
      if (!hasTool('qemu-io')) {
        console.log('      qemu-io not found: skipping (install qemu-utils)');
        this.skip();
      }
    });

    it('writes and verifies a pattern through qemu-io', async () => {
      const uri = `nbd://127.0.0.1:${(tcp as { port: number }).port}/vol0`;
      const { stdout } = await run('qemu-io', [
        '-f', 'raw',
        '-c', 'write -P 0xab 10M 192k',
        '-c', 'write -z 11M 64k',
        '-c', 'flush',
        '-c', 'read -P 0xab 10M 192k',
        '-c', 'read -P 0 11M 64k',
        uri,
      ]);
      assert.doesNotMatch(stdout, /fail|error|mismatch/i);
      const check = Buffer.alloc(192 * 1024);
      volume.read(10 * MiB, check);
      assert.ok(check.every((byte) => byte === 0xab));
    });
  });

  it('replaces a stale Unix socket file, refuses a live one, and removes its own on close', async () => {
    const stalePath = path.join(directory, 'stale.sock');
    // A listener that dies without cleaning up leaves its socket file behind.
    spawnSync(process.execPath, ['-e', "require('net').createServer().listen(process.argv[1], () => process.kill(process.pid, 'SIGKILL'))", stalePath]);
    assert.ok(fs.lstatSync(stalePath).isSocket());
    const probe = Volume.create({ capacityBytes: MiB });
    const first = new NbdServer({ exports: [{ name: 'p', volume: probe }], listen: [{ path: stalePath }] });
    await first.listen();
    const second = new NbdServer({ exports: [{ name: 'p', volume: probe }], listen: [{ path: stalePath }] });
    await assert.rejects(second.listen(), (error: Error & { code?: string }) => error.code === 'ERR_NBD_LISTEN');
    const client = await NbdTestClient.open({ path: stalePath }, { exportName: 'p' });
    assert.equal(client.handshakeResult.sizeBytes, MiB);
    await client.disconnect();
    await first.close();
    assert.equal(fs.existsSync(stalePath), false);
    await probe.close();
  });

  it('escalates a graceful close that waits on a client into a forced one', async () => {
    const probe = Volume.create({ capacityBytes: MiB });
    const local = new NbdServer({ exports: [{ name: 'p', volume: probe }], listen: [{ port: 0 }], closeTimeoutMs: 60_000 });
    await local.listen();
    const port = local.addresses()[0]?.port as number;
    // A client that keeps its side open after the server's FIN.
    const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    socket.on('error', () => undefined);
    socket.on('data', () => undefined);
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write(Buffer.from([0, 0, 0, 3]));
    socket.write(P.encodeOption(P.NBD_OPT_GO, P.encodeInfoRequestData('p')));
    while (local.stats().connections < 1) await new Promise((resolve) => setTimeout(resolve, 5));
    await new Promise((resolve) => setTimeout(resolve, 20));
    const started = Date.now();
    const graceful = local.close();
    let done = false;
    void graceful.then(() => (done = true));
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(done, false, 'graceful close should wait for the client');
    const forced = local.close({ graceful: false });
    assert.equal(forced, graceful);
    await forced;
    assert.ok(Date.now() - started < 5000);
    socket.destroy();
    await probe.close();
  });

  it('closes gracefully: answers in-flight flushes, then closes sockets', async () => {
    const probe = Volume.create({ capacityBytes: MiB });
    const local = new NbdServer({ exports: [{ name: 'p', volume: probe }], listen: [{ port: 0 }] });
    await local.listen();
    const port = local.addresses()[0]?.port as number;
    const client = await NbdTestClient.open({ port }, { exportName: 'p' });
    const write = client.writeData(0, Buffer.from('last words'), P.NBD_CMD_FLAG_FUA);
    const flush = client.flush();
    // Close once the server has received both (requests still on the wire are not in flight).
    while (local.stats().requests.flush < 1) await new Promise((resolve) => setImmediate(resolve));
    await local.close();
    assert.equal(await write, 0);
    assert.equal(await flush, 0);
    await client.closed();
    const check = Buffer.alloc(10);
    probe.read(0, check);
    assert.deepEqual(check, Buffer.from('last words'));
    assert.equal(local.stats().connections, 0);
    await probe.close();
  });
});

// The receive path (server.ts design note): by default sockets are read into connection-owned
// buffers, large payloads straight into the store (receive.ts); BLOCKMIRROR_NBD_RECEIVE=copy
// keeps the buffers but copies every payload, =stream selects 'data' events. All must cut
// requests the same way whatever the TCP segmentation, under flow control too. 'lanes' is the
// default server, whose plain-volume connections go to native lanes (docs/nbd-native.md); the
// other modes pin the event loop (nativeLanes: false), whose receive path pair exports use.
for (const mode of ['buffers', 'copy', 'stream', 'lanes'] as const) {
  const title = { buffers: 'connection buffers, into the store', copy: 'connection buffers, copied', stream: "'data' events", lanes: 'native lanes' }[mode];
  describe(`42 nbd server: receive path (${title})`, function () {
    this.timeout(60_000);

    const SIZE = 32 * MiB;
    let directory: string;
    let volume: Volume;
    let local: NbdServer;
    let endpoints: Endpoint[];
    let model: Buffer;
    const protocolErrors: string[] = [];

    before(async () => {
      directory = fs.mkdtempSync(path.join(os.tmpdir(), 'bm-nbd-42r-'));
      volume = Volume.create({ capacityBytes: SIZE });
      model = Buffer.alloc(SIZE);
      const saved = process.env.BLOCKMIRROR_NBD_RECEIVE;
      if (mode === 'copy' || mode === 'stream') process.env.BLOCKMIRROR_NBD_RECEIVE = mode;
      else delete process.env.BLOCKMIRROR_NBD_RECEIVE;
      try {
        // A low in-flight limit, so FUA bursts make the connection pause mid-stream.
        local = new NbdServer({
          exports: [{ name: 'v', volume }],
          listen: [{ host: '127.0.0.1', port: 0 }, { path: path.join(directory, 'r.sock') }],
          maxInFlightRequests: 2,
          nativeLanes: mode === 'lanes',
        });
      } finally {
        if (saved === undefined) delete process.env.BLOCKMIRROR_NBD_RECEIVE;
        else process.env.BLOCKMIRROR_NBD_RECEIVE = saved;
      }
      local.on('protocol-error', (event: { error: { code: string } }) => protocolErrors.push(event.error.code));
      await local.listen();
      const port = local.addresses().find((address) => address.transport === 'tcp')?.port as number;
      endpoints = [{ host: '127.0.0.1', port }, { path: path.join(directory, 'r.sock') }];
    });

    after(async () => {
      await local?.close();
      assert.equal(local.stats().connections, 0);
      await volume?.close();
      fs.rmSync(directory, { recursive: true, force: true });
    });

    /** Sends `requests` as raw bytes cut by `cut`, and resolves with every reply's error. */
    async function sendRaw(
      client: NbdTestClient,
      requests: { type: number; flags: number; offset: number; payload?: Buffer; length?: number }[],
      cut: (stream: Buffer) => Buffer[],
    ): Promise<number[]> {
      const encoded: Buffer[] = [];
      const replies: Promise<{ error: number }>[] = [];
      requests.forEach((request, index) => {
        const cookie = BigInt(1000 + index);
        const length = request.payload?.length ?? request.length ?? 0;
        encoded.push(P.encodeRequest(request.type, request.flags, cookie, request.offset, length, request.payload));
        replies.push(client.expectReply(cookie, request.type, length));
        if (request.type === P.NBD_CMD_WRITE && request.payload !== undefined) request.payload.copy(model, request.offset);
      });
      for (const piece of cut(Buffer.concat(encoded))) {
        client.send(piece);
        // Let the piece leave as a segment of its own (the client has Nagle off).
        if (piece.length < 64 * 1024) await new Promise((resolve) => setImmediate(resolve));
      }
      return (await Promise.all(replies)).map((reply) => reply.error);
    }

    async function verify(client: NbdTestClient, offset: number, length: number): Promise<void> {
      for (let at = offset; at < offset + length; at += 4 * MiB) {
        const span = Math.min(4 * MiB, offset + length - at);
        const data = await client.readData(at, span);
        assert.ok(data.equals(model.subarray(at, at + span)), `data differs in [${at}, ${at + span})`);
      }
    }

    it('cuts requests sent in many tiny TCP writes (payloads split anywhere)', async () => {
      for (const endpoint of endpoints) {
        const client = await NbdTestClient.open(endpoint, { exportName: 'v' });
        const base = 'path' in endpoint ? 16 * MiB : 0;
        const requests = [
          { type: P.NBD_CMD_WRITE, flags: 0, offset: base + 3, payload: pattern(MiB + 17, 1) },
          { type: P.NBD_CMD_WRITE, flags: P.NBD_CMD_FLAG_FUA, offset: base + 2 * MiB, payload: pattern(64 * 1024, 2) },
          { type: P.NBD_CMD_WRITE, flags: 0, offset: base + 3 * MiB + 1, payload: pattern(100, 3) },
          { type: P.NBD_CMD_FLUSH, flags: 0, offset: 0, length: 0 },
          { type: P.NBD_CMD_WRITE, flags: 0, offset: base + 3 * MiB + 4096, payload: pattern(40_000, 4) },
        ];
        const sizes = [1, 7, 27, 28, 29, 100, 1500, 4096, 33_000, 3, 70_000];
        let step = 0;
        const errors = await sendRaw(client, requests, (stream) => {
          const pieces: Buffer[] = [];
          for (let at = 0; at < stream.length; step++) {
            const size = sizes[step % sizes.length] as number;
            pieces.push(stream.subarray(at, at + size));
            at += size;
          }
          return pieces;
        });
        assert.deepEqual(errors, requests.map(() => 0));
        await verify(client, base, 4 * MiB);
        await client.disconnect();
      }
    });

    it('cuts one huge burst of pipelined writes, pausing at the in-flight limit', async () => {
      for (const endpoint of endpoints) {
        const client = await NbdTestClient.open(endpoint, { exportName: 'v', structured: true });
        const base = 'path' in endpoint ? 20 * MiB : 4 * MiB;
        const requests: { type: number; flags: number; offset: number; payload?: Buffer; length?: number }[] = [];
        for (let i = 0; i < 4; i++) {
          requests.push({ type: P.NBD_CMD_WRITE, flags: i % 2 === 0 ? P.NBD_CMD_FLAG_FUA : 0, offset: base + i * MiB, payload: pattern(MiB, 10 + i) });
        }
        for (let i = 0; i < 48; i++) {
          // 64 KiB writes at odd offsets, overlapping one another and the 1 MiB ones.
          const flags = i % 3 === 0 ? P.NBD_CMD_FLAG_FUA : 0;
          requests.push({ type: P.NBD_CMD_WRITE, flags, offset: base + ((i * 37_123) % (3 * MiB)), payload: pattern(64 * 1024 + (i % 5), 20 + i) });
          if (i % 8 === 0) requests.push({ type: P.NBD_CMD_FLUSH, flags: 0, offset: 0, length: 0 });
        }
        for (let i = 0; i < 300; i++) {
          requests.push({ type: P.NBD_CMD_WRITE, flags: i % 10 === 0 ? P.NBD_CMD_FLAG_FUA : 0, offset: base + 2 * MiB + i * 4096, payload: pattern(4096, i) });
        }
        const errors = await sendRaw(client, requests, (stream) => [stream]);
        assert.deepEqual(errors, requests.map(() => 0));
        await verify(client, base, 4 * MiB);
        await client.disconnect();
      }
    });

    const intoStore = mode === 'buffers' || mode === 'lanes';
    it(intoStore ? 'received the large payloads above straight into the store' : 'copied every payload', () => {
      const count = local.stats().storeReceivedWrites;
      if (intoStore) assert.ok(count > 0, 'no payload was received into the store');
      else assert.equal(count, 0);
    });

    // A large payload is received straight into the store (src/nbd/receive.ts): a client that
    // vanishes half-way leaves what landed (never acknowledged: NBD allows any content for an
    // unacknowledged write), and nothing outside the request's range changes.
    it('changes nothing outside a large payload whose client vanishes half-way, and never acknowledges it', async () => {
      const received = local.stats().storeReceivedWrites;
      for (const cut of [28 + 40_000, 28 + 700_000]) {
        const before = protocolErrors.length;
        const client = await NbdTestClient.open(endpoints[0] as Endpoint, { exportName: 'v' });
        const bytes = P.encodeRequest(P.NBD_CMD_WRITE, 0, 1n, 28 * MiB, MiB, Buffer.alloc(MiB, 0xff));
        client.send(bytes.subarray(0, cut));
        await new Promise((resolve) => setTimeout(resolve, 30));
        client.destroy();
        while (protocolErrors.length === before) await new Promise((resolve) => setTimeout(resolve, 5));
        assert.equal(protocolErrors[protocolErrors.length - 1], 'ERR_NBD_TRUNCATED');
      }
      const check = Buffer.alloc(MiB + 2 * 4096);
      volume.read(28 * MiB - 4096, check);
      assert.ok(check.subarray(0, 4096).equals(Buffer.alloc(4096)), 'bytes before the range changed');
      assert.ok(check.subarray(4096 + MiB).equals(Buffer.alloc(4096)), 'bytes after the range changed');
      assert.ok(check.subarray(4096, 4096 + MiB).every((byte) => byte === 0 || byte === 0xff), 'bytes that are neither old nor new');
      while (local.stats().connections > 0) await new Promise((resolve) => setTimeout(resolve, 5));
      // Neither torn payload was committed as a write (the counter counts handled requests only).
      assert.equal(local.stats().storeReceivedWrites, received);
      if (!intoStore) assert.ok(check.subarray(4096, 4096 + MiB).equals(Buffer.alloc(MiB)), 'a copied partial payload was stored');
    });
  });
}
