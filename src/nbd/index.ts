// The NBD area's public surface (src/index.ts re-exports from here).
export { NbdServer, errnoForVolumeError, matchMetaContexts } from './server';
export type {
  NbdAddress,
  NbdConnectionEvent,
  NbdDisconnectEvent,
  NbdExportOptions,
  NbdListenOptions,
  NbdLogger,
  NbdProtocolErrorEvent,
  NbdRequestCounts,
  NbdServerOptions,
  NbdServerStats,
  NbdExportStats,
  NbdVolume,
} from './server';
export { NBD_ERROR_CODES, isNbdError, nbdError } from './errors';
export type { NbdErrorCode } from './errors';
