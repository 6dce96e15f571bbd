// The Node back end: node:crypto natives, synchronous, with keys prepared once as KeyObjects.
// XChaCha20-Poly1305 has no native implementation in Node and comes from @noble/ciphers; Ed25519
// goes through libsodium where sodium-native's binary loads (_sodium.ts says why).
import * as nc from 'node:crypto';
import { startupSnapshot } from 'node:v8';
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js';
import { nobleSealInto } from './_noble-seal.js';
import { type Sodium, sodium } from './_sodium.js';
import type { AeadAlgorithm, Backend, HashName, KeyHandle, PrivateKey } from './types.js';

const HASH: Record<HashName, string> = {
  'SHA-256': 'sha256',
  'SHA-384': 'sha384',
  'SHA-512': 'sha512',
};
const TAG = 16;
// AES-GCM input is encrypted in pieces of this size, each copied into the output while still in
// cache: sealing 1 MiB is ~5-8% faster than one update() whose whole output is then copied.
const SEAL_PIECE = 64 * 1024;

// DER prefixes that wrap a raw 32-byte private key as PKCS#8 (RFC 8410).
const ED25519_PKCS8 = hex('302e020100300506032b657004220420');
const X25519_PKCS8 = hex('302e020100300506032b656e04220420');

type AeadKey = { algorithm: AeadAlgorithm; cipher: string; key: nc.KeyObject | Uint8Array };

