// Notes on the design
// -------------------
// A ControllerHost runs what one `blockmirror serve` process runs: one or more controllers, the
// one NBD server that exports their volumes (export names are unique across the host), and
// the admin endpoint's view of all of it (it implements AdminTarget).
//
// Start order: controllers (volumes, listeners, links), then the NBD server; close order is
// the reverse: the NBD server answers what is in flight and stops, then each controller closes
// (links say goodbye, volumes are flushed and closed). A failed start closes what started.
//
// Events: each controller's events get a host-wide sequence number and go to every subscriber
// (the admin endpoint's /events readers) and into a bounded ring of recent events.

import type { DiskRequest } from '../admin/disk-routes';
import { BlockmirrorError } from '../errors';
import type { AdminTarget, ArrayEvent, ArrayEventListener, GroupRequest, SnapshotRequest } from '../admin/target';
import type { CgroupSpec } from '../cgroup/types';
import type { LockstepTarget } from '../replication/lockstep';
import type { PairManager, PairRoleEvent, PairSpec } from '../replication/pairs';
import type { NbdVolume } from '../nbd/server';
import type { Volume } from '../storage/volume';
import { NbdServer, type NbdServerOptions } from '../nbd/server';
import type { NbdListenOptions } from '../nbd/index';
import type { FaultSettings } from '../transport/faults';
import { Controller, type ControllerEvent, type ControllerOptions } from './controller';
import type { SnapshotEvent } from './snapshots';
import type { SnapshotStatus } from '../storage/snapshot';

/** Options of a ControllerHost. */
export interface ControllerHostOptions {
  controllers: ControllerOptions[];
  /** The NBD server of every controller's exports; absent: no NBD. @default undefined */
  nbd?: {
    listen: NbdListenOptions[];
    maxPayloadBytes?: number;
    logger?: NbdServerOptions['logger'];
    /** Worker threads for NBD connections to plain volumes (NbdServerOptions.workers). @default 0 */
    workers?: number;
    /** Native lanes for NBD connections to plain volumes (NbdServerOptions.nativeLanes). @default false */
    nativeLanes?: boolean;
  };
  /** Recent events kept for status. @default 1000 */
  recentEventCount?: number;
}

/** What a host's status says (the admin endpoint's GET /status). */
export interface HostStatus {
  pid: number;
  uptimeMs: number;
  controllers: (ReturnType<Controller['status']> & { exports: Record<string, unknown>[] })[];
  nbd: Record<string, unknown> | null;
}

/** Runs controllers and their NBD server. */
export class ControllerHost implements AdminTarget {
  readonly controllers: Controller[];
  private server: NbdServer | undefined;
  /** Clone names being made (snapshot clone), reserved in the serve's export name space. */
  private readonly pendingClones = new Set<string>();
  private readonly listeners = new Set<ArrayEventListener>();
  private readonly recent: ArrayEvent[] = [];
  private readonly recentLimit: number;
  private nextSeq = 1;
  private startedAtMs = Date.now();
  private closePromise: Promise<number> | undefined;
  private metricsSource: (() => Promise<{ contentType: string; text: string }>) | undefined;

  constructor(private readonly options: ControllerHostOptions) {
    if (!Array.isArray(options?.controllers) || options.controllers.length === 0) {
      throw new TypeError('options.controllers must be a non-empty array');
    }
    const ids = new Set<string>();
    const exportNames = new Set<string>();
    for (const [index, controller] of options.controllers.entries()) {
      if (ids.has(controller.id)) throw new TypeError(`options.controllers[${index}].id: duplicate controller id ${controller.id}`);
      ids.add(controller.id);
      for (const entry of controller.exports ?? []) {
        if (exportNames.has(entry.name)) throw new TypeError(`options.controllers[${index}]: duplicate export name ${entry.name}`);
        exportNames.add(entry.name);
      }
    }
    this.recentLimit = options.recentEventCount ?? 1000;
    this.controllers = options.controllers.map((controllerOptions) => {
      const controller = new Controller(controllerOptions);
      controller.on('event', (event: ControllerEvent) => this.publish(event));
      return controller;
    });
  }

  private publish(event: ControllerEvent): void {
    const numbered = { seq: this.nextSeq++, ...event } as ArrayEvent;
    this.recent.push(numbered);
    if (this.recent.length > this.recentLimit) this.recent.shift();
    for (const listener of this.listeners) {
      try {
        listener(numbered);
      } catch {
        // A subscriber's failure is its own; the others still get the event.
      }
    }
  }

  /** The NBD server (after start, when configured). */
  get nbd(): NbdServer | undefined {
    return this.server;
  }

