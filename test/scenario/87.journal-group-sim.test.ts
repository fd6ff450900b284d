// Journal groups on the simulated network and clock (src/replication/journal-group.ts): two
// volumes whose pairs share one journal are applied on the secondary in one write order, so the
// secondary image is a write-order prefix of the group at every instant, also when one member
// is suspended (the group suspends as one) and across a partition, a full journal and a
// restart of the primary. The same workload without the group runs one volume ahead of the
// other (the check can fail). Bad group batches are refused as a whole, nothing applied.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { Controller } from '../../src/controller/controller';
import { MessageType } from '../../src/transport/message-types';
import type { Generations } from '../../src/replication/generations';
import { encodeGroupPromote, encodeGroupRecords, encodeName, encodeRecords } from '../../src/replication/messages';
import { type PairSpec, groupProblem } from '../../src/replication/pairs';
import { PairError } from '../../src/replication/pair-state';
import type { PairVolume } from '../../src/replication/pair-volume';
import { SeededRandom } from '../../src/runtime/random';
import { SimNetwork } from '../../src/sim/network';
import { SIM_LINK_TUNING } from '../../src/sim/pair-schedule';
import { SimClock } from '../../src/sim/sim-clock';
import { Journal } from '../../src/storage/journal';
import { Region } from '../../src/storage/region';
import { Volume } from '../../src/storage/volume';
import { SnapshotStore } from '../../src/storage/snapshot';

const CAPACITY = 1024 * 1024;
const BLOCK = 4096;
const BLOCKS = CAPACITY / BLOCK;
const VOLUMES = ['log', 'data'] as const;

interface World {
  clock: SimClock;
  network: SimNetwork;
  a: Controller;
  b: Controller;
  grouped: boolean;
  random: SeededRandom;
}

function specs(role: 'primary' | 'secondary', peer: string, grouped: boolean, mode: 'sync' | 'async'): PairSpec[] {
  return VOLUMES.map((volume) => ({
    name: `g-${volume}`, volume, peer, remoteVolume: volume, mode, role, ...(grouped ? { journalGroup: 'db' } : {}),
  }));
}

function controllerA(w: Pick<World, 'clock' | 'network' | 'grouped' | 'random'>, options: { mode?: 'sync' | 'async'; journalCapacityBytes?: number } = {}): Controller {
  return new Controller({
    id: 'a', network: w.network.node('a'), clock: w.clock, random: w.random.fork('a'),
    volumes: VOLUMES.map((name) => ({ name, capacityBytes: CAPACITY })),
    replication: { ...SIM_LINK_TUNING, listen: { host: 'a', port: 7000 } },
    peers: [{ id: 'b', address: { host: 'b', port: 7000 } }],
    pairs: specs('primary', 'b', w.grouped, options.mode ?? 'async'),
    ...(options.journalCapacityBytes === undefined ? {} : { journal: { journalCapacityBytes: options.journalCapacityBytes } }),
  });
}

async function world(grouped: boolean, options: { mode?: 'sync' | 'async'; journalCapacityBytes?: number; seed?: number } = {}): Promise<World> {
  const clock = new SimClock();
  const random = new SeededRandom(options.seed ?? 21);
  const network = new SimNetwork({ clock, random: random.fork('network') });
  const base = { clock, network, grouped, random };
  const a = controllerA(base, options);
  const b = new Controller({
    id: 'b', network: network.node('b'), clock, random: random.fork('b'),
    volumes: VOLUMES.map((name) => ({ name, capacityBytes: CAPACITY })),
    replication: { ...SIM_LINK_TUNING, listen: { host: 'b', port: 7000 } },
    peers: [{ id: 'a', address: { host: 'a', port: 7000 } }],
    pairs: specs('secondary', 'a', grouped, options.mode ?? 'async'),
  });
  await b.start();
  await a.start();
  return { ...base, a, b };
}

function states(w: World): string[] {
  return VOLUMES.map((volume) => w.a.pairs?.primary(`g-${volume}`).currentState ?? 'none');
}

async function until(w: World, predicate: () => boolean, what: string, maxTimeMs = 20_000): Promise<void> {
  const ok = await w.clock.runUntil(predicate, { maxTimeMs });
  const brief = (c: Controller): unknown => (c.pairs?.status() ?? []).map((pair) => `${String(pair.name)}:${String(pair.role)}:${String(pair.state)}(${String(pair.reason)}${pair.detail === undefined ? '' : `: ${String(pair.detail)}`})`);
  assert.ok(ok, `${what}: not reached; a ${JSON.stringify(brief(w.a))}; b ${JSON.stringify(brief(w.b))}`);
}

/** Starts `run`, lets `meanwhile` act on the simulation, then runs the clock until `run` settles. */
async function settle<T>(w: World, what: string, run: () => Promise<T>, meanwhile?: () => Promise<void>): Promise<{ value?: T; error?: unknown }> {
  const outcome: { value?: T; error?: unknown; done?: boolean } = {};
  void run().then((value) => { outcome.value = value; outcome.done = true; }, (error: unknown) => { outcome.error = error; outcome.done = true; });
  await meanwhile?.();
  await until(w, () => outcome.done === true, what);
  return outcome;
}

