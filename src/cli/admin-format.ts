// Notes on the design
// -------------------
// The human-readable output of `blockmirror status` and `link fault|heal` (admin-commands.ts):
// pure functions from the admin endpoint's JSON (GET /status, a link's status) to text, so tests
// can feed them invented status objects. Every field is read defensively (a missing or
// mistyped one prints "-" or is left out, never throws): the serve may be newer or older than
// this CLI. Nothing here does I/O or keeps state.

import { formatBytes } from './status';

export type Json = Record<string, unknown>;

export function record(value: unknown): Json | undefined {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Json) : undefined;
}

export function records(value: unknown): Json[] {
  return Array.isArray(value) ? value.map(record).filter((entry): entry is Json => entry !== undefined) : [];
}

export function text(value: unknown, fallback = '-'): string {
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
