// Notes on the design
// -------------------
// The admin endpoint of a running serve: HTTP/1.1 (node:http) on a Unix socket (mode 0600, in a
// directory made 0700 when it was missing) and optionally on a loopback TCP port. It knows the
// array only through AdminTarget (src/admin/target.ts), so tests serve a small fake.
//
// Routes (docs/admin.md is the reference):
//   GET  /status        target.status() as JSON
//   GET  /events        NDJSON: target.currentEvents(), then every later event (target.subscribe)
//                       until the reader goes away; ?now=1 ends after the current ones
//   GET  /metrics       target.metrics() (Prometheus text, its content type)
//   POST /links/fault   {controller?, peer, delayMs?, jitterMs?, bandwidthBytesPerSecond?, drop?,
//                       partition?, direction?} -> target.setLinkFaults
//   POST /links/heal    {controller?, peer} -> target.healLink
//   POST /pairs/suspend {controller?, pair} -> target.suspendPair
//   POST /pairs/resume  {controller?, pair} -> target.resumePair
//   POST /pairs/takeover {controller?, pair, force?} -> target.takeoverPair
//   POST /pairs/takeover-group {controller?, journalGroup, force?} -> target.takeoverGroup
//   POST /pairs/failback-group {controller?, journalGroup} -> target.failbackGroup
//   POST /pairs/failback {controller?, pair} -> target.failbackPair
//   POST /pairs/resolve {controller?, pair, keep: primary|secondary} -> target.resolvePair
//   POST /pairs/create {controller?, pair, volume, peer, remoteVolume, mode?, role, fence?, autoResume?, journalHold?, journalGroup?} -> target.createPair
//   POST /pairs/delete {controller?, pair} -> target.deletePair
//   POST /lockstep {controller?, pairs?, volumes?, journals?, timeoutMs?} -> target.lockstep
//   POST /lockstep/enable, /lockstep/disable {controller?} -> target.setLockstepEnabled
//   POST /groups/create|status|start|stop|delete|recover|held {controller?, ...} -> target.group
//                       (group-routes.ts checks the bodies)
//   POST /snapshots/create|list|delete|restore|clone {controller?, volume, name, clone?} -> target.snapshot
//                       (snapshot-routes.ts checks the bodies)
//
// Error contract: every failure is JSON {"error": {"code": "ERR_...", "message": "..."}} with an
// HTTP status from STATUS_OF_CODE; an error without a known code is a bug somewhere behind the
// endpoint: 500, logged with its stack. Requests are validated here, at the edge, before the
// target sees them (the target checks again). Malformed HTTP gets a 400 from the clientError
// hook and the connection is closed; the server and every other connection go on.
//
// Limits, each a named option: maxBodyBytes (a larger body is answered 413 and the connection
// closed), maxConnections (over it a new connection is closed at once, across all listeners),
// headersTimeoutMs / requestTimeoutMs (a request must arrive in full within them; an /events
// response may last for ever), maxEventBufferBytes (an /events reader that lets more than this
// pile up in its response is ended with a last line {"kind":"overflow"}: the server never buffers
// without bound for a slow reader).
//
// Lifecycle: new -> listening -> closing -> closed (or new -> closed). close() ends every /events
// stream, stops listening, waits for requests in flight (at most closeTimeoutMs, then cuts the
// connections), removes the socket file it made (only if it is still the same file), and is
// idempotent.
//
// Layout: this module is the AdminServer class; its options, defaults, logger and state names are
// in server-options.ts, and the HTTP plumbing it shares across routes (STATUS_OF_CODE, the JSON
// body reader and writer, the controller/peer field checks) is in server-http.ts. The exported
// names of both are re-exported here, so importers keep one path. The bodies of the link, pair
// and lockstep verbs are checked in link-routes.ts, pair-routes.ts and lockstep-routes.ts (as
// those of the group, disk and snapshot verbs are in theirs), and the open /events streams are
// kept by EventStreams (event-streams.ts).

import * as fs from 'node:fs';
import * as http from 'node:http';
import type * as net from 'node:net';
import type { Duplex } from 'node:stream';

