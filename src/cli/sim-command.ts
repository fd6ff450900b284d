// `blockmirror sim`: runs seeded pair schedules on the simulated network and clock
// (src/sim/pair-schedule.ts) and prints each run's event timeline and the verdict of every
// invariant, so users can check their own expectations of the system. A seed replays exactly;
// so does a written-down event list (`--replay FILE`, src/sim/schedule-spec.ts), which is what
// `--shrink` prints and writes for a failing seed (src/sim/shrink.ts) and what the permanent
// regression cases in test/scenario/regressions/ are.

import { readFileSync, writeFileSync } from 'node:fs';

import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';

import type { PairMutation } from '../replication/pairs';
import { CONTROLLER_IDS, type PairScheduleOptions, type PairScheduleResult, runPairSchedule } from '../sim/pair-schedule';
import { type ScheduleSpec, formatScheduleSpec, optionsOfSpec, parseScheduleSpec, specOf } from '../sim/schedule-spec';
import { describeEvents, shrinkSchedule } from '../sim/shrink';
import { MAX_TOPOLOGY_CONTROLLERS, TOPOLOGIES, TOPOLOGY_INVARIANTS, type Topology, type TopologyRunResult, runTopology } from '../sim/topology-run';
import {
  type TopologySetup, type TopologySpec, formatTopologySpec, isTopologySpec, optionsOfTopologySpec, parseTopologySpec, shrinkTopology, topologySpecOf,
} from '../sim/topology-spec';
import { verdicts } from '../sim/verdicts';

export { SIM_INVARIANTS, verdicts } from '../sim/verdicts';

const MUTATIONS: readonly PairMutation[] = ['apply-out-of-order', 'drop-write', 'skip-track'];

