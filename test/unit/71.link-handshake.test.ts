// Unit tests of the link handshake (src/transport/handshake.ts): the dialer and acceptor state
// machines driven against each other in memory, every refusal path with its code and a message
// that names the problem, replay and reflection of recorded proofs, and HMAC-SHA-256 against the
// RFC 4231 test vectors.

import { strict as assert } from 'node:assert';

import type { Clock, TimerHandle } from '../../src/runtime/clock';
import { SeededRandom } from '../../src/runtime/random';
import { BinaryReader, BinaryWriter } from '../../src/transport/codec';
import { LinkError } from '../../src/transport/errors';
import { type Frame, FrameDecoder, FrameType } from '../../src/transport/frame';
import {
  type AcceptorPeer,
  AcceptorHandshake,
  DialerHandshake,
  type HandshakeStep,
  LINK_PROTOCOL_VERSION_MAX,
  LINK_PROTOCOL_VERSION_MIN,
  NONCE_BYTES,
  PROOF_BYTES,
  type VersionRange,
  hmacSha256,
  parseRefusal,
} from '../../src/transport/handshake';
import { Link } from '../../src/transport/link';
import { isKnownMessageType } from '../../src/transport/message-types';
import type { Network, Wire } from '../../src/transport/wire';

const SECRET = Buffer.from('correct horse battery staple');
const OTHER_SECRET = Buffer.from('correct horse battery stapler');

function nonce(fill: number): Buffer {
  return Buffer.alloc(NONCE_BYTES, fill);
}

interface DialerSetup {
  selfId?: string;
  expectedPeerId?: string;
  versions?: VersionRange;
  features?: number;
  secret?: Buffer | undefined;
  nonce?: Buffer;
}

function dialer(setup: DialerSetup = {}): DialerHandshake {
  return new DialerHandshake({
    selfId: setup.selfId ?? 'alpha',
    expectedPeerId: setup.expectedPeerId ?? 'bravo',
    versions: setup.versions ?? { min: 1, max: 1 },
    features: setup.features ?? 0,
    secret: 'secret' in setup ? setup.secret : undefined,
    nonce: setup.nonce ?? nonce(0xd1),
  });
}

interface AcceptorSetup {
  selfId?: string;
  versions?: VersionRange;
  features?: number;
  /** The configured peers and their secrets. @default { alpha: no secret } */
  peers?: Record<string, AcceptorPeer>;
  nonce?: Buffer;
}

function acceptor(setup: AcceptorSetup = {}): AcceptorHandshake {
  const peers = setup.peers ?? { alpha: { secret: undefined } };
  return new AcceptorHandshake({
    selfId: setup.selfId ?? 'bravo',
    versions: setup.versions ?? { min: 1, max: 1 },
    features: setup.features ?? 0,
    lookupPeer: (peerId) => (Object.prototype.hasOwnProperty.call(peers, peerId) ? peers[peerId] : undefined),
    nonce: setup.nonce ?? nonce(0xa1),
  });
}

interface Recorded {
  to: 'dialer' | 'acceptor';
  type: number;
  payload: Buffer;
}

interface Outcome {
  /** The last step of each side (the acceptor's is undefined if it never received a frame). */
  dialer: HandshakeStep;
  acceptor: HandshakeStep | undefined;
  frames: Recorded[];
}

/**
 * Runs a handshake in memory until nothing more is sent; `tamper` may rewrite any frame on the
 * way (a man in the middle, or a broken peer).
 */
function drive(d: DialerHandshake, a: AcceptorHandshake, tamper: (frame: Recorded) => Buffer = (frame) => frame.payload): Outcome {
  const outcome: Outcome = { dialer: d.start(), acceptor: undefined, frames: [] };
  const queue: Recorded[] = outcome.dialer.kind === 'refused' ? [] : outcome.dialer.send.map((frame) => ({ to: 'acceptor', ...frame }));
  for (let guard = 0; queue.length > 0; guard++) {
    assert.ok(guard < 10, 'the handshake does not end');
    const frame = queue.shift() as Recorded;
    const payload = tamper(frame);
    outcome.frames.push({ ...frame, payload });
    const step = frame.to === 'acceptor' ? a.receive(frame.type, payload) : d.receive(frame.type, payload);
    if (frame.to === 'acceptor') outcome.acceptor = step;
    else outcome.dialer = step;
    if (step.kind !== 'refused') {
      const to: Recorded['to'] = frame.to === 'acceptor' ? 'dialer' : 'acceptor';
      queue.push(...step.send.map((out) => ({ to, ...out })));
    }
  }
  return outcome;
}

function typesOf(outcome: Outcome): number[] {
  return outcome.frames.map((frame) => frame.type);
}

/**
 * Asserts that `refuser` refused with `code` and a message matching `message`, and that the
 * other side received that refusal (same code, the message quoted).
 */
