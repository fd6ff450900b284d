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
//
// Layout: the mesh is a stack of classes, one concern each: MeshWorld (mesh-world.ts: the state
// and the looking) <- MeshChecks (mesh-checks.ts: starting and watching controllers, the checker)
// <- Mesh (this file: acting and running). The vocabulary (options, counters, records, limits)
// is in mesh-options.ts and the LINK_TEST payload in mesh-payload.ts; their exported names are
// re-exported here, so importers keep one path.

import type { TimerHandle } from '../runtime/clock';
import { isLinkError } from '../transport/errors';
import type { FaultSettings } from '../transport/faults';
import { MessageType } from '../transport/message-types';
import { type LinkOptions as SimLinkOptions, type PartitionDirection } from './network';
import { MeshChecks } from './mesh-checks';
import {
  DEFAULT_QUIESCENCE_TIMEOUT_MS, LIFTED_FAULTS, MAX_PADDING_BYTES, type MeshSendResult, type SentRecord, checkId, checkTrafficOptions,
} from './mesh-options';
import { encodeMeshPayload } from './mesh-payload';

export {
  DEFAULT_QUIESCENCE_TIMEOUT_MS, MESH_LINK_TUNING, MESH_PORT, checkTrafficOptions,
  type MeshCounters, type MeshLinkChange, type MeshOptions, type MeshSendResult,
} from './mesh-options';
export { decodeMeshPayload, encodeMeshPayload } from './mesh-payload';

/** A full mesh of controllers on one simulated network. */
export class Mesh extends MeshChecks {
  private readonly networkLinksSet = new Set<string>();
  private readonly trafficTimers = new Map<string, TimerHandle>();
  private requestCount = 0;

  // ---- acting ---------------------------------------------------------------------------------

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
}
