import { FieldsError } from '@coffer/fields';
import { Hono } from 'hono';
import { createBlobFiles } from './blob-files.js';
import { socketAddress } from './client-address.js';
import { errorResponse, ServerError } from './errors.js';
import { createEventHub, type EventHub } from './event-hub.js';
import { createDeviceDirectory } from './http/_devices.js';
import { type AppContext, type AppEnv, DELETED_ACCOUNT_LOG, type RouteDeps } from './http/_env.js';
import { routeLabel } from './http/_route.js';
import { accountRoutes } from './http/accounts.js';
import {
  BLOB_QUOTA_BYTES,
  BLOB_UPLOAD_PATH,
  type BlobService,
  blobRoutes,
  MAX_BLOB_BYTES,
  MAX_BLOBS_PER_ACCOUNT,
} from './http/blobs.js';
import { DELIVERY_BODY_PATH, deliveryRoutes, MAX_QUEUE_ENTRIES } from './http/delivery.js';
import { deviceRoutes } from './http/devices.js';
import { eventRoutes } from './http/events.js';
import { healthRoutes } from './http/health.js';
import { keyPackageRoutes } from './http/key-packages.js';
import { linkRoutes } from './http/links.js';
import { passwordRoutes } from './http/password.js';
import { userRoutes } from './http/users.js';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';
import { BODY_TIMEOUT_MS, bodyLimit, MAX_BODY_BYTES } from './middleware/body-limit.js';
import { httpMetrics } from './middleware/http-metrics.js';
import { jsonOnly } from './middleware/json-only.js';
import { requestId } from './middleware/request-id.js';
import { requestLog } from './middleware/request-log.js';
import { securityHeaders } from './middleware/security-headers.js';
import { openApiRoutes } from './openapi.js';
import type { SignupLimits } from './signup-limiter.js';
import { type Storage, StorageConflictError } from './storage/types.js';
import { createThrottle, type Throttle } from './throttle.js';

export type { AppContext, AppEnv } from './http/_env.js';

/** What {@link createApp} needs. */
export interface AppDeps {
  readonly storage: Storage;
  /** The OPAQUE server setup (see `loadServerSecrets`). */
  readonly opaqueSetup: string;
  /** 32-byte HMAC key for throttle and rate-limit keys, fake OPAQUE identifiers and the tags of issued account ids. */
  readonly throttleKey: Uint8Array;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** The clock, ms since the epoch; default Date.now. */
  readonly now?: () => number;
  /** The client's address for throttling; default the socket peer (IPv6 by /64). */
  readonly clientAddress?: (c: AppContext) => string;
  /** Where manifest changes are announced to WebSocket connections; default a new hub. */
  readonly events?: EventHub;
  /** Login throttling; default {@link createThrottle} over `storage.throttle` (benchmarks replace it). */
  readonly throttle?: Throttle;
  /**
   * Where blobs (encrypted attachments) are kept, and their limits (defaults `MAX_BLOB_BYTES`,
   * `BLOB_QUOTA_BYTES`); without it the blob routes answer `503 UNAVAILABLE`.
   */
  readonly blobs?: BlobOptions;
  /**
   * Per-client-address limits on signup/start and signup/finish per hour (default
   * `SIGNUP_LIMITS`: 30 and 10).
   */
  readonly signupLimits?: SignupLimits;
  /** Entries a device queue holds before messages skip it (default `MAX_QUEUE_ENTRIES`; tests). */
  readonly maxQueueEntries?: number;
  /** How long a JSON body may take to arrive (default `BODY_TIMEOUT_MS`; tests). */
  readonly bodyTimeoutMs?: number;
}

/** The blob directory and its limits, for {@link AppDeps}. */
export interface BlobOptions {
  /** The directory of blob files (made on first use). */
  readonly dir: string;
  /** Largest blob in bytes (default 1 GiB). */
  readonly maxBytes?: number;
  /** Bytes one account's blobs may hold (default 10 GiB). */
  readonly quotaBytes?: number;
  /** Blobs one account may hold (default `MAX_BLOBS_PER_ACCOUNT`). */
  readonly maxCount?: number;
}

/** A limit from the options, or its default; anything but a positive integer is a mistake. */
function positive(value: number | undefined, fallback: number, name: string): number {
  const v = value ?? fallback;
  if (!Number.isSafeInteger(v) || v < 1) throw new Error(`"${name}" expected a positive integer`);
  return v;
}

function blobService(options: BlobOptions | undefined): BlobService | undefined {
  if (!options) return undefined;
  return {
    files: createBlobFiles(options.dir),
    maxBytes: positive(options.maxBytes, MAX_BLOB_BYTES, 'blobs.maxBytes'),
    quotaBytes: positive(options.quotaBytes, BLOB_QUOTA_BYTES, 'blobs.quotaBytes'),
    maxCount: positive(options.maxCount, MAX_BLOBS_PER_ACCOUNT, 'blobs.maxCount'),
  };
}

