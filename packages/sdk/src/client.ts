import { randomBytes, sha256, wipe } from '@coffer/crypto';
import {
  decodeManifestBody,
  type Ed25519KeyPair,
  generateKeyPair,
  generateLinkCode,
  isId,
  keyPairFromSeed,
  type LinkCode,
  newDeviceId,
  openBackup,
  openLinkRequest,
  openLinkResponse,
  ProtocolError,
  parseLinkCode,
  parseRecoveryCode,
  type RecoveryCode,
  recoveryProof,
  rewrapBackup,
  type SignedManifest,
  sealLinkRequest,
  sealLinkResponse,
  signLoginProof,
  verifyManifest,
} from '@coffer/protocol';
import { type Api, createApi, type SessionGrant } from './_api.js';
import { type ManifestChange, nextManifest, prepareSignup } from './account-steps.js';
import {
  type ConversationOptions,
  type ConversationsApi,
  createConversations,
  type WebSocketConstructor,
} from './conversations.js';
import { SdkError } from './errors.js';
import { type AccountRecord, type LocalState, openLocalState } from './local-state.js';
import type { LocalStore } from './local-store.js';
import {
  acceptChain,
  acceptHistory,
  acceptLatest,
  type ManifestState,
  requireInChain,
  requireListed,
  type VerifiedManifest,
  violation,
} from './manifest-state.js';
import {
  checkPassword,
  DEFAULT_DEVICE_NAME,
  normalizeDeviceName,
  normalizeUsername,
} from './names.js';
import {
  checkKeyStretching,
  type KeyStretching,
  type OpaqueClient,
  opaqueClient,
  PASSWORD_HASHING,
} from './password-hashing.js';
import { createTransport, type FetchLike, type Transport } from './transport.js';

/**
 * Where a client is in its life: made, opened (usable), closed (for good).
 *
 * @example
 * if (client.state !== 'ready') await client.open();
 */
export type ClientState = 'stopped' | 'ready' | 'closed';

/**
 * Options of {@link createClient}.
 *
 * @example
 * const options: ClientOptions = { server: 'https://coffer.example.com', store: memoryStore(), storeKey };
 */
export interface ClientOptions {
  /** Base URL of the Coffer server, e.g. `https://coffer.example.com`. */
  readonly server: string;
  /** Where local state lives; every record is encrypted under `storeKey`. */
  readonly store: LocalStore;
  /** 32 secret bytes that encrypt local state at rest (see `openNodeHome` for Node). */
  readonly storeKey: Uint8Array;
  /** Default: the global `fetch`. Tests pass a Hono app's `request`. */
  readonly fetch?: FetchLike;
  /** Milliseconds since the epoch; default `Date.now`. Stamps manifests and link deadlines. */
  readonly now?: () => number;
  /** Per request; default 30 s. */
  readonly timeoutMs?: number;
  /**
   * TESTING ONLY. Replaces the password-hashing parameters ({@link PASSWORD_HASHING}, Argon2id
   * 64 MiB, t = 3, p = 4) so that test suites run fast. Accounts made with other parameters
   * cannot log in with the defaults and the other way round; never set this in an app.
   */
  readonly opaque?: { readonly keyStretching?: KeyStretching };
  /** The conversations' post-compromise-security policy (defaults: 100 messages, 7 days). */
  readonly conversations?: ConversationOptions;
  /**
   * A WebSocket constructor for push in `conversations.follow` (default: the global one, in
   * browsers and Node 22+; on Node 20 pass the `ws` package's). Without one, follow polls.
   */
  readonly webSocket?: WebSocketConstructor;
}

/**
 * Who is logged in on this client.
 *
 * @example
 * const me: AccountInfo | undefined = await client.whoami();
 * if (me) console.log(`${me.username} on ${me.deviceName}`);
 */
export interface AccountInfo {
  readonly accountId: string;
  /** Normalised (NFC, trimmed, lowercase). */
  readonly username: string;
  /** This device's id. */
  readonly deviceId: string;
  readonly deviceName: string;
}

/**
 * One device of the account, as a verified manifest lists it.
 *
 * @example
 * for (const d of await client.devices.list()) console.log(d.name, d.current ? '(this device)' : '');
 */
export interface DeviceInfo {
  readonly id: string;
  readonly name: string;
  /** Milliseconds since the epoch. */
  readonly addedAt: number;
  /** Whether this is the device the client runs on. */
  readonly current: boolean;
}

/**
 * The device asking to join through a link, as its sealed request names it: what the user
 * confirms before it is added (spec account-v1 §6).
 *
 * @example
 * const ok = (r: LinkRequestInfo) => window.confirm(`Add "${r.deviceName}" to your account?`);
 */
export interface LinkRequestInfo {
  /** The name the new device gave itself (1 to 64 bytes, chosen by whoever holds the code). */
  readonly deviceName: string;
  readonly deviceId: string;
}

/**
 * Options of {@link LinkOffer.wait}.
 *
 * @example
 * await offer.wait({ onRequest: ({ deviceName }) => askUser(`Add "${deviceName}"?`) });
 */
export interface LinkWaitOptions {
  /**
   * Required. Asked once a device's request opens, before anything changes: show the user the
   * device's name and resolve to `true` only when they confirm it is the device they are
   * adding. Anything else refuses: the account is left as it was, nothing is sent to the new
   * device, the link's one request is spent, and the new device is told it was refused
   * (`LINK_REFUSED` from its `joinByLink`). Called outside the
   * home's lock, so a person may take their time (within the link's 10 minutes).
   */
  readonly onRequest: (request: LinkRequestInfo) => boolean | Promise<boolean>;
  readonly signal?: AbortSignal;
  /** How often to ask the server whether a device used the code; default 1000 ms. */
  readonly pollMs?: number;
}

/**
 * What an existing device shows to link a new one (spec account-v1 §6).
 *
 * @example
 * const offer = await client.devices.startLink();
 * showQr(offer.qr);
 * const added = await offer.wait({
 *   signal: AbortSignal.timeout(600_000),
 *   onRequest: ({ deviceName }) => confirmWithUser(deviceName),
 * });
 */
export interface LinkOffer {
  /** 24 characters in 6 groups of 4, to type on the new device. Secret until used. */
  readonly code: string;
  /** The same as a QR payload: `coffer-link:1:<24 characters>`. */
  readonly qr: string;
  /** When the server forgets the link (ms since the epoch). */
  readonly expiresAt: number;
  /**
   * Waits for the new device, asks `onRequest` to confirm it, then adds it to the account and
   * approves it. Call once.
   *
   * @throws {SdkError} `INVALID_ARGUMENT` (no `onRequest`, or a second call), `LINK_REFUSED`
   *   (`onRequest` did not confirm: nothing changed), `LINK_EXPIRED`, `ABORTED` (the signal),
   *   `NOT_READY` (client closed), `PROTOCOL_VIOLATION` (a request that does not open: someone
   *   without the code), the network codes.
   */
  wait(options: LinkWaitOptions): Promise<DeviceInfo>;
}

/**
 * Options of the calls that put a new device on the account.
 *
 * @example
 * await client.login('alice', password, { deviceName: 'work laptop' });
 */
export interface JoinOptions {
  /** Shown in device lists; default "Coffer device". 1 to 64 bytes of UTF-8. */
  readonly deviceName?: string;
}

/**
 * Options of {@link DevicesApi.joinByLink}.
 *
 * @example
 * await client.devices.joinByLink(code, { deviceName: 'phone', signal: controller.signal });
 */
export interface JoinByLinkOptions extends JoinOptions {
  readonly signal?: AbortSignal;
  /** How often to ask the server whether the link was approved; default 1000 ms. */
  readonly pollMs?: number;
}

/**
 * The account's devices, always read from a manifest this client verified.
 *
 * @example
 * const lost = (await client.devices.list()).find((d) => d.name === 'old phone');
 * if (lost) await client.devices.revoke(lost.id);
 */
