// Notes on the design
// -------------------
// One error class for every operating error of blockmirror (closed objects, full journals,
// checksum mismatches, failed system calls, protocol violations): BlockmirrorError, with a stable
// string `code` of the form ERR_<AREA>_<WHAT> that callers branch on, and `errno` when a system
// call failed. Caller mistakes are not BlockmirrorErrors: they are TypeError (wrong type) and
// RangeError (out of range, not an integer, misaligned), thrown by the TypeScript checks first and
// by the native binding again.
//
// The native addon receives this class at load (src/native.ts calls setErrorConstructor, as
// better-sqlite3 does with SqliteError), so errors raised in C++ arrive as real instances of it.
//
// Codes are kept as one list per area. NATIVE_ERROR_CODES must equal the native core's list
// (bm::codeNames(), native/core/errors.hpp); a unit test checks it. Areas that exist only in
// TypeScript are listed here as well, so ERROR_CODES is the whole catalogue (docs/errors.md).

/** Operating error codes raised by the native core. Same names and order as bm::codeNames(). */
export const NATIVE_ERROR_CODES = Object.freeze([
  'ERR_REGION_CLOSED',
  'ERR_REGION_EXISTS',
  'ERR_REGION_NOT_FOUND',
  'ERR_REGION_OPEN',
  'ERR_REGION_MAP',
  'ERR_REGION_TRIM',
  'ERR_REGION_FLUSH',
  'ERR_REGION_TOO_SMALL',
  'ERR_VOLUME_CLOSED',
  'ERR_VOLUME_BAD_SUPERBLOCK',
  'ERR_BITMAP_CLOSED',
  'ERR_BITMAP_CHECKSUM',
  'ERR_BITMAP_GEOMETRY',
  'ERR_BITMAP_EXISTS',
  'ERR_BITMAP_NOT_FOUND',
  'ERR_BITMAP_LIMIT',
  'ERR_BITMAP_FORMAT',
  'ERR_JOURNAL_CLOSED',
  'ERR_JOURNAL_CHECKSUM',
  'ERR_JOURNAL_RELEASED',
  'ERR_JOURNAL_NOT_YET',
  'ERR_JOURNAL_RECORD_TOO_LARGE',
  'ERR_JOURNAL_BAD_HEADER',
  /** The snapshot store (or the Snapshot's store) is closed. */
  'ERR_SNAPSHOT_CLOSED',
  /** A snapshot of that name exists on the volume. */
  'ERR_SNAPSHOT_EXISTS',
  /** No snapshot of that name, or the Snapshot object's snapshot was deleted. */
  'ERR_SNAPSHOT_NOT_FOUND',
  /** All 32 snapshot slots of the volume are in use (or the store's create epoch is exhausted). */
  'ERR_SNAPSHOT_LIMIT',
  /** The snapshot overflowed (its chunk store was full when a chunk needed preserving): its image is lost. */
  'ERR_SNAPSHOT_INVALID',
  /** The snapshot store's region is damaged, of another format, or belongs to another volume. */
  'ERR_SNAPSHOT_BAD_HEADER',
  /** The Volume object has a snapshot store (or another write interceptor) attached already. */
  'ERR_SNAPSHOT_ATTACHED',
  /** A write to a volume that has snapshots, through a Volume object with no snapshot store open. */
  'ERR_SNAPSHOT_DETACHED',
  /** The disk is closed. */
  'ERR_DISK_CLOSED',
  /** The region is not a disk, or its header is damaged. */
  'ERR_DISK_BAD_HEADER',
  /** All 8 fault rules of the disk are in use. */
  'ERR_DISK_FAULT_LIMIT',
  /** The emulated disk failed the I/O (an injected fault or a failed disk); .errno says how. */
  'ERR_DISK_IO',
  /** The RAID group is closed. */
  'ERR_RAID_CLOSED',
  /** The group's metadata region is damaged, of another format, or its disks are not the group's members. */
  'ERR_RAID_BAD_HEADER',
  /** No member (nor parity) could supply the bytes: data lost in that range, reported, never zeros. */
  'ERR_RAID_READ_FAILED',
  /** The write could not be stored with the group's redundancy: too many members failed. */
  'ERR_RAID_WRITE_FAILED',
  /** The member is not in a state that allows the operation (rebuild of an active member, a second rebuild, ...). */
  'ERR_RAID_MEMBER_STATE',
  /** No unused span of the group is large enough for the volume (or its extent table is full). */
  'ERR_RAID_NO_SPACE',
  /** The group has a volume extent of that name. */
  'ERR_RAID_EXTENT_EXISTS',
  /** The group has no volume extent of that name. */
  'ERR_RAID_EXTENT_NOT_FOUND',
  /** The region is not a work volume (magic, damaged header). */
  'ERR_DIVERSION_BAD_HEADER',
  /** The work volume serves its maximum number of main volumes (8). */
  'ERR_DIVERSION_MAINS_FULL',
  /** A diversion verb the work volume's state does not allow (start when in use, copy-back when not diverting, a main not attached). */
  'ERR_DIVERSION_STATE',
  /** A work disk's slot could not be read during a copy-back (or a main disk refused the copied block). */
  'ERR_DIVERSION_IO_FAILED',
] as const);

