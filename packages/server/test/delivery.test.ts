// The MLS delivery service (spec/http-api-v1.md "Delivery"): total order, epoch checks
// (concurrent commits across two storage instances: exactly one wins), queues with acks and
// redelivery, isolation, membership, bad input, retention, sealing at rest, and the WebSocket
// push over a real socket, on every database.
import { randomBytes } from 'node:crypto';
import { toBase64url } from '@coffer/crypto';
import { type KyselyPlugin, sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createApp } from '../src/app.js';
import { createEventHub } from '../src/event-hub.js';
import {
  DELIVERY_RETENTION_MS,
  GROUP_CREATION_WINDOW_MS,
  GROUPS_CREATED_PER_ACCOUNT,
  MAX_MESSAGE_LENGTH,
  MAX_QUEUED_WELCOMES,
  MAX_RECIPIENTS,
} from '../src/http/delivery.js';
import { createLogger } from '../src/logger.js';
import { createMetrics } from '../src/metrics.js';
import { transactionRunner } from '../src/storage/_context.js';
import { createDeliveryStore } from '../src/storage/_delivery-store.js';
import type { Sealer } from '../src/storage/_sealer.js';
import {
  type Account,
  addDevice,
  call,
  login,
  makeDevice,
  signup,
  successor,
  wire,
} from './_client.js';
import { testDialects } from './_db.js';
import { createHarness, type Fetcher, type Harness } from './_harness.js';

const dialects = await testDialects();

const b64 = (bytes: Uint8Array) => toBase64url(bytes);
const newGroupId = () => b64(new Uint8Array(randomBytes(16)));
const mls = (n = 48) => b64(new Uint8Array(randomBytes(n)));

interface Member {
  readonly accountId: string;
  readonly deviceId: string;
  readonly token: string;
}

