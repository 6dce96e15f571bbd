// The server process's configuration: CLI flags over environment variables over defaults.
// Parsing only; files are read when the server starts (main.ts).
import { isAbsolute, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { trustedProxies } from './client-address.js';
import { BLOB_QUOTA_BYTES, MAX_BLOB_BYTES } from './http/blobs.js';

/** Where the data lives. */
export type DatabaseConfig =
  | { readonly kind: 'sqlite'; readonly path: string; readonly sync: 'normal' | 'full' }
  | { readonly kind: 'postgres'; readonly url: string };

/** Which key provider holds the KEK of the server's encrypted columns. */
export type KekConfig =
  | { readonly kind: 'file'; readonly path: string }
  | {
      readonly kind: 'pkcs11';
      readonly library: string;
      readonly pin: string;
      readonly slot?: number;
      readonly tokenLabel?: string;
      readonly kekId: string;
    };

/** The server's configuration. */
export interface Config {
  readonly port: number;
  readonly host: string;
  readonly dataDir: string;
  readonly database: DatabaseConfig;
  /** Blob files (spec "Blobs") and their limits in bytes. */
  readonly blobs: { readonly dir: string; readonly maxBytes: number; readonly quotaBytes: number };
  readonly tls?: { readonly certPath: string; readonly keyPath: string };
  readonly kek: KekConfig;
  /**
   * Reverse proxies (addresses and CIDR ranges) whose `X-Forwarded-For` names the client the
   * rate limits count; empty: the TCP peer is the client.
   */
  readonly trustProxy: readonly string[];
  readonly logLevel: string;
  /** `--help` was given: print {@link USAGE} and exit. */
  readonly help: boolean;
}

/** A configuration mistake: main prints its message on one line and exits with status 2. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/** The usage text (`coffer-server --help`). */
export const USAGE = `usage: coffer-server [--port N] [--host H] [--data-dir DIR] [--database-url URL]
                     [--sqlite-sync MODE] [--blob-dir DIR] [--tls-cert FILE --tls-key FILE]
                     [--trust-proxy LIST]

Runs the Coffer server (HTTP API v1 and /v1/events WebSocket).

  --port N            port to listen on (env PORT, default 8080; 0 picks a free one)
  --host H            address to bind (env HOST, default 127.0.0.1; 0.0.0.0 for all)
  --data-dir DIR      SQLite database and local KEK file (env COFFER_DATA_DIR, default ./data)
  --database-url URL  postgres://... to use PostgreSQL (env DATABASE_URL)
  --sqlite-sync MODE  normal (default): a crash loses nothing committed, a power loss may lose
                      the last commits; full: every commit on disk first (env COFFER_SQLITE_SYNC)
  --blob-dir DIR      encrypted attachments, one file each (env COFFER_BLOB_DIR, default
                      <data-dir>/blobs)
  --tls-cert FILE     PEM certificate chain (env COFFER_TLS_CERT); with --tls-key, serve HTTPS
  --tls-key FILE      PEM private key (env COFFER_TLS_KEY)
  --trust-proxy LIST  comma-separated addresses or CIDR ranges of the reverse proxies in front
                      (env COFFER_TRUST_PROXY): the per-address rate limits then count the
                      client X-Forwarded-For names, not the proxy. Default: none, the TCP peer
                      is the client (behind a proxy, all clients would share its limits)

Environment: COFFER_KEK_FILE (default <data-dir>/kek.key), COFFER_PKCS11_LIBRARY, COFFER_PKCS11_PIN,
COFFER_PKCS11_SLOT or COFFER_PKCS11_TOKEN_LABEL, COFFER_KEK_ID (a KEK in an HSM instead of the
file), COFFER_MAX_BLOB_BYTES (largest blob, default 1 GiB), COFFER_BLOB_QUOTA_BYTES (bytes of blobs
one account may hold, default 10 GiB), LOG_LEVEL (fatal, error, warn, info, debug, trace, silent; default info).

Examples:
  coffer-server
  coffer-server --port 9000 --data-dir /var/lib/coffer
  DATABASE_URL=postgres://coffer@db/coffer coffer-server --host 0.0.0.0
`;

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

function port(text: string, where: string): number {
  if (!/^[0-9]{1,5}$/.test(text) || Number(text) > 65535)
    throw new ConfigError(`${where} expected a port number from 0 to 65535, got "${text}"`);
  return Number(text);
}

/**
 * parseArgs's refusal in this program's words (lowercase, STYLE.md), naming an option but never
 * echoing an argument that is not one: it may be a secret typed in the wrong place (a database
 * URL with its password).
 */
function argumentError(err: unknown): string {
  const { code, message } = err as { code?: unknown; message?: unknown };
  const text = typeof message === 'string' ? message : '';
  // Node quotes the option's name (without any =value) first: "Unknown option '--x'".
  const name = /'(-[^' <]*)/.exec(text)?.[1] ?? 'an option';
  switch (code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown option ${name} (see --help)`;
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      return `option ${name} needs a value`;
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return 'unexpected argument (not shown): coffer-server takes options only (see --help)';
    default:
      return 'cannot read the command line (see --help)';
  }
}

/**
 * Reads the configuration from command-line flags and environment variables.
 *
 * @throws {ConfigError} for an unknown flag or a malformed value (the message names it).
 * @example const config = loadConfig(process.argv.slice(2), process.env);
 */
export function loadConfig(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  cwd: string = process.cwd(),
): Config {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        port: { type: 'string' },
        host: { type: 'string' },
        'data-dir': { type: 'string' },
        'database-url': { type: 'string' },
        'sqlite-sync': { type: 'string' },
        'blob-dir': { type: 'string' },
        'tls-cert': { type: 'string' },
        'tls-key': { type: 'string' },
        'trust-proxy': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new ConfigError(argumentError(err));
  }
  const flag = (name: string) => values[name] as string | undefined;
  const pick = (name: string, variable: string) => {
    const v = flag(name) ?? env[variable];
    return v === '' ? undefined : v;
  };

  const portText = pick('port', 'PORT');
  const listenPort =
    portText === undefined ? 8080 : port(portText, flag('port') ? '--port' : 'PORT');
  const host = pick('host', 'HOST') ?? '127.0.0.1';
  const dataDir = resolve(cwd, pick('data-dir', 'COFFER_DATA_DIR') ?? './data');

  const url = pick('database-url', 'DATABASE_URL');
  let database: DatabaseConfig;
  if (url !== undefined && /^postgres(ql)?:\/\//.test(url)) database = { kind: 'postgres', url };
  else if (url !== undefined)
    throw new ConfigError('DATABASE_URL expected a postgres:// URL (leave it unset for SQLite)');
  else {
    const sync = pick('sqlite-sync', 'COFFER_SQLITE_SYNC') ?? 'normal';
    if (sync !== 'normal' && sync !== 'full')
      throw new ConfigError('COFFER_SQLITE_SYNC expected normal or full');
    database = { kind: 'sqlite', path: join(dataDir, 'coffer.sqlite'), sync };
  }

  const blobDir = resolve(cwd, pick('blob-dir', 'COFFER_BLOB_DIR') ?? join(dataDir, 'blobs'));
  const bytes = (variable: string, fallback: number) => {
    const text = env[variable];
    if (text === undefined || text === '') return fallback;
    if (!/^[1-9][0-9]{0,15}$/.test(text) || !Number.isSafeInteger(Number(text)))
      throw new ConfigError(`${variable} expected a positive number of bytes`);
    return Number(text);
  };
  const blobs = {
    dir: blobDir,
    maxBytes: bytes('COFFER_MAX_BLOB_BYTES', MAX_BLOB_BYTES),
    quotaBytes: bytes('COFFER_BLOB_QUOTA_BYTES', BLOB_QUOTA_BYTES),
  };

  const certPath = pick('tls-cert', 'COFFER_TLS_CERT');
  const keyPath = pick('tls-key', 'COFFER_TLS_KEY');
  if ((certPath === undefined) !== (keyPath === undefined))
    throw new ConfigError('TLS needs both a certificate and a key (--tls-cert and --tls-key)');
  const tls =
    certPath && keyPath
      ? { certPath: resolve(cwd, certPath), keyPath: resolve(cwd, keyPath) }
      : undefined;

  let kek: KekConfig;
  const library = env.COFFER_PKCS11_LIBRARY;
  if (library) {
    const pin = env.COFFER_PKCS11_PIN;
    const kekId = env.COFFER_KEK_ID;
    if (!pin) throw new ConfigError('COFFER_PKCS11_LIBRARY is set but COFFER_PKCS11_PIN is not');
    if (!kekId) throw new ConfigError('COFFER_PKCS11_LIBRARY is set but COFFER_KEK_ID is not');
    const slotText = env.COFFER_PKCS11_SLOT;
    if (slotText !== undefined && !/^[0-9]{1,10}$/.test(slotText))
      throw new ConfigError('COFFER_PKCS11_SLOT expected a slot id (a number)');
    const tokenLabel = env.COFFER_PKCS11_TOKEN_LABEL;
    if ((slotText === undefined) === (tokenLabel === undefined))
      throw new ConfigError('give exactly one of COFFER_PKCS11_SLOT and COFFER_PKCS11_TOKEN_LABEL');
    kek = {
      kind: 'pkcs11',
      library,
      pin,
      kekId,
      ...(slotText !== undefined ? { slot: Number(slotText) } : {}),
      ...(tokenLabel !== undefined ? { tokenLabel } : {}),
    };
  } else {
    const file = env.COFFER_KEK_FILE;
    kek = {
      kind: 'file',
      path: file ? (isAbsolute(file) ? file : resolve(cwd, file)) : join(dataDir, 'kek.key'),
    };
  }

  const proxyText = pick('trust-proxy', 'COFFER_TRUST_PROXY');
  const trustProxy =
    proxyText === undefined ? [] : proxyText.split(',').map((entry) => entry.trim());
  try {
    trustedProxies(trustProxy);
  } catch (err) {
    const where = flag('trust-proxy') ? '--trust-proxy' : 'COFFER_TRUST_PROXY';
    throw new ConfigError(`${where} expected addresses or CIDR ranges: ${(err as Error).message}`);
  }

  const logLevel = env.LOG_LEVEL ?? 'info';
  if (!LOG_LEVELS.includes(logLevel))
    throw new ConfigError(`LOG_LEVEL expected one of ${LOG_LEVELS.join(', ')}`);

  return {
    port: listenPort,
    host,
    dataDir,
    database,
    blobs,
    ...(tls ? { tls } : {}),
    kek,
    trustProxy,
    logLevel,
    help: values.help === true,
  };
}
