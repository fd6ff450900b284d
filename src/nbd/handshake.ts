// Notes on the design
// -------------------
// The newstyle fixed handshake: option haggling from the client's flags to NBD_OPT_GO or
// NBD_OPT_EXPORT_NAME, where enterTransmission creates the request decoder over the same
// receive queue and the connection moves to 'transmission'. HandshakeConnection is the third
// layer of a connection (see connection.ts): methods only, over the state Connection declares.
// Options are decoded by protocol.HandshakeDecoder; their number per connection is bounded
// (maxOptionsPerConnection) and a client that does not read its option replies is not served
// further until they drain. A violation (ERR_NBD_*) is thrown to runHandshake, which ends the
// connection; refusals the spec defines are NBD_REP_ERR_* replies and the handshake goes on.
//
// Spec decisions (where doc/proto.md leaves a choice):
//   - Fixed newstyle with NO_ZEROES. A client without C_FIXED_NEWSTYLE may only send
//     EXPORT_NAME. No TLS: STARTTLS gets NBD_REP_ERR_UNSUP, as do EXTENDED_HEADERS and unknown
//     options. EXPORT_NAME for an unknown export ends the session (the spec allows no error
//     reply). The empty name is the first export; INFO/GO then also send NBD_INFO_NAME.
//   - NBD_INFO_BLOCK_SIZE is sent in every INFO/GO reply, asked or not: minimum 1 (any byte
//     offset works) or the block size of a strict volume, preferred max(blockSize, 4096),
//     maximum maxPayloadBytes rounded down to the minimum (computed per export in server.ts).
//     Clients that did not ask are still served; a strict export answers misaligned requests
//     EINVAL without touching data.
//   - Transmission flags: HAS_FLAGS, SEND_FLUSH, CAN_MULTI_CONN, SEND_CACHE, and unless
//     read-only SEND_FUA, SEND_TRIM, SEND_WRITE_ZEROES, SEND_FAST_ZERO; SEND_DF once structured
//     replies are negotiated; READ_ONLY per export.
//   - Meta contexts: base:allocation (hole = HOLE|ZERO, data = 0) and
//     blockmirror:dirty:<bitmap> (BLOCKMIRROR_STATE_DIRTY = 1 where the track's bit is set, 0
//     where clear; bytes past the bitmap report dirty). Query syntax: see matchMetaContexts. At
//     most 1024 descriptors per context per reply; on strict exports descriptor boundaries are
//     block-aligned, a mixed block reporting the safe state (allocated, dirty). A dirty
//     context's bitmap view is opened by the first BLOCK_STATUS (transmission.ts) and closed
//     with the connection.
//   - During a server shutdown ABORT is acknowledged, EXPORT_NAME ends the session and every
//     other option gets NBD_REP_ERR_SHUTDOWN.

import { ReceivingConnection } from './connection-receive';
import { nbdError } from './errors';
import * as P from './protocol';
import type { ExportEntry, NbdVolume, SelectedContext } from './types';

/** Short name inside this module. */
type Volume = NbdVolume;

/** Stop reading options while this many option-reply bytes wait in the socket. */
const HANDSHAKE_OUTPUT_HIGH_WATER_BYTES = 1024 * 1024;

/** Context names of the volume's exportable metadata: base:allocation, then one per bitmap. */
function availableContexts(volume: Volume): string[] {
  const names = [P.BASE_ALLOCATION_CONTEXT];
  for (const bitmap of volume.listBitmaps()) names.push(P.DIRTY_CONTEXT_PREFIX + bitmap.name);
  return names;
}

/**
 * Query matching (the blockmirror: namespace is documented here):
 *   base:                 LIST: base:allocation; SET: nothing (the spec's wildcard rule)
 *   base:allocation       base:allocation
 *   blockmirror:          LIST: every blockmirror:dirty:<bitmap>; SET: nothing
 *   blockmirror:dirty:    LIST: every blockmirror:dirty:<bitmap>; SET: nothing
 *   blockmirror:dirty:B   the context of bitmap B, if the volume has it
 *   anything else         nothing (unknown namespaces and leaves are ignored)
 */
export function matchMetaContexts(available: readonly string[], queries: readonly string[], listing: boolean): string[] {
  if (queries.length === 0) return listing ? [...available] : [];
  const selected = new Set<string>();
  const dirty = available.filter((name) => name.startsWith(P.DIRTY_CONTEXT_PREFIX));
  for (const query of queries) {
    if (query === 'base:') {
      if (listing && available.includes(P.BASE_ALLOCATION_CONTEXT)) selected.add(P.BASE_ALLOCATION_CONTEXT);
    } else if (query === 'blockmirror:' || query === P.DIRTY_CONTEXT_PREFIX) {
      if (listing) for (const name of dirty) selected.add(name);
    } else if (available.includes(query)) {
      selected.add(query);
    }
  }
  return [...selected];
}

/** The handshake layer of a connection (see connection.ts): option haggling, methods only. */
export abstract class HandshakeConnection extends ReceivingConnection {
  // --- handshake -----------------------------------------------------------------------------

