// Resource exhaustion and robustness against hostile clients, on the real server over real
// sockets: bodies that never finish, work done before authentication, connections nobody reads
// from, event sockets that never read, and what one account can make the blob directory hold.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { createServer } from 'node:http';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { toBase64url } from '@coffer/crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { MAX_BLOBS_PER_ACCOUNT } from '../src/http/blobs.js';
import { attachEventSocket, MAX_BUFFERED_BYTES } from '../src/http/events.js';
import { createLogger } from '../src/logger.js';
import { BODY_TIMEOUT_MS } from '../src/middleware/body-limit.js';
import { IDLE_TIMEOUT_MS } from '../src/server.js';
import { call, signup } from './_client.js';
import { testDialects } from './_db.js';
import { createHarness, type Harness } from './_harness.js';

const dialects = await testDialects();

const MiB = 1024 * 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Resolves with `'timeout'` when `promise` has not settled after `ms`. */
function within<T>(promise: Promise<T>, ms: number): Promise<T | 'timeout'> {
  return Promise.race([promise, sleep(ms).then(() => 'timeout' as const)]);
}

/** Polls `check` every 20 ms until it holds or `ms` passed; returns whether it held. */
async function eventually(check: () => boolean | Promise<boolean>, ms = 5000): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await sleep(20);
  }
}

interface RawResponse {
  readonly status: number;
  readonly headers: string;
  readonly body: string;
}

/**
 * Writes `text` (a request head, maybe part of a body) on a fresh TCP connection and resolves
 * with the first response (undefined when the connection closes before one).
 */
function raw(
  port: number,
  text: string,
): { socket: Socket; response: Promise<RawResponse | undefined> } {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => {});
  socket.write(text);
  let data = '';
  const response = new Promise<RawResponse | undefined>((resolve) => {
    socket.on('data', (chunk: Buffer) => {
      data += chunk.toString('latin1');
      const end = data.indexOf('\r\n\r\n');
      if (end < 0) return;
      const headers = data.slice(0, end);
      const length = Number(/\r\ncontent-length: *(\d+)/i.exec(headers)?.[1] ?? 0);
      if (data.length - end - 4 < length) return;
      resolve({
        status: Number(headers.slice(9, 12)),
        headers,
        body: data.slice(end + 4, end + 4 + length),
      });
    });
    socket.on('close', () => resolve(undefined));
  });
  return { socket, response };
}

