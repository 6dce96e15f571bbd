// GET /v1/openapi.json: spec/http-api-v1.md as OpenAPI 3.1, written by hand (test/openapi.test.ts
// checks that it and the app's routes list the same operations).
import { Hono } from 'hono';
import { ERROR_STATUS, SERVER_ERROR_CODES } from './errors.js';
import type { AppEnv } from './http/_env.js';

type Schema = Record<string, unknown>;

const ref = (name: string): Schema => ({ $ref: `#/components/schemas/${name}` });
const b64url = (description: string): Schema => ({
  type: 'string',
  pattern: '^[A-Za-z0-9_-]*$',
  description: `${description} (b64url, no padding)`,
});
const str = (description: string): Schema => ({ type: 'string', description });
const int = (description: string): Schema => ({ type: 'integer', minimum: 0, description });
const object = (properties: Record<string, Schema>, optional: readonly string[] = []): Schema => ({
  type: 'object',
  properties,
  required: Object.keys(properties).filter((k) => !optional.includes(k)),
});

const jsonBody = (schema: Schema) => ({
  required: true,
  content: { 'application/json': { schema } },
});
const ok = (description: string, schema?: Schema) =>
  schema ? { description, content: { 'application/json': { schema } } } : { description };
const errors = (...codes: readonly (keyof typeof ERROR_STATUS)[]) => {
  const out: Record<string, unknown> = {};
  for (const code of codes) {
    const status = String(ERROR_STATUS[code]);
    const existing = out[status] as { description: string } | undefined;
    out[status] = {
      description: existing ? `${existing.description}, ${code}` : code,
      content: { 'application/json': { schema: ref('Error') } },
    };
  }
  return out;
};

interface Operation {
  summary: string;
  auth?: 'session' | 'session-or-recovery';
  parameters?: unknown[];
  requestBody?: unknown;
  responses: Record<string, unknown>;
}

const op = (o: Operation) => ({
  summary: o.summary,
  ...(o.auth ? { security: [{ bearer: [] }] } : {}),
  ...(o.auth === 'session-or-recovery'
    ? {
        description:
          'A session whose password was proved in the last 10 minutes, or a recovery token.',
      }
    : {}),
  ...(o.parameters ? { parameters: o.parameters } : {}),
  ...(o.requestBody ? { requestBody: o.requestBody } : {}),
  responses: {
    ...o.responses,
    ...errors(...(o.auth ? (['UNAUTHENTICATED', 'FORBIDDEN'] as const) : [])),
    ...errors('INTERNAL', 'UNAVAILABLE'),
  },
});

const pathParam = (name: string, description: string) => ({
  name,
  in: 'path',
  required: true,
  schema: { type: 'string' },
  description,
});

const bodyErrors = ['BAD_REQUEST', 'PAYLOAD_TOO_LARGE', 'UNSUPPORTED_MEDIA_TYPE'] as const;
const tokenResponse = object({
  token: str('bearer token (43 characters)'),
  expiresAt: int('ms since the epoch'),
});

