// Notes on the design
// -------------------
// `blockmirror snapshot create|list|delete|restore|clone VOLUME [NAME]` against a running serve,
// through its admin endpoint (POST /snapshots/<verb>, src/admin/snapshot-routes.ts), with the
// same --admin / --controller options as `status`. A snapshot of an exported volume is exported
// read-only as <export>@<NAME> at once; a clone is exported read-write under its name. Each verb
// prints one line (or the serve's answer with --json); `list` prints a table.

import type { Command } from 'commander';

import { type AdminOptions, adminAction, adminOption, clientFor } from './admin-commands';

const EXIT_CODES = '\nExit codes: 0 ok, 1 the serve answered with an error or could not be reached ' +
  '(stderr: "blockmirror: ERR_...: message"), 2 usage error.';

interface SnapshotOptions extends AdminOptions {
  json?: boolean;
  as?: string;
}

function bytesText(value: number): string {
  if (value >= 1024 ** 3) return `${(value / 1024 ** 3).toFixed(1)} GiB`;
  if (value >= 1024 ** 2) return `${(value / 1024 ** 2).toFixed(1)} MiB`;
  if (value >= 1024) return `${(value / 1024).toFixed(1)} KiB`;
  return `${value} B`;
}

async function post(options: SnapshotOptions, verb: string, body: Record<string, unknown>): Promise<unknown> {
  if (options.controller !== undefined) body.controller = options.controller;
  const answer = await clientFor(options).post(`/snapshots/${verb}`, body) as { result?: unknown };
  if (options.json === true) process.stdout.write(`${JSON.stringify(answer, null, 2)}\n`);
  return answer.result;
}

/** Lines of `snapshot list`: one row per snapshot. */
export function formatSnapshotList(result: unknown): string {
  const rows: string[][] = [['VOLUME', 'SNAPSHOT', 'STATE', 'CREATED', 'PRESERVED CHUNKS']];
  for (const entry of Array.isArray(result) ? result as { volume?: string; snapshots?: Record<string, unknown>[] }[] : []) {
    for (const snapshot of entry.snapshots ?? []) {
      rows.push([
        String(entry.volume ?? '?'),
        String(snapshot.name ?? '?'),
        snapshot.state === 'valid' ? 'valid' : `invalid (${String(snapshot.reason ?? '?')})`,
        typeof snapshot.createdMs === 'number' ? new Date(snapshot.createdMs).toISOString() : '?',
        String(snapshot.preservedChunkCount ?? '?'),
      ]);
    }
  }
  if (rows.length === 1) return 'no snapshots\n';
  const widths = rows[0]?.map((_, column) => Math.max(...rows.map((row) => (row[column] ?? '').length))) ?? [];
  return `${rows.map((row) => row.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join('  ').trimEnd()).join('\n')}\n`;
}

export function registerSnapshotCommand(program: Command): void {
  const snapshot = program
    .command('snapshot')
    .description('Point-in-time copies of the volumes of a running serve: create, list, delete, restore, clone (docs/snapshots.md).');
  const common = (command: Command): Command => command
    .addOption(adminOption())
    .option('--controller <id>', 'the controller of the volume (required when the serve runs several)')
    .option('--json', 'print the serve\'s answer as JSON');

  common(snapshot
    .command('create')
    .description('Take a snapshot NAME of VOLUME now (instant, copy-on-write); an exported volume\'s snapshot is exported read-only as <export>@NAME.')
    .argument('<volume>', 'the volume')
    .argument('<name>', 'the snapshot\'s name, [A-Za-z0-9._:-]{1,47}'))
    .addHelpText('after', `\nExample:\n  $ blockmirror snapshot create vol0 nightly   # then: nbdinfo nbd://127.0.0.1/vol0@nightly\n${EXIT_CODES}`)
    .action(adminAction(async (volume: string, name: string, options: SnapshotOptions) => {
      const result = await post(options, 'create', { volume, name }) as { name?: string; id?: string };
      if (options.json !== true) process.stdout.write(`snapshot ${volume}@${String(result?.name ?? name)} created (id ${String(result?.id ?? '?')})\n`);
    }));

  common(snapshot
    .command('list')
    .description('List the snapshots of VOLUME, or of every volume.')
    .argument('[volume]', 'the volume (default: every volume)'))
    .addHelpText('after', EXIT_CODES)
    .action(adminAction(async (volume: string | undefined, options: SnapshotOptions) => {
      const result = await post(options, 'list', volume === undefined ? {} : { volume });
      if (options.json !== true) process.stdout.write(formatSnapshotList(result));
    }));

  common(snapshot
    .command('delete')
    .description('Delete the snapshot NAME of VOLUME: its memory goes back, its export goes away.')
    .argument('<volume>', 'the volume')
    .argument('<name>', 'the snapshot'))
    .addHelpText('after', EXIT_CODES)
    .action(adminAction(async (volume: string, name: string, options: SnapshotOptions) => {
      await post(options, 'delete', { volume, name });
      if (options.json !== true) process.stdout.write(`snapshot ${volume}@${name} deleted\n`);
    }));

  common(snapshot
    .command('restore')
    .description('Make the content of VOLUME the snapshot NAME\'s, through the write path (a pair\'s secondary follows); refused on a pair\'s secondary.')
    .argument('<volume>', 'the volume')
    .argument('<name>', 'the snapshot'))
    .addHelpText('after', EXIT_CODES)
    .action(adminAction(async (volume: string, name: string, options: SnapshotOptions) => {
      const result = await post(options, 'restore', { volume, name }) as { restoredBytes?: number };
      if (options.json !== true) process.stdout.write(`volume ${volume} restored from ${name} (${bytesText(result?.restoredBytes ?? 0)} written)\n`);
    }));

  common(snapshot
    .command('clone')
    .description('Copy the snapshot NAME of VOLUME into a new writable volume (--as), exported read-write under that name.')
    .argument('<volume>', 'the volume')
    .argument('<name>', 'the snapshot')
    .requiredOption('--as <clone>', 'the new volume\'s name'))
    .addHelpText('after', `\nThe clone lasts as long as the serve (it is not in the config).\n${EXIT_CODES}`)
    .action(adminAction(async (volume: string, name: string, options: SnapshotOptions) => {
      const result = await post(options, 'clone', { volume, name, clone: options.as }) as { volume?: string; capacityBytes?: number };
      if (options.json !== true) process.stdout.write(`snapshot ${volume}@${name} cloned as volume ${String(result?.volume ?? options.as)} (${bytesText(result?.capacityBytes ?? 0)})\n`);
    }));
}
