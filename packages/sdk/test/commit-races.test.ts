// A device's own commits interleaved with what others sent meanwhile, over the real server
// (SQLite in memory): nothing another member posted before a commit is lost, a commit made while
// a sync runs does not overwrite what the sync stored, a commit whose answer was lost is settled
// by what the group authenticated, not by the server's routing data, and a commit retried after
// a lost race acts on the group as it is then.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { CofferClient, ConversationEvent } from '../src/index.js';
import { SdkError } from '../src/index.js';
import { type Seen, type TestServer, tap, testClient, testServer, username } from './_server.js';

let server: TestServer;
beforeAll(async () => {
  server = await testServer();
});
afterAll(async () => {
  await server.close();
});

type Rewrite = (req: Seen, body: unknown) => unknown | undefined;

interface User {
  name: string;
  client: CofferClient;
  accountId: string;
  /** Replace to play the hostile server for this user's requests. */
  rewrite: { fn: Rewrite | undefined };
  /** Set to make this user's next commit post fail on the way (the request never arrives). */
  dropNextCommit: { on: boolean };
  /** Run (once) just before this user's next commit post is sent. */
  beforeNextCommit: { fn: (() => Promise<void>) | undefined };
}

async function signup(
  prefix: string,
  overrides: Parameters<typeof testClient>[1] = {},
): Promise<User> {
  const name = username(prefix);
  const rewrite: { fn: Rewrite | undefined } = { fn: undefined };
  const dropNextCommit = { on: false };
  const beforeNextCommit: User['beforeNextCommit'] = { fn: undefined };
  const tapped = tap(server.fetch, (req, body) => rewrite.fn?.(req, body));
  const fetch: typeof server.fetch = async (url, init) => {
    const isCommit =
      init.method === 'POST' && url.includes('/messages') && String(init.body).includes('"commit"');
    if (dropNextCommit.on && isCommit) {
      dropNextCommit.on = false;
      throw new TypeError('connection reset');
    }
    const before = isCommit ? beforeNextCommit.fn : undefined;
    if (before) {
      beforeNextCommit.fn = undefined;
      await before();
    }
    // (tap reads every answer as JSON while rewriting: blobs pass by it when nothing is.)
    return rewrite.fn ? tapped.fetch(url, init) : server.fetch(url, init);
  };
  const client = await testClient({ fetch }, overrides);
  const { account } = await client.signup(name, `pw-${name}-long enough`);
  await client.conversations.sync();
  return { name, client, accountId: account.accountId, rewrite, dropNextCommit, beforeNextCommit };
}

/** Another device of `user`: a login on a fresh home, then a sync (its key packages). */
async function login(user: User): Promise<{ client: CofferClient; deviceId: string }> {
  const client = await testClient(server);
  const account = await client.login(user.name, `pw-${user.name}-long enough`);
  await client.conversations.sync();
  return { client, deviceId: account.deviceId };
}

const errors = (events: ConversationEvent[]) =>
  events.flatMap((e) => (e.type === 'error' ? [e.error.detail ?? e.error.code] : []));
const texts = (events: ConversationEvent[]) =>
  events.flatMap((e) => (e.type === 'message' ? [e.message.text] : []));

async function team(...members: User[]): Promise<string> {
  const [admin, ...others] = members as [User, ...User[]];
  const { id } = await admin.client.conversations.create({
    name: 'T',
    members: others.map((u) => u.name),
  });
  for (const u of others) await u.client.conversations.sync();
  return id;
}

