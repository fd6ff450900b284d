// Notes on the design
// -------------------
// `blockmirror serve`: run the configured controllers (their volumes, replication listeners and
// links), the one NBD server that exports their volumes, and the admin endpoint; report; shut
// down cleanly. The ServeSession owns one ControllerHost (src/controller/host.ts), which owns
// the controllers and the NBD server, and one AdminServer; nothing else closes them.
//
// Lifecycle (one setter, `setState`, logs every transition):
//   starting -> serving -> stopping -> stopped
//   starting -> stopped              (a volume, listener or the admin socket failed to open: what
//                                     was opened is closed again, in reverse order)
// Shutdown order is what makes a reopened named volume consistent: first the admin endpoint
// closes, then the NBD server stops accepting and answers the requests in flight (graceful
// close), then each controller closes its links (GOODBYE) and flushes and closes its volumes.
// Only then is the summary printed. SIGHUP stops the same way (a closed terminal must not lose
// the clean stop). A second signal skips all of that and exits at once with 128 + signal number.
//
// Output contract (tests and scripts read it): stdout gets one line per export address that
// starts with the NBD URI, one line per controller starting with "controller <id>:" (its
// replication address and peers), a line starting with "admin:" (the admin socket), then a
// line starting with "ready", then status lines, then on shutdown lines starting with
// "summary". Logs go to stderr (pino, JSON).

import * as os from 'node:os';
import { performance } from 'node:perf_hooks';
import pino from 'pino';

import { AdminServer } from '../admin/server';
import { createArrayMetrics, type ArrayStatusLike } from '../admin/metrics';
import { removeStaleSocket } from '../admin/socket';
import type { ControllerOptions, ControllerPeerSpec } from '../controller/controller';
import { ControllerHost } from '../controller/host';
import { loadSecret } from '../controller/secrets';
import { BlockmirrorError, CliErrorCode } from '../errors';
import type { NbdConnectionEvent, NbdDisconnectEvent, NbdProtocolErrorEvent } from '../nbd/server';
import type { Volume } from '../storage/volume';
import type { VersionRange } from '../transport/handshake';
import { formatAddress } from '../transport/wire';
import type { BlockmirrorConfig, ControllerConfig } from './config';
import { formatSize } from './config';
import { CounterSample, RateMeter, formatBytes, formatDuration, formatStatusLine } from './status';

export type ServeState = 'starting' | 'serving' | 'stopping' | 'stopped';

const TRANSITIONS: Record<ServeState, readonly ServeState[]> = {
  starting: ['serving', 'stopped'],
  serving: ['stopping'],
  stopping: ['stopped'],
  stopped: [],
};

/** A run-time failure of `serve`: a BlockmirrorError with an ERR_CLI_* code. */
export class ServeError extends BlockmirrorError {
  constructor(code: CliErrorCode, message: string) {
    super(code, message);
    this.name = 'ServeError';
  }
}

export interface ServeOptions {
  config: BlockmirrorConfig;
  logger: pino.Logger;
  /** Where the URI, status and summary lines go. @default process.stdout */
  output?: NodeJS.WritableStream & { isTTY?: boolean };
  /** Print no status line. @default false */
  quiet?: boolean;
  /** Seconds between status lines when output is not a TTY. @default 5 */
  statusIntervalSeconds?: number;
  /** Milliseconds a graceful server close may take before connections are cut. @default 30000 */
  shutdownTimeoutMs?: number;
}

type VolumeStats = ReturnType<Volume['stats']>;

/**
 * A test hook: BLOCKMIRROR_LINK_PROTOCOL_VERSIONS="2" or "1..2" makes this serve offer other link
 * protocol versions, so a test can start an incompatible peer. Unset in real use.
 */
function linkVersionsFromEnvironment(): VersionRange | undefined {
  const value = process.env.BLOCKMIRROR_LINK_PROTOCOL_VERSIONS;
  if (value === undefined || value === '') return undefined;
  const match = /^(\d+)(?:\.\.(\d+))?$/.exec(value);
  if (match === null) {
    throw new BlockmirrorError('ERR_CONFIG_INVALID', `BLOCKMIRROR_LINK_PROTOCOL_VERSIONS must be N or N..M, got ${value}`);
  }
  const min = Number(match[1]);
  return { min, max: match[2] === undefined ? min : Number(match[2]) };
}

