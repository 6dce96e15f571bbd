import {
  constantTimeEqual,
  decrypt,
  encrypt,
  fromBase64url,
  importAeadKey,
  randomBytes,
  sha256,
  toBase64url,
  utf8Encode,
} from '@coffer/crypto';
import {
  type ConversationData,
  type ConversationKind,
  checkJoinedConversation,
  conversationPolicy,
  createTsMlsEngine,
  decodeContent,
  decodeConversationData,
  decodeManifestBody,
  type Ed25519KeyPair,
  encodeContent,
  encodeConversationData,
  type GroupEngine,
  isId,
  type ManifestBody,
  type MemberId,
  type MessageContent,
  type MlsGroup,
  type MlsKeyPackage,
  memberIdentity,
  normalizeUsername,
  ProtocolError,
  parseMemberIdentity,
  type SignedManifest,
  verifyManifest,
} from '@coffer/protocol';
import { array, asObject, bytes, int, type JsonObject, str } from './_json.js';
import {
  type AttachmentDescriptor,
  type AttachmentServerOptions,
  decodeAttachmentDescriptor,
  downloadAndDecrypt,
  encodeAttachmentDescriptor,
  encryptAndUpload,
} from './attachments.js';
import { SdkError } from './errors.js';
import type { Transport } from './transport.js';

// End-to-end encrypted conversations (README "Conversations"): MLS groups through the server's
// delivery service (spec http-api-v1 "Delivery"), with the conversation rules of
// @coffer/protocol (spec conversation-v1). The server is a carrier: every commit is checked
// against the conversation policy, every credential against the sender's signed device
// manifest, and every message is authenticated before anything is done with it.
//
// Local state, one encrypted record each (names under MAX_RECORD_NAME_LENGTH):
//   conv/<accountId>        the queue cursor, the conversation ids, pinned contact manifests
//   kps/<accountId>         this device's unused private key packages
//   group/<groupId>         the MLS state, the queue cursor of its last entry, recent history, and the
//                           outgoing commit not yet confirmed — one record, so an MLS state
//                           change, the messages it yielded and the deletion of consumed secrets
//                           are saved in one atomic put
//   hist/<groupId>/<n>      older history, HISTORY_CHUNK messages each (0 the oldest)
//   hist/<groupId>/o<k>     history from before this device joined, merged from a history
//                           bundle that came after chunk 0 was written (o0 the newest)
//   owed/<accountId>        conversations whose history bundle this account's new devices are
//                           still owed (a bundle whose upload or send failed)

/** One-time key packages a device keeps on the server; it uploads more when fewer remain. */
export const KEY_PACKAGE_TARGET = 20;
/** How long a key package ts-mls makes is valid (its MLS lifetime: 1,314,000 s). */
const KEY_PACKAGE_LIFETIME_MS = 1_314_000 * 1000;
/** A device replaces all its key packages on the server this often, well within their lifetime. */
export const KEY_PACKAGE_ROTATE_MS = 7 * 24 * 3600 * 1000;
/**
 * How long the private half of a key package is kept: a Welcome is made with it within its
 * lifetime and waits in a queue at most the server's 30-day retention.
 */
const KEY_PACKAGE_KEEP_MS = KEY_PACKAGE_LIFETIME_MS + 31 * 24 * 3600 * 1000;
const KEY_PACKAGE_LOW = 5;
/** Messages kept in a conversation's record before the oldest move to a history chunk. */
export const HISTORY_CHUNK = 16;
/** Queue entries asked for per request (the server allows up to 100). */
const QUEUE_PAGE = 100;
/** A contact's manifest is fetched again at most this often while checking credentials. */
const MANIFEST_TTL_MS = 30_000;
/** How often sync() re-checks what rarely changes (key-package count, key age). */
const SCAN_INTERVAL_MS = 60_000;
/** Associated data of a sealed GroupInfo (with the group id). */
const GROUP_INFO_CONTEXT = 'coffer/v1/group-info';
/** MLS-Exporter label of the conversation key after a removal (spec §4.6). */
const CONVERSATION_KEY_LABEL = 'coffer/v1/conversation-key';
/** Syncs that try a history bundle whose download fails for now, before it is given up… */
const MAX_BUNDLE_TRIES = 5;
/** …over at least this long (a short outage that many syncs meet gives up nothing). */
const BUNDLE_GIVE_UP_MS = 60 * 60 * 1000;
/** Messages per conversation a history bundle carries to a new device. */
const MAX_BUNDLE_MESSAGES = 1000;
/** A sender's name claim whose lookup could not be made is looked up again after this long. */
const CLAIM_RETRY_MS = 10 * 60 * 1000;
/** Usernames remembered per account (contacts looked up). */
const MAX_KNOWN_NAMES = 10_000;
/** A WebSocket as the SDK uses it: the browser's, Node 22's, or the `ws` package's. */
export interface WebSocketLike {
  send(data: string): void;
  close(): void;
  addEventListener(type: 'message', listener: (event: { data: unknown }) => void): void;
  addEventListener(type: 'close', listener: (event: { code?: unknown }) => void): void;
  addEventListener(type: 'error' | 'open', listener: () => void): void;
}
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/**
 * The server's event socket for `follow`: authenticated with the session token in the first
 * message (never in the URL), it wakes the loop on `{"type":"queue"}`. Any failure just leaves
 * the loop on its interval; the socket is opened again on the next wait.
 */
class PushChannel {
  #socket: WebSocketLike | undefined;
  #ready = false;
  #wake: (() => void) | undefined;
  #pending = false;
  /** Sockets that closed since the last one was ready, for the reconnect backoff. */
  #failures = 0;
  /** No new socket before this time (ms, performance clock). */
  #retryAt = 0;
  /** The server refused this session's socket for good (4401, 4403): polling only. */
  #refused = false;
  readonly #host: ConversationHost;
  readonly #signal: AbortSignal | undefined;

  constructor(host: ConversationHost, signal: AbortSignal | undefined) {
    this.#host = host;
    this.#signal = signal;
  }

  #open(): void {
    const Socket = this.#host.webSocket;
    if (!Socket || this.#socket || this.#refused || performance.now() < this.#retryAt) return;
    let socket: WebSocketLike;
    try {
      const { server, token } = this.#host.blobs();
      const url = new URL('v1/events', server.endsWith('/') ? server : `${server}/`);
      url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
      socket = new Socket(url.toString());
      socket.addEventListener('open', () => socket.send(JSON.stringify({ type: 'auth', token })));
    } catch {
      return;
    }
    this.#socket = socket;
    socket.addEventListener('message', (event) => {
      let type: unknown;
      try {
        type = (JSON.parse(String(event.data)) as { type?: unknown }).type;
      } catch {
        return;
      }
      if (type === 'ready') {
        this.#ready = true;
        this.#failures = 0;
        // Subscribed now: what arrived between the last queue read and this moment was pushed
        // to no one, so one sync catches up.
        this.#poke();
      }
      if (type === 'queue' || type === 'manifest') this.#poke();
    });
    let closed = false;
    const dropped = (event?: { code?: unknown }) => {
      const code = event?.code;
      // The session or device is over: sockets would be refused forever; the syncs report it.
      if (code === CLOSE_UNAUTHENTICATED || code === CLOSE_REVOKED) this.#refused = true;
      if (closed) return; // an 'error' is followed by a 'close'
      closed = true;
      if (this.#socket === socket) this.#socket = undefined;
      const wasReady = this.#ready;
      this.#ready = false;
      if (!this.#refused) {
        // Exponential backoff with jitter (0.5–1 s, 1–2 s, … up to 32–64 s), so that clients
        // do not reconnect in step after a restart, nor spin on a server refusing sockets.
        // Closed for a newer socket of this device (4429): straight to the longest step, or the
        // device's followers would close each other's sockets in turn, every second.
        this.#failures = code === CLOSE_TOO_MANY ? RECONNECT_MAX_STEP + 1 : this.#failures + 1;
        const base = RECONNECT_BASE_MS * 2 ** Math.min(this.#failures - 1, RECONNECT_MAX_STEP);
        this.#retryAt = performance.now() + base / 2 + (Math.random() * base) / 2;
      }
      // A socket that was up and dropped wakes the loop: it catches up and reconnects, instead
      // of sleeping out the long interval meant for a working socket.
      if (wasReady) this.#poke();
    };
    socket.addEventListener('close', dropped);
    socket.addEventListener('error', () => {
      try {
        socket.close();
      } catch {
        // already closing
      }
      dropped();
    });
  }

  #poke(): void {
    if (this.#wake) this.#wake();
    else this.#pending = true;
  }

  /** Resolves on a push, after `interval` (longer while the socket is up), or on abort. */
  wait(interval: number): Promise<void> {
    if (this.#signal?.aborted) return Promise.resolve();
    this.#open();
    if (this.#pending) {
      this.#pending = false;
      return Promise.resolve();
    }
    const ms = this.#ready ? Math.max(interval, PUSH_FALLBACK_MS) : interval;
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#signal?.removeEventListener('abort', done);
        this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#wake = done;
      this.#signal?.addEventListener('abort', done, { once: true });
    });
  }

  close(): void {
    try {
      this.#socket?.close();
    } catch {
      // closing is best effort
    }
    this.#socket = undefined;
  }
}

/** Close codes of the event socket after which no new socket is opened (http-api-v1 "Events"). */
const CLOSE_UNAUTHENTICATED = 4401;
const CLOSE_REVOKED = 4403;
/** Close code of a device's oldest socket when it opened more than the server allows. */
const CLOSE_TOO_MANY = 4429;
/** The first reconnect delay (halved to doubled by jitter); it doubles per failed socket. */
const RECONNECT_BASE_MS = 1000;
/** Doublings of the reconnect delay at most (32–64 s with jitter): tried again within a minute. */
const RECONNECT_MAX_STEP = 6;

/** With the event socket up, `follow` still syncs this often (a push could be lost). */
const PUSH_FALLBACK_MS = 30_000;
/** Retries of a commit that lost the race for its epoch. */
const MAX_EPOCH_RETRIES = 5;

/** Default of {@link ConversationOptions.selfUpdateAfterMessages}. */
export const DEFAULT_SELF_UPDATE_MESSAGES = 100;
/** Default of {@link ConversationOptions.selfUpdateAfterMs}: a week. */
export const DEFAULT_SELF_UPDATE_MS = 7 * 24 * 60 * 60 * 1000;

/**
 * The post-compromise-security policy: a device commits fresh keys to a conversation after it
 * sent this many messages there, or when its last fresh keys are this old (checked on sync).
 * An attacker who stole a device's state can read a conversation only until the next renewal.
 *
 * @example createClient({ server, store, storeKey, conversations: { selfUpdateAfterMessages: 50 } });
 */
export interface ConversationOptions {
  readonly selfUpdateAfterMessages?: number;
  readonly selfUpdateAfterMs?: number;
}

/** A member device of a conversation. */
export interface ConversationMember {
  readonly accountId: string;
  readonly deviceId: string;
  /**
   * The account's username, when this device knows it: its own, one it looked up, or one its
   * messages stated and the server's directory confirmed (the server has no account-id-to-name
   * directory, and nothing is taken on a member's word alone).
   */
  readonly username?: string;
}

/** What a client knows about one conversation. */
export interface ConversationInfo {
  /** The group id (b64url of 16 random bytes). */
  readonly id: string;
  readonly kind: ConversationKind;
  /** Empty for direct conversations. */
  readonly name: string;
  /** Account ids that may add, remove and rename. */
  readonly admins: readonly string[];
  readonly members: readonly ConversationMember[];
  /** The MLS epoch this device is at. */
  readonly epoch: number;
  /** False once this device was removed or left. */
  readonly active: boolean;
}

/** One message of a conversation, sent or received, after authentication and decryption. */
export interface ConversationMessage {
  readonly conversationId: string;
  /** The sender's random message id (how duplicates are recognised). */
  readonly id: string;
  readonly sender: ConversationMember;
  /** True when this account sent it (from this device or, later, another of its devices). */
  readonly own: boolean;
  /** The sender's clock: shown, never trusted for order (history is in delivery order). */
  readonly sentAt: number;
  /** This device's clock when it stored the message. */
  readonly receivedAt: number;
  readonly type: 'text' | 'attachment';
  readonly text?: string;
  /** For attachments: the reference to pass to `downloadAndDecrypt` (see attachments). */
  readonly attachment?: Readonly<Record<string, unknown>>;
  /**
   * Only on this device's own messages whose send failed on the way (network, server error):
   * it may or may not have reached the others. Refused sends are not kept at all.
   */
  readonly unconfirmed?: true;
}

/** What `sync` found. */
export type ConversationEvent =
  | { readonly type: 'message'; readonly message: ConversationMessage }
  | { readonly type: 'joined'; readonly conversation: ConversationInfo }
  | { readonly type: 'changed'; readonly conversation: ConversationInfo }
  | { readonly type: 'removed'; readonly conversationId: string }
  /**
   * This device had fallen behind (commits withheld or expired) and rejoined by an external
   * commit: what it missed is unreadable (reported as `error` events), what follows is not.
   */
  | { readonly type: 'resynced'; readonly conversation: ConversationInfo }
  /** Older messages from another device of this account (a history bundle) were stored. */
  | { readonly type: 'history'; readonly conversationId: string; readonly count: number }
  | {
      /** A message that could not be used: never silent. `error.code` says why. */
      readonly type: 'error';
      readonly conversationId: string;
      readonly error: SdkError;
    };

/** What conversations need from the client (the logged-in device, the server, the store). */
export interface ConversationHost {
  /** The logged-in device; throws NOT_LOGGED_IN. */
  session(): {
    accountId: string;
    username: string;
    deviceId: string;
    device: Ed25519KeyPair;
    token: string;
  };
  /** The account's own newest verified manifest; `fresh`: fetched and verified now. */
  ownManifest(fresh: boolean): Promise<ManifestBody>;
  readonly transport: Transport;
  /** Where and as whom to upload and download encrypted files. */
  blobs(): AttachmentServerOptions;
  /** A WebSocket constructor for the server's event socket (push), when the platform has one. */
  readonly webSocket?: WebSocketConstructor;
  readRecord(name: string): Promise<JsonObject | undefined>;
  writeRecord(name: string, fields: Record<string, unknown>): Promise<void>;
  deleteRecord(name: string): Promise<void>;
  now(): number;
  /** Aborted when the client closes: a follow loop ends then, and closes its socket. */
  readonly closing?: AbortSignal;
}

/** This device's key packages by ref (private halves), and when they were last all replaced. */
type KeyPackages = Map<
  string,
  { pub: string; priv: string; lastResort: boolean /** ms since the epoch */; at: number }
> & {
  rotatedAt?: number;
  /** An upload made and stored but not yet taken by the server: sent again, never remade. */
  unsent?: { keyPackages: string[]; lastResort?: string; replace: boolean };
};

interface StoredMessage {
  id: string;
  a: string; // sender account
  d: string; // sender device
  t: number; // sentAt
  r: number; // receivedAt
  k: 'text' | 'attachment';
  x?: string;
  f?: Record<string, unknown>;
  /** 1: sent, but whether the server took it is unknown (the connection failed). */
  u?: 1;
}

interface GroupRecord {
  state: Uint8Array;
  /**
   * The queue cursor of the last entry of this group this device handled (processed, or
   * reported and skipped). Delivery is at least once: an entry comes again until acknowledged,
   * with the same cursor, so one at or below it was handled already (a crash before the ack).
   * Never a group seq: this device's own posts take seqs in the group's order but never enter
   * its queue, and a seq is whatever the server says, so neither may hide an earlier entry.
   */
  cursor: number;
  tail: StoredMessage[];
  chunks: number;
  /**
   * Chunks `hist/<groupId>/o<k>` older than chunk 0, `o0` the newest: history bundles merged
   * once this device had chunked its own history (absent: none).
   */
  older?: number;
  /**
   * The conversation key (32 bytes): made by the creator, handed to every joiner inside the
   * Welcome (encrypted to it), sealing the GroupInfo the server keeps for resync; replaced by
   * an MLS exporter secret of the epoch at every commit that removes a member (spec §4.6).
   */
  key?: Uint8Array;
  /** Messages this device sent since its last commit (post-compromise security policy). */
  sent?: number;
  /** Application messages this device has sent here in all (the `n` of its next one - 1). */
  out?: number;
  /** The highest `n` seen per sender device (`accountId.deviceId`). */
  peers?: Record<string, number>;
  /**
   * Syncs whose download of the history bundle in queue entry `cursor` failed for now (the
   * network, a busy server), the first at `first` (ms): after MAX_BUNDLE_TRIES of them over at
   * least BUNDLE_GIVE_UP_MS the bundle is given up and the queue moves on.
   */
  bundleTries?: { cursor: number; n: number; first: number };
  /** When this device last committed fresh keys (or joined). */
  renewedAt?: number;
  /** A commit sent and not yet confirmed, with the state it leads to. */
  pending?: { state: Uint8Array; epoch: number; key?: Uint8Array; welcome?: Welcome };
  /** A Welcome to post once its commit is in: sent, then cleared (a duplicate is harmless). */
  welcome?: Welcome;
}

interface Welcome {
  message: Uint8Array;
  epoch: number;
  recipients: ConversationMember[];
}

interface ContactPin {
  manifest: SignedManifest;
  body: ManifestBody;
  checkedAt: number;
}

/**
 * Conversations of the logged-in account on this device.
 *
 * @example
 * const chat = await client.conversations.direct('bob');
 * await client.conversations.send(chat.id, 'hello');
 * for (const event of await client.conversations.sync()) console.log(event);
 */
export interface ConversationsApi {
  /**
   * The 1:1 conversation with `user` (a username or account id), created when there is none.
   *
   * @throws {SdkError} `CONFLICT` when none of that account's devices can be added yet (none
   * has a key package on the server): nothing is created; try again once it has synced.
   */
  direct(user: string): Promise<ConversationInfo>;
  /**
   * The 1:1 conversation with `user` this device holds (the active one, else the latest it was
   * in), or undefined (always for this account itself); never creates one. Looks `user` up on
   * the server when it is a username this device has not seen.
   */
  find(user: string): Promise<ConversationInfo | undefined>;
  /** A new group with this account as its admin and `members` (usernames or account ids). */
  create(options: { name: string; members?: readonly string[] }): Promise<ConversationInfo>;
  list(): Promise<ConversationInfo[]>;
  get(conversationId: string): Promise<ConversationInfo>;
  /** Sends text (or an attachment reference) to everyone in the conversation. */
  send(
    conversationId: string,
    message: string | { text?: string; attachment?: Record<string, unknown> },
  ): Promise<ConversationMessage>;
  /**
   * Makes this device reachable: keeps its key packages on the server (sync does it too), so
   * that others can add it to conversations. Call it once after signup, login or linking.
   */
  prepare(): Promise<void>;
  /**
   * Fetches the queue, processes, stores and acknowledges everything new. When it fails part of
   * the way, the events of what it handled before the failure (acknowledged, so not fetched
   * again) are kept for the next sync(), or for {@link ConversationsApi.unreported}.
   */
  sync(): Promise<ConversationEvent[]>;
  /**
   * Takes the events a failed sync() kept (see sync), so that a program about to exit can still
   * show them; empty when there are none. The messages are in the local history either way.
   */
  unreported(): Promise<ConversationEvent[]>;
  /**
   * Encrypts `data` under a fresh key, uploads the ciphertext, and sends its reference (with
   * optional text) to the conversation.
   */
  sendFile(
    conversationId: string,
    data: Uint8Array | AsyncIterable<Uint8Array> | ReadableStream<Uint8Array>,
    options?: {
      name?: string;
      mediaType?: string;
      text?: string;
      onProgress?: (done: number, total?: number) => void;
    },
  ): Promise<ConversationMessage>;
  /**
   * The plaintext of a received (or sent) attachment, verified chunk by chunk; complete only
   * when the stream ends without an error (truncation shows at the end).
   */
  download(
    message: ConversationMessage,
    options?: { onProgress?: (done: number, total: number) => void },
  ): Promise<ReadableStream<Uint8Array>>;
  /** Stored messages of a conversation, oldest first; the last `limit` (default 100). */
  history(conversationId: string, options?: { limit?: number }): Promise<ConversationMessage[]>;
  add(conversationId: string, users: readonly string[]): Promise<ConversationInfo>;
  remove(conversationId: string, users: readonly string[]): Promise<ConversationInfo>;
  rename(conversationId: string, name: string): Promise<ConversationInfo>;
  /**
   * Makes `users` admins of a group (`admin: true`) or no longer admins (`false`); admins only.
   * The last admin cannot step down.
   */
  setAdmin(
    conversationId: string,
    users: readonly string[],
    admin: boolean,
  ): Promise<ConversationInfo>;
  /** Asks the others to remove this device's account from the conversation. */
  leave(conversationId: string): Promise<void>;
  /** Calls `listener` with every event `sync` finds; returns the unsubscribe function. */
  on(listener: (event: ConversationEvent) => void): () => void;
  /**
   * Syncs every `intervalMs` (default 1000) and yields events until `signal` aborts or the
   * client closes.
   */
  follow(options?: { signal?: AbortSignal; intervalMs?: number }): AsyncIterable<ConversationEvent>;
}

type Run = <T>(op: string, fn: () => Promise<T>) => Promise<T>;

/** @internal The client builds this once; every method runs in the client's serial queue. */
export function createConversations(
  host: ConversationHost,
  run: Run,
  options: ConversationOptions = {},
): ConversationsApi {
  const c = new Conversations(host, options);
  return {
    direct: (user) => run('conversations.direct', () => c.direct(user)),
    find: (user) => run('conversations.find', () => c.find(user)),
    create: (o) => run('conversations.create', () => c.create(o)),
    list: () => run('conversations.list', () => c.list()),
    get: (id) => run('conversations.get', () => c.info(id)),
    send: (id, m) => run('conversations.send', () => c.send(id, m)),
    sendFile: async (id, data, o = {}) => {
      // The upload runs outside the client's queue (it may take long); the message inside it.
      const descriptor = await encryptAndUpload({
        ...c.blobs(),
        data,
        ...(o.name === undefined ? {} : { name: o.name }),
        ...(o.mediaType === undefined ? {} : { mediaType: o.mediaType }),
        ...(o.onProgress ? { onProgress: o.onProgress } : {}),
      });
      const attachment = JSON.parse(encodeAttachmentDescriptor(descriptor)) as Record<
        string,
        unknown
      >;
      return run('conversations.send', () =>
        c.send(id, { attachment, ...(o.text === undefined ? {} : { text: o.text }) }),
      );
    },
    download: async (message, o = {}) => {
      if (!message?.attachment) {
        throw new SdkError(
          'INVALID_ARGUMENT',
          'conversations.download',
          'the message has no attachment',
        );
      }
      return downloadAndDecrypt({
        ...c.blobs(),
        descriptor: decodeAttachmentDescriptor(message.attachment),
        ...(o.onProgress ? { onProgress: o.onProgress } : {}),
      });
    },
    sync: () => run('conversations.sync', () => c.sync()),
    unreported: () => run('conversations.unreported', async () => c.takeUnreported()),
    prepare: () => run('conversations.prepare', () => c.prepare()),
    history: (id, o) => run('conversations.history', () => c.history(id, o?.limit ?? 100)),
    add: (id, users) => run('conversations.add', () => c.add(id, users)),
    remove: (id, users) => run('conversations.remove', () => c.remove(id, users)),
    rename: (id, name) => run('conversations.rename', () => c.rename(id, name)),
    setAdmin: (id, users, admin) =>
      run('conversations.setAdmin', () => c.setAdmin(id, users, admin)),
    leave: (id) => run('conversations.leave', () => c.leave(id)),
    on: (listener) => c.subscribe(listener),
    follow: (o) => c.follow(o ?? {}, () => run('conversations.sync', () => c.sync())),
  };
}

class Conversations {
  readonly #host: ConversationHost;
  #engine: Promise<GroupEngine> | undefined;
  #op = 'conversations';
  readonly #listeners = new Set<(e: ConversationEvent) => void>();
  readonly #contacts = new Map<string, ContactPin>();
  /** Events found while catching up inside another operation, for the next sync. */
  #unreported: ConversationEvent[] = [];
  // What sync() may skip, per account (a client can switch accounts): the scan for commits
  // left pending by a crash (needed once per process, and after a post whose outcome is
  // unknown), the key-package count, the key-renewal scan, and the own-device reconciliation
  // (needed when the account's manifest changed).
  #scanFor: string | undefined;
  #keyPackagesCheckedAt = new Map<string, number>();
  #renewCheckedAt = new Map<string, number>();
  #reconciled = new Map<string, number>();
  #contactsCheckedAt = new Map<string, number>();