  protected override runHandshake(): void {
    try {
      for (;;) {
        // A client must read each option's reply before its next option; one that does not
        // is not served further until the replies drain (its input waits in TCP).
        if (this.socket.writableLength >= HANDSHAKE_OUTPUT_HIGH_WATER_BYTES) {
          this.pauseSocket();
          return;
        }
        const message = this.handshake.next();
        if (message === null) break;
        if (message.kind === 'client-flags') {
          this.fixedNewstyle = (message.flags & P.NBD_FLAG_C_FIXED_NEWSTYLE) !== 0;
          this.clientNoZeroes = (message.flags & P.NBD_FLAG_C_NO_ZEROES) !== 0;
          continue;
        }
        this.handleOption(message.option, message.data);
        if (this.state !== 'handshake') break;
      }
    } catch (error) {
      this.protocolFailure(error);
      return;
    }
    // The server may serve the transmission phase on a worker (connection.ts detach).
    if (this.state === 'transmission' && this.server.handOff !== undefined && this.server.handOff(this)) return;
    if (this.state === 'transmission' && this.decoder !== null && this.decoder.queue.length > 0) this.pump();
  }

  private reply(buffer: Buffer): void {
    if (this.socket.writable) this.socket.write(buffer);
  }

  private replyOptionError(option: number, replyType: number, message: string): void {
    this.log.debug({ connectionId: this.id, option, replyType, message }, 'nbd option refused');
    this.reply(P.encodeOptionError(option, replyType, message));
  }

  private handleOption(option: number, data: Buffer): void {
    this.optionCount += 1;
    if (this.optionCount > this.config.maxOptionsPerConnection) {
      throw nbdError('ERR_NBD_TOO_MANY_OPTIONS', `more than ${this.config.maxOptionsPerConnection} options`);
    }
    if (!this.fixedNewstyle && option !== P.NBD_OPT_EXPORT_NAME) {
      throw nbdError('ERR_NBD_NOT_FIXED_NEWSTYLE', `option ${option} from a client without FIXED_NEWSTYLE`);
    }
    if (this.shuttingDown || this.server.isClosing) {
      if (option === P.NBD_OPT_ABORT) {
        this.reply(P.encodeOptionReply(option, P.NBD_REP_ACK));
        this.end({ reason: 'client' }, false);
      } else if (option === P.NBD_OPT_EXPORT_NAME) {
        this.end({ reason: 'server' }, true);
      } else {
        this.replyOptionError(option, P.NBD_REP_ERR_SHUTDOWN, 'server is shutting down');
      }
      return;
    }
    switch (option) {
      case P.NBD_OPT_EXPORT_NAME:
        return this.optionExportName(data);
      case P.NBD_OPT_ABORT:
        this.reply(P.encodeOptionReply(option, P.NBD_REP_ACK));
        this.end({ reason: 'client' }, false);
        return;
      case P.NBD_OPT_LIST:
        return this.optionList(data);
      case P.NBD_OPT_INFO:
      case P.NBD_OPT_GO:
        return this.optionInfo(option, data);
      case P.NBD_OPT_STRUCTURED_REPLY:
        if (data.length !== 0) return this.replyOptionError(option, P.NBD_REP_ERR_INVALID, 'structured reply takes no data');
        this.structured = true;
        this.reply(P.encodeOptionReply(option, P.NBD_REP_ACK));
        return;
      case P.NBD_OPT_LIST_META_CONTEXT:
      case P.NBD_OPT_SET_META_CONTEXT:
        return this.optionMetaContext(option, data);
      default:
        // STARTTLS (no TLS in this server), EXTENDED_HEADERS and everything unknown.
        return this.replyOptionError(option, P.NBD_REP_ERR_UNSUP, `option ${option} not supported`);
    }
  }

  private optionExportName(data: Buffer): void {
    const name = P.decodeNbdString(data);
    const entry = name === null ? null : this.server.findExport(name);
    if (entry === null || entry.volume.closed) {
      // The spec allows no error reply here: the session must end.
      throw nbdError('ERR_NBD_UNKNOWN_EXPORT', `NBD_OPT_EXPORT_NAME for unknown export ${JSON.stringify(name ?? '')}`);
    }
    const flags = this.transmissionFlags(entry);
    this.reply(P.encodeExportNameReply(entry.volume.capacityBytes, flags, this.clientNoZeroes));
    this.enterTransmission(entry, flags);
  }

  private optionList(data: Buffer): void {
    if (data.length !== 0) return this.replyOptionError(P.NBD_OPT_LIST, P.NBD_REP_ERR_INVALID, 'NBD_OPT_LIST takes no data');
    this.socket.cork();
    for (const entry of this.server.exportEntries()) this.reply(P.encodeServerReply(entry.name, entry.description));
    this.reply(P.encodeOptionReply(P.NBD_OPT_LIST, P.NBD_REP_ACK));
    this.socket.uncork();
  }

