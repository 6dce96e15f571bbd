import type { MiddlewareHandler } from 'hono';
import type { AppEnv } from '../http/_env.js';
import { routeLabel } from '../http/_route.js';
import type { Logger } from '../logger.js';

/**
 * Logs one line per request with only: request id, method, route pattern, status and duration.
 * Never the path (it can hold ids), query, headers (tokens), or body (usernames, OPAQUE
 * messages). Server errors are logged by the error handler, with their stack.
 *
 * @example app.use(requestLog(logger));
 */
export function requestLog(logger: Logger): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const start = performance.now();
    await next();
    const status = c.res.status;
    const fields = {
      reqId: c.get('requestId'),
      method: c.req.method,
      route: routeLabel(c),
      status,
      ms: Math.round((performance.now() - start) * 100) / 100,
    };
    if (status >= 500) logger.warn(fields, 'request');
    else logger.info(fields, 'request');
  };
}
