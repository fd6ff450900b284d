// Notes on the design
// -------------------
// The configuration of `blockmirror serve`: which volumes to open, which exports to offer over
// NBD, where to listen, and the limits. It is read from JSON or YAML, validated by hand (the
// format is small, and a hand-written validator gives the exact messages we want), and turned
// into a normalized form in which every default is filled in and every size is a number of bytes.
//
// Contract:
//   - validateConfig(raw) returns the normalized config or throws ConfigError, whose `issues`
//     list every problem found (not only the first), each as "<field path>: <problem>", e.g.
//     "volumes[1].capacity: must be a multiple of blockSize 4096, got 1000".
//   - Unknown fields are errors: a misspelt option must not be silently ignored.
//   - Sizes are non-negative safe integers or strings "<integer>[B|KiB|MiB|GiB|TiB]"; decimal
//     units (KB, MB) are refused because they are ambiguous.
//   - The normalized config is plain data (JSON-serializable) so `config check` can print it and
//     the result validates again to itself (idempotent).
// Nothing here touches the storage or the network; the CLI exits with code 2 on ConfigError.

import * as fs from 'node:fs';
import * as path from 'node:path';
import * as YAML from 'yaml';
import { BlockmirrorError } from '../errors';

/** Backing store of a volume's region. */
export type VolumeBacking = 'memory' | 'shared' | 'file';

/** What serve does when a shared or file volume already exists. */
export type VolumeExistingPolicy = 'open' | 'error';

export interface BitmapConfig {
  name: string;
  /** Bytes per bitmap bit. @default 65536 */
  granularityBytes: number;
  /** Whether writes mark the bitmap. @default true */
  recording: boolean;
}

export interface VolumeConfig {
  name: string;
  capacityBytes: number;
  /** @default 4096 */
  blockSize: number;
  /** @default 'memory' */
  backing: VolumeBacking;
  /** Required for backing 'file', refused otherwise. */
  path?: string;
  /** Refuse requests not aligned to blockSize. @default false */
  strict: boolean;
  /** Open an existing shared/file volume, or fail. @default 'open' */
  existing: VolumeExistingPolicy;
  bitmaps: BitmapConfig[];
}

export interface ExportConfig {
  name: string;
  volume: string;
  /** @default false */
  readOnly: boolean;
  /** @default '' */
  description: string;
}

export type ListenConfig = { host: string; port: number } | { path: string };

export interface LimitsConfig {
  /** Largest NBD read/write payload. @default 33554432 (32 MiB) */
  maxPayloadBytes: number;
}

export interface BlockmirrorConfig {
  volumes: VolumeConfig[];
  exports: ExportConfig[];
  listen: ListenConfig[];
  limits: LimitsConfig;
}

export const DEFAULT_HOST = '127.0.0.1';
export const DEFAULT_PORT = 10809;
export const DEFAULT_BLOCK_SIZE = 4096;
export const DEFAULT_GRANULARITY_BYTES = 64 * 1024;
export const DEFAULT_MAX_PAYLOAD_BYTES = 32 * 1024 * 1024;
export const MIN_BLOCK_SIZE = 512;
export const MAX_BLOCK_SIZE = 65536;
export const MIN_GRANULARITY_BYTES = 4096;
export const MAX_GRANULARITY_BYTES = 2 ** 30;
/** The NBD spec bounds export names (and descriptions) to 4096 bytes. */
export const MAX_NBD_STRING_BYTES = 4096;
/** Bitmap slots per volume in the native superblock. */
export const MAX_BITMAPS_PER_VOLUME = 16;
/** Names double as shared-memory object names, so they follow that alphabet. */
// 184: a shared volume's region is named "blockmirror.vol.<name>", and region names stop at 200.
const VOLUME_NAME_PATTERN = /^[A-Za-z0-9._-]{1,184}$/;
/** The largest volume; the same limit as Volume.MAX_CAPACITY_BYTES (a unit test checks it). */
export const MAX_VOLUME_CAPACITY_BYTES = 2 ** 45;
const BITMAP_NAME_PATTERN = /^[A-Za-z0-9._:-]{1,47}$/;
/** Limits on the config itself, so a runaway file cannot make serve allocate without bound. */
export const MAX_VOLUMES = 256;
export const MAX_EXPORTS = 1024;
export const MAX_LISTENERS = 16;
/** The smallest maxPayloadBytes a client can live with (one largest block). */
export const MIN_MAX_PAYLOAD_BYTES = 64 * 1024;
export const MAX_MAX_PAYLOAD_BYTES = 1024 * 1024 * 1024;

