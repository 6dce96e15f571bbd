// Password change and recovery, in-process, on every database.
import { toBase64url } from '@coffer/crypto';
import { recoveryProof, rewrapBackup, type SignedManifest, sortDevices } from '@coffer/protocol';
import * as opaque from '@serenity-kit/opaque';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  call,
  changePassword,
  login,
  makeDevice,
  register,
  signup,
  successor,
  wire,
} from './_client.js';
import { testDialects } from './_db.js';
import { createHarness, type Harness } from './_harness.js';

const dialects = await testDialects();

describe.each(dialects)('password and recovery (%s)', (dialect) => {
  let h: Harness;
  beforeAll(async () => {
    h = await createHarness(dialect, 'password');
  });
  afterAll(() => h.dispose());

  it('changes the password with a recent session, keeping the token', async () => {
    const a = await signup(h.fetch, 'pat', 'old password');
    const token = a.token;
    const r = await changePassword(h.fetch, a, 'new password', token, { exportKey: a.exportKey });
    expect(r.status).toBe(200);
    expect(r.json.token).toBe(token);
    expect((await call(h.fetch, 'GET', '/v1/session', undefined, token)).status).toBe(200);
    expect((await login(h.fetch, 'pat', 'old password')).finish?.status).toBe(401);
    const again = await login(h.fetch, 'pat', 'new password');
    expect(again.finish?.status).toBe(200);
    expect(again.exportKey).toEqual(a.exportKey);
    const backup = await call(h.fetch, 'GET', '/v1/backup', undefined, token);
    expect(backup.json.version).toBe(2);
  });

  it('needs a recently proved password', async () => {
    const a = await signup(h.fetch, 'quinn', 'pw');
    h.clock.now += 10 * 60 * 1000 + 1;
    const r = await changePassword(h.fetch, a, 'x', a.token, { exportKey: a.exportKey });
    expect(r.status).toBe(403);
    expect(r.json.error.code).toBe('REAUTH_REQUIRED');
  });

  it('refuses a password change that skips the backup version or drops a device', async () => {
    const a = await signup(h.fetch, 'rita', 'pw');
    const phone = await makeDevice('phone');
    const two = await successor(a, { devices: sortDevices([...a.body.devices, phone.entry]) });
    expect(
      (await call(h.fetch, 'PUT', '/v1/manifest', { manifest: wire(two.manifest) }, a.token))
        .status,
    ).toBe(200);
    a.manifest = two.manifest;
    a.body = two.body;
    await opaque.ready;
    const reg = opaque.client.startRegistration({ password: 'pw2' });
    const s = await call(
      h.fetch,
      'POST',
      '/v1/password/start',
      { registrationRequest: reg.registrationRequest },
      a.token,
    );
    const { registrationRecord, exportKey } = register(
      'pw2',
      s.json.registrationResponse,
      reg.clientRegistrationState,
    );
    const sealed = await rewrapBackup(a.backup, {
      manifest: a.body,
      exportKey: a.exportKey,
      newExportKey: exportKey,
    });
    const finish = (manifest: SignedManifest) =>
      call(
        h.fetch,
        'POST',
        '/v1/password/finish',
        { registrationRecord, manifest: wire(manifest), backup: toBase64url(sealed.backup) },
        a.token,
      );
    // The same backup version.
    let r = await finish((await successor(a, {})).manifest);
    expect(r.status).toBe(422);
    // The phone dropped.
    const dropped = await successor(a, {
      devices: a.body.devices.filter((d) => d.id !== phone.id),
      backupVersion: sealed.version,
      backupHash: sealed.hash,
    });
    r = await finish(dropped.manifest);
    expect(r.status).toBe(422);
    expect(r.json.error.code).toBe('INVALID_MANIFEST');
    // Done right, it passes.
    r = await finish(
      (await successor(a, { backupVersion: sealed.version, backupHash: sealed.hash })).manifest,
    );
    expect(r.status).toBe(200);
  });

  it('recovers with the recovery code: token limited, spent, new session', async () => {
    const a = await signup(h.fetch, 'sam', 'forgotten');
    const proof = toBase64url(await recoveryProof(a.recoveryCode));
    const start = await call(h.fetch, 'POST', '/v1/recover/start', { username: 'Sam', proof });
    expect(start.status).toBe(200);
    expect(start.json.accountId).toBe(a.accountId);
    expect(start.json.manifest).toEqual(wire(a.manifest));
    expect(start.json.backup).toBe(toBase64url(a.backup));
    const rt: string = start.json.recoveryToken;
    expect(start.json.expiresAt).toBe(h.clock.now + 10 * 60 * 1000);
    // The recovery token can do nothing else.
    for (const [method, path] of [
      ['GET', '/v1/session'],
      ['GET', '/v1/manifest'],
      ['GET', '/v1/backup'],
      ['POST', '/v1/logout'],
      ['DELETE', '/v1/account'],
    ] as const) {
      const r = await call(h.fetch, method, path, undefined, rt);
      expect(r.status, path).toBe(403);
      expect(r.json.error.code).toBe('FORBIDDEN');
    }
    const newDevice = await makeDevice('new phone');
    const finish = await changePassword(
      h.fetch,
      a,
      'remembered',
      rt,
      { recoveryCode: a.recoveryCode },
      newDevice.id,
    );
    expect(finish.status).toBe(200);
    expect(finish.json.token).not.toBe(rt);
    const me = await call(h.fetch, 'GET', '/v1/session', undefined, finish.json.token);
    expect(me.json.deviceId).toBe(newDevice.id);
    expect(
      (await call(h.fetch, 'POST', '/v1/password/start', { registrationRequest: 'x' }, rt)).status,
    ).toBe(401);
    expect((await login(h.fetch, 'sam', 'remembered')).finish?.status).toBe(200);
  });

  it('answers a wrong proof and an unknown user alike, and throttles', async () => {
    const a = await signup(h.fetch, 'tina', 'pw');
    const wrongProof = toBase64url(new Uint8Array(32).fill(1));
    h.address.value = '198.51.100.77';
    try {
      const wrong = await call(h.fetch, 'POST', '/v1/recover/start', {
        username: 'tina',
        proof: wrongProof,
      });
      const unknown = await call(h.fetch, 'POST', '/v1/recover/start', {
        username: 'nobody-x',
        proof: wrongProof,
      });
      expect(wrong.status).toBe(401);
      expect(wrong.text).toBe(unknown.text);
      for (let i = 0; i < 3; i++)
        await call(h.fetch, 'POST', '/v1/recover/start', { username: 'tina', proof: wrongProof });
      const limited = await call(h.fetch, 'POST', '/v1/recover/start', {
        username: 'tina',
        proof: toBase64url(await recoveryProof(a.recoveryCode)),
      });
      expect(limited.status).toBe(429);
      expect(limited.headers.get('retry-after')).toBe('1');
    } finally {
      h.address.value = '192.0.2.1';
    }
  });
});
