// The browser back end: WebCrypto where it is native and fast, @noble/* where WebCrypto has no
// algorithm (ChaCha20-Poly1305, XChaCha20-Poly1305, Ed25519/X25519 in older engines) or where
// its async call overhead dominates (hashes, HMAC and HKDF on small inputs; see README).
import { CryptoError } from '../errors.js';
import { isNobleHandle, backend as noble } from './noble.js';
import type { Backend, KeyHandle, PrivateKey } from './types.js';

// Below this many bytes a synchronous @noble hash beats WebCrypto's fixed async cost (measured:
// SHA-256 of 64 B, noble 595k/s vs WebCrypto 31k/s; of 1 MiB, WebCrypto 8× faster).
const NATIVE_HASH_THRESHOLD = 8192;

type Curve = 'Ed25519' | 'X25519';
const ED25519_PKCS8 = Uint8Array.from([48, 46, 2, 1, 0, 48, 5, 6, 3, 43, 101, 112, 4, 34, 4, 32]);
const X25519_PKCS8 = Uint8Array.from([48, 46, 2, 1, 0, 48, 5, 6, 3, 43, 101, 110, 4, 34, 4, 32]);

function subtle(): SubtleCrypto {
  const s = globalThis.crypto?.subtle;
  // Browsers hide WebCrypto outside secure contexts (plain http:, except localhost).
  if (!s)
    throw new CryptoError(
      'UNSUPPORTED_RUNTIME',
      'backend.web',
      'WebCrypto is unavailable (not a secure context?)',
    );
  return s;
}

function pkcs8(prefix: Uint8Array, key: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(prefix.length + key.length);
  out.set(prefix, 0);
  out.set(key, prefix.length);
  return out;
}

function asHandle(value: CryptoKey): KeyHandle {
  return value as unknown as KeyHandle;
}

// Per curve: does this engine's WebCrypto implement it? Probed once, on first use.
const native = new Map<Curve, Promise<boolean>>();
function hasNative(curve: Curve): Promise<boolean> {
  let p = native.get(curve);
  if (!p) {
    const usage: KeyUsage[] = curve === 'Ed25519' ? ['verify'] : [];
    p = subtle()
      .importKey('raw', new Uint8Array(32).fill(9), curve, false, usage)
      .then(
        () => true,
        () => false,
      );
    native.set(curve, p);
  }
  return p;
}

// RFC 7748 §4.1: the X25519 base point, u = 9.
const X25519_BASE = Uint8Array.from({ length: 32 }, (_, i) => (i === 0 ? 9 : 0));

/**
 * Imports a private key non-extractable for use, with its public key. An X25519 public key is
 * X25519(k, 9) (RFC 7748 §6.1), computed from the non-extractable key itself. WebCrypto has no
 * such route for Ed25519, so its public key comes from a second, short-lived extractable import
 * exported as a JWK (whose `d` leaves a string copy of the seed that cannot be wiped).
 */
async function importPrivate(curve: Curve, secret: Uint8Array): Promise<PrivateKey> {
  const usages: KeyUsage[] = curve === 'Ed25519' ? ['sign'] : ['deriveBits'];
  const der = pkcs8(curve === 'Ed25519' ? ED25519_PKCS8 : X25519_PKCS8, secret);
  try {
    const key = await subtle().importKey('pkcs8', der, curve, false, usages);
    if (curve === 'X25519') {
      const base = await subtle().importKey('raw', X25519_BASE, 'X25519', false, []);
      const publicKey = await subtle().deriveBits({ name: 'X25519', public: base }, key, 256);
      return { handle: asHandle(key), publicKey: new Uint8Array(publicKey) };
    }
    const jwk = await subtle().exportKey(
      'jwk',
      await subtle().importKey('pkcs8', der, curve, true, usages),
    );
    return { handle: asHandle(key), publicKey: base64urlToBytes(jwk.x ?? '') };
  } finally {
    der.fill(0);
  }
}

