// Notes on the design
// -------------------
// The admin endpoint's disk verbs (server.ts routes them): POST /disks/<verb> with a JSON body,
// checked here field by field (ERR_ADMIN_BAD_REQUEST names the field) before the target sees it,
// then handed to target.disk() (src/controller/disks.ts does the work):
//   POST /disks/list  {controller?}                                       -> the raid tables
//   POST /disks/fault {controller?, disk, operations?, byteOffset?, byteLength?, rate?,
//                      afterCount?, errno?, latencyMs?}                   -> {disk, index, faults}
//   POST /disks/fail  {controller?, disk}                                 -> {disk, status}
//   POST /disks/heal  {controller?, disk}                                 -> {disk, status}
// The fault fields are those of Disk.addFault (docs/raid.md); their ranges are checked again by
// the disk (RangeError -> 400).

import { BlockmirrorError } from '../errors';

export const DISK_VERBS = ['list', 'fault', 'fail', 'heal'] as const;
export type DiskVerb = (typeof DISK_VERBS)[number];

/** What POST /disks/<verb> asks for. */
export interface DiskRequest {
  verb: DiskVerb;
  disk?: string;
  fault?: {
    operations?: 'read' | 'write' | 'both';
    byteOffset?: number;
    byteLength?: number;
    rate?: number;
    afterCount?: number;
    errno?: number;
    latencyMs?: number;
  };
}

const DISK_NAME = /^[A-Za-z0-9._-]{1,184}$/;
const MAX_ID_CHARS = 1024;
const FAULT_FIELDS = ['operations', 'byteOffset', 'byteLength', 'rate', 'afterCount', 'errno', 'latencyMs'] as const;

function badRequest(message: string): BlockmirrorError {
  return new BlockmirrorError('ERR_ADMIN_BAD_REQUEST', message);
}

/** Checks a POST /disks/<verb> body; returns the controller id and the request. */
export function diskRequest(verb: DiskVerb, body: Record<string, unknown>): { controllerId: string | undefined; request: DiskRequest } {
  const fields = ['controller', ...(verb === 'list' ? [] : ['disk']), ...(verb === 'fault' ? FAULT_FIELDS : [])];
  for (const key of Object.keys(body)) {
    if (!fields.includes(key)) throw badRequest(`unknown field "${key}" (fields: ${fields.join(', ')})`);
  }
  const controller = body.controller;
  if (controller !== undefined && controller !== null && (typeof controller !== 'string' || controller === '' || controller.length > MAX_ID_CHARS)) {
    throw badRequest('controller must be a non-empty string (a controller id)');
  }
  const request: DiskRequest = { verb };
  if (verb !== 'list') {
    if (typeof body.disk !== 'string' || !DISK_NAME.test(body.disk)) throw badRequest(`disk must be a disk name matching ${String(DISK_NAME)}`);
    request.disk = body.disk;
  }
  if (verb === 'fault') {
    const fault: NonNullable<DiskRequest['fault']> = {};
    if (body.operations !== undefined) {
      if (body.operations !== 'read' && body.operations !== 'write' && body.operations !== 'both') throw badRequest('operations must be "read", "write" or "both"');
      fault.operations = body.operations;
    }
    const integer = (key: 'byteOffset' | 'byteLength' | 'afterCount' | 'errno', max: number): void => {
      const value = body[key];
      if (value === undefined) return;
      if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0 || value > max) throw badRequest(`${key} must be an integer from 0 to ${max}`);
      fault[key] = value;
    };
    integer('byteOffset', Number.MAX_SAFE_INTEGER);
    integer('byteLength', Number.MAX_SAFE_INTEGER);
    integer('afterCount', Number.MAX_SAFE_INTEGER);
    integer('errno', 4095);
    const real = (key: 'rate' | 'latencyMs', max: number): void => {
      const value = body[key];
      if (value === undefined) return;
      if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > max) throw badRequest(`${key} must be a number from 0 to ${max}`);
      fault[key] = value;
    };
    real('rate', 1);
    real('latencyMs', 10_000);
    request.fault = fault;
  }
  return { controllerId: typeof controller === 'string' ? controller : undefined, request };
}
