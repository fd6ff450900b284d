// Reading a peer's shared secret from a file or an environment variable. The secret is kept as
// bytes and handed to the link only; it is never logged, never in status, never in an error
// message (messages name the file or the variable, not the content).

import * as fs from 'node:fs';

import { BlockmirrorError } from '../errors';

/** Where a secret comes from. */
export interface SecretSource {
  secretFile?: string;
  secretEnv?: string;
}

/** Secrets shorter than this are refused: an HMAC key should not be guessable. */
export const MIN_SECRET_BYTES = 16;
export const MAX_SECRET_BYTES = 4096;

/**
 * The secret of `source`, or undefined when it names none. One trailing newline of a file is
 * dropped (editors add it). Throws ERR_CONTROLLER_SECRET.
 */
export function loadSecret(source: SecretSource, what: string, env: NodeJS.ProcessEnv = process.env): Buffer | undefined {
  let secret: Buffer;
  if (source.secretFile !== undefined) {
    try {
      secret = fs.readFileSync(source.secretFile);
    } catch (error) {
      throw new BlockmirrorError('ERR_CONTROLLER_SECRET',
        `${what}: cannot read secretFile ${source.secretFile}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`);
    }
    if (secret.length > 0 && secret[secret.length - 1] === 0x0a) secret = secret.subarray(0, secret.length - 1);
    if (secret.length > 0 && secret[secret.length - 1] === 0x0d) secret = secret.subarray(0, secret.length - 1);
  } else if (source.secretEnv !== undefined) {
    const value = env[source.secretEnv];
    if (value === undefined) {
      throw new BlockmirrorError('ERR_CONTROLLER_SECRET', `${what}: environment variable ${source.secretEnv} is not set`);
    }
    secret = Buffer.from(value, 'utf8');
  } else {
    return undefined;
  }
  if (secret.length < MIN_SECRET_BYTES || secret.length > MAX_SECRET_BYTES) {
    throw new BlockmirrorError('ERR_CONTROLLER_SECRET',
      `${what}: the secret must be ${MIN_SECRET_BYTES} to ${MAX_SECRET_BYTES} bytes long, got ${secret.length}`);
  }
  return Buffer.from(secret);
}
