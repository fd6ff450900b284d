// Reviewer's regression (helper V) for the resume from a kept journal (primary-pair.ts open,
// secondary-pair.ts mayResume): a restarted primary that is still simplex (its secondary is
// unreachable) takes a write the journal can never hold (a payload over maxRecordBytes: counted
// as full, in no record, only in the OOS tracking). journalFull() ignores a simplex pair, so the
// meta keeps `streaming`; the journal's full count lives in the process only, and with the
// secondary caught up before the first crash nothing was left to release, so the head stays at
// the secondary's position. After a second SIGKILL and restart the primary asks to resume, the
// secondary accepts (same generation, exact position, in the journal), the primary is caught up
// at once and clearIfCaughtUp() clears the tracking of that write: the secondary says
// consistent and never gets it.
//
// Two real serves (test/helpers/pair-sites.ts); the serve's journal is 64 MiB with records of at
// most 16 MiB, so a 20 MiB NBD WRITE (the server takes up to 32 MiB) is the unrecorded write.
import * as assert from 'node:assert/strict';

import { PairSite, type PairSiteOptions, assertIdentical, ports, removeShm, shmPrefix, writeContent } from '../helpers/pair-sites';
import { makeTempDir, removeTempDir } from '../helpers/tools';

const KIB = 1024;
const MIB = 1024 * KIB;
const BLOCK_BYTES = 4096;

describe('86 a resumed stream after a write in no record (integration, reviewer regression)', function () {
  this.timeout(240_000);
  let directory: string;
  let prefix: string;
  let sites: PairSite[] = [];

  beforeEach(() => {
    directory = makeTempDir('pair-resume-unrecorded');
    prefix = shmPrefix('86');
    sites = [];
  });

  afterEach(async () => {
    for (const site of sites) await site.stop();
    removeShm(prefix);
    removeTempDir(directory);
  });

  async function site(options: Omit<PairSiteOptions, 'prefix' | 'directory'>): Promise<PairSite> {
    const started = await PairSite.start({ ...options, prefix, directory });
    sites.push(started);
    return started;
  }

  // SKIPPED: fails until the defect is fixed (see the note at the head of this file).
  it('a restarted simplex primary that took an unrecordable write does not resume from its journal after a second restart', async () => {
    const [portA, portB] = await ports(2) as [number, number];
    const b = await site({ id: 'site-b', replicationPort: portB, capacity: '32MiB', peers: [{ id: 'site-a', port: portA }],
      pairs: [{ name: 'p0', peer: 'site-a', mode: 'async', role: 'secondary' }] });
    const a = await site({ id: 'site-a', replicationPort: portA, capacity: '32MiB', peers: [{ id: 'site-b', port: portB }],
      pairs: [{ name: 'p0', peer: 'site-b', mode: 'async', role: 'primary' }] });
    await a.until('p0', (pair) => pair.state === 'mirroring', 'p0 mirroring');

    // Mirroring and caught up: every record is applied and released.
    let client = await a.connect();
    for (let block = 0; block < 4; block++) {
      assert.equal(await client.writeData(block * BLOCK_BYTES, writeContent(1, block, block * BLOCK_BYTES, BLOCK_BYTES)), 0);
    }
    await client.disconnect();
    await a.caughtUp('p0');
    await b.until('p0', (pair) => pair.consistency === 'consistent', 'the secondary is consistent');

    // First SIGKILL while mirroring (meta `streaming`); the secondary cannot be reached by the
    // restarted primary, which stays simplex.
    await a.sigkill();
    await b.until('p0', (pair) => pair.state === 'suspended', 'the secondary sees the primary gone');
    const partition = await b.cli('link', 'fault', 'site-a', '--partition');
    assert.equal(partition.code, 0, partition.stderr);
    await a.restart();
    await a.until('p0', (pair) => pair.state === 'simplex', 'the restarted primary is simplex behind the partition');

    // A write no record can hold: stored and acknowledged, tracked only.
    const big = Buffer.alloc(20 * MIB);
    for (let at = 0; at < big.length; at += BLOCK_BYTES) writeContent(2, at / BLOCK_BYTES, at, BLOCK_BYTES).copy(big, at);
    client = await a.connect();
    assert.equal(await client.writeData(0, big), 0, 'the 20 MiB write is acknowledged');
    await client.disconnect();
    const tracked = await a.pair('p0');
    assert.ok(((tracked.oos as { tracks: number } | undefined)?.tracks ?? 0) > 0, `the write is tracked: ${JSON.stringify(tracked.oos)}`);

    // Second SIGKILL before the link ever came up; then the partition heals.
    await a.sigkill();
    await a.restart();
    const heal = await b.cli('link', 'heal', 'site-a');
    assert.equal(heal.code, 0, heal.stderr);
    const primary = await a.caughtUp('p0');
    const secondary = await b.until('p0', (pair) => pair.state === 'mirroring', 'the secondary mirrors again');
    // Whatever the path (a resync, or a resume that still ships the write), the images agree.
    const resumed = `primary resumedStreams ${String(primary.resumedStreams)}, secondary ${secondary.consistency}`;
    await assertIdentical(a.uri, b.uri).catch((error: Error) => { throw new Error(`${error.message} (${resumed})`); });
    assert.ok(secondary.consistency === 'consistent', `secondary ${secondary.consistency}`);
    assert.equal(primary.resumedStreams, 0, 'a journal missing an acknowledged write is not resumed from');
  });
});
