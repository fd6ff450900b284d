// Notes on the design
// -------------------
// The invariant checks of a pair schedule (pair-schedule.ts), against the model of
// pair-invariants.ts and the world of pair-schedule-world.ts; the layer above the world, below
// the operations and the run loop. The run loop calls checkStep() after every step, quiesced()
// as the clock's stop condition and checkQuiesced() at the end; the operations check at the
// instant they act (a handover: checkHandover() here; a sync takeover and a lockstep answered
// done: checkAcknowledgedPresent and checkCoveredThrough of pair-invariants.ts).
//
// The model: a write counts as acknowledged-on-the-secondary (what a sync takeover must keep)
// when its ack point resolved and the pair guarantees it: with fence 'data' every
// acknowledgement (the write is never acknowledged while missing from the secondary,
// docs/pairs.md); with fence 'never' only one resolved while the pair was mirroring (after a link
// timeout it acknowledges local writes by design). Checked: after each step, every secondary that
// says consistent and mirroring is a write-order prefix of its primary's lineage, and no side
// stays copying/resyncing past the bound while its link is up and unfaulted; at each sync
// takeover, the acknowledged writes; at each handover, the new primary equals the old one; at
// the end, the sides are identical and the primary holds its lineage's last image.
//
// Costs: the clock asks quiesced() after every timer, so it reads state getters and one pair's
// status, never a manager's status() (which formats every pair); a check after a step reads each
// controller's status once (cached()) and the pairs' brief getters. Errors: what the checks find
// is recorded as sentences (violation()), never thrown.

import type { PrimaryPair } from '../replication/primary-pair';
import {
  Lineage,
  checkIdentical,
  checkPrimaryModel,
  checkTransientBound,
  checkWriteOrderPrefix,
  decodeImage,
} from './pair-invariants';
import { type Id, PairScheduleWorld } from './pair-schedule-world';

export abstract class PairScheduleChecks extends PairScheduleWorld {
  private splitSeen = false;

  /** After a step: consistent secondaries are prefixes; no side overstays a transient state. */
  protected checkStep(): void {
    this.cached(() => this.checkStepCached());
  }

  /**
   * The fields of a side's status() the per-step check reads (role, state, consistency, link,
   * peer, sinceMs), from the pair's getters: status() also counts tracks (system calls) and
   * formats generations, and this runs after every step of every schedule.
   */
  private brief(id: Id, pair: string): { role: string; state: string; consistency: string; link: string; peer: string; sinceMs: number } | undefined {
    const manager = this.controller(id)?.pairs;
    if (manager === undefined) return undefined;
    const secondary = manager.secondary(pair);
    if (secondary !== undefined) return { role: 'secondary', consistency: secondary.consistency, ...secondary.brief };
    let primary: PrimaryPair;
    try {
      primary = manager.primary(pair);
    } catch {
      return undefined;
    }
    return { role: 'primary', consistency: primary.consistency, ...primary.brief };
  }

  private checkStepCached(): void {
    const now = this.clock.nowMs() - this.startMs;
    for (const link of this.links) {
      for (const id of [link.primary, link.secondary]) {
        const status = this.brief(id, link.pair);
        if (status === undefined) continue;
        const peer = status.peer as Id;
        const key = `${link.pair}@${id}`;
        if (status.state === 'split-brain' && !this.splitSeen) {
          this.splitSeen = true;
          this.counters.splitBrains++;
        }
        const clean = status.link === 'up' && !this.faulted(id, peer) && this.controller(peer) !== undefined;
        if (!clean) this.cleanSince.delete(key);
        else if (!this.cleanSince.has(key)) this.cleanSince.set(key, now);
        for (const text of checkTransientBound({
          what: `pair ${link.pair} on ${id} (${String(status.role)})`, state: String(status.state),
          enteredAtMs: now - (status.sinceMs as number), linkCleanSinceMs: this.cleanSince.get(key),
        }, now, this.transientBoundMs)) this.violation(`${text}; ${JSON.stringify(this.side(id, link.pair))}`);
        if (status.role === 'secondary' && status.state === 'mirroring' && status.consistency === 'consistent') {
          const lineage = this.lineages.get(peer);
          if (lineage === undefined) continue;
          this.counters.prefixChecks++;
          for (const text of checkWriteOrderPrefix(lineage, this.values(id), `pair ${link.pair}: secondary ${id}`)) this.violation(text);
        }
      }
    }
  }

  /** Asked after every timer: reads state getters only (no status(), so no status cache either). */
  protected quiesced(): boolean {
    for (const id of this.ids) if (this.controllers.get(id) === undefined) return false;
    for (const link of this.links) {
      // The clock asks after every timer: the state getters only, and one pair's status for its
      // lag (a manager's status() formats every pair, its generations and its latency).
      // primary() throws (an error with a stack: costly in a loop) where there is no primary
      // side, so it is asked only of the controller whose volume is replicated.
      let primary: PrimaryPair | undefined;
      let secondaryCount = 0;
      for (const id of [link.primary, link.secondary]) {
        const manager = this.controller(id)?.pairs;
        if (manager === undefined) return false;
        const secondary = manager.secondary(link.pair);
        if (secondary !== undefined) {
          if (secondary.currentState !== 'mirroring' || secondary.consistency !== 'consistent') return false;
          secondaryCount++;
        } else if (this.isPrimary(id)) {
          if (primary !== undefined) return false;
          try {
            primary = manager.primary(link.pair);
          } catch {
            return false;
          }
          if (primary.currentState !== 'mirroring') return false;
        }
      }
      if (primary === undefined || secondaryCount !== 1) return false;
      if (primary.lagRecords !== 0) return false;
    }
    return true;
  }

  protected describe(): string {
    return this.cached(() => this.describeCached());
  }

  private describeCached(): string {
    return this.links.map((link) => [link.primary, link.secondary].map((id) => {
      const status = this.side(id, link.pair);
      return status === undefined ? `${link.pair}@${id}: down` : `${link.pair}@${id}: ${String(status.role)} ${String(status.state)} (${String(status.reason)}) ${String(status.consistency)} link ${String(status.link)}` +
        (status.lag === undefined ? '' : ` lag ${JSON.stringify(status.lag)}`);
    }).join('; ')).join(' | ');
  }

  /** A drained handover: the new primary started from exactly the old one's image. */
  protected checkHandover(oldLineage: Lineage, position: number, lineage: Lineage, what: string): void {
    const expected = oldLineage.imageAt(position);
    for (const text of checkPrimaryModel(new Lineage(oldLineage.owner, expected), lineage.base, `${what}: the new primary ${lineage.owner}`)) this.violation(text);
  }

  /** At the end, once quiesced: one primary, holding its lineage's last image, and every other side identical to it. */
  protected checkQuiesced(): void {
    const primaries = this.ids.filter((id) => this.isPrimary(id));
    if (primaries.length !== 1) {
      this.violation(`after quiescence ${primaries.length} primaries: ${primaries.join(', ')}`);
      return;
    }
    const primary = primaries[0] as Id;
    const lineage = this.lineages.get(primary);
    const image = this.image(primary);
    if (lineage === undefined) this.violation(`the primary ${primary} holds no lineage`);
    else for (const text of checkPrimaryModel(lineage, decodeImage(image, this.blockBytes))) this.violation(text);
    for (const id of this.ids) {
      if (id === primary) continue;
      for (const text of checkIdentical(image, this.image(id), this.blockBytes, `after quiescence, primary ${primary} and ${id}`)) this.violation(text);
    }
  }
}