function assertRefusal(outcome: Outcome, refuser: 'dialer' | 'acceptor', code: string, message: RegExp): void {
  const mine = outcome[refuser];
  const other = outcome[refuser === 'dialer' ? 'acceptor' : 'dialer'];
  assert.ok(mine !== undefined && mine.kind === 'refuse', `${refuser} should refuse, got ${JSON.stringify(mine)}`);
  assert.equal(mine.code, code);
  assert.match(mine.message, message);
  assert.equal(mine.send.length, 1);
  assert.equal(mine.send[0]?.type, FrameType.REFUSE);
  assert.deepEqual(parseRefusal((mine.send[0] as { payload: Buffer }).payload), { code, message: `refused by the peer: ${mine.message}` });
  assert.ok(other !== undefined && other.kind === 'refused', `the other side should be refused, got ${JSON.stringify(other)}`);
  assert.equal(other.code, code);
  assert.equal(other.message, `refused by the peer: ${mine.message}`);
}

function assertThrowsLink(fn: () => unknown, code: string, message: RegExp): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof LinkError, `expected a LinkError, got ${String(error)}`);
    assert.equal(error.code, code);
    assert.match(error.message, message);
    return true;
  });
}

function hello(fields: { min?: number; max?: number; from?: string; to?: string; features?: number; nonce?: Buffer; auth?: number }): Buffer {
  return new BinaryWriter().u16(fields.min ?? 1).u16(fields.max ?? 1).string(fields.from ?? 'alpha').string(fields.to ?? 'bravo')
    .u32(fields.features ?? 0).raw(fields.nonce ?? nonce(0xd1)).u8(fields.auth ?? 0).encode();
}

function helloReply(fields: { version?: number; from?: string; features?: number; nonce?: Buffer; auth?: number; proof?: Buffer }): Buffer {
  return new BinaryWriter().u16(fields.version ?? 1).string(fields.from ?? 'bravo').u32(fields.features ?? 0)
    .raw(fields.nonce ?? nonce(0xa1)).u8(fields.auth ?? 0).bytes(fields.proof ?? Buffer.alloc(0)).encode();
}

function refusePayload(code: string, message: string): Buffer {
  return new BinaryWriter().string(code).string(message).encode();
}

/** The dialer after start(), waiting for HELLO_REPLY. */
function startedDialer(setup: DialerSetup = {}): DialerHandshake {
  const machine = dialer(setup);
  machine.start();
  return machine;
}

/** Flips one bit of the last byte (where both proofs sit: a u32-prefixed field at the end). */
function flipLastByte(payload: Buffer): Buffer {
  const copy = Buffer.from(payload);
  copy[copy.length - 1] = (copy[copy.length - 1] as number) ^ 0x01;
  return copy;
}

describe('71 link handshake: success', () => {
  it('agrees without a secret: HELLO, HELLO_REPLY, AUTH, WELCOME; unauthenticated', () => {
    const outcome = drive(dialer({ features: 0b0111 }), acceptor({ features: 0b1101 }));
    assert.deepEqual(typesOf(outcome), [FrameType.HELLO, FrameType.HELLO_REPLY, FrameType.AUTH, FrameType.WELCOME]);
    assert.equal(outcome.dialer.kind, 'done');
    assert.equal(outcome.acceptor?.kind, 'done');
    if (outcome.dialer.kind !== 'done' || outcome.acceptor?.kind !== 'done') return;
    assert.deepEqual(outcome.dialer.result, { peerId: 'bravo', version: 1, features: 0b0101, authenticated: false });
    assert.deepEqual(outcome.acceptor.result, { peerId: 'alpha', version: 1, features: 0b0101, authenticated: false });
    // Without a secret the proofs are empty.
    assert.deepEqual(outcome.frames[2]?.payload, Buffer.alloc(4));
    assert.equal(outcome.frames[3]?.payload.length, 0);
  });

  it('agrees with the same secret on both sides; authenticated, with 32-byte proofs', () => {
    const outcome = drive(dialer({ secret: SECRET }), acceptor({ peers: { alpha: { secret: SECRET } } }));
    assert.equal(outcome.dialer.kind, 'done');
    assert.equal(outcome.acceptor?.kind, 'done');
    if (outcome.dialer.kind !== 'done' || outcome.acceptor?.kind !== 'done') return;
    assert.equal(outcome.dialer.result.authenticated, true);
    assert.equal(outcome.acceptor.result.authenticated, true);
    const auth = new BinaryReader(outcome.frames[2]?.payload as Buffer, 'AUTH');
    assert.equal(auth.bytes(PROOF_BYTES).length, PROOF_BYTES);
    auth.end();
    // The secret itself never travels.
    for (const frame of outcome.frames) assert.equal(frame.payload.indexOf(SECRET), -1);
  });

  it('agrees on the highest common version of overlapping ranges', () => {
    const outcome = drive(dialer({ versions: { min: 1, max: 3 } }), acceptor({ versions: { min: 2, max: 5 } }));
    assert.ok(outcome.dialer.kind === 'done' && outcome.acceptor?.kind === 'done');
    assert.equal(outcome.dialer.result.version, 3);
    assert.equal(outcome.acceptor.result.version, 3);
    assert.deepEqual([LINK_PROTOCOL_VERSION_MIN, LINK_PROTOCOL_VERSION_MAX], [1, 1]);
  });

  it('records the claimed peer id on the acceptor once HELLO is read', () => {
    const machine = acceptor();
    assert.equal(machine.claimedPeerId, undefined);
    machine.receive(FrameType.HELLO, hello({ from: 'nobody' }));
    assert.equal(machine.claimedPeerId, 'nobody');
  });
});

