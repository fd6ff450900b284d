// Notes on the design
// -------------------
// The admin endpoint's snapshot verbs (server.ts routes them): POST /snapshots/<verb> with a JSON
// body, checked here field by field (ERR_ADMIN_BAD_REQUEST names the field), then handed to
// target.snapshot() (src/controller/snapshots.ts does the work):
//   POST /snapshots/create  {controller?, volume, name}          -> the snapshot's status
//   POST /snapshots/list    {controller?, volume?}               -> [{volume, snapshots}]
//   POST /snapshots/delete  {controller?, volume, name}          -> {deleted: true}
//   POST /snapshots/restore {controller?, volume, name}          -> {restoredBytes}
//   POST /snapshots/clone   {controller?, volume, name, clone}   -> {volume, capacityBytes}
// Names follow the snapshot name rule ([A-Za-z0-9._:-]{1,47}); volume and clone names the
// config's.

import { BlockmirrorError } from '../errors';
import type { SnapshotRequest } from './target';

export const SNAPSHOT_VERBS = ['create', 'list', 'delete', 'restore', 'clone'] as const;
export type SnapshotVerb = (typeof SNAPSHOT_VERBS)[number];

const SNAPSHOT_NAME = /^[A-Za-z0-9._:-]{1,47}$/;
const VOLUME_NAME = /^[A-Za-z0-9._-]{1,64}$/;
const MAX_ID_CHARS = 1024;

function badRequest(message: string): BlockmirrorError {
  return new BlockmirrorError('ERR_ADMIN_BAD_REQUEST', message);
}

/** Checks a POST /snapshots/<verb> body; returns the controller id and the request. */
export function snapshotRequest(verb: SnapshotVerb, body: Record<string, unknown>): { controllerId: string | undefined; request: SnapshotRequest } {
  const fields = ['controller', 'volume', ...(verb === 'list' ? [] : ['name']), ...(verb === 'clone' ? ['clone'] : [])];
  for (const key of Object.keys(body)) {
    if (!fields.includes(key)) throw badRequest(`unknown field "${key}" (fields: ${fields.join(', ')})`);
  }
  const controller = body.controller;
  if (controller !== undefined && controller !== null && (typeof controller !== 'string' || controller === '' || controller.length > MAX_ID_CHARS)) {
    throw badRequest('controller must be a non-empty string (a controller id)');
  }
  const text = (key: string, pattern: RegExp, what: string): string => {
    const value = body[key];
    if (typeof value !== 'string' || !pattern.test(value)) throw badRequest(`${key} must be ${what} matching ${String(pattern)}`);
    return value;
  };
  const request: SnapshotRequest = { verb };
  if (verb !== 'list' || body.volume !== undefined) request.volume = text('volume', VOLUME_NAME, 'a volume name');
  if (verb !== 'list') request.name = text('name', SNAPSHOT_NAME, 'a snapshot name');
  if (verb === 'clone') request.clone = text('clone', VOLUME_NAME, 'the new volume\'s name');
  return { controllerId: typeof controller === 'string' ? controller : undefined, request };
}
