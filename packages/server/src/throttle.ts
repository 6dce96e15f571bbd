// spec/http-api-v1.md "Throttling": failures in a row are counted per account (per username for
// unknown names) and per client address, both under HMAC keys so neither is stored in the clear.
// From the 5th failure the next attempt waits 2^(n-5) s, capped per kind.
import { hmac, utf8Encode } from '@coffer/crypto';
import { ServerError } from './errors.js';
import type { ThrottleState, ThrottleStore } from './storage/types.js';

/** Failures allowed in a row before attempts are spaced out. */
export const FREE_FAILURES = 4;
/** Longest wait for one account: a real user is slowed, never locked out for long. */
export const ACCOUNT_MAX_DELAY_MS = 60 * 1000;
/** Longest wait for one address. */
export const ADDRESS_MAX_DELAY_MS = 15 * 60 * 1000;
/**
 * A key with no attempt for this long starts over (the sweep deletes its state): a day of quiet
 * buys an attacker 4 free attempts, less than a day of waiting at the caps gives, while names
 * and addresses tried once no longer stay in the table for good.
 */
export const THROTTLE_IDLE_MS = 24 * 60 * 60 * 1000;

/** The two throttle keys of one attempt. */
export interface ThrottleKeys {
  readonly account: Uint8Array;
  readonly address: Uint8Array;
}

/** The HMAC-keyed throttle over a ThrottleStore. */
export interface Throttle {
  keys(normalizedUsername: string, address: string): Promise<ThrottleKeys>;
  /**
   * Admits an attempt and counts it as a failure before its outcome is known, in one atomic
   * step, so attempts sent together cannot all pass one check. OPAQUE lets a client learn that
   * a password is wrong without ever finishing the login; {@link Throttle.confirm} takes the
   * count back when the attempt succeeds.
   *
   * @throws {ServerError} `RATE_LIMITED` (with retryAfter), counting nothing, while either key
   *   must wait.
   */
  admit(keys: ThrottleKeys, op: string): Promise<void>;
  /** A started attempt succeeded: clears the account's counter and takes back the address's count. */
  confirm(keys: ThrottleKeys): Promise<void>;
}

/**
 * The wait after `failures` failures in a row, in ms: 0 before the 5th, then 2^(n−5) s, capped.
 *
 * @example throttleDelay(6, ACCOUNT_MAX_DELAY_MS) // 2000
 */
export function throttleDelay(failures: number, capMs: number): number {
  if (failures <= FREE_FAILURES) return 0;
  const exponent = Math.min(failures - FREE_FAILURES - 1, 30);
  return Math.min(2 ** exponent * 1000, capMs);
}

/**
 * Creates the throttle.
 *
 * @example const throttle = createThrottle(storage.throttle, throttleKey, Date.now);
 */
export function createThrottle(
  store: ThrottleStore,
  throttleKey: Uint8Array,
  now: () => number,
): Throttle {
  const mac = (text: string) => hmac('SHA-256', throttleKey, utf8Encode(text));
  const caps = [ACCOUNT_MAX_DELAY_MS, ADDRESS_MAX_DELAY_MS];
  const bumped = (current: ThrottleState | undefined, i: number): ThrottleState => {
    const failures = (current?.failures ?? 0) + 1;
    return { failures, notBefore: now() + throttleDelay(failures, caps[i]!) };
  };
  return {
    async keys(normalizedUsername, address) {
      const [account, addr] = await Promise.all([
        mac(`acct:${normalizedUsername}`),
        mac(`ip:${address}`),
      ]);
      return { account, address: addr };
    },
    async admit(keys, op) {
      // The time is read inside the transaction: one taken before it (while waiting for the
      // lock) would be older than the notBefore an attempt just ahead of it wrote.
      let t = 0;
      let until = 0;
      // One transaction over both keys, the address last: its throw rolls back the account
      // key's count too, and the wait reported is the longer of the two.
      await store.update([keys.account, keys.address], (current, i) => {
        if (i === 0) {
          t = now();
          until = 0; // a retried transaction starts over
        }
        until = Math.max(until, current?.notBefore ?? 0);
        if (i === 1 && until > t) {
          throw new ServerError('RATE_LIMITED', op, undefined, {
            retryAfter: Math.max(1, Math.ceil((until - t) / 1000)),
          });
        }
        return bumped(current, i);
      });
    },
    async confirm(keys) {
      await store.update([keys.account, keys.address], (current, i) => {
        // The account is cleared; the address loses only the count its own attempt added, and
        // the wait that count started: a successful 5th attempt must not hold the next one back.
        const failures = i === 0 ? 0 : Math.max(0, (current?.failures ?? 1) - 1);
        if (failures === 0) return null;
        const notBefore = Math.min(
          current?.notBefore ?? 0,
          now() + throttleDelay(failures, caps[i]!),
        );
        return { failures, notBefore };
      });
    },
  };
}
