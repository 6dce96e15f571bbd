/**
 * Every error code `@coffer/crypto` throws. Codes are stable API: they are documented in
 * `README.md` (a test keeps the two in step) and never renamed, only added.
 */
export const ERROR_CODES = [
  'INVALID_ARGUMENT',
  'INVALID_ENCODING',
  'INVALID_KEY',
  'DECRYPTION_FAILED',
  'UNSUPPORTED_VERSION',
  'LIMIT_EXCEEDED',
  'UNSUPPORTED_RUNTIME',
] as const;

/** A stable string naming what went wrong; see {@link ERROR_CODES}. */
export type CryptoErrorCode = (typeof ERROR_CODES)[number];

/**
 * The one error class of `@coffer/crypto`. `code` is stable; `operation` names the public
 * function that failed (`"envelope.open"`). Messages never contain key material, plaintext or
 * ciphertext.
 *
 * @example
 * ```ts
 * try {
 *   await openEnvelope(key, bytes);
 * } catch (err) {
 *   if (CryptoError.is(err, 'DECRYPTION_FAILED')) console.warn('tampered or wrong key');
 *   else throw err;
 * }
 * ```
 */
export class CryptoError extends Error {
  override readonly name = 'CryptoError';
  readonly code: CryptoErrorCode;
  readonly operation: string;

  constructor(code: CryptoErrorCode, operation: string, message: string, options?: ErrorOptions) {
    super(`${operation}: ${message}`, options);
    this.code = code;
    this.operation = operation;
  }

  /**
   * True when `err` is a {@link CryptoError}, and, if `code` is given, has that code. Works across
   * copies of this package (it checks the shape, not the prototype).
   */
  static is(err: unknown, code?: CryptoErrorCode): err is CryptoError {
    if (typeof err !== 'object' || err === null) return false;
    const e = err as { name?: unknown; code?: unknown; operation?: unknown };
    if (e.name !== 'CryptoError' || typeof e.operation !== 'string') return false;
    if (!(ERROR_CODES as readonly unknown[]).includes(e.code)) return false;
    return code === undefined || e.code === code;
  }
}

/** The single opaque failure for anything an attacker can change in a ciphertext. */
export function decryptionFailed(operation: string): CryptoError {
  return new CryptoError('DECRYPTION_FAILED', operation, 'decryption failed');
}

/** Throws `INVALID_ARGUMENT` unless `value` is a Uint8Array (of `length` bytes, if given). */
export function assertBytes(
  operation: string,
  name: string,
  value: unknown,
  length?: number,
): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array)) {
    throw new CryptoError('INVALID_ARGUMENT', operation, `"${name}" expected a Uint8Array`);
  }
  if (length !== undefined && value.length !== length) {
    throw new CryptoError(
      'INVALID_ARGUMENT',
      operation,
      `"${name}" expected ${length} bytes, got ${value.length}`,
    );
  }
}
