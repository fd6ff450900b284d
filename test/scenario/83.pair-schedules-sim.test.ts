// Scenario: a hundred thousand short seeded schedules of a pair's life, and a few long ones, on
// the simulated network and clock (src/sim/pair-schedule.ts, kinds in src/sim/schedule-kinds.ts):
// random host writes, zeroes and trims, link drops, partitions one way and both, delays,
// bandwidth caps, heals, controller crashes (regions kept, objects dropped) and restarts,
// operator suspend and resume, takeover, failback and resolve, lockstep calls, in sync (fence
// 'never' or 'data') and async mode, some with a second secondary (fan-out); then healing and
// quiescence. The invariant checker (src/sim/pair-invariants.ts) proves: a sync takeover loses no
// acknowledged write; a secondary that says it is consistent is a write-order prefix of its
// primary's history; after quiescence both sides are identical and the primary holds its
// history's last image; no pair stays copying or resyncing past its bound with a clean link; a
// lockstep done covers every earlier write. The seeds run in worker threads, one per core
// (src/sim/sim-batch.ts); each schedule starts from nothing, so a seed's verdict is its own.
//
// A failing seed is printed with the command that replays it alone:
//   BLOCKMIRROR_PAIR_SIM_KIND=short BLOCKMIRROR_PAIR_SIM_SEED=<n> npx mocha --no-config --timeout 120000 --exit dist/test/scenario/83.pair-schedules-sim.test.js
//   (or: blockmirror sim --seed <n> --steps 3 --blocks 8 ..., as printed)
// and is shrunk to a minimal event list, written to .test-results/sim-<kind>-<seed>.json with a
// `blockmirror sim --replay` line; docs/sim.md says how such a list becomes a permanent case in
// test/scenario/regressions/. With BLOCKMIRROR_PAIR_SIM_SEED only that seed runs, and its trace
// and the controllers' log are printed.
//
// Counts: BLOCKMIRROR_PAIR_SIM_RUNS short schedules (default 100000), BLOCKMIRROR_PAIR_SIM_LONG_RUNS
// long ones (default 5), BLOCKMIRROR_PAIR_SIM_WORKERS threads (default: one per core); the base
// seed (BLOCKMIRROR_PAIR_SIM_BASE, default from the clock) is printed first.
import * as assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';

import { type PairScheduleOptions, runPairSchedule } from '../../src/sim/pair-schedule';
import { type ScheduleKind, KIND_STEPS, SCHEDULE_KINDS, scheduleOptionsFor } from '../../src/sim/schedule-kinds';
import { formatScheduleSpec, optionsOfSpec, specOf } from '../../src/sim/schedule-spec';
import { type ScheduleBatchFailure, type ScheduleBatchResult, runScheduleBatch } from '../../src/sim/sim-batch';
import { describeEvents, shrinkSchedule } from '../../src/sim/shrink';

function integerFromEnv(name: string): number | undefined {
  const text = process.env[name];
  if (text === undefined || text === '') return undefined;
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`${name} must be a non-negative integer, got ${JSON.stringify(text)}`);
  return value;
}

const REPLAY_SEED = integerFromEnv('BLOCKMIRROR_PAIR_SIM_SEED');
const REPLAY_KIND = (process.env.BLOCKMIRROR_PAIR_SIM_KIND ?? 'short') as ScheduleKind;
if (!SCHEDULE_KINDS.includes(REPLAY_KIND)) throw new RangeError(`BLOCKMIRROR_PAIR_SIM_KIND must be one of ${SCHEDULE_KINDS.join(', ')}`);
const SHORT_RUNS = integerFromEnv('BLOCKMIRROR_PAIR_SIM_RUNS') ?? 100_000;
const LONG_RUNS = integerFromEnv('BLOCKMIRROR_PAIR_SIM_LONG_RUNS') ?? 5;
const WORKERS = integerFromEnv('BLOCKMIRROR_PAIR_SIM_WORKERS');
const BASE_SEED = integerFromEnv('BLOCKMIRROR_PAIR_SIM_BASE') ?? Date.now() % 2 ** 31;
const REPLAY_COMMAND = 'npx mocha --no-config --timeout 120000 --exit dist/test/scenario/83.pair-schedules-sim.test.js';
const RESULTS_DIR = path.resolve(__dirname, '../../../.test-results');

