// Lifecycle and argument checks, with a memory store and a scripted fetch (no server needed).
import { randomBytes } from '@coffer/crypto';
import { generateLinkCode } from '@coffer/protocol';
import { describe, expect, it } from 'vitest';
import {
  type ClientOptions,
  createClient,
  type FetchLike,
  memoryStore,
  SdkError,
  type SdkErrorCode,
} from '../src/index.js';
import { FAST_HASHING } from './_server.js';

const never: FetchLike = async () => {
  throw new Error('no request expected');
};

function client(overrides: Partial<ClientOptions> = {}) {
  return createClient({
    server: 'http://coffer.test',
    store: memoryStore(),
    storeKey: randomBytes(32),
    fetch: never,
    opaque: { keyStretching: FAST_HASHING },
    ...overrides,
  });
}

function code(c: SdkErrorCode) {
  return (err: unknown) => {
    if (!SdkError.is(err, c)) throw err;
    return true;
  };
}

describe('lifecycle', () => {
  it('stopped → ready → closed, and NOT_READY outside ready', async () => {
    const c = client();
    expect(c.state).toBe('stopped');
    await expect(c.whoami()).rejects.toSatisfy(code('NOT_READY'));
    await expect(c.devices.list()).rejects.toSatisfy(code('NOT_READY'));
    await c.open();
    expect(c.state).toBe('ready');
    await c.open(); // no-op while ready
    expect(await c.whoami()).toBeUndefined();
    await expect(c.devices.list()).rejects.toSatisfy(code('NOT_LOGGED_IN'));
    await expect(c.logout()).rejects.toSatisfy(code('NOT_LOGGED_IN'));
    await expect(c.deleteAccount('pw')).rejects.toSatisfy(code('NOT_LOGGED_IN'));
    await expect(c.devices.startLink()).rejects.toSatisfy(code('NOT_LOGGED_IN'));
    await c.close();
    expect(c.state).toBe('closed');
    await c.close(); // idempotent
    await expect(c.whoami()).rejects.toSatisfy(code('NOT_READY'));
    await expect(c.open()).rejects.toSatisfy(code('NOT_READY'));
  });

  it('refuses bad options loudly', () => {
    const bad: Partial<ClientOptions>[] = [
      { storeKey: randomBytes(16) },
      { server: 'coffer.test' },
      { store: {} as never },
      { opaque: { keyStretching: { 'argon2id-custom': { memory: 0 } } as never } },
      { now: 5 as never },
    ];
    for (const b of bad) expect(() => client(b)).toThrow(SdkError);
  });

  it('fails open() with STORE_CORRUPT for a store written under another key', async () => {
    const store = memoryStore();
    await store.put('session', randomBytes(80));
    const c = client({ store });
    await expect(c.open()).rejects.toSatisfy(code('STORE_CORRUPT'));
    expect(c.state).toBe('stopped');
  });

  it('checks arguments before any request', async () => {
    const c = client();
    await c.open();
    await expect(c.signup('x', 'pw')).rejects.toSatisfy(code('INVALID_USERNAME'));
    await expect(c.signup('alice', '')).rejects.toSatisfy(code('INVALID_ARGUMENT'));
    await expect(c.login('alice', 'pw', { deviceName: 'x'.repeat(65) })).rejects.toSatisfy(
      code('INVALID_ARGUMENT'),
    );
    await expect(c.login('alice', 'pw', { deviceName: 'a\u0007b' })).rejects.toSatisfy(
      code('INVALID_ARGUMENT'),
    );
    await expect(c.recover('alice', 'not-a-code', 'pw')).rejects.toSatisfy(
      code('INVALID_RECOVERY_CODE'),
    );
    await expect(c.devices.joinByLink('1234')).rejects.toSatisfy(code('INVALID_LINK_CODE'));
  });

  it('reports an unreachable server as NETWORK', async () => {
    const c = client({
      fetch: async () => {
        throw new TypeError('fetch failed');
      },
    });
    await c.open();
    const err = await c.signup('alice', 'pw').catch((e: unknown) => e);
    expect(SdkError.is(err, 'NETWORK')).toBe(true);
    expect((err as SdkError).retryable).toBe(true);
    expect((err as SdkError).operation).toBe('client.signup');
  });

  it('close() ends a pending joinByLink with NOT_READY; a signal with ABORTED', async () => {
    const waiting: FetchLike = async (url) =>
      url.endsWith('/request')
        ? new Response(null, { status: 204 })
        : new Response(JSON.stringify({ status: 'waiting' }), { status: 200 });
    const c = client({ fetch: waiting });
    await c.open();
    const pending = c.devices.joinByLink(generateLinkCode().text, { pollMs: 5 });
    await new Promise((r) => setTimeout(r, 30));
    await c.close();
    await expect(pending).rejects.toSatisfy(code('NOT_READY'));

    const d = client({ fetch: waiting });
    await d.open();
    const controller = new AbortController();
    const aborted = d.devices.joinByLink(generateLinkCode().qr, {
      pollMs: 5,
      signal: controller.signal,
    });
    setTimeout(() => controller.abort(), 20);
    await expect(aborted).rejects.toSatisfy(code('ABORTED'));
  });

  it('maps an unknown or expired link to LINK_EXPIRED and a used one to CONFLICT', async () => {
    const answer =
      (status: number, error: string): FetchLike =>
      async () =>
        new Response(JSON.stringify({ error: { code: error, message: '' } }), { status });
    const c = client({ fetch: answer(404, 'NOT_FOUND') });
    await c.open();
    await expect(c.devices.joinByLink(generateLinkCode().text)).rejects.toSatisfy(
      code('LINK_EXPIRED'),
    );
    const d = client({ fetch: answer(409, 'CONFLICT') });
    await d.open();
    await expect(d.devices.joinByLink(generateLinkCode().text)).rejects.toSatisfy(code('CONFLICT'));
  });
});
