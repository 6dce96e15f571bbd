// spec/http-api-v1.md "Signup": the server picks the account id, and signup/finish accepts only
// an id signup/start issued. signup/start keeps no state, so the id carries its own proof:
//   id = r || HMAC-SHA256(key, "coffer/v1/signup-account-id" || r)[0..6]
// with r 10 random bytes: 16 bytes in all, the id format of account-v1 §1, and as random-looking
// as any other id to whoever lacks the key. 80 random bits keep ids from colliding; a forged
// tag has one chance in 2^48 per signup/finish, which is rate-limited per address.
import {
  concatBytes,
  constantTimeEqual,
  fromBase64url,
  hmac,
  randomBytes,
  toBase64url,
  utf8Encode,
} from '@coffer/crypto';

/** Bytes of an account id (account-v1 §1). */
const ID_BYTES = 16;
/** The random part: enough that ids never collide in practice. */
const RANDOM_BYTES = 10;
const LABEL = utf8Encode('coffer/v1/signup-account-id');

async function tag(key: Uint8Array, random: Uint8Array): Promise<Uint8Array> {
  const mac = await hmac('SHA-256', key, concatBytes(LABEL, random));
  return mac.subarray(0, ID_BYTES - RANDOM_BYTES);
}

/**
 * A fresh account id for signup/start, carrying a tag under `key` (the server's throttle key).
 *
 * @example const accountId = await issueAccountId(throttleKey);
 */
export async function issueAccountId(key: Uint8Array): Promise<string> {
  const random = randomBytes(RANDOM_BYTES);
  return toBase64url(concatBytes(random, await tag(key, random)));
}

/**
 * Whether `accountId` (an id already checked for shape) was issued by {@link issueAccountId}
 * under `key`. Compares in constant time; never throws for a well-formed id.
 *
 * @example if (!(await isIssuedAccountId(throttleKey, body.accountId))) throw …;
 */
export async function isIssuedAccountId(key: Uint8Array, accountId: string): Promise<boolean> {
  const bytes = fromBase64url(accountId);
  if (bytes.length !== ID_BYTES) return false;
  const expected = await tag(key, bytes.subarray(0, RANDOM_BYTES));
  return constantTimeEqual(bytes.subarray(RANDOM_BYTES), expected);
}
