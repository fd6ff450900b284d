// Notes on the design
// -------------------
// One seeded schedule of a pair's life on the simulator, checked against the model of
// pair-invariants.ts. It sits above the controller (it drives Controllers), like mesh.ts, so
// that a `blockmirror sim` command can run it as the tests do.
//
// By concern, one file each, as a stack of classes that each add one layer:
//   - pair-schedule-world.ts: the world (options, clock, network, controllers, lineages, faults,
//     trace and violations) and the helpers every layer reads it with;
//   - pair-schedule-checks.ts: the invariant checks;
//   - pair-schedule-operations.ts: what each step does;
//   - pair-schedule-choices.ts: the operations a step may be, the event records and the seeded
//     or replayed draws;
//   - this file: the run loop (PairSchedule) and the result, and runPairSchedule().
// What other modules import (options, result, OPERATIONS, SIM_LINK_TUNING, CONTROLLER_IDS, the
// event types) is re-exported from here.
//
// The run: the controllers start (the secondaries first), then `steps` operations drawn from
// the seed (or replayed from `events`), each followed by a little virtual time and the per-step
// check. Then everything is healed, restarted and resumed, split brains resolved, and the clock
// runs until every pair is mirroring with no lag (bounded in virtual time), and the final checks
// run. The result carries the trace, the counters, the violations and the event list with the
// draws of the final quiescence (`tail`), so the run replays.
//
// Costs: the end of a run stops each controller as a crash would (no graceful link close, no
// flush: nothing is checked after it) and then closes its pairs and volume itself, so nothing is
// left to finalizers. Errors: what the checks find is returned as sentences, never thrown; an
// exception of the pair code is caught and returned as a violation too (with its stack).

import { Journal } from '../storage/journal';
import { Region } from '../storage/region';
import { SnapshotStore } from '../storage/snapshot';
import { Volume } from '../storage/volume';
import { OPERATIONS, type ScheduleEvent, type ScheduleOperation } from './pair-schedule-choices';
import { PairScheduleOperations } from './pair-schedule-operations';
import { type PairScheduleCounters, type PairScheduleOptions, VOLUME } from './pair-schedule-world';

export { OPERATIONS, type ScheduleEvent, type ScheduleOperation } from './pair-schedule-choices';
export { CONTROLLER_IDS, SIM_LINK_TUNING, type PairScheduleCounters, type PairScheduleOptions } from './pair-schedule-world';

/** What one schedule found. */
export interface PairScheduleResult {
  seed: number;
  mode: 'sync' | 'async';
  fanOut: boolean;
  fence: 'never' | 'data';
  /** Violations of the invariants (empty: the schedule passed). */
  violations: string[];
  /** One line per operation and per finding ("<virtual ms> <what>"). */
  trace: string[];
  counters: PairScheduleCounters;
  /** Controllers in the run (2, or more for a fan-out). */
  controllers: number;
  /** Everything that decided the run, as a replayable list (schedule-spec.ts). */
  setup: { blockCount: number; blockBytes: number; journalCapacityBytes: number; stepMaxMs: number; transientBoundMs: number; quiesceMaxMs: number };
  events: ScheduleEvent[];
  tail: number[];
}

/** Runs one schedule; never throws for what it finds. */
export async function runPairSchedule(options: PairScheduleOptions): Promise<PairScheduleResult> {
  const schedule = new PairSchedule(options);
  try {
    await schedule.run();
  } catch (error) {
    schedule.violation(`the schedule threw: ${String((error as Error)?.stack ?? error)}`);
  } finally {
    await schedule.dispose();
  }
  return schedule.result();
}

/** One schedule: the run loop over the operations, the checks and the world it inherits. */
class PairSchedule extends PairScheduleOperations {
  async run(): Promise<void> {
    // The secondaries first, as a site comes up.
    for (const id of [...this.ids].reverse()) await this.startController(id);
    this.note(`start: ${this.mode}${this.mode === 'sync' ? ` fence ${this.fence}` : ''}${this.fanOut ? (this.ids.length === 3 ? ' fan-out' : ` fan-out to ${this.ids.length - 1}`) : ''}, ${this.blockCount} blocks, journal ${this.journalCapacityBytes} bytes`);
    await this.clock.runUntil(() => this.quiesced(), { maxTimeMs: 2000 });
    for (let step = 0; step < this.steps; step++) {
      const recorded = this.replay?.[step];
      const draws = this.choose.begin(recorded?.draws ?? [], `replay-${step}`);
      const traceFrom = this.trace.length;
      let operation: ScheduleOperation;
      if (recorded !== undefined) operation = recorded.operation;
      else {
        const roll = this.choose.int(100);
        draws.length = 0; // the roll is the operation's name in the event
        operation = (OPERATIONS.find((entry) => roll < entry.below) as { operation: ScheduleOperation }).operation;
      }
      await this.step(operation);
      const event: ScheduleEvent = { operation, draws: [...draws], afterMs: 0 };
      this.choose.begin([], 'after');
      event.afterMs = recorded?.afterMs ?? this.choose.int(this.stepMaxMs + 1);
      this.events.push(event);
      await this.clock.runFor(event.afterMs);
      this.checkStep();
      event.trace = this.trace.slice(traceFrom);
    }
    this.tail = this.choose.begin(this.options.tail ?? [], 'replay-tail');
    await this.quiesce();
  }

