// spec/http-api-v1.md "Delivery": per-group total order with an epoch check, and per-device
// queues. A message is stored once (sealed, bound to `groupId:seq`) and each recipient's queue
// holds a pointer to it. The group row's lock orders a group's messages; each device's counter
// row's lock orders its queue, so cursors become visible in the order they are handed out.
import type { Kysely } from 'kysely';
import { sql } from 'kysely';
import type { StoreContext } from './_context.js';
import { bytes, num } from './_rows.js';
import type { StorageDb } from './_schema.js';
import {
  type DeliveryKind,
  type DeliveryResult,
  type DeliveryStore,
  type DeviceRoute,
  type QueuedMessage,
  StorageConflictError,
} from './types.js';

type Refusal = Exclude<DeliveryResult, { ok: true }>;

/** Thrown inside the transaction so that nothing of a refused message stays. */
class Refused extends Error {
  constructor(readonly result: Refusal) {
    super(`delivery refused: ${result.reason}`);
  }
}

/** Ids are b64url, so `:` is unambiguous in row ids and route keys. */
const messageRowId = (groupId: string, seq: number) => `${groupId}:${seq}`;
const groupInfoRowId = (groupId: string, epoch: number) => `${groupId}:${epoch}`;
const routeKey = (r: DeviceRoute) => `${r.accountId}:${r.deviceId}`;

