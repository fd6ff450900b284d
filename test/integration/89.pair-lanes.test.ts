// Native lanes on a pair's primary export (docs/nbd-native.md "Pair exports",
// src/replication/replicated-volume.ts, native/core/lane_gate.hpp): two controllers in this
// process over a real loopback TCP link, an NBD server over real TCP with lanes on (the
// default), real clients:
//   - an async primary's connections run on lanes, a sync primary's on the event loop; lane
//     writes are journaled and shipped, the secondary ends identical;
//   - several lane connections and the event loop (API writes through the PairVolume) write the
//     same blocks at once: the journal's order is the stores' order, so the secondary ends
//     identical;
//   - an operator suspend closes the gate: the next write of a lane connection goes back to the
//     event loop (the connection lives on), is tracked, and the resume resyncs it;
//   - a consistency group's hold closes the gate, and its release opens it again;
//   - a planned takeover (a drained switch) closes the gate: the next write is refused (EPERM);
//   - Volume.underLaneGate holds lane writes off while it runs (the pair's bitmap rotation);
//   - a client SIGKILLed mid-payload on a lane: never acknowledged, nothing of it stored;
//   - a write of 32 KiB or more goes to the event loop (receive into the store, pacing);
//   - fio at QD16 with 16 KiB writes while the pair suspends and resumes: the lane hands back a
//     full receive buffer of pipelined requests, the event loop serves every one (a queue of
//     exactly its receive size once gave a zero-length read target: ENOBUFS), both identical.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import * as P from '../../src/nbd/protocol';
import type { Volume } from '../../src/storage/volume';
import { runFio } from '../helpers/fio';
import { NbdTestClient } from '../helpers/nbd-client';
import { pairExportsWorld } from '../helpers/pair-exports';
import { tornWriter } from '../helpers/torn-writer';
import { requireTool, waitFor } from '../helpers/tools';

const MiB = 1024 * 1024;
const SIZE = 16 * MiB;
const BLOCK = 4096;

