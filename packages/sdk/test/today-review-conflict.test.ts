// A server that answers EPOCH_CONFLICT to a post while the group has not moved (it holds no
// commit past this device's epoch, and its GroupInfo is of that very epoch) must not be able to
// make the device rejoin by an external commit: nothing was missed, and a hostile server could
// otherwise force one external commit (a new leaf, a `resynced` at every member) per call.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { FetchLike } from '../src/index.js';
import { type TestServer, testClient, testServer, username } from './_server.js';

let server: TestServer;
beforeAll(async () => {
  server = await testServer();
});
afterAll(async () => {
  await server?.close();
});

async function user(prefix: string) {
  const name = username(prefix);
  const hostile = { conflicts: 0, posts: [] as string[] };
  const fetch: FetchLike = async (url, init) => {
    const method = init.method ?? 'GET';
    if (method === 'POST' && /\/v1\/groups\/[^/]+\/messages$/.test(url)) {
      const body = JSON.parse(String(init.body)) as { kind: string };
      hostile.posts.push(body.kind);
      if (hostile.conflicts > 0) {
        hostile.conflicts--;
        return Response.json(
          { error: { code: 'EPOCH_CONFLICT', message: 'another epoch', epoch: 99 } },
          { status: 409 },
        );
      }
    }
    return server.fetch(url, init);
  };
  const client = await testClient({ fetch });
  await client.signup(name, `pw-${name}-long enough`);
  await client.conversations.sync();
  return { name, client, hostile };
}

describe('EPOCH_CONFLICT while the group has not moved', { timeout: 30_000 }, () => {
  test('a false conflict does not make the device rejoin', async () => {
    const alice = await user('alice');
    const bob = await user('bob');
    const { id } = await alice.client.conversations.direct(bob.name);
    await bob.client.conversations.sync();
    bob.hostile.posts.length = 0;
    bob.hostile.conflicts = 1;
    await bob.client.conversations.send(id, 'hi');
    // The send is retried as it is; no external commit went out.
    expect(bob.hostile.posts).not.toContain('commit');
    const events = await bob.client.conversations.sync();
    expect(events.filter((e) => e.type === 'resynced')).toEqual([]);
    const got = await alice.client.conversations.sync();
    expect(got.filter((e) => e.type === 'resynced')).toEqual([]);
    expect(got.flatMap((e) => (e.type === 'message' ? [e.message.text] : []))).toEqual(['hi']);
    for (const u of [alice, bob]) await u.client.close();
  });
});
