// Notes on the design
// -------------------
// The world of a mesh (mesh.ts) and what every layer above reads of it: the seed and its root
// random, the simulated clock and network, the controller ids and link tuning, the live
// incarnation of each controller, the records of every ordered pair, the log, the link changes,
// the failures and the counters. The mesh is a stack of classes, each in its own file and each
// adding one concern to the one below: MeshWorld (this file: the state and the looking) <-
// MeshChecks (mesh-checks.ts: starting and watching controllers, the checker) <- Mesh (mesh.ts:
// acting and running). They share this state as protected members (private where one layer
// alone uses it); the fields are set here, at construction, and changed by the layers above.
//
// Errors: the constructor throws TypeError / RangeError on bad options; looking up a controller
// that is not one of the mesh's (RangeError) or not started (Error) throws; what the checker
// finds is recorded by fail(), never thrown.

import type { Controller } from '../controller/controller';
import { SeededRandom } from '../runtime/random';
import type { Link, LinkTuning } from '../transport/link';
import { SimNetwork } from './network';
import { SimClock } from './sim-clock';
import {
  type Incarnation, MAX_CONTROLLERS, MESH_LINK_TUNING, type MeshCounters, type MeshLinkChange, type MeshOptions,
  type PairState, checkId,
} from './mesh-options';

/** The state of a mesh (see the notes above); Mesh (mesh.ts) is the class scenarios use. */
export abstract class MeshWorld {
  readonly seed: number;
  readonly clock: SimClock;
  readonly network: SimNetwork;
  /** c0, c1, ... */
  readonly ids: readonly string[];
  readonly tuning: LinkTuning;
  /** Controller events and harness actions, "<virtual ms> <text>", in order. */
  readonly log: string[] = [];
  /** Every link state change of every live controller, in order. */
  readonly linkChanges: MeshLinkChange[] = [];
  /** What the checker found so far ("<virtual ms> <sentence>"). */
  readonly failures: string[] = [];
  readonly counters: MeshCounters = {
    messagesSent: 0,
    messagesDelivered: 0,
    messagesUnconfirmed: 0,
    messagesDeliveredAndUnconfirmed: 0,
    messagesLostInCrash: 0,
    requestsSent: 0,
    requestsAnswered: 0,
    requestsFailed: 0,
    sendsRefusedDown: 0,
    sendsRefusedFull: 0,
    faultsInjected: 0,
    crashes: 0,
    stops: 0,
    restarts: 0,
    linkStateChanges: 0,
    virtualDurationMs: 0,
    timersFired: 0,
  };
  protected readonly root: SeededRandom;
  protected readonly incarnations = new Map<string, Incarnation>();
  protected readonly pairs = new Map<string, PairState>();

  constructor(options: MeshOptions) {
    if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object');
    if (!Number.isSafeInteger(options.seed) || options.seed < 0) throw new RangeError(`seed must be a safe integer >= 0, got ${String(options.seed)}`);
    const controllerCount = options.controllerCount ?? 8;
    if (!Number.isInteger(controllerCount) || controllerCount < 2 || controllerCount > MAX_CONTROLLERS) {
      throw new RangeError(`controllerCount must be an integer from 2 to ${MAX_CONTROLLERS}, got ${String(controllerCount)}`);
    }
    this.seed = options.seed;
    this.root = new SeededRandom(options.seed);
    this.clock = new SimClock();
    this.network = new SimNetwork({
      clock: this.clock,
      random: this.root.fork('network'),
      link: options.networkLink ?? { latencyMs: 1 },
      resplit: options.resplit ?? true,
      traceLineLimit: options.traceLineLimit ?? 100_000,
    });
    this.tuning = { ...MESH_LINK_TUNING, ...(options.tuning ?? {}) };
    this.ids = Object.freeze(Array.from({ length: controllerCount }, (_, index) => `c${index}`));
    for (const from of this.ids) {
      for (const to of this.ids) {
        if (from !== to) this.pairs.set(`${from}>${to}`, { from, to, records: [], delivered: [] });
      }
    }
  }

