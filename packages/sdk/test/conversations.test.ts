// Conversations end to end over the real server (SQLite in memory): 1:1 and groups, every device
// of every member, the admin rules, leaving, renaming, and that the server only ever carries
// ciphertext.

import { randomBytes } from '@coffer/crypto';
import { isId } from '@coffer/protocol';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { WebSocket } from 'ws';
import { type CofferClient, type ConversationEvent, memoryStore, SdkError } from '../src/index.js';
import { openLocalState } from '../src/local-state.js';
import { type TestServer, tap, testClient, testServer, username } from './_server.js';

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
  accountId: string;
}

async function signup(
  prefix: string,
  fetch = server.fetch,
  overrides: Parameters<typeof testClient>[1] = {},
): Promise<User> {
  const name = username(prefix);
  const client = await testClient({ fetch }, overrides);
  const { account } = await client.signup(name, `pw-${name}-long enough`);
  await client.conversations.sync(); // uploads this device's key packages
  return { name, client, accountId: account.accountId };
}

/** A second device of `user`: a login on a fresh home. */
async function secondDevice(user: User): Promise<User> {
  const client = await testClient(server);
  await client.login(user.name, `pw-${user.name}-long enough`);
  await client.conversations.sync();
  return { ...user, client };
}

type SocketListener = (event: { data?: unknown; code?: unknown }) => void;

/**
 * A WebSocket class the test drives (the client's view of the server's event socket): every
 * socket the client makes is in `all`, and `emit` plays the server's side.
 */
function fakeSockets() {
  class FakeSocket {
    static all: FakeSocket[] = [];
    readonly listeners = new Map<string, SocketListener[]>();
    closed = false;
    constructor(readonly url: string) {
      FakeSocket.all.push(this);
    }
    send() {}
    close() {
      this.closed = true;
    }
    addEventListener(type: string, listener: SocketListener) {
      this.listeners.set(type, [...(this.listeners.get(type) ?? []), listener]);
    }
    emit(type: string, event: { data?: unknown; code?: unknown } = {}) {
      for (const l of this.listeners.get(type) ?? []) l(event);
    }
  }
  return Object.assign(FakeSocket, {
    asOption: FakeSocket as unknown as NonNullable<Parameters<typeof testClient>[1]>['webSocket'],
  });
}

const texts = (events: ConversationEvent[]) =>
  events.flatMap((e) => (e.type === 'message' ? [e.message.text] : []));

/**
 * A fetch to the test server that answers the next group post of one kind itself, once armed:
 * `answer` returns a response, or throws as a lost connection does.
 */
function interceptOnce() {
  let armed: { kind: string; answer: () => Response } | undefined;
  const fetch: typeof server.fetch = async (url, init) => {
    if (armed && url.includes('/messages') && String(init.body).includes(`"${armed.kind}"`)) {
      const { answer } = armed;
      armed = undefined;
      return answer();
    }
    return server.fetch(url, init);
  };
  return {
    fetch,
    arm(kind: 'welcome' | 'commit', answer: () => Response) {
      armed = { kind, answer };
    },
  };
}

const connectionReset = (): Response => {
  throw new TypeError('connection reset');
};

