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
//
// Layout: the option parsers, the --admin option and adminAction shared by every admin command
// are in admin-options.ts; the status formatting in admin-format.ts; `lockstep` and `pair ...`
// in pair-command.ts. Their exported names are re-exported here, so importers keep one path.

import { type Command, Option } from 'commander';

import { AdminResponseError } from '../admin/client';
import { BlockmirrorError } from '../errors';
import { formatLinkLine, formatStatus, record, records, text } from './admin-format';
import {
  ADMIN_EXIT_CODES, type AdminOptions, adminAction, adminOption, clientFor, parseIntervalSeconds, parseMilliseconds, parseRate,
} from './admin-options';
import { registerPairCommands } from './pair-command';

export { type FormatStatusOptions, formatFaults, formatLinkLine, formatStatus } from './admin-format';
export {
  type AdminOptions, adminAction, adminOption, clientFor, parseAdminAddress, parseMilliseconds, parseRate,
} from './admin-options';

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

/** Adds `status`, `events` and `link fault|heal` to the program, then `lockstep` and `pair ...` (pair-command.ts). */
export function registerAdminCommands(program: Command): void {
  const exitCodes = ADMIN_EXIT_CODES;

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

  registerPairCommands(program);
}
