// Snapshot benchmarks (issue 9): what a host 4 KiB write costs with 0, 1 and 8 snapshots of its
// volume present, on the first overwrite of a chunk since the snapshots were taken and on later
// overwrites, against the same write with no snapshot, measured in interleaved rounds of one run
// and reported as ratios (median over the rounds, with min and max).
//
// Expectations, written before measuring (2-core VM, DDR4):
// - A plain Volume.write of 4 KiB is one N-API call and a 4 KiB memcpy: 1.5-3 us.
// - With a store attached and no snapshot, preserve() returns after one load: ratio ~1.0.
// - A later overwrite (the chunk was preserved already) adds one load and one compare per chunk:
//   ratio 0.95-1.0 with 1 snapshot and with 8.
// - The first overwrite of a 64 KiB chunk takes the store lock (one CAS), one lseek(SEEK_DATA) on
//   the volume, and one pread of 64 KiB into a store chunk that faults in 16 fresh pages
//   (~0.25 us each) and copies 64 KiB (~10-15 us at 5 GB/s from DRAM): ~15-25 us per write, a
//   throughput ratio of ~0.1. With 8 snapshots the copy is shared, so the cost is that of 1
//   snapshot plus 7 map-entry stores: the 8-vs-1 ratio should be >= 0.9.
//
// Every round: a fresh set of snapshots is taken, the first 4 KiB write into each of
// CHUNKS_PER_ROUND distinct chunks is timed (first overwrites), then as many writes at random 4 KiB
// offsets inside those chunks (later overwrites), then the snapshots are deleted (their chunks and
// memory go back). The no-snapshot writes are timed in the same round, over the same offsets, on
// the same volume with the store attached and no snapshot, and on a second volume with no store
// at all. The order of the variants rotates from round to round so drift hits all of them.
import * as os from 'node:os';

import { SnapshotStore, Volume } from '../src/index';
import { fixed, warnIfBusy } from './common';
import { writeResults } from './results';

const VOLUME_BYTES = 256 * 1024 * 1024;
const CHUNK_BYTES = 64 * 1024;
const WRITE_BYTES = 4096;
const CHUNKS_PER_ROUND = 2048;
const SUB_BATCH = 128;
const ROUNDS = Number(process.env.SNAPSHOT_BENCH_ROUNDS ?? 9);

type Variant = 'plain' | 'none' | 'first1' | 'later1' | 'first8' | 'later8';