/** A config that failed validation; `issues` holds one "<path>: <problem>" line per problem. */
/** An invalid configuration: a BlockmirrorError with code ERR_CONFIG_INVALID and one issue per problem. */
export class ConfigError extends BlockmirrorError {
  readonly issues: string[];
  constructor(issues: string[], source?: string) {
    const head = source === undefined ? 'invalid config' : `invalid config ${source}`;
    super('ERR_CONFIG_INVALID', `${head}:\n  ${issues.join('\n  ')}`);
    this.name = 'ConfigError';
    this.issues = issues;
  }
}

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  tib: 1024 ** 4,
};

/**
 * Parses a size: a non-negative safe integer, or a string such as "64KiB", "1 GiB", "4096".
 * Throws RangeError/TypeError with a message that says what was wrong (no field path; callers
 * add it).
 */
export function parseSize(value: unknown): number {
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new RangeError(`must be a non-negative integer number of bytes, got ${value}`);
    }
    return value;
  }
  if (typeof value !== 'string') {
    throw new TypeError(`must be a number of bytes or a string like "64KiB", got ${describe(value)}`);
  }
  const match = /^\s*(\d+)\s*([A-Za-z]*)\s*$/.exec(value);
  if (match === null) {
    throw new RangeError(`must be an integer with an optional unit B/KiB/MiB/GiB/TiB, got "${value}"`);
  }
  const digits = match[1] as string;
  const unit = (match[2] as string).toLowerCase();
  const multiplier = SIZE_UNITS[unit];
  if (multiplier === undefined) {
    const hint = /^[kmgt]b?$/.test(unit) ? ' (use binary units KiB/MiB/GiB/TiB)' : '';
    throw new RangeError(`unknown size unit "${match[2]}" in "${value}"${hint}`);
  }
  const bytes = Number(digits) * multiplier;
  if (!Number.isSafeInteger(bytes)) {
    throw new RangeError(`is too large: "${value}"`);
  }
  return bytes;
}

/** Formats bytes with a binary unit, exact when possible ("1GiB", "1536KiB", "1000"). */
export function formatSize(bytes: number): string {
  for (const [unit, multiplier] of [
    ['TiB', 1024 ** 4],
    ['GiB', 1024 ** 3],
    ['MiB', 1024 ** 2],
    ['KiB', 1024],
  ] as const) {
    if (bytes >= multiplier && bytes % multiplier === 0) return `${bytes / multiplier}${unit}`;
  }
  return String(bytes);
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'object') return 'an object';
  return `${typeof value} ${String(value)}`;
}

function isPowerOfTwo(value: number): boolean {
  return Number.isSafeInteger(value) && value > 0 && (value & (value - 1)) === 0 && value <= 2 ** 30;
}

/** Collects issues while walking the raw config. */
class Checker {
  readonly issues: string[] = [];

  add(fieldPath: string, problem: string): void {
    this.issues.push(`${fieldPath}: ${problem}`);
  }

