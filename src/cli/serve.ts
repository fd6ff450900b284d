// Notes on the design
// -------------------
// `blockmirror serve`: open the configured volumes, export them over NBD, report, and shut down
// cleanly. The ServeSession owns every volume it opened and the one NbdServer; nothing else
// closes them.
//
// Lifecycle (one setter, `setState`, logs every transition):
//   starting -> serving -> stopping -> stopped
//   starting -> stopped              (a volume or listener failed to open: what was opened is
//                                     closed again, in reverse order)
// Shutdown order is what makes a reopened named volume consistent: first the server stops
// accepting and answers the requests in flight (graceful close), then every volume is flushed,
// then closed. Only then is the summary printed. SIGHUP stops the same way (a closed terminal
// must not lose the clean stop). A second signal skips all of that and exits at once with
// 128 + signal number.
//
// Output contract (tests and scripts read it): stdout gets one line per export address that
// starts with the NBD URI, then a line starting with "ready", then status lines, then on
// shutdown lines starting with "summary". Logs go to stderr (pino, JSON).

import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import { performance } from 'node:perf_hooks';
import pino from 'pino';

import { BlockmirrorError, CliErrorCode } from '../errors';
import { NbdConnectionEvent, NbdDisconnectEvent, NbdProtocolErrorEvent, NbdServer } from '../nbd/server';
import { Volume, VolumeCreateOptions } from '../storage/volume';
import type { BlockmirrorConfig, VolumeConfig } from './config';
import { formatSize } from './config';
import { CounterSample, RateMeter, formatBytes, formatDuration, formatStatusLine } from './status';

export type ServeState = 'starting' | 'serving' | 'stopping' | 'stopped';

const TRANSITIONS: Record<ServeState, readonly ServeState[]> = {
  starting: ['serving', 'stopped'],
  serving: ['stopping'],
  stopping: ['stopped'],
  stopped: [],
};

/** A failure to start that is the operator's to fix (exit code 1, message without a stack). */
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

interface OpenedVolume {
  config: VolumeConfig;
  volume: Volume;
  opened: 'created' | 'reopened';
}

function describeError(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return typeof code === 'string' ? `${code}: ${error.message}` : error.message;
  }
  return String(error);
}

function errorCode(error: unknown): unknown {
  return (error as { code?: unknown } | null)?.code;
}

/**
 * Opens (or creates) one configured volume and its configured bitmaps. A shared or file volume
 * that exists already is reopened (its data and bitmaps kept) unless `existing` is "error"; its
 * geometry (capacity, block size, strictness, and the granularity of configured bitmaps that exist
 * already) must match the config, and a configured bitmap's recording flag is applied.
 */
export async function openConfiguredVolume(config: VolumeConfig): Promise<OpenedVolume> {
  let volume: Volume | undefined;
  let opened: OpenedVolume['opened'] = 'created';
  if (config.backing !== 'memory') {
    try {
      volume = Volume.open(config.backing === 'file' ? { path: config.path as string } : { name: config.name });
    } catch (error) {
      if (errorCode(error) !== 'ERR_REGION_NOT_FOUND') throw error;
    }
  }
  if (volume !== undefined) {
    opened = 'reopened';
    if (config.existing === 'error') {
      await volume.close();
      throw new ServeError('ERR_CLI_VOLUME_EXISTS',
        `volume "${config.name}": its ${config.backing} backing exists already and existing is "error"`);
    }
    if (volume.capacityBytes !== config.capacityBytes || volume.blockSize !== config.blockSize ||
        volume.strict !== config.strict) {
      const found = `capacity ${volume.capacityBytes}, blockSize ${volume.blockSize}, strict ${volume.strict}`;
      await volume.close();
      throw new ServeError('ERR_CLI_VOLUME_GEOMETRY',
        `volume "${config.name}": the existing ${config.backing} volume has ${found}; the config says ` +
        `capacity ${config.capacityBytes}, blockSize ${config.blockSize}, strict ${config.strict}`);
    }
  } else {
    const options: VolumeCreateOptions = {
      capacityBytes: config.capacityBytes,
      blockSize: config.blockSize,
      strict: config.strict,
      backing: config.backing,
      name: config.name,
    };
    if (config.path !== undefined) options.path = config.path;
    volume = Volume.create(options);
  }
  try {
    const existing = new Map(volume.listBitmaps().map((bitmap) => [bitmap.name, bitmap]));
    for (const bitmap of config.bitmaps) {
      const found = existing.get(bitmap.name);
      if (found !== undefined) {
        // A reopened bitmap keeps its bits; a different granularity would make them mean
        // something else, so it is refused rather than silently kept or reset.
        if (found.granularityBytes !== bitmap.granularityBytes) {
          throw new ServeError('ERR_CLI_VOLUME_GEOMETRY',
            `volume "${config.name}": bitmap "${bitmap.name}" exists with granularity ` +
            `${found.granularityBytes}, the config says ${bitmap.granularityBytes}`);
        }
        if (found.recording !== bitmap.recording) volume.setBitmapRecording(bitmap.name, bitmap.recording);
        continue;
      }
      // The server opens bitmaps by name when a client asks; this handle is not needed.
      volume.createBitmap(bitmap.name, { granularityBytes: bitmap.granularityBytes, recording: bitmap.recording }).close();
    }
  } catch (error) {
    await volume.close();
    throw error;
  }
  return { config, volume, opened };
}

