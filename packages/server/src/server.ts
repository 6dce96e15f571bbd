// Serving the app on a Node HTTP(S) server with the events WebSocket, and stopping it gracefully.
import type { Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { type AppDeps, createApp } from './app.js';
import { createEventHub } from './event-hub.js';
import { attachEventSocket } from './http/events.js';

/** What {@link startServer} needs: the app's dependencies and where to listen. */
export interface ServerOptions extends AppDeps {
  readonly port: number;
  readonly host: string;
  /** PEM certificate chain and key: serve HTTPS (and send HSTS). */
  readonly tls?: { readonly cert: string | Buffer; readonly key: string | Buffer };
  /** How long `close` waits for in-flight requests before cutting connections; default 10 s. */
  readonly drainTimeoutMs?: number;
  /** How long a connection may make no progress either way; default {@link IDLE_TIMEOUT_MS}. */
  readonly idleTimeoutMs?: number;
}

/** A listening server. */
export interface RunningServer {
  /** `http://host:port` (with the actual port when 0 was asked for). */
  readonly url: string;
  readonly port: number;
  readonly server: Server;
  /** Open WebSocket connections. */
  readonly connections: number;
  /**
   * Stops accepting, closes WebSockets with 1001, waits for in-flight requests to finish (up to
   * the drain timeout), then closes what is left. Does not close the storage.
   */
  close(): Promise<void>;
}

/** How long one request, its body included, may take (a large upload on a slow link). */
export const REQUEST_TIMEOUT_MS = 60 * 60 * 1000;
/**
 * A connection on which nothing is read or written for this long is closed. Node has no such
 * limit by default, and its request timeout only counts until a request is received: a client
 * that never read its response (a blob download, a large queue page) held its connection, the
 * response's buffers and an open blob file for good. WebSockets turn this off for themselves
 * (they have their heartbeat).
 */
export const IDLE_TIMEOUT_MS = 120_000;

/**
 * Starts the Coffer server: the app of {@link createApp} on HTTP or HTTPS, plus the
 * `/v1/events` WebSocket.
 *
 * @throws {Error} when the port cannot be bound (EADDRINUSE, EACCES).
 * @example
 * const running = await startServer({ storage, ...secrets, logger, metrics, port: 8080, host: '127.0.0.1' });
 * await running.close();
 */
export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const events = options.events ?? createEventHub();
  const app = createApp({ ...options, events });
  const drainTimeoutMs = options.drainTimeoutMs ?? 10_000;

  const server = await new Promise<Server>((resolvePromise, reject) => {
    const s = serve(
      {
        fetch: app.fetch,
        port: options.port,
        hostname: options.host,
        // Node's default limit on a whole request, 5 minutes, would cut off an attachment
        // upload slower than about 3.5 MB/s at the 1 GiB blob limit; headers keep their own.
        ...(options.tls
          ? {
              createServer: createHttpsServer,
              serverOptions: {
                cert: options.tls.cert,
                key: options.tls.key,
                requestTimeout: REQUEST_TIMEOUT_MS,
              },
            }
          : { serverOptions: { requestTimeout: REQUEST_TIMEOUT_MS } }),
      },
      () => {
        s.off('error', reject);
        resolvePromise(s as Server);
      },
    );
    s.once('error', reject);
  });
  server.setTimeout(options.idleTimeoutMs ?? IDLE_TIMEOUT_MS);

  const socket = attachEventSocket(server, {
    storage: options.storage,
    events,
    logger: options.logger,
    ...(options.now ? { now: options.now } : {}),
  });

  const address = server.address() as AddressInfo;
  const scheme = options.tls ? 'https' : 'http';
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `${scheme}://${host}:${address.port}`;

  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= new Promise<void>((resolveClose) => {
      socket.close();
      let finished = false;
      server.close(() => {
        finished = true;
        clearInterval(sweep);
        clearTimeout(deadline);
        resolveClose();
      });
      // Keep-alive connections that go idle once their request is answered are closed as they
      // become idle; connections still busy at the deadline are cut.
      const sweep = setInterval(() => {
        if (!finished) server.closeIdleConnections();
      }, 25);
      const deadline = setTimeout(() => {
        if (!finished) server.closeAllConnections();
      }, drainTimeoutMs);
      server.closeIdleConnections();
    });
    return closing;
  };

  return {
    url,
    port: address.port,
    server,
    get connections() {
      return socket.connections;
    },
    close,
  };
}
