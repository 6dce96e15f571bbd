import { fromBase64url, randomBytes, toBase64url } from '@coffer/crypto';

/** Account and device ids are 16 random bytes (spec §1). */
export const ID_LENGTH = 16;
/** Their b64url text form is exactly 22 characters. */
export const ID_TEXT_LENGTH = 22;

/**
 * A fresh account id: 16 random bytes as b64url (spec §1). The server picks it at signup.
 *
 * @example const accountId = newAccountId(); // "3q2-7wAAAAAAAAAAAAAAAA"-like, 22 characters
 */
export function newAccountId(): string {
  return toBase64url(randomBytes(ID_LENGTH));
}

/**
 * A fresh device id: 16 random bytes as b64url (spec §1). Each device picks its own.
 *
 * @example const deviceId = newDeviceId();
 */
export function newDeviceId(): string {
  return toBase64url(randomBytes(ID_LENGTH));
}

/**
 * True when `text` is the canonical b64url form of 16 bytes (an account or device id). Never
 * throws.
 *
 * @example isId(newDeviceId()) // true; isId('alice') // false
 */
export function isId(text: unknown): text is string {
  return idBytes(text) !== undefined;
}

/** @internal The 16 bytes of an id, or undefined when `text` is not one. */
export function idBytes(text: unknown): Uint8Array | undefined {
  if (typeof text !== 'string' || text.length !== ID_TEXT_LENGTH) return undefined;
  try {
    const bytes = fromBase64url(text);
    return bytes.length === ID_LENGTH ? bytes : undefined;
  } catch {
    return undefined;
  }
}
