// Scenario: the permanent regression cases of the pair simulation. Every file in
// test/scenario/regressions/ is a written-down schedule (src/sim/schedule-spec.ts: what the
// shrinker prints for a failing seed, or a once-failing seed recorded whole); each replays here
// on every CI run and must keep every invariant on the real pair logic. A case found with a
// deliberate bug (`mutation`) is replayed with it as well and must still fail the invariant it
// names: the case keeps its teeth, and the replay path is proven to reproduce a failure.
// How to add a case: docs/sim.md ("Regression cases").
import * as assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import * as path from 'node:path';

import { runPairSchedule } from '../../src/sim/pair-schedule';
import { optionsOfSpec, parseScheduleSpec } from '../../src/sim/schedule-spec';
import { failedInvariants } from '../../src/sim/verdicts';

// From dist/test/scenario back to the sources' directory (the JSON files are not compiled).
const DIRECTORY = path.resolve(__dirname, '../../../test/scenario/regressions');
const FILES = readdirSync(DIRECTORY).filter((name) => name.endsWith('.json')).sort();

describe('89 pair simulation regression cases', function () {
  this.timeout(120_000);

  it('there are cases to replay', () => {
    assert.ok(FILES.length >= 3, `${DIRECTORY} holds ${FILES.length} cases`);
    process.stdout.write(`      ${FILES.length} cases in test/scenario/regressions\n`);
  });

  for (const file of FILES) {
    const spec = parseScheduleSpec(JSON.parse(readFileSync(path.join(DIRECTORY, file), 'utf8')));
    const replay = `blockmirror sim --replay test/scenario/regressions/${file}${spec.mutation === undefined ? '' : ' --mutation none'}`;
    it(`${file} (${spec.events.length} events) keeps every invariant${spec.found === undefined ? '' : `: ${spec.found.slice(0, 120)}`}`, async () => {
      const result = await runPairSchedule(optionsOfSpec(spec, false));
      assert.deepEqual(result.violations, [], `${result.trace.slice(-40).join('\n')}\nreplay: ${replay}`);
      assert.equal(result.events.length, spec.events.length, 'every event ran');
    });
    if (spec.mutation !== undefined) {
      it(`${file} still fails ${spec.invariant ?? 'an invariant'} with its mutation ${spec.mutation}`, async () => {
        const result = await runPairSchedule(optionsOfSpec(spec, true));
        const failed = failedInvariants(result);
        if (spec.invariant !== undefined) assert.ok(failed.includes(spec.invariant), `failed ${JSON.stringify(failed)}, not ${spec.invariant}`);
        else assert.ok(failed.length > 0, 'the mutation no longer fails this case');
      });
    }
  }
});
