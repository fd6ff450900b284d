// CRC32C (Castagnoli), computed natively (SSE4.2 when the CPU has it, else slicing-by-8).

import { addon } from '../native';
import { checkBytes, checkIntegerIn } from './validate';

/**
 * The CRC32C of data, continuing from `previous`: crc32c(b, crc32c(a)) === crc32c(a + b).
 * @param previous the CRC of the bytes before `data` @default 0
 */
export function crc32c(data: Uint8Array, previous = 0): number {
  checkBytes(data, 'data');
  checkIntegerIn(previous, 'previous', 0, 0xffffffff);
  return addon.crc32c(data, previous);
}
