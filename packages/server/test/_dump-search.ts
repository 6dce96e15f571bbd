// Searching a stolen database's bytes (and the blob directory's files) for values that must not be there, in every form a dump
// could hold them: raw UTF-8 and UTF-16, hex, and base64/base64url at each byte alignment.

import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';

const utf8 = (s: string) => Buffer.from(s, 'utf8');

/** Every byte form in which `text` could sit in a dump. */
export function forms(text: string): Array<{ readonly form: string; readonly bytes: Buffer }> {
  const raw = utf8(text);
  const out = [
    { form: 'utf-8', bytes: raw },
    { form: 'utf-16le', bytes: Buffer.from(text, 'utf16le') },
    { form: 'hex', bytes: utf8(raw.toString('hex')) },
    { form: 'HEX', bytes: utf8(raw.toString('hex').toUpperCase()) },
  ];
  // Inside a longer base64 string the text starts at any of three byte offsets; the whole
  // 3-byte groups from each offset on encode to the same characters wherever it sits.
  for (let shift = 0; shift < 3; shift++) {
    const whole = raw.subarray(shift, shift + Math.floor((raw.length - shift) / 3) * 3);
    out.push({ form: `base64+${shift}`, bytes: utf8(whole.toString('base64')) });
    out.push({ form: `base64url+${shift}`, bytes: utf8(whole.toString('base64url')) });
  }
  return out;
}

/** Which of `texts` appear in `haystack`, and in which form. */
export function foundIn(haystack: Buffer, texts: readonly string[]): string[] {
  const hits: string[] = [];
  for (const text of texts)
    for (const { form, bytes } of forms(text))
      if (haystack.includes(bytes)) hits.push(`${text} (${form})`);
  return hits;
}

/**
 * Which of `texts` appear in any file under `dir` (recursively, partial uploads included), as
 * `<relative path>: <text> (<form>)`; a missing directory holds nothing.
 */
export async function foundInDirectory(dir: string, texts: readonly string[]): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(
    (err: unknown) => {
      if ((err as { code?: unknown }).code === 'ENOENT') return [];
      throw err;
    },
  );
  const hits: string[] = [];
  for (const entry of entries) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    for (const hit of foundIn(await readFile(path), texts))
      hits.push(`${path.slice(dir.length + 1)}: ${hit}`);
  }
  return hits;
}
