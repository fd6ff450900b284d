// Notes on the design
// -------------------
// One seeded schedule of a pair's life on the simulator, checked against the model of
// pair-invariants.ts. It sits above the controller (it drives Controllers), like mesh.ts, so
// that a `blockmirror sim` command can run it as the tests do.
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
// The schedule: `steps` operations drawn from the seed, each followed by a little virtual time:
// host writes, zeroes and trims through controller.exportVolume('vol0') (a PairVolume) on
// whichever controller accepts host writes; link drops, one-way and two-way partitions, delays,
// bandwidth caps and heals; crashes (controller.crash(), then network.crash(id)) and restarts
// (network.restart(id), a new Controller with the same options); operator suspend and resume;
// takeover on the secondary (after waiting for its link to go down when the primary is cut off
// or dead), failback, and resolve after a split brain. Then everything is healed, restarted and
// resumed, split brains resolved, and the clock runs until every pair is mirroring with no lag
// (bounded in virtual time).
//
// The model (pair-invariants.ts): a lineage per controller while it is a primary, started from
// a snapshot of its image at the instant it became one (the PairManager's 'role' event is
// synchronous with the promotion, and host writes happen only in steps, never while the clock
// runs). A restart keeps the lineage (the image survives); a demotion ends it. A write counts as
// acknowledged-on-the-secondary (what a sync takeover must keep) when its ack point resolved and
// the pair guarantees it: with fence 'data' every acknowledgement (the write is never
// acknowledged while missing from the secondary, docs/pairs.md); with fence 'never' only one
// resolved while the pair was mirroring (after a link timeout it acknowledges local writes by
// design). Checked: after each step, every secondary that says consistent and mirroring is a
// write-order prefix of its primary's lineage, and no side stays copying/resyncing past the
// bound while its link is up and unfaulted; at each sync takeover, the acknowledged writes;
// at each handover, the new primary equals the old one; at the end, the sides are identical and
// the primary holds its lineage's last image.
//
// Determinism: every consumer of chance has its own fork of the seed (the network, each
// controller incarnation, the schedule), every action happens at a virtual time, so a seed
// replays exactly.
//
// Event lists: every step is recorded as a ScheduleEvent (its operation, the raw 32-bit draws
// it made, the virtual ms after it), and the result carries the list; `events` replays a list
// instead of drawing (ScheduleChoices: a step reads its own draws in order, then a fork named
// after its place), so a list from a seeded run replays it line for line and a shortened list
// (shrink.ts) is a schedule of its own that replays identically. schedule-spec.ts writes lists
// down; test/scenario/regressions/ holds the permanent ones.
//
// Costs: the clock asks quiesced() after every timer, so it reads state getters and one pair's
// status, never a manager's status() (which formats every pair); a check after a step reads each
// controller's status once. The end of a run stops each controller as a crash would (no
// graceful link close, no flush: nothing is checked after it) and then closes its pairs and
// volume itself, so nothing is left to finalizers. Errors: what the checks find is returned as sentences, never thrown; an
// exception of the pair code is caught and returned as a violation too (with its stack).

import { Controller } from '../controller/controller';
import type { ControllerVolumeSpec } from '../controller/volumes';
import type { PairMutation, PairRoleEvent, PairSpec } from '../replication/pairs';
import type { PairVolume } from '../replication/pair-volume';
import type { PrimaryPair } from '../replication/primary-pair';
import { SeededRandom } from '../runtime/random';
import { Region } from '../storage/region';
import { SnapshotStore } from '../storage/snapshot';
import { Volume } from '../storage/volume';
import type { LinkLogger } from '../transport/link';
import { SimNetwork } from './network';
import {
  Lineage,
  checkAcknowledgedPresent,
  checkCoveredThrough,
  checkIdentical,
  checkPrimaryModel,
  checkTransientBound,
  checkWriteOrderPrefix,
  decodeImage,
  fillBlocks,
} from './pair-invariants';
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

/** What a schedule step does; the first draw of a seeded step picks it (see OPERATIONS). */
export type ScheduleOperation = 'writes' | 'zero' | 'trim' | 'lockstep' | 'link-fault' | 'heal' | 'crash' | 'restart'
  | 'suspend' | 'resume' | 'takeover' | 'failback' | 'resolve';

