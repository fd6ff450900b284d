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
// Layout: the manager is a stack of classes, one concern each: PairSides (pairs-sides.ts: the
// sides, their building and role swaps) <- PairRouting (pairs-routing.ts: the pair protocol's
// messages from each link, the handover, the resolve query) <- PairManager (this file: start,
// the operator's verbs, queries, create and delete, status, crash and close). The shape of a
// side is in pair-side.ts, the role verbs of whole journal groups in group-roles.ts; the declared
// pair (PairSpec, groupProblem, initialMeta) is in pair-spec.ts, the manager's options, hooks,
// mutations and role event are in pairs-options.ts, and the snapshot keeper of a side's last
// consistent image is in pair-images.ts. The public names are re-exported here, so importers
// keep one path.

import type { Volume } from '../storage/volume';
import type { Link } from '../transport/link';
import { MessageType } from '../transport/message-types';
import { startGeneration } from './generations';
import { encodeName, encodeResolve } from './messages';
import type { LockstepMember } from './lockstep';
import { PairMeta } from './pair-meta';
import { JournalFeed, groupJournalTargetOf, journalTargetOf } from './journal-feed';
import { askPeer } from './group-roles';
import type { Side } from './pair-side';
import { PairError, type PairRole } from './pair-state';
import { PairVolume } from './pair-volume';
import type { PrimaryPair } from './primary-pair';
import type { ReplicatedVolume } from './replicated-volume';
import type { SecondaryPair } from './secondary-pair';
import { Tracking } from './tracking';
import { type PairSpec, groupProblem, initialMeta } from './pair-spec';
import { PairRouting } from './pairs-routing';

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
export class PairManager extends PairRouting {
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

  // ---- operator verbs --------------------------------------------------------------------------

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
