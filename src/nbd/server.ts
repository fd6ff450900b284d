// Notes on the design
// -------------------
// NbdServer exports volumes over NBD (fixed newstyle, doc/proto.md of NetworkBlockDevice) on
// any number of TCP and Unix-socket listeners. protocol.ts holds the wire format; this file holds
// the server's listeners, accepting connections, listen(), addresses() and close(). The rest is
// split by concern, as nbdkit's server/ directory is:
//   server-exports.ts NbdServerExports, the class NbdServer extends: option validation, the
//                    exports, the counters and what connections call (ConnectionHost);
//   types.ts         the public types (re-exported here) and the records shared by these files;
//   connection.ts    a connection's state, its socket, the receive path, ending, flow control;
//   handshake.ts     newstyle fixed option haggling, up to entering transmission;
//   transmission.ts  requests: validation, the volume calls, ack points, the replies they send;
//   replies.ts       ReplyWriter (the reply arena) and the error helpers replies use;
//   flush.ts         FlushCoordinator, the per-volume flush group commit;
//   worker-pool.ts   the worker threads (option `workers`) that serve the transmission phase of
//                    connections to plain volumes, and worker.ts, their side (docs/nbd-workers.md).
// Everything importable from './server' before the split still is (re-exported below).
//
// Validation happens at the edge (protocol.validateRequest) before the volume sees a request, so
// a rejected request changes nothing. Malformed framing, a bad handshake or a vanished client
// ends only that connection; the server and the other connections go on.
//
// Errors: options and bad requests get the spec's replies. Framing errors are BlockmirrorError
// ERR_NBD_* values emitted as 'protocol-error' (never thrown out of a socket callback). Volume
// errors become NBD error values (errnoForVolumeError). Caller mistakes in the constructor are
// TypeError / RangeError.
//
// Ownership: the server never closes volumes; close() stops listeners, answers what is in
// flight, flushes the exported volumes and closes every socket. Each export gets the block
// sizes it advertises (NBD_INFO_BLOCK_SIZE, see handshake.ts) once (server-exports.ts), and one
// FlushCoordinator per volume shared by every export of that volume.
//
// Shutdown (graceful close): connections still in the handshake are closed at once (an option
// that races with it gets NBD_REP_ERR_SHUTDOWN); requests in flight are answered, requests
// already received but not started get ESHUTDOWN, then the socket is half-closed
// (Connection.shutdown). A Unix socket file left by a server that died is replaced once; a live
// one is never touched.
//
// Workers (`workers` > 0): the handshake always runs here; at its end handOff() may move the
// connection to a worker (worker-pool.ts says which). The server still counts it in
// `connections` and maxConnections, and reports its end ('disconnect'), its protocol errors and
// its counters (stats(), exportStats()) as for its own. setExportVolume to a volume the workers
// may not serve, and moveExportToMainLoop(), evict that export's worker connections before
// returning. A worker that dies is reported as 'worker-error' (never 'error', which would
// throw without a listener); the server goes on without it.
//
// Native lanes (`nativeLanes`): the same, with a native thread per connection in place of a
// worker (native-lanes.ts); offered before the workers. A connection a lane hands back resumes
// here (resumeFromLane) and is one of this loop's connections from then on.

import * as fs from 'node:fs';
import * as net from 'node:net';

import { nbdError } from './errors';
import { FlushCoordinator } from './flush';
import { NbdConnection } from './transmission';
import type {
  NbdAddress,
  NbdConnectionEvent,
  NbdDisconnectEvent,
  NbdListenOptions,
  NbdProtocolErrorEvent,
} from './types';
import { NbdServerExports } from './server-exports';

// Re-exported: src/nbd/index.ts, the CLI, the controller and the tests import these from here
// (they lived in this file before it was split).
export { matchMetaContexts } from './handshake';
export { errnoForVolumeError } from './replies';
export type {
  NbdAddress,
  NbdBitmap,
  NbdConnectionEvent,
  NbdDisconnectEvent,
  NbdExportOptions,
  NbdExportStats,
  NbdListenOptions,
  NbdLogger,
  NbdProtocolErrorEvent,
  NbdRequestCounts,
  NbdServerOptions,
  NbdServerStats,
  NbdVolume,
} from './types';

function listenOnce(server: net.Server, spec: NbdListenOptions): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onError = (error: Error) => reject(error);
    server.once('error', onError);
    const done = () => {
      server.off('error', onError);
      resolve();
    };
    if ('path' in spec) server.listen({ path: spec.path }, done);
    else server.listen({ host: spec.host ?? '127.0.0.1', port: spec.port ?? 10809 }, done);
  });
}

