// The user journey of the READMEs, as a newcomer walks it, against the real server (in-process
// through main()): the mistakes a person makes on the way (a username that does not exist, a
// file that is not there, a message typed without quotes) and what the output says about
// groups and devices. The tests run in order and build on each other.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { cli, json, type RunOptions, tokenCollectingFetch, transcript } from './_cli.js';
import { startServer, type TestServer } from './_server.js';

const dir = mkdtempSync(join(tmpdir(), 'coffer-cli-journey-'));
const home = (name: string) => join(dir, name);
let server: TestServer;

const PASSWORD: Record<string, string> = {
  alice: 'alice Passw0rd one',
  bob: 'bob Passw0rd two',
  carol: 'carol Passw0rd 3',
};
/** Passwords, recovery codes, session tokens: none may ever be printed. */
const secrets = new Set<string>(Object.values(PASSWORD));
const recoveryCodes: Record<string, string> = {};

const spyFetch = tokenCollectingFetch(secrets);

function coffer(user: string, argv: string[], options: RunOptions = {}) {
  return cli([...argv, '--home', home(user), '--server', server.url], {
    fetch: spyFetch,
    ...options,
  });
}

const lines = (text: string) => text.split('\n').filter((l) => l !== '');

async function conversations(user: string): Promise<Record<string, unknown>[]> {
  const run = await coffer(user, ['groups', '--json']);
  expect(run.code).toBe(0);
  return (json(run.stdout) as { conversations: Record<string, unknown>[] }).conversations;
}

