// Notes on the design
// -------------------
// The rules across elements of a serve config: duplicate names, an export naming a volume, a
// peer naming its own controller, two shared volumes on one region, two listeners on one address,
// totals, and the choice between the controllers form and the single-controller form.
// crossFieldIssues() reads the raw document and parses each element on its own with its schema
// (config-schema-fields.ts), so it reports its problems even when other parts of the file are
// broken: the user sees every problem at once.
//
// Error contract: it never throws on a bad document; it returns ConfigIssue values (a path and a
// message that reads after "<field path>: "), which src/cli/config.ts formats with
// formatIssuePath() and reports with the schema's own issues. No state lives here.

import * as path from 'node:path';

import { z } from 'zod';
import {
  LEGACY_CONTROLLER_ID, MAX_CONTROLLERS, MAX_EXPORTS, MAX_VOLUMES, SHARED_NAME_PATTERN,
} from './config-schema-limits';
import { formatAddress, isRecord } from './config-schema-builders';
import {
  type VolumeEntry, bitmapNameSchema, controllerIdSchema, defaultSharedName, exportNameSchema,
  listenEntrySchema, replicationListenSchema, volumeNameSchema, volumeSchema,
} from './config-schema-fields';

// ---------------------------------------------------------------------------------------------
// Rules across elements.

/** A path in the document as messages write it: `controllers[0].volumes[1].name`; `(document)` for the root. */
export function formatIssuePath(at: ReadonlyArray<PropertyKey>): string {
  if (at.length === 0) return '(document)';
  return at.map((key, index) => (typeof key === 'number' ? `[${key}]` : `${index === 0 ? '' : '.'}${String(key)}`)).join('');
}

/** A problem found by crossFieldIssues(): the path in the document and the message. */
export interface ConfigIssue {
  path: Array<string | number>;
  message: string;
}

function parsed<T extends z.ZodType>(schema: T, value: unknown): z.output<T> | undefined {
  const result = schema.safeParse(value);
  return result.success ? result.data : undefined;
}

interface VolumeView {
  at: Array<string | number>;
  /** The raw name when it is a string, valid or not: an export of it is not also "not found". */
  declaredName: string | undefined;
  name: string | undefined;
  entry: VolumeEntry | undefined;
  rawBitmaps: unknown[];
}

interface ExportView {
  at: Array<string | number>;
  /** Where a duplicate of an implicit export is reported: the volume's name. */
  implicit: boolean;
  name: string | undefined;
  volume: string | undefined;
}

interface ControllerView {
  at: Array<string | number>;
  id: string | undefined;
  volumes: VolumeView[];
  /** Whether the volumes field is a list (otherwise its own issue says so). */
  volumesListed: boolean;
  /** A record whose volumes and exports are lists or absent: its export count means something. */
  wellFormed: boolean;
  exports: ExportView[];
  replicationListen: { host: string; port: number } | undefined;
  rawPeers: unknown[];
  rawPairs: unknown[];
}

function asList(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}