/** Views a Buffer as a plain Uint8Array (node:crypto outputs own their ArrayBuffer). */
function u8(b: Buffer | ArrayBuffer): Uint8Array {
  return b instanceof ArrayBuffer
    ? new Uint8Array(b)
    : new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

function hex(s: string): Uint8Array {
  return Uint8Array.from(Buffer.from(s, 'hex'));
}

function der(prefix: Uint8Array, key: Uint8Array): Buffer {
  const out = Buffer.allocUnsafeSlow(prefix.length + key.length);
  out.set(prefix, 0);
  out.set(key, prefix.length);
  return out;
}

/**
 * A raw 32-byte private key (Ed25519 seed or X25519 scalar) as a KeyObject, with its public key.
 * Imported as a JWK, which wraps the bytes directly (EVP_PKEY_new_raw_private_key): a PKCS#8 DER
 * import goes through OpenSSL 3's decoder and cost ~10x more (~400 us against ~40 us on Node 20),
 * which MLS pays on every derived HPKE key. The price is that the key passes through a base64url
 * string, which cannot be wiped (SECURITY.md, Erasure). Node reads only `d` of a private OKP JWK
 * (`x` must be a string; the public key is derived from `d`); should a runtime refuse the empty
 * `x`, the DER import is taken instead. The public key comes from the key, never from `x`.
 */
function privateKey(crv: 'Ed25519' | 'X25519', raw: Uint8Array): PrivateKey {
  let key: nc.KeyObject;
  try {
    const d = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('base64url');
    key = nc.createPrivateKey({ key: { kty: 'OKP', crv, d, x: '' }, format: 'jwk' });
  } catch {
    const pkcs8 = der(crv === 'Ed25519' ? ED25519_PKCS8 : X25519_PKCS8, raw);
    key = nc.createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' });
    pkcs8.fill(0);
  }
  const { x } = nc.createPublicKey(key).export({ format: 'jwk' });
  if (typeof x !== 'string') throw new Error('node:crypto exported no public key');
  return { handle: asHandle(key), publicKey: u8(Buffer.from(x, 'base64url')).slice() };
}

/**
 * A raw 32-byte public key as a KeyObject. Imported as a JWK, which wraps the bytes directly
 * (EVP_PKEY_new_raw_public_key); an SPKI import goes through OpenSSL 3's DER decoder and made
 * each x25519() call ~3x slower. Both accept the same keys: any 32 bytes.
 */
function rawPublicKey(crv: 'Ed25519' | 'X25519', key: Uint8Array): nc.KeyObject {
  const x = Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('base64url');
  return nc.createPublicKey({ key: { kty: 'OKP', crv, x }, format: 'jwk' });
}

// Nonces (public values, and only nonces) are served from a block of OpenSSL CSPRNG output, as
// node:crypto's own randomUUID() does: each randomBytes() call costs ~1.5 us of job setup, as
// much as sealing a small envelope, and one 4 KiB block serves ~340 AES-GCM nonces. Every byte is
// handed out once and zeroed in the block. Keys, salts and the public randomBytes() always come
// straight from OpenSSL, so no secret is ever generated ahead of use.
const RANDOM_BLOCK_LENGTH = 4096;
const randomBlock = new Uint8Array(RANDOM_BLOCK_LENGTH);
let randomOffset = RANDOM_BLOCK_LENGTH;

function pooledRandomBytes(length: number): Uint8Array {
  if (randomOffset + length > RANDOM_BLOCK_LENGTH) {
    nc.randomFillSync(randomBlock);
    randomOffset = 0;
  }
  const end = randomOffset + length;
  const out = randomBlock.slice(randomOffset, end);
  randomBlock.fill(0, randomOffset, end);
  randomOffset = end;
  return out;
}

// A startup snapshot must not carry unused random bytes into every process started from it.
if (startupSnapshot.isBuildingSnapshot()) {
  startupSnapshot.addSerializeCallback(() => {
    randomBlock.fill(0);
    randomOffset = RANDOM_BLOCK_LENGTH;
  });
}

function asHandle<T>(value: T): KeyHandle {
  return value as unknown as KeyHandle;
}

/** Which implementation signs and verifies Ed25519 here (tests and benchmarks report it). */
export const ed25519Implementation: 'libsodium' | 'node:crypto' = sodium
  ? 'libsodium'
  : 'node:crypto';

export type Ed25519 = Pick<
  Backend,
  'ed25519PrivateKey' | 'ed25519Sign' | 'ed25519PublicKey' | 'ed25519Verify' | 'ed25519VerifyInPool'
>;

/**
 * @internal Ed25519 on node:crypto (OpenSSL): keys are KeyObjects; a batch verifies on libuv's
 * pool. Exported for test/node/ed25519.test.ts, which compares it with {@link sodiumEd25519}.
 */
export const opensslEd25519: Ed25519 = {
  ed25519PrivateKey(seed) {
    return privateKey('Ed25519', seed);
  },

  ed25519Sign(privateKey, message) {
    return u8(nc.sign(null, message, privateKey as unknown as nc.KeyObject));
  },

  ed25519PublicKey(publicKey) {
    try {
      return asHandle(rawPublicKey('Ed25519', publicKey));
    } catch {
      return undefined;
    }
  },

  ed25519Verify(publicKey, message, signature) {
    try {
      return nc.verify(null, message, publicKey as unknown as nc.KeyObject, signature);
    } catch {
      return false;
    }
  },

  ed25519VerifyInPool(publicKey, message, signature) {
    return verifyInPool(publicKey as unknown as nc.KeyObject, message, signature);
  },
};

/** Ed25519 verification on libuv's thread pool (node:crypto's asynchronous form). */
function verifyInPool(
  key: nc.KeyObject,
  message: Uint8Array,
  signature: Uint8Array,
): Promise<boolean> {
  return new Promise((resolve) => {
    try {
      nc.verify(null, message, key, signature, (err, ok) => resolve(!err && ok));
    } catch {
      resolve(false);
    }
  });
}

/**
 * @internal Ed25519 on libsodium. A signing key is libsodium's 64-byte secret key (seed, then public key)
 * in memory of its own, never pooled. libsodium's own checks (canonical S, A and R; no
 * small-order A or R) are Coffer's policy, which src/signature.ts has already applied.
 *
 * libsodium has no asynchronous verification, so a batch (verifications started together, such
 * as a ratchet tree's leaf signatures) still goes to libuv's pool through node:crypto, on a
 * KeyObject made the first time a key is verified that way: on two cores both take the same time
 * for a 1,001-member join (~105 ms here), and with more cores the pool wins and the event loop
 * stays free. The verdicts agree (test/node-ed25519.test.ts).
 */
export function sodiumEd25519(sodium: Sodium): Ed25519 {
  type Verifying = { readonly raw: Uint8Array; keyObject?: nc.KeyObject };
  const verifying = (handle: KeyHandle) => handle as unknown as Verifying;
  return {
    ed25519PrivateKey(seed) {
      const publicKey = new Uint8Array(32);
      const secretKey = new Uint8Array(64);
      sodium.crypto_sign_seed_keypair(publicKey, secretKey, seed);
      return { handle: asHandle(secretKey), publicKey };
    },

    ed25519Sign(secretKey, message) {
      const signature = new Uint8Array(64);
      sodium.crypto_sign_detached(signature, message, secretKey as unknown as Uint8Array);
      return signature;
    },

    ed25519PublicKey(publicKey) {
      const handle: Verifying = { raw: publicKey.slice() };
      return asHandle(handle);
    },

    ed25519Verify(publicKey, message, signature) {
      try {
        return sodium.crypto_sign_verify_detached(signature, message, verifying(publicKey).raw);
      } catch {
        return false;
      }
    },

    ed25519VerifyInPool(publicKey, message, signature) {
      const key = verifying(publicKey);
      try {
        key.keyObject ??= rawPublicKey('Ed25519', key.raw);
      } catch {
        return Promise.resolve(false);
      }
      return verifyInPool(key.keyObject, message, signature);
    },
  };
}

export const backend: Backend = {
  name: 'node',
  syncAead: true,

  randomBytes(length) {
    return u8(nc.randomBytes(length));
  },

  randomNonce(length) {
    return pooledRandomBytes(length);
  },

  timingSafeEqual(a, b) {
    return nc.timingSafeEqual(a, b);
  },

  digest(hash, data) {
    return u8(nc.hash(HASH[hash], data, 'buffer') as unknown as Buffer);
  },

  hmac(hash, key, data) {
    return u8(nc.createHmac(HASH[hash], key).update(data).digest());
  },

  hkdf(hash, ikm, salt, info, length) {
    return u8(nc.hkdfSync(HASH[hash], ikm, salt, info, length));
  },

  aeadKey(algorithm, key, shortLived = false) {
    if (algorithm === 'XChaCha20-Poly1305')
      return asHandle<AeadKey>({ algorithm, cipher: '', key: key.slice() });
    const cipher = algorithm === 'AES-GCM' ? `aes-${key.length * 8}-gcm` : 'chacha20-poly1305';
    // A KeyObject keeps a long-lived key out of the JavaScript heap; for a key used once (an MLS
    // message key, already in the heap where it was derived) making one cost more than the
    // sealing itself (measured 1.15–1.27× on the 1:1 message loop), so its bytes are kept.
    return asHandle<AeadKey>({
      algorithm,
      cipher,
      key: shortLived ? key.slice() : nc.createSecretKey(key),
    });
  },

  aeadSeal(handle, nonce, plaintext, aad, prefix = 0, into) {
    const k = handle as unknown as AeadKey;
    if (k.algorithm === 'XChaCha20-Poly1305') {
      return nobleSealInto(
        xchacha20poly1305(k.key as Uint8Array, nonce, aad),
        plaintext,
        prefix,
        true,
      );
    }
    const c = nc.createCipheriv(k.cipher as nc.CipherGCMTypes, k.key, nonce, {
      authTagLength: TAG,
    });
    // plaintextLength is only required by CCM; GCM and ChaCha20-Poly1305 do without it.
    if (aad.length > 0) c.setAAD(aad);
    const length = plaintext.length;
    const size = prefix + length + TAG;
    const out = into && into.length >= size ? into.subarray(0, size) : new Uint8Array(size);
    let written = prefix;
    for (let offset = 0; offset < length; offset += SEAL_PIECE) {
      const piece = c.update(plaintext.subarray(offset, offset + SEAL_PIECE));
      out.set(piece, written);
      written += piece.length;
    }
    c.final();
    // GCM is a stream mode: update() returns as many bytes as it takes.
    if (written !== prefix + length) throw new Error('node:crypto returned a short AEAD update');
    out.set(c.getAuthTag(), written);
    return out;
  },

  aeadOpen(handle, nonce, sealed, aad) {
    const k = handle as unknown as AeadKey;
    if (sealed.length < TAG) return undefined;
    try {
      if (k.algorithm === 'XChaCha20-Poly1305') {
        return xchacha20poly1305(k.key as Uint8Array, nonce, aad).decrypt(sealed);
      }
      const split = sealed.length - TAG;
      const d = nc.createDecipheriv(k.cipher as nc.CipherGCMTypes, k.key, nonce, {
        authTagLength: TAG,
      });
      d.setAuthTag(sealed.subarray(split));
      if (aad.length > 0) d.setAAD(aad);
      const body = d.update(sealed.subarray(0, split));
      d.final(); // throws when the tag does not verify
      return u8(body);
    } catch {
      return undefined;
    }
  },

  ...(sodium ? sodiumEd25519(sodium) : opensslEd25519),

  x25519PrivateKey(secret) {
    return privateKey('X25519', secret);
  },

  x25519(privateKey, publicKey) {
    try {
      return u8(
        nc.diffieHellman({
          privateKey: privateKey as unknown as nc.KeyObject,
          publicKey: rawPublicKey('X25519', publicKey),
        }),
      );
    } catch {
      // OpenSSL refuses an all-zero result (a low-order public key); callers reject it too.
      return undefined;
    }
  },
};