/** Turns one configured controller into Controller options (secrets read here, once). */
export function controllerOptionsOf(config: ControllerConfig, index: number, logger: pino.Logger): ControllerOptions {
  const peers: ControllerPeerSpec[] = config.peers.map((peer, peerIndex) => {
    const spec: ControllerPeerSpec = { id: peer.id };
    if (peer.address !== undefined) spec.address = peer.address;
    const secret = loadSecret(peer, `controllers[${index}].peers[${peerIndex}] (${peer.id})`);
    if (secret !== undefined) spec.secret = secret;
    return spec;
  });
  const { listen, ...tuning } = config.replication;
  const options: ControllerOptions = {
    id: config.id,
    volumes: config.volumes.map((volume) => ({ ...volume })),
    exports: config.exports.map((entry) => ({ ...entry })),
    replication: listen === undefined ? tuning : { ...tuning, listen },
    peers,
    pairs: config.pairs.map((pair) => ({ ...pair })),
    consistencyGroups: config.consistencyGroups.map((group) => ({ ...group, relationships: group.relationships.map((row) => ({ ...row })) })),
    logger,
  };
  if (config.disks !== undefined) options.disks = config.disks.map((disk) => ({ ...disk }));
  if (config.groups !== undefined) options.groups = config.groups.map((group) => ({ ...group, disks: [...group.disks] }));
  if (config.workVolumes !== undefined) options.workVolumes = config.workVolumes.map((work) => ({ ...work }));
  if (config.workDisks !== undefined) options.workDisks = config.workDisks.map((work) => ({ ...work }));
  if (config.diversion !== undefined) options.diversion = config.diversion;
  if (config.rebuildStepBytes !== undefined) options.raid = { rebuildStepBytes: config.rebuildStepBytes };
  const versions = linkVersionsFromEnvironment();
  if (versions !== undefined) options.linkVersions = versions;
  return options;
}

function describeError(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return typeof code === 'string' ? `${code}: ${error.message}` : error.message;
  }
  return String(error);
}

/** Sums the counters of several volumes' stats. */
function sumStats(all: VolumeStats[]): Record<string, number> {
  const total: Record<string, number> = {};
  for (const stats of all) {
    for (const [key, value] of Object.entries(stats as unknown as Record<string, unknown>)) {
      if (typeof value === 'number' || typeof value === 'bigint') total[key] = (total[key] ?? 0) + Number(value);
    }
  }
  return total;
}

function num(record: Record<string, unknown>, key: string): number {
  const value = record[key];
  return typeof value === 'number' || typeof value === 'bigint' ? Number(value) : 0;
}

/** One running `serve`. */
export class ServeSession {
  private state: ServeState = 'starting';
  private host: ControllerHost | undefined;
  private admin: AdminServer | undefined;
  private readonly output: NodeJS.WritableStream & { isTTY?: boolean };
  private readonly logger: pino.Logger;
  private readonly meter = new RateMeter();
  private statusTimer: NodeJS.Timeout | undefined;
  private statusLineOpen = false;
  private startedAtMs = 0;
  private stopPromise: Promise<void> | undefined;

  constructor(private readonly options: ServeOptions) {
    this.output = options.output ?? process.stdout;
    this.logger = options.logger;
  }

  get currentState(): ServeState {
    return this.state;
  }

  /** The host (after start). */
  get controllerHost(): ControllerHost | undefined {
    return this.host;
  }

  private setState(next: ServeState): void {
    const previous = this.state;
    if (!TRANSITIONS[previous].includes(next)) {
      throw new Error(`serve: invalid transition ${previous} -> ${next}`);
    }
    this.state = next;
    this.logger.debug({ from: previous, to: next }, `serve ${previous} -> ${next}`);
  }

  private print(line: string): void {
    if (this.statusLineOpen) {
      this.output.write('\n');
      this.statusLineOpen = false;
    }
    this.output.write(`${line}\n`);
  }

  private volumeStats(): VolumeStats[] {
    return (this.host?.controllers ?? []).flatMap((controller) =>
      controller.volumes.filter((entry) => !entry.volume.closed).map((entry) => entry.volume.stats()));
  }

