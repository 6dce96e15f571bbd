import { toBase64url } from '@coffer/crypto';
import {
  type ManifestJson,
  manifestFromJson,
  manifestToJson,
  type SignedManifest,
} from '@coffer/protocol';
import { array, bytes, int, type JsonObject, ShapeError, str } from './_json.js';
import { SdkError } from './errors.js';
import type { Transport } from './transport.js';

// The routes of packages/server/spec/http-api-v1.md, typed. Every answer is checked for the
// shape the spec promises; anything else is PROTOCOL_VIOLATION. Nothing here decides whether
// to trust what came back: that is the client's job (verified manifests, opened backups).

/** Bounds how many history pages a client follows (100 manifests each, spec "Devices"). */
export const MAX_HISTORY_PAGES = 1000;
const HISTORY_PAGE = 100;

export interface SessionGrant {
  readonly token: string;
  readonly expiresAt: number;
}

export type LinkStatus =
  | { readonly status: 'waiting' | 'refused' }
  | { readonly status: 'requested'; readonly sealed: Uint8Array };

export type PickupStatus =
  | { readonly status: 'waiting' | 'refused' }
  | {
      readonly status: 'approved';
      readonly sealed: Uint8Array;
      readonly accountId: string;
      readonly token: string;
      readonly expiresAt: number;
    };

/** The API, one method per route; `op` names the public operation for error messages. */
export interface Api {
  signupStart(
    op: string,
    body: { username: string; registrationRequest: string },
  ): Promise<{ accountId: string; registrationResponse: string }>;
  signupFinish(
    op: string,
    body: {
      username: string;
      accountId: string;
      registrationRecord: string;
      deviceId: string;
      manifest: SignedManifest;
      backup: Uint8Array;
      recoveryVerifier: Uint8Array;
    },
  ): Promise<SessionGrant>;
  loginStart(
    op: string,
    body: { username: string; startLoginRequest: string },
  ): Promise<{ loginId: string; loginResponse: string }>;
  loginFinish(
    op: string,
    body: {
      loginId: string;
      finishLoginRequest: string;
      deviceId: string;
      /** The device's login proof, when this home has a key for the device. */
      deviceProof?: Uint8Array;
    },
  ): Promise<SessionGrant & { accountId: string }>;
  session(
    op: string,
    token: string,
  ): Promise<{
    accountId: string;
    username: string;
    deviceId: string;
    expiresAt: number;
    authAt: number;
  }>;
  logout(op: string, token: string): Promise<void>;
  deleteAccount(op: string, token: string): Promise<void>;
  recoverStart(
    op: string,
    body: { username: string; proof: Uint8Array },
  ): Promise<{
    accountId: string;
    recoveryToken: string;
    expiresAt: number;
    manifest: SignedManifest;
    backup: Uint8Array;
  }>;
  passwordStart(
    op: string,
    token: string,
    body: { registrationRequest: string },
  ): Promise<{ registrationResponse: string }>;
  passwordFinish(
    op: string,
    token: string,
    body: {
      registrationRecord: string;
      manifest: SignedManifest;
      backup: Uint8Array;
      deviceId?: string;
    },
  ): Promise<SessionGrant>;
  getManifest(op: string, token: string): Promise<SignedManifest>;
  /** All manifests with seq > after, ascending, following pages. */
  manifestHistory(op: string, token: string, after: number): Promise<SignedManifest[]>;
  putManifest(
    op: string,
    token: string,
    manifest: SignedManifest,
    backup?: Uint8Array,
  ): Promise<{ seq: number }>;
  accountManifest(
    op: string,
    token: string | undefined,
    accountId: string,
  ): Promise<SignedManifest>;
  getBackup(op: string, token: string): Promise<{ backup: Uint8Array; version: number }>;
  createLink(op: string, token: string, linkId: string): Promise<{ expiresAt: number }>;
  putLinkRequest(
    op: string,
    linkId: string,
    body: { sealed: Uint8Array; pickupHash: Uint8Array },
  ): Promise<void>;
  getLink(op: string, token: string, linkId: string): Promise<LinkStatus>;
  approveLink(
    op: string,
    token: string,
    linkId: string,
    body: { sealed: Uint8Array; deviceId: string },
  ): Promise<void>;
  refuseLink(op: string, token: string, linkId: string): Promise<void>;
  pickupLink(op: string, linkId: string, pickup: Uint8Array): Promise<PickupStatus>;
}

