// Notes on the design
// -------------------
// A Journal is a bounded, ordered ring of write records in a region of its own: the TypeScript
// face of bm::Journal (native/core/journal.hpp). Sequences start at 1, increase by one per record
// and are never reused, not even across release() and reopen. append() never overwrites an
// unreleased record: when the ring is full it returns 0 and the caller falls back to its bitmap;
// release(sequence) frees every record up to that sequence. A shared or file journal outlives its
// process and reopens at the cursors it had (a record torn by a crash is cut off).
//
// read() returns copies (`data` is a Buffer the caller owns); asking for a released sequence is
// ERR_JOURNAL_RELEASED, one not yet written ERR_JOURNAL_NOT_YET, exactly nextSequence an empty
// batch. Checksums are verified on the way out (ERR_JOURNAL_CHECKSUM means damaged memory).
//
// Ownership: close() releases the mapping and detaches the journal from every volume of this
// process it is attached to; later calls throw ERR_JOURNAL_CLOSED; a second close() is a no-op. One
// process appends to a journal at a time.

import { BlockmirrorError } from '../errors';
import { addon, NativeJournal, NativeRecordKind, NativeRegionKind } from '../native';
import {
  checkBytes,
  checkIndex,
  checkIntegerIn,
  checkObject,
  checkOneOf,
  checkOptions,
  checkPath,
  namedTarget,
  sharedRegionName,
  closedError,
  describe,
  orDefault,
} from './validate';

export type JournalRecordKind = 'write' | 'zero' | 'trim' | 'marker';
export type JournalKind = 'anonymous' | 'shared' | 'file';

/** One record as read back. */
export interface JournalRecord {
  sequence: number;
  volumeId: bigint;
  byteOffset: number;
  byteLength: number;
  kind: JournalRecordKind;
  flags: number;
  /** crc32c of data; 0 when the record has none. */
  dataCrc: number;
  /** A copy of the payload; empty when none. */
  data: Buffer;
}

/** A record to append. */
export interface JournalAppendRecord {
  /** Record kind. @default 'write' */
  kind?: JournalRecordKind;
  /** Volume the record belongs to (u64). @default 0n */
  volumeId?: bigint;
  byteOffset: number;
  /** Bytes the record describes (u32). @default data.byteLength, or 0 without data */
  byteLength?: number;
  /** Payload, at most maxRecordBytes. @default none */
  data?: Uint8Array;
  /** Caller-defined flags (u16). @default 0 */
  flags?: number;
}

/** Options of Journal.create. */
export interface JournalCreateOptions {
  /** Ring bytes, at least 64 KiB. @default 67108864 (64 MiB) */
  capacityBytes?: number;
  /** Largest payload of one record, at most capacityBytes / 4. @default 4194304 (4 MiB) */
  maxRecordBytes?: number;
  /** Backing of the ring. @default 'anonymous' */
  kind?: JournalKind;
  /** Shared: the journal name (the region is blockmirror.journal.<name>). @default undefined */
  name?: string;
  /** File: the path. @default undefined */
  path?: string;
  /** The journal's identity, an integer in [0, 2^53) kept across reopen (0: none). @default 0 */
  id?: number;
}

/** A write of a crashed writer that may be in the store without a record (Journal.pendingIntents). */
export interface JournalIntent {
  volumeId: bigint;
  byteOffset: number;
  byteLength: number;
  kind: 'write' | 'zero' | 'trim';
}

/** Options of Journal.read. */
export interface JournalReadOptions {
  /** Most records to return, 1..65536. @default 256 */
  maxRecords?: number;
  /** Most payload bytes to return (one record is returned even if it alone is larger). @default 4194304 */
  maxBytes?: number;
}

export interface JournalStats {
  headSequence: number;
  nextSequence: number;
  recordCount: number;
  usedBytes: number;
  capacityBytes: number;
  maxRecordBytes: number;
  appendCount: number;
  fullCount: number;
}

/** Internal: the native handle of an open journal. */
export const kNativeHandle = Symbol('blockmirror.Journal.native');
/** Internal: volumes tell a journal they attached it so its close() can detach them. */
export const kAttached = Symbol('blockmirror.Journal.attached');

/** Internal: the method a journal calls on an attached volume when it closes. */
export const kDetachJournal = Symbol('blockmirror.Journal.detach');

