// Notes on the design
// -------------------
// The world of a pair schedule (pair-schedule.ts) and what every layer above reads of it: the
// simulated clock and network, the controllers and their incarnations, the model's lineages,
// the lasting faults, the trace and the violations. The schedule is a stack of classes, each in
// its own file and each adding one concern to the one below: PairScheduleWorld (this file) <-
// PairScheduleChecks (pair-schedule-checks.ts, the invariants) <- PairScheduleOperations
// (pair-schedule-operations.ts, what a step does) <- PairSchedule (pair-schedule.ts, the run
// loop and the result). They share this state as protected members (private where one layer
// alone uses it); the fields are set here, at construction, and changed by the layers above.
//
// The world: two controllers, `a` (declared primary) and `b` (declared secondary) of pair `p0`
// on volume `vol0`, or K with `controllers: K` (a fan-out: `a` is also the primary of `p1` to
// `c`, `p2` to `d`, ...; `fanOut` is K = 3; takeover, failback and resolve of roles only with
// two). Volumes are
// small shared-memory volumes (unique names; unlinked at the end, also on failure), so a
// controller.crash() keeps their bytes, tracking bitmaps and pair metadata, as a SIGKILL would,
// and a restart builds a new Controller over the same regions. Link tuning is tight (heartbeat
// 50 ms, dead peer 250 ms), journals small (a slow link fills them: journal-full).
//
// Lineages (the model of pair-invariants.ts): a lineage per controller while it is a primary,
// started from a snapshot of its image at the instant it became one (the PairManager's 'role'
// event is synchronous with the promotion, and host writes happen only in steps, never while
// the clock runs). A restart keeps the lineage (the image survives); a demotion ends it.
//
// Determinism: every consumer of chance has its own fork of the seed (the network, each
// controller incarnation, the schedule: pair-schedule-choices.ts), every action happens at a
// virtual time, so a seed replays exactly.
//
// Costs: statuses read inside cached() come from one status() per controller (a synchronous
// check changes nothing, and status() is the costly part); values() reads an image into one
// reused buffer. Errors: the constructor throws RangeError/TypeError on bad options; what the
// run finds is recorded by violation(), never thrown.

import { Controller } from '../controller/controller';
import type { ControllerVolumeSpec } from '../controller/volumes';
import type { PairMutation, PairRoleEvent, PairSpec } from '../replication/pairs';
import type { PairVolume } from '../replication/pair-volume';
import { SeededRandom } from '../runtime/random';
import { Volume } from '../storage/volume';
import type { LinkLogger } from '../transport/link';
import { SimNetwork } from './network';
import { ScheduleChoices, type ScheduleEvent } from './pair-schedule-choices';
import { Lineage, decodeImage } from './pair-invariants';
import { SimClock } from './sim-clock';

/** Options of one schedule. */
export interface PairScheduleOptions {
  seed: number;
  mode: 'sync' | 'async';
  /** Operations before healing. @default 20 */
  steps?: number;
  /** A third controller `c`, a second secondary of `a`'s volume (no takeovers then); the same as `controllers: 3`. @default false */
  fanOut?: boolean;
  /**
   * Controllers `a`, `b`, `c`, ...: `a` is the primary of pair `p<i-1>` to the i-th of the
   * others (a fan-out; takeovers, failbacks and resolves of role only with two). From 2 to 8.
   * @default 2, or 3 with `fanOut`
   */
  controllers?: number;
  /**
   * Replays this event list (a ScheduleSpec's, see schedule-spec.ts) instead of drawing `steps`
   * operations from the seed; the seed still drives the network and the controllers.
   * @default none: drawn from the seed
   */
  events?: readonly ScheduleEvent[];
  /** With `events`: the draws of the final quiescence (resolves). @default [] */
  tail?: readonly number[];
  /** Sync only. @default drawn from the seed */
  fence?: 'never' | 'data';
  /** Blocks of each volume. @default 64 */
  blockCount?: number;
  /** @default 4096 */
  blockBytes?: number;
  /** Journal ring of each primary. @default drawn from the seed: 128 KiB or 1 MiB */
  journalCapacityBytes?: number;
  /** Longest a side may stay copying or resyncing with its link up and unfaulted. @default 3000 */
  transientBoundMs?: number;
  /** Longest the final quiescence may take, in virtual ms. @default 30000 */
  quiesceMaxMs?: number;
  /** The most virtual ms between two operations. @default 30 */
  stepMaxMs?: number;
  /** Prefix of the shared-memory names. @default 'bm-ps' */
  namePrefix?: string;
  /** Receives the controllers' log lines (a replay prints them). @default none */
  onLog?: (line: string) => void;
  /** A deliberate bug in the pair logic (the mutation check). @default none */
  mutation?: PairMutation;
}