export type NativeErrorCode = (typeof NATIVE_ERROR_CODES)[number];

/** The NBD server's codes (src/nbd/). */
export const NBD_ERROR_CODES = Object.freeze([
  /** Magic number wrong: option (IHAVEOPT) or request (0x25609513). The stream lost framing. */
  'ERR_NBD_BAD_MAGIC',
  /** The client set handshake flags this server did not offer. */
  'ERR_NBD_BAD_CLIENT_FLAGS',
  /** Option data longer than the server's option limit. */
  'ERR_NBD_OPTION_TOO_LARGE',
  /** More options than the per-connection limit during one handshake. */
  'ERR_NBD_TOO_MANY_OPTIONS',
  /** An option other than EXPORT_NAME from a client that did not set FIXED_NEWSTYLE. */
  'ERR_NBD_NOT_FIXED_NEWSTYLE',
  /** NBD_OPT_EXPORT_NAME named an export that does not exist (the spec forbids an error reply). */
  'ERR_NBD_UNKNOWN_EXPORT',
  /** A WRITE payload too long even to read and discard. */
  'ERR_NBD_PAYLOAD_TOO_LARGE',
  /** The handshake did not finish within handshakeTimeoutMs. */
  'ERR_NBD_HANDSHAKE_TIMEOUT',
  /** The client closed the connection in the middle of a message. */
  'ERR_NBD_TRUNCATED',
  /** The connection limit was reached; the new connection was closed. */
  'ERR_NBD_TOO_MANY_CONNECTIONS',
  /** A listener could not be opened (address in use, bad path, ...). */
  'ERR_NBD_LISTEN',
  /** The server is closed (or closing). */
  'ERR_NBD_SERVER_CLOSED',
] as const);