describe('conversations', () => {
  test('a 1:1 conversation: both directions, history, no duplicates', async () => {
    const alice = await signup('alice');
    const bob = await signup('bob');
    const chat = await alice.client.conversations.direct(bob.name);
    expect(chat.kind).toBe('direct');
    expect(chat.admins).toEqual([alice.accountId, bob.accountId].sort());
    expect(chat.members).toHaveLength(2);

    const sent = await alice.client.conversations.send(chat.id, 'hello bob');
    expect(sent.own).toBe(true);
    const got = await bob.client.conversations.sync();
    expect(got.map((e) => e.type)).toEqual(['joined', 'message']);
    const message = got[1]?.type === 'message' ? got[1].message : undefined;
    expect(message).toMatchObject({
      conversationId: chat.id,
      text: 'hello bob',
      own: false,
      sender: { accountId: alice.accountId },
    });
    await bob.client.conversations.send(chat.id, 'hi alice');
    expect(texts(await alice.client.conversations.sync())).toEqual(['hi alice']);
    // Nothing new: a second sync is empty (acknowledged entries are gone; seq dedupes the rest).
    expect(await alice.client.conversations.sync()).toEqual([]);
    expect((await bob.client.conversations.history(chat.id)).map((m) => m.text)).toEqual([
      'hello bob',
      'hi alice',
    ]);
    // Opening the 1:1 again finds the same conversation, from either side.
    expect((await alice.client.conversations.direct(bob.name)).id).toBe(chat.id);
    expect((await bob.client.conversations.direct(alice.accountId)).id).toBe(chat.id);
  });

  test('a direct conversation with a contact that cannot be added yet is not kept or reused', async () => {
    const alice = await signup('alice');
    // Bob has signed up but not synced: no key package on the server, nothing to add.
    const bobName = username('bob');
    const bob = await testClient(server);
    await bob.signup(bobName, `pw-${bobName}-long enough`);
    const failed = await alice.client.conversations.direct(bobName).catch((e) => e);
    expect(SdkError.is(failed, 'CONFLICT')).toBe(true);
    expect(await alice.client.conversations.list()).toEqual([]);
    // Once Bob's device is reachable, the conversation holds him and what is sent arrives.
    await bob.conversations.sync();
    const chat = await alice.client.conversations.direct(bobName);
    expect(chat.members.map((m) => m.username).sort()).toEqual([alice.name, bobName].sort());
    await alice.client.conversations.send(chat.id, 'hello');
    expect(texts(await bob.conversations.sync())).toEqual(['hello']);
    expect((await alice.client.conversations.list()).map((c) => c.id)).toEqual([chat.id]);
  });

  test("a creation refused by the server's hourly limit is a typed error, and nothing is kept", async () => {
    const tapped = interceptOnce();
    const alice = await signup('alice', tapped.fetch);
    const limited = () =>
      Response.json(
        { error: { code: 'RATE_LIMITED', message: 'too many attempts' } },
        { status: 429, headers: { 'retry-after': '120' } },
      );
    tapped.arm('commit', limited);
    const failed = await alice.client.conversations.create({ name: 'book club' }).catch((e) => e);
    expect(SdkError.is(failed, 'RATE_LIMITED')).toBe(true);
    expect(failed.retryAfter).toBe(120);
    expect(await alice.client.conversations.list()).toEqual([]);
    // Once the window ends, it is made as usual.
    const club = await alice.client.conversations.create({ name: 'book club' });
    expect((await alice.client.conversations.list()).map((c) => c.id)).toEqual([club.id]);
  });

  test('a username nobody has is NOT_FOUND that says so, for every call that takes users', async () => {
    const alice = await signup('alice');
    const team = await alice.client.conversations.create({ name: 'T' });
    const missing = username('nobody');
    for (const call of [
      () => alice.client.conversations.direct(missing),
      () => alice.client.conversations.create({ name: 'U', members: [missing] }),
      () => alice.client.conversations.add(team.id, [missing]),
    ]) {
      const err = await call().catch((e: unknown) => e);
      expect(SdkError.is(err, 'NOT_FOUND'), String(err)).toBe(true);
      expect((err as SdkError).message).toMatch(/no account by that username/);
      expect((err as SdkError).message).not.toContain(missing);
      expect((err as SdkError).status).toBe(404);
    }
  });

  test('a username that also reads as an account id is found as the username', async () => {
    // 22 characters of base64url ending in "g": the very shape of an account id.
    const name = `id-shaped-${Math.random().toString(36).slice(2, 13).padEnd(11, '0')}g`;
    expect(isId(name)).toBe(true);
    const client = await testClient(server);
    const { account } = await client.signup(name, `pw-${name}-long enough`);
    await client.conversations.sync();
    const alice = await signup('alice');
    const chat = await alice.client.conversations.direct(name);
    expect(chat.admins).toContain(account.accountId);
    const group = await alice.client.conversations.create({ name: 'ids', members: [name] });
    expect(group.members.map((m) => m.accountId)).toContain(account.accountId);
    // An account id still goes straight to its account.
    expect((await client.conversations.direct(alice.accountId)).id).toBe(chat.id);
  });

  test('a sync fetches its own manifest only when the server says it moved', async () => {
    const { fetch, seen } = tap(server.fetch);
    const alice = await signup('alice', fetch);
    const fetched = () =>
      seen.filter((r) => r.method === 'GET' && r.path === '/v1/manifest').length;
    await alice.client.conversations.sync();
    const before = fetched();
    await alice.client.conversations.sync();
    await alice.client.conversations.sync();
    expect(fetched()).toBe(before);
    // Another device (a newer manifest): the next sync fetches it.
    await secondDevice(alice);
    await alice.client.conversations.sync();
    expect(fetched()).toBe(before + 1);
  });

  test('a group: admins add, rename and remove; members cannot; a member leaves', async () => {
    const alice = await signup('alice');
    const bob = await signup('bob');
    const carol = await signup('carol');
    const dave = await signup('dave');
    const team = await alice.client.conversations.create({
      name: 'Team',
      members: [bob.name, carol.name],
    });
    expect(team.members).toHaveLength(3);
    for (const u of [bob, carol]) {
      const events = await u.client.conversations.sync();
      expect(events[0]).toMatchObject({ type: 'joined', conversation: { name: 'Team' } });
    }
    await carol.client.conversations.send(team.id, 'from carol');
    expect(texts(await alice.client.conversations.sync())).toEqual(['from carol']);
    expect(texts(await bob.client.conversations.sync())).toEqual(['from carol']);

    const refused = await bob.client.conversations.add(team.id, [dave.name]).catch((e) => e);
    expect(SdkError.is(refused)).toBe(true);
    expect((refused as SdkError).detail).toBe('COMMIT_NOT_ALLOWED');

    await alice.client.conversations.rename(team.id, 'Team ☕');
    const changed = await bob.client.conversations.sync();
    expect(changed).toEqual([
      expect.objectContaining({
        type: 'changed',
        conversation: expect.objectContaining({ name: 'Team ☕' }),
      }),
    ]);
    await carol.client.conversations.sync();

    // Bob cannot make himself admin; Alice can make him one, and then he may add.
    const grab = await bob.client.conversations.setAdmin(team.id, [bob.name], true).catch((e) => e);
    expect((grab as SdkError).detail).toBe('COMMIT_NOT_ALLOWED');
    const promoted = await alice.client.conversations.setAdmin(team.id, [bob.name], true);
    expect(promoted.admins).toEqual([alice.accountId, bob.accountId].sort());
    await bob.client.conversations.sync();
    await carol.client.conversations.sync();
    await bob.client.conversations.add(team.id, [dave.name]);
    await alice.client.conversations.sync();
    await carol.client.conversations.sync();
    expect((await dave.client.conversations.sync())[0]).toMatchObject({ type: 'joined' });
    await alice.client.conversations.setAdmin(team.id, [bob.name], false);
    await bob.client.conversations.sync();
    await carol.client.conversations.sync();
    await dave.client.conversations.sync();
    await expect(
      alice.client.conversations.setAdmin(team.id, [alice.name], false),
    ).rejects.toSatisfy((e) => SdkError.is(e, 'INVALID_ARGUMENT'));

    await alice.client.conversations.remove(team.id, [carol.name]);
    const removed = await carol.client.conversations.sync();
    expect(removed).toEqual([{ type: 'removed', conversationId: team.id }]);
    expect((await carol.client.conversations.get(team.id)).active).toBe(false);
    await bob.client.conversations.sync();

    await bob.client.conversations.leave(team.id);
    await dave.client.conversations.sync();
    await alice.client.conversations.sync(); // Alice (or Dave) commits Bob's request
    const left = await bob.client.conversations.sync();
    expect(left).toEqual([{ type: 'removed', conversationId: team.id }]);
    expect((await alice.client.conversations.get(team.id)).members).toHaveLength(2);
  });

  test('a member removed and added again keeps its history', async () => {
    const alice = await signup('alice');
    const bob = await signup('bob');
    const { id } = await alice.client.conversations.create({ name: 'T', members: [bob.name] });
    await bob.client.conversations.sync();
    await alice.client.conversations.send(id, 'before');
    await bob.client.conversations.sync();
    await bob.client.conversations.send(id, 'mine');
    await alice.client.conversations.sync();
    await alice.client.conversations.remove(id, [bob.name]);
    await bob.client.conversations.sync();
    await alice.client.conversations.send(id, 'while out');
    await alice.client.conversations.add(id, [bob.name]);
    const events = await bob.client.conversations.sync();
    expect(events.filter((e) => e.type === 'error')).toEqual([]);
    expect(events.map((e) => e.type)).toContain('joined');
    await alice.client.conversations.send(id, 'after');
    expect(texts(await bob.client.conversations.sync())).toEqual(['after']);
    expect((await bob.client.conversations.history(id)).map((m) => m.text)).toEqual([
      'before',
      'mine',
      'after',
    ]);
    // Bob's own count goes on: Alice sees no gap.
    await bob.client.conversations.send(id, 'back');
    const seen = await alice.client.conversations.sync();
    expect(seen.filter((e) => e.type === 'error')).toEqual([]);
    expect(texts(seen)).toEqual(['back']);
  });

  test('every device of every member: a new device joins the conversations by itself', async () => {
    const alice = await signup('alice');
    const bob = await signup('bob');
    const chat = await alice.client.conversations.direct(bob.name);
    await bob.client.conversations.sync();
    await alice.client.conversations.send(chat.id, 'before the phone');
    await bob.client.conversations.send(chat.id, 'reply before the phone');
    await alice.client.conversations.sync();
    const alice2 = await secondDevice(alice);
    // Alice's first device sees the new device in her manifest and adds it everywhere, then
    // hands it the history through the account's own conversation.
    await alice.client.conversations.sync();
    const joined = await alice2.client.conversations.sync();
    expect(joined).toEqual([
      expect.objectContaining({
        type: 'joined',
        conversation: expect.objectContaining({ id: chat.id }),
      }),
      { type: 'history', conversationId: chat.id, count: 2 },
    ]);
    expect(
      (await alice2.client.conversations.history(chat.id)).map((m) => [m.text, m.own]),
    ).toEqual([
      ['before the phone', true],
      ['reply before the phone', false],
    ]);
    // The account's own conversation is internal: not listed.
    expect((await alice2.client.conversations.list()).map((c) => c.id)).toEqual([chat.id]);
    await bob.client.conversations.sync();
    await bob.client.conversations.send(chat.id, 'to both of you');
    expect(texts(await alice.client.conversations.sync())).toEqual(['to both of you']);
    expect(texts(await alice2.client.conversations.sync())).toEqual(['to both of you']);
    await alice2.client.conversations.send(chat.id, 'from the phone');
    expect(texts(await bob.client.conversations.sync())).toEqual(['from the phone']);
    const mine = await alice.client.conversations.sync();
    expect(mine).toEqual([
      expect.objectContaining({ type: 'message', message: expect.objectContaining({ own: true }) }),
    ]);
  });

  test("a sender's name is learned from its message only when the directory confirms it", async () => {
    const alice = await signup('alice');
    // Bob's view of the directory: honest, until told to answer another account for a name.
    let lie: { name: string; accountId: string } | undefined;
    const directory: typeof server.fetch = async (url, init) => {
      if (lie && url.endsWith(`/v1/users/${lie.name}`))
        return Response.json({ accountId: lie.accountId });
      return server.fetch(url, init);
    };
    const bob = await signup('bob', directory);
    const carol = await signup('carol');
    const chat = await alice.client.conversations.direct(bob.name);
    await bob.client.conversations.sync();
    expect((await bob.client.conversations.get(chat.id)).members.map((m) => m.username)).toEqual(
      expect.arrayContaining([bob.name, undefined]),
    );
    await alice.client.conversations.send(chat.id, 'hi');
    const [event] = await bob.client.conversations.sync();
    expect(event).toMatchObject({ type: 'message', message: { sender: { username: alice.name } } });
    const names = (await bob.client.conversations.get(chat.id)).members.map((m) => m.username);
    expect(names.sort()).toEqual([alice.name, bob.name].sort());
    // Carol's name, as the directory (lying) maps it to another account: not taken.
    lie = { name: carol.name, accountId: alice.accountId };
    const withCarol = await carol.client.conversations.direct(bob.name);
    await bob.client.conversations.sync();
    await carol.client.conversations.send(withCarol.id, 'hello');
    const [fromCarol] = await bob.client.conversations.sync();
    expect(fromCarol).toMatchObject({ type: 'message' });
    if (fromCarol?.type !== 'message') throw new Error('expected a message');
    expect(fromCarol.message.sender.accountId).toBe(carol.accountId);
    expect(fromCarol.message.sender.username).toBeUndefined();
  });

  test('name claims cost one directory lookup per sender account, however many names it claims', async () => {
    // Bob's lookups count against his hourly limit on the server (300): a member that claimed a
    // new name in every message made him use it up, and sync wait on a lookup per message.
    const { fetch, seen } = tap(server.fetch);
    const bob = await signup('bob', fetch);
    const store = memoryStore();
    const storeKey = randomBytes(32);
    const mallory = await signup('mallory', server.fetch, { store, storeKey: storeKey.slice() });
    const carol = await signup('carol');
    const chat = await mallory.client.conversations.direct(bob.name);
    await bob.client.conversations.sync();
    await mallory.client.close();
    // Mallory's device states whatever name it likes (here: its stored username, rewritten).
    const claims = [carol.name, username('x'), username('y'), username('z'), mallory.name];
    for (const claim of claims) {
      const local = await openLocalState(store, storeKey);
      const account = await local.readAccount(mallory.accountId);
      if (!account) throw new Error('no account record');
      await local.writeAccount({ ...account, username: claim });
      const device = await testClient(server, { store, storeKey: storeKey.slice() });
      await device.conversations.send(chat.id, `as ${claim}`);
      await device.close();
    }
    const before = seen.length;
    const events = await bob.client.conversations.sync();
    expect(texts(events)).toEqual(claims.map((c) => `as ${c}`));
    const lookups = seen.slice(before).filter((r) => r.path.startsWith('/v1/users/'));
    expect(lookups).toHaveLength(1);
    // The first claim was not hers: her messages show her account id.
    for (const e of events)
      if (e.type === 'message') expect(e.message.sender.username).toBeUndefined();
  });

  test('a name lookup that could not be made is tried again after ten minutes, not before', async () => {
    let clock = Date.now();
    let failLookups = false;
    let lookups = 0;
    const flaky: typeof server.fetch = async (url, init) => {
      if (url.includes('/v1/users/')) {
        lookups++;
        if (failLookups) throw new TypeError('connection reset');
      }
      return server.fetch(url, init);
    };
    const bob = await signup('bob', flaky, { now: () => clock });
    const alice = await signup('alice');
    const chat = await alice.client.conversations.direct(bob.name);
    await bob.client.conversations.sync();
    failLookups = true;
    const first = lookups;
    const sender = async (text: string) => {
      await alice.client.conversations.send(chat.id, text);
      const [event] = await bob.client.conversations.sync();
      return event?.type === 'message' ? event.message.sender.username : 'no message';
    };
    expect(await sender('one')).toBeUndefined();
    expect(lookups).toBe(first + 1);
    clock += 5 * 60 * 1000;
    expect(await sender('two')).toBeUndefined();
    expect(lookups).toBe(first + 1); // not yet
    failLookups = false;
    clock += 6 * 60 * 1000;
    expect(await sender('three')).toBe(alice.name);
    expect(lookups).toBe(first + 2);
  });

  test('a name freed by a deleted account and taken by a new one no longer names the old', async () => {
    const alice = await signup('alice');
    const bob = await signup('bob');
    const old = await bob.client.conversations.direct(alice.name);
    await alice.client.conversations.sync();
    expect(
      (await bob.client.conversations.get(old.id)).members.find(
        (m) => m.accountId === alice.accountId,
      )?.username,
    ).toBe(alice.name);
    await alice.client.deleteAccount(`pw-${alice.name}-long enough`);
    // Someone else signs up with the freed name; Bob starts a conversation with that name.
    const client = await testClient(server);
    const { account } = await client.signup(alice.name, `pw-${alice.name}-other one`);
    await client.conversations.sync();
    const chat = await bob.client.conversations.direct(alice.name);
    expect(chat.id).not.toBe(old.id);
    const named = (id: string, accountId: string) =>
      bob.client.conversations
        .get(id)
        .then((c) => c.members.find((m) => m.accountId === accountId)?.username);
    expect(await named(chat.id, account.accountId)).toBe(alice.name);
    expect(await named(old.id, alice.accountId)).toBeUndefined();
  });

  test('find returns the 1:1 conversation this device holds with a user, and never creates one', async () => {
    const alice = await signup('alice');
    const bob = await signup('bob');
    expect(await alice.client.conversations.find(bob.name)).toBeUndefined();
    expect(await alice.client.conversations.list()).toEqual([]);
    const chat = await alice.client.conversations.direct(bob.name);
    expect((await alice.client.conversations.find(bob.name))?.id).toBe(chat.id);
    expect((await alice.client.conversations.find(bob.accountId))?.id).toBe(chat.id);
    await bob.client.conversations.sync();
    // Bob never looked Alice up: found by a lookup of her name.
    expect((await bob.client.conversations.find(alice.name.toUpperCase()))?.id).toBe(chat.id);
    await expect(alice.client.conversations.find('no such user!')).rejects.toSatisfy((e) =>
      SdkError.is(e, 'INVALID_USERNAME'),
    );
  });

  test('find with this account itself finds no 1:1 conversation (every one has it as admin)', async () => {
    const alice = await signup('alice');
    const bob = await signup('bob');
    await alice.client.conversations.direct(bob.name);
    await bob.client.conversations.sync();
    expect(await alice.client.conversations.find(alice.name)).toBeUndefined();
    expect(await alice.client.conversations.find(alice.accountId)).toBeUndefined();
    expect(await bob.client.conversations.find(bob.name)).toBeUndefined();
  });

  test('a history bundle adds no message a device already holds in its older history', async () => {
    const alice = await signup('alice');
    const bob = await signup('bob');
    const chat = await alice.client.conversations.direct(bob.name);
    await bob.client.conversations.sync();
    const second = await secondDevice(alice);
    await alice.client.conversations.sync(); // adds it, and hands it the history (none yet)
    await second.client.conversations.sync();
    // Enough messages for the second device to move some to an older history chunk.
    for (let i = 0; i < 140; i++) await bob.client.conversations.send(chat.id, `m${i}`);
    await alice.client.conversations.sync();
    await second.client.conversations.sync();
    // A third device: its bundle, sent in the account's own conversation, reaches the second
    // one too, with messages it stores in its chunk.
    const third = await secondDevice(alice);
    await alice.client.conversations.sync();
    const events = await second.client.conversations.sync();
    expect(events.filter((e) => e.type === 'error' || e.type === 'history')).toEqual([]);
    const history = await second.client.conversations.history(chat.id, { limit: 1000 });
    expect(history.map((m) => m.text)).toEqual(Array.from({ length: 140 }, (_, i) => `m${i}`));
    const got = await third.client.conversations.sync();
    expect(got.filter((e) => e.type === 'history')).toEqual([
      { type: 'history', conversationId: chat.id, count: 140 },
    ]);
  });

  test('a crash between sending a commit and its answer is recovered, either way', async () => {
    // The connection drops after the request: `lose` = 'answer' (the server took the commit) or
    // 'request' (it never arrived).
    let lose: 'answer' | 'request' | undefined;
    const flaky: typeof server.fetch = async (url, init) => {
      const isCommit =
        init.method === 'POST' &&
        url.includes('/messages') &&
        String(init.body).includes('"commit"');
      if (lose && isCommit) {
        const mode = lose;
        lose = undefined;
        if (mode === 'request') throw new TypeError('connection reset');
        await server.fetch(url, init);
        throw new TypeError('connection reset');
      }
      return server.fetch(url, init);
    };
    const alice = await signup('alice', flaky);
    const bob = await signup('bob');
    const carol = await signup('carol');
    const team = await alice.client.conversations.create({ name: 'T', members: [bob.name] });
    await bob.client.conversations.sync();

    lose = 'answer';
    const failed = await alice.client.conversations.add(team.id, [carol.name]).catch((e) => e);
    expect(SdkError.is(failed, 'NETWORK')).toBe(true);
    await alice.client.conversations.sync(); // finds its commit was taken: adopts the new epoch
    expect((await alice.client.conversations.get(team.id)).members).toHaveLength(3);
    await bob.client.conversations.sync();
    await alice.client.conversations.send(team.id, 'after the crash');
    expect(texts(await bob.client.conversations.sync())).toEqual(['after the crash']);

    lose = 'request';
    const lost = await alice.client.conversations.rename(team.id, 'T2').catch((e) => e);
    expect(SdkError.is(lost, 'NETWORK')).toBe(true);
    await alice.client.conversations.sync(); // the group did not move: the commit is dropped
    expect((await alice.client.conversations.get(team.id)).name).toBe('T');
    await alice.client.conversations.send(team.id, 'still in step');
    expect(texts(await bob.client.conversations.sync())).toEqual(['still in step']);
  });

  test("a Welcome whose post failed: others' sends say so, and the adder's next sync posts it", async () => {
    const flaky = interceptOnce();
    const alice = await signup('alice', flaky.fetch);
    const bob = await signup('bob');
    const carol = await signup('carol');
    const team = await alice.client.conversations.create({ name: 'T', members: [bob.name] });
    await bob.client.conversations.sync();
    flaky.arm('welcome', connectionReset);
    const added = await alice.client.conversations.add(team.id, [carol.name]);
    expect(added.members).toHaveLength(3); // the commit is in; its Welcome is not
    await bob.client.conversations.sync();
    const unrouted = await bob.client.conversations.send(team.id, 'too early').catch((e) => e);
    expect(SdkError.is(unrouted, 'CONFLICT')).toBe(true);
    expect((unrouted as SdkError).detail).toBe('RECIPIENT_UNROUTED');
    expect((unrouted as SdkError).retryable).toBe(true);
    expect(await alice.client.conversations.sync()).toEqual([]); // posts the Welcome
    await bob.client.conversations.send(team.id, 'now');
    const events = await carol.client.conversations.sync();
    expect(events.map((e) => e.type)).toEqual(['joined', 'message']);
    expect(texts(events)).toEqual(['now']);
  });

  test('a Welcome refused for a full welcome queue is kept and posted again, not dropped', async () => {
    // Anyone can fill a device's welcome cap (its id is public): dropping the Welcome then
    // would leave the added device unrouted and the group unable to send.
    const full = interceptOnce();
    const alice = await signup('alice', full.fetch);
    const bob = await signup('bob');
    const carol = await signup('carol');
    const team = await alice.client.conversations.create({ name: 'T', members: [bob.name] });
    await bob.client.conversations.sync();
    full.arm(
      'welcome',
      () =>
        new Response(JSON.stringify({ error: { code: 'QUEUE_FULL', message: 'queue full' } }), {
          status: 409,
          headers: { 'content-type': 'application/json' },
        }),
    );
    await alice.client.conversations.add(team.id, [carol.name]);
    const events = await alice.client.conversations.sync(); // posts the Welcome again
    expect(events.map((e) => e.type)).not.toContain('error');
    await bob.client.conversations.sync();
    await bob.client.conversations.send(team.id, 'welcome, carol');
    expect(texts(await carol.client.conversations.sync())).toEqual(['welcome, carol']);
  });

  test('a leave request whose commit failed is committed by the next send, which then goes out', async () => {
    const flaky = interceptOnce();
    const alice = await signup('alice', flaky.fetch);
    const bob = await signup('bob');
    const carol = await signup('carol');
    const team = await alice.client.conversations.create({
      name: 'T',
      members: [bob.name, carol.name],
    });
    await bob.client.conversations.sync();
    await carol.client.conversations.sync();
    await bob.client.conversations.leave(team.id);
    flaky.arm('commit', connectionReset);
    await alice.client.conversations.sync(); // its commit of bob's request is lost
    // MLS sends nothing in an epoch with an uncommitted proposal: the send commits it first.
    await alice.client.conversations.send(team.id, 'after bob left');
    expect(texts(await carol.client.conversations.sync())).toEqual(['after bob left']);
    expect((await alice.client.conversations.get(team.id)).members).toHaveLength(2);
  });

  test('post-compromise security: fresh keys after N messages and after a time', async () => {
    let clock = Date.now();
    const alice = await signup('alice', server.fetch, {
      now: () => clock,
      conversations: { selfUpdateAfterMessages: 3, selfUpdateAfterMs: 60_000 },
    });
    const bob = await signup('bob');
    const chat = await alice.client.conversations.direct(bob.name);
    await bob.client.conversations.sync();
    const epoch = (await alice.client.conversations.get(chat.id)).epoch;
    for (const text of ['1', '2']) await alice.client.conversations.send(chat.id, text);
    expect((await alice.client.conversations.get(chat.id)).epoch).toBe(epoch);
    await alice.client.conversations.send(chat.id, '3');
    expect((await alice.client.conversations.get(chat.id)).epoch).toBe(epoch + 1);
    clock += 61_000;
    await alice.client.conversations.sync();
    expect((await alice.client.conversations.get(chat.id)).epoch).toBe(epoch + 2);
    const got = await bob.client.conversations.sync();
    expect(texts(got)).toEqual(['1', '2', '3']);
    expect((await bob.client.conversations.get(chat.id)).epoch).toBe(epoch + 2);
    await bob.client.conversations.send(chat.id, 'still talking');
    expect(texts(await alice.client.conversations.sync())).toEqual(['still talking']);
    await expect(
      testClient(server, { conversations: { selfUpdateAfterMessages: 0 } }),
    ).rejects.toSatisfy((e) => SdkError.is(e, 'INVALID_ARGUMENT'));
  });

  test("a contact's revoked device is taken out by the other members too", async () => {
    let clock = Date.now();
    const alice = await signup('alice', server.fetch, { now: () => clock });
    const bob = await signup('bob');
    const chat = await alice.client.conversations.direct(bob.name);
    await bob.client.conversations.sync();
    const bob2 = await secondDevice(bob);
    await bob.client.conversations.sync(); // adds bob2
    await bob2.client.conversations.sync();
    await alice.client.conversations.sync();
    expect((await alice.client.conversations.get(chat.id)).members).toHaveLength(3);
    // Bob revokes the second device and goes offline before his next sync.
    const phone = (await bob.client.devices.list()).find((d) => !d.current)!;
    await bob.client.devices.revoke(phone.id);
    clock += 61_000; // Alice's periodic check of her contacts' devices is due
    const events = await alice.client.conversations.sync();
    expect(events).toEqual([expect.objectContaining({ type: 'changed' })]);
    const members = (await alice.client.conversations.get(chat.id)).members;
    expect(members.map((m) => m.deviceId)).not.toContain(phone.id);
    expect(members).toHaveLength(2);
    await alice.client.conversations.send(chat.id, 'only you now');
    expect(texts(await bob.client.conversations.sync())).toEqual(['only you now']);
  });

  test('closing the client while a follow sync waits behind another call ends the loop quietly', async () => {
    const FakeSocket = fakeSockets();
    // Bob's next message post waits until the test lets it go.
    let open = () => {};
    const opened = new Promise<void>((resolve) => {
      open = resolve;
    });
    let arrived = () => {};
    const reached = new Promise<void>((resolve) => {
      arrived = resolve;
    });
    let armed = false;
    const fetch: typeof server.fetch = async (url, init) => {
      if (armed && init.method === 'POST' && url.includes('/messages')) {
        armed = false;
        arrived();
        await opened;
      }
      return server.fetch(url, init);
    };
    const alice = await signup('alice');
    const bob = await signup('bob', fetch, {
      webSocket: FakeSocket.asOption,
    });
    const chat = await bob.client.conversations.direct(alice.name);
    const stop = new AbortController();
    const following = (async () => {
      for await (const _ of bob.client.conversations.follow({
        signal: stop.signal,
        intervalMs: 10,
      }));
      return 'ended';
    })().catch((err: unknown) => err);
    try {
      armed = true;
      const sending = bob.client.conversations.send(chat.id, 'hi');
      await reached;
      // The loop's next sync is queued behind the send by now.
      await new Promise((r) => setTimeout(r, 100));
      const closed = bob.client.close();
      open();
      await sending;
      await closed;
      expect(await following).toBe('ended');
    } finally {
      stop.abort();
    }
  });

  test('closing the client ends a follow loop at once and closes its event socket', async () => {
    const FakeSocket = fakeSockets();
    const bob = await signup('bob', server.fetch, {
      webSocket: FakeSocket.asOption,
    });
    const stop = new AbortController();
    try {
      const following = (async () => {
        // Far longer than the test: only the close can end the wait.
        for await (const _ of bob.client.conversations.follow({
          signal: stop.signal,
          intervalMs: 60_000,
        }));
        return 'ended';
      })();
      await new Promise((r) => setTimeout(r, 100));
      expect(FakeSocket.all).toHaveLength(1);
      await bob.client.close();
      const running = new Promise((r) => setTimeout(() => r('still waiting'), 1000));
      // Before, the loop slept out its interval holding the socket (and the process) open.
      expect(await Promise.race([following, running])).toBe('ended');
      expect(FakeSocket.all[0]!.closed).toBe(true);
    } finally {
      stop.abort();
    }
  });

  test('a socket the server closed for too many (4429) is not replaced at once', async () => {
    // Nine followers of one device: each new socket closes the oldest, whose follower would
    // reconnect within a second and close the next oldest, round and round.
    const FakeSocket = fakeSockets();
    const bob = await signup('bob', server.fetch, {
      webSocket: FakeSocket.asOption,
    });
    const stop = new AbortController();
    const following = (async () => {
      for await (const _ of bob.client.conversations.follow({
        signal: stop.signal,
        intervalMs: 10,
      }));
    })();
    try {
      await new Promise((r) => setTimeout(r, 100));
      expect(FakeSocket.all).toHaveLength(1);
      const socket = FakeSocket.all[0]!;
      socket.emit('open');
      socket.emit('message', { data: '{"type":"ready"}' });
      await new Promise((r) => setTimeout(r, 50));
      socket.emit('close', { code: 4429 });
      // An ordinary drop is replaced within a second (see the test below); this one is not.
      await new Promise((r) => setTimeout(r, 1300));
      expect(FakeSocket.all).toHaveLength(1);
    } finally {
      stop.abort();
      await following;
    }
  });

  test('follow catches up when its socket is ready or drops, backs off, and stops on 4401', async () => {
    const FakeSocket = fakeSockets();
    let queueReads = 0;
    const counting: typeof server.fetch = (url, init) => {
      if (url.includes('/v1/queue?')) queueReads++;
      return server.fetch(url, init);
    };
    const bob = await signup('bob', counting, {
      webSocket: FakeSocket.asOption,
    });
    const stop = new AbortController();
    const following = (async () => {
      // Far longer than the test: only the socket's events can wake the loop.
      for await (const _ of bob.client.conversations.follow({
        signal: stop.signal,
        intervalMs: 60_000,
      }));
    })();
    const settle = () => new Promise((r) => setTimeout(r, 100));
    const readsAfter = async (act: () => void) => {
      const before = queueReads;
      act();
      await settle();
      return queueReads - before;
    };
    await settle();
    expect(FakeSocket.all).toHaveLength(1);
    const first = FakeSocket.all[0]!;
    first.emit('open');
    // Ready: subscribed from now on; what came before was pushed to no one, so one sync.
    expect(await readsAfter(() => first.emit('message', { data: '{"type":"ready"}' }))).toBe(1);
    expect(await readsAfter(() => first.emit('message', { data: '{"type":"queue"}' }))).toBe(1);
    // Dropped after it was up: the loop wakes at once, catches up, and waits before reopening.
    expect(await readsAfter(() => first.emit('close', { code: 1006 }))).toBe(1);
    expect(FakeSocket.all).toHaveLength(1);
    stop.abort();
    await following;

    // A session the server refuses (4401): no socket again, however often the loop turns.
    const stop2 = new AbortController();
    const before = FakeSocket.all.length;
    const polling = (async () => {
      for await (const _ of bob.client.conversations.follow({
        signal: stop2.signal,
        intervalMs: 10,
      }));
    })();
    await settle();
    expect(FakeSocket.all).toHaveLength(before + 1);
    FakeSocket.all.at(-1)!.emit('close', { code: 4401 });
    // Longer than the backoff after one failed socket (at most 1 s), which alone would have
    // kept a new socket away for a shorter wait: only the 4401 rule explains none here.
    await new Promise((r) => setTimeout(r, 1300));
    expect(FakeSocket.all).toHaveLength(before + 1);
    stop2.abort();
    await polling;

    // The same wait after an ordinary drop (1006): the loop does open a new socket.
    const stop3 = new AbortController();
    const reopening = (async () => {
      for await (const _ of bob.client.conversations.follow({
        signal: stop3.signal,
        intervalMs: 10,
      }));
    })();
    await settle();
    const count = FakeSocket.all.length;
    FakeSocket.all.at(-1)!.emit('close', { code: 1006 });
    await new Promise((r) => setTimeout(r, 1300));
    expect(FakeSocket.all.length).toBeGreaterThan(count);
    stop3.abort();
    await reopening;
  });

  test("follow wakes on the server's push over the event socket, not only on its interval", async () => {
    const url = await server.listen();
    const real = { fetch: (u: string, init: RequestInit) => fetch(u, init) };
    const alice = await signup('alice', real.fetch, { server: url });
    const bob = await signup('bob', real.fetch, { server: url, webSocket: WebSocket });
    const chat = await alice.client.conversations.direct(bob.name);
    const stop = new AbortController();
    const seen: ConversationEvent[] = [];
    const started = Date.now();
    const following = (async () => {
      // An interval far longer than the test: only a push can wake the loop in time.
      for await (const event of bob.client.conversations.follow({
        signal: stop.signal,
        intervalMs: 60_000,
      })) {
        seen.push(event);
        if (event.type === 'message') stop.abort();
      }
    })();
    await new Promise((r) => setTimeout(r, 500)); // bob joined, the socket is up
    await alice.client.conversations.send(chat.id, 'pushed');
    await following;
    expect(texts(seen)).toEqual(['pushed']);
    expect(Date.now() - started).toBeLessThan(20_000);
  });
});
