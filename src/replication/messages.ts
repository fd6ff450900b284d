// Notes on the design
// -------------------
// The pair protocol's messages, one codec per type (binary, bounds-checked by BinaryReader, so a
// malformed payload from the network only ever raises ERR_LINK_BAD_MESSAGE). Every message
// names its pair; the secondary checks the name against the pairs its own controller declared.
//
//   PAIR_OPEN        request  {name, primaryVolume, secondaryVolume, mode, capacityBytes, blockSize,
//                             firstCopy: the primary has not mirrored this pair since it started}
//                    response {nextSequence, applied, synced}: where the secondary's ordered stream
//                    stands, and whether its image ever completed a copy (a restarted secondary
//                    did not: it gets a full copy, never a resync of dirty tracks only)
//   PAIR_RECORDS     message  {name, records: [{sequence, kind, byteOffset, byteLength, data}]}
//   PAIR_POSITION    message  {name, received, applied, flushed}
//   PAIR_FLUSH       request  {name} -> {flushed}
//   PAIR_TRACK       message  {name, byteOffset, data}: current primary bytes (copy, resync)
//   PAIR_RESYNC_DONE request  {name, nextSequence} -> {}: ordered records resume there
//   PAIR_ERROR       message  {name, code, message}

import { BinaryReader, BinaryWriter } from '../transport/codec';
import { LinkError } from '../transport/errors';

export type PairMode = 'sync' | 'async';
export type RecordKind = 'write' | 'zero' | 'trim';

const MODES: readonly PairMode[] = ['sync', 'async'];
const KINDS: readonly RecordKind[] = ['write', 'zero', 'trim'];
/** Most records in one PAIR_RECORDS message. */
export const MAX_RECORDS_PER_MESSAGE = 4096;
const MAX_NAME_BYTES = 256;

function bad(what: string, message: string): never {
  throw new LinkError('ERR_LINK_BAD_MESSAGE', `${what}: ${message}`);
}

export interface PairOpen {
  name: string;
  primaryVolume: string;
  secondaryVolume: string;
  mode: PairMode;
  capacityBytes: number;
  blockSize: number;
  firstCopy: boolean;
}

export interface ShippedRecord {
  sequence: number;
  kind: RecordKind;
  byteOffset: number;
  byteLength: number;
  data: Buffer;
}

export function encodePairOpen(message: PairOpen): Buffer {
  return new BinaryWriter().string(message.name).string(message.primaryVolume).string(message.secondaryVolume)
    .u8(MODES.indexOf(message.mode)).u64(message.capacityBytes).u32(message.blockSize).u8(message.firstCopy ? 1 : 0).encode();
}

export function decodePairOpen(payload: Buffer): PairOpen {
  const reader = new BinaryReader(payload, 'PAIR_OPEN');
  const name = reader.string(MAX_NAME_BYTES);
  const primaryVolume = reader.string(MAX_NAME_BYTES);
  const secondaryVolume = reader.string(MAX_NAME_BYTES);
  const modeIndex = reader.u8();
  const capacityBytes = reader.u64();
  const blockSize = reader.u32();
  const firstCopy = reader.u8() === 1;
  reader.end();
  const mode = MODES[modeIndex] ?? bad('PAIR_OPEN', `unknown mode ${modeIndex}`);
  return { name, primaryVolume, secondaryVolume, mode, capacityBytes, blockSize, firstCopy };
}

export interface OpenReply {
  nextSequence: number;
  applied: number;
  synced: boolean;
}

export function encodeOpenReply(reply: OpenReply): Buffer {
  return new BinaryWriter().u64(reply.nextSequence).u64(reply.applied).u8(reply.synced ? 1 : 0).encode();
}

export function decodeOpenReply(payload: Buffer): OpenReply {
  const reader = new BinaryReader(payload, 'PAIR_OPEN reply');
  const reply = { nextSequence: reader.u64(), applied: reader.u64(), synced: reader.u8() === 1 };
  reader.end();
  return reply;
}

