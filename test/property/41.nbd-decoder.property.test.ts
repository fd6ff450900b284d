// Property tests of the NBD decoders: any split of a valid stream decodes to the same messages,
// and garbage never makes a decoder throw anything but a coded BlockmirrorError, nor hang.
// The seed is printed; rerun a failure with NBD_PROPERTY_SEED=<seed>.

import { strict as assert } from 'node:assert';

import fc from 'fast-check';

import { BlockmirrorError } from '../../src/errors';
import { NBD_ERROR_CODES } from '../../src/nbd/errors';
import * as P from '../../src/nbd/protocol';

const SEED = process.env.NBD_PROPERTY_SEED !== undefined ? Number(process.env.NBD_PROPERTY_SEED) : Date.now() % 2 ** 31;
const RUNS = process.env.NBD_PROPERTY_RUNS !== undefined ? Number(process.env.NBD_PROPERTY_RUNS) : 300;
const MAX_PAYLOAD = 4096;
const MAX_DISCARD = 8192;

interface PlainRequest {
  type: number;
  flags: number;
  cookie: bigint;
  offset: bigint;
  length: number;
  payload: Buffer | null;
  dropped: boolean;
}

const requestArbitrary: fc.Arbitrary<PlainRequest> = fc.oneof(
  // Commands without payload (any type but WRITE, including unknown ones).
  fc
    .record({
      type: fc.integer({ min: 0, max: 0xffff }).filter((type) => type !== P.NBD_CMD_WRITE),
      flags: fc.integer({ min: 0, max: 0xffff }),
      cookie: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
      offset: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
      length: fc.integer({ min: 0, max: 0xffffffff }),
    })
    .map((r) => ({ ...r, payload: null, dropped: false })),
  // WRITEs with a payload within the limit.
  fc
    .record({
      flags: fc.integer({ min: 0, max: 0xffff }),
      cookie: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
      offset: fc.bigInt({ min: 0n, max: 2n ** 53n - 1n }),
      payload: fc.uint8Array({ minLength: 0, maxLength: MAX_PAYLOAD }),
    })
    .map((r) => ({ type: P.NBD_CMD_WRITE, flags: r.flags, cookie: r.cookie, offset: r.offset, length: r.payload.length, payload: r.payload.length === 0 ? null : Buffer.from(r.payload), dropped: false })),
  // WRITEs above the payload limit but within the discard limit.
  fc
    .record({
      cookie: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
      length: fc.integer({ min: MAX_PAYLOAD + 1, max: MAX_DISCARD }),
    })
    .map((r) => ({ type: P.NBD_CMD_WRITE, flags: 0, cookie: r.cookie, offset: 0n, length: r.length, payload: null, dropped: true })),
);

function encode(request: PlainRequest): Buffer {
  const payload = request.dropped ? Buffer.alloc(request.length, 0xee) : (request.payload ?? undefined);
  return P.encodeRequest(request.type, request.flags, request.cookie, request.offset, request.length, payload);
}

