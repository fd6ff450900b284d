// Notes on the design
// -------------------
// The secondary side's consistent copies (src/cgroup/copies.ts SecondaryCopies) and the recover
// choice (src/cgroup/recover.ts newestCommonCycle). SecondaryCopies sees a controller's
// snapshots only through CopySnapshots (create, delete, names); here that is MemorySnapshots, a
// Map of volume -> Set of snapshot names: the unit under test is the pruning rule, not the store
// (scenario 94 runs it over real snapshots). Its names() lists in lexicographic order (as
// unrelated to cycle order as a store's slot order), so cg.g.10 comes before cg.g.9.
//
// Unit cases: take() creates cg.<g>.<c>; with formed 0 nothing is deleted; with formed f it
// keeps the newest held cycle <= f and the new one (and any newer copy) and deletes the rest,
// the unformed ones between them included, and nothing when no held cycle is <= f; the formed
// cycle it knows only grows, per group; other groups' copies and other snapshots are never
// touched; a create failure throws ERR_CGROUP_COPY, counts copiesFailed and still prunes; a
// delete that fails is skipped; held() groups by group.
//
// The property (fast-check; rerun with CGROUP_COPIES_SEED=<seed>, CGROUP_COPIES_RUNS=<n>): a
// model of 1..3 secondary controllers with 1..2 member volumes each (every volume also carries a
// plain snapshot and copies of another group), driven by a master as CgroupMaster computes
// `formed`: cycles strictly increase (by 1 or by a jump, from 1 or from a wall-clock-sized id);
// each cut reaches each member or not, or reaches it and its copy fails; a cut carries formed =
// the last cycle whose copy every member took (0 before any); a cycle becomes formed when every
// member took it; a secondary controller may restart (a new SecondaryCopies over the same
// snapshots: what it knew of formed is lost). After every step, with F the last formed cycle:
//   (1) newestCommonCycle over every member's holdings is exactly F (null before any cycle
//       formed): never older (the pruning never takes F away from anyone) and never newer
//       (a cycle every member holds is one every member took);
//   (2) a member whose controller knows a formed cycle and that took a cut since holds at most
//       two copies: one of a formed cycle and its newest;
//   (3) every snapshot that is not a copy of the group is exactly as it was.
// Master restarts (its last formed cycle forgotten, formed 0 sent until a cycle forms again) are
// in the model too: such a cut deletes nothing but the oldest copies past MAX_UNPRUNED, never the
// newest one the secondary knows formed. (A cut with formed 0 used to prune with the older
// formed cycle the secondary still knew, deleting F: found by this model, fixed in copies.ts.)
// CGROUP_COPIES_MASTER_RESTARTS=0 leaves them out.

import { strict as assert } from 'node:assert';

import fc from 'fast-check';

import { type CopySnapshots, MAX_UNPRUNED, SecondaryCopies, rowsOf } from '../../src/cgroup/copies';
import { newestCommonCycle } from '../../src/cgroup/recover';
import { CgroupError, copyName } from '../../src/cgroup/types';

const SEED = process.env.CGROUP_COPIES_SEED !== undefined ? Number(process.env.CGROUP_COPIES_SEED) : Date.now() % 2 ** 31;
const RUNS = process.env.CGROUP_COPIES_RUNS !== undefined ? Number(process.env.CGROUP_COPIES_RUNS) : 300;
const masterRestarts = process.env.CGROUP_COPIES_MASTER_RESTARTS !== '0';

/** A controller's snapshots as names only (see the note). */
class MemorySnapshots implements CopySnapshots {
  readonly volumes = new Map<string, Set<string>>();
  /** `volume/name` whose next create fails. */
  readonly failNextCreate = new Set<string>();
  /** `volume/name` listed but whose delete fails (an operator deleted it under us). */
  readonly vanished = new Set<string>();
  creates = 0;
  deletes = 0;

  constructor(initial: Record<string, string[]> = {}) {
    for (const [volume, names] of Object.entries(initial)) this.volumes.set(volume, new Set(names));
  }

  private of(volume: string): Set<string> {
    const names = this.volumes.get(volume);
    if (names === undefined) throw new Error(`no volume ${volume}`);
    return names;
  }

  create(volume: string, name: string): void {
    const names = this.of(volume);
    if (this.failNextCreate.delete(`${volume}/${name}`)) throw new Error('no room for another snapshot');
    if (names.has(name)) throw new Error(`snapshot ${name} exists`);
    names.add(name);
    this.creates++;
  }

