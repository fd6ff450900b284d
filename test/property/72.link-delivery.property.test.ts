// Property test of link delivery ("in order or not at all"): two controllers, c0 and c1, on the
// simulated network; any sequence of sends in both directions interleaved with any faults
// (network partitions one way and both, resets, latency, jitter, bandwidth and drops; link
// partitions, delays and drops, healed or not), then everything healed and run to quiescence.
// Per direction, the counters the receiver got are strictly increasing (never twice, never out
// of order), every one of them was sent, and every message sent was delivered or reported
// unconfirmed to its sender (or both, when only the acknowledgement was lost): none vanished.
// The seed is printed on failure; rerun with LINK_PROPERTY_SEED=<seed> (and LINK_PROPERTY_RUNS=<n>).

import * as assert from 'node:assert/strict';

import fc from 'fast-check';

import { Mesh } from '../../src/sim/mesh';
import type { LinkOptions as SimLinkOptions, PartitionDirection } from '../../src/sim/network';
import type { FaultSettings } from '../../src/transport/faults';

const SEED = process.env.LINK_PROPERTY_SEED !== undefined ? Number(process.env.LINK_PROPERTY_SEED) : Date.now() % 2 ** 31;
const RUNS = process.env.LINK_PROPERTY_RUNS !== undefined ? Number(process.env.LINK_PROPERTY_RUNS) : 100;

type Side = 'c0' | 'c1';

type Op =
  | { op: 'send'; from: Side; count: number; paddingBytes: number }
  | { op: 'run'; durationMs: number }
  | { op: 'partition'; direction: PartitionDirection }
  | { op: 'heal-network' }
  | { op: 'reset' }
  | { op: 'network-link'; from: Side; settings: SimLinkOptions }
  | { op: 'link-faults'; side: Side; settings: FaultSettings }
  | { op: 'heal-link'; side: Side };

const side = fc.constantFrom<Side>('c0', 'c1');
const faultDirection = fc.constantFrom<'in' | 'out' | 'both'>('in', 'out', 'both');

const opArbitrary: fc.Arbitrary<Op> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ op: fc.constant('send' as const), from: side, count: fc.integer({ min: 1, max: 20 }), paddingBytes: fc.integer({ min: 0, max: 3000 }) }) },
  {
    weight: 8,
    arbitrary: fc.record({
      op: fc.constant('run' as const),
      // Mostly shorter than a fault delay or a heartbeat, sometimes past the dead-peer timeout.
      durationMs: fc.oneof({ weight: 3, arbitrary: fc.integer({ min: 0, max: 60 }) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 400 }) }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('partition' as const), direction: fc.constantFrom<PartitionDirection>('both', 'a-to-b', 'b-to-a') }) },
  { weight: 2, arbitrary: fc.constant({ op: 'heal-network' as const }) },
  { weight: 1, arbitrary: fc.constant({ op: 'reset' as const }) },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('network-link' as const),
      from: side,
      settings: fc.record({
        latencyMs: fc.integer({ min: 0, max: 40 }),
        jitterMs: fc.integer({ min: 0, max: 20 }),
        dropProbability: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 50 }).map((permille) => permille / 1000)),
        bandwidthBytesPerSecond: fc.oneof(fc.constant(Infinity), fc.integer({ min: 20_000, max: 2_000_000 })),
      }),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      op: fc.constant('link-faults' as const),
      side,
      settings: fc.oneof(
        fc.record({ partition: fc.boolean(), direction: faultDirection }),
        fc.record({ delayMs: fc.integer({ min: 0, max: 200 }), jitterMs: fc.integer({ min: 0, max: 100 }), direction: faultDirection }),
        fc.record({ bandwidthBytesPerSecond: fc.integer({ min: 0, max: 1_000_000 }), direction: faultDirection }),
        fc.constant({ drop: true }),
      ),
    }),
  },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('heal-link' as const), side }) },
);

const scenarioArbitrary = fc.record({
  simSeed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
  ops: fc.array(opArbitrary, { minLength: 1, maxLength: 60, size: 'medium' }),
  /** How link faults end: Link.heal(), or setFaults back to zero. */
  healLinksBy: fc.constantFrom<'heal' | 'lift'>('heal', 'lift'),
});

function other(name: Side): Side {
  return name === 'c0' ? 'c1' : 'c0';
}

async function apply(mesh: Mesh, op: Op): Promise<void> {
  switch (op.op) {
    case 'send':
      for (let index = 0; index < op.count; index++) mesh.send(op.from, other(op.from), op.paddingBytes);
      return;
    case 'run':
      await mesh.runFor(op.durationMs);
      return;
    case 'partition':
      mesh.partition('c0', 'c1', op.direction);
      return;
    case 'heal-network':
      mesh.heal('c0', 'c1', 'both');
      return;
    case 'reset':
      mesh.reset('c0', 'c1');
      return;
    case 'network-link':
      mesh.setNetworkLink(op.from, other(op.from), op.settings);
      return;
    case 'link-faults':
      mesh.setLinkFaults(op.side, other(op.side), op.settings);
      return;
    case 'heal-link':
      mesh.healLink(op.side, other(op.side));
      return;
  }
}

describe('72 link delivery (property)', function () {
  this.timeout(120_000);

  it('delivers in order or not at all, and reports what it could not confirm', async () => {
    const property = fc.asyncProperty(scenarioArbitrary, async ({ simSeed, ops, healLinksBy }) => {
      // Given c0 and c1 with their link up,
      const mesh = new Mesh({ seed: simSeed, controllerCount: 2 });
      await mesh.start();
      assert.ok(await mesh.runUntil(() => mesh.allUp(), 1000), mesh.diagnosis());
      // after any sends and faults,
      for (const op of ops) await apply(mesh, op);
      // once every fault has ended and the link is quiet again,
      mesh.healAll({ links: healLinksBy });
      const quiet = await mesh.quiesce(10_000);
      assert.ok(quiet, mesh.failures.join('\n'));
      // the checker found nothing,
      assert.deepEqual(mesh.check(), []);
      for (const [from, to] of [['c0', 'c1'], ['c1', 'c0']] as const) {
        // the receiver's counters are strictly increasing, each one sent,
        const delivered = mesh.deliveredCounters(from, to);
        const sent = mesh.sentMessages(from, to);
        for (let index = 1; index < delivered.length; index++) {
          assert.ok((delivered[index] as number) > (delivered[index - 1] as number), `${from}->${to}: #${delivered[index]} after #${delivered[index - 1]}`);
        }
        assert.ok(delivered.every((counter) => counter >= 1 && counter <= sent.length), `${from}->${to}: a counter never sent`);
        // and every message sent was delivered or reported unconfirmed.
        const vanished = sent.filter((message) => !message.delivered && !message.unconfirmed).map((message) => message.counter);
        assert.deepEqual(vanished, [], `${from}->${to}: neither delivered nor reported`);
      }
      // And the link works again.
      assert.equal(mesh.send('c0', 'c1'), 'sent');
      assert.equal(mesh.send('c1', 'c0'), 'sent');
    });
    await fc.assert(property, { seed: SEED, numRuns: RUNS }).catch((error: Error) => {
      error.message = `link delivery failed with LINK_PROPERTY_SEED=${SEED}\n${error.message}`;
      console.error(`property seed: LINK_PROPERTY_SEED=${SEED}`);
      throw error;
    });
  });
});
