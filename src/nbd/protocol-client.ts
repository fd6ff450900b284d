// Notes on the design
// -------------------
// The client side of the NBD wire format, as the tests and the test client (test/helpers/
// nbd-client.ts) need it: requests, options and option data, each encoded into a fresh buffer.
// These allocate, so they stay off the server's paths (cold paths and tests only); they are the
// mirror image of the decoders in protocol-handshake.ts and protocol-requests.ts, and property
// tests feed their output to those decoders split at arbitrary points.

import {
  NBD_OPTION_HEADER_BYTES,
  NBD_OPTS_MAGIC_HIGH,
  NBD_OPTS_MAGIC_LOW,
  NBD_REQUEST_HEADER_BYTES,
  NBD_REQUEST_MAGIC,
} from './protocol-constants';
import type { NbdRequest } from './protocol-requests';

/** A request as a client sends it (tests and the test client). */
export function encodeRequest(
  type: number,
  flags: number,
  cookie: bigint,
  offset: bigint | number,
  length: number,
  payload?: Uint8Array,
): Buffer {
  const body = payload ?? new Uint8Array(0);
  const buffer = Buffer.allocUnsafe(NBD_REQUEST_HEADER_BYTES + body.length);
  buffer.writeUInt32BE(NBD_REQUEST_MAGIC, 0);
  buffer.writeUInt16BE(flags, 4);
  buffer.writeUInt16BE(type, 6);
  buffer.writeBigUInt64BE(BigInt.asUintN(64, cookie), 8);
  buffer.writeBigUInt64BE(BigInt.asUintN(64, BigInt(offset)), 16);
  buffer.writeUInt32BE(length >>> 0, 24);
  buffer.set(body, NBD_REQUEST_HEADER_BYTES);
  return buffer;
}

/** An option as a client sends it. */
export function encodeOption(option: number, data: Uint8Array = new Uint8Array(0)): Buffer {
  const buffer = Buffer.allocUnsafe(NBD_OPTION_HEADER_BYTES + data.length);
  buffer.writeUInt32BE(NBD_OPTS_MAGIC_HIGH, 0);
  buffer.writeUInt32BE(NBD_OPTS_MAGIC_LOW, 4);
  buffer.writeUInt32BE(option >>> 0, 8);
  buffer.writeUInt32BE(data.length, 12);
  buffer.set(data, NBD_OPTION_HEADER_BYTES);
  return buffer;
}

/** NBD_OPT_INFO / NBD_OPT_GO data. */
export function encodeInfoRequestData(exportName: string, infoTypes: readonly number[] = []): Buffer {
  const name = Buffer.from(exportName, 'utf8');
  const data = Buffer.allocUnsafe(4 + name.length + 2 + 2 * infoTypes.length);
  data.writeUInt32BE(name.length, 0);
  name.copy(data, 4);
  data.writeUInt16BE(infoTypes.length, 4 + name.length);
  infoTypes.forEach((infoType, i) => data.writeUInt16BE(infoType, 4 + name.length + 2 + 2 * i));
  return data;
}

/** NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT data. */
export function encodeMetaContextRequestData(exportName: string, queries: readonly string[]): Buffer {
  const parts: Buffer[] = [];
  const name = Buffer.from(exportName, 'utf8');
  const head = Buffer.allocUnsafe(4);
  head.writeUInt32BE(name.length, 0);
  parts.push(head, name);
  const count = Buffer.allocUnsafe(4);
  count.writeUInt32BE(queries.length, 0);
  parts.push(count);
  for (const query of queries) {
    const bytes = Buffer.from(query, 'utf8');
    const length = Buffer.allocUnsafe(4);
    length.writeUInt32BE(bytes.length, 0);
    parts.push(length, bytes);
  }
  return Buffer.concat(parts);
}

/** The 64-bit cookie of a request as a bigint. */
export function cookieOf(request: Pick<NbdRequest, 'cookieHigh' | 'cookieLow'>): bigint {
  return (BigInt(request.cookieHigh) << 32n) | BigInt(request.cookieLow);
}
