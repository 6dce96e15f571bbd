// spec/http-api-v1.md "Delivery": the MLS delivery service. MLS messages are opaque bytes here;
// the server keeps per group an epoch, a seq counter, the routing set the clients declare and
// the latest GroupInfo, and per device a queue with acknowledgements. Clients verify everything.
import { hmac, toBase64url, utf8Encode } from '@coffer/crypto';
import { isId } from '@coffer/protocol';
import { Hono } from 'hono';
import { ServerError } from '../errors.js';
import { requireAuth } from '../middleware/auth.js';
import { bodyLimit } from '../middleware/body-limit.js';
import { jsonOnly } from '../middleware/json-only.js';
import type { DeliveryKind, DeviceRoute } from '../storage/types.js';
import { countInWindows } from '../window-limit.js';
import { type DeviceDirectory, listedDevice } from './_devices.js';
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
/**
 * Unacknowledged welcomes one device's queue may hold, apart from {@link MAX_QUEUE_ENTRIES}: a
 * welcome comes from outside the device's groups, so this is all a stranger can make it hold,
 * and a device is added to far fewer groups between two syncs.
 */
export const MAX_QUEUED_WELCOMES = 100;
/**
 * Groups one account may create per {@link GROUP_CREATION_WINDOW_MS} (every creating commit
 * counts, refused ones too). A group, with its GroupInfo of up to 1 MiB, lives as long as a
 * device is routed to it: this bounds how fast one account can make the server store them. A
 * 1:1 conversation is a group too; a person starts far fewer in an hour.
 */
export const GROUPS_CREATED_PER_ACCOUNT = 100;
export const GROUP_CREATION_WINDOW_MS = 60 * 60 * 1000;
/** Tries of a welcome whose recipients' manifests change under it (each time checked again). */
const WELCOME_ATTEMPTS = 3;
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
/**
 * The one path whose bodies get {@link MAX_DELIVERY_BODY_BYTES}: the app leaves its POST body
 * unread, and the route reads it after authentication.
 */
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

/**
 * The session's device route: a session that names no device cannot take part in groups, nor
 * one whose device its account's current manifest does not list.
 */
async function deviceRoute(devices: DeviceDirectory, session: AuthSession, op: string) {
  const { accountId, deviceId, seq } = await listedDevice(devices, session, op);
  return { route: { accountId, deviceId } satisfies DeviceRoute, manifestSeq: seq };
}

/**
 * A welcome's recipients must be devices their accounts' current manifests list (a made-up
 * route would let anyone fill queues nobody reads); returns the seq of each manifest checked.
 */
async function listedRecipients(
  devices: DeviceDirectory,
  recipients: readonly DeviceRoute[],
  op: string,
): Promise<Map<string, number>> {
  const byAccount = new Map<string, string[]>();
  for (const r of recipients)
    byAccount.set(r.accountId, [...(byAccount.get(r.accountId) ?? []), r.deviceId]);
  const seqs = new Map<string, number>();
  await Promise.all(
    [...byAccount].map(async ([accountId, deviceIds]) => {
      const current = await devices.current(accountId);
      const missing = deviceIds.find((id) => !current?.ids.includes(id));
      if (!current || missing !== undefined) {
        throw new ServerError(
          'FORBIDDEN',
          op,
          `the current manifest of account ${accountId} does not list device ${missing}`,
        );
      }
      seqs.set(accountId, current.seq);
    }),
  );
  return seqs;
}

const notMember = (op: string) =>
  new ServerError('FORBIDDEN', op, 'this device is not a member of the group');

/**
 * Group messages, device queues and GroupInfo for resync.
 *
 * @example app.route('/', deliveryRoutes(deps));
 */
