import { wipe } from '@coffer/crypto';
import { FieldsError } from '../errors.js';
import type { KeyOperation, KeyProvider } from '../key-provider.js';
import { KmipConnection } from './_kmip-connection.js';
import {
  activatePayload,
  type BatchOperation,
  createPayload,
  createResult,
  decodeResponse,
  decryptPayload,
  decryptResult,
  encodeRequest,
  encryptPayload,
  encryptResult,
  GCM_TAG_BYTES,
  locatePayload,
  locateResult,
  Operation,
  ResultReason,
  reasonName,
} from './_kmip-messages.js';
import type { TtlvStructure } from './_kmip-ttlv.js';

/**
 * A key provider backed by a KMIP server (an on-premises key manager or HSM front end). Each
 * KEK is an AES-256 key created on the server with usage Encrypt|Decrypt and the KMIP Name
 * `kekId`; data keys are wrapped by the server's own AES-GCM (KMIP 1.4 Encrypt/Decrypt), with
 * `context` as GCM additional data, so the KEK never has to leave the server.
 *
 * Wrapped key format, version 1 (all lengths in bytes):
 *
 * | field      | length  | value                                              |
 * | ---------- | ------- | -------------------------------------------------- |
 * | version    | 1       | 0x01                                               |
 * | iv length  | 1       | n, 12 ≤ n ≤ 16                                     |
 * | iv         | n       | the IV the server generated for this wrap          |
 * | tag        | 16      | the GCM tag                                        |
 * | ciphertext | 32      | AES-256-GCM(KEK, iv, data key, aad = context)      |
 *
 * A blob of any other length, or with n out of range, is `DECRYPTION_FAILED`; another version
 * is `UNSUPPORTED_VERSION`.
 */

/** Options for {@link createKmipProvider}. Certificates and keys are PEM. */
export type KmipProviderOptions = {
  /** Server host name or IP address. */
  readonly host: string;
  /** Server port (KMIP's registered port is 5696). */
  readonly port: number;
  /** CA certificate(s) the server's certificate must chain to. */
  readonly ca: string | Uint8Array;
  /** Client certificate: KMIP servers authenticate clients by mutual TLS. */
  readonly cert: string | Uint8Array;
  /** Private key of the client certificate. */
  readonly key: string | Uint8Array;
  /** Name to check the server certificate against, when it is not `host`. */
  readonly serverName?: string;
  /** How long to wait for a connection or a reply before `PROVIDER_UNAVAILABLE`. */
  readonly timeoutMs?: number;
};

/** A {@link KeyProvider} whose KEKs live on a KMIP server. */
export interface KmipProvider extends KeyProvider {
  readonly kind: 'kmip';
  /**
   * Creates and activates a new KEK named `kekId` on the server.
   *
   * @throws {FieldsError} `INVALID_ARGUMENT` when a key named `kekId` already exists;
   *   `PROVIDER_UNAVAILABLE` or `PROVIDER_ERROR` as for {@link KeyProvider.keyOperation}.
   */
  generateKek(kekId: string): Promise<void>;
  /** Closes the connection. Later calls fail with `PROVIDER_ERROR`. */
  close(): Promise<void>;
}

const OPERATION = 'provider.kmip';
const FORMAT_VERSION = 0x01;
const DATA_KEY_BYTES = 32;
/** 96 bits is GCM's recommended IV size (SP 800-38D); some servers use a full block. */
const MIN_IV_BYTES = 12;
/** One AES block: longer IVs buy nothing and would let a blob grow unchecked. */
const MAX_IV_BYTES = 16;
const DEFAULT_TIMEOUT_MS = 10_000;
/** Longest timeout accepted: beyond this a caller surely passed seconds or a mistake. */
const MAX_TIMEOUT_MS = 10 * 60_000;
/** Longest kekId: KMIP names are text, but ours are identifiers, not documents. */
const MAX_KEK_ID_CHARS = 256;
/** Largest context: it is GCM additional data sent on every request; ids, not payloads. */
const MAX_CONTEXT_BYTES = 4096;
/** Most kekId → unique identifier entries kept; a keyring has a handful of KEKs. */
const MAX_CACHED_KEKS = 1024;

