// A small AdminTarget for tests of the admin endpoint, its client and the commands: a fixed
// status with two controllers (or one), events pushed by the test, calls recorded, and a failure
// the test can arm for the next link call.

import { BlockmirrorError } from '../../src/errors';
import type { AdminTarget, ArrayEvent, ArrayEventListener } from '../../src/admin/target';
import type { FaultSettings } from '../../src/transport/faults';

export interface LinkCall {
  method: 'setLinkFaults' | 'healLink';
  controllerId: string | undefined;
  peerId: string;
  settings?: FaultSettings;
}

function link(peerId: string): Record<string, unknown> {
  return {
    peerId,
    state: 'up',
    reason: 'handshake-done',
    sinceWallTimeMs: 1_700_000_000_000,
    address: '127.0.0.1:7000',
    dialing: true,
    auth: 'hmac-sha256',
    authenticated: true,
    protocolVersion: 1,
    connection: '127.0.0.1:50000 -> 127.0.0.1:7000',
    rttMs: 0.42,
    bytesIn: 1536,
    bytesOut: 3 * 1024 * 1024,
    framesIn: 10,
    framesOut: 20,
    messagesSent: 5,
    messagesReceived: 4,
    reconnects: 2,
    attempt: 0,
    nextAttemptWallTimeMs: null,
    queuedBytes: 0,
    unconfirmedMessages: 0,
    unconfirmedReported: 1,
    pendingRequests: 0,
    faults: null,
  };
}

/** A fake array: controllers "a" (link to "b") and, unless `single`, "b" (link to "a"). */
export class FakeAdminTarget implements AdminTarget {
  readonly listeners = new Set<ArrayEventListener>();
  readonly calls: LinkCall[] = [];
  /** Thrown by the next setLinkFaults / healLink, then cleared. */
  failNext: unknown;
  /** Thrown by status() while set. */
  statusFailure: unknown;
  private seq = 0;
  readonly state: { controllers: Record<string, unknown>[]; nbd: Record<string, unknown> };

  constructor(options: { single?: boolean } = {}) {
    const controllers: Record<string, unknown>[] = [{
      id: 'a',
      volumes: [{ name: 'vol0', capacityBytes: 1 << 30 }],
      links: [link('b')],
      exports: [{ name: 'vol0', volume: 'vol0', readOnly: false, requests: { read: 7, write: 3 }, bytesRead: 4096, bytesWritten: 8192 }],
    }];
    if (options.single !== true) {
      controllers.push({ id: 'b', volumes: [], links: [link('a')], exports: [] });
    }
    this.state = { controllers, nbd: { addresses: [{ uri: 'nbd://127.0.0.1:10809/vol0' }], connections: 1 } };
  }

  status(): Record<string, unknown> {
    if (this.statusFailure !== undefined) throw this.statusFailure;
    return JSON.parse(JSON.stringify(this.state)) as Record<string, unknown>;
  }

  currentEvents(): ArrayEvent[] {
    return this.state.controllers.flatMap((controller) => (controller.links as { peerId: string; state: string; reason: string }[])
      .map((entry) => this.event(controller.id as string, `link:${entry.peerId}`, 'exists', null, entry.state, entry.reason)));
  }

  subscribe(listener: ArrayEventListener): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  controllerIds(): string[] {
    return this.state.controllers.map((controller) => controller.id as string);
  }

  setLinkFaults(controllerId: string | undefined, peerId: string, settings: FaultSettings): void {
    this.calls.push({ method: 'setLinkFaults', controllerId, peerId, settings });
    this.maybeFail();
    const found = this.findLink(controllerId, peerId);
    const faults = { delayMs: settings.delayMs ?? 0, jitterMs: settings.jitterMs ?? 0,
      bandwidthBytesPerSecond: settings.bandwidthBytesPerSecond ?? 0, partitioned: settings.partition ?? false };
    const none = { delayMs: 0, jitterMs: 0, bandwidthBytesPerSecond: 0, partitioned: false };
    found.faults = { in: settings.direction === 'out' ? none : faults, out: settings.direction === 'in' ? none : faults };
  }

  healLink(controllerId: string | undefined, peerId: string): void {
    this.calls.push({ method: 'healLink', controllerId, peerId });
    this.maybeFail();
    this.findLink(controllerId, peerId).faults = null;
  }

  /** Pair verbs: records the call; a pair named "missing" is unknown. */
  readonly pairCalls: { verb: string; controllerId: string | undefined; pairName: string; options?: unknown }[] = [];

  suspendPair(controllerId: string | undefined, pairName: string): Record<string, unknown> {
    return this.pairVerb('suspend', controllerId, pairName);
  }

  resumePair(controllerId: string | undefined, pairName: string): Record<string, unknown> {
    return this.pairVerb('resume', controllerId, pairName);
  }

  async takeoverPair(controllerId: string | undefined, pairName: string, options: { force?: boolean }): Promise<Record<string, unknown>> {
    this.pairCalls.push({ verb: 'takeover', controllerId, pairName, options });
    return this.pairVerb('takeover', controllerId, pairName);
  }

  async takeoverGroup(controllerId: string | undefined, group: string, options: { force?: boolean }): Promise<Record<string, unknown>[]> {
    this.pairCalls.push({ verb: 'takeover-group', controllerId, pairName: group, options });
    if (group === 'missing') throw new BlockmirrorError('ERR_PAIR_UNKNOWN', `no journal group ${group}`);
    return [{ name: `${group}-a`, state: 'simplex', journalGroup: group }, { name: `${group}-b`, state: 'simplex', journalGroup: group }];
  }

