// Notes on the design
// -------------------
// The one description of the `blockmirror serve` config file, written with zod 4. Three things
// come from it and from nothing else:
//   - the checks and their messages: every field's type, range and pattern, the rules between
//     fields of one object (capacity is a multiple of blockSize, path only with backing "file",
//     deadPeerTimeoutMs above heartbeatIntervalMs, ...), and the normalization (defaults filled
//     in, sizes in bytes, "host:port" strings split, the single-controller form turned into the
//     controllers form);
//   - the TypeScript types of the normalized config (z.output of the schemas, declared below);
//   - the table of keys in docs/config.md (scripts/gen-config-docs.ts walks the schema and reads
//     the `.meta({ description })` of every key).
//
// Two kinds of rule, two places:
//   - Rules inside one object are refinements of that object's schema. They run with
//     `when: usable(...)`: only when the fields they read parsed cleanly, so that a bad field is
//     reported once and the rules that do not depend on it are still checked.
//   - Rules across elements (duplicate names, an export naming a volume, a peer naming its own
//     controller, two shared volumes on one region, two listeners on one address, totals) are in
//     crossFieldIssues(). It reads the raw document and parses each element on its own with the
//     element's schema, so it reports its problems even when other parts of the file are broken:
//     the user sees every problem at once, not one per run.
//
// Messages are sentences that start after "<field path>: ": the schemas give their own for
// ranges and patterns; configErrorMap() phrases the generic ones (wrong type, missing field,
// not one of the choices) the same way everywhere. Unknown fields are refused by strict objects
// whose message names the allowed fields. Nothing here touches the storage or the network.
//
// Layout: this module is the entry point and the home of the config's named types; the limits,
// defaults and name patterns are in config-schema-limits.ts, the size/address helpers, messages
// and schema builders in config-schema-builders.ts, the schemas themselves in
// config-schema-fields.ts and the rules across elements in config-schema-cross.ts. Everything
// those export that this module exported before is re-exported here, so importers keep one path.

import type { z } from 'zod';
import type {
  adminSchema, bitmapSchema, configDocumentSchema, consistencyGroupSchema, controllerSchema,
  exportSchema, limitsSchema, pairSchema, peerSchema, replicationSchema,
} from './config-schema-fields';

export { DEFAULT_MAX_FRAME_BYTES, MAX_MAX_FRAME_BYTES, MIN_MAX_FRAME_BYTES } from './config-schema-limits';
export {
  ADMIN_LOOPBACK_HOSTS, DEFAULT_BLOCK_SIZE, DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_DEAD_PEER_TIMEOUT_MS, DEFAULT_GRANULARITY_BYTES, DEFAULT_HANDSHAKE_TIMEOUT_MS,
  DEFAULT_HEARTBEAT_INTERVAL_MS, DEFAULT_HOST, DEFAULT_MAX_PAYLOAD_BYTES,
  DEFAULT_MAX_PENDING_CONNECTIONS, DEFAULT_MAX_QUEUED_BYTES, DEFAULT_PORT,
  DEFAULT_RECONNECT_INITIAL_DELAY_MS, DEFAULT_RECONNECT_JITTER, DEFAULT_RECONNECT_MAX_DELAY_MS,
  LEGACY_CONTROLLER_ID, MAX_BITMAPS_PER_VOLUME, MAX_BLOCK_SIZE, MAX_CONNECT_TIMEOUT_MS,
  MAX_CONTROLLERS, MAX_DEAD_PEER_TIMEOUT_MS, MAX_EXPORTS, MAX_GRANULARITY_BYTES,
  MAX_HANDSHAKE_TIMEOUT_MS, MAX_HEARTBEAT_INTERVAL_MS, MAX_LISTENERS, MAX_MAX_PAYLOAD_BYTES,
  MAX_MAX_PENDING_CONNECTIONS, MAX_MAX_QUEUED_BYTES, MAX_NBD_STRING_BYTES, MAX_PEERS_PER_CONTROLLER,
  MAX_RECONNECT_DELAY_MS, MAX_SOCKET_PATH_BYTES, MAX_VOLUMES, MAX_VOLUME_CAPACITY_BYTES,
  MIN_BLOCK_SIZE, MIN_CONNECT_TIMEOUT_MS, MIN_GRANULARITY_BYTES, MIN_HANDSHAKE_TIMEOUT_MS,
  MIN_HEARTBEAT_INTERVAL_MS, MIN_MAX_PAYLOAD_BYTES, defaultAdminSocketPath,
} from './config-schema-limits';
export type { ConfigKeyMeta } from './config-schema-builders';
export { configErrorMap, formatAddress, formatSize, parseSize } from './config-schema-builders';
export type {
  DiskConfig, ListenConfig, RaidGroupConfig, WorkDiskConfig, WorkVolumeConfig,
} from './config-schema-fields';
export {
  adminSchema, bitmapNameSchema, bitmapSchema, configDocumentSchema, consistencyGroupSchema,
  controllerIdSchema, controllerSchema, diskSchema, exportNameSchema, exportSchema, limitsSchema,
  listenEntrySchema, pairSchema, peerSchema, raidGroupSchema, replicationListenSchema,
  replicationSchema, sharedNameSchema, volumeNameSchema, volumeSchema, workDiskSchema,
  workVolumeSchema,
} from './config-schema-fields';
export type { ConfigIssue } from './config-schema-cross';
export { crossFieldIssues, formatIssuePath } from './config-schema-cross';

// The types of the normalized config are the schemas' outputs. They are declared as interfaces
// that extend those outputs only so that editors and compiler messages show their names. What
// each field means, and its default, is in the `.meta()` of its key (config-schema-fields.ts)
// and in the generated table of docs/config.md. test/unit/50.config.test.ts pins the shape other
// code is written against, so a change to it is a deliberate one.

/** The normalized config: every default filled in, every size in bytes. */
export interface BlockmirrorConfig extends z.output<typeof configDocumentSchema> {}
/** One controller: its volumes, exports, replication links and peers. */
export interface ControllerConfig extends z.output<typeof controllerSchema> {}
/** A volume; `sharedName` is filled in (the default `<controller id>.<name>`, or `<name>` in the single-controller form). */
export interface VolumeConfig extends ControllerVolumeOutput {}
type ControllerVolumeOutput = z.output<typeof controllerSchema>['volumes'][number];
export interface BitmapConfig extends z.output<typeof bitmapSchema> {}
export interface ExportConfig extends z.output<typeof exportSchema> {}
export interface ReplicationConfig extends z.output<typeof replicationSchema> {}
export interface PeerConfig extends z.output<typeof peerSchema> {}
export interface PairConfig extends z.output<typeof pairSchema> {}
/** A consistency group (docs/cgroups.md). */
export interface ConsistencyGroupConfig extends z.output<typeof consistencyGroupSchema> {}
export interface AdminConfig extends z.output<typeof adminSchema> {}
export interface LimitsConfig extends z.output<typeof limitsSchema> {}
/** Backing store of a volume's region. */
export type VolumeBacking = VolumeConfig['backing'];
/** What serve does when a shared or file volume already exists. */
export type VolumeExistingPolicy = VolumeConfig['existing'];
