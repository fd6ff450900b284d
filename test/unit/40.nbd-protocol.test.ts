// Unit tests of the NBD codec (src/nbd/protocol.ts) and of the pure helpers around it, against
// vectors written by hand from the NBD spec (doc/proto.md of NetworkBlockDevice).

import { strict as assert } from 'node:assert';

import { BlockmirrorError } from '../../src/errors';
import { NBD_ERROR_CODES } from '../../src/nbd/errors';
import {
  alignExtents,
  allocationExtents,
  combineAllocation,
  combineDirty,
  dirtyExtents,
  mergeExtents,
  toDescriptors,
  type BitmapView,
} from '../../src/nbd/extents';
import * as P from '../../src/nbd/protocol';
import { errnoForVolumeError, matchMetaContexts } from '../../src/nbd/server';

/** Hex with spaces and newlines ignored. */
function hex(text: string): Buffer {
  return Buffer.from(text.replace(/\s+/g, ''), 'hex');
}

function assertCoded(fn: () => unknown, code: string): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof BlockmirrorError, `expected a BlockmirrorError, got ${String(error)}`);
    assert.equal(error.code, code);
    return true;
  });
}

const COOKIE_HIGH = 0x01020304;
const COOKIE_LOW = 0x05060708;
const COOKIE_HEX = '0102030405060708';

describe('40 nbd protocol: constants', () => {
  it('has the spec values for magics, options, replies, commands, flags and errors', () => {
    assert.equal(P.NBD_REQUEST_MAGIC, 0x25609513);
    assert.equal(P.NBD_SIMPLE_REPLY_MAGIC, 0x67446698);
    assert.equal(P.NBD_STRUCTURED_REPLY_MAGIC, 0x668e33ef);
    assert.deepEqual(
      [P.NBD_OPT_EXPORT_NAME, P.NBD_OPT_ABORT, P.NBD_OPT_LIST, P.NBD_OPT_STARTTLS, P.NBD_OPT_INFO, P.NBD_OPT_GO],
      [1, 2, 3, 5, 6, 7],
    );
    assert.deepEqual([P.NBD_OPT_STRUCTURED_REPLY, P.NBD_OPT_LIST_META_CONTEXT, P.NBD_OPT_SET_META_CONTEXT], [8, 9, 10]);
    assert.deepEqual([P.NBD_REP_ACK, P.NBD_REP_SERVER, P.NBD_REP_INFO, P.NBD_REP_META_CONTEXT], [1, 2, 3, 4]);
    assert.equal(P.NBD_REP_ERR_UNSUP, 2 ** 31 + 1);
    assert.equal(P.NBD_REP_ERR_INVALID, 2 ** 31 + 3);
    assert.equal(P.NBD_REP_ERR_UNKNOWN, 2 ** 31 + 6);
    assert.equal(P.NBD_REP_ERR_SHUTDOWN, 2 ** 31 + 7);
    assert.equal(P.NBD_REP_ERR_TOO_BIG, 2 ** 31 + 9);
    assert.deepEqual(
      [P.NBD_CMD_READ, P.NBD_CMD_WRITE, P.NBD_CMD_DISC, P.NBD_CMD_FLUSH, P.NBD_CMD_TRIM, P.NBD_CMD_CACHE, P.NBD_CMD_WRITE_ZEROES, P.NBD_CMD_BLOCK_STATUS],
      [0, 1, 2, 3, 4, 5, 6, 7],
    );
    assert.deepEqual(
      [P.NBD_CMD_FLAG_FUA, P.NBD_CMD_FLAG_NO_HOLE, P.NBD_CMD_FLAG_DF, P.NBD_CMD_FLAG_REQ_ONE, P.NBD_CMD_FLAG_FAST_ZERO],
      [1, 2, 4, 8, 16],
    );
    assert.equal(P.NBD_FLAG_CAN_MULTI_CONN, 256);
    assert.equal(P.NBD_FLAG_SEND_FAST_ZERO, 2048);
    assert.deepEqual(
      [P.NBD_EPERM, P.NBD_EIO, P.NBD_ENOMEM, P.NBD_EINVAL, P.NBD_ENOSPC, P.NBD_EOVERFLOW, P.NBD_ENOTSUP, P.NBD_ESHUTDOWN],
      [1, 5, 12, 22, 28, 75, 95, 108],
    );
    assert.equal(P.NBD_REPLY_TYPE_ERROR, 32769);
    assert.equal(P.NBD_REPLY_TYPE_BLOCK_STATUS, 5);
  });

  it('names its error codes ERR_NBD_*', () => {
    for (const code of NBD_ERROR_CODES) assert.match(code, /^ERR_NBD_[A-Z_]+$/);
    assert.equal(new Set(NBD_ERROR_CODES).size, NBD_ERROR_CODES.length);
  });
});

