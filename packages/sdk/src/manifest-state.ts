import { constantTimeEqual } from '@coffer/crypto';
import {
  decodeManifestBody,
  MAX_MANIFEST_CHAIN,
  type ManifestBody,
  ProtocolError,
  type SignedManifest,
  verifyManifest,
  verifyManifestChain,
} from '@coffer/protocol';
import { SdkError } from './errors.js';

// The client's view of an account's device manifest (spec account-v1 §3.3), with no I/O: the
// client fetches, these functions decide. A client only ever moves forward from the newest
// manifest it verified; everything the server sends is checked against that.

/**
 * What a client trusts about one account.
 *
 * @example
 * const state: ManifestState = { accountId, trusted: lastVerified };
 */
export interface ManifestState {
  readonly accountId: string;
  /** Pinned identity key, when known before any manifest (from a backup or a link). */
  readonly identityKey?: Uint8Array;
  /** The newest manifest verified so far. */
  readonly trusted?: SignedManifest;
}

/**
 * A manifest that verified, with its decoded body.
 *
 * @example
 * const { manifest, body } = await acceptChain(state, history, 'client.login');
 */
export interface VerifiedManifest {
  readonly manifest: SignedManifest;
  readonly body: ManifestBody;
}

/**
 * Checks the server's newest manifest against `state.trusted` (or the pinned identity key).
 * Returns `'gap'` when manifests are missing in between (or nothing is trusted or pinned yet),
 * so the caller fetches the history and calls {@link acceptChain}.
 *
 * @throws {SdkError} `PROTOCOL_VIOLATION` (detail: the protocol code) for a rollback, a fork, a
 *   bad signature, another account's or another identity's manifest.
 * @example
 * const r = await acceptLatest(state, latest, 'devices.list');
 * const verified = r === 'gap' ? await acceptChain(state, await fetchHistory(), 'devices.list') : r;
 */
export async function acceptLatest(
  state: ManifestState,
  latest: SignedManifest,
  operation: string,
): Promise<VerifiedManifest | 'gap'> {
  // With nothing trusted, only a pinned identity key (from a backup or a link) lets a later seq
  // stand on its own (spec §3.3 step 6); otherwise the chain from seq 1 is needed.
  if (!state.trusted && !state.identityKey) return 'gap';
  try {
    const body = await verifyManifest(latest, expectation(state));
    return { manifest: latest, body };
  } catch (err) {
    if (ProtocolError.is(err, 'MANIFEST_GAP')) return 'gap';
    throw violation(operation, err);
  }
}

/**
 * Verifies the manifests that follow `state.trusted` (or, with nothing trusted, the whole chain
 * from seq 1) and returns the last. An empty chain leaves the trusted one in place.
 *
 * @throws {SdkError} `PROTOCOL_VIOLATION` when the chain does not verify or is empty with
 *   nothing trusted.
 * @example const { body } = await acceptChain({ accountId }, history, 'client.login');
 */
export async function acceptChain(
  state: ManifestState,
  chain: readonly SignedManifest[],
  operation: string,
): Promise<VerifiedManifest> {
  try {
    if (chain.length === 0) {
      if (!state.trusted) {
        throw new SdkError(
          'PROTOCOL_VIOLATION',
          operation,
          'the server has no manifest for the account',
        );
      }
      // Re-verify what we hold (our own record, but a mix-up should not pass): its signature
      // under its own identity key, or the pinned one.
      const body = await verifyManifest(state.trusted, {
        accountId: state.accountId,
        identityKey: state.identityKey ?? decodeManifestBody(state.trusted.body).identityKey,
      });
      return { manifest: state.trusted, body };
    }
    // verifyManifestChain takes at most MAX_MANIFEST_CHAIN at a time: page through longer
    // histories, each page trusting the last manifest of the one before.
    let expected = expectation(state);
    let body: ManifestBody | undefined;
    for (let start = 0; start < chain.length; start += MAX_MANIFEST_CHAIN) {
      const page = chain.slice(start, start + MAX_MANIFEST_CHAIN);
      body = await verifyManifestChain(page, expected);
      expected = {
        accountId: state.accountId,
        identityKey: body.identityKey,
        trusted: page[page.length - 1]!,
      };
    }
    return { manifest: chain[chain.length - 1]!, body: body! };
  } catch (err) {
    throw violation(operation, err);
  }
}

