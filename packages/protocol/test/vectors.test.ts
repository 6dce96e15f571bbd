import { fromHex, toHex } from '@coffer/crypto';
import { describe, expect, test } from 'vitest';
import {
  decodeBackup,
  decodeManifestBody,
  encodeManifestBody,
  keyPairFromSeed,
  type ManifestBody,
  manifestHash,
  openBackup,
  openLinkRequest,
  openLinkResponse,
  parseLinkCode,
  parseRecoveryCode,
  type RecoveryCode,
  recoveryProof,
  recoveryVerifier,
  signManifest,
  verifyManifest,
} from '../src/index.js';
import { recoveryKey } from '../src/recovery-code.js';
import { codeOf } from './_helpers.js';
import file from './vectors/account-v1.json' with { type: 'json' };

// Fixtures generated independently of src/ by vectors/generate.ts (node:crypto by hand). Kept
// forever: every release must reproduce every "ok" vector and refuse every other one with the
// code it names.

interface Fields {
  accountId: string;
  seq: number;
  prev: string;
  identityKey: string;
  backupVersion: number;
  backupHash: string;
  issuedAt: number;
  devices: { id: string; signingKey: string; name: string; addedAt: number }[];
}
const toBody = (f: Fields): ManifestBody => ({
  ...f,
  prev: fromHex(f.prev),
  identityKey: fromHex(f.identityKey),
  backupHash: fromHex(f.backupHash),
  devices: f.devices.map((d) => ({ ...d, signingKey: fromHex(d.signingKey) })),
});
const signed = (m: { body: string; signature: string }) => ({
  body: fromHex(m.body),
  signature: fromHex(m.signature),
});

describe('manifest vectors (spec §3)', () => {
  test.each(file.manifest.encode.map((v) => [v.id, v] as const))('encode %s', async (_id, v) => {
    const body = toBody(v.fields);
    expect(toHex(encodeManifestBody(body))).toBe(v.body);
    expect(decodeManifestBody(fromHex(v.body))).toEqual(body);
    const identity = await keyPairFromSeed(fromHex(v.identitySeed));
    const manifest = await signManifest(identity.signingKey, body);
    expect(toHex(manifest.signature)).toBe(v.signature); // Ed25519 is deterministic
    expect(toHex(await manifestHash(manifest))).toBe(v.hash);
    const pinned = { accountId: body.accountId, identityKey: identity.publicKey };
    expect(await codeOf(() => verifyManifest(manifest, pinned))).toBe(v.expect);
  });

  test.each(file.manifest.decode.map((v) => [v.id, v] as const))('decode %s', async (_id, v) => {
    const accountId = file.manifest.encode[0]!.fields.accountId;
    expect(await codeOf(() => decodeManifestBody(fromHex(v.body)))).toBe(v.expect);
    // Step 1 comes before the (valid) signature.
    expect(await codeOf(() => verifyManifest(signed(v), { accountId }))).toBe(v.expect);
  });

  test.each(file.manifest.verify.map((v) => [v.id, v] as const))('verify %s', async (_id, v) => {
    const e = v.expected as {
      accountId: string;
      identityKey?: string;
      trusted?: { body: string; signature: string };
    };
    const expected = {
      accountId: e.accountId,
      ...(e.identityKey ? { identityKey: fromHex(e.identityKey) } : {}),
      ...(e.trusted ? { trusted: signed(e.trusted) } : {}),
    };
    expect(await codeOf(() => verifyManifest(signed(v.manifest), expected))).toBe(v.expect);
  });
});

describe('recovery code vectors (spec §4)', () => {
  test.each(file.recoveryCode.derive.map((v) => [v.id, v] as const))('%s', async (_id, v) => {
    const code = parseRecoveryCode(v.text);
    expect(code.text).toBe(v.text);
    expect(toHex(code.bytes)).toBe(v.bytes);
    const proof = await recoveryProof(code);
    expect(toHex(proof)).toBe(v.proof);
    expect(toHex(await recoveryVerifier(proof))).toBe(v.verifier);
    expect(toHex(await recoveryKey('test', code, v.accountId))).toBe(v.recoveryKey);
  });

  test.each(file.recoveryCode.parse.map((v) => [v.id, v] as const))('parse %s', async (_id, v) => {
    let bytes = '';
    const got = await codeOf(() => {
      bytes = toHex(parseRecoveryCode(v.input).bytes);
    });
    expect(got).toBe(v.expect);
    if (v.expect === 'ok') expect(bytes).toBe((v as { bytes: string }).bytes);
  });
});

