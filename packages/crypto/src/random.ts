import { backend } from '#backend';
import { CryptoError } from './errors.js';

/** node:crypto's own limit (2^31 - 1), so that every back end refuses the same lengths. */
const MAX_RANDOM_BYTES = 2 ** 31 - 1;

/**
 * Returns `length` bytes from the platform's cryptographically secure generator.
 *
 * @throws {CryptoError} `INVALID_ARGUMENT` when `length` is not an integer from 0 to
 *   {@link MAX_RANDOM_BYTES}.
 * @example const salt = randomBytes(32);
 */
export function randomBytes(length: number): Uint8Array {
  if (!Number.isSafeInteger(length) || length < 0 || length > MAX_RANDOM_BYTES) {
    throw new CryptoError(
      'INVALID_ARGUMENT',
      'random.randomBytes',
      `"length" expected an integer from 0 to ${MAX_RANDOM_BYTES}`,
    );
  }
  return backend.randomBytes(length);
}

/**
 * Random bytes for **public values only** — nonces, reuse guards, identifiers that are sent in
 * the clear or inside a ciphertext but protect nothing by being unknown to others. On Node they
 * come from a block of CSPRNG output made ahead of use (each byte handed out once, then zeroed
 * in the block), which avoids a generator call per value; never use them for keys, seeds or
 * salts, which {@link randomBytes} draws fresh.
 *
 * @throws {CryptoError} `INVALID_ARGUMENT` when `length` is not an integer from 0 to 64.
 * @example const reuseGuard = randomPublicBytes(4);
 */
export function randomPublicBytes(length: number): Uint8Array {
  if (!Number.isSafeInteger(length) || length < 0 || length > 64) {
    throw new CryptoError(
      'INVALID_ARGUMENT',
      'random.randomPublicBytes',
      '"length" expected an integer from 0 to 64',
    );
  }
  return backend.randomNonce(length);
}