/**
 * {@link acceptChain}, returning every verified element (for {@link requireInChain}).
 *
 * @throws {SdkError} `PROTOCOL_VIOLATION` as {@link acceptChain}.
 * @example const all = await acceptHistory({ accountId }, history, 'client.recover');
 */
export async function acceptHistory(
  state: ManifestState,
  chain: readonly SignedManifest[],
  operation: string,
): Promise<VerifiedManifest[]> {
  await acceptChain(state, chain, operation);
  // Verified above; decoding again is cheap and keeps verifyManifestChain's contract small.
  return chain.map((manifest) => ({ manifest, body: decodeManifestBody(manifest.body) }));
}

/**
 * Checks that a verified manifest still lists this device with its key.
 *
 * @throws {SdkError} `DEVICE_REVOKED` when the device is not listed; `PROTOCOL_VIOLATION` when
 *   it is listed with another signing key.
 * @example requireListed(body, deviceId, devicePublicKey, 'devices.list');
 */
export function requireListed(
  body: ManifestBody,
  deviceId: string,
  signingKey: Uint8Array,
  operation: string,
): void {
  const entry = body.devices.find((d) => d.id === deviceId);
  if (!entry) {
    throw new SdkError(
      'DEVICE_REVOKED',
      operation,
      `device ${deviceId} was removed from the account`,
    );
  }
  if (!constantTimeEqual(entry.signingKey, signingKey)) {
    throw new SdkError(
      'PROTOCOL_VIOLATION',
      operation,
      `the manifest lists device ${deviceId} with another signing key`,
      { detail: 'DEVICE_KEY_MISMATCH' },
    );
  }
}

/**
 * Whether two manifests are the same bytes.
 *
 * @example
 * if (!sameManifest(fetched, trusted)) throw new Error('fork');
 */
export function sameManifest(a: SignedManifest, b: SignedManifest): boolean {
  return equalBytes(a.body, b.body) && equalBytes(a.signature, b.signature);
}

/**
 * Checks that a verified chain (ascending, consecutive) contains `expected` at its seq: how a
 * client that just uploaded a manifest, or trusted one earlier, checks a history that starts
 * at seq 1.
 *
 * @throws {SdkError} `PROTOCOL_VIOLATION` (detail `MANIFEST_ROLLBACK` or `MANIFEST_FORK`).
 * @example requireInChain(history, uploaded, 'client.recover');
 */
export function requireInChain(
  chain: readonly VerifiedManifest[],
  expected: VerifiedManifest,
  operation: string,
): void {
  const first = chain[0]?.body.seq ?? 0;
  const found = chain[expected.body.seq - first];
  if (!found) {
    throw new SdkError(
      'PROTOCOL_VIOLATION',
      operation,
      'the server went back to an older manifest',
      {
        detail: 'MANIFEST_ROLLBACK',
      },
    );
  }
  if (found.body.seq !== expected.body.seq || !sameManifest(found.manifest, expected.manifest)) {
    throw new SdkError(
      'PROTOCOL_VIOLATION',
      operation,
      `the server's manifest history disagrees at seq ${expected.body.seq}`,
      { detail: 'MANIFEST_FORK' },
    );
  }
}

/**
 * Wraps anything protocol verification threw as `PROTOCOL_VIOLATION`, keeping the protocol code
 * as `detail` and the original as `cause`. SdkErrors pass through.
 *
 * @example try { await openBackup(...) } catch (err) { throw violation('client.login', err) }
 */
export function violation(operation: string, err: unknown): SdkError {
  if (SdkError.is(err)) return err;
  if (ProtocolError.is(err)) {
    return new SdkError(
      'PROTOCOL_VIOLATION',
      operation,
      `the server sent data that does not verify (${err.code})`,
      { cause: err, detail: err.code },
    );
  }
  // A crypto failure (a backup that does not decrypt) is the server's doing just the same.
  if ((err as { name?: unknown })?.name === 'CryptoError') {
    const code = (err as { code?: unknown }).code;
    return new SdkError(
      'PROTOCOL_VIOLATION',
      operation,
      'the server sent data that does not verify',
      {
        cause: err,
        ...(typeof code === 'string' ? { detail: code } : {}),
      },
    );
  }
  throw err;
}

function expectation(state: ManifestState) {
  return {
    accountId: state.accountId,
    ...(state.identityKey ? { identityKey: state.identityKey } : {}),
    ...(state.trusted ? { trusted: state.trusted } : {}),
  };
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && compareBytes(a, b) === 0;
}
