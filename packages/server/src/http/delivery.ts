// spec/http-api-v1.md "Delivery": the MLS delivery service. MLS messages are opaque bytes here;
// the server keeps per group an epoch, a seq counter, the routing set the clients declare and
// the latest GroupInfo, and per device a queue with acknowledgements. Clients verify everything.
import { toBase64url } from '@coffer/crypto';
import { isId } from '@coffer/protocol';
import { Hono } from 'hono';
import { ServerError } from '../errors.js';
import { requireAuth } from '../middleware/auth.js';
import type { DeliveryKind, DeviceRoute } from '../storage/types.js';
import type { AppEnv, AuthSession, RouteDeps } from './_env.js';
import { readJson } from './_json.js';
import { decodeB64url, type JsonObject, parseCount } from './validate.js';

/** Largest MLS message: a commit carrying a large group's path stays well under this. */
export const MAX_MESSAGE_LENGTH = 1024 * 1024;
/** Largest GroupInfo (with a ratchet-tree extension for a large group). */
export const MAX_GROUP_INFO_LENGTH = 1024 * 1024;
/** Recipients (or removed routes) of one message: bounds the work of one request. */
export const MAX_RECIPIENTS = 1000;
/** Group ids are chosen by clients: at least 16 random bytes, at most what MLS ids need. */
export const MIN_GROUP_ID_LENGTH = 16;
export const MAX_GROUP_ID_LENGTH = 64;
/** Entries one device's queue may hold: a device offline this long resyncs from GroupInfo. */
export const MAX_QUEUE_ENTRIES = 10_000;
/** Messages are kept this long, acknowledged or not (see `deleteOlderThan`). */
export const DELIVERY_RETENTION_MS = 30 * 24 * 60 * 60 * 1000;
/** Entries per queue page, and the bytes of message a page holds beyond its first entry. */
export const MAX_QUEUE_PAGE = 100;
export const MAX_QUEUE_PAGE_BYTES = 4 * 1024 * 1024;
/**
 * The body limit of `POST /v1/groups/{groupId}/messages`: a 1 MiB message and a 1 MiB
 * GroupInfo as b64url (4/3 each), 1,000 recipients and 1,000 removed routes, with room to spare.
 */
export const MAX_DELIVERY_BODY_BYTES = 3 * 1024 * 1024;
/** The one path whose bodies get {@link MAX_DELIVERY_BODY_BYTES}. */
export const DELIVERY_BODY_PATH = /^\/v1\/groups\/[^/]+\/messages$/;

const KINDS: readonly DeliveryKind[] = ['application', 'commit', 'proposal', 'welcome'];

function bad(op: string, name: string, expected: string): ServerError {
  return new ServerError('BAD_REQUEST', op, `"${name}" expected ${expected}`);
}

function field(obj: JsonObject, name: string): unknown {
  return Object.hasOwn(obj, name) ? obj[name] : undefined;
}

/** The group id path parameter, in its canonical b64url text. */
function groupIdParam(value: string | undefined, op: string): string {
  decodeB64url(value, 'groupId', op, { min: MIN_GROUP_ID_LENGTH, max: MAX_GROUP_ID_LENGTH });
  return value as string;
}

/** A non-negative safe integer that can still be incremented (epochs, cursors). */
function counterField(obj: JsonObject, name: string, op: string): number {
  const v = field(obj, name);
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0 || v >= Number.MAX_SAFE_INTEGER)
    throw bad(op, name, `an integer from 0 to ${Number.MAX_SAFE_INTEGER - 1}`);
  return v;
}

/** A list of distinct `{accountId, deviceId}` routes; absent means empty. */
function routesField(obj: JsonObject, name: string, op: string): DeviceRoute[] {
  const v = field(obj, name);
  if (v === undefined) return [];
  const expected = `an array of at most ${MAX_RECIPIENTS} distinct {accountId, deviceId}`;
  if (!Array.isArray(v) || v.length > MAX_RECIPIENTS) throw bad(op, name, expected);
  const seen = new Set<string>();
  return v.map((item: unknown) => {
    if (typeof item !== 'object' || item === null || Array.isArray(item))
      throw bad(op, name, expected);
    const accountId = field(item as JsonObject, 'accountId');
    const deviceId = field(item as JsonObject, 'deviceId');
    if (!isId(accountId) || !isId(deviceId)) throw bad(op, name, expected);
    const key = `${accountId}:${deviceId}`;
    if (seen.has(key)) throw bad(op, name, expected);
    seen.add(key);
    return { accountId, deviceId };
  });
}

/** The session's device route; a session that names no device cannot take part in groups. */
function deviceRoute(session: AuthSession, op: string): DeviceRoute {
  if (session.deviceId === null)
    throw new ServerError('FORBIDDEN', op, 'the session names no device');
  return { accountId: session.accountId, deviceId: session.deviceId };
}

const notMember = (op: string) =>
  new ServerError('FORBIDDEN', op, 'this device is not a member of the group');

