// Runs every benchmark suite in its own child process (so one suite's heap, JIT state and page
// cache do not colour the next), then prints the ratios each suite reported.
// Usage: node dist/bench/run.js [suite ...]   (suites: storage, snapshot, nbd-fio, link, pair-fio, pair-resync, lockstep, sim-scale, cgroup, raid, sparing)
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

const SUITES: Record<string, string> = {
  storage: 'storage.bench.js',
  snapshot: 'snapshot.bench.js',
  'nbd-fio': 'nbd-fio.js',
  link: 'link.bench.js',
  'pair-fio': 'pair-fio.js',
  'pair-resync': 'pair-resync.js',
  lockstep: 'lockstep.bench.js',
  'sim-scale': 'sim-scale.js',
  cgroup: 'cgroup.bench.js',
  raid: 'raid.bench.js',
  sparing: 'sparing.bench.js',
};

function main(): number {
  const wanted = process.argv.slice(2);
  const names = wanted.length > 0 ? wanted : Object.keys(SUITES);
  let failed = 0;
  for (const name of names) {
    const file = SUITES[name];
    if (file === undefined) {
      process.stderr.write(`unknown suite '${name}'; known: ${Object.keys(SUITES).join(', ')}\n`);
      return 2;
    }
    process.stderr.write(`\n== bench ${name}\n`);
    const child = spawnSync(process.execPath, [path.join(__dirname, file)], {
      stdio: ['ignore', 'pipe', 'inherit'],
      maxBuffer: 64 * 1024 * 1024,
    });
    if (child.status !== 0) {
      failed++;
      process.stderr.write(`bench ${name} failed (exit ${child.status ?? child.signal})\n`);
      continue;
    }
    const lines = child.stdout.toString().trim().split('\n');
    const last = lines[lines.length - 1] ?? '{}';
    try {
      // A ratio is a number, or { median, min, max } for the suites that run interleaved rounds.
      type Ratio = number | { median: number; min: number; max: number };
      const result = JSON.parse(last) as { ratios?: Record<string, Ratio>; targets?: Record<string, number> };
      for (const [key, ratio] of Object.entries(result.ratios ?? {})) {
        const value = typeof ratio === 'number' ? ratio : ratio.median;
        const spread = typeof ratio === 'number' ? '' : ` (${ratio.min.toFixed(3)}..${ratio.max.toFixed(3)})`;
        const target = result.targets?.[key];
        const verdict = target === undefined ? '' : value >= target ? ` (target >= ${target}: met)` : ` (target >= ${target}: NOT met)`;
        process.stdout.write(`${name}.${key} = ${value.toFixed(3)}${spread}${verdict}\n`);
      }
    } catch {
      process.stdout.write(`${lines.join('\n')}\n`);
    }
  }
  return failed === 0 ? 0 : 1;
}

process.exitCode = main();
