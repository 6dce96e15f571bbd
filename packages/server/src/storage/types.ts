// The server's storage, as small interfaces the HTTP layer calls. Two implementations share one
// Kysely code path: SQLite (better-sqlite3, the embedded default) and PostgreSQL. Values that are
// the server's own sensitive data (usernames, OPAQUE records, login states, manifests) are
// encrypted with @coffer/fields before they reach these interfaces' SQL, bound to their table,
// column and row; the interfaces themselves take and return plaintext values.
//
// Times are milliseconds since the Unix epoch. Binary values are Uint8Array.

export interface AccountRecord {
  readonly accountId: string;
  /** As the user typed it at signup (after NFC and trim), for display. */
  readonly username: string;
  readonly createdAt: number;
}

export interface NewAccount {
  readonly accountId: string;
  readonly username: string;
  /** The OPAQUE registration record. */
  readonly opaqueRecord: Uint8Array;
  readonly manifest: StoredManifest;
  readonly backup: StoredBackup;
  /** SHA-256 of the recovery proof (account-v1 §4). */
  readonly recoveryVerifier: Uint8Array;
  readonly session: NewSession;
}

export interface StoredManifest {
  readonly seq: number;
  readonly body: Uint8Array;
  readonly signature: Uint8Array;
}

export interface StoredBackup {
  readonly version: number;
  readonly data: Uint8Array;
}

export interface NewSession {
  /** SHA-256 of the bearer token; the token itself is never stored. */
  readonly tokenHash: Uint8Array;
  readonly accountId: string;
  readonly deviceId: string | null;
  readonly kind: 'session' | 'recovery';
  readonly createdAt: number;
  readonly expiresAt: number;
  /** When the password (or recovery code) was last proved. */
  readonly authAt: number;
}

export interface SessionRecord extends NewSession {}

export interface LinkRecord {
  readonly linkId: string;
  readonly accountId: string;
  readonly expiresAt: number;
  readonly request: { readonly sealed: Uint8Array; readonly pickupHash: Uint8Array } | null;
  readonly response: {
    readonly sealed: Uint8Array;
    readonly token: string;
    readonly expiresAt: number;
  } | null;
  /** The creating device refused the request: nothing will be approved. */
  readonly refused: boolean;
}

export interface ThrottleState {
  /** Failures in a row. */
  readonly failures: number;
  /** No attempt before this time. */
  readonly notBefore: number;
}

/**
 * Thrown by a storage method when a unique constraint refuses the write, or (`deletedAccount`)
 * when a foreign key does: the write refers to a row deleted meanwhile, in practice the account
 * (deleted between the request's checks and its write).
 */
export class StorageConflictError extends Error {
  override readonly name = 'StorageConflictError';
  constructor(
    readonly what:
      | 'username'
      | 'accountId'
      | 'manifestSeq'
      | 'link'
      | 'keyPackageCap'
      | 'deletedAccount'
      | 'other',
    message = `conflict on ${what}`,
  ) {
    super(message);
  }
}

