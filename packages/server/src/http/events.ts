// spec/http-api-v1.md "Events": a WebSocket at /v1/events. The token comes in the first message,
// never in the URL (URLs end up in proxy logs). The HTTP route below only answers requests that
// are not upgrades; upgrades are taken from the Node server by `attachEventSocket`.
import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { Hono } from 'hono';
import { type RawData, type WebSocket, WebSocketServer } from 'ws';
import { ServerError } from '../errors.js';
import type { AccountEvent, EventHub } from '../event-hub.js';
import type { Logger } from '../logger.js';
import { sessionFromToken } from '../middleware/auth.js';
import type { Storage } from '../storage/types.js';
import { createDeviceDirectory, type DeviceDirectory, listedDevice } from './_devices.js';
import type { AppEnv } from './_env.js';

/** The path the WebSocket lives at. */
export const EVENTS_PATH = '/v1/events';
/** Close codes: no or bad auth, session revoked, server going away. */
export const CLOSE_UNAUTHENTICATED = 4401;
export const CLOSE_REVOKED = 4403;
export const CLOSE_GOING_AWAY = 1001;
/** Close code of a device's oldest socket when it opens one more than {@link MAX_SOCKETS_PER_DEVICE}. */
export const CLOSE_TOO_MANY = 4429;
/**
 * Open sockets one device may hold: a device is one app (a few windows at most). Past this its
 * oldest is closed, so that a client reconnecting without closing (or one token opened in a
 * loop) cannot pile up subscriptions, each of which every event of the account reaches.
 */
export const MAX_SOCKETS_PER_DEVICE = 8;
/** The auth message must come this soon after the upgrade. */
export const AUTH_TIMEOUT_MS = 10_000;
/** Client messages are one small JSON object. */
const MAX_MESSAGE_BYTES = 1024;
/** Dead peers are found by ping/pong this often. */
const HEARTBEAT_MS = 30_000;
/**
 * Bytes of pushes a socket may have waiting to be sent (beyond what the kernel took) before it
 * is dropped: thousands of pushes, while a client that reads has at most a few waiting. A
 * client that does not read (yet answers pings: pongs need no reading) otherwise made the
 * server buffer every push for it, without end; each one is only "look again", and a client
 * dropped reconnects and catches up from its queue (spec "Events").
 */
export const MAX_BUFFERED_BYTES = 64 * 1024;

/**
 * `GET /v1/events` without an upgrade: `400 BAD_REQUEST` (the route exists so that it is
 * documented and counted like the others).
 */
export function eventRoutes(): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.get(EVENTS_PATH, () => {
    throw new ServerError('BAD_REQUEST', 'events', 'expected a websocket upgrade');
  });
  return app;
}

/** What {@link attachEventSocket} needs. */
export interface EventSocketDeps {
  readonly storage: Storage;
  readonly events: EventHub;
  readonly logger: Logger;
  readonly now?: () => number;
  /** Accounts' current devices; default a directory over `storage.manifests`. */
  readonly devices?: DeviceDirectory;
}

/** The attached WebSocket endpoint. */
export interface EventSocket {
  /** Open connections. */
  readonly connections: number;
  /** Closes every connection with `code` (1001 at shutdown) and stops accepting. */
  close(code?: number, reason?: string): void;
}

function parseAuth(data: RawData, isBinary: boolean): string | undefined {
  if (isBinary) return undefined;
  try {
    const text = Array.isArray(data) ? Buffer.concat(data).toString('utf8') : data.toString();
    const msg = JSON.parse(text) as unknown;
    if (typeof msg !== 'object' || msg === null) return undefined;
    const { type, token } = msg as { type?: unknown; token?: unknown };
    return type === 'auth' && typeof token === 'string' ? token : undefined;
  } catch {
    return undefined;
  }
}

function reject(socket: Duplex, status: number, text: string): void {
  socket.end(
    `HTTP/1.1 ${status} ${text}\r\nconnection: close\r\ncontent-length: 0\r\ncache-control: no-store\r\n\r\n`,
  );
}

/**
 * Takes WebSocket upgrades for {@link EVENTS_PATH} from `server` (others get 404) and runs the
 * event protocol: auth message, `ready`, then `manifest` and `queue` pushes and `revoked`.
 *
 * @example const events = attachEventSocket(server, { storage, events: hub, logger });
 */
