// Notes on the design
// -------------------
// Prometheus metrics of an array, built from its status object at scrape time: nothing is
// counted here. Each scrape takes one status snapshot (shared by every metric of that scrape, so
// the numbers agree with each other), resets every metric and fills it from the snapshot, so a
// link or export that went away leaves no stale series. The registry is a private one, never
// prom-client's global, so several arrays (tests, simulators) can live in one process.
//
// Totals in the status (bytes, frames, reconnects, requests) only grow, so they are exposed as
// counters: the value set on each scrape is the total itself. Fields missing from the status
// (an older host, a link that never connected) are skipped, never reported as 0.

import { Counter, Gauge, Registry } from 'prom-client';

/** What the metrics read of one link's status (src/transport/link.ts LinkStatus); all optional. */
export interface LinkStatusLike {
  peerId?: string;
  state?: string;
  rttMs?: number | null;
  bytesIn?: number;
  bytesOut?: number;
  framesIn?: number;
  framesOut?: number;
  reconnects?: number;
  queuedBytes?: number;
  unconfirmedReported?: number;
}

/** What the metrics read of one export's status. */
export interface ExportStatusLike {
  name?: string;
  volume?: string;
  readOnly?: boolean;
  /** Requests served, by kind (read, write, flush, trim, ...). */
  requests?: Record<string, number>;
  bytesRead?: number;
  bytesWritten?: number;
}

/** What the metrics read of one controller's status. */
export interface ControllerStatusLike {
  id?: string;
  links?: LinkStatusLike[];
  volumes?: unknown[];
  exports?: ExportStatusLike[];
}

/** The parts of an array's status (AdminTarget.status()) the metrics read. */
export interface ArrayStatusLike {
  controllers?: ControllerStatusLike[];
  nbd?: unknown;
}

/** A registry filled from a status at each scrape. */
export interface ArrayMetrics {
  /** A private registry (not prom-client's global one). */
  registry: Registry;
  /** The Content-Type of text(). */
  contentType: string;
  /** The Prometheus text exposition of every metric, from a fresh status. */
  text(): Promise<string>;
}

/** Every state a link can be in; link_state has one series per state (1 for the current one). */
export const LINK_STATES: readonly string[] = Object.freeze(['connecting', 'handshaking', 'up', 'down']);

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0;
}

function isName(value: unknown): value is string {
  return typeof value === 'string' && value !== '';
}

function arrayOf<T>(value: unknown): T[] {
  return Array.isArray(value) ? (value.filter((entry) => entry !== null && typeof entry === 'object') as T[]) : [];
}

/**
 * Builds the metrics of an array whose status `getStatus` returns (called once per scrape). The
 * metric names are prefixed `blockmirror_`; docs/admin.md lists them.
 */
