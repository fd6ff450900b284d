// Notes on the design
// -------------------
// `blockmirror group create|status|start|stop|delete|recover` against running serves, through
// their admin endpoints (POST /groups/<verb>, src/admin/group-routes.ts), with the same --admin
// / --controller options as `status`.
//
//   create NAME --master C --member C:VOLUME[:PAIR]...   declares the group on the controller
//          (run it on every controller of the table: the master's and each slave's)
//   status [NAME]        the last consistency time, its age (RPO), the counts, the last failure
//   recover NAME         on the secondaries: the newest cycle every member holds is exported
//          (<export>@cg.NAME.<cycle>), or with --restore the pairs are taken over and the copies
//          restored onto the volumes. With --also-admin (repeatable: one per other secondary
//          serve) the cycle is the newest held on every one of them, and each recovers it.

import type { Command } from 'commander';

import { AdminClient } from '../admin/client';
import { newestCommonCycle } from '../cgroup/recover';
import { BlockmirrorError } from '../errors';
import { type AdminOptions, adminAction, adminOption, clientFor, parseAdminAddress } from './admin-commands';
import { ADMIN_EXIT_CODES } from './admin-options';


interface GroupOptions extends AdminOptions {
  json?: boolean;
}

async function post(client: AdminClient, options: GroupOptions, verb: string, body: Record<string, unknown>, print = true): Promise<unknown> {
  if (options.controller !== undefined) body.controller = options.controller;
  const answer = await client.post(`/groups/${verb}`, body) as { result?: unknown };
  if (print && options.json === true) process.stdout.write(`${JSON.stringify(answer, null, 2)}\n`);
  return answer.result;
}

const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

/** The lines of `group status` for one group's status. */
export function formatGroupStatus(status: Record<string, any>): string {
  const lines: string[] = [status.master === undefined ? `group ${String(status.name)}  (not declared here: copies held as a secondary)` : `group ${String(status.name)}  master ${String(status.master)}`];
  const cycles = status.cycles as Record<string, any> | undefined;
  if (cycles !== undefined) {
    const rpo = cycles.rpoSeconds === null || cycles.rpoSeconds === undefined ? 'never formed' : `${Number(cycles.rpoSeconds).toFixed(3)} s`;
    lines.push(`  cycles ${cycles.running === true ? 'running' : 'stopped'} (${String(cycles.phase)})  formed ${cycles.counts?.formed ?? 0} of ${cycles.counts?.cycles ?? 0}  consistency time ${String(cycles.consistencyTime ?? '-')}  RPO ${rpo}`);
    if (cycles.lastFailure !== null && cycles.lastFailure !== undefined) {
      lines.push(`  last failure: cycle ${String(cycles.lastFailure.cycle)} ${String(cycles.lastFailure.reason)}: ${String(cycles.lastFailure.detail)} at ${String(cycles.lastFailure.time)}`);
    }
    const hold = cycles.coordination as Record<string, any> | undefined;
    if (hold !== undefined && hold.count > 0) lines.push(`  coordination p50 ${(Number(hold.p50Seconds) * 1000).toFixed(3)} ms  p99 ${(Number(hold.p99Seconds) * 1000).toFixed(3)} ms (bucket bounds)`);
  }
  const slave = status.slave as Record<string, any> | undefined;
  if (slave !== undefined) {
    lines.push(`  members here: ${(slave.members as Record<string, unknown>[]).map((member) => `${String(member.id)}=${String(member.volume)}`).join(', ')}  held writes ${String(slave.heldWrites)}  holds timed out ${String(slave.holdsTimedOut)}`);
  }
  for (const copy of (status.copies as Record<string, any>[] | undefined) ?? []) {
    const pinned = copy.pinned === null || copy.pinned === undefined ? '' : `  (pinned by recover: cg.${String(status.name)}.${String(copy.pinned)})`;
    lines.push(`  copies of ${String(copy.volume)} here: ${(copy.cycles as number[]).map((cycle) => `cg.${String(status.name)}.${cycle}`).join(', ')}${pinned}`);
  }
  return `${lines.join('\n')}\n`;
}

