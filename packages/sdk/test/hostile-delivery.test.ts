// A server that misbehaves in conversations: each case ends in a named error (a thrown SdkError
// or an `error` event — never silence), no state is corrupted, and the conversation goes on.
import { toBase64url } from '@coffer/crypto';
import { createTsMlsEngine, memberIdentity, newAccountId, newDeviceId } from '@coffer/protocol';
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
  deviceId: string;
  /** Replace to play the hostile server for this user's requests. */
  rewrite: { fn: Rewrite | undefined };
}

async function signup(prefix: string): Promise<User> {
  const name = username(prefix);
  const rewrite: { fn: Rewrite | undefined } = { fn: undefined };
  const { fetch } = tap(server.fetch, (req, body) => rewrite.fn?.(req, body));
  const client = await testClient({ fetch });
  const { account } = await client.signup(name, `pw-${name}-long enough`);
  await client.conversations.sync();
  return { name, client, accountId: account.accountId, deviceId: account.deviceId, rewrite };
}

type QueueEntry = {
  cursor: number;
  groupId: string;
  seq: number;
  epoch: number;
  kind: string;
  sender: { accountId: string; deviceId: string };
  message: string;
};

/** Rewrites the next non-empty queue page once. */
function onQueue(user: User, change: (messages: QueueEntry[]) => QueueEntry[]): void {
  user.rewrite.fn = (req, body) => {
    if (req.method !== 'GET' || !req.path.startsWith('/v1/queue')) return undefined;
    const page = body as { messages: QueueEntry[]; more: boolean };
    if (page.messages.length === 0) return undefined;
    user.rewrite.fn = undefined;
    return { ...page, messages: change(page.messages) };
  };
}

/**
 * From now on, the server keeps the first queue entry of `kind` it would give `user` (and
 * every later delivery of it) to itself, for good. Returns that entry's seq once seen.
 */
function withholdFirst(user: User, kind: string): () => number | undefined {
  let withheld: number | undefined;
  user.rewrite.fn = (req, body) => {
    if (req.method !== 'GET' || !req.path.startsWith('/v1/queue')) return undefined;
    const page = body as { messages: QueueEntry[]; more: boolean };
    const messages = page.messages.filter((m) => {
      if (m.kind !== kind || (withheld !== undefined && m.seq !== withheld)) return true;
      withheld = m.seq;
      return false;
    });
    return { ...page, messages };
  };
  return () => withheld;
}

/** Alice creates a group with Bob and Carol, who both join. */
async function team3(): Promise<{ alice: User; bob: User; carol: User; id: string }> {
  const alice = await signup('alice');
  const bob = await signup('bob');
  const carol = await signup('carol');
  const { id } = await alice.client.conversations.create({
    name: 'T',
    members: [bob.name, carol.name],
  });
  await bob.client.conversations.sync();
  await carol.client.conversations.sync();
  return { alice, bob, carol, id };
}

const errors = (events: ConversationEvent[]) =>
  events.flatMap((e) => (e.type === 'error' ? [e.error.detail] : []));
const texts = (events: ConversationEvent[]) =>
  events.flatMap((e) => (e.type === 'message' ? [e.message.text] : []));

async function pair(): Promise<{ alice: User; bob: User; id: string }> {
  const alice = await signup('alice');
  const bob = await signup('bob');
  const { id } = await alice.client.conversations.direct(bob.name);
  await bob.client.conversations.sync();
  return { alice, bob, id };
}

