import { FieldsError } from '../errors.js';
import {
  asStructure,
  decodeTtlv,
  encodeTtlv,
  optionalField,
  repeatedField,
  requiredField,
  type TtlvItem,
  type TtlvStructure,
  ttlv,
} from './_kmip-ttlv.js';

/**
 * KMIP request and response messages (KMIP 1.4 §6–7), just the fields this provider uses.
 *
 * Protocol version 1.4 is required, not a preference: Authenticated Encryption Additional Data
 * and Authenticated Encryption Tag, which make server-side AES-GCM usable, first appear in the
 * Encrypt and Decrypt payloads of KMIP 1.4, as does the Sensitive attribute.
 */
export const KMIP_PROTOCOL = { major: 1, minor: 4 } as const;

/** Tag numbers (KMIP 1.4, Defined Values). */
export const Tag = {
  attribute: 0x420008,
  attributeIndex: 0x420009,
  attributeName: 0x42000a,
  attributeValue: 0x42000b,
  batchCount: 0x42000d,
  batchItem: 0x42000f,
  blockCipherMode: 0x420011,
  cryptographicAlgorithm: 0x420028,
  cryptographicParameters: 0x42002b,
  iv: 0x42003d,
  keyBlock: 0x420040,
  keyFormatType: 0x420042,
  keyMaterial: 0x420043,
  keyValue: 0x420045,
  maximumItems: 0x42004f,
  name: 0x420053,
  nameType: 0x420054,
  nameValue: 0x420055,
  objectType: 0x420057,
  operation: 0x42005c,
  protocolVersion: 0x420069,
  protocolVersionMajor: 0x42006a,
  protocolVersionMinor: 0x42006b,
  requestHeader: 0x420077,
  requestMessage: 0x420078,
  requestPayload: 0x420079,
  responseHeader: 0x42007a,
  responseMessage: 0x42007b,
  responsePayload: 0x42007c,
  resultMessage: 0x42007d,
  resultReason: 0x42007e,
  resultStatus: 0x42007f,
  symmetricKey: 0x42008f,
  templateAttribute: 0x420091,
  timeStamp: 0x420092,
  uniqueBatchItemId: 0x420093,
  uniqueIdentifier: 0x420094,
  data: 0x4200c2,
  randomIv: 0x4200c5,
  tagLength: 0x4200ce,
  aeadAdditionalData: 0x4200fe,
  aeadTag: 0x4200ff,
} as const;

/** Operation codes. */
export const Operation = {
  create: 0x01,
  locate: 0x08,
  get: 0x0a,
  getAttributes: 0x0b,
  activate: 0x12,
  destroy: 0x14,
  encrypt: 0x1f,
  decrypt: 0x20,
} as const;

export const ObjectType = { symmetricKey: 0x02 } as const;
export const CryptographicAlgorithm = { aes: 0x03 } as const;
export const BlockCipherMode = { gcm: 0x09 } as const;
export const NameType = { uninterpretedTextString: 0x01 } as const;
export const UsageMask = { encrypt: 0x04, decrypt: 0x08 } as const;

const ResultStatus = { success: 0, operationFailed: 1, operationPending: 2, operationUndone: 3 };

/** Result reasons, by the names errors report them with. */
export const ResultReason = {
  itemNotFound: 0x01,
  responseTooLarge: 0x02,
  authenticationNotSuccessful: 0x03,
  invalidMessage: 0x04,
  operationNotSupported: 0x05,
  missingData: 0x06,
  invalidField: 0x07,
  featureNotSupported: 0x08,
  operationCanceledByRequester: 0x09,
  cryptographicFailure: 0x0a,
  illegalOperation: 0x0b,
  permissionDenied: 0x0c,
  objectArchived: 0x0d,
  indexOutOfBounds: 0x0e,
  applicationNamespaceNotSupported: 0x0f,
  keyFormatTypeNotSupported: 0x10,
  keyCompressionTypeNotSupported: 0x11,
  encodingOptionError: 0x12,
  keyValueNotPresent: 0x13,
  attestationRequired: 0x14,
  attestationFailed: 0x15,
  sensitive: 0x16,
  notExtractable: 0x17,
  objectAlreadyExists: 0x18,
  generalFailure: 0x100,
} as const;

