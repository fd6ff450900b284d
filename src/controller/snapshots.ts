// Notes on the design
// -------------------
// A controller's point-in-time copies (src/storage/snapshot.ts): one SnapshotStore per volume,
// created with the volume's first snapshot; the store of a shared or file volume outlives the
// process, so start() opens the stores it finds (a volume whose store exists refuses writes
// through an object without it). What the operator does:
//   create   a snapshot now (instant); an exported volume's snapshot is exported read-only as
//            <export>@<snapshot> at once (the host listens for 'snapshot' events);
//   delete   its memory goes back; its export goes away (a connection still reading gets errors);
//   restore  the volume's content becomes the snapshot's, through the volume's write path, so a
//            pair's journal and tracking see every restored byte and the secondary follows;
//            refused on a pair's secondary (ERR_SNAPSHOT_READ_ONLY: the secondary follows its
//            primary only);
//   clone    a new writable volume with the snapshot's content (a full copy of its data
//            extents, holes stay holes), added to the controller and exported read-write under
//            the clone's name; it is not in the config, so it lasts as long as the serve (a
//            shared clone's region stays in /dev/shm until unlinked).
// A snapshot is read through SnapshotExport (an NbdVolume: reads and base:allocation, never
// writes).

import { EventEmitter } from 'node:events';

import { BlockmirrorError } from '../errors';
import type { NbdBitmap, NbdVolume } from '../nbd/types';
import type { LinkLogger } from '../transport/link';
import { type Snapshot, SnapshotStore, type SnapshotStatus } from '../storage/snapshot';
import { Volume } from '../storage/volume';
import type { OpenedVolume } from './volumes';

/** What the host hears: a snapshot to export or to stop exporting, or a clone to export. */
export interface SnapshotEvent {
  kind: 'created' | 'deleted' | 'cloned';
  /** The snapshot's volume. */
  volume: string;
  /** The snapshot's name ('cloned': the clone volume's name). */
  name: string;
  snapshot: string;
  /** What to export ('created', 'cloned'). */
  target?: NbdVolume;
  /** A consistency group's copy (taken and pruned every cycle): exported, but not an event on /events. */
  quiet?: boolean;
}

/** A snapshot as the NBD server sees it: read-only, with its own allocation map. */
export class SnapshotExport implements NbdVolume {
  readonly capacityBytes: number;
  readonly blockSize: number;
  readonly strict: boolean;

  constructor(private readonly snapshot: Snapshot, private readonly volume: Volume) {
    this.capacityBytes = volume.capacityBytes;
    this.blockSize = volume.blockSize;
    this.strict = volume.strict;
  }

  get closed(): boolean {
    return this.volume.closed || this.snapshot.store.closed;
  }

  read(byteOffset: number, target: Uint8Array): void {
    this.snapshot.read(byteOffset, target);
  }

  private refuse(): never {
    throw new BlockmirrorError('ERR_SNAPSHOT_READ_ONLY', `snapshot ${this.snapshot.name} is read-only`);
  }

  write(): number {
    return this.refuse();
  }

  writeZeroes(): number {
    return this.refuse();
  }

  trim(): number {
    return this.refuse();
  }

  /** Nothing to flush: a snapshot's bytes never change. */
  flush(): Promise<void> {
    return Promise.resolve();
  }

  allocationMap(byteOffset: number, byteLength: number): { byteOffset: number; byteLength: number; allocated: boolean }[] {
    return this.snapshot.allocationMap(byteOffset, byteLength);
  }

  listBitmaps(): { name: string; granularityBytes: number; bitCount: number; recording: boolean }[] {
    return [];
  }

  openBitmap(name: string): NbdBitmap {
    throw new BlockmirrorError('ERR_BITMAP_NOT_FOUND', `snapshot ${this.snapshot.name} has no bitmap ${JSON.stringify(name)}`);
  }
}

/** Options of a controller's snapshots. */
export interface ControllerSnapshotsOptions {
  controllerId: string;
  volumes: () => readonly OpenedVolume[];
  /** True for a pair's secondary volume (restore is refused there). */
  isSecondaryVolume: (name: string) => boolean;
  /** Adds a clone to the controller's volumes. */
  addVolume: (opened: OpenedVolume) => void;
  logger: LinkLogger;
}

/** The snapshots of one controller's volumes. */
export class ControllerSnapshots extends EventEmitter {
  private readonly stores = new Map<string, SnapshotStore>();

  constructor(private readonly options: ControllerSnapshotsOptions) {
    super();
  }

  private opened(volumeName: string): OpenedVolume {
    const opened = this.options.volumes().find((entry) => entry.spec.name === volumeName);
    if (opened === undefined) throw new BlockmirrorError('ERR_SNAPSHOT_NOT_FOUND', `controller ${this.options.controllerId} has no volume ${JSON.stringify(volumeName)}`);
    return opened;
  }

  /** Opens the stores of shared and file volumes that have one (their snapshots survived the process). */
  openExisting(): void {
    for (const opened of this.options.volumes()) {
      if (opened.volume.backing === 'memory') continue;
      const store = SnapshotStore.tryOpen(opened.volume);
      if (store === null) continue;
      this.stores.set(opened.spec.name, store);
      const names = store.list().map((status) => status.name);
      this.options.logger.info({ volume: opened.spec.name, snapshots: names }, `volume ${opened.spec.name}: ${names.length} snapshot(s) kept from before`);
    }
  }

