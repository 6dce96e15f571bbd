// Blobs (spec/http-api-v1.md "Blobs"): streamed upload and download, the size limit and the
// per-account quota (concurrent uploads included), ids as capabilities, delete by the uploader
// only, retention and orphan sweeps, account deletion, and what the blob directory holds — on
// every database, in-process and over a real socket.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, readlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { toBase64url } from '@coffer/crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBlobFiles } from '../src/blob-files.js';
import {
  BLOB_ORPHAN_GRACE_MS,
  BLOB_QUOTA_BYTES,
  BLOB_RETENTION_MS,
  MAX_BLOB_BYTES,
  sweepBlobs,
} from '../src/http/blobs.js';
import { REQUEST_TIMEOUT_MS } from '../src/server.js';
import { type Account, addDevice, call, login, makeDevice, signup } from './_client.js';
import { testDialects } from './_db.js';
import { foundIn, foundInDirectory } from './_dump-search.js';
import { createHarness, type Fetcher, type Harness } from './_harness.js';

const dialects = await testDialects();

const MiB = 1024 * 1024;
/** Small limits so that the tests can reach them: 4 MiB per blob, 6 MiB per account. */
const MAX = 4 * MiB;
const QUOTA = 6 * MiB;

const bytes = (n: number) => new Uint8Array(randomBytes(n));

/** A body with no content-length: the server only learns its size by reading it. */
function streamed(data: Uint8Array, piece = 64 * 1024): ReadableStream<Uint8Array> {
  let offset = 0;
  return new ReadableStream({
    pull(controller) {
      if (offset >= data.length) return controller.close();
      controller.enqueue(data.slice(offset, offset + piece));
      offset += piece;
    },
  });
}

async function upload(
  fetcher: Fetcher,
  token: string | undefined,
  data: Uint8Array,
  options: { stream?: boolean; type?: string } = {},
) {
  const headers: Record<string, string> = {
    'content-type': options.type ?? 'application/octet-stream',
  };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetcher('/v1/blobs', {
    method: 'POST',
    headers,
    body: options.stream ? streamed(data) : data,
    ...(options.stream ? { duplex: 'half' } : {}),
  } as RequestInit);
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : undefined };
}

async function download(fetcher: Fetcher, token: string | undefined, blobId: string) {
  const res = await fetcher(`/v1/blobs/${blobId}`, {
    headers: token ? { authorization: `Bearer ${token}` } : {},
  });
  return { res, body: new Uint8Array(await res.arrayBuffer()) };
}

