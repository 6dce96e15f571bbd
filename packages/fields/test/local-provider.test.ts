import { generateAeadKey } from '@coffer/crypto';
import { expect, test } from 'vitest';
import { createLocalProvider, type KeyOperation } from '../src/index.js';
import { codeOf } from './_fixtures.js';

// The KeyProvider contract (key-provider.ts, spec/wrapped-key-v1.md): a 32-byte data key in,
// FieldsErrors out. The PKCS#11 and KMIP providers refuse malformed requests with
// INVALID_ARGUMENT; the local provider must answer the same, not DECRYPTION_FAILED (which
// reads as a wrong KEK or a tampered keyring), a TypeError or @coffer/crypto's own error.
test('the local provider refuses malformed requests with INVALID_ARGUMENT', async () => {
  const provider = await createLocalProvider({ kek1: generateAeadKey() });
  const context = new Uint8Array(4);
  const bad: unknown[] = [
    null,
    'wrap',
    { op: 'rewrap', kekId: 'kek1', key: new Uint8Array(32), context },
    { op: 'wrap', kekId: 'kek1', key: new Uint8Array(5), context },
    { op: 'wrap', kekId: 'kek1', key: new Uint8Array(33), context },
    { op: 'wrap', kekId: 'kek1', key: 'not bytes', context },
    { op: 'wrap', kekId: 'kek1', key: new Uint8Array(32), context: 'not bytes' },
    { op: 'unwrap', kekId: 'kek1', wrapped: 'not bytes', context },
    { op: 'unwrap', kekId: 'kek1', wrapped: new Uint8Array(61), context: undefined },
  ];
  for (const request of bad)
    expect(await codeOf(provider.keyOperation(request as KeyOperation))).toBe('INVALID_ARGUMENT');

  // Well-formed requests still work, and a wrong KEK id is still UNKNOWN_KEY.
  const key = generateAeadKey();
  const wrapped = await provider.keyOperation({ op: 'wrap', kekId: 'kek1', key, context });
  const back = await provider.keyOperation({ op: 'unwrap', kekId: 'kek1', wrapped, context });
  expect(back).toEqual(key);
  expect(
    await codeOf(provider.keyOperation({ op: 'unwrap', kekId: 'other', wrapped, context })),
  ).toBe('UNKNOWN_KEY');
  expect(
    await codeOf(
      provider.keyOperation({ op: 'unwrap', kekId: 'kek1', wrapped, context: new Uint8Array(3) }),
    ),
  ).toBe('DECRYPTION_FAILED');
});
