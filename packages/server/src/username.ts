import { normalizeUsername } from '@coffer/protocol';
import { ServerError } from './errors.js';

/** A username in its two forms. */
export interface Username {
  /** As typed, after NFC and trimming: what the account shows. */
  readonly display: string;
  /** After NFC, trimming and lowercasing (account-v1 §1): what identifies the account. */
  readonly normalized: string;
}

/**
 * Normalises a username (account-v1 §1: NFC, trim, lowercase) and checks it against the rules.
 *
 * @throws {ServerError} `BAD_REQUEST` when `raw` is missing or not a string; `INVALID_USERNAME`
 *   for a string outside the rules.
 * @example parseUsername('  Alice ', 'signup.start').normalized // "alice"
 */
export function parseUsername(raw: unknown, op: string): Username {
  if (typeof raw !== 'string')
    throw new ServerError('BAD_REQUEST', op, '"username" expected a string');
  const normalized = normalizeUsername(raw);
  if (normalized === null) throw new ServerError('INVALID_USERNAME', op);
  return { display: raw.normalize('NFC').trim(), normalized };
}