function xorshift(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

/** CHUNKS_PER_ROUND distinct chunks, and a write offset inside each (first) and random ones inside them (later). */
function offsetsFor(round: number): { first: Float64Array; later: Float64Array } {
  const next = xorshift(round * 7919 + 13);
  const chunkCount = VOLUME_BYTES / CHUNK_BYTES;
  const order = Array.from({ length: chunkCount }, (_, i) => i);
  for (let i = chunkCount - 1; i > 0; i--) {
    const j = next() % (i + 1);
    [order[i], order[j]] = [order[j] as number, order[i] as number];
  }
  const blocksPerChunk = CHUNK_BYTES / WRITE_BYTES;
  const first = new Float64Array(CHUNKS_PER_ROUND);
  const later = new Float64Array(CHUNKS_PER_ROUND);
  for (let i = 0; i < CHUNKS_PER_ROUND; i++) {
    first[i] = (order[i] as number) * CHUNK_BYTES + (next() % blocksPerChunk) * WRITE_BYTES;
    later[i] = (order[next() % CHUNKS_PER_ROUND] as number) * CHUNK_BYTES + (next() % blocksPerChunk) * WRITE_BYTES;
  }
  return { first, later };
}

/**
 * ns per write: the median over sub-batches of SUB_BATCH writes, so a sub-batch that another
 * process interrupted (a 2-core machine shared with other work) does not colour the sample.
 */
function timeWrites(volume: Volume, offsets: Float64Array, data: Buffer): number {
  const perWrite: number[] = [];
  for (let first = 0; first < offsets.length; first += SUB_BATCH) {
    const end = Math.min(offsets.length, first + SUB_BATCH);
    const start = process.hrtime.bigint();
    for (let i = first; i < end; i++) volume.write(offsets[i] as number, data);
    perWrite.push(Number(process.hrtime.bigint() - start) / (end - first));
  }
  return median(perWrite);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

async function main(): Promise<void> {
  const load = warnIfBusy('snapshot', 'the write timings');
  const data = Buffer.alloc(WRITE_BYTES, 0xa5);
  const fill = Buffer.alloc(1024 * 1024, 0x5a);
  const volume = Volume.create({ capacityBytes: VOLUME_BYTES });
  const plain = Volume.create({ capacityBytes: VOLUME_BYTES });
  for (let byteOffset = 0; byteOffset < VOLUME_BYTES; byteOffset += fill.byteLength) {
    volume.write(byteOffset, fill);
    plain.write(byteOffset, fill);
  }
  // Enough for one copy of every chunk a round touches, with the 8 snapshots sharing it.
  const store = SnapshotStore.create(volume, { chunkBytes: CHUNK_BYTES, storeBytes: VOLUME_BYTES });

  // Warm-up: the JIT and the write path, with and without snapshots.
  const warm = offsetsFor(1000);
  timeWrites(plain, warm.later, data);
  timeWrites(volume, warm.later, data);
  const warmSnapshot = store.createSnapshot('warm');
  timeWrites(volume, warm.first, data);
  warmSnapshot.delete();

  const samples: Record<Variant, number[]> = { plain: [], none: [], first1: [], later1: [], first8: [], later8: [] };
  const groups: ((offsets: { first: Float64Array; later: Float64Array }) => void)[] = [
    (offsets) => {
      samples.plain.push(timeWrites(plain, offsets.later, data));
    },
    (offsets) => {
      samples.none.push(timeWrites(volume, offsets.later, data));
    },
    (offsets) => {
      const snapshot = store.createSnapshot('one');
      samples.first1.push(timeWrites(volume, offsets.first, data));
      samples.later1.push(timeWrites(volume, offsets.later, data));
      if (store.stats().overflowCount !== 0) throw new Error('the chunk store overflowed: the bench is mis-sized');
      snapshot.delete();
    },
    (offsets) => {
      const snapshots = Array.from({ length: 8 }, (_, i) => store.createSnapshot(`eight-${i}`));
      samples.first8.push(timeWrites(volume, offsets.first, data));
      samples.later8.push(timeWrites(volume, offsets.later, data));
      for (const snapshot of snapshots) snapshot.delete();
    },
  ];
  for (let round = 0; round < ROUNDS; round++) {
    const offsets = offsetsFor(round);
    for (let k = 0; k < groups.length; k++) (groups[(round + k) % groups.length] as (o: typeof offsets) => void)(offsets);
    process.stderr.write(
      `  round ${round}: plain ${fixed(samples.plain[round]! / 1000, 2)} us, 0 snapshots ${fixed(samples.none[round]! / 1000, 2)} us, ` +
        `1: first ${fixed(samples.first1[round]! / 1000, 2)} later ${fixed(samples.later1[round]! / 1000, 2)} us, ` +
        `8: first ${fixed(samples.first8[round]! / 1000, 2)} later ${fixed(samples.later8[round]! / 1000, 2)} us\n`,
    );
  }
  const stats = store.stats();
  await store.destroy();
  await volume.close();
  await plain.close();

  // Per round: throughput of the variant relative to the no-snapshot write of the same round.
  const ratioSeries = (variant: Variant, against: Variant): number[] => samples[variant].map((ns, round) => (samples[against][round] as number) / ns);
  const spread = (series: number[]): { median: number; min: number; max: number } => ({
    median: median(series),
    min: Math.min(...series),
    max: Math.max(...series),
  });
  const series = {
    noneVsPlain: spread(ratioSeries('none', 'plain')),
    first1VsNone: spread(ratioSeries('first1', 'none')),
    later1VsNone: spread(ratioSeries('later1', 'none')),
    first8VsNone: spread(ratioSeries('first8', 'none')),
    later8VsNone: spread(ratioSeries('later8', 'none')),
    first8VsFirst1: spread(ratioSeries('first8', 'first1')),
  };
  const ratios = Object.fromEntries(Object.entries(series).map(([key, value]) => [key, value.median]));
  const targets = { noneVsPlain: 0.9, later1VsNone: 0.9, later8VsNone: 0.9, first8VsFirst1: 0.8 };
  const medianNs = Object.fromEntries(Object.entries(samples).map(([key, values]) => [key, median(values)]));
  for (const [key, value] of Object.entries(series)) {
    process.stderr.write(`  ${key}: ${fixed(value.median, 3)} (min ${fixed(value.min, 3)}, max ${fixed(value.max, 3)})\n`);
  }
  const result = {
    suite: 'snapshot',
    date: new Date().toISOString(),
    machine: `${os.cpus()[0]?.model ?? 'unknown'} x${os.cpus().length}, ${Math.round(os.totalmem() / 2 ** 30)} GiB`,
    loadAverage: load,
    rounds: ROUNDS,
    writesPerSample: CHUNKS_PER_ROUND,
    chunkBytes: CHUNK_BYTES,
    medianNsPerWrite: medianNs,
    samplesNsPerWrite: samples,
    spread: series,
    ratios,
    targets,
    storeStats: stats,
  };
  writeResults('snapshot', result);
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`${String((error as Error).stack ?? error)}\n`);
  process.exit(1);
});
