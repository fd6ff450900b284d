// Notes on the design
// -------------------
// The pair protocol of a controller's pair manager (pairs.ts; its rules are in pairs.ts's notes):
// the handlers of every request (PAIR_OPEN with the generation rules, resync done, flush, the
// consistency group's cut, markers, promotions, switches, resolve) and of every message
// (records, a journal group's records, tracks, positions, errors) on each link, routed to the
// side they name; a single pair's drained handover; and the resolve query a discarding
// secondary asks its peer. The second layer of the stack PairSides (pairs-sides.ts) <-
// PairRouting (this file) <- PairManager (pairs.ts).
//
// Errors: a request for a pair not declared here with that peer is refused with
// ERR_PAIR_UNKNOWN; a refusal is the request's error (or a PAIR_ERROR for a message) and changes
// nothing; a malformed payload throws from its decoder, which the link treats as a protocol
// error of the connection.

import type { Link, LinkMessage, LinkStateEvent } from '../transport/link';
import { MessageType } from '../transport/message-types';
import { decide } from './generations';
import {
  type PairOpen,
  decodeMarker,
  decodeName,
  decodePairError,
  decodePairOpen,
  decodePosition,
  decodeGroupPromote,
  decodePromote,
  decodeRecords,
  decodeResolve,
  decodeGroupRecords,
  decodeResyncDone,
  decodeTrack,
  encodeOpenReply,
  encodePairError,
  encodePromote,
  encodeResolve,
  encodeSequence,
} from './messages';
import { askPeer, drainedHandOver } from './group-roles';
import { type GroupBatchMember, applyGroupBatch } from './journal-group';
import type { Side } from './pair-side';
import { PairError } from './pair-state';
import type { PrimaryPair } from './primary-pair';
import { decodeCutRequest, encodeCutReply } from '../cgroup/messages';
import type { SecondaryPair } from './secondary-pair';
import { ASK_WHO_KEEPS_RETRY_MS } from './pairs-options';
import { PairSides } from './pairs-sides';

/** The pair protocol's messages from each link, routed to their sides (see the notes above). */
export abstract class PairRouting extends PairSides {
  // ---- messages --------------------------------------------------------------------------------

  private sideFor(link: Link, name: string): Side {
    const side = this.sides.get(name);
    if (side === undefined || side.spec.peer !== link.peerId) {
      throw new PairError('ERR_PAIR_UNKNOWN', `controller ${this.options.controllerId} declares no pair ${JSON.stringify(name)} with ${link.peerId}`);
    }
    return side;
  }

  private secondaryFor(link: Link, name: string): SecondaryPair {
    const side = this.sideFor(link, name);
    if (side.secondary === undefined) {
      throw new PairError('ERR_PAIR_UNKNOWN', `controller ${this.options.controllerId} is not the secondary of pair ${JSON.stringify(name)}`);
    }
    return side.secondary;
  }

  private primaryFor(link: Link, name: string): PrimaryPair | undefined {
    const side = this.sides.get(name);
    return side !== undefined && side.spec.peer === link.peerId ? side.primary : undefined;
  }

  /** PAIR_OPEN: answered by the secondary; a primary first compares generations. */
  private onOpen(link: Link, request: PairOpen): Buffer {
    const side = this.sideFor(link, request.name);
    const primary = side.primary;
    if (primary !== undefined) {
      if (primary.handingOver) {
        // A failback in progress: the peer was promoted and opens before this side saw the answer.
        this.demote(side, 'handed over');
      } else {
        const result = decide(side.meta.state.generations, request.generations, { discardPeer: request.discard });
        switch (result.decision) {
          case 'bitmap-target':
          case 'full-target':
            this.demote(side, `demoted: the peer holds the newer generation (rule ${result.rule})`);
            break;
          case 'bitmap-source':
          case 'full-source':
            throw new PairError('ERR_PAIR_DEMOTE', `pair ${request.name}: ${this.options.controllerId} is the primary with the newer generation (rule ${result.rule}: ${result.text})`);
          case 'split-brain':
            primary.enterSplitBrain(`rule ${result.rule}: ${result.text}`);
            throw new PairError('ERR_PAIR_SPLIT_BRAIN', `pair ${request.name}: split brain (rule ${result.rule}: ${result.text}); nothing is overwritten until \`resolve\``);
          case 'unrelated':
            primary.enterSplitBrain(`rule ${result.rule}: ${result.text}`);
            throw new PairError('ERR_PAIR_UNRELATED', `pair ${request.name}: ${result.text}; refused, nothing is touched until \`resolve\` (a full copy)`);
          default:
            throw new PairError('ERR_PAIR_ROLE', `pair ${request.name}: both sides are primary of the same generation; take one over or fail back`);
        }
      }
    }
    return encodeOpenReply((side.secondary as SecondaryPair).open(request));
  }