  /** The controller with this id. */
  controller(id: string): Controller | undefined {
    return this.controllers.find((controller) => controller.id === id);
  }

  /** Starts every controller, then the NBD server. */
  async start(): Promise<void> {
    this.startedAtMs = Date.now();
    const started: Controller[] = [];
    try {
      for (const controller of this.controllers) {
        await controller.start();
        started.push(controller);
      }
      if (this.options.nbd !== undefined) {
        // A pair's primary is exported through its replicated volume (writes complete at their
        // ack point); a pair's secondary is read-only to hosts.
        const exports = this.controllers.flatMap((controller) => controller.exports.map((entry) => ({
          name: entry.name,
          volume: controller.exportVolume(entry.volume) as NonNullable<ReturnType<Controller['exportVolume']>>,
          readOnly: (entry.readOnly ?? false) || controller.isSecondaryVolume(entry.volume),
          description: entry.description ?? '',
        })));
        if (exports.length > 0) {
          const serverOptions: NbdServerOptions = { exports, listen: this.options.nbd.listen };
          if (this.options.nbd.maxPayloadBytes !== undefined) serverOptions.maxPayloadBytes = this.options.nbd.maxPayloadBytes;
          if (this.options.nbd.logger !== undefined) serverOptions.logger = this.options.nbd.logger;
          if (this.options.nbd.workers !== undefined) serverOptions.workers = this.options.nbd.workers;
          if (this.options.nbd.nativeLanes !== undefined) serverOptions.nativeLanes = this.options.nbd.nativeLanes;
          const server = new NbdServer(serverOptions);
          this.server = server;
          // A takeover makes a secondary's export read-write; a demotion or a handover makes a
          // primary's read-only (connections opened before keep their flags; their writes get
          // EPERM from the pair's volume).
          for (const controller of this.controllers) {
            controller.on('role', (event: PairRoleEvent) => {
              for (const entry of controller.exports) {
                if (entry.volume === event.volume) server.setExportReadOnly(entry.name, (entry.readOnly ?? false) || !event.writable);
              }
            });
            // A pair created or deleted at run time: the export is served through the pair's
            // volume, or through the plain volume again.
            controller.on('export', (event: { volume: string; target: NbdVolume & { writable?: boolean } }) => {
              for (const entry of controller.exports) {
                if (entry.volume !== event.volume) continue;
                server.setExportVolume(entry.name, event.target as unknown as Volume);
                server.setExportReadOnly(entry.name, (entry.readOnly ?? false) || event.target.writable === false);
              }
            });
            controller.on('snapshot', (event: SnapshotEvent) => this.exportSnapshot(server, controller, event));
            // Snapshots that outlived the process are exported again.
            for (const { volume, snapshots } of controller.snapshots.list()) {
              for (const snapshot of snapshots) {
                this.exportSnapshot(server, controller, {
                  kind: 'created', volume, name: snapshot.name, snapshot: snapshot.name, target: controller.snapshots.exportOf(volume, snapshot.name),
                });
              }
            }
          }
          await server.listen();
        }
      }
    } catch (error) {
      if (this.server !== undefined) await this.server.close({ graceful: false }).catch(() => undefined);
      for (const controller of started.reverse()) await controller.close().catch(() => undefined);
      throw error;
    }
  }

  /**
   * A snapshot of an exported volume is exported read-only as <export>@<snapshot> (for each
   * export of the volume); a deleted one stops being exported; a clone is exported read-write
   * under its own name.
   */
  private exportSnapshot(server: NbdServer, controller: Controller, event: SnapshotEvent): void {
    if (event.kind === 'cloned') {
      server.addExport({ name: event.name, volume: event.target as unknown as Volume, description: `clone of ${event.volume}@${event.snapshot}` });
      return;
    }
    const names = controller.exports.filter((entry) => entry.volume === event.volume).map((entry) => `${entry.name}@${event.snapshot}`);
    if (event.kind === 'created') {
      // The volume has a snapshot store now: worker threads cannot preserve for it, so its
      // exports' connections there end and reconnect to the main loop (src/nbd/worker-pool.ts).
      for (const entry of controller.exports) if (entry.volume === event.volume) server.moveExportToMainLoop(entry.name);
      for (const name of names) {
        server.addExport({ name, volume: event.target as unknown as Volume, readOnly: true, description: `snapshot ${event.snapshot} of ${event.volume}` });
      }
    } else {
      for (const name of names) server.removeExport(name);
    }
  }

