// Sparing benchmark (issue 10): what a running sparing costs host writes on a raid5 group, without
// and with diversion variant (b) (a WorkVolume laid behind the volume), how much I/O the
// diversion takes off the weak group's member disks, and how long the copy-back takes.
//
// Notes on the design
// -------------------
// Setup: one raid5 group of 4 disks (64 KiB stripe unit) plus one spare disk, a 96 MiB volume laid
// on an extent of it, all in memory and in this process, driven through the storage API (Disk,
// RaidGroup, Volume, WorkVolume). Each round times the same 4 KiB random writes (WRITES of them,
// offsets from a per-round xorshift seed, data from a pool of distinct random blocks, shifted for
// every pass so no pass rewrites the bytes the previous one left) three ways,
// in an order that rotates with the round so drift hits every variant:
// - baseline: no sparing, no diversion;
// - sparing: group.startSparing(1, spare), then the writes;
// - diverted: group.startSparing(1, spare), group.divertVolume(volume, work), work.start(), then
//   the writes (as the controller does with `diversion: work-volume`).
// Interleaving, as the controller's event loop does it (a sparing step of rebuildStepBytes per
// turn, host requests in between): inside the timed loop, after every WRITES_PER_STEP host writes
// the loop calls group.sparingStep(STEP_BYTES) once (STEP_BYTES = 4 MiB, the default
// rebuildStepBytes; WRITES_PER_STEP = 2048, i.e. 8 MiB of host writes per 4 MiB copied). With
// WRITES = 28672 that is 14 steps (56 MiB) per timed window, less than a member (64 MiB less the
// metadata), so the sparing runs during the whole window in both sparing variants and its cursor
// crosses the volume's share of the member (writes below the cursor are also mirrored to the
// spare). The step time is inside the timed window: the figure is the host rate while the
// sparing shares the thread, as in a serve. After the window the sparing is run to its swap
// untimed (the old member's disk becomes the next variant's spare), and in the diverted variant
// work.copyBack({ stepSlots: STEP_BYTES / slotBytes }) is timed (the controller's step), then the
// volume is lifted (divertVolume(volume, null)).
//
// An untimed warm-up (one diverted and one sparing pass, verified like the rest) first touches the
// work volume's slots and the disks' pages: a fresh memory region faults each page in on its first
// write, which cost the first diverted window a factor of 5.
//
// Member I/O: Disk.resetStats() on the group's four member disks just before each timed window and
// Disk.stats() just after, summed: bytes written to and read from the members per host byte
// written. The spare is not a member during the window and is reported apart (bytes written to
// it per host byte).
//
// Correctness: a model Buffer of the volume takes every write; after each variant (and, in the
// diverted one, once before its copy-back and once after it and the lift) the whole volume is read
// back in 1 MiB reads and compared with the model; a mismatch, a work volume that went 'full' or
// fell back to the group, or a sparing that ended inside the window throws, and the process exits
// non-zero, so every figure printed is from a run whose data was right.
//
// Expectations, written before measuring (2-core VM): a raid5 4 KiB write is a read-modify-write
// (2 preads, 2 XOR passes, 2 stores) plus the volume's own memcpy; a 4 MiB sparing step is a 4 MiB
// read + write (~1-2 ms) per 2048 writes (~10 ms of raid5 writes), and mirrored writes add a store
// each: sparing / baseline ~0.8-0.9. Diverted, a write is the volume's memcpy plus one 4 KiB
// append to the work volume and no member I/O at all: diverted / baseline ~1.5-3, and members'
// bytes per host byte from ~2 written + ~2 read (RMW) to 0 written (the sparing copy's reads of
// the weak member stay: 4 MiB per 8 MiB of host writes, 0.5 read per host byte). Copy-back of
// ~24k distinct 4 KiB blocks, each a raid5 RMW: near the raid5 small-write rate, ~100-300 MiB/s.
// Measured (docs/raid.md "Measured"): 0.92, 3.2, 2 / 2.5 / 0 written and ~16.9k distinct blocks
// copied back at ~1.45 GiB/s (a raid5 RMW without the host write's JS call and volume memcpy).
import * as os from 'node:os';

import { Disk } from '../src/storage/disk';
import { WorkVolume } from '../src/storage/diversion';
import { RaidGroup } from '../src/storage/raid-group';
import { Volume } from '../src/storage/volume';
import { fixed, warnIfBusy } from './common';
import { writeResults } from './results';