/** Links between controllers: frames, handshakes, delivery (src/transport/). */
export const LINK_ERROR_CODES = Object.freeze([
  /** A frame did not start with the link magic: the stream lost framing or is not a link. */
  'ERR_LINK_BAD_MAGIC',
  /** A frame's header version is not one this controller decodes. */
  'ERR_LINK_BAD_VERSION',
  /** A frame's message type is unknown. */
  'ERR_LINK_BAD_TYPE',
  /** A frame set flags that are not defined, or not allowed on its type. */
  'ERR_LINK_BAD_FLAGS',
  /** A frame's length is above maxFrameBytes. */
  'ERR_LINK_FRAME_TOO_LARGE',
  /** A frame's CRC32C does not match its header and payload. */
  'ERR_LINK_CHECKSUM',
  /** A frame's sequence is not the one after the previous frame's. */
  'ERR_LINK_SEQUENCE_GAP',
  /** A message's payload is malformed (truncated, trailing bytes, bad field). */
  'ERR_LINK_BAD_MESSAGE',
  /** A message arrived in a state where it is not allowed (e.g. data before the handshake). */
  'ERR_LINK_PROTOCOL',
  /** The two controllers share no link protocol version. */
  'ERR_LINK_VERSION',
  /** The peer is not the controller expected at that address, or not a configured peer. */
  'ERR_LINK_PEER_ID',
  /** A controller connected to itself. */
  'ERR_LINK_SELF',
  /** Authentication failed: wrong secret, or one side has a secret and the other none. */
  'ERR_LINK_AUTH',
  /** The handshake did not finish within handshakeTimeoutMs. */
  'ERR_LINK_HANDSHAKE_TIMEOUT',
  /** Too many connections are in their handshake on this listener; the new one was closed. */
  'ERR_LINK_TOO_MANY_CONNECTIONS',
  /** The link is not up: the message was not sent. */
  'ERR_LINK_DOWN',
  /** The link's queue is full (maxQueuedBytes): the message was not sent; wait for drain. */
  'ERR_LINK_FULL',
  /** A request got no response within its timeout. */
  'ERR_LINK_TIMEOUT',
  /** The remote request handler failed; the error carries the remote code and message. */
  'ERR_LINK_REMOTE',
  /** No handler is registered for a request type on the remote controller. */
  'ERR_LINK_NO_HANDLER',
  /** The link (or its controller) is closed. */
  'ERR_LINK_CLOSED',
  /** No peer with that id is configured on this controller. */
  'ERR_LINK_UNKNOWN_PEER',
  /** A fault setting is invalid (e.g. a negative delay). */
  'ERR_LINK_BAD_FAULT',
] as const);

/** Controllers (src/controller/). */
export const CONTROLLER_ERROR_CODES = Object.freeze([
  /** A peer's shared secret could not be read (missing file or variable, empty secret). */
  'ERR_CONTROLLER_SECRET',
  /** The controller is closed (or closing). */
  'ERR_CONTROLLER_CLOSED',
  /** The replication listener could not be opened (address in use, bad host, ...). */
  'ERR_CONTROLLER_LISTEN',
  /** Closing met problems (a volume flush or close failed); the log says which. */
  'ERR_CONTROLLER_CLOSE',
  /** No disk or RAID group of that name on the controller (src/controller/disks.ts). */
  'ERR_CONTROLLER_NO_DISK',
] as const);

/** Pairs (src/replication/). */
export const PAIR_ERROR_CODES = Object.freeze([
  /** No pair of that name is declared on this controller (or not with that role, peer or volume). */
  'ERR_PAIR_UNKNOWN',
  /** The two sides of a pair disagree: volumes, mode, capacity or block size. */
  'ERR_PAIR_MISMATCH',
  /** A record arrived out of sequence (a gap or a repeat): nothing of it was applied. */
  'ERR_PAIR_SEQUENCE',
  /** A record or track lies outside the secondary volume. */
  'ERR_PAIR_RANGE',
  /** A host write failed because a sync pair with fence level "data" cannot reach its secondary. */
  'ERR_PAIR_FENCED',
  /** The operation is not allowed in the pair's state (e.g. resume of a mirroring pair). */
  'ERR_PAIR_STATE',
  /** Both sides changed since their common generation: nothing is overwritten until `resolve`. */
  'ERR_PAIR_SPLIT_BRAIN',
  /** Contradictory resolves: both sides discarded their data (each chose the peer's); run resolve once more, with the link up. */
  'ERR_PAIR_BOTH_DISCARDED',
  /** The two volumes share no generation: unrelated data, refused; nothing is touched. */
  'ERR_PAIR_UNRELATED',
  /** The peer holds the newer generation as primary: this side must become its secondary. */
  'ERR_PAIR_DEMOTE',
  /** A role change is impossible here (the volume is also the primary of another pair, or both sides claim a role they cannot hold). */
  'ERR_PAIR_ROLE',
  /** A write reached a pair's volume while it is a secondary (its primary was demoted under an open connection). EPERM to NBD clients. */
  'ERR_PAIR_READ_ONLY',
  /** The pair's metadata region is damaged or of another format. */
  'ERR_PAIR_META',
  /** `pair create`: a pair of that name exists on this controller. */
  'ERR_PAIR_EXISTS',
  /** `pair create`: the pair does not fit this controller (no such volume or peer, the volume is already a secondary, ...). */
  'ERR_PAIR_BAD_SPEC',
] as const);

