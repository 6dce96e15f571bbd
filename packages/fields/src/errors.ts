/**
 * Every error code `@coffer/fields` throws. Stable API: documented in README.md (a test keeps the
 * two in step), never renamed, only added.
 */
export const FIELDS_ERROR_CODES = [
  'INVALID_ARGUMENT',
  'DECRYPTION_FAILED',
  'UNSUPPORTED_VERSION',
  'UNKNOWN_KEY',
  'KEY_IN_USE',
  'PLAINTEXT_VALUE',
  'UNSUPPORTED_OPERATION',
  'PROVIDER_UNAVAILABLE',
  'PROVIDER_ERROR',
] as const;

export type FieldsErrorCode = (typeof FIELDS_ERROR_CODES)[number];

/**
 * The one error class of `@coffer/fields`: a stable `code`, the `operation` that failed, and a
 * message that never contains keys, plaintext or ciphertext (ids such as table, column and key
 * version are fine). `retryable` is true only where trying again may succeed (an unreachable
 * key provider).
 *
 * @example
 * if (FieldsError.is(err, 'DECRYPTION_FAILED')) alert('row was tampered with or moved');
 */
export class FieldsError extends Error {
  override readonly name = 'FieldsError';
  readonly code: FieldsErrorCode;
  readonly operation: string;
  readonly retryable: boolean;

  constructor(code: FieldsErrorCode, operation: string, message: string, options?: ErrorOptions) {
    super(`${operation}: ${message}`, options);
    this.code = code;
    this.operation = operation;
    this.retryable = code === 'PROVIDER_UNAVAILABLE';
  }

  /** True when `err` is a FieldsError (with `code`, if given); checks shape, not prototype. */
  static is(err: unknown, code?: FieldsErrorCode): err is FieldsError {
    if (typeof err !== 'object' || err === null) return false;
    const e = err as { name?: unknown; code?: unknown; operation?: unknown };
    if (e.name !== 'FieldsError' || typeof e.operation !== 'string') return false;
    if (!(FIELDS_ERROR_CODES as readonly unknown[]).includes(e.code)) return false;
    return code === undefined || e.code === code;
  }
}
