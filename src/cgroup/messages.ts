// Notes on the design
// -------------------
// The consistency-group protocol's messages (binary, bounds-checked by BinaryReader: a malformed
// payload from the network only ever raises ERR_LINK_BAD_MESSAGE). Between the master and each
// slave (primary controllers):
//
//   CGROUP_PREPARE request {group, cycle, formed, holdMs} -> {cuts: [{volume, sequence}]}
//                  the slave holds new host write completions, takes the cut (each member's
//                  journal position) and answers ready; it releases the hold by itself after
//                  holdMs (then the cycle cannot form: RUN is answered stale)
//   CGROUP_RUN     request {group, cycle, drainMs} -> {ok, reason, copies, holdings}
//                  held and later writes complete; the slave has each member's pair ship through
//                  its cut and its secondary take the copy at the cut (PAIR_CG_CUT), and answers
//                  once every member has (ok) or one failed or drainMs passed (not ok, reason)
//   CGROUP_RESULT  message {group, cycle, formed, reason, consistencyTimeMs}: the outcome
//
// Between a primary pair and its secondary (the pair protocol, in order with PAIR_RECORDS):
//
//   PAIR_CG_CUT    request {name, group, cycle, formed, through} -> {snapshot, holdings}
//                  sent right after the records through `through` and before any later one, so
//                  the secondary has applied exactly through the cut when it handles it: it takes
//                  the copy `cg.<group>.<cycle>` (a snapshot) and prunes copies older than the
//                  last formed cycle; `holdings` are the cycles it keeps for the group.

import { BinaryReader, BinaryWriter } from '../transport/codec';
import { LinkError } from '../transport/errors';

const MAX_NAME_BYTES = 256;
const MAX_REASON_BYTES = 1024;
/** Most members of one slave in one message. */
export const MAX_MEMBERS_PER_MESSAGE = 256;
/** Most cycles a secondary reports holding for one volume (a volume has at most 32 snapshots). */
export const MAX_HOLDINGS = 64;

/** `text` cut to at most `maxBytes` bytes of UTF-8, on a character boundary. */
export function clipUtf8(text: string, maxBytes: number): string {
  if (Buffer.byteLength(text, 'utf8') <= maxBytes) return text;
  let clipped = Buffer.from(text, 'utf8').subarray(0, maxBytes).toString('utf8');
  while (Buffer.byteLength(clipped, 'utf8') > maxBytes || clipped.endsWith('\uFFFD')) clipped = clipped.slice(0, -1);
  return clipped;
}

function bad(what: string, message: string): never {
  throw new LinkError('ERR_LINK_BAD_MESSAGE', `${what}: ${message}`);
}

function count(reader: BinaryReader, max: number, what: string, field: string): number {
  const value = reader.u32();
  if (value > max) bad(what, `${field}: ${value} entries, at most ${max}`);
  return value;
}

function cycleOf(reader: BinaryReader, what: string): number {
  const cycle = reader.u64();
  if (cycle < 1) bad(what, 'cycle must be >= 1');
  return cycle;
}

export interface Prepare {
  group: string;
  cycle: number;
  /** The last cycle the master formed (0: none known). */
  formed: number;
  holdMs: number;
}

export function encodePrepare(message: Prepare): Buffer {
  return new BinaryWriter().string(message.group).u64(message.cycle).u64(message.formed).u32(message.holdMs).encode();
}

export function decodePrepare(payload: Buffer): Prepare {
  const what = 'CGROUP_PREPARE';
  const reader = new BinaryReader(payload, what);
  const message = { group: reader.string(MAX_NAME_BYTES), cycle: cycleOf(reader, what), formed: reader.u64(), holdMs: reader.u32() };
  reader.end();
  if (message.formed >= message.cycle) bad(what, `formed ${message.formed} is not before cycle ${message.cycle}`);
  if (message.holdMs < 1) bad(what, 'holdMs must be >= 1');
  return message;
}

export interface Cut {
  volume: string;
  sequence: number;
}

export function encodeCuts(cuts: readonly Cut[]): Buffer {
  const writer = new BinaryWriter().u32(cuts.length);
  for (const cut of cuts) writer.string(cut.volume).u64(cut.sequence);
  return writer.encode();
}

export function decodeCuts(payload: Buffer): Cut[] {
  const what = 'CGROUP_PREPARE reply';
  const reader = new BinaryReader(payload, what);
  const n = count(reader, MAX_MEMBERS_PER_MESSAGE, what, 'cuts');
  const cuts: Cut[] = [];
  for (let index = 0; index < n; index++) cuts.push({ volume: reader.string(MAX_NAME_BYTES), sequence: reader.u64() });
  reader.end();
  return cuts;
}

export interface Run {
  group: string;
  cycle: number;
  drainMs: number;
}

export function encodeRun(message: Run): Buffer {
  return new BinaryWriter().string(message.group).u64(message.cycle).u32(message.drainMs).encode();
}

