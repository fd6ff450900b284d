// The admin commands as a user runs them: the real CLI (dist/src/cli/main.js) in a child process
// against an AdminServer with a fake array in this process. Output, exit codes 0/1/2, the
// message when no serve answers. Plus the pure formatting behind `status`.
import * as assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import * as path from 'node:path';

import { AdminServer } from '../../src/admin/server';
import { formatFaults, formatLinkLine, formatStatus, parseRate } from '../../src/cli/admin-commands';
import { BlockmirrorError } from '../../src/errors';
import { FakeAdminTarget } from '../helpers/fake-admin-target';
import { makeTempDir, removeTempDir, run, waitFor } from '../helpers/tools';

const CLI = path.join(__dirname, '..', '..', 'src', 'cli', 'main.js');

function cli(args: string[], env: NodeJS.ProcessEnv = process.env): ReturnType<typeof run> {
  return run(process.execPath, [CLI, ...args], { check: false, timeoutMs: 30_000, env });
}

/** A CLI run whose output is read while it runs; stop() sends SIGINT. */
function live(args: string[]): { child: ChildProcess; stdout: () => string; stderr: () => string; exit: Promise<number | null> } {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (text: string) => { stdout += text; });
  child.stderr?.setEncoding('utf8').on('data', (text: string) => { stderr += text; });
  const exit = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return { child, stdout: () => stdout, stderr: () => stderr, exit };
}

