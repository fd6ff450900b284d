// Pairs between two controllers on the simulated network and clock: the initial copy moves only
// allocated data, async and sync pairs mirror every write in order, a sync write completes only
// once applied on the secondary, a partition suspends the pair (writes go on, recorded in the
// OOS bitmap) and healing resumes the stream from the journal's hold (or, without a hold or
// past it, resyncs only the dirty tracks), a fenced sync pair fails host writes
// while cut off, a full journal suspends with journal-full and recovers, and the secondary
// refuses what it did not declare.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { Controller } from '../../src/controller/controller';
import type { PairSpec } from '../../src/replication/pairs';
import type { PairVolume } from '../../src/replication/pair-volume';
import type { ReplicatedVolume } from '../../src/replication/replicated-volume';
import { SeededRandom } from '../../src/runtime/random';
import { SimNetwork } from '../../src/sim/network';
import { SIM_LINK_TUNING } from '../../src/sim/pair-schedule';
import { SimClock } from '../../src/sim/sim-clock';
import { Volume } from '../../src/storage/volume';
import { MAX_RECORDS_PREFIX_BYTES, RECORD_HEADER_BYTES } from '../../src/replication/messages';
import { SendPool } from '../../src/transport/send-pool';

const TUNING = SIM_LINK_TUNING;
const CAPACITY = 8 * 1024 * 1024;

interface World {
  clock: SimClock;
  network: SimNetwork;
  a: Controller;
  b: Controller;
  /** Replaced when the secondary restarts. */
  primary: PairVolume;
  secondary: Volume;
  random: SeededRandom;
}

async function world(pair: Partial<PairSpec> = {}, options: {
  journalCapacityBytes?: number; seed?: number;
  /** More of the primary's volume spec (a file volume: its journal is a file beside it). */
  primaryVolume?: Record<string, unknown>;
} = {}): Promise<World> {
  const clock = new SimClock();
  const random = new SeededRandom(options.seed ?? 11);
  const network = new SimNetwork({ clock, random: random.fork('network') });
  const spec = { name: 'p0', mode: 'async' as const, ...pair };
  const a = new Controller({
    id: 'a', network: network.node('a'), clock, random: random.fork('a'),
    volumes: [{ name: 'vol0', capacityBytes: CAPACITY, ...options.primaryVolume }],
    replication: { ...TUNING, listen: { host: 'a', port: 7000 } },
    peers: [{ id: 'b', address: { host: 'b', port: 7000 } }],
    pairs: [{ ...spec, volume: 'vol0', peer: 'b', remoteVolume: 'vol0', role: 'primary' }],
    ...(options.journalCapacityBytes === undefined ? {} : { journal: { journalCapacityBytes: options.journalCapacityBytes } }),
  });
  const b = new Controller({
    id: 'b', network: network.node('b'), clock, random: random.fork('b'),
    volumes: [{ name: 'vol0', capacityBytes: CAPACITY }],
    replication: { ...TUNING, listen: { host: 'b', port: 7000 } },
    peers: [{ id: 'a', address: { host: 'a', port: 7000 } }],
    pairs: [{ name: spec.name, mode: spec.mode, volume: 'vol0', peer: 'a', remoteVolume: 'vol0', role: 'secondary' }],
  });
  await b.start();
  await a.start();
  return { clock, network, a, b, primary: a.exportVolume('vol0') as PairVolume, secondary: b.volume('vol0') as Volume, random };
}

function state(w: World): string {
  return w.a.pairs?.primary('p0').currentState ?? 'none';
}

async function until(w: World, predicate: () => boolean, what: string, maxTimeMs = 10_000): Promise<void> {
  const ok = await w.clock.runUntil(predicate, { maxTimeMs });
  assert.ok(ok, `${what}: not reached; pair ${JSON.stringify(w.a.pairs?.primary('p0').status())}`);
}

function identical(w: World): boolean {
  const left = Buffer.alloc(CAPACITY);
  const right = Buffer.alloc(CAPACITY);
  w.primary.read(0, left);
  w.secondary.read(0, right);
  return left.equals(right);
}

