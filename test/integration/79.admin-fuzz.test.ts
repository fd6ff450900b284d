// The admin endpoint of a real serve (the built-in default: two controllers, a sync pair, the
// lockstep barrier, snapshots) fed seeded garbage: every POST route gets JSON bodies made of
// its real field names with arbitrary values (and arrays, strings, numbers, nested junk). Each
// answer is a success or a 4xx (503/504 for a lockstep that cannot finish) carrying an
// ERR_<AREA>_<WHAT> code, never a 500; the serve stays up, its status stays readable, and once
// its links are healed its pair mirrors again.
import * as assert from 'node:assert/strict';
import * as path from 'node:path';

import * as fc from 'fast-check';

import { AdminClient, AdminResponseError } from '../../src/admin/client';
import { DISK_VERBS } from '../../src/admin/disk-routes';
import { GROUP_VERBS } from '../../src/admin/group-routes';
import { SNAPSHOT_VERBS } from '../../src/admin/snapshot-routes';
import { ServeProcess } from '../helpers/serve-process';
import { makeTempDir, removeTempDir, waitFor } from '../helpers/tools';

// Each route's own fields (a body with another is refused whole: the fuzz would stop there).
const ROUTES: Record<string, string[]> = {
  '/links/fault': ['controller', 'peer', 'partition', 'delayMs', 'jitterMs', 'direction', 'drop', 'bandwidthBytesPerSecond'],
  '/links/heal': ['controller', 'peer'],
  ...Object.fromEntries(['suspend', 'resume', 'failback', 'delete'].map((verb) => [`/pairs/${verb}`, ['controller', 'pair']])),
  '/pairs/takeover': ['controller', 'pair', 'force'],
  '/pairs/takeover-group': ['controller', 'journalGroup', 'force'],
  '/pairs/failback-group': ['controller', 'journalGroup'],
  '/pairs/resolve': ['controller', 'pair', 'keep'],
  '/pairs/create': ['controller', 'pair', 'volume', 'peer', 'remoteVolume', 'mode', 'role', 'fence', 'autoResume', 'journalHold', 'journalGroup'],
  '/lockstep': ['controller', 'pairs', 'volumes', 'journals', 'timeoutMs'],
  '/lockstep/enable': ['controller'],
  '/lockstep/disable': ['controller'],
  ...Object.fromEntries(SNAPSHOT_VERBS.map((verb) => [`/snapshots/${verb}`, ['controller', 'volume', ...(verb === 'list' ? [] : ['name']), ...(verb === 'clone' ? ['clone'] : [])]])),
  '/groups/create': ['controller', 'group'],
  ...Object.fromEntries(GROUP_VERBS.filter((verb) => verb !== 'create').map((verb) => [`/groups/${verb}`, ['controller', 'name', ...(verb === 'recover' ? ['cycle', 'mode'] : [])]])),
  ...Object.fromEntries(DISK_VERBS.map((verb) => [`/disks/${verb}`, ['controller', ...(verb === 'list' ? [] : ['disk']),
    ...(verb === 'fault' ? ['operations', 'byteOffset', 'byteLength', 'rate', 'afterCount', 'errno', 'latencyMs'] : [])]])),
};

const PLAUSIBLE = fc.constantFrom('vol0', 'vol0-b', 'site-a', 'site-b', 'primary', 'secondary', 'sync', 'async', 'never', 'data', 'both', 'a-to-b',
  's1', 's2', 'g1', 'd0', 'read', 'write', 'vol0', 'vol0', '', '../../etc/passwd', 'x'.repeat(300), '\u0000', '💥');

const value = fc.oneof(
  { weight: 6, arbitrary: PLAUSIBLE },
  { weight: 3, arbitrary: fc.oneof(fc.integer({ min: -1, max: 5000 }), fc.boolean(), fc.array(PLAUSIBLE, { minLength: 1, maxLength: 2 })) },
  { weight: 1, arbitrary: fc.oneof(fc.double(), fc.constant(null), fc.jsonValue({ maxDepth: 2 })) },
);

/** A body each route takes as it is, on this serve (site-a and site-b, pair vol0). */
function validBody(route: string, side: string): Record<string, unknown> {
  const controller = side;
  const peer = side === 'site-a' ? 'site-b' : 'site-a';
  if (route === '/links/fault') return { controller, peer, delayMs: 2 };
  if (route === '/links/heal') return { controller, peer };
  if (route === '/pairs/takeover') return { controller, pair: 'vol0', force: false };
  if (route === '/pairs/takeover-group') return { controller, journalGroup: 'g1', force: false };
  if (route === '/pairs/failback-group') return { controller, journalGroup: 'g1' };
  if (route === '/pairs/resolve') return { controller, pair: 'vol0', keep: 'primary' };
  if (route === '/pairs/create') return { controller, pair: 'p9', volume: 'vol0', peer, remoteVolume: 'vol0', mode: 'async', role: 'primary' };
  if (route.startsWith('/pairs/')) return { controller, pair: 'vol0' };
  if (route === '/lockstep') return { controller, pairs: ['vol0'] };
  if (route.startsWith('/lockstep/')) return { controller };
  if (route === '/snapshots/list') return { controller, volume: 'vol0' };
  if (route === '/snapshots/clone') return { controller, volume: 'vol0', name: 's1', clone: 'c1' };
  if (route.startsWith('/snapshots/')) return { controller, volume: 'vol0', name: 's1' };
  if (route === '/groups/create') return { controller, group: { name: 'g1', relationships: [{ id: 'r1', role: 'master', controller, volume: 'vol0' }] } };
  if (route.startsWith('/groups/')) return { controller, name: 'g1' };
  return { controller, ...(route === '/disks/list' ? {} : { disk: 'd0' }) };
}

