// Unit tests of the link's state table and reconnect backoff (src/transport/link.ts) and of
// fault injection (src/transport/faults.ts): FaultStage runs on a manual clock written here, so
// every release time is exact and no test sleeps.

import { strict as assert } from 'node:assert';

import type { Clock, TimerHandle } from '../../src/runtime/clock';
import { type Random, SeededRandom } from '../../src/runtime/random';
import { LinkError } from '../../src/transport/errors';
import {
  type DirectionFaults,
  type FaultSettings,
  FaultStage,
  type LinkFaults,
  MAX_FAULT_DELAY_MS,
  applyFaultSettings,
  checkFaultSettings,
  hasFaults,
  noFaults,
} from '../../src/transport/faults';
import { LINK_TRANSITIONS, type LinkState, backoffDelayMs, isLinkTransition } from '../../src/transport/link';

/**
 * A clock that moves only when told: advanceBy() runs every timer due on the way, in time
 * order (ties in the order they were set), with nowMs() at the timer's due time.
 */
class ManualClock implements Clock {
  private now = 0;
  private sequence = 0;
  private timers: { atMs: number; order: number; callback: () => void; cancelled: boolean }[] = [];

  nowMs(): number {
    return this.now;
  }

  wallTimeMs(): number {
    return 1_700_000_000_000 + this.now;
  }

  setTimer(callback: () => void, delayMs: number): TimerHandle {
    assert.ok(delayMs >= 0, `setTimer with delayMs ${delayMs}`);
    const timer = { atMs: this.now + delayMs, order: this.sequence++, callback, cancelled: false };
    this.timers.push(timer);
    return {
      cancel: () => {
        timer.cancelled = true;
      },
    };
  }

  /** Timers set and neither fired nor cancelled. */
  get pendingTimers(): number {
    return this.timers.filter((timer) => !timer.cancelled).length;
  }

  advanceBy(deltaMs: number): void {
    this.advanceTo(this.now + deltaMs);
  }

  advanceTo(targetMs: number): void {
    for (;;) {
      this.timers = this.timers.filter((timer) => !timer.cancelled);
      const due = this.timers.filter((timer) => timer.atMs <= targetMs)
        .sort((a, b) => a.atMs - b.atMs || a.order - b.order)[0];
      if (due === undefined) break;
      this.timers.splice(this.timers.indexOf(due), 1);
      this.now = Math.max(this.now, due.atMs);
      due.callback();
    }
    this.now = Math.max(this.now, targetMs);
  }
}

const STATES: LinkState[] = ['down', 'connecting', 'handshaking', 'up'];

describe('72 link state: transition table', () => {
  // Every pair written out: [from, to, allowed].
  const table: [LinkState, LinkState, boolean][] = [
    ['down', 'down', true], // a new reason (partitioned, closed, healed)
    ['down', 'connecting', true], // dial
    ['down', 'handshaking', true], // an inbound HELLO from this peer
    ['down', 'up', false],
    ['connecting', 'down', true], // connect failed, closed
    ['connecting', 'connecting', false],
    ['connecting', 'handshaking', true], // the wire connected
    ['connecting', 'up', false],
    ['handshaking', 'down', true], // refused, timed out, closed
    ['handshaking', 'connecting', false],
    ['handshaking', 'handshaking', false],
    ['handshaking', 'up', true], // WELCOME
    ['up', 'down', true], // any failure
    ['up', 'connecting', false],
    ['up', 'handshaking', false], // a replacing inbound connection goes through down first
    ['up', 'up', false],
  ];

  it('covers every pair of states once', () => {
    assert.equal(table.length, STATES.length ** 2);
    assert.equal(new Set(table.map(([from, to]) => `${from}->${to}`)).size, table.length);
    assert.deepEqual(Object.keys(LINK_TRANSITIONS).sort(), [...STATES].sort());
  });

  for (const [from, to, allowed] of table) {
    it(`${from} -> ${to} is ${allowed ? 'allowed' : 'refused'}`, () => {
      assert.equal(isLinkTransition(from, to), allowed);
      assert.equal(LINK_TRANSITIONS[from].includes(to), allowed);
    });
  }

  it('is frozen', () => {
    assert.ok(Object.isFrozen(LINK_TRANSITIONS));
  });
});

