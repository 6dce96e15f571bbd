import {
  concatBytes,
  fromBase64url,
  type SigningKey,
  sha256,
  sign,
  toBase64url,
  utf8Encode,
  verify,
} from '@coffer/crypto';
import { bytesEqual, isIntIn, MAX_SAFE_U64, MAX_U32 } from './_bytes.js';
import { assertBytes, assertObject, invalidArgument, ProtocolError } from './errors.js';
import { isId } from './ids.js';
import { PUBLIC_KEY_LENGTH } from './key-pair.js';
import {
  assertManifestBody,
  type DeviceEntry,
  decodeManifestBody,
  encodeManifestBody,
  MAX_MANIFEST_BODY_LENGTH,
  type ManifestBody,
} from './manifest-body.js';

/** Ed25519 signatures are 64 bytes. */
export const MANIFEST_SIGNATURE_LENGTH = 64;
/**
 * Manifests one {@link verifyManifestChain} call accepts: each costs a signature check and the
 * list comes from the server. Page longer histories, passing the last verified one as `trusted`.
 */
export const MAX_MANIFEST_CHAIN = 1000;

// spec §3.2: the signed message is this label, a zero byte, then the body.
const SIGNATURE_PREFIX = concatBytes(utf8Encode('coffer/v1/device-manifest'), Uint8Array.of(0));
// b64url of the largest body, so an oversized JSON string is refused before decoding it.
const MAX_BODY_TEXT = Math.ceil((MAX_MANIFEST_BODY_LENGTH * 4) / 3);
const SIGNATURE_TEXT = Math.ceil((MANIFEST_SIGNATURE_LENGTH * 4) / 3);

/** A device manifest as sent and stored: the encoded body and the identity key's signature. */
export interface SignedManifest {
  readonly body: Uint8Array;
  readonly signature: Uint8Array;
}

/** JSON wire form: `{ body, signature }` as b64url strings (spec §3.2). */
export interface ManifestJson {
  readonly body: string;
  readonly signature: string;
}

/** What a verifier knows before it looks at a manifest (spec §3.3). */
export interface ManifestExpectation {
  readonly accountId: string;
  /** The pinned identity key, when known. */
  readonly identityKey?: Uint8Array;
  /** The newest manifest this verifier already trusts. */
  readonly trusted?: SignedManifest;
}

/**
 * Encodes and signs a manifest body with the account's identity key (spec §3.2).
 *
 * @throws {ProtocolError} `INVALID_ARGUMENT` when the body breaks a rule of §3.1 (see
 *   {@link encodeManifestBody}) or `identity` is not the key of `body.identityKey`.
 * @example const manifest = await signManifest(identity.signingKey, body);
 */
export async function signManifest(
  identity: SigningKey,
  body: ManifestBody,
): Promise<SignedManifest> {
  const op = 'manifest.sign';
  const encoded = encodeManifestBody(body);
  if (
    typeof identity !== 'object' ||
    identity === null ||
    !(identity.publicKey instanceof Uint8Array) ||
    !bytesEqual(identity.publicKey, body.identityKey)
  ) {
    throw invalidArgument(op, '"identity" expected the signing key of body.identityKey');
  }
  const signature = await sign(identity, concatBytes(SIGNATURE_PREFIX, encoded));
  return Object.freeze({ body: encoded, signature });
}

/**
 * `SHA-256(body)`: what the next manifest's `prev` holds (spec §3.2).
 *
 * @throws {ProtocolError} `INVALID_ARGUMENT` when `manifest.body` is not a Uint8Array.
 * @example const prev = await manifestHash(current);
 */
export async function manifestHash(manifest: SignedManifest): Promise<Uint8Array> {
  const op = 'manifest.hash';
  assertObject(op, 'manifest', manifest);
  assertBytes(op, 'manifest.body', manifest.body, 1, MAX_SAFE_U64);
  return sha256(manifest.body);
}

/**
 * The JSON wire form of a manifest (spec §3.2).
 *
 * @throws {ProtocolError} `INVALID_ARGUMENT` when `body` or `signature` is not a Uint8Array.
 * @example response.json({ manifest: manifestToJson(manifest) });
 */
export function manifestToJson(manifest: SignedManifest): ManifestJson {
  const op = 'manifest.toJson';
  assertObject(op, 'manifest', manifest);
  assertBytes(op, 'manifest.body', manifest.body, 1, MAX_SAFE_U64);
  assertBytes(op, 'manifest.signature', manifest.signature, 0, MAX_SAFE_U64);
  return { body: toBase64url(manifest.body), signature: toBase64url(manifest.signature) };
}

/**
 * Reads the JSON wire form: exactly the keys `body` and `signature`, canonical b64url, a body of
 * at most {@link MAX_MANIFEST_BODY_LENGTH} bytes and a 64-byte signature. The body is not decoded
 * or verified here.
 *
 * @throws {ProtocolError} `INVALID_MANIFEST` when not `{ body, signature }` b64url strings.
 * @example const manifest = manifestFromJson(JSON.parse(text).manifest);
 */
