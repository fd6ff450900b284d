// RAID benchmarks (issue 10): what a host write to a volume laid on a raid1 (2-way) or raid5
// (4 disks, 64 KiB stripe unit) group costs against the same write on a `single` group, measured
// in interleaved rounds of one run and reported as throughput ratios (median over the rounds, with
// min and max); plus degraded raid5 reads and the rebuild rate against a plain copy of the member.
//
// Expectations, written before measuring (2-core VM, DDR4; a volume on a group also keeps its own
// region as the image snapshots preserve from, so every variant pays that memcpy too):
// - single: the volume's memcpy + the group's memcpy into one disk: ~2x a plain Volume.write.
// - raid1: one more memcpy (the second mirror): ratio ~0.7-0.8 of single for 4 KiB writes.
// - raid5 4 KiB (read-modify-write): two pread of 4 KiB (old data, old parity), two XOR passes,
//   two memcpy: about 2x single's member traffic plus the syscalls: ratio ~0.3-0.5.
// - raid5 full-stripe 192 KiB: 3 data memcpy + one XOR pass over 192 KiB + the parity memcpy,
//   no reads: ~4/3 of single's bytes plus the XOR: ratio ~0.6-0.8.
// - raid5 degraded 4 KiB reads: 3 preads + 3 XOR passes instead of 1 pread: ratio ~0.3-0.5.
import * as os from 'node:os';

import { Disk } from '../src/storage/disk';
import { RaidGroup, type RaidLevel } from '../src/storage/raid-group';
import { Volume } from '../src/storage/volume';
import { fixed, seededOffsets, summary, warnIfBusy } from './common';
import { writeResults } from './results';

const VOLUME_BYTES = 96 * 1024 * 1024;
const DISK_BYTES = 64 * 1024 * 1024;
const ROUNDS = Number(process.env.RAID_BENCH_ROUNDS ?? 7);
const SMALL_WRITES = 32768;
const STRIPE_BYTES = 3 * 64 * 1024;

interface Setup {
  name: string;
  volume: Volume;
  group: RaidGroup;
  disks: Disk[];
}

function setup(name: string, level: RaidLevel, diskCount: number): Setup {
  const disks = Array.from({ length: diskCount }, () => Disk.create({ capacityBytes: level === 'raid5' ? DISK_BYTES : 2 * DISK_BYTES }));
  const group = RaidGroup.create({ level, disks, stripeUnitBytes: 64 * 1024 });
  const volume = Volume.create({ capacityBytes: VOLUME_BYTES });
  group.allocateExtent('v', VOLUME_BYTES);
  group.attachVolume(volume, 'v');
  // Touch everything once so the timed loops run over mapped memory.
  const fill = Buffer.alloc(STRIPE_BYTES * 16, 0x5a);
  for (let offset = 0; offset + fill.length <= VOLUME_BYTES; offset += fill.length) volume.write(offset, fill);
  return { name, volume, group, disks };
}

function offsets(count: number, unit: number, seed: number): Float64Array {
  return seededOffsets(count, VOLUME_BYTES, unit, seed);
}

function timeWrites(volume: Volume, at: Float64Array, data: Buffer): number {
  const start = process.hrtime.bigint();
  for (let i = 0; i < at.length; i++) volume.write(at[i] as number, data);
  return (at.length * data.length) / (Number(process.hrtime.bigint() - start) / 1e9);
}

function timeReads(volume: Volume, at: Float64Array, target: Buffer): number {
  const start = process.hrtime.bigint();
  for (let i = 0; i < at.length; i++) volume.read(at[i] as number, target);
  return (at.length * target.length) / (Number(process.hrtime.bigint() - start) / 1e9);
}