  /** A consistency-group verb (src/cgroup/groups.ts) on a controller. */
  async group(controllerId: string | undefined, request: GroupRequest): Promise<unknown> {
    const controller = this.pick(controllerId);
    const groups = controller.groups;
    if (groups === undefined) throw new BlockmirrorError('ERR_CONTROLLER_CLOSED', `controller ${controller.id} is not running`);
    const name = request.name as string;
    switch (request.verb) {
      case 'create': return groups.create(request.group as unknown as CgroupSpec);
      case 'status': return request.name === undefined ? groups.status() : groups.groupStatus(name);
      case 'start': return groups.setRunning(name, true);
      case 'stop': return groups.setRunning(name, false);
      case 'delete': groups.delete(name); return { name, deleted: true };
      case 'held': return groups.held(name);
      default: {
        const options: { cycle?: number; mode?: 'export' | 'restore' } = {};
        if (request.cycle !== undefined) options.cycle = request.cycle;
        if (request.mode !== undefined) options.mode = request.mode;
        return groups.recover(name, options);
      }
    }
  }

  /** A snapshot verb (src/controller/snapshots.ts) on a controller; ids shown as hex. */
  async disk(controllerId: string | undefined, request: DiskRequest): Promise<unknown> {
    const controller = this.pick(controllerId);
    const disks = controller.disks;
    const name = request.disk as string;
    switch (request.verb) {
      case 'list': return controller.status().raid;
      case 'fault': {
        let index: number;
        try {
          index = disks.fault(name, request.fault ?? {});
        } catch (error) {
          // The disk's own range checks (a range past its end, errno 0 without latency).
          if (error instanceof RangeError || error instanceof TypeError) throw new BlockmirrorError('ERR_ADMIN_BAD_REQUEST', error.message);
          throw error;
        }
        return { disk: name, index, faults: disks.list().find((entry) => entry.disk === name)?.faults ?? [] };
      }
      case 'fail': disks.fail(name); break;
      default: disks.heal(name); break;
    }
    return { disk: name, status: disks.list().find((entry) => entry.disk === name)?.status };
  }

  async snapshot(controllerId: string | undefined, request: SnapshotRequest): Promise<unknown> {
    const snapshots = this.pick(controllerId).snapshots;
    const shown = (status: SnapshotStatus): Record<string, unknown> => ({ ...status, id: status.id.toString(16).padStart(16, '0') });
    const volume = request.volume as string;
    const name = request.name as string;
    switch (request.verb) {
      case 'create': return shown(snapshots.create(volume, name));
      case 'list': return snapshots.list(request.volume).map((entry) => ({ volume: entry.volume, snapshots: entry.snapshots.map(shown) }));
      case 'delete': snapshots.delete(volume, name); return { volume, name, deleted: true };
      case 'restore': return { volume, name, restoredBytes: snapshots.restore(volume, name) };
      default: {
        // The clone is exported under its own name, in the serve's one export name space (every
        // controller's exports): a name already exported is refused before anything is made.
        const cloneName = request.clone as string;
        if (this.server?.findExport(cloneName) != null || this.pendingClones.has(cloneName)) {
          throw new BlockmirrorError('ERR_SNAPSHOT_EXISTS', `an export named ${JSON.stringify(cloneName)} exists or is being made; a clone is exported under its own name`);
        }
        // Reserved until the clone is exported (or failed): two clones of one name, on any
        // controllers, cannot both pass the check while the first is still being made.
        this.pendingClones.add(cloneName);
        try {
          return await snapshots.clone(volume, name, cloneName);
        } finally {
          this.pendingClones.delete(cloneName);
        }
      }
    }
  }

  /**
   * Stops: the NBD server answers requests in flight (within `timeoutMs`, then connections are
   * cut), then every controller closes. Resolves with the number of steps that failed.
   */
  close(options: { timeoutMs?: number; onSlow?: () => void } = {}): Promise<number> {
    if (this.closePromise === undefined) {
      this.closePromise = (async () => {
        let problems = 0;
        const server = this.server;
        if (server !== undefined) {
          let timer: NodeJS.Timeout | undefined;
          try {
            const forced = new Promise<'timeout'>((resolve) => {
              timer = setTimeout(() => resolve('timeout'), options.timeoutMs ?? 30_000);
            });
            const outcome = await Promise.race([server.close({ graceful: true }).then(() => 'closed' as const), forced]);
            if (outcome === 'timeout') {
              options.onSlow?.();
              await server.close({ graceful: false });
            }
          } catch {
            problems++;
          } finally {
            if (timer !== undefined) clearTimeout(timer);
          }
        }
        for (const controller of [...this.controllers].reverse()) {
          try {
            await controller.close();
          } catch {
            problems++;
          }
        }
        return problems;
      })();
    }
    return this.closePromise;
  }

