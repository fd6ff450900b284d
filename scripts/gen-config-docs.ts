// Writes the table of config keys in docs/config.md from the config schema
// (src/cli/config-schema.ts), between the two marker comments; the prose around it is written by
// hand. `npm run docs:config` rewrites the file; `--check` only says whether it is up to date
// (exit 1 if not). A unit test (test/unit/50.config.test.ts) fails when the file and the schema
// disagree.
//
// The walk reads zod 4's schema definitions (`_zod.def`): objects are expanded key by key, lists
// as `key[]`, and the wrappers (optional, default, prefault, nullable, pipe) are looked through.
// A key's text comes from its `.meta()`: `description`, and where the schema alone cannot say it,
// `docType`, `docDefault`, and `docExpand: false` for keys documented elsewhere.

import * as fs from 'node:fs';
import * as path from 'node:path';

import { z } from 'zod';

import { ConfigKeyMeta, configDocumentSchema, formatSize } from '../src/cli/config-schema';

/** docs/config.md, from dist/scripts or from scripts. */
export const CONFIG_DOC_PATH = path.resolve(__dirname, __dirname.includes(`${path.sep}dist${path.sep}`) ? '../..' : '..', 'docs', 'config.md');

export const TABLE_BEGIN = '<!-- config-keys:begin (generated from src/cli/config-schema.ts by `npm run docs:config`; do not edit) -->';
export const TABLE_END = '<!-- config-keys:end -->';

/** One row of the table. */
export interface ConfigKeyRow {
  key: string;
  type: string;
  default: string;
  description: string;
}

interface LooseDef {
  type: string;
  innerType?: z.core.$ZodType;
  in?: z.core.$ZodType;
  out?: z.core.$ZodType;
  shape?: Record<string, z.core.$ZodType>;
  element?: z.core.$ZodType;
  entries?: Record<string, string | number>;
  defaultValue?: unknown;
}

function definition(schema: z.core.$ZodType): LooseDef {
  return schema._zod.def as unknown as LooseDef;
}

interface Unwrapped {
  core: z.core.$ZodType;
  meta: ConfigKeyMeta;
  optional: boolean;
  nullable: boolean;
  hasDefault: boolean;
  defaultValue: unknown;
}

/** Looks through the wrappers to the schema that says what the value is, gathering the meta. */
function unwrap(schema: z.core.$ZodType): Unwrapped {
  const found: Unwrapped = { core: schema, meta: {}, optional: false, nullable: false, hasDefault: false, defaultValue: undefined };
  let current = schema;
  for (;;) {
    // The outer schema's meta wins: it is the one written at the key.
    found.meta = { ...(z.globalRegistry.get(current) as ConfigKeyMeta | undefined ?? {}), ...found.meta };
    const def = definition(current);
    if (def.type === 'optional' && def.innerType !== undefined) {
      found.optional = true;
      current = def.innerType;
    } else if (def.type === 'nullable' && def.innerType !== undefined) {
      found.nullable = true;
      current = def.innerType;
    } else if ((def.type === 'default' || def.type === 'prefault') && def.innerType !== undefined) {
      if (!found.hasDefault) {
        found.hasDefault = true;
        found.defaultValue = def.defaultValue;
      }
      current = def.innerType;
    } else if (def.type === 'pipe' && def.in !== undefined && def.out !== undefined && found.meta.docType === undefined) {
      // A transform's input is what the file holds; otherwise (a list checked, then parsed) the
      // output schema is the one that describes the elements.
      current = definition(def.out).type === 'transform' ? def.in : def.out;
    } else {
      found.core = current;
      return found;
    }
  }
}

function typeOf(found: Unwrapped): string {
  const def = definition(found.core);
  let type = found.meta.docType;
  if (type === undefined) {
    if (def.type === 'enum' && def.entries !== undefined) {
      type = Object.values(def.entries).map((value) => `\`${JSON.stringify(value)}\``).join(' or ');
    } else if (def.type === 'array') {
      type = 'list';
    } else {
      type = def.type;
    }
  }
  return found.nullable ? `${type} or \`null\`` : type;
}

function defaultOf(found: Unwrapped, type: string): string {
  if (found.meta.docDefault !== undefined) return found.meta.docDefault;
  if (!found.hasDefault) return found.optional ? '' : 'required';
  const value = found.defaultValue;
  if (type === 'size' && typeof value === 'number') return `\`${formatSize(value)}\``;
  // An object whose keys all have defaults: its rows say them.
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) return '';
  return `\`${JSON.stringify(value)}\``;
}

function walk(schema: z.core.$ZodType, key: string, rows: ConfigKeyRow[]): void {
  const found = unwrap(schema);
  const type = typeOf(found);
  if (key !== '') {
    rows.push({ key, type, default: defaultOf(found, type), description: found.meta.description ?? '' });
  }
  if (found.meta.docExpand === false) return;
  let core = found.core;
  let prefix = key;
  const def = definition(core);
  if (def.type === 'array' && def.element !== undefined) {
    const element = unwrap(def.element);
    if (definition(element.core).type !== 'object') return;
    core = element.core;
    prefix = `${key}[]`;
  }
  const shape = definition(core).shape;
  if (definition(core).type !== 'object' || shape === undefined) return;
  for (const [name, field] of Object.entries(shape)) walk(field, prefix === '' ? name : `${prefix}.${name}`, rows);
}

/** Every key of the config file, in schema order. */
export function configKeyRows(): ConfigKeyRow[] {
  const rows: ConfigKeyRow[] = [];
  walk(configDocumentSchema, '', rows);
  return rows;
}

function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

/** The markdown table, markers included. */
export function renderConfigKeyTable(): string {
  const lines = [
    TABLE_BEGIN,
    '',
    '| key | type | default | meaning |',
    '| --- | --- | --- | --- |',
    ...configKeyRows().map((row) => `| \`${row.key}\` | ${cell(row.type)} | ${cell(row.default)} | ${cell(row.description)} |`),
    '',
    TABLE_END,
  ];
  return lines.join('\n');
}

/** The document with its generated table replaced; throws when the markers are missing. */
export function replaceConfigKeyTable(text: string): string {
  const begin = text.indexOf(TABLE_BEGIN);
  const end = text.indexOf(TABLE_END);
  if (begin < 0 || end < begin) throw new Error(`${CONFIG_DOC_PATH}: the markers of the generated table are missing`);
  return text.slice(0, begin) + renderConfigKeyTable() + text.slice(end + TABLE_END.length);
}

function main(argv: string[]): number {
  const text = fs.readFileSync(CONFIG_DOC_PATH, 'utf8');
  const updated = replaceConfigKeyTable(text);
  if (argv.includes('--check')) {
    if (updated === text) return 0;
    process.stderr.write(`${CONFIG_DOC_PATH} is out of date with the config schema: run npm run docs:config\n`);
    return 1;
  }
  if (updated !== text) fs.writeFileSync(CONFIG_DOC_PATH, updated);
  process.stdout.write(`${CONFIG_DOC_PATH}: ${updated === text ? 'up to date' : 'table of keys rewritten'}\n`);
  return 0;
}

if (require.main === module) process.exitCode = main(process.argv.slice(2));