export function deliveryRoutes(deps: RouteDeps): Hono<AppEnv> {
  const { storage, now, events, devices } = deps;
  const app = new Hono<AppEnv>();
  const auth = requireAuth({ storage, now });
  // Counted in the throttle table under an HMAC key with its own prefix, like the claim limiter.
  const countCreation = async (accountId: string, op: string) =>
    countInWindows(
      storage.throttle,
      [await hmac('SHA-256', deps.throttleKey, utf8Encode(`group-create:${accountId}`))],
      [GROUPS_CREATED_PER_ACCOUNT],
      GROUP_CREATION_WINDOW_MS,
      now(),
      op,
    );

  // After `auth`: a body of up to 3 MiB is buffered only for a live session (the app reads
  // every other body, up to 256 KiB, before the routes).
  const largeBody = bodyLimit(MAX_DELIVERY_BODY_BYTES, deps.bodyTimeoutMs);

  app.post('/v1/groups/:groupId/messages', auth, largeBody, jsonOnly(), async (c) => {
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
    // A group is at epoch 0 only before its creating commit (which moves it to 1), so a commit
    // at epoch 0 creates one, and a new group has no member besides its creator (spec).
    if (kind === 'commit' && epoch === 0 && recipients.length > 0)
      throw bad(op, 'recipients', 'to be empty in a commit at epoch 0 (it creates the group)');
    const { route: sender } = await deviceRoute(devices, c.get('session'), op);
    if (kind === 'commit' && epoch === 0) await countCreation(sender.accountId, op);

    const append = async () =>
      storage.delivery.append(
        {
          groupId,
          sender,
          epoch,
          kind: kind as DeliveryKind,
          message,
          recipients,
          removed,
          ...(groupInfo ? { groupInfo } : {}),
          ...(kind === 'welcome'
            ? { manifestSeqs: await listedRecipients(devices, recipients, op) }
            : {}),
        },
        { now: now(), cap: deps.maxQueueEntries, welcomeCap: MAX_QUEUED_WELCOMES },
      );
    let result = await append();
    // A recipient's account changed its manifest between the check and the queue locks: check
    // again against the new one.
    for (let i = 1; i < WELCOME_ATTEMPTS && !result.ok && result.reason === 'manifestChanged'; i++)
      result = await append();
    if (!result.ok) {
      switch (result.reason) {
        case 'epoch':
          throw new ServerError('EPOCH_CONFLICT', op, undefined, { epoch: result.epoch });
        case 'welcomesFull':
          throw new ServerError(
            'QUEUE_FULL',
            op,
            `device ${result.route.deviceId} of account ${result.route.accountId} holds ${MAX_QUEUED_WELCOMES} unacknowledged welcomes`,
          );
        case 'manifestChanged':
          throw new ServerError('CONFLICT', op, "a recipient account's manifest changed; retry");
        default:
          // An unknown group answers like a known one the device is not in: no existence oracle.
          throw notMember(op);
      }
    }
    // After the commit: sockets of each recipient device it was queued for are told to fetch.
    const skipped = new Set(result.skipped.map((r) => `${r.accountId}.${r.deviceId}`));
    for (const r of recipients)
      if (!skipped.has(`${r.accountId}.${r.deviceId}`))
        events.publish(r.accountId, { type: 'queue', deviceId: r.deviceId });
    return c.json({ seq: result.seq, epoch: result.epoch }, 201);
  });

  app.get('/v1/queue', auth, async (c) => {
    const op = 'delivery.queue';
    const session = c.get('session');
    const afterText = c.req.query('after');
    const limitText = c.req.query('limit');
    const after =
      afterText === undefined ? 0 : parseCount(afterText, 'after', op, Number.MAX_SAFE_INTEGER);
    const limit =
      limitText === undefined ? MAX_QUEUE_PAGE : parseCount(limitText, 'limit', op, MAX_QUEUE_PAGE);
    if (limit === 0) throw bad(op, 'limit', `an integer from 1 to ${MAX_QUEUE_PAGE}`);
    if (session.deviceId === null)
      throw new ServerError('FORBIDDEN', op, 'the session names no device');
    const route = { accountId: session.accountId, deviceId: session.deviceId };
    // Side by side: the listing check also yields the manifest seq the page carries, and a page
    // read for a device that turns out unlisted is dropped unseen.
    const [page, { manifestSeq }] = await Promise.all([
      storage.delivery.queue(route, after, { limit, maxBytes: MAX_QUEUE_PAGE_BYTES }),
      deviceRoute(devices, session, op),
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
      manifestSeq,
    });
  });

  app.post('/v1/queue/ack', auth, async (c) => {
    const op = 'delivery.ack';
    const body = readJson(c, op);
    const upTo = counterField(body, 'upTo', op);
    const { route } = await deviceRoute(devices, c.get('session'), op);
    await storage.delivery.ack(route, upTo);
    return c.body(null, 204);
  });

  app.get('/v1/groups/:groupId/info', auth, async (c) => {
    const op = 'delivery.groupInfo';
    const groupId = groupIdParam(c.req.param('groupId'), op);
    const { route } = await deviceRoute(devices, c.get('session'), op);
    const info = await storage.delivery.groupInfo(groupId, route);
    if (!info) throw notMember(op);
    return c.json({
      epoch: info.epoch,
      groupInfo: info.groupInfo ? toBase64url(info.groupInfo) : null,
    });
  });

  return app;
}
