import {
  createBackup,
  type DeviceEntry,
  type Ed25519KeyPair,
  generateKeyPair,
  generateRecoveryCode,
  MAX_DEVICES,
  type ManifestBody,
  newDeviceId,
  nextManifestBody,
  ProtocolError,
  type RecoveryCode,
  recoveryProof,
  recoveryVerifier,
  type SealedBackup,
  type SignedManifest,
  signManifest,
  sortDevices,
} from '@coffer/protocol';
import { SdkError } from './errors.js';

// The account steps of spec account-v1 as pure functions: they take keys, the current
// manifest and the time, and return what to upload. No I/O, no clock, no store.

/**
 * Everything a signup uploads, and the secrets the new device keeps.
 *
 * @example
 * const { manifest, backup, recoveryCode } = await prepareSignup(options);
 */
export interface SignupBundle {
  readonly identity: Ed25519KeyPair;
  readonly device: Ed25519KeyPair;
  readonly deviceId: string;
  readonly recoveryCode: RecoveryCode;
  readonly recoveryVerifier: Uint8Array;
  readonly backup: SealedBackup;
  readonly manifest: SignedManifest;
  readonly body: ManifestBody;
}

/**
 * The first device, identity, recovery code, backup (version 1) and manifest (seq 1) of a new
 * account (ARCHITECTURE "Sign up").
 *
 * @example const bundle = await prepareSignup({ accountId, exportKey, deviceName: 'laptop', now: Date.now() });
 */
export async function prepareSignup(options: {
  readonly accountId: string;
  readonly exportKey: Uint8Array;
  readonly deviceName: string;
  readonly now: number;
}): Promise<SignupBundle> {
  const identity = await generateKeyPair();
  const device = await generateKeyPair();
  const deviceId = newDeviceId();
  const recoveryCode = generateRecoveryCode();
  const backup = await createBackup({
    accountId: options.accountId,
    exportKey: options.exportKey,
    recoveryCode,
    secrets: { identitySeed: identity.seed },
  });
  // spec §3.1: the first manifest has seq 1 and prev = 32 zero bytes.
  const body: ManifestBody = {
    accountId: options.accountId,
    seq: 1,
    prev: new Uint8Array(32),
    identityKey: identity.publicKey,
    backupVersion: backup.version,
    backupHash: backup.hash,
    issuedAt: options.now,
    devices: [
      {
        id: deviceId,
        signingKey: device.publicKey,
        name: options.deviceName,
        addedAt: options.now,
      },
    ],
  };
  const manifest = await signManifest(identity.signingKey, body);
  const verifier = await recoveryVerifier(await recoveryProof(recoveryCode));
  return {
    identity,
    device,
    deviceId,
    recoveryCode,
    recoveryVerifier: verifier,
    backup,
    manifest,
    body,
  };
}

/**
 * How one manifest changes into the next.
 *
 * @example
 * const change: ManifestChange = { rename: { id: deviceId, name: 'work laptop' } };
 */
export interface ManifestChange {
  /** Adds (or, for a listed id, replaces the key and name of) a device. */
  readonly add?: DeviceEntry;
  readonly rename?: { readonly id: string; readonly name: string };
  readonly remove?: string;
  readonly backup?: { readonly version: number; readonly hash: Uint8Array };
}

/**
 * Signs the manifest after `previous` with one change applied.
 *
 * @throws {SdkError} `TOO_MANY_DEVICES` past 64 devices; `INVALID_ARGUMENT` for an unknown
 *   device id, or removing the last device.
 * @example const next = await nextManifest(identity.signingKey, current, body, { remove: lostId }, Date.now());
 */
export async function nextManifest(
  identity: Ed25519KeyPair,
  previous: SignedManifest,
  previousBody: ManifestBody,
  change: ManifestChange,
  now: number,
  operation: string,
): Promise<{ manifest: SignedManifest; body: ManifestBody }> {
  let devices: DeviceEntry[] = [...previousBody.devices];
  if (change.add) {
    const entry = change.add;
    devices = devices.filter((d) => d.id !== entry.id);
    if (devices.length >= MAX_DEVICES) {
      throw new SdkError(
        'TOO_MANY_DEVICES',
        operation,
        `an account has at most ${MAX_DEVICES} devices; revoke one first`,
      );
    }
    devices.push(entry);
  }
  if (change.rename) {
    const { id, name } = change.rename;
    if (!devices.some((d) => d.id === id)) throw unknownDevice(operation, id);
    devices = devices.map((d) => (d.id === id ? { ...d, name } : d));
  }
  if (change.remove !== undefined) {
    const id = change.remove;
    if (!devices.some((d) => d.id === id)) throw unknownDevice(operation, id);
    if (devices.length === 1) {
      throw new SdkError(
        'INVALID_ARGUMENT',
        operation,
        'cannot remove the only device of an account; delete the account instead',
      );
    }
    devices = devices.filter((d) => d.id !== id);
  }
  const body = await nextManifestBody(previous, {
    devices: sortDevices(devices),
    issuedAt: Math.max(now, previousBody.issuedAt),
    ...(change.backup
      ? { backupVersion: change.backup.version, backupHash: change.backup.hash }
      : {}),
  }).catch((err: unknown) => {
    // A change that breaks a manifest rule (a signing key already listed, …).
    throw new SdkError('INVALID_ARGUMENT', operation, 'the change breaks a manifest rule', {
      cause: err,
      ...(ProtocolError.is(err) ? { detail: err.code } : {}),
    });
  });
  const manifest = await signManifest(identity.signingKey, body);
  return { manifest, body };
}

function unknownDevice(operation: string, id: string): SdkError {
  return new SdkError('INVALID_ARGUMENT', operation, `no device ${id} in the account`);
}
