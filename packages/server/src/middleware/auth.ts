import type { MiddlewareHandler } from 'hono';
import { ServerError } from '../errors.js';
import type { AppEnv, AuthSession } from '../http/_env.js';
import { REAUTH_WINDOW_MS, tokenHash } from '../sessions.js';
import type { Storage } from '../storage/types.js';

const BEARER = /^Bearer ([A-Za-z0-9_-]{1,64})$/i;

/**
 * Looks a bearer token up: the session it stands for, or undefined for a missing, malformed,
 * unknown or expired token. Only SHA-256(token) is looked up, never the token.
 *
 * @example const session = await sessionFromToken(storage, token, Date.now());
 */
export async function sessionFromToken(
  storage: Storage,
  token: string,
  now: number,
): Promise<AuthSession | undefined> {
  const hash = await tokenHash(token);
  if (!hash) return undefined;
  const record = await storage.sessions.get(hash);
  if (!record) return undefined;
  if (record.expiresAt <= now) {
    await storage.sessions.delete(hash);
    return undefined;
  }
  return {
    tokenHash: hash,
    accountId: record.accountId,
    deviceId: record.deviceId,
    kind: record.kind,
    expiresAt: record.expiresAt,
    authAt: record.authAt,
  };
}

/**
 * Requires `authorization: Bearer <token>` of a live session, stored as `session`. Recovery
 * tokens are refused (`403 FORBIDDEN`) unless `allowRecovery`.
 *
 * @throws {ServerError} `UNAUTHENTICATED` for no, unknown or expired token; `FORBIDDEN`.
 * @example app.get('/v1/session', requireAuth({ storage, now }), handler);
 */
export function requireAuth(options: {
  readonly storage: Storage;
  readonly now: () => number;
  readonly allowRecovery?: boolean;
}): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const op = 'http.auth';
    const match = BEARER.exec(c.req.header('authorization') ?? '');
    const session = match
      ? await sessionFromToken(options.storage, match[1]!, options.now())
      : undefined;
    if (!session) throw new ServerError('UNAUTHENTICATED', op);
    if (session.kind === 'recovery' && !options.allowRecovery)
      throw new ServerError('FORBIDDEN', op, 'a recovery token may only set a new password');
    c.set('session', session);
    return next();
  };
}

/**
 * Requires a session whose password was proved in the last 10 minutes, or a recovery token
 * (whose code was just proved).
 *
 * @throws {ServerError} `REAUTH_REQUIRED`.
 */
export function assertRecentAuth(session: AuthSession, now: number, op: string): void {
  if (session.kind === 'recovery') return;
  if (!(now - session.authAt <= REAUTH_WINDOW_MS)) throw new ServerError('REAUTH_REQUIRED', op);
}
