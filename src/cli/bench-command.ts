// `blockmirror bench`: the replication microbenchmark (src/bench/pair-bench.ts) from the command
// line. This file parses and checks the options (each bad one is a usage error, exit 2, before
// anything is opened), shows progress on stderr, and prints the report as a table or, with
// --json, as one JSON document on stdout. The native addon is loaded only when the bench runs,
// so `bench --help` and usage errors work without it.

import * as cliProgress from 'cli-progress';
import { Command, InvalidArgumentError, Option } from 'commander';
import pino from 'pino';

import type { PairBenchMode, PairBenchModeSummary, PairBenchProgress, PairBenchReport, Spread } from '../bench/pair-bench';
import { formatSize, parseSize } from './config';
import { formatBytes } from './status';

const EXIT_USAGE = 2;
const MODES: readonly PairBenchMode[] = ['none', 'async', 'sync'];
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
/** The same limits as PAIR_BENCH_LIMITS (kept here so parsing needs no native addon). */
const MIN_BLOCK_SIZE_BYTES = 512;
const MAX_BLOCK_SIZE_BYTES = 16 * 1024 * 1024;
const MAX_QUEUE_DEPTH = 4096;
const MAX_DURATION_SECONDS = 3600;
const MAX_ROUNDS = 100;
const VOLUME_BLOCK_SIZE_BYTES = 4096;
const MAX_SIZE_BYTES = 64 * 1024 * 1024 * 1024;

interface BenchCommandOptions {
  blockSize: number;
  queueDepth: number;
  duration: number;
  rounds: number;
  modes: PairBenchMode[];
  size: number;
  processes: 1 | 2;
  json?: boolean;
  logLevel: string;
}

