// spec/http-api-v1.md "Devices".
import { toBase64url } from '@coffer/crypto';
import { Hono } from 'hono';
import { ServerError } from '../errors.js';
import { requireAuth } from '../middleware/auth.js';
import { UNLISTED_SESSION_GRACE_MS } from '../sessions.js';
import { StorageConflictError, type StoredBackup, type StoredManifest } from '../storage/types.js';
import type { AppEnv, RouteDeps } from './_env.js';
import { readJson } from './_json.js';
import { checkBackup, checkNextManifest } from './_manifests.js';
import { decodeB64url, idParam, LIMITS, manifestField, parseCount } from './validate.js';

/** Manifests one history page returns (spec). */
export const HISTORY_PAGE = 100;
const MAX_SEQ = 0xffffffff;

function manifestJson(m: StoredManifest) {
  return { body: toBase64url(m.body), signature: toBase64url(m.signature) };
}

/**
 * The account's manifests and backup, and other accounts' manifests.
 *
 * @example app.route('/', deviceRoutes(deps));
 */
export function deviceRoutes(deps: RouteDeps): Hono<AppEnv> {
  const { storage, now } = deps;
  const app = new Hono<AppEnv>();
  const auth = requireAuth({ storage, now });

  app.get('/v1/manifest', auth, async (c) => {
    const latest = await storage.manifests.latest(c.get('session').accountId);
    if (!latest) throw new ServerError('NOT_FOUND', 'manifest.get');
    return c.json({ manifest: manifestJson(latest) });
  });

  app.get('/v1/manifest/history', auth, async (c) => {
    const op = 'manifest.history';
    const afterText = c.req.query('after');
    const after = afterText === undefined ? 0 : parseCount(afterText, 'after', op, MAX_SEQ);
    const list = await storage.manifests.history(c.get('session').accountId, after, HISTORY_PAGE);
    return c.json({ manifests: list.map(manifestJson) });
  });

  app.put('/v1/manifest', auth, async (c) => {
    const op = 'manifest.put';
    const accountId = c.get('session').accountId;
    const body = readJson(c, op);
    const manifest = manifestField(body, 'manifest', op);
    const backupValue = Object.hasOwn(body, 'backup') ? body.backup : undefined;
    const backup =
      backupValue === undefined || backupValue === null
        ? undefined
        : decodeB64url(backupValue, 'backup', op, { max: LIMITS.backup });
    const next = await checkNextManifest(storage, accountId, manifest, op);
    const { body: newBody, currentBody } = next;
    let storedBackup: StoredBackup | undefined;
    if (newBody.backupVersion !== currentBody.backupVersion) {
      if (newBody.backupVersion < currentBody.backupVersion)
        throw new ServerError('INVALID_MANIFEST', op, 'backup version went backwards');
      if (!backup)
        throw new ServerError('INVALID_MANIFEST', op, 'a new backup version needs its backup');
      await checkBackup(backup, newBody, op);
      storedBackup = { version: newBody.backupVersion, data: backup };
    } else {
      if (!sameBytes(newBody.backupHash, currentBody.backupHash))
        throw new ServerError('INVALID_MANIFEST', op, 'backup hash changed without a new version');
      if (backup)
        throw new ServerError('INVALID_MANIFEST', op, 'a backup needs a new backup version');
    }
    try {
      await storage.manifests.append(
        accountId,
        { seq: newBody.seq, body: manifest.body, signature: manifest.signature },
        {
          backup: storedBackup,
          revokedDeviceIds: next.revokedDeviceIds,
          // Sessions no manifest authorises (no device, or one never added) end here once past
          // the grace a new device needs to add itself (spec "Session and account").
          endUnlisted: {
            listed: newBody.devices.map((d) => d.id),
            createdBefore: now() - UNLISTED_SESSION_GRACE_MS,
          },
        },
      );
    } catch (err) {
      if (err instanceof StorageConflictError && err.what === 'manifestSeq')
        throw new ServerError('MANIFEST_CONFLICT', op);
      throw err;
    }
    deps.events.publish(accountId, {
      type: 'manifest',
      seq: newBody.seq,
      revokedDeviceIds: next.revokedDeviceIds,
    });
    return c.json({ seq: newBody.seq });
  });

  app.get('/v1/accounts/:accountId/manifest', auth, async (c) => {
    const op = 'accounts.manifest';
    const accountId = idParam(c.req.param('accountId'), 'accountId', op);
    const latest = await storage.manifests.latest(accountId);
    if (!latest) throw new ServerError('NOT_FOUND', op, 'account not found');
    return c.json({ manifest: manifestJson(latest) });
  });

  app.get('/v1/backup', auth, async (c) => {
    const backup = await storage.backups.get(c.get('session').accountId);
    if (!backup) throw new ServerError('NOT_FOUND', 'backup.get');
    return c.json({ backup: toBase64url(backup.data), version: backup.version });
  });

  return app;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