export interface DevicesApi {
  /**
   * The account's devices, from the newest manifest this client verified (it fetches and
   * verifies first); sorted by when they were added.
   *
   * @throws {SdkError} `NOT_LOGGED_IN`, `DEVICE_REVOKED`, `PROTOCOL_VIOLATION`, network codes.
   * @example const devices = await client.devices.list();
   */
  list(): Promise<DeviceInfo[]>;
  /**
   * Renames a device, in a new signed manifest.
   *
   * @throws {SdkError} `INVALID_ARGUMENT` for an unknown id or a bad name; as {@link list}.
   * @example await client.devices.rename(deviceId, 'work laptop');
   */
  rename(deviceId: string, name: string): Promise<void>;
  /**
   * Removes a device: it loses its session at once and can no longer read what is sent to the
   * account. Revoking the current device logs this client out.
   *
   * @throws {SdkError} `INVALID_ARGUMENT` for an unknown id or the only device; as {@link list}.
   * @example await client.devices.revoke(lost.id);
   */
  revoke(deviceId: string): Promise<void>;
  /**
   * Makes a link code on this (logged-in) device for a new one.
   * @example const offer = await client.devices.startLink(); // show offer.code or offer.qr
   */
  startLink(): Promise<LinkOffer>;
  /**
   * Joins the account of the device that showed `code`, without the password.
   *
   * @throws {SdkError} `INVALID_LINK_CODE`, `LINK_EXPIRED`, `LINK_REFUSED` (the other device
   *   did not confirm this one), `CONFLICT` (the code was used),
   *   `ALREADY_LOGGED_IN`, `PROTOCOL_VIOLATION`, `ABORTED`, network codes.
   * @example const me = await client.devices.joinByLink('ABCD-EFGH-JKMN-PQRS-TVWX-YZ01', { deviceName: 'phone' });
   */
  joinByLink(code: string, options?: JoinByLinkOptions): Promise<AccountInfo>;
}

/**
 * A Coffer client: accounts, devices and recovery, end to end. Made by {@link createClient};
 * every method but `open` and `close` needs state `ready`, else `NOT_READY`. Calls are run
 * one at a time, in order.
 *
 * @example
 * const client: CofferClient = createClient({ server, store, storeKey });
 * await client.open();
 * const me = (await client.whoami()) ?? (await client.login('alice', password));
 */
export interface CofferClient {
  readonly state: ClientState;
  /**
   * Loads local state.
   * @throws {SdkError} `STORE_CORRUPT`, `NOT_READY` once closed.
   * @example await client.open();
   */
  open(): Promise<void>;
  /**
   * Stops pending waits and closes; the client cannot be opened again.
   * @example await client.close();
   */
  close(): Promise<void>;
  /**
   * Creates an account with this device as its first. The recovery code is shown once: the user
   * must write it down.
   *
   * @throws {SdkError} `INVALID_USERNAME`, `USERNAME_TAKEN`, `ALREADY_LOGGED_IN`,
   *   `INVALID_ARGUMENT`, `RATE_LIMITED`, network codes.
   * @example const { account, recoveryCode } = await client.signup('alice', password);
   */
  signup(
    username: string,
    password: string,
    options?: JoinOptions,
  ): Promise<{ account: AccountInfo; recoveryCode: string }>;
  /**
   * Logs in and, on a device new to the account, adds it. Reuses this home's device when the
   * account still lists it.
   *
   * @throws {SdkError} `INVALID_CREDENTIALS`, `RATE_LIMITED`, `ALREADY_LOGGED_IN`,
   *   `PROTOCOL_VIOLATION` (the server's manifests or backup do not verify), network codes.
   * @example const me = await client.login('alice', password, { deviceName: 'desktop' });
   */
  login(username: string, password: string, options?: JoinOptions): Promise<AccountInfo>;
  /**
   * Ends the session here and on the server (best effort there).
   * @example await client.logout();
   */
  logout(): Promise<void>;
  /**
   * The logged-in account, checked with the server; undefined when logged out or the session
   * has ended.
   *
   * @throws {SdkError} `DEVICE_REVOKED`, network codes.
   * @example const me = await client.whoami(); // undefined: show the login screen
   */
  whoami(): Promise<AccountInfo | undefined>;
  /**
   * Changes the password; the backup is re-wrapped and committed in a new manifest. Other
   * devices stay logged in.
   *
   * @throws {SdkError} `INVALID_CREDENTIALS` (old password), `NOT_LOGGED_IN`, `RATE_LIMITED`,
   *   `PROTOCOL_VIOLATION`, network codes.
   * @example await client.changePassword(current, next);
   */
  changePassword(oldPassword: string, newPassword: string): Promise<void>;
  /**
   * Sets a new password with the recovery code and logs this device in.
   *
   * @throws {SdkError} `INVALID_RECOVERY_CODE` (malformed), `INVALID_CREDENTIALS` (the server
   *   refused the code or username), `ALREADY_LOGGED_IN`, `PROTOCOL_VIOLATION`, network codes.
   * @example const me = await client.recover('alice', 'XXXX-XXXX-…', newPassword);
   */
  recover(
    username: string,
    recoveryCode: string,
    newPassword: string,
    options?: JoinOptions,
  ): Promise<AccountInfo>;
  /**
   * Deletes the account and everything the server keeps for it, then forgets it here.
   *
   * @throws {SdkError} `INVALID_CREDENTIALS`, `NOT_LOGGED_IN`, network codes.
   * @example await client.deleteAccount(password);
   */
  deleteAccount(password: string): Promise<void>;
  readonly devices: DevicesApi;
  /** End-to-end encrypted conversations of the logged-in account (README "Conversations"). */
  readonly conversations: ConversationsApi;
}

/**
 * Makes a client in state `stopped`; call `open()` before anything else.
 *
 * @throws {SdkError} `INVALID_ARGUMENT` for a bad server URL, store or store key.
 * @example
 * ```ts
 * import { createClient } from '@coffer/sdk';
 * import { openNodeHome } from '@coffer/sdk/node';
 *
 * const { store, storeKey } = await openNodeHome('/home/alice/.coffer');
 * const client = createClient({ server: 'https://coffer.example.com', store, storeKey });
 * await client.open();
 * const { account, recoveryCode } = await client.signup('alice', 'correct horse battery staple');
 * await client.close();
 * ```
 */
export function createClient(options: ClientOptions): CofferClient {
  const op = 'createClient';
  if (typeof options !== 'object' || options === null) {
    throw new SdkError('INVALID_ARGUMENT', op, '"options" expected an object');
  }
  const { store, storeKey } = options;
  if (
    typeof store !== 'object' ||
    store === null ||
    typeof store.get !== 'function' ||
    typeof store.put !== 'function' ||
    typeof store.delete !== 'function'
  ) {
    throw new SdkError(
      'INVALID_ARGUMENT',
      op,
      '"store" expected a LocalStore { get, put, delete }',
    );
  }
  if (!(storeKey instanceof Uint8Array) || storeKey.length !== 32) {
    throw new SdkError('INVALID_ARGUMENT', op, '"storeKey" expected 32 bytes');
  }
  if (options.now !== undefined && typeof options.now !== 'function') {
    throw new SdkError('INVALID_ARGUMENT', op, '"now" expected a function');
  }
  const keyStretching =
    options.opaque?.keyStretching === undefined
      ? PASSWORD_HASHING
      : checkKeyStretching(options.opaque.keyStretching);
  const policy = options.conversations ?? {};
  for (const [field, max] of [
    ['selfUpdateAfterMessages', 1_000_000],
    ['selfUpdateAfterMs', 365 * 24 * 3600 * 1000],
  ] as const) {
    const value = policy[field];
    if (value !== undefined && (!Number.isSafeInteger(value) || value < 1 || value > max)) {
      throw new SdkError('INVALID_ARGUMENT', op, `"conversations.${field}" expected 1 to ${max}`);
    }
  }
  const webSocket =
    options.webSocket ??
    ((globalThis as { WebSocket?: WebSocketConstructor }).WebSocket as
      | WebSocketConstructor
      | undefined);
  if (webSocket !== undefined && typeof webSocket !== 'function') {
    throw new SdkError('INVALID_ARGUMENT', op, '"webSocket" expected a WebSocket constructor');
  }
  const transport = createTransport({
    server: options.server,
    ...(options.fetch ? { fetch: options.fetch } : {}),
    ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
  });
  return new Client({
    api: createApi(transport),
    transport,
    server: options.server,
    ...(options.fetch ? { fetch: options.fetch } : {}),
    store,
    storeKey: storeKey.slice(),
    now: options.now ?? Date.now,
    keyStretching,
    conversations: policy,
    ...(webSocket ? { webSocket } : {}),
  });
}

