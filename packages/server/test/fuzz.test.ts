// Property: whatever JSON (or not-JSON) arrives at any route, with any token, the answer is a
// 2xx or a 4xx with an error code, never a 5xx.
import { toBase64url } from '@coffer/crypto';
import { generateLinkCode, recoveryProof } from '@coffer/protocol';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OPENAPI_DOCUMENT } from '../src/openapi.js';
import { type Account, call, signup, wire } from './_client.js';
import { testDialects } from './_db.js';
import { createHarness, type Harness } from './_harness.js';

const dialects = await testDialects();

interface Route {
  readonly method: string;
  readonly path: string;
  readonly fields: readonly string[];
}

const routes: Route[] = Object.entries(OPENAPI_DOCUMENT.paths).flatMap(([path, item]) =>
  Object.entries(item).map(([method, op]) => {
    // JSON bodies only: the blob upload's raw bytes have no fields to fuzz (blobs.test.ts).
    const schema = (
      op as {
        requestBody?: { content: { 'application/json'?: { schema: { properties?: object } } } };
      }
    ).requestBody?.content['application/json']?.schema;
    return { method: method.toUpperCase(), path, fields: Object.keys(schema?.properties ?? {}) };
  }),
);

const bytesB64 = (lengths: number[]) =>
  fc
    .constantFrom(...lengths)
    .chain((n) => fc.uint8Array({ minLength: n, maxLength: n }).map(toBase64url));

describe.each(dialects)('fuzzing every route (%s)', (dialect) => {
  let h: Harness;
  let a: Account;
  let linkId: string;
  let recoveryToken: string;
  beforeAll(async () => {
    h = await createHarness(dialect, 'fuzz');
    a = await signup(h.fetch, 'fuzzy', 'pw');
    linkId = generateLinkCode().linkId;
    await call(h.fetch, 'POST', '/v1/links', { linkId }, a.token);
    const rec = await call(h.fetch, 'POST', '/v1/recover/start', {
      username: 'fuzzy',
      proof: toBase64url(await recoveryProof(a.recoveryCode)),
    });
    recoveryToken = rec.json.recoveryToken;
  });
  afterAll(() => h.dispose());

  it('never answers 5xx', async () => {
    const value: fc.Arbitrary<unknown> = fc.oneof(
      fc.jsonValue({ maxDepth: 3 }),
      fc.string({ maxLength: 40 }),
      bytesB64([0, 1, 16, 31, 32, 33, 64, 96, 128, 192, 300]),
      fc.constantFrom(
        'fuzzy',
        'FUZZY ',
        a.accountId,
        a.device.id,
        linkId,
        'ABCDEFGH',
        '',
        '\u0000',
      ),
      fc.constant(wire(a.manifest)),
      fc.record({ body: bytesB64([1, 40, 200]), signature: bytesB64([63, 64]) }),
      fc.constant({ body: wire(a.manifest).body, signature: 'A'.repeat(86) }),
    );
    const request = fc.record({
      route: fc.constantFrom(...routes),
      body: fc.oneof(
        { weight: 5, arbitrary: fc.constant(undefined) },
        { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)) },
        { weight: 1, arbitrary: fc.string({ maxLength: 60 }) },
      ),
      fieldValues: fc.array(fc.option(value, { nil: undefined }), { minLength: 8, maxLength: 8 }),
      extra: fc.dictionary(fc.string({ maxLength: 12 }), value, { maxKeys: 2 }),
      token: fc.constantFrom('none', 'session', 'recovery', 'garbage'),
      param: fc.constantFrom(
        linkId,
        a.accountId,
        'ABCDEFGH',
        'x',
        '%00',
        '..',
        'A'.repeat(300),
        '%F0%9F%98%80',
      ),
      query: fc.constantFrom('', '?after=0', '?after=-1', '?after=abc', '?after=4294967296'),
      contentType: fc.constantFrom(
        'application/json',
        'application/json; charset=utf-8',
        'text/plain',
      ),
    });
    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        const { route } = r;
        let body = r.body;
        if (body === undefined && route.fields.length > 0) {
          const obj: Record<string, unknown> = { ...r.extra };
          route.fields.forEach((f, i) => {
            if (r.fieldValues[i] !== undefined) obj[f] = r.fieldValues[i];
          });
          body = JSON.stringify(obj);
        }
        // Tokens that would end the fixture's session or account are only sent as garbage.
        const destructive = route.path === '/v1/account' || route.path === '/v1/logout';
        const token =
          r.token === 'session' && !destructive
            ? a.token
            : r.token === 'recovery' && !route.path.startsWith('/v1/password')
              ? recoveryToken
              : r.token === 'garbage'
                ? 'A'.repeat(43)
                : undefined;
        const path =
          route.path.replace(/\{[A-Za-z]+\}/, r.param) + (route.method === 'GET' ? r.query : '');
        const headers: Record<string, string> = {};
        if (token) headers.authorization = `Bearer ${token}`;
        if (body !== undefined) headers['content-type'] = r.contentType;
        const res = await h.fetch(path, {
          method: route.method,
          headers,
          ...(body !== undefined && route.method !== 'GET' ? { body } : {}),
        });
        const text = await res.text();
        expect(res.status, `${route.method} ${path} ${body} -> ${text}`).toBeLessThan(500);
        if (res.status >= 400) expect(JSON.parse(text).error.code).toMatch(/^[A-Z_]+$/);
      }),
      { numRuns: dialect === 'sqlite' ? 400 : 150 },
    );
    // The fixture still works: nothing random broke the account.
    expect((await call(h.fetch, 'GET', '/v1/session', undefined, a.token)).status).toBe(200);
  });
});
