// What a failure part of the way (a store write or a request), a second process on the same
// home, or a server replaying what it once served must not do to a conversation's local state:
// lose a joined conversation, forget to settle a commit, take back a contact's newer manifest,
// or roll a group back to an older epoch.
import { randomBytes, toBase64url } from '@coffer/crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  type CofferClient,
  type ConversationEvent,
  type FetchLike,
  type LocalStore,
  memoryStore,
  SdkError,
} from '../src/index.js';
import { openLocalState } from '../src/local-state.js';
import {
  type ScriptedFailure,
  scriptedFetch,
  type TestServer,
  testClient,
  testServer,
  username,
} from './_server.js';

let server: TestServer;
beforeAll(async () => {
  server = await testServer();
});
afterAll(async () => {
  await server.close();
});

interface QueueEntry {
  cursor: number;
  kind: string;
  groupId: string;
  epoch: number;
  message: string;
}

interface User {
  name: string;
  client: CofferClient;
  accountId: string;
  /** Sees each request first; an answer it returns is the server's instead. */
  intercept?: (url: string, init: RequestInit) => Response | undefined;
  /** Sees (and may replace) each queue page the client reads. */
  queuePages?: (body: { messages: QueueEntry[] }) => { messages: QueueEntry[] } | undefined;
  /** Makes the next request whose URL and body contain `part` fail as a connection reset. */
  failOnce(part: string, method?: string, after?: boolean): void;
}

async function signup(
  prefix: string,
  overrides: Parameters<typeof testClient>[1] = {},
): Promise<User> {
  const name = username(prefix);
  const failures: ScriptedFailure[] = [];
  const user = {
    name,
    failOnce(part: string, method?: string, after = false) {
      failures.push({ part, ...(method === undefined ? {} : { method }), after });
    },
  } as User;
  user.client = await testClient({ fetch: scriptedFetch(server, failures, user) }, overrides);
  const { account } = await user.client.signup(name, `pw-${name}-long enough`);
  await user.client.conversations.sync();
  user.accountId = account.accountId;
  return user;
}

/** A home whose next put of a record named with `prefix` fails (a full disk, a crash), once armed. */
function failingStore(prefix: string) {
  const inner = memoryStore();
  let armed = false;
  const store: LocalStore = {
    get: (name) => inner.get(name),
    delete: (name) => inner.delete(name),
    async put(name, value) {
      if (armed && name.startsWith(prefix)) {
        armed = false;
        throw new SdkError('STORE_UNAVAILABLE', 'test', 'local store unavailable (ENOSPC)');
      }
      await inner.put(name, value);
    },
  };
  return {
    store,
    arm: () => {
      armed = true;
    },
  };
}

const texts = (events: ConversationEvent[]) =>
  events.flatMap((e) => (e.type === 'message' ? [e.message.text] : []));
const errors = (events: ConversationEvent[]) =>
  events.flatMap((e) => (e.type === 'error' ? [e.error.detail ?? e.error.code] : []));

describe('joining by a Welcome', () => {
  test.each([
    ['conv/', 'index'],
    ['kps/', 'key packages'],
  ])(
    'a failure writing the %s record (%s) loses neither the conversation nor its event',
    async (prefix) => {
      const home = failingStore(prefix);
      const alice = await signup('alice');
      const bob = await signup('bob', { store: home.store });
      const { id } = await alice.client.conversations.direct(bob.name);
      await alice.client.conversations.send(id, 'hi bob');
      // Bob's write of his conversation index fails as he joins (a crash there is the same).
      home.arm();
      const failed = await bob.client.conversations.sync().catch((e: unknown) => e);
      expect(SdkError.is(failed, 'STORE_UNAVAILABLE')).toBe(true);
      const events = await bob.client.conversations.sync();
      expect(errors(events)).toEqual([]);
      expect(events.map((e) => e.type)).toEqual(['joined', 'message']);
      expect(texts(events)).toEqual(['hi bob']);
      expect((await bob.client.conversations.list()).map((c) => c.id)).toEqual([id]);
    },
  );
});

