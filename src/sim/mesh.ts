// Notes on the design
// -------------------
// A reusable scenario runner for links: N Controllers ("c0", "c1", ...) in one process, on one
// SimNetwork, SimClock and SeededRandom, each listening on port 7000 of its own host and peered
// with every other (a full mesh: every peer has an address and the lower id dials, as link.ts
// says). Link tuning is tight (heartbeats every 50 ms, a peer is dead after 250 ms, reconnects
// from 20 to 400 ms, at most 64 KiB unacknowledged) so that a run with many failures is short in
// virtual time. It sits above the controller (it drives Controllers), unlike the rest of src/sim.
//
// Two ways to use it:
//   - Mesh: the building blocks, for scenarios that read like prose (send, request, faults,
//     crash, stop, restart, heal, run until a condition, quiesce, check);
//   - runMeshScenario() (mesh-scenario.ts): a seeded run of random traffic and random faults,
//     then heal everything (restarting what is down), run until quiescence and check. The same seed gives the same
//     run, event for event and trace line for trace line.
//
// What the checker proves, per ordered pair of controllers (sender, receiver), over the whole
// run (across reconnects and across crashes and restarts of either side):
//   - every LINK_TEST message delivered carries the right sender and receiver and a counter the
//     sender really sent, intact, and counters are delivered in strictly increasing order (so
//     never twice, never out of order);
//   - every message the sender sent (send() returned) is delivered, or reported unconfirmed by
//     the sender's link, or both (the ack was lost). Neither is a silent loss, the one thing
//     "in order or not at all" forbids. A report comes to onUnconfirmed and in an 'unconfirmed'
//     event, each exactly once. A controller stopped gracefully (close()) owes the same account;
//   - the messages of a sender that crashed are not checked for delivery: those not delivered
//     are gone, and those already past the network (held by the receiver's delay fault) may
//     still arrive after the crash, in order like any other;
//   - every request settles: with its echo, or rejected with ERR_LINK_DOWN, ERR_LINK_FULL,
//     ERR_LINK_TIMEOUT or ERR_LINK_CLOSED (a crashed requester's requests die with it);
//   - every link state change is in LINK_TRANSITIONS and starts from the state the previous
//     change left (both sides of a pair are watched); 'full' and 'drain' alternate;
//   - after healing, every link ends up, both sides on the same connection, with nothing
//     unacknowledged and not full, within a bound in virtual time (else the failure carries a
//     diagnosis).
// A message whose send() threw (ERR_LINK_DOWN, ERR_LINK_FULL) was never sent and is not counted;
// its counter is used by the next message.
//
// Determinism: every consumer of chance has its own fork of the seed's random (the network, each
// controller incarnation, each controller's traffic, the fault schedule), so adding one does not
// shift what the others draw. Every action happens at a virtual time the seed decides; the log
// lines carry it. Handshake nonces come from node:crypto (link.ts), but nothing decides on them.
//
// Ownership: the mesh owns its clock, network and controllers; a scenario may act on them
// directly (mesh.network, mesh.controller(id)), but network link settings made behind its back
// are not cleared by healAll(). Records of every message are kept for the whole run (runs are
// short).
//
// Error contract: a run never throws for what it found: failures are collected as sentences
// (with the virtual time) and returned, so a caller can print the seed. Misuse of the harness
// (an unknown controller, crashing a crashed one) throws TypeError / RangeError / Error.

import { Controller, type ControllerEvent } from '../controller/controller';
import { type Random, SeededRandom } from '../runtime/random';
import type { TimerHandle } from '../runtime/clock';
import { BinaryReader, BinaryWriter } from '../transport/codec';
import { LinkError, isLinkError } from '../transport/errors';
import type { FaultSettings } from '../transport/faults';
import {
  type Link,
  type LinkMessage,
  type LinkState,
  type LinkStatus,
  type LinkTuning,
  type UnconfirmedMessage,
  type UnconfirmedReport,
  isLinkTransition,
} from '../transport/link';
import { MessageType } from '../transport/message-types';
import { type LinkOptions as SimLinkOptions, type PartitionDirection, SimNetwork } from './network';
import { SimClock } from './sim-clock';

/** The port every controller of a mesh listens on, on its own host. */
export const MESH_PORT = 7000;

