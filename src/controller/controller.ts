// Notes on the design
// -------------------
// One emulated storage controller: a stable id, its volumes, the exports it declares, its
// replication listener and one Link per configured peer. Several controllers may live in one
// process (tests, the built-in default, the simulator); each behaves as if alone: nothing is
// shared between them but the Network, Clock and Random they were given.
//
// Lifecycle, one setter over CONTROLLER_TRANSITIONS:
//   created -> starting -> running -> stopping -> stopped
//   starting -> stopped   (a volume or the listener failed: what was opened is closed again)
// close() stops everything start() started, in reverse order (links, listener, volumes flushed
// and closed) and waits for it; a second close() returns the same promise.
//
// Durable state (volumes, with their bitmaps) lives in regions the controller opens by name;
// everything else (links, listener, counters) is rebuilt on start. So a simulator can "crash" a
// controller in-process: drop the object without close(), keep the regions, start a new one.
//
// Events: every state change of the controller and of its links is emitted as 'event' (a
// ControllerEvent), which the host numbers and serves on /events.
//
// Layout: this module is the Controller class; its states, specs, options, event and status
// types are in controller-options.ts (re-exported here, so importers keep one path), and how
// the events of its parts (disks, snapshots, links, groups, pairs) become ControllerEvents is in
// controller-events.ts.

import { EventEmitter } from 'node:events';

import { BlockmirrorError } from '../errors';
import { type Clock, realClock } from '../runtime/clock';
import { type Random, realRandom } from '../runtime/random';
import type { Volume } from '../storage/volume';
import { LinkError } from '../transport/errors';
import type { FaultSettings } from '../transport/faults';
import { LINK_PROTOCOL_VERSION_MAX, LINK_PROTOCOL_VERSION_MIN } from '../transport/handshake';
import { Link, type LinkLogger } from '../transport/link';
import { LINK_DEFAULTS } from '../transport/limits';
import { LinkListener } from '../transport/link-listener';
import { tcpNetwork } from '../transport/tcp';
import { type Network, type NetworkAddress, formatAddress } from '../transport/wire';
import type { NbdVolume } from '../nbd/server';
import { Lockstep, type LockstepResult, type LockstepTarget } from '../replication/lockstep';
import { PairManager } from '../replication/pairs';
import { ControllerSnapshots } from './snapshots';
import { ControllerGroups } from '../cgroup/groups';
import { type OpenedVolume, openConfiguredVolume } from './volumes';
import { ControllerDisks } from './disks';
import {
  CONTROLLER_TRANSITIONS, type ControllerEvent, type ControllerExportSpec, type ControllerOptions, type ControllerState,
  type ControllerStatus, ID_PATTERN, SILENT,
} from './controller-options';
import {
  type ControllerEventSink, forwardDiskEvents, forwardGroupEvents, forwardLinkEvents, forwardPairEvents, forwardSnapshotEvents,
} from './controller-events';

export {
  CONTROLLER_TRANSITIONS, type ControllerEvent, type ControllerExportSpec, type ControllerOptions, type ControllerPeerSpec,
  type ControllerReplicationOptions, type ControllerState, type ControllerStatus,
} from './controller-options';

/** One emulated storage controller. */
export class Controller extends EventEmitter {
  readonly id: string;
  private state: ControllerState = 'created';
  private readonly clock: Clock;
  private readonly random: Random;
  private readonly network: Network;
  private readonly log: LinkLogger;
  private readonly options: ControllerOptions;
  private readonly opened: OpenedVolume[] = [];
  private readonly linkMap = new Map<string, Link>();
  private listener: LinkListener | undefined;
  private pairManager: PairManager | undefined;
  private readonly snapshotManager: ControllerSnapshots;
  private readonly diskManager: ControllerDisks;
  private closePromise: Promise<void> | undefined;
  /** Where the parts' events go (controller-events.ts). */
  private readonly sink: ControllerEventSink = {
    emitEvent: (fields) => this.emitEvent(fields),
    emit: (name, event) => { this.emit(name, event); },
  };