  object(value: unknown, fieldPath: string, allowed: readonly string[]): Record<string, unknown> | undefined {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      this.add(fieldPath, `must be an object, got ${describe(value)}`);
      return undefined;
    }
    const record = value as Record<string, unknown>;
    for (const key of Object.keys(record)) {
      if (!allowed.includes(key)) {
        this.add(joinPath(fieldPath, key), `unknown field (allowed: ${allowed.join(', ')})`);
      }
    }
    return record;
  }

  array(value: unknown, fieldPath: string, maxLength: number): unknown[] | undefined {
    if (!Array.isArray(value)) {
      this.add(fieldPath, `must be an array, got ${describe(value)}`);
      return undefined;
    }
    if (value.length > maxLength) {
      this.add(fieldPath, `must have at most ${maxLength} entries, got ${value.length}`);
      return undefined;
    }
    return value;
  }

  string(value: unknown, fieldPath: string, pattern?: RegExp, patternText?: string): string | undefined {
    if (typeof value !== 'string') {
      this.add(fieldPath, `must be a string, got ${describe(value)}`);
      return undefined;
    }
    if (pattern !== undefined && !pattern.test(value)) {
      this.add(fieldPath, `must match ${patternText ?? String(pattern)}, got ${JSON.stringify(value)}`);
      return undefined;
    }
    return value;
  }

  boolean(value: unknown, fieldPath: string): boolean | undefined {
    if (typeof value !== 'boolean') {
      this.add(fieldPath, `must be true or false, got ${describe(value)}`);
      return undefined;
    }
    return value;
  }

  size(value: unknown, fieldPath: string): number | undefined {
    try {
      return parseSize(value);
    } catch (error) {
      this.add(fieldPath, (error as Error).message);
      return undefined;
    }
  }

  oneOf<T extends string>(value: unknown, fieldPath: string, choices: readonly T[]): T | undefined {
    if (typeof value !== 'string' || !(choices as readonly string[]).includes(value)) {
      this.add(fieldPath, `must be one of ${choices.map((c) => `"${c}"`).join(', ')}, got ${describe(value)}`);
      return undefined;
    }
    return value as T;
  }
}

function joinPath(base: string, key: string): string {
  return base === '' ? key : `${base}.${key}`;
}

const TOP_FIELDS = ['volumes', 'exports', 'listen', 'limits'] as const;
const VOLUME_FIELDS = ['name', 'capacity', 'blockSize', 'backing', 'path', 'strict', 'existing', 'bitmaps'] as const;
const BITMAP_FIELDS = ['name', 'granularity', 'recording'] as const;
const EXPORT_FIELDS = ['name', 'volume', 'readOnly', 'description'] as const;
const TCP_FIELDS = ['host', 'port'] as const;
const LIMIT_FIELDS = ['maxPayloadBytes'] as const;