  delete(volume: string, name: string): void {
    const names = this.of(volume);
    if (this.vanished.has(`${volume}/${name}`) || !names.has(name)) throw new Error(`no snapshot ${name}`);
    names.delete(name);
    this.deletes++;
  }

  names(volume: string): string[] {
    return [...this.of(volume)].sort();
  }

  set(volume: string): string[] {
    return this.names(volume);
  }
}

function copiesOf(snapshots: MemorySnapshots, volumes = [...snapshots.volumes.keys()]): SecondaryCopies {
  return new SecondaryCopies(snapshots, () => volumes);
}

/** Takes cycles in order with formed 0 (nothing pruned). */
function seed(copies: SecondaryCopies, volume: string, group: string, cycles: number[]): void {
  for (const cycle of cycles) copies.take(volume, group, cycle, 0);
}

describe('90 consistency-group copies', () => {
  describe('SecondaryCopies', () => {
    it('take() creates cg.<group>.<cycle> and answers it with what is held', () => {
      const snapshots = new MemorySnapshots({ v: [] });
      const copies = copiesOf(snapshots);
      assert.deepEqual(copies.take('v', 'g', 1_764_633_600_000_123, 0), { snapshot: 'cg.g.1764633600000123', holdings: [1_764_633_600_000_123] });
      assert.deepEqual(snapshots.set('v'), ['cg.g.1764633600000123']);
      assert.equal(copies.copiesTaken, 1);
      // The same cut again (a resent PAIR_CG_CUT): nothing new is created.
      assert.deepEqual(copies.take('v', 'g', 1_764_633_600_000_123, 0).holdings, [1_764_633_600_000_123]);
      assert.equal(copies.copiesTaken, 1);
      assert.equal(snapshots.creates, 1);
    });

    it('with formed 0 nothing is deleted, and holdings are in cycle order', () => {
      const snapshots = new MemorySnapshots({ v: [] });
      const copies = copiesOf(snapshots);
      seed(copies, 'v', 'g', [1, 2, 9, 10, 11]);
      assert.deepEqual(copies.holdings('v', 'g'), [1, 2, 9, 10, 11]);
      assert.deepEqual(snapshots.set('v'), ['cg.g.1', 'cg.g.10', 'cg.g.11', 'cg.g.2', 'cg.g.9']);
      assert.equal(copies.copiesDeleted, 0);
      assert.equal(snapshots.deletes, 0);
    });

    it('with formed f: keeps the newest held cycle <= f and the new one, deletes the rest (unformed ones between them too)', () => {
      const snapshots = new MemorySnapshots({ v: [] });
      const copies = copiesOf(snapshots);
      seed(copies, 'v', 'g', [1, 2, 3, 5, 6]);
      assert.deepEqual(copies.take('v', 'g', 7, 3), { snapshot: 'cg.g.7', holdings: [3, 7] });
      assert.equal(copies.copiesDeleted, 4); // 1, 2 (older) and 5, 6 (unformed, between)
      // Steady state: two copies, the last formed and the newest.
      assert.deepEqual(copies.take('v', 'g', 8, 7).holdings, [7, 8]);
      assert.deepEqual(copies.take('v', 'g', 9, 8).holdings, [8, 9]);
      assert.deepEqual(snapshots.set('v'), ['cg.g.8', 'cg.g.9']);
      assert.equal(copies.copiesDeleted, 6);
    });

    it('with formed f not held: the newest held cycle below f is the one kept', () => {
      const snapshots = new MemorySnapshots({ v: [] });
      const copies = copiesOf(snapshots);
      seed(copies, 'v', 'g', [2, 4, 6, 8]);
      assert.deepEqual(copies.take('v', 'g', 9, 5).holdings, [4, 9]);
      assert.equal(copies.copiesDeleted, 3);
    });

    it('with formed f but no held cycle <= f: nothing is deleted', () => {
      const snapshots = new MemorySnapshots({ v: [] });
      const copies = copiesOf(snapshots);
      seed(copies, 'v', 'g', [6, 8]);
      assert.deepEqual(copies.take('v', 'g', 9, 5).holdings, [6, 8, 9]);
      assert.equal(copies.copiesDeleted, 0);
    });

    it('a copy newer than the cycle taken is kept', () => {
      const snapshots = new MemorySnapshots({ v: [] });
      const copies = copiesOf(snapshots);
      seed(copies, 'v', 'g', [1, 3, 9]);
      assert.deepEqual(copies.take('v', 'g', 5, 1).holdings, [1, 5, 9]);
    });

    it('the formed cycle it knows only grows (a lower formed is not a reason to keep more), per group', () => {
      const snapshots = new MemorySnapshots({ v: [] });
      const copies = copiesOf(snapshots);
      seed(copies, 'v', 'g', [1, 3, 5]);
      assert.deepEqual(copies.take('v', 'g', 6, 3).holdings, [3, 6]);
      // formed 1 now: still anchored at 3 (known formed), so 6 goes.
      assert.deepEqual(copies.take('v', 'g', 7, 1).holdings, [3, 7]);
      // Another group's formed is its own: h knows none, nothing of h is deleted.
      seed(copies, 'v', 'h', [2, 4]);
      assert.deepEqual(copies.take('v', 'h', 8, 0).holdings, [2, 4, 8]);
      assert.deepEqual(copies.held().map((entry) => [entry.group, entry.formedKnown]).sort(), [['g', 3], ['h', 0]]);
    });

    it('never touches copies of other groups or snapshots that are not copies', () => {
      const others = ['base', 'cg.g', 'cg.g.', 'cg.g.05', 'cg.g.x', 'cg.g.1.5', 'cg.gg.1', 'cg.other.1', 'cg.other.2', 'cg.g.1-old', 'CG.g.1', 'x.cg.g.1', 'cg.g.12345678901234567'];
      const snapshots = new MemorySnapshots({ v: [...others] });
      const copies = copiesOf(snapshots);
      seed(copies, 'v', 'g', [1, 2, 3]);
      copies.take('v', 'g', 4, 2);
      copies.take('v', 'g', 5, 4);
      assert.deepEqual(copies.holdings('v', 'g'), [4, 5]);
      assert.deepEqual(snapshots.set('v'), [...others, 'cg.g.4', 'cg.g.5'].sort());
    });

    it('a create failure throws ERR_CGROUP_COPY, counts copiesFailed, and still prunes what no recover can choose', () => {
      const snapshots = new MemorySnapshots({ v: [] });
      const copies = copiesOf(snapshots);
      seed(copies, 'v', 'g', [1, 2, 3]);
      snapshots.failNextCreate.add('v/cg.g.4');
      assert.throws(() => copies.take('v', 'g', 4, 2), (error: unknown) => error instanceof CgroupError && error.code === 'ERR_CGROUP_COPY'
        && /cg\.g\.4 of v: no room for another snapshot/.test(error.message));
      assert.equal(copies.copiesFailed, 1);
      assert.equal(copies.copiesTaken, 3);
      assert.deepEqual(copies.holdings('v', 'g'), [2]);
      // With formed 0 a failure deletes nothing.
      snapshots.failNextCreate.add('v/cg.g.9');
      const fresh = copiesOf(snapshots);
      assert.throws(() => fresh.take('v', 'g', 9, 0), (error: unknown) => error instanceof CgroupError && error.code === 'ERR_CGROUP_COPY');
      assert.equal(fresh.copiesFailed, 1);
      assert.deepEqual(fresh.holdings('v', 'g'), [2]);
    });

    it('a copy that cannot be deleted (gone under it) is skipped, and the cut goes on', () => {
      const snapshots = new MemorySnapshots({ v: [] });
      const copies = copiesOf(snapshots);
      seed(copies, 'v', 'g', [1, 2, 3]);
      snapshots.vanished.add('v/cg.g.1');
      assert.deepEqual(copies.take('v', 'g', 4, 3), { snapshot: 'cg.g.4', holdings: [1, 3, 4] });
      assert.equal(copies.copiesDeleted, 1);
    });

    it('held() lists every volume\'s copies by group, in cycle order', () => {
      const snapshots = new MemorySnapshots({
        v1: ['cg.a.10', 'cg.a.9', 'cg.b.2', 'cg.a.b.4', 'cg.a.05', 'cg.a.x', 'daily'],
        v2: ['cg.b.7'],
        v3: ['plain'],
      });
      const copies = copiesOf(snapshots, ['v1', 'v2', 'v3']);
      copies.take('v2', 'b', 8, 7);
      const held = copies.held().map((entry) => ({ ...entry })).sort((x, y) => `${x.volume}/${x.group}`.localeCompare(`${y.volume}/${y.group}`));
      assert.deepEqual(held, [
        { group: 'a', volume: 'v1', cycles: [9, 10], formedKnown: 0, pinned: null },
        { group: 'a.b', volume: 'v1', cycles: [4], formedKnown: 0, pinned: null },
        { group: 'b', volume: 'v1', cycles: [2], formedKnown: 7, pinned: null },
        { group: 'b', volume: 'v2', cycles: [7, 8], formedKnown: 7, pinned: null },
      ]);
    });

    it('a cycle recover pinned is never pruned, whatever later cuts say; a new pin replaces it', () => {
      const snapshots = new MemorySnapshots({ v: [] });
      const copies = copiesOf(snapshots);
      seed(copies, 'v', 'g', [1, 2]);
      copies.pin('g', 1);
      copies.take('v', 'g', 3, 2);
      copies.take('v', 'g', 4, 3);
      assert.deepEqual(copies.holdings('v', 'g'), [1, 3, 4]);
      assert.equal(copies.held()[0]?.pinned, 1);
      copies.pin('g', 4);
      copies.take('v', 'g', 5, 4);
      copies.take('v', 'g', 6, 5);
      assert.deepEqual(copies.holdings('v', 'g'), [4, 5, 6]);
    });

    it('rowsOf: the rows naming a controller', () => {
      const rows = [
        { id: 'r1', role: 'master' as const, controller: 'c1', volume: 'a' },
        { id: 'r2', role: 'slave' as const, controller: 'c2', volume: 'a' },
        { id: 'r3', role: 'master' as const, controller: 'c1', volume: 'b' },
      ];
      assert.deepEqual(rowsOf(rows, 'c1').map((row) => row.id), ['r1', 'r3']);
      assert.deepEqual(rowsOf(rows, 'c9'), []);
    });
  });

  describe('newestCommonCycle', () => {
    it('edge cases: no member, an empty member, disjoint, single, duplicates, unsorted', () => {
      assert.equal(newestCommonCycle([]), null);
      assert.equal(newestCommonCycle([{ holdings: [] }]), null);
      assert.equal(newestCommonCycle([{ holdings: [3, 1, 2] }]), 3);
      assert.equal(newestCommonCycle([{ holdings: [1, 2] }, { holdings: [3, 4] }]), null);
      assert.equal(newestCommonCycle([{ holdings: [1, 2] }, { holdings: [] }, { holdings: [1, 2] }]), null);
      assert.equal(newestCommonCycle([{ holdings: [1, 5, 9] }, { holdings: [12, 9, 5] }, { holdings: [5, 9, 9] }]), 9);
      assert.equal(newestCommonCycle([{ holdings: [1, 5, 9] }, { holdings: [5, 12] }, { holdings: [1, 5] }]), 5);
      assert.equal(newestCommonCycle([{ holdings: [Number.MAX_SAFE_INTEGER, 1] }, { holdings: [1, Number.MAX_SAFE_INTEGER] }]), Number.MAX_SAFE_INTEGER);
    });
  });

  describe('the pruning keeps a recoverable cycle (property, see the note)', () => {
    type Outcome = 'reached' | 'missed' | 'failed';
    type Step =
      | { kind: 'cut'; gap: number; outcomes: Outcome[] }
      | { kind: 'restart-secondary'; which: number }
      | { kind: 'restart-master' };

    const outcome = fc.oneof(
      { weight: 7, arbitrary: fc.constant<Outcome>('reached') },
      { weight: 2, arbitrary: fc.constant<Outcome>('missed') },
      { weight: 1, arbitrary: fc.constant<Outcome>('failed') },
    );
    const gap = fc.oneof({ weight: 4, arbitrary: fc.constant(1) }, { weight: 1, arbitrary: fc.integer({ min: 2, max: 1_000_000 }) });
    const steps: fc.WeightedArbitrary<Step>[] = [
      { weight: 6, arbitrary: fc.record({ kind: fc.constant('cut' as const), gap, outcomes: fc.array(outcome, { minLength: 6, maxLength: 6 }) }) },
      // A cut that reaches every member (so cycles form often enough to prune).
      { weight: 3, arbitrary: gap.map((g): Step => ({ kind: 'cut', gap: g, outcomes: Array<Outcome>(6).fill('reached') })) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('restart-secondary' as const), which: fc.nat(2) }) },
    ];
    if (masterRestarts) steps.push({ weight: 1, arbitrary: fc.constant<Step>({ kind: 'restart-master' }) });
    const step: fc.Arbitrary<Step> = fc.oneof(...steps);
    const world = fc.record({
      shape: fc.array(fc.integer({ min: 1, max: 2 }), { minLength: 1, maxLength: 3 }),
      firstCycle: fc.constantFrom(1, 1_764_633_600_000_000),
      steps: fc.array(step, { minLength: 1, maxLength: 40 }),
    });

    it('after every step the newest common cycle is the last formed one, members hold at most two copies, nothing else is touched', () => {
      const stats = { formed: 0, pruned: 0, steps: 0 };
      fc.assert(fc.property(world, ({ shape, firstCycle, steps }) => {
        const others = ['base', 'cg.other.3', 'cg.g.1.2'];
        const controllers = shape.map((volumeCount) => {
          const volumes = Array.from({ length: volumeCount }, (_, index) => `v${index}`);
          const snapshots = new MemorySnapshots(Object.fromEntries(volumes.map((volume) => [volume, [...others]])));
          return { volumes, snapshots, copies: copiesOf(snapshots, volumes), knowsFormed: false, cutSinceRestart: new Set<string>() };
        });
        const members = controllers.flatMap((controller) => controller.volumes.map((volume) => ({ controller, volume })));
        let next = firstCycle;
        const lastCutFormed = new Map<string, number>();
        let masterFormed = 0; // what the master sends (CgroupMaster.lastFormed)
        let lastFormed: number | null = null; // the truth: the last cycle every member took
        for (const [index, action] of steps.entries()) {
          stats.steps++;
          if (action.kind === 'restart-master') masterFormed = 0;
          else if (action.kind === 'restart-secondary') {
            const controller = controllers[action.which % controllers.length] as (typeof controllers)[number];
            controller.copies = copiesOf(controller.snapshots, controller.volumes);
            controller.knowsFormed = false;
            controller.cutSinceRestart.clear();
          } else {
            const cycle = next;
            next += action.gap;
            const formed = masterFormed;
            let everyMember = true;
            members.forEach(({ controller, volume }, at) => {
              const what = action.outcomes[at] ?? 'reached';
              if (what === 'missed') {
                everyMember = false;
                return;
              }
              if (what === 'failed') {
                everyMember = false;
                controller.snapshots.failNextCreate.add(`${volume}/${copyName('g', cycle)}`);
                assert.throws(() => controller.copies.take(volume, 'g', cycle, formed), (error: unknown) => error instanceof CgroupError && error.code === 'ERR_CGROUP_COPY');
              } else {
                const taken = controller.copies.take(volume, 'g', cycle, formed);
                assert.equal(taken.snapshot, copyName('g', cycle));
                assert.deepEqual(taken.holdings, controller.copies.holdings(volume, 'g'));
                assert.ok(taken.holdings.includes(cycle));
              }
              if (formed > 0) controller.knowsFormed = true;
              if (controller.knowsFormed) controller.cutSinceRestart.add(volume);
              lastCutFormed.set(`${at}`, formed);
            });
            if (everyMember) {
              lastFormed = cycle;
              masterFormed = cycle;
              stats.formed++;
            }
          }
          const holdings = members.map(({ controller, volume }) => ({ holdings: controller.copies.holdings(volume, 'g') }));
          const where: string = `after step ${index} (${JSON.stringify(action)}): holdings ${JSON.stringify(holdings)}, last formed ${lastFormed}`;
          // (1) exactly the last formed cycle.
          assert.equal(newestCommonCycle(holdings), lastFormed, where);
          for (const [at, { controller, volume }] of members.entries()) {
            const held = (holdings[at] as { holdings: number[] }).holdings;
            // (2) at most two copies once formed is known here and a cut came since, if that cut
            // said which cycle formed; after a cut from a master that forgot (formed 0), at most
            // MAX_UNPRUNED (+ the one it knows formed).
            if ((lastCutFormed.get(`${at}`) ?? 1) === 0) {
              assert.ok(held.length <= MAX_UNPRUNED + 1, `${where}: member ${at} holds ${held.length}`);
            } else if (controller.cutSinceRestart.has(volume)) {
              assert.ok(held.length <= 2, `${where}: member ${at} holds ${held.length}`);
              if (held.length === 2) stats.pruned++;
            }
            // (3) everything else as it was.
            assert.deepEqual(controller.snapshots.names(volume).filter((name) => !/^cg\.g\.[0-9]+$/.test(name)), [...others].sort(), where);
          }
        }
      }), { seed: SEED, numRuns: RUNS });
      // The model formed cycles and pruned to two copies: the properties were exercised.
      assert.ok(stats.formed > 0 && stats.pruned > 0, JSON.stringify(stats));
    });
  });
});
