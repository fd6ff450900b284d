// Notes on the design
// -------------------
// The operations of a pair schedule (pair-schedule.ts): what each step does, with the draws it
// makes (pair-schedule-choices.ts), on the world of pair-schedule-world.ts: host writes, zeroes
// and trims through controller.exportVolume('vol0') (a PairVolume) on whichever controller
// accepts host writes, each appended to its lineage and marked acknowledged when its ack point
// resolves (see pair-schedule-checks.ts for when that counts); lockstep calls, checked when they
// answer done; link drops, one-way and two-way partitions, delays, bandwidth caps and heals;
// crashes (controller.crash(), then network.crash(id)) and restarts (network.restart(id), a new
// Controller with the same options); operator suspend and resume; takeover on the secondary
// (after waiting for its link to go down when the primary is cut off or dead), failback, and
// resolve after a split brain (keeping one declared side per split brain).
//
// An operation that finds nothing to act on does nothing (its draws still count); one the pair
// code refuses is noted in the trace (and counted as refused), never a violation by itself.

import type { Controller } from '../controller/controller';
import type { PairVolume } from '../replication/pair-volume';
import { checkAcknowledgedPresent, checkCoveredThrough, fillBlocks } from './pair-invariants';
import { PairScheduleChecks } from './pair-schedule-checks';
import type { Id, PairLink } from './pair-schedule-world';

export abstract class PairScheduleOperations extends PairScheduleChecks {
  /**
   * A lockstep call on the controller that takes host writes (no random draw: the schedule's
   * other operations stay as they were): when it answers done, every write issued before it must
   * be on every receiver of the volume's pairs, at that instant.
   */
  protected startLockstep(): void {
    const id = this.alive().find((candidate) => this.host(candidate)?.writable === true);
    if (id === undefined) return;
    const lineage = this.lineages.get(id);
    const controller = this.controller(id);
    if (lineage === undefined || controller === undefined) return;
    const receivers = this.links.filter((link) => this.side(id, link.pair)?.role === 'primary')
      .map((link) => ({ pair: link.pair, id: link.primary === id ? link.secondary : link.primary }));
    if (receivers.length === 0) return;
    const cutoff = lineage.writes.length;
    this.counters.lockstepCalls++;
    this.note(`lockstep on ${id} after write ${lineage.writes[cutoff - 1]?.id ?? 'none'} (${receivers.map((receiver) => receiver.pair).join(', ')})`);
    controller.lockstep({ pairs: receivers.map((receiver) => receiver.pair) }).then((result) => {
      this.note(`lockstep on ${id}: ${result}`);
      if (result !== 'done') return;
      this.counters.lockstepDone++;
      for (const receiver of receivers) {
        const other = this.controller(receiver.id);
        if (other === undefined || this.lineages.get(id) !== lineage) continue;
        this.counters.lockstepChecks++;
        for (const text of checkCoveredThrough(lineage, this.values(receiver.id), cutoff, `lockstep on ${id}: receiver ${receiver.id} of ${receiver.pair}`)) this.violation(text);
      }
    }, (error: unknown) => this.note(`lockstep on ${id} failed: ${this.code(error)}`));
  }

  /** One host write, zero or trim on a controller that takes host writes. */
  protected hostWrite(kind: 'write' | 'zero' | 'trim'): void {
    const writers = this.alive().filter((id) => this.host(id)?.writable === true);
    const id = this.pick(writers);
    if (id === undefined) return;
    const target = this.host(id) as PairVolume;
    const lineage = this.lineages.get(id);
    if (lineage === undefined) {
      this.violation(`${id} takes host writes but holds no lineage (role bookkeeping)`);
      return;
    }
    const blockCount = 1 + this.choose.int(4);
    const firstBlock = this.choose.int(this.blockCount - blockCount + 1);
    const writeId = this.nextWriteId++;
    const byteOffset = firstBlock * this.blockBytes;
    const byteLength = blockCount * this.blockBytes;
    let sequence: number;
    try {
      if (kind === 'write') {
        const data = Buffer.allocUnsafe(byteLength);
        fillBlocks(data, writeId, firstBlock, this.blockBytes);
        sequence = target.write(byteOffset, data);
        this.counters.writes++;
      } else if (kind === 'zero') {
        sequence = target.writeZeroes(byteOffset, byteLength);
        this.counters.zeroes++;
      } else {
        sequence = target.trim(byteOffset, byteLength);
        this.counters.trims++;
      }
    } catch (error) {
      this.note(`${kind} on ${id} refused: ${this.code(error)}`);
      return;
    }
    const write = lineage.append({ id: writeId, firstBlock, blockCount, value: kind === 'write' ? writeId : 0, acknowledged: false, issuedAtMs: this.now() });
    this.note(`${kind} #${writeId} on ${id}: blocks ${firstBlock}..${firstBlock + blockCount - 1} (sequence ${sequence})`);
    const controller = this.controller(id) as Controller;
    const counts = (): boolean => {
      if (this.mode !== 'sync') return true;
      if (this.fence === 'data') return true;
      // Fence 'never': only an acknowledgement while every pair of the volume mirrors is one
      // from the secondary.
      return this.links.filter((link) => link.primary === id || link.secondary === id).every((link) => {
        try {
          return controller.pairs?.primary(link.pair).currentState === 'mirroring';
        } catch {
          return false;
        }
      });
    };
    const acknowledge = (): void => {
      if (this.controller(id) !== controller || !counts()) return;
      write.acknowledged = true;
      this.counters.acknowledged++;
    };
    const wait = target.writeCompletion(sequence);
    if (wait === null) acknowledge();
    else wait.then(acknowledge, () => undefined);
  }