function integer(name: string, min: number, max: number): (value: string) => number {
  return (value: string) => {
    const parsed = Number(value);
    if (!Number.isSafeInteger(parsed) || parsed < min || parsed > max) throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max}`);
    return parsed;
  };
}

interface SimCommandOptions {
  seed?: number; runs: number; mode?: string; steps: number; blocks: number; fanOut?: boolean; controllers?: number;
  replay?: string; shrink?: boolean; out?: string; maxReplays: number; mutation?: string; quiet?: boolean; json?: boolean;
  topology?: string; degree?: number;
}

function usage(message: string): void {
  process.stderr.write(`blockmirror: sim: ${message}\n`);
  process.exitCode = 2;
}

/** Reads `--replay`: a file, or the spec itself when it starts with '{' (parsed JSON, not yet checked). */
function readSpecJson(source: string): unknown {
  const text = source.trimStart().startsWith('{') ? source : readFileSync(source, 'utf8');
  return JSON.parse(text);
}

function header(result: PairScheduleResult, what: string): string {
  const shape = result.controllers === 2 ? '' : `, ${result.controllers} controllers (fan-out)`;
  return `\n${what}: ${result.mode}${result.mode === 'sync' ? ` fence ${result.fence}` : ''}${shape}\n`;
}

function printVerdicts(result: { readonly violations: readonly string[] }, only?: readonly string[]): void {
  for (const verdict of verdicts(result)) {
    if (only !== undefined && verdict.name !== 'other' && !only.includes(verdict.name)) continue;
    process.stdout.write(`  ${verdict.pass ? 'pass' : 'FAIL'}  ${verdict.name}\n`);
    for (const text of verdict.violations) process.stdout.write(`        ${text}\n`);
  }
}

async function shrinkAndWrite(spec: ScheduleSpec, options: SimCommandOptions): Promise<void> {
  process.stdout.write(`  shrinking ${spec.events.length} events (at most ${options.maxReplays} replays) ...\n`);
  const shrunk = await shrinkSchedule(spec, { maxRuns: options.maxReplays });
  const file = options.out ?? `blockmirror-sim-${spec.seed}.json`;
  writeFileSync(file, formatScheduleSpec(shrunk.minimal));
  process.stdout.write(`  shrunk to ${shrunk.minimal.events.length} of ${spec.events.length} events, still failing ${shrunk.invariant} ` +
    `(${shrunk.runs} replays${shrunk.oneMinimal ? ', 1-minimal' : ', budget spent: not proven 1-minimal'}):\n`);
  for (const line of describeEvents(shrunk.minimal)) process.stdout.write(`    ${line}\n`);
  for (const text of shrunk.result.violations.slice(0, 3)) process.stdout.write(`    -> ${text}\n`);
  process.stdout.write(`  written to ${file}\n  replay: blockmirror sim --replay ${file}\n`);
}

/** One line per event of a topology spec: its operation and what it did. */
function describeTopologyEvents(spec: TopologySpec): string[] {
  return spec.events.map((event, index) => `${String(index + 1).padStart(3)}. ${event.operation}` +
    `${(event.trace ?? []).length === 0 ? '' : `: ${(event.trace ?? []).join('; ')}`} (then ${event.afterMs} ms)`);
}

async function shrinkTopologyAndWrite(spec: TopologySpec, options: SimCommandOptions): Promise<void> {
  const maxRuns = Math.min(options.maxReplays, 200);
  process.stdout.write(`  shrinking ${spec.events.length} events (at most ${maxRuns} replays) ...
`);
  const shrunk = await shrinkTopology(spec, { maxRuns, namePrefix: `bm-sim-${process.pid}` });
  const file = options.out ?? `blockmirror-sim-${spec.topology}-${spec.seed}.json`;
  writeFileSync(file, formatTopologySpec(shrunk.minimal));
  process.stdout.write(`  shrunk to ${shrunk.minimal.events.length} of ${spec.events.length} events, still failing ${shrunk.invariant} ` +
    `(${shrunk.runs} replays${shrunk.oneMinimal ? ', 1-minimal' : ', budget spent: not proven 1-minimal'}):\n`);
  for (const line of describeTopologyEvents(shrunk.minimal)) process.stdout.write(`    ${line}\n`);
  for (const text of shrunk.result.violations.slice(0, 3)) process.stdout.write(`    -> ${text}\n`);
  process.stdout.write(`  written to ${file}\n  replay: blockmirror sim --replay ${file}\n`);
}

function printTopologyRun(result: TopologyRunResult, what: string, options: SimCommandOptions): void {
  process.stdout.write(`\n${what}: ${result.topology}, ${result.controllers} controllers, ${result.pairs} ${result.mode} pairs, ` +
    `${result.counters.virtualMs} virtual ms in ${(result.wallMs / 1000).toFixed(1)} s\n`);
  if (options.quiet !== true) for (const line of result.trace) process.stdout.write(`  ${line}\n`);
  printVerdicts(result, TOPOLOGY_INVARIANTS);
}

/** `--replay` of a topology spec. */
async function replayTopology(spec: TopologySpec, options: SimCommandOptions, mutation: PairMutation | undefined): Promise<void> {
  if (options.mutation === 'none') delete spec.mutation;
  else if (mutation !== undefined) spec = { ...spec, mutation };
  let result: TopologyRunResult;
  try {
    result = await runTopology(optionsOfTopologySpec(spec, `bm-sim-${process.pid}`));
  } catch (error) {
    return usage(`--replay: ${(error as Error).message}`);
  }
  if (options.json === true) process.stdout.write(`${JSON.stringify({ ...result, verdicts: verdicts(result) })}\n`);
  else {
    printTopologyRun(result, `replay of ${spec.events.length} events (seed ${spec.seed}${spec.mutation === undefined ? '' : `, mutation ${spec.mutation}`})`, options);
    if (spec.found !== undefined) process.stdout.write(`  found: ${spec.found}\n`);
    if (result.violations.length > 0 && options.shrink === true) await shrinkTopologyAndWrite(spec, options);
  }
  if (result.violations.length > 0) process.exitCode = 1;
}

/** `--topology`: runs seeds first..first+runs-1 of a topology run (src/sim/topology-run.ts). */
async function runTopologies(options: SimCommandOptions, mutation: PairMutation | undefined): Promise<void> {
  const first = options.seed ?? Date.now() % 2 ** 31;
  if (options.seed === undefined && options.json !== true) process.stdout.write(`seed ${first} (replay: blockmirror sim --seed ${first} --topology ${String(options.topology)})\n`);
  const topology = options.topology as Topology;
  const controllers = options.controllers ?? 2;
  let failed = 0;
  const startedAt = Date.now();
  for (let run = 0; run < options.runs; run++) {
    const seed = first + run;
    let result;
    const setup: TopologySetup = {
      seed, topology, controllers, mode: (options.mode as 'sync' | 'async' | undefined) ?? (seed % 2 === 1 ? 'sync' : 'async'), blockCount: options.blocks,
      ...(options.degree === undefined ? {} : { degree: options.degree }), ...(mutation === undefined ? {} : { mutation }),
    };
    try {
      result = await runTopology({ ...setup, steps: options.steps, namePrefix: `bm-sim-${process.pid}` });
    } catch (error) {
      return usage((error as Error).message);
    }
    const list = verdicts(result).filter((verdict) => verdict.name === 'other' || TOPOLOGY_INVARIANTS.includes(verdict.name));
    if (result.violations.length > 0) failed++;
    if (options.json === true) {
      process.stdout.write(`${JSON.stringify({ ...result, verdicts: list })}\n`);
      continue;
    }
    if (options.runs === 1 || result.violations.length > 0) {
      printTopologyRun(result, `seed ${seed}`, options);
      if (result.violations.length > 0) {
        process.stdout.write(`  replay: blockmirror sim --seed ${seed} --topology ${topology} --controllers ${controllers}${options.mode === undefined ? '' : ` --mode ${options.mode}`}` +
          ` --steps ${options.steps} --blocks ${options.blocks}${options.degree === undefined ? '' : ` --degree ${options.degree}`}${mutation === undefined ? '' : ` --mutation ${mutation}`}\n`);
        if (options.shrink === true) await shrinkTopologyAndWrite(topologySpecOf(setup, result), options);
      }
    }
  }
  if (options.json !== true) process.stdout.write(`${options.runs - failed} of ${options.runs} run(s) kept every invariant (${((Date.now() - startedAt) / 1000).toFixed(1)} s)\n`);
  if (failed > 0) process.exitCode = 1;
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
    .option('--controllers <k>', `controllers a, b, c, ...: a is the primary of one pair to each other one (2: a pair with takeovers; 3 to ${CONTROLLER_IDS.length}: a fan-out); ` +
      `with --topology, c0 .. c<k-1>, up to ${MAX_TOPOLOGY_CONTROLLERS} (default: 2)`,
      integer('--controllers', 2, MAX_TOPOLOGY_CONTROLLERS))
    .option('--topology <name>', `many controllers in one process, pairs laid out as a ${TOPOLOGIES.join(', ')} (no role changes; see docs/sim.md)`)
    .option('--degree <n>', 'with --topology mesh: successors each controller mirrors to (default 2); fan-out: secondaries per hub (default 7)', integer('--degree', 1, 7))
    .option('--fan-out', 'the same as --controllers 3')
    .option('--replay <file>', 'replay a written-down event list (a file, or the JSON itself) instead of a seed; a topology run\'s list names its topology')
    .option('--shrink', 'shrink a failing run to a minimal event list, print it and write it (see --out; a topology run spends at most 200 replays)')
    .option('--out <file>', 'where --shrink writes the minimal list (default: blockmirror-sim-<seed>.json)')
    .option('--max-replays <n>', 'replays a shrink may spend', integer('--max-replays', 1, 100_000), 1000)
    .option('--mutation <name>', `a deliberate bug in the pair logic, to check the checkers (${MUTATIONS.join(', ')}; none: replay a list without its own)`)
    .option('--quiet', 'no timeline, only the verdicts')
    .option('--json', 'one JSON document per run')
    .addHelpText('after', `
Exit codes: 0 every invariant held in every run, 1 a violation (its seed or list replays it), 2 usage.

Examples:
  $ blockmirror sim --seed 42
  $ blockmirror sim --seed 7 --controllers 4
  $ blockmirror sim --seed 3 --topology ring --controllers 256 --quiet
  $ blockmirror sim --seed 1 --topology ring --controllers 12 --steps 40 --mutation drop-write --shrink --out ring.json
  $ blockmirror sim --runs 1000 --quiet
  $ blockmirror sim --seed 5000 --mode async --mutation skip-track --shrink --out case.json
  $ blockmirror sim --replay case.json
`)
    .action(async (options: SimCommandOptions) => {
      if (options.mode !== undefined && options.mode !== 'sync' && options.mode !== 'async') return usage('--mode must be sync or async');
      if (options.mutation !== undefined && options.mutation !== 'none' && !MUTATIONS.includes(options.mutation as PairMutation)) return usage(`--mutation must be none or one of ${MUTATIONS.join(', ')}`);
      if (options.fanOut === true && options.controllers !== undefined && options.controllers < 3) return usage('--fan-out means 3 controllers or more');
      const mutation = options.mutation === 'none' ? undefined : options.mutation as PairMutation | undefined;
      if (options.topology !== undefined || options.degree !== undefined) {
        if (options.topology === undefined || !TOPOLOGIES.includes(options.topology as Topology)) return usage(`--topology must be one of ${TOPOLOGIES.join(', ')}`);
        if (options.replay !== undefined || options.fanOut === true) return usage('--topology does not take --replay (the file names its topology) or --fan-out');
        return runTopologies(options, mutation);
      }
      if ((options.controllers ?? 2) > CONTROLLER_IDS.length) return usage(`--controllers above ${CONTROLLER_IDS.length} needs --topology (${TOPOLOGIES.join(', ')})`);
      if (options.replay !== undefined) {
        let spec: ScheduleSpec;
        try {
          const parsed = readSpecJson(options.replay);
          if (isTopologySpec(parsed)) return replayTopology(parseTopologySpec(parsed), options, mutation);
          spec = parseScheduleSpec(parsed);
        } catch (error) {
          return usage(`--replay: ${(error as Error).message}`);
        }
        if (options.mutation === 'none') delete spec.mutation;
        else if (mutation !== undefined) spec = { ...spec, mutation };
        const result = await runPairSchedule({ ...optionsOfSpec(spec), namePrefix: `bm-sim-${process.pid}` });
        if (options.json === true) process.stdout.write(`${JSON.stringify({ ...result, verdicts: verdicts(result) })}\n`);
        else {
          if (options.quiet !== true) {
            process.stdout.write(header(result, `replay of ${spec.events.length} events (seed ${spec.seed}${spec.mutation === undefined ? '' : `, mutation ${spec.mutation}`})`));
            if (spec.found !== undefined) process.stdout.write(`  found: ${spec.found}\n`);
            for (const line of result.trace) process.stdout.write(`  ${line}\n`);
          }
          printVerdicts(result);
          if (result.violations.length > 0 && options.shrink === true) await shrinkAndWrite(spec, options);
        }
        if (result.violations.length > 0) process.exitCode = 1;
        return;
      }
      const first = options.seed ?? Date.now() % 2 ** 31;
      if (options.seed === undefined && options.json !== true) process.stdout.write(`seed ${first} (replay: blockmirror sim --seed ${first})\n`);
      const controllers = options.controllers ?? (options.fanOut === true ? 3 : 2);
      let failed = 0;
      const startedAt = Date.now();
      for (let run = 0; run < options.runs; run++) {
        const seed = first + run;
        const scheduleOptions: PairScheduleOptions = {
          seed, mode: (options.mode as 'sync' | 'async' | undefined) ?? (seed % 2 === 1 ? 'sync' : 'async'),
          steps: options.steps, blockCount: options.blocks, controllers, namePrefix: `bm-sim-${process.pid}`,
          ...(mutation === undefined ? {} : { mutation }),
        };
        const result = await runPairSchedule(scheduleOptions);
        const list = verdicts(result);
        if (result.violations.length > 0) failed++;
        if (options.json === true) {
          process.stdout.write(`${JSON.stringify({ ...result, verdicts: list })}\n`);
          continue;
        }
        const showTimeline = options.quiet !== true && (options.runs === 1 || result.violations.length > 0);
        if (showTimeline) {
          process.stdout.write(header(result, `seed ${seed}`));
          for (const line of result.trace) process.stdout.write(`  ${line}\n`);
        }
        if (options.runs === 1 || result.violations.length > 0) {
          printVerdicts(result);
          if (result.violations.length > 0) {
            process.stdout.write(`  replay: blockmirror sim --seed ${seed}${options.mode === undefined ? '' : ` --mode ${options.mode}`} --steps ${options.steps} --blocks ${options.blocks}` +
              `${controllers === 2 ? '' : ` --controllers ${controllers}`}${mutation === undefined ? '' : ` --mutation ${mutation}`}\n`);
            if (options.shrink === true) await shrinkAndWrite(specOf(result, mutation === undefined ? {} : { mutation }), options);
          }
        }
      }
      if (options.json !== true) {
        process.stdout.write(`${options.runs - failed} of ${options.runs} schedule(s) kept every invariant (${((Date.now() - startedAt) / 1000).toFixed(1)} s)\n`);
      }
      if (failed > 0) process.exitCode = 1;
    });
}
