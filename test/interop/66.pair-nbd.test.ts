// Pairs between two real serve processes, written by real NBD clients: a sync pair under fio
// with verify=crc32c ends byte-identical on both sides (qemu-img compare across the two
// serves); an async pair keeps serving while the command drops, partitions and delays its link
// under fio load, suspends and resyncs by itself (the events show each step), and ends
// identical; an operator's suspend and resume through the command.
import * as assert from 'node:assert/strict';

import { CLI_PATH } from '../helpers/serve-process';
import { type EventWatch, Site, twoPorts } from '../helpers/link-pair';
import { makeTempDir, removeTempDir, requireTool, run, waitFor } from '../helpers/tools';

function cli(...args: string[]): ReturnType<typeof run> {
  return run(process.execPath, [CLI_PATH, ...args], { timeoutMs: 20_000, check: false });
}

async function compare(left: string, right: string): Promise<void> {
  const result = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', left, right], { check: false, timeoutMs: 120_000 });
  assert.equal(result.code, 0, `qemu-img compare: ${result.stdout}${result.stderr}`);
  assert.match(result.stdout, /Images are identical/);
}

function fio(uri: string, directory: string, extra: string[]): ReturnType<typeof run> {
  return run('fio', ['--ioengine=nbd', `--uri=${uri}`, '--name=w', '--rw=randwrite', '--bs=4k', '--size=24M',
    '--iodepth=16', '--output-format=json', ...extra], { check: false, timeoutMs: 180_000, cwd: directory });
}

