// Notes on the design
// -------------------
// The transmission phase: every request from the decoder is counted, validated at the edge
// (protocol.validateRequest, so a rejected request changes nothing) and mapped onto the Volume
// API; replies are written into the connection's ReplyWriter (replies.ts). NbdConnection is the
// top layer of a connection (see connection.ts) and the class the server creates: methods
// only, over the state Connection declares.
//
// Hot path: each received chunk goes into the RequestDecoder and every complete request is
// handled at once (pump). READ, WRITE, TRIM, WRITE_ZEROES, CACHE and BLOCK_STATUS are
// synchronous volume calls: no closure or promise per request. Replies are written into a
// per-connection arena (ReplyWriter), READ data straight from the volume into the arena behind
// its header, and everything produced by one read event goes to the socket as one write (cork
// and writev when a reply was too large for the arena). WRITE payloads reach volume.write as a
// view of the receive buffer when they arrived in one piece, else of the assembly buffer.
// volume.write takes a Uint8Array, so each payload costs one view object (subarray); a
// (buffer, offset, length) form of Volume.write would save it.
//
// Asynchronous work: FLUSH, and FUA on WRITE / TRIM / WRITE_ZEROES (the data is stored
// synchronously, the reply waits for a flush), and the ack point of a write, zero or trim on a
// volume with writeCompletion (a sync pair replies once its secondary applied the write; a
// plain volume costs one branch; the writes of a burst share one promise, so one callback
// replies to all of them). Flushes are group-committed per volume (flush.ts). Because
// the volume is shared and volume.flush() covers the whole volume, a FLUSH on any connection
// covers the writes completed on all of them (NBD_FLAG_CAN_MULTI_CONN). Replies may leave out of
// order (NBD replies carry the client's cookie). Each pending request counts in `inFlight`,
// which flow control bounds (maxInFlightRequests).
//
// Spec decisions (where doc/proto.md leaves a choice):
//   - Errors: ENOSPC for WRITE/WRITE_ZEROES past the end, EINVAL for other commands past it,
//     for unknown commands, unknown or misplaced flags, zero lengths, non-zero FLUSH arguments,
//     BLOCK_STATUS without a selected context, misalignment on strict exports and READ/WRITE
//     longer than maxPayloadBytes; EPERM for WRITE/TRIM/WRITE_ZEROES on a read-only export.
//     WRITE_ZEROES, TRIM, CACHE and BLOCK_STATUS may be of any length within the export.
//   - A WRITE longer than maxPayloadBytes is read and discarded (never buffered) up to
//     maxDiscardBytes and answered EINVAL, so the stream stays in step; a longer one is answered
//     EINVAL and the connection is closed (its payload cannot be skipped safely).
//   - WRITE_ZEROES is always fast for a memory store (never slower than the write it replaces):
//     FAST_ZERO never fails with ENOTSUP. NO_HOLE asks the volume not to punch holes. CACHE is a
//     validated no-op (everything is in memory).
//   - Replies: with structured replies, READ answers with OFFSET_DATA (DONE) or, from
//     holeDetectionMinBytes (64 KiB) up and without DF, OFFSET_DATA/OFFSET_HOLE chunks from the
//     volume's allocation map (holes under 4 KiB travel as data), so 4 KiB reads stay one lookup
//     cheaper; errors are ERROR chunks with a message; other successes are simple replies (the
//     spec allows them when there is no payload).
//   - During a server shutdown requests already received but not started get ESHUTDOWN.

import { isNbdError } from './errors';
import {
  allocationExtents,
  DEFAULT_MAX_EXTENTS,
  dirtyExtents,
  toDescriptors,
  type PlacedExtent,
} from './extents';
import type { FlushWaiter } from './flush';
import { HandshakeConnection } from './handshake';
import * as P from './protocol';
import { commitStoreReceive } from './receive';
import { ARENA_BYTES, errnoForVolumeError, messageBytes } from './replies';
import type { ExportEntry } from './types';

