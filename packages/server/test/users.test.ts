// The user directory (spec/http-api-v1.md "Users"): username → account id through the blind
// index, normalised like login, with a per-account rate limit — on every database.
import { toBase64url } from '@coffer/crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOOKUP_WINDOW_MS, LOOKUPS_PER_ACCOUNT } from '../src/lookup-limiter.js';
import { type Account, call, signup } from './_client.js';
import { testDialects } from './_db.js';
import { createHarness, type Harness } from './_harness.js';

const dialects = await testDialects();

describe.each(dialects)('user directory (%s)', (dialect) => {
  let h: Harness;
  let n = 0;
  const fresh = (name = `dir${n++}`) => signup(h.fetch, name, 'a long enough password');
  const lookup = (token: string | undefined, name: string) =>
    call(h.fetch, 'GET', `/v1/users/${encodeURIComponent(name)}`, undefined, token);

  let alice: Account;
  beforeAll(async () => {
    h = await createHarness(dialect, 'users');
    alice = await fresh('Alice.Example');
  });
  afterAll(() => h.dispose());

  it('finds an account by its normalised username', async () => {
    const bob = await fresh();
    for (const name of ['alice.example', 'Alice.Example', '  ALICE.example ']) {
      const r = await lookup(bob.token, name);
      expect(r.status, name).toBe(200);
      expect(r.json).toEqual({ accountId: alice.accountId });
    }
    expect((await lookup(alice.token, bob.username)).json).toEqual({ accountId: bob.accountId });
  });

  it('answers 404 for an unknown name and 400 for a malformed one', async () => {
    const bob = await fresh();
    const unknown = await lookup(bob.token, 'nobody-here');
    expect(unknown.status).toBe(404);
    expect(unknown.json.error.code).toBe('NOT_FOUND');
    for (const bad of ['ab', 'x'.repeat(33), 'no spaces', 'slash/name', 'émile', '%ZZ']) {
      const r =
        bad === '%ZZ'
          ? await call(h.fetch, 'GET', '/v1/users/%ZZ', undefined, bob.token)
          : await lookup(bob.token, bad);
      expect(r.status, bad).toBe(400);
      expect(r.json.error.code, bad).toBe('INVALID_USERNAME');
    }
  });

  it('needs a session', async () => {
    expect((await lookup(undefined, 'alice.example')).status).toBe(401);
    expect((await lookup(toBase64url(new Uint8Array(32)), 'alice.example')).status).toBe(401);
  });

  it('limits lookups per account per hour, counting every attempt', async () => {
    const crawler = await fresh();
    const other = await fresh();
    for (let i = 0; i < LOOKUPS_PER_ACCOUNT; i++) {
      // Unknown and malformed names count as well.
      const name = i % 3 === 0 ? 'alice.example' : i % 3 === 1 ? `nobody${i}` : '!';
      const r = await lookup(crawler.token, name);
      expect(r.status, `lookup ${i}`).not.toBe(429);
    }
    const limited = await lookup(crawler.token, 'alice.example');
    expect(limited.status).toBe(429);
    expect(limited.json.error.code).toBe('RATE_LIMITED');
    const retryAfter = Number(limited.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(LOOKUP_WINDOW_MS / 1000);
    // Another account is not affected.
    expect((await lookup(other.token, 'alice.example')).status).toBe(200);
    // The next window starts afresh.
    h.clock.now += LOOKUP_WINDOW_MS + 1;
    const again = await fresh();
    expect((await lookup(again.token, 'alice.example')).status).toBe(200);
    expect((await lookup(crawler.token, 'alice.example')).status).toBe(200);
  });
});
