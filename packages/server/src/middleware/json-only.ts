import type { MiddlewareHandler } from 'hono';
import { ServerError } from '../errors.js';
import type { AppEnv } from '../http/_env.js';

/** `application/json`, optionally with `charset=utf-8` (any case), nothing else. */
const JSON_TYPE = /^application\/json\s*(;\s*charset\s*=\s*"?utf-8"?\s*)?$/i;

/**
 * Refuses a non-empty request body that is not declared as JSON (`415 UNSUPPORTED_MEDIA_TYPE`).
 * Runs after {@link bodyLimit}, which read the body: an empty one passes whatever its type.
 *
 * @throws {ServerError} `UNSUPPORTED_MEDIA_TYPE`.
 * @example app.use(bodyLimit()); app.use(jsonOnly());
 */
export function jsonOnly(): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const body = c.get('body');
    if (body !== undefined && body.length > 0) {
      const type = c.req.header('content-type');
      if (type === undefined || !JSON_TYPE.test(type.trim()))
        throw new ServerError('UNSUPPORTED_MEDIA_TYPE', 'http.body');
    }
    return next();
  };
}
