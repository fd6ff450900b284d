// Notes on the design
// -------------------
// One controller's part in a consistency group's cycle (seed 003, the slave side; the master's
// own volumes go through the same object):
//
//   prepare  hold: every member volume's host write completions after this instant wait (a
//            WriteHold on its ReplicatedVolume: the write is stored and journaled, its
//            acknowledgement waits); the cut is each member's last journal sequence now; each
//            member's pair is fenced at its cut (nothing after it ships yet). Answers ready with
//            the cuts. A hold never outlives holdMs: then it releases by itself, lifts the fences
//            and this cycle can no longer run here (RUN is answered not ok): a master that died
//            or a slow peer never stalls host writes for longer than the coordination limit.
//   run      the hold releases (held and later writes complete: they belong to the next cycle,
//            the seed's change recording); each member's pair ships through its cut, sends
//            PAIR_CG_CUT and lifts its fence; the secondary takes the copy at the cut. Answers
//            once every member's copy is taken, or one failed, or drainMs passed.
//   result   the master's outcome: status only (what the secondaries keep is decided by the
//            `formed` number carried in the next cuts, copies.ts).
//
// Why a cycle whose copies all exist is consistent: a slave cuts only at prepare and releases
// only at run (sent after every slave answered ready) or by timeout; a slave that released by
// timeout answers RUN not ok and sends no cut, so its member has no copy of that cycle. So when
// every member has the copy of cycle c, no member acknowledged a write after its cut before every
// member had cut: if B (after its cut) was issued after A's acknowledgement, A was acknowledged
// after run, hence A is after its cut too.

import { type Clock, type TimerHandle, allSettledWithin } from '../runtime/clock';
import type { LinkLogger } from '../transport/link';
import type { PrimaryPair } from '../replication/primary-pair';
import type { ReplicatedVolume, WriteHold } from '../replication/replicated-volume';
import { LatencyHistogram } from '../replication/pair-volume';
import type { Cut, Drained, MemberCopy, Prepare, Run, CycleResult } from './messages';
import { CgroupError, type Relationship } from './types';

/** Exact hold times kept for the bench and status. */
const HOLD_RING = 4096;

/** What a slave finds on its controller. */
export interface SlaveHooks {
  replicated(volume: string): ReplicatedVolume | undefined;
}

interface Hold {
  cycle: number;
  formed: number;
  preparedAtMs: number;
  members: { row: Relationship; replicated: ReplicatedVolume; pair: PrimaryPair; cut: number; hold: WriteHold }[];
  release: () => void;
  timer: TimerHandle;
  released: boolean;
  timedOut: boolean;
}

/** One controller's slave side of one group. */
export class CgroupSlave {
  private hold: Hold | undefined;
  /** Hold time per cycle (prepare to release), the bench's figure. */
  readonly holdTimes = new LatencyHistogram();
  /** The last HOLD_RING hold times in ms, exact (the histogram's are bucket bounds). */
  private readonly holdRing = new Float64Array(HOLD_RING);
  private holdCount = 0;
  holdsTimedOut = 0;
  heldWrites = 0;
  lastResult: { cycle: number; formed: boolean; reason: string; consistencyTimeMs: number } | undefined;
  lastPrepared = 0;
  private closed = false;

  constructor(
    readonly group: string,
    readonly master: string,
    private readonly rows: readonly Relationship[],
    private readonly hooks: SlaveHooks,
    private readonly clock: Clock,
    private readonly log: LinkLogger,
    /** 'no-hold': a deliberate bug (write completions are not held), for the checker's own test. */
    private readonly mutation?: 'no-hold',
    /**
     * This controller's own limits for the group: a master's message never makes it hold longer
     * than its maxCoordinationMs, or drain longer than the larger of its drain limits.
     */
    private readonly limits: { maxHoldMs: number; maxDrainMs: number } = { maxHoldMs: 10_000, maxDrainMs: 86_400_000 },
  ) {}

