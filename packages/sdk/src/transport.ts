import { asObject, type JsonObject } from './_json.js';
import { SdkError, type SdkErrorCode } from './errors.js';

// The thin network layer: one JSON request → one JSON answer or one SdkError. It knows the
// conventions of packages/server/spec/http-api-v1.md ("Conventions") and nothing about what the
// routes mean; `_api.ts` types the routes on top of it.

/**
 * Default time one request may take, connection to last byte.
 *
 * @example
 * createClient({ server, store, storeKey, timeoutMs: 2 * DEFAULT_TIMEOUT_MS });
 */
export const DEFAULT_TIMEOUT_MS = 30_000;
/**
 * Bounds what a server can make the client buffer: the largest real answer is a page of 100
 * manifests of 64 devices (about 1.5 MB of JSON).
 *
 * @example if (text.length > MAX_RESPONSE_BYTES) throw tooLarge();
 */
export const MAX_RESPONSE_BYTES = 8 * 1024 * 1024;

/**
 * The body of `response` as text, read piece by piece and given up (the body cancelled) past
 * `max` bytes: a hostile server cannot make a client hold more than that, whatever its
 * content-length says or leaves unsaid.
 *
 * @throws {SdkError} `PROTOCOL_VIOLATION` past `max`; what the body's stream errors with.
 */
export async function readCappedText(
  response: Response,
  max: number,
  operation: string,
): Promise<string> {
  if (!response.body) return '';
  const reader = response.body.getReader();
  const pieces: Uint8Array[] = [];
  let length = 0;
  for (;;) {
    const next = await reader.read();
    if (next.done) break;
    length += next.value.length;
    if (length > max) {
      await reader.cancel().catch(() => {});
      throw new SdkError('PROTOCOL_VIOLATION', operation, 'the server answered too much data', {
        status: response.status,
      });
    }
    pieces.push(next.value);
  }
  const all = new Uint8Array(length);
  let at = 0;
  for (const piece of pieces) {
    all.set(piece, at);
    at += piece.length;
  }
  return new TextDecoder().decode(all);
}

/** How the server's error codes (spec "Errors" table) surface to SDK callers. */
const SERVER_CODES: Readonly<Record<string, SdkErrorCode>> = {
  BAD_REQUEST: 'INVALID_ARGUMENT',
  PAYLOAD_TOO_LARGE: 'INVALID_ARGUMENT',
  UNSUPPORTED_MEDIA_TYPE: 'INVALID_ARGUMENT',
  INVALID_USERNAME: 'INVALID_USERNAME',
  UNAUTHENTICATED: 'NOT_LOGGED_IN',
  INVALID_CREDENTIALS: 'INVALID_CREDENTIALS',
  REAUTH_REQUIRED: 'REAUTH_REQUIRED',
  FORBIDDEN: 'REAUTH_REQUIRED',
  NOT_FOUND: 'NOT_FOUND',
  USERNAME_TAKEN: 'USERNAME_TAKEN',
  MANIFEST_CONFLICT: 'CONFLICT',
  CONFLICT: 'CONFLICT',
  // Delivery refusals of a well-behaved server (spec "Delivery"): a commit that lost its epoch
  // to another member's (the conversations layer catches up and retries first), and a Welcome
  // to a device that holds too many unacknowledged ones. Neither says anything about the
  // server's honesty.
  EPOCH_CONFLICT: 'CONFLICT',
  QUEUE_FULL: 'CONFLICT',
  // The server refused a manifest or backup this client made: either a bug on one side or a
  // server that does not follow the protocol; in both cases nothing was changed.
  INVALID_MANIFEST: 'PROTOCOL_VIOLATION',
  RATE_LIMITED: 'RATE_LIMITED',
  QUOTA_EXCEEDED: 'QUOTA_EXCEEDED',
  INTERNAL: 'SERVER_ERROR',
  UNAVAILABLE: 'SERVER_ERROR',
};

/**
 * A plain `fetch`-shaped function: the global one, undici's, or a Hono app's `request`.
 *
 * @example
 * const fetch: FetchLike = (url, init) => app.request(url, init); // a Hono app, in-process
 */
export type FetchLike = (url: string, init: RequestInit) => Promise<Response> | Response;

/**
 * Options of {@link createTransport}.
 *
 * @example
 * createTransport({ server: 'https://coffer.example.com', timeoutMs: 10_000 });
 */
