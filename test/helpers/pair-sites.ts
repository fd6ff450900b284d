// Sites for pair tests across real `blockmirror serve` processes: each site is one serve with one
// controller whose volume vol0 is a `shared` volume (so its data, its pair metadata and its
// tracking bitmaps outlive a SIGKILL), exported read-write as `<id>-vol0` (the export follows
// the pair's role), with fixed replication ports so a killed site restarts on the same address.
// Every shared-memory object a test creates carries the test's prefix, and removeShm() unlinks
// exactly those.
//
// Also here: the pair verbs through the command, the pair's status through the admin endpoint,
// a small NBD writer that records every write the server acknowledged (and what was in flight
// when the connection died), and whole-volume reads and comparisons.

import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { AdminClient } from '../../src/admin/client';
import { FAST_LINK, EventWatch } from './link-pair';
import { NbdTestClient } from './nbd-client';
import { CLI_PATH, ServeProcess } from './serve-process';
import { freePort, run, waitFor } from './tools';

const SHM_DIRECTORY = '/dev/shm';
let prefixCount = 0;

/** A prefix for the shared names of one test: unique per process and call. */
export function shmPrefix(tag: string): string {
  prefixCount++;
  return `bmt-${tag}-${process.pid}-${prefixCount}`;
}

/** Unlinks every /dev/shm object of volumes (their pair metadata, kept journals and snapshot stores) named with `prefix`. */
export function removeShm(prefix: string): string[] {
  const removed: string[] = [];
  let names: string[] = [];
  try {
    names = fs.readdirSync(SHM_DIRECTORY);
  } catch {
    return removed;
  }
  for (const name of names) {
    // Volumes, pair metadata, kept journals and snapshot stores (resync images, consistent copies).
    if (!['vol', 'pair', 'journal', 'snap'].some((kind) => name.startsWith(`blockmirror.${kind}.${prefix}.`))) continue;
    try {
      fs.unlinkSync(path.join(SHM_DIRECTORY, name));
      removed.push(name);
    } catch {
      // Gone already.
    }
  }
  return removed;
}

/** Link timing for pair tests: a SIGKILLed peer is seen at once (its kernel closes the socket); a
 * partition is noticed after deadPeerTimeoutMs, which is long enough that a loaded machine does
 * not take a busy peer for a dead one. */
export const PAIR_LINK = Object.freeze({ ...FAST_LINK, heartbeatIntervalMs: 200, deadPeerTimeoutMs: 3000 });

export interface PairDeclaration {
  name: string;
  peer: string;
  mode: 'sync' | 'async';
  role: 'primary' | 'secondary';
  fence?: 'never' | 'data';
  autoResume?: boolean;
  journalHold?: number;
}

export interface PairSiteOptions {
  id: string;
  /** Prefix of the shared names (shmPrefix). */
  prefix: string;
  directory: string;
  replicationPort: number;
  peers: { id: string; port: number }[];
  pairs: PairDeclaration[];
  /** Capacity of vol0. @default '32MiB' */
  capacity?: string;
  replication?: Record<string, unknown>;
}

/** The config document of one site. */
export function pairSiteConfig(options: PairSiteOptions): Record<string, unknown> {
  return {
    controllers: [{
      id: options.id,
      volumes: [{ name: 'vol0', capacity: options.capacity ?? '32MiB', backing: 'shared', sharedName: `${options.prefix}.${options.id}` }],
      exports: [{ name: `${options.id}-vol0`, volume: 'vol0' }],
      replication: { listen: `127.0.0.1:${options.replicationPort}`, ...PAIR_LINK, ...options.replication },
      peers: options.peers.map((peer) => ({ id: peer.id, address: `127.0.0.1:${peer.port}` })),
      pairs: options.pairs.map((pair) => ({ volume: 'vol0', remoteVolume: 'vol0', ...pair })),
    }],
    listen: [{ host: '127.0.0.1', port: 0 }],
  };
}

export type PairStatus = Record<string, unknown> & {
  name: string;
  role: string;
  declaredRole: string;
  state: string;
  reason: string;
  consistency: string;
  resyncedBytes?: number;
  shippedBytes?: number;
  resumedStreams?: number;
  lag?: { records: number; bytes: number };
  oos?: { tracks: number; bytes: number; since: number | null };
};

/** One serve process with one controller. */
export class PairSite {
  serve: ServeProcess;
  readonly admin: AdminClient;
  readonly adminSocket: string;
  private watches: EventWatch[] = [];