import { BlockmirrorError, isBlockmirrorError } from '../errors';
import { ensureSocketDirectory, removeStaleSocket } from './socket';
import { SNAPSHOT_VERBS, type SnapshotVerb, snapshotRequest } from './snapshot-routes';
import { GROUP_VERBS, type GroupVerb, groupRequest } from './group-routes';
import { DISK_VERBS, type DiskVerb, diskRequest } from './disk-routes';
import { faultRequest, healRequest } from './link-routes';
import { type PairVerb, groupRoleRequest, pairCreateRequest, pairRequest } from './pair-routes';
import { lockstepRequest, lockstepSwitchRequest } from './lockstep-routes';
import { EventStreams } from './event-streams';
import type { AdminTarget } from './target';
import {
  type AdminLogger, LOOPBACK_HOSTS, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_CONNECTIONS,
  DEFAULT_HEADERS_TIMEOUT_MS, DEFAULT_REQUEST_TIMEOUT_MS, DEFAULT_MAX_EVENT_BUFFER_BYTES,
  DEFAULT_CLOSE_TIMEOUT_MS, type AdminServerOptions, type AdminAddresses,
  type AdminServerState, SILENT, checkInteger,
} from './server-options';
import {
  LOCKSTEP_NUMBERS, STATUS_OF_CODE, INTERNAL_ERROR_CODE, NODE_REQUEST_TIMEOUT_CODE,
  type Handler, badRequest, listenOn, sendJson, readJsonObject,
} from './server-http';

export type { AdminLogger, AdminServerOptions, AdminAddresses, AdminServerState } from './server-options';
export {
  LOOPBACK_HOSTS, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_CONNECTIONS, DEFAULT_HEADERS_TIMEOUT_MS,
  DEFAULT_REQUEST_TIMEOUT_MS, DEFAULT_MAX_EVENT_BUFFER_BYTES, DEFAULT_CLOSE_TIMEOUT_MS, OVERFLOW_LINE,
} from './server-options';
export { STATUS_OF_CODE } from './server-http';

/** The admin endpoint of a serve. */
export class AdminServer {
  private readonly target: AdminTarget;
  private readonly socketPath: string | undefined;
  private readonly tcpOption: { host: string; port: number } | undefined;
  private readonly log: AdminLogger;
  readonly maxBodyBytes: number;
  readonly maxConnections: number;
  readonly headersTimeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly maxEventBufferBytes: number;
  readonly closeTimeoutMs: number;

  private state: AdminServerState = 'new';
  private readonly servers: http.Server[] = [];
  private readonly sockets = new Set<Duplex>();
  private readonly streams: EventStreams;
  private socketInode: number | undefined;
  private tcpAddress: { host: string; port: number } | undefined;
  private closing: Promise<void> | undefined;
  private readonly routes: Readonly<Record<string, Readonly<Record<string, Handler>>>>;