/** Something a journal detaches itself from when it closes. */
export interface JournalAttachment {
  [kDetachJournal](journal: Journal): void;
}

const RECORD_KINDS: readonly JournalRecordKind[] = ['write', 'zero', 'trim', 'marker'];
const KIND_BY_NUMBER: readonly (JournalRecordKind | undefined)[] = [undefined, 'write', 'zero', 'trim', 'marker'];
const JOURNAL_KINDS: readonly JournalKind[] = ['anonymous', 'shared', 'file'];
const MAX_U64 = (1n << 64n) - 1n;

const SHARED_PREFIX = 'blockmirror.journal.';

/** Region name of a shared journal. */
export function sharedJournalRegionName(name: string): string {
  return SHARED_PREFIX + name;
}

export class Journal {
  static readonly DEFAULT_CAPACITY_BYTES = 64 * 1024 * 1024;
  static readonly DEFAULT_MAX_RECORD_BYTES = 4 * 1024 * 1024;
  static readonly MIN_CAPACITY_BYTES = 64 * 1024;
  /** Largest ring: 16 GiB. */
  static readonly MAX_CAPACITY_BYTES = 16 * 1024 * 1024 * 1024;
  static readonly MAX_READ_RECORDS = 65536;

  readonly kind: JournalKind;
  /** Shared: the journal name; file: the path; anonymous: undefined. */
  readonly name: string | undefined;
  readonly capacityBytes: number;
  readonly maxRecordBytes: number;
  /** The id given at create (0: none). */
  readonly id: number;

  #handle: NativeJournal | null;
  #attachments = new Set<JournalAttachment>();
  #closing: Promise<void> | null = null;

  private constructor(handle: NativeJournal, kind: JournalKind, name: string | undefined) {
    this.#handle = handle;
    const [capacityBytes, maxRecordBytes, , , id] = handle.info();
    this.capacityBytes = capacityBytes;
    this.maxRecordBytes = maxRecordBytes;
    this.id = id;
    this.kind = kind;
    this.name = name;
  }

  /** Formats a new journal (ERR_REGION_EXISTS when a shared name or file exists already). */
  static create(options: JournalCreateOptions = {}): Journal {
    checkOptions(options, 'options');
    const capacityBytes = orDefault(options.capacityBytes, Journal.DEFAULT_CAPACITY_BYTES);
    checkIntegerIn(capacityBytes, 'options.capacityBytes', Journal.MIN_CAPACITY_BYTES, Journal.MAX_CAPACITY_BYTES);
    const maxRecordBytes = orDefault(options.maxRecordBytes, Math.min(Journal.DEFAULT_MAX_RECORD_BYTES, Math.floor(capacityBytes / 4)));
    checkIntegerIn(maxRecordBytes, 'options.maxRecordBytes', 1, Math.floor(capacityBytes / 4));
    const kind = orDefault(options.kind, 'anonymous' as JournalKind);
    checkOneOf(kind, 'options.kind', JOURNAL_KINDS);
    let regionName = 'blockmirror.journal';
    let name: string | undefined;
    if (kind === 'shared') {
      regionName = sharedRegionName(options.name, 'options.name', SHARED_PREFIX);
      name = options.name;
    } else if (kind === 'file') {
      checkPath(options.path, 'options.path');
      name = options.path;
      regionName = options.path;
    }
    const id = orDefault(options.id, 0);
    checkIntegerIn(id, 'options.id', 0, Number.MAX_SAFE_INTEGER);
    const handle = new addon.Journal(NativeRegionKind[kind], regionName, true, capacityBytes, maxRecordBytes, id);
    return new Journal(handle, kind, name);
  }

  /** Opens an existing shared ({ name }) or file ({ path }) journal at its saved cursors. */
  static open(options: { name?: string; path?: string }): Journal {
    const { kind, regionName, name, path } = namedTarget(options, 'options', SHARED_PREFIX);
    const handle = new addon.Journal(NativeRegionKind[kind], regionName, false, 0, 0);
    return new Journal(handle, kind, kind === 'shared' ? name : path);
  }

  /** Removes a shared or file journal; false when it did not exist. */
  static unlink(options: { name?: string; path?: string }): boolean {
    const { kind, regionName } = namedTarget(options, 'options', SHARED_PREFIX);
    return addon.unlinkRegion(NativeRegionKind[kind], regionName);
  }