  /** Opens the controllers, listeners and the admin endpoint, and prints where they are. */
  async start(): Promise<void> {
    const { config } = this.options;
    try {
      const host = new ControllerHost({
        controllers: config.controllers.map((controller, index) => controllerOptionsOf(controller, index, this.logger)),
        nbd: {
          listen: config.listen.map((entry) => ('path' in entry ? { path: entry.path } : { host: entry.host, port: entry.port })),
          maxPayloadBytes: config.limits.maxPayloadBytes,
          workers: config.limits.workers,
          nativeLanes: config.limits.nativeLanes,
          logger: this.logger.child({ component: 'nbd' }),
        },
      });
      this.host = host;
      for (const entry of config.listen) {
        if ('path' in entry) await removeStaleSocket(entry.path);
      }
      await host.start();
      const server = host.nbd;
      server?.on('connection', (info: NbdConnectionEvent) => this.logger.info(
        { connectionId: info.connectionId, transport: info.transport, remoteAddress: info.remoteAddress }, 'client connected'));
      server?.on('disconnect', (info: NbdDisconnectEvent) => this.logger.info(
        { connectionId: info.connectionId, reason: info.reason, exportName: info.exportName }, 'client disconnected'));
      server?.on('protocol-error', (info: NbdProtocolErrorEvent) => this.logger.warn(
        { connectionId: info.connectionId, code: info.error.code }, `protocol error: ${info.error.message}`));
      const metrics = createArrayMetrics(() => host.status() as unknown as ArrayStatusLike);
      host.useMetrics(async () => ({ contentType: metrics.contentType, text: await metrics.text() }));
      if (config.admin.socket !== null || config.admin.tcp !== undefined) {
        const adminOptions: ConstructorParameters<typeof AdminServer>[0] = { target: host, logger: this.logger.child({ component: 'admin' }) };
        if (config.admin.socket !== null) adminOptions.socketPath = config.admin.socket;
        if (config.admin.tcp !== undefined) adminOptions.tcp = config.admin.tcp;
        this.admin = new AdminServer(adminOptions);
        await this.admin.listen();
      }
    } catch (error) {
      await this.closeAll();
      this.setState('stopped');
      throw error;
    }
    this.setState('serving');
    this.startedAtMs = performance.now();
    this.printStart();
    this.meter.update(this.sample());
    this.startStatus();
  }

  private printStart(): void {
    const host = this.host as ControllerHost;
    const details = new Map<string, string>();
    for (const controller of host.controllers) {
      for (const entry of controller.exports) {
        const spec = controller.volumes.find((opened) => opened.spec.name === entry.volume)?.spec;
        details.set(entry.name, `(export ${entry.name}: controller ${controller.id}, volume ${entry.volume}, ` +
          `${formatSize(spec?.capacityBytes ?? 0)}, ${spec?.backing ?? 'memory'}, ` +
          // A pair's secondary is read-only by its role (until a takeover), not by the config.
          `${entry.readOnly === true || controller.isSecondaryVolume(entry.volume) ? 'read-only' : 'read-write'})`);
      }
    }
    for (const address of host.nbd?.addresses() ?? []) {
      const detail = details.get(address.exportName);
      this.print(detail === undefined ? address.uri : `${address.uri}  ${detail}`);
    }
    for (const controller of host.controllers) {
      const listen = controller.replicationAddress;
      const peers = [...controller.links.values()].map((link) => {
        const status = link.status();
        return `${link.peerId} (${link.dials ? `dials ${status.address}` : 'accepts'}, ${status.auth === 'none' ? 'unauthenticated' : 'hmac-sha256'})`;
      });
      this.print(`controller ${controller.id}: replication ${listen === undefined ? 'not listening' : `on ${formatAddress(listen)}`}; ` +
        `peers: ${peers.length === 0 ? 'none' : peers.join(', ')}`);
      for (const pair of controller.pairs?.status() ?? []) {
        this.print(`pair ${pair.name}: ${pair.role} on ${controller.id}, ${pair.mode}, volume ${pair.volume} ` +
          `${pair.role === 'primary' ? '->' : '<-'} ${pair.peer}:${pair.remoteVolume}`);
      }
    }
    const adminAddresses = this.admin?.addresses();
    const adminParts = [adminAddresses?.socketPath, adminAddresses?.tcp === undefined ? undefined : `http://${formatAddress(adminAddresses.tcp)}`]
      .filter((part): part is string => part !== undefined);
    this.print(`admin: ${adminParts.length === 0 ? 'none' : adminParts.join(', ')}`);
    const exportCount = host.controllers.reduce((sum, controller) => sum + controller.exports.length, 0);
    this.print(`ready: ${host.controllers.length} controller(s), ${exportCount} export(s) on ` +
      `${this.options.config.listen.length} listener(s), pid ${process.pid}; SIGINT or SIGTERM stops`);
  }