function invalid(message: string): FieldsError {
  return new FieldsError('INVALID_ARGUMENT', OPERATION, message);
}

function checkBytes(name: string, value: unknown): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array)) throw invalid(`"${name}" expected a Uint8Array`);
}

function checkPem(name: string, value: unknown): void {
  if (typeof value !== 'string' && !(value instanceof Uint8Array)) {
    throw invalid(`"${name}" expected a PEM string or bytes`);
  }
  if (value.length === 0) throw invalid(`"${name}" is empty`);
}

function checkKekId(kekId: unknown): asserts kekId is string {
  if (typeof kekId !== 'string' || kekId.length === 0 || kekId.length > MAX_KEK_ID_CHARS) {
    throw invalid(`"kekId" expected a string of 1 to ${MAX_KEK_ID_CHARS} characters`);
  }
}

function checkContext(context: unknown): asserts context is Uint8Array {
  checkBytes('context', context);
  if (context.length > MAX_CONTEXT_BYTES) {
    throw invalid(`"context" expected at most ${MAX_CONTEXT_BYTES} bytes, got ${context.length}`);
  }
}

type WrappedV1 = { iv: Uint8Array; tag: Uint8Array; ciphertext: Uint8Array };

function decryptionFailed(): FieldsError {
  return new FieldsError('DECRYPTION_FAILED', OPERATION, 'wrapped key does not unwrap');
}

// Strict parse of the table above; the blob is attacker-controlled, so every malformation
// short of an unknown version gives the same answer as a bad tag.
function parseWrapped(wrapped: Uint8Array): WrappedV1 {
  if (wrapped.length === 0) throw decryptionFailed();
  if (wrapped[0] !== FORMAT_VERSION) {
    throw new FieldsError(
      'UNSUPPORTED_VERSION',
      OPERATION,
      `wrapped key version ${wrapped[0]} is not supported`,
    );
  }
  const ivLength = wrapped[1];
  if (ivLength === undefined || ivLength < MIN_IV_BYTES || ivLength > MAX_IV_BYTES) {
    throw decryptionFailed();
  }
  if (wrapped.length !== 2 + ivLength + GCM_TAG_BYTES + DATA_KEY_BYTES) throw decryptionFailed();
  const tagAt = 2 + ivLength;
  const ctAt = tagAt + GCM_TAG_BYTES;
  return {
    iv: wrapped.subarray(2, tagAt),
    tag: wrapped.subarray(tagAt, ctAt),
    ciphertext: wrapped.subarray(ctAt),
  };
}

function serializeWrapped({ iv, tag, ciphertext }: WrappedV1): Uint8Array {
  const out = new Uint8Array(2 + iv.length + tag.length + ciphertext.length);
  out[0] = FORMAT_VERSION;
  out[1] = iv.length;
  out.set(iv, 2);
  out.set(tag, 2 + iv.length);
  out.set(ciphertext, 2 + iv.length + tag.length);
  return out;
}

// Safe to send again when a reused connection turned out closed: they change nothing (Encrypt
// draws a fresh IV, which is fine). Create and Activate are not.
const IDEMPOTENT = new Set<number>([Operation.locate, Operation.encrypt, Operation.decrypt]);

const OPERATION_NAMES = new Map<number, string>(
  Object.entries(Operation).map(([name, code]) => [code, name]),
);

/**
 * Connects to a KMIP server (KMIP 1.4 over mutually authenticated TLS 1.2+) and returns a key
 * provider whose KEKs live there. The server must support Create, Activate, Locate and AES-GCM
 * Encrypt/Decrypt with additional data.
 *
 * @throws {FieldsError} `INVALID_ARGUMENT` for bad options; `PROVIDER_UNAVAILABLE` (retryable)
 *   when the server cannot be reached, the TLS handshake fails, or it does not answer in time.
 *
 * @example
 * const kmip = await createKmipProvider({
 *   host: 'kms.internal', port: 5696,
 *   ca: readFileSync('ca.pem'), cert: readFileSync('app.pem'), key: readFileSync('app.key'),
 * });
 * await kmip.generateKek('tenant-42/v1');
 * const wrapped = await kmip.keyOperation({ op: 'wrap', kekId: 'tenant-42/v1', key, context });
 */