  readonly #options: Required<ConversationOptions>;

  constructor(host: ConversationHost, options: ConversationOptions) {
    this.#host = host;
    this.#options = {
      selfUpdateAfterMessages: options.selfUpdateAfterMessages ?? DEFAULT_SELF_UPDATE_MESSAGES,
      selfUpdateAfterMs: options.selfUpdateAfterMs ?? DEFAULT_SELF_UPDATE_MS,
    };
  }

  /**
   * Post-compromise security: a commit with fresh keys for this device. Best effort — a lost
   * race or a network error leaves it for the next message or sync.
   */
  async #renew(groupId: string): Promise<void> {
    try {
      await this.#commit(groupId, (engine, group) => {
        // MLS lets no member commit its own removal: a device that asked to leave waits.
        if (leaving(engine, group)) throw new SdkError('CONFLICT', this.#op, 'leaving');
        return engine.selfUpdate(group);
      });
    } catch (err) {
      if (!SdkError.is(err) || err.code === 'STORE_CORRUPT') throw err;
    }
  }

  /** Renews keys in every conversation whose last renewal is older than the policy allows. */
  async #renewStale(): Promise<void> {
    const now = this.#host.now();
    const { accountId } = this.#me();
    if (now - (this.#renewCheckedAt.get(accountId) ?? -Infinity) < SCAN_INTERVAL_MS) return;
    this.#renewCheckedAt.set(accountId, now);
    for (const id of (await this.#index()).groups) {
      const record = await this.#readGroup(id);
      if (!record || !(await this.#engineFor()).importState(record.state).active) continue;
      if (record.renewedAt === undefined) {
        await this.#writeGroup(id, { ...record, renewedAt: now });
      } else if (now - record.renewedAt >= this.#options.selfUpdateAfterMs) {
        await this.#renew(id);
      }
    }
  }

  // ---- plumbing ----------------------------------------------------------------------------

  #engineFor(): Promise<GroupEngine> {
    this.#engine ??= createTsMlsEngine({
      validateCredential: (identity, key) => this.#validateCredential(identity, key),
      authorizeCommit: (change) =>
        conversationPolicy(change, {
          deviceListed: async (accountId, deviceId) => {
            try {
              return (await this.#manifestOf(accountId, true)).devices.some(
                (d) => d.id === deviceId,
              );
            } catch (err) {
              this.#noteLookupFailure(err);
              throw err;
            }
          },
        }),
    });
    return this.#engine;
  }

  async #request(method: string, path: string, body?: unknown): Promise<JsonObject> {
    const { token } = this.#host.session();
    const res = await this.#host.transport.request(method, path, {
      operation: this.#op,
      token,
      ...(body === undefined ? {} : { body }),
    });
    return res ?? {};
  }

  #shape<T>(what: string, read: () => T): T {
    try {
      return read();
    } catch (err) {
      throw new SdkError('PROTOCOL_VIOLATION', this.#op, `malformed answer to ${what}`, {
        cause: err,
        detail: 'MALFORMED_RESPONSE',
      });
    }
  }

  #violation(detail: string, message: string, cause?: unknown): SdkError {
    return new SdkError('PROTOCOL_VIOLATION', this.#op, message, { detail, cause });
  }

  #me(): MemberId {
    const { accountId, deviceId } = this.#host.session();
    return { accountId, deviceId };
  }

  #emit(events: ConversationEvent[]): void {
    for (const e of events) for (const l of this.#listeners) l(e);
  }

  blobs(): AttachmentServerOptions {
    return this.#host.blobs();
  }

  subscribe(listener: (e: ConversationEvent) => void): () => void {
    if (typeof listener !== 'function') {
      throw new SdkError('INVALID_ARGUMENT', 'conversations.on', '"listener" expected a function');
    }
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async *follow(
    options: { signal?: AbortSignal; intervalMs?: number },
    sync: () => Promise<ConversationEvent[]>,
  ): AsyncIterable<ConversationEvent> {
    const interval = options.intervalMs ?? 1000;
    if (!Number.isSafeInteger(interval) || interval < 10 || interval > 60_000) {
      throw new SdkError(
        'INVALID_ARGUMENT',
        'conversations.follow',
        '"intervalMs" expected 10 to 60000',
      );
    }
    const signal = options.signal;
    const closing = this.#host.closing;
    // The client's close() also wakes the wait and ends the loop: else it would sleep out its
    // interval (30 s with the socket up) holding the socket, and so the process, open.
    const push = new PushChannel(
      this.#host,
      signal && closing ? AbortSignal.any([signal, closing]) : (signal ?? closing),
    );
    try {
      while (!signal?.aborted) {
        let events: ConversationEvent[];
        try {
          events = await sync();
        } catch (err) {
          // Closed while this sync waited its turn behind another call: it never ran, so
          // nothing was fetched; the loop ends as the client closing ends it anywhere else.
          if (closing?.aborted && SdkError.is(err, 'NOT_READY')) break;
          throw err;
        }
        for (const event of events) yield event;
        // Woken by the server's push ({"type":"queue"}) when the event socket is up, else by the
        // interval; a socket that drops is opened again on the next round (catch-up is the sync).
        await push.wait(interval);
        if (closing?.aborted) break;
      }
    } finally {
      push.close();
    }
  }

  // ---- records -----------------------------------------------------------------------------

  async #index(): Promise<{ cursor: number; groups: string[] }> {
    const { accountId } = this.#me();
    const obj = await this.#host.readRecord(`conv/${accountId}`);
    if (!obj) return { cursor: 0, groups: [] };
    return this.#stored(`conv/${accountId}`, () => ({
      cursor: int(obj, 'cursor'),
      groups: array(obj, 'groups').map((g) => String(g)),
    }));
  }

  async #writeIndex(index: { cursor: number; groups: string[] }): Promise<void> {
    await this.#host.writeRecord(`conv/${this.#me().accountId}`, index);
  }

  #stored<T>(name: string, read: () => T): T {
    try {
      return read();
    } catch (err) {
      throw new SdkError('STORE_CORRUPT', this.#op, `record ${name} is corrupt`, { cause: err });
    }
  }

  async #readGroup(groupId: string): Promise<GroupRecord | undefined> {
    const name = `group/${groupId}`;
    const obj = await this.#host.readRecord(name);
    if (!obj) return undefined;
    return this.#stored(name, () => {
      const pending = obj.pending === undefined ? undefined : asObject(obj.pending, 'pending');
      return {
        state: bytes(obj, 'state'),
        // Records from before the cursor kept no cursor (only a group seq, which is not
        // comparable): 0, so a replayed entry is processed again and MLS rejects it.
        cursor: obj.cursor === undefined ? 0 : int(obj, 'cursor'),
        chunks: int(obj, 'chunks'),
        ...(obj.older === undefined ? {} : { older: int(obj, 'older') }),
        tail: array(obj, 'tail') as StoredMessage[],
        ...(obj.sent === undefined ? {} : { sent: int(obj, 'sent') }),
        ...(obj.out === undefined ? {} : { out: int(obj, 'out') }),
        ...(obj.peers === undefined ? {} : { peers: counters(obj.peers) }),
        ...(obj.bundleTries === undefined
          ? {}
          : {
              bundleTries: {
                cursor: int(asObject(obj.bundleTries, 'bundleTries'), 'cursor'),
                n: int(asObject(obj.bundleTries, 'bundleTries'), 'n'),
                first: int(asObject(obj.bundleTries, 'bundleTries'), 'first'),
              },
            }),
        ...(obj.key === undefined ? {} : { key: bytes(obj, 'key', 32) }),
        ...(obj.renewedAt === undefined ? {} : { renewedAt: int(obj, 'renewedAt') }),
        ...(obj.welcome ? { welcome: welcomeFrom(obj.welcome) } : {}),
        ...(pending
          ? {
              pending: {
                state: bytes(pending, 'state'),
                epoch: int(pending, 'epoch'),
                ...(pending.key === undefined ? {} : { key: bytes(pending, 'key', 32) }),
                ...(pending.welcome ? { welcome: welcomeFrom(pending.welcome) } : {}),
              },
            }
          : {}),
      };
    });
  }

  async #writeGroup(groupId: string, record: GroupRecord): Promise<void> {
    let { tail, chunks } = record;
    if (tail.length > 2 * HISTORY_CHUNK) {
      // Chunk first: a crash between the two puts leaves the messages in both places, and the
      // next flush writes the same chunk again.
      await this.#host.writeRecord(`hist/${groupId}/${chunks}`, {
        messages: tail.slice(0, HISTORY_CHUNK),
      });
      tail = tail.slice(HISTORY_CHUNK);
      chunks += 1;
    }
    await this.#host.writeRecord(`group/${groupId}`, {
      state: toBase64url(record.state),
      cursor: record.cursor,
      chunks,
      ...(record.older ? { older: record.older } : {}),
      tail,
      ...(record.sent === undefined ? {} : { sent: record.sent }),
      ...(record.out === undefined ? {} : { out: record.out }),
      ...(record.peers === undefined ? {} : { peers: record.peers }),
      ...(record.bundleTries === undefined ? {} : { bundleTries: record.bundleTries }),
      ...(record.key === undefined ? {} : { key: toBase64url(record.key) }),
      ...(record.renewedAt === undefined ? {} : { renewedAt: record.renewedAt }),
      ...(record.welcome ? { welcome: welcomeTo(record.welcome) } : {}),
      ...(record.pending
        ? {
            pending: {
              state: toBase64url(record.pending.state),
              epoch: record.pending.epoch,
              ...(record.pending.key ? { key: toBase64url(record.pending.key) } : {}),
              ...(record.pending.welcome ? { welcome: welcomeTo(record.pending.welcome) } : {}),
            },
          }
        : {}),
    });
  }

  async #keyPackages(): Promise<KeyPackages> {
    const name = `kps/${this.#me().accountId}`;
    const obj = await this.#host.readRecord(name);
    const out: KeyPackages = new Map();
    if (!obj) return out;
    return this.#stored(name, () => {
      for (const e of array(obj, 'packages')) {
        const p = asObject(e, 'package');
        out.set(str(p, 'ref'), {
          pub: str(p, 'pub'),
          priv: str(p, 'priv'),
          lastResort: p.lastResort === true,
          // Packages stored before times were kept count from now: a Welcome for one may be
          // waiting in the queue (the time is written with the next change of the record).
          at: p.at === undefined ? this.#host.now() : int(p, 'at'),
        });
      }
      if (obj.rotatedAt !== undefined) out.rotatedAt = int(obj, 'rotatedAt');
      if (obj.unsent !== undefined) {
        const u = asObject(obj.unsent, 'unsent');
        out.unsent = {
          keyPackages: array(u, 'keyPackages').map((k) => String(k)),
          ...(u.lastResort === undefined ? {} : { lastResort: str(u, 'lastResort') }),
          replace: u.replace === true,
        };
      }
      return out;
    });
  }

  async #writeKeyPackages(map: KeyPackages): Promise<void> {
    await this.#host.writeRecord(`kps/${this.#me().accountId}`, {
      packages: [...map].map(([ref, p]) => ({ ref, ...p })),
      ...(map.rotatedAt === undefined ? {} : { rotatedAt: map.rotatedAt }),
      ...(map.unsent === undefined ? {} : { unsent: map.unsent }),
    });
  }

  // ---- identities and manifests ------------------------------------------------------------

  /** A contact's newest manifest, verified: its identity key pinned on first sight (TOFU). */
  async #manifestOf(accountId: string, fresh: boolean | 'now' = false): Promise<ManifestBody> {
    const me = this.#me();
    if (accountId === me.accountId) return this.#host.ownManifest(fresh !== false);
    const pinned = await this.#pinOf(accountId);
    const recent = pinned && this.#host.now() - pinned.checkedAt < MANIFEST_TTL_MS;
    if (pinned && (fresh === false || (fresh === true && recent))) return pinned.body;
    const res = await this.#request(
      'GET',
      `/v1/accounts/${encodeURIComponent(accountId)}/manifest`,
    );
    const manifest = this.#shape('account manifest', () => {
      const m = asObject(res.manifest, 'manifest');
      return { body: bytes(m, 'body'), signature: bytes(m, 'signature') };
    });
    let body: ManifestBody;
    try {
      // First sight of a contact: its identity key is pinned from this manifest (trust on first
      // use, conversation-v1 §6), whatever its seq — other accounts' manifest histories are
      // not served. From then on, only a manifest signed by that key and not older is taken.
      const identityKey = pinned?.body.identityKey ?? firstSightIdentity(manifest);
      body = await verifyManifest(manifest, {
        accountId,
        ...(identityKey ? { identityKey } : {}),
        ...(pinned ? { trusted: pinned.manifest } : {}),
      });
    } catch (err) {
      // A rolled-back manifest (a revoked device brought back), another identity key, a fork.
      const code = ProtocolError.is(err) ? err.code : 'INVALID_MANIFEST';
      if (code === 'MANIFEST_GAP' && pinned) {
        body = await this.#verifyPinned(manifest, accountId, pinned);
      } else {
        throw this.#violation(code, `the manifest of account ${accountId} does not verify`, err);
      }
    }
    const pin: ContactPin = { manifest, body, checkedAt: this.#host.now() };
    this.#contacts.set(accountId, pin);
    await this.#host.writeRecord(`contact/${accountId}`, {
      body: toBase64url(manifest.body),
      signature: toBase64url(manifest.signature),
    });
    return body;
  }

  /** A later manifest with the pinned identity key, when the ones between are not available. */
  async #verifyPinned(
    manifest: SignedManifest,
    accountId: string,
    pinned: ContactPin,
  ): Promise<ManifestBody> {
    try {
      const body = await verifyManifest(manifest, {
        accountId,
        identityKey: pinned.body.identityKey,
      });
      if (body.seq <= pinned.body.seq) throw new Error('not newer');
      return body;
    } catch (err) {
      throw this.#violation(
        'MANIFEST_ROLLBACK',
        `the manifest of account ${accountId} does not verify`,
        err,
      );
    }
  }

  /**
   * The pin of a contact: the newer of the one in memory and the one stored. Another process on
   * this home may have pinned a newer manifest since this one looked (it runs under the same
   * lock, between our operations): a pin from memory alone would take back, as not older than
   * what it trusts, a manifest the home had already moved past (a revoked device brought back),
   * and store it over the newer one.
   */
  async #pinOf(accountId: string): Promise<ContactPin | undefined> {
    const cached = this.#contacts.get(accountId);
    const obj = await this.#host.readRecord(`contact/${accountId}`);
    if (!obj) return cached;
    const manifest = this.#stored(`contact/${accountId}`, () => ({
      body: bytes(obj, 'body'),
      signature: bytes(obj, 'signature'),
    }));
    if (
      cached &&
      constantTimeEqual(cached.manifest.body, manifest.body) &&
      constantTimeEqual(cached.manifest.signature, manifest.signature)
    ) {
      return cached;
    }
    const stored = await this.#readPin(accountId, manifest);
    // A newer one in memory: its write failed, and the next lookup writes it again.
    if (cached && cached.body.seq > stored.body.seq) return cached;
    this.#contacts.set(accountId, stored);
    return stored;
  }

  async #readPin(accountId: string, manifest: SignedManifest): Promise<ContactPin> {
    let body: ManifestBody;
    try {
      const identityKey = firstSightIdentity(manifest);
      body = await verifyManifest(manifest, { accountId, ...(identityKey ? { identityKey } : {}) });
    } catch (err) {
      throw new SdkError('STORE_CORRUPT', this.#op, `record contact/${accountId} is corrupt`, {
        cause: err,
      });
    }
    return { manifest, body, checkedAt: 0 };
  }

  /** MLS credential check: the identity's account lists the device with exactly this key. */
  async #validateCredential(identity: Uint8Array, key: Uint8Array): Promise<boolean> {
    const id = parseMemberIdentity(identity);
    if (!id) return false;
    const listed = (body: ManifestBody) =>
      body.devices.some((d) => d.id === id.deviceId && constantTimeEqual(d.signingKey, key));
    try {
      if (listed(await this.#manifestOf(id.accountId))) return true;
      // Maybe a device added since we last looked: look again once.
      return listed(await this.#manifestOf(id.accountId, 'now'));
    } catch (err) {
      this.#noteLookupFailure(err);
      return false;
    }
  }

  /**
   * A manifest lookup that failed during an MLS operation without a verdict (the network, the
   * server, the session, the store): the operation fails as if the credential were bad, and
   * #throwLookupFailure then makes the entry fail as a whole instead, to be delivered again,
   * never skipped as forged.
   */
  #lookupFailure: unknown;

  #noteLookupFailure(err: unknown): void {
    // A verdict: the manifest does not verify, or the account is gone.
    if (SdkError.is(err, 'PROTOCOL_VIOLATION') || SdkError.is(err, 'NOT_FOUND')) return;
    this.#lookupFailure ??= err;
  }

  /** Throws the lookup failure noted since the last call, if any. */
  #throwLookupFailure(): void {
    const err = this.#lookupFailure;
    this.#lookupFailure = undefined;
    if (err !== undefined) throw err;
  }

  #names: { accountId: string; map: Map<string, string> } | undefined;

  /**
   * Sender accounts whose name claim was checked against the directory (this process). Per
   * account, not per claim: an account has one name, and the server counts every lookup
   * against this account's hourly limit (300), so a member claiming a new name in each message
   * must not cost a lookup each (using up the limit that direct, find and add need).
   */
  readonly #claimsChecked = new Map<string, number>();

  /**
   * Remembers the username a sender's message states for its account, when this device knows
   * no name for that account and the server's directory maps the name to it: a member cannot
   * pass itself off as another account, and nothing is taken on the member's word alone.
   * One claim per account is looked up, once per process, or again after
   * CLAIM_RETRY_MS when the lookup could not be made (the network, a rate limit); a refused
   * claim leaves the account shown by its id.
   */
  async #learnName(accountId: string, claimed: string | undefined): Promise<void> {
    if (claimed === undefined || (await this.#knownNames()).has(accountId)) return;
    const now = this.#host.now();
    if ((this.#claimsChecked.get(accountId) ?? -Infinity) > now) return;
    this.#claimsChecked.set(accountId, Number.POSITIVE_INFINITY);
    try {
      const res = await this.#request('GET', `/v1/users/${encodeURIComponent(claimed)}`);
      if (res.accountId === accountId) await this.#remember(accountId, claimed);
    } catch (err) {
      if (SdkError.is(err, 'STORE_CORRUPT') || SdkError.is(err, 'STORE_UNAVAILABLE')) {
        // The entry comes again (see #handle): checked again then.
        this.#claimsChecked.delete(accountId);
        throw err;
      }
      // Not confirmed now: the account stays shown by its id, and is asked about again later
      // when the lookup could not be made (an unknown name is a refusal: never again here).
      if (SdkError.is(err) && err.code !== 'NOT_FOUND')
        this.#claimsChecked.set(accountId, now + CLAIM_RETRY_MS);
    }
  }

  /** Usernames this device knows (looked up, or its own), per logged-in account. */
  async #knownNames(): Promise<Map<string, string>> {
    const { accountId, username } = this.#host.session();
    if (this.#names?.accountId !== accountId) {
      const obj = await this.#host.readRecord(`names/${accountId}`);
      const map = new Map<string, string>();
      if (obj) {
        this.#stored(`names/${accountId}`, () => {
          for (const e of array(obj, 'names')) {
            const o = asObject(e, 'name');
            map.set(str(o, 'accountId'), str(o, 'username'));
          }
        });
      }
      map.set(accountId, username);
      this.#names = { accountId, map };
    }
    return this.#names.map;
  }

  async #remember(accountId: string, username: string): Promise<void> {
    const known = await this.#knownNames();
    if (known.get(accountId) === username) return;
    // Changed in a copy, kept once stored: a write that fails leaves the name unknown, so the
    // lookup is made (and the record written) again, instead of a name only in memory.
    const map = new Map(known);
    // A name belongs to one account at a time: one freed by a deleted account and taken by a
    // new one no longer names the old.
    for (const [other, name] of map)
      if (name === username && other !== accountId) map.delete(other);
    map.set(accountId, username);
    if (map.size > MAX_KNOWN_NAMES) {
      const own = this.#me().accountId;
      for (const other of map.keys()) {
        if (other === own) continue; // never this account's own name
        map.delete(other);
        break;
      }
    }
    await this.#host.writeRecord(`names/${this.#me().accountId}`, {
      names: [...map].map(([a, u]) => ({ accountId: a, username: u })),
    });
    if (this.#names?.map === known) this.#names = { accountId: this.#names.accountId, map };
  }

  async #named(m: MemberId): Promise<ConversationMember> {
    const username = (await this.#knownNames()).get(m.accountId);
    return { accountId: m.accountId, deviceId: m.deviceId, ...(username ? { username } : {}) };
  }

  async #resolve(user: string): Promise<string> {
    if (typeof user !== 'string' || user.length === 0) {
      throw new SdkError('INVALID_ARGUMENT', this.#op, '"user" expected a username or account id');
    }
    const username = normalizeUsername(user);
    if (isId(user)) {
      // A 22-character username of base64url characters can also read as an account id (one in
      // about 18 such names does). Account ids are made by the server, so nobody can pick one
      // to match a username: an existing account with that id wins, and only when there is
      // none is the text a username.
      if (username !== user) return user;
      try {
        await this.#manifestOf(user);
        return user;
      } catch (err) {
        if (!SdkError.is(err, 'NOT_FOUND')) throw err;
      }
    }
    if (username === null) throw new SdkError('INVALID_USERNAME', this.#op, 'not a valid username');
    let res: JsonObject;
    try {
      res = await this.#request('GET', `/v1/users/${encodeURIComponent(username)}`);
    } catch (err) {
      // The server's 404 says only "not found": say what was not (the name stays out of the
      // message, which apps may log; the caller knows which name it passed).
      if (SdkError.is(err, 'NOT_FOUND') && err.status === 404) {
        throw new SdkError('NOT_FOUND', this.#op, 'no account by that username on this server', {
          cause: err,
          status: 404,
          serverCode: err.serverCode,
          detail: 'UNKNOWN_USER',
        });
      }
      throw err;
    }
    const accountId = this.#shape('user lookup', () => str(res, 'accountId'));
    if (!isId(accountId)) throw this.#violation('MALFORMED_RESPONSE', 'malformed account id');
    await this.#remember(accountId, username);
    return accountId;
  }

  // ---- key packages ------------------------------------------------------------------------

  async #newKeyPackage(): Promise<MlsKeyPackage> {
    const { accountId, deviceId, device } = this.#host.session();
    const engine = await this.#engineFor();
    return engine.createKeyPackage({
      identity: memberIdentity(accountId, deviceId),
      signatureKey: { secretKey: device.seed, publicKey: device.publicKey },
    });
  }

  /** Keeps KEY_PACKAGE_TARGET one-time key packages and a last-resort one on the server. */
  async #replenish(): Promise<void> {
    const { accountId } = this.#me();
    const now = this.#host.now();
    if (now - (this.#keyPackagesCheckedAt.get(accountId) ?? -Infinity) < SCAN_INTERVAL_MS) return;
    this.#keyPackagesCheckedAt.set(accountId, now);
    const stored = await this.#keyPackages();
    if (stored.unsent) {
      await this.#uploadKeyPackages(stored, now);
      return;
    }
    // MLS key packages expire (their lifetime, KEY_PACKAGE_LIFETIME_MS), and an expired one
    // cannot be added to a group; claims hand out the oldest first. So every
    // KEY_PACKAGE_ROTATE_MS all of them are replaced on the server at once.
    const rotate = now - (stored.rotatedAt ?? 0) >= KEY_PACKAGE_ROTATE_MS;
    let available = 0;
    let needLast = true;
    if (!rotate) {
      const res = await this.#request('GET', '/v1/key-packages/count');
      const count = this.#shape('key package count', () => ({
        available: int(res, 'available'),
        lastResort: res.lastResort === true,
      }));
      if (count.available >= KEY_PACKAGE_LOW && count.lastResort) return;
      available = count.available;
      needLast = !count.lastResort;
    }
    // Private halves a Welcome can no longer need: made before their lifetime ended and
    // delivered within the server's retention, or not at all.
    for (const [ref, p] of stored) {
      if (now - p.at > KEY_PACKAGE_KEEP_MS && !(p.lastResort && !needLast)) stored.delete(ref);
    }
    const fresh: string[] = [];
    for (let i = available; i < KEY_PACKAGE_TARGET; i++) {
      const kp = await this.#newKeyPackage();
      const pub = toBase64url(kp.publicKeyPackage);
      stored.set(await this.#ref(kp.publicKeyPackage), {
        pub,
        priv: toBase64url(kp.privateKeyPackage),
        lastResort: false,
        at: now,
      });
      fresh.push(pub);
    }
    let last: string | undefined;
    if (needLast) {
      const kp = await this.#newKeyPackage();
      last = toBase64url(kp.publicKeyPackage);
      // The one replaced is kept as a one-time package: a Welcome made with it may be on its way.
      for (const p of stored.values()) p.lastResort = false;
      stored.set(await this.#ref(kp.publicKeyPackage), {
        pub: last,
        priv: toBase64url(kp.privateKeyPackage),
        lastResort: true,
        at: now,
      });
    }
    if (fresh.length === 0 && !last) {
      await this.#writeKeyPackages(stored);
      return;
    }
    // Private halves first: a key package on the server whose private half we lost is useless.
    // The upload is kept until the server takes it, so that a failure is retried with the same
    // packages instead of piling up new ones.
    stored.unsent = {
      keyPackages: fresh.length > 0 ? fresh : [last as string],
      ...(last ? { lastResort: last } : {}),
      replace: rotate,
    };
    await this.#writeKeyPackages(stored);
    await this.#uploadKeyPackages(stored, now);
  }

  /** Sends the stored upload; once taken, forgets it (and, for a rotation, notes the time). */
  async #uploadKeyPackages(stored: KeyPackages, now: number): Promise<void> {
    const unsent = stored.unsent;
    if (!unsent) return;
    await this.#request('POST', '/v1/key-packages', {
      keyPackages: unsent.keyPackages,
      ...(unsent.lastResort ? { lastResort: unsent.lastResort } : {}),
      ...(unsent.replace ? { replace: true } : {}),
    });
    delete stored.unsent;
    if (unsent.replace) stored.rotatedAt = now;
    await this.#writeKeyPackages(stored);
  }

  async #ref(publicKeyPackage: Uint8Array): Promise<string> {
    return toBase64url((await sha256(publicKeyPackage)).subarray(0, 16));
  }

  /** One key package per device of `accountId`, each checked against its manifest. */
  async #claim(accountId: string, only?: Set<string>): Promise<Uint8Array[]> {
    const res = await this.#request(
      'POST',
      `/v1/accounts/${encodeURIComponent(accountId)}/key-packages/claim`,
    );
    const entries = this.#shape('key package claim', () =>
      array(res, 'keyPackages').map((e) => {
        const o = asObject(e, 'entry');
        return { deviceId: str(o, 'deviceId'), keyPackage: bytes(o, 'keyPackage') };
      }),
    );
    let body = await this.#manifestOf(accountId, true);
    // A device the account added since we last looked (a manifest checked within
    // MANIFEST_TTL_MS is not fetched again): look again once, as a credential check does, before
    // calling the server's offer a device the account does not list.
    if (entries.some((e) => !body.devices.some((d) => d.id === e.deviceId))) {
      body = await this.#manifestOf(accountId, 'now');
    }
    const out: Uint8Array[] = [];
    const seen = new Set<string>();
    for (const e of entries) {
      if (only && !only.has(e.deviceId)) continue;
      // A device the verified manifest does not list (a revoked one brought back, a made-up
      // one), a package of another device than the one named, or a key the device does not
      // have (swapped by the server): never added, whatever the server says.
      const device = body.devices.find((d) => d.id === e.deviceId);
      const who = await this.#identityOfPackage(e.keyPackage);
      if (
        !device ||
        seen.has(e.deviceId) ||
        who?.accountId !== accountId ||
        who.deviceId !== e.deviceId
      ) {
        throw this.#violation(
          'UNLISTED_DEVICE',
          `the server offered a key package of a device account ${accountId} does not list`,
        );
      }
      const key = await this.#keyOfPackage(e.keyPackage);
      if (!key || !constantTimeEqual(device.signingKey, key)) {
        throw this.#violation(
          'KEY_MISMATCH',
          `the server offered a key package whose key device ${e.deviceId} does not have`,
        );
      }
      seen.add(e.deviceId);
      // Expired (the device has not been online to replace its packages since): MLS refuses to
      // add it, so that device cannot be reached until it is back.
      if (await this.#expired(e.keyPackage)) continue;
      out.push(e.keyPackage);
    }
    return out;
  }

  // ---- groups ------------------------------------------------------------------------------

  async #load(groupId: string): Promise<{ record: GroupRecord; group: MlsGroup }> {
    const record = await this.#readGroup(groupId);
    if (!record) throw new SdkError('NOT_FOUND', this.#op, `no conversation ${groupId} here`);
    const engine = await this.#engineFor();
    const group = this.#stored(`group/${groupId}`, () => engine.importState(record.state));
    return { record, group };
  }

  async #infoOf(groupId: string, group: MlsGroup): Promise<ConversationInfo> {
    const engine = await this.#engineFor();
    const data = decodeConversationData(engine.groupData(group) ?? new Uint8Array(0));
    const members: ConversationMember[] = [];
    for (const m of engine.members(group)) {
      const id = parseMemberIdentity(m.identity);
      if (id) members.push(await this.#named(id));
    }
    return {
      id: groupId,
      kind: data.kind,
      name: data.name,
      admins: data.admins,
      members,
      epoch: Number(group.epoch),
      active: group.active,
    };
  }

  async info(groupId: string): Promise<ConversationInfo> {
    checkGroupId(groupId);
    const { group } = await this.#load(groupId);
    return this.#infoOf(groupId, group);
  }

  async list(): Promise<ConversationInfo[]> {
    const index = await this.#index();
    const out: ConversationInfo[] = [];
    for (const id of index.groups) {
      const { group } = await this.#load(id);
      const info = await this.#infoOf(id, group);
      if (info.kind !== 'self') out.push(info); // internal: history for new devices
    }
    return out;
  }

  /** Posts one delivery message; returns the server's seq. */
  async #post(
    groupId: string,
    body: {
      epoch: number;
      kind: 'application' | 'commit' | 'proposal' | 'welcome';
      message: Uint8Array;
      recipients: readonly ConversationMember[];
      removed?: readonly ConversationMember[];
      groupInfo?: Uint8Array;
    },
  ): Promise<number> {
    let res: JsonObject;
    try {
      res = await this.#request('POST', `/v1/groups/${groupId}/messages`, {
        epoch: body.epoch,
        kind: body.kind,
        message: toBase64url(body.message),
        recipients: body.recipients,
        ...(body.removed ? { removed: body.removed } : {}),
        ...(body.groupInfo ? { groupInfo: toBase64url(body.groupInfo) } : {}),
      });
    } catch (err) {
      if (!SdkError.is(err) || err.serverCode !== 'FORBIDDEN') throw err;
      // The server stopped routing to a recipient: a device its account revoked (the server
      // ends a revoked device's routes at once, and takes no Welcome to it). Leave out the
      // devices the members' newest manifests no longer list, and try once more; the MLS
      // removal follows by the policy.
      const kept: ConversationMember[] = [];
      for (const r of body.recipients) {
        const manifest = await this.#manifestOf(r.accountId, 'now').catch(() => undefined);
        if (!manifest || manifest.devices.some((d) => d.id === r.deviceId)) kept.push(r);
      }
      if (kept.length < body.recipients.length) {
        return this.#post(groupId, { ...body, recipients: kept });
      }
      if (body.kind !== 'welcome' && (await this.#routed(groupId))) {
        // This device is routed, so a member is not yet: one whose Welcome its adder has not
        // posted yet. Not a matter of this device's password; worth trying again later.
        throw new SdkError(
          'CONFLICT',
          this.#op,
          'the server does not route to every member yet (a welcome was not delivered): try again later',
          { cause: err, detail: 'RECIPIENT_UNROUTED', retryable: true, status: err.status },
        );
      }
      throw err;
    }
    return this.#shape('delivery', () => int(res, 'seq'));
  }

  /** Whether the server routes this device's messages in the group (it is in its routing set). */
  async #routed(groupId: string): Promise<boolean> {
    try {
      await this.#request('GET', `/v1/groups/${groupId}/info`);
      return true;
    } catch {
      return false;
    }
  }

  async #recipients(group: MlsGroup): Promise<ConversationMember[]> {
    const engine = await this.#engineFor();
    const me = this.#me();
    const out: ConversationMember[] = [];
    for (const m of engine.members(group)) {
      const id = parseMemberIdentity(m.identity);
      if (id && !(id.accountId === me.accountId && id.deviceId === me.deviceId)) out.push(id);
    }
    return out;
  }

  /**
   * Makes and sends one commit, saving it as pending first so that a crash between sending and
   * the answer is recovered (see #checkPending). On EPOCH_CONFLICT, catches up and retries.
   */
  async #commit(
    groupId: string,
    make: (
      engine: GroupEngine,
      group: MlsGroup,
      record: GroupRecord,
    ) => Promise<{
      group: MlsGroup;
      commit: Uint8Array;
      welcome?: Uint8Array;
    }>,
  ): Promise<MlsGroup> {
    const engine = await this.#engineFor();
    if ((await this.#readGroup(groupId))?.pending) {
      // An earlier commit of ours is unsettled (its answer lost, a crash, a write that failed),
      // and the server may have taken it. This one's pending would replace it in the record: a
      // crash or failed write before this one's answer lost the commit the group is at, its
      // state and its Welcome with it (the devices it added never routed, so every member's
      // send refused). The queue pass, scanning again, settles it first.
      this.#scanFor = undefined;
      await this.#syncNow();
    }
    for (let attempt = 0; ; attempt++) {
      const { record, group } = await this.#load(groupId);
      // MLS lets no member commit while its own removal is proposed (the commit would carry
      // it): refused here, in words, instead of as a message the engine rejects.
      if (leaving(engine, group)) {
        throw new SdkError(
          'NOT_FOUND',
          this.#op,
          'this device asked to leave the conversation: it changes nothing there any more',
        );
      }
      // What the commit needs of the old epoch is read before `make` moves past it: the engine
      // refuses a handle an operation has replaced.
      const epoch = Number(group.epoch);
      const beforeList = await this.#recipients(group);
      const beforeIdentities = engine.members(group).map((m) => toBase64url(m.identity));
      const out = await make(engine, group, record);
      const key = await this.#keyAfter(groupId, engine, beforeIdentities, out.group, record.key);
      const groupInfo = await this.#sealGroupInfo(groupId, out.group, key);
      const before = new Set(beforeList.map((m) => `${m.accountId}.${m.deviceId}`));
      const afterList = await this.#recipients(out.group);
      const after = new Set(afterList.map((m) => `${m.accountId}.${m.deviceId}`));
      const removed = beforeList.filter((m) => !after.has(`${m.accountId}.${m.deviceId}`));
      const newcomers = afterList.filter((m) => !before.has(`${m.accountId}.${m.deviceId}`));
      const welcome: Welcome | undefined =
        out.welcome && newcomers.length > 0
          ? { message: out.welcome, epoch: Number(out.group.epoch), recipients: newcomers }
          : undefined;
      const pending = {
        state: engine.exportState(out.group),
        epoch,
        ...(key ? { key } : {}),
        ...(welcome ? { welcome } : {}),
      };
      await this.#writeGroup(groupId, { ...record, pending });
      try {
        await this.#post(groupId, {
          epoch,
          kind: 'commit',
          message: out.commit,
          // Everyone in the old epoch that stays or goes; newcomers get the Welcome.
          recipients: beforeList,
          ...(removed.length ? { removed } : {}),
          ...(groupInfo ? { groupInfo } : {}),
        });
      } catch (err) {
        if (lostEpochRace(err, attempt)) {
          await this.#writeGroup(groupId, { ...record });
          await this.#catchUpAfterConflict(groupId, epoch, attempt);
          continue;
        }
        if (refusedByServer(err)) {
          await this.#writeGroup(groupId, { ...record }); // refused: nothing happened
        } else {
          this.#scanFor = undefined; // outcome unknown: the next sync settles it
        }
        throw err;
      }
      // The record's cursor stays: entries of this group queued before the commit are still to
      // be processed (the engine keeps past epochs' keys for late messages).
      const next: GroupRecord = {
        ...record,
        // Counters of the old epoch's members: entries queued before this commit (a removed
        // device's last messages among them) are still to be processed, gaps and all.
        ...peersIn(record, before),
        state: pending.state,
        ...(key ? { key } : {}),
        sent: 0,
        renewedAt: this.#host.now(),
        ...(welcome ? { welcome } : {}),
      };
      delete next.pending; // taken; an older one left unsettled lost to it (same epoch)
      await this.#writeOrRescan(groupId, next);
      try {
        await this.#sendWelcome(groupId, next);
      } catch {
        this.#scanFor = undefined; // the commit is in; the next sync posts the Welcome again
      }
      return out.group;
    }
  }

  /**
   * Writes the record of a commit the server took. Until this write lands, the stored record
   * holds the commit as pending, and only the scan of #syncNow settles a pending commit — once
   * per process. So a write that fails here (the commit's Welcome still in the pending, never
   * posted: the added devices stay unrouted and every member's send is refused) makes the next
   * sync scan again; left to a later process, this one's next conflict would rejoin by an
   * external commit and drop the pending commit, its Welcome with it, for good.
   */
  async #writeOrRescan(groupId: string, record: GroupRecord): Promise<void> {
    try {
      await this.#writeGroup(groupId, record);
    } catch (err) {
      this.#scanFor = undefined;
      throw err;
    }
  }

  /**
   * After EPOCH_CONFLICT on a post made at `epoch`: catches up, the commit that moved the group
   * being in this device's queue. Unless it never reaches this device (the server dropped it or
   * let it expire, or it came garbled and MLS rejected it): then the catch-up leaves the group
   * at `epoch`, every retry meets the same conflict, and the device could send nothing at all
   * for as long as no other member wrote (only an entry of a later epoch made it rejoin). So a
   * conflict that a catch-up did not resolve makes it rejoin from the sealed GroupInfo, as such
   * an entry would; once per call (after the first conflict: the server queues a commit to
   * every member in the transaction that moves the epoch, so a race lost to one that reaches
   * this device is resolved by that first catch-up). The server's word moves nothing by itself:
   * #resync joins only from a GroupInfo that only members can seal, past this device's epoch.
   */
  async #catchUpAfterConflict(groupId: string, epoch: number, attempt: number): Promise<void> {
    await this.#catchUp();
    if (attempt !== 0) return;
    const { record, group } = await this.#load(groupId);
    if (!group.active || Number(group.epoch) !== epoch) return;
    // The catch-up's own queue pass rejoined once already (and failed): not twice per call.
    if (this.#resynced.has(groupId)) return;
    // The server's word that the group moved is not enough: only a GroupInfo a member sealed
    // past this device's epoch (or at it, on another branch) shows it missed something. A
    // server answering EPOCH_CONFLICT while the group stands still must not make it rejoin.
    if (!(await this.#movedPast(groupId, record, group))) return;
    this.#resynced.add(groupId);
    try {
      const again = await this.#resync(groupId, record);
      if (again) {
        this.#unreported.push({
          type: 'resynced',
          conversation: await this.#infoOf(groupId, again),
        });
      }
    } catch (err) {
      // Reported as #handle reports a failed rejoin; the retry then fails as it did before.
      this.#unreported.push(
        this.#errorEvent(
          groupId,
          SdkError.is(err) ? (err.detail ?? err.code) : 'RESYNC_FAILED',
          'could not rejoin the conversation',
          err,
        ),
      );
    }
  }

  /**
   * A commit saved as pending and never confirmed (a crash, or a connection lost, between
   * sending and the answer): did the server take it? Not if the group is still at its epoch.
   * If the group moved on, the queue decides by what MLS authenticates (#handle): an entry
   * that only the pending state can process means ours was taken; another member's commit
   * that the state before ours processes means theirs was. What the server says about an
   * entry (its kind, its epoch) decides nothing. Returns the server's epoch when it moved.
   */
  async #checkPending(groupId: string, record: GroupRecord): Promise<number | undefined> {
    const pending = record.pending;
    if (!pending) return undefined;
    let epoch: number;
    try {
      const res = await this.#request('GET', `/v1/groups/${groupId}/info`);
      epoch = this.#shape('group info', () => int(res, 'epoch'));
    } catch (err) {
      if (!SdkError.is(err, 'REAUTH_REQUIRED')) throw err;
      // No longer a member. Ours may still have been taken before another member's commit
      // took this device out: the queue brings that commit, and settles ours with it.
      return undefined;
    }
    if (epoch === pending.epoch) {
      await this.#writeGroup(groupId, withoutPending(record));
      return undefined;
    }
    return epoch;
  }

  /**
   * Our pending commit was taken: its state becomes the group's, and its Welcome is posted
   * (a Welcome that fails now is posted again by the next sync).
   */
  async #adoptPending(groupId: string, record: GroupRecord): Promise<GroupRecord> {
    const pending = record.pending;
    if (!pending) return record;
    const next: GroupRecord = {
      ...withoutPending(record),
      state: pending.state,
      ...(pending.key ? { key: pending.key } : {}),
      ...(pending.welcome ? { welcome: pending.welcome } : {}),
      sent: 0,
      renewedAt: this.#host.now(),
    };
    await this.#writeGroup(groupId, next);
    try {
      await this.#sendWelcome(groupId, next);
    } catch (err) {
      if (SdkError.is(err, 'STORE_CORRUPT')) throw err;
      this.#scanFor = undefined;
    }
    return (await this.#readGroup(groupId)) ?? next;
  }

  /**
   * A pending commit the queue did not settle though the group moved on: the server's sealed
   * GroupInfo (which only members can have sealed) decides. At the pending commit's epoch with
   * its transcript hash: ours was taken. At that epoch with another one: another member's
   * commit took the epoch and never reached this device (the next entry of a later epoch makes
   * it rejoin). Otherwise (no key, no GroupInfo, one that does not open, or of another epoch)
   * ours is kept, as no other commit for its epoch reached this device.
   */
  async #settleByGroupInfo(groupId: string, record: GroupRecord): Promise<void> {
    const pending = record.pending;
    if (!pending) return;
    const engine = await this.#engineFor();
    const ours = engine.epochOf(engine.importState(pending.state));
    const key = pending.key ?? record.key;
    let server: { epoch: number; info: Uint8Array } | undefined;
    try {
      server = key ? await this.#serverGroupInfo(groupId, { ...record, key }) : undefined;
    } catch (err) {
      if (!SdkError.is(err, 'PROTOCOL_VIOLATION')) {
        this.#scanFor = undefined; // try again on the next sync
        throw err;
      }
    }
    let theirs: { epoch: bigint; transcriptHash: Uint8Array } | undefined;
    try {
      theirs = server ? engine.epochOfGroupInfo(server.info) : undefined;
    } catch {
      theirs = undefined;
    }
    if (
      theirs &&
      theirs.epoch === ours.epoch &&
      !constantTimeEqual(theirs.transcriptHash, ours.transcriptHash)
    ) {
      await this.#writeGroup(groupId, withoutPending(record));
    } else {
      await this.#adoptPending(groupId, record);
    }
  }

  /** Posts a Welcome left in the record (after its commit was taken), then clears it. */
  async #sendWelcome(groupId: string, record: GroupRecord): Promise<void> {
    const welcome = record.welcome;
    if (!welcome) return;
    try {
      await this.#post(groupId, {
        epoch: welcome.epoch,
        kind: 'welcome',
        message: welcome.message,
        recipients: welcome.recipients,
      });
    } catch (err) {
      // The network, or a refusal that clears up (the device's welcome cap is full, its
      // manifest kept changing, a rate limit): kept, and tried again by the next sync. A
      // stranger can fill a device's welcome cap, so dropping on QUEUE_FULL would let anyone
      // stop a real add for good (the group then cannot send until the device is removed).
      if (!refusedByServer(err) || welcomeMayPassLater(err)) throw err;
      // The group is past the Welcome's epoch: this one was posted before, and only the write
      // that cleared it failed (or a crash came first). Nothing moves a group on while a
      // Welcome is owed: every commit names the newcomers, and the server refuses recipients
      // it does not route (RECIPIENT_UNROUTED) until their Welcome is in. Dropped in silence.
      if (!SdkError.is(err) || err.serverCode !== 'EPOCH_CONFLICT') {
        // Refused for good: dropped, and said, rather than tried again at every sync.
        this.#unreported.push(
          this.#errorEvent(groupId, 'WELCOME_REFUSED', 'the server refused a welcome', err),
        );
      }
    }
    const latest = (await this.#readGroup(groupId)) ?? record;
    const next = { ...latest };
    delete next.welcome;
    await this.#writeGroup(groupId, next);
  }

  /**
   * The conversation key after a commit from `before` (its members' identities, b64url) to
   * `after`: when the commit took a member out (an account, a device, one who left), a secret
   * of the new epoch (MLS-Exporter "coffer/v1/conversation-key", context the group id) that
   * everyone still in derives alike and the removed cannot; otherwise `key` as it was (spec
   * §4.6).
   */
  async #keyAfter(
    groupId: string,
    engine: GroupEngine,
    before: readonly string[],
    after: MlsGroup,
    key: Uint8Array | undefined,
  ): Promise<Uint8Array | undefined> {
    if (!after.active) return key;
    const staying = new Set(engine.members(after).map((m) => toBase64url(m.identity)));
    if (before.every((m) => staying.has(m))) return key;
    return engine.exportSecret(after, CONVERSATION_KEY_LABEL, fromBase64url(groupId), 32);
  }

  /** The GroupInfo of `group`'s epoch, sealed under the conversation key (none without a key). */
  async #sealGroupInfo(
    groupId: string,
    group: MlsGroup,
    key: Uint8Array | undefined,
  ): Promise<Uint8Array | undefined> {
    if (!key) return undefined;
    const info = await (await this.#engineFor()).groupInfo(group);
    const aead = await importAeadKey(key, { id: 'conversation' });
    return encrypt(aead, info, { context: utf8Encode(`${GROUP_INFO_CONTEXT}/${groupId}`) });
  }

  /** The server's current epoch and the GroupInfo it keeps, opened (none without a key). */
  async #serverGroupInfo(
    groupId: string,
    record: GroupRecord,
  ): Promise<{ epoch: number; info: Uint8Array; key: Uint8Array } | undefined> {
    if (!record.key) return undefined;
    const res = await this.#request('GET', `/v1/groups/${groupId}/info`);
    const { epoch, sealed } = this.#shape('group info', () => ({
      epoch: int(res, 'epoch'),
      sealed: res.groupInfo === null ? undefined : bytes(res, 'groupInfo'),
    }));
    if (!sealed) return undefined;
    try {
      const aead = await importAeadKey(record.key, { id: 'conversation' });
      const info = await decrypt(aead, sealed, {
        context: utf8Encode(`${GROUP_INFO_CONTEXT}/${groupId}`),
      });
      return { epoch, info, key: record.key };
    } catch (err) {
      throw this.#violation('INVALID_GROUP_INFO', 'the stored group info does not open', err);
    }
  }

  /**
   * Whether the sealed GroupInfo the server keeps shows the group past this device's epoch, or
   * at it on another branch (under our unsettled commit's key first, as #resync opens it).
   */
  async #movedPast(groupId: string, record: GroupRecord, group: MlsGroup): Promise<boolean> {
    const key = record.pending?.key;
    const server =
      (key
        ? await this.#serverGroupInfo(groupId, { ...record, key }).catch(() => undefined)
        : undefined) ?? (await this.#serverGroupInfo(groupId, record).catch(() => undefined));
    if (!server) return false;
    const engine = await this.#engineFor();
    let theirs: { epoch: bigint; transcriptHash: Uint8Array };
    try {
      theirs = engine.epochOfGroupInfo(server.info);
    } catch {
      return false;
    }
    const ours = engine.epochOf(group);
    return (
      theirs.epoch > ours.epoch ||
      (theirs.epoch === ours.epoch &&
        !constantTimeEqual(theirs.transcriptHash, ours.transcriptHash))
    );
  }

  /**
   * Whether this device is on another branch than the group's (a fork: the server gave members
   * different commits for one epoch): the server's GroupInfo is at this device's epoch with
   * another transcript hash.
   */
  async #forked(groupId: string, record: GroupRecord, group: MlsGroup): Promise<boolean> {
    const server = await this.#serverGroupInfo(groupId, record).catch(() => undefined);
    if (!server) return false;
    const engine = await this.#engineFor();
    const theirs = engine.epochOfGroupInfo(server.info);
    const ours = engine.epochOf(group);
    return (
      theirs.epoch === ours.epoch && !constantTimeEqual(theirs.transcriptHash, ours.transcriptHash)
    );
  }

  /**
   * Rejoins a conversation this device fell out of step with (commits it never got: withheld,
   * or past the server's retention): opens the sealed GroupInfo the server keeps, and rejoins
   * in place of its old leaf by an external commit (RFC 9420 §12.4.3.2). What it missed stays
   * unreadable (forward secrecy); from here on it reads and sends again.
   */
  async #resync(groupId: string, record: GroupRecord): Promise<MlsGroup | undefined> {
    const engine = await this.#engineFor();
    // Our unsettled commit may have taken the epoch (one that removed a member re-keyed the
    // conversation): the server's GroupInfo is then sealed under its key.
    const key = record.pending?.key;
    const server =
      (key
        ? await this.#serverGroupInfo(groupId, { ...record, key }).catch(() => undefined)
        : undefined) ?? (await this.#serverGroupInfo(groupId, record));
    if (!server) return undefined;
    const { epoch, info } = server;
    const held = engine.importState(record.state).epoch;
    const out = await engine.joinExternal(info, await this.#newKeyPackage(), { resync: true });
    // A GroupInfo older than the group's epoch would put this device on a branch nobody
    // follows, silently: the server's two answers must agree. Nor may they agree on the past:
    // a GroupInfo of an epoch before the one this device holds (one the server kept, served
    // again with the epoch it was at then) would roll the conversation back (its members,
    // admins and name) on this device. A fork is rejoined from the group's GroupInfo at this
    // device's own epoch, so the join always lands past it.
    if (out.group.epoch !== BigInt(epoch) + 1n || out.group.epoch <= held) {
      throw this.#violation(
        'STALE_GROUP_INFO',
        'the stored group info is not of the epoch the server says the group is at',
      );
    }
    const data = decodeConversationData(engine.groupData(out.group) ?? new Uint8Array(0));
    const verdict = checkJoinedConversation(data, engine.members(out.group), this.#me());
    if (verdict !== true)
      throw this.#violation('COMMIT_NOT_ALLOWED', `refused to rejoin: ${verdict}`);
    const groupKey = server.key;
    const groupInfo = await this.#sealGroupInfo(groupId, out.group, groupKey);
    // Pending before it is posted, like any commit of ours: a crash between the two leaves it
    // for the queue or the GroupInfo to settle, not a leaf of ours nobody holds the keys of.
    const before = withoutPending(record); // an older commit of ours is moot after a rejoin
    await this.#writeGroup(groupId, {
      ...before,
      pending: {
        state: engine.exportState(out.group),
        epoch,
        ...(groupKey ? { key: groupKey } : {}),
      },
    });
    try {
      await this.#post(groupId, {
        epoch,
        kind: 'commit',
        message: out.commit,
        recipients: await this.#recipients(out.group),
        ...(groupInfo ? { groupInfo } : {}),
      });
    } catch (err) {
      // Refused: the key the group's GroupInfo opened with is the conversation's now (it was
      // our unsettled commit's, if that one's), for the next try.
      if (refusedByServer(err))
        await this.#writeGroup(groupId, { ...before, ...(groupKey ? { key: groupKey } : {}) });
      else this.#scanFor = undefined; // outcome unknown: the next sync settles it
      throw err;
    }
    await this.#writeOrRescan(groupId, {
      ...before,
      ...(groupKey ? { key: groupKey } : {}),
      state: engine.exportState(out.group),
      sent: 0,
      renewedAt: this.#host.now(),
    });
    return out.group;
  }

  async #createGroup(data: ConversationData): Promise<{ groupId: string; group: MlsGroup }> {
    const engine = await this.#engineFor();
    const groupId = toBase64url(randomBytes(16));
    const group = await engine.createGroup(
      fromBase64url(groupId),
      await this.#newKeyPackage(),
      encodeConversationData(data),
    );
    // Creation is the first commit (spec "Delivery"): an epoch-0 commit with no recipients.
    const out = await engine.selfUpdate(group);
    const key = randomBytes(32);
    const groupInfo = await this.#sealGroupInfo(groupId, out.group, key);
    await this.#post(groupId, {
      epoch: 0,
      kind: 'commit',
      message: out.commit,
      recipients: [],
      ...(groupInfo ? { groupInfo } : {}),
    });
    await this.#writeGroup(groupId, {
      key,
      state: engine.exportState(out.group),
      cursor: 0,
      tail: [],
      chunks: 0,
      sent: 0,
      renewedAt: this.#host.now(),
    });
    const index = await this.#index();
    index.groups.push(groupId);
    await this.#writeIndex(index);
    return { groupId, group: out.group };
  }

  async #addAccounts(
    groupId: string,
    accountIds: readonly string[],
    claimed?: Uint8Array[],
  ): Promise<MlsGroup> {
    let preclaimed = claimed;
    return this.#commit(groupId, async (engine, group, record) => {
      const present = new Set(
        engine.members(group).map((m) => {
          const id = parseMemberIdentity(m.identity);
          return id ? `${id.accountId}.${id.deviceId}` : '';
        }),
      );
      const packages: Uint8Array[] = preclaimed ?? (await this.#claimAll(accountIds));
      preclaimed = undefined; // a retry after an epoch conflict claims afresh
      // Claims hand out one package per listed device; keep those not yet in the group.
      const wanted: Uint8Array[] = [];
      for (const kp of packages) {
        const identity = await this.#identityOfPackage(kp);
        if (identity && !present.has(`${identity.accountId}.${identity.deviceId}`)) wanted.push(kp);
      }
      if (wanted.length === 0) {
        throw new SdkError(
          'CONFLICT',
          this.#op,
          'no device to add: every listed device is already a member or has no key package',
        );
      }
      const out = await engine.addMembers(
        group,
        wanted,
        record.key ? { welcomeData: record.key } : {},
      );
      return out;
    });
  }

  async #claimAll(accountIds: readonly string[]): Promise<Uint8Array[]> {
    const packages: Uint8Array[] = [];
    for (const accountId of accountIds) {
      for (const kp of await this.#claim(accountId)) packages.push(kp);
    }
    return packages;
  }

  async #keyOfPackage(kp: Uint8Array): Promise<Uint8Array | undefined> {
    const engine = await this.#engineFor();
    try {
      return (await engine.inspectKeyPackage(kp)).signaturePublicKey;
    } catch {
      return undefined;
    }
  }

  /** Whether a key package's MLS lifetime is over (ts-mls checks it against Date.now()). */
  async #expired(kp: Uint8Array): Promise<boolean> {
    const engine = await this.#engineFor();
    return (await engine.inspectKeyPackage(kp)).notAfter.getTime() < Date.now();
  }

  async #identityOfPackage(kp: Uint8Array): Promise<MemberId | undefined> {
    const engine = await this.#engineFor();
    try {
      return parseMemberIdentity((await engine.inspectKeyPackage(kp)).identity);
    } catch {
      return undefined;
    }
  }

  // ---- public operations -------------------------------------------------------------------

  async find(user: string): Promise<ConversationInfo | undefined> {
    this.#op = 'conversations.find';
    const other = await this.#resolve(user);
    // This account is an admin of every 1:1 conversation it is in: none is "with" itself.
    if (other === this.#me().accountId) return undefined;
    let found: ConversationInfo | undefined;
    for (const id of (await this.#index()).groups) {
      const info = await this.info(id);
      if (info.kind !== 'direct' || !info.admins.includes(other)) continue;
      if (info.active) return info;
      found = info;
    }
    return found;
  }

  async direct(user: string): Promise<ConversationInfo> {
    this.#op = 'conversations.direct';
    const other = await this.#resolve(user);
    const me = this.#me();
    if (other === me.accountId) {
      throw new SdkError(
        'INVALID_ARGUMENT',
        this.#op,
        'a direct conversation needs another account',
      );
    }
    await this.#replenish();
    await this.#catchUp();
    for (const id of (await this.#index()).groups) {
      const info = await this.info(id);
      // One the other account is not in (its add failed) reaches nobody: never reused.
      if (
        info.kind === 'direct' &&
        info.active &&
        info.admins.includes(other) &&
        info.members.some((m) => m.accountId === other)
      ) {
        return info;
      }
    }
    await this.#manifestOf(other, true);
    const accounts =
      (await this.#host.ownManifest(false)).devices.length > 1 ? [other, me.accountId] : [other];
    // Claimed and checked before the group exists, so a refusal leaves nothing behind.
    const claimed = await this.#claimAll(accounts);
    if (claimed.length === 0 || !(await this.#anyOf(claimed, other))) {
      throw new SdkError(
        'CONFLICT',
        this.#op,
        'the other account has no device to add yet (no key package): try again once it has synced',
      );
    }
    const { groupId } = await this.#createGroup({
      kind: 'direct',
      name: '',
      admins: [me.accountId, other],
    });
    try {
      return this.#infoOf(groupId, await this.#addAccounts(groupId, accounts, claimed));
    } catch (err) {
      // Certainly not added (nothing left in flight): a conversation of this device alone is
      // not kept. One whose commit's outcome is unknown stays, for the next sync to settle.
      if (!(await this.#readGroup(groupId))?.pending) await this.#forget(groupId);
      throw err;
    }
  }

  /** Whether one of `packages` is of a device of `accountId`. */
  async #anyOf(packages: readonly Uint8Array[], accountId: string): Promise<boolean> {
    for (const kp of packages) {
      if ((await this.#identityOfPackage(kp))?.accountId === accountId) return true;
    }
    return false;
  }

  /** Drops a conversation from this device (its record and its place in the index). */
  async #forget(groupId: string): Promise<void> {
    const index = await this.#index();
    index.groups = index.groups.filter((g) => g !== groupId);
    await this.#writeIndex(index);
    await this.#host.deleteRecord(`group/${groupId}`);
  }

  async create(options: { name: string; members?: readonly string[] }): Promise<ConversationInfo> {
    this.#op = 'conversations.create';
    if (typeof options !== 'object' || options === null || typeof options.name !== 'string') {
      throw new SdkError('INVALID_ARGUMENT', this.#op, '"name" expected a string');
    }
    const me = this.#me();
    const others: string[] = [];
    for (const u of options.members ?? []) {
      const id = await this.#resolve(u);
      if (id !== me.accountId && !others.includes(id)) others.push(id);
    }
    let data: ConversationData;
    try {
      data = decodeConversationData(
        encodeConversationData({
          kind: 'group',
          name: options.name.normalize('NFC'),
          admins: [me.accountId],
        }),
      );
    } catch (err) {
      throw new SdkError('INVALID_ARGUMENT', this.#op, 'not a valid conversation name', {
        cause: err,
      });
    }
    await this.#replenish();
    const accounts = [...others];
    if ((await this.#host.ownManifest(false)).devices.length > 1) accounts.push(me.accountId);
    const claimed = await this.#claimAll(accounts);
    const { groupId, group } = await this.#createGroup(data);
    if (claimed.length === 0) return this.#infoOf(groupId, group);
    return this.#infoOf(groupId, await this.#addAccounts(groupId, accounts, claimed));
  }

  async add(groupId: string, users: readonly string[]): Promise<ConversationInfo> {
    this.#op = 'conversations.add';
    checkGroupId(groupId);
    const ids: string[] = [];
    for (const u of users) ids.push(await this.#resolve(u));
    if (ids.length === 0)
      throw new SdkError('INVALID_ARGUMENT', this.#op, '"users" expected at least one');
    const group = await this.#guard(() => this.#addAccounts(groupId, ids));
    return this.#infoOf(groupId, group);
  }

  async remove(groupId: string, users: readonly string[]): Promise<ConversationInfo> {
    this.#op = 'conversations.remove';
    checkGroupId(groupId);
    const ids = new Set<string>();
    for (const u of users) ids.add(await this.#resolve(u));
    const me = this.#me();
    if (ids.has(me.accountId)) {
      throw new SdkError('INVALID_ARGUMENT', this.#op, 'use leave() to leave a conversation');
    }
    const group = await this.#guard(() =>
      this.#commit(groupId, async (engine, g) => {
        const leaves = engine
          .members(g)
          .filter((m) => {
            const id = parseMemberIdentity(m.identity);
            return id !== undefined && ids.has(id.accountId);
          })
          .map((m) => m.leafIndex);
        if (leaves.length === 0) throw new SdkError('NOT_FOUND', this.#op, 'no such member');
        return engine.removeMembers(g, leaves);
      }),
    );
    return this.#infoOf(groupId, group);
  }

  async rename(groupId: string, name: string): Promise<ConversationInfo> {
    this.#op = 'conversations.rename';
    checkGroupId(groupId);
    const group = await this.#guard(() =>
      this.#commit(groupId, async (engine, g) => {
        const data = decodeConversationData(engine.groupData(g) ?? new Uint8Array(0));
        let encoded: Uint8Array;
        try {
          encoded = encodeConversationData({ ...data, name: String(name).normalize('NFC') });
        } catch (err) {
          throw new SdkError('INVALID_ARGUMENT', this.#op, 'not a valid conversation name', {
            cause: err,
          });
        }
        return engine.updateGroupData(g, encoded);
      }),
    );
    return this.#infoOf(groupId, group);
  }

  async setAdmin(
    groupId: string,
    users: readonly string[],
    admin: boolean,
  ): Promise<ConversationInfo> {
    this.#op = 'conversations.setAdmin';
    checkGroupId(groupId);
    if (!Array.isArray(users) || users.length === 0 || typeof admin !== 'boolean') {
      throw new SdkError(
        'INVALID_ARGUMENT',
        this.#op,
        '"users" expected at least one and "admin" a boolean',
      );
    }
    const ids = new Set<string>();
    for (const u of users) ids.add(await this.#resolve(u));
    const group = await this.#guard(() =>
      this.#commit(groupId, async (engine, g) => {
        const data = decodeConversationData(engine.groupData(g) ?? new Uint8Array(0));
        if (data.kind !== 'group') {
          throw new SdkError('INVALID_ARGUMENT', this.#op, 'only groups have admins to change');
        }
        const admins = admin
          ? [...new Set([...data.admins, ...ids])]
          : data.admins.filter((a) => !ids.has(a));
        if (admins.length === 0) {
          throw new SdkError('INVALID_ARGUMENT', this.#op, 'a group keeps at least one admin');
        }
        return engine.updateGroupData(g, encodeConversationData({ ...data, admins }));
      }),
    );
    return this.#infoOf(groupId, group);
  }

  async leave(groupId: string): Promise<void> {
    this.#op = 'conversations.leave';
    checkGroupId(groupId);
    const engine = await this.#engineFor();
    const { record, group } = await this.#load(groupId);
    const alone = engine.members(group).every((m) => m.leafIndex === group.ownLeafIndex);
    if (group.active && alone && !record.pending) {
      // Nobody else is in it to commit this device's removal (MLS lets no member commit its
      // own): asked, it would stay active for good. Dropped from this device instead; the
      // server's copy, which routes to no one else, expires with its retention.
      await this.#forget(groupId);
      return;
    }
    await this.#askToLeave(groupId);
  }

  /** Posts a request to leave (a proposal removing this device); another member commits it. */
  async #askToLeave(groupId: string): Promise<void> {
    const engine = await this.#engineFor();
    for (let attempt = 0; ; attempt++) {
      const { record, group } = await this.#load(groupId);
      const epoch = Number(group.epoch);
      const recipients = await this.#recipients(group);
      // Asked before, and not yet committed here: that request may have reached the others.
      const askedBefore = leaving(engine, group);
      const out = await this.#guard(() => engine.proposeLeave(group));
      // The proposal used a key of this device's ratchet: save before posting.
      const saved: GroupRecord = { ...record, state: engine.exportState(out.group) };
      await this.#writeGroup(groupId, saved);
      try {
        await this.#post(groupId, { epoch, kind: 'proposal', message: out.message, recipients });
        return;
      } catch (err) {
        if (lostEpochRace(err, attempt)) {
          await this.#catchUpAfterConflict(groupId, epoch, attempt);
          continue;
        }
        // Not when an earlier request is pending: withdrawLeave takes back every request of
        // this device, and the earlier one may be out (its commit, naming it, would then not
        // process here: the device would miss its own removal). It stays asked, as it was.
        if (refusedByServer(err) && !askedBefore) {
          // Nobody received it: take the request back (its ratchet key stays spent), so the
          // device goes on as a member instead of waiting for a commit of a removal never sent.
          const withdrawn = engine.withdrawLeave(out.group);
          await this.#writeGroup(groupId, { ...saved, state: engine.exportState(withdrawn) });
        } else {
          // Maybe sent, maybe not: the next sync's scan asks again (#askAgainToLeave).
          this.#scanFor = undefined;
        }
        throw err;
      }
    }
  }

  async send(
    groupId: string,
    message: string | { text?: string; attachment?: Record<string, unknown> },
  ): Promise<ConversationMessage> {
    this.#op = 'conversations.send';
    checkGroupId(groupId);
    const input = typeof message === 'string' ? { text: message } : message;
    if (typeof input !== 'object' || input === null) {
      throw new SdkError(
        'INVALID_ARGUMENT',
        this.#op,
        '"message" expected text or { text, attachment }',
      );
    }
    const id = toBase64url(randomBytes(16));
    const sentAt = this.#host.now();
    const content: MessageContent = input.attachment
      ? {
          type: 'attachment',
          attachment: input.attachment,
          ...(input.text === undefined ? {} : { text: input.text }),
          id,
          sentAt,
        }
      : { type: 'text', text: String(input.text ?? ''), id, sentAt };
    if (content.type === 'attachment') {
      try {
        decodeAttachmentDescriptor(content.attachment);
      } catch (err) {
        throw new SdkError(
          'INVALID_ARGUMENT',
          this.#op,
          '"attachment" is not an attachment descriptor',
          { cause: err },
        );
      }
    }
    return this.#sendContent(groupId, content);
  }

  /**
   * Encrypts and posts one application message. The new ratchet state and the message (in
   * this device's history) are saved in one write before posting, so a crash can never reuse a
   * key; a refused or failed post takes the message out of the history again.
   */
  async #sendContent(groupId: string, content: MessageContent): Promise<ConversationMessage> {
    await this.#knownNames();
    // Receivers who do not know this account's name check it against the server's directory.
    const username = normalizeUsername(this.#host.session().username) ?? undefined;
    const encoded = (n: number): Uint8Array => {
      try {
        return encodeContent({ ...content, n, ...(username === undefined ? {} : { username }) });
      } catch (err) {
        throw new SdkError('INVALID_ARGUMENT', this.#op, 'the message is too long or malformed', {
          cause: err,
        });
      }
    };
    encoded(1); // refuse a malformed message before anything moves
    const engine = await this.#engineFor();
    const stored = this.#storedMessage(content, this.#me());
    const keep = content.type !== 'history';
    let leaveCommitted = false;
    for (let attempt = 0; ; attempt++) {
      const { record, group } = await this.#load(groupId);
      if (!group.active || leaving(engine, group))
        throw new SdkError('NOT_FOUND', this.#op, 'this device is no longer in the conversation');
      if (!leaveCommitted && engine.pendingRemovals(group).length > 0) {
        // A member's request to leave is not committed yet (this device's commit of it failed):
        // MLS sends nothing more in this epoch until it is. Commit it, then send.
        leaveCommitted = true;
        await this.#commitLeave(groupId);
        continue;
      }
      const n = (record.out ?? 0) + 1;
      const epoch = Number(group.epoch);
      const recipients = await this.#recipients(group);
      const out = await engine.encrypt(group, encoded(n));
      const sent = (record.sent ?? 0) + 1;
      const next: GroupRecord = {
        ...record,
        state: engine.exportState(out.group),
        // Unconfirmed until the server's answer: a crash before it (the request never sent, or
        // its answer lost) leaves a message whose outcome nobody knows, and it must not show as
        // sent then. Confirmed by a second write once the server took it.
        tail: keep ? [...record.tail, { ...stored, u: 1 }] : record.tail,
        sent,
        out: n,
      };
      await this.#writeGroup(groupId, next);
      try {
        await this.#post(groupId, { epoch, kind: 'application', message: out.message, recipients });
      } catch (err) {
        // Refused (4xx): it was not sent, out of the history. Unknown (network, 5xx): it may
        // have arrived, so it stays, marked unconfirmed, and the error is thrown.
        const refused = refusedByServer(err);
        await this.#writeGroup(groupId, {
          ...next,
          tail: refused || !keep ? record.tail : [...record.tail, { ...stored, u: 1 }],
          // A refused message was never sent: its number is used again, so no gap shows.
          out: refused ? (record.out ?? 0) : n,
        });
        if (lostEpochRace(err, attempt)) {
          await this.#catchUpAfterConflict(groupId, epoch, attempt);
          continue;
        }
        throw err;
      }
      if (keep) {
        try {
          await this.#writeGroup(groupId, { ...next, tail: [...record.tail, stored] });
        } catch {
          // The message went out: failing the send now would have the app send it again. It
          // stays marked unconfirmed, which a failing store cannot make untrue.
        }
      }
      if (sent >= this.#options.selfUpdateAfterMessages) await this.#renew(groupId);
      return this.#message(groupId, stored);
    }
  }

  async history(groupId: string, limit: number): Promise<ConversationMessage[]> {
    checkGroupId(groupId);
    await this.#knownNames();
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > 10_000) {
      throw new SdkError(
        'INVALID_ARGUMENT',
        'conversations.history',
        '"limit" expected 1 to 10000',
      );
    }
    const record = await this.#readGroup(groupId);
    if (!record)
      throw new SdkError('NOT_FOUND', 'conversations.history', `no conversation ${groupId} here`);
    let messages = record.tail;
    for (const name of historyChunks(groupId, record)) {
      if (messages.length >= limit) break;
      const chunk = await this.#host.readRecord(name);
      if (chunk) messages = [...(array(chunk, 'messages') as StoredMessage[]), ...messages];
    }
    return messages.slice(-limit).map((m) => this.#message(groupId, m));
  }

  #storedMessage(content: MessageContent, sender: MemberId): StoredMessage {
    return {
      id: content.id,
      a: sender.accountId,
      d: sender.deviceId,
      t: content.sentAt,
      r: this.#host.now(),
      k: content.type === 'attachment' ? 'attachment' : 'text',
      ...('text' in content && content.text !== undefined ? { x: content.text } : {}),
      ...(content.type === 'attachment' ? { f: { ...content.attachment } } : {}),
    };
  }

  #message(groupId: string, m: StoredMessage): ConversationMessage {
    return {
      conversationId: groupId,
      id: m.id,
      sender: {
        accountId: m.a,
        deviceId: m.d,
        ...(this.#names?.map.has(m.a) ? { username: this.#names.map.get(m.a) as string } : {}),
      },
      own: m.a === this.#me().accountId,
      sentAt: m.t,
      receivedAt: m.r,
      type: m.k,
      ...(m.x === undefined ? {} : { text: m.x }),
      ...(m.f === undefined ? {} : { attachment: m.f }),
      ...(m.u === 1 ? { unconfirmed: true as const } : {}),
    };
  }

  /** Turns protocol refusals of our own actions into SDK errors. */
  async #guard<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (ProtocolError.is(err, 'COMMIT_NOT_ALLOWED')) {
        throw new SdkError(
          'REAUTH_REQUIRED',
          this.#op,
          `not allowed: ${err.message.split(': ').pop()}`,
          {
            cause: err,
            detail: 'COMMIT_NOT_ALLOWED',
          },
        );
      }
      if (ProtocolError.is(err, 'GROUP_INACTIVE')) {
        throw new SdkError('NOT_FOUND', this.#op, 'this device is no longer in the conversation', {
          cause: err,
        });
      }
      throw err;
    }
  }

  // ---- receiving ---------------------------------------------------------------------------

  async prepare(): Promise<void> {
    this.#op = 'conversations.prepare';
    this.#keyPackagesCheckedAt.delete(this.#me().accountId);
    await this.#replenish();
  }

  takeUnreported(): ConversationEvent[] {
    const events = this.#reportable();
    this.#emit(events);
    return events;
  }

  /**
   * The events found since the last report, taken. Those of the account's own conversation
   * (which carries history to its new devices: never listed, never the app's) stay inside,
   * wherever in the SDK they were found (a revoked device taken out of it, a key renewal).
   */
  #reportable(): ConversationEvent[] {
    const events = this.#unreported.filter(
      (e) => !('conversation' in e && e.conversation.kind === 'self'),
    );
    this.#unreported = [];
    return events;
  }

  async sync(): Promise<ConversationEvent[]> {
    this.#op = 'conversations.sync';
    await this.#knownNames();
    await this.#replenish();
    await this.#catchUp();
    await this.#reconcileOwnDevices();
    await this.#removeRevokedContacts();
    await this.#renewStale();
    const events = this.#reportable();
    this.#emit(events);
    return events;
  }

  /**
   * Processes the queue, then makes the commits it called for; what it finds is reported by
   * the next sync(). Nothing inside #syncNow may start another catch-up (see #handle).
   */
  async #catchUp(): Promise<void> {
    await this.#syncNow();
    await this.#commitLeaveRequests();
    await this.#askAgainToLeave();
  }

  /** Conversations where the scan found this device asking to leave, uncommitted. */
  readonly #askedToLeave = new Set<string>();
  /** Conversations where a commit voided this device's request to leave (see #handle). */
  readonly #leaveVoided = new Set<string>();

  /**
   * Posts again the requests to leave that may never have gone out. A request is saved with
   * the ratchet step it took before it is posted, so a crash (or a lost answer) in between
   * left the device waiting for a removal nobody was asked for: unable to send, and listed as
   * a member by everyone else, until another member happened to commit. Asking twice is
   * harmless (the commit removes the device once), and a request the queue pass saw committed,
   * or voided by a commit of another epoch, is not asked again.
   */
  async #askAgainToLeave(): Promise<void> {
    const ids = [...this.#askedToLeave];
    const voided = new Set(this.#leaveVoided);
    this.#askedToLeave.clear();
    this.#leaveVoided.clear();
    const engine = await this.#engineFor();
    for (const id of new Set([...ids, ...voided])) {
      const record = await this.#readGroup(id);
      const group = record ? engine.importState(record.state) : undefined;
      if (!group?.active) continue;
      // Found pending by the scan (maybe never posted): asked again while still pending.
      // Voided by a commit: asked again unless a new request was made since.
      const pending = leaving(engine, group);
      if (voided.has(id) ? pending : !pending) continue;
      try {
        await this.#askToLeave(id);
      } catch (err) {
        if (SdkError.is(err, 'STORE_CORRUPT')) throw err;
        // The network, the server: #askToLeave had the next scan find it again.
      }
    }
  }

  /** Conversations where a member asked to leave during the last queue pass. */
  readonly #leaveRequests = new Set<string>();

  /** Commits the leave requests the queue brought (any member may: spec §4.3). */
  async #commitLeaveRequests(): Promise<void> {
    const ids = [...this.#leaveRequests];
    this.#leaveRequests.clear();
    for (const id of ids) {
      try {
        await this.#commitLeave(id);
      } catch (err) {
        if (SdkError.is(err, 'STORE_CORRUPT')) throw err;
        // The network failed: this device's next commit (or send) includes the request anyway.
      }
    }
  }

  /** Commits the leave requests pending in one conversation (nothing if another member has). */
  async #commitLeave(id: string): Promise<void> {
    let committed = true;
    const g = await this.#commit(id, async (e, gr) => {
      // After a lost race and a catch-up, another member may have committed it already; and a
      // device that asked to leave itself cannot commit that (another member does).
      if (!gr.active || e.pendingRemovals(gr).length === 0 || leaving(e, gr)) {
        committed = false;
        throw new SdkError('CONFLICT', this.#op, 'committed already');
      }
      return e.selfUpdate(gr);
    }).catch((err: unknown) => {
      if (!committed && SdkError.is(err, 'CONFLICT')) return undefined;
      throw err;
    });
    if (g) this.#unreported.push({ type: 'changed', conversation: await this.#infoOf(id, g) });
  }

  /** Conversations rejoined during the current sync (one attempt each). */
  #resynced = new Set<string>();

  /**
   * Processes the queue. Events go to the unreported list as each entry's records are written,
   * so that a failure later in the same pass (an acknowledgement, the next page) loses none: the
   * entries are not delivered again, and their events are reported by the next sync().
   */
  async #syncNow(): Promise<void> {
    this.#resynced = new Set();
    this.#serverManifestSeq = undefined;
    const events = this.#unreported;
    const index = await this.#index();
    const unsettled = new Map<string, number>();
    const { accountId } = this.#me();
    if (this.#scanFor !== accountId) {
      let again = false;
      for (const id of index.groups) {
        const stored = await this.#readGroup(id);
        if (stored?.welcome) {
          try {
            await this.#sendWelcome(id, stored);
          } catch (err) {
            // Not taken now (the network): the next sync tries again, and this one goes on —
            // the members it would reach stay unrouted meanwhile (RECIPIENT_UNROUTED).
            if (!SdkError.is(err) || err.code === 'STORE_CORRUPT') throw err;
            again = true;
          }
        }
        const record = stored?.welcome ? await this.#readGroup(id) : stored;
        const moved = record ? await this.#checkPending(id, record) : undefined;
        if (moved !== undefined) unsettled.set(id, moved);
        if (record) {
          const engine = await this.#engineFor();
          const group = this.#stored(`group/${id}`, () => engine.importState(record.state));
          if (group.active && leaving(engine, group)) this.#askedToLeave.add(id);
        }
      }
      this.#scanFor = again ? undefined : accountId;
    }
    try {
      for (;;) {
        const res = await this.#request(
          'GET',
          `/v1/queue?after=${index.cursor}&limit=${QUEUE_PAGE}`,
        );
        const page = this.#shape('queue', () => ({
          manifestSeq: res.manifestSeq === undefined ? undefined : int(res, 'manifestSeq'),
          more: res.more === true,
          messages: array(res, 'messages').map((e) => {
            const o = asObject(e, 'entry');
            const sender = asObject(o.sender, 'sender');
            return {
              cursor: int(o, 'cursor'),
              groupId: str(o, 'groupId'),
              seq: int(o, 'seq'),
              epoch: int(o, 'epoch'),
              kind: str(o, 'kind'),
              sender: { accountId: str(sender, 'accountId'), deviceId: str(sender, 'deviceId') },
              message: bytes(o, 'message'),
            };
          }),
        }));
        this.#serverManifestSeq = page.manifestSeq;
        if (page.messages.length === 0) break;
        const pageStart = index.cursor;
        try {
          for (const entry of page.messages) {
            if (entry.cursor <= index.cursor) {
              throw this.#violation(
                'QUEUE_ORDER',
                'the server repeated or reordered queue cursors',
              );
            }
            if (isGroupId(entry.groupId)) {
              events.push(...(await this.#handle(entry, index)));
            } else {
              // The server's word becomes a record name (group/<id>): an id no group can have
              // would fail to store on every sync and stall the queue. Reported and skipped.
              events.push(
                this.#errorEvent(
                  entry.groupId.slice(0, 86),
                  'INVALID_GROUP_ID',
                  'a queue entry for a malformed conversation id',
                ),
              );
            }
            index.cursor = entry.cursor;
          }
        } catch (err) {
          // The entries handled before the failure are saved and their events queued for the
          // next sync to report: acknowledge them, or those that store no cursor of their own (a
          // reflected message, an unknown conversation, a refused Welcome) would be reported again.
          if (index.cursor > pageStart) {
            try {
              await this.#writeIndex(index);
              await this.#request('POST', '/v1/queue/ack', { upTo: index.cursor });
            } catch {
              // Delivered again next time, as before: the failure to report is `err`.
            }
          }
          throw err;
        }
        // Everything up to here is saved (each group record was written before): acknowledge.
        await this.#writeIndex(index);
        await this.#request('POST', '/v1/queue/ack', { upTo: index.cursor });
        if (!page.more) break;
      }
      // A pending commit whose group moved on and that no queue entry settled.
      for (const id of unsettled.keys()) {
        const record = await this.#readGroup(id);
        if (record?.pending) await this.#settleByGroupInfo(id, record);
      }
    } catch (err) {
      // The scan that found these runs once per process: a sync that fails before settling
      // them (the network, on the way through the queue) leaves them for the next one, which
      // would otherwise never look again, and the group stayed at the epoch our commit left.
      if (unsettled.size > 0) this.#scanFor = undefined;
      throw err;
    }
  }

  async #handle(
    entry: {
      groupId: string;
      cursor: number;
      epoch: number;
      kind: string;
      sender: MemberId;
      message: Uint8Array;
    },
    index: { cursor: number; groups: string[] },
  ): Promise<ConversationEvent[]> {
    const me = this.#me();
    const fail = (code: 'PROTOCOL_VIOLATION', detail: string, message: string, cause?: unknown) => [
      {
        type: 'error' as const,
        conversationId: entry.groupId,
        error: new SdkError(code, this.#op, message, { detail, ...(cause ? { cause } : {}) }),
      },
    ];
    if (entry.sender.accountId === me.accountId && entry.sender.deviceId === me.deviceId) {
      return fail(
        'PROTOCOL_VIOLATION',
        'REFLECTED',
        'the server sent this device its own message back',
      );
    }
    if (entry.kind === 'welcome') return this.#join(entry, index);
    let record = await this.#readGroup(entry.groupId);
    if (!record || !index.groups.includes(entry.groupId)) {
      return fail(
        'PROTOCOL_VIOLATION',
        'UNKNOWN_GROUP',
        'a message for a conversation this device is not in',
      );
    }
    // Delivered before (at least once, spec http-api-v1 "Delivery"), handled and not yet
    // acknowledged: already stored.
    if (entry.cursor <= record.cursor) return [];
    const engine = await this.#engineFor();
    const group = engine.importState(record.state);
    if (!group.active) return [];
    // This device asked to leave in this epoch (see the commit case below).
    const wasLeaving = leaving(engine, group);
    const identities = (g: MlsGroup) => engine.members(g).map((m) => toBase64url(m.identity));
    let before = identities(group);
    let processed: Awaited<ReturnType<GroupEngine['process']>> | undefined;
    let failure: unknown;
    this.#lookupFailure = undefined;
    try {
      processed = await engine.process(group, entry.message);
    } catch (err) {
      failure = err;
    }
    // A commit of ours whose answer was lost (see #checkPending) is settled by what MLS
    // authenticates, never by the server's word on an entry's kind or epoch.
    if (processed && record.pending && processed.result.kind === 'commit') {
      // Another member's commit that the state before ours accepts: it took the epoch (the
      // server takes one commit per epoch, and never echoes our own), so ours is void.
      record = withoutPending(record);
    } else if (!processed && record.pending) {
      // Maybe ours took the epoch and this entry follows it: then only its state reads it.
      const candidate = engine.importState(record.pending.state);
      const candidateBefore = identities(candidate);
      let taken: Awaited<ReturnType<GroupEngine['process']>> | undefined;
      try {
        taken = await engine.process(candidate, entry.message);
      } catch {
        taken = undefined; // neither reads it: a failure of the state before ours, below
      }
      if (taken) {
        processed = taken;
        before = candidateBefore;
        record = await this.#adoptPending(entry.groupId, record);
      }
    }
    if (!processed) {
      // A credential that could not be looked up is no verdict on the message: this sync fails
      // and the entry comes again.
      this.#throwLookupFailure();
      const err = failure;
      // Nothing is kept: the state stays as it was. Past the entry, so a replay cannot loop.
      await this.#writeGroup(entry.groupId, { ...record, cursor: entry.cursor });
      const code = ProtocolError.is(err) ? err.code : 'MLS_MESSAGE_REJECTED';
      const behind = BigInt(entry.epoch) > group.epoch;
      const forked =
        !behind &&
        BigInt(entry.epoch) === group.epoch &&
        !this.#resynced.has(entry.groupId) &&
        (await this.#forked(entry.groupId, record, group));
      const events: ConversationEvent[] = fail(
        'PROTOCOL_VIOLATION',
        code,
        `a message could not be authenticated or decrypted${
          behind
            ? ' (this device missed a commit: one was withheld, or the conversation forked)'
            : ''
        }`,
        err,
      );
      if (forked) {
        events.push(
          this.#errorEvent(
            entry.groupId,
            'FORK_DETECTED',
            'this device is on another branch of the conversation than the server says the group is: it was given a different commit than the others',
          ),
        );
      }
      // Behind, or on a fork: rejoin from the sealed GroupInfo, once per sync, and say so.
      if ((behind || forked) && !this.#resynced.has(entry.groupId)) {
        this.#resynced.add(entry.groupId);
        try {
          const again = await this.#resync(entry.groupId, { ...record, cursor: entry.cursor });
          if (again) {
            events.push({
              type: 'resynced',
              conversation: await this.#infoOf(entry.groupId, again),
            });
          }
        } catch (resyncError) {
          events.push(
            this.#errorEvent(
              entry.groupId,
              SdkError.is(resyncError) ? (resyncError.detail ?? resyncError.code) : 'RESYNC_FAILED',
              'could not rejoin the conversation',
              resyncError,
            ),
          );
        }
      }
      return events;
    }
    const result = processed.result;
    if (result.kind === 'application') {
      const sender = parseMemberIdentity(result.sender.identity);
      if (
        !sender ||
        sender.accountId !== entry.sender.accountId ||
        sender.deviceId !== entry.sender.deviceId
      ) {
        await this.#writeGroup(entry.groupId, { ...record, cursor: entry.cursor });
        return fail('PROTOCOL_VIOLATION', 'SENDER_MISMATCH', 'the server misattributed a message');
      }
      let content: MessageContent;
      try {
        content = decodeContent(result.plaintext);
      } catch (err) {
        await this.#writeGroup(entry.groupId, {
          ...record,
          state: engine.exportState(processed.group),
          cursor: entry.cursor,
        });
        return fail(
          'PROTOCOL_VIOLATION',
          'INVALID_CONTENT',
          'a message with malformed content',
          err,
        );
      }
      // Dropped messages: each device numbers what it sends to the conversation (inside the
      // encryption); a jump means the server kept some of this sender's messages back.
      const peer = `${sender.accountId}.${sender.deviceId}`;
      const last = record.peers?.[peer];
      const gap: ConversationEvent[] =
        content.n !== undefined && last !== undefined && content.n > last + 1
          ? [
              this.#errorEvent(
                entry.groupId,
                'MESSAGES_MISSING',
                `${content.n - last - 1} message(s) of this sender never arrived`,
              ),
            ]
          : [];
      const withPeers: GroupRecord =
        content.n === undefined
          ? record
          : { ...record, peers: { ...record.peers, [peer]: Math.max(last ?? 0, content.n) } };
      if (content.type === 'history' || record.tail.some((m) => m.id === content.id)) {
        const handled: GroupRecord = {
          ...withPeers,
          state: engine.exportState(processed.group),
          cursor: entry.cursor,
        };
        if (content.type !== 'history') {
          await this.#writeGroup(entry.groupId, handled);
          return gap;
        }
        // Only this account's own devices may hand it history, and only in its own
        // conversation: anything else claiming to be a bundle is refused, never merged.
        const kind = (await this.#infoOf(entry.groupId, processed.group)).kind;
        if (kind !== 'self' || sender.accountId !== me.accountId) {
          await this.#writeGroup(entry.groupId, handled);
          return [
            ...gap,
            this.#errorEvent(
              entry.groupId,
              'HISTORY_NOT_OWN',
              "a history bundle from outside this account's own devices",
            ),
          ];
        }
        // Merged before the entry is stored as handled: a download that fails for now (it
        // throws) or a crash in between leaves the entry to come again, and the merge adds
        // nothing twice. Stored as handled first, the bundle was lost for good either way.
        const { bundleTries, ...done } = handled;
        const now = this.#host.now();
        const tried = bundleTries?.cursor === entry.cursor ? bundleTries : undefined;
        const tries = tried?.n ?? 0;
        const first = tried?.first ?? now;
        let merged: ConversationEvent[];
        try {
          merged = await this.#receiveHistory(
            entry.groupId,
            content.attachment as Record<string, unknown>,
          );
        } catch (err) {
          if (!SdkError.is(err) || !err.retryable) throw err;
          // Not given up on a short outage that many syncs in a row meet (follow syncs at
          // every push): only after MAX_BUNDLE_TRIES syncs over BUNDLE_GIVE_UP_MS.
          if (tries + 1 < MAX_BUNDLE_TRIES || now - first < BUNDLE_GIVE_UP_MS) {
            // Counted on the record as it was (the entry stays unhandled), for the next sync.
            const current = (await this.#readGroup(entry.groupId)) ?? record;
            await this.#writeGroup(entry.groupId, {
              ...current,
              bundleTries: { cursor: entry.cursor, n: tries + 1, first },
            });
            throw err;
          }
          // A blob that fails sync after sync would hold every later entry back: given up.
          await this.#writeGroup(entry.groupId, await this.#withStoredHistory(entry.groupId, done));
          return [
            ...gap,
            this.#errorEvent(
              entry.groupId,
              'HISTORY_UNAVAILABLE',
              `a history bundle that could not be downloaded in ${MAX_BUNDLE_TRIES} syncs`,
              err,
            ),
          ];
        }
        await this.#writeGroup(entry.groupId, await this.#withStoredHistory(entry.groupId, done));
        return [...gap, ...merged];
      }
      if (content.type === 'attachment') {
        try {
          decodeAttachmentDescriptor(content.attachment);
        } catch (err) {
          await this.#writeGroup(entry.groupId, {
            ...withPeers,
            state: engine.exportState(processed.group),
            cursor: entry.cursor,
          });
          return [
            ...gap,
            this.#errorEvent(
              entry.groupId,
              'INVALID_ATTACHMENT',
              'a file message with a malformed reference',
              err,
            ),
          ];
        }
      }
      // After the message is authenticated and decrypted, before the record that marks its
      // entry handled: a store failure here fails the sync and the entry comes again, where
      // after that write it came again as a duplicate, and its event was lost.
      await this.#learnName(sender.accountId, content.username);
      const stored = this.#storedMessage(content, sender);
      await this.#writeGroup(entry.groupId, {
        ...withPeers,
        state: engine.exportState(processed.group),
        cursor: entry.cursor,
        tail: [...record.tail, stored],
      });
      return [...gap, { type: 'message', message: this.#message(entry.groupId, stored) }];
    }
    const key =
      result.kind === 'commit'
        ? await this.#keyAfter(entry.groupId, engine, before, processed.group, record.key)
        : record.key;
    await this.#writeGroup(entry.groupId, {
      ...record,
      ...(key ? { key } : {}),
      ...(result.kind === 'commit' ? peersOf(engine, processed.group, record) : {}),
      state: engine.exportState(processed.group),
      cursor: entry.cursor,
    });
    if (result.kind === 'commit') {
      if (result.removed) return [{ type: 'removed', conversationId: entry.groupId }];
      // A member committed this epoch before it had read this device's request to leave: the
      // request is void in the new epoch (MLS proposals live one epoch), and the device would
      // stay in as if it had never asked. Asked again after this pass (#askAgainToLeave).
      if (wasLeaving && processed.group.active && !leaving(engine, processed.group)) {
        this.#leaveVoided.add(entry.groupId);
      }
      return [
        { type: 'changed', conversation: await this.#infoOf(entry.groupId, processed.group) },
      ];
    }
    // A member asked to leave: commit it (any member may) so that it is out at once — once this
    // sync is over. Not from here: a commit that loses its epoch's race catches up, and a sync
    // inside this one would store an index (conversations joined, cursor) the outer sync then
    // overwrites with its own.
    if (processed.group.active && engine.pendingRemovals(processed.group).length > 0) {
      this.#leaveRequests.add(entry.groupId);
    }
    return [];
  }

  async #join(
    entry: { groupId: string; cursor: number; message: Uint8Array },
    index: { cursor: number; groups: string[] },
  ): Promise<ConversationEvent[]> {
    const engine = await this.#engineFor();
    const fail = (detail: string, message: string, cause?: unknown): ConversationEvent[] => [
      {
        type: 'error',
        conversationId: entry.groupId,
        error: new SdkError('PROTOCOL_VIOLATION', this.#op, message, {
          detail,
          ...(cause ? { cause } : {}),
        }),
      },
    ];
    // The stored record whether the index lists it or not: a join cut short between storing
    // the group and listing it (a failed write, a crash) left one that this device may have
    // used since (sent from it, asked to leave it: calls take any stored conversation). Joined
    // afresh over it, the ratchet went back to where the Welcome put it, and the next message
    // was encrypted again with a key and nonce already used.
    const existing = await this.#readGroup(entry.groupId);
    // Before the last entry of the group this device handled: delivered again (the pass that
    // handled both was cut short before its acknowledgement, by a failed write or a crash).
    // Opened again, its key package was gone by then (KEY_PACKAGE_USED), or its epoch was past
    // (WELCOME_REPLAYED) once a later entry had removed this device: errors for nothing.
    if (existing && entry.cursor < existing.cursor) return [];
    const packages = await this.#keyPackages();
    const earlier = existing ? engine.importState(existing.state) : undefined;
    if (earlier?.active) {
      // A duplicate. Delivered again after a crash (or a failed write) between storing the
      // group and listing it or deleting the key package it used: done now. That join never
      // returned its event (it failed at that write): it is reported now.
      const unlisted = !index.groups.includes(entry.groupId);
      if (unlisted || existing?.cursor === entry.cursor) {
        if (unlisted) {
          index.groups.push(entry.groupId);
          await this.#writeIndex(index);
        }
        const opened = await this.#openWelcome(engine, entry.message, packages);
        const used = opened !== undefined && !opened.lastResort;
        if (used) {
          packages.delete(opened.ref);
          await this.#writeKeyPackages(packages);
        }
        if (used || unlisted) {
          const joined = await this.#infoOf(entry.groupId, earlier);
          return joined.kind === 'self' ? [] : [{ type: 'joined', conversation: joined }];
        }
      }
      return [];
    }
    const opened = await this.#openWelcome(engine, entry.message, packages);
    if (opened) {
      const { group, key } = opened;
      // A Welcome into a conversation this device was in opens only at a later epoch: an old
      // one delivered again (a last-resort key package opens it every time) would bring a
      // removed device back into the conversation as it was.
      if (earlier && group.epoch <= earlier.epoch) {
        return fail('WELCOME_REPLAYED', 'an old welcome into a conversation this device has left');
      }
      let data: ConversationData;
      try {
        data = decodeConversationData(engine.groupData(group) ?? new Uint8Array(0));
      } catch (err) {
        return fail(
          'INVALID_CONVERSATION',
          'a welcome to something that is not a conversation',
          err,
        );
      }
      if (!constantTimeEqual(group.groupId, fromBase64url(entry.groupId))) {
        return fail('GROUP_MISMATCH', 'a welcome for another group than the server says');
      }
      const verdict = checkJoinedConversation(data, engine.members(group), this.#me());
      if (verdict !== true) return fail('COMMIT_NOT_ALLOWED', `refused a conversation: ${verdict}`);
      if (!opened.lastResort) {
        packages.delete(opened.ref); // one-time: its private half goes now
        this.#keyPackagesCheckedAt.delete(this.#me().accountId); // maybe upload more
      }
      // Added again after a removal: the history stored here stays, and so does this device's
      // message count (receivers keep the highest `n` they saw from it); what others sent
      // meanwhile was never meant for it, so their counts start afresh.
      await this.#writeGroup(entry.groupId, {
        ...(key ? { key } : {}),
        state: engine.exportState(group),
        cursor: entry.cursor,
        tail: existing?.tail ?? [],
        chunks: existing?.chunks ?? 0,
        ...(existing?.older ? { older: existing.older } : {}),
        ...(existing?.out === undefined ? {} : { out: existing.out }),
        sent: 0,
        renewedAt: this.#host.now(),
      });
      // The index before the key package goes: a failure (or crash) between the writes leaves
      // either a conversation the index does not name yet, whose Welcome comes again and still
      // opens, or one it names, whose Welcome comes again as a duplicate and deletes the
      // package then. The other way round, the Welcome came again for a conversation not in the
      // index with its package gone: KEY_PACKAGE_USED, and the conversation was lost.
      if (!index.groups.includes(entry.groupId)) index.groups.push(entry.groupId);
      await this.#writeIndex(index);
      await this.#writeKeyPackages(packages);
      const joined = await this.#infoOf(entry.groupId, group);
      return joined.kind === 'self' ? [] : [{ type: 'joined', conversation: joined }];
    }
    // No key package of ours opens it: used already (the server handed one package to two
    // people and this is the second Welcome), or not meant for us.
    return fail(
      'KEY_PACKAGE_USED',
      'a welcome this device cannot open (its key package was used already or never ours)',
    );
  }

  /**
   * Opens a Welcome with the first of this device's key packages that opens it; undefined when
   * none does. A credential that could not be looked up meanwhile is thrown instead: the
   * Welcome is no less valid for it, and comes again.
   */
  async #openWelcome(
    engine: GroupEngine,
    welcome: Uint8Array,
    packages: Map<string, { pub: string; priv: string; lastResort: boolean }>,
  ): Promise<
    { ref: string; lastResort: boolean; group: MlsGroup; key: Uint8Array | undefined } | undefined
  > {
    for (const [ref, p] of packages) {
      this.#lookupFailure = undefined;
      try {
        const joined = await engine.joinFromWelcomeWithData(welcome, {
          publicKeyPackage: fromBase64url(p.pub),
          privateKeyPackage: fromBase64url(p.priv),
        });
        const key = joined.welcomeData?.length === 32 ? joined.welcomeData : undefined;
        return { ref, lastResort: p.lastResort, group: joined.group, key };
      } catch {
        this.#throwLookupFailure();
      }
    }
    return undefined;
  }

  /** The account's newest manifest seq as the last queue page gave it (a hint), if it did. */
  #serverManifestSeq: number | undefined;

  /**
   * Multi-device: adds this account's newly listed devices to every conversation this device
   * is in, and removes devices the account no longer lists.
   */
  async #reconcileOwnDevices(): Promise<void> {
    const events = this.#unreported;
    const me = this.#me();
    await this.#sendOwedHistory();
    // The manifest is fetched (and verified) again only when the server says it moved: one
    // request less per sync. A server that hides a newer manifest could as well serve the old one.
    const known = await this.#host.ownManifest(false);
    const hint = this.#serverManifestSeq;
    const body =
      hint !== undefined && hint === known.seq ? known : await this.#host.ownManifest(true);
    if (this.#reconciled.get(me.accountId) === body.seq) return;
    const listed = new Set(body.devices.map((d) => d.id));
    const engine = await this.#engineFor();
    // The account's own conversation carries history bundles to its new devices.
    if (listed.size > 1) await this.#selfGroup();
    const newcomers = new Set<string>();
    const caughtUp: string[] = [];
    let failed = false;
    // This account's devices in a group: which the manifest no longer lists (their leaves) and
    // which it lists that are not in. Computed again inside each commit's `make`: a retry after
    // a lost race must act on the group as it is then (another device of this account may have
    // done it, and a freed leaf may hold a newly added device by then).
    const own = (g: MlsGroup) => {
      const mine = engine
        .members(g)
        .map((m) => ({ leaf: m.leafIndex, id: parseMemberIdentity(m.identity) }))
        .filter((x) => x.id?.accountId === me.accountId);
      const present = new Set(mine.map((x) => x.id?.deviceId));
      return {
        stale: mine.filter((x) => x.id && !listed.has(x.id.deviceId)).map((x) => x.leaf),
        missing: new Set([...listed].filter((d) => !present.has(d))),
      };
    };
    for (const groupId of (await this.#index()).groups) {
      const { group } = await this.#load(groupId);
      // A device that asked to leave commits nothing more there (MLS would refuse it).
      if (!group.active || leaving(engine, group)) continue;
      const { stale, missing } = own(group);
      try {
        if (stale.length > 0) {
          const g = await this.#commit(groupId, (e, gr) => {
            const leaves = own(gr).stale;
            if (leaves.length === 0) throw new SdkError('CONFLICT', this.#op, 'removed already');
            return e.removeMembers(gr, leaves);
          });
          events.push({ type: 'changed', conversation: await this.#infoOf(groupId, g) });
        }
        if (missing.size > 0) {
          // Owed before the commit: a crash after it would leave the new devices in the group
          // and nothing to tell a later sync that their history is still to be sent.
          if ((await this.#infoOf(groupId, group)).kind !== 'self') {
            const owed = await this.#owedHistory();
            if (!owed.includes(groupId)) await this.#writeOwedHistory([...owed, groupId]);
          }
          let added: Set<string> = missing;
          const g = await this.#commit(groupId, async (e, gr, rec) => {
            added = own(gr).missing;
            if (added.size === 0) throw new SdkError('CONFLICT', this.#op, 'added already');
            const kps = await this.#claim(me.accountId, added);
            if (kps.length === 0) throw new SdkError('CONFLICT', this.#op, 'no key package');
            return e.addMembers(gr, kps, rec.key ? { welcomeData: rec.key } : {});
          });
          const info = await this.#infoOf(groupId, g);
          if (info.kind !== 'self') {
            events.push({ type: 'changed', conversation: info });
            caughtUp.push(groupId);
          }
          for (const d of added) newcomers.add(d);
        }
      } catch (err) {
        if (!SdkError.is(err, 'CONFLICT')) throw err;
        failed = true; // e.g. the new device has no key package yet: try again next sync
      }
    }
    if (caughtUp.length > 0) {
      // Owed (since before the commits, see above) until it is sent: an upload or send that
      // fails is tried again by a later sync (the devices are in the groups by now, so nothing
      // else would).
      this.#owedTriedAt.delete(me.accountId);
      await this.#sendOwedHistory();
    }
    if (!failed) this.#reconciled.set(me.accountId, body.seq);
  }

  /** When an owed history bundle was last tried, per account. */
  readonly #owedTriedAt = new Map<string, number>();

  /** Conversations whose history this account's newly added devices are still owed. */
  async #owedHistory(): Promise<string[]> {
    const name = `owed/${this.#me().accountId}`;
    const obj = await this.#host.readRecord(name);
    return obj ? this.#stored(name, () => array(obj, 'groups').map((g) => String(g))) : [];
  }

  async #writeOwedHistory(groups: readonly string[]): Promise<void> {
    const name = `owed/${this.#me().accountId}`;
    if (groups.length === 0) await this.#host.deleteRecord(name);
    else await this.#host.writeRecord(name, { groups: [...groups] });
  }

  /**
   * Sends the history bundle owed, if any, and forgets it once sent. A failure that may pass
   * (the network, the server, a rate limit) keeps it for the next sync; any other is thrown
   * once, and the bundle is not tried again.
   */
  async #sendOwedHistory(): Promise<void> {
    // At most once a minute: each try uploads the whole bundle again.
    const { accountId } = this.#me();
    const now = this.#host.now();
    if (now - (this.#owedTriedAt.get(accountId) ?? -Infinity) < SCAN_INTERVAL_MS) return;
    const owed = await this.#owedHistory();
    if (owed.length === 0) return;
    this.#owedTriedAt.set(accountId, now);
    const index = await this.#index();
    const groups = owed.filter((g) => index.groups.includes(g));
    try {
      if (groups.length > 0) await this.#sendHistory(groups);
    } catch (err) {
      if (!SdkError.is(err) || err.code === 'STORE_CORRUPT') throw err;
      if (err.retryable || err.code === 'SERVER_ERROR' || err.code === 'STORE_UNAVAILABLE') return;
      await this.#writeOwedHistory([]);
      throw err;
    }
    await this.#writeOwedHistory([]);
  }

  /**
   * Takes devices that their accounts no longer list (revoked) out of every conversation, at
   * most once per SCAN_INTERVAL_MS: any member may (the policy checks the manifest too). A
   * revoked device left in a group would fail every later Welcome and rejoin.
   */
  async #removeRevokedContacts(): Promise<void> {
    const me = this.#me();
    const now = this.#host.now();
    if (now - (this.#contactsCheckedAt.get(me.accountId) ?? -Infinity) < SCAN_INTERVAL_MS) return;
    this.#contactsCheckedAt.set(me.accountId, now);
    const engine = await this.#engineFor();
    for (const groupId of (await this.#index()).groups) {
      const { group } = await this.#load(groupId);
      // A device that asked to leave commits nothing more there (MLS would refuse it).
      if (!group.active || leaving(engine, group)) continue;
      const stale = new Set<string>();
      for (const m of engine.members(group)) {
        const id = parseMemberIdentity(m.identity);
        if (!id || id.accountId === me.accountId) continue;
        const manifest = await this.#manifestOf(id.accountId, true).catch(() => undefined);
        if (manifest && !manifest.devices.some((d) => d.id === id.deviceId)) {
          stale.add(`${id.accountId}.${id.deviceId}`);
        }
      }
      if (stale.size === 0) continue;
      try {
        const g = await this.#commit(groupId, async (e, gr) => {
          const still = e
            .members(gr)
            .filter((m) => {
              const id = parseMemberIdentity(m.identity);
              return id !== undefined && stale.has(`${id.accountId}.${id.deviceId}`);
            })
            .map((m) => m.leafIndex);
          if (still.length === 0) throw new SdkError('CONFLICT', this.#op, 'removed already');
          return e.removeMembers(gr, still);
        });
        this.#unreported.push({ type: 'changed', conversation: await this.#infoOf(groupId, g) });
      } catch (err) {
        if (!SdkError.is(err, 'CONFLICT')) throw err;
      }
    }
  }

  /** This account's own conversation (kind `self`), made when there is none. */
  async #selfGroup(): Promise<string> {
    const me = this.#me();
    for (const id of (await this.#index()).groups) {
      const info = await this.info(id);
      if (info.kind === 'self' && info.active) return id;
    }
    const { groupId } = await this.#createGroup({ kind: 'self', name: '', admins: [me.accountId] });
    return groupId;
  }

  /**
   * A history bundle for this account's new devices: the stored messages of `groupIds` (the
   * last MAX_BUNDLE_MESSAGES of each), encrypted and uploaded like a file, its reference sent
   * in the account's own conversation — only the account's devices can read or send there.
   */
  async #sendHistory(groupIds: readonly string[]): Promise<void> {
    const conversations = [];
    for (const id of groupIds) {
      const messages = await this.history(id, MAX_BUNDLE_MESSAGES);
      conversations.push({
        id,
        messages: messages.map((m) => ({
          id: m.id,
          sender: m.sender,
          sentAt: m.sentAt,
          type: m.type,
          ...(m.text === undefined ? {} : { text: m.text }),
          ...(m.attachment === undefined ? {} : { attachment: m.attachment }),
        })),
      });
    }
    const bytes = new TextEncoder().encode(JSON.stringify({ v: 1, conversations }));
    const descriptor = await encryptAndUpload({ ...this.#host.blobs(), data: bytes });
    const attachment = JSON.parse(encodeAttachmentDescriptor(descriptor)) as Record<
      string,
      unknown
    >;
    await this.#sendContent(await this.#selfGroup(), {
      type: 'history',
      attachment,
      id: toBase64url(randomBytes(16)),
      sentAt: this.#host.now(),
    });
  }

  /**
   * Merges a history bundle from another device of this account into the conversations this
   * device is in: older messages first, none twice.
   */
  async #receiveHistory(
    groupId: string,
    attachment: Record<string, unknown>,
  ): Promise<ConversationEvent[]> {
    let descriptor: AttachmentDescriptor;
    try {
      descriptor = decodeAttachmentDescriptor(attachment);
    } catch (err) {
      return [
        this.#errorEvent(
          groupId,
          'INVALID_ATTACHMENT',
          'a history bundle with a malformed reference',
          err,
        ),
      ];
    }
    let conversations: readonly unknown[];
    try {
      const stream = await downloadAndDecrypt({ ...this.#host.blobs(), descriptor });
      const text = await new Response(stream).text();
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        // Not the parser's error: its message quotes the decrypted text.
        throw new Error('a bundle that is not JSON');
      }
      const bundle = asObject(parsed, 'bundle');
      if (bundle.v !== 1) throw new Error('bundle version');
      conversations = array(bundle, 'conversations');
    } catch (err) {
      // A failure for now (the network, a busy server, the session): the sync fails and the
      // entry comes again (see #handle), rather than the bundle being dropped.
      if (SdkError.is(err) && (err.retryable || err.code === 'NOT_LOGGED_IN')) throw err;
      return [
        this.#errorEvent(groupId, 'INVALID_HISTORY', 'a history bundle that does not open', err),
      ];
    }
    const events: ConversationEvent[] = [];
    const index = await this.#index();
    for (const c of conversations) {
      let id: string;
      let incoming: StoredMessage[];
      try {
        const o = asObject(c, 'conversation');
        id = str(o, 'id');
        const messages = array(o, 'messages');
        // Senders put at most MAX_BUNDLE_MESSAGES per conversation (spec §5.3): more is malformed.
        if (messages.length > MAX_BUNDLE_MESSAGES) throw new Error('too many messages');
        incoming = messages.map((m) => this.#bundleEntry(asObject(m, 'message')));
      } catch (err) {
        events.push(
          this.#errorEvent(groupId, 'INVALID_HISTORY', 'a malformed history bundle', err),
        );
        continue;
      }
      if (!index.groups.includes(id)) continue; // not (yet) a conversation of this device
      const record = await this.#readGroup(id);
      if (!record) continue;
      // None twice: not one this device holds, in its recent messages or in older chunks (a
      // bundle made for another new device of this account reaches this one too), nor one the
      // bundle repeats.
      const seen = await this.#storedIds(id, record);
      const older: StoredMessage[] = [];
      for (const m of incoming) {
        if (seen.has(m.id)) continue;
        seen.add(m.id);
        older.push(m);
      }
      if (older.length === 0) continue;
      await this.#prependHistory(id, record, older);
      events.push({ type: 'history', conversationId: id, count: older.length });
    }
    return events;
  }

  /**
   * Stores `older` (oldest first) before every message stored for a conversation. Into the tail
   * while nothing was chunked and they fit; otherwise as chunks older than chunk 0, written
   * before the record that counts them (a crash in between leaves chunks nothing names, written
   * again when the bundle's entry comes again: it is stored as handled only after the merge).
   */
  async #prependHistory(
    groupId: string,
    record: GroupRecord,
    older: readonly StoredMessage[],
  ): Promise<void> {
    let count = record.older ?? 0;
    if (
      record.chunks === 0 &&
      count === 0 &&
      older.length + record.tail.length <= 2 * HISTORY_CHUNK
    ) {
      await this.#writeGroup(groupId, { ...record, tail: [...older, ...record.tail] });
      return;
    }
    for (let end = older.length; end > 0; end -= HISTORY_CHUNK) {
      const messages = older.slice(Math.max(0, end - HISTORY_CHUNK), end);
      await this.#host.writeRecord(`hist/${groupId}/o${count}`, { messages });
      count += 1;
    }
    await this.#writeGroup(groupId, { ...record, older: count });
  }

  /**
   * `record` with the history stored for the conversation now (tail and chunks): a merge may
   * have stored history in the very conversation whose record is about to be written.
   */
  async #withStoredHistory(groupId: string, record: GroupRecord): Promise<GroupRecord> {
    const now = await this.#readGroup(groupId);
    if (!now) return record;
    const { older: _, ...rest } = record;
    return {
      ...rest,
      tail: now.tail,
      chunks: now.chunks,
      ...(now.older ? { older: now.older } : {}),
    };
  }

  /** The ids of every message stored for a conversation: its record's and its chunks'. */
  async #storedIds(groupId: string, record: GroupRecord): Promise<Set<string>> {
    const ids = new Set(record.tail.map((m) => m.id));
    for (const name of historyChunks(groupId, record)) {
      const chunk = await this.#host.readRecord(name);
      if (chunk) for (const m of array(chunk, 'messages') as StoredMessage[]) ids.add(m.id);
    }
    return ids;
  }

  #bundleEntry(m: JsonObject): StoredMessage {
    const sender = asObject(m.sender, 'sender');
    const type = str(m, 'type');
    if (type !== 'text' && type !== 'attachment') throw new Error('message type');
    const text = m.text === undefined ? undefined : str(m, 'text');
    const attachment =
      m.attachment === undefined ? undefined : asObject(m.attachment, 'attachment');
    return {
      id: str(m, 'id'),
      a: str(sender, 'accountId'),
      d: str(sender, 'deviceId'),
      t: int(m, 'sentAt'),
      r: this.#host.now(),
      k: type,
      ...(text === undefined ? {} : { x: text }),
      ...(attachment === undefined ? {} : { f: { ...attachment } }),
    };
  }

  #errorEvent(
    conversationId: string,
    detail: string,
    message: string,
    cause?: unknown,
  ): ConversationEvent {
    return {
      type: 'error',
      conversationId,
      error: new SdkError('PROTOCOL_VIOLATION', this.#op, message, {
        detail,
        ...(cause === undefined ? {} : { cause }),
      }),
    };
  }
}

