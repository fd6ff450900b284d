// Notes on the design
// -------------------
// SimClock is the simulator's Clock: virtual milliseconds that move only when the simulation
// fires a timer, so a run depends on nothing but its seed and the calls made, never on how fast
// the machine is. It never touches a real timer.
//
// Timers live in a binary min-heap ordered by (due time, insertion sequence): two timers due at
// the same time fire in the order they were set, on every run. cancel() marks the entry and the
// heap drops it lazily when it reaches the top (and compacts itself when cancelled entries
// outnumber live ones), so cancelling is O(1) and the heap stays bounded by the live timers.
//
// Driving the clock:
//   - step() fires the one next timer (advancing time to its due time) and returns at once; it is
//     for synchronous code and tests that want to see every event.
//   - runUntil(), runFor() and runUntilTime() fire timers one at a time and, before each one and
//     after the last, yield to the event loop through setImmediate. A setImmediate callback runs
//     only once the microtask and nextTick queues are empty, so every promise continuation that a
//     timer made ready has run before the next timer fires: async code driven by timers
//     progresses exactly as it would on a real clock, and in the same order on every run.
//     setImmediate is a scheduling point only; its real duration is never read.
//
// Invariants: nowMs() never decreases; a timer fires at most once, never before its due time and
// never after cancel(); at most one run is in progress and step() is never called from inside a
// timer callback (both would make the order of events depend on the caller's nesting).
//
// Error contract: bad arguments are RangeError / TypeError. A timer callback that throws is not
// swallowed: the timer is already removed and time already advanced, and the error propagates out
// of step() or rejects the run*() promise; the clock stays usable.

import type { Clock, TimerHandle, TimerOptions } from '../runtime/clock';

/** Options of a SimClock. */
export interface SimClockOptions {
  /** What wallTimeMs() returns at virtual time 0 (milliseconds since the Unix epoch). @default 1_800_000_000_000 */
  epochMs?: number;
}

/** Limits of SimClock.runUntil(). */
export interface SimClockRunUntilOptions {
  /** Virtual milliseconds, from the call, after which to give up. @default Infinity */
  maxTimeMs?: number;
  /** Timers to fire at most before giving up. @default 1_000_000 */
  maxSteps?: number;
}

/** Limits of SimClock.runFor() and SimClock.runUntilTime(). */
export interface SimClockRunOptions {
  /** Timers to fire at most; more throws (a timer loop that never lets time pass). @default 10_000_000 */
  maxSteps?: number;
}

interface TimerEntry {
  readonly dueMs: number;
  readonly sequence: number;
  readonly callback: () => void;
  cancelled: boolean;
}

const DEFAULT_EPOCH_MS = 1_800_000_000_000;
const DEFAULT_RUN_UNTIL_MAX_STEPS = 1_000_000;
const DEFAULT_RUN_MAX_STEPS = 10_000_000;
const COMPACT_MIN_CANCELLED = 64;

function checkNonNegativeNumber(value: unknown, name: string, allowInfinity: boolean): asserts value is number {
  if (typeof value !== 'number' || Number.isNaN(value) || value < 0 || (!allowInfinity && !Number.isFinite(value))) {
    throw new RangeError(`${name} must be a ${allowInfinity ? '' : 'finite '}number >= 0, got ${String(value)}`);
  }
}

function checkStepLimit(value: unknown, name: string): asserts value is number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`${name} must be a non-negative integer, got ${String(value)}`);
  }
}

function yieldToEventLoop(): Promise<void> {
  return new Promise<void>((resolve) => setImmediate(resolve));
}

/** A virtual-time Clock for deterministic simulation. */
export class SimClock implements Clock {
  /** What wallTimeMs() returns at virtual time 0. */
  readonly epochMs: number;
  private currentMs = 0;
  private nextSequence = 0;
  private readonly heap: TimerEntry[] = [];
  private liveTimerCount = 0;
  private firing = false;
  private running = false;
  private firedCount = 0;

