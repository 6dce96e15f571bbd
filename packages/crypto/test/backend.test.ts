import { expect, test } from 'vitest';
import { backend } from '#backend';

// Each vitest project names the back end it must test (test.env COFFER_BACKEND, read through
// import.meta.env, which works in Node and in the browser). The node/web/noble projects force
// it by alias; crypto:chromium resolves `#backend` as a browser does, so this also proves the
// package's browser resolution picks the web back end.
test('the suite runs against the back end this project names', () => {
  expect(['node', 'web', 'noble']).toContain(import.meta.env.COFFER_BACKEND);
  expect(backend.name).toBe(import.meta.env.COFFER_BACKEND);
});

test('nonces are unique, right-sized and own their memory', () => {
  const seen = new Set<string>();
  for (let i = 0; i < 2000; i++) {
    const n = backend.randomNonce(i % 2 === 0 ? 12 : 24);
    expect(n.length).toBe(i % 2 === 0 ? 12 : 24);
    expect(n.byteOffset).toBe(0);
    expect(n.buffer.byteLength).toBe(n.length);
    seen.add(Array.from(n).join(','));
  }
  expect(seen.size).toBe(2000);
});