export function registerGroupCommand(program: Command): void {
  const group = program
    .command('group')
    .description('Consistency groups across controllers: create, status, start, stop, delete, recover (docs/cgroups.md).');
  const common = (command: Command): Command => command
    .addOption(adminOption())
    .option('--controller <id>', 'the controller (required when the serve runs several)')
    .option('--json', 'print the serve\'s answer as JSON');

  common(group
    .command('create')
    .description('Declare a consistency group on the controller (run it on the master\'s and on every slave\'s serve).')
    .argument('<name>', 'the group\'s name, [A-Za-z0-9_-][A-Za-z0-9._-]{0,23}')
    .requiredOption('--master <controller>', 'the master controller (its rows are role master)')
    .requiredOption('--member <controller:volume[:pair]>', 'a primary volume of the group (repeat for each)', collect)
    .option('--max-coordination-ms <ms>', 'write hold limit (default 50)')
    .option('--max-drain-ms <ms>', 'drain limit (default 30000)')
    .option('--cycle-interval-ms <ms>', 'pause between cycles (default 0)')
    .option('--stopped', 'declare it without starting the cycles'))
    .addHelpText('after', `\nExample:\n  $ blockmirror group create db --master p0 --member p0:vol0 --member p1:vol0 --admin /run/p0.sock\n${ADMIN_EXIT_CODES}`)
    .action(adminAction(async (name: string, options: GroupOptions & { master: string; member: string[]; maxCoordinationMs?: string; maxDrainMs?: string; cycleIntervalMs?: string; stopped?: boolean }) => {
      const relationships = options.member.map((member, index) => {
        const [controller, volume, pair] = member.split(':');
        if (controller === undefined || controller === '' || volume === undefined || volume === '') {
          throw new BlockmirrorError('ERR_ADMIN_BAD_REQUEST', `--member ${member}: expected CONTROLLER:VOLUME[:PAIR]`);
        }
        return { id: `r${index}`, role: controller === options.master ? 'master' : 'slave', controller, volume, ...(pair === undefined ? {} : { pair }) };
      });
      const spec: Record<string, unknown> = { name, relationships };
      const integer = (text: string | undefined, key: string): void => {
        if (text === undefined) return;
        const value = Number(text);
        if (!Number.isSafeInteger(value)) throw new BlockmirrorError('ERR_ADMIN_BAD_REQUEST', `--${key}: not an integer: ${text}`);
        spec[key.replace(/-([a-z])/g, (_, letter: string) => letter.toUpperCase())] = value;
      };
      integer(options.maxCoordinationMs, 'max-coordination-ms');
      integer(options.maxDrainMs, 'max-drain-ms');
      integer(options.cycleIntervalMs, 'cycle-interval-ms');
      if (options.stopped === true) spec.autoStart = false;
      const result = await post(clientFor(options), options, 'create', { group: spec }) as Record<string, unknown>;
      if (options.json !== true) process.stdout.write(`group ${name} created on ${options.controller ?? 'the controller'} (${relationships.length} relationships, master ${options.master})\n${formatGroupStatus(result)}`);
    }));

  common(group
    .command('status')
    .description('The group\'s last consistency time and its age (RPO), the counts and the last failure; every group without NAME.')
    .argument('[name]', 'the group'))
    .addHelpText('after', ADMIN_EXIT_CODES)
    .action(adminAction(async (name: string | undefined, options: GroupOptions) => {
      const result = await post(clientFor(options), options, 'status', name === undefined ? {} : { name }) as Record<string, any>;
      if (options.json === true) return;
      if (name !== undefined) {
        process.stdout.write(formatGroupStatus(result));
        return;
      }
      const groups = (result.groups as Record<string, any>[]) ?? [];
      if (groups.length === 0 && (result.copies as unknown[] ?? []).length === 0) process.stdout.write('no consistency groups\n');
      for (const entry of groups) process.stdout.write(formatGroupStatus({ ...entry, copies: (result.copies as Record<string, any>[]).filter((copy) => copy.group === entry.name) }));
      const declared = new Set(groups.map((entry) => entry.name));
      for (const copy of (result.copies as Record<string, any>[]) ?? []) {
        if (!declared.has(copy.group)) process.stdout.write(`copies of group ${String(copy.group)} on ${String(copy.volume)}: ${(copy.cycles as number[]).join(', ')}\n`);
      }
    }));

  for (const [verb, text] of [['start', 'Start the cycles (on the master).'], ['stop', 'Stop the cycles (on the master); the copies stay.'], ['delete', 'Take the group out of the controller; the copies stay.']] as const) {
    common(group.command(verb).description(text).argument('<name>', 'the group'))
      .addHelpText('after', ADMIN_EXIT_CODES)
      .action(adminAction(async (name: string, options: GroupOptions) => {
        await post(clientFor(options), options, verb, { name });
        if (options.json !== true) process.stdout.write(`group ${name} ${verb === 'delete' ? 'deleted' : verb === 'start' ? 'started' : 'stopped'}\n`);
      }));
  }

  common(group
    .command('recover')
    .description('On the secondaries: export the newest consistent copy every member holds, or take the pairs over and restore it (--restore).')
    .argument('<name>', 'the group')
    .option('--cycle <n>', 'the cycle to recover (default: the newest every member holds)')
    .option('--restore', 'take the pairs over and make the copies the volumes\' content')
    .option('--also-admin <path>', 'another secondary serve of the group (repeat): the cycle must be held on all', collect))
    .addHelpText('after', `\nExample:\n  $ blockmirror group recover db --admin /run/s0.sock --also-admin /run/s1.sock --restore\n${ADMIN_EXIT_CODES}`)
    .action(adminAction(async (name: string, options: GroupOptions & { cycle?: string; restore?: boolean; alsoAdmin?: string[] }) => {
      const clients = [clientFor(options), ...(options.alsoAdmin ?? []).map((path) => new AdminClient(parseAdminAddress(path)))];
      let cycle = options.cycle === undefined ? undefined : Number(options.cycle);
      if (cycle !== undefined && (!Number.isSafeInteger(cycle) || cycle < 1)) throw new BlockmirrorError('ERR_ADMIN_BAD_REQUEST', `--cycle: not a cycle number: ${options.cycle}`);
      // Every controller of every serve named that holds copies of the group (or only
      // --controller on each), and what each holds.
      const targets: { client: AdminClient; controller: string; holdings: number[][] }[] = [];
      for (const client of clients) {
        const status = await client.get('/status') as { controllers?: { id: string; consistencyGroups?: { copies?: { group: string; cycles: number[] }[] } | null }[] };
        for (const controller of status.controllers ?? []) {
          if (options.controller !== undefined && controller.id !== options.controller) continue;
          const copies = (controller.consistencyGroups?.copies ?? []).filter((copy) => copy.group === name);
          if (copies.length > 0) targets.push({ client, controller: controller.id, holdings: copies.map((copy) => copy.cycles) });
        }
      }
      if (targets.length === 0) throw new BlockmirrorError('ERR_CGROUP_NO_COPY', `group ${name}: no controller of these serves holds a copy of it`);
      if (cycle === undefined) {
        const common = newestCommonCycle(targets.flatMap((target) => target.holdings.map((holdings) => ({ holdings }))));
        if (common === null) throw new BlockmirrorError('ERR_CGROUP_NO_COPY', `group ${name}: no cycle is held for every member on these serves`);
        cycle = common;
      }
      for (const { client, controller } of targets) {
        const body = { name, cycle, mode: options.restore === true ? 'restore' : 'export', controller };
        const answer = await client.post('/groups/recover', body) as { result?: unknown };
        if (options.json === true) process.stdout.write(`${JSON.stringify(answer, null, 2)}\n`);
        const result = answer.result as {
          cycle: number; mode: string; volumes: { volume: string; snapshot: string; restoredBytes?: number }[];
        };
        if (options.json !== true) {
          for (const volume of result.volumes) {
            process.stdout.write(result.mode === 'restore'
              ? `${controller} volume ${volume.volume}: taken over and restored from ${volume.snapshot} (${volume.restoredBytes ?? 0} bytes written)\n`
              : `${controller} volume ${volume.volume}: consistent copy ${volume.snapshot} (cycle ${result.cycle}), exported as <export>@${volume.snapshot}\n`);
          }
        }
      }
    }));
}
