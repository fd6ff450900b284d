#!/usr/bin/env node
// The `blockmirror` command. This file only parses the command line (commander) and maps
// outcomes to exit codes; the work is in serve.ts, demo.ts and config.ts.
//
// Exit codes: 0 success; 1 a run-time failure (a volume could not be opened, the demo found a
// mismatch); 2 a usage or config error (unknown option, invalid config file), as most Unix
// tools do; 128+N after a second signal N during shutdown.

import * as fs from 'node:fs';

import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import pino from 'pino';

import {
  BlockmirrorConfig,
  ConfigError,
  applyAdminOverride,
  applyListenOverrides,
  defaultConfig,
  loadConfigFile,
  parseSize,
  toDocument,
} from './config';
import type { DemoOptions } from './demo';
import { registerAdminCommands } from './admin-commands';
import { registerBenchCommand } from './bench-command';
import { registerSimCommand } from './sim-command';
import { registerSnapshotCommand } from './snapshot-command';
import { registerDiskCommand } from './disk-command';
import { registerGroupCommand } from './group-command';

const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

function packageVersion(): string {
  try {
    // dist/src/cli/main.js -> package.json three levels up.
    return (require('../../../package.json') as { version: string }).version;
  } catch {
    return '0.0.0';
  }
}

function parsePort(value: string): number {
  const port = Number(value);
  if (!/^\d+$/.test(value) || port > 65535) {
    throw new InvalidArgumentError('must be an integer from 0 to 65535 (0: any free port)');
  }
  return port;
}

function parsePositiveSeconds(value: string): number {
  const seconds = Number(value);
  if (!Number.isFinite(seconds) || seconds <= 0 || seconds > 86400) {
    throw new InvalidArgumentError('must be a number of seconds greater than 0 (at most 86400)');
  }
  return seconds;
}

function parseSizeOption(value: string): number {
  try {
    return parseSize(/^\d+$/.test(value) ? Number(value) : value);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}

function makeLogger(level: string): pino.Logger {
  return pino({ level, base: { pid: process.pid } }, pino.destination({ fd: 2, sync: true }));
}

function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** Builds the program; exported for tests that want to inspect the help text. */
export function buildProgram(): Command {
  const program = new Command();
  program
    .name('blockmirror')
    .description('An emulated enterprise storage array: controllers with volumes in shared memory, mirrored over links, exported over NBD.')
    .version(packageVersion(), '-V, --version')
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ outputError: (text, write) => write(text) })
    .addHelpText('after', `
Examples:
  $ blockmirror serve                               site-a mirrors vol0 to site-b (sync); nbd://127.0.0.1:10809/vol0
  $ blockmirror status                              the controllers, links and pairs of a running serve
  $ blockmirror link fault site-b --partition       cut a link; heal it with: blockmirror link heal site-b
  $ blockmirror serve --config array.yaml --port 0  a configured array on any free port
  $ blockmirror demo --size 64MiB                   exercise the native write path and verify it
  $ blockmirror config default > array.json         start a config from the built-in one
  $ blockmirror config check array.json             validate a config and print it normalized

Exit codes: 0 success, 1 failure, 2 usage or config error.`);

  program
    .command('serve')
    .description('Run the configured controllers (volumes, links, pairs) and serve their volumes over NBD until SIGINT, SIGTERM or SIGHUP.')
    .option('-c, --config <file>', 'JSON or YAML config (controllers, listen, admin, limits); default: site-a with a thin 1 GiB "vol0" mirrored in sync mode to site-b')
    .option('--host <host>', 'listen on this TCP host (replaces the config\'s listeners)')
    .option('-p, --port <port>', 'listen on this TCP port, 0 for any free one (replaces the config\'s listeners)', parsePort)
    .option('--socket <path>', 'listen on this Unix socket (replaces the config\'s listeners)')
    .option('--admin <path>', 'admin endpoint Unix socket (replaces the config\'s admin.socket); "none" for no admin socket')
    .option('-q, --quiet', 'no status line (the log stays at --log-level)')
    .addOption(new Option('--log-level <level>', 'log level of the JSON log on stderr (info: one line per connection)').choices(LOG_LEVELS).default('warn'))
    .option('--status-interval <seconds>', 'seconds between status lines when stdout is not a terminal', parsePositiveSeconds, 5)
    .option('--shutdown-timeout <seconds>', 'seconds to wait for in-flight requests on shutdown before cutting connections', parsePositiveSeconds, 30)
    .addHelpText('after', `
Prints one line per export starting with its NBD URI, then a line starting with "ready", then a
status line (rewritten in place once a second on a terminal; one line every --status-interval
seconds otherwise). SIGINT, SIGTERM or SIGHUP stops cleanly: listeners close, requests in flight are
answered, volumes are flushed and closed, a summary is printed, exit code 0. A second signal exits
at once.`)
    .action(async (options: {
      config?: string; host?: string; port?: number; socket?: string; admin?: string; quiet?: boolean; logLevel: string;
      statusInterval: number; shutdownTimeout: number;
    }) => {
      let config: BlockmirrorConfig = options.config === undefined ? defaultConfig() : loadConfigFile(options.config);
      const overrides: { host?: string; port?: number; socket?: string } = {};
      if (options.host !== undefined) overrides.host = options.host;
      if (options.port !== undefined) overrides.port = options.port;
      if (options.socket !== undefined) overrides.socket = options.socket;
      config = applyListenOverrides(config, overrides);
      if (options.admin !== undefined) config = applyAdminOverride(config, options.admin);
      const level = options.logLevel;
      // Loaded here, not at the top, so `config` and `--help` work without the native addon.
      const { runServe } = await import('./serve');
      process.exitCode = await runServe({
        config,
        logger: makeLogger(level),
        quiet: options.quiet === true,
        statusIntervalSeconds: options.statusInterval,
        shutdownTimeoutMs: options.shutdownTimeout * 1000,
      });
    });

  program
    .command('demo')
    .description('Create a volume, write a verifiable pattern (write and writev), read back and verify every byte, ' +
      'with a bitmap and a journal attached; print what the native layer did and how fast.')
    .option('-s, --size <bytes>', 'volume capacity, e.g. 256MiB', parseSizeOption, 256 * 1024 * 1024)
    .option('-b, --block-size <bytes>', 'volume block size, a power of two from 512 to 65536', parseSizeOption, 4096)
    .option('--seed <n>', 'pattern seed (the same seed writes the same bytes)', (v) => {
      if (!/^\d+$/.test(v)) throw new InvalidArgumentError('must be a non-negative integer');
      return Number(v) >>> 0;
    })
    .option('--json', 'print the report as JSON instead of text')
    .addOption(new Option('--inject-corruption <byteOffset>', 'test hook: flip one byte before verifying')
      .argParser(parseSizeOption).hideHelp())
    .addHelpText('after', '\nExit code 0 when every byte read back matched, 1 on any mismatch.')
    .action(async (options: { size: number; blockSize: number; seed?: number; json?: boolean; injectCorruption?: number }) => {
      const { runDemo } = await import('./demo');
      // Combinations of options are checked here (each option alone was checked by its parser),
      // and are usage errors too: exit 2, before any volume exists.
      const usage = (message: string): void => {
        process.stderr.write(`blockmirror demo: ${message}\n`);
        process.exitCode = EXIT_USAGE;
      };
      if (options.injectCorruption !== undefined && options.injectCorruption >= options.size) {
        return usage(`--inject-corruption must be below --size ${options.size}`);
      }
      if (options.blockSize < 512 || options.blockSize > 65536 || (options.blockSize & (options.blockSize - 1)) !== 0) {
        return usage(`--block-size must be a power of two from 512 to 65536, got ${options.blockSize}`);
      }
      if (options.size === 0 || options.size % options.blockSize !== 0) {
        return usage(`--size must be a positive multiple of --block-size ${options.blockSize}, got ${options.size}`);
      }
      const demoOptions: DemoOptions = {
        capacityBytes: options.size,
        blockSize: options.blockSize,
        seed: options.seed ?? 0x5eed,
        json: options.json === true,
      };
      if (options.injectCorruption !== undefined) demoOptions.corruptByteOffset = options.injectCorruption;
      process.exitCode = await runDemo(demoOptions);
    });

  const configCommand = program.command('config').description('Inspect and validate config files.');
  configCommand
    .command('check')
    .description('Validate a config file; print it normalized (defaults filled in) as JSON.')
    .argument('<file>', 'JSON or YAML config')
    .action((file: string) => {
      printJson(toDocument(loadConfigFile(file)));
    });
  configCommand
    .command('default')
    .description('Print the built-in default config as JSON.')
    .action(() => {
      printJson(toDocument(defaultConfig()));
    });

  registerAdminCommands(program);
  registerBenchCommand(program);
  registerSimCommand(program);
  registerSnapshotCommand(program);
  registerDiskCommand(program);
  registerGroupCommand(program);

  return program;
}

