// Receive into the store on a pair's primary export (src/replication/pair-volume.ts,
// docs/nbd-receive.md "Replicated (pair) exports"): two controllers in this process over a real
// loopback TCP link, an NBD server over real TCP exporting the primary's PairVolumes, real
// client processes killed with SIGKILL:
//   - large payloads sent in pieces land in the store and are acknowledged at their ack point
//     (sync: applied on the secondary first); the secondary ends identical;
//   - a client killed mid-payload: never acknowledged; what landed is journaled from the store
//     and shipped, so the secondary ends identical to the primary;
//   - a drained switch while a payload is still landing: the handover does not wait for the
//     slow client; what landed is committed and shipped before the switch, the rest of the
//     payload never reaches the store, the request fails with EPERM, and both sides end identical.
import * as assert from 'node:assert/strict';

import * as P from '../../src/nbd/protocol';
import type { PairVolume } from '../../src/replication/pair-volume';
import type { Volume } from '../../src/storage/volume';
import { NbdTestClient } from '../helpers/nbd-client';
import { pairExportsWorld } from '../helpers/pair-exports';
import { tornWriter } from '../helpers/torn-writer';
import { waitFor } from '../helpers/tools';

const MiB = 1024 * 1024;
const SIZE = 16 * MiB;

function patterned(length: number, seed: number): Buffer {
  const bytes = Buffer.alloc(length);
  for (let at = 0; at < length; at += 4) bytes.writeUInt32LE(((at + seed) * 2654435761) >>> 0, at);
  return bytes;
}

describe('88 receive into the store on a pair\'s primary export (integration)', function () {
  this.timeout(120_000);
  // The event loop's receive path is what this file tests; the native lanes of an async
  // primary (copy mode) are 89's.
  const world = pairExportsWorld('test 88', SIZE, { nativeLanes: false });
  const { primary, secondary, identical, caughtUp } = world;
  const server = (): ReturnType<typeof world.server> => world.server();

  for (const mode of ['async', 'sync'] as const) {
    it(`${mode}: large payloads sent in pieces land in the store, are acknowledged at their ack point, and the secondary ends identical`, async () => {
      const receivedBefore = server().stats().storeReceivedWrites;
      const client = await NbdTestClient.open({ host: '127.0.0.1', port: world.port() }, { exportName: mode });
      for (let index = 0; index < 4; index++) {
        const offset = index * 3 * MiB + 4096;
        const payload = patterned(MiB, index + (mode === 'sync' ? 100 : 0));
        const cookie = BigInt(20 + index);
        const bytes = P.encodeRequest(P.NBD_CMD_WRITE, 0, cookie, offset, payload.length, payload);
        const reply = client.expectReply(cookie, P.NBD_CMD_WRITE, payload.length);
        await client.sendInPieces(bytes, [28, 28 + 200_000, 28 + 700_000, bytes.length], 5);
        assert.equal((await reply).error, 0);
        if (mode === 'sync') {
          // Acknowledged: the secondary applied it.
          const there = Buffer.alloc(payload.length);
          (secondary().volume(mode) as Volume).read(offset, there);
          assert.ok(there.equals(payload), 'a sync write was acknowledged before the secondary had it');
        }
      }
      await client.disconnect();
      assert.equal(server().stats().storeReceivedWrites, receivedBefore + 4, 'every payload was received into the store');
      await waitFor(() => caughtUp(mode) && identical(mode), `${mode}: the secondary identical`, 30_000);
    });
  }

  it('a client SIGKILLed mid-payload: never acknowledged; what landed is journaled and shipped, the secondary ends identical', async () => {
    const offset = 5 * MiB;
    const writesBefore = server().stats().requests.write;
    const writer = tornWriter(world.port(), 'async', offset, MiB, 600_000);
    await writer.sent;
    const store = primary().volume('async') as Volume;
    const byteAt = (at: number): number => {
      const one = Buffer.alloc(1);
      store.read(at, one);
      return one[0] as number;
    };
    await waitFor(() => byteAt(offset + 599_999) === 0xab, 'the sent bytes to land in the store');
    await writer.kill();
    await waitFor(() => server().stats().connections === 0, 'the server to see the connection close');
    assert.equal(server().stats().requests.write, writesBefore, 'the torn request was handled (and so answered)');
    await waitFor(() => caughtUp('async') && identical('async'), 'the secondary identical to what the store holds', 30_000);
    const there = Buffer.alloc(MiB);
    (secondary().volume('async') as Volume).read(offset, there);
    assert.ok(there.subarray(0, 600_000).every((byte) => byte === 0xab), 'the landed part reached the secondary');
  });

  it('a drained switch while a payload lands: the handover does not wait for the client, the rest never reaches the store, EPERM, both identical', async () => {
    await waitFor(() => caughtUp('async') && identical('async'), 'caught up before', 30_000);
    const offset = 9 * MiB;
    const before = Buffer.alloc(MiB);
    (primary().volume('async') as Volume).read(offset, before);
    const client = await NbdTestClient.open({ host: '127.0.0.1', port: world.port() }, { exportName: 'async' });
    const payload = Buffer.alloc(MiB, 0x5c);
    const bytes = P.encodeRequest(P.NBD_CMD_WRITE, 0, 41n, offset, MiB, payload);
    const reply = client.expectReply(41n, P.NBD_CMD_WRITE, MiB);
    client.send(bytes.subarray(0, 28 + 300_000));
    const facade = primary().exportVolume('async') as PairVolume;
    await waitFor(() => facade.landingWrites === 1, 'the payload landing in the store');
    await waitFor(() => {
      const one = Buffer.alloc(1);
      (primary().volume('async') as Volume).read(offset + 299_999, one);
      return one[0] === 0x5c;
    }, 'the first 300,000 bytes landed');
    // The planned takeover on the secondary: a drained switch (writes held, caught up, promoted).
    const status = await secondary().pairs?.takeover('async');
    assert.equal(status?.role, 'primary');
    assert.equal(facade.landingWrites, 0, 'the landing was revoked');
    assert.equal(facade.writable, false, 'the old primary is a secondary now');
    client.send(bytes.subarray(28 + 300_000));
    assert.equal((await reply).error, P.NBD_EPERM, 'the write that straddled the switch is refused');
    await client.disconnect();
    const oldPrimary = Buffer.alloc(MiB);
    (primary().volume('async') as Volume).read(offset, oldPrimary);
    assert.ok(oldPrimary.subarray(0, 300_000).every((byte) => byte === 0x5c), 'what landed before the switch stays');
    assert.ok(oldPrimary.subarray(300_000).equals(before.subarray(300_000)), 'a byte sent after the switch reached the old primary\'s store');
    assert.ok(identical('async'), 'the new primary holds what the old one held at the switch');
    // And back: the new primary hands the role back (failback), both still identical.
    await secondary().pairs?.failback('async');
    await waitFor(() => caughtUp('async') && identical('async'), 'failed back and identical', 30_000);
  });
});
