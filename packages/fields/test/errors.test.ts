import { expect, test } from 'vitest';
import { FieldsError } from '../src/errors.js';

test('FieldsError.is and retryable', () => {
  const e = new FieldsError('PROVIDER_UNAVAILABLE', 'provider.pkcs11', 'token not present');
  expect(FieldsError.is(e, 'PROVIDER_UNAVAILABLE')).toBe(true);
  expect(e.retryable).toBe(true);
  expect(new FieldsError('DECRYPTION_FAILED', 'x', 'y').retryable).toBe(false);
  expect(FieldsError.is(new Error('x'))).toBe(false);
});
