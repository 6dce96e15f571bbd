// Telling database errors apart without looking at values: a unique violation is recognised by
// its constraint (PostgreSQL reports the name; SQLite reports `table.column` in the message), and
// a lock conflict on SQLite by its code. Neither driver's message is passed on: PostgreSQL's
// `detail` quotes the conflicting key.
import { StorageConflictError } from './types.js';

type Conflict = StorageConflictError['what'];

/** Named constraints (see _migrations.ts) and the SQLite column lists they show up as. */
const UNIQUE_CONSTRAINTS: ReadonlyArray<{
  readonly constraint: string;
  readonly sqliteColumns: string;
  readonly what: Conflict;
}> = [
  { constraint: 'accounts_pk', sqliteColumns: 'accounts.account_id', what: 'accountId' },
  {
    constraint: 'accounts_username_idx_unique',
    sqliteColumns: 'accounts.username_idx',
    what: 'username',
  },
  {
    constraint: 'manifests_pk',
    sqliteColumns: 'manifests.account_id, manifests.seq',
    what: 'manifestSeq',
  },
  { constraint: 'links_pk', sqliteColumns: 'links.link_id', what: 'link' },
];

interface DriverError {
  readonly code?: unknown;
  readonly constraint?: unknown;
  readonly message?: unknown;
}

/**
 * The StorageConflictError a unique violation stands for, `deletedAccount` for a foreign-key
 * violation, or undefined for any other error.
 */
export function conflictFrom(err: unknown): StorageConflictError | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const e = err as DriverError;
  // A foreign key refused the write: what it refers to was deleted meanwhile. Every parent a
  // request can lose under it is an account (delivery rows are written with their parents, in
  // one transaction under the group's lock), so the write raced its account's deletion.
  // PostgreSQL: SQLSTATE 23503 foreign_key_violation; SQLite: the extended result code.
  if (e.code === '23503' || e.code === 'SQLITE_CONSTRAINT_FOREIGNKEY') {
    // The constraint's name (PostgreSQL gives it; SQLite does not) goes to the server's log line.
    const which = typeof e.constraint === 'string' ? ` (${e.constraint})` : '';
    return new StorageConflictError('deletedAccount', `the account is gone${which}`);
  }
  // PostgreSQL: SQLSTATE 23505 unique_violation, with the constraint's name.
  if (e.code === '23505') {
    const hit = UNIQUE_CONSTRAINTS.find((c) => c.constraint === e.constraint);
    return new StorageConflictError(hit?.what ?? 'other');
  }
  // better-sqlite3: extended result codes; the message is "UNIQUE constraint failed: t.c, t.d".
  if (e.code === 'SQLITE_CONSTRAINT_UNIQUE' || e.code === 'SQLITE_CONSTRAINT_PRIMARYKEY') {
    const message = typeof e.message === 'string' ? e.message : '';
    const columns = message.slice(message.indexOf(':') + 1).trim();
    const hit = UNIQUE_CONSTRAINTS.find((c) => c.sqliteColumns === columns);
    return new StorageConflictError(hit?.what ?? 'other');
  }
  return undefined;
}

/** Whether SQLite refused a lock (another connection is writing): worth retrying later. */
export function isSqliteBusy(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const code = (err as DriverError).code;
  return typeof code === 'string' && (code.startsWith('SQLITE_BUSY') || code === 'SQLITE_LOCKED');
}
