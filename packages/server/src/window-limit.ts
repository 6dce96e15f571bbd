// Fixed-window rate limits kept in the throttle table (ThrottleStore), shared by the lookup,
// signup and KeyPackage-claim limiters: under each key, `failures` is the current window's count
// and `notBefore` the window's end. Every call counts, refused ones included.
import { ServerError } from './errors.js';
import type { ThrottleState, ThrottleStore } from './storage/types.js';

/**
 * Counts one call against each key, in one transaction: key `i` allows `limits[i]` calls per
 * window of `windowMs` starting at its first call.
 *
 * @throws {ServerError} `RATE_LIMITED` (retryAfter: seconds to the latest end among the windows
 *   over their limit).
 * @example await countInWindows(store, [key], [300], 60 * 60 * 1000, now(), 'users.lookup');
 */
export async function countInWindows(
  store: ThrottleStore,
  keys: readonly Uint8Array[],
  limits: readonly number[],
  windowMs: number,
  t: number,
  op: string,
): Promise<void> {
  let until = 0;
  await store.update(keys, (current, i): ThrottleState => {
    if (i === 0) until = 0; // a retried transaction starts over
    const next =
      current && current.notBefore > t
        ? { failures: current.failures + 1, notBefore: current.notBefore }
        : { failures: 1, notBefore: t + windowMs };
    if (next.failures > limits[i]!) until = Math.max(until, next.notBefore);
    return next;
  });
  if (until > t) {
    throw new ServerError('RATE_LIMITED', op, undefined, {
      retryAfter: Math.max(1, Math.ceil((until - t) / 1000)),
    });
  }
}
