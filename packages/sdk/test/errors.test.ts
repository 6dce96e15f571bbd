import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { SDK_ERROR_CODES, SdkError } from '../src/index.js';

describe('SdkError', () => {
  it('documents exactly the codes it has (README "Errors" table)', () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    const section = readme.slice(readme.indexOf('## Errors'), readme.indexOf('## What is stored'));
    const documented = [...section.matchAll(/^\| `([A-Z_]+)` \|/gm)].map((m) => m[1]);
    expect(documented).toEqual([...SDK_ERROR_CODES]);
  });

  it('carries code, operation and options, and is recognised by is()', () => {
    const cause = new Error('inner');
    const err = new SdkError('RATE_LIMITED', 'client.login', 'too many attempts', {
      retryAfter: 4,
      serverCode: 'RATE_LIMITED',
      status: 429,
      cause,
    });
    expect(err.message).toBe('client.login: too many attempts');
    expect(err.name).toBe('SdkError');
    expect(err.retryable).toBe(true);
    expect(err.retryAfter).toBe(4);
    expect(err.cause).toBe(cause);
    expect(SdkError.is(err)).toBe(true);
    expect(SdkError.is(err, 'RATE_LIMITED')).toBe(true);
    expect(SdkError.is(err, 'NETWORK')).toBe(false);
    expect(SdkError.is(new Error('x'))).toBe(false);
    expect(SdkError.is(null)).toBe(false);
    // Another copy of the package (a structural look-alike) is recognised too.
    expect(SdkError.is({ name: 'SdkError', code: 'NETWORK' }, 'NETWORK')).toBe(true);
    expect(new SdkError('NETWORK', 'x', 'y').retryable).toBe(true);
    expect(new SdkError('SERVER_ERROR', 'x', 'y').retryable).toBe(false);
  });
});
