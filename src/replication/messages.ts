// Notes on the design
// -------------------
// The pair protocol's messages, one codec per type (binary, bounds-checked by BinaryReader, so a
// malformed payload from the network only ever raises ERR_LINK_BAD_MESSAGE). Every message
// names its pair; the secondary checks the name against the pairs its own controller declared.
//
//   PAIR_OPEN        request  {name, primaryVolume, secondaryVolume, mode, capacityBytes, blockSize,
//                             generations, discard: the opener's generation ids (generations.ts)
//                             and whether `resolve` told it to give up its data}
//                    response {decision (from the opener's side), rule, nextSequence, applied,
//                             generations, dirty: the byte ranges the answering side changed
//                             since the common generation (a demoted primary's in-flight window,
//                             a split brain's losing side), or all: true for "copy everything"}
//   PAIR_RECORDS     message  {name, records: [{sequence, kind, byteOffset, byteLength, data}]}
//   PAIR_POSITION    message  {name, received, applied, flushed}
//   PAIR_FLUSH       request  {name} -> {flushed}
//   PAIR_TRACK       message  {name, byteOffset, data}: current primary bytes (copy, resync)
//   PAIR_RESYNC_DONE request  {name, nextSequence, generations, consistentAt} -> {}: ordered
//                             records resume there; the target adopts the source's generation,
//                             and is consistent once it has applied through consistentAt
//   PAIR_PROMOTE     request  {name, generations} -> {}: the drained primary hands its role over
//   PAIR_SWITCH      request  {name} -> {}: the secondary asks the primary to hand over
//   PAIR_PROMOTE_GROUP request {group, members: [{name, generations}]} -> {}: the drained primary
//                             of every member of a journal group hands the roles over, all or none
//   PAIR_SWITCH_GROUP  request {group} -> {}: the secondary asks for that handover
//   PAIR_RESOLVE     request  {name, keepSender} -> {}: a split brain's operator decision
//   PAIR_MARKER      request  {name, sequence} -> {flushed}: flush through a lockstep marker
//   PAIR_ERROR       message  {name, code, message}
//   PAIR_GROUP_RECORDS message {group, through, members: [{name, previous}], records: [{member,
//                             sequence, kind, byteOffset, byteLength, data}]}: one batch of a
//                             journal group's shared journal (journal-group.ts), in its one write
//                             order; it covers (previous, through] of every member it lists

import { BinaryReader, BinaryWriter } from '../transport/codec';
import { LinkError } from '../transport/errors';
import { crc32cCombine, crc32cSmall } from '../transport/frame';
import type { Decision, Generations } from './generations';

export type PairMode = 'sync' | 'async';
/** 'marker': a lockstep marker (no data, nothing to apply; it keeps the sequence contiguous). */
export type RecordKind = 'write' | 'zero' | 'trim' | 'marker';

const MODES: readonly PairMode[] = ['sync', 'async'];
const KINDS: readonly RecordKind[] = ['write', 'zero', 'trim', 'marker'];
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
  generations: Generations;
  discard: boolean;
  /** The id of the journal the records come from (0: none); the secondary keeps it with its position. */
  journalId: number;
  /** The oldest and the next sequence of that journal. */
  journalHead: number;
  journalNext: number;
  /** The primary asks to resume ordered streaming from the secondary's position (primary-pair.ts). */
  resume: boolean;
}

/** Most dirty ranges in a PAIR_OPEN reply (more: the reply says "all"). */
export const MAX_DIRTY_RANGES = 65536;
const DECISIONS: readonly Decision[] = ['none', 'bitmap-source', 'bitmap-target', 'full-source', 'full-target', 'split-brain', 'unrelated'];

function writeGenerations(writer: BinaryWriter, generations: Generations): BinaryWriter {
  return writer.u64(generations.current).u64(generations.bitmap).u64(generations.history[0]).u64(generations.history[1]);
}

