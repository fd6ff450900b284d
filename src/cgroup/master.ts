// Notes on the design
// -------------------
// The master's cycle (seed 003): prepare every slave (each holds its host write completions,
// takes its cut and answers ready), then run (each releases, drains to its cut and has its
// secondaries take the copy at the cut), then the outcome to every slave. The group is formed
// only when every member's copy was taken; then that cycle's copies are the recoverable ones.
// The seed's order "drain, then copy" becomes "copy at the cut, in the stream": the cut travels
// in order behind the records before it (PAIR_CG_CUT), so the secondary takes the copy the moment
// it stands at the cut and goes on applying, and no stage waits for the slowest member's drain
// before another can continue (the copy it takes is the same one).
//
// Limits: ready from every slave within maxCoordinationMs of the first prepare (and each slave
// releases its hold by itself at that limit), every copy within maxDrainMs of the run (after
// drainOverrideAfter consecutive drain timeouts one cycle gets overrideDrainMs instead, IBM's
// override), cycleIntervalMs between cycles (retryIntervalMs at least after a failure, so a group
// that cannot form does not spin). On a timeout or any failure the cycle aborts: the holds
// release, the fences lift, nothing is lost (every write is still in its journal and ships in
// order) and the copies of the last formed cycle stay the recoverable ones.
//
// Cycle ids grow across master restarts without any saved state: each is at least the wall time
// in ms times 1000. The last formed cycle is saved nowhere either: a master that lost it sends
// formed 0 (the secondaries then delete nothing) until a cycle's answers show a cycle every
// member holds, which is as good as formed (copies.ts).

import { EventEmitter } from 'node:events';

import { LINK_ERROR_CODES } from '../errors';
import { type Clock, type TimerHandle, allSettledWithin } from '../runtime/clock';
import type { LinkLogger } from '../transport/link';
import { LatencyHistogram } from '../replication/pair-volume';
import type { Cut, CycleResult, Drained, Prepare, Run } from './messages';
import { newestCommonCycle } from './recover';
import { type CgroupLimits, type CycleFailure, controllersOf } from './types';

/** How the master reaches each controller of the group (itself included). */
export interface MasterTransport {
  prepare(controller: string, message: Prepare, timeoutMs: number): Promise<Cut[]>;
  run(controller: string, message: Run, timeoutMs: number): Promise<Drained>;
  result(controller: string, message: CycleResult): void;
}

/** Least pause after a failed cycle. */
export const RETRY_INTERVAL_MS = 250;

export type MasterPhase = 'idle' | 'preparing' | 'draining' | 'stopped';

/** A cycle's outcome, as the master emits it ('cycle'). */
export interface CycleOutcome {
  group: string;
  cycle: number;
  formed: boolean;
  reason: CycleFailure | null;
  detail: string;
  coordinationMs: number;
  drainMs: number;
}

/** `timeout`: what a request that got no answer within the phase's limit means (the limit passed, not the link). */
function failureOf(error: unknown, timeout: CycleFailure): CycleFailure {
  const code = (error as { remoteCode?: string }).remoteCode ?? (error as { code?: string }).code ?? '';
  if (code === 'ERR_CGROUP_NOT_READY') return 'not-ready';
  if (code === 'ERR_LINK_TIMEOUT' && (error as { remoteCode?: string }).remoteCode === undefined) return timeout;
  if ((LINK_ERROR_CODES as readonly string[]).includes(code)) return 'link-down';
  return 'slave-error';
}

/** The master side of one group. */
export class CgroupMaster extends EventEmitter {
  private readonly controllers: string[];
  private phase: MasterPhase = 'idle';
  private cycle = 0;
  private lastCycle = 0;
  private lastFormed = 0;
  private consistencyTimeMs: number | null = null;
  private lastFailure: { cycle: number; reason: CycleFailure; detail: string; timeMs: number } | null = null;
  private consecutiveDrainTimeouts = 0;
  private overrideArmed = false;
  /** The override was used since the last formed cycle (once per streak of failures). */
  private overriddenThisStreak = false;
  overridesUsed = 0;
  private timer: TimerHandle | undefined;
  private running = false;
  private stopped = false;
  readonly counts = { cycles: 0, formed: 0, failed: 0, byReason: {} as Record<string, number> };
  /** First prepare sent to the last ready received, per cycle that got every ready. */
  readonly coordination = new LatencyHistogram();
  /** Run sent to the last copy reported, per formed cycle. */
  readonly drain = new LatencyHistogram();

