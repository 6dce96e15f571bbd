// Password change and recovery, in-process, on every database.
import { toBase64url } from '@coffer/crypto';
import { recoveryProof, rewrapBackup, type SignedManifest, sortDevices } from '@coffer/protocol';
import * as opaque from '@serenity-kit/opaque';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UNLISTED_SESSION_GRACE_MS } from '../src/sessions.js';
import {
  addDevice,
  CHEAP_KSF,
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
      newDevice.entry,
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

  // The review's reproduction: a stolen password gives a session naming no device (or a device
  // never added); the owner changes the password and removes every other device. No manifest
  // authorises such a session, so the password change ends it.
  it('a password change ends every other session no manifest authorises, and pending logins', async () => {
    const a = await signup(h.fetch, 'uma', 'stolen');
    const phone = await makeDevice('phone');
    expect((await addDevice(h.fetch, a, phone)).status).toBe(200);
    const onPhone: string = (await login(h.fetch, 'uma', 'stolen', phone)).finish?.json.token;
    const noDevice: string = (await login(h.fetch, 'uma', 'stolen')).finish?.json.token;
    const stray: string = (await login(h.fetch, 'uma', 'stolen', (await makeDevice()).id)).finish
      ?.json.token;
    for (const t of [onPhone, noDevice, stray])
      expect((await call(h.fetch, 'GET', '/v1/session', undefined, t)).status).toBe(200);
    // A login started with the old password before the change.
    await opaque.ready;
    const pending = opaque.client.startLogin({ password: 'stolen' });
    const started = await call(h.fetch, 'POST', '/v1/login/start', {
      username: 'uma',
      startLoginRequest: pending.startLoginRequest,
    });
    expect(started.status).toBe(200);

    const r = await changePassword(h.fetch, a, 'changed', a.token, { exportKey: a.exportKey });
    expect(r.status).toBe(200);
    const gone = [noDevice, stray];
    for (const t of gone) {
      expect((await call(h.fetch, 'GET', '/v1/session', undefined, t)).status).toBe(401);
      expect((await call(h.fetch, 'GET', '/v1/backup', undefined, t)).status).toBe(401);
      const put = await successor(a, {});
      expect(
        (await call(h.fetch, 'PUT', '/v1/manifest', { manifest: wire(put.manifest) }, t)).status,
      ).toBe(401);
    }
    // The caller and the listed phone keep theirs: the signed manifest authorises them.
    expect((await call(h.fetch, 'GET', '/v1/session', undefined, a.token)).status).toBe(200);
    expect((await call(h.fetch, 'GET', '/v1/session', undefined, onPhone)).status).toBe(200);
    // The login started against the old record cannot finish.
    const done = opaque.client.finishLogin({
      clientLoginState: pending.clientLoginState,
      loginResponse: started.json.loginResponse,
      password: 'stolen',
      keyStretching: CHEAP_KSF,
    });
    const finished = await call(h.fetch, 'POST', '/v1/login/finish', {
      loginId: started.json.loginId,
      finishLoginRequest: done!.finishLoginRequest,
    });
    expect(finished.status).toBe(401);
  });

  it('a recovery ends every session no manifest authorises, and must name a listed device', async () => {
    const a = await signup(h.fetch, 'vera', 'stolen');
    const noDevice: string = (await login(h.fetch, 'vera', 'stolen')).finish?.json.token;
    const stray: string = (await login(h.fetch, 'vera', 'stolen', (await makeDevice()).id)).finish
      ?.json.token;
    const proof = toBase64url(await recoveryProof(a.recoveryCode));
    const recover = async () =>
      (await call(h.fetch, 'POST', '/v1/recover/start', { username: 'vera', proof })).json
        .recoveryToken as string;
    // Another recovery token (say, the thief's) is ended as well.
    const other = await recover();
    const rt = await recover();
    // No device, or one the new manifest does not list: refused, nothing changed.
    const missing = await changePassword(h.fetch, a, 'new', rt, { recoveryCode: a.recoveryCode });
    expect(missing.status).toBe(400);
    const unlisted = await changePassword(
      h.fetch,
      a,
      'new',
      rt,
      { recoveryCode: a.recoveryCode },
      (await makeDevice()).id,
    );
    expect(unlisted.status).toBe(422);
    expect(unlisted.json.error.code).toBe('INVALID_MANIFEST');
    expect((await call(h.fetch, 'GET', '/v1/session', undefined, noDevice)).status).toBe(200);

    const r = await changePassword(
      h.fetch,
      a,
      'new',
      rt,
      { recoveryCode: a.recoveryCode },
      a.device.id,
    );
    expect(r.status).toBe(200);
    for (const t of [noDevice, stray])
      expect((await call(h.fetch, 'GET', '/v1/session', undefined, t)).status).toBe(401);
    expect(
      (await call(h.fetch, 'POST', '/v1/password/start', { registrationRequest: 'x' }, other))
        .status,
    ).toBe(401);
    const me = await call(h.fetch, 'GET', '/v1/session', undefined, r.json.token);
    expect(me.json.deviceId).toBe(a.device.id);
    // The listed device's earlier session stays.
    expect((await call(h.fetch, 'GET', '/v1/session', undefined, a.token)).status).toBe(200);
  });

  it('a manifest change ends sessions no manifest authorises once past the grace window', async () => {
    const a = await signup(h.fetch, 'wade', 'pw');
    const noDevice: string = (await login(h.fetch, 'wade', 'pw')).finish?.json.token;
    const stray: string = (await login(h.fetch, 'wade', 'pw', (await makeDevice()).id)).finish?.json
      .token;
    h.clock.now += UNLISTED_SESSION_GRACE_MS + 1;
    // A new device logs in under its own id and has not added itself yet.
    const tablet = await makeDevice('tablet');
    const onTablet: string = (await login(h.fetch, 'wade', 'pw', tablet.id)).finish?.json.token;
    const young: string = (await login(h.fetch, 'wade', 'pw')).finish?.json.token;
    // Another device changes the manifest meanwhile.
    const renamed = await successor(a, {
      devices: a.body.devices.map((d) => ({ ...d, name: 'old laptop' })),
    });
    expect(
      (await call(h.fetch, 'PUT', '/v1/manifest', { manifest: wire(renamed.manifest) }, a.token))
        .status,
    ).toBe(200);
    a.manifest = renamed.manifest;
    a.body = renamed.body;
    for (const t of [noDevice, stray])
      expect((await call(h.fetch, 'GET', '/v1/session', undefined, t)).status).toBe(401);
    for (const t of [a.token, onTablet, young])
      expect((await call(h.fetch, 'GET', '/v1/session', undefined, t)).status).toBe(200);
    // The tablet adds itself within the grace, and is then authorised by the manifest.
    const own = { ...a, token: onTablet };
    expect((await addDevice(h.fetch, own, tablet)).status).toBe(200);
    a.manifest = own.manifest;
    a.body = own.body;
    h.clock.now += UNLISTED_SESSION_GRACE_MS + 1;
    const again = await successor(a, {});
    expect(
      (await call(h.fetch, 'PUT', '/v1/manifest', { manifest: wire(again.manifest) }, a.token))
        .status,
    ).toBe(200);
    expect((await call(h.fetch, 'GET', '/v1/session', undefined, onTablet)).status).toBe(200);
    expect((await call(h.fetch, 'GET', '/v1/session', undefined, young)).status).toBe(401);
  });
});
