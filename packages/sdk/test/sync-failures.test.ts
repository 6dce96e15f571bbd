// A sync whose requests fail part of the way, and entries the server delivers again: nothing is
// skipped as forged for a failed lookup, no event is lost, and an old Welcome does not bring a
// removed device back.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  type CofferClient,
  type ConversationEvent,
  type FetchLike,
  memoryStore,
  SdkError,
} from '../src/index.js';
import {
  type ScriptedFailure,
  SERVER_URL,
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
}
interface User {
  name: string;
  client: CofferClient;
  accountId: string;
  /** The session token the client last sent. */
  token: string;
  /**
   * Makes the next request whose URL or body contains `part` (and method, if given) fail as a
   * connection reset.
   */
  failOnce(part: string, method?: string): void;
  /** The same, after the server has answered it: the request took effect, its answer is lost. */
  loseAnswerOnce(part: string, method?: string): void;
  /** Sees each request first; an answer it returns is the server's instead. */
  intercept?: (url: string, init: RequestInit) => Response | undefined;
  /** Sees (and may replace) each queue page the client reads. */
  queuePages?: (body: { messages: QueueEntry[] }) => { messages: QueueEntry[] } | undefined;
}

async function signup(
  prefix: string,
  overrides: Parameters<typeof testClient>[1] = {},
): Promise<User> {
  const name = username(prefix);
  const failures: ScriptedFailure[] = [];
  const user = {
    name,
    failOnce(part: string, method?: string) {
      failures.push({ part, method, after: false });
    },
    loseAnswerOnce(part: string, method?: string) {
      failures.push({ part, method, after: true });
    },
  } as User;
  const scripted = scriptedFetch(server, failures, user);
  const fetch: FetchLike = async (url, init) => {
    const auth = (init.headers as Record<string, string> | undefined)?.authorization;
    if (auth) user.token = auth.slice('Bearer '.length);
    return scripted(url, init);
  };
  user.client = await testClient({ fetch }, overrides);
  const { account } = await user.client.signup(name, `pw-${name}-long enough`);
  await user.client.conversations.sync();
  user.accountId = account.accountId;
  return user;
}

/** Alice creates the group "T" with Bob and Carol, who both join. */
async function team3(alice: User, bob: User, carol: User) {
  const team = await alice.client.conversations.create({
    name: 'T',
    members: [bob.name, carol.name],
  });
  await bob.client.conversations.sync();
  await carol.client.conversations.sync();
  return team;
}

/** A home whose next write of a names record fails (a full disk), once armed. */
function namesFailOnce() {
  const inner = memoryStore();
  let armed = false;
  return {
    arm: () => {
      armed = true;
    },
    armed: () => armed,
    /** The store underneath, which never fails: a later process opening the same home. */
    inner,
    store: {
      get: (name: string) => inner.get(name),
      delete: (name: string) => inner.delete(name),
      async put(name: string, value: Uint8Array) {
        if (armed && name.startsWith('names/')) {
          armed = false;
          throw new SdkError('STORE_UNAVAILABLE', 'test', 'local store unavailable (ENOSPC)');
        }
        await inner.put(name, value);
      },
    },
  };
}

const texts = (events: ConversationEvent[]) =>
  events.flatMap((e) => (e.type === 'message' ? [e.message.text] : []));
const errors = (events: ConversationEvent[]) =>
  events.flatMap((e) => (e.type === 'error' ? [e.error.detail ?? e.error.code] : []));
const networkError = (err: unknown) => SdkError.is(err, 'NETWORK');