  constructor(options: SimClockOptions = {}) {
    if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object');
    const epochMs = options.epochMs ?? DEFAULT_EPOCH_MS;
    if (typeof epochMs !== 'number' || !Number.isFinite(epochMs)) {
      throw new RangeError(`epochMs must be a finite number, got ${String(epochMs)}`);
    }
    this.epochMs = epochMs;
  }

  nowMs(): number {
    return this.currentMs;
  }

  wallTimeMs(): number {
    return this.epochMs + this.currentMs;
  }

  /** Timers set and neither fired nor cancelled. */
  get pendingTimerCount(): number {
    return this.liveTimerCount;
  }

  /** Timers fired since construction (for tests and step budgets). */
  get firedTimerCount(): number {
    return this.firedCount;
  }

  /** The due time of the next timer, or undefined when none is pending. */
  nextDueMs(): number | undefined {
    return this.peekLive()?.dueMs;
  }

  /** `options.unref` is accepted and ignored: virtual timers never keep a process alive. */
  setTimer(callback: () => void, delayMs: number, options?: TimerOptions): TimerHandle {
    if (typeof callback !== 'function') throw new TypeError('callback must be a function');
    checkNonNegativeNumber(delayMs, 'delayMs', false);
    if (options !== undefined && (typeof options !== 'object' || options === null)) {
      throw new TypeError('options must be an object');
    }
    const entry: TimerEntry = { dueMs: this.currentMs + delayMs, sequence: this.nextSequence++, callback, cancelled: false };
    this.push(entry);
    this.liveTimerCount += 1;
    return {
      cancel: () => {
        if (entry.cancelled) return;
        entry.cancelled = true;
        this.liveTimerCount -= 1;
        this.compactIfSparse();
      },
    };
  }

  private readonly outstanding = new Set<Promise<unknown>>();

  /**
   * Registers real asynchronous work (Clock.settle): no timer fires until it has settled, so
   * the virtual time at which its continuation runs does not depend on how fast the machine is.
   */
  settle<T>(promise: Promise<T>): Promise<T> {
    const tracked: Promise<unknown> = promise.then(() => undefined, () => undefined);
    this.outstanding.add(tracked);
    void tracked.then(() => this.outstanding.delete(tracked));
    return promise;
  }

  /** Waits for the registered real work, then yields so its continuations run. */
  private async drainOutstanding(): Promise<void> {
    while (this.outstanding.size > 0) {
      await Promise.all([...this.outstanding]);
      await yieldToEventLoop();
    }
  }

  /**
   * Fires the next timer, advancing time to its due time. Returns false when no timer is pending.
   * Does not run promise continuations; use the run methods for async code.
   */
  step(): boolean {
    if (this.firing) throw new Error('SimClock.step() called from inside a timer callback');
    const entry = this.peekLive();
    if (entry === undefined) return false;
    this.pop();
    if (!(entry.dueMs >= this.currentMs)) throw new Error('SimClock invariant: a timer is due in the past');
    entry.cancelled = true;
    this.liveTimerCount -= 1;
    this.currentMs = entry.dueMs;
    this.firedCount += 1;
    this.firing = true;
    try {
      entry.callback();
    } finally {
      this.firing = false;
    }
    return true;
  }

  /**
   * Fires timers until `predicate()` holds. The predicate is checked once promise continuations
   * have run, before the first timer and after each one. Returns true when it held, false when
   * no timer is left, the next timer is later than `maxTimeMs` from the call (time then stops at
   * that limit), or `maxSteps` timers have fired.
   */
  async runUntil(predicate: () => boolean, options: SimClockRunUntilOptions = {}): Promise<boolean> {
    if (typeof predicate !== 'function') throw new TypeError('predicate must be a function');
    if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object');
    const maxTimeMs = options.maxTimeMs ?? Infinity;
    const maxSteps = options.maxSteps ?? DEFAULT_RUN_UNTIL_MAX_STEPS;
    checkNonNegativeNumber(maxTimeMs, 'maxTimeMs', true);
    checkStepLimit(maxSteps, 'maxSteps');
    const limitMs = this.currentMs + maxTimeMs;
    return this.run(async () => {
      let steps = 0;
      for (;;) {
        await yieldToEventLoop();
        if (this.outstanding.size > 0) await this.drainOutstanding();
        if (predicate()) return true;
        const dueMs = this.nextDueMs();
        if (dueMs === undefined) return false;
        if (dueMs > limitMs) {
          this.currentMs = limitMs;
          return false;
        }
        if (steps >= maxSteps) return false;
        this.step();
        steps += 1;
      }
    });
  }

