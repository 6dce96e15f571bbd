import { describe, expect, test } from 'vitest';
import readme from '../README.md?raw';
import { CryptoError, ERROR_CODES } from '../src/index.js';

// Every source file's text, through Vite, so this also runs in the browser project.
const sources = import.meta.glob<string>('../src/**/*.ts', {
  query: '?raw',
  import: 'default',
  eager: true,
});

describe('error codes', () => {
  test('the README documents exactly the codes the package has', () => {
    const section = readme.split('## Error codes')[1]?.split('\n## ')[0] ?? '';
    const documented = [...section.matchAll(/^\|\s*`([A-Z_]+)`\s*\|/gm)].map((m) => m[1]);
    expect(documented.sort()).toEqual([...ERROR_CODES].sort());
  });

  test('every code used in src/ is a known code', () => {
    const used = new Set<string>();
    expect(Object.keys(sources).length).toBeGreaterThan(10);
    for (const text of Object.values(sources)) {
      for (const m of text.matchAll(/CryptoError\(\s*'([A-Z_]+)'/g)) used.add(m[1]!);
    }
    for (const code of used) expect(ERROR_CODES).toContain(code);
    expect(used.size).toBeGreaterThanOrEqual(ERROR_CODES.length - 1);
  });

  test('CryptoError.is checks shape and code', () => {
    const err = new CryptoError('DECRYPTION_FAILED', 'envelope.decrypt', 'decryption failed');
    expect(CryptoError.is(err)).toBe(true);
    expect(CryptoError.is(err, 'DECRYPTION_FAILED')).toBe(true);
    expect(CryptoError.is(err, 'INVALID_KEY')).toBe(false);
    expect(err.message).toBe('envelope.decrypt: decryption failed');
    expect(err).toBeInstanceOf(Error);
    // Works across copies of the package: the shape counts, not the prototype.
    const foreign = { name: 'CryptoError', code: 'INVALID_KEY', operation: 'x', message: 'm' };
    expect(CryptoError.is(foreign, 'INVALID_KEY')).toBe(true);
    for (const other of [
      new Error('x'),
      null,
      undefined,
      'DECRYPTION_FAILED',
      { name: 'CryptoError', code: 'NOPE', operation: 'x' },
    ]) {
      expect(CryptoError.is(other)).toBe(false);
    }
  });
});