  constructor(options: ControllerOptions) {
    super();
    if (options === null || typeof options !== 'object') throw new TypeError('options must be an object');
    if (typeof options.id !== 'string' || !ID_PATTERN.test(options.id)) {
      throw new TypeError(`options.id must match ${ID_PATTERN}, got ${JSON.stringify(options.id)}`);
    }
    this.id = options.id;
    this.options = options;
    this.clock = options.clock ?? realClock;
    this.random = options.random ?? realRandom;
    this.network = options.network ?? tcpNetwork;
    this.log = options.logger?.child?.({ controller: options.id }) ?? options.logger ?? SILENT;
    const seen = new Set<string>();
    for (const [index, peer] of (options.peers ?? []).entries()) {
      if (typeof peer?.id !== 'string' || !ID_PATTERN.test(peer.id)) throw new TypeError(`options.peers[${index}].id must match ${ID_PATTERN}`);
      if (peer.id === this.id) throw new TypeError(`options.peers[${index}].id: a controller cannot be its own peer`);
      if (seen.has(peer.id)) throw new TypeError(`options.peers[${index}].id: duplicate peer ${peer.id}`);
      seen.add(peer.id);
    }
    const exportVolumes = new Set((options.volumes ?? []).map((volume) => volume.name));
    for (const [index, entry] of (options.exports ?? []).entries()) {
      if (!exportVolumes.has(entry.volume)) throw new TypeError(`options.exports[${index}].volume: no volume named ${entry.volume}`);
    }
    this.snapshotManager = new ControllerSnapshots({
      controllerId: this.id,
      volumes: () => this.opened,
      isSecondaryVolume: (name) => this.isSecondaryVolume(name),
      addVolume: (opened) => { this.opened.push(opened); },
      logger: this.log,
    });
    this.diskManager = new ControllerDisks({ controllerId: this.id, disks: options.disks ?? [], groups: options.groups ?? [], clock: this.clock, logger: this.log, ...options.raid,
      ...(options.workVolumes === undefined ? {} : { workVolumes: options.workVolumes }),
      ...(options.workDisks === undefined ? {} : { workDisks: options.workDisks }), ...(options.diversion === undefined ? {} : { diversion: options.diversion }) });
    forwardDiskEvents(this.diskManager, this.sink);
    forwardSnapshotEvents(this.snapshotManager, this.sink);
  }

  get currentState(): ControllerState {
    return this.state;
  }

  private setState(next: ControllerState, reason: string): void {
    const old = this.state;
    if (!CONTROLLER_TRANSITIONS[old].includes(next)) throw new Error(`controller ${this.id}: invalid transition ${old} -> ${next}`);
    this.state = next;
    this.log.info({ old, new: next, reason }, `controller ${this.id}: ${old} -> ${next} (${reason})`);
    this.emitEvent({ subject: 'controller', kind: 'change', old, new: next, reason });
  }

  private emitEvent(fields: Omit<ControllerEvent, 'time' | 'controller'>): void {
    // Nobody listening (a simulation's controllers): no time string to format.
    if (this.listenerCount('event') === 0) return;
    const event = { time: new Date(this.clock.wallTimeMs()).toISOString(), controller: this.id, ...fields } as ControllerEvent;
    this.emit('event', event);
  }

  private startPromise: Promise<void> | undefined;

  /** Opens the volumes, starts the listener, the pairs and the links. */
  start(): Promise<void> {
    if (this.startPromise === undefined) this.startPromise = this.doStart();
    return this.startPromise;
  }

