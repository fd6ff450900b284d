// The error contract: one error class with stable codes, the TypeScript list equal to the native
// one, and native operating errors arriving as real BlockmirrorError instances.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { BlockmirrorError, ERROR_CODES, NATIVE_ERROR_CODES, isBlockmirrorError } from '../../src/errors';
import { ConfigError } from '../../src/cli/config';
import { nbdError } from '../../src/nbd/errors';
import { addon } from '../../src/native';
import { Region } from '../../src/storage/region';
import { Volume } from '../../src/storage/volume';
import { uniqueName } from '../helpers/storage';

describe('01 errors', () => {
  it('NATIVE_ERROR_CODES equals the native code list, in order', () => {
    assert.deepEqual([...NATIVE_ERROR_CODES], addon.codeNames());
  });

  it('ERROR_CODES holds every native code once, all of the form ERR_<AREA>_<WHAT>', () => {
    for (const code of NATIVE_ERROR_CODES) assert.ok(ERROR_CODES.includes(code), code);
    assert.equal(new Set(ERROR_CODES).size, ERROR_CODES.length, 'duplicate codes');
    for (const code of ERROR_CODES) assert.match(code, /^ERR_[A-Z0-9]+_[A-Z0-9_]+$/);
  });

  it('the code lists are frozen', () => {
    assert.ok(Object.isFrozen(NATIVE_ERROR_CODES));
    assert.ok(Object.isFrozen(ERROR_CODES));
  });

  it('BlockmirrorError carries name, code, message, errno and cause', () => {
    const cause = new Error('root');
    const error = new BlockmirrorError('ERR_REGION_OPEN', 'cannot open', { errno: 13, cause });
    assert.ok(error instanceof Error);
    assert.equal(error.name, 'BlockmirrorError');
    assert.equal(error.code, 'ERR_REGION_OPEN');
    assert.equal(error.message, 'cannot open');
    assert.equal(error.errno, 13);
    assert.equal((error as Error & { cause?: unknown }).cause, cause);
    assert.match(String(error), /^BlockmirrorError: cannot open$/);
    assert.equal(Object.keys(error).includes('name'), false, 'name lives on the prototype');
  });

  it('without options, errno is absent', () => {
    const error = new BlockmirrorError('ERR_VOLUME_CLOSED', 'closed');
    assert.equal(error.errno, undefined);
    assert.equal('errno' in error, false);
  });

  it('isBlockmirrorError checks the class and, when given, the code', () => {
    const error = new BlockmirrorError('ERR_BITMAP_LIMIT', 'full');
    assert.equal(isBlockmirrorError(error), true);
    assert.equal(isBlockmirrorError(error, 'ERR_BITMAP_LIMIT'), true);
    assert.equal(isBlockmirrorError(error, 'ERR_BITMAP_EXISTS'), false);
    const lookalike = Object.assign(new Error('x'), { code: 'ERR_BITMAP_LIMIT' });
    assert.equal(isBlockmirrorError(lookalike), false);
    assert.equal(isBlockmirrorError(undefined), false);
    assert.equal(isBlockmirrorError({ code: 'ERR_BITMAP_LIMIT' }), false);
  });

  it('a native operating error is a BlockmirrorError with code and errno', () => {
    let thrown: unknown;
    try {
      Region.open({ kind: 'shared', name: uniqueName('missing') });
    } catch (error) {
      thrown = error;
    }
    assert.ok(thrown instanceof BlockmirrorError, `got ${String(thrown)}`);
    assert.equal(thrown.code, 'ERR_REGION_NOT_FOUND');
    assert.equal(thrown.errno, 2 /* ENOENT */);
    assert.match(thrown.message, /does not exist/);
    assert.ok(thrown.stack?.includes('BlockmirrorError'));
  });

  it('a native operating error without errno has none', () => {
    const volume = Volume.create({ capacityBytes: 1 << 20 });
    volume.createBitmap('a');
    let thrown: unknown;
    try {
      volume.createBitmap('a');
    } catch (error) {
      thrown = error;
    }
    void volume.close();
    assert.ok(isBlockmirrorError(thrown, 'ERR_BITMAP_EXISTS'), String(thrown));
    assert.equal((thrown as BlockmirrorError).errno, undefined);
  });

  it('errors from native constructors and free functions are BlockmirrorErrors too', () => {
    for (const [fn, code] of [
      [() => addon.deserializeBitmap(Buffer.alloc(64)), 'ERR_BITMAP_FORMAT'],
      [() => new addon.Volume(1, uniqueName('none'), false, 0, 0, false), 'ERR_REGION_NOT_FOUND'],
    ] as const) {
      let thrown: unknown;
      try {
        fn();
      } catch (error) {
        thrown = error;
      }
      assert.ok(isBlockmirrorError(thrown, code), `${code}: got ${String(thrown)}`);
    }
  });

  it('every ERR_* code written in src/ is in ERROR_CODES, and every listed code is used', () => {
    const root = path.join(__dirname, '..', '..', '..', 'src');
    const used = new Set<string>();
    const walk = (dir: string): void => {
      for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
        const file = path.join(dir, entry.name);
        if (entry.isDirectory()) walk(file);
        else if (entry.name.endsWith('.ts') && entry.name !== 'errors.ts') {
          for (const match of fs.readFileSync(file, 'utf8').matchAll(/'(ERR_[A-Z0-9_]+)'/g)) used.add(match[1]!);
        }
      }
    };
    walk(root);
    const listed = new Set<string>(ERROR_CODES);
    const unlisted = [...used].filter((code) => !listed.has(code));
    assert.deepEqual(unlisted, [], 'codes used in src/ but missing from ERROR_CODES');
    // Native codes are raised from C++, so only the TypeScript-only areas must appear in src/.
    const native = new Set<string>(NATIVE_ERROR_CODES);
    const unused = ERROR_CODES.filter((code) => !native.has(code) && !used.has(code));
    assert.deepEqual(unused, [], 'TypeScript codes listed but never raised');
  });

  it('the NBD, config and CLI errors are BlockmirrorErrors with their codes', () => {
    const config = new ConfigError(['volumes[0].capacity: must be a size']);
    assert.ok(config instanceof BlockmirrorError);
    assert.equal(config.code, 'ERR_CONFIG_INVALID');
    assert.deepEqual(config.issues, ['volumes[0].capacity: must be a size']);
    const nbd = nbdError('ERR_NBD_BAD_MAGIC', 'bad magic');
    assert.ok(isBlockmirrorError(nbd, 'ERR_NBD_BAD_MAGIC'));
  });
});