describe('a hostile delivery service', () => {
  test("reflecting a device's own message back to it is reported, and ignored", async () => {
    const { alice, bob, id } = await pair();
    await alice.client.conversations.send(id, 'one');
    onQueue(bob, (messages) =>
      messages.map((m) => ({ ...m, sender: { accountId: bob.accountId, deviceId: bob.deviceId } })),
    );
    expect(errors(await bob.client.conversations.sync())).toEqual(['REFLECTED']);
    await alice.client.conversations.send(id, 'two');
    expect(texts(await bob.client.conversations.sync())).toEqual(['two']);
  });

  test('a replayed old message is rejected by MLS; the conversation goes on', async () => {
    const { alice, bob, id } = await pair();
    await alice.client.conversations.send(id, 'original');
    let captured: QueueEntry | undefined;
    onQueue(bob, (messages) => {
      captured = messages[0];
      return messages;
    });
    expect(texts(await bob.client.conversations.sync())).toEqual(['original']);
    // Later, the server slips the same ciphertext in again under a new seq and cursor.
    await alice.client.conversations.send(id, 'next');
    onQueue(bob, (messages) => [
      { ...(captured as QueueEntry), cursor: messages[0]!.cursor, seq: messages[0]!.seq },
      ...messages.slice(1).map((m) => m),
      { ...messages[0]!, cursor: messages[0]!.cursor + 1000, seq: messages[0]!.seq + 1 },
    ]);
    const events = await bob.client.conversations.sync();
    expect(errors(events)).toEqual(['MLS_MESSAGE_REJECTED']);
    expect(texts(events)).toEqual(['next']);
    expect((await bob.client.conversations.history(id)).map((m) => m.text)).toEqual([
      'original',
      'next',
    ]);
  });

  test('a duplicated delivery is dropped without a second copy', async () => {
    const { alice, bob, id } = await pair();
    await alice.client.conversations.send(id, 'once');
    onQueue(bob, (messages) => [
      ...messages,
      { ...messages[0]!, cursor: messages[messages.length - 1]!.cursor + 1 },
    ]);
    expect(texts(await bob.client.conversations.sync())).toEqual(['once']);
    expect(await bob.client.conversations.history(id)).toHaveLength(1);
  });

  test('a queue entry with a malformed conversation id is reported and skipped', async () => {
    const { alice, bob, id } = await pair();
    await alice.client.conversations.send(id, 'one');
    await alice.client.conversations.send(id, 'two');
    // An id too long to be one (and to name a record): it must not stall the queue.
    onQueue(bob, ([first, ...rest]) => [
      { ...(first as QueueEntry), groupId: 'A'.repeat(120) },
      ...rest,
    ]);
    const events = await bob.client.conversations.sync();
    expect(errors(events)).toEqual(['INVALID_GROUP_ID']);
    expect(texts(events)).toEqual(['two']);
    await alice.client.conversations.send(id, 'three');
    expect(texts(await bob.client.conversations.sync())).toEqual(['three']);
  });

  test('a message attributed to another sender than its MLS signature says is refused', async () => {
    const { alice, bob, carol, id } = await team3();
    await alice.client.conversations.send(id, 'from alice');
    onQueue(bob, (messages) =>
      messages.map((m) => ({
        ...m,
        sender: { accountId: carol.accountId, deviceId: carol.deviceId },
      })),
    );
    expect(errors(await bob.client.conversations.sync())).toEqual(['SENDER_MISMATCH']);
  });

  test('a key package the manifest does not back is never added', async () => {
    const alice = await signup('alice');
    const bob = await signup('bob');
    const engine = await createTsMlsEngine({ validateCredential: async () => true });
    // (a) another device's package under Bob's device id; (b) Bob's device id with a key the
    // server made up (a swapped key).
    const other = await engine.createKeyPackage({
      identity: memberIdentity(newAccountId(), newDeviceId()),
    });
    const swapped = await engine.createKeyPackage({
      identity: memberIdentity(bob.accountId, bob.deviceId),
    });
    for (const [forged, detail] of [
      [other, 'UNLISTED_DEVICE'],
      [swapped, 'KEY_MISMATCH'],
    ] as const) {
      alice.rewrite.fn = (req, body) => {
        if (!req.path.endsWith('/key-packages/claim')) return undefined;
        const b = body as { keyPackages: { deviceId: string; keyPackage: string }[] };
        return {
          keyPackages: b.keyPackages.map((k) => ({
            ...k,
            keyPackage: toBase64url(forged.publicKeyPackage),
          })),
        };
      };
      const err = await alice.client.conversations.direct(bob.name).catch((e) => e);
      expect(SdkError.is(err, 'PROTOCOL_VIOLATION')).toBe(true);
      expect((err as SdkError).detail).toBe(detail);
    }
  });

  test('one one-time key package handed to two people: the second Welcome is reported', async () => {
    const alice = await signup('alice');
    const carol = await signup('carol');
    const bob = await signup('bob');
    let first: string | undefined;
    const replay: Rewrite = (req, body) => {
      if (!req.path.endsWith('/key-packages/claim')) return undefined;
      const b = body as {
        keyPackages: { deviceId: string; keyPackage: string; lastResort: boolean }[];
      };
      first ??= b.keyPackages[0]?.keyPackage;
      return { keyPackages: b.keyPackages.map((k) => ({ ...k, keyPackage: first })) };
    };
    alice.rewrite.fn = replay;
    carol.rewrite.fn = replay;
    await alice.client.conversations.direct(bob.name);
    await carol.client.conversations.direct(bob.name);
    const events = await bob.client.conversations.sync();
    expect(events.map((e) => e.type)).toEqual(['joined', 'error']);
    expect(errors(events)).toEqual(['KEY_PACKAGE_USED']);
  });

  test('a withheld commit is detected, and the device rejoins by itself', async () => {
    const { alice, bob, carol, id } = await team3();
    await alice.client.conversations.rename(id, 'T2');
    await carol.client.conversations.sync();
    // The server keeps the rename's commit from Bob, for good.
    const withheld = withholdFirst(bob, 'commit');
    expect(await bob.client.conversations.sync()).toEqual([]);
    expect(withheld()).toBeDefined();
    await alice.client.conversations.send(id, 'in the new epoch');
    const seen = await bob.client.conversations.sync();
    expect(errors(seen)).toEqual(['MLS_MESSAGE_REJECTED']);
    expect(seen.map((e) => e.type)).toEqual(['error', 'resynced']);
    expect((await bob.client.conversations.get(id)).name).toBe('T2');
    // The others take Bob's rejoin (an external commit) and the conversation goes on.
    expect(errors(await alice.client.conversations.sync())).toEqual([]);
    expect(errors(await carol.client.conversations.sync())).toEqual([]);
    await carol.client.conversations.send(id, 'welcome back');
    expect(texts(await bob.client.conversations.sync())).toEqual(['welcome back']);
    await bob.client.conversations.send(id, 'thanks');
    expect(texts(await alice.client.conversations.sync())).toEqual(['welcome back', 'thanks']);
    expect((await alice.client.conversations.get(id)).members).toHaveLength(3);
  });

  test('a fork (different commits for one epoch to different members) is detected and left', async () => {
    const alice = await signup('alice');
    const bob = await signup('bob');
    // Carol's client renews its keys after every message she sends; the server keeps her
    // first renewal (a commit) to itself and tells her the connection failed.
    let kept: string | undefined;
    const carolFetch: typeof server.fetch = async (url, init) => {
      const body = typeof init.body === 'string' ? init.body : '';
      if (kept === undefined && url.includes('/messages') && body.includes('"commit"')) {
        kept = (JSON.parse(body) as { message: string }).message;
        throw new TypeError('connection reset');
      }
      return server.fetch(url, init);
    };
    const carolName = username('carol');
    const carol = await testClient(
      { fetch: carolFetch },
      { conversations: { selfUpdateAfterMessages: 1 } },
    );
    await carol.signup(carolName, `pw-${carolName}-long enough`);
    await carol.conversations.sync();
    const team = await alice.client.conversations.create({
      name: 'T',
      members: [bob.name, carolName],
    });
    await bob.client.conversations.sync();
    await carol.conversations.sync();
    await carol.conversations.send(team.id, 'hi all');
    expect(kept).toBeDefined();
    // Alice's rename is the commit the server takes for this epoch; Bob is given Carol's.
    await alice.client.conversations.rename(team.id, 'T2');
    onQueue(bob, (messages) =>
      messages.map((m) => (m.kind === 'commit' ? { ...m, message: kept as string } : m)),
    );
    const forked = await bob.client.conversations.sync();
    expect(texts(forked)).toEqual(['hi all']);
    expect((await bob.client.conversations.get(team.id)).name).toBe('T'); // Carol's branch
    await alice.client.conversations.send(team.id, 'on the real branch');
    const seen = await bob.client.conversations.sync();
    expect(errors(seen)).toEqual(['MLS_MESSAGE_REJECTED', 'FORK_DETECTED']);
    expect(seen.at(-1)?.type).toBe('resynced');
    expect((await bob.client.conversations.get(team.id)).name).toBe('T2');
    await alice.client.conversations.sync();
    await carol.conversations.sync();
    await carol.conversations.send(team.id, 'all together again');
    expect(texts(await bob.client.conversations.sync())).toEqual(['all together again']);
  });

  test('messages the server drops are noticed at the next one from that sender', async () => {
    const { alice, bob, id } = await pair();
    await alice.client.conversations.send(id, 'one');
    expect(texts(await bob.client.conversations.sync())).toEqual(['one']);
    await alice.client.conversations.send(id, 'two');
    await alice.client.conversations.send(id, 'three');
    // The server keeps 'two' from Bob for good.
    withholdFirst(bob, 'application');
    await alice.client.conversations.send(id, 'four');
    const events = await bob.client.conversations.sync();
    expect(errors(events)).toEqual(['MESSAGES_MISSING']);
    expect(texts(events)).toEqual(['three', 'four']);
    // Duplicates and replays are not counted as missing.
    expect(errors(await bob.client.conversations.sync())).toEqual([]);
  });
});
