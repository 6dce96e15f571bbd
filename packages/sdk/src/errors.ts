/**
 * Every error code `@coffer/sdk` throws. Codes are stable API: each is documented in `README.md`
 * (a test keeps the two in step), never renamed, only added.
 *
 * @example for (const code of SDK_ERROR_CODES) console.log(code);
 */
export const SDK_ERROR_CODES = [
  'INVALID_ARGUMENT',
  'NOT_READY',
  'NOT_LOGGED_IN',
  'ALREADY_LOGGED_IN',
  'INVALID_USERNAME',
  'USERNAME_TAKEN',
  'INVALID_CREDENTIALS',
  'REAUTH_REQUIRED',
  'RATE_LIMITED',
  'NETWORK',
  'SERVER_ERROR',
  'PROTOCOL_VIOLATION',
  'DEVICE_REVOKED',
  'INVALID_RECOVERY_CODE',
  'INVALID_LINK_CODE',
  'LINK_EXPIRED',
  'LINK_REFUSED',
  'NOT_FOUND',
  'CONFLICT',
  'TOO_MANY_DEVICES',
  'ABORTED',
  'STORE_CORRUPT',
  'STORE_UNAVAILABLE',
  'ATTACHMENT_CORRUPT',
  'INVALID_ATTACHMENT',
  'QUOTA_EXCEEDED',
] as const;

/**
 * A stable string naming what went wrong; see {@link SDK_ERROR_CODES} and the README table.
 *
 * @example
 * const retryable: SdkErrorCode[] = ['NETWORK', 'RATE_LIMITED'];
 */
export type SdkErrorCode = (typeof SDK_ERROR_CODES)[number];

/**
 * Extra facts an {@link SdkError} may carry; none of them is secret.
 *
 * @example
 * throw new SdkError('RATE_LIMITED', 'client.login', 'too many attempts', { retryAfter: 30 });
 */
export interface SdkErrorOptions extends ErrorOptions {
  /** Whether trying the same call again later may succeed (network, 503, rate limits). */
  readonly retryable?: boolean;
  /** For `RATE_LIMITED`: seconds to wait, from the server's `retry-after`. */
  readonly retryAfter?: number;
  /** The server's own error code (`MANIFEST_CONFLICT`, `UNAVAILABLE`, …) when it sent one. */
  readonly serverCode?: string;
  /** The HTTP status, when the error came from a response. */
  readonly status?: number;
  /** For `PROTOCOL_VIOLATION`: the `@coffer/protocol` code that failed (`MANIFEST_ROLLBACK`, …). */
  readonly detail?: string;
}

/**
 * The one error class of `@coffer/sdk`. `code` is stable; `operation` names the public method
 * that failed (`"client.login"`). Messages are lowercase and never contain passwords, tokens,
 * keys, recovery or link codes; ids are fine.
 *
 * @example
 * ```ts
 * try {
 *   await client.login('alice', password);
 * } catch (err) {
 *   if (SdkError.is(err, 'INVALID_CREDENTIALS')) console.error('wrong username or password');
 *   else if (SdkError.is(err, 'RATE_LIMITED')) console.error(`try again in ${err.retryAfter} s`);
 *   else throw err;
 * }
 * ```
 */
export class SdkError extends Error {
  override readonly name = 'SdkError';
  readonly code: SdkErrorCode;
  readonly operation: string;
  readonly retryable: boolean;
  readonly retryAfter: number | undefined;
  readonly serverCode: string | undefined;
  readonly status: number | undefined;
  readonly detail: string | undefined;

  constructor(code: SdkErrorCode, operation: string, message: string, options?: SdkErrorOptions) {
    super(
      `${operation}: ${message}`,
      options?.cause === undefined ? undefined : { cause: options.cause },
    );
    this.code = code;
    this.operation = operation;
    this.retryable = options?.retryable ?? (code === 'NETWORK' || code === 'RATE_LIMITED');
    this.retryAfter = options?.retryAfter;
    this.serverCode = options?.serverCode;
    this.status = options?.status;
    this.detail = options?.detail;
  }

  /**
   * Whether `err` is an {@link SdkError}, optionally with the given code. Works across copies of
   * the package (checks the name and code, not only `instanceof`).
   *
   * @example if (SdkError.is(err, 'DEVICE_REVOKED')) showSignedOutScreen();
   */
  static is(err: unknown, code?: SdkErrorCode): err is SdkError {
    const isSdk =
      err instanceof SdkError ||
      (typeof err === 'object' &&
        err !== null &&
        (err as { name?: unknown }).name === 'SdkError' &&
        typeof (err as { code?: unknown }).code === 'string');
    return isSdk && (code === undefined || (err as SdkError).code === code);
  }
}
