// nbdcopy against an NbdServer running in this (mocha) process: a file copied into an export and
// back keeps its sha256; the volume itself, read directly, holds the same bytes; export-to-export
// copies over several connections (multi-conn) agree too. nbdcopy runs asynchronously: the
// server shares this event loop.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { NbdServer } from '../../src/nbd/server';
import { Volume } from '../../src/storage/volume';
import {
  makeTempDir, removeTempDir, requireTool, run, seededBytes, sha256OfBuffer, sha256OfFile,
} from '../helpers/tools';

const MIB = 1024 * 1024;
const VOLUME_BYTES = 48 * MIB;

/** sha256 of a volume's bytes, read directly through the Volume API. */
function volumeSha256(volume: Volume, byteLength: number): string {
  const whole = Buffer.alloc(byteLength);
  const chunkBytes = 4 * MIB;
  for (let at = 0; at < byteLength; at += chunkBytes) {
    volume.read(at, whole.subarray(at, Math.min(byteLength, at + chunkBytes)));
  }
  return sha256OfBuffer(whole);
}

describe('62 interop: nbdcopy (in-process server)', function () {
  this.timeout(180_000);
  before(requireTool('nbdcopy'));

  let directory: string;
  let server: NbdServer | undefined;
  const volumes: Volume[] = [];
  let uriOf: (name: string) => string;

  before(async () => {
    directory = makeTempDir('nbdcopy');
    const source = await Volume.create({ capacityBytes: VOLUME_BYTES, name: 'copy-a' });
    const target = await Volume.create({ capacityBytes: VOLUME_BYTES, name: 'copy-b' });
    volumes.push(source, target);
    server = new NbdServer({
      exports: [{ name: 'a', volume: source }, { name: 'b', volume: target }],
      listen: [{ host: '127.0.0.1', port: 0 }],
    });
    await server.listen();
    const addresses = server.addresses().map((a) => a.uri);
    uriOf = (name: string): string => {
      const found = addresses.find((uri) => uri.replace(/\?.*$/, '').endsWith(`/${name}`));
      if (found === undefined) throw new Error(`no address for export ${name}: ${addresses.join(', ')}`);
      return found;
    };
  });

  after(async () => {
    await server?.close({ graceful: true });
    for (const volume of volumes) await volume.close();
    removeTempDir(directory);
  });

  it('file -> export -> file keeps the sha256, and the volume holds the same bytes', async () => {
    const image = seededBytes(VOLUME_BYTES, 62);
    image.fill(0, 2 * MIB, 6 * MIB); // a zero run nbdcopy may send as a zero write
    image.fill(0, 10 * MIB + 4096, 10 * MIB + 4096 + 64 * 1024);
    const sourceFile = path.join(directory, 'source.img');
    fs.writeFileSync(sourceFile, image);
    const expected = sha256OfBuffer(image);

    await run('nbdcopy', ['--flush', sourceFile, uriOf('a')], { timeoutMs: 120_000 });
    assert.equal(volumeSha256(volumes[0] as Volume, VOLUME_BYTES), expected, 'the volume differs from the source file');

    const copyFile = path.join(directory, 'copy.img');
    await run('nbdcopy', [uriOf('a'), copyFile], { timeoutMs: 120_000 });
    assert.equal(await sha256OfFile(copyFile), expected);
  });

  it('export -> export over four connections each side, and back through one', async () => {
    const expected = volumeSha256(volumes[0] as Volume, VOLUME_BYTES);
    await run('nbdcopy', ['--connections=4', '--requests=16', '--flush', uriOf('a'), uriOf('b')], { timeoutMs: 120_000 });
    assert.equal(volumeSha256(volumes[1] as Volume, VOLUME_BYTES), expected);

    const copyFile = path.join(directory, 'b.img');
    await run('nbdcopy', ['--connections=1', uriOf('b'), copyFile], { timeoutMs: 120_000 });
    assert.equal(await sha256OfFile(copyFile), expected);
  });

  it('the server counted the traffic and no protocol errors', () => {
    const stats = (server as NbdServer).stats() as unknown as Record<string, number>;
    assert.ok(stats.totalConnections !== undefined && stats.totalConnections >= 3, JSON.stringify(stats));
    assert.equal(stats.errors ?? 0, 0, JSON.stringify(stats));
  });
});