export async function createKmipProvider(options: KmipProviderOptions): Promise<KmipProvider> {
  if (typeof options !== 'object' || options === null)
    throw invalid('"options" expected an object');
  const { host, port, ca, cert, key, serverName } = options;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (typeof host !== 'string' || host.length === 0) throw invalid('"host" expected a host name');
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw invalid(`"port" expected an integer from 1 to 65535, got ${port}`);
  }
  checkPem('ca', ca);
  checkPem('cert', cert);
  checkPem('key', key);
  if (serverName !== undefined && (typeof serverName !== 'string' || serverName.length === 0)) {
    throw invalid('"serverName" expected a host name');
  }
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > MAX_TIMEOUT_MS) {
    throw invalid(`"timeoutMs" expected an integer from 1 to ${MAX_TIMEOUT_MS}, got ${timeoutMs}`);
  }

  const connection = new KmipConnection({ host, port, ca, cert, key, serverName, timeoutMs });
  await connection.open();

  // kekId → the server's unique identifier. A promise, so that concurrent first uses of one KEK
  // share a single Locate; failures are not kept, so a KEK created later is found.
  const identifiers = new Map<string, Promise<string>>();

  async function run(batch: readonly BatchOperation[], kekId: string): Promise<TtlvStructure[]> {
    const request = encodeRequest(batch);
    const idempotent = batch.every((op) => IDEMPOTENT.has(op.operation));
    let reply: Uint8Array | undefined;
    try {
      reply = await connection.send(request, idempotent);
      const outcome = decodeResponse(reply, batch);
      if (outcome.ok) return [...outcome.payloads];
      const { operation, reason, message } = outcome;
      const opName = OPERATION_NAMES.get(operation ?? -1) ?? 'request';
      if (
        reason === ResultReason.itemNotFound &&
        (operation === Operation.encrypt || operation === Operation.decrypt)
      ) {
        // The KEK was destroyed after we looked it up.
        identifiers.delete(kekId);
        throw new FieldsError('UNKNOWN_KEY', OPERATION, `kek "${kekId}" not found on the server`);
      }
      if (
        operation === Operation.decrypt &&
        (reason === ResultReason.cryptographicFailure || reason === ResultReason.generalFailure)
      ) {
        // Servers report a bad GCM tag as Cryptographic Failure; PyKMIP lets the exception
        // escape as General Failure. Both are the one opaque answer for a bad wrapped key.
        throw decryptionFailed();
      }
      const detail = message === undefined ? '' : ` (${message})`;
      throw new FieldsError(
        'PROVIDER_ERROR',
        OPERATION,
        `kmip ${opName} for kek "${kekId}" failed: ${reasonName(reason)}${detail}`,
      );
    } finally {
      // Requests carry data keys (wrap), replies carry them (unwrap).
      wipe(request);
      if (reply !== undefined) wipe(reply);
    }
  }

  async function locate(kekId: string): Promise<string | undefined> {
    const [payload] = await run(
      [{ operation: Operation.locate, payload: locatePayload(kekId) }],
      kekId,
    );
    const found = locateResult(payload as TtlvStructure);
    if (found.length > 1) {
      throw new FieldsError(
        'PROVIDER_ERROR',
        OPERATION,
        `more than one key on the server is named "${kekId}"`,
      );
    }
    return found[0];
  }

  function identifier(kekId: string): Promise<string> {
    const cached = identifiers.get(kekId);
    if (cached !== undefined) return cached;
    const lookup = locate(kekId).then((uid) => {
      if (uid === undefined) {
        throw new FieldsError('UNKNOWN_KEY', OPERATION, `kek "${kekId}" not found on the server`);
      }
      return uid;
    });
    remember(kekId, lookup);
    return lookup;
  }

  function remember(kekId: string, uid: Promise<string>): void {
    if (identifiers.size >= MAX_CACHED_KEKS) {
      const oldest = identifiers.keys().next();
      if (oldest.done !== true) identifiers.delete(oldest.value);
    }
    identifiers.set(kekId, uid);
    uid.catch(() => {
      if (identifiers.get(kekId) === uid) identifiers.delete(kekId);
    });
  }

  async function wrap(kekId: string, key: Uint8Array, context: Uint8Array): Promise<Uint8Array> {
    const uid = await identifier(kekId);
    const [payload] = await run(
      [{ operation: Operation.encrypt, payload: encryptPayload(uid, key, context) }],
      kekId,
    );
    const { ciphertext, iv, tag } = encryptResult(payload as TtlvStructure);
    if (iv === undefined || iv.length < MIN_IV_BYTES || iv.length > MAX_IV_BYTES) {
      throw new FieldsError('PROVIDER_ERROR', OPERATION, 'server did not return a usable gcm iv');
    }
    if (tag === undefined || tag.length !== GCM_TAG_BYTES) {
      throw new FieldsError('PROVIDER_ERROR', OPERATION, 'server did not return a 16-byte gcm tag');
    }
    if (ciphertext.length !== DATA_KEY_BYTES) {
      throw new FieldsError(
        'PROVIDER_ERROR',
        OPERATION,
        'server returned a ciphertext of the wrong size',
      );
    }
    return serializeWrapped({ iv, tag, ciphertext });
  }

  async function unwrap(
    kekId: string,
    wrapped: Uint8Array,
    context: Uint8Array,
  ): Promise<Uint8Array> {
    const { iv, tag, ciphertext } = parseWrapped(wrapped);
    const uid = await identifier(kekId);
    const [payload] = await run(
      [
        {
          operation: Operation.decrypt,
          payload: decryptPayload(uid, ciphertext, iv, tag, context),
        },
      ],
      kekId,
    );
    const key = decryptResult(payload as TtlvStructure);
    if (key.length !== DATA_KEY_BYTES) {
      wipe(key);
      throw new FieldsError('PROVIDER_ERROR', OPERATION, 'server returned a key of the wrong size');
    }
    return key;
  }

  return {
    kind: 'kmip',

    async keyOperation(request: KeyOperation): Promise<Uint8Array> {
      if (typeof request !== 'object' || request === null) {
        throw invalid('"request" expected an object');
      }
      checkKekId(request.kekId);
      checkContext(request.context);
      if (request.op === 'wrap') {
        checkBytes('key', request.key);
        if (request.key.length !== DATA_KEY_BYTES) {
          throw invalid(`"key" expected ${DATA_KEY_BYTES} bytes, got ${request.key.length}`);
        }
        return wrap(request.kekId, request.key, request.context);
      }
      if (request.op === 'unwrap') {
        checkBytes('wrapped', request.wrapped);
        return unwrap(request.kekId, request.wrapped, request.context);
      }
      throw invalid(`"op" expected "wrap" or "unwrap"`);
    },

    async generateKek(kekId: string): Promise<void> {
      checkKekId(kekId);
      if ((await locate(kekId)) !== undefined) {
        throw invalid(`kek "${kekId}" already exists on the server`);
      }
      const [created] = await run(
        [{ operation: Operation.create, payload: createPayload(kekId) }],
        kekId,
      );
      const uid = createResult(created as TtlvStructure);
      // Keys are born Pre-Active; Encrypt needs Active. If this step fails the key stays
      // unusable under its name: see the README on recovering.
      await run([{ operation: Operation.activate, payload: activatePayload(uid) }], kekId);
      remember(kekId, Promise.resolve(uid));
    },

    close(): Promise<void> {
      identifiers.clear();
      return connection.close();
    },
  };
}