export interface AccountStore {
  /**
   * Creates everything of a new account in one transaction; StorageConflictError('username')
   * when the name is taken, StorageConflictError('accountId') when the id is in use or belonged
   * to a deleted account.
   */
  create(account: NewAccount): Promise<void>;
  /** Whether a normalised username is in use (a blind-index lookup). */
  usernameTaken(normalizedUsername: string): Promise<boolean>;
  /** Looks an account up by normalised username. */
  findByUsername(
    normalizedUsername: string,
  ): Promise<(AccountRecord & { readonly opaqueRecord: Uint8Array }) | undefined>;
  /**
   * What login and recovery need for a normalised username, at the same cost whether or not the
   * name exists (an unknown name decrypts a dummy record of the same size).
   */
  findLogin(
    normalizedUsername: string,
  ): Promise<{ readonly accountId: string; readonly opaqueRecord: Uint8Array } | undefined>;
  get(accountId: string): Promise<AccountRecord | undefined>;
  recoveryVerifier(accountId: string): Promise<Uint8Array | undefined>;
  /**
   * Deletes the account and everything that belongs to it, and retires its id for good (no
   * {@link AccountStore.create} may use it again), in one transaction; returns the ids of the
   * blobs whose rows went with it, so that the caller removes their files.
   */
  delete(accountId: string): Promise<{ readonly blobIds: readonly string[] }>;
  /**
   * Replaces the OPAQUE record, appends the next manifest, replaces the backup, deletes the
   * account's pending login states (started against the old record) and the sessions
   * `endUnlisted` selects, in one transaction (password change and recovery);
   * StorageConflictError('manifestSeq') when the current manifest is no longer
   * `manifest.seq - 1`.
   */
  changePassword(
    accountId: string,
    change: {
      readonly opaqueRecord: Uint8Array;
      readonly manifest: StoredManifest;
      readonly backup: StoredBackup;
      readonly endUnlisted?: UnlistedSessions;
    },
  ): Promise<void>;
}

/**
 * Which sessions a manifest or password change ends besides those of the devices it removes
 * (spec/http-api-v1.md "Session and account"): every session of the account that names no
 * device, or a device `listed` leaves out, created before `createdBefore`, except `keep`.
 */
export interface UnlistedSessions {
  /** The device ids the new manifest lists: sessions naming one of them are kept. */
  readonly listed: readonly string[];
  /** Only sessions created before this time end (a grace for a device adding itself). */
  readonly createdBefore: number;
  /** The token hash of a session kept whatever it names (the caller's own). */
  readonly keep?: Uint8Array;
}

export interface ManifestStore {
  latest(accountId: string): Promise<StoredManifest | undefined>;
  /** The latest manifest's seq (nothing opened), or undefined for an unknown account. */
  latestSeq(accountId: string): Promise<number | undefined>;
  /** Manifests with seq > after, ascending, at most `limit`. */
  history(accountId: string, after: number, limit: number): Promise<StoredManifest[]>;
  /**
   * Appends the next manifest (seq must be latest + 1, else StorageConflictError('manifestSeq')),
   * optionally replacing the backup, deletes the sessions and KeyPackages of
   * `revokedDeviceIds`, and the sessions `endUnlisted` selects — one transaction.
   */
  append(
    accountId: string,
    manifest: StoredManifest,
    options?: {
      readonly backup?: StoredBackup;
      readonly revokedDeviceIds?: readonly string[];
      readonly endUnlisted?: UnlistedSessions;
    },
  ): Promise<void>;
}

export interface BackupStore {
  get(accountId: string): Promise<StoredBackup | undefined>;
}

export interface SessionStore {
  create(session: NewSession): Promise<void>;
  get(tokenHash: Uint8Array): Promise<SessionRecord | undefined>;
  delete(tokenHash: Uint8Array): Promise<void>;
  deleteExpired(now: number): Promise<number>;
}

export interface LoginStateStore {
  /** Keeps an OPAQUE server login state until `expiresAt`. */
  put(
    loginId: string,
    state: {
      readonly accountId: string | null;
      readonly serverLoginState: Uint8Array;
      readonly expiresAt: number;
    },
  ): Promise<void>;
  /** Returns and deletes the state (one use), undefined when absent or expired. */
  take(
    loginId: string,
    now: number,
  ): Promise<
    { readonly accountId: string | null; readonly serverLoginState: Uint8Array } | undefined
  >;
  /** Deletes states with expiresAt <= now (abandoned logins); returns how many. Optional. */
  deleteExpired?(now: number): Promise<number>;
}

