// Notes on the design
// -------------------
// The link handshake as a pure state machine: it consumes decoded frames and returns what to
// send and how it ended. No sockets, no timers (the link owns the handshake timeout), no
// randomness of its own (nonces are passed in, from node:crypto in real use).
//
//   dialer                                   acceptor
//   HELLO {versions, from, to, features,
//          nonceD, auth}            ------>  checks: not itself, addressed to it, a configured
//                                            peer, a common version, same auth mode
//                                   <------  HELLO_REPLY {version, from, features, nonceA, auth,
//                                                         proofA}   (or REFUSE {code, message})
//   checks the peer id, version, proofA
//   AUTH {proofD}                   ------>  checks proofD
//                                   <------  WELCOME             (or REFUSE)
//
// Authentication (when a shared secret is configured for the peer) is mutual challenge-response:
// each proof is HMAC-SHA-256(secret, label || transcript), where the transcript binds the agreed
// version, both controller ids and both fresh nonces, and the labels differ per role so a proof
// cannot be reflected back. A recorded exchange is useless later: the other side's nonce is new
// every time. Proofs are compared with crypto.timingSafeEqual. The secret never leaves this file
// in any form but a proof; it is never logged.
//
// Refusals carry an ERR_LINK_* code and a message meant for both operators' logs: the refusing
// side logs it and sends it; the refused side logs what it received. A machine that refused, was
// refused or read a malformed frame is failed for good and refuses every later frame: its owner
// closes the connection anyway, and this way a second guess at a proof is never taken even if
// an owner forgot.

import * as crypto from 'node:crypto';

import type { LinkErrorCode } from '../errors';
import { BinaryReader, BinaryWriter } from './codec';
import { FrameType } from './frame';

export const NONCE_BYTES = 32;
export const PROOF_BYTES = 32;
/** Link protocol versions this build speaks. */
export const LINK_PROTOCOL_VERSION_MIN = 1;
export const LINK_PROTOCOL_VERSION_MAX = 1;

const AUTH_NONE = 0;
const AUTH_HMAC_SHA256 = 1;
const DIALER_LABEL = Buffer.from('blockmirror link v1 dialer proof\0');
const ACCEPTOR_LABEL = Buffer.from('blockmirror link v1 acceptor proof\0');
const ID_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;

/** A range of link protocol versions. */
export interface VersionRange {
  min: number;
  max: number;
}

/** What a finished handshake agreed. */
export interface HandshakeResult {
  peerId: string;
  version: number;
  /** Feature bits both sides offered. */
  features: number;
  authenticated: boolean;
}

/** A frame to send: type and payload. */
export interface OutgoingFrame {
  type: number;
  payload: Buffer;
}

/** The outcome of one step. */
export type HandshakeStep =
  | { kind: 'continue'; send: OutgoingFrame[] }
  | { kind: 'done'; send: OutgoingFrame[]; result: HandshakeResult }
  /** This side refuses: send the REFUSE frame, then close. */
  | { kind: 'refuse'; send: OutgoingFrame[]; code: LinkErrorCode; message: string }
  /** The peer refused: close. */
  | { kind: 'refused'; code: LinkErrorCode; message: string };

/** HMAC-SHA-256 (exported for the RFC 4231 test vectors). */
export function hmacSha256(key: Buffer, data: Buffer): Buffer {
  return crypto.createHmac('sha256', key).update(data).digest();
}

function transcript(version: number, dialerId: string, acceptorId: string, dialerNonce: Buffer, acceptorNonce: Buffer): Buffer {
  return new BinaryWriter().u16(version).string(dialerId).string(acceptorId).raw(dialerNonce).raw(acceptorNonce).encode();
}

function proof(secret: Buffer, label: Buffer, data: Buffer): Buffer {
  return hmacSha256(secret, Buffer.concat([label, data]));
}

function proofsEqual(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && crypto.timingSafeEqual(a, b);
}

