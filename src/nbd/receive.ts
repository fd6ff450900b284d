// Notes on the design
// -------------------
// Receive into the store: a WRITE payload read from the socket straight into the volume's memory
// at its target offset, so the kernel's socket copy is the only copy of those bytes (today's
// path, and nbdkit's, copy each payload twice: socket -> receive buffer, buffer -> store). The
// full case list is docs/nbd-receive.md; in short:
//
// When: the connection's next read would land a WRITE payload of which at least 32 KiB is still
// missing (connection.ts nextReadBuffer), the header is parsed (the decoder holds it), the request
// passes P.validateRequest exactly as handleRequest will check it (so a request that would be
// rejected changes nothing), the server is not shutting down, no other payload of this
// connection is being received this way, and the export's volume offers beginDirectWrite (a
// storage Volume, or a pair export's PairVolume on the primary, which may revoke a landing when
// its role changes: see "replicated" in the doc). beginDirectWrite does, natively, what write()
// does before a byte lands: range check, the snapshot copy-on-write seam (preserve), and it
// marks every recording bitmap, so tracking is conservative from the first landed byte on. It returns null (nothing was done) when the write
// cannot land in the store itself (an interceptor that may divert it: RAID protection), and
// throws for what write() would refuse (then this falls back and write() answers the error).
//
// Then: the decoder's assembly target becomes the store (RequestDecoder.redirectPayload; bytes of
// the payload already read are copied over once), and every further read of the payload lands
// there (payloadWindow). When the payload is complete, handleRequest commits
// (commitDirectWrite: the seam again for a snapshot created meanwhile, the fence, the bitmaps
// again so data precedes bits as on write(), the journal record from the store) and replies
// exactly as for write(). The reply, and so the acknowledgement, only ever follows the commit of
// a complete payload.
//
// A client that vanishes mid-payload: the socket's 'close' (no read lands after it) commits the
// range unacknowledged (abandonStoreReceive): the store holds whatever landed, the bitmaps were
// marked before it landed, and the journal gets a record of what the store now holds, so a
// replica never differs from the store without a record or a bit saying so. NBD allows any
// content for a write that was never acknowledged; it never allows an acknowledged torn one,
// and none is acknowledged.

import type { NbdLogger } from './types';
import type { ExportEntry } from './types';
import * as P from './protocol';

/** A WRITE being received into the store: the range begun on the volume. */
export interface DirectWrite {
  byteOffset: number;
  byteLength: number;
  /** Set when the volume revoked it (committed by the volume; the request is refused with it). */
  revoked?: Error;
}

/** What this module needs of a connection. */
interface Receiver {
  directWrite: DirectWrite | null;
  /** A revoked landing: the socket read already named into the store must land elsewhere. */
  retargetRevokedRead?(): void;
}

/**
 * Tries to receive the decoder's pending WRITE payload into the store (see the note). True when
 * the payload now goes there (the caller takes decoder.payloadWindow() as the read target).
 */
export function beginStoreReceive(receiver: Receiver, decoder: P.RequestDecoder, entry: ExportEntry, limits: P.ExportLimits): boolean {
  const volume = entry.volume;
  if (volume.beginDirectWrite === undefined || volume.commitDirectWrite === undefined) return false;
  if (!decoder.payloadPending || decoder.payloadRedirected || decoder.missingPayloadBytes === 0) return false;
  const request = decoder.request;
  if (request.type !== P.NBD_CMD_WRITE || P.validateRequest(request, limits) !== null) return false;
  let view: Uint8Array | null;
  const direct: DirectWrite = { byteOffset: request.offset, byteLength: request.length };
  // A pair's primary may revoke the landing (its role changed): the rest of the payload goes to
  // the decoder's own buffer, and the request is refused when it completes.
  const revoke = (reason: Error): void => {
    if (receiver.directWrite !== direct || direct.revoked !== undefined) return;
    direct.revoked = reason;
    decoder.revokeRedirect();
    receiver.retargetRevokedRead?.();
  };
  try {
    view = volume.beginDirectWrite(request.offset, request.length, revoke);
  } catch {
    // What write() would refuse: it answers the error when the request is handled.
    return false;
  }
  if (view === null) return false;
  const target = Buffer.isBuffer(view) ? view : Buffer.from(view.buffer, view.byteOffset, view.byteLength);
  receiver.directWrite = direct;
  decoder.redirectPayload(target);
  return true;
}

/** Commits the direct write of a complete payload; returns its sequence (throws as write() would). */
export function commitStoreReceive(receiver: Receiver, entry: ExportEntry): number {
  const direct = receiver.directWrite;
  if (direct === null || entry.volume.commitDirectWrite === undefined) throw new Error('no direct write to commit');
  receiver.directWrite = null;
  if (direct.revoked !== undefined) throw direct.revoked;
  return entry.volume.commitDirectWrite(direct.byteOffset, direct.byteLength);
}

/** The socket closed mid-payload: commit what landed, never acknowledged (see the note). */
export function abandonStoreReceive(receiver: Receiver, entry: ExportEntry, log: NbdLogger): void {
  const direct = receiver.directWrite;
  receiver.directWrite = null;
  if (direct === null || direct.revoked !== undefined || entry.volume.commitDirectWrite === undefined) return;
  try {
    entry.volume.commitDirectWrite(direct.byteOffset, direct.byteLength);
  } catch (error) {
    // The volume closed meanwhile (its bitmaps were marked at begin): nothing more to record.
    log.debug({ byteOffset: direct.byteOffset, byteLength: direct.byteLength, err: String(error) }, 'nbd abandoned direct write not committed');
  }
}