describe.each(dialects)('blobs (%s)', (dialect) => {
  let h: Harness;
  let n = 0;
  const fresh = () => signup(h.fetch, `blob${n++}`, 'a long enough password');
  const rows = async (accountId?: string) => {
    let q = h.db.raw().selectFrom('blobs').select(['blob_id', 'account_id', 'size']);
    if (accountId) q = q.where('account_id', '=', accountId);
    return q.execute();
  };
  /** Every file in the blob directory, partial uploads included. */
  const files = async () =>
    (await readdir(h.blobs.dir, { recursive: true, withFileTypes: true }))
      .filter((e) => e.isFile())
      .map((e) => e.name);

  let a: Account;
  let b: Account;
  beforeAll(async () => {
    h = await createHarness(dialect, 'blobs', { maxBlobBytes: MAX, blobQuotaBytes: QUOTA });
    a = await fresh();
    b = await fresh();
  });
  afterAll(() => h.dispose());

  it('has the documented defaults', () => {
    expect(MAX_BLOB_BYTES).toBe(1024 ** 3);
    expect(BLOB_QUOTA_BYTES).toBe(10 * 1024 ** 3);
    expect(BLOB_RETENTION_MS).toBe(30 * 24 * 60 * 60 * 1000);
  });

  it('round-trips a multi-MB blob, read by any session that knows its id', async () => {
    const data = bytes(3 * MiB + 17);
    const up = await upload(h.fetch, a.token, data, { stream: true });
    expect(up.status).toBe(201);
    expect(up.json).toEqual({
      blobId: expect.stringMatching(/^[A-Za-z0-9_-]{22}$/),
      size: data.length,
    });
    expect(await rows(a.accountId)).toEqual([
      { blob_id: up.json.blobId, account_id: a.accountId, size: expect.anything() },
    ]);
    for (const token of [a.token, b.token]) {
      const { res, body } = await download(h.fetch, token, up.json.blobId);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('application/octet-stream');
      expect(res.headers.get('content-length')).toBe(String(data.length));
      expect(res.headers.get('cache-control')).toBe('no-store');
      expect(Buffer.from(body).equals(Buffer.from(data))).toBe(true);
    }
    // Only the final file, named after the id; no partial file is left.
    expect(await files()).toContain(`${up.json.blobId}.blob`);
    expect((await files()).filter((f) => f.endsWith('.part'))).toEqual([]);
  });

  it('streams both ways over a real socket', async () => {
    const server = await h.listen();
    const data = bytes(5 * 1024 * 1024 - 3).subarray(0, MAX - 1);
    const up = await upload(server.fetch, a.token, data.subarray(0, 2 * MiB), { stream: true });
    expect(up.status).toBe(201);
    const { res, body } = await download(server.fetch, b.token, up.json.blobId);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-length')).toBe(String(2 * MiB));
    expect(Buffer.from(body).equals(Buffer.from(data.subarray(0, 2 * MiB)))).toBe(true);
    const gone = await call(
      server.fetch,
      'DELETE',
      `/v1/blobs/${up.json.blobId}`,
      undefined,
      a.token,
    );
    expect(gone.status).toBe(204);
  });

  it('answers HEAD with the size and closes the file; allows an hour for a request', async () => {
    const server = await h.listen();
    expect(server.server.requestTimeout).toBe(REQUEST_TIMEOUT_MS);
    const up = await upload(server.fetch, a.token, bytes(70_000));
    const blobFiles = async () => {
      const fds = await readdir('/proc/self/fd').catch(() => undefined);
      if (!fds) return 0; // not Linux: nothing to count
      const targets = await Promise.all(
        fds.map((fd) => readlink(`/proc/self/fd/${fd}`).catch(() => '')),
      );
      return targets.filter((t) => t.endsWith(`${up.json.blobId}.blob`)).length;
    };
    for (let i = 0; i < 20; i++) {
      const res = await server.fetch(`/v1/blobs/${up.json.blobId}`, {
        method: 'HEAD',
        headers: { authorization: `Bearer ${b.token}` },
      });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-length')).toBe('70000');
      expect((await res.arrayBuffer()).byteLength).toBe(0);
    }
    expect(await blobFiles()).toBe(0);
  });

  it('answers an oversized or over-quota upload over a real socket too', async () => {
    const server = await h.listen();
    const c = await fresh();
    for (const stream of [false, true]) {
      const r = await upload(server.fetch, c.token, bytes(MAX + 1), { stream });
      expect(r.status).toBe(413);
      expect(r.json.error.code).toBe('PAYLOAD_TOO_LARGE');
    }
    expect((await upload(server.fetch, c.token, bytes(MAX))).status).toBe(201);
    const over = await upload(server.fetch, c.token, bytes(QUOTA - MAX + 1), { stream: true });
    expect(over.json.error.code).toBe('QUOTA_EXCEEDED');
    // The connection is still good for the next request.
    expect((await upload(server.fetch, c.token, bytes(10))).status).toBe(201);
    expect(await rows(c.accountId)).toHaveLength(2);
  });

  it('refuses a blob over the size limit and keeps nothing of it', async () => {
    const c = await fresh();
    const before = await files();
    for (const stream of [false, true]) {
      const r = await upload(h.fetch, c.token, bytes(MAX + 1), { stream });
      expect(r.status).toBe(413);
      expect(r.json.error.code).toBe('PAYLOAD_TOO_LARGE');
    }
    expect(await rows(c.accountId)).toEqual([]);
    expect(await files()).toEqual(before);
    // Exactly the limit is fine.
    expect((await upload(h.fetch, c.token, bytes(MAX), { stream: true })).status).toBe(201);
  });

  it('keeps each account within its quota, and frees room on delete', async () => {
    const c = await fresh();
    const first = await upload(h.fetch, c.token, bytes(MAX));
    expect(first.status).toBe(201);
    const before = await files();
    for (const stream of [false, true]) {
      const r = await upload(h.fetch, c.token, bytes(QUOTA - MAX + 1), { stream });
      expect(r.status).toBe(413);
      expect(r.json.error.code).toBe('QUOTA_EXCEEDED');
    }
    expect(await files()).toEqual(before);
    expect((await upload(h.fetch, c.token, bytes(QUOTA - MAX))).status).toBe(201);
    expect((await upload(h.fetch, c.token, bytes(1))).json.error.code).toBe('QUOTA_EXCEEDED');
    // Another account has its own quota.
    expect((await upload(h.fetch, (await fresh()).token, bytes(MAX))).status).toBe(201);
    const del = await call(h.fetch, 'DELETE', `/v1/blobs/${first.json.blobId}`, undefined, c.token);
    expect(del.status).toBe(204);
    expect((await upload(h.fetch, c.token, bytes(MAX))).status).toBe(201);
  });

  it('lets only one of two concurrent uploads take the last room', async () => {
    const c = await fresh();
    const results = await Promise.all([
      upload(h.fetch, c.token, bytes(MAX), { stream: true }),
      upload(h.fetch, c.token, bytes(MAX), { stream: true }),
    ]);
    expect(results.map((r) => r.status).sort()).toEqual([201, 413]);
    expect(results.find((r) => r.status === 413)?.json.error.code).toBe('QUOTA_EXCEEDED');
    const stored = await rows(c.accountId);
    expect(stored).toHaveLength(1);
    // The loser's file is gone too.
    expect((await files()).filter((f) => f.startsWith(stored[0]!.blob_id))).toHaveLength(1);
    const loserFiles = (await files()).filter(
      (f) => f.endsWith('.blob') && !existsSync(join(h.blobs.dir, f)),
    );
    expect(loserFiles).toEqual([]);
  });

  it('answers unknown ids 404 and malformed ids 400', async () => {
    const unknown = toBase64url(bytes(16));
    expect((await download(h.fetch, a.token, unknown)).res.status).toBe(404);
    const del = await call(h.fetch, 'DELETE', `/v1/blobs/${unknown}`, undefined, a.token);
    expect(del.status).toBe(404);
    for (const bad of ['abc', 'A'.repeat(23), `${'A'.repeat(21)}B`, '..%2F..%2Fcoffer.sqlite']) {
      const got = await call(h.fetch, 'GET', `/v1/blobs/${bad}`, undefined, a.token);
      expect(got.status, bad).toBe(400);
      const gone = await call(h.fetch, 'DELETE', `/v1/blobs/${bad}`, undefined, a.token);
      expect(gone.status, bad).toBe(400);
    }
  });

  it('lets only the uploader delete, answering others like an unknown id', async () => {
    const up = await upload(h.fetch, a.token, bytes(1000));
    const id = up.json.blobId;
    const other = await call(h.fetch, 'DELETE', `/v1/blobs/${id}`, undefined, b.token);
    expect(other.status).toBe(404);
    expect(other.json.error.code).toBe('NOT_FOUND');
    expect((await download(h.fetch, b.token, id)).res.status).toBe(200);
    expect((await call(h.fetch, 'DELETE', `/v1/blobs/${id}`, undefined, a.token)).status).toBe(204);
    expect((await download(h.fetch, a.token, id)).res.status).toBe(404);
    expect(await files()).not.toContain(`${id}.blob`);
    expect((await call(h.fetch, 'DELETE', `/v1/blobs/${id}`, undefined, a.token)).status).toBe(404);
  });

  it('needs a session with a device, and an octet-stream body', async () => {
    const stored = (await rows(a.accountId)).length;
    const id = (await upload(h.fetch, a.token, bytes(10))).json.blobId;
    expect((await upload(h.fetch, undefined, bytes(10))).status).toBe(401);
    expect((await upload(h.fetch, 'x'.repeat(43), bytes(10))).status).toBe(401);
    expect((await download(h.fetch, undefined, id)).res.status).toBe(401);
    expect((await call(h.fetch, 'DELETE', `/v1/blobs/${id}`)).status).toBe(401);

    // A session that names no device.
    const r = await login(h.fetch, a.username, a.password);
    const deviceless = r.finish!.json.token as string;
    expect((await upload(h.fetch, deviceless, bytes(10))).status).toBe(403);
    expect((await download(h.fetch, deviceless, id)).res.status).toBe(403);
    expect((await call(h.fetch, 'DELETE', `/v1/blobs/${id}`, undefined, deviceless)).status).toBe(
      403,
    );

    const json = await upload(h.fetch, a.token, bytes(10), { type: 'application/json' });
    expect(json.status).toBe(415);
    const empty = await upload(h.fetch, a.token, new Uint8Array(0));
    expect(empty.status).toBe(400);
    expect(await rows(a.accountId)).toHaveLength(stored + 1);
  });

  it('sweeps blobs past retention, files without rows and abandoned partial uploads', async () => {
    const c = await fresh();
    const old = (await upload(h.fetch, c.token, bytes(100))).json.blobId;
    h.clock.now += BLOB_RETENTION_MS - 1000;
    const young = (await upload(h.fetch, c.token, bytes(100))).json.blobId;
    // An orphan (a crash between rename and insert) and a partial upload, both an hour old; and
    // a fresh orphan, which an upload in progress could still be about to record.
    const orphan = toBase64url(bytes(16));
    const recent = toBase64url(bytes(16));
    const partial = join(h.blobs.dir, '.tmp', `${toBase64url(bytes(16))}.part`);
    await writeFile(join(h.blobs.dir, `${orphan}.blob`), 'x');
    await writeFile(join(h.blobs.dir, `${recent}.blob`), 'x');
    await writeFile(partial, 'x');
    const hourAgo = new Date(Date.now() - BLOB_ORPHAN_GRACE_MS - 1000);
    await utimes(join(h.blobs.dir, `${orphan}.blob`), hourAgo, hourAgo);
    await utimes(partial, hourAgo, hourAgo);

    h.clock.now += 2000;
    const swept = await sweepBlobs(
      h.storage,
      createBlobFiles(h.blobs.dir),
      Date.now(),
      BLOB_RETENTION_MS,
    );
    // The clock of the rows is the test's; files are aged by the real one.
    expect(swept.orphans).toBe(1);
    expect(swept.partials).toBe(1);
    expect(await files()).toContain(`${recent}.blob`);
    expect(await files()).not.toContain(`${orphan}.blob`);
    expect(existsSync(partial)).toBe(false);
    const byRows = await sweepBlobs(h.storage, createBlobFiles(h.blobs.dir), h.clock.now);
    expect(byRows.expired).toBeGreaterThanOrEqual(1);
    // (c's session expired with the clock's move: a fresh one reads.)
    const viewer = await fresh();
    expect((await download(h.fetch, viewer.token, old)).res.status).toBe(404);
    expect((await download(h.fetch, viewer.token, young)).res.status).toBe(200);
    const left = await files();
    expect(left).not.toContain(`${old}.blob`);
    expect(left).toContain(`${young}.blob`);
    expect((await rows(c.accountId)).map((r) => r.blob_id)).toEqual([young]);
  });

  it('deletes the blobs of a deleted account, rows and files', async () => {
    const c = await fresh();
    const viewer = await fresh();
    const ids = [
      (await upload(h.fetch, c.token, bytes(100))).json.blobId,
      (await upload(h.fetch, c.token, bytes(200), { stream: true })).json.blobId,
    ];
    const del = await call(h.fetch, 'DELETE', '/v1/account', undefined, c.token);
    expect(del.status).toBe(204);
    expect(await rows(c.accountId)).toEqual([]);
    for (const id of ids) {
      expect(await files()).not.toContain(`${id}.blob`);
      expect((await download(h.fetch, viewer.token, id)).res.status).toBe(404);
    }
  });

  it('keeps no username, token or session data in the blob directory', async () => {
    const c = await fresh();
    await upload(h.fetch, c.token, bytes(5000));
    await upload(h.fetch, c.token, bytes(5000), { stream: true });
    expect(await foundInDirectory(h.blobs.dir, [c.username, c.token, c.password])).toEqual([]);
    // The search itself finds what is there (checked, so that the line above can fail).
    const marked = new TextEncoder().encode(`xx${c.username}yy`);
    const up = await upload(h.fetch, c.token, marked);
    expect(await foundInDirectory(h.blobs.dir, [c.username])).toContain(
      `${up.json.blobId}.blob: ${c.username} (utf-8)`,
    );
    expect(foundIn(Buffer.from(marked), [c.username])).toHaveLength(1);
  });
  it('answers a blob past retention 404 before the sweep has run', async () => {
    const c = await fresh();
    const id = (await upload(h.fetch, c.token, bytes(100))).json.blobId;
    h.clock.now += BLOB_RETENTION_MS - 1;
    const viewer = await fresh();
    expect((await download(h.fetch, viewer.token, id)).res.status).toBe(200);
    h.clock.now += 1;
    const late = await fresh();
    const r = await download(h.fetch, late.token, id);
    expect(r.res.status).toBe(404);
    // The row and file are still there: only the sweep removes them.
    expect((await rows(c.accountId)).map((x) => x.blob_id)).toContain(id);
  });

  it('reserves quota for uploads in progress: concurrent uploads never write past it', async () => {
    const c = await fresh();
    // Three uploads of 3 MiB each with no content-length, their bodies held open after the
    // last byte: each may write up to the room the others have not reserved (4, 2, 0 MiB of
    // the 6 MiB quota), so two are refused while still streaming.
    let open!: () => void;
    const gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    const held = (data: Uint8Array) => {
      let offset = 0;
      return new ReadableStream<Uint8Array>({
        async pull(controller) {
          if (offset >= data.length) {
            await gate;
            return controller.close();
          }
          controller.enqueue(data.slice(offset, offset + 256 * 1024));
          offset += 256 * 1024;
        },
      });
    };
    const settled: number[] = [];
    const uploads = [0, 1, 2].map(async () => {
      const res = await h.fetch('/v1/blobs', {
        method: 'POST',
        headers: { 'content-type': 'application/octet-stream', authorization: `Bearer ${c.token}` },
        body: held(bytes(3 * MiB)),
        duplex: 'half',
      } as RequestInit);
      settled.push(res.status);
      return { status: res.status, json: await res.json() };
    });
    const deadline = Date.now() + 5000;
    while (settled.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(settled).toEqual([413, 413]);
    open();
    const results = await Promise.all(uploads);
    expect(results.map((r) => r.status).sort()).toEqual([201, 413, 413]);
    for (const r of results.filter((x) => x.status === 413))
      expect(r.json.error.code).toBe('QUOTA_EXCEEDED');
    // Nothing stays reserved: the room left is the quota less what is stored.
    expect((await upload(h.fetch, c.token, bytes(QUOTA - 3 * MiB))).status).toBe(201);
    expect((await upload(h.fetch, c.token, bytes(1))).json.error.code).toBe('QUOTA_EXCEEDED');
  });

  it("refuses a session whose device the account's manifest does not list (409)", async () => {
    const c = await fresh();
    const id = (await upload(h.fetch, c.token, bytes(10))).json.blobId;
    const unlisted = await makeDevice('never added');
    const token = (await login(h.fetch, c.username, c.password, unlisted.id)).finish!.json
      .token as string;
    const answers = [
      await upload(h.fetch, token, bytes(10)),
      await upload(h.fetch, token, bytes(10), { stream: true }),
      await (async () => {
        const r = (await download(h.fetch, token, id)).res;
        return { status: r.status };
      })(),
      await call(h.fetch, 'DELETE', `/v1/blobs/${id}`, undefined, token),
    ];
    expect(answers.map((r) => r.status)).toEqual([409, 409, 409, 409]);
    expect((await rows(c.accountId)).map((x) => x.blob_id)).toEqual([id]);
    expect((await addDevice(h.fetch, c, unlisted)).status).toBe(200);
    expect((await download(h.fetch, token, id)).res.status).toBe(200);
  });
});