describe.each(dialects)('delivery (%s)', (dialect) => {
  let h: Harness;
  let n = 0;
  const route = (m: Member) => ({ accountId: m.accountId, deviceId: m.deviceId });
  const fresh = async (): Promise<Member & { account: Account }> => {
    const account = await signup(h.fetch, `dl${n++}`, 'pw');
    return {
      accountId: account.accountId,
      deviceId: account.device.id,
      token: account.token,
      account,
    };
  };
  const send = (
    from: Member,
    groupId: string,
    body: Record<string, unknown>,
    fetcher: Fetcher = h.fetch,
  ) => call(fetcher, 'POST', `/v1/groups/${groupId}/messages`, body, from.token);
  const queue = (m: Member, query = '') =>
    call(h.fetch, 'GET', `/v1/queue${query}`, undefined, m.token);
  const ack = (m: Member, upTo: number) =>
    call(h.fetch, 'POST', '/v1/queue/ack', { upTo }, m.token);
  /** A group of `members`, created by the first: commit at 0, then a welcome at 1. */
  const group = async (creator: Member, others: readonly Member[]) => {
    const groupId = newGroupId();
    const created = await send(creator, groupId, {
      epoch: 0,
      kind: 'commit',
      message: mls(),
      recipients: [],
      groupInfo: mls(),
    });
    expect(created.status).toBe(201);
    expect(created.json).toEqual({ seq: 1, epoch: 1 });
    if (others.length > 0) {
      const welcome = await send(creator, groupId, {
        epoch: 1,
        kind: 'welcome',
        message: mls(),
        recipients: others.map(route),
      });
      expect(welcome.status).toBe(201);
      for (const o of others) await drain(o);
    }
    return groupId;
  };
  /** Reads and acknowledges everything in a device's queue. */
  const drain = async (m: Member) => {
    const r = await queue(m);
    expect(r.status).toBe(200);
    const last = r.json.messages.at(-1);
    if (last) expect((await ack(m, last.cursor)).status).toBe(204);
    return r.json.messages;
  };

  beforeAll(async () => {
    h = await createHarness(dialect, 'delivery');
  });
  afterAll(() => h.dispose());

  it('creates a group, orders its messages and delivers them to the named devices', async () => {
    const a = await fresh();
    const b = await fresh();
    const c = await fresh();
    const groupId = await group(a, [b, c]);
    const bodies = [mls(10), mls(20), mls(30)];
    const sent = [];
    for (const message of bodies) {
      const r = await send(a, groupId, {
        epoch: 1,
        kind: 'application',
        message,
        recipients: [route(b), route(c)],
      });
      expect(r.status).toBe(201);
      sent.push(r.json);
    }
    expect(sent).toEqual([
      { seq: 3, epoch: 1 },
      { seq: 4, epoch: 1 },
      { seq: 5, epoch: 1 },
    ]);
    for (const m of [b, c]) {
      const r = await queue(m);
      expect(r.json.more).toBe(false);
      // The account's newest manifest seq rides along (its first manifest here).
      expect(r.json.manifestSeq).toBe(1);
      expect(r.json.messages.map((x: { message: string }) => x.message)).toEqual(bodies);
      expect(r.json.messages[0]).toMatchObject({
        groupId,
        seq: 3,
        epoch: 1,
        kind: 'application',
        sender: route(a),
      });
      const cursors = r.json.messages.map((x: { cursor: number }) => x.cursor);
      expect(cursors).toEqual([...cursors].sort((x, y) => x - y));
    }
    // The sender named itself nowhere: its queue stays empty.
    expect((await queue(a)).json.messages).toEqual([]);
    // GroupInfo for resync.
    const info = await call(h.fetch, 'GET', `/v1/groups/${groupId}/info`, undefined, b.token);
    expect(info.status).toBe(200);
    expect(info.json.epoch).toBe(1);
    expect(typeof info.json.groupInfo).toBe('string');
  });

  it('moves the epoch with each commit and refuses stale epochs with EPOCH_CONFLICT', async () => {
    const a = await fresh();
    const b = await fresh();
    const groupId = await group(a, [b]);
    const groupInfo = mls(64);
    const commit = await send(b, groupId, {
      epoch: 1,
      kind: 'commit',
      message: mls(),
      recipients: [route(a)],
      groupInfo,
    });
    expect(commit.json).toEqual({ seq: 3, epoch: 2 });
    for (const kind of ['commit', 'application', 'proposal', 'welcome']) {
      const stale = await send(a, groupId, {
        epoch: 1,
        kind,
        message: mls(),
        recipients: [route(b)],
      });
      expect(stale.status).toBe(409);
      expect(stale.json.error).toMatchObject({ code: 'EPOCH_CONFLICT', epoch: 2 });
    }
    // Ahead of the group is refused as well.
    expect(
      (await send(a, groupId, { epoch: 3, kind: 'application', message: mls(), recipients: [] }))
        .json.error.code,
    ).toBe('EPOCH_CONFLICT');
    const info = await call(h.fetch, 'GET', `/v1/groups/${groupId}/info`, undefined, a.token);
    expect(info.json).toEqual({ epoch: 2, groupInfo });
    // Recreating an existing group is a commit at a stale epoch.
    const again = await send(b, groupId, {
      epoch: 0,
      kind: 'commit',
      message: mls(),
      recipients: [],
    });
    expect(again.status).toBe(409);
    expect(again.json.error.epoch).toBe(2);
  });

  /** A second server instance over the same database (another process, as far as it knows). */
  async function secondInstance(): Promise<Fetcher> {
    const other = createApp({
      storage: await h.db.open(),
      ...h.secrets,
      logger: createLogger({ level: 'silent' }),
      metrics: createMetrics({ processMetrics: false }),
      events: createEventHub(),
      now: () => h.clock.now,
    });
    return async (path, init) => other.request(path, init);
  }

  it('accepts exactly one of concurrent commits for an epoch (two storage instances)', async () => {
    const otherFetch = await secondInstance();
    const members = [await fresh(), await fresh(), await fresh(), await fresh()];
    const a = members[0]!;
    const rest = members.slice(1);
    const groupId = await group(a, rest);
    const results = await Promise.all(
      members.map((m, i) =>
        send(
          m,
          groupId,
          {
            epoch: 1,
            kind: 'commit',
            message: mls(),
            recipients: members.filter((x) => x !== m).map(route),
          },
          i % 2 === 0 ? h.fetch : otherFetch,
        ),
      ),
    );
    const won = results.filter((r) => r.status === 201);
    const lost = results.filter((r) => r.status === 409);
    expect(won).toHaveLength(1);
    expect(won[0]?.json).toEqual({ seq: 3, epoch: 2 });
    expect(lost).toHaveLength(3);
    for (const r of lost) expect(r.json.error).toMatchObject({ code: 'EPOCH_CONFLICT', epoch: 2 });
    // Concurrent creations of one group: one wins.
    const fresh2 = newGroupId();
    const creations = await Promise.all(
      [a, ...rest].map((m, i) =>
        send(
          m,
          fresh2,
          { epoch: 0, kind: 'commit', message: mls(), recipients: [] },
          i % 2 === 0 ? h.fetch : otherFetch,
        ),
      ),
    );
    expect(creations.filter((r) => r.status === 201)).toHaveLength(1);
    // The losers are not members of the group the winner made.
    for (const r of creations.filter((x) => x.status !== 201)) expect(r.status).toBe(403);
    // One device creating one group twice (a retry): the second is a stale commit.
    const fresh3 = newGroupId();
    const twice = await Promise.all(
      [h.fetch, otherFetch].map((f) =>
        send(a, fresh3, { epoch: 0, kind: 'commit', message: mls(), recipients: [] }, f),
      ),
    );
    expect(twice.map((r) => r.status).sort()).toEqual([201, 409]);
    expect(twice.find((r) => r.status === 409)?.json.error).toMatchObject({
      code: 'EPOCH_CONFLICT',
      epoch: 1,
    });
    // Concurrent application messages all get distinct, gap-free seqs.
    const apps = await Promise.all(
      members.map((m, i) =>
        send(
          m,
          groupId,
          { epoch: 2, kind: 'application', message: mls(), recipients: [route(a)] },
          i % 2 === 0 ? h.fetch : otherFetch,
        ),
      ),
    );
    expect(apps.every((r) => r.status === 201)).toBe(true);
    expect(apps.map((r) => r.json.seq).sort()).toEqual([4, 5, 6, 7]);
    const seen = (await queue(a)).json.messages.map((m: { seq: number }) => m.seq);
    expect(seen.slice(-4).sort()).toEqual([4, 5, 6, 7]);
  });

  it('queues concurrent messages of two groups with shared recipients in order, no deadlock', async () => {
    const otherFetch = await secondInstance();
    const members = [await fresh(), await fresh(), await fresh()];
    const a = members[0]!;
    const rest = members.slice(1);
    const g1 = await group(a, rest);
    const g2 = await group(a, rest);
    const everyone = members.map(route);
    const results = await Promise.all(
      Array.from({ length: 24 }, (_, i) =>
        send(
          members[i % 3]!,
          i % 2 === 0 ? g1 : g2,
          {
            epoch: 1,
            kind: 'application',
            message: mls(),
            // Recipients in varying order: the store sorts them before taking locks.
            recipients: i % 4 < 2 ? everyone : [...everyone].reverse(),
          },
          i % 3 === 0 ? h.fetch : otherFetch,
        ),
      ),
    );
    expect(results.map((r) => r.status)).toEqual(Array(24).fill(201));
    for (const m of members) {
      const got = (await queue(m)).json.messages as {
        cursor: number;
        groupId: string;
        seq: number;
      }[];
      expect(got).toHaveLength(24);
      const cursors = got.map((x) => x.cursor);
      expect(cursors).toEqual(Array.from({ length: 24 }, (_, i) => cursors[0]! + i));
      for (const g of [g1, g2]) {
        const seqs = got.filter((x) => x.groupId === g).map((x) => x.seq);
        expect(seqs).toEqual(Array.from({ length: 12 }, (_, i) => 3 + i));
      }
    }
  });

  it('redelivers until acknowledged, pages in order and deletes only what is acknowledged', async () => {
    const a = await fresh();
    const b = await fresh();
    const groupId = await group(a, [b]);
    for (let i = 0; i < 5; i++) {
      const r = await send(a, groupId, {
        epoch: 1,
        kind: 'application',
        message: mls(),
        recipients: [route(b)],
      });
      expect(r.status).toBe(201);
    }
    const first = await queue(b, '?limit=2');
    expect(first.json.messages).toHaveLength(2);
    expect(first.json.more).toBe(true);
    const rest = await queue(b, `?after=${first.json.messages[1].cursor}`);
    expect(rest.json.messages).toHaveLength(3);
    expect(rest.json.more).toBe(false);
    // "Reconnect" without acknowledging: everything is there again.
    const again = await queue(b);
    expect(again.json.messages).toEqual([...first.json.messages, ...rest.json.messages]);
    // Acknowledge the first two; the rest is redelivered.
    expect((await ack(b, first.json.messages[1].cursor)).status).toBe(204);
    const after = await queue(b);
    expect(after.json.messages).toEqual(rest.json.messages);
    // Acknowledging again, or below, changes nothing.
    expect((await ack(b, 0)).status).toBe(204);
    expect((await queue(b)).json.messages).toEqual(rest.json.messages);
    expect((await ack(b, rest.json.messages[2].cursor)).status).toBe(204);
    expect((await queue(b)).json.messages).toEqual([]);
  });

  it('keeps each device to its own queue', async () => {
    const a = await fresh();
    const b = await fresh();
    const phone = await makeDevice('phone');
    expect((await addDevice(h.fetch, b.account, phone)).status).toBe(200);
    const onPhone = await login(h.fetch, b.account.username, 'pw', phone);
    const bPhone: Member = {
      accountId: b.accountId,
      deviceId: phone.id,
      token: onPhone.finish?.json.token,
    };
    const groupId = await group(a, [b]);
    const r = await send(a, groupId, {
      epoch: 1,
      kind: 'application',
      message: mls(),
      recipients: [route(b)],
    });
    expect(r.status).toBe(201);
    // Same account, other device: nothing; and its ack cannot remove b's entries.
    expect((await queue(bPhone)).json.messages).toEqual([]);
    expect((await ack(bPhone, Number.MAX_SAFE_INTEGER - 1)).status).toBe(204);
    expect((await queue(b)).json.messages).toHaveLength(1);
    // Not in the group: no GroupInfo, no sending.
    expect(
      (await call(h.fetch, 'GET', `/v1/groups/${groupId}/info`, undefined, bPhone.token)).status,
    ).toBe(403);
  });

  it("drops a revoked device's queue and routes, and a deleted account's", async () => {
    const a = await fresh();
    const b = await fresh();
    const phone = await makeDevice('phone');
    expect((await addDevice(h.fetch, b.account, phone)).status).toBe(200);
    const phoneRoute = { accountId: b.accountId, deviceId: phone.id };
    const groupId = await group(a, [b]);
    const welcome = await send(a, groupId, {
      epoch: 1,
      kind: 'welcome',
      message: mls(),
      recipients: [phoneRoute],
    });
    expect(welcome.status).toBe(201);
    const rows = async (table: 'delivery_queue' | 'delivery_members', accountId: string) =>
      Number(
        (
          await h.db
            .raw()
            .selectFrom(table)
            .select((eb) => eb.fn.countAll().as('n'))
            .where('account_id', '=', accountId)
            .executeTakeFirstOrThrow()
        ).n,
      );
    expect(await rows('delivery_queue', b.accountId)).toBe(1);
    expect(await rows('delivery_members', b.accountId)).toBe(2);
    const next = await successor(b.account, {
      devices: b.account.body.devices.filter((d) => d.id !== phone.id),
    });
    const put = await call(
      h.fetch,
      'PUT',
      '/v1/manifest',
      { manifest: wire(next.manifest) },
      b.token,
    );
    expect(put.status).toBe(200);
    expect(await rows('delivery_queue', b.accountId)).toBe(0);
    expect(await rows('delivery_members', b.accountId)).toBe(1);
    // The phone is no longer a route: a message naming it is refused.
    expect(
      (
        await send(a, groupId, {
          epoch: 1,
          kind: 'application',
          message: mls(),
          recipients: [phoneRoute],
        })
      ).status,
    ).toBe(403);
  });

  it('answers 403 to non-members and for recipients outside the group', async () => {
    const a = await fresh();
    const b = await fresh();
    const stranger = await fresh();
    const groupId = await group(a, [b]);
    const msg = { epoch: 1, kind: 'application', message: mls(), recipients: [route(a)] };
    const r = await send(stranger, groupId, msg);
    expect(r.status).toBe(403);
    expect(r.json.error.code).toBe('FORBIDDEN');
    // A non-member with a wrong epoch learns nothing about the epoch either.
    expect((await send(stranger, groupId, { ...msg, epoch: 9 })).status).toBe(403);
    // A member may not put messages in an outsider's queue, except by a welcome.
    expect(
      (await send(a, groupId, { ...msg, recipients: [route(b), route(stranger)] })).status,
    ).toBe(403);
    expect((await queue(stranger)).json.messages).toEqual([]);
    // An unknown group looks the same as one the device is not in.
    expect((await send(stranger, newGroupId(), msg)).status).toBe(403);
    expect(
      (await call(h.fetch, 'GET', `/v1/groups/${newGroupId()}/info`, undefined, a.token)).status,
    ).toBe(403);
    // Welcome: adds the stranger, who can then send and read GroupInfo.
    expect(
      (
        await send(a, groupId, {
          epoch: 1,
          kind: 'welcome',
          message: mls(),
          recipients: [route(stranger)],
        })
      ).status,
    ).toBe(201);
    expect((await send(stranger, groupId, msg)).status).toBe(201);
    // A commit removing b: b gets the commit, then is out.
    const removal = await send(a, groupId, {
      epoch: 1,
      kind: 'commit',
      message: mls(),
      recipients: [route(b), route(stranger)],
      removed: [route(b)],
    });
    expect(removal.status).toBe(201);
    expect((await send(b, groupId, { ...msg, epoch: 2 })).status).toBe(403);
    const bQueue = (await queue(b)).json.messages;
    expect(bQueue.at(-1)).toMatchObject({ kind: 'commit', seq: removal.json.seq });
    // A session without a device, and no session at all.
    expect((await call(h.fetch, 'GET', '/v1/queue')).status).toBe(401);
    const noDevice = await login(h.fetch, a.account.username, 'pw');
    const t = noDevice.finish?.json.token;
    expect((await call(h.fetch, 'GET', '/v1/queue', undefined, t)).status).toBe(403);
    expect(
      (await call(h.fetch, 'POST', `/v1/groups/${groupId}/messages`, { ...msg, epoch: 2 }, t))
        .status,
    ).toBe(403);
  });

  it('refuses bad input with 4xx, never 5xx', async () => {
    const a = await fresh();
    const groupId = await group(a, []);
    const good = { epoch: 1, kind: 'application', message: mls(), recipients: [] };
    const bodies: unknown[] = [
      {},
      { ...good, epoch: -1 },
      { ...good, epoch: 1.5 },
      { ...good, epoch: '1' },
      { ...good, epoch: Number.MAX_SAFE_INTEGER },
      { ...good, kind: 'other' },
      { ...good, kind: null },
      { ...good, message: '' },
      { ...good, message: 'not b64url!' },
      { ...good, message: 'AAA=' },
      { ...good, recipients: undefined },
      { ...good, recipients: 'x' },
      { ...good, recipients: [{ accountId: 'x', deviceId: 'y' }] },
      { ...good, recipients: [route(a), route(a)] },
      { ...good, recipients: [null] },
      { ...good, recipients: Array.from({ length: MAX_RECIPIENTS + 1 }, () => route(a)) },
      { ...good, groupInfo: mls() },
      { ...good, removed: [route(a)] },
      { ...good, kind: 'commit', groupInfo: 7 },
      [],
    ];
    for (const body of bodies) {
      const r = await send(a, groupId, body as Record<string, unknown>);
      expect(r.status, JSON.stringify(body).slice(0, 80)).toBe(400);
      expect(r.json.error.code).toBe('BAD_REQUEST');
    }
    for (const id of ['short', 'A'.repeat(20), 'A'.repeat(100), '%00']) {
      expect((await send(a, id, good)).status).toBe(400);
      expect((await call(h.fetch, 'GET', `/v1/groups/${id}/info`, undefined, a.token)).status).toBe(
        400,
      );
    }
    for (const q of ['?after=-1', '?after=01', '?after=x', '?limit=0', '?limit=101', '?limit=']) {
      expect((await queue(a, q)).status, q).toBe(400);
    }
    for (const body of [{}, { upTo: -1 }, { upTo: 'x' }, { upTo: 1.5 }]) {
      expect((await call(h.fetch, 'POST', '/v1/queue/ack', body, a.token)).status).toBe(400);
    }
    // A message of the largest size passes; one byte more does not.
    const big = new Uint8Array(MAX_MESSAGE_LENGTH);
    const ok = await send(a, groupId, { ...good, message: b64(big) });
    expect(ok.status).toBe(201);
    const tooBig = await send(a, groupId, {
      ...good,
      message: b64(new Uint8Array(MAX_MESSAGE_LENGTH + 1)),
    });
    expect(tooBig.status).toBe(400);
    // Other routes keep the 256 KiB body limit.
    const r = await call(
      h.fetch,
      'POST',
      '/v1/queue/ack',
      { upTo: 1, pad: 'x'.repeat(300_000) },
      a.token,
    );
    expect(r.status).toBe(413);
  });

  it('skips a full queue (the others still get the message) and forgets messages after 30 days', async () => {
    const a = await fresh();
    const b = await fresh();
    const groupId = await group(a, [b]);
    // Fill b's queue to the cap directly through the store (10,000 requests would be slow).
    const cap = 3;
    for (let i = 0; i < cap; i++) {
      const r = await h.storage.delivery.append(
        {
          groupId,
          sender: route(a),
          epoch: 1,
          kind: 'application',
          message: new Uint8Array([i]),
          recipients: [route(b)],
        },
        { now: h.clock.now, cap, welcomeCap: 100 },
      );
      expect(r.ok).toBe(true);
    }
    const full = await h.storage.delivery.append(
      {
        groupId,
        sender: route(a),
        epoch: 1,
        kind: 'application',
        message: new Uint8Array([9]),
        recipients: [route(a), route(b)],
      },
      { now: h.clock.now, cap, welcomeCap: 100 },
    );
    // Queued for a, not for b (whose queue keeps what it held, in order).
    expect(full).toMatchObject({ ok: true, epoch: 1, skipped: [route(b)] });
    expect((await queue(a)).json.messages.map((m: { seq: number }) => m.seq)).toEqual([
      full.ok && full.seq,
    ]);
    const held = (await queue(b)).json.messages;
    expect(held).toHaveLength(cap);
    expect(held.map((m: { seq: number }) => m.seq)).not.toContain(full.ok && full.seq);
    // Acknowledging makes room.
    await ack(b, held[0].cursor);
    const next = await h.storage.delivery.append(
      {
        groupId,
        sender: route(a),
        epoch: 1,
        kind: 'application',
        message: new Uint8Array([10]),
        recipients: [route(b)],
      },
      { now: h.clock.now, cap, welcomeCap: 100 },
    );
    // The skipped message used its seq: b sees the gap (seq jumps past it).
    expect(next).toEqual({ ok: true, seq: held[cap - 1].seq + 2, epoch: 1, skipped: [] });

    // Retention: 30 days later the sweep deletes what is still queued. (The store is given the
    // times directly: moving the app's clock 30 days would expire the test's sessions too.)
    const start = h.clock.now;
    await h.storage.delivery.deleteOlderThan(start - 1);
    expect((await queue(b)).json.messages.length).toBe(cap);
    const late = await h.storage.delivery.append(
      {
        groupId,
        sender: route(a),
        epoch: 1,
        kind: 'application',
        message: new Uint8Array([11]),
        recipients: [route(b)],
      },
      { now: start + DELIVERY_RETENTION_MS, cap: cap + 1, welcomeCap: 100 },
    );
    expect(late.ok).toBe(true);
    await h.storage.delivery.deleteOlderThan(start + DELIVERY_RETENTION_MS - DELIVERY_RETENTION_MS);
    const left = (await queue(b)).json.messages;
    expect(left.map((m: { seq: number }) => m.seq)).toEqual([late.ok && late.seq]);
    // The group itself (epoch, GroupInfo) outlives its messages.
    const info = await call(h.fetch, 'GET', `/v1/groups/${groupId}/info`, undefined, b.token);
    expect(info.json.epoch).toBe(1);
  });

  it('seals message bodies and GroupInfo at rest, bound to their rows', async () => {
    const a = await fresh();
    const b = await fresh();
    const groupId = await group(a, [b]);
    const secret = new TextEncoder().encode('plaintext-marker-1234567890');
    const r = await send(a, groupId, {
      epoch: 1,
      kind: 'commit',
      message: b64(secret),
      recipients: [route(b)],
      groupInfo: b64(secret),
    });
    expect(r.status).toBe(201);
    const raw = h.db.raw();
    const msg = await raw
      .selectFrom('delivery_messages')
      .select(['body', 'seq'])
      .where('group_id', '=', groupId)
      .orderBy('seq', 'desc')
      .executeTakeFirstOrThrow();
    const g = await raw
      .selectFrom('delivery_groups')
      .select('group_info')
      .where('group_id', '=', groupId)
      .executeTakeFirstOrThrow();
    const marker = Buffer.from(secret).toString('hex');
    expect(Buffer.from(msg.body).toString('hex')).not.toContain(marker);
    expect(Buffer.from(g.group_info!).toString('hex')).not.toContain(marker);
    // A ciphertext moved to another row fails to open (500, logged), and leaks nothing.
    const welcome = await raw
      .selectFrom('delivery_messages')
      .select('body')
      .where('group_id', '=', groupId)
      .where('seq', '=', 2)
      .executeTakeFirstOrThrow();
    await raw
      .updateTable('delivery_messages')
      .set({ body: welcome.body })
      .where('group_id', '=', groupId)
      .where('seq', '=', msg.seq)
      .execute();
    const q = await queue(b);
    expect(q.status).toBe(500);
    expect(q.json.error.code).toBe('INTERNAL');
  });

  it('pushes {type:"queue"} to the recipient device over a real socket; catch-up after reconnect', async () => {
    const net = await h.listen();
    const a = await fresh();
    const b = await fresh();
    const groupId = await group(a, [b]);
    const url = `${net.url.replace('http', 'ws')}/v1/events`;
    const open = async (token: string) => {
      const ws = new WebSocket(url);
      const messages: unknown[] = [];
      ws.on('message', (data) => messages.push(JSON.parse(data.toString())));
      await new Promise<void>((resolve, reject) => {
        ws.once('open', () => resolve());
        ws.once('error', reject);
      });
      ws.send(JSON.stringify({ type: 'auth', token }));
      return { ws, messages };
    };
    const until = async (check: () => boolean) => {
      const deadline = Date.now() + 5000;
      while (!check()) {
        if (Date.now() > deadline) throw new Error('timed out waiting on the socket');
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    const sb = await open(b.token);
    const sa = await open(a.token);
    await until(() => sb.messages.length === 1 && sa.messages.length === 1);
    expect(sb.messages[0]).toEqual({ type: 'ready' });
    const r = await send(
      a,
      groupId,
      { epoch: 1, kind: 'application', message: mls(), recipients: [route(b)] },
      net.fetch,
    );
    expect(r.status).toBe(201);
    await until(() => sb.messages.length === 2);
    expect(sb.messages[1]).toEqual({ type: 'queue' });
    // The sender's socket hears nothing of b's queue.
    await new Promise((res) => setTimeout(res, 100));
    expect(sa.messages).toEqual([{ type: 'ready' }]);
    // b drops off; a message arrives meanwhile; after reconnecting, b catches up with GET.
    sb.ws.close();
    await until(() => sb.ws.readyState === WebSocket.CLOSED);
    const missed = await send(
      a,
      groupId,
      { epoch: 1, kind: 'application', message: mls(), recipients: [route(b)] },
      net.fetch,
    );
    expect(missed.status).toBe(201);
    const again = await open(b.token);
    await until(() => again.messages.length === 1);
    const caught = await call(net.fetch, 'GET', '/v1/queue', undefined, b.token);
    expect(caught.json.messages.map((m: { seq: number }) => m.seq)).toEqual([
      r.json.seq,
      missed.json.seq,
    ]);
    again.ws.close();
    sa.ws.close();
  });
  it('coalesces a burst of queue events into one push per socket, and loses no later one', async () => {
    const net = await h.listen();
    const a = await fresh();
    const b = await fresh();
    const groupId = await group(a, [b]);
    const ws = new WebSocket(`${net.url.replace('http', 'ws')}/v1/events`);
    const frames: { type: string }[] = [];
    ws.on('message', (data) => frames.push(JSON.parse(data.toString())));
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    ws.send(JSON.stringify({ type: 'auth', token: b.token }));
    const settle = async (count: number) => {
      const deadline = Date.now() + 5000;
      while (frames.length < count) {
        if (Date.now() > deadline) throw new Error('timed out waiting on the socket');
        await new Promise((r) => setTimeout(r, 20));
      }
      // Anything more would come right behind.
      await new Promise((r) => setTimeout(r, 200));
    };
    await settle(1);
    expect(frames).toEqual([{ type: 'ready' }]);
    // A burst (a busy group, or a member flooding it): every event says the same thing, so the
    // socket gets one push and the server one session lookup, not one per message.
    for (let i = 0; i < 500; i++)
      h.events.publish(b.accountId, { type: 'queue', deviceId: b.deviceId });
    await settle(2);
    expect(frames).toEqual([{ type: 'ready' }, { type: 'queue' }]);
    // The next message after the burst is pushed again.
    const r = await send(
      a,
      groupId,
      { epoch: 1, kind: 'application', message: mls(), recipients: [route(b)] },
      net.fetch,
    );
    expect(r.status).toBe(201);
    await settle(3);
    expect(frames).toEqual([{ type: 'ready' }, { type: 'queue' }, { type: 'queue' }]);
    ws.close();
  });

  /** Rows of `table` for one device (the attacker's view of the database). */
  const deviceRows = async (
    table: 'delivery_queue' | 'delivery_members',
    r: { accountId: string; deviceId: string },
  ) =>
    Number(
      (
        await h.db
          .raw()
          .selectFrom(table)
          .select((eb) => eb.fn.countAll().as('n'))
          .where('account_id', '=', r.accountId)
          .where('device_id', '=', r.deviceId)
          .executeTakeFirstOrThrow()
      ).n,
    );

  it("takes welcomes only for listed devices, capped apart from the queue's cap", async () => {
    const victim = await fresh();
    const friend = await fresh();
    const stranger = await fresh();
    const real = await group(friend, [victim]);
    const own = await group(stranger, []);
    const welcome = (recipients: unknown[]) =>
      send(stranger, own, { epoch: 1, kind: 'welcome', message: mls(), recipients });
    // A made-up device of a real account, a real device id under an unknown account, and a
    // real device beside a made-up one: refused as a whole, nothing queued anywhere.
    const madeUp = { accountId: victim.accountId, deviceId: newGroupId() };
    const noAccount = { accountId: newGroupId(), deviceId: victim.deviceId };
    for (const recipients of [[madeUp], [noAccount], [route(victim), madeUp]]) {
      const r = await welcome(recipients);
      expect(r.status, JSON.stringify(recipients)).toBe(403);
      expect(r.json.error.code).toBe('FORBIDDEN');
    }
    expect(await deviceRows('delivery_queue', madeUp)).toBe(0);
    expect(await deviceRows('delivery_members', madeUp)).toBe(0);
    expect((await queue(victim)).json.messages).toEqual([]);

    // The victim's real device takes at most MAX_QUEUED_WELCOMES unacknowledged welcomes.
    for (let i = 0; i < MAX_QUEUED_WELCOMES; i++)
      expect((await welcome([route(victim)])).status).toBe(201);
    const over = await welcome([route(victim)]);
    expect(over.status).toBe(409);
    expect(over.json.error.code).toBe('QUEUE_FULL');
    // They do not count toward the cap that guards the victim's real groups (3 here).
    const appendReal = () =>
      h.storage.delivery.append(
        {
          groupId: real,
          sender: route(friend),
          epoch: 1,
          kind: 'application',
          message: new Uint8Array([1]),
          recipients: [route(victim)],
        },
        { now: h.clock.now, cap: 3, welcomeCap: MAX_QUEUED_WELCOMES },
      );
    for (let i = 0; i < 3; i++) expect((await appendReal()).ok).toBe(true);
    expect(await appendReal()).toMatchObject({ ok: true, skipped: [route(victim)] });
    // Acknowledging makes room for welcomes again.
    await drain(victim);
    expect((await welcome([route(victim)])).status).toBe(201);
  });

  it('refuses a creating commit that names recipients (400, no group made)', async () => {
    const a = await fresh();
    const b = await fresh();
    const groupId = newGroupId();
    for (const recipients of [[route(a)], [route(b)], [route(a), route(b)]]) {
      const r = await send(a, groupId, { epoch: 0, kind: 'commit', message: mls(), recipients });
      expect(r.status).toBe(400);
      expect(r.json.error.code).toBe('BAD_REQUEST');
    }
    expect((await queue(a)).json.messages).toEqual([]);
    expect((await queue(b)).json.messages).toEqual([]);
    const rows = await h.db
      .raw()
      .selectFrom('delivery_groups')
      .select('group_id')
      .where('group_id', '=', groupId)
      .execute();
    expect(rows).toEqual([]);
    const ok = await send(a, groupId, { epoch: 0, kind: 'commit', message: mls(), recipients: [] });
    expect(ok.status).toBe(201);
  });

  it('limits the groups one account creates per hour (429 with retry-after), not its messages', async () => {
    const a = await fresh();
    const b = await fresh();
    const create = (who: Member, groupId = newGroupId()) =>
      send(who, groupId, { epoch: 0, kind: 'commit', message: mls(), recipients: [] });
    let last = '';
    for (let i = 0; i < GROUPS_CREATED_PER_ACCOUNT; i++) {
      last = newGroupId();
      expect((await create(a, last)).status).toBe(201);
    }
    // Every creating commit counts, one refused for its epoch as well.
    const limited = await create(a);
    expect(limited.status).toBe(429);
    expect(limited.json.error.code).toBe('RATE_LIMITED');
    const retry = Number(limited.headers.get('retry-after'));
    expect(retry).toBeGreaterThan(0);
    expect(retry).toBeLessThanOrEqual(GROUP_CREATION_WINDOW_MS / 1000);
    const rows = await h.db
      .raw()
      .selectFrom('delivery_members')
      .select('group_id')
      .where('account_id', '=', a.accountId)
      .execute();
    expect(rows).toHaveLength(GROUPS_CREATED_PER_ACCOUNT);
    // Its groups take messages as before; another account creates as before.
    const message = { epoch: 1, kind: 'application', message: mls(), recipients: [] };
    expect((await send(a, last, message)).status).toBe(201);
    expect((await create(b)).status).toBe(201);
    // The window ends.
    h.clock.now += GROUP_CREATION_WINDOW_MS + 1;
    expect((await create(a)).status).toBe(201);
  });

  it('sweeps groups nobody is routed to once their last message is past retention', async () => {
    const a = await fresh();
    const groupIds = { empty: newGroupId(), kept: newGroupId(), recent: newGroupId() };
    const t = h.clock.now;
    const append = (groupId: string, epoch: number, now: number, removed: boolean) =>
      h.storage.delivery.append(
        {
          groupId,
          sender: route(a),
          epoch,
          kind: 'commit',
          message: new Uint8Array([epoch]),
          recipients: [],
          groupInfo: new Uint8Array(1024).fill(7),
          ...(removed ? { removed: [route(a)] } : {}),
        },
        { now, cap: 10, welcomeCap: 10 },
      );
    // Created, then left by its only device (the routing set is empty).
    expect((await append(groupIds.empty, 0, t, false)).ok).toBe(true);
    expect((await append(groupIds.empty, 1, t, true)).ok).toBe(true);
    // Still routed.
    expect((await append(groupIds.kept, 0, t, false)).ok).toBe(true);
    // Empty, but its last message is recent.
    expect((await append(groupIds.recent, 0, t, false)).ok).toBe(true);
    expect((await append(groupIds.recent, 1, t + 10, true)).ok).toBe(true);
    const groups = async () =>
      (
        await h.db
          .raw()
          .selectFrom('delivery_groups')
          .select(['group_id', 'group_info'])
          .where('group_id', 'in', Object.values(groupIds))
          .execute()
      )
        .map((r) => {
          expect(r.group_info).not.toBeNull();
          return r.group_id;
        })
        .sort();
    expect(await groups()).toEqual(Object.values(groupIds).sort());
    await h.storage.delivery.deleteOlderThan(t + 5);
    expect(await groups()).toEqual([groupIds.kept, groupIds.recent].sort());
    await h.storage.delivery.deleteOlderThan(t + 10);
    expect(await groups()).toEqual([groupIds.kept]);
    // Gone means unknown: a commit at epoch 0 may create it again, as any new group.
    expect((await append(groupIds.empty, 0, t + 20, false)).ok).toBe(true);
  });

  it('reads only the bodies that fit a queue page', async () => {
    // The store over the same database, with a plugin counting the bytes of every row value
    // read. Its sealer passes bytes through (a stand-in: sealing is tested above), so that a
    // body's stored size is its length.
    let loaded = 0;
    const counter: KyselyPlugin = {
      transformQuery: (args) => args.node,
      async transformResult(args) {
        for (const row of args.result.rows)
          for (const v of Object.values(row as Record<string, unknown>))
            if (v instanceof Uint8Array) loaded += v.byteLength;
        return args.result;
      },
    };
    const db = h.db.raw().withPlugin(counter);
    const plain = (_c: unknown, _r: unknown, v: Uint8Array) => Promise.resolve(v);
    const store = createDeliveryStore({
      db,
      dialect: dialect,
      sealer: { seal: plain, open: plain } as unknown as Sealer,
      now: () => h.clock.now,
      transaction: transactionRunner(db, dialect),
    });
    const me = { accountId: newGroupId(), deviceId: newGroupId() };
    const groupId = newGroupId();
    const MiB = 1024 * 1024;
    const base = { groupId, sender: me, message: new Uint8Array(MiB) };
    const limits = { now: h.clock.now, cap: 100, welcomeCap: 10 };
    expect(
      (await store.append({ ...base, epoch: 0, kind: 'commit', recipients: [] }, limits)).ok,
    ).toBe(true);
    for (let i = 0; i < 6; i++) {
      const r = await store.append(
        { ...base, epoch: 1, kind: 'application', recipients: [me] },
        limits,
      );
      expect(r.ok).toBe(true);
    }
    loaded = 0;
    const page = await store.queue(me, 0, { limit: 100, maxBytes: 2 * MiB });
    expect(page.messages.map((m) => m.seq)).toEqual([2, 3]);
    expect(page.messages.every((m) => m.message.length === MiB)).toBe(true);
    expect(page.more).toBe(true);
    // Two bodies, not six.
    expect(loaded).toBe(2 * MiB);
    const rest = await store.queue(me, page.messages[1]!.cursor, { limit: 2, maxBytes: 8 * MiB });
    expect(rest.messages.map((m) => m.seq)).toEqual([4, 5]);
    expect(rest.more).toBe(true);
  });

  // PostgreSQL only (SQLite's single writer serialises the two): declared, not skipped, there.
  if (dialect === 'postgres')
    it('a message racing the deletion of a recipient account leaves no entry or route behind', async () => {
      // A delivery store over the same database whose transaction stops before it commits,
      // after its last check (a plugin holds the result of the statement `gateAt` picks), while
      // the account is deleted through the real storage. Its sealer passes bytes through.
      let gate: { reached: () => void; release: Promise<void> } | undefined;
      let gateAt: ((node: { kind: string }) => boolean) | undefined;
      const held = new Set<unknown>();
      const pauser: KyselyPlugin = {
        transformQuery(args) {
          if (gateAt?.(args.node)) held.add(args.queryId);
          return args.node;
        },
        async transformResult(args) {
          if (held.delete(args.queryId) && gate) {
            gate.reached();
            await gate.release;
          }
          return args.result;
        },
      };
      const db = h.db.raw().withPlugin(pauser);
      const plain = (_c: unknown, _r: unknown, v: Uint8Array) => Promise.resolve(v);
      const store = createDeliveryStore({
        db,
        dialect,
        sealer: { seal: plain, open: plain } as unknown as Sealer,
        now: () => h.clock.now,
        transaction: transactionRunner(db, dialect),
      });
      const tableOf = (node: unknown): string | undefined => {
        const n = node as {
          from?: { froms?: { table?: { identifier?: { name?: string } } }[] };
          into?: { table?: { identifier?: { name?: string } } };
        };
        return n.from?.froms?.[0]?.table?.identifier?.name ?? n.into?.table?.identifier?.name;
      };
      const race = async (
        message: Parameters<typeof store.append>[0],
        victim: string,
        last: (node: { kind: string }) => boolean,
      ) => {
        let count = 0;
        gateAt = (node) => last(node) && ++count === 1;
        let reached!: () => void;
        const at = new Promise<void>((r) => {
          reached = r;
        });
        let release!: () => void;
        gate = { reached, release: new Promise<void>((r) => (release = r)) };
        const sent = store.append(message, { now: h.clock.now, cap: 100, welcomeCap: 10 });
        await at;
        const deleted = h.storage.accounts.delete(victim);
        // Long enough for the deletion to commit, were it not made to wait.
        await new Promise((r) => setTimeout(r, 300));
        release();
        const [result] = await Promise.all([sent, deleted]);
        gate = undefined;
        gateAt = undefined;
        return result;
      };

      // A message to a member: its last statement is the second read of the routing set.
      const a = await fresh();
      const b = await fresh();
      const groupId = await group(a, [b]);
      let reads = 0;
      const app = await race(
        {
          groupId,
          sender: route(a),
          epoch: 1,
          kind: 'application',
          message: new Uint8Array(8),
          recipients: [route(b)],
        },
        b.accountId,
        (node) =>
          node.kind === 'SelectQueryNode' && tableOf(node) === 'delivery_members' && ++reads === 2,
      );
      expect(app.ok).toBe(true);
      expect(await deviceRows('delivery_queue', route(b))).toBe(0);
      expect(await deviceRows('delivery_members', route(b))).toBe(0);

      // A welcome to an outsider: its last statement adds the route.
      const c = await fresh();
      const welcome = await race(
        {
          groupId,
          sender: route(a),
          epoch: 1,
          kind: 'welcome',
          message: new Uint8Array(8),
          recipients: [route(c)],
          manifestSeqs: new Map([[c.accountId, 1]]),
        },
        c.accountId,
        (node) => node.kind === 'InsertQueryNode' && tableOf(node) === 'delivery_members',
      );
      expect(welcome.ok).toBe(true);
      expect(await deviceRows('delivery_queue', route(c))).toBe(0);
      expect(await deviceRows('delivery_members', route(c))).toBe(0);
    });

  it("refuses a session whose device the account's manifest does not list (409)", async () => {
    const a = await fresh();
    const groupId = await group(a, []);
    const unlisted = await makeDevice('never added');
    const r = await login(h.fetch, a.account.username, 'pw', unlisted.id);
    const token = r.finish?.json.token as string;
    expect(typeof token).toBe('string');
    const ghost: Member = { accountId: a.accountId, deviceId: unlisted.id, token };
    const answers = [
      await send(ghost, groupId, { epoch: 1, kind: 'application', message: mls(), recipients: [] }),
      await queue(ghost),
      await ack(ghost, 1),
      await call(h.fetch, 'GET', `/v1/groups/${groupId}/info`, undefined, token),
    ];
    for (const x of answers) {
      expect(x.status).toBe(409);
      expect(x.json.error.code).toBe('CONFLICT');
    }
    // Once the device is added, the same session works.
    const phone = { ...unlisted };
    expect((await addDevice(h.fetch, a.account, phone)).status).toBe(200);
    expect((await queue(ghost)).status).toBe(200);
  });

  it.each(['message', 'revocation'] as const)(
    'never leaves a revoked device a queue entry or route when its revocation races a message (%s first)',
    async (first) => {
      const a = await fresh();
      const b = await fresh();
      const phone = await makeDevice('phone');
      expect((await addDevice(h.fetch, b.account, phone)).status).toBe(200);
      const phoneRoute = { accountId: b.accountId, deviceId: phone.id };
      const groupId = await group(a, [b]);
      const welcomed = await send(a, groupId, {
        epoch: 1,
        kind: 'welcome',
        message: mls(),
        recipients: [phoneRoute],
      });
      expect(welcomed.status).toBe(201);
      const seqBefore = (await h.storage.manifests.latestSeq(b.accountId))!;
      const next = await successor(b.account, {
        devices: b.account.body.devices.filter((d) => d.id !== phone.id),
      });
      const revoke = () =>
        call(h.fetch, 'PUT', '/v1/manifest', { manifest: wire(next.manifest) }, b.token);
      const message = () =>
        send(a, groupId, {
          epoch: 1,
          kind: 'application',
          message: mls(),
          recipients: [route(b), phoneRoute],
        });
      if (dialect === 'postgres') {
        // Hold the phone's queue lock, start the two in the order under test, each until it
        // waits for that lock (a message waits there after its membership check), then let
        // go. Without the revocation taking that lock, it commits under the message, which
        // then queues for a device that no longer exists; without the message checking again
        // once it has the lock, it queues for a device revoked just before.
        const raw = h.db.raw();
        let release!: () => void;
        const released = new Promise<void>((resolve) => {
          release = resolve;
        });
        let holding!: (pid: number) => void;
        const held = new Promise<number>((resolve) => {
          holding = resolve;
        });
        const holder = raw.transaction().execute(async (tx) => {
          const me = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(tx);
          await sql`select 1 from delivery_devices where account_id = ${b.accountId}
            and device_id = ${phone.id} for update`.execute(tx);
          holding(me.rows[0]!.pid);
          await released;
        });
        const pid = await held;
        /** Backends waiting on the holder, directly or behind another waiter. */
        const waiting = async () =>
          Number(
            (
              await sql<{ n: string }>`select count(*) as n from pg_stat_activity a
                where ${pid} = any(pg_blocking_pids(a.pid)) or exists (select 1 from
                unnest(pg_blocking_pids(a.pid)) w where ${pid} = any(pg_blocking_pids(w)))`.execute(
                raw,
              )
            ).rows[0]!.n,
          );
        let done = 0;
        const track = <T>(p: Promise<T>) =>
          p.then((v) => {
            done++;
            return v;
          });
        const until = async (n: number) => {
          const deadline = Date.now() + 3000;
          while (done + (await waiting()) < n && Date.now() < deadline)
            await new Promise((r) => setTimeout(r, 20));
        };
        const one = track(first === 'message' ? message() : revoke());
        await until(1);
        const two = track(first === 'message' ? revoke() : message());
        await until(2);
        release();
        await holder;
        const [s, r] =
          first === 'message' ? await Promise.all([one, two]) : await Promise.all([two, one]);
        expect(r.status).toBe(200);
        // A message that finds the phone revoked is refused as a whole (the client retries
        // without it); one that was first is queued, and its entry goes with the revocation.
        expect(s.status).toBe(first === 'message' ? 201 : 403);
      } else {
        const [s, r] = await Promise.all([message(), revoke()]);
        expect(r.status).toBe(200);
        expect([201, 403]).toContain(s.status);
      }
      expect(await deviceRows('delivery_queue', phoneRoute)).toBe(0);
      expect(await deviceRows('delivery_members', phoneRoute)).toBe(0);
      // A welcome checked against the manifest before the revocation is refused in the store,
      // and over HTTP the revoked device is no longer a welcome recipient.
      const late = await h.storage.delivery.append(
        {
          groupId,
          sender: route(a),
          epoch: 1,
          kind: 'welcome',
          message: new Uint8Array([1]),
          recipients: [phoneRoute],
          manifestSeqs: new Map([[b.accountId, seqBefore]]),
        },
        { now: h.clock.now, cap: 10, welcomeCap: 10 },
      );
      expect(late).toEqual({ ok: false, reason: 'manifestChanged' });
      const again = await send(a, groupId, {
        epoch: 1,
        kind: 'welcome',
        message: mls(),
        recipients: [phoneRoute],
      });
      expect(again.status).toBe(403);
      expect(await deviceRows('delivery_queue', phoneRoute)).toBe(0);
      expect(await deviceRows('delivery_members', phoneRoute)).toBe(0);
    },
  );
});
