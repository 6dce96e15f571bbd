// Real databases for the server's tests: SQLite (a file in a fresh temporary directory) and
// PostgreSQL (a fresh schema per test database, dropped afterwards). Both run the same suites.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateAeadKey } from '@coffer/crypto';
import { createLocalProvider, type KeyProvider } from '@coffer/fields';
import Database from 'better-sqlite3';
import { Kysely, PostgresDialect, SqliteDialect } from 'kysely';
import pg from 'pg';
import type { StorageDb } from '../src/storage/_schema.js';
import { type OpenStorageOptions, openStorage } from '../src/storage/open.js';
import type { Storage } from '../src/storage/types.js';

export type TestDialect = 'sqlite' | 'postgres';

/** Where the PostgreSQL tests connect (trust auth on a local server by default). */
export const POSTGRES_URL =
  process.env.COFFER_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** The URL without its password, for messages. */
function shownUrl(): string {
  try {
    const u = new URL(POSTGRES_URL);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparseable COFFER_TEST_DATABASE_URL)';
  }
}

let availability: Promise<boolean> | undefined;

/**
 * Whether PostgreSQL answers at {@link POSTGRES_URL} (asked once per test file). When it does
 * not, the PostgreSQL tests are skipped with a visible notice, except under CI (`CI=true`),
 * where this throws: CI must run them.
 */
export function postgresAvailable(): Promise<boolean> {
  availability ??= (async () => {
    const client = new pg.Client({ connectionString: POSTGRES_URL, connectionTimeoutMillis: 3000 });
    try {
      await client.connect();
      await client.query('select 1');
      return true;
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      if (process.env.CI === 'true')
        throw new Error(
          `PostgreSQL is required under CI but not reachable at ${shownUrl()}: ${why} ` +
            '(install and start PostgreSQL, or set COFFER_TEST_DATABASE_URL)',
        );
      console.warn(
        `NOTICE: PostgreSQL not reachable at ${shownUrl()} (${why}); PostgreSQL tests skipped ` +
          '(start PostgreSQL with trust auth and a database "test", or set COFFER_TEST_DATABASE_URL)',
      );
      return false;
    } finally {
      await client.end().catch(() => {});
    }
  })();
  return availability;
}

/** The dialects this machine can run: SQLite always, PostgreSQL when reachable. */
export async function testDialects(): Promise<TestDialect[]> {
  return (await postgresAvailable()) ? ['sqlite', 'postgres'] : ['sqlite'];
}

/** The KEK id every test database's keyring is wrapped under. */
export const TEST_KEK_ID = 'kek1';

let sharedProvider: Promise<KeyProvider> | undefined;

/** One local key provider per test process, with a random KEK named {@link TEST_KEK_ID}. */
export function testProvider(): Promise<KeyProvider> {
  sharedProvider ??= createLocalProvider({ [TEST_KEK_ID]: generateAeadKey() });
  return sharedProvider;
}

/** One empty database (a SQLite file, or a PostgreSQL schema) and the Storage opened on it. */
export interface TestDatabase {
  readonly dialect: TestDialect;
  /** SQLite: the database file (its WAL is beside it, `-wal`). */
  readonly sqlitePath?: string;
  /** PostgreSQL: the schema's name. */
  readonly pgSchema?: string;
  readonly provider: KeyProvider;
  /** The options {@link TestDatabase.open} passes to openStorage, for tests that vary them. */
  readonly options: OpenStorageOptions;
  /** Opens one more Storage on this database; closed by {@link TestDatabase.dispose}. */
  open(overrides?: Partial<OpenStorageOptions>): Promise<Storage>;
  /** A Kysely instance on the same database that bypasses the storage layer: the attacker's view. */
  raw(): Kysely<StorageDb>;
  /** Closes everything opened here, then removes the file or drops the schema. */
  dispose(): Promise<void>;
}

/**
 * A fresh database for `dialect`. Call {@link TestDatabase.open} for Storage instances on it
 * (several instances share the same tables, as several server processes would).
 *
 * @example
 * const tdb = await createTestDatabase('sqlite');
 * const storage = await tdb.open();
 * afterAll(() => tdb.dispose());
 */
export async function createTestDatabase(
  dialect: TestDialect,
  prefix = 'server',
): Promise<TestDatabase> {
  if (!/^[a-z][a-z0-9_]{0,30}$/.test(prefix)) throw new Error(`bad schema prefix ${prefix}`);
  const provider = await testProvider();
  const opened: Storage[] = [];
  let rawDb: Kysely<StorageDb> | undefined;

  let options: OpenStorageOptions;
  let remove: () => Promise<void>;
  let makeRaw: () => Kysely<StorageDb>;
  let sqlitePath: string | undefined;
  let pgSchema: string | undefined;
  if (dialect === 'sqlite') {
    const dir = mkdtempSync(join(tmpdir(), `coffer-${prefix}-`));
    sqlitePath = join(dir, 'coffer.sqlite');
    const path = sqlitePath;
    options = { sqlitePath: path, provider, kekId: TEST_KEK_ID };
    makeRaw = () => new Kysely({ dialect: new SqliteDialect({ database: new Database(path) }) });
    remove = async () => rmSync(dir, { recursive: true, force: true });
  } else {
    const schema = `coffer_${prefix}_${randomBytes(6).toString('hex')}`;
    pgSchema = schema;
    const admin = new pg.Client({ connectionString: POSTGRES_URL });
    await admin.connect();
    try {
      await admin.query(`create schema "${schema}"`);
    } finally {
      await admin.end();
    }
    options = { url: POSTGRES_URL, pgSchema: schema, provider, kekId: TEST_KEK_ID, poolSize: 4 };
    makeRaw = () =>
      new Kysely({
        dialect: new PostgresDialect({
          pool: new pg.Pool({
            connectionString: POSTGRES_URL,
            options: `-c search_path=${schema}`,
            max: 2,
          }),
        }),
      });
    remove = async () => {
      const c = new pg.Client({ connectionString: POSTGRES_URL });
      await c.connect();
      try {
        await c.query(`drop schema if exists "${schema}" cascade`);
      } finally {
        await c.end();
      }
    };
  }

  return {
    dialect,
    ...(sqlitePath === undefined ? {} : { sqlitePath }),
    ...(pgSchema === undefined ? {} : { pgSchema }),
    provider,
    options,
    async open(overrides = {}) {
      const storage = await openStorage({ ...options, ...overrides });
      opened.push(storage);
      return storage;
    },
    raw() {
      rawDb ??= makeRaw();
      return rawDb;
    },
    async dispose() {
      await Promise.all(opened.map((s) => s.close()));
      await rawDb?.destroy();
      await remove();
    },
  };
}