/** The names of a conversation's history chunks, newest first. */
function* historyChunks(groupId: string, record: GroupRecord): Generator<string> {
  for (let n = record.chunks - 1; n >= 0; n--) yield `hist/${groupId}/${n}`;
  for (let k = 0; k < (record.older ?? 0); k++) yield `hist/${groupId}/o${k}`;
}

/** The identity key a manifest names for itself (checked by verifyManifest right after). */
function firstSightIdentity(manifest: SignedManifest): Uint8Array | undefined {
  try {
    return decodeManifestBody(manifest.body).identityKey;
  } catch {
    return undefined; // verifyManifest reports the malformed body
  }
}

/** A post that lost the race for its epoch, worth catching up and trying again. */
function lostEpochRace(err: unknown, attempt: number): boolean {
  return SdkError.is(err) && err.serverCode === 'EPOCH_CONFLICT' && attempt < MAX_EPOCH_RETRIES;
}

/** Whether this device asked to leave the group and waits for another member to commit it. */
function leaving(engine: GroupEngine, group: MlsGroup): boolean {
  return engine.pendingRemovals(group).includes(group.ownLeafIndex);
}

/** A refusal of a Welcome that may pass later: the welcome cap, a manifest race, a rate limit. */
function welcomeMayPassLater(err: unknown): boolean {
  return (
    SdkError.is(err) &&
    (err.retryable ||
      err.code === 'RATE_LIMITED' ||
      err.serverCode === 'QUEUE_FULL' ||
      err.serverCode === 'CONFLICT')
  );
}

