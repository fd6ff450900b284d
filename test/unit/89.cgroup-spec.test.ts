// Notes on the design
// -------------------
// The consistency group's relationship table and copy names (src/cgroup/types.ts):
//
//   - cgroupSpecProblems: the sound spec has no problem; each rule (group name, at least one row,
//     at most MAX_RELATIONSHIPS rows, row ids/roles/controllers/volumes/pairs, duplicate ids,
//     duplicate (controller, volume), exactly one master controller, every row of the master
//     controller is master, each limit an integer in CGROUP_LIMIT_RANGES) has a spec that breaks
//     only it and gets exactly one problem naming it (a broken rule never hides behind another);
//     every limit's bounds are accepted and one past them refused.
//   - GROUP_NAME_PATTERN keeps `cg.<group>.<cycle>` a snapshot name: the longest group with the
//     largest cycle (16 digits) is created as a snapshot in a real SnapshotStore (47 bytes at most).
//   - controllersOf: the master first, then the others sorted, each once; masterOf refuses a
//     table with no master (ERR_CGROUP_BAD_SPEC).
//   - copyName/cycleOfCopy round trip for cycles 1 .. 2^53 - 1, and cycleOfCopy refuses another
//     group's copy, a leading zero, non-digits, more than 16 digits, a cycle above 2^53 - 1.

import { strict as assert } from 'node:assert';

import { SnapshotStore } from '../../src/storage/snapshot';
import { Volume } from '../../src/storage/volume';
import {
  CGROUP_DEFAULTS, CGROUP_LIMIT_RANGES, type CgroupLimits, type CgroupSpec, CgroupError, GROUP_NAME_PATTERN, MAX_RELATIONSHIPS,
  type Relationship, cgroupSpecProblems, controllersOf, copyName, cycleOfCopy, limitsOf, masterOf,
} from '../../src/cgroup/types';

/** A sound table: master controller c1 (two volumes), slaves c3 and c2. */
function sound(): CgroupSpec {
  return {
    name: 'orders',
    relationships: [
      { id: 'r1', role: 'master', controller: 'c1', volume: 'db' },
      { id: 'r2', role: 'master', controller: 'c1', volume: 'log', pair: 'log-dr' },
      { id: 'r3', role: 'slave', controller: 'c3', volume: 'db' },
      { id: 'r4', role: 'slave', controller: 'c2', volume: 'db' },
    ],
  };
}

function withRow(index: number, change: Partial<Relationship> | Record<string, unknown>): CgroupSpec {
  const spec = sound();
  spec.relationships[index] = { ...spec.relationships[index], ...change } as Relationship;
  return spec;
}

/** Exactly one problem, matching `pattern`. */
function oneProblem(spec: unknown, pattern: RegExp): void {
  const problems = cgroupSpecProblems(spec as CgroupSpec);
  assert.equal(problems.length, 1, `expected one problem matching ${pattern}, got ${JSON.stringify(problems)}`);
  assert.match(problems[0] as string, pattern);
}

