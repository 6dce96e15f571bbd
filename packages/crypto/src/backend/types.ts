// The seam between Coffer's constructions and the primitives that run them. Three back ends
// implement it: node (node:crypto), web (WebCrypto, @noble where WebCrypto has no algorithm)
// and noble (pure JavaScript, audited). The package's `#backend` import picks node or web by
// export condition; the test suite runs against all three.
//
// Back ends check nothing an attacker controls beyond what the primitive itself checks: the
// callers in src/ validate lengths and apply policies (Ed25519 strictness, all-zero X25519
// output) once, identically for every back end.

export type HashName = 'SHA-256' | 'SHA-384' | 'SHA-512';
export type AeadAlgorithm = 'AES-GCM' | 'ChaCha20-Poly1305' | 'XChaCha20-Poly1305';
export type Awaitable<T> = T | Promise<T>;

declare const handle: unique symbol;
/** A back end's prepared key (KeyObject, CryptoKey or bytes); opaque outside the back end. */
export type KeyHandle = { readonly [handle]: true };

/** A prepared private key and the public key that goes with it. */
export type PrivateKey = { readonly handle: KeyHandle; readonly publicKey: Uint8Array };

export interface Backend {
  readonly name: 'node' | 'web' | 'noble';
  /** Whether aeadSeal and aeadOpen always answer synchronously (never a Promise). */
  readonly syncAead: boolean;

  randomBytes(length: number): Uint8Array;
  /**
   * Random bytes for a nonce: a public value, so a back end may serve it from randomness
   * generated ahead of use. Never use it for keys, salts or anything secret.
   */
  randomNonce(length: number): Uint8Array;
  /** Constant-time equality of two arrays of the same length. */
  timingSafeEqual(a: Uint8Array, b: Uint8Array): boolean;

  digest(hash: HashName, data: Uint8Array): Awaitable<Uint8Array>;
  hmac(hash: HashName, key: Uint8Array, data: Uint8Array): Awaitable<Uint8Array>;
  /** RFC 5869 extract-then-expand; `length` is at most 255 × the hash length (checked by callers). */
  hkdf(
    hash: HashName,
    ikm: Uint8Array,
    salt: Uint8Array,
    info: Uint8Array,
    length: number,
  ): Awaitable<Uint8Array>;

  /**
   * Prepares an AEAD key (16, 24 or 32 bytes for AES-GCM; 32 for the ChaCha family). `shortLived`:
   * the key seals or opens once or a few times (a raw protocol key), so a back end may keep the
   * bytes it is given rather than build a key object that costs more than the sealing.
   */
  aeadKey(algorithm: AeadAlgorithm, key: Uint8Array, shortLived?: boolean): Awaitable<KeyHandle>;
  /**
   * Returns `prefix` zero bytes || ciphertext || 16-byte tag: the free prefix lets a caller
   * write its header in front without copying the ciphertext again. With `into` large enough, a
   * back end may write there and return a subarray of it (the prefix then holds stale bytes the
   * caller overwrites); one that ignores it allocates as without.
   */
  aeadSeal(
    key: KeyHandle,
    nonce: Uint8Array,
    plaintext: Uint8Array,
    aad: Uint8Array,
    prefix?: number,
    into?: Uint8Array,
  ): Awaitable<Uint8Array>;
  /** Returns the plaintext, or undefined when the tag does not verify. */
  aeadOpen(
    key: KeyHandle,
    nonce: Uint8Array,
    sealed: Uint8Array,
    aad: Uint8Array,
  ): Awaitable<Uint8Array | undefined>;

  /** Ed25519 private key from its 32-byte seed (RFC 8032 §5.1.5), with its public key. */
  ed25519PrivateKey(seed: Uint8Array): Awaitable<PrivateKey>;
  ed25519Sign(privateKey: KeyHandle, message: Uint8Array): Awaitable<Uint8Array>;
  ed25519PublicKey(publicKey: Uint8Array): Awaitable<KeyHandle | undefined>;
  /** RFC 8032 verification with the cofactorless equation; never throws. */
  ed25519Verify(
    publicKey: KeyHandle,
    message: Uint8Array,
    signature: Uint8Array,
  ): Awaitable<boolean>;
  /**
   * The same check on a worker thread (Node: libuv's pool), for verifications started together;
   * absent where the platform has no such pool to offer.
   */
  ed25519VerifyInPool?(
    publicKey: KeyHandle,
    message: Uint8Array,
    signature: Uint8Array,
  ): Promise<boolean>;

  /** X25519 private key from its 32 bytes (RFC 7748; clamped by the primitive), with its public key. */
  x25519PrivateKey(secret: Uint8Array): Awaitable<PrivateKey>;
  /** The raw shared secret (possibly all zero: callers reject that), or undefined on failure. */
  x25519(privateKey: KeyHandle, publicKey: Uint8Array): Awaitable<Uint8Array | undefined>;
}
