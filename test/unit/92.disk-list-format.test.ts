// formatDiskList, the pure table function of `blockmirror disk list`: from a status shaped like
// src/controller/disks.ts `status()` it prints the seed's tables. With work volumes, work disks
// and address map rows: the backup status column (T5), the work volumes (T4, human capacity,
// NULL primary and terminal address, the bitmap cut at 16 slots), the work disks (T6), the work
// disk address map (T7) and a line per group diversion or error under the groups table. Without
// any: no work table and no header of one is printed, and the lines are those of before.
import * as assert from 'node:assert/strict';

import { formatDiskList } from '../../src/cli/disk-command';
import { RENEWED_DATA_BEING_BACKED_UP } from '../../src/controller/disks';

const MiB = 1024 * 1024;

const disk = (name: string, group: string | null, backupStatus: string | null) => ({
  disk: name, capacityBytes: 8 * MiB, status: 'normal', errorCount: 0, errorThreshold: 0, group, backupStatus, workDisk: null, faults: [],
});
const group = (name: string, disks: string[], diversion: unknown, lastError: string | null = null) => ({
  group: name, level: 'raid5', volumes: [`${name}.vol`], disks, capacityBytes: 16 * MiB, condition: 'optimal', rebuild: null, sparing: null, diversion, lastError,
});

const withWork = {
  groups: [
    group('g0', ['d0', 'd1', 'd2'], { variant: 'work-disk', workDisk: 'w0', copyingBack: false, lastError: null }),
    { ...group('g1', ['d3', 'd4', 'd5'], { variant: 'work-volume', workVolume: 'wv0', copyingBack: true, lastError: 'ERR_RAID_WRITE_FAILED: member 1 write failed' }),
      sparing: { member: 1, disk: 'd4', spare: 's0', doneBytes: 3 * MiB, totalBytes: 8 * MiB, rate: null, eta: null } },
    group('g2', ['d6', 'd7', 'd8'], null, 'ERR_RAID_READ_FAILED: data lost at 4096'),
    group('g3', ['d9', 'd10', 'd11'], null),
  ],
  disks: [disk('d0', 'g0', RENEWED_DATA_BEING_BACKED_UP), disk('d3', 'g1', null), { ...disk('wd', null, null), workDisk: 'w0' }],
  workVolumes: [
    { workVolume: 'wv0', capacityBytes: 3 * 1024 * MiB, state: 'copying-back', primary: ['g1.vol'], terminalAddress: 3, bitmap: `111${'0'.repeat(61)}`, stats: null },
    { workVolume: 'wv1', capacityBytes: 3 * 1024 * MiB, state: 'unused', primary: null, terminalAddress: null, bitmap: '0'.repeat(8), stats: null },
  ],
  workDisks: [
    { workDisk: 'w0', disk: 'wd', capacityBytes: 18 * MiB, status: 'in use', state: 'diverting', mainDisks: ['d0', 'd1', 'd2'], terminalAddress: 6, stats: null },
    { workDisk: 'w1', disk: 'we', capacityBytes: 1536, status: 'unused', state: 'unused', mainDisks: null, terminalAddress: null, stats: null },
  ],
  workDiskMap: [
    { mainDisk: 'd0', mainAddress: 1, workDisk: 'w0', workAddress: 0 },
    { mainDisk: 'd1', mainAddress: 5, workDisk: 'w0', workAddress: 1 },
    { mainDisk: null, mainAddress: 2, workDisk: 'w0', workAddress: 2 },
  ],
  addressMap: [{ volume: 'g0.vol', group: 'g0', groupByteOffset: 0, byteLength: 4 * MiB, firstMember: 0, firstDisk: 'd0', firstDiskByteOffset: 0 }],
};

/** The rows of the table whose header line matches `header`, up to the blank line after it. */
function rowsOf(text: string, header: RegExp): string[] {
  const lines = text.split('\n');
  const start = lines.findIndex((line) => header.test(line));
  assert.ok(start >= 0, `no table with header ${String(header)} in:\n${text}`);
  const end = lines.indexOf('', start);
  return lines.slice(start + 1, end === -1 ? undefined : end);
}

