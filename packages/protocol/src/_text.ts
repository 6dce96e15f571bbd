// Human-readable strings inside signed or sealed formats must have exactly one byte form, so a
// name means the same thing to every reader (spec §3.1 device names).

const encoder = new TextEncoder();

// Unicode general category Cc (U+0000–U+001F, U+007F–U+009F) and, in a /u regex, lone
// surrogates (Cs), which TextEncoder would silently turn into U+FFFD.
const FORBIDDEN = /[\p{Cc}\p{Cs}]/u;

/** Byte length of `text` in UTF-8, or -1 when it is not a well-formed NFC string without controls. */
export function displayTextLength(text: unknown): number {
  if (typeof text !== 'string' || FORBIDDEN.test(text) || text.normalize('NFC') !== text) return -1;
  return encoder.encode(text).length;
}

/** True for a string that is NFC, without control characters, and 1 to `maxBytes` bytes of UTF-8. */
export function isDisplayText(text: unknown, maxBytes: number): text is string {
  // A cheap bound first, so a huge hostile string is not normalised: UTF-8 is ≥ 1 byte per unit.
  if (typeof text !== 'string' || text.length > maxBytes) return false;
  const n = displayTextLength(text);
  return n >= 1 && n <= maxBytes;
}
