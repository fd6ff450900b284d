// Notes on the design
// -------------------
// The real Network: node:net sockets as Wires. Nagle is off (heartbeats and acknowledgements are
// small and latency-bound); keep-alive is left to the link's own heartbeats, which also catch a
// stopped (SIGSTOP) peer that TCP keep-alive would not. A socket is read only after attach(),
// so no byte is lost between accept and the link taking the wire.
//
// Reads are steered (net.Socket's `onread` option, no stream 'data' events): before each read
// the wire asks its handler for a target (WireHandlers.readTarget; the frame decoder offers the
// missing part of a large payload), and the kernel copies the bytes straight there, so a 1 MiB
// frame is not first read into 64 KiB socket buffers and then copied into its payload. Without a
// target a read goes into memory of the wire's own that belongs to the handler once read, as a
// 'data' chunk would: the unread rest of the last READ_BUFFER_BYTES buffer while at least
// MIN_SPARE_BYTES are left (an acknowledgement does not cost a 64 KiB allocation), else a fresh
// one; no byte handed to the handler is ever read into again. Bytes read before attach() (a
// dialer's socket reads from connect on) are kept, at most MAX_EARLY_BYTES (then the socket
// stops reading), and handed over at attach, in order.
//
// Writes are batched: the first write() of a tick corks the socket and the end of the tick
// (process.nextTick) uncorks it, so the frames one piece of code sends in a row go out in one
// writev(2) instead of one syscall each; a batch is flushed at once when it reaches
// FLUSH_BYTES, so a long burst of sends still feeds the kernel as it goes. A 1 MiB frame is
// past that at once: it goes out as it is, header and payload as two chunks (never copied).
//
// node:net takes `onread` only when it makes a socket: net.connect() for a dialer; for an
// accepted socket, whose net.Server gives no such option, the accepted (paused, never read)
// handle is moved into a new net.Socket made with it (adoptAccepted). That uses the socket's
// `_handle` property, which node:net documents nowhere; when it is missing the accepted socket
// is used as it is, with 'data' events and one copy per spanning payload, as before.

import * as net from 'node:net';

import type { DialHandle, Network, NetworkAddress, NetworkListener, Wire, WireHandlers } from './wire';
import { formatAddress } from './wire';

/** The size of a read buffer of the wire's own: what node:net's own reads use. */
export const READ_BUFFER_BYTES = 64 * 1024;
/** A read goes into the rest of the last buffer while at least this much of it is left. */
export const MIN_SPARE_BYTES = 16 * 1024;
/** A batch of writes is handed to the kernel at once when it reaches this size. */
export const FLUSH_BYTES = 128 * 1024;
/** Bytes kept before attach() at most: past them the socket stops reading until attach. */
export const MAX_EARLY_BYTES = 256 * 1024;

/** Where a steered socket's reads go: built before the socket, bound to its wire at attach. */
class ReadSteering {
  private handlers: WireHandlers | undefined;
  /** Bytes read before attach (kept in order). */
  private early: Buffer[] | undefined = [];
  private earlyBytes = 0;
  /** The unread rest of the last buffer of our own (never a view of a handler's target). */
  private spare: Buffer | undefined;
  readonly onread: net.OnReadOpts = {
    buffer: () => {
      const target = this.handlers?.readTarget?.();
      if (target !== undefined) return target;
      if (this.spare === undefined || this.spare.length < MIN_SPARE_BYTES) this.spare = Buffer.allocUnsafe(READ_BUFFER_BYTES);
      return this.spare;
    },
    callback: (byteCount: number, buffer: Uint8Array) => {
      const chunk = (buffer as Buffer).subarray(0, byteCount);
      // What was read now belongs to the handler: the next read goes after it.
      if (buffer === this.spare) this.spare = this.spare.subarray(byteCount);
      if (this.handlers !== undefined) {
        this.handlers.data(chunk);
        return true;
      }
      this.early?.push(chunk);
      this.earlyBytes += byteCount;
      // false stops the socket reading (back-pressure on the peer); attach() resumes it.
      return this.earlyBytes < MAX_EARLY_BYTES;
    },
  };

