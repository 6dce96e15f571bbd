import { backend } from '#backend';
import type { AeadAlgorithm, KeyHandle } from './backend/types.js';
import { utf8Encode } from './encoding.js';
import { assertBytes, CryptoError } from './errors.js';

/** The AEAD suites of the envelope and stream formats (spec/envelope-v1.md §2). */
export type AeadSuite = 'AES-256-GCM' | 'XChaCha20-Poly1305';

/** Key ids name keys, they are not data (spec/envelope-v1.md §1). */
export const MAX_KEY_ID_LENGTH = 64;
export const AEAD_KEY_LENGTH = 32;

/** @internal Suite table: wire id, back-end algorithm, nonce length. */
export const SUITES: Readonly<
  Record<AeadSuite, { id: number; algorithm: AeadAlgorithm; nonceLength: number }>
> = {
  'AES-256-GCM': { id: 0x01, algorithm: 'AES-GCM', nonceLength: 12 },
  'XChaCha20-Poly1305': { id: 0x02, algorithm: 'XChaCha20-Poly1305', nonceLength: 24 },
};

/**
 * A symmetric key prepared for one AEAD suite, with the id written into what it seals. The key
 * bytes stay inside; the object holds the platform's prepared key so that repeated use costs
 * no import.
 */
export interface AeadKey {
  readonly suite: AeadSuite;
  /** Key id (0 to 64 bytes), written in every envelope and stream header. */
  readonly id: Uint8Array;
}

/** @internal */
export interface AeadKeyMaterial {
  readonly bytes: Uint8Array;
  readonly handle: KeyHandle;
  readonly suiteId: number;
  readonly nonceLength: number;
}

const material = new WeakMap<AeadKey, AeadKeyMaterial>();

export interface ImportAeadKeyOptions {
  /** Default `AES-256-GCM`. */
  suite?: AeadSuite;
  /** Key id written into every envelope; a string is UTF-8 encoded. Default empty. */
  id?: Uint8Array | string;
}

/**
 * Prepares 32 secret bytes as an {@link AeadKey}. Import once and reuse the key object: it caches
 * the platform's key (KeyObject or CryptoKey).
 *
 * @throws {CryptoError} `INVALID_ARGUMENT` for a key that is not 32 bytes, an unknown suite or an id
 *   over 64 bytes.
 * @example
 * const key = await importAeadKey(generateAeadKey(), { id: 'k1' });
 */
export async function importAeadKey(
  bytes: Uint8Array,
  options: ImportAeadKeyOptions = {},
): Promise<AeadKey> {
  const op = 'aead.importKey';
  assertBytes(op, 'bytes', bytes, AEAD_KEY_LENGTH);
  const suite = options.suite ?? 'AES-256-GCM';
  const params = Object.hasOwn(SUITES, suite) ? SUITES[suite] : undefined;
  if (!params)
    throw new CryptoError(
      'INVALID_ARGUMENT',
      op,
      '"suite" expected AES-256-GCM or XChaCha20-Poly1305',
    );
  const id =
    typeof options.id === 'string'
      ? utf8Encode(options.id)
      : (options.id ?? new Uint8Array(0)).slice();
  assertBytes(op, 'id', id);
  if (id.length > MAX_KEY_ID_LENGTH) {
    throw new CryptoError(
      'INVALID_ARGUMENT',
      op,
      `"id" expected at most ${MAX_KEY_ID_LENGTH} bytes, got ${id.length}`,
    );
  }
  const copy = bytes.slice();
  const handle = await backend.aeadKey(params.algorithm, copy);
  const key: AeadKey = Object.freeze({ suite, id });
  material.set(key, { bytes: copy, handle, suiteId: params.id, nonceLength: params.nonceLength });
  return key;
}

/**
 * Returns 32 fresh random bytes for {@link importAeadKey}.
 *
 * @example const raw = generateAeadKey(); // store it wrapped, never in the clear
 */
export function generateAeadKey(): Uint8Array {
  return backend.randomBytes(AEAD_KEY_LENGTH);
}

/** @internal The prepared key behind an {@link AeadKey}. */
export function keyMaterial(operation: string, key: AeadKey): AeadKeyMaterial {
  const m = typeof key === 'object' && key !== null ? material.get(key) : undefined;
  if (!m)
    throw new CryptoError('INVALID_ARGUMENT', operation, '"key" expected a key from importAeadKey');
  return m;
}
