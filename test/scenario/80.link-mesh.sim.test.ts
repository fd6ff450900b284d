// Scenario: eight controllers in a full mesh of links, on the simulated network and clock. A
// thousand seeded runs of traffic under random faults (drops, resets, partitions one way and
// both, latency and bandwidth, link-level partitions and delays, crashes and restarts), each
// healed and run to quiescence, then checked: every message delivered in order and once, every
// message sent delivered or reported unconfirmed, every link state change allowed, every link up
// at the end. A seed replays exactly; a few runs are told as stories.
//
// A failing seed is printed with the command that replays it:
//   BLOCKMIRROR_SIM_SEED=<n> npx mocha --no-config --timeout 120000 --exit dist/test/scenario/80.link-mesh.sim.test.js
// (with it, only that seed runs, and its whole log is printed). BLOCKMIRROR_SIM_RUNS=<n> runs
// fewer seeds for a quick local pass; BLOCKMIRROR_SIM_FIRST_SEED=<n> fixes where they start.
import * as assert from 'node:assert/strict';

import { MESH_LINK_TUNING, Mesh, type MeshLinkChange } from '../../src/sim/mesh';
import { MESH_NETWORK_AND_LINK_FAULTS, type MeshScenarioOptions, type MeshScenarioResult, runMeshScenario } from '../../src/sim/mesh-scenario';

function integerFromEnv(name: string): number | undefined {
  const text = process.env[name];
  if (text === undefined || text === '') return undefined;
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`${name} must be a non-negative integer, got ${JSON.stringify(text)}`);
  return value;
}

const REPLAY_SEED = integerFromEnv('BLOCKMIRROR_SIM_SEED');
const RUN_COUNT = REPLAY_SEED !== undefined ? 1 : (integerFromEnv('BLOCKMIRROR_SIM_RUNS') ?? 1000);
const FIRST_SEED = REPLAY_SEED ?? integerFromEnv('BLOCKMIRROR_SIM_FIRST_SEED') ?? Date.now() % 2 ** 31;
const REPLAY_COMMAND = 'npx mocha --no-config --timeout 120000 --exit dist/test/scenario/80.link-mesh.sim.test.js';

/**
 * One run: 8 controllers, 600 virtual ms of traffic (a send or a request per controller every
 * 10 ms on average) and faults (one every 30 ms on average, each lasting up to 400 ms, crashes
 * and graceful restarts among them), then healing (link faults end by heal() or by setFaults,
 * drawn from the seed). Sized so that a thousand runs take under a minute on a 2-core machine.
 */
const RUN_OPTIONS: Omit<MeshScenarioOptions, 'seed'> = {
  controllerCount: 8,
  durationMs: 600,
  messageIntervalMs: 10,
  faultIntervalMs: 30,
  faultKinds: [...MESH_NETWORK_AND_LINK_FAULTS, 'crash', 'stop'],
  healLinksBy: 'either',
};

/**
 * Seeds that once failed, with the options they failed with (kept apart from RUN_OPTIONS, so
 * that tuning the runs does not change what these replay).
 */
const FOUND_WITH_OPTIONS: Omit<MeshScenarioOptions, 'seed'> = {
  controllerCount: 8,
  durationMs: 600,
  messageIntervalMs: 10,
  faultIntervalMs: 30,
  faultKinds: [...MESH_NETWORK_AND_LINK_FAULTS, 'crash', 'stop'],
  healLinksBy: 'either',
};
const FOUND_SEEDS: readonly { seed: number; found: string }[] = [
  { seed: 30, found: 'a dialer stayed down for good after setFaults lifted its partition (link.ts setFaults)' },
  { seed: 52, found: 'the same, on the link c0->c4' },
  { seed: 101117, found: 'frames held by a delay fault were released after a discard once the partition was lifted, and an ack confirmed the lost one (faults.ts flushDue)' },
];

/** The longest a dialer waits between two attempts (backoff cap plus its jitter). */
const MAX_BACKOFF_MS = MESH_LINK_TUNING.reconnectMaxDelayMs * 1.2;

function explain(result: MeshScenarioResult): string {
  return [
    `mesh seed ${result.seed} failed:`,
    ...result.failures.slice(0, 10).map((failure) => `  ${failure}`),
    result.failures.length > 10 ? `  ... and ${result.failures.length - 10} more` : '',
    '  last log lines:',
    ...result.log.slice(-30).map((line) => `    ${line}`),
    `replay: BLOCKMIRROR_SIM_SEED=${result.seed} ${REPLAY_COMMAND}`,
  ].filter((line) => line !== '').join('\n');
}

