// Notes on the design
// -------------------
// The client side of the admin endpoint (src/admin/server.ts), used by the `blockmirror` commands
// and by test harnesses. One request per call over node:http (no keep-alive pool: the commands
// make one or a few calls and exit).
//
// Error contract: every failure is a BlockmirrorError.
//   ERR_ADMIN_UNREACHABLE  nothing answers at the address (ENOENT, ECONNREFUSED, a timeout);
//                          the message says where it looked and how to find the right socket.
//   ERR_ADMIN_RESPONSE     the endpoint answered with an error (AdminResponseError: remoteCode,
//                          remoteMessage and statusCode are the server's) or with something
//                          that is not its JSON.
// Responses are bounded (maxResponseBytes); so is each /events line (maxLineBytes).

import * as http from 'node:http';
import { StringDecoder } from 'node:string_decoder';

import { BlockmirrorError } from '../errors';

/** Where an admin endpoint listens. */
export type AdminAddress = string | { socketPath: string } | { host: string; port: number };

/** Options of an AdminClient. */
export interface AdminClientOptions {
  /** A request (not an /events stream) that gets no full answer in this time fails. @default 30000 */
  timeoutMs?: number;
  /** The largest response body accepted. @default 67108864 (64 MiB) */
  maxResponseBytes?: number;
  /** The longest /events line accepted. @default 16777216 (16 MiB) */
  maxLineBytes?: number;
}

/** Options of AdminClient.events(). */
export interface AdminEventsOptions {
  /** End after the current state (one 'exists' event per subject). @default false */
  now?: boolean;
  /** Stops the stream; events() then resolves. @default undefined */
  signal?: AbortSignal;
}

/** The endpoint answered with an error: its code and message are remoteCode and remoteMessage. */
export class AdminResponseError extends BlockmirrorError {
  /** The server's error code (ERR_...), when it sent one. */
  readonly remoteCode: string | undefined;
  /** The server's message, when it sent one. */
  readonly remoteMessage: string | undefined;
  /** The HTTP status. */
  readonly statusCode: number;

  constructor(statusCode: number, remoteCode: string | undefined, remoteMessage: string | undefined, message: string) {
    super('ERR_ADMIN_RESPONSE', message);
    this.name = 'AdminResponseError';
    this.statusCode = statusCode;
    this.remoteCode = remoteCode;
    this.remoteMessage = remoteMessage;
  }
}

/**
 * Splits a stream of text into newline-terminated lines, whatever the chunk boundaries (inside a
 * line, inside a UTF-8 character). A line longer than maxLineBytes throws ERR_ADMIN_RESPONSE.
 */
export class LineSplitter {
  private readonly decoder = new StringDecoder('utf8');
  private pending = '';

  constructor(private readonly maxLineBytes: number = 16 * 1024 * 1024) {}

  /** The complete lines (without their newline) that `chunk` finished. */
  push(chunk: Buffer | string): string[] {
    this.pending += typeof chunk === 'string' ? chunk : this.decoder.write(chunk);
    const lines = this.pending.split('\n');
    this.pending = lines.pop() as string;
    if (this.pending.length > this.maxLineBytes) {
      throw new BlockmirrorError('ERR_ADMIN_RESPONSE', `an event line is longer than ${this.maxLineBytes} bytes`);
    }
    return lines.map((line) => (line.endsWith('\r') ? line.slice(0, -1) : line));
  }

  /** What is left after the stream ended (a last line without a newline), if anything. */
  end(): string | undefined {
    const rest = this.pending + this.decoder.end();
    this.pending = '';
    return rest.trim() === '' ? undefined : rest;
  }
}

function describeAddress(address: AdminAddress): string {
  if (typeof address === 'string') return address;
  if ('socketPath' in address) return address.socketPath;
  return `${address.host.includes(':') ? `[${address.host}]` : address.host}:${address.port}`;
}

function checkLimit(name: string, value: number | undefined, fallback: number): number {
  const result = value ?? fallback;
  if (!Number.isSafeInteger(result) || result < 1) throw new RangeError(`${name} must be a positive integer, got ${String(value)}`);
  return result;
}

interface RawResponse {
  statusCode: number;
  contentType: string;
  body: string;
}

/** A client of one admin endpoint. */
export class AdminClient {
  readonly address: AdminAddress;
  private readonly timeoutMs: number;
  private readonly maxResponseBytes: number;
  private readonly maxLineBytes: number;