describe('40 nbd protocol: handshake encoders', () => {
  it('greeting: NBDMAGIC IHAVEOPT flags', () => {
    assert.deepEqual(P.encodeGreeting(P.NBD_FLAG_FIXED_NEWSTYLE | P.NBD_FLAG_NO_ZEROES), hex('4e42444d41474943 49484156454f5054 0003'));
  });

  it('option reply header: magic, option, type, length', () => {
    assert.deepEqual(P.encodeOptionReply(P.NBD_OPT_GO, P.NBD_REP_ACK), hex('0003e889045565a9 00000007 00000001 00000000'));
    assert.deepEqual(
      P.encodeOptionError(P.NBD_OPT_LIST, P.NBD_REP_ERR_INVALID, 'no'),
      hex('0003e889045565a9 00000003 80000003 00000002 6e6f'),
    );
  });

  it('NBD_REP_SERVER: name length, name, description', () => {
    assert.deepEqual(
      P.encodeServerReply('vol0', 'disk'),
      hex('0003e889045565a9 00000003 00000002 0000000c 00000004 766f6c30 6469736b'),
    );
  });

  it('NBD_INFO_EXPORT: type 0, u64 size, u16 flags (length 12)', () => {
    assert.deepEqual(
      P.encodeInfoExport(P.NBD_OPT_GO, 2 ** 32 + 5, 0x0d6d),
      hex('0003e889045565a9 00000007 00000003 0000000c 0000 0000000100000005 0d6d'),
    );
  });

  it('NBD_INFO_NAME / NBD_INFO_DESCRIPTION: type, string', () => {
    assert.deepEqual(P.encodeInfoString(P.NBD_OPT_INFO, P.NBD_INFO_NAME, 'ab'), hex('0003e889045565a9 00000006 00000003 00000004 0001 6162'));
    assert.deepEqual(P.encodeInfoString(P.NBD_OPT_INFO, P.NBD_INFO_DESCRIPTION, ''), hex('0003e889045565a9 00000006 00000003 00000002 0002'));
  });

  it('NBD_INFO_BLOCK_SIZE: type 3, minimum, preferred, maximum (length 14)', () => {
    assert.deepEqual(
      P.encodeInfoBlockSize(P.NBD_OPT_GO, 1, 4096, 32 * 1024 * 1024),
      hex('0003e889045565a9 00000007 00000003 0000000e 0003 00000001 00001000 02000000'),
    );
  });

  it('NBD_REP_META_CONTEXT: u32 id, name', () => {
    assert.deepEqual(
      P.encodeMetaContextReply(P.NBD_OPT_SET_META_CONTEXT, 1, 'base:allocation'),
      Buffer.concat([hex('0003e889045565a9 0000000a 00000004 00000013 00000001'), Buffer.from('base:allocation')]),
    );
  });

  it('NBD_OPT_EXPORT_NAME reply: size, flags, 124 zeroes unless NO_ZEROES', () => {
    assert.deepEqual(P.encodeExportNameReply(4096, 0x0001, true), hex('0000000000001000 0001'));
    const full = P.encodeExportNameReply(4096, 0x0003, false);
    assert.equal(full.length, 134);
    assert.deepEqual(full.subarray(0, 10), hex('0000000000001000 0003'));
    assert.ok(full.subarray(10).every((byte) => byte === 0));
  });

  it('client-side helpers encode options and their data', () => {
    assert.deepEqual(P.encodeOption(P.NBD_OPT_LIST), hex('49484156454f5054 00000003 00000000'));
    assert.deepEqual(P.encodeInfoRequestData('ab', [P.NBD_INFO_BLOCK_SIZE]), hex('00000002 6162 0001 0003'));
    assert.deepEqual(P.encodeMetaContextRequestData('a', ['base:']), hex('00000001 61 00000001 00000005 62617365 3a'));
  });
});

describe('40 nbd protocol: transmission encoders', () => {
  it('simple reply: magic, error, cookie', () => {
    const buffer = Buffer.alloc(16);
    assert.equal(P.writeSimpleReply(buffer, 0, P.NBD_EINVAL, COOKIE_HIGH, COOKIE_LOW), 16);
    assert.deepEqual(buffer, hex(`67446698 00000016 ${COOKIE_HEX}`));
  });

  it('OFFSET_DATA chunk: header, u64 offset, then data', () => {
    const buffer = Buffer.alloc(28 + 3);
    const dataAt = P.writeOffsetDataPrefix(buffer, 0, P.NBD_REPLY_FLAG_DONE, COOKIE_HIGH, COOKIE_LOW, 2 ** 40 + 1, 3);
    assert.equal(dataAt, 28);
    buffer.set([0xaa, 0xbb, 0xcc], dataAt);
    assert.deepEqual(buffer, hex(`668e33ef 0001 0001 ${COOKIE_HEX} 0000000b 0000010000000001 aabbcc`));
  });

  it('OFFSET_HOLE chunk: header, u64 offset, u32 size (length 12)', () => {
    const buffer = Buffer.alloc(32);
    assert.equal(P.writeOffsetHole(buffer, 0, 0, COOKIE_HIGH, COOKIE_LOW, 65536, 8192), 32);
    assert.deepEqual(buffer, hex(`668e33ef 0000 0002 ${COOKIE_HEX} 0000000c 0000000000010000 00002000`));
  });

  it('NONE chunk: DONE, length 0', () => {
    const buffer = Buffer.alloc(20);
    P.writeNoneChunk(buffer, 0, COOKIE_HIGH, COOKIE_LOW);
    assert.deepEqual(buffer, hex(`668e33ef 0001 0000 ${COOKIE_HEX} 00000000`));
  });

  it('ERROR chunk: u32 error, u16 message length, message', () => {
    const message = Buffer.from('oops');
    const buffer = Buffer.alloc(P.errorChunkBytes(message.length));
    P.writeErrorChunk(buffer, 0, P.NBD_REPLY_FLAG_DONE, COOKIE_HIGH, COOKIE_LOW, P.NBD_EINVAL, message);
    assert.deepEqual(buffer, hex(`668e33ef 0001 8001 ${COOKIE_HEX} 0000000a 00000016 0004 6f6f7073`));
  });

  it('BLOCK_STATUS chunk: u32 context id, then (length, flags) descriptors', () => {
    const extents = [
      { byteLength: 4096, flags: 3 },
      { byteLength: 8192, flags: 0 },
    ];
    const buffer = Buffer.alloc(P.blockStatusChunkBytes(2));
    P.writeBlockStatusChunk(buffer, 0, P.NBD_REPLY_FLAG_DONE, COOKIE_HIGH, COOKIE_LOW, 7, extents);
    assert.deepEqual(buffer, hex(`668e33ef 0001 0005 ${COOKIE_HEX} 00000014 00000007 00001000 00000003 00002000 00000000`));
  });

  it('writes u64 values exactly below 2^53', () => {
    const buffer = Buffer.alloc(8);
    P.writeUInt64BE(buffer, 2 ** 53 - 1, 0);
    assert.equal(buffer.readBigUInt64BE(0), 2n ** 53n - 1n);
  });

  it('cuts long strings to 4096 bytes on a character boundary', () => {
    const text = 'é'.repeat(3000); // 6000 bytes
    const bytes = P.truncatedUtf8(text);
    assert.ok(bytes.length <= 4096);
    assert.equal(bytes.length % 2, 0);
    assert.equal(Buffer.from(bytes.toString('utf8')).length, bytes.length);
  });
});

