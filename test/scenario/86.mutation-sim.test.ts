// The mutation check: the pair simulation's invariant checkers can fail. Each deliberately broken
// variant of the pair logic (src/replication/pairs.ts PairMutation: an apply out of order, a
// dropped acknowledged write, a resync that skips a track) must be caught within a bounded number
// of seeds; the unbroken logic passes the same seeds.
import * as assert from 'node:assert/strict';

import type { PairMutation } from '../../src/replication/pairs';
import { runPairSchedule } from '../../src/sim/pair-schedule';

const BASE_SEED = process.env.BLOCKMIRROR_MUTATION_SEED !== undefined ? Number(process.env.BLOCKMIRROR_MUTATION_SEED) : 5000;
const MAX_SEEDS = 200;

async function firstCaught(mutation: PairMutation, mode: 'sync' | 'async'): Promise<{ seed: number; violation: string } | null> {
  for (let offset = 0; offset < MAX_SEEDS; offset++) {
    const seed = BASE_SEED + offset;
    const result = await runPairSchedule({ seed, mode, steps: 20, blockCount: 64, mutation, namePrefix: `bm-t86-${process.pid}` });
    if (result.violations.length > 0) return { seed, violation: result.violations[0] as string };
  }
  return null;
}

describe('86 mutation check of the pair simulation', function () {
  this.timeout(120_000);

  for (const [mutation, mode] of [['apply-out-of-order', 'async'], ['drop-write', 'sync'], ['skip-track', 'async']] as const) {
    it(`catches ${mutation} (${mode}) within ${MAX_SEEDS} seeds`, async () => {
      const caught = await firstCaught(mutation, mode);
      assert.ok(caught !== null, `${mutation} survived seeds ${BASE_SEED}..${BASE_SEED + MAX_SEEDS - 1}: the checkers cannot see it`);
      process.stdout.write(`      caught at seed ${caught.seed}: ${caught.violation.slice(0, 160)}\n`);
      // The same seed without the mutation keeps every invariant.
      const clean = await runPairSchedule({ seed: caught.seed, mode, steps: 20, blockCount: 64, namePrefix: `bm-t86-${process.pid}` });
      assert.deepEqual(clean.violations, [], `seed ${caught.seed} fails without the mutation too`);
    });
  }
});