export function attachEventSocket(server: Server, deps: EventSocketDeps): EventSocket {
  const now = deps.now ?? Date.now;
  const devices = deps.devices ?? createDeviceDirectory(deps.storage.manifests);
  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_MESSAGE_BYTES });
  const sockets = new Set<WebSocket>();
  /** Authenticated sockets per `accountId:deviceId`, oldest first. */
  const byDevice = new Map<string, Map<WebSocket, (code: number, reason: string) => void>>();
  let closing = false;

  const onUpgrade = (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    let path: string;
    try {
      path = new URL(request.url ?? '/', 'http://x').pathname;
    } catch {
      path = '';
    }
    if (closing) return reject(socket, 503, 'Service Unavailable');
    if (path !== EVENTS_PATH) return reject(socket, 404, 'Not Found');
    if (request.headers.upgrade?.toLowerCase() !== 'websocket')
      return reject(socket, 400, 'Bad Request');
    wss.handleUpgrade(request, socket, head, (ws) => serve(ws));
  };
  server.on('upgrade', onUpgrade);

  /** Sends `message`, or drops the socket when its client is not reading what it was sent. */
  const push = (ws: WebSocket, message: object) => {
    if (ws.readyState !== ws.OPEN) return;
    if (ws.bufferedAmount > MAX_BUFFERED_BYTES) return ws.terminate();
    ws.send(JSON.stringify(message));
  };

  const serve = (ws: WebSocket) => {
    sockets.add(ws);
    let alive = true;
    let unsubscribe: (() => void) | undefined;
    let leave: (() => void) | undefined;
    const done = (code: number, reason: string) => {
      unsubscribe?.();
      unsubscribe = undefined;
      leave?.();
      leave = undefined;
      if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) ws.close(code, reason);
    };
    const authTimer = setTimeout(
      () => done(CLOSE_UNAUTHENTICATED, 'auth expected'),
      AUTH_TIMEOUT_MS,
    );
    const heartbeat = setInterval(() => {
      if (!alive) return ws.terminate();
      alive = false;
      ws.ping();
    }, HEARTBEAT_MS);
    ws.on('pong', () => {
      alive = true;
    });
    ws.on('error', () => ws.terminate());
    ws.on('close', () => {
      clearTimeout(authTimer);
      clearInterval(heartbeat);
      unsubscribe?.();
      leave?.();
      sockets.delete(ws);
    });

    ws.once('message', async (data, isBinary) => {
      clearTimeout(authTimer);
      const token = parseAuth(data, isBinary);
      let session: Awaited<ReturnType<typeof sessionFromToken>>;
      let listed = false;
      try {
        session = token ? await sessionFromToken(deps.storage, token, now()) : undefined;
        // Events are a device's route, as delivery is: a session that names no device, or one
        // its account's current manifest does not list, gets none (spec "Events").
        if (session?.kind === 'session') {
          listed = await listedDevice(devices, session, 'events').then(
            () => true,
            (err: unknown) => {
              if (ServerError.is(err)) return false;
              throw err;
            },
          );
        }
      } catch (err) {
        deps.logger.warn({ err }, 'events: session lookup failed');
        return done(1011, 'internal error');
      }
      if (session?.kind !== 'session') return done(CLOSE_UNAUTHENTICATED, 'unauthenticated');
      if (!listed) return done(CLOSE_REVOKED, 'device not listed');
      if (ws.readyState !== ws.OPEN) return;
      const { accountId, deviceId, tokenHash, expiresAt } = session;
      // A `queue` push holds nothing but "fetch your queue", so one whose session check is in
      // flight covers every queue event that comes meanwhile: it is sent after them, and they
      // were published after their commits. Without this, a burst of messages to the device
      // made one session lookup and one frame each, per socket, unbounded.
      let queuePushing = false;
      const pushQueue = async () => {
        if (queuePushing) return;
        queuePushing = true;
        try {
          const still = expiresAt > now() ? await deps.storage.sessions.get(tokenHash) : undefined;
          if (!still) return done(CLOSE_UNAUTHENTICATED, 'session ended');
          push(ws, { type: 'queue' });
        } finally {
          queuePushing = false;
        }
      };
      const onEvent = async (event: AccountEvent) => {
        // Another device's queue: nothing for this socket.
        if (event.type === 'queue' && event.deviceId !== deviceId) return;
        if (event.type === 'queue') return pushQueue();
        if (
          event.type === 'deleted' ||
          (deviceId !== null && event.revokedDeviceIds.includes(deviceId))
        ) {
          push(ws, { type: 'revoked' });
          return done(CLOSE_REVOKED, 'revoked');
        }
        // The session may have ended (logout, expiry) since the socket was opened.
        const still = expiresAt > now() ? await deps.storage.sessions.get(tokenHash) : undefined;
        if (!still) return done(CLOSE_UNAUTHENTICATED, 'session ended');
        push(ws, { type: 'manifest', seq: event.seq });
      };
      unsubscribe = deps.events.subscribe(accountId, (event) => {
        onEvent(event).catch((err: unknown) => {
          deps.logger.warn({ err }, 'events: delivery failed');
          done(1011, 'internal error');
        });
      });
      const key = `${accountId}:${deviceId}`;
      const mine = byDevice.get(key) ?? new Map<WebSocket, typeof done>();
      byDevice.set(key, mine);
      mine.set(ws, done);
      leave = () => {
        mine.delete(ws);
        if (mine.size === 0 && byDevice.get(key) === mine) byDevice.delete(key);
      };
      // Oldest first: unsubscribed and out of the count at once, closed with 4429.
      for (const [, end] of mine) {
        if (mine.size <= MAX_SOCKETS_PER_DEVICE) break;
        end(CLOSE_TOO_MANY, 'too many sockets for this device');
      }
      push(ws, { type: 'ready' });
    });
  };

  return {
    get connections() {
      return sockets.size;
    },
    close(code = CLOSE_GOING_AWAY, reason = 'server shutting down') {
      closing = true;
      for (const ws of sockets) ws.close(code, reason);
      server.off('upgrade', onUpgrade);
      wss.close();
    },
  };
}
