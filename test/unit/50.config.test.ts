// The serve config: sizes, defaults, every validation message with its field path, unknown
// fields, the JSON and YAML readers, listener overrides, and that the normalized form is stable;
// the controllers form (replication options, peers, admin endpoint, shared names) and the
// single-controller form it normalizes from; the types that come from the schema; and that
// docs/config.md is generated from the schema as it is now.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import {
  AdminConfig,
  BitmapConfig,
  BlockmirrorConfig,
  ConfigError,
  ControllerConfig,
  ExportConfig,
  LimitsConfig,
  ListenConfig,
  MAX_VOLUME_CAPACITY_BYTES,
  PairConfig,
  ConsistencyGroupConfig,
  PeerConfig,
  ReplicationConfig,
  VolumeConfig,
  applyListenOverrides,
  defaultAdminSocketPath,
  defaultConfig,
  formatSize,
  loadConfigFile,
  parseConfigText,
  parseSize,
  toDocument,
  validateConfig,
} from '../../src/cli/config';
import { Volume } from '../../src/storage/volume';
import type { DiskConfig, RaidGroupConfig, WorkDiskConfig, WorkVolumeConfig } from '../../src/cli/config-schema';
import { CONFIG_DOC_PATH, configKeyRows, replaceConfigKeyTable } from '../../scripts/gen-config-docs';

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

/** A controllers-form document: two controllers, each with one volume exported under its own name. */
function twoSites(edit: (document: { controllers: Array<Record<string, unknown>> } & Record<string, unknown>) => void = () => undefined):
  Record<string, unknown> {
  const document = {
    controllers: [
      { id: 'a', volumes: [{ name: 'v', capacity: '4MiB' }], exports: [{ name: 'va', volume: 'v' }],
        replication: { listen: '127.0.0.1:7001' }, peers: [{ id: 'b', address: '127.0.0.1:7002' }] },
      { id: 'b', volumes: [{ name: 'v', capacity: '4MiB' }], exports: [{ name: 'vb', volume: 'v' }],
        replication: { listen: '127.0.0.1:7002' }, peers: [{ id: 'a', address: '127.0.0.1:7001' }] },
    ] as Array<Record<string, unknown>>,
  };
  edit(document);
  return document;
}

function controller(config: BlockmirrorConfig, index = 0): ControllerConfig {
  const found = config.controllers[index];
  assert.ok(found !== undefined, `no controller ${index}`);
  return found;
}

const DEFAULT_REPLICATION: ReplicationConfig = {
  heartbeatIntervalMs: 1000,
  deadPeerTimeoutMs: 5000,
  handshakeTimeoutMs: 5000,
  connectTimeoutMs: 5000,
  reconnectInitialDelayMs: 100,
  reconnectMaxDelayMs: 5000,
  reconnectJitter: 0.2,
  maxFrameBytes: 32 * 1024 * 1024 + 64 * 1024,
  maxQueuedBytes: 64 * 1024 * 1024,
  maxPendingConnections: 16,
};

