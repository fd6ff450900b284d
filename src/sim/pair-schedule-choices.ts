// Notes on the design
// -------------------
// The choices of a pair schedule (pair-schedule.ts): which operations a step may be (OPERATIONS,
// picked by the step's first draw), what a step is as a record (ScheduleEvent: its operation,
// the raw 32-bit draws it made, the virtual ms run after it), and the source of every draw the
// schedule makes (ScheduleChoices), seeded or replayed.
//
// Event lists: every step is recorded as a ScheduleEvent, and the result carries the list;
// `events` replays a list instead of drawing (a step reads its own draws in order, then a fork
// named after its place), so a list from a seeded run replays it line for line and a shortened
// list (shrink.ts) is a schedule of its own that replays identically. schedule-spec.ts writes
// lists down; test/scenario/regressions/ holds the permanent ones.
//
// Determinism: the schedule's draws come from their own fork of the seed ('schedule'), apart
// from the network's and each controller incarnation's, so recording them changes no draw.
// Errors: int() throws RangeError on a bound out of 1..2^32 (a caller mistake).

import type { SeededRandom } from '../runtime/random';

/** What a schedule step does; the first draw of a seeded step picks it (see OPERATIONS). */
export type ScheduleOperation = 'writes' | 'zero' | 'trim' | 'lockstep' | 'link-fault' | 'heal' | 'crash' | 'restart'
  | 'suspend' | 'resume' | 'takeover' | 'failback' | 'resolve';

/** The operations by the roll (0..99) below which each is drawn, in order. */
export const OPERATIONS: readonly { operation: ScheduleOperation; below: number }[] = Object.freeze([
  { operation: 'writes', below: 40 }, { operation: 'zero', below: 44 }, { operation: 'trim', below: 47 },
  { operation: 'lockstep', below: 50 }, { operation: 'link-fault', below: 62 }, { operation: 'heal', below: 69 },
  { operation: 'crash', below: 74 }, { operation: 'restart', below: 82 }, { operation: 'suspend', below: 85 },
  { operation: 'resume', below: 88 }, { operation: 'takeover', below: 93 }, { operation: 'failback', below: 96 },
  { operation: 'resolve', below: 100 },
]);

/**
 * One step of a schedule as it can be replayed alone: the operation, the raw 32-bit draws it
 * made (which controller, which blocks, which fault; a replay reads them in the same order, so
 * a step means the same wherever the state lets it), and the virtual ms run after it. `trace`
 * is what the step printed when it was recorded (for people; a replay ignores it).
 */
export interface ScheduleEvent {
  operation: ScheduleOperation;
  draws: number[];
  afterMs: number;
  trace?: string[];
}

/**
 * The schedule's source of choices. Seeded: 32-bit draws from the seed's 'schedule' fork, each
 * kept in the current bucket (a step's event, or the tail); `int()` is SeededRandom.int() on
 * them, so recording changes no draw. Replayed: a step's recorded draws in order, then (a step
 * whose state asks for more than it recorded) draws from a fork named after its place in the
 * list, so a shortened list still replays identically on every run.
 */
export class ScheduleChoices {
  private bucket: number[] = [];
  private queue: readonly number[] = [];
  private queueIndex = 0;
  private fallback: SeededRandom | undefined;

  constructor(private readonly source: SeededRandom, private readonly replaying: boolean) {}

  /** Starts a bucket: draws go there (seeded) or come from `recorded` (replayed). */
  begin(recorded: readonly number[], fallbackLabel: string): number[] {
    this.bucket = [];
    this.queue = recorded;
    this.queueIndex = 0;
    this.fallback = this.replaying ? this.source.fork(fallbackLabel) : undefined;
    return this.bucket;
  }

  int(bound: number): number {
    if (!Number.isInteger(bound) || bound < 1 || bound > 2 ** 32) throw new RangeError(`bound must be an integer from 1 to 2^32, got ${bound}`);
    let draw: number;
    if (!this.replaying) draw = this.source.uint32();
    else if (this.queueIndex < this.queue.length) draw = this.queue[this.queueIndex++] as number;
    else draw = (this.fallback as SeededRandom).uint32();
    this.bucket.push(draw);
    return Math.floor((draw / 2 ** 32) * bound);
  }
}
