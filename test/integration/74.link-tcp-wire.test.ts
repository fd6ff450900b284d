// The TCP wire's steered reads over real loopback sockets (tcp.ts): the kernel reads straight into
// the target a handler names, on the dialing side (net.connect's onread) and on the accepting
// side (the accepted handle moved into a steered socket); bytes that arrive before attach() are
// handed over at attach, in order; and framed connections carry large and small frames, split
// however TCP splits them, intact in both directions.
import * as assert from 'node:assert/strict';

import { realClock } from '../../src/runtime/clock';
import { realRandom } from '../../src/runtime/random';
import { Connection } from '../../src/transport/connection';
import { MessageType } from '../../src/transport/message-types';
import { MAX_EARLY_BYTES, tcpNetwork } from '../../src/transport/tcp';
import type { NetworkListener, Wire } from '../../src/transport/wire';

function patterned(byteLength: number, seed: number): Buffer {
  const bytes = Buffer.allocUnsafe(byteLength);
  for (let index = 0; index < byteLength; index++) bytes[index] = (index * 13 + seed * 101 + (index >> 10)) & 0xff;
  return bytes;
}

/** A listener and a dialed wire to it, with the accepted wire. */
async function wirePair(): Promise<{ listener: NetworkListener; dialed: Wire; accepted: Wire }> {
  let onAccepted: (wire: Wire) => void = () => undefined;
  const acceptedWire = new Promise<Wire>((resolve) => {
    onAccepted = resolve;
  });
  const listener = await tcpNetwork.listen({ host: '127.0.0.1', port: 0 }, (wire) => onAccepted(wire));
  const dialed = await new Promise<Wire>((resolve, reject) => {
    tcpNetwork.dial(listener.address, 5000, (error, wire) => (error === undefined && wire !== undefined ? resolve(wire) : reject(new Error(error))));
  });
  return { listener, dialed, accepted: await acceptedWire };
}

/**
 * Attaches a receiver to `wire` that offers `target` (its unfilled rest) for every read and
 * resolves once `byteLength` bytes arrived, with how many came in place.
 */
function receiveInto(wire: Wire, target: Buffer): Promise<{ inPlaceBytes: number; received: Buffer }> {
  return new Promise((resolve, reject) => {
    let fill = 0;
    let inPlaceBytes = 0;
    wire.attach({
      readTarget: () => (fill < target.length ? target.subarray(fill) : undefined),
      data: (chunk) => {
        if (chunk.buffer === target.buffer && chunk.byteOffset === target.byteOffset + fill) {
          inPlaceBytes += chunk.length;
        } else {
          chunk.copy(target, fill);
        }
        fill += chunk.length;
        if (fill > target.length) reject(new Error(`${fill} bytes for a ${target.length}-byte target`));
        if (fill === target.length) resolve({ inPlaceBytes, received: target });
      },
      drain: () => undefined,
      close: (reason) => reject(new Error(`closed before all bytes arrived: ${reason}`)),
    });
  });
}