describe('a sync that fails part of the way', () => {
  test('an acknowledgement that fails loses no event: the next sync reports them', async () => {
    const alice = await signup('alice');
    const bob = await signup('bob');
    const { id } = await alice.client.conversations.direct(bob.name);
    await bob.client.conversations.sync();
    await alice.client.conversations.send(id, 'one');
    await alice.client.conversations.send(id, 'two');
    bob.failOnce('/v1/queue/ack', 'POST');
    await expect(bob.client.conversations.sync()).rejects.toSatisfy(networkError);
    expect(texts(await bob.client.conversations.sync())).toEqual(['one', 'two']);
    expect((await bob.client.conversations.history(id)).map((m) => m.text)).toEqual(['one', 'two']);
  });

  test("a store failure while remembering a sender's name loses neither the message event nor the name", async () => {
    const alice = await signup('alice');
    // Bob's home: the write of his names record fails once (a full disk).
    const names = namesFailOnce();
    const { store } = names;
    const bob = await signup('bob', { store });
    const { id } = await alice.client.conversations.direct(bob.name);
    await bob.client.conversations.sync();
    await alice.client.conversations.send(id, 'hi');
    names.arm();
    // Her message states her name, which Bob's device does not know yet: confirmed, then stored.
    await expect(bob.client.conversations.sync()).rejects.toSatisfy((err) =>
      SdkError.is(err, 'STORE_UNAVAILABLE'),
    );
    expect(names.armed()).toBe(false);
    const events = [
      ...(await bob.client.conversations.unreported()),
      ...(await bob.client.conversations.sync()),
    ];
    expect(events).toEqual([
      expect.objectContaining({
        type: 'message',
        message: expect.objectContaining({
          text: 'hi',
          sender: expect.objectContaining({ username: alice.name }),
        }),
      }),
    ]);
  });

  test('a name whose record write failed is stored by the next sync, not only kept in memory', async () => {
    const alice = await signup('alice');
    const names = namesFailOnce();
    const { store } = names;
    const storeKey = new Uint8Array(32).fill(9);
    const bob = await signup('bob', { store, storeKey });
    const { id } = await alice.client.conversations.direct(bob.name);
    await bob.client.conversations.sync();
    await alice.client.conversations.send(id, 'hi');
    names.arm();
    await expect(bob.client.conversations.sync()).rejects.toSatisfy((err) =>
      SdkError.is(err, 'STORE_UNAVAILABLE'),
    );
    await bob.client.conversations.sync();
    // Bob's app starts again on the same home: the name was stored, not only remembered.
    const again = await testClient({ fetch: server.fetch }, { store: names.inner, storeKey });
    const [message] = await again.conversations.history(id);
    expect(message?.text).toBe('hi');
    expect(message?.sender.username).toBe(alice.name);
  });

  test('unreported() takes the events a failed sync kept, once', async () => {
    const alice = await signup('alice');
    const bob = await signup('bob');
    const { id } = await alice.client.conversations.direct(bob.name);
    await bob.client.conversations.sync();
    await alice.client.conversations.send(id, 'kept');
    expect(await bob.client.conversations.unreported()).toEqual([]);
    bob.loseAnswerOnce('/v1/queue/ack', 'POST');
    await expect(bob.client.conversations.sync()).rejects.toSatisfy(networkError);
    const heard: ConversationEvent[] = [];
    bob.client.conversations.on((e) => heard.push(e));
    expect(texts(await bob.client.conversations.unreported())).toEqual(['kept']);
    expect(texts(heard)).toEqual(['kept']);
    expect(await bob.client.conversations.unreported()).toEqual([]);
    expect(await bob.client.conversations.sync()).toEqual([]);
  });

  test("a Welcome whose members' manifests could not be fetched is opened by the next sync", async () => {
    const alice = await signup('alice');
    const bob = await signup('bob');
    bob.failOnce(`/v1/accounts/${alice.accountId}/manifest`);
    const { id } = await alice.client.conversations.direct(bob.name);
    await expect(bob.client.conversations.sync()).rejects.toSatisfy(networkError);
    const events = await bob.client.conversations.sync();
    expect(errors(events)).toEqual([]);
    expect(events.map((e) => e.type)).toContain('joined');
    await alice.client.conversations.send(id, 'hello bob');
    expect(texts(await bob.client.conversations.sync())).toEqual(['hello bob']);
  });

  test("a commit whose new member's manifest could not be fetched is processed by the next sync", async () => {
    const alice = await signup('alice');
    const bob = await signup('bob');
    const carol = await signup('carol');
    const { id } = await alice.client.conversations.create({ name: 'T', members: [bob.name] });
    await bob.client.conversations.sync();
    bob.failOnce(`/v1/accounts/${carol.accountId}/manifest`);
    await alice.client.conversations.add(id, [carol.name]);
    await alice.client.conversations.send(id, 'after carol joined');
    await expect(bob.client.conversations.sync()).rejects.toSatisfy(networkError);
    const events = await bob.client.conversations.sync();
    expect(errors(events)).toEqual([]);
    expect(texts(events)).toEqual(['after carol joined']);
    await alice.client.conversations.send(id, 'later');
    expect(texts(await bob.client.conversations.sync())).toEqual(['later']);
  });
});