function refuseFrame(code: LinkErrorCode, message: string): OutgoingFrame {
  return { type: FrameType.REFUSE, payload: new BinaryWriter().string(code).string(message.slice(0, 1000)).encode() };
}

function refuse(code: LinkErrorCode, message: string): HandshakeStep {
  return { kind: 'refuse', send: [refuseFrame(code, message)], code, message };
}

const REFUSAL_CODES = new Set<string>(['ERR_LINK_VERSION', 'ERR_LINK_PEER_ID', 'ERR_LINK_SELF', 'ERR_LINK_AUTH', 'ERR_LINK_PROTOCOL',
  'ERR_LINK_BAD_MESSAGE', 'ERR_LINK_TOO_MANY_CONNECTIONS']);

function decodeRefuse(payload: Buffer): HandshakeStep {
  const reader = new BinaryReader(payload, 'REFUSE');
  const code = reader.string(64);
  const message = reader.string();
  reader.end();
  // A peer's code is data, not trusted: map anything unknown onto ERR_LINK_PROTOCOL.
  const known = REFUSAL_CODES.has(code) ? (code as LinkErrorCode) : 'ERR_LINK_PROTOCOL';
  return { kind: 'refused', code: known, message: `refused by the peer: ${known === code ? '' : `${code}: `}${message}` };
}

/** Decodes the payload of a REFUSE frame received outside a handshake step. */
export function parseRefusal(payload: Buffer): { code: LinkErrorCode; message: string } {
  const step = decodeRefuse(payload);
  if (step.kind !== 'refused') throw new Error('unreachable');
  return { code: step.code, message: step.message };
}

function describeVersions(range: VersionRange): string {
  return range.min === range.max ? `${range.min}` : `${range.min}..${range.max}`;
}

/** Runs one step; a refusal either way, or a throw (a malformed frame), calls `fail` first. */
function runStep(step: () => HandshakeStep, fail: () => void): HandshakeStep {
  let result: HandshakeStep;
  try {
    result = step();
  } catch (error) {
    fail();
    throw error;
  }
  if (result.kind === 'refuse' || result.kind === 'refused') fail();
  return result;
}

function checkId(id: string, what: string): void {
  if (!ID_PATTERN.test(id)) throw new TypeError(`${what} must match ${ID_PATTERN}, got ${JSON.stringify(id)}`);
}

/** The dialing side. */
export class DialerHandshake {
  private stage: 'new' | 'sent-hello' | 'sent-auth' | 'finished' | 'failed' = 'new';
  private result: HandshakeResult | undefined;

  constructor(private readonly options: {
    selfId: string;
    expectedPeerId: string;
    versions: VersionRange;
    features: number;
    /** The shared secret with this peer; absent: unauthenticated. */
    secret: Buffer | undefined;
    nonce: Buffer;
  }) {
    checkId(options.selfId, 'selfId');
    checkId(options.expectedPeerId, 'expectedPeerId');
    if (options.nonce.length !== NONCE_BYTES) throw new RangeError(`nonce must be ${NONCE_BYTES} bytes`);
  }

  /** The first frame. */
  start(): HandshakeStep {
    if (this.stage !== 'new') throw new Error('handshake started twice');
    this.stage = 'sent-hello';
    const { versions, selfId, expectedPeerId, features, nonce, secret } = this.options;
    const payload = new BinaryWriter().u16(versions.min).u16(versions.max).string(selfId).string(expectedPeerId)
      .u32(features).raw(nonce).u8(secret === undefined ? AUTH_NONE : AUTH_HMAC_SHA256).encode();
    return { kind: 'continue', send: [{ type: FrameType.HELLO, payload }] };
  }

  /**
   * Feeds one received frame. After a refusal (either way) or a malformed frame the machine is
   * failed: every later frame is refused, so a second guess at a proof is never taken.
   */
  receive(type: number, payload: Buffer): HandshakeStep {
    return runStep(() => this.step(type, payload), () => {
      this.stage = 'failed';
    });
  }

