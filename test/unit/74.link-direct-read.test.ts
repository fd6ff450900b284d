// The frame decoder's direct-read path (FrameDecoder.readTarget): a wire that can read into
// memory of the decoder's choosing puts a large payload's bytes straight where they belong, and
// the decoder takes such a chunk in place, without a copy. Whatever the wire does with the offer
// (takes it, ignores it, fills part of it), the frames decoded must be the ones encoded, and a
// corrupted byte must still fail the CRC. No sockets: a steering wire is simulated here.

import { strict as assert } from 'node:assert';

import { LinkError } from '../../src/transport/errors';
import { FRAME_HEADER_BYTES, type Frame, FrameDecoder, FrameEncoder, FrameType } from '../../src/transport/frame';
import { MessageType, isKnownMessageType } from '../../src/transport/message-types';

const MAX_FRAME_BYTES = 1024 * 1024;

function newDecoder(reuseAssembly = true): FrameDecoder {
  return new FrameDecoder({ maxFrameBytes: MAX_FRAME_BYTES, isKnownMessageType, reuseAssembly });
}

function payloadOf(byteLength: number, seed: number): Buffer {
  const payload = Buffer.allocUnsafe(byteLength);
  for (let index = 0; index < byteLength; index++) payload[index] = (index * 31 + seed * 7 + (index >> 8)) & 0xff;
  return payload;
}

function encodeStream(payloads: Buffer[]): Buffer {
  const encoder = new FrameEncoder({ maxFrameBytes: MAX_FRAME_BYTES });
  return Buffer.concat(payloads.flatMap((payload) => encoder.encode(MessageType.LINK_TEST, payload).chunks));
}

interface Delivery {
  frames: { sequence: number; payload: Buffer }[];
  /** Bytes that went through readTarget() (read in place). */
  inPlaceBytes: number;
  /** Payloads handed out as the memory readTarget() named. */
  inPlacePayloads: number;
}

/**
 * Feeds `stream` to `decoder` as a steering wire would: before each read it asks readTarget();
 * with a target it "reads" at most `readBytes(step)` into it and pushes the filled part as a view
 * of the target, else it reads into a fresh buffer of its own. Payloads are copied out as they
 * are handed over (the decoder reuses its buffer).
 */
function steer(decoder: FrameDecoder, stream: Buffer, minByteLength: number, readBytes: (step: number) => number): Delivery {
  const delivery: Delivery = { frames: [], inPlaceBytes: 0, inPlacePayloads: 0 };
  const targets = new Set<ArrayBufferLike>();
  const onFrame = (frame: Frame): void => {
    if (targets.has(frame.payload.buffer)) delivery.inPlacePayloads++;
    delivery.frames.push({ sequence: frame.sequence, payload: Buffer.from(frame.payload) });
  };
  let at = 0;
  for (let step = 0; at < stream.length; step++) {
    const size = Math.max(1, Math.min(readBytes(step), stream.length - at));
    const target = decoder.readTarget(minByteLength);
    if (target !== undefined) {
      const byteCount = Math.min(size, target.length);
      stream.copy(target, 0, at, at + byteCount);
      at += byteCount;
      delivery.inPlaceBytes += byteCount;
      targets.add(target.buffer);
      decoder.push(target.subarray(0, byteCount), onFrame);
    } else {
      const own = Buffer.from(stream.subarray(at, at + size));
      at += size;
      decoder.push(own, onFrame);
    }
  }
  return delivery;
}

function plainDecode(stream: Buffer): { sequence: number; payload: Buffer }[] {
  const frames: { sequence: number; payload: Buffer }[] = [];
  newDecoder(false).push(stream, (frame) => frames.push({ sequence: frame.sequence, payload: Buffer.from(frame.payload) }));
  return frames;
}

