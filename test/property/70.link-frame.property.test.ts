// Property tests of the link's codecs: any split of a valid frame stream decodes to the same
// frames; garbage never makes the frame decoder, the payload reader or the handshake machines
// throw anything but a coded LinkError, and the decoder never buffers more than its limit.
// The seed is printed; rerun a failure with LINK_PROPERTY_SEED=<seed>.

import { strict as assert } from 'node:assert';

import fc from 'fast-check';

import { LINK_ERROR_CODES } from '../../src/errors';
import { BinaryReader, BinaryWriter } from '../../src/transport/codec';
import { LinkError } from '../../src/transport/errors';
import {
  FRAME_HEADER_BYTES,
  FRAME_MAGIC,
  FRAME_VERSION,
  type Frame,
  FrameDecoder,
  FrameEncoder,
  FrameFlag,
  FrameType,
  MIN_MAX_FRAME_BYTES,
  crc32cCombine,
} from '../../src/transport/frame';
import { crc32c } from '../../src/storage/crc32c';
import { AcceptorHandshake, DialerHandshake, type HandshakeStep, NONCE_BYTES, parseRefusal } from '../../src/transport/handshake';
import { MessageType, isKnownMessageType } from '../../src/transport/message-types';

const SEED = process.env.LINK_PROPERTY_SEED !== undefined ? Number(process.env.LINK_PROPERTY_SEED) : Date.now() % 2 ** 31;
const RUNS = process.env.LINK_PROPERTY_RUNS !== undefined ? Number(process.env.LINK_PROPERTY_RUNS) : 300;
const MAX_FRAME_BYTES = MIN_MAX_FRAME_BYTES;

const FRAME_TYPES = [...Object.values(FrameType), ...Object.values(MessageType)];
const VALID_FLAGS = [0, FrameFlag.REQUEST, FrameFlag.RESPONSE, FrameFlag.RESPONSE | FrameFlag.ERROR];

interface PlainFrame {
  type: number;
  flags: number;
  correlation: number;
  payload: Buffer;
}

const frameArbitrary: fc.Arbitrary<PlainFrame> = fc.record({
  type: fc.constantFrom(...FRAME_TYPES),
  flags: fc.constantFrom(...VALID_FLAGS),
  correlation: fc.nat({ max: 0xffffffff }),
  // Mostly small payloads, some up to 4 KiB, some empty ('max': fast-check otherwise stays near 10).
  payload: fc.oneof(
    { weight: 3, arbitrary: fc.uint8Array({ maxLength: 64, size: 'max' }) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 4096, size: 'max' }) },
    { weight: 1, arbitrary: fc.constant(new Uint8Array(0)) },
  ).map((bytes) => Buffer.from(bytes)),
});

/** How to cut a stream: at arbitrary points, or into chunks of one size (1: byte by byte). */
type Splitter = { kind: 'cuts'; cuts: number[] } | { kind: 'every'; byteCount: number };

const splitterArbitrary: fc.Arbitrary<Splitter> = fc.oneof(
  fc.array(fc.nat(), { maxLength: 40, size: 'max' }).map((cuts): Splitter => ({ kind: 'cuts', cuts })),
  fc.constantFrom(1, 2, 3, 27, 28, 29).map((byteCount): Splitter => ({ kind: 'every', byteCount })),
  fc.integer({ min: 1, max: 5000 }).map((byteCount): Splitter => ({ kind: 'every', byteCount })),
);

function split(bytes: Buffer, splitter: Splitter): Buffer[] {
  const chunks: Buffer[] = [];
  if (splitter.kind === 'every') {
    for (let at = 0; at < bytes.length; at += splitter.byteCount) chunks.push(bytes.subarray(at, at + splitter.byteCount));
    return chunks;
  }
  const points = [...new Set(splitter.cuts.map((cut) => cut % (bytes.length + 1)))].sort((a, b) => a - b);
  let previous = 0;
  for (const point of points) {
    chunks.push(bytes.subarray(previous, point));
    previous = point;
  }
  chunks.push(bytes.subarray(previous));
  return chunks;
}

function encodeStream(frames: PlainFrame[]): Buffer {
  const encoder = new FrameEncoder({ maxFrameBytes: MAX_FRAME_BYTES });
  return Buffer.concat(frames.flatMap((frame) => encoder.encode(frame.type, frame.payload, frame.flags, frame.correlation).chunks));
}

