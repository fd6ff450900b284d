// Property: the sim's spec decoders (src/sim/topology-spec.ts, schedule-spec.ts) take a user's
// file (`blockmirror sim --replay`). Whatever
// JSON it is given, it answers with a spec or a TypeError / RangeError naming the field, never
// another exception; a valid spec survives formatting and parsing unchanged; and a document
// cut at any point is refused by JSON.parse or by the decoder, never half taken.
import * as assert from 'node:assert/strict';

import * as fc from 'fast-check';

import { TOPOLOGY_OPERATIONS } from '../../src/sim/topology-run';
import { OPERATIONS } from '../../src/sim/pair-schedule';
import { SCHEDULE_SPEC_FORMAT, type ScheduleSpec, formatScheduleSpec, parseScheduleSpec } from '../../src/sim/schedule-spec';
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

const scheduleSpec: fc.Arbitrary<ScheduleSpec> = fc.record({
  format: fc.constant(SCHEDULE_SPEC_FORMAT),
  seed: fc.nat(),
  mode: fc.constantFrom('sync' as const, 'async' as const),
  fence: fc.constantFrom('never' as const, 'data' as const),
  blockCount: fc.integer({ min: 8, max: 65_536 }),
  journalCapacityBytes: fc.integer({ min: 4096, max: 1 << 30 }),
  events: fc.array(fc.record({ operation: fc.constantFrom(...OPERATIONS.map((entry) => entry.operation)), draws: fc.array(fc.nat({ max: 2 ** 32 - 1 }), { maxLength: 10 }),
    afterMs: fc.nat({ max: 3_600_000 }) }), { maxLength: 20 }),
  tail: fc.array(fc.nat({ max: 2 ** 32 - 1 }), { maxLength: 5 }),
});

function parsesOrRefuses(value: unknown, parse: (value: unknown) => unknown = parseTopologySpec): void {
  try {
    parse(value);
  } catch (error) {
    assert.ok(error instanceof TypeError || error instanceof RangeError, `threw ${String(error)}`);
  }
}

describe('75 sim spec decoders (property)', () => {
  it('a pair schedule spec survives formatting and parsing; garbage in any field, or a cut document, is refused with TypeError / RangeError', () => {
    fc.assert(fc.property(scheduleSpec, (value) => {
      assert.deepEqual(parseScheduleSpec(JSON.parse(formatScheduleSpec(value))), JSON.parse(JSON.stringify(value)));
    }), { numRuns: 200 });
    fc.assert(fc.property(fc.jsonValue(), (value) => parsesOrRefuses(value, parseScheduleSpec)), { numRuns: 300 });
    fc.assert(fc.property(scheduleSpec, fc.constantFrom('format', 'seed', 'mode', 'fence', 'blockCount', 'journalCapacityBytes', 'events', 'tail', 'controllers', 'mutation'),
      fc.jsonValue(), (value, key, garbage) => parsesOrRefuses({ ...value, [key]: garbage }, parseScheduleSpec)), { numRuns: 400 });
    fc.assert(fc.property(scheduleSpec, fc.nat(), (value, cut) => {
      const text = formatScheduleSpec(value);
      let parsed: unknown;
      try {
        parsed = JSON.parse(text.slice(0, cut % text.length));
      } catch {
        return;
      }
      parsesOrRefuses(parsed, parseScheduleSpec);
    }), { numRuns: 200 });
  });

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
      // Cut inside the document: the trailing newline is not part of it (without it, the text is whole).
      const text = formatTopologySpec(value).trimEnd();
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