const REASON_NAMES = new Map<number, string>(
  Object.entries(ResultReason).map(([name, code]) => [
    code,
    name.replace(/[A-Z]/g, (c) => ` ${c.toLowerCase()}`),
  ]),
);

/** Human name of a result reason for error messages, e.g. `item not found`. */
export function reasonName(reason: number | undefined): string {
  if (reason === undefined) return 'no result reason';
  return REASON_NAMES.get(reason) ?? `result reason 0x${reason.toString(16)}`;
}

/** One operation of a request's batch: its code and the children of its Request Payload. */
export type BatchOperation = { readonly operation: number; readonly payload: readonly TtlvItem[] };

/** The outcome of a whole request: every payload in request order, or the first failure. */
export type BatchOutcome =
  | { readonly ok: true; readonly payloads: readonly TtlvStructure[] }
  | {
      readonly ok: false;
      readonly operation: number | undefined;
      readonly reason: number | undefined;
      readonly message: string | undefined;
    };

/** Longest Result Message we repeat in an error: enough for a diagnosis, not a log dump. */
const MAX_RESULT_MESSAGE_CHARS = 200;

function malformed(reason: string): FieldsError {
  return new FieldsError('PROVIDER_ERROR', 'provider.kmip', `malformed kmip response: ${reason}`);
}

const batchItemId = (index: number): Uint8Array => Uint8Array.of(index);

/** Batches we send have one operation; a one-byte id leaves room. */
const MAX_BATCH = 255;

/** Encodes a Request Message carrying `batch` (ids 0, 1, … in order). */
export function encodeRequest(batch: readonly BatchOperation[]): Uint8Array {
  if (batch.length === 0 || batch.length > MAX_BATCH) throw new RangeError('kmip: bad batch size');
  const header = ttlv.structure(Tag.requestHeader, [
    ttlv.structure(Tag.protocolVersion, [
      ttlv.integer(Tag.protocolVersionMajor, KMIP_PROTOCOL.major),
      ttlv.integer(Tag.protocolVersionMinor, KMIP_PROTOCOL.minor),
    ]),
    ttlv.integer(Tag.batchCount, batch.length),
  ]);
  const items = batch.map((op, index) =>
    ttlv.structure(Tag.batchItem, [
      ttlv.enumeration(Tag.operation, op.operation),
      ttlv.byteString(Tag.uniqueBatchItemId, batchItemId(index)),
      ttlv.structure(Tag.requestPayload, op.payload),
    ]),
  );
  return encodeTtlv(ttlv.structure(Tag.requestMessage, [header, ...items]));
}

// Server messages are free text; keep them printable and short before they reach an Error.
function cleanMessage(text: string | undefined): string | undefined {
  if (text === undefined) return undefined;
  const printable = text.replace(/[^\x20-\x7e]/g, '?');
  return printable.length > MAX_RESULT_MESSAGE_CHARS
    ? `${printable.slice(0, MAX_RESULT_MESSAGE_CHARS)}...`
    : printable;
}

/**
 * Decodes the Response Message answering `batch`. A failed item (or a message-level failure,
 * which servers send as one batch item without an id) becomes `{ ok: false }`; a response that
 * does not answer exactly what was asked is malformed.
 *
 * @throws {FieldsError} `PROVIDER_ERROR` when the response is malformed.
 */
