// Hundreds of controllers in one process (issue 8): topology runs (src/sim/topology-run.ts) of a
// ring, a fan-out and a mesh on the simulated network and clock, with seeded writes, link
// faults, crashes and restarts, every pair checked as the pair schedules check theirs: each
// consistent secondary a write-order prefix of its primary after every step, and after healing
// every pair mirroring with both sides identical. The runs are bounded (20 steps, quiescence
// within 30 virtual s); the checks must fail on a broken pair logic (mutations), and
// `blockmirror sim --topology` prints the verdicts.
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

import { TOPOLOGIES, layOut, runTopology } from '../../src/sim/topology-run';
import { failedInvariants } from '../../src/sim/verdicts';

const MAIN = path.resolve(__dirname, '../../src/cli/main.js');
const PREFIX = `bm-t91-${process.pid}`;

describe('91 topology runs: hundreds of controllers in one process (simulation)', function () {
  this.timeout(300_000);

  it('lays out each topology: a ring of K pairs, hubs of at most 7 secondaries, a mesh of K x degree pairs', async () => {
    const ring = layOut('ring', 5);
    assert.deepEqual(ring.map((pair) => `${pair.primary}->${pair.secondary}`), ['c0->c1', 'c1->c2', 'c2->c3', 'c3->c4', 'c4->c0']);
    const fanOut = layOut('fan-out', 20);
    const perHub = new Map<string, number>();
    for (const pair of fanOut) perHub.set(pair.primary, (perHub.get(pair.primary) ?? 0) + 1);
    assert.deepEqual([...perHub], [['c0', 7], ['c8', 7], ['c16', 3]]);
    assert.equal(new Set(fanOut.map((pair) => pair.secondary)).size, fanOut.length, 'every secondary volume in one pair');
    const mesh = layOut('mesh', 6, 3);
    assert.equal(mesh.length, 18);
    assert.deepEqual(mesh.filter((pair) => pair.primary === 'c5').map((pair) => `${pair.secondary}/${pair.secondaryVolume}`), ['c0/in1', 'c1/in2', 'c2/in3']);
    await assert.rejects(runTopology({ seed: 1, topology: 'mesh', controllers: 3, degree: 3 }), RangeError);
    await assert.rejects(runTopology({ seed: 1, topology: 'star' as never, controllers: 3 }), RangeError);
    await assert.rejects(runTopology({ seed: 1, topology: 'ring', controllers: 2000 }), RangeError);
  });

  it('a ring of 256 controllers (256 pairs) keeps every invariant through faults, crashes and restarts', async () => {
    const result = await runTopology({ seed: 2026, topology: 'ring', controllers: 256, steps: 20, namePrefix: PREFIX });
    assert.deepEqual(result.violations, []);
    assert.equal(result.controllers, 256);
    assert.equal(result.pairs, 256);
    assert.equal(result.counters.identicalChecks, 256);
    assert.ok(result.counters.prefixChecks >= 256 * 20, `${result.counters.prefixChecks} prefix checks`);
    assert.ok(result.counters.writes > 0 && result.counters.faults + result.counters.crashes > 0, JSON.stringify(result.counters));
    process.stdout.write(`      ring of 256: ${result.counters.writes} writes, ${result.counters.faults} faults, ${result.counters.crashes} crashes, ` +
      `${result.counters.virtualMs} virtual ms in ${(result.wallMs / 1000).toFixed(1)} s, RSS ${Math.round(process.memoryUsage().rss / 2 ** 20)} MiB\n`);
  });

  it('a fan-out of 300 controllers (hubs of 7) and a mesh of 128 (256 pairs) keep every invariant', async () => {
    const fanOut = await runTopology({ seed: 7, topology: 'fan-out', controllers: 300, steps: 20, mode: 'sync', namePrefix: PREFIX });
    assert.deepEqual(fanOut.violations, []);
    assert.equal(fanOut.pairs, layOut('fan-out', 300).length);
    const mesh = await runTopology({ seed: 8, topology: 'mesh', controllers: 128, steps: 20, namePrefix: PREFIX });
    assert.deepEqual(mesh.violations, []);
    assert.equal(mesh.pairs, 256);
    assert.equal(mesh.counters.identicalChecks, 256);
  });

  it('many small runs of every topology, sync and async, 40 steps each, keep every invariant', async () => {
    let runs = 0;
    for (const topology of TOPOLOGIES) {
      for (let seed = 500; seed < 512; seed++) {
        const result = await runTopology({ seed, topology, controllers: 3 + (seed % 6), steps: 40, mode: seed % 2 === 0 ? 'async' : 'sync', namePrefix: PREFIX });
        assert.deepEqual(result.violations, [], `${topology} seed ${seed}: ${result.trace.slice(-20).join('\n')}`);
        runs++;
      }
    }
    assert.equal(runs, 36);
  });

  for (const mutation of ['drop-write', 'apply-out-of-order'] as const) {
    it(`the checks catch a broken pair logic (${mutation}) in a ring of 12 within 20 seeds`, async () => {
      for (let seed = 1; seed <= 20; seed++) {
        const result = await runTopology({ seed, topology: 'ring', controllers: 12, steps: 40, mutation, namePrefix: PREFIX });
        if (result.violations.length === 0) continue;
        assert.ok(failedInvariants(result).includes('consistent-is-prefix') || failedInvariants(result).includes('identical-after-quiescence'), failedInvariants(result).join(', '));
        process.stdout.write(`      ${mutation} caught at seed ${seed}: ${(result.violations[0] as string).slice(0, 120)}\n`);
        return;
      }
      assert.fail(`${mutation} was not caught within 20 seeds`);
    });
  }

  it('blockmirror sim --topology ring --controllers 256 prints the verdicts it checks; bad options are usage errors', () => {
    const run = spawnSync(process.execPath, [MAIN, 'sim', '--seed', '3', '--topology', 'ring', '--controllers', '256', '--steps', '10', '--blocks', '8', '--quiet'],
      { encoding: 'utf8', timeout: 120_000 });
    assert.equal(run.status, 0, run.stdout + run.stderr);
    assert.match(run.stdout, /ring, 256 controllers, 256 sync pairs/);
    for (const name of ['consistent-is-prefix', 'identical-after-quiescence', 'primary-model']) assert.match(run.stdout, new RegExp(`pass  ${name}`));
    assert.doesNotMatch(run.stdout, /lockstep-done-covers/, 'a topology run makes no lockstep calls: no verdict for it');
    const usage = (...args: string[]): number | null => spawnSync(process.execPath, [MAIN, 'sim', ...args], { encoding: 'utf8', timeout: 60_000 }).status;
    assert.equal(usage('--topology', 'star'), 2);
    assert.equal(usage('--controllers', '20'), 2);
    assert.equal(usage('--topology', 'mesh', '--controllers', '3', '--degree', '3'), 2);
  });
});
