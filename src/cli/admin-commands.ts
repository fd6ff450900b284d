// Notes on the design
// -------------------
// The commands that talk to a running `blockmirror serve` through its admin endpoint
// (src/admin/): `status`, `events`, `link fault`, `link heal`. Each is a thin shell around
// AdminClient: parse and check the options (a mistake is a usage error, exit 2, before anything
// is sent), make the call, print. Formatting is in pure functions (formatStatus, formatLinkLine)
// so tests can feed them invented status objects.
//
// Exit codes: 0 ok; 1 the serve answered with an error or could not be reached, printed on
// stderr as `blockmirror: ERR_...: message` (the serve's own code when it sent one); 2 usage.
// Nothing here loads the native addon: these commands run on machines that only observe.

import { Command, InvalidArgumentError, Option } from 'commander';

import { AdminClient, type AdminAddress, AdminResponseError } from '../admin/client';
import { BlockmirrorError } from '../errors';
import { MAX_FAULT_DELAY_MS } from '../transport/faults';
import { defaultAdminSocketPath, parseSize } from './config';
import { formatBytes } from './status';

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

function parseIntervalSeconds(value: string): number {
  const seconds = Number(value);
  if (!/^\d+(\.\d+)?$/.test(value.trim()) || !(seconds >= 0.1) || seconds > 86400) {
    throw new InvalidArgumentError('must be a number of seconds from 0.1 to 86400');
  }
  return seconds;
}

function parseFraction(value: string): number {
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

// ---------------------------------------------------------------------------------------------
// Formatting (pure).

type Json = Record<string, unknown>;

function record(value: unknown): Json | undefined {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Json) : undefined;
}

function records(value: unknown): Json[] {
  return Array.isArray(value) ? value.map(record).filter((entry): entry is Json => entry !== undefined) : [];
}

function text(value: unknown, fallback = '-'): string {
  return typeof value === 'string' && value !== '' ? value : typeof value === 'number' ? String(value) : fallback;
}

function count(value: unknown): string {
  return typeof value === 'number' && Number.isFinite(value) ? String(value) : '-';
}

function bytes(value: unknown): string {
  return typeof value === 'number' && Number.isFinite(value) ? formatBytes(value) : '-';
}

function milliseconds(value: number): string {
  return value < 10 ? `${Number(value.toFixed(2))}ms` : value < 1000 ? `${Math.round(value)}ms` : `${Number((value / 1000).toFixed(1))}s`;
}

/** One direction's faults: "delay 100ms ±10ms, 10.0 MiB/s, partitioned", or '' for none. */
function formatDirectionFaults(faults: Json | undefined): string {
  if (faults === undefined) return '';
  const parts: string[] = [];
  const delay = typeof faults.delayMs === 'number' ? faults.delayMs : 0;
  const jitter = typeof faults.jitterMs === 'number' ? faults.jitterMs : 0;
  if (delay > 0 || jitter > 0) parts.push(`delay ${milliseconds(delay)}${jitter > 0 ? ` ±${milliseconds(jitter)}` : ''}`);
  const rate = typeof faults.bandwidthBytesPerSecond === 'number' ? faults.bandwidthBytesPerSecond : 0;
  if (rate > 0) parts.push(`${formatBytes(rate)}/s`);
  if (faults.partitioned === true) parts.push('partitioned');
  return parts.join(', ');
}

/** The faults in force on a link: "both: delay 100ms", "out: partitioned; in: 1.0 MiB/s", or "-". */
export function formatFaults(faults: unknown): string {
  const all = record(faults);
  if (all === undefined) return '-';
  const outgoing = formatDirectionFaults(record(all.out));
  const incoming = formatDirectionFaults(record(all.in));
  if (outgoing === '' && incoming === '') return '-';
  if (outgoing === incoming) return `both: ${outgoing}`;
  return [outgoing === '' ? '' : `out: ${outgoing}`, incoming === '' ? '' : `in: ${incoming}`].filter((part) => part !== '').join('; ');
}

function formatReason(link: Json): string {
  const reason = text(link.reason);
  return typeof link.code === 'string' ? `${reason} (${link.code})` : reason;
}

