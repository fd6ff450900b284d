// Two (or more) real `blockmirror serve` processes linked over loopback TCP, for integration
// tests of links: each gets a config with one controller, fixed free replication ports (so a
// killed serve restarts on the same address), tight heartbeat and backoff timing, and its own
// admin socket. Tests watch state through the admin endpoint's /events (never sleeps).

import * as fs from 'node:fs';
import * as path from 'node:path';

import { AdminClient } from '../../src/admin/client';
import { ServeProcess } from './serve-process';
import { freePort } from './tools';

/** Link timing for tests: a dead peer is noticed in under a second. */
export const FAST_LINK = Object.freeze({
  heartbeatIntervalMs: 100,
  deadPeerTimeoutMs: 800,
  handshakeTimeoutMs: 1000,
  connectTimeoutMs: 1000,
  reconnectInitialDelayMs: 50,
  reconnectMaxDelayMs: 400,
});

export interface SiteOptions {
  id: string;
  replicationPort: number;
  peers: { id: string; port: number; secret?: string | undefined }[];
  directory: string;
  env?: NodeJS.ProcessEnv;
  replication?: Record<string, unknown>;
  /** Pairs of this site's vol0 (config `pairs` entries). @default [] */
  pairs?: Record<string, unknown>[];
  /** Capacity of vol0. @default '16MiB' */
  capacity?: string;
}

/** The config document of a one-controller serve. */
export function siteConfig(options: SiteOptions): Record<string, unknown> {
  const peers = options.peers.map((peer) => {
    const entry: Record<string, unknown> = { id: peer.id, address: `127.0.0.1:${peer.port}` };
    if (peer.secret !== undefined) {
      const secretFile = path.join(options.directory, `${options.id}-${peer.id}.secret`);
      fs.writeFileSync(secretFile, `${peer.secret}\n`, { mode: 0o600 });
      entry.secretFile = secretFile;
    }
    return entry;
  });
  return {
    controllers: [{
      id: options.id,
      volumes: [{ name: 'vol0', capacity: options.capacity ?? '16MiB' }],
      exports: [{ name: `${options.id}-vol0`, volume: 'vol0' }],
      replication: { listen: `127.0.0.1:${options.replicationPort}`, ...FAST_LINK, ...options.replication },
      peers,
      pairs: options.pairs ?? [],
    }],
    listen: [{ host: '127.0.0.1', port: 0 }],
  };
}

/** One running site: its serve process and an admin client. */
export class Site {
  serve: ServeProcess;
  readonly admin: AdminClient;

  private constructor(readonly options: SiteOptions, serve: ServeProcess, readonly adminSocket: string) {
    this.serve = serve;
    this.admin = new AdminClient(adminSocket, { timeoutMs: 5000 });
  }

  static async start(options: SiteOptions): Promise<Site> {
    const adminSocket = path.join(options.directory, `${options.id}.admin.sock`);
    const serve = await ServeProcess.start({
      config: siteConfig(options),
      directory: options.directory,
      args: ['--port', '0', '--admin', adminSocket, '--status-interval', '60', '--log-level', 'info'],
      env: { ...process.env, ...options.env },
    });
    return new Site(options, serve, adminSocket);
  }

  /** Starts the same site again (after a kill), with the same ports and socket. */
  async restart(): Promise<void> {
    this.serve = await ServeProcess.start({
      config: siteConfig(this.options),
      directory: this.options.directory,
      args: ['--port', '0', '--admin', this.adminSocket, '--status-interval', '60', '--log-level', 'info'],
      env: { ...process.env, ...this.options.env },
    });
  }

  /** The status of this site's link to `peerId`. */
  async link(peerId: string): Promise<Record<string, unknown>> {
    const status = await this.admin.get('/status') as { controllers: { links: Record<string, unknown>[] }[] };
    const link = status.controllers[0]?.links.find((entry) => entry.peerId === peerId);
    if (link === undefined) throw new Error(`${this.options.id} has no link to ${peerId}`);
    return link;
  }

  /**
   * Starts reading /events and resolves once the current state has arrived (so the stream is
   * subscribed): every event from then on is recorded, and `until` finds past and future ones.
   */
  async watch(): Promise<EventWatch> {
    const watch = new EventWatch(this.options.id);
    const stream = this.admin.events((event) => watch.push(event), { signal: watch.abort.signal });
    stream.catch(() => undefined);
    await watch.until((event) => event.kind === 'exists' && event.subject === 'controller', 'the current state', 10_000);
    return watch;
  }

  /** Resolves with the first event (the current state included) that matches. */
  async waitForEvent(predicate: (event: Record<string, unknown>) => boolean, what: string, timeoutMs = 15_000): Promise<Record<string, unknown>> {
    const watch = await this.watch();
    try {
      return await watch.until(predicate, what, timeoutMs);
    } finally {
      watch.stop();
    }
  }

  /** The status of pair `name` on this site. */
  async pair(name: string): Promise<Record<string, unknown>> {
    const status = await this.admin.get('/status') as { controllers: { pairs: Record<string, unknown>[] }[] };
    const pair = status.controllers[0]?.pairs.find((entry) => entry.name === name);
    if (pair === undefined) throw new Error(`${this.options.id} has no pair ${name}`);
    return pair;
  }

  /** Waits until the link to `peerId` is in `state` (now or later). */
  linkState(peerId: string, state: string, timeoutMs = 15_000): Promise<Record<string, unknown>> {
    return this.waitForEvent((event) => event.subject === `link:${peerId}` && event.new === state,
      `link:${peerId} ${state}`, timeoutMs);
  }
}

/** Two free ports for a pair of sites. */
export async function twoPorts(): Promise<[number, number]> {
  const first = await freePort();
  let second = await freePort();
  while (second === first) second = await freePort();
  return [first, second];
}

/** The events of one /events stream, recorded as they arrive. */
export class EventWatch {
  readonly events: Record<string, unknown>[] = [];
  readonly abort = new AbortController();
  private waiters: { predicate: (event: Record<string, unknown>) => boolean; resolve: (event: Record<string, unknown>) => void }[] = [];

  constructor(private readonly siteId: string) {}

  push(event: Record<string, unknown>): void {
    this.events.push(event);
    this.waiters = this.waiters.filter((waiter) => {
      if (!waiter.predicate(event)) return true;
      waiter.resolve(event);
      return false;
    });
  }

  /** The first recorded or later event that matches; rejects after timeoutMs listing what came. */
  until(predicate: (event: Record<string, unknown>) => boolean, what: string, timeoutMs = 15_000): Promise<Record<string, unknown>> {
    const seen = this.events.find(predicate);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((waiter) => waiter !== entry);
        reject(new Error(`${this.siteId}: timed out after ${timeoutMs} ms waiting for ${what}; events:\n` +
          this.events.map((event) => JSON.stringify(event)).join('\n')));
      }, timeoutMs);
      const entry = {
        predicate,
        resolve: (event: Record<string, unknown>) => {
          clearTimeout(timer);
          resolve(event);
        },
      };
      this.waiters.push(entry);
    });
  }

  /** Waits for a change of the link to `peerId` into `state` (recorded or later). */
  linkChange(peerId: string, state: string, timeoutMs?: number): Promise<Record<string, unknown>> {
    return this.until((event) => event.kind === 'change' && event.subject === `link:${peerId}` && event.new === state,
      `link:${peerId} -> ${state}`, timeoutMs);
  }

  stop(): void {
    this.abort.abort();
  }
}
