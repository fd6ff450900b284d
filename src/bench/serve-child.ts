// Notes on the design
// -------------------
// A `blockmirror serve` child process for the benchmarks: `blockmirror bench --processes 2` runs
// its secondary controller in one, and bench/pair-fio.ts runs both its controllers in two. The
// child is the real command (dist/src/cli/main.js serve) of a generated config file, so what is
// measured is what users run. Readiness is read from serve's output contract (src/cli/serve.ts):
// the lines "controller <id>: replication on HOST:PORT; ..." and "ready ...", and the NBD URIs.
//
// Owns: the child process and the config file it was given (both gone after stop()). CPU time is
// read from /proc/<pid>/stat (utime + stime of every thread), so it includes the native work.

import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

/** dist/src/cli/main.js, from dist/src/bench. */
export const CLI_MAIN_PATH = path.join(__dirname, '..', 'cli', 'main.js');

/**
 * Node options for every serve child, from BLOCKMIRROR_SERVE_NODE_ARGS (space-separated), e.g.
 * `--cpu-prof --cpu-prof-dir=/tmp/prof` to profile the serves of a bench (NODE_OPTIONS refuses
 * --cpu-prof). Empty by default.
 */
function serveNodeArgs(): string[] {
  return (process.env.BLOCKMIRROR_SERVE_NODE_ARGS ?? '').split(' ').filter((argument) => argument !== '');
}

/** Options of a serve child. */
export interface ServeChildOptions {
  /** The config document, written as JSON into `directory`. */
  config: unknown;
  /** Where the config file (and nothing else) goes. */
  directory: string;
  /** A name for the config file and messages. */
  name: string;
  /** Arguments after `serve --config FILE`. @default ['--port', '0', '--admin', 'none', '--quiet', '--log-level', 'error'] */
  args?: string[];
  /** How long start waits for "ready". @default 30000 */
  readyTimeoutMs?: number;
}

/** A running serve child. */
export class ServeChild {
  readonly lines: string[] = [];
  stderrText = '';
  private partial = '';
  private readonly exitPromise: Promise<number | null>;

  private constructor(readonly child: ChildProcess, readonly name: string, private readonly configPath: string) {
    child.stdout?.setEncoding('utf8');
    child.stderr?.setEncoding('utf8');
    child.stdout?.on('data', (text: string) => {
      this.partial += text;
      let index = this.partial.indexOf('\n');
      while (index >= 0) {
        this.lines.push(this.partial.slice(0, index).replace(/\r/g, ''));
        this.partial = this.partial.slice(index + 1);
        index = this.partial.indexOf('\n');
      }
    });
    child.stderr?.on('data', (text: string) => {
      // Bounded: a chatty child must not grow the bench's heap.
      this.stderrText = (this.stderrText + text).slice(-16_384);
    });
    this.exitPromise = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  }

  /** Starts `serve` on the config and resolves once it printed "ready". */
  static async start(options: ServeChildOptions): Promise<ServeChild> {
    const configPath = path.join(options.directory, `${options.name}.json`);
    fs.writeFileSync(configPath, JSON.stringify(options.config, null, 2));
    const args = options.args ?? ['--port', '0', '--admin', 'none', '--quiet', '--log-level', 'error'];
    const child = spawn(process.execPath, [...serveNodeArgs(), CLI_MAIN_PATH, 'serve', '--config', configPath, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const serve = new ServeChild(child, options.name, configPath);
    const timeoutMs = options.readyTimeoutMs ?? 30_000;
    const deadline = Date.now() + timeoutMs;
    while (!serve.lines.some((line) => /^ready\b/.test(line))) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`serve ${options.name} exited (${child.exitCode ?? child.signalCode}) before ready:\n` +
          `${serve.lines.join('\n')}\n${serve.stderrText}`);
      }
      if (Date.now() > deadline) {
        await serve.stop();
        throw new Error(`serve ${options.name} was not ready within ${timeoutMs} ms:\n${serve.lines.join('\n')}\n${serve.stderrText}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    return serve;
  }

  get pid(): number {
    return this.child.pid as number;
  }

  /** The replication listener of controller `id`, from its "controller <id>: replication on" line. */
  replicationAddress(id: string): { host: string; port: number } {
    for (const line of this.lines) {
      const match = /^controller (\S+): replication on (\S+?):(\d+);/.exec(line);
      if (match !== null && match[1] === id) return { host: (match[2] as string).replace(/^\[|\]$/g, ''), port: Number(match[3]) };
    }
    throw new Error(`serve ${this.name} printed no replication address for controller ${id}:\n${this.lines.join('\n')}`);
  }

  /** The TCP NBD URI of export `name`. */
  uri(exportName: string): string {
    for (const line of this.lines) {
      const uri = /^(nbd:\/\/\S+)/.exec(line)?.[1];
      if (uri !== undefined && decodeURIComponent(uri.replace(/^nbd:\/\/[^/]+\/?/, '')) === exportName) return uri;
    }
    throw new Error(`serve ${this.name} printed no URI for export ${exportName}:\n${this.lines.join('\n')}`);
  }

  /** utime + stime of the child in seconds. */
  cpuSeconds(): number {
    return processCpuSeconds(this.pid);
  }

  /** SIGTERM (SIGKILL after `timeoutMs`), waits for the exit, removes the config file. */
  async stop(timeoutMs = 30_000): Promise<number | null> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    try {
      return await this.exitPromise;
    } finally {
      clearTimeout(timer);
      fs.rmSync(this.configPath, { force: true });
    }
  }
}

let clockTicks: number | undefined;

/** Clock ticks per second of /proc/<pid>/stat's times (getconf CLK_TCK, 100 when unknown). */
function clockTicksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** utime + stime of process `pid` (all its threads) in seconds, from /proc/<pid>/stat. */
export function processCpuSeconds(pid: number): number {
  const text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name is in parentheses and may hold spaces: count fields after its ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // utime and stime are fields 14 and 15 of the line: 12 and 13 after "pid (comm) ".
  return (Number(fields[11]) + Number(fields[12])) / clockTicksPerSecond();
}
