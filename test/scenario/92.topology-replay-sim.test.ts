// Scenario: a topology run written down (src/sim/topology-spec.ts). A seeded run's recorded
// event list replays that very run; a failing run (a deliberate bug in the pair logic) shrinks
// to a 1-minimal list that still fails the same invariant and passes without the bug; the
// permanent cases in test/scenario/regressions/topology/ replay on every CI run (each must keep
// every invariant on the real pair logic, and still fail with its mutation); and
// `blockmirror sim --topology ... --shrink` writes a list that `--replay` reads back.
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

import { runTopology } from '../../src/sim/topology-run';
import { optionsOfTopologySpec, parseTopologySpec, shrinkTopology, topologySpecOf } from '../../src/sim/topology-spec';
import { failedInvariants } from '../../src/sim/verdicts';

const MAIN = path.resolve(__dirname, '../../src/cli/main.js');
// From dist/test/scenario back to the sources' directory (the JSON files are not compiled).
const DIRECTORY = path.resolve(__dirname, '../../../test/scenario/regressions/topology');
const FILES = readdirSync(DIRECTORY).filter((name) => name.endsWith('.json')).sort();
const PREFIX = `bm-t92-${process.pid}`;

function sim(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const run = spawnSync(process.execPath, [MAIN, 'sim', ...args], { encoding: 'utf8', timeout: 120_000 });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

describe('92 topology runs written down: replay, shrinking, regression cases (simulation)', function () {
  this.timeout(300_000);

  it('the recorded event list of a seeded run replays it line for line (faults, crashes and restarts included)', async () => {
    for (const [topology, seed] of [['ring', 501], ['mesh', 502], ['fan-out', 503]] as const) {
      const setup = { seed, topology, controllers: 8, mode: seed % 2 === 0 ? 'async' as const : 'sync' as const, blockCount: 16 };
      const first = await runTopology({ ...setup, steps: 40, namePrefix: PREFIX });
      assert.deepEqual(first.violations, [], first.trace.slice(-20).join('\n'));
      assert.equal(first.events.length, 40);
      assert.ok(first.counters.crashes + first.counters.faults > 0, 'the run had faults to replay');
      const spec = parseTopologySpec(JSON.parse(JSON.stringify(topologySpecOf(setup, first))));
      const again = await runTopology(optionsOfTopologySpec(spec, PREFIX));
      assert.deepEqual(again.trace, first.trace, `${topology}: the replay took another course`);
      assert.deepEqual(again.counters, first.counters);
      assert.deepEqual(again.events.map((event) => event.draws), first.events.map((event) => event.draws));
    }
  });

  it('a run failing under a broken pair logic shrinks to a 1-minimal list that fails the same invariant, and passes without the bug', async () => {
    const setup = { seed: 3, topology: 'ring' as const, controllers: 10, mode: 'async' as const, blockCount: 8, mutation: 'drop-write' as const };
    const failing = await runTopology({ ...setup, steps: 40, namePrefix: PREFIX });
    assert.ok(failing.violations.length > 0, 'the mutation was not caught');
    const spec = topologySpecOf(setup, failing);
    const progress: string[] = [];
    const shrunk = await shrinkTopology(spec, { maxRuns: 200, namePrefix: PREFIX, onProgress: (line) => progress.push(line) });
    assert.ok(shrunk.minimal.events.length < spec.events.length, `${shrunk.minimal.events.length} of ${spec.events.length} events`);
    assert.equal(shrunk.oneMinimal, true);
    assert.ok(progress.length > 0);
    const replayed = await runTopology(optionsOfTopologySpec(shrunk.minimal, PREFIX));
    assert.ok(failedInvariants(replayed).includes(shrunk.invariant), `the minimal list no longer fails ${shrunk.invariant}`);
    // 1-minimal: removing any single event makes that failure go away.
    for (let index = 0; index < shrunk.minimal.events.length; index++) {
      const fewer = { ...shrunk.minimal, events: shrunk.minimal.events.filter((_, other) => other !== index) };
      assert.ok(!failedInvariants(await runTopology(optionsOfTopologySpec(fewer, PREFIX))).includes(shrunk.invariant), `event ${index + 1} is not needed`);
    }
    const { mutation: _mutation, ...clean } = shrunk.minimal;
    assert.deepEqual((await runTopology(optionsOfTopologySpec(clean, PREFIX))).violations, []);
    await assert.rejects(shrinkTopology({ ...clean }, { namePrefix: PREFIX }), RangeError, 'a passing list has nothing to shrink');
  });

  it('there are topology cases to replay', () => {
    assert.ok(FILES.length >= 3, `${DIRECTORY} holds ${FILES.length} cases`);
  });

  for (const file of FILES) {
    const spec = parseTopologySpec(JSON.parse(readFileSync(path.join(DIRECTORY, file), 'utf8')));
    it(`${file} (${spec.events.length} events, ${spec.topology} of ${spec.controllers}) keeps every invariant, and fails ${spec.invariant ?? 'an invariant'} with ${spec.mutation ?? 'no mutation'}`, async () => {
      const { mutation, ...clean } = spec;
      const result = await runTopology(optionsOfTopologySpec(clean, PREFIX));
      assert.deepEqual(result.violations, [], `${result.trace.slice(-30).join('\n')}\nreplay: blockmirror sim --replay test/scenario/regressions/topology/${file} --mutation none`);
      assert.equal(result.events.length, spec.events.length, 'every event ran');
      if (mutation !== undefined) {
        const broken = await runTopology(optionsOfTopologySpec(spec, PREFIX));
        const failed = failedInvariants(broken);
        assert.ok(spec.invariant === undefined ? failed.length > 0 : failed.includes(spec.invariant), `failed ${JSON.stringify(failed)}`);
      }
    });
  }

  it('blockmirror sim --topology --shrink writes a list that --replay reads back; a bad list is a usage error (exit 2)', () => {
    const directory = mkdtempSync(path.join(tmpdir(), 'bm-t92-'));
    try {
      const out = path.join(directory, 'case.json');
      const shrink = sim('--seed', '2', '--topology', 'ring', '--controllers', '8', '--steps', '30', '--blocks', '8', '--mutation', 'apply-out-of-order', '--quiet', '--shrink', '--out', out);
      assert.equal(shrink.status, 1, shrink.stdout + shrink.stderr);
      assert.match(shrink.stdout, /shrunk to \d+ of 30 events, still failing consistent-is-prefix/);
      assert.match(shrink.stdout, new RegExp(`replay: blockmirror sim --replay ${out.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}`));
      const spec = parseTopologySpec(JSON.parse(readFileSync(out, 'utf8')));
      assert.equal(spec.mutation, 'apply-out-of-order');
      const broken = sim('--replay', out, '--quiet');
      assert.equal(broken.status, 1, broken.stdout + broken.stderr);
      assert.match(broken.stdout, /FAIL {2}consistent-is-prefix/);
      const clean = sim('--replay', out, '--quiet', '--mutation', 'none');
      assert.equal(clean.status, 0, clean.stdout + clean.stderr);
      assert.match(clean.stdout, /pass {2}identical-after-quiescence/);
      const bad = sim('--replay', '{"format":"blockmirror-topology-run/1","seed":1,"topology":"ring","controllers":4,"mode":"async","blockCount":8,"events":[{"operation":"explode","draws":[],"afterMs":0}]}');
      assert.equal(bad.status, 2);
      assert.match(bad.stderr, /events\[0\]\.operation/);
      assert.equal(sim('--replay', out, '--topology', 'ring').status, 2, '--topology with --replay');
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });
});
