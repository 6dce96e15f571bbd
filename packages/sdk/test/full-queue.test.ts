// A device that stays away (a lost phone nobody revoked) while its queue fills: the others go on
// talking (the server skips a full queue instead of refusing the message for everyone, spec
// http-api-v1 "Delivery"), and the device, once back, sees what it missed as a gap and catches up
// by itself. Before, every send to the conversation failed with CONFLICT (QUEUE_FULL) until
// someone removed the device.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { CofferClient, ConversationEvent } from '../src/index.js';
import { type TestServer, testClient, testServer, username } from './_server.js';

const CAP = 6;
let server: TestServer;
beforeAll(async () => {
  server = await testServer({ maxQueueEntries: CAP });
});
afterAll(async () => {
  await server?.close();
});

async function signup(prefix: string) {
  const name = username(prefix);
  const client = await testClient(server);
  const { account } = await client.signup(name, `pw-${name}-long enough`);
  await client.conversations.sync(); // uploads this device's key packages
  return { name, client, accountId: account.accountId };
}

const texts = (events: ConversationEvent[]) =>
  events.flatMap((e) => (e.type === 'message' ? [e.message.text] : []));
const errors = (events: ConversationEvent[]) =>
  events.flatMap((e) => (e.type === 'error' ? [e.error.detail ?? e.error.code] : []));

async function drain(client: CofferClient): Promise<ConversationEvent[]> {
  const all: ConversationEvent[] = [];
  for (let i = 0; i < 5; i++) {
    const events = await client.conversations.sync();
    all.push(...events);
    if (events.length === 0) break;
  }
  return all;
}

describe('a device whose queue is full', { timeout: 60_000 }, () => {
  test('in one epoch: the group goes on; the device reads what reached it and is told of the gap', async () => {
    const alice = await signup('alice');
    const bob = await signup('bob');
    const carol = await signup('carol');
    const group = await alice.client.conversations.create({
      name: 'busy',
      members: [bob.name, carol.name],
    });
    await bob.client.conversations.sync();
    await carol.client.conversations.sync();
    // Bob goes away. Alice and Carol talk past his queue's cap: no send fails.
    for (let i = 0; i < CAP + 3; i++) {
      const who = i % 2 ? carol : alice;
      await who.client.conversations.send(group.id, `m${i}`);
    }
    expect(texts(await drain(carol.client))).toEqual(
      Array.from({ length: CAP + 3 }, (_, i) => `m${i}`).filter((_, i) => i % 2 === 0),
    );
    // Bob comes back: what his queue held, then, once it has room, what is sent next; the
    // messages skipped meanwhile are reported missing, never silently.
    const back = await drain(bob.client);
    const got = texts(back);
    expect(got.length).toBeLessThan(CAP + 3);
    const order = got.map((t) => Number(t?.slice(1)));
    expect(order).toEqual([...order].sort((x, y) => x - y));
    await alice.client.conversations.send(group.id, 'after');
    await carol.client.conversations.send(group.id, 'and more');
    const later = await drain(bob.client);
    expect(texts(later)).toEqual(['after', 'and more']);
    expect([...errors(back), ...errors(later)]).toContain('MESSAGES_MISSING');
    await bob.client.conversations.send(group.id, 'bob is back');
    expect(texts(await drain(alice.client))).toContain('bob is back');
    for (const u of [alice, bob, carol]) await u.client.close();
  });

  test('across commits: the device rejoins from the GroupInfo and talks again', async () => {
    const alice = await signup('alice');
    const bob = await signup('bob');
    const carol = await signup('carol');
    const group = await alice.client.conversations.create({
      name: 'moving on',
      members: [bob.name, carol.name],
    });
    await bob.client.conversations.sync();
    await carol.client.conversations.sync();
    for (let i = 0; i < CAP + 2; i++) await alice.client.conversations.send(group.id, `x${i}`);
    // The group moves to a new epoch while Bob's queue is full: he misses the commit.
    await alice.client.conversations.rename(group.id, 'moved on');
    await carol.client.conversations.sync();
    await carol.client.conversations.send(group.id, 'in the new epoch');
    // Back: what his queue held (nothing newer reached him, so no gap shows yet).
    expect(texts(await drain(bob.client))).toEqual(Array.from({ length: CAP }, (_, i) => `x${i}`));
    // The next message is of an epoch he never reached: he rejoins from the GroupInfo (that one
    // message, sealed for the epoch he skipped, stays unreadable to him, and is said so).
    await alice.client.conversations.send(group.id, 'ping');
    const caught = await drain(bob.client);
    expect(caught.some((e) => e.type === 'resynced')).toBe(true);
    expect(errors(caught).length).toBeGreaterThan(0);
    await alice.client.conversations.send(group.id, 'welcome back');
    const later = await drain(bob.client);
    expect(texts(later)).toEqual(['welcome back']);
    expect((await bob.client.conversations.get(group.id)).name).toBe('moved on');
    await bob.client.conversations.send(group.id, 'thanks');
    expect(texts(await drain(alice.client))).toContain('thanks');
    for (const u of [alice, bob, carol]) await u.client.close();
  });
});