/** Seeds that once failed, with the options they failed with (the defaults then: 40 steps). */
const FOUND: readonly { options: PairScheduleOptions; found: string }[] = [
  { options: { seed: 16, mode: 'async', steps: 40 },
    found: 'a PAIR_RESYNC_DONE of a pass abandoned by a journal-full suspension made a false split brain (rule 10), and resolve then left no primary (primary-pair.ts pass/open)' },
  { options: { seed: 99, mode: 'sync', steps: 40 },
    found: "fence 'data' acknowledged writes of a restarted primary in simplex; the takeover of the outdated secondary lost them (primary-pair.ts ackPoint)" },
];

function cliReplay(kind: ScheduleKind, seed: number): string {
  const options = scheduleOptionsFor(kind, seed);
  return `blockmirror sim --seed ${seed} --mode ${options.mode} --steps ${KIND_STEPS[kind]} --blocks ${options.blockCount ?? 64}` +
    `${options.fanOut === true ? ' --fan-out' : ''}${options.journalCapacityBytes === undefined ? '' : ` (journal ${options.journalCapacityBytes} bytes: replay with the env line)`}`;
}

function explain(failure: ScheduleBatchFailure): string {
  return [
    `pair schedule ${failure.kind} seed ${failure.seed} failed ${failure.invariant}:`,
    ...failure.violations.map((text) => `  ${text}`),
    '  last trace lines:',
    ...failure.traceTail.map((line) => `    ${line}`),
    `replay: BLOCKMIRROR_PAIR_SIM_KIND=${failure.kind} BLOCKMIRROR_PAIR_SIM_SEED=${failure.seed} ${REPLAY_COMMAND}`,
    `    or: ${cliReplay(failure.kind, failure.seed)}`,
  ].join('\n');
}

/** Shrinks a failing seed and writes the minimal list; returns the lines to print. */
async function shrinkFailure(failure: ScheduleBatchFailure): Promise<string> {
  const result = await runPairSchedule(scheduleOptionsFor(failure.kind, failure.seed));
  if (result.violations.length === 0) return `  seed ${failure.seed} passed when run alone: it depends on something outside its seed (a bug of the harness)`;
  const shrunk = await shrinkSchedule(specOf(result), { maxRuns: 300 });
  mkdirSync(RESULTS_DIR, { recursive: true });
  const file = path.join(RESULTS_DIR, `sim-${failure.kind}-${failure.seed}.json`);
  writeFileSync(file, formatScheduleSpec(shrunk.minimal));
  return [`  shrunk to ${shrunk.minimal.events.length} of ${result.events.length} events (${shrunk.runs} replays${shrunk.oneMinimal ? ', 1-minimal' : ''}), still failing ${shrunk.invariant}:`,
    ...describeEvents(shrunk.minimal).map((line) => `    ${line}`),
    `  written to ${file}`, `  replay: blockmirror sim --replay ${file}`].join('\n');
}

async function batch(kind: ScheduleKind, firstSeed: number, count: number): Promise<ScheduleBatchResult> {
  return runScheduleBatch({ kind, firstSeed, count, ...(WORKERS === undefined ? {} : { workers: WORKERS }) });
}