export function decodeResponse(bytes: Uint8Array, batch: readonly BatchOperation[]): BatchOutcome {
  const message = asStructure(decodeTtlv(bytes), Tag.responseMessage);
  const header = requiredField(message, Tag.responseHeader, 'structure');
  const version = requiredField(header, Tag.protocolVersion, 'structure');
  const major = requiredField(version, Tag.protocolVersionMajor, 'integer').value;
  if (major !== KMIP_PROTOCOL.major) throw malformed(`protocol version ${major}.x`);
  requiredField(header, Tag.timeStamp, 'dateTime');
  const count = requiredField(header, Tag.batchCount, 'integer').value;
  const items = repeatedField(message, Tag.batchItem, 'structure');
  if (items.length !== count) throw malformed(`batch count ${count} but ${items.length} items`);
  for (const child of message.value) {
    if (child.tag !== Tag.responseHeader && child.tag !== Tag.batchItem) {
      throw malformed(`unexpected field 0x${child.tag.toString(16)} in the message`);
    }
  }

  const payloads: (TtlvStructure | undefined)[] = batch.map(() => undefined);
  for (const item of items) {
    const operation = optionalField(item, Tag.operation, 'enumeration')?.value;
    const status = requiredField(item, Tag.resultStatus, 'enumeration').value;
    if (status !== ResultStatus.success) {
      if (status === ResultStatus.operationPending) throw malformed('asynchronous reply');
      return {
        ok: false,
        operation,
        reason: optionalField(item, Tag.resultReason, 'enumeration')?.value,
        message: cleanMessage(optionalField(item, Tag.resultMessage, 'textString')?.value),
      };
    }
    const id = requiredField(item, Tag.uniqueBatchItemId, 'byteString').value;
    const index = id.length === 1 ? (id[0] as number) : -1;
    const request = batch[index];
    if (request === undefined || payloads[index] !== undefined) {
      throw malformed('batch item id does not match the request');
    }
    if (operation !== request.operation) throw malformed('operation does not match the request');
    // An operation with nothing to return may omit its payload; stand in an empty one.
    payloads[index] =
      optionalField(item, Tag.responsePayload, 'structure') ??
      ttlv.structure(Tag.responsePayload, []);
  }
  if (payloads.some((p) => p === undefined)) throw malformed('a batch item went unanswered');
  return { ok: true, payloads: payloads as TtlvStructure[] };
}

// ---------------------------------------------------------------------------------------------
// Payloads

function attribute(name: string, value: TtlvItem): TtlvItem {
  return ttlv.structure(Tag.attribute, [ttlv.textString(Tag.attributeName, name), value]);
}

function nameAttribute(name: string): TtlvItem {
  return attribute(
    'Name',
    ttlv.structure(Tag.attributeValue, [
      ttlv.textString(Tag.nameValue, name),
      ttlv.enumeration(Tag.nameType, NameType.uninterpretedTextString),
    ]),
  );
}

/**
 * Create: an AES-256 key usable only to Encrypt and Decrypt, named `name`, marked Sensitive
 * (KMIP 1.4: a server must not let Get return a sensitive key unwrapped; some servers, PyKMIP
 * among them, store the flag without enforcing it).
 */
export function createPayload(name: string): TtlvItem[] {
  return [
    ttlv.enumeration(Tag.objectType, ObjectType.symmetricKey),
    ttlv.structure(Tag.templateAttribute, [
      attribute(
        'Cryptographic Algorithm',
        ttlv.enumeration(Tag.attributeValue, CryptographicAlgorithm.aes),
      ),
      attribute('Cryptographic Length', ttlv.integer(Tag.attributeValue, 256)),
      attribute(
        'Cryptographic Usage Mask',
        ttlv.integer(Tag.attributeValue, UsageMask.encrypt | UsageMask.decrypt),
      ),
      nameAttribute(name),
      attribute('Sensitive', ttlv.boolean(Tag.attributeValue, true)),
    ]),
  ];
}

/**
 * Activate `uid`. (KMIP lets a batch say Create + Activate with the identifier left implicit,
 * but PyKMIP 0.10 rejects an Activate without one, so it goes as its own request.)
 */
