// The pure-JavaScript back end: @noble/* (audited) for everything, WebCrypto only for random
// bytes. Used where a platform lacks a native algorithm, and run by the whole test suite so the
// fallback is never untested.
import { gcm } from '@noble/ciphers/aes.js';
import { chacha20poly1305, xchacha20poly1305 } from '@noble/ciphers/chacha.js';
import { ed25519, x25519 } from '@noble/curves/ed25519.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { hmac } from '@noble/hashes/hmac.js';
import { sha256, sha384, sha512 } from '@noble/hashes/sha2.js';
import { CryptoError } from '../errors.js';
import { nobleSealInto } from './_noble-seal.js';
import type { AeadAlgorithm, Backend, HashName, KeyHandle } from './types.js';

export const NOBLE_HASH = {
  'SHA-256': sha256,
  'SHA-384': sha384,
  'SHA-512': sha512,
} as const satisfies Record<HashName, unknown>;

const AEAD = {
  'AES-GCM': gcm,
  'ChaCha20-Poly1305': chacha20poly1305,
  'XChaCha20-Poly1305': xchacha20poly1305,
};

type NobleAeadKey = { kind: 'noble-aead'; algorithm: AeadAlgorithm; key: Uint8Array };
type NobleKey = { kind: 'noble-key'; key: Uint8Array };

const Point = ed25519.Point;
const L = Point.Fn.ORDER;

function leToBigint(bytes: Uint8Array): bigint {
  let n = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(bytes[i]!);
  return n;
}

function asHandle<T>(value: T): KeyHandle {
  return value as unknown as KeyHandle;
}

/** True for handles this back end made (the web back end delegates some algorithms here). */
export function isNobleHandle(handle: KeyHandle): boolean {
  const kind = (handle as unknown as { kind?: unknown }).kind;
  return kind === 'noble-aead' || kind === 'noble-key';
}

/**
 * RFC 8032 §5.1.7 verification with the cofactorless equation [S]B = R + [k]A, as OpenSSL,
 * BoringSSL and libsodium check it. (noble's own verify uses the cofactored equation, which
 * accepts more signatures; Coffer applies one policy on every back end, see README.)
 */
export function ed25519VerifyCofactorless(
  publicKey: Uint8Array,
  message: Uint8Array,
  signature: Uint8Array,
): boolean {
  try {
    const r = signature.subarray(0, 32);
    const s = leToBigint(signature.subarray(32, 64));
    if (s >= L) return false;
    const A = Point.fromBytes(publicKey, false);
    const R = Point.fromBytes(r, false);
    const h = sha512.create().update(r).update(publicKey).update(message).digest();
    const k = leToBigint(h) % L;
    return R.add(A.multiplyUnsafe(k)).equals(Point.BASE.multiplyUnsafe(s));
  } catch {
    return false;
  }
}

export const backend: Backend = {
  name: 'noble',
  syncAead: true,

  randomBytes(length) {
    const c = globalThis.crypto;
    if (typeof c?.getRandomValues !== 'function') {
      throw new CryptoError(
        'UNSUPPORTED_RUNTIME',
        'backend.randomBytes',
        'no secure random source',
      );
    }
    const out = new Uint8Array(length);
    // getRandomValues fills at most 65,536 bytes per call.
    for (let i = 0; i < length; i += 65536) c.getRandomValues(out.subarray(i, i + 65536));
    return out;
  },

  randomNonce(length) {
    return backend.randomBytes(length);
  },

  timingSafeEqual(a, b) {
    let diff = a.length ^ b.length;
    for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
    return diff === 0;
  },

  digest(hash, data) {
    return NOBLE_HASH[hash](data);
  },

  hmac(hash, key, data) {
    return hmac(NOBLE_HASH[hash], key, data);
  },

  hkdf(hash, ikm, salt, info, length) {
    return hkdf(NOBLE_HASH[hash], ikm, salt, info, length);
  },

  aeadKey(algorithm, key) {
    return asHandle<NobleAeadKey>({ kind: 'noble-aead', algorithm, key: key.slice() });
  },

  aeadSeal(handle, nonce, plaintext, aad, prefix = 0) {
    const k = handle as unknown as NobleAeadKey;
    return nobleSealInto(
      AEAD[k.algorithm](k.key, nonce, aad),
      plaintext,
      prefix,
      k.algorithm !== 'AES-GCM',
    );
  },

  aeadOpen(handle, nonce, sealed, aad) {
    const k = handle as unknown as NobleAeadKey;
    try {
      return AEAD[k.algorithm](k.key, nonce, aad).decrypt(sealed);
    } catch {
      return undefined;
    }
  },

  ed25519PrivateKey(seed) {
    return {
      handle: asHandle<NobleKey>({ kind: 'noble-key', key: seed.slice() }),
      publicKey: ed25519.getPublicKey(seed),
    };
  },

  ed25519Sign(privateKey, message) {
    return ed25519.sign(message, (privateKey as unknown as NobleKey).key);
  },

  ed25519PublicKey(publicKey) {
    return asHandle<NobleKey>({ kind: 'noble-key', key: publicKey.slice() });
  },

  ed25519Verify(publicKey, message, signature) {
    return ed25519VerifyCofactorless((publicKey as unknown as NobleKey).key, message, signature);
  },

  x25519PrivateKey(secret) {
    return {
      handle: asHandle<NobleKey>({ kind: 'noble-key', key: secret.slice() }),
      publicKey: x25519.getPublicKey(secret),
    };
  },

  x25519(privateKey, publicKey) {
    try {
      return x25519.getSharedSecret((privateKey as unknown as NobleKey).key, publicKey);
    } catch {
      // noble throws on an all-zero result; callers reject that case identically.
      return undefined;
    }
  },
};