describe('40 nbd protocol: request decoder', () => {
  const requestHex = `25609513 0001 0001 ${COOKIE_HEX} 0000000000001000 00000004 deadbeef`;

  it('decodes a WRITE header and payload byte-exactly', () => {
    const decoder = new P.RequestDecoder();
    decoder.push(hex(requestHex));
    const request = decoder.next();
    assert.ok(request !== null);
    assert.equal(request.flags, P.NBD_CMD_FLAG_FUA);
    assert.equal(request.type, P.NBD_CMD_WRITE);
    assert.equal(P.cookieOf(request), 0x0102030405060708n);
    assert.equal(request.offset, 4096);
    assert.equal(request.length, 4);
    assert.deepEqual(request.payload, hex('deadbeef'));
    assert.equal(decoder.next(), null);
    assert.ok(decoder.idle);
  });

  it('matches encodeRequest, one byte at a time', () => {
    const bytes = P.encodeRequest(P.NBD_CMD_WRITE, 1, 0x0102030405060708n, 4096, 4, hex('deadbeef'));
    assert.deepEqual(bytes, hex(requestHex));
    const decoder = new P.RequestDecoder();
    let decoded: P.NbdRequest | null = null;
    for (let i = 0; i < bytes.length; i++) {
      decoder.push(bytes.subarray(i, i + 1));
      const request = decoder.next();
      if (request !== null) {
        assert.equal(i, bytes.length - 1, 'decoded before the last byte');
        decoded = request;
      }
    }
    assert.ok(decoded !== null);
    assert.deepEqual(decoded.payload, hex('deadbeef'));
  });

  it('hands a payload that arrived in one chunk out without a copy', () => {
    const bytes = P.encodeRequest(P.NBD_CMD_WRITE, 0, 1n, 0, 4, hex('01020304'));
    const decoder = new P.RequestDecoder();
    decoder.push(bytes);
    const request = decoder.next();
    assert.ok(request?.payload);
    assert.equal(request.payload.buffer, bytes.buffer);
  });

  it('decodes requests without payload and u64 offsets', () => {
    const decoder = new P.RequestDecoder();
    decoder.push(P.encodeRequest(P.NBD_CMD_READ, 0, 5n, 2n ** 63n, 512));
    const request = decoder.next();
    assert.ok(request !== null);
    assert.equal(request.type, P.NBD_CMD_READ);
    assert.equal(request.payload, null);
    assert.ok(request.offset >= 2 ** 63);
  });

  it('fails on a bad magic with ERR_NBD_BAD_MAGIC and stays failed', () => {
    const decoder = new P.RequestDecoder();
    decoder.push(hex('25609514 0000 0000 0000000000000000 0000000000000000 00000000'));
    assertCoded(() => decoder.next(), 'ERR_NBD_BAD_MAGIC');
    assert.ok(decoder.failed);
    decoder.push(P.encodeRequest(P.NBD_CMD_READ, 0, 1n, 0, 512));
    assertCoded(() => decoder.next(), 'ERR_NBD_BAD_MAGIC');
  });

  it('reads and discards an oversized WRITE payload, then goes on', () => {
    const decoder = new P.RequestDecoder({ maxPayloadBytes: 4096, maxDiscardBytes: 8192 });
    decoder.push(P.encodeRequest(P.NBD_CMD_WRITE, 0, 1n, 0, 5000, Buffer.alloc(5000, 7)));
    decoder.push(P.encodeRequest(P.NBD_CMD_FLUSH, 0, 2n, 0, 0));
    const dropped = decoder.next();
    assert.ok(dropped !== null);
    assert.equal(dropped.payloadDropped, true);
    assert.equal(dropped.payload, null);
    assert.equal(dropped.length, 5000);
    const flush = decoder.next();
    assert.equal(flush?.type, P.NBD_CMD_FLUSH);
    assert.equal(flush?.cookieLow, 2);
  });

  it('fails a WRITE longer than the discard limit with ERR_NBD_PAYLOAD_TOO_LARGE', () => {
    const decoder = new P.RequestDecoder({ maxPayloadBytes: 4096, maxDiscardBytes: 8192 });
    decoder.push(P.encodeRequest(P.NBD_CMD_WRITE, 0, 1n, 0, 8193));
    assertCoded(() => decoder.next(), 'ERR_NBD_PAYLOAD_TOO_LARGE');
    assert.equal(decoder.request.length, 8193);
  });

  it('assembles a payload split over chunks and reuses its buffer', () => {
    const decoder = new P.RequestDecoder({ maxPayloadBytes: 1 << 20 });
    const payload = Buffer.alloc(100_000, 0x5a);
    const bytes = P.encodeRequest(P.NBD_CMD_WRITE, 0, 9n, 0, payload.length, payload);
    decoder.push(bytes.subarray(0, 30));
    assert.equal(decoder.next(), null);
    decoder.push(bytes.subarray(30, 60_000));
    assert.equal(decoder.next(), null);
    decoder.push(bytes.subarray(60_000));
    const request = decoder.next();
    assert.deepEqual(request?.payload, payload);
  });

  it('receives the rest of a payload in place through payloadWindow()', () => {
    const decoder = new P.RequestDecoder({ maxPayloadBytes: 1 << 20 });
    const payload = Buffer.alloc(100_000);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 7) & 0xff;
    const bytes = P.encodeRequest(P.NBD_CMD_WRITE, 0, 3n, 512, payload.length, payload);
    // No payload pending yet (nothing, then a partial header).
    assert.equal(decoder.payloadWindow(), null);
    decoder.push(bytes.subarray(0, 10));
    assert.equal(decoder.next(), null);
    assert.equal(decoder.payloadWindow(), null);
    assert.equal(decoder.payloadPending, false);
    // Header and 1000 payload bytes: those are assembled, the window is the other 99 000.
    decoder.push(bytes.subarray(10, 28 + 1000));
    assert.equal(decoder.next(), null);
    assert.equal(decoder.payloadPending, true);
    const window = decoder.payloadWindow();
    assert.ok(window !== null);
    assert.equal(window.length, payload.length - 1000);
    // Fill part of it in place, then the rest in two steps.
    bytes.copy(window, 0, 28 + 1000, 28 + 50_000);
    decoder.payloadReceived(49_000);
    assert.equal(decoder.next(), null);
    const rest = decoder.payloadWindow();
    assert.ok(rest !== null);
    assert.equal(rest.length, payload.length - 50_000);
    assert.equal(rest.buffer, window.buffer, 'the window is in the same assembly buffer');
    bytes.copy(rest, 0, 28 + 50_000);
    assert.throws(() => decoder.payloadReceived(rest.length + 1), RangeError);
    decoder.payloadReceived(rest.length);
    assert.equal(decoder.payloadWindow(), null, 'complete: no window');
    const request = decoder.next();
    assert.ok(request !== null);
    assert.equal(request.offset, 512);
    assert.deepEqual(request.payload, payload);
    assert.ok(decoder.idle);
    assert.equal(decoder.payloadWindow(), null);
    assert.throws(() => decoder.payloadReceived(1), RangeError);
  });

  it('moves queued payload bytes into the window; none for a complete or discarded payload', () => {
    const decoder = new P.RequestDecoder({ maxPayloadBytes: 4096, maxDiscardBytes: 8192 });
    const payload = Buffer.alloc(3000);
    for (let i = 0; i < payload.length; i++) payload[i] = i & 0xff;
    const bytes = P.encodeRequest(P.NBD_CMD_WRITE, 0, 1n, 0, 3000, payload);
    decoder.push(Buffer.from(bytes.subarray(0, 100)));
    // Header not decoded yet: no payload is pending.
    assert.equal(decoder.payloadWindow(), null);
    assert.equal(decoder.next(), null);
    assert.equal(decoder.missingPayloadBytes, 3000 - 72);
    assert.equal(decoder.payloadAssembling, false, 'one piece so far: kept queued');
    // More bytes queued (in another buffer): the window takes all of them into the assembly.
    decoder.push(Buffer.from(bytes.subarray(100, 200)));
    assert.equal(decoder.missingPayloadBytes, 3000 - 172);
    const window = decoder.payloadWindow();
    assert.ok(window !== null);
    assert.equal(window.length, 3000 - 172);
    assert.equal(decoder.payloadAssembling, true);
    assert.equal(decoder.queue.length, 0);
    // The rest arrives queued after all: complete, so no window.
    decoder.push(Buffer.from(bytes.subarray(200)));
    assert.equal(decoder.missingPayloadBytes, 0);
    assert.equal(decoder.payloadWindow(), null);
    assert.ok(decoder.next()?.payload?.equals(payload));
    // A dropped payload is skipped, never received in place.
    decoder.push(P.encodeRequest(P.NBD_CMD_WRITE, 0, 2n, 0, 5000, Buffer.alloc(5000)).subarray(0, 40));
    assert.equal(decoder.next(), null);
    assert.equal(decoder.payloadPending, true);
    assert.equal(decoder.missingPayloadBytes, 0);
    assert.equal(decoder.payloadWindow(), null);
  });

  it('keeps a payload received into consecutive memory in one piece (no copy)', () => {
    const payload = Buffer.alloc(50_000, 0x3c);
    const bytes = P.encodeRequest(P.NBD_CMD_WRITE, 0, 4n, 0, payload.length, payload);
    // Consecutive views of one buffer, as a reader filling a receive buffer pushes them.
    const inPlace = new P.RequestDecoder();
    for (const [from, to] of [[0, 10], [10, 5000], [5000, 5001], [5001, bytes.length]] as const) {
      inPlace.push(bytes.subarray(from, to));
      const request = inPlace.next();
      if (to < bytes.length) {
        assert.equal(request, null);
        assert.equal(inPlace.payloadAssembling, false);
      } else {
        assert.ok(request?.payload?.equals(payload));
        assert.equal(request?.payload?.buffer, bytes.buffer, 'handed out without a copy');
      }
    }
    // The same bytes in separate buffers are assembled (a copy), with the same result.
    const pieces = new P.RequestDecoder();
    pieces.push(Buffer.from(bytes.subarray(0, 5000)));
    assert.equal(pieces.next(), null);
    pieces.push(Buffer.from(bytes.subarray(5000, 6000)));
    assert.equal(pieces.next(), null);
    assert.equal(pieces.payloadAssembling, true);
    pieces.push(Buffer.from(bytes.subarray(6000)));
    const request = pieces.next();
    assert.ok(request?.payload?.equals(payload));
    assert.notEqual(request?.payload?.buffer, bytes.buffer);
  });
});