/**
 * Group messages, device queues and GroupInfo for resync.
 *
 * @example app.route('/', deliveryRoutes(deps));
 */
export function deliveryRoutes(deps: RouteDeps): Hono<AppEnv> {
  const { storage, now, events } = deps;
  const app = new Hono<AppEnv>();
  const auth = requireAuth({ storage, now });

  app.post('/v1/groups/:groupId/messages', auth, async (c) => {
    const op = 'delivery.send';
    const groupId = groupIdParam(c.req.param('groupId'), op);
    const body = readJson(c, op);
    const epoch = counterField(body, 'epoch', op);
    const kind = field(body, 'kind');
    if (typeof kind !== 'string' || !KINDS.includes(kind as DeliveryKind))
      throw bad(op, 'kind', `one of ${KINDS.join(', ')}`);
    const message = decodeB64url(field(body, 'message'), 'message', op, {
      max: MAX_MESSAGE_LENGTH,
    });
    const recipients = routesField(body, 'recipients', op);
    if (field(body, 'recipients') === undefined) throw bad(op, 'recipients', 'an array');
    const removed = routesField(body, 'removed', op);
    const groupInfoValue = field(body, 'groupInfo');
    const groupInfo =
      groupInfoValue === undefined || groupInfoValue === null
        ? undefined
        : decodeB64url(groupInfoValue, 'groupInfo', op, { max: MAX_GROUP_INFO_LENGTH });
    // Only a commit starts an epoch: only it may replace the GroupInfo or change the members.
    if (kind !== 'commit' && groupInfo) throw bad(op, 'groupInfo', 'to come with a commit only');
    if (kind !== 'commit' && removed.length > 0)
      throw bad(op, 'removed', 'to come with a commit only');
    const sender = deviceRoute(c.get('session'), op);

    const result = await storage.delivery.append(
      {
        groupId,
        sender,
        epoch,
        kind: kind as DeliveryKind,
        message,
        recipients,
        removed,
        ...(groupInfo ? { groupInfo } : {}),
      },
      { now: now(), cap: MAX_QUEUE_ENTRIES },
    );
    if (!result.ok) {
      switch (result.reason) {
        case 'epoch':
          throw new ServerError('EPOCH_CONFLICT', op, undefined, { epoch: result.epoch });
        case 'queueFull':
          throw new ServerError(
            'QUEUE_FULL',
            op,
            `the queue of device ${result.route.deviceId} of account ${result.route.accountId} is full`,
          );
        default:
          // An unknown group answers like a known one the device is not in: no existence oracle.
          throw notMember(op);
      }
    }
    // After the commit: sockets of each recipient device are told to fetch their queue.
    for (const r of recipients)
      events.publish(r.accountId, { type: 'queue', deviceId: r.deviceId });
    return c.json({ seq: result.seq, epoch: result.epoch }, 201);
  });

  app.get('/v1/queue', auth, async (c) => {
    const op = 'delivery.queue';
    const route = deviceRoute(c.get('session'), op);
    const afterText = c.req.query('after');
    const limitText = c.req.query('limit');
    const after =
      afterText === undefined ? 0 : parseCount(afterText, 'after', op, Number.MAX_SAFE_INTEGER);
    const limit =
      limitText === undefined ? MAX_QUEUE_PAGE : parseCount(limitText, 'limit', op, MAX_QUEUE_PAGE);
    if (limit === 0) throw bad(op, 'limit', `an integer from 1 to ${MAX_QUEUE_PAGE}`);
    const [page, manifestSeq] = await Promise.all([
      storage.delivery.queue(route, after, { limit, maxBytes: MAX_QUEUE_PAGE_BYTES }),
      storage.manifests.latestSeq(route.accountId),
    ]);
    return c.json({
      messages: page.messages.map((m) => ({
        cursor: m.cursor,
        groupId: m.groupId,
        seq: m.seq,
        epoch: m.epoch,
        kind: m.kind,
        sender: m.sender,
        message: toBase64url(m.message),
      })),
      more: page.more,
      // The account's newest manifest seq: a client fetches its manifest only when it moved.
      ...(manifestSeq === undefined ? {} : { manifestSeq }),
    });
  });

  app.post('/v1/queue/ack', auth, async (c) => {
    const op = 'delivery.ack';
    const body = readJson(c, op);
    const upTo = counterField(body, 'upTo', op);
    const route = deviceRoute(c.get('session'), op);
    await storage.delivery.ack(route, upTo);
    return c.body(null, 204);
  });

  app.get('/v1/groups/:groupId/info', auth, async (c) => {
    const op = 'delivery.groupInfo';
    const groupId = groupIdParam(c.req.param('groupId'), op);
    const route = deviceRoute(c.get('session'), op);
    const info = await storage.delivery.groupInfo(groupId, route);
    if (!info) throw notMember(op);
    return c.json({
      epoch: info.epoch,
      groupInfo: info.groupInfo ? toBase64url(info.groupInfo) : null,
    });
  });

  return app;
}
