// Notes on the design
// -------------------
// The configuration of `blockmirror serve`: which controllers run in the process, their volumes,
// exports, replication links and peers, where the NBD server and the admin endpoint listen, and
// the limits. It is read from JSON or YAML and checked against one zod schema
// (config-schema.ts), which also gives the types of the normalized config and the table of keys
// in docs/config.md. This file is the API around it: reading files, turning zod's issues into
// our messages, writing a config back as a document, and the built-in default.
//
// Contract:
//   - validateConfig(raw) returns the normalized config or throws ConfigError, whose `issues`
//     list every problem found (not only the first), each as "<field path>: <problem>", e.g.
//     "volumes[1].capacity: must be a multiple of blockSize 4096, got 1000"; paths are written
//     `a.b[2].c`, and problems of the whole document as "(document): ...".
//   - Unknown fields are errors: a misspelt option must not be silently ignored.
//   - Sizes are non-negative safe integers or strings "<integer>[B|KiB|MiB|GiB|TiB]"; decimal
//     units (KB, MB) are refused because they are ambiguous.
//   - The single-controller form (top-level volumes and exports) is normalized to one controller
//     "local" (or the top-level id); the normalized config always has `controllers`.
//   - The normalized config is plain data (JSON-serializable) so `config check` can print it, and
//     validateConfig(toDocument(c)) deep-equals c (toDocument writes the controllers form).
// Nothing here touches the storage or the network; the CLI exits with code 2 on ConfigError.

import * as fs from 'node:fs';
import * as path from 'node:path';
import * as YAML from 'yaml';
import type { z } from 'zod';

import { BlockmirrorError } from '../errors';
import {
  BlockmirrorConfig,
  DEFAULT_HOST,
  DEFAULT_PORT,
  ListenConfig,
  configDocumentSchema,
  configErrorMap,
  crossFieldIssues,
  formatAddress,
  formatIssuePath,
  formatSize,
} from './config-schema';

export {
  ADMIN_LOOPBACK_HOSTS,
  DEFAULT_BLOCK_SIZE,
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_DEAD_PEER_TIMEOUT_MS,
  DEFAULT_GRANULARITY_BYTES,
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  DEFAULT_HEARTBEAT_INTERVAL_MS,
  DEFAULT_HOST,
  DEFAULT_MAX_FRAME_BYTES,
  DEFAULT_MAX_PAYLOAD_BYTES,
  DEFAULT_MAX_PENDING_CONNECTIONS,
  DEFAULT_MAX_QUEUED_BYTES,
  DEFAULT_PORT,
  DEFAULT_RECONNECT_INITIAL_DELAY_MS,
  DEFAULT_RECONNECT_JITTER,
  DEFAULT_RECONNECT_MAX_DELAY_MS,
  LEGACY_CONTROLLER_ID,
  MAX_BITMAPS_PER_VOLUME,
  MAX_BLOCK_SIZE,
  MAX_CONNECT_TIMEOUT_MS,
  MAX_CONTROLLERS,
  MAX_DEAD_PEER_TIMEOUT_MS,
  MAX_EXPORTS,
  MAX_GRANULARITY_BYTES,
  MAX_HANDSHAKE_TIMEOUT_MS,
  MAX_HEARTBEAT_INTERVAL_MS,
  MAX_LISTENERS,
  MAX_MAX_FRAME_BYTES,
  MAX_MAX_PAYLOAD_BYTES,
  MAX_MAX_PENDING_CONNECTIONS,
  MAX_MAX_QUEUED_BYTES,
  MAX_NBD_STRING_BYTES,
  MAX_PEERS_PER_CONTROLLER,
  MAX_RECONNECT_DELAY_MS,
  MAX_SOCKET_PATH_BYTES,
  MAX_VOLUMES,
  MAX_VOLUME_CAPACITY_BYTES,
  MIN_BLOCK_SIZE,
  MIN_CONNECT_TIMEOUT_MS,
  MIN_GRANULARITY_BYTES,
  MIN_HANDSHAKE_TIMEOUT_MS,
  MIN_HEARTBEAT_INTERVAL_MS,
  MIN_MAX_FRAME_BYTES,
  MIN_MAX_PAYLOAD_BYTES,
  defaultAdminSocketPath,
  formatAddress,
  formatSize,
  parseSize,
} from './config-schema';
export type {
  AdminConfig,
  BitmapConfig,
  BlockmirrorConfig,
  ControllerConfig,
  ExportConfig,
  LimitsConfig,
  ListenConfig,
  PairConfig,
  ConsistencyGroupConfig,
  PeerConfig,
  ReplicationConfig,
  VolumeBacking,
  VolumeConfig,
  VolumeExistingPolicy,
} from './config-schema';

