// spec/http-api-v1.md "Linking" (account-v1 §6). The server relays two sealed messages it cannot
// read; what it guards is who may read them: A's account for the request, and the holder of the
// pickup secret (whose SHA-256 came with the request) for the response and B's session.
import { constantTimeEqual, sha256, toBase64url } from '@coffer/crypto';
import { decodeManifestBody } from '@coffer/protocol';
import { Hono } from 'hono';
import { ServerError } from '../errors.js';
import { requireAuth } from '../middleware/auth.js';
import { issueSession, LINK_TTL_MS, SESSION_TTL_MS } from '../sessions.js';
import { StorageConflictError } from '../storage/types.js';
import { listedDevice } from './_devices.js';
import type { AppEnv, RouteDeps } from './_env.js';
import { readJson } from './_json.js';
import { bytesField, idField, LIMITS } from './validate.js';

/** account-v1 §6: a link id is 8 Crockford base32 symbols. */
const LINK_ID = /^[0-9A-HJKMNP-TV-Z]{8}$/;

function linkIdOf(value: unknown, op: string): string {
  if (typeof value !== 'string' || !LINK_ID.test(value))
    throw new ServerError('BAD_REQUEST', op, '"linkId" expected 8 Crockford base32 characters');
  return value;
}

/**
 * Device linking: create, request, status, approve or refuse, pickup.
 *
 * @example app.route('/', linkRoutes(deps));
 */
export function linkRoutes(deps: RouteDeps): Hono<AppEnv> {
  const { storage, now } = deps;
  const app = new Hono<AppEnv>();
  const auth = requireAuth({ storage, now });

  app.post('/v1/links', auth, async (c) => {
    const op = 'links.create';
    const body = readJson(c, op);
    const linkId = linkIdOf(body.linkId, op);
    const expiresAt = now() + LINK_TTL_MS;
    try {
      await storage.links.create({ linkId, accountId: c.get('session').accountId, expiresAt });
    } catch (err) {
      if (err instanceof StorageConflictError && err.what === 'link')
        throw new ServerError('CONFLICT', op, 'link id in use');
      throw err;
    }
    return c.json({ expiresAt }, 201);
  });

  app.put('/v1/links/:linkId/request', async (c) => {
    const op = 'links.request';
    const linkId = linkIdOf(c.req.param('linkId'), op);
    const body = readJson(c, op);
    const sealed = bytesField(body, 'sealed', op, { max: LIMITS.linkSealed });
    const pickupHash = bytesField(body, 'pickupHash', op, { exact: LIMITS.hash });
    const t = now();
    const link = await storage.links.get(linkId, t);
    if (!link) throw new ServerError('NOT_FOUND', op, 'link not found');
    if (link.request || !(await storage.links.setRequest(linkId, { sealed, pickupHash }, t)))
      throw new ServerError('CONFLICT', op, 'link already used');
    return c.body(null, 204);
  });

  app.get('/v1/links/:linkId', auth, async (c) => {
    const op = 'links.get';
    const linkId = linkIdOf(c.req.param('linkId'), op);
    const link = await storage.links.get(linkId, now());
    if (!link || link.accountId !== c.get('session').accountId)
      throw new ServerError('NOT_FOUND', op, 'link not found');
    if (!link.request) return c.json({ status: 'waiting' });
    if (link.refused) return c.json({ status: 'refused' });
    return c.json({ status: 'requested', sealed: toBase64url(link.request.sealed) });
  });

  app.post('/v1/links/:linkId/approve', auth, async (c) => {
    const op = 'links.approve';
    const linkId = linkIdOf(c.req.param('linkId'), op);
    const body = readJson(c, op);
    const sealed = bytesField(body, 'sealed', op, { max: LIMITS.linkSealed });
    const deviceId = idField(body, 'deviceId', op);
    // The approval makes a session for a listed device, so it must come from one: a password
    // proves the account, not a device (spec "Login"), and a session naming no device or an
    // unlisted one would otherwise hand itself a listed device's session through its own link.
    const { accountId } = await listedDevice(deps.devices, c.get('session'), op);
    const link = await storage.links.get(linkId, now());
    if (!link || link.accountId !== accountId)
      throw new ServerError('NOT_FOUND', op, 'link not found');
    if (!link.request) throw new ServerError('CONFLICT', op, 'link has no request yet');
    if (link.response) throw new ServerError('CONFLICT', op, 'link already approved');
    if (link.refused) throw new ServerError('CONFLICT', op, 'link was refused');
    const current = await storage.manifests.latest(accountId);
    if (!current || !decodeManifestBody(current.body).devices.some((d) => d.id === deviceId))
      throw new ServerError('CONFLICT', op, 'the current manifest does not list the device');
    // B has proved no password: authAt 0, so B must log in before a sensitive operation.
    const { token, tokenHash, expiresAt } = await issueSession(storage.sessions, {
      accountId,
      deviceId,
      kind: 'session',
      now: now(),
      ttlMs: SESSION_TTL_MS,
      authAt: 0,
    });
    if (!(await storage.links.setResponse(linkId, { sealed, token, expiresAt }))) {
      // Refused, approved or picked up since it was read: the session made for it goes.
      await storage.sessions.delete(tokenHash);
      throw new ServerError('CONFLICT', op, 'link was refused, approved or is gone');
    }
    return c.body(null, 204);
  });

  app.post('/v1/links/:linkId/refuse', auth, async (c) => {
    const op = 'links.refuse';
    const linkId = linkIdOf(c.req.param('linkId'), op);
    const link = await storage.links.get(linkId, now());
    if (!link || link.accountId !== c.get('session').accountId)
      throw new ServerError('NOT_FOUND', op, 'link not found');
    if (!link.request) throw new ServerError('CONFLICT', op, 'link has no request yet');
    if (link.response) throw new ServerError('CONFLICT', op, 'link already approved');
    if (!link.refused && !(await storage.links.refuse(linkId)))
      throw new ServerError('CONFLICT', op, 'link already approved');
    return c.body(null, 204);
  });

  app.post('/v1/links/:linkId/pickup', async (c) => {
    const op = 'links.pickup';
    const linkId = linkIdOf(c.req.param('linkId'), op);
    const body = readJson(c, op);
    const pickup = bytesField(body, 'pickup', op, { exact: LIMITS.hash });
    const link = await storage.links.get(linkId, now());
    const hash = await sha256(pickup);
    // A wrong secret looks exactly like no link at all.
    if (!link?.request || !constantTimeEqual(hash, link.request.pickupHash))
      throw new ServerError('NOT_FOUND', op, 'link not found');
    if (link.refused) {
      await storage.links.delete(linkId);
      return c.json({ status: 'refused' });
    }
    if (!link.response) return c.json({ status: 'waiting' });
    await storage.links.delete(linkId);
    return c.json({
      status: 'approved',
      sealed: toBase64url(link.response.sealed),
      accountId: link.accountId,
      token: link.response.token,
      expiresAt: link.response.expiresAt,
    });
  });

  return app;
}
