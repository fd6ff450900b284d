// Notes on the design
// -------------------
// A controller's consistency groups: for every group it declares, the slave side of its own
// rows (slave.ts) and, when it is the group's master, the cycle (master.ts); for every group whose
// pairs end here as secondaries, the consistent copies (copies.ts, driven by PAIR_CG_CUT through
// the pairs). The master reaches the other controllers over the links (CGROUP_PREPARE, CGROUP_RUN,
// CGROUP_RESULT: messages.ts) and its own rows directly. A controller answers cycle messages only
// for groups it declares and only from the group's master: a peer can never hold this
// controller's writes for a group it did not declare.
//
// Events: `cgroup:<name>` on create and delete, on the first failure after a formed cycle (or
// the first ever), on the first formed cycle after failures, and on recover; not on every
// formed cycle (a group may form several per second).

import { EventEmitter } from 'node:events';

import type { Clock } from '../runtime/clock';
import type { Link, LinkLogger, LinkMessage } from '../transport/link';
import { MessageType } from '../transport/message-types';
import type { ReplicatedVolume } from '../replication/replicated-volume';
import { type CopySnapshots, type HeldCopies, SecondaryCopies } from './copies';
import { type CycleOutcome, CgroupMaster, type MasterTransport } from './master';
import {
  decodeCuts, decodeDrained, decodePrepare, decodeResult, decodeRun, encodeCuts, encodeDrained, encodePrepare, encodeResult, encodeRun,
} from './messages';
import { newestCommonCycle } from './recover';
import { CgroupSlave } from './slave';
import { type CgroupSpec, CgroupError, cgroupSpecProblems, copyName, limitsOf, masterOf } from './types';

export interface ControllerGroupsOptions {
  controllerId: string;
  groups: CgroupSpec[];
  clock: Clock;
  logger: LinkLogger;
  link(peerId: string): Link;
  links(): Iterable<Link>;
  replicated(volume: string): ReplicatedVolume | undefined;
  snapshots: CopySnapshots;
  volumes(): Iterable<string>;
  /** Takes over the pair whose secondary is `volume` here (recover --restore). */
  takeover(volume: string, group: string): Promise<void>;
  restore(volume: string, snapshot: string): number;
  /** A deliberate bug for the dependent-write check's own test (slave.ts). @default none */
  mutation?: 'no-hold';
}

/** A group event (the controller turns it into a ControllerEvent). */
export interface GroupEvent {
  group: string;
  old: string | null;
  new: string;
  reason: string;
  [key: string]: unknown;
}

/** What `group recover` did on this controller. */
export interface RecoverResult {
  group: string;
  cycle: number;
  mode: 'export' | 'restore';
  volumes: { volume: string; snapshot: string; restoredBytes?: number }[];
}

interface Group {
  spec: CgroupSpec;
  slave?: CgroupSlave;
  master?: CgroupMaster;
  /** The last outcome the events reported ('formed' or 'failed'). */
  reported?: 'formed' | 'failed';
}

export class ControllerGroups extends EventEmitter {
  private readonly groups = new Map<string, Group>();
  readonly copies: SecondaryCopies;
  private readonly attached = new Set<Link>();
  private closed = false;

  constructor(private readonly options: ControllerGroupsOptions) {
    super();
    this.copies = new SecondaryCopies(options.snapshots, options.volumes);
    for (const spec of options.groups) this.add(spec);
  }

  /** Registers the group protocol on every link (once each). */
  start(): void {
    for (const link of this.options.links()) this.attach(link);
    for (const group of this.groups.values()) if (group.spec.autoStart !== false) group.master?.start();
  }

  private attach(link: Link): void {
    if (this.attached.has(link)) return;
    this.attached.add(link);
    link.handle(MessageType.CGROUP_PREPARE, (payload) => {
      const message = decodePrepare(payload);
      return encodeCuts(this.slaveFor(link.peerId, message.group).prepare(message));
    });
    link.handle(MessageType.CGROUP_RUN, async (payload) => {
      const message = decodeRun(payload);
      return encodeDrained(await this.slaveFor(link.peerId, message.group).run(message));
    });
    link.on('message', (message: LinkMessage) => {
      if (message.type !== MessageType.CGROUP_RESULT) return;
      try {
        const result = decodeResult(message.payload);
        this.slaveFor(link.peerId, result.group).result(result);
      } catch (error) {
        this.options.logger.warn({ peer: link.peerId, err: String(error) }, `consistency group result from ${link.peerId} refused: ${(error as Error).message}`);
      }
    });
  }