  private step(type: number, payload: Buffer): HandshakeStep {
    if (type === FrameType.REFUSE) return decodeRefuse(payload);
    const { versions, selfId, expectedPeerId, secret, nonce } = this.options;
    if (this.stage === 'sent-hello' && type === FrameType.HELLO_REPLY) {
      const reader = new BinaryReader(payload, 'HELLO_REPLY');
      const version = reader.u16();
      const peerId = reader.string(64);
      const features = reader.u32();
      const peerNonce = reader.raw(NONCE_BYTES);
      const auth = reader.u8();
      const peerProof = reader.bytes(PROOF_BYTES);
      reader.end();
      if (peerId === selfId) return refuse('ERR_LINK_SELF', `connected to itself (controller ${selfId})`);
      if (peerId !== expectedPeerId) {
        return refuse('ERR_LINK_PEER_ID', `expected controller ${expectedPeerId} at this address, found ${peerId}`);
      }
      if (version < versions.min || version > versions.max) {
        return refuse('ERR_LINK_VERSION', `the peer chose link protocol ${version}; this controller speaks ${describeVersions(versions)}`);
      }
      if (auth !== AUTH_NONE && auth !== AUTH_HMAC_SHA256) return refuse('ERR_LINK_BAD_MESSAGE', `unknown auth mode ${auth}`);
      if ((auth === AUTH_HMAC_SHA256) !== (secret !== undefined)) {
        return refuse('ERR_LINK_AUTH', secret === undefined
          ? 'the peer requires authentication; no secret is configured here'
          : 'a secret is configured here; the peer has none');
      }
      let ownProof: Buffer = Buffer.alloc(0);
      if (secret !== undefined) {
        const data = transcript(version, selfId, peerId, nonce, peerNonce);
        if (!proofsEqual(peerProof, proof(secret, ACCEPTOR_LABEL, data))) {
          return refuse('ERR_LINK_AUTH', `authentication failed: controller ${peerId} does not hold the same secret`);
        }
        ownProof = proof(secret, DIALER_LABEL, data);
      } else if (peerProof.length !== 0) {
        return refuse('ERR_LINK_BAD_MESSAGE', 'HELLO_REPLY carries a proof without authentication');
      }
      this.stage = 'sent-auth';
      this.result = { peerId, version, features: features & this.options.features, authenticated: secret !== undefined };
      return { kind: 'continue', send: [{ type: FrameType.AUTH, payload: new BinaryWriter().bytes(ownProof).encode() }] };
    }
    if (this.stage === 'sent-auth' && type === FrameType.WELCOME) {
      new BinaryReader(payload, 'WELCOME').end();
      this.stage = 'finished';
      return { kind: 'done', send: [], result: this.result as HandshakeResult };
    }
    return refuse('ERR_LINK_PROTOCOL', `frame type 0x${type.toString(16)} is not allowed in the handshake now (${this.stage})`);
  }
}

/** What the acceptor knows about a peer. */
export interface AcceptorPeer {
  /** The shared secret with it; absent: unauthenticated. */
  secret: Buffer | undefined;
}

/** The accepting side. */
export class AcceptorHandshake {
  private stage: 'waiting-hello' | 'waiting-auth' | 'finished' | 'failed' = 'waiting-hello';
  private dialerNonce: Buffer | undefined;
  private peer: AcceptorPeer | undefined;
  private result: HandshakeResult | undefined;

  constructor(private readonly options: {
    selfId: string;
    versions: VersionRange;
    features: number;
    /** The configured peer with this id, or undefined when there is none. */
    lookupPeer: (peerId: string) => AcceptorPeer | undefined;
    nonce: Buffer;
  }) {
    checkId(options.selfId, 'selfId');
    if (options.nonce.length !== NONCE_BYTES) throw new RangeError(`nonce must be ${NONCE_BYTES} bytes`);
  }

  /** The dialer's id once HELLO was read (for logs of a refusal). */
  claimedPeerId: string | undefined;

  /** Feeds one received frame; failed after a refusal or a malformed frame, as the dialer. */
  receive(type: number, payload: Buffer): HandshakeStep {
    return runStep(() => this.step(type, payload), () => {
      this.stage = 'failed';
    });
  }

