import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import {
  accessSync,
  constants,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { connect } from 'node:tls';

/**
 * Starts Debian's PyKMIP server (apt-get install python3-pykmip) on 127.0.0.1 with throwaway
 * certificates made by the openssl CLI, for the KMIP provider tests. Nothing here listens on
 * anything but the loopback address, and everything lives in one temp dir removed on stop.
 */

const SERVER_NAME = 'pykmip-server';
/** PyKMIP imports cryptography and SQLAlchemy before it listens: about 1 s here. */
const START_TIMEOUT_MS = 10_000;
/** SIGTERM lets it close its database; it may linger on open sessions, so not for long. */
const STOP_GRACE_MS = 500;

function onPath(command: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, command);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {}
  }
  return undefined;
}

/** Path of pykmip-server (COFFER_PYKMIP_SERVER, else PATH, else /usr/bin), if present. */
export function findPykmipServer(): string | undefined {
  const explicit = process.env.COFFER_PYKMIP_SERVER;
  const found =
    explicit !== undefined && explicit !== ''
      ? explicit
      : (onPath(SERVER_NAME) ?? `/usr/bin/${SERVER_NAME}`);
  try {
    accessSync(found, constants.X_OK);
    return found;
  } catch {
    return undefined;
  }
}

/** Whether the openssl CLI (used to make the certificates) is present. */
export function hasOpenssl(): boolean {
  return onPath('openssl') !== undefined;
}

export type Pki = {
  readonly dir: string;
  readonly ca: string;
  readonly serverCertPath: string;
  readonly serverKeyPath: string;
  readonly caPath: string;
  readonly clientCert: string;
  readonly clientKey: string;
};

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

// P-256 ECDSA throughout: PyKMIP's TLS 1.2 suite offers ECDHE-ECDSA-AES-GCM, which Node accepts.
function issue(dir: string, name: string, subject: string, ext: string): void {
  writeFileSync(join(dir, `${name}.ext`), ext);
  openssl(dir, [
    'req',
    '-new',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    `${name}.key`,
    '-out',
    `${name}.csr`,
    '-subj',
    subject,
  ]);
  openssl(dir, [
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    'ca.pem',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-days',
    '1',
    '-out',
    `${name}.pem`,
    '-extfile',
    `${name}.ext`,
  ]);
}

/** A CA, a server certificate for IP 127.0.0.1 and a client certificate, in a new temp dir. */
export function makePki(prefix = 'coffer-kmip-'): Pki {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  openssl(dir, [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    'ca.key',
    '-out',
    'ca.pem',
    '-days',
    '1',
    '-subj',
    '/CN=coffer test ca',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign',
  ]);
  issue(
    dir,
    'server',
    '/CN=127.0.0.1',
    'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n',
  );
  // PyKMIP takes the client identity (the owner of the keys it creates) from the CN, and with
  // enable_tls_client_auth requires the clientAuth extended key usage.
  issue(dir, 'client', '/CN=coffer-test-client', 'extendedKeyUsage=clientAuth\n');
  const read = (file: string) => readFileSync(join(dir, file), 'utf8');
  return {
    dir,
    ca: read('ca.pem'),
    caPath: join(dir, 'ca.pem'),
    serverCertPath: join(dir, 'server.pem'),
    serverKeyPath: join(dir, 'server.key'),
    clientCert: read('client.pem'),
    clientKey: read('client.key'),
  };
}

/** A port that was free on 127.0.0.1 a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export type PykmipServer = {
  readonly host: '127.0.0.1';
  readonly port: number;
  readonly pki: Pki;
  /** How many times the server log says it processed `operation` (e.g. `Locate`). */
  operationCount(operation: string): number;
  /** Stops the server's process group (SIGTERM, then SIGKILL) and removes its temp dir. */
  stop(): Promise<void>;
};

function tlsReady(port: number, pki: Pki): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({
      host: '127.0.0.1',
      port,
      ca: pki.ca,
      cert: pki.clientCert,
      key: pki.clientKey,
      timeout: 1_000,
    });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.once('secureConnect', () => done(true));
    socket.once('error', () => done(false));
    socket.once('timeout', () => done(false));
  });
}

/** Starts pykmip-server and waits until it completes a TLS handshake. */
export async function startPykmip(executable: string): Promise<PykmipServer> {
  const pki = makePki();
  const port = await freePort();
  const policyDir = join(pki.dir, 'policies');
  mkdirSync(policyDir);
  const configPath = join(pki.dir, 'server.conf');
  const logPath = join(pki.dir, 'server.log');
  writeFileSync(
    configPath,
    [
      '[server]',
      'hostname=127.0.0.1',
      `port=${port}`,
      `certificate_path=${pki.serverCertPath}`,
      `key_path=${pki.serverKeyPath}`,
      `ca_path=${pki.caPath}`,
      'auth_suite=TLS1.2',
      `policy_path=${policyDir}`,
      'enable_tls_client_auth=True',
      'logging_level=INFO',
      `database_path=${join(pki.dir, 'pykmip.db')}`,
      '',
    ].join('\n'),
  );

  // Its own process group: PyKMIP forks helpers (the policy monitor) that outlive a killed
  // parent, so stop() signals the whole group, which holds only what this spawn started.
  const child: ChildProcess = spawn(executable, ['-f', configPath, '-l', logPath], {
    cwd: pki.dir,
    stdio: ['ignore', 'ignore', 'pipe'],
    detached: true,
  });
  const group = child.pid;
  const signalGroup = (signal: NodeJS.Signals) => {
    if (group === undefined) return;
    try {
      process.kill(-group, signal);
    } catch {} // ESRCH: already gone
  };
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString('utf8')).slice(-4000);
  });
  let exited = false;
  const exit = new Promise<void>((resolve) =>
    child.once('exit', () => {
      exited = true;
      resolve();
    }),
  );
  const killOnExit = () => signalGroup('SIGKILL');
  process.once('exit', killOnExit);

  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    process.off('exit', killOnExit);
    if (!exited) {
      signalGroup('SIGTERM');
      const timer = setTimeout(() => signalGroup('SIGKILL'), STOP_GRACE_MS);
      await exit;
      clearTimeout(timer);
    }
    // Whatever the parent left behind.
    signalGroup('SIGKILL');
    rmSync(pki.dir, { recursive: true, force: true });
  };

  const deadline = Date.now() + START_TIMEOUT_MS;
  while (!(await tlsReady(port, pki))) {
    if (exited || Date.now() > deadline) {
      const log = (() => {
        try {
          return readFileSync(logPath, 'utf8').slice(-4000);
        } catch {
          return '';
        }
      })();
      await stop();
      throw new Error(
        `${SERVER_NAME} did not start on 127.0.0.1:${port}\nstderr:\n${stderr}\nlog:\n${log}`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }

  return {
    host: '127.0.0.1',
    port,
    pki,
    operationCount(operation: string): number {
      const log = readFileSync(logPath, 'utf8');
      return log.split(`Processing operation: ${operation}\n`).length - 1;
    },
    stop,
  };
}
