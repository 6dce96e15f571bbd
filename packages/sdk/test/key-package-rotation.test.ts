// MLS key packages expire (ts-mls gives them a lifetime of about 15 days) and an expired one
// cannot be added to a group: a device replaces all of its packages on the server every week,
// so that it can be added however long it has been signed up. The clock is faked (Date only).
import { afterAll, afterEach, beforeAll, describe, expect, test, vi } from 'vitest';
import { KEY_PACKAGE_ROTATE_MS, SdkError } from '../src/index.js';
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
});
