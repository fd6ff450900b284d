// Notes on the design
// -------------------
// `blockmirror disk fault|fail|heal|list`: fault injection on the emulated disks of a running
// serve, through its admin endpoint (POST /disks/<verb>, src/admin/disk-routes.ts). Thin: the
// options are parsed and range-checked here (a usage error exits 2 before anything is sent), the
// serve does the rest. --range OFFSET:LENGTH takes sizes ("1MiB:4KiB"); --errno takes a number or
// a name (EIO, ENOSPC, ...). `list` prints the seed's tables from the serve's status with
// formatDiskList, a pure function of that status (test/unit/92.disk-list-format.test.ts); a work
// table with no rows is left out, and --json prints the serve's answer as it came.

import * as os from 'node:os';

import { type Command, InvalidArgumentError } from 'commander';

import { type AdminOptions, adminAction, adminOption, clientFor } from './admin-commands';
import { ADMIN_EXIT_CODES } from './admin-options';
import { parseSize } from './config-schema';
import { formatBytes } from './status';


interface DiskOptions extends AdminOptions {
  json?: boolean;
  read?: boolean;
  write?: boolean;
  range?: { byteOffset: number; byteLength: number };
  rate?: number;
  after?: number;
  errno?: number;
  latency?: number;
}

function parseRange(value: string): { byteOffset: number; byteLength: number } {
  const parts = value.split(':');
  if (parts.length !== 2) throw new InvalidArgumentError('must be OFFSET:LENGTH (sizes, e.g. 1MiB:4KiB; LENGTH 0: to the end)');
  try {
    return { byteOffset: parseSize(/^\d+$/.test(parts[0] as string) ? Number(parts[0]) : parts[0]), byteLength: parseSize(/^\d+$/.test(parts[1] as string) ? Number(parts[1]) : parts[1]) };
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}

function parseRate(value: string): number {
  const rate = Number(value);
  if (value.trim() === '' || !Number.isFinite(rate) || rate < 0 || rate > 1) throw new InvalidArgumentError('must be a probability from 0 to 1');
  return rate;
}

function parseCount(value: string): number {
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value))) throw new InvalidArgumentError('must be a non-negative integer');
  return Number(value);
}

function parseErrno(value: string): number {
  const named = (os.constants.errno as Record<string, number>)[value.toUpperCase()];
  const number = /^\d+$/.test(value) ? Number(value) : named;
  if (number === undefined || number < 0 || number > 4095) throw new InvalidArgumentError('must be an errno number (0..4095) or name (EIO, ENOSPC, ...)');
  return number;
}

function parseLatency(value: string): number {
  const latency = Number(value);
  if (value.trim() === '' || !Number.isFinite(latency) || latency < 0 || latency > 10_000) throw new InvalidArgumentError('must be milliseconds from 0 to 10000');
  return latency;
}

async function post(options: DiskOptions, verb: string, body: Record<string, unknown>): Promise<unknown> {
  if (options.controller !== undefined) body.controller = options.controller;
  const answer = await clientFor(options).post(`/disks/${verb}`, body) as { result?: unknown };
  if (options.json === true) process.stdout.write(`${JSON.stringify(answer, null, 2)}\n`);
  return answer.result;
}

function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, column) => Math.max(...rows.map((row) => (row[column] ?? '').length))) ?? [];
  return `${rows.map((row) => row.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join('  ').trimEnd()).join('\n')}\n`;
}

/** The parts of the admin status's `raid` (src/controller/disks.ts `status()`) that `disk list` prints. */
interface DiskListStatus {
  groups?: {
    group: string; volumes: string[]; disks: string[]; level: string; condition: string;
    rebuild: { cursorBytes: number; memberBytes: number; member: number } | null;
    sparing?: { member: number; disk: string; spare: string; doneBytes: number; totalBytes: number } | null;
    diversion?: { variant: string; workVolume?: string; workDisk?: string; secondaryGroup?: string; copyingBack: boolean; lastError: string | null } | null;
    lastError?: string | null;
  }[];
  disks?: { disk: string; capacityBytes: number; status: string; errorCount: number; errorThreshold: number; group: string | null; backupStatus?: string | null; workDisk?: string | null; faults: unknown[] }[];
  workVolumes?: { workVolume: string; capacityBytes: number; state: string; primary: string[] | null; terminalAddress: number | null; bitmap: string }[];
  workDisks?: { workDisk: string; disk: string; capacityBytes: number; status: string; mainDisks: string[] | null; terminalAddress: number | null }[];
  workDiskMap?: { mainDisk: string | null; mainAddress: number; workDisk: string; workAddress: number }[];
  backupPairs?: { primary: string; secondary: string; secondaryGroup: string; status: string; bitmap: string }[];
  addressMap?: { volume: string; group: string; groupByteOffset: number; byteLength: number; firstDisk: string; firstDiskByteOffset: number }[];
}

