// spec/http-api-v1.md "KeyPackages": the directory. A KeyPackage is opaque bytes here, sealed at
// rest and bound to its row; its SHA-256 (stored in the clear: a KeyPackage is public material,
// handed to anyone who claims it) is part of the primary key, so a repeat upload is a no-op.
import { sha256, toBase64url } from '@coffer/crypto';
import { type Kysely, sql } from 'kysely';
import type { StoreContext } from './_context.js';
import { bytes, num } from './_rows.js';
import type { StorageDb } from './_schema.js';
import { type ClaimedKeyPackage, type KeyPackageStore, StorageConflictError } from './types.js';

const ONE_TIME = 0;
const LAST_RESORT = 1;

/**
 * How often a claim looks again for a device's one-time package after losing it to a
 * concurrent claim, before handing out the last-resort one. PostgreSQL's SKIP LOCKED makes a
 * loss rare (it needs a row deleted between the pick and the delete); SQLite never loses.
 */
const CLAIM_RETRIES = 3;

/** The row id that binds a KeyPackage's ciphertext: ids and hash are b64url, so `:` is unambiguous. */
function rowId(accountId: string, deviceId: string, lastResort: number, hash: Uint8Array): string {
  return `${accountId}:${deviceId}:${lastResort === LAST_RESORT ? 'r' : 'o'}:${toBase64url(hash)}`;
}

/** Inside a PostgreSQL transaction: locks the account's row until commit. */
export async function lockAccount(tx: Kysely<StorageDb>, accountId: string): Promise<void> {
  await sql`select 1 from accounts where account_id = ${accountId} for update`.execute(tx);
}