/** Attempts before giving up when other devices keep winning manifest uploads. */
const MAX_CONFLICT_RETRIES = 5;
const DEFAULT_POLL_MS = 1000;
/** A link lives 10 minutes on the server (spec §6); a joining device waits a little longer. */
const LINK_WAIT_MS = 11 * 60 * 1000;
/** Clock skew tolerated when telling an expired session from one ended early. */
const EXPIRY_SLACK_MS = 5 * 60 * 1000;

/** The logged-in account, in memory. */
interface Current {
  readonly accountId: string;
  readonly username: string;
  readonly deviceId: string;
  readonly device: Ed25519KeyPair;
  readonly identity: Ed25519KeyPair;
  readonly token: string;
  readonly expiresAt: number;
  readonly manifest: VerifiedManifest;
}

interface ClientParts {
  readonly api: Api;
  readonly transport: Transport;
  readonly server: string;
  readonly fetch?: FetchLike;
  readonly store: LocalStore;
  readonly storeKey: Uint8Array;
  readonly now: () => number;
  readonly keyStretching: KeyStretching;
  readonly conversations: ConversationOptions;
  readonly webSocket?: WebSocketConstructor;
}

class Client implements CofferClient {
  readonly devices: DevicesApi;
  readonly conversations: ConversationsApi;
  #state: ClientState = 'stopped';
  #local: LocalState | undefined;
  #current: Current | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  readonly #closing = new AbortController();
  readonly #api: Api;
  readonly #parts: ClientParts;
  readonly #opaque: OpaqueClient;
  #operation = 'client';

  constructor(parts: ClientParts) {
    this.#parts = parts;
    this.#api = parts.api;
    this.#opaque = opaqueClient(parts.keyStretching, () => this.#operation);
    this.devices = {
      list: () => this.#run('devices.list', () => this.#listDevices()),
      rename: (deviceId, name) => this.#run('devices.rename', () => this.#rename(deviceId, name)),
      revoke: (deviceId) => this.#run('devices.revoke', () => this.#revoke(deviceId)),
      startLink: () => this.#run('devices.startLink', () => this.#startLink()),
      joinByLink: (code, options) =>
        this.#run('devices.joinByLink', () => this.#joinByLink(code, options)),
    };
    this.conversations = createConversations(
      {
        session: () => {
          const c = this.#requireLoggedIn();
          return {
            accountId: c.accountId,
            username: c.username,
            deviceId: c.deviceId,
            device: c.device,
            token: c.token,
          };
        },
        ownManifest: async (fresh) =>
          (fresh ? await this.#refresh() : this.#requireLoggedIn()).manifest.body,
        transport: parts.transport,
        ...(parts.webSocket ? { webSocket: parts.webSocket } : {}),
        blobs: () => ({
          server: parts.server,
          token: this.#requireLoggedIn().token,
          ...(parts.fetch ? { fetch: parts.fetch } : {}),
        }),
        readRecord: (name) => this.#localState().readRecord(name),
        writeRecord: (name, fields) => this.#localState().writeRecord(name, fields),
        deleteRecord: (name) => this.#localState().deleteRecord(name),
        now: () => this.#parts.now(),
        closing: this.#closing.signal,
      },
      (op, fn) => this.#run(op, fn),
      parts.conversations,
    );
  }

  get state(): ClientState {
    return this.#state;
  }

  async open(): Promise<void> {
    const op = 'client.open';
    if (this.#state === 'ready') return;
    if (this.#state === 'closed') throw new SdkError('NOT_READY', op, 'the client is closed');
    const local = await openLocalState(this.#parts.store, this.#parts.storeKey);
    const current = await this.#load(op, local);
    // close() may have run while loading.
    if ((this.#state as ClientState) === 'closed') {
      throw new SdkError('NOT_READY', op, 'the client is closed');
    }
    this.#local = local;
    this.#current = current;
    this.#state = 'ready';
  }

  async close(): Promise<void> {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    this.#closing.abort();
    await this.#queue.catch(() => {});
    // Best effort: JavaScript cannot promise the bytes are gone (README "What is stored").
    const current = this.#current;
    if (current) wipe(current.identity.seed, current.device.seed);
    wipe(this.#parts.storeKey);
    this.#current = undefined;
    this.#local = undefined;
  }

  signup(username: string, password: string, options?: JoinOptions) {
    return this.#run('client.signup', () => this.#signup(username, password, options));
  }

  login(username: string, password: string, options?: JoinOptions) {
    return this.#run('client.login', () => this.#login(username, password, options));
  }

  logout() {
    return this.#run('client.logout', () => this.#logout());
  }

  whoami() {
    return this.#run('client.whoami', () => this.#whoami());
  }

  changePassword(oldPassword: string, newPassword: string) {
    return this.#run('client.changePassword', () => this.#changePassword(oldPassword, newPassword));
  }

  recover(username: string, recoveryCode: string, newPassword: string, options?: JoinOptions) {
    return this.#run('client.recover', () =>
      this.#recover(username, recoveryCode, newPassword, options),
    );
  }

  deleteAccount(password: string) {
    return this.#run('client.deleteAccount', () => this.#deleteAccount(password));
  }

  // --- lifecycle and plumbing ---

  /** Runs `fn` after every earlier call, in state `ready`. */
  #run<T>(operation: string, fn: () => Promise<T>): Promise<T> {
    const notReady = () =>
      new SdkError(
        'NOT_READY',
        operation,
        this.#state === 'closed' ? 'the client is closed' : 'call open() first',
      );
    if (this.#state !== 'ready') return Promise.reject(notReady());
    const result = this.#queue.then(async () => {
      if (this.#state !== 'ready') throw notReady();
      this.#operation = operation;
      // Another process on the same home waits for this operation to finish, and we for its.
      const release = await this.#parts.store.lock?.(operation);
      try {
        await this.#syncSession(operation);
        return await fn();
      } catch (err) {
        // One error class leaves the SDK: a protocol or crypto failure that no step mapped
        // came from checking what the server sent (caller input is checked up front).
        const name = (err as { name?: unknown } | null)?.name;
        if (ProtocolError.is(err) || name === 'CryptoError') throw violation(operation, err);
        throw err;
      } finally {
        await release?.();
      }
    });
    this.#queue = result.catch(() => {});
    return result;
  }

  get #op(): string {
    return this.#operation;
  }

  #localState(): LocalState {
    if (!this.#local) throw new SdkError('NOT_READY', this.#op, 'call open() first');
    return this.#local;
  }

  async #load(op: string, local: LocalState): Promise<Current | undefined> {
    const session = await local.readSession();
    if (!session) return undefined;
    const corrupt = () => new SdkError('STORE_CORRUPT', op, 'the session record has no account');
    const account = await local.readAccount(session.accountId);
    if (!account?.manifest) throw corrupt();
    let manifest: VerifiedManifest;
    try {
      manifest = await acceptChain(
        { accountId: account.accountId, trusted: account.manifest },
        [],
        op,
      );
    } catch (err) {
      throw new SdkError('STORE_CORRUPT', op, 'the stored manifest does not verify', {
        cause: err,
      });
    }
    const identity = await keyPairFromSeed(session.identitySeed);
    const device = await keyPairFromSeed(account.deviceSeed);
    if (!bytesEqual(identity.publicKey, manifest.body.identityKey)) {
      throw new SdkError('STORE_CORRUPT', op, 'the stored identity does not match the manifest');
    }
    return {
      accountId: account.accountId,
      username: account.username,
      deviceId: account.deviceId,
      device,
      identity,
      token: session.token,
      expiresAt: session.expiresAt,
      manifest,
    };
  }

  #requireLoggedIn(): Current {
    if (!this.#current) throw new SdkError('NOT_LOGGED_IN', this.#op, 'no account is logged in');
    return this.#current;
  }

  #requireLoggedOut(): void {
    if (this.#current) {
      throw new SdkError(
        'ALREADY_LOGGED_IN',
        this.#op,
        'an account is already logged in; log out first',
      );
    }
  }

  /** Saves `current` (account record, then session) and makes it the client's. */
  async #adopt(current: Current): Promise<void> {
    const local = this.#localState();
    await local.writeAccount(accountRecord(current));
    await local.writeSession({
      accountId: current.accountId,
      token: current.token,
      expiresAt: current.expiresAt,
      identitySeed: current.identity.seed,
    });
    this.#current = current;
  }

