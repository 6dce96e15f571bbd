import { backend } from '#backend';
import type { KeyHandle } from './backend/types.js';
import { assertBytes, CryptoError } from './errors.js';

export const X25519_KEY_LENGTH = 32;

/** An X25519 private key prepared for repeated key agreement. */
export interface KeyAgreementKey {
  readonly publicKey: Uint8Array;
}

const handles = new WeakMap<KeyAgreementKey, KeyHandle>();

/**
 * Generates an X25519 key pair (RFC 7748). Store `secretKey` encrypted.
 *
 * @example const { secretKey, publicKey } = await generateKeyAgreementKeyPair();
 */
export async function generateKeyAgreementKeyPair(): Promise<{
  secretKey: Uint8Array;
  publicKey: Uint8Array;
}> {
  const secretKey = backend.randomBytes(X25519_KEY_LENGTH);
  const { publicKey } = await backend.x25519PrivateKey(secretKey);
  return { secretKey, publicKey };
}

/**
 * Prepares a 32-byte X25519 secret key for key agreement.
 *
 * @throws {CryptoError} `INVALID_ARGUMENT` when `secretKey` is not 32 bytes.
 * @example const mine = await importKeyAgreementKey(secretKey);
 */
export async function importKeyAgreementKey(secretKey: Uint8Array): Promise<KeyAgreementKey> {
  assertBytes('keyAgreement.importKey', 'secretKey', secretKey, X25519_KEY_LENGTH);
  const { handle, publicKey } = await backend.x25519PrivateKey(secretKey);
  const key: KeyAgreementKey = Object.freeze({ publicKey });
  handles.set(key, handle);
  return key;
}

/**
 * X25519 key agreement (RFC 7748 §5). The result is a raw shared secret: derive keys from it
 * with {@link hkdf}, never use it directly.
 *
 * @throws {CryptoError} `INVALID_KEY` when `peerPublicKey` is not 32 bytes or is a low-order point
 *   (the shared secret would be all zero, RFC 7748 §6.1; RFC 9180 §7.1.4 requires rejecting it).
 * @example const shared = await x25519(mine, theirPublicKey);
 */
export async function x25519(key: KeyAgreementKey, peerPublicKey: Uint8Array): Promise<Uint8Array> {
  const op = 'keyAgreement.x25519';
  assertBytes(op, 'peerPublicKey', peerPublicKey);
  const handle = typeof key === 'object' && key !== null ? handles.get(key) : undefined;
  if (!handle)
    throw new CryptoError(
      'INVALID_ARGUMENT',
      op,
      '"key" expected a key from importKeyAgreementKey',
    );
  if (peerPublicKey.length !== X25519_KEY_LENGTH) {
    throw new CryptoError(
      'INVALID_KEY',
      op,
      `public key expected ${X25519_KEY_LENGTH} bytes, got ${peerPublicKey.length}`,
    );
  }
  const shared = await backend.x25519(handle, peerPublicKey);
  // Every back end's output is checked the same way, in constant time.
  if (!shared || backend.timingSafeEqual(shared, ZERO))
    throw new CryptoError('INVALID_KEY', op, 'low-order public key');
  return shared;
}

const ZERO = new Uint8Array(X25519_KEY_LENGTH);
