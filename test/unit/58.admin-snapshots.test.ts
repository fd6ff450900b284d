// The admin endpoint's snapshot verbs (src/admin/snapshot-routes.ts) on a real Unix socket
// against the fake array: each verb reaches the target with the fields it names; every bad field
// is ERR_ADMIN_BAD_REQUEST (400) naming it, and nothing reaches the target; the target's coded
// errors keep their HTTP status (ERR_SNAPSHOT_NOT_FOUND 404). And the list table of the command.
import * as assert from 'node:assert/strict';
import * as http from 'node:http';
import * as path from 'node:path';

import { AdminServer } from '../../src/admin/server';
import { formatSnapshotList } from '../../src/cli/snapshot-command';
import { FakeAdminTarget } from '../helpers/fake-admin-target';
import { makeTempDir, removeTempDir } from '../helpers/tools';

function post(socketPath: string, urlPath: string, value: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const request = http.request({ socketPath, method: 'POST', path: urlPath, headers: { 'Content-Type': 'application/json' }, agent: false }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown> }));
    });
    request.on('error', reject);
    request.end(JSON.stringify(value));
  });
}

const SILENT = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

describe('58 admin snapshot verbs', function () {
  this.timeout(20_000);
  let directory: string;
  let target: FakeAdminTarget;
  let server: AdminServer;
  let socketPath: string;

  beforeEach(async () => {
    directory = makeTempDir('admin-snap');
    target = new FakeAdminTarget();
    socketPath = path.join(directory, 'admin.sock');
    server = new AdminServer({ target, socketPath, logger: SILENT });
    await server.listen();
  });

  afterEach(async () => {
    await server.close();
    removeTempDir(directory);
  });

  it('hands each verb to the target with its fields', async () => {
    const asks: [string, Record<string, unknown>][] = [
      ['create', { volume: 'vol0', name: 'nightly' }],
      ['list', {}],
      ['list', { volume: 'vol0', controller: 'site-a' }],
      ['delete', { volume: 'vol0', name: 'nightly' }],
      ['restore', { volume: 'vol0', name: 'a.b:c-1' }],
      ['clone', { volume: 'vol0', name: 'nightly', clone: 'c1' }],
    ];
    for (const [verb, body] of asks) {
      const reply = await post(socketPath, `/snapshots/${verb}`, body);
      assert.equal(reply.status, 200, JSON.stringify(reply.json));
      assert.equal((reply.json.result as { verb: string }).verb, verb);
    }
    assert.deepEqual(target.snapshotCalls.map((call) => [call.controllerId, call.request]), [
      [undefined, { verb: 'create', volume: 'vol0', name: 'nightly' }],
      [undefined, { verb: 'list' }],
      ['site-a', { verb: 'list', volume: 'vol0' }],
      [undefined, { verb: 'delete', volume: 'vol0', name: 'nightly' }],
      [undefined, { verb: 'restore', volume: 'vol0', name: 'a.b:c-1' }],
      [undefined, { verb: 'clone', volume: 'vol0', name: 'nightly', clone: 'c1' }],
    ]);
  });

  it('refuses bad fields with ERR_ADMIN_BAD_REQUEST naming them, before the target sees anything', async () => {
    const bad: [string, Record<string, unknown>, RegExp][] = [
      ['create', { volume: 'vol0' }, /name must be/],
      ['create', { volume: 'vol0', name: 'has space' }, /name must be/],
      ['create', { volume: 'vol0', name: 'x'.repeat(48) }, /name must be/],
      ['create', { volume: 7, name: 'a' }, /volume must be/],
      ['delete', { volume: 'vol0', name: 'a', extra: 1 }, /unknown field "extra"/],
      ['list', { name: 'a' }, /unknown field "name"/],
      ['clone', { volume: 'vol0', name: 'a' }, /clone must be/],
      ['restore', { volume: 'vol0', name: 'a', controller: '' }, /controller must be/],
    ];
    for (const [verb, body, message] of bad) {
      const reply = await post(socketPath, `/snapshots/${verb}`, body);
      assert.equal(reply.status, 400, `${verb} ${JSON.stringify(body)}: ${JSON.stringify(reply.json)}`);
      const error = reply.json.error as { code: string; message: string };
      assert.equal(error.code, 'ERR_ADMIN_BAD_REQUEST');
      assert.match(error.message, message);
    }
    assert.equal(target.snapshotCalls.length, 0);
  });

  it('answers the target\'s coded errors with their HTTP status', async () => {
    const reply = await post(socketPath, '/snapshots/restore', { volume: 'missing', name: 'a' });
    assert.equal(reply.status, 404);
    assert.equal((reply.json.error as { code: string }).code, 'ERR_SNAPSHOT_NOT_FOUND');
  });

  it('prints the list as a table, and says when there is nothing', () => {
    assert.equal(formatSnapshotList([{ volume: 'vol0', snapshots: [] }]), 'no snapshots\n');
    const text = formatSnapshotList([{ volume: 'vol0', snapshots: [
      { name: 'nightly', state: 'valid', createdMs: Date.UTC(2026, 11, 2), preservedChunkCount: 16 },
      { name: 'old', state: 'invalid', reason: 'overflow', createdMs: Date.UTC(2026, 11, 1), preservedChunkCount: 3 },
    ] }]);
    const lines = text.trimEnd().split('\n');
    assert.match(lines[0] as string, /^VOLUME\s+SNAPSHOT\s+STATE\s+CREATED\s+PRESERVED CHUNKS$/);
    assert.match(lines[1] as string, /^vol0\s+nightly\s+valid\s+2026-12-02T00:00:00.000Z\s+16$/);
    assert.match(lines[2] as string, /^vol0\s+old\s+invalid \(overflow\)\s+2026-12-01T00:00:00.000Z\s+3$/);
  });
});
