// @coffer/sdk: what apps call. Accounts with nothing but a username and password (OPAQUE),
// devices in a signed manifest, a key backup only the password or recovery code opens, device
// linking; local state encrypted at rest. Node-only pieces live in '@coffer/sdk/node'.

export {
  ATTACHMENT_CHUNK_SIZE,
  ATTACHMENT_CONTEXT,
  ATTACHMENT_DESCRIPTOR_VERSION,
  ATTACHMENT_KEY_LENGTH,
  type AttachmentDescriptor,
  type AttachmentServerOptions,
  type DownloadAttachmentOptions,
  decodeAttachmentDescriptor,
  downloadAndDecrypt,
  encodeAttachmentDescriptor,
  encryptAndUpload,
  MAX_ATTACHMENT_MEDIA_TYPE_LENGTH,
  MAX_ATTACHMENT_NAME_LENGTH,
  type UploadAttachmentOptions,
} from './attachments.js';
export {
  type AccountInfo,
  type ClientOptions,
  type ClientState,
  type CofferClient,
  createClient,
  type DeviceInfo,
  type DevicesApi,
  type JoinByLinkOptions,
  type JoinOptions,
  type LinkOffer,
  type LinkRequestInfo,
  type LinkWaitOptions,
} from './client.js';
export {
  type ConversationEvent,
  type ConversationInfo,
  type ConversationMember,
  type ConversationMessage,
  type ConversationOptions,
  type ConversationsApi,
  DEFAULT_SELF_UPDATE_MESSAGES,
  DEFAULT_SELF_UPDATE_MS,
  HISTORY_CHUNK,
  KEY_PACKAGE_ROTATE_MS,
  KEY_PACKAGE_TARGET,
  type WebSocketConstructor,
  type WebSocketLike,
} from './conversations.js';
export { SDK_ERROR_CODES, SdkError, type SdkErrorCode, type SdkErrorOptions } from './errors.js';
export { type LocalStore, MAX_RECORD_NAME_LENGTH, memoryStore } from './local-store.js';
export {
  DEFAULT_DEVICE_NAME,
  MAX_DEVICE_NAME_BYTES,
  MAX_PASSWORD_LENGTH,
  normalizeDeviceName,
  normalizeUsername,
} from './names.js';
export { type KeyStretching, PASSWORD_HASHING } from './password-hashing.js';
export { DEFAULT_TIMEOUT_MS, type FetchLike } from './transport.js';
