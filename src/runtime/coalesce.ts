// Notes on the design
// -------------------
// A task that many events ask for and that runs once for all of them: schedule() queues one run
// as a microtask (a later schedule() before it runs changes nothing); a schedule() during the
// run queues exactly one more after it. The pair pumps use it: every write asks to ship, one
// pump per burst reads the journal once.

/** Runs `task` once per burst of schedule() calls (see the design note). */
export class Coalesced {
  private running = false;
  private again = false;

  constructor(private readonly task: () => void) {}

  schedule(): void {
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    queueMicrotask(() => {
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
