// spec/http-api-v1.md "Blobs": the bytes of blobs, one file per blob in the blob directory. A
// blob is written to `.tmp/<blobId>.part`, flushed to disk and renamed to `<blobId>.blob` (then
// the directory is flushed), so that a crash never leaves a partial file under a final name;
// the route records the row only after the rename. File names come from the blob id alone
// (b64url, checked by the caller): nothing the client sends reaches the file system otherwise.
import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { isId } from '@coffer/protocol';

const FINAL_SUFFIX = '.blob';
const TEMP_SUFFIX = '.part';
const TEMP_DIR = '.tmp';

/** What {@link BlobFiles.write} did. */
export type BlobWriteResult =
  | { readonly ok: true; readonly size: number }
  /** The body went past `maxBytes`: the partial file is deleted. */
  | { readonly ok: false; readonly reason: 'tooLarge' }
  /** The body could not be read (the client went away): the partial file is deleted. */
  | { readonly ok: false; readonly reason: 'unreadable' };

/** A blob file opened for reading. */
export interface OpenedBlob {
  readonly size: number;
  readonly stream: ReadableStream<Uint8Array>;
}

/** The blob directory. */
export interface BlobFiles {
  readonly dir: string;
  /**
   * Streams `body` into the blob's file, never holding more than one piece of it in memory,
   * and refuses it past `maxBytes` (reading stops there). The file appears under its final name
   * only once complete and flushed.
   *
   * @throws the file system's error (the partial file is deleted first).
   */
  write(
    blobId: string,
    body: ReadableStream<Uint8Array>,
    maxBytes: number,
  ): Promise<BlobWriteResult>;
  /** The blob's bytes as a stream, or undefined when its file does not exist. */
  open(blobId: string): Promise<OpenedBlob | undefined>;
  /** Deletes the files of `blobIds` (missing ones are fine). */
  remove(blobIds: readonly string[]): Promise<void>;
  /** The final files' blob ids with their modification times (ms), for sweeping orphans. */
  list(): Promise<Array<{ readonly blobId: string; readonly modifiedAt: number }>>;
  /** Deletes partial files last written at or before `before` (abandoned uploads); returns how many. */
  removeStaleTemp(before: number): Promise<number>;
}

function checkId(blobId: string): string {
  // Defence in depth: the routes validate ids already; a path must never come from elsewhere.
  if (!isId(blobId)) throw new Error('"blobId" expected b64url of 16 bytes');
  return blobId;
}

/**
 * The blob directory at `dir` (made with mode 0700 on first use).
 *
 * @example const files = createBlobFiles('/var/lib/coffer/blobs');
 */
export function createBlobFiles(dir: string): BlobFiles {
  if (typeof dir !== 'string' || dir === '') throw new Error('"dir" expected a directory path');
  const tempDir = join(dir, TEMP_DIR);
  const finalPath = (id: string) => join(dir, checkId(id) + FINAL_SUFFIX);
  const tempPath = (id: string) => join(tempDir, checkId(id) + TEMP_SUFFIX);
  let ready: Promise<void> | undefined;
  const ensureDirs = () => {
    ready ??= mkdir(tempDir, { recursive: true, mode: 0o700 }).then(
      () => {},
      (err: unknown) => {
        ready = undefined;
        throw err;
      },
    );
    return ready;
  };

  return {
    dir,

    async write(blobId, body, maxBytes) {
      await ensureDirs();
      const temp = tempPath(blobId);
      const target = finalPath(blobId);
      const reader = body.getReader();
      // 'wx': blob ids are fresh random values, so an existing file is a bug, never overwritten.
      const handle = await open(temp, 'wx', 0o600).catch(async (err: unknown) => {
        await reader.cancel().catch(() => {});
        throw err;
      });
      let size = 0;
      let closed = false;
      try {
        for (;;) {
          let next: ReadableStreamReadResult<Uint8Array>;
          try {
            next = await reader.read();
          } catch {
            await handle.close();
            closed = true;
            await rm(temp, { force: true });
            return { ok: false, reason: 'unreadable' };
          }
          const { done, value } = next;
          if (done) break;
          size += value.byteLength;
          if (size > maxBytes) {
            await reader.cancel().catch(() => {});
            await handle.close();
            closed = true;
            await rm(temp, { force: true });
            return { ok: false, reason: 'tooLarge' };
          }
          let offset = 0;
          while (offset < value.byteLength) {
            const { bytesWritten } = await handle.write(value, offset);
            offset += bytesWritten;
          }
        }
        await handle.sync();
        await handle.close();
        closed = true;
        await rename(temp, target);
      } catch (err) {
        await reader.cancel().catch(() => {});
        if (!closed) await handle.close().catch(() => {});
        await rm(temp, { force: true }).catch(() => {});
        throw err;
      }
      await syncDir(dir);
      return { ok: true, size };
    },

    async open(blobId) {
      let handle: Awaited<ReturnType<typeof open>>;
      try {
        handle = await open(finalPath(blobId), 'r');
      } catch (err) {
        if ((err as { code?: unknown }).code === 'ENOENT') return undefined;
        throw err;
      }
      try {
        const { size } = await handle.stat();
        // The stream owns the handle from here and closes it when done or cancelled.
        const nodeStream = handle.createReadStream({ autoClose: true });
        return { size, stream: Readable.toWeb(nodeStream) as ReadableStream<Uint8Array> };
      } catch (err) {
        await handle.close().catch(() => {});
        throw err;
      }
    },

    async remove(blobIds) {
      await Promise.all(blobIds.map((id) => rm(finalPath(id), { force: true })));
    },

    async list() {
      const names = await readdir(dir).catch((err: unknown) => {
        if ((err as { code?: unknown }).code === 'ENOENT') return [] as string[];
        throw err;
      });
      const out: Array<{ blobId: string; modifiedAt: number }> = [];
      for (const name of names) {
        if (!name.endsWith(FINAL_SUFFIX)) continue;
        const blobId = name.slice(0, -FINAL_SUFFIX.length);
        if (!isId(blobId)) continue;
        const info = await stat(join(dir, name)).catch(() => undefined);
        if (info) out.push({ blobId, modifiedAt: info.mtimeMs });
      }
      return out;
    },

    async removeStaleTemp(before) {
      const names = await readdir(tempDir).catch(() => [] as string[]);
      let removed = 0;
      for (const name of names) {
        if (!name.endsWith(TEMP_SUFFIX)) continue;
        const path = join(tempDir, name);
        const info = await stat(path).catch(() => undefined);
        if (info && info.mtimeMs <= before) {
          await rm(path, { force: true });
          removed++;
        }
      }
      return removed;
    },
  };
}

/** Makes a rename durable: flushes the directory entry (not possible on Windows). */
async function syncDir(dir: string): Promise<void> {
  if (process.platform === 'win32') return;
  const handle = await open(dir, 'r').catch(() => undefined);
  if (!handle) return;
  await handle
    .sync()
    .catch(() => {})
    .finally(() => handle.close());
}
