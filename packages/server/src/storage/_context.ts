// What every store shares: the Kysely instance, the sealer, the clock, and one way to write.
import { type Kysely, sql } from 'kysely';
import type { StorageDialect } from './_migrations.js';
import type { StorageDb } from './_schema.js';
import type { Sealer } from './_sealer.js';
import { conflictFrom, isSqliteBusy } from './_sql-errors.js';

export interface StoreContext {
  readonly db: Kysely<StorageDb>;
  readonly dialect: StorageDialect;
  readonly sealer: Sealer;
  readonly now: () => number;
  /**
   * Runs `work` in one transaction and maps unique violations to StorageConflictError. Every
   * write goes through here, single statements included, for the SQLite lock handling below.
   */
  transaction<T>(work: (tx: Kysely<StorageDb>) => Promise<T>): Promise<T>;
}

/** How long a SQLite writer keeps retrying a held write lock before giving up. */
const SQLITE_LOCK_DEADLINE_MS = 10_000;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * The transaction runner for `dialect`.
 *
 * SQLite: `BEGIN IMMEDIATE` takes the write lock up front, so two writers never both read and
 * then collide on upgrading (which SQLite answers with SQLITE_BUSY, busy timeout or not). When
 * another connection holds the lock, the attempt is retried after an asynchronous pause rather
 * than waiting inside better-sqlite3: that wait would block the event loop, and with it a
 * holder in this same process (two instances on one file) that needs the loop to commit.
 *
 * PostgreSQL: Kysely's transaction (READ COMMITTED). Concurrent inserts of one key wait for each
 * other and the loser gets a unique violation, which is what the stores rely on.
 */
export function transactionRunner(
  db: Kysely<StorageDb>,
  dialect: StorageDialect,
): StoreContext['transaction'] {
  async function mapped<T>(run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      throw conflictFrom(err) ?? err;
    }
  }
  if (dialect === 'postgres') {
    return (work) => mapped(() => db.transaction().execute(work));
  }
  return (work) =>
    mapped(async () => {
      const deadline = Date.now() + SQLITE_LOCK_DEADLINE_MS;
      for (let attempt = 0; ; attempt++) {
        try {
          return await db.connection().execute(async (conn) => {
            await sql`begin immediate`.execute(conn);
            try {
              const result = await work(conn);
              await sql`commit`.execute(conn);
              return result;
            } catch (err) {
              await sql`rollback`.execute(conn).catch(() => {});
              throw err;
            }
          });
        } catch (err) {
          if (!isSqliteBusy(err) || Date.now() > deadline) throw err;
          await sleep(Math.min(2 + attempt * 3, 50) * (0.5 + Math.random()));
        }
      }
    });
}
