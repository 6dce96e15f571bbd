// spec/http-api-v1.md "Users": the user directory, username → account id, so that a client can
// find a contact's account (and then its manifest and KeyPackages). Looked up through the
// username's blind index, like login; rate-limited per calling account.
import { Hono } from 'hono';
import { ServerError } from '../errors.js';
import { createLookupLimiter } from '../lookup-limiter.js';
import { requireAuth } from '../middleware/auth.js';
import { parseUsername } from '../username.js';
import type { AppEnv, RouteDeps } from './_env.js';

/**
 * `GET /v1/users/{username}`.
 *
 * @example app.route('/', userRoutes(deps));
 */
export function userRoutes(deps: RouteDeps): Hono<AppEnv> {
  const { storage, now } = deps;
  const app = new Hono<AppEnv>();
  const auth = requireAuth({ storage, now });
  const limiter = createLookupLimiter(storage.throttle, deps.throttleKey, now);

  app.get('/v1/users/:username', auth, async (c) => {
    const op = 'users.lookup';
    try {
      await limiter.count(c.get('session').accountId, op);
    } catch (err) {
      if (ServerError.is(err, 'RATE_LIMITED')) deps.metrics.rateLimited.inc();
      throw err;
    }
    const { normalized } = parseUsername(c.req.param('username'), op);
    const found = await storage.accounts.findLogin(normalized);
    if (!found) throw new ServerError('NOT_FOUND', op, 'user not found');
    return c.json({ accountId: found.accountId });
  });

  return app;
}