  /** Forgets the session here (the account record and its trusted manifest stay). */
  async #endSession(): Promise<void> {
    this.#current = undefined;
    await this.#localState().deleteSession();
  }

  /**
   * Another process on this home may have logged in or out, or changed the password (a new
   * token), since this client last looked: the stored session is the truth, and this client
   * follows it. Runs under the home's lock at the start of every operation.
   */
  async #syncSession(op: string): Promise<void> {
    const local = this.#localState();
    const stored = await local.readSession();
    const current = this.#current;
    if (!stored && !current) return;
    if (stored && current && stored.accountId === current.accountId) {
      if (sameToken(stored.token, current.token)) return;
    }
    this.#current = stored ? await this.#load(op, local) : undefined;
  }

  /**
   * Runs an authenticated call; a dead session becomes DEVICE_REVOKED or NOT_LOGGED_IN. When
   * another process on this home replaced the token meanwhile (a store without a lock, or a
   * call outside an operation such as a link's wait), the call is retried once with the stored
   * token.
   */
  async #authed<T>(current: Current, fn: (token: string) => Promise<T>): Promise<T> {
    let token = current.token;
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn(token);
      } catch (err) {
        if (!(SdkError.is(err, 'NOT_LOGGED_IN') && err.status === 401)) throw err;
        const next = await this.#sessionEnded(current, token, err, attempt === 0);
        if (typeof next !== 'string') throw next;
        token = next;
      }
    }
  }

  /**
   * The server rejected `rejected`, a token of `current`. The stored session says what
   * happened (spec "Devices"):
   *
   * - it holds another token of the same device: another process on this home logged in again
   *   or changed the password (which ends the old token). This client takes the stored session
   *   and the call is retried once with it (the token is returned).
   * - it is gone, or of another account or device: another process logged out (or in as someone
   *   else). This client follows the home: NOT_LOGGED_IN, and the stored record is left alone.
   * - it still holds the rejected token: the server ended this device's session. Sessions end
   *   early only by logout (which clears the stored session first), account deletion or
   *   revocation (the sessions of removed devices are deleted), so one rejected well before its
   *   expiry is reported as DEVICE_REVOKED, one near or past its expiry as NOT_LOGGED_IN; the
   *   stored session is deleted either way. No manifest is read to tell which: the server
   *   serves manifests only to a session, which is exactly what we no longer have.
   *
   * A session being made (a login before it is stored) touches nothing stored. A server that
   * lies here can only log us out, which it can do anyway.
   */
  async #sessionEnded(
    current: Current,
    rejected: string,
    cause: SdkError,
    mayRetry: boolean,
  ): Promise<SdkError | string> {
    const op = this.#op;
    const ended = () =>
      new SdkError('NOT_LOGGED_IN', op, 'the session has ended; log in again', { cause });
    const mine = this.#current !== undefined && this.#isCurrent(current);
    if (mine) {
      const local = this.#localState();
      const stored = await local.readSession();
      if (!stored) {
        this.#current = undefined;
        return ended();
      }
      if (!sameToken(stored.token, rejected)) {
        const reloaded = await this.#load(op, local);
        this.#current = reloaded;
        const same =
          reloaded?.accountId === current.accountId && reloaded.deviceId === current.deviceId;
        return same && mayRetry ? reloaded.token : ended();
      }
      await this.#endSession();
    }
    const early = current.expiresAt - EXPIRY_SLACK_MS > this.#parts.now();
    if (!early) return ended();
    return new SdkError(
      'DEVICE_REVOKED',
      op,
      `the server ended the session of device ${current.deviceId} before it expired: the device was removed or the account deleted`,
      { cause, detail: 'SESSION_ENDED' },
    );
  }

  async #saveManifest(current: Current, manifest: VerifiedManifest): Promise<void> {
    await this.#localState().writeAccount(accountRecord({ ...current, manifest }));
  }

  /**
   * The account's newest manifest, verified against `state` (spec §3.3): the server's newest if
   * it follows directly, else the history after the trusted one (or from seq 1).
   */
  async #fetchVerified(token: string, state: ManifestState): Promise<VerifiedManifest> {
    const op = this.#op;
    const latest = await this.#api.getManifest(op, token);
    const direct = await acceptLatest(state, latest, op);
    if (direct !== 'gap') return direct;
    const after = state.trusted ? decodeManifestBody(state.trusted.body).seq : 0;
    const history = await this.#api.manifestHistory(op, token, after);
    return acceptChain(state, history, op);
  }

  /**
   * Brings an account's manifest up to date (the logged-in one by default); DEVICE_REVOKED when
   * it leaves this device out, unless `joining` (a login still adding this device).
   */
  async #refresh(current: Current = this.#requireLoggedIn(), joining = false): Promise<Current> {
    const verified = await this.#authed(current, (token) =>
      this.#fetchVerified(token, {
        accountId: current.accountId,
        trusted: current.manifest.manifest,
      }),
    );
    return this.#useManifest(current, verified, joining);
  }

  /** Records a newer verified manifest; ends the session when it leaves this device out. */
  async #useManifest(
    current: Current,
    verified: VerifiedManifest,
    joining: boolean,
  ): Promise<Current> {
    if (verified.body.seq === current.manifest.body.seq) return current;
    if (!joining) {
      try {
        requireListed(verified.body, current.deviceId, current.device.publicKey, this.#op);
      } catch (err) {
        if (SdkError.is(err, 'DEVICE_REVOKED')) {
          await this.#saveManifest(current, verified);
          if (this.#isCurrent(current)) await this.#endSession();
        }
        throw err;
      }
    }
    const next = { ...current, manifest: verified };
    await this.#saveManifest(next, verified);
    if (this.#isCurrent(current)) this.#current = next;
    return next;
  }

  /** Whether `c` is the logged-in account (not one still being logged in). */
  #isCurrent(c: Current): boolean {
    return this.#current?.accountId === c.accountId && this.#current.deviceId === c.deviceId;
  }

  /**
   * Signs and uploads the manifest after the current one with `change` applied; when another
   * device won the race, refetches, re-applies and retries. `joining`: this device is the one
   * being added (a login), so it is not listed yet.
   */
  async #commit(
    current: Current,
    change: (c: Current) => ManifestChange,
    joining = false,
  ): Promise<Current> {
    const op = this.#op;
    let cur = current;
    for (let attempt = 0; ; attempt++) {
      const next = await nextManifest(
        cur.identity,
        cur.manifest.manifest,
        cur.manifest.body,
        change(cur),
        this.#parts.now(),
        op,
      );
      try {
        await this.#authed(cur, (token) => this.#api.putManifest(op, token, next.manifest));
      } catch (err) {
        if (isManifestConflict(err) && attempt < MAX_CONFLICT_RETRIES) {
          cur = await this.#refresh(cur, joining);
          continue;
        }
        throw err;
      }
      // Our own upload: trusted by construction. Sessions of removed devices are gone now.
      const updated = { ...cur, manifest: next };
      await this.#saveManifest(updated, next);
      if (this.#isCurrent(cur)) {
        if (next.body.devices.some((d) => d.id === cur.deviceId)) this.#current = updated;
        else await this.#endSession();
      }
      return updated;
    }
  }

  /** Ends a session we made but will not use (a failed login): best effort. */
  async #discardToken(token: string): Promise<void> {
    try {
      await this.#api.logout(this.#op, token);
    } catch {
      // The token is not stored anywhere; it dies with its expiry.
    }
  }

  /**
   * Proves the password again for the logged-in account: a fresh session (recent `authAt`) and
   * the export key. The older token is ended.
   */
  async #prove(
    current: Current,
    password: string,
  ): Promise<{ current: Current; exportKey: Uint8Array }> {
    const op = this.#op;
    const start = await this.#opaque.startLogin(password);
    const ls = await this.#api.loginStart(op, {
      username: current.username,
      startLoginRequest: start.request,
    });
    const finish = await this.#opaque.finishLogin(password, start.state, ls.loginResponse);
    if (!finish) throw new SdkError('INVALID_CREDENTIALS', op, 'wrong password');
    const grant = await this.#api.loginFinish(op, {
      loginId: ls.loginId,
      finishLoginRequest: finish.request,
      deviceId: current.deviceId,
      deviceProof: await loginProof(op, current.device, ls.loginId, current.deviceId, finish),
    });
    if (grant.accountId !== current.accountId) {
      await this.#discardToken(grant.token);
      throw new SdkError('PROTOCOL_VIOLATION', op, 'the server logged in another account', {
        detail: 'ACCOUNT_MISMATCH',
      });
    }
    const next = { ...current, token: grant.token, expiresAt: grant.expiresAt };
    await this.#adopt(next);
    await this.#discardToken(current.token);
    return { current: next, exportKey: finish.exportKey };
  }

  /** The device this home uses for `username`: its id, and its key when the manifest lists it. */
  async #homeDevice(username: string): Promise<AccountRecord | undefined> {
    return this.#localState().findAccount(username);
  }

  /**
   * This home's device entry for an account whose verified manifest is `body`: the stored key
   * when the manifest lists it, a fresh key otherwise (a device that was revoked comes back with
   * a new key).
   */
  async #deviceFor(
    known: AccountRecord | undefined,
    deviceId: string,
    verified: VerifiedManifest,
  ): Promise<{ device: Ed25519KeyPair; listed: boolean }> {
    const entry = verified.body.devices.find((d) => d.id === deviceId);
    if (known && known.deviceId === deviceId) {
      const device = await keyPairFromSeed(known.deviceSeed);
      if (entry && bytesEqual(entry.signingKey, device.publicKey)) return { device, listed: true };
    }
    return { device: await generateKeyPair(), listed: false };
  }

  // --- account operations ---

  async #signup(username: string, password: string, given: JoinOptions | undefined) {
    const op = this.#op;
    const options = checkOptions<JoinOptions>(op, given);
    this.#requireLoggedOut();
    const name = normalizeUsername(username, op);
    checkPassword(op, 'password', password);
    const deviceName = normalizeDeviceName(options.deviceName ?? DEFAULT_DEVICE_NAME, op);
    const reg = await this.#opaque.startRegistration(password);
    const start = await this.#api.signupStart(op, {
      username: name,
      registrationRequest: reg.request,
    });
    if (!isId(start.accountId)) {
      throw new SdkError('PROTOCOL_VIOLATION', op, 'the server chose a malformed account id');
    }
    const finish = await this.#opaque.finishRegistration(
      password,
      reg.state,
      start.registrationResponse,
    );
    const bundle = await prepareSignup({
      accountId: start.accountId,
      exportKey: finish.exportKey,
      deviceName,
      now: this.#parts.now(),
    });
    wipe(finish.exportKey);
    const grant = await this.#api.signupFinish(op, {
      username: name,
      accountId: start.accountId,
      registrationRecord: finish.record,
      deviceId: bundle.deviceId,
      manifest: bundle.manifest,
      backup: bundle.backup.backup,
      recoveryVerifier: bundle.recoveryVerifier,
    });
    const current: Current = {
      accountId: start.accountId,
      username: name,
      deviceId: bundle.deviceId,
      device: bundle.device,
      identity: bundle.identity,
      token: grant.token,
      expiresAt: grant.expiresAt,
      manifest: { manifest: bundle.manifest, body: bundle.body },
    };
    await this.#adopt(current);
    return { account: accountInfo(current), recoveryCode: bundle.recoveryCode.text };
  }

  async #login(
    username: string,
    password: string,
    given: JoinOptions | undefined,
  ): Promise<AccountInfo> {
    const op = this.#op;
    const options = checkOptions<JoinOptions>(op, given);
    this.#requireLoggedOut();
    const name = normalizeUsername(username, op);
    checkPassword(op, 'password', password);
    const deviceName = normalizeDeviceName(options.deviceName ?? DEFAULT_DEVICE_NAME, op);
    const known = await this.#homeDevice(name);
    const deviceId = known?.deviceId ?? newDeviceId();

    const start = await this.#opaque.startLogin(password);
    const ls = await this.#api.loginStart(op, { username: name, startLoginRequest: start.request });
    const finish = await this.#opaque.finishLogin(password, start.state, ls.loginResponse);
    if (!finish) throw new SdkError('INVALID_CREDENTIALS', op, 'wrong username or password');
    // A device this home already has a key for proves it (the server requires that when the
    // manifest lists the device, and ignores it otherwise); a brand-new device has nothing to prove.
    const device =
      known?.deviceId === deviceId ? await keyPairFromSeed(known.deviceSeed) : undefined;
    const deviceProof = await loginProof(op, device, ls.loginId, deviceId, finish);
    const grant = await this.#api.loginFinish(op, {
      loginId: ls.loginId,
      finishLoginRequest: finish.request,
      deviceId,
      ...(deviceProof ? { deviceProof } : {}),
    });
    try {
      if (!isId(grant.accountId)) {
        throw new SdkError('PROTOCOL_VIOLATION', op, 'the server sent a malformed account id');
      }
      return await this.#enterWithPassword({
        accountId: grant.accountId,
        username: name,
        grant,
        exportKey: finish.exportKey,
        known,
        deviceId,
        deviceName,
      });
    } catch (err) {
      if (!this.#current) await this.#discardToken(grant.token);
      throw err;
    } finally {
      wipe(finish.exportKey);
    }
  }

  /** After a password login: verify the manifests, open the backup, join with this device. */
  async #enterWithPassword(p: {
    accountId: string;
    username: string;
    grant: SessionGrant;
    exportKey: Uint8Array;
    known: AccountRecord | undefined;
    deviceId: string;
    deviceName: string;
  }): Promise<AccountInfo> {
    const op = this.#op;
    const { accountId, grant } = p;
    const earlier = await this.#localState().readAccount(accountId);
    // The whole chain from seq 1 (or from what this home verified before): no identity key is
    // pinned yet; the backup pins it below, because only the password opens it.
    const verified = await this.#fetchVerified(grant.token, {
      accountId,
      ...(earlier?.manifest ? { trusted: earlier.manifest } : {}),
    });
    const { backup } = await this.#api.getBackup(op, grant.token);
    let identity: Ed25519KeyPair;
    try {
      const secrets = await openBackup(backup, { manifest: verified.body, exportKey: p.exportKey });
      identity = await keyPairFromSeed(secrets.identitySeed);
      wipe(secrets.identitySeed);
    } catch (err) {
      throw violation(op, err);
    }
    const { device, listed } = await this.#deviceFor(p.known, p.deviceId, verified);
    let current: Current = {
      accountId,
      username: p.username,
      deviceId: p.deviceId,
      device,
      identity,
      token: grant.token,
      expiresAt: grant.expiresAt,
      manifest: verified,
    };
    if (!listed) {
      // The key is on the home before the manifest listing it leaves for the server: a crash
      // or a failed write after the upload must not leave the account listing a device whose
      // key no one holds (the next login finds it here and proves it instead of adding another).
      await this.#localState().writeAccount(accountRecord(current));
      current = await this.#commit(
        current,
        () => ({
          add: {
            id: p.deviceId,
            signingKey: device.publicKey,
            name: p.deviceName,
            addedAt: this.#parts.now(),
          },
        }),
        true,
      );
    }
    await this.#adopt(current);
    return accountInfo(current);
  }

  async #logout(): Promise<void> {
    const current = this.#requireLoggedIn();
    await this.#endSession();
    // The session is gone here whatever the server says; a token the server did not hear about
    // is stored nowhere and expires on its own.
    await this.#discardToken(current.token);
  }

  async #whoami(): Promise<AccountInfo | undefined> {
    const op = this.#op;
    const current = this.#current;
    if (!current) return undefined;
    let session: Awaited<ReturnType<Api['session']>>;
    try {
      session = await this.#authed(current, (token) => this.#api.session(op, token));
    } catch (err) {
      if (SdkError.is(err, 'NOT_LOGGED_IN')) return undefined;
      throw err;
    }
    if (session.accountId !== current.accountId || session.deviceId !== current.deviceId) {
      throw new SdkError('PROTOCOL_VIOLATION', op, 'the server describes another session', {
        detail: 'ACCOUNT_MISMATCH',
      });
    }
    return accountInfo(current);
  }

  async #changePassword(oldPassword: string, newPassword: string): Promise<void> {
    const op = this.#op;
    let current = this.#requireLoggedIn();
    checkPassword(op, 'oldPassword', oldPassword);
    checkPassword(op, 'newPassword', newPassword);
    const proved = await this.#prove(current, oldPassword);
    current = proved.current;
    try {
      const reg = await this.#opaque.startRegistration(newPassword);
      const { registrationResponse } = await this.#authed(current, (token) =>
        this.#api.passwordStart(op, token, { registrationRequest: reg.request }),
      );
      const finish = await this.#opaque.finishRegistration(
        newPassword,
        reg.state,
        registrationResponse,
      );
      try {
        for (let attempt = 0; ; attempt++) {
          current = await this.#refresh();
          const { backup } = await this.#authed(current, (token) => this.#api.getBackup(op, token));
          const sealed = await guardProtocol(op, () =>
            rewrapBackup(backup, {
              manifest: current.manifest.body,
              exportKey: proved.exportKey,
              newExportKey: finish.exportKey,
            }),
          );
          wipe(sealed.secrets.identitySeed);
          const next = await nextManifest(
            current.identity,
            current.manifest.manifest,
            current.manifest.body,
            { backup: { version: sealed.version, hash: sealed.hash } },
            this.#parts.now(),
            op,
          );
          let grant: SessionGrant;
          try {
            grant = await this.#authed(current, (token) =>
              this.#api.passwordFinish(op, token, {
                registrationRecord: finish.record,
                manifest: next.manifest,
                backup: sealed.backup,
              }),
            );
          } catch (err) {
            if (isManifestConflict(err) && attempt < MAX_CONFLICT_RETRIES) continue;
            throw err;
          }
          current = { ...current, token: grant.token, expiresAt: grant.expiresAt, manifest: next };
          await this.#adopt(current);
          return;
        }
      } finally {
        wipe(finish.exportKey);
      }
    } finally {
      wipe(proved.exportKey);
    }
  }

  async #recover(
    username: string,
    codeText: string,
    newPassword: string,
    given: JoinOptions | undefined,
  ): Promise<AccountInfo> {
    const op = this.#op;
    const options = checkOptions<JoinOptions>(op, given);
    this.#requireLoggedOut();
    const name = normalizeUsername(username, op);
    const code = parseCode(op, codeText);
    checkPassword(op, 'newPassword', newPassword);
    const deviceName = normalizeDeviceName(options.deviceName ?? DEFAULT_DEVICE_NAME, op);
    const known = await this.#homeDevice(name);
    const deviceId = known?.deviceId ?? newDeviceId();
    const proof = await recoveryProof(code);
    const reg = await this.#opaque.startRegistration(newPassword);

    for (let attempt = 0; ; attempt++) {
      const r = await this.#api.recoverStart(op, { username: name, proof });
      if (!isId(r.accountId)) {
        throw new SdkError('PROTOCOL_VIOLATION', op, 'the server sent a malformed account id');
      }
      const earlier = await this.#localState().readAccount(r.accountId);
      const verified = await this.#verifyRecovered(r.accountId, r.manifest, earlier?.manifest);
      // spec §5.4: the backup must be the one this manifest commits to before the code opens it;
      // the seed then has to be the manifest's identity, which authenticates the identity key.
      const secrets = await guardProtocol(op, () =>
        openBackup(r.backup, { manifest: verified.body, recoveryCode: code }),
      );
      const identity = await keyPairFromSeed(secrets.identitySeed);
      wipe(secrets.identitySeed);
      const { device, listed } = await this.#deviceFor(known, deviceId, verified);

      const { registrationResponse } = await this.#api.passwordStart(op, r.recoveryToken, {
        registrationRequest: reg.request,
      });
      const finish = await this.#opaque.finishRegistration(
        newPassword,
        reg.state,
        registrationResponse,
      );
      if (!listed) {
        // As in a login: the new key is kept before a manifest listing it is uploaded. What
        // this home trusted stays as it was until the server's history has been checked.
        await this.#localState().writeAccount({
          accountId: r.accountId,
          username: name,
          deviceId,
          deviceSeed: device.seed,
          ...(earlier?.manifest ? { manifest: earlier.manifest } : {}),
        });
      }
      let next: VerifiedManifest;
      let grant: SessionGrant;
      try {
        const sealed = await guardProtocol(op, () =>
          rewrapBackup(r.backup, {
            manifest: verified.body,
            recoveryCode: code,
            newExportKey: finish.exportKey,
          }),
        );
        wipe(sealed.secrets.identitySeed);
        next = await nextManifest(
          identity,
          verified.manifest,
          verified.body,
          {
            ...(listed
              ? {}
              : {
                  add: {
                    id: deviceId,
                    signingKey: device.publicKey,
                    name: deviceName,
                    addedAt: this.#parts.now(),
                  },
                }),
            backup: { version: sealed.version, hash: sealed.hash },
          },
          this.#parts.now(),
          op,
        );
        try {
          grant = await this.#api.passwordFinish(op, r.recoveryToken, {
            registrationRecord: finish.record,
            manifest: next.manifest,
            backup: sealed.backup,
            deviceId,
          });
        } catch (err) {
          if (isManifestConflict(err) && attempt < MAX_CONFLICT_RETRIES) continue;
          throw err;
        }
      } finally {
        wipe(finish.exportKey);
      }

      // With a session now: the server's history from seq 1 must verify and hold what we built
      // on (and what this home trusted before), so a fresh home is not shown a detached manifest.
      try {
        const history = await this.#api.manifestHistory(op, grant.token, 0);
        const chain = await acceptHistory({ accountId: r.accountId }, history, op);
        requireInChain(chain, next, op);
        if (earlier?.manifest) {
          requireInChain(
            chain,
            { manifest: earlier.manifest, body: decodeManifestBody(earlier.manifest.body) },
            op,
          );
        }
        const newest = chain[chain.length - 1]!;
        requireListed(newest.body, deviceId, device.publicKey, op);
        const current: Current = {
          accountId: r.accountId,
          username: name,
          deviceId,
          device,
          identity,
          token: grant.token,
          expiresAt: grant.expiresAt,
          manifest: newest,
        };
        await this.#adopt(current);
        return accountInfo(current);
      } catch (err) {
        if (!this.#current) await this.#discardToken(grant.token);
        throw err;
      }
    }
  }

  /**
   * The manifest a recovery answer carries (no session yet, so no history): against what this
   * home trusted, if anything; else on its own, under its own identity key, which the backup
   * then has to confirm.
   */
  async #verifyRecovered(
    accountId: string,
    manifest: SignedManifest,
    trusted: SignedManifest | undefined,
  ): Promise<VerifiedManifest> {
    const op = this.#op;
    return guardProtocol(op, async () => {
      if (trusted) {
        const direct = await acceptLatest({ accountId, trusted }, manifest, op);
        if (direct !== 'gap') return direct;
      }
      // A gap (checked once the history is available) or nothing trusted: pin the identity
      // this manifest claims, or the trusted one, and check the signature.
      const claimed = trusted
        ? decodeManifestBody(trusted.body).identityKey
        : decodeManifestBody(manifest.body).identityKey;
      const body = await verifyManifest(manifest, { accountId, identityKey: claimed });
      return { manifest, body };
    });
  }

  async #deleteAccount(password: string): Promise<void> {
    const op = this.#op;
    let current = this.#requireLoggedIn();
    checkPassword(op, 'password', password);
    const proved = await this.#prove(current, password);
    wipe(proved.exportKey);
    current = proved.current;
    await this.#authed(current, (token) => this.#api.deleteAccount(op, token));
    this.#current = undefined;
    await this.#localState().deleteSession();
    await this.#localState().forgetAccount(current.accountId);
  }

  // --- devices ---

  async #listDevices(): Promise<DeviceInfo[]> {
    const current = await this.#refresh();
    return deviceList(current);
  }

  async #rename(deviceId: string, name: string): Promise<void> {
    const op = this.#op;
    checkId(op, deviceId);
    const deviceName = normalizeDeviceName(name, op);
    const current = await this.#refresh();
    await this.#commit(current, () => ({ rename: { id: deviceId, name: deviceName } }));
  }

  async #revoke(deviceId: string): Promise<void> {
    const op = this.#op;
    checkId(op, deviceId);
    const current = await this.#refresh();
    await this.#commit(current, () => ({ remove: deviceId }));
  }

  async #startLink(): Promise<LinkOffer> {
    const op = this.#op;
    const current = await this.#refresh();
    let code: LinkCode | undefined;
    let expiresAt = 0;
    for (let attempt = 0; !code; attempt++) {
      const candidate = generateLinkCode();
      try {
        ({ expiresAt } = await this.#authed(current, (token) =>
          this.#api.createLink(op, token, candidate.linkId),
        ));
        code = candidate;
      } catch (err) {
        // 40 bits of link id: a clash with a live link is rare, twice in a row rarer still.
        if (SdkError.is(err, 'CONFLICT') && attempt < 3) continue;
        throw err;
      }
    }
    const linkCode = code;
    // spec §6: a link lives 10 minutes. The server's expiry is its word; a wait never runs past
    // the spec's lifetime (with joinByLink's slack), whatever later time the server names.
    expiresAt = Math.min(expiresAt, this.#parts.now() + LINK_WAIT_MS);
    const accountId = current.accountId;
    let waited = false;
    const wait = async (options: LinkWaitOptions): Promise<DeviceInfo> => {
      const wop = 'linkOffer.wait';
      if (waited) throw new SdkError('INVALID_ARGUMENT', wop, 'wait() can be called once per link');
      const onRequest: unknown = (options as Partial<LinkWaitOptions> | undefined)?.onRequest;
      if (typeof onRequest !== 'function') {
        throw new SdkError(
          'INVALID_ARGUMENT',
          wop,
          '"onRequest" expected a function that asks the user to confirm the new device',
        );
      }
      // Checked before the offer is marked used: a caller's mistake does not spend it.
      const pollMs = checkPollMs(wop, options.pollMs);
      const signal = this.#signal(checkSignal(wop, options.signal));
      waited = true;
      const stillOurs = () => {
        if (this.#state !== 'ready') throw new SdkError('NOT_READY', wop, 'the client is closed');
        const cur = this.#current;
        if (cur?.accountId !== accountId) {
          throw new SdkError('NOT_LOGGED_IN', wop, 'the account logged out');
        }
        if (this.#parts.now() > expiresAt) {
          throw new SdkError('LINK_EXPIRED', wop, 'the link expired before a device was added');
        }
        return cur;
      };
      let sealed: Uint8Array | undefined;
      while (!sealed) {
        const cur = stillOurs();
        const status = await this.#authed(cur, (token) =>
          this.#api.getLink(wop, token, linkCode.linkId),
        ).catch((err: unknown) => {
          throw SdkError.is(err, 'NOT_FOUND')
            ? new SdkError('LINK_EXPIRED', wop, 'the link expired before a device used it', {
                cause: err,
              })
            : err;
        });
        if (status.status === 'requested') sealed = status.sealed;
        else if (status.status === 'refused') {
          throw new SdkError('LINK_REFUSED', wop, 'the link was refused; start a new one');
        } else await sleep(wop, pollMs, signal, this.#closing.signal);
      }
      // spec §6: a refusal is told to the server, so the joining device stops waiting. Best
      // effort: where it cannot be told, that device's wait ends when the link expires.
      const refuse = async () => {
        const cur = this.#current;
        if (cur?.accountId !== accountId) return;
        await this.#authed(cur, (token) => this.#api.refuseLink(wop, token, linkCode.linkId)).catch(
          () => {},
        );
      };
      // Every way out short of the approval below refuses: a request that does not open, the
      // user not confirming, onRequest throwing, an abort, a logout.
      let request: OpenedLinkRequest;
      try {
        request = await openRequest(wop, linkCode, sealed);
        // spec §6: the user confirms the device by its name before anything is added or sent.
        // Asked outside the home's lock: a person answers at their own pace.
        const confirmed = await (onRequest as LinkWaitOptions['onRequest'])({
          deviceName: request.name,
          deviceId: request.deviceId,
        });
        if (confirmed !== true) {
          throw new SdkError(
            'LINK_REFUSED',
            wop,
            `the device ${request.deviceId} was refused: nothing was added or sent, and the link is spent`,
          );
        }
        if (signal.aborted) throw stopped(wop, signal, this.#closing.signal);
        stillOurs();
      } catch (err) {
        await refuse();
        throw err;
      }
      return this.#run(wop, () => this.#approveLink(linkCode, request, accountId));
    };
    return { code: linkCode.text, qr: linkCode.qr, expiresAt, wait };
  }

  async #approveLink(
    code: LinkCode,
    request: OpenedLinkRequest,
    accountId: string,
  ): Promise<DeviceInfo> {
    const op = this.#op;
    if (this.#current?.accountId !== accountId) {
      throw new SdkError('NOT_LOGGED_IN', op, 'the account logged out');
    }
    const name = request.name;
    let current = await this.#refresh();
    if (current.manifest.body.devices.some((d) => d.id === request.deviceId)) {
      throw new SdkError('CONFLICT', op, `device ${request.deviceId} is already on the account`);
    }
    if (current.manifest.body.devices.some((d) => bytesEqual(d.signingKey, request.signingKey))) {
      throw new SdkError('PROTOCOL_VIOLATION', op, "the new device reuses a listed device's key", {
        detail: 'DUPLICATE_DEVICE_KEY',
      });
    }
    const addedAt = this.#parts.now();
    current = await this.#commit(current, () => ({
      add: { id: request.deviceId, signingKey: request.signingKey, name, addedAt },
    }));
    const response = await sealLinkResponse(code, {
      accountId: current.accountId,
      username: current.username,
      identitySeed: current.identity.seed,
      manifestSeq: current.manifest.body.seq,
    });
    await this.#authed(current, (token) =>
      this.#api.approveLink(op, token, code.linkId, {
        sealed: response,
        deviceId: request.deviceId,
      }),
    );
    const entry = current.manifest.body.devices.find((d) => d.id === request.deviceId);
    return { id: request.deviceId, name, addedAt: entry?.addedAt ?? addedAt, current: false };
  }

  async #joinByLink(codeText: string, given: JoinByLinkOptions | undefined): Promise<AccountInfo> {
    const op = this.#op;
    const options = checkOptions<JoinByLinkOptions>(op, given);
    this.#requireLoggedOut();
    let code: LinkCode;
    try {
      code = parseLinkCode(codeText);
    } catch (err) {
      throw new SdkError('INVALID_LINK_CODE', op, 'not a link code: 24 characters in groups of 4', {
        cause: err,
      });
    }
    const deviceName = normalizeDeviceName(options.deviceName ?? DEFAULT_DEVICE_NAME, op);
    const pollMs = checkPollMs(op, options.pollMs);
    const signal = this.#signal(checkSignal(op, options.signal));
    const device = await generateKeyPair();
    const deviceId = newDeviceId();
    const pickup = randomBytes(32);
    const sealed = await sealLinkRequest(code, {
      deviceId,
      signingKey: device.publicKey,
      name: deviceName,
    });
    const linkError = (err: unknown): never => {
      if (SdkError.is(err, 'NOT_FOUND')) {
        throw new SdkError('LINK_EXPIRED', op, 'the link is unknown or expired; start a new one', {
          cause: err,
        });
      }
      if (SdkError.is(err, 'CONFLICT')) {
        throw new SdkError('CONFLICT', op, 'the link was already used; start a new one', {
          cause: err,
        });
      }
      throw err;
    };
    await this.#api
      .putLinkRequest(op, code.linkId, { sealed, pickupHash: await sha256(pickup) })
      .catch(linkError);

    const deadline = this.#parts.now() + LINK_WAIT_MS;
    let approved:
      | Extract<Awaited<ReturnType<Api['pickupLink']>>, { status: 'approved' }>
      | undefined;
    while (!approved) {
      if (this.#parts.now() > deadline) {
        throw new SdkError('LINK_EXPIRED', op, 'the other device did not approve in time');
      }
      const status = await this.#api.pickupLink(op, code.linkId, pickup).catch(linkError);
      if (status.status === 'approved') approved = status;
      else if (status.status === 'refused') {
        throw new SdkError(
          'LINK_REFUSED',
          op,
          'the other device refused this one: nothing was added; start a new link',
        );
      } else await sleep(op, pollMs, signal, this.#closing.signal);
    }
    const { token } = approved;
    try {
      const response = await openLinkResponse(code, approved.sealed).catch((err: unknown) => {
        throw violation(op, err);
      });
      if (response.accountId !== approved.accountId || !isId(response.accountId)) {
        throw new SdkError('PROTOCOL_VIOLATION', op, 'the link response names another account', {
          detail: 'ACCOUNT_MISMATCH',
        });
      }
      const accountId = response.accountId;
      const username = (() => {
        try {
          return normalizeUsername(response.username, op);
        } catch (err) {
          throw new SdkError(
            'PROTOCOL_VIOLATION',
            op,
            'the link response has a malformed username',
            {
              cause: err,
            },
          );
        }
      })();
      const identity = await keyPairFromSeed(response.identitySeed);
      wipe(response.identitySeed);
      const earlier = await this.#localState().readAccount(accountId);
      // spec §6: the manifest under the identity from the response, at seq ≥ manifestSeq,
      // listing this device's id and key.
      const verified = await this.#fetchVerified(token, {
        accountId,
        identityKey: identity.publicKey,
        ...(earlier?.manifest ? { trusted: earlier.manifest } : {}),
      });
      if (verified.body.seq < response.manifestSeq) {
        throw new SdkError(
          'PROTOCOL_VIOLATION',
          op,
          'the server sent an older manifest than the link promised',
          {
            detail: 'MANIFEST_ROLLBACK',
          },
        );
      }
      try {
        requireListed(verified.body, deviceId, device.publicKey, op);
      } catch (err) {
        throw new SdkError(
          'PROTOCOL_VIOLATION',
          op,
          'the account manifest does not list this device',
          {
            cause: err,
          },
        );
      }
      const current: Current = {
        accountId,
        username,
        deviceId,
        device,
        identity,
        token,
        expiresAt: approved.expiresAt,
        manifest: verified,
      };
      await this.#adopt(current);
      return accountInfo(current);
    } catch (err) {
      if (!this.#current) await this.#discardToken(token);
      throw err;
    }
  }

  /** The caller's signal joined with the client's own (aborted by close()). */
  #signal(signal: AbortSignal | undefined): AbortSignal {
    return signal ? AbortSignal.any([signal, this.#closing.signal]) : this.#closing.signal;
  }
}

