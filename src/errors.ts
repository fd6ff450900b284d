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
export type ConfigErrorCode = (typeof CONFIG_ERROR_CODES)[number];
export type CliErrorCode = (typeof CLI_ERROR_CODES)[number];
export type ErrorCode = NativeErrorCode | NbdErrorCode | ConfigErrorCode | CliErrorCode;

/**
 * Every operating error code of blockmirror, one list per area: the native ones (which must equal
 * the core's list) and the TypeScript-only areas. A unit test checks that every ERR_* literal in
 * src/ is listed here.
 */
export const ERROR_CODES: readonly ErrorCode[] = Object.freeze([
  ...NATIVE_ERROR_CODES,
  ...NBD_ERROR_CODES,
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
