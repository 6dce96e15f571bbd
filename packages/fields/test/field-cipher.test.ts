import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { createFieldCipher, FieldsError, type FieldValue, rotateKey } from '../src/index.js';
import { codeOf, flipBit, instrumented, setup, tamperText } from './_fixtures.js';

const users = (rowId: string | number | bigint, extra: object = {}) => ({
  table: 'users',
  column: 'email',
  rowId,
  ...extra,
});

const value = fc.oneof(
  fc.string(),
  fc.double(),
  fc.bigInt(),
  fc.boolean(),
  fc.date({ noInvalidDate: true }),
  fc.uint8Array({ maxLength: 100 }),
  // As JSON has them: fast-check may put -0 inside, which JSON has no form for (it reads 0).
  fc
    .jsonValue()
    .filter((v) => v !== null && typeof v === 'object')
    .map((v) => JSON.parse(JSON.stringify(v)) as unknown),
);

describe('field encryption', () => {
  test('every type round-trips exactly, in both forms, with and without padding', async () => {
    const { fields } = await setup();
    await fc.assert(
      fc.asyncProperty(
        value,
        fc.constantFrom('text', 'binary'),
        fc.constantFrom(undefined, 16, 64),
        async (v, format, padTo) => {
          const stored = await fields.encrypt(v as FieldValue, users(1), { format, padTo });
          expect(typeof stored === 'string').toBe(format === 'text');
          const back = await fields.decrypt(stored, users(1));
          if (typeof v === 'number' && Number.isNaN(v)) expect(Number.isNaN(back)).toBe(true);
          else expect(back).toEqual(v);
          if (typeof v === 'number') expect(Object.is(back, v) || Number.isNaN(v)).toBe(true);
        },
      ),
      { numRuns: 150 },
    );
  });

  test('the copy-paste attack: row to row, column to column, table to table, tenant to tenant', async () => {
    const { fields } = await setup();
    const stored = await fields.encrypt('alice@example.com', {
      tenant: 'acme',
      table: 'users',
      column: 'email',
      rowId: 1,
    });
    const elsewhere = [
      { tenant: 'acme', table: 'users', column: 'email', rowId: 2 },
      { tenant: 'acme', table: 'users', column: 'phone', rowId: 1 },
      { tenant: 'acme', table: 'admins', column: 'email', rowId: 1 },
      { tenant: 'evil', table: 'users', column: 'email', rowId: 1 },
      { table: 'users', column: 'email', rowId: 1 },
      { tenant: 'acme', table: 'users', column: 'email', rowId: '1 ' },
    ];
    for (const ctx of elsewhere)
      expect(await codeOf(fields.decrypt(stored, ctx))).toBe('DECRYPTION_FAILED');
    expect(
      await fields.decrypt(stored, { tenant: 'acme', table: 'users', column: 'email', rowId: '1' }),
    ).toBe('alice@example.com');
  });

  test('padding hides exact lengths', async () => {
    const { fields } = await setup();
    const sizes = new Set<number>();
    for (let n = 0; n < 40; n++)
      sizes.add(
        (
          (await fields.encrypt('x'.repeat(n), users(1), {
            padTo: 64,
            format: 'binary',
          })) as Uint8Array
        ).length,
      );
    expect(sizes.size).toBe(1);
    expect(await codeOf(fields.encrypt('x', users(1), { padTo: 7 }))).toBe('INVALID_ARGUMENT');
  });

  test('every single bit flip of a binary ciphertext is rejected', async () => {
    const { fields } = await setup();
    const stored = (await fields.encrypt('secret', users(7), { format: 'binary' })) as Uint8Array;
    for (let bit = 0; bit < stored.length * 8; bit++) {
      const code = await codeOf(fields.decrypt(flipBit(stored, bit), users(7)));
      const want =
        bit < 8
          ? 'PLAINTEXT_VALUE'
          : bit < 16
            ? 'UNSUPPORTED_VERSION'
            : ['DECRYPTION_FAILED', 'UNKNOWN_KEY'];
      if (Array.isArray(want)) expect(want).toContain(code);
      else expect(code).toBe(want);
    }
  });

  test('truncated, corrupt and unknown-version text ciphertexts', async () => {
    const { fields } = await setup();
    const stored = (await fields.encrypt('secret', users(1))) as string;
    expect(await codeOf(fields.decrypt(stored.slice(0, -3), users(1)))).toBe('DECRYPTION_FAILED');
    expect(await codeOf(fields.decrypt(`${stored}A`, users(1)))).toBe('DECRYPTION_FAILED');
    expect(
      await codeOf(fields.decrypt(`${stored.slice(0, 10)}*${stored.slice(11)}`, users(1))),
    ).toBe('DECRYPTION_FAILED');
    expect(await codeOf(fields.decrypt(`cf2:${stored.slice(4)}`, users(1)))).toBe(
      'UNSUPPORTED_VERSION',
    );
    expect(await codeOf(fields.decrypt('cf1:', users(1)))).toBe('DECRYPTION_FAILED');
  });

  test('plaintext fails closed outside a migration window, passes inside', async () => {
    const { fields } = await setup();
    expect(await codeOf(fields.decrypt('alice@example.com', users(1)))).toBe('PLAINTEXT_VALUE');
    expect(await codeOf(fields.decrypt(Uint8Array.of(1, 2), users(1)))).toBe('PLAINTEXT_VALUE');
    expect(await fields.decrypt('alice@example.com', users(1), { allowPlaintext: true })).toBe(
      'alice@example.com',
    );
    const stored = await fields.encrypt('bob', users(1));
    expect(await fields.decrypt(stored, users(1), { allowPlaintext: true })).toBe('bob');
    expect(fields.keyVersionOf('plain')).toBeUndefined();
  });

  test('wrong keyring: another data key fails, a missing version is UNKNOWN_KEY', async () => {
    const a = await setup();
    const b = await setup();
    const stored = await a.fields.encrypt('x', users(1));
    expect(await codeOf(b.fields.decrypt(stored, users(1)))).toBe('DECRYPTION_FAILED');
    const rotated = await rotateKey(a.keyring, a.provider, 'kek1');
    const newer = await createFieldCipher(rotated, a.provider).encrypt('y', users(1));
    expect(a.fields.keyVersionOf(newer)).toBe(2);
    expect(await codeOf(a.fields.decrypt(newer, users(1)))).toBe('UNKNOWN_KEY');
  });

  test('bad contexts and values are INVALID_ARGUMENT', async () => {
    const { fields } = await setup();
    for (const ctx of [
      users(1.5),
      users(''),
      users(-0.1),
      { table: '', column: 'c', rowId: 1 },
      { table: 't'.repeat(256), column: 'c', rowId: 1 },
    ]) {
      expect(await codeOf(fields.encrypt('x', ctx))).toBe('INVALID_ARGUMENT');
    }
    expect(await codeOf(fields.encrypt(new Date(Number.NaN), users(1)))).toBe('INVALID_ARGUMENT');
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(await codeOf(fields.encrypt(cyclic as FieldValue, users(1)))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(fields.encrypt('x', users(1), { format: 'hex' as 'text' }))).toBe(
      'INVALID_ARGUMENT',
    );
  });

  test('data keys are unwrapped once, not once per record; an outage is retryable and not cached', async () => {
    const base = await setup();
    const { provider, calls, fail } = instrumented(base.provider);
    const fields = createFieldCipher(base.keyring, provider);
    fail(new FieldsError('PROVIDER_UNAVAILABLE', 'test', 'hsm offline'));
    const err = await fields.encrypt('x', users(1)).catch((e: unknown) => e);
    expect(FieldsError.is(err, 'PROVIDER_UNAVAILABLE') && err.retryable).toBe(true);
    fail(undefined);
    calls.length = 0;
    for (let i = 0; i < 200; i++) {
      const stored = await fields.encrypt(`v${i}`, users(i));
      expect(await fields.decrypt(stored, users(i))).toBe(`v${i}`);
    }
    expect(calls).toEqual(['unwrap']);
  });

  test('synchronous API: same format as the async one, only for preloaded columns', async () => {
    const base = await setup();
    const rotated = await rotateKey(base.keyring, base.provider, 'kek1');
    const old = await base.fields.encrypt('from version 1', users(3));
    const { provider, calls } = instrumented(base.provider);
    const fields = createFieldCipher(rotated, provider);
    const sync = (f: () => unknown) => {
      try {
        f();
      } catch (err) {
        return (err as FieldsError).code;
      }
      return 'no error';
    };
    // Nothing loaded yet: a synchronous call cannot wait for the provider, so it refuses.
    expect(sync(() => fields.encryptSync('x', users(1)))).toBe('UNSUPPORTED_OPERATION');
    expect(calls).toEqual([]);
    await fields.preload([{ table: 'users', column: 'email' }]);
    expect(calls).toEqual(['unwrap', 'unwrap']); // both data-key versions, once each
    for (const v of [
      'a',
      42,
      7n,
      true,
      new Date(0),
      { k: [1] },
      Uint8Array.of(1, 2),
    ] as FieldValue[]) {
      const text = fields.encryptSync(v, users(1));
      const binary = fields.encryptSync(v, users(1), { format: 'binary', padTo: 32 });
      expect(typeof text).toBe('string');
      expect(binary).toBeInstanceOf(Uint8Array);
      expect(await fields.decrypt(text, users(1))).toEqual(v);
      expect(fields.decryptSync(binary, users(1))).toEqual(v);
      expect(fields.decryptSync(await fields.encrypt(v, users(1)), users(1))).toEqual(v);
    }
    expect(fields.keyVersionOf(fields.encryptSync('x', users(1)))).toBe(2);
    expect(fields.decryptSync(old, users(3))).toBe('from version 1');
    // The same typed errors, thrown instead of rejected.
    const stored = fields.encryptSync('secret', users(1));
    expect(sync(() => fields.decryptSync(stored, users(2)))).toBe('DECRYPTION_FAILED');
    expect(sync(() => fields.decryptSync(tamperText(stored), users(1)))).toBe('DECRYPTION_FAILED');
    expect(sync(() => fields.decryptSync('plain', users(1)))).toBe('PLAINTEXT_VALUE');
    expect(fields.decryptSync('plain', users(1), { allowPlaintext: true })).toBe('plain');
    expect(sync(() => fields.encryptSync('x', users(1.5)))).toBe('INVALID_ARGUMENT');
    expect(sync(() => fields.encryptSync('x', users(1), { format: 'hex' as 'text' }))).toBe(
      'INVALID_ARGUMENT',
    );
    expect(sync(() => fields.encryptSync('x', { ...users(1), column: 'phone' }))).toBe(
      'UNSUPPORTED_OPERATION',
    );
    expect(await codeOf(fields.preload([{ table: '', column: 'c' }]))).toBe('INVALID_ARGUMENT');
    // Not a TypeError from destructuring: the package's own error, naming the argument.
    for (const bad of [[null], ['users'], [undefined]])
      expect(await codeOf(fields.preload(bad as never))).toBe('INVALID_ARGUMENT');
    expect(calls).toEqual(['unwrap', 'unwrap']);
  });
});