  protected attach(link: Link): void {
    if (this.attached.has(link)) return;
    this.attached.add(link);
    const maxDataBytes = link.tuning.maxFrameBytes;
    link.handle(MessageType.PAIR_OPEN, (payload) => this.onOpen(link, decodePairOpen(payload)));
    link.handle(MessageType.PAIR_RESYNC_DONE, (payload) => {
      const done = decodeResyncDone(payload);
      this.secondaryFor(link, done.name).resyncDone(done.nextSequence, done.generations, done.consistentAt);
      return Buffer.alloc(0);
    });
    link.handle(MessageType.PAIR_FLUSH, async (payload) => {
      const name = decodeName(payload, 'PAIR_FLUSH');
      return encodeSequence(await this.secondaryFor(link, name).flush());
    });
    link.handle(MessageType.PAIR_CG_CUT, (payload) => {
      // In order behind the records through the cut: this side stands exactly at it, or refuses.
      const request = decodeCutRequest(payload);
      const side = this.sideFor(link, request.name);
      const secondary = side.secondary;
      if (secondary === undefined) throw new PairError('ERR_PAIR_STATE', `pair ${request.name}: ${this.options.controllerId} is its primary, not its secondary`);
      const problem = secondary.cutProblem(request.through);
      if (problem !== undefined) throw new PairError('ERR_PAIR_STATE', problem);
      const copies = this.options.copies;
      if (copies === undefined) throw new PairError('ERR_PAIR_STATE', `controller ${this.options.controllerId} keeps no consistent copies (snapshots are off)`);
      return encodeCutReply(copies.take(side.spec.volume, request.group, request.cycle, request.formed));
    });
    link.handle(MessageType.PAIR_MARKER, async (payload) => {
      const message = decodeMarker(payload);
      return encodeSequence(await this.secondaryFor(link, message.name).safeStoreMarker(message.sequence));
    });
    link.handle(MessageType.PAIR_PROMOTE, (payload) => {
      const message = decodePromote(payload);
      const side = this.sideFor(link, message.name);
      const secondary = side.secondary;
      if (secondary === undefined) throw new PairError('ERR_PAIR_STATE', `pair ${message.name}: ${this.options.controllerId} is already its primary`);
      if (secondary.currentState !== 'mirroring' || side.meta.state.generations.current !== message.generations.current) {
        throw new PairError('ERR_PAIR_STATE', `pair ${message.name}: the secondary is ${secondary.currentState} on another generation; it cannot be promoted`);
      }
      // A drained handover: both images are the same generation and identical.
      side.tracking.clearAll();
      const pair = this.promote(side, 'promoted by a handover', {});
      setImmediate(() => pair.start());
      return Buffer.alloc(0);
    });
    link.handle(MessageType.PAIR_PROMOTE_GROUP, (payload) => {
      this.groupRoles.promote(link, decodeGroupPromote(payload));
      return Buffer.alloc(0);
    });
    link.handle(MessageType.PAIR_SWITCH_GROUP, async (payload) => {
      await this.groupRoles.onSwitch(link, decodeName(payload, 'PAIR_SWITCH_GROUP'));
      return Buffer.alloc(0);
    });
    link.handle(MessageType.PAIR_SWITCH, async (payload) => {
      const name = decodeName(payload, 'PAIR_SWITCH');
      const side = this.sideFor(link, name);
      if (side.primary === undefined) throw new PairError('ERR_PAIR_STATE', `pair ${name}: ${this.options.controllerId} is not its primary`);
      await this.handOver(side);
      return Buffer.alloc(0);
    });
    link.handle(MessageType.PAIR_RESOLVE, (payload) => {
      const message = decodeResolve(payload);
      const side = this.sideFor(link, message.name);
      const primary = side.primary;
      if (message.query) {
        // The peer discarded its data and asks whether this side keeps its own: a primary does
        // (its own open on the link's return takes the peer as its target; opening here too
        // would race that one).
        if (primary !== undefined) return Buffer.alloc(0);
        this.contradiction(side);
      }
      if (message.keepSender) {
        this.demote(side, 'resolve: the peer\'s data is kept', { discard: true });
      } else if (primary !== undefined) {
        if (primary.currentState === 'split-brain') setImmediate(() => { try { primary.reopen(); } catch { /* the link went down: it opens when it is back */ } });
      } else if (side.secondary !== undefined) {
        // An operator on the other side keeps this side's data, which is a secondary's (after
        // contradictory resolves, or demoted meanwhile): it becomes the primary with its data,
        // unless this side gave its data up too (it discards, out of split brain: the mark was
        // lost with a restart) or an operator resolves here at this very moment: then neither
        // side is promoted, both are in split brain, and a resolve once more decides.
        if (side.resolving === true || (side.meta.state.discard && side.secondary.currentState !== 'split-brain')) this.contradiction(side);
        const pair = this.promote(side, 'resolve: the peer chose this side\'s data', {});
        setImmediate(() => pair.start());
      } else {
        throw new PairError('ERR_PAIR_STATE', `pair ${message.name}: ${this.options.controllerId} holds no primary to keep`);
      }
      return Buffer.alloc(0);
    });
    link.on('state', (event: LinkStateEvent) => {
      if (event.new !== 'up') return;
      for (const side of this.sides.values()) if (side.link === link) this.askWhoKeeps(side);
    });
    link.on('message', (message: LinkMessage) => {
      switch (message.type) {
        case MessageType.PAIR_RECORDS: {
          const batch = decodeRecords(message.payload, maxDataBytes);
          this.withSecondary(link, batch.name, (pair) => pair.applyRecords(batch.records));
          return;
        }
        case MessageType.PAIR_GROUP_RECORDS: {
          this.onGroupRecords(link, message.payload, maxDataBytes);
          return;
        }
        case MessageType.PAIR_TRACK: {
          const track = decodeTrack(message.payload, maxDataBytes);
          this.withSecondary(link, track.name, (pair) => pair.applyTrack(track.byteOffset, track.data));
          return;
        }
        case MessageType.PAIR_POSITION: {
          const position = decodePosition(message.payload);
          this.primaryFor(link, position.name)?.onPosition(position);
          return;
        }
        case MessageType.PAIR_ERROR: {
          const error = decodePairError(message.payload);
          this.primaryFor(link, error.name)?.onSecondaryError(error.code, error.message);
          return;
        }
        default:
      }
    });
  }

