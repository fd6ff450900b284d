// The rate meter and formatting behind `serve`'s status line, on invented clocks.
import * as assert from 'node:assert/strict';

import {
  CounterSample, RateMeter, formatBytes, formatDuration, formatIops, formatMibPerSecond, formatStatusLine, ratesBetween,
} from '../../src/cli/status';

const MIB = 1024 * 1024;

function sample(timeMs: number, readBytes: number, writeBytes: number, ioCount: number, connections = 0): CounterSample {
  return { timeMs, readBytes, writeBytes, ioCount, connections };
}

describe('51 cli status line', () => {
  it('rates are counter differences over the time between samples', () => {
    const rates = ratesBetween(sample(1000, 0, 0, 0), sample(3000, 20 * MIB, 4 * MIB, 5000));
    assert.equal(rates.readBytesPerSecond, 10 * MIB);
    assert.equal(rates.writeBytesPerSecond, 2 * MIB);
    assert.equal(rates.ioPerSecond, 2500);
  });

  it('no elapsed time gives zero rates, not Infinity or NaN', () => {
    const rates = ratesBetween(sample(5, 0, 0, 0), sample(5, MIB, MIB, 10));
    assert.deepEqual(rates, { readBytesPerSecond: 0, writeBytesPerSecond: 0, ioPerSecond: 0 });
  });

  it('a counter that went backwards (reopened volume) counts from zero', () => {
    const rates = ratesBetween(sample(0, 100 * MIB, 0, 1000), sample(1000, 3 * MIB, 0, 30));
    assert.equal(rates.readBytesPerSecond, 3 * MIB);
    assert.equal(rates.ioPerSecond, 30);
  });

  it('RateMeter returns zeros first, then the rate since the previous sample', () => {
    const meter = new RateMeter();
    assert.equal(meter.update(sample(0, 0, 0, 0)).ioPerSecond, 0);
    assert.equal(meter.update(sample(500, 0, 0, 100)).ioPerSecond, 200);
    assert.equal(meter.update(sample(1500, 0, 0, 100)).ioPerSecond, 0);
  });

  it('formats bytes, rates, IOPS and durations', () => {
    assert.equal(formatBytes(0), '0 B');
    assert.equal(formatBytes(1023), '1023 B');
    assert.equal(formatBytes(1536), '1.5 KiB');
    assert.equal(formatBytes(1024 ** 3), '1.0 GiB');
    assert.equal(formatMibPerSecond(12.34 * MIB), '12.3 MiB/s');
    assert.equal(formatIops(1234.6), '1235 IOPS');
    assert.equal(formatDuration(1.234), '1.23 s');
    assert.equal(formatDuration(125), '2m05s');
  });

  it('the status line has throughput both ways, IOPS, connections and totals', () => {
    const line = formatStatusLine({ readBytesPerSecond: MIB, writeBytesPerSecond: 2 * MIB, ioPerSecond: 300 },
      sample(0, 5 * MIB, 7 * MIB, 0, 3));
    assert.equal(line, 'read 1.0 MiB/s | write 2.0 MiB/s | 300 IOPS | 3 conn | total read 5.0 MiB written 7.0 MiB');
  });
});