/**
 * The request certainly had no effect: the server refused it (4xx), or the connection was
 * refused before a byte was sent (the server is down). Anything else may have arrived.
 */
function refusedByServer(err: unknown): boolean {
  if (!SdkError.is(err)) return false;
  if ((err.status ?? 0) >= 400 && (err.status ?? 0) < 500) return true;
  let cause: unknown = err.cause;
  for (let depth = 0; depth < 4 && typeof cause === 'object' && cause !== null; depth++) {
    const code = (cause as { code?: unknown }).code;
    if (code === 'ECONNREFUSED') return true;
    cause = (cause as { cause?: unknown }).cause;
  }
  return false;
}

/**
 * The record's message counters (`peers`) of the devices still in `group`: those of devices
 * that left are dropped at each commit, or every device a group ever held (accounts that
 * revoke and add devices without end) would stay in the record rewritten at every message.
 */
function peersOf(
  engine: GroupEngine,
  group: MlsGroup,
  record: GroupRecord,
): { peers?: Record<string, number> } {
  if (!record.peers) return {};
  const members = new Set<string>();
  for (const m of engine.members(group)) {
    const id = parseMemberIdentity(m.identity);
    if (id) members.add(`${id.accountId}.${id.deviceId}`);
  }
  return peersIn(record, members);
}

