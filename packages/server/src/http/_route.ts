import { matchedRoutes } from 'hono/route';
import type { AppContext } from './_env.js';

/**
 * The route pattern a request matched (`/v1/links/:linkId`), never its concrete path, so that
 * logs and metric labels hold no ids and have a bounded set of values; `unmatched` for a 404.
 */
export function routeLabel(c: AppContext): string {
  const routes = matchedRoutes(c);
  for (let i = routes.length - 1; i >= 0; i--) {
    const r = routes[i]!;
    if (r.method !== 'ALL') return r.path;
  }
  return 'unmatched';
}
