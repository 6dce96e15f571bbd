import { concatBytes, toBase64url, utf8Decode, utf8Encode } from '@coffer/crypto';
import {
  byteReader,
  compareBytes,
  isIntIn,
  isZero,
  lp8,
  MAX_SAFE_U64,
  MAX_U32,
  u32,
  u64,
} from './_bytes.js';
import { isDisplayText } from './_text.js';
import { invalidArgument, ProtocolError } from './errors.js';
import { ID_LENGTH, ID_TEXT_LENGTH, idBytes } from './ids.js';
import { PUBLIC_KEY_LENGTH } from './key-pair.js';

/** spec §3.1: the first byte of every manifest body. */
export const MANIFEST_FORMAT = 0x01;
/** Devices per account: the list is untrusted input the server can grow (spec §3.1). */
export const MAX_DEVICES = 64;
/** Device names are 1 to 64 bytes of UTF-8: a label for people, not data (spec §3.1). */
export const MAX_DEVICE_NAME_LENGTH = 64;
/** SHA-256 output: `prev` and `backupHash`. */
export const HASH_LENGTH = 32;
/** Bytes of one device entry at most: id, key, lp8 name, addedAt. */
const MAX_ENTRY_LENGTH = ID_LENGTH + PUBLIC_KEY_LENGTH + 1 + MAX_DEVICE_NAME_LENGTH + 8;
/** The largest body spec §3.1 allows (7,881 bytes); anything longer is refused unread. */
export const MAX_MANIFEST_BODY_LENGTH =
  1 +
  1 +
  ID_TEXT_LENGTH +
  4 +
  HASH_LENGTH +
  PUBLIC_KEY_LENGTH +
  4 +
  HASH_LENGTH +
  8 +
  1 +
  MAX_DEVICES * MAX_ENTRY_LENGTH;

/** One device of an account (spec §3.1). */
export interface DeviceEntry {
  /** The device id (b64url of 16 bytes). */
  readonly id: string;
  /** The device's Ed25519 public key (32 bytes). */
  readonly signingKey: Uint8Array;
  /** 1 to 64 bytes of UTF-8, NFC, no control characters. */
  readonly name: string;
  /** Milliseconds since the Unix epoch. */
  readonly addedAt: number;
}

/** The decoded body of a device manifest (spec §3.1). */
export interface ManifestBody {
  readonly accountId: string;
  /** 1 for the first manifest, then previous + 1. */
  readonly seq: number;
  /** SHA-256 of the previous body; 32 zero bytes when seq = 1. */
  readonly prev: Uint8Array;
  /** The account's identity public key, the same in every manifest. */
  readonly identityKey: Uint8Array;
  /** Version of the current backup; 0 = none. */
  readonly backupVersion: number;
  /** SHA-256 of the encoded backup; 32 zero bytes iff backupVersion = 0. */
  readonly backupHash: Uint8Array;
  /** Milliseconds since the Unix epoch. */
  readonly issuedAt: number;
  /** 1 to 64 devices, sorted by id bytes ascending (see {@link sortDevices}). */
  readonly devices: readonly DeviceEntry[];
}

const timestamp = (v: unknown): v is number => isIntIn(v, 0, MAX_SAFE_U64);
const isHash = (v: unknown): v is Uint8Array => v instanceof Uint8Array && v.length === HASH_LENGTH;
const isKey = (v: unknown): v is Uint8Array =>
  v instanceof Uint8Array && v.length === PUBLIC_KEY_LENGTH;

/**
 * Every rule of spec §3.1 that the body's fields must satisfy; returns the first broken rule as
 * an argument-naming message, or undefined. Shared by the encoder (caller mistakes) and the
 * decoder (untrusted bytes).
 */
function brokenRule(body: ManifestBody): string | undefined {
  if (typeof body !== 'object' || body === null) return '"body" expected an object';
  if (idBytes(body.accountId) === undefined)
    return '"accountId" expected b64url of 16 bytes (22 characters)';
  if (!isIntIn(body.seq, 1, MAX_U32)) return '"seq" expected an integer from 1 to 2^32 - 1';
  if (!isHash(body.prev)) return '"prev" expected 32 bytes';
  if ((body.seq === 1) !== isZero(body.prev))
    return '"prev" expected 32 zero bytes exactly when seq is 1';
  if (!isKey(body.identityKey)) return '"identityKey" expected 32 bytes';
  if (!isIntIn(body.backupVersion, 0, MAX_U32))
    return '"backupVersion" expected an integer from 0 to 2^32 - 1';
  if (!isHash(body.backupHash)) return '"backupHash" expected 32 bytes';
  if ((body.backupVersion === 0) !== isZero(body.backupHash))
    return '"backupHash" expected 32 zero bytes exactly when backupVersion is 0';
  if (!timestamp(body.issuedAt)) return '"issuedAt" expected an integer from 0 to 2^53 - 1';
  const devices = body.devices;
  if (!Array.isArray(devices) || devices.length < 1 || devices.length > MAX_DEVICES)
    return `"devices" expected 1 to ${MAX_DEVICES} entries`;
  let previousId: Uint8Array | undefined;
  const keys = new Set<string>();
  for (let i = 0; i < devices.length; i++) {
    const d = devices[i] as DeviceEntry;
    const where = `"devices[${i}]`;
    if (typeof d !== 'object' || d === null) return `${where}" expected an object`;
    const id = idBytes(d.id);
    if (!id) return `${where}.id" expected b64url of 16 bytes (22 characters)`;
    if (previousId && compareBytes(previousId, id) >= 0)
      return `"devices" expected ids sorted by bytes and unique (see sortDevices), at ${i}`;
    previousId = id;
    if (!isKey(d.signingKey)) return `${where}.signingKey" expected 32 bytes`;
    const key = String.fromCharCode(...d.signingKey);
    if (keys.has(key)) return `"devices" expected unique signing keys, at ${i}`;
    keys.add(key);
    if (!isDisplayText(d.name, MAX_DEVICE_NAME_LENGTH))
      return `${where}.name" expected 1 to ${MAX_DEVICE_NAME_LENGTH} bytes of UTF-8, NFC, without control characters`;
    if (!timestamp(d.addedAt)) return `${where}.addedAt" expected an integer from 0 to 2^53 - 1`;
  }
  return undefined;
}

