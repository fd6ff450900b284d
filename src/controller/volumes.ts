// Opening a controller's configured volumes: create a memory volume, or reopen a shared or file
// volume that exists (its data and bitmaps kept) unless the configuration says `existing:
// "error"`; the geometry of an existing volume must match (a different capacity or block size
// would reinterpret its bytes), and so must the granularity of existing configured bitmaps.

import { BlockmirrorError } from '../errors';
import { Region } from '../storage/region';
import { Volume, sharedVolumeRegionName, type VolumeBacking, type VolumeCreateOptions } from '../storage/volume';

/** A volume as a controller is configured with it (the config's normalized volume entry). */
export interface ControllerVolumeSpec {
  name: string;
  /** The shared-memory name of a 'shared' volume. @default name */
  sharedName?: string;
  capacityBytes: number;
  /** @default 4096 */
  blockSize?: number;
  /** @default 'memory' */
  backing?: VolumeBacking;
  path?: string;
  /** @default false */
  strict?: boolean;
  /** @default 'open' */
  existing?: 'open' | 'error';
  /** @default [] */
  bitmaps?: { name: string; granularityBytes: number; recording: boolean }[];
  /** The RAID group the volume is laid on (src/controller/disks.ts). @default none: its own region */
  group?: string;
}

/** An opened volume and whether it was created or reopened. */
export interface OpenedVolume {
  spec: ControllerVolumeSpec;
  volume: Volume;
  opened: 'created' | 'reopened';
}

function errorCode(error: unknown): unknown {
  return (error as { code?: unknown } | null)?.code;
}

/** Opens (or creates) one configured volume and its configured bitmaps. */
export async function openConfiguredVolume(spec: ControllerVolumeSpec): Promise<OpenedVolume> {
  const backing = spec.backing ?? 'memory';
  const blockSize = spec.blockSize ?? Volume.DEFAULT_BLOCK_SIZE;
  const strict = spec.strict ?? false;
  const sharedName = spec.sharedName ?? spec.name;
  let volume: Volume | undefined;
  let opened: OpenedVolume['opened'] = 'created';
  // A probe, not an error: Region.exists first (a miss is the common case of a first start).
  if (backing !== 'memory' && (backing === 'file' ? Region.exists('file', spec.path as string) : Region.exists('shared', sharedVolumeRegionName(sharedName)))) {
    try {
      volume = Volume.open(backing === 'file' ? { path: spec.path as string } : { name: sharedName });
    } catch (error) {
      // Removed between the look and the open.
      if (errorCode(error) !== 'ERR_REGION_NOT_FOUND') throw error;
    }
  }
  if (volume !== undefined) {
    opened = 'reopened';
    if (spec.existing === 'error') {
      await volume.close();
      throw new BlockmirrorError('ERR_CLI_VOLUME_EXISTS',
        `volume "${spec.name}": its ${backing} backing exists already and existing is "error"`);
    }
    if (volume.capacityBytes !== spec.capacityBytes || volume.blockSize !== blockSize || volume.strict !== strict) {
      const found = `capacity ${volume.capacityBytes}, blockSize ${volume.blockSize}, strict ${volume.strict}`;
      await volume.close();
      throw new BlockmirrorError('ERR_CLI_VOLUME_GEOMETRY',
        `volume "${spec.name}": the existing ${backing} volume has ${found}; the config says ` +
        `capacity ${spec.capacityBytes}, blockSize ${blockSize}, strict ${strict}`);
    }
  } else {
    // A shared volume's region is named after its sharedName; a memory volume's name is a label.
    const options: VolumeCreateOptions = { capacityBytes: spec.capacityBytes, blockSize, strict, backing,
      name: backing === 'shared' ? sharedName : spec.name };
    if (spec.path !== undefined) options.path = spec.path;
    volume = Volume.create(options);
  }
  try {
    const existing = new Map(volume.listBitmaps().map((bitmap) => [bitmap.name, bitmap]));
    for (const bitmap of spec.bitmaps ?? []) {
      const found = existing.get(bitmap.name);
      if (found !== undefined) {
        // A reopened bitmap keeps its bits; a different granularity would make them mean
        // something else, so it is refused rather than silently kept or reset.
        if (found.granularityBytes !== bitmap.granularityBytes) {
          throw new BlockmirrorError('ERR_CLI_VOLUME_GEOMETRY',
            `volume "${spec.name}": bitmap "${bitmap.name}" exists with granularity ` +
            `${found.granularityBytes}, the config says ${bitmap.granularityBytes}`);
        }
        if (found.recording !== bitmap.recording) volume.setBitmapRecording(bitmap.name, bitmap.recording);
        continue;
      }
      // The server opens bitmaps by name when a client asks; this handle is not needed.
      volume.createBitmap(bitmap.name, { granularityBytes: bitmap.granularityBytes, recording: bitmap.recording }).close();
    }
  } catch (error) {
    await volume.close();
    throw error;
  }
  return { spec, volume, opened };
}
