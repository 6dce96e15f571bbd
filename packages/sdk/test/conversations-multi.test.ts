// Every device of every member, over the real server on SQLite and on PostgreSQL: two and three
// users with two devices each, 1:1 and a group. Every device reads every message exactly once,
// sends from second devices arrive everywhere, an account's own messages from its other device
// are `own`, and a revoked device is taken out of the conversations and reads nothing new.
//
// Two bugs these tests found and that are fixed: a contact first seen past manifest seq 1 could
// not be verified (its identity key is now pinned on first sight, conversation-v1 §6), and a
// revoked device, whose routes the server ends at once, made every post to its conversations
// fail (posts now leave out devices the members' newest manifests no longer list).
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { testDialects } from '../../server/test/_db.js';
import type { CofferClient, ConversationMessage } from '../src/index.js';
import { SdkError } from '../src/index.js';
import { type TestServer, testClient, testServer, username } from './_server.js';

const dialects = await testDialects();

/** One device of one user. */
interface Device {
  readonly label: string;
  readonly name: string;
  readonly accountId: string;
  readonly deviceId: string;
  readonly client: CofferClient;
  /** Every message event its syncs returned, in order. */
  readonly received: ConversationMessage[];
}

const password = (name: string) => `pw-${name}-long enough`;

describe.each(dialects)('every device of every member (%s)', (dialect) => {
  let server: TestServer;
  beforeAll(async () => {
    server = await testServer({ database: dialect });
  });
  afterAll(() => server.close());

  async function signup(label: string): Promise<Device> {
    const name = username(label);
    const client = await testClient(server);
    const { account } = await client.signup(name, password(name));
    await client.conversations.sync(); // uploads this device's key packages
    const { accountId, deviceId } = account;
    return { label, name, accountId, deviceId, client, received: [] };
  }

  /** A second device: a login on a fresh home, then one sync (its key packages). */
  async function secondDevice(first: Device, label: string): Promise<Device> {
    const client = await testClient(server);
    const account = await client.login(first.name, password(first.name));
    expect(account.deviceId).not.toBe(first.deviceId);
    const device = { ...first, label, deviceId: account.deviceId, client, received: [] };
    await sync(device);
    return device;
  }

  async function sync(device: Device) {
    const events = await device.client.conversations.sync();
    for (const e of events) {
      if (e.type === 'error')
        throw new Error(`${device.label}: ${e.error.code} ${e.error.message}`);
      // The account's own conversation (history for its new devices) is never the app's.
      if ('conversation' in e && e.conversation.kind === 'self')
        throw new Error(`${device.label}: a ${e.type} event of the account's own conversation`);
      if (e.type === 'message') device.received.push(e.message);
    }
    return events;
  }

  /** Syncs every device, round after round, until a whole round brings nothing new. */
  async function settle(devices: readonly Device[]) {
    for (let round = 0; round < 6; round++) {
      let quiet = true;
      for (const d of devices) if ((await sync(d)).length > 0) quiet = false;
      if (quiet) return;
    }
    throw new Error('the devices did not settle in 6 rounds');
  }

  const memberDevices = async (d: Device, id: string) =>
    (await d.client.conversations.get(id)).members.map((m) => m.deviceId).sort();

  /**
   * Each device in turn sends one message; after each, every other device syncs and must get
   * exactly that message, from that device, `own` exactly when it is the same account's.
   */
  async function everyoneSendsToEveryone(devices: readonly Device[], id: string) {
    const sent: string[] = [];
    for (const from of devices) {
      const text = `from ${from.label} ${Math.random().toString(36).slice(2, 8)}`;
      const message = await from.client.conversations.send(id, text);
      expect(message).toMatchObject({ text, own: true, sender: { deviceId: from.deviceId } });
      sent.push(message.id);
      for (const to of devices) {
        if (to === from) continue;
        const before = to.received.length;
        await sync(to);
        const got = to.received.slice(before);
        expect(got, `${to.label} after ${from.label} sent`).toEqual([
          expect.objectContaining({
            conversationId: id,
            id: message.id,
            text,
            own: to.accountId === from.accountId,
            sender: expect.objectContaining({ accountId: from.accountId, deviceId: from.deviceId }),
          }),
        ]);
      }
    }
    return sent;
  }

  /** Every device's history of `id` ends with exactly `ids`, in that order. */
  async function historiesAgree(devices: readonly Device[], id: string, ids: readonly string[]) {
    for (const d of devices) {
      const history = await d.client.conversations.history(id);
      expect(
        history.slice(-ids.length).map((m) => m.id),
        d.label,
      ).toEqual(ids);
      expect(new Set(history.map((m) => m.id)).size).toBe(history.length);
      for (const m of history) expect(m.own).toBe(m.sender.accountId === d.accountId);
    }
  }

  test('1:1, a second device of one side: it joins by itself, reads and sends everywhere', async () => {
    const alice = await signup('alice');
    const bob = await signup('bob');
    const chat = await alice.client.conversations.direct(bob.name);
    await settle([alice, bob]);
    const alice2 = await secondDevice(alice, 'alice2');
    const all = [alice, alice2, bob];
    await settle(all);
    const expected = all.map((d) => d.deviceId).sort();
    for (const d of all) expect(await memberDevices(d, chat.id), d.label).toEqual(expected);
    const ids = await everyoneSendsToEveryone([alice2, bob, alice], chat.id);
    await historiesAgree(all, chat.id, ids);
    for (const d of all) expect(d.received).toHaveLength(2);
  });

  // KNOWN BUG (see the top of the file): bob2 first sees Alice at manifest seq 2.
  test('1:1, two devices each: every device reads everything, own messages are own', async () => {
    const alice = await signup('alice');
    const bob = await signup('bob');
    const chat = await alice.client.conversations.direct(bob.name);
    await settle([alice, bob]);
    // Second devices come after the conversation exists: each first device's sync adds its own.
    const alice2 = await secondDevice(alice, 'alice2');
    const bob2 = await secondDevice(bob, 'bob2');
    const all = [alice, alice2, bob, bob2];
    await settle(all);
    const expected = all.map((d) => d.deviceId).sort();
    for (const d of all) {
      expect(await memberDevices(d, chat.id), d.label).toEqual(expected);
      expect((await d.client.conversations.get(chat.id)).kind).toBe('direct');
    }

    const ids = await everyoneSendsToEveryone([alice2, bob, bob2, alice], chat.id);
    await historiesAgree(all, chat.id, ids);
    // Every device received exactly the three messages it did not send, once each.
    for (const d of all) expect(d.received).toHaveLength(3);
    // The direct conversation is still the same one, from any device.
    expect((await bob2.client.conversations.direct(alice.name)).id).toBe(chat.id);
    expect((await alice2.client.conversations.direct(bob.accountId)).id).toBe(chat.id);
  });

  test('a group of three users, the creator with a second device', async () => {
    const alice = await signup('alice');
    const bob = await signup('bob');
    const carol = await signup('carol');
    const team = await alice.client.conversations.create({
      name: 'Team 4',
      members: [bob.name, carol.name],
    });
    await settle([alice, bob, carol]);
    const alice2 = await secondDevice(alice, 'alice2');
    const all = [alice, alice2, bob, carol];
    await settle(all);
    const expected = all.map((d) => d.deviceId).sort();
    for (const d of all) {
      const info = await d.client.conversations.get(team.id);
      expect(info, d.label).toMatchObject({ kind: 'group', name: 'Team 4', active: true });
      expect(info.members.map((m) => m.deviceId).sort(), d.label).toEqual(expected);
    }
    const ids = await everyoneSendsToEveryone([alice2, carol, alice, bob], team.id);
    await historiesAgree(all, team.id, ids);
    for (const d of all) expect(d.received).toHaveLength(3);
  });

  // KNOWN BUG (see the top of the file): the later second devices first see the others at seq 2.
  test('a group of three users with two devices each', async () => {
    const alice = await signup('alice');
    const bob = await signup('bob');
    const carol = await signup('carol');
    const team = await alice.client.conversations.create({
      name: 'Team 6',
      members: [bob.name, carol.name],
    });
    expect(team.members).toHaveLength(3);
    await settle([alice, bob, carol]);
    // Every user's second device comes after the group exists: its first device adds it.
    const alice2 = await secondDevice(alice, 'alice2');
    const bob2 = await secondDevice(bob, 'bob2');
    const carol2 = await secondDevice(carol, 'carol2');
    const all = [alice, alice2, bob, bob2, carol, carol2];
    await settle(all);
    const expected = all.map((d) => d.deviceId).sort();
    for (const d of all) {
      const info = await d.client.conversations.get(team.id);
      expect(info, d.label).toMatchObject({ kind: 'group', name: 'Team 6', active: true });
      expect(info.members.map((m) => m.deviceId).sort(), d.label).toEqual(expected);
    }

    const ids = await everyoneSendsToEveryone([carol2, alice2, bob, alice, bob2, carol], team.id);
    await historiesAgree(all, team.id, ids);
    for (const d of all) expect(d.received).toHaveLength(5);
  });

  // KNOWN BUG 2 (see the top of the file): the revoking device's sync fails with REAUTH_REQUIRED.
  test('a revoked device is removed from every conversation and reads nothing new', async () => {
    const alice = await signup('alice');
    const bob = await signup('bob');
    const carol = await signup('carol');
    const chat = await alice.client.conversations.direct(bob.name);
    const team = await bob.client.conversations.create({
      name: 'Revocation',
      members: [alice.name, carol.name],
    });
    await settle([alice, bob, carol]); // everyone first sees everyone at manifest seq 1
    const alice2 = await secondDevice(alice, 'alice2');
    const all = [alice, alice2, bob, carol];
    await settle(all);
    expect(await memberDevices(bob, chat.id)).toContain(alice2.deviceId);
    expect(await memberDevices(carol, team.id)).toContain(alice2.deviceId);
    const before = await everyoneSendsToEveryone([alice2, bob], chat.id);
    await everyoneSendsToEveryone([alice2, carol], team.id);

    await alice.client.devices.revoke(alice2.deviceId);
    expect((await alice.client.devices.list()).map((d) => d.id)).toEqual([alice.deviceId]);
    // The revoking device's next sync takes the revoked one out of both conversations.
    await sync(alice);
    const others = [alice, bob, carol];
    await settle(others);
    for (const d of others) {
      if (d !== carol)
        expect(await memberDevices(d, chat.id), d.label).not.toContain(alice2.deviceId);
      expect(await memberDevices(d, team.id), d.label).not.toContain(alice2.deviceId);
    }

    const secretChat = await bob.client.conversations.send(chat.id, 'after revocation, 1:1');
    const secretTeam = await carol.client.conversations.send(team.id, 'after revocation, team');
    await settle(others);
    expect(alice.received.slice(-2).map((m) => m.id)).toEqual([secretChat.id, secretTeam.id]);
    expect(bob.received.at(-1)?.id).toBe(secretTeam.id);

    // The revoked device: its sync fails (its session is gone) or brings nothing new, and its
    // stored history has none of the later messages.
    const seen = alice2.received.length;
    const outcome = await sync(alice2).catch((e: unknown) => e);
    if (outcome instanceof Error) {
      expect(SdkError.is(outcome), String(outcome)).toBe(true);
      expect(['DEVICE_REVOKED', 'NOT_LOGGED_IN', 'SESSION_EXPIRED']).toContain(
        (outcome as SdkError).code,
      );
    }
    expect(alice2.received.slice(seen)).toEqual([]);
    for (const id of [chat.id, team.id]) {
      const history = await alice2.client.conversations.history(id).catch(() => []);
      expect(history.map((m) => m.id)).not.toContain(secretChat.id);
      expect(history.map((m) => m.id)).not.toContain(secretTeam.id);
    }
    // The others' histories go on without it.
    await historiesAgree([alice, bob], chat.id, [...before, secretChat.id]);
  });

  // KNOWN BUG (see the top of the file), the two ways it shows, each on its own.
  test('a contact first seen after adding a device can be written to', async () => {
    const alice = await signup('alice');
    const bob = await signup('bob');
    const bob2 = await secondDevice(bob, 'bob2'); // Bob's manifest is at seq 2 now
    // Alice never saw Bob: today this throws PROTOCOL_VIOLATION, detail MANIFEST_GAP.
    const chat = await alice.client.conversations.direct(bob.name);
    await settle([alice, bob, bob2]);
    await everyoneSendsToEveryone([alice, bob2], chat.id);
  });

  test('a new device joins a conversation whose members it first sees at seq 2', async () => {
    const alice = await signup('alice');
    const bob = await signup('bob');
    const chat = await alice.client.conversations.direct(bob.name);
    await settle([alice, bob]);
    const bob2 = await secondDevice(bob, 'bob2'); // Bob's manifest is at seq 2 now
    await settle([bob]);
    const alice2 = await secondDevice(alice, 'alice2'); // alice2 has never seen Bob
    await sync(alice); // adds alice2: its Welcome's tree holds Bob's leaves
    // Today: an error event (KEY_PACKAGE_USED, "a welcome this device cannot open").
    const events = await alice2.client.conversations.sync();
    expect(events).toEqual([
      expect.objectContaining({
        type: 'joined',
        conversation: expect.objectContaining({ id: chat.id }),
      }),
    ]);
    expect(bob2.deviceId).toBeDefined();
  });
});
