import type { StoreContext } from './_context.js';
import { num } from './_rows.js';
import type { LoginStateStore } from './types.js';

/** The LoginStateStore over the shared context; the OPAQUE server login state is sealed. */
export function createLoginStateStore(
  ctx: StoreContext,
): LoginStateStore & Required<Pick<LoginStateStore, 'deleteExpired'>> {
  return {
    async put(loginId, state) {
      const sealed = await ctx.sealer.seal('login_states.state', loginId, state.serverLoginState);
      await ctx.transaction((tx) =>
        tx
          .insertInto('login_states')
          .values({
            login_id: loginId,
            account_id: state.accountId,
            state: sealed,
            expires_at: state.expiresAt,
          })
          .execute(),
      );
    },

    async take(loginId, now) {
      // DELETE … RETURNING: of two concurrent takes exactly one gets the row.
      const row = await ctx.transaction((tx) =>
        tx
          .deleteFrom('login_states')
          .where('login_id', '=', loginId)
          .returning(['account_id', 'state', 'expires_at'])
          .executeTakeFirst(),
      );
      if (!row || num(row.expires_at) <= now) return undefined;
      return {
        accountId: row.account_id,
        serverLoginState: await ctx.sealer.open('login_states.state', loginId, row.state),
      };
    },

    async deleteExpired(now) {
      const result = await ctx.transaction((tx) =>
        tx.deleteFrom('login_states').where('expires_at', '<=', now).executeTakeFirst(),
      );
      return Number(result.numDeletedRows);
    },
  };
}
