// Two controllers in this process over a real loopback TCP link (the `blockmirror bench`
// configs: controller bench-a's volumes `async` and `sync` mirrored to bench-b), and an NBD
// server over real TCP exporting bench-a's PairVolumes under the mode's name. Integration 88
// (receive into the store on a pair's primary, the event loop) and 89 (native lanes on an async
// primary) share it: set up in a mocha `before`, torn down in `after`, with the checks both make.
import pino from 'pino';

import { hostOf, pairBenchConfigs } from '../../src/bench/pair-bench';
import type { ControllerHost } from '../../src/controller/host';
import { NbdServer, type NbdServerOptions } from '../../src/nbd';
import type { PairVolume } from '../../src/replication/pair-volume';
import type { Volume } from '../../src/storage/volume';
import { waitFor } from './tools';

type HostController = NonNullable<ControllerHost['controllers'][number]>;

/** The two hosts, the server and the checks; valid between its before and after hooks. */
export interface PairExports {
  primary(): HostController;
  secondary(): HostController;
  server(): NbdServer;
  port(): number;
  /** The export's volume on the primary (the NBD server's object). */
  facade(mode: string): PairVolume;
  /** Both sides hold the same bytes (whole volumes). */
  identical(mode: string): boolean;
  /** The pair is mirroring with nothing left to ship. */
  caughtUp(mode: string): boolean;
}

/**
 * Registers mocha before/after hooks that build the world of `sizeBytes` volumes, named for
 * `tag` in logs; `server` adds NbdServer options (nativeLanes, ...).
 */
export function pairExportsWorld(tag: string, sizeBytes: number, server: Partial<NbdServerOptions> = {}): PairExports {
  const modes = ['async', 'sync'] as const;
  let primaryHost: ControllerHost | undefined;
  let secondaryHost: ControllerHost | undefined;
  let nbd: NbdServer | undefined;
  let port = 0;
  const primary = (): HostController => (primaryHost as ControllerHost).controllers[0] as HostController;
  const secondary = (): HostController => (secondaryHost as ControllerHost).controllers[0] as HostController;
  const whole = (volume: Volume): Buffer => {
    const bytes = Buffer.alloc(sizeBytes);
    volume.read(0, bytes);
    return bytes;
  };
  const world: PairExports = {
    primary,
    secondary,
    server: () => nbd as NbdServer,
    port: () => port,
    facade: (mode) => primary().exportVolume(mode) as PairVolume,
    identical: (mode) => whole(primary().volume(mode) as Volume).equals(whole(secondary().volume(mode) as Volume)),
    caughtUp: (mode) => {
      const pair = primary().pairs?.primary(mode);
      return pair?.currentState === 'mirroring' && (pair.status().lag as { records: number }).records === 0;
    },
  };

  before(async () => {
    delete process.env.BLOCKMIRROR_NBD_RECEIVE;
    const logger = pino({ level: 'silent' });
    const configs = pairBenchConfigs([...modes], sizeBytes);
    secondaryHost = hostOf(configs.secondary as Record<string, unknown>, `${tag} secondary`, logger);
    await secondaryHost.start();
    primaryHost = hostOf(pairBenchConfigs([...modes], sizeBytes, secondary().replicationAddress?.port).primary, `${tag} primary`, logger);
    await primaryHost.start();
    await waitFor(() => modes.every((mode) => primary().pairs?.primary(mode).currentState === 'mirroring'), 'both pairs mirroring', 30_000);
    nbd = new NbdServer({
      exports: modes.map((mode) => ({ name: mode, volume: world.facade(mode) })),
      listen: [{ host: '127.0.0.1', port: 0 }],
      ...server,
    });
    await nbd.listen();
    port = nbd.addresses().find((address) => address.transport === 'tcp')?.port as number;
  });

  after(async () => {
    await nbd?.close();
    await primaryHost?.close();
    await secondaryHost?.close();
  });

  return world;
}
