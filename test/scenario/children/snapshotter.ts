// A writer for 32.snapshot-crash that the parent kills with SIGKILL. It opens the shared volume
// and its snapshot store named on its command line, then writes forever: writes of 4..68 KiB at
// pseudo-random offsets (some whole chunks, most pieces of one or two), a snapshot every 24
// writes, and once six snapshots exist it deletes the oldest. Each step is reported after the
// call that made it returned, so the parent knows exactly what every snapshot must hold.

import { SnapshotStore } from '../../../src/storage/snapshot';
import { Volume } from '../../../src/storage/volume';
import { SNAPSHOT_CRASH_VOLUME_BYTES, SnapshotCrashMessage, writeData } from './snapshot-pattern';

const [volumeName, seedText] = process.argv.slice(2) as [string, string];
const volume = Volume.open({ name: volumeName });
const store = SnapshotStore.open(volume);

let x = Number(seedText) >>> 0 || 1;
function next(): number {
  x ^= x << 13;
  x >>>= 0;
  x ^= x >>> 17;
  x ^= x << 5;
  x >>>= 0;
  return x;
}

const send = (message: SnapshotCrashMessage): void => {
  process.send?.(message);
};
const names: string[] = [];
let writeCount = 0;
let snapshotCount = 0;

// After each snapshot the writer waits for the parent's ack, so it never runs more than one
// snapshot ahead of what the parent has seen (a loaded machine delays the parent, not the kill).
process.on('message', (message: { kind?: string }) => {
  if (message?.kind === 'ack') setImmediate(step);
});

const step = (): void => {
  for (let k = 0; k < 16; k++) {
    const byteLength = 4096 * (1 + (next() % 17));
    const byteOffset = 4096 * (next() % ((SNAPSHOT_CRASH_VOLUME_BYTES - byteLength) / 4096 + 1));
    const seed = next();
    volume.write(byteOffset, writeData(seed, byteLength));
    send({ kind: 'write', byteOffset, byteLength, seed });
    if (++writeCount % 24 === 0) {
      const name = `s${snapshotCount++}`;
      store.createSnapshot(name);
      names.push(name);
      send({ kind: 'snapshot', name });
      if (names.length > 6) {
        const oldest = names.shift() as string;
        store.deleteSnapshot(oldest);
        send({ kind: 'delete', name: oldest });
      }
      return;
    }
  }
  setImmediate(step);
};
step();
