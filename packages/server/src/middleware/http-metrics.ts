import type { MiddlewareHandler } from 'hono';
import type { AppEnv } from '../http/_env.js';
import { routeLabel } from '../http/_route.js';
import type { Metrics } from '../metrics.js';

/**
 * Counts every request and its duration by route pattern, method and status.
 *
 * @example app.use(httpMetrics(metrics));
 */
export function httpMetrics(metrics: Metrics): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const start = performance.now();
    await next();
    const labels = { route: routeLabel(c), method: c.req.method, status: String(c.res.status) };
    metrics.httpRequests.inc(labels);
    metrics.httpDuration.observe(labels, (performance.now() - start) / 1000);
  };
}