beforeAll(async () => {
  server = await startServer();
  for (const user of ['alice', 'bob', 'carol']) {
    const run = await coffer(user, ['signup', user, '--password-stdin', '--json'], {
      stdin: `${PASSWORD[user]}\n`,
    });
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    recoveryCodes[user] = (json(run.stdout) as { recoveryCode: string }).recoveryCode;
  }
}, 60_000);
afterAll(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('the journey of the READMEs', { timeout: 60_000 }, () => {
  test('a username nobody has is UNKNOWN_USER, named, for send, groups and history', async () => {
    const sent = await coffer('alice', ['send', 'nobody-here', 'a secret plan']);
    expect(sent.code).toBe(1);
    expect(sent.stdout).toBe('');
    expect(sent.stderr).toBe(
      'coffer: error: no account nobody-here on this server\n' +
        `coffer: hint: check the spelling, and that they signed up on ${server.url}\n`,
    );
    expect(sent.stderr).not.toContain('a secret plan');
    const asJson = await coffer('alice', ['send', 'nobody-here', 'hi', '--json']);
    expect(json(asJson.stderr)).toMatchObject({
      error: { code: 'UNKNOWN_USER', message: 'no account nobody-here on this server' },
    });

    const created = await coffer('alice', ['groups', 'create', 'team', 'bob', 'nobody-here']);
    expect(created.code).toBe(1);
    expect(created.stderr).toContain(
      'coffer: error: no account on this server for one of: bob, nobody-here\n',
    );
    const one = await coffer('alice', ['groups', 'create', 'team', 'nobody-here', '--json']);
    expect(json(one.stderr)).toMatchObject({
      error: { code: 'UNKNOWN_USER', message: 'no account nobody-here on this server' },
    });
    const history = await coffer('alice', ['history', 'nobody-here']);
    expect(history.code).toBe(1);
    expect(history.stderr).toContain('coffer: error: no account nobody-here on this server\n');
    expect(await conversations('alice')).toEqual([]);
  });

  test('send checks its own input before it starts a conversation', async () => {
    const missing = await coffer('alice', ['send', 'bob', '--file', join(dir, 'not-there.pdf')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('coffer: error: cannot read');
    expect(missing.stderr).toContain('(ENOENT)');
    const directory = await coffer('alice', ['send', 'bob', '--file', dir]);
    expect(directory.code).toBe(2);
    expect(directory.stderr).toContain('is not a file');
    const empty = await coffer('alice', ['send', 'bob'], { stdin: '\n' });
    expect(empty.code).toBe(2);
    expect(empty.stderr).toContain('coffer: error: the message is empty');
    // None of them started the conversation with bob: nothing for bob to join.
    expect(await conversations('alice')).toEqual([]);
    expect(await coffer('bob', ['messages'])).toMatchObject({ code: 0, stdout: '', stderr: '' });
  });

  test('words of a message typed without quotes are not repeated in the error', async () => {
    const run = await coffer('alice', ['send', 'bob', 'meet', 'at', 'noon']);
    expect(run.code).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr).toContain('coffer: error: unexpected argument');
    expect(run.stderr).toContain('quote a text with spaces');
    for (const word of ['meet', 'noon', ' at ']) expect(run.stderr).not.toContain(word);
    const group = await coffer('alice', [
      'send',
      '--group',
      'AAAAAAAAAAAAAAAAAAAAAA',
      'meet',
      'noon',
    ]);
    expect(group.code).toBe(2);
    expect(group.stderr).toContain('quote a text with spaces');
    for (const word of ['meet', 'noon']) expect(group.stderr).not.toContain(word);
  });

  test('a bad username or device name is refused before the password is asked', async () => {
    for (const argv of [
      ['signup', 'B@d!'],
      ['login', 'B@d!'],
      ['recover', 'B@d!'],
    ]) {
      const questions: string[] = [];
      const run = await coffer('dave', argv, { tty: true, questions });
      expect(run.code, argv.join(' ')).toBe(2);
      expect(run.stderr).toContain('coffer: error: a username is 3 to 32 characters');
      expect(questions).toEqual([]);
    }
    const questions: string[] = [];
    const long = await coffer('dave', ['signup', 'dave', '--device-name', 'x'.repeat(70)], {
      tty: true,
      questions,
    });
    expect(long.code).toBe(2);
    expect(long.stderr).toContain('"deviceName" expected 1 to 64 bytes');
    expect(questions).toEqual([]);
  });

  test('member counts read "1 member"; groups remove of oneself points to groups leave', async () => {
    const solo = await coffer('alice', ['groups', 'create', 'notes', '--json']);
    expect(solo.code).toBe(0);
    const id = (json(solo.stdout) as { conversation: { id: string } }).conversation.id;
    const created = await coffer('alice', ['groups', 'create', 'solo']);
    expect(created.stdout).toMatch(/^created the group "solo" \([\w-]{22}\), 1 member\n$/);

    for (const me of ['alice', ' Alice ']) {
      const self = await coffer('alice', ['groups', 'remove', id, me]);
      expect(self.code).toBe(2);
      expect(self.stderr).toBe(
        'coffer: error: groups remove takes other members: you leave a group yourself\n' +
          `coffer: hint: coffer groups leave ${id}\n`,
      );
    }
    // Nobody else is in it: leaving drops it at once (no one could carry out a request).
    expect((await conversations('alice')).map((c) => c.id)).toContain(id);
    const left = await coffer('alice', ['groups', 'leave', id]);
    expect(left).toMatchObject({ code: 0, stdout: `left the group "notes" (${id})\n` });
    expect((await conversations('alice')).map((c) => c.id)).not.toContain(id);
  });

  test('groups leave on a one-to-one conversation names it as one; then it is with no one', async () => {
    expect((await coffer('alice', ['send', 'carol', 'hello carol'])).code).toBe(0);
    const got = await coffer('carol', ['messages']);
    expect(got.code).toBe(0);
    const direct = (await conversations('alice')).find((c) => c.kind === 'direct')!;
    const id = direct.id as string;

    const left = await coffer('alice', ['groups', 'leave', id]);
    expect(left.stderr).toBe('');
    expect(left.stdout).toBe(
      `asked to leave the conversation with carol (${id}); the others' devices carry it out\n`,
    );
    // carol's device carries it out; her conversation is now with no one else.
    const after = await coffer('carol', ['messages']);
    expect(after.code).toBe(0);
    expect(after.stdout).toContain(`the conversation ${id} changed: 1 member\n`);
    expect(after.stdout).not.toContain(`with ${id}`);
    const table = await coffer('carol', ['groups']);
    expect(table.stdout).toMatch(
      new RegExp(`${id}\\s+direct\\s+\\(with no one now\\)\\s+1\\s+yes`),
    );
  });

  test("the account's internal conversation (history for new devices) is never shown", async () => {
    expect((await coffer('alice', ['send', 'bob', 'hi bob'])).code).toBe(0);
    expect((await coffer('bob', ['messages'])).code).toBe(0);
    // A second device of alice's: the first adds it to her conversations and hands it the
    // history through the account's own conversation.
    const login = await coffer('alice2', ['login', 'alice', '--password-stdin', '--json'], {
      stdin: `${PASSWORD.alice}\n`,
    });
    expect(login.code).toBe(0);
    const second = (json(login.stdout) as { account: { deviceId: string } }).account.deviceId;
    const shown: string[] = [];
    for (const user of ['alice', 'alice2', 'alice', 'alice2']) {
      const run = await coffer(user, ['messages', '--json']);
      expect(run.code).toBe(0);
      shown.push(...lines(run.stdout));
    }
    expect((await coffer('alice', ['devices', 'revoke', second])).code).toBe(0);
    const after = await coffer('alice', ['messages']);
    expect(after.code).toBe(0);
    expect(after.stdout).not.toContain('the group ""');
    shown.push(...lines(after.stdout));
    const afterJson = await coffer('alice', ['messages', '--json']);
    shown.push(...lines(afterJson.stdout));
    for (const line of shown.filter((l) => l.startsWith('{')))
      expect(line, line).not.toContain('"kind":"self"');
  });

  test('a wrong current password (passwd) or recovery code (recover) is named as such', async () => {
    const passwd = await coffer('bob', ['passwd', '--password-stdin'], {
      stdin: `not bob's password\nbob new Passw0rd\n`,
    });
    expect(passwd.code).toBe(3);
    expect(passwd.stderr).toContain('coffer: hint: check the current password\n');
    const recover = await coffer('bob-new', ['recover', 'bob', '--password-stdin'], {
      stdin: `${'0000-'.repeat(7)}0000\nbob new Passw0rd\n`,
    });
    expect(recover.code).toBe(3);
    expect(recover.stderr).toContain(
      'coffer: error: wrong username or recovery code\n' +
        'coffer: hint: check the username and the recovery code\n',
    );
  });

  test('messages --follow says once that the server cannot be reached, not every second', async () => {
    let down = true;
    const flaky: typeof fetch = async (input, init) => {
      const url = input instanceof Request ? input.url : String(input);
      if (down && new URL(url).pathname.endsWith('/v1/queue')) throw new TypeError('fetch failed');
      return spyFetch(input, init);
    };
    const stop = new AbortController();
    const following = coffer('bob', ['messages', '--follow'], {
      fetch: flaky,
      signal: stop.signal,
    });
    await new Promise((resolve) => setTimeout(resolve, 4500));
    down = false;
    await new Promise((resolve) => setTimeout(resolve, 2000));
    stop.abort();
    const run = await following;
    expect(run.code).toBe(0);
    expect(run.stderr.match(/could not fetch messages \(NETWORK\)/g) ?? []).toHaveLength(1);
    expect(run.stderr).toContain('coffer: fetching messages again\n');
  }, 30_000);

  test('a post the server forbids hints at a removal, not at the password', async () => {
    const forbidding: typeof fetch = async (input, init) =>
      init?.method === 'POST' && String(input).endsWith('/messages')
        ? Response.json({ error: { code: 'FORBIDDEN', message: '' } }, { status: 403 })
        : spyFetch(input, init);
    const run = await coffer('alice', ['send', 'carol', 'hi'], { fetch: forbidding });
    expect(run.code).not.toBe(0);
    expect(run.stderr).toContain('does not allow this device');
    expect(run.stderr).toContain(
      'coffer: hint: coffer messages shows whether this device was removed',
    );
    expect(run.stderr).not.toMatch(/password|log in again/);
  });

  test('no password, recovery code or token was ever printed', () => {
    const all = transcript.join('\n');
    for (const secret of secrets) expect(all).not.toContain(secret);
    // Shown once, by signup --json, and nowhere else.
    for (const code of Object.values(recoveryCodes)) expect(all.split(code).length - 1).toBe(1);
  });
});
