// Notes on the design
// -------------------
// Sparing in a controller as a story: a raid5 volume is written; reads meet a bad range on one
// member (its degraded reads still return the data) until that disk's error counter reaches its
// errorThreshold and it turns suspect; the controller copies it onto its hot spare by itself
// (event group:g0 sparing-started, status groups[].sparing with doneBytes/totalBytes/rate/eta,
// disk status 'sparing'), host writes go on; the controller is dropped mid-copy (its objects
// closed, the shared regions kept, as a SIGKILL leaves them) and a new one on the same disks
// resumes the copy at its cursor from the group metadata, finishes it (sparing-done), the spare
// is the member and the old disk 'failed'; every byte written, before and during, reads back.
import * as assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';

import { Controller, type ControllerEvent } from '../../src/controller/controller';
import { Disk } from '../../src/storage/disk';
import { uniqueName } from '../helpers/storage';
import { waitFor } from '../helpers/tools';

const MiB = 1 << 20;
const KiB = 1024;

describe('35 sparing a suspect disk in a controller', function () {
  this.timeout(60_000);
  const id = uniqueName('c');
  const names = ['d0', 'd1', 'd2', 's0'];
  after(() => {
    for (const name of fs.readdirSync('/dev/shm')) {
      if (name.startsWith(`blockmirror.disk.${id}.`) || name.startsWith(`blockmirror.raid.${id}.`)) fs.rmSync(`/dev/shm/${name}`, { force: true });
    }
  });

  const controller = (): Controller => new Controller({
    id,
    disks: names.map((name) => ({ name, capacityBytes: 4 * MiB, backing: 'shared' as const, spare: name === 's0', errorThreshold: name === 'd1' ? 3 : 0 })),
    groups: [{ name: 'g0', level: 'raid5', disks: ['d0', 'd1', 'd2'], stripeUnitBytes: 64 * KiB }],
    volumes: [{ name: 'vol0', capacityBytes: 8 * MiB, group: 'g0' }],
    raid: { rebuildStepBytes: 128 * KiB, checkIntervalMs: 50 },
  });
  const shared = (name: string): Disk => Disk.open({ name: `${id}.${name}` });
  type Sparing = { member: number; disk: string; spare: string; doneBytes: number; totalBytes: number; rate: number | null; eta: number | null } | null;
  const sparingOf = (c: Controller): Sparing => (c.status().raid.groups[0] as unknown as { sparing: Sparing }).sparing;

  it('turns a disk suspect past its threshold, spares it with progress, survives a restart mid-copy, swaps the spare in', async () => {
    const first = controller();
    const events: ControllerEvent[] = [];
    first.on('event', (event: ControllerEvent) => {
      if (event.subject === 'group:g0') events.push(event);
    });
    await first.start();
    const volume = first.volume('vol0') as NonNullable<ReturnType<Controller['volume']>>;
    const model = crypto.randomBytes(8 * MiB);
    volume.write(0, model);

    // Slow the spare so the copy is observable; fail reads of d1's first unit (stripe 0: group [64 KiB, 128 KiB)).
    const spare = shared('s0');
    const slow = spare.addFault({ operations: 'write', errno: 0, latencyMs: 20 });
    const d1 = shared('d1');
    d1.addFault({ operations: 'read', byteOffset: 0, byteLength: 64 * KiB });
    const piece = Buffer.alloc(64 * KiB);
    for (let i = 0; i < 3; i++) {
      volume.read(64 * KiB, piece);
      assert.ok(piece.equals(model.subarray(64 * KiB, 128 * KiB)), 'a degraded read returns the data');
    }
    assert.equal(d1.errorCount, 3);
    await waitFor(() => events.some((e) => e.new === 'sparing-started'), 'the sparing to start');
    const started = events.find((e) => e.new === 'sparing-started') as ControllerEvent;
    assert.equal(started.disk, 'd1');
    assert.equal(started.spare, 's0');
    await waitFor(() => (sparingOf(first)?.doneBytes ?? 0) >= 512 * KiB, 'sparing progress');
    const progress = sparingOf(first) as NonNullable<Sparing>;
    assert.equal(progress.member, 1);
    assert.equal(progress.totalBytes, 4 * MiB);
    assert.ok(progress.doneBytes < progress.totalBytes);
    assert.ok(progress.rate !== null && progress.rate > 0);
    assert.ok(progress.eta !== null && progress.eta > 0);
    assert.equal(first.status().raid.disks.find((d) => d.disk === 'd1')?.status, 'sparing');
    // Writes during the copy, below and above its cursor.
    for (const at of [0, 3 * MiB, 7 * MiB]) {
      const data = crypto.randomBytes(256 * KiB);
      volume.write(at, data);
      data.copy(model, at);
    }
    await first.close();

    // A new controller on the same shared disks: the group metadata holds the sparing.
    const second = controller();
    const later: ControllerEvent[] = [];
    second.on('event', (event: ControllerEvent) => {
      if (event.subject === 'group:g0') later.push(event);
    });
    await second.start();
    const resumed = sparingOf(second);
    assert.ok(resumed === null || resumed.doneBytes >= 512 * KiB, 'resumed at its cursor, not from 0');
    spare.removeFault(slow);
    await waitFor(() => later.some((e) => e.new === 'sparing-done'), 'the sparing to finish');
    const group = second.status().raid.groups[0];
    assert.deepEqual(group?.disks, ['d0', 's0', 'd2']);
    assert.equal(group?.condition, 'optimal');
    assert.equal(sparingOf(second), null);
    assert.equal(second.status().raid.disks.find((d) => d.disk === 'd1')?.status, 'failed');
    const volume2 = second.volume('vol0') as NonNullable<ReturnType<Controller['volume']>>;
    const all = Buffer.alloc(8 * MiB);
    volume2.read(0, all);
    assert.ok(all.equals(model), 'every byte written before and during the sparing reads back');
    await second.close();
    // A third start on the same disks: the spare is member 1 (the restart probe finds it by id).
    const third = controller();
    await third.start();
    assert.deepEqual(third.status().raid.groups[0]?.disks, ['d0', 's0', 'd2']);
    const again = Buffer.alloc(8 * MiB);
    (third.volume('vol0') as NonNullable<ReturnType<Controller['volume']>>).read(0, again);
    assert.ok(again.equals(model));
    await third.close();
    spare.close();
    d1.close();
  });
});
