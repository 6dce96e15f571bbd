// spec/http-api-v1.md "Blobs": encrypted attachments as opaque bytes. Clients encrypt files
// themselves (stream-v1) and carry the blob id, the key and a hash inside end-to-end encrypted
// messages; the server stores, serves and forgets bytes it cannot read. Bodies are streamed to
// and from files, never held whole in memory.
import { randomBytes, toBase64url } from '@coffer/crypto';
import { Hono } from 'hono';
import type { BlobFiles } from '../blob-files.js';
import { ServerError } from '../errors.js';
import { requireAuth } from '../middleware/auth.js';
import type { Storage } from '../storage/types.js';
import { listedDevice } from './_devices.js';
import type { AppEnv, RouteDeps } from './_env.js';
import { idParam } from './validate.js';

/** Largest blob: a large video, while an upload still fits comfortably on one disk. */
export const MAX_BLOB_BYTES = 1024 ** 3;
/** Bytes one account's blobs may hold at once: bounds what one account makes the server store. */
export const BLOB_QUOTA_BYTES = 10 * 1024 ** 3;
/**
 * Blobs one account may hold at once. Each costs the server a file (an inode and at least a disk
 * block) and a row beyond its bytes, so a quota of bytes alone let one account keep billions of
 * 1-byte blobs; 100,000 in the 30 days a blob is kept is over 3,000 attachments a day.
 */
export const MAX_BLOBS_PER_ACCOUNT = 100_000;
/**
 * Uploads one account may have in progress at once (in one server process). Each holds a
 * connection, an open file and a partial file for as long as its body takes (up to the request
 * timeout, an hour); the quota alone did not bound them, as an upload declaring a small length
 * reserves next to nothing. An app uploads a few attachments at a time.
 */
export const MAX_UPLOADS_PER_ACCOUNT = 16;
/** Blobs are kept this long, like the messages that carry their ids (`DELIVERY_RETENTION_MS`). */
export const BLOB_RETENTION_MS = 30 * 24 * 60 * 60 * 1000;
/**
 * A file without a row, or a partial upload, older than this is swept: long enough that an
 * upload in progress (whose partial file is written to as it arrives) is never touched.
 */
export const BLOB_ORPHAN_GRACE_MS = 60 * 60 * 1000;
/** The one route whose body is streamed instead of read by the body-limit middleware. */
export const BLOB_UPLOAD_PATH = '/v1/blobs';

/** The blob directory and its limits, as the routes and the sweep use them. */
export interface BlobService {
  readonly files: BlobFiles;
  /** Default {@link MAX_BLOB_BYTES}. */
  readonly maxBytes: number;
  /** Default {@link BLOB_QUOTA_BYTES}. */
  readonly quotaBytes: number;
  /** Default {@link MAX_BLOBS_PER_ACCOUNT}. */
  readonly maxCount: number;
}

const OCTET_STREAM = /^application\/octet-stream\s*(;.*)?$/i;

/**
 * Upload, download and delete of blobs. Without a blob directory (`deps.blobs` undefined) every
 * blob route answers `503 UNAVAILABLE`.
 *
 * @example app.route('/', blobRoutes(deps));
 */
