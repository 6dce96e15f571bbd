import type { MiddlewareHandler } from 'hono';
import { ServerError } from '../errors.js';
import type { AppEnv } from '../http/_env.js';

/** spec/http-api-v1.md: request bodies are at most 256 KiB. */
export const MAX_BODY_BYTES = 256 * 1024;

const NO_BODY = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * Reads the request body once, refusing more than `maxBytes` (`413 PAYLOAD_TOO_LARGE`) from the
 * content-length header before reading, or while reading when there is none. The bytes are
 * stored as `body` for the routes; GET and HEAD bodies are not read.
 *
 * @throws {ServerError} `PAYLOAD_TOO_LARGE`; `BAD_REQUEST` when the body cannot be read.
 * @example app.use(bodyLimit(MAX_BODY_BYTES));
 */
export function bodyLimit(maxBytes: number = MAX_BODY_BYTES): MiddlewareHandler<AppEnv> {
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
    try {
      for (;;) {
        const { done, value } = await reader.read();
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