function readGenerations(reader: BinaryReader): Generations {
  return { current: reader.u64(), bitmap: reader.u64(), history: [reader.u64(), reader.u64()] };
}

export interface ShippedRecord {
  sequence: number;
  kind: RecordKind;
  byteOffset: number;
  byteLength: number;
  data: Buffer;
}

export function encodePairOpen(message: PairOpen): Buffer {
  const writer = new BinaryWriter().string(message.name).string(message.primaryVolume).string(message.secondaryVolume)
    .u8(MODES.indexOf(message.mode)).u64(message.capacityBytes).u32(message.blockSize);
  return writeGenerations(writer, message.generations).u8(message.discard ? 1 : 0)
    .u64(message.journalId).u64(message.journalHead).u64(message.journalNext).u8(message.resume ? 1 : 0).encode();
}

export function decodePairOpen(payload: Buffer): PairOpen {
  const reader = new BinaryReader(payload, 'PAIR_OPEN');
  const name = reader.string(MAX_NAME_BYTES);
  const primaryVolume = reader.string(MAX_NAME_BYTES);
  const secondaryVolume = reader.string(MAX_NAME_BYTES);
  const modeIndex = reader.u8();
  const capacityBytes = reader.u64();
  const blockSize = reader.u32();
  const generations = readGenerations(reader);
  const discard = reader.u8() === 1;
  const journalId = reader.u64();
  const journalHead = reader.u64();
  const journalNext = reader.u64();
  const resume = reader.u8() === 1;
  reader.end();
  const mode = MODES[modeIndex] ?? bad('PAIR_OPEN', `unknown mode ${modeIndex}`);
  if (journalHead > journalNext) bad('PAIR_OPEN', `journal head ${journalHead} is past its next sequence ${journalNext}`);
  return { name, primaryVolume, secondaryVolume, mode, capacityBytes, blockSize, generations, discard, journalId, journalHead, journalNext, resume };
}

/** A byte range. */
export interface ByteRange {
  byteOffset: number;
  byteLength: number;
}

export interface OpenReply {
  /** The decision from the opener's point of view. */
  decision: Decision;
  rule: number;
  nextSequence: number;
  applied: number;
  generations: Generations;
  /** Copy everything allocated (a full copy, or more dirty ranges than a reply carries). */
  all: boolean;
  dirty: ByteRange[];
  /** The secondary resumed ordered streaming at applied + 1 (it stays consistent; no pass). */
  resumed: boolean;
}

export function encodeOpenReply(reply: OpenReply): Buffer {
  const writer = new BinaryWriter().u8(DECISIONS.indexOf(reply.decision)).u8(reply.rule).u64(reply.nextSequence).u64(reply.applied);
  writeGenerations(writer, reply.generations).u8(reply.all ? 1 : 0).u32(reply.dirty.length);
  for (const range of reply.dirty) writer.u64(range.byteOffset).u64(range.byteLength);
  return writer.u8(reply.resumed ? 1 : 0).encode();
}

export function decodeOpenReply(payload: Buffer): OpenReply {
  const reader = new BinaryReader(payload, 'PAIR_OPEN reply');
  const decisionIndex = reader.u8();
  const rule = reader.u8();
  const nextSequence = reader.u64();
  const applied = reader.u64();
  const generations = readGenerations(reader);
  const all = reader.u8() === 1;
  const count = reader.u32();
  if (count > MAX_DIRTY_RANGES) bad('PAIR_OPEN reply', `${count} dirty ranges, more than ${MAX_DIRTY_RANGES}`);
  const dirty: ByteRange[] = [];
  for (let index = 0; index < count; index++) dirty.push({ byteOffset: reader.u64(), byteLength: reader.u64() });
  const resumed = reader.u8() === 1;
  reader.end();
  const decision = DECISIONS[decisionIndex] ?? bad('PAIR_OPEN reply', `unknown decision ${decisionIndex}`);
  // A resume continues the ordered stream: the same generation, or one the primary (the opener,
  // the source) started while the link was down; never with ranges to resync.
  if (resumed && ((decision !== 'none' && decision !== 'bitmap-source') || all || dirty.length > 0)) {
    bad('PAIR_OPEN reply', `a resumed stream with decision ${decision}${all || dirty.length > 0 ? ' and dirty ranges' : ''}`);
  }
  return { decision, rule, nextSequence, applied, generations, all, dirty, resumed };
}

