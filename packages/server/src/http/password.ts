// spec/http-api-v1.md "Password change and recovery".
import { constantTimeEqual, sha256, toBase64url } from '@coffer/crypto';
import { Hono } from 'hono';
import { ServerError } from '../errors.js';
import { assertRecentAuth, requireAuth } from '../middleware/auth.js';
import { OPAQUE_SIZES, registrationResponse } from '../opaque.js';
import { issueSession, RECOVERY_TTL_MS, SESSION_TTL_MS } from '../sessions.js';
import { StorageConflictError } from '../storage/types.js';
import { parseUsername } from '../username.js';
import type { AppEnv, RouteDeps } from './_env.js';
import { readJson } from './_json.js';
import { checkBackup, checkNextManifest } from './_manifests.js';
import { b64urlTextField, bytesField, LIMITS, manifestField, optionalIdField } from './validate.js';

// Compared against for unknown names, so both paths hash and compare the same amount.
const NO_VERIFIER = new Uint8Array(32);

/**
 * Recovery (`POST /v1/recover/start`) and password change (`POST /v1/password/start|finish`).
 *
 * @example app.route('/', passwordRoutes(deps));
 */
export function passwordRoutes(deps: RouteDeps): Hono<AppEnv> {
  const { storage, now } = deps;
  const app = new Hono<AppEnv>();
  const auth = requireAuth({ storage, now, allowRecovery: true });

  app.post('/v1/recover/start', async (c) => {
    const op = 'recover.start';
    const body = readJson(c, op);
    const username = parseUsername(body.username, op);
    const proof = bytesField(body, 'proof', op, { exact: LIMITS.hash });
    const keys = await deps.throttle.keys(username.normalized, deps.clientAddress(c));
    try {
      await deps.throttle.admit(keys, op);
    } catch (err) {
      deps.metrics.rateLimited.inc();
      throw err;
    }
    const found = await storage.accounts.findByUsername(username.normalized);
    const verifier = found ? await storage.accounts.recoveryVerifier(found.accountId) : undefined;
    const match = constantTimeEqual(await sha256(proof), verifier ?? NO_VERIFIER);
    if (!found || !verifier || !match) throw new ServerError('INVALID_CREDENTIALS', op);
    const [manifest, backup] = await Promise.all([
      storage.manifests.latest(found.accountId),
      storage.backups.get(found.accountId),
    ]);
    if (!manifest || !backup) throw new ServerError('INVALID_CREDENTIALS', op);
    const { token, expiresAt } = await issueSession(storage.sessions, {
      accountId: found.accountId,
      deviceId: null,
      kind: 'recovery',
      now: now(),
      ttlMs: RECOVERY_TTL_MS,
    });
    await deps.throttle.confirm(keys);
    return c.json({
      accountId: found.accountId,
      recoveryToken: token,
      expiresAt,
      manifest: { body: toBase64url(manifest.body), signature: toBase64url(manifest.signature) },
      backup: toBase64url(backup.data),
    });
  });

  app.post('/v1/password/start', auth, async (c) => {
    const op = 'password.start';
    const session = c.get('session');
    assertRecentAuth(session, now(), op);
    const body = readJson(c, op);
    const request = b64urlTextField(body, 'registrationRequest', op, {
      exact: OPAQUE_SIZES.registrationRequest,
    });
    const response = await registrationResponse(deps.opaqueSetup, session.accountId, request, op);
    return c.json({ registrationResponse: response });
  });

  app.post('/v1/password/finish', auth, async (c) => {
    const op = 'password.finish';
    const session = c.get('session');
    assertRecentAuth(session, now(), op);
    const body = readJson(c, op);
    const record = bytesField(body, 'registrationRecord', op, {
      exact: OPAQUE_SIZES.registrationRecord,
    });
    const manifest = manifestField(body, 'manifest', op);
    const backup = bytesField(body, 'backup', op, { max: LIMITS.backup });
    const deviceId = optionalIdField(body, 'deviceId', op);
    // A recovery ends in a session for the recovering device, which the new manifest must list:
    // a session no manifest authorises would outlive the recovery meant to end such sessions.
    if (session.kind === 'recovery' && deviceId === undefined)
      throw new ServerError('BAD_REQUEST', op, '"deviceId" is required with a recovery token');
    const accountId = session.accountId;
    const next = await checkNextManifest(storage, accountId, manifest, op);
    if (next.body.backupVersion !== next.currentBody.backupVersion + 1)
      throw new ServerError(
        'INVALID_MANIFEST',
        op,
        'a password change must commit the next backup',
      );
    // changePassword cannot revoke sessions; removing a device is a separate PUT /v1/manifest.
    if (next.revokedDeviceIds.length > 0)
      throw new ServerError('INVALID_MANIFEST', op, 'a password change must not remove devices');
    const listed = next.body.devices.map((d) => d.id);
    if (session.kind === 'recovery' && !listed.includes(deviceId!))
      throw new ServerError('INVALID_MANIFEST', op, 'the manifest does not list the device');
    await checkBackup(backup, next.body, op);
    try {
      await storage.accounts.changePassword(accountId, {
        opaqueRecord: record,
        manifest: { seq: next.body.seq, body: manifest.body, signature: manifest.signature },
        backup: { version: next.body.backupVersion, data: backup },
        // spec "Password change and recovery": whoever held the old password (or a recovery
        // token) keeps no session the new manifest does not authorise. Sessions of listed
        // devices stay: removing a device is what revokes them.
        endUnlisted: {
          listed,
          createdBefore: Number.MAX_SAFE_INTEGER,
          ...(session.kind === 'session' ? { keep: session.tokenHash } : {}),
        },
      });
    } catch (err) {
      if (err instanceof StorageConflictError && err.what === 'manifestSeq')
        throw new ServerError('MANIFEST_CONFLICT', op);
      throw err;
    }
    deps.events.publish(accountId, { type: 'manifest', seq: next.body.seq, revokedDeviceIds: [] });
    if (session.kind === 'session') {
      const token = c.req.header('authorization')!.slice('bearer '.length);
      return c.json({ token, expiresAt: session.expiresAt });
    }
    // A recovery token is spent: the device gets a session of its own.
    const { token, expiresAt } = await issueSession(storage.sessions, {
      accountId,
      deviceId: deviceId ?? null,
      kind: 'session',
      now: now(),
      ttlMs: SESSION_TTL_MS,
    });
    await storage.sessions.delete(session.tokenHash);
    return c.json({ token, expiresAt });
  });

  return app;
}