/** Holes smaller than this are sent as data (a hole chunk would cost more than it saves). */
const MIN_HOLE_CHUNK_BYTES = 4096;
/** Stop decoding while this many reply bytes wait in the socket. */
const OUTPUT_HIGH_WATER_BYTES = 8 * 1024 * 1024;
/** Write out the arena mid-batch once this much has accumulated. */
const OUTPUT_FLUSH_BYTES = 1024 * 1024;
/** Replies larger than this get their own buffer instead of arena space. */
const DEDICATED_REPLY_BYTES = ARENA_BYTES / 2;
/** After a WRITE of this size or more, the next read takes the next request header alone. */
const HEADER_FIRST_MIN_BYTES = 128 * 1024;

/**
 * A connection as the server creates it: the transmission layer (request handling, methods
 * only) over the handshake layer and the state of Connection (see connection.ts).
 */
export class NbdConnection extends HandshakeConnection {
  // --- transmission --------------------------------------------------------------------------

  /** Handles every complete request buffered, within the flow-control limits. */
  protected override pump(): void {
    const decoder = this.decoder;
    if (decoder === null || this.state !== 'transmission') return;
    const out = this.out;
    const maxInFlight = this.config.maxInFlightRequests;
    out.begin();
    let blocked = false;
    try {
      for (;;) {
        if (this.inFlight >= maxInFlight || this.socket.writableLength >= OUTPUT_HIGH_WATER_BYTES) {
          blocked = true;
          break;
        }
        const request = decoder.next();
        if (request === null) break;
        this.handleRequest(request);
        if (this.state !== 'transmission') break;
        if (out.unflushedBytes >= OUTPUT_FLUSH_BYTES) out.flush();
      }
    } catch (error) {
      if (isNbdError(error) && error.code === 'ERR_NBD_PAYLOAD_TOO_LARGE') {
        // The header was sound: answer it, then close (its payload cannot be skipped safely).
        this.replyError(decoder.request, P.NBD_EINVAL, P.REJECT.payloadDropped.message);
        out.flush();
        this.server.recordProtocolError(this.id, error);
        this.log.warn({ connectionId: this.id, code: error.code, err: error.message }, 'nbd protocol error');
        this.end({ reason: 'protocol-error', error }, false);
        return;
      }
      out.flush();
      this.protocolFailure(error);
      return;
    }
    out.flush();
    if (this.state !== 'transmission') return;
    if (blocked) this.pauseSocket();
    else this.resumeSocket();
  }

  private handleRequest(request: P.NbdRequest): void {
    const server = this.server;
    server.countRequest(request.type);
    if (this.entry !== null) {
      const index = request.type < P.NBD_CMD_COUNT ? request.type : P.NBD_CMD_COUNT;
      this.entry.requestCounts[index] = (this.entry.requestCounts[index] as number) + 1;
    }
    this.headerFirst = request.type === P.NBD_CMD_WRITE && request.length >= HEADER_FIRST_MIN_BYTES;
    if (request.type === P.NBD_CMD_DISC) {
      this.discReceived = true;
      this.log.debug({ connectionId: this.id }, 'nbd client sent NBD_CMD_DISC');
      this.end({ reason: 'client' }, false);
      return;
    }
    // A payload received into the store (receive.ts) has landed: commit it before anything else
    // (its header was validated before the first byte landed).
    let directSequence = 0;
    if (request.payloadDirect) {
      try {
        directSequence = commitStoreReceive(this, this.entry as ExportEntry);
      } catch (error) {
        return this.replyVolumeError(request, error);
      }
      server.storeReceivedWrites += 1;
    }
    if (this.shuttingDown) {
      this.replyError(request, P.NBD_ESHUTDOWN, 'server is shutting down');
      return;
    }
    const rejection = P.validateRequest(request, this.limits as P.ExportLimits);
    if (rejection !== null) {
      this.replyError(request, rejection.errno, rejection.message);
      return;
    }
    const entry = this.entry as ExportEntry;
    switch (request.type) {
      case P.NBD_CMD_READ:
        return this.handleRead(request, entry);
      case P.NBD_CMD_WRITE: {
        let sequence: number;
        try {
          sequence = request.payloadDirect ? directSequence : entry.volume.write(request.offset, request.payload as Buffer);
        } catch (error) {
          return this.replyVolumeError(request, error);
        }
        server.bytesWritten += request.length;
        entry.bytesWritten += request.length;
        return this.completeWrite(request, entry, sequence);
      }
      case P.NBD_CMD_TRIM: {
        let sequence: number;
        try {
          sequence = entry.volume.trim(request.offset, request.length);
        } catch (error) {
          return this.replyVolumeError(request, error);
        }
        return this.completeWrite(request, entry, sequence);
      }
      case P.NBD_CMD_WRITE_ZEROES:
        // Every zero request is fast for a memory store (it never costs more than the write
        // it replaces), so FAST_ZERO never fails with ENOTSUP.
        let sequence: number;
        try {
          sequence = entry.volume.writeZeroes(request.offset, request.length, { mayPunchHole: (request.flags & P.NBD_CMD_FLAG_NO_HOLE) === 0 });
        } catch (error) {
          return this.replyVolumeError(request, error);
        }
        return this.completeWrite(request, entry, sequence);
      case P.NBD_CMD_FLUSH:
        if (entry.readOnly) return this.replyOk(request);
        return this.startFlush(request, entry);
      case P.NBD_CMD_CACHE:
        // Everything is in memory already: validated, then nothing to do.
        return this.replyOk(request);
      case P.NBD_CMD_BLOCK_STATUS:
        return this.handleBlockStatus(request, entry);
      default:
        return this.replyError(request, P.NBD_EINVAL, 'unknown command');
    }
  }

