// A consistency group on the simulated network and clock: primaries p0..p(N-1) (p0 the master),
// each with volume `v` in an async pair with its own secondary controller s<i>, and a
// dependent-write workload: chains of writes where each step goes to a random primary only once
// the step before it (on another primary, usually) was acknowledged. Every consistent copy the
// group forms is checked at once: for each chain, the newest step in the copy must come with
// every step before it (the newest earlier step to each volume must be there).
import { Controller } from '../../src/controller/controller';
import type { CycleOutcome } from '../../src/cgroup/master';
import type { CgroupSpec } from '../../src/cgroup/types';
import { copyName } from '../../src/cgroup/types';
import type { PairVolume } from '../../src/replication/pair-volume';
import { SeededRandom } from '../../src/runtime/random';
import { SimNetwork } from '../../src/sim/network';
import { SIM_LINK_TUNING } from '../../src/sim/pair-schedule';
import { SimClock } from '../../src/sim/sim-clock';
import { Region } from '../../src/storage/region';
import { SnapshotStore } from '../../src/storage/snapshot';
import { Journal } from '../../src/storage/journal';
import { Volume } from '../../src/storage/volume';

let worlds = 0;

export const CG_BLOCK = 4096;
export const CG_CAPACITY = 64 * CG_BLOCK;

export interface CgWorldOptions {
  primaries: number;
  chains?: number;
  seed?: number;
  group?: Partial<CgroupSpec>;
  /** Shared-memory volumes (unique names, unlinked by close()), so crash() keeps them. @default false */
  shared?: boolean;
  /** A deliberate bug in the slaves (the check must catch it). @default none */
  mutation?: 'no-hold';
  /** p0 has a second volume `w`, in a journal group `j` with `v`: both are members. @default false */
  journalGroup?: boolean;
  /** Limits the slaves (p1...) declare instead of the master's. @default the same */
  slaveGroup?: Partial<CgroupSpec>;
}

export interface CopyCheck {
  cycle: number;
  violations: string[];
  steps: number;
}

export class CgWorld {
  readonly clock = new SimClock();
  readonly random: SeededRandom;
  readonly network: SimNetwork;
  primaries: Controller[] = [];
  secondaries: Controller[] = [];
  readonly n: number;
  readonly chains: number;
  /** Per chain, the acknowledged steps in order: the member index each went to. */
  readonly log: number[][] = [];
  readonly checks: CopyCheck[] = [];
  readonly outcomes: CycleOutcome[] = [];
  stopWorkload = false;
  acknowledged = 0;
  private readonly spec: CgroupSpec;
  private readonly shared: boolean;
  private readonly mutation: 'no-hold' | undefined;
  private readonly prefix = `bmt-cg-${process.pid}-${++worlds}`;
  /** The group's member volumes: (primary index, volume name); the chains pick among them. */
  readonly members: { primary: number; volume: string }[] = [];
  private readonly journalGroup: boolean;
  private readonly slaveSpec: CgroupSpec;

  constructor(options: CgWorldOptions) {
    this.n = options.primaries;
    this.journalGroup = options.journalGroup ?? false;
    for (let i = 0; i < this.n; i++) {
      this.members.push({ primary: i, volume: 'v' });
      if (i === 0 && this.journalGroup) this.members.push({ primary: 0, volume: 'w' });
    }
    this.chains = options.chains ?? 4;
    this.random = new SeededRandom(options.seed ?? 7);
    this.network = new SimNetwork({ clock: this.clock, random: this.random.fork('network') });
    this.spec = {
      name: 'g',
      relationships: this.members.map((member, k) => ({ id: `r${k}`, role: member.primary === 0 ? 'master' as const : 'slave' as const, controller: `p${member.primary}`, volume: member.volume })),
      cycleIntervalMs: 20,
      maxDrainMs: 2000,
      ...options.group,
    };
    for (let j = 0; j < this.chains; j++) this.log.push([]);
    this.slaveSpec = { ...this.spec, ...options.slaveGroup };
    this.shared = options.shared ?? false;
    this.mutation = options.mutation;
  }

  private sharedName(id: string, volume: string): string {
    return volume === 'v' ? `${this.prefix}-${id}` : `${this.prefix}-${id}-${volume}`;
  }

  private volumeSpecs(id: string, i: number): { name: string; capacityBytes: number; backing?: 'shared'; sharedName?: string }[] {
    return this.volumesOf(i).map((name) => (this.shared
      ? { name, capacityBytes: CG_CAPACITY, backing: 'shared' as const, sharedName: this.sharedName(id, name) }
      : { name, capacityBytes: CG_CAPACITY }));
  }