  // ---- looking --------------------------------------------------------------------------------

  /** The live controller with this id (the newest incarnation). */
  controller(id: string): Controller {
    return this.incarnation(id).controller;
  }

  /** The link of controller `from` to peer `to`. */
  link(from: string, to: string): Link {
    checkId(this.ids, to, 'to');
    return this.controller(from).link(to);
  }

  /** True between crash(id) and restart(id). */
  isCrashed(id: string): boolean {
    return this.incarnation(id).life === 'crashed';
  }

  /** True unless crashed or stopped (and not restarted since). */
  isRunning(id: string): boolean {
    return this.incarnation(id).life === 'running';
  }

  /** Times controller `id` has been started (1 before any restart). */
  incarnationOf(id: string): number {
    return this.incarnation(id).number;
  }

  /** Every link of every live controller is up. */
  allUp(): boolean {
    for (const incarnation of this.incarnations.values()) {
      if (incarnation.life !== 'running' || incarnation.controller.currentState !== 'running') return false;
      for (const link of incarnation.controller.links.values()) if (!link.isUp) return false;
    }
    return true;
  }

  /**
   * Quiet: every controller running, every link up on both sides over the same connection,
   * nothing unacknowledged on any link and every request settled.
   */
  isQuiescent(): boolean {
    if (!this.allUp()) return false;
    for (const incarnation of this.incarnations.values()) if (incarnation.pendingRequests.size > 0) return false;
    for (const from of this.ids) {
      for (const to of this.ids) {
        if (from >= to) continue;
        const a = this.link(from, to).status();
        const b = this.link(to, from).status();
        if (a.unconfirmedMessages !== 0 || b.unconfirmedMessages !== 0 || a.queuedBytes !== 0 || b.queuedBytes !== 0) return false;
        if (a.connection === null || b.connection === null || mirrored(a.connection) !== b.connection) return false;
      }
    }
    return true;
  }

  /** The counters delivered from `from` to `to`, in delivery order. */
  deliveredCounters(from: string, to: string): readonly number[] {
    return this.pair(from, to).delivered;
  }

  /** What `from` sent to `to`: per counter, delivered / reported unconfirmed / lost in a crash. */
  sentMessages(from: string, to: string): { counter: number; delivered: boolean; unconfirmed: boolean; lostInCrash: boolean }[] {
    return this.pair(from, to).records.map((record) => ({
      counter: record.counter,
      delivered: record.deliveredCount > 0,
      unconfirmed: record.callbackReports > 0,
      lostInCrash: record.lostInCrash,
    }));
  }

  /** Adds a line to the log, at the current virtual time. */
  note(text: string): void {
    this.log.push(`${this.clock.nowMs().toFixed(3)} ${text}`);
  }

  // ---- internals ------------------------------------------------------------------------------

  protected incarnation(id: string): Incarnation {
    const incarnation = this.incarnations.get(id);
    if (incarnation === undefined) {
      checkId(this.ids, id, 'id');
      throw new Error(`controller ${id} has not been started (call start())`);
    }
    return incarnation;
  }

  protected pair(from: string, to: string): PairState {
    const pair = this.pairs.get(`${from}>${to}`);
    if (pair === undefined) throw new RangeError(`no pair ${from}->${to} in this mesh (${this.ids.join(', ')})`);
    return pair;
  }

  /** Records a failure of the run (with the virtual time) and logs it. */
  fail(sentence: string): void {
    this.failures.push(`${this.clock.nowMs().toFixed(3)} ${sentence}`);
    this.note(`FAILURE ${sentence.split('\n')[0]}`);
  }
}

/** "sim:c1:49152->c2:7000" seen from the other end. */
export function mirrored(description: string): string {
  const match = /^sim:(.+)->(.+)$/.exec(description);
  return match === null ? description : `sim:${match[2]}->${match[1]}`;
}
