// Links between two real `blockmirror serve` processes over loopback TCP: they come up
// (authenticated when both hold the same secret), refuse a wrong or one-sided secret and an
// incompatible protocol version on both sides, reconnect with backoff after a SIGKILL and a
// restart, declare a SIGSTOPped peer dead and recover on SIGCONT, and take faults from the
// command. Status, events and metrics are read through the command and the admin endpoint.
import * as assert from 'node:assert/strict';

import { CLI_PATH } from '../helpers/serve-process';
import { EventWatch, Site, twoPorts } from '../helpers/link-pair';
import { makeTempDir, removeTempDir, run } from '../helpers/tools';

const SECRET = 'correct horse battery staple';

function cli(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return run(process.execPath, [CLI_PATH, ...args], { timeoutMs: 20_000, check: false });
}

describe('70 links between serve processes', function () {
  this.timeout(60_000);
  let directory: string;
  let sites: Site[] = [];
  let watches: EventWatch[] = [];

  beforeEach(() => {
    directory = makeTempDir('bm-link-');
    sites = [];
    watches = [];
  });

  afterEach(async () => {
    for (const watch of watches) watch.stop();
    for (const site of sites) {
      try {
        process.kill(site.serve.child.pid as number, 'SIGCONT');
      } catch {
        // Exited already.
      }
      await site.serve.kill();
    }
    removeTempDir(directory);
  });

  async function pair(options: { secretA?: string; secretB?: string; envB?: NodeJS.ProcessEnv } = {}): Promise<[Site, Site]> {
    const [portA, portB] = await twoPorts();
    const b = await Site.start({ id: 'site-b', replicationPort: portB, directory, env: options.envB ?? {},
      peers: [{ id: 'site-a', port: portA, secret: options.secretB }] });
    sites.push(b);
    const a = await Site.start({ id: 'site-a', replicationPort: portA, directory,
      peers: [{ id: 'site-b', port: portB, secret: options.secretA }] });
    sites.push(a);
    return [a, b];
  }

  it('come up authenticated, and status, events and metrics say so through the command', async () => {
    const [a, b] = await pair({ secretA: SECRET, secretB: SECRET });
    await a.linkState('site-b', 'up');
    await b.linkState('site-a', 'up');

    const status = await cli('status', '--json', '--admin', a.adminSocket);
    assert.equal(status.code, 0, status.stderr);
    const parsed = JSON.parse(status.stdout) as { controllers: { id: string; links: Record<string, unknown>[] }[] };
    const link = parsed.controllers[0]?.links[0] as Record<string, unknown>;
    assert.equal(parsed.controllers[0]?.id, 'site-a');
    assert.equal(link.state, 'up');
    assert.equal(link.authenticated, true);
    assert.equal(link.auth, 'hmac-sha256');
    assert.equal(link.dialing, true);
    assert.ok(typeof link.rttMs === 'number' || link.rttMs === null);

    const human = await cli('status', '--admin', b.adminSocket);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /site-a/);
    assert.match(human.stdout, /\bup\b/);

    const events = await cli('events', '--now', '--admin', a.adminSocket);
    assert.equal(events.code, 0, events.stderr);
    const lines = events.stdout.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
    assert.ok(lines.some((event) => event.subject === 'link:site-b' && event.kind === 'exists' && event.new === 'up'),
      events.stdout);

    const metrics = await a.admin.metricsText();
    const up = /^blockmirror_link_up\{[^}]*peer="site-b"[^}]*\} (\S+)$/m.exec(metrics);
    assert.equal(up?.[1], '1', metrics.slice(0, 2000));
    const bytesOut = /^blockmirror_link_bytes_total\{[^}]*direction="out"[^}]*peer="site-b"[^}]*\} (\S+)$|^blockmirror_link_bytes_total\{[^}]*peer="site-b"[^}]*direction="out"[^}]*\} (\S+)$/m.exec(metrics);
    assert.ok(bytesOut !== null && Number(bytesOut[1] ?? bytesOut[2]) > 0, 'link bytes out counted');
    for (const line of metrics.split('\n')) {
      if (line === '' || line.startsWith('#')) continue;
      assert.match(line, /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? [-+0-9.eE]+|NaN|[+-]Inf$/, `not a Prometheus sample line: ${line}`);
    }

    // The secret is never shown: not in status, events, metrics or logs.
    for (const text of [status.stdout, human.stdout, events.stdout, metrics, a.serve.stderrText, b.serve.stderrText,
      a.serve.stdoutLines.join('\n')]) {
      assert.ok(!text.includes(SECRET), 'the secret leaked');
    }
  });

  it('without a secret, status says the link is unauthenticated', async () => {
    const [a] = await pair();
    await a.linkState('site-b', 'up');
    const link = await a.link('site-b');
    assert.equal(link.authenticated, false);
    assert.equal(link.auth, 'none');
  });

  for (const [name, secretA, secretB] of [
    ['a wrong secret', SECRET, 'another secret of 16+ bytes'],
    ['a secret on the dialing side only', SECRET, undefined],
    ['a secret on the accepting side only', undefined, SECRET],
  ] as const) {
    it(`refuse ${name} with ERR_LINK_AUTH on both sides`, async () => {
      const [a, b] = await pair({ secretA, secretB });
      await a.waitForEvent((event) => event.subject === 'link:site-b' && event.code === 'ERR_LINK_AUTH', 'ERR_LINK_AUTH on site-a');
      await b.waitForEvent((event) => event.subject === 'link:site-a' && event.code === 'ERR_LINK_AUTH', 'ERR_LINK_AUTH on site-b');
      assert.notEqual((await a.link('site-b')).state, 'up');
      assert.notEqual((await b.link('site-a')).state, 'up');
      assert.match(a.serve.stderrText, /ERR_LINK_AUTH/);
      assert.match(b.serve.stderrText, /ERR_LINK_AUTH/);
      for (const site of [a, b]) assert.ok(!site.serve.stderrText.includes(SECRET), 'the secret leaked into a log');
    });
  }

  it('refuse an incompatible link protocol version, and both sides log it', async () => {
    const [a, b] = await pair({ envB: { BLOCKMIRROR_LINK_PROTOCOL_VERSIONS: '2' } });
    const seen = await a.waitForEvent((event) => event.subject === 'link:site-b' && event.code === 'ERR_LINK_VERSION', 'ERR_LINK_VERSION on site-a');
    assert.match(String(seen.detail), /speaks 2.*speaks 1|speaks 1.*speaks 2/);
    await b.waitForEvent((event) => event.subject === 'link:site-a' && event.code === 'ERR_LINK_VERSION', 'ERR_LINK_VERSION on site-b');
    assert.match(a.serve.stderrText, /incompatible link protocol/);
    assert.match(b.serve.stderrText, /incompatible link protocol/);
  });

  it('reconnect with backoff after the peer is SIGKILLed and restarted, and the events show it', async () => {
    const [a, b] = await pair({ secretA: SECRET, secretB: SECRET });
    await a.linkState('site-b', 'up');
    const events = await a.watch();
    watches.push(events);
    b.serve.child.kill('SIGKILL');
    await b.serve.exit;
    await events.until((event) => event.subject === 'link:site-b' && event.new === 'down' && event.old === 'up', 'the link going down');
    // Several failed attempts while the peer is gone, each one later than the one before.
    const downed = await events.until((event) => event.subject === 'link:site-b' && event.new === 'down' &&
      event.reason === 'connect-failed', 'a failed reconnect attempt');
    assert.match(String(downed.detail), /ECONNREFUSED/);
    const link = await (async () => {
      for (let tries = 0; tries < 100; tries++) {
        const status = await a.link('site-b');
        if ((status.attempt as number) >= 3) return status;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      throw new Error('fewer than 3 attempts');
    })();
    assert.ok((link.attempt as number) >= 3);
    assert.ok(link.nextAttemptWallTimeMs === null || typeof link.nextAttemptWallTimeMs === 'number');
    await b.restart();
    await events.linkChange('site-b', 'up');
    // The attempts were spaced by a growing backoff (50, 100, 200, 400, 400 ms, +-20%).
    const dials = events.events.filter((event) => event.subject === 'link:site-b' && event.new === 'connecting')
      .map((event) => Date.parse(String(event.time)));
    const gaps = dials.slice(1).map((time, index) => time - (dials[index] as number));
    assert.ok(gaps.length >= 3, `gaps ${gaps.join(', ')}`);
    assert.ok((gaps[2] as number) > (gaps[0] as number), `backoff did not grow: ${gaps.join(', ')}`);
    assert.ok(gaps.every((gap) => gap <= 400 + 100), `a gap above the 400 ms cap: ${gaps.join(', ')}`);
    const after = await a.link('site-b');
    assert.equal(after.state, 'up');
    assert.equal(after.reconnects, 1);
    assert.equal(after.attempt, 0);
    await b.linkState('site-a', 'up');
  });

  it('reconnect after the dialing side is SIGKILLed and restarted', async () => {
    const [a, b] = await pair();
    await b.linkState('site-a', 'up');
    const events = await b.watch();
    watches.push(events);
    a.serve.child.kill('SIGKILL');
    await a.serve.exit;
    await events.linkChange('site-a', 'down');
    await a.restart();
    await events.linkChange('site-a', 'up');
    await a.linkState('site-b', 'up');
  });

  it('declare a SIGSTOPped peer dead after the timeout, and come back on SIGCONT', async () => {
    const [a, b] = await pair();
    await a.linkState('site-b', 'up');
    const events = await a.watch();
    watches.push(events);
    const pid = b.serve.child.pid as number;
    process.kill(pid, 'SIGSTOP');
    const started = Date.now();
    const dead = await events.until((event) => event.subject === 'link:site-b' && event.reason === 'dead-peer', 'dead-peer');
    const elapsedMs = Date.now() - started;
    assert.equal(dead.new, 'down');
    assert.ok(elapsedMs >= 600, `declared dead after ${elapsedMs} ms, before the 800 ms timeout`);
    process.kill(pid, 'SIGCONT');
    await events.linkChange('site-b', 'up');
    await b.waitForEvent((event) => event.subject === 'link:site-a' && event.new === 'up', 'site-b up after SIGCONT');
  });

  it('take faults from the command, show them in status, and heal', async () => {
    const [a, b] = await pair();
    await a.linkState('site-b', 'up');

    const delayed = await cli('link', 'fault', 'site-b', '--delay', '150', '--direction', 'out', '--admin', a.adminSocket);
    assert.equal(delayed.code, 0, delayed.stderr);
    const rttSlow = await (async () => {
      for (let tries = 0; tries < 100; tries++) {
        const status = await a.link('site-b');
        if (typeof status.rttMs === 'number' && status.rttMs >= 140) return status;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      throw new Error('the delay did not show in the RTT');
    })();
    assert.equal((rttSlow.faults as { out: { delayMs: number } }).out.delayMs, 150);

    const eventsA = await a.watch();
    const eventsB = await b.watch();
    watches.push(eventsA, eventsB);
    const partitioned = await cli('link', 'fault', 'site-b', '--partition', '--admin', a.adminSocket);
    assert.equal(partitioned.code, 0, partitioned.stderr);
    // Whichever side's timer fires first declares the peer dead and closes the connection; the
    // other then sees it closed (TCP still works: the partition is in site-a's link).
    const downA = await eventsA.linkChange('site-b', 'down');
    const downB = await eventsB.linkChange('site-a', 'down');
    assert.ok([downA.reason, downB.reason].includes('dead-peer'), `${downA.reason} / ${downB.reason}`);
    for (const reason of [downA.reason, downB.reason]) assert.ok(['dead-peer', 'closed-by-peer'].includes(String(reason)));
    // Partitioned both ways: site-a does not dial again until healed.
    const attempts = ((await a.link('site-b')).attempt as number);
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal((await a.link('site-b')).attempt, attempts);
    assert.ok(!eventsA.events.some((event) => event.subject === 'link:site-b' && event.new === 'connecting' &&
      (event.seq as number) > (downA.seq as number)), 'dialed while partitioned');
    const down = await a.link('site-b');
    assert.equal(down.state, 'down');
    assert.equal((down.faults as { in: { partitioned: boolean } }).in.partitioned, true);

    const healed = await cli('link', 'heal', 'site-b', '--admin', a.adminSocket);
    assert.equal(healed.code, 0, healed.stderr);
    await eventsA.linkChange('site-b', 'up');
    assert.equal((await a.link('site-b')).faults, null);

    const reconnectsBefore = (await a.link('site-b')).reconnects as number;
    // Counted before the drop: the link may be up again before the command has exited.
    const upsBefore = eventsA.events.filter((event) => event.subject === 'link:site-b' && event.kind === 'change' && event.new === 'up').length;
    const dropped = await cli('link', 'fault', 'site-b', '--drop', '--admin', a.adminSocket);
    assert.equal(dropped.code, 0, dropped.stderr);
    await eventsA.until((event) => event.subject === 'link:site-b' && event.reason === 'dropped', 'dropped');
    await eventsA.until((event) => event.subject === 'link:site-b' && event.kind === 'change' && event.new === 'up' &&
      eventsA.events.filter((e) => e.subject === 'link:site-b' && e.kind === 'change' && e.new === 'up').length > upsBefore, 'up after drop');
    assert.equal((await a.link('site-b')).reconnects, reconnectsBefore + 1);

    const unknown = await cli('link', 'fault', 'site-z', '--drop', '--admin', a.adminSocket);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /ERR_LINK_UNKNOWN_PEER/);
    const bad = await cli('link', 'fault', 'site-b', '--delay', '-5', '--admin', a.adminSocket);
    assert.notEqual(bad.code, 0);
  });
});
