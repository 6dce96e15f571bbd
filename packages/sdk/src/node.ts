// @coffer/sdk/node: the Node.js pieces of the SDK (files). Nothing here runs at import time.
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import {
  chmod,
  type FileHandle,
  link,
  lstat,
  mkdir,
  open,
  readdir,
  readFile,
  readlink,
  rename,
  rm,
  stat,
  unlink,
} from 'node:fs/promises';
import { basename, dirname, extname, join } from 'node:path';
import {
  type AttachmentDescriptor,
  type AttachmentServerOptions,
  downloadAndDecrypt,
} from './attachments.js';
import { SdkError } from './errors.js';
import { checkRecordName, type LocalStore } from './local-store.js';

const STORE_KEY_FILE = 'store.key';
const STORE_KEY_LENGTH = 32;
const RECORD_SUFFIX = '.rec';
/** Records are a few KB; anything far larger is not ours. */
const MAX_RECORD_FILE_BYTES = 16 * 1024 * 1024;

/**
 * A {@link LocalStore} of one file per record in `dir` (made with mode 0700 when missing).
 * Writes are atomic: the bytes go to a temporary file (mode 0600), are flushed, and the file is
 * renamed over the record, so a crash leaves the old record or the new one. File names are the
 * hex of the record name, which keeps them portable to case-insensitive file systems.
 *
 * @example
 * ```ts
 * import { fileStore } from '@coffer/sdk/node';
 * const store = fileStore('/home/alice/.coffer/state');
 * ```
 */
export function fileStore(dir: string): LocalStore {
  if (typeof dir !== 'string' || dir.length === 0) {
    throw new SdkError('INVALID_ARGUMENT', 'fileStore', '"dir" expected a directory path');
  }
  let ready: Promise<void> | undefined;
  const ensureDir = () => {
    ready ??= makePrivateDir(dir).catch((err: unknown) => {
      ready = undefined;
      throw ioError('fileStore', err);
    });
    return ready;
  };
  const pathOf = (op: string, name: string) => {
    checkRecordName(op, name);
    return join(dir, Buffer.from(name, 'utf8').toString('hex') + RECORD_SUFFIX);
  };
  return {
    async get(name) {
      const file = pathOf('fileStore.get', name);
      try {
        const bytes = await readFile(file);
        if (bytes.length > MAX_RECORD_FILE_BYTES) {
          throw new SdkError('STORE_CORRUPT', 'fileStore.get', `record ${name} is too large`);
        }
        return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length);
      } catch (err) {
        if (isCode(err, 'ENOENT')) return undefined;
        throw ioError('fileStore.get', err);
      }
    },
    async put(name, value) {
      const file = pathOf('fileStore.put', name);
      if (!(value instanceof Uint8Array)) {
        throw new SdkError('INVALID_ARGUMENT', 'fileStore.put', '"value" expected a Uint8Array');
      }
      await ensureDir();
      await writeAtomic(file, value).catch((err: unknown) => {
        throw ioError('fileStore.put', err);
      });
    },
    async delete(name) {
      const file = pathOf('fileStore.delete', name);
      try {
        await unlink(file);
      } catch (err) {
        if (!isCode(err, 'ENOENT')) throw ioError('fileStore.delete', err);
      }
    },
    async lock(operation) {
      await ensureDir();
      return acquireLock(operation, join(dir, LOCK_FILE));
    },
  };
}

const LOCK_FILE = 'lock';
const TAKEOVER_SUFFIX = '.takeover';
/** How long an operation waits for another process's operation on the same home. */
export const LOCK_WAIT_MS = 30_000;
const LOCK_POLL_MS = 15;
/**
 * A holder writes and flushes its lock file right after creating it, so one still empty or
 * unreadable after this long lost its writer: a crash between the two, or a power loss before
 * the bytes reached the disk.
 */
const LOCK_UNWRITTEN_STALE_MS = 5_000;
/** A lock file is one short line; anything longer is not ours. */
const MAX_LOCK_FILE_BYTES = 256;