describe('40 nbd protocol: byte queue', () => {
  it('merges a chunk that continues the previous one in memory', () => {
    const queue = new P.ByteQueue();
    const memory = Buffer.from('0123456789');
    queue.push(memory.subarray(0, 3));
    queue.push(memory.subarray(3, 7));
    assert.equal(queue.contiguousLength(), 7);
    queue.skip(2);
    queue.push(memory.subarray(7, 10));
    assert.equal(queue.contiguousLength(), 8);
    // Not adjacent (a gap, or other memory): a chunk of its own.
    queue.push(memory.subarray(0, 1));
    assert.equal(queue.contiguousLength(), 8);
    assert.equal(queue.length, 9);
    const out = Buffer.alloc(9);
    queue.readInto(out, 0, 9);
    assert.equal(out.toString(), '234567890');
  });

  it('moves the queued bytes to the front of another buffer and forgets the old chunks', () => {
    const queue = new P.ByteQueue();
    const first = Buffer.from('abcdef');
    const second = Buffer.from('ghij');
    queue.push(first);
    queue.push(second);
    queue.skip(4);
    const target = Buffer.alloc(16, 0x2e);
    queue.moveTo(target);
    assert.equal(queue.length, 6);
    assert.equal(target.subarray(0, 6).toString(), 'efghij');
    // The old chunks may now be overwritten: the queue reads from target.
    first.fill(0);
    second.fill(0);
    assert.equal(queue.contiguousLength(), 6);
    assert.equal(queue.head().buffer, target.buffer);
    const out = Buffer.alloc(6);
    queue.readInto(out, 0, 6);
    assert.equal(out.toString(), 'efghij');
    assert.equal(queue.length, 0);
    queue.moveTo(target);
    assert.equal(queue.length, 0);
    queue.push(Buffer.from('xyz'));
    assert.throws(() => queue.moveTo(Buffer.alloc(2)), RangeError);
  });
});

