// The simulated network: dial, refuse and time out like TCP; ordered delivery under jitter,
// re-splitting and a bandwidth cap; partitions that stall and heal; resets, crashes, close
// semantics and back-pressure; and the same trace from the same seed.
import * as assert from 'node:assert/strict';

import { SeededRandom } from '../../src/runtime/random';
import type { Network, NetworkAddress, Wire } from '../../src/transport/wire';
import { SimClock } from '../../src/sim/sim-clock';
import { HOST_CRASHED, SimNetwork } from '../../src/sim/network';
import type { SimNetworkOptions } from '../../src/sim/network';

interface Harness {
  clock: SimClock;
  network: SimNetwork;
}

function harness(seed: number, options: Partial<SimNetworkOptions> = {}): Harness {
  const clock = new SimClock();
  const network = new SimNetwork({ clock, random: new SeededRandom(seed), ...options });
  return { clock, network };
}

/** What one end of a wire has seen. */
class Recorder {
  readonly chunks: Buffer[] = [];
  readonly arrivalsMs: number[] = [];
  readonly closes: Array<{ reason: string; atMs: number }> = [];
  drainCount = 0;

  constructor(
    private readonly clock: SimClock,
    readonly wire: Wire,
  ) {
    wire.attach({
      data: (chunk) => {
        assert.equal(this.closes.length, 0, 'data after close');
        this.chunks.push(chunk);
        this.arrivalsMs.push(clock.nowMs());
      },
      drain: () => {
        this.drainCount += 1;
      },
      close: (reason) => {
        assert.equal(this.closes.length, 0, 'close reported twice');
        this.closes.push({ reason, atMs: this.clock.nowMs() });
      },
    });
  }

  get received(): Buffer {
    return Buffer.concat(this.chunks);
  }

  get byteLength(): number {
    return this.chunks.reduce((sum, chunk) => sum + chunk.length, 0);
  }

  get closeReason(): string | undefined {
    return this.closes[0]?.reason;
  }
}

interface DialResult {
  error: string | undefined;
  wire: Wire | undefined;
  atMs: number;
}

async function dial(clock: SimClock, from: Network, address: NetworkAddress, timeoutMs = 1000): Promise<DialResult> {
  let result: DialResult | undefined;
  from.dial(address, timeoutMs, (error, wire) => {
    assert.equal(result, undefined, 'dial callback ran twice');
    result = { error, wire, atMs: clock.nowMs() };
  });
  assert.equal(await clock.runUntil(() => result !== undefined), true, 'dial never finished');
  return result as DialResult;
}

/** A listener on `host`:7000 and a connection from `from` to it, both ends recorded. */
async function connect(sim: Harness, from: string, to: string): Promise<{ client: Recorder; server: Recorder }> {
  const accepted: Wire[] = [];
  await sim.network.node(to).listen({ host: to, port: 7000 }, (wire) => accepted.push(wire));
  const result = await dial(sim.clock, sim.network.node(from), { host: to, port: 7000 });
  assert.equal(result.error, undefined);
  assert.equal(accepted.length, 1);
  return { client: new Recorder(sim.clock, result.wire as Wire), server: new Recorder(sim.clock, accepted[0] as Wire) };
}

/** Bytes that differ by position and seed (a 32-bit xorshift), so misordering shows. */
function pattern(byteLength: number, seed: number): Buffer {
  const bytes = Buffer.alloc(byteLength);
  let state = (seed * 2654435761 + 1) >>> 0 || 1;
  for (let index = 0; index < byteLength; index += 1) {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    bytes[index] = state & 0xff;
  }
  return bytes;
}

