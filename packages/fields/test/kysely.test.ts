import { randomBytes } from 'node:crypto';
import { Kysely, PostgresDialect, SqliteDialect, sql } from 'kysely';
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { createBlindIndexer } from '../src/blind-index.js';
import { defineEncryptedSchema } from '../src/encrypted-schema.js';
import { FieldsError } from '../src/errors.js';
import { createFieldCipher } from '../src/field-cipher.js';
import type { KeyProvider } from '../src/key-provider.js';
import { createKeyring } from '../src/keyring.js';
import { type Ciphertext, createKyselyFieldsPlugin, type Encrypted } from '../src/kysely-plugin.js';
import { createLocalProvider } from '../src/providers/local.js';
import type { JsonValue } from '../src/value-codec.js';
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

interface DB {
  users: {
    id: string;
    org_id: string;
    email: Encrypted<string | null>;
    email_idx: string | null;
    age: Encrypted<number | null>;
    balance: Encrypted<bigint | null>;
    active: Encrypted<boolean | null>;
    born: Encrypted<Date | null>;
    prefs: Encrypted<JsonValue>;
    avatar: Encrypted<Uint8Array | null, 'binary'>;
    nickname: string | null;
  };
  notes: { id: number; body: Encrypted<string | null> };
}

const alice = { ...ALICE, org_id: ORG };
const bob = { ...BOB, org_id: ORG };

const keys = await (async () => {
  const provider = await createLocalProvider({ kek: new Uint8Array(randomBytes(32)) });
  const keyring = await createKeyring(provider, 'kek');
  const fields = createFieldCipher(keyring, provider);
  return { provider, keyring, fields, indexer: createBlindIndexer(keyring, fields) };
})();

const postgres = await postgresAvailable();

interface Harness {
  /** With the plugin. */
  readonly db: Kysely<DB>;
  /** Without it: sees what is stored, and plays the attacker with SQL. */
  readonly raw: Kysely<DB>;
  close(): Promise<void>;
}

