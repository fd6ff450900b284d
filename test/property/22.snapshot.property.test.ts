// Property test of SnapshotStore against a model made of plain Buffers: the live volume is one
// Buffer, every snapshot is a copy of it taken when the snapshot was created. Any sequence of
// writes, zeroes, trims, snapshot creates, deletes, restores and reads leaves the volume equal to
// the model and every snapshot reading exactly its copy; the store's chunks all come back once
// every snapshot is deleted. The seed is printed on failure; rerun with
// STORAGE_PROPERTY_SEED=<seed> (and _RUNS=<n>).

import * as assert from 'node:assert/strict';

import fc from 'fast-check';

import { SnapshotStore } from '../../src/storage/snapshot';
import { Volume } from '../../src/storage/volume';

const SEED = process.env.STORAGE_PROPERTY_SEED !== undefined ? Number(process.env.STORAGE_PROPERTY_SEED) : Date.now() % 2 ** 31;
const RUNS = process.env.STORAGE_PROPERTY_RUNS !== undefined ? Number(process.env.STORAGE_PROPERTY_RUNS) : 60;

const KiB = 1024;

type Op =
  | { op: 'write'; byteOffset: number; byteLength: number; seed: number }
  | { op: 'zero' | 'trim'; byteOffset: number; byteLength: number; punch: boolean }
  | { op: 'create' }
  | { op: 'delete' | 'restore'; pick: number }
  | { op: 'read'; pick: number; byteOffset: number; byteLength: number };

function spanArbitrary(capacityBytes: number, blockSize: number): fc.Arbitrary<{ byteOffset: number; byteLength: number }> {
  // Block-aligned more often than not, so whole chunks are overwritten as well as pieces.
  const aligned = fc.integer({ min: 0, max: capacityBytes / blockSize - 1 }).chain((block) =>
    fc.record({
      byteOffset: fc.constant(block * blockSize),
      byteLength: fc.integer({ min: 1, max: Math.min(16, capacityBytes / blockSize - block) }).map((count) => count * blockSize),
    }),
  );
  const any = fc.integer({ min: 0, max: capacityBytes }).chain((byteOffset) =>
    fc.record({ byteOffset: fc.constant(byteOffset), byteLength: fc.integer({ min: 0, max: Math.min(capacityBytes - byteOffset, 40 * KiB) }) }),
  );
  return fc.oneof(aligned, any);
}

function opArbitrary(capacityBytes: number, blockSize: number): fc.Arbitrary<Op> {
  const span = spanArbitrary(capacityBytes, blockSize);
  const pick = fc.nat();
  return fc.oneof(
    { weight: 8, arbitrary: fc.tuple(span, fc.nat()).map(([s, seed]) => ({ op: 'write' as const, ...s, seed })) },
    { weight: 2, arbitrary: fc.tuple(fc.constantFrom('zero' as const, 'trim' as const), span, fc.boolean()).map(([op, s, punch]) => ({ op, ...s, punch })) },
    { weight: 3, arbitrary: fc.constant({ op: 'create' as const }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('delete' as const), pick }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('restore' as const), pick }) },
    { weight: 3, arbitrary: fc.tuple(pick, span).map(([p, s]) => ({ op: 'read' as const, pick: p, ...s })) },
  );
}

const scenarioArbitrary = fc
  .record({
    // 256 KiB .. 1 MiB plus a partial chunk at the end sometimes.
    capacityBlocks: fc.integer({ min: 64, max: 260 }),
    blockSize: fc.constantFrom(512, 4096),
    chunkShift: fc.integer({ min: 0, max: 4 }),
  })
  .chain(({ capacityBlocks, blockSize, chunkShift }) => {
    const capacityBytes = capacityBlocks * 4096;
    return fc.record({
      capacityBytes: fc.constant(capacityBytes),
      blockSize: fc.constant(blockSize),
      chunkBytes: fc.constant(Math.max(blockSize, 4096) * 2 ** chunkShift),
      ops: fc.array(opArbitrary(capacityBytes, blockSize), { minLength: 1, maxLength: 50, size: 'max' }),
    });
  });

