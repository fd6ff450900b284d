// Notes on the design
// -------------------
// The vocabulary of a mesh (mesh.ts): its port and link tuning, the limits, the options, what a
// run reports (link changes, counters, the result of send()), and the shapes of the bookkeeping
// the mesh keeps per message, per ordered pair of controllers and per controller incarnation
// (records live for the whole run; runs are short). The argument checks here throw TypeError /
// RangeError; nothing here keeps state.

import type { Controller } from '../controller/controller';
import type { FaultSettings } from '../transport/faults';
import type { LinkState, LinkTuning } from '../transport/link';
import type { LinkOptions as SimLinkOptions } from './network';

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
export const LIFTED_FAULTS: Readonly<FaultSettings> = Object.freeze({ partition: false, delayMs: 0, jitterMs: 0, bandwidthBytesPerSecond: 0 });

export const MAX_CONTROLLERS = 64;
export const MAX_PADDING_BYTES = 8192;
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

export interface SentRecord {
  readonly counter: number;
  messageId: number;
  readonly senderIncarnation: Incarnation;
  readonly sentAtMs: number;
  deliveredCount: number;
  callbackReports: number;
  eventReports: number;
  lostInCrash: boolean;
}

export interface PairState {
  readonly from: string;
  readonly to: string;
  /** Index counter - 1. */
  readonly records: SentRecord[];
  /** Counters in the order they were delivered. */
  readonly delivered: number[];
}

/** Running; closing or closed gracefully (stop()); or crashed (crash()). */
export type Life = 'running' | 'stopping' | 'stopped' | 'crashed';

export interface Incarnation {
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

export function checkId(ids: readonly string[], id: string, name: string): void {
  if (!ids.includes(id)) throw new RangeError(`${name} must be one of ${ids.join(', ')}, got ${JSON.stringify(id)}`);
}
