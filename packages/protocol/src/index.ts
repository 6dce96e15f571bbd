// @coffer/protocol: the sans-I/O core. This first part (spec/account-v1.md) covers what issue 4
// needs: the account identity, the signed device manifest, the key backup, recovery codes and
// device linking. MLS conversations come with issue 5.
//
// THE SIGNATURES BELOW ARE THE CONTRACT other packages code against; the bodies are being
// implemented (src/*.ts files re-exported from here).
import type { SigningKey } from '@coffer/crypto';

export type ProtocolErrorCode =
  | 'INVALID_ARGUMENT'
  | 'UNSUPPORTED_VERSION'
  | 'INVALID_MANIFEST'
  | 'BAD_SIGNATURE'
  | 'ACCOUNT_MISMATCH'
  | 'IDENTITY_MISMATCH'
  | 'MANIFEST_ROLLBACK'
  | 'MANIFEST_FORK'
  | 'MANIFEST_GAP'
  | 'INVALID_BACKUP'
  | 'BACKUP_MISMATCH'
  | 'DECRYPTION_FAILED'
  | 'INVALID_RECOVERY_CODE'
  | 'INVALID_LINK_CODE';

/** One error class for the package: a stable `code`, the `operation`, and a message without secrets. */
export declare class ProtocolError extends Error {
  readonly code: ProtocolErrorCode;
  readonly operation: string;
  constructor(code: ProtocolErrorCode, operation: string, message: string);
  static is(err: unknown, code?: ProtocolErrorCode): err is ProtocolError;
}

// --- identities (spec §1, §2) ---
export declare const MAX_DEVICES = 64;
/** 16 random bytes as b64url (22 characters). */
export declare function newAccountId(): string;
export declare function newDeviceId(): string;
export declare function isId(text: unknown): text is string;
/** An Ed25519 key made from a 32-byte seed: the signing key, its public key, and the seed. */
export interface Ed25519KeyPair {
  readonly seed: Uint8Array;
  readonly publicKey: Uint8Array;
  readonly signingKey: SigningKey;
}
export declare function generateKeyPair(): Promise<Ed25519KeyPair>;
export declare function keyPairFromSeed(seed: Uint8Array): Promise<Ed25519KeyPair>;

// --- device manifest (spec §3) ---
export interface DeviceEntry {
  readonly id: string;
  readonly signingKey: Uint8Array;
  readonly name: string;
  readonly addedAt: number;
}
export interface ManifestBody {
  readonly accountId: string;
  readonly seq: number;
  readonly prev: Uint8Array;
  readonly identityKey: Uint8Array;
  readonly backupVersion: number;
  readonly backupHash: Uint8Array;
  readonly issuedAt: number;
  readonly devices: readonly DeviceEntry[];
}
export interface SignedManifest {
  readonly body: Uint8Array;
  readonly signature: Uint8Array;
}
/** JSON wire form: `{ body, signature }` as b64url strings. */
export interface ManifestJson {
  readonly body: string;
  readonly signature: string;
}
export declare function encodeManifestBody(body: ManifestBody): Uint8Array;
export declare function decodeManifestBody(bytes: Uint8Array): ManifestBody;
export declare function signManifest(
  identity: SigningKey,
  body: ManifestBody,
): Promise<SignedManifest>;
export declare function manifestHash(manifest: SignedManifest): Promise<Uint8Array>;
export declare function manifestToJson(manifest: SignedManifest): ManifestJson;
/** @throws {ProtocolError} INVALID_MANIFEST when not `{ body, signature }` b64url strings. */
export declare function manifestFromJson(json: unknown): SignedManifest;
export interface ManifestExpectation {
  readonly accountId: string;
  /** The pinned identity key, when known. */
  readonly identityKey?: Uint8Array;
  /** The newest manifest this verifier already trusts. */
  readonly trusted?: SignedManifest;
}
/** spec §3.3; returns the decoded body. */
export declare function verifyManifest(
  manifest: SignedManifest,
  expected: ManifestExpectation,
): Promise<ManifestBody>;
/** Verifies `chain` (ascending, each the successor of the one before, the first the successor of `expected.trusted` or seq 1); returns the last body. */
export declare function verifyManifestChain(
  chain: readonly SignedManifest[],
  expected: ManifestExpectation,
): Promise<ManifestBody>;
/** The body of the manifest after `previous`: seq + 1, prev = its hash, identity key kept; `changes` replace the rest. */
export declare function nextManifestBody(
  previous: SignedManifest,
  changes: {
    readonly devices?: readonly DeviceEntry[];
    readonly backupVersion?: number;
    readonly backupHash?: Uint8Array;
    readonly issuedAt?: number;
  },
): Promise<ManifestBody>;

