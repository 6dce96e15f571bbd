// The app over a real database (test/_db.ts), with a captured log, its own metrics registry,
// a clock the test moves, and a client address the test chooses. Requests go in-process
// (app.request) or, after `listen()`, over a real socket.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Hono } from 'hono';
import { type AppDeps, type AppEnv, createApp } from '../src/app.js';
import { createEventHub, type EventHub } from '../src/event-hub.js';
import { createLogger } from '../src/logger.js';
import { createMetrics, type Metrics } from '../src/metrics.js';
import { type RunningServer, startServer } from '../src/server.js';
import { loadServerSecrets, type ServerSecrets } from '../src/server-secrets.js';
import type { SignupLimits } from '../src/signup-limiter.js';
import type { Storage } from '../src/storage/types.js';
import { createTestDatabase, type TestDatabase, type TestDialect } from './_db.js';

/** A fetch-like function: path (with query) and init, relative to the app. */
export type Fetcher = (path: string, init?: RequestInit) => Promise<Response>;

export interface Harness {
  readonly dialect: TestDialect;
  readonly db: TestDatabase;
  readonly storage: Storage;
  readonly secrets: ServerSecrets;
  readonly app: Hono<AppEnv>;
  readonly metrics: Metrics;
  readonly events: EventHub;
  /** Every log line so far (raw JSON text). */
  readonly logs: string[];
  /** The test's clock. */
  readonly clock: { now: number };
  /** The blob directory (a fresh temporary one) and its limits. */
  readonly blobs: {
    readonly dir: string;
    readonly maxBytes: number;
    readonly quotaBytes: number;
    readonly maxCount?: number;
  };
  /** The address throttling sees for in-process requests. */
  readonly address: { value: string };
  /** In-process requests. */
  readonly fetch: Fetcher;
  /** Starts a real server on port 0 over the same storage; closed by dispose. */
  listen(options?: {
    readonly tls?: { cert: string; key: string };
    /** Instead of the socket peer (the server's default). */
    readonly clientAddress?: AppDeps['clientAddress'];
    /** Instead of the real limits (`SIGNUP_LIMITS`). */
    readonly signupLimits?: SignupLimits;
    /** Instead of `BODY_TIMEOUT_MS` (tests that let a body time out). */
    readonly bodyTimeoutMs?: number;
    /** Instead of `IDLE_TIMEOUT_MS` (tests that let a connection go idle). */
    readonly idleTimeoutMs?: number;
  }): Promise<RunningServer & { fetch: Fetcher }>;
  dispose(): Promise<void>;
}

/**
 * Suites sign up dozens of accounts from the harness's one address; they get room for that. The
 * real limits (`SIGNUP_LIMITS`) are tested by passing them as `signupLimits`.
 */
const ROOMY_SIGNUP_LIMITS: SignupLimits = { starts: 10_000, finishes: 10_000 };

/** Builds a harness on a fresh database of `dialect`. */
export async function createHarness(
  dialect: TestDialect,
  prefix = 'http',
  options: {
    readonly maxBlobBytes?: number;
    readonly blobQuotaBytes?: number;
    readonly maxBlobCount?: number;
    readonly signupLimits?: SignupLimits;
  } = {},
): Promise<Harness> {
  const db = await createTestDatabase(dialect, prefix);
  const storage = await db.open();
  const secrets = await loadServerSecrets(storage);
  const logs: string[] = [];
  const logger = createLogger({
    level: 'trace',
    destination: {
      write(line: string) {
        logs.push(line);
      },
    },
  });
  const metrics = createMetrics({ processMetrics: false });
  const events = createEventHub();
  const clock = { now: Date.now() };
  const address = { value: '192.0.2.1' };
  const now = () => clock.now;
  const blobs = {
    dir: join(mkdtempSync(join(tmpdir(), `coffer-${prefix}-blobs-`)), 'blobs'),
    maxBytes: options.maxBlobBytes ?? 1024 ** 3,
    quotaBytes: options.blobQuotaBytes ?? 10 * 1024 ** 3,
    ...(options.maxBlobCount === undefined ? {} : { maxCount: options.maxBlobCount }),
  };
  const app = createApp({
    blobs,
    storage,
    ...secrets,
    logger,
    metrics,
    events,
    now,
    clientAddress: () => address.value,
    signupLimits: options.signupLimits ?? ROOMY_SIGNUP_LIMITS,
  });
  const servers: RunningServer[] = [];
  return {
    dialect,
    db,
    storage,
    secrets,
    app,
    metrics,
    events,
    logs,
    clock,
    address,
    blobs,
    fetch: async (path, init) => app.request(path, init),
    async listen(options = {}) {
      const running = await startServer({
        storage,
        ...secrets,
        logger,
        metrics: createMetrics({ processMetrics: false }),
        events,
        now,
        blobs,
        port: 0,
        host: '127.0.0.1',
        ...(options.tls ? { tls: options.tls } : {}),
        ...(options.clientAddress ? { clientAddress: options.clientAddress } : {}),
        ...(options.signupLimits ? { signupLimits: options.signupLimits } : {}),
        ...(options.bodyTimeoutMs ? { bodyTimeoutMs: options.bodyTimeoutMs } : {}),
        ...(options.idleTimeoutMs ? { idleTimeoutMs: options.idleTimeoutMs } : {}),
        drainTimeoutMs: 5000,
      });
      servers.push(running);
      const base = running.url;
      return Object.assign(running, {
        fetch: (path: string, init?: RequestInit) => fetch(base + path, init),
      });
    },
    async dispose() {
      await Promise.all(servers.map((s) => s.close()));
      await db.dispose();
      rmSync(join(blobs.dir, '..'), { recursive: true, force: true });
    },
  };
}
