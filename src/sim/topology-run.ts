// Notes on the design
// -------------------
// Many controllers in one process (issue 8: "hundreds of controllers"): K controllers on the
// simulated network and clock, their pairs laid out in a topology, a seeded workload with seeded
// faults, and the pair invariants checked as the pair schedules check them (pair-invariants.ts).
// pair-schedule.ts is the deep run (2 to 8 controllers, role changes, lockstep, event lists and
// shrinking); this is the wide one.
//
// Topologies (controllers c0 .. c<K-1>, every pair async or sync, volumes in shared memory):
//   - ring:    c<i> mirrors its volume `out` to c<i+1>'s `in` (K pairs);
//   - fan-out: hubs c0, c<w+1>, c<2(w+1)>, ... each mirror `out` to the next w controllers' `in`
//              (w = degree, default 7: a volume keeps two tracking bitmaps per pair in its 16
//              bitmap slots, so one volume fans out to 7 at most); with K <= 8, c0 to all others;
//   - mesh:    c<i> mirrors `out` to c<i+1> .. c<i+degree> (volumes `in1` .. `in<degree>`; K x
//              degree pairs; every controller talks to 2 x degree others; degree default 2).
// Role changes (takeover, failback, resolve) are left to the pair schedules: here every primary
// stays a primary, so each primary volume has one lineage from the start (the model of
// pair-invariants.ts), which survives crashes (the regions do).
//
// The run: `steps` operations drawn from the seed: host writes on a random primary volume
// (1..4 blocks, 1..6 writes), link drops, partitions (both ways, one way) and delays between the
// two ends of a random pair, heals, crashes (controller.crash(), network.crash()) and restarts.
// After each step the clock runs a little and every secondary that says it is mirroring and
// consistent is checked to be a write-order prefix of its primary's lineage. Then everything is
// healed and restarted, suspensions an operator would resume are resumed, the clock runs until
// every pair mirrors with no lag (bounded), and each pair's sides are compared byte for byte, and
// each primary against its lineage.
//
// Costs: the quiescence test walks every pair, so it runs every QUIESCE_POLL_MS of virtual time,
// not after every timer (hundreds of links fire heartbeats). The end crashes every controller
// (nothing is checked after it) and releases its regions, as the pair schedules do.
//
// Errors: what the checks find is returned as sentences (violations), never thrown; an exception
// of the pair code is caught and returned as a violation with its stack; bad options are
// TypeError / RangeError.

import { Controller } from '../controller/controller';
import type { ControllerVolumeSpec } from '../controller/volumes';
import type { PairMutation, PairSpec } from '../replication/pairs';
import type { PairVolume } from '../replication/pair-volume';
import { SeededRandom } from '../runtime/random';
import { Journal } from '../storage/journal';
import { Region } from '../storage/region';
import { SnapshotStore } from '../storage/snapshot';
import { Volume } from '../storage/volume';
import { SimNetwork } from './network';
import { Lineage, checkIdentical, checkPrimaryModel, checkWriteOrderPrefix, decodeImage, fillBlocks } from './pair-invariants';
import { SIM_LINK_TUNING } from './pair-schedule';
import { SimClock } from './sim-clock';

/** How the pairs of a topology run connect the controllers. */
export type Topology = 'ring' | 'fan-out' | 'mesh';

/** The topologies, for option checks. */
export const TOPOLOGIES: readonly Topology[] = Object.freeze(['ring', 'fan-out', 'mesh']);

/** The invariants (verdicts.ts names) a topology run checks: no role changes, no lockstep calls. */
export const TOPOLOGY_INVARIANTS: readonly string[] = Object.freeze(['consistent-is-prefix', 'identical-after-quiescence', 'primary-model']);

/** The most controllers a topology run takes. */
export const MAX_TOPOLOGY_CONTROLLERS = 1024;

