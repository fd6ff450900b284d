// Notes on the design
// -------------------
// The numbers `blockmirror serve` and `blockmirror demo` print: a rate meter over cumulative
// counters (each sample is a snapshot of totals; a rate is the difference of two samples over
// the time between them) and the formatting of byte counts and rates. Pure functions and one
// small class, no I/O, so the unit tests can feed them invented clocks.
//
// Invariants: samples are taken with a monotonic clock (the caller passes milliseconds from
// performance.now() or process.hrtime); a counter that goes backwards (a volume reopened) is
// treated as a restart from zero rather than producing a negative rate.

/** Cumulative totals at one instant. */
export interface CounterSample {
  timeMs: number;
  readBytes: number;
  writeBytes: number;
  /** Every request the volumes served: reads, writes, zeroes, trims, flushes. */
  ioCount: number;
  connections: number;
}

export interface Rates {
  readBytesPerSecond: number;
  writeBytesPerSecond: number;
  ioPerSecond: number;
}

const MIB = 1024 * 1024;

function delta(now: number, before: number): number {
  return now >= before ? now - before : now;
}

/** Rates between two samples; zeros when no time passed. */
export function ratesBetween(before: CounterSample, now: CounterSample): Rates {
  const seconds = (now.timeMs - before.timeMs) / 1000;
  if (!(seconds > 0)) return { readBytesPerSecond: 0, writeBytesPerSecond: 0, ioPerSecond: 0 };
  return {
    readBytesPerSecond: delta(now.readBytes, before.readBytes) / seconds,
    writeBytesPerSecond: delta(now.writeBytes, before.writeBytes) / seconds,
    ioPerSecond: delta(now.ioCount, before.ioCount) / seconds,
  };
}

/** Keeps the previous sample and returns the rates since it on each new one. */
export class RateMeter {
  private previous: CounterSample | undefined;

  /** Records `sample` and returns the rates since the previous one (zeros for the first). */
  update(sample: CounterSample): Rates {
    const rates = this.previous === undefined
      ? { readBytesPerSecond: 0, writeBytesPerSecond: 0, ioPerSecond: 0 }
      : ratesBetween(this.previous, sample);
    this.previous = sample;
    return rates;
  }
}

/** "12.3 MiB/s" with one decimal. */
export function formatMibPerSecond(bytesPerSecond: number): string {
  return `${(bytesPerSecond / MIB).toFixed(1)} MiB/s`;
}

/** Human-readable bytes with a binary unit and up to one decimal: "0 B", "1.5 KiB", "1.0 GiB". */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let index = 0;
  while (value >= 1024 && index < units.length - 1) {
    value /= 1024;
    index++;
  }
  return index === 0 ? `${value} B` : `${value.toFixed(1)} ${units[index]}`;
}

/** IOPS rounded to an integer, with thousands separators kept out (logs are grepped). */
export function formatIops(ioPerSecond: number): string {
  return `${Math.round(ioPerSecond)} IOPS`;
}

/** The one-line status of `serve`. */
export function formatStatusLine(rates: Rates, sample: CounterSample): string {
  return [
    `read ${formatMibPerSecond(rates.readBytesPerSecond)}`,
    `write ${formatMibPerSecond(rates.writeBytesPerSecond)}`,
    formatIops(rates.ioPerSecond),
    `${sample.connections} conn`,
    `total read ${formatBytes(sample.readBytes)} written ${formatBytes(sample.writeBytes)}`,
  ].join(' | ');
}

/** Seconds as "1.23 s" or "2m05s" past a minute. */
export function formatDuration(seconds: number): string {
  if (seconds < 60) return `${seconds.toFixed(2)} s`;
  const minutes = Math.floor(seconds / 60);
  const rest = Math.floor(seconds - minutes * 60);
  return `${minutes}m${String(rest).padStart(2, '0')}s`;
}
