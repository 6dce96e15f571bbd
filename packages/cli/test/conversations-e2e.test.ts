// coffer send / messages / groups against the real server (createApp + openStorage on SQLite,
// blobs on disk, on a real socket), run in-process through main() — and messages --follow once
// through the real launcher, stopped with SIGTERM. Three homes: alice, bob and carol, one device
// each. The tests run in order and build on each other.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { toBase64url } from '@coffer/crypto';
import { createClient, encodeAttachmentDescriptor, encryptAndUpload } from '@coffer/sdk';
import { openNodeHome } from '@coffer/sdk/node';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { cli, json, type RunOptions, tokenCollectingFetch, transcript } from './_cli.js';
import { startServer, type TestServer } from './_server.js';

const dir = mkdtempSync(join(tmpdir(), 'coffer-cli-chat-'));
const home = (name: string) => join(dir, name);
let server: TestServer;

/** Passwords, session tokens and file keys: none may ever be printed. */
const secrets = new Set<string>(['alice Passw0rd one', 'bob Passw0rd two', 'carol Passw0rd 3']);
const PASSWORD: Record<string, string> = {
  alice: 'alice Passw0rd one',
  bob: 'bob Passw0rd two',
  carol: 'carol Passw0rd 3',
};

const spyFetch = tokenCollectingFetch(secrets);

function coffer(user: string, argv: string[], options: RunOptions = {}) {
  return cli([...argv, '--home', home(user), '--server', server.url], {
    fetch: spyFetch,
    ...options,
  });
}

/** The lines of a run's stdout. */
const lines = (text: string) => text.split('\n').filter((l) => l !== '');

const ids: Record<string, string> = {};
let groupId: string;

