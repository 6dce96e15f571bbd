// Coffer's ts-mls crypto provider: MLS cipher suite 1 (MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519,
// RFC 9420 §17.1) on @coffer/crypto's primitives, so MLS runs on node:crypto (KeyObjects,
// synchronous HMAC and AES-GCM) in Node and on the same audited back ends as the rest of Coffer
// elsewhere. Other suites go to a fallback provider (ts-mls's default unless told otherwise).
//
// Mapping (ts-mls interface → @coffer/crypto):
//   hash.digest / mac / verifyMac    → sha256 / hmac / hmacVerify (constant-time)
//   kdf.extract / expand             → hkdfExtract / hkdfExpand, SHA-256 (MLS labels are raw);
//                                      expand to ≤ 32 bytes is its single block, one hmac call
//   signature.sign / verify / keygen → importSigningKey + sign / importVerifyingKey + verify
//                                      (Coffer's strict Ed25519 policy) / generateSigningKeyPair;
//                                      signature private keys are 32-byte RFC 8032 seeds
//   hpke.seal / open / export*       → createHpkeSender / createHpkeRecipient, base mode,
//                                      DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM
//   hpke.deriveKeyPair               → RFC 9180 §7.1.3 DeriveKeyPair for X25519, composed from
//                                      hkdfExtract/hkdfExpand; public key from importKeyAgreementKey
//   hpke.encryptAead / decryptAead   → createRawAead(key, 'AES-128-GCM'): MLS fixes its own nonces
//   rng                              → randomBytes (the 4-byte reuse guard: randomPublicBytes)
import {
  concatBytes,
  createHpkeRecipient,
  createHpkeSender,
  createRawAead,
  generateKeyAgreementKeyPair,
  generateSigningKeyPair,
  hkdfExpand,
  hkdfExtract,
  hmac,
  hmacVerify,
  importKeyAgreementKey,
  importSigningKey,
  importVerifyingKey,
  randomBytes,
  randomPublicBytes,
  type SigningKey,
  sha256,
  sign,
  toHex,
  utf8Encode,
  type VerifyingKey,
  verify,
} from '@coffer/crypto';
import {
  type CiphersuiteImpl,
  type CryptoProvider,
  defaultCryptoProvider,
  type Hpke,
  type PrivateKey,
  type PublicKey,
} from 'ts-mls';

/** MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519, the suite Coffer implements and uses by default. */
export const MLS_DEFAULT_CIPHERSUITE = 1;

/** Cipher suite ids this provider implements itself (others go to the fallback). */
export const COFFER_MLS_CIPHERSUITES: readonly number[] = [MLS_DEFAULT_CIPHERSUITE];

/** Verifying keys kept prepared, per provider: members of the groups a client is in (one reason: re-importing each key per message cost more than the verification). */
export const MAX_CACHED_VERIFYING_KEYS = 4096;

const HPKE_SUITE = 'X25519-HKDF-SHA256-AES-128-GCM';
const X25519_LENGTH = 32;
const EMPTY = new Uint8Array(0);

export interface CofferCryptoProviderOptions {
  /** Provider for suites other than {@link COFFER_MLS_CIPHERSUITES}. Default ts-mls's default. */
  fallback?: CryptoProvider;
}

/**
 * Coffer's ts-mls `CryptoProvider`: suite 1 runs on `@coffer/crypto`, any other suite on the
 * fallback. Prepared keys (Ed25519 signing and verifying keys) are cached inside the provider;
 * create one per client and reuse it.
 *
 * @example
 * const provider = createCofferCryptoProvider();
 * const suite = await provider.getCiphersuiteImpl(MLS_DEFAULT_CIPHERSUITE);
 */
export function createCofferCryptoProvider(
  options: CofferCryptoProviderOptions = {},
): CryptoProvider {
  const fallback = options.fallback ?? defaultCryptoProvider;
  let suite1: CiphersuiteImpl | undefined;
  return {
    async getCiphersuiteImpl(id: number): Promise<CiphersuiteImpl> {
      if (id !== MLS_DEFAULT_CIPHERSUITE) return fallback.getCiphersuiteImpl(id);
      suite1 ??= makeSuite1();
      return suite1;
    },
  };
}

