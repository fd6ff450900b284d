// Notes on the design
// -------------------
// A controller's pairs: for each declared pair it holds one side, primary or secondary, with the
// side's persisted metadata (pair-meta.ts) and tracking bitmaps (tracking.ts); the replicated
// volume (journal) of each volume it is the primary of; and one PairVolume per paired volume,
// which is what the NBD server exports. It routes the pair protocol's messages from each link to
// the pair they name. Rules it enforces:
//   - A peer can only open a pair this controller declared, for that peer, volumes and mode
//     (else ERR_PAIR_UNKNOWN / ERR_PAIR_MISMATCH). Roles change only by the generation rules,
//     takeover, failback and resolve, all on pairs declared here.
//   - The role a side has now is persisted; the config's role is only the first one.
//   - A volume that is a secondary is read-only to hosts (its export follows the role).
//   - A malformed pair message is a protocol error of the link (the connection drops; the pairs
//     on it suspend with link-down); a well-formed message the pair refuses is answered with
//     PAIR_ERROR (or the request's error) and changes nothing.
//
// Role changes (each one swaps the side object; meta and tracking carry over):
//   takeover (on the secondary)  link down: becomes primary at once with a new generation
//                                (the old primary, when it returns, is demoted: generation rule
//                                5/6, or a split brain if it wrote meanwhile). Link up and
//                                mirroring: a planned switch (PAIR_SWITCH, then as failback).
//   failback / handover (on the primary, or asked by the secondary with PAIR_SWITCH): host writes
//                                are held (EPERM), the secondary catches up and flushes, it is
//                                sent PAIR_PROMOTE with the generation, this side demotes.
//   demotion on open             an open whose generations make this primary the target: it
//                                becomes the secondary and answers with its dirty ranges.
//   resolve --keep primary|secondary (a split brain; the roles named are the declared ones):
//                                the losing side demotes with `discard`, the kept side opens it:
//                                generation rule 7 or 10 with discard, a resync of both sides'
//                                changes since the split.
//
// Journal groups (journal-group.ts): pairs declared with the same `journalGroup` share one
// journal on the side that is their primary, and are shipped as one stream; they have one peer
// and one mode, and a grouped volume is in no other pair. Each member keeps its own role, so a
// takeover is per member, or of every member at once (takeoverGroup: all or none, for the
// group's image; with the primary reachable a drained switch of the whole group, PAIR_SWITCH_GROUP
// then PAIR_PROMOTE_GROUP, as failbackGroup does); suspend and resume act on the whole group.
//
// Layout: this module is the PairManager class; the shape of a side is in pair-side.ts, the role
// verbs of whole journal groups in group-roles.ts; the declared pair
// (PairSpec, groupProblem, initialMeta) is in pair-spec.ts, the manager's options, hooks,
// mutations and role event are in pairs-options.ts, and the snapshot keeper of a side's last
// consistent image is in pair-images.ts. The public names are re-exported here, so importers
// keep one path.

import { EventEmitter } from 'node:events';

import { type Random, realRandom } from '../runtime/random';
import type { Volume } from '../storage/volume';
import type { Link, LinkMessage, LinkStateEvent } from '../transport/link';
import { MessageType } from '../transport/message-types';
import { decide, newGenerationId, startGeneration } from './generations';
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
  encodeName,
  encodeOpenReply,
  encodePairError,
  encodePromote,
  encodeResolve,
  encodeSequence,
} from './messages';
import type { LockstepMember } from './lockstep';
import { PairMeta, type PairMetaState } from './pair-meta';
import { JournalFeed, groupJournalTargetOf, journalTargetOf } from './journal-feed';
import { type GroupRoleHost, GroupRoles, askPeer, drainedHandOver } from './group-roles';
import { type GroupBatchMember, JournalGroup, applyGroupBatch } from './journal-group';
import type { Side } from './pair-side';
import { PairError, type PairRole } from './pair-state';
import { PairVolume } from './pair-volume';
import { PrimaryPair, type PairStateEvent } from './primary-pair';
import { ReplicatedVolume } from './replicated-volume';
import { decodeCutRequest, encodeCutReply } from '../cgroup/messages';
import { type ImageKeeper, SecondaryPair } from './secondary-pair';
import { Tracking } from './tracking';
import { type PairSpec, groupProblem, initialMeta } from './pair-spec';
import {
  type PairManagerOptions,
  type PairRoleEvent,
  ASK_WHO_KEEPS_RETRY_MS,
} from './pairs-options';
import { snapshotImageKeeper } from './pair-images';

