import { fromHex, toBase64url, toHex } from '@coffer/crypto';
import { expect, test } from 'vitest';
import {
  createFieldCipher,
  type FieldValue,
  type KeyProvider,
  type Keyring,
} from '../src/index.js';
import { codeOf } from './_fixtures.js';
import file from './vectors/field-v1.json' with { type: 'json' };

// Fixtures generated independently of src/ (vectors/generate.ts), kept forever: every release
// must open every value vector and fail every error vector with its code.

// A provider whose "wrapped" keys are the raw keys: only for fixtures, so they can name keys.
const identity: KeyProvider = {
  kind: 'fixture',
  async keyOperation(request) {
    return request.op === 'unwrap' ? request.wrapped : request.key;
  },
};
const keyring: Keyring = {
  format: 'coffer-keyring/v1',
  keys: Object.entries(file.dataKeys).map(([v, hex]) => ({
    purpose: 'data' as const,
    version: Number(v),
    provider: 'fixture',
    kekId: 'fixture',
    wrapped: toBase64url(fromHex(hex)),
    createdAt: '2026-11-27T00:00:00.000Z',
  })),
};
const fields = createFieldCipher(keyring, identity);

function render(value: FieldValue): { type: string; json: unknown } {
  if (typeof value === 'number')
    return { type: 'number', json: Object.is(value, -0) ? '-0' : value };
  if (typeof value === 'bigint') return { type: 'bigint', json: value.toString() };
  if (value instanceof Date) return { type: 'date', json: value.getTime() };
  if (value instanceof Uint8Array) return { type: 'bytes', json: toHex(value) };
  return { type: typeof value === 'object' ? 'json' : typeof value, json: value };
}

test.each(file.vectors.map((v) => [v.id, v] as const))('%s', async (_id, v) => {
  const stored = v.form === 'binary' ? fromHex(v.stored) : v.stored;
  if ('error' in v) {
    expect(await codeOf(fields.decrypt(stored, v.context))).toBe(v.error);
  } else {
    expect(render(await fields.decrypt(stored, v.context))).toEqual(v.value);
  }
});

test('fixtures cover values, both forms and errors', () => {
  expect(file.vectors.filter((v) => 'value' in v).length).toBeGreaterThanOrEqual(20);
  expect(file.vectors.filter((v) => 'error' in v).length).toBeGreaterThanOrEqual(15);
});