/** The record's message counters (`peers`) of the devices in `members` (`accountId.deviceId`). */
function peersIn(
  record: GroupRecord,
  members: ReadonlySet<string>,
): { peers?: Record<string, number> } {
  if (!record.peers) return {};
  const peers: Record<string, number> = {};
  for (const [peer, n] of Object.entries(record.peers)) if (members.has(peer)) peers[peer] = n;
  return { peers };
}

/** The record without its pending commit (settled one way or the other). */
function withoutPending(record: GroupRecord): GroupRecord {
  const next = { ...record };
  delete next.pending;
  return next;
}

/** A delivery service group id: canonical b64url of 16 to 64 bytes (spec http-api-v1). */
function isGroupId(value: unknown): boolean {
  if (typeof value !== 'string' || !/^[A-Za-z0-9_-]{22,86}$/.test(value)) return false;
  try {
    const length = fromBase64url(value).length;
    return length >= 16 && length <= 64;
  } catch {
    return false;
  }
}

function checkGroupId(groupId: unknown): asserts groupId is string {
  if (typeof groupId !== 'string' || !isGroupId(groupId)) {
    throw new SdkError(
      'INVALID_ARGUMENT',
      'conversations',
      '"conversationId" expected a conversation id',
    );
  }
}

function counters(value: unknown): Record<string, number> {
  const o = asObject(value, 'peers');
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(o)) {
    if (!Number.isSafeInteger(v) || (v as number) < 0) throw new Error('peers');
    out[k] = v as number;
  }
  return out;
}

function welcomeTo(w: Welcome): Record<string, unknown> {
  return { message: toBase64url(w.message), epoch: w.epoch, recipients: w.recipients };
}

function welcomeFrom(value: unknown): Welcome {
  const o = asObject(value, 'welcome');
  return {
    message: bytes(o, 'message'),
    epoch: int(o, 'epoch'),
    recipients: array(o, 'recipients').map((r) => {
      const m = asObject(r, 'recipient');
      return { accountId: str(m, 'accountId'), deviceId: str(m, 'deviceId') };
    }),
  };
}
