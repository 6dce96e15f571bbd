// Blind-index key rotation through the ORM integrations, end to end on SQLite: the procedure in
// the README and ShadowIndexSpec's TSDoc (pin the version, add the key, write both columns, fill
// the shadow column with reencrypt, switch lookups, finish), with lookups checked at every step.
import { randomBytes } from 'node:crypto';
import { eq } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/better-sqlite3';
import { sqliteTable, text } from 'drizzle-orm/sqlite-core';
import { Kysely, type KyselyPlugin, SqliteDialect } from 'kysely';
import { describe, expect, test } from 'vitest';
import { sqliteFieldTable } from '../src/_cli-sqlite.js';
import { createBlindIndexer } from '../src/blind-index.js';
import { createDrizzleFields } from '../src/drizzle.js';
import { defineEncryptedSchema, type EncryptedSchema } from '../src/encrypted-schema.js';
import { FieldsError } from '../src/errors.js';
import { createFieldCipher } from '../src/field-cipher.js';
import type { KeyProvider } from '../src/key-provider.js';
import { createKeyring, type Keyring, rotateKey } from '../src/keyring.js';
import { createKyselyFieldsPlugin, type Encrypted } from '../src/kysely-plugin.js';
import { createLocalProvider } from '../src/providers/local.js';
import { reencrypt } from '../src/reencrypt.js';
import { openSqlite } from './_databases.js';

const ORG = 'org-1';
const normalize = ['trim', 'casefold'] as const;

/** The schema at each step of the procedure. */
const unpinned = defineEncryptedSchema({
  users: {
    primaryKey: 'id',
    tenantColumn: 'org_id',
    columns: { email: { type: 'string', blindIndexes: { email_idx: { bits: 32, normalize } } } },
  },
});
const pinned = defineEncryptedSchema({
  users: {
    primaryKey: 'id',
    tenantColumn: 'org_id',
    columns: {
      email: { type: 'string', blindIndexes: { email_idx: { bits: 32, normalize, version: 1 } } },
    },
  },
});
const rotating = defineEncryptedSchema({
  users: {
    primaryKey: 'id',
    tenantColumn: 'org_id',
    columns: {
      email: {
        type: 'string',
        // The shadow column may also change bits (or normalisers): it is a new index.
        blindIndexes: {
          email_idx: { bits: 32, normalize, version: 1, next: { version: 2, bits: 24 } },
        },
      },
    },
  },
});
const finished = defineEncryptedSchema({
  users: {
    primaryKey: 'id',
    tenantColumn: 'org_id',
    columns: {
      email: { type: 'string', blindIndexes: { email_idx: { bits: 24, normalize, version: 2 } } },
    },
  },
});

interface DB {
  users: {
    id: string;
    org_id: string;
    email: Encrypted<string | null>;
    email_idx: string | null;
    email_idx_next: string | null;
  };
}

async function keys() {
  const provider: KeyProvider = await createLocalProvider({ kek: new Uint8Array(randomBytes(32)) });
  return { provider, keyring: await createKeyring(provider, 'kek') };
}

function ciphers(keyring: Keyring, provider: KeyProvider) {
  const fields = createFieldCipher(keyring, provider);
  return { fields, indexer: createBlindIndexer(keyring, fields) };
}

/** Step 5: the background job fills `<index>_next` for the rows written before step 4. */
async function fillShadow(
  sqlite: ReturnType<typeof openSqlite>,
  keyring: Keyring,
  fields: ReturnType<typeof createFieldCipher>,
) {
  const table = sqliteFieldTable(sqlite.db, {
    table: 'users',
    primaryKey: 'id',
    tenantColumn: 'org_id',
    columns: [{ name: 'email' }],
    extraColumns: ['email_idx_next'],
  });
  return reencrypt({
    fields,
    table,
    mode: 'blind-index',
    blindIndex: {
      keyring,
      version: 2,
      indexes: [{ column: 'email', name: 'email_idx', bits: 24, normalize: [...normalize] }],
    },
  });
}

