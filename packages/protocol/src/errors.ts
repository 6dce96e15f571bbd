/**
 * Every error code `@coffer/protocol` throws. Codes are stable API: each is documented in
 * `README.md` (a test keeps the two in step) and never renamed, only added.
 */
export const PROTOCOL_ERROR_CODES = [
  'INVALID_ARGUMENT',
  'UNSUPPORTED_VERSION',
  'INVALID_MANIFEST',
  'BAD_SIGNATURE',
  'ACCOUNT_MISMATCH',
  'IDENTITY_MISMATCH',
  'MANIFEST_ROLLBACK',
  'MANIFEST_FORK',
  'MANIFEST_GAP',
  'INVALID_BACKUP',
  'BACKUP_MISMATCH',
  'DECRYPTION_FAILED',
  'INVALID_RECOVERY_CODE',
  'INVALID_LINK_CODE',
  'MLS_MESSAGE_REJECTED',
  'GROUP_INACTIVE',
  'INVALID_GROUP_STATE',
  'COMMIT_NOT_ALLOWED',
  'INVALID_CONVERSATION',
  'INVALID_CONTENT',
  'PROPOSALS_PENDING',
] as const;

/** A stable string naming what went wrong; see {@link PROTOCOL_ERROR_CODES} and the README. */
export type ProtocolErrorCode = (typeof PROTOCOL_ERROR_CODES)[number];

/**
 * The one error class of `@coffer/protocol`: a stable `code`, the `operation` that failed
 * (`"manifest.verify"`), and a lowercase message that never contains keys, seeds, codes or
 * plaintext (ids and sequence numbers are fine).
 *
 * @example
 * ```ts
 * try {
 *   await verifyManifest(manifest, { accountId, trusted });
 * } catch (err) {
 *   if (ProtocolError.is(err, 'MANIFEST_ROLLBACK')) alarm('the server replayed an old device list');
 *   else throw err;
 * }
 * ```
 */
export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';
  readonly code: ProtocolErrorCode;
  readonly operation: string;

  constructor(code: ProtocolErrorCode, operation: string, message: string) {
    super(`${operation}: ${message}`);
    this.code = code;
    this.operation = operation;
  }

  /**
   * True when `err` is a {@link ProtocolError} and, if `code` is given, has that code. Checks the
   * shape rather than the prototype, so it works across copies of this package.
   *
   * @example if (ProtocolError.is(err, 'DECRYPTION_FAILED')) showWrongPassword();
   */
  static is(err: unknown, code?: ProtocolErrorCode): err is ProtocolError {
    if (typeof err !== 'object' || err === null) return false;
    const e = err as { name?: unknown; code?: unknown; operation?: unknown };
    if (e.name !== 'ProtocolError' || typeof e.operation !== 'string') return false;
    if (!(PROTOCOL_ERROR_CODES as readonly unknown[]).includes(e.code)) return false;
    return code === undefined || e.code === code;
  }
}

/** @internal A caller mistake; `message` names the argument and what was expected. */
export function invalidArgument(operation: string, message: string): ProtocolError {
  return new ProtocolError('INVALID_ARGUMENT', operation, message);
}

/** @internal Throws `INVALID_ARGUMENT` unless `value` is a Uint8Array of `min` to `max` bytes. */
export function assertBytes(
  operation: string,
  name: string,
  value: unknown,
  min: number,
  max = min,
): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array)) {
    throw invalidArgument(operation, `"${name}" expected a Uint8Array`);
  }
  if (value.length < min || value.length > max) {
    const want =
      min === max
        ? `${min}`
        : max === Number.MAX_SAFE_INTEGER
          ? `at least ${min}`
          : `${min} to ${max}`;
    throw invalidArgument(operation, `"${name}" expected ${want} bytes, got ${value.length}`);
  }
}

/** @internal Throws `INVALID_ARGUMENT` unless `value` is a plain object. */
export function assertObject(
  operation: string,
  name: string,
  value: unknown,
): asserts value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw invalidArgument(operation, `"${name}" expected an object`);
  }
}
