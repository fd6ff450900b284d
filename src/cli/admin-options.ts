// Notes on the design
// -------------------
// What every command that talks to a running serve shares (admin-commands.ts, pair-command.ts,
// disk-command.ts, group-command.ts, snapshot-command.ts): the parsers of their option values
// (a bad value is an InvalidArgumentError: commander prints it and exits 2 before anything is
// sent), the `--admin` option and the address it names, the client made from it, the exit-code
// lines of their help, and adminAction, which turns a BlockmirrorError into
// `blockmirror: ERR_...: message` on stderr (the serve's own code when it sent one) and exit
// code 1. Nothing here loads the native addon.

import { InvalidArgumentError, Option } from 'commander';

import { AdminClient, type AdminAddress, AdminResponseError } from '../admin/client';
import { BlockmirrorError } from '../errors';
import { MAX_FAULT_DELAY_MS } from '../transport/faults';
import { defaultAdminSocketPath, parseSize } from './config';

const EXIT_FAILURE = 1;

/** Parses a rate in bytes per second: an integer or a size ("10MiB"), optionally with "/s". */
export function parseRate(value: string): number {
  const size = value.trim().replace(/\/s$/i, '');
  try {
    return parseSize(size);
  } catch (error) {
    throw new InvalidArgumentError(`must be bytes per second, an integer or a size like 10MiB or 10MiB/s: ${(error as Error).message}`);
  }
}

/** Parses milliseconds of delay or jitter: a number from 0 to one hour. */
export function parseMilliseconds(value: string): number {
  const ms = Number(value);
  if (!/^\d+(\.\d+)?$/.test(value.trim()) || !Number.isFinite(ms) || ms > MAX_FAULT_DELAY_MS) {
    throw new InvalidArgumentError(`must be a number of milliseconds from 0 to ${MAX_FAULT_DELAY_MS}`);
  }
  return ms;
}

export function parseIntervalSeconds(value: string): number {
  const seconds = Number(value);
  if (!/^\d+(\.\d+)?$/.test(value.trim()) || !(seconds >= 0.1) || seconds > 86400) {
    throw new InvalidArgumentError('must be a number of seconds from 0.1 to 86400');
  }
  return seconds;
}

export function parseFraction(value: string): number {
  const fraction = Number(value);
  if (!/^\d+(\.\d+)?$/.test(value.trim()) || !(fraction >= 0 && fraction <= 1)) {
    throw new InvalidArgumentError('must be a number from 0 to 1');
  }
  return fraction;
}

/** `--admin` value: a Unix socket path, or host:port for a loopback TCP endpoint. */
export function parseAdminAddress(value: string): AdminAddress {
  const tcp = /^(127\.0\.0\.1|localhost|\[::1\]):(\d{1,5})$/.exec(value);
  if (tcp !== null) {
    const port = Number(tcp[2]);
    if (port >= 1 && port <= 65535) return { host: (tcp[1] as string).replace(/^\[(.*)\]$/, '$1'), port };
  }
  return value;
}

export interface AdminOptions {
  admin: string;
  controller?: string;
}

/** Prints a BlockmirrorError as `blockmirror: ERR_...: message` (the serve's code when it sent one). */
function reportError(error: BlockmirrorError): void {
  let code = error.code;
  let message = error.message;
  if (error instanceof AdminResponseError && error.remoteCode !== undefined) {
    code = error.remoteCode;
    message = error.remoteMessage ?? message;
  }
  process.stderr.write(`blockmirror: ${code}: ${message}\n`);
}

/** Runs an action; a BlockmirrorError becomes a message on stderr and exit code 1. */
export function adminAction<A extends unknown[]>(action: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await action(...args);
    } catch (error) {
      if (!(error instanceof BlockmirrorError)) throw error;
      reportError(error);
      process.exitCode = EXIT_FAILURE;
    }
  };
}

export function clientFor(options: AdminOptions): AdminClient {
  return new AdminClient(parseAdminAddress(options.admin));
}

export function adminOption(): Option {
  return new Option('--admin <path>', 'the admin socket of the serve (or 127.0.0.1:PORT for its admin.tcp)')
    .default(defaultAdminSocketPath());
}

/** The exit-code lines of the help of the admin commands. */
export const ADMIN_EXIT_CODES = '\nExit codes: 0 ok, 1 the serve answered with an error or could not be reached ' +
  '(stderr: "blockmirror: ERR_...: message"), 2 usage error.';
