// Notes on the design
// -------------------
// The real Network: node:net sockets as Wires. Nagle is off (heartbeats and acknowledgements are
// small and latency-bound); keep-alive is left to the link's own heartbeats, which also catch a
// stopped (SIGSTOP) peer that TCP keep-alive would not. A socket is read only after attach(),
// so no byte is lost between accept and the link taking the wire.

import * as net from 'node:net';

import type { DialHandle, Network, NetworkAddress, NetworkListener, Wire, WireHandlers } from './wire';
import { formatAddress } from './wire';

class TcpWire implements Wire {
  readonly description: string;
  readonly remote: NetworkAddress;
  private handlers: WireHandlers | undefined;
  private closedReason: string | undefined;

  constructor(private readonly socket: net.Socket) {
    socket.setNoDelay(true);
    this.remote = { host: socket.remoteAddress ?? '?', port: socket.remotePort ?? 0 };
    this.description = `tcp:${formatAddress({ host: socket.localAddress ?? '?', port: socket.localPort ?? 0 })}->${formatAddress(this.remote)}`;
    // Errors arrive before 'close'; remember the first as the reason.
    let errorText: string | undefined;
    socket.on('error', (error: NodeJS.ErrnoException) => {
      errorText ??= error.code ?? error.message;
    });
    socket.on('close', () => this.closed(errorText ?? 'closed by peer'));
    socket.on('end', () => socket.destroy());
  }

  get bufferedBytes(): number {
    return this.socket.writableLength;
  }

  private closed(reason: string): void {
    if (this.closedReason !== undefined) return;
    this.closedReason = reason;
    const handlers = this.handlers;
    this.handlers = undefined;
    handlers?.close(reason);
  }

  attach(handlers: WireHandlers): void {
    if (this.handlers !== undefined) throw new Error('wire: handlers attached twice');
    if (this.closedReason !== undefined) {
      handlers.close(this.closedReason);
      return;
    }
    this.handlers = handlers;
    this.socket.on('data', (chunk: Buffer) => this.handlers?.data(chunk));
    this.socket.on('drain', () => this.handlers?.drain());
    this.socket.resume();
  }

  write(chunks: readonly Buffer[]): boolean {
    if (this.closedReason !== undefined || this.socket.destroyed) return true;
    if (chunks.length === 1) return this.socket.write(chunks[0] as Buffer);
    this.socket.cork();
    let ok = true;
    for (const chunk of chunks) ok = this.socket.write(chunk);
    this.socket.uncork();
    return ok;
  }

  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  end(reason = 'closed'): void {
    if (this.closedReason === undefined) {
      this.socket.end();
      // A peer that never reads must not keep the socket: destroy it after a grace period.
      setTimeout(() => this.socket.destroy(), 2000).unref();
      this.closed(reason);
    }
  }

  destroy(reason = 'closed'): void {
    if (this.closedReason === undefined) {
      this.socket.destroy();
      this.closed(reason);
    }
  }
}

/** Real TCP over node:net. */
export class TcpNetwork implements Network {
  dial(address: NetworkAddress, timeoutMs: number, callback: (error: string | undefined, wire?: Wire) => void): DialHandle {
    let settled = false;
    const socket = net.connect({ host: address.host, port: address.port });
    const timer = setTimeout(() => finish('ETIMEDOUT'), timeoutMs);
    timer.unref();
    const finish = (error: string | undefined): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (error !== undefined) {
        socket.destroy();
        callback(error);
        return;
      }
      socket.removeAllListeners('error');
      callback(undefined, new TcpWire(socket));
    };
    socket.once('connect', () => finish(undefined));
    socket.once('error', (error: NodeJS.ErrnoException) => finish(error.code ?? error.message));
    return {
      cancel: () => {
        if (!settled) {
          settled = true;
          clearTimeout(timer);
          socket.destroy();
        }
      },
    };
  }

  listen(address: NetworkAddress, onWire: (wire: Wire) => void): Promise<NetworkListener> {
    return new Promise((resolve, reject) => {
      const server = net.createServer({ pauseOnConnect: true }, (socket) => onWire(new TcpWire(socket)));
      server.once('error', reject);
      server.listen({ host: address.host, port: address.port }, () => {
        server.off('error', reject);
        // A listener error after start (EMFILE on accept) must not crash the process.
        server.on('error', () => undefined);
        const bound = server.address() as net.AddressInfo;
        resolve({
          address: { host: bound.address, port: bound.port },
          close: () => new Promise<void>((done) => server.close(() => done())),
        });
      });
    });
  }
}

/** The process-wide real network. */
export const tcpNetwork: Network = new TcpNetwork();
