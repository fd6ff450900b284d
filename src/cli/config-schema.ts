// Notes on the design
// -------------------
// The one description of the `blockmirror serve` config file, written with zod 4. Three things
// come from it and from nothing else:
//   - the checks and their messages: every field's type, range and pattern, the rules between
//     fields of one object (capacity is a multiple of blockSize, path only with backing "file",
//     deadPeerTimeoutMs above heartbeatIntervalMs, ...), and the normalization (defaults filled
//     in, sizes in bytes, "host:port" strings split, the single-controller form turned into the
//     controllers form);
//   - the TypeScript types of the normalized config (z.output of the schemas below);
//   - the table of keys in docs/config.md (scripts/gen-config-docs.ts walks the schema and reads
//     the `.meta({ description })` of every key).
//
// Two kinds of rule, two places:
//   - Rules inside one object are refinements of that object's schema. They run with
//     `when: usable(...)`: only when the fields they read parsed cleanly, so that a bad field is
//     reported once and the rules that do not depend on it are still checked.
//   - Rules across elements (duplicate names, an export naming a volume, a peer naming its own
//     controller, two shared volumes on one region, two listeners on one address, totals) are in
//     crossFieldIssues(). It reads the raw document and parses each element on its own with the
//     element's schema, so it reports its problems even when other parts of the file are broken:
//     the user sees every problem at once, not one per run.
//
// Messages are sentences that start after "<field path>: ": the schemas give their own for
// ranges and patterns; configErrorMap() phrases the generic ones (wrong type, missing field,
// not one of the choices) the same way everywhere. Unknown fields are refused by strict objects
// whose message names the allowed fields. Nothing here touches the storage or the network.

import * as os from 'node:os';
import * as path from 'node:path';

import { z } from 'zod';
import { DEFAULT_MAX_FRAME_BYTES, LINK_DEFAULTS, MAX_MAX_FRAME_BYTES, MIN_MAX_FRAME_BYTES } from '../transport/limits';
import { CGROUP_DEFAULTS, CGROUP_LIMIT_RANGES, GROUP_NAME_PATTERN, MAX_RELATIONSHIPS, cgroupSpecProblems } from '../cgroup/types';

export const DEFAULT_HOST = '127.0.0.1';
export const DEFAULT_PORT = 10809;
export const DEFAULT_BLOCK_SIZE = 4096;
export const DEFAULT_GRANULARITY_BYTES = 64 * 1024;
export const DEFAULT_MAX_PAYLOAD_BYTES = 32 * 1024 * 1024;
export const MIN_BLOCK_SIZE = 512;
export const MAX_BLOCK_SIZE = 65536;
export const MIN_GRANULARITY_BYTES = 4096;
export const MAX_GRANULARITY_BYTES = 2 ** 30;
/** The NBD spec bounds export names (and descriptions) to 4096 bytes. */
export const MAX_NBD_STRING_BYTES = 4096;
/** Bitmap slots per volume in the native superblock. */
export const MAX_BITMAPS_PER_VOLUME = 16;
/** The largest volume; the same limit as Volume.MAX_CAPACITY_BYTES (a unit test checks it). */
export const MAX_VOLUME_CAPACITY_BYTES = 2 ** 45;
/** Limits on the config itself, so a runaway file cannot make serve allocate without bound. */
export const MAX_VOLUMES = 256;
export const MAX_EXPORTS = 1024;
export const MAX_LISTENERS = 16;
export const MAX_CONTROLLERS = 64;
export const MAX_PEERS_PER_CONTROLLER = 64;
/** The smallest maxPayloadBytes a client can live with (one largest block). */
export const MIN_MAX_PAYLOAD_BYTES = 64 * 1024;
export const MAX_MAX_PAYLOAD_BYTES = 1024 * 1024 * 1024;
/** sockaddr_un.sun_path is 108 bytes including the terminating NUL. */
export const MAX_SOCKET_PATH_BYTES = 107;
/** The id of the one controller of a file in the single-controller (legacy) form. */
export const LEGACY_CONTROLLER_ID = 'local';
/** Hosts the admin TCP endpoint may listen on: it must never be reachable from the network. */
export const ADMIN_LOOPBACK_HOSTS = Object.freeze(['127.0.0.1', '::1', 'localhost'] as const);

/** Replication link defaults and bounds (controllers[].replication). */
export const DEFAULT_HEARTBEAT_INTERVAL_MS = LINK_DEFAULTS.heartbeatIntervalMs;
export const MIN_HEARTBEAT_INTERVAL_MS = 10;
export const MAX_HEARTBEAT_INTERVAL_MS = 60_000;
export const DEFAULT_DEAD_PEER_TIMEOUT_MS = LINK_DEFAULTS.deadPeerTimeoutMs;
export const MAX_DEAD_PEER_TIMEOUT_MS = 600_000;
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = LINK_DEFAULTS.handshakeTimeoutMs;
export const MIN_HANDSHAKE_TIMEOUT_MS = 10;
export const MAX_HANDSHAKE_TIMEOUT_MS = 600_000;
export const DEFAULT_CONNECT_TIMEOUT_MS = LINK_DEFAULTS.connectTimeoutMs;
export const MIN_CONNECT_TIMEOUT_MS = 10;
export const MAX_CONNECT_TIMEOUT_MS = 600_000;
export const DEFAULT_RECONNECT_INITIAL_DELAY_MS = LINK_DEFAULTS.reconnectInitialDelayMs;
export const DEFAULT_RECONNECT_MAX_DELAY_MS = LINK_DEFAULTS.reconnectMaxDelayMs;
export const MAX_RECONNECT_DELAY_MS = 600_000;
export const DEFAULT_RECONNECT_JITTER = LINK_DEFAULTS.reconnectJitter;
/** One largest NBD payload (32 MiB) plus room for the frame and message headers. */
export { DEFAULT_MAX_FRAME_BYTES, MAX_MAX_FRAME_BYTES, MIN_MAX_FRAME_BYTES };
export const DEFAULT_MAX_QUEUED_BYTES = LINK_DEFAULTS.maxQueuedBytes;
export const MAX_MAX_QUEUED_BYTES = 4 * 1024 * 1024 * 1024;
export const DEFAULT_MAX_PENDING_CONNECTIONS = LINK_DEFAULTS.maxPendingConnections;
export const MAX_MAX_PENDING_CONNECTIONS = 1024;

/** Names double as shared-memory object names, so they follow that alphabet. */
// 184: a shared volume's region is named "blockmirror.vol.<sharedName>", and region names stop at 200.
const SHARED_NAME_PATTERN = /^[A-Za-z0-9._-]{1,184}$/;
const SHARED_NAME_TEXT = '[A-Za-z0-9._-]{1,184}';
const BITMAP_NAME_PATTERN = /^[A-Za-z0-9._:-]{1,47}$/;
const BITMAP_NAME_TEXT = '[A-Za-z0-9._:-]{1,47}';
const CONTROLLER_ID_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;
const CONTROLLER_ID_TEXT = '[A-Za-z0-9._-]{1,64}';
const ENV_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]{0,254}$/;
const ENV_NAME_TEXT = '[A-Za-z_][A-Za-z0-9_]*';

/**
 * Where the admin endpoint's Unix socket goes when the config does not say:
 * $BLOCKMIRROR_ADMIN_SOCKET if set, else `${XDG_RUNTIME_DIR ?? tmpdir}/blockmirror-<uid>/admin.sock`.
 */
export function defaultAdminSocketPath(): string {
  const fromEnvironment = process.env.BLOCKMIRROR_ADMIN_SOCKET;
  if (fromEnvironment !== undefined && fromEnvironment !== '') return fromEnvironment;
  const uid = process.getuid?.() ?? 0;
  return `${process.env.XDG_RUNTIME_DIR ?? os.tmpdir()}/blockmirror-${uid}/admin.sock`;
}

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  tib: 1024 ** 4,
};

/**
 * Parses a size: a non-negative safe integer, or a string such as "64KiB", "1 GiB", "4096".
 * Throws RangeError/TypeError with a message that says what was wrong (no field path; callers
 * add it).
 */