  constructor(address: AdminAddress, options: AdminClientOptions = {}) {
    if (typeof address === 'string') {
      if (address === '') throw new TypeError('the admin socket path must not be empty');
    } else if (address === null || typeof address !== 'object') {
      throw new TypeError('address must be a socket path, {socketPath} or {host, port}');
    } else if ('socketPath' in address) {
      if (typeof address.socketPath !== 'string' || address.socketPath === '') throw new TypeError('socketPath must be a non-empty string');
    } else if (typeof address.host !== 'string' || !Number.isSafeInteger(address.port) || address.port < 1 || address.port > 65535) {
      throw new TypeError('address must be {host: string, port: 1..65535}');
    }
    this.address = address;
    this.timeoutMs = checkLimit('timeoutMs', options.timeoutMs, 30_000);
    this.maxResponseBytes = checkLimit('maxResponseBytes', options.maxResponseBytes, 64 * 1024 * 1024);
    this.maxLineBytes = checkLimit('maxLineBytes', options.maxLineBytes, 16 * 1024 * 1024);
  }

  /** GET `path`; resolves with the parsed JSON. */
  async get(path: string): Promise<unknown> {
    return this.parseJson(await this.request('GET', path, undefined));
  }

  /** POST `body` as JSON to `path`; resolves with the parsed JSON answer. */
  async post(path: string, body: unknown): Promise<unknown> {
    return this.parseJson(await this.request('POST', path, JSON.stringify(body ?? {})));
  }

  /** GET /metrics: the Prometheus text. */
  async metricsText(): Promise<string> {
    const response = await this.request('GET', '/metrics', undefined);
    if (response.statusCode !== 200) this.parseJson(response);
    return response.body;
  }