export interface ThrottleStore {
  get(key: Uint8Array): Promise<ThrottleState | undefined>;
  put(key: Uint8Array, state: ThrottleState): Promise<void>;
  clear(key: Uint8Array): Promise<void>;
  /**
   * Reads and rewrites several keys in one transaction (atomic read-modify-write, one commit):
   * `next` gets each key's current state and returns its new one, or null to clear it.
   */
  update(
    keys: readonly Uint8Array[],
    next: (current: ThrottleState | undefined, index: number) => ThrottleState | null,
  ): Promise<void>;
  /**
   * Deletes the states whose `notBefore` is before `before` (keys idle since then: their count
   * starts over); returns how many. Optional.
   */
  deleteIdle?(before: number): Promise<number>;
}

export interface LinkStore {
  /** StorageConflictError('link') when the id exists. */
  create(link: {
    readonly linkId: string;
    readonly accountId: string;
    readonly expiresAt: number;
  }): Promise<void>;
  get(linkId: string, now: number): Promise<LinkRecord | undefined>;
  /** Sets the request once; false when already set or the link is gone. */
  setRequest(
    linkId: string,
    request: { readonly sealed: Uint8Array; readonly pickupHash: Uint8Array },
    now: number,
  ): Promise<boolean>;
  /** Sets the response once; false when the link is gone, refused or approved (nothing stored). */
  setResponse(linkId: string, response: NonNullable<LinkRecord['response']>): Promise<boolean>;
  /** Marks a requested, unapproved link refused; false when it is not (nothing changed). */
  refuse(linkId: string): Promise<boolean>;
  delete(linkId: string): Promise<void>;
  /** Deletes links with expiresAt <= now; returns how many. Optional. */
  deleteExpired?(now: number): Promise<number>;
}

/** What a device uploads to the KeyPackage directory (spec/http-api-v1.md "KeyPackages"). */
export interface KeyPackageUpload {
  /** One-time KeyPackages, opaque bytes. */
  readonly keyPackages: readonly Uint8Array[];
  /** Replaces the device's last-resort KeyPackage when given. */
  readonly lastResort?: Uint8Array;
}

/** What one device holds in the directory. */
export interface KeyPackageCount {
  /** One-time KeyPackages left. */
  readonly available: number;
  /** Whether a last-resort KeyPackage is stored. */
  readonly lastResort: boolean;
}

/** One KeyPackage handed out by a claim. */
export interface ClaimedKeyPackage {
  readonly deviceId: string;
  readonly keyPackage: Uint8Array;
  /** True when this is the device's last-resort KeyPackage (kept, not deleted). */
  readonly lastResort: boolean;
}

/**
 * The MLS KeyPackage directory. KeyPackages are opaque bytes, identified by their SHA-256: a
 * device never holds the same one-time KeyPackage twice.
 */
export interface KeyPackageStore {
  /**
   * Adds one-time KeyPackages for a device (ones it already holds are skipped) and replaces its
   * last-resort KeyPackage when given, in one transaction; returns how many one-time packages it
   * holds afterwards. `manifestSeq` is the seq of the manifest the caller found listing the
   * device: checked in the same transaction, and serialised with a revoking
   * {@link ManifestStore.append}, so a revoked device's packages never outlive its revocation.
   *
   * @throws {StorageConflictError} `keyPackageCap` (nothing stored) when it would hold more
   *   than `cap`; `manifestSeq` when the account's current manifest is no longer `manifestSeq`.
   */
  add(
    accountId: string,
    deviceId: string,
    upload: KeyPackageUpload,
    limits: {
      readonly cap: number;
      readonly manifestSeq: number;
      /** Deletes the device's one-time packages first, in the same transaction (rotation). */
      readonly replace?: boolean;
    },
  ): Promise<number>;
  count(accountId: string, deviceId: string): Promise<KeyPackageCount>;
  /**
   * For each of `deviceIds` (in order): takes its oldest one-time KeyPackage, deleting it in this
   * same transaction (claim-once, concurrent claims included), or else returns its last-resort
   * one (kept). Devices with neither are left out.
   */
  claim(accountId: string, deviceIds: readonly string[]): Promise<ClaimedKeyPackage[]>;
}

