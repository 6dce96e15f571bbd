import {
  decrypt,
  encrypt,
  fromBase64url,
  hkdf,
  importAeadKey,
  randomBytes,
  toBase64url,
  utf8Decode,
  utf8Encode,
  wipe,
} from '@coffer/crypto';
import {
  base32Encode,
  base32Pack,
  base32Symbols,
  CROCKFORD_ALPHABET,
  groupsOfFour,
} from './_base32.js';
import { isIntIn, MAX_U32 } from './_bytes.js';
import { isDisplayText } from './_text.js';
import { assertBytes, assertObject, invalidArgument, ProtocolError } from './errors.js';
import { isId } from './ids.js';
import { PUBLIC_KEY_LENGTH, SEED_LENGTH } from './key-pair.js';
import { MAX_DEVICE_NAME_LENGTH } from './manifest-body.js';
import { MAX_CODE_INPUT_LENGTH } from './recovery-code.js';
import { normalizeUsername } from './username.js';

/** spec §6: a link code is 15 random bytes (24 base32 symbols). */
export const LINK_CODE_LENGTH = 15;
/** Its first 5 bytes are the link id the server sees (8 symbols). */
const LINK_ID_BYTES = 5;
const LINK_ID_SYMBOLS = 8;
const SYMBOLS = (LINK_CODE_LENGTH * 8) / 5;
/** The last 10 bytes (80 bits) are the secret, never sent. */
export const LINK_SECRET_LENGTH = LINK_CODE_LENGTH - LINK_ID_BYTES;
/** spec §6: the QR payload is this prefix and the 24 symbols. */
export const LINK_QR_PREFIX = 'coffer-link:1:';
/** spec §6: the `v` of the request and response JSON. */
export const LINK_MESSAGE_VERSION = 1;
/** Link messages are a few hundred bytes; a sealed one larger than this is refused unopened. */
export const MAX_LINK_MESSAGE_LENGTH = 4096;

/** A device-linking code shown on the existing device (spec §6). */
export interface LinkCode {
  /** 24 Crockford base32 characters in 6 groups of 4. */
  readonly text: string;
  /** `coffer-link:1:<24 characters>`. */
  readonly qr: string;
  /** The first 8 characters: what the server sees. */
  readonly linkId: string;
  /** The last 10 bytes: never sent. */
  readonly secret: Uint8Array;
}

/** What the new device B sends (spec §6). */
export interface LinkRequest {
  readonly deviceId: string;
  readonly signingKey: Uint8Array;
  readonly name: string;
}

/** What the existing device A answers (spec §6). */
export interface LinkResponse {
  readonly accountId: string;
  readonly username: string;
  readonly identitySeed: Uint8Array;
  readonly manifestSeq: number;
}

/**
 * A fresh link code: 15 random bytes; register `linkId` with the server and show `text` or `qr`.
 *
 * @example const code = generateLinkCode(); await api.createLink(code.linkId); showQr(code.qr);
 */
export function generateLinkCode(): LinkCode {
  return fromBytes(randomBytes(LINK_CODE_LENGTH));
}

/**
 * Reads a link code from the display text (as for recovery codes: lower case, whitespace, dashes,
 * O→0, I/L→1, then exactly 24 symbols) or from the QR payload `coffer-link:1:<24 characters>`.
 *
 * @throws {ProtocolError} `INVALID_LINK_CODE` for anything else; `UNSUPPORTED_VERSION` for a QR
 *   payload of another version (`coffer-link:2:…`); `INVALID_ARGUMENT` when `text` is not a
 *   string.
 * @example const code = parseLinkCode(scannedText);
 */
export function parseLinkCode(text: string): LinkCode {
  const op = 'linkCode.parse';
  if (typeof text !== 'string') throw invalidArgument(op, '"text" expected a string');
  const fail = (): never => {
    throw new ProtocolError(
      'INVALID_LINK_CODE',
      op,
      `expected ${SYMBOLS} characters of the link code alphabet`,
    );
  };
  if (text.length > MAX_CODE_INPUT_LENGTH) fail();
  let input = text;
  const qr = /^coffer-link:([0-9]+):/i.exec(text);
  if (qr) {
    if (qr[1] !== '1')
      throw new ProtocolError('UNSUPPORTED_VERSION', op, `unsupported link code version ${qr[1]}`);
    input = text.slice(qr[0].length);
  }
  const symbols = base32Symbols(input, SYMBOLS);
  if (!symbols || symbols.length !== SYMBOLS) return fail();
  return fromBytes(base32Pack(symbols));
}

