import type { MiddlewareHandler } from 'hono';
import { ServerError } from '../errors.js';
import type { AppEnv } from '../http/_env.js';

/** spec/http-api-v1.md: request bodies are at most 256 KiB. */
export const MAX_BODY_BYTES = 256 * 1024;
/**
 * spec/http-api-v1.md "Conventions": a buffered body must have arrived this soon after its
 * headers (the largest, 3 MiB, at about 26 KB/s). Node's own request timeout is an hour, for
 * blob uploads; without this, any client, before authentication, could hold a connection that
 * long by sending a JSON body a byte at a time (or not at all after its headers).
 */
export const BODY_TIMEOUT_MS = 120_000;

const NO_BODY = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * Reads the request body once, refusing more than `maxBytes` (`413 PAYLOAD_TOO_LARGE`) from the
 * content-length header before reading, or while reading when there is none, and a body not
 * read to its end within `timeoutMs` (`400 BAD_REQUEST`). The bytes are stored as `body` for the
 * routes; GET and HEAD bodies are not read.
 *
 * @throws {ServerError} `PAYLOAD_TOO_LARGE`; `BAD_REQUEST` when the body cannot be read in time.
 * @example app.use(bodyLimit(MAX_BODY_BYTES));
 */
export function bodyLimit(
  maxBytes: number = MAX_BODY_BYTES,
  timeoutMs: number = BODY_TIMEOUT_MS,
): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const op = 'http.body';
    c.set('body', undefined);
    const stream = c.req.raw.body;
    if (NO_BODY.has(c.req.method) || stream === null) return next();
    const declared = c.req.header('content-length');
    if (declared !== undefined && !(Number(declared) <= maxBytes))
      throw new ServerError('PAYLOAD_TOO_LARGE', op);
    const chunks: Uint8Array[] = [];
    let total = 0;
    const reader = stream.getReader();
    // Cancelling ends a pending read with `done`; the flag tells that apart from a whole body.
    let late = false;
    const timer = setTimeout(() => {
      late = true;
      reader.cancel().catch(() => {});
    }, timeoutMs);
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (late) throw new ServerError('BAD_REQUEST', op, 'request body not received in time');
        if (done) break;
        total += value.byteLength;
        if (total > maxBytes) {
          await reader.cancel().catch(() => {});
          throw new ServerError('PAYLOAD_TOO_LARGE', op);
        }
        chunks.push(value);
      }
    } catch (err) {
      if (ServerError.is(err)) throw err;
      throw new ServerError('BAD_REQUEST', op, 'request body could not be read');
    } finally {
      clearTimeout(timer);
    }
    const body = new Uint8Array(total);
    let offset = 0;
    for (const chunk of chunks) {
      body.set(chunk, offset);
      offset += chunk.byteLength;
    }
    c.set('body', body);
    return next();
  };
}
