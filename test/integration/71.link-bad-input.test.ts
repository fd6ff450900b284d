// Bad input on a controller's replication port, from raw sockets, while two serve processes keep
// a link up between them: garbage, a huge length, a bad CRC, an HTTP request, a handshake that
// never ends, many half-open connections, a flood that never reads. The controller stays up, its
// listener counts each refusal, and the established link is never touched (no reconnect, and
// messages keep flowing: the heartbeats' RTT keeps being measured).
import * as assert from 'node:assert/strict';
import * as net from 'node:net';

import { crc32c } from '../../src/storage/crc32c';
import { FRAME_HEADER_BYTES, FRAME_MAGIC, FRAME_VERSION, FrameEncoder, FrameType } from '../../src/transport/frame';
import { Site, twoPorts } from '../helpers/link-pair';
import { makeTempDir, removeTempDir, waitFor } from '../helpers/tools';

/** Connects, writes `bytes`, and resolves with what the server sent and how the socket ended. */
function exchange(port: number, bytes: Buffer, waitMs = 3000): Promise<{ received: Buffer; closedBy: 'server' | 'timeout' }> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ received: Buffer.concat(chunks), closedBy: 'timeout' });
    }, waitMs);
    socket.on('connect', () => socket.write(bytes));
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ received: Buffer.concat(chunks), closedBy: 'server' });
    });
  });
}

function header(type: number, payloadLength: number, sequence = 1): Buffer {
  const bytes = Buffer.alloc(FRAME_HEADER_BYTES);
  bytes.writeUInt32BE(FRAME_MAGIC, 0);
  bytes.writeUInt8(FRAME_VERSION, 4);
  bytes.writeUInt8(type, 5);
  bytes.writeUInt32BE(sequence, 12);
  bytes.writeUInt32BE(payloadLength, 20);
  return bytes;
}

