// The server process: configuration, key provider, storage, secrets, server, signals. main.ts
// calls `runServer`; everything here happens only when it is called.
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import {
  createPkcs11Provider,
  FieldsError,
  generateKekFile,
  type KeyProvider,
  localProviderFromFile,
} from '@coffer/fields';
import { createBlobFiles } from './blob-files.js';
import { forwardedAddress, trustedProxies } from './client-address.js';
import { type Config, ConfigError, loadConfig, USAGE } from './config.js';
import { sweepBlobs } from './http/blobs.js';
import { DELIVERY_RETENTION_MS } from './http/delivery.js';
import { createLogger, type Logger } from './logger.js';
import { createMetrics } from './metrics.js';
import { type RunningServer, startServer } from './server.js';
import { loadServerSecrets } from './server-secrets.js';
import { openStorage } from './storage/open.js';
import type { Storage } from './storage/types.js';
import { THROTTLE_IDLE_MS } from './throttle.js';

/** The KEK id of the local key file (recorded beside the wrapped keyring, so it must not change). */
export const LOCAL_KEK_ID = 'local';
/** Expired records are swept this often. */
const SWEEP_MS = 60 * 60 * 1000;

/** Exit statuses: 2 for a configuration mistake, 1 for a failure to start. */
export const EXIT_CONFIG = 2;
export const EXIT_FAILURE = 1;

interface Provider {
  readonly provider: KeyProvider;
  readonly kekId: string;
  close(): Promise<void>;
}

async function openProvider(config: Config, logger: Logger): Promise<Provider> {
  const kek = config.kek;
  if (kek.kind === 'pkcs11') {
    const provider = await createPkcs11Provider({
      library: kek.library,
      pin: kek.pin,
      ...(kek.slot !== undefined ? { slot: kek.slot } : {}),
      ...(kek.tokenLabel !== undefined ? { tokenLabel: kek.tokenLabel } : {}),
    });
    return { provider, kekId: kek.kekId, close: () => provider.close() };
  }
  if (!existsSync(kek.path)) {
    await generateKekFile(kek.path);
    logger.warn(
      { path: kek.path },
      'created a new KEK file: back it up apart from the database; without it the data cannot be read',
    );
  }
  const provider = await localProviderFromFile(kek.path, LOCAL_KEK_ID);
  return { provider, kekId: LOCAL_KEK_ID, close: async () => {} };
}

async function readTls(config: Config) {
  if (!config.tls) return undefined;
  const read = async (path: string, what: string) => {
    try {
      return await readFile(path);
    } catch {
      throw new ConfigError(`cannot read the TLS ${what} file ${path}`);
    }
  };
  return {
    cert: await read(config.tls.certPath, 'certificate'),
    key: await read(config.tls.keyPath, 'key'),
  };
}

function fail(message: string, status: number): never {
  process.stderr.write(`coffer-server: error: ${message}\n`);
  process.exit(status);
}

/**
 * Runs the server process until SIGTERM or SIGINT: the first signal stops accepting, lets
 * in-flight requests finish, closes WebSockets (1001) and storage, and exits 0; a second signal
 * exits at once. Configuration mistakes print one line on stderr and exit 2.
 *
 * @example await runServer(process.argv.slice(2), process.env);
 */