describe('a sync that fails after reporting entries that store no cursor', () => {
  test('acknowledges what it handled, so their events are not reported twice', async () => {
    const alice = await signup('alice');
    const bob = await signup('bob');
    const carol = await signup('carol');
    const { id } = await alice.client.conversations.create({ name: 'T', members: [bob.name] });
    const elsewhere = await alice.client.conversations.create({ name: 'E', members: [carol.name] });
    await bob.client.conversations.sync();
    await alice.client.conversations.send(id, 'first');
    bob.failOnce(`/v1/accounts/${carol.accountId}/manifest`);
    await alice.client.conversations.add(id, [carol.name]);
    await alice.client.conversations.send(id, 'after carol joined');
    // The server names another conversation for the first entry: an error with no cursor to
    // store; then the commit's lookup fails and the sync with it.
    let first: number | undefined;
    bob.queuePages = (body) => {
      first ??= body.messages[0]?.cursor;
      return {
        ...body,
        messages: body.messages.map((m) =>
          m.cursor === first ? { ...m, groupId: elsewhere.id } : m,
        ),
      };
    };
    await expect(bob.client.conversations.sync()).rejects.toSatisfy(networkError);
    const events = await bob.client.conversations.sync();
    expect(errors(events)).toEqual(['UNKNOWN_GROUP']);
    expect(texts(events)).toEqual(['after carol joined']);
  });
});

describe('entries delivered again', () => {
  test('an old Welcome delivered again does not bring a removed device back', async () => {
    const alice = await signup('alice');
    const bob = await signup('bob');
    // Bob's one-time key packages are all claimed: his Welcome opens with his last-resort
    // package, which is kept, so the old Welcome would still open.
    const claimers = [await signup('c1'), await signup('c2')];
    for (let i = 0; i < 20; i++) {
      const res = await server.fetch(
        `${SERVER_URL}/v1/accounts/${bob.accountId}/key-packages/claim`,
        {
          method: 'POST',
          headers: {
            authorization: `Bearer ${claimers[i % 2]!.token}`,
            'content-type': 'application/json',
          },
          body: '{}',
        },
      );
      expect(res.status).toBe(200);
    }
    let welcome: QueueEntry | undefined;
    let last = 0;
    bob.queuePages = (body) => {
      for (const m of body.messages) {
        last = Math.max(last, m.cursor);
        if (m.kind === 'welcome') welcome ??= m;
      }
      return undefined;
    };
    const team = await alice.client.conversations.create({ name: 'T', members: [bob.name] });
    expect((await bob.client.conversations.sync()).map((e) => e.type)).toContain('joined');
    expect(welcome).toBeDefined();
    await alice.client.conversations.remove(team.id, [bob.name]);
    await bob.client.conversations.sync();
    expect((await bob.client.conversations.get(team.id)).active).toBe(false);
    bob.queuePages = (body) => {
      bob.queuePages = undefined;
      return { ...body, messages: [...body.messages, { ...welcome!, cursor: last + 1 }] };
    };
    const events = await bob.client.conversations.sync();
    expect(errors(events)).toEqual(['WELCOME_REPLAYED']);
    expect(events.map((e) => e.type)).not.toContain('joined');
    expect((await bob.client.conversations.get(team.id)).active).toBe(false);
  });
});

