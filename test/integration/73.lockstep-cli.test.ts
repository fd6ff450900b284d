// The lockstep barrier through the command and the admin endpoint, between two serve processes
// over loopback TCP: `blockmirror lockstep` prints done with RDF's number and exits 0; disabled
// and not-done have their own exit codes; a partitioned link with --timeout gives
// ERR_LOCKSTEP_TIMEOUT; the secondary's status shows the marker it safe-stored; metrics count it.
import * as assert from 'node:assert/strict';

import { Site, twoPorts } from '../helpers/link-pair';
import { CLI_PATH } from '../helpers/serve-process';
import { makeTempDir, removeTempDir, run } from '../helpers/tools';

function cli(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return run(process.execPath, [CLI_PATH, ...args], { timeoutMs: 30_000, check: false });
}

describe('73 lockstep through the command', function () {
  this.timeout(90_000);
  let directory: string;
  let sites: Site[] = [];

  before(() => {
    directory = makeTempDir('bm-lockstep-');
  });
  afterEach(async () => {
    for (const site of sites) await site.serve.kill().catch(() => undefined);
    sites = [];
  });
  after(() => removeTempDir(directory));

  it('done, disabled, not-done and a timeout behind a partition, with their exit codes; status and metrics show the markers', async () => {
    const [portA, portB] = await twoPorts();
    const b = await Site.start({ id: 'site-b', replicationPort: portB, peers: [{ id: 'site-a', port: portA }], directory,
      pairs: [{ name: 'p0', volume: 'vol0', peer: 'site-a', remoteVolume: 'vol0', mode: 'async', role: 'secondary' }] });
    sites.push(b);
    const a = await Site.start({ id: 'site-a', replicationPort: portA, peers: [{ id: 'site-b', port: portB }], directory,
      pairs: [{ name: 'p0', volume: 'vol0', peer: 'site-b', remoteVolume: 'vol0', mode: 'async', role: 'primary' }] });
    sites.push(a);
    for (let attempt = 0; attempt < 100 && (await a.pair('p0')).state !== 'mirroring'; attempt++) await new Promise((resolve) => setTimeout(resolve, 100));

    const done = await cli('lockstep', '--pair', 'p0', '--admin', a.adminSocket);
    assert.equal(done.code, 0, done.stderr);
    assert.match(done.stdout, /^lockstep: done \(31428\)$/m);
    assert.ok(((await b.pair('p0')).lastMarker as number) > 0, 'the secondary shows the marker it safe-stored');

    const unknown = await cli('lockstep', '--pair', 'nope', '--admin', a.adminSocket);
    assert.equal(unknown.code, 3);
    assert.match(unknown.stdout, /not-done \(31426\)/);

    assert.equal((await cli('lockstep', 'disable', '--admin', a.adminSocket)).code, 0);
    const disabled = await cli('lockstep', '--json', '--admin', a.adminSocket);
    assert.equal(disabled.code, 4);
    assert.equal((JSON.parse(disabled.stdout) as { result: string }).result, 'disabled');
    assert.equal((await cli('lockstep', 'enable', '--admin', a.adminSocket)).code, 0);
    assert.equal((await cli('lockstep', 'sideways', '--admin', a.adminSocket)).code, 2, 'an unknown switch is a usage error');

    assert.equal((await cli('link', 'fault', 'site-b', '--partition', '--admin', a.adminSocket)).code, 0);
    const timedOut = await cli('lockstep', '--timeout', '1500', '--admin', a.adminSocket);
    assert.equal(timedOut.code, 1);
    assert.match(timedOut.stderr, /ERR_LOCKSTEP_TIMEOUT/);
    // Without a timeout it waits, and is done once the link is back.
    const waiting = cli('lockstep', '--admin', a.adminSocket);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    assert.equal((await cli('link', 'heal', 'site-b', '--admin', a.adminSocket)).code, 0);
    const healed = await waiting;
    assert.equal(healed.code, 0, healed.stderr);

    const metrics = await a.admin.metricsText();
    assert.match(metrics, /blockmirror_lockstep_markers_total\{controller="site-a"\} [1-9]/);
  });
});