const VOLUME_BYTES = 96 * 1024 * 1024;
const DISK_BYTES = 64 * 1024 * 1024;
const BLOCK_BYTES = 4096;
const ROUNDS = Number(process.env.SPARING_BENCH_ROUNDS ?? 5);
const WRITES = 28672;
const WRITES_PER_STEP = 2048;
const STEP_BYTES = RaidGroup.DEFAULT_REBUILD_STEP_BYTES;
const POOL_BLOCKS = 1021;
const SPARED_MEMBER = 1;

type Variant = 'baseline' | 'sparing' | 'diverted';
const VARIANTS: readonly Variant[] = ['baseline', 'sparing', 'diverted'];

interface Rig {
  volume: Volume;
  group: RaidGroup;
  /** The disk that is not a member right now: the next sparing's target. */
  spare: Disk;
  allDisks: Disk[];
  work: WorkVolume;
  model: Buffer;
  pool: Buffer;
  /** Counts the passes: each one writes other data, so a lost write shows in the next check. */
  pass: number;
}

interface WindowResult {
  bytesPerSecond: number;
  memberWriteBytes: number;
  memberReadBytes: number;
  spareWriteBytes: number;
  hostBytes: number;
}

function fail(message: string): never {
  throw new Error(`sparing bench: ${message}`);
}

function setup(): Rig {
  const allDisks = Array.from({ length: 5 }, () => Disk.create({ capacityBytes: DISK_BYTES }));
  const group = RaidGroup.create({ level: 'raid5', disks: allDisks.slice(0, 4), stripeUnitBytes: 64 * 1024 });
  const volume = Volume.create({ capacityBytes: VOLUME_BYTES });
  group.allocateExtent('v', VOLUME_BYTES);
  group.attachVolume(volume, 'v');
  // A work volume that holds every write of a window (a block written again takes a new slot).
  const work = WorkVolume.create({ capacityBytes: (WRITES + 1024) * BLOCK_BYTES, slotBytes: BLOCK_BYTES });
  const pool = Buffer.alloc(POOL_BLOCKS * BLOCK_BYTES);
  let x = 0x9e3779b9;
  for (let i = 0; i < pool.length; i += 4) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    pool.writeUInt32LE(x, i);
  }
  // Fill the volume once (the model with it) so the timed loops run over mapped memory.
  const model = Buffer.alloc(VOLUME_BYTES, 0x5a);
  const chunk = 1024 * 1024;
  for (let offset = 0; offset < VOLUME_BYTES; offset += chunk) volume.write(offset, model.subarray(offset, offset + chunk));
  return { volume, group, spare: allDisks[4] as Disk, allDisks, work, model, pool, pass: 0 };
}

function offsets(count: number, seed: number): Float64Array {
  let x = seed;
  const result = new Float64Array(count);
  for (let i = 0; i < count; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    result[i] = (x % (VOLUME_BYTES / BLOCK_BYTES)) * BLOCK_BYTES;
  }
  return result;
}

function poolBlock(rig: Rig, writeIndex: number): Buffer {
  const k = ((writeIndex + rig.pass * 7) % POOL_BLOCKS) * BLOCK_BYTES;
  return rig.pool.subarray(k, k + BLOCK_BYTES);
}

function verify(rig: Rig, what: string): void {
  const chunk = Buffer.alloc(1024 * 1024);
  for (let offset = 0; offset < VOLUME_BYTES; offset += chunk.length) {
    rig.volume.read(offset, chunk);
    if (!chunk.equals(rig.model.subarray(offset, offset + chunk.length))) {
      for (let b = 0; b < chunk.length; b += BLOCK_BYTES) {
        if (!chunk.subarray(b, b + BLOCK_BYTES).equals(rig.model.subarray(offset + b, offset + b + BLOCK_BYTES))) {
          fail(`${what}: the volume's block at byte ${offset + b} differs from what was written`);
        }
      }
    }
  }
}

