import type { StoreContext } from './_context.js';
import { num } from './_rows.js';
import type { ThrottleStore } from './types.js';

/** The ThrottleStore over the shared context. Keys arrive as HMACs and are stored as given. */
export function createThrottleStore(ctx: StoreContext): ThrottleStore {
  return {
    async get(key) {
      const row = await ctx.db
        .selectFrom('throttle')
        .select(['failures', 'not_before'])
        .where('key', '=', key)
        .executeTakeFirst();
      return row && { failures: num(row.failures), notBefore: num(row.not_before) };
    },

    async put(key, state) {
      await ctx.transaction((tx) =>
        tx
          .insertInto('throttle')
          .values({ key, failures: state.failures, not_before: state.notBefore })
          .onConflict((oc) =>
            oc.column('key').doUpdateSet({ failures: state.failures, not_before: state.notBefore }),
          )
          .execute(),
      );
    },

    async clear(key) {
      await ctx.transaction((tx) => tx.deleteFrom('throttle').where('key', '=', key).execute());
    },
  };
}
