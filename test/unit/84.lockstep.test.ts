// The lockstep barrier's own logic (src/replication/lockstep.ts) with receivers the test steers:
// a marker append the journal refuses (full) is retried with a new marker, a journal that is
// gone gives not-done, argument checks, and close() releases every waiting caller.
import * as assert from 'node:assert/strict';

import { Lockstep, type LockstepMember, type LockstepResult } from '../../src/replication/lockstep';
import type { PrimaryPair } from '../../src/replication/primary-pair';
import { SimClock } from '../../src/sim/sim-clock';
import type { Journal } from '../../src/storage/journal';

const SILENT = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

/** A journal whose appends answer from a script: 0 = full, -1 = throw, else the next sequence. */
function scriptedJournal(script: number[]): Journal & { appends: number } {
  let next = 100;
  const journal = {
    appends: 0,
    closed: false,
    append(): number {
      journal.appends++;
      const step = script.shift() ?? 1;
      if (step === -1) throw new Error('journal closed');
      if (step === 0) return 0;
      return next++;
    },
  };
  return journal as unknown as Journal & { appends: number };
}

/** A receiver that safe-stores markers once `release` is called for them. */
function receiver(name: string) {
  const waiting = new Map<number, () => void>();
  const failing = new Map<number, () => void>();
  const stored: number[] = [];
  const pair = {
    name,
    safeStore: (marker: number) => new Promise<void>((resolve, reject) => {
      waiting.set(marker, () => { stored.push(marker); resolve(); });
      failing.set(marker, () => reject(new Error(`pair ${name} is closed`)));
    }),
  } as unknown as PrimaryPair;
  return { pair, stored, release: (marker: number) => waiting.get(marker)?.(), fail: (marker: number) => failing.get(marker)?.(), waiting };
}