describe('74 link TCP wire: steered reads', function () {
  this.timeout(30_000);
  const cleanup: (() => unknown)[] = [];

  afterEach(async () => {
    for (const step of cleanup.splice(0).reverse()) await step();
  });

  for (const direction of ['dialer to acceptor', 'acceptor to dialer'] as const) {
    it(`reads straight into the target the handler names (${direction})`, async () => {
      const { listener, dialed, accepted } = await wirePair();
      cleanup.push(() => listener.close(), () => dialed.destroy(), () => accepted.destroy());
      const [sender, receiver] = direction === 'dialer to acceptor' ? [dialed, accepted] : [accepted, dialed];
      sender.attach({ data: () => undefined, drain: () => undefined, close: () => undefined });
      const bytes = patterned(4 * 1024 * 1024, 1);
      const done = receiveInto(receiver, Buffer.alloc(bytes.length));
      for (let at = 0; at < bytes.length; at += 256 * 1024) sender.write([bytes.subarray(at, at + 256 * 1024)]);
      const { inPlaceBytes, received } = await done;
      assert.ok(received.equals(bytes), 'the bytes arrived intact and in order');
      // Every read after the first has the target: nearly all bytes come in place.
      assert.ok(inPlaceBytes > bytes.length / 2, `only ${inPlaceBytes} of ${bytes.length} bytes were read in place`);
    });
  }

  it('hands bytes that arrived before attach() over at attach, in order (reading stops past MAX_EARLY_BYTES)', async () => {
    const { listener, dialed, accepted } = await wirePair();
    cleanup.push(() => listener.close(), () => dialed.destroy(), () => accepted.destroy());
    accepted.attach({ data: () => undefined, drain: () => undefined, close: () => undefined });
    // More than MAX_EARLY_BYTES: the dialer stops reading until attach, then reads the rest.
    const bytes = patterned(MAX_EARLY_BYTES * 8, 2);
    accepted.write([bytes.subarray(0, 1000)]);
    accepted.write([bytes.subarray(1000)]);
    // Let them reach the dialer (which reads from connect on) before it attaches.
    await new Promise((done) => setTimeout(done, 200));
    const chunks: Buffer[] = [];
    await new Promise<void>((resolve, reject) => {
      let total = 0;
      dialed.attach({
        data: (chunk) => {
          chunks.push(Buffer.from(chunk));
          total += chunk.length;
          if (total === bytes.length) resolve();
        },
        drain: () => undefined,
        close: (reason) => reject(new Error(`closed: ${reason}`)),
      });
    });
    assert.ok(Buffer.concat(chunks).equals(bytes));
  });

  it('sends the writes of one tick together, in order, and flushes them at the end of the tick or on end()', async () => {
    const { listener, dialed, accepted } = await wirePair();
    cleanup.push(() => listener.close(), () => dialed.destroy(), () => accepted.destroy());
    dialed.attach({ data: () => undefined, drain: () => undefined, close: () => undefined });
    const received: Buffer[] = [];
    let receivedBytes = 0;
    let onBytes: () => void = () => undefined;
    const closed = new Promise<string>((resolve) => {
      accepted.attach({
        data: (chunk) => {
          received.push(Buffer.from(chunk));
          receivedBytes += chunk.length;
          onBytes();
        },
        drain: () => undefined,
        close: resolve,
      });
    });
    const until = (byteCount: number): Promise<void> => new Promise((resolve) => {
      onBytes = () => {
        if (receivedBytes >= byteCount) resolve();
      };
      onBytes();
    });
    // One small write, alone in its tick: it must still leave at the end of the tick.
    dialed.write([Buffer.from('hello')]);
    await until(5);
    // Many small writes in one tick (more than FLUSH_BYTES in all), then more after an await.
    const expected: Buffer[] = [Buffer.from('hello')];
    for (let index = 0; index < 2000; index++) {
      const chunk = patterned(100 + (index % 50), index);
      expected.push(chunk);
      dialed.write([chunk.subarray(0, 10), chunk.subarray(10)]);
    }
    await new Promise((done) => setImmediate(done));
    // The last writes and end() in the same tick: end() must not leave them corked.
    const last = patterned(3000, 99999);
    expected.push(last);
    dialed.write([last]);
    dialed.end('test');
    assert.equal(await closed, 'closed by peer');
    assert.ok(Buffer.concat(received).equals(Buffer.concat(expected)), 'every byte arrived, in order');
  });

  it('keeps batched bytes intact while the kernel cannot take them (the receiver stopped reading), small and large writes in order', async () => {
    const { listener, dialed, accepted } = await wirePair();
    cleanup.push(() => listener.close(), () => dialed.destroy(), () => accepted.destroy());
    dialed.attach({ data: () => undefined, drain: () => undefined, close: () => undefined });
    const received: Buffer[] = [];
    let receivedBytes = 0;
    let onBytes: () => void = () => undefined;
    accepted.attach({
      data: (chunk) => {
        received.push(Buffer.from(chunk));
        receivedBytes += chunk.length;
        onBytes();
      },
      drain: () => undefined,
      close: () => undefined,
    });
    // After attach's resume has run (it starts the reads a tick later).
    await new Promise((done) => setImmediate(done));
    accepted.pause();
    // Far more than loopback's socket buffers hold: from some tick on every write is pending,
    // and later batches must queue behind the bytes a pending write still refers to.
    const expected: Buffer[] = [];
    let pendingTicks = 0;
    let seed = 0;
    for (let tick = 0; tick < 1000 && pendingTicks < 50; tick++) {
      for (let index = 0; index < 40; index++) {
        const byteLength = index === 39 ? 20_000 + tick : 1 + ((seed * 7919) % 3000);
        const chunk = patterned(byteLength, seed++);
        expected.push(chunk);
        dialed.write(byteLength > 10 ? [chunk.subarray(0, 10), chunk.subarray(10)] : [chunk]);
      }
      await new Promise((done) => setImmediate(done));
      if (dialed.bufferedBytes > 0) pendingTicks++;
    }
    assert.equal(pendingTicks, 50, 'the writes outran the kernel for 50 ticks (the case under test)');
    const total = expected.reduce((sum, chunk) => sum + chunk.length, 0);
    const all = new Promise<void>((resolve) => {
      onBytes = () => {
        if (receivedBytes >= total) resolve();
      };
    });
    accepted.resume();
    await all;
    assert.equal(receivedBytes, total);
    assert.ok(Buffer.concat(received).equals(Buffer.concat(expected)), 'every byte arrived, in order');
  });

  it('runs onWritten once per write, in order, once the kernel has the bytes; for writes still queued at destroy, at the destroy', async () => {
    const { listener, dialed, accepted } = await wirePair();
    cleanup.push(() => listener.close(), () => dialed.destroy(), () => accepted.destroy());
    dialed.attach({ data: () => undefined, drain: () => undefined, close: () => undefined });
    accepted.attach({ data: () => undefined, drain: () => undefined, close: () => undefined });
    await new Promise((done) => setImmediate(done));
    const order: number[] = [];
    dialed.write([Buffer.alloc(10, 1), Buffer.alloc(20, 2)], () => order.push(1));
    dialed.write([Buffer.alloc(5, 3)], () => order.push(2));
    dialed.write([], () => order.push(3)); // nothing to write: at once
    assert.deepEqual(order, [3], 'the kernel had nothing before the tick ends (the writes are corked)');
    for (let tick = 0; tick < 100 && order.length < 3; tick++) await new Promise((done) => setImmediate(done));
    assert.deepEqual(order, [3, 1, 2]);

    // The receiver stops reading: writes queue in the socket, their callbacks wait; a destroy
    // ends them (libuv reads none of the buffers after it).
    accepted.pause();
    let written = 0;
    let calls = 0;
    for (let index = 0; index < 400; index++) {
      dialed.write([Buffer.alloc(256 * 1024, index & 0xff)], () => calls++);
      written++;
      if (index % 10 === 9) await new Promise((done) => setImmediate(done));
    }
    assert.ok(calls < written, `some of ${written} writes are still queued (${calls} done)`);
    assert.ok(dialed.bufferedBytes > 0);
    dialed.destroy('test');
    for (let tick = 0; tick < 100 && calls < written; tick++) await new Promise((done) => setImmediate(done));
    assert.equal(calls, written, 'every write was ended exactly once');
    dialed.write([Buffer.alloc(1)], () => calls++);
    assert.equal(calls, written + 1, 'a write to a destroyed wire ends at once');
  });

  it('reports a close to a handler that has no readTarget, and never calls it after close', async () => {
    const { listener, dialed, accepted } = await wirePair();
    cleanup.push(() => listener.close());
    const closed = new Promise<string>((resolve) => {
      accepted.attach({ data: () => undefined, drain: () => undefined, close: resolve });
    });
    let dataAfterClose = false;
    let closedAt = false;
    dialed.attach({
      data: () => {
        if (closedAt) dataAfterClose = true;
      },
      readTarget: () => {
        if (closedAt) dataAfterClose = true;
        return undefined;
      },
      drain: () => undefined,
      close: () => {
        closedAt = true;
      },
    });
    dialed.destroy('test');
    assert.equal(await closed, 'closed by peer');
    assert.equal(dataAfterClose, false);
  });
});