function randomWrite(w: World): void {
  const blocks = CAPACITY / 4096;
  const offset = w.random.int(blocks - 4) * 4096;
  const data = Buffer.alloc(4096 * (1 + w.random.int(3)), w.random.int(256));
  w.primary.write(offset, data);
}

async function close(w: World): Promise<void> {
  await w.a.close();
  await w.b.close();
}

/** A two-way partition; once the pair is suspended, `blocks` distinct 4 KiB writes on the primary. */
async function outageWithWrites(w: World, blocks: number): Promise<void> {
  w.network.partition('a', 'b', { direction: 'both' });
  await until(w, () => state(w) === 'suspended', 'suspended');
  for (let index = 0; index < blocks; index++) w.primary.write(index * 4096, Buffer.alloc(4096, index + 1));
}

describe('81 pairs on the simulated network', () => {
  // The pumps' reused send buffers (transport/send-pool.ts, default batch size): each one lent
  // for a message comes back once the wire has it, whatever the test did to the pair.
  const pool = SendPool.shared(MAX_RECORDS_PREFIX_BYTES + 1024 * 1024 + RECORD_HEADER_BYTES * 1024);
  let reusedBefore = 0;
  before(() => {
    reusedBefore = pool.stats().reused;
  });
  afterEach(() => assert.equal(pool.stats().lent, 0, 'every send buffer lent came back'));
  after(() => assert.ok(pool.stats().reused > reusedBefore, `the pumps reused their send buffers: ${JSON.stringify(pool.stats())}`));
  it('copy only allocated data first, then mirror async writes in order until both sides are identical', async () => {
    const clock = new SimClock();
    void clock;
    const w = await world();
    await until(w, () => state(w) === 'mirroring', 'mirroring');
    // The volume was empty: the copy moved nothing.
    assert.equal(w.a.pairs?.primary('p0').resyncedBytes, 0);
    for (let index = 0; index < 200; index++) randomWrite(w);
    w.primary.writeZeroes(0, 65536);
    w.primary.trim(65536 * 3, 65536);
    const behind = w.a.pairs?.primary('p0').status().lag as { records: number; bytes: number; seconds: number };
    assert.ok(behind.records > 0 && behind.bytes > 0, `lag right after the writes: ${JSON.stringify(behind)}`);
    await w.clock.runFor(0.5);
    assert.ok((w.a.pairs?.primary('p0').status().lag as { seconds: number }).seconds > 0, 'lag in seconds grows while behind');
    await until(w, () => (w.a.pairs?.primary('p0').status().lag as { records: number }).records === 0, 'caught up');
    const caught = w.a.pairs?.primary('p0').status().lag as { bytes: number; seconds: number };
    assert.deepEqual([caught.bytes, caught.seconds], [0, 0]);
    assert.ok(identical(w));
    // The caught-up clear runs at most every rotateIntervalMs (50 ms): the last report's check
    // comes at the end of that interval.
    await w.clock.runFor(60);
    const status = w.a.pairs?.primary('p0').status() as Record<string, unknown>;
    assert.equal(status.consistency, 'consistent');
    assert.equal((status.oos as { tracks: number }).tracks, 0, 'OOS cleared once caught up');
    assert.equal((w.b.pairs?.secondary('p0')?.status() as Record<string, unknown>).consistency, 'consistent');
    await close(w);
  });

  it('copy a volume with data: the tracks written before the pair existed travel, holes do not', async () => {
    const w = await world({}, { seed: 3 });
    // Written before the link came up: only these tracks are copied.
    w.primary.write(0, Buffer.alloc(4096, 1));
    w.primary.write(1024 * 1024, Buffer.alloc(4096, 2));
    await until(w, () => state(w) === 'mirroring', 'mirroring');
    await until(w, () => identical(w), 'identical');
    assert.ok((w.a.pairs?.primary('p0').resyncedBytes ?? 0) <= 2 * 65536, `copied ${w.a.pairs?.primary('p0').resyncedBytes}`);
    await close(w);
  });

  it('complete a sync write only after the secondary applied it', async () => {
    const w = await world({ mode: 'sync' });
    await until(w, () => state(w) === 'mirroring', 'mirroring');
    const sequence = w.primary.write(8192, Buffer.alloc(4096, 7));
    const wait = w.primary.writeCompletion(sequence);
    assert.ok(wait !== null, 'a sync write waits');
    let done = false;
    void wait.then(() => {
      done = true;
    });
    const check = Buffer.alloc(4096);
    w.secondary.read(8192, check);
    assert.equal(check[0], 0, 'not on the secondary yet');
    await until(w, () => done, 'the ack');
    w.secondary.read(8192, check);
    assert.equal(check[0], 7, 'applied before the ack');
    await close(w);
  });

  it('suspend on a partition without blocking writes, then resync only the dirty tracks (no journal hold)', async () => {
    const w = await world({ mode: 'sync', journalHold: 0 });
    await until(w, () => state(w) === 'mirroring', 'mirroring');
    for (let index = 0; index < 50; index++) randomWrite(w);
    await until(w, () => identical(w) && (w.a.pairs?.primary('p0').status().oos as { tracks: number }).tracks === 0,
      'identical, and the OOS bitmap cleared, before the partition');
    w.network.partition('a', 'b', { direction: 'both' });
    await until(w, () => state(w) === 'suspended', 'suspended');
    assert.equal(w.a.pairs?.primary('p0').status().reason, 'link-down');
    // Host writes go on and complete at once (fence never).
    const resyncedBefore = w.a.pairs?.primary('p0').resyncedBytes ?? 0;
    const dirtyOffsets = [0, 65536 * 10, 65536 * 20];
    for (const offset of dirtyOffsets) {
      const sequence = w.primary.write(offset, Buffer.alloc(4096, 9));
      assert.equal(w.primary.writeCompletion(sequence), null, 'completes at once while suspended');
    }
    assert.equal((w.a.pairs?.primary('p0').status().oos as { tracks: number }).tracks >= 3, true);
    assert.equal((w.b.pairs?.secondary('p0')?.status() as Record<string, unknown>).consistency, 'outdated');
    w.network.healAll();
    await until(w, () => state(w) === 'mirroring' && identical(w), 'resynced and identical');
    await until(w, () => (w.a.pairs?.primary('p0').status().lag as { records: number }).records === 0 &&
      (w.a.pairs?.primary('p0').status().journal as { recordCount: number }).recordCount === 0, 'no lag, and the journal released');
    const moved = (w.a.pairs?.primary('p0').resyncedBytes ?? 0) - resyncedBefore;
    assert.ok(moved > 0, 'a bitmap resync moved the dirty tracks');
    assert.ok(moved <= dirtyOffsets.length * 65536 + 65536 * 4, `resync moved ${moved} bytes, not about 3 tracks`);
    assert.equal(w.a.pairs?.primary('p0').resumedCount, 0);
    await close(w);
  });

  for (const mode of ['sync', 'async'] as const) {
    it(`${mode}: after a partition the stream resumes from the journal's hold: nothing resynced, the secondary consistent throughout`, async () => {
      const w = await world({ mode });
      await until(w, () => state(w) === 'mirroring', 'mirroring');
      for (let index = 0; index < 50; index++) randomWrite(w);
      await until(w, () => identical(w), 'identical before the partition');
      const consistencies = new Set<string>();
      const secondary = w.b.pairs?.secondary('p0');
      secondary?.on('state', () => consistencies.add(secondary.consistency));
      const generationBefore = (w.a.pairs?.primary('p0').status().generations as { current: string }).current;
      w.network.partition('a', 'b', { direction: 'both' });
      await until(w, () => state(w) === 'suspended', 'suspended');
      // Writes while cut off: a new generation on the primary, every write kept in the journal.
      for (let index = 0; index < 40; index++) randomWrite(w);
      w.primary.writeZeroes(65536 * 7, 65536);
      w.primary.trim(65536 * 9, 65536);
      const held = w.a.pairs?.primary('p0').status() as { journal: { recordCount: number }; generations: { current: string; bitmap: string } };
      assert.ok(held.journal.recordCount >= 42, `the journal holds the writes of the outage: ${JSON.stringify(held.journal)}`);
      assert.notEqual(held.generations.current, generationBefore, 'a new generation at the first write while cut off');
      assert.equal(held.generations.bitmap, generationBefore);
      assert.equal(w.b.pairs?.secondary('p0')?.consistency, 'outdated');
      w.network.healAll();
      await until(w, () => state(w) === 'mirroring' && identical(w), 'resumed and identical');
      const primary = w.a.pairs?.primary('p0');
      assert.equal(primary?.resumedCount, 1, 'resumed from the journal');
      assert.equal(primary?.resyncedBytes, 0, 'nothing resynced');
      assert.equal(secondary?.resumedCount, 1);
      assert.ok(!consistencies.has('inconsistent'), `the secondary was never inconsistent: ${[...consistencies].join(', ')}`);
      assert.equal(secondary?.consistency, 'consistent');
      // Both sides took the primary's new generation, and the bitmap generation went to history.
      const after = primary?.status().generations as { current: string; bitmap: string; history: string[] };
      const peer = secondary?.status().generations as { current: string; bitmap: string };
      assert.equal(after.current, held.generations.current);
      assert.equal(Number.parseInt(after.bitmap, 16), 0);
      assert.equal(after.history[0], generationBefore);
      assert.equal(peer.current, after.current);
      await until(w, () => (primary?.status().journal as { recordCount: number }).recordCount === 0 &&
        (primary?.status().oos as { tracks: number }).tracks === 0, 'the journal released and the OOS cleared once caught up');
      // A second outage resumes as well.
      w.network.partition('a', 'b', { direction: 'both' });
      await until(w, () => state(w) === 'suspended', 'suspended again');
      for (let index = 0; index < 10; index++) randomWrite(w);
      w.network.healAll();
      await until(w, () => state(w) === 'mirroring' && identical(w), 'resumed again');
      assert.equal(primary?.resumedCount, 2);
      assert.equal(primary?.resyncedBytes, 0);
      await close(w);
    });
  }

  it('a hold over journalHold of the ring is given up: the pair resyncs from its bitmap, and a fan-out sibling never sees the journal full', async () => {
    const w = await world({ journalHold: 0.25 }, { journalCapacityBytes: 1024 * 1024 });
    await until(w, () => state(w) === 'mirroring', 'mirroring');
    // About 400 KiB of records: past a quarter of the 1 MiB ring, far from full.
    await outageWithWrites(w, 100);
    const status = w.a.pairs?.primary('p0').status() as { journal: { recordCount: number; fullCount: number } };
    assert.equal(status.journal.fullCount, 0, 'the journal never filled');
    assert.ok(status.journal.recordCount < 100, `the hold was given up and the records released: ${JSON.stringify(status.journal)}`);
    w.network.healAll();
    await until(w, () => state(w) === 'mirroring' && identical(w), 'resynced and identical');
    assert.equal(w.a.pairs?.primary('p0').resumedCount, 0, 'no resume');
    assert.ok((w.a.pairs?.primary('p0').resyncedBytes ?? 0) > 0, 'a bitmap resync');
    await close(w);
  });

  it('a journal that fills during the outage ends the hold: writes past it are in no record, so the pair resyncs', async () => {
    const w = await world({ journalHold: 1 }, { journalCapacityBytes: 256 * 1024 });
    await until(w, () => state(w) === 'mirroring', 'mirroring');
    await outageWithWrites(w, 100);
    await w.clock.runFor(0.1);
    const status = w.a.pairs?.primary('p0').status() as { journal: { fullCount: number } };
    assert.ok(status.journal.fullCount > 0, 'the journal filled');
    w.network.healAll();
    await until(w, () => state(w) === 'mirroring' && identical(w), 'resynced and identical');
    assert.equal(w.a.pairs?.primary('p0').resumedCount, 0, 'no resume past a full journal');
    await close(w);
  });

  it('fail host writes of a fenced sync pair while its secondary is unreachable', async () => {
    const w = await world({ mode: 'sync', fence: 'data' });
    await until(w, () => state(w) === 'mirroring', 'mirroring');
    w.network.partition('a', 'b', { direction: 'both' });
    await until(w, () => state(w) === 'suspended', 'suspended');
    const sequence = w.primary.write(0, Buffer.alloc(4096, 5));
    const wait = w.primary.writeCompletion(sequence);
    assert.ok(wait !== null);
    await assert.rejects(wait, (error: unknown) => (error as { code?: string }).code === 'ERR_PAIR_FENCED');
    w.network.healAll();
    await until(w, () => state(w) === 'mirroring' && identical(w), 'resynced');
    await close(w);
  });

  it('suspend with journal-full behind a slow link, then recover by bitmap resync', async () => {
    const w = await world({}, { journalCapacityBytes: 256 * 1024 });
    await until(w, () => state(w) === 'mirroring', 'mirroring');
    w.network.setLink('a', 'b', { bandwidthBytesPerSecond: 64 * 1024 });
    for (let index = 0; index < 200; index++) randomWrite(w);
    await until(w, () => w.a.pairs?.primary('p0').status().reason === 'journal-full' || state(w) === 'suspended', 'journal-full');
    w.network.setLink('a', 'b', { bandwidthBytesPerSecond: Infinity });
    await until(w, () => state(w) === 'mirroring' && identical(w), 'recovered', 60_000);
    await close(w);
  });

  it('a journal record damaged before it is shipped never lands: the secondary refuses its frame, the resumed stream checks the journal and finds it, the pair resyncs', async () => {
    // The pump sends records without checking the journal's copies against their CRCs (the
    // frame's CRC is combined from them, and the secondary checks it). A record damaged in the
    // ring before the pump reads it goes out as it is; the secondary refuses the frame, the
    // stream resumes from the hold and checks what the journal held, which finds the damage.
    const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'bm-sim81-'));
    const imagePath = path.join(directory, 'a.img');
    try {
      const w = await world({}, { primaryVolume: { backing: 'file', path: imagePath } });
      await until(w, () => state(w) === 'mirroring', 'mirroring');
      for (let index = 0; index < 20; index++) randomWrite(w);
      await until(w, () => identical(w), 'identical before');
      const downs: { reason: string; code?: string }[] = [];
      w.b.link('a').on('state', (event: { new: string; reason: string; code?: string }) => {
        if (event.new === 'down') downs.push({ reason: event.reason, ...(event.code === undefined ? {} : { code: event.code }) });
      });
      const marker = Buffer.alloc(65536);
      for (let at = 0; at < marker.length; at += 16) marker.write('damaged-record!!', at, 'latin1');
      w.primary.write(100 * 65536, marker);
      // Before the pump runs (the simulator's clock defers it to a microtask): flip one byte of
      // the record's copy in the journal's ring (a file, mapped shared).
      const journalFile = fs.readFileSync(`${imagePath}.journal`);
      const at = journalFile.indexOf(marker);
      assert.ok(at > 0, 'the record is in the journal file');
      const descriptor = fs.openSync(`${imagePath}.journal`, 'r+');
      fs.writeSync(descriptor, Buffer.from([(journalFile[at + 1000] as number) ^ 0x40]), 0, 1, at + 1000);
      fs.closeSync(descriptor);
      await until(w, () => w.a.pairs?.primary('p0').status().reason === 'journal-full', 'the resumed stream found the damaged record', 60_000);
      assert.match(String(w.a.pairs?.primary('p0').status().detail), /checksum/);
      assert.deepEqual(downs[0], { reason: 'protocol-error', code: 'ERR_LINK_CHECKSUM' }, `the secondary refused the damaged frame: ${JSON.stringify(downs)}`);
      await until(w, () => state(w) === 'mirroring' && identical(w), 'resynced and identical', 60_000);
      const landed = Buffer.alloc(65536);
      w.secondary.read(100 * 65536, landed);
      assert.deepEqual(landed, marker, 'the secondary holds the volume\'s bytes, not the damaged copy');
      assert.ok((w.a.pairs?.primary('p0').resyncedBytes ?? 0) > 0, 'a resync moved it');
      await close(w);
    } finally {
      fs.rmSync(directory, { recursive: true, force: true });
    }
  });

  it('a write larger than a journal record can be suspends with journal-full (never missed), then resyncs', async () => {
    const w = await world({}, { journalCapacityBytes: 256 * 1024 });
    await until(w, () => state(w) === 'mirroring', 'mirroring');
    // 128 KiB is over this journal's largest record (capacity / 4 = 64 KiB): no record at all.
    assert.equal(w.primary.write(8192, Buffer.alloc(128 * 1024, 0x7e)), Volume.JOURNAL_FULL);
    await until(w, () => w.a.pairs?.primary('p0').status().reason === 'journal-full', 'journal-full');
    await until(w, () => state(w) === 'mirroring' && identical(w), 'resynced, identical');
    await close(w);
  });

  it('resume a journal-full suspension whose resume attempt met a dead link, once the link is back', async () => {
    const w = await world({}, { journalCapacityBytes: 256 * 1024 });
    await until(w, () => state(w) === 'mirroring', 'mirroring');
    // A black-holed link: still up for a while, then dead; meanwhile the journal fills.
    w.a.setLinkFaults('b', { partition: true });
    for (let index = 0; index < 200; index++) randomWrite(w);
    await until(w, () => w.a.pairs?.primary('p0').status().reason === 'journal-full', 'journal-full');
    await until(w, () => !w.a.link('b').isUp, 'the link declared dead');
    w.a.healLink('b');
    await until(w, () => state(w) === 'mirroring' && identical(w), 'mirroring again, identical');
    await close(w);
  });

  it('give a restarted secondary a first copy again, never a resync of dirty tracks only', async () => {
    const w = await world();
    await until(w, () => state(w) === 'mirroring', 'mirroring');
    for (let index = 0; index < 40; index++) randomWrite(w);
    await until(w, () => identical(w), 'identical');
    // The secondary's process dies: its memory volume is gone; a new one starts empty.
    w.network.crash('b');
    w.b.crash();
    w.network.restart('b');
    await until(w, () => state(w) === 'suspended', 'suspended');
    w.primary.write(0, Buffer.alloc(4096, 0xee));
    const b2 = new Controller({
      id: 'b', network: w.network.node('b'), clock: w.clock, random: w.random.fork('b2'),
      volumes: [{ name: 'vol0', capacityBytes: CAPACITY }],
      replication: { ...TUNING, listen: { host: 'b', port: 7000 } },
      peers: [{ id: 'a', address: { host: 'a', port: 7000 } }],
      pairs: [{ name: 'p0', mode: 'async', volume: 'vol0', peer: 'a', remoteVolume: 'vol0', role: 'secondary' }],
    });
    await b2.start();
    w.b = b2;
    w.secondary = b2.volume('vol0') as Volume;
    await until(w, () => state(w) === 'mirroring' && identical(w), 'a full copy, then identical');
    await close(w);
  });

  it('fan out: one primary volume, a sync and an async secondary sharing its journal, both identical', async () => {
    const clock = new SimClock();
    const random = new SeededRandom(21);
    const network = new SimNetwork({ clock, random: random.fork('network') });
    const node = (id: string, peers: string[], pairs: PairSpec[]): Controller => new Controller({
      id, network: network.node(id), clock, random: random.fork(id),
      volumes: [{ name: 'vol0', capacityBytes: CAPACITY }],
      replication: { ...TUNING, listen: { host: id, port: 7000 } },
      peers: peers.map((peer) => ({ id: peer, address: { host: peer, port: 7000 } })),
      pairs,
    });
    const a = node('a', ['b', 'c'], [
      { name: 'to-b', volume: 'vol0', peer: 'b', remoteVolume: 'vol0', mode: 'sync', role: 'primary' },
      { name: 'to-c', volume: 'vol0', peer: 'c', remoteVolume: 'vol0', mode: 'async', role: 'primary' },
    ]);
    const b = node('b', ['a'], [{ name: 'to-b', volume: 'vol0', peer: 'a', remoteVolume: 'vol0', mode: 'sync', role: 'secondary' }]);
    const c = node('c', ['a'], [{ name: 'to-c', volume: 'vol0', peer: 'a', remoteVolume: 'vol0', mode: 'async', role: 'secondary' }]);
    await b.start();
    await c.start();
    await a.start();
    const primary = a.pairs?.replicatedVolume('vol0') as ReplicatedVolume;
    const mirroring = (): boolean => a.pairs?.primary('to-b').currentState === 'mirroring' && a.pairs?.primary('to-c').currentState === 'mirroring';
    assert.ok(await clock.runUntil(mirroring, { maxTimeMs: 5000 }));
    // The slower async secondary holds the shared journal; the sync one never waits for it.
    network.setLink('a', 'c', { latencyMs: 20 });
    for (let index = 0; index < 100; index++) {
      const offset = random.int(CAPACITY / 4096 - 1) * 4096;
      primary.write(offset, Buffer.alloc(4096, 1 + random.int(250)));
    }
    const same = (volume: Volume): boolean => {
      const left = Buffer.alloc(CAPACITY);
      const right = Buffer.alloc(CAPACITY);
      primary.volume.read(0, left);
      volume.read(0, right);
      return left.equals(right);
    };
    assert.ok(await clock.runUntil(() => same(b.volume('vol0') as Volume), { maxTimeMs: 5000 }), 'the sync secondary');
    assert.ok((primary.journal.stats().recordCount) > 0, 'the async pair still holds records');
    assert.ok(await clock.runUntil(() => same(c.volume('vol0') as Volume) && primary.journal.stats().recordCount === 0,
      { maxTimeMs: 10_000 }), 'the async secondary, then the journal released');
    await a.close();
    await b.close();
    await c.close();
  });

  it('refuse a pair the secondary did not declare, and change nothing', async () => {
    const clock = new SimClock();
    const random = new SeededRandom(5);
    const network = new SimNetwork({ clock, random: random.fork('network') });
    const a = new Controller({
      id: 'a', network: network.node('a'), clock, random: random.fork('a'),
      volumes: [{ name: 'vol0', capacityBytes: CAPACITY }],
      replication: { ...TUNING, listen: { host: 'a', port: 7000 } },
      peers: [{ id: 'b', address: { host: 'b', port: 7000 } }],
      pairs: [{ name: 'sneaky', mode: 'async', volume: 'vol0', peer: 'b', remoteVolume: 'vol0', role: 'primary' }],
    });
    const b = new Controller({
      id: 'b', network: network.node('b'), clock, random: random.fork('b'),
      volumes: [{ name: 'vol0', capacityBytes: CAPACITY }],
      replication: { ...TUNING, listen: { host: 'b', port: 7000 } },
      peers: [{ id: 'a', address: { host: 'a', port: 7000 } }],
    });
    await b.start();
    await a.start();
    (a.exportVolume('vol0') as PairVolume).write(0, Buffer.alloc(4096, 1));
    const ok = await clock.runUntil(() => a.pairs?.primary('sneaky').currentState === 'suspended', { maxTimeMs: 5000 });
    assert.ok(ok);
    assert.equal(a.pairs?.primary('sneaky').status().reason, 'secondary-error', JSON.stringify(a.pairs?.primary('sneaky').status()));
    assert.match(String(a.pairs?.primary('sneaky').status().detail), /ERR_PAIR_UNKNOWN/);
    const check = Buffer.alloc(4096);
    (b.volume('vol0') as Volume).read(0, check);
    assert.equal(check[0], 0, 'nothing was written to the undeclared secondary');
    await a.close();
    await b.close();
  });
});
