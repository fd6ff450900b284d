// Notes on the design
// -------------------
// The checker of a mesh (mesh.ts; what it proves is in mesh.ts's notes): starting each
// controller incarnation and watching, from before its links start, every link state change,
// message, unconfirmed report (by callback and by event) and 'full'/'drain' of it; the
// end-of-run check and the diagnosis of a mesh that did not become quiescent. The second layer
// of the stack MeshWorld (mesh-world.ts) <- MeshChecks (this file) <- Mesh (mesh.ts).
//
// Errors: a controller that makes or starts its links other than the mesh expects is a harness
// bug and throws; everything the watchers find is recorded by fail(), never thrown. Events of a
// crashed incarnation are not heard (its links die with it).

import { Controller, type ControllerEvent } from '../controller/controller';
import type { Random } from '../runtime/random';
import {
  type LinkMessage,
  type LinkState,
  type LinkStatus,
  type UnconfirmedMessage,
  type UnconfirmedReport,
  isLinkTransition,
} from '../transport/link';
import { MessageType } from '../transport/message-types';
import { type Incarnation, MESH_PORT, type MeshLinkChange, type SentRecord } from './mesh-options';
import { decodeMeshPayload } from './mesh-payload';
import { MeshWorld, mirrored } from './mesh-world';

/** Starting and watching controllers, and checking what they did (see the notes above). */
export abstract class MeshChecks extends MeshWorld {
  /** Every incarnation ever started, in order. */
  private readonly history: Incarnation[] = [];
  private readonly incarnationCounts = new Map<string, number>();
  private started = false;
  private checked = false;

  /** Starts every controller (c0 first). Links come up as the clock runs. */
  async start(): Promise<void> {
    if (this.started) throw new Error('mesh started twice');
    this.started = true;
    for (const id of this.ids) await this.startIncarnation(id);
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

  protected async startIncarnation(id: string): Promise<void> {
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

  protected onUnconfirmedCallback(sender: Incarnation, record: SentRecord, message: UnconfirmedMessage): void {
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

function describeStatus(status: LinkStatus): string {
  const parts = [`${status.state} (${status.reason}${status.code === undefined ? '' : ` ${status.code}`}${status.detail === undefined ? '' : `: ${status.detail}`})`];
  parts.push(`attempt ${status.attempt}`);
  if (status.nextAttemptWallTimeMs !== null) parts.push('a dial scheduled');
  parts.push(`unconfirmed ${status.unconfirmedMessages}`);
  if (status.connection !== null) parts.push(status.connection);
  if (status.faults !== null) parts.push(`faults ${JSON.stringify(status.faults)}`);
  return parts.join(', ');
}
