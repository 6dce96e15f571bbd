import { backend } from '#backend';
import { assertBytes } from './errors.js';

/**
 * Compares two byte arrays in time that depends only on their length (which is not secret).
 * Use it for MACs, tags, tokens and hashes.
 *
 * @example constantTimeEqual(expectedMac, receivedMac)
 */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  assertBytes('compare.constantTimeEqual', 'a', a);
  assertBytes('compare.constantTimeEqual', 'b', b);
  if (a.length !== b.length) return false;
  return backend.timingSafeEqual(a, b);
}