describe('89 consistency-group spec', () => {
  describe('cgroupSpecProblems', () => {
    it('has nothing to say about a sound spec, with or without limits', () => {
      assert.deepEqual(cgroupSpecProblems(sound()), []);
      assert.deepEqual(cgroupSpecProblems({ ...sound(), ...CGROUP_DEFAULTS, autoStart: false }), []);
      // One row is a group too (the master's own volume).
      assert.deepEqual(cgroupSpecProblems({ name: 'g', relationships: [{ id: 'r', role: 'master', controller: 'c', volume: 'v' }] }), []);
    });

    it('the group name: GROUP_NAME_PATTERN (1..24 characters, not starting with a dot)', () => {
      for (const good of ['g', 'a'.repeat(24), 'orders_2026-12', '_x', '-x', 'a.b']) {
        assert.deepEqual(cgroupSpecProblems({ ...sound(), name: good }), [], good);
      }
      for (const bad of ['', 'a'.repeat(25), '.hidden', 'has space', 'a/b', 'é', 'a:b']) oneProblem({ ...sound(), name: bad }, /^name must match/);
      oneProblem({ ...sound(), name: 7 }, /^name must match/);
      oneProblem({ ...sound(), name: undefined }, /^name must match/);
    });

    it('GROUP_NAME_PATTERN leaves room for `cg.<group>.<16 digits>` in a 47-byte snapshot name', async () => {
      const longest = 'Z'.repeat(24);
      assert.ok(GROUP_NAME_PATTERN.test(longest) && !GROUP_NAME_PATTERN.test(`${longest}Z`));
      const name = copyName(longest, Number.MAX_SAFE_INTEGER);
      assert.equal(name.length, 3 + 24 + 1 + 16);
      assert.ok(name.length <= 47);
      // The real store takes it (and would refuse one byte more).
      const volume = Volume.create({ capacityBytes: 64 * 1024, blockSize: 4096 });
      const store = SnapshotStore.create(volume, { chunkBytes: 4096 });
      try {
        store.createSnapshot(name);
        assert.deepEqual(store.list().map((entry) => entry.name), [name]);
        assert.equal(cycleOfCopy(longest, name), Number.MAX_SAFE_INTEGER);
        assert.throws(() => store.createSnapshot(`${name}${'9'.repeat(47 - name.length + 1)}`), RangeError);
      } finally {
        await store.close();
        await volume.close();
      }
    });

    it('at least one row, at most MAX_RELATIONSHIPS', () => {
      oneProblem({ ...sound(), relationships: [] }, /at least one row/);
      oneProblem({ name: 'g' }, /at least one row/);
      oneProblem({ name: 'g', relationships: 'r1' }, /at least one row/);
      const rows = (count: number): Relationship[] => Array.from({ length: count }, (_, index) => ({ id: `r${index}`, role: index === 0 ? 'master' : 'slave', controller: `c${index}`, volume: 'v' }));
      assert.deepEqual(cgroupSpecProblems({ name: 'g', relationships: rows(MAX_RELATIONSHIPS) }), []);
      oneProblem({ name: 'g', relationships: rows(MAX_RELATIONSHIPS + 1) }, new RegExp(`at most ${MAX_RELATIONSHIPS} rows, got ${MAX_RELATIONSHIPS + 1}`));
    });

    it('each row: an id, a role, a controller, a volume and (if given) a pair', () => {
      oneProblem(withRow(2, { id: '' }), /^relationships\[2\]\.id must match/);
      oneProblem(withRow(2, { id: 'x'.repeat(65) }), /^relationships\[2\]\.id must match/);
      oneProblem(withRow(2, { id: 'a b' }), /^relationships\[2\]\.id must match/);
      oneProblem(withRow(2, { role: 'primary' }), /^relationships\[2\]\.role must be "master" or "slave"/);
      oneProblem(withRow(2, { controller: 'c 3' }), /^relationships\[2\]\.controller must match/);
      oneProblem(withRow(2, { volume: '' }), /^relationships\[2\]\.volume must be a volume name/);
      oneProblem(withRow(2, { volume: 5 }), /^relationships\[2\]\.volume must be a volume name/);
      oneProblem(withRow(2, { pair: '' }), /^relationships\[2\]\.pair must be a pair name/);
      oneProblem(withRow(2, { pair: 3 }), /^relationships\[2\]\.pair must be a pair name/);
      assert.deepEqual(cgroupSpecProblems(withRow(2, { id: 'x'.repeat(64), pair: 'db-dr' })), []);
      // A row that is not an object at all names every field, and nothing crashes.
      const spec = sound();
      (spec.relationships as unknown[])[3] = null;
      const problems = cgroupSpecProblems(spec);
      for (const field of ['id', 'role', 'controller', 'volume']) assert.ok(problems.some((problem) => problem.startsWith(`relationships[3].${field}`)), JSON.stringify(problems));
    });

    it('duplicate relationship ids', () => {
      oneProblem(withRow(3, { id: 'r1' }), /^relationships\[3\]\.id: duplicate relationship id r1/);
    });

    it('the same (controller, volume) twice, while the same volume name on two controllers is fine', () => {
      oneProblem(withRow(3, { controller: 'c3' }), /^relationships\[3\]: volume db of c3 is in the table twice/);
      assert.deepEqual(cgroupSpecProblems(sound()).length, 0); // db on c1, c2 and c3
    });

    it('exactly one master controller', () => {
      const noMaster = sound();
      noMaster.relationships = noMaster.relationships.map((row) => ({ ...row, role: 'slave' }));
      oneProblem(noMaster, /^relationships: no row is the master/);
      oneProblem(withRow(2, { role: 'master' }), /^relationships: one master controller, got c1, c3/);
    });

    it('every row of the master controller is master', () => {
      oneProblem(withRow(1, { role: 'slave' }), /^relationships\[1\]: every row of the master controller c1 has role master/);
    });

    it('each limit: an integer within CGROUP_LIMIT_RANGES, bounds included', () => {
      for (const key of Object.keys(CGROUP_LIMIT_RANGES) as (keyof CgroupLimits)[]) {
        const [min, max] = CGROUP_LIMIT_RANGES[key];
        assert.ok(min <= CGROUP_DEFAULTS[key] && CGROUP_DEFAULTS[key] <= max, `${key}: default within range`);
        for (const good of [min, max]) assert.deepEqual(cgroupSpecProblems({ ...sound(), [key]: good }), [], `${key} = ${good}`);
        for (const bad of [min - 1, max + 1, min + 0.5, Number.NaN, Number.POSITIVE_INFINITY, '5', null]) {
          oneProblem({ ...sound(), [key]: bad }, new RegExp(`^${key} must be an integer from ${min} to ${max}$`));
        }
      }
    });

    it('limitsOf fills in the defaults, keeps what is given', () => {
      assert.deepEqual(limitsOf({}), { ...CGROUP_DEFAULTS });
      assert.deepEqual(limitsOf({ maxDrainMs: 5, cycleIntervalMs: 0 }), { ...CGROUP_DEFAULTS, maxDrainMs: 5, cycleIntervalMs: 0 });
    });

    it('tolerates a spec that is not an object', () => {
      for (const spec of [undefined, null, 42, 'g']) {
        const problems = cgroupSpecProblems(spec as unknown as CgroupSpec);
        assert.ok(problems.some((problem) => problem.startsWith('name must match')) && problems.some((problem) => /at least one row/.test(problem)), JSON.stringify(problems));
      }
    });
  });

  describe('masterOf and controllersOf', () => {
    it('the master first, then the others sorted, each once', () => {
      assert.equal(masterOf(sound()), 'c1');
      assert.deepEqual(controllersOf(sound()), ['c1', 'c2', 'c3']);
      const spec: CgroupSpec = {
        name: 'g',
        relationships: [
          { id: 'a', role: 'slave', controller: 'b', volume: 'v1' },
          { id: 'b', role: 'slave', controller: 'a', volume: 'v1' },
          { id: 'c', role: 'master', controller: 'z', volume: 'v1' },
          { id: 'd', role: 'slave', controller: 'b', volume: 'v2' },
          { id: 'e', role: 'master', controller: 'z', volume: 'v2' },
        ],
      };
      assert.deepEqual(cgroupSpecProblems(spec), []);
      assert.deepEqual(controllersOf(spec), ['z', 'a', 'b']);
      assert.deepEqual(controllersOf({ name: 'g', relationships: [{ id: 'r', role: 'master', controller: 'only', volume: 'v' }] }), ['only']);
    });

    it('a table with no master: ERR_CGROUP_BAD_SPEC', () => {
      const spec = { name: 'g', relationships: [{ id: 'r', role: 'slave' as const, controller: 'c', volume: 'v' }] };
      assert.throws(() => masterOf(spec), (error: unknown) => error instanceof CgroupError && error.code === 'ERR_CGROUP_BAD_SPEC');
      assert.throws(() => controllersOf(spec), (error: unknown) => error instanceof CgroupError && error.code === 'ERR_CGROUP_BAD_SPEC');
    });
  });

  describe('copyName and cycleOfCopy', () => {
    it('round trip for cycles 1 .. 2^53 - 1 and groups with dots', () => {
      const cycles = [1, 9, 10, 99, 1000, 2 ** 32, 1_764_633_600_000_000, Number.MAX_SAFE_INTEGER];
      for (let digits = 1; digits <= 16; digits++) cycles.push(Math.min(10 ** digits - 1, Number.MAX_SAFE_INTEGER), 10 ** (digits - 1));
      for (const group of ['g', 'a.b', 'x'.repeat(24), '1']) {
        for (const cycle of cycles) {
          const name = copyName(group, cycle);
          assert.equal(name, `cg.${group}.${cycle}`);
          assert.equal(cycleOfCopy(group, name), cycle, name);
        }
      }
    });

    it('refuses another group, a leading zero, non-digits, more than 16 digits, above 2^53 - 1', () => {
      const refusals: [string, string][] = [
        ['g', 'cg.h.5'],
        ['g', 'cg.gg.5'],
        ['gg', 'cg.g.5'],
        ['g', 'cg.g.1.5'], // group g.1's copy
        ['a.b', 'cg.a.5'],
        ['g', 'cg.g.05'],
        ['g', 'cg.g.0'],
        ['g', 'cg.g.'],
        ['g', 'cg.g'],
        ['g', 'cg.g.12a'],
        ['g', 'cg.g.-1'],
        ['g', 'cg.g.+1'],
        ['g', 'cg.g.1e3'],
        ['g', 'cg.g. 1'],
        ['g', 'cg.g.1 '],
        ['g', 'cg.g.１'], // a full-width digit
        ['g', 'CG.g.5'],
        ['g', 'x.cg.g.5'],
        ['g', 'cg.g.12345678901234567'], // 17 digits
        ['g', 'cg.g.9007199254740992'], // 2^53: 16 digits, not a safe integer
        ['g', 'cg.g.9999999999999999'],
        ['g', 'daily'],
      ];
      for (const [group, name] of refusals) assert.equal(cycleOfCopy(group, name), null, `${group} ${name}`);
      assert.equal(cycleOfCopy('g', 'cg.g.9007199254740991'), Number.MAX_SAFE_INTEGER);
      assert.equal(cycleOfCopy('g', 'cg.g.1000000000000000'), 1e15);
    });
  });
});
