// The network layer against a scripted fetch (no server needed to check the error mapping).
import { describe, expect, it } from 'vitest';
import { SdkError, type SdkErrorCode } from '../src/index.js';
import { createTransport, type FetchLike, MAX_RESPONSE_BYTES } from '../src/transport.js';

const op = 'test.op';

function answer(status: number, body?: unknown, headers: Record<string, string> = {}): FetchLike {
  return async () =>
    new Response(
      body === undefined ? null : typeof body === 'string' ? body : JSON.stringify(body),
      {
        status,
        headers: { 'content-type': 'application/json', ...headers },
      },
    );
}

async function failure(
  fetch: FetchLike,
  options: { signal?: AbortSignal; timeoutMs?: number } = {},
) {
  const t = createTransport({
    server: 'https://coffer.example',
    fetch,
    ...(options.timeoutMs ? { timeoutMs: options.timeoutMs } : {}),
  });
  const err = await t
    .request('GET', '/v1/x', {
      operation: op,
      ...(options.signal ? { signal: options.signal } : {}),
    })
    .then(
      () => undefined,
      (e: unknown) => e,
    );
  if (!SdkError.is(err)) throw new Error(`expected an SdkError, got ${String(err)}`);
  return err;
}

describe('transport', () => {
  it('sends JSON with the bearer token to the right URL, keeping a path prefix', async () => {
    let seen: { url: string; init: RequestInit } | undefined;
    const t = createTransport({
      server: 'https://coffer.example/api',
      fetch: async (url, init) => {
        seen = { url, init };
        return new Response(JSON.stringify({ ok: 1 }), { status: 200 });
      },
    });
    const res = await t.request('POST', '/v1/links', {
      operation: op,
      token: 'tok',
      body: { a: 1 },
    });
    expect(res).toEqual({ ok: 1 });
    expect(seen?.url).toBe('https://coffer.example/api/v1/links');
    const headers = seen?.init.headers as Record<string, string>;
    expect(headers.authorization).toBe('Bearer tok');
    expect(headers['content-type']).toBe('application/json');
    expect(seen?.init.body).toBe('{"a":1}');
    expect(seen?.init.method).toBe('POST');
  });

  it('returns undefined for 204', async () => {
    const t = createTransport({ server: 'http://localhost:1', fetch: answer(204) });
    expect(await t.request('POST', '/v1/logout', { operation: op })).toBeUndefined();
  });

  const table: [string, number, SdkErrorCode][] = [
    ['BAD_REQUEST', 400, 'INVALID_ARGUMENT'],
    ['INVALID_USERNAME', 400, 'INVALID_USERNAME'],
    ['UNAUTHENTICATED', 401, 'NOT_LOGGED_IN'],
    ['INVALID_CREDENTIALS', 401, 'INVALID_CREDENTIALS'],
    ['REAUTH_REQUIRED', 403, 'REAUTH_REQUIRED'],
    ['FORBIDDEN', 403, 'REAUTH_REQUIRED'],
    ['NOT_FOUND', 404, 'NOT_FOUND'],
    ['USERNAME_TAKEN', 409, 'USERNAME_TAKEN'],
    ['MANIFEST_CONFLICT', 409, 'CONFLICT'],
    ['CONFLICT', 409, 'CONFLICT'],
    ['EPOCH_CONFLICT', 409, 'CONFLICT'],
    ['QUEUE_FULL', 409, 'CONFLICT'],
    ['PAYLOAD_TOO_LARGE', 413, 'INVALID_ARGUMENT'],
    ['UNSUPPORTED_MEDIA_TYPE', 415, 'INVALID_ARGUMENT'],
    ['INVALID_MANIFEST', 422, 'PROTOCOL_VIOLATION'],
    ['RATE_LIMITED', 429, 'RATE_LIMITED'],
    ['INTERNAL', 500, 'SERVER_ERROR'],
    ['UNAVAILABLE', 503, 'SERVER_ERROR'],
  ];
  it.each(table)('maps %s (%i) to %s', async (serverCode, status, code) => {
    const secret = 'hunter2-token-secret';
    const err = await failure(answer(status, { error: { code: serverCode, message: secret } }));
    expect(err.code).toBe(code);
    expect(err.serverCode).toBe(serverCode);
    expect(err.status).toBe(status);
    expect(err.operation).toBe(op);
    // The server's message is never repeated.
    expect(err.message).not.toContain(secret);
  });

  it('does not ask for the password again when the server says FORBIDDEN', async () => {
    const forbidden = await failure(answer(403, { error: { code: 'FORBIDDEN', message: '' } }));
    expect(forbidden.message).toMatch(/does not allow this device/);
    expect(forbidden.message).not.toMatch(/password/);
    const reauth = await failure(answer(403, { error: { code: 'REAUTH_REQUIRED', message: '' } }));
    expect(reauth.message).toMatch(/password again/);
  });

  it('reads retry-after for RATE_LIMITED and marks it retryable', async () => {
    const err = await failure(
      answer(429, { error: { code: 'RATE_LIMITED', message: '' } }, { 'retry-after': '17' }),
    );
    expect(err.code).toBe('RATE_LIMITED');
    expect(err.retryAfter).toBe(17);
    expect(err.retryable).toBe(true);
  });

  it('marks 503 retryable and 500 not', async () => {
    expect((await failure(answer(503, { error: { code: 'UNAVAILABLE' } }))).retryable).toBe(true);
    expect((await failure(answer(500, { error: { code: 'INTERNAL' } }))).retryable).toBe(false);
  });

  it('maps answers without a JSON error by status', async () => {
    expect((await failure(answer(502, '<html>bad gateway</html>'))).code).toBe('SERVER_ERROR');
    expect((await failure(answer(429, 'slow down'))).code).toBe('RATE_LIMITED');
    expect((await failure(answer(418, 'teapot'))).code).toBe('PROTOCOL_VIOLATION');
    expect((await failure(answer(409, { error: { code: 'SOMETHING_NEW' } }))).code).toBe(
      'PROTOCOL_VIOLATION',
    );
  });

  it('refuses success answers that are not a JSON object', async () => {
    expect((await failure(answer(200, 'not json'))).code).toBe('PROTOCOL_VIOLATION');
    expect((await failure(answer(200, [1, 2]))).code).toBe('PROTOCOL_VIOLATION');
    expect(
      (await failure(answer(200, 'x', { 'content-length': String(MAX_RESPONSE_BYTES + 1) }))).code,
    ).toBe('PROTOCOL_VIOLATION');
  });

  it('maps an unreachable server to NETWORK (retryable)', async () => {
    const err = await failure(async () => {
      throw new TypeError('fetch failed');
    });
    expect(err.code).toBe('NETWORK');
    expect(err.retryable).toBe(true);
  });

  it('times out as NETWORK and aborts as ABORTED', async () => {
    const hang: FetchLike = (_url, init) =>
      new Promise((_resolve, reject) => {
        init.signal?.addEventListener('abort', () => reject(init.signal?.reason));
      });
    const timedOut = await failure(hang, { timeoutMs: 20 });
    expect(timedOut.code).toBe('NETWORK');
    expect(timedOut.message).toContain('20 ms');
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 10);
    expect((await failure(hang, { signal: controller.signal })).code).toBe('ABORTED');
  });

  it('refuses server URLs that are not plain http(s) base URLs', () => {
    for (const server of ['ftp://x', 'not a url', 'https://u:p@x', 'https://x/?q=1']) {
      expect(() => createTransport({ server })).toThrow(SdkError);
    }
  });
});