export type { PairSpec } from './pair-spec';
export { groupProblem } from './pair-spec';
export type {
  PairManagerOptions,
  PairCopies,
  PairSnapshots,
  PairMutation,
  PairRoleEvent,
} from './pairs-options';

/** The pairs of one controller. */
export class PairManager extends EventEmitter {
  private readonly sides = new Map<string, Side>();
  private readonly replicated = new Map<string, ReplicatedVolume>();
  /** The journal groups this controller is the primary of (some of) the members of. */
  private readonly groups = new Map<string, JournalGroup>();
  private readonly facades = new Map<string, PairVolume>();
  private readonly random: Random;
  private readonly attached = new Set<Link>();
  private readonly specList: PairSpec[];
  private started = false;
  /** What the role verbs (group-roles.ts) need of this manager, and the verbs of whole journal groups. */
  private readonly roleHost: GroupRoleHost;
  private readonly groupRoles: GroupRoles;

  constructor(private readonly options: PairManagerOptions) {
    super();
    this.random = options.random ?? realRandom;
    this.roleHost = {
      controllerId: this.options.controllerId,
      handoverTimeoutMs: this.options.handoverTimeoutMs ?? 30_000,
      random: this.random,
      members: (group) => [...this.sides.values()].filter((side) => side.spec.journalGroup === group),
      facade: (volume) => this.facades.get(volume) as PairVolume,
      promote: (side, reason, change) => this.promote(side, reason, change),
      demote: (side, reason) => this.demote(side, reason),
      emitRole: (side, reason) => this.emitRole(side, reason),
      statusOf: (side) => this.statusOf(side),
    };
    this.groupRoles = new GroupRoles(this.roleHost);
    this.specList = [...options.pairs];
    const names = new Set<string>();
    const secondaryVolumes = new Set<string>();
    for (const [index, spec] of options.pairs.entries()) {
      if (names.has(spec.name)) throw new TypeError(`pairs[${index}].name: duplicate pair ${spec.name}`);
      names.add(spec.name);
      if (options.volume(spec.volume) === undefined) throw new TypeError(`pairs[${index}].volume: no volume ${spec.volume}`);
      if (spec.role === 'secondary') {
        if (secondaryVolumes.has(spec.volume)) throw new TypeError(`pairs[${index}].volume: ${spec.volume} is the secondary of two pairs`);
        secondaryVolumes.add(spec.volume);
      }
    }
    for (const [index, spec] of options.pairs.entries()) {
      if (spec.role === 'primary' && secondaryVolumes.has(spec.volume)) {
        throw new TypeError(`pairs[${index}].volume: ${spec.volume} is a secondary; it cannot also be a primary`);
      }
    }
    for (const [index, spec] of options.pairs.entries()) {
      const problem = groupProblem(spec, options.pairs.filter((other) => other !== spec));
      if (problem !== undefined) throw new TypeError(`pairs[${index}].journalGroup: ${problem}`);
    }
    for (const spec of options.pairs) {
      if (!this.facades.has(spec.volume)) this.facades.set(spec.volume, new PairVolume(options.volume(spec.volume) as Volume, spec.volume));
    }
  }

