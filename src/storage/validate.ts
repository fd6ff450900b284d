// Argument checks shared by the storage classes. Each throws TypeError for a wrong type and
// RangeError for a value out of range, not an integer or misaligned, with a message that names
// the argument and the value. They run before every native call; the addon checks again.

import { BlockmirrorError } from '../errors';

/** Describes a value for an error message without calling into it. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (ArrayBuffer.isView(value)) return `a ${value.constructor.name}`;
  switch (typeof value) {
    case 'number':
      return String(value);
    case 'bigint':
      return `${value}n`;
    case 'string':
      return value.length > 40 ? `a string of length ${value.length}` : JSON.stringify(value);
    case 'object':
      return `an object (${(value as object).constructor?.name ?? 'null prototype'})`;
    default:
      return typeof value;
  }
}

/** An option's value, or its default when it is undefined (null is a value, and is checked). */
export function orDefault<T>(value: T | undefined, fallback: T): T {
  return value === undefined ? fallback : value;
}

/** A non-negative safe integer. */
export function checkIndex(value: unknown, name: string): asserts value is number {
  if (typeof value !== 'number') throw new TypeError(`${name} must be a number (got ${describe(value)})`);
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`${name} must be a non-negative safe integer (got ${describe(value)})`);
  }
}

/** A safe integer in [min, max]. */
export function checkIntegerIn(value: unknown, name: string, min: number, max: number): asserts value is number {
  checkIndex(value, name);
  if (value < min || value > max) throw new RangeError(`${name} must be in [${min}, ${max}] (got ${value})`);
}

/** A power of two in [min, max]. */
export function checkPowerOfTwo(value: unknown, name: string, min: number, max: number): asserts value is number {
  checkIntegerIn(value, name, min, max);
  // Powers of two up to 2^53 are exactly representable; x & (x - 1) would truncate to 32 bits.
  if (2 ** Math.round(Math.log2(value)) !== value) {
    throw new RangeError(`${name} must be a power of two in [${min}, ${max}] (got ${value})`);
  }
}

export function checkBoolean(value: unknown, name: string): asserts value is boolean {
  if (typeof value !== 'boolean') throw new TypeError(`${name} must be a boolean (got ${describe(value)})`);
}

export function checkString(value: unknown, name: string): asserts value is string {
  if (typeof value !== 'string') throw new TypeError(`${name} must be a string (got ${describe(value)})`);
}

export function checkBytes(value: unknown, name: string): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array)) throw new TypeError(`${name} must be a Uint8Array (got ${describe(value)})`);
}

export function checkObject(value: unknown, name: string): asserts value is object {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new TypeError(`${name} must be an object (got ${describe(value)})`);
  }
}

/** An optional options object: undefined or a plain object. */
export function checkOptions(value: unknown, name: string): void {
  if (value !== undefined) checkObject(value, name);
}

export function checkOneOf<T extends string>(value: unknown, name: string, allowed: readonly T[]): asserts value is T {
  if (typeof value !== 'string') throw new TypeError(`${name} must be a string (got ${describe(value)})`);
  if (!(allowed as readonly string[]).includes(value)) {
    throw new RangeError(`${name} must be one of ${allowed.map((a) => `'${a}'`).join(', ')} (got ${describe(value)})`);
  }
}

/** [byteOffset, byteOffset + byteLength) must lie in [0, limitBytes). Both already checked as indices. */
export function checkSpan(byteOffset: number, byteLength: number, limitBytes: number, what: string): void {
  if (byteOffset > limitBytes || byteLength > limitBytes - byteOffset) {
    throw new RangeError(`[${byteOffset}, +${byteLength}) is outside the ${what} (${limitBytes} bytes)`);
  }
}

/** Names of POSIX shared-memory objects as the core accepts them. */
const SHARED_NAME = /^[A-Za-z0-9._-]{1,200}$/;

/** A shared-memory object name: [A-Za-z0-9._-], 1..maxLength characters, not only dots. */
export function checkSharedName(value: unknown, name: string, maxLength = 200): asserts value is string {
  checkString(value, name);
  if (value.length === 0 || value.length > maxLength) {
    throw new RangeError(`${name} must be 1..${maxLength} characters long (got ${value.length})`);
  }
  if (!SHARED_NAME.test(value) || /^\.+$/.test(value)) {
    throw new TypeError(`${name} may only contain [A-Za-z0-9._-] and must not be only dots (got ${describe(value)})`);
  }
}

/** Longest region name the native core accepts (a shared object's name without its '/'). */
export const MAX_REGION_NAME_LENGTH = 200;

/**
 * Checks the name of a shared volume or journal and returns its region name, prefix + name: the
 * name may be as long as the prefix leaves room for, so no caller computes that limit by hand.
 */
export function sharedRegionName(value: unknown, where: string, prefix: string): string {
  checkSharedName(value, where, MAX_REGION_NAME_LENGTH - prefix.length);
  return prefix + value;
}

/** Where an existing shared ({ name }) or file ({ path }) object lives. */
export interface NamedTarget {
  kind: 'shared' | 'file';
  /** The region's name: prefix + name for shared objects, the path for files. */
  regionName: string;
  name?: string;
  path?: string;
}

/** Resolves { name } or { path } (exactly one, checked) to where the object lives. */
export function namedTarget(options: unknown, where: string, sharedPrefix: string): NamedTarget {
  checkObject(options, where);
  const { name, path } = options as { name?: unknown; path?: unknown };
  if ((name === undefined) === (path === undefined)) throw new TypeError(`${where}: give exactly one of name and path`);
  if (name !== undefined) {
    checkSharedName(name, `${where}.name`, MAX_REGION_NAME_LENGTH - sharedPrefix.length);
    return { kind: 'shared', regionName: sharedPrefix + name, name };
  }
  checkPath(path, `${where}.path`);
  return { kind: 'file', regionName: path, path };
}

export function checkPath(value: unknown, name: string): asserts value is string {
  checkString(value, name);
  if (value.length === 0 || value.length > 4096) {
    throw new RangeError(`${name} must be 1..4096 characters long (got ${value.length})`);
  }
  if (value.includes('\0')) throw new TypeError(`${name} must not contain NUL characters`);
}

/** The error for use after close. */
export function closedError(area: 'region' | 'volume' | 'bitmap' | 'journal' | 'snapshot'): BlockmirrorError {
  return new BlockmirrorError(`ERR_${area.toUpperCase()}_CLOSED`, area === 'snapshot' ? 'snapshot store is closed' : `${area} is closed`);
}