  /** Runs every timer due within `durationMs` from now, then leaves time at now + durationMs. */
  async runFor(durationMs: number, options: SimClockRunOptions = {}): Promise<void> {
    checkNonNegativeNumber(durationMs, 'durationMs', false);
    await this.runUntilTime(this.currentMs + durationMs, options);
  }

  /** Runs every timer due at or before `timeMs`, then leaves time at `timeMs` (never moves back). */
  async runUntilTime(timeMs: number, options: SimClockRunOptions = {}): Promise<void> {
    checkNonNegativeNumber(timeMs, 'timeMs', false);
    if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object');
    const maxSteps = options.maxSteps ?? DEFAULT_RUN_MAX_STEPS;
    checkStepLimit(maxSteps, 'maxSteps');
    await this.run(async () => {
      let steps = 0;
      for (;;) {
        await yieldToEventLoop();
        if (this.outstanding.size > 0) await this.drainOutstanding();
        const dueMs = this.nextDueMs();
        if (dueMs === undefined || dueMs > timeMs) break;
        if (steps >= maxSteps) {
          throw new Error(`SimClock: more than ${maxSteps} timers fired before virtual time ${timeMs} ms (now ${this.currentMs} ms)`);
        }
        this.step();
        steps += 1;
      }
      if (timeMs > this.currentMs) this.currentMs = timeMs;
      await yieldToEventLoop();
    });
  }

  private async run<T>(body: () => Promise<T>): Promise<T> {
    if (this.running) throw new Error('SimClock: a run is already in progress');
    if (this.firing) throw new Error('SimClock: a run started from inside a timer callback');
    this.running = true;
    try {
      return await body();
    } finally {
      this.running = false;
    }
  }

  private peekLive(): TimerEntry | undefined {
    for (;;) {
      const top = this.heap[0];
      if (top === undefined || !top.cancelled) return top;
      this.pop();
    }
  }

  private compactIfSparse(): void {
    const cancelledCount = this.heap.length - this.liveTimerCount;
    if (cancelledCount < COMPACT_MIN_CANCELLED || cancelledCount <= this.liveTimerCount) return;
    const live = this.heap.filter((entry) => !entry.cancelled);
    this.heap.length = 0;
    for (const entry of live) this.push(entry);
  }

  private static before(a: TimerEntry, b: TimerEntry): boolean {
    return a.dueMs < b.dueMs || (a.dueMs === b.dueMs && a.sequence < b.sequence);
  }

  private push(entry: TimerEntry): void {
    const heap = this.heap;
    let index = heap.length;
    heap.push(entry);
    while (index > 0) {
      const parentIndex = (index - 1) >> 1;
      const parent = heap[parentIndex] as TimerEntry;
      if (!SimClock.before(entry, parent)) break;
      heap[index] = parent;
      index = parentIndex;
    }
    heap[index] = entry;
  }

  private pop(): void {
    const heap = this.heap;
    const last = heap.pop();
    if (last === undefined || heap.length === 0) return;
    let index = 0;
    for (;;) {
      const leftIndex = 2 * index + 1;
      if (leftIndex >= heap.length) break;
      const rightIndex = leftIndex + 1;
      let childIndex = leftIndex;
      if (rightIndex < heap.length && SimClock.before(heap[rightIndex] as TimerEntry, heap[leftIndex] as TimerEntry)) {
        childIndex = rightIndex;
      }
      const child = heap[childIndex] as TimerEntry;
      if (!SimClock.before(child, last)) break;
      heap[index] = child;
      index = childIndex;
    }
    heap[index] = last;
  }
}