/** An invalid configuration: a BlockmirrorError with code ERR_CONFIG_INVALID and one issue per problem. */
export class ConfigError extends BlockmirrorError {
  /** One "<field path>: <problem>" line per problem. */
  readonly issues: string[];
  constructor(issues: string[], source?: string) {
    const head = source === undefined ? 'invalid config' : `invalid config ${source}`;
    super('ERR_CONFIG_INVALID', `${head}:\n  ${issues.join('\n  ')}`);
    this.name = 'ConfigError';
    this.issues = issues;
  }
}

/** A problem and where it is, before it is written as "<field path>: <problem>". */
interface LocatedIssue {
  path: ReadonlyArray<PropertyKey>;
  message: string;
}

/** zod's issues as located problems; an unknown-fields issue becomes one problem per field. */
function locateZodIssue(issue: z.core.$ZodIssue): LocatedIssue[] {
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((key) => ({ path: [...issue.path, key], message: issue.message }));
  }
  return [{ path: issue.path, message: issue.message }];
}

/**
 * Orders two paths as the document does: list entries by index, fields in the order the file
 * writes them (fields it lacks, such as a missing required one, after those it has), a field
 * before what is inside it. Problems then read top to bottom, like the file.
 */
function compareInDocument(document: unknown, left: ReadonlyArray<PropertyKey>, right: ReadonlyArray<PropertyKey>): number {
  let node: unknown = document;
  for (let index = 0; index < left.length && index < right.length; index++) {
    const leftKey = left[index];
    const rightKey = right[index];
    if (leftKey !== rightKey) {
      if (typeof leftKey === 'number' && typeof rightKey === 'number') return leftKey - rightKey;
      const keys = node !== null && typeof node === 'object' ? Object.keys(node) : [];
      const rank = (key: PropertyKey): number => {
        const position = keys.indexOf(String(key));
        return position < 0 ? keys.length : position;
      };
      return rank(leftKey as PropertyKey) - rank(rightKey as PropertyKey);
    }
    node = node !== null && typeof node === 'object' ? (node as Record<PropertyKey, unknown>)[leftKey as PropertyKey] : undefined;
  }
  return left.length - right.length;
}

/**
 * Validates a parsed config document and returns it normalized (defaults filled in, sizes in
 * bytes, always in the controllers form). Throws ConfigError listing every problem, in the
 * order of the document.
 */
export function validateConfig(raw: unknown, source?: string): BlockmirrorConfig {
  const document = raw ?? {};
  const result = configDocumentSchema.safeParse(document, { error: configErrorMap });
  const located: LocatedIssue[] = [
    ...(result.success ? [] : result.error.issues.flatMap(locateZodIssue)),
    ...crossFieldIssues(document),
  ];
  // Array.prototype.sort is stable: problems of one field keep the order they were found in.
  located.sort((left, right) => compareInDocument(document, left.path, right.path));
  const issues = located.map((issue) => `${formatIssuePath(issue.path)}: ${issue.message}`);
  if (issues.length > 0 || !result.success) throw new ConfigError(issues, source);
  return result.data;
}

