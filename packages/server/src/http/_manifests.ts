// The server's manifest and backup checks (account-v1 §3.3 with trusted = the account's current
// manifest, and §5.3), shared by signup, password change and manifest upload. Any failure of a
// manifest or backup to verify is 422 INVALID_MANIFEST; a validly signed manifest whose seq is not
// current + 1 is 409 MANIFEST_CONFLICT (another device won, or the client is behind).
import { constantTimeEqual, sha256 } from '@coffer/crypto';
import {
  decodeBackup,
  decodeManifestBody,
  type ManifestBody,
  ProtocolError,
  type SignedManifest,
  verifyManifest,
} from '@coffer/protocol';
import { ServerError } from '../errors.js';
import type { Storage, StoredManifest } from '../storage/types.js';

function invalid(op: string, what: string, cause?: unknown): ServerError {
  return new ServerError('INVALID_MANIFEST', op, what, cause ? { cause } : undefined);
}

/** Protocol failures are the client's (422); anything else is a bug and propagates (500). */
function mapProtocol(err: unknown, op: string): never {
  if (ProtocolError.is(err))
    throw invalid(op, `manifest does not verify (${err.code.toLowerCase()})`, err);
  throw err;
}

/**
 * account-v1 §5.3: the backup decodes, belongs to the manifest's account and version, and its
 * SHA-256 is the manifest's backupHash.
 *
 * @throws {ServerError} `INVALID_MANIFEST`.
 */
export async function checkBackup(backup: Uint8Array, body: ManifestBody, op: string) {
  let decoded: ReturnType<typeof decodeBackup>;
  try {
    decoded = decodeBackup(backup);
  } catch (err) {
    if (ProtocolError.is(err)) throw invalid(op, 'backup does not decode', err);
    throw err;
  }
  if (decoded.accountId !== body.accountId || decoded.version !== body.backupVersion)
    throw invalid(op, 'backup is not the one the manifest commits to');
  if (!constantTimeEqual(await sha256(backup), body.backupHash))
    throw invalid(op, 'backup hash does not match the manifest');
}

/**
 * The first manifest of an account (signup): verifies with no trusted predecessor, seq 1, this
 * account, lists `deviceId`, backupVersion 1 committing `backup`.
 *
 * @throws {ServerError} `INVALID_MANIFEST`.
 */
export async function checkFirstManifest(
  manifest: SignedManifest,
  backup: Uint8Array,
  accountId: string,
  deviceId: string,
  op: string,
): Promise<ManifestBody> {
  let body: ManifestBody;
  try {
    body = await verifyManifest(manifest, { accountId });
  } catch (err) {
    mapProtocol(err, op);
  }
  if (body.seq !== 1) throw invalid(op, 'the first manifest must have seq 1');
  if (!body.devices.some((d) => d.id === deviceId))
    throw invalid(op, 'the manifest does not list the device');
  if (body.backupVersion !== 1)
    throw invalid(op, 'the first manifest must commit backup version 1');
  await checkBackup(backup, body, op);
  return body;
}

/** What a verified successor manifest changes. */
export interface NextManifest {
  readonly body: ManifestBody;
  readonly current: StoredManifest;
  readonly currentBody: ManifestBody;
  /** Devices the current manifest lists and the new one does not. */
  readonly revokedDeviceIds: readonly string[];
}

/**
 * Verifies `manifest` as the successor of the account's current manifest: identity pinned,
 * trusted = current, seq = current + 1.
 *
 * @throws {ServerError} `INVALID_MANIFEST`; `MANIFEST_CONFLICT`; `NOT_FOUND` when the account
 *   has no manifest (deleted meanwhile).
 */
export async function checkNextManifest(
  storage: Storage,
  accountId: string,
  manifest: SignedManifest,
  op: string,
): Promise<NextManifest> {
  const current = await storage.manifests.latest(accountId);
  if (!current) throw new ServerError('NOT_FOUND', op, 'account not found');
  const trusted: SignedManifest = { body: current.body, signature: current.signature };
  const currentBody = decodeManifestBody(current.body);
  let body: ManifestBody;
  try {
    body = await verifyManifest(manifest, {
      accountId,
      identityKey: currentBody.identityKey,
      trusted,
    });
  } catch (err) {
    if (
      ProtocolError.is(err, 'MANIFEST_ROLLBACK') ||
      ProtocolError.is(err, 'MANIFEST_GAP') ||
      (ProtocolError.is(err, 'MANIFEST_FORK') && sameSeq(manifest, current.seq))
    ) {
      throw new ServerError('MANIFEST_CONFLICT', op, undefined, { cause: err });
    }
    mapProtocol(err, op);
  }
  // verifyManifest accepts the current manifest itself as is; an upload must be its successor.
  if (body.seq !== current.seq + 1) throw new ServerError('MANIFEST_CONFLICT', op);
  const listed = new Set(body.devices.map((d) => d.id));
  const revokedDeviceIds = currentBody.devices.filter((d) => !listed.has(d.id)).map((d) => d.id);
  return { body, current, currentBody, revokedDeviceIds };
}

/** Whether a manifest that verified up to the fork check claims the current seq. */
function sameSeq(manifest: SignedManifest, seq: number): boolean {
  try {
    return decodeManifestBody(manifest.body).seq === seq;
  } catch {
    return false;
  }
}