  /** Totals across all volumes, plus the server's connection count. */
  sample(): CounterSample {
    const totals = sumStats(this.volumeStats());
    const serverStats = (this.host?.nbd?.stats() ?? {}) as unknown as Record<string, unknown>;
    return {
      timeMs: performance.now(),
      readBytes: num(totals, 'readBytes'),
      writeBytes: num(totals, 'writeBytes'),
      ioCount: num(totals, 'readCount') + num(totals, 'writeCount') + num(totals, 'zeroCount') +
        num(totals, 'trimCount') + num(totals, 'flushCount'),
      connections: num(serverStats, 'connections'),
    };
  }

  /** "links a->b up, b->a up" for the status line. */
  private linkSummary(): string {
    const parts: string[] = [];
    for (const controller of this.host?.controllers ?? []) {
      for (const link of controller.links.values()) parts.push(`${controller.id}->${link.peerId} ${link.currentState}`);
    }
    const pairs: string[] = [];
    for (const controller of this.host?.controllers ?? []) {
      for (const pair of controller.pairs?.status() ?? []) {
        if (pair.role !== 'primary') continue;
        const lag = (pair.lag as { records: number } | undefined)?.records ?? 0;
        const progress = pair.progress as { doneBytes: number; totalBytes: number } | null;
        const done = progress === null || progress.totalBytes === 0 ? '' : ` ${Math.floor((100 * progress.doneBytes) / progress.totalBytes)}%`;
        pairs.push(`${pair.name} ${pair.mode} ${pair.state}${done} lag ${lag}`);
      }
    }
    return (parts.length === 0 ? '' : `  links ${parts.join(', ')}`) + (pairs.length === 0 ? '' : `  pairs ${pairs.join(', ')}`);
  }

  private startStatus(): void {
    if (this.options.quiet === true) return;
    const tty = this.output.isTTY === true;
    const intervalMs = tty ? 1000 : Math.max(0.1, this.options.statusIntervalSeconds ?? 5) * 1000;
    this.statusTimer = setInterval(() => {
      const sample = this.sample();
      const line = formatStatusLine(this.meter.update(sample), sample) + this.linkSummary();
      if (tty) {
        this.output.write(`\r\x1b[2K${line}`);
        this.statusLineOpen = true;
      } else {
        this.output.write(`status: ${line}\n`);
      }
    }, intervalMs);
  }

  /**
   * Stops: no new connections, in-flight requests answered, links closed, volumes flushed and
   * closed, summary printed. Idempotent (a second call returns the same promise).
   */
  stop(reason: string): Promise<void> {
    if (this.stopPromise === undefined) this.stopPromise = this.doStop(reason);
    return this.stopPromise;
  }

  private async doStop(reason: string): Promise<void> {
    if (this.state !== 'serving') return;
    this.setState('stopping');
    if (this.statusTimer !== undefined) clearInterval(this.statusTimer);
    this.print(`stopping (${reason}): closing listeners, answering requests in flight`);
    const serverStats = () => (this.host?.nbd?.stats() ?? {}) as unknown as Record<string, unknown>;
    const problems = await this.closeAll();
    this.printSummary(serverStats());
    this.setState('stopped');
    if (problems > 0) throw new ServeError('ERR_CLI_SHUTDOWN', `${problems} problem(s) while shutting down; see the log`);
  }

