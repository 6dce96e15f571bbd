import { utf8Encode } from '@coffer/crypto';
import { SdkError } from './errors.js';

/** spec account-v1 §1: 3 to 32 characters after NFC, trimming and lowercasing. */
const USERNAME_PATTERN = /^[a-z0-9][a-z0-9._-]{1,30}[a-z0-9]$/;
/**
 * spec account-v1 §3.1: a device name is 1 to 64 bytes of UTF-8.
 *
 * @example
 * const fits = new TextEncoder().encode(name).length <= MAX_DEVICE_NAME_BYTES;
 */
export const MAX_DEVICE_NAME_BYTES = 64;
/**
 * Bounds the work a password costs before key stretching. 1024 characters is far beyond any
 * password manager's output.
 *
 * @example <input maxLength={MAX_PASSWORD_LENGTH} type="password" />
 */
export const MAX_PASSWORD_LENGTH = 1024;
/**
 * The name a device gets when the caller gives none.
 *
 * @example
 * await client.signup('alice', password); // device named DEFAULT_DEVICE_NAME
 */
export const DEFAULT_DEVICE_NAME = 'Coffer device';

// C0, DEL and C1 control characters (spec §3.1 forbids them in device names).
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/**
 * The canonical form of a username, as the server compares it: NFC, trimmed, lowercased.
 *
 * @throws {SdkError} `INVALID_USERNAME` when the result breaks the rules (3 to 32 of `a-z 0-9 . _ -`,
 *   starting and ending with a letter or digit).
 * @example normalizeUsername('  Alice ') // 'alice'
 */
export function normalizeUsername(username: string, operation = 'normalizeUsername'): string {
  if (typeof username !== 'string') {
    throw new SdkError('INVALID_ARGUMENT', operation, '"username" expected a string');
  }
  const normal = username.normalize('NFC').trim().toLowerCase();
  if (!USERNAME_PATTERN.test(normal)) {
    throw new SdkError(
      'INVALID_USERNAME',
      operation,
      'a username is 3 to 32 characters of a-z, 0-9, ".", "_" and "-", starting and ending with a letter or digit',
    );
  }
  return normal;
}

/**
 * The canonical form of a device name: NFC and trimmed.
 *
 * @throws {SdkError} `INVALID_ARGUMENT` when it is empty, over 64 bytes of UTF-8 or contains
 *   control characters.
 * @example normalizeDeviceName(' laptop ') // 'laptop'
 */
export function normalizeDeviceName(name: string, operation = 'normalizeDeviceName'): string {
  if (typeof name !== 'string') {
    throw new SdkError('INVALID_ARGUMENT', operation, '"deviceName" expected a string');
  }
  const normal = name.normalize('NFC').trim();
  const length = utf8Encode(normal).length;
  if (length === 0 || length > MAX_DEVICE_NAME_BYTES || CONTROL.test(normal)) {
    throw new SdkError(
      'INVALID_ARGUMENT',
      operation,
      `"deviceName" expected 1 to ${MAX_DEVICE_NAME_BYTES} bytes of UTF-8 without control characters, got ${length} bytes`,
    );
  }
  return normal;
}

/**
 * @internal Checks a password argument without ever echoing it.
 *
 * @example
 * checkPassword('client.login', 'password', password);
 */
export function checkPassword(
  operation: string,
  argument: string,
  password: unknown,
): asserts password is string {
  if (
    typeof password !== 'string' ||
    password.length === 0 ||
    password.length > MAX_PASSWORD_LENGTH
  ) {
    throw new SdkError(
      'INVALID_ARGUMENT',
      operation,
      `"${argument}" expected a non-empty string of at most ${MAX_PASSWORD_LENGTH} characters`,
    );
  }
}
