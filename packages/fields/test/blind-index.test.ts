import { createHmac } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import { createBlindIndexer, createFieldCipher, planBlindIndex, rotateKey } from '../src/index.js';
import { codeOf, setup } from './_fixtures.js';

const spec = {
  table: 'users',
  column: 'email',
  name: 'email_eq',
  normalize: ['trim', 'casefold', 'nfc'] as const,
};

describe('blind indexes', () => {
  test('normalised equal values match; different values do not', async () => {
    const { keyring, fields } = await setup();
    const index = createBlindIndexer(keyring, fields);
    const a = await index.compute('  Alice@Example.COM ', spec);
    expect(a).toMatch(/^[0-9a-f]{8}$/);
    expect(await index.compute('alice@example.com', spec)).toBe(a);
    expect(await index.compute('bob@example.com', spec)).not.toBe(a);
    // NFC: a precomposed and a decomposed é are one value.
    expect(await index.compute('caf\u00e9', spec)).toBe(await index.compute('cafe\u0301', spec));
    // Without normalisers, case matters.
    expect(await index.compute('A', { ...spec, normalize: [] })).not.toBe(
      await index.compute('a', { ...spec, normalize: [] }),
    );
  });

  test('separate per column, per index name, per tenant, per keyring; typed', async () => {
    const { keyring, fields } = await setup();
    const index = createBlindIndexer(keyring, fields);
    const base = await index.compute('x', spec);
    expect(await index.compute('x', { ...spec, column: 'phone' })).not.toBe(base);
    expect(await index.compute('x', { ...spec, name: 'other' })).not.toBe(base);
    expect(await index.compute('x', { ...spec, tenant: 'acme' })).not.toBe(base);
    const other = await setup();
    expect(await createBlindIndexer(other.keyring, other.fields).compute('x', spec)).not.toBe(base);
    expect(await index.compute(1, spec)).not.toBe(await index.compute('1', spec));
  });

  test('compound indexes are unambiguous', async () => {
    const { keyring, fields } = await setup();
    const index = createBlindIndexer(keyring, fields);
    const s = { ...spec, name: 'name_city', normalize: [] };
    expect(await index.compute(['ab', 'c'], s)).not.toBe(await index.compute(['a', 'bc'], s));
    expect(await index.compute(['ab', 'c'], s)).toBe(await index.compute(['ab', 'c'], s));
  });

  test('an unknown normaliser is INVALID_ARGUMENT whatever the value type (spec §6)', async () => {
    const { keyring, fields } = await setup();
    const index = createBlindIndexer(keyring, fields);
    const bad = { ...spec, normalize: ['bogus'] as unknown as typeof spec.normalize };
    for (const value of ['x', 42, [7, 8], ['a', 9]] as const)
      expect(await codeOf(index.compute(value as never, bad))).toBe('INVALID_ARGUMENT');
  });

  test('truncation to any bit length, unused low bits zero', async () => {
    const { keyring, fields } = await setup();
    const index = createBlindIndexer(keyring, fields);
    for (const bits of [8, 12, 16, 31, 32, 64, 255, 256]) {
      const hex = await index.compute('x', { ...spec, bits });
      expect(hex.length).toBe(Math.ceil(bits / 8) * 2);
      const last = Number.parseInt(hex.slice(-2), 16);
      expect(last & ((1 << ((8 - (bits % 8)) % 8)) - 1)).toBe(0);
    }
    for (const bits of [0, 7, 257, 1.5])
      expect(await codeOf(index.compute('x', { ...spec, bits }))).toBe('INVALID_ARGUMENT');
  });

  test('computeSync serves preloaded indexes with the same values, and refuses others', async () => {
    const { keyring, fields } = await setup();
    const index = createBlindIndexer(keyring, fields);
    expect(() => index.computeSync('x', spec)).toThrow(/not loaded; await preload/);
    // Malformed arguments are the package's INVALID_ARGUMENT, not a TypeError.
    for (const bad of ['x', spec, [null], [undefined]])
      expect(await codeOf(index.preload(bad as never))).toBe('INVALID_ARGUMENT');
    await index.preload([spec, { ...spec, name: 'other', tenant: 'acme' }]);
    for (const value of ['  Alice@Example.COM ', 'x'.repeat(1000), '', 'caf\u00e9']) {
      expect(index.computeSync(value, spec)).toBe(await index.compute(value, spec));
    }
    const other = { ...spec, name: 'other', tenant: 'acme' };
    expect(index.computeSync(['a', 7], other)).toBe(await index.compute(['a', 7], other));
    // Interleaved specs and a long value (the scratch buffer grows) do not leak into each other.
    const short = index.computeSync('y', spec);
    index.computeSync('z'.repeat(5000), other);
    expect(index.computeSync('y', spec)).toBe(short);
    expect(() => index.computeSync('x', { ...spec, column: 'phone' })).toThrow(/not loaded/);
    expect(() => index.computeSync('x', { ...spec, bits: 7 })).toThrow(/bits/);
  });

  test("compound values are not left in Node's shared Buffer pool", async () => {
    const { keyring, fields } = await setup();
    const index = createBlindIndexer(keyring, fields);
    await index.preload([spec]);
    const secret = 'pool-canary-7d1f2c-SECRET';
    // TextEncoder, not Buffer.from: the needle itself must not sit in the pool.
    const needle = new TextEncoder().encode(secret.toLowerCase());
    // Small Buffer.allocUnsafe allocations share one pool; it may roll over once meanwhile.
    const poolBefore = Buffer.allocUnsafe(1).buffer;
    index.computeSync([` ${secret} `, 42, `${secret}-2`], spec);
    const poolAfter = Buffer.allocUnsafe(1).buffer;
    for (const pool of new Set([poolBefore, poolAfter]))
      expect(Buffer.from(pool).indexOf(needle)).toBe(-1);
  });

  test('the index key is not the encryption key, and rotates independently (shadow column)', async () => {
    const { keyring, provider, fields } = await setup();
    const index = createBlindIndexer(keyring, fields);
    const current = await index.compute('x', spec);
    const dataKey = await fields.keyBytes('data', 1);
    const indexRoot = await fields.keyBytes('index', 1);
    expect(dataKey).not.toEqual(indexRoot);
    const rotated = await rotateKey(keyring, provider, 'kek1', 'index');
    const next = createBlindIndexer(rotated, createFieldCipher(rotated, provider));
    expect(await next.compute('x', { ...spec, version: 1 })).toBe(current);
    expect(await next.compute('x', spec)).not.toBe(current);
    // Independent of HMAC under the raw index root: the per-index key is derived.
    const raw = createHmac('sha256', indexRoot).update('x').digest('hex').slice(0, 8);
    expect(current).not.toBe(raw);
  });
});

describe('planner', () => {
  test('recommends bits that keep collisions as cover and lookups cheap', () => {
    const plan = planBlindIndex({ rows: 1_000_000 });
    expect(plan.recommended).toEqual({ min: 10, max: 18 });
    expect(plan.bits).toBe(18);
    expect(plan.rowsPerIndexValue).toBeCloseTo(1_000_000 / 2 ** 18);
    expect(plan.falsePositivesPerLookup).toBeCloseTo(999_999 / 2 ** 18);
    expect(plan.leaks.join(' ')).toContain('share');
    const unique = planBlindIndex({ rows: 1000, bits: 32 });
    expect(unique.rowsPerIndexValue).toBeLessThan(1);
    expect(unique.leaks.join(' ')).toContain('nearly identifies');
    expect(() => planBlindIndex({ rows: 0 })).toThrow(/rows/);
  });
});
