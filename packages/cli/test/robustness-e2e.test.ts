// coffer send / messages against the real server with bad input: hostile server answers and
// peers, stdin that is not UTF-8, a stdout that closes early (| head -1).
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
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

describe('a stdout that cannot take the output', { timeout: 60_000 }, () => {
  test('signup whose recovery code cannot be written ends in an error, never status 0', async () => {
    for (const json of [false, true]) {
      const user = json ? 'erin' : 'dave';
      const run = await coffer(
        user,
        ['signup', user, '--password-stdin', ...(json ? ['--json'] : [])],
        {
          stdin: 'a long enough password for erin and dave\n',
          stdoutWrites: 0,
        },
      );
      expect(run.code).toBe(1);
      expect(run.stdout).toBe('');
      const error = json
        ? (JSON.parse(run.stderr.trim()) as { error: { code: string; message: string } }).error
        : { code: 'OUTPUT_FAILED', message: run.stderr };
      expect(error.code).toBe('OUTPUT_FAILED');
      expect(error.message).toContain('recovery code was not shown');
      expect(run.stderr).not.toMatch(/[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}/);
    }
  });
});

describe('bad input', { timeout: 60_000 }, () => {
  test('a conversation id from a hostile server cannot put escape sequences on the terminal', async () => {
    expect((await coffer('alice', ['send', 'bob', 'first'])).code).toBe(0);
    const hostile = '\u001b]0;owned\u0007\u001b[2J\u009b31m';
    // The server renames the conversation of queue entries to a string no id can be.
    const rewrite: typeof fetch = async (input, init) => {
      const res = await fetch(input, init);
      const url = input instanceof Request ? input.url : String(input);
      if (!new URL(url).pathname.endsWith('/v1/queue') || (init?.method ?? 'GET') !== 'GET')
        return res;
      const body = (await res.json()) as { messages: { groupId: string; kind: string }[] };
      // Not the Welcome: bob joins, and later tests use the conversation.
      for (const m of body.messages) if (m.kind !== 'welcome') m.groupId = hostile;
      return new Response(JSON.stringify(body), { status: res.status, headers: res.headers });
    };
    const got = await coffer('bob', ['messages'], { fetch: rewrite });
    expect(got.stderr).toContain('(PROTOCOL_VIOLATION, INVALID_GROUP_ID)');
    // Something arrived that could not be used: a script sees it in the status.
    expect(got.code).toBe(1);
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

  test('messages --follow whose stdout fails stops (status 1) before fetching, so acknowledging, more', async () => {
    expect((await coffer('bob', ['messages'])).code).toBe(0);
    const stop = new AbortController();
    let shown = '';
    const seen = (text: string) =>
      new Promise<void>((resolve) => {
        const check = setInterval(() => {
          if (shown.includes(text)) resolve(clearInterval(check));
        }, 20);
      });
    const following = coffer('bob', ['messages', '--follow'], {
      signal: stop.signal,
      stdoutWrites: 1,
      onStdout: (chunk) => (shown += chunk),
    });
    const ended = following.then(() => 'ended');
    expect((await coffer('alice', ['send', 'bob', 'shown'])).code).toBe(0);
    await seen(': shown');
    // The reader has gone: this one cannot be written (and was fetched with it).
    expect((await coffer('alice', ['send', 'bob', 'not written'])).code).toBe(0);
    const pause = (ms: number) => new Promise((r) => setTimeout(() => r('running'), ms));
    expect(await Promise.race([ended, pause(5000)])).toBe('ended');
    // Sent after the failure: no longer fetched by the stopped follow, so the next run has it.
    expect((await coffer('alice', ['send', 'bob', 'still there'])).code).toBe(0);
    await pause(1500);
    stop.abort();
    const run = await following;
    expect(run.code).toBe(1);
    expect(run.stderr).toBe(
      'coffer: error: cannot write to stdout (EPIPE): stopped before fetching more\n' +
        'coffer: hint: a command reading coffer messages must read all of it: what was fetched and not shown is not fetched again\n',
    );
    const next = await coffer('bob', ['messages']);
    expect(next.code).toBe(0);
    expect(next.stdout).toMatch(/: still there$/m);
  });

  test('the real launcher: a reader that goes away (| head -1) ends messages --follow, no stack trace', async () => {
    const bin = fileURLToPath(new URL('../bin/coffer.mjs', import.meta.url));
    const child = spawn(
      process.execPath,
      [bin, 'messages', '--follow', '--json', '--home', home('bob'), '--server', server.url],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    // head -1: reads the first line, then closes its end of the pipe.
    const first = new Promise<string>((resolve) =>
      child.stdout.once('data', (d) => {
        child.stdout.destroy();
        resolve(String(d));
      }),
    );
    const start = Date.now();
    while (server.subscribers() === 0 && Date.now() - start < 20_000)
      await new Promise((r) => setTimeout(r, 50));
    expect((await coffer('alice', ['send', 'bob', 'to head'])).code).toBe(0);
    expect(JSON.parse((await first).split('\n')[0]!)).toMatchObject({ type: 'message' });
    expect((await coffer('alice', ['send', 'bob', 'into the closed pipe'])).code).toBe(0);
    const status = await Promise.race([
      exited,
      new Promise((r) => setTimeout(() => r('still running'), 10_000)),
    ]);
    child.kill('SIGKILL');
    expect(status).toBe(1);
    expect(stderr).not.toContain('    at ');
    const lines = stderr.split('\n').filter((l) => l !== '');
    expect(lines.map((l) => JSON.parse(l))).toEqual([
      { error: expect.objectContaining({ code: 'OUTPUT_FAILED' }) },
    ]);
    expect((await coffer('alice', ['send', 'bob', 'after head'])).code).toBe(0);
    expect((await coffer('bob', ['messages'])).stdout).toMatch(/: after head$/m);
  });

  test('Ctrl-C while messages writes what it fetched: all of it is written, then status 130', async () => {
    expect((await coffer('bob', ['messages'])).code).toBe(0);
    for (const text of ['one', 'two', 'three'])
      expect((await coffer('alice', ['send', 'bob', text])).code).toBe(0);
    const stop = new AbortController();
    // Ctrl-C as the first line appears: the three were fetched, so acknowledged, together.
    const run = await coffer('bob', ['messages'], {
      signal: stop.signal,
      onStdout: () => stop.abort(),
    });
    expect(run.code).toBe(130);
    expect(run.stdout).toMatch(/: one\n.*: two\n.*: three\n$/);
    expect(run.stderr).toBe('coffer: error: interrupted\n');
    expect((await coffer('bob', ['messages'])).stdout).toBe('');
  });

  test('Ctrl-C after the queue was acknowledged, before the fetch ended: what it brought is written', async () => {
    expect((await coffer('bob', ['messages'])).code).toBe(0);
    expect((await coffer('alice', ['send', 'bob', 'acknowledged'])).code).toBe(0);
    const stop = new AbortController();
    // Ctrl-C once the server has taken the acknowledgement: the entry will not come again.
    const ackThenStop: typeof fetch = async (input, init) => {
      const res = await fetch(input, init);
      const url = input instanceof Request ? input.url : String(input);
      if (new URL(url).pathname.endsWith('/v1/queue/ack')) stop.abort();
      return res;
    };
    const run = await coffer('bob', ['messages'], { fetch: ackThenStop, signal: stop.signal });
    expect(run.code).toBe(130);
    expect(run.stdout).toMatch(/: acknowledged\n$/);
    expect((await coffer('bob', ['messages'])).stdout).toBe('');
  });

  test('a sync that fails after the acknowledgement: what it handled is written, then the error', async () => {
    expect((await coffer('bob', ['messages'])).code).toBe(0);
    expect((await coffer('alice', ['send', 'bob', 'taken before the failure'])).code).toBe(0);
    // The server takes the acknowledgement; its answer is lost: the entry will not come again.
    const loseAck: typeof fetch = async (input, init) => {
      const res = await fetch(input, init);
      const url = input instanceof Request ? input.url : String(input);
      if (new URL(url).pathname.endsWith('/v1/queue/ack')) throw new TypeError('connection reset');
      return res;
    };
    for (const argv of [['messages'], ['messages', '--json']]) {
      if (argv.length > 1)
        expect((await coffer('alice', ['send', 'bob', 'taken before the failure'])).code).toBe(0);
      const run = await coffer('bob', argv, { fetch: loseAck });
      expect(run.code, argv.join(' ')).toBe(4); // NETWORK
      expect(run.stdout).toContain('taken before the failure');
    }
    expect((await coffer('bob', ['messages'])).stdout).toBe('');
  });

  test('history | head -1: the reader going away ends it quietly (status 0), nothing is lost', async () => {
    const all = await coffer('bob', ['history', 'alice']);
    expect(all.code).toBe(0);
    expect(all.stdout.split('\n').length).toBeGreaterThan(2);
    // One line taken, then the pipe is closed (EPIPE): history fetches nothing and loses nothing.
    const head = await coffer('bob', ['history', 'alice'], { stdoutWrites: 1 });
    expect(head.stdout).toBe(`${all.stdout.split('\n')[0]}\n`);
    expect(head.stderr).toBe('');
    expect(head.code).toBe(0);
  });
});
