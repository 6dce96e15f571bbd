import type { StoreContext } from './_context.js';
import { bytes, num } from './_rows.js';
import type { SessionStore } from './types.js';

/**
 * The SessionStore over the shared context. Token hashes are stored as given: SHA-256 of a
 * 256-bit random token cannot be turned back into the token, and lookups need them as keys.
 */
export function createSessionStore(ctx: StoreContext): SessionStore {
  return {
    async create(s) {
      await ctx.transaction((tx) =>
        tx
          .insertInto('sessions')
          .values({
            token_hash: s.tokenHash,
            account_id: s.accountId,
            device_id: s.deviceId,
            kind: s.kind,
            created_at: s.createdAt,
            expires_at: s.expiresAt,
            auth_at: s.authAt,
          })
          .execute(),
      );
    },

    async get(tokenHash) {
      const row = await ctx.db
        .selectFrom('sessions')
        .selectAll()
        .where('token_hash', '=', tokenHash)
        .executeTakeFirst();
      if (!row) return undefined;
      if (row.kind !== 'session' && row.kind !== 'recovery')
        throw new Error(`sessions.kind holds an unknown kind`);
      return {
        tokenHash: bytes(row.token_hash),
        accountId: row.account_id,
        deviceId: row.device_id,
        kind: row.kind,
        createdAt: num(row.created_at),
        expiresAt: num(row.expires_at),
        authAt: num(row.auth_at),
      };
    },

    async delete(tokenHash) {
      await ctx.transaction((tx) =>
        tx.deleteFrom('sessions').where('token_hash', '=', tokenHash).execute(),
      );
    },

    async deleteExpired(now) {
      const result = await ctx.transaction((tx) =>
        tx.deleteFrom('sessions').where('expires_at', '<=', now).executeTakeFirst(),
      );
      return Number(result.numDeletedRows);
    },
  };
}