describe('57 admin commands', function () {
  this.timeout(60_000);
  let directory: string;
  let target: FakeAdminTarget;
  let server: AdminServer;
  let socketPath: string;

  beforeEach(async () => {
    directory = makeTempDir('admin-cli');
    socketPath = path.join(directory, 'admin.sock');
    target = new FakeAdminTarget();
    server = new AdminServer({ target, socketPath });
    await server.listen();
  });

  afterEach(async () => {
    await server.close();
    removeTempDir(directory);
  });

  it('every command has --help, and the program lists them', async () => {
    const top = await cli(['--help']);
    assert.equal(top.code, 0);
    for (const command of ['status', 'events', 'link']) assert.match(top.stdout, new RegExp(`^\\s+${command}\\b`, 'm'));
    for (const command of [['status'], ['events'], ['link'], ['link', 'fault'], ['link', 'heal']]) {
      const result = await cli([...command, '--help']);
      assert.equal(result.code, 0, `${command.join(' ')}: ${result.stderr}`);
      assert.match(result.stdout, new RegExp(`^Usage: blockmirror ${command.join(' ')}`, 'm'));
      if (command[0] !== 'link' || command.length > 1) assert.match(result.stdout, /--admin <path>/);
    }
  });

  it('status --json prints the status; --controller keeps one', async () => {
    const result = await cli(['status', '--admin', socketPath, '--json']);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(JSON.parse(result.stdout), target.status());
    const one = await cli(['status', '--admin', socketPath, '--json', '--controller', 'b']);
    assert.equal(one.code, 0, one.stderr);
    assert.deepEqual((JSON.parse(one.stdout) as { controllers: { id: string }[] }).controllers.map((c) => c.id), ['b']);
    const unknown = await cli(['status', '--admin', socketPath, '--controller', 'zz']);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /^blockmirror: ERR_ADMIN_UNKNOWN_CONTROLLER: no controller "zz"/);
  });

  it('status prints controllers, links and exports as tables', async () => {
    const result = await cli(['status', '--admin', socketPath]);
    assert.equal(result.code, 0, result.stderr);
    const text = result.stdout;
    assert.match(text, /^controller a {2}volumes vol0$/m);
    assert.match(text, /^ {2}PEER +STATE +REASON +RTT +IN +OUT +RECONNECTS +ATTEMPT +NEXT +AUTH +FAULTS$/m);
    assert.match(text, /^ {2}b +up +handshake-done +0\.42ms +1\.5 KiB +3\.0 MiB +2 +0 +- +hmac-sha256 +-$/m);
    assert.match(text, /^ {2}vol0 +vol0 +rw +10 +4\.0 KiB +8\.0 KiB$/m);
    assert.match(text, /^controller b {2}volumes -$/m);
    assert.match(text, /^ {2}exports: none$/m);
    assert.match(text, /^nbd: nbd:\/\/127\.0\.0\.1:10809\/vol0, 1 connection\(s\)$/m);
  });

  it('the default socket is $BLOCKMIRROR_ADMIN_SOCKET', async () => {
    const result = await cli(['status', '--json'], { ...process.env, BLOCKMIRROR_ADMIN_SOCKET: socketPath });
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(JSON.parse(result.stdout), target.status());
  });

  it('link fault sends the faults and prints the link in one line', async () => {
    const result = await cli(['link', 'fault', 'b', '--admin', socketPath, '--controller', 'a',
      '--delay', '100', '--jitter', '10', '--bandwidth', '10MiB/s', '--direction', 'out']);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(target.calls, [{ method: 'setLinkFaults', controllerId: 'a', peerId: 'b',
      settings: { delayMs: 100, jitterMs: 10, bandwidthBytesPerSecond: 10 * 1024 * 1024, direction: 'out' } }]);
    assert.equal(result.stdout, 'link a -> b: up (handshake-done), rtt 0.42ms, faults out: delay 100ms ±10ms, 10.0 MiB/s\n');

    const partition = await cli(['link', 'fault', 'b', '--admin', socketPath, '--controller', 'a', '--partition', '--drop', '--bandwidth', '4096']);
    assert.equal(partition.code, 0, partition.stderr);
    assert.deepEqual(target.calls[1]?.settings, { bandwidthBytesPerSecond: 4096, drop: true, partition: true });
    assert.equal(partition.stdout, 'link a -> b: up (handshake-done), rtt 0.42ms, faults both: 4.0 KiB/s, partitioned\n');

    // Without --controller none is sent (the serve decides; this fake has two, so it shows no link).
    const lift = await cli(['link', 'fault', 'b', '--admin', socketPath, '--no-partition', '--json']);
    assert.equal(lift.code, 0, lift.stderr);
    assert.deepEqual(target.calls[2]?.settings, { partition: false });
    assert.equal(target.calls[2]?.controllerId, undefined);
    assert.equal((JSON.parse(lift.stdout) as { ok: boolean }).ok, true);
  });

  it('link heal heals and prints the link', async () => {
    const result = await cli(['link', 'heal', 'b', '--admin', socketPath, '--controller', 'a']);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(target.calls, [{ method: 'healLink', controllerId: 'a', peerId: 'b' }]);
    assert.equal(result.stdout, 'link a -> b: up (handshake-done), rtt 0.42ms, faults -\n');
  });

  it('an error from the serve: exit 1 with its code and message', async () => {
    target.failNext = new BlockmirrorError('ERR_LINK_UNKNOWN_PEER', 'no peer "zz" on controller a');
    const result = await cli(['link', 'fault', 'zz', '--admin', socketPath, '--delay', '5']);
    assert.equal(result.code, 1);
    assert.equal(result.stdout, '');
    assert.equal(result.stderr, 'blockmirror: ERR_LINK_UNKNOWN_PEER: no peer "zz" on controller a\n');
    target.failNext = new BlockmirrorError('ERR_ADMIN_CONTROLLER_REQUIRED', 'this serve runs 2 controllers (a, b): name one with --controller');
    const heal = await cli(['link', 'heal', 'b', '--admin', socketPath]);
    assert.equal(heal.code, 1);
    assert.match(heal.stderr, /^blockmirror: ERR_ADMIN_CONTROLLER_REQUIRED: /);
  });

  it('usage errors exit 2 and send nothing', async () => {
    for (const args of [
      ['link', 'fault', 'b'],
      ['link', 'fault', 'b', '--direction', 'in'],
      ['link', 'fault', 'b', '--direction', 'sideways', '--delay', '1'],
      ['link', 'fault', 'b', '--bandwidth', '10MB'],
      ['link', 'fault', 'b', '--bandwidth', 'fast'],
      ['link', 'fault', 'b', '--delay', '-5'],
      ['link', 'fault', 'b', '--delay', 'abc'],
      ['link', 'fault', 'b', '--jitter', '4000000'],
      ['link', 'fault', '--delay', '5'],
      ['link', 'heal'],
      ['link', 'bogus'],
      ['status', '--interval', '0'],
      ['status', '--bogus'],
      ['events', '--bogus'],
    ]) {
      const result = await cli([...args, '--admin', socketPath]);
      assert.equal(result.code, 2, `${args.join(' ')}: exit ${result.code}\n${result.stderr}`);
      assert.match(result.stderr, /error: /, args.join(' '));
    }
    assert.deepEqual(target.calls, []);
  });

  it('no serve on the socket: exit 1 with ERR_ADMIN_UNREACHABLE and where to look', async () => {
    const missing = path.join(directory, 'nobody.sock');
    for (const args of [['status'], ['events', '--now'], ['link', 'heal', 'b']]) {
      const result = await cli([...args, '--admin', missing]);
      assert.equal(result.code, 1, args.join(' '));
      assert.ok(result.stderr.startsWith(`blockmirror: ERR_ADMIN_UNREACHABLE: no blockmirror serve answers on ${missing}`), result.stderr);
      assert.match(result.stderr, /--admin PATH/);
      assert.match(result.stderr, /BLOCKMIRROR_ADMIN_SOCKET/);
    }
  });

  it('events --now prints the current state as NDJSON and exits', async () => {
    const result = await cli(['events', '--now', '--admin', socketPath]);
    assert.equal(result.code, 0, result.stderr);
    const lines = result.stdout.trimEnd().split('\n').map((line) => JSON.parse(line) as { kind: string; subject: string });
    assert.deepEqual(lines.map((event) => [event.kind, event.subject]), [['exists', 'link:b'], ['exists', 'link:a']]);
  });

  it('events streams changes until Ctrl-C (exit 0)', async () => {
    const running = live(['events', '--admin', socketPath, '--controller', 'a']);
    await waitFor(() => target.listeners.size === 1, 'the CLI to subscribe');
    target.emit('link:b', 'down', { code: 'ERR_LINK_TIMEOUT' });
    await waitFor(() => running.stdout().split('\n').length >= 3, 'the change event');
    const lines = running.stdout().trimEnd().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
    // --controller a: the 'exists' event of controller b is filtered out.
    assert.deepEqual(lines.map((event) => event.kind), ['exists', 'change']);
    assert.equal(lines[1]?.code, 'ERR_LINK_TIMEOUT');
    running.child.kill('SIGINT');
    assert.equal(await running.exit, 0, running.stderr());
    await waitFor(() => target.listeners.size === 0, 'the serve to see the reader leave');
  });

  it('status --watch prints a block per interval until Ctrl-C (exit 0)', async () => {
    const running = live(['status', '--watch', '--interval', '0.2', '--admin', socketPath]);
    await waitFor(() => (running.stdout().match(/^blockmirror status /gm) ?? []).length >= 2, 'two blocks', 20_000);
    assert.equal(running.stdout().includes('\x1b['), false, 'no escape codes when stdout is not a terminal');
    running.child.kill('SIGINT');
    assert.equal(await running.exit, 0, running.stderr());
    assert.match(running.stdout(), /^controller a/m);
  });

  it('status --admin 127.0.0.1:PORT uses a TCP endpoint', async () => {
    const tcp = new AdminServer({ target, tcp: { host: '127.0.0.1', port: 0 } });
    await tcp.listen();
    try {
      const result = await cli(['status', '--json', '--admin', `127.0.0.1:${tcp.addresses().tcp?.port}`]);
      assert.equal(result.code, 0, result.stderr);
      assert.deepEqual(JSON.parse(result.stdout), target.status());
    } finally {
      await tcp.close();
    }
  });

  describe('formatting', () => {
    it('faults: per direction or both', () => {
      const none = { delayMs: 0, jitterMs: 0, bandwidthBytesPerSecond: 0, partitioned: false };
      assert.equal(formatFaults(null), '-');
      assert.equal(formatFaults({ in: none, out: none }), '-');
      assert.equal(formatFaults({ in: { ...none, delayMs: 5 }, out: { ...none, delayMs: 5 } }), 'both: delay 5ms');
      assert.equal(formatFaults({ in: { ...none, partitioned: true }, out: { ...none, bandwidthBytesPerSecond: 1024 * 1024, jitterMs: 2 } }),
        'out: delay 0ms ±2ms, 1.0 MiB/s; in: partitioned');
    });

    it('a link that is down shows its reason, code and next attempt', () => {
      const text = formatStatus({ controllers: [{ id: 'a', links: [{ peerId: 'b', state: 'down', reason: 'refused', code: 'ERR_LINK_AUTH',
        rttMs: null, bytesIn: 0, bytesOut: 0, reconnects: 0, attempt: 3, nextAttemptWallTimeMs: 11_500, auth: 'hmac-sha256',
        authenticated: false, faults: null }], exports: [] }] }, { nowMs: 10_000 });
      assert.match(text, /^ {2}b +down +refused \(ERR_LINK_AUTH\) +- +0 B +0 B +0 +3 +in 1\.5s +hmac-sha256 \(pending\) +-$/m);
      assert.equal(formatStatus({}), 'no controllers\n');
      assert.equal(formatLinkLine('a', 'b', null), 'link a -> b: done (the serve reported no status for this link)');
    });

    it('consistency groups: the master\'s cycles, a slave\'s hold, the copies a secondary holds', () => {
      const text = formatStatus({ controllers: [
        { id: 'p0', links: [], exports: [], consistencyGroups: { groups: [{ name: 'db', cycles: { phase: 'idle', counts: { formed: 40, cycles: 42 }, rpoSeconds: 0.25,
          lastFailure: { reason: 'drain-timeout' } }, slave: { holdMs: { p50: 0.5, p99: 1.25 } } }], copies: [] } },
        { id: 's0', links: [], exports: [], consistencyGroups: { groups: [], copies: [{ group: 'db', volume: 'v', cycles: [7, 8] }] } },
      ] });
      assert.match(text, /^ {2}CGROUP +ROLE +PHASE +FORMED +RPO +HOLD P99 +LAST FAILURE +COPIES HERE$/m);
      assert.match(text, /^ {2}db +master +idle +40\/42 +0\.250 s +1\.25 ms +drain-timeout +-$/m);
      assert.match(text, /^ {2}db +secondary +- +- +- +- +- +v:2$/m);
    });

    it('rates', () => {
      assert.equal(parseRate('10MiB/s'), 10 * 1024 * 1024);
      assert.equal(parseRate('10MiB'), 10 * 1024 * 1024);
      assert.equal(parseRate('1000'), 1000);
      assert.equal(parseRate('0'), 0);
      assert.throws(() => parseRate('10MB/s'), /binary units/);
    });
  });
});