describe('40 nbd protocol: handshake decoder', () => {
  it('decodes client flags then options', () => {
    const decoder = new P.HandshakeDecoder();
    decoder.push(hex('00000003'));
    decoder.push(P.encodeOption(P.NBD_OPT_GO, P.encodeInfoRequestData('vol0', [3])));
    assert.deepEqual(decoder.next(), { kind: 'client-flags', flags: 3 });
    const option = decoder.next();
    assert.ok(option !== null && option.kind === 'option');
    assert.equal(option.option, P.NBD_OPT_GO);
    assert.deepEqual(option.data, hex('00000004 766f6c30 0001 0003'));
    assert.equal(decoder.next(), null);
    assert.ok(decoder.idle);
  });

  it('refuses unknown client flags (ERR_NBD_BAD_CLIENT_FLAGS)', () => {
    const decoder = new P.HandshakeDecoder();
    decoder.push(hex('00000004'));
    assertCoded(() => decoder.next(), 'ERR_NBD_BAD_CLIENT_FLAGS');
  });

  it('refuses a bad option magic (ERR_NBD_BAD_MAGIC)', () => {
    const decoder = new P.HandshakeDecoder();
    decoder.push(hex('00000001 49484156454f5055 00000003 00000000'));
    decoder.next();
    assertCoded(() => decoder.next(), 'ERR_NBD_BAD_MAGIC');
  });

  it('refuses option data above the limit before buffering it (ERR_NBD_OPTION_TOO_LARGE)', () => {
    const decoder = new P.HandshakeDecoder({ maxOptionBytes: 1024 });
    decoder.push(hex('00000001 49484156454f5054 00000007 00000401'));
    decoder.next();
    assertCoded(() => decoder.next(), 'ERR_NBD_OPTION_TOO_LARGE');
  });
});