  /** The pair of a member row (its named pair, or the volume's only one). */
  private pairOf(row: Relationship, replicated: ReplicatedVolume): PrimaryPair {
    const pairs = replicated.pairs;
    const pair = row.pair === undefined ? (pairs.length === 1 ? pairs[0] : undefined) : pairs.find((entry) => entry.name === row.pair);
    if (pair === undefined) {
      throw new CgroupError('ERR_CGROUP_NOT_READY', row.pair === undefined
        ? `volume ${row.volume} has ${pairs.length} primary pairs here; relationship ${row.id} must name one`
        : `volume ${row.volume} has no primary pair ${row.pair} here`);
    }
    return pair;
  }

  /** CGROUP_PREPARE: hold, cut, fence; answers the cuts. Throws ERR_CGROUP_NOT_READY. */
  prepare(message: Prepare): Cut[] {
    if (this.closed) throw new CgroupError('ERR_CGROUP_NOT_READY', `consistency group ${this.group}: stopped here`);
    if (message.cycle <= this.lastPrepared) {
      throw new CgroupError('ERR_CGROUP_STALE', `consistency group ${this.group}: cycle ${message.cycle} is not after ${this.lastPrepared}`);
    }
    // An older cycle still holding (its run never came): it is over.
    this.releaseHold(false);
    this.lastPrepared = message.cycle;
    const members: Hold['members'] = [];
    const gated: ReplicatedVolume[] = [];
    try {
      for (const row of this.rows) {
        const replicated = this.hooks.replicated(row.volume);
        if (replicated === undefined) throw new CgroupError('ERR_CGROUP_NOT_READY', `volume ${row.volume} is not a pair's primary here`);
        const pair = this.pairOf(row, replicated);
        // No native lane write may land between the cut and the hold (replicated-volume.ts).
        replicated.closeLaneGate();
        gated.push(replicated);
        const cut = replicated.journal.nextSequence - 1;
        const problem = pair.cutProblem(cut);
        if (problem !== undefined) throw new CgroupError('ERR_CGROUP_NOT_READY', problem);
        members.push({ row, replicated, pair, cut, hold: undefined as unknown as WriteHold });
      }
    } catch (error) {
      for (const replicated of gated) replicated.updateLaneGate();
      throw error;
    }
    let release!: () => void;
    const released = new Promise<void>((resolve) => { release = resolve; });
    for (const member of members) {
      member.hold = { cut: member.cut, released, held: 0 };
      if (this.mutation !== 'no-hold') member.replicated.hold = member.hold;
      member.pair.fenceAt(member.cut);
    }
    const holdMs = Math.min(message.holdMs, this.limits.maxHoldMs);
    const hold: Hold = {
      cycle: message.cycle, formed: message.formed, preparedAtMs: this.clock.nowMs(), members, release, released: false, timedOut: false,
      timer: this.clock.setTimer(() => {
        if (this.hold !== hold || hold.released) return;
        hold.timedOut = true;
        this.holdsTimedOut++;
        this.log.warn({ group: this.group, cycle: hold.cycle }, `consistency group ${this.group}: cycle ${hold.cycle} held writes for ${holdMs} ms without a run; released`);
        this.releaseHold(false);
      }, holdMs, { unref: true }),
    };
    this.hold = hold;
    return members.map((member) => ({ volume: member.row.volume, sequence: member.cut }));
  }

  /** Releases the hold: write completions go on; `keepFences`: the run cuts next. */
  private releaseHold(keepFences: boolean): void {
    const hold = this.hold;
    if (hold === undefined || hold.released) return;
    hold.released = true;
    hold.timer.cancel();
    for (const member of hold.members) {
      if (member.replicated.hold === member.hold) member.replicated.hold = undefined;
      this.heldWrites += member.hold.held;
      if (!keepFences) member.pair.unfence();
    }
    hold.release();
    const heldMs = this.clock.nowMs() - hold.preparedAtMs;
    this.holdTimes.record(heldMs / 1000);
    this.holdRing[this.holdCount % HOLD_RING] = heldMs;
    this.holdCount++;
  }