  private volumesOf(i: number): string[] {
    return this.members.filter((member) => member.primary === i).map((member) => member.volume);
  }

  /** The pair of member volume `volume` of primary i. */
  pairName(i: number, volume: string): string {
    return volume === 'v' ? `cg-${i}` : `cg-${i}${volume}`;
  }

  private pairSpecs(i: number, role: 'primary' | 'secondary'): NonNullable<ConstructorParameters<typeof Controller>[0]['pairs']> {
    const grouped = i === 0 && this.journalGroup;
    return this.volumesOf(i).map((volume) => ({
      name: this.pairName(i, volume), volume, peer: role === 'primary' ? `s${i}` : `p${i}`, remoteVolume: volume, mode: 'async' as const, role,
      ...(grouped ? { journalGroup: 'j' } : {}),
    }));
  }

  primaryOptions(i: number): ConstructorParameters<typeof Controller>[0] {
    const peers = [{ id: `s${i}`, address: { host: `s${i}`, port: 7000 } }];
    if (i === 0) for (let k = 1; k < this.n; k++) peers.push({ id: `p${k}`, address: { host: `p${k}`, port: 7000 } });
    else peers.push({ id: 'p0', address: { host: 'p0', port: 7000 } });
    return {
      id: `p${i}`, network: this.network.node(`p${i}`), clock: this.clock, random: this.random.fork(`p${i}-${this.restarts}`),
      volumes: this.volumeSpecs(`p${i}`, i),
      replication: { ...SIM_LINK_TUNING, listen: { host: `p${i}`, port: 7000 } },
      peers,
      pairs: this.pairSpecs(i, 'primary'),
      consistencyGroups: [i === 0 ? this.spec : this.slaveSpec],
      ...(this.mutation === undefined ? {} : { cgroupMutation: this.mutation }),
    };
  }

  secondaryOptions(i: number): ConstructorParameters<typeof Controller>[0] {
    return {
      id: `s${i}`, network: this.network.node(`s${i}`), clock: this.clock, random: this.random.fork(`s${i}`),
      volumes: this.volumeSpecs(`s${i}`, i),
      replication: { ...SIM_LINK_TUNING, listen: { host: `s${i}`, port: 7000 } },
      peers: [{ id: `p${i}`, address: { host: `p${i}`, port: 7000 } }],
      pairs: this.pairSpecs(i, 'secondary'),
    };
  }

  async start(): Promise<void> {
    for (let i = 0; i < this.n; i++) {
      const secondary = new Controller(this.secondaryOptions(i));
      await secondary.start();
      this.secondaries.push(secondary);
    }
    for (let i = this.n - 1; i >= 0; i--) this.primaries[i] = await this.startPrimary(i);
  }

  restarts = 0;

  /** Crashes primary i as a SIGKILL would (its shared regions stay). */
  crashPrimary(i: number): void {
    this.down.add(i);
    (this.primaries[i] as Controller).crash();
    this.network.crash(`p${i}`);
  }

  /** Starts primary i again on the regions it left. */
  async restartPrimary(i: number): Promise<Controller> {
    this.restarts++;
    this.network.restart(`p${i}`);
    const primary = await this.startPrimary(i);
    this.down.delete(i);
    return primary;
  }

  async startPrimary(i: number): Promise<Controller> {
    const primary = new Controller(this.primaryOptions(i));
    await primary.start();
    if (i === 0) this.watchMaster(primary);
    this.primaries[i] = primary;
    return primary;
  }

  watchMaster(master: Controller): void {
    master.groups?.on('cycle', (outcome: CycleOutcome) => {
      this.outcomes.push(outcome);
      if (outcome.formed) this.checks.push(this.checkCopy(outcome.cycle));
    });
  }

  /** Reads chain j's block of member k from cycle `cycle`'s copy (the step stamped there, 0 for none). */
  private copyStep(k: number, cycle: number, chain: number): number {
    const member = this.members[k] as { primary: number; volume: string };
    const data = Buffer.alloc(CG_BLOCK);
    (this.secondaries[member.primary] as Controller).snapshots.exportOf(member.volume, copyName('g', cycle)).read(chain * CG_BLOCK, data);
    return data.readUInt32LE(0);
  }