/** The lockstep barrier (src/replication/lockstep.ts). */
export const LOCKSTEP_ERROR_CODES = Object.freeze([
  /** A lockstep call gave a timeout and its marker was not safe-stored on every receiver in time. */
  'ERR_LOCKSTEP_TIMEOUT',
] as const);

/** Consistency groups (src/cgroup/). */
export const CGROUP_ERROR_CODES = Object.freeze([
  /** No consistency group of that name is declared here, or the message did not come from its master. */
  'ERR_CGROUP_UNKNOWN',
  /** The relationship table or a limit is invalid (names, one master controller, unique rows, ranges). */
  'ERR_CGROUP_BAD_SPEC',
  /** `group create`: a group of that name exists on this controller. */
  'ERR_CGROUP_EXISTS',
  /** A member cannot take part in a cycle now (its pair is not mirroring, or its secondary is still catching up). */
  'ERR_CGROUP_NOT_READY',
  /** A cycle message older than the last one this controller prepared. */
  'ERR_CGROUP_STALE',
  /** A secondary could not take its consistent copy (no room for another snapshot, ...). */
  'ERR_CGROUP_COPY',
  /** `group recover`: no cycle is held for every member volume. */
  'ERR_CGROUP_NO_COPY',
] as const);

/** A controller's snapshots (src/controller/snapshots.ts); the storage layer's are native. */
export const SNAPSHOT_OPERATION_ERROR_CODES = Object.freeze([
  /** A write reached a snapshot's export, or a restore was asked of a pair's secondary volume. EPERM to NBD clients. */
  'ERR_SNAPSHOT_READ_ONLY',
] as const);

/** The admin endpoint (src/admin/): HTTP on a Unix socket. */
export const ADMIN_ERROR_CODES = Object.freeze([
  /** The request is malformed: bad JSON, a missing or wrong-typed field. HTTP 400. */
  'ERR_ADMIN_BAD_REQUEST',
  /** No such endpoint. HTTP 404. */
  'ERR_ADMIN_NOT_FOUND',
  /** The endpoint exists but not with this method. HTTP 405. */
  'ERR_ADMIN_METHOD',
  /** The request body is larger than the limit. HTTP 413. */
  'ERR_ADMIN_TOO_LARGE',
  /** The serve runs several controllers and the request named none. HTTP 400. */
  'ERR_ADMIN_CONTROLLER_REQUIRED',
  /** No controller with that id. HTTP 404. */
  'ERR_ADMIN_UNKNOWN_CONTROLLER',
  /** The command could not reach the admin endpoint (no serve on that socket). */
  'ERR_ADMIN_UNREACHABLE',
  /** The admin endpoint answered with an error or something that is not its JSON. */
  'ERR_ADMIN_RESPONSE',
] as const);

/** Configuration files and options (src/cli/config.ts). */
export const CONFIG_ERROR_CODES = Object.freeze([
  /** The configuration is invalid; the error's `issues` name each field and problem. */
  'ERR_CONFIG_INVALID',
] as const);