export function manifestFromJson(json: unknown): SignedManifest {
  const op = 'manifest.fromJson';
  const fail = (): never => {
    throw new ProtocolError('INVALID_MANIFEST', op, 'expected { body, signature } b64url strings');
  };
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return fail();
  const keys = Object.keys(json);
  if (keys.length !== 2) return fail();
  const { body, signature } = json as Record<string, unknown>;
  if (typeof body !== 'string' || body.length === 0 || body.length > MAX_BODY_TEXT) return fail();
  if (typeof signature !== 'string' || signature.length !== SIGNATURE_TEXT) return fail();
  try {
    const out = { body: fromBase64url(body), signature: fromBase64url(signature) };
    if (out.signature.length !== MANIFEST_SIGNATURE_LENGTH) return fail();
    return Object.freeze(out);
  } catch {
    return fail();
  }
}

/**
 * Verifies a manifest received from the server, in exactly the order of spec §3.3:
 * decode strictly; check the signature under the body's own identity key; check the account id;
 * check the identity key against the pinned one (`expected.identityKey`, else the identity of
 * `expected.trusted`); then compare with `expected.trusted`: an older seq is a rollback, the same
 * seq with another body or the next seq not chained to it is a fork, a later seq is a gap. With
 * no trusted manifest, seq 1 is accepted, and a later seq only when the identity key is pinned
 * (otherwise it is a gap: verify the chain from seq 1 with {@link verifyManifestChain}).
 *
 * @returns the decoded body.
 * @throws {ProtocolError} `UNSUPPORTED_VERSION`, `INVALID_MANIFEST`, `BAD_SIGNATURE`,
 *   `ACCOUNT_MISMATCH`, `IDENTITY_MISMATCH`, `MANIFEST_ROLLBACK`, `MANIFEST_FORK`, `MANIFEST_GAP`
 *   as above; `INVALID_ARGUMENT` for a malformed `expected` (an accountId that is not an id, a
 *   trusted manifest that does not decode or is of another account or identity).
 * @example
 * const body = await verifyManifest(fetched, { accountId, trusted: lastTrusted });
 */
export async function verifyManifest(
  manifest: SignedManifest,
  expected: ManifestExpectation,
): Promise<ManifestBody> {
  const op = 'manifest.verify';
  const context = readExpectation(op, expected);
  return verifyOne(op, manifest, expected.accountId, context.pinned, context.trusted);
}

/**
 * Verifies manifests fetched in order (`GET /v1/manifest/history`): each element is checked by
 * {@link verifyManifest} against the one before it, the first against `expected.trusted` (or,
 * with none, it must be seq 1 unless the identity key is pinned), and the identity of the first
 * is pinned for the rest. An empty chain returns the trusted body.
 *
 * @returns the last body.
 * @throws {ProtocolError} the codes of {@link verifyManifest}, for the first element that fails;
 *   `INVALID_ARGUMENT` for an empty chain with no `trusted`, or more than
 *   {@link MAX_MANIFEST_CHAIN} elements.
 * @example
 * const newest = await verifyManifestChain(history, { accountId, trusted: lastTrusted });
 */
export async function verifyManifestChain(
  chain: readonly SignedManifest[],
  expected: ManifestExpectation,
): Promise<ManifestBody> {
  const op = 'manifest.verifyChain';
  const context = readExpectation(op, expected);
  if (!Array.isArray(chain)) throw invalidArgument(op, '"chain" expected an array');
  if (chain.length > MAX_MANIFEST_CHAIN)
    throw invalidArgument(op, `"chain" expected at most ${MAX_MANIFEST_CHAIN} manifests`);
  let trusted = context.trusted;
  let pinned = context.pinned;
  for (const manifest of chain as SignedManifest[]) {
    const body = await verifyOne(op, manifest, expected.accountId, pinned, trusted);
    trusted = { manifest, body };
    pinned = body.identityKey;
  }
  if (!trusted) throw invalidArgument(op, '"chain" expected at least one manifest');
  return trusted.body;
}

/**
 * The body of the manifest after `previous`: seq + 1, `prev` = its hash, account and identity
 * key kept; `changes` replace the rest (`issuedAt` defaults to now). Devices must be sorted
 * ({@link sortDevices}); nothing is sorted silently.
 *
 * @throws {ProtocolError} `INVALID_ARGUMENT` when `previous` does not decode, is at seq 2^32 − 1,
 *   or the result breaks a rule of spec §3.1 (e.g. a backupVersion without its backupHash).
 * @example
 * const body = await nextManifestBody(current, {
 *   devices: sortDevices([...currentBody.devices, newDevice]),
 * });
 * const next = await signManifest(identity.signingKey, body);
 */