/** Who holds a lock: what `<pid> <random> <boot id> <start time> <pid ns>` says ("-" for unknown). */
interface LockHolder {
  readonly pid: number;
  /** The kernel's boot id when the lock was taken (Linux). */
  readonly boot: string | undefined;
  /** The holder's start time in clock ticks since boot (Linux), which a reused pid does not share. */
  readonly start: string | undefined;
  /** The holder's pid namespace (Linux): its pid means nothing in another one (containers). */
  readonly ns: string | undefined;
}

/**
 * A lock file made with O_EXCL holding `<pid> <random> <boot id> <start time> <pid ns>`, flushed
 * to disk: whoever created it holds the lock. One is taken over when its holder is provably gone:
 * its pid is not running; it was taken in an earlier boot; its pid now belongs to a process that
 * started at another time (pid reuse); or it is empty or unreadable and older than a few seconds.
 * Where the platform has no boot id or start times (outside Linux) only the pid is checked. A pid
 * taken in another pid namespace (another container sharing the home) is never judged. The
 * random part makes sure a holder only ever deletes its own file.
 *
 * A stale lock is deleted only by the holder of a second lock file, `<lock>.takeover`, made and
 * judged the same way, and only after judging the lock stale again while holding it. While it is
 * held, nothing else can replace a stale lock between that judgement and the deletion: its holder
 * is gone, a new one cannot be created over it, and every other taker waits for the takeover
 * lock. (Deleting without it, two takers judging one stale lock could delete, the second time,
 * the fresh lock of a third process.) A lock that cannot be deleted (a directory, a file of
 * another user) is an error, not a wait.
 */
async function acquireLock(operation: string, file: string): Promise<() => Promise<void>> {
  const self = await ownIdentity();
  const token = `${process.pid} ${randomBytes(8).toString('hex')} ${self.boot ?? '-'} ${self.start ?? '-'} ${self.ns ?? '-'}`;
  const takeover = `${file}${TAKEOVER_SUFFIX}`;
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    if (await createLockFile(operation, file, token)) return () => releaseLockFile(file, token);
    let removed = false;
    if (await staleLock(file, self)) {
      if (await createLockFile(operation, takeover, token)) {
        try {
          if (await staleLock(file, self)) removed = await deleteLockFile(operation, file);
        } finally {
          await releaseLockFile(takeover, token);
        }
      } else {
        // A taker that died holding the takeover lock.
        removed = await removeStaleTakeover(operation, takeover, self);
      }
    }
    if (removed) continue;
    if (Date.now() > deadline) {
      throw new SdkError(
        'STORE_UNAVAILABLE',
        operation,
        `another process has been using this home for ${LOCK_WAIT_MS / 1000} s`,
        { retryable: true },
      );
    }
    await new Promise((resolve) => setTimeout(resolve, LOCK_POLL_MS));
  }
}

/** Creates `file` holding `token`, flushed; false when it exists already. */
async function createLockFile(operation: string, file: string, token: string): Promise<boolean> {
  let handle: FileHandle;
  try {
    handle = await open(file, 'wx', 0o600);
  } catch (err) {
    if (isCode(err, 'EEXIST')) return false;
    throw ioError(operation, err);
  }
  try {
    await handle.writeFile(token);
    // An unflushed lock can come back empty after a power loss.
    await handle.sync();
  } catch (err) {
    await handle.close().catch(() => {});
    await unlink(file).catch(() => {});
    throw ioError(operation, err);
  }
  await handle.close();
  return true;
}

/** Deletes a lock file judged stale; false when it is gone already. */
async function deleteLockFile(operation: string, file: string): Promise<boolean> {
  try {
    await unlink(file);
    return true;
  } catch (err) {
    if (isCode(err, 'ENOENT')) return false;
    throw ioError(operation, err);
  }
}

/** Deletes `file` if it still holds `token`: a holder only ever deletes its own lock. */
async function releaseLockFile(file: string, token: string): Promise<void> {
  const now = await readFile(file, 'utf8').catch(() => '');
  if (now === token) await unlink(file).catch(() => {});
}