/** @internal */
export function createApi(transport: Transport): Api {
  const call = async (
    op: string,
    method: string,
    path: string,
    options: { token?: string | undefined; body?: unknown } = {},
  ): Promise<JsonObject> => {
    const res = await transport.request(method, path, {
      operation: op,
      ...(options.body === undefined ? {} : { body: options.body }),
      ...(options.token === undefined ? {} : { token: options.token }),
    });
    return res ?? {};
  };
  const shape = <T>(op: string, what: string, read: () => T): T => {
    try {
      return read();
    } catch (err) {
      if (err instanceof ShapeError || (err as { name?: string })?.name === 'ProtocolError') {
        // The field name is ours to show; the server's own text never is.
        const detail = (err as { code?: unknown }).code;
        const field = err instanceof ShapeError ? `: ${err.message}` : '';
        throw new SdkError('PROTOCOL_VIOLATION', op, `malformed answer to ${what}${field}`, {
          cause: err,
          detail: typeof detail === 'string' ? detail : 'MALFORMED_RESPONSE',
        });
      }
      throw err;
    }
  };
  const manifestOf = (value: unknown): SignedManifest => manifestFromJson(value);
  const wire = (m: SignedManifest): ManifestJson => manifestToJson(m);
  const grant = (res: JsonObject): SessionGrant => ({
    token: str(res, 'token'),
    expiresAt: int(res, 'expiresAt'),
  });
  const seg = encodeURIComponent;

  return {
    async signupStart(op, body) {
      const res = await call(op, 'POST', '/v1/signup/start', { body });
      return shape(op, 'signup/start', () => ({
        accountId: str(res, 'accountId'),
        registrationResponse: str(res, 'registrationResponse'),
      }));
    },
    async signupFinish(op, b) {
      const res = await call(op, 'POST', '/v1/signup/finish', {
        body: {
          username: b.username,
          accountId: b.accountId,
          registrationRecord: b.registrationRecord,
          deviceId: b.deviceId,
          manifest: wire(b.manifest),
          backup: toBase64url(b.backup),
          recoveryVerifier: toBase64url(b.recoveryVerifier),
        },
      });
      return shape(op, 'signup/finish', () => grant(res));
    },
    async loginStart(op, body) {
      const res = await call(op, 'POST', '/v1/login/start', { body });
      return shape(op, 'login/start', () => ({
        loginId: str(res, 'loginId'),
        loginResponse: str(res, 'loginResponse'),
      }));
    },
    async loginFinish(op, { deviceProof, ...rest }) {
      const body = deviceProof ? { ...rest, deviceProof: toBase64url(deviceProof) } : rest;
      const res = await call(op, 'POST', '/v1/login/finish', { body });
      return shape(op, 'login/finish', () => ({ ...grant(res), accountId: str(res, 'accountId') }));
    },
    async session(op, token) {
      const res = await call(op, 'GET', '/v1/session', { token });
      return shape(op, 'session', () => ({
        accountId: str(res, 'accountId'),
        username: str(res, 'username'),
        deviceId: str(res, 'deviceId'),
        expiresAt: int(res, 'expiresAt'),
        authAt: int(res, 'authAt'),
      }));
    },
    async logout(op, token) {
      await call(op, 'POST', '/v1/logout', { token });
    },
    async deleteAccount(op, token) {
      await call(op, 'DELETE', '/v1/account', { token });
    },
    async recoverStart(op, body) {
      const res = await call(op, 'POST', '/v1/recover/start', {
        body: { username: body.username, proof: toBase64url(body.proof) },
      });
      return shape(op, 'recover/start', () => ({
        accountId: str(res, 'accountId'),
        recoveryToken: str(res, 'recoveryToken'),
        expiresAt: int(res, 'expiresAt'),
        manifest: manifestOf(res.manifest),
        backup: bytes(res, 'backup'),
      }));
    },
    async passwordStart(op, token, body) {
      const res = await call(op, 'POST', '/v1/password/start', { token, body });
      return shape(op, 'password/start', () => ({
        registrationResponse: str(res, 'registrationResponse'),
      }));
    },
    async passwordFinish(op, token, b) {
      const res = await call(op, 'POST', '/v1/password/finish', {
        token,
        body: {
          registrationRecord: b.registrationRecord,
          manifest: wire(b.manifest),
          backup: toBase64url(b.backup),
          ...(b.deviceId === undefined ? {} : { deviceId: b.deviceId }),
        },
      });
      return shape(op, 'password/finish', () => grant(res));
    },
    async getManifest(op, token) {
      const res = await call(op, 'GET', '/v1/manifest', { token });
      return shape(op, 'manifest', () => manifestOf(res.manifest));
    },
    async manifestHistory(op, token, after) {
      const out: SignedManifest[] = [];
      let cursor = after;
      for (let page = 0; page < MAX_HISTORY_PAGES; page++) {
        const res = await call(op, 'GET', `/v1/manifest/history?after=${cursor}`, { token });
        const list = shape(op, 'manifest/history', () => array(res, 'manifests').map(manifestOf));
        out.push(...list);
        // The chain is verified by the caller; here only the paging cursor is read, from the
        // count, so that a malformed body never steers the loop.
        if (list.length < HISTORY_PAGE) return out;
        cursor += list.length;
      }
      throw new SdkError(
        'PROTOCOL_VIOLATION',
        op,
        'manifest history longer than the client follows',
      );
    },
    async putManifest(op, token, manifest, backup) {
      const res = await call(op, 'PUT', '/v1/manifest', {
        token,
        body: { manifest: wire(manifest), ...(backup ? { backup: toBase64url(backup) } : {}) },
      });
      return shape(op, 'manifest upload', () => ({ seq: int(res, 'seq') }));
    },
    async accountManifest(op, token, accountId) {
      const res = await call(op, 'GET', `/v1/accounts/${seg(accountId)}/manifest`, { token });
      return shape(op, 'account manifest', () => manifestOf(res.manifest));
    },
    async getBackup(op, token) {
      const res = await call(op, 'GET', '/v1/backup', { token });
      return shape(op, 'backup', () => ({
        backup: bytes(res, 'backup'),
        version: int(res, 'version'),
      }));
    },
    async createLink(op, token, linkId) {
      const res = await call(op, 'POST', '/v1/links', { token, body: { linkId } });
      return shape(op, 'links', () => ({ expiresAt: int(res, 'expiresAt') }));
    },
    async putLinkRequest(op, linkId, body) {
      await call(op, 'PUT', `/v1/links/${seg(linkId)}/request`, {
        body: { sealed: toBase64url(body.sealed), pickupHash: toBase64url(body.pickupHash) },
      });
    },
    async getLink(op, token, linkId) {
      const res = await call(op, 'GET', `/v1/links/${seg(linkId)}`, { token });
      return shape(op, 'link status', (): LinkStatus => {
        const status = str(res, 'status');
        if (status === 'waiting' || status === 'refused') return { status };
        if (status === 'requested') return { status, sealed: bytes(res, 'sealed') };
        throw new ShapeError('"status" expected waiting, requested or refused');
      });
    },
    async approveLink(op, token, linkId, body) {
      await call(op, 'POST', `/v1/links/${seg(linkId)}/approve`, {
        token,
        body: { sealed: toBase64url(body.sealed), deviceId: body.deviceId },
      });
    },
    async refuseLink(op, token, linkId) {
      await call(op, 'POST', `/v1/links/${seg(linkId)}/refuse`, { token });
    },
    async pickupLink(op, linkId, pickup) {
      const res = await call(op, 'POST', `/v1/links/${seg(linkId)}/pickup`, {
        body: { pickup: toBase64url(pickup) },
      });
      return shape(op, 'link pickup', (): PickupStatus => {
        const status = str(res, 'status');
        if (status === 'waiting' || status === 'refused') return { status };
        if (status === 'approved') {
          return {
            status,
            sealed: bytes(res, 'sealed'),
            accountId: str(res, 'accountId'),
            token: str(res, 'token'),
            expiresAt: int(res, 'expiresAt'),
          };
        }
        throw new ShapeError('"status" expected waiting, approved or refused');
      });
    },
  };
}