describe('06 sim network', () => {
  describe('dial and listen', () => {
    it('connects after the one-way latency; each end names the other', async () => {
      const sim = harness(1, { link: { latencyMs: 5 } });
      const accepted: Wire[] = [];
      const listener = await sim.network.node('c2').listen({ host: 'c2', port: 7000 }, (wire) => accepted.push(wire));
      assert.deepEqual(listener.address, { host: 'c2', port: 7000 });
      const result = await dial(sim.clock, sim.network.node('c1'), { host: 'c2', port: 7000 });
      assert.equal(result.error, undefined);
      assert.equal(result.atMs, 5);
      const client = result.wire as Wire;
      const server = accepted[0] as Wire;
      assert.deepEqual(client.remote, { host: 'c2', port: 7000 });
      assert.deepEqual(server.remote, { host: 'c1', port: 49152 });
      assert.equal(client.description, 'sim:c1:49152->c2:7000');
      assert.equal(server.description, 'sim:c2:7000->c1:49152');
      assert.equal(sim.network.counters.openWireCount, 2);
      assert.equal(sim.network.counters.connectionCount, 1);
      const second = await dial(sim.clock, sim.network.node('c1'), { host: 'c2', port: 7000 });
      assert.equal((second.wire as Wire).description, 'sim:c1:49153->c2:7000');
    });

    it('fails with ECONNREFUSED after a round trip when nothing listens', async () => {
      const sim = harness(1, { link: { latencyMs: 5 } });
      sim.network.setLink('c2', 'c1', { latencyMs: 7 });
      const result = await dial(sim.clock, sim.network.node('c1'), { host: 'c2', port: 7000 });
      assert.equal(result.error, 'ECONNREFUSED');
      assert.equal(result.wire, undefined);
      assert.equal(result.atMs, 12);
      assert.equal(sim.network.counters.refusedDialCount, 1);
    });

    it('times out with ETIMEDOUT across a partition in either direction, and to a crashed host', async () => {
      const sim = harness(1);
      await sim.network.node('c2').listen({ host: 'c2', port: 7000 }, () => assert.fail('accepted across a partition'));
      for (const direction of ['a-to-b', 'b-to-a', 'both'] as const) {
        sim.network.partition('c1', 'c2', { direction });
        const startMs = sim.clock.nowMs();
        const result = await dial(sim.clock, sim.network.node('c1'), { host: 'c2', port: 7000 }, 250);
        assert.equal(result.error, 'ETIMEDOUT', direction);
        assert.equal(result.atMs - startMs, 250);
        sim.network.healAll();
      }
      sim.network.crash('c3');
      const result = await dial(sim.clock, sim.network.node('c1'), { host: 'c3', port: 7000 }, 100);
      assert.equal(result.error, 'ETIMEDOUT');
      assert.equal(sim.network.counters.timedOutDialCount, 4);
    });

    it('cancel() before the connect means no callback and no accepted wire', async () => {
      const sim = harness(1, { link: { latencyMs: 5 } });
      await sim.network.node('c2').listen({ host: 'c2', port: 7000 }, () => assert.fail('accepted a cancelled dial'));
      const handle = sim.network.node('c1').dial({ host: 'c2', port: 7000 }, 100, () => assert.fail('callback after cancel'));
      await sim.clock.runFor(2);
      handle.cancel();
      handle.cancel();
      await sim.clock.runFor(200);
      assert.equal(sim.clock.pendingTimerCount, 0);
      assert.equal(sim.network.counters.openWireCount, 0);
    });

    it('port 0 counts up from 40000; a bound port is EADDRINUSE; nodes bind only their own host', async () => {
      const sim = harness(1);
      const node = sim.network.node('c1');
      const first = await node.listen({ host: 'c1', port: 0 }, () => undefined);
      const second = await node.listen({ host: '127.0.0.1', port: 0 }, () => undefined);
      assert.deepEqual(first.address, { host: 'c1', port: 40000 });
      assert.deepEqual(second.address, { host: 'c1', port: 40001 });
      await assert.rejects(node.listen({ host: 'c1', port: 40000 }, () => undefined), { code: 'EADDRINUSE' });
      await assert.rejects(node.listen({ host: 'c2', port: 7000 }, () => undefined), { code: 'EADDRNOTAVAIL' });
      await first.close();
      await first.close();
      await node.listen({ host: 'c1', port: 40000 }, () => undefined);
      assert.equal(sim.network.listenerCount, 2);
      assert.equal(sim.network.node('c1'), node);
      assert.throws(() => node.listen({ host: 'c1', port: 70000 }, () => undefined), RangeError);
      assert.throws(() => node.dial({ host: 'c2', port: 0 }, 10, () => undefined), RangeError);
      assert.throws(() => node.dial({ host: 'c2', port: 1 }, -1, () => undefined), RangeError);
      assert.throws(() => sim.network.node('localhost'), RangeError);
    });

    it('a dial to a loopback name reaches the node itself', async () => {
      const sim = harness(1);
      const accepted: Wire[] = [];
      await sim.network.node('c1').listen({ host: '0.0.0.0', port: 9000 }, (wire) => accepted.push(wire));
      const result = await dial(sim.clock, sim.network.node('c1'), { host: '127.0.0.1', port: 9000 });
      assert.equal(result.error, undefined);
      assert.deepEqual(accepted[0]?.remote, { host: 'c1', port: 49152 });
    });
  });

  describe('write completion', () => {
    it('runs onWritten once write() has copied the chunks (the caller may reuse them at once), and on a closed wire', async () => {
      const sim = harness(3);
      const { client, server } = await connect(sim, 'c1', 'c2');
      const calls: string[] = [];
      const chunk = Buffer.from('abcdef');
      client.wire.write([chunk], () => calls.push('written'));
      assert.deepEqual(calls, ['written']);
      chunk.fill(0x7a); // reused before delivery: the peer still gets what was written
      client.wire.write([], () => calls.push('empty'));
      assert.equal(await sim.clock.runUntil(() => server.byteLength === 6), true);
      assert.equal(server.received.toString(), 'abcdef');
      client.wire.destroy('test');
      client.wire.write([Buffer.from('x')], () => calls.push('closed'));
      assert.deepEqual(calls, ['written', 'empty', 'closed']);
    });
  });

  describe('delivery', () => {
    it('keeps order under jitter and re-splitting, with arbitrary splits and joins', async () => {
      const sim = harness(3, { link: { latencyMs: 2, jitterMs: 8 } });
      const { client, server } = await connect(sim, 'c1', 'c2');
      const random = new SeededRandom(99);
      const segments: Buffer[] = [];
      for (let index = 0; index < 300; index += 1) {
        const segment = pattern(1 + random.int(200), index);
        segments.push(segment);
        client.wire.write([segment]);
        if (index % 7 === 0) await sim.clock.runFor(random.int(3));
      }
      const expected = Buffer.concat(segments);
      assert.equal(await sim.clock.runUntil(() => server.byteLength === expected.length), true);
      assert.ok(server.received.equals(expected), 'bytes out of order or damaged');
      for (let index = 1; index < server.arrivalsMs.length; index += 1) {
        assert.ok((server.arrivalsMs[index] as number) >= (server.arrivalsMs[index - 1] as number), 'arrivals went back in time');
      }
      const writeEnds: number[] = [];
      let offset = 0;
      for (const segment of segments) writeEnds.push((offset += segment.length));
      const chunkRanges: Array<{ start: number; end: number }> = [];
      offset = 0;
      for (const chunk of server.chunks) chunkRanges.push({ start: offset, end: (offset += chunk.length) });
      const splitInside = chunkRanges.filter((range) => !writeEnds.includes(range.end)).length;
      const joined = chunkRanges.filter((range) => writeEnds.some((end) => end > range.start && end < range.end)).length;
      assert.ok(splitInside > 0, 'no chunk ended inside a write');
      assert.ok(joined > 0, 'no chunk joined two writes');
      assert.equal(client.wire.bufferedBytes, 0);
      assert.equal(sim.network.counters.deliveredBytes, expected.length);
    });

    it('with re-splitting off, every write arrives as one chunk', async () => {
      const sim = harness(3, { resplit: false, link: { latencyMs: 1, jitterMs: 3 } });
      const { client, server } = await connect(sim, 'c1', 'c2');
      const sizes = [1, 17, 300, 4096, 2];
      for (const size of sizes) client.wire.write([pattern(size, size), Buffer.alloc(0)]);
      assert.equal(await sim.clock.runUntil(() => server.chunks.length === sizes.length), true);
      assert.deepEqual(
        server.chunks.map((chunk) => chunk.length),
        sizes,
      );
    });

    it('a write is copied: reusing the buffer after write() does not change what arrives', async () => {
      const sim = harness(3);
      const { client, server } = await connect(sim, 'c1', 'c2');
      const buffer = Buffer.from('original');
      client.wire.write([buffer]);
      buffer.fill(0);
      assert.equal(await sim.clock.runUntil(() => server.byteLength === 8), true);
      assert.equal(server.received.toString(), 'original');
    });

    it('a 1 MiB transfer at 1 MiB/s takes about one second of virtual time', async () => {
      const sim = harness(4, { link: { latencyMs: 2 }, highWaterMarkBytes: 4 << 20 });
      sim.network.setLink('c1', 'c2', { bandwidthBytesPerSecond: 1 << 20 });
      const { client, server } = await connect(sim, 'c1', 'c2');
      const startMs = sim.clock.nowMs();
      for (let index = 0; index < 16; index += 1) client.wire.write([pattern(64 << 10, index)]);
      assert.equal(await sim.clock.runUntil(() => server.byteLength === 1 << 20), true);
      const elapsedMs = sim.clock.nowMs() - startMs;
      assert.ok(elapsedMs >= 1000 && elapsedMs <= 1003, `took ${elapsedMs} ms`);
      // The first chunk is through the pipe after 1/16 of the second, not at the end.
      assert.ok((server.arrivalsMs[0] as number) - startMs >= 62.5 && (server.arrivalsMs[0] as number) - startMs < 70);
      // The reverse direction is not capped.
      server.wire.write([pattern(64 << 10, 99)]);
      const backStartMs = sim.clock.nowMs();
      assert.equal(await sim.clock.runUntil(() => client.byteLength === 64 << 10), true);
      assert.equal(sim.clock.nowMs() - backStartMs, 2);
    });
  });

  describe('faults', () => {
    it('a one-way partition stalls that direction only; heal delivers the held bytes a latency later', async () => {
      const sim = harness(5, { link: { latencyMs: 3 } });
      const { client, server } = await connect(sim, 'c1', 'c2');
      sim.network.partition('c1', 'c2', { direction: 'a-to-b' });
      assert.equal(sim.network.isPartitioned('c1', 'c2'), true);
      assert.equal(sim.network.isPartitioned('c2', 'c1'), false);
      client.wire.write([Buffer.from('held')]);
      server.wire.write([Buffer.from('flows')]);
      await sim.clock.runFor(10_000);
      assert.equal(server.byteLength, 0);
      assert.equal(client.received.toString(), 'flows');
      assert.equal(client.wire.bufferedBytes, 4);
      assert.equal(sim.clock.pendingTimerCount, 0, 'a stalled pipe holds no timer');
      const healMs = sim.clock.nowMs();
      sim.network.heal('c1', 'c2');
      assert.equal(await sim.clock.runUntil(() => server.byteLength === 4), true);
      assert.equal(server.received.toString(), 'held');
      assert.equal(sim.clock.nowMs() - healMs, 3);
      assert.equal(client.wire.bufferedBytes, 0);
    });

    it('bytes held by a partition are not delivered if the wire closes meanwhile', async () => {
      const sim = harness(5);
      const { client, server } = await connect(sim, 'c1', 'c2');
      sim.network.partition('c1', 'c2');
      client.wire.write([Buffer.from('never')]);
      await sim.clock.runFor(100);
      client.wire.destroy('giving up');
      assert.equal(client.closeReason, 'giving up');
      await sim.clock.runFor(100);
      assert.equal(server.closeReason, undefined, 'the close notice is held by the partition too');
      sim.network.healAll();
      assert.equal(await sim.clock.runUntil(() => server.closeReason !== undefined), true);
      assert.equal(server.closeReason, 'closed by peer');
      assert.equal(server.byteLength, 0);
    });

    it('dropProbability resets the connection: both ends get ECONNRESET', async () => {
      const sim = harness(6);
      const { client, server } = await connect(sim, 'c1', 'c2');
      sim.network.setLink('c1', 'c2', { dropProbability: 1 });
      client.wire.write([Buffer.from('doomed')]);
      assert.equal(await sim.clock.runUntil(() => client.closes.length > 0 && server.closes.length > 0), true);
      assert.equal(client.closeReason, 'ECONNRESET');
      assert.equal(server.closeReason, 'ECONNRESET');
      assert.equal(server.byteLength, 0);
      assert.equal(sim.network.counters.resetCount, 1);
      assert.equal(sim.network.counters.openWireCount, 0);
    });

    it('reset(a, b) drops every connection between two hosts now', async () => {
      const sim = harness(6);
      const { client, server } = await connect(sim, 'c1', 'c2');
      assert.equal(sim.network.reset('c2', 'c1'), 1);
      assert.equal(client.closeReason, 'ECONNRESET');
      assert.equal(server.closeReason, 'ECONNRESET');
      assert.equal(sim.network.reset('c1', 'c2'), 0);
    });

    it('crash: the host loses its wires, listeners and dials; its peers are not told', async () => {
      const sim = harness(7, { link: { latencyMs: 2 }, highWaterMarkBytes: 1024 });
      const { client, server } = await connect(sim, 'c1', 'c2');
      const pending: Array<string | undefined> = [];
      sim.network.node('c2').dial({ host: 'c3', port: 1 }, 1000, (error) => pending.push(error));
      sim.network.crash('c2');
      assert.equal(sim.network.isUp('c2'), false);
      assert.equal(server.closeReason, HOST_CRASHED);
      assert.deepEqual(pending, [HOST_CRASHED]);
      assert.equal(sim.network.listenerCount, 0);
      await sim.clock.runFor(1000);
      assert.equal(client.closeReason, undefined, 'the peer stays open');
      // Bytes to a dead host stall, so the peer sees back-pressure.
      assert.equal(client.wire.write([Buffer.alloc(2048)]), false);
      await sim.clock.runFor(1000);
      assert.equal(client.wire.bufferedBytes, 2048);
      assert.equal(client.closeReason, undefined);
      await assert.rejects(sim.network.node('c2').listen({ host: 'c2', port: 7000 }, () => undefined), { code: 'EHOSTDOWN' });
      const fromDead = await dial(sim.clock, sim.network.node('c2'), { host: 'c1', port: 1 });
      assert.equal(fromDead.error, HOST_CRASHED);
      const toDead = await dial(sim.clock, sim.network.node('c1'), { host: 'c2', port: 7000 }, 50);
      assert.equal(toDead.error, 'ETIMEDOUT');

      // After a restart the host can listen again; the stale connection's bytes meet a reset.
      sim.network.restart('c2');
      await sim.network.node('c2').listen({ host: 'c2', port: 7000 }, () => undefined);
      assert.equal(await sim.clock.runUntil(() => client.closeReason !== undefined), true);
      assert.equal(client.closeReason, 'ECONNRESET');
      assert.equal(server.drainCount + client.drainCount, 0);
      assert.equal(sim.network.counters.openWireCount, 0);
    });

    it('setLink changes only the given settings of one direction', () => {
      const sim = harness(1, { link: { latencyMs: 4 } });
      sim.network.setLink('c1', 'c2', { jitterMs: 2 });
      assert.deepEqual(sim.network.linkSettings('c1', 'c2'), { latencyMs: 4, jitterMs: 2, bandwidthBytesPerSecond: Infinity, dropProbability: 0 });
      assert.equal(sim.network.linkSettings('c2', 'c1').jitterMs, 0);
      assert.throws(() => sim.network.setLink('c1', 'c2', { dropProbability: 2 }), RangeError);
      assert.throws(() => sim.network.setLink('c1', 'c2', { bandwidthBytesPerSecond: 0 }), RangeError);
      assert.throws(() => sim.network.partition('c1', 'c1'), RangeError);
      sim.network.clearLink('c1', 'c2');
      assert.equal(sim.network.linkSettings('c1', 'c2').jitterMs, 0);
    });
  });

  describe('close and back-pressure', () => {
    it('destroy: local close at once, the peer hears "closed by peer" a latency later, no data after', async () => {
      const sim = harness(8, { link: { latencyMs: 4 } });
      const { client, server } = await connect(sim, 'c1', 'c2');
      client.wire.write([Buffer.from('lost in flight')]);
      server.wire.write([Buffer.from('also lost')]);
      const destroyMs = sim.clock.nowMs();
      client.wire.destroy('done');
      assert.deepEqual(client.closes, [{ reason: 'done', atMs: destroyMs }]);
      client.wire.destroy('again');
      assert.equal(client.wire.write([Buffer.from('x')]), true);
      assert.equal(client.wire.bufferedBytes, 0);
      assert.equal(await sim.clock.runUntil(() => server.closes.length > 0), true);
      assert.deepEqual(server.closes, [{ reason: 'closed by peer', atMs: destroyMs + 4 }]);
      await sim.clock.runFor(100);
      assert.equal(server.byteLength, 0);
      assert.equal(client.byteLength, 0);
      assert.equal(sim.network.counters.openWireCount, 0);
      assert.equal(sim.clock.pendingTimerCount, 0);
      assert.throws(() => client.wire.attach({ data: () => undefined, drain: () => undefined, close: () => undefined }), /attached twice/);
    });

    it('a wire that closed before attach reports the close at attach', async () => {
      const sim = harness(8);
      const accepted: Wire[] = [];
      await sim.network.node('c2').listen({ host: 'c2', port: 7000 }, (wire) => accepted.push(wire));
      const result = await dial(sim.clock, sim.network.node('c1'), { host: 'c2', port: 7000 });
      (result.wire as Wire).destroy('early');
      assert.equal(await sim.clock.runUntil(() => sim.network.counters.openWireCount === 0), true);
      const closes: string[] = [];
      (accepted[0] as Wire).attach({ data: () => assert.fail('data'), drain: () => undefined, close: (reason) => closes.push(reason) });
      assert.deepEqual(closes, ['closed by peer']);
    });

    it('end: the bytes already written are delivered, then the peer hears the close', async () => {
      const sim = harness(8, { link: { latencyMs: 4, jitterMs: 3 } });
      const { client, server } = await connect(sim, 'c1', 'c2');
      client.wire.write([Buffer.from('last '), Buffer.from('words')]);
      client.wire.end('goodbye');
      assert.equal(client.closeReason, 'goodbye');
      assert.equal(await sim.clock.runUntil(() => server.closes.length > 0), true);
      assert.equal(server.received.toString(), 'last words');
      assert.equal(server.closeReason, 'closed by peer');
      assert.equal(sim.clock.pendingTimerCount, 0);
    });

    it('end: a peer that never reads is reset after the grace period', async () => {
      const sim = harness(8, { endGraceMs: 500 });
      const { client, server } = await connect(sim, 'c1', 'c2');
      server.wire.pause();
      client.wire.write([Buffer.from('unread')]);
      client.wire.end();
      await sim.clock.runFor(400);
      assert.equal(server.closeReason, undefined);
      assert.equal(await sim.clock.runUntil(() => server.closes.length > 0), true);
      assert.equal(server.closeReason, 'ECONNRESET');
      assert.equal(server.byteLength, 0);
    });

    it('write() returns false at the high-water mark; pause holds deliveries; drain follows resume', async () => {
      const sim = harness(9, { highWaterMarkBytes: 4096 });
      const { client, server } = await connect(sim, 'c1', 'c2');
      server.wire.pause();
      assert.equal(client.wire.write([Buffer.alloc(3000)]), true);
      assert.equal(client.wire.write([Buffer.alloc(3000)]), false);
      assert.equal(client.wire.bufferedBytes, 6000);
      await sim.clock.runFor(1000);
      assert.equal(server.byteLength, 0, 'a paused receiver gets nothing');
      assert.equal(client.wire.bufferedBytes, 6000);
      assert.equal(client.drainCount, 0);
      server.wire.resume();
      assert.equal(await sim.clock.runUntil(() => server.byteLength === 6000 && client.drainCount > 0), true);
      assert.equal(client.drainCount, 1);
      assert.equal(client.wire.bufferedBytes, 0);
      assert.equal(sim.network.counters.writtenBytes, 6000);
    });
  });

  describe('determinism', () => {
    const scenario = async (seed: number): Promise<string[]> => {
      const sim = harness(seed, { link: { latencyMs: 1, jitterMs: 5 } });
      sim.network.setLink('c2', 'c1', { bandwidthBytesPerSecond: 200_000, dropProbability: 0.002 });
      const { client, server } = await connect(sim, 'c1', 'c2');
      const refused = await dial(sim.clock, sim.network.node('c3'), { host: 'c2', port: 1 });
      assert.equal(refused.error, 'ECONNREFUSED');
      for (let round = 0; round < 50; round += 1) {
        client.wire.write([pattern(100 + round * 13, round)]);
        server.wire.write([pattern(200 + round * 7, round + 1000)]);
        if (round === 20) sim.network.partition('c1', 'c2', { direction: 'a-to-b' });
        if (round === 30) sim.network.heal('c1', 'c2');
        await sim.clock.runFor(3);
      }
      await sim.clock.runUntil(() => sim.clock.pendingTimerCount === 0);
      return sim.network.trace();
    };

    it('two runs with the same seed give identical traces; another seed differs', async () => {
      const first = await scenario(1234);
      const second = await scenario(1234);
      assert.ok(first.length > 100, `trace has ${first.length} lines`);
      assert.deepEqual(second, first);
      const other = await scenario(4321);
      assert.notDeepEqual(other, first);
    });

    it('the trace is bounded and the hook sees every line', async () => {
      const seen: string[] = [];
      const sim = harness(1, { traceLineLimit: 3, onTrace: (line) => seen.push(line) });
      for (let port = 1; port <= 5; port += 1) await sim.network.node('c1').listen({ host: 'c1', port }, () => undefined);
      assert.equal(seen.length, 5);
      assert.deepEqual(sim.network.trace(), seen.slice(2));
      assert.equal(sim.network.traceDroppedCount, 2);
      assert.match(seen[0] as string, /^0\.000 listen c1:1$/);
    });
  });
});
