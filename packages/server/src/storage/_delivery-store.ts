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

/**
 * PostgreSQL, inside a transaction: locks the queue counters of `routes` (making the missing
 * ones) in the order {@link DeliveryStore.append} takes them, so that a revocation holding them
 * and a message to those devices are serialised: the message re-checks its recipients after
 * taking these locks.
 */
export async function lockQueues(
  tx: Kysely<StorageDb>,
  routes: readonly DeviceRoute[],
): Promise<void> {
  for (const route of [...routes].sort(byRoute)) {
    await tx
      .insertInto('delivery_devices')
      .values({ account_id: route.accountId, device_id: route.deviceId, next_cursor: 1 })
      .onConflict((oc) =>
        oc
          .columns(['account_id', 'device_id'])
          .doUpdateSet({ next_cursor: sql`delivery_devices.next_cursor` }),
      )
      .execute();
  }
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

  /**
   * Gives back the cursor {@link nextCursor} just took (in the same transaction, which holds the
   * row's lock since then): a skipped recipient's cursors stay contiguous, as the held-count
   * below assumes.
   */
  async function returnCursor(tx: Kysely<StorageDb>, route: DeviceRoute): Promise<void> {
    await tx
      .updateTable('delivery_devices')
      .set({ next_cursor: sql`next_cursor - 1` })
      .where('account_id', '=', route.accountId)
      .where('device_id', '=', route.deviceId)
      .execute();
  }

  /** Unacknowledged welcomes in the device's queue (an index range of at most the welcome cap). */
  async function welcomeCount(tx: Kysely<StorageDb>, route: DeviceRoute): Promise<number> {
    const row = await tx
      .selectFrom('delivery_queue')
      .select((eb) => eb.fn.countAll().as('n'))
      .where('account_id', '=', route.accountId)
      .where('device_id', '=', route.deviceId)
      .where('welcome', '=', 1)
      .executeTakeFirst();
    return Number(row?.n ?? 0);
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

  /** The group's routing set, as route keys. */
  async function routed(tx: Kysely<StorageDb>, groupId: string): Promise<Set<string>> {
    const rows = await tx
      .selectFrom('delivery_members')
      .select(['account_id', 'device_id'])
      .where('group_id', '=', groupId)
      .execute();
    return new Set(rows.map((r) => `${r.account_id}:${r.device_id}`));
  }

  /** A welcome's recipient accounts still have the manifests the caller checked them against. */
  async function checkManifests(
    tx: Kysely<StorageDb>,
    expected: ReadonlyMap<string, number> | undefined,
  ): Promise<void> {
    if (!expected || expected.size === 0) return;
    const rows = await tx
      .selectFrom('manifests')
      .select(['account_id', (eb) => eb.fn.max('seq').as('seq')])
      .where('account_id', 'in', [...expected.keys()])
      .groupBy('account_id')
      .execute();
    const now = new Map(rows.map((r) => [r.account_id, r.seq == null ? -1 : num(r.seq)]));
    for (const [accountId, seq] of expected) {
      if (now.get(accountId) !== seq) throw new Refused({ ok: false, reason: 'manifestChanged' });
    }
  }

  const store: DeliveryStore = {
    async append(m, options) {
      const { now, cap, welcomeCap } = options;
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
              .values({
                group_id: m.groupId,
                epoch: 0,
                next_seq: 1,
                created_at: now,
                active_at: now,
              })
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
            for (const r of await routed(tx, m.groupId)) members.add(r);
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
              active_at: now,
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

          const welcome = m.kind === 'welcome';
          if (ctx.dialect === 'postgres' && recipients.length > 0) {
            // The recipients' account rows, shared, before their queues: an account deletion
            // locks its row first (_account-store.ts), so it either waits for this message
            // (and then deletes its entries and routes) or has committed, and the checks
            // below find the routes and manifests gone. Shared locks do not wait on each
            // other; the exclusive holders (deletion, revocation, uploads) take one account
            // and never a group, so no cycle.
            const accounts = [...new Set(recipients.map((r) => r.accountId))].sort();
            await sql`select 1 from accounts where account_id in (${sql.join(accounts)})
              order by account_id for key share`.execute(tx);
          }
          // Recipients whose queue is full: the message is not queued for them (see `cap`).
          const skipped: DeviceRoute[] = [];
          for (const route of recipients) {
            const cursor = await nextCursor(tx, route);
            const oldest = (await oldestCursor(tx, route)) ?? cursor;
            // Cursors of a queue are contiguous (entries leave oldest first), so this is the
            // number of entries it would hold with this one.
            const held = cursor - oldest + 1;
            if (welcome) {
              // Welcomes reach devices outside the group: their own small cap keeps a stranger
              // from filling the queue, and they do not count toward `cap` below.
              if ((await welcomeCount(tx, route)) + 1 > welcomeCap)
                throw new Refused({ ok: false, reason: 'welcomesFull', route });
            } else if (held > cap && held - (await welcomeCount(tx, route)) > cap) {
              // (Welcomes are counted only when the queue is that long: the common case pays
              // for no second query.) A device that is away for long (a lost phone nobody
              // revoked) must not stop the group for everyone: the others get the message, and
              // this device, once it drains its queue, finds the gap (a later epoch, a sender's
              // numbers jumping) and rejoins from the GroupInfo, as after withheld messages.
              await returnCursor(tx, route);
              skipped.push(route);
              continue;
            }
            await tx
              .insertInto('delivery_queue')
              .values({
                account_id: route.accountId,
                device_id: route.deviceId,
                cursor,
                group_id: m.groupId,
                seq,
                created_at: now,
                welcome: welcome ? 1 : 0,
              })
              .execute();
          }
          // Every recipient's queue is locked now. A revocation takes the same locks before it
          // deletes a device's routes and queue (_manifest-store.ts), so what it did is either
          // visible here or waits until this message is in (and then deletes it with the rest).
          if (welcome) await checkManifests(tx, m.manifestSeqs);
          else if (ctx.dialect === 'postgres' && recipients.length > 0) {
            // SQLite's writer lock made the check above final; PostgreSQL reads again.
            const still = await routed(tx, m.groupId);
            if (recipients.some((r) => !still.has(routeKey(r))))
              throw new Refused({ ok: false, reason: 'notMember' });
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
          return { ok: true, seq, epoch: newEpoch, skipped };
        });
      } catch (err) {
        if (err instanceof Refused) return err.result;
        // PostgreSQL: two creating commits raced and this one lost the insert. Once more, it
        // finds the group and is answered like any message to it (as on SQLite, where the
        // second transaction simply waits).
        if (creating && err instanceof StorageConflictError) return store.append(m, options);
        throw err;
      }
    },

    async queue(route, after, { limit, maxBytes }) {
      // Sizes first: a page holds at most `limit` entries of up to 1 MiB each, and only those
      // that fit in `maxBytes` are worth reading from disk and opening.
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
          sql<number | string>`length(m.body)`.as('size'),
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
        const length = num(row.size);
        if (taken.length > 0 && size + length > maxBytes) break;
        size += length;
        taken.push(row);
      }
      const last = taken.at(-1);
      if (!last) return { messages: [], more: rows.length > 0 };
      // The same entries again, bodies only. One acknowledged or swept meanwhile is left out;
      // none can appear in between (cursors become visible in order).
      const bodies = await db
        .selectFrom('delivery_queue as q')
        .innerJoin('delivery_messages as m', (join) =>
          join.onRef('m.group_id', '=', 'q.group_id').onRef('m.seq', '=', 'q.seq'),
        )
        .select(['q.cursor', 'm.body'])
        .where('q.account_id', '=', route.accountId)
        .where('q.device_id', '=', route.deviceId)
        .where('q.cursor', '>', after)
        .where('q.cursor', '<=', last.cursor)
        .execute();
      const bodyOf = new Map(bodies.map((b) => [num(b.cursor), b.body]));
      const messages = await Promise.all(
        taken.flatMap((r) => {
          const body = bodyOf.get(num(r.cursor));
          if (!body) return [];
          return [
            (async (): Promise<QueuedMessage> => ({
              cursor: num(r.cursor),
              groupId: r.group_id,
              seq: num(r.seq),
              epoch: num(r.epoch),
              kind: r.kind as DeliveryKind,
              sender: { accountId: r.sender_account_id, deviceId: r.sender_device_id },
              message: await sealer.open(
                'delivery_messages.body',
                messageRowId(r.group_id, num(r.seq)),
                bytes(body),
              ),
            }))(),
          ];
        }),
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
        // Groups nobody is routed to can never take a message again (a sender must be routed):
        // once their last message is past retention nothing refers to them, and their GroupInfo
        // (up to 1 MiB) would otherwise be kept forever. Their messages, if any, go with them.
        await tx
          .deleteFrom('delivery_groups')
          .where('active_at', '<=', before)
          .where(({ not, exists, selectFrom }) =>
            not(
              exists(
                selectFrom('delivery_members as d')
                  .select(sql<number>`1`.as('one'))
                  .whereRef('d.group_id', '=', 'delivery_groups.group_id'),
              ),
            ),
          )
          .execute();
        return Number(old.numDeletedRows) + Number(done.numDeletedRows);
      });
    },
  };
  return store;
}
