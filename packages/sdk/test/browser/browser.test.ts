// The SDK in a real browser (headless Chromium): OPAQUE in WebAssembly, @coffer/crypto's web back
// end (WebCrypto + @noble), no Node API — against the real server, reached same-origin through the
// test server's proxy. Runs only in the `sdk:chromium` project.
import { randomBytes } from '@coffer/crypto';
import { describe, expect, test } from 'vitest';
import { createClient, type KeyStretching, memoryStore, SdkError } from '../../src/index.js';

const FAST_HASHING: KeyStretching = {
  'argon2id-custom': { memory: 8, iterations: 1, parallelism: 1 },
};

const unique = () => `web${Math.random().toString(36).slice(2, 10)}`;

function browserClient(store = memoryStore(), storeKey = randomBytes(32)) {
  return createClient({
    server: globalThis.location.origin,
    store,
    storeKey,
    opaque: { keyStretching: FAST_HASHING },
  });
}

describe('the SDK in a browser', () => {
  test('runs in a page, not in Node', () => {
    expect(typeof (globalThis as { document?: unknown }).document).toBe('object');
    expect(
      (globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node,
    ).toBeUndefined();
  });

  test('signup, second device by password, device list, wrong password', async () => {
    const username = unique();
    const first = browserClient();
    await first.open();
    const { account, recoveryCode } = await first.signup(username, 'correct horse', {
      deviceName: 'browser one',
    });
    expect(account.username).toBe(username);
    expect(recoveryCode).toMatch(/^([0-9A-Z]{4}-){7}[0-9A-Z]{4}$/);

    const second = browserClient();
    await second.open();
    const again = await second.login(username, 'correct horse', { deviceName: 'browser two' });
    expect(again.accountId).toBe(account.accountId);
    expect(again.deviceId).not.toBe(account.deviceId);
    const names = (await first.devices.list()).map((d) => d.name).sort();
    expect(names).toEqual(['browser one', 'browser two']);

    const third = browserClient();
    await third.open();
    const err = await third.login(username, 'wrong horse').catch((e: unknown) => e);
    expect(SdkError.is(err, 'INVALID_CREDENTIALS')).toBe(true);
    await Promise.all([first.close(), second.close(), third.close()]);
  });

  test('local state survives a reopen and is sealed under the store key', async () => {
    const store = memoryStore();
    const storeKey = randomBytes(32);
    const username = unique();
    const a = browserClient(store, storeKey);
    await a.open();
    await a.signup(username, 'pw in a browser');
    await a.close();
    const reopened = browserClient(store, storeKey);
    await reopened.open();
    expect((await reopened.whoami())?.username).toBe(username);
    await reopened.close();
    const wrongKey = browserClient(store, randomBytes(32));
    const err = await wrongKey.open().catch((e: unknown) => e);
    expect(SdkError.is(err, 'STORE_CORRUPT')).toBe(true);
  });
});