// The seed prints a differential bitmap's first slots and an ellipsis; the status carries up to 64.
const BITMAP_SLOTS_SHOWN = 16;

const nullable = (value: number | string | null | undefined): string => (value === null || value === undefined ? 'NULL' : String(value));
const names = (list: readonly string[] | null): string => (list === null || list.length === 0 ? 'NULL' : list.join(', '));

// The lines under the groups table: a group's diversion (variant, where to, copy-back) and the
// errors it keeps. Only groups with something to say get a line.
function groupNotes(groups: NonNullable<DiskListStatus['groups']>): string {
  const lines: string[] = [];
  for (const group of groups) {
    const diversion = group.diversion ?? null;
    if (diversion !== null) {
      const target = diversion.variant === 'work-disk' ? diversion.workDisk : diversion.variant === 'backup-volume' ? diversion.secondaryGroup : diversion.workVolume;
      lines.push(`group ${group.group}: diversion: ${diversion.variant} ${target ?? '?'}${diversion.copyingBack ? ', copying back' : ''}`);
      if (diversion.lastError !== null) lines.push(`group ${group.group}: diversion error: ${diversion.lastError}`);
    }
    if (group.lastError !== null && group.lastError !== undefined) lines.push(`group ${group.group}: last error: ${group.lastError}`);
  }
  return lines.length === 0 ? '' : `${lines.join('\n')}\n`;
}

/**
 * Lines of `disk list` (seed 004's tables): the groups table (T1) with a line per diversion or
 * error under it, the disk status table with the backup status (T5), the work volumes (T4), the
 * work disks (T6), the work disk address map (T7) and the address map. The three work tables are
 * printed only when they have rows.
 */
export function formatDiskList(result: unknown): string {
  const raid = (result ?? {}) as DiskListStatus;
  const groups = [['GROUP', 'VOLUMES', 'DISKS', 'LEVEL', 'CONDITION', 'REBUILD']];
  for (const group of raid.groups ?? []) {
    const sparing = group.sparing ?? null;
    const rebuild = group.rebuild !== null ? `member ${group.rebuild.member} ${Math.floor((100 * group.rebuild.cursorBytes) / group.rebuild.memberBytes)}%`
      : sparing !== null ? `sparing ${sparing.disk} -> ${sparing.spare} ${Math.floor((100 * sparing.doneBytes) / Math.max(1, sparing.totalBytes))}%` : '';
    groups.push([group.group, group.volumes.join(', ') || 'NULL', group.disks.join(', '), group.level, group.condition, rebuild]);
  }
  const disks = [['DISK', 'CAPACITY', 'STATUS', 'ERRORS', 'GROUP', 'BACKUP', 'FAULTS']];
  for (const disk of raid.disks ?? []) {
    disks.push([disk.disk, String(disk.capacityBytes), disk.status, `${disk.errorCount}${disk.errorThreshold > 0 ? `/${disk.errorThreshold}` : ''}`,
      disk.group ?? (disk.workDisk !== undefined && disk.workDisk !== null ? `work disk ${disk.workDisk}` : '-'),
      disk.backupStatus ?? '-', String(disk.faults.length)]);
  }
  const sections = [`${table(groups)}${groupNotes(raid.groups ?? [])}`, table(disks)];
  if ((raid.backupPairs ?? []).length > 0) {
    const pairs = [['PRIMARY VOLUME', 'SECONDARY VOLUME', 'PAIRING STATUS', 'DIFFERENTIAL BITMAP']];
    for (const pair of raid.backupPairs ?? []) {
      const bitmap = pair.bitmap.length > BITMAP_SLOTS_SHOWN ? `${pair.bitmap.slice(0, BITMAP_SLOTS_SHOWN)}...` : pair.bitmap;
      pairs.push([pair.primary, `${pair.secondary} (${pair.secondaryGroup})`, pair.status.toUpperCase(), bitmap || '-']);
    }
    sections.push(table(pairs));
  }
  if ((raid.workVolumes ?? []).length > 0) {
    const workVolumes = [['WORK VOLUME', 'CAPACITY', 'STATE', 'PRIMARY', 'TERMINAL ADDRESS', 'BITMAP']];
    for (const work of raid.workVolumes ?? []) {
      const bitmap = work.bitmap.length > BITMAP_SLOTS_SHOWN ? `${work.bitmap.slice(0, BITMAP_SLOTS_SHOWN)}...` : work.bitmap;
      workVolumes.push([work.workVolume, formatBytes(work.capacityBytes), work.state, names(work.primary), nullable(work.terminalAddress), bitmap || '-']);
    }
    sections.push(table(workVolumes));
  }
  if ((raid.workDisks ?? []).length > 0) {
    const workDisks = [['WORK DISK', 'CAPACITY', 'STATUS', 'MAIN DISKS', 'TERMINAL ADDRESS']];
    for (const work of raid.workDisks ?? []) {
      workDisks.push([`${work.workDisk} (${work.disk})`, formatBytes(work.capacityBytes), work.status, names(work.mainDisks), nullable(work.terminalAddress)]);
    }
    sections.push(table(workDisks));
  }
  if ((raid.workDiskMap ?? []).length > 0) {
    const workDiskMap = [['MAIN DISK', 'MAIN ADDRESS', 'WORK DISK', 'WORK ADDRESS']];
    for (const row of raid.workDiskMap ?? []) workDiskMap.push([nullable(row.mainDisk), String(row.mainAddress), row.workDisk, String(row.workAddress)]);
    sections.push(table(workDiskMap));
  }
  const map = [['VOLUME', 'GROUP', 'GROUP OFFSET', 'LENGTH', 'FIRST DISK', 'DISK OFFSET']];
  for (const entry of raid.addressMap ?? []) {
    map.push([entry.volume, entry.group, String(entry.groupByteOffset), String(entry.byteLength), entry.firstDisk, String(entry.firstDiskByteOffset)]);
  }
  sections.push(table(map));
  return sections.join('\n');
}

