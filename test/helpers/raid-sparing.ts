// Helpers for the tests of a RAID sparing, through a real serve (interop 80: diversion to a work
// volume, 81: diversion to a work disk): the fio verify jobs they write and check with, the way
// they turn a member disk suspect without an error reaching the client, and the removal of every
// shared-memory object their controller made. Moved out of 80 so 81 runs the same story.
//
// Every shared region of such a test (disks, RAID metadata, work volume and work disk maps) has
// the test's prefix in its name (the controller id and the sharedNames carry it), so
// removeRegions() unlinks exactly those.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { Disk } from '../../src/storage/disk';
import { run } from './tools';

const SHM_DIRECTORY = '/dev/shm';

/**
 * A fio job writing `size` bytes from `offset` in random 4 KiB blocks with crc32c verify headers
 * (the caller adds `--do_verify=0` to write, `--verify_only=1` to check).
 */
export function fioVerifyJob(name: string, offset: string, size: string, seed: number): (uri: string) => string[] {
  return (uri) => [`--name=${name}`, '--ioengine=nbd', `--uri=${uri}`, '--rw=randwrite', '--bs=4k', '--iodepth=16',
    `--offset=${offset}`, `--size=${size}`, '--verify=crc32c', '--verify_fatal=1', '--verify_dump=0', `--randseed=${seed}`];
}

export interface MakeSuspectOptions {
  /** The NBD URI of a volume on the group. */
  uri: string;
  /** The shared name of the spare disk, whose writes are slowed so the sparing runs long. */
  spareSharedName: string;
  /** The shared name of the member disk to turn suspect (its errorThreshold at most 8). */
  suspectSharedName: string;
  /** Latency of each of the spare's writes. @default 20 */
  spareLatencyMs?: number;
}

/**
 * Slows the spare's writes, fails the suspect disk's reads while qemu-io reads the first 8 MiB of
 * the volume (raid5 rebuilds those reads from parity: the client sees no error, and the disk's
 * error counter crosses its threshold), then clears the read fault. Returns the spare, opened,
 * with its latency fault still set: the caller clears it to let the sparing end, and closes it.
 */
export async function makeSuspect(options: MakeSuspectOptions): Promise<Disk> {
  const spare = Disk.open({ name: options.spareSharedName });
  spare.addFault({ operations: 'write', errno: 0, latencyMs: options.spareLatencyMs ?? 20 });
  const suspect = Disk.open({ name: options.suspectSharedName });
  try {
    suspect.addFault({ operations: 'read', errno: 5 });
    const read = await run('qemu-io', ['-f', 'raw', '-r', '-c', 'read 0 4M', '-c', 'read 4M 4M', options.uri], { check: false, timeoutMs: 60_000 });
    assert.equal(read.code, 0, read.stdout + read.stderr);
    assert.doesNotMatch(read.stdout + read.stderr, /error|failed/i, 'a read of the failing disk reached the client');
  } finally {
    suspect.clearFaults();
    suspect.close();
  }
  return spare;
}

/** Unlinks every /dev/shm object whose name contains `prefix`. */
export function removeRegions(prefix: string): void {
  for (const name of fs.readdirSync(SHM_DIRECTORY)) {
    if (name.includes(prefix)) fs.rmSync(path.join(SHM_DIRECTORY, name), { force: true });
  }
}

/**
 * The same story in-process (scenarios 36 to 38): slows the spare `<controllerId>.s0`, fails the
 * first 64 KiB of `<controllerId>.d1`'s reads and reads them twice through `volume` (raid5 rebuilds
 * them from parity; a threshold of 2 turns d1 suspect). Returns both disks, opened: the caller
 * clears `spareLatency` on the spare to let the sparing end, and closes them.
 */
export function makeSuspectInProcess(controllerId: string, volume: { read(byteOffset: number, target: Buffer): unknown }): { spare: Disk; spareLatency: number; suspect: Disk } {
  const spare = Disk.open({ name: `${controllerId}.s0` });
  const spareLatency = spare.addFault({ operations: 'write', errno: 0, latencyMs: 20 });
  const suspect = Disk.open({ name: `${controllerId}.d1` });
  suspect.addFault({ operations: 'read', byteOffset: 0, byteLength: 64 * 1024 });
  const piece = Buffer.alloc(64 * 1024);
  for (let i = 0; i < 2; i++) volume.read(64 * 1024, piece);
  return { spare, spareLatency, suspect };
}
