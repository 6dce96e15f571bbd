// Kysely's SQLite driver prepares a query's SQL on every execution; this keeps the statements.
import type Database from 'better-sqlite3';
import type { SqliteDatabase } from 'kysely';

/** Prepared statements kept per SQLite connection, by SQL text (least recently used out). */
export const MAX_CACHED_STATEMENTS = 256;

/**
 * The database as Kysely's SQLite driver sees it, keeping prepared statements instead of
 * preparing each query's SQL again (Kysely prepares on every execution: a fifth of a simple
 * query's time). Statements run one at a time on the one connection, so a cached one is never
 * in use by another query; one busy anyway (an open iterator) is prepared afresh.
 */
export function cachingStatements(database: Database.Database): SqliteDatabase {
  const cache = new Map<string, Database.Statement>();
  return {
    close: () => database.close(),
    prepare(text) {
      let statement = cache.get(text);
      if (statement && !statement.busy) {
        cache.delete(text); // re-inserted below: most recently used last
      } else {
        if (statement) cache.delete(text);
        else if (cache.size >= MAX_CACHED_STATEMENTS) cache.delete(cache.keys().next().value!);
        statement = database.prepare(text);
      }
      cache.set(text, statement);
      return statement;
    },
  };
}
