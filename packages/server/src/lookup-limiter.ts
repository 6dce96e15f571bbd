// spec/http-api-v1.md "Users": a rate limit on username lookups, against enumerating the user
// directory. One fixed one-hour window per calling account, counted in the throttle table
// (ThrottleStore) under an HMAC key with its own prefix (`user-lookup:`), which cannot collide
// with the login throttle's or the claim limiter's; as there, `failures` is the window's count
// and `notBefore` the window's end.
import { hmac, utf8Encode } from '@coffer/crypto';
import type { ThrottleStore } from './storage/types.js';
import { countInWindows } from './window-limit.js';

/** The window {@link LOOKUPS_PER_ACCOUNT} counts over. */
export const LOOKUP_WINDOW_MS = 60 * 60 * 1000;
/** Lookups by one account per window: far above finding one's contacts, far below a crawl. */
export const LOOKUPS_PER_ACCOUNT = 300;

/** Counts lookups and refuses those over the limit. */
export interface LookupLimiter {
  /**
   * Counts one lookup by `accountId` (refused and failed ones count too).
   *
   * @throws {ServerError} `RATE_LIMITED` (with retryAfter, seconds to the window's end).
   */
  count(accountId: string, op: string): Promise<void>;
}

/**
 * Creates the lookup limiter over the throttle table.
 *
 * @example const limiter = createLookupLimiter(storage.throttle, throttleKey, Date.now);
 */
export function createLookupLimiter(
  store: ThrottleStore,
  key: Uint8Array,
  now: () => number,
  limit: number = LOOKUPS_PER_ACCOUNT,
): LookupLimiter {
  return {
    async count(accountId, op) {
      const mac = await hmac('SHA-256', key, utf8Encode(`user-lookup:${accountId}`));
      await countInWindows(store, [mac], [limit], LOOKUP_WINDOW_MS, now(), op);
    },
  };
}