/** Link tuning of a mesh: tight, so a run with many failures is short in virtual time. */
export const MESH_LINK_TUNING: Readonly<Required<Pick<LinkTuning,
  'heartbeatIntervalMs' | 'deadPeerTimeoutMs' | 'handshakeTimeoutMs' | 'connectTimeoutMs' | 'reconnectInitialDelayMs'
  | 'reconnectMaxDelayMs' | 'maxFrameBytes' | 'maxQueuedBytes'>>> = Object.freeze({
  heartbeatIntervalMs: 50,
  deadPeerTimeoutMs: 250,
  handshakeTimeoutMs: 250,
  connectTimeoutMs: 250,
  reconnectInitialDelayMs: 20,
  reconnectMaxDelayMs: 400,
  maxFrameBytes: 64 * 1024,
  // As small as a link allows (maxFrameBytes), so a burst of messages meets ERR_LINK_FULL.
  maxQueuedBytes: 64 * 1024,
});

/** Every standing fault set back to none, through setFaults rather than heal(). */
const LIFTED_FAULTS: Readonly<FaultSettings> = Object.freeze({ partition: false, delayMs: 0, jitterMs: 0, bandwidthBytesPerSecond: 0 });

const MAX_CONTROLLERS = 64;
const MAX_PADDING_BYTES = 8192;
/** How long quiesce() waits by default, in virtual ms. */
export const DEFAULT_QUIESCENCE_TIMEOUT_MS = 10_000;

/** Options of a Mesh. */
export interface MeshOptions {
  /** The seed of every random choice of the run. */
  seed: number;
  /** Controllers, named c0, c1, ... @default 8 */
  controllerCount?: number;
  /** Changes to MESH_LINK_TUNING. @default {} */
  tuning?: LinkTuning;
  /** Settings of every direction between two hosts. @default { latencyMs: 1 } */
  networkLink?: SimLinkOptions;
  /** Let the network cut and join segments at random points. @default true */
  resplit?: boolean;
  /** Network trace lines kept. @default 100_000 */
  traceLineLimit?: number;
}

/** A link state change, as the mesh saw it. */
export interface MeshLinkChange {
  timeMs: number;
  /** The controller whose link changed. */
  from: string;
  /** Its peer. */
  to: string;
  /** The controller's incarnation (1 until its first restart). */
  incarnation: number;
  old: LinkState;
  new: LinkState;
  reason: string;
  code?: string;
  detail?: string;
}

/** What send() did. */
export type MeshSendResult = 'sent' | 'down' | 'full';

/** Totals of a run. */
export interface MeshCounters {
  /** Messages send() accepted. */
  messagesSent: number;
  /** Deliveries to 'message' listeners. */
  messagesDelivered: number;
  /** Messages reported unconfirmed by their sender's link. */
  messagesUnconfirmed: number;
  /** Messages both delivered and reported unconfirmed (the acknowledgement was lost). */
  messagesDeliveredAndUnconfirmed: number;
  /** Messages of a sender that crashed, neither delivered nor reported (gone with it). */
  messagesLostInCrash: number;
  /** request() calls made. */
  requestsSent: number;
  /** Requests answered with their echo. */
  requestsAnswered: number;
  /** Requests rejected with ERR_LINK_DOWN, ERR_LINK_FULL, ERR_LINK_TIMEOUT or ERR_LINK_CLOSED. */
  requestsFailed: number;
  /** send() calls that threw ERR_LINK_DOWN. */
  sendsRefusedDown: number;
  /** send() calls that threw ERR_LINK_FULL. */
  sendsRefusedFull: number;
  /** Faults injected (network and link level, crashes and stops included). */
  faultsInjected: number;
  crashes: number;
  /** Graceful stops (Controller.close). */
  stops: number;
  restarts: number;
  /** Link state changes seen. */
  linkStateChanges: number;
  /** Virtual milliseconds from the start to the end of the run. */
  virtualDurationMs: number;
  /** SimClock timers fired. */
  timersFired: number;
}

interface SentRecord {
  readonly counter: number;
  messageId: number;
  readonly senderIncarnation: Incarnation;
  readonly sentAtMs: number;
  deliveredCount: number;
  callbackReports: number;
  eventReports: number;
  lostInCrash: boolean;
}

interface PairState {
  readonly from: string;
  readonly to: string;
  /** Index counter - 1. */
  readonly records: SentRecord[];
  /** Counters in the order they were delivered. */
  readonly delivered: number[];
}

/** Running; closing or closed gracefully (stop()); or crashed (crash()). */
type Life = 'running' | 'stopping' | 'stopped' | 'crashed';

interface Incarnation {
  readonly id: string;
  readonly number: number;
  readonly controller: Controller;
  life: Life;
  /** The close of stop(), while it runs. */
  stopping: Promise<void> | undefined;
  /** The last state each link's events left it in. */
  readonly linkStates: Map<string, LinkState>;
  /** Per peer, the records by the link's message id (for 'unconfirmed' reports). */
  readonly sentByPeer: Map<string, Map<number, SentRecord>>;
  /** Peers whose link emitted 'full' and not yet 'drain'. */
  readonly full: Set<string>;
  /** Requests sent and not yet settled. */
  readonly pendingRequests: Set<number>;
}