function accountInfo(current: Current): AccountInfo {
  const entry = current.manifest.body.devices.find((d) => d.id === current.deviceId);
  return {
    accountId: current.accountId,
    username: current.username,
    deviceId: current.deviceId,
    deviceName: entry?.name ?? '',
  };
}

function accountRecord(current: Current): AccountRecord {
  return {
    accountId: current.accountId,
    username: current.username,
    deviceId: current.deviceId,
    deviceSeed: current.device.seed,
    manifest: current.manifest.manifest,
  };
}

function deviceList(current: Current): DeviceInfo[] {
  return current.manifest.body.devices
    .map((d) => ({
      id: d.id,
      name: d.name,
      addedAt: d.addedAt,
      current: d.id === current.deviceId,
    }))
    .sort((a, b) => a.addedAt - b.addedAt || (a.id < b.id ? -1 : 1));
}

function isManifestConflict(err: unknown): boolean {
  return SdkError.is(err, 'CONFLICT') && err.serverCode === 'MANIFEST_CONFLICT';
}

/**
 * The login proof of `device` (spec account-v1 §7), or undefined without a device key. Wipes the
 * OPAQUE session key either way: it is used for nothing else.
 */
async function loginProof(
  op: string,
  device: Ed25519KeyPair | undefined,
  loginId: string,
  deviceId: string,
  finish: { readonly sessionKey: Uint8Array },
): Promise<Uint8Array | undefined> {
  try {
    if (!device) return undefined;
    if (!isId(loginId))
      throw new SdkError('PROTOCOL_VIOLATION', op, 'the server sent a malformed login id');
    return await guardProtocol(op, () =>
      signLoginProof(device.signingKey, { loginId, deviceId, sessionKey: finish.sessionKey }),
    );
  } finally {
    wipe(finish.sessionKey);
  }
}

