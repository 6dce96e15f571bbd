import { backend } from '#backend';
import type { HashName } from './backend/types.js';
import { constantTimeEqual } from './compare.js';
import { assertBytes, CryptoError } from './errors.js';

export type { HashName } from './backend/types.js';

/** Output lengths in bytes. */
export const HASH_LENGTH: Readonly<Record<HashName, number>> = {
  'SHA-256': 32,
  'SHA-384': 48,
  'SHA-512': 64,
};

/** @internal Throws unless `hash` is a supported hash name. */
export function assertHash(operation: string, hash: unknown): asserts hash is HashName {
  if (typeof hash !== 'string' || !Object.hasOwn(HASH_LENGTH, hash)) {
    throw new CryptoError(
      'INVALID_ARGUMENT',
      operation,
      '"hash" expected SHA-256, SHA-384 or SHA-512',
    );
  }
}

/**
 * SHA-256 of `data`.
 *
 * @example const digest = await sha256(utf8Encode('abc'));
 */
export async function sha256(data: Uint8Array): Promise<Uint8Array> {
  assertBytes('hash.sha256', 'data', data);
  return backend.digest('SHA-256', data);
}

/**
 * SHA-512 of `data`.
 *
 * @example const digest = await sha512(utf8Encode('abc'));
 */
export async function sha512(data: Uint8Array): Promise<Uint8Array> {
  assertBytes('hash.sha512', 'data', data);
  return backend.digest('SHA-512', data);
}

/**
 * HMAC (RFC 2104) of `data` under `key`.
 *
 * @throws {CryptoError} `INVALID_ARGUMENT` for an unknown hash or an empty key.
 * @example const tag = await hmac('SHA-256', key, data);
 */
export async function hmac(hash: HashName, key: Uint8Array, data: Uint8Array): Promise<Uint8Array> {
  const op = 'hash.hmac';
  assertHash(op, hash);
  assertBytes(op, 'key', key);
  assertBytes(op, 'data', data);
  if (key.length === 0) throw new CryptoError('INVALID_ARGUMENT', op, '"key" must not be empty');
  return backend.hmac(hash, key, data);
}

/**
 * Checks an HMAC in constant time. Returns false (never throws) for a wrong or truncated `mac`.
 *
 * @example if (!(await hmacVerify('SHA-256', key, data, tag))) reject();
 */
export async function hmacVerify(
  hash: HashName,
  key: Uint8Array,
  data: Uint8Array,
  mac: Uint8Array,
): Promise<boolean> {
  assertBytes('hash.hmacVerify', 'mac', mac);
  return constantTimeEqual(await hmac(hash, key, data), mac);
}