function checkVolume(checker: Checker, raw: unknown, at: string): VolumeConfig | undefined {
  const record = checker.object(raw, at, VOLUME_FIELDS);
  if (record === undefined) return undefined;
  const before = checker.issues.length;

  const name = record.name === undefined
    ? (checker.add(`${at}.name`, 'is required'), undefined)
    : checker.string(record.name, `${at}.name`, VOLUME_NAME_PATTERN, '[A-Za-z0-9._-]{1,184}');

  let blockSize = DEFAULT_BLOCK_SIZE;
  if (record.blockSize !== undefined) {
    const parsed = checker.size(record.blockSize, `${at}.blockSize`);
    if (parsed !== undefined) {
      if (!isPowerOfTwo(parsed) || parsed < MIN_BLOCK_SIZE || parsed > MAX_BLOCK_SIZE) {
        checker.add(`${at}.blockSize`, `must be a power of two from ${MIN_BLOCK_SIZE} to ${MAX_BLOCK_SIZE}, got ${parsed}`);
      } else {
        blockSize = parsed;
      }
    }
  }

  let capacityBytes: number | undefined;
  if (record.capacity === undefined) {
    checker.add(`${at}.capacity`, 'is required');
  } else {
    capacityBytes = checker.size(record.capacity, `${at}.capacity`);
    if (capacityBytes !== undefined) {
      if (capacityBytes === 0) {
        checker.add(`${at}.capacity`, 'must be greater than 0');
        capacityBytes = undefined;
      } else if (capacityBytes > MAX_VOLUME_CAPACITY_BYTES) {
        checker.add(`${at}.capacity`, `must be at most ${formatSize(MAX_VOLUME_CAPACITY_BYTES)}, got ${capacityBytes}`);
        capacityBytes = undefined;
      } else if (capacityBytes % blockSize !== 0) {
        checker.add(`${at}.capacity`, `must be a multiple of blockSize ${blockSize}, got ${capacityBytes}`);
        capacityBytes = undefined;
      }
    }
  }

  const backing: VolumeBacking | undefined = record.backing === undefined
    ? 'memory'
    : checker.oneOf(record.backing, `${at}.backing`, ['memory', 'shared', 'file'] as const);

  let volumePath: string | undefined;
  if (record.path !== undefined) {
    volumePath = checker.string(record.path, `${at}.path`);
    if (volumePath !== undefined && volumePath.length === 0) {
      checker.add(`${at}.path`, 'must not be empty');
    }
    if (backing !== undefined && backing !== 'file') {
      checker.add(`${at}.path`, `is only allowed with backing "file", got backing "${backing}"`);
    }
  } else if (backing === 'file') {
    checker.add(`${at}.path`, 'is required with backing "file"');
  }

  const strict = record.strict === undefined ? false : checker.boolean(record.strict, `${at}.strict`);
  const existing: VolumeExistingPolicy | undefined = record.existing === undefined
    ? 'open'
    : checker.oneOf(record.existing, `${at}.existing`, ['open', 'error'] as const);

  const bitmaps: BitmapConfig[] = [];
  if (record.bitmaps !== undefined) {
    const list = checker.array(record.bitmaps, `${at}.bitmaps`, MAX_BITMAPS_PER_VOLUME);
    const seen = new Set<string>();
    list?.forEach((rawBitmap, index) => {
      const bitmapAt = `${at}.bitmaps[${index}]`;
      const bitmapRecord = checker.object(rawBitmap, bitmapAt, BITMAP_FIELDS);
      if (bitmapRecord === undefined) return;
      const bitmapName = bitmapRecord.name === undefined
        ? (checker.add(`${bitmapAt}.name`, 'is required'), undefined)
        : checker.string(bitmapRecord.name, `${bitmapAt}.name`, BITMAP_NAME_PATTERN, '[A-Za-z0-9._:-]{1,47}');
      if (bitmapName !== undefined) {
        if (seen.has(bitmapName)) checker.add(`${bitmapAt}.name`, `duplicate bitmap name "${bitmapName}"`);
        seen.add(bitmapName);
      }
      let granularityBytes: number | undefined = DEFAULT_GRANULARITY_BYTES;
      if (bitmapRecord.granularity !== undefined) {
        granularityBytes = checker.size(bitmapRecord.granularity, `${bitmapAt}.granularity`);
        if (granularityBytes !== undefined &&
            (!isPowerOfTwo(granularityBytes) || granularityBytes < MIN_GRANULARITY_BYTES ||
             granularityBytes > MAX_GRANULARITY_BYTES)) {
          checker.add(`${bitmapAt}.granularity`,
            `must be a power of two from ${formatSize(MIN_GRANULARITY_BYTES)} to ${formatSize(MAX_GRANULARITY_BYTES)}, got ${granularityBytes}`);
          granularityBytes = undefined;
        }
      }
      const recording = bitmapRecord.recording === undefined
        ? true
        : checker.boolean(bitmapRecord.recording, `${bitmapAt}.recording`);
      if (bitmapName !== undefined && granularityBytes !== undefined && recording !== undefined) {
        bitmaps.push({ name: bitmapName, granularityBytes, recording });
      }
    });
  }

  if (checker.issues.length !== before || name === undefined || capacityBytes === undefined ||
      backing === undefined || strict === undefined || existing === undefined) {
    return undefined;
  }
  const volume: VolumeConfig = { name, capacityBytes, blockSize, backing, strict, existing, bitmaps };
  if (volumePath !== undefined) volume.path = volumePath;
  return volume;
}