describe('own commits and what others sent before them', () => {
  test("a commit made without syncing first loses none of the others' earlier messages", async () => {
    const alice = await signup('alice');
    const bob = await signup('bob');
    const id = await team(alice, bob);
    await bob.client.conversations.send(id, 'x');
    // Alice changes the group before she has seen 'x': her commit's seq is past it.
    await alice.client.conversations.rename(id, 'T2');
    const events = await alice.client.conversations.sync();
    expect(errors(events)).toEqual([]);
    expect(texts(events)).toEqual(['x']);
    expect((await alice.client.conversations.history(id)).map((m) => m.text)).toEqual(['x']);
    // And Bob follows the rename, and both go on.
    await bob.client.conversations.sync();
    expect((await bob.client.conversations.get(id)).name).toBe('T2');
    await bob.client.conversations.send(id, 'y');
    expect(texts(await alice.client.conversations.sync())).toEqual(['y']);
  });

  test('an automatic key renewal after a send loses none of the messages queued before it', async () => {
    const alice = await signup('alice', { conversations: { selfUpdateAfterMessages: 1 } });
    const bob = await signup('bob');
    const id = await team(alice, bob);
    await bob.client.conversations.send(id, 'one');
    await bob.client.conversations.send(id, 'two');
    await alice.client.conversations.send(id, 'mine'); // and a renewal commit right after
    const events = await alice.client.conversations.sync();
    expect(errors(events)).toEqual([]);
    expect(texts(events)).toEqual(['one', 'two']);
    expect(texts(await bob.client.conversations.sync())).toEqual(['mine']);
  });

  test('an unprocessable entry with a made-up seq does not silence the conversation', async () => {
    const alice = await signup('alice');
    const bob = await signup('bob');
    const id = await team(alice, bob);
    await alice.client.conversations.send(id, 'lost');
    await alice.client.conversations.send(id, 'kept');
    // The server replaces the first entry with garbage under a huge seq.
    bob.rewrite.fn = (req, body) => {
      if (req.method !== 'GET' || !req.path.startsWith('/v1/queue')) return undefined;
      const page = body as { messages: { seq: number; message: string }[] };
      if (page.messages.length === 0) return undefined;
      bob.rewrite.fn = undefined;
      const [first, ...rest] = page.messages as [(typeof page.messages)[number]];
      return { ...page, messages: [{ ...first, seq: 2 ** 40, message: 'AAAA' }, ...rest] };
    };
    const events = await bob.client.conversations.sync();
    expect(errors(events)).toEqual(['MLS_MESSAGE_REJECTED']);
    expect(texts(events)).toEqual(['kept']);
    await alice.client.conversations.send(id, 'after');
    expect(texts(await bob.client.conversations.sync())).toEqual(['after']);
  });
});

describe('commits made while a sync runs', () => {
  test('committing a leave request inside a sync keeps the conversations that sync joined', async () => {
    const alice = await signup('alice');
    const bob = await signup('bob');
    const carol = await signup('carol');
    const g = await team(alice, bob, carol);
    await bob.client.conversations.leave(g);
    await alice.client.conversations.sync(); // commits Bob's removal
    const { id: h } = await alice.client.conversations.create({ name: 'H', members: [carol.name] });
    // Carol sees Bob's request first: her commit of it loses the race to Alice's, and she
    // catches up while her sync is still going.
    const events = await carol.client.conversations.sync();
    expect(errors(events)).toEqual([]);
    expect(events.filter((e) => e.type === 'joined').map((e) => e.type)).toEqual(['joined']);
    expect((await carol.client.conversations.list()).map((c) => c.id).sort()).toEqual(
      [g, h].sort(),
    );
    expect((await carol.client.conversations.get(g)).members).toHaveLength(2);
    await alice.client.conversations.send(h, 'to H');
    const later = await carol.client.conversations.sync();
    expect(errors(later)).toEqual([]);
    expect(texts(later)).toEqual(['to H']);
  });
});