  private step(type: number, payload: Buffer): HandshakeStep {
    if (type === FrameType.REFUSE) return decodeRefuse(payload);
    const { selfId, versions, nonce } = this.options;
    if (this.stage === 'waiting-hello' && type === FrameType.HELLO) {
      const reader = new BinaryReader(payload, 'HELLO');
      const min = reader.u16();
      const max = reader.u16();
      const peerId = reader.string(64);
      const toId = reader.string(64);
      const features = reader.u32();
      const dialerNonce = reader.raw(NONCE_BYTES);
      const auth = reader.u8();
      reader.end();
      this.claimedPeerId = peerId;
      if (peerId === selfId) return refuse('ERR_LINK_SELF', `controller ${selfId} connected to itself`);
      if (toId !== selfId) return refuse('ERR_LINK_PEER_ID', `this is controller ${selfId}, not ${toId}`);
      const peer = this.options.lookupPeer(peerId);
      if (peer === undefined || !ID_PATTERN.test(peerId)) {
        return refuse('ERR_LINK_PEER_ID', `controller ${JSON.stringify(peerId)} is not a configured peer of ${selfId}`);
      }
      const version = Math.min(max, versions.max);
      if (min > max || version < Math.max(min, versions.min)) {
        return refuse('ERR_LINK_VERSION', `incompatible link protocol: controller ${peerId} speaks ` +
          `${describeVersions({ min, max })}, controller ${selfId} speaks ${describeVersions(versions)}`);
      }
      if (auth !== AUTH_NONE && auth !== AUTH_HMAC_SHA256) return refuse('ERR_LINK_BAD_MESSAGE', `unknown auth mode ${auth}`);
      if ((auth === AUTH_HMAC_SHA256) !== (peer.secret !== undefined)) {
        return refuse('ERR_LINK_AUTH', peer.secret === undefined
          ? `controller ${peerId} requires authentication; ${selfId} has no secret for it`
          : `${selfId} requires authentication; controller ${peerId} offered none`);
      }
      this.peer = peer;
      this.dialerNonce = Buffer.from(dialerNonce);
      this.stage = 'waiting-auth';
      this.result = { peerId, version, features: features & this.options.features, authenticated: peer.secret !== undefined };
      const ownProof = peer.secret === undefined
        ? Buffer.alloc(0)
        : proof(peer.secret, ACCEPTOR_LABEL, transcript(version, peerId, selfId, this.dialerNonce, nonce));
      const reply = new BinaryWriter().u16(version).string(selfId).u32(this.options.features).raw(nonce)
        .u8(auth).bytes(ownProof).encode();
      return { kind: 'continue', send: [{ type: FrameType.HELLO_REPLY, payload: reply }] };
    }
    if (this.stage === 'waiting-auth' && type === FrameType.AUTH) {
      const reader = new BinaryReader(payload, 'AUTH');
      const peerProof = reader.bytes(PROOF_BYTES);
      reader.end();
      const result = this.result as HandshakeResult;
      const secret = (this.peer as AcceptorPeer).secret;
      if (secret !== undefined) {
        const expected = proof(secret, DIALER_LABEL,
          transcript(result.version, result.peerId, selfId, this.dialerNonce as Buffer, nonce));
        if (!proofsEqual(peerProof, expected)) {
          return refuse('ERR_LINK_AUTH', `authentication failed: controller ${result.peerId} does not hold the same secret`);
        }
      } else if (peerProof.length !== 0) {
        return refuse('ERR_LINK_BAD_MESSAGE', 'AUTH carries a proof without authentication');
      }
      this.stage = 'finished';
      return { kind: 'done', send: [{ type: FrameType.WELCOME, payload: Buffer.alloc(0) }], result };
    }
    return refuse('ERR_LINK_PROTOCOL', `frame type 0x${type.toString(16)} is not allowed in the handshake now (${this.stage})`);
  }
}