test('names cannot run into each other: control characters are refused', async () => {
  const { fields, keyring } = await setup();
  // Without this, table 'a\0b' + column 'c' and table 'a' + column 'b\0c' could share a cache entry.
  for (const ctx of [
    { table: 'a\0b', column: 'c', rowId: 1 },
    { table: 'a', column: 'b\0c', rowId: 1 },
    { tenant: 't\n', table: 'a', column: 'b', rowId: 1 },
  ]) {
    expect(await codeOf(fields.encrypt('x', ctx))).toBe('INVALID_ARGUMENT');
  }
  const { createBlindIndexer } = await import('../src/index.js');
  expect(
    await codeOf(
      createBlindIndexer(keyring, fields).compute('x', { table: 'a', column: 'b', name: 'i\0' }),
    ),
  ).toBe('INVALID_ARGUMENT');
  // Row ids are data, not names: anything non-empty goes, and binds exactly.
  const stored = await fields.encrypt('x', { table: 'a', column: 'b', rowId: 'r\0' });
  expect(await codeOf(fields.decrypt(stored, { table: 'a', column: 'b', rowId: 'r' }))).toBe(
    'DECRYPTION_FAILED',
  );
});

describe('memory', () => {
  test('naming many places keeps nothing per place (values that fail to open included)', async () => {
    const { fields } = await setup();
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    // Each attempt fails after its binding context is built (no key of that column is loaded),
    // before any per-column key could be derived and cached.
    const stored = await fields.encrypt('x', users(1));
    const column = (i: number) => `c${i}-${'x'.repeat(200)}`;
    const attempt = (i: number) =>
      fields.decryptSync(stored, { table: 'users', column: column(i), rowId: 1 });
    // Warm up, then measure 20,000 distinct columns (a cache of them held ~9 MB).
    for (let i = 0; i < 1000; i++) expect(() => attempt(i)).toThrow(/not loaded/);
    gc();
    const before = process.memoryUsage().heapUsed;
    for (let i = 1000; i < 21_000; i++) {
      try {
        attempt(i);
      } catch {}
    }
    gc();
    const grown = process.memoryUsage().heapUsed - before;
    expect(grown).toBeLessThan(3_000_000);
  });
});
