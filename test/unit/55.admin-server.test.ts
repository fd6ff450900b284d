// The admin endpoint (src/admin/server.ts) on a real Unix socket against a fake array: every
// route, every error code with its HTTP status, the limits, /events streaming, close, and what
// happens to socket files left behind. Also the client's line splitter under arbitrary splits.
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';

import { AdminClient, AdminResponseError, LineSplitter } from '../../src/admin/client';
import { AdminServer, type AdminServerOptions, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_CONNECTIONS } from '../../src/admin/server';
import { BlockmirrorError, isBlockmirrorError } from '../../src/errors';
import { LinkError } from '../../src/transport/errors';
import { FakeAdminTarget } from '../helpers/fake-admin-target';
import { makeTempDir, removeTempDir, waitFor } from '../helpers/tools';

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  json: unknown;
}

function call(socketPath: string, method: string, urlPath: string, body?: string | Buffer,
  headers: http.OutgoingHttpHeaders = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const request = http.request({ socketPath, method, path: urlPath, headers, agent: false }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: response.statusCode ?? 0, headers: response.headers, text, json });
      });
    });
    request.on('error', reject);
    request.end(body);
  });
}

function postJson(socketPath: string, urlPath: string, value: unknown): Promise<Reply> {
  return call(socketPath, 'POST', urlPath, JSON.stringify(value), { 'Content-Type': 'application/json' });
}

function errorOf(reply: Reply): { code: string; message: string } {
  const error = (reply.json as { error?: { code: string; message: string } } | undefined)?.error;
  assert.ok(error !== undefined, `not an error body: ${reply.text}`);
  assert.equal(typeof error.message, 'string');
  return error;
}

/**
 * Sends raw bytes on a new connection and collects everything until the server closes it (a
 * valid request must say "Connection: close"). A reset or EPIPE counts as a close.
 */
function raw(socketPath: string, data: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect({ path: socketPath });
    const chunks: Buffer[] = [];
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('utf8')));
    socket.write(data);
  });
}

/** A socket file with nobody behind it: a child listens, then kills itself with SIGKILL. */
function makeStaleSocket(socketPath: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e',
      `require('net').createServer().listen(${JSON.stringify(socketPath)}, () => process.kill(process.pid, 'SIGKILL'))`]);
    child.on('error', reject);
    child.on('exit', () => (fs.existsSync(socketPath) ? resolve() : reject(new Error('the child left no socket file'))));
  });
}

const LOG: { level: string; message?: string }[] = [];
const logger = {
  debug: () => undefined,
  info: () => undefined,
  warn: (_object: object, message?: string) => LOG.push({ level: 'warn', message }),
  error: (_object: object, message?: string) => LOG.push({ level: 'error', message }),
};

