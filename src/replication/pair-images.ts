// Notes on the design
// -------------------
// The last consistent image of a secondary that resyncs (or was just demoted), kept as a
// snapshot of its volume: snapshotImageKeeper gives the ImageKeeper (secondary-pair.ts) that a
// PairManager hands each side when the controller has snapshots (PairSnapshots).
//
// Invariants: one snapshot per pair, named resync.<pair> (cut to the 47 characters a snapshot
// name may have); keep() makes it only when none is held, release() deletes it only when one is;
// a snapshot already on the volume (kept before a restart) is taken as the current image. A
// failed create or delete is logged and changes nothing else: the resync goes on without an
// image (or with the old one). The keeper's only state is the name of the snapshot it holds.

import type { LinkLogger } from '../transport/link';
import type { PairSpec } from './pair-spec';
import type { PairSnapshots } from './pairs-options';
import type { ImageKeeper } from './secondary-pair';

/** The keeper of `spec`'s last consistent image in `snapshots` (pairs.ts imagesOf). */
export function snapshotImageKeeper(snapshots: PairSnapshots, spec: PairSpec, log: LinkLogger): ImageKeeper {
  // Snapshot names: [A-Za-z0-9._:-]{1,47}.
  const name = `resync.${spec.name}`.slice(0, 47);
  let current: string | null = snapshots.has(spec.volume, name) ? name : null;
  return {
    get current() {
      return current;
    },
    keep(reason: string): void {
      if (current !== null) return;
      try {
        snapshots.create(spec.volume, name);
        current = name;
        log.info({ pair: spec.name, volume: spec.volume, snapshot: name }, `pair ${spec.name}: the last consistent image of ${spec.volume} is kept as snapshot ${name} (${reason})`);
      } catch (error) {
        log.warn({ pair: spec.name, volume: spec.volume, err: String(error) }, `pair ${spec.name}: cannot keep the last consistent image of ${spec.volume}: ${(error as Error).message}`);
      }
    },
    release(): void {
      if (current === null) return;
      try {
        snapshots.delete(spec.volume, current);
      } catch (error) {
        log.warn({ pair: spec.name, volume: spec.volume, err: String(error) }, `pair ${spec.name}: deleting snapshot ${current} failed: ${(error as Error).message}`);
      }
      current = null;
    },
  };
}