  /** The slave of `group` here, for a message from `from` (the group's master only). */
  private slaveFor(from: string, group: string): CgroupSlave {
    const slave = this.groups.get(group)?.slave;
    if (slave === undefined) throw new CgroupError('ERR_CGROUP_UNKNOWN', `controller ${this.options.controllerId} declares no consistency group ${JSON.stringify(group)} with rows of its own`);
    if (slave.master !== from) throw new CgroupError('ERR_CGROUP_UNKNOWN', `consistency group ${group}: its master is ${slave.master}, not ${from}`);
    return slave;
  }

  /** Declares a group at run time (and starts its cycles when this controller is its master). */
  create(spec: CgroupSpec): Record<string, unknown> {
    if (this.closed) throw new CgroupError('ERR_CGROUP_UNKNOWN', `controller ${this.options.controllerId} is closing`);
    const group = this.add(spec);
    if (spec.autoStart !== false) group.master?.start();
    this.emitEvent({ group: spec.name, old: null, new: 'created', reason: 'operator' });
    return this.statusOf(group);
  }

  private add(spec: CgroupSpec): Group {
    const problems = cgroupSpecProblems(spec);
    if (problems.length > 0) throw new CgroupError('ERR_CGROUP_BAD_SPEC', `consistency group ${String(spec?.name)}: ${problems.join('; ')}`);
    if (this.groups.has(spec.name)) throw new CgroupError('ERR_CGROUP_EXISTS', `consistency group ${spec.name} exists on ${this.options.controllerId}`);
    const id = this.options.controllerId;
    const rows = spec.relationships.filter((row) => row.controller === id);
    const master = masterOf(spec);
    if (rows.length === 0 && master !== id) {
      throw new CgroupError('ERR_CGROUP_BAD_SPEC', `consistency group ${spec.name}: no relationship names controller ${id}`);
    }
    // The master talks to every other controller of the table, each slave to the master.
    const needed = master === id ? [...new Set(spec.relationships.map((row) => row.controller))].filter((other) => other !== id) : [master];
    for (const peer of needed) {
      try {
        this.options.link(peer);
      } catch {
        throw new CgroupError('ERR_CGROUP_BAD_SPEC', `consistency group ${spec.name}: controller ${peer} is not a peer of ${id} (the ${master === id ? 'master needs a link to every controller of the table' : 'slave needs a link to its master'})`);
      }
    }
    const group: Group = { spec };
    const { clock, logger } = this.options;
    if (rows.length > 0) {
      const limits = limitsOf(spec);
      group.slave = new CgroupSlave(spec.name, master, rows, { replicated: (volume) => this.options.replicated(volume) }, clock, logger, this.options.mutation,
        { maxHoldMs: limits.maxCoordinationMs, maxDrainMs: Math.max(limits.maxDrainMs, limits.overrideDrainMs) });
    }
    if (master === id) {
      const transport = this.transport(group);
      const cycler = new CgroupMaster(spec.name, spec, limitsOf(spec), transport, clock, logger);
      cycler.on('cycle', (outcome: CycleOutcome) => this.onCycle(group, outcome));
      group.master = cycler;
    }
    this.groups.set(spec.name, group);
    return group;
  }

  /** The master's way to each controller: its own slave directly, the others over their links. */
  private transport(group: Group): MasterTransport {
    const self = this.options.controllerId;
    return {
      prepare: async (controller, message, timeoutMs) => {
        if (controller === self) return (group.slave as CgroupSlave).prepare(message);
        return decodeCuts(await this.options.link(controller).request(MessageType.CGROUP_PREPARE, encodePrepare(message), { timeoutMs }));
      },
      run: async (controller, message, timeoutMs) => {
        if (controller === self) return (group.slave as CgroupSlave).run(message);
        return decodeDrained(await this.options.link(controller).request(MessageType.CGROUP_RUN, encodeRun(message), { timeoutMs }));
      },
      result: (controller, message) => {
        if (controller === self) group.slave?.result(message);
        else this.options.link(controller).send(MessageType.CGROUP_RESULT, encodeResult(message));
      },
    };
  }

  private onCycle(group: Group, outcome: CycleOutcome): void {
    this.emit('cycle', outcome);
    const now = outcome.formed ? 'formed' : 'failed';
    if (group.reported === now) return;
    const old = group.reported ?? null;
    group.reported = now;
    this.emitEvent({ group: outcome.group, old, new: now, reason: outcome.reason ?? 'cycle', cycle: outcome.cycle, ...(outcome.detail === '' ? {} : { detail: outcome.detail }) });
  }

  private emitEvent(event: GroupEvent): void {
    this.emit('event', event);
  }

  private group(name: string): Group {
    const group = this.groups.get(name);
    if (group === undefined) throw new CgroupError('ERR_CGROUP_UNKNOWN', `controller ${this.options.controllerId} declares no consistency group ${JSON.stringify(name)}`);
    return group;
  }