/** A started mesh with every link up. */
async function upMesh(seed: number, controllerCount = 8): Promise<Mesh> {
  const mesh = new Mesh({ seed, controllerCount });
  await mesh.start();
  assert.ok(await mesh.runUntil(() => mesh.allUp(), 1000), `the mesh did not come up:\n${mesh.diagnosis()}`);
  return mesh;
}

/** Heals everything, runs to quiescence, and returns what the checker found. */
async function healAndCheck(mesh: Mesh): Promise<string[]> {
  mesh.healAll();
  await mesh.quiesce(5000);
  return mesh.check();
}

function others(mesh: Mesh, id: string): string[] {
  return mesh.ids.filter((peer) => peer !== id);
}

/** The changes of the link from -> to after `sinceMs`. */
function changesOf(mesh: Mesh, from: string, to: string, sinceMs: number): MeshLinkChange[] {
  return mesh.linkChanges.filter((change) => change.from === from && change.to === to && change.timeMs > sinceMs);
}

/** The changes, after `sinceMs`, of every link but the two between a and b (none: they stayed up). */
function othersStayedUp(mesh: Mesh, a: string, b: string, sinceMs: number): string[] {
  return mesh.linkChanges
    .filter((change) => change.timeMs > sinceMs && !((change.from === a && change.to === b) || (change.from === b && change.to === a)))
    .map((change) => `${change.timeMs} ${change.from}->${change.to} ${change.old} -> ${change.new} (${change.reason})`);
}

