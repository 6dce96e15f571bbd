// The tables as Kysely sees them. Encrypted columns hold @coffer/fields binary ciphertexts (blob
// on SQLite, bytea on PostgreSQL); `Millis` columns are bigint on PostgreSQL, which node-postgres
// returns as strings, so every read goes through Number().
import type { ColumnType } from 'kysely';

/** Milliseconds since the epoch: written as a number, read as a number or (PostgreSQL) a string. */
export type Millis = ColumnType<number | string, number, number>;
/** An integer column read back the same way (PostgreSQL `integer` is a number already). */
export type Int = ColumnType<number | string, number, number>;
/** A field ciphertext or raw bytes: better-sqlite3 and node-postgres return Buffers. */
export type Bytes = ColumnType<Uint8Array, Uint8Array, Uint8Array>;
/** Nullable forms of the above. */
export type MaybeBytes = ColumnType<Uint8Array | null, Uint8Array | null, Uint8Array | null>;
export type MaybeMillis = ColumnType<number | string | null, number | null, number | null>;

export interface StorageDb {
  /** One row (id = 1): the @coffer/fields keyring as JSON, wrapped keys only. */
  coffer_keyring: { id: number; keyring: string; created_at: Millis };
  accounts: {
    account_id: string;
    username: Bytes;
    /** Blind index of the normalised username, 256 bits as hex: unique. */
    username_idx: string;
    opaque_record: Bytes;
    recovery_verifier: Bytes;
    created_at: Millis;
  };
  manifests: { account_id: string; seq: Int; body: Bytes; signature: Bytes };
  backups: { account_id: string; version: Int; data: Bytes };
  sessions: {
    token_hash: Bytes;
    account_id: string;
    device_id: string | null;
    kind: string;
    created_at: Millis;
    expires_at: Millis;
    auth_at: Millis;
  };
  login_states: {
    login_id: string;
    account_id: string | null;
    state: Bytes;
    expires_at: Millis;
  };
  throttle: { key: Bytes; failures: Int; not_before: Millis };
  links: {
    link_id: string;
    account_id: string;
    expires_at: Millis;
    request_sealed: MaybeBytes;
    pickup_hash: MaybeBytes;
    response_sealed: MaybeBytes;
    response_token: MaybeBytes;
    response_expires_at: MaybeMillis;
    /** 1 once the creating device refused the request, else 0. */
    refused: ColumnType<number | string, number | undefined, number>;
  };
  secrets: { name: string; value: Bytes };
  /** One row per stored KeyPackage; `hash` is SHA-256 of the KeyPackage, `last_resort` 0 or 1. */
  key_packages: {
    account_id: string;
    device_id: string;
    last_resort: Int;
    hash: Bytes;
    data: Bytes;
    created_at: Millis;
  };
  /** spec/http-api-v1.md "Delivery": one row per group; `group_info` sealed. */
  delivery_groups: {
    group_id: string;
    epoch: Millis;
    next_seq: Millis;
    group_info_epoch: MaybeMillis;
    group_info: MaybeBytes;
    created_at: Millis;
    /** When the group last accepted a message (its creation included): the sweep's clock. */
    active_at: Millis;
  };
  delivery_members: { group_id: string; account_id: string; device_id: string };
  /** Each accepted message once; `body` sealed, bound to `groupId:seq`. */
  delivery_messages: {
    group_id: string;
    seq: Millis;
    epoch: Millis;
    kind: string;
    sender_account_id: string;
    sender_device_id: string;
    body: Bytes;
    created_at: Millis;
  };
  delivery_devices: { account_id: string; device_id: string; next_cursor: Millis };
  delivery_queue: {
    account_id: string;
    device_id: string;
    cursor: Millis;
    group_id: string;
    seq: Millis;
    created_at: Millis;
    /** 1 for a welcome's entry (capped apart, see _delivery-store.ts), else 0. */
    welcome: Int;
  };
  /** spec/http-api-v1.md "Blobs": who uploaded which blob, its size and age (bytes are files). */
  blobs: { blob_id: string; account_id: string; size: Millis; created_at: Millis };
  /** spec/http-api-v1.md "Signup": SHA-256 of each deleted account's id, never reused. */
  retired_accounts: { id_hash: Bytes };
}
