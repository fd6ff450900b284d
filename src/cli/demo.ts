// Notes on the design
// -------------------
// `blockmirror demo`: the storage layer's main job on a built-in default, end to end in one
// process. It creates a memory volume, attaches a change-recording bitmap and a journal, writes
// a verifiable pattern over the whole volume (first half with single writes, second half with
// writev batches), reads every byte back and compares, then prints what the native layer
// counted (stats, dirty tracks, journal sequences) and how fast it went.
//
// The pattern is a pure function of (seed, byte offset) computed per 32-bit word, so any chunk
// can be regenerated for comparison without keeping the written data; a mismatch is reported
// with its byte offset, expected and actual bytes.
//
// The journal is bounded (64 MiB ring) and the demo writes the whole volume, so the demo plays
// the part of an async shipper: whenever the ring is more than half full it reads the records
// back in order, checks each against the pattern, and releases them. A write that still finds
// the ring full is counted (journal full), never blocked: that is the storage contract, and the
// report shows it.
//
// Exit code: 0 when every byte matched and the counters agree with what was done, 1 otherwise.
// Every native object is closed in a finally block, also on failure.

import * as cliProgress from 'cli-progress';
import { performance } from 'node:perf_hooks';

import { Journal, Volume, crc32c } from '../index';
import { formatBytes, formatDuration } from './status';

export interface DemoOptions {
  /** @default 268435456 (256 MiB) */
  capacityBytes: number;
  /** @default 4096 */
  blockSize: number;
  /** @default 0x5eed */
  seed: number;
  /** Print the report as JSON. @default false */
  json: boolean;
  /**
   * Test hook: flip one byte at this offset behind the write path's back (directly in the
   * volume, after the writes) so the verifier must report it. @default undefined
   */
  corruptByteOffset?: number;
  /** Where the report goes. @default process.stdout */
  output?: NodeJS.WritableStream & { isTTY?: boolean };
}

/** Bytes per single write in the first half. */
const SINGLE_WRITE_BYTES = 256 * 1024;
/** Writes per writev batch and bytes per write in the second half. */
const BATCH_WRITE_COUNT = 32;
const BATCH_WRITE_BYTES = 16 * 1024;
const READ_CHUNK_BYTES = 1024 * 1024;
const BITMAP_GRANULARITY_BYTES = 64 * 1024;
const JOURNAL_CAPACITY_BYTES = 64 * 1024 * 1024;
const JOURNAL_MAX_RECORD_BYTES = 1024 * 1024;
const MAX_REPORTED_MISMATCHES = 10;

