// `coffer` against the real server (createApp + openStorage on SQLite, on a real socket), run
// in-process through main() — and once through the real launcher, as a child process. The
// tests run in order and share one server and a few homes (one home = one device).
import { execFile, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { usageText } from '../src/_usage.js';
import { cli, json, type RunOptions, transcript } from './_cli.js';
import { startServer, type TestServer } from './_server.js';

const dir = mkdtempSync(join(tmpdir(), 'coffer-cli-e2e-'));
const home = (name: string) => join(dir, name);
let server: TestServer;

/** Session tokens and passwords seen on the wire: none may ever be printed. */
const secrets = new Set<string>();
const PASSWORDS = {
  alice1: 'alice first Passw0rd',
  alice2: 'alice second Passw0rd',
  alice3: 'alice third Passw0rd',
  bob: 'bob typed this one',
  wrong: 'not the password',
};
for (const p of Object.values(PASSWORDS)) secrets.add(p);

/** The global fetch, noting every token that crosses it. */
const spyFetch: typeof fetch = async (input, init) => {
  const headers = new Headers(init?.headers ?? (input instanceof Request ? input.headers : {}));
  const auth = headers.get('authorization');
  if (auth) secrets.add(auth.replace(/^Bearer /i, ''));
  const response = await fetch(input, init);
  const body = (await response
    .clone()
    .json()
    .catch(() => undefined)) as Record<string, unknown> | undefined;
  for (const key of ['token', 'recoveryToken']) {
    const value = body?.[key];
    if (typeof value === 'string') secrets.add(value);
  }
  return response;
};

/** coffer ARGV --server URL, with the spying fetch. */
function coffer(argv: string[], options: RunOptions = {}) {
  return cli([...argv, '--server', server.url], { fetch: spyFetch, ...options });
}

/** Fails at once when the offering side ends before showing its code, instead of waiting. */
function endedEarly(offer: Promise<{ code: number; stderr: string }>): Promise<never> {
  return offer.then((run) => {
    throw new Error(`devices link ended (${run.code}) without a code: ${run.stderr}`);
  });
}

const RECOVERY_CODE = /^[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){7}$/;

let alice: { accountId: string; deviceId: string };
let recoveryCode: string;

beforeAll(async () => {
  server = await startServer();
});
afterAll(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('coffer against the real server', { timeout: 120_000 }, () => {
  test('signup --password-stdin --json: the account and the recovery code, once', async () => {
    const run = await coffer(
      [
        'signup',
        'alice',
        '--password-stdin',
        '--json',
        '--home',
        home('a'),
        '--device-name',
        'laptop',
      ],
      { stdin: `${PASSWORDS.alice1}\n` },
    );
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const out = json(run.stdout) as {
      account: Record<string, string>;
      recoveryCode: string;
    };
    expect(Object.keys(out).sort()).toEqual(['account', 'recoveryCode']);
    expect(out.account).toEqual({
      accountId: expect.stringMatching(/^[A-Za-z0-9_-]{22}$/),
      username: 'alice',
      deviceId: expect.stringMatching(/^[A-Za-z0-9_-]{22}$/),
      deviceName: 'laptop',
    });
    expect(out.recoveryCode).toMatch(RECOVERY_CODE);
    alice = { accountId: out.account.accountId!, deviceId: out.account.deviceId! };
    recoveryCode = out.recoveryCode;
  });

  test('signup on a terminal: password asked twice, unseen; the code shown once with a warning', async () => {
    const questions: string[] = [];
    const run = await coffer(['signup', 'bob', '--home', home('bob')], {
      tty: true,
      answers: [PASSWORDS.bob, PASSWORDS.bob],
      questions,
    });
    expect(run.code).toBe(0);
    expect(questions).toEqual(['New password for bob: ', 'Repeat the password: ']);
    const code = /^ {4}([0-9A-Z-]{39})$/m.exec(run.stdout)?.[1];
    expect(code).toMatch(RECOVERY_CODE);
    expect(run.stdout.split(code!).length).toBe(2);
    expect(run.stdout).toMatch(/^created the account bob; this device is ".+" \([\w-]{22}\)\n/);
    expect(run.stdout).toContain('Recovery code, shown this once:');
    expect(run.stdout).toContain('keep it offline');
    expect(run.stderr).not.toContain(PASSWORDS.bob);
  });

  test('signup: a name in use (1), a bad name (2), a home already logged in (1, before asking)', async () => {
    const taken = await coffer(['signup', 'alice', '--password-stdin', '--home', home('b')], {
      stdin: 'whatever pw\n',
    });
    expect(taken.code).toBe(1);
    expect(taken.stderr).toMatch(/\ncoffer: error: .+\n/);
    expect(taken.stderr).toContain(
      'coffer: hint: choose another username, or coffer login alice if the account is yours\n',
    );
    const bad = await coffer(['signup', 'A!', '--password-stdin', '--json', '--home', home('b')], {
      stdin: 'whatever pw\n',
    });
    expect(bad.code).toBe(2);
    expect(json(bad.stderr)).toMatchObject({ error: { code: 'INVALID_USERNAME' } });
    // No stdin at all: had it asked, this would be USAGE; it refuses first.
    const again = await coffer(['signup', 'carol', '--home', home('a')]);
    expect(again.code).toBe(1);
    expect(again.stderr).toBe(
      `coffer: error: this home is logged in as alice\ncoffer: hint: coffer logout first, or pass --home DIR to act as another device (this home: ${home('a')})\n`,
    );
  });

  test('whoami, in JSON and text', async () => {
    const run = await coffer(['whoami', '--json', '--home', home('a')]);
    expect(run.code).toBe(0);
    expect(json(run.stdout)).toEqual({
      account: { ...alice, username: 'alice', deviceName: 'laptop' },
    });
    const text = await coffer(['--home', home('a'), 'whoami']);
    expect(text.stdout).toBe(
      [
        'username  alice',
        `account   ${alice.accountId}`,
        `device    "laptop" (${alice.deviceId})`,
        `server    ${server.url}`,
        `home      ${home('a')}`,
        '',
      ].join('\n'),
    );
  });

  test('logout, then whoami says so (1, NOT_LOGGED_IN), then login', async () => {
    expect(json((await coffer(['logout', '--json', '--home', home('a')])).stdout)).toEqual({
      loggedOut: true,
    });
    expect((await coffer(['logout', '--home', home('a')])).stdout).toBe(
      'not logged in; nothing to do\n',
    );
    const who = await coffer(['whoami', '--home', home('a')]);
    expect(who.code).toBe(1);
    expect(who.stderr).toContain('coffer: error: not logged in\n');

    const wrong = await coffer(['login', 'alice', '--password-stdin', '--home', home('a')], {
      stdin: `${PASSWORDS.wrong}\n`,
    });
    expect(wrong.code).toBe(3);
    expect(wrong.stderr).toMatch(
      /^coffer: error: .+\ncoffer: hint: check the username and password\n$/,
    );

    const ok = await coffer(['login', 'alice', '--password-stdin', '--json', '--home', home('a')], {
      stdin: `${PASSWORDS.alice1}\n`,
    });
    expect(ok.code).toBe(0);
    const { account } = json(ok.stdout) as { account: Record<string, string> };
    expect(account).toMatchObject({ accountId: alice.accountId, username: 'alice' });
    alice.deviceId = account.deviceId!;
  });

  test('devices list, in JSON and text', async () => {
    const run = await coffer(['devices', 'list', '--json', '--home', home('a')]);
    expect(run.code).toBe(0);
    const { devices } = json(run.stdout) as { devices: Record<string, unknown>[] };
    const current = devices.filter((d) => d.current === true);
    expect(current).toHaveLength(1);
    expect(current[0]).toMatchObject({ id: alice.deviceId, name: expect.any(String) });
    expect(Object.keys(current[0]!).sort()).toEqual(['addedAt', 'current', 'id', 'name']);
    const text = await coffer(['devices', '--home', home('a')]);
    expect(text.stdout).toMatch(/^ {3}ID +ADDED +NAME\n/);
    expect(text.stdout).toContain(`*  ${alice.deviceId}  `);
    expect(text.stdout).toMatch(/\d{4}-\d\d-\d\d \d\d:\d\d UTC/);
  });

  test('passwd: the current password, then the new one (stdin: two lines)', async () => {
    const wrong = await coffer(['passwd', '--password-stdin', '--home', home('a')], {
      stdin: `${PASSWORDS.wrong}\n${PASSWORDS.alice2}\n`,
    });
    expect(wrong.code).toBe(3);
    const run = await coffer(['passwd', '--password-stdin', '--json', '--home', home('a')], {
      stdin: `${PASSWORDS.alice1}\n${PASSWORDS.alice2}\n`,
    });
    expect(run.code).toBe(0);
    expect(json(run.stdout)).toEqual({ passwordChanged: true });

    const old = await coffer(['login', 'alice', '--password-stdin', '--home', home('d')], {
      stdin: `${PASSWORDS.alice1}\n`,
    });
    expect(old.code).toBe(3);
    const fresh = await coffer(['login', 'alice', '--password-stdin', '--home', home('d')], {
      stdin: `${PASSWORDS.alice2}\n`,
    });
    expect(fresh.code).toBe(0);
    expect(fresh.stdout).toMatch(/^logged in as alice; this device is ".+" \([\w-]{22}\)\n$/);
    // Logging out needs no server.
    const offline = await cli(['logout', '--home', home('d'), '--server', 'http://127.0.0.1:9']);
    expect(offline).toEqual({ code: 0, stdout: 'logged out\n', stderr: '' });
  });

  test('recover on a fresh home: the printed code, then a new password', async () => {
    const wrongCode = await coffer(['recover', 'alice', '--password-stdin', '--home', home('c')], {
      stdin: `${'0000-'.repeat(7)}0000\n${PASSWORDS.alice3}\n`,
    });
    expect(wrongCode.code).toBe(3);
    expect(wrongCode.stderr).toContain('coffer: hint: check the username and the recovery code\n');

    const run = await coffer(
      [
        'recover',
        'alice',
        '--password-stdin',
        '--json',
        '--home',
        home('c'),
        '--device-name',
        'spare',
      ],
      { stdin: `${recoveryCode.toLowerCase()}\n${PASSWORDS.alice3}\n` },
    );
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(json(run.stdout)).toEqual({
      account: {
        accountId: alice.accountId,
        username: 'alice',
        deviceId: expect.any(String),
        deviceName: 'spare',
      },
    });
    const login = await coffer(['login', 'alice', '--password-stdin', '--home', home('e')], {
      stdin: `${PASSWORDS.alice3}\n`,
    });
    expect(login.code).toBe(0);
  });

  test('devices link: the two sides at once, in JSON', async () => {
    let sawCode: (code: string) => void;
    const codeShown = new Promise<string>((resolve) => {
      sawCode = resolve;
    });
    const offer = coffer(['devices', 'link', '--json', '--home', home('a')], {
      // The answer to the confirmation, read from stdin after the request line is printed.
      stdin: 'y\n',
      onStdout: (chunk) => {
        const first = JSON.parse(chunk.split('\n')[0]!) as { link?: { code: string; qr: string } };
        if (first.link) sawCode(first.link.code);
      },
    });
    const code = await Promise.race([codeShown, endedEarly(offer)]);
    // Without a terminal the new device reads the code from stdin: never from argv.
    const join = coffer(
      ['devices', 'join', '--json', '--home', home('phone'), '--device-name', 'phone'],
      {
        stdin: `${code}\n`,
      },
    );
    const [a, b] = await Promise.all([offer, join]);
    expect(a.stderr).toBe('');
    expect(b.stderr).toBe('');
    expect([a.code, b.code]).toEqual([0, 0]);
    const [first, asked, second, ...rest] = a.stdout.split('\n').filter((l) => l !== '');
    expect(rest).toEqual([]);
    expect(JSON.parse(first!)).toEqual({
      link: { code, qr: `coffer-link:1:${code.replace(/-/g, '')}`, expiresAt: expect.any(Number) },
    });
    const { device } = JSON.parse(second!) as { device: Record<string, unknown> };
    expect(JSON.parse(asked!)).toEqual({ request: { deviceName: 'phone', deviceId: device.id } });
    expect(device).toMatchObject({ name: 'phone', current: false });
    expect(json(b.stdout)).toEqual({
      account: {
        accountId: alice.accountId,
        username: 'alice',
        deviceId: device.id,
        deviceName: 'phone',
      },
    });
  });

  test('devices link in text: the suggested command works, the code typed unseen with spaces', async () => {
    let sawCommand: (command: string) => void;
    const shown = new Promise<string>((resolve) => {
      sawCommand = resolve;
    });
    let out = '';
    const questions: string[] = [];
    const offer = coffer(['devices', 'link', '--home', home('a')], {
      tty: true,
      answers: ['y'],
      questions,
      onStdout: (chunk) => {
        out += chunk;
        const m = /^ {4}(coffer devices join.*)\n\nand type this code when it asks: (\S+)$/m.exec(
          out,
        );
        if (m) sawCommand(`${m[1]!} ${m[2]!}`);
      },
    });
    const command = await Promise.race([shown, endedEarly(offer)]);
    expect(command).toMatch(
      new RegExp(`^coffer devices join --server ${server.url} [0-9A-Z]{4}(-[0-9A-Z]{4}){5}$`),
    );
    const code = command.split(' ').at(-1)!;
    const asked: string[] = [];
    const join = coffer(['devices', 'join', '--home', home('tablet')], {
      tty: true,
      answers: [` ${code.split('-').join(' ')} `],
      questions: asked,
    });
    const [a, b] = await Promise.all([offer, join]);
    expect([a.code, b.code]).toEqual([0, 0]);
    expect(a.stdout).toContain('(the same code as a QR payload: coffer-link:1:');
    expect(a.stdout).toMatch(/\nadded the device ".+" \([\w-]{22}\) to alice\n$/);
    expect(questions).toEqual([
      expect.stringMatching(
        /^a device named ".+" \([\w-]{22}\) used the code: add it to alice\? \[y\/N\] $/,
      ),
    ]);
    expect(a.stderr).toBe(
      `coffer: waiting for the new device (Ctrl-C cancels)...\n${questions[0]}\n`,
    );
    expect(b.stdout).toMatch(/^this device joined alice as ".+" \([\w-]{22}\)\n$/);
    expect(asked).toEqual(['Link code (shown by coffer devices link on the other device): ']);
    expect(b.stderr).toBe(
      `${asked[0]}\ncoffer: joining; waiting for the other device to confirm this one...\n`,
    );
  });

  test('devices link: a device the user does not confirm is not added', async () => {
    const before = json((await coffer(['devices', '--json', '--home', home('a')])).stdout);
    for (const answer of [{ tty: true, answers: [''] }, { stdin: 'n\n' }, { stdin: '' }]) {
      let sawCode: (code: string) => void;
      const codeShown = new Promise<string>((resolve) => {
        sawCode = resolve;
      });
      const offer = coffer(['devices', 'link', '--json', '--home', home('a')], {
        ...answer,
        onStdout: (chunk) => {
          const first = JSON.parse(chunk.split('\n')[0]!) as { link?: { code: string } };
          if (first.link) sawCode(first.link.code);
        },
      });
      const code = await Promise.race([codeShown, endedEarly(offer)]);
      const join = coffer(['devices', 'join', '--json', '--home', home('intruder')], {
        stdin: `${code}\n`,
      });
      // Both end refused; the other side is never approved, and is told so at its next poll.
      for (const ended of [await offer, await join]) {
        expect(ended.code).toBe(1);
        // On a terminal the question was on stderr too: the error is its last line.
        const error = ended.stderr
          .split('\n')
          .filter((l) => l !== '')
          .at(-1);
        expect(json(error!)).toMatchObject({ error: { code: 'LINK_REFUSED' } });
      }
      const after = json((await coffer(['devices', '--json', '--home', home('a')])).stdout);
      expect(after).toEqual(before);
      expect((await coffer(['whoami', '--home', home('intruder')])).code).toBe(1);
    }
  });

  test('devices link: Ctrl-C while waiting is 130; a bad code is refused', async () => {
    const controller = new AbortController();
    const offer = coffer(['devices', 'link', '--home', home('a')], {
      signal: controller.signal,
      onStdout: () => controller.abort(),
    });
    const run = await offer;
    expect(run.code).toBe(130);
    expect(run.stderr).toContain('coffer: error: interrupted\n');

    const bad = await coffer(['devices', 'join', '--json', '--home', home('x')], {
      stdin: 'NOT-A-CODE\n',
    });
    expect(bad.code).toBe(1);
    expect(json(bad.stderr)).toMatchObject({ error: { code: 'INVALID_LINK_CODE' } });
    const none = await coffer(['devices', 'join', '--json', '--home', home('x')]);
    expect(none.code).toBe(2);
    expect(json(none.stderr)).toMatchObject({
      error: { code: 'USAGE', message: 'expected the link code on the first line of stdin' },
    });
  });

  test('devices rename: by id beginning, and this device by name alone', async () => {
    const { devices } = json((await coffer(['devices', '--json', '--home', home('a')])).stdout) as {
      devices: { id: string; name: string; current: boolean }[];
    };
    const phone = devices.find((d) => d.name === 'phone')!;
    const renamed = await coffer([
      'devices',
      'rename',
      phone.id.slice(0, 6),
      'old phone',
      '--json',
      '--home',
      home('a'),
    ]);
    expect(renamed.code).toBe(0);
    expect(json(renamed.stdout)).toEqual({ device: { ...phone, name: 'old phone' } });

    const self = await coffer(['devices', 'rename', 'work laptop', '--home', home('a')]);
    expect(self.code).toBe(0);
    expect(self.stdout).toBe(`renamed this device ${alice.deviceId}: "laptop" -> "work laptop"\n`);
    const who = json((await coffer(['whoami', '--json', '--home', home('a')])).stdout);
    expect(who).toMatchObject({ account: { deviceName: 'work laptop' } });

    const ambiguous = await coffer(['devices', 'rename', phone.id, '--home', home('a')]);
    expect(ambiguous.code).toBe(2);
    expect(ambiguous.stderr).toContain(`is the id of the device "old phone": rename it to what?`);
    const unknown = await coffer([
      'devices',
      'rename',
      'zzzzzz',
      'x',
      '--json',
      '--home',
      home('a'),
    ]);
    expect(unknown.code).toBe(1);
    expect(json(unknown.stderr)).toMatchObject({ error: { code: 'UNKNOWN_DEVICE' } });
  });

  test('devices revoke: the phone goes; it learns so (6); a device cannot revoke itself', async () => {
    const { devices } = json((await coffer(['devices', '--json', '--home', home('a')])).stdout) as {
      devices: { id: string; name: string; current: boolean }[];
    };
    const phone = devices.find((d) => d.name === 'old phone')!;
    const self = await coffer(['devices', 'revoke', alice.deviceId, '--home', home('a')]);
    expect(self.code).toBe(2);
    expect(self.stderr).toContain('is this device, which cannot revoke itself');

    const run = await coffer([
      'devices',
      'revoke',
      phone.id.slice(0, 8),
      '--json',
      '--home',
      home('a'),
    ]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(json(run.stdout)).toEqual({ revoked: phone });
    const after = json((await coffer(['devices', '--json', '--home', home('a')])).stdout) as {
      devices: { id: string }[];
    };
    expect(after.devices.map((d) => d.id)).not.toContain(phone.id);

    const onPhone = await coffer(['devices', '--home', home('phone')]);
    expect(onPhone.code).toBe(6);
    expect(onPhone.stderr).toContain('coffer: hint: another device removed this one');
    // Its session is gone; it may come back with the password.
    expect((await coffer(['whoami', '--home', home('phone')])).code).toBe(1);
    const back = await coffer(['login', 'alice', '--password-stdin', '--home', home('phone')], {
      stdin: `${PASSWORDS.alice3}\n`,
    });
    expect(back.code).toBe(0);
  });
});

describe('the real launcher', { timeout: 120_000 }, () => {
  const bin = fileURLToPath(new URL('../bin/coffer.mjs', import.meta.url));

  test('node bin/coffer.mjs --help', async () => {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [bin, '--help']);
    expect(stderr).toBe('');
    expect(stdout).toBe(usageText());
  });

  test('a usage error exits with 2; login through a pipe left open works and the process ends', async () => {
    // stdin stays open, as a pipe from a program that has more to say: coffer reads the lines
    // it needs and must end without waiting for the rest.
    const run = (argv: string[], input = '') =>
      new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
        const child = spawn(process.execPath, [bin, ...argv], { stdio: 'pipe' });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (d) => (stdout += d));
        child.stderr.on('data', (d) => (stderr += d));
        child.on('close', (code) => {
          transcript.push(stdout, stderr);
          resolve({ code, stdout, stderr });
        });
        child.stdin.on('error', () => {});
        child.stdin.write(input);
      });
    const usage = await run(['frobnicate']);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain('coffer: error: unknown command frobnicate\n');

    const started = Date.now();
    const login = await run(
      [
        'login',
        'alice',
        '--password-stdin',
        '--json',
        '--home',
        home('cli'),
        '--server',
        server.url,
      ],
      `${PASSWORDS.alice3}\n`,
    );
    expect(login.stderr).toBe('');
    expect(login.code).toBe(0);
    expect(json(login.stdout)).toMatchObject({ account: { username: 'alice' } });
    // Neither the open stdin nor a kept-alive socket held the process after the command.
    expect(Date.now() - started).toBeLessThan(15_000);
    const who = await run(['whoami', '--json', '--home', home('cli'), '--server', server.url]);
    expect(who.code).toBe(0);
  });
});

