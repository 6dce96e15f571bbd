// The server's own data, encrypted with @coffer/fields before it reaches SQL. Every ciphertext is
// bound to its table, column and row (the row's primary key; `accountId:seq` for manifests,
// `accountId:deviceId:kind:hash` for KeyPackages, `groupId:seq` for delivered messages and
// `groupId:epoch` for GroupInfo), so
// a value copied to another row or column fails to open.
import type { BlindIndexer, FieldCipher } from '@coffer/fields';

/** Every encrypted column, as `table.column`. */
export const SEALED_COLUMNS = [
  'accounts.username',
  'accounts.opaque_record',
  'accounts.recovery_verifier',
  'manifests.body',
  'manifests.signature',
  'backups.data',
  'login_states.state',
  'links.request_sealed',
  'links.pickup_hash',
  'links.response_sealed',
  'links.response_token',
  'secrets.value',
  'key_packages.data',
  'delivery_messages.body',
  'delivery_groups.group_info',
] as const;

export type SealedColumn = (typeof SEALED_COLUMNS)[number];

// Usernames are at most 32 characters (account-v1 §1): padding every one to the same size hides
// their lengths from a stolen database.
const USERNAME_PAD = 64;

/**
 * The blind index's width. 256 bits is the most the indexer gives: the index column is UNIQUE and
 * must refuse only true duplicates; at 256 bits a chance collision between two different names
 * is about n²/2^257, nothing. The usual reason to truncate, leaking less equality, does not apply:
 * names are unique, so each index value belongs to one row whatever its width.
 */
const USERNAME_INDEX_BITS = 256;

export interface Sealer {
  seal(column: SealedColumn, rowId: string, value: Uint8Array): Promise<Uint8Array>;
  open(column: SealedColumn, rowId: string, stored: Uint8Array): Promise<Uint8Array>;
  sealUsername(accountId: string, username: string): Promise<Uint8Array>;
  openUsername(accountId: string, stored: Uint8Array): Promise<string>;
  /** The blind index of a username after NFC, trimming and lowercasing (account-v1 §1). */
  usernameIndex(username: string): Promise<string>;
  /** Unwraps the data keys now, so a wrong KEK fails at open and not at the first request. */
  preload(): Promise<void>;
}

function where(column: SealedColumn, rowId: string) {
  const dot = column.indexOf('.');
  return { table: column.slice(0, dot), column: column.slice(dot + 1), rowId };
}

/** A Sealer over a field cipher and blind indexer made from the stored keyring. */
export function createSealer(fields: FieldCipher, indexer: BlindIndexer): Sealer {
  return {
    seal(column, rowId, value) {
      return fields.encrypt(value, where(column, rowId), { format: 'binary' });
    },
    async open(column, rowId, stored) {
      const value = await fields.decrypt(stored, where(column, rowId));
      if (!(value instanceof Uint8Array)) throw new Error(`${column} holds a non-binary value`);
      return value;
    },
    sealUsername(accountId, username) {
      return fields.encrypt(username, where('accounts.username', accountId), {
        format: 'binary',
        padTo: USERNAME_PAD,
      });
    },
    async openUsername(accountId, stored) {
      const value = await fields.decrypt(stored, where('accounts.username', accountId));
      if (typeof value !== 'string') throw new Error('accounts.username holds a non-text value');
      return value;
    },
    usernameIndex(username) {
      return indexer.compute(username, {
        table: 'accounts',
        column: 'username',
        name: 'username_idx',
        bits: USERNAME_INDEX_BITS,
        normalize: ['nfc', 'trim', 'casefold'],
      });
    },
    async preload() {
      await fields.preload(SEALED_COLUMNS.map((c) => where(c, 'x')));
    },
  };
}