export function parseSize(value: unknown): number {
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new RangeError(`must be a non-negative integer number of bytes, got ${value}`);
    }
    return value;
  }
  if (typeof value !== 'string') {
    throw new TypeError(`must be a number of bytes or a string like "64KiB", got ${describe(value)}`);
  }
  const match = /^\s*(\d+)\s*([A-Za-z]*)\s*$/.exec(value);
  if (match === null) {
    throw new RangeError(`must be an integer with an optional unit B/KiB/MiB/GiB/TiB, got "${value}"`);
  }
  const digits = match[1] as string;
  const unit = (match[2] as string).toLowerCase();
  const multiplier = SIZE_UNITS[unit];
  if (multiplier === undefined) {
    const hint = /^[kmgt]b?$/.test(unit) ? ' (use binary units KiB/MiB/GiB/TiB)' : '';
    throw new RangeError(`unknown size unit "${match[2]}" in "${value}"${hint}`);
  }
  const bytes = Number(digits) * multiplier;
  if (!Number.isSafeInteger(bytes)) {
    throw new RangeError(`is too large: "${value}"`);
  }
  return bytes;
}

/** Formats bytes with a binary unit, exact when possible ("1GiB", "1536KiB", "1000"). */
export function formatSize(bytes: number): string {
  for (const [unit, multiplier] of [
    ['TiB', 1024 ** 4],
    ['GiB', 1024 ** 3],
    ['MiB', 1024 ** 2],
    ['KiB', 1024],
  ] as const) {
    if (bytes >= multiplier && bytes % multiplier === 0) return `${bytes / multiplier}${unit}`;
  }
  return String(bytes);
}

/** How a value is named in a message: `"text"`, `number 5`, `an object`, `null`. */
function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'object') return 'an object';
  return `${typeof value} ${String(value)}`;
}

/** Formats a normalized address back to the file's "host:port" ("[::1]:port" for IPv6). */
export function formatAddress(address: { host: string; port: number }): string {
  return address.host.includes(':') ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}