  /** The dependent-write check of one copy (see the note at the top). */
  checkCopy(cycle: number): CopyCheck {
    return this.checkImage(cycle, (i, chain) => this.copyStep(i, cycle, chain));
  }

  /** The dependent-write check of the secondaries' volumes themselves (after a recover). */
  checkSecondaryVolumes(): CopyCheck {
    return this.checkImage(0, (k, chain) => {
      const member = this.members[k] as { primary: number; volume: string };
      const data = Buffer.alloc(CG_BLOCK);
      (this.secondaries[member.primary] as Controller).volume(member.volume)?.read(chain * CG_BLOCK, data);
      return data.readUInt32LE(0);
    });
  }

  /** The dependent-write check of an image given by `stepAt(member, chain)`. */
  checkImage(cycle: number, stepAt: (i: number, chain: number) => number): CopyCheck {
    const violations: string[] = [];
    let steps = 0;
    for (let chain = 0; chain < this.chains; chain++) {
      const count = this.members.length;
      const values = Array.from({ length: count }, (_, k) => stepAt(k, chain));
      const newest = Math.max(...values);
      steps += newest;
      const log = this.log[chain] as number[];
      for (let i = 0; i < count; i++) {
        let expected = 0;
        for (let step = Math.min(newest, log.length); step >= 1; step--) {
          if (log[step - 1] === i) { expected = step; break; }
        }
        // Step `newest` itself may be unacknowledged (not in the log yet): it is in the copy.
        if (newest > log.length && values[i] === newest) continue;
        const label = `p${this.members[i]?.primary}/${this.members[i]?.volume}`;
        if ((values[i] as number) < expected) violations.push(`cycle ${cycle} chain ${chain}: step ${newest} is in the copy but step ${expected} on ${label} is not (it shows ${values[i]})`);
      }
    }
    return { cycle, violations, steps };
  }

  /** Primaries crashed and not restarted: the chains write elsewhere. */
  readonly down = new Set<number>();
  /** Chains that stopped: a write's acknowledgement never came (its primary crashed). */
  readonly deadChains = new Set<number>();

  /**
   * Runs chain j until stopWorkload; each step waits for its acknowledgement. A step whose
   * acknowledgement does not come within `stallMs` (its primary crashed with it in flight) ends
   * the chain: the next step would not depend on it.
   */
  async chain(j: number, stallMs = 5000): Promise<void> {
    const random = this.random.fork(`chain${j}`);
    const log = this.log[j] as number[];
    while (!this.stopWorkload) {
      const step = log.length + 1;
      const k = random.int(this.members.length);
      const member = this.members[k] as { primary: number; volume: string };
      if (this.down.has(member.primary)) {
        await this.sleep(1);
        continue;
      }
      const primary = this.primaries[member.primary] as Controller;
      const volume = primary.exportVolume(member.volume) as PairVolume;
      const data = Buffer.alloc(CG_BLOCK);
      data.writeUInt32LE(step, 0);
      data.writeUInt32LE(j, 4);
      let sequence: number;
      try {
        sequence = volume.write(j * CG_BLOCK, data);
      } catch {
        await this.sleep(5);
        continue;
      }
      const completion = volume.writeCompletion(sequence);
      if (completion !== null) {
        let timer: { cancel(): void } | undefined;
        const stalled = new Promise<'stalled'>((resolve) => { timer = this.clock.setTimer(() => resolve('stalled'), stallMs); });
        const outcome = await Promise.race([completion.then(() => 'ok' as const, () => 'failed' as const), stalled]);
        timer?.cancel();
        if (outcome === 'stalled') {
          this.deadChains.add(j);
          return;
        }
        if (outcome === 'failed') continue;
      }
      log.push(k);
      this.acknowledged++;
      await this.sleep(random.int(3));
    }
  }

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.clock.setTimer(resolve, ms));
  }

  async close(): Promise<void> {
    this.stopWorkload = true;
    for (const controller of [...this.primaries, ...this.secondaries]) {
      controller.crash();
      await controller.pairs?.close().catch(() => undefined);
      for (const entry of controller.volumes) await entry.volume.close().catch(() => undefined);
    }
    if (!this.shared) return;
    for (const member of this.members) {
      for (const id of [`p${member.primary}`, `s${member.primary}`]) {
        const name = this.sharedName(id, member.volume);
        Volume.unlink({ name });
        Journal.unlink({ name });
        SnapshotStore.unlink({ name });
        Region.unlink('shared', `blockmirror.pair.${name}.${this.pairName(member.primary, member.volume)}`);
      }
    }
  }
}