  private optionInfo(option: number, data: Buffer): void {
    const parsed = P.parseInfoRequest(data);
    if (!parsed.ok) return this.replyOptionError(option, parsed.reply, parsed.message);
    const { exportName, infoTypes } = parsed.value;
    const entry = this.server.findExport(exportName);
    if (entry === null) return this.replyOptionError(option, P.NBD_REP_ERR_UNKNOWN, `no export named ${JSON.stringify(exportName)}`);
    if (entry.volume.closed) return this.replyOptionError(option, P.NBD_REP_ERR_UNKNOWN, `export ${JSON.stringify(entry.name)} is not available (volume closed)`);
    const flags = this.transmissionFlags(entry);
    this.socket.cork();
    this.reply(P.encodeInfoExport(option, entry.volume.capacityBytes, flags));
    if (infoTypes.includes(P.NBD_INFO_NAME) || exportName !== entry.name) {
      this.reply(P.encodeInfoString(option, P.NBD_INFO_NAME, entry.name));
    }
    if (infoTypes.includes(P.NBD_INFO_DESCRIPTION) && entry.description !== '') {
      this.reply(P.encodeInfoString(option, P.NBD_INFO_DESCRIPTION, entry.description));
    }
    // Sent whether asked or not (the spec allows unrequested info): strict volumes need it.
    this.reply(P.encodeInfoBlockSize(option, entry.minimumBlockBytes, entry.preferredBlockBytes, entry.maximumBlockBytes));
    this.reply(P.encodeOptionReply(option, P.NBD_REP_ACK));
    this.socket.uncork();
    if (option === P.NBD_OPT_GO) this.enterTransmission(entry, flags);
  }

  private optionMetaContext(option: number, data: Buffer): void {
    const setting = option === P.NBD_OPT_SET_META_CONTEXT;
    // SET replaces the selection even when it fails.
    if (setting) {
      this.contexts = [];
      this.contextsExport = null;
    }
    if (!this.structured) {
      return this.replyOptionError(option, P.NBD_REP_ERR_INVALID, 'negotiate NBD_OPT_STRUCTURED_REPLY first');
    }
    const parsed = P.parseMetaContextRequest(data);
    if (!parsed.ok) return this.replyOptionError(option, parsed.reply, parsed.message);
    const entry = this.server.findExport(parsed.value.exportName);
    if (entry === null) {
      return this.replyOptionError(option, P.NBD_REP_ERR_UNKNOWN, `no export named ${JSON.stringify(parsed.value.exportName)}`);
    }
    let available: string[];
    try {
      available = availableContexts(entry.volume);
    } catch (error) {
      return this.replyOptionError(option, P.NBD_REP_ERR_UNKNOWN, `export ${JSON.stringify(entry.name)} is not available: ${String(error)}`);
    }
    const names = matchMetaContexts(available, parsed.value.queries, !setting);
    this.socket.cork();
    if (setting) {
      const selected: SelectedContext[] = names.map((name, index) =>
        name === P.BASE_ALLOCATION_CONTEXT
          ? { id: index + 1, name, kind: 'allocation' as const }
          : { id: index + 1, name, kind: 'dirty' as const, bitmapName: name.slice(P.DIRTY_CONTEXT_PREFIX.length), bitmap: null },
      );
      for (const context of selected) this.reply(P.encodeMetaContextReply(option, context.id, context.name));
      this.contexts = selected;
      this.contextsExport = entry.name;
    } else {
      for (const name of names) this.reply(P.encodeMetaContextReply(option, 0, name));
    }
    this.reply(P.encodeOptionReply(option, P.NBD_REP_ACK));
    this.socket.uncork();
  }

  private transmissionFlags(entry: ExportEntry): number {
    let flags = P.NBD_FLAG_HAS_FLAGS | P.NBD_FLAG_SEND_FLUSH | P.NBD_FLAG_CAN_MULTI_CONN | P.NBD_FLAG_SEND_CACHE;
    if (entry.readOnly) {
      flags |= P.NBD_FLAG_READ_ONLY;
    } else {
      flags |= P.NBD_FLAG_SEND_FUA | P.NBD_FLAG_SEND_TRIM | P.NBD_FLAG_SEND_WRITE_ZEROES | P.NBD_FLAG_SEND_FAST_ZERO;
    }
    if (this.structured) flags |= P.NBD_FLAG_SEND_DF;
    return flags;
  }

  private enterTransmission(entry: ExportEntry, flags: number): void {
    if (this.contextsExport !== entry.name) this.contexts = [];
    this.entry = entry;
    this.limits = {
      sizeBytes: entry.volume.capacityBytes,
      transmissionFlags: flags,
      minimumBlockBytes: entry.minimumBlockBytes,
      maximumBlockBytes: entry.maximumBlockBytes,
      metaContextCount: this.contexts.length,
    };
    this.decoder = new P.RequestDecoder(
      { maxPayloadBytes: this.config.maxPayloadBytes, maxDiscardBytes: this.config.maxDiscardBytes },
      this.handshake.queue,
    );
    if (this.handshakeTimer !== null) {
      clearTimeout(this.handshakeTimer);
      this.handshakeTimer = null;
    }
    this.setState('transmission');
    this.log.debug(
      { connectionId: this.id, export: entry.name, structured: this.structured, contexts: this.contexts.map((c) => c.name) },
      'nbd transmission started',
    );
  }
}
