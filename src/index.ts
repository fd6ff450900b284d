// The public API of blockmirror. Re-exports only.

export {
  BlockmirrorError,
  CLI_ERROR_CODES,
  CONFIG_ERROR_CODES,
  ERROR_CODES,
  NATIVE_ERROR_CODES,
  isBlockmirrorError,
} from './errors';
export type { BlockmirrorErrorOptions, CliErrorCode, ConfigErrorCode, ErrorCode, NativeErrorCode, NbdErrorCode } from './errors';
export { Region } from './storage/region';
export type { RegionCreateOptions, RegionExtent, RegionKind, RegionOpenOptions } from './storage/region';
export { Volume } from './storage/volume';
export type {
  VolumeBacking,
  VolumeBitmapInfo,
  VolumeBitmapOptions,
  VolumeCreateOptions,
  VolumeStats,
  WriteOp,
  WriteZeroesOptions,
} from './storage/volume';
export { Bitmap } from './storage/bitmap';
export type { BitmapCreateOptions } from './storage/bitmap';
export { Journal } from './storage/journal';
export type {
  JournalAppendRecord,
  JournalCreateOptions,
  JournalKind,
  JournalReadOptions,
  JournalRecord,
  JournalRecordKind,
  JournalStats,
} from './storage/journal';
export { crc32c } from './storage/crc32c';
export { NbdServer, NBD_ERROR_CODES, isNbdError } from './nbd/index';
export type {
  NbdAddress,
  NbdConnectionEvent,
  NbdDisconnectEvent,
  NbdExportOptions,
  NbdListenOptions,
  NbdLogger,
  NbdProtocolErrorEvent,
  NbdServerOptions,
  NbdServerStats,
  NbdVolume,
} from './nbd/index';
