// Two clients given one memoryStore (one page, one process) take turns as two processes on one
// home do: before, the store had no lock, and both sent from the same MLS state, sealing two
// different messages under one key and nonce (one of them then failed to open at the receiver).
import { randomBytes } from '@coffer/crypto';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { memoryStore } from '../src/index.js';
import { type TestServer, testClient, testServer, username } from './_server.js';

let server: TestServer;
beforeAll(async () => {
  server = await testServer();
});
afterAll(async () => {
  await server?.close();
});

test('memoryStore takes turns: holders wait for each other, release is idempotent', async () => {
  const store = memoryStore();
  const order: string[] = [];
  const first = await store.lock!('a');
  const second = store.lock!('b').then((release) => {
    order.push('b');
    return release;
  });
  await new Promise((r) => setTimeout(r, 20));
  order.push('a done');
  await first();
  await first();
  await (await second)();
  expect(order).toEqual(['a done', 'b']);
});

test('two clients on one memoryStore sending at once: every message opens at the receiver', async () => {
  const store = memoryStore();
  const storeKey = randomBytes(32);
  const a1 = await testClient(server, { store, storeKey: storeKey.slice() });
  const alice = username('alice');
  await a1.signup(alice, 'pw-alice-long enough');
  await a1.conversations.sync(); // uploads this device's key packages
  const a2 = await testClient(server, { store, storeKey: storeKey.slice() });
  const bob = await testClient(server);
  const bobName = username('bob');
  await bob.signup(bobName, 'pw-bob-long enough');
  await bob.conversations.sync();
  const chat = await a1.conversations.direct(bobName);
  await Promise.all(
    Array.from({ length: 6 }, (_, i) => (i % 2 ? a2 : a1).conversations.send(chat.id, `m${i}`)),
  );
  const events = await bob.conversations.sync();
  expect(events.filter((e) => e.type === 'error')).toEqual([]);
  const texts = events.flatMap((e) => (e.type === 'message' ? [e.message.text] : []));
  expect(texts.sort()).toEqual(['m0', 'm1', 'm2', 'm3', 'm4', 'm5']);
  for (const c of [a1, a2, bob]) await c.close();
});