/** A fixed order for taking device locks, so that two messages never wait on each other. */
function byRoute(a: DeviceRoute, b: DeviceRoute): number {
  const x = routeKey(a);
  const y = routeKey(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

/** The DeliveryStore over the shared context (see types.ts for the contract). */
export function createDeliveryStore(ctx: StoreContext): DeliveryStore {
  const { db, sealer } = ctx;

  /** Inside an append: the device's next cursor, its counter row locked until commit. */
  async function nextCursor(tx: Kysely<StorageDb>, route: DeviceRoute): Promise<number> {
    const row = await tx
      .insertInto('delivery_devices')
      .values({ account_id: route.accountId, device_id: route.deviceId, next_cursor: 2 })
      .onConflict((oc) =>
        oc
          .columns(['account_id', 'device_id'])
          .doUpdateSet({ next_cursor: sql`delivery_devices.next_cursor + 1` }),
      )
      .returning('next_cursor')
      .executeTakeFirstOrThrow();
    return num(row.next_cursor) - 1;
  }

  async function oldestCursor(tx: Kysely<StorageDb>, route: DeviceRoute) {
    const row = await tx
      .selectFrom('delivery_queue')
      .select((eb) => eb.fn.min('cursor').as('c'))
      .where('account_id', '=', route.accountId)
      .where('device_id', '=', route.deviceId)
      .executeTakeFirst();
    return row?.c == null ? undefined : num(row.c);
  }

  const store: DeliveryStore = {
    async append(m, { now, cap }) {
      const recipients = [...m.recipients].sort(byRoute);
      let creating = false;
      try {
        return await ctx.transaction(async (tx): Promise<DeliveryResult> => {
          let pick = tx
            .selectFrom('delivery_groups')
            .select(['epoch', 'next_seq'])
            .where('group_id', '=', m.groupId);
          // SQLite's BEGIN IMMEDIATE already serialises writers; PostgreSQL locks the row.
          if (ctx.dialect === 'postgres') pick = pick.forUpdate();
          const group = await pick.executeTakeFirst();
          let epoch: number;
          let seq: number;
          const members = new Set<string>();
          if (!group) {
            if (m.kind !== 'commit' || m.epoch !== 0)
              throw new Refused({ ok: false, reason: 'unknownGroup' });
            creating = true;
            await tx
              .insertInto('delivery_groups')
              .values({ group_id: m.groupId, epoch: 0, next_seq: 1, created_at: now })
              .execute();
            await tx
              .insertInto('delivery_members')
              .values({
                group_id: m.groupId,
                account_id: m.sender.accountId,
                device_id: m.sender.deviceId,
              })
              .execute();
            epoch = 0;
            seq = 1;
            members.add(routeKey(m.sender));
          } else {
            epoch = num(group.epoch);
            seq = num(group.next_seq);
            const rows = await tx
              .selectFrom('delivery_members')
              .select(['account_id', 'device_id'])
              .where('group_id', '=', m.groupId)
              .execute();
            for (const r of rows) members.add(`${r.account_id}:${r.device_id}`);
            if (!members.has(routeKey(m.sender)))
              throw new Refused({ ok: false, reason: 'notMember' });
            if (m.epoch !== epoch) throw new Refused({ ok: false, reason: 'epoch', epoch });
          }
          // Only a welcome reaches devices outside the group (and brings them in).
          if (m.kind !== 'welcome' && recipients.some((r) => !members.has(routeKey(r))))
            throw new Refused({ ok: false, reason: 'notMember' });

          const newEpoch = m.kind === 'commit' ? epoch + 1 : epoch;
          await tx
            .updateTable('delivery_groups')
            .set({
              epoch: newEpoch,
              next_seq: seq + 1,
              ...(m.groupInfo
                ? {
                    group_info_epoch: newEpoch,
                    group_info: await sealer.seal(
                      'delivery_groups.group_info',
                      groupInfoRowId(m.groupId, newEpoch),
                      m.groupInfo,
                    ),
                  }
                : {}),
            })
            .where('group_id', '=', m.groupId)
            .execute();
          await tx
            .insertInto('delivery_messages')
            .values({
              group_id: m.groupId,
              seq,
              epoch: m.epoch,
              kind: m.kind,
              sender_account_id: m.sender.accountId,
              sender_device_id: m.sender.deviceId,
              body: await sealer.seal(
                'delivery_messages.body',
                messageRowId(m.groupId, seq),
                m.message,
              ),
              created_at: now,
            })
            .execute();

          for (const route of recipients) {
            const cursor = await nextCursor(tx, route);
            const oldest = (await oldestCursor(tx, route)) ?? cursor;
            // Cursors of a queue are contiguous (entries leave oldest first), so this is the
            // number of entries it would hold with this one.
            if (cursor - oldest + 1 > cap)
              throw new Refused({ ok: false, reason: 'queueFull', route });
            await tx
              .insertInto('delivery_queue')
              .values({
                account_id: route.accountId,
                device_id: route.deviceId,
                cursor,
                group_id: m.groupId,
                seq,
                created_at: now,
              })
              .execute();
          }

          if (m.kind === 'welcome' && recipients.length > 0) {
            await tx
              .insertInto('delivery_members')
              .values(
                recipients.map((r) => ({
                  group_id: m.groupId,
                  account_id: r.accountId,
                  device_id: r.deviceId,
                })),
              )
              .onConflict((oc) => oc.columns(['group_id', 'account_id', 'device_id']).doNothing())
              .execute();
          }
          for (const r of m.kind === 'commit' ? (m.removed ?? []) : []) {
            await tx
              .deleteFrom('delivery_members')
              .where('group_id', '=', m.groupId)
              .where('account_id', '=', r.accountId)
              .where('device_id', '=', r.deviceId)
              .execute();
          }
          return { ok: true, seq, epoch: newEpoch };
        });
      } catch (err) {
        if (err instanceof Refused) return err.result;
        // PostgreSQL: two creating commits raced and this one lost the insert. Once more, it
        // finds the group and is answered like any message to it (as on SQLite, where the
        // second transaction simply waits).
        if (creating && err instanceof StorageConflictError) return store.append(m, { now, cap });
        throw err;
      }
    },

    async queue(route, after, { limit, maxBytes }) {
      const rows = await db
        .selectFrom('delivery_queue as q')
        .innerJoin('delivery_messages as m', (join) =>
          join.onRef('m.group_id', '=', 'q.group_id').onRef('m.seq', '=', 'q.seq'),
        )
        .select([
          'q.cursor',
          'q.group_id',
          'q.seq',
          'm.epoch',
          'm.kind',
          'm.sender_account_id',
          'm.sender_device_id',
          'm.body',
        ])
        .where('q.account_id', '=', route.accountId)
        .where('q.device_id', '=', route.deviceId)
        .where('q.cursor', '>', after)
        .orderBy('q.cursor', 'asc')
        .limit(limit + 1)
        .execute();
      const taken: typeof rows = [];
      let size = 0;
      for (const row of rows.slice(0, limit)) {
        if (taken.length > 0 && size + row.body.length > maxBytes) break;
        size += row.body.length;
        taken.push(row);
      }
      const messages = await Promise.all(
        taken.map(
          async (r): Promise<QueuedMessage> => ({
            cursor: num(r.cursor),
            groupId: r.group_id,
            seq: num(r.seq),
            epoch: num(r.epoch),
            kind: r.kind as DeliveryKind,
            sender: { accountId: r.sender_account_id, deviceId: r.sender_device_id },
            message: await sealer.open(
              'delivery_messages.body',
              messageRowId(r.group_id, num(r.seq)),
              bytes(r.body),
            ),
          }),
        ),
      );
      return { messages, more: taken.length < rows.length };
    },

    async ack(route, upTo) {
      const result = await ctx.transaction((tx) =>
        tx
          .deleteFrom('delivery_queue')
          .where('account_id', '=', route.accountId)
          .where('device_id', '=', route.deviceId)
          .where('cursor', '<=', upTo)
          .executeTakeFirst(),
      );
      return Number(result.numDeletedRows);
    },

    async groupInfo(groupId, route) {
      const row = await db
        .selectFrom('delivery_groups as g')
        .innerJoin('delivery_members as d', 'd.group_id', 'g.group_id')
        .select(['g.epoch', 'g.group_info', 'g.group_info_epoch'])
        .where('g.group_id', '=', groupId)
        .where('d.account_id', '=', route.accountId)
        .where('d.device_id', '=', route.deviceId)
        .executeTakeFirst();
      if (!row) return undefined;
      const groupInfo =
        row.group_info && row.group_info_epoch != null
          ? await sealer.open(
              'delivery_groups.group_info',
              groupInfoRowId(groupId, num(row.group_info_epoch)),
              bytes(row.group_info),
            )
          : null;
      return { epoch: num(row.epoch), groupInfo };
    },

    async deleteOlderThan(before) {
      return ctx.transaction(async (tx) => {
        // Their queue entries go with them (foreign key, on delete cascade).
        const old = await tx
          .deleteFrom('delivery_messages')
          .where('created_at', '<=', before)
          .executeTakeFirst();
        // Messages every recipient acknowledged (or that had none) are no longer needed.
        const done = await tx
          .deleteFrom('delivery_messages')
          .where(({ not, exists, selectFrom }) =>
            not(
              exists(
                selectFrom('delivery_queue as q')
                  .select(sql<number>`1`.as('one'))
                  .whereRef('q.group_id', '=', 'delivery_messages.group_id')
                  .whereRef('q.seq', '=', 'delivery_messages.seq'),
              ),
            ),
          )
          .executeTakeFirst();
        return Number(old.numDeletedRows) + Number(done.numDeletedRows);
      });
    },
  };
  return store;
}
