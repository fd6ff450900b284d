// Pair roles on the simulated network and clock, with shared-memory volumes that outlive a
// crashed controller (as after a SIGKILL): a sync takeover keeps every acknowledged write, the
// old primary comes back demoted and is resynced with the changed tracks of both sides only, a
// failback swaps the roles back; a takeover behind a partition while the old primary writes is
// a split brain on both sides, nothing is overwritten until resolve, then the kept side wins; a
// restarted primary or secondary resyncs about its in-flight window, not the volume.
import * as assert from 'node:assert/strict';

import { Controller } from '../../src/controller/controller';
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
const CAPACITY = 4 * 1024 * 1024;
const BLOCK = 4096;
let worldCounter = 0;

interface World {
  clock: SimClock;
  network: SimNetwork;
  random: SeededRandom;
  names: { a: string; b: string };
  mode: 'sync' | 'async';
  a: Controller;
  b: Controller;
}

function controller(w: Pick<World, 'clock' | 'network' | 'random' | 'names' | 'mode'>, id: 'a' | 'b', label: string = id): Controller {
  const peer = id === 'a' ? 'b' : 'a';
  const spec: PairSpec = { name: 'p0', mode: w.mode, volume: 'vol0', peer, remoteVolume: 'vol0', role: id === 'a' ? 'primary' : 'secondary' };
  return new Controller({
    id, network: w.network.node(id), clock: w.clock, random: w.random.fork(label),
    volumes: [{ name: 'vol0', backing: 'shared', sharedName: w.names[id], capacityBytes: CAPACITY }],
    replication: { ...TUNING, listen: { host: id, port: 7000 } },
    peers: [{ id: peer, address: { host: peer, port: 7000 } }],
    pairs: [spec],
  });
}

async function world(mode: 'sync' | 'async', seed: number): Promise<World> {
  const clock = new SimClock();
  const random = new SeededRandom(seed);
  const network = new SimNetwork({ clock, random: random.fork('network') });
  worldCounter++;
  const names = { a: `bm-sim82-${process.pid}-${worldCounter}-a`, b: `bm-sim82-${process.pid}-${worldCounter}-b` };
  const base = { clock, network, random, names, mode };
  const b = controller(base, 'b');
  const a = controller(base, 'a');
  await b.start();
  await a.start();
  return { ...base, a, b };
}

async function dispose(w: World): Promise<void> {
  await w.a.close().catch(() => undefined);
  await w.b.close().catch(() => undefined);
  for (const name of [w.names.a, w.names.b]) {
    Volume.unlink({ name });
    SnapshotStore.unlink({ name });
    Journal.unlink({ name });
    Region.unlink('shared', `blockmirror.pair.${name}.p0`);
  }
}

/**
 * Mirrors blocks 0..3, then behind a partition the primary writes 10 and 11 (write 5), the
 * secondary is taken over and writes 20 and 21 (write 6); healed: split brain on both sides.
 */
async function splitBrainOnBoth(w: World): Promise<void> {
  await until(w, () => side(w.a).state === 'mirroring', 'mirroring');
  hostWrites(w.a, 1, [0, 1, 2, 3], new Map());
  await until(w, () => identical(w), 'identical');
  w.network.partition('a', 'b');
  w.network.partition('b', 'a');
  await until(w, () => side(w.a).state === 'suspended' && side(w.b).state === 'suspended', 'both see the link down');
  hostWrites(w.a, 5, [10, 11], new Map());
  await settle(w, w.b.pairs?.takeover('p0') as Promise<unknown>);
  hostWrites(w.b, 6, [20, 21], new Map());
  w.network.healAll();
  await until(w, () => side(w.a).state === 'split-brain' && side(w.b).state === 'split-brain', 'split brain on both sides');
}

function side(c: Controller): Record<string, unknown> {
  return (c.pairs?.status() ?? []).find((entry) => entry.name === 'p0') ?? {};
}

function host(c: Controller): PairVolume {
  return c.exportVolume('vol0') as PairVolume;
}

function volume(c: Controller): Volume {
  return c.volume('vol0') as Volume;
}

async function until(w: World, predicate: () => boolean, what: string, maxTimeMs = 20_000): Promise<void> {
  const ok = await w.clock.runUntil(predicate, { maxTimeMs });
  assert.ok(ok, `${what}: not reached; a ${JSON.stringify(side(w.a))}; b ${JSON.stringify(side(w.b))}`);
}

