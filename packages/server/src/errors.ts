// spec/http-api-v1.md "Conventions": the one table from error codes to HTTP statuses. Every error
// response the server sends goes through it (see `errorResponse` and the app's onError).

/**
 * Every error code the HTTP API answers with, and its status. Stable API: documented in
 * spec/http-api-v1.md (a test keeps the two in step), never renamed, only added.
 */
export const ERROR_STATUS = {
  BAD_REQUEST: 400,
  INVALID_USERNAME: 400,
  UNAUTHENTICATED: 401,
  INVALID_CREDENTIALS: 401,
  REAUTH_REQUIRED: 403,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  USERNAME_TAKEN: 409,
  MANIFEST_CONFLICT: 409,
  CONFLICT: 409,
  EPOCH_CONFLICT: 409,
  QUEUE_FULL: 409,
  PAYLOAD_TOO_LARGE: 413,
  QUOTA_EXCEEDED: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  INVALID_MANIFEST: 422,
  RATE_LIMITED: 429,
  INTERNAL: 500,
  UNAVAILABLE: 503,
} as const satisfies Record<string, number>;

export type ServerErrorCode = keyof typeof ERROR_STATUS;
export type ErrorStatus = (typeof ERROR_STATUS)[ServerErrorCode];

/** The codes, in the table's order. */
export const SERVER_ERROR_CODES = Object.keys(ERROR_STATUS) as readonly ServerErrorCode[];

/** Default messages, so that call sites cannot put anything secret in by accident. */
const DEFAULT_MESSAGE: Record<ServerErrorCode, string> = {
  BAD_REQUEST: 'malformed request',
  INVALID_USERNAME: 'username must be 3 to 32 characters: a-z, 0-9, dot, dash or underscore',
  UNAUTHENTICATED: 'missing, unknown or expired token',
  INVALID_CREDENTIALS: 'invalid credentials',
  REAUTH_REQUIRED: 'this operation needs the password proved in the last 10 minutes',
  FORBIDDEN: 'this token may not do that',
  NOT_FOUND: 'not found',
  USERNAME_TAKEN: 'username is taken',
  MANIFEST_CONFLICT: 'manifest is not the successor of the current one',
  CONFLICT: 'conflict',
  EPOCH_CONFLICT: 'the group is at another epoch; catch up and retry',
  QUEUE_FULL: "a recipient's queue is full",
  PAYLOAD_TOO_LARGE: 'request body too large',
  QUOTA_EXCEEDED: "the upload would exceed the account's storage quota",
  UNSUPPORTED_MEDIA_TYPE: 'request body must be application/json',
  INVALID_MANIFEST: 'manifest or backup does not verify',
  RATE_LIMITED: 'too many attempts; retry later',
  INTERNAL: 'internal error',
  UNAVAILABLE: 'service unavailable; retry later',
};

/**
 * The one error class of the HTTP layer: a stable `code` (mapped to a status by
 * {@link ERROR_STATUS}), the `operation` that failed, and a lowercase message that never holds
 * usernames, passwords, tokens, keys, OPAQUE messages or ciphertexts (field names are fine).
 *
 * @example
 * throw new ServerError('BAD_REQUEST', 'signup.start', '"username" expected a string');
 */
export class ServerError extends Error {
  override readonly name = 'ServerError';
  readonly code: ServerErrorCode;
  readonly operation: string;
  /** Seconds, for `RATE_LIMITED` (the `retry-after` header). */
  readonly retryAfter: number | undefined;
  /** The group's current epoch, for `EPOCH_CONFLICT` (sent in the body, so the client catches up). */
  readonly epoch: number | undefined;

  constructor(
    code: ServerErrorCode,
    operation: string,
    message?: string,
    options?: ErrorOptions & { readonly retryAfter?: number; readonly epoch?: number },
  ) {
    super(message ?? DEFAULT_MESSAGE[code], options);
    this.code = code;
    this.operation = operation;
    this.retryAfter = options?.retryAfter;
    this.epoch = options?.epoch;
  }

  /** The HTTP status for this error's code. */
  get status(): ErrorStatus {
    return ERROR_STATUS[this.code];
  }

  /** True when `err` is a ServerError (with `code`, if given); checks shape, not prototype. */
  static is(err: unknown, code?: ServerErrorCode): err is ServerError {
    if (typeof err !== 'object' || err === null) return false;
    const e = err as { name?: unknown; code?: unknown; operation?: unknown };
    if (e.name !== 'ServerError' || typeof e.operation !== 'string') return false;
    if (typeof e.code !== 'string' || !Object.hasOwn(ERROR_STATUS, e.code)) return false;
    return code === undefined || e.code === code;
  }
}

/** The JSON body of an error response: `{"error":{"code","message"}}` (and `epoch` for `EPOCH_CONFLICT`). */
export interface ErrorBody {
  readonly error: {
    readonly code: ServerErrorCode;
    readonly message: string;
    readonly epoch?: number;
  };
}

/**
 * The response for an error code: status from {@link ERROR_STATUS}, JSON body, and
 * `retry-after` for rate limiting.
 *
 * @example return errorResponse(new ServerError('NOT_FOUND', 'links.get'));
 */
export function errorResponse(err: ServerError): Response {
  const body: ErrorBody = {
    error: {
      code: err.code,
      message: err.message,
      ...(err.epoch === undefined ? {} : { epoch: err.epoch }),
    },
  };
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (err.retryAfter !== undefined) headers['retry-after'] = String(err.retryAfter);
  return new Response(JSON.stringify(body), { status: err.status, headers });
}

/**
 * The default message of a code (what `new ServerError(code, op)` says).
 *
 * @example defaultMessage('NOT_FOUND') // "not found"
 */
export function defaultMessage(code: ServerErrorCode): string {
  return DEFAULT_MESSAGE[code];
}