/**
 * Seals B's request under the link key (spec §6), for `PUT /v1/links/{linkId}/request`.
 *
 * @throws {ProtocolError} `INVALID_ARGUMENT` for a malformed code, a deviceId that is not an id, a
 *   signing key that is not 32 bytes, or a name that is not 1 to 64 bytes of NFC UTF-8 without
 *   control characters.
 * @example const sealed = await sealLinkRequest(code, { deviceId, signingKey: device.publicKey, name: 'Laptop' });
 */
export async function sealLinkRequest(code: LinkCode, request: LinkRequest): Promise<Uint8Array> {
  const op = 'link.sealRequest';
  assertObject(op, 'request', request);
  const problem = requestProblem(request);
  if (problem) throw invalidArgument(op, problem);
  const json = JSON.stringify({
    v: LINK_MESSAGE_VERSION,
    deviceId: request.deviceId,
    signingKey: toBase64url(request.signingKey),
    name: request.name,
  });
  return sealMessage(op, code, REQUEST, utf8Encode(json));
}

/**
 * Opens B's request on A. The request is authentic only in that its sender knew the code; A
 * should show the name and ask the user before adding the device.
 *
 * @throws {ProtocolError} `DECRYPTION_FAILED` for a wrong code, any tampering, or a message that
 *   does not hold a valid request; `UNSUPPORTED_VERSION` for a request of another `v`;
 *   `INVALID_ARGUMENT` for a malformed code.
 * @example const request = await openLinkRequest(code, sealed);
 */
export async function openLinkRequest(code: LinkCode, sealed: Uint8Array): Promise<LinkRequest> {
  const op = 'link.openRequest';
  const json = await openMessage(op, code, REQUEST, sealed);
  const signingKey = b64(json.signingKey, PUBLIC_KEY_LENGTH);
  const request = { deviceId: json.deviceId, signingKey, name: json.name } as LinkRequest;
  if (!signingKey || requestProblem(request)) throw decryptionFailed(op);
  return Object.freeze(request);
}

/**
 * Seals A's response under the link key (spec §6): the account, the username, the identity
 * seed, and the seq of the manifest that lists B (upload that manifest first).
 *
 * @throws {ProtocolError} `INVALID_ARGUMENT` for a malformed code, an accountId that is not an id,
 *   a username outside spec §1, a seed that is not 32 bytes, or a manifestSeq outside 1 to 2^32 − 1.
 * @example const sealed = await sealLinkResponse(code, { accountId, username, identitySeed, manifestSeq: body.seq });
 */
export async function sealLinkResponse(
  code: LinkCode,
  response: LinkResponse,
): Promise<Uint8Array> {
  const op = 'link.sealResponse';
  assertObject(op, 'response', response);
  const problem = responseProblem(response);
  if (problem) throw invalidArgument(op, problem);
  const seed = toBase64url(response.identitySeed);
  const plaintext = utf8Encode(
    JSON.stringify({
      v: LINK_MESSAGE_VERSION,
      accountId: response.accountId,
      username: response.username,
      identitySeed: seed,
      manifestSeq: response.manifestSeq,
    }),
  );
  try {
    return await sealMessage(op, code, RESPONSE, plaintext);
  } finally {
    wipe(plaintext);
  }
}

/**
 * Opens A's response on B. B must then fetch the account's manifest and verify it with the
 * identity key of this seed pinned, at a seq ≥ `manifestSeq`, listing B's own id and key.
 *
 * @throws {ProtocolError} `DECRYPTION_FAILED` for a wrong code, any tampering, or a message that
 *   does not hold a valid response; `UNSUPPORTED_VERSION` for a response of another `v`;
 *   `INVALID_ARGUMENT` for a malformed code.
 * @example
 * const response = await openLinkResponse(code, sealed);
 * const identity = await keyPairFromSeed(response.identitySeed);
 */
export async function openLinkResponse(code: LinkCode, sealed: Uint8Array): Promise<LinkResponse> {
  const op = 'link.openResponse';
  const json = await openMessage(op, code, RESPONSE, sealed);
  const identitySeed = b64(json.identitySeed, SEED_LENGTH);
  const response = {
    accountId: json.accountId,
    username: json.username,
    identitySeed,
    manifestSeq: json.manifestSeq,
  } as LinkResponse;
  if (!identitySeed || responseProblem(response)) {
    if (identitySeed) wipe(identitySeed);
    throw decryptionFailed(op);
  }
  return Object.freeze(response);
}

// spec §6: each direction has its own key id and context.
const REQUEST = { kid: 'link-request', context: utf8Encode('request') } as const;
const RESPONSE = { kid: 'link-response', context: utf8Encode('response') } as const;
type Direction = typeof REQUEST | typeof RESPONSE;