  private constructor(readonly options: PairSiteOptions, serve: ServeProcess, adminSocket: string) {
    this.serve = serve;
    this.adminSocket = adminSocket;
    this.admin = new AdminClient(adminSocket, { timeoutMs: 10_000 });
  }

  get id(): string {
    return this.options.id;
  }

  get exportName(): string {
    return `${this.options.id}-vol0`;
  }

  private static spawn(options: PairSiteOptions, adminSocket: string): Promise<ServeProcess> {
    return ServeProcess.start({
      config: pairSiteConfig(options),
      directory: options.directory,
      args: ['--port', '0', '--admin', adminSocket, '--status-interval', '60', '--log-level', 'info'],
      readyTimeoutMs: 30_000,
    });
  }

  static async start(options: PairSiteOptions): Promise<PairSite> {
    const adminSocket = path.join(options.directory, `${options.id}.admin.sock`);
    return new PairSite(options, await PairSite.spawn(options, adminSocket), adminSocket);
  }

  /**
   * site-b (declared secondary) then site-a (declared primary) of pair p0 on vol0, each pushed
   * to `sites` as it starts (so a failure still stops it); resolves once the primary caught up.
   */
  static async startPair(sites: PairSite[], options: { prefix: string; directory: string; capacity: string; mode: 'sync' | 'async'; primary?: Partial<PairDeclaration> }): Promise<[PairSite, PairSite]> {
    const [portA, portB] = await ports(2) as [number, number];
    const common = { prefix: options.prefix, directory: options.directory, capacity: options.capacity };
    const b = await PairSite.start({ ...common, id: 'site-b', replicationPort: portB, peers: [{ id: 'site-a', port: portA }],
      pairs: [{ name: 'p0', peer: 'site-a', mode: options.mode, role: 'secondary' }] });
    sites.push(b);
    const a = await PairSite.start({ ...common, id: 'site-a', replicationPort: portA, peers: [{ id: 'site-b', port: portB }],
      pairs: [{ name: 'p0', peer: 'site-b', mode: options.mode, role: 'primary', ...options.primary }] });
    sites.push(a);
    await a.caughtUp('p0');
    return [a, b];
  }

  /** Starts the site again on the same ports, socket and shared volume. */
  async restart(): Promise<void> {
    assert.ok(!this.running, `${this.id} is still running`);
    this.serve = await PairSite.spawn(this.options, this.adminSocket);
  }

  get running(): boolean {
    return this.serve.child.exitCode === null && this.serve.child.signalCode === null;
  }

  /** SIGKILL: no flush, no goodbye, nothing more acknowledged. Resolves once it is gone. */
  async sigkill(): Promise<void> {
    const result = await this.serve.signal('SIGKILL');
    assert.equal(result.signal, 'SIGKILL');
    for (const watch of this.watches) watch.stop();
    this.watches = [];
  }

  /** For after hooks: stops the process (SIGKILL if needed) and every event stream. */
  async stop(): Promise<void> {
    for (const watch of this.watches) watch.stop();
    this.watches = [];
    await this.serve.kill();
  }

  /** The NBD endpoint of the current process. */
  get endpoint(): { host: string; port: number } {
    return this.serve.tcpAddress;
  }

  get uri(): string {
    return this.serve.uri(this.exportName);
  }

  /** Records this site's /events from now on (resolves once subscribed). */
  async watch(): Promise<EventWatch> {
    const watch = new EventWatch(this.id);
    this.watches.push(watch);
    this.admin.events((event) => watch.push(event), { signal: watch.abort.signal }).catch(() => undefined);
    await watch.until((event) => event.kind === 'exists' && event.subject === 'controller', 'the current state', 10_000);
    return watch;
  }

  async pair(name: string): Promise<PairStatus> {
    const status = await this.admin.get('/status') as { controllers: { pairs: PairStatus[] }[] };
    const pair = status.controllers[0]?.pairs.find((entry) => entry.name === name);
    if (pair === undefined) throw new Error(`${this.id} has no pair ${name}`);
    return pair;
  }

  /** Polls the pair's status until `predicate` holds; the error shows the last status. */
  async until(name: string, predicate: (pair: PairStatus) => boolean, what: string, timeoutMs = 60_000): Promise<PairStatus> {
    let last: PairStatus | undefined;
    try {
      return await waitFor(async () => {
        last = await this.pair(name);
        return predicate(last) ? last : undefined;
      }, `${this.id}: ${what}`, timeoutMs, 50);
    } catch (error) {
      throw new Error(`${(error as Error).message}; last status: ${JSON.stringify(last)}\nstderr tail:\n${this.serve.stderrText.slice(-3000)}`);
    }
  }

