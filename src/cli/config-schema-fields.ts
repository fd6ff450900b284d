// Notes on the design
// -------------------
// The schemas of the serve config: one per kind of element (bitmap, volume, export, listener,
// replication, peer, admin, limits, pair, consistency group, disk, RAID group, work volume, work
// disk), the controller and the whole document, each with its rules inside one object
// (refinements run `when: usable(...)`) and its normalization (defaults filled in, sizes in
// bytes, implicit exports, default shared names, the single-controller form turned into the
// controllers form). scripts/gen-config-docs.ts walks configDocumentSchema and reads the
// `.meta()` of every key, so a key's description lives beside its schema.
//
// The rules across elements are in config-schema-cross.ts, which parses single fields with the
// schemas exported here. No state lives here.

import { z } from 'zod';
import { DEFAULT_MAX_FRAME_BYTES, MAX_MAX_FRAME_BYTES, MIN_MAX_FRAME_BYTES } from '../transport/limits';
import { CGROUP_DEFAULTS, CGROUP_LIMIT_RANGES, GROUP_NAME_PATTERN, MAX_RELATIONSHIPS, cgroupSpecProblems } from '../cgroup/types';
import {
  ADMIN_LOOPBACK_HOSTS, BITMAP_NAME_PATTERN, BITMAP_NAME_TEXT, CONTROLLER_ID_PATTERN,
  CONTROLLER_ID_TEXT, DEFAULT_BLOCK_SIZE, DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_DEAD_PEER_TIMEOUT_MS,
  DEFAULT_GRANULARITY_BYTES, DEFAULT_HANDSHAKE_TIMEOUT_MS, DEFAULT_HEARTBEAT_INTERVAL_MS,
  DEFAULT_HOST, DEFAULT_MAX_PAYLOAD_BYTES, DEFAULT_MAX_PENDING_CONNECTIONS,
  DEFAULT_MAX_QUEUED_BYTES, DEFAULT_PORT, DEFAULT_RECONNECT_INITIAL_DELAY_MS,
  DEFAULT_RECONNECT_JITTER, DEFAULT_RECONNECT_MAX_DELAY_MS, ENV_NAME_PATTERN, ENV_NAME_TEXT,
  LEGACY_CONTROLLER_ID, MAX_BITMAPS_PER_VOLUME, MAX_BLOCK_SIZE, MAX_CONNECT_TIMEOUT_MS,
  MAX_CONTROLLERS, MAX_DEAD_PEER_TIMEOUT_MS, MAX_EXPORTS, MAX_GRANULARITY_BYTES,
  MAX_HANDSHAKE_TIMEOUT_MS, MAX_HEARTBEAT_INTERVAL_MS, MAX_LISTENERS, MAX_MAX_PAYLOAD_BYTES,
  MAX_MAX_PENDING_CONNECTIONS, MAX_MAX_QUEUED_BYTES, MAX_NBD_STRING_BYTES, MAX_PEERS_PER_CONTROLLER,
  MAX_RECONNECT_DELAY_MS, MAX_SOCKET_PATH_BYTES, MAX_VOLUMES, MAX_VOLUME_CAPACITY_BYTES,
  MIN_BLOCK_SIZE, MIN_CONNECT_TIMEOUT_MS, MIN_GRANULARITY_BYTES, MIN_HANDSHAKE_TIMEOUT_MS,
  MIN_HEARTBEAT_INTERVAL_MS, MIN_MAX_PAYLOAD_BYTES, SHARED_NAME_PATTERN, SHARED_NAME_TEXT,
  defaultAdminSocketPath,
} from './config-schema-limits';
import {
  address, describe, doc, formatAddress, formatSize, integer, list, nonEmptyString, patterned, port,
  powerOfTwoSize, size, sizeRange, socketPath, strictObject, usable,
} from './config-schema-builders';

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
  workers: doc(z.number().int().min(0).max(64).default(0), {
    description: 'Worker threads that serve NBD connections to plain volumes after their handshake (no pair, journal, snapshot store or RAID; docs/nbd-workers.md), 0 to 64. 0: every connection on the one event loop.',
  }),
  nativeLanes: doc(z.boolean().default(true), {
    description: 'Serve NBD connections to plain volumes (as for `workers`) after their handshake on a native thread each, in blocking I/O (docs/nbd-native.md); a connection goes back to the event loop at the first request a lane does not serve itself (BLOCK_STATUS with a dirty bitmap\'s context or none, an invalid request). Taken before `workers`. false: the event loop serves every connection.',
  }),
});

export type VolumeEntry = z.output<typeof volumeSchema>;
type ExportEntry = z.output<typeof exportSchema>;

/** The shared name a volume gets when the file gives none. */
export function defaultSharedName(form: 'controllers' | 'legacy', controllerId: string, volumeName: string): string {
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
  journalHold: doc(z.number().min(0).max(1).default(0.75), {
    description: 'Primary only. While the pair is suspended by a link loss, the journal keeps the records the secondary lacks, so that the stream resumes '
      + 'from its position with no resync when the link is back; this is the most of the journal\'s ring (a fraction) they may take before the pair '
      + 'gives the resume up and resyncs from its OOS bitmap. 0: resync after every link loss.',
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