  private store(volumeName: string, create: boolean): SnapshotStore | undefined {
    let store = this.stores.get(volumeName);
    if (store === undefined && create) {
      store = SnapshotStore.create(this.opened(volumeName).volume);
      this.stores.set(volumeName, store);
    }
    return store;
  }

  private snapshotOf(volumeName: string, name: string): Snapshot {
    this.opened(volumeName);
    const store = this.store(volumeName, false);
    if (store === undefined) throw new BlockmirrorError('ERR_SNAPSHOT_NOT_FOUND', `volume ${volumeName} has no snapshot ${JSON.stringify(name)}`);
    return store.snapshot(name);
  }

  /** What an NBD export of the snapshot serves. */
  exportOf(volumeName: string, name: string): SnapshotExport {
    return new SnapshotExport(this.snapshotOf(volumeName, name), this.opened(volumeName).volume);
  }

  /** Takes a snapshot of the volume now (instant); emits 'snapshot' created. */
  create(volumeName: string, name: string, options: { quiet?: boolean } = {}): SnapshotStatus {
    const volume = this.opened(volumeName).volume;
    const snapshot = (this.store(volumeName, true) as SnapshotStore).createSnapshot(name);
    this.options.logger[options.quiet === true ? 'debug' : 'info']({ volume: volumeName, snapshot: name }, `volume ${volumeName}: snapshot ${name} taken`);
    this.emit('snapshot', { kind: 'created', volume: volumeName, name, snapshot: name, target: new SnapshotExport(snapshot, volume),
      ...(options.quiet === true ? { quiet: true } : {}) } satisfies SnapshotEvent);
    return snapshot.status();
  }

  /** Every snapshot of the volume (or of every volume). */
  list(volumeName?: string): { volume: string; snapshots: SnapshotStatus[] }[] {
    const names = volumeName === undefined ? this.options.volumes().map((entry) => entry.spec.name) : [this.opened(volumeName).spec.name];
    return names.map((name) => ({ volume: name, snapshots: this.stores.get(name)?.list() ?? [] }));
  }

  /** Deletes a snapshot (its memory goes back); emits 'snapshot' deleted. */
  delete(volumeName: string, name: string, options: { quiet?: boolean } = {}): void {
    this.snapshotOf(volumeName, name);
    (this.store(volumeName, false) as SnapshotStore).deleteSnapshot(name);
    this.options.logger[options.quiet === true ? 'debug' : 'info']({ volume: volumeName, snapshot: name }, `volume ${volumeName}: snapshot ${name} deleted`);
    this.emit('snapshot', { kind: 'deleted', volume: volumeName, name, snapshot: name, ...(options.quiet === true ? { quiet: true } : {}) } satisfies SnapshotEvent);
  }

  /** Makes the volume's content the snapshot's, through the write path; returns the bytes written. */
  restore(volumeName: string, name: string): number {
    if (this.options.isSecondaryVolume(volumeName)) {
      throw new BlockmirrorError('ERR_SNAPSHOT_READ_ONLY', `volume ${volumeName} is a pair's secondary: it follows its primary; restore on the primary, or take the pair over first`);
    }
    const bytes = this.snapshotOf(volumeName, name).restore();
    this.options.logger.info({ volume: volumeName, snapshot: name, bytes }, `volume ${volumeName}: restored from snapshot ${name} (${bytes} bytes written)`);
    return bytes;
  }

  /** A new writable volume `cloneName` with the snapshot's content; emits 'snapshot' cloned. */
  async clone(volumeName: string, name: string, cloneName: string): Promise<{ volume: string; capacityBytes: number }> {
    if (this.options.volumes().some((entry) => entry.spec.name === cloneName)) {
      throw new BlockmirrorError('ERR_SNAPSHOT_EXISTS', `controller ${this.options.controllerId} already has a volume ${JSON.stringify(cloneName)}`);
    }
    const source = this.opened(volumeName);
    const snapshot = this.snapshotOf(volumeName, name);
    const shared = source.volume.backing === 'shared';
    const sharedName = `${source.spec.sharedName ?? source.spec.name}.clone.${cloneName}`;
    const clone = await snapshot.clone(shared ? { backing: 'shared', name: sharedName } : { backing: 'memory', name: cloneName });
    const spec = { name: cloneName, capacityBytes: clone.capacityBytes, blockSize: clone.blockSize, backing: clone.backing, ...(shared ? { sharedName } : {}) };
    this.options.addVolume({ spec, volume: clone, opened: 'created' } as OpenedVolume);
    this.options.logger.info({ volume: volumeName, snapshot: name, clone: cloneName }, `volume ${volumeName}: snapshot ${name} cloned as volume ${cloneName}`);
    this.emit('snapshot', { kind: 'cloned', volume: volumeName, name: cloneName, snapshot: name, target: clone } satisfies SnapshotEvent);
    return { volume: cloneName, capacityBytes: clone.capacityBytes };
  }

  /** Closes every store (before the volumes close; the snapshots of shared volumes stay). */
  async close(): Promise<void> {
    for (const store of this.stores.values()) await store.close();
    this.stores.clear();
  }
}

export { Volume };
