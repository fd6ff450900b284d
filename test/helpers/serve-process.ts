// A real `blockmirror serve` child process for integration and interop tests: writes the config
// to a temporary file, starts `node dist/src/cli/main.js serve --config FILE --port 0`, waits for
// the "ready" line (the CLI's output contract, see src/cli/serve.ts) and knows the URIs it
// printed. Readiness and shutdown are awaited on output lines and the exit event, never on
// sleeps.

import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { exited } from './tools';

/** dist/src/cli/main.js, from dist/test/helpers. */
export const CLI_PATH = path.join(__dirname, '..', '..', 'src', 'cli', 'main.js');

export interface ServeProcessOptions {
  /** The config document (written as JSON) or undefined for the built-in default. */
  config?: unknown;
  /** Directory for the config file. */
  directory: string;
  /** Extra arguments after `serve`. @default ['--port', '0'] */
  args?: string[];
  /** How long start() waits for "ready". @default 20000 */
  readyTimeoutMs?: number;
  env?: NodeJS.ProcessEnv;
}

let serveCount = 0;

interface LineWaiter {
  pattern: RegExp;
  resolve: (line: string) => void;
}

export class ServeProcess {
  readonly child: ChildProcess;
  readonly stdoutLines: string[] = [];
  stderrText = '';
  private partial = '';
  private waiters: LineWaiter[] = [];
  private exitResult: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  private constructor(child: ChildProcess) {
    this.child = child;
    child.stdout?.setEncoding('utf8');
    child.stderr?.setEncoding('utf8');
    child.stdout?.on('data', (text: string) => this.onStdout(text));
    child.stderr?.on('data', (text: string) => {
      this.stderrText += text;
      if (process.env.BLOCKMIRROR_TEST_VERBOSE !== undefined) process.stderr.write(`[serve stderr] ${text}`);
    });
    this.exitResult = exited(child);
  }

  static async start(options: ServeProcessOptions): Promise<ServeProcess> {
    const args = ['serve'];
    if (options.config !== undefined) {
      const configPath = path.join(options.directory, `serve-${process.pid}-${Date.now()}.json`);
      fs.writeFileSync(configPath, JSON.stringify(options.config, null, 2));
      args.push('--config', configPath);
    }
    args.push(...(options.args ?? ['--port', '0']));
    // Each serve gets its own admin socket (unless the test chose one), so tests never meet the
    // default socket of a serve the developer runs by hand.
    const env = { ...(options.env ?? process.env) };
    if (env.BLOCKMIRROR_ADMIN_SOCKET === undefined) {
      env.BLOCKMIRROR_ADMIN_SOCKET = path.join(options.directory, `admin-${process.pid}-${++serveCount}.sock`);
    }
    const child = spawn(process.execPath, [CLI_PATH, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env,
    });
    const serve = new ServeProcess(child);
    const timeoutMs = options.readyTimeoutMs ?? 20_000;
    const ready = serve.waitForLine(/^ready\b/, timeoutMs);
    const early = serve.exitResult.then((result) => {
      throw new Error(`blockmirror serve exited before ready (${result.code ?? result.signal})\n` +
        `stdout:\n${serve.stdoutLines.join('\n')}\nstderr:\n${serve.stderrText}`);
    });
    await Promise.race([ready, early]);
    return serve;
  }

  private onStdout(text: string): void {
    this.partial += text;
    for (;;) {
      const index = this.partial.indexOf('\n');
      if (index < 0) break;
      const line = this.partial.slice(0, index).replace(/\r/g, '');
      this.partial = this.partial.slice(index + 1);
      this.stdoutLines.push(line);
      if (process.env.BLOCKMIRROR_TEST_VERBOSE !== undefined) process.stderr.write(`[serve] ${line}\n`);
      this.waiters = this.waiters.filter((waiter) => {
        if (!waiter.pattern.test(line)) return true;
        waiter.resolve(line);
        return false;
      });
    }
  }

  /** Resolves with the first stdout line (already seen or future) matching `pattern`. */
  waitForLine(pattern: RegExp, timeoutMs = 20_000): Promise<string> {
    const seen = this.stdoutLines.find((line) => pattern.test(line));
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for a serve line matching ${pattern}\n` +
          `stdout:\n${this.stdoutLines.join('\n')}\nstderr:\n${this.stderrText.slice(-4000)}`));
      }, timeoutMs);
      const waiter: LineWaiter = {
        pattern,
        resolve: (line) => {
          clearTimeout(timer);
          resolve(line);
        },
      };
      this.waiters.push(waiter);
    });
  }

  /** Every NBD URI the process printed (one per export per listener). */
  get uris(): string[] {
    return this.stdoutLines.map((line) => /^(nbd(?:\+unix)?:\/\/\S+)/.exec(line)?.[1])
      .filter((uri): uri is string => uri !== undefined);
  }

  /** The TCP URI of export `name`. */
  uri(name: string): string {
    const found = this.uris.find((uri) => /^nbd:\/\//.test(uri) &&
      decodeURIComponent(uri.replace(/^nbd:\/\/[^/]+\/?/, '').replace(/\?.*$/, '')) === name);
    if (found === undefined) throw new Error(`serve printed no TCP URI for export "${name}": ${this.uris.join(', ')}`);
    return found;
  }

  /** host:port of the first TCP listener. */
  get tcpAddress(): { host: string; port: number } {
    const uri = this.uris.find((u) => u.startsWith('nbd://'));
    const match = uri === undefined ? null : /^nbd:\/\/\[?([^\]/]+?)\]?:(\d+)/.exec(uri);
    if (match === null) throw new Error(`no TCP URI among ${this.uris.join(', ')}`);
    return { host: match[1] as string, port: Number(match[2]) };
  }

  get exit(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    return this.exitResult;
  }

  /** Sends `signal` and resolves with the exit result. */
  async signal(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 30_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`serve did not exit within ${timeoutMs} ms of ${signal}\n` +
        `stdout:\n${this.stdoutLines.join('\n')}\nstderr:\n${this.stderrText.slice(-4000)}`)), timeoutMs);
    });
    try {
      return await Promise.race([this.exitResult, timeout]);
    } finally {
      if (timer !== undefined) clearTimeout(timer);
    }
  }

  /** For after hooks: SIGTERM, then SIGKILL if it lingers. Never throws. */
  async kill(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    try {
      await this.signal('SIGTERM', 10_000);
    } catch {
      this.child.kill('SIGKILL');
      await this.exitResult;
    }
  }
}