  /** True once close() was called. */
  get closed(): boolean {
    return this.#handle === null;
  }

  #open(): NativeJournal {
    const handle = this.#handle;
    if (handle === null) throw closedError('journal');
    return handle;
  }

  /** @internal */
  get [kNativeHandle](): NativeJournal {
    return this.#open();
  }

  /** @internal */
  [kAttached](attachment: JournalAttachment, attached: boolean): void {
    if (attached) this.#attachments.add(attachment);
    else this.#attachments.delete(attachment);
  }

  /** Oldest unreleased sequence. */
  get headSequence(): number {
    return this.#open().headSequence();
  }

  /** The sequence the next append gets. */
  get nextSequence(): number {
    return this.#open().nextSequence();
  }

  /**
   * The writes of a crashed writer that open() found listed between their store and their
   * record (journal.hpp, intents): their bytes may be in the volume without a record. Empty
   * after create() and after clearPendingIntents().
   */
  pendingIntents(): JournalIntent[] {
    return this.#open().pendingIntents().map(([volumeId, byteOffset, byteLength, kind]) => ({
      volumeId, byteOffset, byteLength, kind: kind === 2 ? 'zero' : kind === 3 ? 'trim' : 'write',
    }));
  }

  /** Forgets pendingIntents() (the caller journaled those ranges again). */
  clearPendingIntents(): void {
    this.#open().clearPendingIntents();
  }

  /** Appends one record; returns its sequence, or 0 when the ring is full. */
  append(record: JournalAppendRecord): number {
    const handle = this.#open();
    checkObject(record, 'record');
    const kind = orDefault(record.kind, 'write' as JournalRecordKind);
    checkOneOf(kind, 'record.kind', RECORD_KINDS);
    const volumeId = orDefault(record.volumeId, 0n);
    if (typeof volumeId !== 'bigint') throw new TypeError(`record.volumeId must be a bigint (got ${describe(volumeId)})`);
    if (volumeId < 0n || volumeId > MAX_U64) throw new RangeError(`record.volumeId must be in [0, 2^64) (got ${volumeId})`);
    checkIndex(record.byteOffset, 'record.byteOffset');
    const data = record.data;
    if (data !== undefined) checkBytes(data, 'record.data');
    const byteLength = orDefault(record.byteLength, data === undefined ? 0 : data.byteLength);
    checkIntegerIn(byteLength, 'record.byteLength', 0, 0xffffffff);
    const flags = orDefault(record.flags, 0);
    checkIntegerIn(flags, 'record.flags', 0, 0xffff);
    if (data !== undefined && data.byteLength > this.maxRecordBytes) {
      throw new BlockmirrorError(
        'ERR_JOURNAL_RECORD_TOO_LARGE',
        `record.data (${data.byteLength} bytes) exceeds maxRecordBytes (${this.maxRecordBytes})`,
      );
    }
    return handle.append(NativeRecordKind[kind], volumeId, record.byteOffset, byteLength, data, flags);
  }

  /** Copies out records with sequence >= fromSequence. */
  read(fromSequence: number, options: JournalReadOptions = {}): JournalRecord[] {
    const handle = this.#open();
    checkIndex(fromSequence, 'fromSequence');
    if (fromSequence === 0) throw new RangeError('fromSequence must be at least 1 (sequences start at 1)');
    checkOptions(options, 'options');
    const maxRecords = orDefault(options.maxRecords, 256);
    checkIntegerIn(maxRecords, 'options.maxRecords', 1, Journal.MAX_READ_RECORDS);
    const maxBytes = orDefault(options.maxBytes, Journal.DEFAULT_MAX_RECORD_BYTES);
    checkIndex(maxBytes, 'options.maxBytes');
    const [fields, volumeIds, payload] = handle.read(fromSequence, maxRecords, maxBytes);
    const records: JournalRecord[] = [];
    for (let i = 0; i < volumeIds.length; i++) {
      const f = i * 8;
      const payloadOffset = fields[f + 6] as number;
      const payloadBytes = fields[f + 7] as number;
      records.push({
        sequence: fields[f] as number,
        volumeId: volumeIds[i] as bigint,
        byteOffset: fields[f + 1] as number,
        byteLength: fields[f + 2] as number,
        kind: KIND_BY_NUMBER[fields[f + 3] as number] ?? 'write',
        flags: fields[f + 4] as number,
        dataCrc: fields[f + 5] as number,
        data: payload.subarray(payloadOffset, payloadOffset + payloadBytes),
      });
    }
    return records;
  }

  /**
   * Reads records with sequence >= fromSequence into one new buffer laid out for a caller that
   * frames them (a pair's PAIR_RECORDS message): `prefixBytes` left free at its start, then per
   * record `gapBytes` left free and its data, copied once from the ring. `fields` holds 8 numbers
   * per record: sequence, byteOffset, byteLength, kind (1 write, 2 zero, 3 trim, 4 marker),
   * flags, dataCrc, dataOffset (in `buffer`), dataBytes. At least one record is returned when one
   * exists, even if its data alone exceeds maxDataBytes. `buffer` holds `usedBytes` bytes and is
   * the caller's; nothing in it but the data is written. `target` (a buffer the caller reuses)
   * is filled and returned as `buffer` when it is large enough for what the read may need
   * (prefixBytes + maxDataBytes + gapBytes per record at most); otherwise a new buffer is.
   * `verify` (default true) checks each copy against its data CRC (ERR_JOURNAL_CHECKSUM); false
   * leaves that to a receiver that checks the CRCs it is sent (dataCrc in `fields` is always the
   * CRC the record was appended with).
   */
  readPacked(fromSequence: number, options: { maxRecords?: number; maxDataBytes?: number; prefixBytes?: number; gapBytes?: number; target?: Buffer; verify?: boolean } = {}):
    { fields: Float64Array; buffer: Buffer; usedBytes: number; count: number } {
    const handle = this.#open();
    checkIndex(fromSequence, 'fromSequence');
    if (fromSequence === 0) throw new RangeError('fromSequence must be at least 1 (sequences start at 1)');
    checkOptions(options, 'options');
    const maxRecords = orDefault(options.maxRecords, 256);
    checkIntegerIn(maxRecords, 'options.maxRecords', 1, Journal.MAX_READ_RECORDS);
    const maxDataBytes = orDefault(options.maxDataBytes, Journal.DEFAULT_MAX_RECORD_BYTES);
    checkIndex(maxDataBytes, 'options.maxDataBytes');
    const prefixBytes = orDefault(options.prefixBytes, 0);
    checkIntegerIn(prefixBytes, 'options.prefixBytes', 0, 65536);
    const gapBytes = orDefault(options.gapBytes, 0);
    checkIntegerIn(gapBytes, 'options.gapBytes', 0, 64);
    const target = options.target;
    if (target !== undefined && !Buffer.isBuffer(target)) throw new TypeError(`options.target must be a Buffer (got ${describe(target)})`);
    const verify = orDefault(options.verify, true);
    if (typeof verify !== 'boolean') throw new TypeError(`options.verify must be a boolean (got ${describe(verify)})`);
    const [fields, buffer, usedBytes] = handle.readPacked(fromSequence, maxRecords, maxDataBytes, prefixBytes, gapBytes, target, verify);
    return { fields, buffer, usedBytes, count: fields.length / 8 };
  }

  /** Frees every record with sequence <= throughSequence; returns how many. */
  release(throughSequence: number): number {
    const handle = this.#open();
    checkIndex(throughSequence, 'throughSequence');
    return handle.release(throughSequence);
  }

  stats(): JournalStats {
    const s = this.#open().stats();
    return {
      headSequence: s[0] as number,
      nextSequence: s[1] as number,
      recordCount: s[2] as number,
      usedBytes: s[3] as number,
      capacityBytes: s[4] as number,
      maxRecordBytes: s[5] as number,
      appendCount: s[6] as number,
      fullCount: s[7] as number,
    };
  }

  /** Detaches from every volume of this process, then unmaps. Idempotent. */
  close(): Promise<void> {
    if (this.#closing !== null) return this.#closing;
    const handle = this.#handle;
    this.#handle = null;
    for (const attachment of [...this.#attachments]) attachment[kDetachJournal](this);
    this.#attachments.clear();
    handle?.close();
    this.#closing = Promise.resolve();
    return this.#closing;
  }
}