describe.each(dialects)('resources (%s)', (dialect) => {
  let h: Harness;
  let n = 0;
  const fresh = () => signup(h.fetch, `res${n++}`, 'a long enough password');
  beforeAll(async () => {
    h = await createHarness(dialect, 'resources');
  });
  afterAll(() => h.dispose());

  it('answers a JSON body that does not arrive in time 400, before any route (no auth needed)', async () => {
    const server = await h.listen({ bodyTimeoutMs: 300 });
    // Declared and chunked, each stalled after its first bytes: without a deadline of its own,
    // such a body held its connection for the whole request timeout (an hour, for blobs).
    const heads = [
      'content-length: 100\r\n\r\n{"username"',
      'transfer-encoding: chunked\r\n\r\n4\r\n{"us\r\n',
    ];
    for (const rest of heads) {
      const { socket, response } = raw(
        server.port,
        `POST /v1/signup/start HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n${rest}`,
      );
      const res = await within(response, 5000);
      socket.destroy();
      expect(res, rest).not.toBe('timeout');
      if (res === 'timeout' || res === undefined) throw new Error('no response');
      expect(res.status).toBe(400);
      expect(JSON.parse(res.body)).toEqual({
        error: { code: 'BAD_REQUEST', message: 'request body not received in time' },
      });
    }
    // A body that does arrive in time is read as before.
    const ok = await call(server.fetch, 'POST', '/v1/logout', {});
    expect(ok.status).toBe(401);
    expect(BODY_TIMEOUT_MS).toBe(120_000);
  });

  it('authenticates a group message before reading its 3 MiB body', async () => {
    const server = await h.listen();
    const groupId = toBase64url(new Uint8Array(randomBytes(16)));
    const { socket, response } = raw(
      server.port,
      `POST /v1/groups/${groupId}/messages HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n` +
        `content-length: ${3 * MiB - 1}\r\n\r\n{"epoch":0,`,
    );
    // Without a token the answer comes at once, not after 3 MiB the server had to hold.
    const res = await within(response, 5000);
    socket.destroy();
    expect(res).not.toBe('timeout');
    if (res === 'timeout' || res === undefined) throw new Error('no response');
    expect(res.status).toBe(401);
    expect(JSON.parse(res.body).error.code).toBe('UNAUTHENTICATED');
    // With one, a body past the 256 KiB of other routes is still read (a 1 MiB message).
    const a = await fresh();
    const created = await call(
      server.fetch,
      'POST',
      `/v1/groups/${groupId}/messages`,
      { epoch: 0, kind: 'commit', message: toBase64url(new Uint8Array(MiB)), recipients: [] },
      a.token,
    );
    expect(created.status).toBe(201);
    // And still as JSON only.
    const typed = await server.fetch(`/v1/groups/${groupId}/messages`, {
      method: 'POST',
      headers: { authorization: `Bearer ${a.token}`, 'content-type': 'text/plain' },
      body: '{}',
    });
    expect(typed.status).toBe(415);
  });

  it('closes a connection that stops reading its response (an unread download)', async () => {
    const server = await h.listen({ idleTimeoutMs: 300 });
    const a = await fresh();
    // Larger than what the kernel buffers between the two ends, so that the server is left
    // with bytes it cannot write.
    const up = await h.fetch('/v1/blobs', {
      method: 'POST',
      headers: { authorization: `Bearer ${a.token}`, 'content-type': 'application/octet-stream' },
      body: new Uint8Array(16 * MiB),
    });
    expect(up.status).toBe(201);
    const { blobId } = (await up.json()) as { blobId: string };
    const connections = () =>
      new Promise<number>((resolve) => server.server.getConnections((_, count) => resolve(count)));
    const { socket } = raw(
      server.port,
      `GET /v1/blobs/${blobId} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${a.token}\r\n\r\n`,
    );
    socket.pause();
    expect(await eventually(async () => (await connections()) === 1)).toBe(true);
    // Without an idle timeout the connection (and the open blob file) stayed for good.
    expect(await eventually(async () => (await connections()) === 0)).toBe(true);
    socket.destroy();
    expect((await h.listen()).server.timeout).toBe(IDLE_TIMEOUT_MS);
    expect(IDLE_TIMEOUT_MS).toBe(120_000);
  });

  it('drops an event socket whose client does not read, instead of buffering without end', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'coffer-events-'));
    const path = join(dir, 'events.sock');
    // A Unix socket: its kernel buffers are a few KiB, so the server's own buffer is reached
    // after a few hundred pushes rather than after megabytes (loopback TCP).
    const server = createServer((_req, res) => res.writeHead(404).end());
    await new Promise<void>((resolve) => server.listen(path, resolve));
    let client: WebSocket | undefined;
    const sockets = attachEventSocket(server, {
      storage: h.storage,
      events: h.events,
      logger: createLogger({ level: 'silent' }),
    });
    try {
      const a = await fresh();
      const ws = new WebSocket(`ws+unix://${path}:/v1/events`);
      client = ws;
      const messages: unknown[] = [];
      ws.on('message', (data) => messages.push(JSON.parse(data.toString())));
      ws.on('error', () => {});
      await new Promise<void>((resolve, reject) => {
        ws.once('open', () => resolve());
        ws.once('error', reject);
      });
      ws.send(JSON.stringify({ type: 'auth', token: a.token }));
      expect(await eventually(() => messages.length === 1)).toBe(true);
      expect(messages[0]).toEqual({ type: 'ready' });
      const subscribed = h.events.size;
      ws.pause();
      // Each manifest event is one frame of about 30 bytes; 60,000 of them are 1.8 MB.
      let published = 0;
      while (sockets.connections > 0 && published < 60_000) {
        for (let i = 0; i < 500; i++)
          h.events.publish(a.accountId, {
            type: 'manifest',
            seq: ++published,
            revokedDeviceIds: [],
          });
        // Each push waits on a session lookup: this one comes after them (a FIFO pool).
        await h.storage.ping();
        await sleep(1);
      }
      expect(await eventually(() => sockets.connections === 0, 2000)).toBe(true);
      expect(h.events.size).toBe(subscribed - 1);
      ws.resume();
      expect(await eventually(() => ws.readyState === WebSocket.CLOSED)).toBe(true);
      expect(MAX_BUFFERED_BYTES).toBe(64 * 1024);
    } finally {
      client?.terminate();
      sockets.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("caps the number of an account's blobs, not only their bytes", async () => {
    // A quota of bytes alone let one account keep billions of 1-byte blobs, a file (an inode
    // and a disk block) and a row each. This server caps an account at 3.
    const small = await createHarness(dialect, 'resources_count', { maxBlobCount: 3 });
    try {
      const a = await signup(small.fetch, 'counted', 'a long enough password');
      const upload = () =>
        small.fetch('/v1/blobs', {
          method: 'POST',
          headers: {
            authorization: `Bearer ${a.token}`,
            'content-type': 'application/octet-stream',
          },
          body: new Uint8Array([1]),
        });
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) {
        const r = await upload();
        expect(r.status).toBe(201);
        ids.push(((await r.json()) as { blobId: string }).blobId);
      }
      const files = async () =>
        (await readdir(small.blobs.dir, { recursive: true, withFileTypes: true })).filter((e) =>
          e.isFile(),
        ).length;
      const before = await files();
      const over = await upload();
      expect(over.status).toBe(413);
      expect(((await over.json()) as { error: { code: string } }).error.code).toBe(
        'QUOTA_EXCEEDED',
      );
      expect(await files()).toBe(before);
      const rows = await small.db
        .raw()
        .selectFrom('blobs')
        .select('blob_id')
        .where('account_id', '=', a.accountId)
        .execute();
      expect(rows).toHaveLength(3);
      // Deleting one makes room for one.
      const del = await small.fetch(`/v1/blobs/${ids[0]}`, {
        method: 'DELETE',
        headers: { authorization: `Bearer ${a.token}` },
      });
      expect(del.status).toBe(204);
      expect((await upload()).status).toBe(201);
    } finally {
      await small.dispose();
    }
    expect(MAX_BLOBS_PER_ACCOUNT).toBe(100_000);
  });

  it('caps uploads in progress per account (429), whatever length they declare', async () => {
    // spec "Blobs": at most 16 uploads of one account at once (a literal, so that the test
    // holds the code to the spec). Each declares 10 bytes (so the quota reserves next to
    // nothing) and sends none yet: without the cap an account could hold any number of
    // connections and open files for the request timeout.
    const server = await h.listen();
    const a = await fresh();
    const b = await fresh();
    const head = (token: string) =>
      `POST /v1/blobs HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${token}\r\n` +
      'content-type: application/octet-stream\r\ncontent-length: 10\r\n\r\n';
    const temp = join(h.blobs.dir, '.tmp');
    const partials = async () => (await readdir(temp).catch(() => [])).length;
    const before = await partials();
    const held = Array.from({ length: 16 }, () => raw(server.port, head(a.token)));
    const send = async (token: string) => {
      const r = raw(server.port, `${head(token)}0123456789`);
      const res = await within(r.response, 5000);
      r.socket.destroy();
      if (res === 'timeout' || res === undefined) throw new Error('no response');
      return res;
    };
    try {
      // Wait until all 16 are past authentication and streaming into their partial files.
      expect(await eventually(async () => (await partials()) === before + 16)).toBe(true);
      const refused = await send(a.token);
      expect(refused.status).toBe(429);
      expect(refused.headers).toMatch(/\r\nretry-after: \d+/i);
      expect(JSON.parse(refused.body).error).toEqual({
        code: 'RATE_LIMITED',
        message: 'at most 16 uploads of one account at once',
      });
      // Another account is not affected.
      expect((await send(b.token)).status).toBe(201);
      // The held ones finish normally, and then the account may upload again.
      for (const u of held) u.socket.write('0123456789');
      const done = await Promise.all(held.map((u) => within(u.response, 5000)));
      expect(done.map((r) => (r === 'timeout' ? 0 : r?.status))).toEqual(Array(16).fill(201));
      expect((await send(a.token)).status).toBe(201);
    } finally {
      for (const u of held) u.socket.destroy();
    }
  });

  it('removes the partial file of an upload the client abandons (held before too)', async () => {
    const server = await h.listen();
    const a = await fresh();
    const temp = join(h.blobs.dir, '.tmp');
    const partials = async () => new Set(await readdir(temp).catch(() => []));
    const before = await partials();
    const { socket } = raw(
      server.port,
      `POST /v1/blobs HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${a.token}\r\n` +
        `content-type: application/octet-stream\r\ncontent-length: ${MiB}\r\n\r\n`,
    );
    socket.write(Buffer.alloc(100_000));
    let mine: string | undefined;
    expect(
      await eventually(async () => {
        mine = [...(await partials())].find((name) => !before.has(name));
        return mine !== undefined;
      }),
    ).toBe(true);
    socket.destroy();
    expect(await eventually(async () => !(await partials()).has(mine as string))).toBe(true);
  });
});
