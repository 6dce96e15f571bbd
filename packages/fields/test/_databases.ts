// Real databases for the ORM tests: SQLite (better-sqlite3, in memory or in a temporary file)
// and PostgreSQL (a fresh schema per test file, dropped afterwards).
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { expect } from 'vitest';
import { FieldsError, type FieldsErrorCode } from '../src/errors.js';

export interface SqliteHandle {
  readonly db: Database.Database;
  /** Closes the database and removes its temporary directory, if any. */
  close(): void;
}

/** An in-memory SQLite database, or (`file: true`) one in a fresh temporary directory. */
export function openSqlite(options: { file?: boolean } = {}): SqliteHandle {
  if (!options.file) {
    const db = new Database(':memory:');
    return { db, close: () => db.close() };
  }
  const dir = mkdtempSync(join(tmpdir(), 'coffer-fields-'));
  const db = new Database(join(dir, 'test.sqlite'));
  db.pragma('journal_mode = WAL');
  return {
    db,
    close() {
      db.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

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

/**
 * Whether PostgreSQL answers at {@link POSTGRES_URL}. When it does not, the PostgreSQL tests
 * are skipped with a visible notice, except under CI (`CI=true`), where this throws: CI must
 * run them.
 */
export async function postgresAvailable(): Promise<boolean> {
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
}

export interface PostgresSchema {
  /** The schema's name: unique per call, so parallel runs and test files never collide. */
  readonly name: string;
  /** A pool whose connections use the schema (search_path). */
  readonly pool: pg.Pool;
  /** Drops the schema with everything in it and closes the pool. */
  drop(): Promise<void>;
}

/** A fresh schema for one test file, named `coffer_<prefix>_<random>`. */
export async function createPostgresSchema(prefix: string): Promise<PostgresSchema> {
  if (!/^[a-z][a-z0-9_]{0,30}$/.test(prefix)) throw new Error(`bad schema prefix ${prefix}`);
  const name = `coffer_${prefix}_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: POSTGRES_URL });
  await admin.connect();
  try {
    await admin.query(`create schema "${name}"`);
  } finally {
    await admin.end();
  }
  const pool = new pg.Pool({
    connectionString: POSTGRES_URL,
    options: `-c search_path="${name}"`,
    max: 4,
  });
  return {
    name,
    pool,
    async drop() {
      await pool.end();
      const c = new pg.Client({ connectionString: POSTGRES_URL });
      await c.connect();
      try {
        await c.query(`drop schema if exists "${name}" cascade`);
      } finally {
        await c.end();
      }
    },
  };
}

// ---- Shared by the ORM tests: schema DDL, sample rows, and an error matcher ----

/** The tenant both sample users belong to. */
export const ORG = 'org-1';

/** DDL for the `users` and `notes` tables the ORM tests use (SQLite `blob`, PostgreSQL `bytea`). */
export function ddl(blob: 'blob' | 'bytea'): string[] {
  return [
    `create table users (id text primary key, org_id text not null, email text, email_idx text,
      age text, balance text, active text, born text, prefs text, avatar ${blob}, nickname text)`,
    'create index users_email_idx on users (org_id, email_idx)',
    'create table notes (id integer primary key, body text)',
  ];
}

/** Sample rows covering every value type (tenant column added by each test in its own naming). */
export const ALICE = {
  id: 'u-alice',
  email: 'Alice@Example.com',
  age: 36.5,
  balance: 12345678901234567890n,
  active: true,
  born: new Date('1990-02-03T04:05:06.789Z'),
  prefs: { theme: 'dark', langs: ['en', 'fi'], beta: null },
  avatar: new Uint8Array([0, 1, 2, 0xcf, 250, 255]),
  nickname: 'al',
};

export const BOB = {
  id: 'u-bob',
  email: 'bob@example.com',
  age: -1e-300,
  balance: -5n,
  active: false,
  born: new Date(-86_400_000),
  prefs: ['a', 1, false],
  avatar: new Uint8Array(0),
  nickname: null,
};

/** The error `run` fails with, checked to be a FieldsError with `code`. */
export async function failure(run: () => unknown, code: FieldsErrorCode): Promise<FieldsError> {
  let caught: unknown;
  try {
    await run();
  } catch (err) {
    caught = err;
  }
  expect(caught, `expected ${code}`).toBeDefined();
  if (!FieldsError.is(caught, code)) throw caught;
  return caught;
}