function checkListen(checker: Checker, raw: unknown, at: string): ListenConfig | undefined {
  if (raw !== null && typeof raw === 'object' && !Array.isArray(raw) && 'path' in raw) {
    const record = checker.object(raw, at, ['path']);
    if (record === undefined) return undefined;
    const socketPath = checker.string(record.path, `${at}.path`);
    if (socketPath === undefined) return undefined;
    // sockaddr_un.sun_path is 108 bytes including the terminating NUL.
    if (socketPath.length === 0 || Buffer.byteLength(socketPath) > 107) {
      checker.add(`${at}.path`, `must be 1 to 107 bytes long, got ${Buffer.byteLength(socketPath)}`);
      return undefined;
    }
    return { path: socketPath };
  }
  const record = checker.object(raw, at, [...TCP_FIELDS, 'path']);
  if (record === undefined) return undefined;
  const host = record.host === undefined ? DEFAULT_HOST : checker.string(record.host, `${at}.host`);
  if (host !== undefined && host.length === 0) {
    checker.add(`${at}.host`, 'must not be empty');
    return undefined;
  }
  let port: number | undefined = DEFAULT_PORT;
  if (record.port !== undefined) {
    if (typeof record.port !== 'number' || !Number.isInteger(record.port) || record.port < 0 || record.port > 65535) {
      checker.add(`${at}.port`, `must be an integer from 0 to 65535 (0: any free port), got ${describe(record.port)}`);
      port = undefined;
    } else {
      port = record.port;
    }
  }
  if (host === undefined || port === undefined) return undefined;
  return { host, port };
}

/**
 * Validates a parsed config document and returns it normalized (defaults filled in, sizes in
 * bytes). Throws ConfigError listing every problem.
 */