/** Errors that mean a dependency is down, not a bug: the key provider or the database. */
function isUnavailable(err: unknown): boolean {
  if (FieldsError.is(err, 'PROVIDER_UNAVAILABLE')) return true;
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return false;
  return (
    ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND', 'EPIPE'].includes(
      code,
    ) ||
    code.startsWith('SQLITE_BUSY') ||
    code === 'SQLITE_LOCKED' ||
    // PostgreSQL: connection exceptions, insufficient resources, operator intervention.
    /^(08|53|57P)/.test(code)
  );
}

/**
 * The Coffer HTTP API (spec/http-api-v1.md) as a Hono app: request id, security headers, request
 * log, metrics, JSON-only bodies of at most 256 KiB (3 MiB for group messages, read after
 * authentication; blob uploads are streamed to files), then the routes. Every error goes through
 * one handler and the code table in errors.ts; an unexpected exception is `500 INTERNAL` with no
 * detail (logged with its stack, never with the request body).
 *
 * @example
 * const app = createApp({ storage, opaqueSetup, throttleKey, logger, metrics });
 * const res = await app.request('/healthz');
 */
export function createApp(deps: AppDeps): Hono<AppEnv> {
  const now = deps.now ?? Date.now;
  const routeDeps: RouteDeps = {
    storage: deps.storage,
    opaqueSetup: deps.opaqueSetup,
    throttleKey: deps.throttleKey,
    logger: deps.logger,
    metrics: deps.metrics,
    now,
    clientAddress: deps.clientAddress ?? socketAddress,
    events: deps.events ?? createEventHub(),
    throttle: deps.throttle ?? createThrottle(deps.storage.throttle, deps.throttleKey, now),
    blobs: blobService(deps.blobs),
    devices: createDeviceDirectory(deps.storage.manifests),
    maxQueueEntries: positive(deps.maxQueueEntries, MAX_QUEUE_ENTRIES, 'maxQueueEntries'),
    bodyTimeoutMs: positive(deps.bodyTimeoutMs, BODY_TIMEOUT_MS, 'bodyTimeoutMs'),
  };
  const { logger } = deps;
  const app = new Hono<AppEnv>();

  app.use(requestId());
  app.use(securityHeaders());
  app.use(requestLog(logger));
  app.use(httpMetrics(deps.metrics));
  const smallBodies = bodyLimit(MAX_BODY_BYTES, routeDeps.bodyTimeoutMs);
  app.use((c, next) => {
    // A blob upload streams its body to a file itself (spec "Blobs"), up to its own limit; a
    // group message (up to 3 MiB) is read by its route after authentication, so that no one
    // without a session makes the server hold more than the 256 KiB of other bodies.
    if (
      c.req.method === 'POST' &&
      (c.req.path === BLOB_UPLOAD_PATH || DELIVERY_BODY_PATH.test(c.req.path))
    ) {
      c.set('body', undefined);
      return next();
    }
    return smallBodies(c, next);
  });
  app.use(jsonOnly());

  app.route('/', healthRoutes(routeDeps));
  app.route('/', openApiRoutes());
  app.route('/', accountRoutes(routeDeps, deps.signupLimits));
  app.route('/', passwordRoutes(routeDeps));
  app.route('/', deviceRoutes(routeDeps));
  app.route('/', linkRoutes(routeDeps));
  app.route('/', keyPackageRoutes(routeDeps));
  app.route('/', deliveryRoutes(routeDeps));
  app.route('/', userRoutes(routeDeps));
  app.route('/', blobRoutes(routeDeps));
  app.route('/', eventRoutes());

  app.notFound(() => errorResponse(new ServerError('NOT_FOUND', 'http.route')));

  app.onError((err, c) => {
    if (ServerError.is(err)) return errorResponse(err);
    const context = { reqId: c.get('requestId'), method: c.req.method, route: routeLabel(c) };
    // A write that raced its account's deletion: the session went with the account. Logged,
    // so that a foreign key refusing a write for any other reason (a bug) is not silent.
    if (err instanceof StorageConflictError && err.what === 'deletedAccount') {
      logger.warn({ ...context, detail: err.message }, DELETED_ACCOUNT_LOG);
      return errorResponse(new ServerError('UNAUTHENTICATED', 'http', 'the account is gone'));
    }
    if (isUnavailable(err)) {
      logger.warn({ ...context, err }, 'dependency unavailable');
      return errorResponse(new ServerError('UNAVAILABLE', 'http'));
    }
    logger.error({ ...context, err }, 'unexpected error');
    return errorResponse(new ServerError('INTERNAL', 'http'));
  });

  return app;
}