/** The operations by the roll (0..99) below which each is drawn, in order. */
export const OPERATIONS: readonly { operation: ScheduleOperation; below: number }[] = Object.freeze([
  { operation: 'writes', below: 40 }, { operation: 'zero', below: 44 }, { operation: 'trim', below: 47 },
  { operation: 'lockstep', below: 50 }, { operation: 'link-fault', below: 62 }, { operation: 'heal', below: 69 },
  { operation: 'crash', below: 74 }, { operation: 'restart', below: 82 }, { operation: 'suspend', below: 85 },
  { operation: 'resume', below: 88 }, { operation: 'takeover', below: 93 }, { operation: 'failback', below: 96 },
  { operation: 'resolve', below: 100 },
]);

/**
 * One step of a schedule as it can be replayed alone: the operation, the raw 32-bit draws it
 * made (which controller, which blocks, which fault; a replay reads them in the same order, so
 * a step means the same wherever the state lets it), and the virtual ms run after it. `trace`
 * is what the step printed when it was recorded (for people; a replay ignores it).
 */
export interface ScheduleEvent {
  operation: ScheduleOperation;
  draws: number[];
  afterMs: number;
  trace?: string[];
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

/** What one schedule found. */
export interface PairScheduleResult {
  seed: number;
  mode: 'sync' | 'async';
  fanOut: boolean;
  fence: 'never' | 'data';
  /** Violations of the invariants (empty: the schedule passed). */
  violations: string[];
  /** One line per operation and per finding ("<virtual ms> <what>"). */
  trace: string[];
  counters: PairScheduleCounters;
  /** Controllers in the run (2, or more for a fan-out). */
  controllers: number;
  /** Everything that decided the run, as a replayable list (schedule-spec.ts). */
  setup: { blockCount: number; blockBytes: number; journalCapacityBytes: number; stepMaxMs: number; transientBoundMs: number; quiesceMaxMs: number };
  events: ScheduleEvent[];
  tail: number[];
}

/**
 * The schedule's source of choices. Seeded: 32-bit draws from the seed's 'schedule' fork, each
 * kept in the current bucket (a step's event, or the tail); `int()` is SeededRandom.int() on
 * them, so recording changes no draw. Replayed: a step's recorded draws in order, then (a step
 * whose state asks for more than it recorded) draws from a fork named after its place in the
 * list, so a shortened list still replays identically on every run.
 */
class ScheduleChoices {
  private bucket: number[] = [];
  private queue: readonly number[] = [];
  private queueIndex = 0;
  private fallback: SeededRandom | undefined;

  constructor(private readonly source: SeededRandom, private readonly replaying: boolean) {}

  /** Starts a bucket: draws go there (seeded) or come from `recorded` (replayed). */
  begin(recorded: readonly number[], fallbackLabel: string): number[] {
    this.bucket = [];
    this.queue = recorded;
    this.queueIndex = 0;
    this.fallback = this.replaying ? this.source.fork(fallbackLabel) : undefined;
    return this.bucket;
  }

  int(bound: number): number {
    if (!Number.isInteger(bound) || bound < 1 || bound > 2 ** 32) throw new RangeError(`bound must be an integer from 1 to 2^32, got ${bound}`);
    let draw: number;
    if (!this.replaying) draw = this.source.uint32();
    else if (this.queueIndex < this.queue.length) draw = this.queue[this.queueIndex++] as number;
    else draw = (this.fallback as SeededRandom).uint32();
    this.bucket.push(draw);
    return Math.floor((draw / 2 ** 32) * bound);
  }
}

/** Link timing for controllers on the simulated network: a dead peer is noticed in 250 ms. */
export const SIM_LINK_TUNING = Object.freeze({
  heartbeatIntervalMs: 50, deadPeerTimeoutMs: 250, handshakeTimeoutMs: 250, connectTimeoutMs: 250,
  reconnectInitialDelayMs: 20, reconnectMaxDelayMs: 200,
});
const TUNING = SIM_LINK_TUNING;
const VOLUME = 'vol0';

type Id = string;

/** Controller ids in order: the first is the declared primary of every pair. */
export const CONTROLLER_IDS: readonly string[] = Object.freeze(['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h']);

interface PairLink {
  pair: string;
  primary: Id;
  secondary: Id;
}

let scheduleCounter = 0;

/** Runs one schedule; never throws for what it finds. */
export async function runPairSchedule(options: PairScheduleOptions): Promise<PairScheduleResult> {
  const schedule = new PairSchedule(options);
  try {
    await schedule.run();
  } catch (error) {
    schedule.violation(`the schedule threw: ${String((error as Error)?.stack ?? error)}`);
  } finally {
    await schedule.dispose();
  }
  return schedule.result();
}

class PairSchedule {
  private readonly seed: number;
  private readonly mode: 'sync' | 'async';
  private readonly fanOut: boolean;
  private readonly fence: 'never' | 'data';
  private readonly steps: number;
  private readonly blockCount: number;
  private readonly blockBytes: number;
  private readonly capacityBytes: number;
  private readonly journalCapacityBytes: number;
  private readonly transientBoundMs: number;
  private readonly quiesceMaxMs: number;
  private readonly stepMaxMs: number;
  private readonly clock = new SimClock();
  private readonly random: SeededRandom;
  private readonly choose: ScheduleChoices;
  private readonly replay: readonly ScheduleEvent[] | undefined;
  private readonly events: ScheduleEvent[] = [];
  private tail: number[] = [];
  private readonly network: SimNetwork;
  private readonly ids: Id[];
  private readonly links: PairLink[];
  private readonly names = new Map<Id, string>();
  private readonly controllers = new Map<Id, Controller | undefined>();
  private readonly incarnations = new Map<Id, number>();
  private readonly lineages = new Map<Id, Lineage>();
  /** Lasting network faults per host pair ('a|b'). */
  private readonly faults = new Map<string, Set<string>>();
  /** Per pair side: since when its link has been seen up and unfaulted. */
  private readonly cleanSince = new Map<string, number>();
  private readonly violations: string[] = [];
  private readonly trace: string[] = [];
  private readonly logger: LinkLogger;
  private nextWriteId = 1;
  readonly counters: PairScheduleCounters = {
    writes: 0, acknowledged: 0, zeroes: 0, trims: 0, faults: 0, heals: 0, crashes: 0, restarts: 0, suspends: 0, resumes: 0,
    takeovers: 0, failbacks: 0, resolves: 0, splitBrains: 0, refused: 0, prefixChecks: 0, takeoverChecks: 0,
    lockstepCalls: 0, lockstepDone: 0, lockstepChecks: 0, virtualMs: 0,
  };