  async failbackGroup(controllerId: string | undefined, group: string): Promise<Record<string, unknown>[]> {
    this.pairCalls.push({ verb: 'failback-group', controllerId, pairName: group, options: {} });
    if (group === 'missing') throw new BlockmirrorError('ERR_PAIR_UNKNOWN', `no journal group ${group}`);
    return [{ name: `${group}-a`, state: 'mirroring', journalGroup: group }, { name: `${group}-b`, state: 'mirroring', journalGroup: group }];
  }

  async failbackPair(controllerId: string | undefined, pairName: string): Promise<Record<string, unknown>> {
    return this.pairVerb('failback', controllerId, pairName);
  }

  async resolvePair(controllerId: string | undefined, pairName: string, keep: 'primary' | 'secondary'): Promise<Record<string, unknown>> {
    this.pairCalls.push({ verb: 'resolve', controllerId, pairName, options: { keep } });
    return this.pairVerb('resolve', controllerId, pairName);
  }

  createPair(controllerId: string | undefined, spec: { name: string }): Record<string, unknown> {
    this.pairCalls.push({ verb: 'create', controllerId, pairName: spec.name, options: spec });
    if (spec.name === 'taken') throw new BlockmirrorError('ERR_PAIR_EXISTS', `pair ${spec.name} exists`);
    return { name: spec.name, state: 'simplex' };
  }

  async deletePair(controllerId: string | undefined, pairName: string): Promise<Record<string, unknown>> {
    return this.pairVerb('delete', controllerId, pairName);
  }

  lockstepEnabled = true;

  /** Snapshot requests seen; a volume named 'missing' has none (ERR_SNAPSHOT_NOT_FOUND). */
  readonly snapshotCalls: { controllerId: string | undefined; request: Record<string, unknown> }[] = [];

  async snapshot(controllerId: string | undefined, request: { verb: string; volume?: string; name?: string; clone?: string }): Promise<unknown> {
    this.snapshotCalls.push({ controllerId, request: { ...request } });
    if (request.volume === 'missing') throw new BlockmirrorError('ERR_SNAPSHOT_NOT_FOUND', `volume ${request.volume} has no snapshot ${String(request.name)}`);
    return { verb: request.verb, volume: request.volume ?? null, name: request.name ?? null };
  }

  /** Group requests seen; a group named 'missing' is not declared (ERR_CGROUP_UNKNOWN). */
  readonly groupCalls: { controllerId: string | undefined; request: Record<string, unknown> }[] = [];

  async group(controllerId: string | undefined, request: { verb: string; name?: string }): Promise<unknown> {
    this.groupCalls.push({ controllerId, request: { ...request } });
    if (request.name === 'missing') throw new BlockmirrorError('ERR_CGROUP_UNKNOWN', `no consistency group ${request.name}`);
    return { verb: request.verb, name: request.name ?? null };
  }

  async lockstep(controllerId: string | undefined, target: { pairs?: string[] }): Promise<string> {
    this.pairCalls.push({ verb: 'lockstep', controllerId, pairName: (target.pairs ?? []).join(','), options: target });
    if (!this.lockstepEnabled) return 'disabled';
    return (target.pairs ?? []).includes('missing') ? 'not-done' : 'done';
  }

  setLockstepEnabled(controllerId: string | undefined, enabled: boolean): void {
    this.pairCalls.push({ verb: enabled ? 'lockstep-enable' : 'lockstep-disable', controllerId, pairName: '' });
    this.lockstepEnabled = enabled;
  }

  private pairVerb(verb: string, controllerId: string | undefined, pairName: string): Record<string, unknown> {
    if (verb !== 'takeover' && verb !== 'resolve') this.pairCalls.push({ verb, controllerId, pairName });
    if (pairName === 'missing') throw new BlockmirrorError('ERR_PAIR_UNKNOWN', `no pair ${pairName}`);
    const states: Record<string, string> = { suspend: 'suspended', resume: 'resyncing', takeover: 'simplex', failback: 'mirroring', resolve: 'resyncing', delete: 'deleted' };
    return { name: pairName, state: states[verb] };
  }

  async metrics(): Promise<{ contentType: string; text: string }> {
    return { contentType: 'text/plain; version=0.0.4; charset=utf-8', text: 'blockmirror_controller_info{controller="a"} 1\n' };
  }

  /** Pushes a 'change' event to every subscriber. */
  emit(subject: string, next: string, extra: Record<string, unknown> = {}): ArrayEvent {
    const event = { ...this.event('a', subject, 'change', 'up', next, 'dead-peer'), ...extra };
    for (const listener of [...this.listeners]) listener(event);
    return event;
  }

  private event(controller: string, subject: string, kind: 'exists' | 'change', old: string | null, next: string, reason: string | null): ArrayEvent {
    this.seq++;
    return { seq: this.seq, time: new Date(1_700_000_000_000 + this.seq).toISOString(), controller, subject, kind, old, new: next, reason };
  }

  private maybeFail(): void {
    const failure = this.failNext;
    this.failNext = undefined;
    if (failure !== undefined) throw failure;
  }

  private findLink(controllerId: string | undefined, peerId: string): Record<string, unknown> {
    const controller = this.state.controllers.find((entry) => entry.id === (controllerId ?? this.state.controllers[0]?.id));
    const found = (controller?.links as Record<string, unknown>[] | undefined)?.find((entry) => entry.peerId === peerId);
    if (found === undefined) throw new Error(`fake target: no link ${String(controllerId)} -> ${peerId}`);
    return found;
  }
}