describe('a device that asked to leave', () => {
  test('renews no keys and sends nothing, and its syncs go on', async () => {
    let clock = Date.now();
    const alice = await signup('alice');
    const bob = await signup('bob', { now: () => clock });
    const team = await alice.client.conversations.create({ name: 'T', members: [bob.name] });
    await bob.client.conversations.sync();
    await bob.client.conversations.leave(team.id);
    // Past every renewal interval: a renewal would have to commit Bob's own removal.
    clock += 400 * 24 * 3600 * 1000;
    expect(errors(await bob.client.conversations.sync())).toEqual([]);
    await expect(bob.client.conversations.send(team.id, 'still here?')).rejects.toSatisfy((e) =>
      SdkError.is(e, 'NOT_FOUND'),
    );
    // Nor changes the group: refused by the device itself, not as data that does not verify.
    for (const change of [
      () => bob.client.conversations.rename(team.id, 'Mine now'),
      () => bob.client.conversations.remove(team.id, [alice.name]),
    ]) {
      await expect(change()).rejects.toSatisfy(
        (e) => SdkError.is(e, 'NOT_FOUND') && /asked to leave/.test(e.message),
      );
    }
    // Alice's next sync commits the removal; Bob sees he is out.
    await alice.client.conversations.sync();
    await bob.client.conversations.sync();
    expect((await bob.client.conversations.get(team.id)).active).toBe(false);
  });
});

describe('leaving a conversation nobody else is in', () => {
  test('drops it from the device (nobody could commit the removal)', async () => {
    const alice = await signup('alice');
    const notes = await alice.client.conversations.create({ name: 'notes' });
    await alice.client.conversations.leave(notes.id);
    expect((await alice.client.conversations.list()).map((c) => c.id)).not.toContain(notes.id);
    await expect(alice.client.conversations.get(notes.id)).rejects.toSatisfy((e) =>
      SdkError.is(e, 'NOT_FOUND'),
    );
    expect(errors(await alice.client.conversations.sync())).toEqual([]);
  });
});

describe('a request to leave that a commit voided', () => {
  test('is asked again, and the device is out after the next commit', async () => {
    const alice = await signup('alice');
    const bob = await signup('bob');
    const team = await alice.client.conversations.create({ name: 'T', members: [bob.name] });
    await bob.client.conversations.sync();
    await bob.client.conversations.leave(team.id);
    // Alice commits in the same epoch before reading Bob's request: MLS proposals live one
    // epoch, so her commit voids it.
    await alice.client.conversations.rename(team.id, 'Renamed');
    await bob.client.conversations.sync(); // reads the rename; asks again
    await alice.client.conversations.sync(); // commits the request asked again
    await bob.client.conversations.sync();
    expect((await bob.client.conversations.get(team.id)).active).toBe(false);
    expect((await alice.client.conversations.get(team.id)).members.map((m) => m.username)).toEqual([
      alice.name,
    ]);
  });
});