  constructor(options: AdminServerOptions) {
    if (options === null || typeof options !== 'object') throw new TypeError('options must be an object');
    const target = options.target;
    for (const method of ['status', 'currentEvents', 'subscribe', 'controllerIds', 'setLinkFaults', 'healLink', 'suspendPair', 'resumePair', 'takeoverPair', 'takeoverGroup', 'failbackGroup', 'failbackPair', 'resolvePair', 'createPair', 'deletePair', 'lockstep', 'setLockstepEnabled', 'metrics'] as const) {
      if (typeof (target as unknown as Record<string, unknown> | undefined)?.[method] !== 'function') {
        throw new TypeError(`options.target must be an AdminTarget (it has no ${method}())`);
      }
    }
    if (options.socketPath === undefined && options.tcp === undefined) {
      throw new TypeError('an AdminServer needs socketPath, tcp or both');
    }
    if (options.socketPath !== undefined && (typeof options.socketPath !== 'string' || options.socketPath === '')) {
      throw new TypeError('socketPath must be a non-empty string');
    }
    if (options.tcp !== undefined) {
      const { host, port } = options.tcp;
      if (typeof host !== 'string' || !LOOPBACK_HOSTS.includes(host)) {
        throw new TypeError(`the admin endpoint listens on loopback only (${LOOPBACK_HOSTS.join(', ')}), got host ${JSON.stringify(host)}`);
      }
      checkInteger('tcp.port', port, 0, 0, 65535);
      this.tcpOption = { host, port };
    }
    this.target = target;
    this.socketPath = options.socketPath;
    this.log = options.logger ?? SILENT;
    this.maxBodyBytes = checkInteger('maxBodyBytes', options.maxBodyBytes, DEFAULT_MAX_BODY_BYTES, 1, 64 * 1024 * 1024);
    this.maxConnections = checkInteger('maxConnections', options.maxConnections, DEFAULT_MAX_CONNECTIONS, 1, 65536);
    this.requestTimeoutMs = checkInteger('requestTimeoutMs', options.requestTimeoutMs, DEFAULT_REQUEST_TIMEOUT_MS, 1, 3_600_000);
    this.headersTimeoutMs = checkInteger('headersTimeoutMs', options.headersTimeoutMs,
      Math.min(DEFAULT_HEADERS_TIMEOUT_MS, this.requestTimeoutMs), 1, this.requestTimeoutMs);
    this.maxEventBufferBytes = checkInteger('maxEventBufferBytes', options.maxEventBufferBytes,
      DEFAULT_MAX_EVENT_BUFFER_BYTES, 1, 1024 ** 3);
    this.closeTimeoutMs = checkInteger('closeTimeoutMs', options.closeTimeoutMs, DEFAULT_CLOSE_TIMEOUT_MS, 0, 3_600_000);
    this.streams = new EventStreams(this.log, this.maxEventBufferBytes);
    this.routes = Object.freeze({
      '/status': { GET: (_request, response) => this.getStatus(response) },
      '/events': { GET: (request, response, url) => this.getEvents(request, response, url) },
      '/metrics': { GET: (_request, response) => this.getMetrics(response) },
      '/links/fault': { POST: (request, response) => this.postFault(request, response) },
      '/links/heal': { POST: (request, response) => this.postHeal(request, response) },
      '/pairs/suspend': { POST: (request, response) => this.postPair(request, response, 'suspend') },
      '/pairs/resume': { POST: (request, response) => this.postPair(request, response, 'resume') },
      '/pairs/takeover': { POST: (request, response) => this.postPair(request, response, 'takeover') },
      '/pairs/takeover-group': { POST: (request, response) => this.postGroupRole(request, response, 'takeover') },
      '/pairs/failback-group': { POST: (request, response) => this.postGroupRole(request, response, 'failback') },
      '/pairs/failback': { POST: (request, response) => this.postPair(request, response, 'failback') },
      '/pairs/resolve': { POST: (request, response) => this.postPair(request, response, 'resolve') },
      '/pairs/create': { POST: (request, response) => this.postPairCreate(request, response) },
      '/pairs/delete': { POST: (request, response) => this.postPair(request, response, 'delete') },
      '/lockstep': { POST: (request, response) => this.postLockstep(request, response) },
      '/lockstep/enable': { POST: (request, response) => this.postLockstepSwitch(request, response, true) },
      '/lockstep/disable': { POST: (request, response) => this.postLockstepSwitch(request, response, false) },
      ...Object.fromEntries(SNAPSHOT_VERBS.map((verb) => [`/snapshots/${verb}`, { POST: (request: http.IncomingMessage, response: http.ServerResponse) => this.postSnapshot(request, response, verb) }])),
      ...Object.fromEntries(GROUP_VERBS.map((verb) => [`/groups/${verb}`, { POST: (request: http.IncomingMessage, response: http.ServerResponse) => this.postGroup(request, response, verb) }])),
      ...Object.fromEntries(DISK_VERBS.map((verb) => [`/disks/${verb}`, { POST: (request: http.IncomingMessage, response: http.ServerResponse) => this.postDisk(request, response, verb) }])),
    });
  }

  /** The current lifecycle state. */
  get currentState(): AdminServerState {
    return this.state;
  }

  /** Open /events streams. */
  get eventStreamCount(): number {
    return this.streams.size;
  }