describe('40 nbd protocol: option data parsers', () => {
  it('parses INFO/GO data', () => {
    assert.deepEqual(P.parseInfoRequest(hex('00000002 6162 0002 0003 0001')), {
      ok: true,
      value: { exportName: 'ab', infoTypes: [3, 1] },
    });
    assert.deepEqual(P.parseInfoRequest(hex('00000000 0000')), { ok: true, value: { exportName: '', infoTypes: [] } });
  });

  for (const [label, data] of [
    ['shorter than 6 bytes', '00000000 00'],
    ['name longer than the data', '00000009 6162 0000'],
    ['count larger than the data', '00000002 6162 0002 0003'],
    ['trailing bytes', '00000002 6162 0000 00'],
    ['name with NUL', '00000002 6100 0000'],
    ['name not UTF-8', '00000002 c328 0000'],
  ] as const) {
    it(`refuses INFO/GO data with ${label} (NBD_REP_ERR_INVALID)`, () => {
      const result = P.parseInfoRequest(hex(data));
      assert.equal(result.ok, false);
      if (!result.ok) assert.equal(result.reply, P.NBD_REP_ERR_INVALID);
    });
  }

  it('parses LIST/SET_META_CONTEXT data', () => {
    const data = P.encodeMetaContextRequestData('vol0', ['base:allocation', 'blockmirror:dirty:b1']);
    assert.deepEqual(P.parseMetaContextRequest(data), {
      ok: true,
      value: { exportName: 'vol0', queries: ['base:allocation', 'blockmirror:dirty:b1'] },
    });
  });

  it('refuses malformed meta context data', () => {
    const noColon = P.parseMetaContextRequest(P.encodeMetaContextRequestData('vol0', ['allocation']));
    assert.equal(noColon.ok, false);
    const runsPast = P.parseMetaContextRequest(hex('00000000 00000001 000000ff 62617365'));
    assert.equal(runsPast.ok, false);
    if (!runsPast.ok) assert.equal(runsPast.reply, P.NBD_REP_ERR_INVALID);
    const tooMany = P.parseMetaContextRequest(hex(`00000000 ${(P.MAX_META_CONTEXT_QUERIES + 1).toString(16).padStart(8, '0')}`));
    assert.equal(tooMany.ok, false);
    if (!tooMany.ok) assert.equal(tooMany.reply, P.NBD_REP_ERR_TOO_BIG);
    const trailing = P.parseMetaContextRequest(Buffer.concat([P.encodeMetaContextRequestData('a', []), hex('00')]));
    assert.equal(trailing.ok, false);
  });
});

