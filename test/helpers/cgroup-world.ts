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
  /** Per chain, the acknowledged steps in order: the volume index each went to. */
  readonly log: number[][] = [];
  readonly checks: CopyCheck[] = [];
  readonly outcomes: CycleOutcome[] = [];
  stopWorkload = false;
  acknowledged = 0;
  private readonly spec: CgroupSpec;
  private readonly shared: boolean;
  private readonly mutation: 'no-hold' | undefined;
  private readonly prefix = `bmt-cg-${process.pid}-${++worlds}`;

  constructor(options: CgWorldOptions) {
    this.n = options.primaries;
    this.chains = options.chains ?? 4;
    this.random = new SeededRandom(options.seed ?? 7);
    this.network = new SimNetwork({ clock: this.clock, random: this.random.fork('network') });
    this.spec = {
      name: 'g',
      relationships: Array.from({ length: this.n }, (_, i) => ({ id: `r${i}`, role: i === 0 ? 'master' as const : 'slave' as const, controller: `p${i}`, volume: 'v' })),
      cycleIntervalMs: 20,
      maxDrainMs: 2000,
      ...options.group,
    };
    for (let j = 0; j < this.chains; j++) this.log.push([]);
    this.shared = options.shared ?? false;
    this.mutation = options.mutation;
  }

  private volumeSpec(id: string): { name: string; capacityBytes: number; backing?: 'shared'; sharedName?: string } {
    return this.shared ? { name: 'v', capacityBytes: CG_CAPACITY, backing: 'shared', sharedName: `${this.prefix}-${id}` } : { name: 'v', capacityBytes: CG_CAPACITY };
  }

  primaryOptions(i: number): ConstructorParameters<typeof Controller>[0] {
    const peers = [{ id: `s${i}`, address: { host: `s${i}`, port: 7000 } }];
    if (i === 0) for (let k = 1; k < this.n; k++) peers.push({ id: `p${k}`, address: { host: `p${k}`, port: 7000 } });
    else peers.push({ id: 'p0', address: { host: 'p0', port: 7000 } });
    return {
      id: `p${i}`, network: this.network.node(`p${i}`), clock: this.clock, random: this.random.fork(`p${i}-${this.restarts}`),
      volumes: [this.volumeSpec(`p${i}`)],
      replication: { ...SIM_LINK_TUNING, listen: { host: `p${i}`, port: 7000 } },
      peers,
      pairs: [{ name: `cg-${i}`, volume: 'v', peer: `s${i}`, remoteVolume: 'v', mode: 'async', role: 'primary' }],
      consistencyGroups: [this.spec],
      ...(this.mutation === undefined ? {} : { cgroupMutation: this.mutation }),
    };
  }

  secondaryOptions(i: number): ConstructorParameters<typeof Controller>[0] {
    return {
      id: `s${i}`, network: this.network.node(`s${i}`), clock: this.clock, random: this.random.fork(`s${i}`),
      volumes: [this.volumeSpec(`s${i}`)],
      replication: { ...SIM_LINK_TUNING, listen: { host: `s${i}`, port: 7000 } },
      peers: [{ id: `p${i}`, address: { host: `p${i}`, port: 7000 } }],
      pairs: [{ name: `cg-${i}`, volume: 'v', peer: `p${i}`, remoteVolume: 'v', mode: 'async', role: 'secondary' }],
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

  /** Reads chain j's block of volume i from cycle `cycle`'s copy (the step stamped there, 0 for none). */
  private copyStep(i: number, cycle: number, chain: number): number {
    const data = Buffer.alloc(CG_BLOCK);
    (this.secondaries[i] as Controller).snapshots.exportOf('v', copyName('g', cycle)).read(chain * CG_BLOCK, data);
    return data.readUInt32LE(0);
  }

  /** The dependent-write check of one copy (see the note at the top). */
  checkCopy(cycle: number): CopyCheck {
    return this.checkImage(cycle, (i, chain) => this.copyStep(i, cycle, chain));
  }

  /** The dependent-write check of the secondaries' volumes themselves (after a recover). */
  checkSecondaryVolumes(): CopyCheck {
    return this.checkImage(0, (i, chain) => {
      const data = Buffer.alloc(CG_BLOCK);
      (this.secondaries[i] as Controller).volume('v')?.read(chain * CG_BLOCK, data);
      return data.readUInt32LE(0);
    });
  }

  /** The dependent-write check of an image given by `stepAt(volume, chain)`. */
  checkImage(cycle: number, stepAt: (i: number, chain: number) => number): CopyCheck {
    const violations: string[] = [];
    let steps = 0;
    for (let chain = 0; chain < this.chains; chain++) {
      const values = Array.from({ length: this.n }, (_, i) => stepAt(i, chain));
      const newest = Math.max(...values);
      steps += newest;
      const log = this.log[chain] as number[];
      for (let i = 0; i < this.n; i++) {
        let expected = 0;
        for (let step = Math.min(newest, log.length); step >= 1; step--) {
          if (log[step - 1] === i) { expected = step; break; }
        }
        // Step `newest` itself may be unacknowledged (not in the log yet): it is in the copy.
        if (newest > log.length && values[i] === newest) continue;
        if ((values[i] as number) < expected) violations.push(`cycle ${cycle} chain ${chain}: step ${newest} is in the copy but step ${expected} on p${i} is not (p${i} shows ${values[i]})`);
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
      const i = random.int(this.n);
      if (this.down.has(i)) {
        await this.sleep(1);
        continue;
      }
      const primary = this.primaries[i] as Controller;
      const volume = primary.exportVolume('v') as PairVolume;
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
      log.push(i);
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
    for (let i = 0; i < this.n; i++) {
      for (const id of [`p${i}`, `s${i}`]) {
        const name = `${this.prefix}-${id}`;
        Volume.unlink({ name });
        SnapshotStore.unlink({ name });
        Region.unlink('shared', `blockmirror.pair.${name}.cg-${i}`);
      }
    }
  }
}
