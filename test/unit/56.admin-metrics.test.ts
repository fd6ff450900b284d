// The Prometheus metrics of an array (src/admin/metrics.ts): the text parses as the exposition
// format (checked with a small parser written here, not with prom-client), label values survive
// escaping, and every value comes from the status object of that scrape.
import * as assert from 'node:assert/strict';

import { register as globalRegistry } from 'prom-client';

import { type ArrayStatusLike, createArrayMetrics } from '../../src/admin/metrics';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface Exposition {
  types: Map<string, string>;
  helps: Map<string, string>;
  samples: Sample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** Parses Prometheus text format 0.0.4; throws on anything malformed. */
function parseExposition(text: string): Exposition {
  assert.ok(text.endsWith('\n'), 'the text ends with a newline');
  const types = new Map<string, string>();
  const helps = new Map<string, string>();
  const samples: Sample[] = [];
  const seen = new Set<string>();
  text.slice(0, -1).split('\n').forEach((line, index) => {
    const where = `line ${index + 1}: ${JSON.stringify(line)}`;
    if (line === '') return;
    if (line.startsWith('#')) {
      const match = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
      if (match === null) return; // A plain comment.
      const [, keyword, name, rest] = match as unknown as [string, string, string, string];
      assert.match(name, METRIC_NAME, where);
      if (keyword === 'TYPE') {
        assert.ok(['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(rest), where);
        assert.equal(types.has(name), false, `${where}: a second TYPE`);
        assert.equal(samples.some((sample) => sample.name === name), false, `${where}: TYPE after samples`);
        types.set(name, rest);
      } else {
        helps.set(name, rest);
      }
      return;
    }
    let position = 0;
    const nameMatch = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
    assert.ok(nameMatch !== null, `${where}: no metric name`);
    const name = nameMatch[0];
    position = name.length;
    const labels: Record<string, string> = {};
    if (line[position] === '{') {
      position++;
      while (line[position] !== '}') {
        const labelMatch = /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(line.slice(position));
        assert.ok(labelMatch !== null, `${where}: bad label name at ${position}`);
        const labelName = labelMatch[0];
        assert.match(labelName, LABEL_NAME);
        position += labelName.length;
        assert.equal(line.slice(position, position + 2), '="', `${where}: expected =" at ${position}`);
        position += 2;
        let value = '';
        for (;;) {
          const char = line[position];
          assert.ok(char !== undefined, `${where}: unterminated label value`);
          position++;
          if (char === '"') break;
          if (char === '\\') {
            const escaped = line[position];
            position++;
            if (escaped === 'n') value += '\n';
            else if (escaped === '\\' || escaped === '"') value += escaped;
            else assert.fail(`${where}: bad escape \\${String(escaped)}`);
          } else {
            value += char;
          }
        }
        assert.equal(Object.prototype.hasOwnProperty.call(labels, labelName), false, `${where}: label ${labelName} twice`);
        labels[labelName] = value;
        if (line[position] === ',') position++;
        else assert.equal(line[position], '}', `${where}: expected , or } at ${position}`);
      }
      position++;
    }
    assert.equal(line[position], ' ', `${where}: expected a space before the value`);
    const fields = line.slice(position + 1).split(' ');
    assert.ok(fields.length === 1 || fields.length === 2, `${where}: value [timestamp]`);
    const rawValue = fields[0] as string;
    const value = rawValue === '+Inf' ? Infinity : rawValue === '-Inf' ? -Infinity : Number(rawValue);
    assert.ok(rawValue === 'NaN' || !Number.isNaN(value), `${where}: bad value`);
    const family = [...types.keys()].find((family) => name === family);
    assert.ok(family !== undefined, `${where}: sample without a TYPE`);
    const key = `${name}${JSON.stringify(Object.entries(labels).sort())}`;
    assert.equal(seen.has(key), false, `${where}: duplicate series`);
    seen.add(key);
    samples.push({ name, labels, value });
  });
  return { types, helps, samples };
}

function value(exposition: Exposition, name: string, labels: Record<string, string>): number | undefined {
  const found = exposition.samples.filter((sample) => sample.name === name &&
    Object.keys(labels).length === Object.keys(sample.labels).length &&
    Object.entries(labels).every(([key, expected]) => sample.labels[key] === expected));
  assert.ok(found.length <= 1);
  return found[0]?.value;
}

function link(peerId: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    peerId, state: 'up', reason: 'handshake-done', rttMs: 0.5, bytesIn: 1000, bytesOut: 2000, framesIn: 10, framesOut: 20,
    reconnects: 3, queuedBytes: 4096, unconfirmedMessages: 0, unconfirmedReported: 7, ...extra,
  };
}

function arrayStatus(): ArrayStatusLike {
  return {
    controllers: [
      {
        id: 'a',
        volumes: [{ name: 'vol0' }],
        links: [link('b'), link('c', { state: 'down', rttMs: null, reconnects: 0 })] as never,
        exports: [{ name: 'vol0', volume: 'vol0', readOnly: false, requests: { read: 5, write: 6, flush: 1 }, bytesRead: 20480, bytesWritten: 24576 }],
        consistencyGroups: {
          groups: [{ name: 'db', cycles: { counts: { formed: 40, failed: 2 }, rpoSeconds: 0.25 }, slave: { holdMs: { p50: 1.5, p99: 4, count: 42 } } }],
          copies: [],
        },
      } as never,
      { id: 'b', volumes: [], links: [link('a', { bytesIn: 2000, bytesOut: 1000 })] as never, exports: [] },
    ],
    nbd: {},
  };
}

describe('56 admin metrics', () => {
  it('the text is a valid exposition with the expected families and types', async () => {
    const metrics = createArrayMetrics(arrayStatus);
    assert.equal(metrics.contentType, 'text/plain; version=0.0.4; charset=utf-8');
    const exposition = parseExposition(await metrics.text());
    const expected: Record<string, string> = {
      blockmirror_controller_info: 'gauge',
      blockmirror_link_up: 'gauge',
      blockmirror_link_state: 'gauge',
      blockmirror_link_rtt_seconds: 'gauge',
      blockmirror_link_bytes_total: 'counter',
      blockmirror_link_frames_total: 'counter',
      blockmirror_link_reconnects_total: 'counter',
      blockmirror_link_queued_bytes: 'gauge',
      blockmirror_link_unconfirmed_messages_total: 'counter',
      blockmirror_nbd_requests_total: 'counter',
      blockmirror_nbd_bytes_total: 'counter',
      blockmirror_pair_state: 'gauge',
      blockmirror_pair_lag_records: 'gauge',
      blockmirror_pair_lag_bytes: 'gauge',
      blockmirror_pair_lag_seconds: 'gauge',
      blockmirror_pair_journal_used_bytes: 'gauge',
      blockmirror_pair_journal_capacity_bytes: 'gauge',
      blockmirror_pair_oos_bytes: 'gauge',
      blockmirror_pair_shipped_bytes_total: 'counter',
      blockmirror_pair_resynced_bytes_total: 'counter',
      blockmirror_pair_write_latency_count_total: 'counter',
      blockmirror_pair_write_latency_seconds_total: 'counter',
      blockmirror_pair_write_latency_p50_seconds: 'gauge',
      blockmirror_pair_write_latency_p99_seconds: 'gauge',
      blockmirror_lockstep_markers_total: 'counter',
      blockmirror_lockstep_callers_total: 'counter',
      blockmirror_lockstep_callers_per_marker: 'gauge',
      blockmirror_lockstep_latency_p50_seconds: 'gauge',
      blockmirror_lockstep_latency_p99_seconds: 'gauge',
      blockmirror_cgroup_cycles_total: 'counter',
      blockmirror_cgroup_rpo_seconds: 'gauge',
      blockmirror_cgroup_hold_seconds: 'gauge',
    };
    assert.deepEqual(Object.fromEntries(exposition.types), expected);
    for (const name of Object.keys(expected)) assert.ok((exposition.helps.get(name) ?? '') !== '', `${name} has help`);
  });

  it('values come from the status', async () => {
    const exposition = parseExposition(await createArrayMetrics(arrayStatus).text());
    assert.equal(value(exposition, 'blockmirror_controller_info', { controller: 'a' }), 1);
    assert.equal(value(exposition, 'blockmirror_controller_info', { controller: 'b' }), 1);
    assert.equal(value(exposition, 'blockmirror_cgroup_cycles_total', { controller: 'a', group: 'db', outcome: 'formed' }), 40);
    assert.equal(value(exposition, 'blockmirror_cgroup_cycles_total', { controller: 'a', group: 'db', outcome: 'failed' }), 2);
    assert.equal(value(exposition, 'blockmirror_cgroup_rpo_seconds', { controller: 'a', group: 'db' }), 0.25);
    assert.equal(value(exposition, 'blockmirror_cgroup_hold_seconds', { controller: 'a', group: 'db', quantile: '0.99' }), 0.004);
    assert.equal(value(exposition, 'blockmirror_cgroup_hold_seconds', { controller: 'b', group: 'db', quantile: '0.99' }), undefined);
    assert.equal(value(exposition, 'blockmirror_link_up', { controller: 'a', peer: 'b' }), 1);
    assert.equal(value(exposition, 'blockmirror_link_up', { controller: 'a', peer: 'c' }), 0);
    for (const state of ['connecting', 'handshaking', 'up', 'down']) {
      assert.equal(value(exposition, 'blockmirror_link_state', { controller: 'a', peer: 'b', state }), state === 'up' ? 1 : 0);
      assert.equal(value(exposition, 'blockmirror_link_state', { controller: 'a', peer: 'c', state }), state === 'down' ? 1 : 0);
    }
    assert.equal(value(exposition, 'blockmirror_link_rtt_seconds', { controller: 'a', peer: 'b' }), 0.0005);
    assert.equal(value(exposition, 'blockmirror_link_rtt_seconds', { controller: 'a', peer: 'c' }), undefined, 'no rtt: no series');
    assert.equal(value(exposition, 'blockmirror_link_bytes_total', { controller: 'a', peer: 'b', direction: 'in' }), 1000);
    assert.equal(value(exposition, 'blockmirror_link_bytes_total', { controller: 'a', peer: 'b', direction: 'out' }), 2000);
    assert.equal(value(exposition, 'blockmirror_link_bytes_total', { controller: 'b', peer: 'a', direction: 'in' }), 2000);
    assert.equal(value(exposition, 'blockmirror_link_frames_total', { controller: 'a', peer: 'b', direction: 'out' }), 20);
    assert.equal(value(exposition, 'blockmirror_link_reconnects_total', { controller: 'a', peer: 'b' }), 3);
    assert.equal(value(exposition, 'blockmirror_link_reconnects_total', { controller: 'a', peer: 'c' }), 0);
    assert.equal(value(exposition, 'blockmirror_link_queued_bytes', { controller: 'a', peer: 'b' }), 4096);
    assert.equal(value(exposition, 'blockmirror_link_unconfirmed_messages_total', { controller: 'a', peer: 'b' }), 7);
    assert.equal(value(exposition, 'blockmirror_nbd_requests_total', { controller: 'a', export: 'vol0', kind: 'read' }), 5);
    assert.equal(value(exposition, 'blockmirror_nbd_requests_total', { controller: 'a', export: 'vol0', kind: 'flush' }), 1);
    assert.equal(value(exposition, 'blockmirror_nbd_bytes_total', { controller: 'a', export: 'vol0', direction: 'read' }), 20480);
    assert.equal(value(exposition, 'blockmirror_nbd_bytes_total', { controller: 'a', export: 'vol0', direction: 'write' }), 24576);
  });

  it('write latency by ack point comes from the primary pair\'s status', async () => {
    const exposition = parseExposition(await createArrayMetrics(() => ({
      controllers: [{ id: 'a', pairs: [{ name: 'p0', role: 'primary', state: 'mirroring',
        writeLatency: { local: { count: 3, sumSeconds: 0.003, p50Seconds: 0.001, p99Seconds: 0.002 }, remote: { count: 0, sumSeconds: 0, p50Seconds: null, p99Seconds: null } } },
      { name: 'p1', role: 'secondary', state: 'mirroring' }] } as never],
    })).text());
    assert.equal(value(exposition, 'blockmirror_pair_write_latency_count_total', { controller: 'a', pair: 'p0', ack: 'local' }), 3);
    assert.equal(value(exposition, 'blockmirror_pair_write_latency_p99_seconds', { controller: 'a', pair: 'p0', ack: 'local' }), 0.002);
    assert.equal(value(exposition, 'blockmirror_pair_write_latency_p50_seconds', { controller: 'a', pair: 'p0', ack: 'remote' }), undefined, 'no writes: no series');
    assert.equal(value(exposition, 'blockmirror_pair_write_latency_count_total', { controller: 'a', pair: 'p1', ack: 'local' }), undefined, 'secondaries have none');
  });

  it('label values with quotes, backslashes and newlines are escaped and parse back', async () => {
    const peer = 'we"ird\\peer\nid';
    const exposition = parseExposition(await createArrayMetrics(() => ({
      controllers: [{ id: 'c{1}', links: [link(peer)], exports: [{ name: 'ex port,"x"', requests: { 'read': 1 } }] }],
    })).text());
    assert.equal(value(exposition, 'blockmirror_link_up', { controller: 'c{1}', peer }), 1);
    assert.equal(value(exposition, 'blockmirror_nbd_requests_total', { controller: 'c{1}', export: 'ex port,"x"', kind: 'read' }), 1);
  });

  it('missing or malformed fields are skipped, never reported as 0', async () => {
    const cases: unknown[] = [
      {},
      { controllers: 'nope' },
      { controllers: [null, 7, { links: [link('x')] }] },
      { controllers: [{ id: 'a', links: [{ peerId: 'b' }, { state: 'up' }, null], exports: [{ volume: 'v' }, { name: 'e', requests: null }] }] },
    ];
    for (const status of cases) {
      const exposition = parseExposition(await createArrayMetrics(() => status as ArrayStatusLike).text());
      const samples = exposition.samples.filter((sample) => sample.name !== 'blockmirror_controller_info');
      assert.deepEqual(samples, [], JSON.stringify(status));
    }
    const exposition = parseExposition(await createArrayMetrics(() => ({
      controllers: [{ id: 'a', links: [{ peerId: 'b', state: 'up', bytesIn: -1, bytesOut: Number.NaN }] }],
    })).text());
    assert.equal(value(exposition, 'blockmirror_link_up', { controller: 'a', peer: 'b' }), 1);
    assert.equal(exposition.samples.filter((sample) => sample.name === 'blockmirror_link_bytes_total').length, 0);
  });

  it('each scrape takes one status; a link that went away leaves no series', async () => {
    let calls = 0;
    let status = arrayStatus();
    const metrics = createArrayMetrics(() => {
      calls++;
      return status;
    });
    await metrics.text();
    assert.equal(calls, 1);
    status = { controllers: [{ id: 'a', links: [link('b', { bytesIn: 5000 })] as never, exports: [] }] };
    const exposition = parseExposition(await metrics.text());
    assert.equal(calls, 2);
    assert.equal(value(exposition, 'blockmirror_link_bytes_total', { controller: 'a', peer: 'b', direction: 'in' }), 5000);
    assert.equal(exposition.samples.some((sample) => sample.labels.peer === 'c' || sample.labels.controller === 'b'), false);
    assert.equal(exposition.samples.some((sample) => sample.name.startsWith('blockmirror_nbd_')), false);
  });

  it('uses a private registry: two arrays coexist and the global one stays empty of them', async () => {
    const first = createArrayMetrics(arrayStatus);
    const second = createArrayMetrics(() => ({ controllers: [{ id: 'z' }] }));
    assert.notEqual(first.registry, second.registry);
    assert.notEqual(first.registry, globalRegistry);
    assert.equal(value(parseExposition(await second.text()), 'blockmirror_controller_info', { controller: 'z' }), 1);
    assert.equal(value(parseExposition(await first.text()), 'blockmirror_controller_info', { controller: 'z' }), undefined);
    assert.equal((await globalRegistry.metrics()).includes('blockmirror_'), false);
  });

  it('a failing status fails the scrape', async () => {
    const metrics = createArrayMetrics(() => {
      throw new Error('no status');
    });
    await assert.rejects(metrics.text(), /no status/);
  });
});
