// spec/http-api-v1.md "Signup": per-address rate limits on signup/start and signup/finish.
// signup/start must say when a name is taken, so without a limit it answers "is this name in
// use?" to anyone, faster than the user directory's own limit allows. Fixed one-hour windows,
// counted in the throttle table (ThrottleStore) under HMAC keys of the client address with
// their own prefixes (`signup-start:`, `signup-finish:`), which cannot collide with the login
// throttle's, the lookup limiter's or the claim limiter's; as there, `failures` is the window's
// count and `notBefore` the window's end.
import { hmac, utf8Encode } from '@coffer/crypto';
import type { ThrottleStore } from './storage/types.js';
import { countInWindows } from './window-limit.js';

/** The window the limits below count over. */
export const SIGNUP_WINDOW_MS = 60 * 60 * 1000;
/**
 * signup/start calls per client address per window: a person trying a few taken names stays far
 * below; probing the directory by signup gets 30 names an hour, a tenth of what an account may
 * look up in the user directory.
 */
export const SIGNUP_STARTS_PER_ADDRESS = 30;
/** signup/finish calls (accounts made) per client address per window: a household or office. */
export const SIGNUP_FINISHES_PER_ADDRESS = 10;

/** The two limits, per client address per {@link SIGNUP_WINDOW_MS}. */
export interface SignupLimits {
  readonly starts: number;
  readonly finishes: number;
}

/** The limits a server uses unless told otherwise. */
export const SIGNUP_LIMITS: SignupLimits = {
  starts: SIGNUP_STARTS_PER_ADDRESS,
  finishes: SIGNUP_FINISHES_PER_ADDRESS,
};

/** Counts signup calls per client address and refuses those over the limit. */
export interface SignupLimiter {
  /**
   * Counts one call of `step` from `address` (refused and malformed ones count too).
   *
   * @throws {ServerError} `RATE_LIMITED` (with retryAfter, seconds to the window's end).
   */
  count(step: 'start' | 'finish', address: string, op: string): Promise<void>;
}

/**
 * Creates the signup limiter over the throttle table.
 *
 * @throws {Error} when a limit is not a positive integer.
 * @example const limiter = createSignupLimiter(storage.throttle, throttleKey, Date.now);
 */
export function createSignupLimiter(
  store: ThrottleStore,
  key: Uint8Array,
  now: () => number,
  limits: SignupLimits = SIGNUP_LIMITS,
): SignupLimiter {
  for (const name of ['starts', 'finishes'] as const) {
    if (!Number.isSafeInteger(limits[name]) || limits[name] < 1)
      throw new Error(`"signupLimits.${name}" expected a positive integer`);
  }
  return {
    async count(step, address, op) {
      const limit = step === 'start' ? limits.starts : limits.finishes;
      const mac = await hmac('SHA-256', key, utf8Encode(`signup-${step}:${address}`));
      await countInWindows(store, [mac], [limit], SIGNUP_WINDOW_MS, now(), op);
    },
  };
}
