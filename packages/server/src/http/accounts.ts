// spec/http-api-v1.md "Signup", "Login", "Session and account".
import { concatBytes, fromBase64url, randomBytes, toBase64url, wipe } from '@coffer/crypto';
import { verifyLoginProof } from '@coffer/protocol';
import { Hono } from 'hono';
import { isIssuedAccountId, issueAccountId } from '../account-ids.js';
import { ServerError } from '../errors.js';
import { assertRecentAuth, requireAuth } from '../middleware/auth.js';
import {
  fakeIdentifier,
  finishLogin,
  OPAQUE_SIZES,
  registrationResponse,
  startLogin,
} from '../opaque.js';
import { issueSession, LOGIN_STATE_TTL_MS, newToken, SESSION_TTL_MS } from '../sessions.js';
import { createSignupLimiter, type SignupLimits } from '../signup-limiter.js';
import { StorageConflictError } from '../storage/types.js';
import type { ThrottleKeys } from '../throttle.js';
import { parseUsername } from '../username.js';
import { type AppContext, type AppEnv, DELETED_ACCOUNT_LOG, type RouteDeps } from './_env.js';
import { readJson } from './_json.js';
import { checkFirstManifest } from './_manifests.js';
import {
  b64urlTextField,
  bytesField,
  idField,
  LIMITS,
  manifestField,
  optionalBytesField,
  optionalIdField,
} from './validate.js';

// The stored login state: version || account throttle key || address throttle key || OPAQUE
// state. The throttle keys travel with it so that login/finish (which knows no username) can
// take back the failure login/start counted against them. Stored encrypted by the storage.
const LOGIN_STATE_VERSION = 0x02;
const KEY_BYTES = 32;
const HEADER = 1 + 2 * KEY_BYTES;

interface LoginState {
  readonly keys: ThrottleKeys;
  readonly serverLoginState: string;
}

function packLoginState(state: LoginState): Uint8Array {
  return concatBytes(
    Uint8Array.of(LOGIN_STATE_VERSION),
    state.keys.account,
    state.keys.address,
    fromBase64url(state.serverLoginState),
  );
}

function unpackLoginState(bytes: Uint8Array): LoginState | undefined {
  if (bytes.length <= HEADER || bytes[0] !== LOGIN_STATE_VERSION) return undefined;
  return {
    keys: {
      account: bytes.slice(1, 1 + KEY_BYTES),
      address: bytes.slice(1 + KEY_BYTES, HEADER),
    },
    serverLoginState: toBase64url(bytes.subarray(HEADER)),
  };
}

/**
 * Signup, login, session, logout and account deletion. `signupLimits` replaces the per-address
 * signup limits (default `SIGNUP_LIMITS`).
 *
 * @example app.route('/', accountRoutes(deps));
 */
