// Notes on the design
// -------------------
// The link-outage benchmark: what a pair moves after a link outage, with the stream hold (the
// default `journalHold` 0.75: the primary keeps its records through the outage and resumes the
// ordered stream) against `journalHold: 0` (the records are released and the tracked tracks are
// resynced), in the same run. The figures are bytes, not times: the resumed arm ships the
// outage's journal records (what was written), the resync arm moves every 64 KiB track a write
// touched (scattered 4 KiB writes touch up to 16 times their bytes) and leaves the secondary
// inconsistent meanwhile. Reported, never asserted.
//
// One round per arm and outage size: two real `blockmirror serve` processes (shared volumes of
// --size, an async pair over loopback TCP, the integration tests' PairSite), mirroring; the link
// is cut with `blockmirror link fault --partition`; --writes random 4 KiB writes through the
// primary's NBD export, acknowledged; `link heal`; waited until the primary has caught up. The
// two sides' images are then compared (a difference fails the run). Arms alternate within each
// size. Owns: the serve processes, their /dev/shm objects and directories of a round.
import { AcknowledgedWriter, PairSite, removeShm, shmPrefix } from '../test/helpers/pair-sites';
import { makeTempDir, removeTempDir } from '../test/helpers/tools';
import { parseSizeText } from './common';
import { writeResults } from './results';

interface Row { journalHold: number; writes: number; writtenBytes: number; shippedBytes: number; resyncedBytes: number; resumed: number }

function usage(message: string): never {
  process.stderr.write(`pair-outage: ${message}\nusage: node dist/bench/pair-outage.js [--size 256MiB] [--writes 200,2000]\n`);
  process.exit(2);
}

function parseArgs(argv: string[]): { sizeText: string; writes: number[] } {
  let sizeText = '256MiB';
  let writes = [200, 2000];
  for (let index = 0; index < argv.length; index++) {
    const flag = argv[index];
    const value = argv[index + 1];
    if (value === undefined) usage(`${String(flag)} needs a value`);
    if (flag === '--size') {
      parseSizeText(value);
      sizeText = value;
    } else if (flag === '--writes') {
      writes = value.split(',').map(Number);
      if (writes.some((count) => !Number.isInteger(count) || count < 1 || count > 1_000_000)) usage('--writes: integers from 1 to 1000000, comma separated');
    } else {
      usage(`unknown option ${String(flag)}`);
    }
    index++;
  }
  return { sizeText, writes };
}

async function round(sizeText: string, journalHold: number, count: number): Promise<Row> {
  const directory = makeTempDir('pair-outage');
  const prefix = shmPrefix('bo');
  const sites: PairSite[] = [];
  try {
    const [a, b] = await PairSite.startPair(sites, { prefix, directory, capacity: sizeText, mode: 'async', primary: { journalHold } });
    const before = await a.pair('p0');
    if ((await a.cli('link', 'fault', 'site-b', '--partition')).code !== 0) throw new Error('link fault --partition failed');
    await a.until('p0', (pair) => pair.state === 'suspended', 'suspended by the partition', 30_000);
    const client = await a.connect();
    const writer = new AcknowledgedWriter(client, { tag: 1, seed: 4242 + count, queueDepth: 8 }).start();
    await writer.acknowledgedAtLeast(count);
    await writer.stop();
    await client.disconnect();
    if ((await a.cli('link', 'heal', 'site-b')).code !== 0) throw new Error('link heal failed');
    const after = await a.caughtUp('p0', 300_000);
    const [left, right] = [await a.readAll(), await b.readAll()];
    if (!left.equals(right)) throw new Error(`journalHold ${journalHold}, ${count} writes: the two sides differ after the outage`);
    return {
      journalHold, writes: writer.acknowledgedCount, writtenBytes: writer.acknowledgedBytes,
      shippedBytes: (after.shippedBytes ?? 0) - (before.shippedBytes ?? 0),
      resyncedBytes: (after.resyncedBytes ?? 0) - (before.resyncedBytes ?? 0), resumed: after.resumedStreams ?? 0,
    };
  } finally {
    for (const site of sites) await site.stop();
    removeShm(prefix);
    removeTempDir(directory);
  }
}

async function main(): Promise<void> {
  const { sizeText, writes } = parseArgs(process.argv.slice(2));
  const rows: Row[] = [];
  for (const count of writes) {
    for (const journalHold of [0.75, 0]) {
      const row = await round(sizeText, journalHold, count);
      rows.push(row);
      process.stdout.write(`journalHold ${journalHold}: ${row.writes} writes (${row.writtenBytes} B) during the outage -> ` +
        `resynced ${row.resyncedBytes} B, shipped ${row.shippedBytes} B, resumed ${row.resumed}\n`);
    }
  }
  const file = writeResults('pair-outage', { date: new Date().toISOString(), size: sizeText, rows });
  process.stdout.write(`results: ${file}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`pair-outage: ${String((error as Error)?.stack ?? error)}\n`);
  process.exit(1);
});
