// Signup, login, session, logout and account deletion, in-process, on every database.
import { fromBase64url, toBase64url } from '@coffer/crypto';
import { newAccountId } from '@coffer/protocol';
import * as opaque from '@serenity-kit/opaque';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../src/app.js';
import { createLogger } from '../src/logger.js';
import { createMetrics } from '../src/metrics.js';
import {
  SIGNUP_FINISHES_PER_ADDRESS,
  SIGNUP_LIMITS,
  SIGNUP_STARTS_PER_ADDRESS,
  SIGNUP_WINDOW_MS,
} from '../src/signup-limiter.js';
import type { Storage } from '../src/storage/types.js';
import { addDevice, call, login, makeDevice, signup } from './_client.js';
import { testDialects } from './_db.js';
import { createHarness, type Fetcher, type Harness } from './_harness.js';

const dialects = await testDialects();

describe.each(dialects)('accounts (%s)', (dialect) => {
  let h: Harness;
  beforeAll(async () => {
    h = await createHarness(dialect, 'accounts');
  });
  afterAll(() => h.dispose());

  it('signs up, shows the session, logs out, logs in again', async () => {
    const a = await signup(h.fetch, '  Alice.Smith ', 'correct horse');
    expect(a.token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const me = await call(h.fetch, 'GET', '/v1/session', undefined, a.token);
    expect(me.status).toBe(200);
    expect(me.json).toMatchObject({
      accountId: a.accountId,
      username: 'Alice.Smith',
      deviceId: a.device.id,
      authAt: h.clock.now,
    });
    const out = await call(h.fetch, 'POST', '/v1/logout', undefined, a.token);
    expect(out.status).toBe(204);
    expect((await call(h.fetch, 'GET', '/v1/session', undefined, a.token)).status).toBe(401);

    // The name is case- and space-insensitive.
    const again = await login(h.fetch, 'ALICE.smith', 'correct horse', a.device);
    expect(again.finish?.status).toBe(200);
    expect(again.finish?.json.accountId).toBe(a.accountId);
    expect(again.exportKey).toEqual(a.exportKey);
    const me2 = await call(h.fetch, 'GET', '/v1/session', undefined, again.finish?.json.token);
    expect(me2.json.deviceId).toBe(a.device.id);
  });

  it('refuses a taken username at start and at finish', async () => {
    await signup(h.fetch, 'bob', 'pw-bob-1');
    await opaque.ready;
    const start = opaque.client.startRegistration({ password: 'x' });
    const r = await call(h.fetch, 'POST', '/v1/signup/start', {
      username: 'BOB',
      registrationRequest: start.registrationRequest,
    });
    expect(r.status).toBe(409);
    expect(r.json.error.code).toBe('USERNAME_TAKEN');
  });

  it('lets exactly one of two concurrent signups for one name succeed', async () => {
    const results = await Promise.allSettled([
      signup(h.fetch, 'carol', 'one'),
      signup(h.fetch, 'Carol', 'two'),
    ]);
    const ok = results.filter((r) => r.status === 'fulfilled');
    const failed = results.filter((r) => r.status === 'rejected') as PromiseRejectedResult[];
    expect(ok).toHaveLength(1);
    expect(failed).toHaveLength(1);
    // The loser lost at finish (both starts saw a free name) or at start.
    expect(String(failed[0]!.reason)).toMatch(/409 .*USERNAME_TAKEN/);
  });

  it("accepts only an account id signup/start issued, and never a deleted account's", async () => {
    // An id the client made up (well-formed, random): refused before anything is stored.
    await expect(signup(h.fetch, 'mallory', 'pw', { accountId: newAccountId() })).rejects.toThrow(
      /signup\/finish 400 .*BAD_REQUEST/,
    );
    // An issued id whose tag was tampered with.
    const issued = await call(h.fetch, 'POST', '/v1/signup/start', {
      username: 'mallory',
      registrationRequest: opaque.client.startRegistration({ password: 'x' }).registrationRequest,
    });
    const bytes = fromBase64url(issued.json.accountId);
    bytes[15]! ^= 1;
    await expect(
      signup(h.fetch, 'mallory', 'pw', { accountId: toBase64url(bytes) }),
    ).rejects.toThrow(/signup\/finish 400 .*BAD_REQUEST/);

    // The review's reproduction: an account is deleted, and an impostor signs up under its id.
    const victim = await signup(h.fetch, 'victor', 'pw');
    expect((await call(h.fetch, 'DELETE', '/v1/account', undefined, victim.token)).status).toBe(
      204,
    );
    await expect(
      signup(h.fetch, 'impostor', 'pw', { accountId: victim.accountId }),
    ).rejects.toThrow(/signup\/finish 409 .*CONFLICT/);
    // Under its old name too, and again later: the id stays retired.
    await expect(signup(h.fetch, 'victor', 'pw', { accountId: victim.accountId })).rejects.toThrow(
      /signup\/finish 409 .*CONFLICT/,
    );
    const someone = await signup(h.fetch, 'mallory', 'pw');
    const gone = await call(
      h.fetch,
      'GET',
      `/v1/accounts/${victim.accountId}/manifest`,
      undefined,
      someone.token,
    );
    expect(gone.status).toBe(404);
    // The name itself is free again, under a new id.
    const renewed = await signup(h.fetch, 'victor', 'pw');
    expect(renewed.accountId).not.toBe(victim.accountId);
  });

  it('rejects usernames outside the rules', async () => {
    await opaque.ready;
    const { registrationRequest } = opaque.client.startRegistration({ password: 'x' });
    for (const username of ['ab', 'a'.repeat(33), '-abc', 'abc-', 'a b c', 'ålice', 'x@y', '']) {
      const r = await call(h.fetch, 'POST', '/v1/signup/start', { username, registrationRequest });
      expect(r.status, String(username)).toBe(400);
      expect(r.json.error.code).toBe('INVALID_USERNAME');
    }
    for (const username of [7, null, ['alice'], undefined]) {
      const r = await call(h.fetch, 'POST', '/v1/signup/start', { username, registrationRequest });
      expect(r.status, String(username)).toBe(400);
      expect(r.json.error.code).toBe('BAD_REQUEST');
    }
  });

  it('answers a wrong password and an unknown user identically', async () => {
    await signup(h.fetch, 'dave', 'right password');
    h.address.value = '192.0.2.50';
    const wrong = await login(h.fetch, 'dave', 'wrong password');
    const unknown = await login(h.fetch, 'nobody-here', 'wrong password');
    h.address.value = '192.0.2.1';
    for (const step of ['start', 'finish'] as const) {
      const a = wrong[step]!;
      const b = unknown[step]!;
      expect(a.status).toBe(b.status);
      expect([...a.headers.keys()].sort()).toEqual([...b.headers.keys()].sort());
      for (const [name, value] of a.headers) {
        if (name === 'x-request-id' || name === 'date') {
          expect(b.headers.get(name)?.length).toBe(value.length);
        } else {
          expect(b.headers.get(name), name).toBe(value);
        }
      }
      expect(a.text.length).toBe(b.text.length);
      expect(Buffer.byteLength(a.text)).toBe(Buffer.byteLength(b.text));
    }
    expect(wrong.start.status).toBe(200);
    expect(Object.keys(wrong.start.json)).toEqual(Object.keys(unknown.start.json));
    expect(wrong.start.json.loginResponse.length).toBe(unknown.start.json.loginResponse.length);
    expect(wrong.finish?.status).toBe(401);
    expect(wrong.finish?.text).toBe(unknown.finish?.text);
    expect(wrong.finish?.json.error.code).toBe('INVALID_CREDENTIALS');
  });

  it('refuses a login id used twice or expired', async () => {
    await signup(h.fetch, 'erin', 'pw-erin');
    await opaque.ready;
    const c = opaque.client.startLogin({ password: 'pw-erin' });
    const start = await call(h.fetch, 'POST', '/v1/login/start', {
      username: 'erin',
      startLoginRequest: c.startLoginRequest,
    });
    const done = opaque.client.finishLogin({
      clientLoginState: c.clientLoginState,
      loginResponse: start.json.loginResponse,
      password: 'pw-erin',
      keyStretching: { 'argon2id-custom': { memory: 1024, iterations: 1, parallelism: 1 } },
    })!;
    const body = { loginId: start.json.loginId, finishLoginRequest: done.finishLoginRequest };
    expect((await call(h.fetch, 'POST', '/v1/login/finish', body)).status).toBe(200);
    const twice = await call(h.fetch, 'POST', '/v1/login/finish', body);
    expect(twice.status).toBe(401);
    expect(twice.json.error.code).toBe('INVALID_CREDENTIALS');

    const c2 = opaque.client.startLogin({ password: 'pw-erin' });
    const start2 = await call(h.fetch, 'POST', '/v1/login/start', {
      username: 'erin',
      startLoginRequest: c2.startLoginRequest,
    });
    const done2 = opaque.client.finishLogin({
      clientLoginState: c2.clientLoginState,
      loginResponse: start2.json.loginResponse,
      password: 'pw-erin',
      keyStretching: { 'argon2id-custom': { memory: 1024, iterations: 1, parallelism: 1 } },
    })!;
    h.clock.now += 61_000;
    const late = await call(h.fetch, 'POST', '/v1/login/finish', {
      loginId: start2.json.loginId,
      finishLoginRequest: done2.finishLoginRequest,
    });
    expect(late.status).toBe(401);
  });

  // The review's reproduction: device ids are public, so a stolen password alone must not give
  // a session as one of the owner's listed devices (its queue, and surviving a password change).
  it("refuses a login naming a listed device without that device's proof for this login", async () => {
    const a = await signup(h.fetch, 'lena', 'stolen');
    const phone = await makeDevice('phone');
    expect((await addDevice(h.fetch, a, phone)).status).toBe(200);
    const sessions = async () =>
      Number(
        (
          await h.db
            .raw()
            .selectFrom('sessions')
            .select((eb) => eb.fn.countAll().as('n'))
            .where('account_id', '=', a.accountId)
            .executeTakeFirstOrThrow()
        ).n,
      );
    // Each refusal counts as a failed guess: each attempt comes from its own address, after the
    // account's wait (at most 60 s) is over.
    let n = 0;
    const attempt: typeof login = async (...args) => {
      h.clock.now += 61_000;
      h.address.value = `198.51.100.${100 + n++}`;
      try {
        return await login(...args);
      } finally {
        h.address.value = '192.0.2.1';
      }
    };
    const wrongPassword = (await attempt(h.fetch, 'lena', 'not the password', a.device)).finish!;
    expect(wrongPassword.status).toBe(401);

    // A proof from an earlier login of the same device, and the login it came from.
    const earlier = await attempt(h.fetch, 'lena', 'stolen', phone);
    expect(earlier.finish?.status).toBe(200);
    const before = await sessions();
    const stranger = await makeDevice();
    for (const device of [a.device, phone]) {
      const other = device === phone ? a.device : phone;
      const refused = [
        await attempt(h.fetch, 'lena', 'stolen', device.id),
        await attempt(h.fetch, 'lena', 'stolen', device, { proofKey: stranger.keys }),
        await attempt(h.fetch, 'lena', 'stolen', device, { proofKey: other.keys }),
        await attempt(h.fetch, 'lena', 'stolen', device.id, { proof: earlier.proof! }),
        // A proof made for this login but for another device.
        await attempt(h.fetch, 'lena', 'stolen', device.id, { proofKey: other.keys }),
      ];
      for (const [i, r] of refused.entries()) {
        expect(r.exportKey, `case ${i}: the password is right`).toBeDefined();
        expect(r.finish?.status, `case ${i}`).toBe(401);
        // The same answer as a wrong password: no oracle for "right password, no proof".
        expect(r.finish?.text, `case ${i}`).toBe(wrongPassword.text);
      }
    }
    expect(await sessions()).toBe(before);

    // Its own proof is accepted; a login naming no device or an unlisted (new) device needs none.
    const own = await attempt(h.fetch, 'lena', 'stolen', a.device);
    expect(own.finish?.status).toBe(200);
    const me = await call(h.fetch, 'GET', '/v1/session', undefined, own.finish?.json.token);
    expect(me.json.deviceId).toBe(a.device.id);
    expect((await attempt(h.fetch, 'lena', 'stolen')).finish?.status).toBe(200);
    expect((await attempt(h.fetch, 'lena', 'stolen', stranger.id)).finish?.status).toBe(200);
    // A malformed proof is a malformed request.
    const bad = await attempt(h.fetch, 'lena', 'stolen', a.device.id, { proof: 'AAAA' });
    expect(bad.finish?.status).toBe(400);
  });

  it('counts a login with a missing device proof as a failed guess', async () => {
    const a = await signup(h.fetch, 'mona', 'stolen');
    h.address.value = '198.51.100.40';
    try {
      for (let i = 0; i < 5; i++) {
        expect((await login(h.fetch, 'mona', 'stolen', a.device.id)).finish?.status).toBe(401);
      }
      const limited = await login(h.fetch, 'mona', 'stolen', a.device);
      expect(limited.start.status).toBe(429);
    } finally {
      h.address.value = '192.0.2.1';
    }
    const metrics = await (await h.fetch('/metrics')).text();
    expect(metrics).toMatch(/coffer_logins_total\{outcome="failure"\} [1-9]/);
  });

  it('throttles from the 5th failure, with retry-after, and the wait expires', async () => {
    await signup(h.fetch, 'frank', 'pw-frank');
    h.address.value = '198.51.100.7';
    for (let i = 0; i < 5; i++) {
      const r = await login(h.fetch, 'frank', 'guess');
      expect(r.finish?.status).toBe(401);
    }
    const limited = await login(h.fetch, 'frank', 'pw-frank');
    expect(limited.start.status).toBe(429);
    expect(limited.start.json.error.code).toBe('RATE_LIMITED');
    expect(limited.start.headers.get('retry-after')).toBe('1');
    // Unknown names are throttled the same way (per name).
    h.clock.now += 1000;
    const ok = await login(h.fetch, 'frank', 'pw-frank');
    expect(ok.finish?.status).toBe(200);
    // Success cleared the account counter; the address still remembers its failures.
    h.address.value = '198.51.100.8';
    for (let i = 0; i < 5; i++) await login(h.fetch, 'frank', 'guess');
    const sixth = await login(h.fetch, 'frank', 'guess');
    expect(sixth.start.status).toBe(429);
    h.clock.now += 1000;
    await login(h.fetch, 'frank', 'guess'); // 6th failure: 2 s
    const seventh = await login(h.fetch, 'frank', 'pw-frank');
    expect(seventh.start.status).toBe(429);
    expect(seventh.start.headers.get('retry-after')).toBe('2');
    h.clock.now += 2000;
    expect((await login(h.fetch, 'frank', 'pw-frank')).finish?.status).toBe(200);
    h.address.value = '192.0.2.1';
    const metrics = await (await h.fetch('/metrics')).text();
    expect(metrics).toMatch(/coffer_rate_limited_total [1-9]/);
    expect(metrics).toMatch(/coffer_logins_total\{outcome="throttled"\} [1-9]/);
  });

  it('admits at most five guesses sent together: the check and the count are one step', async () => {
    await signup(h.fetch, 'ivy', 'pw-ivy');
    h.address.value = '198.51.100.30';
    try {
      await opaque.ready;
      const answers = await Promise.all(
        Array.from({ length: 20 }, () =>
          call(h.fetch, 'POST', '/v1/login/start', {
            username: 'ivy',
            startLoginRequest: opaque.client.startLogin({ password: 'guess' }).startLoginRequest,
          }),
        ),
      );
      const statuses = answers.map((a) => a.status);
      expect(statuses.filter((s) => s === 200)).toHaveLength(5);
      expect(statuses.filter((s) => s === 429)).toHaveLength(15);
    } finally {
      h.address.value = '192.0.2.1';
    }
  });

  it('a success as the 5th attempt takes back the wait its count started', async () => {
    await signup(h.fetch, 'jade', 'pw-jade');
    h.address.value = '198.51.100.77';
    try {
      for (let i = 0; i < 4; i++)
        expect((await login(h.fetch, 'jade', 'guess')).finish?.status).toBe(401);
      expect((await login(h.fetch, 'jade', 'pw-jade')).finish?.status).toBe(200);
      // The clock has not moved: four failures in a row allow the next attempt at once.
      expect((await login(h.fetch, 'jade', 'pw-jade')).finish?.status).toBe(200);
    } finally {
      h.address.value = '192.0.2.1';
    }
  });

  it('counts a guess the client abandons after learning it is wrong, and never a success', async () => {
    // OPAQUE tells the client a password is wrong before login/finish; an attacker simply never
    // calls it. The attempt is counted at login/start.
    await signup(h.fetch, 'hugo', 'pw-hugo');
    h.address.value = '198.51.100.20';
    try {
      for (let i = 0; i < 5; i++) {
        const c = opaque.client.startLogin({ password: 'guess' });
        const r = await call(h.fetch, 'POST', '/v1/login/start', {
          username: 'hugo',
          startLoginRequest: c.startLoginRequest,
        });
        expect(r.status).toBe(200);
      }
      const c = opaque.client.startLogin({ password: 'guess' });
      const limited = await call(h.fetch, 'POST', '/v1/login/start', {
        username: 'hugo',
        startLoginRequest: c.startLoginRequest,
      });
      expect(limited.status).toBe(429);
      // Many successful logins from one address are never throttled.
      h.clock.now += 60_000;
      h.address.value = '198.51.100.21';
      for (let i = 0; i < 8; i++) {
        expect((await login(h.fetch, 'hugo', 'pw-hugo')).finish?.status).toBe(200);
      }
    } finally {
      h.address.value = '192.0.2.1';
    }
  });

  it('caps the account wait at 60 s and the address wait at 15 minutes', async () => {
    h.address.value = '203.0.113.9';
    try {
      for (let i = 0; i < 30; i++) {
        const r = await login(h.fetch, 'ghost-user', 'guess');
        if (r.start.status === 429)
          h.clock.now += Number(r.start.headers.get('retry-after')) * 1000;
      }
      // One more failure (allowed now), then the next attempt must wait.
      await login(h.fetch, 'ghost-user', 'guess');
      const r = await login(h.fetch, 'ghost-user', 'guess');
      expect(r.start.status).toBe(429);
      expect(Number(r.start.headers.get('retry-after'))).toBe(15 * 60);
      // Another address is held only by the name's 60 s cap.
      h.address.value = '203.0.113.10';
      const other = await login(h.fetch, 'ghost-user', 'guess');
      expect(other.start.status).toBe(429);
      expect(Number(other.start.headers.get('retry-after'))).toBeLessThanOrEqual(60);
    } finally {
      h.address.value = '192.0.2.1';
    }
  });

  it("answers a write racing its account's deletion with 401, never 500", async () => {
    // The deletion commits between a request's checks (its session, or the name's lookup) and
    // its write, which then refers to an account that is gone (a foreign key in the database).
    let armed: 'links' | 'logins' | 'sessions' | undefined;
    const deleteFirst = async (hook: typeof armed, accountId: string | null) => {
      if (armed !== hook || accountId === null) return;
      armed = undefined;
      await h.storage.accounts.delete(accountId);
    };
    const storage: Storage = {
      ...h.storage,
      links: {
        ...h.storage.links,
        async create(link) {
          await deleteFirst('links', link.accountId);
          return h.storage.links.create(link);
        },
      },
      logins: {
        ...h.storage.logins,
        async put(loginId, state) {
          await deleteFirst('logins', state.accountId);
          return h.storage.logins.put(loginId, state);
        },
      },
      sessions: {
        ...h.storage.sessions,
        async create(session) {
          await deleteFirst('sessions', session.accountId);
          return h.storage.sessions.create(session);
        },
      },
    };
    const lines: { msg: string; detail?: string }[] = [];
    const app = createApp({
      storage,
      ...h.secrets,
      logger: createLogger({
        destination: { write: (line: string) => lines.push(JSON.parse(line)) },
      }),
      metrics: createMetrics({ processMetrics: false }),
      now: () => h.clock.now,
      clientAddress: () => h.address.value,
    });
    const fetcher: Fetcher = async (path, init) => app.request(path, init);

    const a = await signup(h.fetch, 'racer-links', 'pw');
    armed = 'links';
    const created = await call(fetcher, 'POST', '/v1/links', { linkId: 'ABCDEFGH' }, a.token);
    expect(created.status).toBe(401);
    expect(created.json.error.code).toBe('UNAUTHENTICATED');

    await signup(h.fetch, 'racer-start', 'pw');
    armed = 'logins';
    const started = await login(fetcher, 'racer-start', 'pw');
    expect(started.start.status).toBe(401);
    expect(started.start.json.error.code).toBe('INVALID_CREDENTIALS');

    await signup(h.fetch, 'racer-finish', 'pw');
    armed = 'sessions';
    const finished = await login(fetcher, 'racer-finish', 'pw');
    expect(finished.finish?.status).toBe(401);
    expect(finished.finish?.json.error.code).toBe('INVALID_CREDENTIALS');
    expect(armed).toBeUndefined();
    // Each is logged (without secrets), so a foreign key refusing a write for another reason
    // would show.
    const raced = lines.filter((l) => l.msg.includes('foreign key'));
    expect(raced).toHaveLength(3);
    for (const l of raced) expect(l.detail).toMatch(/^the account is gone/);
  });

  it('deletes an account only with a recent password', async () => {
    const a = await signup(h.fetch, 'gina', 'pw-gina');
    h.clock.now += 11 * 60 * 1000;
    const stale = await call(h.fetch, 'DELETE', '/v1/account', undefined, a.token);
    expect(stale.status).toBe(403);
    expect(stale.json.error.code).toBe('REAUTH_REQUIRED');
    const fresh = await login(h.fetch, 'gina', 'pw-gina');
    const token = fresh.finish?.json.token;
    expect((await call(h.fetch, 'DELETE', '/v1/account', undefined, token)).status).toBe(204);
    expect((await call(h.fetch, 'GET', '/v1/session', undefined, token)).status).toBe(401);
    expect((await call(h.fetch, 'GET', '/v1/session', undefined, a.token)).status).toBe(401);
    expect((await login(h.fetch, 'gina', 'pw-gina')).finish?.status).toBe(401);
    // The name is free again.
    await signup(h.fetch, 'gina', 'new owner');
  });

  it('refuses missing, malformed and expired tokens', async () => {
    const a = await signup(h.fetch, 'hank', 'pw-hank');
    for (const auth of [
      undefined,
      'Bearer',
      `Bearer ${'A'.repeat(43)}`,
      `Basic ${a.token}`,
      a.token,
    ]) {
      const r = await h.fetch('/v1/session', auth ? { headers: { authorization: auth } } : {});
      expect(r.status).toBe(401);
      expect((await r.json()).error.code).toBe('UNAUTHENTICATED');
    }
    h.clock.now += 31 * 24 * 60 * 60 * 1000;
    expect((await call(h.fetch, 'GET', '/v1/session', undefined, a.token)).status).toBe(401);
  });
});

describe.each(dialects)('signup rate limits (%s)', (dialect) => {
  let h: Harness;
  beforeAll(async () => {
    h = await createHarness(dialect, 'signuplimit', { signupLimits: SIGNUP_LIMITS });
  });
  afterAll(() => h.dispose());

  const start = async (username: unknown) => {
    await opaque.ready;
    const { registrationRequest } = opaque.client.startRegistration({ password: 'x' });
    return call(h.fetch, 'POST', '/v1/signup/start', { username, registrationRequest });
  };

  it('limits signup/start per address: a taken name cannot be probed beyond 30 an hour', async () => {
    h.address.value = '203.0.113.10';
    await signup(h.fetch, 'target', 'pw');
    // The signup above used one start; malformed calls count too.
    expect((await start(7)).status).toBe(400);
    for (let i = 2; i < SIGNUP_STARTS_PER_ADDRESS; i++)
      expect((await start(`probe${i}`)).status).toBe(200);
    const limited = await start('target');
    expect(limited.status).toBe(429);
    expect(limited.json.error.code).toBe('RATE_LIMITED');
    expect(limited.headers.get('retry-after')).toBe(String(SIGNUP_WINDOW_MS / 1000));
    // Another address is counted on its own.
    h.address.value = '203.0.113.11';
    expect((await start('target')).status).toBe(409);
    // The window ends.
    h.address.value = '203.0.113.10';
    h.clock.now += SIGNUP_WINDOW_MS;
    expect((await start('target')).status).toBe(409);
  });

  it('limits signup/finish (accounts made) per address to 10 an hour', async () => {
    h.address.value = '203.0.113.20';
    for (let i = 0; i < SIGNUP_FINISHES_PER_ADDRESS; i++) await signup(h.fetch, `many${i}`, 'pw');
    await expect(signup(h.fetch, 'one-more', 'pw')).rejects.toThrow(
      /signup\/finish 429 .*RATE_LIMITED/,
    );
    h.address.value = '203.0.113.21';
    await signup(h.fetch, 'one-more', 'pw');
  });
});