describe('71 link handshake: refusals', () => {
  it('wrong secret: the dialer finds the acceptor does not hold the same secret (ERR_LINK_AUTH)', () => {
    const outcome = drive(dialer({ secret: SECRET }), acceptor({ peers: { alpha: { secret: OTHER_SECRET } } }));
    assertRefusal(outcome, 'dialer', 'ERR_LINK_AUTH', /^authentication failed: controller bravo does not hold the same secret$/);
    assert.deepEqual(typesOf(outcome), [FrameType.HELLO, FrameType.HELLO_REPLY, FrameType.REFUSE]);
  });

  it("wrong proof from the dialer: the acceptor refuses the AUTH (ERR_LINK_AUTH)", () => {
    const outcome = drive(dialer({ secret: SECRET }), acceptor({ peers: { alpha: { secret: SECRET } } }),
      (frame) => (frame.type === FrameType.AUTH ? flipLastByte(frame.payload) : frame.payload));
    assertRefusal(outcome, 'acceptor', 'ERR_LINK_AUTH', /^authentication failed: controller alpha does not hold the same secret$/);
    assert.deepEqual(typesOf(outcome), [FrameType.HELLO, FrameType.HELLO_REPLY, FrameType.AUTH, FrameType.REFUSE]);
  });

  it("wrong proof from the acceptor: the dialer refuses the HELLO_REPLY (ERR_LINK_AUTH)", () => {
    const outcome = drive(dialer({ secret: SECRET }), acceptor({ peers: { alpha: { secret: SECRET } } }),
      (frame) => (frame.type === FrameType.HELLO_REPLY ? flipLastByte(frame.payload) : frame.payload));
    assertRefusal(outcome, 'dialer', 'ERR_LINK_AUTH', /^authentication failed: controller bravo does not hold the same secret$/);
  });

  it('a proof of the wrong length, none, or zeros is refused (ERR_LINK_AUTH)', () => {
    for (const proof of [Buffer.alloc(0), Buffer.alloc(PROOF_BYTES - 1), Buffer.alloc(PROOF_BYTES)]) {
      const outcome = drive(dialer({ secret: SECRET }), acceptor({ peers: { alpha: { secret: SECRET } } }),
        (frame) => (frame.type === FrameType.AUTH ? new BinaryWriter().bytes(proof).encode() : frame.payload));
      assertRefusal(outcome, 'acceptor', 'ERR_LINK_AUTH', /does not hold the same secret/);
    }
    // Longer than a proof: a malformed message.
    const machine = acceptor({ peers: { alpha: { secret: SECRET } } });
    machine.receive(FrameType.HELLO, hello({ auth: 1 }));
    assertThrowsLink(() => machine.receive(FrameType.AUTH, new BinaryWriter().bytes(Buffer.alloc(PROOF_BYTES + 1)).encode()),
      'ERR_LINK_BAD_MESSAGE', /^AUTH: field of 33 bytes exceeds 32$/);
  });

  it('a secret on the dialer only: the acceptor refuses (ERR_LINK_AUTH)', () => {
    const outcome = drive(dialer({ secret: SECRET }), acceptor({ peers: { alpha: { secret: undefined } } }));
    assertRefusal(outcome, 'acceptor', 'ERR_LINK_AUTH', /^controller alpha requires authentication; bravo has no secret for it$/);
  });

  it('a secret on the acceptor only: the acceptor refuses (ERR_LINK_AUTH)', () => {
    const outcome = drive(dialer({ secret: undefined }), acceptor({ peers: { alpha: { secret: SECRET } } }));
    assertRefusal(outcome, 'acceptor', 'ERR_LINK_AUTH', /^bravo requires authentication; controller alpha offered none$/);
  });

  it('the dialer checks the auth mode of the reply too, both ways (ERR_LINK_AUTH)', () => {
    const withoutSecret = startedDialer();
    const step = withoutSecret.receive(FrameType.HELLO_REPLY, helloReply({ auth: 1, proof: Buffer.alloc(PROOF_BYTES) }));
    assert.ok(step.kind === 'refuse');
    assert.equal(step.code, 'ERR_LINK_AUTH');
    assert.equal(step.message, 'the peer requires authentication; no secret is configured here');
    const withSecret = startedDialer({ secret: SECRET });
    const other = withSecret.receive(FrameType.HELLO_REPLY, helloReply({ auth: 0 }));
    assert.ok(other.kind === 'refuse');
    assert.equal(other.code, 'ERR_LINK_AUTH');
    assert.equal(other.message, 'a secret is configured here; the peer has none');
  });

  it('no common version: the acceptor refuses and names both ranges (ERR_LINK_VERSION)', () => {
    const outcome = drive(dialer({ versions: { min: 2, max: 3 } }), acceptor({ versions: { min: 1, max: 1 } }));
    assertRefusal(outcome, 'acceptor', 'ERR_LINK_VERSION',
      /^incompatible link protocol: controller alpha speaks 2\.\.3, controller bravo speaks 1$/);
    const newer = drive(dialer({ versions: { min: 1, max: 1 } }), acceptor({ versions: { min: 2, max: 4 } }));
    assertRefusal(newer, 'acceptor', 'ERR_LINK_VERSION', /controller alpha speaks 1, controller bravo speaks 2\.\.4$/);
    // An empty range (min above max) is no range at all.
    const step = acceptor().receive(FrameType.HELLO, hello({ min: 3, max: 1 }));
    assert.ok(step.kind === 'refuse');
    assert.equal(step.code, 'ERR_LINK_VERSION');
    assert.match(step.message, /controller alpha speaks 3\.\.1/);
  });

  it('the dialer refuses a version it did not offer (ERR_LINK_VERSION)', () => {
    const step = startedDialer({ versions: { min: 1, max: 2 } }).receive(FrameType.HELLO_REPLY, helloReply({ version: 3 }));
    assert.ok(step.kind === 'refuse');
    assert.equal(step.code, 'ERR_LINK_VERSION');
    assert.equal(step.message, 'the peer chose link protocol 3; this controller speaks 1..2');
  });

  it('the dialer reaches a different controller than it expected (ERR_LINK_PEER_ID)', () => {
    // charlie answers at the address where alpha expects bravo (a stale config, a moved address).
    const expectsBravo = startedDialer({ expectedPeerId: 'bravo' });
    const charlie = acceptor({ selfId: 'charlie' });
    const reply = charlie.receive(FrameType.HELLO, hello({ to: 'charlie' }));
    assert.ok(reply.kind === 'continue');
    const step = expectsBravo.receive(FrameType.HELLO_REPLY, (reply.send[0] as { payload: Buffer }).payload);
    assert.ok(step.kind === 'refuse');
    assert.equal(step.code, 'ERR_LINK_PEER_ID');
    assert.equal(step.message, 'expected controller bravo at this address, found charlie');
  });

  it('a HELLO addressed to another controller is refused (ERR_LINK_PEER_ID)', () => {
    const outcome = drive(dialer({ expectedPeerId: 'charlie' }), acceptor({ selfId: 'bravo' }));
    assertRefusal(outcome, 'acceptor', 'ERR_LINK_PEER_ID', /^this is controller bravo, not charlie$/);
  });

  it('a dialer that is not a configured peer is refused (ERR_LINK_PEER_ID)', () => {
    const outcome = drive(dialer({ selfId: 'mallory' }), acceptor({ peers: { alpha: { secret: undefined } } }));
    assertRefusal(outcome, 'acceptor', 'ERR_LINK_PEER_ID', /^controller "mallory" is not a configured peer of bravo$/);
    // An id that no configuration could hold, even if the lookup said yes.
    const permissive = new AcceptorHandshake({
      selfId: 'bravo', versions: { min: 1, max: 1 }, features: 0, lookupPeer: () => ({ secret: undefined }), nonce: nonce(1),
    });
    const step = permissive.receive(FrameType.HELLO, hello({ from: 'bad id\n' }));
    assert.ok(step.kind === 'refuse');
    assert.equal(step.code, 'ERR_LINK_PEER_ID');
    assert.match(step.message, /^controller "bad id\\n" is not a configured peer of bravo$/);
  });

  it('self-connection: the acceptor refuses a HELLO from its own id (ERR_LINK_SELF)', () => {
    const outcome = drive(dialer({ selfId: 'bravo', expectedPeerId: 'bravo' }), acceptor({ selfId: 'bravo', peers: { bravo: { secret: undefined } } }));
    assertRefusal(outcome, 'acceptor', 'ERR_LINK_SELF', /^controller bravo connected to itself$/);
  });

  it('self-connection: the dialer refuses a HELLO_REPLY from its own id (ERR_LINK_SELF)', () => {
    const step = startedDialer({ selfId: 'alpha', expectedPeerId: 'bravo' }).receive(FrameType.HELLO_REPLY, helloReply({ from: 'alpha' }));
    assert.ok(step.kind === 'refuse');
    assert.equal(step.code, 'ERR_LINK_SELF');
    assert.equal(step.message, 'connected to itself (controller alpha)');
  });

  it('frames out of order are refused (ERR_LINK_PROTOCOL), naming the frame and the stage', () => {
    const cases: [string, () => HandshakeStep, RegExp][] = [
      ['AUTH before HELLO', () => acceptor().receive(FrameType.AUTH, new BinaryWriter().bytes(Buffer.alloc(0)).encode()),
        /^frame type 0x3 is not allowed in the handshake now \(waiting-hello\)$/],
      ['WELCOME before HELLO_REPLY', () => startedDialer().receive(FrameType.WELCOME, Buffer.alloc(0)), /0x4 .*\(sent-hello\)$/],
      ['a frame before start()', () => dialer().receive(FrameType.HELLO_REPLY, helloReply({})), /0x2 .*\(new\)$/],
      ['HELLO to the dialer', () => startedDialer().receive(FrameType.HELLO, hello({})), /0x1 .*\(sent-hello\)$/],
      ['a message before the handshake', () => acceptor().receive(0x20, Buffer.alloc(0)), /0x20 .*\(waiting-hello\)$/],
      ['PING during the handshake', () => acceptor().receive(FrameType.PING, Buffer.alloc(8)), /0x6 /],
      ['a second HELLO', () => {
        const machine = acceptor();
        machine.receive(FrameType.HELLO, hello({}));
        return machine.receive(FrameType.HELLO, hello({}));
      }, /0x1 .*\(waiting-auth\)$/],
      ['a second HELLO_REPLY', () => {
        const machine = startedDialer();
        machine.receive(FrameType.HELLO_REPLY, helloReply({}));
        return machine.receive(FrameType.HELLO_REPLY, helloReply({}));
      }, /0x2 .*\(sent-auth\)$/],
      ['AUTH after WELCOME', () => {
        const machine = acceptor();
        machine.receive(FrameType.HELLO, hello({}));
        machine.receive(FrameType.AUTH, new BinaryWriter().bytes(Buffer.alloc(0)).encode());
        return machine.receive(FrameType.AUTH, new BinaryWriter().bytes(Buffer.alloc(0)).encode());
      }, /0x3 .*\(finished\)$/],
    ];
    for (const [what, run, message] of cases) {
      const step = run();
      assert.ok(step.kind === 'refuse', `${what}: ${JSON.stringify(step)}`);
      assert.equal(step.code, 'ERR_LINK_PROTOCOL', what);
      assert.match(step.message, message, what);
    }
  });

  it('a machine that refused accepts nothing more, not even a correct frame', () => {
    // A wrong AUTH, then the right one: a second guess at the proof must not be allowed.
    const d = dialer({ secret: SECRET });
    const a = acceptor({ peers: { alpha: { secret: SECRET } } });
    const helloStep = d.start();
    assert.ok(helloStep.kind === 'continue');
    const reply = a.receive(FrameType.HELLO, (helloStep.send[0] as { payload: Buffer }).payload);
    assert.ok(reply.kind === 'continue');
    const authStep = d.receive(FrameType.HELLO_REPLY, (reply.send[0] as { payload: Buffer }).payload);
    assert.ok(authStep.kind === 'continue');
    const goodAuth = (authStep.send[0] as { payload: Buffer }).payload;
    assert.equal(a.receive(FrameType.AUTH, flipLastByte(goodAuth)).kind, 'refuse');
    const retry = a.receive(FrameType.AUTH, goodAuth);
    assert.ok(retry.kind === 'refuse', `a refused acceptor went on: ${retry.kind}`);
    assert.equal(retry.code, 'ERR_LINK_PROTOCOL');

    // A dialer that refused a reply does not take another.
    const picky = startedDialer();
    assert.equal(picky.receive(FrameType.HELLO_REPLY, helloReply({ from: 'charlie' })).kind, 'refuse');
    const second = picky.receive(FrameType.HELLO_REPLY, helloReply({}));
    assert.ok(second.kind === 'refuse', `a refused dialer went on: ${second.kind}`);
    assert.equal(second.code, 'ERR_LINK_PROTOCOL');

    // A machine that read a malformed frame is done too.
    const broken = acceptor();
    assert.throws(() => broken.receive(FrameType.HELLO, Buffer.alloc(3)), LinkError);
    assert.equal(broken.receive(FrameType.HELLO, hello({})).kind, 'refuse');
  });

  it('malformed payloads throw ERR_LINK_BAD_MESSAGE from receive()', () => {
    const good = hello({});
    for (let length = 0; length < good.length; length++) {
      assertThrowsLink(() => acceptor().receive(FrameType.HELLO, good.subarray(0, length)), 'ERR_LINK_BAD_MESSAGE', /^HELLO: truncated/);
    }
    assertThrowsLink(() => acceptor().receive(FrameType.HELLO, Buffer.concat([good, Buffer.alloc(1)])), 'ERR_LINK_BAD_MESSAGE',
      /^HELLO: 1 trailing bytes$/);
    assertThrowsLink(() => acceptor().receive(FrameType.HELLO, hello({ from: 'a'.repeat(65) })), 'ERR_LINK_BAD_MESSAGE',
      /^HELLO: string of 65 bytes exceeds 64$/);
    const reply = helloReply({});
    for (let length = 0; length < reply.length; length++) {
      assertThrowsLink(() => startedDialer().receive(FrameType.HELLO_REPLY, reply.subarray(0, length)), 'ERR_LINK_BAD_MESSAGE',
        /^HELLO_REPLY: truncated/);
    }
    assertThrowsLink(() => startedDialer().receive(FrameType.HELLO_REPLY, Buffer.concat([reply, Buffer.alloc(2)])), 'ERR_LINK_BAD_MESSAGE',
      /^HELLO_REPLY: 2 trailing bytes$/);
    const waitingAuth = (): AcceptorHandshake => {
      const machine = acceptor();
      machine.receive(FrameType.HELLO, good);
      return machine;
    };
    assertThrowsLink(() => waitingAuth().receive(FrameType.AUTH, Buffer.alloc(2)), 'ERR_LINK_BAD_MESSAGE', /^AUTH: truncated/);
    assertThrowsLink(() => waitingAuth().receive(FrameType.AUTH, Buffer.alloc(5)), 'ERR_LINK_BAD_MESSAGE', /^AUTH: 1 trailing bytes$/);
    const sentAuth = startedDialer();
    sentAuth.receive(FrameType.HELLO_REPLY, reply);
    assertThrowsLink(() => sentAuth.receive(FrameType.WELCOME, Buffer.alloc(1)), 'ERR_LINK_BAD_MESSAGE', /^WELCOME: 1 trailing bytes$/);
    assertThrowsLink(() => acceptor().receive(FrameType.REFUSE, Buffer.alloc(1)), 'ERR_LINK_BAD_MESSAGE', /^REFUSE: truncated/);
    assertThrowsLink(() => startedDialer().receive(FrameType.REFUSE, Buffer.concat([refusePayload('ERR_LINK_AUTH', 'x'), Buffer.alloc(1)])),
      'ERR_LINK_BAD_MESSAGE', /^REFUSE: 1 trailing bytes$/);
    assertThrowsLink(() => parseRefusal(new BinaryWriter().string('E'.repeat(65)).string('').encode()), 'ERR_LINK_BAD_MESSAGE',
      /^REFUSE: string of 65 bytes exceeds 64$/);
  });

  it('well-formed but inconsistent payloads are refused with ERR_LINK_BAD_MESSAGE', () => {
    const unknownMode = acceptor().receive(FrameType.HELLO, hello({ auth: 7 }));
    assert.ok(unknownMode.kind === 'refuse');
    assert.equal(unknownMode.code, 'ERR_LINK_BAD_MESSAGE');
    assert.equal(unknownMode.message, 'unknown auth mode 7');
    for (const withSecret of [false, true]) {
      const step = startedDialer(withSecret ? { secret: SECRET } : {}).receive(FrameType.HELLO_REPLY, helloReply({ auth: 7 }));
      assert.ok(step.kind === 'refuse');
      assert.equal(step.code, 'ERR_LINK_BAD_MESSAGE', step.message);
      assert.equal(step.message, 'unknown auth mode 7');
    }
    const proofWithoutAuth = startedDialer().receive(FrameType.HELLO_REPLY, helloReply({ proof: Buffer.alloc(PROOF_BYTES) }));
    assert.ok(proofWithoutAuth.kind === 'refuse');
    assert.equal(proofWithoutAuth.code, 'ERR_LINK_BAD_MESSAGE');
    assert.equal(proofWithoutAuth.message, 'HELLO_REPLY carries a proof without authentication');
    const machine = acceptor();
    machine.receive(FrameType.HELLO, hello({}));
    const authWithProof = machine.receive(FrameType.AUTH, new BinaryWriter().bytes(Buffer.alloc(PROOF_BYTES)).encode());
    assert.ok(authWithProof.kind === 'refuse');
    assert.equal(authWithProof.code, 'ERR_LINK_BAD_MESSAGE');
    assert.equal(authWithProof.message, 'AUTH carries a proof without authentication');
  });

  it('decodes a REFUSE at any stage; an unknown code becomes ERR_LINK_PROTOCOL and is quoted', () => {
    const known = startedDialer().receive(FrameType.REFUSE, refusePayload('ERR_LINK_TOO_MANY_CONNECTIONS', 'busy'));
    assert.deepEqual(known, { kind: 'refused', code: 'ERR_LINK_TOO_MANY_CONNECTIONS', message: 'refused by the peer: busy' });
    const unknown = acceptor().receive(FrameType.REFUSE, refusePayload('ERR_SOMETHING_NEW', 'from a later version'));
    assert.deepEqual(unknown, { kind: 'refused', code: 'ERR_LINK_PROTOCOL', message: 'refused by the peer: ERR_SOMETHING_NEW: from a later version' });
    // A code of another area is not trusted either.
    assert.deepEqual(parseRefusal(refusePayload('ERR_VOLUME_CLOSED', 'x')), { code: 'ERR_LINK_PROTOCOL', message: 'refused by the peer: ERR_VOLUME_CLOSED: x' });
    for (const code of ['ERR_LINK_VERSION', 'ERR_LINK_PEER_ID', 'ERR_LINK_SELF', 'ERR_LINK_AUTH', 'ERR_LINK_PROTOCOL', 'ERR_LINK_BAD_MESSAGE']) {
      assert.equal(parseRefusal(refusePayload(code, 'm')).code, code);
    }
    assert.equal(dialer().receive(FrameType.REFUSE, refusePayload('ERR_LINK_AUTH', '')).kind, 'refused');
  });

  it('refuses caller mistakes in the constructors with TypeError and RangeError', () => {
    assert.throws(() => dialer({ selfId: '' }), TypeError);
    assert.throws(() => dialer({ selfId: 'has space' }), TypeError);
    assert.throws(() => dialer({ expectedPeerId: 'x'.repeat(65) }), TypeError);
    assert.throws(() => dialer({ nonce: Buffer.alloc(NONCE_BYTES - 1) }), RangeError);
    assert.throws(() => acceptor({ selfId: 'a/b' }), TypeError);
    assert.throws(() => acceptor({ nonce: Buffer.alloc(NONCE_BYTES + 1) }), RangeError);
    const machine = dialer();
    machine.start();
    assert.throws(() => machine.start(), /handshake started twice/);
  });
});