  private setState(next: AdminServerState): void {
    this.log.debug({ old: this.state, new: next }, `admin endpoint: ${this.state} -> ${next}`);
    this.state = next;
  }

  /**
   * Starts listening. For the Unix socket: creates its directory (0700) when missing, removes a
   * stale socket file (ERR_CLI_SOCKET_IN_USE when a server answers on it, ERR_CLI_SOCKET_PATH
   * when the path is not a socket), listens, and makes the socket 0600. On failure nothing is
   * left listening.
   */
  async listen(): Promise<void> {
    if (this.state !== 'new') throw new TypeError(`listen() on an admin server that is ${this.state}`);
    this.setState('listening');
    try {
      if (this.socketPath !== undefined) {
        const socketPath = this.socketPath;
        ensureSocketDirectory(socketPath);
        await removeStaleSocket(socketPath);
        const server = this.createHttpServer();
        try {
          await listenOn(server, { path: socketPath });
        } catch (error) {
          const code = (error as NodeJS.ErrnoException).code;
          if (code === 'EADDRINUSE') throw new BlockmirrorError('ERR_CLI_SOCKET_IN_USE', `another server is listening on ${socketPath}`, { cause: error });
          throw new BlockmirrorError('ERR_CLI_SOCKET_PATH', `cannot listen on ${socketPath}: ${(error as Error).message}`, { cause: error });
        }
        // Right after listen, before any request is served: only this user may connect.
        fs.chmodSync(socketPath, 0o600);
        this.socketInode = fs.lstatSync(socketPath).ino;
        this.log.info({ socketPath }, 'admin endpoint listening');
      }
      if (this.tcpOption !== undefined) {
        const server = this.createHttpServer();
        await listenOn(server, { host: this.tcpOption.host, port: this.tcpOption.port });
        const address = server.address() as net.AddressInfo;
        this.tcpAddress = { host: this.tcpOption.host, port: address.port };
        this.log.info({ host: this.tcpOption.host, port: address.port }, 'admin endpoint listening');
      }
      if (this.closing !== undefined) throw new TypeError('the admin server was closed while it started');
    } catch (error) {
      // close() may have run meanwhile and missed a listener opened after it: close those here.
      await Promise.all(this.servers.map((server) => new Promise<void>((resolve) => {
        if (server.listening) server.close(() => resolve());
        else resolve();
      })));
      await this.close();
      throw error;
    }
  }

  /** Where the server listens (after listen()). */
  addresses(): AdminAddresses {
    const result: AdminAddresses = {};
    if (this.socketPath !== undefined && this.socketInode !== undefined) result.socketPath = this.socketPath;
    if (this.tcpAddress !== undefined) result.tcp = { ...this.tcpAddress };
    return result;
  }

  /**
   * Ends every /events stream, stops listening, waits for requests in flight (at most
   * closeTimeoutMs, then cuts the connections) and removes the socket file. A second call returns
   * the first one's promise.
   */
  close(): Promise<void> {
    if (this.closing !== undefined) return this.closing;
    const wasListening = this.state === 'listening';
    this.setState('closing');
    this.closing = this.closeNow(wasListening);
    return this.closing;
  }

  private async closeNow(wasListening: boolean): Promise<void> {
    this.streams.endAll();
    const timer = setTimeout(() => {
      this.log.warn({ connections: this.sockets.size }, 'admin endpoint: requests still in flight at close; cutting connections');
      for (const server of this.servers) server.closeAllConnections();
      for (const socket of this.sockets) socket.destroy();
    }, this.closeTimeoutMs);
    timer.unref();
    await Promise.all(this.servers.map((server) => new Promise<void>((resolve) => {
      if (!server.listening) {
        server.closeAllConnections();
        resolve();
        return;
      }
      server.close(() => resolve());
      // Responses that just ended (the /events streams above) leave idle keep-alive connections.
      setImmediate(() => server.closeIdleConnections());
    })));
    clearTimeout(timer);
    if (this.socketPath !== undefined && this.socketInode !== undefined) {
      try {
        // Only our own file: a new serve may have replaced it meanwhile.
        if (fs.lstatSync(this.socketPath).ino === this.socketInode) fs.unlinkSync(this.socketPath);
      } catch {
        // Already gone (libuv unlinks a listening pipe's path when it closes).
      }
    }
    this.setState('closed');
    if (wasListening) this.log.info({}, 'admin endpoint closed');
  }