/** Runs the clock until `promise` settles; returns its value (or throws its error). */
async function settle<T>(w: World, promise: Promise<T>): Promise<T> {
  let done = false;
  const watched = promise.finally(() => { done = true; });
  watched.catch(() => undefined);
  assert.ok(await w.clock.runUntil(() => done, { maxTimeMs: 60_000 }), 'the operation did not finish');
  return watched;
}

function identical(w: World): boolean {
  const left = Buffer.alloc(CAPACITY);
  const right = Buffer.alloc(CAPACITY);
  volume(w.a).read(0, left);
  volume(w.b).read(0, right);
  return left.equals(right);
}

function blockOf(c: Controller, index: number): Buffer {
  const data = Buffer.alloc(BLOCK);
  volume(c).read(index * BLOCK, data);
  return data;
}

function pattern(tag: number, index: number): Buffer {
  const data = Buffer.alloc(BLOCK);
  for (let at = 0; at < BLOCK; at += 4) data.writeUInt32LE(((tag << 20) ^ (index * 2654435761)) >>> 0, at);
  return data;
}

/** Writes blocks through the host path; records each write whose ack point resolved. */
function hostWrites(c: Controller, tag: number, indexes: number[], acknowledged: Map<number, Buffer>): void {
  const target = host(c);
  for (const index of indexes) {
    const data = pattern(tag, index);
    const sequence = target.write(index * BLOCK, data);
    const wait = target.writeCompletion(sequence);
    if (wait === null) acknowledged.set(index, data);
    else wait.then(() => acknowledged.set(index, data), () => undefined);
  }
}

/** Crashes controller `id` (regions kept, objects dropped) and returns a function that restarts it. */
function crash(w: World, id: 'a' | 'b'): () => Promise<Controller> {
  // The controller dies first (a SIGKILL acknowledges nothing more), then its network node.
  w[id].crash();
  w.network.crash(id);
  return async () => {
    w.network.restart(id);
    const next = controller(w, id, `${id}-restarted`);
    await next.start();
    w[id] = next;
    return next;
  };
}