/** Checks the traffic options of startTraffic and runMeshScenario (TypeError / RangeError). */
export function checkTrafficOptions(meanIntervalMs: number, burstProbability: number, requestProbability: number): void {
  if (!Number.isSafeInteger(meanIntervalMs) || meanIntervalMs < 1) throw new RangeError(`the mean interval must be an integer >= 1, got ${meanIntervalMs}`);
  if (!(burstProbability >= 0 && requestProbability >= 0 && burstProbability + requestProbability <= 1)) {
    throw new RangeError(`burstProbability and requestProbability must be >= 0 and add up to at most 1, got ${burstProbability} and ${requestProbability}`);
  }
}

function checkId(ids: readonly string[], id: string, name: string): void {
  if (!ids.includes(id)) throw new RangeError(`${name} must be one of ${ids.join(', ')}, got ${JSON.stringify(id)}`);
}

/** A LINK_TEST payload: sender, receiver, counter, then `paddingBytes` bytes derived from the counter. */
export function encodeMeshPayload(from: string, to: string, counter: number, paddingBytes: number): Buffer {
  const padding = Buffer.alloc(paddingBytes);
  for (let index = 0; index < paddingBytes; index++) padding[index] = (counter + index) & 0xff;
  return new BinaryWriter().string(from).string(to).u32(counter).u16(paddingBytes).raw(padding).encode();
}

/** Decodes a LINK_TEST payload; throws ERR_LINK_BAD_MESSAGE (a LinkError) when it is not one. */
export function decodeMeshPayload(payload: Buffer): { from: string; to: string; counter: number } {
  const reader = new BinaryReader(payload, 'mesh LINK_TEST');
  const from = reader.string(64);
  const to = reader.string(64);
  const counter = reader.u32();
  const paddingBytes = reader.u16();
  const padding = reader.raw(paddingBytes);
  reader.end();
  for (let index = 0; index < paddingBytes; index++) {
    if (padding[index] !== ((counter + index) & 0xff)) {
      throw new LinkError('ERR_LINK_BAD_MESSAGE', `mesh LINK_TEST ${from}->${to} #${counter}: padding byte ${index} is wrong`);
    }
  }
  return { from, to, counter };
}

/** A full mesh of controllers on one simulated network. */
export class Mesh {
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
  private readonly root: SeededRandom;
  private readonly incarnations = new Map<string, Incarnation>();
  /** Every incarnation ever started, in order. */
  private readonly history: Incarnation[] = [];
  private readonly incarnationCounts = new Map<string, number>();
  private readonly pairs = new Map<string, PairState>();
  private readonly networkLinksSet = new Set<string>();
  private readonly trafficTimers = new Map<string, TimerHandle>();
  private started = false;
  private checked = false;
  private requestCount = 0;

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