describe('74 link TCP wire: framed connections over steered reads', function () {
  this.timeout(30_000);

  it('carries large and small frames intact in both directions', async () => {
    const { listener, dialed, accepted } = await wirePair();
    const options = { maxFrameBytes: 4 * 1024 * 1024, clock: realClock, random: realRandom };
    const connections = [new Connection(dialed, 'dialer', options), new Connection(accepted, 'acceptor', options)];
    const sizes = [1024 * 1024, 10, 300_000, 0, 64 * 1024, 32 * 1024 - 1, 32 * 1024, 2 * 1024 * 1024 + 7, 4096, 1024 * 1024];
    try {
      const received = connections.map(() => [] as Buffer[]);
      const done = connections.map((connection, index) => new Promise<void>((resolve, reject) => {
        connection.start({
          frame: (frame) => {
            // The payload may be a view of a reused buffer: keep a copy.
            (received[index] as Buffer[]).push(Buffer.from(frame.payload));
            if ((received[index] as Buffer[]).length === sizes.length) resolve();
          },
          close: (info) => reject(new Error(`closed: ${info.reason} ${info.error?.message ?? ''}`)),
        });
        connection.authenticated();
      }));
      for (const [index, connection] of connections.entries()) {
        sizes.forEach((size, frameIndex) => connection.send(MessageType.LINK_TEST, patterned(size, index * 100 + frameIndex)));
      }
      await Promise.all(done);
      for (const [index] of connections.entries()) {
        const from = 1 - index;
        const got = received[index] as Buffer[];
        sizes.forEach((size, frameIndex) => {
          assert.ok((got[frameIndex] as Buffer).equals(patterned(size, from * 100 + frameIndex)), `frame ${frameIndex} (${size} bytes) to ${index}`);
        });
      }
    } finally {
      for (const connection of connections) connection.close('test');
      await listener.close();
    }
  });
});