/** Totals of one schedule. */
export interface PairScheduleCounters {
  writes: number;
  acknowledged: number;
  zeroes: number;
  trims: number;
  faults: number;
  heals: number;
  crashes: number;
  restarts: number;
  suspends: number;
  resumes: number;
  takeovers: number;
  failbacks: number;
  resolves: number;
  splitBrains: number;
  refused: number;
  prefixChecks: number;
  takeoverChecks: number;
  /** Lockstep calls started, answered done, and checked against the receivers. */
  lockstepCalls: number;
  lockstepDone: number;
  lockstepChecks: number;
  virtualMs: number;
}

/** Link timing for controllers on the simulated network: a dead peer is noticed in 250 ms. */
export const SIM_LINK_TUNING = Object.freeze({
  heartbeatIntervalMs: 50, deadPeerTimeoutMs: 250, handshakeTimeoutMs: 250, connectTimeoutMs: 250,
  reconnectInitialDelayMs: 20, reconnectMaxDelayMs: 200,
});
const TUNING = SIM_LINK_TUNING;
export const VOLUME = 'vol0';

export type Id = string;

/** Controller ids in order: the first is the declared primary of every pair. */
export const CONTROLLER_IDS: readonly string[] = Object.freeze(['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h']);

export interface PairLink {
  pair: string;
  primary: Id;
  secondary: Id;
}

let scheduleCounter = 0;

/** The world of one schedule (see the notes above); PairSchedule (pair-schedule.ts) is the class that runs it. */
export abstract class PairScheduleWorld {
  protected readonly seed: number;
  protected readonly mode: 'sync' | 'async';
  protected readonly fanOut: boolean;
  protected readonly fence: 'never' | 'data';
  protected readonly steps: number;
  protected readonly blockCount: number;
  protected readonly blockBytes: number;
  private readonly capacityBytes: number;
  protected readonly journalCapacityBytes: number;
  protected readonly transientBoundMs: number;
  protected readonly quiesceMaxMs: number;
  protected readonly stepMaxMs: number;
  protected readonly clock = new SimClock();
  private readonly random: SeededRandom;
  protected readonly choose: ScheduleChoices;
  protected readonly replay: readonly ScheduleEvent[] | undefined;
  protected readonly events: ScheduleEvent[] = [];
  protected tail: number[] = [];
  protected readonly network: SimNetwork;
  protected readonly ids: Id[];
  protected readonly links: PairLink[];
  protected readonly names = new Map<Id, string>();
  protected readonly controllers = new Map<Id, Controller | undefined>();
  private readonly incarnations = new Map<Id, number>();
  protected readonly lineages = new Map<Id, Lineage>();
  /** Lasting network faults per host pair ('a|b'). */
  protected readonly faults = new Map<string, Set<string>>();
  /** Per pair side: since when its link has been seen up and unfaulted. */
  protected readonly cleanSince = new Map<string, number>();
  protected readonly violations: string[] = [];
  protected readonly trace: string[] = [];
  private readonly logger: LinkLogger;
  protected nextWriteId = 1;
  readonly counters: PairScheduleCounters = {
    writes: 0, acknowledged: 0, zeroes: 0, trims: 0, faults: 0, heals: 0, crashes: 0, restarts: 0, suspends: 0, resumes: 0,
    takeovers: 0, failbacks: 0, resolves: 0, splitBrains: 0, refused: 0, prefixChecks: 0, takeoverChecks: 0,
    lockstepCalls: 0, lockstepDone: 0, lockstepChecks: 0, virtualMs: 0,
  };