function viewController(raw: unknown, at: Array<string | number>, form: 'controllers' | 'legacy'): ControllerView {
  const record = isRecord(raw) ? raw : {};
  const id = form === 'legacy' && record.id === undefined ? LEGACY_CONTROLLER_ID : parsed(controllerIdSchema, record.id);
  const volumes = asList(record.volumes).map((rawVolume, index): VolumeView => {
    const volumeRecord = isRecord(rawVolume) ? rawVolume : {};
    return {
      at: [...at, 'volumes', index],
      declaredName: typeof volumeRecord.name === 'string' ? volumeRecord.name : undefined,
      name: parsed(volumeNameSchema, volumeRecord.name),
      entry: parsed(volumeSchema, rawVolume),
      rawBitmaps: asList(volumeRecord.bitmaps),
    };
  });
  const exportViews: ExportView[] = record.exports === undefined
    ? volumes.filter((volume) => volume.declaredName !== undefined).map((volume) => ({
      at: [...volume.at, 'name'],
      implicit: true,
      name: volume.declaredName,
      volume: volume.declaredName,
    }))
    : asList(record.exports).map((rawExport, index) => {
      const exportRecord = isRecord(rawExport) ? rawExport : {};
      const name = parsed(exportNameSchema, exportRecord.name);
      const volume = exportRecord.volume === undefined
        ? (typeof exportRecord.name === 'string' ? exportRecord.name : undefined)
        : (typeof exportRecord.volume === 'string' ? exportRecord.volume : undefined);
      return { at: [...at, 'exports', index], implicit: false, name, volume };
    });
  const replication = isRecord(record.replication) ? record.replication : {};
  return {
    at,
    id,
    volumes,
    volumesListed: Array.isArray(record.volumes),
    wellFormed: isRecord(raw) && (record.volumes === undefined || Array.isArray(record.volumes)) &&
      (record.exports === undefined || Array.isArray(record.exports)),
    exports: exportViews,
    replicationListen: parsed(replicationListenSchema, replication.listen),
    rawPeers: asList(record.peers),
    rawPairs: asList(record.pairs),
  };
}

function quoteList(names: Iterable<string>): string {
  return [...names].map((name) => `"${name}"`).join(', ') || 'none';
}

/**
 * The rules across elements of a document: duplicates, references, totals, and the choice
 * between the controllers form and the single-controller form. Reads the raw document and
 * parses each element on its own, so it works (and reports) whatever else is wrong.
 */