  constructor(private readonly options: PairScheduleOptions) {
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

  // ---- the world ---------------------------------------------------------------------------------

  private now(): number {
    return Math.round(this.clock.nowMs() - this.startMs);
  }

  private readonly startMs = this.clock.nowMs();

  private note(text: string): void {
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

  private async startController(id: Id): Promise<void> {
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

  private controller(id: Id): Controller | undefined {
    return this.controllers.get(id);
  }

  private host(id: Id): PairVolume | undefined {
    return this.controller(id)?.exportVolume(VOLUME) as PairVolume | undefined;
  }

  private isPrimary(id: Id): boolean {
    return this.host(id)?.replicated !== undefined;
  }

  private image(id: Id): Buffer {
    const volume = this.controller(id)?.volume(VOLUME) as Volume;
    const data = Buffer.alloc(this.capacityBytes);
    volume.read(0, data);
    return data;
  }

  /** The block values of a controller's image, read into one buffer the schedule reuses (they are decoded at once). */
  private values(id: Id): Int32Array {
    const volume = this.controller(id)?.volume(VOLUME) as Volume;
    this.valuesScratch ??= Buffer.allocUnsafe(this.capacityBytes);
    volume.read(0, this.valuesScratch);
    return decodeImage(this.valuesScratch, this.blockBytes);
  }

  private valuesScratch: Buffer | undefined;

  private side(id: Id, pair: string): Record<string, unknown> | undefined {
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

  private cached<T>(body: () => T): T {
    if (this.statusCache !== undefined) return body();
    this.statusCache = new Map();
    try {
      return body();
    } finally {
      this.statusCache = undefined;
    }
  }

  private alive(): Id[] {
    return this.ids.filter((id) => this.controllers.get(id) !== undefined);
  }

  private pick<T>(items: readonly T[]): T | undefined {
    return items.length === 0 ? undefined : items[this.choose.int(items.length)];
  }

  private hostKey(x: string, y: string): string {
    return x < y ? `${x}|${y}` : `${y}|${x}`;
  }

  private faulted(x: string, y: string): boolean {
    return (this.faults.get(this.hostKey(x, y))?.size ?? 0) > 0;
  }

  private addFault(x: Id, y: Id, kind: string): void {
    const key = this.hostKey(x, y);
    let set = this.faults.get(key);
    if (set === undefined) this.faults.set(key, (set = new Set()));
    set.add(kind);
    this.counters.faults++;
  }

  /** Runs the clock until `done` settles (or `maxMs` passes); returns the outcome. */
  private async settle<T>(promise: Promise<T>, maxMs = 10_000): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
    let outcome: { ok: true; value: T } | { ok: false; error: unknown } | undefined;
    promise.then((value) => { outcome = { ok: true, value }; }, (error: unknown) => { outcome = { ok: false, error }; });
    await this.clock.runUntil(() => outcome !== undefined, { maxTimeMs: maxMs });
    return outcome ?? { ok: false, error: new Error(`not settled within ${maxMs} ms`) };
  }

  private code(error: unknown): string {
    return (error as { code?: string })?.code ?? (error as Error)?.message ?? String(error);
  }

  // ---- operations ------------------------------------------------------------------------------

  /**
   * A lockstep call on the controller that takes host writes (no random draw: the schedule's
   * other operations stay as they were): when it answers done, every write issued before it must
   * be on every receiver of the volume's pairs, at that instant.
   */
  private startLockstep(): void {
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
  private hostWrite(kind: 'write' | 'zero' | 'trim'): void {
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

  private async crash(): Promise<void> {
    const id = this.pick(this.alive());
    if (id === undefined) return;
    this.note(`crash ${id}`);
    (this.controller(id) as Controller).crash();
    this.network.crash(id);
    this.controllers.set(id, undefined);
    this.counters.crashes++;
  }

  private async restart(id: Id): Promise<void> {
    this.note(`restart ${id}`);
    this.network.restart(id);
    await this.startController(id);
    this.counters.restarts++;
  }

  private linkFault(): void {
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

  private healAll(): void {
    this.note('heal all');
    this.network.healAll();
    for (const x of this.ids) for (const y of this.ids) if (x !== y) this.network.clearLink(x, y);
    this.faults.clear();
    this.counters.heals++;
  }

  private suspendOrResume(suspend: boolean): void {
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
  private async takeover(): Promise<void> {
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

  /** A drained handover: the new primary started from exactly the old one's image. */
  private checkHandover(oldLineage: Lineage, position: number, lineage: Lineage, what: string): void {
    const expected = oldLineage.imageAt(position);
    for (const text of checkPrimaryModel(new Lineage(oldLineage.owner, expected), lineage.base, `${what}: the new primary ${lineage.owner}`)) this.violation(text);
  }

  private async failback(): Promise<void> {
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

  private async resolve(): Promise<boolean> {
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

  // ---- checks ----------------------------------------------------------------------------------

  private splitSeen = false;

  /** After a step: consistent secondaries are prefixes; no side overstays a transient state. */
  private checkStep(): void {
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
  private quiesced(): boolean {
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

  private describe(): string {
    return this.cached(() => this.describeCached());
  }

  private describeCached(): string {
    return this.links.map((link) => [link.primary, link.secondary].map((id) => {
      const status = this.side(id, link.pair);
      return status === undefined ? `${link.pair}@${id}: down` : `${link.pair}@${id}: ${String(status.role)} ${String(status.state)} (${String(status.reason)}) ${String(status.consistency)} link ${String(status.link)}` +
        (status.lag === undefined ? '' : ` lag ${JSON.stringify(status.lag)}`);
    }).join('; ')).join(' | ');
  }

  // ---- the run ---------------------------------------------------------------------------------

  async run(): Promise<void> {
    // The secondaries first, as a site comes up.
    for (const id of [...this.ids].reverse()) await this.startController(id);
    this.note(`start: ${this.mode}${this.mode === 'sync' ? ` fence ${this.fence}` : ''}${this.fanOut ? (this.ids.length === 3 ? ' fan-out' : ` fan-out to ${this.ids.length - 1}`) : ''}, ${this.blockCount} blocks, journal ${this.journalCapacityBytes} bytes`);
    await this.clock.runUntil(() => this.quiesced(), { maxTimeMs: 2000 });
    for (let step = 0; step < this.steps; step++) {
      const recorded = this.replay?.[step];
      const draws = this.choose.begin(recorded?.draws ?? [], `replay-${step}`);
      const traceFrom = this.trace.length;
      let operation: ScheduleOperation;
      if (recorded !== undefined) operation = recorded.operation;
      else {
        const roll = this.choose.int(100);
        draws.length = 0; // the roll is the operation's name in the event
        operation = (OPERATIONS.find((entry) => roll < entry.below) as { operation: ScheduleOperation }).operation;
      }
      await this.step(operation);
      const event: ScheduleEvent = { operation, draws: [...draws], afterMs: 0 };
      this.choose.begin([], 'after');
      event.afterMs = recorded?.afterMs ?? this.choose.int(this.stepMaxMs + 1);
      this.events.push(event);
      await this.clock.runFor(event.afterMs);
      this.checkStep();
      event.trace = this.trace.slice(traceFrom);
    }
    this.tail = this.choose.begin(this.options.tail ?? [], 'replay-tail');
    await this.quiesce();
  }

  private async step(operation: ScheduleOperation): Promise<void> {
    switch (operation) {
      case 'writes': {
        const count = 1 + this.choose.int(6);
        for (let index = 0; index < count; index++) this.hostWrite('write');
        return;
      }
      case 'zero': return this.hostWrite('zero');
      case 'trim': return this.hostWrite('trim');
      case 'lockstep':
        this.startLockstep();
        await this.clock.runFor(50 + this.choose.int(300));
        return;
      case 'link-fault': return this.linkFault();
      case 'heal': return this.healAll();
      case 'crash': return this.crash();
      case 'restart': {
        const id = this.pick(this.ids.filter((candidate) => this.controllers.get(candidate) === undefined));
        if (id !== undefined) await this.restart(id);
        return;
      }
      case 'suspend': return this.suspendOrResume(true);
      case 'resume': return this.suspendOrResume(false);
      case 'takeover': if (!this.fanOut) await this.takeover(); return;
      case 'failback': if (!this.fanOut) await this.failback(); return;
      case 'resolve': await this.resolve(); return;
      default: throw new TypeError(`unknown schedule operation ${JSON.stringify(operation)}`);
    }
  }

  private async quiesce(): Promise<void> {
    this.healAll();
    for (const id of this.ids) if (this.controllers.get(id) === undefined) await this.restart(id);
    const startMs = this.clock.nowMs();
    while (!this.quiesced()) {
      if (this.clock.nowMs() - startMs > this.quiesceMaxMs) {
        this.violation(`not quiesced within ${this.quiesceMaxMs} ms of healing: ${this.describe()}`);
        return;
      }
      await this.clock.runUntil(() => this.quiesced(), { maxTimeMs: 100 });
      this.checkStep();
      if (this.quiesced()) break;
      // What an operator does after a storm: resolve split brains, resume what waits for resume.
      if (await this.resolve()) continue;
      for (const link of this.links) {
        for (const id of [link.primary, link.secondary]) {
          const status = this.side(id, link.pair);
          if (status?.role === 'primary' && status.state === 'suspended' && status.link === 'up' && (status.reason === 'operator' || status.reason === 'secondary-error')) {
            try {
              this.controller(id)?.pairs?.primary(link.pair).resume();
              this.counters.resumes++;
              this.note(`resume ${link.pair} on ${id} (${String(status.reason)})`);
            } catch (error) {
              this.note(`resume ${link.pair} on ${id} refused: ${this.code(error)}`);
            }
          }
        }
      }
    }
    this.note(`quiesced: ${this.describe()}`);
    this.checkStep();
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

  async dispose(): Promise<void> {
    this.counters.virtualMs = this.now();
    for (const id of this.ids) {
      const controller = this.controllers.get(id);
      this.controllers.set(id, undefined);
      if (controller === undefined) continue;
      // The run is over and nothing more is checked, so the controller stops as a SIGKILL
      // would (no graceful link close, no flush: real waits that are most of a short
      // schedule's close), then what it held is released here, not left to finalizers: its
      // pairs' journals, bitmaps and metadata, and its volume.
      const volume = controller.volume(VOLUME);
      const pairs = controller.pairs;
      controller.crash();
      try {
        await pairs?.close();
      } catch {
        // Best effort; the regions are unlinked below either way.
      }
      try {
        await volume?.close();
      } catch {
        // As above.
      }
    }
    for (const id of this.ids) {
      const name = this.names.get(id) as string;
      Volume.unlink({ name });
      // The store of a resync image (keepResyncImages) outlives its snapshots: without this, a
      // 100,000-schedule run left thousands of store regions in /dev/shm.
      SnapshotStore.unlink({ name });
      for (const link of this.links) Region.unlink('shared', `blockmirror.pair.${name}.${link.pair}`);
    }
  }

  result(): PairScheduleResult {
    return {
      seed: this.seed, mode: this.mode, fanOut: this.fanOut, fence: this.fence,
      violations: [...this.violations], trace: [...this.trace], counters: { ...this.counters },
      controllers: this.ids.length,
      setup: { blockCount: this.blockCount, blockBytes: this.blockBytes, journalCapacityBytes: this.journalCapacityBytes,
        stepMaxMs: this.stepMaxMs, transientBoundMs: this.transientBoundMs, quiesceMaxMs: this.quiesceMaxMs },
      events: this.events.map((event) => ({ ...event, draws: [...event.draws] })), tail: [...this.tail],
    };
  }
}
