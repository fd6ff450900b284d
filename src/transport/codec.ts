// Notes on the design
// -------------------
// Payload codecs for link messages: a writer that sizes first and allocates once, and a reader
// that checks every bound. Any read past the end, a string that is not UTF-8-clean in length, or
// trailing bytes at end() raise ERR_LINK_BAD_MESSAGE: a payload from the network is never
// trusted, and a malformed one never throws anything but a coded LinkError.

import { LinkError } from './errors';

/** Largest string a message field may carry (ids, reasons, messages). */
export const MAX_STRING_BYTES = 4096;

type Field =
  | { kind: 'u8' | 'u16' | 'u32'; value: number }
  | { kind: 'u64'; value: number }
  | { kind: 'f64'; value: number }
  | { kind: 'bytes'; value: Buffer }
  | { kind: 'raw'; value: Buffer };

/** Builds a payload field by field; encode() allocates once. */
export class BinaryWriter {
  private readonly fields: Field[] = [];
  private byteLength = 0;

  u8(value: number): this {
    this.fields.push({ kind: 'u8', value });
    this.byteLength += 1;
    return this;
  }

  u16(value: number): this {
    this.fields.push({ kind: 'u16', value });
    this.byteLength += 2;
    return this;
  }

  u32(value: number): this {
    this.fields.push({ kind: 'u32', value });
    this.byteLength += 4;
    return this;
  }

  /** An unsigned integer up to 2^53 - 1, as 8 bytes. */
  u64(value: number): this {
    if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`u64 field must be a safe non-negative integer, got ${value}`);
    this.fields.push({ kind: 'u64', value });
    this.byteLength += 8;
    return this;
  }

  f64(value: number): this {
    this.fields.push({ kind: 'f64', value });
    this.byteLength += 8;
    return this;
  }

  /** Length-prefixed (u32) bytes. */
  bytes(value: Buffer): this {
    this.fields.push({ kind: 'bytes', value });
    this.byteLength += 4 + value.length;
    return this;
  }

  /** Length-prefixed (u16) UTF-8 string, at most MAX_STRING_BYTES. */
  string(value: string): this {
    const encoded = Buffer.from(value, 'utf8');
    if (encoded.length > MAX_STRING_BYTES) throw new RangeError(`string field longer than ${MAX_STRING_BYTES} bytes`);
    this.u16(encoded.length);
    this.fields.push({ kind: 'raw', value: encoded });
    this.byteLength += encoded.length;
    return this;
  }

  /** Bytes with no length prefix (fixed-size fields such as nonces). */
  raw(value: Buffer): this {
    this.fields.push({ kind: 'raw', value });
    this.byteLength += value.length;
    return this;
  }

  encode(): Buffer {
    const out = Buffer.allocUnsafe(this.byteLength);
    let at = 0;
    for (const field of this.fields) {
      switch (field.kind) {
        case 'u8': at = out.writeUInt8(field.value, at); break;
        case 'u16': at = out.writeUInt16BE(field.value, at); break;
        case 'u32': at = out.writeUInt32BE(field.value, at); break;
        case 'u64':
          at = out.writeUInt32BE(Math.floor(field.value / 2 ** 32), at);
          at = out.writeUInt32BE(field.value >>> 0, at);
          break;
        case 'f64': at = out.writeDoubleBE(field.value, at); break;
        case 'bytes':
          at = out.writeUInt32BE(field.value.length, at);
          at += field.value.copy(out, at);
          break;
        case 'raw': at += field.value.copy(out, at); break;
      }
    }
    return out;
  }
}

const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Reads a payload field by field; every bound is checked. */
export class BinaryReader {
  private at = 0;

  constructor(private readonly buffer: Buffer, private readonly what: string) {}

  private need(byteCount: number): number {
    if (this.buffer.length - this.at < byteCount) {
      throw new LinkError('ERR_LINK_BAD_MESSAGE', `${this.what}: truncated (needs ${byteCount} more bytes at offset ${this.at} of ${this.buffer.length})`);
    }
    const start = this.at;
    this.at += byteCount;
    return start;
  }

  u8(): number {
    return this.buffer.readUInt8(this.need(1));
  }

  u16(): number {
    return this.buffer.readUInt16BE(this.need(2));
  }

  u32(): number {
    return this.buffer.readUInt32BE(this.need(4));
  }

  u64(): number {
    const at = this.need(8);
    const high = this.buffer.readUInt32BE(at);
    if (high >= 2 ** 21) throw new LinkError('ERR_LINK_BAD_MESSAGE', `${this.what}: 64-bit field above 2^53`);
    return high * 2 ** 32 + this.buffer.readUInt32BE(at + 4);
  }

  f64(): number {
    return this.buffer.readDoubleBE(this.need(8));
  }

  /** Length-prefixed bytes, at most maxBytes long: a view, not a copy. */
  bytes(maxBytes: number): Buffer {
    const length = this.u32();
    if (length > maxBytes) throw new LinkError('ERR_LINK_BAD_MESSAGE', `${this.what}: field of ${length} bytes exceeds ${maxBytes}`);
    const at = this.need(length);
    return this.buffer.subarray(at, at + length);
  }

  string(maxBytes = MAX_STRING_BYTES): string {
    const length = this.u16();
    if (length > maxBytes) throw new LinkError('ERR_LINK_BAD_MESSAGE', `${this.what}: string of ${length} bytes exceeds ${maxBytes}`);
    const at = this.need(length);
    // Strict: a string that is not valid UTF-8 is refused, never decoded with replacement
    // characters (which would re-encode to other bytes than the peer sent).
    try {
      return STRICT_UTF8.decode(this.buffer.subarray(at, at + length));
    } catch {
      throw new LinkError('ERR_LINK_BAD_MESSAGE', `${this.what}: a string field at offset ${at} is not valid UTF-8`);
    }
  }

  raw(byteCount: number): Buffer {
    const at = this.need(byteCount);
    return this.buffer.subarray(at, at + byteCount);
  }

  /** Bytes left unread. */
  get remainingBytes(): number {
    return this.buffer.length - this.at;
  }

  /** Asserts the whole payload was read. */
  end(): void {
    if (this.at !== this.buffer.length) {
      throw new LinkError('ERR_LINK_BAD_MESSAGE', `${this.what}: ${this.buffer.length - this.at} trailing bytes`);
    }
  }
}
