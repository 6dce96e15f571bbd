import { backend } from '#backend';
import type { KeyHandle } from './backend/types.js';
import { assertBytes, CryptoError } from './errors.js';

// Coffer's one Ed25519 verification policy ("strict"), applied before every back end's
// cofactorless check so that node:crypto, WebCrypto and @noble reach the same verdict:
//   - signature is 64 bytes, public key 32 bytes;
//   - S < L (no malleable signatures, RFC 8032 §5.1.7);
//   - A and R canonically encoded (y < p);
//   - A and R not of small order;
//   - the cofactorless equation [S]B = R + [k]A.
// This is libsodium's policy (and RFC 8032's, plus the small-order rejection); the test suite
// checks all 914 CCTV edge cases against libsodium. See README "Ed25519 verification policy".

export const ED25519_PUBLIC_KEY_LENGTH = 32;
export const ED25519_SECRET_KEY_LENGTH = 32;
export const ED25519_SIGNATURE_LENGTH = 64;

/** A private signing key prepared for repeated use. */
export interface SigningKey {
  readonly publicKey: Uint8Array;
}

/** A public key that passed the policy checks, prepared for repeated verification. */
export interface VerifyingKey {
  readonly publicKey: Uint8Array;
}

// One map per kind: the two interfaces have the same shape, so only the map a key is in says
// what it is. A verifying key passed to sign (or the other way round) is INVALID_ARGUMENT on
// every back end, instead of a back end signing with the public key as seed.
const signingHandles = new WeakMap<SigningKey, KeyHandle>();
const verifyingHandles = new WeakMap<VerifyingKey, KeyHandle>();
/** Verifications under way in {@link verify} (for its thread-pool choice). */
let started = 0;

/**
 * Generates an Ed25519 key pair. Store `secretKey` (the 32-byte RFC 8032 seed) encrypted.
 *
 * @example const { secretKey, publicKey } = await generateSigningKeyPair();
 */
export async function generateSigningKeyPair(): Promise<{
  secretKey: Uint8Array;
  publicKey: Uint8Array;
}> {
  const secretKey = backend.randomBytes(ED25519_SECRET_KEY_LENGTH);
  const { publicKey } = await backend.ed25519PrivateKey(secretKey);
  return { secretKey, publicKey };
}

/**
 * Prepares an Ed25519 secret key (32-byte seed) for signing.
 *
 * @throws {CryptoError} `INVALID_ARGUMENT` when `secretKey` is not 32 bytes.
 * @example const key = await importSigningKey(secretKey); const sig = await sign(key, message);
 */
export async function importSigningKey(secretKey: Uint8Array): Promise<SigningKey> {
  assertBytes('signature.importSigningKey', 'secretKey', secretKey, ED25519_SECRET_KEY_LENGTH);
  const { handle, publicKey } = await backend.ed25519PrivateKey(secretKey);
  const key: SigningKey = Object.freeze({ publicKey });
  signingHandles.set(key, handle);
  return key;
}

/**
 * Signs `message` with Ed25519 (RFC 8032, deterministic).
 *
 * @throws {CryptoError} `INVALID_ARGUMENT` when `key` is not from {@link importSigningKey}.
 * @example const signature = await sign(key, utf8Encode('hello'));
 */
export async function sign(key: SigningKey, message: Uint8Array): Promise<Uint8Array> {
  const op = 'signature.sign';
  assertBytes(op, 'message', message);
  const handle = typeof key === 'object' && key !== null ? signingHandles.get(key) : undefined;
  if (!handle)
    throw new CryptoError('INVALID_ARGUMENT', op, '"key" expected a key from importSigningKey');
  return backend.ed25519Sign(handle, message);
}

/**
 * Checks an Ed25519 public key against Coffer's policy and prepares it for verification.
 *
 * @throws {CryptoError} `INVALID_KEY` for a key that is not 32 bytes, not canonically encoded, or
 *   of small order.
 * @example const peer = await importVerifyingKey(publicKeyBytes);
 */
