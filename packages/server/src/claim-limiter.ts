// spec/http-api-v1.md "KeyPackages": rate limits on claims, against draining a target's one-time
// KeyPackages. Fixed one-hour windows, counted in the login throttle's table (ThrottleStore) under
// HMAC keys with their own prefixes (`kp-pair:`, `kp-claimer:`), which cannot collide with the
// login throttle's (`acct:`, `ip:`): one table, one cleanup story, and ThrottleStore.update
// already gives the atomic read-modify-write a counter needs on both databases. In a row,
// `failures` is the window's count and `notBefore` the window's end.
import { hmac, utf8Encode } from '@coffer/crypto';
import type { ThrottleStore } from './storage/types.js';
import { countInWindows } from './window-limit.js';

/** The window the limits below count over. */
export const CLAIM_WINDOW_MS = 60 * 60 * 1000;
/**
 * Claims of one target account by one claiming account per window: a contact's normal use is a
 * few. An account's claims of itself are not counted here (only in {@link CLAIMS_PER_CLAIMER}).
 */
export const CLAIMS_PER_TARGET = 10;
/** Claims by one account per window, over all targets: bounds what one account can drain. */
export const CLAIMS_PER_CLAIMER = 100;

/** Counts claims and refuses those over a limit. */
export interface ClaimLimiter {
  /**
   * Counts one claim of `target` by `claimer` (refused attempts count too).
   *
   * @throws {ServerError} `RATE_LIMITED` (with retryAfter, seconds to the window's end) when
   *   either limit is exceeded.
   */
  count(claimer: string, target: string, op: string): Promise<void>;
}

/**
 * Creates the claim limiter over the throttle table.
 *
 * @example const limiter = createClaimLimiter(storage.throttle, throttleKey, Date.now);
 */
export function createClaimLimiter(
  store: ThrottleStore,
  key: Uint8Array,
  now: () => number,
): ClaimLimiter {
  const mac = (text: string) => hmac('SHA-256', key, utf8Encode(text));
  return {
    async count(claimer, target, op) {
      // Account ids are b64url, so `:` separates them unambiguously.
      const claimerKey = await mac(`kp-claimer:${claimer}`);
      // An account's own claims (a device adding a newly linked one to every conversation of
      // the account, one claim each) are not a contact draining it: only the overall limit.
      if (claimer === target) {
        await countInWindows(store, [claimerKey], [CLAIMS_PER_CLAIMER], CLAIM_WINDOW_MS, now(), op);
        return;
      }
      const pairKey = await mac(`kp-pair:${claimer}:${target}`);
      await countInWindows(
        store,
        [pairKey, claimerKey],
        [CLAIMS_PER_TARGET, CLAIMS_PER_CLAIMER],
        CLAIM_WINDOW_MS,
        now(),
        op,
      );
    },
  };
}
