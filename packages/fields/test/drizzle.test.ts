import { randomBytes } from 'node:crypto';
import {
  and,
  asc,
  between,
  count,
  desc,
  eq,
  gt,
  ilike,
  inArray,
  isNotNull,
  like,
  notLike,
  sql,
} from 'drizzle-orm';
import { type BetterSQLite3Database, drizzle as drizzleSqlite } from 'drizzle-orm/better-sqlite3';
import { drizzle as drizzlePg } from 'drizzle-orm/node-postgres';
import { integer as pgInteger, pgTable, text as pgText } from 'drizzle-orm/pg-core';
import { integer, sqliteTable, text } from 'drizzle-orm/sqlite-core';
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { createBlindIndexer } from '../src/blind-index.js';
import { createDrizzleFields, type DrizzleFields } from '../src/drizzle.js';
import { defineEncryptedSchema } from '../src/encrypted-schema.js';
import { FieldsError } from '../src/errors.js';
import { createFieldCipher } from '../src/field-cipher.js';
import type { KeyProvider } from '../src/key-provider.js';
import { createKeyring } from '../src/keyring.js';
import { createLocalProvider } from '../src/providers/local.js';
import {
  ALICE,
  BOB,
  createPostgresSchema,
  ddl,
  failure,
  ORG,
  openSqlite,
  type PostgresSchema,
  postgresAvailable,
} from './_databases.js';

const schema = defineEncryptedSchema({
  users: {
    primaryKey: 'id',
    tenantColumn: 'org_id',
    columns: {
      email: {
        type: 'string',
        padTo: 32,
        blindIndexes: { email_idx: { bits: 32, normalize: ['trim', 'casefold'] } },
      },
      age: { type: 'number' },
      balance: { type: 'bigint' },
      active: { type: 'boolean' },
      born: { type: 'date' },
      prefs: { type: 'json' },
      avatar: { type: 'bytes', format: 'binary' },
    },
  },
  notes: { primaryKey: 'id', columns: { body: { type: 'string' } } },
});
type Schema = typeof schema;
const migratingSchema = defineEncryptedSchema({
  ...schema,
  notes: { primaryKey: 'id', columns: { body: { type: 'string', migrating: true } } },
});

function sqliteTables(f: DrizzleFields<Schema>) {
  return {
    users: sqliteTable('users', {
      id: text('id').primaryKey(),
      orgId: text('org_id').notNull(),
      email: f.sqliteColumn('users', 'email'),
      emailIdx: text('email_idx'),
      age: f.sqliteColumn('users', 'age'),
      balance: f.sqliteColumn('users', 'balance'),
      active: f.sqliteColumn('users', 'active'),
      born: f.sqliteColumn('users', 'born'),
      prefs: f.sqliteColumn('users', 'prefs'),
      avatar: f.sqliteColumn('users', 'avatar'),
      nickname: text('nickname'),
    }),
    notes: sqliteTable('notes', {
      id: integer('id').primaryKey(),
      body: f.sqliteColumn('notes', 'body'),
    }),
  };
}

function pgTables(f: DrizzleFields<Schema>) {
  return {
    users: pgTable('users', {
      id: pgText('id').primaryKey(),
      orgId: pgText('org_id').notNull(),
      email: f.pgColumn('users', 'email'),
      emailIdx: pgText('email_idx'),
      age: f.pgColumn('users', 'age'),
      balance: f.pgColumn('users', 'balance'),
      active: f.pgColumn('users', 'active'),
      born: f.pgColumn('users', 'born'),
      prefs: f.pgColumn('users', 'prefs'),
      avatar: f.pgColumn('users', 'avatar'),
      nickname: pgText('nickname'),
    }),
    notes: pgTable('notes', {
      id: pgInteger('id').primaryKey(),
      body: f.pgColumn('notes', 'body'),
    }),
  };
}

type Tables = ReturnType<typeof sqliteTables>;

const alice = { ...ALICE, orgId: ORG };
const bob = { ...BOB, orgId: ORG };

/** The one row a query must have returned. */
function first<T>(rows: readonly T[]): T {
  const row = rows[0];
  if (row === undefined) throw new Error('expected a row');
  return row;
}