  // ---- AdminTarget ---------------------------------------------------------------------------

  status(): Record<string, unknown> {
    const exportStats = new Map((this.server?.exportStats() ?? []).map((entry) => [entry.name, entry]));
    const status: HostStatus = {
      pid: process.pid,
      uptimeMs: Date.now() - this.startedAtMs,
      controllers: this.controllers.map((controller) => {
        const base = controller.status();
        return {
          ...base,
          exports: base.exports.map((entry) => {
            const stats = exportStats.get(entry.name);
            return stats === undefined ? entry : { ...entry, requests: stats.requests, bytesRead: stats.bytesRead, bytesWritten: stats.bytesWritten };
          }),
        };
      }),
      nbd: this.server === undefined
        ? null
        : { addresses: this.server.addresses().map((address) => address.uri), ...this.server.stats() },
    };
    return status as unknown as Record<string, unknown>;
  }

  currentEvents(): ArrayEvent[] {
    return this.controllers.flatMap((controller) => controller.currentEvents())
      .map((event) => ({ seq: 0, ...event }) as ArrayEvent);
  }

  /** The most recent events (at most recentEventCount). */
  recentEvents(): readonly ArrayEvent[] {
    return this.recent;
  }

  subscribe(listener: ArrayEventListener): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  controllerIds(): string[] {
    return this.controllers.map((controller) => controller.id);
  }

  private pick(controllerId: string | undefined): Controller {
    if (controllerId === undefined) {
      if (this.controllers.length === 1) return this.controllers[0] as Controller;
      throw new BlockmirrorError('ERR_ADMIN_CONTROLLER_REQUIRED',
        `this serve runs ${this.controllers.length} controllers (${this.controllerIds().join(', ')}): name one`);
    }
    const controller = this.controller(controllerId);
    if (controller === undefined) {
      throw new BlockmirrorError('ERR_ADMIN_UNKNOWN_CONTROLLER',
        `no controller ${JSON.stringify(controllerId)} (controllers: ${this.controllerIds().join(', ')})`);
    }
    return controller;
  }

  setLinkFaults(controllerId: string | undefined, peerId: string, settings: FaultSettings): void {
    this.pick(controllerId).setLinkFaults(peerId, settings);
  }

  healLink(controllerId: string | undefined, peerId: string): void {
    this.pick(controllerId).healLink(peerId);
  }

  suspendPair(controllerId: string | undefined, pairName: string): Record<string, unknown> {
    return this.primaryPairs(controllerId, pairName).suspend(pairName);
  }

  resumePair(controllerId: string | undefined, pairName: string): Record<string, unknown> {
    return this.primaryPairs(controllerId, pairName).resume(pairName);
  }

  takeoverPair(controllerId: string | undefined, pairName: string, options: { force?: boolean } = {}): Promise<Record<string, unknown>> {
    return this.pairsOf(controllerId, pairName, (pair) => pair.role === 'secondary').takeover(pairName, options);
  }

  takeoverGroup(controllerId: string | undefined, group: string, options: { force?: boolean } = {}): Promise<Record<string, unknown>[]> {
    return this.managerHolding(controllerId, (pair) => pair.journalGroup === group, (pair) => pair.role === 'secondary', `a journal group ${JSON.stringify(group)}`)
      .takeoverGroup(group, options);
  }

  failbackGroup(controllerId: string | undefined, group: string): Promise<Record<string, unknown>[]> {
    // Either side of the group does it; the one out of its declared roles is preferred.
    return this.managerHolding(controllerId, (pair) => pair.journalGroup === group, (pair) => pair.role !== pair.declaredRole, `a journal group ${JSON.stringify(group)}`)
      .failbackGroup(group);
  }

  failbackPair(controllerId: string | undefined, pairName: string): Promise<Record<string, unknown>> {
    // Both sides are out of their declared roles; the current primary drains and hands over.
    return this.pairsOf(controllerId, pairName, (pair) => pair.role === 'primary' && pair.declaredRole === 'secondary').failback(pairName);
  }

  createPair(controllerId: string | undefined, spec: PairSpec): Record<string, unknown> {
    const controller = this.pick(controllerId);
    if (controller.pairs === undefined) throw new BlockmirrorError('ERR_PAIR_BAD_SPEC', `controller ${controller.id} is not running`);
    return controller.pairs.create(spec);
  }

  async deletePair(controllerId: string | undefined, pairName: string): Promise<Record<string, unknown>> {
    await this.pairsOf(controllerId, pairName, () => true).delete(pairName);
    return { name: pairName, state: 'deleted' };
  }

