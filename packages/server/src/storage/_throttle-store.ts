import type { StoreContext } from './_context.js';
import { num } from './_rows.js';
import type { ThrottleStore } from './types.js';

/** The ThrottleStore over the shared context. Keys arrive as HMACs and are stored as given. */
export function createThrottleStore(
  ctx: StoreContext,
): ThrottleStore & Required<Pick<ThrottleStore, 'deleteIdle'>> {
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

    async update(keys, next) {
      await ctx.transaction(async (tx) => {
        for (const [i, key] of keys.entries()) {
          let select = tx
            .selectFrom('throttle')
            .select(['failures', 'not_before'])
            .where('key', '=', key);
          // SQLite's BEGIN IMMEDIATE already serialises writers. PostgreSQL locks the row, which
          // must exist first for FOR UPDATE to lock anything (a zero row means "no state").
          if (ctx.dialect === 'postgres') {
            await tx
              .insertInto('throttle')
              .values({ key, failures: 0, not_before: 0 })
              .onConflict((oc) => oc.column('key').doNothing())
              .execute();
            select = select.forUpdate();
          }
          const row = await select.executeTakeFirst();
          const current =
            row && num(row.failures) > 0
              ? { failures: num(row.failures), notBefore: num(row.not_before) }
              : undefined;
          const state = next(current, i);
          if (state === null) {
            if (row) await tx.deleteFrom('throttle').where('key', '=', key).execute();
          } else {
            await tx
              .insertInto('throttle')
              .values({ key, failures: state.failures, not_before: state.notBefore })
              .onConflict((oc) =>
                oc
                  .column('key')
                  .doUpdateSet({ failures: state.failures, not_before: state.notBefore }),
              )
              .execute();
          }
        }
      });
    },

    async clear(key) {
      await ctx.transaction((tx) => tx.deleteFrom('throttle').where('key', '=', key).execute());
    },

    async deleteIdle(before) {
      const result = await ctx.transaction((tx) =>
        tx.deleteFrom('throttle').where('not_before', '<', before).executeTakeFirst(),
      );
      return Number(result.numDeletedRows);
    },
  };
}
