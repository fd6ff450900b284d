// A consistency group across 9 real `blockmirror serve` processes over loopback TCP
// (test/helpers/cgroup-sites.ts): primaries p0..p7 (p0 the master), each its own serve with one
// shared volume and an async pair, and one serve holding the 8 secondary controllers. Chains of
// dependent writes go over NBD to random primaries while the group cycles every 50 ms. Every
// check reads the consistent copies over NBD from the secondary serve's exports
// `s<i>-v@cg.g.<cycle>` and applies the dependent-write rule of scenario 94:
//   steady    the newest cycle every secondary holds (and every other common one) is consistent;
//             status: consistency time, RPO, counts, the slaves' exact hold times
//   slave     p3 SIGKILLed: cycles fail (the reason named), no cycle forms, the held copies stay
//             consistent; p3 restarts on its shared volume: the group forms again
//   link      the master's link to p5 delayed past maxCoordinationMs, then partitioned: cycles
//             fail (coordination-timeout / link-down), nothing forms; healed: the group forms,
//             and with the workload stopped every secondary converges to its primary
//   restart   p0 SIGKILLed and restarted: a master that knows no formed cycle resumes, learns one
//             from the members' holdings, and the copies are pruned back to two per member
//   copies    the secondaries' serve SIGKILLed and restarted: the copies are there again (shared
//             snapshot stores) and consistent; the group forms again
//   master    p0 SIGKILLed mid-workload: the slaves' writes go on (their holds end by themselves),
//             then the rest of the primary site dies; `blockmirror group recover --restore` on the
//             secondary serve takes the pairs over and restores the newest common cycle: the 8
//             volumes equal the copies, pass the check, and hold every step acknowledged before
//             the cycle's time. On a serve of several controllers the command recovers every
//             controller holding copies of the group, at the cycle every member holds.
// The tests share one group and its serves, and run in order (the last one takes the pairs over).
// BLOCKMIRROR_TEST_VERBOSE=1 prints one line of figures per test.
import * as assert from 'node:assert/strict';

import {
  CG_SITE_BLOCK, CG_SITE_CAPACITY, CgServe, type CgSiteLayout, ChainWorkload, groupSpec, primaryConfig, removeShmWithPrefix, secondariesConfig,
} from '../helpers/cgroup-sites';
import { NbdTestClient } from '../helpers/nbd-client';
import { ports, shmPrefix } from '../helpers/pair-sites';
import { CLI_PATH } from '../helpers/serve-process';
import { makeTempDir, removeTempDir, run, waitFor } from '../helpers/tools';
import { newestCommonCycle } from '../../src/cgroup/recover';

const N = 8;
/** Figures for the report (BLOCKMIRROR_TEST_VERBOSE=1). */
const note = (line: string): void => {
  if (process.env.BLOCKMIRROR_TEST_VERBOSE !== undefined) process.stderr.write(`[78] ${line}\n`);
};
const CHAINS = 4;
const LIMITS = { cycleIntervalMs: 50, maxCoordinationMs: 50, maxDrainMs: 5000 };

type Cycles = { running: boolean; phase: string; cycle: number; lastFormedCycle: number; consistencyTime: string | null; rpoSeconds: number | null;
  lastFailure: { cycle: number; reason: string; detail: string } | null; counts: { cycles: number; formed: number; failed: number; byReason: Record<string, number> } };