/** A change to a valid body: a field set to any value, a field removed, or a field the route does not take. */
const mutation = fc.oneof(
  fc.record({ kind: fc.constant('set' as const), field: fc.nat(), value }),
  fc.record({ kind: fc.constant('remove' as const), field: fc.nat() }),
  fc.record({ kind: fc.constant('add' as const), name: fc.constantFrom('force', 'keep', 'extra', '__proto__', 'constructor'), value }),
);

/** A route and a body: a valid one with 0 to 2 changes (most), or junk of any shape. */
const request = fc.tuple(fc.constantFrom(...Object.keys(ROUTES)), fc.constantFrom('site-a', 'site-b')).chain(([route, side]) => fc.tuple(fc.constant(route), fc.oneof(
  { weight: 9, arbitrary: fc.array(mutation, { maxLength: 2 }).map((changes) => {
    const body: Record<string, unknown> = validBody(route, side);
    for (const change of changes) {
      const keys = Object.keys(body);
      if (change.kind === 'add') Object.defineProperty(body, change.name, { value: change.value, enumerable: true, configurable: true, writable: true });
      else if (keys.length === 0) continue;
      else if (change.kind === 'set') body[keys[change.field % keys.length] as string] = change.value;
      else delete body[keys[change.field % keys.length] as string];
    }
    return body;
  }) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
)));

describe('79 admin endpoint under seeded garbage (a real serve)', function () {
  this.timeout(300_000);
  let directory: string;
  let serve: ServeProcess | undefined;
  let client: AdminClient;

  before(async () => {
    directory = makeTempDir('admin-fuzz');
    const adminSocket = path.join(directory, 'admin.sock');
    serve = await ServeProcess.start({ directory, args: ['--port', '0', '--admin', adminSocket, '--quiet'] });
    client = new AdminClient(adminSocket, { timeoutMs: 60_000 });
  });

  after(async () => {
    await serve?.kill();
    removeTempDir(directory);
  });

  it('answers every route with a success or a coded 4xx, never a 500, and stays up', async () => {
    const answers = new Map<string, number>();
    await fc.assert(fc.asyncProperty(request, async ([route, raw]) => {
      // A lockstep call waits for its marker without a timeout (by design): give it a short one.
      const sent = route === '/lockstep' && raw !== null && typeof raw === 'object' && !Array.isArray(raw) ? { ...raw, timeoutMs: 200 } : raw;
      let status = 200;
      try {
        await client.post(route, sent);
      } catch (error) {
        assert.ok(error instanceof AdminResponseError, `${route} ${JSON.stringify(sent)}: ${String(error)}`);
        status = error.statusCode;
        assert.ok((status >= 400 && status < 500) || status === 503 || status === 504, `${route} ${JSON.stringify(sent)} answered ${status}: ${error.message}`);
        assert.match(String(error.remoteCode), /^ERR_[A-Z0-9]+(_[A-Z0-9]+)+$/, `${route} ${JSON.stringify(sent)}: ${error.message}`);
      }
      answers.set(`${route} ${status}`, (answers.get(`${route} ${status}`) ?? 0) + 1);
      assert.equal(serve?.child.exitCode, null, 'the serve is still running');
    }), { numRuns: 1500, seed: Number(process.env.BLOCKMIRROR_FUZZ_SEED ?? 7901), endOnFailure: true });
    process.stdout.write(`      ${[...answers].map(([key, count]) => `${key}: ${count}`).join(', ')}\n`);
    const statuses = [...answers.keys()].map((key) => key.split(' ')[1]);
    assert.ok(statuses.some((status) => status !== '200'), 'some garbage was refused');
    assert.ok(statuses.filter((status) => status === '200').length >= 10, 'some requests got through to act');
    // Still serving: the status reads, and with the links healed the pair (if the garbage left it) mirrors.
    await client.post('/links/heal', { controller: 'site-a', peer: 'site-b' });
    await client.post('/links/heal', { controller: 'site-b', peer: 'site-a' });
    const status = await client.get('/status') as { controllers?: unknown[] };
    assert.ok(Array.isArray(status.controllers) && status.controllers.length === 2, JSON.stringify(status).slice(0, 300));
    await waitFor(async () => {
      const pairs = ((await client.get('/status')) as { controllers: { pairs?: { name: string; role: string; state: string }[] }[] }).controllers
        .flatMap((controller) => controller.pairs ?? []);
      return pairs.length === 0 || pairs.every((pair) => pair.state === 'mirroring' || pair.state === 'suspended' || pair.state === 'split-brain');
    }, 'the pairs settle', 30_000);
  });
});