describe('blind-index rotation through the ORM integrations', () => {
  test('Kysely: pinned lookups keep working while the key rotates, and switch over', async () => {
    const sqlite = openSqlite();
    sqlite.db.exec(
      'CREATE TABLE users (id TEXT PRIMARY KEY, org_id TEXT NOT NULL, email TEXT, email_idx TEXT)',
    );
    const db = new Kysely<DB>({ dialect: new SqliteDialect({ database: sqlite.db }) });
    try {
      const { provider, keyring: k1 } = await keys();
      const plugin = <S extends EncryptedSchema>(schema: S, keyring: Keyring) =>
        createKyselyFieldsPlugin({ schema, ...ciphers(keyring, provider) });
      /** What `find` needs of a plugin, whichever step's schema it was made from. */
      type Lookup = KyselyPlugin & {
        blindIndex(
          table: 'users',
          column: 'email',
          index: 'email_idx',
          value: string,
          options: { tenant: string; next: boolean },
        ): Promise<string>;
      };
      const find = async (
        p: Lookup,
        email: string,
        column: 'email_idx' | 'email_idx_next' = 'email_idx',
      ) => {
        const idx = await p.blindIndex('users', 'email', 'email_idx', email, {
          tenant: ORG,
          next: column === 'email_idx_next',
        });
        const rows = await db
          .withPlugin(p)
          .selectFrom('users')
          .select(['id', 'org_id', 'email'])
          .where(column, '=', idx)
          .orderBy('id')
          .execute();
        return rows.map((r) => r.id);
      };

      // Before: rows indexed under index key 1.
      const before = plugin(unpinned, k1);
      for (const [id, email] of [
        ['u1', 'alice@example.com'],
        ['u2', 'bob@example.com'],
      ] as const)
        await db
          .withPlugin(before)
          .insertInto('users')
          .values(await before.encryptRow('users', { id, org_id: ORG, email }))
          .execute();
      expect(await find(before, ' ALICE@example.com')).toEqual(['u1']);

      // Steps 1–3: pin version 1, add the shadow column, add index key 2.
      sqlite.db.exec('ALTER TABLE users ADD COLUMN email_idx_next TEXT');
      const k2 = await rotateKey(k1, provider, 'kek', 'index');
      // What went wrong without a pin: the new key silently switches lookups, finding nothing.
      expect(await find(plugin(unpinned, k2), 'alice@example.com')).toEqual([]);
      const p1 = plugin(pinned, k2);
      expect(await find(p1, 'alice@example.com')).toEqual(['u1']);

      // Step 4: the app writes both columns.
      const p2 = plugin(rotating, k2);
      const carol = await p2.encryptRow('users', {
        id: 'u3',
        org_id: ORG,
        email: 'carol@example.com',
      });
      expect(carol.email_idx).toMatch(/^[0-9a-f]{8}$/);
      expect(carol.email_idx_next).toMatch(/^[0-9a-f]{6}$/);
      await db.withPlugin(p2).insertInto('users').values(carol).execute();
      // A blind index column is computed by encryptRow, never passed in, the shadow one too.
      await expect(
        p2.encryptRow('users', { id: 'u4', org_id: ORG, email: 'x@y', email_idx_next: 'ab' }),
      ).rejects.toSatisfy((e) => FieldsError.is(e, 'INVALID_ARGUMENT'));
      // And an update of the column that leaves the shadow column stale is refused.
      const { email_idx_next: _, ...partial } = await p2.encryptRow('users', {
        id: 'u3',
        org_id: ORG,
        email: 'carol@new.example',
      });
      expect(() =>
        db
          .withPlugin(p2)
          .updateTable('users')
          .set(partial)
          .where('id', '=', 'u3')
          .where('org_id', '=', ORG)
          .compile(),
      ).toThrow(/email_idx_next must be written together/);
      for (const email of ['alice@example.com', 'carol@example.com'])
        expect(await find(p2, email)).toHaveLength(1);
      expect(await find(p2, 'carol@example.com', 'email_idx_next')).toEqual(['u3']);
      expect(await find(p2, 'alice@example.com', 'email_idx_next')).toEqual([]);

      // Step 5: fill the shadow column for the rows written before.
      const fields = createFieldCipher(k2, provider);
      expect(await fillShadow(sqlite, k2, fields)).toMatchObject({ rowsUpdated: 2, target: 2 });

      // Step 6: lookups switch to the shadow column; then it replaces the old one.
      expect(await find(p2, 'Alice@Example.com', 'email_idx_next')).toEqual(['u1']);
      expect(await find(p2, 'bob@example.com', 'email_idx_next')).toEqual(['u2']);
      sqlite.db.exec('ALTER TABLE users DROP COLUMN email_idx');
      sqlite.db.exec('ALTER TABLE users RENAME COLUMN email_idx_next TO email_idx');
      const after = plugin(finished, k2);
      for (const [id, email] of [
        ['u1', 'alice@example.com'],
        ['u2', 'bob@example.com'],
        ['u3', 'carol@example.com'],
      ] as const)
        expect(await find(after, email)).toEqual([id]);
    } finally {
      await db.destroy();
    }
  });

  test('Drizzle: encryptRow writes the shadow column, blindIndex pins and switches', async () => {
    const sqlite = openSqlite();
    sqlite.db.exec(
      'CREATE TABLE users (id TEXT PRIMARY KEY, org_id TEXT NOT NULL, email TEXT, email_idx TEXT, email_idx_next TEXT)',
    );
    try {
      const { provider, keyring: k1 } = await keys();
      const before = createDrizzleFields({ schema: unpinned, ...ciphers(k1, provider) });
      const table = <S extends EncryptedSchema>(f: ReturnType<typeof createDrizzleFields<S>>) =>
        sqliteTable('users', {
          id: text('id').primaryKey(),
          orgId: text('org_id').notNull(),
          email: f.sqliteColumn('users', 'email'),
          emailIdx: text('email_idx'),
          emailIdxNext: text('email_idx_next'),
        });
      const db = drizzle(sqlite.db);
      const t1 = table(before);
      await db
        .insert(t1)
        .values(await before.encryptRow(t1, { id: 'u1', orgId: ORG, email: 'alice@example.com' }));

      const k2 = await rotateKey(k1, provider, 'kek', 'index');
      const during = createDrizzleFields({ schema: rotating, ...ciphers(k2, provider) });
      const t2 = table(during);
      const bob = await during.encryptRow(t2, { id: 'u2', orgId: ORG, email: 'bob@example.com' });
      await db.insert(t2).values(bob);
      const ids = async (
        column: typeof t2.emailIdx | typeof t2.emailIdxNext,
        email: string,
        next = false,
      ) =>
        (
          await db
            .select({ id: t2.id })
            .from(t2)
            .where(
              eq(
                column,
                await during.blindIndex('users', 'email', 'email_idx', email, {
                  tenant: ORG,
                  next,
                }),
              ),
            )
            .orderBy(t2.id)
        ).map((r) => r.id);
      expect(await ids(t2.emailIdx, 'alice@example.com')).toEqual(['u1']);
      expect(await ids(t2.emailIdx, 'bob@example.com')).toEqual(['u2']);
      expect(await ids(t2.emailIdxNext, 'bob@example.com', true)).toEqual(['u2']);
      await fillShadow(sqlite, k2, createFieldCipher(k2, provider));
      expect(await ids(t2.emailIdxNext, 'ALICE@example.com', true)).toEqual(['u1']);
      // `next` on an index that declares none is a caller mistake, not a silent default.
      const plain = createDrizzleFields({ schema: pinned, ...ciphers(k2, provider) });
      await expect(
        plain.blindIndex('users', 'email', 'email_idx', 'a@b', { tenant: ORG, next: true }),
      ).rejects.toSatisfy((e) => FieldsError.is(e, 'INVALID_ARGUMENT'));
    } finally {
      sqlite.close();
    }
  });

  test('the schema checks versions and shadow columns', () => {
    const bad = (email: object) =>
      expect(() =>
        defineEncryptedSchema({
          users: { primaryKey: 'id', columns: { email: { type: 'string', ...email } } },
        } as EncryptedSchema),
      ).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    bad({ blindIndexes: { idx: { version: 0 } } });
    bad({ blindIndexes: { idx: { version: 1.5 } } });
    bad({ blindIndexes: { idx: { next: {} } } });
    bad({ blindIndexes: { idx: { next: { version: 2, bits: 4 } } } });
    bad({ blindIndexes: { idx: { next: { version: 2 } }, idx_next: {} } });
    bad({ blindIndexes: { idx_next: {}, idx: { next: { version: 2 } } } });
  });
});
