import { createBlindIndexer, createFieldCipher, type KeyProvider } from '@coffer/fields';
import Database from 'better-sqlite3';
import { Kysely, Migrator, PostgresDialect, SqliteDialect, sql } from 'kysely';
import pg from 'pg';
import { createAccountStore } from './_account-store.js';
import { createBackupStore } from './_backup-store.js';
import { createBlobStore } from './_blob-store.js';
import { type StoreContext, transactionRunner } from './_context.js';
import { createDeliveryStore } from './_delivery-store.js';
import { createKeyPackageStore } from './_key-package-store.js';
import { loadOrCreateKeyring } from './_keyring-table.js';
import { createLinkStore } from './_link-store.js';
import { createLoginStateStore } from './_login-state-store.js';
import { createManifestStore } from './_manifest-store.js';
import { type StorageDialect, storageMigrations } from './_migrations.js';
import type { StorageDb } from './_schema.js';
import { createSealer } from './_sealer.js';
import { createSecretStore } from './_secret-store.js';
import { createSessionStore } from './_session-store.js';
import { cachingStatements } from './_sqlite-statements.js';
import { createThrottleStore } from './_throttle-store.js';
import type { Storage } from './types.js';

/** Where and how {@link openStorage} opens the database. Give exactly one of `url`, `sqlitePath`. */
export interface OpenStorageOptions {
  /** A PostgreSQL connection string, `postgres://user@host:5432/db`. */
  readonly url?: string;
  /** A SQLite database file (created if missing), or `':memory:'`. */
  readonly sqlitePath?: string;
  /** Holds the KEK that wraps the data keys of the server's encrypted columns. */
  readonly provider: KeyProvider;
  /** The KEK a new keyring is wrapped under (an existing keyring names its own). */
  readonly kekId: string;
  /** The clock for times the storage stamps itself (account creation); default Date.now. */
  readonly now?: () => number;
  /**
   * PostgreSQL only: the schema to put first on `search_path` (created if missing). For tests,
   * which give each file its own schema.
   */
  readonly pgSchema?: string;
  /** PostgreSQL only: the most connections in the pool (default 10). */
  readonly poolSize?: number;
  /**
   * SQLite only: `normal` (default) syncs the WAL to disk at checkpoints, not at every commit;
   * a process crash (SIGKILL) loses nothing committed, a power loss or OS crash may roll back
   * the last commits, never corrupt. `full` syncs every commit (about half the write rate here).
   */
  readonly sqliteSync?: 'normal' | 'full';
}

// The busy timeout is short on purpose: better-sqlite3 waits synchronously, blocking the event
// loop; longer waits are asynchronous retries (see _context.ts).
const SQLITE_BUSY_TIMEOUT_MS = 25;
/** How long a starting process keeps retrying migrations that another process holds locked. */
const MIGRATION_DEADLINE_MS = 30_000;
const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/**
 * Opens the server's storage on SQLite (better-sqlite3: WAL, foreign keys on) or PostgreSQL (a
 * pg Pool), runs the migrations (a no-op when current; safe when several processes start at
 * once), loads or creates the field-encryption keyring kept in the database, and unwraps its
 * data keys through `provider` so that a wrong KEK fails here rather than on the first request.
 *
 * @throws {Error} for bad options (the message names the option); the driver's error when the
 *   database cannot be opened or migrated; {@link FieldsError} (`UNKNOWN_KEY`,
 *   `DECRYPTION_FAILED`, `PROVIDER_UNAVAILABLE`, …) when the keyring cannot be unwrapped.
 * @example
 * const provider = await localProviderFromEnv('COFFER_FIELDS_KEK');
 * const storage = await openStorage({ sqlitePath: './coffer.sqlite', provider, kekId: 'kek-1' });
 * await storage.ping();
 * await storage.close();
 */