  /** Builds every pair (in the role its metadata says) and starts the primaries. */
  start(): void {
    const { options } = this;
    const links = new Set<Link>();
    for (const spec of options.pairs) {
      const volume = options.volume(spec.volume) as Volume;
      const meta = PairMeta.open(volume, spec.name, initialMeta(spec.role));
      if (meta.restored && meta.state.role !== spec.role) {
        options.logger.info({ pair: spec.name, role: meta.state.role }, `pair ${spec.name}: restarts as ${meta.state.role} (declared ${spec.role}; changed by a takeover, failback or resolve)`);
      }
      const tracking = new Tracking(volume, spec.name, meta.state.active, false);
      const link = options.link(spec.peer);
      links.add(link);
      this.sides.set(spec.name, { spec, volume, link, meta, tracking });
    }
    // The restored roles must still make sense together.
    for (const side of this.sides.values()) {
      if (side.meta.state.role !== 'secondary') continue;
      const others = [...this.sides.values()].filter((other) => other !== side && other.spec.volume === side.spec.volume);
      if (others.length > 0) {
        throw new PairError('ERR_PAIR_ROLE', `pair ${side.spec.name}: volume ${side.spec.volume} is its secondary and also in pair ${others[0]?.spec.name}`);
      }
    }
    for (const side of this.sides.values()) {
      if (side.meta.state.role === 'primary') this.buildPrimary(side, 'declared');
      else this.buildSecondary(side, 'declared');
    }
    for (const link of options.links()) links.add(link);
    for (const link of links) this.attach(link);
    this.started = true;
    for (const side of this.sides.values()) side.primary?.start();
  }

  // ---- sides -----------------------------------------------------------------------------------

  private buildPrimary(side: Side, reason: string): PrimaryPair {
    const { options } = this;
    const { spec } = side;
    let group: JournalGroup | undefined;
    if (spec.journalGroup !== undefined) {
      group = this.groups.get(spec.journalGroup);
      if (group === undefined) {
        // Kept in shared memory when every volume of the group is a shared one (journal-feed.ts).
        const groupName = spec.journalGroup;
        const volumes = [...this.sides.values()].filter((other) => other.spec.journalGroup === groupName).map((other) => other.volume);
        const target = groupJournalTargetOf(groupName, volumes);
        const kept = target === null ? undefined : { target, newId: () => newGenerationId(this.random), log: options.logger };
        const feed = new JournalFeed(options.clock, options.journal, kept);
        // Resumable while every member's intents are journaled again (each and-s its own in).
        if (feed.reopened) feed.resumable = true;
        group = new JournalGroup(groupName, feed, side.link);
        this.groups.set(groupName, group);
      }
    }
    let replicated = this.replicated.get(spec.volume);
    if (replicated === undefined) {
      // A volume of its own journal keeps it beside a shared or file volume (journal-feed.ts).
      const target = group === undefined ? journalTargetOf(side.volume) : null;
      const kept = target === null ? undefined : { target, newId: () => newGenerationId(this.random), log: options.logger };
      replicated = new ReplicatedVolume(side.volume, options.clock, options.journal, group?.feed, kept, options.logger);
      this.replicated.set(spec.volume, replicated);
    }
    const pairOptions: ConstructorParameters<typeof PrimaryPair>[0] = {
      name: spec.name, volumeName: spec.volume, remoteVolume: spec.remoteVolume, mode: spec.mode, initialReason: reason,
    };
    if (group !== undefined) pairOptions.group = group;
    if (replicated.feed.resumable) pairOptions.journalResumable = true;
    if (spec.fence !== undefined) pairOptions.fence = spec.fence;
    if (spec.autoResume !== undefined) pairOptions.autoResume = spec.autoResume;
    if (spec.journalHold !== undefined) pairOptions.journalHold = spec.journalHold;
    if (options.mutation === 'skip-track') pairOptions.mutation = 'skip-track';
    const pair = new PrimaryPair(pairOptions, side.volume, replicated.journal, side.link, options.clock, options.logger, side.meta, side.tracking, this.random);
    pair.on('state', (event: PairStateEvent) => this.emit('state', { ...event, role: 'primary' }));
    pair.on('stuck', (event: unknown) => this.emit('stuck', event));
    pair.on('demote', (detail: string) => this.demoteOnPeerRequest(side, pair, detail));
    replicated.add(pair);
    group?.add(pair, side.volume.id);
    side.primary = pair;
    side.secondary = undefined;
    const facade = this.facades.get(spec.volume) as PairVolume;
    facade.replicated = replicated;
    facade.holdWrites = false;
    this.emitRole(side, reason);
    return pair;
  }

