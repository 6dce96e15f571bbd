// coffer send / messages against the real server with bad input: hostile server answers and
// peers, stdin that is not UTF-8, a stdout that closes early (| head -1).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { cli, json, type RunOptions } from './_cli.js';
import { startServer, type TestServer } from './_server.js';

const dir = mkdtempSync(join(tmpdir(), 'coffer-cli-robust-'));
const home = (name: string) => join(dir, name);
let server: TestServer;
const PASSWORD: Record<string, string> = { alice: 'alice Passw0rd one', bob: 'bob Passw0rd two' };
const ids: Record<string, string> = {};

/** The control characters (newlines aside) in `text`: what a terminal would act on. */
const controls = (text: string) =>
  [...text].filter((ch) => {
    const c = ch.codePointAt(0)!;
    return c !== 0x0a && (c < 0x20 || (c >= 0x7f && c <= 0x9f));
  });

function coffer(user: string, argv: string[], options: RunOptions = {}) {
  return cli([...argv, '--home', home(user), '--server', server.url], options);
}

beforeAll(async () => {
  server = await startServer();
  for (const user of ['alice', 'bob']) {
    const run = await coffer(user, ['signup', user, '--password-stdin', '--json'], {
      stdin: `${PASSWORD[user]}\n`,
    });
    expect(run.code).toBe(0);
    ids[user] = (json(run.stdout) as { account: { accountId: string } }).account.accountId;
  }
}, 60_000);
afterAll(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('bad input', { timeout: 60_000 }, () => {
  test('a conversation id from a hostile server cannot put escape sequences on the terminal', async () => {
    expect((await coffer('alice', ['send', 'bob', 'first'])).code).toBe(0);
    const hostile = '\u001b]0;owned\u0007\u001b[2J\u009b31m';
    // The server renames the conversation of every queue entry to a string no id can be.
    const rewrite: typeof fetch = async (input, init) => {
      const res = await fetch(input, init);
      const url = input instanceof Request ? input.url : String(input);
      if (!new URL(url).pathname.endsWith('/v1/queue') || (init?.method ?? 'GET') !== 'GET')
        return res;
      const body = (await res.json()) as { messages: { groupId: string }[] };
      for (const m of body.messages) m.groupId = hostile;
      return new Response(JSON.stringify(body), { status: res.status, headers: res.headers });
    };
    const got = await coffer('bob', ['messages'], { fetch: rewrite });
    expect(got.stderr).toContain('(PROTOCOL_VIOLATION, INVALID_GROUP_ID)');
    expect(controls(got.stdout + got.stderr)).toEqual([]);
    expect(got.stderr).toContain('\\u001b]0;owned\\u0007');

    expect((await coffer('alice', ['send', 'bob', 'second'])).code).toBe(0);
    const asJson = await coffer('bob', ['messages', '--json'], { fetch: rewrite });
    const errors = asJson.stderr
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l));
    expect(errors[0]).toMatchObject({ type: 'error', conversationId: hostile });
  });

  test('stdin that is not UTF-8 is refused (status 2), never sent or used as U+FFFD', async () => {
    const latin1 = Buffer.from('caf\xe9 au lait\n', 'latin1');
    const sent = await coffer('alice', ['send', 'bob'], { stdin: latin1 });
    expect(sent.code).toBe(2);
    expect(sent.stderr).toContain('coffer: error: the message on stdin is not UTF-8 text\n');
    const got = await coffer('bob', ['messages', '--json']);
    expect(got.stdout).not.toContain('caf');
    expect(got.stdout).not.toContain('\ufffd');

    // A password would become U+FFFD, matching every other byte there: refused too.
    const signup = await coffer('carol', ['signup', 'carol', '--password-stdin'], {
      stdin: Buffer.from('p\xe4ssword one\n', 'latin1'),
    });
    expect(signup.code).toBe(2);
    expect(signup.stderr).toContain('coffer: error: stdin is not UTF-8 text\n');
    expect((await coffer('carol', ['whoami'])).code).toBe(1);
  });
});