describe('a commit whose answer was lost', () => {
  test("is not adopted because another member's earlier message came first", async () => {
    const alice = await signup('alice');
    const bob = await signup('bob', { conversations: { selfUpdateAfterMessages: 1 } });
    const id = await team(alice, bob);
    // Bob sends (and renews his keys: a commit that takes the epoch).
    await bob.client.conversations.send(id, 'hi');
    // Alice renames at the old epoch; the request never arrives.
    alice.dropNextCommit.on = true;
    const lost = await alice.client.conversations.rename(id, 'T2').catch((e) => e);
    expect(SdkError.is(lost, 'NETWORK')).toBe(true);
    const events = await alice.client.conversations.sync();
    expect(errors(events)).toEqual([]);
    expect(texts(events)).toEqual(['hi']);
    expect((await alice.client.conversations.get(id)).name).toBe('T');
    expect((await bob.client.conversations.get(id)).name).toBe('T');
    await alice.client.conversations.send(id, 'in step');
    const bobs = await bob.client.conversations.sync();
    expect(errors(bobs)).toEqual([]);
    expect(texts(bobs)).toEqual(['in step']);
  });

  test('is adopted when it was taken, even after messages of the old epoch', async () => {
    const alice = await signup('alice');
    const bob = await signup('bob');
    const id = await team(alice, bob);
    await bob.client.conversations.send(id, 'old epoch');
    // The server takes Alice's rename, but the answer is lost.
    let lose = true;
    alice.rewrite.fn = (req) => {
      if (lose && req.method === 'POST' && req.path.endsWith('/messages')) {
        lose = false;
        throw new TypeError('connection reset');
      }
      return undefined;
    };
    const lost = await alice.client.conversations.rename(id, 'T2').catch((e) => e);
    expect(SdkError.is(lost, 'NETWORK')).toBe(true);
    alice.rewrite.fn = undefined;
    const events = await alice.client.conversations.sync();
    expect(errors(events)).toEqual([]);
    expect(texts(events)).toEqual(['old epoch']);
    expect((await alice.client.conversations.get(id)).name).toBe('T2');
    await bob.client.conversations.sync();
    expect((await bob.client.conversations.get(id)).name).toBe('T2');
    await alice.client.conversations.send(id, 'in step');
    expect(texts(await bob.client.conversations.sync())).toEqual(['in step']);
  });

  test("is dropped when the sealed GroupInfo shows another member's commit took its epoch", async () => {
    const alice = await signup('alice');
    const bob = await signup('bob');
    const id = await team(alice, bob);
    await alice.client.conversations.setAdmin(id, [bob.name], true);
    await bob.client.conversations.sync();
    // Bob renames; the server keeps his commit from Alice, for good.
    alice.rewrite.fn = (req, body) => {
      if (req.method !== 'GET' || !req.path.startsWith('/v1/queue')) return undefined;
      const page = body as { messages: { kind: string }[] };
      return { ...page, messages: page.messages.filter((m) => m.kind !== 'commit') };
    };
    await bob.client.conversations.rename(id, 'by bob');
    alice.dropNextCommit.on = true;
    const lost = await alice.client.conversations.rename(id, 'by alice').catch((e) => e);
    expect(SdkError.is(lost, 'NETWORK')).toBe(true);
    expect(await alice.client.conversations.sync()).toEqual([]);
    expect((await alice.client.conversations.get(id)).name).toBe('T'); // not her lost rename
    // Bob's next message shows Alice she is behind: she rejoins onto Bob's epoch.
    await bob.client.conversations.send(id, 'after');
    const events = await alice.client.conversations.sync();
    expect(errors(events)).toEqual(['MLS_MESSAGE_REJECTED']);
    expect(events.at(-1)?.type).toBe('resynced');
    expect((await alice.client.conversations.get(id)).name).toBe('by bob');
  });
});

describe("reconciling this account's devices", () => {
  test('a retry after a lost race acts on the group as it is then, not on stale leaves', async () => {
    const alice = await signup('alice');
    const bob = await signup('bob');
    const id = await team(alice, bob);
    const a2 = await login(alice);
    const a3 = await login(alice);
    // Alice's first device adds the other two; everyone catches up.
    await alice.client.conversations.sync();
    for (const c of [a2.client, a3.client, bob.client]) await c.conversations.sync();
    const devices = async (client: CofferClient) =>
      (await client.conversations.get(id)).members.map((m) => m.deviceId).sort();
    expect(await devices(bob.client)).toHaveLength(4);
    // a3 revokes a2 and a fourth device is linked: both of Alice's remaining old devices will
    // take a2 out and add a4. a3 gets there first, while Alice's own commit is on its way: a4
    // then sits in the leaf a2 left.
    await a3.client.devices.revoke(a2.deviceId);
    const a4 = await login(alice);
    alice.beforeNextCommit.fn = async () => {
      await a3.client.conversations.sync();
    };
    const events = await alice.client.conversations.sync();
    expect(errors(events)).toEqual([]);
    expect(alice.beforeNextCommit.fn).toBeUndefined(); // the race happened
    for (const c of [alice.client, a3.client, bob.client]) await c.conversations.sync();
    const a4Events = await a4.client.conversations.sync();
    expect(a4Events.filter((e) => e.type === 'removed')).toEqual([]);
    const members = await devices(bob.client);
    expect(members).toHaveLength(4); // Alice's first device, a3, a4, and Bob's
    expect(members).toContain(a4.deviceId);
    expect(members).not.toContain(a2.deviceId);
    expect(await devices(a4.client)).toEqual(members);
  });
});
