// Configuration from flags and environment.
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.js';

describe('loadConfig', () => {
  it('has defaults for a quick start', () => {
    const c = loadConfig([], {}, '/srv');
    expect(c).toMatchObject({
      port: 8080,
      host: '127.0.0.1',
      dataDir: '/srv/data',
      database: { kind: 'sqlite', path: '/srv/data/coffer.sqlite', sync: 'normal' },
      kek: { kind: 'file', path: '/srv/data/kek.key' },
      logLevel: 'info',
      trustProxy: [],
      help: false,
    });
    expect(c.tls).toBeUndefined();
  });

  it('puts blobs beside the database unless told otherwise', () => {
    expect(loadConfig([], {}, '/srv').blobs).toEqual({
      dir: '/srv/data/blobs',
      maxBytes: 1024 ** 3,
      quotaBytes: 10 * 1024 ** 3,
    });
    expect(loadConfig(['--blob-dir', 'b'], {}, '/srv').blobs.dir).toBe('/srv/b');
    const env = {
      COFFER_BLOB_DIR: '/mnt/blobs',
      COFFER_MAX_BLOB_BYTES: '1000',
      COFFER_BLOB_QUOTA_BYTES: '5000',
    };
    expect(loadConfig([], env, '/srv').blobs).toEqual({
      dir: '/mnt/blobs',
      maxBytes: 1000,
      quotaBytes: 5000,
    });
    expect(() => loadConfig([], { COFFER_MAX_BLOB_BYTES: '1e9' }, '/srv')).toThrow(ConfigError);
    expect(() => loadConfig([], { COFFER_BLOB_QUOTA_BYTES: '0' }, '/srv')).toThrow(ConfigError);
  });

  it('chooses how SQLite syncs commits', () => {
    expect(loadConfig(['--sqlite-sync', 'full'], {}, '/srv').database).toMatchObject({
      sync: 'full',
    });
    expect(loadConfig([], { COFFER_SQLITE_SYNC: 'full' }, '/srv').database).toMatchObject({
      sync: 'full',
    });
    expect(() => loadConfig([], { COFFER_SQLITE_SYNC: 'off' }, '/srv')).toThrow(ConfigError);
  });

  it('takes flags over environment', () => {
    const c = loadConfig(
      ['--port', '9000', '--data-dir', 'd', '--tls-cert', 'c.pem', '--tls-key', 'k.pem'],
      {
        PORT: '7000',
        COFFER_DATA_DIR: 'other',
        DATABASE_URL: 'postgres://u@db/coffer',
        LOG_LEVEL: 'warn',
      },
      '/srv',
    );
    expect(c.port).toBe(9000);
    expect(c.dataDir).toBe('/srv/d');
    expect(c.database).toEqual({ kind: 'postgres', url: 'postgres://u@db/coffer' });
    expect(c.tls).toEqual({ certPath: '/srv/c.pem', keyPath: '/srv/k.pem' });
    expect(c.logLevel).toBe('warn');
    expect(loadConfig([], { PORT: '0', HOST: '0.0.0.0', COFFER_KEK_FILE: '/k' }).port).toBe(0);
  });

  it('trusts the reverse proxies it is told of, and names a bad entry', () => {
    expect(loadConfig([], { COFFER_TRUST_PROXY: '127.0.0.1, 10.0.0.0/8' }).trustProxy).toEqual([
      '127.0.0.1',
      '10.0.0.0/8',
    ]);
    expect(
      loadConfig(['--trust-proxy', '::1'], { COFFER_TRUST_PROXY: '10.0.0.1' }).trustProxy,
    ).toEqual(['::1']);
    expect(() => loadConfig(['--trust-proxy', '10.0.0.1,proxy.local'], {})).toThrow(
      new ConfigError(
        '--trust-proxy expected addresses or CIDR ranges: "proxy.local" is not an IP address or CIDR range',
      ),
    );
    expect(() => loadConfig([], { COFFER_TRUST_PROXY: '10.0.0.0/40' })).toThrow(
      /^COFFER_TRUST_PROXY expected/,
    );
  });

  it('selects an HSM key provider from COFFER_PKCS11_*', () => {
    const c = loadConfig([], {
      COFFER_PKCS11_LIBRARY: '/usr/lib/softhsm/libsofthsm2.so',
      COFFER_PKCS11_PIN: '1234',
      COFFER_PKCS11_TOKEN_LABEL: 'coffer',
      COFFER_KEK_ID: 'kek-1',
    });
    expect(c.kek).toEqual({
      kind: 'pkcs11',
      library: '/usr/lib/softhsm/libsofthsm2.so',
      pin: '1234',
      tokenLabel: 'coffer',
      kekId: 'kek-1',
    });
  });

  it.each([
    [['--port', 'abc'], {}, /--port expected a port/],
    [['--port', '70000'], {}, /port/],
    [[], { PORT: '-1' }, /PORT expected/],
    [['--bogus'], {}, /^unknown option --bogus \(see --help\)$/],
    [['--databse-url=postgres://u:hunter2@h/db'], {}, /^unknown option --databse-url \(/],
    [['--port'], {}, /^option --port needs a value$/],
    [['postgres://u:hunter2@h/db'], {}, /^unexpected argument \(not shown\)/],
    [['--tls-cert', 'c.pem'], {}, /both a certificate and a key/],
    [[], { DATABASE_URL: 'mysql://x' }, /postgres/],
    [[], { LOG_LEVEL: 'loud' }, /LOG_LEVEL/],
    [[], { COFFER_PKCS11_LIBRARY: '/x.so' }, /PIN/],
  ] as const)('refuses %j %j', (argv, env, message) => {
    expect(() => loadConfig(argv, env)).toThrow(ConfigError);
    expect(() => loadConfig(argv, env)).toThrow(message);
    // Nothing given as an argument is echoed but an option's name.
    expect(() => loadConfig(argv, env)).not.toThrow(/hunter2/);
  });
});