  private async step(operation: ScheduleOperation): Promise<void> {
    switch (operation) {
      case 'writes': {
        const count = 1 + this.choose.int(6);
        for (let index = 0; index < count; index++) this.hostWrite('write');
        return;
      }
      case 'zero': return this.hostWrite('zero');
      case 'trim': return this.hostWrite('trim');
      case 'lockstep':
        this.startLockstep();
        await this.clock.runFor(50 + this.choose.int(300));
        return;
      case 'link-fault': return this.linkFault();
      case 'heal': return this.healAll();
      case 'crash': return this.crash();
      case 'restart': {
        const id = this.pick(this.ids.filter((candidate) => this.controllers.get(candidate) === undefined));
        if (id !== undefined) await this.restart(id);
        return;
      }
      case 'suspend': return this.suspendOrResume(true);
      case 'resume': return this.suspendOrResume(false);
      case 'takeover': if (!this.fanOut) await this.takeover(); return;
      case 'failback': if (!this.fanOut) await this.failback(); return;
      case 'resolve': await this.resolve(); return;
      default: throw new TypeError(`unknown schedule operation ${JSON.stringify(operation)}`);
    }
  }

  private async quiesce(): Promise<void> {
    this.healAll();
    for (const id of this.ids) if (this.controllers.get(id) === undefined) await this.restart(id);
    const startMs = this.clock.nowMs();
    while (!this.quiesced()) {
      if (this.clock.nowMs() - startMs > this.quiesceMaxMs) {
        this.violation(`not quiesced within ${this.quiesceMaxMs} ms of healing: ${this.describe()}`);
        return;
      }
      await this.clock.runUntil(() => this.quiesced(), { maxTimeMs: 100 });
      this.checkStep();
      if (this.quiesced()) break;
      // What an operator does after a storm: resolve split brains, resume what waits for resume.
      if (await this.resolve()) continue;
      for (const link of this.links) {
        for (const id of [link.primary, link.secondary]) {
          const status = this.side(id, link.pair);
          if (status?.role === 'primary' && status.state === 'suspended' && status.link === 'up' && (status.reason === 'operator' || status.reason === 'secondary-error')) {
            try {
              this.controller(id)?.pairs?.primary(link.pair).resume();
              this.counters.resumes++;
              this.note(`resume ${link.pair} on ${id} (${String(status.reason)})`);
            } catch (error) {
              this.note(`resume ${link.pair} on ${id} refused: ${this.code(error)}`);
            }
          }
        }
      }
    }
    this.note(`quiesced: ${this.describe()}`);
    this.checkStep();
    this.checkQuiesced();
  }

  async dispose(): Promise<void> {
    this.counters.virtualMs = this.now();
    for (const id of this.ids) {
      const controller = this.controllers.get(id);
      this.controllers.set(id, undefined);
      if (controller === undefined) continue;
      // The run is over and nothing more is checked, so the controller stops as a SIGKILL
      // would (no graceful link close, no flush: real waits that are most of a short
      // schedule's close), then what it held is released here, not left to finalizers: its
      // pairs' journals, bitmaps and metadata, and its volume.
      const volume = controller.volume(VOLUME);
      const pairs = controller.pairs;
      controller.crash();
      try {
        await pairs?.close();
      } catch {
        // Best effort; the regions are unlinked below either way.
      }
      try {
        await volume?.close();
      } catch {
        // As above.
      }
    }
    for (const id of this.ids) {
      const name = this.names.get(id) as string;
      Volume.unlink({ name });
      // The store of a resync image (keepResyncImages) outlives its snapshots: without this, a
      // 100,000-schedule run left thousands of store regions in /dev/shm.
      SnapshotStore.unlink({ name });
      // A primary's kept journal (journal-feed.ts).
      Journal.unlink({ name });
      for (const link of this.links) Region.unlink('shared', `blockmirror.pair.${name}.${link.pair}`);
    }
  }

  result(): PairScheduleResult {
    return {
      seed: this.seed, mode: this.mode, fanOut: this.fanOut, fence: this.fence,
      violations: [...this.violations], trace: [...this.trace], counters: { ...this.counters },
      controllers: this.ids.length,
      setup: { blockCount: this.blockCount, blockBytes: this.blockBytes, journalCapacityBytes: this.journalCapacityBytes,
        stepMaxMs: this.stepMaxMs, transientBoundMs: this.transientBoundMs, quiesceMaxMs: this.quiesceMaxMs },
      events: this.events.map((event) => ({ ...event, draws: [...event.draws] })), tail: [...this.tail],
    };
  }
}