// util-linux's script(1) gives the launcher a real terminal (a pty), as a person at a keyboard
// would: the prompts must switch its echo off. Debian: apt-get install bsdutils.
const hasScript = spawnSync('script', ['--version']).status === 0;
if (!hasScript && process.env.CI === 'true')
  throw new Error(
    'script(1) not found: CI must run the real-terminal test (apt-get install -y bsdutils)',
  );
if (!hasScript)
  console.warn(
    'NOTICE: script(1) not found; the real-terminal prompt test is skipped (apt-get install bsdutils)',
  );

describe.skipIf(!hasScript)('a real terminal', { timeout: 120_000 }, () => {
  test('signup asks twice with the echo off: the password never appears on the terminal', async () => {
    const bin = fileURLToPath(new URL('../bin/coffer.mjs', import.meta.url));
    const command = [
      process.execPath,
      bin,
      'signup',
      'zed',
      '--server',
      server.url,
      '--home',
      home('tty'),
    ]
      .map((a) => `'${a}'`)
      .join(' ');
    const password = 'typed at a real Terminal';
    secrets.add(password);
    const { code, screen } = await new Promise<{ code: number | null; screen: string }>(
      (resolve) => {
        const child = spawn('script', ['-qfec', command, '/dev/null'], { stdio: 'pipe' });
        let screen = '';
        let answered = 0;
        child.stdout.on('data', (d) => {
          screen += d;
          // Typed only once the prompt is up, as a person would; Enter is "\r" on a terminal.
          const prompts = ['New password for zed: ', 'Repeat the password: '];
          if (answered < 2 && screen.includes(prompts[answered]!)) {
            answered++;
            child.stdin.write(`${password}\r`);
          }
        });
        child.on('close', (code) => resolve({ code, screen }));
      },
    );
    transcript.push(screen);
    expect(code).toBe(0);
    expect(screen).toContain('New password for zed: \r\nRepeat the password: \r\n');
    expect(screen).toContain('Recovery code, shown this once:');
    expect(screen).not.toContain(password);
    expect(screen).not.toContain('typed');
  });
});