export interface TransportOptions {
  /** Base URL of the server, e.g. `https://coffer.example.com` (a path prefix is kept). */
  readonly server: string;
  /** Default: the global `fetch`. */
  readonly fetch?: FetchLike;
  /** Per request; default {@link DEFAULT_TIMEOUT_MS}. */
  readonly timeoutMs?: number;
}

/**
 * One request. `body` is sent as JSON; bytes must already be b64url strings.
 *
 * @example
 * await transport.request('POST', '/v1/logout', { operation: 'client.logout', token });
 */
export interface RequestOptions {
  /** The public operation on whose behalf this runs, for error messages (`client.login`). */
  readonly operation: string;
  readonly body?: unknown;
  /** Sent as `authorization: Bearer <token>`. */
  readonly token?: string;
  readonly signal?: AbortSignal;
}

/**
 * Sends JSON requests to one Coffer server.
 *
 * @example
 * ```ts
 * const transport = createTransport({ server: 'https://coffer.example.com' });
 * const session = await transport.request('GET', '/v1/session', { operation: 'client.whoami', token });
 * ```
 */
export interface Transport {
  /**
   * Resolves with the response's JSON object, or undefined for `204 No Content`.
   *
   * @throws {SdkError} `NETWORK` (unreachable, timed out), `ABORTED` (the caller's signal),
   *   `SERVER_ERROR` (5xx), `RATE_LIMITED` (with `retryAfter`), the code mapped from the
   *   server's error body, or `PROTOCOL_VIOLATION` for an answer that is not the JSON the API
   *   promises.
   */
  request(method: string, path: string, options: RequestOptions): Promise<JsonObject | undefined>;
}

/**
 * Makes the {@link Transport} for a server base URL.
 *
 * @throws {SdkError} `INVALID_ARGUMENT` when `server` is not an http(s) URL.
 * @example
 * ```ts
 * // In-process against a Hono app, no socket:
 * const transport = createTransport({ server: 'http://coffer.test', fetch: (url, init) => app.request(url, init) });
 * ```
 */