export function validateConfig(raw: unknown, source?: string): BlockmirrorConfig {
  const checker = new Checker();
  const top = checker.object(raw ?? {}, '', TOP_FIELDS);
  if (top === undefined) {
    // A path of '' reads badly; name the document instead.
    throw new ConfigError(checker.issues.map((issue) => issue.replace(/^: /, '(document): ')), source);
  }

  const volumes: VolumeConfig[] = [];
  const volumeNames = new Set<string>();
  // Names of every volume entry, valid or not, so that an export of a volume whose entry has an
  // error reports that error once instead of also "no volume named".
  const declaredVolumeNames = new Set<string>();
  const filePaths = new Map<string, string>();
  let rawVolumes: unknown[] | undefined;
  if (top.volumes === undefined) {
    checker.add('volumes', 'is required');
  } else {
    rawVolumes = checker.array(top.volumes, 'volumes', MAX_VOLUMES);
    if (rawVolumes !== undefined && rawVolumes.length === 0) checker.add('volumes', 'must have at least one volume');
  }
  rawVolumes?.forEach((rawVolume, index) => {
    const rawName = (rawVolume as { name?: unknown } | null)?.name;
    if (typeof rawName === 'string') declaredVolumeNames.add(rawName);
    const volume = checkVolume(checker, rawVolume, `volumes[${index}]`);
    if (volume === undefined) return;
    if (volumeNames.has(volume.name)) {
      checker.add(`volumes[${index}].name`, `duplicate volume name "${volume.name}"`);
      return;
    }
    // Two file volumes on one path would share a region.
    if (volume.path !== undefined) {
      const resolved = path.resolve(volume.path);
      const other = filePaths.get(resolved);
      if (other !== undefined) checker.add(`volumes[${index}].path`, `same file as volume "${other}"`);
      filePaths.set(resolved, volume.name);
    }
    volumeNames.add(volume.name);
    volumes.push(volume);
  });

  const exportsList: ExportConfig[] = [];
  const exportNames = new Set<string>();
  // Without an exports list every volume is exported under its own name.
  const rawExports = top.exports === undefined
    ? [...declaredVolumeNames].map((name) => ({ name }))
    : checker.array(top.exports, 'exports', MAX_EXPORTS);
  if (top.exports !== undefined && rawExports !== undefined && rawExports.length === 0) {
    checker.add('exports', 'must have at least one export');
  }
  rawExports?.forEach((rawExport, index) => {
    const at = `exports[${index}]`;
    const record = checker.object(rawExport, at, EXPORT_FIELDS);
    if (record === undefined) return;
    const before = checker.issues.length;
    const name = record.name === undefined
      ? (checker.add(`${at}.name`, 'is required'), undefined)
      : checker.string(record.name, `${at}.name`);
    if (name !== undefined) {
      if (name.length === 0) {
        // The empty name is what clients ask for when they name no export (the server maps it
        // to the first export); it cannot also be a configured name.
        checker.add(`${at}.name`, 'must not be empty');
      } else if (Buffer.byteLength(name) > MAX_NBD_STRING_BYTES) {
        checker.add(`${at}.name`, `must be at most ${MAX_NBD_STRING_BYTES} bytes (NBD limit)`);
      } else if (exportNames.has(name)) {
        checker.add(`${at}.name`, `duplicate export name ${JSON.stringify(name)}`);
      }
      exportNames.add(name);
    }
    const volumeRef = record.volume === undefined ? name : checker.string(record.volume, `${at}.volume`);
    if (volumeRef !== undefined && rawVolumes !== undefined && !declaredVolumeNames.has(volumeRef)) {
      const known = [...declaredVolumeNames].map((v) => `"${v}"`).join(', ') || 'none';
      checker.add(`${at}.volume`, `no volume named "${volumeRef}" (volumes: ${known})`);
    }
    const readOnly = record.readOnly === undefined ? false : checker.boolean(record.readOnly, `${at}.readOnly`);
    const description = record.description === undefined ? '' : checker.string(record.description, `${at}.description`);
    if (description !== undefined && Buffer.byteLength(description) > MAX_NBD_STRING_BYTES) {
      checker.add(`${at}.description`, `must be at most ${MAX_NBD_STRING_BYTES} bytes (NBD limit)`);
    }
    if (checker.issues.length === before && name !== undefined && volumeRef !== undefined &&
        readOnly !== undefined && description !== undefined) {
      exportsList.push({ name, volume: volumeRef, readOnly, description });
    }
  });

  let listen: ListenConfig[] = [{ host: DEFAULT_HOST, port: DEFAULT_PORT }];
  if (top.listen !== undefined) {
    const rawListen = checker.array(top.listen, 'listen', MAX_LISTENERS);
    if (rawListen !== undefined) {
      if (rawListen.length === 0) checker.add('listen', 'must have at least one entry');
      listen = [];
      const seen = new Set<string>();
      rawListen.forEach((rawEntry, index) => {
        const entry = checkListen(checker, rawEntry, `listen[${index}]`);
        if (entry === undefined) return;
        const key = 'path' in entry ? `unix:${path.resolve(entry.path)}` : `tcp:${entry.host}:${entry.port}`;
        if (seen.has(key) && !('port' in entry && entry.port === 0)) {
          checker.add(`listen[${index}]`, 'duplicate listener');
        }
        seen.add(key);
        listen.push(entry);
      });
    }
  }

  let maxPayloadBytes = DEFAULT_MAX_PAYLOAD_BYTES;
  if (top.limits !== undefined) {
    const limits = checker.object(top.limits, 'limits', LIMIT_FIELDS);
    if (limits?.maxPayloadBytes !== undefined) {
      const parsed = checker.size(limits.maxPayloadBytes, 'limits.maxPayloadBytes');
      if (parsed !== undefined) {
        if (parsed < MIN_MAX_PAYLOAD_BYTES || parsed > MAX_MAX_PAYLOAD_BYTES) {
          checker.add('limits.maxPayloadBytes',
            `must be from ${formatSize(MIN_MAX_PAYLOAD_BYTES)} to ${formatSize(MAX_MAX_PAYLOAD_BYTES)}, got ${parsed}`);
        } else {
          maxPayloadBytes = parsed;
        }
      }
    }
  }

  if (checker.issues.length > 0) throw new ConfigError(checker.issues, source);
  return { volumes, exports: exportsList, listen, limits: { maxPayloadBytes } };
}

