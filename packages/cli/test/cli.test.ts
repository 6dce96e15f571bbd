import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { parseCommandLine } from '../src/_args.js';
import { usageText } from '../src/_usage.js';
import { cli, json } from './_cli.js';

const dir = mkdtempSync(join(tmpdir(), 'coffer-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
/** A server nothing listens on: commands that get as far as the network fail with status 4. */
const DEAD = 'http://127.0.0.1:9';
const home = join(dir, 'home');

describe('help and version', () => {
  test('coffer help, --help and -h print the usage on stdout', async () => {
    for (const argv of [['help'], ['--help'], ['-h'], ['--json', '--help']]) {
      const run = await cli(argv);
      expect(run).toEqual({ code: 0, stdout: usageText(), stderr: '' });
    }
  });

  test('no command prints the usage on stderr, status 2', async () => {
    expect(await cli([])).toEqual({ code: 2, stdout: '', stderr: usageText() });
  });

  test("a command's help: coffer help CMD, coffer CMD --help, anywhere on the line", async () => {
    const a = await cli(['help', 'devices', 'link']);
    expect(a.code).toBe(0);
    expect(a.stdout).toContain('coffer devices join');
    expect(a.stdout).toContain('On the new device');
    expect((await cli(['devices', '--help', 'link'])).stdout).toBe(a.stdout);
    // --help wins over what would be a usage error.
    expect((await cli(['devices', 'link', 'x', 'y', '--help', '--password-stdin'])).stdout).toBe(
      a.stdout,
    );
    const devices = await cli(['help', 'devices']);
    for (const sub of ['list', 'link', 'join', 'rename', 'revoke'])
      expect(devices.stdout).toContain(`coffer devices ${sub}`);
    const signup = await cli(['signup', '-h']);
    expect(signup.stdout).toMatch(/^Usage:\n {2}coffer signup USER\n/);
    expect(signup.stdout).toContain('recovery code');
  });

  test('coffer help NOPE is a usage error', async () => {
    const run = await cli(['help', 'nope']);
    expect(run.code).toBe(2);
    expect(run.stderr).toBe(
      'coffer: error: unknown command nope\ncoffer: hint: commands: signup, login, logout, whoami, devices, send, messages, history, groups, passwd, recover, help; see coffer help\n',
    );
  });

  test('--version, in text and JSON', async () => {
    const { version } = JSON.parse(
      readFileSync(new URL('../package.json', import.meta.url), 'utf8'),
    ) as { version: string };
    expect(await cli(['--version'])).toEqual({
      code: 0,
      stdout: `coffer ${version}\n`,
      stderr: '',
    });
    expect(json((await cli(['whoami', '--version', '--json'])).stdout)).toEqual({ version });
  });
});

describe('usage errors: status 2, a message and a hint on stderr, nothing on stdout', () => {
  const cases: [string[], string, string][] = [
    [['frobnicate'], 'unknown command frobnicate', 'see coffer help'],
    [['devices', 'burn'], 'unknown command devices burn', 'devices commands: list, link'],
    [['whoami', '--nope'], 'unknown option --nope', 'after "--"'],
    [['-x', 'whoami'], 'unknown option -x', 'see coffer help'],
    [['whoami', '--server'], '--server needs a value', '--server=VALUE'],
    [['whoami', '--server', '--password-stdin'], '--server needs a value', '--server VALUE'],
    [['whoami', '--json=yes'], '--json takes no value', 'see coffer help'],
    [['whoami', '--home', 'a', '--home=b'], '--home given twice', ''],
    [['whoami', '--server', ''], '--server needs a value', ''],
    [['signup'], 'missing USER', 'usage: coffer signup USER'],
    [
      ['signup', 'alice', 'bob'],
      'unexpected argument (not shown: coffer signup takes no password on the command line, where the process list and the shell history would keep it)',
      'usage: coffer signup USER',
    ],
    [['login'], 'missing USER', 'usage: coffer login USER'],
    [
      ['login', 'a', 'b'],
      'unexpected argument (not shown: coffer login takes no password on the command line, where the process list and the shell history would keep it)',
      'usage: coffer login USER',
    ],
    [['recover'], 'missing USER', 'usage: coffer recover USER'],
    [['logout', 'now'], 'unexpected argument now', 'usage: coffer logout'],
    [['whoami', 'really'], 'unexpected argument really', 'usage: coffer whoami'],
    [
      ['passwd', 'alice'],
      'unexpected argument (not shown: coffer passwd takes no password on the command line, where the process list and the shell history would keep it)',
      'usage: coffer passwd',
    ],
    [['devices', 'list', 'all'], 'unexpected argument all', 'usage: coffer devices [list]'],
    [
      ['devices', 'rename'],
      'missing NAME',
      'coffer devices rename ID NAME | coffer devices rename NAME',
    ],
    [
      ['devices', 'rename', 'a', 'b', 'c'],
      'unexpected argument c',
      'coffer devices rename ID NAME',
    ],
    [['devices', 'revoke'], 'missing ID', 'usage: coffer devices revoke ID'],
    [
      ['send', 'bob', 'hi', '--group', 'g'],
      'unexpected argument (not shown): with --group the group is the recipient, and TEXT is one argument',
      'usage: coffer send --group ID [TEXT]',
    ],
    [['devices', 'revoke', 'a', 'b'], 'unexpected argument b', 'usage: coffer devices revoke ID'],
    [
      ['whoami', '--password-stdin'],
      'coffer whoami does not take --password-stdin',
      'usage: coffer whoami',
    ],
    [['logout', '--device-name', 'x'], 'coffer logout does not take --device-name', 'usage'],
    [['passwd', '--device-name', 'x'], 'coffer passwd does not take --device-name', 'usage'],
    [
      ['devices', '--password-stdin'],
      'coffer devices list does not take --password-stdin',
      'usage',
    ],
    [
      ['devices', 'revoke', 'x', '--device-name=y'],
      'coffer devices revoke does not take --device-name',
      'usage',
    ],
    [
      ['devices', 'link', '--password-stdin'],
      'coffer devices link does not take --password-stdin',
      'usage',
    ],
    [
      ['devices', 'link', '--device-name', 'phone'],
      '--device-name names the new device: give it there, to coffer devices join',
      'coffer devices join --device-name NAME',
    ],
    [
      ['devices', 'link', 'K7QM-2XPA-9D4F-T1VB-QW3E-HZ8R'],
      'coffer devices link takes no code: a code on the command line shows in the process list and stays in the shell history',
      'run coffer devices join and type the code when asked',
    ],
    [
      ['devices', 'join', 'K7QM', '2XPA-9D4F-T1VB-QW3E-HZ8R', '--device-name', 'phone'],
      'coffer devices join takes no code: a code on the command line shows in the process list and stays in the shell history',
      'run coffer devices join and type the code when asked',
    ],
    [
      ['devices', 'join', '--password-stdin'],
      'coffer devices join does not take --password-stdin',
      'usage',
    ],
    [['whoami', '--server', 'ftp://example.com'], '--server expected an http or https URL', ''],
    [
      ['whoami', '--server', 'not a url'],
      '--server expected a URL such as https://coffer.example.com',
      '',
    ],
  ];
  test.each(cases)('coffer %j', async (argv, message, hint) => {
    const run = await cli([...argv, '--home', home]);
    expect(run.code).toBe(2);
    expect(run.stdout).toBe('');
    const [error, hintLine, ...rest] = run.stderr.split('\n');
    expect(error).toBe(`coffer: error: ${message}`);
    if (hint) expect(hintLine).toContain(hint);
    expect(hintLine === '' || hintLine!.startsWith('coffer: hint: ')).toBe(true);
    expect(rest.filter((l) => l !== '')).toEqual([]);
  });

  test('COFFER_SERVER is checked as --server is, and a URL holding a password is not echoed', async () => {
    const env = await cli(['whoami', '--home', home], { env: { COFFER_SERVER: 'nonsense' } });
    expect(env.code).toBe(2);
    expect(env.stderr).toContain('COFFER_SERVER expected a URL');
    const creds = await cli(['whoami', '--home', home, '--server', 'https://u:s3cret@example.com']);
    expect(creds.code).toBe(2);
    expect(creds.stderr).toContain('without user, password, query or fragment');
    expect(creds.stderr).not.toContain('s3cret');
  });

  test('--json: usage errors as one JSON object on stderr', async () => {
    const run = await cli(['signup', '--json']);
    expect(run.code).toBe(2);
    expect(run.stdout).toBe('');
    expect(json(run.stderr)).toEqual({
      error: { code: 'USAGE', message: 'missing USER', hint: 'usage: coffer signup USER' },
    });
    const parse = await cli(['--json', '--bogus']);
    expect(json(parse.stderr)).toMatchObject({
      error: { code: 'USAGE', message: 'unknown option --bogus' },
    });
  });

  test('"--" ends the options: a name beginning with "-" is an argument', async () => {
    const run = await cli(['devices', 'revoke', '--home', home, '--', '--x', 'y']);
    expect(run.stderr).toContain('unexpected argument y');
  });
});

describe('global options anywhere, and the network', () => {
  test('the same line in any order reaches the same (dead) server: status 4 with a hint', async () => {
    const orders = [
      ['login', 'alice', '--password-stdin', '--server', DEAD, '--home', home],
      ['--server', DEAD, '--home', home, 'login', '--password-stdin', 'alice'],
      ['--home', home, 'login', '--server', DEAD, 'alice', '--password-stdin'],
      [`--server=${DEAD}`, `--home=${home}`, '--password-stdin', 'login', 'alice'],
    ];
    for (const argv of orders) {
      const run = await cli(argv, { stdin: 'pw-not-shown\n' });
      expect(run.code).toBe(4);
      expect(run.stdout).toBe('');
      expect(run.stderr).toMatch(/^coffer: error: .+\n/);
      expect(run.stderr).toContain(
        `coffer: hint: is the server at ${DEAD} running? start it with npm start, or pass --server URL\n`,
      );
      expect(run.stderr).not.toContain('pw-not-shown');
    }
  });

  test('the server comes from COFFER_SERVER, and --server overrides it', async () => {
    const fromEnv = await cli(['login', 'alice', '--password-stdin', '--home', home], {
      stdin: 'pw\n',
      env: { COFFER_SERVER: DEAD },
    });
    expect(fromEnv.code).toBe(4);
    expect(fromEnv.stderr).toContain(`the server at ${DEAD} running?`);
    const other = 'http://127.0.0.1:7';
    const overridden = await cli(
      ['login', 'alice', '--password-stdin', '--home', home, '--server', other],
      {
        stdin: 'pw\n',
        env: { COFFER_SERVER: DEAD },
      },
    );
    expect(overridden.stderr).toContain(`the server at ${other} running?`);
  });

  test('--json: a network error as {"error":{"code":"NETWORK",...}}', async () => {
    const run = await cli(
      ['login', 'alice', '--json', '--password-stdin', '--server', DEAD, '--home', home],
      {
        stdin: 'pw\n',
      },
    );
    expect(run.code).toBe(4);
    expect(run.stdout).toBe('');
    const { error } = json(run.stderr) as { error: Record<string, unknown> };
    expect(error.code).toBe('NETWORK');
    expect(error.message).toEqual(expect.any(String));
    expect(error.hint).toContain('npm start');
  });

  test('plain http to another host draws a warning (not with --json)', async () => {
    const run = await cli(['whoami', '--home', home, '--server', 'http://192.0.2.1:8080']);
    expect(run.stderr).toContain('coffer: warning: http://192.0.2.1:8080 is plain http');
    const quiet = await cli([
      'whoami',
      '--json',
      '--home',
      home,
      '--server',
      'http://192.0.2.1:8080',
    ]);
    expect(quiet.stderr).not.toContain('warning');
  });
});

describe('passwords', () => {
  test('no terminal and no --password-stdin: refuses to prompt, status 2, with a hint', async () => {
    const run = await cli(['login', 'alice', '--home', home, '--server', DEAD]);
    expect(run).toEqual({
      code: 2,
      stdout: '',
      stderr:
        'coffer: error: cannot ask for the password: stdin is not a terminal\n' +
        'coffer: hint: pass --password-stdin and write the password on stdin, one per line\n',
    });
    const recover = await cli(['recover', 'alice', '--home', home, '--server', DEAD]);
    expect(recover.stderr).toContain(
      'write the recovery code, then the new password on stdin, one per line',
    );
  });

  test('--password-stdin from a terminal is refused: the password would show', async () => {
    const run = await cli(
      ['login', 'alice', '--password-stdin', '--home', home, '--server', DEAD],
      {
        tty: true,
      },
    );
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('stdin is a terminal');
  });

  test('--password-stdin: too few lines and empty lines are usage errors, before any request', async () => {
    let requests = 0;
    const fetch = (async () => {
      requests++;
      throw new TypeError('fetch failed');
    }) as unknown as typeof globalThis.fetch;
    const short = await cli(['recover', 'alice', '--password-stdin', '--home', home], {
      stdin: 'ABCD-EFGH\n',
      fetch,
    });
    expect(short.code).toBe(2);
    expect(short.stderr).toContain('--password-stdin expected 2 lines on stdin, got 1');
    const empty = await cli(['login', 'alice', '--password-stdin', '--home', home], {
      stdin: '\nsecond\n',
      fetch,
    });
    expect(empty.code).toBe(2);
    expect(empty.stderr).toContain('line 1 of stdin is empty: expected the password');
    expect(requests).toBe(0);
  });

  test('a new password is asked twice on the terminal; two different answers are refused', async () => {
    const questions: string[] = [];
    const run = await cli(['signup', 'alice', '--home', home, '--server', DEAD], {
      tty: true,
      answers: ['first-secret', 'second-secret'],
      questions,
    });
    expect(questions).toEqual(['New password for alice: ', 'Repeat the password: ']);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('coffer: error: the two passwords differ\n');
    expect(run.stderr).not.toContain('secret');
  });

  test('passwd asks the current password once and the new one twice', async () => {
    // Not logged in: refused before any question.
    const questions: string[] = [];
    const run = await cli(['passwd', '--home', home, '--server', DEAD], {
      tty: true,
      answers: [],
      questions,
    });
    expect(run.code).toBe(1);
    expect(questions).toEqual([]);
    expect(run.stderr).toBe(
      'coffer: error: not logged in\ncoffer: hint: coffer login USER (or coffer signup USER for a new account)\n',
    );
  });
});

describe('not logged in', () => {
  test.each([
    [['whoami']],
    [['devices']],
    [['devices', 'rename', 'laptop']],
    [['devices', 'revoke', 'abcd']],
    [['devices', 'link']],
  ])('coffer %j: status 1, NOT_LOGGED_IN, with a hint', async (argv) => {
    const run = await cli([...argv, '--home', home, '--server', DEAD]);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('coffer: error: not logged in\ncoffer: hint: coffer login USER');
    const asJson = await cli([...argv, '--json', '--home', home, '--server', DEAD]);
    expect(json(asJson.stderr)).toMatchObject({ error: { code: 'NOT_LOGGED_IN' } });
  });

  test('coffer logout is not an error', async () => {
    expect(await cli(['logout', '--home', home, '--server', DEAD])).toEqual({
      code: 0,
      stdout: 'not logged in; nothing to do\n',
      stderr: '',
    });
    expect(json((await cli(['logout', '--json', '--home', home])).stdout)).toEqual({
      loggedOut: false,
    });
  });
});

test('an id that begins with "-" is a word, not an unknown option', () => {
  const id = '-AbCdEfGhIjKlMnOpQrStUv';
  expect(parseCommandLine(['devices', 'revoke', id]).words).toEqual(['devices', 'revoke', id]);
  const group = parseCommandLine(['send', '--group', `${id}_more`, 'hi']);
  expect(group.options.group).toBe(`${id}_more`);
  expect(group.words).toEqual(['send', 'hi']);
  expect(() => parseCommandLine(['whoami', '-x'])).toThrow('unknown option -x');
});
