// Notes on the design
// -------------------
// The random scenario of the link mesh (mesh.ts): runMeshScenario() starts seeded traffic
// between every pair of controllers and a FaultInjector that draws a fault (network partitions
// both ways and one way, resets, network link settings, link-level partitions, delays and drops,
// crashes, graceful stops) every few virtual ms from its own fork of the seed, each lifted after
// a drawn duration; then it heals everything (restarting what is down), runs until quiescence
// and returns what the mesh's checker found. The same seed gives the same run, event for event.
//
// Error contract: as mesh.ts: findings are returned as sentences, misuse throws TypeError /
// RangeError.

import type { TimerHandle } from '../runtime/clock';
import { SeededRandom } from '../runtime/random';
import type { FaultSettings } from '../transport/faults';
import { DEFAULT_QUIESCENCE_TIMEOUT_MS, Mesh, type MeshCounters, type MeshOptions, checkTrafficOptions } from './mesh';
import type { LinkOptions as SimLinkOptions } from './network';

/** The faults runMeshScenario draws from. */
export type MeshFaultKind =
  | 'partition'
  | 'one-way-partition'
  | 'reset'
  | 'network-link'
  | 'link-partition'
  | 'link-delay'
  | 'link-drop'
  | 'crash'
  | 'stop';

/** Every kind but 'crash' and 'stop' (a graceful restart). */
export const MESH_NETWORK_AND_LINK_FAULTS: readonly MeshFaultKind[] = Object.freeze([
  'partition', 'one-way-partition', 'reset', 'network-link', 'link-partition', 'link-delay', 'link-drop',
]);

/** Options of runMeshScenario. */
export interface MeshScenarioOptions extends MeshOptions {
  /** Virtual milliseconds of traffic and faults; then everything is healed. */
  durationMs: number;
  /** Mean time between two sends of one controller. @default 10 */
  messageIntervalMs?: number;
  /** Chance that a send is a burst to one peer (20 to 60 messages of 1 to 2 KB). @default 0.01 */
  burstProbability?: number;
  /** Chance that a send is a request instead (echoed by the peer). @default 0.1 */
  requestProbability?: number;
  /** Mean time between two faults. @default 40 */
  faultIntervalMs?: number;
  /** The faults drawn from, uniformly. @default MESH_NETWORK_AND_LINK_FAULTS */
  faultKinds?: readonly MeshFaultKind[];
  /** How long a partition, a delay or a crash lasts at most before it is undone. @default 400 */
  maxFaultDurationMs?: number;
  /** Virtual time allowed, after healing, to become quiescent. @default 10_000 */
  quiescenceTimeoutMs?: number;
  /**
   * How link faults end after the run: Link.heal(), setFaults back to zero ('lift'), or either,
   * drawn from the seed. @default 'heal'
   */
  healLinksBy?: 'heal' | 'lift' | 'either';
}

/** What a run found. */
export interface MeshScenarioResult {
  seed: number;
  /** No failure. */
  ok: boolean;
  failures: string[];
  /** Controller events and harness actions, "<virtual ms> <text>". */
  log: string[];
  /** The network's trace. */
  trace: string[];
  counters: MeshCounters;
}

/**
 * One seeded run: a full mesh comes up; for `durationMs` every controller sends and faults are
 * injected at random times; then everything is healed (crashed controllers restarted) and the
 * clock runs until quiescence; then the checker runs. Never throws for what it finds.
 */