/** Options of one topology run. */
export interface TopologyRunOptions {
  seed: number;
  topology: Topology;
  /** Controllers c0 .. c<K-1>, from 2 to MAX_TOPOLOGY_CONTROLLERS. */
  controllers: number;
  /** @default 'async' */
  mode?: 'sync' | 'async';
  /** Operations before healing. @default 20 */
  steps?: number;
  /** Mesh: how many successors each controller mirrors to (1..7); fan-out: secondaries per hub (1..7). @default 2 (mesh), 7 (fan-out) */
  degree?: number;
  /** Blocks of 4 KiB per volume. @default 8 */
  blockCount?: number;
  /** Journal ring of each primary volume. @default 64 KiB */
  journalCapacityBytes?: number;
  /** The most virtual ms between two operations. @default 30 */
  stepMaxMs?: number;
  /** Longest the final quiescence may take, in virtual ms. @default 30000 */
  quiesceMaxMs?: number;
  /** Prefix of the shared-memory names. @default 'bm-topo' */
  namePrefix?: string;
  /** A deliberate bug in the pair logic (to see the checks catch it). @default none */
  mutation?: PairMutation;
  /**
   * Replays a written-down event list (topology-spec.ts) instead of drawing the steps: one step
   * per event, `steps` is ignored. @default none (the seed draws `steps` steps)
   */
  events?: readonly TopologyEvent[];
}

/** The operations of a step. */
export const TOPOLOGY_OPERATIONS = Object.freeze(['writes', 'link-fault', 'heal', 'crash', 'restart'] as const);

/** One operation of a step. */
export type TopologyOperation = (typeof TOPOLOGY_OPERATIONS)[number];

/**
 * One step of a run, written down: its operation, the values of the choices it made (each taken
 * modulo the choice's range on replay, so a list with steps removed still replays), and the
 * virtual ms the clock ran after it. `trace` is what it did (for people; ignored on replay).
 */
export interface TopologyEvent {
  operation: TopologyOperation;
  draws: number[];
  afterMs: number;
  trace?: string[];
}

/** Totals of one topology run. */
export interface TopologyRunCounters {
  writes: number;
  faults: number;
  heals: number;
  crashes: number;
  restarts: number;
  resumes: number;
  prefixChecks: number;
  identicalChecks: number;
  virtualMs: number;
}

/** What one topology run found. */
export interface TopologyRunResult {
  seed: number;
  topology: Topology;
  mode: 'sync' | 'async';
  controllers: number;
  pairs: number;
  /** Violations of the invariants (empty: the run passed). */
  violations: string[];
  /** One line per operation and per finding ("<virtual ms> <what>"). */
  trace: string[];
  /** The steps as they ran (what replays this run; re-recorded on a replay). */
  events: TopologyEvent[];
  counters: TopologyRunCounters;
  /** Wall time of the run (set-up to release). */
  wallMs: number;
}

/** One pair of the layout: the primary's volume and the secondary's. */
interface LaidPair {
  name: string;
  primary: string;
  primaryVolume: string;
  secondary: string;
  secondaryVolume: string;
}

/** The most pairs of one primary volume (two tracking bitmaps each in a volume's 16 slots, and room left). */
export const MAX_TOPOLOGY_DEGREE = 7;

/** Virtual ms between two looks at quiescence. */
const QUIESCE_POLL_MS = 20;

function controllerId(index: number): string {
  return `c${index}`;
}

/** The pairs of a topology (see the design note). */
export function layOut(topology: Topology, controllers: number, degree = topology === 'fan-out' ? MAX_TOPOLOGY_DEGREE : 2): LaidPair[] {
  const pairs: LaidPair[] = [];
  const at = (index: number): string => controllerId(((index % controllers) + controllers) % controllers);
  if (topology === 'ring') {
    for (let index = 0; index < controllers; index++) {
      pairs.push({ name: `r${index}`, primary: at(index), primaryVolume: 'out', secondary: at(index + 1), secondaryVolume: 'in' });
    }
  } else if (topology === 'fan-out') {
    for (let hub = 0; hub < controllers - 1; hub += degree + 1) {
      for (let index = hub + 1; index <= Math.min(hub + degree, controllers - 1); index++) {
        pairs.push({ name: `f${index}`, primary: at(hub), primaryVolume: 'out', secondary: at(index), secondaryVolume: 'in' });
      }
    }
  } else {
    for (let index = 0; index < controllers; index++) {
      for (let distance = 1; distance <= degree; distance++) {
        pairs.push({ name: `m${index}.${distance}`, primary: at(index), primaryVolume: 'out', secondary: at(index + distance), secondaryVolume: `in${distance}` });
      }
    }
  }
  return pairs;
}