/** PAIR_PROMOTE: {name, generations}. */
export function encodePromote(name: string, generations: Generations): Buffer {
  return writeGenerations(new BinaryWriter().string(name), generations).encode();
}

export function decodePromote(payload: Buffer): { name: string; generations: Generations } {
  const reader = new BinaryReader(payload, 'PAIR_PROMOTE');
  const message = { name: reader.string(MAX_NAME_BYTES), generations: readGenerations(reader) };
  reader.end();
  return message;
}

/** PAIR_PROMOTE_GROUP: a journal group's members, each with the generations it is promoted on. */
export interface GroupPromote {
  group: string;
  members: { name: string; generations: Generations }[];
}

export function encodeGroupPromote(message: GroupPromote): Buffer {
  if (message.members.length === 0 || message.members.length > MAX_GROUP_MEMBERS) {
    throw new RangeError(`a group promotion lists 1 to ${MAX_GROUP_MEMBERS} members, got ${message.members.length}`);
  }
  const writer = new BinaryWriter().string(message.group).u16(message.members.length);
  for (const member of message.members) writeGenerations(writer.string(member.name), member.generations);
  return writer.encode();
}

export function decodeGroupPromote(payload: Buffer): GroupPromote {
  const reader = new BinaryReader(payload, 'PAIR_PROMOTE_GROUP');
  const group = reader.string(MAX_NAME_BYTES);
  const count = reader.u16();
  if (count === 0 || count > MAX_GROUP_MEMBERS) bad('PAIR_PROMOTE_GROUP', `${count} members, not 1 to ${MAX_GROUP_MEMBERS}`);
  const members: GroupPromote['members'] = [];
  const names = new Set<string>();
  for (let index = 0; index < count; index++) {
    const name = reader.string(MAX_NAME_BYTES);
    if (names.has(name)) bad('PAIR_PROMOTE_GROUP', `pair ${JSON.stringify(name)} listed twice`);
    names.add(name);
    members.push({ name, generations: readGenerations(reader) });
  }
  reader.end();
  return { group, members };
}

/** PAIR_MARKER: {name, sequence}. */
export function encodeMarker(name: string, sequence: number): Buffer {
  return new BinaryWriter().string(name).u64(sequence).encode();
}

export function decodeMarker(payload: Buffer): { name: string; sequence: number } {
  const reader = new BinaryReader(payload, 'PAIR_MARKER');
  const message = { name: reader.string(MAX_NAME_BYTES), sequence: reader.u64() };
  reader.end();
  return message;
}

/** PAIR_RESOLVE: {name, keepSender}. */
/**
 * PAIR_RESOLVE: an operator's resolve (keep the sender's data, or the receiver's), or (`query`)
 * a side that discarded its data asking, on connect, whether the peer keeps its own: flag 0
 * keep the receiver's, 1 keep the sender's, 2 the query.
 */
export function encodeResolve(name: string, keepSender: boolean, query = false): Buffer {
  return new BinaryWriter().string(name).u8(query ? 2 : keepSender ? 1 : 0).encode();
}

export function decodeResolve(payload: Buffer): { name: string; keepSender: boolean; query: boolean } {
  const reader = new BinaryReader(payload, 'PAIR_RESOLVE');
  const name = reader.string(MAX_NAME_BYTES);
  const flag = reader.u8();
  reader.end();
  if (flag > 2) bad('PAIR_RESOLVE', `the flag must be 0, 1 or 2, not ${flag}`);
  return { name, keepSender: flag === 1, query: flag === 2 };
}

