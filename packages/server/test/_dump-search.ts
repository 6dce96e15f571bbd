// Searching a stolen database's bytes for values that must not be there, in every form a dump
// could hold them: raw UTF-8 and UTF-16, hex, and base64/base64url at each byte alignment.

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