  /** Starts every controller (c0 first). Links come up as the clock runs. */
  async start(): Promise<void> {
    if (this.started) throw new Error('mesh started twice');
    this.started = true;
    for (const id of this.ids) await this.startIncarnation(id);
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

  // ---- acting ---------------------------------------------------------------------------------

  /** Adds a line to the log, at the current virtual time. */
  note(text: string): void {
    this.log.push(`${this.clock.nowMs().toFixed(3)} ${text}`);
  }

  /** Sends one LINK_TEST from `from` to `to`; a send that throws DOWN or FULL is not counted. */
  send(from: string, to: string, paddingBytes = 0): MeshSendResult {
    checkId(this.ids, to, 'to');
    if (!Number.isInteger(paddingBytes) || paddingBytes < 0 || paddingBytes > MAX_PADDING_BYTES) {
      throw new RangeError(`paddingBytes must be an integer from 0 to ${MAX_PADDING_BYTES}, got ${paddingBytes}`);
    }
    const incarnation = this.incarnation(from);
    if (incarnation.life !== 'running') throw new Error(`controller ${from} is ${incarnation.life}`);
    const pair = this.pair(from, to);
    const record: SentRecord = {
      counter: pair.records.length + 1,
      messageId: 0,
      senderIncarnation: incarnation,
      sentAtMs: this.clock.nowMs(),
      deliveredCount: 0,
      callbackReports: 0,
      eventReports: 0,
      lostInCrash: false,
    };
    const payload = encodeMeshPayload(from, to, record.counter, paddingBytes);
    const link = incarnation.controller.link(to);
    try {
      record.messageId = link.send(MessageType.LINK_TEST, payload, {
        onUnconfirmed: (message) => this.onUnconfirmedCallback(incarnation, record, message),
      });
    } catch (error) {
      if (isLinkError(error, 'ERR_LINK_DOWN')) {
        this.counters.sendsRefusedDown++;
        return 'down';
      }
      if (isLinkError(error, 'ERR_LINK_FULL')) {
        this.counters.sendsRefusedFull++;
        return 'full';
      }
      throw error;
    }
    pair.records.push(record);
    (incarnation.sentByPeer.get(to) as Map<number, SentRecord>).set(record.messageId, record);
    this.counters.messagesSent++;
    return 'sent';
  }

  /**
   * Sends a LINK_TEST_REQUEST from `from` to `to`, which `to` echoes. It must settle: with the
   * echo, or rejected with ERR_LINK_DOWN / ERR_LINK_FULL (not sent), ERR_LINK_TIMEOUT,
   * ERR_LINK_CLOSED. Anything else is a failure. A crashed requester's requests are forgotten.
   */
  request(from: string, to: string, paddingBytes = 0, timeoutMs = 300): void {
    checkId(this.ids, to, 'to');
    const incarnation = this.incarnation(from);
    if (incarnation.life !== 'running') throw new Error(`controller ${from} is ${incarnation.life}`);
    const number = ++this.requestCount;
    const payload = encodeMeshPayload(from, to, number, paddingBytes);
    incarnation.pendingRequests.add(number);
    this.counters.requestsSent++;
    incarnation.controller.link(to).request(MessageType.LINK_TEST_REQUEST, payload, { timeoutMs }).then(
      (response) => {
        if (!incarnation.pendingRequests.delete(number)) return;
        this.counters.requestsAnswered++;
        if (!response.equals(payload)) this.fail(`request ${number} ${from}->${to} was answered with something other than its echo`);
      },
      (error: unknown) => {
        if (!incarnation.pendingRequests.delete(number)) return;
        const code = isLinkError(error) ? error.code : undefined;
        if (code === 'ERR_LINK_DOWN' || code === 'ERR_LINK_FULL' || code === 'ERR_LINK_TIMEOUT' || code === 'ERR_LINK_CLOSED') {
          this.counters.requestsFailed++;
        } else {
          this.fail(`request ${number} ${from}->${to} failed with ${(error as Error)?.stack ?? String(error)}`);
        }
      },
    );
  }

  /**
   * Sends LINK_TEST messages from every live controller at random times (a mean of
   * `meanIntervalMs` apart per controller), mostly to peers whose link is up, until stopTraffic().
   * Now and then a burst to one peer, big enough to meet ERR_LINK_FULL; now and then a request.
   */
  startTraffic(options: { meanIntervalMs?: number; burstProbability?: number; requestProbability?: number } = {}): void {
    const meanIntervalMs = options.meanIntervalMs ?? 10;
    const burstProbability = options.burstProbability ?? 0.01;
    const requestProbability = options.requestProbability ?? 0.1;
    checkTrafficOptions(meanIntervalMs, burstProbability, requestProbability);
    for (const id of this.ids) {
      if (this.trafficTimers.has(id)) continue;
      const random = this.root.fork(`traffic:${id}`);
      const tick = (): void => {
        this.trafficTimers.set(id, this.clock.setTimer(tick, 1 + random.int(2 * meanIntervalMs - 1)));
        if (this.incarnation(id).life !== 'running') return;
        const peers = this.ids.filter((peer) => peer !== id);
        const upPeers = peers.filter((peer) => this.link(id, peer).isUp);
        // Mostly a peer whose link is up; sometimes any peer, so ERR_LINK_DOWN is met too.
        const choices = upPeers.length > 0 && random.next() < 0.9 ? upPeers : peers;
        const to = choices[random.int(choices.length)] as string;
        const draw = random.next();
        if (draw < burstProbability) {
          const count = 20 + random.int(40);
          for (let index = 0; index < count; index++) this.send(id, to, 1000 + random.int(1000));
        } else if (draw < burstProbability + requestProbability) {
          this.request(id, to, random.int(300));
        } else {
          this.send(id, to, random.int(300));
        }
      };
      this.trafficTimers.set(id, this.clock.setTimer(tick, 1 + random.int(2 * meanIntervalMs - 1)));
    }
  }

  stopTraffic(): void {
    for (const timer of this.trafficTimers.values()) timer.cancel();
    this.trafficTimers.clear();
  }

  /** SimNetwork.partition, logged. */
  partition(a: string, b: string, direction: PartitionDirection = 'both'): void {
    this.counters.faultsInjected++;
    this.note(`mesh partition ${a} ${b} ${direction}`);
    this.network.partition(a, b, { direction });
  }

  /** SimNetwork.heal, logged. */
  heal(a: string, b: string, direction: PartitionDirection = 'both'): void {
    this.note(`mesh heal ${a} ${b} ${direction}`);
    this.network.heal(a, b, { direction });
  }

  /** SimNetwork.reset, logged. */
  reset(a: string, b: string): void {
    this.counters.faultsInjected++;
    const count = this.network.reset(a, b);
    this.note(`mesh reset ${a} ${b} (${count} connection${count === 1 ? '' : 's'})`);
  }

  /** SimNetwork.setLink, logged; healAll() clears it. */
  setNetworkLink(fromHost: string, toHost: string, options: SimLinkOptions): void {
    this.counters.faultsInjected++;
    this.note(`mesh network link ${fromHost}->${toHost} ${JSON.stringify(options)}`);
    this.network.setLink(fromHost, toHost, options);
    this.networkLinksSet.add(`${fromHost}>${toHost}`);
  }

  /** Controller.setLinkFaults on `from`'s link to `to`, logged. */
  setLinkFaults(from: string, to: string, settings: FaultSettings): void {
    this.counters.faultsInjected++;
    this.note(`mesh link faults ${from}->${to} ${JSON.stringify(settings)}`);
    this.controller(from).setLinkFaults(to, settings);
  }

  /** Lifts a link partition in both directions with setFaults (not heal()), logged. */
  liftLinkPartition(from: string, to: string): void {
    this.note(`mesh lift link partition ${from}->${to}`);
    this.controller(from).setLinkFaults(to, { partition: false });
  }

  /** Controller.healLink, logged. */
  healLink(from: string, to: string): void {
    this.note(`mesh heal link ${from}->${to}`);
    this.controller(from).healLink(to);
  }

  /**
   * Crashes controller `id` in-process: its host goes down (no notice to anyone), then the
   * object is dropped. What it sent and was not yet delivered is gone.
   */
  crash(id: string): void {
    const incarnation = this.incarnation(id);
    if (incarnation.life !== 'running') throw new Error(`controller ${id} is ${incarnation.life}`);
    this.counters.faultsInjected++;
    this.counters.crashes++;
    this.note(`mesh crash ${id}`);
    // Marked first: what the dying links say while the host goes down is not heard.
    incarnation.life = 'crashed';
    // Its pending requests die with it (abandon() settles nothing).
    incarnation.pendingRequests.clear();
    this.network.crash(id);
    incarnation.controller.crash();
  }

  /**
   * Stops controller `id` gracefully (Controller.close: links say GOODBYE and report what is
   * unconfirmed). Unlike a crash, everything it sent must be accounted for.
   */
  stop(id: string): Promise<void> {
    const incarnation = this.incarnation(id);
    if (incarnation.life !== 'running') throw new Error(`controller ${id} is ${incarnation.life}`);
    this.counters.faultsInjected++;
    this.counters.stops++;
    this.note(`mesh stop ${id}`);
    incarnation.life = 'stopping';
    incarnation.stopping = incarnation.controller.close().then(() => {
      incarnation.life = 'stopped';
      incarnation.stopping = undefined;
    });
    return incarnation.stopping;
  }

  /**
   * Brings a crashed or stopped controller back: its host restarts and a new Controller with the
   * same id starts.
   */
  async restart(id: string): Promise<void> {
    const incarnation = this.incarnation(id);
    if (incarnation.stopping !== undefined) await incarnation.stopping;
    if (incarnation.life !== 'crashed' && incarnation.life !== 'stopped') throw new Error(`controller ${id} is ${incarnation.life}`);
    this.counters.restarts++;
    this.note(`mesh restart ${id}`);
    this.network.restart(id);
    await this.startIncarnation(id);
  }

  /**
   * Ends every fault: partitions, network link settings, link faults; restarts nothing. Link
   * faults end by Link.heal() (`links: 'heal'`), or by setting every fault back to zero with
   * setFaults (`links: 'lift'`), which must bring a link back just the same.
   */
  healAll(options: { links?: 'heal' | 'lift' } = {}): void {
    const links = options.links ?? 'heal';
    this.note(`mesh heal all (links: ${links})`);
    this.network.healAll();
    for (const key of [...this.networkLinksSet].sort()) {
      const [fromHost, toHost] = key.split('>') as [string, string];
      this.network.clearLink(fromHost, toHost);
    }
    this.networkLinksSet.clear();
    for (const id of this.ids) {
      const incarnation = this.incarnation(id);
      if (incarnation.life !== 'running') continue;
      for (const peer of incarnation.controller.links.keys()) {
        if (links === 'heal') incarnation.controller.healLink(peer);
        else incarnation.controller.setLinkFaults(peer, LIFTED_FAULTS);
      }
    }
  }

  // ---- running --------------------------------------------------------------------------------

  /** Runs the clock for `durationMs` of virtual time. */
  async runFor(durationMs: number): Promise<void> {
    await this.clock.runFor(durationMs);
  }

  /** Runs until `predicate()` holds; false when `maxTimeMs` of virtual time passed first. */
  runUntil(predicate: () => boolean, maxTimeMs: number): Promise<boolean> {
    return this.clock.runUntil(predicate, { maxTimeMs, maxSteps: 10_000_000 });
  }

  /** Runs until quiescent; false (and a failure with a diagnosis) when `maxTimeMs` passed first. */
  async quiesce(maxTimeMs = DEFAULT_QUIESCENCE_TIMEOUT_MS): Promise<boolean> {
    const startMs = this.clock.nowMs();
    const quiet = await this.runUntil(() => this.isQuiescent(), maxTimeMs);
    if (quiet) {
      this.note(`mesh quiescent after ${(this.clock.nowMs() - startMs).toFixed(3)} ms`);
    } else {
      this.fail(`not quiescent ${maxTimeMs} ms after healing:\n${this.diagnosis()}`);
    }
    return quiet;
  }

  /**
   * The end-of-run checks (call once quiescent): every message sent is delivered or reported
   * unconfirmed, each report came exactly once by both routes. Returns every failure of the run.
   */
  check(): string[] {
    if (this.checked) return this.failures;
    this.checked = true;
    for (const pair of this.pairs.values()) {
      for (const record of pair.records) {
        const name = `${pair.from}->${pair.to} #${record.counter} (message ${record.messageId} of ${pair.from} incarnation ${record.senderIncarnation.number}, sent at ${record.sentAtMs.toFixed(3)} ms)`;
        if (record.callbackReports !== record.eventReports) {
          this.fail(`${name} was reported ${record.callbackReports} time(s) to onUnconfirmed but in ${record.eventReports} 'unconfirmed' event(s)`);
        }
        if (record.deliveredCount > 0 || record.callbackReports > 0) continue;
        if (record.senderIncarnation.life === 'crashed') {
          if (!record.lostInCrash) this.counters.messagesLostInCrash++;
          record.lostInCrash = true;
        } else {
          this.fail(`${name} was silently lost: neither delivered nor reported unconfirmed`);
        }
      }
    }
    for (const incarnation of this.history) {
      if (incarnation.life !== 'crashed' && incarnation.pendingRequests.size > 0) {
        this.fail(`${incarnation.id} (incarnation ${incarnation.number}): ${incarnation.pendingRequests.size} request(s) never settled`);
      }
    }
    for (const incarnation of this.incarnations.values()) {
      if (incarnation.life !== 'running') continue;
      for (const [peer, link] of incarnation.controller.links) {
        if (link.isFull || incarnation.full.has(peer)) this.fail(`${incarnation.id}'s link to ${peer} is still full at the end (no 'drain')`);
      }
    }
    this.counters.virtualDurationMs = this.clock.nowMs();
    this.counters.timersFired = this.clock.firedTimerCount;
    return this.failures;
  }

  /** One line per link that is not up and quiet (and how many are), then the last lines of the log. */
  diagnosis(): string {
    const lines: string[] = [];
    let quietCount = 0;
    for (const id of this.ids) {
      const incarnation = this.incarnation(id);
      if (incarnation.life !== 'running') {
        lines.push(`  ${id}: ${incarnation.life}`);
        continue;
      }
      if (incarnation.pendingRequests.size > 0) lines.push(`  ${id}: ${incarnation.pendingRequests.size} request(s) pending`);
      for (const link of incarnation.controller.links.values()) {
        const status = link.status();
        const peer = this.incarnations.get(link.peerId);
        const peerStatus = peer === undefined || peer.life !== 'running' ? undefined : peer.controller.link(id).status();
        const quiet = status.state === 'up' && status.unconfirmedMessages === 0 && status.connection !== null &&
          peerStatus !== undefined && peerStatus.connection === mirrored(status.connection);
        if (quiet) quietCount++;
        else lines.push(`  ${id}->${link.peerId}: ${describeStatus(status)}`);
      }
    }
    lines.push(`  (${quietCount} link ends up and quiet)`, '  last log lines:', ...this.log.slice(-40).map((line) => `    ${line}`));
    return lines.join('\n');
  }

  // ---- internals ------------------------------------------------------------------------------

  private incarnation(id: string): Incarnation {
    const incarnation = this.incarnations.get(id);
    if (incarnation === undefined) {
      checkId(this.ids, id, 'id');
      throw new Error(`controller ${id} has not been started (call start())`);
    }
    return incarnation;
  }

  private pair(from: string, to: string): PairState {
    const pair = this.pairs.get(`${from}>${to}`);
    if (pair === undefined) throw new RangeError(`no pair ${from}->${to} in this mesh (${this.ids.join(', ')})`);
    return pair;
  }

  /** Records a failure of the run (with the virtual time) and logs it. */
  fail(sentence: string): void {
    this.failures.push(`${this.clock.nowMs().toFixed(3)} ${sentence}`);
    this.note(`FAILURE ${sentence.split('\n')[0]}`);
  }

  private async startIncarnation(id: string): Promise<void> {
    const number = (this.incarnationCounts.get(id) ?? 0) + 1;
    this.incarnationCounts.set(id, number);
    const random: Random = this.root.fork(`controller:${id}#${number}`);
    const peers = this.ids.filter((peer) => peer !== id);
    const controller = new Controller({
      id,
      network: this.network.node(id),
      clock: this.clock,
      random,
      peers: peers.map((peer) => ({ id: peer, address: { host: peer, port: MESH_PORT } })),
      replication: { ...this.tuning, listen: { host: id, port: MESH_PORT } },
    });
    const incarnation: Incarnation = {
      id,
      number,
      controller,
      life: 'running',
      stopping: undefined,
      linkStates: new Map(peers.map((peer) => [peer, 'down' as LinkState])),
      sentByPeer: new Map(peers.map((peer) => [peer, new Map<number, SentRecord>()])),
      full: new Set(),
      pendingRequests: new Set(),
    };
    this.incarnations.set(id, incarnation);
    this.history.push(incarnation);
    controller.on('event', (event: ControllerEvent) => this.onControllerEvent(incarnation, event));
    // start() creates the links before its first await and starts them after it: listeners
    // attached here see every message and report of every link.
    const starting = controller.start();
    if (controller.links.size !== peers.length) {
      throw new Error(`mesh: controller ${id} made ${controller.links.size} links before starting them, expected ${peers.length}`);
    }
    for (const [peer, link] of controller.links) {
      if (link.currentState !== 'down' || link.status().reason !== 'not-started') {
        throw new Error(`mesh: the link ${id}->${peer} started before the mesh could watch it`);
      }
      link.on('message', (message: LinkMessage) => this.onMessage(incarnation, peer, message));
      link.on('unconfirmed', (report: UnconfirmedReport) => this.onUnconfirmedReport(incarnation, peer, report));
      link.handle(MessageType.LINK_TEST_REQUEST, (payload) => payload);
      link.on('full', () => this.onFullOrDrain(incarnation, peer, true));
      link.on('drain', () => this.onFullOrDrain(incarnation, peer, false));
    }
    await starting;
  }

  private onControllerEvent(incarnation: Incarnation, event: ControllerEvent): void {
    if (incarnation.life === 'crashed') return;
    const code = typeof event.code === 'string' ? ` ${event.code}` : '';
    const detail = typeof event.detail === 'string' ? `: ${event.detail}` : '';
    const faults = event.faults !== undefined && event.faults !== null ? ` ${JSON.stringify(event.faults)}` : '';
    this.note(`${event.controller} ${event.subject} ${event.old ?? '-'} -> ${event.new} (${event.reason ?? ''}${code}${detail})${faults}`);
    if (!event.subject.startsWith('link:') || event.old === null) return;
    const peer = event.subject.slice('link:'.length);
    const old = event.old as LinkState;
    const next = event.new as LinkState;
    this.counters.linkStateChanges++;
    const change: MeshLinkChange = {
      timeMs: this.clock.nowMs(), from: incarnation.id, to: peer, incarnation: incarnation.number, old, new: next, reason: event.reason ?? '',
    };
    if (typeof event.code === 'string') change.code = event.code;
    if (typeof event.detail === 'string') change.detail = event.detail;
    this.linkChanges.push(change);
    const last = incarnation.linkStates.get(peer);
    if (last !== old) {
      this.fail(`link ${incarnation.id}->${peer} changed ${old} -> ${next}, but its previous change left it ${String(last)}`);
    }
    if (!isLinkTransition(old, next)) this.fail(`link ${incarnation.id}->${peer} made the transition ${old} -> ${next}, not in LINK_TRANSITIONS`);
    incarnation.linkStates.set(peer, next);
  }

  private onMessage(receiver: Incarnation, peer: string, message: LinkMessage): void {
    if (receiver.life === 'crashed' || receiver.life === 'stopped') {
      this.fail(`${receiver.id} (${receiver.life}) was given a message from ${peer}`);
      return;
    }
    if (message.type !== MessageType.LINK_TEST) {
      this.fail(`${receiver.id} got message type 0x${message.type.toString(16)} from ${peer}; the mesh sends only LINK_TEST`);
      return;
    }
    let decoded: { from: string; to: string; counter: number };
    try {
      decoded = decodeMeshPayload(message.payload);
    } catch (error) {
      this.fail(`${receiver.id} got a corrupt LINK_TEST from ${peer}: ${(error as Error).message}`);
      return;
    }
    const { from, to, counter } = decoded;
    if (from !== peer || to !== receiver.id) {
      this.fail(`${receiver.id}'s link to ${peer} delivered a message from ${from} to ${to} (#${counter})`);
      return;
    }
    const pair = this.pair(from, to);
    const record = pair.records[counter - 1];
    const last = pair.delivered.length === 0 ? 0 : (pair.delivered[pair.delivered.length - 1] as number);
    pair.delivered.push(counter);
    this.counters.messagesDelivered++;
    if (record === undefined) {
      this.fail(`${from}->${to} #${counter} was delivered but never sent (${pair.records.length} sent)`);
      return;
    }
    record.deliveredCount++;
    if (record.deliveredCount > 1) this.fail(`${from}->${to} #${counter} was delivered ${record.deliveredCount} times`);
    else if (counter <= last) this.fail(`${from}->${to} #${counter} was delivered after #${last}: out of order`);
    if (record.callbackReports > 0 && record.deliveredCount === 1) this.counters.messagesDeliveredAndUnconfirmed++;
  }

  private onUnconfirmedCallback(sender: Incarnation, record: SentRecord, message: UnconfirmedMessage): void {
    if (sender.life === 'crashed') return;
    const name = `${sender.id} #${record.counter} (message ${message.messageId})`;
    if (record.messageId !== 0 && message.messageId !== record.messageId) {
      this.fail(`onUnconfirmed of ${name} names message ${message.messageId}, but send() returned ${record.messageId}`);
    }
    if (message.type !== MessageType.LINK_TEST) this.fail(`onUnconfirmed of ${name} names type 0x${message.type.toString(16)}`);
    record.callbackReports++;
    if (record.callbackReports > 1) {
      this.fail(`${name} was reported unconfirmed ${record.callbackReports} times`);
      return;
    }
    this.counters.messagesUnconfirmed++;
    if (record.deliveredCount > 0) this.counters.messagesDeliveredAndUnconfirmed++;
  }

  /** 'full' and 'drain' alternate, starting with 'full'. */
  private onFullOrDrain(sender: Incarnation, peer: string, full: boolean): void {
    if (sender.life === 'crashed') return;
    this.note(`${sender.id} link:${peer} ${full ? 'full' : 'drain'}`);
    if (sender.full.has(peer) === full) this.fail(`${sender.id}'s link to ${peer} emitted '${full ? 'full' : 'drain'}' twice in a row`);
    if (full) sender.full.add(peer);
    else sender.full.delete(peer);
  }

  private onUnconfirmedReport(sender: Incarnation, peer: string, report: UnconfirmedReport): void {
    if (sender.life === 'crashed') return;
    this.note(`${sender.id} link:${peer} unconfirmed ${report.messages.length} (${report.reason})`);
    if (report.peerId !== peer) this.fail(`${sender.id}'s link to ${peer} reported unconfirmed messages for ${report.peerId}`);
    const records = sender.sentByPeer.get(peer) as Map<number, SentRecord>;
    for (const message of report.messages) {
      // Requests and responses are reported too; their promises are the requester's account.
      if (message.type !== MessageType.LINK_TEST) continue;
      const record = records.get(message.messageId);
      if (record === undefined) {
        this.fail(`${sender.id}'s link to ${peer} reported message ${message.messageId} unconfirmed, which the mesh never sent`);
        continue;
      }
      record.eventReports++;
      if (record.eventReports > 1) this.fail(`${sender.id}->${peer} #${record.counter} appeared in ${record.eventReports} 'unconfirmed' events`);
    }
  }
}

/** "sim:c1:49152->c2:7000" seen from the other end. */
function mirrored(description: string): string {
  const match = /^sim:(.+)->(.+)$/.exec(description);
  return match === null ? description : `sim:${match[2]}->${match[1]}`;
}

function describeStatus(status: LinkStatus): string {
  const parts = [`${status.state} (${status.reason}${status.code === undefined ? '' : ` ${status.code}`}${status.detail === undefined ? '' : `: ${status.detail}`})`];
  parts.push(`attempt ${status.attempt}`);
  if (status.nextAttemptWallTimeMs !== null) parts.push('a dial scheduled');
  parts.push(`unconfirmed ${status.unconfirmedMessages}`);
  if (status.connection !== null) parts.push(status.connection);
  if (status.faults !== null) parts.push(`faults ${JSON.stringify(status.faults)}`);
  return parts.join(', ');
}
