// Unit tests of the link's frame codec (src/transport/frame.ts) and payload codec
// (src/transport/codec.ts): byte-exact headers written by hand from the layout in frame.ts's
// design note, every refusal of the decoder with its code, and every bound of the reader.

import { strict as assert } from 'node:assert';

import { crc32c } from '../../src/storage/crc32c';
import { BinaryReader, BinaryWriter, MAX_STRING_BYTES } from '../../src/transport/codec';
import { LinkError } from '../../src/transport/errors';
import {
  DEFAULT_MAX_FRAME_BYTES,
  FRAME_HEADER_BYTES,
  FRAME_MAGIC,
  FRAME_VERSION,
  type Frame,
  FrameDecoder,
  FrameEncoder,
  FrameFlag,
  FrameType,
  MIN_MAX_FRAME_BYTES,
  SMALL_CRC_BYTES,
  crc32cSmall,
  isLinkFrameType,
} from '../../src/transport/frame';
import { MessageType, isKnownMessageType } from '../../src/transport/message-types';

/** Hex with spaces and newlines ignored. */
function hex(text: string): Buffer {
  return Buffer.from(text.replace(/\s+/g, ''), 'hex');
}

function assertLinkError(fn: () => unknown, code: string, message?: RegExp): LinkError {
  let caught: unknown;
  assert.throws(fn, (error: unknown) => {
    caught = error;
    return true;
  });
  assert.ok(caught instanceof LinkError, `expected a LinkError, got ${String(caught)}`);
  assert.equal(caught.code, code, `code of: ${caught.message}`);
  if (message !== undefined) assert.match(caught.message, message);
  return caught;
}

/** A bitwise CRC32C (reflected polynomial 0x82f63b78), independent of the native one. */
function referenceCrc32c(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let bit = 0; bit < 8; bit++) crc = (crc >>> 1) ^ (0x82f63b78 & -(crc & 1));
  }
  return (crc ^ 0xffffffff) >>> 0;
}

function newDecoder(maxFrameBytes?: number): FrameDecoder {
  return new FrameDecoder(maxFrameBytes === undefined ? { isKnownMessageType } : { isKnownMessageType, maxFrameBytes });
}

/** Decodes `chunks` in order into a list of frames (payloads copied). */
function decodeAll(decoder: FrameDecoder, chunks: Buffer[]): Frame[] {
  const frames: Frame[] = [];
  for (const chunk of chunks) decoder.push(chunk, (frame) => frames.push({ ...frame, payload: Buffer.from(frame.payload) }));
  return frames;
}

/**
 * A frame header written by hand, field by field, with a correct CRC unless `crc` is given.
 */
function handHeader(fields: {
  magic?: number; version?: number; type: number; flags?: number; sequenceHigh?: number; sequenceLow?: number;
  correlation?: number; payloadLength: number; crc?: number;
}, payload: Buffer = Buffer.alloc(0)): Buffer {
  const header = Buffer.alloc(FRAME_HEADER_BYTES);
  header.writeUInt32BE(fields.magic ?? FRAME_MAGIC, 0);
  header.writeUInt8(fields.version ?? FRAME_VERSION, 4);
  header.writeUInt8(fields.type, 5);
  header.writeUInt16BE(fields.flags ?? 0, 6);
  header.writeUInt32BE(fields.sequenceHigh ?? 0, 8);
  header.writeUInt32BE(fields.sequenceLow ?? 1, 12);
  header.writeUInt32BE(fields.correlation ?? 0, 16);
  header.writeUInt32BE(fields.payloadLength, 20);
  header.writeUInt32BE(fields.crc ?? referenceCrc32c(Buffer.concat([header.subarray(0, 24), payload])), 24);
  return header;
}

/** Flips the bits of `mask` in byte `at`. */
function flip(buffer: Buffer, at: number, mask: number): void {
  buffer[at] = (buffer[at] as number) ^ mask;
}

function encodeOne(type: number, payload: Buffer, flags = 0, correlation = 0): Buffer {
  return Buffer.concat(new FrameEncoder().encode(type, payload, flags, correlation).chunks);
}