export async function nextManifestBody(
  previous: SignedManifest,
  changes: {
    readonly devices?: readonly DeviceEntry[];
    readonly backupVersion?: number;
    readonly backupHash?: Uint8Array;
    readonly issuedAt?: number;
  },
): Promise<ManifestBody> {
  const op = 'manifest.next';
  const before = decodeTrusted(op, 'previous', previous);
  assertObject(op, 'changes', changes);
  if (before.seq === MAX_U32) throw invalidArgument(op, '"previous" is at the last seq');
  const issuedAt = changes.issuedAt ?? Date.now();
  if (!isIntIn(issuedAt, 0, MAX_SAFE_U64))
    throw invalidArgument(op, '"issuedAt" expected an integer from 0 to 2^53 - 1');
  const body: ManifestBody = Object.freeze({
    accountId: before.accountId,
    seq: before.seq + 1,
    prev: await sha256(previous.body),
    identityKey: before.identityKey,
    backupVersion: changes.backupVersion ?? before.backupVersion,
    backupHash: changes.backupHash ?? before.backupHash,
    issuedAt,
    devices: Object.freeze([...(changes.devices ?? before.devices)]),
  });
  assertManifestBody(op, body);
  return body;
}

interface Trusted {
  readonly manifest: SignedManifest;
  readonly body: ManifestBody;
}

/** Checks `expected` (caller input) and works out the pinned identity key. */
function readExpectation(
  op: string,
  expected: ManifestExpectation,
): { pinned: Uint8Array | undefined; trusted: Trusted | undefined } {
  assertObject(op, 'expected', expected);
  if (!isId(expected.accountId))
    throw invalidArgument(op, '"accountId" expected b64url of 16 bytes (22 characters)');
  let pinned = expected.identityKey;
  if (pinned !== undefined) assertBytes(op, 'identityKey', pinned, PUBLIC_KEY_LENGTH);
  let trusted: Trusted | undefined;
  if (expected.trusted !== undefined) {
    const body = decodeTrusted(op, 'trusted', expected.trusted);
    if (body.accountId !== expected.accountId)
      throw invalidArgument(op, '"trusted" is a manifest of another account');
    if (pinned && !bytesEqual(pinned, body.identityKey))
      throw invalidArgument(op, '"trusted" does not match "identityKey"');
    // spec §3.1: the identity key never changes, so a trusted manifest pins it (§3.3 step 4).
    pinned ??= body.identityKey;
    trusted = { manifest: expected.trusted, body };
  }
  return { pinned, trusted };
}

/** Decodes a manifest the caller vouches for; a broken one is the caller's mistake. */
function decodeTrusted(op: string, name: string, manifest: SignedManifest): ManifestBody {
  assertObject(op, name, manifest);
  try {
    return decodeManifestBody(manifest.body);
  } catch {
    throw invalidArgument(op, `"${name}" expected a manifest that decodes`);
  }
}

/** spec §3.3, steps 1 to 6. */
async function verifyOne(
  op: string,
  manifest: SignedManifest,
  accountId: string,
  pinned: Uint8Array | undefined,
  trusted: Trusted | undefined,
): Promise<ManifestBody> {
  if (
    typeof manifest !== 'object' ||
    manifest === null ||
    !(manifest.body instanceof Uint8Array) ||
    !(manifest.signature instanceof Uint8Array)
  ) {
    throw invalidArgument(op, '"manifest" expected { body, signature } as Uint8Arrays');
  }
  // 1. decode strictly
  let body: ManifestBody;
  try {
    body = decodeManifestBody(manifest.body);
  } catch (err) {
    if (ProtocolError.is(err)) throw new ProtocolError(err.code, op, 'malformed manifest body');
    throw err;
  }
  // 2. the signature, under the body's own identity key
  const signed = concatBytes(SIGNATURE_PREFIX, manifest.body);
  if (!(await verify(body.identityKey, signed, manifest.signature))) {
    throw new ProtocolError('BAD_SIGNATURE', op, `bad manifest signature at seq ${body.seq}`);
  }
  // 3. the account
  if (body.accountId !== accountId) {
    throw new ProtocolError('ACCOUNT_MISMATCH', op, `manifest of account ${body.accountId}`);
  }
  // 4. the pinned identity
  if (pinned && !bytesEqual(pinned, body.identityKey)) {
    throw new ProtocolError('IDENTITY_MISMATCH', op, 'manifest signed by another identity key');
  }
  // 5. against the newest trusted manifest
  if (trusted) {
    const t = trusted.body.seq;
    if (body.seq < t) {
      throw new ProtocolError('MANIFEST_ROLLBACK', op, `seq ${body.seq} is older than ${t}`);
    }
    if (body.seq === t) {
      if (!bytesEqual(manifest.body, trusted.manifest.body))
        throw new ProtocolError('MANIFEST_FORK', op, `another manifest at seq ${t}`);
      return body;
    }
    if (body.seq === t + 1) {
      if (!bytesEqual(body.prev, await sha256(trusted.manifest.body)))
        throw new ProtocolError('MANIFEST_FORK', op, `seq ${body.seq} does not follow ${t}`);
      return body;
    }
    throw new ProtocolError('MANIFEST_GAP', op, `seq ${body.seq} does not follow ${t}`);
  }
  // 6. no trusted manifest: seq 1 (prev = zeros, a decoding rule), or any seq under a pinned key
  if (body.seq !== 1 && !pinned) {
    throw new ProtocolError('MANIFEST_GAP', op, `seq ${body.seq} without a trusted predecessor`);
  }
  return body;
}