export function accountRoutes(deps: RouteDeps, signupLimits?: SignupLimits): Hono<AppEnv> {
  const { storage, now } = deps;
  const app = new Hono<AppEnv>();
  const auth = requireAuth({ storage, now });
  const limiter = createSignupLimiter(storage.throttle, deps.throttleKey, now, signupLimits);
  // Counted first, before the body is looked at: every call counts, malformed ones included.
  const countSignup = async (step: 'start' | 'finish', c: AppContext, op: string) => {
    try {
      await limiter.count(step, deps.clientAddress(c), op);
    } catch (err) {
      if (ServerError.is(err, 'RATE_LIMITED')) deps.metrics.rateLimited.inc();
      throw err;
    }
  };

  app.post('/v1/signup/start', async (c) => {
    const op = 'signup.start';
    await countSignup('start', c, op);
    const body = readJson(c, op);
    const username = parseUsername(body.username, op);
    const request = b64urlTextField(body, 'registrationRequest', op, {
      exact: OPAQUE_SIZES.registrationRequest,
    });
    if (await storage.accounts.usernameTaken(username.normalized))
      throw new ServerError('USERNAME_TAKEN', op);
    const accountId = await issueAccountId(deps.throttleKey);
    const response = await registrationResponse(deps.opaqueSetup, accountId, request, op);
    return c.json({ accountId, registrationResponse: response });
  });

  app.post('/v1/signup/finish', async (c) => {
    const op = 'signup.finish';
    await countSignup('finish', c, op);
    const body = readJson(c, op);
    const username = parseUsername(body.username, op);
    const accountId = idField(body, 'accountId', op);
    // spec "Signup": the server picks the id; one signup/start did not issue is refused before
    // any other work.
    if (!(await isIssuedAccountId(deps.throttleKey, accountId)))
      throw new ServerError('BAD_REQUEST', op, 'the account id was not issued by signup/start');
    const record = bytesField(body, 'registrationRecord', op, {
      exact: OPAQUE_SIZES.registrationRecord,
    });
    const deviceId = idField(body, 'deviceId', op);
    const manifest = manifestField(body, 'manifest', op);
    const backup = bytesField(body, 'backup', op, { max: LIMITS.backup });
    const recoveryVerifier = bytesField(body, 'recoveryVerifier', op, { exact: LIMITS.hash });
    const manifestBody = await checkFirstManifest(manifest, backup, accountId, deviceId, op);
    const { token, tokenHash } = await newToken();
    const t = now();
    const expiresAt = t + SESSION_TTL_MS;
    try {
      await storage.accounts.create({
        accountId,
        username: username.display,
        opaqueRecord: record,
        manifest: { seq: manifestBody.seq, body: manifest.body, signature: manifest.signature },
        backup: { version: manifestBody.backupVersion, data: backup },
        recoveryVerifier,
        session: {
          tokenHash,
          accountId,
          deviceId,
          kind: 'session',
          createdAt: t,
          expiresAt,
          authAt: t,
        },
      });
    } catch (err) {
      if (err instanceof StorageConflictError) {
        if (err.what === 'username') throw new ServerError('USERNAME_TAKEN', op);
        throw new ServerError('CONFLICT', op, 'account id in use or retired');
      }
      throw err;
    }
    return c.json({ token, expiresAt }, 201);
  });

  app.post('/v1/login/start', async (c) => {
    const op = 'login.start';
    const body = readJson(c, op);
    const username = parseUsername(body.username, op);
    const request = b64urlTextField(body, 'startLoginRequest', op, {
      exact: OPAQUE_SIZES.startLoginRequest,
    });
    const keys = await deps.throttle.keys(username.normalized, deps.clientAddress(c));
    // Counted now: a client that learns the password is wrong never calls login/finish.
    try {
      await deps.throttle.admit(keys, op);
    } catch (err) {
      deps.metrics.rateLimited.inc();
      deps.metrics.logins.inc({ outcome: 'throttled' });
      throw err;
    }
    // Known and unknown names take the same path: one lookup, one OPAQUE evaluation (a fake
    // record for a stable per-name identifier), one stored state.
    const found = await storage.accounts.findLogin(username.normalized);
    const identifier = found
      ? found.accountId
      : await fakeIdentifier(deps.throttleKey, username.normalized);
    const record = found ? toBase64url(found.opaqueRecord) : null;
    const started = await startLogin(deps.opaqueSetup, identifier, record, request, op);
    const loginId = toBase64url(randomBytes(16));
    await storage.logins
      .put(loginId, {
        accountId: found?.accountId ?? null,
        serverLoginState: packLoginState({ keys, serverLoginState: started.serverLoginState }),
        expiresAt: now() + LOGIN_STATE_TTL_MS,
      })
      .catch((err: unknown) => accountGone(deps, c, err, op));
    return c.json({ loginId, loginResponse: started.loginResponse });
  });

  app.post('/v1/login/finish', async (c) => {
    const op = 'login.finish';
    const body = readJson(c, op);
    const loginId = idField(body, 'loginId', op);
    const request = b64urlTextField(body, 'finishLoginRequest', op, {
      exact: OPAQUE_SIZES.finishLoginRequest,
    });
    const deviceId = optionalIdField(body, 'deviceId', op);
    const deviceProof = optionalBytesField(body, 'deviceProof', op, { exact: LIMITS.signature });
    const taken = await storage.logins.take(loginId, now());
    const state = taken && unpackLoginState(taken.serverLoginState);
    if (!taken || !state) {
      deps.metrics.logins.inc({ outcome: 'failure' });
      throw new ServerError('INVALID_CREDENTIALS', op);
    }
    // Run OPAQUE even for an unknown name (it fails against the fake record), so that both
    // failures cost the same.
    const sessionKey = await finishLogin(state.serverLoginState, request);
    const proved =
      sessionKey !== undefined &&
      taken.accountId !== null &&
      (await deviceProved(deps, taken.accountId, { loginId, deviceId, deviceProof, sessionKey }));
    if (!proved || taken.accountId === null) {
      // Already counted by login/start; not confirming it leaves it a failure.
      deps.metrics.logins.inc({ outcome: 'failure' });
      throw new ServerError('INVALID_CREDENTIALS', op);
    }
    const accountId = taken.accountId;
    const { token, expiresAt } = await issueSession(storage.sessions, {
      accountId,
      deviceId: deviceId ?? null,
      kind: 'session',
      now: now(),
      ttlMs: SESSION_TTL_MS,
    }).catch((err: unknown) => {
      deps.metrics.logins.inc({ outcome: 'failure' });
      return accountGone(deps, c, err, op);
    });
    await deps.throttle.confirm(state.keys);
    deps.metrics.logins.inc({ outcome: 'success' });
    return c.json({ token, expiresAt, accountId });
  });

  app.get('/v1/session', auth, async (c) => {
    const session = c.get('session');
    const account = await storage.accounts.get(session.accountId);
    if (!account) throw new ServerError('UNAUTHENTICATED', 'session.get');
    return c.json({
      accountId: session.accountId,
      username: account.username,
      deviceId: session.deviceId,
      expiresAt: session.expiresAt,
      authAt: session.authAt,
    });
  });

  app.post('/v1/logout', auth, async (c) => {
    await storage.sessions.delete(c.get('session').tokenHash);
    return c.body(null, 204);
  });

  app.delete('/v1/account', auth, async (c) => {
    const session = c.get('session');
    assertRecentAuth(session, now(), 'account.delete');
    const { blobIds } = await storage.accounts.delete(session.accountId);
    // The rows went with the account; a file left behind by a failure here is an orphan the
    // blob sweep removes.
    await deps.blobs?.files.remove(blobIds).catch((err: unknown) => {
      deps.logger.warn({ err }, 'removing the blob files of a deleted account failed');
    });
    deps.events.publish(session.accountId, { type: 'deleted' });
    return c.body(null, 204);
  });

  return app;
}