/**
 * The built-in config: two controllers in one process, "site-a" and "site-b", each with a thin
 * 1 GiB memory volume "vol0"; site-a's is exported read-write as "vol0", site-b's read-only as
 * "vol0-b"; they replicate to each other over 127.0.0.1:10810 and 127.0.0.1:10811. NBD on
 * 127.0.0.1:10809; the admin endpoint on defaultAdminSocketPath().
 */
export function defaultConfig(): BlockmirrorConfig {
  const volume = { name: 'vol0', capacity: '1GiB', backing: 'memory' };
  return validateConfig({
    controllers: [
      {
        id: 'site-a',
        volumes: [volume],
        exports: [{ name: 'vol0', volume: 'vol0', readOnly: false, description: 'blockmirror default volume' }],
        replication: { listen: '127.0.0.1:10810' },
        peers: [{ id: 'site-b', address: '127.0.0.1:10811' }],
        pairs: [{ name: 'vol0', volume: 'vol0', peer: 'site-b', remoteVolume: 'vol0', mode: 'sync', role: 'primary' }],
      },
      {
        id: 'site-b',
        volumes: [volume],
        exports: [{ name: 'vol0-b', volume: 'vol0', description: 'site-b copy of vol0 (read-only while it is the secondary)' }],
        replication: { listen: '127.0.0.1:10811' },
        peers: [{ id: 'site-a', address: '127.0.0.1:10810' }],
        pairs: [{ name: 'vol0', volume: 'vol0', peer: 'site-a', remoteVolume: 'vol0', mode: 'sync', role: 'secondary' }],
      },
    ],
    listen: [{ host: DEFAULT_HOST, port: DEFAULT_PORT }],
  }, 'built-in default');
}

/**
 * The config in the file format, always the controllers form (sizes written with units where
 * exact; a volume's sharedName only when it is not the default `<id>.<name>`), as `config check`
 * and `config default` print it. validateConfig(toDocument(c)) deep-equals c.
 */
export function toDocument(config: BlockmirrorConfig): Record<string, unknown> {
  const admin: Record<string, unknown> = { socket: config.admin.socket };
  if (config.admin.tcp !== undefined) admin.tcp = formatAddress(config.admin.tcp);
  return {
    controllers: config.controllers.map((controller) => {
      const { replication } = controller;
      const replicationDocument: Record<string, unknown> = {};
      if (replication.listen !== undefined) replicationDocument.listen = formatAddress(replication.listen);
      Object.assign(replicationDocument, {
        heartbeatIntervalMs: replication.heartbeatIntervalMs,
        deadPeerTimeoutMs: replication.deadPeerTimeoutMs,
        handshakeTimeoutMs: replication.handshakeTimeoutMs,
        connectTimeoutMs: replication.connectTimeoutMs,
        reconnectInitialDelayMs: replication.reconnectInitialDelayMs,
        reconnectMaxDelayMs: replication.reconnectMaxDelayMs,
        reconnectJitter: replication.reconnectJitter,
        maxFrameBytes: formatSize(replication.maxFrameBytes),
        maxQueuedBytes: formatSize(replication.maxQueuedBytes),
        maxPendingConnections: replication.maxPendingConnections,
      });
      return {
        id: controller.id,
        volumes: controller.volumes.map((volume) => {
          const document: Record<string, unknown> = {
            name: volume.name,
            capacity: formatSize(volume.capacityBytes),
            blockSize: volume.blockSize,
            backing: volume.backing,
          };
          if (volume.path !== undefined) document.path = volume.path;
          if (volume.sharedName !== `${controller.id}.${volume.name}`) document.sharedName = volume.sharedName;
          document.strict = volume.strict;
          document.existing = volume.existing;
          document.bitmaps = volume.bitmaps.map((bitmap) => ({
            name: bitmap.name,
            granularity: formatSize(bitmap.granularityBytes),
            recording: bitmap.recording,
          }));
          return document;
        }),
        exports: controller.exports.map((entry) => ({ ...entry })),
        replication: replicationDocument,
        peers: controller.peers.map((peer) => {
          const document: Record<string, unknown> = { id: peer.id };
          if (peer.address !== undefined) document.address = formatAddress(peer.address);
          if (peer.secretFile !== undefined) document.secretFile = peer.secretFile;
          if (peer.secretEnv !== undefined) document.secretEnv = peer.secretEnv;
          return document;
        }),
        pairs: controller.pairs.map((pair) => ({ ...pair })),
        ...(controller.consistencyGroups.length === 0 ? {} : {
          consistencyGroups: controller.consistencyGroups.map((group) => ({ ...group, relationships: group.relationships.map((row) => ({ ...row })) })),
        }),
      };
    }),
    listen: config.listen.map((entry) => ({ ...entry })),
    admin,
    limits: { maxPayloadBytes: formatSize(config.limits.maxPayloadBytes), ...(config.limits.workers === 0 ? {} : { workers: config.limits.workers }), ...(config.limits.nativeLanes ? {} : { nativeLanes: false }) },
  };
}

