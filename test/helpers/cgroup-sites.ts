// Notes on the design
// -------------------
// A consistency group across real `blockmirror serve` processes (integration 78): primaries
// p0..p(N-1), each its own serve with one controller, one `shared` volume `v` (so its data and
// pair metadata outlive a SIGKILL) exported read-write as `p<i>-v`, and an async pair to s<i>;
// one more serve holds every secondary controller s0..s(N-1) (one config file, several
// controllers, each with its own replication port and export `s<i>-v`). Every replication port is
// fixed, so a killed primary restarts on the same address. Every shared-memory name carries the
// test's prefix and removeShmWithPrefix() unlinks exactly those (volumes, pair metadata and the
// snapshot stores the copies live in).
//
// The workload is the one of test/helpers/cgroup-world.ts, over NBD: chain j's step k writes
// block j of a random live primary with the stamp k, and step k+1 is issued only after step k's
// NBD reply. The log keeps, per step, the primary it went to, whether it was acknowledged, and
// when the reply was seen. A step without a reply (its serve was killed) may or may not be
// stored; the chain goes on, and no later step depends on it. The check is the simulated one:
// in an image, for each chain, the newest step present must come with, on every primary, the
// newest earlier acknowledged step that went there.

import * as fs from 'node:fs';
import * as path from 'node:path';

import { AdminClient } from '../../src/admin/client';
import { NbdTestClient } from './nbd-client';
import { PAIR_LINK } from './pair-sites';
import { ServeProcess } from './serve-process';

export const CG_SITE_BLOCK = 4096;
export const CG_SITE_CAPACITY = 1024 * 1024;

export interface CgSiteLayout {
  n: number;
  prefix: string;
  directory: string;
  /** Replication ports: primaries first, then secondaries. */
  ports: number[];
  group: Record<string, unknown>;
}

export function groupSpec(n: number, limits: Record<string, unknown>): Record<string, unknown> {
  return {
    name: 'g',
    relationships: Array.from({ length: n }, (_, i) => ({ id: `r${i}`, role: i === 0 ? 'master' : 'slave', controller: `p${i}`, volume: 'v' })),
    ...limits,
  };
}

function volume(prefix: string, id: string): Record<string, unknown> {
  return { name: 'v', capacity: `${CG_SITE_CAPACITY}`, backing: 'shared', sharedName: `${prefix}.${id}` };
}

export function primaryConfig(layout: CgSiteLayout, i: number): Record<string, unknown> {
  const { n, ports } = layout;
  const peers = [{ id: `s${i}`, address: `127.0.0.1:${ports[n + i]}` }];
  if (i === 0) for (let k = 1; k < n; k++) peers.push({ id: `p${k}`, address: `127.0.0.1:${ports[k]}` });
  else peers.push({ id: 'p0', address: `127.0.0.1:${ports[0]}` });
  return {
    controllers: [{
      id: `p${i}`,
      volumes: [volume(layout.prefix, `p${i}`)],
      exports: [{ name: `p${i}-v`, volume: 'v' }],
      replication: { listen: `127.0.0.1:${ports[i]}`, ...PAIR_LINK },
      peers,
      pairs: [{ name: `cg-${i}`, volume: 'v', peer: `s${i}`, remoteVolume: 'v', mode: 'async', role: 'primary' }],
      consistencyGroups: [layout.group],
    }],
    listen: [{ host: '127.0.0.1', port: 0 }],
  };
}

export function secondariesConfig(layout: CgSiteLayout): Record<string, unknown> {
  const { n, ports } = layout;
  return {
    controllers: Array.from({ length: n }, (_, i) => ({
      id: `s${i}`,
      volumes: [volume(layout.prefix, `s${i}`)],
      exports: [{ name: `s${i}-v`, volume: 'v' }],
      replication: { listen: `127.0.0.1:${ports[n + i]}`, ...PAIR_LINK },
      peers: [{ id: `p${i}`, address: `127.0.0.1:${ports[i]}` }],
      pairs: [{ name: `cg-${i}`, volume: 'v', peer: `p${i}`, remoteVolume: 'v', mode: 'async', role: 'secondary' }],
    })),
    listen: [{ host: '127.0.0.1', port: 0 }],
  };
}

/** One serve process and its admin client. */
export class CgServe {
  serve!: ServeProcess;
  readonly admin: AdminClient;
  readonly adminSocket: string;

