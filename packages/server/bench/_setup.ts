// A server over a fresh SQLite file for the benchmarks, and a client that does what an SDK does.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fromBase64url, generateAeadKey, toBase64url } from '@coffer/crypto';
import { createLocalProvider } from '@coffer/fields';
import {
  createBackup,
  generateKeyPair,
  generateRecoveryCode,
  newDeviceId,
  recoveryProof,
  recoveryVerifier,
  signManifest,
} from '@coffer/protocol';
import * as opaque from '@serenity-kit/opaque';
import type { Hono } from 'hono';
import { type AppEnv, createApp } from '../src/app.js';
import { createLogger } from '../src/logger.js';
import { createMetrics } from '../src/metrics.js';
import { loadServerSecrets } from '../src/server-secrets.js';
import { openStorage } from '../src/storage/open.js';
import type { Storage } from '../src/storage/types.js';
import type { Throttle } from '../src/throttle.js';

/** What a client's OPAQUE key stretching costs; the server never sees it. */
export type KeyStretching = opaque.client.FinishRegistrationParams['keyStretching'];
/** The client default this bench assumes for wall-time rows (Argon2id, 64 MiB, t = 3, p = 4). */
export const CLIENT_KSF: KeyStretching = {
  'argon2id-custom': { memory: 65536, iterations: 3, parallelism: 4 },
};
/** For rows that exclude client work: the cheapest stretching, so untimed setup stays short. */
export const CHEAP_KSF: KeyStretching = {
  'argon2id-custom': { memory: 1024, iterations: 1, parallelism: 1 },
};

export interface BenchServer {
  readonly app: Hono<AppEnv>;
  readonly storage: Storage;
  close(): Promise<void>;
}

/**
 * A throttle that never waits: for rows that repeat login/start for a few names far more often
 * than the real throttle allows (it counts every start as a failure until login/finish).
 */
export const NO_THROTTLE: Throttle = {
  keys: async () => ({ account: new Uint8Array(32), address: new Uint8Array(32) }),
  admit: async () => {},
  confirm: async () => {},
};

export async function startBenchServer(
  options: { throttle?: Throttle } = {},
): Promise<BenchServer> {
  const dir = mkdtempSync(join(tmpdir(), 'coffer-bench-'));
  const provider = await createLocalProvider({ bench: generateAeadKey() });
  const storage = await openStorage({
    sqlitePath: join(dir, 'coffer.sqlite'),
    provider,
    kekId: 'bench',
  });
  const secrets = await loadServerSecrets(storage);
  const app = createApp({
    storage,
    ...secrets,
    logger: createLogger({ level: 'silent' }),
    metrics: createMetrics({ processMetrics: false }),
    ...(options.throttle ? { throttle: options.throttle } : {}),
  });
  await opaque.ready;
  return {
    app,
    storage,
    async close() {
      await storage.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** One JSON request in-process; returns status and parsed body. */
export async function post(app: Hono<AppEnv>, path: string, body: unknown) {
  const res = await app.request(path, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  // biome-ignore lint/suspicious/noExplicitAny: bench convenience for reading JSON replies
  const json: any = res.status === 204 ? undefined : await res.json();
  return { status: res.status, json };
}

/** A full signup from the client side (OPAQUE, keys, backup, manifest). */
export async function signup(
  app: Hono<AppEnv>,
  username: string,
  password: string,
  keyStretching: KeyStretching,
): Promise<string> {
  const start = opaque.client.startRegistration({ password });
  const s = await post(app, '/v1/signup/start', {
    username,
    registrationRequest: start.registrationRequest,
  });
  if (s.status !== 200) throw new Error(`signup/start answered ${s.status}`);
  const accountId: string = s.json.accountId;
  const reg = opaque.client.finishRegistration({
    clientRegistrationState: start.clientRegistrationState,
    registrationResponse: s.json.registrationResponse,
    password,
    keyStretching,
  });
  const identity = await generateKeyPair();
  const device = await generateKeyPair();
  const deviceId = newDeviceId();
  const recoveryCode = generateRecoveryCode();
  const sealed = await createBackup({
    accountId,
    exportKey: fromBase64url(reg.exportKey),
    recoveryCode,
    secrets: { identitySeed: identity.seed },
  });
  const manifest = await signManifest(identity.signingKey, {
    accountId,
    seq: 1,
    prev: new Uint8Array(32),
    identityKey: identity.publicKey,
    backupVersion: 1,
    backupHash: sealed.hash,
    issuedAt: Date.now(),
    devices: [{ id: deviceId, signingKey: device.publicKey, name: 'bench', addedAt: Date.now() }],
  });
  const f = await post(app, '/v1/signup/finish', {
    username,
    accountId,
    registrationRecord: reg.registrationRecord,
    deviceId,
    manifest: { body: toBase64url(manifest.body), signature: toBase64url(manifest.signature) },
    backup: toBase64url(sealed.backup),
    recoveryVerifier: toBase64url(await recoveryVerifier(await recoveryProof(recoveryCode))),
  });
  if (f.status !== 201) throw new Error(`signup/finish answered ${f.status}`);
  return accountId;
}

/** A full login from the client side; returns the session token. */
export async function login(
  app: Hono<AppEnv>,
  username: string,
  password: string,
  keyStretching: KeyStretching,
): Promise<string> {
  const c = opaque.client.startLogin({ password });
  const s = await post(app, '/v1/login/start', {
    username,
    startLoginRequest: c.startLoginRequest,
  });
  if (s.status !== 200) throw new Error(`login/start answered ${s.status}`);
  const done = opaque.client.finishLogin({
    clientLoginState: c.clientLoginState,
    loginResponse: s.json.loginResponse,
    password,
    keyStretching,
  });
  if (!done) throw new Error('login: the client rejected the server');
  const f = await post(app, '/v1/login/finish', {
    loginId: s.json.loginId,
    finishLoginRequest: done.finishLoginRequest,
  });
  if (f.status !== 200) throw new Error(`login/finish answered ${f.status}`);
  return f.json.token;
}
