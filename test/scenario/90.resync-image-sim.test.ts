// The last consistent image of a resyncing secondary (secondary-pair.ts ImageKeeper, on the
// simulated network and clock): a resync starts by taking a snapshot `resync.<pair>` of the
// secondary; while the resync overwrites the volume out of order the snapshot still reads the
// image from before, status names it, the host exports it; once the secondary is consistent the
// snapshot is deleted. Likewise a demoted old primary keeps its own image (its discarded tail
// readable) until the resync from the new primary completes. Without the option nothing is kept.
import * as assert from 'node:assert/strict';

import { Controller } from '../../src/controller/controller';
import type { PairVolume } from '../../src/replication/pair-volume';
import { SeededRandom } from '../../src/runtime/random';
import { SimNetwork } from '../../src/sim/network';
import { SIM_LINK_TUNING } from '../../src/sim/pair-schedule';
import { SimClock } from '../../src/sim/sim-clock';
import type { Volume } from '../../src/storage/volume';

const CAPACITY = 4 * 1024 * 1024;
const TRACK = 64 * 1024;

interface World {
  clock: SimClock;
  network: SimNetwork;
  a: Controller;
  b: Controller;
}

async function world(options: { keepResyncImages?: boolean; maxQueuedBytes?: number; capacityBytes?: number } = {}): Promise<World> {
  const clock = new SimClock();
  const random = new SeededRandom(9);
  const network = new SimNetwork({ clock, random: random.fork('network') });
  const make = (id: 'a' | 'b'): Controller => new Controller({
    id, network: network.node(id), clock, random: random.fork(id),
    volumes: [{ name: 'vol0', capacityBytes: options.capacityBytes ?? CAPACITY }],
    replication: { ...SIM_LINK_TUNING, listen: { host: id, port: 7000 }, ...(options.maxQueuedBytes === undefined ? {} : { maxQueuedBytes: options.maxQueuedBytes }) },
    peers: [{ id: id === 'a' ? 'b' : 'a', address: { host: id === 'a' ? 'b' : 'a', port: 7000 } }],
    pairs: [{ name: 'p0', mode: 'async', volume: 'vol0', peer: id === 'a' ? 'b' : 'a', remoteVolume: 'vol0', role: id === 'a' ? 'primary' : 'secondary' }],
    ...(options.keepResyncImages === undefined ? {} : { keepResyncImages: options.keepResyncImages }),
  });
  const b = make('b');
  const a = make('a');
  await b.start();
  await a.start();
  return { clock, network, a, b };
}

function side(c: Controller): Record<string, unknown> {
  return c.pairs?.status().find((entry) => entry.name === 'p0') ?? {};
}

async function until(w: World, predicate: () => boolean, what: string): Promise<void> {
  assert.ok(await w.clock.runUntil(predicate, { maxTimeMs: 60_000 }), `${what}: not reached; a ${JSON.stringify(side(w.a).state)} b ${JSON.stringify(side(w.b).state)}`);
}

function fill(c: Controller, tag: number): void {
  const target = c.exportVolume('vol0') as PairVolume;
  for (let at = 0; at < CAPACITY; at += TRACK) target.write(at, Buffer.alloc(TRACK, tag));
}

function image(c: Controller): Buffer {
  const out = Buffer.alloc(CAPACITY);
  (c.volume('vol0') as Volume).read(0, out);
  return out;
}

function snapshotImage(c: Controller, name: string): Buffer {
  const out = Buffer.alloc(CAPACITY);
  c.snapshots.exportOf('vol0', name).read(0, out);
  return out;
}

function snapshotNames(c: Controller): string[] {
  return c.snapshots.list('vol0').flatMap((entry) => entry.snapshots.map((snapshot) => snapshot.name));
}

