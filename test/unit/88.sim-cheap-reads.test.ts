// The simulator's cheap reads. SimNetwork { trace: false } (what the pair schedules and topology
// runs use, since they keep their own timeline): nothing is recorded, and the network behaves
// exactly as with the trace on: the same bytes arrive at the same virtual times from the same
// seed, faults included. A pair's `brief` (what the per-step check reads instead of status())
// and PrimaryPair.lagRecords say what status() says, through a copy, a link cut and a crash.
import * as assert from 'node:assert/strict';

import { Controller } from '../../src/controller/controller';
import type { PairVolume } from '../../src/replication/pair-volume';
import { SeededRandom } from '../../src/runtime/random';
import { SIM_LINK_TUNING } from '../../src/sim/pair-schedule';
import { Region } from '../../src/storage/region';
import { Volume } from '../../src/storage/volume';
import { SnapshotStore } from '../../src/storage/snapshot';
import { SimNetwork } from '../../src/sim/network';
import { SimClock } from '../../src/sim/sim-clock';
import type { Wire } from '../../src/transport/wire';

async function scenario(trace: boolean): Promise<{ arrivals: string[]; lines: string[] }> {
  const clock = new SimClock();
  const network = new SimNetwork({ clock, random: new SeededRandom(77), link: { latencyMs: 1, jitterMs: 4 }, trace });
  network.setLink('c1', 'c2', { bandwidthBytesPerSecond: 300_000 });
  const accepted: Wire[] = [];
  await network.node('c2').listen({ host: 'c2', port: 7000 }, (wire) => accepted.push(wire));
  let client: Wire | undefined;
  network.node('c1').dial({ host: 'c2', port: 7000 }, 1000, (error, wire) => {
    assert.equal(error, undefined);
    client = wire;
  });
  assert.ok(await clock.runUntil(() => client !== undefined && accepted.length === 1));
  const arrivals: string[] = [];
  (accepted[0] as Wire).attach({
    data: (chunk) => arrivals.push(`${clock.nowMs().toFixed(6)} ${chunk.toString('hex')}`),
    drain: () => undefined,
    close: (reason) => arrivals.push(`${clock.nowMs().toFixed(6)} close ${reason}`),
  });
  (client as Wire).attach({ data: () => undefined, drain: () => undefined, close: () => undefined });
  for (let round = 0; round < 40; round++) {
    (client as Wire).write([Buffer.from(Array.from({ length: 50 + round }, (_, index) => (index * 7 + round) & 0xff))]);
    if (round === 15) network.partition('c1', 'c2', { direction: 'a-to-b' });
    if (round === 25) network.heal('c1', 'c2');
    await clock.runFor(2);
  }
  network.reset('c1', 'c2');
  await clock.runUntil(() => clock.pendingTimerCount === 0);
  return { arrivals, lines: network.trace() };
}

describe('88 sim network with the trace off', () => {
  it('records nothing, and delivers the same bytes at the same virtual times as with the trace on', async () => {
    const on = await scenario(true);
    const off = await scenario(false);
    assert.ok(on.lines.length > 40, `${on.lines.length} trace lines with the trace on`);
    assert.ok(on.lines.some((line) => / deliver /.test(line)));
    assert.deepEqual(off.lines, []);
    assert.ok(on.arrivals.length > 20);
    assert.deepEqual(off.arrivals, on.arrivals);
  });

  it('an onTrace hook still sees every line; a trace option that is no boolean is a TypeError', async () => {
    const seen: string[] = [];
    const network = new SimNetwork({ clock: new SimClock(), random: new SeededRandom(1), trace: false, onTrace: (line) => seen.push(line) });
    await network.node('c1').listen({ host: 'c1', port: 1 }, () => undefined);
    assert.equal(seen.length, 1);
    assert.throws(() => new SimNetwork({ clock: new SimClock(), random: new SeededRandom(1), trace: 'no' as never }), TypeError);
  });
});

