// fio as the interop tests run it: JSON output, exit 0, no job with an error, and nothing about
// verification on stderr (fio prints some verify problems there only). One place for the checks
// every fio-driven test makes.
import * as assert from 'node:assert/strict';

import { run } from './tools';

/** One job of fio's JSON report (the fields the tests read). */
export interface FioJob {
  jobname: string;
  error: number;
  read: { io_bytes: number; total_ios: number };
  write: { io_bytes: number; total_ios: number };
}

/**
 * Runs fio with `args` in `cwd` (fio keeps its verify state files in its working directory);
 * asserts that it succeeded and reported no verification problem; returns its jobs.
 */
export async function runFio(args: string[], cwd: string, timeoutMs = 240_000): Promise<FioJob[]> {
  const result = await run('fio', ['--output-format=json', ...args], { check: false, timeoutMs, cwd });
  // fio prints warnings before the JSON document on stdout sometimes; the JSON starts at "{".
  const start = result.stdout.indexOf('{');
  assert.ok(start >= 0, `fio printed no JSON (exit ${result.code}):\n${result.stdout}\n${result.stderr}`);
  const parsed = JSON.parse(result.stdout.slice(start)) as { jobs: FioJob[] };
  const problems = parsed.jobs.filter((job) => job.error !== 0).map((job) => `${job.jobname}: error ${job.error}`);
  assert.equal(result.code, 0, `fio exit ${result.code}: ${problems.join(', ')}\n${result.stderr}`);
  assert.deepEqual(problems, []);
  assert.ok(!/verify|bad magic|crc32c/i.test(result.stderr), `fio reported a verification problem:\n${result.stderr}`);
  return parsed.jobs;
}
