// The simulator's clock: virtual time, timers in (due time, insertion) order, cancel, runs that
// let async code progress between timers, and errors from callbacks that surface.
import * as assert from 'node:assert/strict';

import { SeededRandom } from '../../src/runtime/random';
import { SimClock } from '../../src/sim/sim-clock';

/** Fires every pending timer synchronously; returns how many fired. */
function stepAll(clock: SimClock): number {
  let firedCount = 0;
  while (clock.step()) firedCount += 1;
  return firedCount;
}

function sleep(clock: SimClock, delayMs: number): Promise<void> {
  return new Promise((resolve) => clock.setTimer(resolve, delayMs));
}

describe('05 sim clock', () => {
  it('starts at 0 ms; wall time is the epoch base plus virtual time', () => {
    const clock = new SimClock();
    assert.equal(clock.nowMs(), 0);
    assert.equal(clock.wallTimeMs(), 1_800_000_000_000);
    const other = new SimClock({ epochMs: 1000 });
    other.setTimer(() => undefined, 25);
    assert.equal(other.step(), true);
    assert.equal(other.nowMs(), 25);
    assert.equal(other.wallTimeMs(), 1025);
  });

  it('fires timers in due order, ties in the order they were set, advancing time to each', () => {
    const clock = new SimClock();
    const fired: string[] = [];
    const record = (label: string) => () => fired.push(`${label}@${clock.nowMs()}`);
    clock.setTimer(record('c'), 30);
    clock.setTimer(record('a1'), 10);
    clock.setTimer(record('b'), 20);
    clock.setTimer(record('a2'), 10);
    clock.setTimer(record('zero'), 0);
    clock.setTimer(record('a3'), 10);
    assert.equal(clock.pendingTimerCount, 6);
    assert.equal(stepAll(clock), 6);
    assert.deepEqual(fired, ['zero@0', 'a1@10', 'a2@10', 'a3@10', 'b@20', 'c@30']);
    assert.equal(clock.step(), false);
    assert.equal(clock.pendingTimerCount, 0);
    assert.equal(clock.firedTimerCount, 6);
  });

  it('a timer set from a callback for the same instant runs after the timers already due then', () => {
    const clock = new SimClock();
    const fired: string[] = [];
    clock.setTimer(() => {
      fired.push('first');
      clock.setTimer(() => fired.push('nested'), 0);
    }, 5);
    clock.setTimer(() => fired.push('second'), 5);
    stepAll(clock);
    assert.deepEqual(fired, ['first', 'second', 'nested']);
    assert.equal(clock.nowMs(), 5);
  });

  it('cancel() is idempotent, a cancelled timer never runs, and cancelling after firing is a no-op', () => {
    const clock = new SimClock();
    const fired: number[] = [];
    const first = clock.setTimer(() => fired.push(1), 10);
    const second = clock.setTimer(() => fired.push(2), 10);
    clock.setTimer(() => fired.push(3), 20);
    second.cancel();
    second.cancel();
    assert.equal(clock.pendingTimerCount, 2);
    assert.equal(clock.nextDueMs(), 10);
    clock.step();
    first.cancel();
    assert.equal(clock.pendingTimerCount, 1);
    clock.step();
    assert.deepEqual(fired, [1, 3]);
    assert.equal(clock.nextDueMs(), undefined);
  });

  it('rejects a negative, NaN or infinite delay and a callback that is not a function', () => {
    const clock = new SimClock();
    assert.throws(() => clock.setTimer(() => undefined, -1), RangeError);
    assert.throws(() => clock.setTimer(() => undefined, Number.NaN), RangeError);
    assert.throws(() => clock.setTimer(() => undefined, Infinity), RangeError);
    assert.throws(() => clock.setTimer('nope' as unknown as () => void, 1), TypeError);
    assert.equal(clock.pendingTimerCount, 0);
  });

  it('keeps the heap in order under many timers and cancels (against a sorted model)', () => {
    const clock = new SimClock();
    const random = new SeededRandom(7);
    const fired: number[] = [];
    const expected: Array<{ dueMs: number; id: number }> = [];
    const handles = [];
    for (let id = 0; id < 2000; id += 1) {
      const dueMs = random.int(100);
      handles.push(clock.setTimer(() => fired.push(id), dueMs));
      expected.push({ dueMs, id });
    }
    const cancelled = new Set<number>();
    for (let index = 0; index < 1500; index += 1) {
      const id = random.int(2000);
      cancelled.add(id);
      handles[id]?.cancel();
    }
    assert.equal(clock.pendingTimerCount, 2000 - cancelled.size);
    stepAll(clock);
    const model = expected
      .filter((timer) => !cancelled.has(timer.id))
      .sort((a, b) => a.dueMs - b.dueMs || a.id - b.id)
      .map((timer) => timer.id);
    assert.deepEqual(fired, model);
  });

  it('runUntil lets async code that awaits timers progress, with promise chains between them', async () => {
    const clock = new SimClock();
    const log: string[] = [];
    let done = false;
    const worker = async (name: string, delayMs: number): Promise<void> => {
      for (let round = 0; round < 3; round += 1) {
        await sleep(clock, delayMs);
        // A chain of continuations deeper than a few awaits must still finish before the next timer.
        for (let depth = 0; depth < 20; depth += 1) await Promise.resolve();
        await new Promise<void>((resolve) => process.nextTick(resolve));
        log.push(`${name}${round}@${clock.nowMs()}`);
      }
    };
    void Promise.all([worker('a', 10), worker('b', 15)]).then(() => {
      done = true;
    });
    assert.equal(await clock.runUntil(() => done), true);
    assert.deepEqual(log, ['a0@10', 'b0@15', 'a1@20', 'b1@30', 'a2@30', 'b2@45']);
    assert.equal(clock.nowMs(), 45);
  });

  it('runUntil gives up when no timer is left, at maxTimeMs (time stops there), or after maxSteps', async () => {
    const clock = new SimClock();
    assert.equal(await clock.runUntil(() => false), false);
    assert.equal(clock.nowMs(), 0);
    const tick = (): void => {
      clock.setTimer(tick, 10);
    };
    tick();
    assert.equal(await clock.runUntil(() => false, { maxTimeMs: 55 }), false);
    assert.equal(clock.nowMs(), 55);
    const before = clock.firedTimerCount;
    assert.equal(await clock.runUntil(() => false, { maxSteps: 3 }), false);
    assert.equal(clock.firedTimerCount - before, 3);
    assert.equal(clock.nowMs(), 80);
    assert.equal(await clock.runUntil(() => clock.nowMs() >= 100), true);
    assert.equal(clock.nowMs(), 100);
  });

  it('runFor and runUntilTime fire what is due within the span and leave time at its end', async () => {
    const clock = new SimClock();
    const fired: number[] = [];
    for (const dueMs of [5, 10, 10.5, 20]) clock.setTimer(() => fired.push(clock.nowMs()), dueMs);
    await clock.runFor(10);
    assert.deepEqual(fired, [5, 10]);
    assert.equal(clock.nowMs(), 10);
    await clock.runUntilTime(15);
    assert.deepEqual(fired, [5, 10, 10.5]);
    assert.equal(clock.nowMs(), 15);
    await clock.runUntilTime(3);
    assert.equal(clock.nowMs(), 15, 'time never moves back');
    await clock.runFor(100);
    assert.deepEqual(fired, [5, 10, 10.5, 20]);
    assert.equal(clock.nowMs(), 115);
  });

  it('runFor throws when timers loop without letting time pass', async () => {
    const clock = new SimClock();
    const spin = (): void => {
      clock.setTimer(spin, 0);
    };
    spin();
    await assert.rejects(clock.runFor(1, { maxSteps: 1000 }), /more than 1000 timers fired/);
  });

  it('a throwing callback surfaces from step() and from the runs; the clock stays usable', async () => {
    const clock = new SimClock();
    clock.setTimer(() => {
      throw new Error('boom in step');
    }, 1);
    assert.throws(() => clock.step(), /boom in step/);
    assert.equal(clock.nowMs(), 1);

    const fired: string[] = [];
    clock.setTimer(() => fired.push('before'), 1);
    clock.setTimer(() => {
      throw new Error('boom in run');
    }, 2);
    clock.setTimer(() => fired.push('after'), 3);
    await assert.rejects(clock.runFor(10), /boom in run/);
    assert.deepEqual(fired, ['before']);
    assert.equal(clock.nowMs(), 3);
    clock.setTimer(() => {
      throw new Error('boom in runUntil');
    }, 1);
    await assert.rejects(clock.runUntil(() => false), /boom in runUntil/);
    await clock.runFor(10);
    assert.deepEqual(fired, ['before', 'after']);
  });

  it('refuses a second run while one is in progress, and step() from inside a callback', async () => {
    const clock = new SimClock();
    clock.setTimer(() => undefined, 10);
    const first = clock.runFor(20);
    await assert.rejects(clock.runFor(5), /already in progress/);
    await first;
    clock.setTimer(() => clock.step(), 1);
    assert.throws(() => clock.step(), /inside a timer callback/);
  });

  it('replays the same interleaving of async tasks on every run', async () => {
    const runOnce = async (): Promise<string[]> => {
      const clock = new SimClock();
      const random = new SeededRandom(42);
      const log: string[] = [];
      const task = async (name: string): Promise<void> => {
        for (let round = 0; round < 20; round += 1) {
          await sleep(clock, random.int(5));
          await Promise.resolve();
          log.push(`${name}${round}@${clock.nowMs()}`);
        }
      };
      let finished = 0;
      for (const name of ['x', 'y', 'z']) void task(name).then(() => (finished += 1));
      assert.equal(await clock.runUntil(() => finished === 3), true);
      return log;
    };
    const first = await runOnce();
    assert.equal(first.length, 60);
    assert.deepEqual(await runOnce(), first);
  });
});