  /** Waits until this side is the primary of `name`, mirroring with nothing left to apply. */
  caughtUp(name: string, timeoutMs = 60_000): Promise<PairStatus> {
    return this.until(name, (pair) => pair.role === 'primary' && pair.state === 'mirroring' && pair.lag?.records === 0 &&
      pair.oos?.tracks === 0, 'primary, mirroring, caught up', timeoutMs);
  }

  /** Runs `blockmirror <args> --admin <this site's socket>`. */
  cli(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return run(process.execPath, [CLI_PATH, ...args, '--admin', this.adminSocket], { timeoutMs: 60_000, check: false });
  }

  /** `blockmirror pair <verb> NAME ...` that must succeed; returns its one line. */
  async pairVerb(verb: 'takeover' | 'failback' | 'resolve' | 'suspend' | 'resume', name: string, ...flags: string[]): Promise<string> {
    const answer = await this.cli('pair', verb, name, ...flags);
    assert.equal(answer.code, 0, `${this.id}: pair ${verb} ${name} ${flags.join(' ')}: exit ${answer.code}\n${answer.stdout}${answer.stderr}`);
    return answer.stdout.trim();
  }

  /** Opens an NBD connection to this site's export. */
  connect(): Promise<NbdTestClient> {
    return NbdTestClient.open(this.endpoint, { exportName: this.exportName });
  }

  /** Reads the whole export through NBD. */
  async readAll(): Promise<Buffer> {
    const client = await this.connect();
    try {
      const size = client.sizeBytes;
      const out = Buffer.alloc(size);
      const chunk = 1024 * 1024;
      for (let at = 0; at < size; at += chunk * 8) {
        const reads: Promise<void>[] = [];
        for (let k = at; k < Math.min(size, at + chunk * 8); k += chunk) {
          reads.push(client.readData(k, Math.min(chunk, size - k)).then((data) => { data.copy(out, k); }));
        }
        await Promise.all(reads);
      }
      return out;
    } finally {
      await client.disconnect().catch(() => client.destroy());
    }
  }
}

/** Fixed replication ports for `count` sites (distinct; a restarted site gets its port again). */
export async function ports(count: number): Promise<number[]> {
  const chosen: number[] = [];
  while (chosen.length < count) {
    const port = await freePort();
    if (!chosen.includes(port)) chosen.push(port);
  }
  return chosen;
}

/** qemu-img compare of two NBD URIs: identical, or the assertion names the first difference. */
export async function assertIdentical(left: string, right: string): Promise<void> {
  const result = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', left, right], { check: false, timeoutMs: 120_000 });
  assert.equal(result.code, 0, `qemu-img compare ${left} ${right}: exit ${result.code}: ${result.stdout}${result.stderr}`);
  assert.match(result.stdout, /Images are identical/);
}

/** The content of one write: a header naming it, then a pattern derived from it. */
export function writeContent(tag: number, writeIndex: number, byteOffset: number, byteLength: number): Buffer {
  const data = Buffer.alloc(byteLength);
  let state = (Math.imul(tag + 1, 0x9e3779b1) ^ Math.imul(writeIndex + 1, 0x85ebca6b) ^ (byteOffset >>> 12)) >>> 0;
  for (let at = 0; at < byteLength; at += 4) {
    state = (state ^ (state << 13)) >>> 0;
    state = (state ^ (state >>> 17)) >>> 0;
    state = (state ^ (state << 5)) >>> 0;
    data.writeUInt32LE(state || 1, at);
  }
  data.writeUInt32LE((0xb10c0000 | (tag & 0xffff)) >>> 0, 0);
  data.writeUInt32LE(writeIndex >>> 0, 4);
  data.writeUInt32LE(byteOffset / 4096, 8);
  return data;
}

export interface WriterOptions {
  /** Write size, a multiple of 4096. @default 4096 */
  blockBytes?: number;
  /** Writes in flight at once. @default 16 */
  queueDepth?: number;
  /** 'random' block order, or 'sequential' (wrapping around the export). @default 'random' */
  order?: 'random' | 'sequential';
  /** A tag that goes into every write's content (e.g. the iteration). */
  tag: number;
  /** Seed of the random block order. */
  seed: number;
  /** Only blocks below this byte offset. @default the export size */
  limitBytes?: number;
  /** Only blocks from this byte offset. @default 0 */
  startBytes?: number;
}

/**
 * Writes through one NBD connection until stopped or the connection dies, never two writes in
 * flight on the same block. Records, per block, the content of the last write the server
 * acknowledged, and the content of a write that was in flight when the connection died (which
 * may or may not have been stored).
 */