function isPowerOfTwo(value: number): boolean {
  return Number.isSafeInteger(value) && value > 0 && (value & (value - 1)) === 0 && value <= 2 ** 30;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/**
 * The message of the generic issues, for `safeParse(raw, { error: configErrorMap })`. Schemas
 * that need a precise message (ranges, patterns) carry their own, which wins.
 */
export function configErrorMap(issue: z.core.$ZodRawIssue): string | undefined {
  if (issue.code === 'invalid_type') {
    if (issue.input === undefined) return 'is required';
    const got = describe(issue.input);
    switch (issue.expected) {
      case 'boolean': return `must be true or false, got ${got}`;
      case 'object': return `must be an object, got ${got}`;
      case 'array': return `must be an array, got ${got}`;
      case 'string': return `must be a string, got ${got}`;
      case 'number': return `must be a number, got ${got}`;
      default: return `must be ${String(issue.expected)}, got ${got}`;
    }
  }
  if (issue.code === 'invalid_value') {
    const choices = issue.values.map((choice) => JSON.stringify(choice)).join(', ');
    return `must be one of ${choices}, got ${describe(issue.input)}`;
  }
  return undefined;
}

/** Documentation of one key, read by the docs generator. */
export interface ConfigKeyMeta {
  description?: string;
  /** The type as the docs show it, when the schema's own is not what the user writes. */
  docType?: string;
  /** The default as the docs show it, when it is not a constant of the schema. */
  docDefault?: string;
  /** false: list the key but not its sub-keys (they are documented elsewhere). @default true */
  docExpand?: boolean;
}

function doc<T extends z.ZodType>(schema: T, meta: ConfigKeyMeta): T {
  return schema.meta(meta as z.core.GlobalMeta);
}

/** A strict object: an unknown field is an issue that names the allowed ones. */
function strictObject<T extends z.core.$ZodLooseShape>(shape: T) {
  const allowed = Object.keys(shape).join(', ');
  return z.strictObject(shape, {
    error: (issue) => (issue.code === 'unrecognized_keys' ? `unknown field (allowed: ${allowed})` : undefined),
  });
}

/**
 * For `superRefine(..., { when: usable('a', 'b') })`: run the rule when the object itself and
 * the fields it reads parsed cleanly, whatever the state of the other fields. zod skips even such
 * rules after an issue that aborts outright (z.int(), an array's .min/.max), so no field here
 * uses those; the test "reports every problem of a controllers-form file" holds this.
 */
function usable(...keys: string[]) {
  return (payload: z.core.ParsePayload): boolean => isRecord(payload.value) && payload.issues.every((issue) => {
    const head = issue.path?.[0];
    return head === undefined ? issue.code === 'unrecognized_keys' : !keys.includes(String(head));
  });
}

/** An integer in [min, max] (refinements, not z.int(), so other rules still run on failure). */
function integer(min: number, max: number, hint = '') {
  const error = (issue: { input?: unknown }): string =>
    (issue.input === undefined ? 'is required' : `must be an integer from ${min} to ${max}${hint}, got ${describe(issue.input)}`);
  return doc(z.number({ error }).refine((value) => Number.isInteger(value) && value >= min && value <= max, { error }),
    { docType: 'integer' });
}

function port(min: 0 | 1) {
  return integer(min, 65535, min === 0 ? ' (0: any free port)' : '');
}

/** A size in bytes: an integer or "<n>[B|KiB|MiB|GiB|TiB]"; `check` returns a problem or undefined. */
function size(check?: (bytes: number) => string | undefined) {
  const error = (issue: { input?: unknown }): string =>
    (issue.input === undefined ? 'is required' : `must be a number of bytes or a string like "64KiB", got ${describe(issue.input)}`);
  return doc(z.union([z.number(), z.string()], { error }).transform((value, context): number => {
    let bytes: number;
    try {
      bytes = parseSize(value);
    } catch (parseError) {
      context.addIssue({ code: 'custom', message: (parseError as Error).message });
      return z.NEVER;
    }
    const problem = check?.(bytes);
    if (problem !== undefined) {
      context.addIssue({ code: 'custom', message: problem });
      return z.NEVER;
    }
    return bytes;
  }), { docType: 'size' });
}

function sizeRange(min: number, max: number) {
  return size((bytes) => (bytes < min || bytes > max
    ? `must be from ${formatSize(min)} to ${formatSize(max)}, got ${bytes}` : undefined));
}

function powerOfTwoSize(min: number, max: number, writeBound: (bytes: number) => string = formatSize) {
  return size((bytes) => (!isPowerOfTwo(bytes) || bytes < min || bytes > max
    ? `must be a power of two from ${writeBound(min)} to ${writeBound(max)}, got ${bytes}` : undefined));
}

function patterned(pattern: RegExp, text: string) {
  return z.string().regex(pattern, { error: (issue) => `must match ${text}, got ${JSON.stringify(issue.input)}` });
}

function nonEmptyString() {
  return z.string().min(1, { error: 'must not be empty' });
}

function socketPath() {
  return z.string().refine((value) => value.length > 0 && Buffer.byteLength(value) <= MAX_SOCKET_PATH_BYTES, {
    error: (issue) => `must be 1 to ${MAX_SOCKET_PATH_BYTES} bytes long, got ${Buffer.byteLength(String(issue.input))}`,
  });
}

/** An array whose length is checked before its elements (a runaway list is not walked). */
function list<T extends z.ZodType>(element: T, bounds: { max: number; min?: number; minProblem?: string }) {
  return z.array(z.unknown()).superRefine((items, context) => {
    if (bounds.min !== undefined && items.length < bounds.min) {
      context.addIssue({ code: 'custom', message: bounds.minProblem ?? `must have at least ${bounds.min} entries` });
    }
    if (items.length > bounds.max) {
      context.addIssue({ code: 'custom', message: `must have at most ${bounds.max} entries, got ${items.length}` });
    }
  }).pipe(z.array(element));
}

/** "host:port" or "[ipv6]:port" as written in the file, to { host, port }. */
function address(minPort: 0 | 1) {
  return doc(z.string().transform((text, context): { host: string; port: number } => {
    const match = /^\[([0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*)\]:(\d{1,5})$/.exec(text) ?? /^([^\s:[\]/]+):(\d{1,5})$/.exec(text);
    if (match === null) {
      context.addIssue({ code: 'custom', message: `must be "host:port" (an IPv6 host in brackets: "[::1]:10810"), got ${JSON.stringify(text)}` });
      return z.NEVER;
    }
    const portNumber = Number(match[2]);
    if (portNumber < minPort || portNumber > 65535) {
      context.addIssue({ code: 'custom', message: `port must be from ${minPort} to 65535${minPort === 0 ? ' (0: any free port)' : ''}, got ${JSON.stringify(text)}` });
      return z.NEVER;
    }
    return { host: match[1] as string, port: portNumber };
  }), { docType: '`"host:port"`' });
}

// ---------------------------------------------------------------------------------------------
// Field schemas. Exported so that crossFieldIssues() (and tests) can parse one field on its own.

export const volumeNameSchema = patterned(SHARED_NAME_PATTERN, SHARED_NAME_TEXT);
export const sharedNameSchema = patterned(SHARED_NAME_PATTERN, SHARED_NAME_TEXT);
export const controllerIdSchema = patterned(CONTROLLER_ID_PATTERN, CONTROLLER_ID_TEXT);
export const bitmapNameSchema = patterned(BITMAP_NAME_PATTERN, BITMAP_NAME_TEXT);

export const exportNameSchema = z.string().superRefine((name, context) => {
  if (name.length === 0) {
    // The empty name is what clients ask for when they name no export (the server maps it to
    // the first export); it cannot also be a configured name.
    context.addIssue({ code: 'custom', message: 'must not be empty' });
  } else if (Buffer.byteLength(name) > MAX_NBD_STRING_BYTES) {
    context.addIssue({ code: 'custom', message: `must be at most ${MAX_NBD_STRING_BYTES} bytes (NBD limit)` });
  }
});

export const bitmapSchema = strictObject({
  name: doc(bitmapNameSchema, { description: `Bitmap name, \`${BITMAP_NAME_TEXT}\`, unique within the volume.` }),
  granularity: doc(powerOfTwoSize(MIN_GRANULARITY_BYTES, MAX_GRANULARITY_BYTES).default(DEFAULT_GRANULARITY_BYTES), {
    description: 'Bytes per bit (the track size): a power of two from 4 KiB to 1 GiB.',
  }),
  recording: doc(z.boolean().default(true), { description: 'Whether writes mark the bitmap.' }),
}).transform((bitmap) => ({ name: bitmap.name, granularityBytes: bitmap.granularity, recording: bitmap.recording }));

export const volumeSchema = strictObject({
  name: doc(volumeNameSchema, {
    description: `Volume name, \`${SHARED_NAME_TEXT}\`, unique within the controller. Exports refer to it.`,
  }),
  capacity: doc(size((bytes) => {
    if (bytes === 0) return 'must be greater than 0';
    if (bytes > MAX_VOLUME_CAPACITY_BYTES) return `must be at most ${formatSize(MAX_VOLUME_CAPACITY_BYTES)}, got ${bytes}`;
    return undefined;
  }), { description: 'More than 0, a multiple of `blockSize`, at most 32 TiB. Memory volumes are thin: untouched blocks cost no memory.' }),
  blockSize: doc(powerOfTwoSize(MIN_BLOCK_SIZE, MAX_BLOCK_SIZE, String).default(DEFAULT_BLOCK_SIZE), {
    description: 'A power of two from 512 to 65536.',
    docDefault: `\`${DEFAULT_BLOCK_SIZE}\``,
  }),
  backing: doc(z.enum(['memory', 'shared', 'file']).default('memory'), {
    description: '`memory`: private to `serve`. `shared`: the shared-memory object `blockmirror.vol.<sharedName>`, ' +
      'which outlives `serve`. `file`: the file at `path`.',
  }),
  path: doc(nonEmptyString().optional(), {
    description: 'The file of a `file` volume: required with `backing: "file"`, refused otherwise. Two volumes may not use the same file.',
  }),
  sharedName: doc(sharedNameSchema.optional(), {
    description: `The shared-memory name of the volume, \`${SHARED_NAME_TEXT}\`, unique among the shared volumes of the file.`,
    docDefault: '`<controller id>.<name>`; `<name>` in the single-controller form',
  }),
  strict: doc(z.boolean().default(false), { description: 'Refuse requests that are not aligned to `blockSize`.' }),
  existing: doc(z.enum(['open', 'error']).default('open'), {
    description: 'What `serve` does when a `shared` or `file` volume exists already: reopen it, or fail.',
  }),
  bitmaps: doc(list(bitmapSchema, { max: MAX_BITMAPS_PER_VOLUME }).default(() => []), {
    description: `Dirty-block bitmaps of the volume, at most ${MAX_BITMAPS_PER_VOLUME}. \`serve\` creates the missing ones.`,
  }),
  group: doc(volumeNameSchema.optional(), {
    description: 'The RAID group (`groups[].name` of the same controller) the volume is laid on, in an extent of its unused space (docs/raid.md).',
    docDefault: 'none: the volume\'s own region',
  }),
})
  .superRefine((volume, context) => {
    if (volume.capacity % volume.blockSize !== 0) {
      context.addIssue({ code: 'custom', path: ['capacity'], message: `must be a multiple of blockSize ${volume.blockSize}, got ${volume.capacity}` });
    }
  }, { when: usable('capacity', 'blockSize') })
  .superRefine((volume, context) => {
    if (volume.path !== undefined && volume.backing !== 'file') {
      context.addIssue({ code: 'custom', path: ['path'], message: `is only allowed with backing "file", got backing "${volume.backing}"` });
    } else if (volume.path === undefined && volume.backing === 'file') {
      context.addIssue({ code: 'custom', path: ['path'], message: 'is required with backing "file"' });
    }
  }, { when: usable('backing', 'path') })
  .transform((volume) => ({
    name: volume.name,
    capacityBytes: volume.capacity,
    blockSize: volume.blockSize,
    backing: volume.backing,
    ...(volume.path === undefined ? {} : { path: volume.path }),
    strict: volume.strict,
    existing: volume.existing,
    bitmaps: volume.bitmaps,
    ...(volume.group === undefined ? {} : { group: volume.group }),
    // Filled in by the controller, which knows its id (the default is `${id}.${name}`).
    ...(volume.sharedName === undefined ? {} : { sharedName: volume.sharedName }),
  }));

export const exportSchema = strictObject({
  name: doc(exportNameSchema, {
    description: 'The NBD export name, at most 4096 bytes, not empty, unique across all controllers (one NBD server serves them all).',
  }),
  volume: doc(z.string().optional(), {
    description: 'The exported volume: a volume of the same controller.',
    docDefault: 'the export\'s `name`',
  }),
  readOnly: doc(z.boolean().default(false), { description: 'A `READ_ONLY` export: writes get `EPERM`.' }),
  description: doc(z.string().default('').refine((text) => Buffer.byteLength(text) <= MAX_NBD_STRING_BYTES, {
    error: `must be at most ${MAX_NBD_STRING_BYTES} bytes (NBD limit)`,
  }), { description: 'At most 4096 bytes; shown by `nbdinfo` and `NBD_OPT_LIST`.' }),
}).transform((entry) => ({
  name: entry.name,
  volume: entry.volume ?? entry.name,
  readOnly: entry.readOnly,
  description: entry.description,
}));

/**
 * One NBD listener as the normalized config holds it. Written out rather than inferred: the
 * inferred union would give each member the other's keys as optional `undefined`, and `'path' in
 * entry` would no longer tell them apart.
 */
export type ListenConfig = { host: string; port: number } | { path: string };

export const listenEntrySchema = strictObject({
  host: doc(nonEmptyString().optional(), { description: 'TCP host to listen on.', docDefault: `\`"${DEFAULT_HOST}"\`` }),
  port: doc(port(0).optional(), { description: 'TCP port, 0 to 65535; 0 means any free port.', docDefault: `\`${DEFAULT_PORT}\`` }),
  path: doc(socketPath().optional(), { description: 'A Unix socket path (1 to 107 bytes) instead of `host`/`port`.' }),
})
  .superRefine((entry, context) => {
    if (entry.path === undefined) return;
    for (const key of ['host', 'port'] as const) {
      if (entry[key] !== undefined) context.addIssue({ code: 'custom', path: [key], message: 'unknown field (allowed: path)' });
    }
  }, { when: usable() })
  .transform((entry): ListenConfig => (entry.path !== undefined
    ? { path: entry.path }
    : { host: entry.host ?? DEFAULT_HOST, port: entry.port ?? DEFAULT_PORT }));

export const replicationListenSchema = address(0);

export const replicationSchema = strictObject({
  listen: doc(replicationListenSchema.optional(), {
    description: 'Where this controller accepts links from its peers, `"host:port"` (port 0: any free port). Absent: it accepts none and only dials out.',
  }),
  heartbeatIntervalMs: doc(integer(MIN_HEARTBEAT_INTERVAL_MS, MAX_HEARTBEAT_INTERVAL_MS).default(DEFAULT_HEARTBEAT_INTERVAL_MS), {
    description: 'Milliseconds between heartbeats on an idle link, 10 to 60000.',
  }),
  deadPeerTimeoutMs: doc(integer(1, MAX_DEAD_PEER_TIMEOUT_MS).default(DEFAULT_DEAD_PEER_TIMEOUT_MS), {
    description: 'Milliseconds of silence after which a peer is taken for dead and its link is dropped: more than `heartbeatIntervalMs`, at most 600000.',
  }),
  handshakeTimeoutMs: doc(integer(MIN_HANDSHAKE_TIMEOUT_MS, MAX_HANDSHAKE_TIMEOUT_MS).default(DEFAULT_HANDSHAKE_TIMEOUT_MS), {
    description: 'Milliseconds a new link may take to finish its handshake, 10 to 600000.',
  }),
  connectTimeoutMs: doc(integer(MIN_CONNECT_TIMEOUT_MS, MAX_CONNECT_TIMEOUT_MS).default(DEFAULT_CONNECT_TIMEOUT_MS), {
    description: 'Milliseconds a TCP connect to a peer may take, 10 to 600000.',
  }),
  reconnectInitialDelayMs: doc(integer(1, MAX_RECONNECT_DELAY_MS).default(DEFAULT_RECONNECT_INITIAL_DELAY_MS), {
    description: 'Milliseconds before the first reconnect attempt after a link is lost, 1 to 600000; the delay doubles on every failure.',
  }),
  reconnectMaxDelayMs: doc(integer(1, MAX_RECONNECT_DELAY_MS).default(DEFAULT_RECONNECT_MAX_DELAY_MS), {
    description: 'The longest delay between reconnect attempts: at least `reconnectInitialDelayMs`, at most 600000.',
  }),
  reconnectJitter: doc(z.number({ error: (issue) => (issue.input === undefined ? 'is required' : `must be a number from 0 to 1, got ${describe(issue.input)}`) })
    .refine((value) => value >= 0 && value <= 1, { error: (issue) => `must be a number from 0 to 1, got ${describe(issue.input)}` })
    .default(DEFAULT_RECONNECT_JITTER), {
    description: 'The fraction of each reconnect delay that is random, 0 to 1, so that peers do not retry in step.',
    docType: 'number',
  }),
  maxFrameBytes: doc(sizeRange(MIN_MAX_FRAME_BYTES, MAX_MAX_FRAME_BYTES).default(DEFAULT_MAX_FRAME_BYTES), {
    description: 'The largest link frame, header included, 64 KiB to 1 GiB. The default is one largest NBD write and its headers.',
    docDefault: `\`${DEFAULT_MAX_FRAME_BYTES}\` (32 MiB + 64 KiB)`,
  }),
  maxQueuedBytes: doc(sizeRange(MIN_MAX_FRAME_BYTES, MAX_MAX_QUEUED_BYTES).default(DEFAULT_MAX_QUEUED_BYTES), {
    description: 'Bytes a link may hold queued for sending before senders are told to wait: at least `maxFrameBytes`, at most 4 GiB.',
  }),
  maxPendingConnections: doc(integer(1, MAX_MAX_PENDING_CONNECTIONS).default(DEFAULT_MAX_PENDING_CONNECTIONS), {
    description: 'Handshakes in progress at once on the replication listener, 1 to 1024; more connections are closed at once.',
  }),
})
  .superRefine((replication, context) => {
    if (replication.deadPeerTimeoutMs <= replication.heartbeatIntervalMs) {
      context.addIssue({ code: 'custom', path: ['deadPeerTimeoutMs'],
        message: `must be more than heartbeatIntervalMs ${replication.heartbeatIntervalMs}, got ${replication.deadPeerTimeoutMs}` });
    }
  }, { when: usable('deadPeerTimeoutMs', 'heartbeatIntervalMs') })
  .superRefine((replication, context) => {
    if (replication.reconnectMaxDelayMs < replication.reconnectInitialDelayMs) {
      context.addIssue({ code: 'custom', path: ['reconnectMaxDelayMs'],
        message: `must be at least reconnectInitialDelayMs ${replication.reconnectInitialDelayMs}, got ${replication.reconnectMaxDelayMs}` });
    }
  }, { when: usable('reconnectMaxDelayMs', 'reconnectInitialDelayMs') })
  .superRefine((replication, context) => {
    if (replication.maxQueuedBytes < replication.maxFrameBytes) {
      context.addIssue({ code: 'custom', path: ['maxQueuedBytes'],
        message: `must be at least maxFrameBytes ${replication.maxFrameBytes}, got ${replication.maxQueuedBytes}` });
    }
  }, { when: usable('maxQueuedBytes', 'maxFrameBytes') });

export const peerSchema = strictObject({
  id: doc(controllerIdSchema, { description: 'The peer controller\'s id: not this controller\'s own, unique among its peers.' }),
  address: doc(address(1).optional(), {
    description: 'Where to dial the peer, `"host:port"` or `"[::1]:port"`. Absent: this controller only accepts the peer\'s links.',
  }),
  secretFile: doc(nonEmptyString().optional(), {
    description: 'A file whose content is the secret shared with this peer (relative paths are taken from the working directory of `serve`).',
  }),
  secretEnv: doc(patterned(ENV_NAME_PATTERN, ENV_NAME_TEXT).optional(), {
    description: 'The name of an environment variable holding the shared secret. At most one of `secretFile` and `secretEnv`.',
  }),
}).superRefine((peer, context) => {
  if (peer.secretFile !== undefined && peer.secretEnv !== undefined) {
    context.addIssue({ code: 'custom', path: ['secretEnv'], message: 'cannot be combined with secretFile: give one of them' });
  }
}, { when: usable() });

export const adminSchema = strictObject({
  socket: doc(socketPath().nullable().optional(), {
    description: 'The Unix socket of the admin endpoint (HTTP), 1 to 107 bytes; `null`: no Unix socket.',
    docDefault: '`$BLOCKMIRROR_ADMIN_SOCKET`, else `$XDG_RUNTIME_DIR/blockmirror-<uid>/admin.sock` (the temporary directory without `XDG_RUNTIME_DIR`)',
  }),
  tcp: doc(address(0).refine((where) => (ADMIN_LOOPBACK_HOSTS as readonly string[]).includes(where.host), {
    error: (issue) => 'host must be a loopback address (127.0.0.1, ::1 or localhost): the admin endpoint must not be ' +
      `reachable from the network, got ${JSON.stringify(formatAddress(issue.input as { host: string; port: number }))}`,
  }).optional(), {
    description: 'Also serve the admin endpoint on TCP, `"host:port"`, where the host must be 127.0.0.1, ::1 or localhost.',
  }),
}).transform((admin, context) => {
  let socket: string | null;
  if (admin.socket === undefined) {
    socket = defaultAdminSocketPath();
    const byteLength = Buffer.byteLength(socket);
    if (byteLength === 0 || byteLength > MAX_SOCKET_PATH_BYTES) {
      context.addIssue({ code: 'custom', path: ['socket'], message: `the default path ${JSON.stringify(socket)} is ` +
        `${byteLength} bytes, more than ${MAX_SOCKET_PATH_BYTES}: set admin.socket (or BLOCKMIRROR_ADMIN_SOCKET)` });
      return z.NEVER;
    }
  } else {
    socket = admin.socket;
  }
  return { socket, ...(admin.tcp === undefined ? {} : { tcp: admin.tcp }) };
});

export const limitsSchema = strictObject({
  maxPayloadBytes: doc(sizeRange(MIN_MAX_PAYLOAD_BYTES, MAX_MAX_PAYLOAD_BYTES).default(DEFAULT_MAX_PAYLOAD_BYTES), {
    description: 'The largest NBD read or write, 64 KiB to 1 GiB.',
  }),
});

type VolumeEntry = z.output<typeof volumeSchema>;
type ExportEntry = z.output<typeof exportSchema>;

/** The shared name a volume gets when the file gives none. */
function defaultSharedName(form: 'controllers' | 'legacy', controllerId: string, volumeName: string): string {
  return form === 'legacy' ? volumeName : `${controllerId}.${volumeName}`;
}

/** Without an exports list every volume is exported under its own name. */
function implicitExports(volumeNames: readonly string[]): ExportEntry[] {
  return volumeNames.map((name) => ({ name, volume: name, readOnly: false, description: '' }));
}

function completeController(
  form: 'controllers' | 'legacy',
  controller: {
    id: string;
    volumes: VolumeEntry[];
    exports?: ExportEntry[] | undefined;
    replication: z.output<typeof replicationSchema>;
    peers: z.output<typeof peerSchema>[];
    pairs: z.output<typeof pairSchema>[];
    consistencyGroups: z.output<typeof consistencyGroupSchema>[];
  },
) {
  return {
    id: controller.id,
    volumes: controller.volumes.map((volume) => ({
      ...volume,
      sharedName: volume.sharedName ?? defaultSharedName(form, controller.id, volume.name),
    })),
    exports: controller.exports ?? implicitExports(controller.volumes.map((volume) => volume.name)),
    replication: controller.replication,
    peers: controller.peers,
    pairs: controller.pairs,
    consistencyGroups: controller.consistencyGroups,
  };
}

const PAIR_NAME_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;

export const pairSchema = strictObject({
  name: doc(patterned(PAIR_NAME_PATTERN, '[A-Za-z0-9._-]{1,64}'), {
    description: 'The pair\'s name: the same on both controllers (as a DRBD resource name), unique per controller.',
  }),
  volume: doc(nonEmptyString(), { description: 'This controller\'s volume: the primary volume (role primary) or the secondary one.' }),
  peer: doc(controllerIdSchema, { description: 'The other controller of the pair: one of `peers[].id`.' }),
  remoteVolume: doc(nonEmptyString(), { description: 'The volume of the pair on the peer.' }),
  mode: doc(z.enum(['sync', 'async']).default('async'), {
    description: '`sync`: a host write completes once the secondary applied it; `async`: once stored here.',
  }),
  role: doc(z.enum(['primary', 'secondary']), { description: 'This controller\'s role in the pair. Both controllers declare the pair.' }),
  fence: doc(z.enum(['never', 'data']).default('never'), {
    description: 'Sync only. `never`: suspend when the secondary is unreachable and keep serving; `data`: fail host writes (EIO) while it is.',
  }),
  autoResume: doc(z.boolean().default(true), {
    description: 'Resume and resync by itself when the cause of a suspension (link down, journal full) clears.',
  }),
  journalGroup: doc(patterned(PAIR_NAME_PATTERN, '[A-Za-z0-9._-]{1,64}').optional(), {
    description: 'The journal group (docs/pairs.md): pairs with the same group share one journal and are applied on the secondary in one write order '
      + 'across their volumes. One peer, mode and role per group; a grouped volume is in no other pair; both controllers name the same group.',
    docDefault: 'none: the pair has a journal of its own',
  }),
});

const relationshipSchema = strictObject({
  id: doc(patterned(PAIR_NAME_PATTERN, '[A-Za-z0-9._-]{1,64}'), { description: 'The relationship id, unique in the group.' }),
  role: doc(z.enum(['master', 'slave']), { description: '`master` on every row of the master controller (which is also a slave for its own volumes), `slave` on the others.' }),
  controller: doc(controllerIdSchema, { description: 'The primary controller of the volume.' }),
  volume: doc(nonEmptyString(), { description: 'The primary volume on that controller; a pair\'s primary there.' }),
  pair: doc(patterned(PAIR_NAME_PATTERN, '[A-Za-z0-9._-]{1,64}').optional(), {
    description: 'The volume\'s pair whose secondary holds the consistent copies.', docDefault: 'the volume\'s only pair',
  }),
});

const cgroupLimit = (key: keyof typeof CGROUP_DEFAULTS, description: string) => {
  const [min, max] = CGROUP_LIMIT_RANGES[key];
  return doc(z.number().int().min(min).max(max).default(CGROUP_DEFAULTS[key]), { description: `${description} ${min} to ${max}.` });
};

export const consistencyGroupSchema = strictObject({
  name: doc(patterned(GROUP_NAME_PATTERN, '[A-Za-z0-9_-][A-Za-z0-9._-]{0,23}'), {
    description: 'The group\'s name, the same on every controller of the group; its copies are the snapshots `cg.<name>.<cycle>` of the secondaries.',
  }),
  relationships: doc(list(relationshipSchema, { min: 1, minProblem: 'must have at least one row', max: MAX_RELATIONSHIPS }), {
    description: `The relationship table (seed 003), 1 to ${MAX_RELATIONSHIPS} rows: one per primary volume of the group, the same on every controller that has rows in it.`,
  }),
  maxCoordinationMs: cgroupLimit('maxCoordinationMs', 'How long host write completions may be held while the cut is taken (IBM: maximum coordination time), in ms,'),
  maxDrainMs: cgroupLimit('maxDrainMs', 'How long the secondaries may take to reach the cut and take their copies, in ms,'),
  cycleIntervalMs: cgroupLimit('cycleIntervalMs', 'The pause between two cycles (0: back to back), in ms,'),
  drainOverrideAfter: cgroupLimit('drainOverrideAfter', 'Consecutive drain timeouts after which one cycle gets `overrideDrainMs` (0: never),'),
  overrideDrainMs: cgroupLimit('overrideDrainMs', 'The drain limit of that one cycle, in ms,'),
  autoStart: doc(z.boolean().default(true), { description: 'The master starts cycling at once; false: after `group start`.' }),
}).superRefine((group, context) => {
  for (const problem of cgroupSpecProblems(group)) context.addIssue({ code: 'custom', message: problem });
});

/** An emulated disk (docs/raid.md). */
export const diskSchema = strictObject({
  name: doc(volumeNameSchema, { description: `Disk name, \`${SHARED_NAME_TEXT}\`, unique within the controller.` }),
  capacity: doc(size((bytes) => (bytes === 0 || bytes > 2 ** 50 ? `must be from 1 byte to 1 PiB, got ${bytes}` : undefined)), {
    description: 'The disk\'s size: more than 0, a multiple of `sectorSize`. Thin: untouched sectors cost no memory.',
  }),
  sectorSize: doc(powerOfTwoSize(512, 65536, String).default(512), { description: 'A power of two from 512 to 65536.' }),
  errorThreshold: doc(z.number().int().min(0).max(2 ** 32).default(0), {
    description: 'Failed I/Os after which a `normal` disk turns `suspect`; 0: never.',
  }),
  seed: doc(z.number().int().min(0).max(2 ** 32).default(1), { description: 'Seed of the disk\'s fault rate generator.' }),
  spare: doc(z.boolean().default(false), { description: 'A hot spare: in no group, taken to rebuild a failed member.' }),
  backing: doc(z.enum(['memory', 'shared']).default('memory'), {
    description: '`memory`: private to `serve`. `shared`: the shared-memory object `blockmirror.disk.<sharedName>`, which outlives `serve` '
      + '(any process may open it to fail or heal the disk).',
  }),
  sharedName: doc(sharedNameSchema.optional(), { description: 'The shared-memory name of a `shared` disk.', docDefault: '`<controller id>.<name>`' }),
}).superRefine((disk, context) => {
  if (disk.capacity % disk.sectorSize !== 0) {
    context.addIssue({ code: 'custom', path: ['capacity'], message: `must be a multiple of sectorSize ${disk.sectorSize}, got ${disk.capacity}` });
  }
}, { when: usable('capacity', 'sectorSize') }).transform((disk) => ({
  name: disk.name,
  capacityBytes: disk.capacity,
  sectorSize: disk.sectorSize,
  errorThreshold: disk.errorThreshold,
  seed: disk.seed,
  spare: disk.spare,
  backing: disk.backing,
  ...(disk.sharedName === undefined ? {} : { sharedName: disk.sharedName }),
}));

/** A RAID group over disks of the same controller (docs/raid.md). */
export const raidGroupSchema = strictObject({
  name: doc(volumeNameSchema, { description: `Group name, \`${SHARED_NAME_TEXT}\`, unique within the controller; volumes name it in \`group\`.` }),
  level: doc(z.enum(['single', 'raid1', 'raid5']), { description: '`single` (1 disk), `raid1` (n-way mirror, 2 to 16 disks), `raid5` (rotating parity, 3 to 16 disks).' }),
  disks: doc(z.array(volumeNameSchema).min(1).max(16), { description: 'The member disks in order: names of `disks`, none a spare, none in two groups.' }),
  stripeUnit: doc(powerOfTwoSize(512, 1024 * 1024).default(65536), { description: 'raid5: the stripe unit, a power of two from the sector size to 1 MiB.' }),
}).transform((group) => ({ name: group.name, level: group.level, disks: group.disks, stripeUnitBytes: group.stripeUnit }));

/** A work volume for diversion variant (b) (docs/raid.md). */
export const workVolumeSchema = strictObject({
  name: doc(volumeNameSchema, { description: `Work volume name, \`${SHARED_NAME_TEXT}\`, unique within the controller.` }),
  capacity: doc(size((bytes) => (bytes === 0 || bytes > 2 ** 48 ? `must be from 1 byte to 256 TiB, got ${bytes}` : undefined)), {
    description: 'Bytes of diverted data it holds: a multiple of `slotSize`. Thin: unused slots cost no memory.',
  }),
  slotSize: doc(powerOfTwoSize(512, 65536, String).default(4096), { description: 'The diversion unit (one slot per block written), a power of two from 512 to 65536.' }),
  backing: doc(z.enum(['memory', 'shared']).default('memory'), {
    description: '`memory`: private to `serve`. `shared`: the shared-memory object `blockmirror.work.<sharedName>`: its maps survive a SIGKILL of `serve`.',
  }),
  sharedName: doc(sharedNameSchema.optional(), { description: 'The shared-memory name of a `shared` work volume.', docDefault: '`<controller id>.<name>`' }),
}).superRefine((work, context) => {
  if (work.capacity % work.slotSize !== 0) {
    context.addIssue({ code: 'custom', path: ['capacity'], message: `must be a multiple of slotSize ${work.slotSize}, got ${work.capacity}` });
  }
}, { when: usable('capacity', 'slotSize') }).transform((work) => ({
  name: work.name,
  capacityBytes: work.capacity,
  slotBytes: work.slotSize,
  backing: work.backing,
  ...(work.sharedName === undefined ? {} : { sharedName: work.sharedName }),
}));

/** A work disk for diversion variant (c) (docs/raid.md). */
export const workDiskSchema = strictObject({
  name: doc(volumeNameSchema, { description: `Work disk name, \`${SHARED_NAME_TEXT}\`, unique within the controller.` }),
  disk: doc(volumeNameSchema, { description: 'The disk whose space takes the diverted member blocks: a name of `disks`, in no group, not a spare, not another work disk\'s.' }),
  slotSize: doc(powerOfTwoSize(512, 65536, String).default(4096), {
    description: 'The diversion unit (one slot per member block written), a power of two from 512 to 65536 and a multiple of the disk\'s sector size.',
  }),
  sharedName: doc(sharedNameSchema.optional(), {
    description: 'The shared-memory name of its map when the disk is `shared` (`blockmirror.work.<sharedName>`: the map survives a SIGKILL with the disk).',
    docDefault: '`<controller id>.workdisk.<name>`',
  }),
}).transform((work) => ({
  name: work.name,
  disk: work.disk,
  slotBytes: work.slotSize,
  ...(work.sharedName === undefined ? {} : { sharedName: work.sharedName }),
}));

export type DiskConfig = z.output<typeof diskSchema>;
export type RaidGroupConfig = z.output<typeof raidGroupSchema>;
export type WorkVolumeConfig = z.output<typeof workVolumeSchema>;
export type WorkDiskConfig = z.output<typeof workDiskSchema>;

export const controllerSchema = strictObject({
  id: doc(controllerIdSchema, { description: `The controller id, \`${CONTROLLER_ID_TEXT}\`, unique in the file; peers name it.` }),
  volumes: doc(list(volumeSchema, { max: MAX_VOLUMES }).default(() => []), {
    description: `The controller's volumes, at most ${MAX_VOLUMES} in the whole file. May be empty.`,
  }),
  exports: doc(list(exportSchema, { max: MAX_EXPORTS }).optional(), {
    description: `The NBD exports of the controller's volumes, at most ${MAX_EXPORTS} in the whole file.`,
    docDefault: 'one export per volume, named after it',
  }),
  replication: doc(replicationSchema.prefault({}), { description: 'The replication links of the controller.' }),
  peers: doc(list(peerSchema, { max: MAX_PEERS_PER_CONTROLLER }).default(() => []), {
    description: `The controllers this one keeps a link with, at most ${MAX_PEERS_PER_CONTROLLER}.`,
  }),
  pairs: doc(list(pairSchema, { max: MAX_VOLUMES }).default(() => []), {
    description: 'The pairs this controller takes part in (docs/pairs.md): each mirrors a primary volume to a secondary volume on a peer.',
  }),
  consistencyGroups: doc(list(consistencyGroupSchema, { max: MAX_VOLUMES }).default(() => []), {
    description: 'The consistency groups this controller takes part in as master or slave (docs/cgroups.md). Secondary controllers declare none.',
  }),
  disks: doc(list(diskSchema, { max: MAX_VOLUMES }).default(() => []), { description: 'Emulated disks (docs/raid.md), with fault injection at run time.' }),
  groups: doc(list(raidGroupSchema, { max: MAX_VOLUMES }).default(() => []), { description: 'RAID groups over the disks (docs/raid.md); a volume with `group` is laid on one.' }),
  workVolumes: doc(list(workVolumeSchema, { max: MAX_VOLUMES }).default(() => []), {
    description: 'Work volumes new writes of a group are diverted to while its suspect disk is spared, with `diversion: work-volume` (docs/raid.md).',
  }),
  workDisks: doc(list(workDiskSchema, { max: MAX_VOLUMES }).default(() => []), {
    description: 'Work disks the member disk writes of a group are diverted to while its suspect disk is spared, with `diversion: work-disk` (docs/raid.md).',
  }),
  diversion: doc(z.enum(['none', 'backup-volume', 'work-volume', 'work-disk']).default('none'), {
    description: 'How new writes of a group being spared are diverted: `none`, `backup-volume` (variant (a): to secondary volumes created in an unused group), `work-volume` (variant (b): to an unused one of `workVolumes`) or `work-disk` (variant (c): every member disk\'s writes to an unused one of `workDisks`).',
  }),
  rebuildStepBytes: doc(sizeRange(512, 64 * 1024 * 1024).default(4 * 1024 * 1024), {
    description: 'The step of rebuild, sparing and copy-back copies, per event-loop turn, 512 B to 64 MiB (docs/raid.md); smaller makes sparing slower and lighter.',
  }),
}).transform((controller) => ({
  ...completeController('controllers', controller),
  ...(controller.disks.length === 0 ? {} : { disks: controller.disks }),
  ...(controller.groups.length === 0 ? {} : { groups: controller.groups }),
  ...(controller.workVolumes.length === 0 ? {} : { workVolumes: controller.workVolumes }),
  ...(controller.workDisks.length === 0 ? {} : { workDisks: controller.workDisks }),
  ...(controller.diversion === 'none' ? {} : { diversion: controller.diversion }),
  ...((controller.rebuildStepBytes === 4 * 1024 * 1024 ? {} : { rebuildStepBytes: controller.rebuildStepBytes }) as { rebuildStepBytes?: number }),
}));

export const configDocumentSchema = strictObject({
  controllers: doc(list(controllerSchema, { min: 1, minProblem: 'must have at least one controller', max: MAX_CONTROLLERS }).optional(), {
    description: `The controllers served by this process, 1 to ${MAX_CONTROLLERS}. Not together with the top-level \`volumes\`/\`exports\`/\`id\`.`,
    docDefault: 'required, unless the file uses the single-controller form',
  }),
  listen: doc(list(listenEntrySchema, { min: 1, minProblem: 'must have at least one entry', max: MAX_LISTENERS })
    .default(() => [{ host: DEFAULT_HOST, port: DEFAULT_PORT }]), {
    description: `The NBD listeners, shared by every controller, 1 to ${MAX_LISTENERS}, no duplicates (port 0 excepted).`,
  }),
  admin: doc(adminSchema.prefault({}), { description: 'The admin endpoint (HTTP, for status and control).' }),
  limits: doc(limitsSchema.prefault({}), { description: 'Limits of the NBD server.' }),
  id: doc(controllerIdSchema.optional(), {
    description: 'Single-controller form only: the id of its one controller.',
    docDefault: `\`"${LEGACY_CONTROLLER_ID}"\``,
  }),
  volumes: doc(list(volumeSchema, { min: 1, minProblem: 'must have at least one volume', max: MAX_VOLUMES }).optional(), {
    description: 'Single-controller form only: the volumes, 1 to 256, each as in `controllers[].volumes[]`.',
    docDefault: 'required, unless the file has `controllers`',
    docExpand: false,
  }),
  exports: doc(list(exportSchema, { min: 1, minProblem: 'must have at least one export', max: MAX_EXPORTS }).optional(), {
    description: 'Single-controller form only: the exports, 1 to 1024 when given, each as in `controllers[].exports[]`.',
    docDefault: 'one export per volume, named after it',
    docExpand: false,
  }),
}).transform((document) => ({
  controllers: document.controllers ?? [completeController('legacy', {
    id: document.id ?? LEGACY_CONTROLLER_ID,
    volumes: document.volumes ?? [],
    exports: document.exports,
    replication: replicationSchema.parse({}),
    peers: [],
    pairs: [],
    consistencyGroups: [],
  })],
  listen: document.listen,
  admin: document.admin,
  limits: document.limits,
}));

// The types of the normalized config are the schemas' outputs. They are declared as interfaces
// that extend those outputs only so that editors and compiler messages show their names. What
// each field means, and its default, is in the `.meta()` of its key above and in the generated
// table of docs/config.md. test/unit/50.config.test.ts pins the shape other code is written
// against, so a change to it is a deliberate one.

/** The normalized config: every default filled in, every size in bytes. */
export interface BlockmirrorConfig extends z.output<typeof configDocumentSchema> {}
/** One controller: its volumes, exports, replication links and peers. */
export interface ControllerConfig extends z.output<typeof controllerSchema> {}
/** A volume; `sharedName` is filled in (the default `<controller id>.<name>`, or `<name>` in the single-controller form). */
export interface VolumeConfig extends ControllerVolumeOutput {}
type ControllerVolumeOutput = z.output<typeof controllerSchema>['volumes'][number];
export interface BitmapConfig extends z.output<typeof bitmapSchema> {}
export interface ExportConfig extends z.output<typeof exportSchema> {}
export interface ReplicationConfig extends z.output<typeof replicationSchema> {}
export interface PeerConfig extends z.output<typeof peerSchema> {}
export interface PairConfig extends z.output<typeof pairSchema> {}
/** A consistency group (docs/cgroups.md). */
export interface ConsistencyGroupConfig extends z.output<typeof consistencyGroupSchema> {}
export interface AdminConfig extends z.output<typeof adminSchema> {}
export interface LimitsConfig extends z.output<typeof limitsSchema> {}
/** Backing store of a volume's region. */
export type VolumeBacking = VolumeConfig['backing'];
/** What serve does when a shared or file volume already exists. */
export type VolumeExistingPolicy = VolumeConfig['existing'];

// ---------------------------------------------------------------------------------------------
// Rules across elements.

/** A path in the document as messages write it: `controllers[0].volumes[1].name`; `(document)` for the root. */
export function formatIssuePath(at: ReadonlyArray<PropertyKey>): string {
  if (at.length === 0) return '(document)';
  return at.map((key, index) => (typeof key === 'number' ? `[${key}]` : `${index === 0 ? '' : '.'}${String(key)}`)).join('');
}

/** A problem found by crossFieldIssues(): the path in the document and the message. */
export interface ConfigIssue {
  path: Array<string | number>;
  message: string;
}

function parsed<T extends z.ZodType>(schema: T, value: unknown): z.output<T> | undefined {
  const result = schema.safeParse(value);
  return result.success ? result.data : undefined;
}

interface VolumeView {
  at: Array<string | number>;
  /** The raw name when it is a string, valid or not: an export of it is not also "not found". */
  declaredName: string | undefined;
  name: string | undefined;
  entry: VolumeEntry | undefined;
  rawBitmaps: unknown[];
}

interface ExportView {
  at: Array<string | number>;
  /** Where a duplicate of an implicit export is reported: the volume's name. */
  implicit: boolean;
  name: string | undefined;
  volume: string | undefined;
}

interface ControllerView {
  at: Array<string | number>;
  id: string | undefined;
  volumes: VolumeView[];
  /** Whether the volumes field is a list (otherwise its own issue says so). */
  volumesListed: boolean;
  /** A record whose volumes and exports are lists or absent: its export count means something. */
  wellFormed: boolean;
  exports: ExportView[];
  replicationListen: { host: string; port: number } | undefined;
  rawPeers: unknown[];
  rawPairs: unknown[];
}

function asList(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}

function viewController(raw: unknown, at: Array<string | number>, form: 'controllers' | 'legacy'): ControllerView {
  const record = isRecord(raw) ? raw : {};
  const id = form === 'legacy' && record.id === undefined ? LEGACY_CONTROLLER_ID : parsed(controllerIdSchema, record.id);
  const volumes = asList(record.volumes).map((rawVolume, index): VolumeView => {
    const volumeRecord = isRecord(rawVolume) ? rawVolume : {};
    return {
      at: [...at, 'volumes', index],
      declaredName: typeof volumeRecord.name === 'string' ? volumeRecord.name : undefined,
      name: parsed(volumeNameSchema, volumeRecord.name),
      entry: parsed(volumeSchema, rawVolume),
      rawBitmaps: asList(volumeRecord.bitmaps),
    };
  });
  const exportViews: ExportView[] = record.exports === undefined
    ? volumes.filter((volume) => volume.declaredName !== undefined).map((volume) => ({
      at: [...volume.at, 'name'],
      implicit: true,
      name: volume.declaredName,
      volume: volume.declaredName,
    }))
    : asList(record.exports).map((rawExport, index) => {
      const exportRecord = isRecord(rawExport) ? rawExport : {};
      const name = parsed(exportNameSchema, exportRecord.name);
      const volume = exportRecord.volume === undefined
        ? (typeof exportRecord.name === 'string' ? exportRecord.name : undefined)
        : (typeof exportRecord.volume === 'string' ? exportRecord.volume : undefined);
      return { at: [...at, 'exports', index], implicit: false, name, volume };
    });
  const replication = isRecord(record.replication) ? record.replication : {};
  return {
    at,
    id,
    volumes,
    volumesListed: Array.isArray(record.volumes),
    wellFormed: isRecord(raw) && (record.volumes === undefined || Array.isArray(record.volumes)) &&
      (record.exports === undefined || Array.isArray(record.exports)),
    exports: exportViews,
    replicationListen: parsed(replicationListenSchema, replication.listen),
    rawPeers: asList(record.peers),
    rawPairs: asList(record.pairs),
  };
}

function quoteList(names: Iterable<string>): string {
  return [...names].map((name) => `"${name}"`).join(', ') || 'none';
}

/**
 * The rules across elements of a document: duplicates, references, totals, and the choice
 * between the controllers form and the single-controller form. Reads the raw document and
 * parses each element on its own, so it works (and reports) whatever else is wrong.
 */
export function crossFieldIssues(raw: unknown): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const add = (at: Array<string | number>, message: string): void => {
    issues.push({ path: at, message });
  };
  if (!isRecord(raw)) return issues;

  const form = raw.controllers === undefined ? 'legacy' : 'controllers';
  if (form === 'controllers') {
    for (const key of ['id', 'volumes', 'exports'] as const) {
      if (raw[key] !== undefined) {
        add([key], 'cannot be combined with controllers: the top-level id, volumes and exports are the ' +
          'single-controller form; with controllers, each controller has its own');
      }
    }
  } else if (raw.volumes === undefined) {
    add(['volumes'], 'is required (or give controllers)');
  }

  const controllers = form === 'legacy'
    ? [viewController(raw, [], 'legacy')]
    : asList(raw.controllers).map((rawController, index) => viewController(rawController, ['controllers', index], 'controllers'));

  const controllerIds = new Set<string>();
  const exportOwners = new Map<string, string>();
  const sharedNames = new Map<string, string>();
  const filePaths = new Map<string, string>();
  const replicationAddresses = new Map<string, string>();
  let volumeCount = 0;
  let exportCount = 0;

  const nbdAddresses = new Set<string>();
  const listenKeys = new Set<string>();
  // Without a listen field, the default listener ({} parses to it) is the one to compare with.
  (raw.listen === undefined ? [{}] : asList(raw.listen)).forEach((rawEntry, index) => {
    const entry = parsed(listenEntrySchema, rawEntry);
    if (entry === undefined) return;
    const key = 'path' in entry ? `unix:${path.resolve(entry.path)}` : `tcp:${entry.host}:${entry.port}`;
    if (listenKeys.has(key) && !('port' in entry && entry.port === 0)) add(['listen', index], 'duplicate listener');
    listenKeys.add(key);
    if ('port' in entry && entry.port !== 0) nbdAddresses.add(formatAddress(entry));
  });

  for (const controller of controllers) {
    const { at, id } = controller;
    const ownerLabel = id === undefined ? `controller ${formatIssuePath(at)}` : `controller "${id}"`;
    const owner = ` of ${ownerLabel}`;
    if (id !== undefined && form === 'controllers') {
      if (controllerIds.has(id)) add([...at, 'id'], `duplicate controller id "${id}"`);
      controllerIds.add(id);
    }
    volumeCount += controller.volumes.length;
    exportCount += controller.exports.length;

    const volumeNames = new Set<string>();
    for (const volume of controller.volumes) {
      if (volume.name !== undefined) {
        if (volumeNames.has(volume.name)) add([...volume.at, 'name'], `duplicate volume name "${volume.name}"`);
        volumeNames.add(volume.name);
      }
      const bitmapNames = new Set<string>();
      volume.rawBitmaps.forEach((rawBitmap, index) => {
        const bitmapName = parsed(bitmapNameSchema, isRecord(rawBitmap) ? rawBitmap.name : undefined);
        if (bitmapName === undefined) return;
        if (bitmapNames.has(bitmapName)) add([...volume.at, 'bitmaps', index, 'name'], `duplicate bitmap name "${bitmapName}"`);
        bitmapNames.add(bitmapName);
      });
      const entry = volume.entry;
      if (entry === undefined || id === undefined) continue;
      const label = `volume "${entry.name}"${owner}`;
      // Two file volumes on one path would share a region.
      if (entry.path !== undefined) {
        const resolved = path.resolve(entry.path);
        const other = filePaths.get(resolved);
        if (other !== undefined) add([...volume.at, 'path'], `same file as ${other}`);
        filePaths.set(resolved, label);
      }
      const sharedName = entry.sharedName ?? defaultSharedName(form, id, entry.name);
      const sharedNameAt = [...volume.at, entry.sharedName === undefined ? 'name' : 'sharedName'];
      if (entry.sharedName === undefined && !SHARED_NAME_PATTERN.test(sharedName)) {
        add(sharedNameAt, `the default sharedName "${sharedName}" (controller id "." name) is ${sharedName.length} ` +
          'characters, more than 184: shorten the name or set sharedName');
        continue;
      }
      if (entry.backing === 'shared') {
        const other = sharedNames.get(sharedName);
        if (other !== undefined) add(sharedNameAt, `sharedName "${sharedName}" is already the shared name of ${other}`);
        sharedNames.set(sharedName, label);
      }
    }

    if (controller.volumesListed) {
      const declared = new Set(controller.volumes.flatMap((volume) => (volume.declaredName === undefined ? [] : [volume.declaredName])));
      for (const entry of controller.exports) {
        if (!entry.implicit && entry.volume !== undefined && !declared.has(entry.volume)) {
          add([...entry.at, 'volume'], `no volume named "${entry.volume}" (volumes: ${quoteList(declared)})`);
        }
      }
    }
    for (const entry of controller.exports) {
      if (entry.name === undefined) continue;
      const other = exportOwners.get(entry.name);
      if (other === undefined) {
        exportOwners.set(entry.name, ownerLabel);
      } else if (!entry.implicit) {
        const where = other === ownerLabel ? '' : ` (also an export of ${other})`;
        add([...entry.at, 'name'], `duplicate export name ${JSON.stringify(entry.name)}${where}`);
      } else if (other !== ownerLabel) {
        // Within one controller, two implicit exports of one name are a duplicate volume name,
        // which is reported already.
        add(entry.at, `the implicit export ${JSON.stringify(entry.name)} (one per volume when exports is not ` +
          `given) is also an export of ${other}: give exports explicitly`);
      }
    }

    const listenAt = [...at, 'replication', 'listen'];
    if (controller.replicationListen !== undefined && controller.replicationListen.port !== 0) {
      const key = formatAddress(controller.replicationListen);
      const other = replicationAddresses.get(key);
      if (other !== undefined) add(listenAt, `same address as the replication listener of ${other}`);
      replicationAddresses.set(key, ownerLabel);
      if (nbdAddresses.has(key)) add(listenAt, `same address as the NBD listener ${key}`);
    }

    const peerIds = new Set<string>();
    controller.rawPeers.forEach((rawPeer, index) => {
      const peerId = parsed(controllerIdSchema, isRecord(rawPeer) ? rawPeer.id : undefined);
      if (peerId === undefined) return;
      if (peerId === id) add([...at, 'peers', index, 'id'], `must not be the controller's own id "${id}"`);
      else if (peerIds.has(peerId)) add([...at, 'peers', index, 'id'], `duplicate peer id "${peerId}"`);
      peerIds.add(peerId);
    });

    // Pairs name a volume of this controller and one of its peers; a volume is the secondary of
    // at most one pair, and never also a primary.
    const pairNames = new Set<string>();
    const secondaryVolumes = new Set<string>();
    const primaryVolumes = new Set<string>();
    const groupFirst = new Map<string, { peer: string; mode: string; role: string; index: number }>();
    const volumePairs = new Map<string, { grouped: boolean; index: number }>();
    controller.rawPairs.forEach((rawPair, index) => {
      if (!isRecord(rawPair)) return;
      const pairAt = [...at, 'pairs', index];
      const name = typeof rawPair.name === 'string' ? rawPair.name : undefined;
      if (name !== undefined) {
        if (pairNames.has(name)) add([...pairAt, 'name'], `duplicate pair name "${name}"`);
        pairNames.add(name);
      }
      const volume = typeof rawPair.volume === 'string' ? rawPair.volume : undefined;
      if (volume !== undefined && controller.volumesListed && !volumeNames.has(volume)) {
        add([...pairAt, 'volume'], `no volume named "${volume}" on controller "${id}" (volumes: ${quoteList(volumeNames)})`);
      }
      const peer = typeof rawPair.peer === 'string' ? rawPair.peer : undefined;
      if (peer !== undefined && !peerIds.has(peer)) add([...pairAt, 'peer'], `not a peer of controller "${id}" (peers: ${quoteList(peerIds)})`);
      if (volume !== undefined && rawPair.role === 'secondary') {
        if (secondaryVolumes.has(volume)) add([...pairAt, 'volume'], `"${volume}" is the secondary of another pair`);
        if (primaryVolumes.has(volume)) add([...pairAt, 'volume'], `"${volume}" is the primary of another pair; it cannot also be a secondary`);
        secondaryVolumes.add(volume);
      } else if (volume !== undefined && rawPair.role === 'primary') {
        if (secondaryVolumes.has(volume)) add([...pairAt, 'volume'], `"${volume}" is the secondary of another pair; it cannot also be a primary`);
        primaryVolumes.add(volume);
      }
      if (rawPair.fence === 'data' && rawPair.mode !== 'sync') add([...pairAt, 'fence'], 'fence "data" needs mode "sync"');
      if (typeof rawPair.journalGroup === 'string') {
        const group = rawPair.journalGroup;
        const fields = { peer: String(rawPair.peer), mode: String(rawPair.mode ?? 'async'), role: String(rawPair.role) };
        const first = groupFirst.get(group);
        if (first === undefined) {
          groupFirst.set(group, { ...fields, index });
        } else {
          for (const field of ['peer', 'mode', 'role'] as const) {
            if (fields[field] !== first[field]) add([...pairAt, 'journalGroup'], `journal group "${group}" has ${field} "${first[field]}" (pairs[${first.index}]); one ${field} per group`);
          }
        }
      }
      if (volume !== undefined) {
        const grouped = typeof rawPair.journalGroup === 'string';
        const seen = volumePairs.get(volume);
        if (seen !== undefined && (seen.grouped || grouped)) add([...pairAt, 'volume'], `"${volume}" is in a journal group; a grouped volume is in no other pair (pairs[${seen.index}])`);
        if (seen === undefined) volumePairs.set(volume, { grouped, index });
      }
    });
  }

  if (form === 'controllers' && Array.isArray(raw.controllers) && raw.controllers.length > 0 &&
      raw.controllers.length <= MAX_CONTROLLERS) {
    if (volumeCount > MAX_VOLUMES) add(['controllers'], `must have at most ${MAX_VOLUMES} volumes in all, got ${volumeCount}`);
    if (exportCount > MAX_EXPORTS) add(['controllers'], `must have at most ${MAX_EXPORTS} exports in all, got ${exportCount}`);
    if (exportCount === 0 && controllers.every((controller) => controller.wellFormed)) {
      add(['controllers'], 'must have at least one export in all: the NBD server needs one');
    }
  }
  return issues;
}