/** Encodes a batch of records; the data is copied once, into the message. */
export function encodeRecords(name: string, records: readonly ShippedRecord[]): Buffer {
  // The hot path of shipping: one allocation, fields written in place (the same layout
  // BinaryWriter would produce: u16-prefixed name, u32 count, then per record u64 sequence,
  // u8 kind, u64 byteOffset, u32 byteLength, u32-prefixed data).
  const nameBytes = Buffer.from(name, 'utf8');
  if (nameBytes.length > MAX_NAME_BYTES) throw new RangeError(`pair name longer than ${MAX_NAME_BYTES} bytes`);
  let total = 2 + nameBytes.length + 4;
  for (const record of records) total += 8 + 1 + 8 + 4 + 4 + record.data.length;
  const out = Buffer.allocUnsafe(total);
  let at = out.writeUInt16BE(nameBytes.length, 0);
  at += nameBytes.copy(out, at);
  at = out.writeUInt32BE(records.length, at);
  for (const record of records) at = writeRecord(out, record, at);
  return out;
}

/** One record as PAIR_RECORDS and PAIR_GROUP_RECORDS carry it (RECORD_HEADER_BYTES, then the data). */
function writeRecord(out: Buffer, record: ShippedRecord, at: number): number {
  at = writeU64(out, record.sequence, at);
  at = out.writeUInt8(KINDS.indexOf(record.kind), at);
  at = writeU64(out, record.byteOffset, at);
  at = out.writeUInt32BE(record.byteLength, at);
  at = out.writeUInt32BE(record.data.length, at);
  return at + record.data.copy(out, at);
}

/** Reads what writeRecord wrote, with the checks every record gets (`what` names the message). */
function readRecord(reader: BinaryReader, maxDataBytes: number, what: string): ShippedRecord {
  const sequence = reader.u64();
  const kindIndex = reader.u8();
  const byteOffset = reader.u64();
  const byteLength = reader.u32();
  const data = reader.bytes(maxDataBytes);
  const kind = KINDS[kindIndex] ?? bad(what, `unknown record kind ${kindIndex}`);
  if (kind === 'write' && data.length !== byteLength) bad(what, 'write data length differs from byteLength');
  if (kind !== 'write' && data.length !== 0) bad(what, `a ${kind} record carries data`);
  if (kind === 'marker' && (byteLength !== 0 || byteOffset !== 0)) bad(what, 'a marker record describes bytes');
  return { sequence, kind, byteOffset, byteLength, data };
}

/** Bytes before each record's data in PAIR_RECORDS: u64 sequence, u8 kind, u64 byteOffset, u32 byteLength, u32 data length. */
export const RECORD_HEADER_BYTES = 25;

/** The journal's record kinds by number (storage/journal.ts), as PAIR_RECORDS kind indexes (-1: not shipped as such). */
const WIRE_KIND_OF_JOURNAL_KIND: readonly number[] = [-1, ...(['write', 'zero', 'trim', 'marker'] as const).map((kind) => (KINDS as readonly string[]).indexOf(kind))];

/** Bytes of a PAIR_RECORDS message before its first record: u16-prefixed name and u32 count. */
export function recordsPrefixBytes(nameBytes: Buffer): number {
  return 2 + nameBytes.length + 4;
}

/** recordsPrefixBytes of the longest pair name. */
export const MAX_RECORDS_PREFIX_BYTES = 2 + MAX_NAME_BYTES + 4;

/**
 * Turns records the journal read with Journal.readPacked (prefixBytes =
 * recordsPrefixBytes(nameBytes), gapBytes = RECORD_HEADER_BYTES) into a PAIR_RECORDS message in
 * place, byte for byte what encodeRecords makes of the same records, without copying the data
 * again. Returns null when a record's kind has no PAIR_RECORDS kind (the caller takes the
 * copying path). `crc` is the message's CRC32C, made without reading the data: the headers are
 * summed here and each record's data CRC, the one it was appended with, is combined in
 * (transport/frame.ts crc32cCombine), so the link need not read the payload again. A copy that
 * no longer matches its CRC (readPacked with verify false does not look) makes the receiver
 * refuse the frame: the check runs end to end, from the append to the secondary.
 */
