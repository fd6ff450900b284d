// `blockmirror bench` as a user runs it: the built CLI as a child process, two controllers
// over real loopback TCP, one short round. The document's shape and what must hold whatever
// the machine (every mode wrote, every pair caught up, the copies match) are checked; the
// figures themselves never are (performance is not asserted in tests).
import * as assert from 'node:assert/strict';

import { CLI_PATH } from '../helpers/serve-process';
import { run } from '../helpers/tools';

function cli(args: string[], timeoutMs = 110_000): ReturnType<typeof run> {
  return run(process.execPath, [CLI_PATH, ...args], { check: false, timeoutMs });
}

interface Spread { median: number; min: number; max: number }

describe('52 cli: bench', function () {
  this.timeout(120_000);

  it('bench --duration 1 --rounds 1 --json: one document; every mode wrote; the pairs caught up', async () => {
    const result = await cli(['bench', '--duration', '1', '--rounds', '1', '--json']);
    assert.equal(result.code, 0, result.stderr);
    // --json: no progress on stderr, one JSON document on stdout.
    assert.doesNotMatch(result.stderr, /bench: (setup|prefill|round)/);
    const report = JSON.parse(result.stdout) as {
      suite: string;
      options: { blockSizeBytes: number; queueDepth: number; durationSeconds: number; rounds: number; modes: string[]; sizeBytes: number; processes: number };
      machine: { cpus: number };
      rounds: { round: number; order: string[]; results: {
        mode: string; writes: number; iops: number; mibPerSecond: number; seconds: number;
        latencyUs: { p50: number; p99: number };
        lagAtEnd: { records: number; bytes: number } | null;
        lagAfterDrain: { records: number; bytes: number } | null;
        cpu: { usPerWrite: number };
      }[] }[];
      modes: { mode: string; writes: number; iops: Spread; mibPerSecond: Spread; p50LatencyUs: Spread; p99LatencyUs: Spread;
        iopsRatioToNone: Spread | null; caughtUp: boolean | null; identical: boolean | null }[];
    };
    assert.equal(report.suite, 'pair-bench');
    assert.deepEqual(report.options, {
      blockSizeBytes: 4096, queueDepth: 32, durationSeconds: 1, rounds: 1, modes: ['none', 'async', 'sync'],
      sizeBytes: 256 * 1024 * 1024, processes: 1, warmupSeconds: 0.5,
    });
    assert.ok(report.machine.cpus >= 1);
    assert.equal(report.rounds.length, 1);
    const round = report.rounds[0];
    assert.ok(round !== undefined);
    assert.deepEqual([...round.order].sort(), ['async', 'none', 'sync']);
    assert.equal(round.results.length, 3);
    for (const entry of round.results) {
      assert.ok(entry.writes > 0, `${entry.mode} wrote ${entry.writes}`);
      assert.ok(entry.iops > 0 && entry.mibPerSecond > 0 && entry.seconds >= 1, JSON.stringify(entry));
      assert.ok(entry.latencyUs.p50 > 0 && entry.latencyUs.p99 >= entry.latencyUs.p50, JSON.stringify(entry.latencyUs));
      assert.ok(entry.cpu.usPerWrite > 0);
      if (entry.mode === 'none') {
        assert.equal(entry.lagAtEnd, null);
        assert.equal(entry.lagAfterDrain, null);
      } else {
        assert.ok(entry.lagAtEnd !== null && entry.lagAtEnd.records >= 0 && entry.lagAtEnd.bytes >= 0);
        assert.equal(entry.lagAfterDrain?.records, 0, `${entry.mode}: the secondary did not catch up`);
      }
    }
    assert.deepEqual(report.modes.map((mode) => mode.mode), ['none', 'async', 'sync']);
    for (const mode of report.modes) {
      assert.ok(mode.writes > 0);
      for (const spread of [mode.iops, mode.mibPerSecond, mode.p50LatencyUs, mode.p99LatencyUs]) {
        assert.ok(spread.min <= spread.median && spread.median <= spread.max, JSON.stringify(spread));
      }
      assert.ok(mode.iopsRatioToNone !== null && mode.iopsRatioToNone.median > 0);
      if (mode.mode === 'none') {
        assert.equal(mode.iopsRatioToNone.median, 1);
        assert.equal(mode.caughtUp, null);
      } else {
        assert.equal(mode.caughtUp, true, `${mode.mode} did not catch up`);
        assert.equal(mode.identical, true, `${mode.mode}: the secondary's copy differs from the primary`);
      }
    }
  });

  it('bad options are usage errors (exit 2) that name the option, before anything runs', async () => {
    const cases: [string[], RegExp][] = [
      [['bench', '--queue-depth', '0'], /--queue-depth.*must be an integer from 1/],
      [['bench', '--modes', 'none,bogus'], /--modes.*unknown mode "bogus"/],
      [['bench', '--duration', '-1'], /--duration.*greater than 0/],
      [['bench', '--processes', '3'], /--processes.*must be 1 or 2/],
      [['bench', '--block-size', '1MB'], /--block-size/],
      [['bench', '--size', '1000'], /--size must be a positive multiple of 4096/],
      [['bench', '--size', '64KiB', '--block-size', '1MiB'], /--size 65536 is smaller than --block-size 1048576/],
    ];
    for (const [args, message] of cases) {
      const result = await cli(args, 20_000);
      assert.equal(result.code, 2, `${args.join(' ')}: exit ${result.code}\n${result.stderr}`);
      assert.match(result.stderr, message, args.join(' '));
      assert.equal(result.stdout, '', args.join(' '));
    }
  });
});