describe('throttling', () => {
  // A stand-in for the server's throttle: it answers login/start with 429 as the spec says
  // (http-api-v1 "Throttling"). The real server's counter is not used here: a wrong password
  // fails inside the client (OPAQUE) before login/finish, where the server counts failures.
  test('RATE_LIMITED: status 1, the wait in the hint and in the JSON error', async () => {
    const throttled: typeof fetch = async (input, init) => {
      const url = input instanceof Request ? input.url : String(input);
      if (url.endsWith('/v1/login/start'))
        return new Response(
          JSON.stringify({ error: { code: 'RATE_LIMITED', message: 'too many attempts' } }),
          { status: 429, headers: { 'content-type': 'application/json', 'retry-after': '42' } },
        );
      return fetch(input, init);
    };
    const run = await coffer(['login', 'mallory', '--password-stdin', '--home', home('m')], {
      stdin: `${PASSWORDS.wrong}\n`,
      fetch: throttled,
    });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^coffer: error: .+\ncoffer: hint: try again in 42 s\n$/);
    const asJson = await coffer(
      ['login', 'mallory', '--password-stdin', '--json', '--home', home('m')],
      {
        stdin: `${PASSWORDS.wrong}\n`,
        fetch: throttled,
      },
    );
    expect(json(asJson.stderr)).toEqual({
      error: {
        code: 'RATE_LIMITED',
        message: expect.any(String),
        hint: 'try again in 42 s',
        retryAfter: 42,
      },
    });
  });
});

// Last, when every run above has printed what it prints.
describe('secrets', () => {
  test('nothing printed ever held a password or a session token; the recovery code only at signup', () => {
    expect(secrets.size).toBeGreaterThan(Object.keys(PASSWORDS).length);
    const all = transcript.join('\n');
    for (const secret of secrets) expect(all).not.toContain(secret);
    const withCode = transcript.filter((t) => t.includes(recoveryCode));
    expect(withCode).toHaveLength(1);
    expect(withCode[0]).toContain('"recoveryCode"');
  });
});
