// CRC32C: the standard check value, continuation, and the hardware path equal to the portable one.
import * as assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';

import { addon } from '../../src/native';
import { crc32c } from '../../src/storage/crc32c';

describe('03 crc32c', () => {
  it('matches the Castagnoli check value and known vectors', () => {
    assert.equal(crc32c(Buffer.from('123456789')), 0xe3069283);
    assert.equal(crc32c(Buffer.alloc(0)), 0);
    assert.equal(crc32c(Buffer.alloc(32, 0)), 0x8a9136aa); // RFC 3720 B.4: 32 bytes of zeros
    assert.equal(crc32c(Buffer.alloc(32, 0xff)), 0x62a8ab43); // RFC 3720 B.4: 32 bytes of ones
  });

  it('continues across pieces: crc32c(b, crc32c(a)) === crc32c(a + b)', () => {
    const data = randomBytes(10_000);
    for (const cut of [0, 1, 7, 4096, 9999, 10_000]) {
      assert.equal(crc32c(data.subarray(cut), crc32c(data.subarray(0, cut))), crc32c(data), `cut at ${cut}`);
    }
  });

  it('the hardware path (when present) equals the portable one on random input', () => {
    for (let i = 0; i < 200; i++) {
      const data = randomBytes(i * 37);
      const previous = i * 2654435761 >>> 0;
      const portable = addon.crc32cPortable(data, previous);
      const hardware = addon.crc32cHardware(data, previous);
      if (hardware !== -1) assert.equal(hardware, portable, `length ${data.length}`);
      assert.equal(addon.crc32c(data, previous), portable);
    }
  });

  it('reads only the view it is given', () => {
    const whole = Buffer.from('xx123456789yy');
    assert.equal(crc32c(whole.subarray(2, 11)), 0xe3069283);
  });
});