describe('a request to leave that the server refused', () => {
  test('is taken back: the device stays a member, sends, and can leave again', async () => {
    const alice = await signup('alice');
    const bob = await signup('bob');
    const team = await alice.client.conversations.create({ name: 'T', members: [bob.name] });
    await bob.client.conversations.sync();
    bob.intercept = (url, init) => {
      if (!url.includes('/messages') || !String(init.body).includes('"kind":"proposal"')) return;
      bob.intercept = undefined;
      return Response.json(
        { error: { code: 'RATE_LIMITED', message: 'too many attempts' } },
        { status: 429, headers: { 'retry-after': '1' } },
      );
    };
    await expect(bob.client.conversations.leave(team.id)).rejects.toSatisfy((e) =>
      SdkError.is(e, 'RATE_LIMITED'),
    );
    expect(bob.intercept).toBeUndefined();
    // Nobody got the request: Bob is a member as before, and his messages go out.
    await bob.client.conversations.send(team.id, 'still here');
    expect(texts(await alice.client.conversations.sync())).toEqual(['still here']);
    expect((await bob.client.conversations.get(team.id)).active).toBe(true);
    // Asked again, the request goes through; Alice's next sync commits it.
    await bob.client.conversations.leave(team.id);
    await alice.client.conversations.sync();
    await bob.client.conversations.sync();
    expect((await bob.client.conversations.get(team.id)).active).toBe(false);
    expect((await alice.client.conversations.get(team.id)).members.map((m) => m.username)).toEqual([
      alice.name,
    ]);
  });
});

describe('a commit whose answer was lost', () => {
  test('taken, then this device removed: the queue settles it, and the device is out', async () => {
    const alice = await signup('alice');
    const bob = await signup('bob', { conversations: { selfUpdateAfterMessages: 1 } });
    const team = await alice.client.conversations.create({ name: 'T', members: [bob.name] });
    await bob.client.conversations.sync();
    // Bob's send renews his keys: the commit reaches the server, its answer does not.
    bob.loseAnswerOnce('"kind":"commit"', 'POST');
    await bob.client.conversations.send(team.id, 'hi');
    expect(texts(await alice.client.conversations.sync())).toEqual(['hi']);
    await alice.client.conversations.remove(team.id, [bob.name]);
    // Bob, no longer routed, cannot ask the server about the group (403): the queue decides.
    const events = await bob.client.conversations.sync();
    expect(errors(events)).toEqual([]);
    expect((await bob.client.conversations.get(team.id)).active).toBe(false);
  });
});

describe('a history bundle whose upload failed', () => {
  test('is sent by a later sync, and the new device gets the history', async () => {
    let clock = Date.now();
    const alice = await signup('alice', { now: () => clock });
    const bob = await signup('bob');
    const { id } = await alice.client.conversations.direct(bob.name);
    await bob.client.conversations.sync();
    await bob.client.conversations.send(id, 'before the phone');
    await alice.client.conversations.sync();
    const phone = await testClient(server);
    await phone.login(alice.name, `pw-${alice.name}-long enough`);
    await phone.conversations.sync();
    // Alice's first device adds the phone everywhere; the bundle's upload fails, and is kept
    // for the next sync.
    alice.failOnce('/v1/blobs', 'POST');
    await alice.client.conversations.sync();
    const before = await phone.conversations.sync();
    expect(before.map((e) => e.type)).toEqual(['joined']);
    // Tried again at most once a minute (each try uploads the whole bundle).
    await alice.client.conversations.sync();
    expect((await phone.conversations.sync()).filter((e) => e.type === 'history')).toEqual([]);
    clock += 61_000;
    await alice.client.conversations.sync();
    const events = await phone.conversations.sync();
    expect(events.filter((e) => e.type === 'history')).toEqual([
      { type: 'history', conversationId: id, count: 1 },
    ]);
    expect((await phone.conversations.history(id)).map((m) => m.text)).toEqual([
      'before the phone',
    ]);
    // Sent once: the next syncs send nothing more.
    await alice.client.conversations.sync();
    expect((await phone.conversations.sync()).filter((e) => e.type === 'history')).toEqual([]);
  });
});

