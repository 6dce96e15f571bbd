import { backend } from '#backend';
import { CryptoError } from './errors.js';

/**
 * Returns `length` bytes from the platform's cryptographically secure generator.
 *
 * @throws {CryptoError} `INVALID_ARGUMENT` when `length` is not a non-negative safe integer.
 * @example const salt = randomBytes(32);
 */
export function randomBytes(length: number): Uint8Array {
  if (!Number.isSafeInteger(length) || length < 0) {
    throw new CryptoError(
      'INVALID_ARGUMENT',
      'random.randomBytes',
      '"length" expected a non-negative integer',
    );
  }
  return backend.randomBytes(length);
}