/** The content of step `step` of the workload on `volume`: the stamp and the volume's index. */
function content(volume: number, step: number): Buffer {
  const data = Buffer.alloc(BLOCK);
  for (let at = 0; at < BLOCK; at += 8) {
    data.writeUInt32LE(step + 1, at);
    data.writeUInt32LE(volume + 1, at + 4);
  }
  return data;
}

/** The workload's global order: step i writes log block i, then data block i. */
function writeStep(w: World, step: number): void {
  VOLUMES.forEach((volume, index) => (w.a.exportVolume(volume) as PairVolume).write((step % BLOCKS) * BLOCK, content(index, step)));
}

/** How many leading blocks of the secondary's `volume` hold the workload's steps; -1 if anything else is there. */
function prefixLength(w: World, index: number): number {
  const volume = w.b.volume(VOLUMES[index] as string) as Volume;
  const all = Buffer.alloc(CAPACITY);
  volume.read(0, all);
  let length = 0;
  while (length < BLOCKS && all.subarray(length * BLOCK, (length + 1) * BLOCK).equals(content(index, length))) length++;
  for (let at = length * BLOCK; at < CAPACITY; at++) if (all[at] !== 0) return -1;
  return length;
}

/**
 * Whether the secondary's two volumes together are a write-order prefix of the workload
 * (log 0, data 0, log 1, data 1, ...): the data volume holds as many steps as the log or one fewer.
 */
function writeOrderPrefix(w: World): { ok: boolean; log: number; data: number } {
  const log = prefixLength(w, 0);
  const data = prefixLength(w, 1);
  return { ok: log >= 0 && data >= 0 && (data === log || data === log - 1), log, data };
}

function identical(w: World): boolean {
  return VOLUMES.every((name) => {
    const left = Buffer.alloc(CAPACITY);
    const right = Buffer.alloc(CAPACITY);
    (w.a.exportVolume(name) as PairVolume).read(0, left);
    (w.b.volume(name) as Volume).read(0, right);
    return left.equals(right);
  });
}

/** Runs `steps` workload steps from `first`, a little simulated time after each, checking the prefix after each. */
async function runChecked(w: World, first: number, steps: number, during?: (step: number) => void): Promise<{ violations: number; worst: string; seen: number }> {
  let violations = 0;
  let worst = '';
  const seen = new Set<string>();
  for (let step = first; step < first + steps; step++) {
    writeStep(w, step);
    during?.(step);
    await w.clock.runFor(0.5 + w.random.int(3));
    const prefix = writeOrderPrefix(w);
    seen.add(`${prefix.log}/${prefix.data}`);
    if (!prefix.ok) {
      violations++;
      worst = `after step ${step}: log ${prefix.log}, data ${prefix.data}`;
    }
  }
  return { violations, worst, seen: seen.size };
}

async function close(w: World): Promise<void> {
  await w.a.close();
  await w.b.close();
}

let worldCounter = 0;

/** Controller `id` of a world whose volumes are shared (they outlive a crash), in its declared role. */
/** A controller of the group on volumes that outlive it (`volumes` names their specs). */
function persistentController(w: World, id: 'a' | 'b', label: string, volumes: (name: string) => Record<string, unknown>): Controller {
  const peer = id === 'a' ? 'b' : 'a';
  return new Controller({
    id, network: w.network.node(id), clock: w.clock, random: w.random.fork(label),
    volumes: VOLUMES.map((name) => ({ name, capacityBytes: CAPACITY, ...volumes(name) })),
    replication: { ...SIM_LINK_TUNING, listen: { host: id, port: 7000 } },
    peers: [{ id: peer, address: { host: peer, port: 7000 } }],
    pairs: specs(id === 'a' ? 'primary' : 'secondary', peer, true, 'async'),
  });
}

function sharedController(w: World, id: 'a' | 'b', names: Record<'a' | 'b', string>, label: string): Controller {
  return persistentController(w, id, label, (name) => ({ backing: 'shared' as const, sharedName: `${names[id]}-${name}` }));
}

/** A controller of the group on file volumes in `directory` (pair metadata and journal beside them). */
function fileController(w: World, id: 'a' | 'b', directory: string, label: string): Controller {
  return persistentController(w, id, label, (name) => ({ backing: 'file' as const, path: path.join(directory, `${id}-${name}.img`) }));
}

/** An empty world of `seed`: the caller builds and starts its controllers. */
function bareWorld(seed: number): World {
  const clock = new SimClock();
  const random = new SeededRandom(seed);
  const network = new SimNetwork({ clock, random: random.fork('network') });
  return { clock, network, grouped: true, random, a: undefined as unknown as Controller, b: undefined as unknown as Controller };
}

/** Both controllers started and mirroring; then 40 steps while records are in flight, and the primary crashes between two of them. */
async function crashMidStream(w: World): Promise<void> {
  await w.b.start();
  await w.a.start();
  await until(w, () => states(w).every((state) => state === 'mirroring'), 'mirroring');
  w.network.setLink('a', 'b', { latencyMs: 3 });
  for (let step = 0; step < 40; step++) {
    writeStep(w, step);
    await w.clock.runFor(0.7);
  }
  w.a.crash();
  w.network.crash('a');
}