let runCounter = 0;

/** Runs one topology run; never throws for what it finds. */
export async function runTopology(options: TopologyRunOptions): Promise<TopologyRunResult> {
  const run = new TopologyRun(options);
  try {
    await run.run();
  } catch (error) {
    run.violation(`the run threw: ${String((error as Error)?.stack ?? error)}`);
  } finally {
    await run.dispose();
  }
  return run.result();
}

class TopologyRun {
  private readonly startedAtMs = Date.now();
  private readonly clock = new SimClock();
  private readonly random: SeededRandom;
  private readonly choose: SeededRandom;
  private readonly network: SimNetwork;
  private readonly mode: 'sync' | 'async';
  private readonly steps: number;
  private readonly blockCount: number;
  private readonly blockBytes = 4096;
  private readonly journalCapacityBytes: number;
  private readonly stepMaxMs: number;
  private readonly quiesceMaxMs: number;
  private readonly ids: string[];
  private readonly pairs: LaidPair[];
  /** Per controller: its volumes (name -> shared name) and pair specs. */
  private readonly volumesOf = new Map<string, Map<string, string>>();
  private readonly specsOf = new Map<string, PairSpec[]>();
  private readonly peersOf = new Map<string, Set<string>>();
  private readonly controllers = new Map<string, Controller | undefined>();
  private readonly incarnations = new Map<string, number>();
  /** Per primary volume ('<controller>/<volume>'): the model of what its host wrote. */
  private readonly lineages = new Map<string, Lineage>();
  private readonly primaryVolumes: { id: string; volume: string }[] = [];
  private readonly violations: string[] = [];
  private readonly seenViolations = new Set<string>();
  private readonly trace: string[] = [];
  private scratch: Buffer | undefined;
  private nextWriteId = 1;
  private readonly events: TopologyEvent[] = [];
  /** The step being recorded, and on a replay the draws it replays from. */
  private step: TopologyEvent | undefined;
  private replayDraws: readonly number[] = [];
  readonly counters: TopologyRunCounters = { writes: 0, faults: 0, heals: 0, crashes: 0, restarts: 0, resumes: 0, prefixChecks: 0, identicalChecks: 0, virtualMs: 0 };