// --- recovery code (spec §4) ---
export interface RecoveryCode {
  /** Display form: 8 groups of 4 Crockford base32 characters. */
  readonly text: string;
  readonly bytes: Uint8Array;
}
export declare function generateRecoveryCode(): RecoveryCode;
export declare function parseRecoveryCode(text: string): RecoveryCode;
export declare function recoveryProof(code: RecoveryCode): Promise<Uint8Array>;
export declare function recoveryVerifier(proof: Uint8Array): Promise<Uint8Array>;

// --- key backup (spec §5) ---
export interface AccountSecrets {
  readonly identitySeed: Uint8Array;
}
export interface DecodedBackup {
  readonly accountId: string;
  readonly version: number;
  readonly passwordWrap: Uint8Array;
  readonly recoveryWrap: Uint8Array;
  readonly secrets: Uint8Array;
}
export declare function decodeBackup(bytes: Uint8Array): DecodedBackup;
export interface SealedBackup {
  readonly backup: Uint8Array;
  readonly hash: Uint8Array;
  readonly version: number;
}
/** At signup: a fresh backup key, version 1. */
export declare function createBackup(options: {
  readonly accountId: string;
  readonly exportKey: Uint8Array;
  readonly recoveryCode: RecoveryCode;
  readonly secrets: AccountSecrets;
}): Promise<SealedBackup>;
/** Opens a backup a trusted manifest commits to (checks in spec §5.4 order). */
export declare function openBackup(
  backup: Uint8Array,
  options: {
    readonly manifest: ManifestBody;
    readonly exportKey?: Uint8Array;
    readonly recoveryCode?: RecoveryCode;
  },
): Promise<AccountSecrets>;
/** Password change / recovery: version + 1, new password wrap under `newExportKey`, recovery wrap copied. */
export declare function rewrapBackup(
  backup: Uint8Array,
  options: {
    readonly manifest: ManifestBody;
    readonly exportKey?: Uint8Array;
    readonly recoveryCode?: RecoveryCode;
    readonly newExportKey: Uint8Array;
  },
): Promise<SealedBackup & { readonly secrets: AccountSecrets }>;

// --- device linking (spec §6) ---
export interface LinkCode {
  /** 24 Crockford base32 characters in 6 groups of 4. */
  readonly text: string;
  /** `coffer-link:1:<24 characters>`. */
  readonly qr: string;
  readonly linkId: string;
  readonly secret: Uint8Array;
}
export declare function generateLinkCode(): LinkCode;
/** Accepts the display text or the QR payload. */
export declare function parseLinkCode(text: string): LinkCode;
export interface LinkRequest {
  readonly deviceId: string;
  readonly signingKey: Uint8Array;
  readonly name: string;
}
export interface LinkResponse {
  readonly accountId: string;
  readonly username: string;
  readonly identitySeed: Uint8Array;
  readonly manifestSeq: number;
}
export declare function sealLinkRequest(code: LinkCode, request: LinkRequest): Promise<Uint8Array>;
export declare function openLinkRequest(code: LinkCode, sealed: Uint8Array): Promise<LinkRequest>;
export declare function sealLinkResponse(
  code: LinkCode,
  response: LinkResponse,
): Promise<Uint8Array>;
export declare function openLinkResponse(code: LinkCode, sealed: Uint8Array): Promise<LinkResponse>;