describe('80 link mesh (simulation)', function () {
  this.timeout(300_000);

  it(`${RUN_COUNT} seeded runs of 8 controllers under random faults keep every delivery promise`, async function () {
    const startedAtMs = Date.now();
    const failed: MeshScenarioResult[] = [];
    const totals = {
      messagesSent: 0, messagesDelivered: 0, messagesUnconfirmed: 0, requestsSent: 0, faultsInjected: 0, crashes: 0, stops: 0, virtualDurationMs: 0,
    };
    for (let seed = FIRST_SEED; seed < FIRST_SEED + RUN_COUNT; seed++) {
      const result = await runMeshScenario({ seed, ...RUN_OPTIONS });
      for (const key of Object.keys(totals) as (keyof typeof totals)[]) totals[key] += result.counters[key];
      if (REPLAY_SEED !== undefined) console.log(result.log.join('\n'));
      if (!result.ok) {
        failed.push(result);
        console.log(explain(result));
      }
    }
    const elapsedMs = Date.now() - startedAtMs;
    console.log(`      seeds ${FIRST_SEED}..${FIRST_SEED + RUN_COUNT - 1}: ${RUN_COUNT} runs in ${(elapsedMs / 1000).toFixed(1)} s; ` +
      `${totals.messagesSent} messages sent, ${totals.messagesDelivered} delivered, ${totals.messagesUnconfirmed} reported unconfirmed, ` +
      `${totals.requestsSent} requests; ${totals.faultsInjected} faults (${totals.crashes} crashes, ${totals.stops} stops); ` +
      `${(totals.virtualDurationMs / 1000).toFixed(1)} virtual s`);
    assert.ok(totals.messagesSent > 0 || RUN_COUNT === 0, 'the runs sent nothing');
    if (failed.length > 0) {
      assert.fail(`${failed.length} of ${RUN_COUNT} seeds failed: ${failed.map((result) => result.seed).join(', ')}\n${explain(failed[0] as MeshScenarioResult)}`);
    }
  });

  it('a seed replays identically, event for event, and another seed does not', async () => {
    const first = await runMeshScenario({ seed: 4242, ...RUN_OPTIONS });
    const again = await runMeshScenario({ seed: 4242, ...RUN_OPTIONS });
    const other = await runMeshScenario({ seed: 4243, ...RUN_OPTIONS });
    assert.ok(first.ok, explain(first));
    assert.ok(first.counters.faultsInjected > 5 && first.counters.messagesSent > 100, 'the run did something');
    assert.deepEqual(again.log, first.log);
    assert.deepEqual(again.trace, first.trace);
    assert.deepEqual(again.counters, first.counters);
    assert.notDeepEqual(other.log, first.log);
    assert.notDeepEqual(other.trace, first.trace);
  });

  for (const { seed, found } of FOUND_SEEDS) {
    it(`seed ${seed}, which once failed, passes: ${found}`, async () => {
      const result = await runMeshScenario({ seed, ...FOUND_WITH_OPTIONS });
      assert.ok(result.ok, explain(result));
    });
  }

  it('a one-way partition from c1 to c2 takes the link down on both sides, and healing brings it back', async () => {
    // Given a full mesh of eight controllers with every link up,
    const mesh = await upMesh(101);
    // and c1 and c2 exchanging messages, all delivered and acknowledged (acknowledgements are
    // coalesced for up to 20 ms),
    for (let index = 0; index < 5; index++) {
      assert.equal(mesh.send('c1', 'c2'), 'sent');
      assert.equal(mesh.send('c2', 'c1'), 'sent');
    }
    await mesh.runFor(60);
    assert.equal(mesh.link('c1', 'c2').status().unconfirmedMessages, 0);
    assert.deepEqual(mesh.deliveredCounters('c1', 'c2'), [1, 2, 3, 4, 5]);

    // when the network drops everything c1 sends to c2, but not the way back,
    const partitionedAtMs = mesh.clock.nowMs();
    mesh.partition('c1', 'c2', 'a-to-b');
    for (let index = 0; index < 5; index++) assert.equal(mesh.send('c1', 'c2'), 'sent');

    // then c2 hears nothing from c1 and declares it dead once deadPeerTimeoutMs has passed,
    assert.ok(await mesh.runUntil(() => !mesh.link('c1', 'c2').isUp && !mesh.link('c2', 'c1').isUp, 1000), mesh.diagnosis());
    const [c2Down] = changesOf(mesh, 'c2', 'c1', partitionedAtMs);
    assert.deepEqual([c2Down?.old, c2Down?.new, c2Down?.reason], ['up', 'down', 'dead-peer']);
    assert.ok((c2Down as MeshLinkChange).timeMs - partitionedAtMs >= MESH_LINK_TUNING.deadPeerTimeoutMs);
    // and c1, which still hears c2, is told by c2's close, which still gets through;
    const [c1Down] = changesOf(mesh, 'c1', 'c2', partitionedAtMs);
    assert.deepEqual([c1Down?.old, c1Down?.new, c1Down?.reason], ['up', 'down', 'closed-by-peer']);
    // the five messages c1 sent into the partition are reported unconfirmed and none arrived;
    assert.deepEqual(mesh.sentMessages('c1', 'c2').slice(5).map((message) => [message.delivered, message.unconfirmed]), Array(5).fill([false, true]));

    // while the partition stands, c1's dials time out and the link stays down,
    await mesh.runFor(1500);
    const redials = changesOf(mesh, 'c1', 'c2', partitionedAtMs).filter((change) => change.reason === 'connect-failed');
    assert.ok(redials.length >= 2, `c1 kept dialing (${redials.length} failed dials)`);
    assert.ok(redials.every((change) => change.detail === 'ETIMEDOUT'));
    assert.equal(mesh.link('c1', 'c2').isUp, false);
    assert.equal(mesh.link('c2', 'c1').isUp, false);
    // and every other link stays up;
    assert.deepEqual(othersStayedUp(mesh, 'c1', 'c2', partitionedAtMs), []);

    // when the partition heals, the link is back up within one backoff,
    const healedAtMs = mesh.clock.nowMs();
    mesh.heal('c1', 'c2', 'a-to-b');
    assert.ok(await mesh.runUntil(() => mesh.link('c1', 'c2').isUp && mesh.link('c2', 'c1').isUp, MAX_BACKOFF_MS + 50), mesh.diagnosis());
    assert.ok(mesh.clock.nowMs() - healedAtMs <= MAX_BACKOFF_MS + 50);
    // messages flow again, and nothing sent was silently lost.
    assert.equal(mesh.send('c1', 'c2'), 'sent');
    assert.deepEqual(await healAndCheck(mesh), []);
    assert.deepEqual(mesh.deliveredCounters('c1', 'c2'), [1, 2, 3, 4, 5, 11]);
  });

  it('a crashed controller is reconnected after restart, and its peers report what it never acknowledged', async () => {
    // Given a full mesh with every link up, where the network takes 40 ms to carry anything to c3,
    const mesh = await upMesh(202);
    for (const peer of others(mesh, 'c3')) mesh.setNetworkLink(peer, 'c3', { latencyMs: 40 });
    await mesh.runFor(100);
    // when every peer sends three messages to c3 and c3 crashes before any of them arrives,
    for (const peer of others(mesh, 'c3')) {
      for (let index = 0; index < 3; index++) assert.equal(mesh.send(peer, 'c3'), 'sent');
    }
    await mesh.runFor(10);
    const crashedAtMs = mesh.clock.nowMs();
    mesh.crash('c3');

    // then every peer's link to c3 goes down once c3 has been silent for deadPeerTimeoutMs (the
    // crash told nobody),
    assert.ok(await mesh.runUntil(() => others(mesh, 'c3').every((peer) => !mesh.link(peer, 'c3').isUp), 1000), mesh.diagnosis());
    for (const peer of others(mesh, 'c3')) {
      const [down] = changesOf(mesh, peer, 'c3', crashedAtMs);
      assert.deepEqual([down?.old, down?.new, down?.reason], ['up', 'down', 'dead-peer'], `${peer}'s link to c3`);
    }
    // and every message sent to c3 is reported unconfirmed by its sender, and none was delivered;
    for (const peer of others(mesh, 'c3')) {
      assert.deepEqual(mesh.sentMessages(peer, 'c3').map((message) => [message.delivered, message.unconfirmed]),
        [[false, true], [false, true], [false, true]], `what ${peer} sent to c3`);
    }
    // while c3 is down, the peers that dial it (c0, c1, c2) find nobody there.
    await mesh.runFor(300);
    for (const peer of ['c0', 'c1', 'c2']) {
      assert.ok(changesOf(mesh, peer, 'c3', crashedAtMs).some((change) => change.reason === 'connect-failed'), `${peer} dialed c3`);
    }

    // When c3 restarts, as a new controller with the same id,
    await mesh.restart('c3');
    assert.equal(mesh.incarnationOf('c3'), 2);
    // then all seven of its links come back up (the lower ids dial it, it dials the higher ids),
    assert.ok(await mesh.runUntil(() => mesh.allUp(), MAX_BACKOFF_MS + 500), mesh.diagnosis());
    // it takes messages again, and nothing sent to it was silently lost.
    for (const peer of others(mesh, 'c3')) assert.equal(mesh.send(peer, 'c3'), 'sent');
    assert.deepEqual(await healAndCheck(mesh), []);
    for (const peer of others(mesh, 'c3')) assert.deepEqual(mesh.deliveredCounters(peer, 'c3'), [4], `what c3 got from ${peer}`);
  });

  it('a controller that crashes and restarts at once replaces the half-open links of its peers', async () => {
    // Given a full mesh with every link up, and a message from every peer delivered to c4,
    const mesh = await upMesh(303);
    for (const peer of others(mesh, 'c4')) assert.equal(mesh.send(peer, 'c4'), 'sent');
    await mesh.runFor(20);
    // when c4 crashes and a new c4 starts at the same instant (nothing was on its way to c4),
    const restartedAtMs = mesh.clock.nowMs();
    mesh.crash('c4');
    await mesh.restart('c4');
    // then every link comes back up: the new c4 dials c5, c6 and c7, whose links were still up
    // on the old connections, and its handshakes replace them;
    assert.ok(await mesh.runUntil(() => mesh.allUp(), MAX_BACKOFF_MS + 300), mesh.diagnosis());
    for (const peer of ['c5', 'c6', 'c7']) {
      const changes = changesOf(mesh, peer, 'c4', restartedAtMs).map((change) => `${change.old} -> ${change.new} (${change.reason})`);
      assert.deepEqual(changes, ['up -> down (replaced)', 'down -> handshaking (inbound)', 'handshaking -> up (handshake-done)'], `${peer}'s link to c4`);
    }
    // c0 to c3 learn of the restart from the reset their next heartbeat meets, and dial again;
    for (const peer of ['c0', 'c1', 'c2', 'c3']) {
      const down = changesOf(mesh, peer, 'c4', restartedAtMs).find((change) => change.new === 'down');
      assert.deepEqual([down?.reason, down?.detail], ['closed-by-peer', 'ECONNRESET'], `${peer}'s link to c4`);
    }
    // and what was delivered before the crash stays delivered, once.
    assert.deepEqual(await healAndCheck(mesh), []);
    for (const peer of others(mesh, 'c4')) assert.deepEqual(mesh.deliveredCounters(peer, 'c4'), [1]);
  });

  it('a link fault partition on the dialer stops it dialing until healed', async () => {
    // Given a full mesh with every link up,
    const mesh = await upMesh(404);
    // when an operator partitions c1's link to c2, in both directions,
    const partitionedAtMs = mesh.clock.nowMs();
    mesh.setLinkFaults('c1', 'c2', { partition: true });
    // then both sides lose the link once the silence lasts deadPeerTimeoutMs (the first to notice
    // declares the peer dead; its close may reach the other first),
    assert.ok(await mesh.runUntil(() => !mesh.link('c1', 'c2').isUp && !mesh.link('c2', 'c1').isUp, 1000), mesh.diagnosis());
    const downs = [...changesOf(mesh, 'c1', 'c2', partitionedAtMs), ...changesOf(mesh, 'c2', 'c1', partitionedAtMs)]
      .filter((change) => change.new === 'down').sort((a, b) => a.timeMs - b.timeMs);
    assert.equal(downs[0]?.reason, 'dead-peer');
    assert.ok(['dead-peer', 'closed-by-peer'].includes(downs[1]?.reason as string));
    // and for the next two seconds c1 never dials c2, nor plans to,
    const downAtMs = mesh.clock.nowMs();
    await mesh.runFor(2000);
    assert.deepEqual(changesOf(mesh, 'c1', 'c2', downAtMs), []);
    const dials = mesh.network.trace().filter((line) => Number(line.split(' ')[0]) >= partitionedAtMs && /dial#\d+ c1->c2:7000$/.test(line));
    assert.deepEqual(dials, []);
    assert.equal(mesh.link('c1', 'c2').status().nextAttemptWallTimeMs, null);
    // while every other link stays up;
    assert.deepEqual(othersStayedUp(mesh, 'c1', 'c2', partitionedAtMs), []);
    // when c1 heals the link, it dials at once and the link is up within a few round trips.
    const healedAtMs = mesh.clock.nowMs();
    mesh.healLink('c1', 'c2');
    assert.ok(await mesh.runUntil(() => mesh.link('c1', 'c2').isUp && mesh.link('c2', 'c1').isUp, 20), mesh.diagnosis());
    assert.ok(mesh.clock.nowMs() - healedAtMs <= 10);
    assert.deepEqual(await healAndCheck(mesh), []);
  });

  it('a link fault partition on the accepting side turns the dialer away until healed', async () => {
    // Given a full mesh with every link up,
    const mesh = await upMesh(505);
    // when an operator partitions c2's link to c1 (c1 is the one that dials),
    const partitionedAtMs = mesh.clock.nowMs();
    mesh.setLinkFaults('c2', 'c1', { partition: true });
    // then the link goes down, and c1 keeps dialing, with backoff, and keeps being turned away,
    await mesh.runFor(2000);
    const c1Changes = changesOf(mesh, 'c1', 'c2', partitionedAtMs);
    const attempts = c1Changes.filter((change) => change.new === 'handshaking').length;
    assert.ok(attempts >= 3, `c1 tried ${attempts} times`);
    assert.equal(c1Changes.filter((change) => change.new === 'up').length, 0);
    assert.equal(mesh.link('c2', 'c1').isUp, false);
    assert.ok(changesOf(mesh, 'c2', 'c1', partitionedAtMs).every((change) => change.new === 'down'), 'c2 never took c1 back');
    // when c2 heals, c1's next attempt gets through, within one backoff.
    mesh.healLink('c2', 'c1');
    assert.ok(await mesh.runUntil(() => mesh.link('c1', 'c2').isUp && mesh.link('c2', 'c1').isUp, MAX_BACKOFF_MS + 50), mesh.diagnosis());
    assert.deepEqual(othersStayedUp(mesh, 'c1', 'c2', partitionedAtMs), []);
    assert.deepEqual(await healAndCheck(mesh), []);
  });

  it('a dialer whose link partition is lifted by setFaults rather than heal() dials again', async () => {
    // Found by seed 30 of the seeded runs (and by 72.link-delivery, LINK_PROPERTY_SEED=861492182):
    // the dialer stayed down for good, with no dial planned.
    // Given a full mesh with every link up,
    const mesh = await upMesh(707);
    // when c1 partitions its link to c2 in both directions, and both sides lose it,
    mesh.setLinkFaults('c1', 'c2', { partition: true });
    assert.ok(await mesh.runUntil(() => !mesh.link('c1', 'c2').isUp && !mesh.link('c2', 'c1').isUp, 1000), mesh.diagnosis());
    await mesh.runFor(500);
    assert.equal(mesh.link('c1', 'c2').status().nextAttemptWallTimeMs, null, 'c1 does not dial while partitioned');
    // and c1 then lifts the partition with setFaults({ partition: false }), not heal(),
    const changesBefore = mesh.linkChanges.length;
    mesh.liftLinkPartition('c1', 'c2');
    // then c1 dials again at once, and the link is up within a few round trips,
    const [first] = mesh.linkChanges.slice(changesBefore).filter((change) => change.from === 'c1' && change.to === 'c2');
    assert.deepEqual([first?.old, first?.new, first?.reason], ['down', 'connecting', 'dialing']);
    assert.ok(await mesh.runUntil(() => mesh.link('c1', 'c2').isUp && mesh.link('c2', 'c1').isUp, 20), mesh.diagnosis());
    // and nothing sent on the way was silently lost.
    assert.equal(mesh.send('c1', 'c2'), 'sent');
    assert.deepEqual(await healAndCheck(mesh), []);
  });

  it('a frame a link partition discarded breaks the stream for good, even once the partition is lifted', async () => {
    // Found by seed 101117 of the seeded runs: the frames held behind the discarded one were
    // released once setFaults lifted the partition, and c0's acknowledgement of a later message
    // confirmed the lost one to c1, which never reported it: a silent loss.
    // Given c0 and c1 with their link up, c0 holding every frame from c1 for 100 ms,
    const mesh = await upMesh(808, 2);
    mesh.setLinkFaults('c0', 'c1', { delayMs: 100, direction: 'in' });
    // when c1 sends #1, #2 and #3, 30 ms apart,
    const sentAtMs = mesh.clock.nowMs();
    assert.equal(mesh.send('c1', 'c0'), 'sent');
    await mesh.runFor(30);
    assert.equal(mesh.send('c1', 'c0'), 'sent');
    await mesh.runFor(30);
    assert.equal(mesh.send('c1', 'c0'), 'sent');
    // and c0 partitions its incoming side once #1 is through, while #2 and #3 are still held,
    await mesh.clock.runUntilTime(sentAtMs + 110);
    assert.deepEqual(mesh.deliveredCounters('c1', 'c0'), [1]);
    mesh.setLinkFaults('c0', 'c1', { partition: true, direction: 'in' });
    // so that #2 is discarded when its time comes,
    await mesh.clock.runUntilTime(sentAtMs + 140);
    // and then lifts the partition with setFaults (not heal()) before #3's time comes,
    mesh.setLinkFaults('c0', 'c1', { partition: false, delayMs: 0, direction: 'in' });
    // then #3 is not delivered after the gap: nothing more comes through that connection,
    await mesh.runFor(100);
    assert.deepEqual(mesh.deliveredCounters('c1', 'c0'), [1]);
    // c0 declares c1 dead, and c1 reports #2 and #3 unconfirmed, while #1 was acknowledged;
    assert.ok(await mesh.runUntil(() => !mesh.link('c0', 'c1').isUp && !mesh.link('c1', 'c0').isUp, 1000), mesh.diagnosis());
    assert.equal(mesh.link('c0', 'c1').status().reason, 'dead-peer');
    assert.deepEqual(mesh.sentMessages('c1', 'c0').map((message) => [message.delivered, message.unconfirmed]),
      [[true, false], [false, true], [false, true]]);
    // and the link comes back with nothing lost.
    assert.deepEqual(await healAndCheck(mesh), []);
  });

  it('a burst past maxQueuedBytes is refused with ERR_LINK_FULL, and drains once acknowledged', async () => {
    // Given two controllers, c0 and c1, with their link up, and 30 ms of latency from c1 to c0
    // (so acknowledgements come late),
    const mesh = await upMesh(606, 2);
    mesh.setNetworkLink('c1', 'c0', { latencyMs: 30 });
    // when c0 sends 2 KB messages as fast as it can,
    const results = Array.from({ length: 60 }, () => mesh.send('c0', 'c1', 2000));
    // then the first 32 go (2042-byte frames: 32 of them fit in 64 KiB) and the rest are refused,
    assert.equal(results.indexOf('full'), 32);
    assert.ok(results.slice(32).every((result) => result === 'full'));
    assert.equal(mesh.link('c0', 'c1').isFull, true);
    // and once the acknowledgements arrive, the link drains and takes messages again,
    assert.ok(await mesh.runUntil(() => !mesh.link('c0', 'c1').isFull, 100));
    assert.equal(mesh.send('c0', 'c1', 2000), 'sent');
    // and the refused ones were never sent: the receiver sees counters 1 to 33, no gap.
    assert.deepEqual(await healAndCheck(mesh), []);
    assert.deepEqual(mesh.deliveredCounters('c0', 'c1'), Array.from({ length: 33 }, (_, index) => index + 1));
  });
});
