import { fromHex, toBase64url } from '@coffer/crypto';
import { expect, test } from 'vitest';
import {
  type BlindIndexSpec,
  createBlindIndexer,
  createFieldCipher,
  type FieldValue,
  type KeyProvider,
  type Keyring,
} from '../src/index.js';
import { codeOf } from './_fixtures.js';
import file from './vectors/blind-index-v1.json' with { type: 'json' };

// Fixtures generated independently of src/ (vectors/generate-blind-index.ts) from spec §6, kept
// forever: every release must compute every index and refuse every error vector with its code.

// A provider whose "wrapped" keys are the raw keys: only for fixtures, so they can name keys.
const identity: KeyProvider = {
  kind: 'fixture',
  async keyOperation(request) {
    return request.op === 'unwrap' ? request.wrapped : request.key;
  },
};
const entry = (purpose: 'data' | 'index', version: number, hex: string) => ({
  purpose,
  version,
  provider: 'fixture',
  kekId: 'fixture',
  wrapped: toBase64url(fromHex(hex)),
  createdAt: '2026-11-27T00:00:00.000Z',
});
const keyring: Keyring = {
  format: 'coffer-keyring/v1',
  keys: [
    entry('data', 1, '00'.repeat(32)),
    ...Object.entries(file.indexKeys).map(([v, hex]) => entry('index', Number(v), hex)),
  ],
};
const indexer = createBlindIndexer(keyring, createFieldCipher(keyring, identity));

function typed(input: { type: string; json: unknown }): FieldValue {
  switch (input.type) {
    case 'bigint':
      return BigInt(input.json as string);
    case 'date':
      return new Date(input.json as number);
    case 'bytes':
      return fromHex(input.json as string);
    default:
      return input.json as FieldValue;
  }
}

test.each(file.vectors.map((v) => [v.id, v] as const))('%s', async (_id, v) => {
  const value = 'values' in v && v.values ? v.values.map(typed) : typed(v.value!);
  const spec = v.spec as BlindIndexSpec;
  if ('error' in v.expect) {
    expect(await codeOf(indexer.compute(value, spec))).toBe(v.expect.error);
  } else {
    expect(await indexer.compute(value, spec)).toBe(v.expect.index);
  }
});

test('fixtures cover types, normalisers, tenants, bits, compounds and errors', () => {
  const ids = new Set(file.vectors.map((v) => v.id));
  for (const id of ['tenant', 'normalised', 'bits-13', 'compound', 'key-version-1', 'bytes'])
    expect(ids.has(id)).toBe(true);
  expect(file.vectors.filter((v) => 'error' in v.expect).length).toBeGreaterThanOrEqual(2);
  const byId = new Map(file.vectors.map((v) => [v.id, v.expect] as const));
  // Normalised equal values agree; a single value is a one-part compound; parts do not shift.
  expect(byId.get('normalised')).toEqual(byId.get('normalised-same'));
  expect(byId.get('compound-one')).toEqual(byId.get('string'));
  expect(byId.get('compound-shifted')).not.toEqual(byId.get('compound-shifted-2'));
});
