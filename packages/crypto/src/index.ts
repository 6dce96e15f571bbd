export {
  AEAD_KEY_LENGTH,
  type AeadKey,
  type AeadSuite,
  generateAeadKey,
  type ImportAeadKeyOptions,
  importAeadKey,
  MAX_KEY_ID_LENGTH,
} from './aead-key.js';
export {
  ARGON2ID_DEFAULTS,
  ARGON2ID_MIN_MEMORY_KIB,
  ARGON2ID_MIN_SALT_LENGTH,
  type Argon2idParams,
  argon2id,
} from './argon2.js';
export { constantTimeEqual } from './compare.js';
export {
  concatBytes,
  fromBase64url,
  fromHex,
  toBase64url,
  toHex,
  utf8Decode,
  utf8Encode,
} from './encoding.js';
export {
  aeadIsSynchronous,
  decrypt,
  decryptSync,
  ENVELOPE_VERSION,
  type EnvelopeHeader,
  type EnvelopeOptions,
  encrypt,
  encryptSync,
  readEnvelopeHeader,
  type SealOptions,
} from './envelope.js';
export { CryptoError, type CryptoErrorCode, ERROR_CODES } from './errors.js';
export { HASH_LENGTH, type HashName, hmac, hmacVerify, sha256, sha512 } from './hash.js';
export { type HkdfOptions, hkdf, hkdfExpand, hkdfExtract, LABEL_PATTERN } from './hkdf.js';
export {
  createHpkeRecipient,
  createHpkeSender,
  DEFAULT_HPKE_SUITE,
  type HpkeOptions,
  type HpkeRecipient,
  type HpkeSealOptions,
  type HpkeSender,
  type HpkeSuite,
  hpkeOpen,
  hpkeSeal,
} from './hpke.js';
export {
  generateKeyAgreementKeyPair,
  importKeyAgreementKey,
  type KeyAgreementKey,
  x25519,
} from './key-agreement.js';
export { createKeyedHmacSha256, type KeyedHmacSha256 } from './keyed-hmac.js';
export { randomBytes, randomPublicBytes } from './random.js';
export {
  createRawAead,
  RAW_AEAD_NONCE_LENGTH,
  RAW_AEAD_TAG_LENGTH,
  type RawAead,
  type RawAeadAlgorithm,
} from './raw-aead.js';
export { createSha256, type Sha256Stream } from './sha256-stream.js';
export {
  ED25519_PUBLIC_KEY_LENGTH,
  ED25519_SIGNATURE_LENGTH,
  generateSigningKeyPair,
  importSigningKey,
  importVerifyingKey,
  type SigningKey,
  sign,
  type VerifyingKey,
  verify,
} from './signature.js';
export {
  createDecryptStream,
  createEncryptStream,
  DEFAULT_CHUNK_SIZE,
  type EncryptStreamOptions,
  MAX_CHUNKS,
  type StreamOptions,
  streamDecrypt,
  streamEncrypt,
} from './stream.js';
export { wipe } from './wipe.js';