  constructor(
    readonly group: string,
    relationships: Parameters<typeof controllersOf>[0],
    readonly limits: CgroupLimits,
    private readonly transport: MasterTransport,
    private readonly clock: Clock,
    private readonly log: LinkLogger,
  ) {
    super();
    this.controllers = controllersOf(relationships);
  }

  get isRunning(): boolean {
    return this.running;
  }

  /** Starts cycling (idempotent). */
  start(): void {
    if (this.stopped || this.running) return;
    this.running = true;
    this.schedule(0);
  }

  /** Stops cycling; a cycle in progress ends with its next step. */
  stop(): void {
    this.running = false;
    this.timer?.cancel();
    this.timer = undefined;
  }

  /** Stops for good (the controller closes). */
  close(): void {
    this.stop();
    this.stopped = true;
    this.phase = 'stopped';
  }

  private schedule(delayMs: number): void {
    this.timer?.cancel();
    this.timer = this.clock.setTimer(() => {
      this.timer = undefined;
      if (!this.running) return;
      this.runCycle().catch((error: unknown) => {
        this.log.error({ group: this.group, err: String((error as Error)?.stack ?? error) }, `consistency group ${this.group}: a cycle failed unexpectedly`);
        if (this.running) this.schedule(Math.max(this.limits.cycleIntervalMs, RETRY_INTERVAL_MS));
      });
    }, delayMs, { unref: true });
  }

  /** Runs one cycle now (a test and `group cycle` hook); resolves with its outcome. */
  async runCycle(): Promise<CycleOutcome> {
    if (this.phase === 'preparing' || this.phase === 'draining') throw new Error(`consistency group ${this.group}: a cycle is in progress`);
    const cycle = Math.max(this.lastCycle + 1, Math.floor(this.clock.wallTimeMs()) * 1000);
    this.lastCycle = cycle;
    this.cycle = cycle;
    this.counts.cycles++;
    const formed = this.lastFormed;
    const cutTimeMs = this.clock.wallTimeMs();
    const started = this.clock.nowMs();
    const { maxCoordinationMs } = this.limits;
    this.phase = 'preparing';
    const prepared = await allSettledWithin(this.clock,
      this.controllers.map((controller) => this.transport.prepare(controller, { group: this.group, cycle, formed, holdMs: maxCoordinationMs }, maxCoordinationMs)),
      maxCoordinationMs);
    if (prepared === 'timeout') return this.fail(cycle, 'coordination-timeout', `not every slave was ready within ${maxCoordinationMs} ms`, 0, 0);
    const refused = prepared.findIndex((entry) => entry.status === 'rejected');
    if (refused >= 0) {
      const error = (prepared[refused] as PromiseRejectedResult).reason;
      return this.fail(cycle, failureOf(error, 'coordination-timeout'), `${this.controllers[refused]}: ${(error as Error)?.message ?? String(error)}`, 0, 0);
    }
    const coordinationMs = this.clock.nowMs() - started;
    this.coordination.record(coordinationMs / 1000);
    const drainLimit = this.overrideArmed ? this.limits.overrideDrainMs : this.limits.maxDrainMs;
    const overriding = this.overrideArmed;
    if (overriding) {
      this.overrideArmed = false;
      this.overriddenThisStreak = true;
      this.overridesUsed++;
    }
    this.phase = 'draining';
    const runStarted = this.clock.nowMs();
    // The slaves apply the drain limit themselves; the master's own is a little longer, so a
    // slave's answer (with its holdings) usually arrives.
    const drained = await allSettledWithin(this.clock,
      this.controllers.map((controller) => this.transport.run(controller, { group: this.group, cycle, drainMs: drainLimit }, drainLimit + 1000)),
      drainLimit + 1000);
    const drainMs = this.clock.nowMs() - runStarted;
    if (drained === 'timeout') return this.fail(cycle, 'drain-timeout', `not every slave answered within ${drainLimit} ms`, coordinationMs, drainMs);
    this.learnFormed(drained);
    for (const [index, entry] of drained.entries()) {
      const controller = this.controllers[index] as string;
      if (entry.status === 'rejected') return this.fail(cycle, failureOf(entry.reason, 'drain-timeout'), `${controller}: ${(entry.reason as Error)?.message ?? String(entry.reason)}`, coordinationMs, drainMs);
      if (!entry.value.ok) {
        const reason: CycleFailure = entry.value.reason.startsWith('drain-timeout') ? 'drain-timeout' : entry.value.reason.startsWith('stale') ? 'coordination-timeout' : 'copy-failed';
        return this.fail(cycle, reason, `${controller}: ${entry.value.reason}`, coordinationMs, drainMs);
      }
    }
    // Formed: every member's copy of this cycle exists.
    this.lastFormed = cycle;
    this.consistencyTimeMs = cutTimeMs;
    this.consecutiveDrainTimeouts = 0;
    this.overriddenThisStreak = false;
    this.counts.formed++;
    this.drain.record(drainMs / 1000);
    this.phase = 'idle';
    this.broadcast({ group: this.group, cycle, formed: true, reason: '', consistencyTimeMs: cutTimeMs });
    const outcome: CycleOutcome = { group: this.group, cycle, formed: true, reason: null, detail: '', coordinationMs, drainMs };
    this.emit('cycle', outcome);
    if (this.running) this.schedule(this.limits.cycleIntervalMs);
    return outcome;
  }

