// Small typed validators for request bodies: every field a route reads goes through one of
// these, so that a missing, ill-typed, oversized or non-canonical value is a 400 BAD_REQUEST and
// never reaches a handler (or a 500). Messages name the field, never its value.
import { fromBase64url } from '@coffer/crypto';
import {
  isId,
  MANIFEST_SIGNATURE_LENGTH,
  MAX_BACKUP_LENGTH,
  MAX_LINK_MESSAGE_LENGTH,
  MAX_MANIFEST_BODY_LENGTH,
} from '@coffer/protocol';
import { ServerError } from '../errors.js';

/** A parsed JSON object body (own properties only are ever read). */
export type JsonObject = { readonly [key: string]: unknown };

// ignoreBOM keeps a byte-order mark in the text, where JSON.parse refuses it (RFC 8259 §8.1).
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Parses a request body as a JSON object.
 *
 * @throws {ServerError} `BAD_REQUEST` for invalid UTF-8, invalid JSON or a non-object.
 * @example const body = parseJsonObject(bytes, 'signup.start');
 */
export function parseJsonObject(bytes: Uint8Array | undefined, op: string): JsonObject {
  if (!bytes || bytes.length === 0) throw new ServerError('BAD_REQUEST', op, 'expected a body');
  let value: unknown;
  try {
    value = JSON.parse(utf8.decode(bytes));
  } catch {
    throw new ServerError('BAD_REQUEST', op, 'body is not valid JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new ServerError('BAD_REQUEST', op, 'body must be a JSON object');
  return value as JsonObject;
}

function get(obj: JsonObject, name: string): unknown {
  return Object.hasOwn(obj, name) ? obj[name] : undefined;
}

function bad(op: string, name: string, expected: string): ServerError {
  return new ServerError('BAD_REQUEST', op, `"${name}" expected ${expected}`);
}

/**
 * A required string field of at most `max` UTF-16 code units.
 *
 * @throws {ServerError} `BAD_REQUEST` when missing, not a string, empty or too long.
 */
export function stringField(obj: JsonObject, name: string, op: string, max: number): string {
  const v = get(obj, name);
  if (typeof v !== 'string' || v.length === 0 || v.length > max)
    throw bad(op, name, `a string of 1 to ${max} characters`);
  return v;
}

export interface BytesLimits {
  /** Exact length in bytes. */
  readonly exact?: number;
  /** Least length in bytes (default 1). */
  readonly min?: number;
  /** Most length in bytes. */
  readonly max?: number;
}

/**
 * Decodes a strict, canonical b64url string (no padding) with its decoded length checked; the
 * text length is checked before decoding, so an oversized value costs nothing.
 *
 * @throws {ServerError} `BAD_REQUEST` when not a string, not canonical b64url, or out of range.
 */
export function decodeB64url(value: unknown, name: string, op: string, limits: BytesLimits) {
  const min = limits.exact ?? limits.min ?? 1;
  const max = limits.exact ?? limits.max ?? min;
  const expected =
    limits.exact !== undefined
      ? `b64url of ${limits.exact} bytes`
      : `b64url of ${min} to ${max} bytes`;
  if (typeof value !== 'string' || value.length > Math.ceil((max * 4) / 3))
    throw bad(op, name, expected);
  let bytes: Uint8Array;
  try {
    bytes = fromBase64url(value);
  } catch {
    throw bad(op, name, expected);
  }
  if (bytes.length < min || bytes.length > max) throw bad(op, name, expected);
  return bytes;
}

/**
 * A required b64url field (see {@link decodeB64url}).
 *
 * @throws {ServerError} `BAD_REQUEST` when missing or malformed.
 */
export function bytesField(
  obj: JsonObject,
  name: string,
  op: string,
  limits: BytesLimits,
): Uint8Array {
  return decodeB64url(get(obj, name), name, op, limits);
}

/**
 * An optional b64url field: undefined when absent or null.
 *
 * @throws {ServerError} `BAD_REQUEST` when present and malformed.
 */
export function optionalBytesField(
  obj: JsonObject,
  name: string,
  op: string,
  limits: BytesLimits,
): Uint8Array | undefined {
  const v = get(obj, name);
  if (v === undefined || v === null) return undefined;
  return decodeB64url(v, name, op, limits);
}

/**
 * A required b64url field returned as its (validated) text, for values passed on as strings
 * (OPAQUE messages).
 *
 * @throws {ServerError} `BAD_REQUEST` when missing or malformed.
 */
export function b64urlTextField(
  obj: JsonObject,
  name: string,
  op: string,
  limits: BytesLimits,
): string {
  const v = get(obj, name);
  decodeB64url(v, name, op, limits);
  return v as string;
}

/**
 * A required account or device id (account-v1 §1: b64url of 16 bytes).
 *
 * @throws {ServerError} `BAD_REQUEST` when missing or malformed.
 */
export function idField(obj: JsonObject, name: string, op: string): string {
  const v = get(obj, name);
  if (!isId(v)) throw bad(op, name, 'an id (b64url of 16 bytes)');
  return v;
}

/**
 * An optional id: undefined when absent or null.
 *
 * @throws {ServerError} `BAD_REQUEST` when present and malformed.
 */
export function optionalIdField(obj: JsonObject, name: string, op: string): string | undefined {
  const v = get(obj, name);
  if (v === undefined || v === null) return undefined;
  return idField(obj, name, op);
}

/**
 * A path parameter that must be an id.
 *
 * @throws {ServerError} `BAD_REQUEST` when malformed.
 */
export function idParam(value: string | undefined, name: string, op: string): string {
  if (!isId(value)) throw bad(op, name, 'an id (b64url of 16 bytes)');
  return value;
}

/**
 * A non-negative decimal integer in canonical form (no sign, no leading zeros), up to `max`.
 *
 * @throws {ServerError} `BAD_REQUEST` otherwise.
 */
export function parseCount(text: string | undefined, name: string, op: string, max: number) {
  if (text === undefined || !/^(0|[1-9][0-9]{0,15})$/.test(text) || Number(text) > max)
    throw bad(op, name, `an integer from 0 to ${max}`);
  return Number(text);
}

/** Caps on what a client can make the server hold; each from the format that bounds it. */
export const LIMITS = {
  /** account-v1 §3.1: 64 devices and the header. */
  manifestBody: MAX_MANIFEST_BODY_LENGTH,
  /** Ed25519 signature. */
  signature: MANIFEST_SIGNATURE_LENGTH,
  /** account-v1 §5.3: 64 KiB of secrets, their envelope and both wraps. */
  backup: MAX_BACKUP_LENGTH,
  /** account-v1 §6: a sealed link request or response. */
  linkSealed: MAX_LINK_MESSAGE_LENGTH,
  /** SHA-256 outputs, recovery proofs and pickup secrets. */
  hash: 32,
} as const;

/** The wire form of a signed manifest, decoded to bytes but not verified. */
export interface ManifestWire {
  readonly body: Uint8Array;
  readonly signature: Uint8Array;
}

/**
 * A required `{ body, signature }` manifest object, both b64url, size-capped. Whether it verifies
 * is the route's business (422 INVALID_MANIFEST); this only rejects what is not even shaped
 * like one (400).
 *
 * @throws {ServerError} `BAD_REQUEST` when missing or ill-shaped.
 */
export function manifestField(obj: JsonObject, name: string, op: string): ManifestWire {
  const v = get(obj, name);
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw bad(op, name, 'an object {body, signature}');
  const m = v as JsonObject;
  return {
    body: decodeB64url(get(m, 'body'), `${name}.body`, op, { max: LIMITS.manifestBody }),
    signature: decodeB64url(get(m, 'signature'), `${name}.signature`, op, {
      exact: LIMITS.signature,
    }),
  };
}