describe('a history bundle whose download fails', () => {
  test('is merged by a later sync: its entry is not taken as handled before the merge', async () => {
    const alice = await signup('alice');
    const bob = await signup('bob');
    const { id } = await alice.client.conversations.direct(bob.name);
    await bob.client.conversations.sync();
    for (const text of ['old one', 'old two']) await bob.client.conversations.send(id, text);
    await alice.client.conversations.sync();
    // The new device's download of the bundle breaks off once (a connection reset).
    let failDownload = true;
    const flaky: FetchLike = async (url, init) => {
      if (failDownload && url.includes('/v1/blobs/') && (init.method ?? 'GET') === 'GET') {
        failDownload = false;
        throw new TypeError('connection reset');
      }
      return server.fetch(url, init);
    };
    const phone = await testClient({ fetch: flaky });
    await phone.login(alice.name, `pw-${alice.name}-long enough`);
    await phone.conversations.sync();
    await alice.client.conversations.sync(); // adds the phone, sends it the bundle
    const first = await phone.conversations.sync().then(
      (events) => events,
      (err: unknown) => err,
    );
    expect(failDownload).toBe(false);
    // Failing, or reporting the failure, is fine; losing the bundle for good is not.
    const events = [...(Array.isArray(first) ? first : []), ...(await phone.conversations.sync())];
    expect(events.filter((e) => e.type === 'history')).toEqual([
      { type: 'history', conversationId: id, count: 2 },
    ]);
    expect((await phone.conversations.history(id, { limit: 10 })).map((m) => m.text)).toEqual([
      'old one',
      'old two',
    ]);
  });
});

describe('a history bundle whose download keeps failing', () => {
  test('is given up after five syncs over an hour, and the queue moves on', async () => {
    let clock = Date.now();
    const alice = await signup('alice');
    const bob = await signup('bob');
    const { id } = await alice.client.conversations.direct(bob.name);
    await bob.client.conversations.sync();
    await bob.client.conversations.send(id, 'old');
    await alice.client.conversations.sync();
    // Every download of a blob by the new device breaks off (a blob store that is down).
    const broken: FetchLike = async (url, init) => {
      if (url.includes('/v1/blobs/') && (init.method ?? 'GET') === 'GET')
        throw new TypeError('connection reset');
      return server.fetch(url, init);
    };
    const phone = await testClient({ fetch: broken }, { now: () => clock });
    await phone.login(alice.name, `pw-${alice.name}-long enough`);
    await phone.conversations.sync();
    await alice.client.conversations.sync(); // adds the phone, sends it the bundle
    await bob.client.conversations.send(id, 'after the bundle');
    // Many syncs in a short outage (follow syncs at every push) give nothing up.
    for (let i = 0; i < 8; i++)
      await expect(phone.conversations.sync()).rejects.toSatisfy(networkError);
    clock += 61 * 60 * 1000;
    const events = await phone.conversations.sync();
    expect(errors(events)).toEqual(['HISTORY_UNAVAILABLE']);
    expect(texts(events)).toEqual(['after the bundle']);
    expect((await phone.conversations.history(id)).map((m) => m.text)).toEqual([
      'after the bundle',
    ]);
  });
});

describe('a history bundle that arrives after a long history', () => {
  test('its messages go before every message the device stored, none lost or repeated', async () => {
    let clock = Date.now();
    const alice = await signup('alice', { now: () => clock });
    const bob = await signup('bob');
    const { id } = await alice.client.conversations.direct(bob.name);
    await bob.client.conversations.sync();
    // More than a chunk's worth, so the merge spans two older chunks.
    const before = Array.from({ length: 70 }, (_, i) => `b${i}`);
    for (const text of before) await bob.client.conversations.send(id, text);
    await alice.client.conversations.sync();
    const phone = await testClient(server);
    await phone.login(alice.name, `pw-${alice.name}-long enough`);
    await phone.conversations.sync();
    alice.failOnce('/v1/blobs', 'POST'); // the bundle waits for a later sync
    await alice.client.conversations.sync();
    await phone.conversations.sync();
    // Meanwhile the phone stores enough messages to move some to its older chunks.
    const later = Array.from({ length: 140 }, (_, i) => `m${i}`);
    for (const text of later) await bob.client.conversations.send(id, text);
    await phone.conversations.sync();
    clock += 61_000;
    await alice.client.conversations.sync();
    const events = await phone.conversations.sync();
    expect(events.filter((e) => e.type === 'history' || e.type === 'error')).toEqual([
      { type: 'history', conversationId: id, count: 70 },
    ]);
    const texts = (await phone.conversations.history(id, { limit: 1000 })).map((m) => m.text);
    expect(texts).toEqual([...before, ...later]);
    expect((await phone.conversations.history(id, { limit: 2 })).map((m) => m.text)).toEqual(
      later.slice(-2),
    );
  });
});

