import { importSigningKey, randomBytes, type SigningKey, wipe } from '@coffer/crypto';
import { assertBytes } from './errors.js';

/** Ed25519 seeds (RFC 8032 secret keys) are 32 bytes (spec §2). */
export const SEED_LENGTH = 32;
/** Ed25519 public keys are 32 bytes. */
export const PUBLIC_KEY_LENGTH = 32;

/** An Ed25519 key made from a 32-byte seed: the signing key, its public key, and the seed. */
export interface Ed25519KeyPair {
  readonly seed: Uint8Array;
  readonly publicKey: Uint8Array;
  readonly signingKey: SigningKey;
}

/**
 * A new Ed25519 key pair from a fresh random seed: an account's identity key on its first
 * device, or a device signing key (spec §2). Keep `seed` secret; for the identity, it goes into
 * the backup.
 *
 * @example const identity = await generateKeyPair();
 */
export async function generateKeyPair(): Promise<Ed25519KeyPair> {
  // keyPairFromSeed keeps its own copy: this one would otherwise outlive the caller's wipe.
  const seed = randomBytes(SEED_LENGTH);
  try {
    return await keyPairFromSeed(seed);
  } finally {
    wipe(seed);
  }
}

/**
 * The Ed25519 key pair of a 32-byte seed. The returned `seed` is a copy: wipe the argument when
 * you no longer need it.
 *
 * @throws {ProtocolError} `INVALID_ARGUMENT` when `seed` is not 32 bytes.
 * @example const identity = await keyPairFromSeed(secrets.identitySeed);
 */
export async function keyPairFromSeed(seed: Uint8Array): Promise<Ed25519KeyPair> {
  assertBytes('keyPair.fromSeed', 'seed', seed, SEED_LENGTH);
  const copy = seed.slice();
  const signingKey = await importSigningKey(copy);
  return Object.freeze({ seed: copy, publicKey: signingKey.publicKey.slice(), signingKey });
}
