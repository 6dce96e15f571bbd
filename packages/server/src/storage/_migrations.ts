// The schema, as Kysely migrations kept in code (no migration folder to ship). Both dialects run
// the same builder calls; only the byte type differs (SQLite `blob`, PostgreSQL `bytea`). Times
// are `bigint` milliseconds (SQLite gives it INTEGER affinity). Constraints are named so that a
// unique violation can be told apart on PostgreSQL (see _sql-errors.ts).
import { type Kysely, type Migration, type MigrationProvider, sql } from 'kysely';

/** Which database a migration is being run on. */
export type StorageDialect = 'sqlite' | 'postgres';

// The schema builder is untyped by design (the tables do not exist yet).
// biome-ignore lint/suspicious/noExplicitAny: Kysely migrations take Kysely<any>
type AnyDb = Kysely<any>;

function initial(dialect: StorageDialect): Migration {
  const bytes = dialect === 'sqlite' ? 'blob' : 'bytea';
  return {
    async up(db: AnyDb) {
      await db.schema
        .createTable('coffer_keyring')
        .addColumn('id', 'integer', (c) => c.notNull())
        .addColumn('keyring', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('coffer_keyring_pk', ['id'])
        .addCheckConstraint('coffer_keyring_one_row', sql`id = 1`)
        .execute();

      await db.schema
        .createTable('accounts')
        .addColumn('account_id', 'text', (c) => c.notNull())
        .addColumn('username', bytes, (c) => c.notNull())
        .addColumn('username_idx', 'text', (c) => c.notNull())
        .addColumn('opaque_record', bytes, (c) => c.notNull())
        .addColumn('recovery_verifier', bytes, (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('accounts_pk', ['account_id'])
        .addUniqueConstraint('accounts_username_idx_unique', ['username_idx'])
        .execute();

      await db.schema
        .createTable('manifests')
        .addColumn('account_id', 'text', (c) =>
          c.notNull().references('accounts.account_id').onDelete('cascade'),
        )
        .addColumn('seq', 'integer', (c) => c.notNull())
        .addColumn('body', bytes, (c) => c.notNull())
        .addColumn('signature', bytes, (c) => c.notNull())
        .addPrimaryKeyConstraint('manifests_pk', ['account_id', 'seq'])
        .execute();

      await db.schema
        .createTable('backups')
        .addColumn('account_id', 'text', (c) =>
          c.notNull().references('accounts.account_id').onDelete('cascade'),
        )
        .addColumn('version', 'integer', (c) => c.notNull())
        .addColumn('data', bytes, (c) => c.notNull())
        .addPrimaryKeyConstraint('backups_pk', ['account_id'])
        .execute();

      await db.schema
        .createTable('sessions')
        .addColumn('token_hash', bytes, (c) => c.notNull())
        .addColumn('account_id', 'text', (c) =>
          c.notNull().references('accounts.account_id').onDelete('cascade'),
        )
        .addColumn('device_id', 'text')
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('expires_at', 'bigint', (c) => c.notNull())
        .addColumn('auth_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('sessions_pk', ['token_hash'])
        .execute();
      await db.schema
        .createIndex('sessions_account_idx')
        .on('sessions')
        .columns(['account_id', 'device_id'])
        .execute();
      await db.schema
        .createIndex('sessions_expiry_idx')
        .on('sessions')
        .column('expires_at')
        .execute();

      await db.schema
        .createTable('login_states')
        .addColumn('login_id', 'text', (c) => c.notNull())
        .addColumn('account_id', 'text', (c) =>
          c.references('accounts.account_id').onDelete('cascade'),
        )
        .addColumn('state', bytes, (c) => c.notNull())
        .addColumn('expires_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('login_states_pk', ['login_id'])
        .execute();
      await db.schema
        .createIndex('login_states_expiry_idx')
        .on('login_states')
        .column('expires_at')
        .execute();

      await db.schema
        .createTable('throttle')
        .addColumn('key', bytes, (c) => c.notNull())
        .addColumn('failures', 'integer', (c) => c.notNull())
        .addColumn('not_before', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('throttle_pk', ['key'])
        .execute();

      await db.schema
        .createTable('links')
        .addColumn('link_id', 'text', (c) => c.notNull())
        .addColumn('account_id', 'text', (c) =>
          c.notNull().references('accounts.account_id').onDelete('cascade'),
        )
        .addColumn('expires_at', 'bigint', (c) => c.notNull())
        .addColumn('request_sealed', bytes)
        .addColumn('pickup_hash', bytes)
        .addColumn('response_sealed', bytes)
        .addColumn('response_token', bytes)
        .addColumn('response_expires_at', 'bigint')
        .addPrimaryKeyConstraint('links_pk', ['link_id'])
        .execute();
      await db.schema.createIndex('links_account_idx').on('links').column('account_id').execute();

      await db.schema
        .createTable('secrets')
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('value', bytes, (c) => c.notNull())
        .addPrimaryKeyConstraint('secrets_pk', ['name'])
        .execute();
    },
  };
}

/** spec/http-api-v1.md "KeyPackages": the directory, one row per stored KeyPackage. */
function keyPackages(dialect: StorageDialect): Migration {
  const bytes = dialect === 'sqlite' ? 'blob' : 'bytea';
  return {
    async up(db: AnyDb) {
      // The primary key leads with (account_id, device_id, last_resort): it serves the count, the
      // claim's oldest-first pick and the revocation delete; `hash` makes a duplicate a no-op.
      await db.schema
        .createTable('key_packages')
        .addColumn('account_id', 'text', (c) =>
          c.notNull().references('accounts.account_id').onDelete('cascade'),
        )
        .addColumn('device_id', 'text', (c) => c.notNull())
        .addColumn('last_resort', 'integer', (c) => c.notNull())
        .addColumn('hash', bytes, (c) => c.notNull())
        .addColumn('data', bytes, (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('key_packages_pk', [
          'account_id',
          'device_id',
          'last_resort',
          'hash',
        ])
        .addCheckConstraint('key_packages_last_resort_bool', sql`last_resort in (0, 1)`)
        .execute();
    },
  };
}

/**
 * spec/http-api-v1.md "Delivery": groups (epoch, next seq, latest GroupInfo), their routing set,
 * each accepted message once, and per-device queues that point at messages.
 */
function delivery(dialect: StorageDialect): Migration {
  const bytes = dialect === 'sqlite' ? 'blob' : 'bytea';
  return {
    async up(db: AnyDb) {
      await db.schema
        .createTable('delivery_groups')
        .addColumn('group_id', 'text', (c) => c.notNull())
        .addColumn('epoch', 'bigint', (c) => c.notNull())
        .addColumn('next_seq', 'bigint', (c) => c.notNull())
        // The epoch the GroupInfo was stored at: part of its ciphertext's row binding.
        .addColumn('group_info_epoch', 'bigint')
        .addColumn('group_info', bytes)
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('delivery_groups_pk', ['group_id'])
        .execute();

      // Routing entries only: which devices the clients said are in the group.
      await db.schema
        .createTable('delivery_members')
        .addColumn('group_id', 'text', (c) =>
          c.notNull().references('delivery_groups.group_id').onDelete('cascade'),
        )
        .addColumn('account_id', 'text', (c) => c.notNull())
        .addColumn('device_id', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('delivery_members_pk', ['group_id', 'account_id', 'device_id'])
        .execute();

      // One row per accepted message, its body sealed once whatever the number of recipients.
      await db.schema
        .createTable('delivery_messages')
        .addColumn('group_id', 'text', (c) =>
          c.notNull().references('delivery_groups.group_id').onDelete('cascade'),
        )
        .addColumn('seq', 'bigint', (c) => c.notNull())
        .addColumn('epoch', 'bigint', (c) => c.notNull())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('sender_account_id', 'text', (c) => c.notNull())
        .addColumn('sender_device_id', 'text', (c) => c.notNull())
        .addColumn('body', bytes, (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('delivery_messages_pk', ['group_id', 'seq'])
        .execute();
      await db.schema
        .createIndex('delivery_messages_age_idx')
        .on('delivery_messages')
        .column('created_at')
        .execute();

      // Each device's cursor counter: the row is locked while a message is queued for it, so
      // cursors commit in the order they are handed out (a reader never skips one).
      await db.schema
        .createTable('delivery_devices')
        .addColumn('account_id', 'text', (c) => c.notNull())
        .addColumn('device_id', 'text', (c) => c.notNull())
        .addColumn('next_cursor', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('delivery_devices_pk', ['account_id', 'device_id'])
        .execute();

      await db.schema
        .createTable('delivery_queue')
        .addColumn('account_id', 'text', (c) => c.notNull())
        .addColumn('device_id', 'text', (c) => c.notNull())
        .addColumn('cursor', 'bigint', (c) => c.notNull())
        .addColumn('group_id', 'text', (c) => c.notNull())
        .addColumn('seq', 'bigint', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('delivery_queue_pk', ['account_id', 'device_id', 'cursor'])
        .addForeignKeyConstraint(
          'delivery_queue_message_fk',
          ['group_id', 'seq'],
          'delivery_messages',
          ['group_id', 'seq'],
          (fk) => fk.onDelete('cascade'),
        )
        .execute();
      await db.schema
        .createIndex('delivery_queue_age_idx')
        .on('delivery_queue')
        .column('created_at')
        .execute();
      await db.schema
        .createIndex('delivery_queue_message_idx')
        .on('delivery_queue')
        .columns(['group_id', 'seq'])
        .execute();
    },
  };
}

/**
 * spec/http-api-v1.md "Blobs": one row per stored blob (its bytes are a file in the blob
 * directory, named after the id). Rows go with their account.
 */
function blobs(): Migration {
  return {
    async up(db: AnyDb) {
      await db.schema
        .createTable('blobs')
        .addColumn('blob_id', 'text', (c) => c.notNull())
        .addColumn('account_id', 'text', (c) =>
          c.notNull().references('accounts.account_id').onDelete('cascade'),
        )
        .addColumn('size', 'bigint', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('blobs_pk', ['blob_id'])
        .execute();
      await db.schema.createIndex('blobs_account_idx').on('blobs').column('account_id').execute();
      await db.schema.createIndex('blobs_age_idx').on('blobs').column('created_at').execute();
    },
  };
}

/**
 * spec/http-api-v1.md "Delivery": welcome entries are marked in the queue (they have their own,
 * small cap per device and do not count toward the queue's), and a group remembers its last
 * accepted message, so that the sweep can delete groups nobody is routed to any more.
 */
function deliveryLimits(): Migration {
  return {
    async up(db: AnyDb) {
      await db.schema
        .alterTable('delivery_queue')
        .addColumn('welcome', 'integer', (c) => c.notNull().defaultTo(0))
        .execute();
      await db.schema
        .createIndex('delivery_queue_welcome_idx')
        .on('delivery_queue')
        .columns(['account_id', 'device_id', 'welcome'])
        .execute();
      // Existing queue entries of welcomes: their messages say so.
      await sql`update delivery_queue set welcome = 1 where exists (select 1 from delivery_messages m
        where m.group_id = delivery_queue.group_id and m.seq = delivery_queue.seq
        and m.kind = 'welcome')`.execute(db);

      await db.schema
        .alterTable('delivery_groups')
        .addColumn('active_at', 'bigint', (c) => c.notNull().defaultTo(0))
        .execute();
      await sql`update delivery_groups set active_at = coalesce((select max(m.created_at)
        from delivery_messages m where m.group_id = delivery_groups.group_id), created_at)`.execute(
        db,
      );
      await db.schema
        .createIndex('delivery_groups_active_idx')
        .on('delivery_groups')
        .column('active_at')
        .execute();
    },
  };
}

/**
 * spec/http-api-v1.md "Signup": the ids of deleted accounts, kept so that no signup reuses one
 * (contacts who never pinned the old identity would accept a new one under it). Only SHA-256 of
 * the id is kept, one 32-byte row per deleted account, forever: an id that became free again
 * after any retention period would reopen the attack.
 */
function retiredAccounts(dialect: StorageDialect): Migration {
  const bytes = dialect === 'sqlite' ? 'blob' : 'bytea';
  return {
    async up(db: AnyDb) {
      await db.schema
        .createTable('retired_accounts')
        .addColumn('id_hash', bytes, (c) => c.notNull())
        .addPrimaryKeyConstraint('retired_accounts_pk', ['id_hash'])
        .execute();
    },
  };
}

/** A link the creating device refused (spec "Linking"): the joining device is told so at pickup. */
function linkRefusal(): Migration {
  return {
    async up(db: AnyDb) {
      await db.schema
        .alterTable('links')
        .addColumn('refused', 'integer', (c) => c.notNull().defaultTo(0))
        .execute();
    },
  };
}

/**
 * account-v1: a manifest's seq and backupVersion are u32, and `GET /v1/manifest/history` takes a
 * cursor up to 2^32 - 1. PostgreSQL's `integer` stops at 2^31 - 1 (a backup version or cursor
 * past it failed there as a 500), so both columns become `bigint`; SQLite's INTEGER is 64-bit
 * already.
 */
function u32Columns(dialect: StorageDialect): Migration {
  return {
    async up(db: AnyDb) {
      if (dialect !== 'postgres') return;
      await db.schema
        .alterTable('manifests')
        .alterColumn('seq', (c) => c.setDataType('bigint'))
        .execute();
      await db.schema
        .alterTable('backups')
        .alterColumn('version', (c) => c.setDataType('bigint'))
        .execute();
    },
  };
}

/** The hourly sweep deletes idle throttle states (spec "Throttling") by their `not_before`. */
function throttleIdleIndex(): Migration {
  return {
    async up(db: AnyDb) {
      await db.schema
        .createIndex('throttle_idle_idx')
        .on('throttle')
        .column('not_before')
        .execute();
    },
  };
}

/**
 * The migrations for `dialect`, by name; names sort in the order they run. Never edit one that
 * has shipped: add the next.
 */
export function storageMigrations(dialect: StorageDialect): MigrationProvider {
  return {
    async getMigrations() {
      return {
        '0001_initial': initial(dialect),
        '0002_key_packages': keyPackages(dialect),
        '0003_delivery': delivery(dialect),
        '0004_blobs': blobs(),
        '0005_delivery_limits': deliveryLimits(),
        '0006_retired_accounts': retiredAccounts(dialect),
        '0007_link_refusal': linkRefusal(),
        '0008_u32_columns': u32Columns(dialect),
        '0009_throttle_idle': throttleIdleIndex(),
      };
    },
  };
}