function fillPattern(bytes: Buffer, seed: number): void {
  let x = (seed | 0) ^ 0x9e3779b9 || 1;
  for (let i = 0; i < bytes.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    bytes[i] = x & 0xff;
  }
}

describe('22 snapshot property', function () {
  this.timeout(600_000);

  it(`matches a model of plain Buffers (seed ${SEED}, ${RUNS} runs)`, async () => {
    await fc.assert(
      fc.asyncProperty(scenarioArbitrary, async ({ capacityBytes, blockSize, chunkBytes, ops }) => {
        const volume = Volume.create({ capacityBytes, blockSize });
        // A store as large as 40 volumes: overflow is tested elsewhere, here every snapshot stays valid.
        const store = SnapshotStore.create(volume, { chunkBytes, storeBytes: capacityBytes * 40 });
        const live = Buffer.alloc(capacityBytes);
        const snapshots: { name: string; image: Buffer; snapshot: ReturnType<SnapshotStore['createSnapshot']> }[] = [];
        let counter = 0;
        try {
          for (const op of ops) {
            switch (op.op) {
              case 'write': {
                const data = Buffer.alloc(op.byteLength);
                fillPattern(data, op.seed);
                volume.write(op.byteOffset, data);
                data.copy(live, op.byteOffset);
                break;
              }
              case 'zero':
                volume.writeZeroes(op.byteOffset, op.byteLength, { mayPunchHole: op.punch });
                live.fill(0, op.byteOffset, op.byteOffset + op.byteLength);
                break;
              case 'trim':
                volume.trim(op.byteOffset, op.byteLength);
                live.fill(0, op.byteOffset, op.byteOffset + op.byteLength);
                break;
              case 'create':
                if (snapshots.length < SnapshotStore.MAX_SNAPSHOTS) {
                  const name = `p${counter++}`;
                  snapshots.push({ name, image: Buffer.from(live), snapshot: store.createSnapshot(name) });
                }
                break;
              case 'delete':
                if (snapshots.length > 0) {
                  const [gone] = snapshots.splice(op.pick % snapshots.length, 1);
                  gone!.snapshot.delete();
                }
                break;
              case 'restore':
                if (snapshots.length > 0) {
                  const chosen = snapshots[op.pick % snapshots.length]!;
                  chosen.snapshot.restore();
                  chosen.image.copy(live);
                }
                break;
              case 'read':
                if (snapshots.length > 0) {
                  const chosen = snapshots[op.pick % snapshots.length]!;
                  const got = Buffer.alloc(op.byteLength);
                  chosen.snapshot.read(op.byteOffset, got);
                  assert.ok(got.equals(chosen.image.subarray(op.byteOffset, op.byteOffset + op.byteLength)), `read of ${chosen.name} [${op.byteOffset}, +${op.byteLength})`);
                }
                break;
            }
          }
          const bytes = Buffer.alloc(capacityBytes);
          volume.read(0, bytes);
          assert.ok(bytes.equals(live), 'the volume equals the model');
          for (const { name, image, snapshot } of snapshots) {
            snapshot.read(0, bytes);
            assert.ok(bytes.equals(image), `snapshot ${name} equals its copy`);
            assert.equal(snapshot.status().state, 'valid');
            // Holes of the allocation map read as zeros in the image.
            for (const extent of snapshot.allocationMap()) {
              if (!extent.allocated) assert.ok(image.subarray(extent.byteOffset, extent.byteOffset + extent.byteLength).every((b) => b === 0), `${name}: hole at ${extent.byteOffset} reads zero`);
            }
          }
          for (const { snapshot } of snapshots) snapshot.delete();
          assert.equal(store.stats().storeChunksUsed, 0, 'every store chunk came back');
        } finally {
          await store.close();
          await volume.close();
        }
      }),
      { seed: SEED, numRuns: RUNS, endOnFailure: true },
    );
  });
});