describe('a commit whose answer was lost', () => {
  test('is settled even when the sync that found the group moved on failed part of the way', async () => {
    const alice = await signup('alice');
    const bob = await signup('bob');
    const team = await alice.client.conversations.create({ name: 'T', members: [bob.name] });
    await bob.client.conversations.sync();
    // The rename reaches the server; its answer does not.
    alice.failOnce('"kind":"commit"', 'POST', true);
    const renamed = await alice.client.conversations.rename(team.id, 'T2').catch((e) => e);
    expect(SdkError.is(renamed, 'NETWORK')).toBe(true);
    // The next sync sees the group moved on, then fails on its way through the queue.
    alice.failOnce('/v1/queue?', 'GET');
    const failed = await alice.client.conversations.sync().catch((e) => e);
    expect(SdkError.is(failed, 'NETWORK')).toBe(true);
    expect(errors(await alice.client.conversations.sync())).toEqual([]);
    expect((await alice.client.conversations.get(team.id)).name).toBe('T2');
    await alice.client.conversations.send(team.id, 'after the rename');
    const seen = await bob.client.conversations.sync();
    expect(errors(seen)).toEqual([]);
    expect(texts(seen)).toEqual(['after the rename']);
  });
});

describe('two processes on one home', () => {
  test("a contact's manifest another process saw newer is not taken back by this one", async () => {
    const store = memoryStore();
    const storeKey = randomBytes(32);
    let clock = Date.now();
    const now = () => clock;
    const bob = await signup('bob');
    // Alice's two processes share the home. The server may answer the first one with a manifest
    // of Bob's it served before.
    let replay: unknown;
    let stored: unknown;
    const bobManifest = () => `/v1/accounts/${bob.accountId}/manifest`;
    const fetchOne: FetchLike = async (url, init) => {
      if (replay !== undefined && url.endsWith(bobManifest())) return Response.json(replay);
      const res = await server.fetch(url, init);
      if (url.endsWith(bobManifest()) && res.ok) stored ??= await res.clone().json();
      return res;
    };
    const one = await testClient({ fetch: fetchOne }, { store, storeKey: storeKey.slice(), now });
    const name = username('alice');
    await one.signup(name, `pw-${name}-long enough`);
    await one.conversations.sync();
    const two = await testClient(
      { fetch: server.fetch },
      { store, storeKey: storeKey.slice(), now },
    );
    // The first process pins Bob's manifest; then Bob's account changes.
    await one.conversations.create({ name: 'first', members: [bob.name] });
    expect(stored).toBeDefined();
    await bob.client.devices.rename((await bob.client.devices.list())[0]!.id, 'new name');
    await bob.client.conversations.sync();
    // The second process sees (and pins) the newer manifest.
    clock += 60_000;
    await two.conversations.create({ name: 'second', members: [bob.name] });
    // The first is served the older one again: a rollback, whatever it had in memory.
    clock += 60_000;
    await bob.client.conversations.sync();
    replay = stored;
    const err = await one.conversations
      .create({ name: 'third', members: [bob.name] })
      .catch((e) => e);
    expect(SdkError.is(err, 'PROTOCOL_VIOLATION')).toBe(true);
    expect((err as SdkError).detail).toBe('MANIFEST_ROLLBACK');
  });
});

