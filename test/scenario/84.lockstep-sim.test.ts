// The lockstep barrier (issue 8, seed 000) on the simulated network and clock: each numbered
// point of the issue is a case here. Async pairs between controllers whose shared-memory
// volumes outlive a crash.
import * as assert from 'node:assert/strict';

import { Controller } from '../../src/controller/controller';
import { LOCKSTEP_RESULT_NUMBERS, type LockstepResult } from '../../src/replication/lockstep';
import type { PairSpec } from '../../src/replication/pairs';
import type { PairVolume } from '../../src/replication/pair-volume';
import { SeededRandom } from '../../src/runtime/random';
import { SimNetwork } from '../../src/sim/network';
import { SIM_LINK_TUNING } from '../../src/sim/pair-schedule';
import { SimClock } from '../../src/sim/sim-clock';
import { Region } from '../../src/storage/region';
import { Journal } from '../../src/storage/journal';
import { Volume } from '../../src/storage/volume';
import { SnapshotStore } from '../../src/storage/snapshot';

const TUNING = SIM_LINK_TUNING;
const CAPACITY = 2 * 1024 * 1024;
const BLOCK = 4096;
let counter = 0;

interface World {
  clock: SimClock;
  network: SimNetwork;
  random: SeededRandom;
  prefix: string;
  specs: Map<string, () => Controller>;
  nodes: Map<string, Controller>;
}

/** a holds vol0 -> b (pair p0) and vol1 -> c (pair p1); each secondary has one volume. */
async function world(seed: number, options: { journalCapacityBytes?: number } = {}): Promise<World> {
  const clock = new SimClock();
  const random = new SeededRandom(seed);
  const network = new SimNetwork({ clock, random: random.fork('network') });
  counter++;
  const prefix = `bm-sim84-${process.pid}-${counter}`;
  const w: World = { clock, network, random, prefix, specs: new Map(), nodes: new Map() };
  const make = (id: string, volumes: string[], peers: string[], pairs: PairSpec[]) => (): Controller => new Controller({
    id, network: network.node(id), clock, random: random.fork(`${id}-${w.nodes.size}`),
    volumes: volumes.map((name) => ({ name, backing: 'shared' as const, sharedName: `${prefix}-${id}-${name}`, capacityBytes: CAPACITY })),
    replication: { ...TUNING, listen: { host: id, port: 7000 } },
    peers: peers.map((peer) => ({ id: peer, address: { host: peer, port: 7000 } })),
    pairs,
    ...(options.journalCapacityBytes === undefined ? {} : { journal: { journalCapacityBytes: options.journalCapacityBytes } }),
  });
  w.specs.set('a', make('a', ['vol0', 'vol1'], ['b', 'c'], [
    { name: 'p0', volume: 'vol0', peer: 'b', remoteVolume: 'vol0', mode: 'async', role: 'primary' },
    { name: 'p1', volume: 'vol1', peer: 'c', remoteVolume: 'vol0', mode: 'async', role: 'primary' },
  ]));
  w.specs.set('b', make('b', ['vol0'], ['a'], [{ name: 'p0', volume: 'vol0', peer: 'a', remoteVolume: 'vol0', mode: 'async', role: 'secondary' }]));
  w.specs.set('c', make('c', ['vol0'], ['a'], [{ name: 'p1', volume: 'vol0', peer: 'a', remoteVolume: 'vol1', mode: 'async', role: 'secondary' }]));
  for (const id of ['b', 'c', 'a']) {
    const node = (w.specs.get(id) as () => Controller)();
    await node.start();
    w.nodes.set(id, node);
  }
  await until(w, () => state('a', 'p0') === 'mirroring' && state('a', 'p1') === 'mirroring', 'mirroring');
  return w;

  function state(id: string, pair: string): unknown {
    return (w.nodes.get(id)?.pairs?.status() ?? []).find((entry) => entry.name === pair)?.state;
  }
}

function node(w: World, id: string): Controller {
  return w.nodes.get(id) as Controller;
}

function pairStatus(w: World, id: string, pair: string): Record<string, unknown> {
  return (node(w, id).pairs?.status() ?? []).find((entry) => entry.name === pair) ?? {};
}

async function until(w: World, predicate: () => boolean, what: string, maxTimeMs = 20_000): Promise<void> {
  assert.ok(await w.clock.runUntil(predicate, { maxTimeMs }), `${what}: not reached`);
}

/** Starts a lockstep call and runs the clock until it settles (or `maxTimeMs`). */
async function call(w: World, target: Parameters<Controller['lockstep']>[0], maxTimeMs = 20_000): Promise<{ result?: LockstepResult; error?: { code?: string } }> {
  const outcome: { result?: LockstepResult; error?: { code?: string }; done: boolean } = { done: false };
  node(w, 'a').lockstep(target).then((result) => { outcome.result = result; outcome.done = true; }, (error: { code?: string }) => { outcome.error = error; outcome.done = true; });
  await w.clock.runUntil(() => outcome.done, { maxTimeMs });
  return outcome;
}

