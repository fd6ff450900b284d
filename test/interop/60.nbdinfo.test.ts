// nbdinfo against the real `blockmirror serve` process: the export list, sizes, block sizes, meta
// contexts, and the two maps: base:allocation after writes, trims and zeroes made with qemu-io,
// and blockmirror:dirty:NAME against the tracks those requests touched.
import * as assert from 'node:assert/strict';

import { ServeProcess } from '../helpers/serve-process';
import { makeTempDir, removeTempDir, requireTool, run } from '../helpers/tools';

const KIB = 1024;
const MIB = 1024 * 1024;
const TRACK_BYTES = 64 * KIB;

interface MapExtent {
  offset: number;
  length: number;
  type: number;
  description?: string;
}

interface InfoExport {
  'export-name': string;
  description?: string;
  'export-size': number;
  is_read_only: boolean;
  contexts?: string[];
  block_size_minimum?: number;
  block_size_preferred?: number;
  block_size_maximum?: number;
  can_trim?: boolean;
  can_zero?: boolean;
  can_flush?: boolean;
  can_multi_conn?: boolean;
}

/** The extents of `map` that overlap [start, end). */
function overlapping(map: MapExtent[], start: number, end: number): MapExtent[] {
  return map.filter((e) => e.offset < end && e.offset + e.length > start);
}

function assertCovers(map: MapExtent[], size: number): void {
  let at = 0;
  for (const extent of map) {
    assert.equal(extent.offset, at, `map has a gap or overlap at ${at}: ${JSON.stringify(map)}`);
    at += extent.length;
  }
  assert.equal(at, size, 'map does not cover the export');
}

/**
 * NBD block size constraints (doc/proto.md): minimum a power of two <= the volume's block size
 * (exactly it when the volume is strict), preferred a power of two >= max(512, minimum) and a
 * multiple of the volume's block size, maximum >= preferred and within the payload limit.
 */
function assertBlockSizes(info: InfoExport, blockSize: number, strict: boolean, maxPayloadBytes: number): void {
  const { block_size_minimum: minimum, block_size_preferred: preferred, block_size_maximum: maximum } = info;
  const what = `${info['export-name']}: min ${minimum} preferred ${preferred} max ${maximum}`;
  const powerOfTwo = (n: number | undefined): boolean => n !== undefined && n > 0 && (n & (n - 1)) === 0;
  assert.ok(powerOfTwo(minimum) && powerOfTwo(preferred), what);
  assert.ok((minimum as number) <= blockSize, what);
  if (strict) assert.equal(minimum, blockSize, what);
  assert.ok((preferred as number) >= Math.max(512, minimum as number) && (preferred as number) % blockSize === 0, what);
  assert.ok(maximum !== undefined && maximum >= (preferred as number) && maximum <= maxPayloadBytes, what);
}