/** Runs protocol steps on what the server sent; their failures are the server's. */
async function guardProtocol<T>(op: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw violation(op, err);
  }
}

function parseCode(op: string, text: string): RecoveryCode {
  try {
    return parseRecoveryCode(text);
  } catch (err) {
    throw new SdkError(
      'INVALID_RECOVERY_CODE',
      op,
      'not a recovery code: 32 characters in groups of 4 (0-9, A-Z without I, L, O, U)',
      { cause: err },
    );
  }
}

function checkId(op: string, id: unknown): void {
  if (!isId(id))
    throw new SdkError('INVALID_ARGUMENT', op, '"deviceId" expected a device id (22 characters)');
}

/** A caller's options object: undefined or null for none; anything else not an object is a mistake. */
function checkOptions<T extends object>(op: string, options: unknown): Partial<T> {
  if (options === undefined || options === null) return {};
  if (typeof options !== 'object') {
    throw new SdkError('INVALID_ARGUMENT', op, '"options" expected an object');
  }
  return options as Partial<T>;
}

function checkSignal(op: string, signal: unknown): AbortSignal | undefined {
  if (signal === undefined) return undefined;
  if (!(signal instanceof AbortSignal)) {
    throw new SdkError('INVALID_ARGUMENT', op, '"signal" expected an AbortSignal');
  }
  return signal;
}

