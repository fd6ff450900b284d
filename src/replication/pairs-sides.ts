// Notes on the design
// -------------------
// The state of a controller's pair manager (pairs.ts; its rules are in pairs.ts's notes) and the
// role swaps every layer above uses: the declared sides, the replicated volume of each volume
// this controller is the primary of, the journal groups, the export (PairVolume) of each paired
// volume; building a side as primary or secondary, demoting and promoting it (meta and tracking
// carry over), retiring a closed primary, and the role event. The manager is a stack of classes,
// each in its own file and each adding one concern to the one below: PairSides (this file: the
// sides and their roles) <- PairRouting (pairs-routing.ts: the pair protocol's messages from each
// link, the handover, the resolve query) <- PairManager (pairs.ts: start, the operator's verbs,
// queries, create and delete, status, close). They share this state as protected members; the
// maps are made here, at construction, and changed by the layers above.
//
// Errors: the constructor throws TypeError for a bad declaration (a duplicate name, an unknown
// volume, a volume that is a secondary twice or also a primary, a journal group's problem); a
// role swap the volume's other pairs forbid throws ERR_PAIR_ROLE; an unknown pair ERR_PAIR_UNKNOWN.

import { EventEmitter } from 'node:events';

import { type Random, realRandom } from '../runtime/random';
import type { Volume } from '../storage/volume';
import type { Link } from '../transport/link';
import { newGenerationId } from './generations';
import { GroupRoles, type GroupRoleHost } from './group-roles';
import { JournalFeed, groupJournalTargetOf, journalTargetOf } from './journal-feed';
import { JournalGroup } from './journal-group';
import type { PairMetaState } from './pair-meta';
import type { Side } from './pair-side';
import { PairError } from './pair-state';
import { PairVolume } from './pair-volume';
import { type PairStateEvent, PrimaryPair } from './primary-pair';
import { ReplicatedVolume } from './replicated-volume';
import { type ImageKeeper, SecondaryPair } from './secondary-pair';
import { type PairSpec, groupProblem } from './pair-spec';
import type { PairManagerOptions, PairRoleEvent } from './pairs-options';
import { snapshotImageKeeper } from './pair-images';

/** The sides of a controller's pairs and their roles (see the notes above); PairManager (pairs.ts) is the class others use. */
export abstract class PairSides extends EventEmitter {
  protected readonly sides = new Map<string, Side>();
  protected readonly replicated = new Map<string, ReplicatedVolume>();
  /** The journal groups this controller is the primary of (some of) the members of. */
  protected readonly groups = new Map<string, JournalGroup>();
  protected readonly facades = new Map<string, PairVolume>();
  protected readonly random: Random;
  protected readonly attached = new Set<Link>();
  protected readonly specList: PairSpec[];
  protected started = false;
  /** What the role verbs (group-roles.ts) need of this manager, and the verbs of whole journal groups. */
  protected readonly roleHost: GroupRoleHost;
  protected readonly groupRoles: GroupRoles;

  constructor(protected readonly options: PairManagerOptions) {
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

  // ---- sides -----------------------------------------------------------------------------------

  protected buildPrimary(side: Side, reason: string): PrimaryPair {
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

  protected buildSecondary(side: Side, reason: string): SecondaryPair {
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

  protected emitRole(side: Side, reason: string): void {
    const facade = this.facades.get(side.spec.volume) as PairVolume;
    const event: PairRoleEvent = { name: side.spec.name, volume: side.spec.volume, role: side.meta.state.role, writable: facade.writable, reason };
    if (this.started) this.options.logger.info({ ...event }, `pair ${side.spec.name}: ${side.spec.volume} is now ${event.role} (${reason}); hosts may ${event.writable ? 'write' : 'only read'}`);
    this.emit('role', event);
  }

  /** Makes this side the secondary (close the primary, keep meta and tracking). */
  protected demote(side: Side, reason: string, options: { discard?: boolean } = {}): SecondaryPair {
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
  protected async retirePrimary(side: Side, pair: PrimaryPair): Promise<void> {
    const group = side.spec.journalGroup === undefined ? undefined : this.groups.get(side.spec.journalGroup);
    if (group !== undefined && group.remove(pair)) this.groups.delete(group.name);
    const replicated = this.replicated.get(side.spec.volume);
    if (replicated !== undefined && replicated.remove(pair)) {
      this.replicated.delete(side.spec.volume);
      await replicated.close();
    }
  }

  /** Makes this side the primary (close the secondary, keep meta and tracking). */
  protected promote(side: Side, reason: string, change: Partial<PairMetaState>): PrimaryPair {
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

  protected side(name: string): Side {
    const side = this.sides.get(name);
    if (side === undefined) throw new PairError('ERR_PAIR_UNKNOWN', `controller ${this.options.controllerId} declares no pair ${JSON.stringify(name)}`);
    return side;
  }

  protected statusOf(side: Side): Record<string, unknown> {
    return (side.primary ?? side.secondary as SecondaryPair).status();
  }
}