  /** A master that lost its last formed cycle learns it from what every member holds. */
  private learnFormed(drained: PromiseSettledResult<Drained>[]): void {
    const members: { holdings: number[] }[] = [];
    for (const entry of drained) {
      if (entry.status !== 'fulfilled') return;
      for (const member of entry.value.members) members.push({ holdings: member.holdings });
    }
    if (members.length === 0 || members.some((member) => member.holdings.length === 0)) return;
    const common = newestCommonCycle(members);
    if (common !== null && common > this.lastFormed && common < this.cycle) this.lastFormed = common;
  }

  private fail(cycle: number, reason: CycleFailure, detail: string, coordinationMs: number, drainMs: number): CycleOutcome {
    this.counts.failed++;
    this.counts.byReason[reason] = (this.counts.byReason[reason] ?? 0) + 1;
    this.lastFailure = { cycle, reason, detail, timeMs: this.clock.wallTimeMs() };
    if (reason === 'drain-timeout') {
      this.consecutiveDrainTimeouts++;
      if (this.limits.drainOverrideAfter > 0 && this.consecutiveDrainTimeouts >= this.limits.drainOverrideAfter && !this.overriddenThisStreak) this.overrideArmed = true;
    } else {
      this.consecutiveDrainTimeouts = 0;
    }
    this.phase = this.stopped ? 'stopped' : 'idle';
    this.log.warn({ group: this.group, cycle, reason, detail }, `consistency group ${this.group}: cycle ${cycle} not formed (${reason}: ${detail})`);
    this.broadcast({ group: this.group, cycle, formed: false, reason: `${reason}: ${detail}`, consistencyTimeMs: this.consistencyTimeMs ?? 0 });
    const outcome: CycleOutcome = { group: this.group, cycle, formed: false, reason, detail, coordinationMs, drainMs };
    this.emit('cycle', outcome);
    if (this.running) this.schedule(Math.max(this.limits.cycleIntervalMs, RETRY_INTERVAL_MS));
    return outcome;
  }

  private broadcast(message: CycleResult): void {
    for (const controller of this.controllers) {
      try {
        this.transport.result(controller, message);
      } catch {
        // The link is down: the slave's hold ended by its own limit; its status shows the last result it got.
      }
    }
  }

  status(): Record<string, unknown> {
    const now = this.clock.wallTimeMs();
    return {
      role: 'master',
      controllers: this.controllers,
      running: this.running,
      phase: this.phase,
      cycle: this.cycle,
      lastFormedCycle: this.lastFormed,
      consistencyTime: this.consistencyTimeMs === null ? null : new Date(this.consistencyTimeMs).toISOString(),
      rpoSeconds: this.consistencyTimeMs === null ? null : Math.max(0, (now - this.consistencyTimeMs) / 1000),
      lastFailure: this.lastFailure === null ? null : { ...this.lastFailure, time: new Date(this.lastFailure.timeMs).toISOString() },
      counts: { cycles: this.counts.cycles, formed: this.counts.formed, failed: this.counts.failed, byReason: { ...this.counts.byReason } },
      consecutiveDrainTimeouts: this.consecutiveDrainTimeouts,
      drainOverride: { armed: this.overrideArmed, used: this.overridesUsed },
      coordination: this.coordination.toJSON(),
      drain: this.drain.toJSON(),
      limits: { ...this.limits },
    };
  }
}