describe('60 interop: nbdinfo', function () {
  this.timeout(120_000);
  before(requireTool('nbdinfo', 'qemu-io'));

  let directory: string;
  let serve: ServeProcess | undefined;

  before(async () => {
    directory = makeTempDir('nbdinfo');
    serve = await ServeProcess.start({
      directory,
      config: {
        volumes: [
          { name: 'vol0', capacity: '8MiB', bitmaps: [{ name: 'backup', granularity: '64KiB' }, { name: 'idle', recording: false }] },
          { name: 'small', capacity: '1MiB', blockSize: 512 },
          { name: 'strict', capacity: '2MiB', blockSize: 4096, strict: true },
        ],
        exports: [
          { name: 'vol0', description: 'the main volume' },
          { name: 'small-ro', volume: 'small', readOnly: true, description: 'read-only view' },
          { name: 'strict' },
        ],
        listen: [{ host: '127.0.0.1', port: 0 }],
        limits: { maxPayloadBytes: '4MiB' },
      },
      args: ['--quiet'],
    });
  });

  after(async () => {
    await serve?.kill();
    removeTempDir(directory);
  });

  async function info(exportName: string, extra: string[] = []): Promise<InfoExport> {
    const result = await run('nbdinfo', ['--json', ...extra, (serve as ServeProcess).uri(exportName)]);
    const parsed = JSON.parse(result.stdout) as { exports: InfoExport[] };
    assert.equal(parsed.exports.length, 1);
    return parsed.exports[0] as InfoExport;
  }

  async function map(exportName: string, context?: string): Promise<MapExtent[]> {
    const args = ['--json', context === undefined ? '--map' : `--map=${context}`, (serve as ServeProcess).uri(exportName)];
    return JSON.parse((await run('nbdinfo', args)).stdout) as MapExtent[];
  }

  it('--list shows every export with its description and size', async () => {
    const { host, port } = (serve as ServeProcess).tcpAddress;
    const result = await run('nbdinfo', ['--json', '--list', `nbd://${host}:${port}`]);
    const listed = (JSON.parse(result.stdout) as { exports: InfoExport[] }).exports;
    const byName = new Map(listed.map((e) => [e['export-name'], e]));
    assert.deepEqual([...byName.keys()].sort(), ['small-ro', 'strict', 'vol0']);
    assert.equal(byName.get('vol0')?.description, 'the main volume');
    assert.equal(byName.get('small-ro')?.description, 'read-only view');
    assert.equal(byName.get('vol0')?.['export-size'], 8 * MIB);
    assert.equal(byName.get('small-ro')?.['export-size'], 1 * MIB);
    assert.equal(byName.get('small-ro')?.is_read_only, true);
  });

  it('reports size, flags, block sizes and meta contexts of each export', async () => {
    const vol0 = await info('vol0');
    assert.equal(vol0['export-size'], 8 * MIB);
    assert.equal(vol0.is_read_only, false);
    assert.equal(vol0.can_flush, true);
    assert.equal(vol0.can_trim, true);
    assert.equal(vol0.can_zero, true);
    assert.ok(vol0.contexts?.includes('base:allocation'), JSON.stringify(vol0.contexts));
    assert.ok(vol0.contexts?.includes('blockmirror:dirty:backup'), JSON.stringify(vol0.contexts));
    assert.ok(vol0.contexts?.includes('blockmirror:dirty:idle'), JSON.stringify(vol0.contexts));
    assertBlockSizes(vol0, 4096, false, 4 * MIB);

    const small = await info('small-ro');
    assert.equal(small.is_read_only, true);
    assertBlockSizes(small, 512, false, 4 * MIB);
    assert.ok(!small.contexts?.some((c) => c.startsWith('blockmirror:dirty:')), 'a volume without bitmaps lists none');

    const strict = await info('strict');
    assertBlockSizes(strict, 4096, true, 4 * MIB);
    assert.equal(strict.block_size_minimum, 4096, 'a strict volume must advertise its block size as the minimum');
  });

  it('--map base:allocation matches what was written, trimmed and zeroed', async () => {
    const uri = (serve as ServeProcess).uri('vol0');
    // A fresh thin volume is one hole that reads as zeroes.
    const fresh = await map('vol0');
    assertCovers(fresh, 8 * MIB);
    assert.ok(fresh.every((e) => e.type === 3), `fresh volume: ${JSON.stringify(fresh)}`);

    await run('qemu-io', ['-f', 'raw', '--discard=unmap', uri,
      '-c', 'write -P 0xaa 0 1M',
      '-c', `write -P 0xbb ${3 * MIB} 64k`,
      '-c', `write -P 0xcc ${5 * MIB} 1M`,
      '-c', `discard ${5 * MIB + 256 * KIB} 512k`,
      '-c', `write -z ${7 * MIB} 256k`,
      '-c', 'flush']);

    const allocation = await map('vol0');
    assertCovers(allocation, 8 * MIB);
    const expectations: Array<[number, number, (type: number) => boolean, string]> = [
      [0, 1 * MIB, (t) => t === 0, 'data'],
      [1 * MIB, 3 * MIB, (t) => t === 3, 'hole,zero'],
      [3 * MIB, 3 * MIB + 64 * KIB, (t) => t === 0, 'data'],
      [3 * MIB + 64 * KIB, 5 * MIB, (t) => t === 3, 'hole,zero'],
      [5 * MIB, 5 * MIB + 256 * KIB, (t) => t === 0, 'data'],
      [5 * MIB + 256 * KIB, 5 * MIB + 768 * KIB, (t) => t === 3, 'hole,zero (trimmed)'],
      [5 * MIB + 768 * KIB, 6 * MIB, (t) => t === 0, 'data'],
      [6 * MIB, 7 * MIB, (t) => t === 3, 'hole,zero'],
      [7 * MIB + 256 * KIB, 8 * MIB, (t) => t === 3, 'hole,zero'],
    ];
    for (const [start, end, ok, what] of expectations) {
      for (const extent of overlapping(allocation, start, end)) {
        assert.ok(ok(extent.type), `[${start}, ${end}) should be ${what}, got ${JSON.stringify(extent)}\n${JSON.stringify(allocation)}`);
      }
    }
    // The zeroed range may be reported as data or as zero; either way it reads back as zeroes.
    await run('qemu-io', ['-f', 'raw', uri, '-r', '-c', `read -P 0 ${7 * MIB} 256k`, '-c', `read -P 0 ${5 * MIB + 256 * KIB} 512k`,
      '-c', 'read -P 0xaa 0 1M', '-c', `read -P 0xcc ${5 * MIB} 256k`, '-c', `read -P 0xcc ${5 * MIB + 768 * KIB} 256k`]);
  });

  it('--map=blockmirror:dirty:backup marks exactly the tracks that were changed', async () => {
    const dirty = await map('vol0', 'blockmirror:dirty:backup');
    assertCovers(dirty, 8 * MIB);
    // Every write, trim and zero of the previous test, in 64 KiB tracks.
    const changed: Array<[number, number]> = [
      [0, 1 * MIB], [3 * MIB, 3 * MIB + 64 * KIB], [5 * MIB, 6 * MIB], [7 * MIB, 7 * MIB + 256 * KIB],
    ];
    const isChanged = (track: number): boolean => changed.some(([s, e]) => track * TRACK_BYTES < e && (track + 1) * TRACK_BYTES > s);
    for (let track = 0; track < (8 * MIB) / TRACK_BYTES; track++) {
      const extents = overlapping(dirty, track * TRACK_BYTES, (track + 1) * TRACK_BYTES);
      const expected = isChanged(track) ? 1 : 0;
      for (const extent of extents) {
        assert.equal(extent.type & 1, expected, `track ${track} (byte ${track * TRACK_BYTES}): ${JSON.stringify(extent)}`);
      }
    }
    // A bitmap that is not recording stays clean.
    const idle = await map('vol0', 'blockmirror:dirty:idle');
    assert.ok(idle.every((e) => (e.type & 1) === 0), JSON.stringify(idle));
  });

  it('a read-only export refuses writes and keeps its data', async () => {
    const uri = (serve as ServeProcess).uri('small-ro');
    const result = await run('qemu-io', ['-f', 'raw', uri, '-c', 'write -P 0x11 0 4k'], { check: false });
    assert.ok(result.code !== 0 || /failed|error|read-only|Permission/i.test(result.stdout + result.stderr),
      `write to a read-only export did not fail: ${result.stdout}${result.stderr}`);
    await run('qemu-io', ['-f', 'raw', '-r', uri, '-c', 'read -P 0 0 1M']);
  });
});