describe('71 bad input on the replication port', function () {
  this.timeout(90_000);
  let directory: string;
  let a: Site;
  let b: Site;
  let portB: number;

  before(async () => {
    directory = makeTempDir('bm-link-bad-');
    const [portA, port] = await twoPorts();
    portB = port;
    b = await Site.start({ id: 'site-b', replicationPort: portB, directory, peers: [{ id: 'site-a', port: portA }],
      replication: { maxPendingConnections: 8, handshakeTimeoutMs: 1000 } });
    a = await Site.start({ id: 'site-a', replicationPort: portA, directory, peers: [{ id: 'site-b', port: portB }] });
    await a.linkState('site-b', 'up');
    await b.linkState('site-a', 'up');
  });

  after(async () => {
    await a?.serve.kill();
    await b?.serve.kill();
    removeTempDir(directory);
  });

  /** The log line arrives through a pipe after the socket closed: wait for it. */
  async function logged(pattern: RegExp): Promise<void> {
    await waitFor(() => pattern.test(b.serve.stderrText), `site-b to log ${pattern}`, 5000);
  }

  async function listenerStats(): Promise<Record<string, number>> {
    const status = await b.admin.get('/status') as { controllers: { replication: { listener: Record<string, number> } }[] };
    return status.controllers[0]?.replication.listener as Record<string, number>;
  }

  async function assertLinkUntouched(): Promise<void> {
    const linkA = await a.link('site-b');
    const linkB = await b.link('site-a');
    assert.equal(linkA.state, 'up');
    assert.equal(linkB.state, 'up');
    assert.equal(linkA.reconnects, 0);
    assert.equal(linkB.reconnects, 0);
    assert.equal(b.serve.child.exitCode, null, 'site-b exited');
  }

  it('closes a connection that sends garbage, and the link stays up', async () => {
    const before = await listenerStats();
    const result = await exchange(portB, Buffer.from('this is not a link frame at all, just garbage bytes\n'.repeat(4)));
    assert.equal(result.closedBy, 'server');
    assert.equal(result.received.length, 0, 'nothing is answered to garbage');
    await waitFor(async () => (await listenerStats()).protocolErrors === (before.protocolErrors ?? 0) + 1,
      'one more protocol error counted', 5000);
    await logged(/ERR_LINK_BAD_MAGIC/);
    await assertLinkUntouched();
  });

  it('closes on a huge length before reading any payload', async () => {
    const result = await exchange(portB, header(FrameType.HELLO, 0xffffffff - FRAME_HEADER_BYTES));
    assert.equal(result.closedBy, 'server');
    await logged(/ERR_LINK_FRAME_TOO_LARGE/);
    // A length above the pre-handshake limit (64 KiB) but below maxFrameBytes is refused too.
    const medium = await exchange(portB, header(FrameType.HELLO, 1024 * 1024));
    assert.equal(medium.closedBy, 'server');
    await assertLinkUntouched();
  });

  it('closes on a bad CRC', async () => {
    const { chunks } = new FrameEncoder().encode(FrameType.HELLO, Buffer.from('a payload'));
    const frame = Buffer.concat(chunks);
    frame[frame.length - 1] = (frame[frame.length - 1] as number) ^ 0xff;
    const result = await exchange(portB, frame);
    assert.equal(result.closedBy, 'server');
    await logged(/ERR_LINK_CHECKSUM/);
    await assertLinkUntouched();
  });

  it('closes on a well-framed HELLO with a malformed payload, and on a frame other than HELLO', async () => {
    const hello = Buffer.concat(new FrameEncoder().encode(FrameType.HELLO, Buffer.from([0, 1])).chunks);
    assert.equal((await exchange(portB, hello)).closedBy, 'server');
    await logged(/ERR_LINK_BAD_MESSAGE/);
    const ping = Buffer.concat(new FrameEncoder().encode(FrameType.PING, Buffer.alloc(8)).chunks);
    assert.equal((await exchange(portB, ping)).closedBy, 'server');
    await logged(/expected HELLO/);
    // A sequence that does not start at 1.
    const gap = header(FrameType.HELLO, 0, 7);
    gap.writeUInt32BE(crc32c(gap.subarray(0, 24)), 24);
    assert.equal((await exchange(portB, gap)).closedBy, 'server');
    await logged(/ERR_LINK_SEQUENCE_GAP/);
    await assertLinkUntouched();
  });

  it('closes an HTTP request', async () => {
    const result = await exchange(portB, Buffer.from('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'));
    assert.equal(result.closedBy, 'server');
    assert.ok(!result.received.toString('latin1').startsWith('HTTP/'), 'the replication port is not HTTP');
    await assertLinkUntouched();
  });

  it('drops a handshake that never ends, after handshakeTimeoutMs', async () => {
    const before = await listenerStats();
    const started = Date.now();
    const result = await exchange(portB, Buffer.alloc(0), 5000);
    const elapsedMs = Date.now() - started;
    assert.equal(result.closedBy, 'server');
    assert.ok(elapsedMs >= 900 && elapsedMs < 4000, `closed after ${elapsedMs} ms (timeout 1000)`);
    await waitFor(async () => (await listenerStats()).timedOut === (before.timedOut ?? 0) + 1, 'one more timeout counted', 5000);
    await assertLinkUntouched();
  });

  it('closes half-open connections past maxPendingConnections at once, and the rest at the timeout', async () => {
    const before = await listenerStats();
    const sockets: net.Socket[] = [];
    const closes: Promise<number>[] = [];
    const started = Date.now();
    for (let index = 0; index < 40; index++) {
      const socket = net.connect({ host: '127.0.0.1', port: portB });
      socket.on('error', () => undefined);
      closes.push(new Promise((resolve) => socket.on('close', () => resolve(Date.now() - started))));
      sockets.push(socket);
    }
    const closedAfterMs = await Promise.all(closes);
    const early = closedAfterMs.filter((ms) => ms < 800).length;
    assert.ok(early >= 32, `${early} of 40 closed at once (8 may wait for the timeout)`);
    const after = await listenerStats();
    assert.ok((after.overLimit ?? 0) - (before.overLimit ?? 0) >= 32, JSON.stringify(after));
    await logged(/ERR_LINK_TOO_MANY_CONNECTIONS/);
    await assertLinkUntouched();
  });

  it('survives a flood from a client that never reads, and a flood of random bytes in many chunks', async () => {
    const socket = net.connect({ host: '127.0.0.1', port: portB });
    socket.on('error', () => undefined);
    await new Promise<void>((resolve) => socket.on('connect', () => resolve()));
    socket.pause();
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    // A valid header start, then megabytes of noise: refused at the header, closed.
    socket.write(header(FrameType.HELLO, 60 * 1024));
    const noise = Buffer.alloc(1024 * 1024, 0x5a);
    for (let index = 0; index < 16 && !socket.destroyed; index++) socket.write(noise);
    await closed;
    let seed = 12345;
    for (let round = 0; round < 20; round++) {
      const bytes = Buffer.alloc(1 + (round * 97) % 3000);
      for (let index = 0; index < bytes.length; index++) {
        seed = (seed * 1103515245 + 12345) >>> 0;
        bytes[index] = seed >>> 24;
      }
      const result = await exchange(portB, bytes, 3000);
      assert.equal(result.closedBy, 'server');
    }
    await assertLinkUntouched();
    // The link still carries heartbeats: its frame counters keep growing.
    const framesBefore = (await a.link('site-b')).framesIn as number;
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.ok(((await a.link('site-b')).framesIn as number) > framesBefore);
  });
});