function formatAuth(link: Json): string {
  if (link.auth === 'none') return 'none';
  if (typeof link.auth !== 'string') return '-';
  return link.authenticated === true ? link.auth : `${link.auth} (pending)`;
}

function formatNextAttempt(link: Json, nowMs: number): string {
  const at = link.nextAttemptWallTimeMs;
  if (typeof at !== 'number') return '-';
  return `in ${milliseconds(Math.max(0, at - nowMs))}`;
}

function table(rows: string[][], indent: string): string[] {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, index) => { widths[index] = Math.max(widths[index] ?? 0, cell.length); });
  return rows.map((row) => `${indent}${row.map((cell, index) => (index === row.length - 1 ? cell : cell.padEnd(widths[index] ?? 0))).join('  ')}`.trimEnd());
}

/** One line for a link: "a -> b: up (handshake-done), rtt 0.4ms, faults both: delay 100ms". */
export function formatLinkLine(controllerId: string | undefined, peerId: string, link: unknown): string {
  const name = controllerId === undefined ? `link ${peerId}` : `link ${controllerId} -> ${peerId}`;
  const status = record(link);
  if (status === undefined) return `${name}: done (the serve reported no status for this link)`;
  const parts = [`${text(status.state)} (${formatReason(status)})`];
  if (typeof status.rttMs === 'number') parts.push(`rtt ${milliseconds(status.rttMs)}`);
  parts.push(`faults ${formatFaults(status.faults)}`);
  return `${name}: ${parts.join(', ')}`;
}

/** Options of formatStatus. */
export interface FormatStatusOptions {
  /** Wall time the "next attempt" column counts from. @default Date.now() */
  nowMs?: number;
}

/** A 20-cell text progress bar for a fraction from 0 to 1. */
/** One line per member of a journal group after a group verb: its state and role. */
function printGroupRoles(pairs: Record<string, unknown>[] | undefined): void {
  for (const status of pairs ?? []) {
    process.stdout.write(`pair ${String(status.name ?? '?')}: ${String(status.state ?? '?')} (${String(status.reason ?? '?')}); role ${String(status.role ?? '?')}\n`);
  }
}

function progressBar(fraction: number): string {
  const cells = Math.max(0, Math.min(20, Math.round(fraction * 20)));
  return `[${'#'.repeat(cells)}${'.'.repeat(20 - cells)}] ${Math.floor(Math.max(0, Math.min(1, fraction)) * 100)}%`;
}