function makeSuite1(): CiphersuiteImpl {
  // Signing keys are cached by array identity: ts-mls keeps one array per key in its state, and
  // a secret never becomes a map key string.
  const signingKeys = new WeakMap<Uint8Array, SigningKey>();
  // Public keys are public, so a bounded map by hex serves keys decoded afresh from messages.
  const verifyingKeys = new Map<string, VerifyingKey>();

  async function signingKey(seed: Uint8Array): Promise<SigningKey> {
    let key = signingKeys.get(seed);
    if (!key) {
      key = await importSigningKey(seed);
      signingKeys.set(seed, key);
    }
    return key;
  }

  async function verifyingKey(publicKey: Uint8Array): Promise<VerifyingKey | undefined> {
    const id = toHex(publicKey);
    let key = verifyingKeys.get(id);
    if (!key) {
      try {
        key = await importVerifyingKey(publicKey);
      } catch {
        return undefined; // not a valid Ed25519 key under Coffer's policy: nothing verifies
      }
      if (verifyingKeys.size >= MAX_CACHED_VERIFYING_KEYS) {
        const oldest = verifyingKeys.keys().next().value;
        if (oldest !== undefined) verifyingKeys.delete(oldest);
      }
      verifyingKeys.set(id, key);
    }
    return key;
  }

  return {
    id: MLS_DEFAULT_CIPHERSUITE,
    hash: {
      digest: (data) => sha256(data),
      mac: (key, data) => hmac('SHA-256', key, data),
      verifyMac: (key, mac, data) => hmacVerify('SHA-256', key, data, mac),
    },
    kdf: {
      extract: (salt, ikm) => hkdfExtract('SHA-256', salt, ikm),
      expand: expandSha256,
      size: 32,
    },
    signature: {
      async sign(signKey, message) {
        return sign(await signingKey(signKey), message);
      },
      async verify(publicKey, message, signature) {
        const key = await verifyingKey(publicKey);
        return key !== undefined && verify(key, message, signature);
      },
      async keygen() {
        const { secretKey, publicKey } = await generateSigningKeyPair();
        return { signKey: secretKey, publicKey };
      },
    },
    hpke: makeHpke(),
    rng: { randomBytes: mlsRandomBytes },
  };
}

/**
 * ts-mls's random bytes. It asks for 32-byte secrets (path and epoch secrets, RFC 9420 §7.4,
 * §12.4.3.2), 32-byte PSK nonces, and, once per application or handshake message it sends, the
 * 4-byte reuse guard (§6.3.2), a public value XORed into the nonce. Only that 4-byte request is
 * served from the pool of public randomness (no generator call per message); every longer one is
 * drawn fresh.
 */
function mlsRandomBytes(length: number): Uint8Array {
  return length === REUSE_GUARD_LENGTH ? randomPublicBytes(length) : randomBytes(length);
}
const REUSE_GUARD_LENGTH = 4;

const SHA256_LENGTH = 32;

/**
 * HKDF-Expand-SHA256 (RFC 5869 §2.3). Every MLS derivation of suite 1 (ExpandWithLabel) asks for
 * at most one hash length, where the output is T(1) = HMAC(PRK, info || 0x01) truncated: one HMAC
 * call and no block loop. Longer or odd requests take hkdfExpand, which also reports bad input.
 */
async function expandSha256(
  prk: Uint8Array,
  info: Uint8Array,
  length: number,
): Promise<Uint8Array> {
  if (
    !Number.isSafeInteger(length) ||
    length < 1 ||
    length > SHA256_LENGTH ||
    !(prk instanceof Uint8Array) ||
    prk.length < SHA256_LENGTH ||
    !(info instanceof Uint8Array)
  ) {
    return hkdfExpand('SHA-256', prk, info, length);
  }
  const block = new Uint8Array(info.length + 1);
  block.set(info, 0);
  block[info.length] = 1;
  const t1 = await hmac('SHA-256', prk, block);
  if (length === SHA256_LENGTH) return t1;
  const out = t1.slice(0, length);
  t1.fill(0);
  return out;
}

// ts-mls types HPKE keys as CryptoKeys but only ever hands them back to the same Hpke object, so
// ours are opaque objects whose bytes live in these maps.
const publicKeys = new WeakMap<object, Uint8Array>();
const privateKeys = new WeakMap<object, Uint8Array>();

function wrapPublic(bytes: Uint8Array): PublicKey {
  const key = Object.freeze({ type: 'public' });
  publicKeys.set(key, bytes.slice());
  return key as unknown as PublicKey;
}

function wrapPrivate(bytes: Uint8Array): PrivateKey {
  const key = Object.freeze({ type: 'private' });
  privateKeys.set(key, bytes.slice());
  return key as unknown as PrivateKey;
}