export function packRecords(nameBytes: Buffer, fields: Float64Array, buffer: Buffer, usedBytes: number): { message: Buffer; crc: number } | null {
  if (nameBytes.length > MAX_NAME_BYTES) throw new RangeError(`pair name longer than ${MAX_NAME_BYTES} bytes`);
  const count = fields.length / 8;
  let at = buffer.writeUInt16BE(nameBytes.length, 0);
  at += nameBytes.copy(buffer, at);
  at = buffer.writeUInt32BE(count, at);
  let crc = crc32cSmall(buffer, 0, at, 0);
  for (let index = 0; index < count; index++) {
    const f = index * 8;
    const kind = WIRE_KIND_OF_JOURNAL_KIND[fields[f + 3] as number] ?? -1;
    if (kind < 0) return null;
    const dataAt = fields[f + 6] as number;
    const dataBytes = fields[f + 7] as number;
    const start = dataAt - RECORD_HEADER_BYTES;
    if (start !== at) throw new Error(`packRecords: record ${index} starts at ${start}, not at ${at} (readPacked layout)`);
    let header = writeU64(buffer, fields[f] as number, start);
    header = buffer.writeUInt8(kind, header);
    header = writeU64(buffer, fields[f + 1] as number, header);
    header = buffer.writeUInt32BE(fields[f + 2] as number, header);
    buffer.writeUInt32BE(dataBytes, header);
    crc = crc32cCombine(crc32cSmall(buffer, start, dataAt, crc), fields[f + 5] as number, dataBytes);
    at = dataAt + dataBytes;
  }
  if (at !== usedBytes) throw new Error(`packRecords: records end at ${at}, readPacked used ${usedBytes}`);
  return { message: buffer.subarray(0, usedBytes), crc };
}

function writeU64(out: Buffer, value: number, at: number): number {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`u64 field must be a safe non-negative integer, got ${value}`);
  out.writeUInt32BE(Math.floor(value / 2 ** 32), at);
  return out.writeUInt32BE(value >>> 0, at + 4);
}

export function decodeRecords(payload: Buffer, maxDataBytes: number): { name: string; records: ShippedRecord[] } {
  const reader = new BinaryReader(payload, 'PAIR_RECORDS');
  const name = reader.string(MAX_NAME_BYTES);
  const count = reader.u32();
  if (count > MAX_RECORDS_PER_MESSAGE) bad('PAIR_RECORDS', `${count} records, more than ${MAX_RECORDS_PER_MESSAGE}`);
  const records: ShippedRecord[] = [];
  for (let index = 0; index < count; index++) records.push(readRecord(reader, maxDataBytes, 'PAIR_RECORDS'));
  reader.end();
  return { name, records };
}

/** Most member pairs a PAIR_GROUP_RECORDS message lists (the most pairs a journal group holds). */
export const MAX_GROUP_MEMBERS = 64;

/** A member pair of a PAIR_GROUP_RECORDS batch: the batch covers its records in (previous, through]. */
export interface GroupMemberWindow {
  name: string;
  previous: number;
}

/** A record of a PAIR_GROUP_RECORDS batch; `member` indexes the batch's member list. */
export interface GroupRecord extends ShippedRecord {
  member: number;
}

export interface GroupRecords {
  group: string;
  /** The last journal sequence the batch covers (records of other volumes and markers included). */
  through: number;
  members: GroupMemberWindow[];
  records: GroupRecord[];
}