export async function openStorage(options: OpenStorageOptions): Promise<Storage> {
  const { url, sqlitePath, provider, kekId, pgSchema } = options;
  if ((url === undefined) === (sqlitePath === undefined))
    throw new Error('openStorage expected exactly one of "url" and "sqlitePath"');
  if (url !== undefined && (typeof url !== 'string' || url === ''))
    throw new Error('"url" expected a postgres:// connection string');
  if (sqlitePath !== undefined && (typeof sqlitePath !== 'string' || sqlitePath === ''))
    throw new Error('"sqlitePath" expected a file path or ":memory:"');
  if (typeof provider?.keyOperation !== 'function')
    throw new Error('"provider" expected a KeyProvider');
  if (typeof kekId !== 'string' || kekId === '') throw new Error('"kekId" expected a KEK id');
  if (pgSchema !== undefined && (url === undefined || !SCHEMA_NAME.test(pgSchema)))
    throw new Error('"pgSchema" expected a lowercase schema name, with "url"');
  const now = options.now ?? Date.now;

  const dialect: StorageDialect = url === undefined ? 'sqlite' : 'postgres';
  const db =
    url === undefined
      ? new Kysely<StorageDb>({
          dialect: new SqliteDialect({
            database: cachingStatements(openSqlite(sqlitePath!, options.sqliteSync ?? 'normal')),
          }),
        })
      : new Kysely<StorageDb>({
          dialect: new PostgresDialect({ pool: openPool(url, pgSchema, options.poolSize) }),
        });

  try {
    const transaction = transactionRunner(db, dialect);
    await migrate(db, dialect, pgSchema, transaction);
    const keyring = await loadOrCreateKeyring({ db, transaction, now }, provider, kekId);
    const fields = createFieldCipher(keyring, provider);
    const sealer = createSealer(fields, createBlindIndexer(keyring, fields));
    await sealer.preload();
    const ctx: StoreContext = { db, dialect, sealer, now, transaction };
    let closed: Promise<void> | undefined;
    return {
      dialect,
      accounts: createAccountStore(ctx),
      manifests: createManifestStore(ctx),
      backups: createBackupStore(ctx),
      sessions: createSessionStore(ctx),
      logins: createLoginStateStore(ctx),
      throttle: createThrottleStore(ctx),
      links: createLinkStore(ctx),
      secrets: createSecretStore(ctx),
      keyPackages: createKeyPackageStore(ctx),
      delivery: createDeliveryStore(ctx),
      blobs: createBlobStore(ctx),
      async ping() {
        await sql`select 1`.execute(db);
      },
      close() {
        closed ??= db.destroy();
        return closed;
      },
    };
  } catch (err) {
    await db.destroy().catch(() => {});
    throw err;
  }
}

function openSqlite(path: string, sync: 'normal' | 'full'): Database.Database {
  const database = new Database(path);
  try {
    // WAL: readers never wait for the writer. (An in-memory database stays in 'memory' mode.)
    database.pragma('journal_mode = WAL');
    database.pragma('foreign_keys = ON');
    if (sync !== 'normal' && sync !== 'full')
      throw new Error('"sqliteSync" expected normal or full');
    database.pragma(`synchronous = ${sync.toUpperCase()}`);
    database.pragma(`busy_timeout = ${SQLITE_BUSY_TIMEOUT_MS}`);
  } catch (err) {
    database.close();
    throw err;
  }
  return database;
}

function openPool(url: string, schema: string | undefined, max = 10): pg.Pool {
  const pool = new pg.Pool({
    connectionString: url,
    max,
    ...(schema === undefined ? {} : { options: `-c search_path=${schema}` }),
  });
  // An idle connection dropped by the server emits 'error' on the pool, which would otherwise
  // crash the process; the next query on a fresh connection reports any real outage.
  pool.on('error', () => {});
  return pool;
}

async function migrate(
  db: Kysely<StorageDb>,
  dialect: StorageDialect,
  pgSchema: string | undefined,
  transaction: StoreContext['transaction'],
): Promise<void> {
  const provider = storageMigrations(dialect);
  if (dialect === 'sqlite') {
    // Kysely takes no lock on SQLite (it assumes one connection) and its deferred transaction
    // lets two processes both find a migration pending. So the whole run goes inside one
    // BEGIN IMMEDIATE: a second process waits for the first and then finds nothing to do.
    await transaction(async (conn) => {
      const migrator = new Migrator({ db: conn, provider, disableTransactions: true });
      const { error } = await migrator.migrateToLatest();
      if (error !== undefined) throw error;
    });
    return;
  }
  if (pgSchema !== undefined) {
    // Concurrent CREATE SCHEMA IF NOT EXISTS can still race; the loser finds it made.
    await sql`create schema if not exists ${sql.id(pgSchema)}`.execute(db).catch(() => {});
  }
  // Kysely looks for its own tables in every schema unless told which one: name ours.
  const row = await sql<{ schema: string | null }>`select current_schema() as schema`.execute(db);
  const migrationTableSchema = row.rows[0]?.schema;
  if (!migrationTableSchema) throw new Error('PostgreSQL has no current schema to migrate');
  // Migrations run under Kysely's advisory lock, one process at a time. What can still race is
  // creating Kysely's own tables (a duplicate object), which a second attempt finds done, and
  // Kysely's look for them, which reads every schema's catalog: a schema or table another
  // client drops meanwhile (another tenant, a test) fails it, and a second look succeeds.
  const migrator = new Migrator({ db, provider, migrationTableSchema });
  const deadline = Date.now() + MIGRATION_DEADLINE_MS;
  for (let attempt = 0; ; attempt++) {
    const { error } = await migrator.migrateToLatest();
    if (error === undefined) return;
    if (!isRetryableMigrationError(error) || Date.now() > deadline) throw error;
    await new Promise((resolve) => setTimeout(resolve, 10 + Math.random() * 20 * (attempt + 1)));
  }
}

/**
 * Duplicate objects (23505, 42P07, 42P06, 42710); a schema, table or column another client
 * drops or is still creating while Kysely reads every schema's catalog (3F000, 42P01, 42703 —
 * seen in CI as "column version of relation backups does not exist" from getTables while
 * another tenant's schema was being migrated).
 */
function isRetryableMigrationError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return (
    code === '23505' ||
    code === '42P07' ||
    code === '42P06' ||
    code === '42710' ||
    code === '3F000' ||
    code === '42P01' ||
    code === '42703'
  );
}