function sizeArgument(value: string): number {
  try {
    return parseSize(/^\d+$/.test(value) ? Number(value) : value);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}

function integerArgument(min: number, max: number): (value: string) => number {
  return (value) => {
    const number = Number(value);
    if (!/^\d+$/.test(value) || number < min || number > max) throw new InvalidArgumentError(`must be an integer from ${min} to ${max}`);
    return number;
  };
}

function secondsArgument(value: string): number {
  const seconds = Number(value);
  if (value.trim() === '' || !Number.isFinite(seconds) || seconds <= 0 || seconds > MAX_DURATION_SECONDS) {
    throw new InvalidArgumentError(`must be a number of seconds greater than 0 (at most ${MAX_DURATION_SECONDS})`);
  }
  return seconds;
}

function modesArgument(value: string): PairBenchMode[] {
  const modes = value.split(',').map((mode) => mode.trim());
  for (const mode of modes) {
    if (!MODES.includes(mode as PairBenchMode)) throw new InvalidArgumentError(`unknown mode "${mode}": the modes are ${MODES.join(', ')}`);
  }
  if (new Set(modes).size !== modes.length) throw new InvalidArgumentError('names a mode twice');
  return modes as PairBenchMode[];
}

/** Options that are each valid but not together; the message, or undefined when fine. */
function combinationProblem(options: BenchCommandOptions): string | undefined {
  const { blockSize, size } = options;
  if (blockSize < MIN_BLOCK_SIZE_BYTES || blockSize > MAX_BLOCK_SIZE_BYTES) {
    return `--block-size must be from ${MIN_BLOCK_SIZE_BYTES} to ${formatSize(MAX_BLOCK_SIZE_BYTES)}, got ${blockSize}`;
  }
  if (size === 0 || size % VOLUME_BLOCK_SIZE_BYTES !== 0 || size > MAX_SIZE_BYTES) {
    return `--size must be a positive multiple of ${VOLUME_BLOCK_SIZE_BYTES} up to ${formatSize(MAX_SIZE_BYTES)}, got ${size}`;
  }
  if (size < blockSize) return `--size ${size} is smaller than --block-size ${blockSize}`;
  return undefined;
}

/** Registers `bench` on the program. */
export function registerBenchCommand(program: Command): void {
  program
    .command('bench')
    .description('Replication microbenchmark: write through an unreplicated volume and through async and sync pairs ' +
      '(two controllers over loopback TCP) in interleaved rounds; report IOPS, MiB/s, p50/p99 latency, lag and the ratio to "none".')
    .option('-b, --block-size <bytes>', `bytes per write, ${MIN_BLOCK_SIZE_BYTES} to 16MiB`, sizeArgument, 4096)
    .option('-q, --queue-depth <n>', 'writes in flight at most', integerArgument(1, MAX_QUEUE_DEPTH), 32)
    .option('-d, --duration <seconds>', 'seconds of writes per mode and round', secondsArgument, 5)
    .option('-r, --rounds <n>', 'interleaved rounds (the modes take turns in each)', integerArgument(1, MAX_ROUNDS), 3)
    .option('-m, --modes <list>', 'comma-separated: none (no pair), async, sync', modesArgument, [...MODES])
    .option('-s, --size <bytes>', 'capacity of each memory volume, e.g. 256MiB', sizeArgument, 256 * 1024 * 1024)
    .option('--processes <n>', '1: both controllers in this process; 2: the secondary in a serve child process', (value) => {
      if (value !== '1' && value !== '2') throw new InvalidArgumentError('must be 1 or 2');
      return Number(value) as 1 | 2;
    }, 1)
    .option('--json', 'print one JSON document (no progress)')
    .addOption(new Option('--log-level <level>', 'log level of the controllers\' JSON log on stderr').choices(LOG_LEVELS).default('error'))
    .addHelpText('after', `
Every volume is filled once through its pair before timing; each mode gets a short warm-up;
round r runs the modes in an order rotated by r, and each pair drains (lag 0) before the next
measurement. Latency is from the write call to its ack point (for sync: the secondary applied
it). Ratios are to "none" in the same round, median and min..max over the rounds.
Exit code 0 when done, 1 when a pair failed to mirror or catch up, 2 on a usage error.`)
    .action(async (options: BenchCommandOptions) => {
      const problem = combinationProblem(options);
      if (problem !== undefined) {
        process.stderr.write(`blockmirror bench: ${problem}\n`);
        process.exitCode = EXIT_USAGE;
        return;
      }
      const { runPairBench } = await import('../bench/pair-bench');
      const progress = options.json === true ? undefined : new BenchProgress(options);
      let report: PairBenchReport;
      try {
        report = await runPairBench({
          blockSizeBytes: options.blockSize,
          queueDepth: options.queueDepth,
          durationSeconds: options.duration,
          rounds: options.rounds,
          modes: options.modes,
          sizeBytes: options.size,
          processes: options.processes,
          logger: pino({ level: options.logLevel }, pino.destination({ fd: 2, sync: true })),
          ...(progress === undefined ? {} : { onProgress: (event: PairBenchProgress) => progress.report(event) }),
        });
      } finally {
        progress?.stop();
      }
      process.stdout.write(options.json === true ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report));
      process.exitCode = report.modes.every((mode) => mode.caughtUp !== false && mode.identical !== false) ? 0 : 1;
    });
}

/** A bar on a terminal; one line per measurement otherwise. */
class BenchProgress {
  private readonly bar: cliProgress.SingleBar | undefined;
  private readonly totalSeconds: number;
  private doneSeconds = 0;
  private started = false;

  constructor(private readonly options: BenchCommandOptions) {
    this.totalSeconds = options.rounds * options.modes.length * options.duration;
    if (process.stderr.isTTY === true) {
      this.bar = new cliProgress.SingleBar({
        format: 'bench [{bar}] {percentage}% | {step}',
        hideCursor: true,
        clearOnComplete: true,
        stream: process.stderr,
      }, cliProgress.Presets.shades_classic);
    }
  }

  private show(step: string, seconds: number): void {
    if (this.bar === undefined) return;
    if (!this.started) {
      this.bar.start(this.totalSeconds, 0, { step });
      this.started = true;
    }
    this.bar.update(Math.min(this.totalSeconds, seconds), { step });
  }

