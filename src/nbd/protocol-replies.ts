// Notes on the design
// -------------------
// The transmission phase of the NBD wire format, server to client: simple reply headers and
// structured reply chunks (OFFSET_DATA, OFFSET_HOLE, NONE, ERROR, BLOCK_STATUS). Each encoder
// writes into a caller's buffer at a position and returns the end, so the server (replies.ts,
// transmission.ts) can lay several replies into one send buffer without allocating; the
// *Bytes helpers give the size to reserve first.
//
// Invariants: the caller reserves the bytes the matching *Bytes helper names (the encoders do
// not check room); cookies are echoed back as the two u32 halves the request carried; ERROR
// messages are at most the spec's 4096 bytes (truncatedUtf8 in protocol-bytes.ts).

import {
  NBD_REPLY_FLAG_DONE,
  NBD_REPLY_TYPE_BLOCK_STATUS,
  NBD_REPLY_TYPE_ERROR,
  NBD_REPLY_TYPE_NONE,
  NBD_REPLY_TYPE_OFFSET_DATA,
  NBD_REPLY_TYPE_OFFSET_HOLE,
  NBD_SIMPLE_REPLY_HEADER_BYTES,
  NBD_SIMPLE_REPLY_MAGIC,
  NBD_STRUCTURED_REPLY_HEADER_BYTES,
  NBD_STRUCTURED_REPLY_MAGIC,
} from './protocol-constants';
import { writeUInt64BE } from './protocol-bytes';

/** Simple reply header (16 bytes); READ data, if any, follows. */
export function writeSimpleReply(target: Buffer, at: number, errno: number, cookieHigh: number, cookieLow: number): number {
  target.writeUInt32BE(NBD_SIMPLE_REPLY_MAGIC, at);
  target.writeUInt32BE(errno, at + 4);
  target.writeUInt32BE(cookieHigh, at + 8);
  target.writeUInt32BE(cookieLow, at + 12);
  return at + NBD_SIMPLE_REPLY_HEADER_BYTES;
}

/** Structured reply chunk header (20 bytes); `payloadBytes` of payload follow. */
export function writeChunkHeader(
  target: Buffer,
  at: number,
  flags: number,
  type: number,
  cookieHigh: number,
  cookieLow: number,
  payloadBytes: number,
): number {
  target.writeUInt32BE(NBD_STRUCTURED_REPLY_MAGIC, at);
  target.writeUInt16BE(flags, at + 4);
  target.writeUInt16BE(type, at + 6);
  target.writeUInt32BE(cookieHigh, at + 8);
  target.writeUInt32BE(cookieLow, at + 12);
  target.writeUInt32BE(payloadBytes, at + 16);
  return at + NBD_STRUCTURED_REPLY_HEADER_BYTES;
}

/** Bytes of an OFFSET_DATA chunk before its data (header + u64 offset). */
export const OFFSET_DATA_PREFIX_BYTES = NBD_STRUCTURED_REPLY_HEADER_BYTES + 8;
export const OFFSET_HOLE_CHUNK_BYTES = NBD_STRUCTURED_REPLY_HEADER_BYTES + 12;

/** OFFSET_DATA header and offset; the caller puts `dataBytes` of data at the returned position. */
export function writeOffsetDataPrefix(
  target: Buffer,
  at: number,
  flags: number,
  cookieHigh: number,
  cookieLow: number,
  offset: number,
  dataBytes: number,
): number {
  const position = writeChunkHeader(target, at, flags, NBD_REPLY_TYPE_OFFSET_DATA, cookieHigh, cookieLow, 8 + dataBytes);
  writeUInt64BE(target, offset, position);
  return position + 8;
}

/** OFFSET_HOLE chunk (32 bytes). */
export function writeOffsetHole(
  target: Buffer,
  at: number,
  flags: number,
  cookieHigh: number,
  cookieLow: number,
  offset: number,
  holeBytes: number,
): number {
  const position = writeChunkHeader(target, at, flags, NBD_REPLY_TYPE_OFFSET_HOLE, cookieHigh, cookieLow, 12);
  writeUInt64BE(target, offset, position);
  target.writeUInt32BE(holeBytes, position + 8);
  return position + 12;
}

/** NONE chunk with DONE (20 bytes). */
export function writeNoneChunk(target: Buffer, at: number, cookieHigh: number, cookieLow: number): number {
  return writeChunkHeader(target, at, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, cookieHigh, cookieLow, 0);
}

/** Bytes of an ERROR chunk carrying `messageBytes` of message. */
export function errorChunkBytes(messageBytes: number): number {
  return NBD_STRUCTURED_REPLY_HEADER_BYTES + 6 + messageBytes;
}

/** ERROR chunk: u32 error, u16 message length, message (ASCII/UTF-8, at most 4096 bytes). */
export function writeErrorChunk(
  target: Buffer,
  at: number,
  flags: number,
  cookieHigh: number,
  cookieLow: number,
  errno: number,
  message: Buffer,
): number {
  const position = writeChunkHeader(target, at, flags, NBD_REPLY_TYPE_ERROR, cookieHigh, cookieLow, 6 + message.length);
  target.writeUInt32BE(errno, position);
  target.writeUInt16BE(message.length, position + 4);
  message.copy(target, position + 6);
  return position + 6 + message.length;
}

/** One block status descriptor. */
export interface BlockStatusExtent {
  byteLength: number;
  flags: number;
}

/** Bytes of a BLOCK_STATUS chunk with `extentCount` descriptors. */
export function blockStatusChunkBytes(extentCount: number): number {
  return NBD_STRUCTURED_REPLY_HEADER_BYTES + 4 + 8 * extentCount;
}

/** BLOCK_STATUS chunk: u32 context id, then (u32 length, u32 flags) per extent. */
export function writeBlockStatusChunk(
  target: Buffer,
  at: number,
  flags: number,
  cookieHigh: number,
  cookieLow: number,
  contextId: number,
  extents: readonly BlockStatusExtent[],
): number {
  let position = writeChunkHeader(
    target,
    at,
    flags,
    NBD_REPLY_TYPE_BLOCK_STATUS,
    cookieHigh,
    cookieLow,
    4 + 8 * extents.length,
  );
  target.writeUInt32BE(contextId >>> 0, position);
  position += 4;
  for (const extent of extents) {
    target.writeUInt32BE(extent.byteLength, position);
    target.writeUInt32BE(extent.flags >>> 0, position + 4);
    position += 8;
  }
  return position;
}
