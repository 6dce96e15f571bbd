// The real Coffer server for the CLI's end-to-end tests: the server package's own app over its
// own storage (SQLite and blobs in a temporary directory), on a real socket on a free port.
import { mkdtempSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateAeadKey, randomBytes } from '@coffer/crypto';
import { createLocalProvider } from '@coffer/fields';
import { serve } from '@hono/node-server';
import { createApp } from '../../server/src/app.js';
import { createEventHub } from '../../server/src/event-hub.js';
import { attachEventSocket } from '../../server/src/http/events.js';
import { createLogger } from '../../server/src/logger.js';
import { createMetrics } from '../../server/src/metrics.js';
import { createOpaqueSetup } from '../../server/src/opaque.js';
import { openStorage } from '../../server/src/storage/open.js';

export interface TestServer {
  /** http://127.0.0.1:PORT */
  readonly url: string;
  /** Clients subscribed to the event socket (authenticated) right now. */
  subscribers(): number;
  close(): Promise<void>;
}

export async function startServer(): Promise<TestServer> {
  const dir = mkdtempSync(join(tmpdir(), 'coffer-cli-server-'));
  const provider = await createLocalProvider({ 'kek-1': generateAeadKey() });
  const storage = await openStorage({
    sqlitePath: join(dir, 'coffer.sqlite'),
    provider,
    kekId: 'kek-1',
  });
  const logger = createLogger({ level: 'silent' });
  const events = createEventHub();
  const app = createApp({
    storage,
    opaqueSetup: await createOpaqueSetup(),
    throttleKey: randomBytes(32),
    logger,
    metrics: createMetrics({ processMetrics: false }),
    events,
    blobs: { dir: join(dir, 'blobs') },
  });
  const server = await new Promise<Server>((resolve) => {
    const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () =>
      resolve(s as Server),
    );
  });
  const socket = attachEventSocket(server, { storage, events, logger });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    subscribers: () => events.size,
    async close() {
      socket.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await storage.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
