// qemu-img and qemu-io against the real `blockmirror serve` process: an image with random data
// and zero ranges converted into the export and back compares equal; qemu-io pattern writes and
// reads at many offsets and sizes, unaligned ones included, on a plain, a 512-byte and a strict
// volume (where qemu must honour the advertised minimum block size with read-modify-write).
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { ServeProcess } from '../helpers/serve-process';
import {
  makeTempDir, prng, removeTempDir, requireTool, run, seededBytes, sha256OfFile,
} from '../helpers/tools';

const KIB = 1024;
const MIB = 1024 * 1024;
const IMAGE_BYTES = 32 * MIB;

interface Extent {
  byteOffset: number;
  byteLength: number;
  pattern: number;
}

/**
 * Non-overlapping extents over [0, spanBytes), random offsets and lengths, with gaps between
 * them; `alignBytes` 1 gives odd offsets and lengths.
 */
function randomExtents(seed: number, spanBytes: number, count: number, maxBytes: number, alignBytes: number): Extent[] {
  const random = prng(seed);
  const slotBytes = Math.floor(spanBytes / count / alignBytes) * alignBytes;
  const extents: Extent[] = [];
  for (let i = 0; i < count; i++) {
    const slotStart = i * slotBytes;
    const byteLength = Math.max(alignBytes, Math.floor((1 + random() * Math.min(maxBytes, slotBytes / 2)) / alignBytes) * alignBytes);
    const room = slotBytes - byteLength - alignBytes;
    const byteOffset = slotStart + alignBytes + Math.floor((random() * room) / alignBytes) * alignBytes;
    extents.push({ byteOffset, byteLength, pattern: (i % 254) + 1 });
  }
  return extents;
}

/** The byte ranges between the extents (and before the first / after the last). */
function gaps(extents: Extent[], spanBytes: number): Array<[number, number]> {
  const result: Array<[number, number]> = [];
  let at = 0;
  for (const extent of extents) {
    if (extent.byteOffset > at) result.push([at, extent.byteOffset - at]);
    at = extent.byteOffset + extent.byteLength;
  }
  if (at < spanBytes) result.push([at, spanBytes - at]);
  return result;
}

async function qemuIo(uri: string, commands: string[], readOnly = false): Promise<string> {
  const args = ['-f', 'raw', ...(readOnly ? ['-r'] : []), uri];
  for (const command of commands) args.push('-c', command);
  const result = await run('qemu-io', args, { check: false, timeoutMs: 120_000 });
  const output = result.stdout + result.stderr;
  assert.ok(!/verification failed|failed|error/i.test(output) && result.code === 0,
    `qemu-io exit ${result.code}:\n${output.split('\n').filter((l) => /fail|error/i.test(l)).slice(0, 20).join('\n')}`);
  return result.stdout;
}