/** The `blockmirror` command's run-time failures (src/cli/). */
export const CLI_ERROR_CODES = Object.freeze([
  /** A configured volume exists already and the config says `existing: "error"`. */
  'ERR_CLI_VOLUME_EXISTS',
  /** An existing volume's size or block size differs from the configured one. */
  'ERR_CLI_VOLUME_GEOMETRY',
  /** A Unix socket path exists and is not a socket (it is never removed). */
  'ERR_CLI_SOCKET_PATH',
  /** Another server is listening on the Unix socket path. */
  'ERR_CLI_SOCKET_IN_USE',
  /** Shutting down met problems (a flush or a close failed); the log says which. */
  'ERR_CLI_SHUTDOWN',
] as const);

export type NbdErrorCode = (typeof NBD_ERROR_CODES)[number];
export type LinkErrorCode = (typeof LINK_ERROR_CODES)[number];
export type AdminErrorCode = (typeof ADMIN_ERROR_CODES)[number];
export type ControllerErrorCode = (typeof CONTROLLER_ERROR_CODES)[number];
export type PairErrorCode = (typeof PAIR_ERROR_CODES)[number];
export type LockstepErrorCode = (typeof LOCKSTEP_ERROR_CODES)[number];
export type CgroupErrorCode = (typeof CGROUP_ERROR_CODES)[number];
export type SnapshotOperationErrorCode = (typeof SNAPSHOT_OPERATION_ERROR_CODES)[number];
export type ConfigErrorCode = (typeof CONFIG_ERROR_CODES)[number];
export type CliErrorCode = (typeof CLI_ERROR_CODES)[number];
export type ErrorCode = NativeErrorCode | NbdErrorCode | LinkErrorCode | ControllerErrorCode | PairErrorCode | LockstepErrorCode | CgroupErrorCode | SnapshotOperationErrorCode | AdminErrorCode | ConfigErrorCode | CliErrorCode;

/**
 * Every operating error code of blockmirror, one list per area: the native ones (which must equal
 * the core's list) and the TypeScript-only areas. A unit test checks that every ERR_* literal in
 * src/ is listed here.
 */
export const ERROR_CODES: readonly ErrorCode[] = Object.freeze([
  ...NATIVE_ERROR_CODES,
  ...NBD_ERROR_CODES,
  ...LINK_ERROR_CODES,
  ...CONTROLLER_ERROR_CODES,
  ...PAIR_ERROR_CODES,
  ...LOCKSTEP_ERROR_CODES,
  ...CGROUP_ERROR_CODES,
  ...SNAPSHOT_OPERATION_ERROR_CODES,
  ...ADMIN_ERROR_CODES,
  ...CONFIG_ERROR_CODES,
  ...CLI_ERROR_CODES,
]);

/** Options of a BlockmirrorError. */
export interface BlockmirrorErrorOptions {
  /** The system errno when a system call failed. @default undefined */
  errno?: number;
  /** The error that caused this one. @default undefined */
  cause?: unknown;
}

/** An operating error with a stable `code` (ERR_<AREA>_<WHAT>). */
export class BlockmirrorError extends Error {
  /** Stable code, e.g. 'ERR_VOLUME_CLOSED'. */
  readonly code: string;
  /** The system errno when a system call failed (absent otherwise). */
  declare readonly errno?: number;

  constructor(code: string, message: string, options?: BlockmirrorErrorOptions) {
    super(message);
    this.code = code;
    if (options?.errno !== undefined) (this as { errno?: number }).errno = options.errno;
    if (options !== undefined && 'cause' in options) {
      Object.defineProperty(this, 'cause', { value: options.cause, enumerable: false, writable: true, configurable: true });
    }
  }
}

Object.defineProperty(BlockmirrorError.prototype, 'name', {
  value: 'BlockmirrorError',
  enumerable: false,
  writable: true,
  configurable: true,
});

/** True when `error` is a BlockmirrorError, and has `code` when one is given. */
export function isBlockmirrorError(error: unknown, code?: string): error is BlockmirrorError {
  return error instanceof BlockmirrorError && (code === undefined || error.code === code);
}
