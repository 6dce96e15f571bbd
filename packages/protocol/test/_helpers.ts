import { concatBytes, randomBytes, sign, utf8Encode } from '@coffer/crypto';
import { expect } from 'vitest';
import {
  createBackup,
  type DeviceEntry,
  type Ed25519KeyPair,
  generateKeyPair,
  generateRecoveryCode,
  type ManifestBody,
  newAccountId,
  newDeviceId,
  nextManifestBody,
  ProtocolError,
  type ProtocolErrorCode,
  type RecoveryCode,
  type SealedBackup,
  type SignedManifest,
  signManifest,
  sortDevices,
} from '../src/index.js';

export const ZERO32 = new Uint8Array(32);

export async function device(name = 'Laptop', addedAt = 1_700_000_000_000): Promise<DeviceEntry> {
  const pair = await generateKeyPair();
  return { id: newDeviceId(), signingKey: pair.publicKey, name, addedAt };
}

export interface Account {
  accountId: string;
  identity: Ed25519KeyPair;
  exportKey: Uint8Array;
  recoveryCode: RecoveryCode;
  backup: SealedBackup;
  first: SignedManifest;
  firstBody: ManifestBody;
}

/** A signed-up account: identity, one device, backup version 1, manifest seq 1. */
export async function account(): Promise<Account> {
  const accountId = newAccountId();
  const identity = await generateKeyPair();
  const exportKey = randomBytes(64);
  const recoveryCode = generateRecoveryCode();
  const backup = await createBackup({
    accountId,
    exportKey,
    recoveryCode,
    secrets: { identitySeed: identity.seed },
  });
  const firstBody: ManifestBody = {
    accountId,
    seq: 1,
    prev: ZERO32,
    identityKey: identity.publicKey,
    backupVersion: 1,
    backupHash: backup.hash,
    issuedAt: 1_700_000_000_000,
    devices: sortDevices([await device()]),
  };
  const first = await signManifest(identity.signingKey, firstBody);
  return { accountId, identity, exportKey, recoveryCode, backup, first, firstBody };
}

/** Resolves to the ProtocolError code `run` fails with, or "ok". */
export async function codeOf(run: () => unknown): Promise<ProtocolErrorCode | 'ok'> {
  try {
    await run();
    return 'ok';
  } catch (err) {
    if (ProtocolError.is(err)) return err.code;
    throw err;
  }
}

export async function expectCode(run: () => unknown, code: ProtocolErrorCode): Promise<void> {
  expect(await codeOf(run)).toBe(code);
}

export function flipBit(bytes: Uint8Array, bit: number): Uint8Array {
  const out = bytes.slice();
  out[bit >> 3]! ^= 1 << (bit & 7);
  return out;
}

/** Signs arbitrary body bytes as spec §3.2 does, to test what the decoder makes of them. */
export async function signRaw(identity: Ed25519KeyPair, body: Uint8Array): Promise<SignedManifest> {
  const message = concatBytes(utf8Encode('coffer/v1/device-manifest'), Uint8Array.of(0), body);
  return { body, signature: await sign(identity.signingKey, message) };
}

/** The next manifest of `a` after `previous`, signed by `identity` (default the account's). */
export async function successor(
  a: Account,
  previous: SignedManifest,
  changes: Parameters<typeof nextManifestBody>[1] = {},
  identity: Ed25519KeyPair = a.identity,
): Promise<SignedManifest> {
  const body = await nextManifestBody(previous, { issuedAt: 1_700_000_000_001, ...changes });
  return signManifest(identity.signingKey, { ...body, identityKey: identity.publicKey });
}
