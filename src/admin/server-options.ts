// Notes on the design
// -------------------
// The options of an AdminServer (src/admin/server.ts) and what they fall back to: the logger
// interface (pino's calling convention) and its silent default, the loopback hosts the TCP
// listener may bind, the default limits, the lifecycle state names, the addresses listen()
// reports, and checkInteger(), the constructor's range check. No state lives here.
//
// Invariants: every limit has a named default here and a range in the constructor; a value out
// of range is a caller mistake (RangeError), never clamped. OVERFLOW_LINE is part of the /events
// wire contract (docs/admin.md): readers match it byte for byte.

import type { AdminTarget } from './target';

/** A logger with pino's calling convention. */
export interface AdminLogger {
  debug(object: object, message?: string): void;
  info(object: object, message?: string): void;
  warn(object: object, message?: string): void;
  error(object: object, message?: string): void;
}

/** Hosts the TCP listener may bind: loopback only (the endpoint has no authentication). */
export const LOOPBACK_HOSTS: readonly string[] = Object.freeze(['127.0.0.1', '::1', 'localhost']);

export const DEFAULT_MAX_BODY_BYTES = 64 * 1024;
export const DEFAULT_MAX_CONNECTIONS = 64;
export const DEFAULT_HEADERS_TIMEOUT_MS = 10_000;
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
export const DEFAULT_MAX_EVENT_BUFFER_BYTES = 1024 * 1024;
export const DEFAULT_CLOSE_TIMEOUT_MS = 5000;

/** The last line of an /events stream whose reader fell too far behind. */
export const OVERFLOW_LINE = '{"kind":"overflow"}\n';

/** Options of an AdminServer. At least one of socketPath and tcp is required. */
export interface AdminServerOptions {
  /** The array served. */
  target: AdminTarget;
  /** Listen on this Unix socket (mode 0600). @default undefined (no Unix socket) */
  socketPath?: string;
  /** Listen on this TCP address too; the host must be loopback (LOOPBACK_HOSTS). Port 0: any free one. @default undefined */
  tcp?: { host: string; port: number };
  /** @default silent */
  logger?: AdminLogger;
  /** The largest request body accepted (HTTP 413 past it). @default 65536 (64 KiB) */
  maxBodyBytes?: number;
  /** Connections open at once, over all listeners; more are closed at once. @default 64 */
  maxConnections?: number;
  /** The request headers must arrive within this. @default 10000 */
  headersTimeoutMs?: number;
  /** The whole request (headers and body) must arrive within this. @default 30000 */
  requestTimeoutMs?: number;
  /** Bytes an /events response may have waiting before it is ended with an overflow line. @default 1048576 (1 MiB) */
  maxEventBufferBytes?: number;
  /** How long close() waits for requests in flight before it cuts connections. @default 5000 */
  closeTimeoutMs?: number;
}

/** Where an AdminServer listens. */
export interface AdminAddresses {
  socketPath?: string;
  tcp?: { host: string; port: number };
}

export type AdminServerState = 'new' | 'listening' | 'closing' | 'closed';

export const SILENT: AdminLogger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

export function checkInteger(name: string, value: number | undefined, fallback: number, min: number, max: number): number {
  const result = value ?? fallback;
  if (!Number.isSafeInteger(result) || result < min || result > max) {
    throw new RangeError(`${name} must be an integer from ${min} to ${max}, got ${String(value)}`);
  }
  return result;
}