/** Encodes a journal group's batch; the data is copied once, into the message. */
export function encodeGroupRecords(batch: GroupRecords): Buffer {
  if (batch.members.length > MAX_GROUP_MEMBERS) throw new RangeError(`a group batch lists at most ${MAX_GROUP_MEMBERS} members`);
  if (batch.records.length > MAX_RECORDS_PER_MESSAGE) throw new RangeError(`a group batch holds at most ${MAX_RECORDS_PER_MESSAGE} records`);
  const writer = new BinaryWriter().string(batch.group).u64(batch.through).u16(batch.members.length);
  for (const member of batch.members) writer.string(member.name).u64(member.previous);
  const head = writer.u32(batch.records.length).encode();
  let total = head.length;
  for (const record of batch.records) total += GROUP_RECORD_HEADER_BYTES + record.data.length;
  const out = Buffer.allocUnsafe(total);
  let at = head.copy(out, 0);
  for (const record of batch.records) {
    if (record.kind === 'marker') throw new RangeError('a group batch covers markers, it does not carry them');
    at = writeRecord(out, record, out.writeUInt16BE(record.member, at));
  }
  return out;
}

/** Bytes before each record's data in PAIR_GROUP_RECORDS: u16 member, then as PAIR_RECORDS. */
const GROUP_RECORD_HEADER_BYTES = 2 + RECORD_HEADER_BYTES;

/**
 * Decodes PAIR_GROUP_RECORDS. The structure is checked here (ERR_LINK_BAD_MESSAGE); what the
 * positions mean (a gap, a repeat, a record outside its member's window) is the secondary's.
 */
export function decodeGroupRecords(payload: Buffer, maxDataBytes: number): GroupRecords {
  const reader = new BinaryReader(payload, 'PAIR_GROUP_RECORDS');
  const group = reader.string(MAX_NAME_BYTES);
  const through = reader.u64();
  const memberCount = reader.u16();
  if (memberCount > MAX_GROUP_MEMBERS) bad('PAIR_GROUP_RECORDS', `${memberCount} members, more than ${MAX_GROUP_MEMBERS}`);
  const members: GroupMemberWindow[] = [];
  for (let index = 0; index < memberCount; index++) members.push({ name: reader.string(MAX_NAME_BYTES), previous: reader.u64() });
  const count = reader.u32();
  if (count > MAX_RECORDS_PER_MESSAGE) bad('PAIR_GROUP_RECORDS', `${count} records, more than ${MAX_RECORDS_PER_MESSAGE}`);
  const records: GroupRecord[] = [];
  for (let index = 0; index < count; index++) {
    const member = reader.u16();
    const record = readRecord(reader, maxDataBytes, 'PAIR_GROUP_RECORDS');
    if (member >= memberCount) bad('PAIR_GROUP_RECORDS', `record for member ${member} of ${memberCount}`);
    if (record.kind === 'marker') bad('PAIR_GROUP_RECORDS', 'a group batch carries no marker records');
    records.push({ ...record, member });
  }
  reader.end();
  return { group, through, members, records };
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

/**
 * PAIR_RESYNC_DONE: {name, nextSequence, generations, consistentAt}. `consistentAt` is the
 * journal's last sequence when the pass read its last track: the target's image is a
 * consistent one only once it has applied through it (tracks may hold writes up to there).
 */
export function encodeResyncDone(name: string, nextSequence: number, generations: Generations, consistentAt: number): Buffer {
  return writeGenerations(new BinaryWriter().string(name).u64(nextSequence), generations).u64(consistentAt).encode();
}

export function decodeResyncDone(payload: Buffer): { name: string; nextSequence: number; generations: Generations; consistentAt: number } {
  const reader = new BinaryReader(payload, 'PAIR_RESYNC_DONE');
  const done = { name: reader.string(MAX_NAME_BYTES), nextSequence: reader.u64(), generations: readGenerations(reader), consistentAt: reader.u64() };
  reader.end();
  if (done.consistentAt + 1 < done.nextSequence) bad('PAIR_RESYNC_DONE', `consistentAt ${done.consistentAt} is before the resume point ${done.nextSequence}`);
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