  /** PAIR_GROUP_RECORDS: a journal group's batch, applied as a whole or refused as a whole. */
  private onGroupRecords(link: Link, payload: Buffer, maxDataBytes: number): void {
    const batch = decodeGroupRecords(payload, maxDataBytes);
    const members: GroupBatchMember[] = [];
    try {
      for (const window of batch.members) members.push({ pair: this.secondaryFor(link, window.name), previous: window.previous });
      applyGroupBatch(batch, members);
    } catch (error) {
      if (!(error instanceof PairError)) throw error;
      // Every member the batch names hears of it: its primary suspends (and with it the group).
      this.options.logger.warn({ peer: link.peerId, group: batch.group, code: error.code }, error.message);
      for (const window of batch.members) {
        try {
          link.send(MessageType.PAIR_ERROR, encodePairError(window.name, error.code, error.message));
        } catch {
          // The link is gone: the primaries suspend anyway.
        }
      }
      for (const member of members) member.pair.refusedCount++;
    }
  }

  private withSecondary(link: Link, name: string, apply: (pair: SecondaryPair) => void): void {
    let pair: SecondaryPair;
    try {
      pair = this.secondaryFor(link, name);
    } catch (error) {
      if (!(error instanceof PairError)) throw error;
      this.options.logger.warn({ peer: link.peerId, code: error.code }, error.message);
      try {
        link.send(MessageType.PAIR_ERROR, encodePairError(name, error.code, error.message));
      } catch {
        // The link is gone.
      }
      return;
    }
    apply(pair);
  }

