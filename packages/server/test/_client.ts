// A test client doing what an SDK does, with real OPAQUE client calls and real manifests and
// backups from @coffer/protocol. OPAQUE's key stretching is made cheap here for speed (the
// server neither knows nor cares what the client uses).
import { fromBase64url, toBase64url } from '@coffer/crypto';
import {
  createBackup,
  type DeviceEntry,
  type Ed25519KeyPair,
  generateKeyPair,
  generateRecoveryCode,
  type ManifestBody,
  newDeviceId,
  nextManifestBody,
  type RecoveryCode,
  recoveryProof,
  recoveryVerifier,
  rewrapBackup,
  type SignedManifest,
  signLoginProof,
  signManifest,
  sortDevices,
} from '@coffer/protocol';
import * as opaque from '@serenity-kit/opaque';
import type { Fetcher } from './_harness.js';

export const CHEAP_KSF = {
  'argon2id-custom': { memory: 1024, iterations: 1, parallelism: 1 },
} as const;

export interface Reply {
  readonly status: number;
  readonly headers: Headers;
  readonly text: string;
  // biome-ignore lint/suspicious/noExplicitAny: test convenience for reading JSON replies
  readonly json: any;
}

/** One JSON call. */
export async function call(
  fetcher: Fetcher,
  method: string,
  path: string,
  body?: unknown,
  token?: string,
): Promise<Reply> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetcher(path, {
    method,
    headers,
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

export const wire = (m: SignedManifest) => ({
  body: toBase64url(m.body),
  signature: toBase64url(m.signature),
});

export interface Device {
  readonly id: string;
  readonly keys: Ed25519KeyPair;
  readonly entry: DeviceEntry;
}

export async function makeDevice(name = 'laptop'): Promise<Device> {
  const keys = await generateKeyPair();
  const id = newDeviceId();
  return { id, keys, entry: { id, signingKey: keys.publicKey, name, addedAt: 1_700_000_000_000 } };
}

export interface Account {
  readonly username: string;
  password: string;
  readonly accountId: string;
  token: string;
  readonly device: Device;
  readonly identity: Ed25519KeyPair;
  readonly recoveryCode: RecoveryCode;
  manifest: SignedManifest;
  body: ManifestBody;
  backup: Uint8Array;
  exportKey: Uint8Array;
}

/** OPAQUE registration against `start`/`finish`-style endpoints: returns record and export key. */
export function register(password: string, registrationResponse: string, state: string) {
  const r = opaque.client.finishRegistration({
    clientRegistrationState: state,
    registrationResponse,
    password,
    keyStretching: CHEAP_KSF,
  });
  return { registrationRecord: r.registrationRecord, exportKey: fromBase64url(r.exportKey) };
}

/**
 * The whole signup; throws unless both steps succeed. `options.accountId` replaces the id
 * signup/start issued (what a client that picks its own id would send).
 */
export async function signup(
  fetcher: Fetcher,
  username: string,
  password: string,
  options: { readonly accountId?: string } = {},
): Promise<Account> {
  await opaque.ready;
  const start = opaque.client.startRegistration({ password });
  const s = await call(fetcher, 'POST', '/v1/signup/start', {
    username,
    registrationRequest: start.registrationRequest,
  });
  if (s.status !== 200) throw new Error(`signup/start ${s.status} ${s.text}`);
  const accountId: string = options.accountId ?? s.json.accountId;
  const { registrationRecord, exportKey } = register(
    password,
    s.json.registrationResponse,
    start.clientRegistrationState,
  );
  const device = await makeDevice();
  const identity = await generateKeyPair();
  const recoveryCode = generateRecoveryCode();
  const sealed = await createBackup({
    accountId,
    exportKey,
    recoveryCode,
    secrets: { identitySeed: identity.seed },
  });
  const body: ManifestBody = {
    accountId,
    seq: 1,
    prev: new Uint8Array(32),
    identityKey: identity.publicKey,
    backupVersion: sealed.version,
    backupHash: sealed.hash,
    issuedAt: 1_700_000_000_000,
    devices: [device.entry],
  };
  const manifest = await signManifest(identity.signingKey, body);
  const f = await call(fetcher, 'POST', '/v1/signup/finish', {
    username,
    accountId,
    registrationRecord,
    deviceId: device.id,
    manifest: wire(manifest),
    backup: toBase64url(sealed.backup),
    recoveryVerifier: toBase64url(await recoveryVerifier(await recoveryProof(recoveryCode))),
  });
  if (f.status !== 201) throw new Error(`signup/finish ${f.status} ${f.text}`);
  return {
    username,
    password,
    accountId,
    token: f.json.token,
    device,
    identity,
    recoveryCode,
    manifest,
    body,
    backup: sealed.backup,
    exportKey,
  };
}

/**
 * login/start then login/finish; returns both replies (finish undefined when start failed).
 * `device` is the device the login names: a {@link Device} signs the login proof with its key
 * (what a listed device does), a bare id sends none (a new device). `options.proofKey` signs with
 * another key instead; `options.proof` sends the given proof as it is.
 */
export async function login(
  fetcher: Fetcher,
  username: string,
  password: string,
  device?: string | Device,
  options: { readonly proofKey?: Ed25519KeyPair; readonly proof?: string } = {},
): Promise<{ start: Reply; finish?: Reply; exportKey?: Uint8Array; proof?: string }> {
  await opaque.ready;
  const c = opaque.client.startLogin({ password });
  const start = await call(fetcher, 'POST', '/v1/login/start', {
    username,
    startLoginRequest: c.startLoginRequest,
  });
  if (start.status !== 200) return { start };
  const done = opaque.client.finishLogin({
    clientLoginState: c.clientLoginState,
    loginResponse: start.json.loginResponse,
    password,
    keyStretching: CHEAP_KSF,
  });
  // A wrong password is noticed by the client; it still sends a proof (random) so the server
  // sees a failed attempt, as a real attacker's request would look.
  const finishLoginRequest =
    done?.finishLoginRequest ?? toBase64url(crypto.getRandomValues(new Uint8Array(64)));
  const deviceId = typeof device === 'string' ? device : device?.id;
  const key = options.proofKey ?? (typeof device === 'object' ? device.keys : undefined);
  let proof = options.proof;
  if (proof === undefined && key && deviceId && done) {
    const signed = await signLoginProof(key.signingKey, {
      loginId: start.json.loginId,
      deviceId,
      sessionKey: fromBase64url(done.sessionKey),
    });
    proof = toBase64url(signed);
  }
  const finish = await call(fetcher, 'POST', '/v1/login/finish', {
    loginId: start.json.loginId,
    finishLoginRequest,
    ...(deviceId ? { deviceId } : {}),
    ...(proof !== undefined ? { deviceProof: proof } : {}),
  });
  return {
    start,
    finish,
    ...(done ? { exportKey: fromBase64url(done.exportKey) } : {}),
    ...(proof !== undefined ? { proof } : {}),
  };
}

/** Signs the successor of the account's manifest with `changes`. */
export async function successor(
  account: Account,
  changes: Parameters<typeof nextManifestBody>[1],
): Promise<{ manifest: SignedManifest; body: ManifestBody }> {
  const body = await nextManifestBody(account.manifest, changes);
  return { manifest: await signManifest(account.identity.signingKey, body), body };
}

/** Uploads a manifest adding `device`; updates the account on success. */
export async function addDevice(
  fetcher: Fetcher,
  account: Account,
  device: Device,
): Promise<Reply> {
  const next = await successor(account, {
    devices: sortDevices([...account.body.devices, device.entry]),
  });
  const r = await call(
    fetcher,
    'PUT',
    '/v1/manifest',
    { manifest: wire(next.manifest) },
    account.token,
  );
  if (r.status === 200) {
    account.manifest = next.manifest;
    account.body = next.body;
  }
  return r;
}

/**
 * Password change (or recovery when `token` is a recovery token): new OPAQUE record, rewrapped
 * backup, next manifest (adding `add`, e.g. the recovering device, when given).
 */
export async function changePassword(
  fetcher: Fetcher,
  account: Account,
  newPassword: string,
  token: string,
  via: { exportKey: Uint8Array } | { recoveryCode: RecoveryCode },
  deviceId?: string,
  add?: DeviceEntry,
): Promise<Reply> {
  await opaque.ready;
  const start = opaque.client.startRegistration({ password: newPassword });
  const s = await call(
    fetcher,
    'POST',
    '/v1/password/start',
    { registrationRequest: start.registrationRequest },
    token,
  );
  if (s.status !== 200) return s;
  const { registrationRecord, exportKey } = register(
    newPassword,
    s.json.registrationResponse,
    start.clientRegistrationState,
  );
  const sealed = await rewrapBackup(account.backup, {
    manifest: account.body,
    ...via,
    newExportKey: exportKey,
  });
  const next = await successor(account, {
    backupVersion: sealed.version,
    backupHash: sealed.hash,
    ...(add ? { devices: sortDevices([...account.body.devices, add]) } : {}),
  });
  const f = await call(
    fetcher,
    'POST',
    '/v1/password/finish',
    {
      registrationRecord,
      manifest: wire(next.manifest),
      backup: toBase64url(sealed.backup),
      ...(deviceId ? { deviceId } : {}),
    },
    token,
  );
  if (f.status === 200) {
    account.manifest = next.manifest;
    account.body = next.body;
    account.backup = sealed.backup;
    account.password = newPassword;
    account.exportKey = exportKey;
  }
  return f;
}

export { recoveryProof };
