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
export { Snapshot, SnapshotStore } from './storage/snapshot';
export type { SnapshotCloneOptions, SnapshotState, SnapshotStatus, SnapshotStoreCreateOptions, SnapshotStoreStats } from './storage/snapshot';
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
export { Controller, CONTROLLER_TRANSITIONS } from './controller/controller';
export type {
  ControllerEvent,
  ControllerExportSpec,
  ControllerOptions,
  ControllerPeerSpec,
  ControllerReplicationOptions,
  ControllerState,
  ControllerStatus,
} from './controller/controller';
export { ControllerHost } from './controller/host';
export type { ControllerHostOptions, HostStatus } from './controller/host';
export type { ControllerVolumeSpec } from './controller/volumes';
export { loadSecret } from './controller/secrets';
export { Link, LINK_TRANSITIONS, backoffDelayMs } from './transport/link';
export type {
  LinkMessage,
  LinkOptions,
  LinkReason,
  LinkState,
  LinkStateEvent,
  LinkStatus,
  LinkTuning,
  RequestHandler,
  SendOptions,
  UnconfirmedMessage,
  UnconfirmedReport,
} from './transport/link';
export { LinkError, isLinkError } from './transport/errors';
export type { DirectionFaults, FaultSettings, LinkFaults } from './transport/faults';
export { MessageType } from './transport/message-types';
export { TcpNetwork, tcpNetwork } from './transport/tcp';
export type { Network, NetworkAddress, Wire } from './transport/wire';
export { realClock } from './runtime/clock';
export type { Clock, TimerHandle } from './runtime/clock';
export { SeededRandom, realRandom } from './runtime/random';
export type { Random } from './runtime/random';
export { SimClock, SimNetwork } from './sim/index';
export { AdminServer } from './admin/server';
export type { AdminServerOptions } from './admin/server';
export { AdminClient } from './admin/client';
export type { AdminTarget, ArrayEvent } from './admin/target';
export { ADMIN_ERROR_CODES, CONTROLLER_ERROR_CODES, LINK_ERROR_CODES, PAIR_ERROR_CODES } from './errors';
export { Mesh } from './sim/mesh';
export { runMeshScenario } from './sim/mesh-scenario';
export { PairManager } from './replication/pairs';
export type { PairSpec } from './replication/pairs';
export { PrimaryPair } from './replication/primary-pair';
export { SecondaryPair } from './replication/secondary-pair';
export { ReplicatedVolume } from './replication/replicated-volume';
export { PAIR_TRANSITIONS, PairError } from './replication/pair-state';
export type { Consistency, PairRole, PairState, SuspendReason } from './replication/pair-state';