  private createHttpServer(): http.Server {
    const server = http.createServer({
      headersTimeout: this.headersTimeoutMs,
      requestTimeout: this.requestTimeoutMs,
      // The timeouts above are checked on this period; the default (30 s) would blur them.
      connectionsCheckingInterval: Math.max(10, Math.min(1000, Math.floor(this.headersTimeoutMs / 2))),
    }, (request, response) => this.handle(request, response));
    server.on('connection', (socket: net.Socket) => {
      if (this.sockets.size >= this.maxConnections || this.state !== 'listening') {
        this.log.warn({ limit: this.maxConnections }, 'admin endpoint: connection limit reached; connection closed');
        socket.destroy();
        return;
      }
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
    server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => this.onClientError(error, socket));
    server.on('error', (error) => this.log.error({ err: error }, 'admin endpoint: listener error'));
    this.servers.push(server);
    return server;
  }

  /** Malformed HTTP, a request timeout, a reset: answer if the socket still can, then close it. */
  private onClientError(error: NodeJS.ErrnoException, socket: Duplex): void {
    this.log.debug({ code: error.code, message: error.message }, 'admin endpoint: bad HTTP from a client');
    // HPE_CLOSED_CONNECTION: bytes after a response that said "Connection: close"; nothing more
    // may be written on that connection.
    if (error.code === 'ECONNRESET' || error.code === 'HPE_CLOSED_CONNECTION' || !socket.writable) {
      socket.destroy();
      return;
    }
    const status = error.code === 'HPE_HEADER_OVERFLOW' ? 431 : error.code === NODE_REQUEST_TIMEOUT_CODE ? 408 : 400;
    const body = JSON.stringify({
      error: { code: 'ERR_ADMIN_BAD_REQUEST', message: `malformed HTTP request (${error.code ?? error.message})` },
    });
    socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ''}\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
    socket.once('finish', () => socket.destroy());
  }

  private handle(request: http.IncomingMessage, response: http.ServerResponse): void {
    let result: Promise<void> | void;
    try {
      result = this.route(request, response);
    } catch (error) {
      this.fail(request, response, error);
      return;
    }
    if (result !== undefined) result.catch((error: unknown) => this.fail(request, response, error));
  }

  private route(request: http.IncomingMessage, response: http.ServerResponse): Promise<void> | void {
    let url: URL;
    try {
      url = new URL(request.url ?? '/', 'http://admin.invalid');
    } catch {
      throw badRequest(`the request target ${JSON.stringify(request.url)} is not a valid path`);
    }
    this.log.debug({ method: request.method, path: url.pathname }, 'admin request');
    const methods = Object.prototype.hasOwnProperty.call(this.routes, url.pathname) ? this.routes[url.pathname] : undefined;
    if (methods === undefined) {
      throw new BlockmirrorError('ERR_ADMIN_NOT_FOUND', `no endpoint ${url.pathname} (there are ${Object.keys(this.routes).join(', ')})`);
    }
    const handler = Object.prototype.hasOwnProperty.call(methods, request.method ?? '') ? methods[request.method ?? ''] : undefined;
    if (handler === undefined) {
      const allowed = Object.keys(methods).join(', ');
      response.setHeader('Allow', allowed);
      throw new BlockmirrorError('ERR_ADMIN_METHOD', `${url.pathname} takes ${allowed}, not ${request.method ?? '?'}`);
    }
    return handler(request, response, url);
  }

