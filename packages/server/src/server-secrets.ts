// The server's own long-term secrets, kept in storage.secrets (encrypted there under the key
// provider's KEK): the OPAQUE server setup (OPRF seed and key pair: losing it locks every user
// out; leaking it with the database allows offline guessing) and the throttle HMAC key.
import { randomBytes, utf8Decode, utf8Encode } from '@coffer/crypto';
import { createOpaqueSetup } from './opaque.js';
import type { Storage } from './storage/types.js';

/** Names in storage.secrets; the version is part of the name, so a new format gets a new slot. */
export const OPAQUE_SETUP_SECRET = 'opaque-server-setup/v1';
export const THROTTLE_KEY_SECRET = 'throttle-hmac-key/v1';
const THROTTLE_KEY_BYTES = 32;

/** The secrets {@link createApp} needs. */
export interface ServerSecrets {
  readonly opaqueSetup: string;
  readonly throttleKey: Uint8Array;
}

/**
 * Loads the server secrets, creating each on first start. Creation is first-writer-wins
 * (`putIfAbsent`), so processes starting together against one database agree on one value.
 *
 * @throws {Error} when a stored secret is malformed (the database was edited), or what the
 *   storage throws (key provider unavailable, wrong KEK).
 * @example const { opaqueSetup, throttleKey } = await loadServerSecrets(storage);
 */
export async function loadServerSecrets(storage: Storage): Promise<ServerSecrets> {
  const setupBytes =
    (await storage.secrets.get(OPAQUE_SETUP_SECRET)) ??
    (await storage.secrets.putIfAbsent(OPAQUE_SETUP_SECRET, utf8Encode(await createOpaqueSetup())));
  const opaqueSetup = utf8Decode(setupBytes);
  if (!/^[A-Za-z0-9_-]{100,400}$/.test(opaqueSetup))
    throw new Error(`stored secret ${OPAQUE_SETUP_SECRET} is malformed`);
  const throttleKey =
    (await storage.secrets.get(THROTTLE_KEY_SECRET)) ??
    (await storage.secrets.putIfAbsent(THROTTLE_KEY_SECRET, randomBytes(THROTTLE_KEY_BYTES)));
  if (throttleKey.length !== THROTTLE_KEY_BYTES)
    throw new Error(`stored secret ${THROTTLE_KEY_SECRET} is malformed`);
  return { opaqueSetup, throttleKey };
}