describe('72 link state: backoffDelayMs', () => {
  const tuning = { reconnectInitialDelayMs: 100, reconnectMaxDelayMs: 5000, reconnectJitter: 0 };

  /** A Random that always returns `value`. */
  function fixed(value: number): Random {
    return { next: () => value, int: (bound) => Math.floor(value * bound) };
  }

  it('doubles from the initial delay up to the cap', () => {
    const delays = [1, 2, 3, 4, 5, 6, 7, 8, 9].map((attempt) => backoffDelayMs(attempt, tuning, fixed(0.5)));
    assert.deepEqual(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
  });

  it('stays at the cap (and finite) for huge attempt numbers', () => {
    for (const attempt of [40, 41, 1000, 2 ** 31, Number.MAX_SAFE_INTEGER]) {
      assert.equal(backoffDelayMs(attempt, tuning, fixed(0.5)), 5000, `attempt ${attempt}`);
    }
    const large = { reconnectInitialDelayMs: 600_000, reconnectMaxDelayMs: 3_600_000, reconnectJitter: 0.2 };
    assert.ok(Number.isFinite(backoffDelayMs(10_000, large, fixed(0.999))));
  });

  it('jitters within base * (1 +- jitter) over many seeded draws, and uses the whole range', () => {
    const jittered = { ...tuning, reconnectJitter: 0.2 };
    const random = new SeededRandom(0x5eed);
    for (const [attempt, base] of [[1, 100], [3, 400], [7, 5000], [50, 5000]] as const) {
      const top = Math.min(base * 1.2, 5000);
      let min = Infinity;
      let max = -Infinity;
      for (let draw = 0; draw < 5000; draw++) {
        const delay = backoffDelayMs(attempt, jittered, random);
        assert.ok(delay >= base * 0.8 && delay <= top, `attempt ${attempt}: ${delay} outside [${base * 0.8}, ${top}]`);
        min = Math.min(min, delay);
        max = Math.max(max, delay);
      }
      assert.ok(min < base * 0.81 && max > top * 0.99, `attempt ${attempt}: draws only spread over [${min}, ${max}]`);
    }
    // The exact ends, with a Random at its extremes.
    assert.equal(backoffDelayMs(1, jittered, fixed(0)), 80);
    assert.ok(Math.abs(backoffDelayMs(1, jittered, fixed(1 - 2 ** -32)) - 120) < 1e-6);
    // The cap is the real maximum: jitter never takes a delay above reconnectMaxDelayMs.
    assert.equal(backoffDelayMs(10, jittered, fixed(1 - 2 ** -32)), 5000);
    // Full jitter never goes negative.
    assert.equal(backoffDelayMs(1, { ...tuning, reconnectJitter: 1 }, fixed(0)), 0);
  });

  it('refuses an attempt below 1 or not an integer with RangeError', () => {
    for (const attempt of [0, -1, 0.5, 1.5, Number.NaN, Infinity]) {
      assert.throws(() => backoffDelayMs(attempt, tuning, fixed(0.5)), RangeError, `attempt ${attempt}`);
    }
  });

  it('is deterministic for a seed', () => {
    const jittered = { ...tuning, reconnectJitter: 0.2 };
    const run = (seed: number): number[] => {
      const random = new SeededRandom(seed);
      return Array.from({ length: 20 }, (_, index) => backoffDelayMs(index + 1, jittered, random));
    };
    assert.deepEqual(run(42), run(42));
    assert.notDeepEqual(run(42), run(43));
  });
});

describe('72 link faults: FaultStage', () => {
  interface Item {
    id: number;
    byteLength: number;
  }

  function setup(initial: Partial<DirectionFaults> = {}, seed = 7): {
    clock: ManualClock; faults: DirectionFaults; stage: FaultStage<Item>; released: { id: number; atMs: number }[]; discarded: number[];
  } {
    const clock = new ManualClock();
    const faults: DirectionFaults = { ...noFaults(), ...initial };
    const released: { id: number; atMs: number }[] = [];
    const discarded: number[] = [];
    const stage = new FaultStage<Item>(() => faults, clock, new SeededRandom(seed), (item) => {
      released.push({ id: item.id, atMs: clock.nowMs() });
    }, (item) => discarded.push(item.id));
    return { clock, faults, stage, released, discarded };
  }

  it('passes items straight through when no fault is in force', () => {
    const { clock, stage, released } = setup();
    for (let id = 1; id <= 3; id++) stage.push({ id, byteLength: 100 });
    assert.deepEqual(released, [{ id: 1, atMs: 0 }, { id: 2, atMs: 0 }, { id: 3, atMs: 0 }]);
    assert.equal(stage.heldCount, 0);
    assert.equal(clock.pendingTimers, 0);
    assert.equal(stage.blackHoled, false);
  });

  it('holds each item for delayMs', () => {
    const { clock, stage, released } = setup({ delayMs: 250 });
    stage.push({ id: 1, byteLength: 10 });
    clock.advanceBy(100);
    stage.push({ id: 2, byteLength: 10 });
    assert.equal(stage.heldCount, 2);
    clock.advanceBy(149);
    assert.deepEqual(released, []);
    clock.advanceBy(1);
    assert.deepEqual(released, [{ id: 1, atMs: 250 }]);
    clock.advanceBy(1000);
    assert.deepEqual(released, [{ id: 1, atMs: 250 }, { id: 2, atMs: 350 }]);
    assert.equal(stage.heldCount, 0);
    assert.equal(clock.pendingTimers, 0);
  });

  it('keeps the order even when jitter would reorder', () => {
    const { clock, stage, released } = setup({ delayMs: 100, jitterMs: 90 }, 0xfeed);
    const pushedAt: number[] = [];
    for (let id = 0; id < 200; id++) {
      pushedAt.push(clock.nowMs());
      stage.push({ id, byteLength: 1 });
      clock.advanceBy(1);
    }
    clock.advanceBy(1000);
    assert.deepEqual(released.map((entry) => entry.id), pushedAt.map((_, id) => id));
    let previous = 0;
    let latest = 0;
    let heldLonger = 0;
    released.forEach(({ id, atMs }) => {
      const pushed = pushedAt[id] as number;
      assert.ok(atMs >= previous, `item ${id} released before the one ahead of it`);
      assert.ok(atMs >= pushed + 10 - 1e-9, `item ${id} held ${atMs - pushed} ms, less than delay - jitter`);
      // No later than its own jittered time, or the release of the item ahead of it.
      latest = Math.max(latest, pushed + 190);
      assert.ok(atMs <= latest + 1e-9, `item ${id} held ${atMs - pushed} ms`);
      if (atMs - pushed > 100) heldLonger++;
      previous = atMs;
    });
    // The jitter did act (some items were held longer than the plain delay).
    assert.ok(heldLonger > 0);
  });

  it('never releases before now, even with jitter larger than the delay', () => {
    const { clock, stage, released } = setup({ delayMs: 0, jitterMs: 50 }, 3);
    for (let id = 0; id < 50; id++) stage.push({ id, byteLength: 1 });
    clock.advanceBy(100);
    assert.equal(released.length, 50);
    for (const entry of released) assert.ok(entry.atMs >= 0);
  });

  it('spaces items by bandwidth: 3 x 1000 bytes at 1000 B/s leave at 1 s, 2 s, 3 s', () => {
    const { clock, stage, released } = setup({ bandwidthBytesPerSecond: 1000 });
    for (let id = 1; id <= 3; id++) stage.push({ id, byteLength: 1000 });
    clock.advanceBy(999);
    assert.deepEqual(released, []);
    clock.advanceBy(10_000);
    assert.deepEqual(released, [{ id: 1, atMs: 1000 }, { id: 2, atMs: 2000 }, { id: 3, atMs: 3000 }]);
    // An idle pipe starts again from now, not from where it was last busy.
    stage.push({ id: 4, byteLength: 500 });
    clock.advanceBy(10_000);
    assert.deepEqual(released[3], { id: 4, atMs: 10_999 + 500 });
  });

  it('combines delay and bandwidth as the later of the two release times (not their sum)', () => {
    const { clock, stage, released } = setup({ delayMs: 1500, bandwidthBytesPerSecond: 1000 });
    for (let id = 1; id <= 3; id++) stage.push({ id, byteLength: 1000 });
    clock.advanceBy(10_000);
    assert.deepEqual(released.map((entry) => entry.atMs), [1500, 2000, 3000]);
  });

  it('a partition discards and marks the stream black-holed for good', () => {
    const { clock, faults, stage, released } = setup();
    stage.push({ id: 1, byteLength: 10 });
    faults.partitioned = true;
    stage.push({ id: 2, byteLength: 10 });
    stage.push({ id: 3, byteLength: 10 });
    assert.equal(stage.blackHoled, true);
    assert.equal(stage.discardedCount, 2);
    assert.equal(stage.heldCount, 0);
    // Healed faults do not mend a broken stream: the link drops it and reconnects.
    faults.partitioned = false;
    stage.push({ id: 4, byteLength: 10 });
    clock.advanceBy(1000);
    assert.deepEqual(released.map((entry) => entry.id), [1]);
    assert.equal(stage.discardedCount, 3);
  });

  it('a partition discards items already held when their time comes', () => {
    const { clock, faults, stage, released } = setup({ delayMs: 100 });
    stage.push({ id: 1, byteLength: 10 });
    stage.push({ id: 2, byteLength: 10 });
    faults.partitioned = true;
    clock.advanceBy(200);
    assert.deepEqual(released, []);
    assert.equal(stage.blackHoled, true);
    assert.equal(stage.discardedCount, 2);
    assert.equal(stage.heldCount, 0);
  });

  it('stop() discards what is held, cancels its timer and ignores later pushes', () => {
    const { clock, stage, released } = setup({ delayMs: 100 });
    stage.push({ id: 1, byteLength: 10 });
    stage.push({ id: 2, byteLength: 10 });
    assert.equal(clock.pendingTimers, 1);
    stage.stop();
    assert.equal(stage.heldCount, 0);
    assert.equal(clock.pendingTimers, 0);
    stage.push({ id: 3, byteLength: 10 });
    clock.advanceBy(1000);
    assert.deepEqual(released, []);
    assert.equal(stage.heldCount, 0);
    assert.equal(stage.discardedCount, 0);
    stage.stop();
  });

  it('hands every item pushed to exactly one of release and discard (the sender frees its buffer either way)', () => {
    const { clock, faults, stage, released, discarded } = setup({ delayMs: 100 });
    stage.push({ id: 1, byteLength: 10 });
    clock.advanceBy(150);
    stage.push({ id: 2, byteLength: 10 });
    stage.push({ id: 3, byteLength: 10 });
    faults.partitioned = true;
    clock.advanceBy(150); // 2 and 3 fall to the partition when due
    stage.push({ id: 4, byteLength: 10 }); // at once
    faults.partitioned = false;
    faults.delayMs = 0;
    stage.push({ id: 5, byteLength: 10 }); // black-holed for good
    stage.stop();
    stage.push({ id: 6, byteLength: 10 }); // after stop
    assert.deepEqual(released.map((entry) => entry.id), [1]);
    assert.deepEqual(discarded, [2, 3, 4, 5, 6]);
  });

  it('stop() hands the items it held to discard, in order', () => {
    const { stage, released, discarded } = setup({ delayMs: 100 });
    for (let id = 1; id <= 3; id++) stage.push({ id, byteLength: 10 });
    stage.stop();
    assert.deepEqual(released, []);
    assert.deepEqual(discarded, [1, 2, 3]);
  });

  it('stays in order when faults are lifted while items are held', () => {
    const { clock, faults, stage, released } = setup({ delayMs: 100 });
    stage.push({ id: 1, byteLength: 10 });
    faults.delayMs = 0;
    stage.push({ id: 2, byteLength: 10 });
    assert.deepEqual(released, []);
    clock.advanceBy(100);
    assert.deepEqual(released, [{ id: 1, atMs: 100 }, { id: 2, atMs: 100 }]);
    stage.push({ id: 3, byteLength: 10 });
    assert.deepEqual(released[2], { id: 3, atMs: 100 });
  });
});

describe('72 link faults: settings', () => {
  function assertBadFault(settings: unknown, message: RegExp): void {
    assert.throws(() => checkFaultSettings(settings as FaultSettings), (error: unknown) => {
      assert.ok(error instanceof LinkError, `expected a LinkError, got ${String(error)}`);
      assert.equal(error.code, 'ERR_LINK_BAD_FAULT');
      assert.match(error.message, message);
      return true;
    });
  }

  it('accepts every valid setting', () => {
    checkFaultSettings({});
    checkFaultSettings({ delayMs: 0, jitterMs: MAX_FAULT_DELAY_MS, bandwidthBytesPerSecond: 0, partition: false, drop: true, direction: 'both' });
    checkFaultSettings({ delayMs: 12.5, direction: 'in' });
    checkFaultSettings({ bandwidthBytesPerSecond: 1_000_000, direction: 'out' });
  });

  it('refuses a negative, huge or non-numeric delay or jitter', () => {
    assertBadFault({ delayMs: -1 }, /^delayMs must be a number from 0 to 3600000, got -1$/);
    assertBadFault({ jitterMs: -0.5 }, /^jitterMs must be a number from 0 to 3600000, got -0.5$/);
    assertBadFault({ delayMs: MAX_FAULT_DELAY_MS + 1 }, /delayMs must be/);
    assertBadFault({ delayMs: Number.NaN }, /delayMs must be .*got NaN/);
    assertBadFault({ delayMs: Infinity }, /delayMs must be/);
    assertBadFault({ delayMs: '100' }, /delayMs must be .*got 100/);
  });

  it('refuses a bad bandwidth', () => {
    assertBadFault({ bandwidthBytesPerSecond: -1 }, /^bandwidthBytesPerSecond must be a non-negative integer \(0: no cap\), got -1$/);
    assertBadFault({ bandwidthBytesPerSecond: 1.5 }, /bandwidthBytesPerSecond/);
    assertBadFault({ bandwidthBytesPerSecond: '1000' }, /bandwidthBytesPerSecond/);
  });

  it('refuses an unknown key', () => {
    assertBadFault({ delay: 5 }, /^unknown fault setting "delay"$/);
    assertBadFault({ partitioned: true }, /^unknown fault setting "partitioned"$/);
  });

  it('refuses a bad direction', () => {
    assertBadFault({ direction: 'sideways' }, /^direction must be "in", "out" or "both", got "sideways"$/);
    assertBadFault({ direction: 1 }, /direction must be/);
  });

  it('refuses a non-boolean partition or drop', () => {
    assertBadFault({ partition: 'yes' }, /^partition must be true or false$/);
    assertBadFault({ partition: 1 }, /^partition must be true or false$/);
    assertBadFault({ drop: null }, /^drop must be true or false$/);
  });

  it('refuses settings that are not an object', () => {
    assertBadFault(null, /^fault settings must be an object$/);
    assertBadFault('partition', /^fault settings must be an object$/);
  });

  it('applies settings to the chosen directions only', () => {
    const faults: LinkFaults = { in: noFaults(), out: noFaults() };
    applyFaultSettings(faults, { delayMs: 10, direction: 'in' });
    assert.deepEqual(faults, { in: { ...noFaults(), delayMs: 10 }, out: noFaults() });
    applyFaultSettings(faults, { partition: true, direction: 'out' });
    assert.equal(faults.out.partitioned, true);
    assert.equal(faults.in.partitioned, false);
    applyFaultSettings(faults, { bandwidthBytesPerSecond: 5, jitterMs: 2 });
    assert.equal(faults.in.bandwidthBytesPerSecond, 5);
    assert.equal(faults.out.jitterMs, 2);
    assert.equal(hasFaults(noFaults()), false);
    assert.equal(hasFaults(faults.in), true);
  });
});
