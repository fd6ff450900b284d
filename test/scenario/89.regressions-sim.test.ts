// Scenario: the permanent regression cases of the pair simulation. Every file in
// test/scenario/regressions/ is a written-down schedule (src/sim/schedule-spec.ts: what the
// shrinker prints for a failing seed, or a once-failing seed recorded whole); each replays here
// on every CI run and must keep every invariant on the real pair logic. A case found with a
// deliberate bug (`mutation`) is replayed with it as well and must still fail the invariant it
// names: the case keeps its teeth, and the replay path is proven to reproduce a failure.
// How to add a case: docs/sim.md ("Regression cases").
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import * as path from 'node:path';

import { runPairSchedule } from '../../src/sim/pair-schedule';
import { optionsOfSpec, parseScheduleSpec } from '../../src/sim/schedule-spec';
import { failedInvariants } from '../../src/sim/verdicts';

// From dist/test/scenario back to the sources' directory (the JSON files are not compiled).
const DIRECTORY = path.resolve(__dirname, '../../../test/scenario/regressions');
const FILES = readdirSync(DIRECTORY).filter((name) => name.endsWith('.json')).sort();
const MAIN = path.resolve(__dirname, '../../src/cli/main.js');

function sim(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const run = spawnSync(process.execPath, [MAIN, 'sim', ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

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

  it('blockmirror sim --replay replays a case: it fails with its mutation (exit 1), passes with --mutation none, and refuses a bad list (exit 2)', () => {
    const file = path.join(DIRECTORY, 'mutation-skip-track.json');
    const broken = sim('--replay', file, '--quiet');
    assert.equal(broken.status, 1, broken.stdout + broken.stderr);
    assert.match(broken.stdout, /FAIL {2}consistent-is-prefix/);
    const clean = sim('--replay', file, '--mutation', 'none');
    assert.equal(clean.status, 0, clean.stdout + clean.stderr);
    assert.match(clean.stdout, /replay of 3 events \(seed 5000\)/);
    assert.match(clean.stdout, /pass {2}identical-after-quiescence/);
    const bad = sim('--replay', '{"format":"blockmirror-pair-schedule/1","seed":1,"mode":"async","fence":"never","blockCount":8,"journalCapacityBytes":65536,"events":[{"operation":"explode","draws":[],"afterMs":0}]}');
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /events\[0\]\.operation/);
  });

  it('blockmirror sim --controllers 4 runs a fan-out of three pairs and prints every verdict', () => {
    const run = sim('--seed', '7', '--controllers', '4', '--steps', '6', '--blocks', '8');
    assert.equal(run.status, 0, run.stdout + run.stderr);
    assert.match(run.stdout, /4 controllers \(fan-out\)/);
    assert.match(run.stdout, /p2@d: secondary mirroring/);
    for (const name of ['sync-no-acknowledged-loss', 'consistent-is-prefix', 'identical-after-quiescence', 'transient-bound', 'lockstep-done-covers', 'primary-model']) {
      assert.match(run.stdout, new RegExp(`pass  ${name}`));
    }
    assert.equal(sim('--controllers', '9').status, 2);
    assert.equal(sim('--controllers', '2', '--fan-out').status, 2);
  });
});
