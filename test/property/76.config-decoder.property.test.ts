// Property: the config decoder (src/cli/config.ts: parseConfigText, then validateConfig) reads a
// user's file. Whatever text or document it is given (garbage, a valid config cut at any point,
// a valid config with any field of any depth replaced by any JSON value), it answers with a
// config or a ConfigError whose issues name what is wrong, never another exception.
import * as assert from 'node:assert/strict';

import * as fc from 'fast-check';
import YAML from 'yaml';

import { ConfigError, defaultConfig, parseConfigText, toDocument, validateConfig } from '../../src/cli/config';

function readsOrRefuses(read: () => unknown): void {
  try {
    read();
  } catch (error) {
    assert.ok(error instanceof ConfigError, `threw ${String((error as Error)?.stack ?? error)}`);
    assert.ok(error.issues.length > 0, 'a refusal says why');
  }
}

/** Every path to a value in a JSON document (objects and arrays). */
function paths(value: unknown, prefix: (string | number)[] = []): (string | number)[][] {
  const out: (string | number)[][] = [prefix];
  if (Array.isArray(value)) value.forEach((entry, index) => out.push(...paths(entry, [...prefix, index])));
  else if (value !== null && typeof value === 'object') for (const [key, entry] of Object.entries(value)) out.push(...paths(entry, [...prefix, key]));
  return out;
}

function replaced(document: unknown, at: (string | number)[], value: unknown): unknown {
  if (at.length === 0) return value;
  const copy = structuredClone(document) as Record<string | number, unknown>;
  let node = copy;
  for (const key of at.slice(0, -1)) node = node[key] as Record<string | number, unknown>;
  node[at[at.length - 1] as string | number] = value;
  return copy;
}

describe('76 config decoder (property)', () => {
  const document = toDocument(defaultConfig());
  const all = paths(document);
  const yamlText = YAML.stringify(document);
  const jsonText = JSON.stringify(document, null, 2);

  it('the built-in default, written out as YAML and as JSON, reads back', () => {
    validateConfig(parseConfigText(yamlText, 'x.yaml'));
    validateConfig(parseConfigText(jsonText, 'x.json'));
  });

  it('any text, as YAML or as JSON, is a config or a ConfigError', () => {
    fc.assert(fc.property(fc.string({ maxLength: 400 }), fc.constantFrom('a.yaml', 'a.json', 'a.conf'), (text, name) =>
      readsOrRefuses(() => validateConfig(parseConfigText(text, name)))), { numRuns: 400 });
  });

  it('a valid config cut at any point is a config or a ConfigError', () => {
    fc.assert(fc.property(fc.nat(), fc.boolean(), (cut, json) => {
      const text = json ? jsonText : yamlText;
      readsOrRefuses(() => validateConfig(parseConfigText(text.slice(0, cut % (text.length + 1)), json ? 'a.json' : 'a.yaml')));
    }), { numRuns: 400 });
  });

  it('a valid config with any field of any depth replaced by any JSON value is a config or a ConfigError', () => {
    fc.assert(fc.property(fc.nat(), fc.jsonValue({ maxDepth: 3 }), (pick, value) => {
      readsOrRefuses(() => validateConfig(replaced(document, all[pick % all.length] as (string | number)[], value)));
    }), { numRuns: 1500 });
  });
});
