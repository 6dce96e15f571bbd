// Which devices an account's current manifest lists, as the routes check it: a session's own
// device (KeyPackages, delivery, blobs), a welcome's recipients, and the key a login naming a
// listed device must prove. A stored manifest never
// changes (one row per account and seq, verified before it was stored), so the decoded device
// list is kept per account under its seq: a check costs one read of the newest seq
// (`ManifestStore.latestSeq`, an index-only lookup on the manifests' primary key) and opens and
// decodes a manifest only when that seq moved.
import { decodeManifestBody } from '@coffer/protocol';
import { ServerError } from '../errors.js';
import type { ManifestStore } from '../storage/types.js';
import type { AuthSession } from './_env.js';

/** Accounts whose device lists are kept in memory: a few hundred bytes each. */
export const MAX_CACHED_DEVICE_LISTS = 10_000;

/** The seq, device ids (in manifest order) and signing keys of an account's current manifest. */
export interface CurrentDevices {
  readonly seq: number;
  readonly ids: readonly string[];
  /** Each listed device's Ed25519 public key, by id. */
  readonly signingKeys: ReadonlyMap<string, Uint8Array>;
}

/** Looks up an account's current devices. */
export interface DeviceDirectory {
  /** Undefined for an unknown (or deleted) account. */
  current(accountId: string): Promise<CurrentDevices | undefined>;
}

/**
 * A {@link DeviceDirectory} over `manifests`, with an in-process cache keyed by seq (so it is
 * never stale, whatever other processes write), least recently used out first.
 *
 * @example const devices = createDeviceDirectory(storage.manifests);
 */
export function createDeviceDirectory(
  manifests: ManifestStore,
  maxCached: number = MAX_CACHED_DEVICE_LISTS,
): DeviceDirectory {
  const cache = new Map<string, CurrentDevices>();
  const keep = (accountId: string, value: CurrentDevices) => {
    cache.delete(accountId);
    cache.set(accountId, value);
    if (cache.size > maxCached) cache.delete(cache.keys().next().value as string);
    return value;
  };
  return {
    async current(accountId) {
      const seq = await manifests.latestSeq(accountId);
      if (seq === undefined) {
        cache.delete(accountId);
        return undefined;
      }
      const cached = cache.get(accountId);
      if (cached?.seq === seq) return keep(accountId, cached);
      const latest = await manifests.latest(accountId);
      if (!latest) return undefined;
      const listed = decodeManifestBody(latest.body).devices;
      const ids = listed.map((d) => d.id);
      const signingKeys = new Map(listed.map((d) => [d.id, d.signingKey] as const));
      return keep(accountId, { seq: latest.seq, ids, signingKeys });
    },
  };
}

/**
 * The session's device, which must be listed in its account's current manifest: a session made
 * for a device that was never added (login names any device id) cannot use a device's routes.
 *
 * @throws {ServerError} `FORBIDDEN` for a session that names no device; `NOT_FOUND` when the
 *   account is gone; `CONFLICT` when the current manifest does not list the device.
 */
export async function listedDevice(
  devices: DeviceDirectory,
  session: AuthSession,
  op: string,
): Promise<{ readonly accountId: string; readonly deviceId: string; readonly seq: number }> {
  const deviceId = session.deviceId;
  if (deviceId === null) throw new ServerError('FORBIDDEN', op, 'the session names no device');
  const current = await devices.current(session.accountId);
  if (!current) throw new ServerError('NOT_FOUND', op, 'account not found');
  if (!current.ids.includes(deviceId))
    throw new ServerError('CONFLICT', op, 'the current manifest does not list this device');
  return { accountId: session.accountId, deviceId, seq: current.seq };
}