describe('55 admin server', function () {
  this.timeout(20_000);
  let directory: string;
  let target: FakeAdminTarget;
  let server: AdminServer;
  let socketPath: string;
  let extra: AdminServer[];

  async function start(options: Partial<AdminServerOptions> = {}): Promise<AdminServer> {
    const started = new AdminServer({ target, socketPath: path.join(directory, `x${extra.length}.sock`), logger, ...options });
    extra.push(started);
    await started.listen();
    return started;
  }

  beforeEach(async () => {
    directory = makeTempDir('admin');
    target = new FakeAdminTarget();
    extra = [];
    LOG.length = 0;
    socketPath = path.join(directory, 'run', 'admin.sock');
    server = new AdminServer({ target, socketPath, logger });
    await server.listen();
  });

  afterEach(async () => {
    await server.close();
    for (const started of extra) await started.close();
    removeTempDir(directory);
  });

  describe('listening', () => {
    it('makes the socket 0600 in a new directory made 0700', () => {
      assert.equal(fs.statSync(socketPath).mode & 0o777, 0o600);
      assert.equal(fs.statSync(path.dirname(socketPath)).mode & 0o777, 0o700);
      assert.deepEqual(server.addresses(), { socketPath });
      assert.equal(server.currentState, 'listening');
    });

    it('has named limits with defaults', () => {
      assert.equal(server.maxBodyBytes, DEFAULT_MAX_BODY_BYTES);
      assert.equal(DEFAULT_MAX_BODY_BYTES, 64 * 1024);
      assert.equal(server.maxConnections, DEFAULT_MAX_CONNECTIONS);
      assert.equal(DEFAULT_MAX_CONNECTIONS, 64);
      assert.equal(server.maxEventBufferBytes, 1024 * 1024);
      assert.ok(server.headersTimeoutMs <= server.requestTimeoutMs);
    });

    it('replaces a stale socket file that nothing answers on', async () => {
      const stale = path.join(directory, 'stale.sock');
      await makeStaleSocket(stale);
      const replacement = await start({ socketPath: stale });
      assert.equal((await call(stale, 'GET', '/status')).status, 200);
      await replacement.close();
      assert.equal(fs.existsSync(stale), false);
    });

    it('refuses a socket another server listens on, and leaves it alone', async () => {
      const live = path.join(directory, 'live.sock');
      const other = net.createServer((socket) => {
        socket.on('error', () => undefined);
        socket.end('other\n');
      });
      await new Promise<void>((resolve) => other.listen(live, resolve));
      try {
        await assert.rejects(start({ socketPath: live }), (error: unknown) => isBlockmirrorError(error, 'ERR_CLI_SOCKET_IN_USE'));
        assert.equal(await raw(live, ''), 'other\n');
      } finally {
        await new Promise<void>((resolve) => other.close(() => resolve()));
      }
    });

    it('never removes a path that is not a socket', async () => {
      const file = path.join(directory, 'file.sock');
      fs.writeFileSync(file, 'keep me');
      await assert.rejects(start({ socketPath: file }), (error: unknown) => isBlockmirrorError(error, 'ERR_CLI_SOCKET_PATH'));
      assert.equal(fs.readFileSync(file, 'utf8'), 'keep me');
    });

    it('TCP: loopback only', async () => {
      assert.throws(() => new AdminServer({ target, tcp: { host: '0.0.0.0', port: 0 } }), TypeError);
      assert.throws(() => new AdminServer({ target, tcp: { host: '192.168.1.1', port: 0 } }), TypeError);
      assert.throws(() => new AdminServer({ target }), TypeError);
      assert.throws(() => new AdminServer({ target, socketPath, maxBodyBytes: 0 }), RangeError);
      const tcp = new AdminServer({ target, tcp: { host: '127.0.0.1', port: 0 } });
      extra.push(tcp);
      await tcp.listen();
      const port = tcp.addresses().tcp?.port;
      assert.ok(port !== undefined && port > 0);
      const status = await new AdminClient({ host: '127.0.0.1', port }).get('/status');
      assert.deepEqual(status, target.status());
    });
  });

  describe('routes', () => {
    it('GET /status answers the target status as JSON', async () => {
      const reply = await call(socketPath, 'GET', '/status');
      assert.equal(reply.status, 200);
      assert.match(String(reply.headers['content-type']), /^application\/json/);
      assert.deepEqual(reply.json, target.status());
    });

    it('GET /metrics answers the target text with its content type', async () => {
      const reply = await call(socketPath, 'GET', '/metrics');
      assert.equal(reply.status, 200);
      assert.equal(reply.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
      assert.equal(reply.text, 'blockmirror_controller_info{controller="a"} 1\n');
    });

    it('POST /links/fault sets faults and answers the link status', async () => {
      const reply = await postJson(socketPath, '/links/fault', { controller: 'a', peer: 'b', delayMs: 100, jitterMs: 5, direction: 'out' });
      assert.equal(reply.status, 200, reply.text);
      assert.deepEqual(target.calls, [{ method: 'setLinkFaults', controllerId: 'a', peerId: 'b',
        settings: { delayMs: 100, jitterMs: 5, direction: 'out' } }]);
      const answer = reply.json as { ok: boolean; link: { peerId: string; faults: { out: { delayMs: number } } } };
      assert.equal(answer.ok, true);
      assert.equal(answer.link.peerId, 'b');
      assert.equal(answer.link.faults.out.delayMs, 100);
    });

    it('POST /links/fault without a controller passes none, and finds the link of a single controller', async () => {
      target = new FakeAdminTarget({ single: true });
      const single = await start({ target });
      const where = single.addresses().socketPath as string;
      const reply = await postJson(where, '/links/fault', { peer: 'b', partition: true, drop: true, bandwidthBytesPerSecond: 1024 });
      assert.equal(reply.status, 200, reply.text);
      assert.equal(target.calls[0]?.controllerId, undefined);
      assert.deepEqual(target.calls[0]?.settings, { partition: true, drop: true, bandwidthBytesPerSecond: 1024 });
      assert.equal((reply.json as { link: { peerId: string } }).link.peerId, 'b');
    });

    it('POST /links/heal heals', async () => {
      await postJson(socketPath, '/links/fault', { controller: 'a', peer: 'b', partition: true });
      const reply = await postJson(socketPath, '/links/heal', { controller: 'a', peer: 'b' });
      assert.equal(reply.status, 200, reply.text);
      assert.deepEqual(target.calls[1], { method: 'healLink', controllerId: 'a', peerId: 'b' });
      assert.equal((reply.json as { link: { faults: unknown } }).link.faults, null);
    });

    it('a link the status does not show gives link: null', async () => {
      target.status = () => ({ controllers: [] });
      const reply = await postJson(socketPath, '/links/heal', { controller: 'a', peer: 'b' });
      assert.equal(reply.status, 200, reply.text);
      assert.deepEqual(reply.json, { ok: true, link: null });
    });
  });

  describe('errors', () => {
    it('unknown route: 404 ERR_ADMIN_NOT_FOUND', async () => {
      for (const where of ['/', '/nope', '/status/', '/links']) {
        const reply = await call(socketPath, 'GET', where);
        assert.equal(reply.status, 404, where);
        assert.equal(errorOf(reply).code, 'ERR_ADMIN_NOT_FOUND');
      }
    });

    it('wrong method: 405 ERR_ADMIN_METHOD with Allow', async () => {
      for (const [method, where, allow] of [['POST', '/status', 'GET'], ['DELETE', '/events', 'GET'], ['PUT', '/metrics', 'GET'],
        ['GET', '/links/fault', 'POST'], ['GET', '/links/heal', 'POST']] as const) {
        const reply = await call(socketPath, method, where, method === 'GET' ? undefined : '{}',
          method === 'GET' ? {} : { 'Content-Length': 2 });
        assert.equal(reply.status, 405, `${method} ${where}`);
        assert.equal(reply.headers.allow, allow);
        assert.equal(errorOf(reply).code, 'ERR_ADMIN_METHOD');
      }
    });

    it('bad JSON and bad fields: 400 ERR_ADMIN_BAD_REQUEST, the target is not called', async () => {
      const cases: [string, string][] = [
        ['{"peer": "b", ', 'not JSON'],
        ['', 'needs a JSON object'],
        ['[1, 2]', 'must be a JSON object'],
        ['"b"', 'must be a JSON object'],
        ['{"delayMs": 5}', 'peer is required'],
        ['{"peer": 7, "delayMs": 5}', 'peer must be'],
        ['{"peer": "", "delayMs": 5}', 'peer must be'],
        ['{"peer": "b", "controller": 1, "delayMs": 5}', 'controller must be'],
        ['{"peer": "b", "delayMs": "100"}', 'delayMs must be a number'],
        ['{"peer": "b", "drop": "yes"}', 'drop must be a boolean'],
        ['{"peer": "b", "delay": 100}', 'unknown field "delay"'],
        ['{"peer": "b"}', 'at least one fault'],
        ['{"peer": "b", "direction": "in"}', 'at least one fault'],
      ];
      for (const [body, message] of cases) {
        const reply = await call(socketPath, 'POST', '/links/fault', body, { 'Content-Type': 'application/json' });
        assert.equal(reply.status, 400, body);
        const error = errorOf(reply);
        assert.equal(error.code, 'ERR_ADMIN_BAD_REQUEST', body);
        assert.ok(error.message.includes(message), `${body}: ${error.message}`);
      }
      const heal = await postJson(socketPath, '/links/heal', { peer: 'b', delayMs: 1 });
      assert.equal(errorOf(heal).code, 'ERR_ADMIN_BAD_REQUEST');
      assert.equal((await call(socketPath, 'GET', '/events?now=maybe')).status, 400);
      assert.deepEqual(target.calls, []);
    });

    it('invalid fault values: 400 ERR_LINK_BAD_FAULT, checked before the target', async () => {
      for (const body of [{ peer: 'b', delayMs: -1 }, { peer: 'b', jitterMs: 4_000_000 }, { peer: 'b', bandwidthBytesPerSecond: 1.5 },
        { peer: 'b', delayMs: 1, direction: 'sideways' }]) {
        const reply = await postJson(socketPath, '/links/fault', body);
        assert.equal(reply.status, 400, JSON.stringify(body));
        assert.equal(errorOf(reply).code, 'ERR_LINK_BAD_FAULT');
      }
      assert.deepEqual(target.calls, []);
    });

    it('the target\'s errors keep their codes, with their HTTP status', async () => {
      const cases: [string, number][] = [
        ['ERR_ADMIN_CONTROLLER_REQUIRED', 400],
        ['ERR_ADMIN_UNKNOWN_CONTROLLER', 404],
        ['ERR_LINK_UNKNOWN_PEER', 404],
        ['ERR_LINK_BAD_FAULT', 400],
        ['ERR_LINK_CLOSED', 409],
        ['ERR_LINK_DOWN', 503],
        ['ERR_LINK_TIMEOUT', 504],
      ];
      for (const [code, status] of cases) {
        for (const route of ['/links/fault', '/links/heal']) {
          target.failNext = new BlockmirrorError(code, `fake says ${code}`);
          const reply = await postJson(socketPath, route, route === '/links/heal' ? { peer: 'b' } : { peer: 'b', delayMs: 1 });
          assert.equal(reply.status, status, `${route} ${code}`);
          assert.deepEqual(errorOf(reply), { code, message: `fake says ${code}` });
        }
      }
    });

    it('a refusal by the peer answers with the peer\'s code and its status; a peer failure without one is a 502', async () => {
      for (const [remoteCode, status, code] of [['ERR_PAIR_STATE', 409, 'ERR_PAIR_STATE'], ['ERR_PAIR_UNKNOWN', 404, 'ERR_PAIR_UNKNOWN'], [undefined, 502, 'ERR_LINK_REMOTE']] as const) {
        const error = new LinkError('ERR_LINK_REMOTE', `b: ${remoteCode ?? 'oops'}: refused`);
        if (remoteCode !== undefined) error.remoteCode = remoteCode;
        target.failNext = error;
        const reply = await postJson(socketPath, '/links/heal', { peer: 'b' });
        assert.equal(reply.status, status, String(remoteCode));
        assert.deepEqual(errorOf(reply), { code, message: `b: ${remoteCode ?? 'oops'}: refused` });
      }
    });

    it('anything else is a 500, logged', async () => {
      target.failNext = new Error('a bug behind the endpoint');
      const reply = await postJson(socketPath, '/links/fault', { peer: 'b', delayMs: 1 });
      assert.equal(reply.status, 500);
      const error = errorOf(reply);
      assert.equal(error.code, 'ERR_ADMIN_RESPONSE');
      assert.match(error.message, /a bug behind the endpoint/);
      assert.ok(LOG.some((entry) => entry.level === 'error'), 'the failure is logged');
      target.statusFailure = new TypeError('status broke');
      assert.equal((await call(socketPath, 'GET', '/status')).status, 500);
      const currentEvents = target.currentEvents.bind(target);
      target.currentEvents = () => {
        throw new Error('events broke');
      };
      assert.equal((await call(socketPath, 'GET', '/events')).status, 500);
      target.currentEvents = currentEvents;
      target.statusFailure = undefined;
      assert.equal((await call(socketPath, 'GET', '/status')).status, 200);
    });

    it('a body over the limit: 413 ERR_ADMIN_TOO_LARGE (declared or chunked)', async () => {
      const small = await start({ maxBodyBytes: 1024 });
      const where = small.addresses().socketPath as string;
      const big = JSON.stringify({ peer: 'b', delayMs: 1, pad: 'x'.repeat(2000) });
      const declared = await call(where, 'POST', '/links/fault', big, { 'Content-Type': 'application/json' });
      assert.equal(declared.status, 413);
      assert.equal(errorOf(declared).code, 'ERR_ADMIN_TOO_LARGE');
      const chunked = await new Promise<Reply>((resolve, reject) => {
        const request = http.request({ socketPath: where, method: 'POST', path: '/links/fault', agent: false }, (response) => {
          const chunks: Buffer[] = [];
          response.on('data', (chunk: Buffer) => chunks.push(chunk));
          response.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            resolve({ status: response.statusCode ?? 0, headers: response.headers, text, json: JSON.parse(text) });
          });
        });
        request.on('error', reject);
        for (let i = 0; i < 10; i++) request.write('x'.repeat(300));
        request.end();
      });
      assert.equal(chunked.status, 413);
      assert.equal(errorOf(chunked).code, 'ERR_ADMIN_TOO_LARGE');
      // Just under the limit is fine.
      const fits = JSON.stringify({ peer: 'b', delayMs: 1 });
      assert.equal((await call(where, 'POST', '/links/fault', fits)).status, 200);
    });

    it('malformed HTTP gets a 400 and the server goes on', async () => {
      for (const garbage of ['GARBAGE\r\n\r\n', 'GET /status HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n', '\x00\x01\x02\x03\r\n\r\n']) {
        const answer = await raw(socketPath, garbage);
        assert.match(answer, /^HTTP\/1\.1 400 /, JSON.stringify(garbage));
        assert.ok(answer.includes('ERR_ADMIN_BAD_REQUEST'));
      }
      const cut = net.connect({ path: socketPath });
      cut.resume();
      await new Promise((resolve) => cut.once('connect', resolve));
      cut.end('POST /links/fault HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"peer"');
      await new Promise((resolve) => cut.once('close', resolve));
      assert.equal((await call(socketPath, 'GET', '/status')).status, 200);
    });

    it('a request that does not arrive in time: 408 and the connection is closed', async () => {
      const strict = await start({ headersTimeoutMs: 200, requestTimeoutMs: 300 });
      const answer = await raw(strict.addresses().socketPath as string, 'GET /status HTTP/1.1\r\nHost: x\r\n');
      assert.match(answer, /^HTTP\/1\.1 408 /);
      assert.ok(answer.includes('ERR_ADMIN_BAD_REQUEST'));
    });

    it('connections over maxConnections are closed at once', async () => {
      const limited = await start({ maxConnections: 2 });
      const where = limited.addresses().socketPath as string;
      const open = await Promise.all([0, 1].map(() => new Promise<net.Socket>((resolve) => {
        const socket = net.connect({ path: where }, () => resolve(socket));
      })));
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.equal(await raw(where, 'GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'), '');
      for (const socket of open) socket.destroy();
      // The server may not have seen the two closes yet: a refused try is retried.
      await waitFor(async () => (await call(where, 'GET', '/status').catch(() => undefined))?.status === 200, 'a free connection slot');
    });
  });

  describe('/events', () => {
    function openStream(where: string, urlPath = '/events'): Promise<{ lines: string[]; ended: Promise<void>; stop(): void; response: http.IncomingMessage }> {
      return new Promise((resolve, reject) => {
        const lines: string[] = [];
        const splitter = new LineSplitter();
        const request = http.get({ socketPath: where, path: urlPath, agent: false }, (response) => {
          const ended = new Promise<void>((done) => response.once('close', () => done()));
          response.on('data', (chunk: Buffer) => lines.push(...splitter.push(chunk)));
          response.on('error', () => undefined);
          resolve({ lines, ended, stop: () => request.destroy(), response });
        });
        request.on('error', reject);
      });
    }

    it('streams the current events, then each later one, as NDJSON', async () => {
      const stream = await openStream(socketPath);
      assert.equal(stream.response.headers['content-type'], 'application/x-ndjson; charset=utf-8');
      await waitFor(() => stream.lines.length >= 2, 'the current events');
      const current = stream.lines.map((line) => JSON.parse(line) as { kind: string; subject: string });
      assert.deepEqual(current.map((event) => [event.kind, event.subject]), [['exists', 'link:b'], ['exists', 'link:a']]);
      await waitFor(() => target.listeners.size === 1, 'the subscription');
      const pushed = target.emit('link:b', 'down', { code: 'ERR_LINK_TIMEOUT' });
      await waitFor(() => stream.lines.length >= 3, 'the pushed event');
      assert.deepEqual(JSON.parse(stream.lines[2] as string), pushed);
      assert.equal(server.eventStreamCount, 1);
      stream.stop();
      await waitFor(() => target.listeners.size === 0, 'unsubscribe after the reader left');
      assert.equal(server.eventStreamCount, 0);
    });

    it('?now=1 ends after the current events, without subscribing', async () => {
      const stream = await openStream(socketPath, '/events?now=1');
      await stream.ended;
      assert.equal(stream.lines.length, 2);
      assert.ok(stream.lines.every((line) => (JSON.parse(line) as { kind: string }).kind === 'exists'));
      assert.equal(target.listeners.size, 0);
    });

    it('the client reads the same stream, with now and with an abort signal', async () => {
      const client = new AdminClient(socketPath);
      const seen: Record<string, unknown>[] = [];
      await client.events((event) => seen.push(event), { now: true });
      assert.equal(seen.length, 2);
      const abort = new AbortController();
      const live: Record<string, unknown>[] = [];
      const done = client.events((event) => {
        live.push(event);
        if (live.length === 3) abort.abort();
      }, { signal: abort.signal });
      await waitFor(() => target.listeners.size === 1, 'the subscription');
      target.emit('link:b', 'down');
      await done;
      assert.equal(live[2]?.kind, 'change');
      await waitFor(() => target.listeners.size === 0, 'unsubscribe');
    });

    it('a reader that does not keep up is ended with an overflow line', async () => {
      const small = await start({ maxEventBufferBytes: 64 * 1024 });
      const where = small.addresses().socketPath as string;
      const socket = net.connect({ path: where });
      const chunks: Buffer[] = [];
      await new Promise((resolve) => socket.once('connect', resolve));
      socket.write('GET /events HTTP/1.1\r\nHost: x\r\n\r\n');
      await waitFor(() => target.listeners.size === 1, 'the subscription');
      socket.pause();
      const pad = 'p'.repeat(8 * 1024);
      let pushed = 0;
      while (target.listeners.size > 0 && pushed < 10_000) {
        target.emit('link:b', 'down', { pad });
        pushed++;
      }
      assert.equal(target.listeners.size, 0, 'the server unsubscribed the slow reader');
      assert.ok(pushed < 10_000);
      socket.on('data', (chunk: Buffer) => chunks.push(chunk));
      socket.resume();
      await new Promise((resolve) => socket.once('close', resolve));
      const body = Buffer.concat(chunks).toString('utf8');
      // The overflow line is the last data (then only the terminating chunk, if chunked).
      assert.match(body, /\{"kind":"overflow"\}\n(\r\n0\r\n\r\n)?$/);
      assert.equal(small.eventStreamCount, 0);
    });

    it('close() ends the streams, waits, removes the socket, and is idempotent', async () => {
      const stream = await openStream(socketPath);
      await waitFor(() => target.listeners.size === 1, 'the subscription');
      const closing = server.close();
      assert.equal(server.close(), closing);
      await closing;
      await stream.ended;
      assert.equal(stream.response.complete, true, 'the stream ended cleanly');
      assert.equal(target.listeners.size, 0);
      assert.equal(fs.existsSync(socketPath), false);
      assert.equal(server.currentState, 'closed');
      await server.close();
      await assert.rejects(new AdminClient(socketPath).get('/status'), (error: unknown) => isBlockmirrorError(error, 'ERR_ADMIN_UNREACHABLE'));
    });
  });

  describe('close', () => {
    it('waits for a request in flight', async () => {
      let release: (() => void) | undefined;
      target.metrics = () => new Promise((resolve) => {
        release = () => resolve({ contentType: 'text/plain', text: 'slow 1\n' });
      });
      const reply = call(socketPath, 'GET', '/metrics');
      await waitFor(() => release !== undefined, 'the request to reach the target');
      let closed = false;
      const closing = server.close().then(() => {
        closed = true;
      });
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.equal(closed, false, 'close() returned with a request in flight');
      release?.();
      assert.equal((await reply).text, 'slow 1\n');
      await closing;
      assert.equal(fs.existsSync(socketPath), false);
    });
  });

  describe('client', () => {
    it('surfaces the server\'s error code as remoteCode', async () => {
      const client = new AdminClient(socketPath);
      await assert.rejects(client.post('/links/fault', { peer: 'b', delayMs: -5 }), (error: unknown) => {
        assert.ok(error instanceof AdminResponseError);
        assert.equal(error.code, 'ERR_ADMIN_RESPONSE');
        assert.equal(error.remoteCode, 'ERR_LINK_BAD_FAULT');
        assert.equal(error.statusCode, 400);
        assert.match(error.message, /^ERR_LINK_BAD_FAULT: /);
        return true;
      });
      await assert.rejects(client.get('/nope'), (error: unknown) => (error as AdminResponseError).remoteCode === 'ERR_ADMIN_NOT_FOUND');
      assert.equal(await client.metricsText(), 'blockmirror_controller_info{controller="a"} 1\n');
      const link = (target.status() as { controllers: { links: unknown[] }[] }).controllers[0]?.links[0];
      assert.deepEqual(await client.post('/links/heal', { controller: 'a', peer: 'b' }), { ok: true, link });
    });

    it('no serve: ERR_ADMIN_UNREACHABLE naming the path and how to find the right one', async () => {
      const missing = path.join(directory, 'missing.sock');
      await assert.rejects(new AdminClient(missing).get('/status'), (error: unknown) => {
        assert.ok(isBlockmirrorError(error, 'ERR_ADMIN_UNREACHABLE'));
        assert.ok(error.message.includes(missing));
        assert.match(error.message, /--admin/);
        return true;
      });
      await makeStaleSocket(missing);
      await assert.rejects(new AdminClient(missing).get('/status'), /ECONNREFUSED/);
    });

    it('the line splitter gives the same lines for every split of the stream', () => {
      const events = [{ a: 1, text: 'zß水🙂' }, { b: 'x'.repeat(50) }, { c: ['\\n', '"'] }];
      const bytes = Buffer.from(events.map((event) => `${JSON.stringify(event)}\n`).join(''), 'utf8');
      const expected = events.map((event) => JSON.stringify(event));
      for (let first = 0; first <= bytes.length; first++) {
        for (const second of [first, Math.min(bytes.length, first + 1), Math.min(bytes.length, first + 3), bytes.length]) {
          const splitter = new LineSplitter();
          const lines = [
            ...splitter.push(bytes.subarray(0, first)),
            ...splitter.push(bytes.subarray(first, second)),
            ...splitter.push(bytes.subarray(second)),
          ];
          assert.equal(splitter.end(), undefined);
          assert.deepEqual(lines, expected, `split at ${first}/${second}`);
        }
      }
      const last = new LineSplitter();
      assert.deepEqual(last.push('{"x":1}\n{"y"'), ['{"x":1}']);
      assert.equal(last.end(), '{"y"');
      assert.throws(() => new LineSplitter(10).push('x'.repeat(11)), (error: unknown) => isBlockmirrorError(error, 'ERR_ADMIN_RESPONSE'));
    });
  });
});