describe('70 link frame: constants', () => {
  it('has the documented magic, version, header size and limits', () => {
    assert.equal(FRAME_MAGIC, 0x424d4c4b);
    assert.equal(Buffer.from('BMLK').readUInt32BE(0), FRAME_MAGIC);
    assert.equal(FRAME_VERSION, 1);
    assert.equal(FRAME_HEADER_BYTES, 28);
    assert.equal(DEFAULT_MAX_FRAME_BYTES, 32 * 1024 * 1024 + 64 * 1024);
    assert.deepEqual(Object.values(FrameType), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.deepEqual([FrameFlag.REQUEST, FrameFlag.RESPONSE, FrameFlag.ERROR], [1, 2, 4]);
    assert.deepEqual([MessageType.LINK_TEST, MessageType.LINK_TEST_REQUEST], [0x20, 0x21]);
  });

  it('tells link-level types from message types', () => {
    for (let type = 0; type <= 0xff; type++) assert.equal(isLinkFrameType(type), type >= 1 && type <= 9, `type ${type}`);
    assert.ok(isKnownMessageType(0x20) && isKnownMessageType(0x21));
    assert.ok(!isKnownMessageType(0x22) && !isKnownMessageType(0x01));
  });
});

describe('70 link frame: encoder, byte-exact', () => {
  // LINK_TEST, REQUEST, sequence 1, correlation 0x01020304, payload "hello".
  const payload = Buffer.from('hello');
  const expectedHeaderWithoutCrc = Buffer.concat([
    hex('424d4c4b'), // magic "BMLK"
    hex('01'), // version
    hex('20'), // type LINK_TEST
    hex('0001'), // flags REQUEST
    hex('00000000 00000001'), // sequence 1, 64-bit
    hex('01020304'), // correlation
    hex('00000005'), // payloadLength
  ]);

  it('writes every header field where the design note says', () => {
    const { chunks, sequence } = new FrameEncoder().encode(MessageType.LINK_TEST, payload, FrameFlag.REQUEST, 0x01020304);
    assert.equal(sequence, 1);
    assert.equal(chunks.length, 2);
    const [header, body] = chunks as [Buffer, Buffer];
    assert.equal(header.length, FRAME_HEADER_BYTES);
    assert.deepEqual(header.subarray(0, 24), expectedHeaderWithoutCrc);
    // The payload is handed back as it is, not copied.
    assert.equal(body, payload);
  });

  it('the CRC32C covers the first 24 header bytes, then the payload', () => {
    const [header] = new FrameEncoder().encode(MessageType.LINK_TEST, payload, FrameFlag.REQUEST, 0x01020304).chunks as [Buffer];
    const crc = header.readUInt32BE(24);
    assert.equal(crc, crc32c(payload, crc32c(expectedHeaderWithoutCrc)));
    assert.equal(crc, referenceCrc32c(Buffer.concat([expectedHeaderWithoutCrc, payload])));
    // Pinned, so a change to the covered bytes or their order shows up here.
    assert.equal(crc, 0xc1fc68ad);
    assert.deepEqual(header, hex('424d4c4b 01 20 0001 0000000000000001 01020304 00000005 c1fc68ad'));
  });

  it('sums headers and small payloads in JS exactly as the addon does (crc32cSmall)', () => {
    // Deterministic pseudo-random bytes, every length up to past SMALL_CRC_BYTES, odd offsets,
    // and chained previous values.
    const bytes = Buffer.alloc(600);
    let state = 0x12345678;
    for (let index = 0; index < bytes.length; index++) {
      state = (Math.imul(state, 1103515245) + 12345) >>> 0;
      bytes[index] = state >>> 24;
    }
    for (let length = 0; length <= SMALL_CRC_BYTES * 2; length++) {
      for (const start of [0, 1, 7, 300]) {
        for (const previous of [0, 1, 0xffffffff, 0x9a3c17e5]) {
          assert.equal(crc32cSmall(bytes, start, start + length, previous), crc32c(bytes.subarray(start, start + length), previous),
            `length ${length} at ${start} after 0x${previous.toString(16)}`);
        }
      }
    }
    // The check value of CRC32C: "123456789" -> 0xe3069283.
    assert.equal(crc32cSmall(Buffer.from('123456789'), 0, 9, 0), 0xe3069283);
    // Small payloads are summed in JS, larger ones by the addon: the frames are the same either way.
    for (const length of [SMALL_CRC_BYTES, SMALL_CRC_BYTES + 1]) {
      const payload = bytes.subarray(0, length);
      const [header] = new FrameEncoder().encode(MessageType.LINK_TEST, payload).chunks as [Buffer];
      assert.equal(header.readUInt32BE(24), referenceCrc32c(Buffer.concat([header.subarray(0, 24), payload])));
    }
  });

  it('numbers frames 1, 2, 3, ... in the 64-bit sequence field', () => {
    const encoder = new FrameEncoder();
    for (let expected = 1; expected <= 3; expected++) {
      assert.equal(encoder.sequence, expected);
      const { chunks, sequence } = encoder.encode(FrameType.PING, Buffer.alloc(8));
      assert.equal(sequence, expected);
      assert.deepEqual((chunks[0] as Buffer).subarray(8, 16), hex(`00000000 0000000${expected}`));
    }
  });

  it('writes the high word of a sequence past 2^32', () => {
    // No unit test sends 2^32 frames: reach into the private counter instead.
    const encoder = new FrameEncoder();
    (encoder as unknown as { nextSequence: number }).nextSequence = 2 ** 32 + 0x0506;
    const [header] = encoder.encode(FrameType.PING, Buffer.alloc(0)).chunks as [Buffer];
    assert.deepEqual(header.subarray(8, 16), hex('00000001 00000506'));
  });

  it('sends a zero-length payload as the header alone', () => {
    const { chunks } = new FrameEncoder().encode(FrameType.WELCOME, Buffer.alloc(0));
    assert.equal(chunks.length, 1);
    const header = chunks[0] as Buffer;
    assert.equal(header.readUInt32BE(20), 0);
    assert.equal(header.readUInt32BE(24), referenceCrc32c(header.subarray(0, 24)));
    const frames = decodeAll(newDecoder(), [header]);
    assert.equal(frames.length, 1);
    assert.equal(frames[0]?.type, FrameType.WELCOME);
    assert.equal(frames[0]?.payload.length, 0);
  });

  it('refuses a payload above maxFrameBytes (ERR_LINK_FRAME_TOO_LARGE) without using a sequence', () => {
    const encoder = new FrameEncoder({ maxFrameBytes: MIN_MAX_FRAME_BYTES });
    const largest = MIN_MAX_FRAME_BYTES - FRAME_HEADER_BYTES;
    assertLinkError(() => encoder.encode(MessageType.LINK_TEST, Buffer.alloc(largest + 1)), 'ERR_LINK_FRAME_TOO_LARGE',
      new RegExp(`${largest + 1}-byte payload exceeds maxFrameBytes ${MIN_MAX_FRAME_BYTES}`));
    assert.equal(encoder.sequence, 1);
    assert.equal(encoder.encode(MessageType.LINK_TEST, Buffer.alloc(largest)).sequence, 1);
  });

  it('refuses caller mistakes with RangeError', () => {
    const encoder = new FrameEncoder();
    assert.throws(() => encoder.encode(0, Buffer.alloc(0)), RangeError);
    assert.throws(() => encoder.encode(0x100, Buffer.alloc(0)), RangeError);
    assert.throws(() => encoder.encode(1.5, Buffer.alloc(0)), RangeError);
    assert.throws(() => encoder.encode(FrameType.PING, Buffer.alloc(0), 0x0008), RangeError);
    assert.throws(() => encoder.encode(FrameType.PING, Buffer.alloc(0), 0, -1), RangeError);
    assert.throws(() => encoder.encode(FrameType.PING, Buffer.alloc(0), 0, 2 ** 32), RangeError);
    assert.throws(() => new FrameEncoder({ maxFrameBytes: MIN_MAX_FRAME_BYTES - 1 }), RangeError);
    assert.throws(() => new FrameDecoder({ maxFrameBytes: 2 ** 31 }), RangeError);
    assert.equal(encoder.sequence, 1);
  });
});

describe('70 link frame: decoder', () => {
  it('decodes the hand-written frame into its fields', () => {
    const bytes = hex('424d4c4b 01 20 0001 0000000000000001 01020304 00000005 c1fc68ad 68656c6c6f');
    const frames = decodeAll(newDecoder(), [bytes]);
    assert.deepEqual(frames, [{ type: 0x20, flags: FrameFlag.REQUEST, sequence: 1, correlation: 0x01020304, payload: Buffer.from('hello') }]);
  });

  it('decodes the same frames whatever the split, down to single bytes', () => {
    const encoder = new FrameEncoder();
    const stream = Buffer.concat([
      ...encoder.encode(FrameType.PING, Buffer.from('12345678')).chunks,
      ...encoder.encode(MessageType.LINK_TEST_REQUEST, Buffer.from('request'), FrameFlag.REQUEST, 7).chunks,
      ...encoder.encode(MessageType.LINK_TEST_REQUEST, Buffer.alloc(0), FrameFlag.RESPONSE | FrameFlag.ERROR, 7).chunks,
      ...encoder.encode(MessageType.LINK_TEST, Buffer.alloc(100, 0xab), FrameFlag.RESPONSE, 0xffffffff).chunks,
    ]);
    const whole = decodeAll(newDecoder(), [stream]);
    assert.equal(whole.length, 4);
    assert.deepEqual(whole.map((frame) => frame.sequence), [1, 2, 3, 4]);
    assert.deepEqual(whole[3], { type: 0x20, flags: FrameFlag.RESPONSE, sequence: 4, correlation: 0xffffffff, payload: Buffer.alloc(100, 0xab) });
    const bytes = [...stream].map((byte) => Buffer.from([byte]));
    const decoder = newDecoder();
    assert.deepEqual(decodeAll(decoder, bytes), whole);
    assert.equal(decoder.framesDecoded, 4);
    assert.equal(decoder.bufferedBytes, 0);
    for (const cut of [1, 27, 28, 29, 35, 36, 37, stream.length - 1]) {
      assert.deepEqual(decodeAll(newDecoder(), [stream.subarray(0, cut), stream.subarray(cut)]), whole, `cut at ${cut}`);
    }
  });

  it('hands out a payload inside one chunk as a view of it, and copies one that spans chunks', () => {
    const payload = Buffer.from('a payload of some bytes');
    const chunk = encodeOne(MessageType.LINK_TEST, payload);
    let seen: Buffer | undefined;
    newDecoder().push(chunk, (frame) => {
      seen = frame.payload;
    });
    assert.ok(seen !== undefined);
    assert.equal(seen.buffer, chunk.buffer);
    assert.equal(seen.byteOffset, chunk.byteOffset + FRAME_HEADER_BYTES);
    assert.deepEqual(seen, payload);

    // The header split across chunks, the payload whole in the second: still a view.
    const secondChunk = chunk.subarray(10);
    const viewDecoder = newDecoder();
    viewDecoder.push(chunk.subarray(0, 10), () => assert.fail('no frame yet'));
    viewDecoder.push(secondChunk, (frame) => {
      seen = frame.payload;
    });
    assert.equal(seen.buffer, chunk.buffer);

    // The payload split across chunks: assembled into a buffer of its own.
    const first = Buffer.from(chunk.subarray(0, FRAME_HEADER_BYTES + 5));
    const second = Buffer.from(chunk.subarray(FRAME_HEADER_BYTES + 5));
    const copyDecoder = newDecoder();
    copyDecoder.push(first, () => assert.fail('no frame yet'));
    assert.equal(copyDecoder.bufferedBytes, 5);
    copyDecoder.push(second, (frame) => {
      seen = frame.payload;
    });
    // Small buffers share Node's pool, so compare memory, not ArrayBuffers: the chunks may be
    // reused by the wire once pushed, and the payload must not change with them.
    assert.equal(seen.length, payload.length);
    first.fill(0);
    second.fill(0);
    assert.deepEqual(seen, payload);
  });

  it('refuses a bad magic (ERR_LINK_BAD_MAGIC)', () => {
    assertLinkError(() => newDecoder().push(handHeader({ magic: 0x474554a0, type: FrameType.PING, payloadLength: 0 }), () => undefined),
      'ERR_LINK_BAD_MAGIC', /bad frame magic 0x474554a0 \(expected 0x424d4c4b\)/);
    // An HTTP request on the link port, say.
    assertLinkError(() => newDecoder().push(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n\r\n'), () => undefined), 'ERR_LINK_BAD_MAGIC');
  });

  it('refuses another framing version (ERR_LINK_BAD_VERSION)', () => {
    for (const version of [0, 2, 255]) {
      assertLinkError(() => newDecoder().push(handHeader({ version, type: FrameType.PING, payloadLength: 0 }), () => undefined),
        'ERR_LINK_BAD_VERSION', new RegExp(`frame version ${version} is not supported`));
    }
  });

  it('refuses unknown link types and unregistered message types (ERR_LINK_BAD_TYPE)', () => {
    for (const type of [0x00, 0x0a, 0x1f]) {
      assertLinkError(() => newDecoder().push(handHeader({ type, payloadLength: 0 }), () => undefined),
        'ERR_LINK_BAD_TYPE', new RegExp(`unknown frame type 0x${type.toString(16)}$`));
    }
    assertLinkError(() => newDecoder().push(handHeader({ type: 0x22, payloadLength: 0 }), () => undefined), 'ERR_LINK_BAD_TYPE', /0x22/);
    assertLinkError(() => newDecoder().push(handHeader({ type: 0xff, payloadLength: 0 }), () => undefined), 'ERR_LINK_BAD_TYPE', /0xff/);
    // A decoder without a registry knows the link-level types only.
    assertLinkError(() => new FrameDecoder().push(handHeader({ type: 0x20, payloadLength: 0 }), () => undefined), 'ERR_LINK_BAD_TYPE');
    assert.equal(decodeAll(new FrameDecoder(), [handHeader({ type: FrameType.GOODBYE, payloadLength: 0 })]).length, 1);
  });

  it('refuses bad flags (ERR_LINK_BAD_FLAGS): an undefined bit, ERROR without RESPONSE, REQUEST with RESPONSE', () => {
    const bad = [0x0008, 0x8000, FrameFlag.REQUEST | 0x0010, FrameFlag.ERROR, FrameFlag.ERROR | FrameFlag.REQUEST,
      FrameFlag.REQUEST | FrameFlag.RESPONSE, FrameFlag.REQUEST | FrameFlag.RESPONSE | FrameFlag.ERROR];
    for (const flags of bad) {
      assertLinkError(() => newDecoder().push(handHeader({ type: MessageType.LINK_TEST, flags, payloadLength: 0 }), () => undefined),
        'ERR_LINK_BAD_FLAGS', new RegExp(`bad frame flags 0x${flags.toString(16)}$`));
    }
    for (const flags of [0, FrameFlag.REQUEST, FrameFlag.RESPONSE, FrameFlag.RESPONSE | FrameFlag.ERROR]) {
      const frames = decodeAll(newDecoder(), [handHeader({ type: MessageType.LINK_TEST, flags, payloadLength: 0 })]);
      assert.equal(frames[0]?.flags, flags);
    }
  });

  it('refuses a frame whose header says it is too long before any payload arrives (ERR_LINK_FRAME_TOO_LARGE)', () => {
    const limit = MIN_MAX_FRAME_BYTES;
    const tooLong = handHeader({ type: MessageType.LINK_TEST, payloadLength: limit - FRAME_HEADER_BYTES + 1 });
    // Header alone, whole.
    const decoder = newDecoder(limit);
    assertLinkError(() => decoder.push(tooLong, () => undefined), 'ERR_LINK_FRAME_TOO_LARGE',
      new RegExp(`frame of ${limit + 1} bytes exceeds maxFrameBytes ${limit}`));
    assert.ok(decoder.bufferedBytes <= FRAME_HEADER_BYTES, `buffered ${decoder.bufferedBytes}`);
    // Header byte by byte, then a little payload in the same push as the last header byte.
    const slow = newDecoder(limit);
    for (let at = 0; at < FRAME_HEADER_BYTES - 1; at++) slow.push(tooLong.subarray(at, at + 1), () => undefined);
    assert.equal(slow.bufferedBytes, FRAME_HEADER_BYTES - 1);
    assertLinkError(() => slow.push(Buffer.concat([tooLong.subarray(FRAME_HEADER_BYTES - 1), Buffer.alloc(1000)]), () => undefined),
      'ERR_LINK_FRAME_TOO_LARGE');
    assert.ok(slow.bufferedBytes <= FRAME_HEADER_BYTES, `buffered ${slow.bufferedBytes}`);
    // The largest length of all (4 GiB - 1) with the default limit.
    assertLinkError(() => newDecoder().push(handHeader({ type: FrameType.PING, payloadLength: 0xffffffff }), () => undefined),
      'ERR_LINK_FRAME_TOO_LARGE');
    // Exactly the limit is accepted.
    const payload = Buffer.alloc(limit - FRAME_HEADER_BYTES, 7);
    const frames = decodeAll(newDecoder(limit), [Buffer.concat(new FrameEncoder({ maxFrameBytes: limit }).encode(MessageType.LINK_TEST, payload).chunks)]);
    assert.equal(frames[0]?.payload.length, payload.length);
  });

  it('refuses a corrupted payload or header (ERR_LINK_CHECKSUM)', () => {
    const good = encodeOne(MessageType.LINK_TEST, Buffer.from('payload bytes'), FrameFlag.REQUEST, 42);
    const payloadFlip = Buffer.from(good);
    flip(payloadFlip, FRAME_HEADER_BYTES + 3, 0x10);
    assertLinkError(() => newDecoder().push(payloadFlip, () => assert.fail('delivered')), 'ERR_LINK_CHECKSUM',
      /frame CRC32C mismatch: computed 0x[0-9a-f]+, frame says 0x[0-9a-f]+/);
    // A bit of the correlation, of the sequence (read as corruption, not as a gap), of the CRC.
    for (const at of [17, 15, 8, 26]) {
      const headerFlip = Buffer.from(good);
      flip(headerFlip, at, 0x01);
      assertLinkError(() => newDecoder().push(headerFlip, () => assert.fail('delivered')), 'ERR_LINK_CHECKSUM');
    }
    // Split across chunks as well (the assembled path).
    const split = newDecoder();
    split.push(payloadFlip.subarray(0, 30), () => undefined);
    assertLinkError(() => split.push(payloadFlip.subarray(30), () => undefined), 'ERR_LINK_CHECKSUM');
    // A zero-length frame with a flipped header bit.
    const empty = handHeader({ type: FrameType.GOODBYE, payloadLength: 0 });
    flip(empty, 19, 0x80);
    assertLinkError(() => newDecoder().push(empty, () => undefined), 'ERR_LINK_CHECKSUM');
  });

  it('refuses a gap or a repeat in the sequence (ERR_LINK_SEQUENCE_GAP)', () => {
    const encoder = new FrameEncoder();
    const first = Buffer.concat(encoder.encode(FrameType.PING, Buffer.alloc(8)).chunks);
    encoder.encode(FrameType.PING, Buffer.alloc(8));
    const third = Buffer.concat(encoder.encode(FrameType.PING, Buffer.alloc(8)).chunks);
    const frames: Frame[] = [];
    const decoder = newDecoder();
    assertLinkError(() => decoder.push(Buffer.concat([first, third]), (frame) => frames.push(frame)), 'ERR_LINK_SEQUENCE_GAP',
      /frame sequence 3, expected 2/);
    // The frame before the bad one in the same chunk was delivered.
    assert.deepEqual(frames.map((frame) => frame.sequence), [1]);
    assertLinkError(() => newDecoder().push(Buffer.concat([first, first]), () => undefined), 'ERR_LINK_SEQUENCE_GAP', /sequence 1, expected 2/);
    assertLinkError(() => newDecoder().push(handHeader({ type: FrameType.PING, sequenceLow: 0, payloadLength: 0 }), () => undefined),
      'ERR_LINK_SEQUENCE_GAP', /sequence 0, expected 1/);
    // The high word is read: 2^32 + 3.
    assertLinkError(() => newDecoder().push(handHeader({ type: FrameType.PING, sequenceHigh: 1, sequenceLow: 3, payloadLength: 0 }), () => undefined),
      'ERR_LINK_SEQUENCE_GAP', /sequence 4294967299, expected 1/);
  });

  it('stays poisoned after an error: every later push throws the same error', () => {
    const decoder = newDecoder();
    const error = assertLinkError(() => decoder.push(handHeader({ magic: 0, type: FrameType.PING, payloadLength: 0 }), () => undefined),
      'ERR_LINK_BAD_MAGIC');
    assert.equal(decoder.error, error);
    const good = encodeOne(FrameType.PING, Buffer.alloc(8));
    for (const chunk of [good, Buffer.alloc(0), good.subarray(0, 1)]) {
      assert.throws(() => decoder.push(chunk, () => assert.fail('delivered after poisoning')), (thrown: unknown) => thrown === error);
    }
    assert.equal(decoder.framesDecoded, 0);
    assert.equal(newDecoder().error, undefined);
  });

  it('is poisoned by a LinkError thrown from onFrame (the connection uses this for its pre-handshake limit)', () => {
    const encoder = new FrameEncoder();
    const stream = Buffer.concat([...encoder.encode(FrameType.PING, Buffer.alloc(8)).chunks, ...encoder.encode(FrameType.PING, Buffer.alloc(8)).chunks]);
    const decoder = newDecoder();
    const limit = new LinkError('ERR_LINK_FRAME_TOO_LARGE', 'too large for now');
    assert.throws(() => decoder.push(stream, () => {
      throw limit;
    }), (thrown: unknown) => thrown === limit);
    assert.equal(decoder.error, limit);
    assert.throws(() => decoder.push(Buffer.alloc(1), () => undefined), (thrown: unknown) => thrown === limit);
  });
});

describe('70 link frame: BinaryWriter and BinaryReader', () => {
  function sample(): Buffer {
    return new BinaryWriter().u8(0xfe).u16(0xbeef).u32(0xdeadbeef).u64(2 ** 53 - 1).f64(-1.5)
      .bytes(Buffer.from([1, 2, 3])).string('contrôleur').raw(Buffer.from([9, 9])).encode();
  }

  function readSample(buffer: Buffer): unknown[] {
    const reader = new BinaryReader(buffer, 'sample');
    const values = [reader.u8(), reader.u16(), reader.u32(), reader.u64(), reader.f64(), reader.bytes(16), reader.string(), reader.raw(2)];
    reader.end();
    return values;
  }

  it('writes big-endian fields with u32 and u16 length prefixes', () => {
    assert.deepEqual(sample(), hex(`
      fe beef deadbeef 001fffff ffffffff bff8000000000000
      00000003 010203
      000b 636f6e7472c3b46c657572
      0909`));
  });

  it('round-trips every field type', () => {
    assert.deepEqual(readSample(sample()), [0xfe, 0xbeef, 0xdeadbeef, 2 ** 53 - 1, -1.5, Buffer.from([1, 2, 3]), 'contrôleur', Buffer.from([9, 9])]);
    const empty = new BinaryWriter().bytes(Buffer.alloc(0)).string('').encode();
    assert.deepEqual(empty, hex('00000000 0000'));
    const reader = new BinaryReader(empty, 'empty');
    assert.equal(reader.bytes(0).length, 0);
    assert.equal(reader.string(), '');
    assert.equal(reader.remainingBytes, 0);
    reader.end();
    const u64 = new BinaryReader(new BinaryWriter().u64(0).u64(2 ** 32).u64(0x123456789a).encode(), 'u64');
    assert.deepEqual([u64.u64(), u64.u64(), u64.u64()], [0, 2 ** 32, 0x123456789a]);
  });

  it('hands out bytes and raw fields as views', () => {
    const buffer = sample();
    const reader = new BinaryReader(buffer, 'sample');
    reader.raw(1 + 2 + 4 + 8 + 8);
    const bytes = reader.bytes(3);
    assert.equal(bytes.buffer, buffer.buffer);
    assert.equal(bytes.byteOffset, buffer.byteOffset + 27);
  });

  it('refuses every truncation with ERR_LINK_BAD_MESSAGE naming the message', () => {
    const full = sample();
    for (let length = 0; length < full.length; length++) {
      assertLinkError(() => readSample(full.subarray(0, length)), 'ERR_LINK_BAD_MESSAGE', /^sample: truncated \(needs \d+ more bytes at offset \d+ of \d+\)$/);
    }
    // A length prefix that points past the end.
    assertLinkError(() => new BinaryReader(hex('00000005 0102'), 'X').bytes(100), 'ERR_LINK_BAD_MESSAGE', /X: truncated/);
    assertLinkError(() => new BinaryReader(hex('0005 6162'), 'X').string(), 'ERR_LINK_BAD_MESSAGE', /X: truncated/);
    assertLinkError(() => new BinaryReader(hex('01'), 'X').raw(2), 'ERR_LINK_BAD_MESSAGE', /X: truncated/);
  });

  it('refuses trailing bytes at end()', () => {
    assertLinkError(() => readSample(Buffer.concat([sample(), Buffer.from([0, 0, 0])])), 'ERR_LINK_BAD_MESSAGE', /^sample: 3 trailing bytes$/);
    const reader = new BinaryReader(Buffer.from([1, 2]), 'pair');
    reader.u8();
    assert.equal(reader.remainingBytes, 1);
    assertLinkError(() => reader.end(), 'ERR_LINK_BAD_MESSAGE', /^pair: 1 trailing bytes$/);
  });

  it('refuses a u64 at or above 2^53 and fields above their maximum', () => {
    assert.equal(new BinaryReader(hex('001fffffffffffff'), 'X').u64(), 2 ** 53 - 1);
    for (const value of ['0020000000000000', 'ffffffffffffffff', '8000000000000000']) {
      assertLinkError(() => new BinaryReader(hex(value), 'X').u64(), 'ERR_LINK_BAD_MESSAGE', /X: 64-bit field above 2\^53/);
    }
    assertLinkError(() => new BinaryReader(hex('00000004 01020304'), 'X').bytes(3), 'ERR_LINK_BAD_MESSAGE', /X: field of 4 bytes exceeds 3/);
    assertLinkError(() => new BinaryReader(hex('0003 616263'), 'X').string(2), 'ERR_LINK_BAD_MESSAGE', /X: string of 3 bytes exceeds 2/);
    const long = Buffer.alloc(2 + MAX_STRING_BYTES + 1, 0x61);
    long.writeUInt16BE(MAX_STRING_BYTES + 1, 0);
    assertLinkError(() => new BinaryReader(long, 'X').string(), 'ERR_LINK_BAD_MESSAGE', /exceeds 4096/);
  });

  it('refuses caller mistakes in the writer with RangeError', () => {
    for (const value of [-1, 2 ** 53, 1.5, Number.NaN]) assert.throws(() => new BinaryWriter().u64(value), RangeError);
    assert.throws(() => new BinaryWriter().string('x'.repeat(MAX_STRING_BYTES + 1)), RangeError);
    assert.equal(new BinaryWriter().string('x'.repeat(MAX_STRING_BYTES)).encode().length, 2 + MAX_STRING_BYTES);
  });
});
