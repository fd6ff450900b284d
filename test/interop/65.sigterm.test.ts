// SIGTERM to `blockmirror serve` while a client is writing: the server stops accepting, answers
// what is in flight, flushes and closes its volumes, prints its summary and exits 0. The volume
// is shared-memory backed, so this process can reopen it afterwards and check that every write
// the client saw acknowledged is there.
//
// The client is qemu-io with groups of 8 aio_write requests in flight, each group followed by an
// aio_flush. qemu-io prints "wrote N/N bytes at offset X" when a write is acknowledged; stdbuf
// makes it print each line as it happens, so the test knows what was acknowledged before the
// signal and sends the signal mid-stream, on an output line, not after a sleep.
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';

import { Volume } from '../../src/storage/volume';
import { ServeProcess } from '../helpers/serve-process';
import { exited, findTool, makeTempDir, removeTempDir, requireTool, stopChild } from '../helpers/tools';

const KIB = 1024;
const WRITE_BYTES = 16 * KIB;
const WRITE_COUNT = 4096; // 64 MiB in all
const GROUP_SIZE = 8;
const SIGNAL_AFTER_ACKS = 64;

function patternOf(index: number): number {
  return (index % 255) + 1;
}

describe('65 interop: SIGTERM while a client writes', function () {
  this.timeout(180_000);
  before(requireTool('qemu-io', 'stdbuf'));

  let directory: string;
  const shmName = `bm-sigterm-${process.pid}-${Date.now()}`;
  let serve: ServeProcess | undefined;
  let client: ReturnType<typeof spawn> | undefined;

  before(() => {
    directory = makeTempDir('sigterm');
  });

  after(async () => {
    await stopChild(client);
    await serve?.kill();
    Volume.unlink({ name: shmName });
    removeTempDir(directory);
  });

  it('exits 0 with a summary, and every acknowledged write is in the reopened shared volume', async () => {
    serve = await ServeProcess.start({
      directory,
      config: { volumes: [{ name: shmName, capacity: `${(WRITE_BYTES * WRITE_COUNT) / (1024 * 1024)}MiB`, backing: 'shared' }] },
      args: ['--port', '0', '--quiet'],
    });
    const uri = serve.uri(shmName);

    const commands: string[] = [];
    for (let index = 0; index < WRITE_COUNT; index++) {
      commands.push('-c', `aio_write -P ${patternOf(index)} ${index * WRITE_BYTES} ${WRITE_BYTES}`);
      if (index % GROUP_SIZE === GROUP_SIZE - 1) commands.push('-c', 'aio_flush');
    }
    client = spawn(findTool('stdbuf') ?? 'stdbuf', ['-oL', '-eL', findTool('qemu-io') ?? 'qemu-io', '-f', 'raw', uri, ...commands], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const clientExit = exited(client);
    const acknowledged = new Set<number>();
    let partial = '';
    let clientStderr = '';
    let onEnoughAcks: () => void = () => undefined;
    const enoughAcks = new Promise<void>((resolve) => {
      onEnoughAcks = resolve;
    });
    client.stdout?.setEncoding('utf8');
    client.stdout?.on('data', (text: string) => {
      partial += text;
      const lines = partial.split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        const match = /^wrote (\d+)\/(\d+) bytes at offset (\d+)/.exec(line);
        if (match === null) continue;
        assert.equal(match[1], match[2], line);
        acknowledged.add(Number(match[3]) / WRITE_BYTES);
        if (acknowledged.size >= SIGNAL_AFTER_ACKS) onEnoughAcks();
      }
    });
    client.stderr?.setEncoding('utf8');
    client.stderr?.on('data', (text: string) => {
      clientStderr += text;
    });

    await Promise.race([
      enoughAcks,
      clientExit.then((result) => {
        throw new Error(`qemu-io exited (${result.code}) after ${acknowledged.size} acks, before the signal:\n${clientStderr}`);
      }),
    ]);
    const ackedBeforeSignal = acknowledged.size;
    const stopped = await serve.signal('SIGTERM', 60_000);
    assert.deepEqual(stopped, { code: 0, signal: null }, `serve: ${serve.stderrText}`);
    const summary = serve.stdoutLines.filter((line) => line.startsWith('summary:')).join('\n');
    assert.match(summary, /summary: uptime/);
    assert.match(summary, new RegExp(`volume ${shmName} \\(shared, created\\).*flushed and closed`));

    // The client loses its connection; whatever it still had in flight fails. Bounded wait.
    const clientTimer = setTimeout(() => client?.kill('SIGKILL'), 30_000);
    await clientExit;
    clearTimeout(clientTimer);
    assert.ok(acknowledged.size >= ackedBeforeSignal);
    const writes = /writes (\d+)/.exec(summary);
    assert.ok(writes !== null && Number(writes[1]) >= acknowledged.size,
      `the server counted ${writes?.[1]} writes, the client saw ${acknowledged.size} acknowledged`);
    if (acknowledged.size === WRITE_COUNT) {
      process.stderr.write('      note: every write was acknowledged before shutdown; the stream ended early\n');
    }

    // Reopen the shared region in this process: every acknowledged write must be there.
    const volume = await Volume.open({ name: shmName });
    try {
      assert.equal(volume.capacityBytes, WRITE_BYTES * WRITE_COUNT);
      const buffer = Buffer.alloc(WRITE_BYTES);
      const missing: number[] = [];
      for (const index of [...acknowledged].sort((a, b) => a - b)) {
        volume.read(index * WRITE_BYTES, buffer);
        const pattern = patternOf(index);
        if (!buffer.every((byte) => byte === pattern)) missing.push(index);
      }
      assert.deepEqual(missing.slice(0, 20), [], `${missing.length} acknowledged writes are not in the volume`);
    } finally {
      await volume.close();
    }
  });
});