  /** The master of `name` here; throws ERR_CGROUP_UNKNOWN when this controller is not it. */
  master(name: string): CgroupMaster {
    const master = this.group(name).master;
    if (master === undefined) throw new CgroupError('ERR_CGROUP_UNKNOWN', `controller ${this.options.controllerId} is not the master of consistency group ${name}`);
    return master;
  }

  /** Starts or stops the cycles of a group this controller is the master of. */
  setRunning(name: string, running: boolean): Record<string, unknown> {
    const master = this.master(name);
    if (running) master.start();
    else master.stop();
    this.emitEvent({ group: name, old: null, new: running ? 'started' : 'stopped', reason: 'operator' });
    return this.statusOf(this.group(name));
  }

  /** Takes a group out (its cycles stop, a hold releases); the copies stay. */
  delete(name: string): void {
    const group = this.group(name);
    group.master?.close();
    group.slave?.close();
    this.groups.delete(name);
    this.emitEvent({ group: name, old: null, new: 'deleted', reason: 'operator' });
  }

  private statusOf(group: Group): Record<string, unknown> {
    return {
      name: group.spec.name,
      master: masterOf(group.spec),
      relationships: group.spec.relationships.map((row) => ({ ...row })),
      ...(group.master === undefined ? {} : { cycles: group.master.status() }),
      ...(group.slave === undefined ? {} : { slave: group.slave.status() }),
    };
  }

  /** Every group declared here, and the copies held here as a secondary. */
  status(): { groups: Record<string, unknown>[]; copies: HeldCopies[] } {
    return {
      groups: [...this.groups.values()].map((group) => this.statusOf(group)),
      copies: this.copies.held(),
    };
  }

  /** The status of one group (ERR_CGROUP_UNKNOWN when neither declared nor held here). */
  groupStatus(name: string): Record<string, unknown> {
    const copies = this.copies.held().filter((entry) => entry.group === name);
    const group = this.groups.get(name);
    if (group === undefined && copies.length === 0) this.group(name);
    return { ...(group === undefined ? { name } : this.statusOf(group)), copies };
  }

  /** The copies of `group` held here (recover's input). */
  held(group: string): HeldCopies[] {
    return this.copies.held().filter((entry) => entry.group === group);
  }

  /**
   * Recovers `group` on this controller (a secondary of its pairs): `cycle` (default: the newest
   * every volume here holds; a cross-controller recover passes the newest every member holds)
   * is exported (its snapshots are readable as <export>@cg.<group>.<cycle>), or with
   * mode 'restore' each volume's pair is taken over and the copy restored onto it.
   */
  async recover(groupName: string, options: { cycle?: number; mode?: 'export' | 'restore' } = {}): Promise<RecoverResult> {
    const held = this.held(groupName);
    if (held.length === 0) throw new CgroupError('ERR_CGROUP_NO_COPY', `controller ${this.options.controllerId} holds no consistent copy of group ${groupName}`);
    const cycle = options.cycle ?? newestCommonCycle(held.map((entry) => ({ holdings: entry.cycles })));
    if (cycle === null || cycle === undefined) throw new CgroupError('ERR_CGROUP_NO_COPY', `group ${groupName}: the volumes here hold no cycle in common`);
    const missing = held.filter((entry) => !entry.cycles.includes(cycle)).map((entry) => entry.volume);
    if (missing.length > 0) throw new CgroupError('ERR_CGROUP_NO_COPY', `group ${groupName}: cycle ${cycle} is not held for ${missing.join(', ')}`);
    const mode = options.mode ?? 'export';
    const snapshot = copyName(groupName, cycle);
    // Later cuts (the group may still be cycling) must not prune what was chosen.
    this.copies.pin(groupName, cycle);
    const volumes: RecoverResult['volumes'] = [];
    for (const entry of held) {
      if (mode === 'restore') {
        await this.options.takeover(entry.volume, groupName);
        volumes.push({ volume: entry.volume, snapshot, restoredBytes: this.options.restore(entry.volume, snapshot) });
      } else {
        volumes.push({ volume: entry.volume, snapshot });
      }
    }
    this.emitEvent({ group: groupName, old: null, new: 'recovered', reason: 'operator', cycle, mode });
    return { group: groupName, cycle, mode, volumes };
  }

  close(): void {
    this.closed = true;
    for (const group of this.groups.values()) {
      group.master?.close();
      group.slave?.close();
    }
  }

  crash(): void {
    this.closed = true;
    for (const group of this.groups.values()) {
      group.master?.close();
      group.slave?.crash();
    }
  }
}