const keys = await (async () => {
  const provider = await createLocalProvider({ kek: new Uint8Array(randomBytes(32)) });
  const keyring = await createKeyring(provider, 'kek');
  const fields = createFieldCipher(keyring, provider);
  return { provider, keyring, fields, indexer: createBlindIndexer(keyring, fields) };
})();

const postgres = await postgresAvailable();

interface Harness {
  readonly dialect: 'sqlite' | 'postgresql';
  /** The suite's Drizzle database, with the query guard as its logger. */
  readonly db: BetterSQLite3Database;
  readonly tables: Tables;
  /** Same tables and database, read through a schema whose notes.body is in migration. */
  readonly migrating: { readonly db: BetterSQLite3Database; readonly tables: Tables };
  /** Raw SQL on the same database, as an attacker with database access would run it. */
  exec(sql: string): Promise<void>;
  query(sql: string): Promise<Record<string, unknown>[]>;
  close(): Promise<void>;
}

function suite(
  name: string,
  open: (f: DrizzleFields<Schema>, m: DrizzleFields<typeof migratingSchema>) => Promise<Harness>,
) {
  const f = createDrizzleFields({ schema, ...keys });
  const m = createDrizzleFields({ schema: migratingSchema, ...keys });

  describe(name, () => {
    let h: Harness;
    let db: BetterSQLite3Database;
    let users: Tables['users'];
    let notes: Tables['notes'];
    const count_ = async (table: Tables['users'] | Tables['notes']) =>
      (await db.select({ n: count() }).from(table))[0]?.n;
    const emailIdx = (email: string, tenant = 'org-1') =>
      f.blindIndex('users', 'email', 'email_idx', email, { tenant });

    beforeAll(async () => {
      h = await open(f, m);
      db = h.db;
      ({ users, notes } = h.tables);
    });
    afterAll(() => h?.close());
    beforeEach(async () => {
      await h.exec('delete from users');
      await h.exec('delete from notes');
      await db
        .insert(users)
        .values([await f.encryptRow(users, alice), await f.encryptRow(users, bob)]);
    });

    test('every type round-trips through the database, and is stored encrypted', async () => {
      const rows = await db.select().from(users).orderBy(asc(users.id));
      const opened = await Promise.all(rows.map((r) => f.decryptRow(users, r)));
      expect(opened.map(({ emailIdx, ...rest }) => rest)).toEqual([alice, bob]);
      for (const r of opened) expect(r.emailIdx).toMatch(/^[0-9a-f]{8}$/);
      // Sealed handles do not pass for data.
      expect(String(rows[0]?.email)).toBe('[sealed users.email]');
      expect(() => JSON.stringify(rows[0])).toThrow(/decryptRow/);
      const [stored] = await h.query(`select * from users where id = '${alice.id}'`);
      for (const c of ['email', 'age', 'balance', 'active', 'born', 'prefs'])
        expect(String(stored?.[c])).toMatch(/^cf1:/);
      expect((stored?.avatar as Uint8Array | undefined)?.[0]).toBe(0xcf);
      expect(stored?.nickname).toBe('al');
    });

    test('lookup by blind index, and partial selects under other names', async () => {
      const found = await db
        .select({ id: users.id, orgId: users.orgId, mail: users.email })
        .from(users)
        .where(
          and(eq(users.orgId, 'org-1'), eq(users.emailIdx, await emailIdx(' ALICE@example.COM'))),
        );
      expect(await Promise.all(found.map((r) => f.decryptRow(users, r)))).toEqual([
        { id: alice.id, orgId: 'org-1', mail: alice.email },
      ]);
      const other = await db
        .select({ id: users.id })
        .from(users)
        .where(eq(users.emailIdx, await emailIdx('alice@example.com', 'org-2')));
      expect(other).toEqual([]);
      const noKey = first(
        await db.select({ orgId: users.orgId, mail: users.email }).from(users).limit(1),
      );
      const err = await failure(() => f.decryptRow(users, noKey), 'INVALID_ARGUMENT');
      expect(err.message).toContain('users.id');
      const noTenant = first(
        await db.select({ id: users.id, mail: users.email }).from(users).limit(1),
      );
      await failure(() => f.decryptRow(users, noTenant), 'INVALID_ARGUMENT');
    });

    test('an update re-encrypts one pinned row; returning is decrypted with its row', async () => {
      const updated = first(
        await db
          .update(users)
          .set(
            await f.encryptRow(users, {
              id: alice.id,
              orgId: 'org-1',
              email: 'alice@new.example',
              age: null,
            }),
          )
          .where(and(eq(users.id, alice.id), eq(users.orgId, 'org-1')))
          .returning({
            id: users.id,
            orgId: users.orgId,
            email: users.email,
            age: users.age,
            balance: users.balance,
          }),
      );
      expect(await f.decryptRow(users, updated)).toEqual({
        id: alice.id,
        orgId: 'org-1',
        email: 'alice@new.example',
        age: null,
        balance: alice.balance,
      });
      const byIndex = await db
        .select({ id: users.id })
        .from(users)
        .where(eq(users.emailIdx, await emailIdx('ALICE@NEW.example')));
      expect(byIndex).toEqual([{ id: alice.id }]);
    });

    test('an upsert on the primary key writes the row encryptRow() returned', async () => {
      const row = await f.encryptRow(users, {
        id: alice.id,
        orgId: 'org-1',
        email: 'up@example.com',
      });
      await db.insert(users).values(row).onConflictDoUpdate({ target: users.id, set: row });
      const got = first(
        await db
          .select({ id: users.id, orgId: users.orgId, email: users.email, age: users.age })
          .from(users)
          .where(eq(users.id, alice.id)),
      );
      expect(await f.decryptRow(users, got)).toEqual({
        id: alice.id,
        orgId: 'org-1',
        email: 'up@example.com',
        age: alice.age,
      });
      expect(await count_(users)).toBe(2);
    });

    test('copy-paste attack in SQL: a ciphertext moved to another row fails to open', async () => {
      await h.exec(
        `update users set email = (select email from users where id = '${bob.id}') where id = '${alice.id}'`,
      );
      const a = first(await db.select().from(users).where(eq(users.id, alice.id)));
      const err = await failure(() => f.decryptRow(users, a), 'DECRYPTION_FAILED');
      expect(err.message).not.toContain(bob.email);
      const b = first(await db.select().from(users).where(eq(users.id, bob.id)));
      expect((await f.decryptRow(users, b)).email).toBe(bob.email);
      // To another column of the same row, and to another tenant.
      await h.exec(`update users set email = age where id = '${bob.id}'`);
      const b2 = first(await db.select().from(users).where(eq(users.id, bob.id)));
      await failure(() => f.decryptRow(users, b2), 'DECRYPTION_FAILED');
      await h.exec(`update users set org_id = 'org-2' where id = '${alice.id}'`);
      const a2 = first(
        await db
          .select({ id: users.id, orgId: users.orgId, age: users.age })
          .from(users)
          .where(eq(users.id, alice.id)),
      );
      await failure(() => f.decryptRow(users, a2), 'DECRYPTION_FAILED');
    });

    test('the same copy through Drizzle is refused before it runs', async () => {
      const viaSql = await failure(
        () =>
          db
            .update(users)
            .set({
              email: sql`(select ${users.email} from ${users} where ${users.id} = ${bob.id})`,
            })
            .where(and(eq(users.id, alice.id), eq(users.orgId, 'org-1'))),
        'UNSUPPORTED_OPERATION',
      );
      expect(viaSql.message).toContain('users.email');
      const b = first(await db.select().from(users).where(eq(users.id, bob.id)));
      const writeBack = await failure(
        () =>
          db
            .update(users)
            .set({ email: b?.email })
            .where(and(eq(users.id, alice.id), eq(users.orgId, 'org-1'))),
        'UNSUPPORTED_OPERATION',
      );
      expect(writeBack.message).toContain('read from the database');
      await failure(
        async () =>
          db
            .insert(users)
            .values(
              await f.encryptRow(users, { id: alice.id, orgId: 'org-1', email: 'z@example.com' }),
            )
            .onConflictDoUpdate({ target: users.id, set: { email: sql.raw('excluded.email') } }),
        'UNSUPPORTED_OPERATION',
      );
      await failure(
        () => db.insert(notes).select(db.select().from(notes)),
        'UNSUPPORTED_OPERATION',
      );
      // The victim row is untouched.
      const a = first(await db.select().from(users).where(eq(users.id, alice.id)));
      expect((await f.decryptRow(users, a)).email).toBe(alice.email);
    });

    test('like, ilike, ranges, order by, group by, equality and functions on encrypted columns are refused', async () => {
      // Sealed operands type-check; the guard still refuses what cannot work on ciphertexts.
      const sealed = await f.encryptRow(users, {
        id: alice.id,
        orgId: 'org-1',
        age: 30,
        email: 'x',
        balance: 1n,
      });
      const cases: [string, () => unknown][] = [
        [
          'like',
          () => db.select({ id: users.id }).from(users).where(like(users.email, '%example%')),
        ],
        [
          'not like',
          () => db.select({ id: users.id }).from(users).where(notLike(users.email, '%example%')),
        ],
        ['>', () => db.select({ id: users.id }).from(users).where(gt(users.age, sql`30`))],
        [
          'between',
          () =>
            db
              .select({ id: users.id })
              .from(users)
              .where(between(users.age, sealed.age as never, sealed.age as never)),
        ],
        ['order by', () => db.select({ id: users.id }).from(users).orderBy(users.email)],
        ['order by', () => db.select({ id: users.id }).from(users).orderBy(desc(users.born))],
        ['group by', () => db.select({ n: count() }).from(users).groupBy(users.active)],
        [
          '=',
          () =>
            db
              .select({ id: users.id })
              .from(users)
              .where(eq(users.email, sealed.email as never)),
        ],
        [
          'in',
          () =>
            db
              .select({ id: users.id })
              .from(users)
              .where(inArray(users.balance, [sealed.balance as never])),
        ],
        [
          'lower',
          () => db.select({ id: users.id }).from(users).where(sql`lower(${users.email}) = ${'x'}`),
        ],
        ['=', () => db.delete(users).where(eq(users.email, sealed.email as never))],
      ];
      // ilike is PostgreSQL's (SQLite refuses it as a syntax error when preparing).
      if (h.dialect === 'postgresql')
        cases.push([
          'ilike',
          () => db.select({ id: users.id }).from(users).where(ilike(users.email, '%EXAMPLE%')),
        ]);
      for (const [what, run] of cases) {
        const err = await failure(run, 'UNSUPPORTED_OPERATION');
        expect(err.message, what).toContain(what);
        expect(err.message).toMatch(/users\.(email|age|born|active|balance)/);
      }
      const eqErr = await failure(
        cases.find(([what]) => what === '=')?.[1] ?? (() => undefined),
        'UNSUPPORTED_OPERATION',
      );
      expect(eqErr.message).toContain('users.email_idx');
      // A plaintext operand is refused even earlier, by the column type (and by TypeScript).
      const plain = await failure(
        () =>
          db
            .select()
            .from(users)
            .where(gt(users.age, 30 as never)),
        'PLAINTEXT_VALUE',
      );
      expect(plain.message).toContain('users.age');
      // What works: null tests, count() and the blind index.
      const ok = first(
        await db
          .select({ n: count(users.email) })
          .from(users)
          .where(and(isNotNull(users.email), isNotNull(users.age))),
      );
      expect(ok?.n).toBe(2);
      expect(await count_(users)).toBe(2);
    });

    test('plaintext is never written to an encrypted column', async () => {
      const cases: (() => unknown)[] = [
        () =>
          db
            .insert(users)
            .values({ id: 'u-p', orgId: 'org-1', email: 'plain@example.com' as never }),
        () => db.insert(notes).values({ id: 9, body: 'cf1:AAAA' as never }),
        () =>
          db
            .update(users)
            .set({ age: 42 as never })
            .where(and(eq(users.id, alice.id), eq(users.orgId, 'org-1'))),
        () =>
          db
            .insert(users)
            .values({ id: 'u-q', orgId: 'org-1', avatar: new Uint8Array([1, 2]) as never }),
      ];
      for (const run of cases) await failure(run, 'PLAINTEXT_VALUE');
      expect(await count_(users)).toBe(2);
      expect(await count_(notes)).toBe(0);
    });

    test('ciphertexts stay with the row and column they were encrypted for', async () => {
      const row = await f.encryptRow(users, {
        id: 'u-dave',
        orgId: 'org-1',
        email: 'dave@example.com',
        age: 40,
      });
      const moved = await failure(
        () => db.insert(users).values({ ...row, id: 'u-eve' }),
        'INVALID_ARGUMENT',
      );
      expect(moved.message).toContain('another row');
      await failure(() => db.insert(users).values({ ...row, orgId: 'org-2' }), 'INVALID_ARGUMENT');
      const crossed = await failure(
        () => db.insert(users).values({ ...row, age: row.email as never }),
        'INVALID_ARGUMENT',
      );
      expect(crossed.message).toContain('users.email');
      const { email, emailIdx: idx } = row;
      await failure(
        () => db.update(users).set({ email, emailIdx: idx }).where(eq(users.nickname, 'al')),
        'UNSUPPORTED_OPERATION',
      );
      await failure(
        () => db.update(users).set({ email, emailIdx: idx }).where(eq(users.id, 'u-dave')),
        'UNSUPPORTED_OPERATION',
      );
      await failure(
        () => db.update(users).set({ id: 'u-new' }).where(eq(users.id, alice.id)),
        'UNSUPPORTED_OPERATION',
      );
      await failure(
        () =>
          db
            .update(users)
            .set({ email, emailIdx: idx })
            .where(and(eq(users.id, alice.id), eq(users.orgId, 'org-1'))),
        'INVALID_ARGUMENT',
      );
      await failure(
        () => f.encryptRow(users, { orgId: 'org-1', email: 'x' } as never),
        'INVALID_ARGUMENT',
      );
      await failure(
        () => f.encryptRow(users, { id: 'u-f', email: 'x' } as never),
        'INVALID_ARGUMENT',
      );
      await failure(
        () => f.encryptRow(users, { id: 'u-f', orgId: 'o', email: 5 as never }),
        'INVALID_ARGUMENT',
      );
      await failure(
        () => f.encryptRow(users, { id: 'u-f', orgId: 'o', emailIdx: 'ab' }),
        'INVALID_ARGUMENT',
      );
      expect(await count_(users)).toBe(2);
      // The row as encryptRow() returned it goes in; nulls and plain columns need no ceremony.
      await db.insert(users).values(row);
      await db
        .update(users)
        .set({ nickname: 'bobby', email: null, emailIdx: null })
        .where(eq(users.id, bob.id));
      const b = first(
        await db
          .select({
            id: users.id,
            orgId: users.orgId,
            email: users.email,
            nickname: users.nickname,
          })
          .from(users)
          .where(eq(users.id, bob.id)),
      );
      expect(await f.decryptRow(users, b)).toEqual({
        id: bob.id,
        orgId: 'org-1',
        email: null,
        nickname: 'bobby',
      });
    });

    test('plaintext in an encrypted column: PLAINTEXT_VALUE, except inside a migration window', async () => {
      await h.exec(`insert into notes (id, body) values (1, 'legacy plaintext')`);
      await db.insert(notes).values(await f.encryptRow(notes, { id: 2, body: 'sealed' }));
      const rows = await db.select().from(notes).orderBy(notes.id);
      await failure(() => f.decryptRow(notes, rows[0] ?? {}), 'PLAINTEXT_VALUE');
      const mt = h.migrating.tables.notes;
      const read = await h.migrating.db.select().from(mt).orderBy(mt.id);
      expect(await Promise.all(read.map((r) => m.decryptRow(mt, r)))).toEqual([
        { id: 1, body: 'legacy plaintext' },
        { id: 2, body: 'sealed' },
      ]);
      // Handles from one set of fields do not open with another.
      await failure(() => m.decryptRow(mt, rows[1] ?? {}), 'INVALID_ARGUMENT');
      // The window is for reading: writes are still refused.
      await failure(
        () => h.migrating.db.insert(mt).values({ id: 3, body: 'x' as never }),
        'PLAINTEXT_VALUE',
      );
    });

    test('integer primary keys', async () => {
      await db
        .insert(notes)
        .values([
          await f.encryptRow(notes, { id: 1, body: 'one' }),
          await f.encryptRow(notes, { id: 2, body: 'two' }),
        ]);
      const rows = await db.select().from(notes).orderBy(notes.id);
      expect(await Promise.all(rows.map((r) => f.decryptRow(notes, r)))).toEqual([
        { id: 1, body: 'one' },
        { id: 2, body: 'two' },
      ]);
      await h.exec('update notes set body = (select body from notes where id = 1) where id = 2');
      const two = first(await db.select().from(notes).where(eq(notes.id, 2)));
      await failure(() => f.decryptRow(notes, two), 'DECRYPTION_FAILED');
    });

    test('nothing is written when encryption fails', async () => {
      // An unreachable provider (a network outage cannot be staged here): a fresh cipher has no
      // cached keys, so encryptRow must call it.
      const down: KeyProvider = {
        kind: 'local',
        keyOperation: async () => {
          throw new FieldsError(
            'PROVIDER_UNAVAILABLE',
            'provider.test',
            'key provider unreachable',
          );
        },
      };
      const fields = createFieldCipher(keys.keyring, down);
      const broken = createDrizzleFields({
        schema,
        fields,
        indexer: createBlindIndexer(keys.keyring, fields),
      });
      const err = await failure(
        async () =>
          db
            .insert(users)
            .values(
              await broken.encryptRow(users, { id: 'u-z', orgId: 'org-1', email: 'z@example.com' }),
            ),
        'PROVIDER_UNAVAILABLE',
      );
      expect(err.retryable).toBe(true);
      await failure(
        async () => db.insert(notes).values([await broken.encryptRow(notes, { id: 1, body: 'a' })]),
        'PROVIDER_UNAVAILABLE',
      );
      expect(await count_(users)).toBe(2);
      expect(await count_(notes)).toBe(0);
    });
  });
}