export function createTransport(options: TransportOptions): Transport {
  const base = parseBase(options.server);
  const fetchFn: FetchLike = options.fetch ?? ((url, init) => globalThis.fetch(url, init));
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (!Number.isSafeInteger(timeoutMs) || timeoutMs <= 0) {
    throw new SdkError(
      'INVALID_ARGUMENT',
      'createTransport',
      '"timeoutMs" expected a positive integer',
    );
  }

  return {
    async request(method, path, { operation, body, token, signal }) {
      const url = base + path.replace(/^\//, '');
      const headers: Record<string, string> = { accept: 'application/json' };
      if (body !== undefined) headers['content-type'] = 'application/json';
      if (token !== undefined) headers.authorization = `Bearer ${token}`;
      const timeout = AbortSignal.timeout(timeoutMs);
      const combined = signal ? AbortSignal.any([signal, timeout]) : timeout;

      let response: Response;
      let text: string;
      try {
        if (signal?.aborted) throw signal.reason;
        response = await fetchFn(url, {
          method,
          headers,
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
          signal: combined,
          redirect: 'error',
        });
        const length = Number(response.headers.get('content-length') ?? '0');
        if (length > MAX_RESPONSE_BYTES) {
          throw new SdkError('PROTOCOL_VIOLATION', operation, 'the server answered too much data', {
            status: response.status,
          });
        }
        text = await readCappedText(response, MAX_RESPONSE_BYTES, operation);
      } catch (err) {
        if (SdkError.is(err)) throw err;
        if (signal?.aborted) {
          throw new SdkError('ABORTED', operation, 'aborted by the caller', { cause: err });
        }
        const message = timeout.aborted
          ? `no answer from the server within ${timeoutMs} ms`
          : 'the server could not be reached';
        throw new SdkError('NETWORK', operation, message, { cause: err, retryable: true });
      }
      if (text.length > MAX_RESPONSE_BYTES) {
        throw new SdkError('PROTOCOL_VIOLATION', operation, 'the server answered too much data', {
          status: response.status,
        });
      }

      if (response.ok) {
        if (response.status === 204 || text === '') return undefined;
        const parsed = parseJson(text);
        if (parsed === undefined) {
          throw new SdkError(
            'PROTOCOL_VIOLATION',
            operation,
            `the server answered ${method} ${pathOnly(path)} with something other than a JSON object`,
            { status: response.status },
          );
        }
        return parsed;
      }
      throw errorFromResponse(operation, response, text);
    },
  };
}

/**
 * Maps an error response (spec "Errors") to an SdkError; `text` is the response body.
 *
 * @internal For the SDK's own non-JSON routes (attachments).
 * @example throw errorFromResponse('attachments.upload', response, await response.text());
 */
export function errorFromResponse(operation: string, response: Response, text: string): SdkError {
  const status = response.status;
  const error = parseJson(text)?.error;
  const serverCode =
    typeof error === 'object' && error !== null && typeof (error as JsonObject).code === 'string'
      ? ((error as JsonObject).code as string)
      : undefined;
  let code: SdkErrorCode | undefined = serverCode ? SERVER_CODES[serverCode] : undefined;
  if (!code) {
    if (status === 429) code = 'RATE_LIMITED';
    else if (status >= 500) code = 'SERVER_ERROR';
    else if (status === 401) code = 'NOT_LOGGED_IN';
    else if (status === 404) code = 'NOT_FOUND';
    else code = 'PROTOCOL_VIOLATION';
  }
  // Only our own wording: the server's message is not shown, so nothing it says (or a hostile
  // one injects) ends up in logs as if the SDK had said it.
  const retryAfter = code === 'RATE_LIMITED' ? parseRetryAfter(response) : undefined;
  const retryable =
    code === 'RATE_LIMITED' ||
    (code === 'SERVER_ERROR' && (status === 503 || status === 502 || status === 504));
  const describe = serverCode ? `${serverCode} (${status})` : `status ${status}`;
  return new SdkError(code, operation, messageFor(code, describe, retryAfter), {
    status,
    retryable,
    ...(retryAfter === undefined ? {} : { retryAfter }),
    ...(serverCode === undefined ? {} : { serverCode }),
  });
}

function messageFor(code: SdkErrorCode, describe: string, retryAfter: number | undefined): string {
  switch (code) {
    case 'INVALID_CREDENTIALS':
      return 'wrong username or password';
    case 'RATE_LIMITED':
      return `too many attempts; try again in ${retryAfter ?? 'a few'} seconds`;
    case 'NOT_LOGGED_IN':
      return 'the session has ended; log in again';
    case 'REAUTH_REQUIRED':
      // FORBIDDEN shares the code (the caller may not, as it is), not the remedy: a password
      // does not make a removed device a member again.
      return describe.startsWith('FORBIDDEN')
        ? 'the server does not allow this device that (not permitted, or no longer a member)'
        : 'this needs the password again';
    case 'USERNAME_TAKEN':
      return 'the username is taken';
    case 'INVALID_USERNAME':
      return 'the server refused the username';
    case 'SERVER_ERROR':
      return `the server failed: ${describe}`;
    default:
      return `the server answered ${describe}`;
  }
}

function parseRetryAfter(response: Response): number | undefined {
  const header = response.headers.get('retry-after');
  if (header === null) return undefined;
  const seconds = Number(header.trim());
  if (Number.isFinite(seconds) && seconds >= 0) return Math.ceil(seconds);
  const date = Date.parse(header);
  return Number.isNaN(date) ? undefined : Math.max(0, Math.ceil((date - Date.now()) / 1000));
}

function parseJson(text: string): JsonObject | undefined {
  try {
    return asObject(JSON.parse(text), 'response');
  } catch {
    return undefined;
  }
}

function pathOnly(path: string): string {
  const q = path.indexOf('?');
  return q < 0 ? path : path.slice(0, q);
}

/**
 * A server base URL, checked, ending in `/`.
 *
 * @internal For the SDK's own non-JSON routes (attachments).
 * @throws {SdkError} `INVALID_ARGUMENT` when `server` is not an http(s) base URL.
 * @example const url = parseBase('https://coffer.example.com') + 'v1/blobs';
 */
export function parseBase(server: string): string {
  let url: URL;
  try {
    url = new URL(server);
  } catch {
    throw new SdkError('INVALID_ARGUMENT', 'createTransport', '"server" expected an http(s) URL');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new SdkError('INVALID_ARGUMENT', 'createTransport', '"server" expected an http(s) URL');
  }
  if (url.search || url.hash || url.username || url.password) {
    throw new SdkError(
      'INVALID_ARGUMENT',
      'createTransport',
      '"server" expected a base URL without query, fragment or credentials',
    );
  }
  return url.href.endsWith('/') ? url.href : `${url.href}/`;
}