/** True when `socketPath` is a Unix socket file that nobody accepts connections on. */
function isStaleSocket(socketPath: string): Promise<boolean> {
  try {
    if (!fs.lstatSync(socketPath).isSocket()) return Promise.resolve(false);
  } catch {
    return Promise.resolve(false);
  }
  return new Promise((resolve) => {
    const probe = net.connect({ path: socketPath });
    probe.once('connect', () => {
      probe.destroy();
      resolve(false);
    });
    probe.once('error', (error: NodeJS.ErrnoException) => resolve(error.code === 'ECONNREFUSED'));
  });
}

function formatHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

function encodeExportPath(name: string): string {
  return encodeURIComponent(name).replace(/%2F/gi, '/');
}

/**
 * An NBD server exporting volumes. Events: 'connection' (NbdConnectionEvent), 'disconnect'
 * (NbdDisconnectEvent), 'protocol-error' (NbdProtocolErrorEvent), 'listening'.
 */
export class NbdServer extends NbdServerExports {
  /** Opens every listener; rejects (ERR_NBD_LISTEN) and closes the opened ones if any fails. */
  async listen(): Promise<void> {
    if (this.status !== 'new') {
      throw nbdError(this.isClosing ? 'ERR_NBD_SERVER_CLOSED' : 'ERR_NBD_LISTEN', `listen() called on a ${this.status} server`);
    }
    this.status = 'listening';
    try {
      if (this.config.workers > 0) {
        // Loaded only here: the pool needs the native addon, which this area otherwise leaves alone.
        const { WorkerPool: Pool } = require('./worker-pool') as typeof import('./worker-pool');
        this.pool = new Pool(this.config.workers, this.config, {
          log: this.log,
          findExport: (name) => this.findExport(name),
          disconnected: (event) => {
            this.log.debug({ connectionId: event.connectionId, reason: event.reason }, 'nbd connection closed (worker)');
            this.emit('disconnect', event satisfies NbdDisconnectEvent);
          },
          protocolError: (connectionId, error) => this.emit('protocol-error', { connectionId, error } satisfies NbdProtocolErrorEvent),
          workerError: (workerIndex, error) => this.emit('worker-error', { workerIndex, error }),
        });
      }
      if (this.config.nativeLanes) {
        const { NativeLanes: Lanes } = require('./native-lanes') as typeof import('./native-lanes');
        this.lanes = new Lanes(this.config, {
          log: this.log,
          disconnected: (event) => {
            this.log.debug({ connectionId: event.connectionId, reason: event.reason }, 'nbd connection closed (lane)');
            this.emit('disconnect', event satisfies NbdDisconnectEvent);
          },
          protocolError: (connectionId, error) => this.emit('protocol-error', { connectionId, error } satisfies NbdProtocolErrorEvent),
          resume: (connectionId, transport, socket, entry, state) => {
            this.connections.add(new NbdConnection(connectionId, socket, transport, this, this.config, { entry, state }));
          },
        });
      }
      for (const spec of this.listenSpecs) {
        const transport = 'path' in spec ? 'unix' : 'tcp';
        // pauseOnConnect: nothing is read before the connection takes the socket over.
        const server = net.createServer({ noDelay: true, pauseOnConnect: true });
        server.on('connection', (socket) => this.onConnection(socket, transport));
        try {
          await listenOnce(server, spec);
        } catch (error) {
          // A socket file left by a server that died (nobody accepts on it) is replaced once;
          // a live one is never touched.
          if ('path' in spec && (error as NodeJS.ErrnoException).code === 'EADDRINUSE' && (await isStaleSocket(spec.path))) {
            this.log.warn({ path: spec.path }, 'nbd replacing a stale socket file');
            fs.unlinkSync(spec.path);
            await listenOnce(server, spec).catch((retryError: unknown) => {
              throw nbdError('ERR_NBD_LISTEN', `cannot listen on ${JSON.stringify(spec)}: ${String((retryError as Error)?.message ?? retryError)}`, retryError);
            });
          } else {
            throw nbdError('ERR_NBD_LISTEN', `cannot listen on ${JSON.stringify(spec)}: ${String((error as Error)?.message ?? error)}`, error);
          }
        }
        server.on('error', (error) => this.log.error({ err: error.message }, 'nbd listener error'));
        this.netServers.push({ server, spec, transport });
      }
    } catch (error) {
      await this.closeListeners();
      await this.pool?.close(false);
      this.pool = null;
      this.status = 'new';
      throw error;
    }
    for (const address of this.addresses()) this.log.info({ uri: address.uri }, 'nbd export listening');
    this.emit('listening');
  }

