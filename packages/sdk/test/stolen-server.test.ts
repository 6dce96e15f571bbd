// What a stolen server shows after real use of the SDK: three users talk in a 1:1 and in a
// group (renamed once) and send a ~1 MB file as an attachment (the receiver downloads it and gets
// the same bytes). Then the whole database (the SQLite file with its WAL as it lies on disk, or
// every PostgreSQL table) and the blob directory are searched for every plaintext — message
// texts, 32-byte windows of the file, its name, the group names, usernames and passwords — in
// UTF-8, UTF-16, hex and base64 forms. None may be there. Controls show the search finds what is
// stored in the clear: account ids in the database, and a blob uploaded unencrypted on purpose.
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { randomBytes } from '@coffer/crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { TestDatabase } from '../../server/test/_db.js';
import { testDialects } from '../../server/test/_db.js';
import { foundIn, foundInDirectory } from '../../server/test/_dump-search.js';
import {
  type CofferClient,
  type ConversationMessage,
  decodeAttachmentDescriptor,
  downloadAndDecrypt,
  encodeAttachmentDescriptor,
  encryptAndUpload,
  type FetchLike,
} from '../src/index.js';
import { SERVER_URL, type TestServer, testClient, testServer } from './_server.js';

const dialects = await testDialects();
const utf8 = (s: string) => Buffer.from(s, 'utf8');
const tag = () => Math.random().toString(36).slice(2, 8);

/** About 1 MB of text-like bytes (lowercase letters, spaces, newlines), random. */
function fileText(size: number): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz      \n';
  const raw = randomBytes(size);
  let out = '';
  for (const b of raw) out += alphabet[b % alphabet.length];
  return out;
}

async function collect(stream: ReadableStream<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const part of stream) parts.push(part);
  return Buffer.concat(parts);
}

/** Every byte of the database as an attacker holding it would have them. */
async function dumpDatabase(db: TestDatabase): Promise<Buffer> {
  if (db.dialect === 'sqlite') {
    const copy = mkdtempSync(join(tmpdir(), 'coffer-sdk-stolen-'));
    try {
      cpSync(dirname(db.sqlitePath!), copy, { recursive: true });
      const files = readdirSync(copy);
      expect(files.some((f) => f.endsWith('-wal'))).toBe(true);
      return Buffer.concat(files.map((f) => readFileSync(join(copy, f))));
    } finally {
      rmSync(copy, { recursive: true, force: true });
    }
  }
  const raw = db.raw();
  const tables = await sql<{ table_name: string }>`
    select table_name from information_schema.tables where table_schema = ${db.pgSchema!}`.execute(
    raw,
  );
  expect(tables.rows.length).toBeGreaterThan(5);
  const parts: Buffer[] = [];
  for (const { table_name } of tables.rows) {
    const rows = await sql<Record<string, unknown>>`select * from ${sql.table(table_name)}`.execute(
      raw,
    );
    for (const row of rows.rows)
      for (const v of Object.values(row))
        parts.push(
          v instanceof Uint8Array
            ? Buffer.from(v)
            : utf8(typeof v === 'string' ? v : (JSON.stringify(v) ?? '')),
        );
    // The text form a pg_dump would write: bytea as \x hex.
    const text = await sql<{
      t: string;
    }>`select row_to_json(x)::text as t from ${sql.table(table_name)} x`.execute(raw);
    for (const r of text.rows) parts.push(utf8(r.t));
  }
  return Buffer.concat(parts);
}

interface User {
  readonly name: string;
  readonly password: string;
  readonly accountId: string;
  readonly client: CofferClient;
  /** The session token the client last sent (for the attachment calls, which take one). */
  token(): string;
}