function suite(name: string, open: () => Promise<Harness>) {
  const plugin = createKyselyFieldsPlugin({ schema, ...keys });
  let h: Harness;
  let db: Kysely<DB>;

  const count = async (table: 'users' | 'notes') =>
    Number(
      (
        await h.raw
          .selectFrom(table)
          .select((eb) => eb.fn.countAll().as('n'))
          .executeTakeFirstOrThrow()
      ).n,
    );
  const emailIdx = (email: string, tenant = 'org-1') =>
    plugin.blindIndex('users', 'email', 'email_idx', email, { tenant });

  describe(name, () => {
    beforeAll(async () => {
      h = await open();
      db = h.db.withPlugin(plugin);
    });
    afterAll(() => h?.close());
    beforeEach(async () => {
      await h.raw.deleteFrom('users').execute();
      await h.raw.deleteFrom('notes').execute();
      await db
        .insertInto('users')
        .values([await plugin.encryptRow('users', alice), await plugin.encryptRow('users', bob)])
        .execute();
    });

    test('every type round-trips through the database, and is stored encrypted', async () => {
      const rows = await db.selectFrom('users').selectAll().orderBy('id').execute();
      expect(rows.map(({ email_idx, ...rest }) => rest)).toEqual([alice, bob]);
      for (const row of rows) expect(row.email_idx).toMatch(/^[0-9a-f]{8}$/);
      const stored = await h.raw
        .selectFrom('users')
        .selectAll()
        .where('id', '=', alice.id)
        .executeTakeFirstOrThrow();
      for (const c of ['email', 'age', 'balance', 'active', 'born', 'prefs'] as const)
        expect(String(stored[c])).toMatch(/^cf1:/);
      expect(stored.avatar).toBeInstanceOf(Uint8Array);
      expect((stored.avatar as Uint8Array)[0]).toBe(0xcf);
      expect(String(stored.email)).not.toContain('Alice');
      expect(stored.nickname).toBe('al');
    });

    test('lookup by blind index (normalised, and bound to the tenant)', async () => {
      const found = await db
        .selectFrom('users')
        .select(['id', 'org_id', 'email'])
        .where('org_id', '=', 'org-1')
        .where('email_idx', '=', await emailIdx('  ALICE@example.COM '))
        .execute();
      expect(found).toEqual([{ id: alice.id, org_id: 'org-1', email: alice.email }]);
      const otherTenant = await db
        .selectFrom('users')
        .select('id')
        .where('email_idx', '=', await emailIdx('alice@example.com', 'org-2'))
        .execute();
      expect(otherTenant).toEqual([]);
    });

    test('aliases, joins and returning are decrypted with their own row', async () => {
      const pairs = await db
        .selectFrom('users as a')
        .innerJoin('users as b', 'a.org_id', 'b.org_id')
        .select([
          'a.id',
          'a.org_id',
          'a.email',
          'b.id as b_id',
          'b.org_id as b_org',
          'b.email as b_email',
        ])
        .where('a.id', '=', alice.id)
        .where('b.id', '=', bob.id)
        .execute();
      expect(pairs).toEqual([
        {
          id: alice.id,
          org_id: 'org-1',
          email: alice.email,
          b_id: bob.id,
          b_org: 'org-1',
          b_email: bob.email,
        },
      ]);
      const carol = { id: 'u-carol', org_id: 'org-2', email: 'carol@example.com', age: 7 };
      const inserted = await db
        .insertInto('users')
        .values(await plugin.encryptRow('users', carol))
        .returning(['id', 'org_id', 'email', 'age'])
        .executeTakeFirstOrThrow();
      expect(inserted).toEqual(carol);
    });

    test('an update re-encrypts one pinned row and recomputes its blind index', async () => {
      const updated = await db
        .updateTable('users')
        .set(
          await plugin.encryptRow('users', {
            id: alice.id,
            org_id: 'org-1',
            email: 'alice@new.example',
            age: null,
          }),
        )
        .where('id', '=', alice.id)
        .where('org_id', '=', 'org-1')
        .returning(['id', 'org_id', 'email', 'age', 'balance'])
        .executeTakeFirstOrThrow();
      expect(updated).toEqual({
        id: alice.id,
        org_id: 'org-1',
        email: 'alice@new.example',
        age: null,
        balance: alice.balance,
      });
      const byIndex = await db
        .selectFrom('users')
        .select('id')
        .where('email_idx', '=', await emailIdx('ALICE@NEW.example'))
        .execute();
      expect(byIndex).toEqual([{ id: alice.id }]);
    });

    test('an upsert on the primary key writes the row encryptRow() returned', async () => {
      const row = await plugin.encryptRow('users', {
        id: alice.id,
        org_id: 'org-1',
        email: 'up@example.com',
      });
      await db
        .insertInto('users')
        .values(row)
        .onConflict((oc) => oc.column('id').doUpdateSet(row))
        .execute();
      const got = await db
        .selectFrom('users')
        .select(['id', 'org_id', 'email', 'age'])
        .where('id', '=', alice.id)
        .executeTakeFirstOrThrow();
      expect(got).toEqual({
        id: alice.id,
        org_id: 'org-1',
        email: 'up@example.com',
        age: alice.age,
      });
      expect(await count('users')).toBe(2);
    });

    test('copy-paste attack in SQL: a ciphertext moved to another row fails to open', async () => {
      await sql`update users set email = (select email from users where id = ${bob.id}) where id = ${alice.id}`.execute(
        h.raw,
      );
      const err = await failure(
        () =>
          db
            .selectFrom('users')
            .select(['id', 'org_id', 'email'])
            .where('id', '=', alice.id)
            .execute(),
        'DECRYPTION_FAILED',
      );
      expect(err.message).not.toContain(bob.email);
      // Whole-row reads fail closed too, and the victim row still opens.
      await failure(() => db.selectFrom('users').selectAll().execute(), 'DECRYPTION_FAILED');
      const b = await db
        .selectFrom('users')
        .select(['id', 'org_id', 'email'])
        .where('id', '=', bob.id)
        .executeTakeFirstOrThrow();
      expect(b.email).toBe(bob.email);
      // Moving it to another column of the same row fails as well.
      await sql`update users set nickname = email, email = age where id = ${bob.id}`.execute(h.raw);
      await failure(
        () =>
          db
            .selectFrom('users')
            .select(['id', 'org_id', 'email'])
            .where('id', '=', bob.id)
            .execute(),
        'DECRYPTION_FAILED',
      );
      // And to another tenant: same id, same column.
      await h.raw.deleteFrom('users').execute();
      await h.raw
        .insertInto('users')
        .values(
          await plugin.encryptRow('users', { id: 'u-x', org_id: 'org-1', email: 'x@example.com' }),
        )
        .execute();
      await sql`update users set org_id = 'org-2'`.execute(h.raw);
      await failure(
        () => db.selectFrom('users').select(['id', 'org_id', 'email']).execute(),
        'DECRYPTION_FAILED',
      );
    });

    test('the same copy through the query builder is refused before it runs', async () => {
      const err = await failure(
        () =>
          db
            .updateTable('users')
            // Does not compile either (a subquery is not a Ciphertext); cast to test the run-time check.
            .set({
              email: ((eb: never) =>
                (eb as unknown as typeof db)
                  .selectFrom('users')
                  .select('email')
                  .where('id', '=', bob.id)) as never,
            })
            .where('id', '=', alice.id)
            .execute(),
        'UNSUPPORTED_OPERATION',
      );
      expect(err.message).toContain('users.email');
      const upsert = await failure(
        async () =>
          db
            .insertInto('users')
            .values(
              await plugin.encryptRow('users', {
                id: alice.id,
                org_id: 'org-1',
                email: 'z@example.com',
              }),
            )
            .onConflict((oc) =>
              oc.column('id').doUpdateSet({ email: (eb) => eb.ref('excluded.email') }),
            )
            .execute(),
        'UNSUPPORTED_OPERATION',
      );
      expect(upsert.message).toContain('users.email');
      await failure(
        () =>
          db
            .insertInto('notes')
            .columns(['id', 'body'])
            .expression((eb) => eb.selectFrom('notes').select(['id', 'body']))
            .execute(),
        'UNSUPPORTED_OPERATION',
      );
    });

    test('like, ilike, ranges, order by, group by, equality and functions on encrypted columns are refused', async () => {
      // Comparisons take plaintext types, so a ciphertext operand does not compile: cast.
      const ct = (await plugin.encryptRow('users', { id: alice.id, org_id: 'org-1', age: 30 }))
        .age as never;
      const cases: [string, () => Promise<unknown>][] = [
        [
          'like',
          () => db.selectFrom('users').select('id').where('email', 'like', '%example%').execute(),
        ],
        [
          'ilike',
          () =>
            db
              .selectFrom('users')
              .select('id')
              .where('users.email', 'ilike', '%EXAMPLE%')
              .execute(),
        ],
        ['>', () => db.selectFrom('users').select('id').where('age', '>', ct).execute()],
        ['<=', () => db.selectFrom('users').select('id').where('born', '<=', ct).execute()],
        [
          'between',
          () =>
            db
              .selectFrom('users')
              .select('id')
              .where((eb) => eb.between('age', ct, ct))
              .execute(),
        ],
        [
          'order by',
          () => db.selectFrom('users').select(['id', 'org_id', 'email']).orderBy('email').execute(),
        ],
        [
          'order by',
          () => db.selectFrom('users as u').select('u.id').orderBy('u.born', 'desc').execute(),
        ],
        ['group by', () => db.selectFrom('users').select('active').groupBy('active').execute()],
        ['=', () => db.selectFrom('users').select('id').where('email', '=', ct).execute()],
        ['in', () => db.selectFrom('users').select('id').where('balance', 'in', [ct]).execute()],
        [
          'lower',
          () =>
            db
              .selectFrom('users')
              .select('id')
              .where((eb) => eb(eb.fn('lower', ['email']), '=', 'x'))
              .execute(),
        ],
        [
          'lower',
          () =>
            db
              .selectFrom('users')
              .select((eb) => eb.fn<string>('lower', ['email']).as('e'))
              .execute(),
        ],
        ['=', () => db.deleteFrom('users').where('email', '=', ct).execute()],
        [
          'subquery',
          () =>
            db
              .selectFrom('users')
              .select('id')
              .where('id', 'in', (eb) => eb.selectFrom('users').select('email'))
              .execute(),
        ],
      ];
      for (const [what, run] of cases) {
        const err = await failure(run, 'UNSUPPORTED_OPERATION');
        expect(err.message, what).toContain(what);
        expect(err.message).toMatch(/users\.(email|age|born|active|balance)/);
      }
      const eq = await failure(
        cases.find(([what]) => what === '=')?.[1] ?? (() => undefined),
        'UNSUPPORTED_OPERATION',
      );
      expect(eq.message).toContain('users.email_idx');
      // What does work: null tests, count() and the blind index.
      const ok = await db
        .selectFrom('users')
        .select((eb) => [eb.fn.count('email').as('n')])
        .where('email', 'is not', null)
        .where('age', 'is not', null)
        .executeTakeFirstOrThrow();
      expect(Number(ok.n)).toBe(2);
      expect(await count('users')).toBe(2);
    });

    test('reading an encrypted column without the primary key (or tenant) is refused', async () => {
      const noKey = await failure(
        () => db.selectFrom('users').select(['org_id', 'email']).execute(),
        'INVALID_ARGUMENT',
      );
      expect(noKey.message).toContain('users.id');
      const noTenant = await failure(
        () => db.selectFrom('users').select(['id', 'email']).execute(),
        'INVALID_ARGUMENT',
      );
      expect(noTenant.message).toContain('users.org_id');
      await failure(
        () =>
          db
            .selectFrom('users')
            .innerJoin('notes', 'notes.id', 'users.nickname')
            .selectAll()
            .execute(),
        'UNSUPPORTED_OPERATION',
      );
      // The key columns themselves, and unencrypted columns, need nothing.
      expect(
        await db.selectFrom('users').select(['id', 'nickname']).orderBy('id').execute(),
      ).toHaveLength(2);
    });

    test('plaintext is never written to an encrypted column', async () => {
      const cases: (() => Promise<unknown>)[] = [
        () =>
          db
            .insertInto('users')
            .values({ id: 'u-p', org_id: 'org-1', email: 'plain@example.com' as Ciphertext })
            .execute(),
        () =>
          db
            .insertInto('notes')
            .values({ id: 9, body: 'cf2:not really' as Ciphertext })
            .execute(),
        () =>
          db
            .updateTable('users')
            .set({ age: 42 as never })
            .where('id', '=', alice.id)
            .where('org_id', '=', 'org-1')
            .execute(),
        () =>
          db
            .insertInto('users')
            .values({
              id: 'u-q',
              org_id: 'org-1',
              avatar: new Uint8Array([1, 2]) as Ciphertext<'binary'>,
            })
            .execute(),
      ];
      for (const run of cases) await failure(run, 'PLAINTEXT_VALUE');
      expect(await count('users')).toBe(2);
      expect(await count('notes')).toBe(0);
    });

    test('ciphertexts stay with the row they were encrypted for', async () => {
      const row = await plugin.encryptRow('users', {
        id: 'u-dave',
        org_id: 'org-1',
        email: 'dave@example.com',
      });
      const moved = await failure(
        () =>
          db
            .insertInto('users')
            .values({ ...row, id: 'u-eve' })
            .execute(),
        'INVALID_ARGUMENT',
      );
      expect(moved.message).toContain('another row');
      await failure(
        () =>
          db
            .insertInto('users')
            .values({ ...row, org_id: 'org-2' })
            .execute(),
        'INVALID_ARGUMENT',
      );
      const { email, email_idx } = row;
      await failure(
        () =>
          db
            .insertInto('users')
            .values({ id: 'u-dave', org_id: 'org-1', age: email as never })
            .execute(),
        'INVALID_ARGUMENT',
      );
      await failure(
        () => db.insertInto('users').values({ id: 'u-dave', org_id: 'org-1', email }).execute(),
        'INVALID_ARGUMENT',
      );
      await failure(
        () =>
          db
            .insertInto('users')
            .values({ org_id: 'org-1', email, email_idx } as never)
            .execute(),
        'INVALID_ARGUMENT',
      );
      // Updates must pin the row (and tenant), and may not change the key columns.
      await failure(
        () =>
          db.updateTable('users').set({ email, email_idx }).where('nickname', '=', 'al').execute(),
        'UNSUPPORTED_OPERATION',
      );
      await failure(
        () =>
          db.updateTable('users').set({ email, email_idx }).where('id', '=', 'u-dave').execute(),
        'UNSUPPORTED_OPERATION',
      );
      await failure(
        () => db.updateTable('users').set({ id: 'u-new' }).where('id', '=', alice.id).execute(),
        'UNSUPPORTED_OPERATION',
      );
      await failure(
        () =>
          db
            .updateTable('users')
            .set({ email, email_idx })
            .where('id', '=', alice.id)
            .where('org_id', '=', 'org-1')
            .execute(),
        'INVALID_ARGUMENT',
      );
      // encryptRow itself needs the key columns.
      await failure(
        () => plugin.encryptRow('users', { org_id: 'org-1', email: 'x' }),
        'INVALID_ARGUMENT',
      );
      await failure(
        () => plugin.encryptRow('users', { id: 'u-f', email: 'x' }),
        'INVALID_ARGUMENT',
      );
      await failure(
        () => plugin.encryptRow('users', { id: 'u-f', org_id: 'o', email: 5 as never }),
        'INVALID_ARGUMENT',
      );
      await failure(
        () => plugin.encryptRow('users', { id: 'u-f', org_id: 'o', email_idx: 'ab' }),
        'INVALID_ARGUMENT',
      );
      expect(await count('users')).toBe(2);
      // Unencrypted columns and null values need no ceremony.
      await db
        .updateTable('users')
        .set({ nickname: 'bobby', email: null, email_idx: null })
        .where('id', '=', bob.id)
        .execute();
      expect(
        await db
          .selectFrom('users')
          .select(['id', 'org_id', 'email', 'nickname'])
          .where('id', '=', bob.id)
          .execute(),
      ).toEqual([{ id: bob.id, org_id: 'org-1', email: null, nickname: 'bobby' }]);
    });

    test('plaintext in an encrypted column: PLAINTEXT_VALUE, except inside a migration window', async () => {
      await h.raw
        .insertInto('notes')
        .values({ id: 1, body: 'legacy plaintext' as Ciphertext })
        .execute();
      await db
        .insertInto('notes')
        .values(await plugin.encryptRow('notes', { id: 2, body: 'sealed' }))
        .execute();
      await failure(() => db.selectFrom('notes').selectAll().execute(), 'PLAINTEXT_VALUE');
      const migrating = createKyselyFieldsPlugin({
        schema: {
          ...schema,
          notes: { primaryKey: 'id', columns: { body: { type: 'string', migrating: true } } },
        },
        ...keys,
      });
      const rows = await h.db
        .withPlugin(migrating)
        .selectFrom('notes')
        .selectAll()
        .orderBy('id')
        .execute();
      expect(rows).toEqual([
        { id: 1, body: 'legacy plaintext' },
        { id: 2, body: 'sealed' },
      ]);
      // The window is for reading: writes are still refused.
      await failure(
        () =>
          h.db
            .withPlugin(migrating)
            .insertInto('notes')
            .values({ id: 3, body: 'x' as Ciphertext })
            .execute(),
        'PLAINTEXT_VALUE',
      );
    });

    test('integer primary keys, and decryptRow for raw SQL reads', async () => {
      await db
        .insertInto('notes')
        .values([
          await plugin.encryptRow('notes', { id: 1, body: 'one' }),
          await plugin.encryptRow('notes', { id: 2, body: 'two' }),
        ])
        .execute();
      expect(await db.selectFrom('notes').selectAll().orderBy('id').execute()).toEqual([
        { id: 1, body: 'one' },
        { id: 2, body: 'two' },
      ]);
      const raw = await sql<{
        id: number;
        body: string;
      }>`select id, body from notes where id = 2`.execute(h.raw);
      expect(raw.rows[0]?.body).toMatch(/^cf1:/);
      expect(await plugin.decryptRow('notes', raw.rows[0] ?? { id: 0, body: '' })).toEqual({
        id: 2,
        body: 'two',
      });
      await sql`update notes set body = (select body from notes where id = 1) where id = 2`.execute(
        h.raw,
      );
      await failure(
        () => db.selectFrom('notes').selectAll().where('id', '=', 2).execute(),
        'DECRYPTION_FAILED',
      );
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
      const broken = createKyselyFieldsPlugin({
        schema,
        fields,
        indexer: createBlindIndexer(keys.keyring, fields),
      });
      const withBroken = h.db.withPlugin(broken);
      const err = await failure(
        async () =>
          withBroken
            .insertInto('users')
            .values(
              await broken.encryptRow('users', {
                id: 'u-z',
                org_id: 'org-1',
                email: 'z@example.com',
              }),
            )
            .execute(),
        'PROVIDER_UNAVAILABLE',
      );
      expect(err.retryable).toBe(true);
      await failure(
        async () =>
          withBroken
            .insertInto('notes')
            .values([await broken.encryptRow('notes', { id: 1, body: 'a' })])
            .execute(),
        'PROVIDER_UNAVAILABLE',
      );
      expect(await count('users')).toBe(2);
      expect(await count('notes')).toBe(0);
    });
  });
}

suite('kysely on SQLite (better-sqlite3, in memory)', async () => {
  const sqlite = openSqlite();
  for (const s of ddl('blob')) sqlite.db.exec(s);
  const db = new Kysely<DB>({ dialect: new SqliteDialect({ database: sqlite.db }) });
  return {
    db,
    raw: db,
    async close() {
      await db.destroy();
    },
  };
});

describe.skipIf(!postgres)('PostgreSQL', () => {
  let pgSchema: PostgresSchema | undefined;
  suite('kysely on PostgreSQL (node-postgres)', async () => {
    pgSchema = await createPostgresSchema('kysely');
    for (const s of ddl('bytea')) await pgSchema.pool.query(s);
    const db = new Kysely<DB>({ dialect: new PostgresDialect({ pool: pgSchema.pool }) });
    return {
      db,
      raw: db,
      async close() {
        // drop() ends the pool that Kysely would otherwise end.
        await pgSchema?.drop();
      },
    };
  });
});
