// File names chosen by another user (an attachment's descriptor) made safe to create in a
// directory of ours: one plain name inside that directory, never a path out of it. (That it is
// not taken is saveAttachment's part: it links the verified file to a free name.)
import { basename, dirname, join, resolve } from 'node:path';
import { unsafe as unsafeToShow } from './_format.js';

/** Longest name we create, in UTF-8 bytes (file systems allow 255; room for a " (n)" suffix). */
export const MAX_SAFE_NAME_BYTES = 200;
/**
 * Names Windows takes for devices whatever the extension, and whatever spaces end the name
 * before it ("NUL .txt" is NUL): the documented ones, their superscript-digit ports (COM¹) and
 * the console's and clock's own.
 */
const RESERVED = /^(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³]|conin\$|conout\$|clock\$)$/i;

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
  if (RESERVED.test((name.split('.')[0] ?? '').trimEnd())) name = `_${name}`;
  return name;
}

/**
 * The path of the plain file name `name` directly inside `dir`.
 *
 * @throws {Error} when `name` would not sit directly inside `dir` (defence in depth: a name from
 *   {@link safeFileName} never does).
 */
export function pathInside(dir: string, name: string): string {
  const root = resolve(dir);
  const path = join(root, name);
  if (dirname(path) !== root || basename(path) !== name) throw new Error('unsafe file name');
  return path;
}