  /**
   * Streams GET /events: calls `onEvent` with each parsed line as it arrives. Resolves when the
   * server ends the stream (after the current state with `now`; when it closes, or with a last
   * {"kind":"overflow"} line when this reader fell behind) or when `signal` aborts.
   */
  events(onEvent: (event: Record<string, unknown>) => void, options: AdminEventsOptions = {}): Promise<void> {
    if (typeof onEvent !== 'function') throw new TypeError('onEvent must be a function');
    const path = options.now === true ? '/events?now=1' : '/events';
    const signal = options.signal;
    return new Promise((resolve, reject) => {
      if (signal?.aborted === true) {
        resolve();
        return;
      }
      let settled = false;
      const finish = (error?: unknown): void => {
        if (settled) return;
        settled = true;
        signal?.removeEventListener('abort', onAbort);
        if (error === undefined) resolve();
        else reject(error);
      };
      const request = http.request({ ...this.target(), method: 'GET', path, headers: { Accept: 'application/x-ndjson' }, agent: false });
      const onAbort = (): void => {
        finish();
        request.destroy();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      // Only until the response starts: a stream may be quiet for as long as the array is.
      request.setTimeout(this.timeoutMs, () => request.destroy(this.timeoutError()));
      request.once('error', (error) => finish(this.transportError(error)));
      request.once('response', (response) => {
        request.setTimeout(0);
        if (response.statusCode !== 200) {
          this.collect(response).then((raw) => {
            try {
              this.parseJson(raw);
              finish(new AdminResponseError(raw.statusCode, undefined, undefined, `GET ${path} answered HTTP ${raw.statusCode}`));
            } catch (error) {
              finish(error);
            }
          }, finish);
          return;
        }
        const splitter = new LineSplitter(this.maxLineBytes);
        const deliver = (line: string): void => {
          if (line.trim() === '') return;
          let event: unknown;
          try {
            event = JSON.parse(line);
          } catch {
            throw new BlockmirrorError('ERR_ADMIN_RESPONSE', `an /events line is not JSON: ${line.slice(0, 200)}`);
          }
          if (event === null || typeof event !== 'object' || Array.isArray(event)) {
            throw new BlockmirrorError('ERR_ADMIN_RESPONSE', `an /events line is not a JSON object: ${line.slice(0, 200)}`);
          }
          onEvent(event as Record<string, unknown>);
        };
        response.on('data', (chunk: Buffer) => {
          if (settled) return;
          try {
            for (const line of splitter.push(chunk)) deliver(line);
          } catch (error) {
            finish(error);
            request.destroy();
          }
        });
        response.once('end', () => {
          try {
            const rest = splitter.end();
            if (rest !== undefined) deliver(rest);
            finish();
          } catch (error) {
            finish(error);
          }
        });
        response.once('error', (error) => finish(this.transportError(error)));
        response.once('close', () => {
          if (!response.complete) finish(settled ? undefined : new BlockmirrorError('ERR_ADMIN_RESPONSE', 'the /events stream was cut'));
        });
      });
      request.end();
    });
  }

  private target(): http.RequestOptions {
    const address = this.address;
    if (typeof address === 'string') return { socketPath: address };
    if ('socketPath' in address) return { socketPath: address.socketPath };
    return { host: address.host, port: address.port };
  }

  private request(method: 'GET' | 'POST', path: string, body: string | undefined): Promise<RawResponse> {
    if (typeof path !== 'string' || !path.startsWith('/')) throw new TypeError(`path must start with "/", got ${String(path)}`);
    return new Promise((resolve, reject) => {
      const headers: http.OutgoingHttpHeaders = { Accept: 'application/json' };
      if (body !== undefined) {
        headers['Content-Type'] = 'application/json';
        headers['Content-Length'] = Buffer.byteLength(body);
      }
      const request = http.request({ ...this.target(), method, path, headers, agent: false });
      request.setTimeout(this.timeoutMs, () => request.destroy(this.timeoutError()));
      request.once('error', (error) => reject(this.transportError(error)));
      request.once('response', (response) => this.collect(response).then(resolve, reject));
      request.end(body);
    });
  }

  private collect(response: http.IncomingMessage): Promise<RawResponse> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let total = 0;
      response.on('data', (chunk: Buffer) => {
        total += chunk.length;
        if (total > this.maxResponseBytes) {
          response.destroy();
          reject(new BlockmirrorError('ERR_ADMIN_RESPONSE', `the admin endpoint's answer is larger than ${this.maxResponseBytes} bytes`));
          return;
        }
        chunks.push(chunk);
      });
      response.once('end', () => resolve({
        statusCode: response.statusCode ?? 0,
        contentType: String(response.headers['content-type'] ?? ''),
        body: Buffer.concat(chunks).toString('utf8'),
      }));
      response.once('error', (error) => reject(this.transportError(error)));
    });
  }

  /** The parsed JSON of a 2xx answer; an AdminResponseError for an error answer. */
  private parseJson(response: RawResponse): unknown {
    let value: unknown;
    let parsed = false;
    try {
      value = JSON.parse(response.body);
      parsed = true;
    } catch {
      // Reported below, with what came instead.
    }
    if (response.statusCode >= 200 && response.statusCode < 300) {
      if (!parsed) {
        throw new BlockmirrorError('ERR_ADMIN_RESPONSE',
          `the admin endpoint at ${describeAddress(this.address)} answered with something that is not JSON ` +
          `(${response.contentType || 'no content type'}): ${response.body.slice(0, 200)}`);
      }
      return value;
    }
    const error = (value as { error?: { code?: unknown; message?: unknown } } | null)?.error;
    const remoteCode = typeof error?.code === 'string' ? error.code : undefined;
    const remoteMessage = typeof error?.message === 'string' ? error.message : undefined;
    const message = remoteCode !== undefined
      ? `${remoteCode}: ${remoteMessage ?? '(no message)'}`
      : `the admin endpoint answered HTTP ${response.statusCode}: ${response.body.slice(0, 200)}`;
    throw new AdminResponseError(response.statusCode, remoteCode, remoteMessage, message);
  }

  private timeoutError(): BlockmirrorError {
    return new BlockmirrorError('ERR_ADMIN_UNREACHABLE',
      `the admin endpoint at ${describeAddress(this.address)} did not answer within ${this.timeoutMs} ms`);
  }

  private transportError(error: unknown): BlockmirrorError {
    if (error instanceof BlockmirrorError) return error;
    const code = (error as NodeJS.ErrnoException).code;
    const where = describeAddress(this.address);
    if (code === 'ENOENT' || code === 'ECONNREFUSED' || code === 'ENOTSOCK') {
      const hint = typeof this.address === 'string' || 'socketPath' in this.address
        ? 'Start one with `blockmirror serve`, or name the socket of the running one with --admin PATH (or ' +
          'BLOCKMIRROR_ADMIN_SOCKET): a serve listens on the admin.socket of its config, else on ' +
          '$BLOCKMIRROR_ADMIN_SOCKET, else on $XDG_RUNTIME_DIR/blockmirror-<uid>/admin.sock (the temporary ' +
          'directory without XDG_RUNTIME_DIR).'
        : 'Start one with `blockmirror serve` whose config has admin.tcp at that address.';
      return new BlockmirrorError('ERR_ADMIN_UNREACHABLE', `no blockmirror serve answers on ${where} (${code}). ${hint}`,
        { cause: error });
    }
    return new BlockmirrorError('ERR_ADMIN_UNREACHABLE', `cannot reach the admin endpoint at ${where}: ${(error as Error).message}`,
      { cause: error });
  }
}