/** The human-readable status of an array: per controller, its links, exports and pairs. */
export function formatStatus(status: unknown, options: FormatStatusOptions = {}): string {
  const nowMs = options.nowMs ?? Date.now();
  const top = record(status) ?? {};
  const lines: string[] = [];
  const controllers = records(top.controllers);
  if (controllers.length === 0) lines.push('no controllers');
  for (const controller of controllers) {
    const volumes = Array.isArray(controller.volumes) ? controller.volumes : [];
    const volumeNames = volumes.map((volume) => (typeof volume === 'string' ? volume : text(record(volume)?.name, '?')));
    const head = [`controller ${text(controller.id, '?')}`];
    if (typeof controller.state === 'string') head.push(`state ${controller.state}`);
    head.push(`volumes ${volumeNames.length === 0 ? '-' : volumeNames.join(', ')}`);
    lines.push(head.join('  '));
    const links = records(controller.links);
    if (links.length === 0) {
      lines.push('  links: none');
    } else {
      const rows = [['PEER', 'STATE', 'REASON', 'RTT', 'IN', 'OUT', 'RECONNECTS', 'ATTEMPT', 'NEXT', 'AUTH', 'FAULTS']];
      for (const link of links) {
        rows.push([
          text(link.peerId, '?'),
          text(link.state),
          formatReason(link),
          typeof link.rttMs === 'number' ? milliseconds(link.rttMs) : '-',
          bytes(link.bytesIn),
          bytes(link.bytesOut),
          count(link.reconnects),
          count(link.attempt),
          formatNextAttempt(link, nowMs),
          formatAuth(link),
          formatFaults(link.faults),
        ]);
      }
      lines.push(...table(rows, '  '));
    }
    const exportsList = records(controller.exports);
    if (exportsList.length === 0) {
      lines.push('  exports: none');
    } else {
      const rows = [['EXPORT', 'VOLUME', 'MODE', 'REQUESTS', 'READ', 'WRITTEN']];
      for (const entry of exportsList) {
        const requests = record(entry.requests);
        const total = requests === undefined ? undefined
          : Object.values(requests).reduce<number>((sum, value) => sum + (typeof value === 'number' ? value : 0), 0);
        rows.push([
          text(entry.name, '""'),
          text(entry.volume),
          entry.readOnly === true ? 'ro' : 'rw',
          count(total),
          bytes(entry.bytesRead),
          bytes(entry.bytesWritten),
        ]);
      }
      lines.push(...table(rows, '  '));
    }
    const pairs = records(controller.pairs);
    if (pairs.length > 0) {
      const rows = [['PAIR', 'ROLE', 'MODE', 'PEER', 'STATE', 'REASON', 'IMAGE', 'LAG', 'OOS', 'GEN', 'GROUP', 'PROGRESS']];
      for (const pair of pairs) {
        const lag = record(pair.lag);
        const oos = record(pair.oos);
        const progress = record(pair.progress);
        const done = typeof progress?.doneBytes === 'number' ? progress.doneBytes : 0;
        const total = typeof progress?.totalBytes === 'number' ? progress.totalBytes : 0;
        rows.push([
          text(pair.name, '?'),
          text(pair.role),
          text(pair.mode),
          text(pair.peer),
          text(pair.state),
          text(pair.reason),
          text(pair.consistency),
          lag === undefined ? '-' : `${count(lag.records)} rec`,
          oos === undefined ? '-' : bytes(oos.bytes),
          // The current generation id, its first 8 hex digits (status --json has them all).
          typeof record(pair.generations)?.current === 'string' ? String(record(pair.generations)?.current).slice(0, 8) : '-',
          text(pair.journalGroup, '-'),
          progress === undefined ? '-' : `${progressBar(total === 0 ? 1 : done / total)} ${bytes(done)}/${bytes(total)}`,
        ]);
      }
      lines.push(...table(rows, '  '));
    }
    // Consistency groups (docs/cgroups.md): the master's cycles, a slave's hold, the copies held.
    const groups = record(controller.consistencyGroups);
    const declared = records(groups?.groups);
    const copies = records(groups?.copies);
    if (declared.length > 0 || copies.length > 0) {
      const rows = [['CGROUP', 'ROLE', 'PHASE', 'FORMED', 'RPO', 'HOLD P99', 'LAST FAILURE', 'COPIES HERE']];
      const names = new Set([...declared.map((group) => text(group.name, '?')), ...copies.map((copy) => text(copy.group, '?'))]);
      for (const name of names) {
        const group = declared.find((entry) => entry.name === name);
        const cycles = record(group?.cycles);
        const slave = record(group?.slave);
        const counts = record(cycles?.counts);
        const failure = record(cycles?.lastFailure);
        const hold = record(slave?.holdMs);
        const held = copies.filter((copy) => copy.group === name).map((copy) => `${text(copy.volume)}:${Array.isArray(copy.cycles) ? copy.cycles.length : 0}`);
        rows.push([
          name,
          group === undefined ? 'secondary' : cycles !== undefined ? 'master' : 'slave',
          text(cycles?.phase, '-'),
          counts === undefined ? '-' : `${count(counts.formed)}/${count(counts.cycles)}`,
          typeof cycles?.rpoSeconds === 'number' ? `${cycles.rpoSeconds.toFixed(3)} s` : '-',
          typeof hold?.p99 === 'number' ? `${hold.p99.toFixed(2)} ms` : '-',
          failure === undefined ? '-' : text(failure.reason),
          held.length === 0 ? '-' : held.join(' '),
        ]);
      }
      lines.push(...table(rows, '  '));
    }
  }
  const nbd = record(top.nbd);
  if (nbd !== undefined) {
    const parts: string[] = [];
    const addresses = Array.isArray(nbd.addresses) ? nbd.addresses : Array.isArray(nbd.listen) ? nbd.listen : [];
    const uris = addresses.map((address) => (typeof address === 'string' ? address : text(record(address)?.uri, ''))).filter((uri) => uri !== '');
    if (uris.length > 0) parts.push(uris.join(' '));
    if (typeof nbd.connections === 'number') parts.push(`${nbd.connections} connection(s)`);
    if (parts.length > 0) lines.push(`nbd: ${parts.join(', ')}`);
  }
  return `${lines.join('\n')}\n`;
}