/** The KeyPackageStore over the shared context (see types.ts for the contract). */
export function createKeyPackageStore(ctx: StoreContext): KeyPackageStore {
  const { db, sealer } = ctx;

  async function sealRow(
    accountId: string,
    deviceId: string,
    lastResort: number,
    data: Uint8Array,
  ) {
    const hash = await sha256(data);
    const sealed = await sealer.seal(
      'key_packages.data',
      rowId(accountId, deviceId, lastResort, hash),
      data,
    );
    return {
      account_id: accountId,
      device_id: deviceId,
      last_resort: lastResort,
      hash,
      data: sealed,
      created_at: ctx.now(),
    };
  }

  async function oneTimeCount(q: Kysely<StorageDb>, accountId: string, deviceId: string) {
    const row = await q
      .selectFrom('key_packages')
      .select((eb) => eb.fn.countAll().as('n'))
      .where('account_id', '=', accountId)
      .where('device_id', '=', deviceId)
      .where('last_resort', '=', ONE_TIME)
      .executeTakeFirst();
    return row ? Number(row.n) : 0;
  }

  /** Inside a claim: deletes and returns one one-time row of the device, or undefined. */
  async function takeOneTime(tx: Kysely<StorageDb>, accountId: string, deviceId: string) {
    for (let attempt = 0; attempt < CLAIM_RETRIES; attempt++) {
      let pick = tx
        .selectFrom('key_packages')
        .select('hash')
        .where('account_id', '=', accountId)
        .where('device_id', '=', deviceId)
        .where('last_resort', '=', ONE_TIME)
        .orderBy('created_at', 'asc')
        .orderBy('hash', 'asc')
        .limit(1);
      // SQLite's BEGIN IMMEDIATE serialises claims. On PostgreSQL a concurrent claim holds its
      // pick locked until it commits; skipping it takes the next package instead of waiting.
      if (ctx.dialect === 'postgres') pick = pick.forUpdate().skipLocked();
      const picked = await pick.executeTakeFirst();
      if (!picked) return undefined;
      const taken = await tx
        .deleteFrom('key_packages')
        .where('account_id', '=', accountId)
        .where('device_id', '=', deviceId)
        .where('last_resort', '=', ONE_TIME)
        .where('hash', '=', picked.hash)
        .returning(['hash', 'data'])
        .executeTakeFirst();
      if (taken) return taken;
    }
    return undefined;
  }

  return {
    async add(accountId, deviceId, upload, { cap, manifestSeq, replace = false }) {
      const [rows, lastResort] = await Promise.all([
        Promise.all(upload.keyPackages.map((kp) => sealRow(accountId, deviceId, ONE_TIME, kp))),
        upload.lastResort && sealRow(accountId, deviceId, LAST_RESORT, upload.lastResort),
      ]);
      return ctx.transaction(async (tx) => {
        // On PostgreSQL, the account row's lock serialises this with other uploads (so the cap
        // holds) and with revoking manifest appends (so the seq check below is current);
        // SQLite's BEGIN IMMEDIATE already serialises every writer.
        if (ctx.dialect === 'postgres') await lockAccount(tx, accountId);
        const latest = await tx
          .selectFrom('manifests')
          .select((eb) => eb.fn.max('seq').as('seq'))
          .where('account_id', '=', accountId)
          .executeTakeFirst();
        if (latest?.seq == null || num(latest.seq) !== manifestSeq)
          throw new StorageConflictError('manifestSeq');
        // The device's packages of one kind (ONE_TIME or LAST_RESORT), before their successors.
        const deleteKind = (kind: number) =>
          tx
            .deleteFrom('key_packages')
            .where('account_id', '=', accountId)
            .where('device_id', '=', deviceId)
            .where('last_resort', '=', kind)
            .execute();
        if (replace) await deleteKind(ONE_TIME);
        if (rows.length > 0) {
          await tx
            .insertInto('key_packages')
            .values(rows)
            .onConflict((oc) =>
              oc.columns(['account_id', 'device_id', 'last_resort', 'hash']).doNothing(),
            )
            .execute();
        }
        if (lastResort) {
          await deleteKind(LAST_RESORT);
          await tx.insertInto('key_packages').values(lastResort).execute();
        }
        const available = await oneTimeCount(tx, accountId, deviceId);
        // Thrown inside the transaction, so nothing of this upload stays.
        if (available > cap) throw new StorageConflictError('keyPackageCap');
        return available;
      });
    },

    async count(accountId, deviceId) {
      const rows = await db
        .selectFrom('key_packages')
        .select(['last_resort', (eb) => eb.fn.countAll().as('n')])
        .where('account_id', '=', accountId)
        .where('device_id', '=', deviceId)
        .groupBy('last_resort')
        .execute();
      let available = 0;
      let lastResort = false;
      for (const row of rows) {
        if (num(row.last_resort) === LAST_RESORT) lastResort = Number(row.n) > 0;
        else available = Number(row.n);
      }
      return { available, lastResort };
    },

    async claim(accountId, deviceIds) {
      const found = await ctx.transaction(async (tx) => {
        const out: { deviceId: string; lastResort: number; hash: Uint8Array; data: Uint8Array }[] =
          [];
        for (const deviceId of deviceIds) {
          const taken = await takeOneTime(tx, accountId, deviceId);
          if (taken) {
            out.push({ deviceId, lastResort: ONE_TIME, hash: taken.hash, data: taken.data });
            continue;
          }
          const kept = await tx
            .selectFrom('key_packages')
            .select(['hash', 'data'])
            .where('account_id', '=', accountId)
            .where('device_id', '=', deviceId)
            .where('last_resort', '=', LAST_RESORT)
            .executeTakeFirst();
          if (kept)
            out.push({ deviceId, lastResort: LAST_RESORT, hash: kept.hash, data: kept.data });
        }
        return out;
      });
      // Opened after the commit: decryption needs no lock held.
      return Promise.all(
        found.map(
          async (f): Promise<ClaimedKeyPackage> => ({
            deviceId: f.deviceId,
            lastResort: f.lastResort === LAST_RESORT,
            keyPackage: await sealer.open(
              'key_packages.data',
              rowId(accountId, f.deviceId, f.lastResort, bytes(f.hash)),
              f.data,
            ),
          }),
        ),
      );
    },
  };
}
