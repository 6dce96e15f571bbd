// The conversation key (which seals the GroupInfo the server keeps for resync) changes with every
// removal (conversation-v1 §4.6): a removed member keeps only the old key and cannot open what is
// sealed after it left, while everyone still in derives the new key alike and can still resync.
import { decrypt, fromBase64url, importAeadKey, randomBytes, utf8Encode } from '@coffer/crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  type CofferClient,
  type ConversationEvent,
  type FetchLike,
  memoryStore,
} from '../src/index.js';
import { openLocalState } from '../src/local-state.js';
import { type TestServer, testClient, testServer, username } from './_server.js';

let server: TestServer;
beforeAll(async () => {
  server = await testServer();
});
afterAll(async () => {
  await server.close();
});

interface User {
  name: string;
  client: CofferClient;
  /** The conversation key this device holds for `groupId` (read from its local store). */
  key(groupId: string): Promise<Uint8Array | undefined>;
  /** Sealed GroupInfos this device posted with its commits, in order. */
  posted: Uint8Array[];
  /** While set, queue entries of this kind are kept from the device, and stay kept for good. */
  withhold: { kind: string | undefined };
}

async function signup(prefix: string): Promise<User> {
  const name = username(prefix);
  const store = memoryStore();
  const storeKey = randomBytes(32);
  const posted: Uint8Array[] = [];
  const withhold: { kind: string | undefined } = { kind: undefined };
  const kept = new Set<number>();
  const fetch: FetchLike = async (url, init) => {
    const path = new URL(url).pathname;
    if (init.method === 'POST' && /^\/v1\/groups\/[^/]+\/messages$/.test(path)) {
      const body = JSON.parse(String(init.body)) as { groupInfo?: string };
      if (body.groupInfo) posted.push(fromBase64url(body.groupInfo));
    }
    const res = await server.fetch(url, init);
    if ((init.method ?? 'GET') !== 'GET' || !path.startsWith('/v1/queue') || res.status !== 200)
      return res;
    const page = (await res.json()) as { messages: { kind: string; seq: number }[] };
    for (const m of page.messages) if (m.kind === withhold.kind) kept.add(m.seq);
    page.messages = page.messages.filter((m) => !kept.has(m.seq));
    return new Response(JSON.stringify(page), { headers: { 'content-type': 'application/json' } });
  };
  const client = await testClient({ fetch }, { store, storeKey: storeKey.slice() });
  await client.signup(name, `pw-${name}-long enough`);
  await client.conversations.sync();
  const key = async (groupId: string) => {
    const record = await (await openLocalState(store, storeKey)).readRecord(`group/${groupId}`);
    return typeof record?.key === 'string' ? fromBase64url(record.key) : undefined;
  };
  return { name, client, key, posted, withhold };
}

async function opens(key: Uint8Array, sealed: Uint8Array, groupId: string): Promise<boolean> {
  const aead = await importAeadKey(key, { id: 'conversation' });
  return decrypt(aead, sealed, { context: utf8Encode(`coffer/v1/group-info/${groupId}`) }).then(
    () => true,
    () => false,
  );
}

const errors = (events: ConversationEvent[]) =>
  events.flatMap((e) => (e.type === 'error' ? [e.error.detail] : []));

describe('the conversation key', () => {
  test('changes with a removal: the removed cannot open what follows; the rest still resync', async () => {
    const alice = await signup('alice');
    const bob = await signup('bob');
    const carol = await signup('carol');
    const { id } = await alice.client.conversations.create({
      name: 'Keys',
      members: [bob.name, carol.name],
    });
    for (const u of [bob, carol]) await u.client.conversations.sync();
    const first = await alice.key(id);
    expect(first).toHaveLength(32);
    for (const u of [bob, carol]) expect(await u.key(id)).toEqual(first);

    // A commit that removes no one keeps the key.
    await alice.client.conversations.rename(id, 'Keys 2');
    for (const u of [bob, carol]) await u.client.conversations.sync();
    for (const u of [alice, bob, carol]) expect(await u.key(id)).toEqual(first);

    const carolId = (await alice.client.conversations.get(id)).members.find(
      (m) => m.username === carol.name,
    )!.accountId;
    await alice.client.conversations.remove(id, [carolId]);
    const sealed = alice.posted.at(-1)!;
    expect((await carol.client.conversations.sync()).map((e) => e.type)).toEqual(['removed']);
    await bob.client.conversations.sync();
    const second = await alice.key(id);
    expect(second).not.toEqual(first);
    expect(await bob.key(id)).toEqual(second);
    // Carol keeps the old key only: the GroupInfo sealed with her removal does not open for her.
    expect(await carol.key(id)).toEqual(first);
    expect(await opens(first!, sealed, id)).toBe(false);
    expect(await opens(second!, sealed, id)).toBe(true);

    // Bob misses the next commit and rejoins from the GroupInfo sealed under the new key.
    bob.withhold.kind = 'commit';
    await alice.client.conversations.rename(id, 'Keys 3');
    expect(await bob.client.conversations.sync()).toEqual([]);
    bob.withhold.kind = undefined;
    await alice.client.conversations.send(id, 'after the removal');
    const seen = await bob.client.conversations.sync();
    expect(seen.map((e) => e.type)).toEqual(['error', 'resynced']);
    expect(errors(await alice.client.conversations.sync())).toEqual([]);
    await alice.client.conversations.send(id, 'welcome back');
    const back = await bob.client.conversations.sync();
    expect(back.flatMap((e) => (e.type === 'message' ? [e.message.text] : []))).toEqual([
      'welcome back',
    ]);
  });
});
