// Bad input against the NBD server: malformed handshakes, unknown and malformed options, bad
// magic, out-of-range, oversized, misflagged and unknown requests, writes to a read-only export,
// clients that vanish mid-handshake or mid-payload. Each gets the spec's answer or a closed
// connection; the server survives; a well-behaved client running beside them all the time sees
// correct data; rejected requests change nothing stored.

import { strict as assert } from 'node:assert';
import * as net from 'node:net';

import type { BlockmirrorError } from '../../src/errors';
import * as P from '../../src/nbd/protocol';
import { NbdServer, type NbdProtocolErrorEvent } from '../../src/nbd/server';
import { Volume } from '../../src/storage/volume';
import { NbdTestClient, type Endpoint } from '../helpers/nbd-client';

const MiB = 1024 * 1024;
const SIZE = 4 * MiB;
const MAX_PAYLOAD = 64 * 1024;

function pattern(byteLength: number, seed: number): Buffer {
  const bytes = Buffer.allocUnsafe(byteLength);
  for (let i = 0; i < byteLength; i++) bytes[i] = (i * 13 + seed * 101 + (i >> 9)) & 0xff;
  return bytes;
}

/** A client that writes and verifies its own region in a loop until stopped. */
class Bystander {
  private stopped = false;
  private loop: Promise<number> | null = null;
  rounds = 0;

  constructor(
    private readonly client: NbdTestClient,
    private readonly byteOffset: number,
  ) {}

  start(): void {
    this.loop = (async () => {
      while (!this.stopped) {
        const data = pattern(8192, this.rounds);
        assert.equal(await this.client.writeData(this.byteOffset, data, this.rounds % 4 === 0 ? P.NBD_CMD_FLAG_FUA : 0), 0);
        assert.ok((await this.client.readData(this.byteOffset, 8192)).equals(data), 'bystander read back other data');
        this.rounds += 1;
      }
      return this.rounds;
    })();
  }

  async stop(): Promise<number> {
    this.stopped = true;
    return (await this.loop) ?? 0;
  }
}