export class AcknowledgedWriter {
  /** block index -> content of the last acknowledged write. */
  readonly acknowledged = new Map<number, Buffer>();
  /** block index -> content of a write that got no reply (in flight at the end, or refused). */
  readonly unacknowledged = new Map<number, Buffer[]>();
  acknowledgedCount = 0;
  acknowledgedBytes = 0;
  errors = 0;
  private stopping = false;
  private readonly inFlight = new Set<number>();
  private done: Promise<void> | undefined;
  private ackWaiters: { count: number; resolve: () => void }[] = [];

  constructor(private readonly client: NbdTestClient, private readonly options: WriterOptions) {}

  start(): this {
    const { client, options } = this;
    const blockBytes = options.blockBytes ?? 4096;
    const startBlock = Math.floor((options.startBytes ?? 0) / blockBytes);
    const endBlock = Math.floor((options.limitBytes ?? client.sizeBytes) / blockBytes);
    const blockCount = endBlock - startBlock;
    let random = options.seed >>> 0 || 1;
    let sequential = 0;
    let writeIndex = 0;
    const pick = (): number => {
      for (;;) {
        let block: number;
        if (options.order === 'sequential') {
          block = startBlock + (sequential++ % blockCount);
        } else {
          random = (random ^ (random << 13)) >>> 0;
          random = (random ^ (random >>> 17)) >>> 0;
          random = (random ^ (random << 5)) >>> 0;
          block = startBlock + (random % blockCount);
        }
        if (!this.inFlight.has(block)) return block;
      }
    };
    const worker = async (): Promise<void> => {
      while (!this.stopping && !client.isClosed) {
        const block = pick();
        const index = writeIndex++;
        const data = writeContent(options.tag, index, block * blockBytes, blockBytes);
        this.inFlight.add(block);
        let error: number;
        try {
          error = await client.writeData(block * blockBytes, data);
        } catch {
          // The connection died with this write in flight: it may or may not be stored.
          this.noteUnacknowledged(block, data);
          this.inFlight.delete(block);
          return;
        }
        this.inFlight.delete(block);
        if (error !== 0) {
          this.errors++;
          this.noteUnacknowledged(block, data);
          continue;
        }
        this.acknowledged.set(block, data);
        this.unacknowledged.delete(block);
        this.acknowledgedCount++;
        this.acknowledgedBytes += blockBytes;
        this.ackWaiters = this.ackWaiters.filter((waiter) => {
          if (this.acknowledgedCount < waiter.count) return true;
          waiter.resolve();
          return false;
        });
      }
    };
    this.done = Promise.all(Array.from({ length: options.queueDepth ?? 16 }, () => worker())).then(() => undefined);
    return this;
  }

  private noteUnacknowledged(block: number, data: Buffer): void {
    const list = this.unacknowledged.get(block) ?? [];
    list.push(data);
    this.unacknowledged.set(block, list);
  }

  /** Resolves once `count` writes were acknowledged in all (or the writer ended). */
  acknowledgedAtLeast(count: number): Promise<void> {
    if (this.acknowledgedCount >= count) return Promise.resolve();
    return new Promise((resolve) => {
      this.ackWaiters.push({ count, resolve });
      this.done?.then(() => resolve(), () => resolve());
    });
  }

  /** Stops issuing writes and waits for those in flight (or the connection's end). */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.done;
  }

  /** Waits for the writer to end by itself (the connection died). */
  ended(): Promise<void> {
    return this.done ?? Promise.resolve();
  }

  /**
   * Checks `image` (the whole volume as another side holds it): every acknowledged write is
   * there, or a later write to the same block that was in flight. Returns the problems.
   */
  verify(image: Buffer, blockBytes = this.options.blockBytes ?? 4096, maxProblems = 10): string[] {
    const problems: string[] = [];
    for (const [block, data] of this.acknowledged) {
      const found = image.subarray(block * blockBytes, (block + 1) * blockBytes);
      if (found.equals(data)) continue;
      if ((this.unacknowledged.get(block) ?? []).some((later) => found.equals(later))) continue;
      problems.push(`block ${block} (byte ${block * blockBytes}): wanted write #${data.readUInt32LE(4)} tag ${data.readUInt32LE(0) & 0xffff}, ` +
        `found ${found.readUInt32LE(0) >>> 16 === 0xb10c ? `write #${found.readUInt32LE(4)} tag ${found.readUInt32LE(0) & 0xffff}` : found.subarray(0, 12).toString('hex')}`);
      if (problems.length >= maxProblems) break;
    }
    return problems;
  }
}