/** Encodes a batch of records; the data is copied once, into the message. */
export function encodeRecords(name: string, records: readonly ShippedRecord[]): Buffer {
  const writer = new BinaryWriter().string(name).u32(records.length);
  for (const record of records) {
    writer.u64(record.sequence).u8(KINDS.indexOf(record.kind)).u64(record.byteOffset).u32(record.byteLength).bytes(record.data);
  }
  return writer.encode();
}

export function decodeRecords(payload: Buffer, maxDataBytes: number): { name: string; records: ShippedRecord[] } {
  const reader = new BinaryReader(payload, 'PAIR_RECORDS');
  const name = reader.string(MAX_NAME_BYTES);
  const count = reader.u32();
  if (count > MAX_RECORDS_PER_MESSAGE) bad('PAIR_RECORDS', `${count} records, more than ${MAX_RECORDS_PER_MESSAGE}`);
  const records: ShippedRecord[] = [];
  for (let index = 0; index < count; index++) {
    const sequence = reader.u64();
    const kindIndex = reader.u8();
    const byteOffset = reader.u64();
    const byteLength = reader.u32();
    const data = reader.bytes(maxDataBytes);
    const kind = KINDS[kindIndex] ?? bad('PAIR_RECORDS', `unknown record kind ${kindIndex}`);
    if (kind === 'write' && data.length !== byteLength) bad('PAIR_RECORDS', 'write data length differs from byteLength');
    if (kind !== 'write' && data.length !== 0) bad('PAIR_RECORDS', `a ${kind} record carries data`);
    records.push({ sequence, kind, byteOffset, byteLength, data });
  }
  reader.end();
  return { name, records };
}

export interface PairPosition {
  name: string;
  received: number;
  applied: number;
  flushed: number;
}

export function encodePosition(position: PairPosition): Buffer {
  return new BinaryWriter().string(position.name).u64(position.received).u64(position.applied).u64(position.flushed).encode();
}

export function decodePosition(payload: Buffer): PairPosition {
  const reader = new BinaryReader(payload, 'PAIR_POSITION');
  const position = { name: reader.string(MAX_NAME_BYTES), received: reader.u64(), applied: reader.u64(), flushed: reader.u64() };
  reader.end();
  return position;
}

export function encodeName(name: string): Buffer {
  return new BinaryWriter().string(name).encode();
}

export function decodeName(payload: Buffer, what: string): string {
  const reader = new BinaryReader(payload, what);
  const name = reader.string(MAX_NAME_BYTES);
  reader.end();
  return name;
}

export function encodeSequence(sequence: number): Buffer {
  return new BinaryWriter().u64(sequence).encode();
}

export function decodeSequence(payload: Buffer, what: string): number {
  const reader = new BinaryReader(payload, what);
  const sequence = reader.u64();
  reader.end();
  return sequence;
}

export function encodeTrack(name: string, byteOffset: number, data: Buffer): Buffer {
  return new BinaryWriter().string(name).u64(byteOffset).bytes(data).encode();
}

export function decodeTrack(payload: Buffer, maxDataBytes: number): { name: string; byteOffset: number; data: Buffer } {
  const reader = new BinaryReader(payload, 'PAIR_TRACK');
  const track = { name: reader.string(MAX_NAME_BYTES), byteOffset: reader.u64(), data: reader.bytes(maxDataBytes) };
  reader.end();
  return track;
}

export function encodeResyncDone(name: string, nextSequence: number): Buffer {
  return new BinaryWriter().string(name).u64(nextSequence).encode();
}

export function decodeResyncDone(payload: Buffer): { name: string; nextSequence: number } {
  const reader = new BinaryReader(payload, 'PAIR_RESYNC_DONE');
  const done = { name: reader.string(MAX_NAME_BYTES), nextSequence: reader.u64() };
  reader.end();
  return done;
}

export function encodePairError(name: string, code: string, message: string): Buffer {
  return new BinaryWriter().string(name).string(code.slice(0, 64)).string(message.slice(0, 1000)).encode();
}

export function decodePairError(payload: Buffer): { name: string; code: string; message: string } {
  const reader = new BinaryReader(payload, 'PAIR_ERROR');
  const error = { name: reader.string(MAX_NAME_BYTES), code: reader.string(64), message: reader.string() };
  reader.end();
  return error;
}