export function activatePayload(uid: string): TtlvItem[] {
  return [ttlv.textString(Tag.uniqueIdentifier, uid)];
}

/**
 * Locate symmetric keys named `name`. Asking for at most 2 is enough to tell "one" from
 * "ambiguous" and keeps the reply small however many objects the server holds.
 */
export function locatePayload(name: string): TtlvItem[] {
  return [
    ttlv.integer(Tag.maximumItems, 2),
    attribute('Object Type', ttlv.enumeration(Tag.attributeValue, ObjectType.symmetricKey)),
    nameAttribute(name),
  ];
}

/** The identifiers a Locate returned. */
export function locateResult(payload: TtlvStructure): string[] {
  return repeatedField(payload, Tag.uniqueIdentifier, 'textString').map((item) => item.value);
}

/** The identifier a Create returned. */
export function createResult(payload: TtlvStructure): string {
  return requiredField(payload, Tag.uniqueIdentifier, 'textString').value;
}

/** GCM tag length we ask for and require: the full 128 bits. */
export const GCM_TAG_BYTES = 16;

/**
 * AES-GCM with a 16-byte tag. For Encrypt, Random IV asks the server to generate the IV and
 * return it: the nonce is made where the key lives (as FIPS 140 modules require), never by us.
 */
function gcmParameters(op: 'encrypt' | 'decrypt'): TtlvItem {
  return ttlv.structure(Tag.cryptographicParameters, [
    ttlv.enumeration(Tag.blockCipherMode, BlockCipherMode.gcm),
    ttlv.enumeration(Tag.cryptographicAlgorithm, CryptographicAlgorithm.aes),
    ...(op === 'encrypt' ? [ttlv.boolean(Tag.randomIv, true)] : []),
    ttlv.integer(Tag.tagLength, GCM_TAG_BYTES),
  ]);
}

// An empty context is sent as no additional data at all: GCM treats the two identically, and
// some servers reject a zero-length byte string.
function aad(context: Uint8Array): TtlvItem[] {
  return context.length === 0 ? [] : [ttlv.byteString(Tag.aeadAdditionalData, context)];
}

/** Encrypt `data` under key `uid` with AES-GCM, `context` as additional data. */
export function encryptPayload(uid: string, data: Uint8Array, context: Uint8Array): TtlvItem[] {
  return [
    ttlv.textString(Tag.uniqueIdentifier, uid),
    gcmParameters('encrypt'),
    ttlv.byteString(Tag.data, data),
    ...aad(context),
  ];
}

/** The ciphertext, server-generated IV and tag an Encrypt returned. */
export function encryptResult(payload: TtlvStructure): {
  ciphertext: Uint8Array;
  iv: Uint8Array | undefined;
  tag: Uint8Array | undefined;
} {
  return {
    ciphertext: requiredField(payload, Tag.data, 'byteString').value,
    iv: optionalField(payload, Tag.iv, 'byteString')?.value,
    tag: optionalField(payload, Tag.aeadTag, 'byteString')?.value,
  };
}

/** Decrypt `ciphertext` under key `uid` with AES-GCM. */
export function decryptPayload(
  uid: string,
  ciphertext: Uint8Array,
  iv: Uint8Array,
  tag: Uint8Array,
  context: Uint8Array,
): TtlvItem[] {
  return [
    ttlv.textString(Tag.uniqueIdentifier, uid),
    gcmParameters('decrypt'),
    ttlv.byteString(Tag.data, ciphertext),
    ttlv.byteString(Tag.iv, iv),
    ...aad(context),
    ttlv.byteString(Tag.aeadTag, tag),
  ];
}

/** The plaintext a Decrypt returned. */
export function decryptResult(payload: TtlvStructure): Uint8Array {
  return requiredField(payload, Tag.data, 'byteString').value;
}
