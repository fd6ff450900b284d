// Notes on the design
// -------------------
// The role verbs of a whole journal group (pairs.ts keeps those of one pair): the members'
// roles change together, all or none, so the volumes on the side that becomes the primary are
// of one instant of the group's write order.
//   - takeover (on the secondaries' side): with the primary unreachable, every member is
//     checked first (each image consistent, all at the same point of the group's order), then
//     each is promoted with a new generation. With the primary reachable and every member
//     mirroring, a drained switch instead: PAIR_SWITCH_GROUP asks the primary to hand over.
//   - handOver (on the primary): host writes held on every member volume (PairVolume.holdWrites,
//     which also revokes payloads still landing), the shared journal drained and flushed on the
//     secondary for every member, then one PAIR_PROMOTE_GROUP; on failure the writes are
//     released and this side stays the primary of every member.
//   - promote (PAIR_PROMOTE_GROUP, on the secondary): the list must be exactly the group's
//     members declared here with that peer, each mirroring on the sender's generation, all at
//     one point of the order; then every one is promoted, else none.
//   - failback (either side): the drained switch back to the declared roles.
// The drain itself (drainedHandOver) is the same for one pair's handover (pairs.ts) and a group's:
// only the promotion request differs.
// The manager (pairs.ts) gives this module what it needs of its sides (GroupRoleHost).

import { PAIR_ERROR_CODES, type PairErrorCode } from '../errors';
import type { Random } from '../runtime/random';
import type { Link } from '../transport/link';
import { MessageType } from '../transport/message-types';
import { startGeneration } from './generations';
import { type GroupPromote, encodeGroupPromote, encodeName } from './messages';
import type { PairMetaState } from './pair-meta';
import type { Side } from './pair-side';
import { PairError } from './pair-state';
import type { PairVolume } from './pair-volume';
import type { PrimaryPair } from './primary-pair';
import type { SecondaryPair } from './secondary-pair';

/** What the group verbs need of the manager. */
export interface GroupRoleHost {
  readonly controllerId: string;
  /** How long a handover waits for the secondary to catch up. */
  readonly handoverTimeoutMs: number;
  readonly random: Random;
  /** The sides of the pairs declared here in journal group `group`, in declaration order. */
  members(group: string): Side[];
  /** The export of a paired volume. */
  facade(volume: string): PairVolume;
  promote(side: Side, reason: string, change: Partial<PairMetaState>): PrimaryPair;
  demote(side: Side, reason: string): SecondaryPair;
  emitRole(side: Side, reason: string): void;
  statusOf(side: Side): Record<string, unknown>;
}

/**
 * A role request to the peer: a refusal of the peer's pair layer comes back as that PairError
 * (its code, and the peer's words), so a caller of the group verbs sees ERR_PAIR_STATE and why.
 */
export async function askPeer(link: Link, type: number, payload: Buffer): Promise<void> {
  try {
    await link.request(type, payload);
  } catch (error) {
    const remote = (error as { remoteCode?: unknown }).remoteCode;
    if (typeof remote === 'string' && (PAIR_ERROR_CODES as readonly string[]).includes(remote)) throw new PairError(remote as PairErrorCode, (error as Error).message);
    throw error;
  }
}

/**
 * The drain of a handover, of one pair (pairs.ts) or of a whole group: host writes are held on
 * every member volume (payloads still landing are revoked: pair-volume.ts), the secondary applies
 * and flushes everything the journal holds for every member, then `promote` asks the peer to
 * take the roles, and every member is demoted here. On failure the writes are released and this
 * side stays the primary of every member. `subject` names them in events and errors.
 */
export async function drainedHandOver(host: GroupRoleHost, members: Side[], subject: string, promote: () => Promise<void>): Promise<void> {
  const pairs = members.map((side) => side.primary as PrimaryPair);
  const facades = members.map((side) => host.facade(side.spec.volume));
  members.forEach((side, index) => {
    (facades[index] as PairVolume).holdWrites = true;
    (pairs[index] as PrimaryPair).handingOver = true;
    host.emitRole(side, `handover of ${subject}: host writes held`);
  });
  try {
    await Promise.all(pairs.map((pair) => pair.waitCaughtUp(host.handoverTimeoutMs)));
    await promote();
  } catch (error) {
    members.forEach((side, index) => {
      if (side.primary !== pairs[index]) return; // demoted meanwhile: the peer opened as the new primary
      (pairs[index] as PrimaryPair).handingOver = false;
      (facades[index] as PairVolume).holdWrites = false;
      host.emitRole(side, `handover of ${subject} failed: host writes released`);
    });
    throw error instanceof PairError ? error : new PairError('ERR_PAIR_STATE', `${subject}: handover failed: ${(error as Error).message}`);
  }
  members.forEach((side, index) => {
    if (side.primary === pairs[index]) host.demote(side, `${subject} handed over`);
    side.tracking.clearAll();
  });
}