/** Fills `target` with the pattern for the bytes at [byteOffset, byteOffset + target.length). */
export function fillPattern(target: Buffer, byteOffset: number, seed: number): void {
  // Word-wise through a Uint32Array where alignment allows (always, for block-aligned offsets
  // and buffers that own their ArrayBuffer); byte-wise otherwise.
  if (byteOffset % 4 === 0 && target.byteOffset % 4 === 0 && target.length % 4 === 0) {
    const words = new Uint32Array(target.buffer, target.byteOffset, target.length / 4);
    const firstWord = byteOffset / 4;
    for (let i = 0; i < words.length; i++) words[i] = patternWord(firstWord + i, seed);
    // The pattern is defined little endian; make that true on big-endian hosts too.
    if (!LITTLE_ENDIAN) target.swap32();
    return;
  }
  for (let i = 0; i < target.length; i++) {
    const absolute = byteOffset + i;
    target[i] = (patternWord(Math.floor(absolute / 4), seed) >>> ((absolute % 4) * 8)) & 0xff;
  }
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** A 32-bit mix of the word index and the seed (lowbias32), different for every word of a TiB. */
function patternWord(wordIndex: number, seed: number): number {
  let x = (wordIndex ^ Math.imul(Math.floor(wordIndex / 4294967296), 0x9e3779b1) ^ seed) >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

interface Phase {
  name: string;
  requestCount: number;
  byteCount: number;
  /** Time inside the native calls only. */
  nativeMs: number;
  /** Wall time including pattern generation and comparison. */
  wallMs: number;
}

interface Mismatch {
  byteOffset: number;
  expected: string;
  actual: string;
  mismatchedBytesInChunk: number;
}

export interface DemoReport {
  ok: boolean;
  volume: { capacityBytes: number; blockSize: number };
  phases: Array<Phase & { nativeMibPerSecond: number; nativeIops: number }>;
  mismatches: Mismatch[];
  stats: Record<string, number>;
  bitmap: { name: string; granularityBytes: number; dirtyTracks: number; expectedDirtyTracks: number };
  journal: {
    firstSequence: number;
    nextSequence: number;
    appended: number;
    /** Records read back by the shipper and found equal to what was written. */
    verifiedRecords: number;
    full: number;
    releasedThrough: number;
    stats: Record<string, number>;
  };
  problems: string[];
}

function numericRecord(value: unknown): Record<string, number> {
  const out: Record<string, number> = {};
  if (value !== null && typeof value === 'object') {
    for (const [key, field] of Object.entries(value as Record<string, unknown>)) {
      if (typeof field === 'number' || typeof field === 'bigint') out[key] = Number(field);
    }
  }
  return out;
}

function hexAround(buffer: Buffer, index: number): string {
  return buffer.subarray(index, Math.min(buffer.length, index + 8)).toString('hex');
}

class Progress {
  private bar: cliProgress.SingleBar | undefined;

  constructor(enabled: boolean) {
    if (enabled) {
      this.bar = new cliProgress.SingleBar({
        format: '{phase} [{bar}] {percentage}% | {done}/{size}',
        hideCursor: true,
        clearOnComplete: false,
        stream: process.stderr,
      }, cliProgress.Presets.shades_classic);
    }
  }

  start(phase: string, totalBytes: number): void {
    this.bar?.start(totalBytes, 0, { phase: phase.padEnd(6), done: formatBytes(0), size: formatBytes(totalBytes) });
  }

  update(doneBytes: number): void {
    this.bar?.update(doneBytes, { done: formatBytes(doneBytes) });
  }

  stop(): void {
    this.bar?.stop();
  }
}

/** Runs the demo and prints its report; resolves to the exit code. */
export async function runDemo(options: DemoOptions): Promise<number> {
  const output = options.output ?? process.stdout;
  const { capacityBytes, blockSize, seed } = options;
  if (capacityBytes <= 0 || capacityBytes % blockSize !== 0) {
    throw new RangeError(`--size must be a positive multiple of --block-size ${blockSize}, got ${capacityBytes}`);
  }
  const progress = new Progress(process.stderr.isTTY === true && !options.json);
  const problems: string[] = [];
  const mismatches: Mismatch[] = [];
  const phases: Phase[] = [];

  const volume = Volume.create({ capacityBytes, blockSize, backing: 'memory', name: 'demo' });
  let journal: Journal | undefined;
  try {
    const bitmapName = 'demo-changes';
    const bitmap = volume.createBitmap(bitmapName, { granularityBytes: BITMAP_GRANULARITY_BYTES, recording: true });
    journal = Journal.create({ capacityBytes: JOURNAL_CAPACITY_BYTES, maxRecordBytes: JOURNAL_MAX_RECORD_BYTES });
    volume.attachJournal(journal);
    const firstSequence = journal.nextSequence;
    // The shipper: reads every record back in order, checks it against the pattern (sequence,
    // kind, range, data and its crc32c), then releases it, as an async pair would after sending.
    let releasedThrough = firstSequence - 1;
    let verifiedRecords = 0;
    const expectedRecord = Buffer.alloc(Math.max(SINGLE_WRITE_BYTES, BATCH_WRITE_BYTES));
    const ship = (): void => {
      const liveJournal = journal as Journal;
      while (releasedThrough + 1 < liveJournal.nextSequence) {
        const records = liveJournal.read(releasedThrough + 1, { maxRecords: 256, maxBytes: 4 * 1024 * 1024 });
        if (records.length === 0) break;
        for (const record of records) {
          const expectedSequence = releasedThrough + 1;
          const expected = expectedRecord.subarray(0, record.byteLength);
          if (record.byteLength <= expectedRecord.length) fillPattern(expected, record.byteOffset, seed);
          if (record.sequence !== expectedSequence) {
            problems.push(`journal record ${record.sequence} where ${expectedSequence} was next (gap or reorder)`);
          } else if (record.kind !== 'write' || record.data.length !== record.byteLength ||
              record.byteLength > expectedRecord.length || !record.data.equals(expected)) {
            problems.push(`journal record ${record.sequence} (${record.kind} ${record.byteOffset}+${record.byteLength}) ` +
              'does not hold the bytes written');
          } else if (record.dataCrc !== crc32c(record.data)) {
            problems.push(`journal record ${record.sequence}: dataCrc ${record.dataCrc} does not match its data`);
          } else {
            verifiedRecords++;
          }
          releasedThrough = record.sequence;
        }
        liveJournal.release(releasedThrough);
      }
    };
    const releaseIfHalfFull = (): void => {
      if (journal !== undefined && journal.stats().usedBytes * 2 >= JOURNAL_CAPACITY_BYTES) ship();
    };

    // Write phase 1: single writes over the first half (whole blocks, block-aligned).
    const halfBytes = Math.floor(capacityBytes / 2 / blockSize) * blockSize;
    const single: Phase = { name: 'write', requestCount: 0, byteCount: 0, nativeMs: 0, wallMs: 0 };
    const singleBuffer = Buffer.alloc(SINGLE_WRITE_BYTES);
    progress.start('write', capacityBytes);
    let wallStart = performance.now();
    for (let byteOffset = 0; byteOffset < halfBytes; byteOffset += SINGLE_WRITE_BYTES) {
      const length = Math.min(SINGLE_WRITE_BYTES, halfBytes - byteOffset);
      const chunk = singleBuffer.subarray(0, length);
      fillPattern(chunk, byteOffset, seed);
      const start = performance.now();
      volume.write(byteOffset, chunk);
      single.nativeMs += performance.now() - start;
      single.requestCount++;
      single.byteCount += length;
      releaseIfHalfFull();
      progress.update(byteOffset + length);
    }
    single.wallMs = performance.now() - wallStart;
    phases.push(single);

    // Write phase 2: writev batches over the second half. The batch's buffers are filled first,
    // then handed to one native call.
    const batched: Phase = { name: 'writev', requestCount: 0, byteCount: 0, nativeMs: 0, wallMs: 0 };
    const batchBytes = BATCH_WRITE_COUNT * BATCH_WRITE_BYTES;
    const batchBuffer = Buffer.alloc(batchBytes);
    wallStart = performance.now();
    for (let byteOffset = halfBytes; byteOffset < capacityBytes; byteOffset += batchBytes) {
      const requests: { byteOffset: number; data: Buffer }[] = [];
      const end = Math.min(capacityBytes, byteOffset + batchBytes);
      for (let at = byteOffset; at < end; at += BATCH_WRITE_BYTES) {
        const length = Math.min(BATCH_WRITE_BYTES, end - at);
        const data = batchBuffer.subarray(at - byteOffset, at - byteOffset + length);
        fillPattern(data, at, seed);
        requests.push({ byteOffset: at, data });
      }
      const start = performance.now();
      volume.writev(requests);
      batched.nativeMs += performance.now() - start;
      batched.requestCount += requests.length;
      batched.byteCount += end - byteOffset;
      releaseIfHalfFull();
      progress.update(end);
    }
    batched.wallMs = performance.now() - wallStart;
    phases.push(batched);
    progress.stop();
    ship();

    const flushStart = performance.now();
    await volume.flush();
    phases.push({ name: 'flush', requestCount: 1, byteCount: 0, nativeMs: performance.now() - flushStart,
      wallMs: performance.now() - flushStart });

    if (options.corruptByteOffset !== undefined) {
      const byte = Buffer.alloc(1);
      volume.read(options.corruptByteOffset, byte);
      byte[0] = (byte[0] as number) ^ 0xff;
      // Not journaled, and counted in the expectations below: only the data check may fail.
      volume.attachJournal(null);
      volume.write(options.corruptByteOffset, byte);
    }

    // Verify: read every byte back and compare with the regenerated pattern.
    const verify: Phase = { name: 'read+verify', requestCount: 0, byteCount: 0, nativeMs: 0, wallMs: 0 };
    const readBuffer = Buffer.alloc(READ_CHUNK_BYTES);
    const expectedBuffer = Buffer.alloc(READ_CHUNK_BYTES);
    progress.start('verify', capacityBytes);
    wallStart = performance.now();
    for (let byteOffset = 0; byteOffset < capacityBytes; byteOffset += READ_CHUNK_BYTES) {
      const length = Math.min(READ_CHUNK_BYTES, capacityBytes - byteOffset);
      const actual = readBuffer.subarray(0, length);
      const expected = expectedBuffer.subarray(0, length);
      const start = performance.now();
      volume.read(byteOffset, actual);
      verify.nativeMs += performance.now() - start;
      verify.requestCount++;
      verify.byteCount += length;
      fillPattern(expected, byteOffset, seed);
      if (!actual.equals(expected)) {
        let first = -1;
        let count = 0;
        for (let i = 0; i < length; i++) {
          if (actual[i] !== expected[i]) {
            if (first < 0) first = i;
            count++;
          }
        }
        if (mismatches.length < MAX_REPORTED_MISMATCHES) {
          mismatches.push({ byteOffset: byteOffset + first, expected: hexAround(expected, first),
            actual: hexAround(actual, first), mismatchedBytesInChunk: count });
        }
        problems.push(`data mismatch in [${byteOffset}, ${byteOffset + length}): ${count} byte(s)`);
      }
      progress.update(byteOffset + length);
    }
    verify.wallMs = performance.now() - wallStart;
    phases.push(verify);
    progress.stop();

    // What the native layer counted, checked against what the demo did.
    const stats = numericRecord(volume.stats());
    const writeRequests = single.requestCount + batched.requestCount;
    const injected = options.corruptByteOffset === undefined ? 0 : 1;
    if (stats.writeCount !== writeRequests + injected) {
      problems.push(`stats.writeCount is ${stats.writeCount}, the demo made ${writeRequests + injected} writes`);
    }
    if (stats.writeBytes !== capacityBytes + injected) {
      problems.push(`stats.writeBytes is ${stats.writeBytes}, the demo wrote ${capacityBytes + injected}`);
    }
    if (stats.readBytes !== capacityBytes + injected) {
      problems.push(`stats.readBytes is ${stats.readBytes}, the demo read ${capacityBytes + injected}`);
    }
    const dirtyTracks = Number(bitmap.count());
    const expectedDirtyTracks = Math.ceil(capacityBytes / BITMAP_GRANULARITY_BYTES);
    if (dirtyTracks !== expectedDirtyTracks) {
      problems.push(`bitmap has ${dirtyTracks} dirty tracks, expected ${expectedDirtyTracks} (every track written)`);
    }
    const journalStats = numericRecord(journal.stats());
    const nextSequence = journal.nextSequence;
    const appended = nextSequence - firstSequence;
    const full = stats.journalFullCount ?? journalStats.fullCount ?? 0;
    if (verifiedRecords !== appended) {
      problems.push(`${verifiedRecords} of ${appended} journal records verified`);
    }
    if (appended + full !== writeRequests) {
      problems.push(`journal appended ${appended} records and was full ${full} times for ${writeRequests} writes`);
    }

    const report: DemoReport = {
      ok: problems.length === 0,
      volume: { capacityBytes, blockSize },
      phases: phases.map((phase) => ({
        ...phase,
        nativeMibPerSecond: phase.nativeMs > 0 ? phase.byteCount / (1024 * 1024) / (phase.nativeMs / 1000) : 0,
        nativeIops: phase.nativeMs > 0 ? phase.requestCount / (phase.nativeMs / 1000) : 0,
      })),
      mismatches,
      stats,
      bitmap: { name: bitmapName, granularityBytes: BITMAP_GRANULARITY_BYTES, dirtyTracks, expectedDirtyTracks },
      journal: { firstSequence, nextSequence, appended, verifiedRecords, full, releasedThrough, stats: journalStats },
      problems,
    };
    output.write(options.json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report));
    return report.ok ? 0 : 1;
  } finally {
    progress.stop();
    await volume.close();
    if (journal !== undefined) await journal.close();
  }
}

function formatReport(report: DemoReport): string {
  const lines: string[] = [];
  lines.push(`blockmirror demo: ${formatBytes(report.volume.capacityBytes)} memory volume, block size ${report.volume.blockSize}`);
  lines.push('');
  lines.push('phase          requests      bytes        time   native MiB/s   native IOPS');
  for (const phase of report.phases) {
    lines.push(`${phase.name.padEnd(12)} ${String(phase.requestCount).padStart(10)} ${formatBytes(phase.byteCount).padStart(10)} ` +
      `${formatDuration(phase.wallMs / 1000).padStart(11)} ${phase.nativeMibPerSecond.toFixed(1).padStart(14)} ` +
      `${Math.round(phase.nativeIops).toString().padStart(13)}`);
  }
  lines.push('(native: time inside the addon calls, including first-touch page faults of the thin volume; ' +
    'time: wall clock including pattern generation and compare)');
  lines.push('');
  lines.push(`native stats: ${Object.entries(report.stats).map(([k, v]) => `${k}=${v}`).join(' ')}`);
  lines.push(`bitmap ${report.bitmap.name}: ${report.bitmap.dirtyTracks} dirty tracks of ${formatBytes(report.bitmap.granularityBytes)} ` +
    `(expected ${report.bitmap.expectedDirtyTracks})`);
  lines.push(`journal: sequences ${report.journal.firstSequence}..${report.journal.nextSequence - 1} ` +
    `(${report.journal.appended} records, ${report.journal.verifiedRecords} read back and verified), ` +
    `full ${report.journal.full} times, released through ${report.journal.releasedThrough}`);
  for (const mismatch of report.mismatches) {
    lines.push(`MISMATCH at byte ${mismatch.byteOffset}: expected ${mismatch.expected}, got ${mismatch.actual} ` +
      `(${mismatch.mismatchedBytesInChunk} bytes differ in that MiB)`);
  }
  for (const problem of report.problems) lines.push(`problem: ${problem}`);
  lines.push(report.ok ? 'verified: every byte matched' : `FAILED: ${report.problems.length} problem(s)`);
  return `${lines.join('\n')}\n`;
}