describe('89 native lanes on a pair\'s primary export (integration)', function () {
  this.timeout(120_000);
  const world = pairExportsWorld('test 89', SIZE);
  const { primary, secondary, identical, caughtUp, facade } = world;
  const server = (): ReturnType<typeof world.server> => world.server();
  const open = (mode: string): Promise<NbdTestClient> => NbdTestClient.open({ host: '127.0.0.1', port: world.port() }, { exportName: mode });

  it('an async primary\'s connection runs on a lane, a sync primary\'s on the event loop; lane writes reach the secondary', async () => {
    assert.equal(facade('async').replicated?.laneGateOpen, true, 'the async primary\'s gate is open');
    assert.equal(facade('sync').replicated?.laneGateOpen, false, 'a sync primary\'s gate stays closed');
    const journal = facade('async').replicated?.journal;
    const before = journal?.nextSequence as number;
    const asyncClient = await open('async');
    const syncClient = await open('sync');
    await waitFor(() => server().stats().laneConnections === 1, 'one lane connection');
    for (let index = 0; index < 64; index++) {
      assert.equal(await asyncClient.writeData(index * 3 * BLOCK, Buffer.alloc(BLOCK, 1 + index)), 0);
    }
    assert.equal(await asyncClient.flush(), 0);
    assert.equal(await syncClient.writeData(0, Buffer.alloc(BLOCK, 9)), 0);
    assert.equal(server().stats().laneConnections, 1, 'the lane is still serving');
    assert.ok((journal?.nextSequence as number) >= before + 64, 'every lane write was journaled');
    await asyncClient.disconnect();
    await syncClient.disconnect();
    await waitFor(() => caughtUp('async') && identical('async'), 'the async secondary identical', 30_000);
    await waitFor(() => caughtUp('sync') && identical('sync'), 'the sync secondary identical', 30_000);
  });

  it('lane connections and event-loop writes to the same blocks at once: the secondary ends identical', async () => {
    const clients = await Promise.all([open('async'), open('async'), open('async')]);
    await waitFor(() => server().stats().laneConnections === 3, 'three lane connections');
    const blocks = 16;
    let stop = false;
    // The event loop writes the same blocks through the export's PairVolume meanwhile.
    const loopWriter = (async () => {
      let round = 0;
      while (!stop) {
        facade('async').write((round % blocks) * BLOCK, Buffer.alloc(BLOCK, 200 + (round % 50)));
        round++;
        await new Promise((resolve) => setImmediate(resolve));
      }
      return round;
    })();
    await Promise.all(clients.map(async (client, which) => {
      for (let round = 0; round < 300; round++) {
        // Pipelined: 8 writes in flight per connection.
        const writes: Promise<number>[] = [];
        for (let index = 0; index < 8; index++) writes.push(client.writeData(((round + index) % blocks) * BLOCK, Buffer.alloc(BLOCK, 1 + ((which * 64 + round + index) % 190))));
        for (const status of await Promise.all(writes)) assert.equal(status, 0);
      }
    }));
    stop = true;
    assert.ok(await loopWriter > 0, 'the event loop wrote too');
    assert.equal(server().stats().laneConnections, 3, 'every connection stayed on its lane');
    for (const client of clients) await client.disconnect();
    await waitFor(() => caughtUp('async') && identical('async'), 'the secondary identical', 30_000);
  });

  it('underLaneGate holds lane writes off while it runs (a bitmap rotation reads the seal there); writes inside it and a throw do not deadlock', async () => {
    const client = await open('async');
    try {
    await waitFor(() => server().stats().laneConnections === 1, 'a lane connection');
    // The volume whose gate the lanes take (the replicated volume's).
    const volume = facade('async').replicated?.volume as Volume;
    assert.equal(volume, primary().volume('async'), 'the controller\'s volume object holds the gate');
    const at = 5 * MiB;
    assert.equal(await client.writeData(at, Buffer.alloc(BLOCK, 0x41)), 0);
    const block = (): Buffer => {
      const bytes = Buffer.alloc(BLOCK);
      volume.read(at, bytes);
      return bytes;
    };
    // The request leaves inside the hold (the socket write is tried at once); the lane reads it
    // while this thread holds the gate for 200 ms.
    let write: Promise<number> | undefined;
    const seen = volume.underLaneGate(() => {
      write = client.writeData(at, Buffer.alloc(BLOCK, 0x42));
      const until = Date.now() + 200;
      while (Date.now() < until) { /* hold */ }
      // A write of this object inside: runs under the same hold.
      volume.write(at + BLOCK, Buffer.alloc(BLOCK, 0x43));
      return block()[0];
    });
    assert.equal(seen, 0x41, 'no lane write landed while the gate was held');
    assert.equal(await write, 0);
    assert.equal(block()[0], 0x42, 'the lane wrote once it was released');
    assert.equal(server().stats().laneConnections, 1, 'served by the lane, not handed back');
    assert.throws(() => volume.underLaneGate(() => { throw new RangeError('inside'); }), /inside/);
    assert.equal(await client.writeData(at, Buffer.alloc(BLOCK, 0x44)), 0, 'the lock was released by the throw');
    assert.throws(() => volume.underLaneGate(42 as unknown as () => void), TypeError);
    await waitFor(() => caughtUp('async') && identical('async'), 'identical', 30_000);
    } finally {
      client.destroy();
      await waitFor(() => server().stats().laneConnections === 0, 'the lane connection to end');
    }
  });

  it('an operator suspend: the next lane write goes to the event loop, is tracked, and the resume resyncs it', async () => {
    const client = await open('async');
    await waitFor(() => server().stats().laneConnections === 1, 'a lane connection');
    assert.equal(await client.writeData(MiB, Buffer.alloc(BLOCK, 0x31)), 0);
    primary().pairs?.suspend('async');
    assert.equal(facade('async').replicated?.laneGateOpen, false, 'a suspended pair closes the gate');
    // Handed back at this write: answered by the event loop, the connection lives on.
    assert.equal(await client.writeData(2 * MiB, Buffer.alloc(BLOCK, 0x32)), 0);
    assert.equal(server().stats().laneConnections, 0, 'the connection left its lane');
    assert.equal(server().stats().connections, 1, 'and lives on, on the event loop');
    assert.equal(await client.writeData(3 * MiB, Buffer.alloc(BLOCK, 0x33)), 0);
    const pair = primary().pairs?.primary('async');
    assert.ok(((pair?.status().oos as { bytes: number }).bytes) > 0, 'the writes while suspended are tracked');
    primary().pairs?.resume('async');
    await waitFor(() => caughtUp('async') && identical('async'), 'resynced and identical', 30_000);
    assert.equal(facade('async').replicated?.laneGateOpen, true, 'mirroring again: the gate is open');
    await client.disconnect();
  });

  it('a write of 32 KiB or more goes to the event loop, which receives it into the store', async () => {
    const client = await open('async');
    await waitFor(() => server().stats().laneConnections === 1, 'a lane connection');
    const received = server().stats().storeReceivedWrites;
    assert.equal(await client.writeData(4 * MiB, Buffer.alloc(4 * BLOCK, 0x51)), 0, 'a small write on the lane');
    assert.equal(server().stats().laneConnections, 1);
    assert.equal(await client.writeData(5 * MiB, Buffer.alloc(MiB, 0x52)), 0, 'a large write, answered by the event loop');
    assert.equal(server().stats().laneConnections, 0, 'the connection left its lane at the large write');
    assert.equal(server().stats().storeReceivedWrites, received + 1, 'received into the store');
    await client.disconnect();
    await waitFor(() => caughtUp('async') && identical('async'), 'both identical', 30_000);
  });

  it('a consistency group\'s hold closes the gate and its release opens it', () => {
    const replicated = facade('async').replicated;
    assert.ok(replicated !== undefined);
    assert.equal(replicated.laneGateOpen, true);
    let release!: () => void;
    const released = new Promise<void>((resolve) => { release = resolve; });
    replicated.hold = { cut: replicated.journal.nextSequence - 1, released, held: 0 };
    assert.equal(replicated.laneGateOpen, false, 'a hold closes the gate');
    replicated.hold = undefined;
    release();
    assert.equal(replicated.laneGateOpen, true, 'its release opens it');
    replicated.closeLaneGate();
    assert.equal(replicated.laneGateOpen, false, 'closeLaneGate closes it at once');
    replicated.updateLaneGate();
    assert.equal(replicated.laneGateOpen, true, 'and the rule opens it again');
  });

  it('a client SIGKILLed mid-payload on a lane: never acknowledged, nothing of it stored', async () => {
    // Below the lanes' 32 KiB hand-back size, so the lane buffers it.
    const offset = 6 * MiB;
    const length = 28 * 1024;
    const before = Buffer.alloc(length);
    (primary().volume('async') as Volume).read(offset, before);
    const sequence = facade('async').replicated?.journal.nextSequence;
    const writer = tornWriter(world.port(), 'async', offset, length, 20_000);
    await writer.sent;
    await waitFor(() => server().stats().laneConnections === 1, 'the torn writer on a lane');
    await writer.kill();
    await waitFor(() => server().stats().connections === 0, 'the server to see the connection close');
    const after = Buffer.alloc(length);
    (primary().volume('async') as Volume).read(offset, after);
    assert.ok(after.equals(before), 'a buffered payload that never completed changed nothing');
    assert.equal(facade('async').replicated?.journal.nextSequence, sequence, 'and journaled nothing');
    await waitFor(() => caughtUp('async') && identical('async'), 'both identical', 30_000);
  });

  it('fio (4 connections at QD16) while the pair suspends and resumes: every pipelined write is served, both identical', async function () {
    requireTool('fio').call(this);
    const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'bm-89-fio-'));
    try {
      const pair = primary().pairs;
      const flip = (async () => {
        await waitFor(() => server().stats().laneConnections === 4, 'fio\'s four connections on lanes', 20_000);
        await new Promise((resolve) => setTimeout(resolve, 500));
        // Sequential writes from four connections may fill the journal first: then the pair
        // suspended itself (journal-full) and resumes by itself; either way the gate closed.
        const tolerate = (act: () => unknown): void => {
          try {
            act();
          } catch (error) {
            if ((error as { code?: string }).code !== 'ERR_PAIR_STATE') throw error;
          }
        };
        tolerate(() => pair?.suspend('async'));
        await new Promise((resolve) => setTimeout(resolve, 500));
        tolerate(() => pair?.resume('async'));
      })();
      await runFio(['--name=lanes', '--ioengine=nbd', `--uri=nbd://127.0.0.1:${world.port()}/async`, '--rw=write', '--bs=16k', '--iodepth=16',
        // Four connections, each a chance to be handed back with a full buffer (writes only,
        // below the lanes' 32 KiB hand-back size: the buffers fill with 16 KiB requests; the
        // final comparison checks the bytes).
        '--numjobs=4', `--size=${SIZE / 4}`, `--offset_increment=${SIZE / 4}`, '--group_reporting',
        '--time_based', '--runtime=2'], directory);
      await flip;
      assert.equal(server().stats().laneConnections, 0, 'the connection went back to the event loop at the suspend');
      await waitFor(() => caughtUp('async') && identical('async'), 'both identical', 30_000);
    } finally {
      fs.rmSync(directory, { recursive: true, force: true });
    }
  });

  it('a planned takeover closes the gate: the next write of a lane connection is refused (EPERM)', async () => {
    await waitFor(() => caughtUp('async') && identical('async'), 'caught up before', 30_000);
    const client = await open('async');
    await waitFor(() => server().stats().laneConnections === 1, 'a lane connection');
    assert.equal(await client.writeData(8 * MiB, Buffer.alloc(BLOCK, 0x41)), 0);
    const status = await secondary().pairs?.takeover('async');
    assert.equal(status?.role, 'primary');
    assert.equal(facade('async').laneVolume(), null, 'no lane for a secondary');
    const reply = await client.request(P.NBD_CMD_WRITE, 0, 9 * MiB, BLOCK, Buffer.alloc(BLOCK, 0x42));
    assert.equal(reply.error, P.NBD_EPERM, 'a write after the switch is refused');
    assert.equal(server().stats().laneConnections, 0);
    await client.disconnect();
    assert.ok(identical('async'), 'the new primary holds what the old one held at the switch');
    await secondary().pairs?.failback('async');
    await waitFor(() => caughtUp('async') && identical('async'), 'failed back and identical', 30_000);
    assert.equal(facade('async').replicated?.laneGateOpen, true, 'the primary again: the gate is open');
  });
});
