// Property: the topology spec decoder (src/sim/topology-spec.ts) takes a user's file. Whatever
// JSON it is given, it answers with a spec or a TypeError / RangeError naming the field, never
// another exception; a valid spec survives formatting and parsing unchanged; and a document
// cut at any point is refused by JSON.parse or by the decoder, never half taken.
import * as assert from 'node:assert/strict';

import * as fc from 'fast-check';

import { TOPOLOGY_OPERATIONS } from '../../src/sim/topology-run';
import { type TopologySpec, TOPOLOGY_SPEC_FORMAT, formatTopologySpec, parseTopologySpec } from '../../src/sim/topology-spec';

const event = fc.record({
  operation: fc.constantFrom(...TOPOLOGY_OPERATIONS),
  draws: fc.array(fc.nat({ max: 2 ** 32 - 1 }), { maxLength: 20 }),
  afterMs: fc.nat({ max: 3_600_000 }),
});

const spec: fc.Arbitrary<TopologySpec> = fc.record({
  format: fc.constant(TOPOLOGY_SPEC_FORMAT),
  seed: fc.nat(),
  topology: fc.constantFrom('ring' as const, 'fan-out' as const, 'mesh' as const),
  controllers: fc.integer({ min: 2, max: 1024 }),
  mode: fc.constantFrom('sync' as const, 'async' as const),
  blockCount: fc.integer({ min: 1, max: 65_536 }),
  events: fc.array(event, { maxLength: 30 }),
});

function parsesOrRefuses(value: unknown): void {
  try {
    parseTopologySpec(value);
  } catch (error) {
    assert.ok(error instanceof TypeError || error instanceof RangeError, `threw ${String(error)}`);
  }
}

describe('75 topology spec decoder (property)', () => {
  it('a valid spec survives formatting and parsing', () => {
    fc.assert(fc.property(spec, (value) => {
      assert.deepEqual(parseTopologySpec(JSON.parse(formatTopologySpec(value))), JSON.parse(JSON.stringify(value)));
    }), { numRuns: 300 });
  });

  it('any JSON value, and a spec with any field replaced by garbage, is a spec or a TypeError / RangeError', () => {
    fc.assert(fc.property(fc.jsonValue(), (value) => parsesOrRefuses(value)), { numRuns: 500 });
    fc.assert(fc.property(spec, fc.constantFrom('format', 'seed', 'topology', 'controllers', 'mode', 'blockCount', 'events', 'degree', 'mutation', 'found'),
      fc.jsonValue(), (value, key, garbage) => parsesOrRefuses({ ...value, [key]: garbage })), { numRuns: 500 });
    fc.assert(fc.property(spec, fc.nat(), fc.constantFrom('operation', 'draws', 'afterMs', 'trace'), fc.jsonValue(), (value, at, key, garbage) => {
      if (value.events.length === 0) return;
      const events = value.events.map((entry, index) => (index === at % value.events.length ? { ...entry, [key]: garbage } : entry));
      parsesOrRefuses({ ...value, events });
    }), { numRuns: 500 });
  });

  it('a document cut at any point is refused, never half taken', () => {
    fc.assert(fc.property(spec.filter((value) => value.events.length > 0), fc.nat(), (value, cut) => {
      const text = formatTopologySpec(value);
      const at = cut % text.length;
      let parsed: unknown;
      try {
        parsed = JSON.parse(text.slice(0, at));
      } catch {
        return;
      }
      // A prefix that is still JSON (a number, say) is not the spec.
      parsesOrRefuses(parsed);
      assert.notDeepEqual(parsed, value);
    }), { numRuns: 300 });
  });
});