function newDecoder(): FrameDecoder {
  return new FrameDecoder({ maxFrameBytes: MAX_FRAME_BYTES, isKnownMessageType });
}

function assertCodedLinkError(error: unknown, codes?: readonly string[]): asserts error is LinkError {
  if (error instanceof assert.AssertionError) throw error;
  assert.ok(error instanceof LinkError, `not a LinkError: ${String(error)}${error instanceof Error ? `\n${error.stack}` : ''}`);
  assert.match(error.code, /^ERR_LINK_[A-Z_]+$/);
  assert.ok((LINK_ERROR_CODES as readonly string[]).includes(error.code), `unlisted code ${error.code}`);
  if (codes !== undefined) assert.ok(codes.includes(error.code), `unexpected code ${error.code}: ${error.message}`);
}

/** A header with valid magic and version and random fields, so decoding gets past the start. */
const plausibleHeaderArbitrary: fc.Arbitrary<Buffer> = fc.record({
  version: fc.oneof({ weight: 4, arbitrary: fc.constant(FRAME_VERSION) }, { weight: 1, arbitrary: fc.nat({ max: 255 }) }),
  type: fc.oneof(fc.constantFrom(...FRAME_TYPES), fc.nat({ max: 255 })),
  flags: fc.oneof(fc.constantFrom(...VALID_FLAGS), fc.nat({ max: 0xffff })),
  sequence: fc.oneof(fc.constant(1), fc.nat({ max: 0xffffffff })),
  payloadLength: fc.oneof(fc.nat({ max: 300 }), fc.nat({ max: 2 * MAX_FRAME_BYTES }), fc.nat({ max: 0xffffffff })),
  crc: fc.nat({ max: 0xffffffff }),
  tail: fc.uint8Array({ maxLength: 400, size: 'max' }),
}).map((fields) => {
  const header = Buffer.alloc(FRAME_HEADER_BYTES);
  header.writeUInt32BE(FRAME_MAGIC, 0);
  header.writeUInt8(fields.version, 4);
  header.writeUInt8(fields.type, 5);
  header.writeUInt16BE(fields.flags, 6);
  header.writeUInt32BE(0, 8);
  header.writeUInt32BE(fields.sequence, 12);
  header.writeUInt32BE(0, 16);
  header.writeUInt32BE(fields.payloadLength, 20);
  header.writeUInt32BE(fields.crc, 24);
  return Buffer.concat([header, Buffer.from(fields.tail)]);
});

type Mutation =
  | { kind: 'flip'; at: number; mask: number }
  | { kind: 'set'; at: number; value: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'insert'; at: number; bytes: Uint8Array }
  | { kind: 'delete'; at: number; byteCount: number };

const mutationArbitrary: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), mask: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant('set' as const), at: fc.nat(), value: fc.nat({ max: 255 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 40 }) }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), byteCount: fc.integer({ min: 1, max: 40 }) }),
);

function mutate(stream: Buffer, mutations: Mutation[]): Buffer {
  let bytes = Buffer.from(stream);
  for (const mutation of mutations) {
    if (bytes.length === 0) break;
    const at = mutation.at % bytes.length;
    switch (mutation.kind) {
      case 'flip': bytes[at] = (bytes[at] as number) ^ mutation.mask; break;
      case 'set': bytes[at] = mutation.value; break;
      case 'truncate': bytes = bytes.subarray(0, at); break;
      case 'insert': bytes = Buffer.concat([bytes.subarray(0, at), Buffer.from(mutation.bytes), bytes.subarray(at)]); break;
      case 'delete': bytes = Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + mutation.byteCount)]); break;
    }
  }
  return bytes;
}

const garbageArbitrary: fc.Arbitrary<Buffer> = fc.oneof(
  fc.uint8Array({ maxLength: 2048, size: 'max' }).map((bytes) => Buffer.from(bytes)),
  fc.array(plausibleHeaderArbitrary, { minLength: 1, maxLength: 4 }).map((headers) => Buffer.concat(headers)),
  fc.tuple(fc.array(frameArbitrary, { minLength: 1, maxLength: 6 }), fc.array(mutationArbitrary, { minLength: 1, maxLength: 6 }))
    .map(([frames, mutations]) => mutate(encodeStream(frames), mutations)),
);