describe('71 link handshake: replay and reflection', () => {
  it('an AUTH recorded from one session is refused in a new session (a new acceptor nonce)', () => {
    const recorded = drive(dialer({ secret: SECRET }), acceptor({ peers: { alpha: { secret: SECRET } }, nonce: nonce(0x11) }));
    assert.equal(recorded.acceptor?.kind, 'done');
    const recordedHello = recorded.frames[0] as Recorded;
    const recordedAuth = recorded.frames[2] as Recorded;
    assert.equal(recordedAuth.type, FrameType.AUTH);

    // The attacker replays HELLO and AUTH, without the secret, to a new acceptor session.
    const fresh = acceptor({ peers: { alpha: { secret: SECRET } }, nonce: nonce(0x22) });
    assert.equal(fresh.receive(FrameType.HELLO, recordedHello.payload).kind, 'continue');
    const step = fresh.receive(FrameType.AUTH, recordedAuth.payload);
    assert.ok(step.kind === 'refuse');
    assert.equal(step.code, 'ERR_LINK_AUTH');
    assert.match(step.message, /authentication failed: controller alpha does not hold the same secret/);

    // Only the nonce stands between the replay and success: the same nonce would accept it.
    const sameNonce = acceptor({ peers: { alpha: { secret: SECRET } }, nonce: nonce(0x11) });
    sameNonce.receive(FrameType.HELLO, recordedHello.payload);
    assert.equal(sameNonce.receive(FrameType.AUTH, recordedAuth.payload).kind, 'done');
  });

  it("a recorded HELLO_REPLY is refused by a dialer with a new nonce", () => {
    const recorded = drive(dialer({ secret: SECRET, nonce: nonce(0x33) }), acceptor({ peers: { alpha: { secret: SECRET } } }));
    const recordedReply = recorded.frames[1] as Recorded;
    const step = startedDialer({ secret: SECRET, nonce: nonce(0x44) }).receive(FrameType.HELLO_REPLY, recordedReply.payload);
    assert.ok(step.kind === 'refuse');
    assert.equal(step.code, 'ERR_LINK_AUTH');
  });

  it("the acceptor's proof reflected back as the dialer's AUTH is refused (the labels differ)", () => {
    const a = acceptor({ peers: { alpha: { secret: SECRET } } });
    const reply = a.receive(FrameType.HELLO, hello({ auth: 1 }));
    assert.ok(reply.kind === 'continue');
    const reader = new BinaryReader((reply.send[0] as { payload: Buffer }).payload, 'HELLO_REPLY');
    reader.u16();
    reader.string();
    reader.u32();
    reader.raw(NONCE_BYTES);
    reader.u8();
    const acceptorProof = reader.bytes(PROOF_BYTES);
    reader.end();
    assert.equal(acceptorProof.length, PROOF_BYTES);
    const step = a.receive(FrameType.AUTH, new BinaryWriter().bytes(acceptorProof).encode());
    assert.ok(step.kind === 'refuse');
    assert.equal(step.code, 'ERR_LINK_AUTH');
  });

  it('two real Links send different nonces (node:crypto)', () => {
    const nonces = [0, 1].map(() => {
      const wire = new CaptureWire();
      const pending: ((error: string | undefined, wire?: Wire) => void)[] = [];
      const network: Network = {
        dial: (_address, _timeoutMs, callback) => {
          pending.push(callback);
          return { cancel: () => undefined };
        },
        listen: () => Promise.reject(new Error('not used')),
      };
      const link = new Link({ selfId: 'alpha', peerId: 'bravo', address: { host: 'bravo.test', port: 1 }, network, clock: inertClock,
        random: new SeededRandom(1) });
      link.start();
      assert.equal(pending.length, 1);
      (pending[0] as (error: string | undefined, wire?: Wire) => void)(undefined, wire);
      assert.equal(link.currentState, 'handshaking');
      const frames: Frame[] = [];
      new FrameDecoder({ isKnownMessageType }).push(Buffer.concat(wire.written), (frame) => frames.push(frame));
      void link.close();
      assert.equal(frames[0]?.type, FrameType.HELLO);
      const reader = new BinaryReader(frames[0]?.payload as Buffer, 'HELLO');
      reader.u16();
      reader.u16();
      assert.equal(reader.string(), 'alpha');
      assert.equal(reader.string(), 'bravo');
      reader.u32();
      const sent = Buffer.from(reader.raw(NONCE_BYTES));
      assert.equal(reader.u8(), 0);
      reader.end();
      return sent;
    });
    const [first, second] = nonces as [Buffer, Buffer];
    assert.equal(first.length, NONCE_BYTES);
    assert.notDeepEqual(first, second);
    assert.notDeepEqual(first, Buffer.alloc(NONCE_BYTES));
  });
});