  attach(handlers: WireHandlers): void {
    const early = this.early ?? [];
    this.early = undefined;
    this.handlers = handlers;
    for (const chunk of early) {
      if (this.handlers === undefined) return; // closed by a handler
      this.handlers.data(chunk);
    }
  }

  detach(): void {
    this.handlers = undefined;
    this.early = undefined;
  }
}

/**
 * Moves an accepted socket's handle (paused by pauseOnConnect: no byte read yet) into a new
 * socket whose reads are steered (see the design note); returns the socket unchanged when node:net
 * does not look as expected.
 */
function adoptAccepted(socket: net.Socket, steering: ReadSteering): net.Socket {
  const holder = socket as unknown as { _handle?: unknown };
  const handle = holder._handle;
  if (handle === null || typeof handle !== 'object' || socket.destroyed || socket.bytesRead !== 0) return socket;
  holder._handle = null;
  // The old socket has no handle left: destroying it only settles the server's bookkeeping.
  socket.destroy();
  return new net.Socket({ handle, onread: steering.onread, readable: true, writable: true, pauseOnCreate: true } as net.SocketConstructorOpts);
}

class TcpWire implements Wire {
  readonly description: string;
  readonly remote: NetworkAddress;
  private handlers: WireHandlers | undefined;
  private closedReason: string | undefined;

  /** `steering` when the socket was made with its onread option, else undefined ('data' events). */
  constructor(private readonly socket: net.Socket, private readonly steering: ReadSteering | undefined) {
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
    this.steering?.detach();
    handlers?.close(reason);
  }

  attach(handlers: WireHandlers): void {
    if (this.handlers !== undefined) throw new Error('wire: handlers attached twice');
    if (this.closedReason !== undefined) {
      handlers.close(this.closedReason);
      return;
    }
    this.handlers = handlers;
    this.socket.on('drain', () => this.handlers?.drain());
    if (this.steering !== undefined) this.steering.attach(handlers);
    else this.socket.on('data', (chunk: Buffer) => this.handlers?.data(chunk));
    if (this.handlers !== undefined) this.socket.resume();
  }

  /** Whether this wire holds a cork on the socket (see the design note), and the bytes under it. */
  private corked = false;
  private corkedBytes = 0;
  private readonly flush = (): void => {
    if (!this.corked) return;
    this.corked = false;
    this.corkedBytes = 0;
    this.socket.uncork();
  };

  write(chunks: readonly Buffer[], onWritten?: () => void): boolean {
    if (this.closedReason !== undefined || this.socket.destroyed) {
      onWritten?.();
      return true;
    }
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(this.flush);
    }
    let ok = true;
    const last = chunks.length - 1;
    for (let index = 0; index <= last; index++) {
      const chunk = chunks[index] as Buffer;
      // Node calls a write's callback once libuv is done with its buffer: written to the kernel,
      // or failed/cancelled by a destroy (then with an error). Callbacks run in write order.
      ok = index === last && onWritten !== undefined ? this.socket.write(chunk, () => onWritten()) : this.socket.write(chunk);
      this.corkedBytes += chunk.length;
    }
    if (last < 0) onWritten?.();
    if (this.corkedBytes >= FLUSH_BYTES) this.flush();
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
      this.flush();
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
    const steering = new ReadSteering();
    const socket = net.connect({ host: address.host, port: address.port, onread: steering.onread });
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
      callback(undefined, new TcpWire(socket, steering));
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
      const server = net.createServer({ pauseOnConnect: true }, (accepted) => {
        const steering = new ReadSteering();
        const socket = adoptAccepted(accepted, steering);
        onWire(new TcpWire(socket, socket === accepted ? undefined : steering));
      });
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