  private fail(request: http.IncomingMessage, response: http.ServerResponse, error: unknown): void {
    let code = isBlockmirrorError(error) ? error.code : undefined;
    let status = code === undefined ? 500 : STATUS_OF_CODE[code] ?? 500;
    if (code !== undefined && status === 500 && code.endsWith('_CLOSED')) status = 409;
    // The peer refused what this side asked of it (a pair verb that needs the peer): its code,
    // with its status; a peer failure without a known code is the peer's, not this endpoint's.
    const remoteCode = (error as { remoteCode?: unknown } | null)?.remoteCode;
    if (code === 'ERR_LINK_REMOTE' && typeof remoteCode === 'string' && /^ERR_[A-Z0-9_]+$/.test(remoteCode)) {
      code = remoteCode;
      status = STATUS_OF_CODE[remoteCode] ?? 502;
    } else if (code === 'ERR_LINK_REMOTE') status = 502;
    if (status === 500) {
      this.log.error({ err: error, method: request.method, url: request.url }, 'admin endpoint: request failed');
    } else {
      this.log.debug({ code, method: request.method, url: request.url }, 'admin endpoint: request refused');
    }
    if (response.headersSent) {
      response.destroy();
      return;
    }
    const message = error instanceof Error ? error.message : String(error);
    const body = {
      error: {
        code: code ?? INTERNAL_ERROR_CODE,
        message: code === undefined ? `internal error behind the admin endpoint: ${message} (the serve's log has details)` : message,
      },
    };
    if (status === 413) response.setHeader('Connection', 'close');
    sendJson(response, status, body);
  }

  private getStatus(response: http.ServerResponse): void {
    sendJson(response, 200, this.target.status());
  }

  private async getMetrics(response: http.ServerResponse): Promise<void> {
    const { contentType, text } = await this.target.metrics();
    response.writeHead(200, {
      'Content-Type': contentType,
      'Content-Length': Buffer.byteLength(text),
      'Cache-Control': 'no-store',
    });
    response.end(text);
  }

  private getEvents(_request: http.IncomingMessage, response: http.ServerResponse, url: URL): void {
    const nowValue = url.searchParams.get('now');
    let now: boolean;
    if (nowValue === null || nowValue === '0' || nowValue === 'false') now = false;
    else if (nowValue === '' || nowValue === '1' || nowValue === 'true') now = true;
    else throw badRequest(`now must be 1 or 0, got ${JSON.stringify(nowValue)}`);
    // Taken before the headers go out, so a failing target still gets a proper error response.
    const current = this.target.currentEvents();
    this.streams.open(response, current, now, (listener) => this.target.subscribe(listener));
  }

  private async postFault(request: http.IncomingMessage, response: http.ServerResponse): Promise<void> {
    const { controller, peer, settings } = faultRequest(await readJsonObject(request, this.maxBodyBytes));
    this.target.setLinkFaults(controller, peer, settings);
    sendJson(response, 200, { ok: true, link: this.findLinkStatus(controller, peer) });
  }

  private async postHeal(request: http.IncomingMessage, response: http.ServerResponse): Promise<void> {
    const { controller, peer } = healRequest(await readJsonObject(request, this.maxBodyBytes));
    this.target.healLink(controller, peer);
    sendJson(response, 200, { ok: true, link: this.findLinkStatus(controller, peer) });
  }

  /** POST /pairs/<verb>: {controller?, pair} (+ force for takeover, keep for resolve). */
  private async postPair(request: http.IncomingMessage, response: http.ServerResponse, verb: PairVerb): Promise<void> {
    const { controllerId, pair, force, keep } = pairRequest(verb, await readJsonObject(request, this.maxBodyBytes));
    let result: Record<string, unknown>;
    switch (verb) {
      case 'suspend': result = this.target.suspendPair(controllerId, pair); break;
      case 'resume': result = this.target.resumePair(controllerId, pair); break;
      case 'takeover': result = await this.target.takeoverPair(controllerId, pair, { force }); break;
      case 'failback': result = await this.target.failbackPair(controllerId, pair); break;
      case 'delete': result = await this.target.deletePair(controllerId, pair); break;
      default: result = await this.target.resolvePair(controllerId, pair, keep);
    }
    sendJson(response, 200, { ok: true, pair: result });
  }