// ---------------------------------------------------------------------------------------------
// Commands.

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

/** Keeps only `controllerId` in a status (ERR_ADMIN_UNKNOWN_CONTROLLER when it has none such). */
function selectController(status: unknown, controllerId: string | undefined): unknown {
  if (controllerId === undefined) return status;
  const top = record(status) ?? {};
  const controllers = records(top.controllers).filter((controller) => controller.id === controllerId);
  if (controllers.length === 0) {
    const known = records(top.controllers).map((controller) => text(controller.id, '?')).join(', ');
    throw new BlockmirrorError('ERR_ADMIN_UNKNOWN_CONTROLLER', `no controller "${controllerId}" in this serve (it has ${known || 'none'})`);
  }
  return { ...top, controllers };
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) {
      resolve();
      return;
    }
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

/** An AbortSignal that fires on SIGINT or SIGTERM (Ctrl-C ends a watch cleanly, exit 0). */
function stopSignal(): { signal: AbortSignal; dispose(): void } {
  const controller = new AbortController();
  const stop = (): void => controller.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  return {
    signal: controller.signal,
    dispose: () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
    },
  };
}

async function runStatus(options: AdminOptions & { json?: boolean; watch?: boolean; interval: number }): Promise<void> {
  const client = clientFor(options);
  const render = async (): Promise<string> => {
    const status = selectController(await client.get('/status'), options.controller);
    return options.json === true ? `${JSON.stringify(status, null, options.watch === true ? undefined : 2)}\n` : formatStatus(status);
  };
  if (options.watch !== true) {
    process.stdout.write(await render());
    return;
  }
  const stop = stopSignal();
  const tty = process.stdout.isTTY === true;
  try {
    while (!stop.signal.aborted) {
      let block: string;
      try {
        block = await render();
      } catch (error) {
        if (!(error instanceof BlockmirrorError)) throw error;
        const code = error instanceof AdminResponseError && error.remoteCode !== undefined ? error.remoteCode : error.code;
        const message = error instanceof AdminResponseError && error.remoteMessage !== undefined ? error.remoteMessage : error.message;
        block = `blockmirror: ${code}: ${message}\n`;
      }
      if (stop.signal.aborted) break;
      if (options.json === true) {
        process.stdout.write(block);
      } else {
        const header = `blockmirror status  ${new Date().toISOString()}  every ${options.interval} s; Ctrl-C stops\n`;
        // A terminal is redrawn in place; a pipe or file gets one block after another.
        process.stdout.write(tty ? `\x1b[H\x1b[2J${header}\n${block}` : `${header}${block}\n`);
      }
      await sleep(options.interval * 1000, stop.signal);
    }
  } finally {
    stop.dispose();
  }
}

async function runEvents(options: AdminOptions & { now?: boolean }): Promise<void> {
  const client = clientFor(options);
  const stop = stopSignal();
  let overflow = false;
  try {
    await client.events((event) => {
      if (event.kind === 'overflow') {
        overflow = true;
        return;
      }
      if (options.controller !== undefined && event.controller !== options.controller) return;
      process.stdout.write(`${JSON.stringify(event)}\n`);
    }, { now: options.now === true, signal: stop.signal });
  } finally {
    stop.dispose();
  }
  if (overflow) {
    throw new BlockmirrorError('ERR_ADMIN_RESPONSE',
      'the serve ended the event stream because this reader fell behind (its output was not read fast enough)');
  }
}

