// A journal group across real `blockmirror serve` processes over loopback TCP: two volumes
// (a log and a data volume) whose pairs share one journal. A real NBD client writes steps in
// the application's order (log block i, acknowledged, then data block i, acknowledged); the
// primary is SIGKILLed mid-stream; the secondary's two read-only exports, read over NBD, are a
// write-order prefix of the steps (never data ahead of its log); both members are taken over
// with the command; the old primary restarts demoted and is resynced to identical. A second case
// restarts the SIGKILLed primary instead: both members resume from the kept group journal. Volumes are
// `shared` (their data, pair metadata and bitmaps outlive the kill); every /dev/shm object the
// test made is unlinked after it.
import * as assert from 'node:assert/strict';
import * as path from 'node:path';

import { AdminClient } from '../../src/admin/client';
import { PAIR_LINK, ports, removeShm, shmPrefix } from '../helpers/pair-sites';
import { NbdTestClient } from '../helpers/nbd-client';
import { CLI_PATH, ServeProcess } from '../helpers/serve-process';
import { makeTempDir, removeTempDir, run, waitFor } from '../helpers/tools';

const VOLUMES = ['log', 'data'] as const;
const BLOCK = 4096;
const CAPACITY_BYTES = 8 * 1024 * 1024;
const STEPS = CAPACITY_BYTES / BLOCK;

interface Site {
  id: string;
  serve: ServeProcess;
  admin: AdminClient;
  adminSocket: string;
  config: Record<string, unknown>;
}

type PairEntry = Record<string, unknown> & { name: string; role: string; state: string };

function siteConfig(id: string, peer: string, role: 'primary' | 'secondary', prefix: string, portOf: Record<string, number>): Record<string, unknown> {
  return {
    controllers: [{
      id,
      volumes: VOLUMES.map((name) => ({ name, capacity: `${CAPACITY_BYTES}`, backing: 'shared', sharedName: `${prefix}.${id}-${name}` })),
      exports: VOLUMES.map((name) => ({ name: `${id}-${name}`, volume: name })),
      replication: { listen: `127.0.0.1:${portOf[id]}`, ...PAIR_LINK },
      peers: [{ id: peer, address: `127.0.0.1:${portOf[peer]}` }],
      pairs: VOLUMES.map((name) => ({ name: `g-${name}`, volume: name, peer, remoteVolume: name, mode: 'async', role, journalGroup: 'db' })),
    }],
    listen: [{ host: '127.0.0.1', port: 0 }],
  };
}

async function startSite(id: string, config: Record<string, unknown>, directory: string): Promise<Site> {
  const adminSocket = path.join(directory, `${id}.admin.sock`);
  const serve = await ServeProcess.start({
    config, directory, args: ['--port', '0', '--admin', adminSocket, '--status-interval', '60', '--log-level', 'info'], readyTimeoutMs: 30_000,
  });
  return { id, serve, admin: new AdminClient(adminSocket, { timeoutMs: 10_000 }), adminSocket, config };
}

async function pairs(site: Site): Promise<PairEntry[]> {
  const status = await site.admin.get('/status') as { controllers: { pairs: PairEntry[] }[] };
  return status.controllers[0]?.pairs ?? [];
}

async function untilPairs(site: Site, predicate: (entries: PairEntry[]) => boolean, what: string, timeoutMs = 60_000): Promise<void> {
  let last: PairEntry[] = [];
  try {
    await waitFor(async () => {
      last = await pairs(site);
      return predicate(last);
    }, `${site.id}: ${what}`, timeoutMs, 50);
  } catch (error) {
    throw new Error(`${(error as Error).message}; last: ${JSON.stringify(last.map((entry) => [entry.name, entry.role, entry.state, entry.reason]))}\n${site.serve.stderrText.slice(-2000)}`);
  }
}

function content(volume: number, step: number): Buffer {
  const data = Buffer.alloc(BLOCK);
  for (let at = 0; at < BLOCK; at += 8) {
    data.writeUInt32LE(step + 1, at);
    data.writeUInt32LE(volume + 1, at + 4);
  }
  return data;
}

async function readVolume(site: Site, volume: string): Promise<Buffer> {
  const client = await NbdTestClient.open(site.serve.tcpAddress, { exportName: `${site.id}-${volume}` });
  try {
    const out = Buffer.alloc(CAPACITY_BYTES);
    const chunk = 1024 * 1024;
    await Promise.all(Array.from({ length: CAPACITY_BYTES / chunk }, async (_, index) => {
      (await client.readData(index * chunk, chunk)).copy(out, index * chunk);
    }));
    return out;
  } finally {
    await client.disconnect().catch(() => client.destroy());
  }
}

/** Leading blocks holding the steps, or -1 when anything else is in the volume. */
function prefixLength(image: Buffer, volume: number): number {
  let length = 0;
  while (length < STEPS && image.subarray(length * BLOCK, (length + 1) * BLOCK).equals(content(volume, length))) length++;
  for (let at = length * BLOCK; at < image.length; at++) if (image[at] !== 0) return -1;
  return length;
}

