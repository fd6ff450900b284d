// RequestDecoder.redirectPayload (receive into the store, src/nbd/receive.ts): from a pending
// payload in either state (queued in one piece, or already being assembled) the bytes end in
// the target and nowhere else, in every split; the request comes out with payloadDirect and a
// view of the target; the decoder's own buffer serves the next payload again; misuse is a
// RangeError that changes nothing.
import { strict as assert } from 'node:assert';

import * as P from '../../src/nbd/protocol';

function patterned(byteLength: number, seed: number): Buffer {
  const bytes = Buffer.alloc(byteLength);
  for (let i = 0; i < byteLength; i++) bytes[i] = (i * 31 + seed) & 0xff;
  return bytes;
}

describe('41 nbd decoder: redirectPayload', () => {
  for (const before of [0, 1, 5000, 64 * 1024, 99_999]) {
    it(`lands a payload in the target when ${before} of its bytes arrived before the redirect`, () => {
      const decoder = new P.RequestDecoder({ maxPayloadBytes: 1 << 20 });
      const payload = patterned(100_000, before);
      const next = patterned(70_000, 7);
      const bytes = Buffer.concat([
        P.encodeRequest(P.NBD_CMD_WRITE, 0, 1n, 4096, payload.length, payload),
        P.encodeRequest(P.NBD_CMD_WRITE, 0, 2n, 0, next.length, next),
      ]);
      // The header and `before` bytes in two chunks (the second forces assembly when both hold payload).
      const split = Math.min(28 + Math.floor(before / 2), 28 + before);
      decoder.push(Buffer.from(bytes.subarray(0, split)));
      decoder.push(Buffer.from(bytes.subarray(split, 28 + before)));
      assert.equal(decoder.next(), null);
      assert.ok(decoder.payloadPending);
      const target = Buffer.alloc(payload.length);
      decoder.redirectPayload(target);
      assert.ok(decoder.payloadRedirected);
      assert.throws(() => decoder.redirectPayload(Buffer.alloc(payload.length)), RangeError, 'redirected twice');
      // The rest: half through the window (in place), half pushed.
      const window = decoder.payloadWindow();
      assert.ok(window !== null);
      assert.equal(window.buffer, target.buffer);
      assert.equal(window.byteOffset, target.byteOffset + before);
      const half = Math.floor((payload.length - before) / 2);
      bytes.copy(window, 0, 28 + before, 28 + before + half);
      decoder.payloadReceived(half);
      decoder.push(Buffer.from(bytes.subarray(28 + before + half)));
      const request = decoder.next();
      assert.ok(request !== null);
      assert.equal(request.payloadDirect, true);
      assert.equal(request.offset, 4096);
      assert.equal(request.payload?.buffer, target.buffer, 'the payload is a view of the target');
      assert.ok(target.equals(payload), 'the target holds the payload');
      assert.equal(decoder.payloadRedirected, false);
      // The next request assembles in the decoder's own buffer, never in the target.
      const following = decoder.next();
      assert.ok(following !== null);
      assert.equal(following.payloadDirect, false);
      assert.deepEqual(following.payload, next);
      assert.notEqual(following.payload?.buffer, target.buffer);
      assert.ok(target.equals(payload), 'the next payload wrote into the old target');
      assert.ok(decoder.idle);
    });
  }

  it('refuses a redirect without a pending payload or with a target of the wrong size', () => {
    const decoder = new P.RequestDecoder({ maxPayloadBytes: 4096, maxDiscardBytes: 1 << 20 });
    assert.throws(() => decoder.redirectPayload(Buffer.alloc(10)), RangeError);
    const bytes = P.encodeRequest(P.NBD_CMD_WRITE, 0, 1n, 0, 3000, patterned(3000, 1));
    decoder.push(Buffer.from(bytes.subarray(0, 100)));
    assert.equal(decoder.next(), null);
    assert.throws(() => decoder.redirectPayload(Buffer.alloc(2999)), RangeError);
    assert.equal(decoder.payloadRedirected, false);
    decoder.push(Buffer.from(bytes.subarray(100)));
    const request = decoder.next();
    assert.equal(request?.payloadDirect, false);
    assert.deepEqual(request?.payload, patterned(3000, 1));
    // A payload being discarded (above maxPayloadBytes) cannot be redirected.
    const big = P.encodeRequest(P.NBD_CMD_WRITE, 0, 2n, 0, 8192, Buffer.alloc(8192));
    decoder.push(Buffer.from(big.subarray(0, 1000)));
    assert.equal(decoder.next(), null);
    assert.throws(() => decoder.redirectPayload(Buffer.alloc(8192)), RangeError);
  });
});
