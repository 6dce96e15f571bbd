import { randomBytes, toBase64url } from '@coffer/crypto';
import type { MiddlewareHandler } from 'hono';
import type { AppEnv } from '../http/_env.js';

/** An incoming id is kept only when it is this harmless (it ends up in logs). */
const SAFE_ID = /^[A-Za-z0-9._-]{8,64}$/;

/**
 * Gives each request an id (`x-request-id`: the caller's when it is a plain token of 8 to 64
 * characters, else 12 random bytes), stored as `requestId` and echoed on the response.
 *
 * @example app.use(requestId());
 */
export function requestId(): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const incoming = c.req.header('x-request-id');
    const id = incoming && SAFE_ID.test(incoming) ? incoming : toBase64url(randomBytes(12));
    c.set('requestId', id);
    await next();
    c.res.headers.set('x-request-id', id);
  };
}
