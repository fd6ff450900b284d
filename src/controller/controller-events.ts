// Notes on the design
// -------------------
// How the parts of a Controller (controller.ts) become its events: each part's own events (the
// disks' diversions, rebuilds and sparing, the snapshots, each link's state and faults, the
// consistency groups, the pairs' state, stuck, role and export) are turned into ControllerEvents
// with their subject ("group:<name>", "snapshot:<volume>@<name>", "link:<peer>",
// "cgroup:<name>", "pair:<name>") and handed to the controller's sink, which stamps the time and
// the controller id and emits 'event' (the host numbers them and serves them on /events); some
// are also re-emitted as they came ('rebuild', 'sparing', 'snapshot', 'role', 'export').
//
// Each function attaches listeners once, when the part is made; the part owns them (they go with
// it). Rebuild and sparing progress, and quiet snapshots (a consistency group's copies), are not
// ControllerEvents, only re-emitted. Nothing here keeps state.

import type { Link, LinkStateEvent } from '../transport/link';
import type { NbdVolume } from '../nbd/server';
import type { PairManager, PairRoleEvent } from '../replication/pairs';
import type { ControllerGroups, GroupEvent } from '../cgroup/groups';
import type { ControllerEvent } from './controller-options';
import type { ControllerDisks, RebuildEvent } from './disks';
import type { SnapshotEvent, ControllerSnapshots } from './snapshots';
import type { SparingEvent } from './sparing';

/** Where a controller's parts hand their events: the controller's emitEvent and emit. */
export interface ControllerEventSink {
  /** Stamps the time and the controller id and emits 'event' (when anyone listens). */
  emitEvent(fields: Omit<ControllerEvent, 'time' | 'controller'>): void;
  /** Re-emits a part's event as it came, under its own name. */
  emit(name: string, event: unknown): void;
}

/** The disks' diversion, rebuild and sparing events, as "group:<name>" events. */
export function forwardDiskEvents(disks: ControllerDisks, sink: ControllerEventSink): void {
  disks.on('diversion', (event: { group: string; work: string; kind: string; code?: string; detail?: string }) => {
    sink.emitEvent({ subject: `group:${event.group}`, kind: 'change', old: null, new: `diversion-${event.kind}`, reason: 'sparing', workVolume: event.work,
      ...(event.code === undefined ? {} : { code: event.code, detail: event.detail }) });
  });
  disks.on('rebuild', (event: RebuildEvent) => {
    if (event.kind !== 'progress') {
      sink.emitEvent({ subject: `group:${event.group}`, kind: 'change', old: null, new: `rebuild-${event.kind}`, reason: 'sparing',
        member: event.member, disk: event.disk, cursorBytes: event.cursorBytes, memberBytes: event.memberBytes, ...(event.code === undefined ? {} : { code: event.code, detail: event.detail }) });
    }
    sink.emit('rebuild', event);
  });
  disks.on('sparing', (event: SparingEvent) => {
    if (event.kind !== 'progress') {
      sink.emitEvent({ subject: `group:${event.group}`, kind: 'change', old: null, new: `sparing-${event.kind}`, reason: 'suspect-disk',
        member: event.member, disk: event.disk, spare: event.spare, doneBytes: event.doneBytes, totalBytes: event.totalBytes,
        ...(event.code === undefined ? {} : { code: event.code, detail: event.detail }) });
    }
    sink.emit('sparing', event);
  });
}

/** The snapshots' events, as "snapshot:<volume>@<name>" events. */
export function forwardSnapshotEvents(snapshots: ControllerSnapshots, sink: ControllerEventSink): void {
  snapshots.on('snapshot', (event: SnapshotEvent) => {
    if (event.quiet !== true) sink.emitEvent({ subject: `snapshot:${event.volume}@${event.snapshot}`, kind: 'change', old: null, new: event.kind, reason: 'operator',
      ...(event.kind === 'cloned' ? { clone: event.name } : {}) });
    sink.emit('snapshot', event);
  });
}

/** A link's state changes and fault changes, as "link:<peer>" events. */
export function forwardLinkEvents(link: Link, peerId: string, sink: ControllerEventSink): void {
  link.on('state', (event: LinkStateEvent) => {
    const fields: Record<string, unknown> = {};
    if (event.code !== undefined) fields.code = event.code;
    if (event.detail !== undefined) fields.detail = event.detail;
    sink.emitEvent({ subject: `link:${peerId}`, kind: 'change', old: event.old, new: event.new, reason: event.reason, ...fields });
  });
  link.on('faults', (faults: unknown) => {
    sink.emitEvent({ subject: `link:${peerId}`, kind: 'change', old: null, new: faults === null ? 'healed' : 'faults',
      reason: 'operator', faults });
  });
}

/** The consistency groups' events, as "cgroup:<name>" events. */
export function forwardGroupEvents(groups: ControllerGroups, sink: ControllerEventSink): void {
  groups.on('event', (event: GroupEvent) => {
    const { group, old, new: next, reason, ...rest } = event;
    sink.emitEvent({ subject: `cgroup:${group}`, kind: 'change', old, new: next, reason, ...rest });
  });
}

/** The pairs' state, stuck and role events, as "pair:<name>" events; exports re-emitted. */
export function forwardPairEvents(manager: PairManager, sink: ControllerEventSink): void {
  manager.on('state', (event: { name: string; old: string; new: string; reason: string; detail?: string; role: string }) => {
    const fields: Record<string, unknown> = { role: event.role };
    if (event.detail !== undefined) fields.detail = event.detail;
    sink.emitEvent({ subject: `pair:${event.name}`, kind: 'change', old: event.old, new: event.new, reason: event.reason, ...fields });
  });
  manager.on('stuck', (event: { name: string; state: string; idleMs: number }) => {
    sink.emitEvent({ subject: `pair:${event.name}`, kind: 'change', old: event.state, new: event.state, reason: 'stuck', idleMs: event.idleMs });
  });
  manager.on('role', (event: PairRoleEvent) => {
    sink.emitEvent({ subject: `pair:${event.name}`, kind: 'change', old: null, new: event.role, reason: event.reason,
      role: event.role, volume: event.volume, writable: event.writable });
    sink.emit('role', event);
  });
  manager.on('export', (event: { volume: string; target: NbdVolume }) => sink.emit('export', event));
}