/** The OpenAPI 3.1 description of the Coffer HTTP API v1. */
export const OPENAPI_DOCUMENT = {
  openapi: '3.1.0',
  info: {
    title: 'Coffer HTTP API',
    version: '1.0.0',
    description:
      'Accounts (OPAQUE), sessions, device manifests, key backup, device linking, the user directory, the MLS KeyPackage directory, the MLS delivery service and encrypted blobs. Normative text: packages/server/spec/http-api-v1.md; formats: packages/protocol/spec/account-v1.md.',
  },
  components: {
    securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
    schemas: {
      Error: object({
        error: object(
          {
            code: { type: 'string', enum: [...SERVER_ERROR_CODES] },
            message: str('lowercase, never holds secrets'),
            epoch: int("EPOCH_CONFLICT only: the group's current epoch"),
          },
          ['epoch'],
        ),
      }),
      Manifest: object({
        body: b64url('encoded manifest body (account-v1 §3.1)'),
        signature: b64url('Ed25519 signature, 64 bytes'),
      }),
      Id: { type: 'string', pattern: '^[A-Za-z0-9_-]{22}$', description: '16 bytes as b64url' },
      KeyPackage: b64url('an MLS KeyPackage, opaque to the server, 1 to 16384 bytes'),
      Route: object({ accountId: ref('Id'), deviceId: ref('Id') }),
      MlsMessage: b64url('an MLS message, opaque to the server, 1 to 1048576 bytes'),
      BlobId: {
        type: 'string',
        pattern: '^[A-Za-z0-9_-]{22}$',
        description: '16 random bytes chosen by the server, as b64url: a read capability',
      },
    },
  },
  paths: {
    '/healthz': {
      get: op({
        summary: 'Health check (checks the database)',
        responses: { '200': ok('healthy', object({ status: { const: 'ok' } })) },
      }),
    },
    '/metrics': {
      get: op({
        summary: 'Prometheus metrics',
        responses: {
          '200': {
            description: 'Prometheus text format',
            content: { 'text/plain': { schema: { type: 'string' } } },
          },
        },
      }),
    },
    '/v1/openapi.json': {
      get: op({
        summary: 'This document',
        responses: { '200': ok('OpenAPI 3.1', { type: 'object' }) },
      }),
    },
    '/v1/signup/start': {
      post: op({
        summary: 'Start signup: OPAQUE registration response for a fresh account id',
        requestBody: jsonBody(
          object({ username: str('account-v1 §1'), registrationRequest: b64url('OPAQUE') }),
        ),
        responses: {
          '200': ok(
            'started',
            object({ accountId: ref('Id'), registrationResponse: b64url('OPAQUE') }),
          ),
          ...errors(...bodyErrors, 'INVALID_USERNAME', 'USERNAME_TAKEN', 'RATE_LIMITED'),
        },
      }),
    },
    '/v1/signup/finish': {
      post: op({
        summary:
          "Finish signup: the account, its first manifest, backup and session, atomically (accountId as signup/start issued it; a deleted account's id is 409)",
        requestBody: jsonBody(
          object({
            username: str('account-v1 §1'),
            accountId: ref('Id'),
            registrationRecord: b64url('OPAQUE'),
            deviceId: ref('Id'),
            manifest: ref('Manifest'),
            backup: b64url('encoded backup (account-v1 §5.3)'),
            recoveryVerifier: b64url('SHA-256 of the recovery proof, 32 bytes'),
          }),
        ),
        responses: {
          '201': ok('created', tokenResponse),
          ...errors(
            ...bodyErrors,
            'INVALID_USERNAME',
            'USERNAME_TAKEN',
            'CONFLICT',
            'INVALID_MANIFEST',
            'RATE_LIMITED',
          ),
        },
      }),
    },
    '/v1/login/start': {
      post: op({
        summary: 'Start an OPAQUE login (same answer shape for unknown users)',
        requestBody: jsonBody(
          object({ username: str('account-v1 §1'), startLoginRequest: b64url('OPAQUE') }),
        ),
        responses: {
          '200': ok('started', object({ loginId: ref('Id'), loginResponse: b64url('OPAQUE') })),
          ...errors(...bodyErrors, 'INVALID_USERNAME', 'RATE_LIMITED'),
        },
      }),
    },
    '/v1/login/finish': {
      post: op({
        summary: 'Finish an OPAQUE login',
        requestBody: jsonBody(
          object(
            {
              loginId: ref('Id'),
              finishLoginRequest: b64url('OPAQUE'),
              deviceId: ref('Id'),
              deviceProof: b64url(
                "Ed25519 signature (64 bytes) of account-v1 §7 by the device's signing key; required when the current manifest lists deviceId",
              ),
            },
            ['deviceId', 'deviceProof'],
          ),
        ),
        responses: {
          '200': ok(
            'logged in',
            object({ token: str('bearer token'), expiresAt: int('ms'), accountId: ref('Id') }),
          ),
          ...errors(...bodyErrors, 'INVALID_CREDENTIALS'),
        },
      }),
    },
    '/v1/session': {
      get: op({
        summary: 'The current session',
        auth: 'session',
        responses: {
          '200': ok(
            'session',
            object({
              accountId: ref('Id'),
              username: str('as typed at signup'),
              deviceId: { oneOf: [ref('Id'), { type: 'null' }] },
              expiresAt: int('ms'),
              authAt: int('ms; when the password was last proved'),
            }),
          ),
        },
      }),
    },
    '/v1/logout': {
      post: op({
        summary: 'End the session',
        auth: 'session',
        responses: { '204': ok('logged out') },
      }),
    },
    '/v1/account': {
      delete: op({
        summary: 'Delete the account and everything of it (password proved in the last 10 minutes)',
        auth: 'session',
        responses: { '204': ok('deleted'), ...errors('REAUTH_REQUIRED') },
      }),
    },
    '/v1/recover/start': {
      post: op({
        summary: 'Prove the recovery code; get a 10-minute recovery token, the manifest and backup',
        requestBody: jsonBody(
          object({ username: str('account-v1 §1'), proof: b64url('recovery proof, 32 bytes') }),
        ),
        responses: {
          '200': ok(
            'recovering',
            object({
              accountId: ref('Id'),
              recoveryToken: str('token for password/start and password/finish only'),
              expiresAt: int('ms'),
              manifest: ref('Manifest'),
              backup: b64url('encoded backup'),
            }),
          ),
          ...errors(...bodyErrors, 'INVALID_USERNAME', 'INVALID_CREDENTIALS', 'RATE_LIMITED'),
        },
      }),
    },
    '/v1/password/start': {
      post: op({
        summary: 'Start a password change: OPAQUE registration response',
        auth: 'session-or-recovery',
        requestBody: jsonBody(object({ registrationRequest: b64url('OPAQUE') })),
        responses: {
          '200': ok('started', object({ registrationResponse: b64url('OPAQUE') })),
          ...errors(...bodyErrors, 'REAUTH_REQUIRED'),
        },
      }),
    },
    '/v1/password/finish': {
      post: op({
        summary:
          'Finish a password change: new OPAQUE record, next manifest and backup, atomically; ends the other sessions the manifest does not list (deviceId required, and listed, with a recovery token)',
        auth: 'session-or-recovery',
        requestBody: jsonBody(
          object(
            {
              registrationRecord: b64url('OPAQUE'),
              manifest: ref('Manifest'),
              backup: b64url('encoded backup'),
              deviceId: ref('Id'),
            },
            ['deviceId'],
          ),
        ),
        responses: {
          '200': ok('changed', tokenResponse),
          ...errors(...bodyErrors, 'REAUTH_REQUIRED', 'INVALID_MANIFEST', 'MANIFEST_CONFLICT'),
        },
      }),
    },
    '/v1/manifest': {
      get: op({
        summary: "The account's newest manifest",
        auth: 'session',
        responses: { '200': ok('manifest', object({ manifest: ref('Manifest') })) },
      }),
      put: op({
        summary:
          'Upload the next manifest (and the backup a new backupVersion commits); ends the sessions of removed devices, and those naming no or an unlisted device after 10 minutes',
        auth: 'session',
        requestBody: jsonBody(
          object({ manifest: ref('Manifest'), backup: b64url('encoded backup') }, ['backup']),
        ),
        responses: {
          '200': ok('stored', object({ seq: int('the new seq') })),
          ...errors(...bodyErrors, 'INVALID_MANIFEST', 'MANIFEST_CONFLICT'),
        },
      }),
    },
    '/v1/manifest/history': {
      get: op({
        summary: "The account's manifests with seq > after, ascending, at most 100",
        auth: 'session',
        parameters: [
          { name: 'after', in: 'query', required: false, schema: { type: 'integer', minimum: 0 } },
        ],
        responses: {
          '200': ok('history', object({ manifests: { type: 'array', items: ref('Manifest') } })),
          ...errors('BAD_REQUEST'),
        },
      }),
    },
    '/v1/accounts/{accountId}/manifest': {
      get: op({
        summary: "Another account's newest manifest",
        auth: 'session',
        parameters: [pathParam('accountId', 'account id')],
        responses: {
          '200': ok('manifest', object({ manifest: ref('Manifest') })),
          ...errors('BAD_REQUEST', 'NOT_FOUND'),
        },
      }),
    },
    '/v1/backup': {
      get: op({
        summary: "The account's current backup",
        auth: 'session',
        responses: {
          '200': ok(
            'backup',
            object({ backup: b64url('encoded backup'), version: int('backup version') }),
          ),
        },
      }),
    },
    '/v1/links': {
      post: op({
        summary: 'Register a link id (account-v1 §6); it lives 10 minutes',
        auth: 'session',
        requestBody: jsonBody(object({ linkId: str('8 Crockford base32 characters') })),
        responses: {
          '201': ok('created', object({ expiresAt: int('ms') })),
          ...errors(...bodyErrors, 'CONFLICT'),
        },
      }),
    },
    '/v1/links/{linkId}/request': {
      put: op({
        summary: "The new device's sealed request (once)",
        parameters: [pathParam('linkId', 'link id')],
        requestBody: jsonBody(
          object({
            sealed: b64url('sealed link request'),
            pickupHash: b64url('SHA-256 of the pickup secret'),
          }),
        ),
        responses: { '204': ok('stored'), ...errors(...bodyErrors, 'NOT_FOUND', 'CONFLICT') },
      }),
    },
    '/v1/links/{linkId}': {
      get: op({
        summary: "A link's state, for the account that created it",
        auth: 'session',
        parameters: [pathParam('linkId', 'link id')],
        responses: {
          '200': ok(
            'state',
            object(
              {
                status: { enum: ['waiting', 'requested', 'refused'] },
                sealed: b64url('sealed link request'),
              },
              ['sealed'],
            ),
          ),
          ...errors('BAD_REQUEST', 'NOT_FOUND'),
        },
      }),
    },
    '/v1/links/{linkId}/approve': {
      post: op({
        summary:
          'Approve (from a listed device): the sealed response, and a session for the new device (listed in the current manifest)',
        auth: 'session',
        parameters: [pathParam('linkId', 'link id')],
        requestBody: jsonBody(
          object({ sealed: b64url('sealed link response'), deviceId: ref('Id') }),
        ),
        responses: {
          '204': ok('approved'),
          ...errors(...bodyErrors, 'FORBIDDEN', 'NOT_FOUND', 'CONFLICT'),
        },
      }),
    },
    '/v1/links/{linkId}/refuse': {
      post: op({
        summary: 'Refuse: the user did not confirm the device the request names',
        auth: 'session',
        parameters: [pathParam('linkId', 'link id')],
        responses: { '204': ok('refused'), ...errors('BAD_REQUEST', 'NOT_FOUND', 'CONFLICT') },
      }),
    },
    '/v1/links/{linkId}/pickup': {
      post: op({
        summary:
          'The new device polls with its pickup secret; once approved, gets the response and its session',
        parameters: [pathParam('linkId', 'link id')],
        requestBody: jsonBody(object({ pickup: b64url('pickup secret, 32 bytes') })),
        responses: {
          '200': ok(
            'state',
            object(
              {
                status: { enum: ['waiting', 'approved', 'refused'] },
                sealed: b64url('sealed link response'),
                accountId: ref('Id'),
                token: str('bearer token'),
                expiresAt: int('ms'),
              },
              ['sealed', 'accountId', 'token', 'expiresAt'],
            ),
          ),
          ...errors(...bodyErrors, 'NOT_FOUND'),
        },
      }),
    },
    '/v1/key-packages': {
      post: op({
        summary:
          "Upload one-time KeyPackages for the session's device (and replace its last-resort one)",
        auth: 'session',
        requestBody: jsonBody(
          object(
            {
              keyPackages: {
                type: 'array',
                items: ref('KeyPackage'),
                minItems: 1,
                maxItems: 100,
              },
              lastResort: ref('KeyPackage'),
              replace: {
                type: 'boolean',
                description: "delete the device's one-time KeyPackages first",
              },
            },
            ['lastResort', 'replace'],
          ),
        ),
        responses: {
          '201': ok('stored', object({ available: int('one-time KeyPackages held now') })),
          ...errors(...bodyErrors, 'NOT_FOUND', 'CONFLICT'),
        },
      }),
    },
    '/v1/key-packages/count': {
      get: op({
        summary: "How many KeyPackages the session's device holds (to replenish when low)",
        auth: 'session',
        responses: {
          '200': ok(
            'count',
            object({
              available: int('one-time KeyPackages left'),
              lastResort: { type: 'boolean', description: 'a last-resort KeyPackage is stored' },
            }),
          ),
        },
      }),
    },
    '/v1/accounts/{accountId}/key-packages/claim': {
      post: op({
        summary:
          "Claim one KeyPackage per device of an account's current manifest (one-time ones are deleted as they are handed out)",
        auth: 'session',
        parameters: [pathParam('accountId', 'account id')],
        responses: {
          '200': ok(
            'claimed',
            object({
              keyPackages: {
                type: 'array',
                items: object({
                  deviceId: ref('Id'),
                  keyPackage: ref('KeyPackage'),
                  lastResort: {
                    type: 'boolean',
                    description: "the device's last-resort KeyPackage (kept, may be reused)",
                  },
                }),
              },
            }),
          ),
          ...errors('BAD_REQUEST', 'NOT_FOUND', 'RATE_LIMITED'),
        },
      }),
    },
    '/v1/groups/{groupId}/messages': {
      post: op({
        summary:
          "Append an MLS message to a group's total order and to each recipient device's queue (a commit at epoch 0 creates an unknown group)",
        auth: 'session',
        parameters: [pathParam('groupId', 'group id: b64url of 16 to 64 bytes')],
        requestBody: jsonBody(
          object(
            {
              epoch: int("the group's current epoch (a commit's is the epoch it ends)"),
              kind: { type: 'string', enum: ['application', 'commit', 'proposal', 'welcome'] },
              message: ref('MlsMessage'),
              recipients: { type: 'array', items: ref('Route'), maxItems: 1000 },
              removed: { type: 'array', items: ref('Route'), maxItems: 1000 },
              groupInfo: b64url('commit only: the GroupInfo of the new epoch, at most 1 MiB'),
            },
            ['removed', 'groupInfo'],
          ),
        ),
        responses: {
          '201': ok(
            'accepted',
            object({
              seq: int("the message's place in the group's order"),
              epoch: int("the group's epoch after the message"),
            }),
          ),
          ...errors(...bodyErrors, 'CONFLICT', 'EPOCH_CONFLICT', 'QUEUE_FULL'),
        },
      }),
    },
    '/v1/groups/{groupId}/info': {
      get: op({
        summary: "A group's epoch and latest GroupInfo, for a member device to resync",
        auth: 'session',
        parameters: [pathParam('groupId', 'group id: b64url of 16 to 64 bytes')],
        responses: {
          '200': ok(
            'the group',
            object({
              epoch: int('current epoch'),
              groupInfo: {
                oneOf: [
                  b64url('the GroupInfo stored with the latest commit that had one'),
                  { type: 'null' },
                ],
              },
            }),
          ),
          ...errors('BAD_REQUEST', 'CONFLICT'),
        },
      }),
    },
    '/v1/queue': {
      get: op({
        summary:
          "The session device's queue after a cursor, in order (unacknowledged entries are delivered again)",
        auth: 'session',
        parameters: [
          {
            name: 'after',
            in: 'query',
            required: false,
            schema: { type: 'integer', minimum: 0 },
            description: 'cursor of the last entry seen (default 0)',
          },
          {
            name: 'limit',
            in: 'query',
            required: false,
            schema: { type: 'integer', minimum: 1, maximum: 100 },
            description: 'most entries (default 100)',
          },
        ],
        responses: {
          '200': ok(
            'a page',
            object({
              messages: {
                type: 'array',
                items: object({
                  cursor: int('position in this queue'),
                  groupId: str('group id'),
                  seq: int("position in the group's order"),
                  epoch: int('epoch the message was sent in'),
                  kind: {
                    type: 'string',
                    enum: ['application', 'commit', 'proposal', 'welcome'],
                  },
                  sender: ref('Route'),
                  message: ref('MlsMessage'),
                }),
              },
              more: { type: 'boolean', description: 'more entries follow the last one' },
              manifestSeq: int("seq of the account's newest device manifest"),
            }),
          ),
          ...errors('BAD_REQUEST', 'CONFLICT'),
        },
      }),
    },
    '/v1/queue/ack': {
      post: op({
        summary: "Delete the session device's queue entries up to a cursor",
        auth: 'session',
        requestBody: jsonBody(object({ upTo: int('cursor of the last entry processed') })),
        responses: { '204': ok('acknowledged'), ...errors(...bodyErrors, 'CONFLICT') },
      }),
    },
    '/v1/users/{username}': {
      get: op({
        summary:
          'Find the account of a username (normalised as account-v1 §1; at most 300 lookups per hour per account)',
        auth: 'session',
        parameters: [pathParam('username', 'a username, percent-encoded')],
        responses: {
          '200': ok('found', object({ accountId: ref('Id') })),
          ...errors('INVALID_USERNAME', 'NOT_FOUND', 'RATE_LIMITED'),
        },
      }),
    },
    '/v1/blobs': {
      post: op({
        summary:
          'Upload a blob (an encrypted attachment, opaque bytes), streamed; at most 1 GiB, within the account quota',
        auth: 'session',
        requestBody: {
          required: true,
          content: {
            'application/octet-stream': {
              schema: { type: 'string', contentMediaType: 'application/octet-stream' },
            },
          },
        },
        responses: {
          '201': ok('stored', object({ blobId: ref('BlobId'), size: int('bytes stored') })),
          ...errors(...bodyErrors, 'CONFLICT', 'QUOTA_EXCEEDED', 'RATE_LIMITED'),
        },
      }),
    },
    '/v1/blobs/{blobId}': {
      get: op({
        summary: 'Download a blob whose id the caller knows (any session with a device)',
        auth: 'session',
        parameters: [pathParam('blobId', 'blob id')],
        responses: {
          '200': {
            description: 'the bytes, streamed, with content-length',
            content: {
              'application/octet-stream': {
                schema: { type: 'string', contentMediaType: 'application/octet-stream' },
              },
            },
          },
          ...errors('BAD_REQUEST', 'NOT_FOUND', 'CONFLICT'),
        },
      }),
      delete: op({
        summary: "Delete a blob (its uploader only; another account's blob is 404)",
        auth: 'session',
        parameters: [pathParam('blobId', 'blob id')],
        responses: { '204': ok('deleted'), ...errors('BAD_REQUEST', 'NOT_FOUND', 'CONFLICT') },
      }),
    },
    '/v1/events': {
      get: op({
        summary:
          'WebSocket: send {"type":"auth","token"} first; then {"type":"ready"}, {"type":"manifest","seq"} and {"type":"queue"} pushes and {"type":"revoked"}. Close codes 4401 (auth), 4403 (revoked, or a session whose device the manifest does not list), 4429 (the device opened more than 8 sockets: its oldest), 1001 (shutdown); a client that does not read its pushes is dropped.',
        responses: { '101': ok('switching protocols'), ...errors('BAD_REQUEST') },
      }),
    },
  },
} as const;

/**
 * `GET /v1/openapi.json`.
 *
 * @example app.route('/', openApiRoutes());
 */
export function openApiRoutes(): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.get('/v1/openapi.json', (c) => c.json(OPENAPI_DOCUMENT));
  return app;
}
