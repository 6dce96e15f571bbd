// @coffer/protocol: the sans-I/O core of Coffer's accounts (spec/account-v1.md): identities,
// signed device manifests, key backup, recovery codes and device linking. No I/O, no clock
// except a defaulted `issuedAt`, randomness only where a fresh secret is made.
export {
  type AccountSecrets,
  BACKUP_FORMAT,
  createBackup,
  type DecodedBackup,
  decodeBackup,
  MAX_BACKUP_LENGTH,
  MAX_EXPORT_KEY_LENGTH,
  MAX_SEALED_SECRETS_LENGTH,
  MAX_SECRETS_LENGTH,
  MIN_EXPORT_KEY_LENGTH,
  openBackup,
  rewrapBackup,
  SECRETS_VERSION,
  type SealedBackup,
  WRAPPED_KEY_LENGTH,
} from './backup.js';
export {
  PROTOCOL_ERROR_CODES,
  ProtocolError,
  type ProtocolErrorCode,
} from './errors.js';
export { ID_LENGTH, ID_TEXT_LENGTH, isId, newAccountId, newDeviceId } from './ids.js';
export {
  type Ed25519KeyPair,
  generateKeyPair,
  keyPairFromSeed,
  PUBLIC_KEY_LENGTH,
  SEED_LENGTH,
} from './key-pair.js';
export {
  generateLinkCode,
  LINK_CODE_LENGTH,
  LINK_MESSAGE_VERSION,
  LINK_QR_PREFIX,
  LINK_SECRET_LENGTH,
  type LinkCode,
  type LinkRequest,
  type LinkResponse,
  MAX_LINK_MESSAGE_LENGTH,
  openLinkRequest,
  openLinkResponse,
  parseLinkCode,
  sealLinkRequest,
  sealLinkResponse,
} from './link.js';
export {
  MANIFEST_SIGNATURE_LENGTH,
  MAX_MANIFEST_CHAIN,
  type ManifestExpectation,
  type ManifestJson,
  manifestFromJson,
  manifestHash,
  manifestToJson,
  nextManifestBody,
  type SignedManifest,
  signManifest,
  verifyManifest,
  verifyManifestChain,
} from './manifest.js';
export {
  type DeviceEntry,
  decodeManifestBody,
  encodeManifestBody,
  HASH_LENGTH,
  MANIFEST_FORMAT,
  MAX_DEVICE_NAME_LENGTH,
  MAX_DEVICES,
  MAX_MANIFEST_BODY_LENGTH,
  type ManifestBody,
  sortDevices,
} from './manifest-body.js';
export {
  COFFER_MLS_CIPHERSUITES,
  type CofferCryptoProviderOptions,
  createCofferCryptoProvider,
  MAX_CACHED_VERIFYING_KEYS,
  MLS_DEFAULT_CIPHERSUITE,
} from './mls/crypto-provider.js';
export {
  type CommitResult,
  type CreateKeyPackageOptions,
  createTsMlsEngine,
  type GroupEngine,
  MAX_GROUP_ID_LENGTH,
  MAX_GROUP_SIZE,
  MAX_GROUP_STATE_LENGTH,
  MAX_IDENTITY_LENGTH,
  MAX_MLS_MESSAGE_LENGTH,
  MLS_STATE_VERSION,
  type MlsGroup,
  type MlsKeyPackage,
  type MlsMember,
  type ProcessedMessage,
  type TsMlsEngineOptions,
} from './mls/group-engine.js';
export {
  generateRecoveryCode,
  MAX_CODE_INPUT_LENGTH,
  parseRecoveryCode,
  RECOVERY_CODE_LENGTH,
  type RecoveryCode,
  recoveryProof,
  recoveryVerifier,
} from './recovery-code.js';
export {
  MAX_USERNAME_INPUT_LENGTH,
  normalizeUsername,
  USERNAME_PATTERN,
} from './username.js';