/** The role verbs of journal groups on one controller. */
export class GroupRoles {
  constructor(private readonly host: GroupRoleHost) {}

  /** PAIR_SWITCH_GROUP on the primary: the peer asks for a drained switch of `group`. */
  async onSwitch(link: Link, group: string): Promise<void> {
    const members = this.host.members(group);
    if (members.length === 0 || members.some((side) => side.spec.peer !== link.peerId)) {
      throw new PairError('ERR_PAIR_UNKNOWN', `controller ${this.host.controllerId} declares no journal group ${JSON.stringify(group)} with ${link.peerId}`);
    }
    await this.handOver(group, members);
  }

  /**
   * Hands the primary role of every member of journal group `group` over to the secondary,
   * drained and all or none: host writes are held on every member volume, the secondary applies
   * and flushes the shared journal through its end for every member, one PAIR_PROMOTE_GROUP
   * promotes them all there, and this side demotes them all. So the new primary's volumes start
   * from one instant of the group's order, each identical to its old primary. On failure the
   * writes are released and this side stays the primary of every member.
   */
  async handOver(group: string, members: Side[]): Promise<void> {
    const problems: string[] = [];
    for (const side of members) {
      const pair = side.primary;
      if (pair === undefined) problems.push(`${side.spec.name}: ${this.host.controllerId} is its secondary`);
      else if (pair.handingOver) problems.push(`${side.spec.name}: a handover is under way`);
      else if (pair.currentState !== 'mirroring') problems.push(`${side.spec.name}: ${pair.currentState}`);
    }
    if (problems.length > 0) {
      throw new PairError('ERR_PAIR_STATE', `journal group ${group}: nothing handed over; a drained switch needs every member mirroring with ${this.host.controllerId} its primary (${problems.join('; ')})`);
    }
    const promote = encodeGroupPromote({ group, members: members.map((side) => ({ name: side.spec.name, generations: side.meta.state.generations })) });
    await drainedHandOver(this.host, members, `journal group ${group}`, () => askPeer((members[0] as Side).link, MessageType.PAIR_PROMOTE_GROUP, promote));
  }

  /**
   * PAIR_PROMOTE_GROUP on the secondary: every member the message lists must be exactly the
   * group's members declared here with that peer, each mirroring on the sender's generation and
   * all at the same point of the group's order; then every one is promoted, else none.
   */
  promote(link: Link, message: GroupPromote): void {
    const { group } = message;
    const members = this.host.members(group).filter((side) => side.spec.peer === link.peerId);
    if (members.length === 0) throw new PairError('ERR_PAIR_UNKNOWN', `controller ${this.host.controllerId} declares no journal group ${JSON.stringify(group)} with ${link.peerId}`);
    const listed = new Map(message.members.map((member) => [member.name, member]));
    const declared = members.map((side) => side.spec.name);
    if (listed.size !== members.length || declared.some((name) => !listed.has(name))) {
      throw new PairError('ERR_PAIR_MISMATCH', `journal group ${group}: the primary hands over ${[...listed.keys()].join(', ')}; declared here: ${declared.join(', ')}`);
    }
    const problems: string[] = [];
    for (const side of members) {
      const secondary = side.secondary;
      if (secondary === undefined) problems.push(`${side.spec.name}: already primary`);
      else if (secondary.currentState !== 'mirroring' || side.meta.state.generations.current !== listed.get(side.spec.name)?.generations.current) {
        problems.push(`${side.spec.name}: ${secondary.currentState} on ${side.meta.state.generations.current === listed.get(side.spec.name)?.generations.current ? 'the same' : 'another'} generation`);
      }
    }
    const positions = new Set(members.map((side) => side.secondary?.appliedSequence));
    if (problems.length === 0 && positions.size > 1) problems.push('the members stand at different points of the group\'s order');
    if (problems.length > 0) throw new PairError('ERR_PAIR_STATE', `journal group ${group}: nothing promoted; ${problems.join('; ')}`);
    const promoted = members.map((side) => {
      side.tracking.clearAll();
      return this.host.promote(side, `promoted by a handover of journal group ${group}`, {});
    });
    setImmediate(() => {
      for (const pair of promoted) pair.start();
    });
  }

