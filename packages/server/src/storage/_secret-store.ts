import type { StoreContext } from './_context.js';
import type { SecretStore } from './types.js';

/** The SecretStore over the shared context: values sealed under the provider-wrapped data key. */
export function createSecretStore(ctx: StoreContext): SecretStore {
  async function get(name: string): Promise<Uint8Array | undefined> {
    const row = await ctx.db
      .selectFrom('secrets')
      .select('value')
      .where('name', '=', name)
      .executeTakeFirst();
    return row && ctx.sealer.open('secrets.value', name, row.value);
  }

  return {
    get,
    async putIfAbsent(name, value) {
      const sealed = await ctx.sealer.seal('secrets.value', name, value);
      // ON CONFLICT DO NOTHING: a second writer (another process starting) waits for the first
      // and keeps its value; both then read the same one back.
      await ctx.transaction((tx) =>
        tx
          .insertInto('secrets')
          .values({ name, value: sealed })
          .onConflict((oc) => oc.column('name').doNothing())
          .execute(),
      );
      const stored = await get(name);
      if (!stored) throw new Error(`secret ${name} vanished after being written`);
      return stored;
    },
  };
}