  // ---- the handover of one pair, and the resolve query -----------------------------------------

  /**
   * Hands the primary role to the secondary: holds host writes, waits until the secondary has
   * applied and flushed everything, promotes it, and demotes this side. On failure the writes
   * are released and this side stays the primary.
   */
  protected async handOver(side: Side): Promise<void> {
    const pair = side.primary;
    if (pair === undefined) throw new PairError('ERR_PAIR_STATE', `pair ${side.spec.name}: ${this.options.controllerId} is not its primary`);
    if (pair.currentState !== 'mirroring') throw new PairError('ERR_PAIR_STATE', `pair ${side.spec.name} is ${pair.currentState}; a handover needs it mirroring`);
    const others = [...this.sides.values()].filter((other) => other !== side && other.spec.volume === side.spec.volume && other.primary !== undefined);
    if (others.length > 0) throw new PairError('ERR_PAIR_ROLE', `pair ${side.spec.name}: volume ${side.spec.volume} is also the primary of ${others.map((other) => other.spec.name).join(', ')}`);
    await drainedHandOver(this.roleHost, [side], `pair ${side.spec.name}`,
      () => askPeer(side.link, MessageType.PAIR_PROMOTE, encodePromote(side.spec.name, side.meta.state.generations)));
  }

  /**
   * On connect (and when the pair is created with the link up): a secondary that discarded its
   * data asks the peer whether it keeps its own; asked again now and then while the peer does
   * not declare the pair (yet), as a primary's open is.
   */
  protected askWhoKeeps(side: Side): void {
    const secondary = side.secondary;
    if (secondary === undefined || !side.meta.state.discard || secondary.currentState === 'split-brain' || !side.link.isUp) return;
    side.link.request(MessageType.PAIR_RESOLVE, encodeResolve(side.spec.name, false, true)).catch((error: unknown) => {
      if (side.secondary !== secondary || this.sides.get(side.spec.name) !== side) return;
      const remote = (error as { remoteCode?: unknown }).remoteCode;
      if (remote === 'ERR_PAIR_UNKNOWN') {
        this.options.clock.setTimer(() => this.askWhoKeeps(side), ASK_WHO_KEEPS_RETRY_MS, { unref: true });
        return;
      }
      if (remote !== 'ERR_PAIR_BOTH_DISCARDED') return;
      try {
        this.contradiction(side);
      } catch {
        // It throws for the request handler's sake; here the status says it.
      }
    });
  }

  /** Neither side keeps its data: this side goes back to split brain (said once, in the log and status). */
  protected contradiction(side: Side): never {
    const reason = 'contradictory resolves: neither side keeps its data';
    if (side.secondary !== undefined && side.secondary.currentState !== 'split-brain') {
      this.options.logger.warn({ pair: side.spec.name }, `pair ${side.spec.name}: ${reason}; run resolve --keep primary|secondary with the link up`);
      side.secondary.markSplitBrain(reason);
    }
    throw new PairError('ERR_PAIR_BOTH_DISCARDED', `pair ${side.spec.name}: ${reason}; run resolve --keep primary|secondary once more, with the link up`);
  }
}