  /** POST /pairs/takeover-group {controller?, journalGroup, force?}, /pairs/failback-group {controller?, journalGroup}. */
  private async postGroupRole(request: http.IncomingMessage, response: http.ServerResponse, verb: 'takeover' | 'failback'): Promise<void> {
    const { controllerId, group, force } = groupRoleRequest(verb, await readJsonObject(request, this.maxBodyBytes));
    const pairs = verb === 'takeover'
      ? await this.target.takeoverGroup(controllerId, group, { force })
      : await this.target.failbackGroup(controllerId, group);
    sendJson(response, 200, { ok: true, journalGroup: group, pairs });
  }

  /** POST /groups/<verb> (group-routes.ts). */
  private async postGroup(request: http.IncomingMessage, response: http.ServerResponse, verb: GroupVerb): Promise<void> {
    const { controllerId, request: groupAsk } = groupRequest(verb, await readJsonObject(request, this.maxBodyBytes));
    sendJson(response, 200, { ok: true, result: await this.target.group(controllerId, groupAsk) });
  }

  /** POST /disks/<verb> (disk-routes.ts). */
  private async postDisk(request: http.IncomingMessage, response: http.ServerResponse, verb: DiskVerb): Promise<void> {
    const { controllerId, request: diskAsk } = diskRequest(verb, await readJsonObject(request, this.maxBodyBytes));
    if (this.target.disk === undefined) throw new BlockmirrorError('ERR_ADMIN_NOT_FOUND', 'this serve has no disks');
    sendJson(response, 200, { ok: true, result: await this.target.disk(controllerId, diskAsk) });
  }

  /** POST /snapshots/<verb> (snapshot-routes.ts). */
  private async postSnapshot(request: http.IncomingMessage, response: http.ServerResponse, verb: SnapshotVerb): Promise<void> {
    const { controllerId, request: snapshotAsk } = snapshotRequest(verb, await readJsonObject(request, this.maxBodyBytes));
    sendJson(response, 200, { ok: true, result: await this.target.snapshot(controllerId, snapshotAsk) });
  }

  /** POST /lockstep: {controller?, pairs?, volumes?, journals?, timeoutMs?} -> {result, number}. */
  private async postLockstep(request: http.IncomingMessage, response: http.ServerResponse): Promise<void> {
    const { controllerId, target } = lockstepRequest(await readJsonObject(request, this.maxBodyBytes));
    const result = await this.target.lockstep(controllerId, target);
    sendJson(response, 200, { ok: true, result, number: LOCKSTEP_NUMBERS[result] ?? null });
  }

  /** POST /lockstep/enable and /lockstep/disable: {controller?}. */
  private async postLockstepSwitch(request: http.IncomingMessage, response: http.ServerResponse, enabled: boolean): Promise<void> {
    this.target.setLockstepEnabled(lockstepSwitchRequest(await readJsonObject(request, this.maxBodyBytes)), enabled);
    sendJson(response, 200, { ok: true, enabled });
  }

  /** POST /pairs/create: a pair declared at run time, with the fields of the config's `pairs[]`. */
  private async postPairCreate(request: http.IncomingMessage, response: http.ServerResponse): Promise<void> {
    const { controllerId, spec } = pairCreateRequest(await readJsonObject(request, this.maxBodyBytes));
    const result = this.target.createPair(controllerId, spec);
    sendJson(response, 200, { ok: true, pair: result });
  }

  /** The status of one link from target.status(), or null when the status does not show it. */
  private findLinkStatus(controllerId: string | undefined, peerId: string): unknown {
    try {
      const controllers = (this.target.status() as { controllers?: unknown }).controllers;
      if (!Array.isArray(controllers)) return null;
      const candidates = controllerId === undefined
        ? (controllers.length === 1 ? controllers : [])
        : controllers.filter((entry) => (entry as { id?: unknown } | null)?.id === controllerId);
      for (const entry of candidates) {
        const links = (entry as { links?: unknown } | null)?.links;
        if (!Array.isArray(links)) continue;
        const link = links.find((candidate) => (candidate as { peerId?: unknown } | null)?.peerId === peerId);
        if (link !== undefined) return link;
      }
    } catch (error) {
      this.log.warn({ err: error }, 'admin endpoint: status() failed after a link change');
    }
    return null;
  }
}