beforeAll(async () => {
  server = await startServer();
});
afterAll(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('conversations from the command line', { timeout: 60_000 }, () => {
  test('alice, bob and carol sign up in their own homes (each publishes key packages)', async () => {
    for (const user of ['alice', 'bob', 'carol']) {
      const run = await coffer(user, ['signup', user, '--password-stdin', '--json'], {
        stdin: `${PASSWORD[user]}\n`,
      });
      expect(run.stderr).toBe('');
      expect(run.code).toBe(0);
      ids[user] = (json(run.stdout) as { account: { accountId: string } }).account.accountId;
    }
  });

  test("send bob hello; bob's messages shows it, one line", async () => {
    const sent = await coffer('alice', ['send', 'bob', 'hello']);
    expect(sent.stderr).toBe('');
    expect(sent).toMatchObject({ code: 0, stdout: 'sent to bob\n' });

    const got = await coffer('bob', ['messages']);
    expect(got.code).toBe(0);
    expect(got.stderr).toBe('');
    const out = lines(got.stdout);
    expect(out).toContain(
      `joined the conversation with ${ids.alice} (${(/\((\S+)\)/.exec(out[0]!) ?? [])[1]}), 2 members`,
    );
    const message = out.find((l) => l.endsWith(': hello'));
    expect(message).toMatch(
      // Her message states her name, and the server's directory confirmed it.
      /^\d{4}-\d\d-\d\d \d\d:\d\d UTC alice alice: hello$/,
    );
    // Once only.
    expect((await coffer('bob', ['messages'])).stdout).toBe('');
  });

  test('text from stdin (one trailing newline off), messages --json; empty input refused', async () => {
    const sent = await coffer('alice', ['send', 'bob', '--json'], {
      stdin: 'line one\nline two\n',
    });
    expect(sent.code).toBe(0);
    expect(json(sent.stdout)).toMatchObject({ sent: { type: 'text' } });

    const got = await coffer('bob', ['messages', '--json']);
    expect(got.code).toBe(0);
    const events = lines(got.stdout).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(events).toEqual([
      expect.objectContaining({
        type: 'message',
        conversation: 'alice',
        message: expect.objectContaining({
          text: 'line one\nline two',
          own: false,
          type: 'text',
          sender: { accountId: ids.alice, deviceId: expect.any(String), username: 'alice' },
        }),
      }),
    ]);

    const empty = await coffer('alice', ['send', 'bob'], { stdin: '\n' });
    expect(empty.code).toBe(2);
    expect(empty.stderr).toContain('coffer: error: the message is empty');
    const nobody = await coffer('alice', ['send']);
    expect(nobody.code).toBe(2);
    const notUser = await coffer('alice', ['send', 'nobody-here', 'hi']);
    expect(notUser.code).not.toBe(0);
  });

  test('groups create / add (admins only) / list / rename / send --group / remove / leave', async () => {
    const created = await coffer('alice', ['groups', 'create', 'team', 'bob', '--json']);
    expect(created.stderr).toBe('');
    expect(created.code).toBe(0);
    const conversation = (json(created.stdout) as { conversation: Record<string, unknown> })
      .conversation;
    expect(conversation).toMatchObject({ kind: 'group', name: 'team', memberCount: 2 });
    groupId = conversation.id as string;

    const joined = await coffer('bob', ['messages']);
    expect(joined.stdout).toContain(`joined the group "team" (${groupId}), 2 members`);

    const refused = await coffer('bob', ['groups', 'add', groupId, 'carol']);
    expect(refused.code).toBe(3);
    expect(refused.stderr).toContain(
      'coffer: error: only an admin of the conversation may add members\n',
    );
    const refusedJson = await coffer('bob', ['groups', 'add', groupId, 'carol', '--json']);
    expect(refusedJson.code).toBe(3);
    expect(json(refusedJson.stderr)).toMatchObject({ error: { code: 'COMMIT_NOT_ALLOWED' } });

    const added = await coffer('alice', ['groups', 'add', groupId, 'carol']);
    expect(added.stderr).toBe('');
    expect(added).toMatchObject({ code: 0 });
    expect(added.stdout).toContain(`(${groupId}), 3 members`);

    const listed = await coffer('alice', ['groups', 'list', '--json']);
    const all = (json(listed.stdout) as { conversations: Record<string, unknown>[] }).conversations;
    expect(all.find((c) => c.id === groupId)).toMatchObject({
      kind: 'group',
      name: 'team',
      memberCount: 3,
      active: true,
    });
    const table = await coffer('alice', ['groups']);
    expect(lines(table.stdout)[0]).toMatch(/^ID\s+KIND\s+NAME\s+MEMBERS\s+ACTIVE$/);
    expect(table.stdout).toMatch(new RegExp(`${groupId}\\s+group\\s+team\\s+3\\s+yes`));

    const renamed = await coffer('alice', ['groups', 'rename', groupId, 'crew']);
    expect(renamed).toMatchObject({
      code: 0,
      stdout: `renamed the group ${groupId}: "team" -> "crew"\n`,
    });
    expect((await coffer('bob', ['groups', 'rename', groupId, 'mine'])).code).toBe(3);

    expect((await coffer('alice', ['send', '--group', groupId, 'hi all'])).code).toBe(0);
    const bob = await coffer('bob', ['messages']);
    expect(bob.stdout).toMatch(/UTC crew alice: hi all$/m);
    const carol = await coffer('carol', ['messages']);
    expect(carol.stdout).toContain(`joined the group "team" (${groupId}), 3 members`);
    expect(carol.stdout).toContain(`the group "crew" (${groupId}) changed: 3 members`);
    expect(carol.stdout).toMatch(/UTC crew \S+: hi all$/m);

    const removed = await coffer('alice', ['groups', 'remove', groupId, 'carol']);
    expect(removed.code).toBe(0);
    expect(removed.stdout).toContain('2 members');
    const gone = await coffer('carol', ['messages', '--json']);
    expect(lines(gone.stdout).map((l) => JSON.parse(l))).toEqual([
      { type: 'removed', conversationId: groupId },
    ]);

    // bob catches up with the removal first (the SDK's leave does not retry a stale epoch).
    expect((await coffer('bob', ['messages'])).code).toBe(0);
    const left = await coffer('bob', ['groups', 'leave', groupId]);
    expect(left.stderr).toBe('');
    expect(left.code).toBe(0);
    expect((await coffer('bob', ['groups', 'leave', 'not-an-id'])).code).not.toBe(0);
  });

  test('send --file of 3 MB; messages --save-files writes it back byte for byte', async () => {
    const data = new Uint8Array(3 * 1024 * 1024 + 123);
    for (let i = 0; i < data.length; i += 65536)
      data.set(crypto.getRandomValues(new Uint8Array(Math.min(65536, data.length - i))), i);
    const file = join(dir, 'big.bin');
    writeFileSync(file, data);

    const sent = await coffer('alice', ['send', 'bob', '--file', file, 'the big one']);
    expect(sent.code).toBe(0);
    expect(sent.stdout).toBe('sent "big.bin" (3.0 MiB) to bob\n');
    expect(sent.stderr).toContain('encrypted and uploaded "big.bin" (3.0 MiB)');

    const downloads = join(dir, 'downloads');
    const got = await coffer('bob', ['messages', '--save-files', downloads]);
    expect(got.stderr).toContain(`saved ${join(downloads, 'big.bin')}`);
    expect(got.code).toBe(0);
    expect(got.stdout).toMatch(/UTC alice alice: \[file big\.bin 3\.0 MiB\] the big one$/m);
    // Buffer.equals: a deep toEqual over 3 MB takes vitest most of a minute.
    expect(readFileSync(join(downloads, 'big.bin')).equals(data)).toBe(true);

    // The same file again: saved beside, never over the first.
    expect((await coffer('alice', ['send', 'bob', '--file', file, '--json'])).code).toBe(0);
    const again = await coffer('bob', ['messages', '--json', '--save-files', downloads]);
    const event = JSON.parse(lines(again.stdout)[0]!) as {
      message: { attachment: Record<string, unknown> };
    };
    expect(event.message.attachment).toEqual({
      name: 'big.bin',
      size: data.length,
      savedTo: join(downloads, 'big (1).bin'),
    });
    expect(readdirSync(downloads).sort()).toEqual(['big (1).bin', 'big.bin']);
    expect(readFileSync(join(downloads, 'big (1).bin')).equals(data)).toBe(true);
  });

  test('a hostile file name (../../etc/x) is saved as a plain name inside the directory', async () => {
    // Alice's own client, through the SDK, sends what the CLI never would.
    const { store, storeKey } = await openNodeHome(home('alice'));
    let token = '';
    const client = createClient({
      server: server.url,
      store,
      storeKey,
      fetch: (input, init) => {
        const auth = new Headers(init?.headers).get('authorization');
        if (auth) token = auth.slice('Bearer '.length);
        return spyFetch(input, init);
      },
    });
    await client.open();
    try {
      const chat = await client.conversations.direct('bob');
      for (const name of ['../../etc/x', '..\\..\\x', '..']) {
        const d = await encryptAndUpload({
          server: server.url,
          token,
          data: new TextEncoder().encode(`not for /etc: ${name}`),
          name,
        });
        secrets.add(toBase64url(d.key));
        await client.conversations.send(chat.id, {
          attachment: JSON.parse(encodeAttachmentDescriptor(d)) as Record<string, unknown>,
        });
      }
    } finally {
      await client.close();
    }
    const inbox = join(dir, 'deep', 'a', 'inbox');
    const got = await coffer('bob', ['messages', '--save-files', inbox]);
    expect(got.code).toBe(0);
    expect(readdirSync(inbox).sort()).toEqual(['_._etc_x', '_._x', 'attachment']);
    expect(readFileSync(join(inbox, '_._etc_x'), 'utf8')).toBe('not for /etc: ../../etc/x');
    expect(existsSync(join(dir, 'deep', 'etc'))).toBe(false);
    expect(existsSync(join(dir, 'etc'))).toBe(false);
    // Shown as the sender wrote it, but printable.
    expect(got.stdout).toContain('[file ../../etc/x ');
  });

  test('messages --follow (the real launcher) listens for pushes, receives while it runs and ends 0 on SIGTERM', async () => {
    const bin = fileURLToPath(new URL('../bin/coffer.mjs', import.meta.url));
    const child = spawn(
      process.execPath,
      [bin, 'messages', '--follow', '--home', home('bob'), '--server', server.url],
      { stdio: 'pipe' },
    );
    let stdout = '';
    let stderr = '';
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    const seen = (text: string) =>
      new Promise<void>((resolve, reject) => {
        const check = () => {
          if (stdout.includes(text)) resolve();
        };
        child.stdout.on('data', (d) => {
          stdout += d;
          check();
        });
        child.stderr.on('data', (d) => (stderr += d));
        exited.then(() => reject(new Error(`follow ended early: ${stderr}`)));
      });
    const arrived = seen('while you follow');
    // It does its first sync, then listens on the server's event socket (push), not only on its
    // one-second interval: wait until it is subscribed, then send.
    const start = Date.now();
    while (server.subscribers() === 0 && Date.now() - start < 20_000)
      await new Promise((r) => setTimeout(r, 50));
    expect(server.subscribers()).toBeGreaterThanOrEqual(1);
    expect((await coffer('alice', ['send', 'bob', 'while you follow'])).code).toBe(0);
    await arrived;
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    transcript.push(stdout, stderr);
    expect(stdout).toMatch(/UTC alice alice: while you follow$/m);
  });

  test('history shows what this device stored, oldest first; --save-files saves files again', async () => {
    const got = await coffer('bob', ['history', 'alice', '--limit', '3']);
    expect(got.code).toBe(0);
    const shown = lines(got.stdout);
    expect(shown).toHaveLength(3);
    expect(shown[0]).toContain('[file ..');
    expect(shown[0]).toContain('x ');
    expect(shown[1]).toContain('[file .. ');
    expect(shown[2]).toMatch(/alice alice: while you follow$/);
    // By default the 20 newest; JSON lines as messages prints them.
    const all = await coffer('bob', ['history', 'alice', '--json']);
    const events = lines(all.stdout).map(
      (l) => JSON.parse(l) as { type: string; message: { text?: string } },
    );
    expect(events.every((e) => e.type === 'message')).toBe(true);
    expect(events.map((e) => e.message.text)).toContain('the big one');
    expect(events.length).toBeGreaterThan(3);
    expect(events.length).toBeLessThanOrEqual(20);
    // A file missed when it arrived can be saved later, from the history.
    const again = join(dir, 'again');
    const saved = await coffer('bob', ['history', 'alice', '--limit', '4', '--save-files', again]);
    expect(saved.code).toBe(0);
    expect(readdirSync(again).sort()).toEqual(['_._etc_x', '_._x', 'attachment']);
    expect(readFileSync(join(again, '_._etc_x'), 'utf8')).toBe('not for /etc: ../../etc/x');
    // Groups by id; nothing for a user never talked to; --limit checked.
    const group = await coffer('alice', ['history', '--group', groupId, '--json']);
    expect(group.code).toBe(0);
    expect(lines(group.stdout).length).toBeGreaterThan(0);
    const none = await coffer('carol', ['history', 'bob']);
    expect(none.code).toBe(1);
    expect(none.stderr).toContain('this device has no conversation with bob');
    for (const limit of ['0', '10001', 'ten', '-1', '1.5']) {
      const bad = await coffer('bob', ['history', 'alice', `--limit=${limit}`]);
      expect(bad.code, limit).toBe(2);
    }
    expect((await coffer('bob', ['history', 'alice', '--group', groupId])).code).toBe(2);
    expect((await coffer('bob', ['history'])).code).toBe(2);
  });

  test('no password, token or file key was ever printed', () => {
    const all = transcript.join('\n');
    for (const secret of secrets) expect(all).not.toContain(secret);
  });
});
