// Notes on the design
// -------------------
// The pieces the config schemas (config-schema-fields.ts) are built from: sizes parsed from
// "64KiB" and formatted back, "host:port" addresses, the generic messages (configErrorMap), the
// documentation metadata of a key (ConfigKeyMeta, doc()) and the schema builders (strictObject,
// usable, integer, port, size, list, address, ...).
//
// Invariants: no builder uses a zod check that aborts the parse (z.int(), an array's .min/.max),
// so the rules guarded by usable() still run after another field failed; every message is a
// sentence that reads after "<field path>: "; parseSize() throws TypeError/RangeError without a
// path (callers add it). Pure functions, no state.

import { z } from 'zod';
import { MAX_SOCKET_PATH_BYTES } from './config-schema-limits';

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

/** How a value is named in a message: `"text"`, `number 5`, `an object`, `null`. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'object') return 'an object';
  return `${typeof value} ${String(value)}`;
}

/** Formats a normalized address back to the file's "host:port" ("[::1]:port" for IPv6). */
export function formatAddress(address: { host: string; port: number }): string {
  return address.host.includes(':') ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}

function isPowerOfTwo(value: number): boolean {
  return Number.isSafeInteger(value) && value > 0 && (value & (value - 1)) === 0 && value <= 2 ** 30;
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/**
 * The message of the generic issues, for `safeParse(raw, { error: configErrorMap })`. Schemas
 * that need a precise message (ranges, patterns) carry their own, which wins.
 */
export function configErrorMap(issue: z.core.$ZodRawIssue): string | undefined {
  if (issue.code === 'invalid_type') {
    if (issue.input === undefined) return 'is required';
    const got = describe(issue.input);
    switch (issue.expected) {
      case 'boolean': return `must be true or false, got ${got}`;
      case 'object': return `must be an object, got ${got}`;
      case 'array': return `must be an array, got ${got}`;
      case 'string': return `must be a string, got ${got}`;
      case 'number': return `must be a number, got ${got}`;
      default: return `must be ${String(issue.expected)}, got ${got}`;
    }
  }
  if (issue.code === 'invalid_value') {
    const choices = issue.values.map((choice) => JSON.stringify(choice)).join(', ');
    return `must be one of ${choices}, got ${describe(issue.input)}`;
  }
  return undefined;
}

/** Documentation of one key, read by the docs generator. */
export interface ConfigKeyMeta {
  description?: string;
  /** The type as the docs show it, when the schema's own is not what the user writes. */
  docType?: string;
  /** The default as the docs show it, when it is not a constant of the schema. */
  docDefault?: string;
  /** false: list the key but not its sub-keys (they are documented elsewhere). @default true */
  docExpand?: boolean;
}

export function doc<T extends z.ZodType>(schema: T, meta: ConfigKeyMeta): T {
  return schema.meta(meta as z.core.GlobalMeta);
}

/** A strict object: an unknown field is an issue that names the allowed ones. */
export function strictObject<T extends z.core.$ZodLooseShape>(shape: T) {
  const allowed = Object.keys(shape).join(', ');
  return z.strictObject(shape, {
    error: (issue) => (issue.code === 'unrecognized_keys' ? `unknown field (allowed: ${allowed})` : undefined),
  });
}

/**
 * For `superRefine(..., { when: usable('a', 'b') })`: run the rule when the object itself and
 * the fields it reads parsed cleanly, whatever the state of the other fields. zod skips even such
 * rules after an issue that aborts outright (z.int(), an array's .min/.max), so no field here
 * uses those; the test "reports every problem of a controllers-form file" holds this.
 */
export function usable(...keys: string[]) {
  return (payload: z.core.ParsePayload): boolean => isRecord(payload.value) && payload.issues.every((issue) => {
    const head = issue.path?.[0];
    return head === undefined ? issue.code === 'unrecognized_keys' : !keys.includes(String(head));
  });
}

/** An integer in [min, max] (refinements, not z.int(), so other rules still run on failure). */
export function integer(min: number, max: number, hint = '') {
  const error = (issue: { input?: unknown }): string =>
    (issue.input === undefined ? 'is required' : `must be an integer from ${min} to ${max}${hint}, got ${describe(issue.input)}`);
  return doc(z.number({ error }).refine((value) => Number.isInteger(value) && value >= min && value <= max, { error }),
    { docType: 'integer' });
}

export function port(min: 0 | 1) {
  return integer(min, 65535, min === 0 ? ' (0: any free port)' : '');
}

/** A size in bytes: an integer or "<n>[B|KiB|MiB|GiB|TiB]"; `check` returns a problem or undefined. */
export function size(check?: (bytes: number) => string | undefined) {
  const error = (issue: { input?: unknown }): string =>
    (issue.input === undefined ? 'is required' : `must be a number of bytes or a string like "64KiB", got ${describe(issue.input)}`);
  return doc(z.union([z.number(), z.string()], { error }).transform((value, context): number => {
    let bytes: number;
    try {
      bytes = parseSize(value);
    } catch (parseError) {
      context.addIssue({ code: 'custom', message: (parseError as Error).message });
      return z.NEVER;
    }
    const problem = check?.(bytes);
    if (problem !== undefined) {
      context.addIssue({ code: 'custom', message: problem });
      return z.NEVER;
    }
    return bytes;
  }), { docType: 'size' });
}

export function sizeRange(min: number, max: number) {
  return size((bytes) => (bytes < min || bytes > max
    ? `must be from ${formatSize(min)} to ${formatSize(max)}, got ${bytes}` : undefined));
}

export function powerOfTwoSize(min: number, max: number, writeBound: (bytes: number) => string = formatSize) {
  return size((bytes) => (!isPowerOfTwo(bytes) || bytes < min || bytes > max
    ? `must be a power of two from ${writeBound(min)} to ${writeBound(max)}, got ${bytes}` : undefined));
}

export function patterned(pattern: RegExp, text: string) {
  return z.string().regex(pattern, { error: (issue) => `must match ${text}, got ${JSON.stringify(issue.input)}` });
}

export function nonEmptyString() {
  return z.string().min(1, { error: 'must not be empty' });
}

export function socketPath() {
  return z.string().refine((value) => value.length > 0 && Buffer.byteLength(value) <= MAX_SOCKET_PATH_BYTES, {
    error: (issue) => `must be 1 to ${MAX_SOCKET_PATH_BYTES} bytes long, got ${Buffer.byteLength(String(issue.input))}`,
  });
}

/** An array whose length is checked before its elements (a runaway list is not walked). */
export function list<T extends z.ZodType>(element: T, bounds: { max: number; min?: number; minProblem?: string }) {
  return z.array(z.unknown()).superRefine((items, context) => {
    if (bounds.min !== undefined && items.length < bounds.min) {
      context.addIssue({ code: 'custom', message: bounds.minProblem ?? `must have at least ${bounds.min} entries` });
    }
    if (items.length > bounds.max) {
      context.addIssue({ code: 'custom', message: `must have at most ${bounds.max} entries, got ${items.length}` });
    }
  }).pipe(z.array(element));
}

/** "host:port" or "[ipv6]:port" as written in the file, to { host, port }. */
export function address(minPort: 0 | 1) {
  return doc(z.string().transform((text, context): { host: string; port: number } => {
    const match = /^\[([0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*)\]:(\d{1,5})$/.exec(text) ?? /^([^\s:[\]/]+):(\d{1,5})$/.exec(text);
    if (match === null) {
      context.addIssue({ code: 'custom', message: `must be "host:port" (an IPv6 host in brackets: "[::1]:10810"), got ${JSON.stringify(text)}` });
      return z.NEVER;
    }
    const portNumber = Number(match[2]);
    if (portNumber < minPort || portNumber > 65535) {
      context.addIssue({ code: 'custom', message: `port must be from ${minPort} to 65535${minPort === 0 ? ' (0: any free port)' : ''}, got ${JSON.stringify(text)}` });
      return z.NEVER;
    }
    return { host: match[1] as string, port: portNumber };
  }), { docType: '`"host:port"`' });
}
