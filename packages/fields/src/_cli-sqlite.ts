import { FieldsError } from './errors.js';
import type { StoredValue } from './field-cipher.js';
import type { EncryptedColumnSpec, FieldRow, FieldTable, RowKey } from './reencrypt.js';

// A FieldTable over one SQLite table through better-sqlite3, for the CLI (and its tests): raw,
// parameterised SQL; identifiers quoted, values always bound.

/** The part of better-sqlite3's statement API used here. */
export interface SqliteStatement {
  all(...params: unknown[]): unknown[];
  get(...params: unknown[]): unknown;
  run(...params: unknown[]): { changes: number };
  raw(toggle?: boolean): SqliteStatement;
  safeIntegers(toggle?: boolean): SqliteStatement;
}

/** The part of better-sqlite3's Database used here. */
export interface SqliteDatabase {
  prepare(sql: string): SqliteStatement;
  readonly inTransaction: boolean;
  close(): void;
}

type SqliteConstructor = new (
  path: string,
  options: { readonly?: boolean; fileMustExist?: boolean },
) => SqliteDatabase;

/**
 * Opens an existing database file with better-sqlite3 when it is installed (an optional
 * dependency: imported only when a command needs it). Undefined when it is not installed.
 */
export async function openSqlite(
  path: string,
  options: { readonly: boolean },
): Promise<SqliteDatabase | undefined> {
  // A variable specifier keeps TypeScript and bundlers from requiring the package.
  const specifier = 'better-sqlite3';
  let Database: SqliteConstructor;
  try {
    const mod = (await import(specifier)) as { default: SqliteConstructor };
    Database = mod.default;
  } catch {
    return undefined;
  }
  try {
    return new Database(path, { readonly: options.readonly, fileMustExist: true });
  } catch (err) {
    // better-sqlite3 throws before it can load its native binding, or for the file itself.
    const message = err instanceof Error ? err.message : String(err);
    if (/bindings|\.node\b|NODE_MODULE_VERSION/.test(message)) return undefined;
    throw new FieldsError('INVALID_ARGUMENT', 'cli.sqlite', `cannot open ${path}: ${message}`);
  }
}

export interface SqliteTableOptions {
  readonly table: string;
  readonly primaryKey: string;
  readonly columns: readonly EncryptedColumnSpec[];
  readonly tenantColumn?: string;
  /** Further columns read into each row's values (the shadow index columns). */
  readonly extraColumns?: readonly string[];
}

/** Quotes an identifier for SQLite: "name", with embedded quotes doubled. */
export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** The names of the table's columns; empty when there is no such table. */
export function tableColumns(db: SqliteDatabase, table: string): string[] {
  const rows = db.prepare(`PRAGMA table_info(${quoteIdent(table)})`).all() as { name: string }[];
  return rows.map((r) => r.name);
}

/**
 * A {@link FieldTable} over one SQLite table: keyset pagination on the primary key, and
 * compare-and-set row updates (`UPDATE ... WHERE pk = ? AND col = ?`). Integer keys are read as
 * bigints (exact beyond 2^53); they bind to the same row id text as numbers.
 */
export function sqliteFieldTable(db: SqliteDatabase, options: SqliteTableOptions): FieldTable {
  const { table, primaryKey, columns, tenantColumn } = options;
  const op = 'cli.sqlite';
  const names = columns.map((c) => c.name);
  const extras = options.extraColumns ?? [];
  const selected = [primaryKey, ...(tenantColumn ? [tenantColumn] : []), ...names, ...extras];
  if (new Set(selected).size !== selected.length)
    throw new FieldsError(
      'INVALID_ARGUMENT',
      op,
      'primary key, tenant and encrypted columns must be distinct',
    );
  const t = quoteIdent(table);
  const pk = quoteIdent(primaryKey);
  const list = selected.map(quoteIdent).join(', ');
  const first = db
    .prepare(`SELECT ${list} FROM ${t} ORDER BY ${pk} LIMIT ?`)
    .raw(true)
    .safeIntegers(true);
  const next = db
    .prepare(`SELECT ${list} FROM ${t} WHERE ${pk} > ? ORDER BY ${pk} LIMIT ?`)
    .raw(true)
    .safeIntegers(true);
  const updates = new Map<string, SqliteStatement>();
  const begin = db.prepare('BEGIN IMMEDIATE');
  const commit = db.prepare('COMMIT');
  const rollback = db.prepare('ROLLBACK');

  const bytes = (v: Uint8Array) =>
    Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);

  function toRow(raw: unknown[]): FieldRow {
    const key = raw[0];
    if (typeof key !== 'string' && typeof key !== 'bigint')
      throw new FieldsError(
        'INVALID_ARGUMENT',
        op,
        `${table}.${primaryKey} must be an integer or text key`,
      );
    let i = 1;
    let tenant: string | undefined;
    if (tenantColumn) {
      const v = raw[i++];
      // An integer tenant id binds as its decimal text, as the app's String(orgId) would.
      if (typeof v === 'string' || typeof v === 'bigint') tenant = String(v);
      else if (v !== null)
        throw new FieldsError(
          'INVALID_ARGUMENT',
          op,
          `${table}.${tenantColumn} row ${key}: tenant must be text, an integer or NULL`,
        );
    }
    const values: Record<string, StoredValue | null> = {};
    for (const name of [...names, ...extras]) {
      const v = raw[i++];
      if (v === null || typeof v === 'string' || v instanceof Uint8Array) values[name] = v;
      else
        throw new FieldsError(
          'INVALID_ARGUMENT',
          op,
          `${table}.${name} row ${key} holds a number; only text and blob columns hold fields`,
        );
    }
    return tenant === undefined ? { key, values } : { key, tenant, values };
  }

  return {
    name: table,
    columns,
    async readBatch(afterKey: RowKey | undefined, limit: number) {
      const rows = afterKey === undefined ? first.all(limit) : next.all(bindKey(afterKey), limit);
      return (rows as unknown[][]).map(toRow);
    },
    async writeRow(key, changes, expected) {
      const set = Object.keys(changes);
      const where = Object.keys(expected);
      const id = `${set.join('\0')}\n${where.join('\0')}`;
      let stmt = updates.get(id);
      if (!stmt) {
        const sets = set.map((c) => `${quoteIdent(c)} = ?`).join(', ');
        const checks = where.map((c) => ` AND ${quoteIdent(c)} = ?`).join('');
        stmt = db.prepare(`UPDATE ${t} SET ${sets} WHERE ${pk} = ?${checks}`);
        updates.set(id, stmt);
      }
      const bind = (v: StoredValue) => (typeof v === 'string' ? v : bytes(v));
      const params = [
        ...set.map((c) => bind(changes[c] as StoredValue)),
        bindKey(key),
        ...where.map((c) => bind(expected[c] as StoredValue)),
      ];
      return stmt.run(...params).changes === 1;
    },
    async transaction<T>(work: () => Promise<T>): Promise<T> {
      // IMMEDIATE takes the write lock up front: no busy error halfway through a batch.
      begin.run();
      try {
        const result = await work();
        commit.run();
        return result;
      } catch (err) {
        if (db.inTransaction) rollback.run();
        throw err;
      }
    },
    async countRows() {
      const row = db.prepare(`SELECT count(*) AS n FROM ${t}`).get() as { n: number };
      return Number(row.n);
    },
  };
}

function bindKey(key: RowKey): string | bigint {
  return typeof key === 'number' ? BigInt(key) : key;
}