  constructor(readonly name: string, readonly config: () => Record<string, unknown>, private readonly directory: string) {
    this.adminSocket = path.join(directory, `${name}.admin.sock`);
    this.admin = new AdminClient(this.adminSocket, { timeoutMs: 10_000 });
  }

  async start(): Promise<this> {
    this.serve = await ServeProcess.start({
      config: this.config(), directory: this.directory,
      args: ['--port', '0', '--admin', this.adminSocket, '--status-interval', '60', '--log-level', 'warn'], readyTimeoutMs: 60_000,
    });
    return this;
  }

  get running(): boolean {
    return this.serve !== undefined && this.serve.child.exitCode === null && this.serve.child.signalCode === null;
  }

  async sigkill(): Promise<void> {
    const result = await this.serve.signal('SIGKILL');
    if (result.signal !== 'SIGKILL') throw new Error(`${this.name} exited with ${result.code ?? result.signal}, not by SIGKILL`);
  }

  async stop(): Promise<void> {
    if (this.serve !== undefined) await this.serve.kill();
  }

  /** POST /groups/<verb> on one controller; the `result`. */
  async group(verb: string, body: Record<string, unknown>): Promise<any> {
    return (await this.admin.post(`/groups/${verb}`, body) as { result: unknown }).result;
  }

  /** The first controller's status entry of pair `name` (or of controller `id`). */
  async pair(name: string, controllerId?: string): Promise<Record<string, any>> {
    const status = await this.admin.get('/status') as { controllers: { id: string; pairs: Record<string, any>[] }[] };
    const controller = controllerId === undefined ? status.controllers[0] : status.controllers.find((entry) => entry.id === controllerId);
    const pair = controller?.pairs.find((entry) => entry.name === name);
    if (pair === undefined) throw new Error(`${this.name}: no pair ${name}`);
    return pair;
  }

  /** Reads `length` bytes at `offset` of export `exportName` over NBD. */
  async read(exportName: string, offset = 0, length = CG_SITE_CAPACITY): Promise<Buffer> {
    let client: NbdTestClient | undefined;
    try {
      client = await NbdTestClient.open(this.serve.tcpAddress, { exportName });
      return await client.readData(offset, length);
    } catch (error) {
      throw new Error(`${this.name}: reading ${length} bytes at ${offset} of export ${exportName}: ${(error as Error).message}`, { cause: error });
    } finally {
      await client?.disconnect().catch(() => client?.destroy());
    }
  }
}

/** Unlinks every /dev/shm object whose name carries `prefix`; returns their names. */
export function removeShmWithPrefix(prefix: string): string[] {
  const removed: string[] = [];
  let names: string[] = [];
  try {
    names = fs.readdirSync('/dev/shm');
  } catch {
    return removed;
  }
  for (const name of names) {
    if (!name.includes(`.${prefix}.`)) continue;
    try {
      fs.unlinkSync(path.join('/dev/shm', name));
      removed.push(name);
    } catch {
      // Gone already.
    }
  }
  return removed;
}

export interface Step {
  volume: number;
  acked: boolean;
  /** Date.now() when the reply was seen (acknowledged steps). */
  ackMs: number;
}

export interface ImageCheck {
  violations: string[];
  /** Sum over chains of the newest step present. */
  steps: number;
}

/** The dependent-write chains over NBD (see the note). */
export class ChainWorkload {
  readonly clients: (NbdTestClient | undefined)[];
  readonly log: Step[][] = [];
  readonly down = new Set<number>();
  acknowledged = 0;
  unanswered = 0;
  private stopping = false;
  private running: Promise<void>[] = [];
  private state: number;

  constructor(readonly n: number, readonly chains: number, seed: number) {
    this.clients = new Array<NbdTestClient | undefined>(n).fill(undefined);
    for (let j = 0; j < chains; j++) this.log.push([]);
    this.state = seed >>> 0 || 1;
  }

  private random(bound: number): number {
    this.state = (this.state ^ (this.state << 13)) >>> 0;
    this.state = (this.state ^ (this.state >>> 17)) >>> 0;
    this.state = (this.state ^ (this.state << 5)) >>> 0;
    return this.state % bound;
  }