  constructor(private readonly options: TopologyRunOptions) {
    if (!Number.isSafeInteger(options.seed) || options.seed < 0) throw new RangeError(`seed must be a non-negative integer, got ${String(options.seed)}`);
    if (!TOPOLOGIES.includes(options.topology)) throw new RangeError(`topology must be one of ${TOPOLOGIES.join(', ')}, got ${JSON.stringify(options.topology)}`);
    if (!Number.isSafeInteger(options.controllers) || options.controllers < 2 || options.controllers > MAX_TOPOLOGY_CONTROLLERS) {
      throw new RangeError(`controllers must be an integer from 2 to ${MAX_TOPOLOGY_CONTROLLERS}, got ${String(options.controllers)}`);
    }
    const degree = options.degree ?? (options.topology === 'fan-out' ? MAX_TOPOLOGY_DEGREE : 2);
    if (!Number.isSafeInteger(degree) || degree < 1 || degree > MAX_TOPOLOGY_DEGREE || (options.topology === 'mesh' && degree >= options.controllers)) {
      throw new RangeError(`degree must be an integer from 1 to ${MAX_TOPOLOGY_DEGREE}${options.topology === 'mesh' ? ' and below controllers' : ''}, got ${String(options.degree)}`);
    }
    this.mode = options.mode ?? 'async';
    if (this.mode !== 'sync' && this.mode !== 'async') throw new RangeError(`mode must be 'sync' or 'async', got ${String(options.mode)}`);
    this.steps = options.steps ?? 20;
    this.blockCount = options.blockCount ?? 8;
    this.journalCapacityBytes = options.journalCapacityBytes ?? 64 * 1024;
    this.stepMaxMs = options.stepMaxMs ?? 30;
    this.quiesceMaxMs = options.quiesceMaxMs ?? 30_000;
    for (const [name, value] of [['steps', this.steps], ['blockCount', this.blockCount], ['stepMaxMs', this.stepMaxMs], ['quiesceMaxMs', this.quiesceMaxMs]] as const) {
      if (!Number.isSafeInteger(value) || value < (name === 'steps' || name === 'stepMaxMs' ? 0 : 1)) throw new RangeError(`${name} must be a non-negative integer, got ${String(value)}`);
    }
    this.random = new SeededRandom(options.seed);
    this.choose = this.random.fork('topology');
    this.network = new SimNetwork({ clock: this.clock, random: this.random.fork('network'), trace: false });
    this.ids = Array.from({ length: options.controllers }, (_, index) => controllerId(index));
    this.pairs = layOut(options.topology, options.controllers, degree);
    runCounter++;
    const prefix = `${options.namePrefix ?? 'bm-topo'}-${process.pid}-${runCounter}`;
    for (const id of this.ids) {
      this.volumesOf.set(id, new Map());
      this.specsOf.set(id, []);
      this.peersOf.set(id, new Set());
    }
    for (const pair of this.pairs) {
      for (const [id, volume] of [[pair.primary, pair.primaryVolume], [pair.secondary, pair.secondaryVolume]] as const) {
        (this.volumesOf.get(id) as Map<string, string>).set(volume, `${prefix}-${id}-${volume}`);
      }
      const fence = this.mode === 'sync' ? { fence: 'never' as const } : {};
      (this.specsOf.get(pair.primary) as PairSpec[]).push({ name: pair.name, mode: this.mode, volume: pair.primaryVolume, peer: pair.secondary, remoteVolume: pair.secondaryVolume, role: 'primary', ...fence });
      (this.specsOf.get(pair.secondary) as PairSpec[]).push({ name: pair.name, mode: this.mode, volume: pair.secondaryVolume, peer: pair.primary, remoteVolume: pair.primaryVolume, role: 'secondary', ...fence });
      (this.peersOf.get(pair.primary) as Set<string>).add(pair.secondary);
      (this.peersOf.get(pair.secondary) as Set<string>).add(pair.primary);
      const key = `${pair.primary}/${pair.primaryVolume}`;
      if (!this.lineages.has(key)) {
        this.lineages.set(key, new Lineage(key, new Int32Array(this.blockCount)));
        this.primaryVolumes.push({ id: pair.primary, volume: pair.primaryVolume });
      }
    }
  }

  private now(): number {
    return Math.round(this.clock.nowMs());
  }

  private note(text: string): void {
    this.trace.push(`${this.now()} ${text}`);
    this.step?.trace?.push(text);
  }

  /** A choice of a step in 0..range-1: the replayed value (modulo the range) or a new draw; recorded. */
  private draw(range: number): number {
    const step = this.step as TopologyEvent;
    const index = step.draws.length;
    const value = index < this.replayDraws.length ? (this.replayDraws[index] as number) % range : this.choose.int(range);
    step.draws.push(value);
    return value;
  }

  violation(text: string): void {
    // A standing violation (the same secondary, the same wrong image) is reported once, when first seen.
    if (this.seenViolations.has(text)) return;
    this.seenViolations.add(text);
    this.violations.push(`${this.now()} ms: ${text}`);
    this.trace.push(`${this.now()} VIOLATION ${text}`);
  }

  private build(id: string): Controller {
    const incarnation = (this.incarnations.get(id) ?? 0) + 1;
    this.incarnations.set(id, incarnation);
    const volumes: ControllerVolumeSpec[] = [...(this.volumesOf.get(id) as Map<string, string>)].map(([name, sharedName]) =>
      ({ name, backing: 'shared', sharedName, capacityBytes: this.blockCount * this.blockBytes }));
    return new Controller({
      id, network: this.network.node(id), clock: this.clock, random: this.random.fork(`${id}-${incarnation}`),
      volumes,
      replication: { ...SIM_LINK_TUNING, listen: { host: id, port: 7000 } },
      peers: [...(this.peersOf.get(id) as Set<string>)].map((peer) => ({ id: peer, address: { host: peer, port: 7000 } })),
      pairs: this.specsOf.get(id) as PairSpec[],
      journal: { journalCapacityBytes: this.journalCapacityBytes },
      ...(this.options.mutation === undefined ? {} : { pairMutation: this.options.mutation }),
    });
  }

