// The Node back end: node:crypto natives, synchronous, with keys prepared once as KeyObjects.
// XChaCha20-Poly1305 has no native implementation in Node and comes from @noble/ciphers.
import * as nc from 'node:crypto';
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js';
import type { AeadAlgorithm, Backend, HashName, KeyHandle, PrivateKey } from './types.js';

const HASH: Record<HashName, string> = {
  'SHA-256': 'sha256',
  'SHA-384': 'sha384',
  'SHA-512': 'sha512',
};
const TAG = 16;

// DER prefixes that wrap a raw 32-byte key as PKCS#8 / SPKI (RFC 8410).
const ED25519_PKCS8 = hex('302e020100300506032b657004220420');
const ED25519_SPKI = hex('302a300506032b6570032100');
const X25519_PKCS8 = hex('302e020100300506032b656e04220420');
const X25519_SPKI = hex('302a300506032b656e032100');

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

function privateKey(pkcs8: Buffer): PrivateKey {
  const key = nc.createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' });
  pkcs8.fill(0);
  const spki = nc.createPublicKey(key).export({ format: 'der', type: 'spki' });
  // Both SPKI prefixes (RFC 8410) are 12 bytes; the raw public key follows.
  return { handle: asHandle(key), publicKey: u8(spki).slice(12) };
}

function asHandle<T>(value: T): KeyHandle {
  return value as unknown as KeyHandle;
}

export const backend: Backend = {
  name: 'node',

  randomBytes(length) {
    return u8(nc.randomBytes(length));
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

  aeadKey(algorithm, key) {
    if (algorithm === 'XChaCha20-Poly1305')
      return asHandle<AeadKey>({ algorithm, cipher: '', key: key.slice() });
    const cipher = algorithm === 'AES-GCM' ? `aes-${key.length * 8}-gcm` : 'chacha20-poly1305';
    return asHandle<AeadKey>({ algorithm, cipher, key: nc.createSecretKey(key) });
  },

  aeadSeal(handle, nonce, plaintext, aad) {
    const k = handle as unknown as AeadKey;
    if (k.algorithm === 'XChaCha20-Poly1305') {
      return xchacha20poly1305(k.key as Uint8Array, nonce, aad).encrypt(plaintext);
    }
    const c = nc.createCipheriv(k.cipher as nc.CipherGCMTypes, k.key, nonce, {
      authTagLength: TAG,
    });
    if (aad.length > 0) c.setAAD(aad, { plaintextLength: plaintext.length });
    const body = c.update(plaintext);
    c.final();
    const out = new Uint8Array(body.length + TAG);
    out.set(body, 0);
    out.set(c.getAuthTag(), body.length);
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
      if (aad.length > 0) d.setAAD(aad, { plaintextLength: split });
      const body = d.update(sealed.subarray(0, split));
      d.final(); // throws when the tag does not verify
      return u8(body);
    } catch {
      return undefined;
    }
  },

  ed25519PrivateKey(seed) {
    return privateKey(der(ED25519_PKCS8, seed));
  },

  ed25519Sign(privateKey, message) {
    return u8(nc.sign(null, message, privateKey as unknown as nc.KeyObject));
  },

  ed25519PublicKey(publicKey) {
    try {
      return asHandle(
        nc.createPublicKey({ key: der(ED25519_SPKI, publicKey), format: 'der', type: 'spki' }),
      );
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

  x25519PrivateKey(secret) {
    return privateKey(der(X25519_PKCS8, secret));
  },

  x25519(privateKey, publicKey) {
    try {
      const pub = nc.createPublicKey({
        key: der(X25519_SPKI, publicKey),
        format: 'der',
        type: 'spki',
      });
      return u8(
        nc.diffieHellman({ privateKey: privateKey as unknown as nc.KeyObject, publicKey: pub }),
      );
    } catch {
      // OpenSSL refuses an all-zero result (a low-order public key); callers reject it too.
      return undefined;
    }
  },
};