/** A device's address for delivery: the only routing data the server keeps about a member. */
export interface DeviceRoute {
  readonly accountId: string;
  readonly deviceId: string;
}

export type DeliveryKind = 'application' | 'commit' | 'proposal' | 'welcome';

/** A message to append to a group's total order (spec/http-api-v1.md "Delivery"). */
export interface NewDelivery {
  readonly groupId: string;
  readonly sender: DeviceRoute;
  readonly epoch: number;
  readonly kind: DeliveryKind;
  /** The MLS message, opaque bytes; sealed at rest. */
  readonly message: Uint8Array;
  /** Devices whose queues get it, without duplicates. */
  readonly recipients: readonly DeviceRoute[];
  /** Commit only: routes that leave the routing set after this message. */
  readonly removed?: readonly DeviceRoute[];
  /** Commit only: the GroupInfo of the new epoch. */
  readonly groupInfo?: Uint8Array;
  /**
   * Welcome only: for each recipient account, the seq of its current manifest as the caller
   * found it listing the recipients. Checked again once the recipients' queues are locked, so
   * that a welcome never lands on a device revoked meanwhile (refusal `manifestChanged`).
   */
  readonly manifestSeqs?: ReadonlyMap<string, number>;
}

/** What {@link DeliveryStore.append} decided. Expected refusals are values, not exceptions. */
export type DeliveryResult =
  | {
      readonly ok: true;
      readonly seq: number;
      readonly epoch: number;
      /** Recipients whose queue held `cap` entries (welcomes not counted): not queued for them. */
      readonly skipped: readonly DeviceRoute[];
    }
  /** A commit or message for another epoch than the current one (also a second creation). */
  | { readonly ok: false; readonly reason: 'epoch'; readonly epoch: number }
  /** The sender (or, except for a welcome, a recipient) is not in the routing set. */
  | { readonly ok: false; readonly reason: 'notMember' }
  /** The group does not exist and the message is not a creating commit at epoch 0. */
  | { readonly ok: false; readonly reason: 'unknownGroup' }
  /** Welcome only: a recipient holds `welcomeCap` unacknowledged welcomes: nothing was stored. */
  | { readonly ok: false; readonly reason: 'welcomesFull'; readonly route: DeviceRoute }
  /** Welcome only: a recipient account's manifest is no longer the one in `manifestSeqs`. */
  | { readonly ok: false; readonly reason: 'manifestChanged' };

/** One entry of a device's queue. */
export interface QueuedMessage {
  readonly cursor: number;
  readonly groupId: string;
  readonly seq: number;
  readonly epoch: number;
  readonly kind: DeliveryKind;
  readonly sender: DeviceRoute;
  readonly message: Uint8Array;
}

/**
 * The MLS delivery service: per-group total order with an epoch check, and per-device queues
 * with acknowledgements. Messages are opaque bytes, sealed at rest and bound to their row.
 */
export interface DeliveryStore {
  /**
   * In one transaction: checks the epoch and membership, gives the message the group's next
   * seq (a commit also moves the epoch to epoch + 1), and appends it to every recipient's queue.
   * A commit at epoch 0 for an unknown group creates it with the sender as its only member.
   * Concurrent commits for one epoch: exactly one is accepted, the others get `epoch`.
   * A queue holds at most `cap` entries that are not welcomes (a message finding one full is
   * queued for the other recipients and not for it: `skipped`), and at most `welcomeCap`
   * welcomes (a welcome finding that full is refused as a whole). Recipients are checked again after their queues are locked, so that a message
   * racing a device's revocation ({@link ManifestStore.append}) either commits first (and is
   * deleted with the rest) or is refused.
   */
  append(
    message: NewDelivery,
    options: { readonly now: number; readonly cap: number; readonly welcomeCap: number },
  ): Promise<DeliveryResult>;
  /**
   * The device's queue after `after`, in cursor order: at most `limit` entries and (past the
   * first) `maxBytes` of sealed bodies. Sizes are read first; only the bodies that fit are loaded.
   */
  queue(
    route: DeviceRoute,
    after: number,
    limits: { readonly limit: number; readonly maxBytes: number },
  ): Promise<{ readonly messages: QueuedMessage[]; readonly more: boolean }>;
  /** Deletes the device's entries with cursor <= upTo; returns how many. */
  ack(route: DeviceRoute, upTo: number): Promise<number>;
  /** The group's epoch and latest GroupInfo, when `route` is a member; undefined otherwise. */
  groupInfo(
    groupId: string,
    route: DeviceRoute,
  ): Promise<{ readonly epoch: number; readonly groupInfo: Uint8Array | null } | undefined>;
  /**
   * Retention: deletes messages (and their queue entries) created at or before `before`, and
   * groups with an empty routing set whose last message was accepted at or before `before`
   * (with their GroupInfo). Returns how many messages went.
   */
  deleteOlderThan(before: number): Promise<number>;
}