describe('40 nbd protocol: request validation', () => {
  const writable = P.NBD_FLAG_HAS_FLAGS | P.NBD_FLAG_SEND_FLUSH | P.NBD_FLAG_SEND_FUA | P.NBD_FLAG_SEND_TRIM | P.NBD_FLAG_SEND_WRITE_ZEROES | P.NBD_FLAG_SEND_FAST_ZERO | P.NBD_FLAG_SEND_DF;
  const limits: P.ExportLimits = {
    sizeBytes: 1 << 20,
    transmissionFlags: writable,
    minimumBlockBytes: 1,
    maximumBlockBytes: 65536,
    metaContextCount: 1,
  };
  function request(type: number, offset: number, length: number, flags = 0, payloadDropped = false): P.NbdRequest {
    return { type, offset, length, flags, cookieHigh: 0, cookieLow: 1, payload: null, payloadDropped, payloadDirect: false };
  }
  function errnoOf(req: P.NbdRequest, overrides: Partial<P.ExportLimits> = {}): number {
    return P.validateRequest(req, { ...limits, ...overrides })?.errno ?? 0;
  }

  it('accepts well-formed requests at any byte offset on a non-strict export', () => {
    assert.equal(errnoOf(request(P.NBD_CMD_READ, 3, 2)), 0);
    assert.equal(errnoOf(request(P.NBD_CMD_WRITE, (1 << 20) - 4, 4, P.NBD_CMD_FLAG_FUA)), 0);
    assert.equal(errnoOf(request(P.NBD_CMD_FLUSH, 0, 0)), 0);
    assert.equal(errnoOf(request(P.NBD_CMD_TRIM, 0, 1 << 20)), 0, 'trim has no maximum');
    assert.equal(errnoOf(request(P.NBD_CMD_WRITE_ZEROES, 0, 1 << 20, P.NBD_CMD_FLAG_FAST_ZERO | P.NBD_CMD_FLAG_NO_HOLE)), 0);
    assert.equal(errnoOf(request(P.NBD_CMD_BLOCK_STATUS, 0, 1 << 20, P.NBD_CMD_FLAG_REQ_ONE)), 0);
    assert.equal(errnoOf(request(P.NBD_CMD_READ, 0, 4096, P.NBD_CMD_FLAG_DF)), 0);
    assert.equal(errnoOf(request(P.NBD_CMD_DISC, 0, 0)), 0);
  });

  it('EINVAL for unknown commands and unknown or misplaced flags', () => {
    assert.equal(errnoOf(request(8, 0, 1)), P.NBD_EINVAL);
    assert.equal(errnoOf(request(0xffff, 0, 1)), P.NBD_EINVAL);
    assert.equal(errnoOf(request(P.NBD_CMD_READ, 0, 1, 1 << 5)), P.NBD_EINVAL);
    assert.equal(errnoOf(request(P.NBD_CMD_WRITE, 0, 1, P.NBD_CMD_FLAG_REQ_ONE)), P.NBD_EINVAL);
    assert.equal(errnoOf(request(P.NBD_CMD_READ, 0, 1, P.NBD_CMD_FLAG_NO_HOLE)), P.NBD_EINVAL);
    assert.equal(errnoOf(request(P.NBD_CMD_READ, 0, 1, P.NBD_CMD_FLAG_DF), { transmissionFlags: writable & ~P.NBD_FLAG_SEND_DF }), P.NBD_EINVAL);
    assert.equal(errnoOf(request(P.NBD_CMD_WRITE, 0, 1, P.NBD_CMD_FLAG_FUA), { transmissionFlags: P.NBD_FLAG_HAS_FLAGS }), P.NBD_EINVAL);
  });

  it('EPERM for WRITE, TRIM and WRITE_ZEROES on a read-only export (reads still work)', () => {
    const readOnly = { transmissionFlags: P.NBD_FLAG_HAS_FLAGS | P.NBD_FLAG_READ_ONLY | P.NBD_FLAG_SEND_FLUSH };
    assert.equal(errnoOf(request(P.NBD_CMD_WRITE, 0, 1), readOnly), P.NBD_EPERM);
    assert.equal(errnoOf(request(P.NBD_CMD_TRIM, 0, 1), readOnly), P.NBD_EPERM);
    assert.equal(errnoOf(request(P.NBD_CMD_WRITE_ZEROES, 0, 1), readOnly), P.NBD_EPERM);
    assert.equal(errnoOf(request(P.NBD_CMD_READ, 0, 1), readOnly), 0);
  });

  it('ENOSPC for writes past the end, EINVAL for other commands past the end', () => {
    assert.equal(errnoOf(request(P.NBD_CMD_WRITE, 1 << 20, 1)), P.NBD_ENOSPC);
    assert.equal(errnoOf(request(P.NBD_CMD_WRITE_ZEROES, (1 << 20) - 1, 2)), P.NBD_ENOSPC);
    assert.equal(errnoOf(request(P.NBD_CMD_READ, (1 << 20) - 1, 2)), P.NBD_EINVAL);
    assert.equal(errnoOf(request(P.NBD_CMD_TRIM, 2 ** 63, 1)), P.NBD_EINVAL);
    assert.equal(errnoOf(request(P.NBD_CMD_BLOCK_STATUS, 1 << 20, 1)), P.NBD_EINVAL);
  });

  it('EINVAL for zero lengths, non-zero flush arguments and block status without contexts', () => {
    assert.equal(errnoOf(request(P.NBD_CMD_READ, 0, 0)), P.NBD_EINVAL);
    assert.equal(errnoOf(request(P.NBD_CMD_WRITE, 0, 0)), P.NBD_EINVAL);
    assert.equal(errnoOf(request(P.NBD_CMD_FLUSH, 1, 0)), P.NBD_EINVAL);
    assert.equal(errnoOf(request(P.NBD_CMD_FLUSH, 0, 1)), P.NBD_EINVAL);
    assert.equal(errnoOf(request(P.NBD_CMD_BLOCK_STATUS, 0, 1), { metaContextCount: 0 }), P.NBD_EINVAL);
  });

  it('EINVAL for misaligned requests on a strict export and for lengths over the maximum', () => {
    const strict = { minimumBlockBytes: 4096 };
    assert.equal(errnoOf(request(P.NBD_CMD_READ, 512, 4096), strict), P.NBD_EINVAL);
    assert.equal(errnoOf(request(P.NBD_CMD_WRITE, 0, 512), strict), P.NBD_EINVAL);
    assert.equal(errnoOf(request(P.NBD_CMD_READ, 4096, 8192), strict), 0);
    assert.equal(errnoOf(request(P.NBD_CMD_READ, 0, 65537)), P.NBD_EINVAL);
    assert.equal(errnoOf(request(P.NBD_CMD_WRITE, 0, 65537)), P.NBD_EINVAL);
    assert.equal(errnoOf(request(P.NBD_CMD_WRITE_ZEROES, 0, 65537)), 0, 'zeroes are not bounded (nbdcopy sends large ones)');
    assert.equal(errnoOf(request(P.NBD_CMD_CACHE, 0, 65537)), 0);
    assert.equal(errnoOf(request(P.NBD_CMD_WRITE, 0, 100, 0, true)), P.NBD_EINVAL, 'dropped payload');
  });
});