function base64urlToBytes(s: string): Uint8Array {
  const b64 = s.replace(/-/g, '+').replace(/_/g, '/');
  const bin = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

/**
 * `b` as WebCrypto takes it. WebCrypto refuses views of shared or resizable memory (WebIDL
 * BufferSource; a shared WebAssembly.Memory exists in any page), which node:crypto and @noble
 * read like any other: such a view is copied, so every back end gives the same answer.
 */
function buf(b: Uint8Array): Uint8Array<ArrayBuffer> {
  const memory = b.buffer as ArrayBufferLike & { resizable?: boolean };
  if (memory instanceof ArrayBuffer && memory.resizable !== true)
    return b as Uint8Array<ArrayBuffer>;
  return new Uint8Array(b);
}

/** Imports key bytes through {@link buf}, wiping the copy it may have made. */
async function importSecret<T>(
  key: Uint8Array,
  use: (bytes: Uint8Array<ArrayBuffer>) => Promise<T>,
) {
  const bytes = buf(key);
  try {
    return await use(bytes);
  } finally {
    if (bytes !== key) bytes.fill(0);
  }
}

export const backend: Backend = {
  name: 'web',
  syncAead: false,
  randomBytes: noble.randomBytes,
  randomNonce: noble.randomNonce,
  timingSafeEqual: noble.timingSafeEqual,

  async digest(hash, data) {
    if (data.length < NATIVE_HASH_THRESHOLD) return noble.digest(hash, data);
    return new Uint8Array(await subtle().digest(hash, buf(data)));
  },

  async hmac(hash, key, data) {
    if (data.length < NATIVE_HASH_THRESHOLD) return noble.hmac(hash, key, data);
    const k = await importSecret(key, (raw) =>
      subtle().importKey('raw', raw, { name: 'HMAC', hash }, false, ['sign']),
    );
    return new Uint8Array(await subtle().sign('HMAC', k, buf(data)));
  },

  // HKDF inputs are keys and labels: always small, so always synchronous noble.
  hkdf: noble.hkdf,

  async aeadKey(algorithm, key) {
    // Chromium's WebCrypto has no AES-192 (Coffer uses AES-256; the raw layer serves vectors).
    if (algorithm !== 'AES-GCM' || key.length === 24) return noble.aeadKey(algorithm, key);
    return asHandle(
      await importSecret(key, (raw) =>
        subtle().importKey('raw', raw, 'AES-GCM', false, ['encrypt', 'decrypt']),
      ),
    );
  },

  async aeadSeal(handle, nonce, plaintext, aad, prefix = 0) {
    if (isNobleHandle(handle)) return noble.aeadSeal(handle, nonce, plaintext, aad, prefix);
    const params: AesGcmParams = {
      name: 'AES-GCM',
      iv: buf(nonce),
      additionalData: buf(aad),
      tagLength: 128,
    };
    const sealed = await subtle().encrypt(params, handle as unknown as CryptoKey, buf(plaintext));
    if (prefix === 0) return new Uint8Array(sealed);
    // WebCrypto allocates its own output: one copy to make room for the caller's header.
    const out = new Uint8Array(prefix + sealed.byteLength);
    out.set(new Uint8Array(sealed), prefix);
    return out;
  },

  async aeadOpen(handle, nonce, sealed, aad) {
    if (isNobleHandle(handle)) return noble.aeadOpen(handle, nonce, sealed, aad);
    const params: AesGcmParams = {
      name: 'AES-GCM',
      iv: buf(nonce),
      additionalData: buf(aad),
      tagLength: 128,
    };
    try {
      return new Uint8Array(
        await subtle().decrypt(params, handle as unknown as CryptoKey, buf(sealed)),
      );
    } catch {
      return undefined;
    }
  },

  async ed25519PrivateKey(seed) {
    if (!(await hasNative('Ed25519'))) return noble.ed25519PrivateKey(seed);
    return importPrivate('Ed25519', seed);
  },

  async ed25519Sign(handle, message) {
    if (isNobleHandle(handle)) return noble.ed25519Sign(handle, message);
    return new Uint8Array(
      await subtle().sign('Ed25519', handle as unknown as CryptoKey, buf(message)),
    );
  },

  async ed25519PublicKey(publicKey) {
    if (!(await hasNative('Ed25519'))) return noble.ed25519PublicKey(publicKey);
    try {
      return asHandle(
        await subtle().importKey('raw', buf(publicKey), 'Ed25519', false, ['verify']),
      );
    } catch {
      return undefined;
    }
  },

  async ed25519Verify(handle, message, signature) {
    if (isNobleHandle(handle)) return noble.ed25519Verify(handle, message, signature);
    try {
      return await subtle().verify(
        'Ed25519',
        handle as unknown as CryptoKey,
        buf(signature),
        buf(message),
      );
    } catch {
      return false;
    }
  },

  async x25519PrivateKey(secret) {
    if (!(await hasNative('X25519'))) return noble.x25519PrivateKey(secret);
    return importPrivate('X25519', secret);
  },

  async x25519(handle, publicKey) {
    if (isNobleHandle(handle)) return noble.x25519(handle, publicKey);
    try {
      const pub = await subtle().importKey('raw', buf(publicKey), 'X25519', false, []);
      const bits = await subtle().deriveBits(
        { name: 'X25519', public: pub },
        handle as unknown as CryptoKey,
        256,
      );
      return new Uint8Array(bits);
    } catch {
      return undefined;
    }
  },
};
