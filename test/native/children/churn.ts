// Child of 14.lifetimes: thousands of open/close cycles of every storage class, a quarter of
// them dropped without close, then garbage collection until the finalizers ran. Reports RSS,
// mappings and open native objects before and after, by IPC. Run with --expose-gc.

import * as fs from 'node:fs';

import { addon } from '../../../src/native';
import { Bitmap } from '../../../src/storage/bitmap';
import { Journal } from '../../../src/storage/journal';
import { Region } from '../../../src/storage/region';
import { Volume } from '../../../src/storage/volume';

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run with --expose-gc');

const LABEL = `bmchurn${process.pid}`;

function mappingCount(): number {
  return fs
    .readFileSync('/proc/self/maps', 'utf8')
    .split('\n')
    .filter((line) => line.includes(LABEL)).length;
}

function rssBytes(): number {
  return process.memoryUsage().rss;
}

async function settle(): Promise<void> {
  // Finalizers of native objects run after a collection, from the event loop: collect and yield
  // until no native object is left open, or give up after a bounded number of rounds.
  for (let round = 0; round < 100 && addon.openResourceCount() > 0; round++) {
    gc?.();
    await new Promise((resolve) => setImmediate(resolve));
  }
}

async function cycle(i: number): Promise<void> {
  const drop = i % 4 === 3;
  const volume = Volume.create({ capacityBytes: 1 << 20, name: LABEL });
  const bitmap = volume.createBitmap('oos', { granularityBytes: 4096 });
  const journal = Journal.create({ capacityBytes: 65536 });
  volume.attachJournal(journal);
  volume.write((i * 4096) % (1 << 20), Buffer.alloc(4096, i & 0xff));
  volume.writev([{ byteOffset: 0, data: Buffer.alloc(512, 1) }, { byteOffset: 65536, data: Buffer.alloc(512, 2) }]);
  const region = Region.create({ byteLength: 65536, name: LABEL });
  region.write(0, Buffer.alloc(65536, 3));
  const standalone = Bitmap.create({ bitCount: 4096 });
  standalone.setAll();
  if (i % 16 === 0) {
    await volume.flush();
    // A turn of the event loop, as any program takes between requests: finalizers of dropped
    // objects run there. (A memory volume's flush settles as a microtask now, without a trip
    // through the thread pool, so it no longer gives the loop a turn by itself.)
    await new Promise((resolve) => setImmediate(resolve));
  }
  if (drop) return; // everything above becomes garbage without close()
  standalone.close();
  bitmap.close();
  await region.close();
  await journal.close();
  await volume.close();
}

async function main(): Promise<void> {
  const cycles = Number(process.argv[2] ?? 3000);
  for (let i = 0; i < 200; i++) await cycle(i);
  await settle();
  const before = { rssBytes: rssBytes(), mappings: mappingCount(), open: addon.openResourceCount() };
  for (let i = 0; i < cycles; i++) await cycle(i);
  const peakOpen = addon.openResourceCount();
  await settle();
  const after = { rssBytes: rssBytes(), mappings: mappingCount(), open: addon.openResourceCount() };
  process.send?.({ before, after, peakOpen, cycles });
}

main().catch((error: unknown) => {
  process.send?.({ error: String((error as Error).stack ?? error) });
  process.exitCode = 1;
});