function checkPollMs(op: string, pollMs: number | undefined): number {
  const ms = pollMs ?? DEFAULT_POLL_MS;
  if (!Number.isSafeInteger(ms) || ms < 1 || ms > 60_000) {
    throw new SdkError('INVALID_ARGUMENT', op, '"pollMs" expected an integer from 1 to 60000');
  }
  return ms;
}

/** Waits `ms`; ABORTED when the caller's signal fires, NOT_READY when the client closes. */
/** A link request that opened with the code: the device asking to join. */
interface OpenedLinkRequest {
  readonly deviceId: string;
  readonly signingKey: Uint8Array;
  /** Normalised (spec §3.1). */
  readonly name: string;
}

/** Opens a sealed link request; one that does not open was not made with the code. */
async function openRequest(
  op: string,
  code: LinkCode,
  sealed: Uint8Array,
): Promise<OpenedLinkRequest> {
  const request = await openLinkRequest(code, sealed).catch((err: unknown) => {
    throw new SdkError(
      'PROTOCOL_VIOLATION',
      op,
      'the link request does not open: it was not made with this code; start a new link',
      { cause: err, ...(ProtocolError.is(err) ? { detail: err.code } : {}) },
    );
  });
  let name: string;
  try {
    name = normalizeDeviceName(request.name, op);
  } catch (err) {
    throw new SdkError('PROTOCOL_VIOLATION', op, 'the link request names the device badly', {
      cause: err,
    });
  }
  return { deviceId: request.deviceId, signingKey: request.signingKey, name };
}

/** Why a wait stopped: the client closed, or the caller's signal. */
function stopped(op: string, signal: AbortSignal, closing: AbortSignal): SdkError {
  return closing.aborted
    ? new SdkError('NOT_READY', op, 'the client was closed while waiting')
    : new SdkError('ABORTED', op, 'stopped waiting: aborted by the caller', {
        cause: signal.reason,
      });
}

function sleep(op: string, ms: number, signal: AbortSignal, closing: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const stop = () => reject(stopped(op, signal, closing));
    if (signal.aborted) return stop();
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      stop();
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

/** Whether two session tokens are the same, in constant time. */
function sameToken(a: string, b: string): boolean {
  const encoder = new TextEncoder();
  return bytesEqual(encoder.encode(a), encoder.encode(b));
}
