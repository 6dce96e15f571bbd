// A device that adds itself to the account (a password login on a new home, a recovery) uploads
// a manifest listing its new key. If the home cannot record that key once the upload went
// through (a crash, a full disk), the account must not be left listing a device whose key no
// one holds: the key is on the home before the manifest that lists it leaves it.
import { randomBytes } from '@coffer/crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FetchLike, type LocalStore, memoryStore, SdkError } from '../src/index.js';
import { type TestServer, testClient, testServer, username } from './_server.js';

let server: TestServer;
beforeAll(async () => {
  server = await testServer();
});
afterAll(async () => {
  await server?.close();
});

/**
 * A home whose first write of an account record after the manifest upload `uploads` names
 * fails, as a crash right after the upload would leave it.
 */
function failingHome(uploads: (method: string, path: string) => boolean) {
  const inner = memoryStore();
  let armed = false;
  const store: LocalStore = {
    get: (name) => inner.get(name),
    delete: (name) => inner.delete(name),
    async put(name, value) {
      if (armed && name.startsWith('account/')) {
        armed = false;
        throw new SdkError('STORE_UNAVAILABLE', 'test.put', 'disk full (test)');
      }
      await inner.put(name, value);
    },
  };
  const fetch: FetchLike = async (url, init) => {
    const res = await server.fetch(url, init);
    if (res.ok && uploads(init.method ?? 'GET', new URL(url).pathname)) armed = true;
    return res;
  };
  return { store, storeKey: randomBytes(32), fetch };
}

describe('a new device key is stored before the manifest listing it is uploaded', () => {
  it('login: a failed write after the upload leaves no device without its key', async () => {
    const name = username('crash');
    const first = await testClient(server);
    await first.signup(name, 'pw', { deviceName: 'first' });

    const home = failingHome((method, path) => method === 'PUT' && path === '/v1/manifest');
    const broken = await testClient(server, home);
    await expect(broken.login(name, 'pw', { deviceName: 'second' })).rejects.toSatisfy(
      (err: unknown) => SdkError.is(err, 'STORE_UNAVAILABLE'),
    );
    await broken.close();

    // The same home, after the "crash": logging in again is the device the account lists.
    const again = await testClient(server, { store: home.store, storeKey: home.storeKey });
    const me = await again.login(name, 'pw', { deviceName: 'second' });
    const devices = await first.devices.list();
    expect(devices.map((d) => d.name).sort()).toEqual(['first', 'second']);
    expect(devices.find((d) => d.name === 'second')?.id).toBe(me.deviceId);
    // And it is usable: it changes the manifest with its own key.
    await again.devices.rename(me.deviceId, 'second again');
    expect((await first.devices.list()).map((d) => d.name).sort()).toEqual([
      'first',
      'second again',
    ]);
    for (const c of [first, again]) await c.close();
  });

  it('recover: a failed write after the upload leaves no device without its key', async () => {
    const name = username('crash');
    const first = await testClient(server);
    const { recoveryCode } = await first.signup(name, 'pw', { deviceName: 'first' });

    const home = failingHome((method, path) => method === 'POST' && path === '/v1/password/finish');
    const broken = await testClient(server, home);
    await expect(
      broken.recover(name, recoveryCode, 'new pw', { deviceName: 'second' }),
    ).rejects.toSatisfy((err: unknown) => SdkError.is(err, 'STORE_UNAVAILABLE'));
    await broken.close();

    const again = await testClient(server, { store: home.store, storeKey: home.storeKey });
    const me = await again.login(name, 'new pw', { deviceName: 'second' });
    const devices = await first.devices.list();
    expect(devices.map((d) => d.name).sort()).toEqual(['first', 'second']);
    expect(devices.find((d) => d.name === 'second')?.id).toBe(me.deviceId);
    for (const c of [first, again]) await c.close();
  });
});
