// Notes on the design
// -------------------
// Property test of diversion variant (b)'s address map against a model. Two volumes laid on one
// raid5 group divert through one shared work volume; any sequence of writes (whole blocks,
// partial, across blocks) and reads, with the work volume small enough to fill, must give:
// reads equal to the model bytes (the newest always wins); terminal = the model's count of
// appended slots (one per block piece while not full, 1-based, null before the first), the slot
// bitmap exactly '1' x terminal; lookup(main, block) = the model's newest slot for that block (0
// when never diverted); no write reaching the group while not full (the load is taken off the
// weak group); once full, pieces of diverted blocks updated in place and the others written to
// the group; a reopen of the shared region showing the same tables; copy-back leaving the group
// equal to the model and the tables reset. The seed is printed on failure; rerun with
// STORAGE_PROPERTY_SEED=<seed> (and _RUNS=<n>).
import * as assert from 'node:assert/strict';

import fc from 'fast-check';

import { WorkVolume } from '../../src/storage/diversion';
import { Disk } from '../../src/storage/disk';
import { RaidGroup } from '../../src/storage/raid-group';
import { Volume } from '../../src/storage/volume';
import { uniqueName } from '../helpers/storage';

const SEED = process.env.STORAGE_PROPERTY_SEED !== undefined ? Number(process.env.STORAGE_PROPERTY_SEED) : Date.now() % 2 ** 31;
const RUNS = process.env.STORAGE_PROPERTY_RUNS !== undefined ? Number(process.env.STORAGE_PROPERTY_RUNS) : 60;
const SLOT = 4096;
const VOLUME_BYTES = 64 * SLOT;
const SLOTS = 24;

type Op = { op: 'write'; main: number; offset: number; length: number; fill: number } | { op: 'read'; main: number; offset: number; length: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constant('write' as const), main: fc.integer({ min: 0, max: 1 }), offset: fc.integer({ min: 0, max: VOLUME_BYTES / 512 - 1 }).map((s) => s * 512),
    length: fc.integer({ min: 1, max: 24 }).map((s) => s * 512), fill: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ op: fc.constant('write' as const), main: fc.integer({ min: 0, max: 1 }), offset: fc.integer({ min: 0, max: 60 }).map((b) => b * SLOT),
    length: fc.integer({ min: 1, max: 3 }).map((b) => b * SLOT), fill: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ op: fc.constant('read' as const), main: fc.integer({ min: 0, max: 1 }), offset: fc.integer({ min: 0, max: VOLUME_BYTES / 512 - 1 }).map((s) => s * 512),
    length: fc.integer({ min: 1, max: 32 }).map((s) => s * 512) }),
);

describe('25 diversion address map property', () => {
  it('two main volumes on one work volume match a model of slots, map, bitmap, fallback and copy-back', () => {
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 60 }), (ops) => {
        const disks = [0, 1, 2].map(() => Disk.create({ capacityBytes: 1 << 20 }));
        const group = RaidGroup.create({ level: 'raid5', disks, stripeUnitBytes: 16 * 1024 });
        const volumes = [0, 1].map((i) => Volume.create({ capacityBytes: VOLUME_BYTES }));
        volumes.forEach((v, i) => {
          group.allocateExtent(`v${i}`, VOLUME_BYTES);
          group.attachVolume(v, `v${i}`);
        });
        const name = uniqueName('wv');
        const work = WorkVolume.create({ capacityBytes: SLOTS * SLOT, backing: 'shared', name });
        try {
          const base = volumes.map(() => Buffer.alloc(VOLUME_BYTES));
          volumes.forEach((v, i) => {
            const seedBytes = Buffer.alloc(VOLUME_BYTES, 0x11 * (i + 1));
            v.write(0, seedBytes);
            seedBytes.copy(base[i] as Buffer);
          });
          const mains = volumes.map((v) => group.divertVolume(v, work));
          assert.deepEqual(mains, [0, 1]);
          work.start();
          const model = base.map((b) => Buffer.from(b));
          const newest = new Map<string, number>();
          let terminal = 0;
          const groupWritesBefore = group.stats().writeCount;
          let groupPieces = 0;
          for (const op of ops) {
            const main = op.main;
            const length = Math.min(op.length, VOLUME_BYTES - op.offset);
            if (op.op === 'read') {
              const got = Buffer.alloc(length);
              volumes[main]?.read(op.offset, got);
              assert.ok(got.equals((model[main] as Buffer).subarray(op.offset, op.offset + length)), `read ${main} ${op.offset}+${length}`);
              continue;
            }
            const data = Buffer.alloc(length, op.fill);
            volumes[main]?.write(op.offset, data);
            data.copy(model[main] as Buffer, op.offset);
            for (let at = op.offset; at < op.offset + length;) {
              const block = Math.floor(at / SLOT);
              const pieceEnd = Math.min((block + 1) * SLOT, op.offset + length);
              const key = `${main}:${block}`;
              if (terminal < SLOTS) newest.set(key, ++terminal);
              else if (!newest.has(key)) groupPieces++;
              at = pieceEnd;
            }
          }
          assert.equal(work.terminal, terminal === 0 ? null : terminal);
          assert.equal(work.bitmap(SLOTS), '1'.repeat(terminal) + '0'.repeat(SLOTS - terminal));
          assert.equal(work.state, terminal === 0 ? 'diverting' : terminal === SLOTS ? 'full' : 'diverting');
          for (let m = 0; m < 2; m++) {
            for (let b = 0; b < VOLUME_BYTES / SLOT; b++) assert.equal(work.lookup(m, b), newest.get(`${m}:${b}`) ?? 0, `lookup ${m}:${b}`);
          }
          assert.equal(group.stats().writeCount - groupWritesBefore, groupPieces, 'only fallback pieces reach the group');
          assert.equal(work.stats().fallbackWrites, groupPieces);
          // The shared region shows the same tables (what a restart after SIGKILL opens).
          const reopened = WorkVolume.open({ name });
          assert.equal(reopened.terminal, work.terminal);
          assert.equal(reopened.bitmap(SLOTS), work.bitmap(SLOTS));
          assert.deepEqual(reopened.mains, volumes.map((v) => v.id));
          reopened.close();
          // Copy-back: the group holds the model, the tables are reset.
          work.beginCopyBack();
          const copying = (): boolean => work.state === 'copying-back';
          while (copying()) work.copyBackStep(5);
          assert.equal(work.terminal, null);
          assert.equal(work.bitmap(SLOTS), '0'.repeat(SLOTS));
          volumes.forEach((v) => group.divertVolume(v, null));
          for (let m = 0; m < 2; m++) {
            const got = Buffer.alloc(VOLUME_BYTES);
            volumes[m]?.read(0, got);
            assert.ok(got.equals(model[m] as Buffer), `volume ${m} after copy-back`);
          }
        } finally {
          work.close();
          WorkVolume.unlink(name);
          group.close();
          for (const v of volumes) v.close();
          for (const d of disks) d.close();
        }
      }),
      { seed: SEED, numRuns: RUNS, verbose: 1 },
    );
  });
});