  /**
   * Replies to a write, zero or trim at its ack point: at once for a plain volume (one branch
   * on the hot path), or when the volume's writeCompletion promise settles (a sync pair).
   */
  private completeWrite(request: P.NbdRequest, entry: ExportEntry, sequence: number): void {
    const wait = entry.volume.writeCompletion === undefined ? null : entry.volume.writeCompletion(sequence);
    if (wait === null) return this.finishWrite(request, entry);
    this.inFlight += 1;
    // The decoder reuses its request object for the next request: keep what the reply needs.
    const held: P.NbdRequest = { ...request, payload: null };
    // A pair's writes of one burst share their ack point's promise: one callback replies to all
    // of them (those that joined before it runs), in the order they were received.
    if (wait === this.ackWait) {
      this.ackHeld.push(held);
      return;
    }
    const group = [held];
    this.ackWait = wait;
    this.ackHeld = group;
    wait.then(
      () => this.afterAckPoint(wait, group, entry, undefined),
      (error: unknown) => this.afterAckPoint(wait, group, entry, error),
    );
  }

  private afterAckPoint(wait: Promise<void>, group: P.NbdRequest[], entry: ExportEntry, error: unknown): void {
    if (this.ackWait === wait) this.ackWait = null;
    this.inFlight -= group.length;
    if (this.state === 'closed' || this.socket.destroyed) return;
    this.out.begin();
    for (const request of group) {
      if (error === undefined) this.finishWrite(request, entry);
      else this.replyVolumeError(request, error);
    }
    this.scheduleWrite();
  }

  private finishWrite(request: P.NbdRequest, entry: ExportEntry): void {
    if ((request.flags & P.NBD_CMD_FLAG_FUA) !== 0) this.startFlush(request, entry);
    else this.replyOk(request);
  }

  private startFlush(request: P.NbdRequest, entry: ExportEntry): void {
    this.inFlight += 1;
    entry.flushes.request({ connection: this, cookieHigh: request.cookieHigh, cookieLow: request.cookieLow, type: request.type });
  }

  /** Called by the FlushCoordinator. */
  completeFlush(waiter: FlushWaiter, error: unknown): void {
    this.inFlight -= 1;
    if (this.state === 'closed' || this.socket.destroyed) return;
    this.out.begin();
    if (error === null) {
      this.replySimple(waiter.cookieHigh, waiter.cookieLow, 0);
    } else {
      this.log.warn({ connectionId: this.id, err: String(error) }, 'nbd flush failed');
      this.writeError(waiter.cookieHigh, waiter.cookieLow, errnoForVolumeError(error), `flush failed: ${String(error)}`);
    }
    this.scheduleWrite();
  }

