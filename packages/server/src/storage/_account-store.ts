import { sha256, utf8Encode } from '@coffer/crypto';
import type { Kysely } from 'kysely';
import type { StoreContext } from './_context.js';
import { lockAccount } from './_key-package-store.js';
import {
  appendManifest,
  endUnlistedSessions,
  sealBackup,
  sealManifest,
} from './_manifest-store.js';
import { bytes, num } from './_rows.js';
import type { StorageDb } from './_schema.js';
import { type AccountStore, StorageConflictError } from './types.js';

/** Bytes of an OPAQUE registration record (ristretto255 suite): what the dummy decrypt matches. */
const OPAQUE_RECORD_BYTES = 192;

/** The AccountStore over the shared context (see types.ts for the contract). */
export function createAccountStore(ctx: StoreContext): AccountStore {
  const { db, sealer } = ctx;
  // What an unknown name decrypts instead of a record, so that login/start costs the same for
  // known and unknown names (spec/http-api-v1.md: indistinguishable in timing too). Sealed once,
  // lazily, at the size of a real OPAQUE registration record.
  const DUMMY_ROW = 'unknown-user';
  let dummy: Promise<Uint8Array> | undefined;
  const dummyRecord = () => {
    dummy ??= sealer.seal('accounts.opaque_record', DUMMY_ROW, new Uint8Array(OPAQUE_RECORD_BYTES));
    return dummy;
  };

  return {
    async create(account) {
      const { accountId } = account;
      // Everything is sealed before the transaction opens: no key work while holding locks.
      const [username, usernameIdx, opaqueRecord, recoveryVerifier, manifest, backup] =
        await Promise.all([
          sealer.sealUsername(accountId, account.username),
          sealer.usernameIndex(account.username),
          sealer.seal('accounts.opaque_record', accountId, account.opaqueRecord),
          sealer.seal('accounts.recovery_verifier', accountId, account.recoveryVerifier),
          sealManifest(sealer, accountId, account.manifest),
          sealBackup(sealer, accountId, account.backup),
        ]);
      const idHash = await retiredIdHash(accountId);
      const s = account.session;
      if (s.accountId !== accountId)
        throw new Error('"session.accountId" expected the new account');
      await ctx.transaction(async (tx) => {
        await tx
          .insertInto('accounts')
          .values({
            account_id: accountId,
            username,
            username_idx: usernameIdx,
            opaque_record: opaqueRecord,
            recovery_verifier: recoveryVerifier,
            created_at: ctx.now(),
          })
          .execute();
        // After the insert, not before: on PostgreSQL an insert racing the deletion of an
        // account with this id waits for it, and a check made after the wait sees the
        // deletion's tombstone (READ COMMITTED reads anew per statement).
        const retired = await tx
          .selectFrom('retired_accounts')
          .select('id_hash')
          .where('id_hash', '=', idHash)
          .executeTakeFirst();
        if (retired) throw new StorageConflictError('accountId', 'account id retired');
        await tx.insertInto('manifests').values(manifest).execute();
        await tx.insertInto('backups').values(backup).execute();
        await tx
          .insertInto('sessions')
          .values({
            token_hash: s.tokenHash,
            account_id: accountId,
            device_id: s.deviceId,
            kind: s.kind,
            created_at: s.createdAt,
            expires_at: s.expiresAt,
            auth_at: s.authAt,
          })
          .execute();
      });
    },

    async usernameTaken(normalizedUsername) {
      const idx = await sealer.usernameIndex(normalizedUsername);
      const row = await db
        .selectFrom('accounts')
        .select('account_id')
        .where('username_idx', '=', idx)
        .executeTakeFirst();
      return row !== undefined;
    },

    async findByUsername(normalizedUsername) {
      const idx = await sealer.usernameIndex(normalizedUsername);
      const row = await db
        .selectFrom('accounts')
        .select(['account_id', 'username', 'opaque_record', 'created_at'])
        .where('username_idx', '=', idx)
        .executeTakeFirst();
      if (!row) return undefined;
      const [username, opaqueRecord] = await Promise.all([
        sealer.openUsername(row.account_id, row.username),
        sealer.open('accounts.opaque_record', row.account_id, row.opaque_record),
      ]);
      return {
        accountId: row.account_id,
        username,
        createdAt: num(row.created_at),
        opaqueRecord,
      };
    },

    async findLogin(normalizedUsername) {
      const idx = await sealer.usernameIndex(normalizedUsername);
      const row = await db
        .selectFrom('accounts')
        .select(['account_id', 'opaque_record'])
        .where('username_idx', '=', idx)
        .executeTakeFirst();
      if (!row) {
        await sealer.open('accounts.opaque_record', DUMMY_ROW, await dummyRecord());
        return undefined;
      }
      const opaqueRecord = await sealer.open(
        'accounts.opaque_record',
        row.account_id,
        bytes(row.opaque_record),
      );
      return { accountId: row.account_id, opaqueRecord };
    },

    async get(accountId) {
      const row = await db
        .selectFrom('accounts')
        .select(['account_id', 'username', 'created_at'])
        .where('account_id', '=', accountId)
        .executeTakeFirst();
      if (!row) return undefined;
      return {
        accountId: row.account_id,
        username: await sealer.openUsername(row.account_id, row.username),
        createdAt: num(row.created_at),
      };
    },

    async recoveryVerifier(accountId) {
      const row = await db
        .selectFrom('accounts')
        .select('recovery_verifier')
        .where('account_id', '=', accountId)
        .executeTakeFirst();
      if (!row) return undefined;
      return bytes(
        await sealer.open('accounts.recovery_verifier', accountId, row.recovery_verifier),
      );
    },

    async delete(accountId) {
      const idHash = await retiredIdHash(accountId);
      // The foreign keys cascade too; deleting each table explicitly keeps this correct even on a
      // SQLite connection opened elsewhere without `foreign_keys = ON`.
      return ctx.transaction(async (tx) => {
        // PostgreSQL: a message in flight to one of the account's devices holds a share lock on
        // this row (_delivery-store.ts): taking it first means that message either commits
        // before the deletes below (and its queue entry and route go with the rest) or finds
        // the routes and manifests gone. (SQLite's single writer serialises this already.)
        if (ctx.dialect === 'postgres') await lockAccount(tx, accountId);
        const blobs = await tx
          .selectFrom('blobs')
          .select('blob_id')
          .where('account_id', '=', accountId)
          .execute();
        await deleteChildren(tx, accountId);
        const gone = await tx
          .deleteFrom('accounts')
          .where('account_id', '=', accountId)
          .executeTakeFirst();
        // spec "Signup": the id stays retired, so no later signup takes it.
        if (Number(gone.numDeletedRows) > 0)
          await tx
            .insertInto('retired_accounts')
            .values({ id_hash: idHash })
            .onConflict((oc) => oc.column('id_hash').doNothing())
            .execute();
        return { blobIds: blobs.map((b) => b.blob_id) };
      });
    },

    async changePassword(accountId, change) {
      const [opaqueRecord, manifest, backup] = await Promise.all([
        sealer.seal('accounts.opaque_record', accountId, change.opaqueRecord),
        sealManifest(sealer, accountId, change.manifest),
        sealBackup(sealer, accountId, change.backup),
      ]);
      await ctx.transaction(async (tx) => {
        await appendManifest(tx, accountId, manifest, backup);
        await tx
          .updateTable('accounts')
          .set({ opaque_record: opaqueRecord })
          .where('account_id', '=', accountId)
          .execute();
        // A login started against the old record must not finish after the change.
        await tx.deleteFrom('login_states').where('account_id', '=', accountId).execute();
        if (change.endUnlisted) await endUnlistedSessions(tx, accountId, change.endUnlisted);
      });
    },
  };
}

/** What `retired_accounts` keeps of a deleted account's id. */
function retiredIdHash(accountId: string): Promise<Uint8Array> {
  return sha256(utf8Encode(accountId));
}

async function deleteChildren(tx: Kysely<StorageDb>, accountId: string): Promise<void> {
  for (const table of [
    'sessions',
    'login_states',
    'links',
    'key_packages',
    // spec "Delivery": the account's queues and routes (its cursor counters stay, so that
    // cursors never restart; they hold no message).
    'delivery_queue',
    'delivery_members',
    // spec "Blobs": the rows; the caller removes the files.
    'blobs',
    'backups',
    'manifests',
  ] as const) {
    await tx.deleteFrom(table).where('account_id', '=', accountId).execute();
  }
}