export function crossFieldIssues(raw: unknown): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const add = (at: Array<string | number>, message: string): void => {
    issues.push({ path: at, message });
  };
  if (!isRecord(raw)) return issues;

  const form = raw.controllers === undefined ? 'legacy' : 'controllers';
  if (form === 'controllers') {
    for (const key of ['id', 'volumes', 'exports'] as const) {
      if (raw[key] !== undefined) {
        add([key], 'cannot be combined with controllers: the top-level id, volumes and exports are the ' +
          'single-controller form; with controllers, each controller has its own');
      }
    }
  } else if (raw.volumes === undefined) {
    add(['volumes'], 'is required (or give controllers)');
  }

  const controllers = form === 'legacy'
    ? [viewController(raw, [], 'legacy')]
    : asList(raw.controllers).map((rawController, index) => viewController(rawController, ['controllers', index], 'controllers'));

  const controllerIds = new Set<string>();
  const exportOwners = new Map<string, string>();
  const sharedNames = new Map<string, string>();
  const filePaths = new Map<string, string>();
  const replicationAddresses = new Map<string, string>();
  let volumeCount = 0;
  let exportCount = 0;

  const nbdAddresses = new Set<string>();
  const listenKeys = new Set<string>();
  // Without a listen field, the default listener ({} parses to it) is the one to compare with.
  (raw.listen === undefined ? [{}] : asList(raw.listen)).forEach((rawEntry, index) => {
    const entry = parsed(listenEntrySchema, rawEntry);
    if (entry === undefined) return;
    const key = 'path' in entry ? `unix:${path.resolve(entry.path)}` : `tcp:${entry.host}:${entry.port}`;
    if (listenKeys.has(key) && !('port' in entry && entry.port === 0)) add(['listen', index], 'duplicate listener');
    listenKeys.add(key);
    if ('port' in entry && entry.port !== 0) nbdAddresses.add(formatAddress(entry));
  });

  for (const controller of controllers) {
    const { at, id } = controller;
    const ownerLabel = id === undefined ? `controller ${formatIssuePath(at)}` : `controller "${id}"`;
    const owner = ` of ${ownerLabel}`;
    if (id !== undefined && form === 'controllers') {
      if (controllerIds.has(id)) add([...at, 'id'], `duplicate controller id "${id}"`);
      controllerIds.add(id);
    }
    volumeCount += controller.volumes.length;
    exportCount += controller.exports.length;

    const volumeNames = new Set<string>();
    for (const volume of controller.volumes) {
      if (volume.name !== undefined) {
        if (volumeNames.has(volume.name)) add([...volume.at, 'name'], `duplicate volume name "${volume.name}"`);
        volumeNames.add(volume.name);
      }
      const bitmapNames = new Set<string>();
      volume.rawBitmaps.forEach((rawBitmap, index) => {
        const bitmapName = parsed(bitmapNameSchema, isRecord(rawBitmap) ? rawBitmap.name : undefined);
        if (bitmapName === undefined) return;
        if (bitmapNames.has(bitmapName)) add([...volume.at, 'bitmaps', index, 'name'], `duplicate bitmap name "${bitmapName}"`);
        bitmapNames.add(bitmapName);
      });
      const entry = volume.entry;
      if (entry === undefined || id === undefined) continue;
      const label = `volume "${entry.name}"${owner}`;
      // Two file volumes on one path would share a region.
      if (entry.path !== undefined) {
        const resolved = path.resolve(entry.path);
        const other = filePaths.get(resolved);
        if (other !== undefined) add([...volume.at, 'path'], `same file as ${other}`);
        filePaths.set(resolved, label);
      }
      const sharedName = entry.sharedName ?? defaultSharedName(form, id, entry.name);
      const sharedNameAt = [...volume.at, entry.sharedName === undefined ? 'name' : 'sharedName'];
      if (entry.sharedName === undefined && !SHARED_NAME_PATTERN.test(sharedName)) {
        add(sharedNameAt, `the default sharedName "${sharedName}" (controller id "." name) is ${sharedName.length} ` +
          'characters, more than 184: shorten the name or set sharedName');
        continue;
      }
      if (entry.backing === 'shared') {
        const other = sharedNames.get(sharedName);
        if (other !== undefined) add(sharedNameAt, `sharedName "${sharedName}" is already the shared name of ${other}`);
        sharedNames.set(sharedName, label);
      }
    }

    if (controller.volumesListed) {
      const declared = new Set(controller.volumes.flatMap((volume) => (volume.declaredName === undefined ? [] : [volume.declaredName])));
      for (const entry of controller.exports) {
        if (!entry.implicit && entry.volume !== undefined && !declared.has(entry.volume)) {
          add([...entry.at, 'volume'], `no volume named "${entry.volume}" (volumes: ${quoteList(declared)})`);
        }
      }
    }
    for (const entry of controller.exports) {
      if (entry.name === undefined) continue;
      const other = exportOwners.get(entry.name);
      if (other === undefined) {
        exportOwners.set(entry.name, ownerLabel);
      } else if (!entry.implicit) {
        const where = other === ownerLabel ? '' : ` (also an export of ${other})`;
        add([...entry.at, 'name'], `duplicate export name ${JSON.stringify(entry.name)}${where}`);
      } else if (other !== ownerLabel) {
        // Within one controller, two implicit exports of one name are a duplicate volume name,
        // which is reported already.
        add(entry.at, `the implicit export ${JSON.stringify(entry.name)} (one per volume when exports is not ` +
          `given) is also an export of ${other}: give exports explicitly`);
      }
    }

    const listenAt = [...at, 'replication', 'listen'];
    if (controller.replicationListen !== undefined && controller.replicationListen.port !== 0) {
      const key = formatAddress(controller.replicationListen);
      const other = replicationAddresses.get(key);
      if (other !== undefined) add(listenAt, `same address as the replication listener of ${other}`);
      replicationAddresses.set(key, ownerLabel);
      if (nbdAddresses.has(key)) add(listenAt, `same address as the NBD listener ${key}`);
    }

    const peerIds = new Set<string>();
    controller.rawPeers.forEach((rawPeer, index) => {
      const peerId = parsed(controllerIdSchema, isRecord(rawPeer) ? rawPeer.id : undefined);
      if (peerId === undefined) return;
      if (peerId === id) add([...at, 'peers', index, 'id'], `must not be the controller's own id "${id}"`);
      else if (peerIds.has(peerId)) add([...at, 'peers', index, 'id'], `duplicate peer id "${peerId}"`);
      peerIds.add(peerId);
    });

    // Pairs name a volume of this controller and one of its peers; a volume is the secondary of
    // at most one pair, and never also a primary.
    const pairNames = new Set<string>();
    const secondaryVolumes = new Set<string>();
    const primaryVolumes = new Set<string>();
    const groupFirst = new Map<string, { peer: string; mode: string; role: string; index: number }>();
    const volumePairs = new Map<string, { grouped: boolean; index: number }>();
    controller.rawPairs.forEach((rawPair, index) => {
      if (!isRecord(rawPair)) return;
      const pairAt = [...at, 'pairs', index];
      const name = typeof rawPair.name === 'string' ? rawPair.name : undefined;
      if (name !== undefined) {
        if (pairNames.has(name)) add([...pairAt, 'name'], `duplicate pair name "${name}"`);
        pairNames.add(name);
      }
      const volume = typeof rawPair.volume === 'string' ? rawPair.volume : undefined;
      if (volume !== undefined && controller.volumesListed && !volumeNames.has(volume)) {
        add([...pairAt, 'volume'], `no volume named "${volume}" on controller "${id}" (volumes: ${quoteList(volumeNames)})`);
      }
      const peer = typeof rawPair.peer === 'string' ? rawPair.peer : undefined;
      if (peer !== undefined && !peerIds.has(peer)) add([...pairAt, 'peer'], `not a peer of controller "${id}" (peers: ${quoteList(peerIds)})`);
      if (volume !== undefined && rawPair.role === 'secondary') {
        if (secondaryVolumes.has(volume)) add([...pairAt, 'volume'], `"${volume}" is the secondary of another pair`);
        if (primaryVolumes.has(volume)) add([...pairAt, 'volume'], `"${volume}" is the primary of another pair; it cannot also be a secondary`);
        secondaryVolumes.add(volume);
      } else if (volume !== undefined && rawPair.role === 'primary') {
        if (secondaryVolumes.has(volume)) add([...pairAt, 'volume'], `"${volume}" is the secondary of another pair; it cannot also be a primary`);
        primaryVolumes.add(volume);
      }
      if (rawPair.fence === 'data' && rawPair.mode !== 'sync') add([...pairAt, 'fence'], 'fence "data" needs mode "sync"');
      if (typeof rawPair.journalGroup === 'string') {
        const group = rawPair.journalGroup;
        const fields = { peer: String(rawPair.peer), mode: String(rawPair.mode ?? 'async'), role: String(rawPair.role) };
        const first = groupFirst.get(group);
        if (first === undefined) {
          groupFirst.set(group, { ...fields, index });
        } else {
          for (const field of ['peer', 'mode', 'role'] as const) {
            if (fields[field] !== first[field]) add([...pairAt, 'journalGroup'], `journal group "${group}" has ${field} "${first[field]}" (pairs[${first.index}]); one ${field} per group`);
          }
        }
      }
      if (volume !== undefined) {
        const grouped = typeof rawPair.journalGroup === 'string';
        const seen = volumePairs.get(volume);
        if (seen !== undefined && (seen.grouped || grouped)) add([...pairAt, 'volume'], `"${volume}" is in a journal group; a grouped volume is in no other pair (pairs[${seen.index}])`);
        if (seen === undefined) volumePairs.set(volume, { grouped, index });
      }
    });
  }

  if (form === 'controllers' && Array.isArray(raw.controllers) && raw.controllers.length > 0 &&
      raw.controllers.length <= MAX_CONTROLLERS) {
    if (volumeCount > MAX_VOLUMES) add(['controllers'], `must have at most ${MAX_VOLUMES} volumes in all, got ${volumeCount}`);
    if (exportCount > MAX_EXPORTS) add(['controllers'], `must have at most ${MAX_EXPORTS} exports in all, got ${exportCount}`);
    if (exportCount === 0 && controllers.every((controller) => controller.wellFormed)) {
      add(['controllers'], 'must have at least one export in all: the NBD server needs one');
    }
  }
  return issues;
}