  constructor(protected readonly options: PairScheduleOptions) {
    if (!Number.isSafeInteger(options.seed) || options.seed < 0) throw new RangeError(`seed must be a non-negative integer, got ${String(options.seed)}`);
    if (options.mode !== 'sync' && options.mode !== 'async') throw new RangeError(`mode must be 'sync' or 'async', got ${String(options.mode)}`);
    this.seed = options.seed;
    this.mode = options.mode;
    const controllers = options.controllers ?? (options.fanOut === true ? 3 : 2);
    if (!Number.isSafeInteger(controllers) || controllers < 2 || controllers > CONTROLLER_IDS.length) {
      throw new RangeError(`controllers must be an integer from 2 to ${CONTROLLER_IDS.length}, got ${String(options.controllers)}`);
    }
    if (options.fanOut === true && controllers < 3) throw new RangeError('fanOut needs at least 3 controllers');
    this.fanOut = controllers >= 3;
    this.random = new SeededRandom(options.seed);
    this.replay = options.events;
    this.choose = new ScheduleChoices(this.random.fork('schedule'), this.replay !== undefined);
    if (this.replay !== undefined && (options.mode === 'sync' ? options.fence === undefined : false)) throw new TypeError('a replayed schedule names its fence');
    if (this.replay !== undefined && options.journalCapacityBytes === undefined) throw new TypeError('a replayed schedule names its journalCapacityBytes');
    this.choose.begin([], 'setup');
    this.network = new SimNetwork({ clock: this.clock, random: this.random.fork('network'), trace: false });
    this.fence = options.mode === 'sync' ? (options.fence ?? (this.choose.int(2) === 0 ? 'data' : 'never')) : 'never';
    this.steps = this.replay?.length ?? options.steps ?? 20;
    this.blockCount = options.blockCount ?? 64;
    this.blockBytes = options.blockBytes ?? 4096;
    this.capacityBytes = this.blockCount * this.blockBytes;
    this.journalCapacityBytes = options.journalCapacityBytes ?? (this.choose.int(2) === 0 ? 128 * 1024 : 1024 * 1024);
    this.transientBoundMs = options.transientBoundMs ?? 3000;
    this.quiesceMaxMs = options.quiesceMaxMs ?? 30_000;
    this.stepMaxMs = options.stepMaxMs ?? 30;
    this.ids = CONTROLLER_IDS.slice(0, controllers);
    this.links = this.ids.slice(1).map((secondary, index) => ({ pair: `p${index}`, primary: 'a', secondary }));
    scheduleCounter++;
    for (const id of this.ids) this.names.set(id, `${options.namePrefix ?? 'bm-ps'}-${process.pid}-${scheduleCounter}-${id}`);
    const onLog = options.onLog;
    const line = (level: string) => (object: object, message?: string): void => {
      if (onLog !== undefined) onLog(`${this.now()} ${level} ${message ?? JSON.stringify(object)}`);
    };
    this.logger = { debug: () => undefined, info: line('info'), warn: line('warn'), error: line('error') };
  }

  protected now(): number {
    return Math.round(this.clock.nowMs() - this.startMs);
  }

  protected readonly startMs = this.clock.nowMs();

  protected note(text: string): void {
    this.trace.push(`${this.now()} ${text}`);
  }

  violation(text: string): void {
    const line = `${this.now()} ms: ${text}`;
    this.violations.push(line);
    this.trace.push(`${this.now()} VIOLATION ${text}`);
  }

  private build(id: Id): Controller {
    const incarnation = (this.incarnations.get(id) ?? 0) + 1;
    this.incarnations.set(id, incarnation);
    const pairs: PairSpec[] = [];
    const peers = new Set<Id>();
    for (const link of this.links) {
      const fence = this.mode === 'sync' ? { fence: this.fence } : {};
      if (link.primary === id) {
        pairs.push({ name: link.pair, mode: this.mode, volume: VOLUME, peer: link.secondary, remoteVolume: VOLUME, role: 'primary', ...fence });
        peers.add(link.secondary);
      } else if (link.secondary === id) {
        pairs.push({ name: link.pair, mode: this.mode, volume: VOLUME, peer: link.primary, remoteVolume: VOLUME, role: 'secondary', ...fence });
        peers.add(link.primary);
      }
    }
    const volume: ControllerVolumeSpec = { name: VOLUME, backing: 'shared', sharedName: this.names.get(id) as string, capacityBytes: this.capacityBytes };
    return new Controller({
      id, network: this.network.node(id), clock: this.clock, random: this.random.fork(`${id}-${incarnation}`), logger: this.logger,
      volumes: [volume],
      replication: { ...TUNING, listen: { host: id, port: 7000 } },
      peers: [...peers].map((peer) => ({ id: peer, address: { host: peer, port: 7000 } })),
      pairs,
      journal: { journalCapacityBytes: this.journalCapacityBytes },
      ...(this.options.mutation === undefined ? {} : { pairMutation: this.options.mutation }),
    });
  }

