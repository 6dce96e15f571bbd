// @coffer/server: the HTTP/WebSocket layer (spec/http-api-v1.md) over the storage interfaces.
export {
  type AppContext,
  type AppDeps,
  type AppEnv,
  type BlobOptions,
  createApp,
} from './app.js';
export {
  type BlobFiles,
  type BlobWriteResult,
  createBlobFiles,
  type OpenedBlob,
} from './blob-files.js';
export {
  addressKey,
  forwardedAddress,
  socketAddress,
  trustedProxies,
} from './client-address.js';
export {
  type Config,
  ConfigError,
  type DatabaseConfig,
  type KekConfig,
  loadConfig,
  USAGE,
} from './config.js';
export {
  defaultMessage,
  ERROR_STATUS,
  type ErrorBody,
  type ErrorStatus,
  errorResponse,
  SERVER_ERROR_CODES,
  ServerError,
  type ServerErrorCode,
} from './errors.js';
export {
  type AccountEvent,
  type AccountListener,
  createEventHub,
  type EventHub,
} from './event-hub.js';
export {
  BLOB_ORPHAN_GRACE_MS,
  BLOB_QUOTA_BYTES,
  BLOB_RETENTION_MS,
  type BlobSweep,
  MAX_BLOB_BYTES,
  MAX_BLOBS_PER_ACCOUNT,
  MAX_UPLOADS_PER_ACCOUNT,
  sweepBlobs,
} from './http/blobs.js';
export {
  DELIVERY_RETENTION_MS,
  MAX_GROUP_INFO_LENGTH,
  MAX_MESSAGE_LENGTH,
  MAX_QUEUE_ENTRIES,
  MAX_QUEUED_WELCOMES,
  MAX_RECIPIENTS,
} from './http/delivery.js';
export {
  AUTH_TIMEOUT_MS,
  attachEventSocket,
  CLOSE_GOING_AWAY,
  CLOSE_REVOKED,
  CLOSE_TOO_MANY,
  CLOSE_UNAUTHENTICATED,
  EVENTS_PATH,
  type EventSocket,
  type EventSocketDeps,
  MAX_BUFFERED_BYTES,
  MAX_SOCKETS_PER_DEVICE,
} from './http/events.js';
export { createLogger, type Logger } from './logger.js';
export { LOOKUP_WINDOW_MS, LOOKUPS_PER_ACCOUNT } from './lookup-limiter.js';
export { createMetrics, type LoginOutcome, type Metrics } from './metrics.js';
export { BODY_TIMEOUT_MS, MAX_BODY_BYTES } from './middleware/body-limit.js';
export { createOpaqueSetup, OPAQUE_SIZES } from './opaque.js';
export { OPENAPI_DOCUMENT } from './openapi.js';
export { EXIT_CONFIG, EXIT_FAILURE, LOCAL_KEK_ID, runServer } from './run.js';
export {
  IDLE_TIMEOUT_MS,
  type RunningServer,
  type ServerOptions,
  startServer,
} from './server.js';
export {
  loadServerSecrets,
  OPAQUE_SETUP_SECRET,
  type ServerSecrets,
  THROTTLE_KEY_SECRET,
} from './server-secrets.js';
export {
  LINK_TTL_MS,
  LOGIN_STATE_TTL_MS,
  REAUTH_WINDOW_MS,
  RECOVERY_TTL_MS,
  SESSION_TTL_MS,
} from './sessions.js';
export {
  SIGNUP_FINISHES_PER_ADDRESS,
  SIGNUP_LIMITS,
  SIGNUP_STARTS_PER_ADDRESS,
  SIGNUP_WINDOW_MS,
  type SignupLimits,
} from './signup-limiter.js';
export { type OpenStorageOptions, openStorage } from './storage/open.js';
export type {
  AccountRecord,
  BlobAddResult,
  BlobRecord,
  BlobStore,
  DeliveryKind,
  DeliveryResult,
  DeliveryStore,
  DeviceRoute,
  LinkRecord,
  NewAccount,
  NewDelivery,
  NewSession,
  QueuedMessage,
  SessionRecord,
  Storage,
  StoredBackup,
  StoredManifest,
  ThrottleState,
} from './storage/types.js';
export { StorageConflictError } from './storage/types.js';
export { ACCOUNT_MAX_DELAY_MS, ADDRESS_MAX_DELAY_MS, throttleDelay } from './throttle.js';