  report(event: PairBenchProgress): void {
    switch (event.kind) {
      case 'phase': {
        const step = event.mode === undefined ? event.phase : `${event.phase} ${event.mode}`;
        if (this.bar === undefined) process.stderr.write(`bench: ${step}\n`);
        else this.show(step, this.doneSeconds);
        return;
      }
      case 'tick':
        this.show(`round ${event.round}/${this.options.rounds} ${event.mode}: ${event.writes} writes`, this.doneSeconds + event.elapsedSeconds);
        return;
      case 'result': {
        this.doneSeconds += this.options.duration;
        const { result } = event;
        const lag = result.lagAtEnd === null ? '' : `, lag at end ${result.lagAtEnd.records} records (${formatBytes(result.lagAtEnd.bytes)})`;
        const line = `round ${result.round}/${this.options.rounds} ${result.mode}: ${Math.round(result.iops)} IOPS, ` +
          `p50 ${result.latencyUs.p50.toFixed(1)} us, p99 ${result.latencyUs.p99.toFixed(1)} us${lag}`;
        if (this.bar === undefined) process.stderr.write(`bench: ${line}\n`);
        else this.show(line, this.doneSeconds);
        return;
      }
      default:
    }
  }

  stop(): void {
    if (this.started) this.bar?.stop();
  }
}

function spread(value: Spread, digits = 0, unit = ''): string {
  const f = (n: number): string => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a');
  return value.min === value.max ? `${f(value.median)}${unit}` : `${f(value.median)}${unit} (${f(value.min)}..${f(value.max)})`;
}

function pad(text: string, width: number, right = false): string {
  return right ? text.padStart(width) : text.padEnd(width);
}

/** The report as a table. */
export function formatReport(report: PairBenchReport): string {
  const { options } = report;
  const lines: string[] = [];
  lines.push(`blockmirror bench: ${formatSize(options.blockSizeBytes)} writes at queue depth ${options.queueDepth}, ` +
    `${options.durationSeconds} s x ${options.rounds} round(s), ${formatSize(options.sizeBytes)} memory volumes, ` +
    `secondary ${report.setup.secondary}${report.setup.link === null ? '' : ` over ${report.setup.link}`}`);
  lines.push(`machine: ${report.machine.cpus} CPU(s), ${report.machine.model ?? 'unknown'}, Node ${report.machine.node}, ` +
    `load ${report.machine.loadAverageAtStart.map((load) => load.toFixed(2)).join(' ')}`);
  lines.push('');
  const header = ['mode', 'IOPS (min..max)', 'MiB/s', 'p50 us', 'p99 us', 'IOPS / none (min..max)', 'lag at round end', 'caught up'];
  const rows = report.modes.map((mode: PairBenchModeSummary) => [
    mode.mode,
    spread(mode.iops),
    spread(mode.mibPerSecond, 1),
    spread(mode.p50LatencyUs, 1),
    spread(mode.p99LatencyUs, 1),
    mode.iopsRatioToNone === null ? '-' : spread(mode.iopsRatioToNone, 2),
    mode.lagAtEndRecords === null || mode.lagAtEndBytes === null ? '-'
      : `${spread(mode.lagAtEndRecords)} rec, ${formatBytes(mode.lagAtEndBytes.max)} max`,
    mode.caughtUp === null ? '-' : `${mode.caughtUp ? 'yes' : 'NO'}${mode.suspensions > 0 ? ` (${mode.suspensions} suspension(s))` : ''}` +
      `${mode.identical === false ? ', copies DIFFER' : ''}`,
  ]);
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => (row[column] as string).length)));
  const format = (row: string[]): string => row.map((cell, column) => pad(cell, widths[column] as number, column > 0 && column < 5)).join('  ').trimEnd();
  lines.push(format(header));
  for (const row of rows) lines.push(format(row));
  lines.push('');
  lines.push(`Figures are the median over rounds, (min..max) the spread; ratios are taken within each round. ` +
    `Prefill took ${report.setup.prefillSeconds.toFixed(1)} s.`);
  return `${lines.join('\n')}\n`;
}