describe.each(dialects)('a stolen server after conversations and an attachment (%s)', (dialect) => {
  let server: TestServer;
  const secrets: string[] = [];
  const accountIds: string[] = [];
  let file: string;
  let users: User[];
  let received: ConversationMessage | undefined;

  async function signup(label: string, password: string): Promise<User> {
    let token = '';
    const fetch: FetchLike = (url, init) => {
      const auth = new Headers(init.headers).get('authorization');
      if (auth?.startsWith('Bearer ')) token = auth.slice(7);
      return server.fetch(url, init);
    };
    const client = await testClient({ fetch });
    const name = `${label}-${tag()}`;
    const { account } = await client.signup(name, password);
    await client.conversations.sync();
    secrets.push(name, password);
    accountIds.push(account.accountId);
    return { name, password, accountId: account.accountId, client, token: () => token };
  }

  beforeAll(async () => {
    server = await testServer({ database: dialect, maxBlobBytes: 4 * 1000 * 1000 });
    const alice = await signup('Zanzibar-Quokka', `Correct-Horse-Battery-${tag()}`);
    const bob = await signup('mallory.wombat', `hunter2-but-much-longer-${tag()}`);
    const carol = await signup('xylophone-otter', `P@ssw0rd-Trombone-${tag()}`);
    users = [alice, bob, carol];
    const say = async (from: User, id: string, text: string) => {
      await from.client.conversations.send(id, text);
      secrets.push(text);
    };

    const chat = await alice.client.conversations.direct(bob.name);
    await bob.client.conversations.sync();
    await say(alice, chat.id, `The vault code is ${tag()}, burn after reading`);
    await say(bob, chat.id, `Meet me at the lighthouse at ${tag()} o'clock`);
    await say(alice, chat.id, 'Ünïcödé secrets: 秘密のメッセージ 🔐');

    const groupName = `Project Nightingale ${tag()}`;
    const team = await alice.client.conversations.create({
      name: groupName,
      members: [bob.name, carol.name],
    });
    secrets.push(groupName);
    for (const u of [bob, carol]) await u.client.conversations.sync();
    await say(carol, team.id, `Quarterly numbers: revenue ${tag()} million`);
    const renamed = `Operation Kestrel ${tag()}`;
    await alice.client.conversations.rename(team.id, renamed);
    secrets.push(renamed);
    for (const u of [bob, carol]) await u.client.conversations.sync();
    await say(bob, team.id, `The password for the shared drive is ${tag()}-${tag()}`);

    // A ~1 MB file: uploaded encrypted, its descriptor sent inside the conversation.
    file = fileText(1_048_576 + 123);
    const fileName = `nightingale-plans-${tag()}.txt`;
    const descriptor = await encryptAndUpload({
      server: SERVER_URL,
      token: alice.token(),
      fetch: server.fetch,
      data: utf8(file),
      name: fileName,
      mediaType: 'text/plain',
    });
    const caption = `Here are the plans ${tag()}`;
    await alice.client.conversations.send(chat.id, {
      text: caption,
      attachment: JSON.parse(encodeAttachmentDescriptor(descriptor)),
    });
    secrets.push(fileName, caption);
    for (const at of [
      0,
      1000,
      65_536 - 16,
      65_536 + 7,
      300_001,
      524_288,
      777_777,
      file.length - 32,
    ])
      secrets.push(file.slice(at, at + 32));

    const events = await bob.client.conversations.sync();
    received = events.flatMap((e) => (e.type === 'message' ? [e.message] : [])).at(-1);
    for (const u of users) await u.client.conversations.sync();
  });
  afterAll(() => server?.close());

  test('the receiver downloads the attachment and gets the very same bytes', async () => {
    expect(received).toMatchObject({ type: 'attachment', own: false });
    expect(secrets).toContain(received?.text);
    const descriptor = decodeAttachmentDescriptor(received!.attachment!);
    expect(descriptor.size).toBe(utf8(file).length);
    const bob = users[1]!;
    const plain = await collect(
      await downloadAndDecrypt({
        server: SERVER_URL,
        token: bob.token(),
        fetch: server.fetch,
        descriptor,
      }),
    );
    expect(plain.equals(utf8(file))).toBe(true);
  });

  test('neither the database nor the blob directory holds any plaintext', async () => {
    expect(secrets.length).toBeGreaterThan(20);
    expect(readdirSync(server.blobDir).length).toBeGreaterThan(0);
    const haystack = await dumpDatabase(server.db!);
    expect(foundIn(haystack, secrets)).toEqual([]);
    expect(await foundInDirectory(server.blobDir, secrets)).toEqual([]);

    // Controls: the same searches find what is stored in the clear.
    for (const id of accountIds) expect(foundIn(haystack, [id]).length).toBeGreaterThan(0);
    const clear = `in the clear: ${secrets[0]} / ${file.slice(1000, 1032)}`;
    const res = await server.fetch(`${SERVER_URL}/v1/blobs`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${users[0]!.token()}`,
        'content-type': 'application/octet-stream',
      },
      body: utf8(clear),
    });
    expect(res.status).toBe(201);
    const { blobId } = (await res.json()) as { blobId: string };
    expect(await foundInDirectory(server.blobDir, secrets)).toEqual([
      `${blobId}.blob: ${secrets[0]} (utf-8)`,
      `${blobId}.blob: ${file.slice(1000, 1032)} (utf-8)`,
    ]);
  });
});