  private async start(id: string): Promise<void> {
    const controller = this.build(id);
    await controller.start();
    this.controllers.set(id, controller);
  }

  private pick<T>(items: readonly T[]): T | undefined {
    return items.length === 0 ? undefined : items[this.draw(items.length)];
  }

  /** The block values of a controller's volume (one buffer reused; decoded at once). */
  private values(id: string, volume: string): Int32Array {
    this.scratch ??= Buffer.allocUnsafe(this.blockCount * this.blockBytes);
    (this.controllers.get(id)?.volume(volume) as Volume).read(0, this.scratch);
    return decodeImage(this.scratch, this.blockBytes);
  }

  private image(id: string, volume: string): Buffer {
    const data = Buffer.allocUnsafe(this.blockCount * this.blockBytes);
    (this.controllers.get(id)?.volume(volume) as Volume).read(0, data);
    return data;
  }

  // ---- operations ------------------------------------------------------------------------------

  private hostWrites(): void {
    const writable = this.primaryVolumes.filter((entry) => (this.controllers.get(entry.id)?.exportVolume(entry.volume) as PairVolume | undefined)?.writable === true);
    const target = this.pick(writable);
    if (target === undefined) return;
    const volume = this.controllers.get(target.id)?.exportVolume(target.volume) as PairVolume;
    const lineage = this.lineages.get(`${target.id}/${target.volume}`) as Lineage;
    const count = 1 + this.draw(6);
    for (let index = 0; index < count; index++) {
      const blockCount = 1 + this.draw(4);
      const firstBlock = this.draw(this.blockCount - blockCount + 1);
      const writeId = this.nextWriteId++;
      const data = Buffer.allocUnsafe(blockCount * this.blockBytes);
      fillBlocks(data, writeId, firstBlock, this.blockBytes);
      try {
        volume.write(firstBlock * this.blockBytes, data);
      } catch (error) {
        this.note(`write on ${target.id}/${target.volume} refused: ${String((error as { code?: string }).code ?? error)}`);
        return;
      }
      lineage.append({ id: writeId, firstBlock, blockCount, value: writeId, acknowledged: false, issuedAtMs: this.now() });
      this.counters.writes++;
    }
    this.note(`${count} write(s) on ${target.id}/${target.volume}`);
  }

  private linkFault(): void {
    const pair = this.pick(this.pairs) as LaidPair;
    const [x, y] = this.draw(2) === 0 ? [pair.primary, pair.secondary] : [pair.secondary, pair.primary];
    this.counters.faults++;
    switch (this.draw(4)) {
      case 0:
        this.note(`drop ${x}-${y}`);
        this.network.reset(x, y);
        return;
      case 1:
        this.note(`partition ${x}-${y} both ways`);
        this.network.partition(x, y);
        return;
      case 2:
        this.note(`partition ${x}->${y} one way`);
        this.network.partition(x, y, { direction: 'a-to-b' });
        return;
      default: {
        const latencyMs = 2 + this.draw(60);
        this.note(`delay ${x}->${y} ${latencyMs} ms`);
        this.network.setLink(x, y, { latencyMs });
      }
    }
  }

  private healAll(): void {
    this.note('heal all');
    this.network.healAll();
    for (const pair of this.pairs) {
      this.network.clearLink(pair.primary, pair.secondary);
      this.network.clearLink(pair.secondary, pair.primary);
    }
    this.counters.heals++;
  }