async function main(): Promise<void> {
  const busy = warnIfBusy('raid', 'the ratios');
  const setups = [setup('single', 'single', 1), setup('raid1', 'raid1', 2), setup('raid5', 'raid5', 4)];
  const small = Buffer.alloc(4096, 0xa5);
  const stripe = Buffer.alloc(STRIPE_BYTES, 0x3c);
  const ratios: Record<string, number[]> = { raid1Small: [], raid5Small: [], raid1Stripe: [], raid5Stripe: [], raid5DegradedRead: [], rebuildVsCopy: [] };
  const absolute: Record<string, number[]> = { singleSmall: [], singleStripe: [] };
  for (let round = 0; round < ROUNDS; round++) {
    const smallAt = offsets(SMALL_WRITES, 4096, round * 7919 + 1);
    const stripeAt = offsets(SMALL_WRITES / 16, STRIPE_BYTES, round * 104729 + 3);
    const rate: Record<string, { small: number; stripe: number }> = {};
    // Rotate the order so drift hits every variant.
    for (let k = 0; k < setups.length; k++) {
      const s = setups[(k + round) % setups.length] as Setup;
      rate[s.name] = { small: timeWrites(s.volume, smallAt, small), stripe: timeWrites(s.volume, stripeAt, stripe) };
    }
    const single = rate.single as { small: number; stripe: number };
    absolute.singleSmall?.push(single.small);
    absolute.singleStripe?.push(single.stripe);
    ratios.raid1Small?.push((rate.raid1 as { small: number }).small / single.small);
    ratios.raid5Small?.push((rate.raid5 as { small: number }).small / single.small);
    ratios.raid1Stripe?.push((rate.raid1 as { stripe: number }).stripe / single.stripe);
    ratios.raid5Stripe?.push((rate.raid5 as { stripe: number }).stripe / single.stripe);

    // Degraded raid5 reads against the same reads while optimal; then the rebuild.
    const raid5 = setups[2] as Setup;
    const target = Buffer.alloc(4096);
    const optimal = timeReads(raid5.volume, smallAt, target);
    raid5.group.failMember(1);
    const degraded = timeReads(raid5.volume, smallAt, target);
    ratios.raid5DegradedRead?.push(degraded / optimal);
    const spare = Disk.create({ capacityBytes: DISK_BYTES });
    const old = raid5.group.disks[1] as Disk;
    raid5.group.startRebuild(1, spare);
    const rebuildStart = process.hrtime.bigint();
    while (raid5.group.rebuildStep(RaidGroup.DEFAULT_REBUILD_STEP_BYTES) > 0) {
      // steps back to back: the rate of the native rebuild alone
    }
    const rebuildRate = raid5.group.memberBytes / (Number(process.hrtime.bigint() - rebuildStart) / 1e9);
    const copy = Buffer.alloc(RaidGroup.DEFAULT_REBUILD_STEP_BYTES);
    const copyStart = process.hrtime.bigint();
    for (let offset = 0; offset < raid5.group.memberBytes; offset += copy.length) {
      (raid5.group.disks[0] as Disk).read(offset, copy);
      old.write(offset, copy);
    }
    const copyRate = raid5.group.memberBytes / (Number(process.hrtime.bigint() - copyStart) / 1e9);
    ratios.rebuildVsCopy?.push(rebuildRate / copyRate);
    old.close();
    process.stderr.write(`raid: round ${round + 1}/${ROUNDS} done\n`);
  }
  const result = {
    suite: 'raid',
    date: new Date().toISOString(),
    machine: `${os.cpus()[0]?.model ?? 'unknown'} x${os.cpus().length}, ${Math.round(os.totalmem() / 2 ** 30)} GiB`,
    rounds: ROUNDS,
    busy,
    ratios: Object.fromEntries(Object.entries(ratios).map(([key, values]) => [key, summary(values)])),
    singleBytesPerSecond: Object.fromEntries(Object.entries(absolute).map(([key, values]) => [key, summary(values)])),
  };
  for (const [key, value] of Object.entries(result.ratios)) {
    process.stdout.write(`  ${key.padEnd(20)} median ${fixed(value.median, 2)}  (min ${fixed(value.min, 2)}, max ${fixed(value.max, 2)})\n`);
  }
  for (const s of setups) {
    s.group.close();
    await s.volume.close();
    for (const disk of s.disks) disk.close();
  }
  writeResults('raid', result);
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`${String(error)}\n`);
  process.exit(1);
});