  /** One address per listener and export. */
  addresses(): NbdAddress[] {
    const result: NbdAddress[] = [];
    for (const listener of this.netServers) {
      const address = listener.server.address();
      for (const entry of this.exports) {
        const path = encodeExportPath(entry.name);
        if (listener.transport === 'unix') {
          const socketPath = (listener.spec as { path: string }).path;
          result.push({
            uri: `nbd+unix:///${path}?socket=${encodeURIComponent(socketPath).replace(/%2F/gi, '/')}`,
            exportName: entry.name,
            transport: 'unix',
            path: socketPath,
          });
        } else if (address !== null && typeof address === 'object') {
          result.push({
            uri: `nbd://${formatHost(address.address)}:${address.port}/${path}`,
            exportName: entry.name,
            transport: 'tcp',
            host: address.address,
            port: address.port,
          });
        }
      }
    }
    return result;
  }

  /**
   * Stops accepting, then (graceful, the default) answers requests in flight, answers requests
   * already received with ESHUTDOWN, flushes every exported volume and closes the sockets;
   * non-graceful drops every socket at once. A later call returns the same promise; a
   * non-graceful call during a graceful close escalates it (every socket is dropped now).
   */
  close(options: { graceful?: boolean } = {}): Promise<void> {
    const graceful = options.graceful !== false;
    if (this.closing !== null) {
      if (!graceful) {
        for (const connection of this.connections) connection.shutdown(false);
        void this.pool?.close(false);
        void this.lanes?.close(false);
      }
      return this.closing;
    }
    this.status = 'closing';
    this.closing = (async () => {
      const listenersClosed = this.closeListeners();
      const connectionsClosed = Promise.all(
        [...this.connections].map(
          (connection) =>
            new Promise<void>((resolve) => {
              connection.socket.once('close', () => resolve());
              connection.shutdown(graceful);
              if (connection.socket.destroyed && connection.state === 'closed') resolve();
            }),
        ),
      );
      const workersClosed = this.pool?.close(graceful) ?? Promise.resolve();
      const lanesClosed = this.lanes?.close(graceful) ?? Promise.resolve();
      await Promise.all([listenersClosed, connectionsClosed, workersClosed, lanesClosed]);
      if (graceful) {
        const flushed = new Set<FlushCoordinator>();
        for (const entry of this.exports) {
          if (flushed.has(entry.flushes) || entry.readOnly || entry.volume.closed) continue;
          flushed.add(entry.flushes);
          try {
            await entry.flushes.flushNow();
          } catch (error) {
            this.log.warn({ export: entry.name, err: String(error) }, 'nbd final flush failed');
          }
        }
      }
      this.status = 'closed';
      this.log.info({}, 'nbd server closed');
    })();
    return this.closing;
  }

  // --- internals -----------------------------------------------------------------------------

  private onConnection(accepted: net.Socket, transport: 'tcp' | 'unix'): void {
    if (this.isClosing) {
      accepted.destroy();
      return;
    }
    if (this.connections.size + (this.pool?.connectionCount ?? 0) + (this.lanes?.connectionCount ?? 0) >= this.config.maxConnections) {
      const error = nbdError('ERR_NBD_TOO_MANY_CONNECTIONS', `connection limit ${this.config.maxConnections} reached`);
      this.log.warn({ code: error.code, remoteAddress: accepted.remoteAddress }, 'nbd connection refused');
      accepted.on('error', () => undefined);
      accepted.destroy();
      return;
    }
    const id = this.nextConnectionId++;
    this.totalConnections += 1;
    const connection = new NbdConnection(id, accepted, transport, this, this.config);
    this.connections.add(connection);
    // The connection may have moved the stream to a socket of its own.
    const socket = connection.socket;
    const event: NbdConnectionEvent = { connectionId: id, transport };
    if (socket.remoteAddress !== undefined) event.remoteAddress = socket.remoteAddress;
    if (socket.remotePort !== undefined) event.remotePort = socket.remotePort;
    this.log.debug({ ...event }, 'nbd connection opened');
    this.emit('connection', event);
  }

  private async closeListeners(): Promise<void> {
    const listeners = this.netServers.splice(0);
    await Promise.all(
      listeners.map(
        (listener) =>
          new Promise<void>((resolve) => {
            listener.server.close(() => resolve());
          }).then(() => {
            // Node removes its Unix socket file on close; make sure a stale one is not left.
            if (listener.transport === 'unix') {
              try {
                fs.unlinkSync((listener.spec as { path: string }).path);
              } catch {
                // Already gone.
              }
            }
          }),
      ),
    );
  }
}
