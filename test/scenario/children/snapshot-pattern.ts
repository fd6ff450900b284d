// The writes of the snapshot crash writer (snapshotter.ts), shared with its checker
// (32.snapshot-crash.test.ts): the data of a write is a function of its seed, so the checker can
// replay every acknowledged write into a model without the bytes crossing the IPC channel.

/** Capacity of the volume the writer writes. */
export const SNAPSHOT_CRASH_VOLUME_BYTES = 8 << 20;

/** What the writer reports, in the order things happened. */
export type SnapshotCrashMessage =
  | { kind: 'write'; byteOffset: number; byteLength: number; seed: number }
  | { kind: 'snapshot'; name: string }
  | { kind: 'delete'; name: string };

/** The bytes of a write with this seed (xorshift32). */
export function writeData(seed: number, byteLength: number): Buffer {
  const bytes = Buffer.allocUnsafe(byteLength);
  let x = (seed ^ 0x5bd1e995) >>> 0 || 1;
  for (let i = 0; i < byteLength; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    bytes[i] = x & 0xff;
  }
  return bytes;
}
