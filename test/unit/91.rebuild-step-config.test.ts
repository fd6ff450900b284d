// The controller's `rebuildStepBytes` config key (docs/raid.md): parsed as a size, range-checked,
// left out of the normalized config at its default, and handed to the controller's sparing options.
import * as assert from 'node:assert/strict';

import pino from 'pino';

import { ConfigError, validateConfig } from '../../src/cli/config';
import type { ControllerConfig } from '../../src/cli/config-schema';
import { controllerOptionsOf } from '../../src/cli/serve';

function controllerWith(extra: Record<string, unknown>): ControllerConfig {
  return validateConfig({ controllers: [{ id: 'a', volumes: [{ name: 'v', capacity: 4096, backing: 'shared' }], ...extra }] }).controllers[0]!;
}

describe('config: rebuildStepBytes', () => {
  it('accepts a size string and hands it to the controller as raid.rebuildStepBytes', () => {
    const controller = controllerWith({ rebuildStepBytes: '64KiB' });
    assert.equal(controller.rebuildStepBytes, 65536);
    const options = controllerOptionsOf(controller, 0, pino({ level: 'silent' }));
    assert.deepEqual(options.raid, { rebuildStepBytes: 65536 });
  });

  it('is absent at its default and the controller keeps its own default', () => {
    const controller = controllerWith({});
    assert.equal(controller.rebuildStepBytes, undefined);
    assert.equal(controllerOptionsOf(controller, 0, pino({ level: 'silent' })).raid, undefined);
  });

  it('rejects values outside 512 B .. 64 MiB', () => {
    for (const bad of [0, 511, 64 * 1024 * 1024 + 1, 'lots']) {
      assert.throws(() => controllerWith({ rebuildStepBytes: bad }),
        (error: unknown) => error instanceof ConfigError && error.issues.some((issue) => issue.startsWith('controllers[0].rebuildStepBytes: ')));
    }
  });
});
