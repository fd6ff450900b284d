// Notes on the design
// -------------------
// The admin endpoint's link verbs (server.ts routes them and calls the target): POST
// /links/fault and POST /links/heal with a JSON body, checked here field by field
// (ERR_ADMIN_BAD_REQUEST names the field; fault values out of range are ERR_LINK_BAD_FAULT from
// checkFaultSettings), before the target sees them:
//   POST /links/fault {controller?, peer, delayMs?, jitterMs?, bandwidthBytesPerSecond?, drop?,
//                     partition?, direction?} -> target.setLinkFaults
//   POST /links/heal  {controller?, peer} -> target.healLink
// Nothing here keeps state.

import { type FaultSettings, checkFaultSettings } from '../transport/faults';
import { FAULT_FIELD_TYPES, badRequest, linkFields } from './server-http';

/** Checks a POST /links/fault body; returns the link (controller, peer) and the faults to set on it. */
export function faultRequest(body: Record<string, unknown>): { controller: string | undefined; peer: string; settings: FaultSettings } {
  const { controller, peer } = linkFields(body);
  const settings: FaultSettings = {};
  for (const [key, value] of Object.entries(body)) {
    if (key === 'controller' || key === 'peer') continue;
    const type = Object.prototype.hasOwnProperty.call(FAULT_FIELD_TYPES, key) ? FAULT_FIELD_TYPES[key as keyof FaultSettings] : undefined;
    if (type === undefined) {
      throw badRequest(`unknown field "${key}" (fields: controller, peer, ${Object.keys(FAULT_FIELD_TYPES).join(', ')})`);
    }
    if (typeof value !== type) throw badRequest(`${key} must be a ${type}, got ${value === null ? 'null' : typeof value}`);
    (settings as Record<string, unknown>)[key] = value;
  }
  if (settings.delayMs === undefined && settings.jitterMs === undefined && settings.bandwidthBytesPerSecond === undefined &&
      settings.drop === undefined && settings.partition === undefined) {
    throw badRequest('name at least one fault: delayMs, jitterMs, bandwidthBytesPerSecond, drop or partition');
  }
  checkFaultSettings(settings);
  return { controller, peer, settings };
}

/** Checks a POST /links/heal body: {controller?, peer}. */
export function healRequest(body: Record<string, unknown>): { controller: string | undefined; peer: string } {
  const { controller, peer } = linkFields(body);
  for (const key of Object.keys(body)) {
    if (key !== 'controller' && key !== 'peer') throw badRequest(`unknown field "${key}" (fields: controller, peer)`);
  }
  return { controller, peer };
}