describe('a rejoin from the stored group info', () => {
  test('an info older than the epoch the server names is refused, not joined on a dead branch', async () => {
    const alice = await signup('alice');
    const bob = await signup('bob');
    const carol = await signup('carol');
    // The sealed GroupInfo each of Alice's commits stores.
    let latest: string | undefined;
    alice.intercept = (url, init) => {
      const body = typeof init.body === 'string' ? init.body : '';
      if (url.includes('/messages') && body.includes('"commit"'))
        latest = (JSON.parse(body) as { groupInfo?: string }).groupInfo ?? latest;
      return undefined;
    };
    const team = await team3(alice, bob, carol);
    const stale = latest;
    await alice.client.conversations.rename(team.id, 'T2');
    expect(stale).toBeDefined();
    await carol.client.conversations.sync();
    // The server withholds the rename from Bob, then hands him the old GroupInfo as current.
    bob.queuePages = (body) => ({
      ...body,
      messages: body.messages.filter((m) => m.kind !== 'commit'),
    });
    const epoch = (await alice.client.conversations.get(team.id)).epoch;
    bob.intercept = (url) =>
      url.endsWith(`/v1/groups/${team.id}/info`)
        ? Response.json({ epoch, groupInfo: stale })
        : undefined;
    await alice.client.conversations.send(team.id, 'in the new epoch');
    const events = await bob.client.conversations.sync();
    expect(errors(events)).toEqual(['MLS_MESSAGE_REJECTED', 'STALE_GROUP_INFO']);
    expect(events.map((e) => e.type)).not.toContain('resynced');
    // Nothing of Bob's reached the group: the others go on undisturbed.
    expect(errors(await alice.client.conversations.sync())).toEqual([]);
    expect(errors(await carol.client.conversations.sync())).toEqual([]);
  });

  test('a rejoin whose answer was lost is settled by the next sync, with no leaf left behind', async () => {
    const alice = await signup('alice');
    const bob = await signup('bob');
    const carol = await signup('carol');
    const team = await team3(alice, bob, carol);
    await alice.client.conversations.rename(team.id, 'T2');
    bob.queuePages = (body) => ({
      ...body,
      messages: body.messages.filter((m) => m.kind !== 'commit'),
    });
    await alice.client.conversations.send(team.id, 'in the new epoch');
    // Bob falls behind and rejoins; his external commit reaches the server, its answer does not.
    bob.loseAnswerOnce('"kind":"commit"', 'POST');
    const events = await bob.client.conversations.sync();
    expect(errors(events)).toEqual(['MLS_MESSAGE_REJECTED', 'NETWORK']);
    bob.queuePages = undefined;
    expect(errors(await bob.client.conversations.sync())).toEqual([]);
    expect((await bob.client.conversations.get(team.id)).name).toBe('T2');
    expect(errors(await alice.client.conversations.sync())).toEqual([]);
    expect((await alice.client.conversations.get(team.id)).members).toHaveLength(3);
    await alice.client.conversations.send(team.id, 'welcome back');
    expect(texts(await bob.client.conversations.sync())).toEqual(['welcome back']);
  });
});
