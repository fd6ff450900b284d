// Notes on the design
// -------------------
// The admin endpoint's pair verbs (server.ts routes them and calls the target): POST
// /pairs/<verb> with a JSON body, checked here field by field (ERR_ADMIN_BAD_REQUEST names the
// field) before the target sees them (the target checks again):
//   POST /pairs/suspend|resume|failback|delete {controller?, pair}
//   POST /pairs/takeover {controller?, pair, force?}
//   POST /pairs/resolve {controller?, pair, keep: primary|secondary}
//   POST /pairs/takeover-group {controller?, journalGroup, force?}
//   POST /pairs/failback-group {controller?, journalGroup}
//   POST /pairs/create {controller?, pair, volume, peer, remoteVolume, mode?, role, fence?,
//                      autoResume?, journalHold?, journalGroup?} (the fields of the config's `pairs[]`)
// Nothing here keeps state.

import { MAX_ID_CHARS, badRequest } from './server-http';
import type { AdminTarget } from './target';

/** The verbs of POST /pairs/<verb> that name one pair. */
export type PairVerb = 'suspend' | 'resume' | 'takeover' | 'failback' | 'resolve' | 'delete';

/** Checks a POST /pairs/<verb> body: {controller?, pair} (+ force for takeover, keep for resolve). */
export function pairRequest(verb: PairVerb, body: Record<string, unknown>): { controllerId: string | undefined; pair: string; force: boolean; keep: 'primary' | 'secondary' } {
  const fields = ['controller', 'pair', ...(verb === 'takeover' ? ['force'] : []), ...(verb === 'resolve' ? ['keep'] : [])];
  for (const key of Object.keys(body)) {
    if (!fields.includes(key)) throw badRequest(`unknown field "${key}" (fields: ${fields.join(', ')})`);
  }
  if (body.force !== undefined && typeof body.force !== 'boolean') throw badRequest('force must be true or false');
  if (verb === 'resolve' && body.keep !== 'primary' && body.keep !== 'secondary') throw badRequest('keep must be "primary" or "secondary" (the side, by its declared role, whose data is kept)');
  const controller = body.controller;
  if (controller !== undefined && controller !== null && (typeof controller !== 'string' || controller === '' || controller.length > MAX_ID_CHARS)) {
    throw badRequest('controller must be a non-empty string (a controller id)');
  }
  const pair = body.pair;
  if (typeof pair !== 'string' || pair === '' || pair.length > MAX_ID_CHARS) throw badRequest('pair must be a non-empty string (a pair name)');
  const controllerId = typeof controller === 'string' ? controller : undefined;
  return { controllerId, pair, force: body.force === true, keep: body.keep as 'primary' | 'secondary' };
}

/** Checks a POST /pairs/takeover-group {controller?, journalGroup, force?} or /pairs/failback-group {controller?, journalGroup} body. */
export function groupRoleRequest(verb: 'takeover' | 'failback', body: Record<string, unknown>): { controllerId: string | undefined; group: string; force: boolean } {
  const fields = verb === 'takeover' ? ['controller', 'journalGroup', 'force'] : ['controller', 'journalGroup'];
  for (const key of Object.keys(body)) {
    if (!fields.includes(key)) throw badRequest(`unknown field "${key}" (fields: ${fields.join(', ')})`);
  }
  if (body.force !== undefined && typeof body.force !== 'boolean') throw badRequest('force must be true or false');
  const controller = body.controller;
  if (controller !== undefined && controller !== null && (typeof controller !== 'string' || controller === '' || controller.length > MAX_ID_CHARS)) {
    throw badRequest('controller must be a non-empty string (a controller id)');
  }
  const group = body.journalGroup;
  if (typeof group !== 'string' || group === '' || group.length > MAX_ID_CHARS) throw badRequest('journalGroup must be a non-empty string (a journal group name)');
  const controllerId = typeof controller === 'string' ? controller : undefined;
  return { controllerId, group, force: body.force === true };
}

/** Checks a POST /pairs/create body: a pair declared at run time, with the fields of the config's `pairs[]`. */
export function pairCreateRequest(body: Record<string, unknown>): { controllerId: string | undefined; spec: Parameters<AdminTarget['createPair']>[1] } {
  const fields = ['controller', 'pair', 'volume', 'peer', 'remoteVolume', 'mode', 'role', 'fence', 'autoResume', 'journalHold', 'journalGroup'];
  for (const key of Object.keys(body)) {
    if (!fields.includes(key)) throw badRequest(`unknown field "${key}" (fields: ${fields.join(', ')})`);
  }
  const text = (key: string, pattern?: RegExp): string => {
    const value = body[key];
    if (typeof value !== 'string' || value === '' || value.length > MAX_ID_CHARS || (pattern !== undefined && !pattern.test(value))) {
      throw badRequest(`${key} must be a non-empty string${pattern === undefined ? '' : ` matching ${String(pattern)}`}`);
    }
    return value;
  };
  const controller = body.controller;
  if (controller !== undefined && controller !== null && (typeof controller !== 'string' || controller === '' || controller.length > MAX_ID_CHARS)) {
    throw badRequest('controller must be a non-empty string (a controller id)');
  }
  const mode = body.mode ?? 'async';
  if (mode !== 'sync' && mode !== 'async') throw badRequest('mode must be "sync" or "async"');
  if (body.role !== 'primary' && body.role !== 'secondary') throw badRequest('role must be "primary" or "secondary"');
  const fence = body.fence ?? 'never';
  if (fence !== 'never' && fence !== 'data') throw badRequest('fence must be "never" or "data"');
  if (body.autoResume !== undefined && typeof body.autoResume !== 'boolean') throw badRequest('autoResume must be true or false');
  const spec: Parameters<AdminTarget['createPair']>[1] = {
    name: text('pair', /^[A-Za-z0-9._-]{1,64}$/), volume: text('volume'), peer: text('peer'), remoteVolume: text('remoteVolume'),
    mode, role: body.role, fence, autoResume: body.autoResume !== false,
  };
  if (body.journalHold !== undefined) {
    if (typeof body.journalHold !== 'number' || !(body.journalHold >= 0 && body.journalHold <= 1)) throw badRequest('journalHold must be a number from 0 to 1');
    spec.journalHold = body.journalHold;
  }
  if (body.journalGroup !== undefined) spec.journalGroup = text('journalGroup', /^[A-Za-z0-9._-]{1,64}$/);
  return { controllerId: typeof controller === 'string' ? controller : undefined, spec };
}