/** The built-in config: one thin 1 GiB memory volume "vol0", exported on 127.0.0.1:10809. */
export function defaultConfig(): BlockmirrorConfig {
  return {
    volumes: [{
      name: 'vol0',
      capacityBytes: 1024 ** 3,
      blockSize: DEFAULT_BLOCK_SIZE,
      backing: 'memory',
      strict: false,
      existing: 'open',
      bitmaps: [],
    }],
    exports: [{ name: 'vol0', volume: 'vol0', readOnly: false, description: 'blockmirror default volume' }],
    listen: [{ host: DEFAULT_HOST, port: DEFAULT_PORT }],
    limits: { maxPayloadBytes: DEFAULT_MAX_PAYLOAD_BYTES },
  };
}

/**
 * The config in the file format (sizes written with units where exact), as `config check` and
 * `config default` print it. validateConfig(toDocument(c)) deep-equals c.
 */
export function toDocument(config: BlockmirrorConfig): Record<string, unknown> {
  return {
    volumes: config.volumes.map((volume) => {
      const document: Record<string, unknown> = {
        name: volume.name,
        capacity: formatSize(volume.capacityBytes),
        blockSize: volume.blockSize,
        backing: volume.backing,
      };
      if (volume.path !== undefined) document.path = volume.path;
      document.strict = volume.strict;
      document.existing = volume.existing;
      document.bitmaps = volume.bitmaps.map((bitmap) => ({
        name: bitmap.name,
        granularity: formatSize(bitmap.granularityBytes),
        recording: bitmap.recording,
      }));
      return document;
    }),
    exports: config.exports.map((entry) => ({ ...entry })),
    listen: config.listen.map((entry) => ({ ...entry })),
    limits: { maxPayloadBytes: formatSize(config.limits.maxPayloadBytes) },
  };
}

/** Parses config text; YAML for .yaml/.yml (and unknown extensions), JSON for .json. */
export function parseConfigText(text: string, fileName: string): unknown {
  const extension = path.extname(fileName).toLowerCase();
  if (extension === '.json') {
    try {
      return JSON.parse(text);
    } catch (error) {
      throw new ConfigError([`(document): not valid JSON: ${(error as Error).message}`], fileName);
    }
  }
  const document = YAML.parseDocument(text, { uniqueKeys: true, prettyErrors: true });
  if (document.errors.length > 0) {
    throw new ConfigError(document.errors.map((e) => `(document): not valid YAML: ${e.message.split('\n')[0]}`), fileName);
  }
  return document.toJS({ maxAliasCount: 100 });
}

/** Reads, parses and validates a config file. Throws ConfigError (also for an unreadable file). */
export function loadConfigFile(fileName: string): BlockmirrorConfig {
  let text: string;
  try {
    text = fs.readFileSync(fileName, 'utf8');
  } catch (error) {
    throw new ConfigError([`(file): cannot read: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`], fileName);
  }
  return validateConfig(parseConfigText(text, fileName), fileName);
}

/** Command-line overrides of the listeners. */
export interface ListenOverrides {
  host?: string;
  port?: number;
  socket?: string;
}

/**
 * Applies --host/--port/--socket. When any is given, the listeners given on the command line
 * replace the config's: --host/--port make one TCP listener (the missing half taken from the
 * config's first TCP listener, else the default), --socket one Unix socket listener.
 */
export function applyListenOverrides(config: BlockmirrorConfig, overrides: ListenOverrides): BlockmirrorConfig {
  const { host, port, socket } = overrides;
  if (host === undefined && port === undefined && socket === undefined) return config;
  const firstTcp = config.listen.find((entry): entry is { host: string; port: number } => 'host' in entry);
  const listen: ListenConfig[] = [];
  if (host !== undefined || port !== undefined) {
    listen.push({ host: host ?? firstTcp?.host ?? DEFAULT_HOST, port: port ?? firstTcp?.port ?? DEFAULT_PORT });
  }
  if (socket !== undefined) listen.push({ path: socket });
  return { ...config, listen };
}
