// A worker thread of sim-batch.ts: runs the slices of seeds it is handed, one schedule after
// another, and posts each slice's outcome back. Its shared-memory names carry its thread id.

import { parentPort, threadId } from 'node:worker_threads';

import type { PairMutation } from '../replication/pairs';
import { runSlice } from './sim-batch';
import type { ScheduleKind } from './schedule-kinds';

const port = parentPort;
if (port === null) throw new Error('sim-worker.js runs as a worker thread of sim-batch.ts');
port.on('message', (slice: { kind: ScheduleKind; first: number; count: number; mutation?: PairMutation; keepFailures: number }) => {
  void runSlice(slice.kind, slice.first, slice.count, `bm-sb-${process.pid}-t${threadId}`, slice.mutation, slice.keepFailures)
    .then((outcome) => port.postMessage(outcome));
});
