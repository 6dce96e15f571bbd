// The @coffer/fields keyring lives in the database it protects, in one row: it holds only data
// keys wrapped by the provider's KEK, so the database alone opens nothing. The first process to
// start creates it; everyone else (including a process racing it) reads the winner's.
import { createKeyring, type KeyProvider, type Keyring, parseKeyring } from '@coffer/fields';
import type { StoreContext } from './_context.js';

/**
 * Loads the stored keyring, creating and storing one under `kekId` when there is none.
 *
 * @throws {FieldsError} provider codes when a new keyring cannot be wrapped; `INVALID_ARGUMENT`
 *   when the stored one is malformed.
 */
export async function loadOrCreateKeyring(
  ctx: Pick<StoreContext, 'db' | 'transaction' | 'now'>,
  provider: KeyProvider,
  kekId: string,
): Promise<Keyring> {
  const read = async () => {
    const row = await ctx.db
      .selectFrom('coffer_keyring')
      .select('keyring')
      .where('id', '=', 1)
      .executeTakeFirst();
    return row && parseKeyring(row.keyring);
  };
  const existing = await read();
  if (existing) return existing;
  const now = ctx.now();
  const fresh = await createKeyring(provider, kekId, new Date(now));
  await ctx.transaction((tx) =>
    tx
      .insertInto('coffer_keyring')
      .values({ id: 1, keyring: JSON.stringify(fresh), created_at: now })
      .onConflict((oc) => oc.column('id').doNothing())
      .execute(),
  );
  const stored = await read();
  if (!stored) throw new Error('keyring row vanished after being written');
  return stored;
}