/** The timed window: WRITES host writes, one sparing step every WRITES_PER_STEP when sparing. */
function timedWindow(rig: Rig, at: Float64Array, sparing: boolean): WindowResult {
  rig.pass++;
  const members = [...rig.group.disks];
  if (members.includes(rig.spare)) fail('the spare is a member');
  for (const disk of members) disk.resetStats();
  rig.spare.resetStats();
  const start = process.hrtime.bigint();
  for (let i = 0; i < at.length; i++) {
    rig.volume.write(at[i] as number, poolBlock(rig, i));
    if (sparing && (i + 1) % WRITES_PER_STEP === 0) rig.group.sparingStep(STEP_BYTES);
  }
  const elapsedS = Number(process.hrtime.bigint() - start) / 1e9;
  let memberWriteBytes = 0;
  let memberReadBytes = 0;
  for (const disk of members) {
    const s = disk.stats();
    memberWriteBytes += s.writeBytes;
    memberReadBytes += s.readBytes;
  }
  const spareWriteBytes = rig.spare.stats().writeBytes;
  if (sparing && rig.group.sparingProgress === undefined) fail('the sparing ended inside the timed window (a member is smaller than the steps)');
  for (let i = 0; i < at.length; i++) {
    const offset = at[i] as number;
    poolBlock(rig, i).copy(rig.model, offset);
  }
  const hostBytes = at.length * BLOCK_BYTES;
  return { bytesPerSecond: hostBytes / elapsedS, memberWriteBytes, memberReadBytes, spareWriteBytes, hostBytes };
}

/** Runs the sparing to its swap (untimed); the old member's disk is the next spare. */
function finishSparing(rig: Rig): void {
  const old = rig.group.disks[SPARED_MEMBER] as Disk;
  while (rig.group.sparingProgress !== undefined) rig.group.sparingStep(STEP_BYTES);
  if (rig.group.disks[SPARED_MEMBER] !== rig.spare) fail('the spare did not take the member\'s place');
  rig.spare = old;
}

interface CopyBack {
  seconds: number;
  slots: number;
}

async function runVariant(rig: Rig, variant: Variant, at: Float64Array, label: string): Promise<{ window: WindowResult; copyBack?: CopyBack }> {
  if (variant === 'baseline') {
    const window = timedWindow(rig, at, false);
    verify(rig, `${label} baseline`);
    return { window };
  }
  rig.group.startSparing(SPARED_MEMBER, rig.spare);
  if (variant === 'sparing') {
    const window = timedWindow(rig, at, true);
    finishSparing(rig);
    verify(rig, `${label} sparing`);
    return { window };
  }
  rig.group.divertVolume(rig.volume, rig.work);
  rig.work.start();
  const before = rig.work.stats();
  const window = timedWindow(rig, at, true);
  const stats = rig.work.stats();
  const fallbackWrites = stats.fallbackWrites - before.fallbackWrites;
  const divertedWrites = stats.divertedWrites - before.divertedWrites;
  if (rig.work.state !== 'diverting' || fallbackWrites !== 0) fail(`the work volume is ${rig.work.state} with ${fallbackWrites} writes fallen back to the group`);
  if (divertedWrites !== at.length) fail(`${divertedWrites} writes diverted of ${at.length}`);
  if (window.memberWriteBytes !== 0) fail(`${window.memberWriteBytes} bytes reached the members while diverting`);
  verify(rig, `${label} diverted, before the copy-back`);
  finishSparing(rig);
  const copiedBefore = stats.copiedBackSlots;
  const start = process.hrtime.bigint();
  await rig.work.copyBack({ stepSlots: Math.max(1, Math.floor(STEP_BYTES / rig.work.slotBytes)) });
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const slots = rig.work.stats().copiedBackSlots - copiedBefore;
  const after: string = rig.work.state;
  if (after !== 'unused' || rig.work.terminal !== null) fail(`after the copy-back the work volume is ${after}`);
  rig.group.divertVolume(rig.volume, null);
  verify(rig, `${label} diverted, after the copy-back`);
  return { window, copyBack: { seconds, slots } };
}

function summary(values: number[]): { median: number; min: number; max: number } {
  const sorted = [...values].sort((a, b) => a - b);
  return { median: sorted[Math.floor(sorted.length / 2)] as number, min: sorted[0] as number, max: sorted[sorted.length - 1] as number };
}