interface FaultOptions extends AdminOptions {
  delay?: number;
  jitter?: number;
  bandwidth?: number;
  drop?: boolean;
  partition?: boolean;
  direction?: 'in' | 'out' | 'both';
  json?: boolean;
}

function printLinkAnswer(answer: unknown, options: AdminOptions & { json?: boolean }, peer: string): void {
  if (options.json === true) {
    process.stdout.write(`${JSON.stringify(answer, null, 2)}\n`);
    return;
  }
  process.stdout.write(`${formatLinkLine(options.controller, peer, record(answer)?.link)}\n`);
}

/** Adds `status`, `events` and `link fault|heal` to the program. */
export function registerAdminCommands(program: Command): void {
  const exitCodes = '\nExit codes: 0 ok, 1 the serve answered with an error or could not be reached ' +
    '(stderr: "blockmirror: ERR_...: message"), 2 usage error.';

  program
    .command('status')
    .description('Show the controllers, links and exports of a running serve (through its admin endpoint).')
    .addOption(adminOption())
    .option('--controller <id>', 'show only this controller')
    .option('--json', 'print the status as JSON (the admin endpoint\'s GET /status)')
    .option('--watch', 'redraw every --interval seconds until Ctrl-C')
    .option('--interval <seconds>', 'seconds between redraws with --watch', parseIntervalSeconds, 2)
    .addHelpText('after', `
Links show peer, state, reason (with the error code behind it), round-trip time, bytes in and out,
reconnects, connection attempts and when the next one is due, authentication, and the faults in
force. On a terminal --watch redraws in place; otherwise it prints one block per interval.

Examples:
  $ blockmirror status
  $ blockmirror status --json | jq '.controllers[0].links'
  $ blockmirror status --watch --interval 1
${exitCodes}`)
    .action(adminAction(runStatus));

  program
    .command('events')
    .description('Print every state change of a running serve as one JSON object a line (NDJSON), as it happens.')
    .addOption(adminOption())
    .option('--controller <id>', 'only the events of this controller')
    .option('--now', 'print the current state (one "exists" event per subject) and exit')
    .addHelpText('after', `
The first events are the current state (kind "exists"), then every change (kind "change") until
Ctrl-C or until the serve stops. A reader that does not keep up is cut off by the serve (exit 1).

Examples:
  $ blockmirror events --now
  $ blockmirror events | jq -c 'select(.subject | startswith("link:"))'
${exitCodes}`)
    .action(adminAction(runEvents));

  const link = program
    .command('link')
    .description('Steer the replication links of a running serve: inject faults, heal.');

  link
    .command('fault')
    .description('Set faults on the link to PEER (they stay until changed or healed).')
    .argument('<peer>', 'the peer controller\'s id')
    .addOption(adminOption())
    .option('--controller <id>', 'the controller whose link it is (required when the serve runs several)')
    .option('--delay <ms>', 'hold each frame this many milliseconds', parseMilliseconds)
    .option('--jitter <ms>', 'add a uniform -ms..+ms to each delay (order is kept)', parseMilliseconds)
    .option('--bandwidth <rate>', 'cap the rate in bytes per second: 10MiB, 10MiB/s or an integer (0: no cap)', parseRate)
    .option('--drop', 'drop the current connection now (the link reconnects)')
    .option('--partition', 'discard every frame, as a cut cable would')
    .option('--no-partition', 'lift a partition (other faults stay)')
    .addOption(new Option('--direction <direction>', 'which frames: out (sent), in (received) or both').choices(['in', 'out', 'both']))
    .option('--json', 'print the serve\'s answer as JSON')
    .addHelpText('after', `
Prints the link's resulting state in one line.

Examples:
  $ blockmirror link fault b --delay 50 --jitter 10
  $ blockmirror link fault b --bandwidth 10MiB/s --direction out
  $ blockmirror link fault b --partition
  $ blockmirror link fault b --drop
${exitCodes}`)
    .action(adminAction(async (peer: string, options: FaultOptions, command: Command) => {
      const body: Record<string, unknown> = { peer };
      if (options.controller !== undefined) body.controller = options.controller;
      if (options.delay !== undefined) body.delayMs = options.delay;
      if (options.jitter !== undefined) body.jitterMs = options.jitter;
      if (options.bandwidth !== undefined) body.bandwidthBytesPerSecond = options.bandwidth;
      if (options.drop === true) body.drop = true;
      if (options.partition !== undefined) body.partition = options.partition;
      if (Object.keys(body).every((key) => key === 'peer' || key === 'controller')) {
        command.error('error: name at least one fault: --delay, --jitter, --bandwidth, --drop, --partition or --no-partition',
          { exitCode: 2, code: 'blockmirror.usage' });
      }
      if (options.direction !== undefined) body.direction = options.direction;
      printLinkAnswer(await clientFor(options).post('/links/fault', body), options, peer);
    }));

  link
    .command('heal')
    .description('Remove every fault from the link to PEER (a partitioned link reconnects).')
    .argument('<peer>', 'the peer controller\'s id')
    .addOption(adminOption())
    .option('--controller <id>', 'the controller whose link it is (required when the serve runs several)')
    .option('--json', 'print the serve\'s answer as JSON')
    .addHelpText('after', `
Examples:
  $ blockmirror link heal b
${exitCodes}`)
    .action(adminAction(async (peer: string, options: AdminOptions & { json?: boolean }) => {
      const body: Record<string, unknown> = { peer };
      if (options.controller !== undefined) body.controller = options.controller;
      printLinkAnswer(await clientFor(options).post('/links/heal', body), options, peer);
    }));

  const collect = (value: string, previous: string[] = []): string[] => [...previous, value];
  program
    .command('lockstep')
    .description('Wait until every write acknowledged before the call is safe-stored on every receiver (the lockstep barrier); or switch it on or off.')
    .argument('[switch]', 'enable or disable: the operator switch, instead of a call')
    .option('--pair <name>', 'a pair to protect (repeatable; default: every primary pair of the controller)', collect)
    .option('--volume <name>', 'a primary volume (its journal) to protect (repeatable)', collect)
    .option('--timeout <ms>', 'give up after this long (ERR_LOCKSTEP_TIMEOUT); default: wait', parseMilliseconds)
    .addOption(adminOption())
    .option('--controller <id>', 'the controller (found by itself when only one is the primary of the pairs named)')
    .option('--json', 'print the serve\'s answer as JSON')
    .addHelpText('after', `
Prints the result and RDF's number: done (31428), not-done (31426) or disabled (31429).
Exit codes: 0 done, 3 not-done, 4 disabled, 1 an error (ERR_LOCKSTEP_TIMEOUT included).

Examples:
  $ blockmirror lockstep --pair vol0 --timeout 5000
  $ blockmirror lockstep disable
${exitCodes}`)
    .action(adminAction(async (action: string | undefined, options: AdminOptions & { json?: boolean; pair?: string[]; volume?: string[]; timeout?: number }) => {
      // The answer comes when the barrier is passed: no idle limit below the call's own.
      const client = new AdminClient(parseAdminAddress(options.admin), { timeoutMs: options.timeout === undefined ? 2 ** 31 - 1 : Math.ceil(options.timeout) + 30_000 });
      const body: Record<string, unknown> = {};
      if (options.controller !== undefined) body.controller = options.controller;
      if (action !== undefined) {
        if (action !== 'enable' && action !== 'disable') {
          process.stderr.write(`blockmirror: lockstep: unknown switch ${JSON.stringify(action)} (enable or disable)\n`);
          process.exitCode = 2;
          return;
        }
        const answer = await client.post(`/lockstep/${action}`, body);
        process.stdout.write(options.json === true ? `${JSON.stringify(answer, null, 2)}\n` : `lockstep ${action}d\n`);
        return;
      }
      if (options.pair !== undefined) body.pairs = options.pair;
      if (options.volume !== undefined) body.volumes = options.volume;
      if (options.timeout !== undefined) body.timeoutMs = options.timeout;
      const answer = await client.post('/lockstep', body) as { result?: string; number?: number };
      process.stdout.write(options.json === true ? `${JSON.stringify(answer, null, 2)}\n` : `lockstep: ${String(answer.result)} (${String(answer.number)})\n`);
      if (answer.result !== 'done') process.exitCode = answer.result === 'disabled' ? 4 : 3;
    }));

  const pair = program
    .command('pair')
    .description('Steer the pairs of a running serve: create, suspend, resume, takeover, takeover-group, failback, failback-group, resolve, delete.');
  pair
    .command('create')
    .description('Declare the pair NAME on a running controller (both controllers declare it: run this on each side, with its own role).')
    .argument('<name>', 'the pair\'s name, [A-Za-z0-9._-]{1,64}, the same on both controllers')
    .requiredOption('--volume <name>', 'this controller\'s volume')
    .requiredOption('--peer <id>', 'the other controller')
    .requiredOption('--remote-volume <name>', 'the volume on the peer')
    .requiredOption('--role <role>', 'primary or secondary: this controller\'s role')
    .option('--mode <mode>', 'sync or async', 'async')
    .option('--fence <level>', 'sync only: never or data', 'never')
    .option('--no-auto-resume', 'wait for `pair resume` after a suspension')
    .option('--journal-hold <fraction>', 'how much of the journal (0 to 1) a link outage may hold for a resume; 0: always resync', parseFraction)
    .option('--journal-group <name>', 'share a journal with the other pairs of this group: one write order across their volumes')
    .addOption(adminOption())
    .option('--controller <id>', 'the controller to declare it on (required when the serve runs several)')
    .option('--json', 'print the serve\'s answer as JSON')
    .addHelpText('after', `
The declaration lasts until the serve stops; put the pair in the config file to keep it.

Examples:
  $ blockmirror pair create p1 --volume vol1 --peer site-b --remote-volume vol1 --role primary --mode sync --controller site-a
  $ blockmirror pair create p1 --volume vol1 --peer site-a --remote-volume vol1 --role secondary --mode sync --controller site-b
${exitCodes}`)
    .action(adminAction(async (name: string, options: AdminOptions & { json?: boolean; volume: string; peer: string; remoteVolume: string;
      role: string; mode: string; fence: string; autoResume: boolean; journalHold?: number; journalGroup?: string }) => {
      const body: Record<string, unknown> = { pair: name, volume: options.volume, peer: options.peer, remoteVolume: options.remoteVolume,
        role: options.role, mode: options.mode, fence: options.fence, autoResume: options.autoResume };
      if (options.journalHold !== undefined) body.journalHold = options.journalHold;
      if (options.journalGroup !== undefined) body.journalGroup = options.journalGroup;
      if (options.controller !== undefined) body.controller = options.controller;
      const answer = await clientFor(options).post('/pairs/create', body) as { pair?: Record<string, unknown> };
      if (options.json === true) {
        process.stdout.write(`${JSON.stringify(answer, null, 2)}\n`);
        return;
      }
      const status = answer.pair ?? {};
      process.stdout.write(`pair ${name}: ${String(status.state ?? '?')} (${String(status.reason ?? '?')}); role ${String(status.role ?? '?')}\n`);
    }));
  pair
    .command('takeover-group')
    .description('Take over every member of the journal group GROUP held here as secondary, all or none. '
      + 'With the primary reachable and every member mirroring: a drained switch of the whole group. With the primary '
      + 'unreachable: each image must be consistent and every member at the same point of the group\'s order '
      + '(--force skips the checks). The volumes taken over are of one instant of the group\'s write order.')
    .argument('<group>', 'the journal group\'s name (journalGroup of its pairs)')
    .addOption(adminOption())
    .option('--controller <id>', 'the controller holding the group\'s secondaries (found by itself when only one fits)')
    .option('--force', 'take over even from an inconsistent image, or with the primary reachable')
    .option('--json', 'print the serve\'s answer as JSON')
    .addHelpText('after', `
Prints one line per member of the group: its resulting state and role.

Examples:
  $ blockmirror pair takeover-group db
${exitCodes}`)
    .action(adminAction(async (group: string, options: AdminOptions & { json?: boolean; force?: boolean }) => {
      const body: Record<string, unknown> = { journalGroup: group };
      if (options.controller !== undefined) body.controller = options.controller;
      if (options.force === true) body.force = true;
      const answer = await clientFor(options).post('/pairs/takeover-group', body) as { pairs?: Record<string, unknown>[] };
      if (options.json === true) {
        process.stdout.write(`${JSON.stringify(answer, null, 2)}\n`);
        return;
      }
      printGroupRoles(answer.pairs);
    }));
  pair
    .command('failback-group')
    .description('Swap the roles of every member of the journal group GROUP back to the declared ones after a takeover: '
      + 'one drained switch of the whole group (host writes held, the secondary catches up and flushes), all or none. '
      + 'Run it on either side; every member must be mirroring.')
    .argument('<group>', 'the journal group\'s name (journalGroup of its pairs)')
    .addOption(adminOption())
    .option('--controller <id>', 'the controller holding the group (found by itself when only one fits)')
    .option('--json', 'print the serve\'s answer as JSON')
    .addHelpText('after', `
Prints one line per member of the group: its resulting state and role.

Examples:
  $ blockmirror pair failback-group db
${exitCodes}`)
    .action(adminAction(async (group: string, options: AdminOptions & { json?: boolean }) => {
      const body: Record<string, unknown> = { journalGroup: group };
      if (options.controller !== undefined) body.controller = options.controller;
      const answer = await clientFor(options).post('/pairs/failback-group', body) as { pairs?: Record<string, unknown>[] };
      if (options.json === true) {
        process.stdout.write(`${JSON.stringify(answer, null, 2)}\n`);
        return;
      }
      printGroupRoles(answer.pairs);
    }));
  for (const [verb, description] of [
    ['suspend', 'Suspend the pair NAME (its primary stops shipping; writes go on and are recorded in its OOS bitmap).'],
    ['resume', 'Resume the suspended pair NAME: resync its dirty tracks, then mirror.'],
    ['takeover', 'Make the secondary of NAME its primary: at once when the primary is unreachable (a new generation), '
      + 'by a drained switch when it is reachable and mirroring.'],
    ['failback', 'Swap the roles of NAME back to the declared ones after a takeover (drains, then switches).'],
    ['resolve', 'End the split brain of NAME: keep the data of the side declared --keep; the other side is resynced from it.'],
    ['delete', 'Remove the pair NAME from a controller: its bitmaps and metadata go, the volume keeps its data and is a plain volume again.'],
  ] as const) {
    const command = pair
      .command(verb)
      .description(description)
      .argument('<name>', 'the pair\'s name')
      .addOption(adminOption())
      .option('--controller <id>', 'the controller whose side of the pair to act on (found by itself when only one fits)')
      .option('--json', 'print the serve\'s answer as JSON');
    if (verb === 'takeover') command.option('--force', 'take over even from an inconsistent image, or with the primary reachable but not mirroring');
    if (verb === 'resolve') command.requiredOption('--keep <side>', 'primary or secondary: the side, by its declared role, whose data is kept');
    command
      .addHelpText('after', `
Prints the pair's resulting state in one line.

Examples:
  $ blockmirror pair ${verb} vol0
${exitCodes}`)
      .action(adminAction(async (name: string, options: AdminOptions & { json?: boolean; force?: boolean; keep?: string }) => {
        const body: Record<string, unknown> = { pair: name };
        if (options.controller !== undefined) body.controller = options.controller;
        if (options.force === true) body.force = true;
        if (options.keep !== undefined) body.keep = options.keep;
        const answer = await clientFor(options).post(`/pairs/${verb}`, body) as { pair?: Record<string, unknown> };
        if (options.json === true) {
          process.stdout.write(`${JSON.stringify(answer, null, 2)}\n`);
          return;
        }
        const status = answer.pair ?? {};
        process.stdout.write(`pair ${name}: ${String(status.state ?? '?')} (${String(status.reason ?? '?')}); role ${String(status.role ?? '?')}\n`);
      }));
  }
}
