// In-process fan-out of account events to WebSocket connections (spec "Events"). One process
// only: several server processes over one PostgreSQL database each notify their own sockets
// (see README "Scaling").

/** What happened to an account. */
export type AccountEvent =
  | {
      readonly type: 'manifest';
      readonly seq: number;
      readonly revokedDeviceIds: readonly string[];
    }
  | { readonly type: 'deleted' }
  /** spec "Delivery": the queue of one of the account's devices has new entries. */
  | { readonly type: 'queue'; readonly deviceId: string };

export type AccountListener = (event: AccountEvent) => void;

/** Subscribe per account; publish after a change is committed. */
export interface EventHub {
  /** Returns the unsubscribe function. */
  subscribe(accountId: string, listener: AccountListener): () => void;
  publish(accountId: string, event: AccountEvent): void;
  /** Number of subscriptions (for tests and shutdown). */
  readonly size: number;
}

/**
 * Creates an empty hub. A listener that throws does not stop the others.
 *
 * @example const hub = createEventHub(); hub.publish(accountId, { type: 'deleted' });
 */
export function createEventHub(): EventHub {
  const byAccount = new Map<string, Set<AccountListener>>();
  let size = 0;
  return {
    subscribe(accountId, listener) {
      let set = byAccount.get(accountId);
      if (!set) {
        set = new Set();
        byAccount.set(accountId, set);
      }
      set.add(listener);
      size++;
      return () => {
        const current = byAccount.get(accountId);
        if (current?.delete(listener)) {
          size--;
          if (current.size === 0) byAccount.delete(accountId);
        }
      };
    },
    publish(accountId, event) {
      const set = byAccount.get(accountId);
      if (!set) return;
      for (const listener of [...set]) {
        try {
          listener(event);
        } catch {
          // A broken socket must not keep the others from hearing about the change.
        }
      }
    },
    get size() {
      return size;
    },
  };
}