/**
 * Deletes a takeover lock whose holder is gone; true when it did. Rename it away first, so two
 * takers cannot both delete it; if what moved is not the file judged stale (its text and time
 * differ: another taker replaced it meanwhile, and every token is unique), put it back. The
 * put-back can still lose a race with a third taker, which then holds the takeover lock beside
 * the one whose lock moved; it takes a taker dying within its few milliseconds of holding the
 * takeover lock, then three more contending at that instant, for that to happen.
 */
async function removeStaleTakeover(
  operation: string,
  file: string,
  self: { boot: string | undefined; ns: string | undefined },
): Promise<boolean> {
  const judged = await staleLock(file, self);
  if (!judged) return false;
  const moved = `${file}.${randomBytes(6).toString('hex')}.stale`;
  try {
    await rename(file, moved);
  } catch (err) {
    if (isCode(err, 'ENOENT')) return false;
    throw ioError(operation, err);
  }
  const text = await readSmall(moved);
  const was = await stat(moved).catch(() => undefined);
  const same = text === judged.text && was?.mtimeMs === judged.mtimeMs;
  if (!same) await link(moved, file).catch(() => {});
  await unlink(moved).catch(() => {});
  return same;
}

/**
 * The lock in `file` when its holder is provably gone (its text and modification time as
 * judged); undefined when there is no lock or its holder may be alive.
 */
async function staleLock(
  file: string,
  self: { boot: string | undefined; ns: string | undefined },
): Promise<{ text: string; mtimeMs: number } | undefined> {
  const seen = await stat(file).catch(() => undefined);
  if (!seen) return undefined;
  const text = await readSmall(file);
  if (text === undefined) return undefined; // gone already: try to create it again
  return (await holderIsGone(text, seen.mtimeMs, self))
    ? { text, mtimeMs: seen.mtimeMs }
    : undefined;
}

/** Whether the holder a lock's `text` names (last changed at `mtimeMs`) is provably gone. */
async function holderIsGone(
  text: string,
  mtimeMs: number,
  self: { boot: string | undefined; ns: string | undefined },
): Promise<boolean> {
  const holder = parseHolder(text);
  if (!holder) return Date.now() - mtimeMs > LOCK_UNWRITTEN_STALE_MS;
  if (holder.boot && self.boot && holder.boot !== self.boot) return true;
  // Another container's pid: whether it runs cannot be seen from here. Wait for it.
  if (holder.ns && holder.ns !== self.ns) return false;
  if (!alive(holder.pid)) return true;
  if (holder.start) {
    const start = await startTimeOf(holder.pid);
    if (start !== undefined && start !== holder.start) return true;
  }
  return false;
}

/** The file's text, '' when it cannot be read as a lock, undefined when it is gone. */
async function readSmall(file: string): Promise<string | undefined> {
  try {
    const bytes = await readFile(file);
    return bytes.length > MAX_LOCK_FILE_BYTES ? '' : bytes.toString('utf8');
  } catch (err) {
    return isCode(err, 'ENOENT') ? undefined : '';
  }
}

function parseHolder(text: string): LockHolder | undefined {
  // `<pid> <random>` (older SDKs), now `<pid> <random> <boot id|-> <start|-> <pid ns|->`;
  // fields added later are ignored. Without a pid nothing is known of the holder.
  const [pidText = '', nonce = '', boot = '-', start = '-', ns = '-'] = text.split(' ');
  if (!/^[1-9][0-9]{0,9}$/.test(pidText) || nonce === '') return undefined;
  const field = (v: string) => (/^[0-9a-zA-Z-]{1,64}$/.test(v) && v !== '-' ? v : undefined);
  return { pid: Number(pidText), boot: field(boot), start: field(start), ns: field(ns) };
}

interface OwnIdentity {
  readonly boot: string | undefined;
  readonly start: string | undefined;
  readonly ns: string | undefined;
}
let identity: Promise<OwnIdentity> | undefined;