export async function runServer(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): Promise<void> {
  let config: Config;
  try {
    config = loadConfig(argv, env);
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message, EXIT_CONFIG);
    throw err;
  }
  if (config.help) {
    process.stdout.write(USAGE);
    return;
  }
  const logger = createLogger({ level: config.logLevel });

  let provider: Provider;
  let tls: Awaited<ReturnType<typeof readTls>>;
  try {
    if (config.database.kind === 'sqlite' || config.kek.kind === 'file')
      await mkdir(config.dataDir, { recursive: true, mode: 0o700 });
    await mkdir(config.blobs.dir, { recursive: true, mode: 0o700 });
    tls = await readTls(config);
    provider = await openProvider(config, logger);
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message, EXIT_CONFIG);
    if (FieldsError.is(err, 'INVALID_ARGUMENT')) fail(err.message, EXIT_CONFIG);
    if (FieldsError.is(err)) fail(`key provider: ${err.message}`, EXIT_FAILURE);
    fail(`cannot prepare ${config.dataDir}: ${(err as Error).message}`, EXIT_CONFIG);
  }

  let storage: Storage;
  try {
    storage = await openStorage({
      ...(config.database.kind === 'sqlite'
        ? { sqlitePath: config.database.path, sqliteSync: config.database.sync }
        : { url: config.database.url }),
      provider: provider.provider,
      kekId: provider.kekId,
    });
  } catch (err) {
    await provider.close();
    if (FieldsError.is(err)) fail(`cannot open the database keyring: ${err.message}`, EXIT_FAILURE);
    fail(`cannot open the database: ${(err as Error).message}`, EXIT_FAILURE);
  }

  let running: RunningServer;
  try {
    const secrets = await loadServerSecrets(storage);
    running = await startServer({
      storage,
      ...secrets,
      logger,
      metrics: createMetrics(),
      blobs: config.blobs,
      ...(config.trustProxy.length > 0
        ? { clientAddress: forwardedAddress(trustedProxies(config.trustProxy)) }
        : {}),
      port: config.port,
      host: config.host,
      ...(tls ? { tls } : {}),
    });
  } catch (err) {
    await storage.close();
    await provider.close();
    const code = (err as { code?: unknown }).code;
    if (code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL')
      fail(`cannot listen on ${config.host}:${config.port} (${code})`, EXIT_FAILURE);
    fail(`cannot start: ${(err as Error).message}`, EXIT_FAILURE);
  }

  const where =
    config.database.kind === 'sqlite'
      ? `sqlite ${config.database.path}`
      : `postgresql ${redactUrl(config.database.url)}`;
  logger.info(`coffer server listening on ${running.url} (${where})`);

  // Expired sessions, login states and links are refused when read; this only reclaims space.
  // Throttle counts idle for a day start over (spec "Throttling").
  // Delivery retention (spec "Delivery"): messages older than 30 days go, acknowledged or not.
  // Blob retention (spec "Blobs"): blobs older than 30 days, orphaned files, abandoned uploads.
  const blobFiles = createBlobFiles(config.blobs.dir);
  const sweep = setInterval(() => {
    const t = Date.now();
    Promise.all([
      storage.sessions.deleteExpired(t),
      storage.logins.deleteExpired?.(t),
      storage.links.deleteExpired?.(t),
      storage.throttle.deleteIdle?.(t - THROTTLE_IDLE_MS),
      storage.delivery.deleteOlderThan(t - DELIVERY_RETENTION_MS),
      sweepBlobs(storage, blobFiles, t),
    ]).catch((err: unknown) => {
      logger.warn({ err }, 'sweeping expired records failed');
    });
  }, SWEEP_MS);
  sweep.unref();

  let stopping = false;
  const stop = async (signal: NodeJS.Signals) => {
    if (stopping) {
      process.stderr.write(`coffer-server: second ${signal}, exiting now\n`);
      process.exit(EXIT_FAILURE);
    }
    stopping = true;
    logger.info({ signal }, 'shutting down: finishing in-flight requests');
    clearInterval(sweep);
    try {
      await running.close();
      await storage.close();
      await provider.close();
      logger.info('stopped');
      logger.flush();
      process.exitCode = 0;
    } catch (err) {
      logger.error({ err }, 'shutdown failed');
      logger.flush();
      process.exitCode = EXIT_FAILURE;
    }
    // pino's async destination flushes on exit; exiting explicitly also stops any stray timer.
    setImmediate(() => process.exit());
  };
  process.on('SIGTERM', (s) => void stop(s));
  process.on('SIGINT', (s) => void stop(s));
}

/** A database URL without its password, for the startup line. */
function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'postgres://…';
  }
}