/** Parses argv and runs; resolves to the exit code. */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  // Every level (`link fault` is two deep): commander must throw, not exit, so codes map here.
  const overrideExit = (command: Command): void => {
    command.exitOverride();
    for (const sub of command.commands) overrideExit(sub);
  };
  overrideExit(program);
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version are "errors" to commander; they exit 0.
      if (error.exitCode === 0) return 0;
      return EXIT_USAGE;
    }
    if (error instanceof ConfigError) {
      process.stderr.write(`blockmirror: ${error.message}\n`);
      return EXIT_USAGE;
    }
    const code = (error as { code?: unknown }).code;
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`blockmirror: ${typeof code === 'string' ? `${code}: ` : ''}${message}\n`);
    if (process.env.BLOCKMIRROR_DEBUG !== undefined && error instanceof Error) process.stderr.write(`${error.stack}\n`);
    return EXIT_FAILURE;
  }
}

if (require.main === module) {
  // `blockmirror config default | head -1`, a supervisor that stopped reading (EPIPE), or a
  // terminal that was closed (EIO after SIGHUP): a lost stdout is not a reason to crash; serve
  // goes on serving, or finishes its clean stop, and only what it prints is lost.
  let terminalLost = false;
  const dropLostOutput = (error: NodeJS.ErrnoException): void => {
    if (error.code === 'EIO') terminalLost = true;
    else if (error.code !== 'EPIPE') throw error;
  };
  process.stdout.on('error', dropLostOutput);
  process.stderr.on('error', dropLostOutput);
  main(process.argv).then(
    (code) => {
      if (terminalLost) {
        // Node restores the terminal modes of fds 0-2 at exit and aborts when the terminal is
        // gone (tcsetattr fails with EIO); it skips descriptors that were closed, so close them.
        for (const fd of [0, 1, 2]) {
          try {
            fs.closeSync(fd);
          } catch {
            // Already closed: nothing to restore.
          }
        }
      }
      // Exit explicitly: a library handle left open by mistake must not keep a finished command
      // alive. stdout and stderr are synchronous for files and pipes on Linux.
      process.exit(code);
    },
    (error: unknown) => {
      process.stderr.write(`blockmirror: internal error: ${String((error as Error)?.stack ?? error)}\n`);
      process.exit(EXIT_FAILURE);
    },
  );
}