describe('61 interop: qemu-img and qemu-io', function () {
  this.timeout(240_000);
  before(requireTool('qemu-img', 'qemu-io'));

  let directory: string;
  let serve: ServeProcess | undefined;

  before(async () => {
    directory = makeTempDir('qemu');
    serve = await ServeProcess.start({
      directory,
      config: {
        volumes: [
          { name: 'img', capacity: IMAGE_BYTES },
          { name: 'pat', capacity: '16MiB' },
          { name: 'b512', capacity: '4MiB', blockSize: 512 },
          { name: 'strict', capacity: '4MiB', blockSize: 4096, strict: true },
        ],
      },
      args: ['--port', '0', '--quiet'],
    });
  });

  after(async () => {
    await serve?.kill();
    removeTempDir(directory);
  });

  it('qemu-img info reports the export size', async () => {
    const result = await run('qemu-img', ['info', '--output=json', (serve as ServeProcess).uri('img')]);
    const parsed = JSON.parse(result.stdout) as { 'virtual-size': number; format: string };
    assert.equal(parsed['virtual-size'], IMAGE_BYTES);
    assert.equal(parsed.format, 'raw');
  });

  it('qemu-img convert into the export and back: qemu-img compare equal, sha256 equal', async () => {
    const uri = (serve as ServeProcess).uri('img');
    const source = path.join(directory, 'source.img');
    const image = seededBytes(IMAGE_BYTES, 61);
    // Zero ranges, aligned and not, so convert sends zero writes and skips nothing it should not.
    const zeroRanges: Array<[number, number]> = [
      [1 * MIB, 1 * MIB], [5 * MIB + 512, 8 * KIB], [9 * MIB + 123, 77_777], [20 * MIB, 3 * MIB], [IMAGE_BYTES - MIB, MIB],
    ];
    for (const [start, length] of zeroRanges) image.fill(0, start, start + length);
    fs.writeFileSync(source, image);

    // Dirty the whole export first, so the zero ranges must really be written as zeroes.
    await qemuIo(uri, [`write -P 0xff 0 ${IMAGE_BYTES}`]);
    await run('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', source, uri], { timeoutMs: 120_000 });
    await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', source, uri], { timeoutMs: 120_000 });

    const copy = path.join(directory, 'copy.img');
    await run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', uri, copy], { timeoutMs: 120_000 });
    const compared = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', source, copy], { check: false });
    assert.equal(compared.code, 0, `qemu-img compare: ${compared.stdout}${compared.stderr}`);
    assert.match(compared.stdout, /Images are identical/);
    assert.equal(await sha256OfFile(copy), await sha256OfFile(source));
  });

  it('qemu-io: pattern writes and reads at many unaligned offsets and sizes, gaps stay zero', async () => {
    const uri = (serve as ServeProcess).uri('pat');
    const spanBytes = 16 * MIB;
    const extents = randomExtents(6101, spanBytes, 150, 200 * KIB, 1);
    assert.ok(extents.some((e) => e.byteOffset % 2 === 1), 'the layout has odd offsets');
    await qemuIo(uri, extents.map((e) => `write -P ${e.pattern} ${e.byteOffset} ${e.byteLength}`));
    // Verify on a new connection: what was acknowledged is what is read.
    await qemuIo(uri, extents.map((e) => `read -P ${e.pattern} ${e.byteOffset} ${e.byteLength}`), true);
    await qemuIo(uri, gaps(extents, spanBytes).map(([start, length]) => `read -P 0 ${start} ${length}`), true);
    // Unaligned overwrites across extent boundaries and reads that straddle them.
    const first = extents[3] as Extent;
    const second = extents[4] as Extent;
    const straddleStart = first.byteOffset + first.byteLength - 3;
    await qemuIo(uri, [
      `write -P 0x77 ${straddleStart} 11`,
      `read -P 0x77 ${straddleStart} 11`,
      `read -P ${first.pattern} ${first.byteOffset} ${first.byteLength - 3}`,
      `read -P 0 ${straddleStart + 11} ${second.byteOffset - straddleStart - 11}`,
    ]);
  });

  it('qemu-io: aio writes in flight together, 512-byte sectors, then verified', async () => {
    const uri = (serve as ServeProcess).uri('b512');
    const extents = randomExtents(6102, 4 * MIB, 64, 64 * KIB, 512);
    await qemuIo(uri, [...extents.map((e) => `aio_write -P ${e.pattern} ${e.byteOffset} ${e.byteLength}`), 'aio_flush']);
    await qemuIo(uri, extents.map((e) => `read -P ${e.pattern} ${e.byteOffset} ${e.byteLength}`), true);
    await qemuIo(uri, gaps(extents, 4 * MIB).map(([start, length]) => `read -P 0 ${start} ${length}`), true);
  });

  it('qemu-io: 64 KiB aio reads of written data, 4 to 16 in flight (reply buffer rollover)', async () => {
    // Four 64 KiB replies no longer fit in one reply arena of 256 KiB; the fourth must start a
    // new one without corrupting the stream ("invalid reply magic" / EIO in the client).
    const uri = (serve as ServeProcess).uri('pat');
    await qemuIo(uri, [`write -P 0x3c ${8 * MIB} 2M`]);
    for (const inFlight of [4, 8, 16]) {
      const reads = Array.from({ length: inFlight }, (_, i) => `aio_read -P 0x3c ${8 * MIB + ((i * 65536) % (2 * MIB))} 64k`);
      await qemuIo(uri, [...reads, 'aio_flush'], true);
    }
  });

  it('qemu-io on a strict 4 KiB volume: unaligned requests still work (qemu aligns to the advertised minimum)', async () => {
    const uri = (serve as ServeProcess).uri('strict');
    const extents = randomExtents(6103, 4 * MIB, 40, 20 * KIB, 512);
    assert.ok(extents.some((e) => e.byteOffset % 4096 !== 0), 'the layout has offsets that are not 4 KiB aligned');
    await qemuIo(uri, extents.map((e) => `write -P ${e.pattern} ${e.byteOffset} ${e.byteLength}`));
    await qemuIo(uri, extents.map((e) => `read -P ${e.pattern} ${e.byteOffset} ${e.byteLength}`), true);
    await qemuIo(uri, gaps(extents, 4 * MIB).map(([start, length]) => `read -P 0 ${start} ${length}`), true);
    // write -z and discard on unaligned ranges keep the bytes around them.
    const target = extents.find((e) => e.byteLength >= 2048) as Extent;
    await qemuIo(uri, [
      `write -z ${target.byteOffset + 512} 1024`,
      `read -P ${target.pattern} ${target.byteOffset} 512`,
      `read -P 0 ${target.byteOffset + 512} 1024`,
    ]);
  });
});