  private crash(): void {
    const id = this.pick(this.ids.filter((candidate) => this.controllers.get(candidate) !== undefined));
    if (id === undefined) return;
    this.note(`crash ${id}`);
    (this.controllers.get(id) as Controller).crash();
    this.network.crash(id);
    this.controllers.set(id, undefined);
    this.counters.crashes++;
  }

  private async restart(id: string): Promise<void> {
    this.note(`restart ${id}`);
    this.network.restart(id);
    await this.start(id);
    this.counters.restarts++;
  }

  // ---- checks ----------------------------------------------------------------------------------

  /** Every secondary that says it is mirroring and consistent is a prefix of its primary's lineage. */
  private checkPrefixes(): void {
    for (const pair of this.pairs) {
      const secondary = this.controllers.get(pair.secondary)?.pairs?.secondary(pair.name);
      if (secondary === undefined || secondary.currentState !== 'mirroring' || secondary.consistency !== 'consistent') continue;
      this.counters.prefixChecks++;
      const lineage = this.lineages.get(`${pair.primary}/${pair.primaryVolume}`) as Lineage;
      for (const text of checkWriteOrderPrefix(lineage, this.values(pair.secondary, pair.secondaryVolume), `pair ${pair.name}: secondary ${pair.secondary}`)) this.violation(text);
    }
  }

  private quiesced(): boolean {
    for (const pair of this.pairs) {
      const secondary = this.controllers.get(pair.secondary)?.pairs?.secondary(pair.name);
      if (secondary === undefined || secondary.currentState !== 'mirroring' || secondary.consistency !== 'consistent') return false;
      const manager = this.controllers.get(pair.primary)?.pairs;
      if (manager === undefined || manager.secondary(pair.name) !== undefined) return false;
      let primary;
      try {
        primary = manager.primary(pair.name);
      } catch {
        return false;
      }
      if (primary.currentState !== 'mirroring' || primary.lagRecords !== 0) return false;
    }
    return true;
  }

  /** What an operator does after a storm: resume the suspensions that wait for one. */
  private resumeWaiting(): void {
    for (const pair of this.pairs) {
      const manager = this.controllers.get(pair.primary)?.pairs;
      if (manager === undefined || manager.secondary(pair.name) !== undefined) continue;
      const status = manager.primary(pair.name).status();
      if (status.state === 'suspended' && status.link === 'up' && (status.reason === 'operator' || status.reason === 'secondary-error')) {
        try {
          manager.primary(pair.name).resume();
          this.counters.resumes++;
          this.note(`resume ${pair.name} on ${pair.primary} (${String(status.reason)})`);
        } catch (error) {
          this.note(`resume ${pair.name} on ${pair.primary} refused: ${String((error as { code?: string }).code ?? error)}`);
        }
      }
    }
  }

  private describeUnquiesced(): string {
    const lines: string[] = [];
    for (const pair of this.pairs) {
      const primary = this.controllers.get(pair.primary)?.pairs?.status().find((entry) => entry.name === pair.name);
      const secondary = this.controllers.get(pair.secondary)?.pairs?.status().find((entry) => entry.name === pair.name);
      const text = `${pair.name}: ${String(primary?.state)} (${String(primary?.reason)}) lag ${JSON.stringify(primary?.lag)} / ${String(secondary?.state)} ${String(secondary?.consistency)}`;
      if (primary?.state !== 'mirroring' || secondary?.state !== 'mirroring') lines.push(text);
      if (lines.length >= 5) break;
    }
    return lines.join('; ');
  }

  // ---- the run ---------------------------------------------------------------------------------