  protected async crash(): Promise<void> {
    const id = this.pick(this.alive());
    if (id === undefined) return;
    this.note(`crash ${id}`);
    (this.controller(id) as Controller).crash();
    this.network.crash(id);
    this.controllers.set(id, undefined);
    this.counters.crashes++;
  }

  protected async restart(id: Id): Promise<void> {
    this.note(`restart ${id}`);
    this.network.restart(id);
    await this.startController(id);
    this.counters.restarts++;
  }

  protected linkFault(): void {
    const link = this.pick(this.links) as PairLink;
    const [x, y] = this.choose.int(2) === 0 ? [link.primary, link.secondary] : [link.secondary, link.primary];
    switch (this.choose.int(5)) {
      case 0:
        this.note(`drop ${x}-${y}`);
        this.network.reset(x, y);
        this.counters.faults++;
        // A drop is over at once, but the link is down until it reconnects.
        this.cleanSince.clear();
        return;
      case 1:
        this.note(`partition ${x}-${y} both ways`);
        this.network.partition(x, y);
        this.addFault(x, y, 'partition');
        return;
      case 2:
        this.note(`partition ${x}->${y} one way`);
        this.network.partition(x, y, { direction: 'a-to-b' });
        this.addFault(x, y, 'partition');
        return;
      case 3: {
        const latencyMs = 2 + this.choose.int(60);
        const jitterMs = this.choose.int(20);
        this.note(`delay ${x}->${y} ${latencyMs} ms (jitter ${jitterMs})`);
        this.network.setLink(x, y, { latencyMs, jitterMs });
        this.addFault(x, y, 'delay');
        return;
      }
      default: {
        const bandwidthBytesPerSecond = (64 + this.choose.int(1024)) * 1024;
        this.note(`bandwidth ${x}->${y} ${bandwidthBytesPerSecond} B/s`);
        this.network.setLink(x, y, { bandwidthBytesPerSecond });
        this.addFault(x, y, 'bandwidth');
      }
    }
  }

  protected healAll(): void {
    this.note('heal all');
    this.network.healAll();
    for (const x of this.ids) for (const y of this.ids) if (x !== y) this.network.clearLink(x, y);
    this.faults.clear();
    this.counters.heals++;
  }

  protected suspendOrResume(suspend: boolean): void {
    const candidates: { id: Id; pair: string }[] = [];
    for (const link of this.links) {
      for (const id of [link.primary, link.secondary]) {
        const status = this.side(id, link.pair);
        if (status?.role !== 'primary') continue;
        if (suspend ? status.state !== 'suspended' : status.state === 'suspended') candidates.push({ id, pair: link.pair });
      }
    }
    const chosen = this.pick(candidates);
    if (chosen === undefined) return;
    const pair = this.controller(chosen.id)?.pairs?.primary(chosen.pair);
    try {
      if (suspend) {
        pair?.suspend('operator', 'the schedule');
        this.counters.suspends++;
      } else {
        pair?.resume();
        this.counters.resumes++;
      }
      this.note(`${suspend ? 'suspend' : 'resume'} ${chosen.pair} on ${chosen.id}`);
    } catch (error) {
      this.note(`${suspend ? 'suspend' : 'resume'} ${chosen.pair} on ${chosen.id} refused: ${this.code(error)}`);
    }
  }