describe('78 a consistency group of 8 primary serve processes and their secondaries, over TCP', function () {
  this.timeout(90_000);
  let directory: string;
  let prefix: string;
  let layout: CgSiteLayout;
  const primaries: CgServe[] = [];
  let secondaries: CgServe;
  let workload: ChainWorkload;

  const cli = (...args: string[]) => run(process.execPath, [CLI_PATH, ...args], { timeoutMs: 60_000, check: false });

  async function cycles(): Promise<Cycles> {
    return (await (primaries[0] as CgServe).group('status', { name: 'g' })).cycles as Cycles;
  }

  async function untilCycles(predicate: (status: Cycles) => boolean, what: string, timeoutMs = 30_000): Promise<Cycles> {
    let last: Cycles | undefined;
    try {
      return await waitFor(async () => {
        last = await cycles();
        return predicate(last) ? last : undefined;
      }, what, timeoutMs, 50);
    } catch (error) {
      throw new Error(`${(error as Error).message}; last: ${JSON.stringify(last)}`);
    }
  }

  /** What every secondary holds of group g, per member (s0..s7). */
  async function held(): Promise<number[][]> {
    const out: number[][] = [];
    for (let i = 0; i < N; i++) {
      const entries = await secondaries.group('held', { controller: `s${i}`, name: 'g' }) as { volume: string; cycles: number[] }[];
      out.push(entries.find((entry) => entry.volume === 'v')?.cycles ?? []);
    }
    return out;
  }

  /**
   * The listing and its newest common cycle. The listing asks the 8 controllers one after the
   * other while cycles may go on, so it is not one instant: a cut between two answers can show
   * no common cycle; then it is taken again (a real loss of the common cycle fails every time).
   */
  async function commonHeld(): Promise<{ holdings: number[][]; newest: number | null }> {
    let holdings: number[][] = [];
    for (let attempt = 1; attempt <= 10; attempt++) {
      holdings = await held();
      const newest = newestCommonCycle(holdings.map((cycles) => ({ holdings: cycles })));
      if (newest !== null) return { holdings, newest };
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return { holdings, newest: null };
  }

  /** The chain blocks of cycle `cycle`'s copy on every secondary. */
  async function copyImages(cycle: number, length = CHAINS * CG_SITE_BLOCK): Promise<Buffer[]> {
    return Promise.all(Array.from({ length: N }, (_, i) => secondaries.read(`s${i}-v@cg.g.${cycle}`, 0, length)));
  }

  /**
   * Checks every cycle all members hold; returns the newest and the steps it shows. While cycles
   * run a copy may be pruned between the listing and the read: then the listing is taken again.
   */
  async function checkHeld(what: string): Promise<{ newest: number; steps: number; checked: number }> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await checkHeldOnce(what);
      } catch (error) {
        // Only a copy that is gone since the listing (pruned by a later cut) is a reason to list again.
        const copy = /export s(\d+)-v@cg\.g\.(\d+): .*(no export named|error 5)/.exec((error as Error).message);
        if (attempt >= 10 || copy === null) throw error;
        const still = (await held())[Number(copy[1])]?.includes(Number(copy[2]));
        if (still === true) throw error;
      }
    }
  }

  async function checkHeldOnce(what: string): Promise<{ newest: number; steps: number; checked: number }> {
    const { holdings, newest } = await commonHeld();
    assert.ok(newest !== null, `${what}: no cycle held by every member: ${JSON.stringify(holdings)}`);
    const common = (holdings[0] as number[]).filter((cycle) => holdings.every((cycles) => cycles.includes(cycle)));
    let steps = 0;
    for (const cycle of common) {
      const result = workload.check(await copyImages(cycle), `${what} cycle ${cycle}`);
      assert.deepEqual(result.violations, [], result.violations.join('\n'));
      if (cycle === newest) steps = result.steps;
    }
    return { newest, steps, checked: common.length };
  }

  before(async function () {
    this.timeout(150_000);
    directory = makeTempDir('cg78');
    prefix = shmPrefix('78');
    layout = { n: N, prefix, directory, ports: await ports(2 * N), group: groupSpec(N, LIMITS) };
    secondaries = await new CgServe('secondaries', () => secondariesConfig(layout), directory).start();
    for (let i = N - 1; i >= 0; i--) primaries[i] = new CgServe(`p${i}`, () => primaryConfig(layout, i), directory);
    await Promise.all(primaries.map((serve) => serve.start()));
    for (let i = 0; i < N; i++) {
      await waitFor(async () => (await (primaries[i] as CgServe).pair(`cg-${i}`)).state === 'mirroring', `p${i} mirroring`, 60_000, 50);
    }
    workload = new ChainWorkload(N, CHAINS, 78);
    for (let i = 0; i < N; i++) await workload.connect(i, primaries[i] as CgServe);
  });

  afterEach(async function () {
    await workload?.stop();
    const heal = (this.currentTest as unknown as { faultedLink?: () => Promise<unknown> })?.faultedLink;
    if (heal !== undefined) await heal();
  });

  after(async function () {
    this.timeout(60_000);
    await workload?.close();
    for (const serve of [...primaries, secondaries]) await serve?.stop();
    removeShmWithPrefix(prefix);
    removeTempDir(directory);
  });

  it('steady state: every cycle all members hold is consistent; status shows the consistency time, the RPO, the counts and the hold times', async () => {
    workload.start();
    const before = await untilCycles((status) => status.counts.formed >= 20 && workload.acknowledged >= 200, '20 formed cycles and 200 steps');
    await workload.stop();
    const stopped = await cli('group', 'stop', 'g', '--admin', (primaries[0] as CgServe).adminSocket);
    assert.equal(stopped.code, 0, stopped.stderr);
    const status = await untilCycles((entry) => !entry.running && entry.phase === 'idle', 'cycles stopped');
    assert.ok(status.counts.formed >= before.counts.formed && status.counts.formed > 20, JSON.stringify(status.counts));
    assert.ok(status.consistencyTime !== null && Number.isFinite(Date.parse(status.consistencyTime)), String(status.consistencyTime));
    assert.ok(typeof status.rpoSeconds === 'number' && status.rpoSeconds >= 0, String(status.rpoSeconds));
    assert.ok(status.lastFormedCycle > 0 && status.lastFormedCycle <= status.cycle);
    const holdsMs: string[] = [];
    for (let i = 0; i < N; i++) {
      const slave = (await (primaries[i] as CgServe).group('status', { name: 'g' })).slave as { holdMs: { p50: number; p99: number; count: number } | null; holdsTimedOut: number };
      holdsMs.push(`p${i} ${slave.holdMs?.p50.toFixed(2)}/${slave.holdMs?.p99.toFixed(2)}`);
      assert.ok(slave.holdMs !== null && slave.holdMs.count >= status.counts.formed, `p${i} holdMs ${JSON.stringify(slave.holdMs)}`);
      assert.ok(slave.holdMs.p50 >= 0 && slave.holdMs.p99 >= slave.holdMs.p50, JSON.stringify(slave.holdMs));
    }
    const printed = await cli('group', 'status', 'g', '--admin', (primaries[0] as CgServe).adminSocket);
    assert.equal(printed.code, 0, printed.stderr);
    assert.match(printed.stdout, new RegExp(`cycles stopped \\(idle\\)  formed ${status.counts.formed} of ${status.counts.cycles}  consistency time ${status.consistencyTime}`));
    const result = await checkHeld('steady');
    // The check itself can fail: the newest copy with one earlier acknowledged step taken out.
    const images = await copyImages(result.newest);
    let broken = false;
    for (let chain = 0; chain < CHAINS && !broken; chain++) {
      const values = images.map((image) => ChainWorkload.stampOf(image, chain));
      const newest = Math.max(...values);
      const other = values.findIndex((value, i) => value > 0 && value < newest && workload.log[chain]?.[value - 1]?.acked === true && values[i] !== newest);
      if (other < 0) continue;
      (images[other] as Buffer).writeUInt32LE(0, chain * CG_SITE_BLOCK);
      assert.notDeepEqual(workload.check(images, 'tampered').violations, [], 'the check finds an earlier step missing');
      broken = true;
    }
    assert.ok(broken, 'some chain of the copy spans two primaries');
    // The newest common copy is the last formed cycle (or a newer one every member took).
    assert.ok(result.newest >= status.lastFormedCycle, `${result.newest} < ${status.lastFormedCycle}`);
    assert.ok(result.steps > 0, 'the copy holds some steps');
    note(`steady: ${status.counts.formed} formed of ${status.counts.cycles}, ${workload.acknowledged} steps acknowledged, ${result.checked} common copies checked (newest shows ${result.steps} steps), RPO ${status.rpoSeconds} s; hold p50/p99 ms ${holdsMs.join(', ')}`);
    const started = await cli('group', 'start', 'g', '--admin', (primaries[0] as CgServe).adminSocket);
    assert.equal(started.code, 0, started.stderr);
  });

  it('a slave SIGKILLed: cycles fail and none forms, the held copies stay consistent; restarted, the group forms again', async () => {
    const p3 = primaries[3] as CgServe;
    workload.start();
    const running = await cycles();
    await untilCycles((status) => status.counts.formed > running.counts.formed + 5, '5 formed cycles under the workload');
    const beforeKill = await commonHeld();
    workload.markDown(3);
    await p3.sigkill();
    const killedAt = await cycles();
    const failing = await untilCycles((status) => status.lastFailure !== null && status.lastFailure.cycle > killedAt.cycle, 'a cycle failing after the kill');
    assert.ok(['link-down', 'not-ready', 'coordination-timeout', 'slave-error'].includes((failing.lastFailure as { reason: string }).reason), JSON.stringify(failing.lastFailure));
    assert.match((failing.lastFailure as { detail: string }).detail, /p3/);
    // Nothing forms while p3 is down (a cycle in flight at the kill may still have).
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const down = await cycles();
    assert.ok(down.counts.cycles > failing.counts.cycles, 'cycles go on being tried');
    assert.equal(down.counts.formed, failing.counts.formed, `formed while p3 was down: ${JSON.stringify(down.counts)}`);
    const whileDown = await checkHeld('p3 down');
    assert.ok(whileDown.newest >= (beforeKill.newest ?? 0), 'the previous copy is still held');
    await p3.start();
    await workload.connect(3, p3);
    const formedAgain = await untilCycles((status) => status.counts.formed > down.counts.formed + 3, 'the group forming again after the restart', 60_000);
    await workload.stop();
    const after = await checkHeld('p3 restarted');
    note(`slave kill: failure ${JSON.stringify(failing.lastFailure)}; byReason ${JSON.stringify(formedAgain.counts.byReason)}; formed ${down.counts.formed} -> ${formedAgain.counts.formed}`);
    assert.ok(after.newest > whileDown.newest, 'a newer copy formed');
    assert.ok(formedAgain.lastFormedCycle > down.lastFormedCycle);
  });

  it('the master\'s link to a slave delayed, then partitioned: cycles fail and none forms; healed, it forms again and the secondaries converge', async function () {
    const p0 = primaries[0] as CgServe;
    workload.start();
    const first = await cycles();
    const start = await untilCycles((status) => status.counts.formed > first.counts.formed + 3, 'forming under the workload');
    // A fault left by a failed assertion would fail the next test too: heal on the way out.
    (this.test as unknown as { faultedLink?: () => Promise<unknown> }).faultedLink = () => cli('link', 'heal', 'p5', '--admin', p0.adminSocket);
    const faulted = await cli('link', 'fault', 'p5', '--delay', '200', '--admin', p0.adminSocket);
    assert.equal(faulted.code, 0, faulted.stderr);
    const delayed = await untilCycles((status) => status.lastFailure !== null && status.lastFailure.cycle > start.cycle, 'a cycle failing with the delay');
    assert.equal((delayed.lastFailure as { reason: string }).reason, 'coordination-timeout', JSON.stringify(delayed.lastFailure));
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const stillDelayed = await cycles();
    assert.equal(stillDelayed.counts.formed, delayed.counts.formed, 'nothing forms through a 200 ms delay with a 50 ms coordination limit');
    let answer = await cli('link', 'heal', 'p5', '--admin', p0.adminSocket);
    assert.equal(answer.code, 0, answer.stderr);
    const healed1 = await untilCycles((status) => status.counts.formed > stillDelayed.counts.formed + 2, 'forming after the delay is lifted');
    answer = await cli('link', 'fault', 'p5', '--partition', '--admin', p0.adminSocket);
    assert.equal(answer.code, 0, answer.stderr);
    const partitioned = await untilCycles((status) => status.lastFailure !== null && status.lastFailure.cycle > healed1.cycle, 'a cycle failing with the partition');
    assert.ok(['coordination-timeout', 'link-down'].includes((partitioned.lastFailure as { reason: string }).reason), JSON.stringify(partitioned.lastFailure));
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const stillPartitioned = await cycles();
    assert.equal(stillPartitioned.counts.formed, partitioned.counts.formed, `formed through a partition: ${JSON.stringify(stillPartitioned.counts)}`);
    const midFault = await checkHeld('partitioned');
    answer = await cli('link', 'heal', 'p5', '--admin', p0.adminSocket);
    assert.equal(answer.code, 0, answer.stderr);
    await untilCycles((status) => status.counts.formed > stillPartitioned.counts.formed + 3, 'forming after the heal', 60_000);
    await workload.stop();
    const healed = await checkHeld('healed');
    note(`link: delay -> ${JSON.stringify(delayed.lastFailure)}; partition -> ${JSON.stringify(partitioned.lastFailure)}`);
    assert.ok(healed.newest > midFault.newest);
    // Nothing was lost: with the workload stopped each pair catches up and both sides are equal.
    for (let i = 0; i < N; i++) {
      const primary = primaries[i] as CgServe;
      await waitFor(async () => {
        const pair = await primary.pair(`cg-${i}`);
        return pair.state === 'mirroring' && pair.lag?.records === 0 && pair.oos?.tracks === 0;
      }, `p${i} caught up`, 60_000, 50);
      const [left, right] = await Promise.all([primary.read(`p${i}-v`), secondaries.read(`s${i}-v`)]);
      assert.ok(left.equals(right), `p${i} and s${i} differ after the heal`);
    }
  });

  it('the master SIGKILLed and restarted: its cycles resume, the copies it no longer knew of are pruned back to the steady two', async () => {
    const p0 = primaries[0] as CgServe;
    workload.start();
    const first = await cycles();
    await untilCycles((status) => status.counts.formed > first.counts.formed + 3, 'forming under the workload');
    workload.markDown(0);
    await p0.sigkill();
    await new Promise((resolve) => setTimeout(resolve, 500));
    const whileDown = await checkHeld('master down');
    await p0.start();
    await workload.connect(0, p0);
    // A new master process: counts from zero, cycle ids still above the old ones (wall time).
    const again = await untilCycles((status) => status.counts.formed >= 5, 'the restarted master forming', 60_000);
    assert.ok(again.lastFormedCycle > whileDown.newest, `${again.lastFormedCycle} <= ${whileDown.newest}`);
    await untilCycles((status) => status.counts.formed >= again.counts.formed + 3, 'three more formed cycles');
    await workload.stop();
    const after = await checkHeld('master restarted');
    assert.ok(after.newest > whileDown.newest);
    const holdings = await held();
    for (const [i, cycles] of holdings.entries()) assert.ok(cycles.length <= 3, `s${i} holds ${cycles.length} copies: ${cycles.join(', ')}`);
    note(`master restart: copies held per member ${holdings.map((cycles) => cycles.length).join(',')}; formed ${again.counts.formed} since the restart`);
  });

  it('the secondaries\' serve SIGKILLed and restarted: the copies it held are there again and consistent, and the group forms again', async () => {
    workload.start();
    const first = await cycles();
    await untilCycles((status) => status.counts.formed > first.counts.formed + 3, 'forming under the workload');
    const before = await commonHeld();
    await secondaries.sigkill();
    const down = await untilCycles((status) => status.lastFailure !== null && status.lastFailure.cycle > first.cycle && status.counts.failed > first.counts.failed, 'a cycle failing with the secondaries gone');
    await secondaries.start();
    const reopened = await commonHeld();
    const newestBefore = before.newest;
    const newestReopened = reopened.newest;
    assert.ok(newestReopened !== null && newestBefore !== null && newestReopened >= newestBefore, `before ${JSON.stringify(before)}, after the restart ${JSON.stringify(reopened)}`);
    await checkHeld('secondaries restarted');
    const again = await untilCycles((status) => status.counts.formed > down.counts.formed + 3, 'forming again after the secondaries restarted', 60_000);
    await workload.stop();
    const after = await checkHeld('secondaries back');
    assert.ok(after.newest >= again.lastFormedCycle && after.newest > (newestReopened as number));
    note(`secondaries restart: failure ${JSON.stringify(down.lastFailure)}; newest common ${newestBefore} before, ${newestReopened} reopened, ${after.newest} after`);
  });

  it('the master SIGKILLed: the copies stay; group recover --restore takes the pairs over and restores the newest common cycle, consistent', async () => {
    workload.start();
    const running = await untilCycles((status) => status.running && status.lastFormedCycle > 0, 'cycles running');
    await untilCycles((status) => status.counts.formed > running.counts.formed + 5, '5 more formed cycles');
    workload.markDown(0);
    await (primaries[0] as CgServe).sigkill();
    // The slaves' holds end by themselves: their host writes go on without a master.
    const atKill = workload.acknowledged;
    await waitFor(() => workload.acknowledged > atKill + 50, 'writes on the slaves after the master died', 20_000, 20);
    await workload.stop();
    for (let i = 1; i < N; i++) {
      workload.markDown(i);
      await (primaries[i] as CgServe).sigkill();
    }
    const holdings = await held();
    const newest = newestCommonCycle(holdings.map((cycles) => ({ holdings: cycles })));
    assert.ok(newest !== null, JSON.stringify(holdings));
    const copies = await copyImages(newest, CG_SITE_CAPACITY);
    const copyCheck = workload.check(copies, `copy ${newest}`);
    assert.deepEqual(copyCheck.violations, [], copyCheck.violations.join('\n'));
    // One serve holds all 8 secondary controllers: one controller exported first, then the
    // command as an operator would type it: every controller holding copies of the group is
    // recovered at the cycle every member holds.
    const exported = await cli('group', 'recover', 'g', '--admin', secondaries.adminSocket, '--controller', 's0', '--cycle', String(newest));
    assert.equal(exported.code, 0, exported.stderr);
    assert.match(exported.stdout, new RegExp(`s0 volume v: consistent copy cg\\.g\\.${newest} \\(cycle ${newest}\\), exported as <export>@cg\\.g\\.${newest}`));
    const whole = await cli('group', 'recover', 'g', '--admin', secondaries.adminSocket, '--restore');
    assert.equal(whole.code, 0, `${whole.stdout}${whole.stderr}`);
    for (let i = 0; i < N; i++) assert.match(whole.stdout, new RegExp(`s${i} volume v: taken over and restored from cg\\.g\\.${newest} `), whole.stdout);
    for (let i = 0; i < N; i++) {
      const pair = await secondaries.pair(`cg-${i}`, `s${i}`);
      assert.equal(pair.role, 'primary', `s${i}: ${JSON.stringify(pair)}`);
    }
    const recovered = await Promise.all(Array.from({ length: N }, (_, i) => secondaries.read(`s${i}-v`)));
    for (let i = 0; i < N; i++) assert.ok((recovered[i] as Buffer).equals(copies[i] as Buffer), `s${i}-v differs from its copy cg.g.${newest}`);
    const check = workload.check(recovered, 'recovered');
    assert.deepEqual(check.violations, [], check.violations.join('\n'));
    const acked = workload.ackedBefore(recovered, Math.floor(newest / 1000), 'recovered');
    assert.deepEqual(acked.problems, [], acked.problems.join('\n'));
    assert.ok(acked.steps > 0, 'some steps were acknowledged before the recovered cycle');
    note(`master kill: recovered cycle ${newest} (${new Date(Math.floor(newest / 1000)).toISOString()}), copy shows ${check.steps} steps, ${acked.steps} (chain, volume) steps acknowledged before it, ${workload.acknowledged} acknowledged in all, ${workload.unanswered} unanswered`);
    // The recovered volumes are writable.
    const client = await NbdTestClient.open(secondaries.serve.tcpAddress, { exportName: 's1-v' });
    try {
      assert.equal(await client.writeData(CHAINS * CG_SITE_BLOCK, Buffer.alloc(CG_SITE_BLOCK, 7)), 0);
    } finally {
      await client.disconnect().catch(() => client.destroy());
    }
  });
});