export async function runMeshScenario(options: MeshScenarioOptions): Promise<MeshScenarioResult> {
  if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object');
  if (typeof options.durationMs !== 'number' || !Number.isFinite(options.durationMs) || options.durationMs < 0) {
    throw new RangeError(`durationMs must be a finite number >= 0, got ${String(options.durationMs)}`);
  }
  const faultKinds = options.faultKinds ?? MESH_NETWORK_AND_LINK_FAULTS;
  if (!Array.isArray(faultKinds)) throw new TypeError('faultKinds must be an array');
  const faultIntervalMs = options.faultIntervalMs ?? 40;
  const maxFaultDurationMs = options.maxFaultDurationMs ?? 400;
  if (!Number.isSafeInteger(faultIntervalMs) || faultIntervalMs < 1) throw new RangeError(`faultIntervalMs must be an integer >= 1, got ${faultIntervalMs}`);
  if (!Number.isSafeInteger(maxFaultDurationMs) || maxFaultDurationMs < 1) {
    throw new RangeError(`maxFaultDurationMs must be an integer >= 1, got ${maxFaultDurationMs}`);
  }
  const healLinksBy = options.healLinksBy ?? 'heal';
  if (!['heal', 'lift', 'either'].includes(healLinksBy)) throw new RangeError(`healLinksBy must be 'heal', 'lift' or 'either', got ${String(healLinksBy)}`);
  const traffic = {
    meanIntervalMs: options.messageIntervalMs ?? 10,
    burstProbability: options.burstProbability ?? 0.01,
    requestProbability: options.requestProbability ?? 0.1,
  };
  checkTrafficOptions(traffic.meanIntervalMs, traffic.burstProbability, traffic.requestProbability);
  const mesh = new Mesh(options);
  try {
    await mesh.start();
    if (!(await mesh.runUntil(() => mesh.allUp(), 5_000))) {
      mesh.fail(`the mesh did not come up:\n${mesh.diagnosis()}`);
    } else {
      mesh.note('mesh up');
      mesh.startTraffic(traffic);
      const injector = new FaultInjector(mesh, mesh.clock.nowMs() + options.durationMs, faultKinds, faultIntervalMs, maxFaultDurationMs);
      injector.start();
      await mesh.clock.runUntilTime(mesh.clock.nowMs() + options.durationMs);
      mesh.stopTraffic();
      await injector.stop();
      mesh.healAll({ links: healLinksBy === 'either' ? injector.drawHealLinksBy() : healLinksBy });
      await mesh.quiesce(options.quiescenceTimeoutMs ?? DEFAULT_QUIESCENCE_TIMEOUT_MS);
    }
  } catch (error) {
    // A broken invariant in the code under test (an assertion, an invalid transition) surfaces
    // from the clock step that ran it.
    mesh.fail(`threw: ${(error as Error)?.stack ?? String(error)}`);
  }
  const failures = mesh.check();
  return { seed: mesh.seed, ok: failures.length === 0, failures: [...failures], log: mesh.log, trace: mesh.network.trace(), counters: { ...mesh.counters } };
}

/** Draws faults on the mesh's clock until stopped; undoes each after a random time. */
class FaultInjector {
  private readonly random: SeededRandom;
  private readonly timers = new Set<TimerHandle>();
  private readonly restarts = new Set<string>();
  private readonly restartPromises: Promise<void>[] = [];
  private stopped = false;

  constructor(
    private readonly mesh: Mesh,
    private readonly endMs: number,
    private readonly kinds: readonly MeshFaultKind[],
    private readonly intervalMs: number,
    private readonly maxDurationMs: number,
  ) {
    this.random = new SeededRandom(mesh.seed).fork('faults');
  }

  start(): void {
    this.scheduleNext();
  }

  /** Heal or lift, at random. */
  drawHealLinksBy(): 'heal' | 'lift' {
    return this.random.int(2) === 0 ? 'heal' : 'lift';
  }

  /** Cancels what is pending and restarts every crashed or stopped controller. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const timer of this.timers) timer.cancel();
    this.timers.clear();
    for (const id of [...this.restarts].sort()) this.restartPromises.push(this.restart(id));
    this.restarts.clear();
    await Promise.all(this.restartPromises);
  }

  /** Restarts `id`; a failure to start is a failure of the run, never an unhandled rejection. */
  private restart(id: string): Promise<void> {
    return this.mesh.restart(id).catch((error: unknown) => {
      this.mesh.fail(`controller ${id} did not restart: ${(error as Error)?.stack ?? String(error)}`);
    });
  }

