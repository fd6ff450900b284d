// The data the crash writer stores, shared by the writer (crasher.ts) and the checker
// (31.crash.test.ts). Each chunk is written in pieces; every piece starts with its round and
// chunk number, so a reader can tell which round a piece came from and check the rest of it.

import { pattern } from '../../helpers/storage';

export const CHUNK_BYTES = 64 * 1024;
/** Piece boundaries inside a chunk: unequal sizes, so batches of different writes are exercised. */
export const PIECES = [0, 4096, 20480, 40960, CHUNK_BYTES] as const;

export function chunkData(chunk: number, round: number): Buffer {
  const byteOffset = chunk * CHUNK_BYTES;
  const data = pattern(round * 1000 + chunk, byteOffset, CHUNK_BYTES);
  for (let p = 0; p + 1 < PIECES.length; p++) {
    data.writeUInt32LE(round, PIECES[p] as number);
    data.writeUInt32LE(chunk, (PIECES[p] as number) + 4);
  }
  return data;
}

/** The round a piece says it belongs to, if the whole piece is that round's data; else undefined (torn). */
export function pieceRound(chunk: number, piece: number, bytes: Buffer): number | undefined {
  const round = bytes.readUInt32LE(0);
  if (bytes.readUInt32LE(4) !== chunk) return undefined;
  const expected = chunkData(chunk, round).subarray(PIECES[piece] as number, PIECES[piece + 1] as number);
  return bytes.equals(expected) ? round : undefined;
}
