import { backend } from '#backend';
import type { AeadAlgorithm, KeyHandle } from './backend/types.js';
import { assertBytes, CryptoError, decryptionFailed } from './errors.js';

// A low-level AEAD with caller-chosen nonces, for protocol implementations that fix their own
// nonce schedule (MLS derives a fresh key and nonce per message, RFC 9420 §9.1; HPKE XORs a
// sequence number into its base nonce, RFC 9180 §5.2). Coffer's own formats never use it: they
// seal through encrypt()/the streams, which generate nonces inside. Reusing a (key, nonce) pair
// here breaks AES-GCM and ChaCha20-Poly1305 completely; that is the caller's protocol's job.

/** The raw AEADs: AES-GCM with 128- or 256-bit keys and ChaCha20-Poly1305, all with 96-bit nonces. */
export type RawAeadAlgorithm = 'AES-128-GCM' | 'AES-256-GCM' | 'ChaCha20-Poly1305';

/** Every raw AEAD takes 12-byte nonces and appends a 16-byte tag. */
export const RAW_AEAD_NONCE_LENGTH = 12;
export const RAW_AEAD_TAG_LENGTH = 16;

const ALGORITHMS: Readonly<
  Record<RawAeadAlgorithm, { backend: AeadAlgorithm; keyLength: number }>
> = {
  'AES-128-GCM': { backend: 'AES-GCM', keyLength: 16 },
  'AES-256-GCM': { backend: 'AES-GCM', keyLength: 32 },
  'ChaCha20-Poly1305': { backend: 'ChaCha20-Poly1305', keyLength: 32 },
};

/**
 * An AEAD key prepared once (KeyObject, CryptoKey or bytes) for sealing and opening with nonces
 * the caller supplies. For protocol implementations (MLS, HPKE) only.
 */
export interface RawAead {
  readonly algorithm: RawAeadAlgorithm;
  /** Returns ciphertext || 16-byte tag. The nonce must never repeat under this key. */
  seal(nonce: Uint8Array, plaintext: Uint8Array, aad?: Uint8Array): Promise<Uint8Array>;
  /** Returns the plaintext; throws `DECRYPTION_FAILED` for any wrong tag, nonce, aad or length. */
  open(nonce: Uint8Array, sealed: Uint8Array, aad?: Uint8Array): Promise<Uint8Array>;
}

/**
 * Prepares `key` for raw AEAD with caller-chosen 12-byte nonces: **for protocol implementations
 * that fix their own nonces** (MLS, HPKE). Application code wants {@link encrypt}, which makes
 * nonces itself.
 *
 * @throws {CryptoError} `INVALID_ARGUMENT` for an unknown algorithm or a key of the wrong length;
 *   `seal`/`open` throw `INVALID_ARGUMENT` for a nonce that is not 12 bytes, and `open` throws
 *   `DECRYPTION_FAILED` for a ciphertext that does not verify.
 * @example
 * const aead = await createRawAead(messageKey, 'AES-128-GCM');
 * const sealed = await aead.seal(messageNonce, plaintext, aad);
 */
export async function createRawAead(
  key: Uint8Array,
  algorithm: RawAeadAlgorithm,
): Promise<RawAead> {
  const op = 'rawAead.create';
  const params =
    typeof algorithm === 'string' && Object.hasOwn(ALGORITHMS, algorithm)
      ? ALGORITHMS[algorithm]
      : undefined;
  if (!params) {
    throw new CryptoError(
      'INVALID_ARGUMENT',
      op,
      '"algorithm" expected AES-128-GCM, AES-256-GCM or ChaCha20-Poly1305',
    );
  }
  assertBytes(op, 'key', key, params.keyLength);
  // Raw AEAD keys (MLS message keys, HPKE contexts) seal or open once or a few times.
  const handle: KeyHandle = await backend.aeadKey(params.backend, key.slice(), true);
  return Object.freeze({
    algorithm,
    async seal(nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array = EMPTY) {
      const sop = 'rawAead.seal';
      assertBytes(sop, 'nonce', nonce, RAW_AEAD_NONCE_LENGTH);
      assertBytes(sop, 'plaintext', plaintext);
      assertBytes(sop, 'aad', aad);
      return backend.aeadSeal(handle, nonce, plaintext, aad);
    },
    async open(nonce: Uint8Array, sealed: Uint8Array, aad: Uint8Array = EMPTY) {
      const oop = 'rawAead.open';
      assertBytes(oop, 'nonce', nonce, RAW_AEAD_NONCE_LENGTH);
      assertBytes(oop, 'sealed', sealed);
      assertBytes(oop, 'aad', aad);
      if (sealed.length < RAW_AEAD_TAG_LENGTH) throw decryptionFailed(oop);
      const opened = await backend.aeadOpen(handle, nonce, sealed, aad);
      if (!opened) throw decryptionFailed(oop);
      return opened;
    },
  });
}

const EMPTY = new Uint8Array(0);