  async run(): Promise<void> {
    for (const id of [...this.ids].reverse()) await this.start(id);
    this.note(`start: ${this.options.topology}, ${this.ids.length} controllers, ${this.pairs.length} ${this.mode} pairs, ${this.blockCount} blocks`);
    await this.runUntilQuiesced(5000);
    const replay = this.options.events;
    const steps = replay?.length ?? this.steps;
    for (let index = 0; index < steps; index++) {
      const given = replay?.[index];
      let operation: TopologyOperation;
      if (given === undefined) {
        const roll = this.choose.int(100);
        operation = roll < 50 ? 'writes' : roll < 70 ? 'link-fault' : roll < 80 ? 'heal' : roll < 90 ? 'crash' : 'restart';
      } else operation = given.operation;
      this.step = { operation, draws: [], afterMs: 0, trace: [] };
      this.replayDraws = given?.draws ?? [];
      this.events.push(this.step);
      if (operation === 'writes') this.hostWrites();
      else if (operation === 'link-fault') this.linkFault();
      else if (operation === 'heal') this.healAll();
      else if (operation === 'crash') this.crash();
      else {
        const id = this.pick(this.ids.filter((candidate) => this.controllers.get(candidate) === undefined));
        if (id !== undefined) await this.restart(id);
      }
      const afterMs = given === undefined ? this.choose.int(this.stepMaxMs + 1) : given.afterMs;
      this.step.afterMs = afterMs;
      this.step = undefined;
      this.replayDraws = [];
      await this.clock.runFor(afterMs);
      this.checkPrefixes();
    }
    this.healAll();
    for (const id of this.ids) if (this.controllers.get(id) === undefined) await this.restart(id);
    const startMs = this.clock.nowMs();
    while (!(await this.runUntilQuiesced(500))) {
      this.checkPrefixes();
      this.resumeWaiting();
      if (this.clock.nowMs() - startMs > this.quiesceMaxMs) {
        this.violation(`not quiesced within ${this.quiesceMaxMs} ms of healing: ${this.describeUnquiesced()}`);
        return;
      }
    }
    this.note('quiesced');
    this.checkPrefixes();
    for (const { id, volume } of this.primaryVolumes) {
      const lineage = this.lineages.get(`${id}/${volume}`) as Lineage;
      for (const text of checkPrimaryModel(lineage, this.values(id, volume), `primary ${id}/${volume}`)) this.violation(text);
    }
    for (const pair of this.pairs) {
      this.counters.identicalChecks++;
      for (const text of checkIdentical(this.image(pair.primary, pair.primaryVolume), this.image(pair.secondary, pair.secondaryVolume), this.blockBytes,
        `after quiescence, pair ${pair.name}: ${pair.primary}/${pair.primaryVolume} and ${pair.secondary}/${pair.secondaryVolume}`)) this.violation(text);
    }
  }

  /** Runs the clock in QUIESCE_POLL_MS slices until quiesced or `maxMs` passed; true when quiesced. */
  private async runUntilQuiesced(maxMs: number): Promise<boolean> {
    const endMs = this.clock.nowMs() + maxMs;
    while (!this.quiesced()) {
      if (this.clock.nowMs() >= endMs) return false;
      await this.clock.runFor(QUIESCE_POLL_MS);
    }
    return true;
  }

  async dispose(): Promise<void> {
    this.counters.virtualMs = this.now();
    for (const id of this.ids) {
      const controller = this.controllers.get(id);
      this.controllers.set(id, undefined);
      if (controller === undefined) continue;
      const volumes = [...(this.volumesOf.get(id) as Map<string, string>).keys()].map((name) => controller.volume(name));
      const pairs = controller.pairs;
      controller.crash();
      try {
        await pairs?.close();
      } catch {
        // Best effort; the regions are unlinked below either way.
      }
      for (const volume of volumes) {
        try {
          await volume?.close();
        } catch {
          // As above.
        }
      }
    }
    for (const id of this.ids) {
      for (const name of (this.volumesOf.get(id) as Map<string, string>).values()) {
        Volume.unlink({ name });
        SnapshotStore.unlink({ name });
        Journal.unlink({ name });
        for (const spec of this.specsOf.get(id) as PairSpec[]) Region.unlink('shared', `blockmirror.pair.${name}.${spec.name}`);
      }
    }
  }

  result(): TopologyRunResult {
    return {
      seed: this.options.seed, topology: this.options.topology, mode: this.mode, controllers: this.ids.length, pairs: this.pairs.length,
      violations: [...this.violations], trace: [...this.trace], events: this.events.map((event) => ({ ...event, draws: [...event.draws], trace: [...(event.trace ?? [])] })),
      counters: { ...this.counters }, wallMs: Date.now() - this.startedAtMs,
    };
  }
}
