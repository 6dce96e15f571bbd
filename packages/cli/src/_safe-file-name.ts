// File names chosen by another user (an attachment's descriptor) made safe to create in a
// directory of ours: one plain name inside that directory, never a path out of it, and never a
// name that is already taken.
import { lstat, open, rm } from 'node:fs/promises';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { unsafe as unsafeToShow } from './_format.js';

/** Longest name we create, in UTF-8 bytes (file systems allow 255; room for a " (n)" suffix). */
export const MAX_SAFE_NAME_BYTES = 200;
/** Names tried with a suffix before giving up (a directory this full is a mistake). */
const MAX_SUFFIX = 1000;
/** Names Windows reserves whatever the extension. */
const RESERVED = /^(con|prn|aux|nul|com[0-9]|lpt[0-9])$/i;

/** What terminals must not see (see _format), plus zero-width marks and what Windows refuses. */
function unsafe(c: number): boolean {
  return (
    unsafeToShow(c) ||
    (c >= 0x200b && c <= 0x200f) ||
    c === 0xfeff ||
    '/\\:*?"<>|'.includes(String.fromCodePoint(c))
  );
}

/** Cuts `text` to at most `max` UTF-8 bytes without splitting a character. */
function truncateUtf8(text: string, max: number): string {
  let out = '';
  let bytes = 0;
  for (const ch of text) {
    const n = Buffer.byteLength(ch);
    if (bytes + n > max) break;
    out += ch;
    bytes += n;
  }
  return out;
}

/**
 * A single, harmless file name from an untrusted one: path separators and unsafe characters
 * become "_", runs of dots become one, leading dots and trailing dots and spaces go, and what is
 * left is cut to MAX_SAFE_NAME_BYTES. Never empty, never ".", "..", hidden or a reserved device.
 *
 * @example safeFileName('../../etc/x') // '_._etc_x'
 */
export function safeFileName(untrusted: string | undefined, fallback = 'attachment'): string {
  let name = '';
  for (const ch of (untrusted ?? '').normalize('NFC')) {
    name += unsafe(ch.codePointAt(0)!) ? '_' : ch;
  }
  name = name
    .replace(/\.{2,}/g, '.')
    .replace(/^[.\s]+/, '')
    .replace(/[.\s]+$/, '');
  name = truncateUtf8(name, MAX_SAFE_NAME_BYTES).replace(/[.\s]+$/, '');
  if (name === '') name = fallback;
  if (RESERVED.test(name.split('.')[0] ?? '')) name = `_${name}`;
  return name;
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ENOENT') return false;
    throw err;
  }
}

/** "name.ext", "name (1).ext", "name (2).ext", ... */
function candidate(name: string, n: number): string {
  if (n === 0) return name;
  const ext = extname(name);
  return `${name.slice(0, name.length - ext.length)} (${n})${ext}`;
}

/**
 * Creates an empty file for `name` in `dir` (with a " (n)" suffix when the name or its
 * ".partial" is taken) and returns its path; the file is made with O_EXCL, so two savers never
 * get the same path and nothing existing is ever opened. `release` deletes it (on failure).
 */
export async function claimFreePath(
  dir: string,
  name: string,
): Promise<{ path: string; release: () => Promise<void> }> {
  const root = resolve(dir);
  for (let n = 0; n <= MAX_SUFFIX; n++) {
    const file = candidate(name, n);
    const path = join(root, file);
    // Defence in depth: whatever the name, the file must sit directly inside the directory.
    if (dirname(path) !== root || basename(path) !== file) throw new Error('unsafe file name');
    // The download goes to "<path>.partial" first: leave someone else's alone.
    if (await exists(`${path}.partial`)) continue;
    try {
      const handle = await open(path, 'wx', 0o600);
      await handle.close();
    } catch (err) {
      if ((err as { code?: unknown }).code === 'EEXIST') continue;
      throw err;
    }
    return { path, release: () => rm(path, { force: true }) };
  }
  throw new Error(`no free name for ${name} in the directory`);
}
