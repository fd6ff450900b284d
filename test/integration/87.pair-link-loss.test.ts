// A link loss between real `blockmirror serve` processes, the processes alive: the primary
// keeps its journal records after the secondary's position (a stream hold) and, when the link
// is back, resumes the ordered stream from there with no resync pass. The secondary's image
// stays a write-order prefix the whole time (never inconsistent). Written by a real NBD client
// over loopback TCP; the link is cut with `blockmirror link fault --partition` (frames
// discarded until the dead-peer timeout) or `--drop` (the connection reset under load).
// With `journalHold: 0` the same outage ends in a resync of the tracked tracks, as before.
import * as assert from 'node:assert/strict';

import { AcknowledgedWriter, PairSite, type PairStatus, removeShm, shmPrefix } from '../helpers/pair-sites';
import { makeTempDir, removeTempDir } from '../helpers/tools';


describe('87 a link loss between serve processes resumes from the journal', function () {
  this.timeout(180_000);
  let directory: string;
  let prefix: string;
  let sites: PairSite[] = [];

  beforeEach(() => {
    directory = makeTempDir('pair-link-loss');
    prefix = shmPrefix('87');
    sites = [];
  });

  afterEach(async () => {
    for (const site of sites) await site.stop();
    removeShm(prefix);
    removeTempDir(directory);
  });

  function twoSites(mode: 'sync' | 'async', journalHold?: number): Promise<[PairSite, PairSite]> {
    return PairSite.startPair(sites, { prefix, directory, capacity: '32MiB', mode, primary: journalHold === undefined ? {} : { journalHold } });
  }

  async function linkFault(site: PairSite, ...flags: string[]): Promise<void> {
    const answer = await site.cli('link', flags[0] === 'heal' ? 'heal' : 'fault', 'site-b', ...flags.filter((flag) => flag !== 'heal'));
    assert.equal(answer.code, 0, `link ${flags.join(' ')}: ${answer.stdout}${answer.stderr}`);
  }

  /** Writes `count` acknowledged 4 KiB writes (a fresh writer), returns it stopped. */
  async function writeSome(site: PairSite, tag: number, count: number): Promise<AcknowledgedWriter> {
    const client = await site.connect();
    const writer = new AcknowledgedWriter(client, { tag, seed: 8700 + tag, queueDepth: 8 }).start();
    await writer.acknowledgedAtLeast(count);
    await writer.stop();
    await client.disconnect();
    assert.equal(writer.errors, 0, `writer ${tag}: refused writes`);
    return writer;
  }

  /** Both sides equal, every acknowledged write of the last writer on the secondary (earlier ones were overwritten in part). */
  async function assertIdentical(a: PairSite, b: PairSite, last: AcknowledgedWriter): Promise<void> {
    const [left, right] = [await a.readAll(), await b.readAll()];
    assert.ok(left.equals(right), 'the two sides differ');
    assert.deepEqual(last.verify(right), [], 'acknowledged writes missing on the secondary');
  }

  function pairChanges(events: Record<string, unknown>[]): string[] {
    return events.filter((event) => event.subject === 'pair:p0' && event.kind === 'change').map((event) => `${String(event.new)} (${String(event.reason)})`);
  }

  it('async: writes during a partition ship from the kept journal when it heals; no resync, the secondary never inconsistent', async () => {
    const [a, b] = await twoSites('async');
    const before = await a.pair('p0');
    const secondaryEvents = await b.watch();
    await writeSome(a, 1, 300);
    await a.caughtUp('p0');

    await linkFault(a, '--partition');
    const suspended = await a.until('p0', (pair) => pair.state === 'suspended', 'p0 suspended by the partition', 30_000);
    assert.equal(suspended.reason, 'link-down');
    const outage = await writeSome(a, 2, 800);
    const held = await a.pair('p0') as PairStatus & { streamHold: { from: number; records: number; limit: number } | null };
    assert.ok(held.streamHold !== null, `no stream hold while suspended: ${JSON.stringify(held)}`);
    assert.ok(held.streamHold.records >= 800, `the hold keeps ${held.streamHold.records} records`);
    assert.equal(held.streamHold.limit, 0.75);

    await linkFault(a, 'heal');
    const resumed = await a.caughtUp('p0');
    assert.equal(resumed.reason, 'resumed from the journal', JSON.stringify(resumed));
    assert.equal(resumed.resumedStreams, 1);
    assert.equal(resumed.resyncedBytes, before.resyncedBytes, 'bytes were resynced after the outage');
    assert.equal((resumed as { streamHold?: unknown }).streamHold, null);
    const secondary = await b.pair('p0');
    assert.equal(secondary.consistency, 'consistent');
    assert.equal(secondary.resumedStreams, 1);
    const changes = pairChanges(secondaryEvents.events);
    assert.ok(!changes.some((change) => change.startsWith('resyncing') || change.startsWith('copying')), `the secondary went through a pass: ${changes.join(', ')}`);
    await assertIdentical(a, b, outage);
  });

  it('sync: the connection reset under write load; the stream resumes, nothing resynced, every acknowledged write on the secondary', async () => {
    const [a, b] = await twoSites('sync');
    const before = await a.pair('p0');
    const client = await a.connect();
    const writer = new AcknowledgedWriter(client, { tag: 3, seed: 8703, queueDepth: 16 }).start();
    await writer.acknowledgedAtLeast(300);
    await linkFault(a, '--drop');
    await a.until('p0', (pair) => (pair.resumedStreams ?? 0) >= 1, 'p0 resumed after the drop', 30_000);
    const count = writer.acknowledgedCount;
    await writer.acknowledgedAtLeast(count + 300);
    await writer.stop();
    await client.disconnect();
    assert.equal(writer.errors, 0, 'the primary refused writes (fence never)');
    const resumed = await a.caughtUp('p0');
    assert.equal(resumed.resyncedBytes, before.resyncedBytes, 'bytes were resynced after the drop');
    assert.equal((await b.pair('p0')).consistency, 'consistent');
    await assertIdentical(a, b, writer);
  });

  it('journalHold 0: the same partition ends in a resync of the tracked tracks', async () => {
    const [a, b] = await twoSites('async', 0);
    const before = await a.pair('p0');
    await linkFault(a, '--partition');
    await a.until('p0', (pair) => pair.state === 'suspended', 'p0 suspended by the partition', 30_000);
    const outage = await writeSome(a, 4, 400);
    assert.equal(((await a.pair('p0')) as { streamHold?: unknown }).streamHold, null);
    await linkFault(a, 'heal');
    const after = await a.caughtUp('p0');
    assert.equal(after.resumedStreams, 0);
    assert.ok((after.resyncedBytes ?? 0) > (before.resyncedBytes ?? 0), `nothing resynced: ${JSON.stringify(after)}`);
    await assertIdentical(a, b, outage);
  });
});
