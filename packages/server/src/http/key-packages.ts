// spec/http-api-v1.md "KeyPackages": upload, count and claim-once. KeyPackages are opaque to the
// server (size only); clients verify what they claim against the target's manifest.
import { toBase64url } from '@coffer/crypto';
import { Hono } from 'hono';
import { createClaimLimiter } from '../claim-limiter.js';
import { ServerError } from '../errors.js';
import { requireAuth } from '../middleware/auth.js';
import { StorageConflictError } from '../storage/types.js';
import { listedDevice } from './_devices.js';
import type { AppEnv, RouteDeps } from './_env.js';
import { readJson } from './_json.js';
import { decodeB64url, idParam } from './validate.js';

/** Largest KeyPackage accepted: a few KiB is typical; 16 KiB leaves room for extensions. */
export const MAX_KEY_PACKAGE_LENGTH = 16 * 1024;
/** KeyPackages in one upload: enough to refill in one request. */
export const MAX_KEY_PACKAGES_PER_UPLOAD = 100;
/** One-time KeyPackages one device may hold: bounds what one device makes the server store. */
export const MAX_KEY_PACKAGES_PER_DEVICE = 500;

/**
 * The KeyPackage directory.
 *
 * @example app.route('/', keyPackageRoutes(deps));
 */
export function keyPackageRoutes(deps: RouteDeps): Hono<AppEnv> {
  const { storage, now, devices } = deps;
  const app = new Hono<AppEnv>();
  const auth = requireAuth({ storage, now });
  const limiter = createClaimLimiter(storage.throttle, deps.throttleKey, now);
  const limits = { max: MAX_KEY_PACKAGE_LENGTH };

  app.post('/v1/key-packages', auth, async (c) => {
    const op = 'keyPackages.upload';
    const body = readJson(c, op);
    const list = Object.hasOwn(body, 'keyPackages') ? body.keyPackages : undefined;
    if (!Array.isArray(list) || list.length === 0 || list.length > MAX_KEY_PACKAGES_PER_UPLOAD) {
      throw new ServerError(
        'BAD_REQUEST',
        op,
        `"keyPackages" expected an array of 1 to ${MAX_KEY_PACKAGES_PER_UPLOAD} KeyPackages`,
      );
    }
    const keyPackages = list.map((v, i) => decodeB64url(v, `keyPackages[${i}]`, op, limits));
    const lastResortValue = Object.hasOwn(body, 'lastResort') ? body.lastResort : undefined;
    const lastResort =
      lastResortValue === undefined || lastResortValue === null
        ? undefined
        : decodeB64url(lastResortValue, 'lastResort', op, limits);
    const replaceValue = Object.hasOwn(body, 'replace') ? body.replace : undefined;
    if (replaceValue !== undefined && typeof replaceValue !== 'boolean')
      throw new ServerError('BAD_REQUEST', op, '"replace" expected a boolean');
    const session = c.get('session');
    const { deviceId, seq } = await listedDevice(devices, session, op);
    let available: number;
    try {
      available = await storage.keyPackages.add(
        session.accountId,
        deviceId,
        { keyPackages, ...(lastResort ? { lastResort } : {}) },
        { cap: MAX_KEY_PACKAGES_PER_DEVICE, manifestSeq: seq, replace: replaceValue === true },
      );
    } catch (err) {
      if (err instanceof StorageConflictError && err.what === 'keyPackageCap') {
        throw new ServerError(
          'CONFLICT',
          op,
          `a device may hold at most ${MAX_KEY_PACKAGES_PER_DEVICE} key packages`,
        );
      }
      // The manifest changed between the check and the write: the client looks again.
      if (err instanceof StorageConflictError && err.what === 'manifestSeq')
        throw new ServerError('CONFLICT', op, 'the manifest changed; retry');
      throw err;
    }
    return c.json({ available }, 201);
  });

  app.get('/v1/key-packages/count', auth, async (c) => {
    const op = 'keyPackages.count';
    const session = c.get('session');
    if (session.deviceId === null)
      throw new ServerError('FORBIDDEN', op, 'the session names no device');
    return c.json(await storage.keyPackages.count(session.accountId, session.deviceId));
  });

  app.post('/v1/accounts/:accountId/key-packages/claim', auth, async (c) => {
    const op = 'keyPackages.claim';
    const target = idParam(c.req.param('accountId'), 'accountId', op);
    const session = c.get('session');
    try {
      await limiter.count(session.accountId, target, op);
    } catch (err) {
      if (ServerError.is(err, 'RATE_LIMITED')) deps.metrics.rateLimited.inc();
      throw err;
    }
    const ids = (await devices.current(target))?.ids;
    if (!ids) throw new ServerError('NOT_FOUND', op, 'account not found');
    // One's own device needs no KeyPackage of its own; handing it out would only waste it.
    const wanted = target === session.accountId ? ids.filter((id) => id !== session.deviceId) : ids;
    const claimed = await storage.keyPackages.claim(target, wanted);
    return c.json({
      keyPackages: claimed.map((k) => ({
        deviceId: k.deviceId,
        keyPackage: toBase64url(k.keyPackage),
        lastResort: k.lastResort,
      })),
    });
  });

  return app;
}