/** A clock whose timers never fire: the nonce test needs no time to pass. */
const inertClock: Clock = {
  nowMs: () => 0,
  wallTimeMs: () => 0,
  setTimer: (): TimerHandle => ({ cancel: () => undefined }),
};

/** A wire that keeps what is written to it. */
class CaptureWire implements Wire {
  readonly description = 'capture';
  readonly remote = { host: 'bravo.test', port: 1 };
  readonly bufferedBytes = 0;
  readonly written: Buffer[] = [];
  attach(): void {}
  write(chunks: readonly Buffer[]): boolean {
    for (const chunk of chunks) this.written.push(Buffer.from(chunk));
    return true;
  }
  pause(): void {}
  resume(): void {}
  destroy(): void {}
  end(): void {}
}

describe('71 link handshake: HMAC-SHA-256 (RFC 4231)', () => {
  const text = (value: string): Buffer => Buffer.from(value, 'ascii');
  const hexBytes = (value: string): Buffer => Buffer.from(value, 'hex');
  const cases: { name: string; key: Buffer; data: Buffer; mac: string }[] = [
    { name: '1', key: Buffer.alloc(20, 0x0b), data: text('Hi There'), mac: 'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7' },
    { name: '2', key: text('Jefe'), data: text('what do ya want for nothing?'), mac: '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843' },
    { name: '3', key: Buffer.alloc(20, 0xaa), data: Buffer.alloc(50, 0xdd), mac: '773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe' },
    { name: '4', key: hexBytes('0102030405060708090a0b0c0d0e0f10111213141516171819'), data: Buffer.alloc(50, 0xcd),
      mac: '82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b' },
    // Test case 5 defines only the first 128 bits.
    { name: '5 (truncated to 128 bits)', key: Buffer.alloc(20, 0x0c), data: text('Test With Truncation'), mac: 'a3b6167473100ee06e0c796c2955552b' },
    { name: '6', key: Buffer.alloc(131, 0xaa), data: text('Test Using Larger Than Block-Size Key - Hash Key First'),
      mac: '60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54' },
    { name: '7', key: Buffer.alloc(131, 0xaa),
      data: text('This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.'),
      mac: '9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2' },
  ];
  for (const { name, key, data, mac } of cases) {
    it(`test case ${name}`, () => {
      const result = hmacSha256(key, data);
      assert.equal(result.length, 32);
      assert.equal(result.subarray(0, mac.length / 2).toString('hex'), mac);
    });
  }
});