/** This boot's id, this process's start time and pid namespace, where the platform tells them (Linux). */
function ownIdentity(): Promise<OwnIdentity> {
  identity ??= (async () => ({
    boot: await readFile('/proc/sys/kernel/random/boot_id', 'utf8').then(
      (t) => t.trim() || undefined,
      () => undefined,
    ),
    start: await startTimeOf(process.pid),
    // "pid:[4026531836]": the inode number names the namespace.
    ns: await readlink('/proc/self/ns/pid').then(
      (t) => /^pid:\[([0-9]{1,20})\]$/.exec(t)?.[1],
      () => undefined,
    ),
  }))();
  return identity;
}

/** Field 22 of /proc/<pid>/stat: when the process started, in clock ticks since boot. */
async function startTimeOf(pid: number): Promise<string | undefined> {
  const text = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  if (!text) return undefined;
  // The command name (field 2) is in parentheses and may hold spaces: count after its end.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const start = fields[19];
  return start && /^[0-9]+$/.test(start) ? start : undefined;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return isCode(err, 'EPERM');
  }
}

/**
 * Opens (creating on first use) a client home directory: the 32-byte store key in
 * `<dir>/store.key` (mode 0600) and a {@link fileStore} in `<dir>/state`. The key beside the
 * records protects them when records leave without the key (a synced or backed-up folder that
 * skips it), not against someone who can read the whole directory as this user: for that, keep
 * the key in the OS keychain and pass it to `createClient` yourself.
 *
 * @throws {SdkError} `STORE_CORRUPT` when `store.key` is not 32 bytes; `INVALID_ARGUMENT` for an
 *   empty path.
 * @example
 * ```ts
 * import { createClient } from '@coffer/sdk';
 * import { openNodeHome } from '@coffer/sdk/node';
 *
 * const { store, storeKey } = await openNodeHome(`${os.homedir()}/.coffer`);
 * const client = createClient({ server: 'https://coffer.example.com', store, storeKey });
 * ```
 */
export async function openNodeHome(
  dir: string,
): Promise<{ store: LocalStore; storeKey: Uint8Array }> {
  const op = 'openNodeHome';
  if (typeof dir !== 'string' || dir.length === 0) {
    throw new SdkError('INVALID_ARGUMENT', op, '"dir" expected a directory path');
  }
  await makePrivateDir(dir).catch((err: unknown) => {
    throw ioError(op, err);
  });
  const keyFile = join(dir, STORE_KEY_FILE);
  let storeKey = await readKey(op, keyFile);
  if (!storeKey) {
    const fresh = new Uint8Array(randomBytes(STORE_KEY_LENGTH));
    try {
      storeKey = (await placeNewKey(keyFile, fresh)) ? fresh : await readKey(op, keyFile);
    } catch (err) {
      throw ioError(op, err);
    }
    if (!storeKey) throw new SdkError('STORE_CORRUPT', op, 'store.key vanished while opening');
  }
  await sweepKeyTemps(dir);
  return { store: fileStore(join(dir, 'state')), storeKey };
}

/**
 * Errors of link() on a file system without hard links: EPERM (FAT, per link(2)), ENOTSUP /
 * EOPNOTSUPP (some network file systems), ENOSYS (FUSE without a link operation: sshfs without
 * the hardlink extension).
 */
const NO_HARD_LINKS = ['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS'];

/**
 * Puts a new key at `keyFile` unless one is there: true when this one was placed. Written
 * whole and flushed under a temporary name first, then hard-linked to the name (which fails
 * when it exists), so that two processes opening a new home at once agree on the first key, and
 * none reads a key file still being written (or left empty by a crash). Where the file system
 * has no hard links, created in place with O_EXCL as before; a write that fails there removes
 * the file it created, or every later open would find it short (STORE_CORRUPT). Then the
 * directory is flushed: records sealed under a key whose name a power loss took are lost.
 */
