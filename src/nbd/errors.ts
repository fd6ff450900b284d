// Helpers for the NBD area's operating errors. The codes themselves are listed with every other
// area's in src/errors.ts (NBD_ERROR_CODES); every error is an instance of the one project error
// class, BlockmirrorError, with a stable `.code`.

import { BlockmirrorError, NBD_ERROR_CODES, NbdErrorCode } from '../errors';

export { NBD_ERROR_CODES };
export type { NbdErrorCode };

/** A BlockmirrorError with an NBD code. */
export function nbdError(code: NbdErrorCode, message: string, cause?: unknown): BlockmirrorError {
  return cause === undefined ? new BlockmirrorError(code, message) : new BlockmirrorError(code, message, { cause });
}

/** True when `error` is a BlockmirrorError with one of the NBD codes. */
export function isNbdError(error: unknown): error is BlockmirrorError & { code: NbdErrorCode } {
  return error instanceof BlockmirrorError && (NBD_ERROR_CODES as readonly string[]).includes(error.code);
}
