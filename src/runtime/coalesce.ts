// Notes on the design
// -------------------
// A task that many events ask for and that runs once for all of them: schedule() queues one run
// (a later schedule() before it runs changes nothing); a schedule() during the run queues
// exactly one more after it. The pair pumps use it: every write asks to ship, one pump per burst
// reads the journal once.
//
// When the run is queued: by `defer` when given (a real clock's defer: setImmediate, after every
// I/O event ready now), else as a microtask (after the current event only). A microtask pump
// ran once per NBD read, so 16 x 64 KiB writes arriving together went out as 16 link messages
// and 16 wake-ups of the secondary; deferred, they go as one (bench/README, pair exports on
// large writes). The simulator's clock has no defer: its runs keep the microtask.

import type { Clock } from './clock';

/** Queues `callback` as a Coalesced run on `clock`: its defer when it has one, else a microtask. */
export function deferOn(clock: Clock, callback: () => void): void {
  if (clock.defer !== undefined) clock.defer(callback);
  else queueMicrotask(callback);
}

/** Runs `task` once per burst of schedule() calls (see the design note). */
export class Coalesced {
  private running = false;
  private again = false;
  private readonly queue: (callback: () => void) => void;

  constructor(private readonly task: () => void, defer?: (callback: () => void) => void) {
    this.queue = defer ?? queueMicrotask;
  }

  schedule(): void {
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    this.queue(() => {
      try {
        this.task();
      } finally {
        this.running = false;
        if (this.again) {
          this.again = false;
          this.schedule();
        }
      }
    });
  }
}