export function decodeRun(payload: Buffer): Run {
  const what = 'CGROUP_RUN';
  const reader = new BinaryReader(payload, what);
  const message = { group: reader.string(MAX_NAME_BYTES), cycle: cycleOf(reader, what), drainMs: reader.u32() };
  reader.end();
  if (message.drainMs < 1) bad(what, 'drainMs must be >= 1');
  return message;
}

/** One member's copy (the snapshot on its secondary) and the cycles that secondary keeps. */
export interface MemberCopy {
  volume: string;
  /** The copy's snapshot name ('' when the member failed). */
  snapshot: string;
  holdings: number[];
}

export interface Drained {
  ok: boolean;
  /** Why not (empty when ok). */
  reason: string;
  members: MemberCopy[];
}

function writeHoldings(writer: BinaryWriter, holdings: readonly number[]): void {
  writer.u32(holdings.length);
  for (const cycle of holdings) writer.u64(cycle);
}

function readHoldings(reader: BinaryReader, what: string): number[] {
  const n = count(reader, MAX_HOLDINGS, what, 'holdings');
  const holdings: number[] = [];
  for (let index = 0; index < n; index++) holdings.push(cycleOf(reader, what));
  return holdings;
}

export function encodeDrained(message: Drained): Buffer {
  const writer = new BinaryWriter().u8(message.ok ? 1 : 0).string(clipUtf8(message.reason, MAX_REASON_BYTES)).u32(message.members.length);
  for (const member of message.members) {
    writer.string(member.volume).string(member.snapshot);
    writeHoldings(writer, member.holdings);
  }
  return writer.encode();
}

export function decodeDrained(payload: Buffer): Drained {
  const what = 'CGROUP_RUN reply';
  const reader = new BinaryReader(payload, what);
  const flag = reader.u8();
  if (flag > 1) bad(what, `ok must be 0 or 1, not ${flag}`);
  const reason = reader.string(MAX_REASON_BYTES);
  const n = count(reader, MAX_MEMBERS_PER_MESSAGE, what, 'members');
  const members: MemberCopy[] = [];
  for (let index = 0; index < n; index++) {
    members.push({ volume: reader.string(MAX_NAME_BYTES), snapshot: reader.string(MAX_NAME_BYTES), holdings: readHoldings(reader, what) });
  }
  reader.end();
  return { ok: flag === 1, reason, members };
}

export interface CycleResult {
  group: string;
  cycle: number;
  formed: boolean;
  reason: string;
  /** Wall time of the cut (ms since the epoch) when formed. */
  consistencyTimeMs: number;
}

export function encodeResult(message: CycleResult): Buffer {
  return new BinaryWriter().string(message.group).u64(message.cycle).u8(message.formed ? 1 : 0)
    .string(clipUtf8(message.reason, MAX_REASON_BYTES)).f64(message.consistencyTimeMs).encode();
}

export function decodeResult(payload: Buffer): CycleResult {
  const what = 'CGROUP_RESULT';
  const reader = new BinaryReader(payload, what);
  const group = reader.string(MAX_NAME_BYTES);
  const cycle = cycleOf(reader, what);
  const flag = reader.u8();
  if (flag > 1) bad(what, `formed must be 0 or 1, not ${flag}`);
  const reason = reader.string(MAX_REASON_BYTES);
  const consistencyTimeMs = reader.f64();
  reader.end();
  if (!Number.isFinite(consistencyTimeMs)) bad(what, 'consistencyTimeMs must be finite');
  return { group, cycle, formed: flag === 1, reason, consistencyTimeMs };
}

export interface CutRequest {
  /** The pair. */
  name: string;
  group: string;
  cycle: number;
  formed: number;
  /** The last journal sequence of the cut. */
  through: number;
}

export function encodeCutRequest(message: CutRequest): Buffer {
  return new BinaryWriter().string(message.name).string(message.group).u64(message.cycle).u64(message.formed).u64(message.through).encode();
}

export function decodeCutRequest(payload: Buffer): CutRequest {
  const what = 'PAIR_CG_CUT';
  const reader = new BinaryReader(payload, what);
  const message = { name: reader.string(MAX_NAME_BYTES), group: reader.string(MAX_NAME_BYTES), cycle: cycleOf(reader, what), formed: reader.u64(), through: reader.u64() };
  reader.end();
  if (message.formed >= message.cycle) bad(what, `formed ${message.formed} is not before cycle ${message.cycle}`);
  return message;
}

export interface CutReply {
  snapshot: string;
  holdings: number[];
}

export function encodeCutReply(message: CutReply): Buffer {
  const writer = new BinaryWriter().string(message.snapshot);
  writeHoldings(writer, message.holdings);
  return writer.encode();
}

export function decodeCutReply(payload: Buffer): CutReply {
  const what = 'PAIR_CG_CUT reply';
  const reader = new BinaryReader(payload, what);
  const message = { snapshot: reader.string(MAX_NAME_BYTES), holdings: readHoldings(reader, what) };
  reader.end();
  return message;
}
