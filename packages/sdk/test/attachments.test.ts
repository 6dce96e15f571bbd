// Encrypted attachments against the real server (in-process and over a real socket): a 5 MB
// round trip, a hostile server that reorders, truncates, duplicates, flips or swaps what it
// serves (each a typed error, and no unverified final chunk released), the Node helper's
// all-or-nothing file, and strict descriptor decoding.
import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes, sha256, toBase64url } from '@coffer/crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signup } from '../../server/test/_client.js';
import {
  ATTACHMENT_CHUNK_SIZE,
  type AttachmentDescriptor,
  decodeAttachmentDescriptor,
  downloadAndDecrypt,
  encodeAttachmentDescriptor,
  encryptAndUpload,
  type FetchLike,
  SdkError,
  type SdkErrorCode,
} from '../src/index.js';
import { saveAttachment } from '../src/node.js';
import { SERVER_URL, type TestServer, testServer } from './_server.js';

const MB = 1000 * 1000;
const HEADER = 36;
const TAG = 16;

async function collect(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const part of stream) parts.push(part);
  return new Uint8Array(Buffer.concat(parts));
}

/** Reads until the stream ends or errors; returns what was released and the error, if any. */
async function drain(stream: ReadableStream<Uint8Array>) {
  let released = 0;
  try {
    for await (const part of stream) released += part.length;
    return { released, error: undefined };
  } catch (error) {
    return { released, error };
  }
}

async function expectCode(promise: Promise<unknown>, code: SdkErrorCode) {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(SdkError.is(err), String(err)).toBe(true);
  expect((err as SdkError).code).toBe(code);
  return err as SdkError;
}