  private later(delayMs: number, action: () => void): void {
    const timer = this.mesh.clock.setTimer(() => {
      this.timers.delete(timer);
      if (!this.stopped) action();
    }, delayMs);
    this.timers.add(timer);
  }

  private scheduleNext(): void {
    const delayMs = 1 + this.random.int(2 * this.intervalMs - 1);
    if (this.mesh.clock.nowMs() + delayMs >= this.endMs || this.kinds.length === 0) return;
    this.later(delayMs, () => {
      this.inject();
      this.scheduleNext();
    });
  }

  private duration(): number {
    return 1 + this.random.int(this.maxDurationMs);
  }

  /** Two different live controllers, or undefined. */
  private twoLive(): [string, string] | undefined {
    const live = this.mesh.ids.filter((id) => this.mesh.isRunning(id));
    if (live.length < 2) return undefined;
    const a = live[this.random.int(live.length)] as string;
    const others = live.filter((id) => id !== a);
    return [a, others[this.random.int(others.length)] as string];
  }

  private inject(): void {
    const mesh = this.mesh;
    const kind = this.kinds[this.random.int(this.kinds.length)] as MeshFaultKind;
    const pair = this.twoLive();
    if (pair === undefined) return;
    const [a, b] = pair;
    switch (kind) {
      case 'partition': {
        mesh.partition(a, b, 'both');
        this.later(this.duration(), () => mesh.heal(a, b, 'both'));
        return;
      }
      case 'one-way-partition': {
        mesh.partition(a, b, 'a-to-b');
        this.later(this.duration(), () => mesh.heal(a, b, 'a-to-b'));
        return;
      }
      case 'reset':
        mesh.reset(a, b);
        return;
      case 'network-link': {
        const settings: SimLinkOptions = {
          latencyMs: 1 + this.random.int(20),
          jitterMs: this.random.int(10),
          dropProbability: this.random.int(3) === 0 ? 0 : this.random.int(21) / 1000,
        };
        if (this.random.int(4) === 0) settings.bandwidthBytesPerSecond = 20_000 + this.random.int(500_000);
        mesh.setNetworkLink(a, b, settings);
        this.later(this.duration(), () => {
          mesh.note(`mesh network link ${a}->${b} default`);
          mesh.network.clearLink(a, b);
        });
        return;
      }
      case 'link-partition': {
        const direction = (['in', 'out', 'both'] as const)[this.random.int(3)] as 'in' | 'out' | 'both';
        mesh.setLinkFaults(a, b, { partition: true, direction });
        // Ended by heal(), or by lifting the partition with setFaults.
        const byHeal = this.random.int(2) === 0;
        this.later(this.duration(), () => {
          if (!mesh.isRunning(a)) return;
          if (byHeal) mesh.healLink(a, b);
          else mesh.liftLinkPartition(a, b);
        });
        return;
      }
      case 'link-delay': {
        const direction = (['in', 'out', 'both'] as const)[this.random.int(3)] as 'in' | 'out' | 'both';
        const settings: FaultSettings = { delayMs: this.random.int(150), jitterMs: this.random.int(50), direction };
        if (this.random.int(4) === 0) settings.bandwidthBytesPerSecond = 20_000 + this.random.int(500_000);
        mesh.setLinkFaults(a, b, settings);
        this.later(this.duration(), () => {
          if (mesh.isRunning(a)) mesh.healLink(a, b);
        });
        return;
      }
      case 'link-drop':
        mesh.setLinkFaults(a, b, { drop: true });
        return;
      case 'crash':
      case 'stop': {
        if (kind === 'crash') {
          mesh.crash(a);
        } else {
          this.restartPromises.push(mesh.stop(a).catch((error: unknown) => {
            mesh.fail(`controller ${a} did not stop cleanly: ${(error as Error)?.stack ?? String(error)}`);
          }));
        }
        this.restarts.add(a);
        this.later(this.duration(), () => {
          this.restarts.delete(a);
          this.restartPromises.push(this.restart(a));
        });
        return;
      }
    }
  }
}