async function main(): Promise<void> {
  if (!Number.isInteger(ROUNDS) || ROUNDS < 1) throw new RangeError(`SPARING_BENCH_ROUNDS must be a positive integer (got ${process.env.SPARING_BENCH_ROUNDS})`);
  const busy = warnIfBusy('sparing', 'the ratios');
  const rig = setup();
  const series: Record<string, number[]> = {
    sparingVsBaseline: [],
    divertedVsBaseline: [],
    baselineMemberWritePerHostByte: [],
    baselineMemberReadPerHostByte: [],
    sparingMemberWritePerHostByte: [],
    sparingMemberReadPerHostByte: [],
    sparingSpareWritePerHostByte: [],
    divertedMemberWritePerHostByte: [],
    divertedMemberReadPerHostByte: [],
    divertedSpareWritePerHostByte: [],
    copyBackSeconds: [],
    copyBackMiBPerSecond: [],
    copyBackSlots: [],
  };
  const absolute: Record<string, number[]> = { baseline: [], sparing: [], diverted: [] };
  // Warm-up, untimed: one diverted pass touches the work volume's slots (a fresh memory region
  // faults each page in on its first write, which made round 1's diverted rate 5x slower than the
  // others), and a sparing pass the spare's pages.
  await runVariant(rig, 'diverted', offsets(WRITES, 0x2545f491), 'warm-up');
  await runVariant(rig, 'sparing', offsets(WRITES, 0x61c88647), 'warm-up');
  for (let round = 0; round < ROUNDS; round++) {
    const at = offsets(WRITES, round * 7919 + 1);
    const results: Partial<Record<Variant, { window: WindowResult; copyBack?: CopyBack }>> = {};
    for (let k = 0; k < VARIANTS.length; k++) {
      const variant = VARIANTS[(k + round) % VARIANTS.length] as Variant;
      results[variant] = await runVariant(rig, variant, at, `round ${round + 1}`);
    }
    const baseline = (results.baseline as { window: WindowResult }).window;
    const sparing = (results.sparing as { window: WindowResult }).window;
    const diverted = results.diverted as { window: WindowResult; copyBack: CopyBack };
    for (const [name, w] of [['baseline', baseline], ['sparing', sparing], ['diverted', diverted.window]] as const) {
      absolute[name]?.push(w.bytesPerSecond / BLOCK_BYTES);
      series[`${name}MemberWritePerHostByte`]?.push(w.memberWriteBytes / w.hostBytes);
      series[`${name}MemberReadPerHostByte`]?.push(w.memberReadBytes / w.hostBytes);
      if (name !== 'baseline') series[`${name}SpareWritePerHostByte`]?.push(w.spareWriteBytes / w.hostBytes);
    }
    series.sparingVsBaseline?.push(sparing.bytesPerSecond / baseline.bytesPerSecond);
    series.divertedVsBaseline?.push(diverted.window.bytesPerSecond / baseline.bytesPerSecond);
    series.copyBackSeconds?.push(diverted.copyBack.seconds);
    series.copyBackSlots?.push(diverted.copyBack.slots);
    series.copyBackMiBPerSecond?.push((diverted.copyBack.slots * rig.work.slotBytes) / 2 ** 20 / diverted.copyBack.seconds);
    process.stderr.write(`sparing: round ${round + 1}/${ROUNDS} done (data verified)\n`);
  }
  const result = {
    suite: 'sparing',
    date: new Date().toISOString(),
    machine: `${os.cpus()[0]?.model ?? 'unknown'} x${os.cpus().length}, ${Math.round(os.totalmem() / 2 ** 30)} GiB`,
    rounds: ROUNDS,
    busy,
    setup: { level: 'raid5', disks: 4, spares: 1, diskBytes: DISK_BYTES, volumeBytes: VOLUME_BYTES, writeBytes: BLOCK_BYTES, writes: WRITES, writesPerStep: WRITES_PER_STEP, stepBytes: STEP_BYTES },
    ratios: { sparingVsBaseline: summary(series.sparingVsBaseline ?? []), divertedVsBaseline: summary(series.divertedVsBaseline ?? []) },
    memberIoPerHostByte: Object.fromEntries(Object.entries(series).filter(([key]) => key.endsWith('PerHostByte')).map(([key, values]) => [key, summary(values)])),
    copyBack: { seconds: summary(series.copyBackSeconds ?? []), mibPerSecond: summary(series.copyBackMiBPerSecond ?? []), slots: summary(series.copyBackSlots ?? []) },
    writeIops: Object.fromEntries(Object.entries(absolute).map(([key, values]) => [key, summary(values)])),
  };
  const line = (key: string, value: { median: number; min: number; max: number }, digits: number): void => {
    process.stdout.write(`  ${key.padEnd(32)} median ${fixed(value.median, digits)}  (min ${fixed(value.min, digits)}, max ${fixed(value.max, digits)})\n`);
  };
  for (const [key, value] of Object.entries(result.ratios)) line(key, value, 2);
  for (const [key, value] of Object.entries(result.memberIoPerHostByte)) line(key, value, 2);
  for (const [key, value] of Object.entries(result.copyBack)) line(`copyBack.${key}`, value, key === 'seconds' ? 3 : 0);
  for (const [key, value] of Object.entries(result.writeIops)) line(`iops.${key}`, value, 0);
  rig.group.close();
  rig.work.close();
  await rig.volume.close();
  for (const disk of rig.allDisks) disk.close();
  writeResults('sparing', result);
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