function removeShared(names: Record<'a' | 'b', string>): void {
  for (const id of ['a', 'b'] as const) {
    for (const volume of VOLUMES) {
      Volume.unlink({ name: `${names[id]}-${volume}` });
      SnapshotStore.unlink({ name: `${names[id]}-${volume}` });
      for (const pair of VOLUMES) Region.unlink('shared', `blockmirror.pair.${names[id]}-${volume}.g-${pair}`);
    }
    // The group's kept journal, beside its first volume (journal-feed.ts groupJournalTargetOf).
    Journal.unlink({ name: `${names[id]}-${VOLUMES[0]}.group.db` });
  }
}


describe('87 journal groups on the simulated network', () => {
  it('ships two volumes as one stream: the secondary is a write-order prefix of the group at every instant, and identical at the end', async () => {
    const w = await world(true);
    await until(w, () => states(w).every((state) => state === 'mirroring'), 'mirroring');
    const result = await runChecked(w, 0, 120);
    assert.equal(result.violations, 0, result.worst);
    assert.ok(result.seen >= 20, `the check saw ${result.seen} distinct secondary images (it must see the stream move)`);
    await until(w, () => identical(w), 'identical');
    const groups = w.a.pairs?.groupStatus() ?? [];
    assert.equal(groups.length, 1);
    assert.deepEqual((groups[0] as { pairs: string[] }).pairs, ['g-log', 'g-data']);
    assert.ok(((groups[0] as { batchesShipped: number }).batchesShipped) > 0);
    assert.equal((groups[0] as { consistency: string }).consistency, 'consistent');
    // One journal for both volumes: the pairs see one sequence space, and it is released.
    const journals = VOLUMES.map((volume) => w.a.pairs?.replicatedVolume(volume)?.journal);
    assert.equal(journals[0], journals[1]);
    await until(w, () => (journals[0]?.stats().recordCount ?? -1) === 0, 'the shared journal released');
    assert.equal((w.a.pairs?.status().find((pair) => pair.name === 'g-log') as { journalGroup?: string }).journalGroup, 'db');
    await close(w);
  });

  for (const grouped of [true, false]) {
    it(grouped
      ? 'suspending one member suspends the group: the secondary image stays a write-order prefix; resume of one member resumes all'
      : 'without the group, suspending one pair lets the other volume run ahead (the prefix check fails)', async () => {
      const w = await world(grouped);
      await until(w, () => states(w).every((state) => state === 'mirroring'), 'mirroring');
      const before = await runChecked(w, 0, 20);
      assert.equal(before.violations, 0, before.worst);
      (w.a.pairs as NonNullable<Controller['pairs']>).suspend('g-log');
      const during = await runChecked(w, 20, 40);
      if (!grouped) {
        assert.ok(during.violations > 0, 'two independent pairs: the data volume runs ahead of the log');
        await close(w);
        return;
      }
      assert.equal(during.violations, 0, during.worst);
      assert.deepEqual(states(w), ['suspended', 'suspended']);
      assert.equal(w.a.pairs?.primary('g-data').status().reason, 'operator');
      assert.match(String(w.a.pairs?.primary('g-data').status().detail), /journal group db: pair g-log suspended/);
      assert.equal((w.a.pairs?.groupStatus()[0] as { consistency: string }).consistency, 'inconsistent');
      (w.a.pairs as NonNullable<Controller['pairs']>).resume('g-data');
      await until(w, () => states(w).every((state) => state === 'mirroring') && identical(w), 'resumed together and identical');
      const after = await runChecked(w, 60, 20);
      assert.equal(after.violations, 0, after.worst);
      await until(w, () => identical(w), 'identical');
      await close(w);
    });
  }

  it('a partition suspends both members; healing resumes both from the shared journal (no resync); a full shared journal suspends both with journal-full', async () => {
    const w = await world(true, { journalCapacityBytes: 128 * 1024, seed: 5 });
    await until(w, () => states(w).every((state) => state === 'mirroring'), 'mirroring');
    await runChecked(w, 0, 10);
    const resynced = (): number[] => VOLUMES.map((volume) => Number(w.a.pairs?.primary(`g-${volume}`).status().resyncedBytes));
    const resyncedBefore = resynced();
    w.network.partition('a', 'b', { direction: 'both' });
    await until(w, () => states(w).every((state) => state === 'suspended'), 'both suspended');
    for (const volume of VOLUMES) {
      const status = w.a.pairs?.primary(`g-${volume}`).status() as Record<string, unknown>;
      assert.equal(status.reason, 'link-down');
      assert.ok(status.streamHold !== null, `g-${volume} holds the shared journal: ${JSON.stringify(status.streamHold)}`);
    }
    // The secondary kept the last write-order prefix it had.
    assert.ok(writeOrderPrefix(w).ok, JSON.stringify(writeOrderPrefix(w)));
    // 64 KiB written during the outage: within journalHold (0.75) of the 128 KiB shared journal.
    for (let step = 10; step < 18; step++) writeStep(w, step);
    w.network.healAll();
    // Checked at every instant of the resume: the members continue together (the stream waits
    // for the one that resumes last), so the group's image stays a write-order prefix.
    const cuts: string[] = [];
    await until(w, () => {
      const cut = writeOrderPrefix(w);
      if (!cut.ok) cuts.push(JSON.stringify(cut));
      return states(w).every((state) => state === 'mirroring') && identical(w);
    }, 'resumed and identical');
    assert.deepEqual(cuts, [], 'the secondary was a write-order prefix of the group throughout the resume');
    assert.deepEqual(resynced(), resyncedBefore, 'nothing was resynced: the held records were shipped');
    for (const volume of VOLUMES) {
      assert.equal(w.a.pairs?.primary(`g-${volume}`).status().resumedStreams, 1);
      assert.equal(w.b.pairs?.secondary(`g-${volume}`)?.consistency, 'consistent');
    }
    assert.ok(writeOrderPrefix(w).ok, JSON.stringify(writeOrderPrefix(w)));
    // An outage whose writes pass journalHold of the shared journal: the holds are given up and
    // both members resync their tracked tracks instead.
    w.network.partition('a', 'b', { direction: 'both' });
    await until(w, () => states(w).every((state) => state === 'suspended'), 'both suspended again');
    for (let step = 18; step < 30; step++) writeStep(w, step);
    for (const volume of VOLUMES) assert.equal(w.a.pairs?.primary(`g-${volume}`).status().streamHold, null, `g-${volume} gave its hold up`);
    w.network.healAll();
    await until(w, () => states(w).every((state) => state === 'mirroring') && identical(w), 'resynced and identical');
    assert.ok(resynced().every((bytes, index) => bytes > (resyncedBefore[index] as number)), `both resynced: ${JSON.stringify(resynced())}`);
    // A slow link and a small shared journal: the journal fills, both members suspend, both recover.
    w.network.setLink('a', 'b', { bandwidthBytesPerSecond: 32 * 1024 });
    const reasons = new Set<string>();
    w.a.pairs?.on('state', (event: { new: string; reason: string }) => { if (event.new === 'suspended') reasons.add(event.reason); });
    for (let step = 30; step < 120; step++) writeStep(w, step);
    await until(w, () => states(w).every((state) => state === 'suspended'), 'journal-full on both');
    assert.deepEqual([...reasons], ['journal-full']);
    w.network.setLink('a', 'b', { bandwidthBytesPerSecond: Infinity });
    await until(w, () => states(w).every((state) => state === 'mirroring') && identical(w), 'recovered and identical', 60_000);
    await close(w);
  });

  it('sync: a write completes once the secondary applied it, in the group\'s order; one lockstep marker covers both members', async () => {
    const w = await world(true, { mode: 'sync' });
    await until(w, () => states(w).every((state) => state === 'mirroring'), 'mirroring');
    const log = w.a.exportVolume('log') as PairVolume;
    const data = w.a.exportVolume('data') as PairVolume;
    const first = log.write(0, content(0, 0));
    const second = data.write(0, content(1, 0));
    const waits = [log.writeCompletion(first), data.writeCompletion(second)];
    assert.ok(waits.every((wait) => wait !== null), 'sync writes wait for the secondary');
    let completed = 0;
    for (const wait of waits) void wait?.then(() => { completed++; });
    await until(w, () => completed === 2, 'both writes completed');
    assert.ok(writeOrderPrefix(w).ok && writeOrderPrefix(w).data === 1, JSON.stringify(writeOrderPrefix(w)));
    const issued = (w.a.status().lockstep as { markersIssued: number }).markersIssued;
    let result: string | undefined;
    void w.a.lockstep({ pairs: ['g-log', 'g-data'] }).then((answer) => { result = answer; });
    await until(w, () => result !== undefined, 'lockstep answered');
    assert.equal(result, 'done');
    assert.equal((w.a.status().lockstep as { markersIssued: number }).markersIssued - issued, 1, 'one marker for the one journal');
    await close(w);
  });

  it('refuses bad group batches as a whole: a gap, a record outside its window, an undeclared member, a mismatched declaration', async () => {
    const w = await world(true);
    await until(w, () => states(w).every((state) => state === 'mirroring'), 'mirroring');
    const link = w.a.link('b');
    const logSecondary = w.b.pairs?.secondary('g-log');
    const stand = (): number => Number((logSecondary?.status().positions as { applied?: number } | undefined)?.applied ?? (logSecondary?.status() as { applied?: number }).applied);
    const before = Buffer.alloc(CAPACITY);
    (w.b.volume('log') as Volume).read(0, before);
    const write = { member: 0, kind: 'write' as const, byteOffset: 0, byteLength: BLOCK, data: Buffer.alloc(BLOCK, 0xee) };
    const bad = [
      // A gap: the window does not continue where the secondary stands.
      encodeGroupRecords({ group: 'db', through: 1000, members: [{ name: 'g-log', previous: 900 }], records: [{ ...write, sequence: 950 }] }),
      // A record outside its member's window.
      encodeGroupRecords({ group: 'db', through: 10, members: [{ name: 'g-log', previous: stand() }], records: [{ ...write, sequence: 11 }] }),
      // Records out of order.
      encodeGroupRecords({ group: 'db', through: stand() + 5, members: [{ name: 'g-log', previous: stand() }], records: [{ ...write, sequence: stand() + 3 }, { ...write, sequence: stand() + 2 }] }),
      // A member this controller does not declare, and one declared in no group.
      encodeGroupRecords({ group: 'db', through: stand() + 1, members: [{ name: 'nobody', previous: 0 }], records: [] }),
      encodeGroupRecords({ group: 'other', through: stand() + 1, members: [{ name: 'g-log', previous: stand() }], records: [{ ...write, sequence: stand() + 1 }] }),
      // Past the end of the volume.
      encodeGroupRecords({ group: 'db', through: stand() + 1, members: [{ name: 'g-log', previous: stand() }], records: [{ ...write, sequence: stand() + 1, byteOffset: CAPACITY }] }),
    ];
    const refusedBefore = logSecondary?.refusedCount ?? 0;
    for (const payload of bad) link.send(MessageType.PAIR_GROUP_RECORDS, payload);
    // A grouped secondary refuses records shipped for the pair alone.
    link.send(MessageType.PAIR_RECORDS, encodeRecords('g-log', [{ sequence: stand() + 1, kind: 'write', byteOffset: 0, byteLength: BLOCK, data: Buffer.alloc(BLOCK, 0xee) }]));
    await w.clock.runFor(200);
    const after = Buffer.alloc(CAPACITY);
    (w.b.volume('log') as Volume).read(0, after);
    assert.ok(after.equals(before), 'nothing of a refused batch was applied');
    assert.ok((logSecondary?.refusedCount ?? 0) - refusedBefore >= 5, `refused ${(logSecondary?.refusedCount ?? 0) - refusedBefore}`);
    // The primaries heard of it: the group suspended with secondary-error; the controller is up.
    await until(w, () => states(w).every((state) => state === 'suspended'), 'suspended');
    assert.equal(w.a.pairs?.primary('g-log').status().reason, 'secondary-error');
    (w.a.pairs as NonNullable<Controller['pairs']>).resume('g-log');
    await until(w, () => states(w).every((state) => state === 'mirroring') && identical(w), 'resumed and identical');
    await close(w);
  });

  it('a crash of the primary mid-stream leaves the secondary a write-order prefix; both members are taken over, the old primary returns demoted and resyncs', async () => {
    worldCounter++;
    const names = { a: `bm-sim87-${process.pid}-${worldCounter}-a`, b: `bm-sim87-${process.pid}-${worldCounter}-b` };
    const w = bareWorld(41);
    const { network } = w;
    try {
      w.b = sharedController(w, 'b', names, 'b');
      w.a = sharedController(w, 'a', names, 'a');
      await crashMidStream(w);
      const cut = writeOrderPrefix(w);
      assert.ok(cut.ok, `the secondary after the crash: ${JSON.stringify(cut)}`);
      assert.ok(cut.log > 0 && cut.log < 40, `the crash fell mid-stream (log ${cut.log})`);
      await until(w, () => VOLUMES.every((volume) => w.b.pairs?.secondary(`g-${volume}`)?.currentState === 'suspended' ||
        w.b.links.get('a')?.currentState !== 'up'), 'the link to the dead primary is down');
      for (const volume of VOLUMES) {
        let taken = false;
        void (w.b.pairs as NonNullable<Controller['pairs']>).takeover(`g-${volume}`).then(() => { taken = true; });
        await until(w, () => taken, `takeover of g-${volume}`);
      }
      // The new primary writes through its own shared journal for the group.
      const stepsOnB = [cut.log + 100, cut.log + 101];
      for (const step of stepsOnB) VOLUMES.forEach((volume, index) => (w.b.exportVolume(volume) as PairVolume).write((step % BLOCKS) * BLOCK, content(index, step)));
      assert.equal(w.b.pairs?.groupStatus().length, 1);
      // The old primary returns: demoted by the generations, resynced from the new primary.
      network.restart('a');
      w.a = sharedController(w, 'a', names, 'a-restarted');
      await w.a.start();
      const bSide = (volume: string): string => w.b.pairs?.primary(`g-${volume}`).currentState ?? 'none';
      await until(w, () => VOLUMES.every((volume) => bSide(volume) === 'mirroring' && w.a.pairs?.secondary(`g-${volume}`) !== undefined), 'the old primary demoted and resynced');
      await until(w, () => VOLUMES.every((name) => {
        const left = Buffer.alloc(CAPACITY);
        const right = Buffer.alloc(CAPACITY);
        (w.b.exportVolume(name) as PairVolume).read(0, left);
        (w.a.volume(name) as Volume).read(0, right);
        return left.equals(right);
      }), 'identical after the resync');
    } finally {
      await w.a?.close().catch(() => undefined);
      await w.b?.close().catch(() => undefined);
      removeShared(names);
    }
  });

  it('takeoverGroup takes over every member or none: refused while the primary is reachable but a member not mirroring, or an image is inconsistent, then --force takes both', async () => {
    const w = await world(true, { seed: 9 });
    const manager = w.b.pairs as NonNullable<Controller['pairs']>;
    const roles = (): string[] => manager.status().map((pair) => `${String(pair.name)}:${String(pair.role)}`);
    const refusal = async (what: RegExp): Promise<void> => {
      const caught = (await settle(w, 'the refusal', () => manager.takeoverGroup('db'))).error;
      assert.ok(caught instanceof PairError && caught.code === 'ERR_PAIR_STATE', String(caught));
      assert.match((caught as Error).message, what);
      assert.deepEqual(roles(), ['g-log:secondary', 'g-data:secondary'], 'nothing was taken over');
    };
    await until(w, () => states(w).every((state) => state === 'mirroring'), 'mirroring');
    await runChecked(w, 0, 10);
    // An operator's suspension on the primary (the group suspends as one): the primary is
    // reachable, so no takeover, and no drained switch either (it needs every member mirroring).
    (w.a.pairs as NonNullable<Controller['pairs']>).suspend('g-log');
    await until(w, () => states(w).every((state) => state === 'suspended'), 'both suspended');
    // b still sees both mirroring: it asks for the drained switch, and the primary refuses.
    await refusal(/journal group db: nothing handed over; a drained switch needs every member mirroring with a its primary \(g-log: suspended; g-data: suspended\)/);
    await assert.rejects(manager.takeoverGroup('nosuch'), (error: unknown) => error instanceof PairError && error.code === 'ERR_PAIR_UNKNOWN');

    // Writes during the suspension (it breaks the stream: resume resyncs), then a slow resync
    // cut by a partition: the secondary images are inconsistent (a resync was running) and the
    // primary unreachable.
    for (let step = 10; step < 60; step++) writeStep(w, step);
    w.network.setLink('a', 'b', { bandwidthBytesPerSecond: 16 * 1024 });
    (w.a.pairs as NonNullable<Controller['pairs']>).resume('g-log');
    await until(w, () => VOLUMES.some((volume) => manager.secondary(`g-${volume}`)?.consistency === 'inconsistent'), 'a resync under way');
    w.network.partition('a', 'b', { direction: 'both' });
    await until(w, () => w.b.links.get('a')?.currentState !== 'up', 'the link down on b');
    await refusal(/nothing taken over; .*the image is inconsistent/);

    const forced = await settle(w, 'the forced group takeover', () => manager.takeoverGroup('db', { force: true }));
    assert.equal(forced.error, undefined, String(forced.error));
    assert.deepEqual((forced.value as Record<string, unknown>[]).map((pair) => [pair.name, pair.role]), [['g-log', 'primary'], ['g-data', 'primary']]);
    assert.deepEqual(roles(), ['g-log:primary', 'g-data:primary']);
    await assert.rejects(manager.takeoverGroup('db'), /already the primary of every member/);
    await close(w);
  });

  it('a drained switch of the whole group with the primary reachable: writes held, one step for every member, identical images; failbackGroup swaps back', async () => {
    const w = await world(true, { seed: 17 });
    const aPairs = w.a.pairs as NonNullable<Controller['pairs']>;
    const bPairs = w.b.pairs as NonNullable<Controller['pairs']>;
    const roles = (c: Controller): string[] => (c.pairs?.status() ?? []).map((pair) => `${String(pair.name)}:${String(pair.role)}`);
    await until(w, () => states(w).every((state) => state === 'mirroring'), 'mirroring');
    await runChecked(w, 0, 10);

    // Records in flight behind a slow link when the switch is asked: the drain holds host
    // writes on both volumes until the secondary has applied and flushed everything.
    w.network.setLink('a', 'b', { latencyMs: 5, bandwidthBytesPerSecond: 4 * 1024 * 1024 });
    for (let step = 10; step < 40; step++) writeStep(w, step);
    let refusedDuringDrain: unknown;
    const outcome = await settle(w, 'the drained switch', () => bPairs.takeoverGroup('db'), async () => {
      await w.clock.runFor(1);
      try {
        (w.a.exportVolume('data') as PairVolume).write(0, content(1, 999));
      } catch (error) {
        refusedDuringDrain = error;
      }
    });
    assert.equal(outcome.error, undefined, String(outcome.error));
    assert.ok(refusedDuringDrain instanceof PairError && refusedDuringDrain.code === 'ERR_PAIR_READ_ONLY', `a host write during the drain: ${String(refusedDuringDrain)}`);
    assert.deepEqual((outcome.value as Record<string, unknown>[]).map((pair) => [pair.name, pair.role]), [['g-log', 'primary'], ['g-data', 'primary']]);
    assert.deepEqual(roles(w.a), ['g-log:secondary', 'g-data:secondary'], 'the old primary is the secondary of both');
    assert.ok(identical(w), 'both volumes identical at the switch (nothing acknowledged is missing)');
    assert.equal(prefixLength(w, 0), 40, 'every step is on the new primary');
    for (const volume of VOLUMES) {
      assert.equal((w.b.exportVolume(volume) as PairVolume).writable, true, `b's ${volume} is writable`);
      assert.equal((w.a.exportVolume(volume) as PairVolume).writable, false, `a's ${volume} is read-only`);
    }
    // The new primary ships as a group to the old one, with no resync (the tracks were cleared).
    w.network.setLink('a', 'b', { latencyMs: 1 });
    await until(w, () => VOLUMES.every((volume) => bPairs.primary(`g-${volume}`).currentState === 'mirroring'), 'b mirroring both');
    assert.equal(bPairs.groupStatus().length, 1, 'b ships the group as one stream');
    for (let step = 40; step < 50; step++) VOLUMES.forEach((volume, index) => (w.b.exportVolume(volume) as PairVolume).write((step % BLOCKS) * BLOCK, content(index, step)));
    await until(w, () => identical(w), 'a follows b');
    for (const volume of VOLUMES) assert.equal(bPairs.primary(`g-${volume}`).status().resyncedBytes, 0, `g-${volume} needed no resync`);

    // A switch asked while one member is not mirroring is refused on the primary, nothing changed.
    bPairs.suspend('g-log');
    await until(w, () => VOLUMES.every((volume) => bPairs.primary(`g-${volume}`).currentState === 'suspended'), 'both suspended on b');
    const early = await settle(w, 'the failback refused', () => aPairs.failbackGroup('db'));
    assert.ok(early.error instanceof PairError && early.error.code === 'ERR_PAIR_STATE', String(early.error));
    assert.match((early.error as Error).message, /journal group db: nothing handed over; .*g-log: suspended; g-data: suspended/);
    assert.deepEqual(roles(w.b), ['g-log:primary', 'g-data:primary']);
    bPairs.resume('g-log');
    await until(w, () => VOLUMES.every((volume) => bPairs.primary(`g-${volume}`).currentState === 'mirroring'), 'b mirroring both again');

    // A partition in the middle of the drain: the handover fails, the writes are released, the
    // roles stay; after healing the failback goes through.
    w.network.setLink('b', 'a', { latencyMs: 5, bandwidthBytesPerSecond: 2 * 1024 * 1024 });
    for (let step = 50; step < 80; step++) VOLUMES.forEach((volume, index) => (w.b.exportVolume(volume) as PairVolume).write((step % BLOCKS) * BLOCK, content(index, step)));
    const cut = await settle(w, 'the failback cut by a partition', () => aPairs.failbackGroup('db'), async () => {
      await w.clock.runFor(20);
      w.network.partition('a', 'b', { direction: 'both' });
    });
    // The asker hears the link go down; the roles say what happened: nothing.
    assert.equal((cut.error as { code?: string }).code, 'ERR_LINK_DOWN', String(cut.error));
    await until(w, () => VOLUMES.every((volume) => bPairs.primary(`g-${volume}`).currentState === 'suspended'), 'b suspended (link-down)');
    assert.deepEqual(roles(w.b), ['g-log:primary', 'g-data:primary'], 'b stays the primary of both');
    assert.deepEqual(roles(w.a), ['g-log:secondary', 'g-data:secondary']);
    for (const volume of VOLUMES) assert.equal((w.b.exportVolume(volume) as PairVolume).writable, true, `b's ${volume} writable again`);
    w.network.heal('a', 'b');
    w.network.setLink('b', 'a', { latencyMs: 1, bandwidthBytesPerSecond: Infinity });
    await until(w, () => VOLUMES.every((volume) => bPairs.primary(`g-${volume}`).currentState === 'mirroring') && identical(w), 'mirroring and identical after healing');
    const back = await settle(w, 'the failback', () => aPairs.failbackGroup('db'));
    assert.equal(back.error, undefined, String(back.error));
    assert.deepEqual(roles(w.a), ['g-log:primary', 'g-data:primary'], 'the declared roles again');
    assert.deepEqual(roles(w.b), ['g-log:secondary', 'g-data:secondary']);
    assert.ok(identical(w));
    const again = await settle(w, 'a second failback', () => aPairs.failbackGroup('db'));
    assert.match(String((again.error as Error)?.message), /a failback needs every member out of its declared role/);
    await until(w, () => states(w).every((state) => state === 'mirroring'), 'a mirroring both');
    await runChecked(w, 80, 10);
    await until(w, () => identical(w), 'identical at the end');
    await close(w);
  });

  it('refuses a group promotion or switch that does not fit: a member left out, another generation, an unknown group, garbage; nothing changes', async () => {
    const w = await world(true, { seed: 19 });
    await until(w, () => states(w).every((state) => state === 'mirroring'), 'mirroring');
    await runChecked(w, 0, 5);
    // The status shows the generation ids in hex.
    const generations = (name: string): Generations => {
      const shown = w.a.pairs?.primary(name).status().generations as { current: string; bitmap: string; history: [string, string] };
      const id = (hex: string): number => Number.parseInt(hex, 16);
      return { current: id(shown.current), bitmap: id(shown.bitmap), history: [id(shown.history[0]), id(shown.history[1])] };
    };
    const ask = async (link: ReturnType<Controller['link']>, type: number, payload: Buffer): Promise<string> => {
      const { error } = await settle(w, 'the answer', () => link.request(type, payload));
      return error === undefined ? 'answered' : String((error as { remoteCode?: string }).remoteCode);
    };
    const toB = w.a.link('b');
    const both = [{ name: 'g-log', generations: generations('g-log') }, { name: 'g-data', generations: generations('g-data') }];
    assert.equal(await ask(toB, MessageType.PAIR_PROMOTE_GROUP, encodeGroupPromote({ group: 'db', members: [both[0] as (typeof both)[0]] })), 'ERR_PAIR_MISMATCH');
    const stale = { current: 12345, bitmap: 0, history: [0, 0] as const };
    assert.equal(await ask(toB, MessageType.PAIR_PROMOTE_GROUP, encodeGroupPromote({ group: 'db', members: [both[0] as (typeof both)[0], { name: 'g-data', generations: stale }] })), 'ERR_PAIR_STATE');
    assert.equal(await ask(toB, MessageType.PAIR_PROMOTE_GROUP, encodeGroupPromote({ group: 'nosuch', members: both })), 'ERR_PAIR_UNKNOWN');
    assert.equal(await ask(toB, MessageType.PAIR_PROMOTE_GROUP, Buffer.from([1, 2, 3])), 'ERR_LINK_BAD_MESSAGE');
    assert.equal(await ask(w.b.link('a'), MessageType.PAIR_SWITCH_GROUP, encodeName('nosuch')), 'ERR_PAIR_UNKNOWN');
    assert.deepEqual(w.b.pairs?.status().map((pair) => pair.role), ['secondary', 'secondary'], 'nothing was promoted');
    assert.deepEqual(w.a.pairs?.status().map((pair) => pair.role), ['primary', 'primary']);
    await runChecked(w, 5, 5);
    await until(w, () => identical(w), 'still mirroring, identical');
    await close(w);
  });

  it('takeoverGroup refuses members that stand at different points of the group\'s order, each image consistent', async () => {
    const w = await world(true, { seed: 13 });
    const manager = w.b.pairs as NonNullable<Controller['pairs']>;
    await until(w, () => states(w).every((state) => state === 'mirroring'), 'mirroring');
    await runChecked(w, 0, 10);
    await until(w, () => identical(w), 'caught up');
    const log = manager.secondary('g-log') as NonNullable<ReturnType<typeof manager.secondary>>;
    const data = manager.secondary('g-data') as NonNullable<ReturnType<typeof manager.secondary>>;
    assert.equal(log.appliedSequence, data.appliedSequence, 'one batch point while both stream');
    // A valid batch that covers the log member alone (as when one member streamed on while the
    // other was out of the stream), then the link goes.
    const at = log.appliedSequence;
    w.a.link('b').send(MessageType.PAIR_GROUP_RECORDS, encodeGroupRecords({
      group: 'db', through: at + 1, members: [{ name: 'g-log', previous: at }],
      records: [{ member: 0, sequence: at + 1, kind: 'write', byteOffset: 0, byteLength: BLOCK, data: Buffer.alloc(BLOCK, 0x5a) }],
    }));
    await until(w, () => log.appliedSequence === at + 1, 'the log member alone one record on');
    w.network.partition('a', 'b', { direction: 'both' });
    await until(w, () => w.b.links.get('a')?.currentState !== 'up', 'the link down on b');
    assert.ok(log.takeoverSafe && data.takeoverSafe, 'each image alone is consistent');
    const caught = (await settle(w, 'the refusal', () => manager.takeoverGroup('db'))).error;
    assert.ok(caught instanceof PairError && caught.code === 'ERR_PAIR_STATE', String(caught));
    assert.match((caught as Error).message, new RegExp(`different points of the group's order \\(g-log at ${at + 1}, g-data at ${at}\\)`));
    assert.deepEqual(manager.status().map((pair) => pair.role), ['secondary', 'secondary']);
    await close(w);
  });

  it('a crash of the primary of a group on file volumes: restarted, both members resume from the group journal kept beside the first volume', async () => {
    const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'bm-sim87-'));
    const w = bareWorld(43);
    const { network } = w;
    try {
      w.b = fileController(w, 'b', directory, 'b');
      w.a = fileController(w, 'a', directory, 'a');
      await crashMidStream(w);
      assert.ok(fs.existsSync(path.join(directory, 'a-log.img.group.db.journal')), 'the group journal is kept beside the first volume');
      const cut = writeOrderPrefix(w);
      assert.ok(cut.ok && cut.log < 40, `the secondary after the crash: ${JSON.stringify(cut)}`);
      network.restart('a');
      w.a = fileController(w, 'a', directory, 'a-restarted');
      await w.a.start();
      const cuts: string[] = [];
      await until(w, () => {
        const now = writeOrderPrefix(w);
        if (!now.ok) cuts.push(JSON.stringify(now));
        return states(w).every((state) => state === 'mirroring') && identical(w);
      }, 'both resumed and identical');
      assert.deepEqual(cuts, [], 'a write-order prefix of the group throughout');
      assert.equal(writeOrderPrefix(w).log, 40, 'every step is on the secondary');
      for (const volume of VOLUMES) {
        const status = w.a.pairs?.primary(`g-${volume}`).status() as Record<string, unknown>;
        assert.equal(status.resumedStreams, 1, `g-${volume}: ${JSON.stringify(status)}`);
        assert.equal(status.resyncedBytes, 0);
      }
    } finally {
      await w.a?.close().catch(() => undefined);
      await w.b?.close().catch(() => undefined);
      fs.rmSync(directory, { recursive: true, force: true });
    }
  });

  it('refuses a group across peers, modes or roles, and a grouped volume in a second pair', () => {
    const base = specs('primary', 'b', true, 'async');
    const [log, data] = base as [PairSpec, PairSpec];
    assert.equal(groupProblem(data, [log]), undefined);
    assert.match(String(groupProblem({ ...data, peer: 'c' }, [log])), /one peer per group/);
    assert.match(String(groupProblem({ ...data, mode: 'sync' }, [log])), /one mode per group/);
    assert.match(String(groupProblem({ ...data, role: 'secondary' }, [log])), /one role per group/);
    const fan: PairSpec = { name: 'fan', volume: 'log', peer: 'c', remoteVolume: 'log', mode: 'async', role: 'primary' };
    assert.match(String(groupProblem(fan, base)), /grouped volume is in no other pair/);
    assert.match(String(groupProblem(log, [fan])), /grouped volume is in no other pair/);
    assert.match(String(groupProblem({ ...log, journalGroup: '' }, [])), /not a journal group name/);
  });
});
