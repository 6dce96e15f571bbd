// Manifests, backups and revocation, in-process, on every database.
import { sha256, toBase64url } from '@coffer/crypto';
import {
  decodeManifestBody,
  generateKeyPair,
  manifestHash,
  rewrapBackup,
  signManifest,
  sortDevices,
} from '@coffer/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Account,
  addDevice,
  call,
  login,
  makeDevice,
  signup,
  successor,
  wire,
} from './_client.js';
import { testDialects } from './_db.js';
import { createHarness, type Harness } from './_harness.js';

const dialects = await testDialects();

describe.each(dialects)('devices (%s)', (dialect) => {
  let h: Harness;
  let n = 0;
  const fresh = () => signup(h.fetch, `user${n++}`, 'pw');
  const put = (a: Account, body: unknown) => call(h.fetch, 'PUT', '/v1/manifest', body, a.token);

  beforeAll(async () => {
    h = await createHarness(dialect, 'devices');
  });
  afterAll(() => h.dispose());

  it('serves the manifest, accepts its successor, and lists the history', async () => {
    const a = await fresh();
    const got = await call(h.fetch, 'GET', '/v1/manifest', undefined, a.token);
    expect(got.json.manifest).toEqual(wire(a.manifest));
    const r = await addDevice(h.fetch, a, await makeDevice('phone'));
    expect(r.status).toBe(200);
    expect(r.json).toEqual({ seq: 2 });
    const history = await call(h.fetch, 'GET', '/v1/manifest/history?after=0', undefined, a.token);
    expect(history.json.manifests).toHaveLength(2);
    expect(history.json.manifests[1]).toEqual(wire(a.manifest));
    const after1 = await call(h.fetch, 'GET', '/v1/manifest/history?after=1', undefined, a.token);
    expect(after1.json.manifests).toHaveLength(1);
    for (const bad of ['-1', 'x', '01', '1e3', '99999999999']) {
      const r2 = await call(
        h.fetch,
        'GET',
        `/v1/manifest/history?after=${bad}`,
        undefined,
        a.token,
      );
      expect(r2.status, bad).toBe(400);
    }
    // Other accounts' manifests, for contacts.
    const b = await fresh();
    const other = await call(
      h.fetch,
      'GET',
      `/v1/accounts/${a.accountId}/manifest`,
      undefined,
      b.token,
    );
    expect(other.json.manifest).toEqual(wire(a.manifest));
    const unknown = await call(
      h.fetch,
      'GET',
      `/v1/accounts/${'A'.repeat(22)}/manifest`,
      undefined,
      b.token,
    );
    expect(unknown.status).toBe(404);
    const malformed = await call(h.fetch, 'GET', '/v1/accounts/nope/manifest', undefined, b.token);
    expect(malformed.status).toBe(400);
  });

  it('refuses manifests that do not verify with 422', async () => {
    const a = await fresh();
    const next = await successor(a, {
      devices: sortDevices([...a.body.devices, (await makeDevice()).entry]),
    });
    // Bad signature.
    const sig = next.manifest.signature.slice();
    sig[0]! ^= 1;
    let r = await put(a, { manifest: wire({ body: next.manifest.body, signature: sig }) });
    expect(r.status).toBe(422);
    expect(r.json.error.code).toBe('INVALID_MANIFEST');
    // Another identity key (a server or thief swapping keys).
    const thief = await generateKeyPair();
    const swapped = await signManifest(thief.signingKey, {
      ...next.body,
      identityKey: thief.publicKey,
    });
    r = await put(a, { manifest: wire(swapped) });
    expect(r.status).toBe(422);
    // Another account's id.
    const b = await fresh();
    const foreign = await successor(b, {});
    r = await put(a, { manifest: wire(foreign.manifest) });
    expect(r.status).toBe(422);
    // A fork: the next seq not chained to the current manifest.
    const forked = await signManifest(a.identity.signingKey, {
      ...next.body,
      prev: new Uint8Array(32).fill(7),
    });
    r = await put(a, { manifest: wire(forked) });
    expect(r.status).toBe(422);
    // Garbage body bytes with a good shape.
    r = await put(a, {
      manifest: {
        body: toBase64url(new Uint8Array([9, 9, 9])),
        signature: toBase64url(new Uint8Array(64)),
      },
    });
    expect(r.status).toBe(422);
    // Not even shaped like a manifest: 400.
    r = await put(a, { manifest: { body: 'not b64!', signature: 'x' } });
    expect(r.status).toBe(400);
    expect((await call(h.fetch, 'GET', '/v1/manifest', undefined, a.token)).json.manifest).toEqual(
      wire(a.manifest),
    );
  });

  it('refuses rollback, replay, gap and a lost race with 409', async () => {
    const a = await fresh();
    const first = a.manifest;
    expect((await addDevice(h.fetch, a, await makeDevice('two'))).status).toBe(200);
    // Rollback: seq 1 again.
    let r = await put(a, { manifest: wire(first) });
    expect(r.status).toBe(409);
    expect(r.json.error.code).toBe('MANIFEST_CONFLICT');
    // Replay of the current one.
    r = await put(a, { manifest: wire(a.manifest) });
    expect(r.status).toBe(409);
    // Gap: seq current + 2.
    const skipBody = { ...(await successor(a, {})).body };
    const gapBody = { ...skipBody, seq: skipBody.seq + 1, prev: await manifestHash(a.manifest) };
    r = await put(a, { manifest: wire(await signManifest(a.identity.signingKey, gapBody)) });
    expect(r.status).toBe(409);
    // Two devices race for the same next seq: one wins.
    const x = await successor(a, {
      devices: sortDevices([...a.body.devices, (await makeDevice('x')).entry]),
    });
    const y = await successor(a, {
      devices: sortDevices([...a.body.devices, (await makeDevice('y')).entry]),
    });
    const [rx, ry] = await Promise.all([
      put(a, { manifest: wire(x.manifest) }),
      put(a, { manifest: wire(y.manifest) }),
    ]);
    expect([rx.status, ry.status].sort()).toEqual([200, 409]);
    const current = await call(h.fetch, 'GET', '/v1/manifest', undefined, a.token);
    expect(decodeManifestBody(Buffer.from(current.json.manifest.body, 'base64url')).seq).toBe(3);
  });

  it("stops a removed device's sessions at once", async () => {
    const a = await fresh();
    const phone = await makeDevice('phone');
    expect((await addDevice(h.fetch, a, phone)).status).toBe(200);
    const onPhone = await login(h.fetch, a.username, a.password, phone);
    const phoneToken = onPhone.finish?.json.token;
    expect((await call(h.fetch, 'GET', '/v1/session', undefined, phoneToken)).status).toBe(200);
    const next = await successor(a, { devices: a.body.devices.filter((d) => d.id !== phone.id) });
    const r = await put(a, { manifest: wire(next.manifest) });
    expect(r.status).toBe(200);
    expect((await call(h.fetch, 'GET', '/v1/session', undefined, phoneToken)).status).toBe(401);
    expect((await call(h.fetch, 'GET', '/v1/session', undefined, a.token)).status).toBe(200);
  });

  it('takes a new backup version only with the backup it commits', async () => {
    const a = await fresh();
    const sealed = await rewrapBackup(a.backup, {
      manifest: a.body,
      exportKey: a.exportKey,
      newExportKey: a.exportKey,
    });
    const next = await successor(a, { backupVersion: sealed.version, backupHash: sealed.hash });
    let r = await put(a, { manifest: wire(next.manifest) });
    expect(r.status).toBe(422);
    r = await put(a, { manifest: wire(next.manifest), backup: toBase64url(a.backup) });
    expect(r.status).toBe(422);
    const tampered = sealed.backup.slice();
    tampered[tampered.length - 1]! ^= 1;
    r = await put(a, { manifest: wire(next.manifest), backup: toBase64url(tampered) });
    expect(r.status).toBe(422);
    r = await put(a, { manifest: wire(next.manifest), backup: toBase64url(sealed.backup) });
    expect(r.status).toBe(200);
    const got = await call(h.fetch, 'GET', '/v1/backup', undefined, a.token);
    expect(got.json).toEqual({ backup: toBase64url(sealed.backup), version: 2 });
    // A backup sent without a new version is refused.
    a.manifest = next.manifest;
    a.body = next.body;
    const plain = await successor(a, {});
    r = await put(a, { manifest: wire(plain.manifest), backup: toBase64url(sealed.backup) });
    expect(r.status).toBe(422);
  });

  it('takes every u32 the formats allow: history cursors and backup versions past 2^31', async () => {
    // account-v1: seq and backupVersion are u32, and the history cursor goes up to 2^32 - 1;
    // PostgreSQL's `integer` stops at 2^31 - 1, which made these a 500 there.
    const a = await fresh();
    for (const after of ['2147483647', '2147483648', '4294967295']) {
      const r = await call(
        h.fetch,
        'GET',
        `/v1/manifest/history?after=${after}`,
        undefined,
        a.token,
      );
      expect(r.status, after).toBe(200);
      expect(r.json).toEqual({ manifests: [] });
    }
    // The server checks a backup's account, version and hash (account-v1 §5.3), not its wraps:
    // the first backup with its version field set to 2^31 is one the manifest may commit to.
    const backup = a.backup.slice();
    new DataView(backup.buffer).setUint32(2 + 22, 2 ** 31);
    const next = await successor(a, {
      backupVersion: 2 ** 31,
      backupHash: await sha256(backup),
    });
    const r = await put(a, { manifest: wire(next.manifest), backup: toBase64url(backup) });
    expect(r.status).toBe(200);
    const got = await call(h.fetch, 'GET', '/v1/backup', undefined, a.token);
    expect(got.json).toEqual({ backup: toBase64url(backup), version: 2 ** 31 });
  });
});
