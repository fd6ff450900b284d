// A writer for 31.crash that the parent kills with SIGKILL. It opens the shared volume, region
// and journal named on its command line and writes chunks of a known pattern, reporting each
// chunk after the call that stored it returned. Mode 'all' writes everything, reports and waits to
// be killed; mode 'loop' keeps writing until it is killed in the middle.

import { Journal } from '../../../src/storage/journal';
import { Region } from '../../../src/storage/region';
import { Volume } from '../../../src/storage/volume';
import { CHUNK_BYTES, PIECES, chunkData } from './crash-pattern';

const [mode, volumeName, regionName, journalName, chunkCountText] = process.argv.slice(2) as [string, string, string, string, string];
const chunkCount = Number(chunkCountText);

const volume = Volume.open({ name: volumeName });
const region = Region.open({ kind: 'shared', name: regionName });
const journal = Journal.open({ name: journalName });
volume.attachJournal(journal);

/** Chunk i of round r, written with one writev of its pieces; returns the last piece's sequence. */
function writeChunk(i: number, round: number): number {
  const byteOffset = i * CHUNK_BYTES;
  const data = chunkData(i, round);
  const writes = PIECES.slice(0, -1).map((cut, k) => ({ byteOffset: byteOffset + cut, data: data.subarray(cut, PIECES[k + 1]) }));
  const sequences = new Float64Array(writes.length);
  volume.writev(writes, sequences);
  region.write(byteOffset % region.byteLength, data.subarray(0, 4096));
  return sequences[sequences.length - 1] as number;
}

if (mode === 'all') {
  let lastSequence = 0;
  for (let i = 0; i < chunkCount; i++) lastSequence = writeChunk(i, 0);
  process.send?.({ done: chunkCount, lastSequence });
  // Stay alive (the IPC channel keeps the loop running) until the parent kills us.
} else {
  let pass = 0;
  const step = (): void => {
    for (let k = 0; k < 8; k++) {
      const i = (pass * 8 + k) % chunkCount;
      const sequence = writeChunk(i, Math.floor((pass * 8 + k) / chunkCount));
      process.send?.({ chunk: i, round: Math.floor((pass * 8 + k) / chunkCount), sequence });
    }
    pass++;
    setImmediate(step);
  };
  step();
}
