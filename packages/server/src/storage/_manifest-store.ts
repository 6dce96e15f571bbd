import type { Insertable, Kysely } from 'kysely';
import type { StoreContext } from './_context.js';
import { lockQueues } from './_delivery-store.js';
import { lockAccount } from './_key-package-store.js';
import { manifestRowId, num } from './_rows.js';
import type { StorageDb } from './_schema.js';
import type { Sealer } from './_sealer.js';
import {
  type ManifestStore,
  StorageConflictError,
  type StoredBackup,
  type StoredManifest,
  type UnlistedSessions,
} from './types.js';

type ManifestRow = Insertable<StorageDb['manifests']>;
type BackupRow = Insertable<StorageDb['backups']>;

/** A manifest as its encrypted row (body and signature name devices, so both are sealed). */
export async function sealManifest(
  sealer: Sealer,
  accountId: string,
  manifest: StoredManifest,
): Promise<ManifestRow> {
  if (!Number.isSafeInteger(manifest.seq) || manifest.seq < 1)
    throw new Error('"manifest.seq" expected a positive integer');
  const rowId = manifestRowId(accountId, manifest.seq);
  const [body, signature] = await Promise.all([
    sealer.seal('manifests.body', rowId, manifest.body),
    sealer.seal('manifests.signature', rowId, manifest.signature),
  ]);
  return { account_id: accountId, seq: manifest.seq, body, signature };
}

/** A backup as its encrypted row. */
export async function sealBackup(
  sealer: Sealer,
  accountId: string,
  backup: StoredBackup,
): Promise<BackupRow> {
  if (!Number.isSafeInteger(backup.version) || backup.version < 0)
    throw new Error('"backup.version" expected a non-negative integer');
  const data = await sealer.seal('backups.data', accountId, backup.data);
  return { account_id: accountId, version: backup.version, data };
}

/**
 * Inside a transaction: appends `manifest` if it is exactly the next one, and replaces the backup
 * when given. Two writers racing for one seq both pass the check on PostgreSQL (READ COMMITTED);
 * the primary key (account_id, seq) then makes the second wait and fail, which maps to
 * StorageConflictError('manifestSeq') as well.
 *
 * @throws {StorageConflictError} `manifestSeq` when seq is not latest + 1.
 */
export async function appendManifest(
  tx: Kysely<StorageDb>,
  accountId: string,
  manifest: ManifestRow,
  backup?: BackupRow,
): Promise<void> {
  const latest = await tx
    .selectFrom('manifests')
    .select((eb) => eb.fn.max('seq').as('seq'))
    .where('account_id', '=', accountId)
    .executeTakeFirst();
  const current = latest?.seq == null ? undefined : num(latest.seq);
  if (current === undefined || manifest.seq !== current + 1)
    throw new StorageConflictError('manifestSeq');
  await tx.insertInto('manifests').values(manifest).execute();
  if (backup) {
    await tx
      .insertInto('backups')
      .values(backup)
      .onConflict((oc) =>
        oc.column('account_id').doUpdateSet({ version: backup.version, data: backup.data }),
      )
      .execute();
  }
}

/**
 * Inside a transaction: deletes the account's sessions that name no device or a device
 * `sessions.listed` leaves out, created before `sessions.createdBefore`, except `sessions.keep`
 * (spec/http-api-v1.md "Session and account").
 */
export async function endUnlistedSessions(
  tx: Kysely<StorageDb>,
  accountId: string,
  sessions: UnlistedSessions,
): Promise<void> {
  const { listed, keep } = sessions;
  let query = tx
    .deleteFrom('sessions')
    .where('account_id', '=', accountId)
    .where('created_at', '<', sessions.createdBefore);
  // A manifest lists at least one device; `not in ()` would not be SQL.
  if (listed.length > 0)
    query = query.where((eb) =>
      eb.or([eb('device_id', 'is', null), eb('device_id', 'not in', [...listed])]),
    );
  if (keep) query = query.where('token_hash', '!=', keep);
  await query.execute();
}

/** The ManifestStore over the shared context (see types.ts for the contract). */
export function createManifestStore(ctx: StoreContext): ManifestStore {
  const { db, sealer } = ctx;

  async function open(
    accountId: string,
    row: { seq: number | string; body: Uint8Array; signature: Uint8Array },
  ): Promise<StoredManifest> {
    const seq = num(row.seq);
    const rowId = manifestRowId(accountId, seq);
    const [body, signature] = await Promise.all([
      sealer.open('manifests.body', rowId, row.body),
      sealer.open('manifests.signature', rowId, row.signature),
    ]);
    return { seq, body, signature };
  }

  return {
    async latest(accountId) {
      const row = await db
        .selectFrom('manifests')
        .select(['seq', 'body', 'signature'])
        .where('account_id', '=', accountId)
        .orderBy('seq', 'desc')
        .limit(1)
        .executeTakeFirst();
      return row && open(accountId, row);
    },

    async latestSeq(accountId) {
      const row = await db
        .selectFrom('manifests')
        .select((eb) => eb.fn.max('seq').as('seq'))
        .where('account_id', '=', accountId)
        .executeTakeFirst();
      return row?.seq == null ? undefined : num(row.seq);
    },

    async history(accountId, after, limit) {
      if (!Number.isSafeInteger(limit) || limit < 0)
        throw new Error('"limit" expected a non-negative integer');
      if (limit === 0) return [];
      const rows = await db
        .selectFrom('manifests')
        .select(['seq', 'body', 'signature'])
        .where('account_id', '=', accountId)
        .where('seq', '>', after)
        .orderBy('seq', 'asc')
        .limit(limit)
        .execute();
      return Promise.all(rows.map((row) => open(accountId, row)));
    },

    async append(accountId, manifest, options = {}) {
      const [sealed, backup] = await Promise.all([
        sealManifest(sealer, accountId, manifest),
        options.backup && sealBackup(sealer, accountId, options.backup),
      ]);
      const revoked = options.revokedDeviceIds ?? [];
      await ctx.transaction(async (tx) => {
        // A KeyPackage upload holds this lock while it checks that the device is listed: taking
        // it first means no upload for a revoked device commits after the delete below.
        // A message in flight to a revoked device holds (or waits for) its queue's lock and
        // re-checks its recipients once it has it: taking those locks here means it either
        // commits before the deletes below (and loses its entry to them) or finds the device
        // gone. (SQLite's single writer serialises all of this already.)
        if (revoked.length > 0 && ctx.dialect === 'postgres') {
          await lockAccount(tx, accountId);
          await lockQueues(
            tx,
            revoked.map((deviceId) => ({ accountId, deviceId })),
          );
        }
        await appendManifest(tx, accountId, sealed, backup);
        if (options.endUnlisted) await endUnlistedSessions(tx, accountId, options.endUnlisted);
        if (revoked.length > 0) {
          await tx
            .deleteFrom('sessions')
            .where('account_id', '=', accountId)
            .where('device_id', 'in', revoked)
            .execute();
          for (const table of ['key_packages', 'delivery_queue', 'delivery_members'] as const) {
            await tx
              .deleteFrom(table)
              .where('account_id', '=', accountId)
              .where('device_id', 'in', revoked)
              .execute();
          }
        }
      });
    },
  };
}