async function placeNewKey(keyFile: string, key: Uint8Array): Promise<boolean> {
  const temp = `${keyFile}.${randomBytes(6).toString('hex')}.tmp`;
  const write = async (file: string) => {
    const handle = await open(file, 'wx', 0o600);
    try {
      await handle.writeFile(key);
      await handle.sync();
    } catch (err) {
      await handle.close().catch(() => {});
      await unlink(file).catch(() => {});
      throw err;
    }
    await handle.close();
  };
  try {
    await write(temp);
    try {
      await link(temp, keyFile);
    } catch (err) {
      if (isCode(err, 'EEXIST')) return false;
      if (!NO_HARD_LINKS.some((code) => isCode(err, code))) throw err;
      try {
        await write(keyFile);
      } catch (err) {
        if (isCode(err, 'EEXIST')) return false;
        throw err;
      }
    }
  } finally {
    await rm(temp, { force: true }).catch(() => {});
  }
  await flushDir(dirname(keyFile));
  return true;
}

/** A temporary key file older than this was left by a crash (a placement takes milliseconds). */
const STALE_TEMP_MS = 10 * 60 * 1000;

/**
 * Deletes `store.key.<random>.tmp` files a crash left while placing a new key (each holds a key
 * nothing uses); best effort. Young ones may belong to an opener placing its key right now.
 */
async function sweepKeyTemps(dir: string): Promise<void> {
  const pattern = /^store\.key\.[0-9a-f]{12}\.tmp$/; // STORE_KEY_FILE's temporaries
  const names = await readdir(dir).catch(() => [] as string[]);
  for (const name of names) {
    if (!pattern.test(name)) continue;
    const path = join(dir, name);
    const info = await lstat(path).catch(() => undefined);
    if (info?.isFile() && Date.now() - info.mtimeMs > STALE_TEMP_MS)
      await rm(path, { force: true }).catch(() => {});
  }
}

async function readKey(op: string, file: string): Promise<Uint8Array | undefined> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (err) {
    if (isCode(err, 'ENOENT')) return undefined;
    throw ioError(op, err);
  }
  if (bytes.length !== STORE_KEY_LENGTH) {
    throw new SdkError(
      'STORE_CORRUPT',
      op,
      `store.key expected ${STORE_KEY_LENGTH} bytes, got ${bytes.length}`,
    );
  }
  return new Uint8Array(bytes);
}

/** Makes `dir` (and parents) and narrows it to 0700 where the platform has modes. */
async function makePrivateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  if (process.platform !== 'win32') await chmod(dir, 0o700);
}

async function writeAtomic(file: string, value: Uint8Array): Promise<void> {
  const temp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    const handle = await open(temp, 'wx', 0o600);
    try {
      await handle.writeFile(value);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, file);
  } catch (err) {
    await rm(temp, { force: true }).catch(() => {});
    throw err;
  }
  // The rename itself is durable once the directory is flushed.
  await flushDir(dirname(file));
}

/** Flushes a directory's entries (a new or renamed name); not possible on Windows. */
async function flushDir(dir: string): Promise<void> {
  if (process.platform === 'win32') return;
  const dirHandle = await open(dir, 'r').catch(() => undefined);
  if (dirHandle)
    await dirHandle
      .sync()
      .catch(() => {})
      .finally(() => dirHandle.close());
}

function isCode(err: unknown, code: string): boolean {
  return (err as { code?: unknown })?.code === code;
}

/** File-system failures, without paths that might hold a user name (the cause keeps them). */
function ioError(op: string, err: unknown): SdkError {
  if (SdkError.is(err)) return err;
  const code = (err as { code?: unknown })?.code;
  return new SdkError(
    'STORE_UNAVAILABLE',
    op,
    `local store unavailable (${typeof code === 'string' ? code : 'i/o error'})`,
    {
      cause: err,
    },
  );
}

/** What {@link saveAttachment} does when a file already exists at the path. */
export type IfFileExists = 'fail' | 'replace' | 'keep-both';

