// Notes on the design
// -------------------
// What one side of a pair must remember across a SIGKILL, kept beside its volume: for a shared
// volume a shared-memory region `blockmirror.pair.<volume>.<pair>`, for a file volume the file
// `<path>.pair.<pair>`, for a memory volume an anonymous region (it dies with the volume).
//
//   role          primary or secondary now (a takeover, failback or resolve changes it; the
//                 config's role is only the first one)
//   generations   current, bitmap and two history ids (generations.ts)
//   synced        the image completed a copy at least once (secondary)
//   consistency   consistent / inconsistent / outdated (secondary)
//   applied, next the secondary's ordered-stream position
//   discard       `resolve` chose the peer: on the next connect this side is the target
//   active, sealedThrough
//                 which of the primary's two OOS bitmaps records, and the last journal
//                 sequence that can be marked in the other (primary-pair.ts)
//   newGeneration the primary stopped mirroring: its next write starts a new generation
//   streaming     the primary was mirroring with an unbroken ordered stream: every record after
//                 the secondary's position is in its journal (a restart may resume from there)
//   journalId     the id of the journal whose sequence space `applied` is in (secondary; 0: none)
//
// Two slots of 128 bytes, each with a counter and a CRC32C; a save writes the older slot, a load
// takes the valid slot with the higher counter. A SIGKILL in the middle of a save leaves the
// other slot intact, so a side restarts from its last complete save, never from a torn one.

import { crc32c } from '../storage/crc32c';
import { Region } from '../storage/region';
import type { Volume } from '../storage/volume';
import type { Generations } from './generations';
import { type Consistency, PairError, type PairRole } from './pair-state';

export interface PairMetaState {
  role: PairRole;
  generations: Generations;
  synced: boolean;
  consistency: Consistency;
  applied: number;
  nextSequence: number;
  discard: boolean;
  active: 0 | 1;
  sealedThrough: number;
  newGeneration: boolean;
  streaming: boolean;
  journalId: number;
}

const MAGIC = 0x424d504d; // 'BMPM'
const VERSION = 1;
const SLOT_BYTES = 128;
const BODY_BYTES = 96;
const REGION_BYTES = 4096;
const ROLES: readonly PairRole[] = ['primary', 'secondary'];
const CONSISTENCIES: readonly Consistency[] = ['consistent', 'inconsistent', 'outdated'];

function regionTarget(volume: Volume, pairName: string): { kind: 'shared' | 'file'; name: string } | null {
  if (volume.backing === 'shared' && volume.name !== undefined) return { kind: 'shared', name: `blockmirror.pair.${volume.name}.${pairName}`.slice(0, 200) };
  if (volume.backing === 'file' && volume.path !== undefined) return { kind: 'file', name: `${volume.path}.pair.${pairName}` };
  return null;
}

function encode(state: PairMetaState, counter: number): Buffer {
  const slot = Buffer.alloc(SLOT_BYTES);
  slot.writeUInt32LE(MAGIC, 0);
  slot.writeUInt32LE(VERSION, 4);
  slot.writeUInt32LE(counter >>> 0, 8);
  slot.writeUInt8(ROLES.indexOf(state.role), 12);
  slot.writeUInt8((state.synced ? 1 : 0) | (state.discard ? 2 : 0) | (state.active === 1 ? 4 : 0) | (state.newGeneration ? 8 : 0) | (state.streaming ? 16 : 0), 13);
  slot.writeUInt8(CONSISTENCIES.indexOf(state.consistency), 14);
  slot.writeDoubleLE(state.generations.current, 16);
  slot.writeDoubleLE(state.generations.bitmap, 24);
  slot.writeDoubleLE(state.generations.history[0], 32);
  slot.writeDoubleLE(state.generations.history[1], 40);
  slot.writeDoubleLE(state.applied, 48);
  slot.writeDoubleLE(state.nextSequence, 56);
  slot.writeDoubleLE(state.sealedThrough, 64);
  slot.writeDoubleLE(state.journalId, 72);
  slot.writeUInt32LE(crc32c(slot.subarray(0, BODY_BYTES)), BODY_BYTES);
  return slot;
}

