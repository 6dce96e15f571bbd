// Conventions every route shares: security headers, body limits, JSON only, error bodies, request
// ids, 404, 500 without detail, 503 when the database is gone.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../src/app.js';
import { createLogger } from '../src/logger.js';
import { createMetrics } from '../src/metrics.js';
import type { Storage } from '../src/storage/types.js';
import { call, signup } from './_client.js';
import { createHarness, type Harness } from './_harness.js';

const SECURITY = {
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
  'content-security-policy': "default-src 'none'; frame-ancestors 'none'",
};

describe('http conventions', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await createHarness('sqlite', 'conventions');
  });
  afterAll(() => h.dispose());

  it('sets the security headers on every response', async () => {
    const a = await signup(h.fetch, 'ivy', 'pw');
    const responses = [
      await h.fetch('/healthz'),
      await h.fetch('/nope'),
      await h.fetch('/v1/session', { headers: { authorization: `Bearer ${a.token}` } }),
      await h.fetch('/v1/signup/start', {
        method: 'POST',
        body: 'x',
        headers: { 'content-type': 'text/plain' },
      }),
      await h.fetch('/metrics'),
    ];
    for (const res of responses) {
      for (const [name, value] of Object.entries(SECURITY))
        expect(res.headers.get(name), name).toBe(value);
      expect(res.headers.get('strict-transport-security')).toBeNull();
      expect(res.headers.get('x-request-id')).toMatch(/^[A-Za-z0-9_-]{16}$/);
    }
  });

  it('answers 404 NOT_FOUND for unknown routes and methods', async () => {
    for (const [method, path] of [
      ['GET', '/v2/x'],
      ['DELETE', '/v1/session'],
      ['GET', '/'],
    ]) {
      const r = await call(h.fetch, method!, path!);
      expect(r.status).toBe(404);
      expect(r.json).toEqual({ error: { code: 'NOT_FOUND', message: 'not found' } });
    }
  });

  it('refuses bodies over 256 KiB with 413, declared or streamed', async () => {
    const big = JSON.stringify({ username: 'x'.repeat(256 * 1024) });
    const declared = await h.fetch('/v1/signup/start', {
      method: 'POST',
      body: big,
      headers: { 'content-type': 'application/json', 'content-length': String(big.length) },
    });
    expect(declared.status).toBe(413);
    expect((await declared.json()).error.code).toBe('PAYLOAD_TOO_LARGE');
    const chunk = new Uint8Array(64 * 1024).fill(0x20);
    const streamed = await h.fetch('/v1/signup/start', {
      method: 'POST',
      body: new ReadableStream({
        start(controller) {
          for (let i = 0; i < 5; i++) controller.enqueue(chunk);
          controller.close();
        },
      }),
      headers: { 'content-type': 'application/json' },
      duplex: 'half',
    } as RequestInit);
    expect(streamed.status).toBe(413);
    // Exactly at the limit is fine as far as size goes (it is not valid JSON for this route).
    const at = await h.fetch('/v1/signup/start', {
      method: 'POST',
      body: `"${'x'.repeat(256 * 1024 - 2)}"`,
      headers: { 'content-type': 'application/json' },
    });
    expect(at.status).toBe(400);
  });

  it('refuses non-JSON bodies with 415 and malformed JSON with 400', async () => {
    for (const type of [
      'text/plain',
      'application/x-www-form-urlencoded',
      'application/json; charset=latin1',
      undefined,
    ]) {
      const r = await h.fetch('/v1/signup/start', {
        method: 'POST',
        body: '{"username":"x"}',
        headers: type ? { 'content-type': type } : {},
      });
      expect(r.status, String(type)).toBe(415);
      expect((await r.json()).error.code).toBe('UNSUPPORTED_MEDIA_TYPE');
    }
    for (const body of ['{', '[]', '"x"', 'null', '12', '{"a":1}x', '\ufeff{}', '']) {
      const r = await h.fetch('/v1/login/start', {
        method: 'POST',
        body,
        headers: { 'content-type': 'application/json; charset=UTF-8' },
      });
      expect(r.status, body).toBe(400);
      expect((await r.json()).error.code).toBe('BAD_REQUEST');
    }
    const invalidUtf8 = await h.fetch('/v1/login/start', {
      method: 'POST',
      body: new Uint8Array([0x7b, 0xff, 0x7d]),
      headers: { 'content-type': 'application/json' },
    });
    expect(invalidUtf8.status).toBe(400);
  });

  it('names the bad field without echoing its value', async () => {
    const r = await call(h.fetch, 'POST', '/v1/login/start', {
      username: 'valid-name',
      startLoginRequest: 'SECRET-LOOKING-VALUE',
    });
    expect(r.status).toBe(400);
    expect(r.json.error.message).toBe('"startLoginRequest" expected b64url of 96 bytes');
    expect(r.text).not.toContain('SECRET-LOOKING-VALUE');
    expect(r.text).not.toContain('valid-name');
  });

  it('keeps a harmless caller request id and replaces others', async () => {
    const kept = await h.fetch('/healthz', { headers: { 'x-request-id': 'trace-1234.abc' } });
    expect(kept.headers.get('x-request-id')).toBe('trace-1234.abc');
    const replaced = await h.fetch('/healthz', {
      headers: { 'x-request-id': 'evil\u0001 <script>' },
    });
    expect(replaced.headers.get('x-request-id')).not.toContain('evil');
  });

  it('counts requests by route pattern in /metrics', async () => {
    await h.fetch('/v1/links/ABCDEFGH/request', { method: 'PUT' });
    const text = await (await h.fetch('/metrics')).text();
    expect(text).toContain(
      'http_requests_total{route="/v1/links/:linkId/request",method="PUT",status="400"}',
    );
    expect(text).toContain('http_request_duration_seconds_bucket{le="0.001",route="/healthz"');
    expect(text).toContain('route="unmatched"');
    expect(text).not.toContain('ABCDEFGH');
  });

  it('answers 500 INTERNAL with no detail, logging the stack but no body', async () => {
    const logs: string[] = [];
    const broken = {
      ...h.storage,
      accounts: {
        ...h.storage.accounts,
        usernameTaken: async () => {
          throw new TypeError('exploded while holding something');
        },
      },
    } as Storage;
    const app = createApp({
      storage: broken,
      ...h.secrets,
      logger: createLogger({
        level: 'info',
        destination: { write: (l: string) => void logs.push(l) },
      }),
      metrics: createMetrics({ processMetrics: false }),
    });
    const res = await app.request('/v1/signup/start', {
      method: 'POST',
      body: JSON.stringify({ username: 'kim-secret', registrationRequest: 'A'.repeat(43) }),
      headers: { 'content-type': 'application/json' },
    });
    expect(res.status).toBe(500);
    expect(await res.text()).toBe('{"error":{"code":"INTERNAL","message":"internal error"}}');
    const text = logs.join('');
    expect(text).toContain('exploded while holding something');
    expect(text).toContain('"stack"');
    expect(text).toContain('"route":"/v1/signup/start"');
    expect(text).not.toContain('kim-secret');
    expect(text).not.toContain('A'.repeat(43));
  });

  it('answers 503 UNAVAILABLE from /healthz when the database is gone', async () => {
    const other = await createHarness('sqlite', 'gone');
    await other.storage.close();
    const r = await call(other.fetch, 'GET', '/healthz');
    expect(r.status).toBe(503);
    expect(r.json.error.code).toBe('UNAVAILABLE');
    await other.db.dispose();
  });
});