  private scheduleWrite(): void {
    if (this.writeScheduled) return;
    this.writeScheduled = true;
    queueMicrotask(() => {
      this.writeScheduled = false;
      this.out.flush();
      if (this.state === 'transmission') this.pump();
      else if (this.state === 'closing') this.maybeFinishClosing();
    });
  }

  // --- replies -------------------------------------------------------------------------------

  private replySimple(cookieHigh: number, cookieLow: number, errno: number): void {
    const out = this.out;
    const at = out.reserve(P.NBD_SIMPLE_REPLY_HEADER_BYTES);
    out.commit(P.writeSimpleReply(out.arena, at, errno, cookieHigh, cookieLow));
  }

  private replyOk(request: P.NbdRequest): void {
    this.replySimple(request.cookieHigh, request.cookieLow, 0);
  }

  private replyError(request: P.NbdRequest, errno: number, message: string): void {
    this.writeError(request.cookieHigh, request.cookieLow, errno, message);
  }

  private replyVolumeError(request: P.NbdRequest, error: unknown): void {
    const errno = errnoForVolumeError(error);
    this.log.warn(
      { connectionId: this.id, command: P.commandName(request.type), offset: request.offset, length: request.length, errno, err: String(error) },
      'nbd volume error',
    );
    this.writeError(request.cookieHigh, request.cookieLow, errno, String((error as Error)?.message ?? error));
  }

  /** An error reply: a structured ERROR chunk when negotiated (with a message), else simple. */
  private writeError(cookieHigh: number, cookieLow: number, errno: number, message: string): void {
    this.server.errors += 1;
    const out = this.out;
    if (!this.structured) {
      this.replySimple(cookieHigh, cookieLow, errno);
      return;
    }
    const bytes = messageBytes(message);
    const at = out.reserve(P.errorChunkBytes(bytes.length));
    out.commit(P.writeErrorChunk(out.arena, at, P.NBD_REPLY_FLAG_DONE, cookieHigh, cookieLow, errno, bytes));
  }

  private handleRead(request: P.NbdRequest, entry: ExportEntry): void {
    const length = request.length;
    if (
      this.structured &&
      length >= this.config.holeDetectionMinBytes &&
      (request.flags & P.NBD_CMD_FLAG_DF) === 0
    ) {
      this.readWithHoles(request, entry);
      return;
    }
    const headerBytes = this.structured ? P.OFFSET_DATA_PREFIX_BYTES : P.NBD_SIMPLE_REPLY_HEADER_BYTES;
    const total = headerBytes + length;
    const out = this.out;
    let target: Buffer;
    let at: number;
    let dedicated: Buffer | null = null;
    if (total > DEDICATED_REPLY_BYTES) {
      dedicated = out.dedicated(total);
      target = dedicated;
      at = 0;
    } else {
      at = out.reserve(total);
      target = out.arena;
    }
    const dataAt = this.structured
      ? P.writeOffsetDataPrefix(target, at, P.NBD_REPLY_FLAG_DONE, request.cookieHigh, request.cookieLow, request.offset, length)
      : P.writeSimpleReply(target, at, 0, request.cookieHigh, request.cookieLow);
    try {
      entry.volume.read(request.offset, target.subarray(dataAt, dataAt + length));
    } catch (error) {
      if (dedicated !== null) out.dropDedicated(dedicated);
      this.replyVolumeError(request, error);
      return;
    }
    if (dedicated === null) out.commit(at + total);
    this.server.bytesRead += length;
    entry.bytesRead += length;
  }

