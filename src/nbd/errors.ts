// The NBD area's operating error codes. They are TypeScript-only (the native core never speaks
// NBD), so they live here rather than in the native/TS shared list of src/errors.ts, and every
// error is an instance of the one project error class, BlockmirrorError, with a stable `.code`.

import { BlockmirrorError } from '../errors';

export const NBD_ERROR_CODES = [
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
] as const;

export type NbdErrorCode = (typeof NBD_ERROR_CODES)[number];

/** A BlockmirrorError with an NBD code. */
export function nbdError(code: NbdErrorCode, message: string, cause?: unknown): BlockmirrorError {
  return cause === undefined ? new BlockmirrorError(code, message) : new BlockmirrorError(code, message, { cause });
}

/** True when `error` is a BlockmirrorError with one of the NBD codes. */
export function isNbdError(error: unknown): error is BlockmirrorError & { code: NbdErrorCode } {
  return error instanceof BlockmirrorError && (NBD_ERROR_CODES as readonly string[]).includes(error.code);
}
