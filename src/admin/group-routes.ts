// Notes on the design
// -------------------
// The admin endpoint's consistency-group verbs (server.ts routes them): POST /groups/<verb> with
// a JSON body, checked here field by field (ERR_ADMIN_BAD_REQUEST names the field), then handed
// to target.group() (src/cgroup/groups.ts does the work):
//   POST /groups/create  {controller?, group: {name, relationships, limits...}} -> the group's status
//   POST /groups/status  {controller?, name?}                  -> one group's status, or every group's and the copies
//   POST /groups/start   {controller?, name}                   -> the group's status (the master cycles)
//   POST /groups/stop    {controller?, name}                   -> the group's status (cycles stop)
//   POST /groups/delete  {controller?, name}                   -> {deleted: true}
//   POST /groups/recover {controller?, name, cycle?, mode?}    -> {group, cycle, mode, volumes}
//   POST /groups/held    {controller?, name}                   -> the copies of the group held here
// The relationship table itself is checked by the controller (cgroupSpecProblems) and refused
// with ERR_CGROUP_BAD_SPEC (HTTP 400).

import { BlockmirrorError } from '../errors';
import { GROUP_NAME_PATTERN } from '../cgroup/types';
import type { GroupRequest } from './target';

export const GROUP_VERBS = ['create', 'status', 'start', 'stop', 'delete', 'recover', 'held'] as const;
export type GroupVerb = (typeof GROUP_VERBS)[number];

const MAX_ID_CHARS = 1024;

function badRequest(message: string): BlockmirrorError {
  return new BlockmirrorError('ERR_ADMIN_BAD_REQUEST', message);
}

const FIELDS: Record<GroupVerb, readonly string[]> = {
  create: ['controller', 'group'],
  status: ['controller', 'name'],
  start: ['controller', 'name'],
  stop: ['controller', 'name'],
  delete: ['controller', 'name'],
  recover: ['controller', 'name', 'cycle', 'mode'],
  held: ['controller', 'name'],
};

/** Checks a POST /groups/<verb> body; returns the controller id and the request. */
export function groupRequest(verb: GroupVerb, body: Record<string, unknown>): { controllerId: string | undefined; request: GroupRequest } {
  const fields = FIELDS[verb];
  for (const key of Object.keys(body)) {
    if (!fields.includes(key)) throw badRequest(`unknown field "${key}" (fields: ${fields.join(', ')})`);
  }
  const controller = body.controller;
  if (controller !== undefined && controller !== null && (typeof controller !== 'string' || controller === '' || controller.length > MAX_ID_CHARS)) {
    throw badRequest('controller must be a non-empty string (a controller id)');
  }
  const request: GroupRequest = { verb };
  if (verb === 'create') {
    const group = body.group;
    if (group === null || typeof group !== 'object' || Array.isArray(group)) throw badRequest('group must be an object: {name, relationships, ...limits}');
    request.group = group as Record<string, unknown>;
  } else if (verb !== 'status' || body.name !== undefined) {
    const name = body.name;
    if (typeof name !== 'string' || !GROUP_NAME_PATTERN.test(name)) throw badRequest(`name must be a group name matching ${String(GROUP_NAME_PATTERN)}`);
    request.name = name;
  }
  if (verb === 'recover') {
    if (body.cycle !== undefined) {
      if (typeof body.cycle !== 'number' || !Number.isSafeInteger(body.cycle) || body.cycle < 1) throw badRequest('cycle must be a positive integer');
      request.cycle = body.cycle;
    }
    if (body.mode !== undefined) {
      if (body.mode !== 'export' && body.mode !== 'restore') throw badRequest('mode must be "export" or "restore"');
      request.mode = body.mode;
    }
  }
  return { controllerId: typeof controller === 'string' ? controller : undefined, request };
}
