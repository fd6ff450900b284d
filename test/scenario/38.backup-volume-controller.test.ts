// Notes on the design
// -------------------
// Diversion variant (a) in a controller as a story: with `diversion: 'backup-volume'`, a raid5
// disk turning suspect starts a sparing and creates, on the fly, a secondary volume for the
// group's volume as an extent of the unused raid1 group g1 (event diversion-started); host writes
// during the sparing reach no disk of the weak group (its write count stands still) and land on
// g1; the status shows the seed's tables: T1 (g1's volumes now list the secondary `bk.vol0`) and
// T2 (raid.backupPairs: primary, secondary, status `update data being backed up`, differential
// bitmap); the controller is dropped mid-sparing (objects closed, shared regions kept, as a
// SIGKILL leaves them) and a new one lays the volume behind its backup again before any write;
// when the sparing ends the blocks are copied back (diversion-copy-back-done), the secondary is
// deleted (g1 unused again) and every byte reads back from the weak group.
import * as assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';

import { validateConfig } from '../../src/cli/config';
import { Controller, type ControllerEvent } from '../../src/controller/controller';
import { makeSuspectInProcess, removeRegions } from '../helpers/raid-sparing';
import { uniqueName } from '../helpers/storage';
import { waitFor } from '../helpers/tools';

const MiB = 1 << 20;
const KiB = 1024;

interface Tables {
  groups: { group: string; volumes: string[]; disks: string[]; stats: { writeCount: number } | null;
    diversion: { variant: string; secondaryGroup?: string; copyingBack: boolean; lastError: string | null } | null }[];
  backupPairs: { primary: string; group: string; secondary: string; secondaryGroup: string; status: string; bitmap: string; divertedBlocks: number }[];
}

