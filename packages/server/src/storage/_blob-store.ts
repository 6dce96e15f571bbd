import { sql } from 'kysely';
import type { StoreContext } from './_context.js';
import { num } from './_rows.js';
import type { BlobStore } from './types.js';

/** Ids per `in (…)` list: far below both databases' parameter limits. */
const ID_BATCH = 500;

/** The BlobStore over the shared context (see types.ts for the contract). */
export function createBlobStore(ctx: StoreContext): BlobStore {
  const { db } = ctx;
  return {
    async add(record, { quota, maxCount }) {
      return ctx.transaction(async (tx) => {
        // The account's row is the per-account lock: PostgreSQL locks it FOR UPDATE (concurrent
        // uploads of one account, and its deletion, wait here); SQLite's BEGIN IMMEDIATE already
        // serialises every writer.
        let account = tx
          .selectFrom('accounts')
          .select('account_id')
          .where('account_id', '=', record.accountId);
        if (ctx.dialect === 'postgres') account = account.forUpdate();
        if (!(await account.executeTakeFirst())) return { ok: false, reason: 'noAccount' } as const;
        const row = await tx
          .selectFrom('blobs')
          .select([
            sql<number | string | null>`sum(size)`.as('total'),
            sql<number | string>`count(*)`.as('count'),
          ])
          .where('account_id', '=', record.accountId)
          .executeTakeFirst();
        const used = row?.total == null ? 0 : num(row.total);
        const count = row ? num(row.count) : 0;
        if (used + record.size > quota || count + 1 > maxCount)
          return { ok: false, reason: 'quota' } as const;
        await tx
          .insertInto('blobs')
          .values({
            blob_id: record.blobId,
            account_id: record.accountId,
            size: record.size,
            created_at: record.createdAt,
          })
          .execute();
        return { ok: true } as const;
      });
    },

    async get(blobId) {
      const row = await db
        .selectFrom('blobs')
        .select(['blob_id', 'account_id', 'size', 'created_at'])
        .where('blob_id', '=', blobId)
        .executeTakeFirst();
      return (
        row && {
          blobId: row.blob_id,
          accountId: row.account_id,
          size: num(row.size),
          createdAt: num(row.created_at),
        }
      );
    },

    async usage(accountId) {
      const row = await db
        .selectFrom('blobs')
        .select([
          sql<number | string | null>`sum(size)`.as('total'),
          sql<number | string>`count(*)`.as('count'),
        ])
        .where('account_id', '=', accountId)
        .executeTakeFirst();
      return {
        bytes: row?.total == null ? 0 : num(row.total),
        count: row ? num(row.count) : 0,
      };
    },

    async delete(blobId, accountId) {
      const result = await ctx.transaction((tx) =>
        tx
          .deleteFrom('blobs')
          .where('blob_id', '=', blobId)
          .where('account_id', '=', accountId)
          .executeTakeFirst(),
      );
      return Number(result.numDeletedRows) > 0;
    },

    async deleteOlderThan(before) {
      return ctx.transaction(async (tx) => {
        const rows = await tx
          .deleteFrom('blobs')
          .where('created_at', '<=', before)
          .returning('blob_id')
          .execute();
        return rows.map((r) => r.blob_id);
      });
    },

    async existing(blobIds) {
      const found = new Set<string>();
      for (let i = 0; i < blobIds.length; i += ID_BATCH) {
        const batch = blobIds.slice(i, i + ID_BATCH);
        if (batch.length === 0) continue;
        const rows = await db
          .selectFrom('blobs')
          .select('blob_id')
          .where('blob_id', 'in', batch)
          .execute();
        for (const r of rows) found.add(r.blob_id);
      }
      return found;
    },
  };
}