describe('74 link direct read: FrameDecoder.readTarget', () => {
  it('offers nothing between payloads, names exactly the missing part of one, and nothing once poisoned', () => {
    const payload = payloadOf(100_000, 1);
    const stream = encodeStream([payload]);
    const decoder = newDecoder();
    assert.equal(decoder.readTarget(1), undefined, 'no header yet');
    decoder.push(stream.subarray(0, 10), () => assert.fail('no frame yet'));
    assert.equal(decoder.readTarget(1), undefined, 'inside the header');
    decoder.push(stream.subarray(10, FRAME_HEADER_BYTES + 1000), () => assert.fail('no frame yet'));
    const target = decoder.readTarget(1);
    assert.ok(target !== undefined);
    assert.equal(target.length, payload.length - 1000);
    assert.equal(decoder.readTarget(payload.length)?.length, target.length, 'a payload of exactly the minimum is offered');
    assert.equal(decoder.readTarget(payload.length + 1), undefined, 'a payload below the minimum is not offered');
    // Half of the rest read in place, the other half as a chunk of the wire's own.
    const half = 40_000;
    stream.copy(target, 0, FRAME_HEADER_BYTES + 1000, FRAME_HEADER_BYTES + 1000 + half);
    decoder.push(target.subarray(0, half), () => assert.fail('no frame yet'));
    assert.equal(decoder.readTarget(1)?.length, payload.length - 1000 - half);
    let seen: Buffer | undefined;
    decoder.push(Buffer.from(stream.subarray(FRAME_HEADER_BYTES + 1000 + half)), (frame) => {
      seen = Buffer.from(frame.payload);
    });
    assert.deepEqual(seen, payload);
    // Between frames after a large payload: the next header alone is offered.
    assert.equal(decoder.readTarget(1)?.length, FRAME_HEADER_BYTES, 'the next header after a large payload');
    assert.equal(decoder.readTarget(payload.length + 1), undefined, 'not after a payload below the minimum');

    // Poisoned: a bad header, then no offer.
    const bad = newDecoder();
    const corrupt = Buffer.from(stream.subarray(0, FRAME_HEADER_BYTES + 10));
    corrupt[0] = 0;
    assert.throws(() => bad.push(corrupt, () => undefined), (error: unknown) => error instanceof LinkError && error.code === 'ERR_LINK_BAD_MAGIC');
    assert.equal(bad.readTarget(1), undefined);
  });

  it('takes a chunk read into the target in place: the payload handed out is that memory', () => {
    const payloads = [payloadOf(300_000, 2), payloadOf(5, 3), payloadOf(200_000, 4)];
    const stream = encodeStream(payloads);
    // Count what the decoder copies: chunks read in place must not be among it.
    const copy = Buffer.prototype.copy;
    let copiedBytes = 0;
    Buffer.prototype.copy = function (this: Buffer, ...args: Parameters<Buffer['copy']>): number {
      const byteCount = copy.apply(this, args);
      copiedBytes += byteCount;
      return byteCount;
    };
    let delivery: Delivery;
    try {
      delivery = steer(newDecoder(), stream, 32 * 1024, () => 64 * 1024);
    } finally {
      Buffer.prototype.copy = copy;
    }
    // steer() itself copies each read once (stream.copy into the target): count those out.
    const decoderCopiedBytes = copiedBytes - delivery.inPlaceBytes;
    assert.ok(decoderCopiedBytes + delivery.inPlaceBytes <= stream.length,
      `the decoder copied ${decoderCopiedBytes} bytes besides ${delivery.inPlaceBytes} read in place, of ${stream.length}`);
    assert.deepEqual(delivery.frames.map((frame) => frame.payload), payloads);
    assert.deepEqual(delivery.frames.map((frame) => frame.sequence), [1, 2, 3]);
    // (The 5-byte payload after a header read alone lands in the reused assembly buffer too.)
    assert.ok(delivery.inPlacePayloads >= 2, 'both large payloads were assembled where the reads went');
    assert.ok(delivery.inPlaceBytes > 0.7 * (300_000 + 200_000), `only ${delivery.inPlaceBytes} bytes were read in place`);
  });

  it('reads a stream of 64 KiB frames in 64 KiB reads with no payload copied (the header read alone)', () => {
    const payloads = Array.from({ length: 12 }, (_, index) => payloadOf(64 * 1024, 20 + index));
    const stream = encodeStream(payloads);
    const copy = Buffer.prototype.copy;
    let copiedBytes = 0;
    Buffer.prototype.copy = function (this: Buffer, ...args: Parameters<Buffer['copy']>): number {
      const byteCount = copy.apply(this, args);
      copiedBytes += byteCount;
      return byteCount;
    };
    let delivery: Delivery;
    try {
      delivery = steer(newDecoder(), stream, 32 * 1024, () => 64 * 1024);
    } finally {
      Buffer.prototype.copy = copy;
    }
    assert.deepEqual(delivery.frames.map((frame) => frame.payload), payloads);
    // The first payload starts inside the first read (nothing large came before it); every later
    // one is read in place from its first byte.
    assert.ok(delivery.inPlacePayloads >= payloads.length - 1, `${delivery.inPlacePayloads} of ${payloads.length} payloads in place`);
    const decoderCopiedBytes = copiedBytes - delivery.inPlaceBytes;
    assert.ok(decoderCopiedBytes <= 64 * 1024 + 28 * payloads.length, `the decoder copied ${decoderCopiedBytes} bytes`);
  });

  it('decodes the same frames with the stream split at every byte boundary, the rest read in place', () => {
    // Two frames with payloads larger than the minimum; after the cut every read goes through
    // readTarget when one is offered (in reads of 777 bytes, so targets are filled in parts).
    const payloads = [payloadOf(1500, 5), payloadOf(64, 6), payloadOf(1200, 7)];
    const stream = encodeStream(payloads);
    const expected = plainDecode(stream);
    assert.equal(expected.length, 3);
    for (let cut = 0; cut <= stream.length; cut++) {
      const decoder = newDecoder();
      const frames: { sequence: number; payload: Buffer }[] = [];
      if (cut > 0) decoder.push(Buffer.from(stream.subarray(0, cut)), (frame) => frames.push({ sequence: frame.sequence, payload: Buffer.from(frame.payload) }));
      const rest = steer(decoder, stream.subarray(cut), 100, () => 777);
      assert.deepEqual([...frames, ...rest.frames], expected, `cut at ${cut}`);
      assert.equal(decoder.bufferedBytes, 0, `cut at ${cut}`);
    }
  });

  it('decodes the same frames whatever the read sizes, with and without a reused assembly buffer', () => {
    const payloads = [payloadOf(70_000, 8), payloadOf(0, 9), payloadOf(33_000, 10), payloadOf(4096, 11), payloadOf(129_000, 12)];
    const stream = encodeStream(payloads);
    const expected = plainDecode(stream);
    for (const reuse of [true, false]) {
      for (const readBytes of [1, 28, 29, 4096, 65_536, 1 << 20]) {
        for (const minByteLength of [1, 32 * 1024]) {
          // Byte-by-byte reads of 236 KiB are slow: only with the large minimum.
          if (readBytes === 1 && minByteLength === 1) continue;
          const delivery = steer(newDecoder(reuse), stream, minByteLength, () => readBytes);
          assert.deepEqual(delivery.frames, expected, `reuse ${reuse}, reads of ${readBytes}, min ${minByteLength}`);
        }
      }
      // Irregular read sizes.
      const sizes = [1, 3, 27, 100, 5000, 65_536, 2, 40_000, 31_999];
      const delivery = steer(newDecoder(reuse), stream, 1024, (step) => sizes[step % sizes.length] as number);
      assert.deepEqual(delivery.frames, expected, `reuse ${reuse}, irregular reads`);
    }
  });

  it('still fails the CRC of a payload corrupted in place (ERR_LINK_CHECKSUM), and stays poisoned', () => {
    const payload = payloadOf(200_000, 13);
    const stream = encodeStream([payload, payloadOf(10, 14)]);
    for (const corruptAt of [FRAME_HEADER_BYTES + 50_000, FRAME_HEADER_BYTES + payload.length - 1]) {
      const corrupt = Buffer.from(stream);
      corrupt[corruptAt] = (corrupt[corruptAt] as number) ^ 0x01;
      const decoder = newDecoder();
      assert.throws(() => steer(decoder, corrupt, 1024, () => 65_536),
        (error: unknown) => error instanceof LinkError && error.code === 'ERR_LINK_CHECKSUM');
      assert.equal(decoder.readTarget(1), undefined);
      assert.throws(() => decoder.push(Buffer.from([1]), () => undefined), (error: unknown) => error instanceof LinkError && error.code === 'ERR_LINK_CHECKSUM');
    }
  });

  it('never offers more than a payload whose header passed the frame limit', () => {
    const decoder = newDecoder();
    decoder.setFrameLimit(64 * 1024);
    const encoder = new FrameEncoder({ maxFrameBytes: MAX_FRAME_BYTES });
    const [header] = encoder.encode(MessageType.LINK_TEST, payloadOf(100_000, 15)).chunks;
    assert.throws(() => decoder.push(header as Buffer, () => undefined),
      (error: unknown) => error instanceof LinkError && error.code === 'ERR_LINK_FRAME_TOO_LARGE');
    assert.equal(decoder.readTarget(1), undefined);
    // A link-level frame, for completeness: a PING's 8 bytes are never worth a target.
    const ping = newDecoder();
    ping.push(encoder.encode(FrameType.PING, Buffer.alloc(8)).chunks[0] as Buffer, () => undefined);
    assert.equal(ping.readTarget(32 * 1024), undefined);
  });
});
