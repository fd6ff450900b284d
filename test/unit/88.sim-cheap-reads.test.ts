// SimNetwork { trace: false } (what the pair schedules and topology runs use, since they keep
// their own timeline): nothing is recorded, and the network behaves exactly as with the trace
// on: the same bytes arrive at the same virtual times from the same seed, faults included.
import * as assert from 'node:assert/strict';

import { SeededRandom } from '../../src/runtime/random';
import { SimNetwork } from '../../src/sim/network';
import { SimClock } from '../../src/sim/sim-clock';
import type { Wire } from '../../src/transport/wire';

async function scenario(trace: boolean): Promise<{ arrivals: string[]; lines: string[] }> {
  const clock = new SimClock();
  const network = new SimNetwork({ clock, random: new SeededRandom(77), link: { latencyMs: 1, jitterMs: 4 }, trace });
  network.setLink('c1', 'c2', { bandwidthBytesPerSecond: 300_000 });
  const accepted: Wire[] = [];
  await network.node('c2').listen({ host: 'c2', port: 7000 }, (wire) => accepted.push(wire));
  let client: Wire | undefined;
  network.node('c1').dial({ host: 'c2', port: 7000 }, 1000, (error, wire) => {
    assert.equal(error, undefined);
    client = wire;
  });
  assert.ok(await clock.runUntil(() => client !== undefined && accepted.length === 1));
  const arrivals: string[] = [];
  (accepted[0] as Wire).attach({
    data: (chunk) => arrivals.push(`${clock.nowMs().toFixed(6)} ${chunk.toString('hex')}`),
    drain: () => undefined,
    close: (reason) => arrivals.push(`${clock.nowMs().toFixed(6)} close ${reason}`),
  });
  (client as Wire).attach({ data: () => undefined, drain: () => undefined, close: () => undefined });
  for (let round = 0; round < 40; round++) {
    (client as Wire).write([Buffer.from(Array.from({ length: 50 + round }, (_, index) => (index * 7 + round) & 0xff))]);
    if (round === 15) network.partition('c1', 'c2', { direction: 'a-to-b' });
    if (round === 25) network.heal('c1', 'c2');
    await clock.runFor(2);
  }
  network.reset('c1', 'c2');
  await clock.runUntil(() => clock.pendingTimerCount === 0);
  return { arrivals, lines: network.trace() };
}

describe('88 sim network with the trace off', () => {
  it('records nothing, and delivers the same bytes at the same virtual times as with the trace on', async () => {
    const on = await scenario(true);
    const off = await scenario(false);
    assert.ok(on.lines.length > 40, `${on.lines.length} trace lines with the trace on`);
    assert.ok(on.lines.some((line) => / deliver /.test(line)));
    assert.deepEqual(off.lines, []);
    assert.ok(on.arrivals.length > 20);
    assert.deepEqual(off.arrivals, on.arrivals);
  });

  it('an onTrace hook still sees every line; a trace option that is no boolean is a TypeError', async () => {
    const seen: string[] = [];
    const network = new SimNetwork({ clock: new SimClock(), random: new SeededRandom(1), trace: false, onTrace: (line) => seen.push(line) });
    await network.node('c1').listen({ host: 'c1', port: 1 }, () => undefined);
    assert.equal(seen.length, 1);
    assert.throws(() => new SimNetwork({ clock: new SimClock(), random: new SeededRandom(1), trace: 'no' as never }), TypeError);
  });
});