function decode(slot: Buffer): { state: PairMetaState; counter: number } | null {
  if (slot.readUInt32LE(0) !== MAGIC || slot.readUInt32LE(4) !== VERSION) return null;
  if (slot.readUInt32LE(BODY_BYTES) !== crc32c(slot.subarray(0, BODY_BYTES))) return null;
  const role = ROLES[slot.readUInt8(12)];
  const consistency = CONSISTENCIES[slot.readUInt8(14)];
  if (role === undefined || consistency === undefined) return null;
  const flags = slot.readUInt8(13);
  return {
    counter: slot.readUInt32LE(8),
    state: {
      role,
      synced: (flags & 1) !== 0,
      discard: (flags & 2) !== 0,
      active: (flags & 4) !== 0 ? 1 : 0,
      newGeneration: (flags & 8) !== 0,
      streaming: (flags & 16) !== 0,
      consistency,
      generations: { current: slot.readDoubleLE(16), bitmap: slot.readDoubleLE(24), history: [slot.readDoubleLE(32), slot.readDoubleLE(40)] },
      applied: slot.readDoubleLE(48),
      nextSequence: slot.readDoubleLE(56),
      sealedThrough: slot.readDoubleLE(64),
      journalId: slot.readDoubleLE(72),
    },
  };
}

/** The persisted state of one side of a pair. */
export class PairMeta {
  private counter: number;
  private current: PairMetaState;

  private constructor(private readonly region: Region, state: PairMetaState, counter: number, readonly restored: boolean) {
    this.current = state;
    this.counter = counter;
  }

  /**
   * Opens the side's metadata, or creates it with `initial` (the config's role, no generation).
   * `restored` says whether an earlier run's state was found. A region whose both slots are
   * damaged is ERR_PAIR_META: the operator deletes it (the pair then starts as new).
   */
  static open(volume: Volume, pairName: string, initial: PairMetaState): PairMeta {
    const target = regionTarget(volume, pairName);
    if (target === null) {
      const meta = new PairMeta(Region.create({ kind: 'anonymous', name: `pair.${pairName}`, byteLength: REGION_BYTES }), initial, 0, false);
      meta.save(initial);
      return meta;
    }
    const region = Region.tryOpen(target.kind === 'shared' ? { kind: 'shared', name: target.name } : { kind: 'file', path: target.name });
    if (region === null) {
      const created = Region.create(target.kind === 'shared'
        ? { kind: 'shared', name: target.name, byteLength: REGION_BYTES }
        : { kind: 'file', path: target.name, byteLength: REGION_BYTES });
      const meta = new PairMeta(created, initial, 0, false);
      meta.save(initial);
      return meta;
    }
    const slots = [0, 1].map((index) => {
      const bytes = Buffer.alloc(SLOT_BYTES);
      region.read(index * SLOT_BYTES, bytes);
      return decode(bytes);
    });
    const valid = slots.filter((slot): slot is NonNullable<typeof slot> => slot !== null);
    if (valid.length === 0) {
      void region.close();
      throw new PairError('ERR_PAIR_META', `pair ${pairName}: the metadata ${target.name} is damaged or of another format; remove it to start the pair as new`);
    }
    const newest = valid.reduce((a, b) => (((b.counter - a.counter) | 0) > 0 ? b : a));
    return new PairMeta(region, newest.state, newest.counter, true);
  }

  /** Removes a side's metadata (pair delete). */
  static unlink(volume: Volume, pairName: string): void {
    const target = regionTarget(volume, pairName);
    if (target !== null) Region.unlink(target.kind, target.name);
  }

  get state(): Readonly<PairMetaState> {
    return this.current;
  }

  /** Saves a change (merged into the current state). */
  update(change: Partial<PairMetaState>): void {
    this.save({ ...this.current, ...change });
  }

  private save(state: PairMetaState): void {
    this.counter = (this.counter + 1) >>> 0;
    this.region.write((this.counter % 2) * SLOT_BYTES, encode(state, this.counter));
    this.current = state;
  }

  close(): Promise<void> {
    return this.region.closed ? Promise.resolve() : this.region.close();
  }
}