describe('92 disk list format', () => {
  it('prints the pairs table (T2) of backup volumes and the group line of a backup-volume diversion', () => {
    const text = formatDiskList({
      groups: [group('g0', ['d0', 'd1', 'd2'], { variant: 'backup-volume', secondaryGroup: 'g5', copyingBack: false, lastError: null })],
      disks: [disk('d0', 'g0', null)],
      backupPairs: [
        { primary: 'vol1', group: 'g0', secondary: 'bk.vol1', secondaryGroup: 'g5', status: 'update data being backed up', bitmap: `110000100011${'0'.repeat(52)}`, divertedBlocks: 5 },
        { primary: 'vol3', group: 'g0', secondary: 'bk.vol3', secondaryGroup: 'g5', status: 'copying back', bitmap: '0'.repeat(8), divertedBlocks: 0 },
      ],
    });
    assert.match(text, /^PRIMARY VOLUME\s+SECONDARY VOLUME\s+PAIRING STATUS\s+DIFFERENTIAL BITMAP$/m);
    assert.deepEqual(rowsOf(text, /^PRIMARY VOLUME\s/).map((line) => line.split(/\s{2,}/)), [
      ['vol1', 'bk.vol1 (g5)', 'UPDATE DATA BEING BACKED UP', '1100001000110000...'],
      ['vol3', 'bk.vol3 (g5)', 'COPYING BACK', '00000000'],
    ]);
    assert.ok(text.includes('group g0: diversion: backup-volume g5'));
  });

  it('prints the backup status, work volumes, work disks, work disk map and group diversions', () => {
    const text = formatDiskList(withWork);

    assert.match(text, /^DISK\s+CAPACITY\s+STATUS\s+ERRORS\s+GROUP\s+BACKUP\s+FAULTS$/m);
    assert.deepEqual(rowsOf(text, /^DISK\s/).map((line) => line.split(/\s{2,}/)), [
      ['d0', '8388608', 'normal', '0', 'g0', 'renewed data being backed up', '0'],
      ['d3', '8388608', 'normal', '0', 'g1', '-', '0'],
      ['wd', '8388608', 'normal', '0', 'work disk w0', '-', '0'],
    ]);

    assert.match(text, /^WORK VOLUME\s+CAPACITY\s+STATE\s+PRIMARY\s+TERMINAL ADDRESS\s+BITMAP$/m);
    assert.deepEqual(rowsOf(text, /^WORK VOLUME\s/).map((line) => line.split(/\s{2,}/)), [
      ['wv0', '3.0 GiB', 'copying-back', 'g1.vol', '3', '1110000000000000...'],
      ['wv1', '3.0 GiB', 'unused', 'NULL', 'NULL', '00000000'],
    ]);

    assert.match(text, /^WORK DISK\s+CAPACITY\s+STATUS\s+MAIN DISKS\s+TERMINAL ADDRESS$/m);
    assert.deepEqual(rowsOf(text, /^WORK DISK\s+CAPACITY/).map((line) => line.split(/\s{2,}/)), [
      ['w0 (wd)', '18.0 MiB', 'in use', 'd0, d1, d2', '6'],
      ['w1 (we)', '1.5 KiB', 'unused', 'NULL', 'NULL'],
    ]);

    assert.match(text, /^MAIN DISK\s+MAIN ADDRESS\s+WORK DISK\s+WORK ADDRESS$/m);
    assert.deepEqual(rowsOf(text, /^MAIN DISK\s/).map((line) => line.split(/\s{2,}/)), [
      ['d0', '1', 'w0', '0'],
      ['d1', '5', 'w0', '1'],
      ['NULL', '2', 'w0', '2'],
    ]);

    // The groups table, then one line per diversion or error; g3 has neither and gets none.
    const groupRows = rowsOf(text, /^GROUP\s/);
    assert.deepEqual(groupRows.filter((line) => line.startsWith('group ')), [
      'group g0: diversion: work-disk w0',
      'group g1: diversion: work-volume wv0, copying back',
      'group g1: diversion error: ERR_RAID_WRITE_FAILED: member 1 write failed',
      'group g2: last error: ERR_RAID_READ_FAILED: data lost at 4096',
    ]);
    assert.deepEqual(groupRows.filter((line) => !line.startsWith('group ')).map((line) => line.split(/\s{2,}/)[0]), ['g0', 'g1', 'g2', 'g3']);
    assert.match(groupRows.find((line) => line.startsWith('g1 ')) ?? '', /sparing d4 -> s0 37%$/);

    // Order: groups, disks, work volumes, work disks, work disk map, address map.
    const headers = ['GROUP', 'DISK', 'WORK VOLUME', 'WORK DISK', 'MAIN DISK', 'VOLUME'].map((name) => text.search(new RegExp(`^${name}\\s`, 'm')));
    assert.deepEqual([...headers].sort((a, b) => a - b), headers);
    assert.ok(!headers.includes(-1));
    assert.match(text, /^g0\.vol\s+g0\s+0\s+4194304\s+d0\s+0$/m);
  });

  it('prints no work table (nor its header) when there are none, and no diversion lines', () => {
    const none = { ...withWork, groups: [group('g3', ['d9', 'd10', 'd11'], null)], disks: [disk('d9', 'g3', null)], workVolumes: [], workDisks: [], workDiskMap: [] };
    const text = formatDiskList(none);
    assert.doesNotMatch(text, /WORK VOLUME|WORK DISK|MAIN DISK|^group /m);
    assert.equal(text.split('\n').filter((line) => /^[A-Z][A-Z ]+$/.test(line.split(/\s{2,}/)[0] ?? '')).length, 3, text);
    assert.deepEqual(rowsOf(text, /^DISK\s/).map((line) => line.split(/\s{2,}/)), [['d9', '8388608', 'normal', '0', 'g3', '-', '0']]);
    // A status from before the work tables (no such keys) prints the same three tables.
    const { workVolumes: _v, workDisks: _d, workDiskMap: _m, ...older } = none;
    assert.equal(formatDiskList(older), text);
    assert.match(formatDiskList({}), /^GROUP.*\n\nDISK.*\n\nVOLUME/);
  });
});
