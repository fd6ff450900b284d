// Notes on the design
// -------------------
// Unix socket paths for servers (the admin endpoint, NBD listeners): a socket file outlives the
// process that made it when that process is killed, so a new server first removes a *stale* one.
// A path is stale only when it is a socket and nothing answers on it; a live socket is never
// taken over (ERR_CLI_SOCKET_IN_USE) and something that is not a socket is never removed
// (ERR_CLI_SOCKET_PATH). The probe is a connect with a short deadline: a server too busy to
// accept within it counts as live, because removing a live server's socket is the worse mistake.

import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';

import { BlockmirrorError } from '../errors';

/** How long the liveness probe of removeStaleSocket waits for a connect. */
export const SOCKET_PROBE_TIMEOUT_MS = 1000;

/**
 * Removes `socketPath` when it is a socket that nothing answers on (left by a server that died).
 * Does nothing when the path does not exist. Throws BlockmirrorError ERR_CLI_SOCKET_PATH when
 * the path is not a socket, ERR_CLI_SOCKET_IN_USE when a server answers on it.
 */
export async function removeStaleSocket(socketPath: string): Promise<void> {
  let stats: fs.Stats;
  try {
    stats = fs.lstatSync(socketPath);
  } catch {
    return;
  }
  if (!stats.isSocket()) {
    throw new BlockmirrorError('ERR_CLI_SOCKET_PATH', `${socketPath} exists and is not a socket; not removing it`);
  }
  const live = await new Promise<boolean>((resolve) => {
    const probe = net.connect({ path: socketPath });
    const timer = setTimeout(() => {
      probe.destroy();
      resolve(true);
    }, SOCKET_PROBE_TIMEOUT_MS);
    probe.once('connect', () => {
      clearTimeout(timer);
      probe.destroy();
      resolve(true);
    });
    probe.once('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      // Refused: nobody listens. Anything else (EACCES, ...) is not proof of a dead server.
      resolve(error.code !== 'ECONNREFUSED');
    });
  });
  if (live) throw new BlockmirrorError('ERR_CLI_SOCKET_IN_USE', `another server is listening on ${socketPath}`);
  fs.unlinkSync(socketPath);
}

/**
 * Creates the directory of `socketPath` with mode 0700 when it is missing (parents too). An
 * existing directory is left as it is. Throws ERR_CLI_SOCKET_PATH when the parent exists and is
 * not a directory.
 */
export function ensureSocketDirectory(socketPath: string): void {
  const directory = path.dirname(path.resolve(socketPath));
  try {
    fs.mkdirSync(directory, { recursive: true, mode: 0o700 });
  } catch (error) {
    throw new BlockmirrorError('ERR_CLI_SOCKET_PATH',
      `cannot create the directory ${directory} for ${socketPath}: ${(error as Error).message}`, { cause: error });
  }
  if (!fs.statSync(directory).isDirectory()) {
    throw new BlockmirrorError('ERR_CLI_SOCKET_PATH', `${directory} is not a directory`);
  }
}
