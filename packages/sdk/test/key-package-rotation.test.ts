// MLS key packages expire (ts-mls gives them a lifetime of about 15 days) and an expired one
// cannot be added to a group: a device replaces all of its packages on the server every week,
// so that it can be added however long it has been signed up. The clock is faked (Date only).
import { randomBytes } from '@coffer/crypto';
import { afterAll, afterEach, beforeAll, describe, expect, test, vi } from 'vitest';
import { type FetchLike, KEY_PACKAGE_ROTATE_MS, memoryStore, SdkError } from '../src/index.js';
import { openLocalState } from '../src/local-state.js';
import { type TestServer, testClient, testServer, username } from './_server.js';

const DAY = 24 * 3600 * 1000;

let server: TestServer;
beforeAll(async () => {
  server = await testServer();
});
afterAll(async () => {
  await server.close();
});
afterEach(() => {
  vi.useRealTimers();
});

async function signup(prefix: string) {
  const name = username(prefix);
  const client = await testClient(server);
  await client.signup(name, `pw-${name}-long enough`);
  await client.conversations.sync();
  return { name, client };
}

describe('key packages over time', () => {
  test('a device that syncs now and then can be added weeks after it signed up', async () => {
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() });
    const alice = await signup('alice');
    const bob = await signup('bob');
    const carol = await signup('carol');
    // Three weeks, Bob syncing once a week: each time, his packages are older than a week.
    for (let week = 0; week < 3; week++) {
      vi.setSystemTime(Date.now() + KEY_PACKAGE_ROTATE_MS + DAY);
      await bob.client.conversations.sync();
    }
    // Every package Bob uploaded at signup has expired by now; the ones on the server are new.
    const chat = await alice.client.conversations.direct(bob.name);
    await bob.client.conversations.sync();
    await alice.client.conversations.send(chat.id, 'hello after three weeks');
    const events = await bob.client.conversations.sync();
    expect(events.flatMap((e) => (e.type === 'message' ? [e.message.text] : []))).toEqual([
      'hello after three weeks',
    ]);
    // Carol, who has not synced since she signed up, has only expired packages on the server:
    // she cannot be added yet (CONFLICT, as for a device with none), and nothing is kept.
    // Once she syncs, she can.
    const failed = await alice.client.conversations.direct(carol.name).catch((e) => e);
    expect(SdkError.is(failed, 'CONFLICT')).toBe(true);
    expect((await alice.client.conversations.list()).map((c) => c.id)).toEqual([chat.id]);
    await carol.client.conversations.sync();
    const withCarol = await alice.client.conversations.direct(carol.name);
    expect(withCarol.members.map((m) => m.username).sort()).toEqual(
      [alice.name, carol.name].sort(),
    );
  });

  test('a rotation whose upload fails sends the same packages again, and makes no more', async () => {
    let clock = Date.now();
    const uploads: string[][] = [];
    let failing = 2;
    const fetch: FetchLike = async (url, init) => {
      if (url.endsWith('/v1/key-packages') && init.method === 'POST') {
        uploads.push((JSON.parse(String(init.body)) as { keyPackages: string[] }).keyPackages);
        if (failing-- > 0) throw new TypeError('connection reset');
      }
      return server.fetch(url, init);
    };
    const name = username('bob');
    const bob = await testClient({ fetch }, { now: () => clock });
    // Signup's first sync is a rotation (nothing rotated yet): its upload fails twice.
    await bob.signup(name, `pw-${name}-long enough`);
    for (let i = 0; i < 3; i++) {
      await bob.conversations.sync().catch(() => {});
      clock += 61_000;
    }
    expect(uploads).toHaveLength(3);
    expect(uploads[1]).toEqual(uploads[0]);
    expect(uploads[2]).toEqual(uploads[0]);
    await bob.conversations.sync();
    expect(uploads).toHaveLength(3);
  });

  test('packages stored before their times were kept are kept, for the Welcomes waiting', async () => {
    const store = memoryStore();
    const storeKey = randomBytes(32);
    const name = username('bob');
    const bob = await testClient(server, { store, storeKey: storeKey.slice() });
    const { account } = await bob.signup(name, `pw-${name}-long enough`);
    await bob.conversations.sync();
    await bob.close();
    // As an older SDK stored them: no times, no rotation.
    const state = await openLocalState(store, storeKey.slice());
    const kps = (await state.readRecord(`kps/${account.accountId}`)) as {
      packages: Record<string, unknown>[];
    };
    await state.writeRecord(`kps/${account.accountId}`, {
      packages: kps.packages.map(({ at: _at, ...p }) => p),
    });
    // A Welcome for one of them is waiting when the upgraded client syncs (and rotates).
    const alice = await signup('alice');
    await alice.client.conversations.direct(name);
    const again = await testClient(server, { store, storeKey: storeKey.slice() });
    const events = await again.conversations.sync();
    expect(events.flatMap((e) => (e.type === 'error' ? [e.error.detail] : []))).toEqual([]);
    expect(events.map((e) => e.type)).toContain('joined');
  });
});
