// Pairs across real `blockmirror serve` processes whose primary dies by SIGKILL, written by a
// real NBD client over loopback TCP:
//   - sync, again and again: a client writes through the primary's export and records every
//     write the server acknowledged; the primary is SIGKILLed in the middle of the load; a
//     takeover on the secondary's serve; every acknowledged write is on the new primary. The
//     old primary restarts demoted (role secondary), is resynced, fails back, and both sides are
//     identical before the next round.
//   - a takeover, writes on the new primary, the old primary back: the resync moves only the
//     changed tracks, then a failback, identical, with the takeover's writes kept.
// Volumes are `shared`, so data, pair metadata and tracking bitmaps outlive the kill; every
// /dev/shm object a test made is unlinked after it.
import * as assert from 'node:assert/strict';

import {
  AcknowledgedWriter, PairSite, type PairSiteOptions, ports, removeShm, shmPrefix, writeContent,
} from '../helpers/pair-sites';
import { makeTempDir, prng, removeTempDir } from '../helpers/tools';

const MIB = 1024 * 1024;
const TRACK_BYTES = 64 * 1024;
const CAPACITY_BYTES = 32 * MIB;
const SIGKILL_ROUNDS = 10;

describe('72 pairs across serve processes: SIGKILL of the primary, takeover, failback', function () {
  this.timeout(240_000);
  let directory: string;
  let prefix: string;
  let sites: PairSite[] = [];

  beforeEach(() => {
    directory = makeTempDir('pair-kill');
    prefix = shmPrefix('72');
    sites = [];
  });

  afterEach(async () => {
    for (const site of sites) await site.stop();
    removeShm(prefix);
    removeTempDir(directory);
  });

  /** site-a (declared primary) and site-b (declared secondary) of pair p0, mirroring. */
  async function twoSites(mode: 'sync' | 'async'): Promise<[PairSite, PairSite]> {
    const [portA, portB] = await ports(2) as [number, number];
    const common = { prefix, directory, capacity: `${CAPACITY_BYTES / MIB}MiB` } satisfies Partial<PairSiteOptions>;
    const b = await PairSite.start({ ...common, id: 'site-b', replicationPort: portB, peers: [{ id: 'site-a', port: portA }],
      pairs: [{ name: 'p0', peer: 'site-a', mode, role: 'secondary' }] });
    sites.push(b);
    const a = await PairSite.start({ ...common, id: 'site-a', replicationPort: portA, peers: [{ id: 'site-b', port: portB }],
      pairs: [{ name: 'p0', peer: 'site-b', mode, role: 'primary' }] });
    sites.push(a);
    await a.until('p0', (pair) => pair.state === 'mirroring', 'p0 mirroring');
    return [a, b];
  }

  it(`sync: ${SIGKILL_ROUNDS} rounds of SIGKILL of the primary under write load; after each takeover every acknowledged write is on the secondary`, async () => {
    const [a, b] = await twoSites('sync');
    const random = prng(7201);
    let totalAcknowledged = 0;
    let totalInFlight = 0;
    for (let round = 1; round <= SIGKILL_ROUNDS; round++) {
      const context = `round ${round}`;
      const primaryEvents = await a.watch();
      const client = await a.connect();
      const writer = new AcknowledgedWriter(client, { tag: round, seed: 7200 + round, queueDepth: 16 }).start();
      // Kill after a varying number of acknowledged writes, with writes in flight.
      await writer.acknowledgedAtLeast(200 + Math.floor(random() * 1500));
      const sequenceBefore = primaryEvents.events.filter((event) => event.subject === 'pair:p0' && event.kind === 'change');
      await a.sigkill();
      await writer.ended();
      client.destroy();
      assert.ok(writer.acknowledgedCount >= 200, `${context}: ${writer.acknowledgedCount} writes acknowledged`);
      assert.equal(writer.errors, 0, `${context}: the primary refused writes before the kill`);
      // The sync pair mirrored all along (a suspension would have let writes complete without
      // the secondary: fence 'never').
      assert.deepEqual(sequenceBefore.map((event) => event.new), [], `${context}: the pair changed state under load: ${JSON.stringify(sequenceBefore)}`);
      totalAcknowledged += writer.acknowledgedCount;
      totalInFlight += writer.unacknowledged.size;

      await b.until('p0', (pair) => pair.state === 'suspended', `${context}: the secondary sees the primary gone`);
      const line = await b.pairVerb('takeover', 'p0');
      assert.match(line, /role primary/, `${context}: ${line}`);
      const taken = await b.pair('p0');
      assert.equal(taken.role, 'primary', context);
      assert.equal(taken.declaredRole, 'secondary', context);
      const image = await b.readAll();
      const problems = writer.verify(image);
      assert.deepEqual(problems, [], `${context}: acknowledged writes missing on the secondary after the takeover ` +
        `(${writer.acknowledgedCount} acknowledged, ${writer.unacknowledged.size} in flight)`);

      // The old primary comes back demoted and is resynced from the new primary.
      await a.restart();
      await a.until('p0', (pair) => pair.role === 'secondary', `${context}: the old primary restarts as the secondary`);
      await b.caughtUp('p0');
      const demoted = await a.pair('p0');
      assert.equal(demoted.declaredRole, 'primary', context);
      // Its export follows the role: a write is refused.
      const refused = await a.connect();
      assert.notEqual(await refused.writeData(0, Buffer.alloc(4096)), 0, `${context}: the demoted primary's export took a write`);
      await refused.disconnect();
      await a.pairVerb('failback', 'p0');
      await a.caughtUp('p0');
      assert.equal((await b.pair('p0')).role, 'secondary', context);
      const [left, right] = [await a.readAll(), await b.readAll()];
      assert.ok(left.equals(right), `${context}: the two sides differ after the failback`);
      assert.deepEqual(writer.verify(left), [], `${context}: acknowledged writes lost by the failback`);
    }
    assert.ok(totalAcknowledged >= SIGKILL_ROUNDS * 200, `${totalAcknowledged} acknowledged writes over ${SIGKILL_ROUNDS} rounds`);
    assert.ok(totalInFlight > 0, 'no round had writes in flight at the kill');
  });

  it('takeover, writes on the new primary, the old primary back: resynced with only the changed tracks, failback, identical', async () => {
    const [a, b] = await twoSites('sync');
    // 16 MiB mirrored first, so a full copy would be obvious.
    const fill = await a.connect();
    for (let at = 0; at < 16 * MIB; at += MIB) assert.equal(await fill.writeData(at, writeContent(1, at / MIB, at, MIB)), 0);
    await fill.disconnect();
    await a.caughtUp('p0');
    await a.sigkill();
    await b.until('p0', (pair) => pair.state === 'suspended', 'the secondary sees the primary gone');
    await b.pairVerb('takeover', 'p0');
    // Writes on the new primary: 5 tracks.
    const changedTracks = [3, 40, 41, 200, 480];
    const client = await b.connect();
    for (const track of changedTracks) {
      assert.equal(await client.writeData(track * TRACK_BYTES, writeContent(2, track, track * TRACK_BYTES, TRACK_BYTES)), 0);
    }
    await client.disconnect();
    const before = (await b.pair('p0')).resyncedBytes ?? 0;
    await a.restart();
    await a.until('p0', (pair) => pair.role === 'secondary', 'the old primary restarts demoted');
    const mirrored = await b.caughtUp('p0');
    const moved = (mirrored.resyncedBytes ?? 0) - before;
    assert.ok(moved >= changedTracks.length * TRACK_BYTES, `the resync moved ${moved} bytes; the new primary changed ${changedTracks.length} tracks`);
    assert.ok(moved <= (changedTracks.length + 8) * TRACK_BYTES,
      `the resync moved ${moved} bytes for ${changedTracks.length} changed tracks (16 MiB were written before; the volume is ${CAPACITY_BYTES})`);
    await a.pairVerb('failback', 'p0');
    await a.caughtUp('p0');
    const [left, right] = [await a.readAll(), await b.readAll()];
    assert.ok(left.equals(right), 'the two sides differ after the failback');
    for (const track of changedTracks) {
      const expected = writeContent(2, track, track * TRACK_BYTES, TRACK_BYTES);
      assert.ok(left.subarray(track * TRACK_BYTES, (track + 1) * TRACK_BYTES).equals(expected), `track ${track} written during the takeover is kept`);
    }
    assert.ok(left.subarray(5 * MIB, 6 * MIB).equals(writeContent(1, 5, 5 * MIB, MIB)), 'the data from before the takeover is kept');
  });
});