describe('40 nbd extents', () => {
  it('merges neighbours with equal flags', () => {
    assert.deepEqual(
      mergeExtents([
        { byteOffset: 0, byteLength: 10, flags: 1 },
        { byteOffset: 10, byteLength: 5, flags: 1 },
        { byteOffset: 15, byteLength: 0, flags: 0 },
        { byteOffset: 15, byteLength: 5, flags: 0 },
      ]),
      [
        { byteOffset: 0, byteLength: 15, flags: 1 },
        { byteOffset: 15, byteLength: 5, flags: 0 },
      ],
    );
  });

  it('aligns inner boundaries, giving mixed blocks the safe state', () => {
    const extents = [
      { byteOffset: 0, byteLength: 5000, flags: 3 },
      { byteOffset: 5000, byteLength: 4000, flags: 0 },
      { byteOffset: 9000, byteLength: 7384, flags: 3 },
    ];
    assert.deepEqual(alignExtents(extents, 0, 16384, 4096, combineAllocation), [
      { byteOffset: 0, byteLength: 4096, flags: 3 },
      { byteOffset: 4096, byteLength: 8192, flags: 0 },
      { byteOffset: 12288, byteLength: 4096, flags: 3 },
    ]);
    assert.deepEqual(alignExtents(extents, 0, 16384, 1, combineAllocation), extents);
    const dirty = [
      { byteOffset: 0, byteLength: 4096, flags: 0 },
      { byteOffset: 4096, byteLength: 4096, flags: 1 },
      { byteOffset: 8192, byteLength: 8192, flags: 0 },
    ];
    assert.deepEqual(alignExtents(dirty, 0, 16384, 8192, combineDirty), [
      { byteOffset: 0, byteLength: 8192, flags: 1 },
      { byteOffset: 8192, byteLength: 8192, flags: 0 },
    ]);
  });

  it('turns an allocation map into base:allocation extents, filling gaps with 0', () => {
    const map = [
      { byteOffset: 0, byteLength: 8192, allocated: true },
      { byteOffset: 8192, byteLength: 8192, allocated: false },
    ];
    assert.deepEqual(allocationExtents(map, 100, 20000, 1), [
      { byteOffset: 100, byteLength: 8092, flags: 0 },
      { byteOffset: 8192, byteLength: 8192, flags: 3 },
      { byteOffset: 16384, byteLength: 3716, flags: 0 },
    ]);
  });

  class FakeBitmap implements BitmapView {
    constructor(
      readonly granularityBytes: number,
      readonly bits: boolean[],
    ) {}
    get bitCount(): number {
      return this.bits.length;
    }
    test(i: number): boolean {
      return this.bits[i] === true;
    }
    findNextSet(from: number): number {
      for (let i = from; i < this.bits.length; i++) if (this.bits[i]) return i;
      return -1;
    }
    findNextClear(from: number): number {
      for (let i = from; i < this.bits.length; i++) if (!this.bits[i]) return i;
      return -1;
    }
  }

  it('turns a bitmap into dirty extents (set bit = flag 1)', () => {
    const bitmap = new FakeBitmap(4096, [false, true, true, false, true]);
    assert.deepEqual(dirtyExtents(bitmap, 0, 5 * 4096, 1), [
      { byteOffset: 0, byteLength: 4096, flags: 0 },
      { byteOffset: 4096, byteLength: 8192, flags: 1 },
      { byteOffset: 12288, byteLength: 4096, flags: 0 },
      { byteOffset: 16384, byteLength: 4096, flags: 1 },
    ]);
    assert.deepEqual(dirtyExtents(bitmap, 5000, 100, 1), [{ byteOffset: 5000, byteLength: 100, flags: 1 }]);
    // Beyond the bitmap's last track: dirty (cannot vouch for it).
    assert.deepEqual(dirtyExtents(bitmap, 4 * 4096, 8192, 1), [{ byteOffset: 16384, byteLength: 8192, flags: 1 }]);
  });

  it('caps the number of runs and keeps REQ_ONE to one descriptor', () => {
    const bitmap = new FakeBitmap(4096, Array.from({ length: 100 }, (_, i) => i % 2 === 0));
    const extents = dirtyExtents(bitmap, 0, 100 * 4096, 1, 10);
    assert.ok(extents.length <= 11);
    const total = extents.reduce((sum, extent) => sum + extent.byteLength, 0);
    assert.ok(total < 100 * 4096 && total > 0);
    assert.deepEqual(toDescriptors(extents, 100 * 4096, true), [{ byteLength: 4096, flags: 1 }]);
    assert.equal(toDescriptors(extents, 100 * 4096, false, 4).length, 4);
    assert.deepEqual(toDescriptors([], 512, false), [{ byteLength: 512, flags: 0 }]);
  });
});

describe('40 nbd meta context queries and error mapping', () => {
  const available = ['base:allocation', 'blockmirror:dirty:b1', 'blockmirror:dirty:b2'];

  it('lists everything for no query and expands wildcards only when listing', () => {
    assert.deepEqual(matchMetaContexts(available, [], true), available);
    assert.deepEqual(matchMetaContexts(available, [], false), []);
    assert.deepEqual(matchMetaContexts(available, ['base:'], true), ['base:allocation']);
    assert.deepEqual(matchMetaContexts(available, ['base:'], false), []);
    assert.deepEqual(matchMetaContexts(available, ['blockmirror:dirty:'], true), ['blockmirror:dirty:b1', 'blockmirror:dirty:b2']);
    assert.deepEqual(matchMetaContexts(available, ['blockmirror:'], false), []);
  });

  it('selects exact names and ignores unknown namespaces and leaves', () => {
    assert.deepEqual(matchMetaContexts(available, ['blockmirror:dirty:b2', 'base:allocation', 'qemu:dirty-bitmap:x', 'base:other'], false), [
      'blockmirror:dirty:b2',
      'base:allocation',
    ]);
    assert.deepEqual(matchMetaContexts(available, ['base:allocation', 'base:allocation'], false), ['base:allocation']);
  });

  it('maps volume errors to NBD error values', () => {
    assert.equal(errnoForVolumeError(new RangeError('x')), P.NBD_EINVAL);
    assert.equal(errnoForVolumeError(new BlockmirrorError('ERR_VOLUME_CLOSED', 'x')), P.NBD_ESHUTDOWN);
    assert.equal(errnoForVolumeError(new BlockmirrorError('ERR_REGION_FLUSH', 'x')), P.NBD_EIO);
    assert.equal(errnoForVolumeError('weird'), P.NBD_EIO);
  });
});