export async function importVerifyingKey(publicKey: Uint8Array): Promise<VerifyingKey> {
  const op = 'signature.importVerifyingKey';
  assertBytes(op, 'publicKey', publicKey);
  const handle = await verifyingHandle(publicKey);
  if (!handle) throw new CryptoError('INVALID_KEY', op, 'not a valid ed25519 public key');
  const key: VerifyingKey = Object.freeze({ publicKey: publicKey.slice() });
  verifyingHandles.set(key, handle);
  return key;
}

/**
 * Verifies an Ed25519 signature under Coffer's strict policy. Returns false for any invalid
 * signature, malformed input or rejected key; it never throws for what an attacker controls.
 *
 * @throws {CryptoError} `INVALID_ARGUMENT` only for caller mistakes (arguments of the wrong type).
 * @example if (await verify(peerKey, message, signature)) accept();
 */
export async function verify(
  key: VerifyingKey | Uint8Array,
  message: Uint8Array,
  signature: Uint8Array,
): Promise<boolean> {
  const op = 'signature.verify';
  assertBytes(op, 'message', message);
  assertBytes(op, 'signature', signature);
  let handle: KeyHandle | undefined;
  if (key instanceof Uint8Array) handle = await verifyingHandle(key);
  else {
    handle = typeof key === 'object' && key !== null ? verifyingHandles.get(key) : undefined;
    if (!handle)
      throw new CryptoError(
        'INVALID_ARGUMENT',
        op,
        '"key" expected a Uint8Array or a key from importVerifyingKey',
      );
  }
  if (!handle || signature.length !== ED25519_SIGNATURE_LENGTH) return false;
  if (!scalarIsCanonical(signature.subarray(32)) || !pointIsAcceptable(signature.subarray(0, 32)))
    return false;
  if (!backend.ed25519VerifyInPool) return backend.ed25519Verify(handle, message, signature);
  // Verifications started together (a ratchet tree's thousand leaf signatures, launched without
  // awaiting each other) have all counted themselves here by the time the first resumes, so they
  // go to the thread pool and use every core; a lone one runs inline as it always did.
  started++;
  try {
    await undefined;
    return started > 1
      ? await backend.ed25519VerifyInPool(handle, message, signature)
      : backend.ed25519Verify(handle, message, signature);
  } finally {
    started--;
  }
}

async function verifyingHandle(publicKey: Uint8Array): Promise<KeyHandle | undefined> {
  if (publicKey.length !== ED25519_PUBLIC_KEY_LENGTH || !pointIsAcceptable(publicKey))
    return undefined;
  return backend.ed25519PublicKey(publicKey);
}

// L = 2^252 + 27742317777372353535851937790883648493, little-endian.
const L = Uint8Array.from([
  0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
]);

/** @internal S < L, comparing little-endian bytes from the most significant end. */
export function scalarIsCanonical(s: Uint8Array): boolean {
  for (let i = 31; i >= 0; i--) {
    if (s[i]! < L[i]!) return true;
    if (s[i]! > L[i]!) return false;
  }
  return false; // S = L
}

// The y-coordinates of the eight points of small order (1, 2, 4 and 8), little-endian. A test
// derives them again from @noble/curves' ED25519_TORSION_SUBGROUP.
const SMALL_ORDER_Y = [
  '0000000000000000000000000000000000000000000000000000000000000000',
  '0100000000000000000000000000000000000000000000000000000000000000',
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05',
  'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a',
].map((h) => Uint8Array.from(h.match(/../g)!, (b) => Number.parseInt(b, 16)));

/** @internal A point encoding is canonical (y < p) and not of small order, whatever its sign bit. */
export function pointIsAcceptable(encoded: Uint8Array): boolean {
  const top = encoded[31]! & 0x7f;
  // y >= p = 2^255 - 19 means bytes 1..30 are 0xff, byte 31 is 0x7f and byte 0 >= 0xed.
  let allOnes = top === 0x7f && encoded[0]! >= 0xed;
  for (let i = 1; allOnes && i < 31; i++) allOnes = encoded[i] === 0xff;
  if (allOnes) return false;
  return !SMALL_ORDER_Y.some((y) => {
    if ((y[31]! & 0x7f) !== top) return false;
    for (let i = 0; i < 31; i++) if (y[i] !== encoded[i]) return false;
    return true;
  });
}