  /**
   * Takes over every member of journal group `group` that this controller holds as secondary, in
   * one step and all or none: the checks of takeover() run for every member before any is
   * promoted (the primary unreachable, each image consistent, every member at the same point of
   * the group's order; `force` skips them), then each
   * becomes a primary with a new generation. The members' images are of one instant of the
   * group's write order (the secondary applies a group batch as a whole), so the volumes taken
   * over are too. With the primary reachable and every member mirroring it is a drained switch
   * of the whole group instead (PAIR_SWITCH_GROUP: handOverGroup on the primary). Resolves with
   * the members' statuses.
   */
  async takeover(group: string, options: { force?: boolean } = {}): Promise<Record<string, unknown>[]> {
    const members = this.host.members(group);
    if (members.length === 0) throw new PairError('ERR_PAIR_UNKNOWN', `controller ${this.host.controllerId} declares no journal group ${JSON.stringify(group)}`);
    const secondaries = members.filter((side) => side.secondary !== undefined);
    if (secondaries.length === 0) {
      throw new PairError('ERR_PAIR_STATE', `journal group ${group}: ${this.host.controllerId} is already the primary of every member (${members.map((side) => side.spec.name).join(', ')})`);
    }
    // The primary reachable and every member mirroring: a drained switch of the whole group.
    if (options.force !== true && secondaries.length === members.length &&
      secondaries.every((side) => side.link.isUp && side.secondary?.currentState === 'mirroring')) {
      await askPeer((members[0] as Side).link, MessageType.PAIR_SWITCH_GROUP, encodeName(group));
      return members.map((side) => this.host.statusOf(side));
    }
    if (options.force !== true) {
      const problems: string[] = [];
      for (const side of secondaries) {
        const secondary = side.secondary as SecondaryPair;
        if (side.link.isUp) problems.push(`${side.spec.name}: the primary is reachable (${secondary.currentState})`);
        else if (!secondary.takeoverSafe) problems.push(`${side.spec.name}: the image is ${secondary.consistency}`);
      }
      // Each image consistent is not enough: the group's image is one instant of its order only
      // if every member stands at the same batch (a member that streamed on while another was
      // out of the stream ran ahead of it).
      const positions = secondaries.map((side) => (side.secondary as SecondaryPair).appliedSequence);
      if (problems.length === 0 && secondaries.length === members.length && new Set(positions).size > 1) {
        problems.push(`the members stand at different points of the group's order (${secondaries.map((side, index) => `${side.spec.name} at ${positions[index]}`).join(', ')})`);
      }
      if (problems.length > 0) {
        throw new PairError('ERR_PAIR_STATE', `journal group ${group}: nothing taken over; ${problems.join('; ')}. ` +
          'A drained switch of the group needs every member mirroring; --force takes over anyway');
      }
    }
    const promoted: PrimaryPair[] = [];
    for (const side of secondaries) {
      const generations = startGeneration(side.meta.state.generations, this.host.random);
      promoted.push(this.host.promote(side, 'takeover', { generations }));
    }
    for (const pair of promoted) pair.start();
    return members.map((side) => this.host.statusOf(side));
  }

  /**
   * Swaps the roles of every member of journal group `group` back to the declared ones (run on
   * either side): a drained switch of the whole group, all or none.
   */
  async failback(group: string): Promise<Record<string, unknown>[]> {
    const members = this.host.members(group);
    if (members.length === 0) throw new PairError('ERR_PAIR_UNKNOWN', `controller ${this.host.controllerId} declares no journal group ${JSON.stringify(group)}`);
    if (members.every((side) => side.primary !== undefined && side.spec.role === 'secondary')) {
      await this.handOver(group, members);
    } else if (members.every((side) => side.secondary !== undefined && side.spec.role === 'primary')) {
      await askPeer((members[0] as Side).link, MessageType.PAIR_SWITCH_GROUP, encodeName(group));
    } else {
      const roles = members.map((side) => `${side.spec.name} ${side.primary !== undefined ? 'primary' : 'secondary'} (declared ${side.spec.role})`);
      throw new PairError('ERR_PAIR_STATE', `journal group ${group}: a failback needs every member out of its declared role on ${this.host.controllerId}: ${roles.join(', ')}`);
    }
    return members.map((side) => this.host.statusOf(side));
  }
}