function requestProblem(r: LinkRequest): string | undefined {
  if (!isId(r.deviceId)) return '"deviceId" expected b64url of 16 bytes (22 characters)';
  if (!(r.signingKey instanceof Uint8Array) || r.signingKey.length !== PUBLIC_KEY_LENGTH)
    return '"signingKey" expected 32 bytes';
  if (!isDisplayText(r.name, MAX_DEVICE_NAME_LENGTH))
    return `"name" expected 1 to ${MAX_DEVICE_NAME_LENGTH} bytes of UTF-8, NFC, without control characters`;
  return undefined;
}

function responseProblem(r: LinkResponse): string | undefined {
  if (!isId(r.accountId)) return '"accountId" expected b64url of 16 bytes (22 characters)';
  if (normalizeUsername(r.username) === null)
    return '"username" expected a username (3 to 32 of a-z 0-9 . _ - after normalising)';
  if (!(r.identitySeed instanceof Uint8Array) || r.identitySeed.length !== SEED_LENGTH)
    return '"identitySeed" expected 32 bytes';
  if (!isIntIn(r.manifestSeq, 1, MAX_U32))
    return '"manifestSeq" expected an integer from 1 to 2^32 - 1';
  return undefined;
}

/** spec §6: link key = hkdf(secret, "coffer/v1/link", utf8(linkId), 32). */
async function linkKey(op: string, code: LinkCode, direction: Direction) {
  assertObject(op, 'code', code);
  assertBytes(op, 'code.secret', code.secret, LINK_SECRET_LENGTH);
  if (
    typeof code.linkId !== 'string' ||
    code.linkId.length !== LINK_ID_SYMBOLS ||
    [...code.linkId].some((c) => !CROCKFORD_ALPHABET.includes(c))
  ) {
    throw invalidArgument(op, '"code.linkId" expected 8 Crockford base32 characters');
  }
  const raw = await hkdf(code.secret, {
    label: 'coffer/v1/link',
    length: 32,
    context: utf8Encode(code.linkId),
  });
  try {
    return await importAeadKey(raw, { id: direction.kid });
  } finally {
    wipe(raw);
  }
}

async function sealMessage(
  op: string,
  code: LinkCode,
  direction: Direction,
  plaintext: Uint8Array,
): Promise<Uint8Array> {
  const key = await linkKey(op, code, direction);
  return encrypt(key, plaintext, { context: direction.context });
}

/** Opens and parses a sealed link message; every failure but `v` is DECRYPTION_FAILED. */
async function openMessage(
  op: string,
  code: LinkCode,
  direction: Direction,
  sealed: Uint8Array,
): Promise<Record<string, unknown>> {
  const key = await linkKey(op, code, direction);
  if (!(sealed instanceof Uint8Array)) throw invalidArgument(op, '"sealed" expected a Uint8Array');
  if (sealed.length > MAX_LINK_MESSAGE_LENGTH) throw decryptionFailed(op);
  let plaintext: Uint8Array;
  try {
    plaintext = await decrypt(key, sealed, { context: direction.context });
  } catch {
    throw decryptionFailed(op);
  }
  let json: unknown;
  try {
    json = JSON.parse(utf8Decode(plaintext));
  } catch {
    throw decryptionFailed(op);
  } finally {
    wipe(plaintext);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw decryptionFailed(op);
  const v = (json as Record<string, unknown>).v;
  if (!isIntIn(v, 0, Number.MAX_SAFE_INTEGER)) throw decryptionFailed(op);
  if (v !== LINK_MESSAGE_VERSION)
    throw new ProtocolError('UNSUPPORTED_VERSION', op, `unsupported link message version ${v}`);
  return json as Record<string, unknown>;
}

/** The bytes of a canonical b64url string of exactly `length` bytes, or undefined. */
function b64(text: unknown, length: number): Uint8Array | undefined {
  if (typeof text !== 'string' || text.length !== Math.ceil((length * 4) / 3)) return undefined;
  try {
    const bytes = fromBase64url(text);
    return bytes.length === length ? bytes : undefined;
  } catch {
    return undefined;
  }
}

function decryptionFailed(op: string): ProtocolError {
  return new ProtocolError('DECRYPTION_FAILED', op, 'decryption failed');
}

function fromBytes(bytes: Uint8Array): LinkCode {
  const symbols = base32Encode(bytes);
  return Object.freeze({
    text: groupsOfFour(symbols),
    qr: LINK_QR_PREFIX + symbols,
    linkId: symbols.slice(0, LINK_ID_SYMBOLS),
    secret: bytes.slice(LINK_ID_BYTES),
  });
}