describe('90 the last consistent image of a resyncing secondary (simulation)', function () {
  this.timeout(60_000);

  it('a resync keeps the secondary\'s consistent image as a snapshot until it is consistent again', async () => {
    const w = await world();
    try {
      await until(w, () => side(w.a).state === 'mirroring', 'mirroring');
      fill(w.a, 1);
      await until(w, () => image(w.b).equals(image(w.a)), 'the secondary holds image 1');
      const before = image(w.b);
      // An operator's suspension (after a link loss the stream resumes from the journal, with
      // no resync, while the held records fit in the journal).
      w.a.pairs?.suspend('p0');
      await until(w, () => side(w.a).state === 'suspended', 'suspended');
      fill(w.a, 2);
      // A slow link: the resync of every track takes a while.
      w.network.setLink('a', 'b', { bandwidthBytesPerSecond: 1024 * 1024 });
      w.a.pairs?.resume('p0');
      await until(w, () => side(w.b).state === 'resyncing' && !image(w.b).equals(before), 'resyncing, part of the way');
      assert.equal(side(w.b).consistency, 'inconsistent');
      assert.equal(side(w.b).lastConsistentImage, 'resync.p0');
      assert.deepEqual(snapshotNames(w.b), ['resync.p0']);
      assert.ok(!image(w.b).equals(image(w.a)), 'the resync is not done yet');
      assert.ok(snapshotImage(w.b, 'resync.p0').equals(before), 'the snapshot reads the image from before the resync');
      w.network.setLink('a', 'b', { bandwidthBytesPerSecond: Infinity });
      await until(w, () => side(w.a).state === 'mirroring' && image(w.b).equals(image(w.a)), 'resynced');
      await until(w, () => snapshotNames(w.b).length === 0, 'the kept image released');
      assert.equal(side(w.b).lastConsistentImage, null);
      assert.equal(side(w.b).consistency, 'consistent');
    } finally {
      await w.a.close();
      await w.b.close();
    }
  });

  it('writes during the pass: the secondary stays inconsistent (its image kept) until it has applied through the pass\'s end', async () => {
    // A volume larger than the link's queue: the pass waits for the link, so host writes land
    // while it reads tracks.
    const big = 48 * 1024 * 1024;
    const w = await world({ maxQueuedBytes: 32 * 1024 * 1024 + 64 * 1024, capacityBytes: big });
    const whole = (c: Controller): Buffer => {
      const out = Buffer.alloc(big);
      (c.volume('vol0') as Volume).read(0, out);
      return out;
    };
    const fillBig = (c: Controller, tag: number): void => {
      const target = c.exportVolume('vol0') as PairVolume;
      for (let at = 0; at < big; at += TRACK) target.write(at, Buffer.alloc(TRACK, tag));
    };
    try {
      await until(w, () => side(w.a).state === 'mirroring', 'mirroring');
      fillBig(w.a, 1);
      const caughtUp = (): boolean => {
        const positions = side(w.a).positions as { journalNext: number; applied: number };
        return side(w.a).state === 'mirroring' && positions.applied === positions.journalNext - 1;
      };
      await until(w, caughtUp, 'the secondary holds image 1');
      w.network.partition('a', 'b', { direction: 'both' });
      await until(w, () => side(w.a).state === 'suspended', 'suspended');
      fillBig(w.a, 2);
      w.network.setLink('a', 'b', { bandwidthBytesPerSecond: 64 * 1024 * 1024 });
      w.network.healAll();
      await until(w, () => side(w.b).state === 'resyncing' && (side(w.a).progress as { doneBytes?: number } | null)?.doneBytes !== undefined
        && ((side(w.a).progress as { doneBytes: number }).doneBytes > 0), 'resyncing');
      // Writes while the pass reads tracks (it waits for the link): some behind its cursor, some
      // ahead; their records follow the pass.
      const target = w.a.exportVolume('vol0') as PairVolume;
      for (let at = 0; at < big; at += 16 * TRACK) target.write(at, Buffer.alloc(TRACK, 5));
      assert.equal(side(w.a).state, 'resyncing', 'the pass ended before the writes');
      await until(w, () => side(w.b).state === 'mirroring', 'the pass is done');
      assert.equal(side(w.b).consistency, 'inconsistent', 'consistent before the records written during the pass were applied');
      assert.deepEqual(snapshotNames(w.b), ['resync.p0'], 'the last consistent image was released too early');
      assert.equal(side(w.b).lastConsistentImage, 'resync.p0');
      w.network.setLink('a', 'b', { bandwidthBytesPerSecond: Infinity });
      await until(w, () => side(w.b).consistency === 'consistent', 'consistent after the catch-up');
      assert.ok(whole(w.b).equals(whole(w.a)));
      await until(w, () => snapshotNames(w.b).length === 0, 'the kept image released');
    } finally {
      await w.a.close();
      await w.b.close();
    }
  });

  it('a demoted old primary keeps its own image (its discarded tail) until the resync from the new primary is done', async () => {
    const w = await world();
    try {
      await until(w, () => side(w.a).state === 'mirroring', 'mirroring');
      fill(w.a, 1);
      await until(w, () => image(w.b).equals(image(w.a)), 'identical');
      w.network.partition('a', 'b', { direction: 'both' });
      await until(w, () => side(w.b).state === 'suspended' && side(w.a).state === 'suspended', 'both see the link down');
      let taken = false;
      void w.b.pairs?.takeover('p0').then(() => { taken = true; });
      await until(w, () => taken, 'takeover');
      fill(w.b, 3);
      const oldPrimary = image(w.a);
      w.network.setLink('b', 'a', { bandwidthBytesPerSecond: 1024 * 1024 });
      w.network.healAll();
      await until(w, () => side(w.a).role === 'secondary' && snapshotNames(w.a).includes('resync.p0'), 'demoted, its image kept');
      assert.ok(snapshotImage(w.a, 'resync.p0').equals(oldPrimary), 'the demoted side\'s image from before the resync');
      w.network.setLink('b', 'a', { bandwidthBytesPerSecond: Infinity });
      await until(w, () => side(w.b).state === 'mirroring' && image(w.a).equals(image(w.b)), 'resynced from the new primary');
      await until(w, () => snapshotNames(w.a).length === 0, 'the kept image released');
    } finally {
      await w.a.close();
      await w.b.close();
    }
  });

  it('keeps nothing with keepResyncImages false', async () => {
    const w = await world({ keepResyncImages: false });
    try {
      await until(w, () => side(w.a).state === 'mirroring', 'mirroring');
      fill(w.a, 1);
      await until(w, () => image(w.b).equals(image(w.a)), 'identical');
      w.network.partition('a', 'b', { direction: 'both' });
      await until(w, () => side(w.a).state === 'suspended', 'suspended');
      fill(w.a, 2);
      w.network.healAll();
      await until(w, () => side(w.a).state === 'mirroring' && image(w.b).equals(image(w.a)), 'resynced');
      assert.deepEqual(snapshotNames(w.b), []);
      assert.equal(side(w.b).lastConsistentImage, null);
    } finally {
      await w.a.close();
      await w.b.close();
    }
  });
});