  lockstep(controllerId: string | undefined, target: LockstepTarget): Promise<string> {
    return this.lockstepController(controllerId, target).lockstep(target);
  }

  setLockstepEnabled(controllerId: string | undefined, enabled: boolean): void {
    if (controllerId === undefined && this.controllers.length > 1) {
      for (const controller of this.controllers) controller.setLockstepEnabled(enabled);
      return;
    }
    this.pick(controllerId).setLockstepEnabled(enabled);
  }

  /** The named controller, or the one that is the primary of every named pair or volume. */
  private lockstepController(controllerId: string | undefined, target: LockstepTarget): Controller {
    if (controllerId !== undefined || this.controllers.length === 1) return this.pick(controllerId);
    const holders = this.controllers.filter((controller) => (controller.pairs?.status() ?? []).some((pair) => pair.role === 'primary' &&
      ((target.pairs ?? []).includes(pair.name as string) || [...(target.volumes ?? []), ...(target.journals ?? [])].includes(pair.volume as string))));
    if (holders.length === 1) return holders[0] as Controller;
    const primaries = this.controllers.filter((controller) => (controller.pairs?.status() ?? []).some((pair) => pair.role === 'primary'));
    if (target.pairs === undefined && target.volumes === undefined && target.journals === undefined && primaries.length === 1) return primaries[0] as Controller;
    return this.pick(controllerId);
  }

  resolvePair(controllerId: string | undefined, pairName: string, keep: 'primary' | 'secondary'): Promise<Record<string, unknown>> {
    return this.pairsOf(controllerId, pairName, (pair) => pair.state === 'split-brain').resolve(pairName, keep);
  }

  /**
   * The pairs of the controller that holds `pairName`: the named one, or the only one that
   * holds it, or the only one whose side of it matches `prefer` (both sides in one process).
   */
  private pairsOf(controllerId: string | undefined, pairName: string, prefer: (pair: Record<string, unknown>) => boolean): PairManager {
    return this.managerHolding(controllerId, (pair) => pair.name === pairName, prefer, `a pair ${JSON.stringify(pairName)}`);
  }

  /**
   * The pairs of the named controller, or (none named) of the one controller with a pair that
   * `holds` matches, or the only one of those whose matching pair also matches `prefer`.
   * `what` names the thing looked for in ERR_PAIR_UNKNOWN.
   */
  private managerHolding(controllerId: string | undefined, holds: (pair: Record<string, unknown>) => boolean,
    prefer: (pair: Record<string, unknown>) => boolean, what: string): PairManager {
    if (controllerId === undefined) {
      const holders = this.controllers.filter((controller) => controller.pairs?.status().some(holds));
      if (holders.length === 1) return (holders[0] as Controller).pairs as PairManager;
      const preferred = holders.filter((controller) => controller.pairs?.status().some((pair) => holds(pair) && prefer(pair)));
      if (preferred.length === 1) return (preferred[0] as Controller).pairs as PairManager;
      if (holders.length === 0) throw new BlockmirrorError('ERR_PAIR_UNKNOWN', `no controller here declares ${what}`);
    }
    const controller = this.pick(controllerId);
    if (controller.pairs === undefined) throw new BlockmirrorError('ERR_PAIR_UNKNOWN', `controller ${controller.id} has no pairs`);
    return controller.pairs;
  }

  /** The primary side of a pair: on the named controller, or the one controller that has it. */
  /** The pairs of the controller holding the primary side of `pairName` (ERR_PAIR_UNKNOWN). */
  private primaryPairs(controllerId: string | undefined, pairName: string): NonNullable<Controller['pairs']> {
    if (controllerId === undefined) {
      const holders = this.controllers.filter((controller) => controller.pairs?.status().some((pair) => pair.name === pairName && pair.role === 'primary'));
      if (holders.length === 1) return (holders[0] as Controller).pairs as NonNullable<Controller['pairs']>;
    }
    const controller = this.pick(controllerId);
    if (controller.pairs === undefined) {
      throw new BlockmirrorError('ERR_PAIR_UNKNOWN', `controller ${controller.id} has no pairs`);
    }
    controller.pairs.primary(pairName);
    return controller.pairs;
  }

  /** Sets where metrics() gets its text (the admin layer's registry). */
  useMetrics(source: () => Promise<{ contentType: string; text: string }>): void {
    this.metricsSource = source;
  }

  metrics(): Promise<{ contentType: string; text: string }> {
    if (this.metricsSource === undefined) return Promise.resolve({ contentType: 'text/plain; version=0.0.4', text: '' });
    return this.metricsSource();
  }
}
