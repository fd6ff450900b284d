// A peer for 30.sharing that runs as a child process (fork) or a worker thread. It opens a
// shared volume by name and answers the parent's requests one at a time: read bytes, test
// bitmap bits, list bitmaps, write, writev, create a bitmap, close. Data crosses as base64.

import { parentPort, workerData } from 'node:worker_threads';

import { Volume } from '../../../src/storage/volume';

export type SharerRequest =
  | { id: number; cmd: 'read'; byteOffset: number; byteLength: number }
  | { id: number; cmd: 'bits'; bitmap: string; indexes: number[] }
  | { id: number; cmd: 'list' }
  | { id: number; cmd: 'write'; byteOffset: number; data: string }
  | { id: number; cmd: 'writev'; writes: { byteOffset: number; data: string }[] }
  | { id: number; cmd: 'createBitmap'; bitmap: string; granularityBytes: number }
  | { id: number; cmd: 'close' };

export interface SharerReply {
  id: number;
  ok: boolean;
  value?: unknown;
  error?: string;
}

const name: string = parentPort !== null ? (workerData as { name: string }).name : (process.argv[2] as string);
const send = (reply: SharerReply | { ready: true; id: string }): void => {
  if (parentPort !== null) parentPort.postMessage(reply);
  else process.send?.(reply);
};

const volume = Volume.open({ name });

async function handle(request: SharerRequest): Promise<unknown> {
  switch (request.cmd) {
    case 'read': {
      const bytes = Buffer.alloc(request.byteLength);
      volume.read(request.byteOffset, bytes);
      return bytes.toString('base64');
    }
    case 'bits': {
      const bitmap = volume.openBitmap(request.bitmap);
      try {
        return request.indexes.map((index) => bitmap.test(index));
      } finally {
        bitmap.close();
      }
    }
    case 'list':
      return volume.listBitmaps();
    case 'write':
      return volume.write(request.byteOffset, Buffer.from(request.data, 'base64'));
    case 'writev':
      return volume.writev(request.writes.map((w) => ({ byteOffset: w.byteOffset, data: Buffer.from(w.data, 'base64') })));
    case 'createBitmap':
      volume.createBitmap(request.bitmap, { granularityBytes: request.granularityBytes }).close();
      return null;
    case 'close':
      await volume.close();
      setImmediate(() => {
        if (parentPort !== null) parentPort.close();
        else process.disconnect?.();
      });
      return null;
  }
}

const onRequest = (request: SharerRequest): void => {
  handle(request).then(
    (value) => send({ id: request.id, ok: true, value }),
    (error: Error) => send({ id: request.id, ok: false, error: `${error.name}: ${error.message}` }),
  );
};

if (parentPort !== null) parentPort.on('message', onRequest);
else process.on('message', onRequest);
send({ ready: true, id: volume.id.toString() });