export function blobRoutes(deps: RouteDeps): Hono<AppEnv> {
  const { storage, now, devices } = deps;
  const app = new Hono<AppEnv>();
  const auth = requireAuth({ storage, now });
  // Bytes of uploads in progress, per account. In-process only: each server process reserves
  // for its own uploads, so N processes sharing a database may together have up to N × the
  // quota on disk at once; the row check in `BlobStore.add` still keeps what is stored within it.
  const inFlight = new Map<string, number>();
  /** Uploads in progress per account ({@link MAX_UPLOADS_PER_ACCOUNT}), per process as well. */
  const uploading = new Map<string, number>();
  const reserve = (accountId: string, bytes: number) =>
    inFlight.set(accountId, (inFlight.get(accountId) ?? 0) + bytes);
  const release = (accountId: string, bytes: number) => {
    const left = (inFlight.get(accountId) ?? 0) - bytes;
    if (left > 0) inFlight.set(accountId, left);
    else inFlight.delete(accountId);
  };
  const service = (op: string): BlobService => {
    if (!deps.blobs) throw new ServerError('UNAVAILABLE', op, 'blob storage is not configured');
    return deps.blobs;
  };

  app.post(BLOB_UPLOAD_PATH, auth, async (c) => {
    const op = 'blobs.upload';
    const body = c.req.raw.body;
    const refuse = async (err: unknown): Promise<never> => {
      await body?.cancel().catch(() => {});
      throw err;
    };
    const { accountId } = await listedDevice(devices, c.get('session'), op).catch(refuse);
    const { files, maxBytes, quotaBytes, maxCount } = service(op);
    const type = c.req.header('content-type');
    if (type === undefined || !OCTET_STREAM.test(type.trim())) {
      await refuse(
        new ServerError(
          'UNSUPPORTED_MEDIA_TYPE',
          op,
          'request body must be application/octet-stream',
        ),
      );
    }
    if (body === null) return refuse(new ServerError('BAD_REQUEST', op, 'expected a body'));
    const declaredText = c.req.header('content-length');
    const declared = declaredText === undefined ? undefined : Number(declaredText);
    if (declared !== undefined && !(declared <= maxBytes))
      await refuse(new ServerError('PAYLOAD_TOO_LARGE', op));
    // Counted until the finally below (spec "Blobs": MAX_UPLOADS_PER_ACCOUNT), refused unread.
    const busy = uploading.get(accountId) ?? 0;
    if (busy >= MAX_UPLOADS_PER_ACCOUNT) {
      const why = `at most ${MAX_UPLOADS_PER_ACCOUNT} uploads of one account at once`;
      await refuse(new ServerError('RATE_LIMITED', op, why, { retryAfter: 1 }));
    }
    uploading.set(accountId, busy + 1);
    // Checked before reading, so a full account is told at once; checked again, atomically,
    // when the row is written. Uploads in progress hold the room they may still fill (their
    // declared length, else all they are allowed), so that concurrent uploads cannot together
    // write more than the quota to disk before their rows are refused. The room is reserved
    // before the usage is read, and cut down to what is left after: an upload finishing in
    // between is then counted twice (its row and its reservation), never not at all.
    const provisional = Math.min(maxBytes, declared ?? maxBytes);
    reserve(accountId, provisional);
    let held = provisional;
    try {
      const usage = await storage.blobs.usage(accountId);
      // A full count is told at once too; `BlobStore.add` checks it again, atomically.
      if (usage.count >= maxCount) {
        const why = `the account holds ${maxCount} blobs, the most it may`;
        await refuse(new ServerError('QUOTA_EXCEEDED', op, why));
      }
      const others = (inFlight.get(accountId) ?? 0) - provisional;
      const room = Math.max(0, quotaBytes - usage.bytes - others);
      if (declared !== undefined && declared > room)
        await refuse(new ServerError('QUOTA_EXCEEDED', op));
      const limit = Math.min(provisional, room);
      release(accountId, provisional - limit);
      held = limit;
      const blobId = toBase64url(randomBytes(16));
      const written = await files.write(blobId, body, limit);
      if (!written.ok) {
        if (written.reason === 'unreadable')
          throw new ServerError('BAD_REQUEST', op, 'request body could not be read');
        // Past the room left (rather than past the size limit, or a declared length).
        const quota = limit === room && room < maxBytes;
        throw new ServerError(quota ? 'QUOTA_EXCEEDED' : 'PAYLOAD_TOO_LARGE', op);
      }
      try {
        if (written.size === 0) throw new ServerError('BAD_REQUEST', op, 'expected a body');
        const added = await storage.blobs.add(
          { blobId, accountId, size: written.size, createdAt: now() },
          { quota: quotaBytes, maxCount },
        );
        if (!added.ok) {
          throw added.reason === 'quota'
            ? new ServerError('QUOTA_EXCEEDED', op)
            : new ServerError('UNAUTHENTICATED', op);
        }
      } catch (err) {
        await files.remove([blobId]).catch(() => {});
        throw err;
      }
      return c.json({ blobId, size: written.size }, 201);
    } finally {
      release(accountId, held);
      const left = (uploading.get(accountId) ?? 1) - 1;
      if (left > 0) uploading.set(accountId, left);
      else uploading.delete(accountId);
    }
  });

  app.get('/v1/blobs/:blobId', auth, async (c) => {
    const op = 'blobs.get';
    await listedDevice(devices, c.get('session'), op);
    const { files } = service(op);
    const blobId = idParam(c.req.param('blobId'), 'blobId', op);
    // Any session that knows the id may read: the id is a 128-bit capability, carried inside
    // end-to-end encrypted messages; the bytes are ciphertext under a key the server never sees.
    const record = await storage.blobs.get(blobId);
    // Past retention a blob is gone (spec), whether or not the sweep has run yet.
    const live = record !== undefined && record.createdAt > now() - BLOB_RETENTION_MS;
    const opened = live ? await files.open(blobId) : undefined;
    if (!opened) throw new ServerError('NOT_FOUND', op);
    const headers = {
      'content-type': 'application/octet-stream',
      'content-length': String(opened.size),
    };
    // HEAD is answered by this handler too, and its body thrown away: close the file now.
    if (c.req.method === 'HEAD') {
      await opened.stream.cancel().catch(() => {});
      return new Response(null, { status: 200, headers });
    }
    return new Response(opened.stream, { status: 200, headers });
  });

  app.delete('/v1/blobs/:blobId', auth, async (c) => {
    const op = 'blobs.delete';
    const { accountId } = await listedDevice(devices, c.get('session'), op);
    const { files } = service(op);
    const blobId = idParam(c.req.param('blobId'), 'blobId', op);
    // Another account's blob answers like an unknown one: no oracle for which ids exist.
    if (!(await storage.blobs.delete(blobId, accountId))) throw new ServerError('NOT_FOUND', op);
    await files.remove([blobId]);
    return c.body(null, 204);
  });

  return app;
}

/** What one {@link sweepBlobs} removed. */
export interface BlobSweep {
  /** Blobs past retention (rows and files). */
  readonly expired: number;
  /** Files whose row never came or is gone (a crash between rename and insert, a deleted account). */
  readonly orphans: number;
  /** Abandoned partial uploads. */
  readonly partials: number;
}

/**
 * Retention (spec "Blobs"): deletes blobs created at or before `now - retentionMs` (rows, then
 * files), files without a row and partial uploads older than {@link BLOB_ORPHAN_GRACE_MS}.
 *
 * @example await sweepBlobs(storage, service.files, Date.now());
 */
export async function sweepBlobs(
  storage: Storage,
  files: BlobFiles,
  now: number,
  retentionMs: number = BLOB_RETENTION_MS,
): Promise<BlobSweep> {
  const expired = await storage.blobs.deleteOlderThan(now - retentionMs);
  await files.remove(expired);
  const graceEnd = now - BLOB_ORPHAN_GRACE_MS;
  const old = (await files.list()).filter((f) => f.modifiedAt <= graceEnd).map((f) => f.blobId);
  const known = await storage.blobs.existing(old);
  const orphans = old.filter((id) => !known.has(id));
  await files.remove(orphans);
  const partials = await files.removeStaleTemp(graceEnd);
  return { expired: expired.length, orphans: orphans.length, partials };
}
