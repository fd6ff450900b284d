// `blockmirror disk list|fault|fail|heal` against a real serve with a raid1 group and a hot
// spare: the tables (groups, disk status with its backup column, address map; no work volume or
// work disk table on a serve without them, whose rows test/unit/92.disk-list-format checks), a
// fault rule that reaches the disk with the errno asked for, a failed disk whose group is rebuilt
// onto the spare by the serve, heal, the serve's coded errors (unknown disk: exit 1 with
// ERR_CONTROLLER_NO_DISK; a range past the disk: ERR_ADMIN_BAD_REQUEST) and usage errors (exit 2,
// nothing sent). The admin body checks of POST /disks/<verb> are covered directly too.
import * as assert from 'node:assert/strict';
import * as path from 'node:path';

import { diskRequest } from '../../src/admin/disk-routes';
import { formatDiskList } from '../../src/cli/disk-command';
import { CLI_PATH, ServeProcess } from '../helpers/serve-process';
import { makeTempDir, removeTempDir, run, waitFor } from '../helpers/tools';

interface RaidTables {
  groups: { group: string; disks: string[]; condition: string; volumes: string[] }[];
  disks: { disk: string; status: string; faults: { errno: number; operations: string; byteOffset: number; byteLength: number }[] }[];
  addressMap: { volume: string; group: string }[];
}

describe('76 disk command', function () {
  this.timeout(120_000);
  let directory: string;
  let serve: ServeProcess | undefined;
  let adminSocket: string;

  before(async () => {
    directory = makeTempDir('disk-cli');
    adminSocket = path.join(directory, 'admin.sock');
    serve = await ServeProcess.start({
      directory,
      config: {
        controllers: [{
          id: 'c1',
          disks: [{ name: 'd0', capacity: '8MiB' }, { name: 'd1', capacity: '8MiB' }, { name: 's0', capacity: '8MiB', spare: true }],
          groups: [{ name: 'm0', level: 'raid1', disks: ['d0', 'd1'] }],
          volumes: [{ name: 'vol0', capacity: '4MiB', group: 'm0' }, { name: 'plain', capacity: '1MiB' }],
        }],
      },
      args: ['--port', '0', '--admin', adminSocket, '--quiet'],
    });
  });

  after(async () => {
    await serve?.kill();
    removeTempDir(directory);
  });

  const disk = (...args: string[]) => run(process.execPath, [CLI_PATH, 'disk', ...args, '--admin', adminSocket], { check: false, timeoutMs: 30_000 });
  const tables = async (): Promise<RaidTables> => {
    const result = await disk('list', '--json');
    assert.equal(result.code, 0, result.stderr);
    return (JSON.parse(result.stdout) as { result: RaidTables }).result;
  };

  it('list prints the groups, disk status and address map tables', async () => {
    const result = await disk('list');
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^GROUP\s+VOLUMES\s+DISKS\s+LEVEL\s+CONDITION/m);
    assert.match(result.stdout, /^m0\s+vol0\s+d0, d1\s+raid1\s+optimal/m);
    assert.match(result.stdout, /^DISK\s+CAPACITY\s+STATUS\s+ERRORS\s+GROUP\s+BACKUP\s+FAULTS$/m);
    assert.match(result.stdout, /^s0\s+8388608\s+spare\s+0\s+-\s+-\s+0$/m);
    assert.match(result.stdout, /^vol0\s+m0\s+0\s+4194304\s+d0\s+0/m);
    // No work volumes, work disks or diversion on this serve: none of their tables, not even a header.
    assert.doesNotMatch(result.stdout, /WORK VOLUME|WORK DISK|MAIN DISK|diversion/);
    const json = await tables();
    assert.deepEqual(json.addressMap.map((entry) => entry.volume), ['vol0']);
  });

  it('fault adds a rule with the errno, operations and range asked for', async () => {
    const result = await disk('fault', 'd0', '--read', '--range', '1MiB:4KiB', '--errno', 'ENOSPC', '--rate', '0.5', '--after', '3');
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /disk d0: fault rule 0 added/);
    const d0 = (await tables()).disks.find((entry) => entry.disk === 'd0');
    assert.deepEqual(d0?.faults.map(({ errno, operations, byteOffset, byteLength }) => ({ errno, operations, byteOffset, byteLength })),
      [{ errno: 28, operations: 'read', byteOffset: 1024 * 1024, byteLength: 4096 }]);
    const heal = await disk('heal', 'd0');
    assert.equal(heal.code, 0, heal.stderr);
    assert.deepEqual((await tables()).disks.find((entry) => entry.disk === 'd0')?.faults, []);
  });

  it('fail: the serve rebuilds the group onto the spare', async () => {
    const result = await disk('fail', 'd1');
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /disk d1: failed/);
    const rebuilt = await waitFor(async () => {
      const json = await tables();
      return json.groups[0]?.condition === 'optimal' && json.groups[0].disks.includes('s0') ? json : undefined;
    }, 'the rebuild onto s0', 60_000, 100);
    assert.deepEqual(rebuilt.groups[0]?.disks, ['d0', 's0']);
    assert.equal(rebuilt.disks.find((entry) => entry.disk === 's0')?.status, 'normal');
  });

  it('the serve\'s errors exit 1 with their code; usage errors exit 2', async () => {
    const unknown = await disk('fail', 'nope');
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /ERR_CONTROLLER_NO_DISK/);
    const past = await disk('fault', 'd0', '--range', '64MiB:4KiB');
    assert.equal(past.code, 1);
    assert.match(past.stderr, /ERR_ADMIN_BAD_REQUEST/);
    for (const args of [['fault', 'd0', '--rate', '2'], ['fault', 'd0', '--errno', 'EWHAT'], ['fault', 'd0', '--range', '12'], ['fault', 'd0', '--latency', '-1'], ['fault']]) {
      const usage = await disk(...args);
      assert.equal(usage.code, 2, `${args.join(' ')}: ${usage.stderr}`);
    }
  });

  it('POST /disks/<verb> bodies are checked field by field', () => {
    assert.deepEqual(diskRequest('fail', { disk: 'd0' }), { controllerId: undefined, request: { verb: 'fail', disk: 'd0' } });
    assert.deepEqual(diskRequest('fault', { controller: 'c1', disk: 'd0', rate: 0.5, errno: 5 }).request.fault, { rate: 0.5, errno: 5 });
    for (const [verb, body] of [
      ['fail', {}], ['fail', { disk: 'a b' }], ['list', { disk: 'd0' }], ['fault', { disk: 'd0', rate: 2 }], ['fault', { disk: 'd0', errno: -1 }],
      ['fault', { disk: 'd0', operations: 'erase' }], ['fault', { disk: 'd0', byteOffset: 1.5 }], ['heal', { disk: 'd0', colour: 1 }], ['fail', { disk: 'd0', controller: '' }],
    ] as const) {
      assert.throws(() => diskRequest(verb, body as Record<string, unknown>), (error: Error & { code?: string }) => error.code === 'ERR_ADMIN_BAD_REQUEST', `${verb} ${JSON.stringify(body)}`);
    }
    assert.match(formatDiskList({}), /^GROUP/);
  });
});
