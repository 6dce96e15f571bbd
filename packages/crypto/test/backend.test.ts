import { expect, test } from 'vitest';
import { backend } from '#backend';

// Each vitest project forces one back end; this guards against the alias silently not applying.
test('the suite runs against the back end this project names', () => {
  expect(backend.name).toBe(process.env.COFFER_BACKEND);
});
