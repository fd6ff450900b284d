// Notes on the design
// -------------------
// Diversion variant (b) in a controller as a story: with `diversion: 'work-volume'` and a shared
// work volume configured, a raid5 disk turning suspect starts a sparing and lays the group's
// volume behind the work volume (event diversion-started); host writes during the sparing land
// there, not on the group (the group's write count does not move; status workVolumes shows the
// seed's T4 row: primary, terminal address = slots written, bitmap); the controller is dropped
// mid-sparing (its objects closed, the shared regions kept, as a SIGKILL leaves them) and a new
// one finds the work volume in use, lays the volume behind it again and reads every diverted
// block from it; when the sparing ends the blocks are copied back (diversion-copy-back-done), the
// table is reset (state unused, terminal null, bitmap zeros) and every byte reads back from the
// group.
import * as assert from 'node:assert/strict';
import * as crypto from 'node:crypto';

import { validateConfig } from '../../src/cli/config';
import { Controller, type ControllerEvent } from '../../src/controller/controller';
import { makeSuspectInProcess, removeRegions } from '../helpers/raid-sparing';
import { uniqueName } from '../helpers/storage';
import { waitFor } from '../helpers/tools';

const MiB = 1 << 20;
const KiB = 1024;

describe('36 diversion to a work volume during a sparing', function () {
  this.timeout(60_000);
  const id = uniqueName('c');
  const names = ['d0', 'd1', 'd2', 's0'];
  after(() => removeRegions(id));

  const controller = (): Controller => new Controller({
    id,
    disks: names.map((name) => ({ name, capacityBytes: 4 * MiB, backing: 'shared' as const, spare: name === 's0', errorThreshold: name === 'd1' ? 2 : 0 })),
    groups: [{ name: 'g0', level: 'raid5', disks: ['d0', 'd1', 'd2'], stripeUnitBytes: 64 * KiB }],
    volumes: [{ name: 'vol0', capacityBytes: 8 * MiB, group: 'g0' }],
    workVolumes: [{ name: 'w0', capacityBytes: 2 * MiB, backing: 'shared' }],
    diversion: 'work-volume',
    raid: { rebuildStepBytes: 128 * KiB, checkIntervalMs: 50 },
  });
  type Row = { workVolume: string; state: string; primary: string[] | null; terminalAddress: number | null; bitmap: string; capacityBytes: number };
  const rowOf = (c: Controller): Row => ((c.status().raid as unknown as { workVolumes: Row[] }).workVolumes[0]) as Row;

  it('reads the config keys workVolumes and diversion, and refuses a capacity not a multiple of slotSize', () => {
    const vol = [{ name: 'v', capacity: '1MiB' }];
    const config = validateConfig({ controllers: [{ id: 'c1', volumes: vol, workVolumes: [{ name: 'w0', capacity: '3MiB', backing: 'shared' }], diversion: 'work-volume' }] });
    const first = config.controllers[0] as unknown as { workVolumes?: unknown; diversion?: unknown };
    assert.deepEqual(first.workVolumes, [{ name: 'w0', capacityBytes: 3 * MiB, slotBytes: 4096, backing: 'shared' }]);
    assert.equal(first.diversion, 'work-volume');
    assert.equal((validateConfig({ controllers: [{ id: 'c1', volumes: vol }] }).controllers[0] as unknown as { diversion?: unknown }).diversion, undefined);
    assert.throws(() => validateConfig({ controllers: [{ id: 'c1', volumes: vol, workVolumes: [{ name: 'w0', capacity: 5000 }] }] }), /multiple of slotSize/);
  });

  it('diverts writes during the sparing, survives a restart with its maps, copies back and resets', async () => {
    const first = controller();
    const events: ControllerEvent[] = [];
    first.on('event', (event: ControllerEvent) => {
      if (event.subject === 'group:g0') events.push(event);
    });
    await first.start();
    assert.deepEqual({ ...rowOf(first), bitmap: rowOf(first).bitmap.length }, { workVolume: 'w0', state: 'unused', primary: null, terminalAddress: null, bitmap: 64, capacityBytes: 2 * MiB, stats: (rowOf(first) as unknown as { stats: unknown }).stats } as unknown);
    const volume = first.volume('vol0') as NonNullable<ReturnType<Controller['volume']>>;
    const model = crypto.randomBytes(8 * MiB);
    volume.write(0, model);
    const { spare, spareLatency: slow, suspect: d1 } = makeSuspectInProcess(id, volume);
    await waitFor(() => events.some((e) => e.new === 'diversion-started'), 'the diversion to start');
    assert.ok(events.some((e) => e.new === 'sparing-started'));
    const groupWrites = (first.status().raid.groups[0]?.stats as { writeCount: number }).writeCount;
    // Writes during the sparing: 3 x 16 KiB (4 slots each) and one 512-byte write (1 slot).
    for (const at of [0, 3 * MiB, 5 * MiB + 4096]) {
      const data = crypto.randomBytes(16 * KiB);
      volume.write(at, data);
      data.copy(model, at);
    }
    const small = crypto.randomBytes(512);
    volume.write(7 * MiB + 512, small);
    small.copy(model, 7 * MiB + 512);
    assert.equal((first.status().raid.groups[0]?.stats as { writeCount: number }).writeCount, groupWrites, 'no write reached the weak group');
    const row = rowOf(first);
    assert.equal(row.state, 'diverting');
    assert.deepEqual(row.primary, ['vol0']);
    assert.equal(row.terminalAddress, 13);
    assert.equal(row.bitmap, '1'.repeat(13) + '0'.repeat(51));
    const all = Buffer.alloc(8 * MiB);
    volume.read(0, all);
    assert.ok(all.equals(model));
    await first.close();

    // A new controller on the same shared regions: the maps bring the diverted blocks back.
    const second = controller();
    const later: ControllerEvent[] = [];
    second.on('event', (event: ControllerEvent) => {
      if (event.subject === 'group:g0') later.push(event);
    });
    await second.start();
    const volume2 = second.volume('vol0') as NonNullable<ReturnType<Controller['volume']>>;
    assert.equal(rowOf(second).terminalAddress, 13);
    volume2.read(0, all);
    assert.ok(all.equals(model), 'diverted blocks read from the work volume after the restart');
    spare.removeFault(slow);
    await waitFor(() => later.some((e) => e.new === 'diversion-copy-back-done'), 'the copy-back to finish');
    assert.ok(later.some((e) => e.new === 'sparing-done'));
    const reset = rowOf(second);
    assert.equal(reset.state, 'unused');
    assert.equal(reset.terminalAddress, null);
    assert.equal(reset.primary, null);
    assert.equal(reset.bitmap, '0'.repeat(64));
    assert.deepEqual(second.status().raid.groups[0]?.disks, ['d0', 's0', 'd2']);
    volume2.read(0, all);
    assert.ok(all.equals(model), 'every byte reads back from the group after the copy-back');
    await second.close();
    spare.close();
    d1.close();
  });
});