export function registerDiskCommand(program: Command): void {
  const disk = program
    .command('disk')
    .description('The emulated disks of a running serve: list, inject faults, fail, heal (docs/raid.md).');
  const common = (command: Command): Command => command
    .addOption(adminOption())
    .option('--controller <id>', 'the controller of the disk (required when the serve runs several)')
    .option('--json', 'print the serve\'s answer as JSON');

  common(disk.command('list').description('The groups, disk status, work volume, work disk and address map tables.'))
    .addHelpText('after', ADMIN_EXIT_CODES)
    .action(adminAction(async (options: DiskOptions) => {
      const result = await post(options, 'list', {});
      if (options.json !== true) process.stdout.write(formatDiskList(result));
    }));

  common(disk
    .command('fault')
    .description('Add a fault rule to DISK (at most 8 per disk): matching I/Os fail with an errno, at a rate, after N, and/or are delayed.')
    .argument('<disk>', 'the disk')
    .option('--read', 'reads only')
    .option('--write', 'writes only')
    .option('--range <offset:length>', 'the byte range (sizes; length 0: to the end)', parseRange)
    .option('--rate <p>', 'probability that a matching I/O fails, 0..1 (default 1)', parseRate)
    .option('--after <n>', 'the first N matching I/Os pass', parseCount)
    .option('--errno <e>', 'errno of the failure, a number or a name; 0: latency only (default EIO)', parseErrno)
    .option('--latency <ms>', 'delay every matching I/O by MS milliseconds', parseLatency))
    .addHelpText('after', `\nExamples:\n  $ blockmirror disk fault d1 --read --range 1MiB:64KiB --errno EIO\n  $ blockmirror disk fault d2 --rate 0.01\n  $ blockmirror disk fault d3 --errno 0 --latency 5\n${ADMIN_EXIT_CODES}`)
    .action(adminAction(async (name: string, options: DiskOptions) => {
      const body: Record<string, unknown> = { disk: name };
      if (options.read === true && options.write !== true) body.operations = 'read';
      if (options.write === true && options.read !== true) body.operations = 'write';
      if (options.range !== undefined) Object.assign(body, options.range);
      if (options.rate !== undefined) body.rate = options.rate;
      if (options.after !== undefined) body.afterCount = options.after;
      if (options.errno !== undefined) body.errno = options.errno;
      if (options.latency !== undefined) body.latencyMs = options.latency;
      const result = await post(options, 'fault', body) as { index?: number };
      if (options.json !== true) process.stdout.write(`disk ${name}: fault rule ${String(result?.index ?? '?')} added\n`);
    }));

  common(disk.command('fail').description('Fail DISK: every I/O fails with EIO until heal; its group rebuilds onto a spare.').argument('<disk>', 'the disk'))
    .addHelpText('after', ADMIN_EXIT_CODES)
    .action(adminAction(async (name: string, options: DiskOptions) => {
      const result = await post(options, 'fail', { disk: name }) as { status?: string };
      if (options.json !== true) process.stdout.write(`disk ${name}: ${String(result?.status ?? '?')}\n`);
    }));

  common(disk.command('heal').description('Heal DISK: remove its fault rules, clear its error counter, back to normal (its group still rebuilds a failed member).').argument('<disk>', 'the disk'))
    .addHelpText('after', ADMIN_EXIT_CODES)
    .action(adminAction(async (name: string, options: DiskOptions) => {
      const result = await post(options, 'heal', { disk: name }) as { status?: string };
      if (options.json !== true) process.stdout.write(`disk ${name}: ${String(result?.status ?? '?')}\n`);
    }));
}
