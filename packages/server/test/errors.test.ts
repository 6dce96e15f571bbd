// The error table: code → status in src/errors.ts is the spec's table, no more, no less.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERROR_STATUS, errorResponse, SERVER_ERROR_CODES, ServerError } from '../src/errors.js';

const spec = readFileSync(new URL('../spec/http-api-v1.md', import.meta.url), 'utf8');

describe('error codes', () => {
  it('match the table in spec/http-api-v1.md', () => {
    const rows = [...spec.matchAll(/^\| `([A-Z_]+)` \| (\d{3}) \|/gm)].map((m) => [
      m[1],
      Number(m[2]),
    ]);
    expect(rows.length).toBeGreaterThan(10);
    expect(Object.fromEntries(rows)).toEqual(ERROR_STATUS);
    expect(rows.map((r) => r[0])).toEqual(SERVER_ERROR_CODES);
  });

  it('make responses with the status, body and retry-after', async () => {
    const res = errorResponse(
      new ServerError('RATE_LIMITED', 'test', undefined, { retryAfter: 3 }),
    );
    expect(res.status).toBe(429);
    expect(res.headers.get('retry-after')).toBe('3');
    expect(await res.json()).toEqual({
      error: { code: 'RATE_LIMITED', message: 'too many attempts; retry later' },
    });
    const err = new ServerError('NOT_FOUND', 'links.get');
    expect(ServerError.is(err)).toBe(true);
    expect(ServerError.is(err, 'NOT_FOUND')).toBe(true);
    expect(ServerError.is(err, 'CONFLICT')).toBe(false);
    expect(ServerError.is(new Error('x'))).toBe(false);
    expect(ServerError.is({ name: 'ServerError', code: 'NOPE', operation: 'x' })).toBe(false);
  });
});
