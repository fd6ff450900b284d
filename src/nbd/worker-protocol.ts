// Notes on the design
// -------------------
// The messages between the NBD server (main thread, worker-pool.ts) and its worker threads
// (worker.ts), and the layout of the counters they share. Everything here is structured-clone
// safe: numbers, strings, plain objects, Uint8Arrays and SharedArrayBuffers; volume ids travel as
// decimal strings (a bigint would clone too, but a string prints the same on both sides).
//
// Counters: each worker owns one SharedArrayBuffer of SERVER_COUNTERS (made by the pool, passed in
// workerData) and one of EXPORT_COUNTERS per export it serves (made by the worker, posted once
// with 'export-counters'). Only that worker writes them; the main thread sums them in stats() and
// exportStats(). They are plain Float64Array slots (one writer, aligned 8-byte stores): a reader
// may see a count one request behind, never a torn value.
//
// Eviction is synchronous: the main thread posts 'evict' with a sequence number and blocks in
// Atomics.wait on the worker's control word until the worker has destroyed the sockets of that
// export and stored the sequence there (CONTROL_EVICTED), so that when NbdServer.setExportVolume
// returns no worker writes to that export any more.

import type { NegotiatedState, ResolvedConfig } from './types';
import * as P from './protocol';

/** Server-wide counters a worker keeps (Float64Array slots). */
export const SERVER_COUNTERS = {
  bytesRead: 0,
  bytesWritten: 1,
  errors: 2,
  protocolErrors: 3,
  storeReceivedWrites: 4,
  /** NBD_CMD_COUNT + 1 request counts (unknown last) from here on. */
  requests: 5,
  length: 5 + P.NBD_CMD_COUNT + 1,
} as const;

/** Per-export counters a worker keeps: request counts (unknown last), then bytes. */
export const EXPORT_COUNTERS = {
  requests: 0,
  bytesRead: P.NBD_CMD_COUNT + 1,
  bytesWritten: P.NBD_CMD_COUNT + 2,
  length: P.NBD_CMD_COUNT + 3,
} as const;

/**
 * A worker's Volume object counters (VOLUME_STATS_KEYS order, storage/volume.ts), copied from its
 * stats() every VOLUME_COUNTERS_REFRESH_MS and before the worker closes it; the main thread's
 * volume adds them to its own stats().
 */
export const VOLUME_COUNTERS_REFRESH_MS = 100;

/** Int32Array slots of a worker's control buffer. */
export const CONTROL_EVICTED = 0;
export const CONTROL_LENGTH = 1;

/** The transmission options a worker's connections need (ResolvedConfig without the logger and the pool's size). */
export type WorkerConfig = Omit<ResolvedConfig, 'logger' | 'workers'>;

export interface WorkerData {
  kind: 'blockmirror-nbd-worker';
  index: number;
  config: WorkerConfig;
  counters: SharedArrayBuffer;
  control: SharedArrayBuffer;
}

/** Where a worker finds a volume: /proc/self/fd/<fd> (a dup the pool holds), checked by id. */
export interface VolumeSource {
  key: string;
  fd: number;
  id: string;
  capacityBytes: number;
}

/** The export as the main thread resolved it (types.ts ExportEntry without volume and counters). */
export interface ExportDescription {
  name: string;
  description: string;
  readOnly: boolean;
  minimumBlockBytes: number;
  preferredBlockBytes: number;
  maximumBlockBytes: number;
}

export type ToWorker =
  | {
      type: 'adopt';
      connectionId: number;
      fd: number;
      transport: 'tcp' | 'unix';
      export: ExportDescription;
      volume: VolumeSource;
      state: NegotiatedState;
    }
  | { type: 'evict'; exportName: string; sequence: number }
  | { type: 'close'; graceful: boolean };

export type LogLevel = 'info' | 'warn' | 'error';

export type FromWorker =
  | { type: 'adopted'; connectionId: number }
  | { type: 'refused'; connectionId: number; error: string }
  | { type: 'closed'; connectionId: number; reason: string; error?: { code?: string; message: string } }
  | { type: 'protocol-error'; connectionId: number; code: string; message: string }
  | { type: 'export-counters'; exportName: string; counters: SharedArrayBuffer }
  | { type: 'volume-counters'; volumeKey: string; counters: SharedArrayBuffer }
  | { type: 'log'; level: LogLevel; object: Record<string, unknown>; message: string }
  | { type: 'drained' };