/** Options of {@link saveAttachment} that concern the file. */
export interface SaveFileOptions {
  /**
   * When a file exists at the path once the attachment has verified: `fail` (the default:
   * `CONFLICT`, nothing written there), `replace` it, or `keep-both` (the attachment gets the
   * first free name of "name (1).ext", "name (2).ext", …).
   */
  readonly ifExists?: IfFileExists;
}

/** Options of {@link saveAttachment}. */
export interface SaveAttachmentOptions extends AttachmentServerOptions, SaveFileOptions {
  /** Called as plaintext is written: bytes so far, and the descriptor's size. */
  readonly onProgress?: (done: number, total: number) => void;
}

/**
 * Partial files of saves in progress. A process that exits in the middle of one (a CLI's
 * Ctrl-C ends in process.exit) deletes them on its way out: decrypted bytes are not left behind
 * in a file nobody will finish. (A kill or a crash leaves them; their names start with a dot.)
 */
const partials = new Set<string>();
let exitHookInstalled = false;

function trackPartial(path: string): void {
  partials.add(path);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const p of partials) {
      try {
        rmSync(p, { force: true });
      } catch {
        // exiting anyway
      }
    }
  });
}

/** Names tried for `keep-both` after the path itself. */
const MAX_NAME_SUFFIX = 1000;

/** Bytes a file name may have on the usual file systems (ext4, xfs, btrfs, tmpfs, APFS). */
const MAX_FILE_NAME_BYTES = 255;

/**
 * "name.ext", "name (1).ext", "name (2).ext", …; the name is cut (at a character boundary)
 * where the suffix would take it past the file system's limit.
 */
function numberedPath(path: string, n: number): string {
  if (n === 0) return path;
  const ext = extname(path);
  const dir = dirname(path);
  const name = basename(path);
  let stem = name.slice(0, name.length - ext.length);
  const suffix = ` (${n})${ext}`;
  while (stem.length > 0 && Buffer.byteLength(stem + suffix) > MAX_FILE_NAME_BYTES)
    stem = [...stem].slice(0, -1).join('');
  return join(dir, `${stem}${suffix}`);
}

/**
 * Downloads and decrypts an attachment into the file `path` (or writes the verified plaintext
 * stream of `client.conversations.download(message)` there), and returns the path it wrote.
 * The plaintext goes to a new hidden file beside it (`.<name>.<random>.partial`, mode 0600,
 * made with O_EXCL: nothing existing is opened or followed) as it is verified, and is flushed
 * and linked to `path` only once the whole stream has verified (length, SHA-256 and every
 * chunk, the final one included); on any failure it is deleted and `path` is left as it was.
 * So a file at `path` is always a complete, authentic attachment, and an existing file is
 * never replaced unless `ifExists` says so.
 *
 * @throws {SdkError} everything `downloadAndDecrypt` throws or its stream errors with
 *   (`ATTACHMENT_CORRUPT`, `NOT_FOUND`, `NETWORK`, …); `CONFLICT` when a file exists at `path`
 *   (`ifExists: 'fail'`); `STORE_UNAVAILABLE` when the file cannot be written.
 * @example
 * ```ts
 * import { saveAttachment } from '@coffer/sdk/node';
 * const saved = await saveAttachment(descriptor, './downloads/report.pdf', { server, token, ifExists: 'keep-both' });
 * ```
 */