suite('drizzle on SQLite (better-sqlite3, temporary file)', async (f, m) => {
  const sqlite = openSqlite({ file: true });
  for (const s of ddl('blob')) sqlite.db.exec(s);
  const tables = sqliteTables(f);
  const mtables = sqliteTables(m as unknown as DrizzleFields<Schema>);
  return {
    dialect: 'sqlite',
    db: drizzleSqlite(sqlite.db, { logger: f.queryGuard() }),
    tables,
    migrating: { db: drizzleSqlite(sqlite.db, { logger: m.queryGuard() }), tables: mtables },
    async exec(text) {
      sqlite.db.exec(text);
    },
    async query(text) {
      return sqlite.db.prepare(text).all() as Record<string, unknown>[];
    },
    async close() {
      sqlite.close();
    },
  };
});

describe.skipIf(!postgres)('PostgreSQL', () => {
  let pg: PostgresSchema | undefined;
  // The suite is typed against the SQLite flavour of Drizzle; the builder calls it makes are the
  // same on node-postgres, so the PostgreSQL database and tables are passed through it as is.
  const asSqlite = <T>(value: unknown) => value as T;
  suite('drizzle on PostgreSQL (node-postgres)', async (f, m) => {
    pg = await createPostgresSchema('drizzle');
    for (const s of ddl('bytea')) await pg.pool.query(s);
    const pool = pg.pool;
    return {
      dialect: 'postgresql',
      db: asSqlite<BetterSQLite3Database>(drizzlePg(pool, { logger: f.queryGuard() })),
      tables: asSqlite<Tables>(pgTables(f)),
      migrating: {
        db: asSqlite<BetterSQLite3Database>(drizzlePg(pool, { logger: m.queryGuard() })),
        tables: asSqlite<Tables>(pgTables(m as unknown as DrizzleFields<Schema>)),
      },
      async exec(text) {
        await pool.query(text);
      },
      async query(text) {
        return (await pool.query(text)).rows;
      },
      async close() {
        await pg?.drop();
      },
    };
  });
});