  private buildSecondary(side: Side, reason: string): SecondaryPair {
    const { options } = this;
    const { spec } = side;
    const secondaryOptions: ConstructorParameters<typeof SecondaryPair>[0] = { name: spec.name, volumeName: spec.volume, remoteVolume: spec.remoteVolume, mode: spec.mode, initialReason: reason };
    if (spec.journalGroup !== undefined) secondaryOptions.journalGroup = spec.journalGroup;
    const images = this.imagesOf(side);
    if (images !== undefined) secondaryOptions.images = images;
    if (options.mutation === 'apply-out-of-order' || options.mutation === 'drop-write') secondaryOptions.mutation = options.mutation;
    const pair = new SecondaryPair(secondaryOptions,
      side.volume, side.link, options.clock, options.logger, side.meta, side.tracking);
    pair.on('state', (event: PairStateEvent) => this.emit('state', { ...event, role: 'secondary' }));
    side.secondary = pair;
    side.primary = undefined;
    const facade = this.facades.get(spec.volume) as PairVolume;
    if (![...this.sides.values()].some((other) => other.spec.volume === spec.volume && other.primary !== undefined)) facade.replicated = undefined;
    this.emitRole(side, reason);
    return pair;
  }

  private emitRole(side: Side, reason: string): void {
    const facade = this.facades.get(side.spec.volume) as PairVolume;
    const event: PairRoleEvent = { name: side.spec.name, volume: side.spec.volume, role: side.meta.state.role, writable: facade.writable, reason };
    if (this.started) this.options.logger.info({ ...event }, `pair ${side.spec.name}: ${side.spec.volume} is now ${event.role} (${reason}); hosts may ${event.writable ? 'write' : 'only read'}`);
    this.emit('role', event);
  }

  /** Makes this side the secondary (close the primary, keep meta and tracking). */
  private demote(side: Side, reason: string, options: { discard?: boolean } = {}): SecondaryPair {
    const pair = side.primary;
    if (pair === undefined) {
      if (options.discard === true) side.meta.update({ discard: true });
      return side.secondary as SecondaryPair;
    }
    const others = [...this.sides.values()].filter((other) => other !== side && other.spec.volume === side.spec.volume && other.primary !== undefined);
    if (others.length > 0) {
      throw new PairError('ERR_PAIR_ROLE', `pair ${side.spec.name}: volume ${side.spec.volume} is also the primary of ${others.map((other) => other.spec.name).join(', ')}; it cannot become a secondary`);
    }
    // The old primary's image, before the resync from the new primary overwrites it (a split
    // brain's discarded side included): readable until the resync completes.
    this.imagesOf(side)?.keep(`demotion of pair ${side.spec.name}`);
    pair.close({ keepTracking: true });
    void this.retirePrimary(side, pair);
    // A demoted primary holds its generation's data: a resync, never a full copy, unless the
    // generations say otherwise.
    side.meta.update({ role: 'secondary', synced: true, consistency: 'inconsistent', discard: options.discard === true, streaming: false });
    return this.buildSecondary(side, reason);
  }

  /** The side's keeper of its last consistent image, when the controller has snapshots. */
  private imagesOf(side: Side): ImageKeeper | undefined {
    const snapshots = this.options.snapshots;
    if (snapshots === undefined) return undefined;
    if (side.images !== undefined) return side.images;
    side.images = snapshotImageKeeper(snapshots, side.spec, this.options.logger);
    return side.images;
  }

  /** A closed primary leaves its replicated volume and journal group (closing them when empty). */
  private async retirePrimary(side: Side, pair: PrimaryPair): Promise<void> {
    const group = side.spec.journalGroup === undefined ? undefined : this.groups.get(side.spec.journalGroup);
    if (group !== undefined && group.remove(pair)) this.groups.delete(group.name);
    const replicated = this.replicated.get(side.spec.volume);
    if (replicated !== undefined && replicated.remove(pair)) {
      this.replicated.delete(side.spec.volume);
      await replicated.close();
    }
  }

  /** Makes this side the primary (close the secondary, keep meta and tracking). */
  private promote(side: Side, reason: string, change: Partial<PairMetaState>): PrimaryPair {
    side.secondary?.close({ keepTracking: true });
    side.meta.update({ role: 'primary', newGeneration: false, discard: false, streaming: false, ...change });
    const pair = this.buildPrimary(side, reason);
    return pair;
  }

