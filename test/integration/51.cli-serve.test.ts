// `blockmirror serve` as a process: URIs and readiness, the status line, listeners from the
// command line, clean shutdown on SIGINT/SIGTERM with a summary, named volumes reopened by a
// second run, and start-up failures with their exit codes. No NBD client tools needed: a raw
// socket reading the server's greeting proves a listener is live.
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';

import { Volume, sharedVolumeRegionName } from '../../src/storage/volume';
import { CLI_PATH, ServeProcess } from '../helpers/serve-process';
import { exited, makeTempDir, removeTempDir, run } from '../helpers/tools';

/** Connects and resolves with the first 16 bytes the server sends (the NBD greeting). */
function greeting(options: net.NetConnectOpts): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(options);
    let received = Buffer.alloc(0);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('no NBD greeting within 5 s'));
    }, 5000);
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (received.length >= 16) {
        clearTimeout(timer);
        socket.destroy();
        resolve(received.subarray(0, 16));
      }
    });
    socket.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

/**
 * Opens an NBD connection to export `name` (fixed newstyle, NBD_OPT_EXPORT_NAME) and keeps it
 * in transmission without ever hanging up (allowHalfOpen), like a client that went quiet.
 */
function quietClient(port: number, name: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    let received = Buffer.alloc(0);
    let stage: 'greeting' | 'export' = 'greeting';
    const timer = setTimeout(() => reject(new Error('NBD handshake did not finish in 5 s')), 5000);
    socket.on('error', reject);
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (stage === 'greeting' && received.length >= 18) {
        received = received.subarray(18);
        stage = 'export';
        const header = Buffer.alloc(4 + 8 + 4 + 4);
        header.writeUInt32BE(3, 0); // NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES
        header.write('IHAVEOPT', 4, 'latin1');
        header.writeUInt32BE(1, 12); // NBD_OPT_EXPORT_NAME
        header.writeUInt32BE(Buffer.byteLength(name), 16);
        socket.write(Buffer.concat([header, Buffer.from(name)]));
      }
      if (stage === 'export' && received.length >= 10) {
        clearTimeout(timer);
        socket.removeAllListeners('data');
        socket.on('error', () => undefined);
        resolve(socket);
      }
    });
  });
}

function assertNbdGreeting(bytes: Buffer): void {
  assert.equal(bytes.subarray(0, 8).toString('latin1'), 'NBDMAGIC');
  assert.equal(bytes.subarray(8, 16).toString('latin1'), 'IHAVEOPT');
}

