// Notes on the design
// -------------------
// `blockmirror lockstep` and `blockmirror pair create|takeover-group|failback-group|suspend|
// resume|takeover|failback|resolve|delete` against a running serve, through its admin endpoint
// (POST /lockstep, /lockstep/enable|disable, /pairs/<verb>; src/admin/server.ts), with the same
// --admin / --controller options as `status`. Each is a thin shell around AdminClient: parse and
// check the options (a mistake is a usage error, exit 2, before anything is sent), make the
// call, print the result in one line per pair (or the serve's answer with --json).
//
// Exit codes: as admin-commands.ts (0 ok, 1 an error from or reaching the serve, 2 usage), and
// for `lockstep` RDF's results: 3 not-done, 4 disabled. Registered by registerAdminCommands
// (admin-commands.ts), after `link`, so `blockmirror --help` lists the commands in one order.

import type { Command } from 'commander';

import { AdminClient } from '../admin/client';
import {
  ADMIN_EXIT_CODES, type AdminOptions, adminAction, adminOption, clientFor, parseAdminAddress, parseFraction, parseMilliseconds,
} from './admin-options';

/** One line per member of a journal group after a group verb: its state and role. */
function printGroupRoles(pairs: Record<string, unknown>[] | undefined): void {
  for (const status of pairs ?? []) {
    process.stdout.write(`pair ${String(status.name ?? '?')}: ${String(status.state ?? '?')} (${String(status.reason ?? '?')}); role ${String(status.role ?? '?')}\n`);
  }
}

/** Adds `lockstep` and `pair ...` to the program. */
export function registerPairCommands(program: Command): void {
  const exitCodes = ADMIN_EXIT_CODES;

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