// The normalized shape other code is written against. The types come from the schema (z.output);
// these lines stop compiling when the schema's output drifts from it: a field added, removed,
// renamed, retyped, or made optional or required.
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false;
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? Equal<keyof A, keyof B> : false) : false;
type Address = { host: string; port: number };
const typeChecks: true[] = [
  true satisfies Same<BlockmirrorConfig, {
    controllers: ControllerConfig[]; listen: ListenConfig[]; admin: AdminConfig; limits: LimitsConfig;
  }>,
  true satisfies Same<ControllerConfig, {
    id: string; volumes: VolumeConfig[]; exports: ExportConfig[]; replication: ReplicationConfig; peers: PeerConfig[];
    pairs: PairConfig[]; consistencyGroups: ConsistencyGroupConfig[]; disks?: DiskConfig[]; groups?: RaidGroupConfig[];
    workVolumes?: WorkVolumeConfig[]; workDisks?: WorkDiskConfig[]; diversion?: 'backup-volume' | 'work-volume' | 'work-disk'; rebuildStepBytes?: number;
  }>,
  true satisfies Same<VolumeConfig, {
    name: string; capacityBytes: number; blockSize: number; backing: 'memory' | 'shared' | 'file'; path?: string;
    strict: boolean; existing: 'open' | 'error'; bitmaps: BitmapConfig[]; sharedName: string; group?: string;
  }>,
  true satisfies Same<BitmapConfig, { name: string; granularityBytes: number; recording: boolean }>,
  true satisfies Same<ExportConfig, { name: string; volume: string; readOnly: boolean; description: string }>,
  true satisfies Equal<ListenConfig, Address | { path: string }>,
  true satisfies Same<ReplicationConfig, {
    listen?: Address; heartbeatIntervalMs: number; deadPeerTimeoutMs: number; handshakeTimeoutMs: number;
    connectTimeoutMs: number; reconnectInitialDelayMs: number; reconnectMaxDelayMs: number; reconnectJitter: number;
    maxFrameBytes: number; maxQueuedBytes: number; maxPendingConnections: number;
  }>,
  true satisfies Same<PeerConfig, { id: string; address?: Address; secretFile?: string; secretEnv?: string }>,
  true satisfies Same<AdminConfig, { socket: string | null; tcp?: Address }>,
  true satisfies Same<LimitsConfig, { maxPayloadBytes: number; workers: number; nativeLanes: boolean }>,
];

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

  describe('validateConfig: the single-controller form', () => {
    it('fills in every default, as one controller "local"', () => {
      const config = validateConfig(minimal());
      assert.deepEqual(config, {
        controllers: [{
          id: 'local',
          volumes: [{
            name: 'vol0', capacityBytes: 64 * 1024 * 1024, blockSize: 4096, backing: 'memory', strict: false,
            existing: 'open', bitmaps: [], sharedName: 'vol0',
          }],
          exports: [{ name: 'vol0', volume: 'vol0', readOnly: false, description: '' }],
          replication: DEFAULT_REPLICATION,
          peers: [],
          pairs: [],
          consistencyGroups: [],
        }],
        listen: [{ host: '127.0.0.1', port: 10809 }],
        admin: { socket: defaultAdminSocketPath() },
        limits: { maxPayloadBytes: 32 * 1024 * 1024, workers: 0, nativeLanes: true },
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
        limits: { maxPayloadBytes: '4MiB', workers: 2 },
      });
      const { volumes, exports } = controller(config);
      assert.equal(volumes[0]?.bitmaps.length, 2);
      assert.deepEqual(volumes[0]?.bitmaps[0], { name: 'backup', granularityBytes: 65536, recording: true });
      assert.deepEqual(volumes[0]?.bitmaps[1], { name: 'cr', granularityBytes: 4096, recording: false });
      assert.equal(volumes[1]?.blockSize, 512);
      assert.equal(volumes[1]?.path, '/tmp/f1.img');
      assert.equal(volumes[1]?.existing, 'error');
      assert.equal(volumes[2]?.backing, 'shared');
      assert.deepEqual(exports[1], { name: 'f1-ro', volume: 'f1', readOnly: true, description: '' });
      assert.deepEqual(exports[2], { name: 'shm1', volume: 'shm1', readOnly: false, description: '' });
      assert.deepEqual(config.listen, [{ host: '0.0.0.0', port: 0 }, { path: '/tmp/bm.sock' }, { host: '127.0.0.1', port: 10810 }]);
      assert.equal(config.limits.maxPayloadBytes, 4 * 1024 * 1024);
      assert.equal(config.limits.workers, 2);
    });

    it('exports every volume under its name when there is no exports list', () => {
      const config = validateConfig({ volumes: [{ name: 'a', capacity: 4096 }, { name: 'b', capacity: 8192 }] });
      assert.deepEqual(controller(config).exports.map((e) => [e.name, e.volume]), [['a', 'a'], ['b', 'b']]);
    });

    it('a shared volume keeps its name as its shared name (existing regions stay found); a top-level id names the controller', () => {
      const config = validateConfig({ id: 'array1', volumes: [{ name: 'db', capacity: '1MiB', backing: 'shared' }] });
      assert.equal(controller(config).id, 'array1');
      assert.equal(controller(config).volumes[0]?.sharedName, 'db');
      const explicit = validateConfig(minimal({ backing: 'shared', sharedName: 'other.name' }));
      assert.equal(controller(explicit).volumes[0]?.sharedName, 'other.name');
    });
  });

  describe('validateConfig: the controllers form', () => {
    it('fills in the defaults of each controller: shared names <id>.<name>, replication, no peers', () => {
      const config = validateConfig({
        controllers: [
          { id: 'a', volumes: [{ name: 'v', capacity: '4MiB', backing: 'shared' }] },
          { id: 'b', volumes: [{ name: 'w', capacity: '4MiB' }] },
          { id: 'c' },
        ],
      });
      assert.deepEqual(config.controllers.map((c) => c.id), ['a', 'b', 'c']);
      assert.equal(controller(config, 0).volumes[0]?.sharedName, 'a.v');
      assert.equal(controller(config, 1).volumes[0]?.sharedName, 'b.w');
      assert.deepEqual(controller(config, 0).exports, [{ name: 'v', volume: 'v', readOnly: false, description: '' }]);
      assert.deepEqual(controller(config, 2), { id: 'c', volumes: [], exports: [], replication: DEFAULT_REPLICATION, peers: [], pairs: [], consistencyGroups: [] });
    });

    it('reads replication options (sizes with units) and peers ("host:port", "[::1]:port", secrets)', () => {
      const config = validateConfig(twoSites((document) => {
        Object.assign(document.controllers[0] as object, {
          replication: {
            listen: '[::1]:0', heartbeatIntervalMs: 250, deadPeerTimeoutMs: 2000, handshakeTimeoutMs: 1000,
            connectTimeoutMs: 300, reconnectInitialDelayMs: 50, reconnectMaxDelayMs: 50, reconnectJitter: 0,
            maxFrameBytes: '1MiB', maxQueuedBytes: '8 MiB', maxPendingConnections: 4,
          },
          peers: [
            { id: 'b', address: '[::1]:7002', secretFile: '/etc/bm/b.secret' },
            { id: 'c', secretEnv: 'BM_SECRET_C' },
            { id: 'd', address: 'peer-d.example:7004' },
          ],
        });
      }));
      assert.deepEqual(controller(config).replication, {
        listen: { host: '::1', port: 0 }, heartbeatIntervalMs: 250, deadPeerTimeoutMs: 2000, handshakeTimeoutMs: 1000,
        connectTimeoutMs: 300, reconnectInitialDelayMs: 50, reconnectMaxDelayMs: 50, reconnectJitter: 0,
        maxFrameBytes: 1024 * 1024, maxQueuedBytes: 8 * 1024 * 1024, maxPendingConnections: 4,
      });
      assert.deepEqual(controller(config).peers, [
        { id: 'b', address: { host: '::1', port: 7002 }, secretFile: '/etc/bm/b.secret' },
        { id: 'c', secretEnv: 'BM_SECRET_C' },
        { id: 'd', address: { host: 'peer-d.example', port: 7004 } },
      ]);
      assert.deepEqual(controller(config, 1).replication, { ...DEFAULT_REPLICATION, listen: { host: '127.0.0.1', port: 7002 } });
    });

    it('two controllers may both listen on port 0 (any free port)', () => {
      assert.doesNotThrow(() => validateConfig(twoSites((document) => {
        for (const entry of document.controllers) entry.replication = { listen: '127.0.0.1:0' };
      })));
    });

    it('the admin endpoint: the default socket, an explicit one, none, and a loopback TCP address', () => {
      assert.deepEqual(validateConfig(minimal()).admin, { socket: defaultAdminSocketPath() });
      assert.deepEqual(validateConfig({ ...minimal(), admin: { socket: '/tmp/bm-admin.sock' } }).admin, { socket: '/tmp/bm-admin.sock' });
      assert.deepEqual(validateConfig({ ...minimal(), admin: { socket: null, tcp: '127.0.0.1:0' } }).admin,
        { socket: null, tcp: { host: '127.0.0.1', port: 0 } });
      for (const host of ['::1', 'localhost']) {
        const where = host.includes(':') ? `[${host}]:9000` : `${host}:9000`;
        assert.deepEqual(validateConfig({ ...minimal(), admin: { tcp: where } }).admin.tcp, { host, port: 9000 });
      }
    });
  });

  describe('defaultAdminSocketPath', () => {
    const saved = { ...process.env };
    afterEach(() => {
      for (const key of ['BLOCKMIRROR_ADMIN_SOCKET', 'XDG_RUNTIME_DIR']) {
        if (saved[key] === undefined) delete process.env[key];
        else process.env[key] = saved[key];
      }
    });

    it('is $BLOCKMIRROR_ADMIN_SOCKET, else under $XDG_RUNTIME_DIR, else under the temporary directory', () => {
      const uid = process.getuid?.() ?? 0;
      process.env.BLOCKMIRROR_ADMIN_SOCKET = '/run/bm/admin.sock';
      assert.equal(defaultAdminSocketPath(), '/run/bm/admin.sock');
      delete process.env.BLOCKMIRROR_ADMIN_SOCKET;
      process.env.XDG_RUNTIME_DIR = '/run/user/1234';
      assert.equal(defaultAdminSocketPath(), `/run/user/1234/blockmirror-${uid}/admin.sock`);
      delete process.env.XDG_RUNTIME_DIR;
      assert.equal(defaultAdminSocketPath(), `${os.tmpdir()}/blockmirror-${uid}/admin.sock`);
    });

    it('a default longer than a socket path can be is a config error naming admin.socket', () => {
      process.env.BLOCKMIRROR_ADMIN_SOCKET = `/tmp/${'s'.repeat(200)}`;
      assert.deepEqual(issuesOf(minimal()).map((issue) => issue.replace(/".*"/, '"…"')),
        ['admin.socket: the default path "…" is 205 bytes, more than 107: set admin.socket (or BLOCKMIRROR_ADMIN_SOCKET)']);
      assert.doesNotThrow(() => validateConfig({ ...minimal(), admin: { socket: null } }));
    });
  });

  describe('the built-in default and toDocument', () => {
    it('the default config: site-a and site-b in one process, replicating to each other', () => {
      const config = defaultConfig();
      assert.deepEqual(config.controllers.map((c) => c.id), ['site-a', 'site-b']);
      const [siteA, siteB] = [controller(config, 0), controller(config, 1)];
      for (const site of [siteA, siteB]) {
        assert.equal(site.volumes.length, 1);
        assert.equal(site.volumes[0]?.name, 'vol0');
        assert.equal(site.volumes[0]?.capacityBytes, 1024 ** 3);
        assert.equal(site.volumes[0]?.backing, 'memory');
        assert.equal(site.volumes[0]?.sharedName, `${site.id}.vol0`);
      }
      assert.deepEqual(siteA.exports, [{ name: 'vol0', volume: 'vol0', readOnly: false, description: 'blockmirror default volume' }]);
      assert.deepEqual(siteB.exports, [{ name: 'vol0-b', volume: 'vol0', readOnly: false, description: 'site-b copy of vol0 (read-only while it is the secondary)' }]);
      assert.deepEqual(siteA.replication, { ...DEFAULT_REPLICATION, listen: { host: '127.0.0.1', port: 10810 } });
      assert.deepEqual(siteB.replication, { ...DEFAULT_REPLICATION, listen: { host: '127.0.0.1', port: 10811 } });
      assert.deepEqual(siteA.peers, [{ id: 'site-b', address: { host: '127.0.0.1', port: 10811 } }]);
      assert.deepEqual(siteB.peers, [{ id: 'site-a', address: { host: '127.0.0.1', port: 10810 } }]);
      assert.deepEqual(config.listen, [{ host: '127.0.0.1', port: 10809 }]);
      assert.deepEqual(config.admin, { socket: defaultAdminSocketPath() });
      assert.ok(!JSON.stringify(config).includes('secret'), 'the default config has no secrets');
    });

    it('toDocument output validates back to the same config (idempotent)', () => {
      const configs: BlockmirrorConfig[] = [
        defaultConfig(),
        validateConfig(minimal()),
        validateConfig({
          id: 'solo',
          volumes: [{ name: 'f', capacity: '1000KiB', blockSize: 512, backing: 'file', path: '/tmp/x',
            bitmaps: [{ name: 'b:1', granularity: '1GiB' }] }, { name: 's', capacity: '4MiB', backing: 'shared' }],
          listen: [{ path: '/tmp/s.sock' }],
          admin: { socket: null, tcp: 'localhost:0' },
        }),
        validateConfig(twoSites((document) => {
          document.controllers[0] = {
            ...document.controllers[0],
            volumes: [{ name: 'v', capacity: '4MiB', backing: 'shared', sharedName: 'custom' },
              { name: 'w', capacity: 12288, backing: 'shared' }],
            replication: { listen: '[::1]:7001', maxFrameBytes: 100_000, maxQueuedBytes: '1GiB', reconnectJitter: 0.5 },
            peers: [{ id: 'b', address: '[fe80::1]:7002', secretEnv: 'BM_B' }, { id: 'c', secretFile: 'c.key' }, { id: 'd' }],
          };
          document.controllers.push({ id: 'c' });
          document.limits = { maxPayloadBytes: '1GiB' };
        })),
      ];
      for (const config of configs) {
        const document = JSON.parse(JSON.stringify(toDocument(config))) as Record<string, unknown>;
        assert.ok(Array.isArray(document.controllers), 'toDocument writes the controllers form');
        assert.deepEqual(validateConfig(document), config);
      }
    });

    it('toDocument writes sharedName only when it is not the default <id>.<name>', () => {
      const written = (raw: unknown): unknown[] => {
        const document = toDocument(validateConfig(raw)) as { controllers: Array<{ volumes: Array<{ sharedName?: string }> }> };
        return document.controllers.flatMap((c) => c.volumes.map((v) => v.sharedName));
      };
      assert.deepEqual(written(minimal({ backing: 'shared' })), ['vol0']);
      assert.deepEqual(written({ controllers: [{ id: 'a', volumes: [{ name: 'v', capacity: 4096, backing: 'shared' },
        { name: 'w', capacity: 4096, backing: 'shared', sharedName: 'x' }] }] }), [undefined, 'x']);
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
      ['capacity of the wrong type', minimal({ capacity: true }),
        /^volumes\[0\]\.capacity: must be a number of bytes or a string like "64KiB", got boolean true$/],
      ['blockSize not a power of two', minimal({ blockSize: 3000 }),
        /^volumes\[0\]\.blockSize: must be a power of two from 512 to 65536, got 3000$/],
      ['blockSize too large', minimal({ blockSize: '128KiB' }), /^volumes\[0\]\.blockSize: must be a power of two/],
      ['backing unknown', minimal({ backing: 'disk' }),
        /^volumes\[0\]\.backing: must be one of "memory", "shared", "file", got "disk"$/],
      ['file without path', minimal({ backing: 'file' }), /^volumes\[0\]\.path: is required with backing "file"$/],
      ['path without file', minimal({ path: '/tmp/x' }),
        /^volumes\[0\]\.path: is only allowed with backing "file", got backing "memory"$/],
      ['empty path', minimal({ backing: 'file', path: '' }), /^volumes\[0\]\.path: must not be empty$/],
      ['two volumes on one file', { volumes: [{ name: 'a', capacity: 4096, backing: 'file', path: '/tmp/same' },
        { name: 'b', capacity: 4096, backing: 'file', path: '/tmp/../tmp/same' }] },
      /^volumes\[1\]\.path: same file as volume "a" of controller "local"$/],
      ['strict not boolean', minimal({ strict: 'yes' }), /^volumes\[0\]\.strict: must be true or false, got "yes"$/],
      ['bad volume name', minimal({ name: 'a/b' }), /^volumes\[0\]\.name: must match \[A-Za-z0-9._-\]\{1,184\}, got "a\/b"$/],
      ['bad sharedName', minimal({ sharedName: 'a b' }), /^volumes\[0\]\.sharedName: must match \[A-Za-z0-9._-\]\{1,184\}, got "a b"$/],
      ['duplicate volume', { volumes: [{ name: 'a', capacity: 4096 }, { name: 'a', capacity: 4096 }] },
        /^volumes\[1\]\.name: duplicate volume name "a"$/],
      ['unknown volume field', minimal({ size: 5 }), /^volumes\[0\]\.size: unknown field \(allowed: name, capacity, blockSize, backing, path, sharedName, /],
      ['unknown top field', { ...minimal(), volume: [] },
        /^volume: unknown field \(allowed: controllers, listen, admin, limits, id, volumes, exports\)$/],
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
      ['export description too long', { ...minimal(), exports: [{ name: 'vol0', description: 'd'.repeat(4097) }] },
        /^exports\[0\]\.description: must be at most 4096 bytes \(NBD limit\)$/],
      ['export readOnly type', { ...minimal(), exports: [{ name: 'vol0', readOnly: 1 }] },
        /^exports\[0\]\.readOnly: must be true or false, got number 1$/],
      ['empty exports', { ...minimal(), exports: [] }, /^exports: must have at least one export$/],
      ['listen port range', { ...minimal(), listen: [{ host: '127.0.0.1', port: 70000 }] },
        /^listen\[0\]\.port: must be an integer from 0 to 65535 \(0: any free port\), got number 70000$/],
      ['listen port fraction', { ...minimal(), listen: [{ port: 1.5 }] }, /^listen\[0\]\.port: must be an integer from 0 to 65535/],
      ['listen port type', { ...minimal(), listen: [{ port: '10809' }] }, /^listen\[0\]\.port: must be an integer/],
      ['listen empty host', { ...minimal(), listen: [{ host: '' }] }, /^listen\[0\]\.host: must not be empty$/],
      ['listen socket with port', { ...minimal(), listen: [{ path: '/tmp/s', port: 1 }] },
        /^listen\[0\]\.port: unknown field \(allowed: path\)$/],
      ['listen socket path too long', { ...minimal(), listen: [{ path: `/tmp/${'s'.repeat(200)}` }] },
        /^listen\[0\]\.path: must be 1 to 107 bytes long/],
      ['listen empty', { ...minimal(), listen: [] }, /^listen: must have at least one entry$/],
      ['listen duplicate', { ...minimal(), listen: [{ port: 1 }, { port: 1 }] }, /^listen\[1\]: duplicate listener$/],
      ['limits', { ...minimal(), limits: { maxPayloadBytes: '1KiB' } },
        /^limits\.maxPayloadBytes: must be from 64KiB to 1GiB, got 1024$/],
      ['limits unknown', { ...minimal(), limits: { maxConnections: 1 } }, /^limits\.maxConnections: unknown field/],
      ['limits workers too many', { ...minimal(), limits: { workers: 65 } }, /^limits\.workers: /],
      ['limits workers fractional', { ...minimal(), limits: { workers: 1.5 } }, /^limits\.workers: /],
      ['no volumes', {}, /^volumes: is required \(or give controllers\)$/],
      ['volumes empty', { volumes: [] }, /^volumes: must have at least one volume$/],
      ['volumes not an array', { volumes: {} }, /^volumes: must be an array, got an object$/],
      ['document not an object', [1], /^\(document\): must be an object, got an array$/],
      ['bad legacy id', { ...minimal(), id: 'a b' }, /^id: must match \[A-Za-z0-9._-\]\{1,64\}, got "a b"$/],

      // The controllers form.
      ['both forms', { ...twoSites(), volumes: [{ name: 'x', capacity: 4096 }] },
        /^volumes: cannot be combined with controllers/],
      ['both forms: exports', { ...twoSites(), exports: [{ name: 'x' }] }, /^exports: cannot be combined with controllers/],
      ['both forms: id', { ...twoSites(), id: 'x' }, /^id: cannot be combined with controllers/],
      ['no controllers', { controllers: [] }, /^controllers: must have at least one controller$/],
      ['too many controllers', { controllers: Array.from({ length: 65 }, (_, i) => ({ id: `c${i}` })) },
        /^controllers: must have at most 64 entries, got 65$/],
      ['controller without id', { controllers: [{ volumes: [] }] }, /^controllers\[0\]\.id: is required$/],
      ['bad controller id', twoSites((d) => { (d.controllers[1] as { id: string }).id = 'b/c'; }),
        /^controllers\[1\]\.id: must match \[A-Za-z0-9._-\]\{1,64\}, got "b\/c"$/],
      ['controller id too long', twoSites((d) => { (d.controllers[1] as { id: string }).id = 'c'.repeat(65); }),
        /^controllers\[1\]\.id: must match/],
      ['duplicate controller id', twoSites((d) => { (d.controllers[1] as { id: string }).id = 'a'; }),
        /^controllers\[1\]\.id: duplicate controller id "a"$/],
      ['unknown controller field', twoSites((d) => { (d.controllers[0] as Record<string, unknown>).listen = []; }),
        /^controllers\[0\]\.listen: unknown field \(allowed: id, volumes, exports, replication, peers, pairs, consistencyGroups, disks, groups, workVolumes, workDisks, diversion, rebuildStepBytes\)$/],
      ['duplicate export across controllers', twoSites((d) => { d.controllers[1]!.exports = [{ name: 'va', volume: 'v' }]; }),
        /^controllers\[1\]\.exports\[0\]\.name: duplicate export name "va" \(also an export of controller "a"\)$/],
      ['implicit exports that clash across controllers', twoSites((d) => {
        delete d.controllers[0]!.exports;
        delete d.controllers[1]!.exports;
      }), /^controllers\[1\]\.volumes\[0\]\.name: the implicit export "v" \(one per volume when exports is not given\) is also an export of controller "a": give exports explicitly$/],
      ['export of a volume of another controller', twoSites((d) => {
        d.controllers[0]!.volumes = [{ name: 'only-a', capacity: 4096 }];
        d.controllers[1]!.exports = [{ name: 'vb', volume: 'only-a' }];
        d.controllers[0]!.exports = [{ name: 'va', volume: 'only-a' }];
      }), /^controllers\[1\]\.exports\[0\]\.volume: no volume named "only-a" \(volumes: "v"\)$/],
      ['no export in all', { controllers: [{ id: 'a' }, { id: 'b', volumes: [{ name: 'v', capacity: 4096 }], exports: [] }] },
        /^controllers: must have at least one export in all: the NBD server needs one$/],
      ['two shared volumes on one shared name', twoSites((d) => {
        d.controllers[0]!.volumes = [{ name: 'v', capacity: 4096, backing: 'shared', sharedName: 'db' }];
        d.controllers[1]!.volumes = [{ name: 'v', capacity: 4096, backing: 'shared', sharedName: 'db' }];
      }), /^controllers\[1\]\.volumes\[0\]\.sharedName: sharedName "db" is already the shared name of volume "v" of controller "a"$/],
      ['an explicit shared name equal to another volume\'s default', twoSites((d) => {
        d.controllers[0]!.volumes = [{ name: 'v', capacity: 4096, backing: 'shared' }];
        d.controllers[1]!.volumes = [{ name: 'v', capacity: 4096, backing: 'shared', sharedName: 'a.v' }];
      }), /^controllers\[1\]\.volumes\[0\]\.sharedName: sharedName "a\.v" is already the shared name of volume "v" of controller "a"$/],
      ['a default shared name too long', { controllers: [{ id: 'c'.repeat(64), volumes: [{ name: 'v'.repeat(150), capacity: 4096 }] }] },
        /^controllers\[0\]\.volumes\[0\]\.name: the default sharedName "c+\.v+" \(controller id "\." name\) is 215 characters, more than 184: shorten the name or set sharedName$/],
      ['file volumes of two controllers on one file', twoSites((d) => {
        d.controllers[0]!.volumes = [{ name: 'v', capacity: 4096, backing: 'file', path: '/tmp/one.img' }];
        d.controllers[1]!.volumes = [{ name: 'v', capacity: 4096, backing: 'file', path: '/tmp/one.img' }];
      }), /^controllers\[1\]\.volumes\[0\]\.path: same file as volume "v" of controller "a"$/],

      // Replication options.
      ['replication listen clash', twoSites((d) => { d.controllers[1]!.replication = { listen: '127.0.0.1:7001' }; }),
        /^controllers\[1\]\.replication\.listen: same address as the replication listener of controller "a"$/],
      ['replication listen on the NBD port', twoSites((d) => { d.controllers[0]!.replication = { listen: '127.0.0.1:10809' }; }),
        /^controllers\[0\]\.replication\.listen: same address as the NBD listener 127\.0\.0\.1:10809$/],
      ['replication listen on a configured NBD port', twoSites((d) => {
        d.listen = [{ path: '/tmp/x.sock' }, { host: '::1', port: 7003 }];
        d.controllers[0]!.replication = { listen: '[::1]:7003' };
      }), /^controllers\[0\]\.replication\.listen: same address as the NBD listener \[::1\]:7003$/],
      ['replication listen not host:port', twoSites((d) => { d.controllers[0]!.replication = { listen: '7001' }; }),
        /^controllers\[0\]\.replication\.listen: must be "host:port" \(an IPv6 host in brackets: "\[::1\]:10810"\), got "7001"$/],
      ['replication listen as an object', twoSites((d) => { d.controllers[0]!.replication = { listen: { host: 'h', port: 1 } }; }),
        /^controllers\[0\]\.replication\.listen: must be a string, got an object$/],
      ['replication listen port out of range', twoSites((d) => { d.controllers[0]!.replication = { listen: '127.0.0.1:65536' }; }),
        /^controllers\[0\]\.replication\.listen: port must be from 0 to 65535 \(0: any free port\), got "127\.0\.0\.1:65536"$/],
      ['heartbeat too fast', twoSites((d) => { d.controllers[0]!.replication = { heartbeatIntervalMs: 5 }; }),
        /^controllers\[0\]\.replication\.heartbeatIntervalMs: must be an integer from 10 to 60000, got number 5$/],
      ['heartbeat not an integer', twoSites((d) => { d.controllers[0]!.replication = { heartbeatIntervalMs: 10.5 }; }),
        /^controllers\[0\]\.replication\.heartbeatIntervalMs: must be an integer from 10 to 60000, got number 10\.5$/],
      ['dead-peer timeout not above the heartbeat', twoSites((d) => {
        d.controllers[0]!.replication = { heartbeatIntervalMs: 2000, deadPeerTimeoutMs: 2000 };
      }), /^controllers\[0\]\.replication\.deadPeerTimeoutMs: must be more than heartbeatIntervalMs 2000, got 2000$/],
      ['dead-peer timeout too long', twoSites((d) => { d.controllers[0]!.replication = { deadPeerTimeoutMs: 600001 }; }),
        /^controllers\[0\]\.replication\.deadPeerTimeoutMs: must be an integer from 1 to 600000, got number 600001$/],
      ['handshake timeout too short', twoSites((d) => { d.controllers[0]!.replication = { handshakeTimeoutMs: 9 }; }),
        /^controllers\[0\]\.replication\.handshakeTimeoutMs: must be an integer from 10 to 600000, got number 9$/],
      ['reconnect delays inverted', twoSites((d) => {
        d.controllers[0]!.replication = { reconnectInitialDelayMs: 1000, reconnectMaxDelayMs: 500 };
      }), /^controllers\[0\]\.replication\.reconnectMaxDelayMs: must be at least reconnectInitialDelayMs 1000, got 500$/],
      ['jitter above 1', twoSites((d) => { d.controllers[0]!.replication = { reconnectJitter: 1.5 }; }),
        /^controllers\[0\]\.replication\.reconnectJitter: must be a number from 0 to 1, got number 1\.5$/],
      ['jitter as a string', twoSites((d) => { d.controllers[0]!.replication = { reconnectJitter: '20%' }; }),
        /^controllers\[0\]\.replication\.reconnectJitter: must be a number from 0 to 1, got "20%"$/],
      ['frame limit too small', twoSites((d) => { d.controllers[0]!.replication = { maxFrameBytes: '32KiB' }; }),
        /^controllers\[0\]\.replication\.maxFrameBytes: must be from 64KiB to 1GiB, got 32768$/],
      ['queue smaller than a frame', twoSites((d) => { d.controllers[0]!.replication = { maxQueuedBytes: '1MiB' }; }),
        /^controllers\[0\]\.replication\.maxQueuedBytes: must be at least maxFrameBytes 33619968, got 1048576$/],
      ['pending connections zero', twoSites((d) => { d.controllers[0]!.replication = { maxPendingConnections: 0 }; }),
        /^controllers\[0\]\.replication\.maxPendingConnections: must be an integer from 1 to 1024, got number 0$/],
      ['unknown replication option', twoSites((d) => { d.controllers[0]!.replication = { heartbeatMs: 1 }; }),
        /^controllers\[0\]\.replication\.heartbeatMs: unknown field \(allowed: listen, heartbeatIntervalMs, deadPeerTimeoutMs, /],

      // Peers.
      ['peer with its own controller id', twoSites((d) => { d.controllers[0]!.peers = [{ id: 'b' }, { id: 'a' }]; }),
        /^controllers\[0\]\.peers\[1\]\.id: must not be the controller's own id "a"$/],
      ['duplicate peer', twoSites((d) => { d.controllers[0]!.peers = [{ id: 'b' }, { id: 'b' }]; }),
        /^controllers\[0\]\.peers\[1\]\.id: duplicate peer id "b"$/],
      ['peer without id', twoSites((d) => { d.controllers[0]!.peers = [{ address: 'h:1' }]; }),
        /^controllers\[0\]\.peers\[0\]\.id: is required$/],
      ['peer address port 0', twoSites((d) => { d.controllers[0]!.peers = [{ id: 'b', address: 'h:0' }]; }),
        /^controllers\[0\]\.peers\[0\]\.address: port must be from 1 to 65535, got "h:0"$/],
      ['peer IPv6 address without brackets', twoSites((d) => { d.controllers[0]!.peers = [{ id: 'b', address: '::1:7002' }]; }),
        /^controllers\[0\]\.peers\[0\]\.address: must be "host:port"/],
      ['peer with two secrets', twoSites((d) => {
        d.controllers[0]!.peers = [{ id: 'b', secretFile: '/etc/b.secret', secretEnv: 'B_SECRET' }];
      }), /^controllers\[0\]\.peers\[0\]\.secretEnv: cannot be combined with secretFile: give one of them$/],
      ['peer secretEnv not a variable name', twoSites((d) => { d.controllers[0]!.peers = [{ id: 'b', secretEnv: '1-x' }]; }),
        /^controllers\[0\]\.peers\[0\]\.secretEnv: must match \[A-Za-z_\]\[A-Za-z0-9_\]\*, got "1-x"$/],
      ['peer empty secretFile', twoSites((d) => { d.controllers[0]!.peers = [{ id: 'b', secretFile: '' }]; }),
        /^controllers\[0\]\.peers\[0\]\.secretFile: must not be empty$/],
      ['unknown peer field', twoSites((d) => { d.controllers[0]!.peers = [{ id: 'b', secret: 'hunter2' }]; }),
        /^controllers\[0\]\.peers\[0\]\.secret: unknown field \(allowed: id, address, secretFile, secretEnv\)$/],

      // The admin endpoint.
      ['admin TCP on a non-loopback host', { ...minimal(), admin: { tcp: '0.0.0.0:9000' } },
        /^admin\.tcp: host must be a loopback address \(127\.0\.0\.1, ::1 or localhost\): the admin endpoint must not be reachable from the network, got "0\.0\.0\.0:9000"$/],
      ['admin TCP on a LAN address', { ...minimal(), admin: { tcp: '[fe80::1]:9000' } }, /^admin\.tcp: host must be a loopback address/],
      ['admin socket too long', { ...minimal(), admin: { socket: `/tmp/${'s'.repeat(200)}` } }, /^admin\.socket: must be 1 to 107 bytes long, got 205$/],
      ['admin socket empty', { ...minimal(), admin: { socket: '' } }, /^admin\.socket: must be 1 to 107 bytes long, got 0$/],
      ['admin socket of the wrong type', { ...minimal(), admin: { socket: false } }, /^admin\.socket: must be a string, got boolean false$/],
      ['unknown admin field', { ...minimal(), admin: { port: 1 } }, /^admin\.port: unknown field \(allowed: socket, tcp\)$/],
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

    it('reports every problem of a controllers-form file, in the order of the file', () => {
      const issues = issuesOf({
        controllers: [
          { id: 'a', volumes: [{ name: 'v', capacity: 1000, strict: 'no' }], exports: [{ name: 'x', volume: 'w' }],
            replication: { heartbeatIntervalMs: 1.5, maxFrameBytes: '1GB' }, peers: [{ id: 'a', address: 'h:0' }] },
          { id: 'a', peers: [{ id: 'b', secretFile: 'f', secretEnv: 'E' }], colour: 'red' },
        ],
        listen: [{ port: 1.5 }],
        admin: { tcp: '10.0.0.1:1' },
      });
      assert.deepEqual(issues, [
        'controllers[0].volumes[0].capacity: must be a multiple of blockSize 4096, got 1000',
        'controllers[0].volumes[0].strict: must be true or false, got "no"',
        'controllers[0].exports[0].volume: no volume named "w" (volumes: "v")',
        'controllers[0].replication.heartbeatIntervalMs: must be an integer from 10 to 60000, got number 1.5',
        'controllers[0].replication.maxFrameBytes: unknown size unit "GB" in "1GB" (use binary units KiB/MiB/GiB/TiB)',
        'controllers[0].peers[0].id: must not be the controller\'s own id "a"',
        'controllers[0].peers[0].address: port must be from 1 to 65535, got "h:0"',
        'controllers[1].id: duplicate controller id "a"',
        'controllers[1].peers[0].secretEnv: cannot be combined with secretFile: give one of them',
        'controllers[1].colour: unknown field (allowed: id, volumes, exports, replication, peers, pairs, consistencyGroups, disks, groups, workVolumes, workDisks, diversion, rebuildStepBytes)',
        'listen[0].port: must be an integer from 0 to 65535 (0: any free port), got number 1.5',
        'admin.tcp: host must be a loopback address (127.0.0.1, ::1 or localhost): the admin endpoint must not be ' +
          'reachable from the network, got "10.0.0.1:1"',
      ]);
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

    it('a secret never appears in a message', () => {
      const issues = issuesOf(twoSites((d) => { d.controllers[0]!.peers = [{ id: 'b', secret: 'hunter2' }]; }));
      assert.ok(!issues.join('\n').includes('hunter2'), issues.join('\n'));
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
      assert.equal(controller(loadConfigFile(file)).volumes[0]?.capacityBytes, 64 * 1024 * 1024);
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
        assert.equal(controller(config).volumes[0]?.capacityBytes, 1024 ** 3);
        assert.equal(controller(config).volumes[0]?.bitmaps[0]?.granularityBytes, 65536);
        assert.equal(controller(config).exports[0]?.readOnly, true);
        assert.deepEqual(config.listen, [{ path: '/tmp/bm-test.sock' }]);
      }
    });

    it('reads a controllers-form YAML file with peers and the admin endpoint', () => {
      const file = path.join(directory, 'sites.yaml');
      fs.writeFileSync(file, [
        'controllers:',
        '  - id: site-a',
        '    volumes: [{ name: db, capacity: 256MiB, backing: shared }]',
        '    replication:',
        '      listen: 127.0.0.1:10810',
        '      heartbeatIntervalMs: 500',
        '    peers:',
        '      - { id: site-b, address: "127.0.0.1:10811", secretEnv: BM_LINK_SECRET }',
        'admin:',
        '  socket: null',
        '  tcp: 127.0.0.1:9090',
      ].join('\n'));
      const config = loadConfigFile(file);
      assert.equal(controller(config).volumes[0]?.sharedName, 'site-a.db');
      assert.equal(controller(config).replication.heartbeatIntervalMs, 500);
      assert.deepEqual(controller(config).peers, [{ id: 'site-b', address: { host: '127.0.0.1', port: 10811 }, secretEnv: 'BM_LINK_SECRET' }]);
      assert.deepEqual(config.admin, { socket: null, tcp: { host: '127.0.0.1', port: 9090 } });
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

    it('changes only the NBD listeners', () => {
      const config = defaultConfig();
      const overridden = applyListenOverrides(config, { port: 0 });
      assert.equal(overridden.controllers, config.controllers);
      assert.equal(overridden.admin, config.admin);
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

  describe('docs/config.md', () => {
    it('lists every key of the schema, each with a type and a meaning', () => {
      const rows = configKeyRows();
      const keys = rows.map((row) => row.key);
      for (const key of ['controllers', 'controllers[].id', 'controllers[].volumes[].sharedName', 'controllers[].volumes[].bitmaps[].granularity',
        'controllers[].exports[].readOnly', 'controllers[].replication.listen', 'controllers[].replication.heartbeatIntervalMs',
        'controllers[].replication.maxQueuedBytes', 'controllers[].peers[].secretEnv', 'listen[].path', 'admin.socket', 'admin.tcp',
        'limits.maxPayloadBytes', 'id', 'volumes', 'exports']) {
        assert.ok(keys.includes(key), `no row for ${key}`);
      }
      assert.equal(new Set(keys).size, keys.length, 'a key is listed twice');
      for (const row of rows) {
        assert.ok(row.type !== '' && row.description !== '', `${row.key}: type ${JSON.stringify(row.type)}, meaning ${JSON.stringify(row.description)}`);
      }
      const row = (key: string) => rows.find((candidate) => candidate.key === key);
      assert.deepEqual(row('controllers[].replication.maxFrameBytes')?.type, 'size');
      assert.deepEqual(row('controllers[].replication.heartbeatIntervalMs')?.default, '`1000`');
      assert.deepEqual(row('controllers[].volumes[].capacity')?.default, 'required');
      assert.deepEqual(row('controllers[].volumes[].backing')?.type, '`"memory"` or `"shared"` or `"file"`');
    });

    it('the table in docs/config.md is the one the schema generates (npm run docs:config rewrites it)', () => {
      const text = fs.readFileSync(CONFIG_DOC_PATH, 'utf8');
      assert.equal(replaceConfigKeyTable(text), text,
        'docs/config.md is out of date with src/cli/config-schema.ts: run `npm run docs:config`');
    });
  });

  it('the type checks above compiled', () => {
    assert.equal(typeChecks.length, 10);
  });
});

describe('50 config: pairs', () => {
  function withPairs(pairs: unknown[]): Record<string, unknown> {
    return {
      controllers: [{
        id: 'a',
        volumes: [{ name: 'v', capacity: '64MiB' }, { name: 'w', capacity: '64MiB' }],
        peers: [{ id: 'b', address: '127.0.0.1:7001' }],
        pairs,
      }],
    };
  }

  it('normalizes a pair with its defaults, and round-trips through toDocument', () => {
    const config = validateConfig(withPairs([{ name: 'p', volume: 'v', peer: 'b', remoteVolume: 'v', role: 'primary' }]));
    assert.deepEqual(config.controllers[0]?.pairs, [
      { name: 'p', volume: 'v', peer: 'b', remoteVolume: 'v', mode: 'async', role: 'primary', fence: 'never', autoResume: true, journalHold: 0.75 },
    ]);
    assert.deepEqual(validateConfig(toDocument(config)), config);
    const builtIn = defaultConfig();
    assert.equal(builtIn.controllers[0]?.pairs[0]?.mode, 'sync');
    assert.equal(builtIn.controllers[1]?.pairs[0]?.role, 'secondary');
  });

  it('names the field of every pair problem', () => {
    let issues: string[] = [];
    try {
      validateConfig(withPairs([
        { name: 'p', volume: 'nope', peer: 'b', remoteVolume: 'v', role: 'primary' },
        { name: 'p', volume: 'v', peer: 'z', remoteVolume: 'v', role: 'secondary' },
        { name: 'q', volume: 'v', peer: 'b', remoteVolume: 'v', role: 'primary', fence: 'data' },
        { name: 'r', volume: 'w', peer: 'b', remoteVolume: 'w', role: 'sideways' },
      ]));
    } catch (error) {
      issues = (error as ConfigError).issues;
    }
    const text = issues.join('\n');
    assert.match(text, /controllers\[0\]\.pairs\[0\]\.volume: no volume named "nope"/);
    assert.match(text, /controllers\[0\]\.pairs\[1\]\.name: duplicate pair name "p"/);
    assert.match(text, /controllers\[0\]\.pairs\[1\]\.peer: not a peer of controller "a"/);
    assert.match(text, /controllers\[0\]\.pairs\[2\]\.volume: "v" is the secondary of another pair; it cannot also be a primary/);
    assert.match(text, /controllers\[0\]\.pairs\[2\]\.fence: fence "data" needs mode "sync"/);
    assert.match(text, /controllers\[0\]\.pairs\[3\]\.role:/);
  });

  it('accepts a journal group of pairs with one peer, mode and role, and names each group problem', () => {
    const grouped = [
      { name: 'p', volume: 'v', peer: 'b', remoteVolume: 'v', role: 'primary', journalGroup: 'db' },
      { name: 'q', volume: 'w', peer: 'b', remoteVolume: 'w', role: 'primary', journalGroup: 'db' },
    ];
    const config = validateConfig(withPairs(grouped));
    assert.deepEqual(config.controllers[0]?.pairs.map((pair) => pair.journalGroup), ['db', 'db']);
    assert.deepEqual(validateConfig(toDocument(config)), config);
    let issues: string[] = [];
    try {
      validateConfig(withPairs([
        grouped[0],
        { ...grouped[1], mode: 'sync' },
        { name: 'r', volume: 'v', peer: 'b', remoteVolume: 'x', role: 'primary' },
        { name: 's', volume: 'w', peer: 'b', remoteVolume: 'w', role: 'primary', journalGroup: 'bad group!' },
      ]));
    } catch (error) {
      issues = (error as ConfigError).issues;
    }
    const text = issues.join('\n');
    assert.match(text, /controllers\[0\]\.pairs\[1\]\.journalGroup: journal group "db" has mode "async" \(pairs\[0\]\); one mode per group/);
    assert.match(text, /controllers\[0\]\.pairs\[2\]\.volume: "v" is in a journal group; a grouped volume is in no other pair/);
    assert.match(text, /controllers\[0\]\.pairs\[3\]\.journalGroup:/);
  });
});
