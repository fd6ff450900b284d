// Worker of 14.lifetimes: opens native objects and never closes them. Depending on workerData.mode
// it keeps them reachable and ends (its environment tears down with them open), or waits to be
// terminated. The parent checks that the mappings are gone after the worker exits.

import * as fs from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';

import { Journal } from '../../../src/storage/journal';
import { Region } from '../../../src/storage/region';
import { Volume } from '../../../src/storage/volume';

const { name, label, mode } = workerData as { name: string; label: string; mode: 'end' | 'wait' };

const kept: unknown[] = [];
const volume = Volume.open({ name });
volume.write(0, Buffer.from('from the worker'));
kept.push(volume, volume.openBitmap('dirty'));
kept.push(Volume.create({ capacityBytes: 1 << 20, name: label }));
kept.push(Region.create({ byteLength: 65536, name: label }));
kept.push(Journal.create({ capacityBytes: 65536 }));
(globalThis as { kept?: unknown[] }).kept = kept;

const mappings = fs
  .readFileSync('/proc/self/maps', 'utf8')
  .split('\n')
  .filter((line) => line.includes(name) || line.includes(label)).length;
parentPort?.postMessage({ ready: true, mappings });
if (mode === 'wait') parentPort?.on('message', () => undefined);
