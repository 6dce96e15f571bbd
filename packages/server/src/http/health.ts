import { Hono } from 'hono';
import { ServerError } from '../errors.js';
import type { AppEnv, RouteDeps } from './_env.js';

/**
 * `GET /healthz` (checks the database) and `GET /metrics` (Prometheus text).
 *
 * @example app.route('/', healthRoutes(deps));
 */
export function healthRoutes(deps: RouteDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  app.get('/healthz', async (c) => {
    try {
      await deps.storage.ping();
    } catch (cause) {
      throw new ServerError('UNAVAILABLE', 'health', 'database unreachable', { cause });
    }
    return c.json({ status: 'ok' });
  });

  app.get('/metrics', async (c) => {
    const text = await deps.metrics.registry.metrics();
    return c.body(text, 200, { 'content-type': deps.metrics.registry.contentType });
  });

  return app;
}
