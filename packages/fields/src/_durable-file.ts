// Files that must survive a crash whole: KEK files, keyrings, re-encryption checkpoints.
import { randomBytes } from 'node:crypto';
import { link, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

const isCode = (err: unknown, code: string) => (err as { code?: unknown })?.code === code;

/**
 * Errors of link() on a file system without hard links: EPERM (FAT, per link(2)), ENOTSUP /
 * EOPNOTSUPP (some network file systems), ENOSYS (FUSE without a link operation: sshfs without
 * the hardlink extension).
 */
const NO_HARD_LINKS = ['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS'];

/**
 * Writes a new file whole and flushes it to disk. A write that fails removes the file it
 * created: a short KEK or keyring left in place would be refused as existing ever after.
 */
async function writeFlushed(path: string, text: string, mode: number): Promise<void> {
  const handle = await open(path, 'wx', mode);
  try {
    await handle.writeFile(text);
    await handle.sync();
  } catch (err) {
    await handle.close().catch(() => {});
    await rm(path, { force: true }).catch(() => {});
    throw err;
  }
  await handle.close();
}

/** Flushes a directory's entries (a new or renamed name), where the platform allows it. */
async function flushDir(dir: string): Promise<void> {
  if (process.platform === 'win32') return;
  const handle = await open(dir, 'r').catch(() => undefined);
  if (handle)
    await handle
      .sync()
      .catch(() => {})
      .finally(() => handle.close());
}

/** A temporary file older than this was left by a crash, not by a write still going on. */
const STALE_TEMP_MS = 10 * 60 * 1000;
const swept = new Set<string>();

/**
 * Removes the temporary files a crash left beside `path` (`<name>.<12 hex>.tmp`, the names
 * {@link writeFileDurably} uses; a KEK or keyring among them) once they are older than
 * {@link STALE_TEMP_MS}; once per path per process. Best effort: what cannot be read or removed
 * stays.
 */
async function sweepStaleTemps(path: string): Promise<void> {
  if (swept.has(path)) return;
  swept.add(path);
  const dir = dirname(path);
  const prefix = `${basename(path)}.`;
  const names = await readdir(dir).catch(() => [] as string[]);
  for (const name of names) {
    if (!name.startsWith(prefix) || !/^[0-9a-f]{12}\.tmp$/.test(name.slice(prefix.length)))
      continue;
    const file = join(dir, name);
    const info = await stat(file).catch(() => undefined);
    if (info?.isFile() && Date.now() - info.mtimeMs > STALE_TEMP_MS)
      await rm(file, { force: true }).catch(() => {});
  }
}

/**
 * Puts `text` at `path` durably and all at once: written and flushed under a temporary name
 * beside it, then renamed over `path` (`replace`) or hard-linked to it, which fails with
 * EEXIST when `path` exists; then the directory is flushed. So a crash or power loss leaves the
 * old file or the whole new one, never a truncated key, keyring or checkpoint, and a reader
 * never sees one half written. Where the file system has no hard links, a new file is created
 * in place with O_EXCL (flushed, but visible while it is written). Temporary files a crash left
 * beside `path` are removed once stale.
 */
export async function writeFileDurably(
  path: string,
  text: string,
  options: { replace: boolean; mode?: number },
): Promise<void> {
  const mode = options.mode ?? 0o600;
  await sweepStaleTemps(path);
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    await writeFlushed(tmp, text, mode);
    if (options.replace) await rename(tmp, path);
    else {
      try {
        await link(tmp, path);
      } catch (err) {
        if (!NO_HARD_LINKS.some((code) => isCode(err, code))) throw err;
        await writeFlushed(path, text, mode);
      }
    }
    await flushDir(dirname(path));
  } finally {
    await rm(tmp, { force: true }).catch(() => {});
  }
}
