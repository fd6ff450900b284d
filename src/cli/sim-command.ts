// `blockmirror sim`: runs seeded pair schedules on the simulated network and clock
// (src/sim/pair-schedule.ts) and prints each run's event timeline and the verdict of every
// invariant, so users can check their own expectations of the system. A seed replays exactly.

import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';

import { type PairScheduleResult, runPairSchedule } from '../sim/pair-schedule';

/** The invariants a schedule checks, and how a violation names each. */
export const SIM_INVARIANTS: readonly { name: string; description: string; matches: (violation: string) => boolean }[] = Object.freeze([
  { name: 'sync-no-acknowledged-loss', description: 'no write a sync pair acknowledged is missing after a takeover',
    matches: (text: string) => text.includes('takeover') },
  { name: 'consistent-is-prefix', description: 'an async secondary that says it is consistent is a write-order prefix of the primary\'s history',
    matches: (text: string) => text.includes('write-order prefix') },
  { name: 'identical-after-quiescence', description: 'after healing and quiescence every pair mirrors and both sides are identical',
    matches: (text: string) => text.includes('quiescence') || text.includes('quiesced') || text.includes('differ') },
  { name: 'transient-bound', description: 'no pair stays copying or resyncing past its bound with its link up',
    matches: (text: string) => text.includes('with its link up and unfaulted') },
  { name: 'lockstep-done-covers', description: 'a lockstep call that answers done has every write issued before it on every receiver',
    matches: (text: string) => text.includes('lockstep was done') },
  { name: 'primary-model', description: 'the primary holds what its host wrote (the model agrees)',
    matches: (text: string) => text.includes('its history ends with') || text.includes('lineage') },
]);

/** The verdict per invariant of one run (a violation no invariant claims counts as 'other'). */
export function verdicts(result: PairScheduleResult): { name: string; pass: boolean; violations: string[] }[] {
  const claimed = new Set<string>();
  const list = SIM_INVARIANTS.map((invariant) => {
    const violations = result.violations.filter((text) => invariant.matches(text));
    for (const text of violations) claimed.add(text);
    return { name: invariant.name, pass: violations.length === 0, violations };
  });
  const other = result.violations.filter((text) => !claimed.has(text));
  if (other.length > 0) list.push({ name: 'other', pass: false, violations: other });
  return list;
}

function integer(name: string, min: number, max: number): (value: string) => number {
  return (value: string) => {
    const parsed = Number(value);
    if (!Number.isSafeInteger(parsed) || parsed < min || parsed > max) throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max}`);
    return parsed;
  };
}

/** Registers `blockmirror sim`. */
export function registerSimCommand(program: Command): void {
  program
    .command('sim')
    .description('Run seeded schedules of writes, link faults, crashes and role changes on the simulated network and clock; print the timeline and the verdict of every invariant.')
    .option('--seed <n>', 'the (first) seed; a seed replays exactly (default: from the clock, printed)', integer('--seed', 0, 2 ** 31 - 1))
    .option('--runs <n>', 'schedules to run, seeds seed..seed+n-1', integer('--runs', 1, 1_000_000), 1)
    .option('--mode <mode>', 'sync or async (default: drawn from each seed)')
    .option('--steps <n>', 'operations before healing', integer('--steps', 1, 10_000), 20)
    .option('--blocks <n>', 'blocks of 4 KiB per volume', integer('--blocks', 8, 65_536), 64)
    .option('--fan-out', 'a third controller: a second secondary of the primary volume (no takeovers then)')
    .option('--quiet', 'no timeline, only the verdicts')
    .option('--json', 'one JSON document per run')
    .addHelpText('after', `
Exit codes: 0 every invariant held in every run, 1 a violation (its seed replays it), 2 usage.

Examples:
  $ blockmirror sim --seed 42
  $ blockmirror sim --runs 1000 --quiet
`)
    .action(async (options: { seed?: number; runs: number; mode?: string; steps: number; blocks: number; fanOut?: boolean; quiet?: boolean; json?: boolean }) => {
      if (options.mode !== undefined && options.mode !== 'sync' && options.mode !== 'async') {
        process.stderr.write('blockmirror: sim: --mode must be sync or async\n');
        process.exitCode = 2;
        return;
      }
      const first = options.seed ?? Date.now() % 2 ** 31;
      if (options.seed === undefined && options.json !== true) process.stdout.write(`seed ${first} (replay: blockmirror sim --seed ${first})\n`);
      let failed = 0;
      const startedAt = Date.now();
      for (let run = 0; run < options.runs; run++) {
        const seed = first + run;
        const result = await runPairSchedule({
          seed, mode: (options.mode as 'sync' | 'async' | undefined) ?? (seed % 2 === 1 ? 'sync' : 'async'),
          steps: options.steps, blockCount: options.blocks, fanOut: options.fanOut === true, namePrefix: `bm-sim-${process.pid}`,
        });
        const list = verdicts(result);
        if (result.violations.length > 0) failed++;
        if (options.json === true) {
          process.stdout.write(`${JSON.stringify({ ...result, verdicts: list })}\n`);
          continue;
        }
        const showTimeline = options.quiet !== true && (options.runs === 1 || result.violations.length > 0);
        if (showTimeline) {
          process.stdout.write(`\nseed ${seed}: ${result.mode}${result.mode === 'sync' ? ` fence ${result.fence}` : ''}${result.fanOut ? ', fan-out' : ''}\n`);
          for (const line of result.trace) process.stdout.write(`  ${line}\n`);
        }
        if (options.runs === 1 || result.violations.length > 0) {
          for (const verdict of list) {
            process.stdout.write(`  ${verdict.pass ? 'pass' : 'FAIL'}  ${verdict.name}\n`);
            for (const text of verdict.violations) process.stdout.write(`        ${text}\n`);
          }
          if (result.violations.length > 0) process.stdout.write(`  replay: blockmirror sim --seed ${seed}${options.mode === undefined ? '' : ` --mode ${options.mode}`} --steps ${options.steps} --blocks ${options.blocks}${options.fanOut === true ? ' --fan-out' : ''}\n`);
        }
      }
      if (options.json !== true) {
        process.stdout.write(`${options.runs - failed} of ${options.runs} schedule(s) kept every invariant (${((Date.now() - startedAt) / 1000).toFixed(1)} s)\n`);
      }
      if (failed > 0) process.exitCode = 1;
    });
}
