// Types shared by the app, its middleware and its routes.
import type { IncomingMessage } from 'node:http';
import type { Context } from 'hono';
import type { EventHub } from '../event-hub.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import type { Storage } from '../storage/types.js';
import type { Throttle } from '../throttle.js';
import type { DeviceDirectory } from './_devices.js';
import type { BlobService } from './blobs.js';

/** The session a bearer token stands for, after the auth middleware checked it. */
export interface AuthSession {
  readonly tokenHash: Uint8Array;
  readonly accountId: string;
  readonly deviceId: string | null;
  readonly kind: 'session' | 'recovery';
  readonly expiresAt: number;
  readonly authAt: number;
}

/** Hono's environment for this app: Node bindings (absent in-process) and per-request values. */
export interface AppEnv {
  Bindings: { readonly incoming?: IncomingMessage };
  Variables: {
    requestId: string;
    /** The raw request body, read once by the body-limit middleware. */
    body: Uint8Array | undefined;
    session: AuthSession;
  };
}

export type AppContext = Context<AppEnv>;

/** What routes get: the app's dependencies with defaults filled in. */
export interface RouteDeps {
  readonly storage: Storage;
  readonly opaqueSetup: string;
  readonly throttleKey: Uint8Array;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly now: () => number;
  readonly clientAddress: (c: AppContext) => string;
  readonly events: EventHub;
  readonly throttle: Throttle;
  /** The blob directory and its limits; undefined when the server keeps no blobs. */
  readonly blobs: BlobService | undefined;
  /** Accounts' current devices, shared by the routes that check a device is listed. */
  readonly devices: DeviceDirectory;
  /** Entries a device queue holds before messages skip it (spec "Delivery"). */
  readonly maxQueueEntries: number;
  /** How long a buffered JSON body may take to arrive (`BODY_TIMEOUT_MS`). */
  readonly bodyTimeoutMs: number;
}

/** The log line of a write a foreign key refused (app.onError, and logins in accounts.ts). */
export const DELETED_ACCOUNT_LOG =
  'a foreign key refused a write: its account was deleted meanwhile';