/**
 * A login whose account was deleted between its lookup and its write is answered like any
 * failed login; every other error propagates.
 *
 * @throws {ServerError} `INVALID_CREDENTIALS` for a write that raced the account's deletion.
 */
function accountGone(deps: RouteDeps, c: AppContext, err: unknown, op: string): never {
  if (err instanceof StorageConflictError && err.what === 'deletedAccount') {
    deps.logger.warn({ reqId: c.get('requestId'), op, detail: err.message }, DELETED_ACCOUNT_LOG);
    throw new ServerError('INVALID_CREDENTIALS', op);
  }
  throw err;
}

/**
 * spec "Login": a login naming a device the current manifest lists must carry that device's
 * proof (spec/account-v1.md §7), bound to this login by its id and OPAQUE session key; a login
 * naming no device, or one the manifest does not list (a new device about to add itself), needs
 * none. Checked only after the password: failing it is the same answer as a wrong password.
 */
async function deviceProved(
  deps: RouteDeps,
  accountId: string,
  login: {
    readonly loginId: string;
    readonly deviceId: string | undefined;
    readonly deviceProof: Uint8Array | undefined;
    readonly sessionKey: string;
  },
): Promise<boolean> {
  if (login.deviceId === undefined) return true;
  const current = await deps.devices.current(accountId);
  const signingKey = current?.signingKeys.get(login.deviceId);
  if (!signingKey) return true;
  if (!login.deviceProof) return false;
  const sessionKey = fromBase64url(login.sessionKey);
  try {
    return await verifyLoginProof(signingKey, login.deviceProof, {
      loginId: login.loginId,
      deviceId: login.deviceId,
      sessionKey,
    });
  } finally {
    wipe(sessionKey);
  }
}
