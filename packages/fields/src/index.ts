export {
  type BlindIndexPlan,
  type BlindIndexSpec,
  createBlindIndexer,
  DEFAULT_INDEX_BITS,
  type Normalizer,
  planBlindIndex,
} from './blind-index.js';
export {
  type BlindIndexConfig,
  type BlindIndexer,
  defineEncryptedSchema,
  type EncryptedColumnConfig,
  type EncryptedSchema,
  type EncryptedTableConfig,
  type FieldTypeMap,
  type NextBlindIndexConfig,
  type PlaintextOf,
} from './encrypted-schema.js';
export { FIELDS_ERROR_CODES, FieldsError, type FieldsErrorCode } from './errors.js';
export {
  createFieldCipher,
  type DecryptOptions,
  type EncryptOptions,
  type FieldCipher,
  type FieldContext,
  type StoredValue,
} from './field-cipher.js';
export type { KeyOperation, KeyProvider } from './key-provider.js';
export {
  createKeyring,
  type KeyPurpose,
  type Keyring,
  type KeyringEntry,
  parseKeyring,
  primaryVersion,
  retireDataKey,
  rewrapKeyring,
  rotateKey,
} from './keyring.js';
export {
  type Ciphertext,
  createKyselyFieldsPlugin,
  type DecryptedRow,
  type Encrypted,
  type EncryptedRow,
  type KyselyFieldsOptions,
  type KyselyFieldsPlugin,
  type PlainRow,
} from './kysely-plugin.js';
export {
  createKmipProvider,
  type KmipProvider,
  type KmipProviderOptions,
} from './providers/kmip.js';
export {
  createLocalProvider,
  generateKekFile,
  type LocalProvider,
  localProviderFromEnv,
  localProviderFromFile,
} from './providers/local.js';
export {
  createPkcs11Provider,
  type Pkcs11Provider,
  type Pkcs11ProviderOptions,
} from './providers/pkcs11.js';
export {
  type CheckpointStore,
  type EncryptedColumnSpec,
  type FieldRow,
  type FieldTable,
  MAX_BATCH_SIZE,
  parseCheckpoint,
  type ReencryptCheckpoint,
  type ReencryptCounts,
  type ReencryptMode,
  type ReencryptOptions,
  type ReencryptReport,
  type RowKey,
  reencrypt,
  type ShadowIndexSpec,
  type StatusReport,
  serializeCheckpoint,
  shadowColumnOf,
  status,
  type VersionCounts,
} from './reencrypt.js';
export { type FieldType, type FieldValue, type JsonValue, typeOf } from './value-codec.js';
