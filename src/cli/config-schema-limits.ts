// Notes on the design
// -------------------
// The limits, defaults and name patterns of the serve config (config-schema.ts is its one
// description): every bound a schema checks and every default it fills in is a named constant
// here, so the schemas, the docs generator, the tests and the code that runs the config read the
// same numbers (the replication link's own bounds come from src/transport/limits.ts). Also where
// the admin endpoint's socket goes when the file does not say.
//
// Invariants: each *_PATTERN and its *_TEXT (how messages and docs write it) say the same thing;
// a name that doubles as a shared-memory object name keeps to that alphabet and length. No
// state lives here; nothing here touches the storage or the network.

import * as os from 'node:os';

import { DEFAULT_MAX_FRAME_BYTES, LINK_DEFAULTS, MAX_MAX_FRAME_BYTES, MIN_MAX_FRAME_BYTES } from '../transport/limits';

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
export const SHARED_NAME_PATTERN = /^[A-Za-z0-9._-]{1,184}$/;
export const SHARED_NAME_TEXT = '[A-Za-z0-9._-]{1,184}';
export const BITMAP_NAME_PATTERN = /^[A-Za-z0-9._:-]{1,47}$/;
export const BITMAP_NAME_TEXT = '[A-Za-z0-9._:-]{1,47}';
export const CONTROLLER_ID_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;
export const CONTROLLER_ID_TEXT = '[A-Za-z0-9._-]{1,64}';
export const ENV_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]{0,254}$/;
export const ENV_NAME_TEXT = '[A-Za-z_][A-Za-z0-9_]*';

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
