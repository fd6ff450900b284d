// Notes on the design
// -------------------
// The two interfaces a link needs from the network, and nothing more, so that the same link
// code runs over real TCP (tcp.ts) and over the simulated network (src/sim/network.ts):
//
//   Network  dials an address (with a timeout) and listens on one;
//   Wire     is one connected, ordered, reliable byte stream, like a TCP connection.
//
// A Wire delivers bytes in order and without loss until it closes; it never reframes, so the
// frame decoder sees arbitrary splits. A wire may read into memory its handler names
// (readTarget), which lets a large frame's payload go from the kernel to its final buffer with
// no copy in between. Handlers are attached once; a wire that closed before
// its handlers were attached reports the close at attach. destroy() is idempotent, and after
// close no handler runs again. write() never throws: writing to a closed wire drops the bytes
// (the close has been or will be reported).
//
// write() may be given `onWritten`: the wire calls it once, when it no longer reads the chunks'
// memory (handed to the kernel, copied, or discarded by a close), so a sender can reuse a buffer
// instead of allocating one per message (a pair's PAIR_RECORDS messages, send-pool.ts). It may
// run synchronously inside write() (a closed wire, a wire that copies).

/** A host and port (or a simulated address written the same way). */
export interface NetworkAddress {
  host: string;
  port: number;
}

/** "host:port", with brackets around IPv6 hosts. */
export function formatAddress(address: NetworkAddress): string {
  return address.host.includes(':') ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}

/** What a Wire reports. */
export interface WireHandlers {
  /**
   * Bytes in order; the buffer belongs to the handler (or, when it is a view of what
   * readTarget() returned, is that memory, filled in place).
   */
  data(chunk: Buffer): void;
  /**
   * Optional: asked before each read, where the next bytes should go. A wire that can read into
   * a buffer of the caller's choosing (TCP) reads at most its length into it and reports the
   * bytes as data() of a view of it; one that cannot (the simulated network) never asks. Return
   * undefined to let the wire use a buffer of its own.
   */
  readTarget?(): Buffer | undefined;
  /** The wire's send buffer fell below its high-water mark after write() returned false. */
  drain(): void;
  /** The wire closed (by either side, or failed); called once. */
  close(reason: string): void;
}

/** One connected byte stream. */
export interface Wire {
  /** For logs and status: "tcp:127.0.0.1:40122->127.0.0.1:10810". */
  readonly description: string;
  readonly remote: NetworkAddress;
  /** Bytes accepted by write() and not yet handed to the network. */
  readonly bufferedBytes: number;
  /** Attaches the handlers (once) and starts reading. */
  attach(handlers: WireHandlers): void;
  /**
   * Queues the chunks in order; false when the send buffer is above its high-water mark.
   * `onWritten` runs once when the chunks' memory is no longer read (see the note).
   */
  write(chunks: readonly Buffer[], onWritten?: () => void): boolean;
  /** Stops reading (back-pressure on the peer) until resume(). */
  pause(): void;
  resume(): void;
  /** Closes now; queued bytes are discarded. Idempotent. */
  destroy(reason?: string): void;
  /**
   * Closes after the bytes already written have been sent (a last REFUSE or GOODBYE must reach
   * the peer); reported to the local handlers as a close with `reason` at once. Idempotent.
   */
  end(reason?: string): void;
}

/** A pending dial; cancel() closes the wire if it connects later. */
export interface DialHandle {
  cancel(): void;
}

/** A listening endpoint. */
export interface NetworkListener {
  /** The bound address (the real port when 0 was asked for). */
  readonly address: NetworkAddress;
  /** Stops accepting; established wires are not touched. */
  close(): Promise<void>;
}

/** Dials and listens. */
export interface Network {
  /** Connects; `callback` runs once, with a wire or an error message. */
  dial(address: NetworkAddress, timeoutMs: number, callback: (error: string | undefined, wire?: Wire) => void): DialHandle;
  /** Listens; every accepted connection is handed to `onWire`. */
  listen(address: NetworkAddress, onWire: (wire: Wire) => void): Promise<NetworkListener>;
}
