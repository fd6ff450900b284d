// Scenario: one shared volume, three users. The test process creates a volume in shared memory by
// name, a child process and a worker thread open it by name. Each sees the bytes and the bitmaps
// the others wrote; writes from the child mark the bitmap the parent holds; a bitmap created by the
// child is recorded by the parent's later writes. The peers answer requests by message; nothing
// waits on a timer.
import * as assert from 'node:assert/strict';
import { ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';

import { Volume } from '../../src/storage/volume';
import { Cleanup, childScript, exited, forkChild, pattern } from '../helpers/storage';
import type { SharerReply, SharerRequest } from './children/sharer';

const MiB = 1 << 20;
const TRACK_BYTES = 4096;

type RequestBody = SharerRequest extends infer R ? (R extends SharerRequest ? Omit<R, 'id'> : never) : never;

/** A peer (child process or worker) driven by request/reply messages. */
class Peer {
  #nextId = 1;
  #pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  readonly ready: Promise<string>;

  constructor(
    private readonly post: (message: SharerRequest) => void,
    on: (listener: (message: SharerReply | { ready: true; id: string }) => void) => void,
    onExit: (listener: (why: string) => void) => void,
  ) {
    let announce: (id: string) => void = () => undefined;
    this.ready = new Promise((resolve) => (announce = resolve));
    on((message) => {
      if ('ready' in message) {
        announce(message.id);
        return;
      }
      const pending = this.#pending.get(message.id);
      this.#pending.delete(message.id);
      if (message.ok) pending?.resolve(message.value);
      else pending?.reject(new Error(message.error));
    });
    onExit((why) => {
      for (const pending of this.#pending.values()) pending.reject(new Error(`peer exited: ${why}`));
      this.#pending.clear();
    });
  }

  static child(child: ChildProcess): Peer {
    return new Peer(
      (message) => child.send(message),
      (listener) => child.on('message', listener),
      (listener) => child.on('exit', (code, signal) => listener(`code ${code} signal ${signal}`)),
    );
  }

  static worker(worker: Worker): Peer {
    return new Peer(
      (message) => worker.postMessage(message),
      (listener) => worker.on('message', listener),
      (listener) => worker.on('exit', (code) => listener(`code ${code}`)),
    );
  }

  request<T>(body: RequestBody): Promise<T> {
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
      this.post({ ...body, id } as SharerRequest);
    });
  }

  async read(byteOffset: number, byteLength: number): Promise<Buffer> {
    return Buffer.from(await this.request<string>({ cmd: 'read', byteOffset, byteLength }), 'base64');
  }
}

describe('30 sharing a volume across processes and threads', function () {
  this.timeout(60_000);
  const cleanup = new Cleanup();
  afterEach(() => cleanup.run());

  async function scenario(start: (name: string) => { peer: Peer; stopped: Promise<unknown> }): Promise<void> {
    // Given a shared volume with a dirty bitmap, and bytes written by the parent,
    const name = cleanup.volumeName('share');
    const volume = cleanup.close(Volume.create({ capacityBytes: 4 * MiB, backing: 'shared', name }));
    const dirty = volume.createBitmap('dirty', { granularityBytes: TRACK_BYTES });
    volume.write(0, pattern(1, 0, 3 * TRACK_BYTES));
    volume.write(MiB + 7, pattern(2, MiB + 7, 100));
    dirty.clearAll();

    // when a peer opens it by name,
    const { peer, stopped } = start(name);
    assert.equal(await peer.ready, volume.id.toString(), 'the peer opened the same volume');

    // it reads the parent's bytes and sees the parent's bitmap,
    assert.ok((await peer.read(0, 3 * TRACK_BYTES)).equals(pattern(1, 0, 3 * TRACK_BYTES)));
    assert.ok((await peer.read(MiB + 7, 100)).equals(pattern(2, MiB + 7, 100)));
    assert.deepEqual(await peer.request({ cmd: 'list' }), [{ name: 'dirty', granularityBytes: TRACK_BYTES, bitCount: 1024, recording: true }]);

    // its writes land in the parent's view and mark the parent's bitmap,
    const childBytes = pattern(3, 2 * MiB, 2 * TRACK_BYTES + 1);
    assert.equal(await peer.request({ cmd: 'write', byteOffset: 2 * MiB, data: childBytes.toString('base64') }), 0);
    assert.equal(
      await peer.request({
        cmd: 'writev',
        writes: [
          { byteOffset: 10 * TRACK_BYTES, data: pattern(4, 0, 10).toString('base64') },
          { byteOffset: 4 * MiB - 1, data: Buffer.from([0xab]).toString('base64') },
        ],
      }),
      0,
    );
    const back = Buffer.alloc(childBytes.length);
    volume.read(2 * MiB, back);
    assert.ok(back.equals(childBytes));
    const tracks: number[] = [];
    for (let i = dirty.findNextSet(); i !== -1; i = dirty.findNextSet(i + 1)) tracks.push(i);
    assert.deepEqual(tracks, [10, 512, 513, 514, 1023], 'exactly the tracks the peer wrote');

    // bits the parent sets directly are seen by the peer,
    dirty.set(77);
    assert.deepEqual(await peer.request({ cmd: 'bits', bitmap: 'dirty', indexes: [10, 11, 77, 1023] }), [true, false, true, true]);

    // and a bitmap the peer creates is recorded by the parent's next write.
    await peer.request({ cmd: 'createBitmap', bitmap: 'from-peer', granularityBytes: 65536 });
    volume.write(3 * MiB, Buffer.alloc(1));
    assert.deepEqual(await peer.request({ cmd: 'bits', bitmap: 'from-peer', indexes: [47, 48, 49] }), [false, true, false]);
    assert.deepEqual(
      volume.listBitmaps().map((b) => b.name),
      ['dirty', 'from-peer'],
    );

    await peer.request({ cmd: 'close' });
    await stopped;
  }

  it('a child process opened by name sees the same bytes and bitmaps, and its writes mark ours', async () => {
    await scenario((name) => {
      const child = forkChild(childScript(__dirname, 'sharer'), [name]);
      return { peer: Peer.child(child), stopped: exited(child) };
    });
  });

  it('a worker thread opened by name sees the same bytes and bitmaps, and its writes mark ours', async () => {
    await scenario((name) => {
      const worker = new Worker(path.join(__dirname, 'children', 'sharer.js'), { workerData: { name } });
      const stopped = new Promise((resolve, reject) => {
        worker.once('exit', resolve);
        worker.once('error', reject);
      });
      return { peer: Peer.worker(worker), stopped };
    });
  });
});