/** A server that rewrites the ciphertext it serves for blob downloads. */
/** Runs `work` in a new temporary directory, removed afterwards. */
async function inTempDir(prefix: string, work: (dir: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  try {
    await work(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function hostile(inner: FetchLike, rewrite: (cipher: Uint8Array) => Uint8Array): FetchLike {
  return async (url, init) => {
    const res = await inner(url, init);
    if (!new URL(url).pathname.startsWith('/v1/blobs/') || !res.ok) return res;
    const cipher = new Uint8Array(await res.arrayBuffer());
    return new Response(rewrite(cipher) as Uint8Array<ArrayBuffer>, {
      status: 200,
      headers: { 'content-type': 'application/octet-stream' },
    });
  };
}

/** The ciphertext cut into header and chunks of `chunkSize + 16` bytes (stream-v1 §1). */
function split(cipher: Uint8Array, chunkSize: number) {
  const chunks: Uint8Array[] = [];
  for (let i = HEADER; i < cipher.length; i += chunkSize + TAG)
    chunks.push(cipher.slice(i, i + chunkSize + TAG));
  return { header: cipher.slice(0, HEADER), chunks };
}
const join2 = (header: Uint8Array, chunks: Uint8Array[]) =>
  new Uint8Array(Buffer.concat([header, ...chunks]));

describe('attachments', () => {
  let server: TestServer;
  let token: string;
  let fetch: FetchLike;
  const base = { server: SERVER_URL };

  beforeAll(async () => {
    server = await testServer({ maxBlobBytes: 6 * MB });
    fetch = server.fetch;
    const account = await signup(
      (path, init) => Promise.resolve(server.fetch(path, init ?? {})),
      `att-${Math.random().toString(36).slice(2, 10)}`,
      'a long enough password',
    );
    token = account.token;
  });
  afterAll(() => server.close());

  it('round-trips 5 MB in-process, checking progress and the descriptor', async () => {
    const data = randomBytes(5 * MB);
    const progress: Array<[number, number | undefined]> = [];
    const d = await encryptAndUpload({
      ...base,
      token,
      fetch,
      data,
      name: 'holiday.mov',
      mediaType: 'video/quicktime',
      onProgress: (done, total) => progress.push([done, total]),
    });
    expect(d.size).toBe(data.length);
    expect(d.chunkSize).toBe(ATTACHMENT_CHUNK_SIZE);
    expect(d.key).toHaveLength(32);
    expect(d.cipherSize).toBe(HEADER + data.length + Math.ceil(data.length / d.chunkSize) * TAG);
    expect(d.name).toBe('holiday.mov');
    expect(d.mediaType).toBe('video/quicktime');
    expect(progress.at(-1)).toEqual([data.length, data.length]);
    expect(progress.every(([done], i) => i === 0 || done > progress[i - 1]![0])).toBe(true);

    // The server holds exactly the described ciphertext, and not the plaintext.
    const stored = readFileSync(join(server.blobDir, `${d.blobId}.blob`));
    expect(stored.length).toBe(d.cipherSize);
    expect(Buffer.from(await sha256(new Uint8Array(stored))).equals(Buffer.from(d.sha256))).toBe(
      true,
    );
    expect(stored.includes(Buffer.from(data.subarray(1000, 1064)))).toBe(false);

    const seen: number[] = [];
    const plain = await collect(
      await downloadAndDecrypt({
        ...base,
        token,
        fetch,
        descriptor: d,
        onProgress: (done, total) => {
          expect(total).toBe(data.length);
          seen.push(done);
        },
      }),
    );
    expect(Buffer.from(plain).equals(Buffer.from(data))).toBe(true);
    expect(seen.at(-1)).toBe(data.length);
  });

  it('streams 5 MB both ways over a real socket with the global fetch', async () => {
    const url = await server.listen();
    const data = randomBytes(5 * MB + 123);
    // An async iterable source, never a whole buffer.
    async function* pieces() {
      for (let i = 0; i < data.length; i += 300_000) yield data.slice(i, i + 300_000);
    }
    const d = await encryptAndUpload({ server: url, token, data: pieces() });
    expect(d.size).toBe(data.length);
    const plain = await collect(await downloadAndDecrypt({ server: url, token, descriptor: d }));
    expect(Buffer.from(plain).equals(Buffer.from(data))).toBe(true);
    // A file that fails to read midway is a local error, not the network's, over a socket
    // and in process alike.
    async function* failing() {
      yield randomBytes(100_000);
      throw Object.assign(new Error('input/output error'), { code: 'EIO' });
    }
    for (const [server2, fetch2] of [
      [url, undefined],
      [base.server, fetch],
    ] as const) {
      const err = await encryptAndUpload({
        server: server2,
        token,
        data: failing(),
        ...(fetch2 ? { fetch: fetch2 } : {}),
      }).catch((e) => e);
      expect(SdkError.is(err, 'STORE_UNAVAILABLE'), String(err)).toBe(true);
      expect(err.message).toContain('EIO');
    }
  });

  it('takes a ReadableStream, and an empty file', async () => {
    const data = randomBytes(100_000);
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(data.subarray(0, 7));
        c.enqueue(data.subarray(7));
        c.close();
      },
    });
    const d = await encryptAndUpload({ ...base, token, fetch, data: stream, chunkSize: 4096 });
    expect(d.chunkSize).toBe(4096);
    const plain = await collect(await downloadAndDecrypt({ ...base, token, fetch, descriptor: d }));
    expect(Buffer.from(plain).equals(Buffer.from(data))).toBe(true);

    const empty = await encryptAndUpload({ ...base, token, fetch, data: new Uint8Array(0) });
    expect(empty.size).toBe(0);
    expect(empty.cipherSize).toBe(HEADER + TAG);
    const none = await collect(
      await downloadAndDecrypt({ ...base, token, fetch, descriptor: empty }),
    );
    expect(none).toHaveLength(0);
  });

  it('refuses bad input, an oversized file and a missing session with typed errors', async () => {
    await expectCode(
      encryptAndUpload({ ...base, token: '', fetch, data: randomBytes(10) }),
      'INVALID_ARGUMENT',
    );
    await expectCode(
      encryptAndUpload({ ...base, token, fetch, data: 'text' as unknown as Uint8Array }),
      'INVALID_ARGUMENT',
    );
    async function* notBytes() {
      yield randomBytes(10);
      yield 'oops' as unknown as Uint8Array;
    }
    await expectCode(
      encryptAndUpload({ ...base, token, fetch, data: notBytes() }),
      'INVALID_ARGUMENT',
    );
    await expectCode(
      encryptAndUpload({ ...base, token, fetch, data: randomBytes(10), name: 'a\nb' }),
      'INVALID_ARGUMENT',
    );
    await expectCode(
      encryptAndUpload({ ...base, token, fetch, data: randomBytes(10), chunkSize: 1000 }),
      'INVALID_ARGUMENT',
    );
    const big = await expectCode(
      encryptAndUpload({ ...base, token, fetch, data: randomBytes(6 * MB) }),
      'INVALID_ARGUMENT',
    );
    expect(big.serverCode).toBe('PAYLOAD_TOO_LARGE');
    await expectCode(
      encryptAndUpload({
        ...base,
        token: toBase64url(randomBytes(32)),
        fetch,
        data: randomBytes(10),
      }),
      'NOT_LOGGED_IN',
    );
  });

  describe('against a hostile server', () => {
    const chunkSize = 1024;
    const data = randomBytes(10 * 1024 - 240); // 10 chunks, the last one short
    let d: AttachmentDescriptor;
    let other: AttachmentDescriptor;
    beforeAll(async () => {
      d = await encryptAndUpload({ ...base, token, fetch, data, chunkSize });
      other = await encryptAndUpload({ ...base, token, fetch, data, chunkSize });
    });

    const swap = (cipher: Uint8Array) => {
      const { header, chunks } = split(cipher, chunkSize);
      [chunks[1], chunks[2]] = [chunks[2]!, chunks[1]!];
      return join2(header, chunks);
    };
    const dropLast = (cipher: Uint8Array) => {
      const { header, chunks } = split(cipher, chunkSize);
      return join2(header, chunks.slice(0, -1));
    };
    const duplicate = (cipher: Uint8Array) => {
      const { header, chunks } = split(cipher, chunkSize);
      return join2(header, [chunks[0]!, ...chunks]);
    };
    const flipLast = (cipher: Uint8Array) => {
      const out = cipher.slice();
      out[out.length - 5]! ^= 1;
      return out;
    };
    const flipFirst = (cipher: Uint8Array) => {
      const out = cipher.slice();
      out[HEADER + 10]! ^= 0x80;
      return out;
    };
    let otherCipher: Uint8Array;
    const anotherBlob = () => otherCipher;

    it.each([
      ['reorders two chunks', swap],
      ['truncates the last chunk', dropLast],
      ['truncates one byte', (c: Uint8Array) => c.slice(0, -1)],
      ['duplicates a chunk', duplicate],
      ['flips a byte of the last chunk', flipLast],
      ['flips a byte of the first chunk', flipFirst],
      ['serves another blob', (_: Uint8Array) => anotherBlob()],
      ['appends a byte', (c: Uint8Array) => join2(c, [new Uint8Array([0])])],
    ])('%s: ATTACHMENT_CORRUPT, never the whole plaintext', async (_, rewrite) => {
      otherCipher = new Uint8Array(readFileSync(join(server.blobDir, `${other.blobId}.blob`)));
      const stream = await downloadAndDecrypt({
        ...base,
        token,
        fetch: hostile(fetch, rewrite),
        descriptor: d,
      });
      const { released, error } = await drain(stream);
      expect(SdkError.is(error, 'ATTACHMENT_CORRUPT'), String(error)).toBe(true);
      expect(released).toBeLessThan(data.length);
      // Messages name the blob, never key or bytes.
      expect((error as Error).message).not.toContain(toBase64url(d.key));
    });

    it('caught by the stream itself when the hash check is out of the way', async () => {
      // The descriptor's hash is the sender's; a hostile server cannot fix it. This checks the
      // second line on its own: a descriptor made for the tampered bytes still fails on the
      // chunks' authentication.
      const real = new Uint8Array(readFileSync(join(server.blobDir, `${d.blobId}.blob`)));
      for (const rewrite of [swap, duplicate, flipLast]) {
        const tampered = rewrite(real);
        const lie: AttachmentDescriptor =
          tampered.length === d.cipherSize
            ? { ...d, sha256: await sha256(tampered) }
            : {
                ...d,
                size: d.size + chunkSize,
                cipherSize: tampered.length,
                sha256: await sha256(tampered),
              };
        const { released, error } = await drain(
          await downloadAndDecrypt({
            ...base,
            token,
            fetch: hostile(fetch, rewrite),
            descriptor: lie,
          }),
        );
        expect(SdkError.is(error, 'ATTACHMENT_CORRUPT'), String(error)).toBe(true);
        expect(released).toBeLessThan(data.length);
      }
      // Truncated at a chunk boundary, with a descriptor that fits: the last chunk is not final.
      const cut = dropLast(real);
      const short = {
        ...d,
        size: 9 * chunkSize,
        cipherSize: cut.length,
        sha256: await sha256(cut),
      };
      const { released, error } = await drain(
        await downloadAndDecrypt({
          ...base,
          token,
          fetch: hostile(fetch, dropLast),
          descriptor: short,
        }),
      );
      expect(SdkError.is(error, 'ATTACHMENT_CORRUPT'), String(error)).toBe(true);
      expect(released).toBeLessThan(9 * chunkSize);
    });

    it('checks the SHA-256 on its own: a descriptor with another hash fails at the end', async () => {
      const wrong = { ...d, sha256: randomBytes(32) };
      const { released, error } = await drain(
        await downloadAndDecrypt({ ...base, token, fetch, descriptor: wrong }),
      );
      expect(SdkError.is(error, 'ATTACHMENT_CORRUPT'), String(error)).toBe(true);
      // Every chunk but the final one was authentic and released; the final one never was.
      expect(released).toBe(9 * chunkSize);
    });

    it('reads no more than a few KiB of an answer that never ends', async () => {
      let pulled = 0;
      const endless = (status: number): Response =>
        new Response(
          new ReadableStream<Uint8Array>({
            pull(controller) {
              pulled += 16_384;
              controller.enqueue(new Uint8Array(16_384).fill(0x20));
            },
          }),
          { status, headers: { 'content-type': 'application/json' } },
        );
      // A download refused with an endless error body: its status decides, and the body is
      // given up early.
      await expectCode(
        downloadAndDecrypt({ ...base, token, descriptor: d, fetch: async () => endless(404) }),
        'NOT_FOUND',
      );
      expect(pulled).toBeLessThan(1024 * 1024);
      // An upload answered with an endless body.
      pulled = 0;
      await expectCode(
        encryptAndUpload({
          ...base,
          token,
          data: randomBytes(10),
          fetch: async () => endless(201),
        }),
        'PROTOCOL_VIOLATION',
      );
      expect(pulled).toBeLessThan(1024 * 1024);
    });

    it('refuses a length that does not match before reading', async () => {
      const lying: FetchLike = async (url, init) => {
        const res = await fetch(url, init);
        if (!new URL(url).pathname.startsWith('/v1/blobs/')) return res;
        const body = new Uint8Array(await res.arrayBuffer());
        return new Response(body.slice(0, -16), {
          status: 200,
          headers: { 'content-length': String(body.length - 16) },
        });
      };
      await expectCode(
        downloadAndDecrypt({ ...base, token, fetch: lying, descriptor: d }),
        'ATTACHMENT_CORRUPT',
      );
    });

    it('answers NOT_FOUND for a blob the server does not have', async () => {
      await expectCode(
        downloadAndDecrypt({
          ...base,
          token,
          fetch,
          descriptor: { ...d, blobId: toBase64url(randomBytes(16)) },
        }),
        'NOT_FOUND',
      );
    });

    it('saveAttachment writes the file only when everything verified', async () => {
      await inTempDir('coffer-att-', async (dir) => {
        const path = join(dir, 'file.bin');
        await saveAttachment(d, path, { ...base, token, fetch });
        expect(Buffer.from(readFileSync(path)).equals(Buffer.from(data))).toBe(true);
        expect(existsSync(`${path}.partial`)).toBe(false);

        const bad = join(dir, 'bad.bin');
        for (const rewrite of [flipLast, dropLast]) {
          await expectCode(
            saveAttachment(d, bad, { ...base, token, fetch: hostile(fetch, rewrite) }),
            'ATTACHMENT_CORRUPT',
          );
          expect(existsSync(bad)).toBe(false);
        }
        // Nothing is left beside the file: no partial file, hidden or not.
        expect(readdirSync(dir)).toEqual(['file.bin']);
      });
    });

    it('saveAttachment leaves no partial file when the process exits in the middle', async () => {
      await inTempDir('coffer-att-exit-', async (dir) => {
        // A process saving a stream that stalls after its first bytes, then exiting (as the
        // CLI does on Ctrl-C).
        const script = join(dir, 'exit-midway.mts');
        writeFileSync(
          script,
          `import { saveAttachment } from ${JSON.stringify(new URL('../src/node.ts', import.meta.url).pathname)};
        const stream = new ReadableStream({
          start(controller) { controller.enqueue(new Uint8Array(100_000).fill(7)); },
        });
        void saveAttachment(stream, ${JSON.stringify(join(dir, 'out', 'file.bin'))});
        setTimeout(() => process.exit(130), 500);`,
        );
        mkdirSync(join(dir, 'out'));
        const child = spawnSync(
          process.execPath,
          ['--conditions=@coffer/source', '--import', 'tsx', script],
          { cwd: new URL('..', import.meta.url).pathname, encoding: 'utf8' },
        );
        expect(child.status, child.stderr).toBe(130);
        expect(readdirSync(join(dir, 'out'))).toEqual([]);
      });
    });

    it('saveAttachment never replaces or follows what exists unless told to', async () => {
      await inTempDir('coffer-att-', async (dir) => {
        const path = join(dir, 'file.bin');
        const mine = join(dir, 'mine.txt');
        writeFileSync(path, "the user's own file");
        writeFileSync(mine, 'not to be written through a link');
        symlinkSync(mine, join(dir, 'link.bin'));
        symlinkSync(mine, join(dir, 'file.bin.partial'));
        const opts = { ...base, token, fetch };
        await expectCode(saveAttachment(d, path, opts), 'CONFLICT');
        await expectCode(saveAttachment(d, join(dir, 'link.bin'), opts), 'CONFLICT');
        expect(readFileSync(path, 'utf8')).toBe("the user's own file");
        expect(readFileSync(mine, 'utf8')).toBe('not to be written through a link');
        // keep-both: the first free numbered name; replace: over the file.
        expect(await saveAttachment(d, path, { ...opts, ifExists: 'keep-both' })).toBe(
          join(dir, 'file (1).bin'),
        );
        expect(await saveAttachment(d, path, { ...opts, ifExists: 'keep-both' })).toBe(
          join(dir, 'file (2).bin'),
        );
        expect(await saveAttachment(d, path, { ...opts, ifExists: 'replace' })).toBe(path);
        for (const f of ['file.bin', 'file (1).bin', 'file (2).bin'])
          expect(Buffer.from(readFileSync(join(dir, f))).equals(Buffer.from(data)), f).toBe(true);
        expect(readFileSync(mine, 'utf8')).toBe('not to be written through a link');
        expect(readdirSync(dir).sort()).toEqual([
          'file (1).bin',
          'file (2).bin',
          'file.bin',
          'file.bin.partial',
          'link.bin',
          'mine.txt',
        ]);
        await expectCode(
          saveAttachment(d, path, { ...opts, ifExists: 'sometimes' as 'fail' }),
          'INVALID_ARGUMENT',
        );
      });
    });

    it('saveAttachment saves under a name as long as the file system allows', async () => {
      await inTempDir('coffer-att-', async (dir) => {
        // 255 bytes, the ext4/xfs/tmpfs limit: the hidden partial name must not exceed it.
        const name = `${'é'.repeat(120)}${'x'.repeat(11)}.bin`;
        expect(Buffer.byteLength(name)).toBe(255);
        const path = join(dir, name);
        expect(await saveAttachment(d, path, { ...base, token, fetch })).toBe(path);
        expect(Buffer.from(readFileSync(path)).equals(Buffer.from(data))).toBe(true);
        expect(readdirSync(dir)).toEqual([name]);
        // Taken: keep-both cuts the name to make room for " (1)".
        const second = await saveAttachment(d, path, {
          ...base,
          token,
          fetch,
          ifExists: 'keep-both',
        });
        expect(second).toBe(join(dir, `${'é'.repeat(120)}${'x'.repeat(7)} (1).bin`));
        expect(Buffer.byteLength(second.slice(dir.length + 1))).toBe(255);
        expect(Buffer.from(readFileSync(second)).equals(Buffer.from(data))).toBe(true);
      });
    });
  });

  describe('descriptors', () => {
    const d: AttachmentDescriptor = {
      blobId: toBase64url(randomBytes(16)),
      key: randomBytes(32),
      size: 70_000,
      cipherSize: HEADER + 70_000 + 2 * TAG,
      sha256: randomBytes(32),
      chunkSize: 65536,
      name: 'report.pdf',
      mediaType: 'application/pdf',
    };
    const json = () => JSON.parse(encodeAttachmentDescriptor(d)) as Record<string, unknown>;

    it('round-trip through JSON text and parsed objects', () => {
      const text = encodeAttachmentDescriptor(d);
      expect(JSON.parse(text)).toMatchObject({ v: 1, blobId: d.blobId, size: 70_000 });
      expect(decodeAttachmentDescriptor(text)).toEqual(d);
      expect(decodeAttachmentDescriptor(JSON.parse(text))).toEqual(d);
      const { name: _n, mediaType: _m, ...bare } = d;
      expect(decodeAttachmentDescriptor(encodeAttachmentDescriptor(bare))).toEqual(bare);
    });

    it.each<[string, (o: Record<string, unknown>) => unknown]>([
      ['not JSON', () => '{"v":1,'],
      ['an array', () => [1]],
      ['null', () => null],
      ['another version', (o) => ({ ...o, v: 2 })],
      ['no version', ({ v: _, ...o }) => o],
      ['an unknown field', (o) => ({ ...o, extra: true })],
      ['a missing key', ({ key: _, ...o }) => o],
      ['a short key', (o) => ({ ...o, key: toBase64url(randomBytes(31)) })],
      ['a padded key', (o) => ({ ...o, key: `${o.key}=` })],
      ['a non-canonical key', (o) => ({ ...o, key: `${(o.key as string).slice(0, -1)}B` })],
      ['a short sha256', (o) => ({ ...o, sha256: toBase64url(randomBytes(16)) })],
      ['a malformed blob id', (o) => ({ ...o, blobId: '../../etc/passwd' })],
      ['a blob id of 17 bytes', (o) => ({ ...o, blobId: toBase64url(randomBytes(17)) })],
      [
        'a cipherSize that does not fit',
        (o) => ({ ...o, cipherSize: (o.cipherSize as number) + 1 }),
      ],
      ['a chunkSize not a power of two', (o) => ({ ...o, chunkSize: 65535 })],
      ['a chunkSize too small', (o) => ({ ...o, chunkSize: 512 })],
      ['a negative size', (o) => ({ ...o, size: -1 })],
      ['a fractional size', (o) => ({ ...o, size: 1.5 })],
      ['a size as a string', (o) => ({ ...o, size: '70000' })],
      ['a name with a control character', (o) => ({ ...o, name: 'a\u0000b' })],
      ['an empty name', (o) => ({ ...o, name: '' })],
      ['a long name', (o) => ({ ...o, name: 'x'.repeat(256) })],
      ['a name that is not a string', (o) => ({ ...o, name: 5 })],
      ['a bad media type', (o) => ({ ...o, mediaType: 'pdf' })],
    ])('refuse %s with INVALID_ATTACHMENT', (_, mutate) => {
      const input = mutate(json());
      const err = (() => {
        try {
          decodeAttachmentDescriptor(
            (typeof input === 'string' ? input : JSON.stringify(input)) as string,
          );
        } catch (e) {
          return e;
        }
      })();
      expect(SdkError.is(err, 'INVALID_ATTACHMENT'), String(err)).toBe(true);
      // Never the key in a message.
      expect((err as Error).message).not.toContain(toBase64url(d.key));
    });

    it('refuse to encode a malformed descriptor (a caller mistake)', () => {
      expect(() => encodeAttachmentDescriptor({ ...d, key: randomBytes(16) })).toThrow(
        expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
      );
    });
  });
});
