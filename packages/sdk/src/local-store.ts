import { SdkError } from './errors.js';

/**
 * Where a client keeps its state: a small async key-value store of opaque bytes. The SDK encrypts
 * and authenticates every record itself (see `local-state.ts`), so an implementation only has to
 * store bytes faithfully: IndexedDB in a browser, files in Node ({@link fileStore} from
 * `@coffer/sdk/node`), the platform keystore on mobile.
 *
 * Record names are short printable ASCII strings (at most {@link MAX_RECORD_NAME_LENGTH}
 * characters) such as `session` or `account/<id>`. A method may fail with whatever its platform
 * throws: the client reports it as `STORE_UNAVAILABLE`, with that error as its cause.
 *
 * @example
 * ```ts
 * const store: LocalStore = {
 *   get: async (name) => db.get('coffer', name),
 *   put: async (name, value) => db.put('coffer', value, name),
 *   delete: async (name) => db.delete('coffer', name),
 * };
 * ```
 */
export interface LocalStore {
  /** The bytes last put under `name`, or undefined. */
  get(name: string): Promise<Uint8Array | undefined>;
  /** Replaces the record atomically: a reader sees the old bytes or the new ones, never a mix. */
  put(name: string, value: Uint8Array): Promise<void>;
  /** Removes the record; no error when it does not exist. */
  delete(name: string): Promise<void>;
  /**
   * Optional. Takes the store's exclusive lock, waiting while another holder (another process
   * on the same home) has it, and resolves to its release function. The client holds it for
   * each operation, so that two processes never both read, change and write the same records
   * (two MLS states moving on from one would reuse keys). A store needs one whenever two clients
   * can have it open at once, whether in two processes, two browser tabs on one IndexedDB
   * database, or one process (each client orders only its own calls); a store only one open
   * client ever uses needs none.
   */
  lock?(operation: string): Promise<() => Promise<void>>;
}

/**
 * Record names stay short so that every store can use them as file names or keys.
 *
 * @example
 * if (name.length > MAX_RECORD_NAME_LENGTH) throw new Error('name too long');
 */
export const MAX_RECORD_NAME_LENGTH = 100;

/**
 * A {@link LocalStore} in memory: for tests, and for short-lived clients that keep nothing.
 * Values are copied in and out, so callers cannot change what is stored by accident. Its lock
 * is held in this process: two clients given one store (in one page or process) take turns, as
 * two processes on one home do, instead of both sending from one MLS state (which would reuse
 * its message keys).
 *
 * @example
 * ```ts
 * const client = createClient({ server, store: memoryStore(), storeKey: randomBytes(32) });
 * ```
 */
export function memoryStore(): LocalStore {
  const records = new Map<string, Uint8Array>();
  // The holders in turn: each waits for the one before it to release.
  let last: Promise<void> = Promise.resolve();
  return {
    async lock() {
      let release!: () => void;
      const before = last;
      last = new Promise<void>((resolve) => {
        release = resolve;
      });
      await before;
      let released = false;
      return async () => {
        if (released) return;
        released = true;
        release();
      };
    },
    async get(name) {
      checkRecordName('memoryStore.get', name);
      return records.get(name)?.slice();
    },
    async put(name, value) {
      checkRecordName('memoryStore.put', name);
      if (!(value instanceof Uint8Array)) {
        throw new SdkError('INVALID_ARGUMENT', 'memoryStore.put', '"value" expected a Uint8Array');
      }
      records.set(name, value.slice());
    },
    async delete(name) {
      checkRecordName('memoryStore.delete', name);
      records.delete(name);
    },
  };
}

/**
 * @internal Rejects names no store should have to handle.
 *
 * @example
 * checkRecordName('myStore.get', name);
 */
export function checkRecordName(operation: string, name: unknown): asserts name is string {
  if (
    typeof name !== 'string' ||
    name.length === 0 ||
    name.length > MAX_RECORD_NAME_LENGTH ||
    !/^[\x21-\x7e]+$/.test(name)
  ) {
    throw new SdkError(
      'INVALID_ARGUMENT',
      operation,
      `"name" expected 1 to ${MAX_RECORD_NAME_LENGTH} printable ASCII characters`,
    );
  }
}