describe('70 link frame codec (property)', function () {
  this.timeout(120_000);

  before(() => {
    // Printed so a failure can be replayed: LINK_PROPERTY_SEED=<seed>.
    console.log(`      link property seed: ${SEED} (runs: ${RUNS})`);
  });

  it('frame streams split anywhere decode to the same frames, in order', () => {
    fc.assert(
      fc.property(fc.array(frameArbitrary, { minLength: 1, maxLength: 12 }), splitterArbitrary, (frames, splitter) => {
        const stream = encodeStream(frames);
        const decoder = newDecoder();
        const decoded: Frame[] = [];
        for (const chunk of split(stream, splitter)) {
          decoder.push(chunk, (frame) => decoded.push({ ...frame, payload: Buffer.from(frame.payload) }));
          assert.ok(decoder.bufferedBytes <= MAX_FRAME_BYTES);
        }
        assert.equal(decoder.bufferedBytes, 0, 'bytes left over');
        assert.equal(decoder.framesDecoded, frames.length);
        assert.deepEqual(decoded, frames.map((frame, index) => ({ ...frame, sequence: index + 1 })));
      }),
      { seed: SEED, numRuns: RUNS },
    );
  });

  it('frame streams read through readTarget (in place) in reads of any size decode to the same frames', () => {
    // A steering wire (tcp.ts) asks readTarget() before each read and fills the target in place;
    // the read sizes come from the splitter, the minimum offered rest is arbitrary too.
    fc.assert(
      fc.property(fc.array(frameArbitrary, { minLength: 1, maxLength: 12 }), splitterArbitrary, fc.integer({ min: 1, max: 5000 }),
        fc.boolean(), (frames, splitter, minByteLength, reuseAssembly) => {
          const stream = encodeStream(frames);
          const decoder = new FrameDecoder({ maxFrameBytes: MAX_FRAME_BYTES, isKnownMessageType, reuseAssembly });
          const decoded: Frame[] = [];
          const onFrame = (frame: Frame): void => {
            decoded.push({ ...frame, payload: Buffer.from(frame.payload) });
          };
          const sizes = split(stream, splitter).map((chunk) => chunk.length).filter((length) => length > 0);
          let at = 0;
          for (let step = 0; at < stream.length; step++) {
            const size = Math.min(sizes[step % sizes.length] as number, stream.length - at);
            const target = decoder.readTarget(minByteLength);
            if (target === undefined) {
              decoder.push(Buffer.from(stream.subarray(at, at + size)), onFrame);
              at += size;
            } else {
              const byteCount = Math.min(size, target.length);
              stream.copy(target, 0, at, at + byteCount);
              at += byteCount;
              decoder.push(target.subarray(0, byteCount), onFrame);
            }
            assert.ok(decoder.bufferedBytes <= MAX_FRAME_BYTES);
          }
          assert.equal(decoder.bufferedBytes, 0, 'bytes left over');
          assert.deepEqual(decoded, frames.map((frame, index) => ({ ...frame, sequence: index + 1 })));
        }),
      { seed: SEED, numRuns: RUNS },
    );
  });

  it('garbage only ever throws a coded LinkError, and the decoder stays within maxFrameBytes', () => {
    fc.assert(
      fc.property(garbageArbitrary, splitterArbitrary, (bytes, splitter) => {
        const decoder = newDecoder();
        let delivered = 0;
        let failure: unknown;
        for (const chunk of split(bytes, splitter)) {
          try {
            decoder.push(chunk, () => {
              delivered++;
            });
          } catch (error) {
            failure = error;
          }
          assert.ok(decoder.bufferedBytes <= MAX_FRAME_BYTES, `buffered ${decoder.bufferedBytes}`);
          if (failure !== undefined) break;
        }
        // Every frame delivered consumed at least a header.
        assert.ok(delivered <= Math.floor(bytes.length / FRAME_HEADER_BYTES));
        if (failure === undefined) return;
        assertCodedLinkError(failure);
        assert.equal(decoder.error, failure);
        // Poisoned: the next push throws the same error and delivers nothing.
        assert.throws(() => decoder.push(Buffer.from([0x42]), () => assert.fail('delivered after poisoning')),
          (error: unknown) => error === failure);
      }),
      { seed: SEED, numRuns: RUNS },
    );
  });

  it('BinaryReader on random bytes only throws ERR_LINK_BAD_MESSAGE', () => {
    type Read = { kind: 'u8' | 'u16' | 'u32' | 'u64' | 'f64' | 'end' } | { kind: 'bytes' | 'string' | 'raw'; limit: number };
    const readArbitrary: fc.Arbitrary<Read> = fc.oneof(
      fc.constantFrom('u8', 'u16', 'u32', 'u64', 'f64', 'end').map((kind) => ({ kind }) as Read),
      fc.record({ kind: fc.constantFrom('bytes' as const, 'string' as const, 'raw' as const), limit: fc.nat({ max: 5000 }) }),
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300, size: 'max' }), fc.array(readArbitrary, { maxLength: 20 }), (raw, reads) => {
        const buffer = Buffer.from(raw);
        const reader = new BinaryReader(buffer, 'random');
        try {
          for (const read of reads) {
            const before = reader.remainingBytes;
            switch (read.kind) {
              case 'u8': assert.ok(Number.isInteger(reader.u8())); break;
              case 'u16': assert.ok(Number.isInteger(reader.u16())); break;
              case 'u32': assert.ok(Number.isInteger(reader.u32())); break;
              case 'u64': assert.ok(Number.isSafeInteger(reader.u64())); break;
              case 'f64': assert.equal(typeof reader.f64(), 'number'); break;
              case 'bytes': assert.ok(reader.bytes(read.limit).length <= read.limit); break;
              case 'string': assert.equal(typeof reader.string(Math.min(read.limit, 4096)), 'string'); break;
              case 'raw': assert.equal(reader.raw(read.limit).length, read.limit); break;
              case 'end': reader.end(); break;
            }
            assert.ok(reader.remainingBytes <= before && reader.remainingBytes >= 0);
          }
        } catch (error) {
          assertCodedLinkError(error, ['ERR_LINK_BAD_MESSAGE']);
          assert.match(error.message, /^random: /);
        }
      }),
      { seed: SEED, numRuns: RUNS },
    );
  });

  it('handshake receive() on random frames only returns a step or throws a LinkError', () => {
    const id = fc.oneof(fc.constantFrom('alpha', 'bravo', 'charlie'), fc.string({ maxLength: 70 }));
    const helloArbitrary = fc.record({
      min: fc.nat({ max: 3 }), max: fc.nat({ max: 3 }), from: id, to: id, features: fc.nat({ max: 0xffffffff }),
      nonce: fc.uint8Array({ minLength: NONCE_BYTES, maxLength: NONCE_BYTES }), auth: fc.nat({ max: 2 }),
    }).map((f) => new BinaryWriter().u16(f.min).u16(f.max).string(f.from).string(f.to).u32(f.features).raw(Buffer.from(f.nonce)).u8(f.auth).encode());
    const replyArbitrary = fc.record({
      version: fc.nat({ max: 3 }), from: id, features: fc.nat({ max: 0xffffffff }),
      nonce: fc.uint8Array({ minLength: NONCE_BYTES, maxLength: NONCE_BYTES }), auth: fc.nat({ max: 2 }),
      proof: fc.oneof(fc.constant(new Uint8Array(0)), fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.uint8Array({ maxLength: 40 })),
    }).map((f) => new BinaryWriter().u16(f.version).string(f.from).u32(f.features).raw(Buffer.from(f.nonce)).u8(f.auth)
      .bytes(Buffer.from(f.proof)).encode());
    const smallPayload = fc.oneof(
      fc.uint8Array({ maxLength: 200, size: 'max' }).map((bytes) => Buffer.from(bytes)),
      fc.constant(Buffer.alloc(0)),
      fc.uint8Array({ maxLength: 40 }).map((proof) => new BinaryWriter().bytes(Buffer.from(proof)).encode()),
      fc.tuple(fc.string({ maxLength: 70 }), fc.string({ maxLength: 100 })).map(([code, message]) => new BinaryWriter().string(code).string(message).encode()),
    );
    // Frames a machine accepts, so that random sequences also reach the later stages.
    const acceptable = fc.oneof(
      fc.constantFrom(0, 1).map((auth) => new BinaryWriter().u16(1).u16(2).string('alpha').string('bravo').u32(3)
        .raw(Buffer.alloc(NONCE_BYTES, 7)).u8(auth).encode()),
      fc.constant(new BinaryWriter().u16(2).string('bravo').u32(1).raw(Buffer.alloc(NONCE_BYTES, 9)).u8(0).bytes(Buffer.alloc(0)).encode()),
      fc.constant(new BinaryWriter().bytes(Buffer.alloc(0)).encode()),
    );
    const payloadArbitrary = fc.oneof(helloArbitrary, replyArbitrary, smallPayload, acceptable, acceptable,
      fc.tuple(fc.oneof(helloArbitrary, replyArbitrary), fc.array(mutationArbitrary, { minLength: 1, maxLength: 3 }))
        .map(([payload, mutations]) => mutate(payload, mutations)));
    const typeArbitrary = fc.oneof({ weight: 4, arbitrary: fc.constantFrom(1, 2, 3, 4, 5) }, { weight: 1, arbitrary: fc.nat({ max: 255 }) });
    const kinds = new Set(['continue', 'done', 'refuse', 'refused']);

    function check(receive: () => HandshakeStep, failed: boolean): boolean {
      let step: HandshakeStep;
      try {
        step = receive();
      } catch (error) {
        assertCodedLinkError(error, ['ERR_LINK_BAD_MESSAGE']);
        return true;
      }
      assert.ok(kinds.has(step.kind), `unknown step ${JSON.stringify(step)}`);
      if (failed) assert.ok(step.kind === 'refuse' || step.kind === 'refused', `a failed machine went on: ${step.kind}`);
      if (step.kind === 'refuse') {
        assert.match(step.code, /^ERR_LINK_/);
        assert.equal(step.send.length, 1);
        assert.equal(step.send[0]?.type, FrameType.REFUSE);
        assert.deepEqual(parseRefusal((step.send[0] as { payload: Buffer }).payload), { code: step.code, message: `refused by the peer: ${step.message}` });
        return true;
      }
      if (step.kind === 'refused') {
        assert.match(step.code, /^ERR_LINK_/);
        return true;
      }
      for (const out of step.send) assert.ok([FrameType.HELLO_REPLY, FrameType.AUTH, FrameType.WELCOME].includes(out.type as 2 | 3 | 4));
      return false;
    }

    fc.assert(
      fc.property(
        fc.array(fc.tuple(typeArbitrary, payloadArbitrary), { minLength: 1, maxLength: 6 }),
        fc.boolean(),
        (frames, withSecret) => {
          const secret = withSecret ? Buffer.from('s3cret') : undefined;
          const acceptor = new AcceptorHandshake({
            selfId: 'bravo', versions: { min: 1, max: 2 }, features: 0xff,
            lookupPeer: (peerId) => (peerId === 'alpha' || peerId === 'charlie' ? { secret } : undefined),
            nonce: Buffer.alloc(NONCE_BYTES, 0xa1),
          });
          const dialer = new DialerHandshake({
            selfId: 'alpha', expectedPeerId: 'bravo', versions: { min: 1, max: 2 }, features: 0xff, secret, nonce: Buffer.alloc(NONCE_BYTES, 0xd1),
          });
          dialer.start();
          let acceptorFailed = false;
          let dialerFailed = false;
          for (const [type, payload] of frames) {
            acceptorFailed = check(() => acceptor.receive(type, payload), acceptorFailed) || acceptorFailed;
            dialerFailed = check(() => dialer.receive(type, payload), dialerFailed) || dialerFailed;
          }
        },
      ),
      { seed: SEED, numRuns: RUNS },
    );
  });
  it('crc32cCombine(crc(A), crc(B), |B|) is crc(A B), and a frame encoded with the payload CRC is the same frame', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 5000 }), fc.uint8Array({ maxLength: 70000 }), fc.integer({ min: 0x20, max: 0x2f }), (a, b, type) => {
        const left = Buffer.from(a);
        const right = Buffer.from(b);
        assert.equal(crc32cCombine(crc32c(left), crc32c(right), right.length), crc32c(Buffer.concat([left, right])));
        const plain = new FrameEncoder({ maxFrameBytes: 1 << 20 }).encode(type, right);
        const combined = new FrameEncoder({ maxFrameBytes: 1 << 20 }).encode(type, right, 0, 0, crc32c(right));
        assert.deepEqual(Buffer.concat(combined.chunks), Buffer.concat(plain.chunks));
      }),
      { seed: SEED, numRuns: Math.min(RUNS, 200) },
    );
    // Lengths the cache of x^(8n) holds and does not: the same answer either way.
    for (const length of [1, 7, 4096, 65536, 65536, 1 << 20, 123457]) {
      const left = Buffer.from('blockmirror');
      const right = Buffer.alloc(length, 0x5a);
      assert.equal(crc32cCombine(crc32c(left), crc32c(right), length), crc32c(Buffer.concat([left, right])), `length ${length}`);
    }
  });
});