describe('83 pair schedules (simulation)', function () {
  this.timeout(3_600_000);

  if (REPLAY_SEED !== undefined) {
    it(`${REPLAY_KIND} seed ${REPLAY_SEED} keeps every pair invariant (replay)`, async () => {
      const log: string[] = [];
      const options = scheduleOptionsFor(REPLAY_KIND, REPLAY_SEED);
      options.onLog = (line) => log.push(line);
      const result = await runPairSchedule(options);
      console.log([...result.trace, '--- controller log ---', ...log].join('\n'));
      assert.deepEqual(result.violations, []);
    });
    return;
  }

  it(`${SHORT_RUNS} short and ${LONG_RUNS} long seeded schedules keep every pair invariant`, async () => {
    console.log(`      pair schedules: base seed ${BASE_SEED} (BLOCKMIRROR_PAIR_SIM_BASE), ${SHORT_RUNS} short + ${LONG_RUNS} long`);
    const startedAtMs = Date.now();
    const short = await batch('short', BASE_SEED, SHORT_RUNS);
    const long = await batch('long', BASE_SEED, LONG_RUNS);
    const elapsedS = (Date.now() - startedAtMs) / 1000;
    const failures = [...short.failures, ...long.failures];
    const failureCount = short.failureCount + long.failureCount;
    console.log(`      pair sim: ${short.count} short + ${long.count} long schedules, ${failureCount} failures, ${elapsedS.toFixed(0)} s ` +
      `(${short.workers} workers; short ${(short.elapsedMs / 1000).toFixed(1)} s, ${(short.elapsedMs / Math.max(1, short.count)).toFixed(2)} ms each; long ${(long.elapsedMs / 1000).toFixed(1)} s)`);
    console.log(`      short totals ${JSON.stringify(short.totals)}`);
    console.log(`      long totals ${JSON.stringify(long.totals)}`);
    assert.equal(short.count, SHORT_RUNS, 'every short seed ran');
    assert.equal(long.count, LONG_RUNS, 'every long seed ran');
    if (SHORT_RUNS >= 1000) {
      // The runs did what they are for: writes acknowledged, faults, crashes, takeovers checked.
      for (const key of ['acknowledged', 'crashes', 'takeoverChecks', 'prefixChecks', 'lockstepChecks']) {
        assert.ok((short.totals[key] ?? 0) > 0, `the short runs had no ${key}: ${JSON.stringify(short.totals)}`);
      }
    }
    if (failures.length > 0) {
      for (const failure of failures.slice(0, 5)) console.log(explain(failure));
      const first = failures[0] as ScheduleBatchFailure;
      console.log(await shrinkFailure(first));
      assert.fail(`${failureCount} of ${short.count + long.count} seeds failed: ${failures.map((failure) => `${failure.kind} ${failure.seed}`).join(', ')}\n${explain(first)}`);
    }
  });

  it('a seed replays identically, line for line, and another seed does not', async () => {
    const first = await runPairSchedule(scheduleOptionsFor('standard', 4243));
    const again = await runPairSchedule(scheduleOptionsFor('standard', 4243));
    const other = await runPairSchedule(scheduleOptionsFor('standard', 4245));
    assert.deepEqual(first.violations, [], first.trace.join('\n'));
    assert.ok(first.counters.writes > 10, `the run wrote (${JSON.stringify(first.counters)})`);
    assert.deepEqual(again.trace, first.trace);
    assert.deepEqual(again.counters, first.counters);
    assert.notDeepEqual(other.trace, first.trace);
  });

  it('the event list a seed recorded replays that seed line for line (short, standard and fan-out seeds)', async () => {
    for (const [kind, seed] of [['short', 11], ['short', 14], ['standard', 4243], ['standard', 4245]] as const) {
      const seeded = await runPairSchedule(scheduleOptionsFor(kind, seed));
      const spec = JSON.parse(formatScheduleSpec(specOf(seeded))) as ReturnType<typeof specOf>;
      const replayed = await runPairSchedule(optionsOfSpec(spec));
      assert.equal(seeded.events.length, KIND_STEPS[kind]);
      assert.deepEqual(replayed.trace, seeded.trace, `${kind} seed ${seed}`);
      assert.deepEqual(replayed.counters, seeded.counters);
    }
  });

  it('a seed gives the same verdict and trace in a worker thread as alone', async () => {
    const alone = await runPairSchedule(scheduleOptionsFor('short', 77));
    const batched = await runScheduleBatch({ kind: 'short', firstSeed: 70, count: 10, workers: 2, sliceSize: 3 });
    assert.equal(batched.count, 10);
    assert.equal(batched.failureCount, 0);
    assert.equal(alone.violations.length, 0);
    const inline = await runScheduleBatch({ kind: 'short', firstSeed: 70, count: 10, workers: 0 });
    assert.deepEqual(batched.totals, inline.totals, 'the same seeds count the same in workers and inline');
  });

  for (const { options, found } of FOUND) {
    it(`seed ${options.seed} (${options.mode}), which once failed, passes: ${found}`, async () => {
      const result = await runPairSchedule(options);
      assert.deepEqual(result.violations, [], result.trace.slice(-40).join('\n'));
    });
  }
});
