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
// TypeScript keep their own list beside their code (src/nbd/errors.ts) or add it here.

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
  'ERR_VOLUME_READ_ONLY',
  'ERR_BITMAP_CLOSED',
  'ERR_BITMAP_CHECKSUM',
  'ERR_BITMAP_GEOMETRY',
  'ERR_BITMAP_EXISTS',
  'ERR_BITMAP_NOT_FOUND',
  'ERR_BITMAP_LIMIT',
  'ERR_BITMAP_FORMAT',
  'ERR_JOURNAL_CLOSED',
  'ERR_JOURNAL_FULL',
  'ERR_JOURNAL_CHECKSUM',
  'ERR_JOURNAL_RELEASED',
  'ERR_JOURNAL_NOT_YET',
  'ERR_JOURNAL_RECORD_TOO_LARGE',
  'ERR_JOURNAL_BAD_HEADER',
] as const);

export type NativeErrorCode = (typeof NATIVE_ERROR_CODES)[number];

/**
 * Every code of the shared list: the native ones plus the TypeScript-only areas registered here.
 * (The NBD area keeps its list in src/nbd/errors.ts, NBD_ERROR_CODES.)
 */
export const ERROR_CODES: readonly string[] = Object.freeze([...NATIVE_ERROR_CODES]);

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