/**
 * A socket file left behind by a serve that died would make listen() fail with EADDRINUSE.
 * Remove it only when nothing answers on it; a live server there, or a file that is not a
 * socket, is the operator's to sort out.
 */
async function removeStaleSocket(socketPath: string): Promise<void> {
  let stats: fs.Stats;
  try {
    stats = fs.statSync(socketPath);
  } catch {
    return;
  }
  if (!stats.isSocket()) {
    throw new ServeError('ERR_CLI_SOCKET_PATH', `${socketPath} exists and is not a socket; not removing it`);
  }
  const live = await new Promise<boolean>((resolve) => {
    const probe = net.connect({ path: socketPath });
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (live) throw new ServeError('ERR_CLI_SOCKET_IN_USE', `another server is listening on ${socketPath}`);
  fs.unlinkSync(socketPath);
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
  private readonly volumes: OpenedVolume[] = [];
  private server: NbdServer | undefined;
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

  /** Opens the volumes, starts listening and prints the export URIs. */
  async start(): Promise<void> {
    const { config } = this.options;
    try {
      for (const volumeConfig of config.volumes) {
        const opened = await openConfiguredVolume(volumeConfig);
        this.volumes.push(opened);
        this.logger.info({ volume: volumeConfig.name, backing: volumeConfig.backing, opened: opened.opened,
          capacityBytes: volumeConfig.capacityBytes, blockSize: volumeConfig.blockSize }, 'volume open');
      }
      const byName = new Map(this.volumes.map((v) => [v.config.name, v.volume]));
      this.server = new NbdServer({
        exports: config.exports.map((entry) => ({
          name: entry.name,
          volume: byName.get(entry.volume) as Volume,
          readOnly: entry.readOnly,
          description: entry.description,
        })),
        listen: config.listen.map((entry) => ('path' in entry ? { path: entry.path } : { host: entry.host, port: entry.port })),
        maxPayloadBytes: config.limits.maxPayloadBytes,
        logger: this.logger.child({ component: 'nbd' }),
      });
      this.server.on('connection', (info: NbdConnectionEvent) => this.logger.info(
        { connectionId: info.connectionId, transport: info.transport, remoteAddress: info.remoteAddress }, 'client connected'));
      this.server.on('disconnect', (info: NbdDisconnectEvent) => this.logger.info(
        { connectionId: info.connectionId, reason: info.reason, exportName: info.exportName }, 'client disconnected'));
      this.server.on('protocol-error', (info: NbdProtocolErrorEvent) => this.logger.warn(
        { connectionId: info.connectionId, code: info.error.code }, `protocol error: ${info.error.message}`));
      for (const entry of config.listen) {
        if ('path' in entry) await removeStaleSocket(entry.path);
      }
      await this.server.listen();
    } catch (error) {
      await this.closeAll();
      this.setState('stopped');
      throw error;
    }
    this.setState('serving');
    this.startedAtMs = performance.now();
    const details = new Map(config.exports.map((entry) => {
      const volume = config.volumes.find((v) => v.name === entry.volume) as VolumeConfig;
      return [entry.name, `(export ${entry.name}: volume ${volume.name}, ${formatSize(volume.capacityBytes)}, ` +
        `${volume.backing}, ${entry.readOnly ? 'read-only' : 'read-write'})`];
    }));
    for (const address of this.server.addresses()) {
      const detail = details.get(address.exportName);
      this.print(detail === undefined ? address.uri : `${address.uri}  ${detail}`);
    }
    this.print(`ready: ${config.exports.length} export(s) on ${config.listen.length} listener(s), pid ${process.pid}; ` +
      'SIGINT or SIGTERM stops');
    this.meter.update(this.sample());
    this.startStatus();
  }

  /** Totals across all volumes, plus the server's connection count. */
  sample(): CounterSample {
    const totals = sumStats(this.volumes.map((v) => v.volume.stats()));
    const serverStats = (this.server?.stats() ?? {}) as unknown as Record<string, unknown>;
    return {
      timeMs: performance.now(),
      readBytes: num(totals, 'readBytes'),
      writeBytes: num(totals, 'writeBytes'),
      ioCount: num(totals, 'readCount') + num(totals, 'writeCount') + num(totals, 'zeroCount') +
        num(totals, 'trimCount') + num(totals, 'flushCount'),
      connections: num(serverStats, 'connections'),
    };
  }

  private startStatus(): void {
    if (this.options.quiet === true) return;
    const tty = this.output.isTTY === true;
    const intervalMs = tty ? 1000 : Math.max(0.1, this.options.statusIntervalSeconds ?? 5) * 1000;
    this.statusTimer = setInterval(() => {
      const sample = this.sample();
      const line = formatStatusLine(this.meter.update(sample), sample);
      if (tty) {
        this.output.write(`\r\x1b[2K${line}`);
        this.statusLineOpen = true;
      } else {
        this.output.write(`status: ${line}\n`);
      }
    }, intervalMs);
  }

  /**
   * Stops: no new connections, in-flight requests answered, volumes flushed and closed, summary
   * printed. Idempotent (a second call returns the same promise).
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
    const problems = await this.closeAll();
    const serverStats = this.server === undefined ? {} : (this.server.stats() as unknown as Record<string, unknown>);
    this.printSummary(serverStats);
    this.setState('stopped');
    if (problems > 0) throw new ServeError('ERR_CLI_SHUTDOWN', `${problems} problem(s) while shutting down; see the log`);
  }

  /** Closes the server, then flushes and closes every volume; returns how many steps failed. */
  private async closeAll(): Promise<number> {
    let problems = 0;
    if (this.server !== undefined) {
      const server = this.server;
      const timeoutMs = this.options.shutdownTimeoutMs ?? 30_000;
      let timer: NodeJS.Timeout | undefined;
      try {
        const forced = new Promise<'timeout'>((resolve) => {
          timer = setTimeout(() => resolve('timeout'), timeoutMs);
        });
        const outcome = await Promise.race([server.close({ graceful: true }).then(() => 'closed' as const), forced]);
        if (outcome === 'timeout') {
          this.logger.warn({ timeoutMs }, 'graceful close took too long; cutting connections');
          await server.close({ graceful: false });
        }
      } catch (error) {
        problems++;
        this.logger.error({ err: error }, 'closing the NBD server failed');
      } finally {
        if (timer !== undefined) clearTimeout(timer);
      }
    }
    // Reverse order of opening. Flush before close, so a named region is consistent for the next
    // process that opens it even if close itself were to fail.
    const finalStats: VolumeStats[] = new Array(this.volumes.length);
    for (let index = this.volumes.length - 1; index >= 0; index--) {
      const opened = this.volumes[index] as OpenedVolume;
      try {
        await opened.volume.flush();
      } catch (error) {
        problems++;
        this.logger.error({ err: error, volume: opened.config.name }, `flush failed: ${describeError(error)}`);
      }
      // stats() after close throws; the summary needs the final numbers.
      finalStats[index] = opened.volume.stats();
      try {
        await opened.volume.close();
      } catch (error) {
        problems++;
        this.logger.error({ err: error, volume: opened.config.name }, `close failed: ${describeError(error)}`);
      }
    }
    this.finalVolumeStats = finalStats;
    return problems;
  }

  /** Per-volume stats taken after the final flush, before close. */
  private finalVolumeStats: VolumeStats[] | undefined;

  private printSummary(serverStats: Record<string, unknown>): void {
    const seconds = (performance.now() - this.startedAtMs) / 1000;
    const perVolume = this.finalVolumeStats ?? [];
    const totals = sumStats(perVolume);
    const requests = (serverStats.requests ?? {}) as Record<string, unknown>;
    this.print(`summary: uptime ${formatDuration(seconds)}, connections ${num(serverStats, 'totalConnections')} total, ` +
      `errors ${num(serverStats, 'errors')}, protocol errors ${num(serverStats, 'protocolErrors')}`);
    this.print(`summary: nbd requests: ${Object.entries(requests).filter(([, v]) => num({ v }, 'v') > 0)
      .map(([k, v]) => `${k} ${num({ v }, 'v')}`).join(', ') || 'none'}`);
    this.print(`summary: reads ${num(totals, 'readCount')} (${formatBytes(num(totals, 'readBytes'))}), ` +
      `writes ${num(totals, 'writeCount')} (${formatBytes(num(totals, 'writeBytes'))}), ` +
      `zeroes ${num(totals, 'zeroCount')}, trims ${num(totals, 'trimCount')}, flushes ${num(totals, 'flushCount')}`);
    this.volumes.forEach((opened, index) => {
      const stats = (perVolume[index] ?? {}) as unknown as Record<string, unknown>;
      this.print(`summary: volume ${opened.config.name} (${opened.config.backing}, ${opened.opened}): ` +
        `reads ${num(stats, 'readCount')}, writes ${num(stats, 'writeCount')}, flushed and closed`);
    });
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