describe('88 pair brief and lagRecords', () => {
  it('say what status() says, at every timer of a copy, writes, a partition and a crash of the primary', async function () {
    this.timeout(60_000);
    const clock = new SimClock();
    const random = new SeededRandom(5);
    const network = new SimNetwork({ clock, random: random.fork('network'), trace: false });
    const prefix = `bm-u88-${process.pid}`;
    let incarnation = 0;
    const build = (id: 'a' | 'b'): Controller => new Controller({
      id, network: network.node(id), clock, random: random.fork(`${id}-${++incarnation}`),
      volumes: [{ name: 'vol0', backing: 'shared', sharedName: `${prefix}-${id}`, capacityBytes: 16 * 4096 }],
      replication: { ...SIM_LINK_TUNING, listen: { host: id, port: 7000 } },
      peers: [{ id: id === 'a' ? 'b' : 'a', address: { host: id === 'a' ? 'b' : 'a', port: 7000 } }],
      pairs: [{ name: 'p0', volume: 'vol0', peer: id === 'a' ? 'b' : 'a', remoteVolume: 'vol0', mode: 'async', role: id === 'a' ? 'primary' : 'secondary' }],
    });
    const nodes = new Map<string, Controller>();
    for (const id of ['b', 'a'] as const) {
      const node = build(id);
      await node.start();
      nodes.set(id, node);
    }
    let compared = 0;
    const states = new Set<string>();
    const compare = (): boolean => {
      for (const [id, node] of nodes) {
        const manager = node.pairs;
        const status = manager?.status().find((entry) => entry.name === 'p0');
        if (manager === undefined || status === undefined) continue;
        const secondary = manager.secondary('p0');
        const pair = secondary ?? manager.primary('p0');
        const brief = { role: secondary === undefined ? 'primary' : 'secondary', consistency: pair.consistency, ...pair.brief };
        assert.deepEqual(brief, { role: status.role, consistency: status.consistency, state: status.state, link: status.link, peer: status.peer, sinceMs: status.sinceMs }, `${id} at ${clock.nowMs()} ms`);
        if (secondary === undefined) assert.equal(manager.primary('p0').lagRecords, (status.lag as { records: number }).records);
        states.add(`${id}:${String(status.state)}`);
        compared++;
      }
      return false;
    };
    const run = async (ms: number): Promise<void> => {
      await clock.runUntil(compare, { maxTimeMs: ms });
    };
    try {
      await run(500);
      const host = (nodes.get('a') as Controller).exportVolume('vol0') as PairVolume;
      for (let index = 0; index < 8; index++) host.write(index * 4096, Buffer.alloc(4096, index + 1));
      await run(100);
      network.partition('a', 'b');
      for (let index = 8; index < 12; index++) host.write(index * 4096, Buffer.alloc(4096, index + 1));
      await run(600);
      network.healAll();
      await run(1000);
      // The partition resumed from the journal; an operator's suspension resyncs.
      (nodes.get('a') as Controller).pairs?.suspend('p0');
      for (let index = 12; index < 16; index++) host.write(index * 4096, Buffer.alloc(4096, index + 1));
      await run(100);
      (nodes.get('a') as Controller).pairs?.resume('p0');
      await run(1000);
      (nodes.get('a') as Controller).crash();
      network.crash('a');
      nodes.delete('a');
      await run(400);
      network.restart('a');
      const again = build('a');
      await again.start();
      nodes.set('a', again);
      await run(1500);
      assert.ok(compared > 100, `${compared} comparisons`);
      for (const seen of ['a:copying', 'b:copying', 'a:mirroring', 'b:mirroring', 'a:suspended', 'a:resyncing']) assert.ok(states.has(seen), `${seen} among ${[...states].join(', ')}`);
    } finally {
      for (const node of nodes.values()) node.crash();
      for (const node of nodes.values()) await node.pairs?.close().catch(() => undefined);
      for (const id of ['a', 'b']) {
        Volume.unlink({ name: `${prefix}-${id}` });
        SnapshotStore.unlink({ name: `${prefix}-${id}` });
        Region.unlink('shared', `blockmirror.pair.${prefix}-${id}.p0`);
      }
    }
  });
});
