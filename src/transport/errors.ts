// The link's operating errors: BlockmirrorErrors with ERR_LINK_* codes (listed in src/errors.ts).

import { BlockmirrorError, LinkErrorCode } from '../errors';

/** An operating error of a link, a frame or a handshake. */
export class LinkError extends BlockmirrorError {
  declare readonly code: LinkErrorCode;
  /** ERR_LINK_REMOTE: the code of the error the peer's request handler raised. */
  remoteCode?: string;
  constructor(code: LinkErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'LinkError';
  }
}

/** True when `error` is a LinkError (with `code` when given). */
export function isLinkError(error: unknown, code?: LinkErrorCode): error is LinkError {
  return error instanceof LinkError && (code === undefined || error.code === code);
}
