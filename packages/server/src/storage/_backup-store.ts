import type { StoreContext } from './_context.js';
import { num } from './_rows.js';
import type { BackupStore } from './types.js';

/** The BackupStore over the shared context (backups are written with their manifest). */
export function createBackupStore(ctx: StoreContext): BackupStore {
  return {
    async get(accountId) {
      const row = await ctx.db
        .selectFrom('backups')
        .select(['version', 'data'])
        .where('account_id', '=', accountId)
        .executeTakeFirst();
      if (!row) return undefined;
      return {
        version: num(row.version),
        data: await ctx.sealer.open('backups.data', accountId, row.data),
      };
    },
  };
}
