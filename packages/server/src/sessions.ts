import { fromBase64url, randomBytes, sha256, toBase64url } from '@coffer/crypto';
import type { NewSession, SessionStore } from './storage/types.js';

/** spec/http-api-v1.md: sessions expire after 30 days. */
export const SESSION_TTL_MS = 30 * 24 * 60 * 60 * 1000;
/** Recovery tokens live 10 minutes. */
export const RECOVERY_TTL_MS = 10 * 60 * 1000;
/** Password change and account deletion need a password proved this recently. */
export const REAUTH_WINDOW_MS = 10 * 60 * 1000;
/** OPAQUE login states are kept this long between start and finish. */
export const LOGIN_STATE_TTL_MS = 60 * 1000;
/**
 * A manifest change ends the account's sessions that name no device or a device the new
 * manifest does not list once they are this old: a new device logs in under its own id and adds
 * itself to the manifest right after (seconds), and a recovery token lives no longer than this.
 */
export const UNLISTED_SESSION_GRACE_MS = 10 * 60 * 1000;
/** Links live 10 minutes (account-v1 §6). */
export const LINK_TTL_MS = 10 * 60 * 1000;

/** Bearer tokens are 32 random bytes. */
export const TOKEN_BYTES = 32;
/** …written as 43 b64url characters. */
export const TOKEN_TEXT_LENGTH = 43;

/** A fresh bearer token and the SHA-256 of its bytes (all the server stores). */
export interface NewToken {
  readonly token: string;
  readonly tokenHash: Uint8Array;
}

/**
 * Makes a bearer token: 32 random bytes, b64url.
 *
 * @example const { token, tokenHash } = await newToken();
 */
export async function newToken(): Promise<NewToken> {
  const bytes = randomBytes(TOKEN_BYTES);
  const token = toBase64url(bytes);
  const tokenHash = await sha256(bytes);
  bytes.fill(0);
  return { token, tokenHash };
}

/** A session made by {@link issueSession}: its token (for the client) and what was stored. */
export interface IssuedSession extends NewToken {
  readonly expiresAt: number;
}

/**
 * Makes a token and stores its session, created `now` and expiring `ttlMs` later; `authAt` is
 * when a password or recovery code was proved (default `now`; 0 for none).
 *
 * @example const { token, expiresAt } = await issueSession(storage.sessions, { accountId, deviceId, kind: 'session', now: t, ttlMs: SESSION_TTL_MS });
 */
export async function issueSession(
  sessions: SessionStore,
  session: Pick<NewSession, 'accountId' | 'deviceId' | 'kind'> & {
    readonly now: number;
    readonly ttlMs: number;
    readonly authAt?: number;
  },
): Promise<IssuedSession> {
  const { token, tokenHash } = await newToken();
  const expiresAt = session.now + session.ttlMs;
  await sessions.create({
    tokenHash,
    accountId: session.accountId,
    deviceId: session.deviceId,
    kind: session.kind,
    createdAt: session.now,
    expiresAt,
    authAt: session.authAt ?? session.now,
  });
  return { token, tokenHash, expiresAt };
}

/**
 * The stored hash of a token's text, or undefined when the text is not a token.
 *
 * @example const hash = await tokenHash(headerToken);
 */
export async function tokenHash(token: string): Promise<Uint8Array | undefined> {
  if (token.length !== TOKEN_TEXT_LENGTH) return undefined;
  let bytes: Uint8Array;
  try {
    bytes = fromBase64url(token);
  } catch {
    return undefined;
  }
  if (bytes.length !== TOKEN_BYTES) return undefined;
  const hash = await sha256(bytes);
  bytes.fill(0);
  return hash;
}