export async function saveAttachment(
  source: AttachmentDescriptor | ReadableStream<Uint8Array>,
  path: string,
  options?: SaveAttachmentOptions | SaveFileOptions,
): Promise<string> {
  const op = 'saveAttachment';
  if (options !== undefined && (typeof options !== 'object' || options === null))
    throw new SdkError('INVALID_ARGUMENT', op, '"options" expected an object');
  if (typeof path !== 'string' || path.length === 0)
    throw new SdkError('INVALID_ARGUMENT', op, '"path" expected a file path');
  const ifExists = options?.ifExists ?? 'fail';
  if (!['fail', 'replace', 'keep-both'].includes(ifExists))
    throw new SdkError('INVALID_ARGUMENT', op, '"ifExists" expected fail, replace or keep-both');
  // A stream from `client.conversations.download(message)` is already being verified.
  let plaintext: ReadableStream<Uint8Array>;
  if (source instanceof ReadableStream) plaintext = source;
  else if (options && 'server' in options)
    plaintext = await downloadAndDecrypt({ ...options, descriptor: source });
  else throw new SdkError('INVALID_ARGUMENT', op, '"options" expected the server and token');
  const partial = join(dirname(path), partialName(basename(path)));
  const fileError = (err: unknown) => {
    const code = (err as { code?: unknown })?.code;
    return new SdkError(
      'STORE_UNAVAILABLE',
      op,
      `cannot write the attachment file (${typeof code === 'string' ? code : 'i/o error'})`,
      { cause: err },
    );
  };
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(partial, 'wx', 0o600);
  } catch (err) {
    await plaintext.cancel().catch(() => {});
    throw fileError(err);
  }
  trackPartial(partial);
  const reader = plaintext.getReader();
  let saved: string;
  try {
    for (;;) {
      const next = await reader.read();
      if (next.done) break;
      try {
        // One write() may take fewer bytes than it was given (a full disk, a file size limit)
        // without failing: the rest is written until it all is, or the next write fails.
        const chunk = next.value;
        for (let at = 0; at < chunk.length; ) {
          const { bytesWritten } = await handle.write(chunk, at, chunk.length - at);
          if (bytesWritten <= 0) throw Object.assign(new Error('short write'), { code: 'EIO' });
          at += bytesWritten;
        }
      } catch (err) {
        await reader.cancel().catch(() => {});
        throw fileError(err);
      }
    }
    try {
      await handle.sync();
      await handle.close();
    } catch (err) {
      throw fileError(err);
    }
    saved = await placeFile(op, partial, path, ifExists, fileError);
  } catch (err) {
    await handle.close().catch(() => {});
    await rm(partial, { force: true }).catch(() => {});
    partials.delete(partial);
    throw err;
  }
  await rm(partial, { force: true }).catch(() => {});
  partials.delete(partial);
  await flushDir(dirname(path));
  return saved;
}

/** Bytes of the name a hidden partial file keeps: with its 22 added it stays under 255. */
const PARTIAL_STEM_BYTES = 200;

/**
 * `.<name>.<random>.partial`, the name cut (at a character boundary) so that a name near the
 * file system's 255-byte limit still leaves room for the rest.
 */
function partialName(name: string): string {
  let stem = name;
  while (Buffer.byteLength(stem) > PARTIAL_STEM_BYTES) stem = [...stem].slice(0, -1).join('');
  return `.${stem}.${randomBytes(6).toString('hex')}.partial`;
}

/**
 * Gives the verified file at `partial` its name: a hard link, which fails when the name is
 * taken (so nothing is replaced by accident), or a rename for `replace`. Where the file system
 * has no hard links, a rename after checking the name is free.
 */
async function placeFile(
  op: string,
  partial: string,
  path: string,
  ifExists: IfFileExists,
  fileError: (err: unknown) => SdkError,
): Promise<string> {
  if (ifExists === 'replace') {
    await rename(partial, path).catch((err: unknown) => {
      throw fileError(err);
    });
    return path;
  }
  const last = ifExists === 'keep-both' ? MAX_NAME_SUFFIX : 0;
  for (let n = 0; n <= last; n++) {
    const target = numberedPath(path, n);
    try {
      await link(partial, target);
      return target;
    } catch (err) {
      if (isCode(err, 'EEXIST')) continue;
      if (!NO_HARD_LINKS.some((code) => isCode(err, code))) throw fileError(err);
    }
    // No hard links here.
    const taken = await lstat(target).then(
      () => true,
      (e: unknown) => !isCode(e, 'ENOENT'),
    );
    if (taken) continue;
    await rename(partial, target).catch((e: unknown) => {
      throw fileError(e);
    });
    return target;
  }
  throw new SdkError(
    'CONFLICT',
    op,
    ifExists === 'fail'
      ? 'a file exists at the path: nothing was written there'
      : 'no free name for the file in its directory',
  );
}