describe('66 interop: pairs written by real NBD clients', function () {
  this.timeout(240_000);
  before(requireTool('fio', 'qemu-img'));
  let directory: string;
  let sites: Site[] = [];
  let watches: EventWatch[] = [];

  beforeEach(() => {
    directory = makeTempDir('bm-pair-');
    sites = [];
    watches = [];
  });

  afterEach(async () => {
    for (const watch of watches) watch.stop();
    for (const site of sites) await site.serve.kill();
    removeTempDir(directory);
  });

  async function pairOfSites(mode: 'sync' | 'async'): Promise<[Site, Site]> {
    const [portA, portB] = await twoPorts();
    const pair = { name: 'p0', volume: 'vol0', remoteVolume: 'vol0', mode };
    const b = await Site.start({ id: 'site-b', replicationPort: portB, directory, capacity: '32MiB',
      peers: [{ id: 'site-a', port: portA }], pairs: [{ ...pair, peer: 'site-a', role: 'secondary' }] });
    sites.push(b);
    const a = await Site.start({ id: 'site-a', replicationPort: portA, directory, capacity: '32MiB',
      peers: [{ id: 'site-b', port: portB }], pairs: [{ ...pair, peer: 'site-b', role: 'primary' }] });
    sites.push(a);
    const events = await a.watch();
    watches.push(events);
    await events.until((event) => event.subject === 'pair:p0' && event.new === 'mirroring', 'p0 mirroring');
    return [a, b];
  }

  async function caughtUp(a: Site): Promise<void> {
    await waitFor(async () => {
      const pair = await a.pair('p0');
      return pair.state === 'mirroring' && (pair.lag as { records: number }).records === 0;
    }, 'the pair mirroring with no lag', 60_000, 50);
  }

  it('sync: fio verify=crc32c on the primary, then both sides byte-identical', async () => {
    const [a, b] = await pairOfSites('sync');
    const result = await fio(a.serve.uri('site-a-vol0'), directory, ['--verify=crc32c', '--do_verify=1']);
    assert.equal(result.code, 0, result.stderr);
    await caughtUp(a);
    await compare(a.serve.uri('site-a-vol0'), b.serve.uri('site-b-vol0'));
    const pair = await a.pair('p0');
    assert.equal(pair.consistency, 'consistent');
    const metrics = await a.admin.metricsText();
    assert.match(metrics, /^blockmirror_pair_state\{[^}]*state="mirroring"[^}]*\} 1$/m);
    assert.match(metrics, /^blockmirror_pair_lag_records\{[^}]*pair="p0"[^}]*\} 0$/m);
    const shipped = /^blockmirror_pair_shipped_bytes_total\{[^}]*\} (\d+)$/m.exec(metrics);
    assert.ok(shipped !== null && Number(shipped[1]) >= 24 * 1024 * 1024, `shipped ${shipped?.[1]}`);
    // The secondary's export refuses writes.
    const write = await run('qemu-io', ['-f', 'raw', '-c', 'write 0 4k', b.serve.uri('site-b-vol0')], { check: false });
    assert.notEqual(write.code === 0 && !/failed|error|Operation not permitted|read-only/i.test(write.stdout + write.stderr), true,
      `a write to the secondary's export succeeded: ${write.stdout}${write.stderr}`);
  });

  it('async: link faults from the command under fio load; the pair suspends and resyncs by itself; identical', async () => {
    const [a, b] = await pairOfSites('async');
    const events = watches[0] as EventWatch;
    const load = fio(a.serve.uri('site-a-vol0'), directory, ['--time_based', '--runtime=6']);
    const faults: [string, string[]][] = [
      ['drop', ['--drop']],
      ['partition', ['--partition']],
      ['heal', []],
      ['delay', ['--delay', '20', '--jitter', '5']],
      ['heal', []],
    ];
    for (const [name, flags] of faults) {
      await new Promise((resolve) => setTimeout(resolve, 900));
      const answer = name === 'heal'
        ? await cli('link', 'heal', 'site-b', '--admin', a.adminSocket)
        : await cli('link', 'fault', 'site-b', ...flags, '--admin', a.adminSocket);
      assert.equal(answer.code, 0, `${name}: ${answer.stderr}`);
    }
    const written = await load;
    assert.equal(written.code, 0, written.stderr);
    await caughtUp(a);
    await compare(a.serve.uri('site-a-vol0'), b.serve.uri('site-b-vol0'));
    const steps = events.events.filter((event) => event.subject === 'pair:p0').map((event) => `${event.new}:${event.reason}`);
    assert.ok(steps.some((step) => step.startsWith('suspended:link-down')), steps.join(' '));
    assert.ok(steps.some((step) => step.startsWith('resyncing')), steps.join(' '));
    assert.equal(steps.at(-1)?.startsWith('mirroring'), true, steps.join(' '));
  });

  it('suspend and resume through the command: writes while suspended reach the secondary after the resync', async () => {
    const [a, b] = await pairOfSites('async');
    const suspended = await cli('pair', 'suspend', 'p0', '--admin', a.adminSocket);
    assert.equal(suspended.code, 0, suspended.stderr);
    assert.match(suspended.stdout, /pair p0: suspended \(operator\)/);
    const written = await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 1M 256k', a.serve.uri('site-a-vol0')], { check: false });
    assert.equal(written.code, 0, written.stderr);
    const oos = (await a.pair('p0')).oos as { tracks: number };
    assert.ok(oos.tracks >= 4, `OOS tracks ${oos.tracks}`);
    const again = await cli('pair', 'suspend', 'p0', '--admin', a.adminSocket);
    assert.equal(again.code, 0);
    const unknown = await cli('pair', 'resume', 'nope', '--admin', a.adminSocket);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /ERR_PAIR_UNKNOWN/);
    const resumed = await cli('pair', 'resume', 'p0', '--admin', a.adminSocket);
    assert.equal(resumed.code, 0, resumed.stderr);
    await caughtUp(a);
    await compare(a.serve.uri('site-a-vol0'), b.serve.uri('site-b-vol0'));
    const resyncedBytes = (await a.pair('p0')).resyncedBytes as number;
    assert.ok(resyncedBytes <= 8 * 65536, `the resync moved ${resyncedBytes} bytes for 256 KiB of writes`);
    const human = await cli('status', '--admin', a.adminSocket);
    assert.match(human.stdout, /PAIR\s+ROLE\s+MODE/);
    assert.match(human.stdout, /p0\s+primary\s+async/);
  });
});
