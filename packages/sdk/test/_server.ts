// The real Coffer server for the SDK's integration tests: @coffer/server's app over SQLite in
// memory (blobs in a fresh temporary directory), called in-process (the app's `request`) or over a real socket (`startServer`).
// `database` puts the storage on a SQLite file or a fresh PostgreSQL schema instead (the server
// tests' databases, test/_db.ts there), for suites that run on both or read the database's bytes.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateAeadKey, randomBytes } from '@coffer/crypto';
import { createLocalProvider } from '@coffer/fields';
import {
  createApp,
  createLogger,
  createMetrics,
  loadServerSecrets,
  openStorage,
  type RunningServer,
  type Storage,
  startServer,
} from '@coffer/server';
import { createTestDatabase, type TestDatabase, type TestDialect } from '../../server/test/_db.js';
import {
  type ClientOptions,
  type CofferClient,
  createClient,
  type FetchLike,
  type KeyStretching,
  memoryStore,
} from '../src/index.js';

/** Cheap Argon2id for tests (8 KiB, one pass): the one default-cost test sets its own. */
export const FAST_HASHING: KeyStretching = {
  'argon2id-custom': { memory: 8, iterations: 1, parallelism: 1 },
};

export const SERVER_URL = 'http://coffer.test';

export interface TestServer {
  readonly storage: Storage;
  /** The database under `storage` when `database` was given (its file, schema, raw view). */
  readonly db?: TestDatabase;
  /** The blob directory. */
  readonly blobDir: string;
  /** In-process fetch into the app. */
  readonly fetch: FetchLike;
  /** Listens on 127.0.0.1:<random port>; returns its URL. */
  listen(): Promise<string>;
  close(): Promise<void>;
}

/**
 * A fresh server with its own database: SQLite in memory by default; `database: 'sqlite'` a
 * SQLite file in a temporary directory, `'postgres'` a fresh PostgreSQL schema (dropped by
 * `close`; check `testDialects()` of the server's test/_db.ts first).
 */
export async function testServer(
  options: {
    now?: () => number;
    maxBlobBytes?: number;
    database?: TestDialect;
    maxQueueEntries?: number;
  } = {},
): Promise<TestServer> {
  let db: TestDatabase | undefined;
  let storage: Storage;
  if (options.database) {
    db = await createTestDatabase(options.database, 'sdk');
    storage = await db.open();
  } else {
    const provider = await createLocalProvider({ kek1: generateAeadKey() });
    storage = await openStorage({ sqlitePath: ':memory:', provider, kekId: 'kek1' });
  }
  let requests = 0;
  const secrets = await loadServerSecrets(storage);
  const blobDir = mkdtempSync(join(tmpdir(), 'coffer-sdk-blobs-'));
  const deps = {
    storage,
    ...secrets,
    logger: createLogger({ level: 'silent' }),
    metrics: createMetrics(),
    // Each request its own address, so that the per-address throttle (which the tests of
    // wrong passwords would trip when run together) leaves only the per-account one.
    clientAddress: () => `198.51.100.${(requests++ % 250) + 1}`,
    ...(options.now ? { now: options.now } : {}),
    ...(options.maxQueueEntries ? { maxQueueEntries: options.maxQueueEntries } : {}),
    blobs: {
      dir: blobDir,
      ...(options.maxBlobBytes === undefined ? {} : { maxBytes: options.maxBlobBytes }),
    },
  };
  const app = createApp(deps);
  let running: RunningServer | undefined;
  return {
    storage,
    ...(db ? { db } : {}),
    blobDir,
    fetch: (url, init) => app.request(url, init),
    async listen() {
      running ??= await startServer({ ...deps, port: 0, host: '127.0.0.1' });
      return running.url;
    },
    async close() {
      await running?.close();
      if (db) await db.dispose();
      else await storage.close();
      rmSync(blobDir, { recursive: true, force: true });
    },
  };
}

/** A client on a fresh memory home (or the given store/key), opened. */
export async function testClient(
  server: { fetch: FetchLike },
  overrides: Partial<ClientOptions> = {},
): Promise<CofferClient> {
  const client = createClient({
    server: SERVER_URL,
    store: memoryStore(),
    storeKey: randomBytes(32),
    fetch: server.fetch,
    opaque: { keyStretching: FAST_HASHING },
    ...overrides,
  });
  await client.open();
  return client;
}

/** A username unique to this run. */
export function username(prefix = 'user'): string {
  return `${prefix}-${Math.random().toString(36).slice(2, 10)}`;
}

/** One request a {@link tap}ped fetch saw. */
export interface Seen {
  readonly method: string;
  readonly path: string;
}

/**
 * Wraps a fetch to record requests and let a test play a hostile server: `rewrite` may return
 * a replacement JSON body for any answer (undefined keeps the real one).
 */
export function tap(
  inner: FetchLike,
  rewrite?: (req: Seen, body: unknown) => unknown | undefined,
): { fetch: FetchLike; seen: Seen[] } {
  const seen: Seen[] = [];
  const fetch: FetchLike = async (url, init) => {
    const u = new URL(url);
    const req = { method: init.method ?? 'GET', path: u.pathname + u.search };
    seen.push(req);
    const res = await inner(url, init);
    if (!rewrite || !res.ok || res.status === 204) return res;
    const body: unknown = await res.clone().json();
    const replaced = rewrite(req, body);
    if (replaced === undefined) return res;
    return new Response(JSON.stringify(replaced), {
      status: res.status,
      headers: { 'content-type': 'application/json' },
    });
  };
  return { fetch, seen };
}

/** A request the test makes fail as a connection reset (`after`: once the server answered it). */
export interface ScriptedFailure {
  readonly part: string;
  readonly method?: string | undefined;
  readonly after: boolean;
}

/** What a test may do to a client's traffic; read at each request, so it can change between. */
export interface TrafficHooks<Page> {
  /** Sees each request first; an answer it returns is the server's instead. */
  intercept?: (url: string, init: RequestInit) => Response | undefined;
  /** Sees (and may replace) each queue page the client reads. */
  queuePages?: (body: Page) => Page | undefined;
}

/**
 * A fetch into `server` that plays a misbehaving network and server: the first failure in
 * `failures` whose part the URL or body contains (and method, if given) is taken off the list
 * and thrown as a connection reset, then `hooks` may answer instead of the server or replace a
 * queue page.
 */
export function scriptedFetch<Page>(
  server: { fetch: FetchLike },
  failures: ScriptedFailure[],
  hooks: TrafficHooks<Page>,
): FetchLike {
  return async (url, init) => {
    const method = init.method ?? 'GET';
    const at = failures.findIndex(
      (f) =>
        `${url} ${String(init.body ?? '')}`.includes(f.part) &&
        (f.method === undefined || f.method === method),
    );
    if (at >= 0) {
      const [failure] = failures.splice(at, 1);
      if (failure!.after) await server.fetch(url, init);
      throw new TypeError('connection reset');
    }
    const answer = hooks.intercept?.(url, init);
    if (answer) return answer;
    const res = await server.fetch(url, init);
    if (hooks.queuePages && method === 'GET' && url.includes('/v1/queue?') && res.ok) {
      const replaced = hooks.queuePages((await res.clone().json()) as Page);
      if (replaced) return Response.json(replaced);
    }
    return res;
  };
}
