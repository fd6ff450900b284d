// A Link's behaviour on the simulated network and clock, where time is exact: the reconnect
// schedule, heartbeats and the dead-peer timeout, requests (response, timeout, no handler,
// remote failure), the bounded queue (ERR_LINK_FULL, then 'drain'), messages reported
// unconfirmed when a connection drops, sends while down, oversize messages, and close.
import * as assert from 'node:assert/strict';

import { Controller } from '../../src/controller/controller';
import { SeededRandom } from '../../src/runtime/random';
import { SimNetwork } from '../../src/sim/network';
import { SimClock } from '../../src/sim/sim-clock';
import { isLinkError } from '../../src/transport/errors';
import type { Link, LinkStateEvent, UnconfirmedReport } from '../../src/transport/link';
import { MessageType } from '../../src/transport/message-types';

const TUNING = {
  heartbeatIntervalMs: 100,
  deadPeerTimeoutMs: 500,
  handshakeTimeoutMs: 300,
  connectTimeoutMs: 300,
  reconnectInitialDelayMs: 100,
  reconnectMaxDelayMs: 800,
  reconnectJitter: 0,
};

interface World {
  clock: SimClock;
  network: SimNetwork;
  a: Controller;
  b: Controller;
  ab: Link;
  ba: Link;
  events: LinkStateEvent[];
}

async function world(options: { startB?: boolean; maxQueuedBytes?: number } = {}): Promise<World> {
  const clock = new SimClock();
  const random = new SeededRandom(7);
  const network = new SimNetwork({ clock, random: random.fork('network') });
  const common = { clock, random: random.fork('controllers') };
  const a = new Controller({
    id: 'a', network: network.node('a'), ...common,
    replication: { ...TUNING, listen: { host: 'a', port: 7000 }, ...(options.maxQueuedBytes === undefined ? {} : { maxQueuedBytes: options.maxQueuedBytes, maxFrameBytes: 128 * 1024 }) },
    peers: [{ id: 'b', address: { host: 'b', port: 7000 } }],
  });
  const b = new Controller({
    id: 'b', network: network.node('b'), ...common,
    replication: { ...TUNING, listen: { host: 'b', port: 7000 } },
    peers: [{ id: 'a', address: { host: 'a', port: 7000 } }],
  });
  const events: LinkStateEvent[] = [];
  await a.start();
  a.link('b').on('state', (event: LinkStateEvent) => events.push(event));
  if (options.startB !== false) await b.start();
  return { clock, network, a, b, ab: a.link('b'), ba: b.links.get('a') as Link, events };
}

async function bothUp(w: World): Promise<void> {
  const up = await w.clock.runUntil(() => w.ab.isUp && w.b.link('a').isUp, { maxTimeMs: 10_000 });
  assert.ok(up, `links not up: ${w.ab.currentState} / ${w.b.link('a').currentState}`);
}

