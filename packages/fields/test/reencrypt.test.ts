import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { openSqlite, type SqliteDatabase, sqliteFieldTable } from '../src/_cli-sqlite.js';
import {
  createBlindIndexer,
  createFieldCipher,
  type FieldCipher,
  FieldsError,
  type Keyring,
  retireDataKey,
  rotateKey,
  type StoredValue,
} from '../src/index.js';
import {
  type CheckpointStore,
  type EncryptedColumnSpec,
  type FieldRow,
  type FieldTable,
  parseCheckpoint,
  type ReencryptCheckpoint,
  type RowKey,
  reencrypt,
  serializeCheckpoint,
  shadowColumnOf,
  status,
} from '../src/reencrypt.js';
import { codeOf, flipBit, setup, tamperText } from './_fixtures.js';

type Values = Record<string, StoredValue | null>;

/**
 * The in-memory FieldTable: rows in a Map, read in key order, compare-and-set writes. It counts
 * writes per row, and `beforeWrite` lets a test change a row between the job's read and write.
 */
function memoryTable(name: string, columns: readonly EncryptedColumnSpec[]) {
  const rows = new Map<RowKey, { tenant?: string; values: Values }>();
  const writes = new Map<RowKey, number>();
  const hooks: { beforeWrite?: (key: RowKey) => void; failRead?: (call: number) => boolean } = {};
  let reads = 0;
  const same = (a: StoredValue | null | undefined, b: StoredValue) =>
    typeof a === 'string' || typeof b === 'string'
      ? a === b
      : a instanceof Uint8Array && a.length === b.length && a.every((x, i) => x === b[i]);
  const table: FieldTable = {
    name,
    columns,
    async readBatch(afterKey, limit) {
      reads++;
      if (hooks.failRead?.(reads)) throw new Error('connection reset');
      const keys = [...rows.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
      return keys
        .filter((k) => afterKey === undefined || k > afterKey)
        .slice(0, limit)
        .map((key): FieldRow => {
          const row = rows.get(key)!;
          return { key, ...(row.tenant ? { tenant: row.tenant } : {}), values: { ...row.values } };
        });
    },
    async writeRow(key, changes, expected) {
      hooks.beforeWrite?.(key);
      const row = rows.get(key);
      if (!row) return false;
      for (const [c, v] of Object.entries(expected)) if (!same(row.values[c], v)) return false;
      Object.assign(row.values, changes);
      writes.set(key, (writes.get(key) ?? 0) + 1);
      return true;
    },
    async countRows() {
      return rows.size;
    },
  };
  return { table, rows, writes, hooks };
}

/** A checkpoint store that keeps the serialised text, as a file would. */
function memoryStore(): CheckpointStore & { text?: string; saves: number } {
  const store = {
    text: undefined as string | undefined,
    saves: 0,
    async load() {
      return store.text === undefined ? undefined : parseCheckpoint(store.text);
    },
    async save(c: ReencryptCheckpoint) {
      store.saves++;
      store.text = serializeCheckpoint(c);
    },
  };
  return store;
}

const COLUMNS: EncryptedColumnSpec[] = [{ name: 'email' }, { name: 'avatar', padTo: 16 }];
const emailOf = (i: number) => `user${i}@example.com`;
const avatarOf = (i: number) => Uint8Array.of(i & 0xff, 7, 7);

/** `n` users sealed with `fields`; every 10th has no avatar; tenants alternate. */
async function usersTable(fields: FieldCipher, n: number) {
  const mem = memoryTable('users', COLUMNS);
  for (let i = 1; i <= n; i++) {
    const tenant = i % 2 ? 'acme' : 'globex';
    const ctx = (column: string) => ({ tenant, table: 'users', column, rowId: i });
    mem.rows.set(i, {
      tenant,
      values: {
        email: await fields.encrypt(emailOf(i), ctx('email')),
        avatar:
          i % 10 === 0
            ? null
            : await fields.encrypt(avatarOf(i), ctx('avatar'), { format: 'binary' }),
      },
    });
  }
  return mem;
}

async function rotated() {
  const { keyring, provider, fields } = await setup();
  const next = await rotateKey(keyring, provider, 'kek1');
  return { keyring: next, provider, old: fields, fields: createFieldCipher(next, provider) };
}

async function expectAllOpen(fields: FieldCipher, mem: ReturnType<typeof memoryTable>) {
  for (const [key, row] of mem.rows) {
    const ctx = (column: string) => ({
      ...(row.tenant ? { tenant: row.tenant } : {}),
      table: 'users',
      column,
      rowId: key,
    });
    expect(await fields.decrypt(row.values.email!, ctx('email'))).toBe(emailOf(Number(key)));
    if (row.values.avatar !== null) {
      expect(row.values.avatar).toBeInstanceOf(Uint8Array);
      expect(await fields.decrypt(row.values.avatar!, ctx('avatar'))).toEqual(
        avatarOf(Number(key)),
      );
    }
  }
}

describe('reencrypt: rotate', () => {
  test('end to end: rotate, re-encrypt, every value on the new key, then retire the old one', async () => {
    const { keyring, provider, old, fields } = await rotated();
    const mem = await usersTable(old, 95);
    const before = await status(fields, mem.table);
    expect(before).toMatchObject({ rows: 95, primaryVersion: 2, outdated: 95 + 86 });
    expect(before.versions).toEqual({ plaintext: 0, 1: 181 });
    // Refused while rows use it.
    expect(
      await codeOf(Promise.resolve().then(() => retireDataKey(keyring, 1, before.versions[1]!))),
    ).toBe('KEY_IN_USE');

    const progress: number[] = [];
    const report = await reencrypt({
      fields,
      table: mem.table,
      mode: 'rotate',
      batchSize: 20,
      onProgress: (p) => progress.push(p.rowsScanned),
    });
    expect(report).toMatchObject({
      complete: true,
      resumed: false,
      rowsScanned: 95,
      rowsUpdated: 95,
      valuesUpdated: 181,
      rowsSkipped: 0,
      target: 2,
      versions: { plaintext: 0, 2: 181 },
    });
    expect(progress).toEqual([20, 40, 60, 80, 95]);
    expect([...mem.writes.values()].every((n) => n === 1)).toBe(true);
    expect(mem.writes.size).toBe(95);

    const after = await status(fields, mem.table);
    expect(after.versions).toEqual({ plaintext: 0, 2: 181 });
    expect(after.outdated).toBe(0);
    const retired = retireDataKey(keyring, 1, after.versions[1] ?? 0);
    // Every value opens with the retired keyring (no version 1 left), in its own form.
    await expectAllOpen(createFieldCipher(retired, provider), mem);

    // Running again is a no-op.
    const again = await reencrypt({ fields, table: mem.table, mode: 'rotate', batchSize: 20 });
    expect(again).toMatchObject({ rowsScanned: 95, rowsUpdated: 0 });
    expect(mem.writes.size).toBe(95);
    expect([...mem.writes.values()].every((n) => n === 1)).toBe(true);
  });

  test('interrupted by an AbortSignal after k batches, then resumed: every row done exactly once', async () => {
    const { old, fields } = await rotated();
    const mem = await usersTable(old, 73);
    const store = memoryStore();
    const controller = new AbortController();
    let batches = 0;
    const first = await reencrypt({
      fields,
      table: mem.table,
      mode: 'rotate',
      batchSize: 10,
      checkpoint: store,
      signal: controller.signal,
      onProgress: () => {
        if (++batches === 3) controller.abort();
      },
    });
    expect(first).toMatchObject({ complete: false, rowsScanned: 30, rowsUpdated: 30, lastKey: 30 });
    expect(mem.writes.size).toBe(30);
    expect(parseCheckpoint(store.text!)).toMatchObject({ lastKey: 30, complete: false });

    const second = await reencrypt({
      fields,
      table: mem.table,
      mode: 'rotate',
      batchSize: 10,
      checkpoint: store,
    });
    expect(second).toMatchObject({
      complete: true,
      resumed: true,
      rowsScanned: 73,
      rowsUpdated: 73,
      versions: { plaintext: 0, 2: 73 + 66 },
    });
    expect(mem.writes.size).toBe(73);
    expect([...mem.writes.values()].every((n) => n === 1)).toBe(true);
    await expectAllOpen(fields, mem);
    // A completed checkpoint starts a new pass, which finds nothing to do.
    const third = await reencrypt({ fields, table: mem.table, mode: 'rotate', checkpoint: store });
    expect(third).toMatchObject({ resumed: false, rowsScanned: 73, rowsUpdated: 0 });
  });

  test('aborted mid-batch: the checkpoint holds the last row done', async () => {
    const { old, fields } = await rotated();
    const mem = await usersTable(old, 30);
    const store = memoryStore();
    const controller = new AbortController();
    mem.hooks.beforeWrite = (key) => {
      if (key === 14) controller.abort();
    };
    const first = await reencrypt({
      fields,
      table: mem.table,
      mode: 'rotate',
      batchSize: 25,
      checkpoint: store,
      signal: controller.signal,
    });
    expect(first).toMatchObject({ complete: false, lastKey: 14, rowsUpdated: 14 });
    mem.hooks.beforeWrite = undefined;
    await reencrypt({ fields, table: mem.table, mode: 'rotate', batchSize: 25, checkpoint: store });
    expect(mem.writes.size).toBe(30);
    expect([...mem.writes.values()].every((n) => n === 1)).toBe(true);
  });

  test('a storage error mid-way: resumes at the batch it failed on', async () => {
    const { old, fields } = await rotated();
    const mem = await usersTable(old, 50);
    const store = memoryStore();
    mem.hooks.failRead = (call) => call === 4;
    await expect(
      reencrypt({ fields, table: mem.table, mode: 'rotate', batchSize: 10, checkpoint: store }),
    ).rejects.toThrow('connection reset');
    expect(parseCheckpoint(store.text!).lastKey).toBe(30);
    mem.hooks.failRead = undefined;
    const done = await reencrypt({
      fields,
      table: mem.table,
      mode: 'rotate',
      batchSize: 10,
      checkpoint: store,
    });
    expect(done).toMatchObject({ complete: true, rowsScanned: 50, rowsUpdated: 50 });
    expect([...mem.writes.values()].every((n) => n === 1)).toBe(true);
  });

  test('dry run reads, decrypts and counts, and writes nothing (not even the checkpoint)', async () => {
    const { old, fields } = await rotated();
    const mem = await usersTable(old, 25);
    const store = memoryStore();
    const snapshot = JSON.stringify([...mem.rows.values()].map((r) => r.values.email));
    const report = await reencrypt({
      fields,
      table: mem.table,
      mode: 'rotate',
      dryRun: true,
      checkpoint: store,
      batchSize: 7,
    });
    expect(report).toMatchObject({
      dryRun: true,
      complete: true,
      rowsScanned: 25,
      rowsUpdated: 25,
      valuesUpdated: 48,
      versions: { plaintext: 0, 1: 48 },
    });
    expect(mem.writes.size).toBe(0);
    expect(store.saves).toBe(0);
    expect(JSON.stringify([...mem.rows.values()].map((r) => r.values.email))).toBe(snapshot);
  });

  test('rotation keeps padded lengths, even where the job is not told padTo', async () => {
    const { old, fields } = await rotated();
    // The job's column specs say nothing of padding (as the CLI's do not).
    const mem = memoryTable('users', [{ name: 'email' }, { name: 'avatar' }]);
    for (let i = 1; i <= 3; i++) {
      const ctx = (column: string) => ({ table: 'users', column, rowId: i });
      mem.rows.set(i, {
        values: {
          email: await old.encrypt(emailOf(i), ctx('email'), { padTo: 256 }),
          avatar: await old.encrypt(avatarOf(i), ctx('avatar'), { format: 'binary', padTo: 64 }),
        },
      });
    }
    const lengths = () =>
      [...mem.rows.values()].map((r) => [r.values.email!.length, r.values.avatar!.length]);
    const before = lengths();
    expect(before[0]).toEqual([392, 2 + 3 + 4 + 12 + 64 + 16]);
    expect(await reencrypt({ fields, table: mem.table, mode: 'rotate' })).toMatchObject({
      rowsUpdated: 3,
      versions: { 2: 6 },
    });
    expect(lengths()).toEqual(before);
    for (const [i, row] of mem.rows) {
      expect(
        await fields.decrypt(row.values.email!, { table: 'users', column: 'email', rowId: i }),
      ).toBe(emailOf(Number(i)));
      expect(fields.keyVersionOf(row.values.avatar!)).toBe(2);
    }
  });

  test('a row changed concurrently is skipped and never overwritten', async () => {
    const { old, fields } = await rotated();
    const mem = await usersTable(old, 12);
    // The app updates row 5 (with the new key) between the job's read and its write.
    const appValue = await fields.encrypt('new@example.com', {
      tenant: 'acme',
      table: 'users',
      column: 'email',
      rowId: 5,
    });
    mem.hooks.beforeWrite = (key) => {
      if (key === 5) mem.rows.get(5)!.values.email = appValue;
    };
    const report = await reencrypt({ fields, table: mem.table, mode: 'rotate' });
    expect(report).toMatchObject({ rowsScanned: 12, rowsUpdated: 11, rowsSkipped: 1 });
    expect(mem.rows.get(5)!.values.email).toBe(appValue);
    expect(mem.writes.has(5)).toBe(false);
    expect(
      await fields.decrypt(mem.rows.get(5)!.values.email!, {
        tenant: 'acme',
        table: 'users',
        column: 'email',
        rowId: 5,
      }),
    ).toBe('new@example.com');
  });

  test('a corrupt ciphertext stops the job: DECRYPTION_FAILED naming the row, never the value', async () => {
    const { old, fields } = await rotated();
    const mem = await usersTable(old, 20);
    const row7 = mem.rows.get(7)!;
    const good = row7.values.email as string;
    const bad = `cf1:${Buffer.from(flipBit(Buffer.from(good.slice(4), 'base64url'), 200)).toString('base64url')}`;
    row7.values.email = bad;
    const avatar7 = row7.values.avatar;
    const store = memoryStore();
    let caught: unknown;
    try {
      await reencrypt({
        fields,
        table: mem.table,
        mode: 'rotate',
        batchSize: 5,
        checkpoint: store,
      });
    } catch (err) {
      caught = err;
    }
    expect(FieldsError.is(caught, 'DECRYPTION_FAILED')).toBe(true);
    const message = (caught as Error).message;
    expect(message).toContain('users.email row 7');
    expect(message).not.toContain(bad.slice(4, 20));
    expect(message).not.toContain(emailOf(7));
    // Nothing of row 7 was written (its avatar keeps version 1); rows 1 to 6 are done.
    expect(row7.values.avatar).toBe(avatar7);
    expect(mem.writes.has(7)).toBe(false);
    expect(mem.writes.size).toBe(6);
    expect(parseCheckpoint(store.text!).lastKey).toBe(6);
    // A dry run finds the same row.
    expect(
      await codeOf(reencrypt({ fields, table: mem.table, mode: 'rotate', dryRun: true })),
    ).toBe('DECRYPTION_FAILED');
  });

  test('a value under a retired key is UNKNOWN_KEY, located', async () => {
    const { keyring, provider, old } = await rotated();
    const mem = await usersTable(old, 3);
    const withoutV1 = createFieldCipher(
      { ...keyring, keys: keyring.keys.filter((k) => !(k.purpose === 'data' && k.version === 1)) },
      provider,
    );
    await expect(
      reencrypt({ fields: withoutV1, table: mem.table, mode: 'rotate' }),
    ).rejects.toThrow(/users\.email row 1: .*no data key version 1/);
  });
});

describe('reencrypt: encrypt-plaintext (the migration window)', () => {
  test('encrypts plaintext values in place and leaves ciphertexts as they are', async () => {
    const { fields } = await setup();
    const columns: EncryptedColumnSpec[] = [
      { name: 'email' },
      { name: 'age', fromPlaintext: (s) => Number(s) },
      { name: 'photo' },
    ];
    const mem = memoryTable('people', columns);
    const ctx = (rowId: string, column: string) => ({ table: 'people', column, rowId });
    const sealed = await fields.encrypt('kept@example.com', ctx('b', 'email'));
    mem.rows.set('a', {
      values: { email: 'a@example.com', age: '41', photo: Uint8Array.of(1, 2) },
    });
    mem.rows.set('b', { values: { email: sealed, age: null, photo: null } });
    mem.rows.set('c', { values: { email: 'c@example.com', age: '7', photo: null } });
    expect((await status(fields, mem.table)).versions).toEqual({ plaintext: 5, 1: 1 });

    const report = await reencrypt({ fields, table: mem.table, mode: 'encrypt-plaintext' });
    expect(report).toMatchObject({
      rowsScanned: 3,
      rowsUpdated: 2,
      valuesUpdated: 5,
      versions: { plaintext: 0, 1: 6 },
    });
    expect(mem.rows.get('b')!.values.email).toBe(sealed);
    const a = mem.rows.get('a')!.values;
    expect(await fields.decrypt(a.email!, ctx('a', 'email'))).toBe('a@example.com');
    expect(await fields.decrypt(a.age!, ctx('a', 'age'))).toBe(41);
    expect(a.photo).toBeInstanceOf(Uint8Array);
    expect(await fields.decrypt(a.photo!, ctx('a', 'photo'))).toEqual(Uint8Array.of(1, 2));
    expect(await fields.decrypt(mem.rows.get('c')!.values.age!, ctx('c', 'age'))).toBe(7);
    // Idempotent.
    const again = await reencrypt({ fields, table: mem.table, mode: 'encrypt-plaintext' });
    expect(again.rowsUpdated).toBe(0);
    // Rotation mode never touches plaintext: it counts it.
    mem.rows.set('d', { values: { email: 'late@example.com', age: null, photo: null } });
    const rot = await reencrypt({ fields, table: mem.table, mode: 'rotate' });
    expect(rot).toMatchObject({ rowsUpdated: 0, versions: { plaintext: 1 } });
  });
});

describe('reencrypt: blind-index shadow column', () => {
  test('fills <index>_next with the next index key version, idempotently', async () => {
    const { keyring, provider, fields: v1fields } = await setup();
    const spec = { column: 'email', name: 'email_eq', normalize: ['trim', 'casefold'] as const };
    const mem = memoryTable('users', [{ name: 'email' }]);
    const index1 = createBlindIndexer(keyring, v1fields);
    for (let i = 1; i <= 9; i++) {
      const email = emailOf(i).toUpperCase();
      const base = { table: 'users', column: 'email' };
      mem.rows.set(i, {
        values: {
          email: await v1fields.encrypt(email, { ...base, rowId: i }),
          email_eq: await index1.compute(email, {
            ...base,
            name: 'email_eq',
            normalize: spec.normalize,
          }),
          email_eq_next: null,
        },
      });
    }
    const next: Keyring = await rotateKey(keyring, provider, 'kek1', 'index');
    const fields = createFieldCipher(next, provider);
    const blindIndex = { keyring: next, indexes: [spec] };
    expect(shadowColumnOf(spec)).toBe('email_eq_next');

    const dry = await reencrypt({
      fields,
      table: mem.table,
      mode: 'blind-index',
      blindIndex,
      dryRun: true,
    });
    expect(dry).toMatchObject({ rowsUpdated: 9, target: 2 });
    expect(mem.writes.size).toBe(0);

    const report = await reencrypt({
      fields,
      table: mem.table,
      mode: 'blind-index',
      blindIndex,
      batchSize: 4,
    });
    expect(report).toMatchObject({ complete: true, rowsUpdated: 9, valuesUpdated: 9, target: 2 });
    const index = createBlindIndexer(next, fields);
    const base = { table: 'users', column: 'email', name: 'email_eq', normalize: spec.normalize };
    for (let i = 1; i <= 9; i++) {
      const row = mem.rows.get(i)!.values;
      // Lookups switch to the shadow column with the new version; the old column is untouched.
      expect(row.email_eq_next).toBe(await index.compute(emailOf(i), { ...base, version: 2 }));
      expect(row.email_eq).toBe(await index.compute(emailOf(i), { ...base, version: 1 }));
      expect(row.email_eq_next).not.toBe(row.email_eq);
    }
    const again = await reencrypt({ fields, table: mem.table, mode: 'blind-index', blindIndex });
    expect(again.rowsUpdated).toBe(0);
    expect(await codeOf(reencrypt({ fields, table: mem.table, mode: 'blind-index' }))).toBe(
      'INVALID_ARGUMENT',
    );
    expect(
      await codeOf(
        reencrypt({
          fields,
          table: mem.table,
          mode: 'blind-index',
          blindIndex: { ...blindIndex, version: 3 },
        }),
      ),
    ).toBe('UNKNOWN_KEY');
  });
});

describe('reencrypt: blind-index resume', () => {
  test('a checkpoint is not resumed with other indexes (name, column, bits or normalisers)', async () => {
    const { keyring, provider, fields: v1fields } = await setup();
    const mem = memoryTable('users', [{ name: 'email' }]);
    for (let i = 1; i <= 6; i++) {
      mem.rows.set(i, {
        values: {
          email: await v1fields.encrypt(emailOf(i), { table: 'users', column: 'email', rowId: i }),
          email_eq_next: null,
          other_next: null,
        },
      });
    }
    const next = await rotateKey(keyring, provider, 'kek1', 'index');
    const fields = createFieldCipher(next, provider);
    const spec = { column: 'email', name: 'email_eq', bits: 32, normalize: ['casefold'] as const };
    const store = memoryStore();
    const controller = new AbortController();
    const first = await reencrypt({
      fields,
      table: mem.table,
      mode: 'blind-index',
      blindIndex: { keyring: next, indexes: [spec] },
      batchSize: 2,
      checkpoint: store,
      signal: controller.signal,
      onProgress: () => controller.abort(),
    });
    expect(first).toMatchObject({ complete: false, rowsUpdated: 2, lastKey: 2 });
    // Resumed with another index, the rows before the checkpoint would keep the first run's
    // index: a shadow column that silently misses rows once lookups switch to it.
    for (const other of [
      { ...spec, bits: 16 },
      { ...spec, normalize: ['trim', 'casefold'] as const },
      { ...spec, name: 'other', indexColumn: 'other' },
    ]) {
      const err = await reencrypt({
        fields,
        table: mem.table,
        mode: 'blind-index',
        blindIndex: { keyring: next, indexes: [other] },
        batchSize: 2,
        checkpoint: store,
      }).catch((e: unknown) => e);
      expect(FieldsError.is(err, 'INVALID_ARGUMENT')).toBe(true);
      expect((err as Error).message).toMatch(/checkpoint .*remove it/);
    }
    expect(mem.writes.size).toBe(2);
    const resumed = await reencrypt({
      fields,
      table: mem.table,
      mode: 'blind-index',
      blindIndex: { keyring: next, indexes: [{ ...spec }] },
      batchSize: 2,
      checkpoint: store,
    });
    expect(resumed).toMatchObject({ complete: true, resumed: true, rowsUpdated: 6 });
  });
});

describe('reencrypt: contracts', () => {
  test('a checkpoint from another run is refused; checkpoints round-trip exactly', async () => {
    const { old, fields } = await rotated();
    const mem = await usersTable(old, 5);
    const store = memoryStore();
    const controller = new AbortController();
    await reencrypt({
      fields,
      table: mem.table,
      mode: 'rotate',
      batchSize: 2,
      checkpoint: store,
      signal: controller.signal,
      onProgress: () => controller.abort(),
    });
    expect(parseCheckpoint(store.text!)).toMatchObject({ lastKey: 2, complete: false });
    expect(
      await codeOf(
        reencrypt({ fields, table: mem.table, mode: 'encrypt-plaintext', checkpoint: store }),
      ),
    ).toBe('INVALID_ARGUMENT');

    const c: ReencryptCheckpoint = {
      format: 'coffer-reencrypt-checkpoint/v1',
      table: 't',
      mode: 'rotate',
      columns: ['a'],
      target: 2,
      lastKey: 2n ** 70n,
      complete: false,
      rowsScanned: 1,
      rowsUpdated: 1,
      valuesUpdated: 1,
      rowsSkipped: 0,
      versions: { plaintext: 0, 2: 1 },
    };
    expect(parseCheckpoint(serializeCheckpoint(c))).toEqual(c);
    expect(parseCheckpoint(serializeCheckpoint({ ...c, lastKey: 'k' })).lastKey).toBe('k');
    for (const text of [
      '{',
      '[]',
      '{"format":"x"}',
      serializeCheckpoint(c).replace('"rotate"', '"x"'),
    ])
      expect(await codeOf(Promise.resolve().then(() => parseCheckpoint(text)))).toBe(
        'INVALID_ARGUMENT',
      );
    expect(
      await codeOf(
        Promise.resolve().then(() => parseCheckpoint(serializeCheckpoint(c).replace('/v1', '/v2'))),
      ),
    ).toBe('UNSUPPORTED_VERSION');
  });

  test('bad options and adapters that break keyset pagination fail loudly', async () => {
    const { fields } = await setup();
    const mem = memoryTable('t', [{ name: 'a' }]);
    mem.rows.set(1, { values: { a: 'x' } });
    expect(
      await codeOf(reencrypt({ fields, table: mem.table, mode: 'rotate', batchSize: 0 })),
    ).toBe('INVALID_ARGUMENT');
    expect(await codeOf(reencrypt({ fields, table: mem.table, mode: 'nope' as 'rotate' }))).toBe(
      'INVALID_ARGUMENT',
    );
    // An adapter that ignores afterKey would loop for ever: caught on the second batch.
    const looping: FieldTable = {
      ...mem.table,
      readBatch: async () => [{ key: 1, values: { a: 'x' } }],
    };
    expect(await codeOf(reencrypt({ fields, table: looping, mode: 'rotate', batchSize: 1 }))).toBe(
      'INVALID_ARGUMENT',
    );
  });
});

// SQLite through better-sqlite3 when it is installed (a devDependency; its native build may be
// missing on some machines, and then these tests say so and skip).
const tmp = mkdtempSync(join(tmpdir(), 'coffer-reencrypt-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const sqliteProbe = await openSqlite(':memory:', { readonly: false }).catch(() => undefined);
sqliteProbe?.close();
if (!sqliteProbe)
  console.warn('NOTICE: better-sqlite3 unavailable; SQLite re-encryption tests skipped');

describe.skipIf(!sqliteProbe)('reencrypt against a real SQLite table', () => {
  test('rotation with tenants, text and blob columns, interrupted and resumed', async () => {
    const { old, fields, keyring, provider } = await rotated();
    const path = join(tmp, 'app.db');
    const Database = (await import('better-sqlite3')).default;
    const setupDb = new Database(path);
    setupDb.exec(
      'CREATE TABLE users (id INTEGER PRIMARY KEY, org_id INTEGER NOT NULL, email TEXT, avatar BLOB)',
    );
    const insert = setupDb.prepare(
      'INSERT INTO users (id, org_id, email, avatar) VALUES (?, ?, ?, ?)',
    );
    for (let i = 1; i <= 60; i++) {
      const ctx = (column: string) => ({ tenant: String(i % 3), table: 'users', column, rowId: i });
      insert.run(
        i,
        i % 3,
        await old.encrypt(emailOf(i), ctx('email')),
        i % 10 === 0
          ? null
          : Buffer.from(await old.encrypt(avatarOf(i), ctx('avatar'), { format: 'binary' })),
      );
    }
    setupDb.close();

    const db = (await openSqlite(path, { readonly: false })) as SqliteDatabase;
    const table = sqliteFieldTable(db, {
      table: 'users',
      primaryKey: 'id',
      tenantColumn: 'org_id',
      columns: [{ name: 'email' }, { name: 'avatar' }],
    });
    expect((await status(fields, table)).versions).toEqual({ plaintext: 0, 1: 114 });
    const store = memoryStore();
    const controller = new AbortController();
    const first = await reencrypt({
      fields,
      table,
      mode: 'rotate',
      batchSize: 16,
      checkpoint: store,
      signal: controller.signal,
      onProgress: (p) => p.rowsScanned >= 32 && controller.abort(),
    });
    expect(first).toMatchObject({ complete: false, lastKey: 32n, rowsUpdated: 32 });
    const second = await reencrypt({
      fields,
      table,
      mode: 'rotate',
      batchSize: 16,
      checkpoint: store,
    });
    expect(second).toMatchObject({ complete: true, rowsScanned: 60, rowsUpdated: 60 });
    const done = await status(fields, table);
    expect(done.versions).toEqual({ plaintext: 0, 2: 114 });
    const retired = createFieldCipher(retireDataKey(keyring, 1, done.versions[1] ?? 0), provider);
    const rows = db.prepare('SELECT id, org_id, email, avatar FROM users ORDER BY id').all() as {
      id: number;
      org_id: number;
      email: string;
      avatar: Uint8Array | null;
    }[];
    for (const r of rows) {
      const ctx = (column: string) => ({
        tenant: String(r.org_id),
        table: 'users',
        column,
        rowId: r.id,
      });
      expect(await retired.decrypt(r.email, ctx('email'))).toBe(emailOf(r.id));
      if (r.avatar) expect(await retired.decrypt(r.avatar, ctx('avatar'))).toEqual(avatarOf(r.id));
    }
    db.close();
  });

  test('batches are transactions: a failing row keeps the rows before it, a failed commit none', async () => {
    const { old, fields } = await rotated();
    const db = (await openSqlite(':memory:', { readonly: false })) as SqliteDatabase;
    db.prepare('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)').run();
    const insert = db.prepare('INSERT INTO t VALUES (?, ?)');
    for (let i = 1; i <= 30; i++) {
      const v = await old.encrypt(`v${i}`, { table: 't', column: 'v', rowId: i });
      insert.run(i, i === 20 ? tamperText(v) : v);
    }
    const inner = sqliteFieldTable(db, { table: 't', primaryKey: 'id', columns: [{ name: 'v' }] });
    const store = memoryStore();
    const run = (table: FieldTable) =>
      reencrypt({ fields, table, mode: 'rotate', batchSize: 8, checkpoint: store });
    expect(await codeOf(run(inner))).toBe('DECRYPTION_FAILED');
    expect(parseCheckpoint(store.text!)).toMatchObject({ lastKey: 19n, rowsUpdated: 19 });
    expect((await status(fields, inner)).versions).toEqual({ plaintext: 0, 1: 11, 2: 19 });

    // Fix row 20; then make the next batch's commit fail: the batch is rolled back, and the
    // checkpoint still says 19.
    db.prepare('UPDATE t SET v = ? WHERE id = 20').run(
      await old.encrypt('v20', { table: 't', column: 'v', rowId: 20 }),
    );
    const failing: FieldTable = {
      ...inner,
      transaction: (work) =>
        inner.transaction!(async () => {
          await work();
          throw new Error('disk full');
        }),
    };
    await expect(run(failing)).rejects.toThrow('disk full');
    expect(parseCheckpoint(store.text!)).toMatchObject({ lastKey: 19n, rowsUpdated: 19 });
    expect((await status(fields, inner)).versions).toEqual({ plaintext: 0, 1: 11, 2: 19 });
    const done = await run(inner);
    expect(done).toMatchObject({ complete: true, resumed: true, rowsScanned: 30, rowsUpdated: 30 });
    expect((await status(fields, inner)).versions).toEqual({ plaintext: 0, 2: 30 });
    db.close();
  });

  test('compare-and-set against SQLite: a concurrent UPDATE wins', async () => {
    const { fields } = await setup();
    const db = (await openSqlite(':memory:', { readonly: false })) as SqliteDatabase;
    db.prepare('CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT)').run();
    db.prepare("INSERT INTO notes VALUES ('a', 'one'), ('b', 'two')").run();
    const inner = sqliteFieldTable(db, {
      table: 'notes',
      primaryKey: 'id',
      columns: [{ name: 'body' }],
    });
    const table: FieldTable = {
      ...inner,
      async writeRow(key, changes, expected) {
        if (key === 'b') db.prepare("UPDATE notes SET body = 'edited' WHERE id = 'b'").run();
        return inner.writeRow(key, changes, expected);
      },
    };
    const report = await reencrypt({ fields, table, mode: 'encrypt-plaintext' });
    expect(report).toMatchObject({ rowsUpdated: 1, rowsSkipped: 1 });
    const b = db.prepare("SELECT body FROM notes WHERE id = 'b'").get() as { body: string };
    expect(b.body).toBe('edited');
    db.close();
  });
});