describe('51 cli: serve', function () {
  this.timeout(60_000);
  let directory: string;
  const running: ServeProcess[] = [];
  const shmNames: string[] = [];

  async function start(config: unknown, args: string[] = ['--port', '0']): Promise<ServeProcess> {
    const serve = await ServeProcess.start({ config, directory, args });
    running.push(serve);
    return serve;
  }

  before(() => {
    directory = makeTempDir('serve');
  });
  afterEach(async () => {
    await Promise.all(running.splice(0).map((serve) => serve.kill()));
  });
  after(() => {
    for (const name of shmNames) Volume.unlink({ name });
    removeTempDir(directory);
  });

  it('the built-in default serves a 1 GiB vol0 on 127.0.0.1 and stops on SIGINT with a summary', async () => {
    const serve = await start(undefined, ['--port', '0', '--quiet']);
    // Two controllers: site-a exports vol0, site-b its copy as vol0-b (read-only).
    assert.equal(serve.uris.length, 2, serve.stdoutLines.join('\n'));
    assert.match(serve.stdoutLines.find((l) => l.startsWith(serve.uri('vol0-b'))) ?? '', /volume vol0, 1GiB, memory, read-only/);
    const uri = serve.uri('vol0');
    assert.match(uri, /^nbd:\/\/127\.0\.0\.1:\d+\/vol0$/);
    assert.match(serve.stdoutLines.find((l) => l.startsWith(uri)) ?? '', /volume vol0, 1GiB, memory, read-write/);
    assertNbdGreeting(await greeting({ host: '127.0.0.1', port: serve.tcpAddress.port }));
    const result = await serve.signal('SIGINT');
    assert.deepEqual(result, { code: 0, signal: null }, serve.stderrText);
    const summary = serve.stdoutLines.filter((line) => line.startsWith('summary:'));
    assert.ok(summary.length >= 2, serve.stdoutLines.join('\n'));
    assert.match(summary.join('\n'), /volume vol0 \(memory, created\).*flushed and closed/);
    assert.match(summary.join('\n'), /connections 1 total/);
    assert.ok(!serve.stdoutLines.some((line) => line.startsWith('status:')), 'a quiet serve printed a status line');
  });

  it('prints a status line every --status-interval seconds when stdout is not a TTY', async () => {
    const serve = await start({ volumes: [{ name: 'v', capacity: '4MiB' }] }, ['--port', '0', '--status-interval', '0.2']);
    const line = await serve.waitForLine(/^status:/, 5000);
    assert.match(line, /read \d+\.\d MiB\/s \| write \d+\.\d MiB\/s \| \d+ IOPS \| \d+ conn/);
    const result = await serve.signal('SIGTERM');
    assert.equal(result.code, 0, serve.stderrText);
    assert.ok(serve.stdoutLines.some((l) => l.startsWith('stopping (SIGTERM)')));
  });

  it('SIGHUP (the terminal closed) stops cleanly too: summary, exit 0', async () => {
    const serve = await start({ volumes: [{ name: 'v', capacity: '4MiB' }] }, ['--port', '0', '--quiet']);
    const result = await serve.signal('SIGHUP');
    assert.equal(result.code, 0, serve.stderrText);
    assert.equal(result.signal, null, 'killed by SIGHUP instead of stopping cleanly');
    assert.ok(serve.stdoutLines.some((l) => l.startsWith('stopping (SIGHUP)')), serve.stdoutLines.join('\n'));
    assert.ok(serve.stdoutLines.some((l) => l.startsWith('summary:')));
  });

  it('--socket serves on a Unix socket (nbd+unix URI), refuses one that is live, removes its file on exit', async () => {
    const socketPath = path.join(directory, 'bm.sock');
    const serve = await start({ volumes: [{ name: 'v', capacity: '4MiB' }] }, ['--socket', socketPath, '--quiet']);
    const uri = serve.uris[0] ?? '';
    assert.match(uri, /^nbd\+unix:\/\/\/v\?socket=/);
    assert.ok(uri.includes(encodeURIComponent(socketPath)) || uri.includes(socketPath), uri);
    assertNbdGreeting(await greeting({ path: socketPath }));
    // A second serve on the same socket must not steal it.
    const clash = await run(process.execPath, [CLI_PATH, 'serve', '--socket', socketPath, '--quiet'], { check: false });
    assert.equal(clash.code, 1);
    assert.match(clash.stderr, /ERR_CLI_SOCKET_IN_USE/);
    assertNbdGreeting(await greeting({ path: socketPath }));
    assert.equal((await serve.signal('SIGTERM')).code, 0, serve.stderrText);
    assert.ok(!fs.existsSync(socketPath), 'the socket file outlived serve');
  });

  it('a stale socket file from a serve that died is replaced', async () => {
    const socketPath = path.join(directory, 'stale.sock');
    // A listener killed with SIGKILL leaves its socket file behind.
    const dead = spawn(process.execPath, ['-e',
      "require('net').createServer().listen(process.argv[1], () => process.stdout.write('up\\n'))", socketPath],
    { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve) => dead.stdout?.once('data', () => resolve()));
    const gone = exited(dead);
    dead.kill('SIGKILL');
    await gone;
    assert.ok(fs.existsSync(socketPath) && fs.statSync(socketPath).isSocket());
    const serve = await start({ volumes: [{ name: 'v', capacity: '4MiB' }] }, ['--socket', socketPath, '--quiet']);
    assertNbdGreeting(await greeting({ path: socketPath }));
    assert.equal((await serve.signal('SIGTERM')).code, 0, serve.stderrText);
  });

  it('several exports and listeners: one URI per export per listener', async () => {
    const socketPath = path.join(directory, 'multi.sock');
    const serve = await start({
      volumes: [{ name: 'a', capacity: '4MiB' }, { name: 'b', capacity: '8MiB', blockSize: 512 }],
      exports: [{ name: 'a' }, { name: 'b-ro', volume: 'b', readOnly: true }],
      listen: [{ host: '127.0.0.1', port: 0 }, { path: socketPath }],
    }, ['--quiet']);
    assert.equal(serve.uris.length, 4, serve.stdoutLines.join('\n'));
    assert.match(serve.stdoutLines.find((l) => l.startsWith(serve.uri('b-ro'))) ?? '', /volume b, 8MiB, memory, read-only/);
    assert.equal((await serve.signal('SIGTERM')).code, 0);
  });

  it('a shared volume is created by the first run and reopened by the second; existing "error" refuses', async () => {
    const name = `bm-cli-${process.pid}-${Date.now()}`;
    shmNames.push(name);
    const config = { volumes: [{ name, capacity: '4MiB', backing: 'shared' }] };
    let serve = await start(config, ['--port', '0', '--quiet']);
    assert.equal((await serve.signal('SIGTERM')).code, 0, serve.stderrText);
    assert.match(serve.stdoutLines.join('\n'), new RegExp(`volume ${name} \\(shared, created\\)`));
    assert.ok(fs.existsSync(`/dev/shm/${sharedVolumeRegionName(name)}`), 'the shared region did not outlive serve');

    serve = await start(config, ['--port', '0', '--quiet']);
    assert.equal((await serve.signal('SIGTERM')).code, 0, serve.stderrText);
    assert.match(serve.stdoutLines.join('\n'), new RegExp(`volume ${name} \\(shared, reopened\\)`));

    const refuse = path.join(directory, 'refuse.json');
    fs.writeFileSync(refuse, JSON.stringify({ volumes: [{ ...config.volumes[0], existing: 'error' }] }));
    const result = await run(process.execPath, [CLI_PATH, 'serve', '--config', refuse, '--port', '0'], { check: false });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /ERR_CLI_VOLUME_EXISTS/);

    const mismatch = path.join(directory, 'mismatch.json');
    fs.writeFileSync(mismatch, JSON.stringify({ volumes: [{ ...config.volumes[0], capacity: '8MiB' }] }));
    const geometry = await run(process.execPath, [CLI_PATH, 'serve', '--config', mismatch, '--port', '0'], { check: false });
    assert.equal(geometry.code, 1);
    assert.match(geometry.stderr, /ERR_CLI_VOLUME_GEOMETRY/);
  });

  it('a second signal during shutdown exits at once with 128 + signal number', async () => {
    const serve = await start({ volumes: [{ name: 'v', capacity: '4MiB' }] }, ['--port', '0', '--quiet']);
    // A client that never hangs up keeps the graceful close waiting for it.
    const socket = await quietClient(serve.tcpAddress.port, 'v');
    try {
      serve.child.kill('SIGTERM');
      await serve.waitForLine(/^stopping \(SIGTERM\)/, 5000);
      const result = await serve.signal('SIGTERM', 5000);
      assert.deepEqual(result, { code: 128 + 15, signal: null });
      assert.match(serve.stderrText, /second signal \(SIGTERM\) during shutdown: exiting at once/);
      assert.ok(!serve.stdoutLines.some((line) => line.startsWith('summary:')), 'no summary after an immediate exit');
    } finally {
      socket.destroy();
    }
  });

  it('start-up failures exit 1 with the reason: port in use, unusable file path', async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as net.AddressInfo).port;
    try {
      const result = await run(process.execPath, [CLI_PATH, 'serve', '--port', String(port), '--quiet'], { check: false });
      assert.equal(result.code, 1, result.stdout);
      assert.match(result.stderr, /EADDRINUSE|in use/);
      assert.ok(!/^ready/m.test(result.stdout));
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
    const file = path.join(directory, 'nodir.json');
    fs.writeFileSync(file, JSON.stringify({
      volumes: [{ name: 'f', capacity: '1MiB', backing: 'file', path: path.join(directory, 'no', 'such', 'dir', 'f.img') }],
    }));
    const result = await run(process.execPath, [CLI_PATH, 'serve', '--config', file, '--port', '0'], { check: false });
    assert.equal(result.code, 1, result.stdout);
    assert.match(result.stderr, /^blockmirror: /m);
  });
});
