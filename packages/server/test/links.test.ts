// Device linking (account-v1 §6) through the server, in-process, on every database.
import { randomBytes, sha256, toBase64url } from '@coffer/crypto';
import {
  generateLinkCode,
  openLinkRequest,
  openLinkResponse,
  sealLinkRequest,
  sealLinkResponse,
} from '@coffer/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addDevice, call, login, makeDevice, signup } from './_client.js';
import { testDialects } from './_db.js';
import { createHarness, type Harness } from './_harness.js';

const dialects = await testDialects();

describe.each(dialects)('links (%s)', (dialect) => {
  let h: Harness;
  beforeAll(async () => {
    h = await createHarness(dialect, 'links');
  });
  afterAll(() => h.dispose());

  /** A's approval of the request on `code` from B's device `deviceId`. */
  const approve = async (
    code: ReturnType<typeof generateLinkCode>,
    a: Awaited<ReturnType<typeof signup>>,
    username: string,
    deviceId: string,
  ) => {
    const response = await sealLinkResponse(code, {
      accountId: a.accountId,
      username,
      identitySeed: a.identity.seed,
      manifestSeq: 2,
    });
    const body = { sealed: toBase64url(response), deviceId };
    return call(h.fetch, 'POST', `/v1/links/${code.linkId}/approve`, body, a.token);
  };

  it('links a new device: request, approve, pickup once', async () => {
    const a = await signup(h.fetch, 'uma', 'pw');
    const code = generateLinkCode();
    const created = await call(h.fetch, 'POST', '/v1/links', { linkId: code.linkId }, a.token);
    expect(created.status).toBe(201);
    expect(created.json.expiresAt).toBe(h.clock.now + 10 * 60 * 1000);
    expect(
      (await call(h.fetch, 'POST', '/v1/links', { linkId: code.linkId }, a.token)).status,
    ).toBe(409);

    // B, without an account, sends its sealed request.
    const b = await makeDevice('tablet');
    const pickup = randomBytes(32);
    const sealed = await sealLinkRequest(code, {
      deviceId: b.id,
      signingKey: b.keys.publicKey,
      name: 'tablet',
    });
    const path = `/v1/links/${code.linkId}`;
    const req = { sealed: toBase64url(sealed), pickupHash: toBase64url(await sha256(pickup)) };
    expect((await call(h.fetch, 'PUT', `${path}/request`, req)).status).toBe(204);
    expect((await call(h.fetch, 'PUT', `${path}/request`, req)).status).toBe(409);
    const waiting = await call(h.fetch, 'POST', `${path}/pickup`, { pickup: toBase64url(pickup) });
    expect(waiting.json).toEqual({ status: 'waiting' });

    // A sees the request; only A's account may.
    const seen = await call(h.fetch, 'GET', path, undefined, a.token);
    expect(seen.json.status).toBe('requested');
    const request = await openLinkRequest(code, Buffer.from(seen.json.sealed, 'base64url'));
    expect(request.deviceId).toBe(b.id);
    const other = await signup(h.fetch, 'victor', 'pw');
    expect((await call(h.fetch, 'GET', path, undefined, other.token)).status).toBe(404);

    // Approval needs B in the current manifest first.
    expect((await approve(code, a, 'uma', b.id)).status).toBe(409);
    expect((await addDevice(h.fetch, a, b)).status).toBe(200);
    expect((await approve(code, a, 'uma', b.id)).status).toBe(204);

    // A wrong pickup secret looks like no link.
    const wrong = await call(h.fetch, 'POST', `${path}/pickup`, {
      pickup: toBase64url(randomBytes(32)),
    });
    expect(wrong.status).toBe(404);
    const got = await call(h.fetch, 'POST', `${path}/pickup`, { pickup: toBase64url(pickup) });
    expect(got.json).toMatchObject({ status: 'approved', accountId: a.accountId });
    const opened = await openLinkResponse(code, Buffer.from(got.json.sealed, 'base64url'));
    expect(opened.identitySeed).toEqual(a.identity.seed);
    const me = await call(h.fetch, 'GET', '/v1/session', undefined, got.json.token);
    expect(me.json).toMatchObject({ accountId: a.accountId, deviceId: b.id, authAt: 0 });
    // Picked up once; the link is gone.
    expect(
      (await call(h.fetch, 'POST', `${path}/pickup`, { pickup: toBase64url(pickup) })).status,
    ).toBe(404);
    // B proved no password: deleting the account needs a login.
    expect((await call(h.fetch, 'DELETE', '/v1/account', undefined, got.json.token)).status).toBe(
      403,
    );
  });

  it('a refused link: B is told at its next pickup, and nothing can approve it', async () => {
    const a = await signup(h.fetch, 'ursula', 'pw');
    const other = await signup(h.fetch, 'walter', 'pw');
    const code = generateLinkCode();
    await call(h.fetch, 'POST', '/v1/links', { linkId: code.linkId }, a.token);
    const path = `/v1/links/${code.linkId}`;
    // Nothing to refuse before a request; only the creating account may.
    expect((await call(h.fetch, 'POST', `${path}/refuse`, undefined, a.token)).status).toBe(409);
    const b = await makeDevice('tablet');
    const pickup = toBase64url(randomBytes(32));
    const sealed = await sealLinkRequest(code, {
      deviceId: b.id,
      signingKey: b.keys.publicKey,
      name: 'tablet',
    });
    const pickupHash = toBase64url(await sha256(Buffer.from(pickup, 'base64url')));
    const req = { sealed: toBase64url(sealed), pickupHash };
    expect((await call(h.fetch, 'PUT', `${path}/request`, req)).status).toBe(204);
    expect((await call(h.fetch, 'POST', `${path}/refuse`, undefined, other.token)).status).toBe(
      404,
    );
    expect((await call(h.fetch, 'POST', `${path}/refuse`, undefined, a.token)).status).toBe(204);
    expect((await call(h.fetch, 'POST', `${path}/refuse`, undefined, a.token)).status).toBe(204);
    expect((await call(h.fetch, 'GET', path, undefined, a.token)).json).toEqual({
      status: 'refused',
    });
    // Even with B in the manifest, a refused link is not approved, and no session is made.
    expect((await addDevice(h.fetch, a, b)).status).toBe(200);
    expect((await approve(code, a, 'ursula', b.id)).status).toBe(409);
    const sessions = await h.db
      .raw()
      .selectFrom('sessions')
      .select('device_id')
      .where('device_id', '=', b.id)
      .execute();
    expect(sessions).toEqual([]);
    // B learns it once, then the link is gone.
    expect((await call(h.fetch, 'POST', `${path}/pickup`, { pickup })).json).toEqual({
      status: 'refused',
    });
    expect((await call(h.fetch, 'POST', `${path}/pickup`, { pickup })).status).toBe(404);
  });

  it("approves only from a session of a device the account's manifest lists", async () => {
    // A password proves the account, not a device: a login naming no device (or an unlisted one)
    // must not be able to hand itself a session for a listed device through a link of its own
    // (spec "Login": a session for a listed device needs that device's proof).
    const a = await signup(h.fetch, 'yara', 'pw');
    const noDevice = await login(h.fetch, 'yara', 'pw');
    const unlisted = await login(h.fetch, 'yara', 'pw', (await makeDevice('stolen')).id);
    for (const [session, status] of [
      [noDevice.finish?.json.token as string, 403],
      [unlisted.finish?.json.token as string, 409],
    ] as const) {
      const code = generateLinkCode();
      const path = `/v1/links/${code.linkId}`;
      expect(
        (await call(h.fetch, 'POST', '/v1/links', { linkId: code.linkId }, session)).status,
      ).toBe(201);
      const pickup = randomBytes(32);
      const req = {
        sealed: toBase64url(randomBytes(64)),
        pickupHash: toBase64url(await sha256(pickup)),
      };
      expect((await call(h.fetch, 'PUT', `${path}/request`, req)).status).toBe(204);
      const body = { sealed: toBase64url(randomBytes(64)), deviceId: a.device.id };
      expect((await call(h.fetch, 'POST', `${path}/approve`, body, session)).status).toBe(status);
      const got = await call(h.fetch, 'POST', `${path}/pickup`, { pickup: toBase64url(pickup) });
      expect(got.json).toEqual({ status: 'waiting' });
    }
    // Only the sessions of the signup device and the two logins exist: none was made for pickup.
    const sessions = await h.db
      .raw()
      .selectFrom('sessions')
      .select('device_id')
      .where('account_id', '=', a.accountId)
      .execute();
    expect(sessions.filter((s) => s.device_id === a.device.id)).toHaveLength(1);
  });

  it('a refusal and an approval racing: exactly one lands', async () => {
    const a = await signup(h.fetch, 'xena', 'pw');
    const linkId = generateLinkCode().linkId;
    await h.storage.links.create({ linkId, accountId: a.accountId, expiresAt: h.clock.now + 1e6 });
    await h.storage.links.setRequest(
      linkId,
      { sealed: randomBytes(40), pickupHash: randomBytes(32) },
      h.clock.now,
    );
    const response = { sealed: randomBytes(40), token: 'x'.repeat(43), expiresAt: 1 };
    const [refused, approved] = await Promise.all([
      h.storage.links.refuse(linkId),
      h.storage.links.setResponse(linkId, response),
    ]);
    expect([refused, approved].filter(Boolean)).toHaveLength(1);
    const link = await h.storage.links.get(linkId, h.clock.now);
    expect(link?.refused).toBe(refused);
    expect(link?.response !== null).toBe(approved);
    // Once one landed, the other never does, and an approval lands once.
    expect(await h.storage.links.refuse(linkId)).toBe(refused);
    expect(await h.storage.links.setResponse(linkId, response)).toBe(false);
  });

  it('expires links after 10 minutes and refuses malformed ids', async () => {
    const a = await signup(h.fetch, 'wendy', 'pw');
    const code = generateLinkCode();
    await call(h.fetch, 'POST', '/v1/links', { linkId: code.linkId }, a.token);
    h.clock.now += 10 * 60 * 1000;
    const req = {
      sealed: toBase64url(new Uint8Array(40)),
      pickupHash: toBase64url(new Uint8Array(32)),
    };
    expect((await call(h.fetch, 'PUT', `/v1/links/${code.linkId}/request`, req)).status).toBe(404);
    expect((await call(h.fetch, 'PUT', '/v1/links/ZZZZZZZZ/request', req)).status).toBe(404);
    for (const id of ['abcdefgh', 'ILOU1234', 'SHORT', '123456789']) {
      expect((await call(h.fetch, 'PUT', `/v1/links/${id}/request`, req)).status, id).toBe(400);
      expect((await call(h.fetch, 'POST', '/v1/links', { linkId: id }, a.token)).status, id).toBe(
        400,
      );
    }
  });
});