describe('43 nbd bad input (integration)', function () {
  this.timeout(60_000);

  let volume: Volume;
  let readOnlyVolume: Volume;
  let server: NbdServer;
  let endpoint: Endpoint;
  let bystander: Bystander;
  let bystanderClient: NbdTestClient;
  const protocolErrors: BlockmirrorError[] = [];
  /** Bytes of the guarded region [0, 1 MiB) that no accepted request touches. */
  let guarded: Buffer;

  before(async () => {
    volume = Volume.create({ capacityBytes: SIZE });
    guarded = pattern(MiB, 77);
    volume.write(0, guarded);
    readOnlyVolume = Volume.create({ capacityBytes: MiB });
    readOnlyVolume.write(0, pattern(MiB, 5));
    server = new NbdServer({
      exports: [
        { name: 'vol', volume },
        { name: 'ro', volume: readOnlyVolume, readOnly: true },
      ],
      listen: [{ port: 0 }],
      maxPayloadBytes: MAX_PAYLOAD,
      maxDiscardBytes: 2 * MAX_PAYLOAD,
      handshakeTimeoutMs: 2000,
      maxOptionBytes: 4096,
      maxInFlightRequests: 4,
      maxConnections: 20,
    });
    server.on('protocol-error', (event: NbdProtocolErrorEvent) => protocolErrors.push(event.error));
    await server.listen();
    endpoint = { port: server.addresses()[0]?.port as number };
    bystanderClient = await NbdTestClient.open(endpoint, { exportName: 'vol', structured: true });
    bystander = new Bystander(bystanderClient, 3 * MiB);
    bystander.start();
  });

  after(async () => {
    const rounds = await bystander?.stop();
    assert.ok(rounds > 0, 'the bystander made no progress');
    await bystanderClient?.disconnect();
    await server?.close();
    await Promise.all([volume?.close(), readOnlyVolume?.close()]);
  });

  afterEach(async () => {
    // Nothing a rejected request did reached the guarded region, and the server still serves.
    const check = Buffer.alloc(MiB);
    volume.read(0, check);
    assert.ok(check.equals(guarded), 'guarded region changed');
    const probe = await NbdTestClient.open(endpoint, { exportName: 'vol' });
    assert.ok((await probe.readData(0, 4096)).equals(guarded.subarray(0, 4096)));
    await probe.disconnect();
  });

  async function expectClosed(client: NbdTestClient): Promise<void> {
    await client.closed();
    assert.ok(client.isClosed);
  }

  function lastProtocolError(): string | undefined {
    return protocolErrors[protocolErrors.length - 1]?.code;
  }

  // --- handshake -----------------------------------------------------------------------------

  it('closes on unknown client flags', async () => {
    const client = await NbdTestClient.connect(endpoint);
    await client.readGreeting();
    client.sendClientFlags(0x80);
    await expectClosed(client);
    assert.equal(lastProtocolError(), 'ERR_NBD_BAD_CLIENT_FLAGS');
  });

  it('closes on a bad option magic', async () => {
    const client = await NbdTestClient.connect(endpoint);
    await client.readGreeting();
    client.sendClientFlags(3);
    client.send(Buffer.from('IHAVEOPX\0\0\0\x03\0\0\0\0', 'latin1'));
    await expectClosed(client);
    assert.equal(lastProtocolError(), 'ERR_NBD_BAD_MAGIC');
  });

  it('closes on option data above the limit', async () => {
    const client = await NbdTestClient.connect(endpoint);
    await client.readGreeting();
    client.sendClientFlags(3);
    const header = P.encodeOption(P.NBD_OPT_GO).subarray(0, 12);
    const length = Buffer.alloc(4);
    length.writeUInt32BE(0xffffffff, 0);
    client.send(Buffer.concat([header, length]));
    await expectClosed(client);
    assert.equal(lastProtocolError(), 'ERR_NBD_OPTION_TOO_LARGE');
  });

  it('closes when a client without FIXED_NEWSTYLE sends another option than EXPORT_NAME', async () => {
    const client = await NbdTestClient.connect(endpoint);
    await client.readGreeting();
    client.sendClientFlags(0);
    client.sendOption(P.NBD_OPT_LIST);
    await expectClosed(client);
    assert.equal(lastProtocolError(), 'ERR_NBD_NOT_FIXED_NEWSTYLE');
  });

  it('answers unknown and malformed options with errors and then still negotiates', async () => {
    const client = await NbdTestClient.connect(endpoint);
    await client.readGreeting();
    client.sendClientFlags(3);
    const expectReply = async (option: number, data: Uint8Array | undefined, type: number) => {
      const replies = await client.option(option, data);
      assert.equal(replies.length, 1);
      assert.equal(replies[0]?.type, type, `option ${option}: reply 0x${replies[0]?.type.toString(16)}`);
      assert.equal(replies[0]?.option, option);
    };
    await expectReply(0xdeadbeef, Buffer.from('junk'), P.NBD_REP_ERR_UNSUP);
    await expectReply(P.NBD_OPT_STARTTLS, undefined, P.NBD_REP_ERR_UNSUP);
    await expectReply(P.NBD_OPT_EXTENDED_HEADERS, undefined, P.NBD_REP_ERR_UNSUP);
    await expectReply(P.NBD_OPT_LIST, Buffer.from('x'), P.NBD_REP_ERR_INVALID);
    await expectReply(P.NBD_OPT_STRUCTURED_REPLY, Buffer.from('x'), P.NBD_REP_ERR_INVALID);
    await expectReply(P.NBD_OPT_GO, Buffer.from([0, 0, 0, 9, 0x61, 0, 0]), P.NBD_REP_ERR_INVALID);
    await expectReply(P.NBD_OPT_INFO, Buffer.from([0, 0]), P.NBD_REP_ERR_INVALID);
    await expectReply(P.NBD_OPT_GO, P.encodeInfoRequestData('nope'), P.NBD_REP_ERR_UNKNOWN);
    await expectReply(P.NBD_OPT_SET_META_CONTEXT, P.encodeMetaContextRequestData('vol', ['base:allocation']), P.NBD_REP_ERR_INVALID);
    await expectReply(P.NBD_OPT_STRUCTURED_REPLY, undefined, P.NBD_REP_ACK);
    await expectReply(P.NBD_OPT_SET_META_CONTEXT, P.encodeMetaContextRequestData('vol', ['nocolon']), P.NBD_REP_ERR_INVALID);
    await expectReply(P.NBD_OPT_LIST_META_CONTEXT, P.encodeMetaContextRequestData('nope', []), P.NBD_REP_ERR_UNKNOWN);
    await client.option(P.NBD_OPT_GO, P.encodeInfoRequestData('vol'));
    assert.ok((await client.readData(0, 16)).equals(guarded.subarray(0, 16)));
    await client.disconnect();
  });

  it('closes on NBD_OPT_EXPORT_NAME for an unknown export', async () => {
    const client = await NbdTestClient.connect(endpoint);
    await client.readGreeting();
    client.sendClientFlags(3);
    client.sendOption(P.NBD_OPT_EXPORT_NAME, Buffer.from('nope'));
    await expectClosed(client);
    assert.equal(lastProtocolError(), 'ERR_NBD_UNKNOWN_EXPORT');
  });

  it('acknowledges NBD_OPT_ABORT and closes', async () => {
    const client = await NbdTestClient.connect(endpoint);
    await client.readGreeting();
    client.sendClientFlags(3);
    const [ack] = await client.option(P.NBD_OPT_ABORT);
    assert.equal(ack?.type, P.NBD_REP_ACK);
    await expectClosed(client);
  });

  it('survives clients that vanish mid-handshake', async () => {
    for (const cut of [0, 5, 18, 22, 30]) {
      const socket = net.connect(endpoint as { port: number });
      await new Promise((resolve) => socket.once('connect', resolve));
      const bytes = Buffer.concat([Buffer.from([0, 0, 0, 3]), P.encodeOption(P.NBD_OPT_GO, P.encodeInfoRequestData('vol'))]);
      socket.write(bytes.subarray(0, cut));
      socket.destroy();
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  });

  it('ends a handshake that takes too long', async () => {
    const client = await NbdTestClient.connect(endpoint);
    await client.readGreeting();
    const started = Date.now();
    await expectClosed(client);
    assert.ok(Date.now() - started >= 1500, 'closed before the handshake timeout');
    assert.equal(lastProtocolError(), 'ERR_NBD_HANDSHAKE_TIMEOUT');
  });

  // --- transmission --------------------------------------------------------------------------

  it('closes on a bad request magic and leaves the data alone', async () => {
    const client = await NbdTestClient.open(endpoint, { exportName: 'vol' });
    const bytes = P.encodeRequest(P.NBD_CMD_WRITE, 0, 1n, 0, 16, Buffer.alloc(16, 0xff));
    bytes.writeUInt32BE(0x25609514, 0);
    client.send(bytes);
    await expectClosed(client);
    assert.equal(lastProtocolError(), 'ERR_NBD_BAD_MAGIC');
  });

  it('answers out-of-range requests: ENOSPC for writes, EINVAL otherwise', async () => {
    for (const structured of [false, true]) {
      const client = await NbdTestClient.open(endpoint, { exportName: 'vol', structured, metaContexts: structured ? ['base:allocation'] : undefined });
      assert.equal((await client.request(P.NBD_CMD_WRITE, 0, SIZE - 2, 4, Buffer.alloc(4, 1))).error, P.NBD_ENOSPC);
      assert.equal((await client.request(P.NBD_CMD_WRITE_ZEROES, 0, SIZE, 1)).error, P.NBD_ENOSPC);
      assert.equal((await client.request(P.NBD_CMD_READ, 0, SIZE - 1, 2)).error, P.NBD_EINVAL);
      assert.equal((await client.request(P.NBD_CMD_TRIM, 0, 2n ** 64n - 1n, 1)).error, P.NBD_EINVAL);
      assert.equal((await client.request(P.NBD_CMD_CACHE, 0, SIZE, 1)).error, P.NBD_EINVAL);
      if (structured) {
        const reply = await client.request(P.NBD_CMD_BLOCK_STATUS, 0, SIZE, 1);
        assert.equal(reply.error, P.NBD_EINVAL);
        assert.ok(reply.messages[0]?.includes('beyond'));
      }
      const check = Buffer.alloc(4);
      volume.read(SIZE - 4, check);
      assert.ok(check.every((byte) => byte === 0), 'out-of-range write stored something');
      await client.disconnect();
    }
  });

  it('answers unknown commands and flags with EINVAL', async () => {
    const client = await NbdTestClient.open(endpoint, { exportName: 'vol', structured: true });
    assert.equal((await client.request(9, 0, 0, 1)).error, P.NBD_EINVAL);
    assert.equal((await client.request(0xffff, 0, 0, 0)).error, P.NBD_EINVAL);
    assert.equal((await client.request(P.NBD_CMD_READ, 1 << 7, 0, 16)).error, P.NBD_EINVAL);
    assert.equal((await client.request(P.NBD_CMD_WRITE, P.NBD_CMD_FLAG_REQ_ONE, 0, 16, Buffer.alloc(16, 0xff))).error, P.NBD_EINVAL);
    assert.equal((await client.request(P.NBD_CMD_FLUSH, 0, 512, 0)).error, P.NBD_EINVAL);
    assert.equal((await client.request(P.NBD_CMD_BLOCK_STATUS, 0, 0, 512)).error, P.NBD_EINVAL, 'no context selected');
    assert.equal((await client.request(P.NBD_CMD_READ, 0, 0, 0)).error, P.NBD_EINVAL);
    assert.equal((await client.request(P.NBD_CMD_WRITE, 0, 0, 0)).error, P.NBD_EINVAL);
    await client.disconnect();
  });

  it('refuses writes to a read-only export with EPERM and changes nothing', async () => {
    const client = await NbdTestClient.open(endpoint, { exportName: 'ro', structured: true });
    assert.ok((client.handshakeResult.transmissionFlags & P.NBD_FLAG_READ_ONLY) !== 0);
    assert.equal((await client.request(P.NBD_CMD_WRITE, 0, 0, 16, Buffer.alloc(16))).error, P.NBD_EPERM);
    assert.equal((await client.request(P.NBD_CMD_TRIM, 0, 0, 4096)).error, P.NBD_EPERM);
    assert.equal((await client.request(P.NBD_CMD_WRITE_ZEROES, 0, 0, 4096)).error, P.NBD_EPERM);
    assert.equal(await client.flush(), 0);
    assert.ok((await client.readData(0, 4096)).equals(pattern(MiB, 5).subarray(0, 4096)));
    const check = Buffer.alloc(MiB);
    readOnlyVolume.read(0, check);
    assert.ok(check.equals(pattern(MiB, 5)));
    await client.disconnect();
  });

  it('answers oversized requests: EINVAL, discarding a write payload up to the limit', async () => {
    const client = await NbdTestClient.open(endpoint, { exportName: 'vol', structured: true });
    assert.equal((await client.request(P.NBD_CMD_READ, 0, 0, MAX_PAYLOAD + 1)).error, P.NBD_EINVAL);
    assert.equal((await client.request(P.NBD_CMD_WRITE, 0, 0, MAX_PAYLOAD + 1, Buffer.alloc(MAX_PAYLOAD + 1, 0xff))).error, P.NBD_EINVAL);
    // The stream stayed in step: the next request works.
    assert.ok((await client.readData(0, 16)).equals(guarded.subarray(0, 16)));
    // A payload too long even to discard closes the connection (after an EINVAL reply).
    const header = P.encodeRequest(P.NBD_CMD_WRITE, 0, 99n, 0, 2 * MAX_PAYLOAD + 1);
    const reply = client.expectReply(99n, P.NBD_CMD_WRITE, 0);
    client.send(header);
    assert.equal((await reply).error, P.NBD_EINVAL);
    await expectClosed(client);
    assert.equal(lastProtocolError(), 'ERR_NBD_PAYLOAD_TOO_LARGE');
  });

  it('survives clients that vanish mid-payload without storing the partial write', async () => {
    for (const cut of [10, 28, 100, 4000]) {
      const client = await NbdTestClient.open(endpoint, { exportName: 'vol' });
      const bytes = P.encodeRequest(P.NBD_CMD_WRITE, 0, 1n, 4096, 8192, Buffer.alloc(8192, 0xff));
      client.send(bytes.subarray(0, cut));
      await new Promise((resolve) => setTimeout(resolve, 5));
      client.destroy();
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.ok(protocolErrors.some((error) => error.code === 'ERR_NBD_TRUNCATED'));
  });

  it('keeps answering under more pipelined flushes than the in-flight limit', async () => {
    const client = await NbdTestClient.open(endpoint, { exportName: 'vol' });
    const replies = await Promise.all(
      Array.from({ length: 200 }, (_, i) => (i % 2 === 0 ? client.flush() : client.writeData(2 * MiB + i * 512, Buffer.alloc(512, i & 0xff), P.NBD_CMD_FLAG_FUA))),
    );
    assert.ok(replies.every((error) => error === 0));
    await client.disconnect();
  });

  it('refuses connections above maxConnections and serves again below it', async () => {
    const sockets: net.Socket[] = [];
    const open = server.stats().connections;
    for (let i = open; i < 20; i++) {
      const socket = net.connect(endpoint as { port: number });
      socket.on('error', () => undefined);
      sockets.push(socket);
      await new Promise((resolve) => socket.once('connect', resolve));
    }
    while (server.stats().connections < 20) await new Promise((resolve) => setTimeout(resolve, 5));
    const refused = await NbdTestClient.connect(endpoint);
    await expectClosed(refused);
    for (const socket of sockets) socket.destroy();
    while (server.stats().connections > open) await new Promise((resolve) => setTimeout(resolve, 5));
  });

  it('counts protocol errors in stats()', () => {
    assert.ok(server.stats().protocolErrors >= protocolErrors.length);
    assert.ok(server.stats().errors > 0);
  });
});
