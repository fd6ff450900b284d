// fio's nbd engine against the real `blockmirror serve` process: random writes at iodepth 32
// with verify=crc32c (fio writes every block with a checksummed header, then reads each back and
// checks it). Passes only when fio exits 0 and its JSON shows no error on any job and the
// expected amount written and read back.
import * as assert from 'node:assert/strict';

import { type FioJob, runFio } from '../helpers/fio';
import { ServeProcess } from '../helpers/serve-process';
import { makeTempDir, removeTempDir, requireTool, run } from '../helpers/tools';

const MIB = 1024 * 1024;


describe('63 interop: fio nbd engine, verify=crc32c', function () {
  this.timeout(300_000);
  before(requireTool('fio'));

  let directory: string;
  let serve: ServeProcess | undefined;
  let uri: string;

  before(async function () {
    // Debian's fio has the nbd engine; a build without it cannot run this test at all.
    const engines = await run('fio', ['--enghelp=nbd'], { check: false });
    if (engines.code !== 0 || !/uri/.test(engines.stdout)) {
      throw new Error(`this fio has no nbd engine: ${engines.stdout}${engines.stderr}`);
    }
    directory = makeTempDir('fio');
    serve = await ServeProcess.start({
      directory,
      config: { volumes: [{ name: 'vol0', capacity: '128MiB', bitmaps: [{ name: 'backup' }] }] },
      args: ['--port', '0', '--quiet'],
    });
    uri = serve.uri('vol0');
  });

  after(async () => {
    await serve?.kill();
    removeTempDir(directory);
  });

  it('4 KiB random writes at iodepth 32 on two connections, every block verified', async () => {
    const jobs = await runFio([
      '--name=randwrite-verify', '--ioengine=nbd', `--uri=${uri}`,
      '--rw=randwrite', '--bs=4k', '--iodepth=32', '--size=48M',
      '--numjobs=2', '--offset_increment=64M',
      '--verify=crc32c', '--do_verify=1', '--verify_fatal=1', '--verify_dump=0',
      '--randseed=6301',
    ], directory);
    assert.equal(jobs.length, 2);
    for (const job of jobs) {
      assert.equal(job.write.io_bytes, 48 * MIB, `${job.jobname} wrote ${job.write.io_bytes}`);
      assert.equal(job.read.io_bytes, 48 * MIB, `${job.jobname} verified ${job.read.io_bytes}`);
    }
  });

  it('mixed block sizes (4-128 KiB) at iodepth 16 with verification interleaved (verify_backlog)', async () => {
    const jobs = await runFio([
      '--name=mixed-verify', '--ioengine=nbd', `--uri=${uri}`,
      '--rw=randwrite', '--bsrange=4k-128k', '--iodepth=16', '--size=32M', '--offset=16M',
      '--verify=crc32c', '--do_verify=1', '--verify_fatal=1', '--verify_backlog=64',
      '--randseed=6302', '--norandommap=0',
    ], directory);
    assert.equal(jobs.length, 1);
    const job = jobs[0] as FioJob;
    assert.ok(job.write.io_bytes >= 32 * MIB, `wrote ${job.write.io_bytes}`);
    assert.ok(job.read.io_bytes > 0, 'nothing was read back for verification');
  });

  it('serve saw the traffic: its summary counts the writes', async () => {
    const result = await (serve as ServeProcess).signal('SIGTERM');
    assert.equal(result.code, 0, (serve as ServeProcess).stderrText);
    const summary = (serve as ServeProcess).stdoutLines.filter((line) => line.startsWith('summary:')).join('\n');
    const writes = /writes (\d+)/.exec(summary);
    assert.ok(writes !== null && Number(writes[1]) >= (2 * 48 * MIB) / 4096, summary);
    assert.match(summary, /errors 0/);
  });
});