  /** CGROUP_RUN: release, cut, drain; answers once every member's copy is taken (or not). */
  async run(message: Run): Promise<Drained> {
    const hold = this.hold;
    if (hold === undefined || hold.cycle !== message.cycle || hold.released) {
      const why = hold?.cycle === message.cycle && hold.timedOut
        ? `the hold of cycle ${message.cycle} was released after its limit, before the run`
        : `cycle ${message.cycle} is not held here`;
      return { ok: false, reason: `stale: ${why}`, members: [] };
    }
    this.releaseHold(true);
    const drainMs = Math.min(message.drainMs, this.limits.maxDrainMs);
    const cuts = hold.members.map((member) => member.pair.cutAt({ group: this.group, cycle: hold.cycle, formed: hold.formed, timeoutMs: drainMs })
      .then((reply): MemberCopy => ({ volume: member.row.volume, snapshot: reply.snapshot, holdings: reply.holdings })));
    const outcome = await allSettledWithin(this.clock, cuts, drainMs);
    if (outcome === 'timeout') {
      // Fences not cut yet lift: shipping goes on; a copy that arrives late is harmless (it is
      // consistent, and pruned by a later cut).
      for (const member of hold.members) member.pair.unfence();
      return { ok: false, reason: `drain-timeout: the secondaries did not reach the cut within ${drainMs} ms`, members: [] };
    }
    const members: MemberCopy[] = [];
    const failures: string[] = [];
    outcome.forEach((entry, index) => {
      const member = hold.members[index] as Hold['members'][number];
      if (entry.status === 'fulfilled') members.push(entry.value);
      else {
        failures.push(`${member.row.volume}: ${(entry.reason as Error)?.message ?? String(entry.reason)}`);
        members.push({ volume: member.row.volume, snapshot: '', holdings: [] });
      }
    });
    if (failures.length > 0) return { ok: false, reason: `copy-failed: ${failures.join('; ')}`, members };
    return { ok: true, reason: '', members };
  }

  /** CGROUP_RESULT: the master's outcome of a cycle (status; a hold still in force ends). */
  result(message: CycleResult): void {
    if (this.hold?.cycle === message.cycle && !this.hold.released) this.releaseHold(false);
    this.lastResult = { cycle: message.cycle, formed: message.formed, reason: message.reason, consistencyTimeMs: message.consistencyTimeMs };
  }

  /** The last hold times in ms (at most HOLD_RING), oldest first. */
  recentHoldTimesMs(): number[] {
    const count = Math.min(this.holdCount, HOLD_RING);
    const out: number[] = [];
    for (let index = this.holdCount - count; index < this.holdCount; index++) out.push(this.holdRing[index % HOLD_RING] as number);
    return out;
  }

  status(): Record<string, unknown> {
    const hold = this.hold;
    return {
      master: this.master,
      members: this.rows.map((row) => ({ id: row.id, volume: row.volume, ...(row.pair === undefined ? {} : { pair: row.pair }) })),
      holding: hold !== undefined && !hold.released ? { cycle: hold.cycle, sinceMs: Math.round(this.clock.nowMs() - hold.preparedAtMs) } : null,
      lastPrepared: this.lastPrepared,
      lastResult: this.lastResult ?? null,
      holdTimes: this.holdTimes.toJSON(),
      holdMs: this.holdQuantilesMs(),
      holdsTimedOut: this.holdsTimedOut,
      heldWrites: this.heldWrites,
    };
  }

  /** Exact p50/p99 of the recent holds, in ms (null when none). */
  holdQuantilesMs(): { p50: number; p99: number; count: number } | null {
    const times = this.recentHoldTimesMs().sort((a, b) => a - b);
    if (times.length === 0) return null;
    const at = (q: number): number => times[Math.min(times.length - 1, Math.floor(q * times.length))] as number;
    return { p50: at(0.5), p99: at(0.99), count: times.length };
  }

  /** Stops: a hold in force releases (writes complete), fences lift. */
  close(): void {
    this.closed = true;
    this.releaseHold(false);
  }

  /** A crash: nothing is released (no host sees a completion), timers stop. */
  crash(): void {
    this.closed = true;
    this.hold?.timer.cancel();
  }
}