/**
 * The application on site `site`: log i, then data i, each after the previous one was
 * acknowledged, until killSite() SIGKILLs the site. `acknowledged()` is the steps fully acknowledged so far.
 */
async function startApplication(site: Site): Promise<{ acknowledged: () => number; killSite: () => Promise<void> }> {
  const clients = await Promise.all(VOLUMES.map((volume) => NbdTestClient.open(site.serve.tcpAddress, { exportName: `${site.id}-${volume}` })));
  let acknowledged = 0;
  let stop = false;
  const writer = (async () => {
    for (let step = 0; step < STEPS && !stop; step++) {
      for (const [index, client] of clients.entries()) await client.writeData(step * BLOCK, content(index, step));
      acknowledged = step + 1;
    }
  })().catch(() => undefined);
  return {
    acknowledged: () => acknowledged,
    // SIGKILL of the site mid-stream; the writer ends with its connections.
    killSite: async () => {
      await site.serve.signal('SIGKILL');
      stop = true;
      await writer;
      for (const client of clients) client.destroy();
    },
  };
}

describe('75 a journal group across serve processes: SIGKILL mid-stream, takeover, return', function () {
  this.timeout(180_000);
  let directory: string;
  let prefix: string;
  const sites: Site[] = [];

  beforeEach(() => {
    directory = makeTempDir('group');
    prefix = shmPrefix('75');
  });

  afterEach(async () => {
    for (const site of sites.splice(0)) await site.serve.kill();
    removeShm(prefix);
    removeTempDir(directory);
  });

  it('keeps the secondary a write-order prefix of both volumes through a SIGKILL of the primary, and resyncs the old primary after the takeover', async () => {
    const [portA, portB] = await ports(2) as [number, number];
    const portOf = { 'site-a': portA, 'site-b': portB };
    const b = await startSite('site-b', siteConfig('site-b', 'site-a', 'secondary', prefix, portOf), directory);
    sites.push(b);
    let a = await startSite('site-a', siteConfig('site-a', 'site-b', 'primary', prefix, portOf), directory);
    sites.push(a);
    await untilPairs(a, (entries) => entries.length === 2 && entries.every((entry) => entry.state === 'mirroring'), 'both members mirroring');
    const status = await a.admin.get('/status') as { controllers: { journalGroups: { name: string; pairs: string[] }[] }[] };
    assert.deepEqual(status.controllers[0]?.journalGroups.map((group) => [group.name, group.pairs]), [['db', ['g-log', 'g-data']]]);

    // With the primary reachable, takeover-group is a drained switch of the whole group, and
    // failback-group (here on the side now primary) swaps every role back.
    const switched = await run(process.execPath, [CLI_PATH, 'pair', 'takeover-group', 'db', '--admin', b.adminSocket], { timeoutMs: 60_000, check: false });
    assert.equal(switched.code, 0, `takeover-group with the primary up: ${switched.stdout}${switched.stderr}`);
    assert.deepEqual(switched.stdout.trimEnd().split('\n').map((line) => line.replace(/: .*; /, ' ')), ['pair g-log role primary', 'pair g-data role primary']);
    await untilPairs(a, (entries) => entries.every((entry) => entry.role === 'secondary' && entry.state === 'mirroring'), 'site-a the secondary of both');
    const back = await run(process.execPath, [CLI_PATH, 'pair', 'failback-group', 'db', '--admin', b.adminSocket], { timeoutMs: 60_000, check: false });
    assert.equal(back.code, 0, `failback-group: ${back.stdout}${back.stderr}`);
    assert.deepEqual(back.stdout.trimEnd().split('\n').map((line) => line.replace(/: .*; /, ' ')), ['pair g-log role secondary', 'pair g-data role secondary']);
    await untilPairs(a, (entries) => entries.every((entry) => entry.role === 'primary' && entry.state === 'mirroring'), 'site-a the primary of both again');
    const declared = await run(process.execPath, [CLI_PATH, 'pair', 'failback-group', 'db', '--admin', a.adminSocket], { timeoutMs: 60_000, check: false });
    assert.equal(declared.code, 1, 'every role is the declared one already');
    assert.match(declared.stderr, /ERR_PAIR_STATE.*a failback needs every member out of its declared role/);

    const application = await startApplication(a);
    await waitFor(() => application.acknowledged() >= 300, 'the first 300 steps acknowledged', 60_000);
    const unknown = await run(process.execPath, [CLI_PATH, 'pair', 'takeover-group', 'nosuch', '--admin', b.adminSocket], { timeoutMs: 60_000, check: false });
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /ERR_PAIR_UNKNOWN/);
    await untilPairs(b, (entries) => entries.length === 2 && entries.every((entry) => entry.role === 'secondary'), 'site-b still the secondary of both');
    await application.killSite();
    const acknowledged = application.acknowledged();
    await untilPairs(b, (entries) => entries.every((entry) => entry.state === 'suspended'), 'the secondary sees the primary gone', 30_000);

    const images = await Promise.all(VOLUMES.map((volume) => readVolume(b, volume)));
    const log = prefixLength(images[0] as Buffer, 0);
    const data = prefixLength(images[1] as Buffer, 1);
    assert.ok(log >= 0 && data >= 0 && (data === log || data === log - 1), `the secondary after the kill: log ${log}, data ${data} steps (acknowledged ${acknowledged})`);
    assert.ok(log > 0, 'the secondary holds part of the stream');

    // Both members in one step (pair takeover-group): each line names a member now primary.
    const answer = await run(process.execPath, [CLI_PATH, 'pair', 'takeover-group', 'db', '--admin', b.adminSocket], { timeoutMs: 60_000, check: false });
    assert.equal(answer.code, 0, `takeover-group db: ${answer.stdout}${answer.stderr}`);
    const lines = answer.stdout.trimEnd().split('\n');
    assert.equal(lines.length, 2, answer.stdout);
    for (const volume of VOLUMES) assert.ok(lines.some((line) => line.startsWith(`pair g-${volume}: `) && line.endsWith('role primary')), answer.stdout);
    await untilPairs(b, (entries) => entries.every((entry) => entry.role === 'primary'), 'site-b is the primary of both');
    const again = await run(process.execPath, [CLI_PATH, 'pair', 'takeover-group', 'db', '--admin', b.adminSocket], { timeoutMs: 60_000, check: false });
    assert.equal(again.code, 1, 'a second takeover-group finds every member primary already');
    assert.match(again.stderr, /ERR_PAIR_STATE.*already the primary of every member/);
    // The new primary writes (its exports are read-write now).
    const bClients = await Promise.all(VOLUMES.map((volume) => NbdTestClient.open(b.serve.tcpAddress, { exportName: `site-b-${volume}` })));
    for (const [index, client] of bClients.entries()) await client.writeData((STEPS - 1) * BLOCK, content(index, 99_999));
    for (const client of bClients) await client.disconnect().catch(() => client.destroy());

    // The old primary returns: demoted by the generations, resynced from site-b.
    sites.splice(sites.indexOf(a), 1);
    a = await startSite('site-a', a.config, directory);
    sites.push(a);
    await untilPairs(a, (entries) => entries.every((entry) => entry.role === 'secondary' && entry.state === 'mirroring'), 'site-a demoted and mirroring');
    await untilPairs(b, (entries) => entries.every((entry) => entry.state === 'mirroring' && (entry.oos as { tracks: number }).tracks === 0), 'site-b caught up');
    for (const volume of VOLUMES) {
      const [left, right] = await Promise.all([readVolume(a, volume), readVolume(b, volume)]);
      assert.ok(left.equals(right), `${volume}: both sides identical after the return`);
    }
  });

  it('resumes both members from the kept group journal after a SIGKILL and restart of the primary: nothing resynced, a write-order prefix, identical', async () => {
    const [portA, portB] = await ports(2) as [number, number];
    const portOf = { 'site-a': portA, 'site-b': portB };
    const b = await startSite('site-b', siteConfig('site-b', 'site-a', 'secondary', prefix, portOf), directory);
    sites.push(b);
    let a = await startSite('site-a', siteConfig('site-a', 'site-b', 'primary', prefix, portOf), directory);
    sites.push(a);
    await untilPairs(a, (entries) => entries.length === 2 && entries.every((entry) => entry.state === 'mirroring'), 'both members mirroring');
    const application = await startApplication(a);
    await waitFor(() => application.acknowledged() >= 200, 'the first 200 steps acknowledged', 60_000);
    await application.killSite();
    const acknowledged = application.acknowledged();
    await untilPairs(b, (entries) => entries.every((entry) => entry.state === 'suspended'), 'the secondary sees the primary gone', 30_000);

    sites.splice(sites.indexOf(a), 1);
    a = await startSite('site-a', a.config, directory);
    sites.push(a);
    await untilPairs(a, (entries) => entries.length === 2 && entries.every((entry) => entry.role === 'primary' && entry.state === 'mirroring' &&
      (entry.lag as { records: number }).records === 0), 'both members resumed and caught up');
    for (const entry of await pairs(a)) {
      assert.equal(entry.resumedStreams, 1, `${entry.name} resumed from the journal: ${JSON.stringify(entry)}`);
      assert.equal(entry.resyncedBytes, 0, `${entry.name} resynced nothing`);
      assert.equal(entry.reason, 'resumed from the journal');
    }
    assert.match(a.serve.stderrText + a.serve.stdoutLines.join('\n'), /found from an earlier run/);
    for (const entry of await pairs(b)) assert.equal(entry.consistency, 'consistent', `${entry.name} on the secondary`);
    const images = await Promise.all(VOLUMES.map((volume) => readVolume(b, volume)));
    const log = prefixLength(images[0] as Buffer, 0);
    const data = prefixLength(images[1] as Buffer, 1);
    assert.ok(log >= acknowledged - 1 && (data === log || data === log - 1), `a write-order prefix with every acknowledged step: log ${log}, data ${data}, acknowledged ${acknowledged}`);
    for (const volume of VOLUMES) {
      const [left, right] = await Promise.all([readVolume(a, volume), readVolume(b, volume)]);
      assert.ok(left.equals(right), `${volume}: both sides identical`);
    }
  });
});