/** @internal Throws `INVALID_ARGUMENT` unless `body` satisfies spec §3.1. */
export function assertManifestBody(operation: string, body: ManifestBody): void {
  const broken = brokenRule(body);
  if (broken) throw invalidArgument(operation, broken);
}

/**
 * Encodes a manifest body (spec §3.1). It sorts nothing and fixes nothing, so that what is signed
 * is exactly what the caller meant: devices must already be sorted by id bytes (use
 * {@link sortDevices}) with unique ids and signing keys.
 *
 * @throws {ProtocolError} `INVALID_ARGUMENT` naming the first field that breaks a rule of §3.1
 *   (unsorted or duplicate devices, a name that is not NFC, a nonzero `prev` at seq 1, …).
 * @example
 * const bytes = encodeManifestBody({ accountId, seq: 1, prev: new Uint8Array(32), identityKey,
 *   backupVersion: 1, backupHash, issuedAt: Date.now(), devices: [device] });
 */
export function encodeManifestBody(body: ManifestBody): Uint8Array {
  assertManifestBody('manifest.encode', body);
  const parts: Uint8Array[] = [
    Uint8Array.of(MANIFEST_FORMAT),
    lp8(utf8Encode(body.accountId)),
    u32(body.seq),
    body.prev,
    body.identityKey,
    u32(body.backupVersion),
    body.backupHash,
    u64(body.issuedAt),
    Uint8Array.of(body.devices.length),
  ];
  for (const d of body.devices) {
    parts.push(idBytes(d.id)!, d.signingKey, lp8(utf8Encode(d.name)), u64(d.addedAt));
  }
  return concatBytes(...parts);
}

/**
 * Decodes a manifest body strictly (spec §3.1): every rule is checked and nothing may follow the
 * last entry, so each body has exactly one encoding. The signature is not checked here; use
 * {@link verifyManifest} for anything received.
 *
 * @throws {ProtocolError} `UNSUPPORTED_VERSION` for a format byte other than 1; `INVALID_MANIFEST`
 *   for any other broken rule; `INVALID_ARGUMENT` when `bytes` is not a Uint8Array.
 * @example const body = decodeManifestBody(manifest.body);
 */
export function decodeManifestBody(bytes: Uint8Array): ManifestBody {
  const op = 'manifest.decode';
  if (!(bytes instanceof Uint8Array)) throw invalidArgument(op, '"bytes" expected a Uint8Array');
  const fail = (): never => {
    throw new ProtocolError('INVALID_MANIFEST', op, 'malformed manifest body');
  };
  if (bytes.length === 0) fail();
  if (bytes[0] !== MANIFEST_FORMAT) {
    throw new ProtocolError('UNSUPPORTED_VERSION', op, `unsupported manifest format ${bytes[0]}`);
  }
  if (bytes.length > MAX_MANIFEST_BODY_LENGTH) fail();
  const r = byteReader(bytes, fail);
  r.u8();
  const accountIdBytes = r.lp8();
  if (accountIdBytes.length !== ID_TEXT_LENGTH) fail();
  const accountId = String.fromCharCode(...accountIdBytes); // ASCII only, checked below
  const seq = r.u32();
  const prev = r.take(HASH_LENGTH);
  const identityKey = r.take(PUBLIC_KEY_LENGTH);
  const backupVersion = r.u32();
  const backupHash = r.take(HASH_LENGTH);
  const issuedAt = r.u64();
  const count = r.u8();
  if (count < 1 || count > MAX_DEVICES) fail();
  const devices: DeviceEntry[] = [];
  for (let i = 0; i < count; i++) {
    const id = toBase64url(r.take(ID_LENGTH));
    const signingKey = r.take(PUBLIC_KEY_LENGTH);
    const nameBytes = r.lp8();
    let name = '';
    try {
      name = utf8Decode(nameBytes);
    } catch {
      fail();
    }
    devices.push(Object.freeze({ id, signingKey, name, addedAt: r.u64() }));
  }
  r.end();
  const body: ManifestBody = Object.freeze({
    accountId,
    seq,
    prev,
    identityKey,
    backupVersion,
    backupHash,
    issuedAt,
    devices: Object.freeze(devices),
  });
  if (brokenRule(body) !== undefined) fail();
  return body;
}

/**
 * A copy of `devices` sorted as spec §3.1 requires (by id bytes, ascending; note that this is not
 * the order of the b64url strings). Duplicates are kept, for the encoder to refuse.
 *
 * @throws {ProtocolError} `INVALID_ARGUMENT` when an id is not a device id.
 * @example const devices = sortDevices([...body.devices, newDevice]);
 */
export function sortDevices(devices: readonly DeviceEntry[]): DeviceEntry[] {
  const op = 'manifest.sortDevices';
  if (!Array.isArray(devices)) throw invalidArgument(op, '"devices" expected an array');
  const keyed = devices.map((d: DeviceEntry, i) => {
    const id = typeof d === 'object' && d !== null ? idBytes(d.id) : undefined;
    if (!id) throw invalidArgument(op, `"devices[${i}].id" expected b64url of 16 bytes`);
    return { d, id };
  });
  keyed.sort((a, b) => compareBytes(a.id, b.id));
  return keyed.map((k) => k.d);
}