/** Cuts `bytes` at the given (sorted, deduplicated) positions. */
function split(bytes: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((cut) => cut % (bytes.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let previous = 0;
  for (const point of points) {
    chunks.push(bytes.subarray(previous, point));
    previous = point;
  }
  chunks.push(bytes.subarray(previous));
  return chunks;
}

/** A copy of what the decoder handed out (its request object and payload are reused). */
function toPlain(request: P.NbdRequest): PlainRequest {
  return {
    type: request.type,
    flags: request.flags,
    cookie: P.cookieOf(request),
    offset: BigInt(request.offset),
    length: request.length,
    payload: request.payload === null ? null : Buffer.from(request.payload),
    dropped: request.payloadDropped,
  };
}

function assertSameRequests(decoded: PlainRequest[], requests: PlainRequest[]): void {
  assert.equal(decoded.length, requests.length);
  requests.forEach((expected, index) => {
    const actual = decoded[index] as PlainRequest;
    assert.equal(actual.type, expected.type);
    assert.equal(actual.flags, expected.flags);
    assert.equal(actual.cookie, expected.cookie);
    // Offsets travel as doubles: exact below 2^53, monotone above.
    if (expected.offset < 2n ** 53n) assert.equal(actual.offset, expected.offset);
    else assert.ok(Number(actual.offset) >= 2 ** 53);
    assert.equal(actual.length, expected.length);
    assert.equal(actual.dropped, expected.dropped);
    assert.deepEqual(actual.payload, expected.payload);
  });
}

function isCodedNbdError(error: unknown): boolean {
  return error instanceof BlockmirrorError && (NBD_ERROR_CODES as readonly string[]).includes(error.code);
}

describe('41 nbd decoders (property)', function () {
  this.timeout(120_000);

  before(() => {
    // Printed so a failure can be replayed: NBD_PROPERTY_SEED=<seed>.
    console.log(`      nbd property seed: ${SEED} (runs: ${RUNS})`);
  });

  it('request streams split anywhere decode to the same requests', () => {
    fc.assert(
      fc.property(fc.array(requestArbitrary, { minLength: 1, maxLength: 20 }), fc.array(fc.nat(), { maxLength: 40 }), (requests, cuts) => {
        const stream = Buffer.concat(requests.map(encode));
        const decoder = new P.RequestDecoder({ maxPayloadBytes: MAX_PAYLOAD, maxDiscardBytes: MAX_DISCARD });
        const decoded: PlainRequest[] = [];
        for (const chunk of split(stream, cuts)) {
          decoder.push(chunk);
          for (let request = decoder.next(); request !== null; request = decoder.next()) decoded.push(toPlain(request));
        }
        assert.ok(decoder.idle, 'bytes left over');
        assertSameRequests(decoded, requests);
      }),
      { seed: SEED, numRuns: RUNS },
    );
  });

  it('streams received partly in place (payloadWindow) decode to the same requests', () => {
    // A reader like server.ts: each step reads up to `size` bytes, into the payload window when
    // the decoder offers one and the step says so, else as a pushed chunk; the chunks are copies
    // in a receive buffer that is overwritten once the decoder has consumed it.
    fc.assert(
      fc.property(
        fc.array(requestArbitrary, { minLength: 1, maxLength: 20 }),
        fc.array(fc.tuple(fc.integer({ min: 1, max: 6000 }), fc.boolean()), { minLength: 1, maxLength: 50 }),
        (requests, steps) => {
          const stream = Buffer.concat(requests.map(encode));
          const decoder = new P.RequestDecoder({ maxPayloadBytes: MAX_PAYLOAD, maxDiscardBytes: MAX_DISCARD });
          const receive = Buffer.alloc(8192);
          const decoded: PlainRequest[] = [];
          let position = 0;
          let inPlace = 0;
          for (let step = 0; position < stream.length; step++) {
            const [size, preferWindow] = steps[step % steps.length] as [number, boolean];
            const window = decoder.payloadWindow();
            if (window !== null && preferWindow) {
              const take = Math.min(size, window.length, stream.length - position);
              stream.copy(window, 0, position, position + take);
              decoder.payloadReceived(take);
              position += take;
              inPlace += take;
            } else {
              // Reuse the receive buffer only when nothing queued refers to it.
              if (decoder.queue.length > 0) decoder.queue.moveTo(Buffer.allocUnsafe(decoder.queue.length));
              const take = Math.min(size, receive.length, stream.length - position);
              stream.copy(receive, 0, position, position + take);
              decoder.push(receive.subarray(0, take));
              position += take;
            }
            for (let request = decoder.next(); request !== null; request = decoder.next()) decoded.push(toPlain(request));
            // Scribble over the receive buffer where nothing is queued any more.
            if (decoder.queue.length === 0) receive.fill(0xa5);
          }
          assert.ok(decoder.idle, 'bytes left over');
          assertSameRequests(decoded, requests);
          assert.ok(inPlace <= stream.length);
        },
      ),
      { seed: SEED, numRuns: RUNS },
    );
  });

  it('handshake streams split anywhere decode to the same flags and options', () => {
    const optionArbitrary = fc.record({ option: fc.nat({ max: 0xffffffff }), data: fc.uint8Array({ maxLength: 300 }) });
    fc.assert(
      fc.property(
        fc.constantFrom(0, 1, 2, 3),
        fc.array(optionArbitrary, { maxLength: 12 }),
        fc.array(fc.nat(), { maxLength: 30 }),
        (clientFlags, options, cuts) => {
          const head = Buffer.alloc(4);
          head.writeUInt32BE(clientFlags, 0);
          const stream = Buffer.concat([head, ...options.map((o) => P.encodeOption(o.option, o.data))]);
          const decoder = new P.HandshakeDecoder({ maxOptionBytes: 1024 });
          const messages: P.HandshakeMessage[] = [];
          for (const chunk of split(stream, cuts)) {
            decoder.push(chunk);
            for (let message = decoder.next(); message !== null; message = decoder.next()) messages.push(message);
          }
          assert.ok(decoder.idle);
          assert.deepEqual(messages[0], { kind: 'client-flags', flags: clientFlags });
          assert.equal(messages.length, options.length + 1);
          options.forEach((expected, index) => {
            const message = messages[index + 1];
            assert.ok(message !== undefined && message.kind === 'option');
            assert.equal(message.option, expected.option);
            assert.deepEqual(message.data, Buffer.from(expected.data));
          });
        },
      ),
      { seed: SEED, numRuns: RUNS },
    );
  });

  it('garbage never makes the request decoder throw an uncoded error or hang', () => {
    fc.assert(
      fc.property(
        // Garbage, or a valid stream with bytes flipped, so that decoding gets somewhere first.
        fc.oneof(
          fc.uint8Array({ maxLength: 4096 }).map((bytes) => Buffer.from(bytes)),
          fc
            .tuple(fc.array(requestArbitrary, { minLength: 1, maxLength: 5 }), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }))
            .map(([requests, flips]) => {
              const bytes = Buffer.concat(requests.map(encode));
              for (const [at, value] of flips) bytes[at % bytes.length] = value;
              return bytes;
            }),
        ),
        fc.array(fc.nat(), { maxLength: 20 }),
        (bytes, cuts) => {
          const decoder = new P.RequestDecoder({ maxPayloadBytes: MAX_PAYLOAD, maxDiscardBytes: MAX_DISCARD });
          let steps = 0;
          try {
            for (const chunk of split(bytes, cuts)) {
              decoder.push(chunk);
              // Every successful next() consumes at least a 28-byte header: bounded steps.
              for (let request = decoder.next(); request !== null; request = decoder.next()) {
                steps += 1;
                assert.ok(steps <= bytes.length / P.NBD_REQUEST_HEADER_BYTES + 1, 'decoder does not make progress');
              }
            }
          } catch (error) {
            if (error instanceof assert.AssertionError) throw error;
            assert.ok(isCodedNbdError(error), `uncoded error: ${String(error)}`);
            assert.ok(decoder.failed);
          }
        },
      ),
      { seed: SEED, numRuns: RUNS },
    );
  });

  it('garbage never makes the handshake decoder or the option parsers throw an uncoded error', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2048 }), fc.array(fc.nat(), { maxLength: 20 }), (raw, cuts) => {
        const bytes = Buffer.from(raw);
        const decoder = new P.HandshakeDecoder({ maxOptionBytes: 1024 });
        let steps = 0;
        try {
          for (const chunk of split(bytes, cuts)) {
            decoder.push(chunk);
            for (let message = decoder.next(); message !== null; message = decoder.next()) {
              steps += 1;
              assert.ok(steps <= bytes.length / 4 + 1, 'decoder does not make progress');
              if (message.kind === 'option') {
                // The option parsers see arbitrary data too; they return, never throw.
                P.parseInfoRequest(message.data);
                P.parseMetaContextRequest(message.data);
              }
            }
          }
        } catch (error) {
          if (error instanceof assert.AssertionError) throw error;
          assert.ok(isCodedNbdError(error), `uncoded error: ${String(error)}`);
        }
        // The parsers on the raw bytes as well.
        const info = P.parseInfoRequest(bytes);
        const meta = P.parseMetaContextRequest(bytes);
        assert.ok(typeof info.ok === 'boolean' && typeof meta.ok === 'boolean');
      }),
      { seed: SEED, numRuns: RUNS },
    );
  });
});
