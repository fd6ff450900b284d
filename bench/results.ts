// Where benchmark results go: bench/results/<suite>-<timestamp>.json (ignored by git) plus
// bench/results/<suite>-latest.json, so two runs can be compared with any JSON diff tool.
import * as fs from 'node:fs';
import * as path from 'node:path';

export const RESULTS_DIR = path.join(__dirname, '..', '..', 'bench', 'results');

export function writeResults(suite: string, result: unknown): string {
  fs.mkdirSync(RESULTS_DIR, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const file = path.join(RESULTS_DIR, `${suite}-${stamp}.json`);
  const text = `${JSON.stringify(result, null, 2)}\n`;
  fs.writeFileSync(file, text);
  fs.writeFileSync(path.join(RESULTS_DIR, `${suite}-latest.json`), text);
  return file;
}