function unwrap(map: WeakMap<object, Uint8Array>, key: unknown, what: string): Uint8Array {
  const bytes = typeof key === 'object' && key !== null ? map.get(key) : undefined;
  if (!bytes) throw new TypeError(`"${what}" expected a key from this provider`);
  return bytes;
}

function checkLength(bytes: Uint8Array, what: string): Uint8Array {
  if (!(bytes instanceof Uint8Array) || bytes.length !== X25519_LENGTH) {
    throw new TypeError(`"${what}" expected ${X25519_LENGTH} bytes`);
  }
  return bytes;
}

// RFC 9180 §4: suite_id = "KEM" || I2OSP(kem_id, 2) for the KEM's own derivations; 0x0020 is
// DHKEM(X25519, HKDF-SHA256).
const KEM_SUITE_ID = concatBytes(utf8Encode('KEM'), Uint8Array.of(0x00, 0x20));
const HPKE_V1 = utf8Encode('HPKE-v1');

/** RFC 9180 §7.1.3 DeriveKeyPair for X25519: sk = LabeledExpand(LabeledExtract("", "dkp_prk", ikm), "sk", "", 32). */
async function deriveX25519Secret(ikm: Uint8Array): Promise<Uint8Array> {
  const labeledIkm = concatBytes(HPKE_V1, KEM_SUITE_ID, utf8Encode('dkp_prk'), ikm);
  const prk = await hkdfExtract('SHA-256', EMPTY, labeledIkm);
  const labeledInfo = concatBytes(
    Uint8Array.of(0, X25519_LENGTH),
    HPKE_V1,
    KEM_SUITE_ID,
    utf8Encode('sk'),
  );
  return hkdfExpand('SHA-256', prk, labeledInfo, X25519_LENGTH);
}

async function keyPairFromSecret(
  secret: Uint8Array,
): Promise<{ privateKey: PrivateKey; publicKey: PublicKey }> {
  const { publicKey } = await importKeyAgreementKey(secret);
  return { privateKey: wrapPrivate(secret), publicKey: wrapPublic(publicKey) };
}

function makeHpke(): Hpke {
  return {
    keyLength: 16,
    nonceLength: 12,
    async seal(publicKey, plaintext, info, aad) {
      const sender = await createHpkeSender(unwrap(publicKeys, publicKey, 'publicKey'), {
        suite: HPKE_SUITE,
        info,
      });
      return { ct: await sender.seal(plaintext, aad ?? EMPTY), enc: sender.enc };
    },
    async open(privateKey, kemOutput, ciphertext, info, aad) {
      const recipient = await createHpkeRecipient(
        unwrap(privateKeys, privateKey, 'privateKey'),
        kemOutput,
        { suite: HPKE_SUITE, info },
      );
      return recipient.open(ciphertext, aad ?? EMPTY);
    },
    async exportSecret(publicKey, exporterContext, length, info) {
      const sender = await createHpkeSender(unwrap(publicKeys, publicKey, 'publicKey'), {
        suite: HPKE_SUITE,
        info,
      });
      return { enc: sender.enc, secret: await sender.export(exporterContext, length) };
    },
    async importSecret(privateKey, exporterContext, kemOutput, length, info) {
      const recipient = await createHpkeRecipient(
        unwrap(privateKeys, privateKey, 'privateKey'),
        kemOutput,
        { suite: HPKE_SUITE, info },
      );
      return recipient.export(exporterContext, length);
    },
    async importPrivateKey(k) {
      return wrapPrivate(checkLength(k, 'privateKey'));
    },
    async importPublicKey(k) {
      return wrapPublic(checkLength(k, 'publicKey'));
    },
    async exportPublicKey(k) {
      return unwrap(publicKeys, k, 'publicKey').slice();
    },
    async exportPrivateKey(k) {
      return unwrap(privateKeys, k, 'privateKey').slice();
    },
    async encryptAead(key, nonce, aad, plaintext) {
      return (await createRawAead(key, 'AES-128-GCM')).seal(nonce, plaintext, aad ?? EMPTY);
    },
    async decryptAead(key, nonce, aad, ciphertext) {
      return (await createRawAead(key, 'AES-128-GCM')).open(nonce, ciphertext, aad ?? EMPTY);
    },
    async deriveKeyPair(ikm) {
      return keyPairFromSecret(await deriveX25519Secret(ikm));
    },
    async generateKeyPair() {
      const { secretKey } = await generateKeyAgreementKeyPair();
      return keyPairFromSecret(secretKey);
    },
  };
}
