// Notes on the design
// -------------------
// The admin endpoint's lockstep verbs (server.ts routes them and calls the target), with a JSON
// body checked here field by field (ERR_ADMIN_BAD_REQUEST names the field) before the target
// sees them:
//   POST /lockstep {controller?, pairs?, volumes?, journals?, timeoutMs?} -> target.lockstep,
//                  answered {result, number} (RDF's number of the result, LOCKSTEP_NUMBERS)
//   POST /lockstep/enable, /lockstep/disable {controller?} -> target.setLockstepEnabled
// Nothing here keeps state.

import { MAX_ID_CHARS, badRequest, controllerField } from './server-http';

/** Checks a POST /lockstep body; returns the controller id and what the barrier protects. */
export function lockstepRequest(body: Record<string, unknown>): { controllerId: string | undefined; target: { pairs?: string[]; volumes?: string[]; journals?: string[]; timeoutMs?: number } } {
  const fields = ['controller', 'pairs', 'volumes', 'journals', 'timeoutMs'];
  for (const key of Object.keys(body)) {
    if (!fields.includes(key)) throw badRequest(`unknown field "${key}" (fields: ${fields.join(', ')})`);
  }
  const target: { pairs?: string[]; volumes?: string[]; journals?: string[]; timeoutMs?: number } = {};
  for (const key of ['pairs', 'volumes', 'journals'] as const) {
    const list = body[key];
    if (list === undefined) continue;
    if (!Array.isArray(list) || list.length > 1024 || list.some((entry) => typeof entry !== 'string' || entry === '' || entry.length > MAX_ID_CHARS)) {
      throw badRequest(`${key} must be an array of names`);
    }
    target[key] = list as string[];
  }
  if (body.timeoutMs !== undefined) {
    if (typeof body.timeoutMs !== 'number' || !Number.isFinite(body.timeoutMs) || body.timeoutMs < 0 || body.timeoutMs > 86_400_000) {
      throw badRequest('timeoutMs must be a number of milliseconds from 0 to 86400000');
    }
    target.timeoutMs = body.timeoutMs;
  }
  return { controllerId: controllerField(body), target };
}

/** Checks a POST /lockstep/enable or /lockstep/disable body: {controller?}. */
export function lockstepSwitchRequest(body: Record<string, unknown>): string | undefined {
  for (const key of Object.keys(body)) {
    if (key !== 'controller') throw badRequest(`unknown field "${key}" (fields: controller)`);
  }
  return controllerField(body);
}
