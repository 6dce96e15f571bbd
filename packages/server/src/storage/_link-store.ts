import type { StoreContext } from './_context.js';
import { num } from './_rows.js';
import type { LinkStore } from './types.js';

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The LinkStore over the shared context. The sealed messages, the pickup hash and the session
 * token held for pickup are all sealed to the link's row.
 */
export function createLinkStore(
  ctx: StoreContext,
): LinkStore & Required<Pick<LinkStore, 'deleteExpired'>> {
  const { sealer } = ctx;
  return {
    async create(link) {
      await ctx.transaction((tx) =>
        tx
          .insertInto('links')
          .values({
            link_id: link.linkId,
            account_id: link.accountId,
            expires_at: link.expiresAt,
          })
          .execute(),
      );
    },

    async get(linkId, now) {
      const row = await ctx.db
        .selectFrom('links')
        .selectAll()
        .where('link_id', '=', linkId)
        .where('expires_at', '>', now)
        .executeTakeFirst();
      if (!row) return undefined;
      const request =
        row.request_sealed && row.pickup_hash
          ? {
              sealed: await sealer.open('links.request_sealed', linkId, row.request_sealed),
              pickupHash: await sealer.open('links.pickup_hash', linkId, row.pickup_hash),
            }
          : null;
      const response =
        row.response_sealed && row.response_token && row.response_expires_at != null
          ? {
              sealed: await sealer.open('links.response_sealed', linkId, row.response_sealed),
              token: fromUtf8.decode(
                await sealer.open('links.response_token', linkId, row.response_token),
              ),
              expiresAt: num(row.response_expires_at),
            }
          : null;
      return {
        linkId: row.link_id,
        accountId: row.account_id,
        expiresAt: num(row.expires_at),
        request,
        response,
        refused: num(row.refused) === 1,
      };
    },

    async setRequest(linkId, request, now) {
      const [sealed, pickupHash] = await Promise.all([
        sealer.seal('links.request_sealed', linkId, request.sealed),
        sealer.seal('links.pickup_hash', linkId, request.pickupHash),
      ]);
      // One conditional UPDATE: of two concurrent requests exactly one finds the column empty.
      const result = await ctx.transaction((tx) =>
        tx
          .updateTable('links')
          .set({ request_sealed: sealed, pickup_hash: pickupHash })
          .where('link_id', '=', linkId)
          .where('request_sealed', 'is', null)
          .where('expires_at', '>', now)
          .executeTakeFirst(),
      );
      return result.numUpdatedRows > 0n;
    },

    async setResponse(linkId, response) {
      const [sealed, token] = await Promise.all([
        sealer.seal('links.response_sealed', linkId, response.sealed),
        sealer.seal('links.response_token', linkId, utf8.encode(response.token)),
      ]);
      const result = await ctx.transaction((tx) =>
        tx
          .updateTable('links')
          .set({
            response_sealed: sealed,
            response_token: token,
            response_expires_at: response.expiresAt,
          })
          .where('link_id', '=', linkId)
          .where('refused', '=', 0)
          .where('response_sealed', 'is', null)
          .executeTakeFirst(),
      );
      return result.numUpdatedRows > 0n;
    },

    async refuse(linkId) {
      // One conditional UPDATE: a refusal and an approval cannot both land.
      const result = await ctx.transaction((tx) =>
        tx
          .updateTable('links')
          .set({ refused: 1 })
          .where('link_id', '=', linkId)
          .where('request_sealed', 'is not', null)
          .where('response_sealed', 'is', null)
          .executeTakeFirst(),
      );
      return result.numUpdatedRows > 0n;
    },

    async delete(linkId) {
      await ctx.transaction((tx) => tx.deleteFrom('links').where('link_id', '=', linkId).execute());
    },

    async deleteExpired(now) {
      const result = await ctx.transaction((tx) =>
        tx.deleteFrom('links').where('expires_at', '<=', now).executeTakeFirst(),
      );
      return Number(result.numDeletedRows);
    },
  };
}