describe('38 diversion to a backup volume in an unused group during a sparing', function () {
  this.timeout(90_000);
  const id = uniqueName('c');
  const names = ['d0', 'd1', 'd2', 's0', 'e0', 'e1'];
  after(() => removeRegions(id));

  const controller = (): Controller => new Controller({
    id,
    disks: names.map((name) => ({ name, capacityBytes: 4 * MiB, backing: 'shared' as const, spare: name === 's0', errorThreshold: name === 'd1' ? 2 : 0 })),
    groups: [
      { name: 'g0', level: 'raid5', disks: ['d0', 'd1', 'd2'], stripeUnitBytes: 64 * KiB },
      { name: 'g1', level: 'raid1', disks: ['e0', 'e1'] },
    ],
    volumes: [{ name: 'vol0', capacityBytes: 4 * MiB, group: 'g0' }],
    diversion: 'backup-volume',
    raid: { rebuildStepBytes: 128 * KiB, checkIntervalMs: 50 },
  });
  const tables = (c: Controller): Tables => c.status().raid as unknown as Tables;

  it('reads the config key diversion: backup-volume', () => {
    const config = validateConfig({ controllers: [{ id: 'c1', volumes: [{ name: 'v', capacity: '1MiB' }], diversion: 'backup-volume' }] });
    assert.equal((config.controllers[0] as unknown as { diversion?: unknown }).diversion, 'backup-volume');
    assert.throws(() => validateConfig({ controllers: [{ id: 'c1', volumes: [{ name: 'v', capacity: '1MiB' }], diversion: 'local-pair' }] }), /diversion/);
  });

  it('an unused group smaller than the volume: no diversion, the sparing goes on, the serve lives', async () => {
    const small = new Controller({
      id: `${id}s`,
      disks: names.map((name) => ({ name, capacityBytes: name.startsWith('e') ? 2 * MiB : 4 * MiB, spare: name === 's0', errorThreshold: name === 'd1' ? 2 : 0 })),
      groups: [{ name: 'g0', level: 'raid5', disks: ['d0', 'd1', 'd2'], stripeUnitBytes: 64 * KiB }, { name: 'g1', level: 'raid1', disks: ['e0', 'e1'] }],
      volumes: [{ name: 'vol0', capacityBytes: 4 * MiB, group: 'g0' }],
      diversion: 'backup-volume',
      raid: { rebuildStepBytes: 128 * KiB, checkIntervalMs: 50 },
    });
    const events: ControllerEvent[] = [];
    small.on('event', (event: ControllerEvent) => {
      if (event.subject === 'group:g0') events.push(event);
    });
    await small.start();
    try {
      const volume = small.volume('vol0') as NonNullable<ReturnType<Controller['volume']>>;
      const model = crypto.randomBytes(4 * MiB);
      volume.write(0, model);
      small.disks.fault('d1', { operations: 'read', byteOffset: 0, byteLength: 64 * KiB });
      const piece = Buffer.alloc(64 * KiB);
      for (let i = 0; i < 2; i++) volume.read(64 * KiB, piece);
      await waitFor(() => events.some((e) => e.new === 'sparing-done'), 'the sparing to finish');
      assert.ok(!events.some((e) => e.new === 'diversion-started'));
      assert.equal(tables(small).groups[0]?.diversion, null);
      const all = Buffer.alloc(4 * MiB);
      volume.read(0, all);
      assert.ok(all.equals(model));
    } finally {
      await small.close();
    }
  });

  it('backs writes up to a secondary created in the unused group, survives a restart, copies back and deletes it', async () => {
    const first = controller();
    const events: ControllerEvent[] = [];
    first.on('event', (event: ControllerEvent) => {
      if (event.subject === 'group:g0') events.push(event);
    });
    await first.start();
    assert.deepEqual(tables(first).backupPairs, []);
    const volume = first.volume('vol0') as NonNullable<ReturnType<Controller['volume']>>;
    const model = crypto.randomBytes(4 * MiB);
    volume.write(0, model);
    const { spare, spareLatency: slow, suspect: d1 } = makeSuspectInProcess(id, volume);
    await waitFor(() => events.some((e) => e.new === 'diversion-started'), 'the diversion to start');
    const weakWrites = (c: Controller): number => tables(c).groups[0]?.stats?.writeCount ?? -1;
    const before = weakWrites(first);
    const secondaryBefore = tables(first).groups[1]?.stats?.writeCount ?? 0;
    // Blocks 0, 1 (a partial write) and 256..259.
    const a = crypto.randomBytes(4 * KiB + 512);
    volume.write(1024, a);
    a.copy(model, 1024);
    const b = crypto.randomBytes(16 * KiB);
    volume.write(MiB, b);
    b.copy(model, MiB);
    assert.equal(weakWrites(first), before, 'no host write reached the weak group');
    assert.ok((tables(first).groups[1]?.stats?.writeCount ?? 0) > secondaryBefore, 'the secondary group took them');
    const t = tables(first);
    assert.deepEqual(t.groups[1]?.volumes, ['bk.vol0']);
    assert.deepEqual(t.groups[0]?.diversion, { variant: 'backup-volume', secondaryGroup: 'g1', copyingBack: false, lastError: null });
    assert.deepEqual(t.backupPairs.map((p) => [p.primary, p.group, p.secondary, p.secondaryGroup, p.status, p.divertedBlocks]),
      [['vol0', 'g0', 'bk.vol0', 'g1', 'update data being backed up', 6]]);
    assert.equal(t.backupPairs[0]?.bitmap, '11' + '0'.repeat(62));
    const all = Buffer.alloc(4 * MiB);
    volume.read(0, all);
    assert.ok(all.equals(model));
    await first.close();

    const second = controller();
    const later: ControllerEvent[] = [];
    second.on('event', (event: ControllerEvent) => {
      if (event.subject === 'group:g0') later.push(event);
    });
    await second.start();
    const volume2 = second.volume('vol0') as NonNullable<ReturnType<Controller['volume']>>;
    assert.equal(tables(second).backupPairs[0]?.divertedBlocks, 6);
    volume2.read(0, all);
    assert.ok(all.equals(model), 'backed-up blocks read from the secondary after the restart');
    spare.removeFault(slow);
    await waitFor(() => later.some((e) => e.new === 'diversion-copy-back-done'), 'the copy-back to finish', 20_000);
    assert.ok(later.some((e) => e.new === 'sparing-done'));
    const reset = tables(second);
    assert.deepEqual(reset.backupPairs, []);
    assert.deepEqual(reset.groups[1]?.volumes, []);
    assert.equal(reset.groups[0]?.diversion, null);
    assert.equal(fs.existsSync(`/dev/shm/blockmirror.backup.${id}.g0.vol0`), false, 'the backup bitmap is deleted');
    volume2.read(0, all);
    assert.ok(all.equals(model), 'every byte reads back from the weak group after the copy-back');
    await second.close();
    for (const d of [spare, d1]) d.close();
  });
});
