// The serve config: sizes, defaults, every validation message with its field path, unknown
// fields, the JSON and YAML readers, listener overrides, and that the normalized form is stable.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import {
  BlockmirrorConfig,
  ConfigError,
  MAX_VOLUME_CAPACITY_BYTES,
  applyListenOverrides,
  defaultConfig,
  formatSize,
  loadConfigFile,
  parseConfigText,
  parseSize,
  toDocument,
  validateConfig,
} from '../../src/cli/config';
import { Volume } from '../../src/storage/volume';

function issuesOf(raw: unknown): string[] {
  try {
    validateConfig(raw);
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected ConfigError, got ${String(error)}`);
    assert.equal(error.code, 'ERR_CONFIG_INVALID');
    return error.issues;
  }
  assert.fail('expected the config to be rejected');
}

function minimal(volume: Record<string, unknown> = {}): Record<string, unknown> {
  return { volumes: [{ name: 'vol0', capacity: '64MiB', ...volume }] };
}

describe('50 config', () => {
  describe('parseSize', () => {
    it('accepts byte counts and binary units', () => {
      assert.equal(parseSize(0), 0);
      assert.equal(parseSize(4096), 4096);
      assert.equal(parseSize('4096'), 4096);
      assert.equal(parseSize('512B'), 512);
      assert.equal(parseSize('64KiB'), 65536);
      assert.equal(parseSize('64kib'), 65536);
      assert.equal(parseSize('1 GiB'), 1073741824);
      assert.equal(parseSize('32MiB'), 33554432);
      assert.equal(parseSize('2TiB'), 2 * 1024 ** 4);
    });

    it('rejects decimal units, fractions, negatives and non-sizes with a reason', () => {
      assert.throws(() => parseSize('1GB'), /unknown size unit "GB".*binary units/);
      assert.throws(() => parseSize('1K'), /binary units/);
      assert.throws(() => parseSize('1.5GiB'), /integer with an optional unit/);
      assert.throws(() => parseSize(-1), /non-negative integer/);
      assert.throws(() => parseSize(1.5), /non-negative integer/);
      assert.throws(() => parseSize(Number.MAX_SAFE_INTEGER + 2), /non-negative integer/);
      assert.throws(() => parseSize('99999999TiB'), /too large/);
      assert.throws(() => parseSize(true), TypeError);
      assert.throws(() => parseSize(null), /got null/);
      assert.throws(() => parseSize('lots'), /unknown size unit|integer with/);
    });

    it('formatSize writes the largest exact unit and round-trips', () => {
      assert.equal(formatSize(1024 ** 3), '1GiB');
      assert.equal(formatSize(1536 * 1024), '1536KiB');
      assert.equal(formatSize(1000), '1000');
      assert.equal(formatSize(0), '0');
      for (const bytes of [0, 1, 512, 4096, 65536, 1536 * 1024, 1024 ** 3, 3 * 1024 ** 4]) {
        assert.equal(parseSize(formatSize(bytes)), bytes);
      }
    });
  });

  describe('validateConfig: normalization', () => {
    it('fills in every default', () => {
      const config = validateConfig(minimal());
      assert.deepEqual(config, {
        volumes: [{
          name: 'vol0', capacityBytes: 64 * 1024 * 1024, blockSize: 4096, backing: 'memory', strict: false,
          existing: 'open', bitmaps: [],
        }],
        exports: [{ name: 'vol0', volume: 'vol0', readOnly: false, description: '' }],
        listen: [{ host: '127.0.0.1', port: 10809 }],
        limits: { maxPayloadBytes: 32 * 1024 * 1024 },
      });
    });

    it('keeps a full config as given, sizes in bytes', () => {
      const config = validateConfig({
        volumes: [
          { name: 'vol0', capacity: 1073741824, blockSize: 4096, backing: 'memory', strict: false,
            bitmaps: [{ name: 'backup', granularity: '64KiB' }, { name: 'cr', granularity: 4096, recording: false }] },
          { name: 'f1', capacity: '16MiB', blockSize: '512', backing: 'file', path: '/tmp/f1.img', strict: true, existing: 'error' },
          { name: 'shm1', capacity: '8MiB', backing: 'shared' },
        ],
        exports: [
          { name: 'vol0', volume: 'vol0', readOnly: false, description: 'main' },
          { name: 'f1-ro', volume: 'f1', readOnly: true },
          { name: 'shm1' },
        ],
        listen: [{ host: '0.0.0.0', port: 0 }, { path: '/tmp/bm.sock' }, { port: 10810 }],
        limits: { maxPayloadBytes: '4MiB' },
      });
      assert.equal(config.volumes[0]?.bitmaps.length, 2);
      assert.deepEqual(config.volumes[0]?.bitmaps[0], { name: 'backup', granularityBytes: 65536, recording: true });
      assert.deepEqual(config.volumes[0]?.bitmaps[1], { name: 'cr', granularityBytes: 4096, recording: false });
      assert.equal(config.volumes[1]?.blockSize, 512);
      assert.equal(config.volumes[1]?.path, '/tmp/f1.img');
      assert.equal(config.volumes[1]?.existing, 'error');
      assert.equal(config.volumes[2]?.backing, 'shared');
      assert.deepEqual(config.exports[1], { name: 'f1-ro', volume: 'f1', readOnly: true, description: '' });
      assert.deepEqual(config.exports[2], { name: 'shm1', volume: 'shm1', readOnly: false, description: '' });
      assert.deepEqual(config.listen, [{ host: '0.0.0.0', port: 0 }, { path: '/tmp/bm.sock' }, { host: '127.0.0.1', port: 10810 }]);
      assert.equal(config.limits.maxPayloadBytes, 4 * 1024 * 1024);
    });

    it('exports every volume under its name when there is no exports list', () => {
      const config = validateConfig({ volumes: [{ name: 'a', capacity: 4096 }, { name: 'b', capacity: 8192 }] });
      assert.deepEqual(config.exports.map((e) => [e.name, e.volume]), [['a', 'a'], ['b', 'b']]);
    });

    it('toDocument output validates back to the same config (idempotent)', () => {
      const configs: BlockmirrorConfig[] = [
        defaultConfig(),
        validateConfig({
          volumes: [{ name: 'f', capacity: '1000KiB', blockSize: 512, backing: 'file', path: '/tmp/x',
            bitmaps: [{ name: 'b:1', granularity: '1GiB' }] }],
          listen: [{ path: '/tmp/s.sock' }],
        }),
      ];
      for (const config of configs) {
        assert.deepEqual(validateConfig(JSON.parse(JSON.stringify(toDocument(config)))), config);
      }
    });

    it('the default config is one thin 1 GiB memory volume vol0 on 127.0.0.1:10809', () => {
      const config = defaultConfig();
      assert.equal(config.volumes.length, 1);
      assert.equal(config.volumes[0]?.name, 'vol0');
      assert.equal(config.volumes[0]?.capacityBytes, 1024 ** 3);
      assert.equal(config.volumes[0]?.backing, 'memory');
      assert.deepEqual(config.listen, [{ host: '127.0.0.1', port: 10809 }]);
      assert.deepEqual(validateConfig(toDocument(config)), config);
    });
  });

  describe('validateConfig: errors name the field and the problem', () => {
    const cases: Array<[string, unknown, RegExp]> = [
      ['capacity not a multiple of blockSize',
        { volumes: [{ name: 'a', capacity: 4096 }, { name: 'b', capacity: 1000 }] },
        /^volumes\[1\]\.capacity: must be a multiple of blockSize 4096, got 1000$/],
      ['capacity vs a custom blockSize', minimal({ capacity: 1024, blockSize: 512 * 4 }),
        /^volumes\[0\]\.capacity: must be a multiple of blockSize 2048, got 1024$/],
      ['capacity missing', { volumes: [{ name: 'a' }] }, /^volumes\[0\]\.capacity: is required$/],
      ['capacity zero', minimal({ capacity: 0 }), /^volumes\[0\]\.capacity: must be greater than 0$/],
      ['capacity bad unit', minimal({ capacity: '1GB' }), /^volumes\[0\]\.capacity: unknown size unit "GB"/],
      ['blockSize not a power of two', minimal({ blockSize: 3000 }),
        /^volumes\[0\]\.blockSize: must be a power of two from 512 to 65536, got 3000$/],
      ['blockSize too large', minimal({ blockSize: '128KiB' }), /^volumes\[0\]\.blockSize: must be a power of two/],
      ['backing unknown', minimal({ backing: 'disk' }),
        /^volumes\[0\]\.backing: must be one of "memory", "shared", "file", got "disk"$/],
      ['file without path', minimal({ backing: 'file' }), /^volumes\[0\]\.path: is required with backing "file"$/],
      ['path without file', minimal({ path: '/tmp/x' }),
        /^volumes\[0\]\.path: is only allowed with backing "file", got backing "memory"$/],
      ['strict not boolean', minimal({ strict: 'yes' }), /^volumes\[0\]\.strict: must be true or false, got "yes"$/],
      ['bad volume name', minimal({ name: 'a/b' }), /^volumes\[0\]\.name: must match \[A-Za-z0-9._-\]\{1,184\}, got "a\/b"$/],
      ['duplicate volume', { volumes: [{ name: 'a', capacity: 4096 }, { name: 'a', capacity: 4096 }] },
        /^volumes\[1\]\.name: duplicate volume name "a"$/],
      ['unknown volume field', minimal({ size: 5 }), /^volumes\[0\]\.size: unknown field \(allowed: name, capacity/],
      ['unknown top field', { ...minimal(), volume: [] }, /^volume: unknown field \(allowed: volumes, exports, listen, limits\)$/],
      ['bitmap granularity', minimal({ bitmaps: [{ name: 'b', granularity: '1000' }] }),
        /^volumes\[0\]\.bitmaps\[0\]\.granularity: must be a power of two from 4KiB to 1GiB, got 1000$/],
      ['bitmap name', minimal({ bitmaps: [{ name: 'no spaces' }] }), /^volumes\[0\]\.bitmaps\[0\]\.name: must match/],
      ['bitmap duplicate', minimal({ bitmaps: [{ name: 'b' }, { name: 'b' }] }),
        /^volumes\[0\]\.bitmaps\[1\]\.name: duplicate bitmap name "b"$/],
      ['bitmap unknown field', minimal({ bitmaps: [{ name: 'b', gran: 1 }] }), /^volumes\[0\]\.bitmaps\[0\]\.gran: unknown field/],
      ['too many bitmaps', minimal({ bitmaps: Array.from({ length: 17 }, (_, i) => ({ name: `b${i}` })) }),
        /^volumes\[0\]\.bitmaps: must have at most 16 entries, got 17$/],
      ['export of a missing volume', { ...minimal(), exports: [{ name: 'x', volume: 'nope' }] },
        /^exports\[0\]\.volume: no volume named "nope" \(volumes: "vol0"\)$/],
      ['duplicate export', { ...minimal(), exports: [{ name: 'vol0' }, { name: 'vol0' }] },
        /^exports\[1\]\.name: duplicate export name "vol0"$/],
      ['export name too long', { ...minimal(), exports: [{ name: 'x'.repeat(4097), volume: 'vol0' }] },
        /^exports\[0\]\.name: must be at most 4096 bytes \(NBD limit\)$/],
      ['export readOnly type', { ...minimal(), exports: [{ name: 'vol0', readOnly: 1 }] },
        /^exports\[0\]\.readOnly: must be true or false, got number 1$/],
      ['empty exports', { ...minimal(), exports: [] }, /^exports: must have at least one export$/],
      ['listen port range', { ...minimal(), listen: [{ host: '127.0.0.1', port: 70000 }] },
        /^listen\[0\]\.port: must be an integer from 0 to 65535/],
      ['listen port type', { ...minimal(), listen: [{ port: '10809' }] }, /^listen\[0\]\.port: must be an integer/],
      ['listen socket with port', { ...minimal(), listen: [{ path: '/tmp/s', port: 1 }] },
        /^listen\[0\]\.port: unknown field \(allowed: path\)$/],
      ['listen socket path too long', { ...minimal(), listen: [{ path: `/tmp/${'s'.repeat(200)}` }] },
        /^listen\[0\]\.path: must be 1 to 107 bytes long/],
      ['listen empty', { ...minimal(), listen: [] }, /^listen: must have at least one entry$/],
      ['listen duplicate', { ...minimal(), listen: [{ port: 1 }, { port: 1 }] }, /^listen\[1\]: duplicate listener$/],
      ['limits', { ...minimal(), limits: { maxPayloadBytes: '1KiB' } },
        /^limits\.maxPayloadBytes: must be from 64KiB to 1GiB, got 1024$/],
      ['limits unknown', { ...minimal(), limits: { maxConnections: 1 } }, /^limits\.maxConnections: unknown field/],
      ['no volumes', {}, /^volumes: is required$/],
      ['volumes empty', { volumes: [] }, /^volumes: must have at least one volume$/],
      ['volumes not an array', { volumes: {} }, /^volumes: must be an array, got an object$/],
      ['document not an object', [1], /^\(document\): must be an object, got an array$/],
    ];
    for (const [title, raw, pattern] of cases) {
      it(title, () => {
        const issues = issuesOf(raw);
        assert.ok(issues.some((issue) => pattern.test(issue)), `no issue matches ${pattern}:\n  ${issues.join('\n  ')}`);
      });
    }

    it('reports every problem at once, not only the first', () => {
      const issues = issuesOf({
        volumes: [{ name: 'a', capacity: 1000 }, { name: 'b', capacity: '1MiB', backing: 'tape' }],
        exports: [{ name: 'a', volume: 'zzz' }],
        listen: [{ port: -1 }],
        extra: true,
      });
      assert.equal(issues.length, 5, issues.join('\n'));
    });

    it('an invalid volume does not also produce "no volume named" for its export', () => {
      const issues = issuesOf({ volumes: [{ name: 'a', capacity: 1000 }], exports: [{ name: 'a' }] });
      assert.deepEqual(issues, ['volumes[0].capacity: must be a multiple of blockSize 4096, got 1000']);
    });

    it('the error message lists the issues under the file name', () => {
      try {
        validateConfig({ volumes: [{ name: 'a', capacity: 1000 }] }, 'array.yaml');
        assert.fail('expected an error');
      } catch (error) {
        assert.match((error as Error).message, /^invalid config array\.yaml:\n {2}volumes\[0\]\.capacity: /);
      }
    });
  });

  describe('files', () => {
    let directory: string;
    before(() => {
      directory = fs.mkdtempSync(path.join(os.tmpdir(), 'bm-config-'));
    });
    after(() => fs.rmSync(directory, { recursive: true, force: true }));

    it('reads JSON', () => {
      const file = path.join(directory, 'a.json');
      fs.writeFileSync(file, JSON.stringify(minimal()));
      assert.equal(loadConfigFile(file).volumes[0]?.capacityBytes, 64 * 1024 * 1024);
    });

    it('reads YAML (.yaml and .yml)', () => {
      const text = [
        'volumes:',
        '  - name: vol0',
        '    capacity: 1GiB',
        '    bitmaps:',
        '      - name: backup',
        '        granularity: 64KiB',
        'exports:',
        '  - name: vol0',
        '    readOnly: true',
        'listen:',
        '  - path: /tmp/bm-test.sock',
      ].join('\n');
      for (const name of ['a.yaml', 'a.yml']) {
        const file = path.join(directory, name);
        fs.writeFileSync(file, text);
        const config = loadConfigFile(file);
        assert.equal(config.volumes[0]?.capacityBytes, 1024 ** 3);
        assert.equal(config.volumes[0]?.bitmaps[0]?.granularityBytes, 65536);
        assert.equal(config.exports[0]?.readOnly, true);
        assert.deepEqual(config.listen, [{ path: '/tmp/bm-test.sock' }]);
      }
    });

    it('reports syntax errors and unreadable files as ConfigError', () => {
      const bad = path.join(directory, 'bad.json');
      fs.writeFileSync(bad, '{ "volumes": [ }');
      assert.throws(() => loadConfigFile(bad), (e: unknown) => e instanceof ConfigError && /not valid JSON/.test(e.issues[0] ?? ''));
      assert.throws(() => parseConfigText('a: [1, 2\nb: }', 'x.yaml'), (e: unknown) => e instanceof ConfigError && /not valid YAML/.test(e.issues[0] ?? ''));
      assert.throws(() => parseConfigText('a: 1\na: 2\n', 'x.yaml'), ConfigError);
      assert.throws(() => loadConfigFile(path.join(directory, 'missing.json')),
        (e: unknown) => e instanceof ConfigError && /cannot read: ENOENT/.test(e.issues[0] ?? ''));
    });
  });

  describe('applyListenOverrides', () => {
    const base = validateConfig({ ...minimal(), listen: [{ path: '/tmp/a.sock' }, { host: '::1', port: 7000 }] });

    it('does nothing without overrides', () => {
      assert.equal(applyListenOverrides(base, {}), base);
    });

    it('--port keeps the config host; --host keeps the config port', () => {
      assert.deepEqual(applyListenOverrides(base, { port: 0 }).listen, [{ host: '::1', port: 0 }]);
      assert.deepEqual(applyListenOverrides(base, { host: '0.0.0.0' }).listen, [{ host: '0.0.0.0', port: 7000 }]);
      assert.deepEqual(applyListenOverrides(defaultConfig(), { port: 1234 }).listen, [{ host: '127.0.0.1', port: 1234 }]);
    });

    it('--socket alone replaces every listener with the socket; with --port both', () => {
      assert.deepEqual(applyListenOverrides(base, { socket: '/tmp/b.sock' }).listen, [{ path: '/tmp/b.sock' }]);
      assert.deepEqual(applyListenOverrides(base, { socket: '/tmp/b.sock', port: 1 }).listen,
        [{ host: '::1', port: 1 }, { path: '/tmp/b.sock' }]);
    });
  });

  describe('limits shared with the storage and NBD layers', () => {
    it('refuses what serve would refuse: long shared names, huge capacities, empty export names', () => {
      assert.ok(issuesOf(minimal({ name: 'v'.repeat(185) })).some((issue) => /volumes\[0\]\.name/.test(issue)));
      assert.doesNotThrow(() => validateConfig(minimal({ name: 'v'.repeat(184) })));
      assert.deepEqual(issuesOf(minimal({ capacity: '64TiB' })),
        ['volumes[0].capacity: must be at most 32TiB, got 70368744177664']);
      assert.deepEqual(issuesOf({ ...minimal(), exports: [{ name: '', volume: 'vol0' }] }),
        ['exports[0].name: must not be empty']);
    });

    it('MAX_VOLUME_CAPACITY_BYTES equals Volume.MAX_CAPACITY_BYTES', () => {
      assert.equal(MAX_VOLUME_CAPACITY_BYTES, Volume.MAX_CAPACITY_BYTES);
    });
  });
});