export function createArrayMetrics(getStatus: () => ArrayStatusLike): ArrayMetrics {
  if (typeof getStatus !== 'function') throw new TypeError('getStatus must be a function');
  const registry = new Registry();

  // prom-client calls every metric's collect() synchronously at the start of registry.metrics();
  // the first one takes the snapshot, and it is dropped once that synchronous run is over.
  let snapshot: ArrayStatusLike | undefined;
  const current = (): ArrayStatusLike => {
    if (snapshot === undefined) {
      const status = getStatus();
      snapshot = status !== null && typeof status === 'object' ? status : {};
      queueMicrotask(() => {
        snapshot = undefined;
      });
    }
    return snapshot;
  };
  const controllers = (): ControllerStatusLike[] => arrayOf<ControllerStatusLike>(current().controllers).filter((c) => isName(c.id));
  const links = (): { controller: string; link: LinkStatusLike & { peerId: string } }[] =>
    controllers().flatMap((controller) => arrayOf<LinkStatusLike>(controller.links)
      .filter((link): link is LinkStatusLike & { peerId: string } => isName(link.peerId))
      .map((link) => ({ controller: controller.id as string, link })));
  const exportEntries = (): { controller: string; entry: ExportStatusLike & { name: string } }[] =>
    controllers().flatMap((controller) => arrayOf<ExportStatusLike>(controller.exports)
      .filter((entry): entry is ExportStatusLike & { name: string } => typeof entry.name === 'string')
      .map((entry) => ({ controller: controller.id as string, entry })));

  /** A counter set on each scrape to totals from the status. */
  const total = <L extends string>(name: string, help: string, labelNames: readonly L[],
    fill: (set: (labels: Record<L, string>, value: unknown) => void) => void): void => {
    new Counter<L>({
      name, help, labelNames, registers: [registry],
      collect(this: Counter<L>) {
        this.reset();
        fill((labels, value) => {
          if (isCount(value)) this.inc(labels as Partial<Record<L, string>>, value);
        });
      },
    });
  };
  /** A gauge set on each scrape from the status. */
  const gauge = <L extends string>(name: string, help: string, labelNames: readonly L[],
    fill: (set: (labels: Record<L, string>, value: unknown) => void) => void): void => {
    new Gauge<L>({
      name, help, labelNames, registers: [registry],
      collect(this: Gauge<L>) {
        this.reset();
        fill((labels, value) => {
          if (typeof value === 'number' && Number.isFinite(value)) this.set(labels as Partial<Record<L, string>>, value);
        });
      },
    });
  };

  // Pairs: the primary side carries lag, journal fill, shipped and resynced bytes.
  const primaryPairs = (): { controller: string; pair: Record<string, unknown> & { name: string } }[] =>
    controllers().flatMap((controller) => arrayOf<Record<string, unknown>>((controller as { pairs?: unknown }).pairs)
      .filter((pair): pair is Record<string, unknown> & { name: string } => isName(pair.name) && pair.role === 'primary')
      .map((pair) => ({ controller: controller.id as string, pair })));
  const PAIR_STATES = ['simplex', 'copying', 'mirroring', 'suspended', 'resyncing', 'split-brain'];
  gauge('blockmirror_pair_state', 'The state of a pair\'s primary side (1 for the state it is in).', ['controller', 'pair', 'state'], (set) => {
    for (const { controller, pair } of primaryPairs()) {
      for (const state of PAIR_STATES) set({ controller, pair: pair.name, state }, pair.state === state ? 1 : 0);
    }
  });
  gauge('blockmirror_pair_lag_records', 'Journal records the secondary has not applied yet.', ['controller', 'pair'], (set) => {
    for (const { controller, pair } of primaryPairs()) set({ controller, pair: pair.name }, (pair.lag as { records?: unknown } | undefined)?.records);
  });
  gauge('blockmirror_pair_lag_bytes', 'Bytes the secondary is behind: journal bytes held while mirroring, else dirty OOS bytes.', ['controller', 'pair'], (set) => {
    for (const { controller, pair } of primaryPairs()) set({ controller, pair: pair.name }, (pair.lag as { bytes?: unknown } | undefined)?.bytes);
  });
  gauge('blockmirror_pair_lag_seconds', 'Seconds since the oldest write the secondary has not applied.', ['controller', 'pair'], (set) => {
    for (const { controller, pair } of primaryPairs()) set({ controller, pair: pair.name }, (pair.lag as { seconds?: unknown } | undefined)?.seconds);
  });
  gauge('blockmirror_pair_journal_used_bytes', 'Bytes held by the primary volume\'s journal.', ['controller', 'pair'], (set) => {
    for (const { controller, pair } of primaryPairs()) set({ controller, pair: pair.name }, (pair.journal as { usedBytes?: unknown } | undefined)?.usedBytes);
  });
  gauge('blockmirror_pair_journal_capacity_bytes', 'Capacity of the primary volume\'s journal.', ['controller', 'pair'], (set) => {
    for (const { controller, pair } of primaryPairs()) set({ controller, pair: pair.name }, (pair.journal as { capacityBytes?: unknown } | undefined)?.capacityBytes);
  });
  gauge('blockmirror_pair_oos_bytes', 'Bytes the OOS bitmap marks as possibly different on the secondary.', ['controller', 'pair'], (set) => {
    for (const { controller, pair } of primaryPairs()) set({ controller, pair: pair.name }, (pair.oos as { bytes?: unknown } | undefined)?.bytes);
  });
  total('blockmirror_pair_shipped_bytes_total', 'Record payload bytes shipped in order to the secondary.', ['controller', 'pair'], (set) => {
    for (const { controller, pair } of primaryPairs()) set({ controller, pair: pair.name }, pair.shippedBytes);
  });
  total('blockmirror_pair_resynced_bytes_total', 'Track bytes sent by copy and resync passes.', ['controller', 'pair'], (set) => {
    for (const { controller, pair } of primaryPairs()) set({ controller, pair: pair.name }, pair.resyncedBytes);
  });

  // Host write latency by ack point (local: stored here; remote: applied by a sync secondary),
  // from the volume's log2 histogram: p50/p99 are bucket upper bounds.
  const latencies = (fill: (labels: Record<string, string>, value: Record<string, unknown>) => void): void => {
    for (const { controller, pair } of primaryPairs()) {
      const latency = pair.writeLatency as Record<string, Record<string, unknown> | undefined> | undefined;
      for (const ack of ['local', 'remote']) {
        const value = latency?.[ack];
        if (value !== undefined) fill({ controller, pair: pair.name, ack }, value);
      }
    }
  };
  total('blockmirror_pair_write_latency_count_total', 'Host writes of the pair\'s volume completed, by ack point.', ['controller', 'pair', 'ack'], (set) => {
    latencies((labels, value) => set(labels, value.count));
  });
  total('blockmirror_pair_write_latency_seconds_total', 'Sum of host write latencies (write to ack point), by ack point.', ['controller', 'pair', 'ack'], (set) => {
    latencies((labels, value) => set(labels, value.sumSeconds));
  });
  gauge('blockmirror_pair_write_latency_p50_seconds', 'Median host write latency by ack point (a log2 bucket\'s upper bound).', ['controller', 'pair', 'ack'], (set) => {
    latencies((labels, value) => set(labels, value.p50Seconds));
  });
  gauge('blockmirror_pair_write_latency_p99_seconds', '99th percentile host write latency by ack point (a log2 bucket\'s upper bound).', ['controller', 'pair', 'ack'], (set) => {
    latencies((labels, value) => set(labels, value.p99Seconds));
  });

  // The lockstep barrier of each controller.
  const lockstepOf = (fill: (labels: { controller: string }, value: Record<string, unknown>) => void): void => {
    for (const controller of controllers()) {
      const lockstep = (controller as { lockstep?: unknown }).lockstep;
      if (lockstep !== null && typeof lockstep === 'object') fill({ controller: controller.id as string }, lockstep as Record<string, unknown>);
    }
  };
  total('blockmirror_lockstep_markers_total', 'Lockstep markers written into journals.', ['controller'], (set) => {
    lockstepOf((labels, value) => set(labels, value.markersIssued));
  });
  total('blockmirror_lockstep_callers_total', 'Lockstep calls that waited for a marker.', ['controller'], (set) => {
    lockstepOf((labels, value) => set(labels, value.callers));
  });
  gauge('blockmirror_lockstep_callers_per_marker', 'Callers released by the last wave of markers.', ['controller'], (set) => {
    lockstepOf((labels, value) => set(labels, value.lastWaveCallers));
  });
  gauge('blockmirror_lockstep_latency_p50_seconds', 'Median lockstep call latency (a log2 bucket\'s upper bound).', ['controller'], (set) => {
    lockstepOf((labels, value) => set(labels, (value.latency as Record<string, unknown> | undefined)?.p50Seconds));
  });
  gauge('blockmirror_lockstep_latency_p99_seconds', '99th percentile lockstep call latency (a log2 bucket\'s upper bound).', ['controller'], (set) => {
    lockstepOf((labels, value) => set(labels, (value.latency as Record<string, unknown> | undefined)?.p99Seconds));
  });

  // Consistency groups (src/cgroup/): the master's cycles, each slave's hold.
  const groupsOf = (fill: (labels: { controller: string; group: string }, group: Record<string, unknown>) => void): void => {
    for (const controller of controllers()) {
      const groups = arrayOf<Record<string, unknown>>(((controller as { consistencyGroups?: { groups?: unknown } }).consistencyGroups)?.groups);
      for (const group of groups) if (isName(group.name)) fill({ controller: controller.id as string, group: group.name }, group);
    }
  };
  total('blockmirror_cgroup_cycles_total', 'Consistency-group cycles by outcome (on the master).', ['controller', 'group', 'outcome'], (set) => {
    groupsOf((labels, group) => {
      const counts = (group.cycles as { counts?: Record<string, unknown> } | undefined)?.counts;
      if (counts === undefined) return;
      set({ ...labels, outcome: 'formed' }, counts.formed);
      set({ ...labels, outcome: 'failed' }, counts.failed);
    });
  });
  gauge('blockmirror_cgroup_rpo_seconds', 'Age of the last consistency time of the group (on the master).', ['controller', 'group'], (set) => {
    groupsOf((labels, group) => set(labels, (group.cycles as Record<string, unknown> | undefined)?.rpoSeconds));
  });
  gauge('blockmirror_cgroup_hold_seconds', 'Write-hold time of this controller per cycle, over its last 4096 holds.', ['controller', 'group', 'quantile'], (set) => {
    groupsOf((labels, group) => {
      const hold = ((group.slave as Record<string, unknown> | undefined)?.holdMs ?? null) as { p50?: unknown; p99?: unknown } | null;
      if (hold === null) return;
      if (typeof hold.p50 === 'number') set({ ...labels, quantile: '0.5' }, hold.p50 / 1000);
      if (typeof hold.p99 === 'number') set({ ...labels, quantile: '0.99' }, hold.p99 / 1000);
    });
  });

  gauge('blockmirror_controller_info', 'A controller of this array (always 1).', ['controller'], (set) => {
    for (const controller of controllers()) set({ controller: controller.id as string }, 1);
  });

  gauge('blockmirror_link_up', 'Whether the link to the peer is up (1) or not (0).', ['controller', 'peer'], (set) => {
    for (const { controller, link } of links()) {
      if (typeof link.state === 'string') set({ controller, peer: link.peerId }, link.state === 'up' ? 1 : 0);
    }
  });
  gauge('blockmirror_link_state', 'The state of the link: 1 for the current state, 0 for the others.',
    ['controller', 'peer', 'state'], (set) => {
      for (const { controller, link } of links()) {
        if (typeof link.state !== 'string') continue;
        const states = LINK_STATES.includes(link.state) ? LINK_STATES : [...LINK_STATES, link.state];
        for (const state of states) set({ controller, peer: link.peerId, state }, state === link.state ? 1 : 0);
      }
    });
  gauge('blockmirror_link_rtt_seconds', 'The last measured round-trip time of the link (heartbeats).', ['controller', 'peer'], (set) => {
    for (const { controller, link } of links()) {
      if (isCount(link.rttMs)) set({ controller, peer: link.peerId }, link.rttMs / 1000);
    }
  });
  total('blockmirror_link_bytes_total', 'Bytes carried by the link, over all its connections.',
    ['controller', 'peer', 'direction'], (set) => {
      for (const { controller, link } of links()) {
        set({ controller, peer: link.peerId, direction: 'in' }, link.bytesIn);
        set({ controller, peer: link.peerId, direction: 'out' }, link.bytesOut);
      }
    });
  total('blockmirror_link_frames_total', 'Frames carried by the link, over all its connections.',
    ['controller', 'peer', 'direction'], (set) => {
      for (const { controller, link } of links()) {
        set({ controller, peer: link.peerId, direction: 'in' }, link.framesIn);
        set({ controller, peer: link.peerId, direction: 'out' }, link.framesOut);
      }
    });
  total('blockmirror_link_reconnects_total', 'Times the link came up again after having been up.', ['controller', 'peer'], (set) => {
    for (const { controller, link } of links()) set({ controller, peer: link.peerId }, link.reconnects);
  });
  gauge('blockmirror_link_queued_bytes', 'Message bytes sent on the link and not yet acknowledged.', ['controller', 'peer'], (set) => {
    for (const { controller, link } of links()) if (isCount(link.queuedBytes)) set({ controller, peer: link.peerId }, link.queuedBytes);
  });
  total('blockmirror_link_unconfirmed_messages_total', 'Messages reported unconfirmed because their connection ended.',
    ['controller', 'peer'], (set) => {
      for (const { controller, link } of links()) set({ controller, peer: link.peerId }, link.unconfirmedReported);
    });

  total('blockmirror_nbd_requests_total', 'NBD requests served by the export, by kind.', ['controller', 'export', 'kind'], (set) => {
    for (const { controller, entry } of exportEntries()) {
      const requests = entry.requests;
      if (requests === null || typeof requests !== 'object') continue;
      for (const [kind, count] of Object.entries(requests)) set({ controller, export: entry.name, kind }, count);
    }
  });
  total('blockmirror_nbd_bytes_total', 'Bytes read and written through the export.', ['controller', 'export', 'direction'], (set) => {
    for (const { controller, entry } of exportEntries()) {
      set({ controller, export: entry.name, direction: 'read' }, entry.bytesRead);
      set({ controller, export: entry.name, direction: 'write' }, entry.bytesWritten);
    }
  });

  return {
    registry,
    contentType: registry.contentType,
    text: () => registry.metrics(),
  };
}