describe('82 pair roles on the simulated network', function () {
  this.timeout(60_000);

  it('sync: takeover after the primary crashed keeps every acknowledged write; the old primary comes back demoted, resynced with the changed tracks only; failback', async () => {
    const w = await world('sync', 31);
    try {
      await until(w, () => side(w.a).state === 'mirroring', 'mirroring');
      const acknowledged = new Map<number, Buffer>();
      hostWrites(w.a, 1, Array.from({ length: 64 }, (_, index) => index), acknowledged);
      await w.clock.runFor(200);
      // A second burst, cut by the crash in the middle.
      hostWrites(w.a, 2, Array.from({ length: 64 }, (_, index) => 64 + index), acknowledged);
      await w.clock.runFor(0.5);
      const restartA = crash(w, 'a');
      await until(w, () => side(w.b).state === 'suspended', 'the secondary sees the link down');
      assert.equal(host(w.b).writable, false, 'the secondary is read-only before the takeover');
      await settle(w, w.b.pairs?.takeover('p0') as Promise<unknown>);
      assert.equal(side(w.b).role, 'primary');
      assert.equal(host(w.b).writable, true, 'the new primary takes host writes');
      assert.ok(acknowledged.size >= 64, `acknowledged ${acknowledged.size}`);
      for (const [index, data] of acknowledged) {
        const found = blockOf(w.b, index);
        assert.ok(found.equals(data), `acknowledged block ${index} is on the new primary (found ${found.subarray(0, 8).toString('hex')}, wanted ${data.subarray(0, 8).toString('hex')}; ${JSON.stringify(side(w.b))})`);
      }
      // Writes on the new primary; then the old primary returns.
      const later = new Map<number, Buffer>();
      hostWrites(w.b, 3, [200, 201, 202, 300], later);
      const a2 = await restartA();
      await until(w, () => side(a2).role === 'secondary' && side(w.b).state === 'mirroring' && identical(w), 'old primary demoted and resynced');
      const resynced = (side(w.b).resyncedBytes as number);
      assert.ok(resynced <= 40 * 65536, `the resync moved only the changed tracks (${resynced} bytes of ${CAPACITY})`);
      assert.equal(host(a2).writable, false, 'the demoted primary is read-only');
      assert.throws(() => host(a2).write(0, Buffer.alloc(BLOCK)), (error: { code?: string }) => error.code === 'ERR_PAIR_READ_ONLY');
      // Failback, asked on the old primary's side.
      await settle(w, a2.pairs?.failback('p0') as Promise<unknown>);
      await until(w, () => side(a2).role === 'primary' && side(a2).state === 'mirroring' && side(w.b).role === 'secondary', 'failed back');
      assert.equal(host(a2).writable, true);
      assert.equal(host(w.b).writable, false);
      hostWrites(a2, 4, [5, 6, 7], new Map());
      await until(w, () => identical(w), 'identical after the failback');
      for (const [index, data] of later) assert.ok(blockOf(a2, index).equals(data), `block ${index} written during the takeover survived`);
    } finally {
      await dispose(w);
    }
  });

  it('a takeover behind a partition while the old primary writes: split brain on both sides, nothing overwritten until resolve, then the kept side wins', async () => {
    const w = await world('async', 32);
    try {
      await splitBrainOnBoth(w);
      await w.clock.runFor(1000);
      // Nothing was overwritten on either side.
      assert.ok(blockOf(w.a, 10).equals(pattern(5, 10)) && blockOf(w.b, 20).equals(pattern(6, 20)));
      assert.ok(!blockOf(w.a, 20).equals(pattern(6, 20)) && !blockOf(w.b, 10).equals(pattern(5, 10)));
      assert.equal(host(w.a).writable, true);
      assert.equal(host(w.b).writable, true);
      // Keep the declared secondary's data (the side that took over), asked on the primary's side.
      await settle(w, w.a.pairs?.resolve('p0', 'secondary') as Promise<unknown>);
      await until(w, () => side(w.a).role === 'secondary' && side(w.b).state === 'mirroring' && identical(w), 'resolved');
      assert.ok(blockOf(w.a, 20).equals(pattern(6, 20)), 'the kept side\'s write is on both');
      assert.ok(!blockOf(w.a, 10).equals(pattern(5, 10)), 'the discarded side\'s write is gone');
      assert.ok(blockOf(w.a, 1).equals(pattern(1, 1)), 'what both had before the split stays');
    } finally {
      await dispose(w);
    }
  });

  for (const from of ['a', 'b'] as const) {
    it(`contradictory resolves behind a partition (each side keeps the other's data): split brain again on connect, nothing overwritten; resolve on ${from} keeps one`, async () => {
      const w = await world('async', 35);
      try {
        await splitBrainOnBoth(w);
        w.network.partition('a', 'b');
        w.network.partition('b', 'a');
        await until(w, () => side(w.a).link === 'down' && side(w.b).link === 'down', 'the link is down again');
        // Each operator keeps the other side's data: both discard their own.
        await settle(w, w.a.pairs?.resolve('p0', 'secondary') as Promise<unknown>);
        await settle(w, w.b.pairs?.resolve('p0', 'primary') as Promise<unknown>);
        assert.equal(side(w.a).role, 'secondary');
        assert.equal(side(w.b).role, 'secondary');
        w.network.healAll();
        await until(w, () => side(w.a).state === 'split-brain' && side(w.b).state === 'split-brain', 'split brain again on both sides');
        assert.match(String(side(w.a).reason), /contradictory resolves/);
        assert.match(String(side(w.b).reason), /contradictory resolves/);
        await w.clock.runFor(1000);
        assert.ok(blockOf(w.a, 10).equals(pattern(5, 10)) && blockOf(w.b, 20).equals(pattern(6, 20)), 'nothing was overwritten');
        assert.equal(host(w.a).writable, false);
        assert.equal(host(w.b).writable, false);
        // Two operators at the same moment, each keeping the other side's data once more:
        // neither side is promoted (never two writable primaries), both stay in split brain.
        const both = Promise.allSettled([w.a.pairs?.resolve('p0', 'secondary'), w.b.pairs?.resolve('p0', 'primary')]);
        const outcomes = await settle(w, both);
        for (const outcome of outcomes) {
          assert.equal(outcome.status, 'rejected');
          assert.equal((outcome as PromiseRejectedResult).reason.code, 'ERR_PAIR_BOTH_DISCARDED');
        }
        await w.clock.runFor(500);
        assert.equal(side(w.a).role, 'secondary');
        assert.equal(side(w.b).role, 'secondary');
        assert.equal(side(w.a).state, 'split-brain');
        assert.equal(side(w.b).state, 'split-brain');
        assert.equal(host(w.a).writable || host(w.b).writable, false);
        // A resolve with the link up names the side to keep: the declared primary's data.
        const resolver = from === 'a' ? w.a : w.b;
        await settle(w, resolver.pairs?.resolve('p0', 'primary') as Promise<unknown>);
        await until(w, () => side(w.a).role === 'primary' && side(w.a).state === 'mirroring' && side(w.b).role === 'secondary' && identical(w), 'resolved');
        assert.ok(blockOf(w.b, 10).equals(pattern(5, 10)), 'the kept side\'s write is on both');
        assert.ok(!blockOf(w.b, 20).equals(pattern(6, 20)), 'the discarded side\'s write is gone');
        assert.ok(blockOf(w.b, 1).equals(pattern(1, 1)), 'what both had before the split stays');
        assert.equal(host(w.a).writable, true);
      } finally {
        await dispose(w);
      }
    });
  }

  it('a restarted primary and a restarted secondary each resync about the in-flight window, not the volume', async () => {
    const w = await world('async', 33);
    try {
      await until(w, () => side(w.a).state === 'mirroring', 'mirroring');
      // Fill half the volume and let it mirror.
      for (let index = 0; index < CAPACITY / BLOCK / 2; index += 8) hostWrites(w.a, 1, [index], new Map());
      await until(w, () => identical(w) && (side(w.a).oos as { tracks: number }).tracks === 0, 'mirrored');
      const copied = side(w.a).resyncedBytes as number;
      // Writes in flight, then the primary dies.
      w.network.setLink('a', 'b', { latencyMs: 30 });
      hostWrites(w.a, 2, [3, 700, 900], new Map());
      await w.clock.runFor(5);
      const restartA = crash(w, 'a');
      w.network.setLink('a', 'b', { latencyMs: 0 });
      const a2 = await restartA();
      await until(w, () => side(a2).state === 'mirroring' && identical(w), 'the restarted primary resynced');
      const afterPrimary = side(a2).resyncedBytes as number;
      assert.equal(side(a2).role, 'primary');
      assert.ok(afterPrimary <= 8 * 65536, `the primary's restart resynced ${afterPrimary} bytes (the first copy was ${copied})`);
      // The secondary dies while records are in flight; it restarts from its persisted position.
      w.network.setLink('a', 'b', { latencyMs: 30 });
      hostWrites(a2, 3, [11, 12, 13, 1000], new Map());
      await w.clock.runFor(5);
      const restartB = crash(w, 'b');
      w.network.setLink('a', 'b', { latencyMs: 0 });
      await until(w, () => side(a2).state === 'suspended', 'the primary sees the secondary gone');
      hostWrites(a2, 4, [14], new Map());
      const before = side(a2).resyncedBytes as number;
      await restartB();
      await until(w, () => side(a2).state === 'mirroring' && identical(w), 'the restarted secondary resynced');
      const moved = (side(a2).resyncedBytes as number) - before;
      assert.ok(moved <= 8 * 65536, `the secondary's restart resynced ${moved} bytes, not a full copy`);
      assert.equal(side(w.b).consistency, 'consistent');
    } finally {
      await dispose(w);
    }
  });

  it('refuses a takeover of an inconsistent image without --force, and switches roles when the primary is reachable', async () => {
    const w = await world('async', 34);
    try {
      await until(w, () => side(w.a).state === 'mirroring', 'mirroring');
      hostWrites(w.a, 1, [0, 1], new Map());
      await until(w, () => identical(w), 'identical');
      // Reachable and mirroring: a planned switch.
      await settle(w, w.b.pairs?.takeover('p0') as Promise<unknown>);
      await until(w, () => side(w.b).role === 'primary' && side(w.b).state === 'mirroring' && side(w.a).role === 'secondary', 'switched');
      hostWrites(w.b, 2, [5], new Map());
      await until(w, () => identical(w), 'identical after the switch');
      // A secondary in the middle of a resync is inconsistent: cut the link during one. (An
      // operator's suspension, not a link loss: after a link loss the stream resumes from the
      // journal with no resync.)
      w.b.pairs?.suspend('p0');
      await until(w, () => side(w.b).state === 'suspended', 'suspended');
      for (let index = 100; index < 600; index++) hostWrites(w.b, 3, [index], new Map());
      w.network.setLink('b', 'a', { bandwidthBytesPerSecond: 256 * 1024 });
      w.b.pairs?.resume('p0');
      await until(w, () => side(w.a).state === 'resyncing', 'resyncing');
      w.network.partition('b', 'a');
      w.network.partition('a', 'b');
      await until(w, () => side(w.a).state === 'suspended', 'cut during the resync');
      assert.equal(side(w.a).consistency, 'inconsistent');
      await assert.rejects(settle(w, w.a.pairs?.takeover('p0') as Promise<unknown>), (error: { code?: string }) => error.code === 'ERR_PAIR_STATE');
      await settle(w, w.a.pairs?.takeover('p0', { force: true }) as Promise<unknown>);
      assert.equal(side(w.a).role, 'primary');
    } finally {
      await dispose(w);
    }
  });

  it('creates a pair at run time on both sides, mirrors it, and deletes it: the volumes keep their data and are plain again', async () => {
    const w = await world('async', 35);
    try {
      await until(w, () => side(w.a).state === 'mirroring', 'mirroring');
      // A second volume pair on volumes that exist but are in no pair: vol1 on both.
      const volumes = { a: w.a.volume('vol0') as Volume, b: w.b.volume('vol0') as Volume };
      void volumes;
      assert.throws(() => w.a.pairs?.create({ name: 'p0', volume: 'vol0', peer: 'b', remoteVolume: 'vol0', mode: 'async', role: 'primary' }),
        (error: { code?: string }) => error.code === 'ERR_PAIR_EXISTS');
      assert.throws(() => w.a.pairs?.create({ name: 'p9', volume: 'nope', peer: 'b', remoteVolume: 'vol0', mode: 'async', role: 'primary' }),
        (error: { code?: string }) => error.code === 'ERR_PAIR_BAD_SPEC');
      assert.throws(() => w.b.pairs?.create({ name: 'p9', volume: 'vol0', peer: 'a', remoteVolume: 'vol0', mode: 'async', role: 'secondary' }),
        (error: { code?: string }) => error.code === 'ERR_PAIR_BAD_SPEC', 'a volume is the secondary of one pair only');
      assert.throws(() => w.a.pairs?.create({ name: 'p9', volume: 'vol0', peer: 'zz', remoteVolume: 'vol0', mode: 'async', role: 'primary' }),
        (error: { code?: string }) => error.code === 'ERR_PAIR_BAD_SPEC', 'an unknown peer');
      // Delete p0 on both sides: the volumes are plain and writable again, their data kept.
      hostWrites(w.a, 1, [0, 1], new Map());
      await until(w, () => identical(w), 'identical');
      await settle(w, w.b.pairs?.delete('p0') as Promise<void>);
      await settle(w, w.a.pairs?.delete('p0') as Promise<void>);
      assert.equal(w.a.exportVolume('vol0'), w.a.volume('vol0'), 'the export is the plain volume again');
      assert.ok(blockOf(w.b, 1).equals(pattern(1, 1)), 'the secondary kept its data');
      assert.equal((w.a.volume('vol0') as Volume).listBitmaps().length, 0, 'the tracking bitmaps are gone');
      // Declare it again at run time (the other way round) and let it copy.
      w.b.pairs?.create({ name: 'p1', volume: 'vol0', peer: 'a', remoteVolume: 'vol0', mode: 'sync', role: 'primary' });
      const p1 = (c: Controller): Record<string, unknown> => (c.pairs?.status() ?? []).find((entry) => entry.name === 'p1') ?? {};
      // The primary side first: the peer does not declare it yet, so it waits and asks again.
      await until(w, () => p1(w.b).state === 'suspended' && p1(w.b).reason === 'secondary-error', 'refused by the peer that does not declare it');
      await w.clock.runFor(500);
      w.a.pairs?.create({ name: 'p1', volume: 'vol0', peer: 'b', remoteVolume: 'vol0', mode: 'sync', role: 'secondary' });
      await until(w, () => p1(w.b).state === 'mirroring' && p1(w.a).state === 'mirroring', 'the created pair mirrors');
      hostWrites(w.b, 7, [3], new Map());
      await until(w, () => identical(w), 'identical through the created pair');
      assert.equal(host(w.a).writable, false, 'the new secondary is read-only');
      await settle(w, w.a.pairs?.delete('p1') as Promise<void>);
      await settle(w, w.b.pairs?.delete('p1') as Promise<void>);
    } finally {
      await dispose(w);
    }
  });
});
