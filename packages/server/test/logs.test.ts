// The log holds method, route pattern, status, duration and request id: never a username,
// password, token, OPAQUE message, manifest, backup or any other value of a request or response.
import { toBase64url } from '@coffer/crypto';
import { recoveryProof } from '@coffer/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, changePassword, login, signup } from './_client.js';
import { createHarness, type Fetcher, type Harness } from './_harness.js';

/** Every string inside a JSON value. */
function strings(value: unknown, out: Set<string>): void {
  if (typeof value === 'string') out.add(value);
  else if (Array.isArray(value)) for (const v of value) strings(v, out);
  else if (value && typeof value === 'object')
    for (const v of Object.values(value)) strings(v, out);
}

describe('logging policy', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await createHarness('sqlite', 'logs');
  });
  afterAll(() => h.dispose());

  it('never logs bodies, tokens, usernames or auth headers', async () => {
    const seen = new Set<string>();
    const recording: Fetcher = async (path, init) => {
      if (typeof init?.body === 'string') {
        try {
          strings(JSON.parse(init.body), seen);
        } catch {
          seen.add(init.body);
        }
      }
      const auth = new Headers(init?.headers).get('authorization');
      if (auth) seen.add(auth.slice(7));
      const res = await h.fetch(path, init);
      const text = await res.clone().text();
      try {
        strings(JSON.parse(text), seen);
      } catch {}
      return res;
    };
    const a = await signup(recording, 'Logged-Lemur', 'Password-Never-Logged');
    seen.add('Logged-Lemur');
    seen.add('Password-Never-Logged');
    await login(recording, 'logged-lemur', 'Password-Never-Logged');
    await login(recording, 'logged-lemur', 'Wrong-Password-Never-Logged');
    seen.add('Wrong-Password-Never-Logged');
    await login(recording, 'Unknown-Name-Never-Logged', 'x');
    await changePassword(recording, a, 'Second-Password-Never-Logged', a.token, {
      exportKey: a.exportKey,
    });
    seen.add('Second-Password-Never-Logged');
    await call(recording, 'POST', '/v1/recover/start', {
      username: 'logged-lemur',
      proof: toBase64url(await recoveryProof(a.recoveryCode)),
    });
    await call(recording, 'GET', `/v1/accounts/${a.accountId}/manifest`, undefined, a.token);
    await call(recording, 'POST', '/v1/signup/start', {
      username: 'Bad Name Never Logged',
      registrationRequest: 'x',
    });
    await call(recording, 'GET', '/v1/session', undefined, a.token);
    await h.fetch('/v1/session', { headers: { authorization: 'Bearer Header-Never-Logged' } });
    seen.add('Header-Never-Logged');

    const log = h.logs.join('');
    expect(h.logs.length).toBeGreaterThanOrEqual(15);
    // Only short, generic strings may coincide with log text (e.g. "ok", "waiting").
    const leaked = [...seen].filter((s) => s.length >= 8 && log.includes(s));
    expect(leaked).toEqual([]);
    for (const line of h.logs) {
      const entry = JSON.parse(line);
      if (entry.msg !== 'request') continue;
      expect(Object.keys(entry).sort()).toEqual([
        'level',
        'method',
        'ms',
        'msg',
        'reqId',
        'route',
        'status',
        'time',
      ]);
      expect(entry.route).not.toContain(a.accountId);
    }
    expect(log).toContain('"route":"/v1/accounts/:accountId/manifest"');
  });
});