  /** Structured READ with OFFSET_HOLE chunks for unallocated extents. */
  private readWithHoles(request: P.NbdRequest, entry: ExportEntry): void {
    const offset = request.offset;
    const length = request.length;
    let extents: PlacedExtent[];
    try {
      extents = allocationExtents(entry.volume.allocationMap(offset, length), offset, length, entry.minimumBlockBytes);
    } catch {
      extents = [{ byteOffset: offset, byteLength: length, flags: 0 }];
    }
    // Small holes travel as data: fold them into their neighbours.
    const runs: PlacedExtent[] = [];
    for (const extent of extents) {
      const hole = (extent.flags & P.NBD_STATE_HOLE) !== 0 && extent.byteLength >= MIN_HOLE_CHUNK_BYTES;
      const flags = hole ? P.NBD_STATE_HOLE : 0;
      const last = runs[runs.length - 1];
      if (last !== undefined && last.flags === flags) last.byteLength += extent.byteLength;
      else runs.push({ byteOffset: extent.byteOffset, byteLength: extent.byteLength, flags });
    }
    let total = 0;
    for (const run of runs) total += run.flags === 0 ? P.OFFSET_DATA_PREFIX_BYTES + run.byteLength : P.OFFSET_HOLE_CHUNK_BYTES;
    const out = this.out;
    // One buffer for the whole reply (arena or dedicated), so a failure can be undone at once.
    const dedicated = total > DEDICATED_REPLY_BYTES ? out.dedicated(total) : null;
    // reserve() may switch arenas: take the target after it.
    const start = dedicated !== null ? 0 : out.reserve(total);
    const target = dedicated ?? out.arena;
    let position = start;
    const { cookieHigh, cookieLow } = request;
    try {
      for (let i = 0; i < runs.length; i++) {
        const run = runs[i] as PlacedExtent;
        const flags = i === runs.length - 1 ? P.NBD_REPLY_FLAG_DONE : 0;
        if (run.flags !== 0) {
          position = P.writeOffsetHole(target, position, flags, cookieHigh, cookieLow, run.byteOffset, run.byteLength);
        } else {
          const dataAt = P.writeOffsetDataPrefix(target, position, flags, cookieHigh, cookieLow, run.byteOffset, run.byteLength);
          entry.volume.read(run.byteOffset, target.subarray(dataAt, dataAt + run.byteLength));
          position = dataAt + run.byteLength;
        }
      }
    } catch (error) {
      if (dedicated !== null) out.dropDedicated(dedicated);
      this.replyVolumeError(request, error);
      return;
    }
    if (dedicated !== null) out.shrinkDedicated(dedicated, position);
    else out.commit(position);
    this.server.bytesRead += length;
    entry.bytesRead += length;
  }

  private handleBlockStatus(request: P.NbdRequest, entry: ExportEntry): void {
    const offset = request.offset;
    const length = request.length;
    const requestOne = (request.flags & P.NBD_CMD_FLAG_REQ_ONE) !== 0;
    const chunks: { id: number; descriptors: P.BlockStatusExtent[] }[] = [];
    try {
      for (const context of this.contexts) {
        let extents: PlacedExtent[];
        if (context.kind === 'allocation') {
          extents = allocationExtents(entry.volume.allocationMap(offset, length), offset, length, entry.minimumBlockBytes);
        } else {
          // The view stays open for the connection; a closed one (bitmap deleted, volume
          // closed) is reopened once, and that failing is an EIO reply.
          if (context.bitmap === null || context.bitmap.closed) context.bitmap = entry.volume.openBitmap(context.bitmapName);
          const bitmap = context.bitmap;
          extents = dirtyExtents(bitmap, offset, length, entry.minimumBlockBytes, DEFAULT_MAX_EXTENTS);
        }
        chunks.push({ id: context.id, descriptors: toDescriptors(extents, length, requestOne, DEFAULT_MAX_EXTENTS) });
      }
    } catch (error) {
      this.replyVolumeError(request, error);
      return;
    }
    let total = 0;
    for (const chunk of chunks) total += P.blockStatusChunkBytes(chunk.descriptors.length);
    const out = this.out;
    const dedicated = total > DEDICATED_REPLY_BYTES ? out.dedicated(total) : null;
    let position = dedicated !== null ? 0 : out.reserve(total);
    const target = dedicated ?? out.arena;
    chunks.forEach((chunk, index) => {
      const flags = index === chunks.length - 1 ? P.NBD_REPLY_FLAG_DONE : 0;
      position = P.writeBlockStatusChunk(target, position, flags, request.cookieHigh, request.cookieLow, chunk.id, chunk.descriptors);
    });
    if (dedicated === null) out.commit(position);
  }
}
