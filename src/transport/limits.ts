// The link's limits and timing defaults, in one dependency-free module: the transport applies
// them, and the configuration schema (which must load without the native addon) offers them as
// the defaults of controllers[].replication.

/** Largest frame (header + payload) by default: a 32 MiB payload plus room. */
export const DEFAULT_MAX_FRAME_BYTES = 32 * 1024 * 1024 + 64 * 1024;
export const MIN_MAX_FRAME_BYTES = 64 * 1024;
export const MAX_MAX_FRAME_BYTES = 1024 * 1024 * 1024;

/** The defaults of every LinkTuning option. */
export const LINK_DEFAULTS = Object.freeze({
  heartbeatIntervalMs: 1000,
  deadPeerTimeoutMs: 5000,
  handshakeTimeoutMs: 5000,
  connectTimeoutMs: 5000,
  reconnectInitialDelayMs: 100,
  reconnectMaxDelayMs: 5000,
  reconnectJitter: 0.2,
  maxFrameBytes: DEFAULT_MAX_FRAME_BYTES,
  maxQueuedBytes: 64 * 1024 * 1024,
  requestTimeoutMs: 10_000,
  maxPendingConnections: 16,
});
