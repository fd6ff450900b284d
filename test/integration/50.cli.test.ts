// The `blockmirror` command as a user meets it: help, exit codes, config check/default, demo.
// Each test runs the built CLI (dist/src/cli/main.js) as a child process.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { CLI_PATH } from '../helpers/serve-process';
import { makeTempDir, removeTempDir, run } from '../helpers/tools';

function cli(args: string[], timeoutMs = 60_000): ReturnType<typeof run> {
  return run(process.execPath, [CLI_PATH, ...args], { check: false, timeoutMs });
}

describe('50 cli: help, config, demo', function () {
  this.timeout(120_000);
  let directory: string;
  before(() => {
    directory = makeTempDir('cli');
  });
  after(() => removeTempDir(directory));

  describe('help', () => {
    it('--help lists every command and exits 0', async () => {
      const result = await cli(['--help']);
      assert.equal(result.code, 0, result.stderr);
      for (const command of ['serve', 'demo', 'config']) assert.match(result.stdout, new RegExp(`^\\s+${command}\\b`, 'm'));
      assert.match(result.stdout, /Exit codes/);
    });

    for (const command of [['serve'], ['demo'], ['config'], ['config', 'check'], ['config', 'default']]) {
      it(`${command.join(' ')} --help exits 0 with usage`, async () => {
        const result = await cli([...command, '--help']);
        assert.equal(result.code, 0, result.stderr);
        assert.match(result.stdout, new RegExp(`^Usage: blockmirror ${command.join(' ')}`, 'm'));
      });
    }

    it('serve --help documents the options and the output contract', async () => {
      const { stdout } = await cli(['serve', '--help']);
      for (const option of ['--config', '--host', '--port', '--socket', '--quiet', '--log-level', '--status-interval']) {
        assert.ok(stdout.includes(option), `serve --help does not mention ${option}`);
      }
      assert.match(stdout, /SIGTERM/);
    });

    it('--version prints the package version', async () => {
      const result = await cli(['--version']);
      assert.equal(result.code, 0);
      const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', '..', 'package.json'), 'utf8')) as { version: string };
      assert.equal(result.stdout.trim(), pkg.version);
    });

    it('usage errors exit 2 with a hint', async () => {
      for (const args of [['nope'], ['serve', '--bogus'], ['serve', '--port', '70000'], ['serve', '--port', 'x'],
        ['serve', '--log-level', 'loud'], ['serve', '--status-interval', '0'], ['demo', '--size', '1GB'], ['config', 'check']]) {
        const result = await cli(args);
        assert.equal(result.code, 2, `${args.join(' ')}: exit ${result.code}\n${result.stderr}`);
        assert.match(result.stderr, /error: /, args.join(' '));
      }
    });
  });

  describe('config', () => {
    it('config default prints JSON that config check accepts unchanged', async () => {
      const printed = await cli(['config', 'default']);
      assert.equal(printed.code, 0, printed.stderr);
      const document = JSON.parse(printed.stdout) as {
        controllers: Array<{ volumes: Array<{ name: string; capacity: string; backing: string }> }>; listen: unknown[] };
      assert.equal(document.controllers[0]?.volumes[0]?.name, 'vol0');
      assert.equal(document.controllers[0]?.volumes[0]?.capacity, '1GiB');
      assert.equal(document.controllers[0]?.volumes[0]?.backing, 'memory');
      assert.deepEqual(document.listen, [{ host: '127.0.0.1', port: 10809 }]);
      const file = path.join(directory, 'default.json');
      fs.writeFileSync(file, printed.stdout);
      const checked = await cli(['config', 'check', file]);
      assert.equal(checked.code, 0, checked.stderr);
      assert.deepEqual(JSON.parse(checked.stdout), document);
    });

    it('config check normalizes a YAML file', async () => {
      const file = path.join(directory, 'array.yaml');
      fs.writeFileSync(file, 'volumes:\n  - name: a\n    capacity: 64MiB\n    bitmaps: [{name: backup}]\nlisten: [{port: 0}]\n');
      const result = await cli(['config', 'check', file]);
      assert.equal(result.code, 0, result.stderr);
      const document = JSON.parse(result.stdout) as {
        controllers: Array<{ volumes: Array<{ bitmaps: unknown[]; blockSize: number }>; exports: unknown[] }> };
      assert.deepEqual(document.controllers[0]?.volumes[0]?.bitmaps, [{ name: 'backup', granularity: '64KiB', recording: true }]);
      assert.equal(document.controllers[0]?.volumes[0]?.blockSize, 4096);
      assert.deepEqual(document.controllers[0]?.exports, [{ name: 'a', volume: 'a', readOnly: false, description: '' }]);
    });

    it('an invalid config exits 2 and names every field path and problem', async () => {
      const file = path.join(directory, 'bad.json');
      fs.writeFileSync(file, JSON.stringify({
        volumes: [{ name: 'ok', capacity: '1MiB' }, { name: 'bad', capacity: 1000, colour: 'red' }],
        exports: [{ name: 'x', volume: 'missing' }],
      }));
      const result = await cli(['config', 'check', file]);
      assert.equal(result.code, 2);
      assert.match(result.stderr, /volumes\[1\]\.capacity: must be a multiple of blockSize 4096, got 1000/);
      assert.match(result.stderr, /volumes\[1\]\.colour: unknown field/);
      assert.match(result.stderr, /exports\[0\]\.volume: no volume named "missing"/);
      assert.equal(result.stdout, '');
    });

    it('serve with an invalid or missing config exits 2 before opening anything', async () => {
      const file = path.join(directory, 'bad-serve.json');
      fs.writeFileSync(file, JSON.stringify({ volumes: [{ name: 'v', capacity: '1MiB', blockSize: 3000 }] }));
      let result = await cli(['serve', '--config', file, '--port', '0']);
      assert.equal(result.code, 2);
      assert.match(result.stderr, /volumes\[0\]\.blockSize: must be a power of two from 512 to 65536, got 3000/);
      result = await cli(['serve', '--config', path.join(directory, 'absent.yaml')]);
      assert.equal(result.code, 2);
      assert.match(result.stderr, /cannot read: ENOENT/);
    });
  });

  describe('demo', () => {
    it('writes, verifies and reports on a small volume (exit 0)', async () => {
      const result = await cli(['demo', '--size', '16MiB']);
      assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}`);
      assert.match(result.stdout, /verified: every byte matched/);
      assert.match(result.stdout, /native stats: .*writeCount=\d+/);
      assert.match(result.stdout, /bitmap demo-changes: 256 dirty tracks/);
      assert.match(result.stdout, /journal: sequences \d+\.\.\d+/);
      assert.match(result.stdout, /MiB\/s/);
    });

    it('--json reports counters that match what was done', async () => {
      const sizeBytes = 8 * 1024 * 1024;
      const result = await cli(['demo', '--size', String(sizeBytes), '--block-size', '512', '--json', '--seed', '7']);
      assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}`);
      const report = JSON.parse(result.stdout) as {
        ok: boolean; volume: { blockSize: number }; stats: Record<string, number>; mismatches: unknown[];
        bitmap: { dirtyTracks: number; expectedDirtyTracks: number }; journal: { appended: number; full: number };
        phases: Array<{ name: string; requestCount: number; byteCount: number }>;
      };
      assert.equal(report.ok, true);
      assert.equal(report.volume.blockSize, 512);
      assert.deepEqual(report.mismatches, []);
      assert.equal(report.stats.writeBytes, sizeBytes);
      assert.equal(report.stats.readBytes, sizeBytes);
      assert.equal(report.bitmap.dirtyTracks, sizeBytes / 65536);
      const writes = report.phases.filter((p) => p.name === 'write' || p.name === 'writev')
        .reduce((sum, p) => sum + p.requestCount, 0);
      assert.equal(report.stats.writeCount, writes);
      assert.equal(report.journal.appended + report.journal.full, writes);
      assert.deepEqual(report.phases.map((p) => p.name), ['write', 'writev', 'flush', 'read+verify']);
    });

    it('exits 1 and names the offset when a byte read back differs', async () => {
      const offset = 5 * 1024 * 1024 + 4097;
      const result = await cli(['demo', '--size', '8MiB', '--inject-corruption', String(offset)]);
      assert.equal(result.code, 1, result.stdout);
      assert.match(result.stdout, new RegExp(`MISMATCH at byte ${offset}: expected [0-9a-f]+, got [0-9a-f]+ \\(1 bytes differ`));
      assert.match(result.stdout, /FAILED: 1 problem/);
    });

    it('rejects a size that is not a multiple of the block size as a usage error (exit 2)', async () => {
      const result = await cli(['demo', '--size', '10000']);
      assert.equal(result.code, 2);
      assert.match(result.stderr, /--size must be a positive multiple of --block-size 4096, got 10000/);
    });

    it('rejects a block size that is not a power of two (exit 2)', async () => {
      const result = await cli(['demo', '--size', '1MiB', '--block-size', '3000']);
      assert.equal(result.code, 2);
      assert.match(result.stderr, /--block-size must be a power of two from 512 to 65536, got 3000/);
    });
  });
});
