// A primary volume's kept journal across a crash between store and record (journal-feed.ts,
// replicated-volume.ts): a payload that landed in the store but whose record was never appended
// (the writer died) is found by the next opener in the journal's intent list and journaled
// again from the store, as a new record after every other; the journal keeps its id and its
// sequence numbers. The crash is made deterministic: a direct write begun and never committed
// leaves exactly the state a SIGKILL while its payload lands leaves.

import { strict as assert } from 'node:assert';

import { JournalFeed, journalTargetOf } from '../../src/replication/journal-feed';
import { ReplicatedVolume } from '../../src/replication/replicated-volume';
import { realClock } from '../../src/runtime/clock';
import { Journal } from '../../src/storage/journal';
import { Volume } from '../../src/storage/volume';

const KiB = 1024;
const MiB = 1024 * KiB;
const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined, debug: () => undefined };

describe('77 a kept journal across a crash between store and record (integration)', function () {
  this.timeout(60_000);
  const name = `bm-test-77-${process.pid}`;
  const options = { journalCapacityBytes: 4 * MiB, maxRecordBytes: 1 * MiB, pollIntervalMs: 1000 };
  const toClose: { close(): Promise<void> }[] = [];

  afterEach(async () => {
    for (const item of toClose.splice(0).reverse()) await item.close().catch(() => undefined);
    Volume.unlink({ name });
    Journal.unlink({ name });
  });

  function kept(volume: Volume): ConstructorParameters<typeof ReplicatedVolume>[4] {
    const target = journalTargetOf(volume);
    assert.ok(target !== null);
    return { target, newId: () => 0x5eed_1234, log: quiet as never };
  }

  it('journals a payload that landed without its record again from the store; id and sequences continue', async () => {
    const first = Volume.create({ capacityBytes: 16 * MiB, backing: 'shared', name });
    toClose.push(first);
    const replicated = new ReplicatedVolume(first, realClock, options, undefined, kept(first));
    assert.equal(replicated.feed.reopened, false, 'a new journal');
    assert.equal(replicated.journal.id, 0x5eed_1234);
    replicated.write(0, Buffer.alloc(8 * KiB, 0x11));
    replicated.write(64 * KiB, Buffer.alloc(4 * KiB, 0x22));
    assert.equal(replicated.journal.nextSequence, 3);
    // The writer "dies" while a payload lands: begun, half the bytes there, never committed.
    const view = first.beginDirectWrite(1 * MiB, 128 * KiB);
    assert.ok(view !== null, 'a journaled volume lands a direct write (listed as an intent)');
    view.fill(0x33, 0, 64 * KiB);

    // The next run opens the same volume and journal.
    const second = Volume.open({ name });
    toClose.push(second);
    const found = Journal.open({ name });
    assert.deepEqual(found.pendingIntents().map(({ byteOffset, byteLength, kind }) => ({ byteOffset, byteLength, kind })),
      [{ byteOffset: 1 * MiB, byteLength: 128 * KiB, kind: 'write' }], 'the intent is in the journal');
    await found.close();
    const restarted = new ReplicatedVolume(second, realClock, options, undefined, kept(second));
    toClose.push(restarted);
    assert.equal(restarted.feed.reopened, true);
    assert.equal(restarted.feed.resumable, true, 'every intent was journaled again');
    assert.equal(restarted.journal.id, 0x5eed_1234, 'the id is kept');
    assert.equal(restarted.journal.nextSequence, 4, 'the two records are kept and the intent became record 3');
    const records = restarted.journal.read(1, { maxRecords: 10, maxBytes: 4 * MiB });
    assert.deepEqual(records.map((r) => [r.sequence, r.byteOffset, r.byteLength]), [[1, 0, 8 * KiB], [2, 64 * KiB, 4 * KiB], [3, 1 * MiB, 128 * KiB]]);
    const stored = Buffer.alloc(128 * KiB);
    second.read(1 * MiB, stored);
    assert.ok((records[2] as { data: Buffer }).data.equals(stored), 'the record holds what the store holds');
    assert.equal(stored[0], 0x33);
    assert.equal(stored[64 * KiB], 0);
    // Nothing is pending any more: a third open finds no intent.
    const again = Journal.open({ name });
    assert.deepEqual(again.pendingIntents(), []);
    await again.close();
  });

  it('a journal found with other limits is replaced (not resumable); a pair delete removes it', async () => {
    const volume = Volume.create({ capacityBytes: 16 * MiB, backing: 'shared', name });
    toClose.push(volume);
    const first = new ReplicatedVolume(volume, realClock, options, undefined, kept(volume));
    first.write(0, Buffer.alloc(4 * KiB, 1));
    await first.close();
    const other = new ReplicatedVolume(volume, realClock, { ...options, journalCapacityBytes: 8 * MiB }, undefined, kept(volume));
    toClose.push(other);
    assert.equal(other.feed.reopened, false);
    assert.equal(other.feed.resumable, false);
    assert.equal(other.journal.nextSequence, 1, 'a new journal');
    await other.close();
    JournalFeed.unlink(journalTargetOf(volume));
    assert.throws(() => Journal.open({ name }), { code: 'ERR_REGION_NOT_FOUND' });
  });
});
