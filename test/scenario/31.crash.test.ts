// Scenario: a writer dies by SIGKILL. The bytes it stored in named shared memory survive it:
// the parent reopens the volume, the region and the journal by name and finds every byte it was
// told about, every bitmap bit those writes set, and journal records that verify.
import * as assert from 'node:assert/strict';

import { Journal } from '../../src/storage/journal';
import { Region } from '../../src/storage/region';
import { Volume } from '../../src/storage/volume';
import { Cleanup, childScript, exited, forkChild, nextMessage } from '../helpers/storage';
import { CHUNK_BYTES, PIECES, chunkData, pieceRound } from './children/crash-pattern';

const CHUNK_COUNT = 64;
const VOLUME_BYTES = 8 << 20;
const TRACK_BYTES = 16 * 1024;

describe('31 crash survival', function () {
  this.timeout(120_000);
  const cleanup = new Cleanup();
  afterEach(() => cleanup.run());

  /** A shared volume (with a dirty bitmap), a shared region and a shared journal, all empty. */
  async function prepare(): Promise<{ volumeName: string; regionName: string; journalName: string }> {
    const volumeName = cleanup.volumeName('crash');
    const regionName = cleanup.regionName('crash');
    const journalName = cleanup.journalName('crash');
    const volume = Volume.create({ capacityBytes: VOLUME_BYTES, backing: 'shared', name: volumeName });
    volume.createBitmap('dirty', { granularityBytes: TRACK_BYTES });
    await volume.close();
    await Region.create({ kind: 'shared', name: regionName, byteLength: 1 << 20 }).close();
    await Journal.create({ kind: 'shared', name: journalName, capacityBytes: 8 << 20, maxRecordBytes: 64 * 1024 }).close();
    return { volumeName, regionName, journalName };
  }

  it('every byte, bitmap bit and journal record written before SIGKILL is there after it', async () => {
    // Given a child that wrote 64 chunks of a known pattern and said so,
    const names = await prepare();
    const child = forkChild(childScript(__dirname, 'crasher'), ['all', names.volumeName, names.regionName, names.journalName, String(CHUNK_COUNT)]);
    const report = await nextMessage<{ done: number; lastSequence: number }>(child);
    assert.equal(report.done, CHUNK_COUNT);

    // when it is killed without any chance to clean up,
    process.kill(child.pid as number, 'SIGKILL');
    assert.deepEqual(await exited(child), { code: null, signal: 'SIGKILL' });

    // then the volume holds the pattern where it wrote and zeros elsewhere,
    const volume = cleanup.close(Volume.open({ name: names.volumeName }));
    const written = CHUNK_COUNT * CHUNK_BYTES;
    const bytes = Buffer.alloc(VOLUME_BYTES);
    volume.read(0, bytes);
    for (let i = 0; i < CHUNK_COUNT; i++) {
      const expected = chunkData(i, 0);
      if (!bytes.subarray(i * CHUNK_BYTES, (i + 1) * CHUNK_BYTES).equals(expected)) assert.fail(`chunk ${i} differs`);
    }
    assert.ok(bytes.subarray(written).every((b) => b === 0), 'nothing beyond what was written');

    // the bitmap has exactly the written tracks,
    const dirty = volume.openBitmap('dirty');
    assert.equal(dirty.count(), written / TRACK_BYTES);
    assert.equal(dirty.findNextClear(), written / TRACK_BYTES);

    // the region has the first page of the last chunk written at each place,
    const region = cleanup.close(Region.open({ kind: 'shared', name: names.regionName }));
    const page = Buffer.alloc(4096);
    for (let i = 0; i < CHUNK_COUNT; i++) {
      region.read((i * CHUNK_BYTES) % region.byteLength, page);
      const last = i + Math.floor((CHUNK_COUNT - 1 - i) / (region.byteLength / CHUNK_BYTES)) * (region.byteLength / CHUNK_BYTES);
      assert.ok(page.equals(chunkData(last, 0).subarray(0, 4096)), `region page of chunk ${i}`);
    }

    // and the journal reopens at its cursors with every record intact and checked.
    const journal = cleanup.close(Journal.open({ name: names.journalName }));
    assert.equal(journal.nextSequence, report.lastSequence + 1);
    assert.equal(journal.headSequence, 1);
    let sequence = 1;
    while (sequence < journal.nextSequence) {
      for (const record of journal.read(sequence, { maxRecords: 64 })) {
        assert.equal(record.sequence, sequence);
        assert.equal(record.volumeId, volume.id);
        const chunk = Math.floor(record.byteOffset / CHUNK_BYTES);
        const start = record.byteOffset - chunk * CHUNK_BYTES;
        assert.ok(record.data.equals(chunkData(chunk, 0).subarray(start, start + record.byteLength)), `record ${sequence}`);
        sequence++;
      }
    }
    assert.equal(sequence - 1, CHUNK_COUNT * (PIECES.length - 1), 'one record per piece');
    assert.equal(journal.append({ byteOffset: 0 }), report.lastSequence + 1, 'sequences continue after the crash');
  });

  it('a writer killed in the middle of its work loses nothing it acknowledged', async () => {
    // Given a child that rewrites chunks in rounds and acknowledges each one,
    const names = await prepare();
    const child = forkChild(childScript(__dirname, 'crasher'), ['loop', names.volumeName, names.regionName, names.journalName, String(CHUNK_COUNT)]);
    const acknowledged = new Map<number, number>(); // chunk -> last acknowledged round
    let lastSequence = 0;
    // when it is killed after 200 acknowledgements, while still writing,
    await new Promise<void>((resolve) => {
      let count = 0;
      child.on('message', (message: { chunk: number; round: number; sequence: number }) => {
        acknowledged.set(message.chunk, message.round);
        if (message.sequence > 0) lastSequence = message.sequence;
        if (++count === 200) {
          process.kill(child.pid as number, 'SIGKILL');
          resolve();
        }
      });
    });
    assert.deepEqual(await exited(child), { code: null, signal: 'SIGKILL' });
    assert.ok(acknowledged.size === CHUNK_COUNT, 'every chunk was acknowledged at least once');

    // then every piece of every acknowledged chunk holds its acknowledged round or a later one,
    // except at most one piece torn by the kill (the one being copied when it landed),
    const volume = cleanup.close(Volume.open({ name: names.volumeName }));
    const dirty = volume.openBitmap('dirty');
    let torn = 0;
    for (const [chunk, round] of acknowledged) {
      const byteOffset = chunk * CHUNK_BYTES;
      const bytes = Buffer.alloc(CHUNK_BYTES);
      volume.read(byteOffset, bytes);
      for (let p = 0; p + 1 < PIECES.length; p++) {
        const pieceRoundFound = pieceRound(chunk, p, bytes.subarray(PIECES[p], PIECES[p + 1]));
        if (pieceRoundFound === undefined) torn++;
        else assert.ok(pieceRoundFound >= round, `chunk ${chunk} piece ${p}: round ${pieceRoundFound} is older than acknowledged ${round}`);
      }
      // and the bitmap has every track of every acknowledged chunk.
      for (let track = byteOffset / TRACK_BYTES; track < (byteOffset + CHUNK_BYTES) / TRACK_BYTES; track++) {
        assert.equal(dirty.test(track), true, `track ${track}`);
      }
    }
    assert.ok(torn <= 1, `${torn} pieces match no acknowledged or later round`);

    // The journal reopens after the crash: every record it holds verifies, and no sequence an
    // acknowledged write got is missing.
    const journal = cleanup.close(Journal.open({ name: names.journalName }));
    assert.ok(journal.nextSequence > lastSequence, `next ${journal.nextSequence}, last acknowledged ${lastSequence}`);
    let sequence = journal.headSequence;
    while (sequence < journal.nextSequence) {
      const records = journal.read(sequence, { maxRecords: 256 });
      assert.ok(records.length > 0);
      for (const record of records) assert.equal(record.sequence, sequence++);
    }
  });
});