describe('backup vectors (spec §5)', () => {
  test.each(file.backup.map((v) => [v.id, v] as const))('%s', async (_id, v) => {
    const manifest = decodeManifestBody(fromHex(v.manifestBody));
    const unlock =
      'exportKey' in v && v.exportKey
        ? { exportKey: fromHex(v.exportKey) }
        : {
            recoveryCode: parseRecoveryCode(
              (v as { recoveryCode: string }).recoveryCode,
            ) as RecoveryCode,
          };
    let seed = '';
    const got = await codeOf(async () => {
      seed = toHex((await openBackup(fromHex(v.backup), { manifest, ...unlock })).identitySeed);
    });
    expect(got).toBe(v.expect);
    if (v.expect === 'ok') {
      expect(seed).toBe((v as { identitySeed: string }).identitySeed);
      expect(decodeBackup(fromHex(v.backup)).accountId).toBe(v.accountId);
    }
  });
});

describe('link vectors (spec §6)', () => {
  test('code', () => {
    const [v] = file.link.code;
    const fromText = parseLinkCode(v!.text);
    expect(fromText).toEqual(parseLinkCode(v!.qr));
    expect(fromText.text).toBe(v!.text);
    expect(fromText.qr).toBe(v!.qr);
    expect(fromText.linkId).toBe(v!.linkId);
    expect(toHex(fromText.secret)).toBe(v!.secret);
  });

  test.each(file.link.parse.map((v) => [v.id, v] as const))('parse %s', async (_id, v) => {
    let parsed = '';
    const got = await codeOf(() => {
      const c = parseLinkCode(v.input);
      parsed = c.linkId + toHex(c.secret);
    });
    expect(got).toBe(v.expect);
    const [code] = file.link.code;
    if (v.expect === 'ok') expect(parsed).toBe(code!.linkId + code!.secret);
  });

  test.each(file.link.messages.map((v) => [v.id, v] as const))('message %s', async (_id, v) => {
    const code = parseLinkCode(v.code);
    const sealed = fromHex(v.sealed);
    let opened: unknown;
    const got = await codeOf(async () => {
      opened =
        v.direction === 'request'
          ? await openLinkRequest(code, sealed)
          : await openLinkResponse(code, sealed);
    });
    expect(got).toBe(v.expect);
    if (v.expect !== 'ok') return;
    if (v.direction === 'request') {
      const r = (
        v as unknown as { request: { deviceId: string; signingKey: string; name: string } }
      ).request;
      expect(opened).toEqual({ ...r, signingKey: fromHex(r.signingKey) });
    } else {
      const r = (v as unknown as { response: { identitySeed: string } }).response;
      expect(opened).toEqual({ ...r, identitySeed: fromHex(r.identitySeed) });
    }
  });

  test('the vectors cover every outcome', () => {
    const codes = new Set(
      [
        ...file.manifest.decode,
        ...file.manifest.verify,
        ...file.backup,
        ...file.link.messages,
        ...file.recoveryCode.parse,
        ...file.link.parse,
      ].map((v) => v.expect),
    );
    for (const c of [
      'ok',
      'UNSUPPORTED_VERSION',
      'INVALID_MANIFEST',
      'BAD_SIGNATURE',
      'ACCOUNT_MISMATCH',
      'IDENTITY_MISMATCH',
      'MANIFEST_ROLLBACK',
      'MANIFEST_FORK',
      'MANIFEST_GAP',
      'INVALID_BACKUP',
      'BACKUP_MISMATCH',
      'DECRYPTION_FAILED',
      'INVALID_RECOVERY_CODE',
      'INVALID_LINK_CODE',
    ]) {
      expect(codes, c).toContain(c);
    }
  });
});