function write(w: World, volume: string, index: number, fill: number): void {
  (node(w, 'a').exportVolume(volume) as PairVolume).write(index * BLOCK, Buffer.alloc(BLOCK, fill));
}

function block(c: Controller, volume: string, index: number): Buffer {
  const data = Buffer.alloc(BLOCK);
  (c.volume(volume) as Volume).read(index * BLOCK, data);
  return data;
}

async function dispose(w: World): Promise<void> {
  for (const c of w.nodes.values()) await c.close().catch(() => undefined);
  for (const [id, volumes] of [['a', ['vol0', 'vol1']], ['b', ['vol0']], ['c', ['vol0']]] as const) {
    for (const volume of volumes) {
      const name = `${w.prefix}-${id}-${volume}`;
      Volume.unlink({ name });
      SnapshotStore.unlink({ name });
      Journal.unlink({ name });
      for (const pair of ['p0', 'p1']) Region.unlink('shared', `blockmirror.pair.${name}.${pair}`);
    }
  }
}

describe('84 lockstep on the simulated network', function () {
  this.timeout(60_000);

  it('1, 2: nothing replicated for the target is not-done at once; disabled is disabled at once and writes no marker', async () => {
    const w = await world(41);
    try {
      assert.equal((await call(w, { pairs: ['nope'] }, 0)).result, 'not-done');
      assert.equal((await call(w, { volumes: ['vol9'] }, 0)).result, 'not-done');
      const journal = node(w, 'a').pairs?.replicatedVolume('vol0')?.journal;
      const before = journal?.nextSequence;
      node(w, 'a').setLockstepEnabled(false);
      assert.equal((await call(w, { pairs: ['p0'] }, 0)).result, 'disabled');
      assert.equal(journal?.nextSequence, before, 'no marker was written');
      node(w, 'a').setLockstepEnabled(true);
      assert.equal(LOCKSTEP_RESULT_NUMBERS.done, 31428);
      assert.equal(LOCKSTEP_RESULT_NUMBERS['not-done'], 31426);
      assert.equal(LOCKSTEP_RESULT_NUMBERS.disabled, 31429);
    } finally {
      await dispose(w);
    }
  });

  it('3, 10, 11: one marker per protected journal after the acknowledged writes; done once every receiver flushed through it; the secondary shows it', async () => {
    const w = await world(42);
    try {
      w.network.setLink('a', 'b', { latencyMs: 15 });
      for (let index = 0; index < 20; index++) write(w, 'vol0', index, 1 + index);
      write(w, 'vol1', 3, 0x77);
      const journal0 = node(w, 'a').pairs?.replicatedVolume('vol0')?.journal;
      const marker0 = journal0?.nextSequence as number;
      const flushesBefore = (node(w, 'b').volume('vol0') as Volume).stats().flushCount;
      const outcome = await call(w, {});
      assert.equal(outcome.result, 'done');
      for (let index = 0; index < 20; index++) assert.ok(block(node(w, 'b'), 'vol0', index).equals(Buffer.alloc(BLOCK, 1 + index)), `block ${index} on b`);
      assert.ok(block(node(w, 'c'), 'vol0', 3).equals(Buffer.alloc(BLOCK, 0x77)));
      assert.equal(pairStatus(w, 'b', 'p0').lastMarker, marker0, 'the secondary shows the marker it safe-stored');
      assert.ok((pairStatus(w, 'c', 'p1').lastMarker as number) > 0);
      assert.ok((node(w, 'b').volume('vol0') as Volume).stats().flushCount > flushesBefore, 'the receiver flushed before it acknowledged');
      const status = node(w, 'a').status().lockstep as Record<string, number>;
      assert.equal(status.markersIssued, 2, 'one marker per journal');
    } finally {
      await dispose(w);
    }
  });

  it('5, 7: callers arriving while a marker is in flight wait for the next one; markers <= waves; each caller released once; writers go on', async () => {
    const w = await world(43);
    try {
      w.network.setLink('a', 'b', { latencyMs: 25 });
      const results: LockstepResult[] = [];
      const first = node(w, 'a').lockstep({ pairs: ['p0'] }).then((result) => results.push(result));
      await w.clock.runFor(5);
      write(w, 'vol0', 1, 9); // no lock: a writer goes on while the call waits
      const later = Array.from({ length: 8 }, () => node(w, 'a').lockstep({ pairs: ['p0'] }).then((result) => results.push(result)));
      await until(w, () => results.length === 9, 'every caller released');
      await first;
      await Promise.all(later);
      assert.deepEqual(results, Array(9).fill('done'));
      const status = node(w, 'a').status().lockstep as Record<string, number>;
      assert.equal(status.waves, 2, 'two arrival waves');
      assert.ok((status.markersIssued as number) <= (status.waves as number), `markers ${status.markersIssued} <= waves ${status.waves}`);
      assert.equal(status.lastWaveCallers, 8, 'the late callers shared the second marker');
      assert.ok(block(node(w, 'b'), 'vol0', 1).equals(Buffer.alloc(BLOCK, 9)), 'the write made during the first wave is covered by the second');
    } finally {
      await dispose(w);
    }
  });

  it('6: with the link down the call waits, times out when asked to, and is done once the link is back', async () => {
    const w = await world(44);
    try {
      w.network.partition('a', 'b');
      w.network.partition('b', 'a');
      write(w, 'vol0', 2, 0x42);
      const timed = await call(w, { pairs: ['p0'], timeoutMs: 500 });
      assert.equal(timed.error?.code, 'ERR_LOCKSTEP_TIMEOUT');
      let result: LockstepResult | undefined;
      void node(w, 'a').lockstep({ pairs: ['p0'] }).then((value) => { result = value; });
      await w.clock.runFor(2000);
      assert.equal(result, undefined, 'no timeout unless asked: it waits');
      w.network.healAll();
      await until(w, () => result !== undefined, 'done after the heal');
      assert.equal(result, 'done');
      assert.ok(block(node(w, 'b'), 'vol0', 2).equals(Buffer.alloc(BLOCK, 0x42)));
    } finally {
      await dispose(w);
    }
  });

  it('8: several journals: every receiver must pass its own marker; delaying one keeps the call blocked', async () => {
    const w = await world(45);
    try {
      w.network.partition('a', 'c');
      w.network.partition('c', 'a');
      write(w, 'vol0', 0, 1);
      write(w, 'vol1', 0, 2);
      let result: LockstepResult | undefined;
      void node(w, 'a').lockstep({}).then((value) => { result = value; });
      await until(w, () => (pairStatus(w, 'b', 'p0').lastMarker as number) > 0, 'b safe-stored its marker');
      await w.clock.runFor(1000);
      assert.equal(result, undefined, 'blocked by c although b answered');
      w.network.healAll();
      await until(w, () => result !== undefined, 'done once c passes its marker');
      assert.equal(result, 'done');
    } finally {
      await dispose(w);
    }
  });

  it('9: a marker append refused by a full journal is retried with a new marker; a fatal failure is not-done', async () => {
    const w = await world(46, { journalCapacityBytes: 64 * 1024 });
    try {
      w.network.setLink('a', 'b', { bandwidthBytesPerSecond: 1024 * 1024 });
      for (let index = 0; index < 40; index++) write(w, 'vol0', index, 3);
      const outcome = await call(w, { pairs: ['p0'] });
      assert.equal(outcome.result, 'done', `${JSON.stringify(pairStatus(w, 'a', 'p0'))} ${JSON.stringify(pairStatus(w, 'b', 'p0'))} ${JSON.stringify(node(w, 'a').status().lockstep)}`);
      for (let index = 0; index < 40; index++) assert.ok(block(node(w, 'b'), 'vol0', index).equals(Buffer.alloc(BLOCK, 3)));
      // Fatal: the pair goes away under the call (deleted): not-done.
      w.network.partition('a', 'b');
      let result: LockstepResult | undefined;
      void node(w, 'a').lockstep({ pairs: ['p0'] }).then((value) => { result = value; });
      await w.clock.runFor(50);
      const deletion = node(w, 'a').pairs?.delete('p0') as Promise<void>;
      await until(w, () => result !== undefined, 'released');
      await deletion;
      assert.equal(result, 'not-done');
    } finally {
      await dispose(w);
    }
  });

  it('4: durability: acknowledged async writes, lockstep done, the primary crashes, takeover: every write is on the secondary', async () => {
    const w = await world(47);
    try {
      w.network.setLink('a', 'b', { latencyMs: 40 });
      for (let index = 0; index < 50; index++) write(w, 'vol0', index, 0x10 + (index % 200));
      assert.equal((await call(w, { pairs: ['p0'] })).result, 'done');
      node(w, 'a').crash();
      w.network.crash('a');
      await until(w, () => pairStatus(w, 'b', 'p0').state === 'suspended', 'b sees the primary gone');
      let taken = false;
      void (node(w, 'b').pairs?.takeover('p0') as Promise<unknown>).then(() => { taken = true; });
      await until(w, () => taken, 'taken over');
      for (let index = 0; index < 50; index++) assert.ok(block(node(w, 'b'), 'vol0', index).equals(Buffer.alloc(BLOCK, 0x10 + (index % 200))), `write ${index}`);
      w.nodes.delete('a');
    } finally {
      await dispose(w);
    }
  });
});
