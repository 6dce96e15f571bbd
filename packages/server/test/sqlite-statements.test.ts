import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { cachingStatements, MAX_CACHED_STATEMENTS } from '../src/storage/_sqlite-statements.js';

describe('cachingStatements', () => {
  const database = new Database(':memory:');
  database.exec('create table t (n integer)');
  const cached = cachingStatements(database);
  afterEach(() => database.exec('delete from t'));

  it('prepares a SQL text once, and the kept statement runs with new parameters', () => {
    const a = cached.prepare('insert into t (n) values (?)');
    const b = cached.prepare('insert into t (n) values (?)');
    expect(b).toBe(a);
    a.run([1]);
    b.run([2]);
    expect(cached.prepare('select n from t order by n').all([])).toEqual([{ n: 1 }, { n: 2 }]);
  });

  it('keeps the most recently used statements, at most the cap', () => {
    const first = cached.prepare('select 0 as k');
    const kept = cached.prepare('select 1 as k');
    for (let i = 2; i < MAX_CACHED_STATEMENTS + 1; i++) {
      cached.prepare(`select ${i} as k`);
      if (i % 10 === 0) cached.prepare('select 1 as k'); // used again: stays
    }
    expect(cached.prepare('select 1 as k')).toBe(kept);
    expect(cached.prepare('select 0 as k')).not.toBe(first);
  });

  it('a statement still iterating is not handed out again', () => {
    database.exec('insert into t (n) values (1), (2)');
    const select = cached.prepare('select n from t order by n');
    const rows = select.iterate([]);
    rows.next();
    const other = cached.prepare('select n from t order by n');
    expect(other).not.toBe(select);
    expect(other.all([])).toEqual([{ n: 1 }, { n: 2 }]);
    rows.return?.();
  });
});
