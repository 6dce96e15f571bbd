/** spec §1: a username, after NFC, trimming and lowercasing. */
export const USERNAME_PATTERN = /^[a-z0-9][a-z0-9._-]{1,30}[a-z0-9]$/;
/** Input longer than this is refused before it is normalised (a username has 32 characters). */
export const MAX_USERNAME_INPUT_LENGTH = 256;

/**
 * The canonical form of a username (spec §1): Unicode NFC, trimmed, lowercased, then required to
 * match `^[a-z0-9][a-z0-9._-]{1,30}[a-z0-9]$`. Returns null for anything else (never throws), so
 * the server can answer with its own error code.
 *
 * @example normalizeUsername('  Alice.Smith ') // "alice.smith"; normalizeUsername('a') // null
 */
export function normalizeUsername(text: unknown): string | null {
  if (typeof text !== 'string' || text.length > MAX_USERNAME_INPUT_LENGTH) return null;
  const name = text.normalize('NFC').trim().toLowerCase();
  return USERNAME_PATTERN.test(name) ? name : null;
}
