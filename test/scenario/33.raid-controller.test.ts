// A controller's RAID groups as a story: a raid5 volume is written; a member disk fails and the
// controller rebuilds onto its hot spare by itself, announcing it; a second member fails while
// the spare is being filled (its writes slowed by a latency fault): the rebuild stops, the data
// loss is reported once (one 'rebuild-failed' event with ERR_RAID_READ_FAILED, lastError in
// status, no repeat on later checks) and reads of lost ranges fail instead of returning zeros,
// while the stripes below the cursor still read. A group without a spare stays degraded and
// serves every read. Then a controller restarted on the same shared disks finds its volume's
// extent and data again.
import * as assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';

import { Controller, type ControllerEvent } from '../../src/controller/controller';
import { Disk } from '../../src/storage/disk';
import { uniqueName } from '../helpers/storage';
import { waitFor } from '../helpers/tools';

const MiB = 1 << 20;

describe('33 raid groups in a controller', function () {
  this.timeout(60_000);
  const id = uniqueName('c');
  const names = ['d0', 'd1', 'd2', 's0'];
  after(() => {
    for (const name of fs.readdirSync('/dev/shm')) {
      if (name.startsWith(`blockmirror.disk.${id}.`) || name.startsWith(`blockmirror.raid.${id}.`)) fs.rmSync(`/dev/shm/${name}`, { force: true });
    }
  });

  function controller(withSpare: boolean): Controller {
    return new Controller({
      id,
      disks: names.filter((name) => withSpare || name !== 's0').map((name) => ({ name, capacityBytes: 4 * MiB, backing: 'shared' as const, spare: name === 's0' })),
      groups: [{ name: 'g0', level: 'raid5', disks: ['d0', 'd1', 'd2'], stripeUnitBytes: 64 * 1024 }],
      volumes: [{ name: 'vol0', capacityBytes: 8 * MiB, group: 'g0' }],
      raid: { rebuildStepBytes: 128 * 1024, checkIntervalMs: 50 },
    });
  }
  const shared = (name: string): Disk => Disk.open({ name: `${id}.${name}` });

  it('rebuilds onto the spare; a second failure mid-rebuild is reported once, lost reads fail; restart finds the data', async () => {
    const first = controller(true);
    const events: ControllerEvent[] = [];
    first.on('event', (event: ControllerEvent) => {
      if (event.subject === 'group:g0') events.push(event);
    });
    await first.start();
    const volume = first.volume('vol0') as NonNullable<ReturnType<Controller['volume']>>;
    const data = crypto.randomBytes(8 * MiB);
    volume.write(0, data);

    const spare = shared('s0');
    spare.addFault({ operations: 'write', errno: 0, latencyMs: 2 });
    const d1 = shared('d1');
    d1.fail();
    await waitFor(() => events.some((e) => e.new === 'rebuild-started'), 'the rebuild to start');
    await waitFor(() => ((first.status().raid.groups[0]?.rebuild as { cursorBytes: number } | null)?.cursorBytes ?? 0) >= 512 * 1024, 'rebuild progress');
    const d2 = shared('d2');
    d2.fail();
    await waitFor(() => events.some((e) => e.new === 'rebuild-failed'), 'the rebuild to fail');
    const failed = events.find((e) => e.new === 'rebuild-failed') as ControllerEvent;
    assert.equal(failed.code, 'ERR_RAID_READ_FAILED');
    const group = first.status().raid.groups[0];
    assert.equal(group?.condition, 'failed');
    assert.match(String(group?.lastError), /^ERR_RAID_READ_FAILED/);
    // Several check intervals later: still one report.
    await new Promise((resolve) => setTimeout(resolve, 700));
    assert.equal(events.filter((e) => e.new === 'rebuild-failed').length, 1);
    assert.throws(() => volume.read(0, Buffer.alloc(8 * MiB)), (error: Error & { code?: string }) => error.code === 'ERR_RAID_READ_FAILED');
    // Stripe 0 (data on d0, d1, d2 by rotation; parity on d2): d1's unit is current on the spare below the cursor.
    const firstStripe = Buffer.alloc(64 * 1024);
    volume.read(64 * 1024, firstStripe);
    assert.ok(firstStripe.equals(data.subarray(64 * 1024, 128 * 1024)));
    await first.close();
    for (const disk of [spare, d1, d2]) disk.close();
    for (const name of names) Disk.unlink(`${id}.${name}`);
    for (const name of fs.readdirSync('/dev/shm')) if (name.startsWith(`blockmirror.raid.${id}.`)) fs.rmSync(`/dev/shm/${name}`);

    // No spare: degraded, every read served; a restart on the same disks finds the data.
    const second = controller(false);
    await second.start();
    (second.volume('vol0') as typeof volume).write(0, data);
    const d0 = shared('d0');
    d0.fail();
    const back = Buffer.alloc(8 * MiB);
    (second.volume('vol0') as typeof volume).read(0, back);
    assert.ok(back.equals(data));
    await waitFor(() => second.status().raid.groups[0]?.condition === 'degraded', 'the member to be marked failed');
    await second.close();
    const third = controller(false);
    await third.start();
    assert.equal(third.status().raid.groups[0]?.condition, 'degraded');
    assert.deepEqual(third.status().raid.addressMap.map((row) => row.volume), ['vol0']);
    (third.volume('vol0') as typeof volume).read(0, back);
    assert.ok(back.equals(data));
    await third.close();
    d0.close();
  });
});
