// Notes on the design
// -------------------
// Every timer and every reading of the time in controller and transport code goes through a
// Clock, so the same code runs on real time (realClock, the default) and on the simulator's
// virtual time (src/sim/sim-clock.ts), where a seed replays a run exactly. Nothing in
// src/transport or src/controller calls setTimeout, setInterval or Date.now directly.
//
// Contract:
//   - nowMs() is monotonic (never goes back) and in milliseconds; wallTimeMs() is for display
//     only (event times, status), never for deciding anything.
//   - setTimer(callback, delayMs) runs callback once, no earlier than delayMs from now; the
//     handle's cancel() is idempotent and a cancelled timer never runs.
//   - Timers created by a real clock are unref'd when asked (`unref: true`), so a heartbeat
//     never keeps a finished process alive.

import { performance } from 'node:perf_hooks';

/** A pending timer; cancel() is idempotent. */
export interface TimerHandle {
  cancel(): void;
}

/** Options of a timer. */
export interface TimerOptions {
  /** Do not keep the process alive for this timer (real clock only). @default false */
  unref?: boolean;
}

/** The time and timers that controller and transport code use. */
export interface Clock {
  /** Monotonic milliseconds (may be fractional). */
  nowMs(): number;
  /** Milliseconds since the epoch, for display (events, status). */
  wallTimeMs(): number;
  /** Runs `callback` once after `delayMs` (>= 0). */
  setTimer(callback: () => void, delayMs: number, options?: TimerOptions): TimerHandle;
  /**
   * Real asynchronous work (a volume flush on the thread pool) whose completion a simulated
   * clock must wait for before it fires the next timer, so runs replay identically. A real
   * clock has nothing to wait for. @default absent: the promise is used as it is
   */
  settle?<T>(promise: Promise<T>): Promise<T>;
  /**
   * Runs `callback` once the I/O events ready now have been handled (a real clock: setImmediate,
   * the loop's check phase), so work many of them ask for runs once for all (runtime/
   * coalesce.ts). @default absent: a microtask (the simulator, whose events are its own)
   */
  defer?(callback: () => void): void;
}

/** `clock.settle(promise)` when the clock has it, else the promise. */
export function settled<T>(clock: Clock, promise: Promise<T>): Promise<T> {
  return clock.settle === undefined ? promise : clock.settle(promise);
}

/**
 * Every promise settled (Promise.allSettled), or 'timeout' when `timeoutMs` of `clock` pass
 * first; the timer is cancelled either way.
 */
export function allSettledWithin<T>(clock: Clock, promises: readonly Promise<T>[], timeoutMs: number): Promise<PromiseSettledResult<T>[] | 'timeout'> {
  let timer: TimerHandle | undefined;
  const deadline = new Promise<'timeout'>((resolve) => { timer = clock.setTimer(() => resolve('timeout'), timeoutMs, { unref: true }); });
  return Promise.race([Promise.allSettled(promises), deadline]).finally(() => timer?.cancel());
}

class RealClock implements Clock {
  nowMs(): number {
    return performance.now();
  }

  wallTimeMs(): number {
    return Date.now();
  }

  setTimer(callback: () => void, delayMs: number, options?: TimerOptions): TimerHandle {
    if (!(delayMs >= 0)) throw new RangeError(`delayMs must be >= 0, got ${delayMs}`);
    const timer = setTimeout(callback, delayMs);
    if (options?.unref === true) timer.unref();
    return { cancel: () => clearTimeout(timer) };
  }

  defer(callback: () => void): void {
    setImmediate(callback);
  }
}

/** The process's real clock (performance.now, setTimeout). */
export const realClock: Clock = new RealClock();