describe('a rejoin from the stored group info', () => {
  test('an older group info than this device holds is refused, with the epoch the server names', async () => {
    const alice = await signup('alice');
    const bob = await signup('bob');
    // The sealed GroupInfo each of Alice's commits stores, and its epoch.
    let latest: string | undefined;
    alice.intercept = (url, init) => {
      const body = typeof init.body === 'string' ? init.body : '';
      if (url.includes('/messages') && body.includes('"commit"'))
        latest = (JSON.parse(body) as { groupInfo?: string }).groupInfo ?? latest;
      return undefined;
    };
    const team = await alice.client.conversations.create({ name: 'T', members: [bob.name] });
    await bob.client.conversations.sync();
    const old = { epoch: (await alice.client.conversations.get(team.id)).epoch, info: latest };
    expect(old.info).toBeDefined();
    await alice.client.conversations.rename(team.id, 'T2');
    await bob.client.conversations.sync();
    const epoch = (await bob.client.conversations.get(team.id)).epoch;
    expect(epoch).toBeGreaterThan(old.epoch);
    // The server now claims Bob fell behind, serves him the old GroupInfo as current (with its
    // own epoch, so the two answers agree), and takes his rejoin.
    bob.queuePages = (body) => ({
      ...body,
      messages: body.messages.map((m) => ({
        ...m,
        epoch: m.epoch + 5,
        message: toBase64url(randomBytes(80)),
      })),
    });
    bob.intercept = (url, init) => {
      if (url.endsWith(`/v1/groups/${team.id}/info`))
        return Response.json({ epoch: old.epoch, groupInfo: old.info });
      if (url.endsWith(`/v1/groups/${team.id}/messages`) && init.method === 'POST')
        return Response.json({ seq: 1000 });
      return undefined;
    };
    await alice.client.conversations.send(team.id, 'in the new epoch');
    const events = await bob.client.conversations.sync();
    expect(events.map((e) => e.type)).not.toContain('resynced');
    expect(errors(events)).toEqual(['MLS_MESSAGE_REJECTED', 'STALE_GROUP_INFO']);
    const after = await bob.client.conversations.get(team.id);
    expect(after.name).toBe('T2');
    expect(after.epoch).toBe(epoch);
  });
});

describe("a conversation's record", () => {
  test('keeps no message counter of a device that is no longer in it', async () => {
    const store = memoryStore();
    const storeKey = randomBytes(32);
    const alice = await signup('alice', { store, storeKey: storeKey.slice() });
    const bob = await signup('bob');
    const { id } = await alice.client.conversations.direct(bob.name);
    await bob.client.conversations.sync();
    const peersOf = async () => {
      const state = await openLocalState(store, storeKey.slice());
      const record = await state.readRecord(`group/${id}`);
      return Object.keys((record?.peers ?? {}) as Record<string, number>).sort();
    };
    // Bob's second device joins, speaks, and is revoked: the next sync of Bob's first device
    // takes it out of the conversation.
    const phone = await testClient(server);
    const { deviceId } = await phone.login(bob.name, `pw-${bob.name}-long enough`);
    await phone.conversations.sync();
    await bob.client.conversations.sync();
    await phone.conversations.sync();
    await phone.conversations.send(id, 'from the phone');
    await bob.client.conversations.send(id, 'from the laptop');
    expect(texts(await alice.client.conversations.sync())).toEqual([
      'from the phone',
      'from the laptop',
    ]);
    expect(await peersOf()).toContain(`${bob.accountId}.${deviceId}`);
    await bob.client.devices.revoke(deviceId);
    await bob.client.conversations.sync();
    expect(errors(await alice.client.conversations.sync())).toEqual([]);
    const members = (await alice.client.conversations.get(id)).members.map((m) => m.deviceId);
    expect(members).not.toContain(deviceId);
    expect(await peersOf()).toEqual([`${bob.accountId}.${(await bob.client.whoami())!.deviceId}`]);
  });
});

describe('a commit of ours that removes a member', () => {
  test('still notices messages the server dropped from that member before the commit', async () => {
    const alice = await signup('alice');
    const bob = await signup('bob');
    const carol = await signup('carol');
    const team = await alice.client.conversations.create({
      name: 'T',
      members: [bob.name, carol.name],
    });
    await bob.client.conversations.sync();
    await carol.client.conversations.sync();
    await bob.client.conversations.send(team.id, 'one');
    expect(texts(await alice.client.conversations.sync())).toEqual(['one']);
    await bob.client.conversations.send(team.id, 'two');
    await bob.client.conversations.send(team.id, 'three');
    // Alice removes Bob before she reads 'two' and 'three' (still queued, of the old epoch).
    await alice.client.conversations.remove(team.id, [bob.name]);
    // The server keeps 'two' from Alice for good.
    let withheld = false;
    alice.queuePages = (page) => ({
      ...page,
      messages: page.messages.filter((m) => {
        if (withheld || m.kind !== 'application') return true;
        withheld = true;
        return false;
      }),
    });
    const events = await alice.client.conversations.sync();
    expect(withheld).toBe(true);
    expect(texts(events)).toEqual(['three']);
    expect(errors(events)).toEqual(['MESSAGES_MISSING']);
  });
});