/** A key-value slot for the server's own secrets (the OPAQUE server setup), stored encrypted. */
export interface SecretStore {
  get(name: string): Promise<Uint8Array | undefined>;
  /** Stores `value` unless `name` exists; returns what is stored afterwards (first writer wins). */
  putIfAbsent(name: string, value: Uint8Array): Promise<Uint8Array>;
}

/** One stored blob's metadata (spec/http-api-v1.md "Blobs"); its bytes are a file, not a row. */
export interface BlobRecord {
  readonly blobId: string;
  /** The uploading account: the only one that may delete it, and whose quota it counts against. */
  readonly accountId: string;
  /** Bytes. */
  readonly size: number;
  readonly createdAt: number;
}

/** What {@link BlobStore.add} decided. Expected refusals are values, not exceptions. */
export type BlobAddResult =
  | { readonly ok: true }
  /**
   * The account's blobs would then hold more than `quota` bytes, or be more than `maxCount`:
   * nothing was recorded.
   */
  | { readonly ok: false; readonly reason: 'quota' }
  /** The account no longer exists (deleted during the upload). */
  | { readonly ok: false; readonly reason: 'noAccount' };

/**
 * The blob directory's index: which blobs exist, whose they are, how large. The bytes live in
 * files (see `BlobFiles`); a blob is visible only once both its file and its row exist.
 */
export interface BlobStore {
  /**
   * Records a blob whose file is in place, in one transaction that also sums and counts the
   * account's stored blobs (serialised per account, so concurrent uploads cannot both slip
   * under the quota or the count).
   */
  add(
    record: BlobRecord,
    options: { readonly quota: number; readonly maxCount: number },
  ): Promise<BlobAddResult>;
  get(blobId: string): Promise<BlobRecord | undefined>;
  /** Bytes the account's blobs hold, and how many they are. */
  usage(accountId: string): Promise<{ readonly bytes: number; readonly count: number }>;
  /** Deletes the blob if `accountId` uploaded it; false otherwise (unknown included). */
  delete(blobId: string, accountId: string): Promise<boolean>;
  /** Retention: deletes the rows of blobs created at or before `before`; returns their ids. */
  deleteOlderThan(before: number): Promise<string[]>;
  /** Which of `blobIds` have a row (for sweeping files whose row never came or is gone). */
  existing(blobIds: readonly string[]): Promise<Set<string>>;
}

export interface Storage {
  readonly dialect: 'sqlite' | 'postgres';
  readonly accounts: AccountStore;
  readonly manifests: ManifestStore;
  readonly backups: BackupStore;
  readonly sessions: SessionStore;
  readonly logins: LoginStateStore;
  readonly throttle: ThrottleStore;
  readonly links: LinkStore;
  readonly secrets: SecretStore;
  readonly keyPackages: KeyPackageStore;
  readonly delivery: DeliveryStore;
  readonly blobs: BlobStore;
  /** A cheap round trip to the database, for /healthz. */
  ping(): Promise<void>;
  close(): Promise<void>;
}