/** Parses config text; YAML for .yaml/.yml (and unknown extensions), JSON for .json. */
export function parseConfigText(text: string, fileName: string): unknown {
  const extension = path.extname(fileName).toLowerCase();
  if (extension === '.json') {
    try {
      return JSON.parse(text);
    } catch (error) {
      throw new ConfigError([`(document): not valid JSON: ${(error as Error).message}`], fileName);
    }
  }
  const document = YAML.parseDocument(text, { uniqueKeys: true, prettyErrors: true });
  if (document.errors.length > 0) {
    throw new ConfigError(document.errors.map((e) => `(document): not valid YAML: ${e.message.split('\n')[0]}`), fileName);
  }
  try {
    return document.toJS({ maxAliasCount: 100 });
  } catch (error) {
    // An alias to no anchor, or too many aliases: the parser accepts them, turning them into values does not.
    throw new ConfigError([`(document): not valid YAML: ${(error as Error).message.split('\n')[0]}`], fileName);
  }
}

/** Reads, parses and validates a config file. Throws ConfigError (also for an unreadable file). */
export function loadConfigFile(fileName: string): BlockmirrorConfig {
  let text: string;
  try {
    text = fs.readFileSync(fileName, 'utf8');
  } catch (error) {
    throw new ConfigError([`(file): cannot read: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`], fileName);
  }
  return validateConfig(parseConfigText(text, fileName), fileName);
}

/** Command-line overrides of the listeners. */
export interface ListenOverrides {
  host?: string;
  port?: number;
  socket?: string;
}

/**
 * Applies --host/--port/--socket. When any is given, the listeners given on the command line
 * replace the config's: --host/--port make one TCP listener (the missing half taken from the
 * config's first TCP listener, else the default), --socket one Unix socket listener.
 */
export function applyListenOverrides(config: BlockmirrorConfig, overrides: ListenOverrides): BlockmirrorConfig {
  const { host, port, socket } = overrides;
  if (host === undefined && port === undefined && socket === undefined) return config;
  const firstTcp = config.listen.find((entry): entry is { host: string; port: number } => 'host' in entry);
  const listen: ListenConfig[] = [];
  if (host !== undefined || port !== undefined) {
    listen.push({ host: host ?? firstTcp?.host ?? DEFAULT_HOST, port: port ?? firstTcp?.port ?? DEFAULT_PORT });
  }
  if (socket !== undefined) listen.push({ path: socket });
  return { ...config, listen };
}

/**
 * Applies `serve --admin PATH`: the admin endpoint's Unix socket, or "none" for no socket. The
 * path is checked as the config checks admin.socket (ConfigError naming --admin).
 */
export function applyAdminOverride(config: BlockmirrorConfig, socket: string): BlockmirrorConfig {
  if (socket === 'none') return { ...config, admin: { ...config.admin, socket: null } };
  if (socket.length === 0 || Buffer.byteLength(socket) > 107) {
    throw new ConfigError([`--admin: must be 1 to 107 bytes long, got ${Buffer.byteLength(socket)}`]);
  }
  return { ...config, admin: { ...config.admin, socket } };
}