  private async doStart(): Promise<void> {
    this.setState('starting', 'start');
    try {
      this.diskManager.open();
      for (const spec of this.options.volumes ?? []) {
        const opened = await openConfiguredVolume(spec);
        this.opened.push(opened);
        if (spec.group !== undefined) this.diskManager.layVolume(spec.name, opened.volume, spec.group);
        this.log.info({ volume: spec.name, backing: spec.backing ?? 'memory', opened: opened.opened }, `volume ${spec.name} open`);
      }
      // Before anything writes: a volume whose snapshots outlived the process refuses writes
      // through an object without its snapshot store.
      this.snapshotManager.openExisting();
      const replication = this.options.replication ?? {};
      const versions = this.options.linkVersions ?? { min: LINK_PROTOCOL_VERSION_MIN, max: LINK_PROTOCOL_VERSION_MAX };
      for (const peer of this.options.peers ?? []) {
        // One side dials: the one whose id sorts first, or the one that does not listen (the
        // peer could not dial it). See the design note of link.ts.
        const dial = peer.address !== undefined && (this.id < peer.id || replication.listen === undefined);
        const link = new Link({
          ...replication,
          selfId: this.id,
          peerId: peer.id,
          ...(peer.address === undefined ? {} : { address: peer.address }),
          dial,
          ...(peer.secret === undefined ? {} : { secret: peer.secret }),
          network: this.network,
          clock: this.clock,
          random: this.random,
          logger: this.log,
          versions,
        });
        forwardLinkEvents(link, peer.id, this.sink);
        this.linkMap.set(peer.id, link);
      }
      if (replication.listen !== undefined) {
        const listener = new LinkListener({
          selfId: this.id,
          address: replication.listen,
          network: this.network,
          clock: this.clock,
          random: this.random,
          logger: this.log,
          lookupLink: (peerId) => this.linkMap.get(peerId),
          versions,
          features: 0,
          maxFrameBytes: replication.maxFrameBytes ?? LINK_DEFAULTS.maxFrameBytes,
          handshakeTimeoutMs: replication.handshakeTimeoutMs ?? LINK_DEFAULTS.handshakeTimeoutMs,
          maxPendingConnections: replication.maxPendingConnections ?? LINK_DEFAULTS.maxPendingConnections,
        });
        this.listener = listener;
        let bound: NetworkAddress;
        try {
          bound = await listener.listen();
        } catch (error) {
          throw new BlockmirrorError('ERR_CONTROLLER_LISTEN',
            `controller ${this.id}: cannot listen for links on ${formatAddress(replication.listen)}: ` +
            `${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, { cause: error });
        }
        this.log.info({ listen: formatAddress(bound) }, `controller ${this.id}: replication listener on ${formatAddress(bound)}`);
      }
      {
        // Always present: a controller with no pairs still answers pair messages (refusing them).
        const managerOptions: ConstructorParameters<typeof PairManager>[0] = {
          controllerId: this.id,
          pairs: this.options.pairs ?? [],
          volume: (name) => this.volume(name),
          link: (peerId) => this.link(peerId),
          links: () => this.linkMap.values(),
          clock: this.clock,
          logger: this.log,
          random: this.random,
        };
        if (this.options.journal !== undefined) managerOptions.journal = this.options.journal;
        if (this.options.pairMutation !== undefined) managerOptions.mutation = this.options.pairMutation;
        if (this.options.keepResyncImages !== false) {
          const snapshots = this.snapshotManager;
          managerOptions.snapshots = {
            create: (volume, name) => { snapshots.create(volume, name); },
            delete: (volume, name) => snapshots.delete(volume, name),
            has: (volume, name) => snapshots.list(volume).some((entry) => entry.snapshots.some((snapshot) => snapshot.name === name)),
          };
        }
        const snapshots = this.snapshotManager;
        const groups = new ControllerGroups({
          controllerId: this.id,
          groups: this.options.consistencyGroups ?? [],
          ...(this.options.cgroupMutation === undefined ? {} : { mutation: this.options.cgroupMutation }),
          clock: this.clock,
          logger: this.log,
          link: (peerId) => this.link(peerId),
          links: () => this.linkMap.values(),
          replicated: (volume) => this.pairManager?.replicatedVolume(volume),
          snapshots: {
            create: (volume, name) => { snapshots.create(volume, name, { quiet: true }); },
            delete: (volume, name) => snapshots.delete(volume, name, { quiet: true }),
            names: (volume) => snapshots.list(volume)[0]?.snapshots.map((snapshot) => snapshot.name) ?? [],
          },
          volumes: () => this.opened.map((entry) => entry.spec.name),
          takeover: async (volume) => {
            const manager = this.pairManager as PairManager;
            for (const pair of manager.status()) {
              if (pair.volume === volume && pair.role === 'secondary') await manager.takeover(String(pair.name), { force: true });
            }
          },
          restore: (volume, name) => snapshots.restore(volume, name),
        });
        forwardGroupEvents(groups, this.sink);
        this.groupManager = groups;
        managerOptions.copies = groups.copies;
        const manager = new PairManager(managerOptions);
        forwardPairEvents(manager, this.sink);
        this.pairManager = manager;
        this.lockstepBarrier = new Lockstep(() => manager.lockstepMembers(), this.clock, this.log);
        manager.start();
        groups.start();
      }
      for (const link of this.linkMap.values()) link.start();
    } catch (error) {
      await this.release();
      this.setState('stopped', 'start failed');
      throw error;
    }
    this.setState('running', 'started');
  }

  /** The point-in-time copies of this controller's volumes (src/controller/snapshots.ts). */
  get snapshots(): ControllerSnapshots {
    return this.snapshotManager;
  }

  /** The disks and RAID groups of this controller (src/controller/disks.ts). */
  get disks(): ControllerDisks {
    return this.diskManager;
  }

  /** The replication listener's bound address (after start), or undefined. */
  get replicationAddress(): NetworkAddress | undefined {
    return this.listener?.address;
  }

  /** The opened volume with this name. */
  volume(name: string): Volume | undefined {
    return this.opened.find((entry) => entry.spec.name === name)?.volume;
  }

  /** The opened volumes. */
  get volumes(): readonly OpenedVolume[] {
    return this.opened;
  }

  /**
   * What the NBD server exports for `volumeName`: the replicated volume of a pair's primary
   * (writes complete at their ack point), else the volume itself.
   */
  exportVolume(volumeName: string): NbdVolume | undefined {
    return this.pairManager?.exportVolume(volumeName) ?? this.volume(volumeName);
  }

  /** True when `volumeName` is a pair's secondary: hosts may only read it. */
  isSecondaryVolume(volumeName: string): boolean {
    return this.pairManager?.isSecondaryVolume(volumeName) ?? false;
  }

  private lockstepBarrier: Lockstep | undefined;
  private groupManager: ControllerGroups | undefined;

  /** The consistency groups of this controller (after start; src/cgroup/groups.ts). */
  get groups(): ControllerGroups | undefined {
    return this.groupManager;
  }

  /**
   * The lockstep barrier: resolves 'done' once every write acknowledged before the call is
   * safe-stored on every receiver of the target's pairs; 'not-done' when the target protects
   * nothing here; 'disabled' when the operator switched it off. See src/replication/lockstep.ts.
   */
  lockstep(target: LockstepTarget = {}): Promise<LockstepResult> {
    if (this.lockstepBarrier === undefined || this.state !== 'running') return Promise.resolve('not-done');
    return this.lockstepBarrier.lockstep(target);
  }

  /** The operator switch of the lockstep barrier. */
  setLockstepEnabled(enabled: boolean): void {
    if (this.lockstepBarrier === undefined) throw new BlockmirrorError('ERR_PAIR_STATE', `controller ${this.id} is not running`);
    this.lockstepBarrier.setEnabled(enabled);
  }

  /** The pairs of this controller (after start). */
  get pairs(): PairManager | undefined {
    return this.pairManager;
  }

  /** The exports this controller declares. */
  get exports(): readonly ControllerExportSpec[] {
    return this.options.exports ?? [];
  }

  /** The links, one per configured peer. */
  get links(): ReadonlyMap<string, Link> {
    return this.linkMap;
  }

  /** The link to `peerId`; throws ERR_LINK_UNKNOWN_PEER. */
  link(peerId: string): Link {
    const link = this.linkMap.get(peerId);
    if (link === undefined) {
      const known = [...this.linkMap.keys()].join(', ') || 'none';
      throw new LinkError('ERR_LINK_UNKNOWN_PEER', `controller ${this.id} has no peer ${JSON.stringify(peerId)} (peers: ${known})`);
    }
    return link;
  }

  /** Sets faults on the link to `peerId` (see src/transport/faults.ts). */
  setLinkFaults(peerId: string, settings: FaultSettings): void {
    this.checkOpen();
    this.link(peerId).setFaults(settings);
  }

  /** Removes the faults of the link to `peerId`. */
  healLink(peerId: string): void {
    this.checkOpen();
    this.link(peerId).heal();
  }

  private checkOpen(): void {
    if (this.state === 'stopping' || this.state === 'stopped') {
      throw new BlockmirrorError('ERR_CONTROLLER_CLOSED', `controller ${this.id} is ${this.state}`);
    }
  }

  /** One 'exists' event per subject (the controller and each link), for a new /events reader. */
  currentEvents(): ControllerEvent[] {
    const time = new Date(this.clock.wallTimeMs()).toISOString();
    const events: ControllerEvent[] = [{ time, controller: this.id, subject: 'controller', kind: 'exists', old: null, new: this.state, reason: null }];
    for (const link of this.linkMap.values()) {
      const status = link.status();
      const event: ControllerEvent = { time, controller: this.id, subject: `link:${link.peerId}`, kind: 'exists', old: null, new: status.state, reason: status.reason };
      if (status.code !== undefined) event.code = status.code;
      if (status.detail !== undefined) event.detail = status.detail;
      if (status.faults !== null) event.faults = status.faults;
      events.push(event);
    }
    for (const pair of this.pairManager?.status() ?? []) {
      events.push({ time, controller: this.id, subject: `pair:${String(pair.name)}`, kind: 'exists', old: null,
        new: String(pair.state), reason: String(pair.reason), role: pair.role, consistency: pair.consistency });
    }
    return events;
  }

  status(): ControllerStatus {
    return {
      id: this.id,
      state: this.state,
      replication: {
        listen: this.listener?.address === undefined ? null : formatAddress(this.listener.address),
        listener: this.listener?.stats() ?? null,
      },
      links: [...this.linkMap.values()].map((link) => link.status()),
      pairs: this.pairManager?.status() ?? [],
      snapshots: this.snapshotManager.list().filter((entry) => entry.snapshots.length > 0).map((entry) => ({
        volume: entry.volume,
        snapshots: entry.snapshots.map((snapshot) => ({ ...snapshot, id: snapshot.id.toString(16).padStart(16, '0') })),
      })),
      journalGroups: this.pairManager?.groupStatus() ?? [],
      lockstep: this.lockstepBarrier?.status() ?? null,
      consistencyGroups: this.groupManager?.status() ?? null,
      raid: this.diskManager.status(this.opened.map(({ spec }) => ({ name: spec.name, group: spec.group }))),
      volumes: this.opened.map(({ spec, volume, opened }) => ({
        name: spec.name,
        sharedName: spec.sharedName ?? spec.name,
        backing: spec.backing ?? 'memory',
        capacityBytes: volume.closed ? spec.capacityBytes : volume.capacityBytes,
        blockSize: spec.blockSize ?? 4096,
        opened,
      })),
      exports: this.exports.map((entry) => ({
        name: entry.name, volume: entry.volume, readOnly: (entry.readOnly ?? false) || this.isSecondaryVolume(entry.volume),
        description: entry.description ?? '',
      })),
    };
  }

  /**
   * Stops: pairs stop, links say goodbye, the listener closes, volumes are flushed and closed.
   * Rejects with ERR_CONTROLLER_CLOSE when a step failed (each is logged). Idempotent; called
   * during start(), it waits for the start to end first.
   */
  close(): Promise<void> {
    if (this.closePromise === undefined) {
      this.closePromise = (async () => {
        if (this.state === 'created') {
          this.setState('stopped', 'closed before start');
          return;
        }
        if (this.state === 'starting') await this.startPromise?.catch(() => undefined);
        if (this.state !== 'running') return;
        this.setState('stopping', 'close');
        const problems = await this.release();
        this.setState('stopped', problems === 0 ? 'closed' : `closed with ${problems} problem(s)`);
        if (problems > 0) throw new BlockmirrorError('ERR_CONTROLLER_CLOSE', `controller ${this.id}: ${problems} problem(s) while closing; see the log`);
      })();
    }
    return this.closePromise;
  }

  /** Final per-volume stats taken before the volumes closed (for summaries). */
  finalVolumeStats: ReturnType<Volume['stats']>[] | undefined;

  private async release(): Promise<number> {
    let problems = 0;
    this.lockstepBarrier?.close();
    this.groupManager?.close();
    if (this.pairManager !== undefined) await this.pairManager.close();
    try {
      await this.snapshotManager.close();
    } catch (error) {
      problems++;
      this.log.error({ err: error }, 'closing the snapshot stores failed');
    }
    for (const link of this.linkMap.values()) await link.close();
    if (this.listener !== undefined) await this.listener.close();
    const stats: ReturnType<Volume['stats']>[] = new Array(this.opened.length);
    for (let index = this.opened.length - 1; index >= 0; index--) {
      const { spec, volume } = this.opened[index] as OpenedVolume;
      try {
        await volume.flush();
      } catch (error) {
        problems++;
        this.log.error({ err: error, volume: spec.name }, `flush of ${spec.name} failed`);
      }
      stats[index] = volume.stats();
      try {
        await volume.close();
      } catch (error) {
        problems++;
        this.log.error({ err: error, volume: spec.name }, `close of ${spec.name} failed`);
      }
    }
    this.finalVolumeStats = stats;
    this.diskManager.close();
    return problems;
  }

  /**
   * Drops this controller as a crash would (the simulator's tool): every timer and connection
   * stops at once, nothing is flushed or said to peers; named regions stay as they are. The
   * object is unusable afterwards.
   */
  crash(): void {
    this.groupManager?.crash();
    this.pairManager?.crash();
    for (const link of this.linkMap.values()) link.abandon();
    void this.listener?.close();
    this.removeAllListeners();
  }
}