  /** Takeover on the secondary of p0 (two controllers only). */
  protected async takeover(): Promise<void> {
    const secondary = this.alive().find((id) => this.side(id, 'p0')?.role === 'secondary');
    if (secondary === undefined) return;
    const other: Id = secondary === 'a' ? 'b' : 'a';
    const cutOff = this.controller(other) === undefined || this.faulted(secondary, other);
    if (cutOff) {
      // The operator sees the primary gone and waits for the secondary to notice.
      await this.clock.runUntil(() => this.side(secondary, 'p0')?.link !== 'up', { maxTimeMs: 1000 });
    }
    const force = this.choose.int(20) === 0;
    const before = this.side(secondary, 'p0') ?? {};
    const planned = before.link === 'up' && before.state === 'mirroring' && !force;
    const oldLineage = this.lineages.get(other);
    const oldPosition = oldLineage?.writes.length ?? 0;
    this.note(`takeover p0 on ${secondary}${force ? ' --force' : ''} (secondary ${String(before.state)}, ${String(before.consistency)}, link ${String(before.link)})`);
    const manager = this.controller(secondary)?.pairs;
    if (manager === undefined) return;
    const outcome = await this.settle(manager.takeover('p0', force ? { force: true } : {}));
    if (!outcome.ok) {
      this.counters.refused++;
      this.note(`takeover on ${secondary} refused: ${this.code(outcome.error)}`);
      return;
    }
    this.counters.takeovers++;
    const lineage = this.lineages.get(secondary);
    if (lineage === undefined) {
      this.violation(`takeover on ${secondary} succeeded, but it is not the primary (${JSON.stringify(this.side(secondary, 'p0'))})`);
      return;
    }
    if (force || oldLineage === undefined) return;
    this.counters.takeoverChecks++;
    if (planned) {
      this.checkHandover(oldLineage, oldPosition, lineage, `planned takeover on ${secondary}`);
    } else if (this.mode === 'sync') {
      for (const text of checkAcknowledgedPresent(oldLineage, lineage.base, `sync takeover on ${secondary} (fence ${this.fence})`)) this.violation(text);
    }
  }

  protected async failback(): Promise<void> {
    const id = this.pick(this.alive().filter((candidate) => {
      const status = this.side(candidate, 'p0');
      return status !== undefined && status.role !== status.declaredRole;
    }));
    if (id === undefined) return;
    const other: Id = id === 'a' ? 'b' : 'a';
    const primaryNow: Id = this.side(id, 'p0')?.role === 'primary' ? id : other;
    const oldLineage = this.lineages.get(primaryNow);
    const oldPosition = oldLineage?.writes.length ?? 0;
    this.note(`failback p0 on ${id}`);
    const manager = this.controller(id)?.pairs;
    if (manager === undefined) return;
    const outcome = await this.settle(manager.failback('p0'));
    if (!outcome.ok) {
      this.counters.refused++;
      this.note(`failback on ${id} refused: ${this.code(outcome.error)}`);
      return;
    }
    this.counters.failbacks++;
    const newPrimary: Id = primaryNow === 'a' ? 'b' : 'a';
    const lineage = this.lineages.get(newPrimary);
    if (oldLineage !== undefined && lineage !== undefined && this.controller(newPrimary) !== undefined) {
      this.counters.takeoverChecks++;
      this.checkHandover(oldLineage, oldPosition, lineage, `failback to ${newPrimary}`);
    }
  }

  /** The declared role whose data the resolves of the current split brain keep. */
  private keep: 'primary' | 'secondary' | undefined;

  protected async resolve(): Promise<boolean> {
    const inSplit = this.alive().filter((id) => this.links.some((link) => this.side(id, link.pair)?.state === 'split-brain'));
    if (this.ids.every((id) => this.side(id, 'p0')?.state !== 'split-brain' && this.side(id, 'p0')?.role !== undefined)) this.keep = undefined;
    const id = this.pick(inSplit);
    if (id === undefined) return false;
    const link = this.links.find((candidate) => this.side(id, candidate.pair)?.state === 'split-brain') as PairLink;
    // An operator keeps one side per split brain: a second resolve that kept the other one
    // would discard both (each side demotes itself) and leave no primary.
    const keep = this.keep ?? (this.choose.int(2) === 0 ? 'primary' : 'secondary');
    this.keep = keep;
    this.note(`resolve ${link.pair} on ${id}, keep the declared ${keep}`);
    const manager = this.controller(id)?.pairs;
    if (manager === undefined) return false;
    const outcome = await this.settle(manager.resolve(link.pair, keep));
    if (!outcome.ok) {
      this.counters.refused++;
      this.note(`resolve on ${id} refused: ${this.code(outcome.error)}`);
      return false;
    }
    this.counters.resolves++;
    return true;
  }
}
