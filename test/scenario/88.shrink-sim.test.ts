// Scenario: the shrinker on real failures. Each deliberately broken variant of the pair logic
// (the mutation check's PairMutation: an apply out of order, a dropped write, a resync that skips
// a track) fails a seeded schedule; the shrinker (src/sim/shrink.ts) removes events while the
// same invariant keeps failing. The minimal list must still fail that invariant, be no longer
// than the original, replay identically from its written form, be 1-minimal (checked here by
// removing each event in turn), and pass on the unbroken logic.
import * as assert from 'node:assert/strict';

import type { PairMutation } from '../../src/replication/pairs';
import { runPairSchedule } from '../../src/sim/pair-schedule';
import { formatScheduleSpec, optionsOfSpec, parseScheduleSpec, specOf, withEvents } from '../../src/sim/schedule-spec';
import { describeEvents, shrinkSchedule } from '../../src/sim/shrink';
import { failedInvariants } from '../../src/sim/verdicts';

const BASE_SEED = 5000;

async function firstFailing(mutation: PairMutation, mode: 'sync' | 'async') {
  for (let seed = BASE_SEED; seed < BASE_SEED + 200; seed++) {
    const result = await runPairSchedule({ seed, mode, steps: 20, blockCount: 64, mutation });
    if (result.violations.length > 0) return result;
  }
  return undefined;
}

describe('88 shrinking failing pair schedules (simulation)', function () {
  this.timeout(300_000);

  for (const [mutation, mode] of [['apply-out-of-order', 'async'], ['drop-write', 'sync'], ['skip-track', 'async']] as const) {
    it(`${mutation} (${mode}): the shrunk list still fails the same invariant, is 1-minimal, and passes unbroken`, async () => {
      const failing = await firstFailing(mutation, mode);
      assert.ok(failing !== undefined, `${mutation} made no failure`);
      const shrunk = await shrinkSchedule(specOf(failing, { mutation }), { maxRuns: 400 });
      const minimal = shrunk.minimal;
      process.stdout.write(`      seed ${failing.seed}: ${failing.events.length} -> ${minimal.events.length} events in ${shrunk.runs} replays, failing ${shrunk.invariant}\n`);
      for (const line of describeEvents(minimal)) process.stdout.write(`        ${line}\n`);
      assert.ok(minimal.events.length <= failing.events.length);
      assert.ok(minimal.events.length < failing.events.length, 'something was removed');
      // Its written form replays the same failing run, twice alike.
      const written = parseScheduleSpec(JSON.parse(formatScheduleSpec(minimal)));
      const replayed = await runPairSchedule(optionsOfSpec(written));
      const again = await runPairSchedule(optionsOfSpec(written));
      assert.ok(failedInvariants(replayed).includes(shrunk.invariant), replayed.trace.join('\n'));
      assert.deepEqual(again.trace, replayed.trace);
      assert.deepEqual(replayed.trace, shrunk.result.trace);
      // 1-minimal: without any one event, that invariant holds.
      assert.equal(shrunk.oneMinimal, true, `the budget ran out after ${shrunk.runs} replays`);
      for (let index = 0; index < minimal.events.length; index++) {
        const without = withEvents(minimal, minimal.events.filter((_, other) => other !== index));
        const result = await runPairSchedule(optionsOfSpec(without));
        assert.ok(!failedInvariants(result).includes(shrunk.invariant), `without event ${index + 1} (${minimal.events[index]?.operation}) it still fails`);
      }
      // The unbroken logic keeps every invariant on the same list.
      const clean = await runPairSchedule(optionsOfSpec(minimal, false));
      assert.deepEqual(clean.violations, []);
    });
  }

  it('refuses to shrink a schedule that does not fail', async () => {
    const passing = await runPairSchedule({ seed: 5000, mode: 'async', steps: 5, blockCount: 8 });
    assert.deepEqual(passing.violations, []);
    await assert.rejects(shrinkSchedule(specOf(passing)), RangeError);
  });
});