describe('84 lockstep barrier (unit)', () => {
  it('retries a marker the full journal refused, with a new marker, and counts only markers that went in', async () => {
    const clock = new SimClock();
    const journal = scriptedJournal([0, 0, 1]);
    const r = receiver('p0');
    const notified: number[] = [];
    const member: LockstepMember = { pair: r.pair, volume: 'vol0', journal, notify: (sequence) => notified.push(sequence) };
    const lockstep = new Lockstep(() => [member], clock, SILENT);
    let result: LockstepResult | undefined;
    void lockstep.lockstep({ pairs: ['p0'] }).then((value) => { result = value; });
    await clock.runFor(100);
    assert.equal(journal.appends, 3, 'two refusals, then the marker');
    assert.deepEqual(notified, [100]);
    assert.equal(lockstep.markersIssued, 1);
    assert.equal(result, undefined, 'not done before the receiver safe-stored it');
    r.release(100);
    await clock.runFor(1);
    assert.equal(result, 'done');
  });

  it('a journal that fails for good gives not-done; close() releases every waiting caller with not-done', async () => {
    const clock = new SimClock();
    const broken = scriptedJournal([-1]);
    const r = receiver('p0');
    const lockstep = new Lockstep(() => [{ pair: r.pair, volume: 'vol0', journal: broken, notify: () => undefined }], clock, SILENT);
    assert.equal(await lockstep.lockstep({}), 'not-done');
    const healthy = scriptedJournal([]);
    const r2 = receiver('p1');
    const other = new Lockstep(() => [{ pair: r2.pair, volume: 'vol1', journal: healthy, notify: () => undefined }], clock, SILENT);
    const results: LockstepResult[] = [];
    const calls = [other.lockstep({}), other.lockstep({}), other.lockstep({})].map((promise) => promise.then((value) => results.push(value)));
    await clock.runFor(1);
    other.close();
    await Promise.all(calls);
    assert.deepEqual(results, ['not-done', 'not-done', 'not-done']);
    assert.equal(await other.lockstep({}), 'not-done', 'closed');
  });

  it('a wave whose callers all timed out ends: the next caller gets a new marker, and the old marker stored late releases nobody', async () => {
    const clock = new SimClock();
    const journal = scriptedJournal([]);
    const r = receiver('p0');
    const lockstep = new Lockstep(() => [{ pair: r.pair, volume: 'vol0', journal, notify: () => undefined }], clock, SILENT);
    const first = lockstep.lockstep({ timeoutMs: 5 }).then((value) => value, (error: { code?: string }) => error.code);
    await clock.runFor(10);
    assert.equal(await first, 'ERR_LOCKSTEP_TIMEOUT');
    let second: LockstepResult | undefined;
    void lockstep.lockstep({}).then((value) => { second = value; });
    await clock.runFor(1);
    assert.deepEqual([...r.waiting.keys()], [100, 101], 'a new marker for the new wave');
    r.release(100);
    await clock.runFor(1);
    assert.equal(second, undefined, 'the old marker is not the new caller\'s');
    r.release(101);
    await clock.runFor(1);
    assert.equal(second, 'done');
    assert.deepEqual({ waves: lockstep.waves, markers: lockstep.markersIssued, inFlight: lockstep.status().inFlight }, { waves: 2, markers: 2, inFlight: 0 });
  });

  it('pairs of one volume share its one marker; each caller waits for its own pairs only; a pair that fails gives not-done to its callers', async () => {
    const clock = new SimClock();
    const shared = scriptedJournal([]);
    const other = scriptedJournal([]);
    const [a, b, c] = [receiver('pA'), receiver('pB'), receiver('pC')];
    const notified: string[] = [];
    const member = (r: ReturnType<typeof receiver>, volume: string, journal: Journal): LockstepMember =>
      ({ pair: r.pair, volume, journal, notify: (sequence) => notified.push(`${(r.pair as unknown as { name: string }).name}@${sequence}`) });
    const lockstep = new Lockstep(() => [member(a, 'v0', shared), member(b, 'v0', shared), member(c, 'v1', other)], clock, SILENT);
    const results = new Map<string, LockstepResult>();
    const call = (name: string, target: Parameters<Lockstep['lockstep']>[0]): void => {
      void lockstep.lockstep(target).then((value) => { results.set(name, value); });
    };
    call('c0', { pairs: ['pC'] });
    // Arriving while c0's marker is in flight: one wave after it.
    call('v0', { volumes: ['v0'] });
    call('pC', { pairs: ['pC'] });
    call('all', {});
    call('pC-again', { journals: ['v1'] });
    assert.deepEqual(notified, ['pC@100']);
    c.release(100);
    await clock.runFor(1);
    assert.deepEqual([...results], [['c0', 'done']]);
    assert.equal(shared.appends, 1, 'one marker for the two pairs of v0');
    assert.equal(other.appends, 2);
    assert.deepEqual(notified, ['pC@100', 'pA@100', 'pB@100', 'pC@101']);
    a.release(100);
    c.release(101);
    await clock.runFor(1);
    assert.deepEqual([...results.keys()].sort(), ['c0', 'pC', 'pC-again'], 'v0 and all still wait for pB');
    b.fail(100);
    await clock.runFor(1);
    assert.deepEqual(Object.fromEntries(results), { c0: 'done', pC: 'done', 'pC-again': 'done', v0: 'not-done', all: 'not-done' });
    assert.deepEqual({ waves: lockstep.waves, lastWaveCallers: lockstep.lastWaveCallers, callers: lockstep.callers }, { waves: 2, lastWaveCallers: 4, callers: 5 });
  });

  it('checks its arguments', () => {
    const lockstep = new Lockstep(() => [], new SimClock(), SILENT);
    assert.throws(() => lockstep.lockstep({ pairs: 'p0' as unknown as string[] }), TypeError);
    assert.throws(() => lockstep.lockstep({ timeoutMs: -1 }), RangeError);
    assert.throws(() => lockstep.lockstep({ volumes: ['v0', 1 as unknown as string] }), TypeError);
    assert.throws(() => lockstep.setEnabled('yes' as unknown as boolean), TypeError);
  });
});