  /** Closes the admin endpoint, then the host; returns how many steps failed. */
  private async closeAll(): Promise<number> {
    let problems = 0;
    if (this.admin !== undefined) {
      try {
        await this.admin.close();
      } catch (error) {
        problems++;
        this.logger.error({ err: error }, 'closing the admin endpoint failed');
      }
    }
    if (this.host !== undefined) {
      const timeoutMs = this.options.shutdownTimeoutMs ?? 30_000;
      problems += await this.host.close({
        timeoutMs,
        onSlow: () => this.logger.warn({ timeoutMs }, 'graceful close took too long; cutting connections'),
      });
    }
    return problems;
  }

  private printSummary(serverStats: Record<string, unknown>): void {
    const seconds = (performance.now() - this.startedAtMs) / 1000;
    const controllers = this.host?.controllers ?? [];
    const perVolume = controllers.flatMap((controller) => controller.finalVolumeStats ?? []);
    const totals = sumStats(perVolume);
    const requests = (serverStats.requests ?? {}) as Record<string, unknown>;
    this.print(`summary: uptime ${formatDuration(seconds)}, connections ${num(serverStats, 'totalConnections')} total, ` +
      `errors ${num(serverStats, 'errors')}, protocol errors ${num(serverStats, 'protocolErrors')}`);
    this.print(`summary: nbd requests: ${Object.entries(requests).filter(([, v]) => num({ v }, 'v') > 0)
      .map(([k, v]) => `${k} ${num({ v }, 'v')}`).join(', ') || 'none'}`);
    this.print(`summary: reads ${num(totals, 'readCount')} (${formatBytes(num(totals, 'readBytes'))}), ` +
      `writes ${num(totals, 'writeCount')} (${formatBytes(num(totals, 'writeBytes'))}), ` +
      `zeroes ${num(totals, 'zeroCount')}, trims ${num(totals, 'trimCount')}, flushes ${num(totals, 'flushCount')}`);
    for (const controller of controllers) {
      controller.volumes.forEach((opened, index) => {
        const stats = (controller.finalVolumeStats?.[index] ?? {}) as unknown as Record<string, unknown>;
        this.print(`summary: volume ${opened.spec.name} (${opened.spec.backing ?? 'memory'}, ${opened.opened}) on ${controller.id}: ` +
          `reads ${num(stats, 'readCount')}, writes ${num(stats, 'writeCount')}, flushed and closed`);
      });
      for (const link of controller.links.values()) {
        const status = link.status();
        this.print(`summary: link ${controller.id}->${link.peerId}: ${formatBytes(status.bytesOut)} out, ` +
          `${formatBytes(status.bytesIn)} in, ${status.reconnects} reconnect(s), closed`);
      }
    }
  }
}

/** Signals that stop serve cleanly: interrupt, terminate, and hangup (the terminal closed). */
const STOP_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/**
 * Runs serve until a signal: returns the process exit code. Installs SIGINT/SIGTERM/SIGHUP
 * handlers (the first stops cleanly, a second exits at once with 128 + its number).
 */
export async function runServe(options: ServeOptions): Promise<number> {
  const session = new ServeSession(options);
  // Handlers go in before start() prints "ready": a supervisor that signals as soon as it reads
  // that line must never meet the default action (death without a summary).
  let signalled: NodeJS.Signals | undefined;
  let onStopSignal: (signal: NodeJS.Signals) => void = () => undefined;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (signalled !== undefined) {
      const number = os.constants.signals[signal];
      process.stderr.write(`\nblockmirror: second signal (${signal}) during shutdown: exiting at once\n`);
      process.exit(128 + number);
    }
    signalled = signal;
    options.logger.info({ signal }, 'shutting down');
    onStopSignal(signal);
  };
  for (const signal of STOP_SIGNALS) process.on(signal, onSignal);
  try {
    await session.start();
  } catch (error) {
    for (const signal of STOP_SIGNALS) process.off(signal, onSignal);
    throw error;
  }
  return new Promise<number>((resolve) => {
    onStopSignal = (signal) => {
      session.stop(signal).then(
        () => resolve(0),
        (error: unknown) => {
          options.logger.error({ err: error }, describeError(error));
          resolve(1);
        },
      );
    };
    if (signalled !== undefined) onStopSignal(signalled);
  });
}