  private demoteOnPeerRequest(side: Side, pair: PrimaryPair, detail: string): void {
    if (side.primary !== pair) return;
    try {
      this.demote(side, 'demoted: the peer took over');
    } catch (error) {
      if (!(error instanceof PairError)) throw error;
      this.options.logger.warn({ pair: side.spec.name, code: error.code }, error.message);
      pair.onSecondaryError(error.code, `${error.message} (${detail})`);
    }
  }

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

  private attach(link: Link): void {
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

  // ---- operator verbs --------------------------------------------------------------------------

  private side(name: string): Side {
    const side = this.sides.get(name);
    if (side === undefined) throw new PairError('ERR_PAIR_UNKNOWN', `controller ${this.options.controllerId} declares no pair ${JSON.stringify(name)}`);
    return side;
  }

  /**
   * Hands the primary role to the secondary: holds host writes, waits until the secondary has
   * applied and flushed everything, promotes it, and demotes this side. On failure the writes
   * are released and this side stays the primary.
   */
  private async handOver(side: Side): Promise<void> {
    const pair = side.primary;
    if (pair === undefined) throw new PairError('ERR_PAIR_STATE', `pair ${side.spec.name}: ${this.options.controllerId} is not its primary`);
    if (pair.currentState !== 'mirroring') throw new PairError('ERR_PAIR_STATE', `pair ${side.spec.name} is ${pair.currentState}; a handover needs it mirroring`);
    const others = [...this.sides.values()].filter((other) => other !== side && other.spec.volume === side.spec.volume && other.primary !== undefined);
    if (others.length > 0) throw new PairError('ERR_PAIR_ROLE', `pair ${side.spec.name}: volume ${side.spec.volume} is also the primary of ${others.map((other) => other.spec.name).join(', ')}`);
    await drainedHandOver(this.roleHost, [side], `pair ${side.spec.name}`,
      () => askPeer(side.link, MessageType.PAIR_PROMOTE, encodePromote(side.spec.name, side.meta.state.generations)));
  }

  /**
   * Takes the pair over on its secondary. Link down: becomes the primary now, with a new
   * generation. Link up and mirroring: a planned switch. `force`: also from an inconsistent
   * image, or with the link up while not mirroring.
   */
  async takeover(name: string, options: { force?: boolean } = {}): Promise<Record<string, unknown>> {
    const side = this.side(name);
    const secondary = side.secondary;
    if (secondary === undefined) throw new PairError('ERR_PAIR_STATE', `pair ${name}: ${this.options.controllerId} is already its primary`);
    if (side.link.isUp && secondary.currentState === 'mirroring' && options.force !== true) {
      await askPeer(side.link, MessageType.PAIR_SWITCH, encodeName(name));
      return this.statusOf(side);
    }
    if (options.force !== true) {
      if (side.link.isUp) throw new PairError('ERR_PAIR_STATE', `pair ${name}: the primary is reachable and the pair is ${secondary.currentState}; wait for mirroring, or --force`);
      if (!secondary.takeoverSafe) throw new PairError('ERR_PAIR_STATE', `pair ${name}: the secondary's image is ${secondary.consistency}; --force takes it over anyway`);
    }
    const generations = startGeneration(side.meta.state.generations, this.random);
    const pair = this.promote(side, 'takeover', { generations });
    pair.start();
    return this.statusOf(side);
  }

  /**
   * Takes over every member of journal group `group` held here as secondary, all or none
   * (group-roles.ts): with the primary unreachable after checking every member, with it
   * reachable by a drained switch of the whole group. Resolves with the members' statuses.
   */
  takeoverGroup(group: string, options: { force?: boolean } = {}): Promise<Record<string, unknown>[]> {
    return this.groupRoles.takeover(group, options);
  }

  /** Swaps the roles of every member of journal group `group` back to the declared ones, in one drained switch. */
  failbackGroup(group: string): Promise<Record<string, unknown>[]> {
    return this.groupRoles.failback(group);
  }

  /** Swaps the roles back to the declared ones (run on either side). */
  async failback(name: string): Promise<Record<string, unknown>> {
    const side = this.side(name);
    if (side.primary !== undefined && side.spec.role === 'secondary') {
      await this.handOver(side);
    } else if (side.secondary !== undefined && side.spec.role === 'primary') {
      await askPeer(side.link, MessageType.PAIR_SWITCH, encodeName(name));
    } else {
      throw new PairError('ERR_PAIR_STATE', `pair ${name}: ${this.options.controllerId} already holds its declared role (${side.spec.role})`);
    }
    return this.statusOf(side);
  }

  /**
   * Resolves a split brain: keeps the data of the side declared `keep`. With the link down only
   * the losing side can resolve (it discards its data); if both sides did (each chose the
   * peer's), the first connect finds it (askWhoKeeps): both go back to split brain, and a
   * resolve with the link up on either side names the one to keep.
   */
  async resolve(name: string, keep: PairRole): Promise<Record<string, unknown>> {
    const side = this.side(name);
    const state = side.primary?.currentState ?? side.secondary?.currentState;
    if (state !== 'split-brain') throw new PairError('ERR_PAIR_STATE', `pair ${name} is ${state}, not in split brain`);
    if (side.resolving === true) throw new PairError('ERR_PAIR_STATE', `pair ${name}: a resolve is already under way on ${this.options.controllerId}`);
    side.resolving = true;
    try {
      return await this.resolveSide(side, name, keep);
    } finally {
      side.resolving = false;
    }
  }

  private async resolveSide(side: Side, name: string, keep: PairRole): Promise<Record<string, unknown>> {
    const keepLocal = keep === side.spec.role;
    if (keepLocal) {
      if (!side.link.isUp) throw new PairError('ERR_PAIR_STATE', `pair ${name}: the link is down; run resolve on the other side, or when the link is up`);
      await side.link.request(MessageType.PAIR_RESOLVE, encodeResolve(name, true));
      if (side.primary !== undefined) side.primary.reopen();
      else if (side.secondary?.currentState === 'split-brain') {
        // After contradictory resolves this side is a secondary: it becomes the primary again
        // with its own data, and opens the peer, which discards its own.
        this.promote(side, 'resolve: this side\'s data is kept', {}).start();
      }
    } else {
      this.demote(side, 'resolve: this side\'s changes are discarded', { discard: true });
      if (side.link.isUp) {
        try {
          await side.link.request(MessageType.PAIR_RESOLVE, encodeResolve(name, false));
        } catch (error) {
          const remote = (error as { remoteCode?: unknown }).remoteCode;
          if (remote !== 'ERR_PAIR_STATE' && remote !== 'ERR_PAIR_BOTH_DISCARDED') throw error;
          // The peer holds no data to keep either (it discarded its own): split brain on both.
          this.contradiction(side);
        }
      }
    }
    return this.statusOf(side);
  }

  /**
   * On connect (and when the pair is created with the link up): a secondary that discarded its
   * data asks the peer whether it keeps its own; asked again now and then while the peer does
   * not declare the pair (yet), as a primary's open is.
   */
  private askWhoKeeps(side: Side): void {
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
  private contradiction(side: Side): never {
    const reason = 'contradictory resolves: neither side keeps its data';
    if (side.secondary !== undefined && side.secondary.currentState !== 'split-brain') {
      this.options.logger.warn({ pair: side.spec.name }, `pair ${side.spec.name}: ${reason}; run resolve --keep primary|secondary with the link up`);
      side.secondary.markSplitBrain(reason);
    }
    throw new PairError('ERR_PAIR_BOTH_DISCARDED', `pair ${side.spec.name}: ${reason}; run resolve --keep primary|secondary once more, with the link up`);
  }

  private statusOf(side: Side): Record<string, unknown> {
    return (side.primary ?? side.secondary as SecondaryPair).status();
  }

  // ---- queries ---------------------------------------------------------------------------------

  /** What the NBD server exports for `volumeName`: its PairVolume when it is in a pair. */
  exportVolume(volumeName: string): PairVolume | undefined {
    return this.facades.get(volumeName);
  }

  /** True when `volumeName` is in a pair and hosts may not write it now. */
  isSecondaryVolume(volumeName: string): boolean {
    const facade = this.facades.get(volumeName);
    return facade !== undefined && !facade.writable;
  }

  /** The primary pairs, as the lockstep barrier sees them (lockstep.ts). */
  lockstepMembers(): LockstepMember[] {
    const members: LockstepMember[] = [];
    for (const side of this.sides.values()) {
      const pair = side.primary;
      const replicated = this.replicated.get(side.spec.volume);
      if (pair === undefined || replicated === undefined) continue;
      members.push({
        pair, volume: side.spec.volume, journal: replicated.journal,
        notify: (sequence) => replicated.feed.notify(sequence),
      });
    }
    return members;
  }

  /** The replicated volume of a volume this controller is the primary of. */
  replicatedVolume(volumeName: string): ReplicatedVolume | undefined {
    return this.replicated.get(volumeName);
  }

  /** The primary side of `name`; throws ERR_PAIR_UNKNOWN. */
  primary(name: string): PrimaryPair {
    const pair = this.sides.get(name)?.primary;
    if (pair === undefined) throw new PairError('ERR_PAIR_UNKNOWN', `controller ${this.options.controllerId} is not the primary of a pair ${JSON.stringify(name)}`);
    return pair;
  }

  /**
   * Suspends a primary pair for the operator; a journal group suspends as a whole (its stream
   * propagates the suspension, journal-group.ts).
   */
  suspend(name: string): Record<string, unknown> {
    const pair = this.primary(name);
    pair.suspend('operator', 'suspended by the operator');
    return pair.status();
  }

  /** Resumes a suspended primary pair, and every suspended member of its journal group here. */
  resume(name: string): Record<string, unknown> {
    const side = this.side(name);
    const pair = this.primary(name);
    pair.resume();
    const group = side.spec.journalGroup;
    if (group !== undefined) {
      for (const other of this.sides.values()) {
        if (other === side || other.spec.journalGroup !== group || other.primary?.currentState !== 'suspended') continue;
        other.primary.resume();
      }
    }
    return pair.status();
  }

  /** The journal groups this controller is the primary of some members of. */
  groupStatus(): Record<string, unknown>[] {
    return [...this.groups.values()].map((group) => group.status());
  }

  /** The secondary side of `name`, if this controller holds it. */
  secondary(name: string): SecondaryPair | undefined {
    return this.sides.get(name)?.secondary;
  }

  /** The declared pairs (the config's, and those created at run time). */
  get specs(): readonly PairSpec[] {
    return this.specList;
  }

  /**
   * Declares a pair at run time (`pair create`): checked as the config's pairs are, then built
   * and started. Its metadata and tracking live beside the volume as for a configured pair; the
   * declaration itself lasts until the serve stops (put it in the config to keep it).
   */
  create(spec: PairSpec): Record<string, unknown> {
    const { options } = this;
    if (this.sides.has(spec.name)) throw new PairError('ERR_PAIR_EXISTS', `controller ${options.controllerId} already has a pair ${JSON.stringify(spec.name)}`);
    const volume = options.volume(spec.volume);
    if (volume === undefined) throw new PairError('ERR_PAIR_BAD_SPEC', `controller ${options.controllerId} has no volume ${JSON.stringify(spec.volume)}`);
    const sameVolume = [...this.sides.values()].filter((other) => other.spec.volume === spec.volume);
    const problem = groupProblem(spec, [...this.sides.values()].map((other) => other.spec));
    if (problem !== undefined) throw new PairError('ERR_PAIR_BAD_SPEC', problem);
    if (spec.role === 'secondary' && sameVolume.length > 0) {
      throw new PairError('ERR_PAIR_BAD_SPEC', `volume ${spec.volume} is in pair ${sameVolume[0]?.spec.name}; a secondary volume belongs to one pair only`);
    }
    if (spec.role === 'primary' && sameVolume.some((other) => other.secondary !== undefined)) {
      throw new PairError('ERR_PAIR_BAD_SPEC', `volume ${spec.volume} is a secondary; it cannot also be a primary`);
    }
    let link: Link;
    try {
      link = options.link(spec.peer);
    } catch (error) {
      throw new PairError('ERR_PAIR_BAD_SPEC', `controller ${options.controllerId} has no link to ${JSON.stringify(spec.peer)}: ${(error as Error).message}`);
    }
    let facade = this.facades.get(spec.volume);
    const newFacade = facade === undefined;
    if (facade === undefined) {
      facade = new PairVolume(volume, spec.volume);
      this.facades.set(spec.volume, facade);
    }
    const meta = PairMeta.open(volume, spec.name, initialMeta(spec.role));
    const tracking = new Tracking(volume, spec.name, meta.state.active, false);
    const side: Side = { spec, volume, link, meta, tracking };
    this.sides.set(spec.name, side);
    this.specList.push(spec);
    this.attach(link);
    if (meta.state.role === 'primary') this.buildPrimary(side, 'created');
    else this.buildSecondary(side, 'created');
    if (newFacade) this.emit('export', { volume: spec.volume, target: facade });
    side.primary?.start();
    // Metadata kept from before (a pair deleted and declared again) may say this side discards.
    this.askWhoKeeps(side);
    return this.statusOf(side);
  }

  /**
   * Removes a pair (`pair delete`): its side stops, its tracking bitmaps and metadata are
   * deleted; the volume keeps its data and, in no other pair, is a plain read-write volume again.
   */
  async delete(name: string): Promise<void> {
    const side = this.side(name);
    const groupName = side.spec.journalGroup;
    // The group's volumes before the change: its kept journal's name comes from the first.
    const groupVolumes = groupName === undefined ? [] : [...this.sides.values()].filter((other) => other.spec.journalGroup === groupName).map((other) => other.volume);
    const primary = side.primary;
    if (primary !== undefined) {
      primary.close({ keepTracking: true });
      await this.retirePrimary(side, primary);
    }
    side.secondary?.close({ keepTracking: true });
    side.tracking.delete();
    await side.meta.close();
    PairMeta.unlink(side.volume, name);
    this.sides.delete(name);
    // The volume's kept journal goes with its last pair. A group's kept journal goes with any
    // change of its members (its name comes from the first declared volume): the members still
    // running keep their mapping, and resync after their next restart.
    if (![...this.sides.values()].some((other) => other.spec.volume === side.spec.volume)) JournalFeed.unlink(journalTargetOf(side.volume));
    if (groupName !== undefined) JournalFeed.unlink(groupJournalTargetOf(groupName, groupVolumes));
    this.specList.splice(this.specList.indexOf(side.spec), 1);
    this.emit('state', { name, old: (primary ?? side.secondary)?.currentState ?? 'simplex', new: 'deleted', reason: 'operator', timeMs: this.options.clock.nowMs(), role: side.meta.state.role });
    if (![...this.sides.values()].some((other) => other.spec.volume === side.spec.volume)) {
      this.facades.delete(side.spec.volume);
      this.emit('export', { volume: side.spec.volume, target: side.volume });
    } else {
      const facade = this.facades.get(side.spec.volume) as PairVolume;
      facade.replicated = this.replicated.get(side.spec.volume);
      this.emitRole(side, 'deleted');
    }
  }

  status(): Record<string, unknown>[] {
    return [...this.sides.values()].map((side) => {
      const entry: Record<string, unknown> = { ...this.statusOf(side), declaredRole: side.spec.role };
      if (side.spec.journalGroup !== undefined) entry.journalGroup = side.spec.journalGroup;
      if (side.primary !== undefined) {
        const latency = (this.facades.get(side.spec.volume) as PairVolume).latency;
        entry.writeLatency = { local: latency.local.toJSON(), remote: latency.remote.toJSON() };
      }
      return entry;
    });
  }

  /** A crash (the simulator's SIGKILL): every side stops at once; nothing is written or acknowledged. */
  crash(): void {
    for (const side of this.sides.values()) side.secondary?.crash();
    for (const replicated of this.replicated.values()) replicated.crash();
    this.removeAllListeners();
  }

  /** Stops every pair and closes the journals and metadata. */
  async close(): Promise<void> {
    for (const side of this.sides.values()) side.secondary?.close();
    for (const replicated of this.replicated.values()) await replicated.close();
    for (const side of this.sides.values()) {
      side.tracking.close();
      await side.meta.close();
    }
  }
}