  protected async startController(id: Id): Promise<void> {
    const controller = this.build(id);
    await controller.start();
    this.controllers.set(id, controller);
    controller.pairs?.on('role', (event: PairRoleEvent) => this.onRole(id, event));
    this.syncLineages();
  }

  private onRole(id: Id, event: PairRoleEvent): void {
    this.note(`${id}: ${event.name} ${event.role} (${event.reason})`);
    this.syncLineages();
  }

  /** A controller that is a primary now gets a lineage (a snapshot of its image); one that is not loses it. */
  private syncLineages(): void {
    for (const id of this.ids) {
      const controller = this.controllers.get(id);
      if (controller === undefined) continue; // crashed: its image and lineage stay as they were
      const primary = this.isPrimary(id);
      if (primary && !this.lineages.has(id)) this.lineages.set(id, new Lineage(id, this.values(id)));
      else if (!primary && this.lineages.has(id)) this.lineages.delete(id);
    }
  }

  protected controller(id: Id): Controller | undefined {
    return this.controllers.get(id);
  }

  protected host(id: Id): PairVolume | undefined {
    return this.controller(id)?.exportVolume(VOLUME) as PairVolume | undefined;
  }

  protected isPrimary(id: Id): boolean {
    return this.host(id)?.replicated !== undefined;
  }

  protected image(id: Id): Buffer {
    const volume = this.controller(id)?.volume(VOLUME) as Volume;
    const data = Buffer.alloc(this.capacityBytes);
    volume.read(0, data);
    return data;
  }

  /** The block values of a controller's image, read into one buffer the schedule reuses (they are decoded at once). */
  protected values(id: Id): Int32Array {
    const volume = this.controller(id)?.volume(VOLUME) as Volume;
    this.valuesScratch ??= Buffer.allocUnsafe(this.capacityBytes);
    volume.read(0, this.valuesScratch);
    return decodeImage(this.valuesScratch, this.blockBytes);
  }

  private valuesScratch: Buffer | undefined;

  protected side(id: Id, pair: string): Record<string, unknown> | undefined {
    const cache = this.statusCache;
    if (cache === undefined) return this.controller(id)?.pairs?.status().find((entry) => entry.name === pair);
    let list = cache.get(id);
    if (list === undefined) cache.set(id, (list = this.controller(id)?.pairs?.status() ?? []));
    return list.find((entry) => entry.name === pair);
  }

  /**
   * Statuses read while `cache` is set come from one status() per controller: a synchronous
   * check changes nothing, and status() (every pair, generations, latency) is the costly part.
   */
  private statusCache: Map<Id, Record<string, unknown>[]> | undefined;

  protected cached<T>(body: () => T): T {
    if (this.statusCache !== undefined) return body();
    this.statusCache = new Map();
    try {
      return body();
    } finally {
      this.statusCache = undefined;
    }
  }

  protected alive(): Id[] {
    return this.ids.filter((id) => this.controllers.get(id) !== undefined);
  }

  protected pick<T>(items: readonly T[]): T | undefined {
    return items.length === 0 ? undefined : items[this.choose.int(items.length)];
  }

  private hostKey(x: string, y: string): string {
    return x < y ? `${x}|${y}` : `${y}|${x}`;
  }

  protected faulted(x: string, y: string): boolean {
    return (this.faults.get(this.hostKey(x, y))?.size ?? 0) > 0;
  }

  protected addFault(x: Id, y: Id, kind: string): void {
    const key = this.hostKey(x, y);
    let set = this.faults.get(key);
    if (set === undefined) this.faults.set(key, (set = new Set()));
    set.add(kind);
    this.counters.faults++;
  }

  /** Runs the clock until `done` settles (or `maxMs` passes); returns the outcome. */
  protected async settle<T>(promise: Promise<T>, maxMs = 10_000): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
    let outcome: { ok: true; value: T } | { ok: false; error: unknown } | undefined;
    promise.then((value) => { outcome = { ok: true, value }; }, (error: unknown) => { outcome = { ok: false, error }; });
    await this.clock.runUntil(() => outcome !== undefined, { maxTimeMs: maxMs });
    return outcome ?? { ok: false, error: new Error(`not settled within ${maxMs} ms`) };
  }

  protected code(error: unknown): string {
    return (error as { code?: string })?.code ?? (error as Error)?.message ?? String(error);
  }
}
