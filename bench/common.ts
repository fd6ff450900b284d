// What several benchmarks share: size arguments, number formatting, the load warning, running
// fio with JSON output, and a free loopback port.
import { spawn } from 'node:child_process';
import * as net from 'node:net';
import * as os from 'node:os';

const UNITS: Readonly<Record<string, number>> = Object.freeze({ KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3 });

/** `123`, `4KiB`, `256MiB`, `4GiB` in bytes; null when the text is none of these. */
export function parseSizeText(text: string): number | null {
  const match = /^(\d+)(KiB|MiB|GiB)?$/.exec(text);
  if (match === null) return null;
  return Number(match[1]) * (match[2] === undefined ? 1 : (UNITS[match[2]] as number));
}

/** A number with `digits` decimals, 'n/a' when it is not finite. */
/** Median, min and max of one figure over interleaved rounds (an even count takes the upper middle). */
export function summary(values: number[]): { median: number; min: number; max: number } {
  const sorted = [...values].sort((a, b) => a - b);
  return { median: sorted[Math.floor(sorted.length / 2)] as number, min: sorted[0] as number, max: sorted[sorted.length - 1] as number };
}

/** `count` byte offsets, multiples of `unit` below `spanBytes`, from a seeded xorshift32 (the same every run). */
export function seededOffsets(count: number, spanBytes: number, unit: number, seed: number): Float64Array {
  let x = seed;
  const result = new Float64Array(count);
  for (let i = 0; i < count; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    result[i] = (x % (spanBytes / unit)) * unit;
  }
  return result;
}

export function fixed(value: number, digits = 1): string {
  return Number.isFinite(value) ? value.toFixed(digits) : 'n/a';
}

/** Warns on stderr when the machine is already busy (the numbers will be noisy). */
export function warnIfBusy(suite: string, what: string): number[] {
  const load = os.loadavg();
  if ((load[0] ?? 0) > os.cpus().length * 0.5) {
    process.stderr.write(`${suite}: warning: load average ${load.map((value) => value.toFixed(2)).join(' ')} on ` +
      `${os.cpus().length} CPUs; other work competes with ${what}, the numbers will be noisy\n`);
  }
  return load;
}

/** Runs fio with JSON output; resolves with the parsed document. */
export function runFio<T>(args: string[]): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn('fio', ['--output-format=json', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (text: string) => {
      stdout += text;
    });
    child.stderr.on('data', (text: string) => {
      stderr += text;
    });
    child.on('error', reject);
    child.on('close', (code) => {
      const start = stdout.indexOf('{');
      if (code !== 0 || start < 0) {
        reject(new Error(`fio exit ${code}: ${stderr}${stdout.slice(0, 2000)}`));
        return;
      }
      try {
        resolve(JSON.parse(stdout.slice(start)) as T);
      } catch (error) {
        reject(error);
      }
    });
  });
}

/** A TCP port free on 127.0.0.1 right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0 }, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