  /** Connects the workload to primary i's export (after a start or restart). */
  async connect(i: number, serve: CgServe): Promise<void> {
    this.clients[i] = await NbdTestClient.open(serve.serve.tcpAddress, { exportName: `p${i}-v` });
    this.down.delete(i);
  }

  /** No more steps go to primary i (it is about to be killed). */
  markDown(i: number): void {
    this.down.add(i);
  }

  start(): void {
    this.stopping = false;
    this.running = Array.from({ length: this.chains }, (_, j) => this.chain(j));
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.running);
    this.running = [];
  }

  private async chain(j: number): Promise<void> {
    const log = this.log[j] as Step[];
    while (!this.stopping) {
      const live = Array.from({ length: this.n }, (_, i) => i).filter((i) => !this.down.has(i) && this.clients[i] !== undefined && !(this.clients[i] as NbdTestClient).isClosed);
      if (live.length === 0) {
        await new Promise((resolve) => setTimeout(resolve, 5));
        continue;
      }
      const i = live[this.random(live.length)] as number;
      const client = this.clients[i] as NbdTestClient;
      const step = log.length + 1;
      const entry: Step = { volume: i, acked: false, ackMs: 0 };
      log.push(entry);
      const data = Buffer.alloc(CG_SITE_BLOCK);
      data.writeUInt32LE(step, 0);
      data.writeUInt32LE(j, 4);
      let error: number;
      try {
        error = await client.writeData(j * CG_SITE_BLOCK, data);
      } catch {
        this.unanswered++;
        continue;
      }
      if (error !== 0) {
        this.unanswered++;
        continue;
      }
      entry.acked = true;
      entry.ackMs = Date.now();
      this.acknowledged++;
    }
  }

  /** The stamp of chain `chain`'s block in an image of one volume. */
  static stampOf(image: Buffer, chain: number): number {
    return image.readUInt32LE(chain * CG_SITE_BLOCK);
  }

  /** The dependent-write check of images[i] (volume of primary i; at least the chain blocks). */
  check(images: Buffer[], what: string): ImageCheck {
    const violations: string[] = [];
    let steps = 0;
    for (let chain = 0; chain < this.chains; chain++) {
      const values = images.map((image) => ChainWorkload.stampOf(image, chain));
      const newest = Math.max(...values);
      steps += newest;
      const log = this.log[chain] as Step[];
      if (newest > log.length) violations.push(`${what} chain ${chain}: step ${newest} is in the image but was never issued (${log.length} issued)`);
      const at = values.findIndex((value) => value === newest);
      if (newest > 0 && log[newest - 1]?.volume !== at) violations.push(`${what} chain ${chain}: step ${newest} went to p${log[newest - 1]?.volume}, found on p${at}`);
      for (let i = 0; i < this.n; i++) {
        let expected = 0;
        for (let step = newest - 1; step >= 1; step--) {
          const entry = log[step - 1] as Step;
          if (entry.volume === i && entry.acked) { expected = step; break; }
        }
        if ((values[i] as number) < expected) violations.push(`${what} chain ${chain}: step ${newest} is in the image but step ${expected} on p${i} is not (p${i} shows ${values[i]})`);
      }
    }
    return { violations, steps };
  }

  /**
   * Every step acknowledged (reply seen) before `timeMs` is in the images: per chain and volume,
   * the newest such step to that volume, or a later step there. Returns the problems.
   */
  ackedBefore(images: Buffer[], timeMs: number, what: string): { problems: string[]; steps: number } {
    const problems: string[] = [];
    let steps = 0;
    for (let chain = 0; chain < this.chains; chain++) {
      const log = this.log[chain] as Step[];
      for (let i = 0; i < this.n; i++) {
        let expected = 0;
        for (let step = log.length; step >= 1; step--) {
          const entry = log[step - 1] as Step;
          if (entry.volume === i && entry.acked && entry.ackMs < timeMs) { expected = step; break; }
        }
        if (expected > 0) steps++;
        const value = ChainWorkload.stampOf(images[i] as Buffer, chain);
        if (value < expected) problems.push(`${what} chain ${chain} p${i}: step ${expected} was acknowledged before ${new Date(timeMs).toISOString()} but the image shows ${value}`);
      }
    }
    return { problems, steps };
  }

  async close(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.running);
    for (const client of this.clients) {
      if (client === undefined) continue;
      await client.disconnect().catch(() => client.destroy());
    }
  }
}