describe('73 link on the simulated network', () => {
  it('dials with exponential backoff under the injected clock while the peer is absent', async () => {
    const w = await world({ startB: false });
    await w.clock.runFor(3000);
    const dialTimes = w.events.filter((event) => event.new === 'connecting').map((event) => event.timeMs);
    const gaps = dialTimes.slice(1).map((time, index) => Math.round(time - (dialTimes[index] as number)));
    // The first dial happened inside start(), before this listener: the ones seen are attempts
    // 2, 3, ...; each fails after a round trip (ECONNREFUSED), then waits 200, 400, 800, 800 ms.
    const waits = gaps.map((gap) => Math.round(gap / 100) * 100);
    assert.deepEqual(waits.slice(0, 4), [200, 400, 800, 800], `gaps ${gaps.join(', ')}`);
    assert.ok(w.events.every((event) => event.new !== 'up'));
    assert.ok(w.ab.status().attempt >= 5);
    assert.equal(w.ab.status().nextAttemptWallTimeMs !== null, true);
    await w.b.start();
    await w.clock.runUntil(() => w.ab.isUp, { maxTimeMs: 2000 });
    assert.ok(w.ab.isUp);
    assert.equal(w.ab.status().attempt, 0);
    assert.equal(w.ab.status().reconnects, 0, 'the first time up is not a reconnect');
  });

  it('measures RTT with heartbeats, and declares a silent peer dead after deadPeerTimeoutMs', async () => {
    const w = await world();
    await bothUp(w);
    await w.clock.runFor(500);
    const rtt = w.ab.status().rttMs;
    assert.ok(rtt !== null && Math.abs(rtt - 2) < 0.5, `rtt ${rtt} (two 1 ms hops)`);
    w.network.partition('a', 'b', { direction: 'both' });
    const cut = w.clock.nowMs();
    await w.clock.runUntil(() => !w.ab.isUp, { maxTimeMs: 2000 });
    const dead = w.events.find((event) => event.reason === 'dead-peer');
    assert.ok(dead !== undefined);
    const afterMs = dead.timeMs - cut;
    assert.ok(afterMs >= 400 && afterMs <= 600 + 100, `dead after ${afterMs} ms`);
    w.network.healAll();
    await w.clock.runUntil(() => w.ab.isUp && w.b.link('a').isUp, { maxTimeMs: 5000 });
    assert.equal(w.ab.status().reconnects, 1);
  });

  it('answers requests, and times out, reports missing handlers and remote failures with codes', async () => {
    const w = await world();
    await bothUp(w);
    w.b.link('a').handle(MessageType.LINK_TEST_REQUEST, (payload) => {
      if (payload.toString() === 'fail') throw new Error('the handler failed');
      if (payload.toString() === 'never') return new Promise<Buffer>(() => undefined);
      return Buffer.concat([Buffer.from('re:'), payload]);
    });
    const answer = w.ab.request(MessageType.LINK_TEST_REQUEST, Buffer.from('ping'));
    await w.clock.runFor(10);
    assert.equal((await answer).toString(), 're:ping');

    const failed = w.ab.request(MessageType.LINK_TEST_REQUEST, Buffer.from('fail')).catch((error: unknown) => error);
    await w.clock.runFor(10);
    const failure = await failed;
    assert.ok(isLinkError(failure, 'ERR_LINK_REMOTE'), String(failure));
    assert.match((failure as Error).message, /the handler failed/);

    const slow = w.ab.request(MessageType.LINK_TEST_REQUEST, Buffer.from('never'), { timeoutMs: 50 }).catch((error: unknown) => error);
    await w.clock.runFor(60);
    assert.ok(isLinkError(await slow, 'ERR_LINK_TIMEOUT'));

    const unhandled = w.b.link('a').request(MessageType.LINK_TEST_REQUEST, Buffer.from('x')).catch((error: unknown) => error);
    await w.clock.runFor(10);
    assert.ok(isLinkError(await unhandled, 'ERR_LINK_NO_HANDLER'));
  });

  it('refuses sends past maxQueuedBytes with ERR_LINK_FULL, and drains when acknowledged', async () => {
    const w = await world({ maxQueuedBytes: 256 * 1024 });
    await bothUp(w);
    let drained = 0;
    let full = 0;
    w.ab.on('drain', () => drained++);
    w.ab.on('full', () => full++);
    const payload = Buffer.alloc(60 * 1024);
    let sent = 0;
    let refused: unknown;
    for (let index = 0; index < 10; index++) {
      try {
        w.ab.send(MessageType.LINK_TEST, payload);
        sent++;
      } catch (error) {
        refused = error;
        break;
      }
    }
    assert.equal(sent, 4, 'four 60 KiB messages fit in 256 KiB');
    assert.ok(isLinkError(refused, 'ERR_LINK_FULL'));
    assert.equal(full, 1);
    assert.ok(w.ab.isFull);
    await w.clock.runFor(50);
    assert.equal(drained, 1);
    assert.equal(w.ab.isFull, false);
    assert.equal(w.ab.status().queuedBytes, 0);
    assert.equal(w.ab.status().unconfirmedMessages, 0);
  });

  it('reports every unacknowledged message when the connection drops, and refuses sends while down', async () => {
    const w = await world();
    await bothUp(w);
    const received: number[] = [];
    w.b.link('a').on('message', (message: { payload: Buffer }) => received.push(message.payload.readUInt32BE(0)));
    const reports: UnconfirmedReport[] = [];
    const callbacks: number[] = [];
    w.ab.on('unconfirmed', (report: UnconfirmedReport) => reports.push(report));
    // One-way partition a -> b: what is sent now stalls and is never acknowledged.
    w.network.partition('a', 'b', { direction: 'a-to-b' });
    const ids: number[] = [];
    for (let index = 0; index < 5; index++) {
      const payload = Buffer.alloc(8);
      payload.writeUInt32BE(index, 0);
      ids.push(w.ab.send(MessageType.LINK_TEST, payload, { onUnconfirmed: (message) => callbacks.push(message.messageId) }));
    }
    w.ab.setFaults({ drop: true });
    await w.clock.runFor(1);
    assert.equal(reports.length, 1);
    assert.deepEqual(reports[0]?.messages.map((message) => message.messageId), ids);
    assert.equal(reports[0]?.reason, 'dropped');
    assert.deepEqual(callbacks, ids);
    assert.throws(() => w.ab.send(MessageType.LINK_TEST, Buffer.alloc(1)), (error: unknown) => isLinkError(error, 'ERR_LINK_DOWN'));
    w.network.healAll();
    await w.clock.runUntil(() => w.ab.isUp, { maxTimeMs: 5000 });
    await w.clock.runFor(100);
    // The stalled bytes belonged to a dead connection: none of them was delivered.
    assert.deepEqual(received, []);
    const next = w.ab.send(MessageType.LINK_TEST, Buffer.from([0, 0, 0, 9, 0, 0, 0, 0]));
    assert.ok(next > (ids.at(-1) as number), 'message ids go on across connections');
    await w.clock.runFor(10);
    assert.deepEqual(received, [9]);
  });

  it('refuses a message above maxFrameBytes, a type below 0x20, and any send after close', async () => {
    const w = await world();
    await bothUp(w);
    assert.throws(() => w.ab.send(MessageType.LINK_TEST, Buffer.alloc(w.ab.tuning.maxFrameBytes)),
      (error: unknown) => isLinkError(error, 'ERR_LINK_FRAME_TOO_LARGE'));
    assert.throws(() => w.ab.send(0x06, Buffer.alloc(1)), RangeError);
    const pending = w.ab.request(MessageType.LINK_TEST_REQUEST, Buffer.alloc(1)).catch((error: unknown) => error);
    await w.a.close();
    assert.ok(isLinkError(await pending, 'ERR_LINK_CLOSED'), String(await pending));
    assert.throws(() => w.ab.send(MessageType.LINK_TEST, Buffer.alloc(1)), (error: unknown) => isLinkError(error, 'ERR_LINK_CLOSED'));
    await w.clock.runFor(50);
    // The peer heard the GOODBYE: closed-by-peer, not a dead-peer timeout.
    assert.equal(w.b.link('a').status().reason, 'closed-by-peer');
    await w.b.close();
  });

  it('a restarted dialer replaces the accepting side\'s old connection, which had not noticed', async () => {
    const w = await world();
    await bothUp(w);
    // a crashes silently; b still believes in the old connection.
    w.network.crash('a');
    w.a.crash();
    w.network.restart('a');
    const a2 = new Controller({
      id: 'a', network: w.network.node('a'), clock: w.clock, random: new SeededRandom(8),
      replication: { ...TUNING, listen: { host: 'a', port: 7000 } },
      peers: [{ id: 'b', address: { host: 'b', port: 7000 } }],
    });
    const bEvents: LinkStateEvent[] = [];
    w.b.link('a').on('state', (event: LinkStateEvent) => bEvents.push(event));
    await a2.start();
    await w.clock.runUntil(() => a2.link('b').isUp, { maxTimeMs: 2000 });
    assert.ok(a2.link('b').isUp);
    assert.ok(bEvents.some((event) => event.reason === 'replaced'), JSON.stringify(bEvents));
    assert.ok(w.b.link('a').isUp);
    await a2.close();
    await w.b.close();
  });
});
